//! The hypervisor backend seam.
//!
//! Every command that needs the hypervisor goes through [`Hypervisor`].
//! Today the only real implementation is [`NotAvailable`]; a privcmd
//! backend (ioctls on `/dev/xen/privcmd`, running in dom0 on keel) will
//! implement the same trait later without touching the CLI code.

use std::fmt;
use std::path::{Path, PathBuf};

use keel_xlcfg::{CpuList, DomainConfig};

/// Where dom0's privcmd device lives.
pub const PRIVCMD_PATH: &str = "/dev/xen/privcmd";
/// Environment variable overriding [`PRIVCMD_PATH`] (used by tests).
pub const PRIVCMD_ENV: &str = "KEELCTL_PRIVCMD";

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
    pub host: String,
    pub hypervisor: String,
    pub version: String,
    pub nr_cpus: u32,
    pub nr_nodes: u32,
    pub total_mem_mib: u64,
    pub free_mem_mib: u64,
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
}

/// The privcmd device path: `$KEELCTL_PRIVCMD` or `/dev/xen/privcmd`.
pub fn privcmd_path() -> PathBuf {
    std::env::var_os(PRIVCMD_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(PRIVCMD_PATH))
}

/// Pick the backend for this host.
pub fn open(privcmd: &Path) -> Box<dyn Hypervisor> {
    let reason = if privcmd.exists() {
        format!(
            "{} exists, but keelctl's privcmd backend is not implemented yet",
            privcmd.display()
        )
    } else {
        format!(
            "{} not found: not running as dom0 on keel",
            privcmd.display()
        )
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
        let b = open(Path::new("/nonexistent/keel/privcmd"));
        let e = b.list_domains().unwrap_err();
        assert_eq!(
            e.to_string(),
            "/nonexistent/keel/privcmd not found: not running as dom0 on keel"
        );
        let b = open(Path::new("/"));
        assert!(b
            .host_info()
            .unwrap_err()
            .to_string()
            .contains("not implemented yet"));
    }
}
