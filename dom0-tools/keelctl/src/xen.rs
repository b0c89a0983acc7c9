//! The Xen-ABI backend: [`Hypervisor`] over Xen 4.17's toolstack calls
//! (`sysctl`, `domctl` at interface version 0x15, `xen_version`), the
//! same ones `xl` makes, through any [`XenCall`] transport (privcmd in
//! dom0, a fake hypervisor in tests).
//!
//! Every call's argument and the buffers it points to live in one
//! allocation (`mem` below) that the transport makes present before the
//! call: the hypervisor reaches them through dom0's page tables and does
//! not fault pages in.

use keel_xen_abi::arch_x86::{ArchDomainConfig, EMU_LAPIC};
use keel_xen_abi::domctl::{
    self as dctl, affinity, cdf, dominf, CreateDomain, GetDomainInfo, GetVcpuInfo, MaxMem,
    MaxVcpus, SchedCredit, SchedOpU, SchedulerOp, VcpuAffinity, XenDomctl,
};
use keel_xen_abi::sysctl::{
    self as sctl, perfcop, physcap, GetDomainInfoList, PerfcDesc, PerfcOp, PhysInfo, ReadConsole,
    SchedId, XenSysctl,
};
use keel_xen_abi::version::{self as ver};
use keel_xen_abi::{hypercall, GuestHandle, Pod, XenctlBitmap};
use keel_xlcfg::{CpuList, DomainConfig};

use crate::backend::{
    BackendError, BlockInfo, DomainInfo, DomainRef, DomainState, HostInfo, Hypervisor, PerfCounter,
    Result, VcpuInfo, VcpuState,
};
use crate::privcmd::CallError;

/// Where dom0's host name comes from.
pub const HOSTNAME_PATH: &str = "/proc/sys/kernel/hostname";

/// One hypercall: `op` with `args`, any of which may be an address inside
/// `mem` (whose first byte is at `mem.as_ptr()`). Returns its
/// non-negative value, or the errno of a negative one.
pub trait XenCall {
    fn call(&self, op: u64, args: [u64; 5], mem: &mut [u8]) -> std::result::Result<u64, CallError>;

    /// Maps frames `gfns` of domain `dom` contiguously and calls `f` on
    /// them (foreign mapping; unmapped after). A transport without it
    /// answers ENOSYS. On failure: the index of the frame refused (or
    /// `usize::MAX` for the whole call) and the errno.
    fn with_foreign(
        &self,
        dom: u16,
        gfns: &[u64],
        f: &mut dyn FnMut(&mut [u8]),
    ) -> std::result::Result<(), (usize, CallError)> {
        let _ = (dom, gfns, f);
        Err((
            usize::MAX,
            CallError {
                errno: libc::ENOSYS,
            },
        ))
    }
}

/// Domains per `getdomaininfolist` call.
pub const LIST_BATCH: u32 = 32;
/// Xen's defaults for a new domain's event-channel ports, grant frames
/// and maptrack frames (libxl: `max_event_channels` 1023,
/// `max_grant_frames` 64 in 4.17's xl.conf, `max_maptrack_frames` 1024).
const CONTAINER_MAX_EVTCHN_PORT: u32 = 1023;
const CONTAINER_MAX_GRANT_FRAMES: i32 = 64;
const CONTAINER_MAX_MAPTRACK_FRAMES: i32 = 1024;
/// Console bytes per `readconsole` call.
const CONSOLE_CHUNK: usize = 16 * 1024;
/// CPUs a bitmap passed to the hypervisor has room for.
const CPUMAP_BITS: u32 = 512;
/// The most perfc descriptions and values keelctl takes (keel has 19 and
/// 19 x 64; a Xen with every counter a few hundred, per CPU).
const PERFC_MAX_COUNTERS: u32 = 4096;
const PERFC_MAX_VALS: u32 = 1 << 18;

/// Xen's errno names, for messages.
fn errno_name(e: i32) -> String {
    let n = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EINVAL => "EINVAL",
        libc::ENOSYS => "ENOSYS",
        libc::ENOBUFS => "ENOBUFS",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENOTTY => "ENOTTY",
        _ => return format!("errno {e}"),
    };
    format!("{n} (errno {e})")
}

fn call_error(what: &str, e: CallError) -> BackendError {
    match e.errno {
        libc::EPERM => BackendError::Unavailable(format!(
            "the hypervisor refused {what}: this domain is not privileged (not dom0)"
        )),
        libc::EACCES => BackendError::Unavailable(format!(
            "the hypervisor refused {what}: it does not speak Xen 4.17's toolstack interface (0x15)"
        )),
        libc::ENOSYS => {
            BackendError::NotImplemented(format!("the hypervisor does not implement {what}"))
        }
        n => BackendError::Failed(format!("{what} failed: {}", errno_name(n))),
    }
}

/// The bytes of a NUL-terminated C string.
fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// A CPU set as xl prints it: "all" for every CPU, else "0-2,5".
pub fn cpuset_text(mask: &[bool]) -> String {
    if !mask.is_empty() && mask.iter().all(|&b| b) {
        return "all".into();
    }
    let mut parts = Vec::new();
    let mut i = 0;
    while i < mask.len() {
        if mask[i] {
            let s = i;
            while i + 1 < mask.len() && mask[i + 1] {
                i += 1;
            }
            parts.push(if s == i {
                format!("{s}")
            } else {
                format!("{s}-{i}")
            });
        }
        i += 1;
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(",")
    }
}

/// A xenstore node to write: path, value, and its permissions in
/// xenstore's notation (`n0`, `r5`...; empty: inherited from the parent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub path: String,
    pub value: String,
    pub perms: Vec<String>,
}

/// What keelctl needs of xenstore ([`crate::names`] in dom0): domain
/// names from `/local/domain/N/name` as the toolstack that made the domain
/// wrote them, and, to create domains, writing their records and
/// introducing them to the daemon.
pub trait Xenstore {
    fn name(&self, domid: u32) -> Option<String>;
    /// Writes `nodes`, in one transaction.
    fn publish(&self, nodes: &[Node]) -> std::result::Result<(), String> {
        let _ = nodes;
        Err("no xenstore daemon to write to".into())
    }
    /// `INTRODUCE`: the daemon attaches the domain's ring (`gfn`, `port`).
    fn introduce(&self, domid: u32, gfn: u64, port: u32) -> std::result::Result<(), String> {
        let _ = (domid, gfn, port);
        Err("no xenstore daemon to introduce the domain to".into())
    }
    /// Removes `paths` (and what is below them); missing ones are fine.
    fn remove(&self, paths: &[String]) -> std::result::Result<(), String> {
        let _ = paths;
        Err("no xenstore daemon".into())
    }
    /// `RELEASE`: the daemon lets go of the domain's ring (its foreign
    /// mapping, which keeps a destroyed domain's memory from returning).
    fn release(&self, domid: u32) -> std::result::Result<(), String> {
        let _ = domid;
        Err("no xenstore daemon".into())
    }
    /// The value of `path`; `None` when there is no such node.
    fn read(&self, path: &str) -> std::result::Result<Option<String>, String> {
        let _ = path;
        Err("no xenstore daemon to read from".into())
    }
    /// The names of `path`'s children; none when there is no such node.
    fn directory(&self, path: &str) -> std::result::Result<Vec<String>, String> {
        let _ = path;
        Err("no xenstore daemon to read from".into())
    }
}

/// No xenstore (tests, or no daemon).
pub struct NoXenstore;

impl Xenstore for NoXenstore {
    fn name(&self, _: u32) -> Option<String> {
        None
    }
}

/// A domain's name as `xl` shows it: from xenstore; dom0 is "Domain-0"
/// even before anything named it; a domain without one is "(null)".
fn domain_name(names: &dyn Xenstore, domid: u32) -> String {
    match names.name(domid) {
        Some(n) if !n.is_empty() => n,
        _ if domid == 0 => "Domain-0".into(),
        _ => "(null)".into(),
    }
}

fn state(flags: u32) -> DomainState {
    let shutdown = flags & dominf::SHUTDOWN != 0;
    let code = (flags >> dominf::SHUTDOWNSHIFT) & dominf::SHUTDOWNMASK;
    DomainState {
        running: flags & dominf::RUNNING != 0,
        blocked: flags & dominf::BLOCKED != 0,
        paused: flags & dominf::PAUSED != 0,
        // SHUTDOWN_crash is 3.
        shutdown: shutdown && code != 3,
        crashed: shutdown && code == 3,
        dying: flags & dominf::DYING != 0,
    }
}

/// keel (or Xen) through Xen 4.17's toolstack ABI.
pub struct XenBackend<T: XenCall> {
    hc: T,
    /// The host name `info` prints; `None` reads [`HOSTNAME_PATH`].
    pub hostname: Option<String>,
    /// The CPU vendor `info` prints; `None` asks CPUID.
    pub cpu_vendor: Option<String>,
    /// xenstore (in dom0: the daemon's socket).
    pub store: Box<dyn Xenstore>,
    /// The keelctl to run as a created domain's monitor (`None`: none is
    /// started, as in tests).
    pub monitor_exe: Option<std::path::PathBuf>,
    /// The host's side of a disk's hotplug (loop devices...).
    pub host: Box<dyn crate::hotplug::Host>,
    /// How long `destroy` waits for blkback or netback to close a device,
    /// and `create` for netback to make a network interface.
    pub device_timeout: std::time::Duration,
    /// Where warnings go (stderr; a monitor's log).
    pub warn: Box<dyn Fn(String)>,
}

impl<T: XenCall> XenBackend<T> {
    /// The transport it calls through.
    pub fn transport(&self) -> &T {
        &self.hc
    }

    pub fn new(hc: T) -> Self {
        XenBackend {
            hc,
            hostname: None,
            cpu_vendor: None,
            store: Box::new(NoXenstore),
            monitor_exe: None,
            host: Box::new(crate::hotplug::LinuxHost),
            device_timeout: crate::disks::DESTROY_TIMEOUT,
            warn: Box::new(|w| eprintln!("keelctl: warning: {w}")),
        }
    }

    /// Calls `op` on a `H` at the start of a fresh buffer with `extra`
    /// bytes after it (`head` gets their address, for the handles it
    /// holds); returns `H` as the hypervisor left it and the extra bytes.
    pub(crate) fn call_with<H: Pod>(
        &self,
        what: &str,
        op: u64,
        pre: &[u64],
        extra: Vec<u8>,
        head: impl FnOnce(u64) -> H,
    ) -> Result<(H, Vec<u8>, u64)> {
        self.raw_call_with(op, pre, extra, head)
            .map_err(|e| call_error(what, e))
    }

    /// Calls `op` on a `H` at the start of a fresh buffer followed by
    /// `extra` (`head` gets the address of those bytes, for the handles it
    /// holds; `pre` are the arguments before the buffer's address); returns
    /// `H` as the hypervisor left it, the extra bytes, and the call's value.
    pub(crate) fn raw_call_with<H: Pod>(
        &self,
        op: u64,
        pre: &[u64],
        extra: Vec<u8>,
        head: impl FnOnce(u64) -> H,
    ) -> std::result::Result<(H, Vec<u8>, u64), CallError> {
        let mut mem = vec![0u8; H::SIZE];
        mem.extend_from_slice(&extra);
        let base = mem.as_ptr() as u64;
        let h = head(base + H::SIZE as u64);
        h.write_to(&mut mem).expect("sized for H");
        let mut args = [0u64; 5];
        args[..pre.len()].copy_from_slice(pre);
        args[pre.len()] = base;
        let ret = self.hc.call(op, args, &mut mem)?;
        let h = H::from_prefix(&mem).expect("sized for H");
        Ok((h, mem.split_off(H::SIZE), ret))
    }

    fn sysctl<P: Pod>(
        &self,
        what: &str,
        cmd: u32,
        extra: usize,
        arg: impl FnOnce(u64) -> P,
    ) -> Result<(P, Vec<u8>)> {
        let (sc, rest, _) = self.call_with(what, hypercall::SYSCTL, &[], vec![0; extra], |x| {
            XenSysctl::new(cmd, &arg(x))
        })?;
        Ok((sc.op(), rest))
    }

    /// A domctl with argument `arg` (given the address of `extra`, which
    /// follows the `struct xen_domctl`).
    pub(crate) fn domctl<P: Pod>(
        &self,
        what: &str,
        cmd: u32,
        dom: u16,
        extra: Vec<u8>,
        arg: impl FnOnce(u64) -> P,
    ) -> Result<(XenDomctl, Vec<u8>)> {
        let (dc, rest, _) = self.call_with(what, hypercall::DOMCTL, &[], extra, |x| {
            XenDomctl::new(cmd, dom, &arg(x))
        })?;
        Ok((dc, rest))
    }

    /// A domctl without argument; `einval` says what -EINVAL means for it.
    pub(crate) fn domctl_plain(&self, cmd: u32, dom: u16, what: &str, einval: &str) -> Result<()> {
        match self.raw_call_with(hypercall::DOMCTL, &[], Vec::new(), |_| {
            XenDomctl::without_arg(cmd, dom)
        }) {
            Ok(_) => Ok(()),
            Err(e) if e.errno == libc::EINVAL => Err(BackendError::Failed(format!(
                "{what} refused: {einval} (EINVAL)"
            ))),
            Err(e) => Err(call_error(what, e)),
        }
    }

    fn version_string<const N: usize>(&self, what: &str, cmd: u32) -> Result<String> {
        let (b, _, _) = self.call_with::<[u8; N]>(
            what,
            hypercall::XEN_VERSION,
            &[cmd as u64],
            Vec::new(),
            |_| [0; N],
        )?;
        Ok(c_string(&b))
    }

    fn physinfo(&self) -> Result<PhysInfo> {
        Ok(self
            .sysctl("sysctl physinfo", sctl::op::PHYSINFO, 0, |_| {
                PhysInfo::zeroed()
            })?
            .0)
    }

    fn hostname(&self) -> String {
        if let Some(h) = &self.hostname {
            return h.clone();
        }
        std::fs::read_to_string(HOSTNAME_PATH)
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "(unknown)".into())
    }

    fn cpu_vendor(&self) -> String {
        if let Some(v) = &self.cpu_vendor {
            return v.clone();
        }
        let r = std::arch::x86_64::__cpuid(0);
        let mut b = Vec::with_capacity(12);
        for w in [r.ebx, r.edx, r.ecx] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        String::from_utf8_lossy(&b).into_owned()
    }

    /// Every domain's `getdomaininfo` record, in id order.
    pub(crate) fn domain_infos(&self) -> Result<Vec<GetDomainInfo>> {
        let mut out: Vec<GetDomainInfo> = Vec::new();
        let mut first: u16 = 0;
        loop {
            let room = LIST_BATCH as usize * GetDomainInfo::SIZE;
            let (l, buf) = self.sysctl(
                "sysctl getdomaininfolist",
                sctl::op::GETDOMAININFOLIST,
                room,
                |x| GetDomainInfoList {
                    first_domain: first,
                    max_domains: LIST_BATCH,
                    buffer: GuestHandle::new(x),
                    ..GetDomainInfoList::zeroed()
                },
            )?;
            if l.num_domains > LIST_BATCH {
                return Err(BackendError::Failed(format!(
                    "getdomaininfolist returned {} domains for {LIST_BATCH} asked",
                    l.num_domains
                )));
            }
            for rec in buf
                .chunks_exact(GetDomainInfo::SIZE)
                .take(l.num_domains as usize)
            {
                let d = GetDomainInfo::from_bytes(rec).expect("record size");
                if d.domain < first || out.last().is_some_and(|p| p.domain >= d.domain) {
                    return Err(BackendError::Failed(format!(
                        "getdomaininfolist is out of order (domain {} after id {first})",
                        d.domain
                    )));
                }
                out.push(d);
            }
            match out.last() {
                Some(last)
                    if l.num_domains == LIST_BATCH
                        && last.domain < keel_xen_abi::DOMID_FIRST_RESERVED =>
                {
                    first = last.domain + 1
                }
                _ => break,
            }
        }
        Ok(out)
    }

    /// Domain `domid`'s record, `None` when there is no such domain.
    pub fn domain_info(&self, domid: u32) -> Result<Option<GetDomainInfo>> {
        Ok(self
            .domain_infos()?
            .into_iter()
            .find(|d| d.domain as u32 == domid))
    }

    pub(crate) fn find(&self, dom: &DomainRef) -> Result<GetDomainInfo> {
        self.domain_infos()?
            .into_iter()
            .find(|d| dom.matches(&self.info(d)))
            .ok_or_else(|| BackendError::NoSuchDomain(dom.clone()))
    }

    /// The id of running domain `dom`, whose `what` (disks, network
    /// interfaces) keelctl attaches and detaches: Domain-0 is refused,
    /// its devices are its own kernel's.
    fn hotplug_target(&self, dom: &DomainRef, what: &str) -> Result<u16> {
        let d = self.find(dom)?;
        if d.domain == 0 {
            return Err(BackendError::Failed(format!(
                "Domain-0's {what} are its own kernel's: keelctl attaches and detaches those of other domains only"
            )));
        }
        Ok(d.domain)
    }

    /// The first step of building a domain, as libxl's
    /// `libxl__domain_make` takes it: an empty, paused PVH container
    /// (`createdomain` with hardware-assisted paging and only the local
    /// APIC emulated, Xen's default event-channel and grant limits), then
    /// `max_vcpus` and `max_mem`. Returns the id the hypervisor chose. A
    /// step that fails destroys the half-made domain again.
    pub fn create_container(&self, vcpus: u32, max_mem_kib: u64) -> Result<u32> {
        let cfg = CreateDomain {
            flags: cdf::HVM | cdf::HAP,
            max_vcpus: vcpus,
            max_evtchn_port: CONTAINER_MAX_EVTCHN_PORT,
            max_grant_frames: CONTAINER_MAX_GRANT_FRAMES,
            max_maptrack_frames: CONTAINER_MAX_MAPTRACK_FRAMES,
            grant_opts: 1,
            arch: ArchDomainConfig {
                emulation_flags: EMU_LAPIC,
                misc_flags: 0,
            },
            ..CreateDomain::zeroed()
        };
        let (dc, _) = self.domctl(
            "domctl createdomain",
            dctl::op::CREATEDOMAIN,
            0,
            vec![],
            |_| cfg,
        )?;
        let domid = dc.domain;
        let rest = self
            .domctl(
                "domctl max_vcpus",
                dctl::op::MAX_VCPUS,
                domid,
                vec![],
                |_| MaxVcpus { max: vcpus },
            )
            .and_then(|_| {
                self.domctl("domctl max_mem", dctl::op::MAX_MEM, domid, vec![], |_| {
                    MaxMem {
                        max_memkb: max_mem_kib,
                    }
                })
            });
        if let Err(e) = rest {
            let _ = self.domctl_plain(dctl::op::DESTROYDOMAIN, domid, "destroying it again", "");
            return Err(e);
        }
        Ok(domid as u32)
    }

    /// vCPU `vcpu`'s affinity masks (hard, soft), `n` CPUs each.
    fn affinity(&self, dom: u16, vcpu: u32, n: u32) -> Result<(Vec<bool>, Vec<bool>)> {
        let bytes = CPUMAP_BITS.div_ceil(8) as usize;
        let (_, maps) = self.domctl(
            "domctl getvcpuaffinity",
            dctl::op::GETVCPUAFFINITY,
            dom,
            vec![0; 2 * bytes],
            |x| affinity_arg(vcpu, affinity::HARD | affinity::SOFT, x),
        )?;
        let bits = |m: &[u8]| {
            (0..n)
                .map(|c| m[(c / 8) as usize] & (1 << (c % 8)) != 0)
                .collect()
        };
        Ok((bits(&maps[..bytes]), bits(&maps[bytes..])))
    }
}

/// `getvcpuaffinity`/`setvcpuaffinity`'s argument for vCPU `vcpu`: its
/// two bitmaps of [`CPUMAP_BITS`] bits, hard at `maps`, soft right after.
fn affinity_arg(vcpu: u32, flags: u32, maps: u64) -> VcpuAffinity {
    let bitmap = |at: u64| XenctlBitmap {
        bitmap: GuestHandle::new(at),
        nr_bits: CPUMAP_BITS,
    };
    VcpuAffinity {
        vcpu,
        flags,
        cpumap_hard: bitmap(maps),
        cpumap_soft: bitmap(maps + CPUMAP_BITS.div_ceil(8) as u64),
    }
}

impl<T: XenCall> XenBackend<T> {
    /// Asks a guest to shut down or reboot as libxl does for a PVH guest
    /// (`libxl__domain_pvcontrol`): `control/shutdown` in its xenstore
    /// directory, which its xenbus watches; the guest then calls
    /// `SCHEDOP_shutdown` with that reason itself.
    fn pv_control(&self, dom: &DomainRef, what: &str) -> Result<()> {
        let d = self.find(dom)?;
        if d.domain == 0 {
            return Err(BackendError::Failed(format!(
                "Domain-0 cannot be asked to {what} this way: run it in dom0"
            )));
        }
        if d.flags & (dominf::SHUTDOWN | dominf::DYING) != 0 {
            return Err(BackendError::Failed(format!(
                "domain '{dom}' is already shutting down or dying"
            )));
        }
        self.store
            .publish(&[Node {
                path: format!("/local/domain/{}/control/shutdown", d.domain),
                value: what.into(),
                perms: vec![],
            }])
            .map_err(|e| BackendError::Failed(format!("asking domain '{dom}' to {what}: {e}")))
    }

    fn info(&self, d: &GetDomainInfo) -> DomainInfo {
        DomainInfo {
            name: domain_name(&*self.store, d.domain as u32),
            domid: d.domain as u32,
            mem_kib: d.tot_pages * 4,
            vcpus: d.nr_online_vcpus,
            state: state(d.flags),
            cpu_time_ns: d.cpu_time,
        }
    }
}

fn not_yet(what: &str) -> BackendError {
    BackendError::NotImplemented(format!(
        "keelctl cannot {what} through Xen's toolstack ABI yet"
    ))
}

impl<T: XenCall> Hypervisor for XenBackend<T> {
    fn host_info(&self) -> Result<HostInfo> {
        let v = self
            .call_with::<[u8; 0]>(
                "xen_version",
                hypercall::XEN_VERSION,
                &[ver::VERSION as u64],
                Vec::new(),
                |_| [],
            )?
            .2;
        let extra = self.version_string::<16>("xen_version extraversion", ver::EXTRAVERSION)?;
        let changeset = self.version_string::<64>("xen_version changeset", ver::CHANGESET)?;
        let pi = self.physinfo()?;
        let (sid, _) = self.sysctl("sysctl sched_id", sctl::op::SCHED_ID, 0, |_| SchedId {
            sched_id: 0,
        })?;
        let keel = extra.contains("keel");
        let caps = [
            (physcap::HVM, "hvm"),
            (physcap::PV, "pv"),
            (physcap::HAP, "hap"),
            (physcap::SHADOW, "shadow"),
            (physcap::DIRECTIO, "hvm_directio"),
            (physcap::GNTTAB_V1, "gnttab-v1"),
            (physcap::GNTTAB_V2, "gnttab-v2"),
        ];
        Ok(HostInfo {
            host: self.hostname(),
            hypervisor: if keel { "keel" } else { "xen" }.into(),
            version: match changeset.strip_prefix("keel ") {
                Some(v) if keel => v.to_string(),
                _ => changeset.clone(),
            },
            mgmt_abi: format!(
                "xen {}.{}{extra} (sysctl {:#x}, domctl {:#x})",
                v >> 16,
                v & 0xffff,
                sctl::INTERFACE_VERSION,
                dctl::INTERFACE_VERSION
            ),
            cpu_vendor: self.cpu_vendor(),
            virt_caps: caps
                .iter()
                .filter(|(b, _)| pi.capabilities & b != 0)
                .map(|(_, n)| n.to_string())
                .collect(),
            nr_cpus: pi.nr_cpus,
            nr_nodes: pi.nr_nodes,
            tsc_khz: pi.cpu_khz,
            total_mem_mib: (pi.total_pages * 4096) >> 20,
            free_mem_mib: (pi.free_pages * 4096) >> 20,
            free_pages: pi.free_pages,
            scheduler: match sid.sched_id {
                dctl::scheduler::CREDIT => "credit".into(),
                dctl::scheduler::CREDIT2 => "credit2".into(),
                dctl::scheduler::RTDS => "rtds".into(),
                dctl::scheduler::NULL => "null".into(),
                dctl::scheduler::ARINC653 => "arinc653".into(),
                other => format!("scheduler {other}"),
            },
        })
    }

    fn list_domains(&self) -> Result<Vec<DomainInfo>> {
        Ok(self.domain_infos()?.iter().map(|d| self.info(d)).collect())
    }

    fn vcpu_list(&self) -> Result<Vec<VcpuInfo>> {
        let n = self.physinfo()?.nr_cpus;
        let mut out = Vec::new();
        for d in self.domain_infos()? {
            if d.max_vcpu_id == dctl::INVALID_MAX_VCPU_ID {
                continue;
            }
            for vcpu in 0..=d.max_vcpu_id {
                let (dc, _) = self.domctl(
                    "domctl getvcpuinfo",
                    dctl::op::GETVCPUINFO,
                    d.domain,
                    Vec::new(),
                    |_| GetVcpuInfo {
                        vcpu,
                        ..GetVcpuInfo::zeroed()
                    },
                )?;
                let vi: GetVcpuInfo = dc.op();
                let (hard, soft) = self.affinity(d.domain, vcpu, n)?;
                out.push(VcpuInfo {
                    domain: domain_name(&*self.store, d.domain as u32),
                    domid: d.domain as u32,
                    vcpu,
                    cpu: (vi.online != 0).then_some(vi.cpu),
                    state: if vi.online == 0 {
                        VcpuState::Offline
                    } else if vi.running != 0 {
                        VcpuState::Running
                    } else {
                        VcpuState::Blocked
                    },
                    cpu_time_ns: vi.cpu_time,
                    hard_affinity: cpuset_text(&hard),
                    soft_affinity: cpuset_text(&soft),
                });
            }
        }
        Ok(out)
    }

    fn create_domain(&self, cfg: &DomainConfig, paused: bool) -> Result<u32> {
        crate::domu::create(self, cfg, paused).map(|c| c.domid as u32)
    }
    fn start_monitor(&self, config: &std::path::Path, domid: u32) -> Result<()> {
        let Some(exe) = &self.monitor_exe else {
            return Ok(());
        };
        crate::monitor::spawn(exe, config, domid)
            .map_err(|e| BackendError::Failed(format!("starting domain {domid}'s monitor: {e}")))
    }
    fn monitor(
        &self,
        cfg: &DomainConfig,
        domid: u32,
        log: &mut dyn FnMut(String),
    ) -> Result<String> {
        crate::monitor::run(self, cfg, domid, crate::monitor::TICK, log)
    }
    fn destroy(&self, dom: &DomainRef) -> Result<()> {
        let d = self.find(dom)?;
        if d.domain == 0 {
            return Err(BackendError::Failed("Domain-0 cannot be destroyed".into()));
        }
        // As libxl (`libxl__destroy_domid`): its devices go first, the
        // domain paused meanwhile (a dying one refuses: fine).
        let disks = crate::disks::has_disks(&*self.store, d.domain);
        let nics = crate::nics::has_nics(&*self.store, d.domain);
        if disks || nics {
            let _ = self.domctl_plain(dctl::op::PAUSEDOMAIN, d.domain, "pausing it", "");
        }
        if disks {
            crate::disks::remove_all(
                &*self.store,
                &*self.host,
                d.domain,
                self.device_timeout,
                &*self.warn,
            );
        }
        if nics {
            crate::nics::remove_all(&*self.store, d.domain, self.device_timeout, &*self.warn);
        }
        self.domctl_plain(
            dctl::op::DESTROYDOMAIN,
            d.domain,
            &format!("destroying domain '{dom}'"),
            "the hypervisor refused it",
        )?;
        // As libxl: xenstored lets go of its ring (an unknown domain is
        // fine: it may never have been introduced), and its records go.
        let _ = self.store.release(d.domain as u32);
        let _ = self.store.remove(&[
            format!("/local/domain/{}", d.domain),
            format!("/libxl/{}", d.domain),
        ]);
        Ok(())
    }
    fn shutdown(&self, dom: &DomainRef) -> Result<()> {
        self.pv_control(dom, "poweroff")
    }
    fn block_list(&self, dom: &DomainRef) -> Result<Vec<BlockInfo>> {
        let d = self.find(dom)?;
        crate::disks::list(&*self.store, d.domain)
            .map_err(|e| BackendError::Failed(format!("reading the disks of domain '{dom}': {e}")))
    }
    fn network_list(&self, dom: &DomainRef) -> Result<Vec<crate::backend::NicInfo>> {
        let d = self.find(dom)?;
        crate::nics::list(&*self.store, d.domain).map_err(|e| {
            BackendError::Failed(format!(
                "reading the network interfaces of domain '{dom}': {e}"
            ))
        })
    }
    fn block_attach(&self, dom: &DomainRef, spec: &keel_xlcfg::DiskSpec) -> Result<u32> {
        let domid = self.hotplug_target(dom, "disks")?;
        let domains: Vec<u32> = self
            .domain_infos()?
            .iter()
            .map(|d| d.domain as u32)
            .collect();
        crate::disks::plug(&*self.store, &*self.host, domid, spec, &domains)
            .map(|d| d.devid)
            .map_err(|e| BackendError::Failed(format!("domain '{dom}': {e}")))
    }
    fn block_detach(&self, dom: &DomainRef, vdev: &str, force: bool) -> Result<()> {
        let domid = self.hotplug_target(dom, "disks")?;
        let devid = crate::devices::vdev_number(vdev).map_err(BackendError::Failed)?;
        crate::disks::unplug(
            &*self.store,
            &*self.host,
            domid,
            (devid, vdev),
            force,
            self.device_timeout,
            &*self.warn,
        )
        .map_err(|e| BackendError::Failed(format!("domain '{dom}': {e}")))
    }
    fn network_attach(
        &self,
        dom: &DomainRef,
        spec: &keel_xlcfg::VifSpec,
    ) -> Result<(u32, keel_xlcfg::MacAddr)> {
        let domid = self.hotplug_target(dom, "network interfaces")?;
        crate::nics::plug(&*self.store, &*self.host, domid, spec, self.device_timeout)
            .map(|n| (n.devid, n.mac))
            .map_err(|e| BackendError::Failed(format!("domain '{dom}': {e}")))
    }
    fn network_detach(&self, dom: &DomainRef, which: &str) -> Result<()> {
        let domid = self.hotplug_target(dom, "network interfaces")?;
        let which = crate::nics::Which::parse(which).map_err(BackendError::Failed)?;
        crate::nics::unplug(&*self.store, domid, which, self.device_timeout)
            .map_err(|e| BackendError::Failed(format!("domain '{dom}': {e}")))
    }
    fn reboot(&self, dom: &DomainRef) -> Result<()> {
        self.pv_control(dom, "reboot")
    }
    fn pause(&self, dom: &DomainRef) -> Result<()> {
        let d = self.find(dom)?;
        self.domctl_plain(
            dctl::op::PAUSEDOMAIN,
            d.domain,
            &format!("pausing domain '{dom}'"),
            "a domain cannot pause itself, and a dying one cannot be paused",
        )
    }
    fn unpause(&self, dom: &DomainRef) -> Result<()> {
        let d = self.find(dom)?;
        self.domctl_plain(
            dctl::op::UNPAUSEDOMAIN,
            d.domain,
            &format!("unpausing domain '{dom}'"),
            "it is not paused",
        )
    }
    fn set_memory_target(&self, _: &DomainRef, _: u64) -> Result<()> {
        Err(not_yet("change a domain's memory"))
    }

    fn pin_vcpu(
        &self,
        dom: &DomainRef,
        vcpu: Option<u32>,
        hard: &CpuList,
        soft: Option<&CpuList>,
    ) -> Result<()> {
        let d = self.find(dom)?;
        let n = self.physinfo()?.nr_cpus;
        if d.max_vcpu_id == dctl::INVALID_MAX_VCPU_ID {
            return Err(BackendError::Failed(format!("domain '{dom}' has no vCPUs")));
        }
        let vcpus: Vec<u32> = match vcpu {
            Some(v) if v > d.max_vcpu_id => {
                return Err(BackendError::Failed(format!(
                    "domain '{dom}' has no vCPU {v} (its vCPUs are 0-{})",
                    d.max_vcpu_id
                )))
            }
            Some(v) => vec![v],
            None => (0..=d.max_vcpu_id).collect(),
        };
        let bytes = CPUMAP_BITS.div_ceil(8) as usize;
        let map = |l: &CpuList| -> Result<Vec<u8>> {
            let set = l.resolve(n, |_| (0..n).collect());
            if set.is_empty() {
                return Err(BackendError::Failed(format!(
                    "CPU list '{l}' names none of the {n} CPUs"
                )));
            }
            let mut b = vec![0u8; bytes];
            for c in set.into_iter().filter(|&c| c < n.min(CPUMAP_BITS)) {
                b[(c / 8) as usize] |= 1 << (c % 8);
            }
            Ok(b)
        };
        let hard_map = map(hard)?;
        let soft_map = soft.map(map).transpose()?;
        for v in vcpus {
            let flags = affinity::HARD
                | if soft_map.is_some() {
                    affinity::SOFT
                } else {
                    0
                };
            let mut maps = hard_map.clone();
            maps.extend_from_slice(soft_map.as_deref().unwrap_or(&vec![0; bytes]));
            self.domctl(
                &format!("pinning vCPU {v} of domain '{dom}'"),
                dctl::op::SETVCPUAFFINITY,
                d.domain,
                maps,
                |x| affinity_arg(v, flags, x),
            )?;
        }
        Ok(())
    }

    fn sched_credit(&self, dom: &DomainRef) -> Result<(u16, u16)> {
        let d = self.find(dom)?;
        let (dc, _) = self.domctl(
            "domctl scheduler_op",
            dctl::op::SCHEDULER_OP,
            d.domain,
            Vec::new(),
            |_| SchedulerOp {
                sched_id: dctl::scheduler::CREDIT,
                cmd: dctl::schedop::GETINFO,
                u: SchedOpU::default(),
            },
        )?;
        let c: SchedCredit = dc.op::<SchedulerOp>().u.get();
        Ok((c.weight, c.cap))
    }

    fn set_sched_credit(
        &self,
        dom: &DomainRef,
        weight: Option<u16>,
        cap: Option<u16>,
    ) -> Result<()> {
        let d = self.find(dom)?;
        // Xen's credit: weight 0 and cap 0xffff leave the value as it is.
        let c = SchedCredit {
            weight: weight.unwrap_or(0),
            cap: cap.unwrap_or(u16::MAX),
        };
        self.domctl(
            "domctl scheduler_op",
            dctl::op::SCHEDULER_OP,
            d.domain,
            Vec::new(),
            |_| SchedulerOp {
                sched_id: dctl::scheduler::CREDIT,
                cmd: dctl::schedop::PUTINFO,
                u: SchedOpU::new(&c),
            },
        )?;
        Ok(())
    }

    fn perf_counters(&self) -> Result<Vec<PerfCounter>> {
        // As xenperf: the sizes (NULL handles), then everything at once.
        let what = "sysctl perfc_op";
        let (n, _) = self.sysctl(what, sctl::op::PERFC_OP, 0, |_| PerfcOp {
            cmd: perfcop::QUERY,
            ..PerfcOp::zeroed()
        })?;
        if n.nr_counters > PERFC_MAX_COUNTERS || n.nr_vals > PERFC_MAX_VALS {
            return Err(BackendError::Failed(format!(
                "{what}: implausible sizes ({} counters, {} values)",
                n.nr_counters, n.nr_vals
            )));
        }
        let descs = n.nr_counters as usize * PerfcDesc::SIZE;
        let room = descs + n.nr_vals as usize * 4;
        let (got, buf) = self.sysctl(what, sctl::op::PERFC_OP, room, |x| PerfcOp {
            cmd: perfcop::QUERY,
            desc: GuestHandle::new(x),
            val: GuestHandle::new(x + descs as u64),
            ..PerfcOp::zeroed()
        })?;
        if (got.nr_counters, got.nr_vals) != (n.nr_counters, n.nr_vals) {
            return Err(BackendError::Failed(format!(
                "{what}: the counters changed shape between two calls"
            )));
        }
        let mut vals = buf[descs..]
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
        let mut out = Vec::new();
        for d in buf[..descs].chunks_exact(PerfcDesc::SIZE) {
            let d = PerfcDesc::from_bytes(d).expect("record size");
            let values: Vec<u32> = vals.by_ref().take(d.nr_vals as usize).collect();
            if values.len() != d.nr_vals as usize {
                return Err(BackendError::Failed(format!(
                    "{what}: the descriptions name more values than the {} reported",
                    n.nr_vals
                )));
            }
            out.push(PerfCounter {
                name: c_string(&d.name),
                values,
            });
        }
        Ok(out)
    }

    fn read_console_ring(&self, clear: bool) -> Result<String> {
        let mut out = Vec::new();
        let mut index = 0u32;
        loop {
            let (rc, buf) = self.sysctl(
                "sysctl readconsole",
                sctl::op::READCONSOLE,
                CONSOLE_CHUNK,
                |x| ReadConsole {
                    clear: 0,
                    incremental: 1,
                    index,
                    buffer: GuestHandle::new(x),
                    count: CONSOLE_CHUNK as u32,
                    ..ReadConsole::zeroed()
                },
            )?;
            let n = (rc.count as usize).min(CONSOLE_CHUNK);
            out.extend_from_slice(&buf[..n]);
            index = rc.index;
            if n == 0 || out.len() > 64 << 20 {
                break;
            }
        }
        if clear {
            // Xen clears what it read: one more read from where we stopped.
            self.sysctl("sysctl readconsole", sctl::op::READCONSOLE, 0, |x| {
                ReadConsole {
                    clear: 1,
                    incremental: 1,
                    index,
                    buffer: GuestHandle::new(x),
                    count: 0,
                    ..ReadConsole::zeroed()
                }
            })?;
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// A fake hypervisor for keelctl's tests (here and in `crate::tests`).
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use std::cell::RefCell;

    /// A tiny Xen 4.17 toolstack interface: what the hypervisor answers,
    /// reading and writing only inside the call's `mem` (an address
    /// outside it is an -EFAULT, as for the real one).
    pub struct FakeXen {
        pub privileged: bool,
        pub ncpus: u32,
        /// (id, pages, vCPUs, flags)
        pub doms: Vec<(u16, u64, u32, u32)>,
        /// Hard affinity per (domain, vCPU).
        pins: RefCell<Vec<((u16, u32), u64)>>,
        console: RefCell<Vec<u8>>,
        pub calls: RefCell<Vec<String>>,
        /// Credit (weight, cap) per domain.
        credit: RefCell<Vec<(u16, (u16, u16))>>,
        /// CPU time (ns) per domain where not the default 1.5 s.
        pub cpu_ns: RefCell<Vec<(u16, u64)>>,
        /// perfc_op's counters (name, values); `None`: -ENOSYS (a
        /// hypervisor without them, or keel with `perfc=0`).
        pub perfc: RefCell<Option<Vec<FakeCounter>>>,
        /// Domains made by `createdomain` (ids from 7 up), and destroyed.
        pub created: RefCell<Vec<u16>>,
        pub destroyed: RefCell<Vec<u16>>,
        /// What a domain being built sees ([`crate::domu::tests::FakeDomU`]).
        pub domu: RefCell<crate::domu::tests::FakeDomU>,
    }

    /// A perfc counter: name and values.
    pub type FakeCounter = (String, Vec<u32>);

    fn fault() -> CallError {
        CallError {
            errno: libc::EFAULT,
        }
    }

    /// The offset in `mem` of `len` bytes at address `addr`.
    pub(crate) fn at(mem: &[u8], addr: u64, len: usize) -> std::result::Result<usize, CallError> {
        let base = mem.as_ptr() as u64;
        let off = addr.checked_sub(base).ok_or_else(fault)? as usize;
        if off + len > mem.len() {
            return Err(fault());
        }
        Ok(off)
    }
    pub(crate) fn get<P: Pod>(mem: &[u8], addr: u64) -> std::result::Result<P, CallError> {
        let o = at(mem, addr, P::SIZE)?;
        Ok(P::from_bytes(&mem[o..o + P::SIZE]).unwrap())
    }
    pub(crate) fn put<P: Pod>(
        mem: &mut [u8],
        addr: u64,
        v: &P,
    ) -> std::result::Result<(), CallError> {
        let o = at(mem, addr, P::SIZE)?;
        v.write_to(&mut mem[o..]).unwrap();
        Ok(())
    }
    pub(crate) fn put_bytes(
        mem: &mut [u8],
        addr: u64,
        b: &[u8],
    ) -> std::result::Result<(), CallError> {
        let o = at(mem, addr, b.len())?;
        mem[o..o + b.len()].copy_from_slice(b);
        Ok(())
    }
    pub(crate) fn err(e: i32) -> std::result::Result<u64, CallError> {
        Err(CallError { errno: e })
    }

    impl FakeXen {
        pub fn new() -> Self {
            FakeXen {
                privileged: true,
                ncpus: 2,
                doms: vec![
                    (0, 65536, 2, dominf::HVM_GUEST | dominf::RUNNING),
                    (1, 1024, 1, dominf::HVM_GUEST | dominf::BLOCKED),
                    (5, 256, 1, dominf::HVM_GUEST | dominf::SHUTDOWN | (3 << 16)),
                ],
                pins: RefCell::new(Vec::new()),
                console: RefCell::new(b"(XEN) keel 0.1.0 starting\n(XEN) d0: built\n".to_vec()),
                calls: RefCell::new(Vec::new()),
                credit: RefCell::new(Vec::new()),
                cpu_ns: RefCell::new(Vec::new()),
                perfc: RefCell::new(None),
                created: RefCell::new(Vec::new()),
                destroyed: RefCell::new(Vec::new()),
                domu: RefCell::new(Default::default()),
            }
        }
        fn pin(&self, d: u16, v: u32) -> u64 {
            self.pins
                .borrow()
                .iter()
                .rev()
                .find(|(k, _)| *k == (d, v))
                .map_or((1 << self.ncpus) - 1, |p| p.1)
        }
    }

    impl XenCall for FakeXen {
        fn with_foreign(
            &self,
            dom: u16,
            gfns: &[u64],
            f: &mut dyn FnMut(&mut [u8]),
        ) -> std::result::Result<(), (usize, CallError)> {
            if !self.created.borrow().contains(&dom) {
                return Err((usize::MAX, CallError { errno: libc::ESRCH }));
            }
            self.domu.borrow_mut().with_foreign(gfns, f)
        }

        fn call(
            &self,
            op: u64,
            args: [u64; 5],
            mem: &mut [u8],
        ) -> std::result::Result<u64, CallError> {
            if !self.privileged && op != hypercall::XEN_VERSION {
                return err(libc::EPERM);
            }
            let created = self.created.borrow().clone();
            if let Some(r) = self.domu.borrow_mut().call(&created, op, args, mem) {
                self.calls
                    .borrow_mut()
                    .push(format!("domu {op} {}", args[0]));
                return r;
            }
            match op {
                hypercall::XEN_VERSION => match args[0] as u32 {
                    ver::VERSION => Ok(0x0004_0011),
                    ver::EXTRAVERSION => put_bytes(mem, args[1], b"-keel\0").map(|_| 0),
                    ver::CHANGESET => put_bytes(mem, args[1], b"keel 0.1.0\0").map(|_| 0),
                    _ => err(libc::ENOSYS),
                },
                hypercall::SYSCTL => {
                    let mut sc: XenSysctl = get(mem, args[0])?;
                    self.calls.borrow_mut().push(format!("sysctl {}", sc.cmd));
                    if !sc.version_ok() {
                        return err(libc::EACCES);
                    }
                    match sc.cmd {
                        sctl::op::PHYSINFO => {
                            sc.u = sctl::SysctlU::new(&PhysInfo {
                                nr_cpus: self.ncpus,
                                nr_nodes: 1,
                                cpu_khz: 2_600_000,
                                total_pages: 262_144,
                                free_pages: 131_072,
                                capabilities: physcap::HVM | physcap::HAP | physcap::GNTTAB_V1,
                                ..PhysInfo::zeroed()
                            })
                        }
                        sctl::op::SCHED_ID => sc.u = sctl::SysctlU::new(&SchedId { sched_id: 5 }),
                        sctl::op::PERFC_OP => {
                            let Some(counters) = self.perfc.borrow().clone() else {
                                return err(libc::ENOSYS);
                            };
                            let mut p: PerfcOp = sc.op();
                            if p.cmd != perfcop::QUERY {
                                return err(libc::EINVAL);
                            }
                            if !p.desc.is_null() {
                                let mut v = 0;
                                for (i, (name, vals)) in counters.iter().enumerate() {
                                    let mut d = PerfcDesc {
                                        name: [0; 80],
                                        nr_vals: vals.len() as u32,
                                    };
                                    keel_xen_abi::put_cstr(&mut d.name, name.as_bytes());
                                    put(mem, p.desc.element(i as u64).unwrap(), &d)?;
                                    for &x in vals {
                                        put(mem, p.val.element(v).unwrap(), &x)?;
                                        v += 1;
                                    }
                                }
                            }
                            p.nr_counters = counters.len() as u32;
                            p.nr_vals = counters.iter().map(|c| c.1.len() as u32).sum();
                            sc.u = sctl::SysctlU::new(&p);
                        }
                        sctl::op::GETDOMAININFOLIST => {
                            let mut l: GetDomainInfoList = sc.op();
                            let mut n = 0;
                            for &(id, pages, vcpus, flags) in &self.doms {
                                if id < l.first_domain || n >= l.max_domains {
                                    continue;
                                }
                                let gi = GetDomainInfo {
                                    domain: id,
                                    flags,
                                    tot_pages: pages,
                                    nr_online_vcpus: vcpus,
                                    max_vcpu_id: vcpus - 1,
                                    cpu_time: self
                                        .cpu_ns
                                        .borrow()
                                        .iter()
                                        .rev()
                                        .find(|c| c.0 == id)
                                        .map_or(1_500_000_000, |c| c.1),
                                    ..GetDomainInfo::zeroed()
                                };
                                put(mem, l.buffer.element(n as u64).unwrap(), &gi)?;
                                n += 1;
                            }
                            l.num_domains = n;
                            sc.u = sctl::SysctlU::new(&l);
                        }
                        sctl::op::READCONSOLE => {
                            let mut rc: ReadConsole = sc.op();
                            let c = self.console.borrow().clone();
                            let from = if rc.incremental != 0 {
                                (rc.index as usize).min(c.len())
                            } else {
                                0
                            };
                            let n = (c.len() - from).min(rc.count as usize);
                            put_bytes(mem, rc.buffer.addr(), &c[from..from + n])?;
                            if rc.clear != 0 {
                                self.console.borrow_mut().clear();
                            }
                            rc.count = n as u32;
                            rc.index = (from + n) as u32;
                            sc.u = sctl::SysctlU::new(&rc);
                        }
                        _ => return err(libc::ENOSYS),
                    }
                    put(mem, args[0], &sc).map(|_| 0)
                }
                hypercall::DOMCTL => {
                    let mut dc: XenDomctl = get(mem, args[0])?;
                    self.calls
                        .borrow_mut()
                        .push(format!("domctl {} d{}", dc.cmd, dc.domain));
                    if dc.cmd == dctl::op::CREATEDOMAIN {
                        let cfg: CreateDomain = dc.op();
                        if cfg.flags & (cdf::HVM | cdf::HAP) != cdf::HVM | cdf::HAP
                            || cfg.arch.emulation_flags != EMU_LAPIC
                        {
                            return err(libc::EOPNOTSUPP);
                        }
                        let id = 7 + self.created.borrow().len() as u16;
                        self.created.borrow_mut().push(id);
                        dc.domain = id;
                        return put(mem, args[0], &dc).map(|_| 0);
                    }
                    if self.created.borrow().contains(&dc.domain) {
                        return match dc.cmd {
                            dctl::op::MAX_VCPUS => Ok(0),
                            // The fake's memory limit: 1 GiB.
                            dctl::op::MAX_MEM if dc.op::<MaxMem>().max_memkb > 1 << 20 => {
                                err(libc::ENOMEM)
                            }
                            dctl::op::MAX_MEM => Ok(0),
                            dctl::op::DESTROYDOMAIN => {
                                self.destroyed.borrow_mut().push(dc.domain);
                                Ok(0)
                            }
                            _ => err(libc::ENOSYS),
                        };
                    }
                    let Some(&(_, _, vcpus, _)) = self.doms.iter().find(|d| d.0 == dc.domain)
                    else {
                        return err(libc::ESRCH);
                    };
                    match dc.cmd {
                        dctl::op::GETVCPUINFO => {
                            let mut vi: GetVcpuInfo = dc.op();
                            if vi.vcpu >= vcpus {
                                return err(libc::EINVAL);
                            }
                            vi.online = 1;
                            vi.running = (dc.domain == 0) as u8;
                            vi.blocked = (dc.domain != 0) as u8;
                            vi.cpu = vi.vcpu % self.ncpus;
                            vi.cpu_time = 42_000_000;
                            dc.u = dctl::DomctlU::new(&vi);
                            put(mem, args[0], &dc).map(|_| 0)
                        }
                        dctl::op::GETVCPUAFFINITY | dctl::op::SETVCPUAFFINITY => {
                            let va: VcpuAffinity = dc.op();
                            if dc.cmd == dctl::op::SETVCPUAFFINITY {
                                let m: u8 = get(mem, va.cpumap_hard.bitmap.addr())?;
                                if m as u64 & ((1 << self.ncpus) - 1) == 0 {
                                    return err(libc::EINVAL);
                                }
                                if va.flags & affinity::SOFT != 0 {
                                    return err(libc::EOPNOTSUPP);
                                }
                                self.pins
                                    .borrow_mut()
                                    .push(((dc.domain, va.vcpu), m as u64));
                            } else {
                                put(
                                    mem,
                                    va.cpumap_hard.bitmap.addr(),
                                    &(self.pin(dc.domain, va.vcpu) as u8),
                                )?;
                                put(
                                    mem,
                                    va.cpumap_soft.bitmap.addr(),
                                    &(((1u64 << self.ncpus) - 1) as u8),
                                )?;
                            }
                            Ok(0)
                        }
                        dctl::op::DESTROYDOMAIN => {
                            self.destroyed.borrow_mut().push(dc.domain);
                            Ok(0)
                        }
                        dctl::op::PAUSEDOMAIN | dctl::op::UNPAUSEDOMAIN => {
                            if dc.domain == 0 {
                                return err(libc::EINVAL);
                            }
                            self.calls
                                .borrow_mut()
                                .push(format!("pause-op {} d{}", dc.cmd, dc.domain));
                            Ok(0)
                        }
                        dctl::op::SCHEDULER_OP => {
                            let mut so: SchedulerOp = dc.op();
                            if so.sched_id != dctl::scheduler::CREDIT {
                                return err(libc::EINVAL);
                            }
                            let cur = self
                                .credit
                                .borrow()
                                .iter()
                                .rev()
                                .find(|c| c.0 == dc.domain)
                                .map_or((256, 0), |c| c.1);
                            if so.cmd == dctl::schedop::GETINFO {
                                so.u = SchedOpU::new(&SchedCredit {
                                    weight: cur.0,
                                    cap: cur.1,
                                });
                                dc.u = dctl::DomctlU::new(&so);
                                return put(mem, args[0], &dc).map(|_| 0);
                            }
                            let c: SchedCredit = so.u.get();
                            let w = if c.weight == 0 { cur.0 } else { c.weight };
                            let cap = if c.cap == u16::MAX { cur.1 } else { c.cap };
                            self.credit.borrow_mut().push((dc.domain, (w, cap)));
                            Ok(0)
                        }
                        _ => err(libc::ENOSYS),
                    }
                }
                _ => err(libc::ENOSYS),
            }
        }
    }

    /// A xenstore that keeps its nodes (path -> value, perms) and tells
    /// in `events` what was asked of it, in order, with the fake
    /// hypervisor's unpause when they share the list
    /// ([`crate::domu::tests::FakeDomU::events`]).
    #[derive(Default)]
    pub struct MemStore {
        pub nodes: RefCell<std::collections::BTreeMap<String, (String, Vec<String>)>>,
        pub events: std::rc::Rc<RefCell<Vec<String>>>,
        /// Every `publish` call's nodes.
        pub batches: RefCell<Vec<Vec<Node>>>,
        /// A `publish` with a node whose path contains this fails.
        pub fail_publish: RefCell<Option<String>>,
        /// Acts as blkback: a vbd backend offline (`online` 0) whose
        /// frontend directory is gone switches to Closed (6).
        pub blkback: std::cell::Cell<bool>,
        /// Acts as netback, with its interfaces on this host: a new vif
        /// backend (`online` 1, `state` 1) gets its interface
        /// `vif<domid>.<devid>` and goes to InitWait (2); one offline
        /// whose frontend directory is gone goes to Closed (6) and its
        /// interface (by either name) goes.
        pub netback: RefCell<Option<std::rc::Rc<crate::hotplug::fake::FakeHost>>>,
        /// Acts as a guest whose frontends let go: a frontend whose
        /// backend is Closing (5) goes to Closed (6), which blkback and
        /// netback take as they take a frontend gone.
        pub guest_releases: std::cell::Cell<bool>,
    }

    impl MemStore {
        pub fn value(&self, path: &str) -> Option<String> {
            self.nodes.borrow().get(path).map(|n| n.0.clone())
        }
        pub fn set(&self, path: &str, value: &str) {
            self.insert(path, value, vec![]);
        }
        fn insert(&self, path: &str, value: &str, perms: Vec<String>) {
            let mut m = self.nodes.borrow_mut();
            // Parents come into being empty, as in xenstored.
            let mut at = 0;
            while let Some(i) = path[at + 1..].find('/') {
                at += i + 1;
                m.entry(path[..at].to_string()).or_default();
            }
            let e = m.entry(path.to_string()).or_default();
            e.0 = value.to_string();
            if !perms.is_empty() {
                e.1 = perms;
            }
        }
        /// What a guest that lets go does (see
        /// [`MemStore::guest_releases`]).
        fn guest_acts(&self) {
            if !self.guest_releases.get() {
                return;
            }
            let states: Vec<String> = self
                .nodes
                .borrow()
                .keys()
                .filter(|k| k.starts_with("/local/domain/0/backend/") && k.ends_with("/state"))
                .cloned()
                .collect();
            for st in states {
                let be = st.trim_end_matches("/state");
                let fe = self.value(&format!("{be}/frontend")).unwrap_or_default();
                if self.value(&st).as_deref() == Some("5") && self.value(&fe).is_some() {
                    self.set(&format!("{fe}/state"), "6");
                }
            }
        }
        /// Is the frontend at `fe` gone, or Closed?
        fn frontend_let_go(&self, fe: &str) -> bool {
            self.value(fe).is_none() || self.value(&format!("{fe}/state")).as_deref() == Some("6")
        }
        /// What blkback does once a backend is offline and its
        /// frontend gone (or Closed): Closed.
        fn blkback_closes(&self) {
            let onlines: Vec<String> = self
                .nodes
                .borrow()
                .keys()
                .filter(|k| k.starts_with("/local/domain/0/backend/vbd/") && k.ends_with("/online"))
                .cloned()
                .collect();
            for o in onlines {
                let be = o.trim_end_matches("/online");
                let fe = self.value(&format!("{be}/frontend")).unwrap_or_default();
                if self.value(&o).as_deref() == Some("0") && self.frontend_let_go(&fe) {
                    self.set(&format!("{be}/state"), "6");
                }
            }
        }
        /// What netback does (see [`MemStore::netback`]).
        fn netback_acts(&self) {
            let Some(host) = self.netback.borrow().clone() else {
                return;
            };
            // A backend directory removed: netback frees its interface.
            host.links.borrow_mut().retain(|name, _| {
                let Some((d, n)) = name.strip_prefix("vif").and_then(|r| r.split_once('.')) else {
                    return true;
                };
                self.value(&format!("/local/domain/0/backend/vif/{d}/{n}"))
                    .is_some()
            });
            let states: Vec<String> = self
                .nodes
                .borrow()
                .keys()
                .filter(|k| k.starts_with("/local/domain/0/backend/vif/") && k.ends_with("/state"))
                .cloned()
                .collect();
            for st in states {
                let be = st.trim_end_matches("/state");
                let mut ids = be.rsplit('/');
                let (Some(devid), Some(domid)) = (ids.next(), ids.next()) else {
                    continue;
                };
                let dev = format!("vif{domid}.{devid}");
                let fe = self.value(&format!("{be}/frontend")).unwrap_or_default();
                let online = self.value(&format!("{be}/online"));
                let state = self.value(&st);
                if online.as_deref() == Some("1") && state.as_deref() == Some("1") {
                    host.add_link(&dev, false, false);
                    self.set(&st, "2");
                } else if online.as_deref() == Some("0")
                    && self.frontend_let_go(&fe)
                    && state.as_deref() != Some("6")
                {
                    self.set(&st, "6");
                    let mut links = host.links.borrow_mut();
                    links.remove(&dev);
                    if let Some(n) = self.value(&format!("{be}/vifname")) {
                        links.remove(&n);
                    }
                }
            }
        }
        /// Every path under `root` (itself included).
        pub fn under(&self, root: &str) -> Vec<String> {
            self.nodes
                .borrow()
                .keys()
                .filter(|k| *k == root || k.starts_with(&format!("{root}/")))
                .cloned()
                .collect()
        }
    }

    impl Xenstore for std::rc::Rc<MemStore> {
        fn name(&self, domid: u32) -> Option<String> {
            self.value(&format!("/local/domain/{domid}/name"))
        }
        fn publish(&self, nodes: &[Node]) -> std::result::Result<(), String> {
            if let Some(f) = self.fail_publish.borrow().as_deref() {
                if nodes.iter().any(|n| n.path.contains(f)) {
                    self.events.borrow_mut().push("publish failed".into());
                    return Err(format!("fake xenstore: writing {f} failed"));
                }
            }
            for n in nodes {
                self.insert(&n.path, &n.value, n.perms.clone());
            }
            self.batches.borrow_mut().push(nodes.to_vec());
            self.events
                .borrow_mut()
                .push(format!("publish #{}", self.batches.borrow().len() - 1));
            self.guest_acts();
            if self.blkback.get() {
                self.blkback_closes();
            }
            self.netback_acts();
            Ok(())
        }
        fn introduce(&self, d: u32, _: u64, _: u32) -> std::result::Result<(), String> {
            self.events.borrow_mut().push(format!("introduce {d}"));
            Ok(())
        }
        fn remove(&self, paths: &[String]) -> std::result::Result<(), String> {
            for p in paths {
                self.events.borrow_mut().push(format!("rm {p}"));
                for k in self.under(p) {
                    self.nodes.borrow_mut().remove(&k);
                }
            }
            self.guest_acts();
            if self.blkback.get() {
                self.blkback_closes();
            }
            self.netback_acts();
            Ok(())
        }
        fn release(&self, d: u32) -> std::result::Result<(), String> {
            self.events.borrow_mut().push(format!("release {d}"));
            Ok(())
        }
        fn read(&self, path: &str) -> std::result::Result<Option<String>, String> {
            Ok(self.value(path))
        }
        fn directory(&self, path: &str) -> std::result::Result<Vec<String>, String> {
            let prefix = format!("{path}/");
            Ok(self
                .nodes
                .borrow()
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix))
                .filter(|rest| !rest.contains('/'))
                .map(str::to_string)
                .collect())
        }
    }

    pub fn backend(x: FakeXen) -> XenBackend<FakeXen> {
        let mut b = XenBackend::new(x);
        b.hostname = Some("dom0".into());
        b.cpu_vendor = Some("AuthenticAMD".into());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{backend, FakeXen};
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn info_from_xen_version_physinfo_and_sched_id() {
        let h = backend(FakeXen::new()).host_info().unwrap();
        assert_eq!(
            (h.hypervisor.as_str(), h.version.as_str()),
            ("keel", "0.1.0")
        );
        assert_eq!(h.mgmt_abi, "xen 4.17-keel (sysctl 0x15, domctl 0x15)");
        assert_eq!(h.virt_caps, ["hvm", "hap", "gnttab-v1"]);
        assert_eq!((h.nr_cpus, h.nr_nodes, h.tsc_khz), (2, 1, 2_600_000));
        assert_eq!((h.total_mem_mib, h.free_mem_mib), (1024, 512));
        assert_eq!(h.scheduler, "credit");
        let text = crate::format::info_text(&h);
        assert!(text.contains("hypervisor            : keel\n"), "{text}");
        assert!(text.contains("total_memory          : 1024\n"), "{text}");
    }

    #[test]
    fn list_pages_through_the_domains_in_id_order() {
        let b = backend(FakeXen::new());
        let l = b.list_domains().unwrap();
        let rows: Vec<_> = l
            .iter()
            .map(|d| {
                (
                    d.name.as_str(),
                    d.domid,
                    d.mem_kib,
                    d.vcpus,
                    d.state.flags(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("Domain-0", 0, 262_144, 2, "r-----".to_string()),
                ("(null)", 1, 4096, 1, "-b----".to_string()),
                ("(null)", 5, 1024, 1, "----c-".to_string()),
            ]
        );
        let table = crate::format::list_table(&l);
        assert!(
            table.contains("Domain-0                                     0    256     2   r-----"),
            "{table}"
        );
        // More domains than one batch: asked for in two calls.
        let mut x = FakeXen::new();
        x.doms = (0..40).map(|i| (i * 3, 256, 1, dominf::RUNNING)).collect();
        let b = backend(x);
        let l = b.list_domains().unwrap();
        assert_eq!(l.len(), 40);
        assert_eq!(l.last().unwrap().domid, 117);
        let lists =
            b.hc.calls
                .borrow()
                .iter()
                .filter(|c| *c == "sysctl 6")
                .count();
        assert_eq!(lists, 2);
    }

    #[test]
    fn vcpu_list_and_pin() {
        let b = backend(FakeXen::new());
        let v = b.vcpu_list().unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(
            (v[1].domid, v[1].vcpu, v[1].cpu, v[1].state),
            (0, 1, Some(1), VcpuState::Running)
        );
        assert_eq!(
            (v[1].hard_affinity.as_str(), v[1].soft_affinity.as_str()),
            ("all", "all")
        );
        b.pin_vcpu(
            &DomainRef::Id(0),
            Some(1),
            &CpuList::parse("1").unwrap(),
            None,
        )
        .unwrap();
        let v = b.vcpu_list().unwrap();
        assert_eq!(v[1].hard_affinity, "1");
        assert_eq!(v[0].hard_affinity, "all");
        // Every vCPU of a domain named by name.
        b.pin_vcpu(
            &DomainRef::Name("Domain-0".into()),
            None,
            &CpuList::parse("0").unwrap(),
            None,
        )
        .unwrap();
        let v = b.vcpu_list().unwrap();
        assert_eq!(
            (v[0].hard_affinity.as_str(), v[1].hard_affinity.as_str()),
            ("0", "0")
        );
        // Errors say what went wrong.
        let e = b
            .pin_vcpu(
                &DomainRef::Id(0),
                Some(7),
                &CpuList::parse("0").unwrap(),
                None,
            )
            .unwrap_err();
        assert!(e.to_string().contains("no vCPU 7"), "{e}");
        let e = b
            .pin_vcpu(&DomainRef::Id(9), None, &CpuList::parse("0").unwrap(), None)
            .unwrap_err();
        assert_eq!(e, BackendError::NoSuchDomain(DomainRef::Id(9)));
        let e = b
            .pin_vcpu(&DomainRef::Id(0), None, &CpuList::parse("7").unwrap(), None)
            .unwrap_err();
        assert!(e.to_string().contains("names none"), "{e}");
        let e = b
            .pin_vcpu(
                &DomainRef::Id(1),
                None,
                &CpuList::parse("0").unwrap(),
                Some(&CpuList::parse("1").unwrap()),
            )
            .unwrap_err();
        assert!(e.to_string().contains("EOPNOTSUPP"), "{e}");
        assert_eq!(
            cpuset_text(&[true, false, true, true, false, true]),
            "0,2-3,5"
        );
        assert_eq!(cpuset_text(&[false, false]), "none");
    }

    #[test]
    fn sched_credit_get_and_set() {
        let b = backend(FakeXen::new());
        assert_eq!(b.sched_credit(&DomainRef::Id(1)).unwrap(), (256, 0));
        b.set_sched_credit(&DomainRef::Id(1), Some(512), None)
            .unwrap();
        assert_eq!(b.sched_credit(&DomainRef::Id(1)).unwrap(), (512, 0));
        b.set_sched_credit(&DomainRef::Id(1), None, Some(50))
            .unwrap();
        assert_eq!(b.sched_credit(&DomainRef::Id(1)).unwrap(), (512, 50));
        assert_eq!(b.sched_credit(&DomainRef::Id(0)).unwrap(), (256, 0));
        assert_eq!(
            b.set_sched_credit(&DomainRef::Name("nope".into()), Some(1), None)
                .unwrap_err(),
            BackendError::NoSuchDomain(DomainRef::Name("nope".into()))
        );
    }

    #[test]
    fn perf_counters_sizes_first_then_descriptions_and_values() {
        let b = backend(FakeXen::new());
        // A hypervisor without them: not implemented (exit 3 for a command).
        assert!(matches!(
            b.perf_counters().unwrap_err(),
            BackendError::NotImplemented(_)
        ));
        *b.transport().perfc.borrow_mut() = Some(vec![
            ("vmexit cpuid [domid]".into(), vec![5, 0, 7]),
            ("exceptions".into(), vec![1, 2]),
            ("empty".into(), vec![]),
        ]);
        b.transport().calls.borrow_mut().clear();
        let c = b.perf_counters().unwrap();
        assert_eq!(
            c,
            [
                PerfCounter {
                    name: "vmexit cpuid [domid]".into(),
                    values: vec![5, 0, 7]
                },
                PerfCounter {
                    name: "exceptions".into(),
                    values: vec![1, 2]
                },
                PerfCounter {
                    name: "empty".into(),
                    values: vec![]
                },
            ]
        );
        assert_eq!(*b.transport().calls.borrow(), ["sysctl 5", "sysctl 5"]);
    }

    #[test]
    fn dmesg_reads_the_ring_incrementally_and_clears_it() {
        let b = backend(FakeXen::new());
        assert_eq!(
            b.read_console_ring(false).unwrap(),
            "(XEN) keel 0.1.0 starting\n(XEN) d0: built\n"
        );
        assert_eq!(b.read_console_ring(true).unwrap().lines().count(), 2);
        assert_eq!(b.read_console_ring(false).unwrap(), "");
    }

    #[test]
    fn refusals_are_explained() {
        let mut x = FakeXen::new();
        x.privileged = false;
        let e = backend(x).list_domains().unwrap_err();
        assert!(
            matches!(&e, BackendError::Unavailable(m) if m.contains("not privileged")),
            "{e}"
        );
        let e = call_error(
            "sysctl physinfo",
            CallError {
                errno: libc::EACCES,
            },
        );
        assert!(e.to_string().contains("0x15"));
        let e = call_error(
            "domctl 99",
            CallError {
                errno: libc::ENOSYS,
            },
        );
        assert!(matches!(e, BackendError::NotImplemented(_)));
        let b = backend(FakeXen::new());
        b.pause(&DomainRef::Id(1)).unwrap();
        b.unpause(&DomainRef::Id(1)).unwrap();
        let ops: Vec<String> =
            b.hc.calls
                .borrow()
                .iter()
                .filter(|c| c.starts_with("pause-op"))
                .cloned()
                .collect();
        assert_eq!(ops, ["pause-op 3 d1", "pause-op 4 d1"]);
        let e = b.pause(&DomainRef::Id(0)).unwrap_err();
        assert!(e.to_string().contains("cannot pause itself"), "{e}");
        let e = b.destroy(&DomainRef::Id(0)).unwrap_err();
        assert!(e.to_string().contains("cannot be destroyed"), "{e}");
        let e = b.destroy(&DomainRef::Name("nope".into())).unwrap_err();
        assert!(matches!(e, BackendError::NoSuchDomain(_)), "{e}");
        b.destroy(&DomainRef::Id(1)).unwrap();
        assert_eq!(*b.hc.destroyed.borrow(), [1]);
    }

    struct Named;
    impl Xenstore for Named {
        fn name(&self, domid: u32) -> Option<String> {
            (domid == 1).then(|| "web".into())
        }
    }

    #[test]
    fn names_come_from_the_name_source_and_find_domains() {
        let mut b = backend(FakeXen::new());
        b.store = Box::new(Named);
        let names: Vec<String> = b
            .list_domains()
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(names, ["Domain-0", "web", "(null)"]);
        b.destroy(&DomainRef::parse("web")).unwrap();
        assert_eq!(*b.hc.destroyed.borrow(), [1]);
        assert_eq!(b.vcpu_list().unwrap()[2].domain, "web");
    }

    /// A xenstore keeping what destroy asked of it.
    #[derive(Default)]
    struct Released(std::rc::Rc<RefCell<Vec<String>>>);
    impl Xenstore for Released {
        fn name(&self, _: u32) -> Option<String> {
            None
        }
        fn remove(&self, paths: &[String]) -> std::result::Result<(), String> {
            self.0
                .borrow_mut()
                .extend(paths.iter().map(|p| format!("rm {p}")));
            Ok(())
        }
        fn release(&self, domid: u32) -> std::result::Result<(), String> {
            self.0.borrow_mut().push(format!("release {domid}"));
            Ok(())
        }
    }

    /// destroy: the domctl, then (as libxl) xenstored lets go of the ring
    /// and the domain's records go; nothing of that when keel refused.
    #[test]
    fn destroy_releases_the_domain_in_xenstore() {
        let mut b = backend(FakeXen::new());
        let r = std::rc::Rc::new(RefCell::new(Vec::new()));
        b.store = Box::new(Released(r.clone()));
        b.destroy(&DomainRef::Id(1)).unwrap();
        assert_eq!(
            *r.borrow(),
            ["release 1", "rm /local/domain/1", "rm /libxl/1"]
        );
        r.borrow_mut().clear();
        assert!(b.destroy(&DomainRef::Id(0)).is_err());
        assert!(b.destroy(&DomainRef::Id(0x7fe0)).is_err());
        assert!(r.borrow().is_empty());
    }

    /// A xenstore keeping what is written.
    #[derive(Default)]
    struct Written(std::rc::Rc<RefCell<Vec<Node>>>);
    impl Xenstore for Written {
        fn name(&self, _: u32) -> Option<String> {
            None
        }
        fn publish(&self, nodes: &[Node]) -> std::result::Result<(), String> {
            self.0.borrow_mut().extend_from_slice(nodes);
            Ok(())
        }
    }

    #[test]
    fn shutdown_and_reboot_ask_the_guest_through_xenstore() {
        let mut b = backend(FakeXen::new());
        let w = std::rc::Rc::new(RefCell::new(Vec::new()));
        b.store = Box::new(Written(w.clone()));
        b.shutdown(&DomainRef::Id(1)).unwrap();
        b.reboot(&DomainRef::Id(1)).unwrap();
        let got: Vec<(String, String)> = w
            .borrow()
            .iter()
            .map(|n| (n.path.clone(), n.value.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "/local/domain/1/control/shutdown".to_string(),
                    "poweroff".to_string()
                ),
                (
                    "/local/domain/1/control/shutdown".to_string(),
                    "reboot".to_string()
                )
            ]
        );
        // dom0, and a domain already shut down (d5), are refused.
        assert!(b.shutdown(&DomainRef::Id(0)).is_err());
        let e = b.reboot(&DomainRef::Id(5)).unwrap_err();
        assert!(e.to_string().contains("already shutting down"), "{e}");
        assert_eq!(w.borrow().len(), 2);
    }

    #[test]
    fn a_container_is_created_limited_or_destroyed_again() {
        let b = backend(FakeXen::new());
        assert_eq!(b.create_container(2, 262_144).unwrap(), 7);
        assert_eq!(b.create_container(1, 0).unwrap(), 8);
        let domctls = |b: &XenBackend<FakeXen>| -> Vec<String> {
            b.hc.calls
                .borrow()
                .iter()
                .filter(|c| c.starts_with("domctl"))
                .cloned()
                .collect()
        };
        // createdomain (1) asks for any id (0); max_vcpus (15) and
        // max_mem (11) go to the id it gave.
        assert_eq!(
            domctls(&b)[..3],
            ["domctl 1 d0", "domctl 15 d7", "domctl 11 d7"]
        );
        assert!(b.hc.destroyed.borrow().is_empty());
        // A refused step takes the half-made domain away again.
        let e = b.create_container(1, 4 << 20).unwrap_err();
        assert!(e.to_string().contains("max_mem"), "{e}");
        assert_eq!(*b.hc.destroyed.borrow(), [9]);
    }
}
