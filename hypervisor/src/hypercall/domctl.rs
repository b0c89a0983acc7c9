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
//! (`hvmctx`: HEADER, MTRR and the PVH boot CPU state); the settings
//! `xl create` gives a new PVH domU (`domctl_settings`: TSC mode, paging
//! pool size, NUMA node affinity, time offset, CPU policy). Every other
//! sub-op answers -ENOSYS (counted).

use super::sysctl::{read_cpumap, write_cpumap};
use super::{Ctx, HcResult, Ret};
use crate::domain::create;
use crate::domain::{table, Domain, Outcome, ShutdownReason};
use crate::xen::abi::Errno;

use core::sync::atomic::Ordering;
use keel_xen_abi::arch_x86::{ArchDomainConfig, EMU_LAPIC};
use keel_xen_abi::domctl::{
    affinity, dominf, op, schedop, scheduler, CreateDomain, DomctlU, GetDomainInfo, GetVcpuInfo,
    HvmContext, MaxMem, MaxVcpus, SchedCredit, SchedOpU, SchedulerOp, SetDomainHandle,
    VcpuAffinity, XenDomctl, INVALID_MAX_VCPU_ID,
};
use keel_xen_abi::Pod;

/// Guest-physical address width keel's p2m gives every domain (4-level
/// EPT/NPT).
const GPADDR_BITS: u8 = 48;

pub fn call(cx: &mut Ctx, arg: u64) -> HcResult {
    let mut dc: XenDomctl = cx.toolstack_arg(arg, XenDomctl::version_ok)?;
    let mem = cx.mem();
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
            let d = cx.toolstack_target(dc.domain)?;
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
            let d = cx.toolstack_target(dc.domain)?;
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
            let d = cx.toolstack_target(dc.domain)?;
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
        // As Xen: not the caller itself. The domain ends at once (if it
        // had not shut down): its vCPUs leave their CPUs and it leaves the
        // table with the last.
        op::DESTROYDOMAIN => {
            let d = cx.toolstack_target(dc.domain)?;
            if d.id == cx.dom.id {
                return Err(Errno::EINVAL);
            }
            d.destroy(Outcome::Killed(alloc::format!(
                "destroyed by d{}",
                cx.dom.id
            )));
            return Ok(Ret::Val(0));
        }
        // The vCPUs were made by createdomain: this only confirms the count.
        op::MAX_VCPUS => {
            let d = cx.toolstack_target(dc.domain)?;
            let m: MaxVcpus = dc.op();
            if d.id == cx.dom.id || m.max as usize != d.vcpus.len() {
                return Err(Errno::EINVAL);
            }
            return Ok(Ret::Val(0));
        }
        op::MAX_MEM => {
            let d = cx.toolstack_target(dc.domain)?;
            let m: MaxMem = dc.op();
            d.set_max_pages(m.max_memkb >> 2);
            return Ok(Ret::Val(0));
        }
        // As Xen: a domain may not pause itself (`xl pause 0` fails). A
        // shut-down domain may be paused (`xl destroy` pauses first).
        op::PAUSEDOMAIN => {
            let d = cx.toolstack_target(dc.domain)?;
            if d.id == cx.dom.id || d.is_destroyed() {
                return Err(Errno::EINVAL);
            }
            d.pause()?;
            return Ok(Ret::Val(0));
        }
        op::UNPAUSEDOMAIN => {
            let d = cx.toolstack_target(dc.domain)?;
            if d.is_destroyed() {
                return Err(Errno::EINVAL);
            }
            d.unpause()?;
            return Ok(Ret::Val(0));
        }
        // HVM save records (`hvmctx`): the context's HEADER and MTRRs for
        // the domain builder, and the BSP's PVH boot state back.
        op::GETHVMCONTEXT => {
            let d = cx.toolstack_target(dc.domain)?;
            let mut h: HvmContext = dc.op();
            h.size = super::hvmctx::get(cx, &d, &h)?;
            dc.u = DomctlU::new(&h);
        }
        op::SETHVMCONTEXT => {
            let d = cx.toolstack_target(dc.domain)?;
            if d.id == cx.dom.id {
                return Err(Errno::EINVAL);
            }
            super::hvmctx::set(cx, &d, &dc.op())?;
            return Ok(Ret::Val(0));
        }
        op::SETDOMAINHANDLE => {
            let d = cx.toolstack_target(dc.domain)?;
            let h: SetDomainHandle = dc.op();
            *d.handle.lock() = h.handle;
            return Ok(Ret::Val(0));
        }
        // What `xl create` sets on a new domain (`domctl_settings`).
        op::SETTSCINFO
        | op::GETTSCINFO
        | op::SET_PAGING_MEMPOOL_SIZE
        | op::GET_PAGING_MEMPOOL_SIZE
        | op::SETNODEAFFINITY
        | op::GETNODEAFFINITY
        | op::SETTIMEOFFSET
        | op::GET_CPU_POLICY
        | op::SET_CPU_POLICY => return super::domctl_settings::call(cx, &mut dc, arg),
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
    let shutdown = |r: u32| dominf::SHUTDOWN | (r & dominf::SHUTDOWNMASK) << dominf::SHUTDOWNSHIFT;
    match d.outcome() {
        _ if d.is_destroyed() => flags |= dominf::DYING,
        Some(Outcome::Shutdown(r)) => flags |= shutdown(r as u32),
        // keel killed it (a fault it caused): Xen's domain_crash, which a
        // toolstack sees as a crash shutdown.
        Some(Outcome::Killed(_)) => flags |= shutdown(ShutdownReason::Crash as u32),
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
