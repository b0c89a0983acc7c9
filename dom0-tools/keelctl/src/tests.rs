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
            free_pages: 6656 * 256 + 3,
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
pub(crate) fn exec(hv: &dyn Hypervisor, args: &[&str]) -> (i32, String, String) {
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
    // Free memory in whole MiB and to the page.
    assert!(
        out.contains("free_memory           : 6656\nfree_pages            : 1703939\n"),
        "{out}"
    );
    let (_, out, _) = exec(&hv, &["info", "--json"]);
    assert!(
        out.starts_with("{\"host\":\"testhost\",\"hypervisor\":\"keel\""),
        "{out}"
    );
    assert!(
        out.contains("\"free_memory_mib\":6656,\"free_pages\":1703939,"),
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
    // A valid spec gets past the checks to the backend: this fake keeps
    // no disks, so the answer is the trait's default, "not supported"
    // (the real attach is tested in disks.rs).
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
        &["block-list", "x"],
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

/// The Xen-ABI backend ([`crate::xen::XenBackend`]) through `run`, over
/// the fake hypervisor of `crate::xen::fake`.
mod xen_backend {
    use super::*;
    use crate::xen::fake::{backend, FakeXen};

    #[test]
    fn info_list_and_dmesg_through_run() {
        let b = backend(FakeXen::new());
        let (rc, out, _) = exec(&b, &["info"]);
        assert_eq!(rc, EXIT_OK);
        assert!(out.contains("hypervisor            : keel\n"), "{out}");
        assert!(out.contains("keel_version          : 0.1.0\n"), "{out}");
        assert!(
            out.contains("mgmt_abi              : xen 4.17-keel (sysctl 0x15, domctl 0x15)\n"),
            "{out}"
        );
        assert!(
            out.contains("virt_caps             : hvm hap gnttab-v1\n"),
            "{out}"
        );
        assert!(out.contains("scheduler             : credit\n"), "{out}");
        let (rc, out, _) = exec(&b, &["info", "--json"]);
        assert_eq!(rc, EXIT_OK);
        assert!(
            out.starts_with("{\"host\":\"dom0\",\"hypervisor\":\"keel\""),
            "{out}"
        );
        let (rc, out, _) = exec(&b, &["list", "0"]);
        assert_eq!(rc, EXIT_OK);
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(
            out.contains("Domain-0                                     0    256     2   r-----"),
            "{out}"
        );
        let (rc, out, _) = exec(&b, &["dmesg", "-c"]);
        assert_eq!(
            (rc, out.as_str()),
            (EXIT_OK, "(XEN) keel 0.1.0 starting\n(XEN) d0: built\n")
        );
        assert_eq!(exec(&b, &["dmesg"]).1, "");
    }

    #[test]
    fn pause_vcpu_pin_and_sched_credit_through_run() {
        let b = backend(FakeXen::new());
        assert_eq!(exec(&b, &["pause", "1"]).0, EXIT_OK);
        assert_eq!(exec(&b, &["unpause", "1"]).0, EXIT_OK);
        let (rc, _, err) = exec(&b, &["pause", "Domain-0"]);
        assert_eq!(rc, EXIT_ERROR);
        assert!(err.contains("a domain cannot pause itself"), "{err}");
        assert_eq!(exec(&b, &["vcpu-pin", "0", "1", "1"]).0, EXIT_OK);
        let (_, out, _) = exec(&b, &["vcpu-list", "0"]);
        assert!(
            out.lines()
                .any(|l| l.starts_with("Domain-0") && l.ends_with("1 / all")),
            "{out}"
        );
        assert_eq!(
            exec(&b, &["sched-credit", "-d", "1", "-w", "512", "-c", "50"]).0,
            EXIT_OK
        );
        let (rc, out, _) = exec(&b, &["sched-credit", "-d", "1"]);
        assert_eq!(rc, EXIT_OK);
        assert!(
            out.contains("(null)                               1    512   50"),
            "{out}"
        );
        let (rc, _, err) = exec(&b, &["sched-credit", "-w", "5"]);
        assert_eq!(rc, EXIT_ERROR);
        assert!(err.contains("needs -d DOMAIN"), "{err}");
    }

    #[test]
    fn what_the_abi_path_lacks_is_not_supported_and_calls_nothing() {
        let b = backend(FakeXen::new());
        {
            let args = &["mem-set", "1", "1g"][..];
            b.transport().calls.borrow_mut().clear();
            let (rc, out, err) = exec(&b, args);
            assert_eq!((rc, out.as_str()), (EXIT_NOT_SUPPORTED, ""), "{args:?}");
            assert!(
                err.contains("keelctl cannot") && err.contains("through Xen's toolstack ABI yet"),
                "{args:?}: {err}"
            );
            assert!(
                !b.transport()
                    .calls
                    .borrow()
                    .iter()
                    .any(|c| c.starts_with("domctl")),
                "{args:?}"
            );
        }
        // destroy works (domctl destroydomain); dom0 is refused before
        // any call.
        let (rc, _, err) = exec(&b, &["destroy", "1"]);
        assert_eq!(rc, EXIT_OK, "{err}");
        assert_eq!(*b.transport().destroyed.borrow(), [1]);
        let (rc, _, err) = exec(&b, &["destroy", "Domain-0"]);
        assert_eq!(rc, EXIT_ERROR, "{err}");
        assert!(err.contains("cannot be destroyed"), "{err}");
        // shutdown and reboot write control/shutdown in xenstore; without
        // a daemon they say so.
        let (rc, _, err) = exec(&b, &["shutdown", "1"]);
        assert_eq!(rc, EXIT_ERROR);
        assert!(err.contains("no xenstore daemon"), "{err}");
        // A hypervisor that refuses dom0's calls.
        let mut x = FakeXen::new();
        x.privileged = false;
        let (rc, _, err) = exec(&backend(x), &["list"]);
        assert_eq!(rc, EXIT_NOT_SUPPORTED);
        assert!(err.contains("not privileged"), "{err}");
    }

    /// `block-list` prints xl's table from the disks' records.
    #[test]
    fn block_list_through_run() {
        let s = crate::disks::tests::setup("cli-block-list", &[]);
        let disks = crate::disks::check(
            &[keel_xlcfg::parse_disk_spec("/srv/web.img,raw,xvda,rw").unwrap()],
            &*s.b.store,
            &*s.b.host,
            &[0, 1, 5],
        )
        .unwrap();
        crate::disks::add(&*s.b.store, &*s.b.host, 1, &disks, &mut Vec::new()).unwrap();
        s.store.set("/local/domain/1/name", "web");
        let (rc, out, err) = exec(&s.b, &["block-list", "web", "5"]);
        assert_eq!((rc, err.as_str()), (EXIT_OK, ""));
        assert_eq!(
            out,
            "Vdev  BE  handle state evt-ch ring-ref BE-path                       \n\
             51712 0   1      1     -1     -1       /local/domain/0/backend/vbd/1/51712\n"
        );
        let (rc, out, err) = exec(&s.b, &["block-list", "nope"]);
        assert_eq!((rc, out.as_str()), (EXIT_ERROR, ""));
        assert_eq!(err, "keelctl: block-list: domain 'nope' does not exist\n");
        // A backend without disks to list: not supported (exit 3).
        let (rc, _, err) = exec(&Fake::new(), &["block-list", "web01"]);
        assert_eq!(rc, EXIT_NOT_SUPPORTED, "{err}");
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

#[test]
fn shutdown_wait_ends_when_the_domains_are_gone_or_the_time_is_up() {
    let b = crate::xen::fake::backend(crate::xen::fake::FakeXen::new());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut io = Io {
        out: &mut out,
        err: &mut err,
    };
    // d9 does not exist (any more): done at once.
    assert_eq!(
        super::wait_gone(&mut io, &b, &[9], std::time::Duration::ZERO),
        EXIT_OK
    );
    // d1 stays: the limit is reported.
    assert_eq!(
        super::wait_gone(&mut io, &b, &[1, 9], std::time::Duration::ZERO),
        EXIT_ERROR
    );
    let err = String::from_utf8(err).unwrap();
    assert!(err.contains("[1] still there after 0 s"), "{err}");
}

/// `keelctl console`: what it refuses and how it reports the daemon's
/// answers (one test: it sets `$KEEL_CONSOLE_SOCK`).
#[test]
fn console_resolves_the_domain_and_reports_the_daemon() {
    use std::io::{BufRead, BufReader, Write as _};
    let hv = Fake::new();
    let (rc, _, err) = exec(&hv, &["console", "nosuch"]);
    assert_eq!(rc, EXIT_ERROR);
    assert_eq!(err, "keelctl: console: domain 'nosuch' does not exist\n");
    let (rc, _, err) = exec(&hv, &["console", "-t", "serial", "web01"]);
    assert_eq!(rc, EXIT_NOT_SUPPORTED, "{err}");
    let (rc, _, err) = exec(&hv, &["console", "-n", "1", "web01"]);
    assert_eq!(rc, EXIT_NOT_SUPPORTED, "{err}");
    let (rc, _, err) = exec(&hv, &["console", "0"]);
    assert_eq!(rc, EXIT_ERROR);
    assert!(err.contains("Domain-0 has no PV console"), "{err}");

    let dir = std::env::temp_dir().join(format!("keelctl-console-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("console.sock");
    std::env::set_var(keel_consoled::client::SOCKET_ENV, &sock);
    // No daemon.
    let (rc, _, err) = exec(&hv, &["console", "web01"]);
    assert_eq!(rc, EXIT_ERROR);
    assert!(
        err.starts_with(&format!(
            "keelctl: console: cannot reach the console daemon at {}: ",
            sock.display()
        )) && err.ends_with("(is keel-consoled running?)\n"),
        "{err}"
    );
    // A daemon that does not know the domain; the request names it by id.
    let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let th = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        (&s).write_all(b"ERR no console for domain 3\n").unwrap();
        line
    });
    let (rc, _, err) = exec(&hv, &["console", "--timeout", "1", "web01"]);
    assert_eq!(th.join().unwrap(), "ATTACH 3\n");
    assert_eq!(rc, EXIT_ERROR);
    assert_eq!(
        err,
        "keelctl: console: console daemon: no console for domain 3\n"
    );
    std::env::remove_var(keel_consoled::client::SOCKET_ENV);
    let _ = std::fs::remove_dir_all(&dir);
}
