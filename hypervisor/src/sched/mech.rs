//! The scheduler's mechanism, shared part: the one policy instance
//! ([`super::credit::Scheduler`]) behind one lock, and the kicks its
//! decisions call for. Domains use it to add, block, wake and pin vCPUs;
//! the per-CPU loop ([`super::run`], on the machine) asks it what to run.
//!
//! Each decision that names a CPU marks that CPU's `resched` flag and, if
//! it is another CPU, sends it the wake-up IPI, so it leaves guest mode or
//! its halt and decides again. The lock is a leaf: nothing else is taken
//! while it is held (the vCPU's own `st` may be held around it).

use super::credit::{Decision, SchedError, Scheduler, VcpuRef};
use crate::percpu;
use crate::platform;
use core::sync::atomic::Ordering;
use spin::Mutex;

static SCHED: Mutex<Option<Scheduler>> = Mutex::new(None);
// Per CPU (in its `percpu::PerCpu` block): `resched`, and `queued`, the
// vCPUs waiting in its run queue, published after every change (read
// without the lock by the CPU deciding whether spinning vCPUs should exit
// to let them run).

/// Sets the machine's CPU count (at boot, before any vCPU is added).
pub fn init(ncpus: usize) -> Result<(), SchedError> {
    *SCHED.lock() = Some(Scheduler::new(ncpus)?);
    Ok(())
}

fn with<R>(f: impl FnOnce(&mut Scheduler) -> R) -> R {
    let mut g = SCHED.lock();
    if g.is_none() {
        // Host tests (and a machine that never called `init`): 4 CPUs.
        *g = Some(Scheduler::new(4).expect("4 CPUs"));
    }
    let s = g.as_mut().unwrap();
    let r = f(s);
    for c in 0..s.ncpus() {
        if let Some(pc) = percpu::get(c) {
            pc.queued
                .store(s.runqueue(c).count() as u32, Ordering::Relaxed);
        }
    }
    r
}

/// vCPUs waiting for `cpu` (as of the last scheduler change).
pub fn queued(cpu: usize) -> u32 {
    percpu::get(cpu).map_or(0, |p| p.queued.load(Ordering::Relaxed))
}

/// The scheduler's clock: ns from the TSC.
pub fn now_ns() -> u64 {
    let khz = platform::tsc_khz().max(1);
    (platform::tsc() as u128 * 1_000_000 / khz as u128) as u64
}

/// Makes `cpu` decide again soon.
pub fn resched(cpu: usize) {
    if let Some(p) = percpu::get(cpu) {
        p.resched.store(true, Ordering::SeqCst);
    }
    if cpu != platform::cpu_index() {
        platform::kick_cpu(cpu);
    }
}

fn kick(r: Result<Option<usize>, SchedError>) -> Result<(), SchedError> {
    if let Some(cpu) = r? {
        resched(cpu);
    }
    Ok(())
}

/// Whether `cpu` was asked to decide again (and clears the request).
pub fn take_resched(cpu: usize) -> bool {
    percpu::get(cpu).is_some_and(|p| p.resched.swap(false, Ordering::SeqCst))
}

pub fn add(v: VcpuRef, affinity: u64, home: usize, runnable: bool) -> Result<(), SchedError> {
    kick(with(|s| s.add_vcpu(v, affinity, home, runnable)))
}

pub fn remove(v: VcpuRef) {
    let _ = kick(with(|s| s.remove_vcpu(v)));
}

/// The vCPU may run again.
pub fn wake(v: VcpuRef) {
    let _ = kick(with(|s| s.wake(v)));
}

/// The vCPU cannot run until woken.
pub fn block(v: VcpuRef) {
    let _ = kick(with(|s| s.block(v)));
}

pub fn yield_(v: VcpuRef) {
    let _ = kick(with(|s| s.yield_(v)));
}

pub fn pin(v: VcpuRef, mask: u64) -> Result<(), SchedError> {
    kick(with(|s| s.pin(v, mask)))
}

pub fn set_weight(domid: u16, weight: u16) -> Result<(), SchedError> {
    with(|s| s.set_weight(domid, weight))
}

pub fn set_cap(domid: u16, cap: u16) -> Result<(), SchedError> {
    with(|s| s.set_cap(domid, cap))
}

pub fn weight_and_cap(domid: u16) -> Option<(u16, u16)> {
    with(|s| Some((s.weight(domid)?, s.cap(domid)?)))
}

pub fn affinity(v: VcpuRef) -> Option<u64> {
    with(|s| s.affinity(v))
}

/// The CPU `v` is queued on, runs on, or last ran on.
pub fn cpu_of(v: VcpuRef) -> Option<usize> {
    with(|s| s.cpu_of(v))
}

/// `v`'s credit (ns), for diagnostics.
pub fn credit(v: VcpuRef) -> Option<i64> {
    with(|s| s.credit(v))
}

/// Time `v` has run so far, ns.
pub fn runtime_ns(v: VcpuRef) -> Option<u64> {
    with(|s| s.runtime_ns(v))
}

/// What `cpu` runs from now on.
pub fn decide(cpu: usize, now: u64) -> Decision {
    with(|s| s.tick(cpu, now)).unwrap_or(Decision {
        run: None,
        timeslice_ns: super::credit::NEVER,
    })
}

pub fn ncpus() -> usize {
    with(|s| s.ncpus())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The host build's CPU is 0 and the scheduler has 4 CPUs: decisions
    // for CPUs 1-3 are kicks (counted), for CPU 0 only the flag.
    const D: u16 = 900;

    #[test]
    fn add_wake_block_flag_and_kick_the_right_cpus() {
        let v = VcpuRef::new(D, 0);
        for c in 0..4 {
            take_resched(c);
        }
        // Added runnable with CPU 2 in its affinity: CPU 2 is told.
        let kicks = platform::kicks();
        add(v, 0b100, 2, true).unwrap();
        assert!(take_resched(2), "CPU 2 asked to decide");
        assert!(!take_resched(2), "a request is taken once");
        assert!(platform::kicks() > kicks, "and kicked (not this CPU)");
        assert_eq!(queued(2), 1);
        assert_eq!(decide(2, now_ns()).run, Some(v));
        assert_eq!(queued(2), 0);
        // Blocking the running vCPU asks its CPU to decide again.
        block(v);
        assert!(take_resched(2));
        assert_eq!(decide(2, now_ns()).run, None);
        wake(v);
        assert!(take_resched(2));
        assert_eq!(cpu_of(v), Some(2));
        // Pinning it to CPU 0 (this CPU): the flag, no IPI to itself.
        assert_eq!(decide(2, now_ns()).run, Some(v));
        pin(v, 0b1).unwrap();
        assert!(take_resched(2), "its old CPU lets it go");
        assert_eq!(decide(2, now_ns()).run, None);
        assert_eq!(decide(0, now_ns()).run, Some(v));
        remove(v);
        assert!(take_resched(0));
        assert_eq!(runtime_ns(v), None);
        assert_eq!(add(v, 0, 0, true), Err(SchedError::EmptyAffinity));
    }

    #[test]
    fn weights_and_caps_need_a_domain() {
        let v = VcpuRef::new(D + 1, 0);
        assert_eq!(set_weight(D + 1, 512), Err(SchedError::NoSuchDomain(D + 1)));
        add(v, 0b1000, 3, false).unwrap();
        set_weight(D + 1, 512).unwrap();
        set_cap(D + 1, 25).unwrap();
        assert_eq!(weight_and_cap(D + 1), Some((512, 25)));
        assert_eq!(set_weight(D + 1, 0), Err(SchedError::BadWeight(0)));
        remove(v);
        assert_eq!(weight_and_cap(D + 1), None);
    }
}
