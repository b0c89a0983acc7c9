//! Intel VT-x: the [`crate::hvm::vcpu::Vcpu`] backend on VMX with EPT, VPID
//! and unrestricted guest. See `docs/vmx.md`.
//!
//! `defs` is pure (encodings, control computation, exit decoding) and is
//! unit-tested on the host; everything that executes VMX instructions is
//! built for the bare-metal target only.
pub mod defs;
#[cfg(target_os = "none")]
mod hw;
#[cfg(target_os = "none")]
mod vcpu;

#[cfg(target_os = "none")]
pub use hw::{describe, disable_cpu, enable_cpu, max_page, supported};
#[cfg(target_os = "none")]
pub use vcpu::VmxVcpu;
