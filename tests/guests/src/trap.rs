//! IDT for vectors 0-31 and TIMER_VECTOR, one common handler in Rust.
//!
//! Checks that provoke a fault on purpose wrap the instruction in
//! [`expect_fault`]: the handler records the fault and skips the faulting
//! instruction by a known length. Any other exception is reported and ends
//! the guest with DONE(3).
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};

use crate::{arch, println, proto};

/// Register frame built by `keel_isr_common` (lowest address first).
#[repr(C)]
pub struct Frame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

core::arch::global_asm!(
    r#"
    .pushsection .text.keel_isr, "ax"
    .macro ISR_NOERR v
keel_isr_\v:
    pushq   $0
    pushq   $\v
    jmp     keel_isr_common
    .endm
    .macro ISR_ERR v
keel_isr_\v:
    pushq   $\v
    jmp     keel_isr_common
    .endm

    ISR_NOERR 0
    ISR_NOERR 1
    ISR_NOERR 2
    ISR_NOERR 3
    ISR_NOERR 4
    ISR_NOERR 5
    ISR_NOERR 6
    ISR_NOERR 7
    ISR_ERR   8
    ISR_NOERR 9
    ISR_ERR   10
    ISR_ERR   11
    ISR_ERR   12
    ISR_ERR   13
    ISR_ERR   14
    ISR_NOERR 15
    ISR_NOERR 16
    ISR_ERR   17
    ISR_NOERR 18
    ISR_NOERR 19
    ISR_NOERR 20
    ISR_ERR   21
    ISR_NOERR 22
    ISR_NOERR 23
    ISR_NOERR 24
    ISR_NOERR 25
    ISR_NOERR 26
    ISR_NOERR 27
    ISR_NOERR 28
    ISR_ERR   29
    ISR_ERR   30
    ISR_NOERR 31
    ISR_NOERR 48

keel_isr_common:
    pushq   %rax
    pushq   %rbx
    pushq   %rcx
    pushq   %rdx
    pushq   %rsi
    pushq   %rdi
    pushq   %rbp
    pushq   %r8
    pushq   %r9
    pushq   %r10
    pushq   %r11
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    movq    %rsp, %rdi              # &mut Frame; RSP is 16-byte aligned here
    cld
    call    keel_guest_trap
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %r11
    popq    %r10
    popq    %r9
    popq    %r8
    popq    %rbp
    popq    %rdi
    popq    %rsi
    popq    %rdx
    popq    %rcx
    popq    %rbx
    popq    %rax
    addq    $16, %rsp               # vector, error code
    iretq
    .popsection

    .pushsection .rodata.keel_isr_table, "a"
    .balign 8
    .global keel_isr_table
keel_isr_table:
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,48
    .quad   keel_isr_\v
    .endr
    .popsection
"#,
    options(att_syntax)
);

extern "C" {
    /// Stub addresses for vectors 0..=31 then TIMER_VECTOR.
    static keel_isr_table: [u64; 33];
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_lo: u16,
    selector: u16,
    ist: u8,
    attr: u8,
    offset_mid: u16,
    offset_hi: u32,
    zero: u32,
}

const CODE64_SELECTOR: u16 = 0x18;

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static mut IDT: Idt = Idt([Gate {
    offset_lo: 0,
    selector: 0,
    ist: 0,
    attr: 0,
    offset_mid: 0,
    offset_hi: 0,
    zero: 0,
}; 256]);

#[repr(C, packed)]
struct DescriptorPtr {
    limit: u16,
    base: u64,
}

pub fn init() {
    let idt = core::ptr::addr_of_mut!(IDT);
    // SAFETY: keel_isr_table is defined by the global_asm! above as 33 .quad stub addresses in
    // .rodata, matching the declared [u64; 33], and nothing ever writes it.
    for (i, &handler) in unsafe { keel_isr_table }.iter().enumerate() {
        let vector = if i < 32 {
            i
        } else {
            proto::TIMER_VECTOR as usize
        };
        let gate = Gate {
            offset_lo: handler as u16,
            selector: CODE64_SELECTOR,
            ist: 0,
            attr: 0x8e, // present, DPL 0, 64-bit interrupt gate (clears IF)
            offset_mid: (handler >> 16) as u16,
            offset_hi: (handler >> 32) as u32,
            zero: 0,
        };
        // SAFETY: runs once, single vCPU, interrupts off and the IDT not yet loaded, so nothing
        // else accesses IDT; the write goes through a raw pointer and vector < 256.
        unsafe { (*idt).0[vector] = gate };
    }
    let ptr = DescriptorPtr {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: idt as u64,
    };
    // SAFETY: lidt only reads `ptr`; its base is IDT, a static that outlives every later use,
    // and each present gate points at a stub from keel_isr_table.
    unsafe {
        core::arch::asm!("lidt [{}]", in(reg) &ptr, options(readonly, nostack, preserves_flags))
    };
}

/// Loads an empty IDT: the next exception escalates to a triple fault.
pub fn load_empty_idt() {
    let ptr = DescriptorPtr { limit: 0, base: 0 };
    // SAFETY: lidt only reads the local `ptr`. The empty IDT is deliberate: the triple-fault
    // scenario wants its next exception to escalate so keel ends the guest; it never returns.
    unsafe {
        core::arch::asm!("lidt [{}]", in(reg) &ptr, options(readonly, nostack, preserves_flags))
    };
}

/// Timer interrupts seen so far.
pub static TICKS: AtomicU32 = AtomicU32::new(0);

/// Non-zero while a fault is expected: the length to skip.
static SKIP: AtomicU64 = AtomicU64::new(0);
static FAULTS: AtomicU32 = AtomicU32::new(0);
static FAULT_VECTOR: AtomicU64 = AtomicU64::new(0);
static FAULT_ERROR: AtomicU64 = AtomicU64::new(0);
static FAULT_RIP: AtomicU64 = AtomicU64::new(0);

/// What faulted inside an [`expect_fault`] region.
#[derive(Clone, Copy)]
pub struct Faults {
    /// How many exceptions were taken (each one skipped).
    pub count: u32,
    /// The last one's vector, error code and RIP.
    pub vector: u64,
    pub error: u64,
    pub rip: u64,
}

/// Runs `f`; any exception it raises is recorded and the faulting
/// instruction is skipped by `insn_len` bytes (so `f` must be one asm
/// instruction of that length, e.g. rdmsr/wrmsr/ud2 = 2, vmcall = 3).
pub fn expect_fault<R>(insn_len: u8, f: impl FnOnce() -> R) -> (R, Faults) {
    FAULTS.store(0, SeqCst);
    SKIP.store(insn_len as u64, SeqCst);
    let r = f();
    SKIP.store(0, SeqCst);
    let faults = Faults {
        count: FAULTS.load(SeqCst),
        vector: FAULT_VECTOR.load(SeqCst),
        error: FAULT_ERROR.load(SeqCst),
        rip: FAULT_RIP.load(SeqCst),
    };
    (r, faults)
}

#[no_mangle]
extern "C" fn keel_guest_trap(f: &mut Frame) {
    if f.vector == proto::TIMER_VECTOR as u64 {
        // keel's TIMER port arms the local APIC timer: EOI it (x2APIC).
        TICKS.fetch_add(1, SeqCst);
        #[cfg(feature = "qemu-smoke")]
        arch::outb(0x20, 0x20); // 8259 EOI
        #[cfg(not(feature = "qemu-smoke"))]
        arch::wrmsr(0x80b, 0);
        return;
    }
    let skip = SKIP.load(SeqCst);
    if skip != 0 && f.vector < 32 {
        FAULTS.fetch_add(1, SeqCst);
        FAULT_VECTOR.store(f.vector, SeqCst);
        FAULT_ERROR.store(f.error, SeqCst);
        FAULT_RIP.store(f.rip, SeqCst);
        f.rip += skip;
        return;
    }
    println!(
        "unexpected exception: vector {} error {:#x} rip {:#x} rsp {:#x} rflags {:#x}",
        f.vector, f.error, f.rip, f.rsp, f.rflags
    );
    if f.vector == 14 {
        let cr2: u64;
        // SAFETY: ring 0; reading CR2 has no side effects and writes only the declared output.
        unsafe { core::arch::asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack)) };
        println!("  page fault address {:#x}", cr2);
    }
    arch::done(proto::DONE_UNEXPECTED_EXCEPTION)
}
