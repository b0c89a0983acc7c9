//! Scenario 0: every check, one line each, then a summary and DONE.
// A check's failure detail is a fixed 200-byte buffer; fine here.
#![allow(clippy::result_large_err)]
use core::arch::asm;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::Ordering::SeqCst;

use crate::arch::{self, HypercallInsn};
use crate::console::Msg;
use crate::trap::{self, expect_fault};
use crate::{fail, println, proto};

type Check = fn() -> Result<(), Msg>;

/// In this order (a hang in check N shows as output ending after check N-1).
const CHECKS: &[(&str, Check)] = &[
    ("cpuid", cpuid),
    ("msr", msr),
    ("gp-injection", gp_injection),
    ("io", io),
    ("memory", memory),
    ("on-demand", on_demand),
    ("hlt-timer", hlt_timer),
    ("hypercall", hypercall),
    ("toolstack-eperm", toolstack_eperm),
    ("ud-exception", ud_exception),
    ("svm-insns-ud", svm_insns_ud),
];

pub fn run() -> ! {
    let mut passed = 0;
    for (name, check) in CHECKS {
        match check() {
            Ok(()) => {
                passed += 1;
                println!("check {}: ok", name);
            }
            Err(m) => println!("check {}: FAIL {}", name, m),
        }
    }
    println!("suite: {}/{} checks passed", passed, CHECKS.len());
    arch::done(if passed == CHECKS.len() {
        proto::DONE_PASS
    } else {
        proto::DONE_FAIL
    })
}

fn regs_str(r: &arch::CpuidResult) -> [u8; 12] {
    let mut s = [0u8; 12];
    s[0..4].copy_from_slice(&r.ebx.to_le_bytes());
    s[4..8].copy_from_slice(&r.ecx.to_le_bytes());
    s[8..12].copy_from_slice(&r.edx.to_le_bytes());
    s
}

/// Leaf 0x4000_0000 signature and max leaf; leaf 1 ECX.31 (hypervisor bit).
fn cpuid() -> Result<(), Msg> {
    let r = arch::cpuid(0x4000_0000, 0);
    let sig = regs_str(&r);
    if &sig != b"XenVMMXenVMM" {
        fail!(
            "leaf 0x40000000 signature {:?} (ebx {:#x} ecx {:#x} edx {:#x}), want \"XenVMMXenVMM\"",
            core::str::from_utf8(&sig).unwrap_or("<non-ascii>"),
            r.ebx,
            r.ecx,
            r.edx
        );
    }
    if r.eax < 0x4000_0001 {
        fail!("leaf 0x40000000 eax (max leaf) {:#x} < 0x40000001", r.eax);
    }
    let l1 = arch::cpuid(1, 0);
    if l1.ecx & (1 << 31) == 0 {
        fail!("leaf 1 ecx {:#x}: hypervisor-present bit 31 clear", l1.ecx);
    }
    Ok(())
}

/// SCRATCH_MSR keeps a 64-bit value.
fn msr() -> Result<(), Msg> {
    const V: u64 = 0x1122_3344_5566_7788;
    let ((), f) = expect_fault(2, || arch::wrmsr(proto::SCRATCH_MSR, V));
    if f.count != 0 {
        fail!(
            "wrmsr {:#x} raised vector {} error {:#x}",
            proto::SCRATCH_MSR,
            f.vector,
            f.error
        );
    }
    let (got, f) = expect_fault(2, || arch::rdmsr(proto::SCRATCH_MSR));
    if f.count != 0 {
        fail!(
            "rdmsr {:#x} raised vector {} error {:#x}",
            proto::SCRATCH_MSR,
            f.vector,
            f.error
        );
    }
    if got != V {
        fail!(
            "rdmsr {:#x} = {:#x}, wrote {:#x}",
            proto::SCRATCH_MSR,
            got,
            V
        );
    }
    Ok(())
}

/// rdmsr of an MSR keel does not know: exactly one #GP(0), at the rdmsr.
fn gp_injection() -> Result<(), Msg> {
    const UNKNOWN_MSR: u32 = 0x4000_0fff;
    let (_, f) = expect_fault(2, || arch::rdmsr(UNKNOWN_MSR));
    if f.count != 1 {
        fail!(
            "rdmsr {:#x}: {} exceptions, want exactly one #GP",
            UNKNOWN_MSR,
            f.count
        );
    }
    if f.vector != 13 || f.error != 0 {
        fail!(
            "rdmsr {:#x}: vector {} error {:#x} at rip {:#x}, want #GP (13) error 0",
            UNKNOWN_MSR,
            f.vector,
            f.error,
            f.rip
        );
    }
    Ok(())
}

/// SCRATCH port: `in` returns the last stored value + 1, masked to the
/// access size; narrow `in`s leave the rest of RAX alone.
fn io() -> Result<(), Msg> {
    const JUNK: u64 = 0xa5a5_a5a5_a5a5_a5a5;
    for v in [0x41u8, 0xff] {
        arch::outb(proto::SCRATCH, v);
        let rax = arch::inb_rax(proto::SCRATCH, JUNK);
        let want = (JUNK & !0xff) | v.wrapping_add(1) as u64;
        if rax != want {
            fail!("out8 {:#x}, in8: rax {:#x}, want {:#x}", v, rax, want);
        }
    }
    for v in [0x1234u16, 0xffff] {
        arch::outw(proto::SCRATCH, v);
        let rax = arch::inw_rax(proto::SCRATCH, JUNK);
        let want = (JUNK & !0xffff) | v.wrapping_add(1) as u64;
        if rax != want {
            fail!("out16 {:#x}, in16: rax {:#x}, want {:#x}", v, rax, want);
        }
    }
    for v in [0xdead_beefu32, 0xffff_ffff] {
        arch::outl(proto::SCRATCH, v);
        let rax = arch::inl_rax(proto::SCRATCH, JUNK);
        let want = v.wrapping_add(1) as u64; // 32-bit result zero-extends
        if rax != want {
            fail!("out32 {:#x}, in32: rax {:#x}, want {:#x}", v, rax, want);
        }
    }
    Ok(())
}

fn pattern(addr: u64) -> u64 {
    addr.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5a5a_5a5a_5a5a_5a5a
}

/// Writes then reads back a pattern over [2 MiB, 3 MiB).
fn memory() -> Result<(), Msg> {
    const BASE: u64 = 0x20_0000;
    const END: u64 = 0x30_0000;
    for a in (BASE..END).step_by(8) {
        // SAFETY: [2 MiB, 3 MiB) is guest RAM, identity-mapped and used by nothing else (link.ld
        // keeps the image, stack and page tables below 1 MiB); `a` is 8-aligned.
        unsafe { write_volatile(a as *mut u64, pattern(a)) };
    }
    for a in (BASE..END).step_by(8) {
        // SAFETY: same unused, identity-mapped RAM just written above; `a` is 8-aligned.
        let v = unsafe { read_volatile(a as *const u64) };
        if v != pattern(a) {
            fail!("at {:#x}: read {:#x}, wrote {:#x}", a, v, pattern(a));
        }
    }
    Ok(())
}

/// Touches each 4 KiB page of [ON_DEMAND_BASE, +1 MiB): keel must back
/// each one on first touch (one nested-paging fault each, counted by EXPECT).
fn on_demand() -> Result<(), Msg> {
    const PAGES: u64 = 256;
    let before = arch::inl(proto::EXPECT);
    for p in 0..PAGES {
        let page = proto::ON_DEMAND_BASE + p * 4096;
        for a in [page, page + 4088] {
            // SAFETY: the on-demand region is identity-mapped, backed by keel on first touch and
            // holds no Rust object; `a` is 8-aligned and within the page.
            unsafe { write_volatile(a as *mut u64, pattern(a)) };
        }
    }
    for p in 0..PAGES {
        let page = proto::ON_DEMAND_BASE + p * 4096;
        for a in [page, page + 4088] {
            // SAFETY: the same on-demand words written above (now backed); `a` is 8-aligned.
            let v = unsafe { read_volatile(a as *const u64) };
            if v != pattern(a) {
                fail!("at {:#x}: read {:#x}, wrote {:#x}", a, v, pattern(a));
            }
        }
    }
    let after = arch::inl(proto::EXPECT);
    if after < PAGES as u32 || after.wrapping_sub(before) < PAGES as u32 {
        fail!(
            "EXPECT (nested faults served) {} before, {} after: want >= {} new",
            before,
            after,
            PAGES
        );
    }
    Ok(())
}

/// Arms keel's one-shot timer (1000 us) three times and sleeps in HLT
/// until the TIMER_VECTOR handler has counted each tick.
fn hlt_timer() -> Result<(), Msg> {
    const ROUNDS: u32 = 3;
    #[cfg(feature = "qemu-smoke")]
    smoke::init_pic();
    let start = trap::TICKS.load(SeqCst);
    for round in 0..ROUNDS {
        let before = trap::TICKS.load(SeqCst);
        if before != start + round {
            fail!(
                "round {}: {} ticks so far, want {}",
                round,
                before - start,
                round
            );
        }
        arch::outl(proto::TIMER, 1000);
        #[cfg(feature = "qemu-smoke")]
        smoke::arm_pit_1ms();
        let mut wakeups = 0u32;
        while trap::TICKS.load(SeqCst) == before {
            // STI's shadow covers HLT: no tick can slip in between.
            // SAFETY: ring 0, no memory touched; the IDT has a TIMER_VECTOR gate whose handler
            // counts and EOIs the tick, and cli restores interrupts-off before returning.
            unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) };
            wakeups += 1;
        }
        let _ = wakeups;
    }
    let got = trap::TICKS.load(SeqCst) - start;
    if got != ROUNDS {
        fail!("{} ticks, want {}", got, ROUNDS);
    }
    Ok(())
}

/// Null hypercall returns 0, an unknown one -ENOSYS; both preserve every
/// register but RAX. VMCALL on Intel-compatible CPUs, VMMCALL on AMD.
fn hypercall() -> Result<(), Msg> {
    let insn = HypercallInsn::detect();
    for (nr, want) in [(0u64, 0u64), (56, proto::ENOSYS as u64)] {
        let ((rax, regs), f) = expect_fault(3, || arch::hypercall_checked(insn, nr));
        if f.count != 0 {
            fail!(
                "{} rax={}: raised vector {} error {:#x}",
                insn.name(),
                nr,
                f.vector,
                f.error
            );
        }
        if rax != want {
            fail!(
                "{} rax={}: returned {:#x} ({}), want {}",
                insn.name(),
                nr,
                rax,
                rax as i64,
                want as i64
            );
        }
        const NAMES: [&str; 9] = ["rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11"];
        for i in 0..9 {
            if regs[i] != arch::HC_SENTINELS[i] {
                fail!(
                    "{} rax={}: {} changed {:#x} -> {:#x}",
                    insn.name(),
                    nr,
                    NAMES[i],
                    arch::HC_SENTINELS[i],
                    regs[i]
                );
            }
        }
    }
    Ok(())
}

/// The toolstack's calls are dom0's alone: this guest is not dom0, so
/// sysctl (35) and domctl (36) each get -EPERM, before keel reads the
/// argument (RDI holds a sentinel, not a pointer, so any read would have
/// answered -EFAULT instead).
fn toolstack_eperm() -> Result<(), Msg> {
    const EPERM: i64 = -1;
    let insn = HypercallInsn::detect();
    for (nr, what) in [(35, "sysctl"), (36, "domctl")] {
        let ((rax, _), f) = expect_fault(3, || arch::hypercall_checked(insn, nr));
        if f.count != 0 {
            fail!(
                "{} rax={} ({what}): raised vector {}",
                insn.name(),
                nr,
                f.vector
            );
        }
        if rax as i64 != EPERM {
            fail!(
                "{} rax={} ({what}): returned {}, want {} (EPERM)",
                insn.name(),
                nr,
                rax as i64,
                EPERM
            );
        }
    }
    Ok(())
}

/// ud2 raises #UD in the guest's own IDT (keel does not intercept it).
fn ud_exception() -> Result<(), Msg> {
    // SAFETY: deliberate #UD: expect_fault(2, ..) makes the handler record vector 6 and skip
    // the 2-byte ud2, so execution continues right after it.
    let ((), f) = expect_fault(2, || unsafe { asm!("ud2", options(nomem, nostack)) });
    if f.count != 1 || f.vector != 6 {
        fail!(
            "ud2: {} exceptions, last vector {}, want exactly one #UD (6)",
            f.count,
            f.vector
        );
    }
    Ok(())
}

/// The SVM instructions raise #UD: keel offers no nested virtualization
/// (SVM is absent from CPUID and EFER.SVME reads 0). On AMD-V keel must
/// intercept them: the guest's real EFER.SVME is set, and an unintercepted
/// VMSAVE would write host memory at RAX, CLGI would block the host's
/// interrupts. On Intel CPUs they are #UD natively.
fn svm_insns_ud() -> Result<(), Msg> {
    // RAX = 0 for the ones that take an address: page 0 is keel's, never
    // a guest's, so even a missing intercept would harm no domain.
    macro_rules! ud3 {
        ($name:literal, $b2:literal) => {{
            // SAFETY: a 3-byte instruction expected to raise #UD; the
            // handler skips it. RAX/ECX are inputs for VMLOAD/VMSAVE/VMRUN/
            // INVLPGA/SKINIT; none writes memory when it faults.
            let ((), f) = expect_fault(3, || unsafe {
                asm!(concat!(".byte 0x0f, 0x01, ", $b2), in("rax") 0u64, in("ecx") 0u32, options(nostack))
            });
            if f.count != 1 || f.vector != 6 {
                fail!(
                    "{}: {} exceptions, last vector {}, want exactly one #UD (6)",
                    $name,
                    f.count,
                    f.vector
                );
            }
        }};
    }
    ud3!("vmrun", "0xd8");
    ud3!("vmload", "0xda");
    ud3!("vmsave", "0xdb");
    ud3!("stgi", "0xdc");
    ud3!("clgi", "0xdd");
    ud3!("skinit", "0xde");
    ud3!("invlpga", "0xdf");
    Ok(())
}

/// Plain-QEMU stand-in for keel's TIMER port: 8259 remapped so IRQ0 is
/// TIMER_VECTOR, PIT channel 0 one-shot, LAPIC in virtual-wire mode.
#[cfg(feature = "qemu-smoke")]
mod smoke {
    use crate::arch::outb;
    pub fn init_pic() {
        for (port, v) in [
            (0x20, 0x11),
            (0xa0, 0x11), // ICW1
            (0x21, 0x30),
            (0xa1, 0x38), // ICW2: vector bases
            (0x21, 0x04),
            (0xa1, 0x02), // ICW3
            (0x21, 0x01),
            (0xa1, 0x01), // ICW4: 8086 mode
            (0x21, 0xfe),
            (0xa1, 0xff), // mask all but IRQ0
        ] {
            outb(port, v);
        }
        // Firmware normally sets LAPIC LINT0 to ExtINT (virtual wire); we
        // have no firmware. LAPIC at 0xfee0_0000 (identity-mapped).
        // SAFETY: qemu-smoke only: the LAPIC MMIO page is identity-mapped (below 4 GiB) and holds
        // no Rust object; these are aligned 32-bit register writes.
        unsafe {
            core::ptr::write_volatile(0xfee0_00f0 as *mut u32, 0x1ff); // SVR: enable
            core::ptr::write_volatile(0xfee0_0350 as *mut u32, 0x700); // LVT0: ExtINT
        }
    }
    pub fn arm_pit_1ms() {
        const COUNT: u16 = 1193; // 1.193182 MHz
        outb(0x43, 0x30); // channel 0, lo/hi, mode 0 (one-shot)
        outb(0x40, COUNT as u8);
        outb(0x40, (COUNT >> 8) as u8);
    }
}
