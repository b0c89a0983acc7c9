//! Guest FPU/SIMD state, switched lazily between vCPUs.
//!
//! keel is built soft-float and never touches the FPU, so a guest's x87,
//! SSE and AVX state (and its XCR0) can stay in the CPU across VM exits.
//! Only when another vCPU runs on the same physical CPU does the state
//! move: save the owner's registers into its area, load the newcomer's.
//! With XSAVE (every CPU keel's emulators model) that is XSAVE/XRSTOR of
//! every component the owner's XCR0 enables, and the newcomer's XCR0 is
//! loaded before its XRSTOR (each area records the XCR0 it was saved with);
//! without XSAVE it is FXSAVE/FXRSTOR of x87/SSE.
//! Both backends (VT-x and AMD-V) use this, so no guest ever sees another's
//! registers, and a vCPU that moves to another CPU takes its state along
//! ([`GuestFpu::release`] on the old CPU first). The host needs CR4.OSFXSR
//! and CR4.OSXSAVE ([`enable_on_this_cpu`]).

use super::{cpu, percpu};
use core::arch::asm;
use core::sync::atomic::Ordering;

const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXSAVE: u64 = 1 << 18;

fn has_xsave() -> bool {
    core::arch::x86_64::__cpuid(1).ecx & (1 << 26) != 0
}

/// Bytes of an XSAVE area holding every component this CPU supports
/// (CPUID 0xD.0 ECX), or 512 for FXSAVE.
fn area_size() -> usize {
    if has_xsave() {
        core::arch::x86_64::__cpuid_count(0xd, 0).ecx.max(576) as usize
    } else {
        512
    }
}

/// XCR0's SSE bit: legacy SSE works whatever XCR0 says, so a guest may use
/// XMM registers with XCR0 = x87 only; XSAVE covers them only with the bit
/// set, so keel sets it around its own XSAVE/XRSTOR.
const XCR0_SSE: u64 = 1 << 1;

/// Where an area keeps its vCPU's XCR0: in the legacy region's bytes
/// 464-511, which are software's (XSAVE and FXSAVE never write them). The
/// XCR0 is recorded at each save from the CPU itself, so it is right even
/// where an XSETBV did not exit (QEMU TCG's SVM runs it in the guest).
const XCR0_SLOT: usize = 464;
/// The XSAVE header's XSTATE_BV (the components the area holds).
const XSTATE_BV: usize = 512;

fn area_xcr0(a: *const u8) -> u64 {
    // SAFETY: `a` is a live area of at least 512 bytes (see `save`).
    unsafe { core::ptr::read(a.add(XCR0_SLOT) as *const u64) }
}

/// Saves the CPU's state (and its XCR0, the owner's) into `a`.
fn save(a: *mut u8) {
    if has_xsave() {
        let xcr0 = xgetbv0();
        if xcr0 & XCR0_SSE == 0 {
            xsetbv0(xcr0 | XCR0_SSE);
        }
        // SAFETY: `a` is a live, 64-byte aligned area of `area_size()`
        // bytes owned by a `GuestFpu` registered as a CPU's `fpu_owner` (which
        // unregisters before freeing it); XSAVE with all-ones RFBM writes
        // the components the current XCR0 (the owner's) enables.
        unsafe {
            asm!("xsave64 [{}]", in(reg) a, in("eax") u32::MAX, in("edx") u32::MAX, options(nostack))
        };
        if xcr0 & XCR0_SSE == 0 {
            xsetbv0(xcr0);
        }
        // SAFETY: bytes 464-471 of the live area (software's, see
        // XCR0_SLOT), and its XSAVE header's XSTATE_BV at 512. XSAVE leaves
        // the XSTATE_BV bits of components outside XCR0 as they were; a
        // component the guest has since turned off must not stay set, or
        // the next XRSTOR (with that XCR0) faults.
        unsafe {
            core::ptr::write(a.add(XCR0_SLOT) as *mut u64, xcr0);
            let bv = a.add(XSTATE_BV) as *mut u64;
            core::ptr::write(bv, core::ptr::read(bv) & (xcr0 | XCR0_SSE));
        }
    } else {
        // SAFETY: as above, 16-byte aligned and at least 512 bytes.
        unsafe { asm!("fxsave64 [{}]", in(reg) a, options(nostack)) };
    }
}

/// Loads the state in `a` and the XCR0 it was saved with.
fn restore(a: *const u8) {
    if has_xsave() {
        let xcr0 = area_xcr0(a);
        let with_sse = xcr0 | XCR0_SSE;
        if xgetbv0() != with_sse {
            xsetbv0(with_sse);
        }
        // SAFETY: as in `save`; the area came from XSAVE or from
        // `GuestFpu::new` (a valid standard-format image: header zero,
        // MXCSR valid), so XRSTOR cannot fault.
        unsafe {
            asm!("xrstor64 [{}]", in(reg) a, in("eax") u32::MAX, in("edx") u32::MAX, options(nostack))
        };
        if xcr0 != with_sse {
            xsetbv0(xcr0);
        }
    } else {
        // SAFETY: as in `save`.
        unsafe { asm!("fxrstor64 [{}]", in(reg) a, options(nostack)) };
    }
}

fn xgetbv0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: CR4.OSXSAVE is set on every CPU that runs guests
    // (`enable_on_this_cpu`) before any vCPU state is loaded.
    unsafe {
        asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nostack, nomem))
    };
    lo as u64 | (hi as u64) << 32
}

fn xsetbv0(value: u64) {
    // SAFETY: callers pass a value checked by `valid_xcr0` (or 1, x87
    // only), possibly with the SSE bit added (valid whenever the CPU has
    // XSAVE), with CR4.OSXSAVE set: XSETBV cannot fault.
    unsafe {
        asm!("xsetbv", in("ecx") 0u32, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack))
    };
}

/// Lets FXSAVE/FXRSTOR cover the SSE registers on this CPU, and enables
/// XSETBV (CR4.OSXSAVE) where the CPU has XSAVE, so keel can load a
/// guest's XCR0. The first CPU to get here, before any vCPU runs on it,
/// also checks the CPU's XSAVEC ([`xsavec_works`]).
pub fn enable_on_this_cpu() {
    let cr4 = cpu::read_cr4();
    let xsave = core::arch::x86_64::__cpuid(1).ecx & (1 << 26) != 0;
    let want = cr4 | CR4_OSFXSR | if xsave { CR4_OSXSAVE } else { 0 };
    if want != cr4 {
        // SAFETY: OSFXSR/OSXSAVE only change what FXSAVE/FXRSTOR cover and
        // allow SSE and XSETBV, which keel itself does not otherwise use.
        unsafe { asm!("mov cr4, {}", in(reg) want, options(nostack)) };
    }
    if xsave
        && XSAVEC
            .compare_exchange(UNKNOWN, PROBING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    {
        let ok = probe_xsavec();
        if !ok {
            log::warn!(
                "FPU: this CPU's XSAVEC writes the compacted format at the wrong offsets (Bochs 2.7 does): not offered to guests, which use XSAVEOPT or XSAVE instead"
            );
        }
        XSAVEC.store(if ok { WORKS } else { BROKEN }, Ordering::Release);
    }
}

const UNKNOWN: u8 = 0;
const PROBING: u8 = 1;
const WORKS: u8 = 2;
const BROKEN: u8 = 3;
static XSAVEC: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(UNKNOWN);

/// Whether guests may be offered XSAVEC (CPUID 0xD.1 EAX bit 1): false
/// only where the CPU has it and [`enable_on_this_cpu`]'s check found it
/// broken. Bochs 2.7's XSAVEC writes every component from AVX on 160
/// bytes low, over the legacy area's end and the XSAVE header, while its
/// XRSTOR reads them where they belong (fixed upstream in January 2024):
/// a Linux guest, which saves tasks with XSAVEC where it can, then gets
/// its processes' AVX and AVX-512 registers back scrambled after a context
/// switch; glibc's EVEX memcpy copied zeros into a new process's TLS
/// (a segfault in `__ctype_init`) in keel's Bochs domU scenarios.
pub fn xsavec_works() -> bool {
    XSAVEC.load(Ordering::Acquire) != BROKEN
}

/// XSAVEC of the AVX state alone (RFBM = 4) with YMM0's upper half set:
/// the compacted format puts it first after the legacy area and header,
/// at byte 576. True where it lands there, or where there is nothing to
/// check (no XSAVEC, no AVX). Runs before any guest state is on this CPU
/// (it changes XCR0 and YMM0, and puts both back to their initial state).
fn probe_xsavec() -> bool {
    let xsavec = core::arch::x86_64::__cpuid_count(0xd, 1).eax & (1 << 1) != 0;
    let avx = core::arch::x86_64::__cpuid(1).ecx & (1 << 28) != 0;
    if !xsavec || !avx || supported_xcr0() & 4 == 0 {
        return true;
    }
    #[repr(C, align(64))]
    struct Area([u8; 1024]);
    let mut area = Area([0; 1024]);
    let mut pattern = [0u8; 32];
    for (i, b) in pattern.iter_mut().enumerate() {
        *b = 0xa0 ^ i as u8;
    }
    let xcr0 = xgetbv0();
    xsetbv0(7);
    // SAFETY: XCR0 now enables AVX (CR4.OSXSAVE is set), so VMOVDQU,
    // XSAVEC and VZEROALL cannot fault; VMOVDQU reads the 32-byte
    // `pattern`, XSAVEC with RFBM 4 writes at most 576 + 256 bytes of the
    // 64-byte-aligned 1024-byte `area`; only YMM registers change, which
    // soft-float keel never uses, and no guest's state is loaded yet.
    unsafe {
        asm!(
            "vmovdqu ymm0, [{p}]",
            "xsavec64 [{a}]",
            "vzeroall",
            p = in(reg) pattern.as_ptr(),
            a = in(reg) area.0.as_mut_ptr(),
            in("eax") 4u32,
            in("edx") 0u32,
            options(nostack),
        )
    };
    xsetbv0(xcr0);
    area.0[576..592] == pattern[16..32]
}

/// XCR0 bits this CPU supports (CPUID 0xD.0), 0 without XSAVE.
pub fn supported_xcr0() -> u64 {
    if core::arch::x86_64::__cpuid(1).ecx & (1 << 26) == 0 {
        return 0;
    }
    let r = core::arch::x86_64::__cpuid_count(0xd, 0);
    r.eax as u64 | ((r.edx as u64) << 32)
}

/// Whether `value` is an XCR0 a guest may set with XSETBV: x87 always on,
/// AVX only with SSE, only bits this CPU supports.
fn valid_xcr0(value: u64) -> bool {
    value & 1 != 0 && value & !supported_xcr0() == 0 && (value & 4 == 0 || value & 2 != 0)
}

/// One vCPU's FPU/SIMD state and XCR0.
pub struct GuestFpu {
    area: *mut u8,
}

// SAFETY: the area is this vCPU's alone; it is only loaded, saved or freed
// by the CPU that owns it at the time (see `ArchCpu::fpu_owner`).
unsafe impl Send for GuestFpu {}

fn layout() -> core::alloc::Layout {
    core::alloc::Layout::from_size_align(area_size(), 64).expect("FPU area layout")
}

impl GuestFpu {
    /// The state after INIT: FCW 0x37f, MXCSR 0x1f80, everything else in
    /// its initial configuration, XCR0 = x87 only.
    pub fn new() -> Self {
        // SAFETY: a non-zero size with a valid alignment.
        let area = unsafe { alloc::alloc::alloc_zeroed(layout()) };
        if area.is_null() {
            alloc::alloc::handle_alloc_error(layout());
        }
        // SAFETY: `area` is at least 512 bytes, ours.
        let legacy = unsafe { core::slice::from_raw_parts_mut(area, 512) };
        legacy[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        legacy[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        legacy[XCR0_SLOT..XCR0_SLOT + 8].copy_from_slice(&1u64.to_le_bytes());
        GuestFpu { area }
    }

    /// Makes this state the CPU's. Call with interrupts off, right before
    /// entering the guest.
    pub fn load(&mut self) {
        let owner = &percpu::this().fpu_owner;
        let cur = owner.load(Ordering::Relaxed);
        if cur != self.area {
            if !cur.is_null() {
                save(cur);
            }
            restore(self.area);
            owner.store(self.area, Ordering::Relaxed);
        }
    }

    /// XSETBV by the guest (which owns this CPU's state: it just ran).
    /// False: the value is refused (#GP).
    pub fn set_xcr0(&mut self, value: u64) -> bool {
        if !has_xsave() || !valid_xcr0(value) || cpu::read_cr4() & CR4_OSXSAVE == 0 {
            return false;
        }
        xsetbv0(value);
        true
    }

    /// Saves the state out of this CPU if it holds it (before the vCPU moves
    /// to another CPU or goes away). Must run on the CPU that last ran it.
    pub fn release(&mut self) {
        let was = x86_64::instructions::interrupts::are_enabled();
        x86_64::instructions::interrupts::disable();
        let owner = &percpu::this().fpu_owner;
        if owner.load(Ordering::Relaxed) == self.area {
            save(self.area);
            owner.store(core::ptr::null_mut(), Ordering::Relaxed);
        }
        if was {
            x86_64::instructions::interrupts::enable();
        }
    }

    /// For a vCPU dropped while another CPU may still own its state: the
    /// area must outlive any later save into it, so it is leaked.
    pub fn leak(mut self) {
        self.area = core::ptr::null_mut();
    }
}

impl Drop for GuestFpu {
    fn drop(&mut self) {
        if !self.area.is_null() {
            // SAFETY: allocated in `new` with this layout; no CPU owns it
            // any more (the vCPU released it, or `leak` nulled it).
            unsafe { alloc::alloc::dealloc(self.area, layout()) };
        }
    }
}

impl Default for GuestFpu {
    fn default() -> Self {
        Self::new()
    }
}
