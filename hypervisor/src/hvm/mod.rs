//! Hardware-assisted virtualization, vendor-neutral.
//!
//! The seam: [`vcpu::Vcpu`] is what common code uses to run a guest CPU;
//! `arch::x86::vmx` (Intel VT-x) and `arch::x86::svm` (AMD-V) implement it.
//! Common code never touches a VMCS or a VMCB. Guest-physical memory is
//! described by [`crate::mm::p2m`], which builds EPT or NPT tables. Every
//! guest's exits go through [`exit`].
pub mod cpuid;
pub mod decode;
pub mod exit;
pub mod guestmem;
pub mod perfc;
pub mod testproto;
pub mod vcpu;
pub mod vlapic;
