//! The domctls with which `xl create` (libxl's `libxl__build_pre` and
//! `libxl__arch_domain_create`, libxenguest's `xc_cpuid_apply_policy`) sets
//! up a new PVH domU, split from `domctl` so that the per-domain
//! management there stays apart:
//!
//! - `settscinfo` / `gettscinfo`: keel runs every guest on the native TSC,
//!   never emulated or scaled: modes 0 (default) and 2 (native) without a
//!   frequency or at the host's are accepted, mode 1 or another frequency
//!   answer -EOPNOTSUPP (logged), unknown modes -EINVAL; never the caller
//!   itself (-EINVAL, as Xen, which would have to pause it);
//! - `set_paging_mempool_size` / `get_paging_mempool_size`: keel's p2m
//!   allocates its own tables: a whole number of pages (else -EINVAL) is
//!   recorded and reported back;
//! - `setnodeaffinity` / `getnodeaffinity`: one NUMA node: a mask must
//!   include node 0 (-EINVAL otherwise, as Xen for a mask of no online
//!   node); the affinity is node 0;
//! - `settimeoffset`: recorded on the domain (`Domain::tools`); keel's
//!   wallclock does not add it yet;
//! - `get_cpu_policy` / `set_cpu_policy`: what the domain's CPUID shows, in
//!   sysctl `get_cpu_policy`'s format; a policy set is checked as Xen's
//!   `update_domain_cpu_policy` does and its feature words, narrowed to
//!   what keel shows, then mask the domain's CPUID exits.
//!
//! The caller is privileged (`domctl` checked it).

use super::sysctl::{read_cpumap, write_cpumap};
use super::{Ctx, HcResult, Ret};
use crate::domain::Domain;
use crate::xen::abi::Errno;
use crate::xen::cpu_policy as policy;

use core::sync::atomic::Ordering;
use keel_xen_abi::domctl::{
    op, tsc_mode, CpuPolicy, DomctlU, NodeAffinity, PagingMempool, SetTimeOffset, TscInfo,
    XenDomctl,
};
use keel_xen_abi::Pod;

/// Serves `dc` (one of the sub-ops above); writes it back where it has
/// output, as `domctl` does.
pub(super) fn call(cx: &mut Ctx, dc: &mut XenDomctl, arg: u64) -> HcResult {
    let mem = cx.mem();
    match dc.cmd {
        // keel runs every guest on the host's TSC, unscaled: the modes
        // that are that (default, which keel never needs to emulate, and
        // native) are accepted; emulation and another frequency are not.
        op::SETTSCINFO => {
            let d = cx.toolstack_target(dc.domain)?;
            if d.id == cx.dom.id {
                return Err(Errno::EINVAL);
            }
            let ti: TscInfo = dc.op();
            let khz = crate::platform::tsc_khz();
            match ti.tsc_mode {
                tsc_mode::DEFAULT | tsc_mode::NEVER_EMULATE
                    if ti.gtsc_khz == 0 || u64::from(ti.gtsc_khz) == khz => {}
                tsc_mode::DEFAULT | tsc_mode::NEVER_EMULATE | tsc_mode::ALWAYS_EMULATE => {
                    log::info!(
                        "d{}: settscinfo mode {} at {} kHz refused: keel runs guests on the \
                         native {khz} kHz TSC, never emulated or scaled",
                        d.id,
                        ti.tsc_mode,
                        ti.gtsc_khz
                    );
                    return Err(Errno::EOPNOTSUPP);
                }
                _ => return Err(Errno::EINVAL),
            }
            return Ok(Ret::Val(0));
        }
        op::GETTSCINFO => {
            let d = cx.toolstack_target(dc.domain)?;
            if d.id == cx.dom.id {
                return Err(Errno::EINVAL);
            }
            dc.u = DomctlU::new(&TscInfo {
                tsc_mode: tsc_mode::NEVER_EMULATE,
                gtsc_khz: crate::platform::tsc_khz() as u32,
                ..TscInfo::zeroed()
            });
        }
        // keel's p2m allocates its own tables: the pool's size is only
        // recorded (and reported back), in whole pages as Xen wants it.
        op::SET_PAGING_MEMPOOL_SIZE => {
            let d = cx.toolstack_target(dc.domain)?;
            let p: PagingMempool = dc.op();
            if !p.size.is_multiple_of(4096) {
                return Err(Errno::EINVAL);
            }
            d.tools.paging_mempool.store(p.size, Ordering::Relaxed);
            return Ok(Ret::Val(0));
        }
        op::GET_PAGING_MEMPOOL_SIZE => {
            let d = cx.toolstack_target(dc.domain)?;
            dc.u = DomctlU::new(&PagingMempool {
                size: d.tools.paging_mempool.load(Ordering::Relaxed),
            });
        }
        // One NUMA node: a node mask must include node 0 (Xen: -EINVAL
        // for one with no online node); every domain's affinity is node 0.
        op::SETNODEAFFINITY => {
            let _d = cx.toolstack_target(dc.domain)?;
            let na: NodeAffinity = dc.op();
            if read_cpumap(cx, &na.nodemap)? & 1 == 0 {
                return Err(Errno::EINVAL);
            }
            return Ok(Ret::Val(0));
        }
        op::GETNODEAFFINITY => {
            let _d = cx.toolstack_target(dc.domain)?;
            let na: NodeAffinity = dc.op();
            write_cpumap(cx, &na.nodemap, 1, |n| n == 0)?;
            return Ok(Ret::Val(0));
        }
        // Recorded (`Domain::tools`); keel's wallclock does not apply it yet.
        op::SETTIMEOFFSET => {
            let d = cx.toolstack_target(dc.domain)?;
            let t: SetTimeOffset = dc.op();
            d.tools
                .time_offset
                .store(t.time_offset_seconds, Ordering::Relaxed);
            return Ok(Ret::Val(0));
        }
        // What the domain's CPUID shows, serialised as sysctl's policies.
        op::GET_CPU_POLICY => {
            let d = cx.toolstack_target(dc.domain)?;
            let mut cp: CpuPolicy = dc.op();
            cpu_policy_get(cx, &d, &mut cp)?;
            dc.u = DomctlU::new(&cp);
        }
        // A policy narrower than (or equal to) what keel shows: its
        // feature bits then mask the domain's CPUID. Only before the
        // domain runs (Xen: -EEXIST once it did), never the caller's own.
        op::SET_CPU_POLICY => {
            let d = cx.toolstack_target(dc.domain)?;
            if d.id == cx.dom.id {
                return Err(Errno::EINVAL);
            }
            if !d.is_paused() {
                return Err(Errno::EEXIST);
            }
            let mut cp: CpuPolicy = dc.op();
            match cpu_policy_set(cx, &d, &cp) {
                Ok(features) => {
                    *d.tools.cpu_policy.lock() = Some(features);
                    return Ok(Ret::Val(0));
                }
                Err(e) => {
                    // Xen copies the error's leaf, subleaf and MSR back.
                    cp.err_leaf = e.leaf;
                    cp.err_subleaf = e.subleaf;
                    cp.err_msr = e.msr;
                    dc.u = DomctlU::new(&cp);
                    mem.write_abi(arg, dc)?;
                    return Err(e.errno);
                }
            }
        }
        _ => return Err(Errno::ENOSYS),
    }
    mem.write_abi(arg, dc)?;
    Ok(Ret::Val(0))
}

/// `get_cpu_policy` of domain `d`: the CPU keel shows guests (sysctl's
/// HVM policy) with the feature bits the toolstack's policy narrowed, if
/// it set one. NULL buffers ask for the most there can be.
fn cpu_policy_get(cx: &Ctx, d: &Domain, cp: &mut CpuPolicy) -> Result<(), Errno> {
    let h = super::host::get()?;
    let features = d.tools.features();
    let id = |l, s| {
        let r = h.cpuid(super::host::Cpu::Guest, l, s);
        features
            .as_ref()
            .map_or(r, |f| policy::apply_features(l, s, r, f))
    };
    super::sysctl::write_cpu_policy(
        cx,
        &id,
        (&cp.leaves, &mut cp.nr_leaves),
        (&cp.msrs, &mut cp.nr_msrs),
    )
}

/// `set_cpu_policy`'s buffers read and checked ([`policy::set_policy`],
/// merged into the domain's policy so far): the featureset the domain is
/// then shown. Counts past Xen's bounds are
/// refused before anything is read.
fn cpu_policy_set(
    cx: &Ctx,
    d: &Domain,
    cp: &CpuPolicy,
) -> Result<policy::Features, policy::PolicyError> {
    let fault = |errno| policy::PolicyError::of(errno);
    if cp.nr_leaves > policy::MAX_SERIALISED_LEAVES || cp.nr_msrs > policy::MAX_SERIALISED_MSRS {
        return Err(fault(Errno::E2BIG));
    }
    let h = super::host::get().map_err(fault)?;
    let mem = cx.mem();
    let mut leaves = alloc::vec::Vec::with_capacity(cp.nr_leaves as usize);
    for i in 0..cp.nr_leaves as u64 {
        let at = cp.leaves.element(i).ok_or(Errno::EFAULT).map_err(fault)?;
        leaves.push(mem.read_abi(at).map_err(fault)?);
    }
    let mut msrs = alloc::vec::Vec::with_capacity(cp.nr_msrs as usize);
    for i in 0..cp.nr_msrs as u64 {
        let at = cp.msrs.element(i).ok_or(Errno::EFAULT).map_err(fault)?;
        msrs.push(mem.read_abi(at).map_err(fault)?);
    }
    let max = |l, s| h.cpuid(super::host::Cpu::Guest, l, s);
    let now = d.tools.features();
    let base = |l, s| {
        let r = max(l, s);
        now.as_ref()
            .map_or(r, |f| policy::apply_features(l, s, r, f))
    };
    policy::set_policy(&max, &base, &leaves, &msrs)
}
