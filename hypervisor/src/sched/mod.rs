//! Scheduling: the policy ([`credit`], pure and host-tested), its shared
//! mechanism ([`mech`]: one policy instance, kicks), and the per-CPU loop
//! that runs vCPUs by it ([`run`], on the machine). See
//! `docs/scheduler.md`.
pub mod credit;
pub mod mech;
#[cfg(target_os = "none")]
pub mod run;

pub use credit::{Decision, RunState, SchedError, Scheduler, VcpuRef, DEFAULT_WEIGHT, NEVER};
pub use mech::{
    add, affinity, block, cpu_of, decide, ncpus, now_ns, pin, queued, remove, resched, runtime_ns,
    set_cap, set_weight, take_resched, wake, weight_and_cap, yield_,
};

#[cfg(test)]
mod tests;
