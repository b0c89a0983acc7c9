//! Picks the virtualization backend for this CPU's vendor.
use super::{cpu, svm};
use crate::hvm::vcpu::Vcpu;
use crate::mm::p2m::Format;
use alloc::boxed::Box;
use alloc::string::String;

/// Until the VT-x backend is wired in, Intel CPUs say so plainly.
const VMX_PENDING: &str = "VT-x backend not wired in yet: guests cannot run on Intel CPUs";

/// A boot-log line saying what hardware virtualization keel can use here.
pub fn describe() -> String {
    match cpu::features().vendor {
        cpu::Vendor::Amd => svm::describe(),
        cpu::Vendor::Intel => String::from(VMX_PENDING),
        cpu::Vendor::Other => String::from("no hardware virtualization: unknown CPU vendor"),
    }
}

/// The p2m format this machine's guests use.
pub fn p2m_format() -> Result<Format, &'static str> {
    match cpu::features().vendor {
        cpu::Vendor::Amd => Ok(Format::Npt {
            nx: cpu::features().nx,
        }),
        cpu::Vendor::Intel => Ok(Format::Ept),
        cpu::Vendor::Other => Err("unknown CPU vendor"),
    }
}

/// Enables virtualization on this CPU (idempotent) and makes a vCPU.
pub fn new_vcpu(id: u16) -> Result<Box<dyn Vcpu + Send>, &'static str> {
    match cpu::features().vendor {
        cpu::Vendor::Amd => {
            svm::enable_cpu()?;
            let _ = id; // ASIDs come from the per-CPU pool at run time.
            Ok(Box::new(svm::SvmVcpu::new()?))
        }
        cpu::Vendor::Intel => Err(VMX_PENDING),
        cpu::Vendor::Other => Err("no hardware virtualization: unknown CPU vendor"),
    }
}
