//! The per-domain monitor `keelctl create` leaves behind, as `xl create`
//! leaves a child waiting for its domain's death: when the guest shuts
//! down, it carries out the config's `on_poweroff`, `on_reboot`,
//! `on_crash`, `on_watchdog` or `on_soft_reset` action (destroy, restart,
//! rename-restart, preserve), following the domain through restarts.
//!
//! It watches by polling `getdomaininfo` ([`TICK`]): the domain's
//! `XEN_DOMINF_shutdown` flag and code tell what the guest asked for.
//! Pure decisions ([`action`], [`step`]) are apart from the loop ([`run`])
//! so that they are tested without a hypervisor.

use keel_xen_abi::domctl::{dominf, GetDomainInfo};
use keel_xlcfg::{Action, DomainConfig};

use crate::backend::{BackendError, DomainRef, Hypervisor, Result};
use crate::xen::{Node, XenBackend, XenCall};

/// How often the monitor looks at its domain.
pub const TICK: std::time::Duration = std::time::Duration::from_millis(250);

/// Xen's `SHUTDOWN_*` codes (`sched.h`).
pub use keel_xen_abi::sched::shutdown as code;

/// What the monitor saw of its domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Running, blocked or paused: nothing to do.
    Alive,
    /// Shut down with this `SHUTDOWN_*` code.
    Shutdown(u32),
    /// Being destroyed, or gone.
    Gone,
}

/// What a domain's `getdomaininfo` record says (`None`: no such domain).
pub fn seen(info: Option<&GetDomainInfo>) -> Seen {
    match info {
        None => Seen::Gone,
        Some(d) if d.flags & dominf::DYING != 0 => Seen::Gone,
        Some(d) if d.flags & dominf::SHUTDOWN != 0 => {
            Seen::Shutdown((d.flags >> dominf::SHUTDOWNSHIFT) & dominf::SHUTDOWNMASK)
        }
        Some(_) => Seen::Alive,
    }
}

/// The config's action for shutdown code `code` (`None`: suspend, which
/// is a save's business, not the monitor's).
pub fn action(cfg: &DomainConfig, code: u32) -> Option<Action> {
    Some(match code {
        code::POWEROFF => cfg.on_poweroff,
        code::REBOOT => cfg.on_reboot,
        code::CRASH => cfg.on_crash,
        code::WATCHDOG => cfg.on_watchdog,
        code::SOFT_RESET => cfg.on_soft_reset,
        // Suspend, or a code Xen does not define: left alone.
        _ => return None,
    })
}

/// What the monitor does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Look again after a tick.
    Wait,
    /// Destroy the domain, then stop.
    Destroy,
    /// Destroy it, create it again from the config, follow the new one.
    Restart,
    /// Rename it to the given name and leave it; create a new one.
    RenameRestart(String),
    /// Stop watching (the domain is gone, or preserved as it is).
    Stop(String),
}

/// The decision for what was seen of domain `domid`.
pub fn step(cfg: &DomainConfig, domid: u32, s: Seen) -> Step {
    match s {
        Seen::Alive => Step::Wait,
        Seen::Gone => Step::Stop(format!("domain {domid} is gone")),
        Seen::Shutdown(c) => match action(cfg, c) {
            None => Step::Wait,
            Some(Action::Destroy) => Step::Destroy,
            Some(Action::Restart) => Step::Restart,
            Some(Action::RenameRestart) => Step::RenameRestart(format!("{}-{domid}", cfg.name)),
            Some(Action::Preserve) => {
                Step::Stop(format!("domain {domid} shut down (code {c}): preserved"))
            }
            // No core dumps: the domain goes, or comes back, without one.
            Some(Action::CoredumpDestroy) => Step::Destroy,
            Some(Action::CoredumpRestart) => Step::Restart,
            // A soft reset keeps the domain's memory: not supported, so it
            // is restarted from scratch.
            Some(Action::SoftReset) => Step::Restart,
        },
    }
}

/// Watches domain `domid` built from `cfg` until it is gone or preserved,
/// carrying out its actions; `log` gets a line for each. Returns why it
/// stopped.
pub fn run<T: XenCall>(
    xen: &XenBackend<T>,
    cfg: &DomainConfig,
    mut domid: u32,
    tick: std::time::Duration,
    log: &mut dyn FnMut(String),
) -> Result<String> {
    loop {
        let info = xen.domain_info(domid)?;
        match step(cfg, domid, seen(info.as_ref())) {
            Step::Wait => std::thread::sleep(tick),
            Step::Stop(why) => return Ok(why),
            Step::Destroy => {
                log(format!("domain {domid} shut down: destroying it"));
                xen.destroy(&DomainRef::Id(domid))?;
                return Ok(format!("domain {domid} destroyed"));
            }
            Step::Restart => {
                log(format!("domain {domid} shut down: restarting it"));
                let again = keeping_macs(xen, cfg, domid);
                xen.destroy(&DomainRef::Id(domid))?;
                domid = restart(xen, &again, tick)?;
                log(format!("restarted as domain {domid}"));
            }
            Step::RenameRestart(name) => {
                log(format!(
                    "domain {domid} shut down: renaming it {name}, restarting"
                ));
                xen.store
                    .publish(&[Node {
                        path: format!("/local/domain/{domid}/name"),
                        value: name,
                        perms: vec![],
                    }])
                    .map_err(BackendError::Failed)?;
                domid = crate::domu::create(xen, cfg, false)?.domid as u32;
                log(format!("restarted as domain {domid}"));
            }
        }
    }
}

/// `cfg` with the MAC addresses domain `domid`'s interfaces have where
/// the config gives none: a restarted domain keeps the random ones it
/// was given, as libxl keeps them in the domain's configuration. (A
/// rename-restart leaves the old domain with its interfaces: the new one
/// gets addresses of its own.)
fn keeping_macs<T: XenCall>(xen: &XenBackend<T>, cfg: &DomainConfig, domid: u32) -> DomainConfig {
    let mut c = cfg.clone();
    let Ok(d) = u16::try_from(domid) else {
        return c;
    };
    c.vifs = crate::nics::with_macs(&cfg.vifs, &crate::nics::macs(&*xen.store, d));
    c
}

/// Creates the domain again once the old one has left the table (its
/// name is free again), 10 s at most.
fn restart<T: XenCall>(
    xen: &XenBackend<T>,
    cfg: &DomainConfig,
    tick: std::time::Duration,
) -> Result<u32> {
    for _ in 0..40 {
        if !xen
            .list_domains()?
            .iter()
            .any(|d| d.name == cfg.name && d.domid != 0)
        {
            break;
        }
        std::thread::sleep(tick);
    }
    Ok(crate::domu::create(xen, cfg, false)?.domid as u32)
}

/// Where a monitor writes what it did (as xl's `/var/log/xen/xl-NAME.log`).
pub const LOG_DIR: &str = "/var/log/xen";

/// Starts `exe monitor --config CONFIG DOMID` in the background, in its
/// own session (it outlives the `create` that started it), its output
/// appended to `LOG_DIR/keelctl-DOMID.log`.
pub fn spawn(exe: &std::path::Path, config: &std::path::Path, domid: u32) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    let _ = std::fs::create_dir_all(LOG_DIR);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(format!("{LOG_DIR}/keelctl-{domid}.log"))?;
    std::process::Command::new(exe)
        .arg("monitor")
        .arg("--config")
        .arg(config)
        .arg(domid.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_xen_abi::Pod;

    fn cfg() -> DomainConfig {
        let text = "name = \"web\"\ntype = \"pvh\"\nkernel = \"/k\"\non_poweroff = \"destroy\"\non_reboot = \"restart\"\non_crash = \"preserve\"\non_watchdog = \"rename-restart\"\n";
        keel_xlcfg::parse_str(text, "web.cfg").unwrap().config
    }

    fn info(flags: u32) -> GetDomainInfo {
        GetDomainInfo {
            flags,
            ..GetDomainInfo::zeroed()
        }
    }

    fn shut(code: u32) -> GetDomainInfo {
        info(dominf::SHUTDOWN | (code << dominf::SHUTDOWNSHIFT))
    }

    #[test]
    fn what_is_seen_of_a_domain() {
        assert_eq!(seen(None), Seen::Gone);
        assert_eq!(seen(Some(&info(dominf::RUNNING))), Seen::Alive);
        assert_eq!(seen(Some(&info(dominf::PAUSED))), Seen::Alive);
        assert_eq!(
            seen(Some(&info(dominf::DYING | dominf::SHUTDOWN))),
            Seen::Gone
        );
        assert_eq!(seen(Some(&shut(code::CRASH))), Seen::Shutdown(3));
    }

    #[test]
    fn each_shutdown_code_takes_its_action() {
        let c = cfg();
        let s = |code| step(&c, 7, seen(Some(&shut(code))));
        assert_eq!(s(code::POWEROFF), Step::Destroy);
        assert_eq!(s(code::REBOOT), Step::Restart);
        assert!(matches!(s(code::CRASH), Step::Stop(w) if w.contains("preserved")));
        assert_eq!(s(code::WATCHDOG), Step::RenameRestart("web-7".into()));
        // Defaults as xl's: soft reset restarts; suspend is left alone.
        assert_eq!(s(code::SOFT_RESET), Step::Restart);
        assert_eq!(s(code::SUSPEND), Step::Wait);
        assert_eq!(s(42), Step::Wait);
        assert_eq!(step(&c, 7, Seen::Alive), Step::Wait);
        assert!(matches!(step(&c, 7, Seen::Gone), Step::Stop(_)));
    }

    #[test]
    fn run_carries_out_the_action_on_a_shut_down_domain() {
        use crate::xen::fake::{backend, FakeXen};
        // The fake's d5 shut down with code 3 (crash).
        let b = backend(FakeXen::new());
        let mut c = cfg();
        let mut lines = Vec::new();
        let why = run(&b, &c, 5, TICK, &mut |l| lines.push(l)).unwrap();
        assert!(why.contains("preserved"), "{why}");
        assert!(b.transport().destroyed.borrow().is_empty());
        c.on_crash = Action::Destroy;
        let why = run(&b, &c, 5, TICK, &mut |l| lines.push(l)).unwrap();
        assert_eq!(why, "domain 5 destroyed");
        assert_eq!(*b.transport().destroyed.borrow(), [5]);
        assert_eq!(lines, ["domain 5 shut down: destroying it"]);
        // A domain that is not there: nothing to watch.
        let why = run(&b, &c, 9, TICK, &mut |l| lines.push(l)).unwrap();
        assert!(why.contains("gone"), "{why}");
    }

    /// on_crash=restart with a disk: the crashed domain's disk is taken
    /// down (its loop device unbound), the new domain gets it again.
    #[test]
    fn a_restart_makes_the_disks_again() {
        let s = crate::disks::tests::setup("monitor-restart", &["/srv/web.img,raw,xvda,rw"]);
        let mut c = s.cfg.clone();
        c.on_crash = Action::Restart;
        // The fake's d5 (crashed) has the disk.
        let disks = crate::disks::check(&c.disks, &*s.b.store, &*s.b.host, &[0, 1, 5]).unwrap();
        let mut a = Vec::new();
        crate::disks::add(&*s.b.store, &*s.b.host, 5, &disks, &mut a).unwrap();
        let mut lines = Vec::new();
        let why = run(&s.b, &c, 5, std::time::Duration::ZERO, &mut |l| {
            lines.push(l)
        })
        .unwrap();
        // The new domain (d7) is not in the fake's list: gone at once.
        assert_eq!(why, "domain 7 is gone");
        assert_eq!(
            lines,
            ["domain 5 shut down: restarting it", "restarted as domain 7"]
        );
        assert_eq!(*s.b.transport().destroyed.borrow(), [5]);
        assert_eq!(
            *s.host.log.borrow(),
            [
                "attach 0 /srv/web.img rw",
                "detach 0",
                "attach 0 /srv/web.img rw"
            ]
        );
        assert!(s.store.under("/local/domain/0/backend/vbd/5").is_empty());
        assert_eq!(
            s.store
                .value("/local/domain/0/backend/vbd/7/51712/physical-device")
                .as_deref(),
            Some("7:0")
        );
    }

    /// on_reboot=restart with a network interface without mac=: the new
    /// domain's interface is made again, with the same MAC address.
    #[test]
    fn a_restart_makes_the_interfaces_again_with_their_macs() {
        let s = crate::disks::tests::setup("monitor-vif", &[]);
        s.store.netback.replace(Some(s.host.clone()));
        let mut c = s.cfg.clone();
        c.vifs = vec![keel_xlcfg::parse_vif_spec("bridge=xenbr0").unwrap()];
        c.on_crash = Action::Restart;
        // The fake's d5 (crashed) has the interface, with a MAC of its own.
        let nics = crate::nics::check(&c.vifs, &*s.b.host).unwrap();
        crate::nics::add(&*s.b.store, &*s.b.host, 5, &nics, std::time::Duration::ZERO).unwrap();
        s.store
            .set("/local/domain/0/backend/vif/5/0/mac", "00:16:3e:55:55:55");
        let why = run(&s.b, &c, 5, std::time::Duration::ZERO, &mut |_| {}).unwrap();
        assert_eq!(why, "domain 7 is gone");
        assert_eq!(*s.b.transport().destroyed.borrow(), [5]);
        assert!(s.store.under("/local/domain/0/backend/vif/5").is_empty());
        assert!(s.host.link("vif5.0").is_none());
        let l = s.host.link("vif7.0").unwrap();
        assert_eq!((l.up, l.master.as_deref()), (true, Some("xenbr0")));
        assert_eq!(
            s.store
                .value("/local/domain/0/backend/vif/7/0/mac")
                .as_deref(),
            Some("00:16:3e:55:55:55")
        );
        assert_eq!(
            s.store
                .value("/local/domain/0/backend/vif/7/0/hotplug-status")
                .as_deref(),
            Some("connected")
        );
    }
}
