//! The guest's vector registers as a canary for keel's FPU switching.
//!
//! [`Canary::fill`] turns on every vector state the CPU offers (XSAVE with
//! AVX and AVX-512 where CPUID says so, through XSETBV, which keel
//! intercepts), loads each register with a value of its own, and
//! [`Canary::check`] reads them all back. A guest that spins between
//! checks while other vCPUs run on its CPU sees keel save and restore its
//! state many times over: any register that comes back different names
//! the component keel (or the emulator) lost. On Bochs's Skylake-X that
//! is 32 ZMM registers and 8 opmask registers, the AVX-512 state Linux's
//! glibc uses for memcpy (`ymm16`-`ymm31`).
//!
//! The guest is built soft-float: the compiler never uses a vector
//! register, so values left in them between `asm!` blocks stay put.

use core::arch::asm;

use crate::arch;

/// How much vector state this CPU gives the guest.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// XMM0-15 (SSE, legacy FXSAVE state).
    Sse,
    /// YMM0-15 (AVX).
    Avx,
    /// ZMM0-31 and k0-7 (AVX-512 F and BW).
    Avx512,
}

impl Width {
    pub fn registers(self) -> usize {
        match self {
            Width::Avx512 => 32,
            _ => 16,
        }
    }

    pub fn bytes(self) -> usize {
        match self {
            Width::Sse => 16,
            Width::Avx => 32,
            Width::Avx512 => 64,
        }
    }
}

const XCR0_X87: u64 = 1;
const XCR0_SSE: u64 = 2;
const XCR0_AVX: u64 = 4;
/// Opmask, ZMM_Hi256 and Hi16_ZMM: AVX-512 needs all three.
const XCR0_AVX512: u64 = 0xe0;

/// Turns on what the CPU has: CR4.OSXSAVE and XCR0 for AVX and AVX-512.
/// Returns the width and the XCR0 set (0 without XSAVE). SSE must be on
/// already (`arch::enable_sse`).
fn enable() -> (Width, u64) {
    let l1 = arch::cpuid(1, 0);
    if l1.ecx & (1 << 26) == 0 {
        return (Width::Sse, 0);
    }
    // SAFETY: ring 0, long mode, and CPUID says XSAVE exists, so setting
    // CR4.OSXSAVE cannot fault; RAX is declared, no memory is touched.
    unsafe { asm!("mov rax, cr4", "bts rax, 18", "mov cr4, rax", out("rax") _, options(nostack)) };
    let supported = {
        let d = arch::cpuid(0xd, 0);
        d.eax as u64 | (d.edx as u64) << 32
    };
    let mut xcr0 = XCR0_X87 | XCR0_SSE;
    let mut width = Width::Sse;
    if l1.ecx & (1 << 28) != 0 && supported & XCR0_AVX != 0 {
        xcr0 |= XCR0_AVX;
        width = Width::Avx;
        // F for the registers, BW for 64-bit opmasks (KMOVQ).
        let l7 = arch::cpuid(7, 0).ebx;
        let avx512 = l7 & (1 << 16) != 0 && l7 & (1 << 30) != 0;
        if avx512 && supported & XCR0_AVX512 == XCR0_AVX512 {
            xcr0 |= XCR0_AVX512;
            width = Width::Avx512;
        }
    }
    // SAFETY: CR4.OSXSAVE is set and `xcr0` holds only bits CPUID 0xD
    // reports, x87 and SSE included, AVX-512 only with AVX: XSETBV cannot
    // fault. No memory is touched.
    unsafe {
        asm!("xsetbv", in("ecx") 0u32, in("eax") xcr0 as u32, in("edx") (xcr0 >> 32) as u32, options(nostack, nomem))
    };
    (width, xcr0)
}

/// 32 registers of 64 bytes, then 8 opmask registers.
const AREA: usize = 32 * 64 + 8 * 8;

#[repr(C, align(64))]
struct Area([u8; AREA]);

pub struct Canary {
    pub width: Width,
    pub xcr0: u64,
    want: Area,
}

macro_rules! each {
    ($m:ident, $p:expr; $($n:literal)*) => {{ $( $m!($n, $p); )* }};
}

/// Runs the per-register macros on every register `width` has.
macro_rules! every_register {
    ($width:expr, $p:expr, $xmm:ident, $ymm:ident, $zmm:ident, $k:ident) => {
        match $width {
            Width::Sse => each!($xmm, $p; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15),
            Width::Avx => each!($ymm, $p; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15),
            Width::Avx512 => {
                each!($zmm, $p; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31);
                each!($k, $p; 0 1 2 3 4 5 6 7);
            }
        }
    };
}

impl Canary {
    /// Enables the vector state and loads a distinct value, derived from
    /// `seed`, into every register.
    pub fn fill(seed: u64) -> Self {
        let (width, xcr0) = enable();
        let mut want = Area([0; AREA]);
        for (i, q) in want.0.chunks_exact_mut(8).enumerate() {
            let v =
                (seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).rotate_left(i as u32 % 64);
            q.copy_from_slice(&v.to_le_bytes());
        }
        let c = Canary { width, xcr0, want };
        load(width, &c.want);
        c
    }

    /// Reads every register back. `Err((register, got, want))` names the
    /// first 8 bytes that differ (registers 0-31, then k0-k7 as 32-39).
    pub fn check(&self) -> Result<(), (usize, u64, u64)> {
        let mut got = Area([0; AREA]);
        store(self.width, &mut got);
        let w = self.width.bytes();
        for r in 0..self.width.registers() {
            for q in (0..w).step_by(8) {
                let at = r * 64 + q;
                let g = u64::from_le_bytes(got.0[at..at + 8].try_into().unwrap());
                let x = u64::from_le_bytes(self.want.0[at..at + 8].try_into().unwrap());
                if g != x {
                    return Err((r, g, x));
                }
            }
        }
        if self.width == Width::Avx512 {
            for k in 0..8 {
                let at = 32 * 64 + k * 8;
                let g = u64::from_le_bytes(got.0[at..at + 8].try_into().unwrap());
                let x = u64::from_le_bytes(self.want.0[at..at + 8].try_into().unwrap());
                if g != x {
                    return Err((32 + k, g, x));
                }
            }
        }
        Ok(())
    }
}

/// Loads registers from `a` (register `n` at byte `n * 64`).
fn load(width: Width, a: &Area) {
    let p = a.0.as_ptr();
    // Every block below (SAFETY): `enable` turned on the state these
    // instructions use (so none faults); each reads `width.bytes()` bytes
    // at `p + n * 64` (or 8 bytes for an opmask), inside the live
    // `AREA`-byte `a`; only vector registers change, which the soft-float
    // compiler never uses.
    macro_rules! xmm {
        ($n:literal, $p:expr) => {
            // SAFETY: see the comment above the macros.
            unsafe { asm!(concat!("movdqu xmm", $n, ", [{p}]"), p = in(reg) $p.add($n * 64), options(nostack, preserves_flags, readonly)) }
        };
    }
    macro_rules! ymm {
        ($n:literal, $p:expr) => {
            // SAFETY: see the comment above the macros.
            unsafe { asm!(concat!("vmovdqu ymm", $n, ", [{p}]"), p = in(reg) $p.add($n * 64), options(nostack, preserves_flags, readonly)) }
        };
    }
    macro_rules! zmm {
        ($n:literal, $p:expr) => {
            // SAFETY: see the comment above the macros.
            unsafe { asm!(concat!("vmovdqu64 zmm", $n, ", [{p}]"), p = in(reg) $p.add($n * 64), options(nostack, preserves_flags, readonly)) }
        };
    }
    macro_rules! k {
        ($n:literal, $p:expr) => {
            // SAFETY: see the comment above the macros.
            unsafe { asm!(concat!("kmovq k", $n, ", [{p}]"), p = in(reg) $p.add(32 * 64 + $n * 8), options(nostack, preserves_flags, readonly)) }
        };
    }
    every_register!(width, p, xmm, ymm, zmm, k);
}

/// Stores registers into `a`, as [`load`] lays them out.
fn store(width: Width, a: &mut Area) {
    let p = a.0.as_mut_ptr();
    // Every block below (SAFETY): as in `load`, but writing `width.bytes()`
    // bytes (8 for an opmask) at `p + n * 64`, inside the live, exclusively
    // borrowed `a`; no register changes.
    macro_rules! xmm {
        ($n:literal, $p:expr) => {
            // SAFETY: see the comment above the macros.
            unsafe { asm!(concat!("movdqu [{p}], xmm", $n), p = in(reg) $p.add($n * 64), options(nostack, preserves_flags)) }
        };
    }
    macro_rules! ymm {
        ($n:literal, $p:expr) => {
            // SAFETY: see the comment above the macros.
            unsafe { asm!(concat!("vmovdqu [{p}], ymm", $n), p = in(reg) $p.add($n * 64), options(nostack, preserves_flags)) }
        };
    }
    macro_rules! zmm {
        ($n:literal, $p:expr) => {
            // SAFETY: see the comment above the macros.
            unsafe { asm!(concat!("vmovdqu64 [{p}], zmm", $n), p = in(reg) $p.add($n * 64), options(nostack, preserves_flags)) }
        };
    }
    macro_rules! k {
        ($n:literal, $p:expr) => {
            // SAFETY: see the comment above the macros.
            unsafe { asm!(concat!("kmovq [{p}], k", $n), p = in(reg) $p.add(32 * 64 + $n * 8), options(nostack, preserves_flags)) }
        };
    }
    every_register!(width, p, xmm, ymm, zmm, k);
}

/// The MSRs a guest kernel sets that no VMCS field holds on VT-x (keel
/// switches them itself, or passes them through) and that AMD-V's VMCB
/// holds only with VMSAVE/VMLOAD: STAR, LSTAR, CSTAR, SFMASK,
/// KERNEL_GS_BASE (Linux's per-CPU base behind SWAPGS) and TSC_AUX (its
/// CPU number for RDTSCP/RDPID).
const SWITCHED_MSRS: [u32; 6] = [
    0xc000_0081,
    0xc000_0082,
    0xc000_0083,
    0xc000_0084,
    0xc000_0102,
    0xc000_0103,
];

/// Values of the guest's own in [`SWITCHED_MSRS`], checked like the
/// vector registers: a Linux guest beside another on one CPU must never
/// see the other's.
pub struct MsrCanary([u64; 6]);

impl MsrCanary {
    /// Writes a value derived from `seed` into each: canonical addresses
    /// for LSTAR, CSTAR and KERNEL_GS_BASE, 32 bits for SFMASK and
    /// TSC_AUX (their upper halves are reserved).
    pub fn fill(seed: u64) -> Self {
        let addr = |i: u64| {
            0xffff_8000_0000_0000 | (seed.rotate_left(i as u32 * 7) & 0x7fff_ffff_f000) | i
        };
        let v = [
            seed.rotate_left(13) & 0xffff_ffff_0000_0000,
            addr(1),
            addr(2),
            seed & 0x0004_7fd5,
            addr(4),
            seed >> 40,
        ];
        for (m, x) in SWITCHED_MSRS.iter().zip(v) {
            arch::wrmsr(*m, x);
        }
        MsrCanary(v)
    }

    /// `Err((msr, got, want))` for the first that reads back different.
    pub fn check(&self) -> Result<(), (u32, u64, u64)> {
        for (m, want) in SWITCHED_MSRS.iter().zip(self.0) {
            let got = arch::rdmsr(*m);
            if got != want {
                return Err((*m, got, want));
            }
        }
        Ok(())
    }
}
