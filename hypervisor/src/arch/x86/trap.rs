//! The IDT, the interrupt entry stubs and exception diagnostics.
//!
//! All 256 vectors enter through one assembly stub each (16 bytes apart),
//! which saves every general register into a [`TrapFrame`] and calls
//! [`keel_trap_dispatch`]. Exceptions inside the hypervisor are fatal: the
//! diagnostic names the vector, error code, RIP, CR2, every register and the
//! CPU, then keel stops (reporting failure in test mode).

use super::cpu;
use super::gdt;

#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
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
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}
const _: () = assert!(core::mem::size_of::<TrapFrame>() == 22 * 8);

// Vectors whose exceptions push an error code (SDM vol. 3, 6.15).
core::arch::global_asm!(
    r#"
    .section .text.keel_trap, "ax"
    .balign 16
    .global keel_isr_stubs
keel_isr_stubs:
    .set vec, 0
    .rept 256
    .balign 16
    .if (vec == 8) + (vec == 10) + (vec == 11) + (vec == 12) + (vec == 13) + (vec == 14) + (vec == 17) + (vec == 21) + (vec == 29) + (vec == 30)
    .else
    push 0
    .endif
    push vec
    jmp keel_isr_common
    .set vec, vec + 1
    .endr

keel_isr_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rdi, rsp
    cld
    call keel_trap_dispatch
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16
    iretq
"#
);

extern "C" {
    static keel_isr_stubs: u8;
}

/// One IDT gate descriptor (SDM vol. 3, 6.14.1).
#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}
const _: () = assert!(core::mem::size_of::<Gate>() == 16);

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static mut IDT: Idt = Idt([Gate {
    offset_low: 0,
    selector: 0,
    ist: 0,
    type_attr: 0,
    offset_mid: 0,
    offset_high: 0,
    reserved: 0,
}; 256]);

pub const VECTOR_TIMER: u8 = 0xf0;
pub const VECTOR_WAKE: u8 = 0xf1;
pub const VECTOR_SPURIOUS: u8 = 0xff;

/// Fills the IDT (once, on the boot CPU).
pub fn init_idt() {
    let base = core::ptr::addr_of!(keel_isr_stubs) as u64;
    for v in 0..256usize {
        let addr = base + 16 * v as u64;
        let ist = match v {
            2 => gdt::IST_NMI,
            8 => gdt::IST_DOUBLE_FAULT,
            18 => gdt::IST_MACHINE_CHECK,
            _ => 0,
        } as u8;
        let gate = Gate {
            offset_low: addr as u16,
            selector: 0x08,
            ist,
            type_attr: 0x8e, // present, DPL0, 64-bit interrupt gate
            offset_mid: (addr >> 16) as u16,
            offset_high: (addr >> 32) as u32,
            reserved: 0,
        };
        // SAFETY: the IDT is written only here, before any CPU loads it.
        unsafe { (*core::ptr::addr_of_mut!(IDT)).0[v] = gate };
    }
}

/// Loads the IDT on this CPU. GDT selector 0x08 must be the code segment.
pub fn load_idt() {
    let ptr = x86_64::structures::DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: x86_64::VirtAddr::new(core::ptr::addr_of!(IDT) as u64),
    };
    // SAFETY: the table is complete (init_idt ran) and lives forever.
    unsafe { x86_64::instructions::tables::lidt(&ptr) };
}

const NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack fault",
    "#GP general protection",
    "#PF page fault",
    "reserved",
    "#MF x87 error",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD error",
    "#VE virtualization",
    "#CP control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security",
    "reserved",
];

#[no_mangle]
extern "C" fn keel_trap_dispatch(f: &mut TrapFrame) {
    match f.vector as u8 {
        0..=31 => fatal_exception(f),
        VECTOR_SPURIOUS => {}
        v if super::irq::raise(v) => {} // dom0's: EOI later
        _ => super::apic::eoi(),
    }
}

fn fatal_exception(f: &TrapFrame) -> ! {
    use crate::console::emergency_write as w;
    let cpu = gdt::cpu_index();
    let v = f.vector as usize;
    w(format_args!(
        "*** FATAL: CPU{cpu}: exception {} (vector {v}) in the hypervisor",
        NAMES[v]
    ));
    if v == 14 {
        let e = f.error_code;
        w(format_args!(
            "    error code {e:#x} [{} {} {}{}] at CR2 {:#018x}",
            if e & 1 != 0 {
                "protection"
            } else {
                "not-present"
            },
            if e & 2 != 0 { "write" } else { "read" },
            if e & 4 != 0 { "user" } else { "supervisor" },
            if e & 16 != 0 {
                " instruction-fetch"
            } else {
                ""
            },
            cpu::read_cr2()
        ));
    } else {
        w(format_args!("    error code {:#x}", f.error_code));
    }
    w(format_args!(
        "    RIP {:#018x}  CS {:#06x}  RFLAGS {:#010x}",
        f.rip, f.cs, f.rflags
    ));
    w(format_args!(
        "    RSP {:#018x}  SS {:#06x}  CR2 {:#018x}",
        f.rsp,
        f.ss,
        cpu::read_cr2()
    ));
    w(format_args!(
        "    CR0 {:#018x}  CR3 {:#018x}  CR4 {:#018x}",
        cpu::read_cr0(),
        cpu::read_cr3(),
        cpu::read_cr4()
    ));
    w(format_args!(
        "    RAX {:#018x}  RBX {:#018x}  RCX {:#018x}",
        f.rax, f.rbx, f.rcx
    ));
    w(format_args!(
        "    RDX {:#018x}  RSI {:#018x}  RDI {:#018x}",
        f.rdx, f.rsi, f.rdi
    ));
    w(format_args!(
        "    RBP {:#018x}  R8  {:#018x}  R9  {:#018x}",
        f.rbp, f.r8, f.r9
    ));
    w(format_args!(
        "    R10 {:#018x}  R11 {:#018x}  R12 {:#018x}",
        f.r10, f.r11, f.r12
    ));
    w(format_args!(
        "    R13 {:#018x}  R14 {:#018x}  R15 {:#018x}",
        f.r13, f.r14, f.r15
    ));
    crate::fatal::fatal_stop("exception")
}
