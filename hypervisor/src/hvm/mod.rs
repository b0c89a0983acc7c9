//! Hardware-assisted virtualization, vendor-neutral.
//!
//! The seam: [`vcpu::Vcpu`] is what common code uses to run a guest CPU;
//! `arch::x86::vmx` (Intel VT-x) and `arch::x86::svm` (AMD-V) implement it.
//! Common code never touches a VMCS or a VMCB. Guest-physical memory is
//! described by [`crate::mm::p2m`], which builds EPT or NPT tables.
pub mod cpuid;
pub mod decode;
#[cfg(target_os = "none")]
pub mod guestmem;
#[cfg(target_os = "none")]
pub mod pvh;
pub mod testproto;
#[cfg(target_os = "none")]
pub mod testrun;
pub mod vcpu;
pub mod vlapic;
