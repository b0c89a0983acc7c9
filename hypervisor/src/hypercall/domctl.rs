//! DOMCTL (hypercall 36): per-domain management at Xen 4.17's interface
//! version 0x15, for dom0's toolstack (`xl list`, `xl vcpu-list`,
//! `xl vcpu-pin`, `xl sched-credit`). Only a privileged domain may call
//! it: any other gets -EPERM before keel reads its argument; another
//! interface version gets -EACCES. The argument is a `struct xen_domctl`,
//! copied back whole after a sub-op that has output, as Xen does.
//!
//! Implemented: `getdomaininfo`, `getvcpuinfo`, `getvcpuaffinity`,
//! `setvcpuaffinity` (hard affinity; soft affinity is every CPU),
//! `scheduler_op` (credit weight and cap, get and put),
//! `setdomainhandle`, `pausedomain`/`unpausedomain` (nesting; a domain
//! cannot pause itself), `createdomain` (an empty, paused PVH domain:
//! `domain::create`), `destroydomain`, `max_vcpus` (confirms
//! createdomain's count), `max_mem`, `gethvmcontext`/`sethvmcontext`
//! (`hvmctx`: HEADER, MTRR and the PVH boot CPU state); for the rest of
//! `xl create` of a PVH domU: `settscinfo`/`gettscinfo` (the native TSC
//! only), `set_paging_mempool_size`/`get_paging_mempool_size` (recorded),
//! `setnodeaffinity`/`getnodeaffinity` (node 0, keel's only),
//! `settimeoffset` (recorded, not applied to the wallclock yet),
//! `get_cpu_policy`/`set_cpu_policy` (checked as Xen's
//! `update_domain_cpu_policy`; its feature words mask the domain's CPUID,
//! the rest keel computes itself). Every other sub-op answers -ENOSYS
//! (counted).

use super::sysctl::{read_cpumap, write_cpumap};
use super::{Ctx, HcResult, Ret};
use crate::domain::create;
use crate::domain::{table, Domain, Outcome};
use crate::xen::abi::Errno;
use crate::xen::cpu_policy as policy;
use alloc::sync::Arc;
use core::sync::atomic::Ordering;
use keel_xen_abi::arch_x86::{ArchDomainConfig, EMU_LAPIC};
use keel_xen_abi::domctl::{
    affinity, dominf, op, schedop, scheduler, tsc_mode, CpuPolicy, CreateDomain, DomctlU,
    GetDomainInfo, GetVcpuInfo, HvmContext, MaxMem, MaxVcpus, NodeAffinity, PagingMempool,
    SchedCredit, SchedOpU, SchedulerOp, SetDomainHandle, SetTimeOffset, TscInfo, VcpuAffinity,
    XenDomctl, INVALID_MAX_VCPU_ID,
};
use keel_xen_abi::{Pod, DOMID_SELF};

/// Guest-physical address width keel's p2m gives every domain (4-level
/// EPT/NPT).
const GPADDR_BITS: u8 = 48;

pub fn call(cx: &mut Ctx, arg: u64) -> HcResult {
    let mut dc: XenDomctl = cx.toolstack_arg(arg, XenDomctl::version_ok)?;
    let mem = cx.mem();
    let target = |id: u16| -> Result<Arc<Domain>, Errno> {
        let id = if id == DOMID_SELF { cx.dom.id } else { id };
        table::get(id).ok_or(Errno::ESRCH)
    };
    match dc.cmd {
        op::GETDOMAININFO => {
            // 4.17: the first domain with an id at least the one asked for.
            let d = table::all()
                .into_iter()
                .filter(|d| d.id >= dc.domain && dc.domain < keel_xen_abi::DOMID_FIRST_RESERVED)
                .min_by_key(|d| d.id)
                .ok_or(Errno::ESRCH)?;
            dc.domain = d.id;
            dc.u = DomctlU::new(&domain_info(&d));
        }
        op::GETVCPUINFO => {
            let d = target(dc.domain)?;
            let mut vi: GetVcpuInfo = dc.op();
            let v = d.vcpus.get(vi.vcpu as usize).ok_or(Errno::EINVAL)?;
            let (online, blocked) = {
                let st = v.st.lock();
                (st.power == crate::domain::Power::Up, st.wait.is_some())
            };
            let on = v.running_on.load(Ordering::Relaxed);
            vi.online = online as u8;
            vi.blocked = blocked as u8;
            vi.running = (on != crate::domain::vcpu::NOWHERE) as u8;
            vi.cpu_time = v.stats.run_ns.load(Ordering::Relaxed);
            vi.cpu = if on != crate::domain::vcpu::NOWHERE {
                on as u32
            } else {
                crate::sched::cpu_of(v.sched_ref()).unwrap_or(0) as u32
            };
            dc.u = DomctlU::new(&vi);
        }
        op::GETVCPUAFFINITY | op::SETVCPUAFFINITY => {
            let d = target(dc.domain)?;
            let va: VcpuAffinity = dc.op();
            let v = d.vcpus.get(va.vcpu as usize).ok_or(Errno::EINVAL)?;
            if va.flags & !(affinity::HARD | affinity::SOFT | affinity::FORCE) != 0
                || va.flags & (affinity::HARD | affinity::SOFT) == 0
            {
                return Err(Errno::EINVAL);
            }
            let n = crate::sched::ncpus() as u32;
            let all = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
            if dc.cmd == op::SETVCPUAFFINITY {
                if va.flags & affinity::SOFT != 0 {
                    // keel schedules by hard affinity alone: a soft mask
                    // narrower than every CPU would be silently ignored.
                    let soft = read_cpumap(cx, &va.cpumap_soft)?;
                    if soft & all != all {
                        return Err(Errno::EOPNOTSUPP);
                    }
                }
                if va.flags & affinity::HARD != 0 {
                    let hard = read_cpumap(cx, &va.cpumap_hard)? & all;
                    if hard == 0 {
                        return Err(Errno::EINVAL);
                    }
                    crate::sched::pin(v.sched_ref(), hard).map_err(|_| Errno::EINVAL)?;
                }
            }
            // Get, or Set's write-back of the effective masks.
            if va.flags & affinity::HARD != 0 {
                let hard = crate::sched::affinity(v.sched_ref()).unwrap_or(all);
                write_cpumap(cx, &va.cpumap_hard, n, |c| hard & (1 << c) != 0)?;
            }
            if va.flags & affinity::SOFT != 0 {
                write_cpumap(cx, &va.cpumap_soft, n, |_| true)?;
            }
            return Ok(Ret::Val(0));
        }
        op::SCHEDULER_OP => {
            let d = target(dc.domain)?;
            let mut so: SchedulerOp = dc.op();
            if so.sched_id != scheduler::CREDIT {
                return Err(Errno::EINVAL);
            }
            match so.cmd {
                schedop::GETINFO => {
                    let (weight, cap) = crate::sched::weight_and_cap(d.id).ok_or(Errno::ESRCH)?;
                    so.u = SchedOpU::new(&SchedCredit { weight, cap });
                    dc.u = DomctlU::new(&so);
                }
                schedop::PUTINFO => {
                    let c: SchedCredit = so.u.get();
                    // As Xen's credit: weight 0 and cap 0xffff leave them as they are.
                    if c.cap != u16::MAX && c.cap as usize > 100 * d.vcpus.len() {
                        return Err(Errno::EINVAL);
                    }
                    if c.weight != 0 {
                        crate::sched::set_weight(d.id, c.weight).map_err(|_| Errno::ESRCH)?;
                    }
                    if c.cap != u16::MAX {
                        crate::sched::set_cap(d.id, c.cap).map_err(|_| Errno::ESRCH)?;
                    }
                    return Ok(Ret::Val(0));
                }
                other => {
                    return Err(cx.unimplemented(format_args!("domctl scheduler_op {other}")));
                }
            }
        }
        // A new, empty, paused PVH domain (`domain::create`); its
        // id goes back in the header.
        op::CREATEDOMAIN => {
            let cfg: CreateDomain = dc.op();
            let d = create::create(dc.domain, &cfg)?;
            dc.domain = d.id;
        }
        // As Xen: not the caller itself. The domain ends at once: its
        // vCPUs leave their CPUs and it leaves the table with the last.
        op::DESTROYDOMAIN => {
            let d = target(dc.domain)?;
            if d.id == cx.dom.id {
                return Err(Errno::EINVAL);
            }
            d.end(Outcome::Killed(alloc::format!(
                "destroyed by d{}",
                cx.dom.id
            )));
            return Ok(Ret::Val(0));
        }
        // The vCPUs were made by createdomain: this only confirms the count.
        op::MAX_VCPUS => {
            let d = target(dc.domain)?;
            let m: MaxVcpus = dc.op();
            if d.id == cx.dom.id || m.max as usize != d.vcpus.len() {
                return Err(Errno::EINVAL);
            }
            return Ok(Ret::Val(0));
        }
        op::MAX_MEM => {
            let d = target(dc.domain)?;
            let m: MaxMem = dc.op();
            d.set_max_pages(m.max_memkb >> 2);
            return Ok(Ret::Val(0));
        }
        // As Xen: a domain may not pause itself (`xl pause 0` fails).
        op::PAUSEDOMAIN => {
            let d = target(dc.domain)?;
            if d.id == cx.dom.id || d.is_ending() {
                return Err(Errno::EINVAL);
            }
            d.pause()?;
            return Ok(Ret::Val(0));
        }
        op::UNPAUSEDOMAIN => {
            let d = target(dc.domain)?;
            if d.is_ending() {
                return Err(Errno::EINVAL);
            }
            d.unpause()?;
            return Ok(Ret::Val(0));
        }
        // HVM save records (`hvmctx`): the context's HEADER and MTRRs for
        // the domain builder, and the BSP's PVH boot state back.
        op::GETHVMCONTEXT => {
            let d = target(dc.domain)?;
            let mut h: HvmContext = dc.op();
            h.size = super::hvmctx::get(cx, &d, &h)?;
            dc.u = DomctlU::new(&h);
        }
        op::SETHVMCONTEXT => {
            let d = target(dc.domain)?;
            if d.id == cx.dom.id {
                return Err(Errno::EINVAL);
            }
            super::hvmctx::set(cx, &d, &dc.op())?;
            return Ok(Ret::Val(0));
        }
        op::SETDOMAINHANDLE => {
            let d = target(dc.domain)?;
            let h: SetDomainHandle = dc.op();
            *d.handle.lock() = h.handle;
            return Ok(Ret::Val(0));
        }
        // keel runs every guest on the host's TSC, unscaled: the modes
        // that are that (default, which keel never needs to emulate, and
        // native) are accepted; emulation and another frequency are not.
        op::SETTSCINFO => {
            let d = target(dc.domain)?;
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
            let d = target(dc.domain)?;
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
            let d = target(dc.domain)?;
            let p: PagingMempool = dc.op();
            if !p.size.is_multiple_of(4096) {
                return Err(Errno::EINVAL);
            }
            d.tools.paging_mempool.store(p.size, Ordering::Relaxed);
            return Ok(Ret::Val(0));
        }
        op::GET_PAGING_MEMPOOL_SIZE => {
            let d = target(dc.domain)?;
            dc.u = DomctlU::new(&PagingMempool {
                size: d.tools.paging_mempool.load(Ordering::Relaxed),
            });
        }
        // One NUMA node: a node mask must include node 0 (Xen: -EINVAL
        // for one with no online node); every domain's affinity is node 0.
        op::SETNODEAFFINITY => {
            let _d = target(dc.domain)?;
            let na: NodeAffinity = dc.op();
            if read_cpumap(cx, &na.nodemap)? & 1 == 0 {
                return Err(Errno::EINVAL);
            }
            return Ok(Ret::Val(0));
        }
        op::GETNODEAFFINITY => {
            let _d = target(dc.domain)?;
            let na: NodeAffinity = dc.op();
            write_cpumap(cx, &na.nodemap, 1, |n| n == 0)?;
            return Ok(Ret::Val(0));
        }
        // Recorded (`Domain::tools`); keel's wallclock does not apply it yet.
        op::SETTIMEOFFSET => {
            let d = target(dc.domain)?;
            let t: SetTimeOffset = dc.op();
            d.tools
                .time_offset
                .store(t.time_offset_seconds, Ordering::Relaxed);
            return Ok(Ret::Val(0));
        }
        // What the domain's CPUID shows, serialised as sysctl's policies.
        op::GET_CPU_POLICY => {
            let d = target(dc.domain)?;
            let mut cp: CpuPolicy = dc.op();
            cpu_policy_get(cx, &d, &mut cp)?;
            dc.u = DomctlU::new(&cp);
        }
        // A policy narrower than (or equal to) what keel shows: its
        // feature bits then mask the domain's CPUID. Only before the
        // domain runs (Xen: -EEXIST once it did), never the caller's own.
        op::SET_CPU_POLICY => {
            let d = target(dc.domain)?;
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
                    mem.write_abi(arg, &dc)?;
                    return Err(e.errno);
                }
            }
        }
        other => {
            return Err(cx.unimplemented(format_args!("domctl {other} on d{}", dc.domain)));
        }
    }
    mem.write_abi(arg, &dc)?;
    Ok(Ret::Val(0))
}

/// Domain `d` as `getdomaininfo` (and sysctl `getdomaininfolist`) reports it.
pub fn domain_info(d: &Domain) -> GetDomainInfo {
    let mut flags = dominf::HVM_GUEST | dominf::HAP;
    match d.outcome() {
        Some(Outcome::Shutdown(r)) => {
            flags |= dominf::SHUTDOWN | (r as u32 & dominf::SHUTDOWNMASK) << dominf::SHUTDOWNSHIFT
        }
        Some(_) => flags |= dominf::DYING,
        None if d.is_ending() => flags |= dominf::DYING,
        None => {
            let running = d
                .vcpus
                .iter()
                .any(|v| v.running_on.load(Ordering::Relaxed) != crate::domain::vcpu::NOWHERE);
            // A vCPU held by a toolstack pause is not blocked (as on Xen).
            let blocked = d.vcpus.iter().all(|v| {
                let w = v.st.lock().wait;
                w.is_some() && w != Some(crate::domain::Wait::Paused)
            });
            if running {
                flags |= dominf::RUNNING;
            } else if blocked {
                flags |= dominf::BLOCKED;
            }
            if d.is_paused() {
                flags |= dominf::PAUSED;
            }
        }
    }
    let online = d
        .vcpus
        .iter()
        .filter(|v| v.st.lock().power == crate::domain::Power::Up)
        .count() as u32;
    GetDomainInfo {
        domain: d.id,
        flags,
        tot_pages: d.tot_pages(),
        max_pages: d.max_pages(),
        // keel does not track where the guest placed shared_info.
        shared_info_frame: u64::MAX,
        cpu_time: d
            .vcpus
            .iter()
            .map(|v| v.stats.run_ns.load(Ordering::Relaxed))
            .sum(),
        nr_online_vcpus: online,
        max_vcpu_id: (d.vcpus.len() as u32)
            .checked_sub(1)
            .unwrap_or(INVALID_MAX_VCPU_ID),
        handle: *d.handle.lock(),
        gpaddr_bits: GPADDR_BITS,
        arch_config: ArchDomainConfig {
            emulation_flags: EMU_LAPIC,
            ..ArchDomainConfig::zeroed()
        },
        ..GetDomainInfo::zeroed()
    }
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
    let mem = cx.mem();
    if cp.leaves.is_null() {
        cp.nr_leaves = policy::MAX_SERIALISED_LEAVES;
    } else {
        let v = policy::leaves(&id, cp.nr_leaves)?;
        for (i, l) in v.iter().enumerate() {
            mem.write_abi(cp.leaves.element(i as u64).ok_or(Errno::EFAULT)?, l)?;
        }
        cp.nr_leaves = v.len() as u32;
    }
    if cp.msrs.is_null() {
        cp.nr_msrs = policy::MAX_SERIALISED_MSRS;
    } else {
        let v = policy::msrs(cp.nr_msrs)?;
        for (i, m) in v.iter().enumerate() {
            mem.write_abi(cp.msrs.element(i as u64).ok_or(Errno::EFAULT)?, m)?;
        }
        cp.nr_msrs = v.len() as u32;
    }
    Ok(())
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
