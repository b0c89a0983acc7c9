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
//! `cputopoinfo` (one node). Every other sub-op answers -ENOSYS (counted).

use super::guest::MAX_COPY;
use super::{domctl, Ctx, HcResult, Ret};
use crate::hvm::perfc;
use crate::xen::abi::Errno;
use alloc::vec;
use keel_xen_abi::domctl::{scheduler, GetDomainInfo};
use keel_xen_abi::sysctl::{
    self, cpupool_op, op, perfcop, physcap, CpuTopo, CpuTopoInfo, CpupoolOp, GetDomainInfoList,
    MemInfo, NumaInfo, PerfcDesc, PerfcOp, PhysInfo, ReadConsole, SchedId, XenSysctl,
};
use keel_xen_abi::{Pod, XenctlBitmap};

/// The machine facts sysctl reports: the real machine in keel, a fake in
/// the host tests.
pub trait HostFacts: Sync {
    /// CPUs keel runs on (0..n).
    fn nr_cpus(&self) -> u32;
    fn cpu_khz(&self) -> u32;
    /// Usable RAM, pages.
    fn total_pages(&self) -> u64;
    /// RAM not given out, pages.
    fn free_pages(&self) -> u64;
    /// The highest usable machine frame.
    fn max_mfn(&self) -> u64;
    /// The host's CPUID feature words in Xen's featureset order (1:EDX,
    /// 1:ECX, e1:EDX, e1:ECX, Da1:EAX, 7:0:EBX, 7:0:ECX, e7:EDX).
    fn hw_cap(&self) -> [u32; 8];
    /// keel's console ring as Xen's `readconsole` reads it
    /// ([`crate::conring::Ring::read_from`]).
    fn console_read_from(&self, incremental: bool, index: u32, out: &mut [u8]) -> (usize, u32);
    /// [`crate::conring::Ring::clear_to`].
    fn console_clear_to(&self, index: u32);
    /// keel's own command line, as the boot loader gave it.
    fn commandline(&self) -> alloc::string::String;
}

static HOST: spin::Once<&'static dyn HostFacts> = spin::Once::new();

/// Sets the machine's facts (at boot).
pub fn set_host(h: &'static dyn HostFacts) {
    HOST.call_once(|| h);
}

pub(super) fn host() -> Result<&'static dyn HostFacts, Errno> {
    HOST.get().copied().ok_or(Errno::ENOSYS)
}

pub fn call(cx: &mut Ctx, arg: u64) -> HcResult {
    if !cx.dom.privileged {
        return Err(Errno::EPERM);
    }
    let mem = cx.mem();
    let mut sc: XenSysctl = mem.read_abi(arg)?;
    if !sc.version_ok() {
        return Err(Errno::EACCES);
    }
    match sc.cmd {
        op::READCONSOLE => {
            let mut rc: ReadConsole = sc.op();
            let mut out = vec![0u8; (rc.count as usize).min(MAX_COPY)];
            let h = host()?;
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
            let h = host()?;
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
                hw_cap: h.hw_cap(),
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
            p.nr_counters = perfc::REASONS as u32;
            p.nr_vals = (perfc::REASONS * perfc::DOMAIN_SLOTS) as u32;
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
                    let n = host()?.nr_cpus();
                    p.sched_id = scheduler::CREDIT;
                    p.n_dom = crate::domain::table::all().len() as u32;
                    write_cpumap(cx, &p.cpumap, n, |_| true)?;
                }
                cpupool_op::INFO => return Err(Errno::ENOENT),
                cpupool_op::FREEINFO => {
                    write_cpumap(cx, &p.cpumap, host()?.nr_cpus(), |_| false)?;
                }
                other => {
                    return Err(cx.unimplemented(format_args!("sysctl cpupool_op {other}")));
                }
            }
            sc.u = sysctl::SysctlU::new(&p);
        }
        op::NUMAINFO => {
            let mut ni: NumaInfo = sc.op();
            let h = host()?;
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
            let n = host()?.nr_cpus();
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
        let mut descs = vec![0u8; perfc::REASONS * PerfcDesc::SIZE];
        for (i, out) in descs.chunks_exact_mut(PerfcDesc::SIZE).enumerate() {
            let mut d = PerfcDesc {
                name: [0; 80],
                nr_vals: perfc::DOMAIN_SLOTS as u32,
            };
            keel_xen_abi::put_cstr(&mut d.name, perfc::counter_name(i).as_bytes());
            d.write_to(out).ok_or(Errno::EFAULT)?;
        }
        // Values are u32 (`xen_sysctl_perfc_val_t`) and wrap, as Xen's.
        let mut vals = vec![0u32; perfc::REASONS * perfc::DOMAIN_SLOTS];
        for d in &doms {
            let slot = perfc::slot(d.id);
            for v in &d.vcpus {
                for (r, chunk) in vals.chunks_exact_mut(perfc::DOMAIN_SLOTS).enumerate() {
                    chunk[slot] = chunk[slot].wrapping_add(v.stats.by_reason.get(r) as u32);
                }
            }
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

/// keel's machine: the CPUs it brought up, its frame allocator, the
/// firmware's memory map and the host's CPUID.
#[cfg(target_os = "none")]
pub struct Machine;

#[cfg(target_os = "none")]
impl HostFacts for Machine {
    fn nr_cpus(&self) -> u32 {
        crate::arch::x86::smp::online_count()
    }
    fn cpu_khz(&self) -> u32 {
        crate::arch::x86::time::tsc_khz() as u32
    }
    fn total_pages(&self) -> u64 {
        crate::bootinfo::get().map_or(0, |b| b.usable_bytes()) / 4096
    }
    fn free_pages(&self) -> u64 {
        crate::mm::phys::frames().free_bytes() / 4096
    }
    fn max_mfn(&self) -> u64 {
        (crate::bootinfo::get().map_or(0, |b| b.top_of_ram()) / 4096).saturating_sub(1)
    }
    fn hw_cap(&self) -> [u32; 8] {
        let cpuid = core::arch::x86_64::__cpuid_count;
        let l1 = cpuid(1, 0);
        let e1 = cpuid(0x8000_0001, 0);
        let d1 = cpuid(0xd, 1);
        let l7 = cpuid(7, 0);
        let e7 = cpuid(0x8000_0007, 0);
        [
            l1.edx, l1.ecx, e1.edx, e1.ecx, d1.eax, l7.ebx, l7.ecx, e7.edx,
        ]
    }
    fn console_read_from(&self, incremental: bool, index: u32, out: &mut [u8]) -> (usize, u32) {
        crate::console::ring_read_from(incremental, index, out)
    }
    fn console_clear_to(&self, index: u32) {
        crate::console::ring_clear_to(index)
    }
    fn commandline(&self) -> alloc::string::String {
        alloc::string::String::from(crate::bootinfo::get().map_or("", |b| b.cmdline()))
    }
}
