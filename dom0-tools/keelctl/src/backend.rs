//! The hypervisor backend seam.
//!
//! Every command that needs the hypervisor goes through [`Hypervisor`].
//! In dom0 on keel that is [`crate::xen::XenBackend`] over
//! `/dev/xen/privcmd`; anywhere else [`open`] returns [`NotAvailable`],
//! which explains why.

use std::fmt;
use std::path::{Path, PathBuf};

use keel_xlcfg::{CpuList, DiskSpec, DomainConfig, MacAddr, VifSpec};

/// Where dom0's privcmd device lives.
pub const PRIVCMD_PATH: &str = "/dev/xen/privcmd";
/// Environment variable overriding [`PRIVCMD_PATH`] (used by tests).
pub const PRIVCMD_ENV: &str = "KEELCTL_PRIVCMD";
/// Linux's name for the hypervisor it runs on ("xen" on keel, which
/// speaks Xen's ABI).
pub const HYPERVISOR_TYPE_PATH: &str = "/sys/hypervisor/type";
/// Environment variable overriding [`HYPERVISOR_TYPE_PATH`] (used by tests).
pub const HYPERVISOR_TYPE_ENV: &str = "KEELCTL_HYPERVISOR_TYPE";

/// A domain named by id (all digits) or by name, as xl accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainRef {
    Id(u32),
    Name(String),
}

impl DomainRef {
    pub fn parse(s: &str) -> DomainRef {
        match s.parse::<u32>() {
            Ok(id) if s.bytes().all(|b| b.is_ascii_digit()) => DomainRef::Id(id),
            _ => DomainRef::Name(s.to_string()),
        }
    }

    pub fn matches(&self, d: &DomainInfo) -> bool {
        match self {
            DomainRef::Id(id) => d.domid == *id,
            DomainRef::Name(n) => d.name == *n,
        }
    }
}

impl fmt::Display for DomainRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainRef::Id(id) => write!(f, "{id}"),
            DomainRef::Name(n) => f.write_str(n),
        }
    }
}

/// Run-state flags, shown by `list` as `rbpscd` (dash when clear).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DomainState {
    pub running: bool,
    pub blocked: bool,
    pub paused: bool,
    pub shutdown: bool,
    pub crashed: bool,
    pub dying: bool,
}

impl DomainState {
    pub fn flags(&self) -> String {
        [
            (self.running, 'r'),
            (self.blocked, 'b'),
            (self.paused, 'p'),
            (self.shutdown, 's'),
            (self.crashed, 'c'),
            (self.dying, 'd'),
        ]
        .iter()
        .map(|&(on, c)| if on { c } else { '-' })
        .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainInfo {
    pub name: String,
    pub domid: u32,
    pub mem_kib: u64,
    pub vcpus: u32,
    pub state: DomainState,
    pub cpu_time_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// dom0's host name.
    pub host: String,
    /// "keel".
    pub hypervisor: String,
    /// The hypervisor's version, e.g. "0.1.0".
    pub version: String,
    /// The management ABI the hypervisor speaks, "major.minor".
    pub mgmt_abi: String,
    /// CPUID vendor string, e.g. "AuthenticAMD".
    pub cpu_vendor: String,
    /// Virtualization features in use, e.g. ["svm", "npt", "tagged-tlb"].
    pub virt_caps: Vec<String>,
    pub nr_cpus: u32,
    pub nr_nodes: u32,
    /// TSC frequency, kHz.
    pub tsc_khz: u32,
    pub total_mem_mib: u64,
    pub free_mem_mib: u64,
    /// Free memory to the page (`free_memory` is whole MiB): what a
    /// create/destroy cycle must give back exactly.
    pub free_pages: u64,
    /// The scheduler, e.g. "pinned".
    pub scheduler: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VcpuState {
    Running,
    Blocked,
    Offline,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcpuInfo {
    pub domain: String,
    pub domid: u32,
    pub vcpu: u32,
    /// Physical CPU it runs on (None when offline).
    pub cpu: Option<u32>,
    pub state: VcpuState,
    pub cpu_time_ns: u64,
    pub hard_affinity: String,
    pub soft_affinity: String,
}

/// One of the hypervisor's software performance counters
/// (`XEN_SYSCTL_perfc_op`, as `xenperf` prints them): its name and its
/// values (one per CPU, or an array; keel's VM-exit counters are arrays
/// indexed by domain id, `crate::top`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerfCounter {
    pub name: String,
    pub values: Vec<u32>,
}

/// One of a domain's disks as `xl block-list` shows it (libxl's
/// `libxl_diskinfo`): read from its `/libxl/<domid>/device/vbd/<devid>`
/// records and the frontend's; what the frontend has not written yet
/// is -1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockInfo {
    /// The device id: the vdev's number (`Vdev`).
    pub devid: u32,
    /// The backend's domain (`BE`).
    pub backend_id: u32,
    /// The guest's id (xl's `handle` column shows it).
    pub frontend_id: u32,
    /// The frontend's xenbus state.
    pub state: i64,
    /// The frontend's `event-channel` and `ring-ref`.
    pub evtch: i64,
    pub ring_ref: i64,
    /// The backend's directory (`BE-path`).
    pub backend_path: String,
}

/// A domain's network interface, as `xl network-list` shows it
/// (`libxl_nicinfo`): from libxl's records and the frontend's; what the
/// frontend has not written yet is -1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicInfo {
    /// The device id (`Idx`, and `handle`).
    pub devid: u32,
    /// The backend's domain (`BE`).
    pub backend_id: u32,
    pub mac: keel_xlcfg::MacAddr,
    /// The frontend's xenbus state.
    pub state: i64,
    /// The frontend's `event-channel`, `tx-ring-ref`, `rx-ring-ref`.
    pub evtch: i64,
    pub tx_ring_ref: i64,
    pub rx_ring_ref: i64,
    /// The backend's directory (`BE-path`).
    pub backend_path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendError {
    /// No way to talk to the hypervisor at all (no privcmd, not dom0...).
    Unavailable(String),
    /// The backend exists but lacks this operation.
    NotImplemented(String),
    NoSuchDomain(DomainRef),
    Failed(String),
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::Unavailable(s)
            | BackendError::NotImplemented(s)
            | BackendError::Failed(s) => f.write_str(s),
            BackendError::NoSuchDomain(d) => write!(f, "domain '{d}' does not exist"),
        }
    }
}

pub type Result<T> = std::result::Result<T, BackendError>;

/// Operations keelctl needs from the hypervisor.
pub trait Hypervisor {
    fn list_domains(&self) -> Result<Vec<DomainInfo>>;
    fn host_info(&self) -> Result<HostInfo>;
    fn vcpu_list(&self) -> Result<Vec<VcpuInfo>>;
    /// Build and start a domain; returns its id.
    fn create_domain(&self, config: &DomainConfig, paused: bool) -> Result<u32>;
    fn destroy(&self, dom: &DomainRef) -> Result<()>;
    fn shutdown(&self, dom: &DomainRef) -> Result<()>;
    fn reboot(&self, dom: &DomainRef) -> Result<()>;
    fn pause(&self, dom: &DomainRef) -> Result<()>;
    fn unpause(&self, dom: &DomainRef) -> Result<()>;
    /// Set the balloon target, in KiB.
    fn set_memory_target(&self, dom: &DomainRef, kib: u64) -> Result<()>;
    /// `vcpu = None` pins all vCPUs.
    fn pin_vcpu(
        &self,
        dom: &DomainRef,
        vcpu: Option<u32>,
        hard: &CpuList,
        soft: Option<&CpuList>,
    ) -> Result<()>;
    /// The hypervisor console ring; `clear` empties it afterwards.
    fn read_console_ring(&self, clear: bool) -> Result<String>;
    /// Starts the background monitor of a created domain
    /// ([`crate::monitor`]); a backend without one does nothing.
    fn start_monitor(&self, config: &Path, domid: u32) -> Result<()> {
        let _ = (config, domid);
        Ok(())
    }
    /// Runs the monitor of domain `domid` built from `cfg` (in the
    /// background process `start_monitor` started) until it stops.
    fn monitor(
        &self,
        cfg: &DomainConfig,
        domid: u32,
        log: &mut dyn FnMut(String),
    ) -> Result<String> {
        let _ = (cfg, domid, log);
        Err(BackendError::NotImplemented(
            "this backend has no domain monitor".into(),
        ))
    }
    /// A domain's disks (`block-list`).
    fn block_list(&self, dom: &DomainRef) -> Result<Vec<BlockInfo>> {
        let _ = dom;
        Err(BackendError::NotImplemented(
            "this backend has no disks to list".into(),
        ))
    }
    /// A domain's network interfaces (`network-list`).
    fn network_list(&self, dom: &DomainRef) -> Result<Vec<NicInfo>> {
        let _ = dom;
        Err(BackendError::NotImplemented(
            "this backend has no network interfaces to list".into(),
        ))
    }
    /// `block-attach`: adds disk `spec` to a running domain; returns its
    /// device id.
    fn block_attach(&self, dom: &DomainRef, spec: &DiskSpec) -> Result<u32> {
        let _ = (dom, spec);
        Err(BackendError::NotImplemented(
            "this backend cannot attach disks".into(),
        ))
    }
    /// `block-detach`: takes disk `vdev` (a name or device number) away
    /// from a running domain, forced or asking the guest first.
    fn block_detach(&self, dom: &DomainRef, vdev: &str, force: bool) -> Result<()> {
        let _ = (dom, vdev, force);
        Err(BackendError::NotImplemented(
            "this backend cannot detach disks".into(),
        ))
    }
    /// `network-attach`: adds interface `spec` to a running domain;
    /// returns its device id and MAC address.
    fn network_attach(&self, dom: &DomainRef, spec: &VifSpec) -> Result<(u32, MacAddr)> {
        let _ = (dom, spec);
        Err(BackendError::NotImplemented(
            "this backend cannot attach network interfaces".into(),
        ))
    }
    /// `network-detach`: takes interface `which` (a device id or a MAC
    /// address) away from a running domain.
    fn network_detach(&self, dom: &DomainRef, which: &str) -> Result<()> {
        let _ = (dom, which);
        Err(BackendError::NotImplemented(
            "this backend cannot detach network interfaces".into(),
        ))
    }
    /// The software performance counters (`perfc_op` query).
    fn perf_counters(&self) -> Result<Vec<PerfCounter>> {
        Err(BackendError::NotImplemented(
            "this backend has no performance counters".into(),
        ))
    }
    /// A domain's credit scheduler (weight, cap).
    fn sched_credit(&self, dom: &DomainRef) -> Result<(u16, u16)> {
        let _ = dom;
        Err(BackendError::NotImplemented(
            "this backend has no credit scheduler parameters".into(),
        ))
    }
    /// Sets a domain's credit weight and/or cap (`None`: unchanged).
    fn set_sched_credit(
        &self,
        dom: &DomainRef,
        weight: Option<u16>,
        cap: Option<u16>,
    ) -> Result<()> {
        let _ = (dom, weight, cap);
        Err(BackendError::NotImplemented(
            "this backend has no credit scheduler parameters".into(),
        ))
    }
}

/// The backend used when the hypervisor cannot be reached: every call
/// fails with the same explanation.
#[derive(Debug, Clone)]
pub struct NotAvailable {
    pub reason: String,
}

impl NotAvailable {
    fn err<T>(&self) -> Result<T> {
        Err(BackendError::Unavailable(self.reason.clone()))
    }
}

impl Hypervisor for NotAvailable {
    fn list_domains(&self) -> Result<Vec<DomainInfo>> {
        self.err()
    }
    fn host_info(&self) -> Result<HostInfo> {
        self.err()
    }
    fn vcpu_list(&self) -> Result<Vec<VcpuInfo>> {
        self.err()
    }
    fn create_domain(&self, _: &DomainConfig, _: bool) -> Result<u32> {
        self.err()
    }
    fn destroy(&self, _: &DomainRef) -> Result<()> {
        self.err()
    }
    fn shutdown(&self, _: &DomainRef) -> Result<()> {
        self.err()
    }
    fn reboot(&self, _: &DomainRef) -> Result<()> {
        self.err()
    }
    fn pause(&self, _: &DomainRef) -> Result<()> {
        self.err()
    }
    fn unpause(&self, _: &DomainRef) -> Result<()> {
        self.err()
    }
    fn set_memory_target(&self, _: &DomainRef, _: u64) -> Result<()> {
        self.err()
    }
    fn pin_vcpu(
        &self,
        _: &DomainRef,
        _: Option<u32>,
        _: &CpuList,
        _: Option<&CpuList>,
    ) -> Result<()> {
        self.err()
    }
    fn read_console_ring(&self, _: bool) -> Result<String> {
        self.err()
    }
    fn block_list(&self, _: &DomainRef) -> Result<Vec<BlockInfo>> {
        self.err()
    }
    fn network_list(&self, _: &DomainRef) -> Result<Vec<NicInfo>> {
        self.err()
    }
}

/// The privcmd device path: `$KEELCTL_PRIVCMD` or `/dev/xen/privcmd`.
pub fn privcmd_path() -> PathBuf {
    std::env::var_os(PRIVCMD_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(PRIVCMD_PATH))
}

/// `$KEELCTL_HYPERVISOR_TYPE` or `/sys/hypervisor/type`.
pub fn hypervisor_type_path() -> PathBuf {
    std::env::var_os(HYPERVISOR_TYPE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(HYPERVISOR_TYPE_PATH))
}

/// Pick the backend for this host (see [`open_with`]).
pub fn open(privcmd: &Path) -> Box<dyn Hypervisor> {
    open_with(privcmd, &hypervisor_type_path())
}

/// The Xen-ABI backend over `privcmd`, or a [`NotAvailable`] saying what is
/// missing; `hypervisor_type` (`/sys/hypervisor/type`) tells "not on a
/// Xen-ABI hypervisor" from "privcmd driver not loaded".
pub fn open_with(privcmd: &Path, hypervisor_type: &Path) -> Box<dyn Hypervisor> {
    use crate::privcmd::{OpenError, Privcmd};
    let p = privcmd.display();
    let reason = match Privcmd::open(privcmd) {
        Ok(dev) => {
            let mut b = crate::xen::XenBackend::new(dev);
            b.store = Box::new(crate::names::XenstoreSocket::from_env());
            b.monitor_exe = std::env::current_exe().ok();
            return Box::new(b);
        }
        Err(OpenError::Missing) => {
            let xen = std::fs::read_to_string(hypervisor_type).is_ok_and(|t| t.trim() == "xen");
            if xen {
                format!(
                    "{p} not found: load the xen-privcmd module \
                     (modprobe xen-privcmd / insmod xen-privcmd.ko)"
                )
            } else {
                format!("{p} not found: not running on keel (no Xen-ABI hypervisor detected)")
            }
        }
        Err(OpenError::Permission(e)) => {
            format!("cannot open {p}: {e}: run keelctl as root in dom0")
        }
        Err(OpenError::Other(e)) => format!("cannot open {p}: {e}"),
    };
    Box::new(NotAvailable { reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_ref_and_flags() {
        assert_eq!(DomainRef::parse("7"), DomainRef::Id(7));
        assert_eq!(DomainRef::parse("+7"), DomainRef::Name("+7".into()));
        assert_eq!(DomainRef::parse("web"), DomainRef::Name("web".into()));
        let s = DomainState {
            running: true,
            paused: true,
            ..Default::default()
        };
        assert_eq!(s.flags(), "r-p---");
    }

    #[test]
    fn missing_privcmd_reason() {
        let dir = std::env::temp_dir().join(format!("keelctl-open-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = Path::new("/nonexistent/keel/privcmd");
        let hv_type = dir.join("type");
        let reason = |hv_type: &Path| open_with(missing, hv_type).list_domains().unwrap_err();
        let not_keel = BackendError::Unavailable(
            "/nonexistent/keel/privcmd not found: not running on keel \
             (no Xen-ABI hypervisor detected)"
                .into(),
        );
        // No /sys/hypervisor/type, or another hypervisor's name.
        assert_eq!(reason(&hv_type), not_keel);
        std::fs::write(&hv_type, "kvm\n").unwrap();
        assert_eq!(reason(&hv_type), not_keel);
        // A Xen-ABI hypervisor without the privcmd driver.
        std::fs::write(&hv_type, "xen\n").unwrap();
        assert_eq!(
            reason(&hv_type),
            BackendError::Unavailable(
                "/nonexistent/keel/privcmd not found: load the xen-privcmd module \
                 (modprobe xen-privcmd / insmod xen-privcmd.ko)"
                    .into()
            )
        );
        // Something that cannot be opened read-write (a directory).
        let e = open_with(&dir, &hv_type).host_info().unwrap_err();
        assert!(
            matches!(&e, BackendError::Unavailable(m) if m.starts_with(&format!("cannot open {}: ", dir.display()))),
            "{e:?}"
        );
        // A file that opens but is no privcmd: the ioctl fails, cleanly.
        let e = open_with(&hv_type, &hv_type).host_info().unwrap_err();
        assert_eq!(
            e,
            BackendError::Failed("xen_version failed: ENOTTY (errno 25)".into())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
