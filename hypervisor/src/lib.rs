//! keel: a bare-metal Type-1 hypervisor in the style of Xen.
//!
//! This library is the kernel. The hardware-independent parts (boot
//! information, command line, memory bookkeeping, page-table building) build
//! on the host too and carry the unit tests; the parts that touch hardware
//! (`arch`, `boot`, `console`, the kernel's main line) build only for the
//! bare-metal target.
#![cfg_attr(target_os = "none", no_std)]

pub mod acpi_aml;
pub mod bootinfo;
pub mod cmdline;
pub mod conring;
pub mod conswitch;
pub mod domain;
pub mod hvm;
pub mod loader;
pub mod mm;
pub mod percpu;
pub mod platform;
pub mod sched;
pub mod xen;

extern crate alloc;

pub mod arch;

/// The most physical CPUs keel drives (affinity masks are 64 bits).
pub const MAX_CPUS: usize = 64;
#[cfg(target_os = "none")]
pub mod boot;
#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
pub mod fatal;
pub mod hypercall;
#[cfg(target_os = "none")]
pub mod kernel;
#[cfg(target_os = "none")]
pub mod selftest;
