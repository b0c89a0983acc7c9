//! A domain's virtual CPU: its hardware state (VMCS or VMCB, behind the
//! vendor-neutral [`hvm::vcpu::Vcpu`]), the state other vCPUs and CPUs
//! touch (virtual local APIC, timers, event-channel upcalls, start-up
//! IPIs), and where it is in the scheduler.
//!
//! Two locks, never held by another vCPU's handler for long:
//! * `hw`: the hardware vCPU. Held by the CPU running it, from the pick to
//!   the switch-out; nobody else takes it while the vCPU is in a scheduler
//!   queue or running.
//! * `st`: [`VcpuState`]. Short critical sections: an exit handler, a
//!   signal from another vCPU or domain, a timer scan.
//!
//! Lock order: `hw` → domain `xen` → `st` → the scheduler. A vCPU that
//! waits (HLT, SCHEDOP_block/poll, not yet started, paused) is blocked in
//! the scheduler; whoever makes its wake condition true wakes it
//! ([`Vcpu::poke`]), under `st`, so no wake-up is lost.

use super::DomId;
use crate::hvm::vcpu::Vcpu as HwVcpu;
use crate::hvm::vlapic::Vlapic;
use crate::sched::{self, VcpuRef};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use spin::Mutex;

/// IA32_PAT's power-on value.
pub const PAT_RESET: u64 = 0x0007_0406_0007_0406;
/// `running_on` when the vCPU is on no CPU.
pub const NOWHERE: usize = usize::MAX;

/// Where a vCPU is in its start-up, as a real CPU's INIT/SIPI protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    /// Waiting for INIT.
    Down,
    /// INIT received: waiting for a start-up IPI.
    Init,
    /// A start-up IPI arrived with this vector; the CPU that picks the
    /// vCPU next starts it there.
    Start(u8),
    /// The toolstack gave it the PVH boot state (`sethvmcontext`): the
    /// CPU that picks it next starts it at `entry` with EBX = `ebx`.
    StartPvh {
        entry: u32,
        ebx: u32,
    },
    Up,
}

/// Why a vCPU is off the CPU (blocked in the scheduler).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// HLT or SCHEDOP_block: until an interrupt or event is due.
    Halt,
    /// HLT with interrupts off: nothing but the end of the domain.
    Park,
    /// SCHEDOP_poll: until a polled port is pending, its timeout, or any
    /// upcall.
    Poll,
    /// Not started yet: until a start-up IPI.
    Down,
    /// The domain is ending.
    Stopped,
    /// The toolstack paused the domain (`domctl pausedomain`): until it is
    /// unpaused.
    Paused,
}

/// The part of a vCPU that other vCPUs and CPUs touch.
pub struct VcpuState {
    pub lapic: Vlapic,
    pub power: Power,
    /// Off the CPU, and why; `None`: runnable or running.
    pub wait: Option<Wait>,
    /// Guest-physical address of its registered vcpu_info, if any
    /// (VCPUOP_register_vcpu_info); else its slot in shared_info is used.
    pub vcpu_info_gpa: Option<u64>,
    /// Guest-physical address of an extra vcpu_time_info copy
    /// (VCPUOP_register_vcpu_time_memory_area, for the vDSO).
    pub time_area_gpa: Option<u64>,
    /// IA32_TSC_AUX (what RDTSCP/RDPID report: Linux stores the CPU number).
    pub tsc_aux: u64,
    /// IA32_PAT as the guest wrote it (VT-x exits on it; AMD-V keeps it in
    /// the VMCB). Memory types are keel's (EPT/NPT), so it is only stored.
    pub pat: u64,
    /// IA32_MTRR_DEF_TYPE as the toolstack set it (`sethvmcontext`).
    pub mtrr_def_type: u64,
    /// HVMOP_set_evtchn_upcall_vector: upcalls go through the local APIC
    /// and the guest EOIs them.
    pub lapic_upcall: Option<u8>,
    /// A direct (HVM_PARAM_CALLBACK_IRQ, never acknowledged) upcall is due.
    pub callback_pending: bool,
    /// Xen's single-shot vCPU timer (VCPUOP_set_singleshot_timer,
    /// set_timer_op): system time in ns at which VIRQ_TIMER fires.
    pub xen_timer_ns: Option<u64>,
    /// SCHEDOP_poll in progress: the ports it waits on.
    pub poll: Vec<u32>,
    /// SCHEDOP_poll's timeout (system time, ns).
    pub poll_timeout_ns: Option<u64>,
    /// Level-triggered device vectors (dom0) whose physical EOI waits for
    /// the guest's EOI.
    pub phys_vectors: [u64; 4],
    /// The p2m generation its TLB has seen (flushed before entry if older).
    pub p2m_seen: u64,
    /// Toolstack pauses in force.
    pub pauses: u32,
}

impl VcpuState {
    fn new(id: u32, apic_id: u32) -> Self {
        VcpuState {
            lapic: Vlapic::new(apic_id),
            power: if id == 0 { Power::Up } else { Power::Down },
            wait: None,
            vcpu_info_gpa: None,
            time_area_gpa: None,
            tsc_aux: 0,
            pat: PAT_RESET,
            mtrr_def_type: 0,
            lapic_upcall: None,
            callback_pending: false,
            xen_timer_ns: None,
            poll: Vec::new(),
            poll_timeout_ns: None,
            phys_vectors: [0; 4],
            p2m_seen: 0,
            pauses: 0,
        }
    }

    /// The earliest moment one of its timers fires (or its poll ends).
    ///
    /// A poll's timeout counts only while the vCPU waits in that poll: a
    /// stale one (the poll ended early, by an event or at once) would be a
    /// deadline in the past for good, and under VT-x a VMX-preemption timer
    /// of 0 ends every entry before the guest's first instruction: the
    /// vCPU would never run again (issue 12, dom0's privcmd fuzzing).
    pub fn next_wakeup(&self) -> Option<u64> {
        let poll = if self.wait == Some(Wait::Poll) {
            self.poll_timeout_ns
        } else {
            None
        };
        [self.lapic.next_deadline(), self.xen_timer_ns, poll]
            .into_iter()
            .flatten()
            .min()
    }

    /// Forgets a finished SCHEDOP_poll: its ports and its timeout.
    pub fn end_poll(&mut self) {
        self.poll.clear();
        self.poll_timeout_ns = None;
    }

    /// An interrupt or upcall is due (what ends a halt).
    pub fn interrupt_due(&self) -> bool {
        self.lapic.pending().is_some() || self.callback_pending
    }
}

/// Time and exit counters, readable without any lock.
#[derive(Default)]
pub struct VcpuStats {
    pub exits: AtomicU64,
    /// Time it has spent on a CPU (scheduled in), ns.
    pub run_ns: AtomicU64,
    /// TSC ticks in guest mode.
    pub guest_tsc: AtomicU64,
    /// Exits by reason (`sysctl perfc_op`, `keelctl top`).
    pub by_reason: crate::hvm::perfc::ExitCounters,
}

pub struct Vcpu {
    pub id: u32,
    pub domid: DomId,
    /// Its local APIC ID (x2APIC), as the domain's MADT lists it.
    pub apic_id: u32,
    pub hw: Mutex<Box<dyn HwVcpu + Send>>,
    pub st: Mutex<VcpuState>,
    /// The CPU running it now, or [`NOWHERE`].
    pub running_on: AtomicUsize,
    pub stats: VcpuStats,
}

impl Vcpu {
    pub fn new(domid: DomId, id: u32, apic_id: u32, hw: Box<dyn HwVcpu + Send>) -> Self {
        Vcpu {
            id,
            domid,
            apic_id,
            hw: Mutex::new(hw),
            st: Mutex::new(VcpuState::new(id, apic_id)),
            running_on: AtomicUsize::new(NOWHERE),
            stats: VcpuStats::default(),
        }
    }

    pub fn sched_ref(&self) -> VcpuRef {
        VcpuRef::new(self.domid, self.id)
    }

    pub fn running_on(&self) -> Option<usize> {
        Some(self.running_on.load(Ordering::Acquire)).filter(|&c| c != NOWHERE)
    }

    /// Takes the vCPU off the CPU for `why` (from its own exit handler, or
    /// the toolstack). The caller has checked that its wake condition does
    /// not hold yet (under `st`, so no wake-up is lost).
    pub fn block(&self, st: &mut VcpuState, why: Wait) {
        st.wait = Some(why);
        sched::block(self.sched_ref());
    }

    /// Something changed for this vCPU (an interrupt, an event, a start-up
    /// IPI, a timer): `ready` is whether its wake condition holds now
    /// ([`super::Domain::ready`]). A blocked vCPU that may run again is
    /// woken; a running one on another CPU is kicked, so that it sees the
    /// change before its next entry.
    pub fn poke(&self, st: &mut VcpuState, ready: bool) {
        match st.wait {
            Some(_) if ready => {
                st.wait = None;
                sched::wake(self.sched_ref());
            }
            Some(_) => {}
            None => {
                if let Some(cpu) = self.running_on() {
                    if cpu != crate::platform::cpu_index() {
                        crate::platform::kick_cpu(cpu);
                    }
                }
            }
        }
    }
}
