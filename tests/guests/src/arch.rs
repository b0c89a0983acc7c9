//! Thin wrappers over the instructions the guest uses to talk to keel.
use core::arch::asm;

// Port I/O. No `nomem`: these must stay ordered with the memory accesses
// around them (e.g. EXPECT after touching on-demand pages).
#[inline(always)]
pub fn outb(port: u16, v: u8) {
    // SAFETY: ring 0, so `out` cannot fault; it reads only DX/AL, touches no memory Rust
    // can see, and the port is one keel (or, in qemu-smoke builds, the PIC/PIT) handles.
    unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nostack, preserves_flags)) }
}
#[inline(always)]
pub fn outw(port: u16, v: u16) {
    // SAFETY: ring 0, so `out` cannot fault; it reads only DX/AX, touches no memory Rust
    // can see, and the port is one keel (or, in qemu-smoke builds, the PIC/PIT) handles.
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") v, options(nostack, preserves_flags)) }
}
#[inline(always)]
pub fn outl(port: u16, v: u32) {
    // SAFETY: ring 0, so `out` cannot fault; it reads only DX/EAX, touches no memory Rust
    // can see, and the port is one keel (or, in qemu-smoke builds, the PIC/PIT) handles.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") v, options(nostack, preserves_flags)) }
}
#[inline(always)]
pub fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: ring 0, so `in` cannot fault; it writes only EAX (declared) and touches no
    // memory Rust can see; keel emulates the port.
    unsafe { asm!("in eax, dx", in("dx") port, out("eax") v, options(nostack, preserves_flags)) }
    v
}
/// `in al, dx` with RAX preset to `rax`: returns the whole RAX afterwards,
/// so callers can check that bits 8..63 were left alone.
#[inline(always)]
pub fn inb_rax(port: u16, rax: u64) -> u64 {
    let mut v = rax;
    // SAFETY: ring 0, so `in` cannot fault; it writes only AL, within the inout RAX, and
    // touches no memory Rust can see; keel emulates the port.
    unsafe { asm!("in al, dx", in("dx") port, inout("rax") v, options(nostack, preserves_flags)) }
    v
}
/// `in ax, dx` with RAX preset (bits 16..63 must survive).
#[inline(always)]
pub fn inw_rax(port: u16, rax: u64) -> u64 {
    let mut v = rax;
    // SAFETY: ring 0, so `in` cannot fault; it writes only AX, within the inout RAX, and
    // touches no memory Rust can see; keel emulates the port.
    unsafe { asm!("in ax, dx", in("dx") port, inout("rax") v, options(nostack, preserves_flags)) }
    v
}
/// `in eax, dx` with RAX preset (a 32-bit write zero-extends: bits 32..63 become 0).
#[inline(always)]
pub fn inl_rax(port: u16, rax: u64) -> u64 {
    let mut v = rax;
    // SAFETY: ring 0, so `in` cannot fault; it writes only EAX, within the inout RAX, and
    // touches no memory Rust can see; keel emulates the port.
    unsafe { asm!("in eax, dx", in("dx") port, inout("rax") v, options(nostack, preserves_flags)) }
    v
}

#[derive(Clone, Copy)]
pub struct CpuidResult {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

#[inline(always)]
pub fn cpuid(leaf: u32, sub: u32) -> CpuidResult {
    let (eax, ebx, ecx, edx): (u32, u64, u32, u32);
    // RBX is reserved by LLVM: swap it through a scratch register.
    // SAFETY: CPUID never faults and touches no memory (keel intercepts and emulates it);
    // it writes EAX/ECX/EDX, all declared, and RBX, which is saved and restored via {b}.
    unsafe {
        asm!(
            "mov {b}, rbx",
            "cpuid",
            "xchg {b}, rbx",
            b = out(reg) ebx,
            inout("eax") leaf => eax,
            inout("ecx") sub => ecx,
            out("edx") edx,
            options(nostack, preserves_flags),
        )
    }
    CpuidResult {
        eax,
        ebx: ebx as u32,
        ecx,
        edx,
    }
}

/// Vendor string from CPUID leaf 0 (EBX, EDX, ECX).
pub fn vendor() -> [u8; 12] {
    let r = cpuid(0, 0);
    let mut v = [0u8; 12];
    v[0..4].copy_from_slice(&r.ebx.to_le_bytes());
    v[4..8].copy_from_slice(&r.edx.to_le_bytes());
    v[8..12].copy_from_slice(&r.ecx.to_le_bytes());
    v
}

/// `rdmsr` (2 bytes: 0f 32). May fault: see `trap::expect_fault`.
#[inline(always)]
pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: ring 0; rdmsr writes only EAX/EDX and no memory. A #GP for an unknown MSR is
    // either expected (expect_fault skips the 2 bytes) or reported by the handler as DONE(3).
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nostack, preserves_flags))
    }
    (hi as u64) << 32 | lo as u64
}

/// `wrmsr` (2 bytes: 0f 30). May fault: see `trap::expect_fault`.
#[inline(always)]
pub fn wrmsr(msr: u32, v: u64) {
    // SAFETY: ring 0; the guest writes keel's SCRATCH_MSR, the x2APIC EOI MSR and (the spinner)
    // the SYSCALL MSRs, KERNEL_GS_BASE and TSC_AUX, none of which touches memory or state Rust
    // relies on (it never uses SYSCALL, SWAPGS or RDTSCP); a #GP is expected or reported as DONE(3).
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32,
             options(nostack, preserves_flags))
    }
}

/// Which hypercall instruction this CPU has (VT-x: VMCALL, AMD-V: VMMCALL).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum HypercallInsn {
    Vmcall,
    Vmmcall,
}

impl HypercallInsn {
    pub fn detect() -> Self {
        match &vendor() {
            b"AuthenticAMD" | b"HygonGenuine" => HypercallInsn::Vmmcall,
            _ => HypercallInsn::Vmcall,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            HypercallInsn::Vmcall => "vmcall",
            HypercallInsn::Vmmcall => "vmmcall",
        }
    }
}

/// Registers a hypercall must preserve, with the values we load into them.
pub const HC_SENTINELS: [u64; 9] = [
    0x1111_1111_0000_0001, // rbx
    0x2222_2222_0000_0002, // rcx
    0x3333_3333_0000_0003, // rdx
    0x4444_4444_0000_0004, // rsi
    0x5555_5555_0000_0005, // rdi
    0x6666_6666_0000_0008, // r8
    0x7777_7777_0000_0009, // r9
    0x8888_8888_0000_000a, // r10
    0x9999_9999_0000_000b, // r11
];

/// A hypercall (3 bytes: 0f 01 c1 / 0f 01 d9) with RAX = `nr`; returns RAX
/// and the registers of [`HC_SENTINELS`] as they came back.
#[inline(never)]
pub fn hypercall_checked(insn: HypercallInsn, nr: u64) -> (u64, [u64; 9]) {
    let s = HC_SENTINELS;
    let mut out = [0u64; 9];
    let mut rax = nr;
    macro_rules! call {
        ($insn:literal) => {
            // SAFETY: exits to keel, whose dispatch writes only RAX; RBX (via {b}) and RCX-R11 are
            // declared anyway, and it is not `nomem`. Callers wrap it in expect_fault(3, ..).
            unsafe {
                asm!(
                    "xchg {b}, rbx",
                    $insn,
                    "xchg {b}, rbx",
                    b = inout(reg) s[0] => out[0],
                    inout("rax") rax,
                    inout("rcx") s[1] => out[1],
                    inout("rdx") s[2] => out[2],
                    inout("rsi") s[3] => out[3],
                    inout("rdi") s[4] => out[4],
                    inout("r8") s[5] => out[5],
                    inout("r9") s[6] => out[6],
                    inout("r10") s[7] => out[7],
                    inout("r11") s[8] => out[8],
                    options(nostack),
                )
            }
        };
    }
    match insn {
        HypercallInsn::Vmcall => call!("vmcall"),
        HypercallInsn::Vmmcall => call!("vmmcall"),
    }
    (rax, out)
}

/// The plain null hypercall for the benchmark loop.
#[inline(always)]
pub fn hypercall(insn: HypercallInsn, nr: u64) -> u64 {
    let mut rax = nr;
    // SAFETY: exits to keel, whose dispatch writes only RAX (the suite's `hypercall` check
    // verifies the other registers survive); the benchmark's null hypercall touches no memory.
    unsafe {
        match insn {
            HypercallInsn::Vmcall => asm!("vmcall", inout("rax") rax, options(nostack)),
            HypercallInsn::Vmmcall => asm!("vmmcall", inout("rax") rax, options(nostack)),
        }
    }
    rax
}

/// A Xen hypercall: RAX = `nr`, arguments in RDI, RSI, RDX; returns RAX.
#[inline(always)]
pub fn xen_hypercall(insn: HypercallInsn, nr: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let mut rax = nr;
    // SAFETY: exits to keel, whose dispatch writes only RAX, so the `in` registers survive; not
    // `nomem`, so keel may read/write the live locals whose addresses the callers pass.
    unsafe {
        match insn {
            HypercallInsn::Vmcall => {
                asm!("vmcall", inout("rax") rax, in("rdi") a1, in("rsi") a2, in("rdx") a3, options(nostack))
            }
            HypercallInsn::Vmmcall => {
                asm!("vmmcall", inout("rax") rax, in("rdi") a1, in("rsi") a2, in("rdx") a3, options(nostack))
            }
        }
    }
    rax as i64
}

/// Reports the result to keel and never returns.
pub fn done(code: u32) -> ! {
    outl(crate::proto::DONE, code);
    halt_forever()
}

pub fn halt_forever() -> ! {
    loop {
        // SAFETY: ring 0; cli/hlt touch no memory and the function never returns, so halting
        // with interrupts off (until keel ends the guest) breaks nothing Rust relies on.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}

/// Enables SSE for this guest (CR0.EM clear, CR0.MP and CR4.OSFXSR set), so
/// it can look at its own XMM/MXCSR state.
pub fn enable_sse() {
    // SAFETY: ring 0, long mode; only CR0.EM/MP and CR4.OSFXSR change (no memory, RAX is
    // declared), and the soft-float target never emits SSE code that this could affect.
    unsafe {
        asm!(
            "mov rax, cr0",
            "and rax, ~4",
            "or rax, 2",
            "mov cr0, rax",
            "mov rax, cr4",
            "or rax, 0x200",
            "mov cr4, rax",
            out("rax") _,
            options(nostack)
        )
    }
}

/// XMM0's low 64 bits and MXCSR.
pub fn sse_state() -> (u64, u32) {
    let (x, mut m) = (0u64, 0u32);
    let mut x = x;
    // SAFETY: guest_main calls enable_sse first, so these cannot #UD; movq writes only the
    // declared output and stmxcsr writes 4 bytes into `m`, a live local u32.
    unsafe {
        asm!("movq {}, xmm0", out(reg) x, options(nostack, preserves_flags));
        asm!("stmxcsr [{}]", in(reg) &mut m as *mut u32, options(nostack, preserves_flags));
    }
    (x, m)
}

/// Leaves a recognisable value in XMM0 and a non-default MXCSR, for the next
/// guest on this CPU to (not) see.
pub fn dirty_sse(pattern: u64) {
    // Rounding control changed.
    let m: u32 = 0x1f80 ^ 0x6000;
    // SAFETY: SSE is enabled (enable_sse); ldmxcsr reads the 4-byte local `m`. XMM0 and MXCSR
    // are not declared, but the soft-float target never uses SSE registers or SSE FP.
    unsafe {
        asm!("movq xmm0, {}", in(reg) pattern, options(nostack, preserves_flags));
        asm!("ldmxcsr [{}]", in(reg) &m as *const u32, options(nostack, preserves_flags));
    }
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC never faults at CPL 0 and touches no memory; EAX/EDX are declared.
    unsafe {
        asm!("rdtsc", out("eax") lo, out("edx") hi, options(nostack, nomem, preserves_flags))
    };
    (hi as u64) << 32 | lo as u64
}
