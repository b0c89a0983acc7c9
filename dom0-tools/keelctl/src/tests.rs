//! Unit tests driving `run` with an in-memory fake backend.

use std::cell::RefCell;

use clap::Parser;
use keel_xlcfg::{CpuList, DomainConfig};

use super::*;
use crate::backend::*;
use crate::cli::Cli;

/// Test-only backend holding domains in memory and logging calls.
struct Fake {
    domains: RefCell<Vec<DomainInfo>>,
    calls: RefCell<Vec<String>>,
}

impl Fake {
    fn new() -> Fake {
        let dom = |name: &str, domid, mem_mib: u64, vcpus, state, secs: f64| DomainInfo {
            name: name.into(),
            domid,
            mem_kib: mem_mib * 1024,
            vcpus,
            state,
            cpu_time_ns: (secs * 1e9) as u64,
        };
        Fake {
            domains: RefCell::new(vec![
                dom(
                    "Domain-0",
                    0,
                    1024,
                    2,
                    DomainState {
                        running: true,
                        ..Default::default()
                    },
                    123.45,
                ),
                dom(
                    "web01",
                    3,
                    512,
                    4,
                    DomainState {
                        blocked: true,
                        ..Default::default()
                    },
                    7.0,
                ),
                dom(
                    "db \"prod\"",
                    12,
                    8192,
                    8,
                    DomainState {
                        paused: true,
                        ..Default::default()
                    },
                    0.04,
                ),
            ]),
            calls: RefCell::new(Vec::new()),
        }
    }

    fn find(&self, d: &DomainRef) -> Result<u32> {
        self.domains
            .borrow()
            .iter()
            .find(|x| d.matches(x))
            .map(|x| x.domid)
            .ok_or_else(|| BackendError::NoSuchDomain(d.clone()))
    }

    fn log(&self, s: String) {
        self.calls.borrow_mut().push(s);
    }
}

impl Hypervisor for Fake {
    fn list_domains(&self) -> Result<Vec<DomainInfo>> {
        Ok(self.domains.borrow().clone())
    }
    fn host_info(&self) -> Result<HostInfo> {
        Ok(HostInfo {
            host: "testhost".into(),
            hypervisor: "keel".into(),
            version: "0.1".into(),
            mgmt_abi: "1.0".into(),
            cpu_vendor: "GenuineIntel".into(),
            virt_caps: vec!["vmx".into(), "ept".into()],
            nr_cpus: 8,
            nr_nodes: 1,
            tsc_khz: 2_000_000,
            total_mem_mib: 16384,
            free_mem_mib: 6656,
            scheduler: "pinned".into(),
        })
    }
    fn vcpu_list(&self) -> Result<Vec<VcpuInfo>> {
        Ok(vec![
            VcpuInfo {
                domain: "Domain-0".into(),
                domid: 0,
                vcpu: 0,
                cpu: Some(1),
                state: VcpuState::Running,
                cpu_time_ns: 1_500_000_000,
                hard_affinity: "all".into(),
                soft_affinity: "all".into(),
            },
            VcpuInfo {
                domain: "web01".into(),
                domid: 3,
                vcpu: 0,
                cpu: None,
                state: VcpuState::Offline,
                cpu_time_ns: 0,
                hard_affinity: "0-3".into(),
                soft_affinity: "all".into(),
            },
        ])
    }
    fn create_domain(&self, c: &DomainConfig, paused: bool) -> Result<u32> {
        self.log(format!("create {} paused={paused}", c.name));
        Ok(42)
    }
    fn destroy(&self, d: &DomainRef) -> Result<()> {
        let id = self.find(d)?;
        self.domains.borrow_mut().retain(|x| x.domid != id);
        self.log(format!("destroy {id}"));
        Ok(())
    }
    fn shutdown(&self, d: &DomainRef) -> Result<()> {
        let id = self.find(d)?;
        self.log(format!("shutdown {id}"));
        Ok(())
    }
    fn reboot(&self, d: &DomainRef) -> Result<()> {
        let id = self.find(d)?;
        self.log(format!("reboot {id}"));
        Ok(())
    }
    fn pause(&self, d: &DomainRef) -> Result<()> {
        let id = self.find(d)?;
        self.log(format!("pause {id}"));
        Ok(())
    }
    fn unpause(&self, d: &DomainRef) -> Result<()> {
        let id = self.find(d)?;
        self.log(format!("unpause {id}"));
        Ok(())
    }
    fn set_memory_target(&self, d: &DomainRef, kib: u64) -> Result<()> {
        let id = self.find(d)?;
        self.log(format!("mem-set {id} {kib}"));
        Ok(())
    }
    fn pin_vcpu(
        &self,
        d: &DomainRef,
        vcpu: Option<u32>,
        hard: &CpuList,
        soft: Option<&CpuList>,
    ) -> Result<()> {
        let id = self.find(d)?;
        self.log(format!(
            "pin {id} {vcpu:?} {hard} {}",
            soft.map_or("-".into(), |s| s.to_string())
        ));
        Ok(())
    }
    fn read_console_ring(&self, clear: bool) -> Result<String> {
        self.log(format!("dmesg clear={clear}"));
        Ok("(XEN) keel booted\n".into())
    }
}

/// Run `keelctl <args>` against `hv`; returns (rc, stdout, stderr).
fn exec(hv: &dyn Hypervisor, args: &[&str]) -> (i32, String, String) {
    let cli = Cli::try_parse_from(std::iter::once("keelctl").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let rc = run(
        cli.command,
        hv,
        &mut Io {
            out: &mut out,
            err: &mut err,
        },
    );
    (
        rc,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn list_table_matches_xl_columns() {
    let (rc, out, err) = exec(&Fake::new(), &["list"]);
    assert_eq!((rc, err.as_str()), (0, ""));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "Name                                        ID    Mem VCPUs    State    Time(s)",
            "Domain-0                                     0   1024     2   r-----      123.5",
            "web01                                        3    512     4   -b----        7.0",
            "db \"prod\"                                   12   8192     8   --p---        0.0",
        ]
    );
}

#[test]
fn list_filters_and_unknown_domain() {
    let hv = Fake::new();
    let (rc, out, _) = exec(&hv, &["list", "web01", "12"]);
    assert_eq!(rc, 0);
    assert_eq!(out.lines().count(), 3);
    assert!(out.contains("web01") && out.contains("prod") && !out.contains("Domain-0"));
    let (rc, out, err) = exec(&hv, &["list", "nope"]);
    assert_eq!((rc, out.as_str()), (EXIT_ERROR, ""));
    assert_eq!(err, "keelctl: list: domain 'nope' does not exist\n");
}

#[test]
fn list_json() {
    let (rc, out, _) = exec(&Fake::new(), &["list", "--json", "0", "db \"prod\""]);
    assert_eq!(rc, 0);
    assert_eq!(
        out,
        "[{\"name\":\"Domain-0\",\"domid\":0,\"mem_mib\":1024,\"vcpus\":2,\"state\":\"r-----\",\"cpu_time_s\":123.450},\
         {\"name\":\"db \\\"prod\\\"\",\"domid\":12,\"mem_mib\":8192,\"vcpus\":8,\"state\":\"--p---\",\"cpu_time_s\":0.040}]\n"
    );
}

#[test]
fn vcpu_list_and_info() {
    let hv = Fake::new();
    let (rc, out, _) = exec(&hv, &["vcpu-list", "web01"]);
    assert_eq!(rc, 0);
    assert_eq!(out.lines().count(), 2);
    assert!(out.lines().nth(1).unwrap().starts_with("web01"));
    assert!(out.contains("0-3 / all"));
    let (_, out, _) = exec(&hv, &["vcpu-list", "--json"]);
    assert!(out.starts_with(
        "[{\"name\":\"Domain-0\",\"domid\":0,\"vcpu\":0,\"cpu\":1,\"state\":\"running\""
    ));
    assert!(out.contains("\"cpu\":null,\"state\":\"offline\""));
    let (_, out, _) = exec(&hv, &["info"]);
    assert!(out.contains("nr_cpus               : 8\n"), "{out}");
    let (_, out, _) = exec(&hv, &["info", "--json"]);
    assert!(
        out.starts_with("{\"host\":\"testhost\",\"hypervisor\":\"keel\""),
        "{out}"
    );
}

#[test]
fn domain_operations_reach_backend() {
    let hv = Fake::new();
    assert_eq!(exec(&hv, &["pause", "web01"]).0, 0);
    assert_eq!(exec(&hv, &["unpause", "3"]).0, 0);
    assert_eq!(exec(&hv, &["shutdown", "web01"]).0, 0);
    assert_eq!(exec(&hv, &["reboot", "--all"]).0, 0);
    assert_eq!(exec(&hv, &["mem-set", "web01", "512m"]).0, 0);
    assert_eq!(exec(&hv, &["vcpu-pin", "web01", "all", "0-3,^1", "2"]).0, 0);
    assert_eq!(exec(&hv, &["dmesg", "-c"]).1, "(XEN) keel booted\n");
    assert_eq!(exec(&hv, &["destroy", "web01"]).0, 0);
    let (rc, _, err) = exec(&hv, &["destroy", "web01"]);
    assert_eq!(
        (rc, err.as_str()),
        (
            EXIT_ERROR,
            "keelctl: destroy: domain 'web01' does not exist\n"
        )
    );
    assert_eq!(
        *hv.calls.borrow(),
        [
            "pause 3",
            "unpause 3",
            "shutdown 3",
            "reboot 3",
            "reboot 12",
            "mem-set 3 524288",
            "pin 3 None 0-3,^1 2",
            "dmesg clear=true",
            "destroy 3",
        ]
    );
}

#[test]
fn argument_validation_before_backend() {
    let hv = Fake::new();
    let (rc, _, err) = exec(&hv, &["mem-set", "web01", "12q"]);
    assert_eq!(rc, EXIT_ERROR);
    assert!(err.contains("unknown unit 'q'"), "{err}");
    let (rc, _, err) = exec(&hv, &["vcpu-pin", "web01", "0", "3-1"]);
    assert_eq!(rc, EXIT_ERROR);
    assert!(err.contains("reversed"), "{err}");
    let (rc, _, err) = exec(
        &hv,
        &["block-attach", "web01", "/x.img", "raw", "nonsense!"],
    );
    assert_eq!(rc, EXIT_ERROR);
    assert!(
        err.contains("invalid disk spec '/x.img,raw,nonsense!'"),
        "{err}"
    );
    let (rc, _, err) = exec(&hv, &["block-attach", "web01", "phy:/dev/vg/x,xvdb,w"]);
    assert_eq!(rc, EXIT_NOT_SUPPORTED);
    assert!(
        err.starts_with("keelctl: 'block-attach' is not supported yet: "),
        "{err}"
    );
    let (rc, _, err) = exec(&hv, &["network-attach", "web01", "mac=01:00:00:00:00:01"]);
    assert_eq!(rc, EXIT_ERROR);
    assert!(err.contains("multicast"), "{err}");
    assert!(hv.calls.borrow().is_empty());
}

#[test]
fn unavailable_backend_says_not_supported() {
    let hv = NotAvailable {
        reason: "/dev/xen/privcmd not found: not running as dom0 on keel".into(),
    };
    for args in [
        &["list"][..],
        &["info", "--json"],
        &["vcpu-list"],
        &["destroy", "1"],
        &["pause", "x"],
        &["mem-set", "x", "1g"],
        &["dmesg"],
        &["shutdown", "-a"],
    ] {
        let (rc, out, err) = exec(&hv, args);
        assert_eq!(rc, EXIT_NOT_SUPPORTED, "{args:?}");
        assert_eq!(out, "");
        assert_eq!(
            err,
            format!("keelctl: '{}' is not supported yet: /dev/xen/privcmd not found: not running as dom0 on keel\n", args[0])
        );
    }
}

#[test]
fn mem_units() {
    assert_eq!(parse_mem_kib("1024"), Ok(1024));
    assert_eq!(parse_mem_kib("512m"), Ok(512 * 1024));
    assert_eq!(parse_mem_kib("2G"), Ok(2 * 1024 * 1024));
    assert_eq!(parse_mem_kib("1t"), Ok(1 << 30));
    assert_eq!(parse_mem_kib("1000b"), Ok(1));
    assert_eq!(parse_mem_kib("4k"), Ok(4));
    for bad in ["", "m", "0", "-1", "1.5g", "99999999999999999t", "12x"] {
        assert!(parse_mem_kib(bad).is_err(), "{bad}");
    }
}

#[test]
fn create_dry_run_and_fake_create() {
    let dir = std::env::temp_dir().join(format!("keelctl-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("g.cfg");
    std::fs::write(
        &cfg,
        "name='g'\ntype='pvh'\nkernel='/k'\nmemory=64\nvnc=1\n",
    )
    .unwrap();
    let hv = Fake::new();
    let (rc, out, err) = exec(&hv, &["create", "-n", cfg.to_str().unwrap()]);
    assert_eq!(rc, 0, "{err}");
    assert!(
        out.contains("name         g\n") && out.contains("memory       64 MiB"),
        "{out}"
    );
    assert!(err.contains(":5:1: warning: key 'vnc'"), "{err}");
    let (rc, out, _) = exec(&hv, &["create", "-p", "-q", cfg.to_str().unwrap()]);
    assert_eq!((rc, out.as_str()), (0, "Created domain 'g' (id 42)\n"));
    assert_eq!(*hv.calls.borrow(), ["create g paused=true"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// [`KeelBackend`](crate::keel::KeelBackend) over a fake management
/// hypercall that answers like keel, from encoded records.
mod keel_backend {
    use std::cell::{Cell, RefCell};

    use keel_mgmt::{dflags, feature, Cmd, DomainEntry, FixedStr, Vendor, ABI_VERSION};

    use super::exec;
    use crate::backend::{BackendError, Hypervisor};
    use crate::keel::{CallError, KeelBackend, MgmtCall};
    use crate::{EXIT_ERROR, EXIT_NOT_SUPPORTED};

    struct FakeKeel {
        version: u32,
        host: keel_mgmt::HostInfo,
        domains: Vec<DomainEntry>,
        ring: RefCell<Vec<u8>>,
        /// Fail this command with this errno.
        fail: Option<(Cmd, i32)>,
        /// Override a command's return value (to test bad replies).
        lie: Option<(Cmd, u64)>,
        /// (cmd, buffer length, arg) of every call.
        log: RefCell<Vec<(Cmd, usize, u64)>>,
        calls: Cell<usize>,
    }

    fn host() -> keel_mgmt::HostInfo {
        keel_mgmt::HostInfo {
            version: FixedStr::new("0.1.0"),
            vendor: Vendor::Amd as u32,
            hvm_features: feature::SVM | feature::NPT | feature::TAGGED_TLB,
            nr_cpus: 2,
            tsc_khz: 2_994_037,
            total_bytes: (1 << 30) + 12345,
            free_bytes: (700 << 20) + (1 << 20) - 1,
            scheduler: FixedStr::new("pinned"),
            console_ring_bytes: 65536,
        }
    }

    fn dom(domid: u32, flags: u32, vcpus: u32, mem_mib: u64, ns: u64, name: &str) -> DomainEntry {
        DomainEntry {
            domid,
            flags,
            vcpus,
            mem_bytes: mem_mib << 20,
            cpu_time_ns: ns,
            name: FixedStr::new(name),
        }
    }

    fn dom0() -> DomainEntry {
        dom(
            0,
            dflags::RUNNING | dflags::PRIVILEGED,
            2,
            256,
            1_500_000_000,
            "Domain-0",
        )
    }

    impl FakeKeel {
        fn new() -> FakeKeel {
            FakeKeel {
                version: ABI_VERSION,
                host: host(),
                domains: vec![dom0()],
                ring: RefCell::new(b"(XEN) keel 0.1.0 booted\n(XEN) dom0: 2 vCPUs\n".to_vec()),
                fail: None,
                lie: None,
                log: RefCell::new(Vec::new()),
                calls: Cell::new(0),
            }
        }

        fn backend(self) -> KeelBackend<FakeKeel> {
            let mut b = KeelBackend::new(self);
            b.hostname = Some("dom0host".into());
            b
        }
    }

    fn log(b: &KeelBackend<FakeKeel>) -> Vec<(Cmd, usize, u64)> {
        b.transport().log.borrow().clone()
    }

    impl MgmtCall for FakeKeel {
        fn call(&self, cmd: Cmd, buf: &mut [u8], arg: u64) -> Result<u64, CallError> {
            self.log.borrow_mut().push((cmd, buf.len(), arg));
            self.calls.set(self.calls.get() + 1);
            assert!(self.calls.get() < 100, "runaway calls");
            if let Some((c, errno)) = self.fail {
                if c == cmd {
                    return Err(CallError { errno });
                }
            }
            let enospc = Err(CallError {
                errno: keel_mgmt::Errno::ENOSPC.0.into(),
            });
            let ret = match cmd {
                Cmd::Version => {
                    assert!(buf.is_empty());
                    u64::from(self.version)
                }
                Cmd::HostInfo => {
                    let rec = self.host.encode();
                    let Some(dst) = buf.get_mut(..rec.len()) else {
                        return enospc;
                    };
                    dst.copy_from_slice(&rec);
                    rec.len() as u64
                }
                Cmd::DomainList => {
                    let fit = buf.len() / DomainEntry::SIZE;
                    if fit == 0 {
                        return enospc;
                    }
                    let recs: Vec<_> = self
                        .domains
                        .iter()
                        .filter(|d| u64::from(d.domid) >= arg)
                        .take(fit)
                        .collect();
                    for (d, dst) in recs.iter().zip(buf.chunks_exact_mut(DomainEntry::SIZE)) {
                        dst.copy_from_slice(&d.encode());
                    }
                    recs.len() as u64
                }
                Cmd::ConsoleRead => {
                    let mut ring = self.ring.borrow_mut();
                    let n = ring.len().min(buf.len());
                    buf[..n].copy_from_slice(&ring[ring.len() - n..]);
                    if arg & keel_mgmt::CONSOLE_CLEAR != 0 {
                        ring.clear();
                    }
                    n as u64
                }
            };
            Ok(match self.lie {
                Some((c, v)) if c == cmd => v,
                _ => ret,
            })
        }
    }

    #[test]
    fn info_text_and_json() {
        let b = FakeKeel::new().backend();
        let (rc, out, err) = exec(&b, &["info"]);
        assert_eq!((rc, err.as_str()), (0, ""));
        assert_eq!(
            out,
            "host                  : dom0host\n\
             hypervisor            : keel\n\
             keel_version          : 0.1.0\n\
             mgmt_abi              : 1.0\n\
             cpu_vendor            : AuthenticAMD\n\
             virt_caps             : svm npt tagged-tlb\n\
             nr_cpus               : 2\n\
             nr_nodes              : 1\n\
             cpu_mhz               : 2994.037\n\
             tsc_khz               : 2994037\n\
             total_memory          : 1024\n\
             free_memory           : 700\n\
             scheduler             : pinned\n\
             keelctl_version       : 0.1.0\n"
        );
        // Version first, then the record, into a buffer of its size.
        assert_eq!(
            log(&b),
            [
                (Cmd::Version, 0, 0),
                (Cmd::HostInfo, keel_mgmt::HostInfo::SIZE, 0)
            ]
        );
        let (rc, out, _) = exec(&b, &["info", "--json"]);
        assert_eq!(rc, 0);
        assert_eq!(
            out,
            "{\"host\":\"dom0host\",\"hypervisor\":\"keel\",\"keel_version\":\"0.1.0\",\
             \"mgmt_abi\":\"1.0\",\"cpu_vendor\":\"AuthenticAMD\",\
             \"virt_caps\":[\"svm\",\"npt\",\"tagged-tlb\"],\"nr_cpus\":2,\"nr_nodes\":1,\
             \"tsc_khz\":2994037,\"total_memory_mib\":1024,\"free_memory_mib\":700,\
             \"scheduler\":\"pinned\",\"keelctl_version\":\"0.1.0\"}\n"
        );
        // The version is asked once per backend.
        assert_eq!(log(&b).iter().filter(|c| c.0 == Cmd::Version).count(), 1);
    }

    #[test]
    fn info_intel_minor_and_no_features() {
        let mut f = FakeKeel::new();
        f.version = ABI_VERSION | 3;
        f.host.vendor = Vendor::Intel as u32;
        f.host.hvm_features = 0;
        let h = f.backend().host_info().unwrap();
        assert_eq!(
            (h.mgmt_abi.as_str(), h.cpu_vendor.as_str()),
            ("1.3", "GenuineIntel")
        );
        assert!(crate::format::info_text(&h).contains("virt_caps             : (none)\n"));
    }

    #[test]
    fn list_table_and_json() {
        let mut f = FakeKeel::new();
        f.domains.push(dom(
            7,
            dflags::BLOCKED | dflags::PAUSED,
            1,
            64,
            42_000_000,
            "guest \"7\"",
        ));
        let b = f.backend();
        let (rc, out, err) = exec(&b, &["list"]);
        assert_eq!((rc, err.as_str()), (0, ""));
        assert_eq!(
            out,
            "Name                                        ID    Mem VCPUs    State    Time(s)\n\
             Domain-0                                     0    256     2   r-----        1.5\n\
             guest \"7\"                                    7     64     1   -bp---        0.0\n"
        );
        // Fewer records than fit: one call, from domain 0.
        assert_eq!(log(&b), [(Cmd::Version, 0, 0), (Cmd::DomainList, 4096, 0)]);
        let (rc, out, _) = exec(&b, &["list", "--json", "Domain-0"]);
        assert_eq!(rc, 0);
        assert_eq!(
            out,
            "[{\"name\":\"Domain-0\",\"domid\":0,\"mem_mib\":256,\"vcpus\":2,\"state\":\"r-----\",\"cpu_time_s\":1.500}]\n"
        );
    }

    #[test]
    fn list_pages_through_domain_list() {
        let mut f = FakeKeel::new();
        f.domains.push(dom(5, dflags::RUNNING, 1, 32, 0, "five"));
        f.domains
            .push(dom(9, dflags::CRASHED | dflags::DYING, 1, 32, 0, "nine"));
        let mut b = f.backend();
        b.list_batch = 2;
        let d = b.list_domains().unwrap();
        let ids: Vec<u32> = d.iter().map(|d| d.domid).collect();
        assert_eq!(ids, [0, 5, 9]);
        assert_eq!(d[2].name, "nine");
        assert_eq!(d[2].state.flags(), "----cd");
        assert_eq!(
            log(&b),
            [
                (Cmd::Version, 0, 0),
                (Cmd::DomainList, 128, 0),
                (Cmd::DomainList, 128, 6),
            ]
        );
        // A full last page needs one more (empty) call to know it is last.
        let mut f = FakeKeel::new();
        f.domains.push(dom(5, dflags::RUNNING, 1, 32, 0, "five"));
        let mut b = f.backend();
        b.list_batch = 2;
        assert_eq!(b.list_domains().unwrap().len(), 2);
        let args: Vec<u64> = log(&b)[1..].iter().map(|c| c.2).collect();
        assert_eq!(args, [0, 6]);
        // Nothing can follow the last possible id (keel's arg is a u32).
        let mut f = FakeKeel::new();
        f.domains
            .push(dom(u32::MAX, dflags::RUNNING, 1, 32, 0, "last"));
        let mut b = f.backend();
        b.list_batch = 2;
        assert_eq!(b.list_domains().unwrap().len(), 2);
        assert_eq!(log(&b).len(), 2, "{:?}", log(&b));
    }

    #[test]
    fn dmesg_with_and_without_clear() {
        let b = FakeKeel::new().backend();
        let ring = "(XEN) keel 0.1.0 booted\n(XEN) dom0: 2 vCPUs\n";
        assert_eq!(exec(&b, &["dmesg"]), (0, ring.into(), String::new()));
        assert_eq!(exec(&b, &["dmesg", "-c"]), (0, ring.into(), String::new()));
        assert_eq!(exec(&b, &["dmesg"]), (0, String::new(), String::new()));
        let reads: Vec<(Cmd, usize, u64)> = log(&b)
            .into_iter()
            .filter(|c| c.0 == Cmd::ConsoleRead)
            .collect();
        assert_eq!(
            reads,
            [
                (Cmd::ConsoleRead, 65536, 0),
                (Cmd::ConsoleRead, 65536, keel_mgmt::CONSOLE_CLEAR),
                (Cmd::ConsoleRead, 65536, 0),
            ]
        );
        // Invalid UTF-8 is shown, not fatal.
        let f = FakeKeel::new();
        *f.ring.borrow_mut() = b"ok \xff\n".to_vec();
        assert_eq!(
            f.backend().read_console_ring(false).unwrap(),
            "ok \u{fffd}\n"
        );
    }

    #[test]
    fn version_mismatch_is_refused() {
        let mut f = FakeKeel::new();
        f.version = 2 << 16 | 1;
        let b = f.backend();
        for cmd in ["info", "list", "dmesg"] {
            let (rc, out, err) = exec(&b, &[cmd]);
            assert_eq!((rc, out.as_str()), (EXIT_NOT_SUPPORTED, ""));
            assert_eq!(
                err,
                format!(
                    "keelctl: '{cmd}' is not supported yet: keel speaks management ABI 2.1, \
                     this keelctl speaks 1.0: use the keelctl built with this keel\n"
                )
            );
        }
        // Nothing but Version was asked.
        assert!(log(&b).iter().all(|c| c.0 == Cmd::Version));
    }

    #[test]
    fn hypercall_errors() {
        let with = |cmd, errno| {
            let mut f = FakeKeel::new();
            f.fail = Some((cmd, errno));
            f.backend()
        };
        let (rc, _, err) = exec(&with(Cmd::Version, libc::EPERM), &["info"]);
        assert_eq!(
            (rc, err.as_str()),
            (
                EXIT_NOT_SUPPORTED,
                "keelctl: 'info' is not supported yet: keel refused the management call: \
                 this domain is not dom0\n"
            )
        );
        let (rc, _, err) = exec(&with(Cmd::Version, libc::ENOSYS), &["list"]);
        assert_eq!(
            (rc, err.as_str()),
            (
                EXIT_NOT_SUPPORTED,
                "keelctl: 'list' is not supported yet: the hypervisor is not keel \
                 (no keel management hypercall)\n"
            )
        );
        let (rc, _, err) = exec(&with(Cmd::HostInfo, libc::EFAULT), &["dmesg"]);
        assert_eq!(
            (rc, err.as_str()),
            (
                EXIT_ERROR,
                "keelctl: dmesg: keel management call HostInfo failed: EFAULT (errno 14)\n"
            )
        );
        let (rc, _, err) = exec(&with(Cmd::DomainList, 99), &["list"]);
        assert_eq!(
            (rc, err.as_str()),
            (
                EXIT_ERROR,
                "keelctl: list: keel management call DomainList failed: errno 99\n"
            )
        );
    }

    #[test]
    fn bad_replies_are_errors() {
        let mut f = FakeKeel::new();
        f.lie = Some((Cmd::DomainList, 65));
        assert_eq!(
            f.backend().list_domains(),
            Err(BackendError::Failed(
                "keel's DomainList reply (65) exceeds the buffer (64)".into()
            ))
        );
        let mut f = FakeKeel::new();
        f.lie = Some((Cmd::HostInfo, 100));
        assert_eq!(
            f.backend().host_info(),
            Err(BackendError::Failed(
                "keel returned a bad HostInfo record: record too short: 100 bytes, need 160".into()
            ))
        );
        let mut f = FakeKeel::new();
        f.domains.insert(0, dom(3, 0, 1, 1, 0, "late"));
        assert!(matches!(
            f.backend().list_domains(),
            Err(BackendError::Failed(m)) if m.contains("out of order")
        ));
    }

    #[test]
    fn domain_changes_are_not_in_abi_v1() {
        let b = FakeKeel::new().backend();
        for args in [
            &["destroy", "0"][..],
            &["pause", "Domain-0"],
            &["unpause", "0"],
            &["shutdown", "0"],
            &["reboot", "0"],
            &["mem-set", "0", "1g"],
            &["vcpu-pin", "0", "all", "1"],
            &["vcpu-list"],
        ] {
            let (rc, out, err) = exec(&b, args);
            assert_eq!((rc, out.as_str()), (EXIT_NOT_SUPPORTED, ""), "{args:?}");
            assert!(
                err.starts_with(&format!(
                    "keelctl: '{}' is not supported yet: keel's management ABI v1 has no command to ",
                    args[0]
                )) && err.ends_with(" yet\n"),
                "{args:?}: {err}"
            );
        }
        let (_, _, err) = exec(&b, &["destroy", "0"]);
        assert_eq!(
            err,
            "keelctl: 'destroy' is not supported yet: keel's management ABI v1 has no command \
             to destroy a domain yet\n"
        );
        // None of them touched the hypervisor.
        assert!(log(&b).is_empty());
    }

    #[test]
    fn missing_privcmd_through_run() {
        let hv = crate::backend::open_with(
            std::path::Path::new("/nonexistent/keel-unit/privcmd"),
            std::path::Path::new("/nonexistent/keel-unit/type"),
        );
        let (rc, out, err) = exec(hv.as_ref(), &["info"]);
        assert_eq!((rc, out.as_str()), (EXIT_NOT_SUPPORTED, ""));
        assert_eq!(
            err,
            "keelctl: 'info' is not supported yet: /nonexistent/keel-unit/privcmd not found: \
             not running on keel (no Xen-ABI hypervisor detected)\n"
        );
    }
}
