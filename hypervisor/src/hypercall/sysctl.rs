//! SYSCTL (hypercall 35): host-wide management at Xen 4.17's interface
//! version 0x15, for dom0's toolstack (`xl info`, `xl list`, `xl dmesg`,
//! libxenctrl). Only a privileged domain may call it: any other gets
//! -EPERM before keel reads its argument; another interface version gets
//! -EACCES. The one argument is a `struct xen_sysctl` in the caller's
//! memory, copied back whole after a sub-op, as Xen does.
//!
//! Implemented: `readconsole`, `physinfo`, `sched_id`, `perfc_op` (the
//! VM-exit counters, [`crate::hvm::perfc`]), `getdomaininfolist`,
//! `cpupool_op` (INFO: one pool with every CPU), `numainfo` and
//! `cputopoinfo` (one node), `get_cpu_featureset` and
//! `get_cpu_policy` (the host's CPUID for raw/host, what keel shows HVM
//! guests for hvm/hvm_max/hvm_default, in Xen's formats; PV answers
//! -EOPNOTSUPP), `scheduler_op` (credit's
//! pool parameters: get; a put that would change them answers
//! -EOPNOTSUPP, keel's are built in). Every other sub-op answers
//! -ENOSYS (counted).

use super::guest::MAX_COPY;
use super::host::{self, Cpu};
use super::{domctl, Ctx, HcResult, Ret};
use crate::hvm::perfc;
use crate::xen::abi::Errno;
use crate::xen::cpu_policy as policy;
use alloc::vec;
use keel_xen_abi::arch_x86::{CpuidLeaf, MsrEntry};
use keel_xen_abi::domctl::{scheduler, GetDomainInfo};
use keel_xen_abi::sysctl::{
    self, cpu_policy, cpupool_op, featureset, op, perfcop, physcap, schedop, CpuFeatureset,
    CpuPolicy, CpuTopo, CpuTopoInfo, CpupoolOp, GetDomainInfoList, MemInfo, NumaInfo, PerfcDesc,
    PerfcOp, PhysInfo, ReadConsole, SchedCreditParams, SchedId, SchedulerOp, XenSysctl,
};
use keel_xen_abi::{GuestHandle, Pod, XenctlBitmap};

pub fn call(cx: &mut Ctx, arg: u64) -> HcResult {
    let mut sc: XenSysctl = cx.toolstack_arg(arg, XenSysctl::version_ok)?;
    let mem = cx.mem();
    match sc.cmd {
        op::READCONSOLE => {
            let mut rc: ReadConsole = sc.op();
            let mut out = vec![0u8; (rc.count as usize).min(MAX_COPY)];
            let h = host::get()?;
            let (n, next) = h.console_read_from(rc.incremental != 0, rc.index, &mut out);
            mem.write(rc.buffer.addr(), &out[..n])?;
            // Cleared only once the copy succeeded: a bad buffer loses nothing.
            if rc.clear != 0 {
                h.console_clear_to(next);
            }
            rc.count = n as u32;
            rc.index = next;
            sc.u = sysctl::SysctlU::new(&rc);
        }
        op::PHYSINFO => {
            let h = host::get()?;
            let n = h.nr_cpus().max(1);
            let pi = PhysInfo {
                threads_per_core: 1,
                cores_per_socket: n,
                nr_cpus: n,
                max_cpu_id: n - 1,
                nr_nodes: 1,
                max_node_id: 0,
                cpu_khz: h.cpu_khz(),
                // HVM guests on hardware-assisted paging, grant table v1;
                // no PV guests, no IOMMU (so no passthrough), no shadow.
                capabilities: physcap::HVM | physcap::HAP | physcap::GNTTAB_V1,
                total_pages: h.total_pages(),
                free_pages: h.free_pages(),
                max_mfn: h.max_mfn(),
                hw_cap: {
                    let f = policy::featureset(&|l, s| h.cpuid(Cpu::Host, l, s));
                    core::array::from_fn(|i| f[i])
                },
                ..PhysInfo::zeroed()
            };
            sc.u = sysctl::SysctlU::new(&pi);
        }
        op::SCHED_ID => {
            sc.u = sysctl::SysctlU::new(&SchedId {
                sched_id: scheduler::CREDIT,
            });
        }
        op::PERFC_OP => {
            // Off (`perfc=0`): as a Xen built without performance counters.
            if !perfc::enabled() {
                return Err(Errno::ENOSYS);
            }
            let mut p: PerfcOp = sc.op();
            let r = perfc_op(cx, &p);
            // Xen reports the sizes and copies the argument back whatever
            // happened.
            p.nr_counters = perfc::COUNTERS as u32;
            p.nr_vals = (perfc::COUNTERS * perfc::DOMAIN_SLOTS) as u32;
            sc.u = sysctl::SysctlU::new(&p);
            mem.write_abi(arg, &sc)?;
            return r.map(|()| Ret::Val(0));
        }
        op::GETDOMAININFOLIST => {
            let mut l: GetDomainInfoList = sc.op();
            let mut n = 0u32;
            let doms = crate::domain::table::all();
            for d in doms.iter().filter(|d| d.id >= l.first_domain) {
                if n >= l.max_domains {
                    break;
                }
                let at = l.buffer.element(n as u64).ok_or(Errno::EFAULT)?;
                mem.write_abi::<GetDomainInfo>(at, &domctl::domain_info(d))?;
                n += 1;
            }
            l.num_domains = n;
            sc.u = sysctl::SysctlU::new(&l);
        }
        op::CPUPOOL_OP => {
            let mut p: CpupoolOp = sc.op();
            match p.op {
                // Pool 0 holds every CPU and every domain; tools iterate
                // with "first pool with id >= N".
                cpupool_op::INFO if p.cpupool_id == 0 => {
                    let n = host::get()?.nr_cpus();
                    p.sched_id = scheduler::CREDIT;
                    p.n_dom = crate::domain::table::all().len() as u32;
                    write_cpumap(cx, &p.cpumap, n, |_| true)?;
                }
                cpupool_op::INFO => return Err(Errno::ENOENT),
                cpupool_op::FREEINFO => {
                    write_cpumap(cx, &p.cpumap, host::get()?.nr_cpus(), |_| false)?;
                }
                other => {
                    return Err(cx.unimplemented(format_args!("sysctl cpupool_op {other}")));
                }
            }
            sc.u = sysctl::SysctlU::new(&p);
        }
        op::NUMAINFO => {
            let mut ni: NumaInfo = sc.op();
            let h = host::get()?;
            if !ni.meminfo.is_null() && !ni.distance.is_null() {
                if ni.num_nodes < 1 {
                    return Err(Errno::ENOBUFS);
                }
                mem.write_abi(
                    ni.meminfo.addr(),
                    &MemInfo {
                        memsize: h.total_pages() * 4096,
                        memfree: h.free_pages() * 4096,
                    },
                )?;
                // Distance from the node to itself: 10, as ACPI's SLIT says.
                mem.write_abi(ni.distance.addr(), &10u32)?;
            }
            ni.num_nodes = 1;
            sc.u = sysctl::SysctlU::new(&ni);
        }
        op::CPUTOPOINFO => {
            let mut ti: CpuTopoInfo = sc.op();
            let n = host::get()?.nr_cpus();
            if !ti.cputopo.is_null() {
                for cpu in 0..ti.num_cpus.min(n) {
                    let at = ti.cputopo.element(cpu as u64).ok_or(Errno::EFAULT)?;
                    mem.write_abi(
                        at,
                        &CpuTopo {
                            core: cpu,
                            socket: 0,
                            node: 0,
                        },
                    )?;
                }
                if ti.num_cpus < n {
                    // Xen writes what fits and says how many there are.
                    ti.num_cpus = n;
                    sc.u = sysctl::SysctlU::new(&ti);
                    mem.write_abi(arg, &sc)?;
                    return Err(Errno::ENOBUFS);
                }
            }
            ti.num_cpus = n;
            sc.u = sysctl::SysctlU::new(&ti);
        }
        op::GET_CPU_FEATURESET => {
            let mut fs: CpuFeatureset = sc.op();
            // A NULL buffer asks how many words there are.
            if fs.features.is_null() {
                fs.nr_features = policy::FEATURESET_WORDS as u32;
                sc.u = sysctl::SysctlU::new(&fs);
                mem.write_abi(arg, &sc)?;
                return Ok(Ret::Val(0));
            }
            let cpu = match fs.index {
                featureset::RAW | featureset::HOST => Cpu::Host,
                featureset::HVM | featureset::HVM_MAX => Cpu::Guest,
                // keel runs no PV guests.
                featureset::PV | featureset::PV_MAX => return Err(Errno::EOPNOTSUPP),
                _ => return Err(Errno::EINVAL),
            };
            let h = host::get()?;
            let words = policy::featureset(&|l, s| h.cpuid(cpu, l, s));
            let n = (fs.nr_features as usize).min(words.len());
            let mut b = vec![0u8; n * 4];
            for (c, w) in b.chunks_exact_mut(4).zip(words) {
                c.copy_from_slice(&w.to_le_bytes());
            }
            mem.write(fs.features.addr(), &b)?;
            fs.nr_features = n as u32;
            sc.u = sysctl::SysctlU::new(&fs);
            mem.write_abi(arg, &sc)?;
            // Xen says so when the caller's buffer was short.
            if n < words.len() {
                return Err(Errno::ENOBUFS);
            }
            return Ok(Ret::Val(0));
        }
        op::GET_CPU_POLICY => {
            let mut cp: CpuPolicy = sc.op();
            if cp.rsvd != 0 || cp.index > cpu_policy::HVM_DEFAULT {
                return Err(Errno::EINVAL);
            }
            let cpu = match cp.index {
                cpu_policy::RAW | cpu_policy::HOST => Cpu::Host,
                cpu_policy::HVM_MAX | cpu_policy::HVM_DEFAULT => Cpu::Guest,
                _ => return Err(Errno::EOPNOTSUPP),
            };
            let h = host::get()?;
            let id = |l, s| h.cpuid(cpu, l, s);
            write_cpu_policy(
                cx,
                &id,
                (&cp.leaves, &mut cp.nr_leaves),
                (&cp.msrs, &mut cp.nr_msrs),
            )?;
            sc.u = sysctl::SysctlU::new(&cp);
        }
        op::SCHEDULER_OP => {
            let mut so: SchedulerOp = sc.op();
            if so.cpupool_id != 0 {
                return Err(Errno::ESRCH);
            }
            if so.sched_id != scheduler::CREDIT {
                return Err(Errno::EINVAL);
            }
            let fixed = credit_params();
            match so.cmd {
                schedop::GETINFO => {}
                schedop::PUTINFO => {
                    let p: SchedCreditParams = so.u.get();
                    check_credit_params(&p)?;
                    // keel's slice and rate limit are built in: a put that
                    // would change them is refused, not silently ignored.
                    if p != fixed {
                        return Err(Errno::EOPNOTSUPP);
                    }
                }
                _ => return Err(Errno::EINVAL),
            }
            so.u = sysctl::SchedulerOpU::new(&fixed);
            sc.u = sysctl::SysctlU::new(&so);
        }
        other => {
            return Err(cx.unimplemented(format_args!("sysctl {other}")));
        }
    }
    mem.write_abi(arg, &sc)?;
    Ok(Ret::Val(0))
}

/// `XEN_SYSCTL_perfc_op`: with a NULL `desc`, the sizes only (the caller
/// fills them in); else every counter's description into `desc` and every
/// value into `val`, which must have room for them (the shape is fixed,
/// see [`perfc`]: xenperf asks for the sizes first and then passes its
/// buffers without them). `reset` then zeroes the counters, once the
/// copies succeeded (a bad buffer loses nothing; Xen resets anyway).
fn perfc_op(cx: &Ctx, p: &PerfcOp) -> Result<(), Errno> {
    if p.cmd != perfcop::QUERY && p.cmd != perfcop::RESET {
        return Err(Errno::EINVAL);
    }
    let doms = crate::domain::table::all();
    if !p.desc.is_null() {
        // Xen copies the values to whatever `val` holds, NULL too.
        if p.val.is_null() {
            return Err(Errno::EFAULT);
        }
        let mem = cx.mem();
        let mut descs = vec![0u8; perfc::COUNTERS * PerfcDesc::SIZE];
        for (i, out) in descs.chunks_exact_mut(PerfcDesc::SIZE).enumerate() {
            let mut d = PerfcDesc {
                name: [0; 80],
                nr_vals: perfc::DOMAIN_SLOTS as u32,
            };
            keel_xen_abi::put_cstr(&mut d.name, perfc::counter_name(i).as_bytes());
            d.write_to(out).ok_or(Errno::EFAULT)?;
        }
        // Values are u32 (`xen_sysctl_perfc_val_t`) and wrap, as Xen's.
        let mut vals = vec![0u32; perfc::COUNTERS * perfc::DOMAIN_SLOTS];
        let (exits, rest) = vals.split_at_mut(perfc::REASONS * perfc::DOMAIN_SLOTS);
        let (foreign, rest) = rest.split_at_mut(perfc::DOMAIN_SLOTS);
        let (grants, rest) = rest.split_at_mut(perfc::DOMAIN_SLOTS);
        let (guest_us, handling_us) = rest.split_at_mut(perfc::DOMAIN_SLOTS);
        // Ticks summed by domain first, so that µs are rounded once.
        let mut ticks = vec![(0u64, 0u64); perfc::DOMAIN_SLOTS];
        for d in &doms {
            let slot = perfc::slot(d.id);
            for v in &d.vcpus {
                for (r, chunk) in exits.chunks_exact_mut(perfc::DOMAIN_SLOTS).enumerate() {
                    chunk[slot] = chunk[slot].wrapping_add(v.stats.by_reason.get(r) as u32);
                }
                let (g, h) = v.stats.by_reason.times();
                ticks[slot].0 = ticks[slot].0.wrapping_add(g);
                ticks[slot].1 = ticks[slot].1.wrapping_add(h);
            }
            foreign[slot] += d.foreign.lock().len() as u32;
            grants[slot] += d.grant_maps.lock().held.len() as u32;
        }
        let khz = crate::platform::tsc_khz();
        for (slot, &(g, h)) in ticks.iter().enumerate() {
            guest_us[slot] = perfc::tsc_to_us(g, khz) as u32;
            handling_us[slot] = perfc::tsc_to_us(h, khz) as u32;
        }
        let bytes: alloc::vec::Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        mem.write(p.desc.addr(), &descs)?;
        mem.write(p.val.addr(), &bytes)?;
    }
    if p.cmd == perfcop::RESET {
        for d in &doms {
            for v in &d.vcpus {
                v.stats.by_reason.reset();
            }
        }
    }
    Ok(())
}

/// The credit scheduler's pool-wide parameters as Xen names them: the
/// longest slice, the least a vCPU runs before it can be preempted (Xen's
/// rate limit), and no migration delay.
fn credit_params() -> SchedCreditParams {
    use crate::sched::credit::{MAX_SLICE_NS, MIN_SLICE_NS};
    SchedCreditParams {
        tslice_ms: (MAX_SLICE_NS / 1_000_000) as u32,
        ratelimit_us: (MIN_SLICE_NS / 1_000) as u32,
        vcpu_migr_delay_us: 0,
    }
}

/// Xen's bounds on a credit `putinfo` (`csched_sys_cntl`): -EINVAL outside them.
fn check_credit_params(p: &SchedCreditParams) -> Result<(), Errno> {
    let bad = !(schedop::CSCHED_TSLICE_MIN..=schedop::CSCHED_TSLICE_MAX).contains(&p.tslice_ms)
        || (p.ratelimit_us != 0
            && !(schedop::RATELIMIT_MIN..=schedop::RATELIMIT_MAX).contains(&p.ratelimit_us))
        || u64::from(p.ratelimit_us) > u64::from(p.tslice_ms) * 1000
        || p.vcpu_migr_delay_us > schedop::CSCHED_MGR_DLY_MAX_US;
    if bad {
        Err(Errno::EINVAL)
    } else {
        Ok(())
    }
}

/// Writes a CPU bitmap of `n` CPUs (`set(cpu)` says which are in it) into
/// the caller's `map`, as Xen's `cpumask_to_xenctl_bitmap`: `nr_bits` bits
/// at most, the bytes past `n` CPUs zero.
pub(super) fn write_cpumap(
    cx: &Ctx,
    map: &XenctlBitmap,
    n: u32,
    set: impl Fn(u32) -> bool,
) -> Result<(), Errno> {
    let bytes = map.nr_bits.div_ceil(8) as usize;
    if bytes > MAX_COPY {
        return Err(Errno::EINVAL);
    }
    let mut b = vec![0u8; bytes];
    for cpu in 0..n.min(map.nr_bits) {
        if set(cpu) {
            b[(cpu / 8) as usize] |= 1 << (cpu % 8);
        }
    }
    cx.mem().write(map.bitmap.addr(), &b)
}

/// Reads a CPU bitmap from the caller's `map`: the CPUs below 64 it names.
pub(super) fn read_cpumap(cx: &Ctx, map: &XenctlBitmap) -> Result<u64, Errno> {
    let bytes = (map.nr_bits.div_ceil(8) as usize).min(8);
    let mut b = [0u8; 8];
    cx.mem().read(map.bitmap.addr(), &mut b[..bytes])?;
    let mut mask = u64::from_le_bytes(b);
    if map.nr_bits < 64 {
        mask &= (1u64 << map.nr_bits) - 1;
    }
    Ok(mask)
}

/// A CPU policy serialised into the caller's buffers (`get_cpu_policy`, of
/// sysctl and domctl alike): the leaves `cpuid` shows and the MSRs, each
/// count becoming what was written. A NULL buffer asks for the most there
/// can be.
pub(super) fn write_cpu_policy(
    cx: &Ctx,
    cpuid: &impl Fn(u32, u32) -> [u32; 4],
    leaves: (&GuestHandle<CpuidLeaf>, &mut u32),
    msrs: (&GuestHandle<MsrEntry>, &mut u32),
) -> Result<(), Errno> {
    let mem = cx.mem();
    let (lh, nr_leaves) = leaves;
    if lh.is_null() {
        *nr_leaves = policy::MAX_SERIALISED_LEAVES;
    } else {
        let v = policy::leaves(cpuid, *nr_leaves)?;
        for (i, l) in v.iter().enumerate() {
            mem.write_abi(lh.element(i as u64).ok_or(Errno::EFAULT)?, l)?;
        }
        *nr_leaves = v.len() as u32;
    }
    let (mh, nr_msrs) = msrs;
    if mh.is_null() {
        *nr_msrs = policy::MAX_SERIALISED_MSRS;
    } else {
        let v = policy::msrs(*nr_msrs)?;
        for (i, m) in v.iter().enumerate() {
            mem.write_abi(mh.element(i as u64).ok_or(Errno::EFAULT)?, m)?;
        }
        *nr_msrs = v.len() as u32;
    }
    Ok(())
}
