//! One block of state per physical CPU: what the scheduler keeps for each
//! CPU and, on the machine, the architecture's per-CPU state (GDT, TSS,
//! FPU owner, device-interrupt bookkeeping, VT-x/AMD-V per-CPU state, the
//! job slot). A CPU reaches its own block through GS base; other CPUs'
//! through [`get`]. No module keeps arrays indexed by CPU number.

use crate::MAX_CPUS;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

pub struct PerCpu {
    /// The CPU's index (0 = the boot CPU).
    pub index: usize,
    /// Asked to decide again (`sched::mech::resched`).
    pub resched: AtomicBool,
    /// vCPUs waiting in its run queue (published by `sched::mech`).
    pub queued: AtomicU32,
    /// What it is doing, for the scheduler dump (`sched::run`).
    pub phase: AtomicU64,
    #[cfg(target_os = "none")]
    pub arch: crate::arch::x86::percpu::ArchCpu,
}

impl PerCpu {
    pub fn new(index: usize) -> Self {
        PerCpu {
            index,
            resched: AtomicBool::new(false),
            queued: AtomicU32::new(0),
            phase: AtomicU64::new(0),
            #[cfg(target_os = "none")]
            arch: crate::arch::x86::percpu::ArchCpu::new(),
        }
    }
}

static CPUS: [AtomicPtr<PerCpu>; MAX_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS];

/// Makes `pc` CPU `pc.index`'s block for good (at that CPU's bring-up).
pub fn register(pc: &'static PerCpu) {
    if let Some(slot) = CPUS.get(pc.index) {
        slot.store(pc as *const PerCpu as *mut PerCpu, Ordering::Release);
    }
}

/// CPU `i`'s block, once that CPU is up.
#[cfg(target_os = "none")]
pub fn get(i: usize) -> Option<&'static PerCpu> {
    let p = CPUS.get(i)?.load(Ordering::Acquire);
    // SAFETY: only `register` stores here, a `&'static PerCpu`.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// The host build has blocks for every CPU number, made on first use.
#[cfg(not(target_os = "none"))]
pub fn get(i: usize) -> Option<&'static PerCpu> {
    let slot = CPUS.get(i)?;
    if slot.load(Ordering::Acquire).is_null() {
        let pc = std::boxed::Box::leak(std::boxed::Box::new(PerCpu::new(i)));
        let _ = slot.compare_exchange(
            core::ptr::null_mut(),
            pc,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
    // SAFETY: the slot holds a leaked, never-freed block.
    Some(unsafe { &*slot.load(Ordering::Acquire) })
}

/// This CPU's block.
pub fn this() -> &'static PerCpu {
    #[cfg(target_os = "none")]
    {
        crate::arch::x86::gdt::this_cpu().expect("per-CPU block set up at boot")
    }
    #[cfg(not(target_os = "none"))]
    {
        get(crate::platform::cpu_index()).expect("CPU 0")
    }
}
