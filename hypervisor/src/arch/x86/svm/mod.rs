//! AMD-V (SVM) with nested paging: keel's AMD backend for the vendor-
//! neutral [`crate::hvm::vcpu::Vcpu`].
//!
//! Per CPU: EFER.SVME and a host save area (VM_HSAVE_PA). Per vCPU: a VMCB,
//! an I/O permission map and an MSR permission map (both intercept
//! everything: common code decides), an ASID from this CPU's pool
//! (recycled with a full flush when exhausted), and nested paging rooted at
//! the guest's p2m. Without next-RIP saving (QEMU TCG), instruction lengths
//! are decoded from the guest's instruction bytes.
pub mod asid;
pub mod exit;
pub mod vmcb;

#[cfg(target_os = "none")]
mod hw;
#[cfg(target_os = "none")]
pub use hw::*;
