//! The keel backend: [`Hypervisor`] over keel's management hypercall
//! ([`keel_mgmt`]), through any [`MgmtCall`] transport (privcmd in dom0,
//! a fake in tests).

use std::cell::OnceCell;

use keel_mgmt::{dflags, feature, Cmd, DecodeError, DomainEntry, Vendor, ABI_VERSION};
use keel_xlcfg::{CpuList, DomainConfig};

use crate::backend::{
    BackendError, DomainInfo, DomainRef, DomainState, HostInfo, Hypervisor, Result, VcpuInfo,
};

/// A failed management call: the errno of its negative return value (or
/// of the transport itself, e.g. ENOTTY from a device that is not privcmd).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallError {
    pub errno: i32,
}

/// One management hypercall: `cmd` in arg1, `buf` as arg2/arg3, `arg` in
/// arg4. Returns the hypercall's non-negative value.
pub trait MgmtCall {
    fn call(&self, cmd: Cmd, buf: &mut [u8], arg: u64) -> std::result::Result<u64, CallError>;
}

/// Where dom0's host name comes from.
pub const HOSTNAME_PATH: &str = "/proc/sys/kernel/hostname";

/// Records per [`Cmd::DomainList`] call: one 4 KiB buffer.
pub const DOMAIN_LIST_BATCH: usize = 4096 / DomainEntry::SIZE;

fn errno_name(e: i32) -> Option<&'static str> {
    Some(match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENOTTY => "ENOTTY",
        libc::ENOSPC => "ENOSPC",
        libc::ERANGE => "ERANGE",
        libc::ENOSYS => "ENOSYS",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        _ => return None,
    })
}

/// The message for a failed management call.
pub fn call_error(cmd: Cmd, e: CallError) -> BackendError {
    match e.errno {
        libc::ENOSYS => BackendError::Unavailable(
            "the hypervisor is not keel (no keel management hypercall)".into(),
        ),
        libc::EPERM => BackendError::Unavailable(
            "keel refused the management call: this domain is not dom0".into(),
        ),
        n => BackendError::Failed(match errno_name(n) {
            Some(name) => format!("keel management call {cmd:?} failed: {name} (errno {n})"),
            None => format!("keel management call {cmd:?} failed: errno {n}"),
        }),
    }
}

fn version_text(v: u32) -> String {
    format!("{}.{}", keel_mgmt::major(v), keel_mgmt::minor(v))
}

fn version_mismatch(v: u32) -> BackendError {
    BackendError::Unavailable(format!(
        "keel speaks management ABI {}, this keelctl speaks {}: use the keelctl built with this keel",
        version_text(v),
        version_text(ABI_VERSION)
    ))
}

fn not_in_abi(what: &str) -> BackendError {
    BackendError::NotImplemented(format!(
        "keel's management ABI v{} has no command to {what} yet",
        keel_mgmt::major(ABI_VERSION)
    ))
}

/// keel through its management hypercall.
pub struct KeelBackend<T: MgmtCall> {
    mgmt: T,
    /// The host name `info` prints; `None` reads [`HOSTNAME_PATH`].
    pub hostname: Option<String>,
    /// Records per [`Cmd::DomainList`] call.
    pub list_batch: usize,
    /// keel's [`Cmd::Version`] answer, asked once.
    version: OnceCell<u32>,
}

impl<T: MgmtCall> KeelBackend<T> {
    pub fn new(mgmt: T) -> Self {
        KeelBackend {
            mgmt,
            hostname: None,
            list_batch: DOMAIN_LIST_BATCH,
            version: OnceCell::new(),
        }
    }

    pub fn transport(&self) -> &T {
        &self.mgmt
    }

    fn call(&self, cmd: Cmd, buf: &mut [u8], arg: u64) -> Result<u64> {
        self.mgmt
            .call(cmd, buf, arg)
            .map_err(|e| call_error(cmd, e))
    }

    /// keel's ABI version, refusing another major (checked before any
    /// other command).
    fn version(&self) -> Result<u32> {
        if let Some(&v) = self.version.get() {
            return Ok(v);
        }
        let raw = self.call(Cmd::Version, &mut [], 0)?;
        let v = u32::try_from(raw).map_err(|_| {
            BackendError::Failed(format!("keel returned an invalid ABI version {raw:#x}"))
        })?;
        if keel_mgmt::major(v) != keel_mgmt::major(ABI_VERSION) {
            return Err(version_mismatch(v));
        }
        Ok(*self.version.get_or_init(|| v))
    }

    /// Checked size of a reply that must fit `cap`.
    fn reply_len(cmd: Cmd, n: u64, cap: usize) -> Result<usize> {
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= cap)
            .ok_or_else(|| {
                BackendError::Failed(format!(
                    "keel's {cmd:?} reply ({n}) exceeds the buffer ({cap})"
                ))
            })
    }

    fn raw_host_info(&self) -> Result<keel_mgmt::HostInfo> {
        self.version()?;
        let mut buf = [0u8; keel_mgmt::HostInfo::SIZE];
        let n = self.call(Cmd::HostInfo, &mut buf, 0)?;
        let n = Self::reply_len(Cmd::HostInfo, n, buf.len())?;
        keel_mgmt::HostInfo::decode(&buf[..n]).map_err(|e| match e {
            DecodeError::Version(v) => version_mismatch(v),
            e => BackendError::Failed(format!("keel returned a bad HostInfo record: {e}")),
        })
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
}

fn state(flags: u32) -> DomainState {
    DomainState {
        running: flags & dflags::RUNNING != 0,
        blocked: flags & dflags::BLOCKED != 0,
        paused: flags & dflags::PAUSED != 0,
        shutdown: flags & dflags::SHUTDOWN != 0,
        crashed: flags & dflags::CRASHED != 0,
        dying: flags & dflags::DYING != 0,
    }
}

impl<T: MgmtCall> Hypervisor for KeelBackend<T> {
    fn host_info(&self) -> Result<HostInfo> {
        let v = self.version()?;
        let h = self.raw_host_info()?;
        Ok(HostInfo {
            host: self.hostname(),
            hypervisor: "keel".into(),
            version: h.version.as_str().into(),
            mgmt_abi: version_text(v),
            cpu_vendor: Vendor::from_u32(h.vendor).name().into(),
            virt_caps: feature::names(h.hvm_features).map(String::from).collect(),
            nr_cpus: h.nr_cpus,
            nr_nodes: 1,
            tsc_khz: h.tsc_khz,
            total_mem_mib: h.total_bytes >> 20,
            free_mem_mib: h.free_bytes >> 20,
            scheduler: h.scheduler.as_str().into(),
        })
    }

    fn list_domains(&self) -> Result<Vec<DomainInfo>> {
        self.version()?;
        let batch = self.list_batch.max(1);
        let mut buf = vec![0u8; batch * DomainEntry::SIZE];
        let mut out: Vec<DomainInfo> = Vec::new();
        let mut first: u64 = 0;
        loop {
            let n = self.call(Cmd::DomainList, &mut buf, first)?;
            let n = Self::reply_len(Cmd::DomainList, n, batch)?;
            for rec in buf.chunks_exact(DomainEntry::SIZE).take(n) {
                let e = DomainEntry::decode(rec).map_err(|e| {
                    BackendError::Failed(format!("keel returned a bad DomainList record: {e}"))
                })?;
                if u64::from(e.domid) < first || out.last().is_some_and(|l| l.domid >= e.domid) {
                    return Err(BackendError::Failed(format!(
                        "keel's DomainList is out of order (domain {} after id {first})",
                        e.domid
                    )));
                }
                out.push(DomainInfo {
                    name: e.name.as_str().into(),
                    domid: e.domid,
                    mem_kib: e.mem_bytes / 1024,
                    vcpus: e.vcpus,
                    state: state(e.flags),
                    cpu_time_ns: e.cpu_time_ns,
                });
            }
            match out.last() {
                // A full page may have more after it (keel takes a u32).
                Some(last) if n == batch && last.domid < u32::MAX => {
                    first = u64::from(last.domid) + 1
                }
                _ => break,
            }
        }
        Ok(out)
    }

    fn vcpu_list(&self) -> Result<Vec<VcpuInfo>> {
        Err(not_in_abi(
            "list vCPUs ('keelctl list' shows each domain's vCPU count)",
        ))
    }

    fn create_domain(&self, _: &DomainConfig, _: bool) -> Result<u32> {
        Err(not_in_abi("create a domain"))
    }
    fn destroy(&self, _: &DomainRef) -> Result<()> {
        Err(not_in_abi("destroy a domain"))
    }
    fn shutdown(&self, _: &DomainRef) -> Result<()> {
        Err(not_in_abi("shut down a domain"))
    }
    fn reboot(&self, _: &DomainRef) -> Result<()> {
        Err(not_in_abi("reboot a domain"))
    }
    fn pause(&self, _: &DomainRef) -> Result<()> {
        Err(not_in_abi("pause a domain"))
    }
    fn unpause(&self, _: &DomainRef) -> Result<()> {
        Err(not_in_abi("unpause a domain"))
    }
    fn set_memory_target(&self, _: &DomainRef, _: u64) -> Result<()> {
        Err(not_in_abi("change a domain's memory"))
    }
    fn pin_vcpu(
        &self,
        _: &DomainRef,
        _: Option<u32>,
        _: &CpuList,
        _: Option<&CpuList>,
    ) -> Result<()> {
        Err(not_in_abi("pin vCPUs"))
    }

    fn read_console_ring(&self, clear: bool) -> Result<String> {
        let ring = self.raw_host_info()?.console_ring_bytes as usize;
        let mut buf = vec![0u8; ring];
        let flags = if clear { keel_mgmt::CONSOLE_CLEAR } else { 0 };
        let n = self.call(Cmd::ConsoleRead, &mut buf, flags)?;
        let n = Self::reply_len(Cmd::ConsoleRead, n, buf.len())?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}
