//! The per-CPU loop: every CPU, once keel has booted, asks the scheduler
//! what to run, runs that vCPU until its slice ends, it blocks, it is
//! preempted or its domain ends, and asks again; with nothing to run it
//! halts until its timer or a kick. No CPU belongs to one domain.
//!
//! One local APIC timer per CPU serves everything that is due on it: the
//! running vCPU's slice and its own timers (virtual local APIC, Xen's
//! single-shot timer, a poll's timeout), the timers of the vCPUs that
//! blocked here ("sleepers"), and CPU 0's duties (polling the serial port
//! for dom0's input, the self-tests' clock).
//!
//! A vCPU leaves its CPU bound to nothing: its hardware state is released
//! there (VMCLEAR on VT-x, FPU state saved), so any CPU may run it next.

use super::mech;
use crate::arch::x86::{apic, hvm as hw, irq};
use crate::domain::{self, table, Domain, Power, ShutdownReason, Vcpu, Wait};
use crate::hvm::exit::{self, Step};
use crate::hvm::vcpu::StartMode;
use crate::hypercall::Ctx;
use crate::platform;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

/// What this CPU is doing (for `dump`): 0 deciding, 1 in guest mode,
/// 2 handling an exit, 3 halted; and the TSC when it started that.
fn phase(cpu: usize, p: u64) {
    let Some(pc) = crate::percpu::get(cpu) else {
        return;
    };
    pc.phase.store(
        p << 60 | (platform::tsc() & ((1 << 60) - 1)),
        Ordering::Relaxed,
    );
}

/// How often CPU 0 looks at the serial port for input (dom0's console).
const CONSOLE_POLL_NS: u64 = 20_000_000;

/// What one CPU keeps between decisions.
struct Cpu {
    index: usize,
    /// vCPUs that blocked here, whose timers this CPU watches.
    sleepers: Vec<(Arc<Domain>, Arc<Vcpu>)>,
    /// The TSC deadline the local APIC timer is armed for.
    armed: Option<u64>,
    next_console_poll: u64,
    next_dump: u64,
}

fn ns_to_tsc(ns: u64) -> u64 {
    (ns as u128 * platform::tsc_khz() as u128 / 1_000_000) as u64
}

/// Runs this CPU's scheduling loop forever.
pub fn cpu_loop() -> ! {
    let index = platform::cpu_index();
    if let Err(e) = hw::enable_cpu() {
        log::error!("CPU{index}: no hardware virtualization ({e}): it runs no vCPU");
        crate::arch::x86::cpu::halt_forever();
    }
    apic::setup_timer();
    let mut c = Cpu {
        index,
        sleepers: Vec::new(),
        armed: None,
        next_console_poll: 0,
        next_dump: 0,
    };
    loop {
        x86_64::instructions::interrupts::disable();
        let duties = c.duties();
        c.scan_sleepers();
        mech::take_resched(c.index);
        let now = mech::now_ns();
        let d = mech::decide(c.index, now);
        match d.run {
            Some(r) => {
                let end = if d.timeslice_ns == super::NEVER {
                    u64::MAX
                } else {
                    now.saturating_add(d.timeslice_ns)
                };
                c.run(r, end);
            }
            None => {
                let mut next = [duties, c.sleepers_next()].into_iter().flatten().min();
                if d.timeslice_ns != super::NEVER {
                    let t = ns_to_tsc(now.saturating_add(d.timeslice_ns));
                    next = Some(next.map_or(t, |n| n.min(t)));
                }
                c.arm(next);
                phase(c.index, 3);
                // sti; hlt: a kick arriving after the checks still ends it.
                x86_64::instructions::interrupts::enable_and_hlt();
                phase(c.index, 0);
            }
        }
    }
}

impl Cpu {
    fn arm(&mut self, deadline: Option<u64>) {
        // The one-shot timer may have fired (a little early, even: its
        // rate and the TSC's differ) since it was armed for this deadline.
        if deadline != self.armed || (deadline.is_some() && !apic::timer_running()) {
            match deadline {
                Some(t) => apic::arm_timer(t, platform::tsc_khz()),
                None => apic::disarm_timer(),
            }
            self.armed = deadline;
        }
    }

    /// What this CPU does besides running vCPUs: dom0's device interrupts
    /// that arrived here and EOIs owed to them, and on CPU 0 the serial
    /// console and the self-tests. Returns when it must look again (TSC).
    fn duties(&mut self) -> Option<u64> {
        irq::run_pending_eois();
        self.device_irqs();
        if self.index != 0 {
            return None;
        }
        let now = platform::tsc();
        let mut next = crate::selftest::poll();
        if crate::cmdline::get().sched_debug {
            if now >= self.next_dump {
                self.next_dump = now + ns_to_tsc(2_000_000_000);
                dump();
            }
            next = Some(next.map_or(self.next_dump, |n| n.min(self.next_dump)));
        }
        if let Some(d0) = table::get(0) {
            if now >= self.next_console_poll {
                self.next_console_poll = now + ns_to_tsc(CONSOLE_POLL_NS);
                if crate::console::poll_input(&mut crate::kernel::debug_key) {
                    let xs = d0.xen.lock();
                    if let Some(port) = xs.chans.virq_port(crate::xen::abi::virq::CONSOLE, 0) {
                        d0.signal(&xs, port);
                    }
                }
            }
            next = Some(next.map_or(self.next_console_poll, |n| n.min(self.next_console_poll)));
        }
        next
    }

    /// dom0's device vectors that arrived on this CPU go to its vCPU with
    /// this CPU's APIC ID (dom0 routed them there).
    fn device_irqs(&mut self) {
        let (got, level) = irq::take();
        if got.iter().all(|&w| w == 0) {
            return;
        }
        let Some(d0) = table::get(0) else {
            return;
        };
        let apic_id = platform::apic_id_of(self.index);
        let Some(v) = d0.vcpus.iter().find(|v| Some(v.apic_id) == apic_id) else {
            return;
        };
        let mut st = v.st.lock();
        for (w, bits) in got.iter().enumerate() {
            let mut b = *bits;
            while b != 0 {
                let vec = (w * 64) as u8 + b.trailing_zeros() as u8;
                b &= b - 1;
                st.lapic.raise(vec);
            }
            st.phys_vectors[w] |= level[w];
        }
        d0.poke(v, &mut st);
    }

    /// Fires the due timers of the vCPUs that blocked here (which wakes
    /// them), and forgets those that are running again or elsewhere.
    fn scan_sleepers(&mut self) {
        let me = self.index;
        self.sleepers.retain(|(d, v)| {
            let waiting = v.st.lock().wait.is_some();
            waiting && !d.is_ending() && mech::cpu_of(v.sched_ref()) == Some(me)
        });
        for (d, v) in &self.sleepers {
            let due = v.st.lock().next_wakeup().is_some_and(|ns| ns <= d.now_ns());
            if due {
                d.fire_timers(v);
            }
        }
    }

    /// The earliest timer of a sleeper (TSC).
    fn sleepers_next(&self) -> Option<u64> {
        self.sleepers
            .iter()
            .filter_map(|(d, v)| v.st.lock().next_wakeup().map(|ns| d.tsc_at(ns)))
            .min()
    }

    /// Runs vCPU `r` until its slice ends at `end` (scheduler ns), it
    /// blocks, it is preempted, or its domain ends.
    fn run(&mut self, r: super::VcpuRef, end: u64) {
        let Some(d) = table::get(r.domid) else {
            mech::remove(r);
            return;
        };
        let Some(v) = d.vcpu(r.vcpu as usize).cloned() else {
            mech::remove(r);
            return;
        };
        let mut hwv = v.hw.lock();
        v.running_on.store(self.index, Ordering::SeqCst);
        let t_in = platform::tsc();
        // The TSC at the last exit: keel's time on the vCPU's behalf runs
        // from there to its next entry (or until it is off this CPU).
        let mut exited_at = None;
        if !d.is_ending() {
            let start = {
                let mut st = v.st.lock();
                match st.power {
                    Power::Start(vector) => {
                        st.power = Power::Up;
                        Some(StartMode::RealModeSipi { vector })
                    }
                    Power::StartPvh { entry, ebx } => {
                        st.power = Power::Up;
                        Some(StartMode::Pvh32 { entry, ebx })
                    }
                    _ => None,
                }
            };
            if let Some(mode) = start {
                if let StartMode::RealModeSipi { vector } = mode {
                    log::info!(
                        "d{}v{}: started by SIPI at {:#x}",
                        d.id,
                        v.id,
                        (vector as u32) << 12
                    );
                }
                hwv.reset(mode);
            }
            let slice_end = ns_to_tsc(end);
            loop {
                x86_64::instructions::interrupts::disable();
                if d.is_ending() || mech::take_resched(self.index) || platform::tsc() >= slice_end {
                    break;
                }
                // The toolstack paused the domain: off the CPU until unpaused.
                if d.is_paused() && block(&d, &v, Wait::Paused) {
                    break;
                }
                let duties = self.duties();
                let mut sleepers = self.sleepers_next();
                if sleepers.is_some_and(|t| platform::tsc() >= t) {
                    // A vCPU that blocked here is due: wake it now, not at
                    // the end of this slice.
                    self.scan_sleepers();
                    if mech::take_resched(self.index) {
                        break;
                    }
                    sleepers = self.sleepers_next();
                }
                let mut cx = Ctx {
                    dom: &d,
                    vcpu: &v,
                    hw: &mut **hwv,
                };
                let own = exit::prepare_entry(&mut cx).map(|ns| d.tsc_at(ns));
                // Spinning is worth an exit only while another vCPU waits
                // for this CPU (it may be what the spinner waits for).
                cx.hw.set_pause_exiting(mech::queued(self.index) > 0);
                let next = [Some(slice_end), own, duties, sleepers]
                    .into_iter()
                    .flatten()
                    .min();
                self.arm(next);
                cx.hw.set_deadline(next);
                let t0 = platform::tsc();
                if let Some(t) = exited_at.take() {
                    v.stats.by_reason.add_handling(t0.wrapping_sub(t));
                }
                phase(self.index, 1);
                let e = cx.hw.run();
                phase(self.index, 2);
                let t1 = platform::tsc();
                exited_at = Some(t1);
                v.stats
                    .guest_tsc
                    .fetch_add(t1.wrapping_sub(t0), Ordering::Relaxed);
                v.stats.by_reason.add_guest(t1.wrapping_sub(t0));
                match exit::handle(&mut cx, e) {
                    Step::Go => {}
                    Step::Block(w) => {
                        if block(&d, &v, w) {
                            self.sleepers.push((d.clone(), v.clone()));
                            break;
                        }
                    }
                    Step::End(o) => {
                        let [cr0, cr3, cr4, efer] = cx.hw.control_regs();
                        log::info!(
                            "d{}v{}: ends the domain at RIP {:#x} CR0 {cr0:#x} CR3 {cr3:#x} CR4 {cr4:#x} EFER {efer:#x}",
                            d.id,
                            v.id,
                            cx.hw.regs().rip
                        );
                        d.end(o);
                        break;
                    }
                }
            }
        }
        hwv.unbind();
        drop(hwv);
        if let Some(t) = exited_at {
            v.stats
                .by_reason
                .add_handling(platform::tsc().wrapping_sub(t));
        }
        let ticks = platform::tsc().wrapping_sub(t_in);
        v.stats.run_ns.fetch_add(
            ticks * 1_000_000 / platform::tsc_khz().max(1),
            Ordering::Relaxed,
        );
        v.running_on.store(domain::vcpu::NOWHERE, Ordering::SeqCst);
        d.maybe_finish();
    }
}

/// Takes `v` off the CPU for `w`, unless its wake condition already holds
/// (checked under its lock, so a wake-up cannot be lost). Returns whether
/// it blocked. A PVH domain whose vCPUs all halted with interrupts off (or
/// never started) can never run again: it powers off, as Xen's
/// `hvm_vcpu_down` ends it ("All CPUs offline -- powering off"; Linux halts
/// that way when it has no power-off method, as a PVH domU with libxl's ACPI
/// tables, which have no `_S5`).
fn block(d: &Arc<Domain>, v: &Vcpu, w: Wait) -> bool {
    let mut st = v.st.lock();
    st.wait = Some(w);
    if d.ready(&st) {
        st.wait = None;
        return false;
    }
    v.block(&mut st, w);
    drop(st);
    if w == Wait::Park {
        let stuck = d.vcpus.iter().all(|x| {
            let s = x.st.lock();
            matches!(s.wait, Some(Wait::Park) | Some(Wait::Down))
        });
        if stuck {
            log::info!(
                "d{}: every vCPU is halted with interrupts off: the domain powers off",
                d.id
            );
            d.end(domain::Outcome::Shutdown(ShutdownReason::Poweroff));
        }
    }
    true
}

/// Prints every CPU's and vCPU's scheduling state (the debug key 'r', and
/// `sched_debug` every 2 s).
pub fn dump() {
    let now = platform::tsc() & ((1 << 60) - 1);
    for c in 0..mech::ncpus() {
        let p = crate::percpu::get(c).map_or(0, |pc| pc.phase.load(Ordering::Relaxed));
        let ms = now.saturating_sub(p & ((1 << 60) - 1)) / platform::tsc_khz().max(1);
        let what =
            ["deciding", "in guest mode", "handling an exit", "halted"][(p >> 60) as usize & 3];
        log::info!(
            "sched: CPU{c}: {} queued, {what} for {ms} ms",
            mech::queued(c)
        );
    }
    for d in table::all() {
        for v in &d.vcpus {
            let (wait, power, pending, upcall, timers) = {
                let st = v.st.lock();
                (
                    st.wait,
                    st.power,
                    st.lapic.pending(),
                    st.callback_pending,
                    [
                        st.lapic.next_deadline(),
                        st.xen_timer_ns,
                        st.poll_timeout_ns,
                    ],
                )
            };
            // Each timer as ms from now (negative: overdue).
            let now = d.now_ns() as i128;
            let [lapic, xen, poll] = timers.map(|t| t.map(|ns| (ns as i128 - now) / 1_000_000));
            let r = v.sched_ref();
            log::info!(
                "sched: d{}v{}: on {:?}, cpu {:?}, wait {wait:?}, {power:?}, irq {pending:?}, upcall {upcall}, timers in ms: lapic {lapic:?} xen {xen:?} poll {poll:?}, {} exits, {} ms run, credit {:?}",
                d.id,
                v.id,
                v.running_on(),
                mech::cpu_of(r),
                v.stats.exits.load(Ordering::Relaxed),
                mech::runtime_ns(r).unwrap_or(0) / 1_000_000,
                mech::credit(r),
            );
        }
    }
}
