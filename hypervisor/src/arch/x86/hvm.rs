//! Picks the virtualization backend for this CPU's vendor.
use super::{cpu, svm};
use crate::hvm::vcpu::Vcpu;
use crate::mm::p2m::Format;
use crate::mm::paging::PageSize;
use alloc::boxed::Box;
use alloc::string::String;

/// A boot-log line saying what hardware virtualization keel can use here.
pub fn describe() -> String {
    match cpu::features().vendor {
        cpu::Vendor::Amd => svm::describe(),
        cpu::Vendor::Intel => super::vmx::describe(),
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

/// The largest page this machine's p2m format can map: EPT's from
/// IA32_VMX_EPT_VPID_CAP; NPT always has 2 MiB leaves and has 1 GiB ones
/// where the CPU has 1 GiB pages (CPUID 0x8000_0001 EDX.Page1GB).
pub fn p2m_max_page() -> PageSize {
    match cpu::features().vendor {
        cpu::Vendor::Intel => super::vmx::max_page(),
        _ if cpu::features().gib_pages => PageSize::Size1G,
        _ => PageSize::Size2M,
    }
}

/// Enables virtualization on this CPU (idempotent): each CPU does it once
/// before it runs vCPUs.
pub fn enable_cpu() -> Result<(), &'static str> {
    match cpu::features().vendor {
        cpu::Vendor::Amd => svm::enable_cpu(),
        cpu::Vendor::Intel => super::vmx::enable_cpu(),
        cpu::Vendor::Other => Err("no hardware virtualization: unknown CPU vendor"),
    }
}

/// Makes a vCPU (on any CPU; it runs on whichever picks it).
pub fn new_vcpu(id: u16) -> Result<Box<dyn Vcpu + Send>, &'static str> {
    match cpu::features().vendor {
        cpu::Vendor::Amd => {
            let _ = id; // ASIDs come from the per-CPU pool at run time.
            Ok(Box::new(svm::SvmVcpu::new()?))
        }
        // VPID 0 is the host's.
        cpu::Vendor::Intel => Ok(Box::new(super::vmx::VmxVcpu::new(id.max(1))?)),
        cpu::Vendor::Other => Err("no hardware virtualization: unknown CPU vendor"),
    }
}
