//! The one exit-handling path, for every guest: CPUID, MSRs, port I/O,
//! HLT, nested-paging faults, hypercalls, XSETBV and the fatal exits, plus
//! the interrupt delivery before each entry. Where guests differ, the
//! domain's [`Kind`] says how: a Xen PVH guest (dom0 with the machine's
//! devices, or not) or keel's test guest with its ports and on-demand
//! memory ([`super::testproto`]).

use super::cpuid;
use super::testproto::{self as tp, TestState};
use super::vcpu::{io_in_result, Event, Exit};
use super::vlapic;
use crate::domain::{Kind, Outcome, ShutdownReason, Wait};
use crate::hypercall::{self, Ctx, Next};
use crate::mm::p2m::Perm;
use crate::xen::abi;
use alloc::format;
use alloc::string::String;
use core::sync::atomic::Ordering;

/// What the vCPU does after an exit.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Go,
    /// Off the CPU until its wake condition (`Domain::ready`).
    Block(Wait),
    End(Outcome),
}

/// A PVH guest that exits this often is stopped (a safety net).
const PVH_MAX_EXITS: u64 = 400_000_000;

/// Serves one exit of the vCPU in `cx`.
pub fn handle(cx: &mut Ctx, exit: Exit) -> Step {
    let exits = cx.vcpu.stats.exits.fetch_add(1, Ordering::Relaxed) + 1;
    cx.vcpu.stats.by_reason.count(&exit);
    let limit = if cx.dom.is_test() {
        tp::MAX_EXITS
    } else {
        PVH_MAX_EXITS
    };
    if exits > limit {
        return kill(format!("exceeded {limit} exits"));
    }
    match exit {
        Exit::Cpuid { len } => {
            let max_apic_id = cx.dom.vcpus.iter().map(|v| v.apic_id).max().unwrap_or(0);
            let c = cpuid::Ctx {
                apic_id: cx.vcpu.apic_id,
                topo: cpuid::Topology::new(cx.dom.vcpus.len() as u32, max_apic_id),
                features: cx.dom.tools.features(),
                ..cpuid::Ctx::new(cx.vcpu.id, cx.dom.id)
            };
            cpuid::emulate(cx.hw, c, len);
        }
        Exit::MsrRead { msr, len } => match rdmsr(cx, msr) {
            Some(x) => cx.hw.complete_rdmsr(x, len),
            None => cx.hw.inject_gp(),
        },
        Exit::MsrWrite { msr, value, len } => match wrmsr(cx, msr, value) {
            Ok(()) => cx.hw.skip(len),
            Err(()) => cx.hw.inject_gp(),
        },
        Exit::Io {
            port,
            size,
            write,
            string,
            len,
            ..
        } => {
            if string {
                return kill(format!("string I/O on port {port:#x} is not supported"));
            }
            return io(cx, port, size, write, len);
        }
        Exit::Hypercall { len } => {
            let r = *cx.hw.regs();
            let next = if cx.dom.is_test() && r.rax == 0 {
                // The test protocol's null hypercall.
                Next::Go
            } else {
                hypercall::dispatch(cx)
            };
            cx.hw.skip(len);
            return match next {
                Next::Go => Step::Go,
                Next::Block(w) => block_unless_interrupt_queued(cx, w),
                Next::End(o) => Step::End(o),
            };
        }
        Exit::Hlt { len } => {
            cx.hw.skip(len);
            if cx.hw.regs().rflags & (1 << 9) != 0 {
                return block_unless_interrupt_queued(cx, Wait::Halt);
            }
            if cx.dom.is_test() {
                return kill(String::from("halted with interrupts disabled"));
            }
            return Step::Block(Wait::Park);
        }
        Exit::Pause { len } => {
            // A spin-wait loop (the pause filter counted enough PAUSEs):
            // whatever it waits for may be a vCPU queued on this CPU.
            cx.hw.skip(len);
            crate::sched::yield_(cx.vcpu.sched_ref());
        }
        Exit::MonitorMwait => cx.hw.inject_ud(),
        Exit::Xsetbv { len } => {
            let r = *cx.hw.regs();
            let value = (r.rdx << 32) | (r.rax & 0xffff_ffff);
            if r.rcx as u32 == 0 && cx.hw.set_xcr0(value) {
                cx.hw.skip(len);
            } else {
                cx.hw.inject_gp();
            }
        }
        Exit::NestedPageFault {
            gpa,
            access,
            present,
        } => return npf(cx, gpa, access, present),
        Exit::ExternalInterrupt | Exit::InterruptWindow | Exit::PreemptionTimer => {}
        Exit::TripleFault => {
            log::info!(
                "d{}v{}: triple fault; {}",
                cx.dom.id,
                cx.vcpu.id,
                walk_report(cx, cx.hw.regs().rip)
            );
            // A domU shuts down as Xen's hvm_triple_fault does, for the
            // reason its toolstack chose (reboot unless it set one). dom0
            // and test guests are killed: their diagnostics matter more.
            if let Kind::Pvh {
                passthrough: false, ..
            } = cx.dom.kind
            {
                let code = cx.dom.xen.lock().params[abi::hvm_param::TRIPLE_FAULT_REASON as usize];
                if let Some(r) = ShutdownReason::from_code(code as u32) {
                    return Step::End(Outcome::Shutdown(r));
                }
            }
            return kill(String::from("triple fault"));
        }
        Exit::Init | Exit::Sipi { .. } => return kill(String::from("unexpected INIT/SIPI")),
        Exit::CrAccess { cr, .. } => return kill(format!("unexpected CR{cr} access exit")),
        Exit::Exception { vector, error_code } => {
            return kill(format!("exception {vector} (error code {error_code:?})"))
        }
        Exit::InvalidGuestState { detail, code } => {
            return kill(format!("invalid guest state: {detail} (code {code:#x})"))
        }
        Exit::Unhandled { reason } => return kill(format!("unhandled exit {reason:#x}")),
    }
    Step::Go
}

/// The guest's 4-level page walk for `la`, each level's table as
/// guest-physical -> host-physical and the entry read there: what a guest
/// killed by a fault at `la` saw (a page walk keel did not disturb reads the
/// same entries).
fn walk_report(cx: &Ctx, la: u64) -> String {
    use core::fmt::Write;
    let [cr0, cr3, cr4, efer] = cx.hw.control_regs();
    let mut out =
        format!("page walk for {la:#x} (CR0 {cr0:#x} CR3 {cr3:#x} CR4 {cr4:#x} EFER {efer:#x}):");
    if cr0 & (1 << 31) == 0 || efer & (1 << 10) == 0 {
        out.push_str(" not in long mode");
        return out;
    }
    let mut table = cr3 & 0x000f_ffff_ffff_f000;
    for level in (1..=4).rev() {
        let gpa = table + ((la >> (12 + 9 * (level - 1))) & 0x1ff) * 8;
        let Some(hpa) = cx.dom.mem.translate(gpa) else {
            let _ = write!(out, " L{level} table {table:#x} unmapped");
            break;
        };
        let mut b = [0u8; 8];
        crate::mm::phys::read(hpa, &mut b);
        let e = u64::from_le_bytes(b);
        let _ = write!(out, " L{level} {gpa:#x}->{hpa:#x}={e:#x}");
        if e & 1 == 0 || level == 1 || (level <= 3 && e & 0x80 != 0) {
            break;
        }
        table = e & 0x000f_ffff_ffff_f000;
    }
    out
}

fn kill(why: String) -> Step {
    Step::End(Outcome::Killed(why))
}

fn test_state<'a>(cx: &'a Ctx) -> Option<&'a spin::Mutex<TestState>> {
    match &cx.dom.kind {
        Kind::Test(t) => Some(t),
        _ => None,
    }
}

// --- MSRs -------------------------------------------------------------------

fn rdmsr(cx: &mut Ctx, msr: u32) -> Option<u64> {
    if let Some(t) = test_state(cx) {
        if msr == tp::SCRATCH_MSR {
            return Some(t.lock().scratch_msr);
        }
    }
    let now = cx.dom.now_ns();
    let st = cx.vcpu.st.lock();
    Some(match msr {
        0x10 => crate::platform::tsc(), // TSC
        // APIC base: enabled, in x2APIC mode (EXTD), as firmware that
        // enabled x2APIC leaves it; the BSP flag on vCPU 0.
        0x1b => 0xfee0_0000 | (1 << 11) | (1 << 10) | (((cx.vcpu.id == 0) as u64) << 8),
        vlapic::MSR_BASE..=vlapic::MSR_END => st.lapic.read(msr, now).ok()?,
        // Microcode revision: none. IA32_TSC_ADJUST: 0 (keel never
        // offsets the TSC; Linux reads it where CPUID offers it).
        0x8b | 0x3b => 0,
        // MTRRcap, MTRRdefType: no MTRRs (Linux then treats the memory
        // types as the hypervisor's business, as on Xen).
        0xfe | 0x2ff => 0,
        0xc000_0103 => st.tsc_aux,
        0x277 => st.pat,
        // AMD SYSCFG: nothing enabled. NB_CFG: nothing set (Linux reads
        // it, unguarded, on some AMD families).
        0xc001_0010 | 0xc001_001f => 0,
        // AMD HWCR: the TSC counts at the P0 frequency (TscFreqSel), as Xen
        // reports; Linux checks it, unguarded, where TSC is invariant.
        HWCR if crate::platform::amd() => HWCR_TSC_FREQ_SEL,
        // AMD OS visible workarounds (CPUID 0x8000_0001 ECX[9]): no errata
        // IDs known, so Linux goes by family and model.
        0xc001_0140 | 0xc001_0141 if crate::platform::amd() => 0,
        // IA32_MISC_ENABLE: fast strings; no BTS, no PEBS; XD not
        // disabled. Linux's early verify_cpu reads it without a fault
        // handler on Intel CPUs.
        0x1a0 => 1 | (1 << 11) | (1 << 12),
        _ => {
            log::debug!("d{}v{}: rdmsr {msr:#x}: #GP", cx.dom.id, cx.vcpu.id);
            return None;
        }
    })
}

const HWCR: u32 = 0xc001_0015;
const HWCR_TSC_FREQ_SEL: u64 = 1 << 24;

fn wrmsr(cx: &mut Ctx, msr: u32, value: u64) -> Result<(), ()> {
    if let Some(t) = test_state(cx) {
        if msr == tp::SCRATCH_MSR {
            t.lock().scratch_msr = value;
            return Ok(());
        }
    }
    match msr {
        vlapic::MSR_BASE..=vlapic::MSR_END => {
            let now = cx.dom.now_ns();
            let (ipi, phys_eoi) = {
                let mut st = cx.vcpu.st.lock();
                let eoi = (msr == vlapic::EOI)
                    .then(|| st.lapic.in_service())
                    .flatten();
                let ipi = st.lapic.write(msr, value, now).map_err(|_| ())?;
                let mut phys_eoi = false;
                if let Some(vec) = eoi {
                    let pv = &mut st.phys_vectors[vec as usize / 64];
                    if *pv & (1 << (vec % 64)) != 0 {
                        // dom0 is done with a level-triggered device
                        // interrupt: the physical local APIC (and the
                        // line) may go on.
                        *pv &= !(1 << (vec % 64));
                        phys_eoi = true;
                    }
                }
                (ipi, phys_eoi)
            };
            if phys_eoi {
                crate::platform::device_eoi(cx.vcpu.apic_id);
            }
            if let Some(ipi) = ipi {
                cx.dom.route_ipi(cx.vcpu, ipi);
            }
        }
        0xc000_0103 => cx.vcpu.st.lock().tsc_aux = value & 0xffff_ffff,
        // IA32_PAT: each byte a valid type (0, 1, 4, 5, 6, 7).
        0x277 => {
            if value
                .to_le_bytes()
                .iter()
                .any(|&t| matches!(t, 2 | 3) || t > 7)
            {
                return Err(());
            }
            cx.vcpu.st.lock().pat = value;
        }
        // APIC base: x2APIC stays enabled (keel has no xAPIC MMIO).
        0x1b => {}
        // IA32_BIOS_SIGN_ID (Linux writes 0 before reading the microcode
        // revision) and IA32_MISC_ENABLE: accepted, ignored.
        0x8b | 0x1a0 => {}
        // IA32_TSC_ADJUST: keel does not let a guest move the TSC; writing
        // the value it reads (0) is all Linux does.
        0x3b if value == 0 => {}
        // AMD NB_CFG: accepted, ignored (see rdmsr).
        0xc001_001f => {}
        // AMD HWCR: only the value it reads.
        HWCR if crate::platform::amd() && value == HWCR_TSC_FREQ_SEL => {}
        cpuid::HYPERCALL_PAGE_MSR if !cx.dom.is_test() => {
            if let Err(e) = write_hypercall_page(cx, value & !0xfff) {
                log::warn!("d{}: {e}", cx.dom.id);
                return Err(());
            }
        }
        _ => {
            log::debug!(
                "d{}v{}: wrmsr {msr:#x} <- {value:#x}: #GP",
                cx.dom.id,
                cx.vcpu.id
            );
            return Err(());
        }
    }
    Ok(())
}

/// Fills the hypercall page: entry `i` is `mov eax, i; vmcall|vmmcall; ret`.
fn write_hypercall_page(cx: &Ctx, gpa: u64) -> Result<(), String> {
    let call = cx.hw.hypercall_insn();
    let mut page = [0xccu8; 4096];
    for i in 0..(4096 / abi::HYPERCALL_PAGE_ENTRY_SIZE) {
        let e = &mut page[i * abi::HYPERCALL_PAGE_ENTRY_SIZE..];
        e[0] = 0xb8;
        e[1..5].copy_from_slice(&(i as u32).to_le_bytes());
        e[5..8].copy_from_slice(&call);
        e[8] = 0xc3;
    }
    if gpa >> 12 >= cx.dom.mem.gfn_limit() || !cx.dom.mem.write(gpa, &page) {
        return Err(format!(
            "hypercall page at {gpa:#x} is outside the domain's memory"
        ));
    }
    log::debug!("d{}: hypercall page at {gpa:#x}", cx.dom.id);
    Ok(())
}

// --- port I/O ---------------------------------------------------------------

use crate::domain::acpi::RESET_PORT;
/// The 8042's command port (0xfe: pulse reset).
pub const KBD_COMMAND_PORT: u16 = 0x64;
/// COM1, keel's console.
pub const COM1: core::ops::RangeInclusive<u16> = 0x3f8..=0x3ff;

fn io(cx: &mut Ctx, port: u16, size: u8, write: bool, len: u8) -> Step {
    let mask = if size >= 4 {
        0xffff_ffffu64
    } else {
        (1u64 << (size * 8)) - 1
    };
    let val = cx.hw.regs().rax & mask;
    let step = match &cx.dom.kind {
        Kind::Test(t) => test_io(cx, t, port, size, write, val),
        Kind::Pvh {
            passthrough,
            own_acpi,
        } => pvh_io(cx, *passthrough, *own_acpi, port, size, write, val),
    };
    if step == Step::Go {
        cx.hw.skip(len);
    }
    step
}

fn read_result(cx: &mut Ctx, size: u8, value: u64) {
    let r = cx.hw.regs_mut();
    r.rax = io_in_result(r.rax, size, value);
}

fn test_io(
    cx: &mut Ctx,
    t: &spin::Mutex<TestState>,
    port: u16,
    size: u8,
    write: bool,
    val: u64,
) -> Step {
    if write {
        match port {
            tp::CONSOLE => cx.dom.console_write(&[val as u8]),
            tp::SCRATCH => t.lock().scratch = val as u32,
            tp::DONE => return Step::End(Outcome::Done(val as u32)),
            tp::TIMER => {
                let at = cx.dom.now_ns() + val * 1000;
                cx.vcpu.st.lock().lapic.arm_oneshot(tp::TIMER_VECTOR, at);
            }
            _ => {} // no device: writes vanish, as on real hardware
        }
    } else {
        let r = {
            let s = t.lock();
            match port {
                tp::SCRATCH => (s.scratch as u64).wrapping_add(1),
                tp::SCENARIO => s.scenario as u64,
                tp::EXPECT => s.npf_served as u64,
                tp::PEER => s.peer_port as u64,
                tp::FUZZ_COUNT => s.fuzz_count as u64,
                tp::FUZZ_SEED => s.fuzz_seed as u64,
                _ => u64::MAX, // no device: all ones
            }
        };
        read_result(cx, size, r);
    }
    Step::Go
}

fn pvh_io(
    cx: &mut Ctx,
    passthrough: bool,
    own_acpi: bool,
    port: u16,
    size: u8,
    write: bool,
    val: u64,
) -> Step {
    if write && own_acpi && port == crate::domain::acpi::SLEEP_CONTROL_PORT {
        // ACPI soft-off (hardware-reduced): SLP_EN with S5's type.
        let v = val as u8;
        if v & crate::domain::acpi::SLP_EN != 0
            && (v >> 2) & 7 == crate::domain::acpi::SLEEP_TYPE_S5
        {
            return Step::End(Outcome::Shutdown(ShutdownReason::Poweroff));
        }
    }
    if write && is_reset(port, val as u8) {
        // The FADT's reset register (0xcf9), or the 8042's pulse-reset
        // command: the guest asks for a reboot.
        return Step::End(Outcome::Shutdown(ShutdownReason::Reboot));
    }
    if passthrough && write && crate::platform::is_soft_off_write(port, val as u16) {
        // dom0 puts the machine into S5: keel does it itself.
        return Step::End(Outcome::Shutdown(ShutdownReason::Poweroff));
    }
    if passthrough && !absent_port(port) {
        if write {
            crate::platform::port_out(port, size, val as u32);
        } else {
            let v = crate::platform::port_in(port, size);
            read_result(cx, size, v as u64);
        }
        return Step::Go;
    }
    if !write {
        // No device: reads return all ones.
        read_result(cx, size, u64::MAX);
    }
    Step::Go
}

/// A port write that resets a PC: the reset control register (0xcf9)
/// with its reset bit (2), or command 0xfe (pulse reset) to the 8042.
fn is_reset(port: u16, val: u8) -> bool {
    (port == RESET_PORT && val & 0x04 != 0) || (port == KBD_COMMAND_PORT && val == 0xfe)
}

/// Ports keel keeps or watches even for dom0 (every other port goes
/// straight to the hardware): COM1 (keel's console), the reset register and
/// the 8042 (reboot), and the sleep control registers (power-off): the
/// host's, and keel's own FADT's when dom0 has keel's tables (`own_acpi`).
pub fn keel_port(port: u16, own_acpi: bool) -> bool {
    port == KBD_COMMAND_PORT
        || absent_port(port)
        || port == RESET_PORT
        || (own_acpi && port == crate::domain::acpi::SLEEP_CONTROL_PORT)
        || crate::platform::is_pm1_control(port)
}

/// Ports that look empty to dom0 (reads all ones, writes dropped): COM1,
/// keel's console; and the 8259 PICs with their ELCR, which keel keeps
/// masked: dom0 uses the IO-APIC and MSIs (as a Xen PVH dom0, it has no
/// PIC; Linux then also skips its PIT-through-the-8259 timer checks).
fn absent_port(port: u16) -> bool {
    COM1.contains(&port) || matches!(port, 0x20 | 0x21 | 0xa0 | 0xa1 | 0x4d0 | 0x4d1)
}

// --- nested-paging faults ---------------------------------------------------

fn npf(cx: &mut Ctx, gpa: u64, access: super::vcpu::Access, present: bool) -> Step {
    let what = access.name();
    if let Kind::Test(t) = &cx.dom.kind {
        let in_demand =
            (tp::ON_DEMAND_BASE..tp::ON_DEMAND_BASE + tp::ON_DEMAND_SIZE).contains(&gpa);
        if !(in_demand && !present) {
            return kill(format!(
                "{what} of guest-physical {gpa:#x}, which the guest does not own"
            ));
        }
        let Some(frame) = crate::mm::phys::alloc_zeroed(1) else {
            return kill(String::from("out of memory for an on-demand page"));
        };
        cx.dom.mem.own(frame, 1);
        let page = gpa & !0xfff;
        if let Err(e) = cx.dom.mem.map_4k(page, frame, Perm::RWX) {
            return kill(format!("mapping on-demand page {page:#x}: {e:?}"));
        }
        t.lock().npf_served += 1;
        // Not-present -> present needs no flush by the architecture; keel
        // flushes anyway on the next entry for simplicity.
        cx.hw.flush_p2m();
        return Step::Go;
    }
    if cx.dom.passthrough() && map_host_mmio(cx, gpa) {
        return Step::Go;
    }
    kill(format!(
        "vCPU{}: {what} of guest-physical {gpa:#x}: no memory or emulated device there (MMIO emulation is not implemented yet)",
        cx.vcpu.id
    ))
}

/// dom0 touched guest-physical `gpa` outside its RAM: if the host has no
/// RAM there (device MMIO, firmware tables), map that page 1:1, uncached
/// by the guest's own choice. The local APIC stays emulated.
fn map_host_mmio(cx: &Ctx, gpa: u64) -> bool {
    let page = gpa & !0xfff;
    if page == 0xfee0_0000 || gpa < 0x10_0000 || crate::mm::host_ram(page) {
        return false;
    }
    cx.dom.mem.map_4k(page, page, Perm::RWX).is_ok()
}

// --- before each entry --------------------------------------------------------

/// A vCPU about to halt (HLT, `SCHEDOP_block`) or poll (`SCHEDOP_poll`)
/// with an interrupt keel injected still queued in the hardware (AMD-V's
/// virtual interrupt, which Bochs holds until the guest changes
/// RFLAGS.IF) does not block: it takes that interrupt on re-entry. Its
/// `callback_pending` was consumed when it was injected, so nothing would
/// wake it, and when that interrupt is Linux's timer upcall nothing ever
/// does (Xen's `local_events_need_delivery`, checked by both, sees the
/// upcall pending). Found by dom0's privcmd fuzzer on Bochs `ryzen`: its
/// `SCHEDOP_block` from userspace left dom0's vCPU halted for good, 1 run
/// in 3.
fn block_unless_interrupt_queued(cx: &mut Ctx, w: Wait) -> Step {
    if matches!(w, Wait::Halt | Wait::Poll) && cx.hw.interrupt_queued() {
        log::debug!(
            "d{}v{}: {w:?} with an interrupt queued: not blocking",
            cx.dom.id,
            cx.vcpu.id
        );
        return Step::Go;
    }
    Step::Block(w)
}

/// Brings the vCPU up to date before it enters the guest (interrupts off):
/// fires its due timers, flushes a stale p2m, ends a finished poll, and
/// injects its highest pending interrupt if it can take it now (else asks
/// for an interrupt window). Returns its next timer deadline (ns of domain
/// time), for the CPU's timer.
pub fn prepare_entry(cx: &mut Ctx) -> Option<u64> {
    cx.dom.fire_timers(cx.vcpu);
    let mut st = cx.vcpu.st.lock();
    let gen = cx.dom.mem.gen();
    if st.p2m_seen != gen {
        st.p2m_seen = gen;
        cx.hw.flush_p2m();
    }
    // A poll ends when its vCPU runs again, whatever woke it; one on no
    // ports at all still has its timeout to forget (issue 12).
    if st.wait.is_none() && (!st.poll.is_empty() || st.poll_timeout_ns.is_some()) {
        st.end_poll();
    }
    // The guest's RDTSCP/RDPID read the CPU's IA32_TSC_AUX (Linux keeps
    // its CPU number there for getcpu()): the vCPU's value goes in.
    crate::platform::load_tsc_aux(st.tsc_aux as u32);
    let hw = &mut *cx.hw;
    if st.callback_pending {
        if hw.can_inject_interrupt() {
            hw.inject(Event::Interrupt(
                cx.dom.callback_vector.load(Ordering::Relaxed),
            ));
            st.callback_pending = false;
        } else {
            hw.request_interrupt_window(true);
        }
    } else {
        match st.lapic.pending() {
            Some(vec) if hw.can_inject_interrupt() => {
                hw.inject(Event::Interrupt(vec));
                st.lapic.accept(vec);
                hw.request_interrupt_window(false);
            }
            Some(_) => hw.request_interrupt_window(true),
            None => hw.request_interrupt_window(false),
        }
    }
    st.next_wakeup()
}
