//! Domains the toolstack creates from dom0 (`XEN_DOMCTL_createdomain`),
//! as on Xen: an empty PVH container (a p2m with nothing mapped, a
//! shared_info frame, vCPUs that stay down until their context is set),
//! paused once by the controller, for dom0's userspace to fill with
//! memory and vCPU state and then unpause. keel reads no guest kernel
//! here: that is the domain builder's job, in dom0.
//!
//! The configuration is checked as Xen 4.17's `sanitise_domain_config`
//! and `arch_sanitise_domain_config` do, for what keel runs: an HVM
//! container with hardware-assisted paging and only the local APIC
//! emulated (PVH). Everything else is refused with -EOPNOTSUPP (PV, shadow
//! paging, the full HVM device model, IOMMU, nested virtualization, vPMU,
//! processor trace, relaxed MSRs) or -EINVAL (what Xen refuses too).

use super::{table, DomId, Domain, Kind, Memory, Power, Vcpu};
use crate::hvm::vcpu::Vcpu as HwVcpu;
use crate::mm::p2m::{Format, P2m};
use crate::mm::paging::PageSize;
use crate::mm::phys::{self, Tables};
use crate::xen::abi::{Errno, DOMID_FIRST_RESERVED};
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use keel_xen_abi::arch_x86::{EMU_LAPIC, MSR_RELAXED};
use keel_xen_abi::domctl::{cdf, CreateDomain, GRANT_VERSION_MASK};

/// The most vCPUs a toolstack domain may have (Xen's `HVM_MAX_VCPUS`).
pub const MAX_VCPUS: u32 = 128;

/// What creating a domain needs from the machine: the p2m format and
/// fresh hardware vCPUs (a fake in the host tests).
pub trait Backend: Sync {
    fn p2m_format(&self) -> Result<Format, Errno>;
    fn max_page(&self) -> PageSize;
    fn new_vcpu(&self) -> Result<Box<dyn HwVcpu + Send>, Errno>;
}

static BACKEND: spin::Once<&'static dyn Backend> = spin::Once::new();

/// Sets the machine's backend (at boot).
pub fn set_backend(b: &'static dyn Backend) {
    BACKEND.call_once(|| b);
}

/// This machine's VT-x or AMD-V.
#[cfg(target_os = "none")]
pub struct Machine;

#[cfg(target_os = "none")]
impl Backend for Machine {
    fn p2m_format(&self) -> Result<Format, Errno> {
        crate::arch::x86::hvm::p2m_format().map_err(|_| Errno::EOPNOTSUPP)
    }
    fn max_page(&self) -> PageSize {
        crate::arch::x86::hvm::p2m_max_page()
    }
    fn new_vcpu(&self) -> Result<Box<dyn HwVcpu + Send>, Errno> {
        super::build::new_hw_vcpu().map_err(|e| {
            log::warn!("createdomain: {e}");
            Errno::ENOMEM
        })
    }
}

/// Checks a `createdomain` configuration (see the module docs).
pub fn check(cfg: &CreateDomain) -> Result<(), Errno> {
    let known = cdf::HVM
        | cdf::HAP
        | cdf::S3_INTEGRITY
        | cdf::OOS_OFF
        | cdf::XS_DOMAIN
        | cdf::IOMMU
        | cdf::NESTED_VIRT
        | cdf::VPMU;
    if cfg.flags & !known != 0 || cfg.iommu_opts & !cdf::IOMMU_NO_SHAREPT != 0 {
        return Err(Errno::EINVAL);
    }
    // PV, shadow paging, IOMMU, nested virtualization, vPMU, tboot.
    let need = cdf::HVM | cdf::HAP;
    let unsupported = cdf::IOMMU | cdf::NESTED_VIRT | cdf::VPMU | cdf::S3_INTEGRITY;
    if cfg.flags & need != need || cfg.flags & unsupported != 0 || cfg.iommu_opts != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    if cfg.max_vcpus == 0 || cfg.max_vcpus > MAX_VCPUS {
        return Err(Errno::EINVAL);
    }
    // Grant table version 1 only; no other grant options exist in 4.17.
    if cfg.grant_opts & !GRANT_VERSION_MASK != 0 || cfg.grant_opts & GRANT_VERSION_MASK != 1 {
        return Err(Errno::EINVAL);
    }
    if cfg.vmtrace_size != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    // One cpupool, 0 (Xen: no such pool).
    if cfg.cpupool_id != 0 {
        return Err(Errno::ENOENT);
    }
    // PVH: the local APIC and nothing else emulated.
    if cfg.arch.emulation_flags != EMU_LAPIC {
        return Err(Errno::EOPNOTSUPP);
    }
    if cfg.arch.misc_flags & !MSR_RELAXED != 0 {
        return Err(Errno::EINVAL);
    }
    if cfg.arch.misc_flags & MSR_RELAXED != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    Ok(())
}

/// The id for a new domain: `want` if it is an ordinary id (-EEXIST if
/// taken), else the next free one round-robin ([`table::next_free_id`];
/// -ENOSPC if none), as Xen's createdomain does with 0 or a reserved id.
fn pick_id(want: DomId) -> Result<DomId, Errno> {
    if want > 0 && want < DOMID_FIRST_RESERVED {
        return match table::get(want) {
            Some(_) => Err(Errno::EEXIST),
            None => Ok(want),
        };
    }
    table::next_free_id().ok_or(Errno::ENOSPC)
}

/// `XEN_DOMCTL_createdomain`: a new, empty, paused PVH domain in the
/// table. `want`: the header's domain id (0: keel picks one).
pub fn create(want: DomId, cfg: &CreateDomain) -> Result<Arc<Domain>, Errno> {
    check(cfg)?;
    let b = BACKEND.get().copied().ok_or(Errno::ENOSYS)?;
    let id = pick_id(want)?;
    let p2m = P2m::new(b.p2m_format()?, &mut Tables).map_err(|_| Errno::ENOMEM)?;
    let shared_info = phys::alloc_zeroed(1).ok_or(Errno::ENOMEM)?;
    let mem = Memory::new(p2m, shared_info, false, b.max_page());
    let root = mem.p2m.root;
    let mut vcpus = Vec::new();
    for i in 0..cfg.max_vcpus {
        let mut hw = b.new_vcpu()?;
        hw.set_p2m_root(root);
        // Xen's HVM local APIC IDs are twice the vCPU id.
        let v = Vcpu::new(id, i, i * 2, hw);
        // Down until the toolstack sets its context (Xen's VPF_down).
        v.st.lock().power = Power::Down;
        vcpus.push(Arc::new(v));
    }
    let d = Domain::new(
        id,
        "domU",
        false,
        Kind::Pvh {
            passthrough: false,
            // The toolstack's ACPI tables (keel-builder) put the sleep
            // control register at keel's port, as keel's own do for dom0:
            // a domU powers itself off there.
            own_acpi: true,
        },
        mem,
        vcpus,
    );
    *d.handle.lock() = cfg.handle;
    // Once it shuts down, it waits for the toolstack's destroydomain.
    d.keep_until_destroyed();
    // Created paused by the controller: the toolstack unpauses it once
    // built (as Xen's domain_create).
    d.pause()?;
    let d = Arc::new(d);
    table::insert(d.clone())?;
    // Into the scheduler, every vCPU down until the toolstack gives it a
    // context; spread over the CPUs, which all may run it.
    let n = crate::sched::ncpus().max(1);
    let all = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
    d.start(&|_| all, &|v| v as usize % n);
    log::info!(
        "d{id}: created by the toolstack ({} vCPU(s), paused)",
        cfg.max_vcpus
    );
    Ok(d)
}
