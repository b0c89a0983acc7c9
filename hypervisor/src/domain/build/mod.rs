//! Building domains inside keel: PVH domains from a kernel image
//! ([`pvh`]: dom0 at boot, [`dom0`] for its machine-owning specifics) and
//! keel's test guests ([`test`]). domUs are built from dom0's userspace
//! through the toolstack ABI instead, as on Xen: keel only creates the
//! empty container (`domain::create`).

pub mod dom0;
pub mod pvh;
pub mod test;

use super::{Domain, Vcpu};
use crate::arch::x86::hvm as hw;
use crate::hvm::vcpu::Vcpu as HwVcpu;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU16, Ordering};

/// VPIDs (VT-x) handed out round the 16-bit space, 0 being the host's.
/// A vCPU invalidates its VPID's translations whenever it is bound to a
/// CPU, so a VPID reused after a wrap is still correct.
static NEXT_VPID: AtomicU16 = AtomicU16::new(1);

/// A new hardware vCPU on this machine's virtualization backend.
pub fn new_hw_vcpu() -> Result<Box<dyn HwVcpu + Send>, String> {
    let mut vpid = NEXT_VPID.fetch_add(1, Ordering::Relaxed);
    if vpid == 0 {
        vpid = NEXT_VPID.fetch_add(1, Ordering::Relaxed);
    }
    hw::new_vcpu(vpid).map_err(|e| format!("cannot create a vCPU: {e}"))
}

/// `n` vCPUs for domain `domid` on the p2m rooted at `p2m_root`, with
/// the local APIC IDs `apic_id(i)`.
pub fn vcpus(
    domid: u16,
    n: u32,
    p2m_root: u64,
    apic_id: impl Fn(u32) -> u32,
) -> Result<alloc::vec::Vec<Arc<Vcpu>>, String> {
    (0..n)
        .map(|i| {
            let mut h = new_hw_vcpu()?;
            h.set_p2m_root(p2m_root);
            Ok(Arc::new(Vcpu::new(domid, i, apic_id(i), h)))
        })
        .collect()
}

/// Adds a built domain to the table and starts it.
pub fn launch(
    d: Domain,
    affinity: &dyn Fn(u32) -> u64,
    home: &dyn Fn(u32) -> usize,
) -> Result<Arc<Domain>, String> {
    let d = Arc::new(d);
    super::table::insert(d.clone()).map_err(|e| format!("domain {}: {e:?}", d.id))?;
    d.start(affinity, home);
    Ok(d)
}
