//! Scheduling: the policy ([`credit`], pure and host-tested) and the
//! per-CPU mechanism that runs vCPUs by it ([`core`], on the machine). See
//! `docs/scheduler.md`.
pub mod credit;

pub use credit::*;

#[cfg(test)]
mod tests;
