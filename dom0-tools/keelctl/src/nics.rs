//! A domain's network interfaces, end to end, as `xl` and Xen's
//! `vif-bridge` hotplug script serve them, so that dom0's unmodified
//! xen-netback and the guest's xen-netfront connect; keelctl does the
//! script's work itself (no udev, no script run):
//!
//! * [`check`], before the domain exists: device ids (as libxl: a spec's
//!   `devid=`, the others one past the highest), a MAC address for each
//!   (the spec's, or a random one in Xen's 00:16:3e range, as
//!   [`devices::default_mac`]), and what keelctl cannot honour refused:
//!   what [`devices::vif_records`] refuses (`type=ioemu`), a backend
//!   domain other than dom0, a hotplug script other than `vif-bridge`,
//!   a bridge or `vifname` Linux would not take as an interface name,
//!   a `vifname` already in use. `model=` (the emulated NIC's model) is
//!   ignored for a PV interface, as libxl ignores it;
//! * [`add`], once the domain's own records are written and before it
//!   runs: every interface's records in one transaction; then for each,
//!   a wait for netback to take the backend up (its interface
//!   `vif<domid>.<devid>` there and the backend in InitWait), and what
//!   `vif-bridge online` does: the interface renamed to `vifname` if the
//!   spec has one (as vif-common.sh), the bridge made (and brought up) if
//!   there is none, the interface made a port of it and brought up, and
//!   `hotplug-status` = `connected`, which netback waits for before it
//!   connects. [`undo`] takes the records back when a later step fails
//!   (netback frees the interfaces; a bridge made stays);
//! * [`remove_all`], when the domain is destroyed: libxl's forced
//!   removal; the interface leaves its bridge when netback frees it;
//! * [`plug`] and [`unplug`], on a running domain (`network-attach`,
//!   `network-detach`): one interface added as at create, or taken away
//!   as libxl does, asking the guest first ([`crate::teardown`]);
//! * [`list`]: what `xl network-list` shows.

use std::time::{Duration, Instant};

use keel_xlcfg::{MacAddr, VifSpec};

use crate::backend::NicInfo;
use crate::devices::{self, DeviceRecords, XenbusState};
use crate::hotplug::Host;
use crate::netdev;
use crate::teardown::{self, Device};
use crate::xen::Xenstore;

/// The domain whose netback serves the interfaces: dom0.
pub const BACKEND_DOMID: u16 = 0;
/// How often the waits look.
const POLL: Duration = Duration::from_millis(50);
/// dom0's vif backends: `<frontend domid>/<devid>` below.
const BACKEND_ROOT: &str = "/local/domain/0/backend/vif";

/// A network interface of a configuration, checked ([`check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub spec: VifSpec,
    /// The device id (`handle`).
    pub devid: u32,
    pub mac: MacAddr,
    /// The bridge it joins.
    pub bridge: String,
}

fn is_bridge_script(s: &str) -> bool {
    s == devices::DEFAULT_VIF_SCRIPT
        || s == format!("{}/{}", devices::SCRIPT_DIR, devices::DEFAULT_VIF_SCRIPT)
}

/// Device ids as libxl gives them at create: a spec's `devid=`, the
/// others one past the highest so far, in order.
fn devids(specs: &[VifSpec]) -> Result<Vec<u32>, String> {
    let mut last: Option<u32> = specs.iter().filter_map(|s| s.devid).max();
    let mut out: Vec<u32> = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let id = match s.devid {
            Some(d) => d,
            None => {
                let d = last.map_or(0, |l| l + 1);
                last = Some(d);
                d
            }
        };
        if out.contains(&id) {
            return Err(format!(
                "vif {i}: devid={id} is also another interface's: each needs a devid of its own"
            ));
        }
        out.push(id);
    }
    Ok(out)
}

/// Checks the interfaces of a domain about to be made, before it
/// exists; random MAC addresses come from `host`.
pub fn check(specs: &[VifSpec], host: &dyn Host) -> Result<Vec<Nic>, String> {
    let ids = devids(specs)?;
    let mut out: Vec<Nic> = Vec::new();
    for (spec, devid) in specs.iter().zip(ids) {
        let nic = check_one(spec, devid, host)?;
        if let Some(n) = &spec.vifname {
            if out.iter().any(|o| o.spec.vifname.as_ref() == Some(n)) {
                return Err(format!(
                    "vif {devid}: vifname={n} is also another interface's"
                ));
            }
        }
        out.push(nic);
    }
    Ok(out)
}

fn check_one(spec: &VifSpec, devid: u32, host: &dyn Host) -> Result<Nic, String> {
    let mac = match spec.mac {
        Some(m) => m,
        None => {
            let mut r = [0u8; 3];
            host.random_bytes(&mut r)
                .map_err(|e| format!("vif {devid}: a random MAC address: {e}"))?;
            devices::default_mac(r)
        }
    };
    // type=ioemu, a devid mismatch: any frontend will do.
    devices::vif_records(BACKEND_DOMID, 1, devid, spec, mac)?;
    if let Some(b) = spec
        .backend
        .as_deref()
        .filter(|b| !matches!(*b, "0" | "Domain-0"))
    {
        return Err(format!(
            "vif {devid}: backend={b} is not supported: keelctl serves interfaces from dom0's netback only (no driver domains)"
        ));
    }
    if let Some(s) = spec.script.as_deref().filter(|s| !is_bridge_script(s)) {
        return Err(format!(
            "vif {devid}: script={s} is not supported: keelctl does the vif-bridge script's work itself (bridged interfaces only) and runs no hotplug script"
        ));
    }
    let bridge = spec
        .bridge
        .clone()
        .unwrap_or_else(|| devices::DEFAULT_BRIDGE.to_string());
    netdev::valid_name(&bridge).map_err(|e| format!("vif {devid}: bridge={bridge}: {e}"))?;
    if host.net_exists(&bridge) && !host.is_bridge(&bridge) {
        return Err(format!(
            "vif {devid}: bridge={bridge}: dom0's interface {bridge} is not a bridge"
        ));
    }
    if let Some(n) = &spec.vifname {
        netdev::valid_name(n).map_err(|e| format!("vif {devid}: vifname={n}: {e}"))?;
        if host.net_exists(n) {
            return Err(format!(
                "vif {devid}: vifname={n}: dom0 has an interface of that name already"
            ));
        }
    }
    Ok(Nic {
        spec: spec.clone(),
        devid,
        mac,
        bridge,
    })
}

/// The records of interface `n` of domain `domid`.
pub fn records(domid: u16, n: &Nic) -> Result<DeviceRecords, String> {
    devices::vif_records(BACKEND_DOMID, domid, n.devid, &n.spec, n.mac)
}

/// The directories of interface `devid` of domain `domid`: libxl's, the
/// frontend's, the backend's.
pub fn roots(domid: u16, devid: u32) -> [String; 3] {
    [
        format!("/libxl/{domid}/device/vif/{devid}"),
        format!("/local/domain/{domid}/device/vif/{devid}"),
        format!("{BACKEND_ROOT}/{domid}/{devid}"),
    ]
}

/// The name netback gives interface `devid` of domain `domid`.
pub fn netback_name(domid: u16, devid: u32) -> String {
    format!("vif{domid}.{devid}")
}

/// Writes the records of `nics` for domain `domid` in one transaction
/// (after clearing what an earlier domain with this id may have left),
/// then brings each online as `vif-bridge` does ([`online`]), waiting
/// at most `timeout` for netback each.
pub fn add(
    store: &dyn Xenstore,
    host: &dyn Host,
    domid: u16,
    nics: &[Nic],
    timeout: Duration,
) -> Result<(), String> {
    if nics.is_empty() {
        return Ok(());
    }
    let mut all = Vec::new();
    let mut recs = Vec::new();
    for n in nics {
        let r = records(domid, n)?;
        all.extend(r.nodes());
        recs.push(r);
    }
    let stale: Vec<String> = nics.iter().flat_map(|n| roots(domid, n.devid)).collect();
    store
        .remove(&stale)
        .and_then(|()| store.publish(&all))
        .map_err(|e| format!("writing the network interfaces' records: {e}"))?;
    for (n, r) in nics.iter().zip(&recs) {
        online(store, host, domid, n, r, timeout)?;
    }
    Ok(())
}

/// Waits for netback to take up interface `n`'s backend: its interface
/// there and the backend in InitWait (or later). Fails early when
/// netback gives up on it (Closing or Closed, with its `error` node).
fn wait_for_netback(
    store: &dyn Xenstore,
    host: &dyn Host,
    domid: u16,
    n: &Nic,
    r: &DeviceRecords,
    timeout: Duration,
) -> Result<String, String> {
    let dev = netback_name(domid, n.devid);
    let be = &r.backend_path;
    let t0 = Instant::now();
    loop {
        let state = store
            .read(&format!("{be}/state"))
            .map_err(|e| format!("vif {} of domain {domid}: reading {be}: {e}", n.devid))?;
        let st = state.as_deref().map(XenbusState::parse);
        match st {
            Some(Ok(XenbusState::Closing | XenbusState::Closed)) => {
                let err = store
                    .read(&format!(
                        "/local/domain/{BACKEND_DOMID}/error{}/error",
                        be.strip_prefix(&format!("/local/domain/{BACKEND_DOMID}"))
                            .unwrap_or(be)
                    ))
                    .ok()
                    .flatten()
                    .map_or(String::new(), |e| format!(": {e}"));
                return Err(format!(
                    "vif {} of domain {domid}: netback gave up on {be} (state {}){err}",
                    n.devid,
                    state.unwrap_or_default()
                ));
            }
            Some(Ok(s)) if s >= XenbusState::InitWait && host.net_exists(&dev) => return Ok(dev),
            _ => {}
        }
        if t0.elapsed() >= timeout {
            let state = state.unwrap_or_else(|| "none".into());
            let secs = timeout.as_secs_f64();
            let has_dev = host.net_exists(&dev);
            return Err(if has_dev {
                format!(
                    "vif {} of domain {domid}: interface {dev} is there but netback left {be} in state {state} (not 2, InitWait) for {secs:.1} s",
                    n.devid
                )
            } else {
                format!(
                    "vif {} of domain {domid}: no interface {dev} in dom0 after {secs:.1} s ({be} in state {state}): is xen-netback loaded in dom0 (modprobe xen-netback)?",
                    n.devid
                )
            });
        }
        std::thread::sleep(POLL);
    }
}

/// What `vif-bridge online` does for interface `n` once netback has
/// made it, then `hotplug-status` = `connected`.
fn online(
    store: &dyn Xenstore,
    host: &dyn Host,
    domid: u16,
    n: &Nic,
    r: &DeviceRecords,
    timeout: Duration,
) -> Result<(), String> {
    let mut dev = wait_for_netback(store, host, domid, n, r, timeout)?;
    let what = |s: String| format!("vif {} of domain {domid}: {s}", n.devid);
    if let Some(name) = &n.spec.vifname {
        host.link_rename(&dev, name)
            .map_err(|e| what(format!("renaming {dev} to {name}: {e}")))?;
        dev = name.clone();
    }
    let br = &n.bridge;
    if !host.net_exists(br) {
        match host.bridge_create(br) {
            Ok(()) => {}
            // Someone else made it meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => {
                return Err(what(format!(
                    "creating bridge {br}: {e} (is the bridge module loaded in dom0?)"
                )))
            }
        }
        host.link_up(br)
            .map_err(|e| what(format!("bringing bridge {br} up: {e}")))?;
    } else if !host.is_bridge(br) {
        return Err(what(format!("dom0's interface {br} is not a bridge")));
    }
    if !host.is_bridge_port(br, &dev) {
        host.bridge_add_port(br, &dev)
            .map_err(|e| what(format!("adding {dev} to bridge {br}: {e}")))?;
    }
    host.link_up(&dev)
        .map_err(|e| what(format!("bringing {dev} up: {e}")))?;
    store
        .publish(&[r.hotplug_connected()])
        .map_err(|e| what(format!("writing hotplug-status: {e}")))
}

/// Takes back what [`add`] did: the interfaces' records (netback frees
/// the interfaces; a bridge made stays, as `vif-bridge offline` leaves
/// it).
pub fn undo(store: &dyn Xenstore, domid: u16, nics: &[Nic]) {
    if nics.is_empty() {
        return;
    }
    let r: Vec<String> = nics.iter().flat_map(|n| roots(domid, n.devid)).collect();
    let _ = store.remove(&r);
    teardown::remove_if_empty(store, &format!("{BACKEND_ROOT}/{domid}"));
}

/// The device ids of domain `domid`'s interfaces: from libxl's records
/// and the backends'.
fn domain_devids(store: &dyn Xenstore, domid: u16) -> Vec<u32> {
    let mut v: Vec<u32> = [
        format!("/libxl/{domid}/device/vif"),
        format!("{BACKEND_ROOT}/{domid}"),
    ]
    .iter()
    .flat_map(|p| store.directory(p).unwrap_or_default())
    .filter_map(|n| n.parse().ok())
    .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Has domain `domid` any network interface records?
pub fn has_nics(store: &dyn Xenstore, domid: u16) -> bool {
    !domain_devids(store, domid).is_empty()
}

/// The MAC addresses domain `domid`'s interfaces have, by device id
/// (from its backends' `mac`): a restart keeps them, as libxl keeps the
/// ones it made up in the domain's configuration.
pub fn macs(store: &dyn Xenstore, domid: u16) -> Vec<(u32, MacAddr)> {
    domain_devids(store, domid)
        .into_iter()
        .filter_map(|d| {
            let v = store
                .read(&format!("{BACKEND_ROOT}/{domid}/{d}/mac"))
                .ok()??;
            Some((d, MacAddr::parse(&v).ok()?))
        })
        .collect()
}

/// `specs` with the MAC addresses `macs` ([`macs`]) given to those
/// without one, matched by device id as [`check`] gives them.
pub fn with_macs(specs: &[VifSpec], macs: &[(u32, MacAddr)]) -> Vec<VifSpec> {
    let ids = devids(specs).unwrap_or_default();
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut s = s.clone();
            if s.mac.is_none() {
                let id = ids.get(i).copied();
                s.mac = macs.iter().find(|(d, _)| Some(*d) == id).map(|m| m.1);
            }
            s
        })
        .collect()
}

/// Interface `devid` of domain `domid`, to be taken away.
fn closing(store: &dyn Xenstore, domid: u16, devid: u32) -> Device {
    Device::new(
        store,
        format!("vif {devid} of domain {domid}"),
        "netback",
        roots(domid, devid),
    )
}

/// Takes every interface of domain `domid` away, as libxl does when it
/// destroys a domain (forced: [`teardown::remove_forced`]); netback,
/// which closes when it sees the frontend gone, frees the interface,
/// which leaves its bridge. Whatever fails is a `warn`; the rest goes
/// on. The bridge stays.
pub fn remove_all(store: &dyn Xenstore, domid: u16, timeout: Duration, warn: &dyn Fn(String)) {
    let devs: Vec<Device> = domain_devids(store, domid)
        .into_iter()
        .map(|devid| closing(store, domid, devid))
        .collect();
    teardown::remove_forced(store, &devs, timeout, warn);
    teardown::remove_if_empty(store, &format!("{BACKEND_ROOT}/{domid}"));
}

/// `network-attach`: interface `spec` for running domain `domid`: the
/// spec's `devid=` (refused when the domain has that one) or one past
/// the highest it has (as `libxl__device_nextid`), checked as [`check`]
/// does, then added and brought online ([`add`], at most `timeout` for
/// netback); the guest's netfront connects by itself. Returns it.
pub fn plug(
    store: &dyn Xenstore,
    host: &dyn Host,
    domid: u16,
    spec: &VifSpec,
    timeout: Duration,
) -> Result<Nic, String> {
    let have = domain_devids(store, domid);
    let devid = match spec.devid {
        Some(d) if have.contains(&d) => {
            return Err(format!(
                "vif {d}: domain {domid} has an interface {d} already: detach it first or choose another devid"
            ))
        }
        Some(d) => d,
        None => have.last().map_or(0, |l| l + 1),
    };
    let nic = check_one(spec, devid, host)?;
    if let Err(e) = add(store, host, domid, std::slice::from_ref(&nic), timeout) {
        undo(store, domid, std::slice::from_ref(&nic));
        return Err(e);
    }
    Ok(nic)
}

/// Which interface `network-detach` takes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Devid(u32),
    Mac(MacAddr),
}

impl Which {
    /// A device id or a MAC address, as `xl network-detach` takes them.
    pub fn parse(s: &str) -> Result<Which, String> {
        if s.contains(':') {
            return MacAddr::parse(s)
                .map(Which::Mac)
                .map_err(|e| format!("invalid MAC address '{s}': {e}"));
        }
        s.parse()
            .map(Which::Devid)
            .map_err(|_| format!("invalid interface '{s}': a device id (0, 1...) or a MAC address"))
    }
}

/// `network-detach`: takes interface `which` away from running domain
/// `domid`, asking the guest first ([`teardown::remove_live`]): one the
/// guest does not let go of within `timeout` stays and is an error.
pub fn unplug(
    store: &dyn Xenstore,
    domid: u16,
    which: Which,
    timeout: Duration,
) -> Result<(), String> {
    let devid = match which {
        Which::Devid(d) if domain_devids(store, domid).contains(&d) => d,
        Which::Devid(d) => return Err(format!("domain {domid} has no interface {d}")),
        Which::Mac(m) => macs(store, domid)
            .into_iter()
            .find(|(_, mac)| *mac == m)
            .map(|(d, _)| d)
            .ok_or_else(|| format!("domain {domid} has no interface with MAC address {m}"))?,
    };
    let d = closing(store, domid, devid);
    teardown::remove_live(store, &d, &format!("vif {devid}"), timeout)?;
    teardown::remove_if_empty(store, &format!("{BACKEND_ROOT}/{domid}"));
    Ok(())
}

/// Domain `domid`'s interfaces as `xl network-list` finds them
/// (`libxl_device_nic_list`, `libxl_device_nic_getinfo`): one per
/// `/libxl/<domid>/device/vif/<devid>` with a `backend`, in device id
/// order; the MAC from libxl's copy, state, event channel and ring
/// references from the frontend (-1 where it has none yet).
pub fn list(store: &dyn Xenstore, domid: u16) -> Result<Vec<NicInfo>, String> {
    let dir = format!("/libxl/{domid}/device/vif");
    let mut ids: Vec<u32> = store
        .directory(&dir)?
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    ids.sort_unstable();
    let mut out = Vec::new();
    for devid in ids {
        let Some(backend) = store.read(&format!("{dir}/{devid}/backend"))? else {
            continue;
        };
        let Some(backend_id) = devices::backend_domid(&backend) else {
            continue;
        };
        let mac = store
            .read(&format!("{dir}/{devid}/mac"))?
            .and_then(|m| MacAddr::parse(&m).ok())
            .unwrap_or(MacAddr([0; 6]));
        let fe = format!("/local/domain/{domid}/device/vif/{devid}");
        let num = |k: &str| -> Result<i64, String> {
            Ok(store
                .read(&format!("{fe}/{k}"))?
                .map_or(-1, |v| devices::c_int(&v)))
        };
        out.push(NicInfo {
            devid,
            backend_id,
            mac,
            state: num("state")?,
            evtch: num("event-channel")?,
            tx_ring_ref: num("tx-ring-ref")?,
            rx_ring_ref: num("rx-ring-ref")?,
            backend_path: backend,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{BackendError, DomainRef, Hypervisor};
    use crate::disks::tests::{setup, Setup};
    use keel_xlcfg::parse_vif_spec;

    fn vifs(specs: &[&str]) -> Vec<VifSpec> {
        specs
            .iter()
            .map(|v| parse_vif_spec(v).unwrap_or_else(|e| panic!("{v}: {e}")))
            .collect()
    }

    /// The disks' setup, with a netback in dom0 and bridge xenbr0 (up).
    fn net_setup(tag: &str, specs: &[&str]) -> Setup {
        let mut s = setup(tag, &[]);
        s.cfg.vifs = vifs(specs);
        s.store.netback.replace(Some(s.host.clone()));
        s.host.add_link("xenbr0", true, true);
        s
    }

    fn log(s: &Setup) -> Vec<String> {
        s.host.log.borrow().clone()
    }

    /// The value of `key` in the backend of domain `d`'s interface `devid`.
    fn be(s: &Setup, d: u16, devid: u32, key: &str) -> Option<String> {
        s.store
            .value(&format!("/local/domain/0/backend/vif/{d}/{devid}/{key}"))
    }

    #[test]
    fn create_puts_the_interfaces_on_their_bridges_before_the_domain_runs() {
        let s = net_setup(
            "vif-create",
            &["bridge=xenbr0,mac=00:16:3e:01:02:03", "bridge=br-lan"],
        );
        let c = crate::domu::create(&s.b, &s.cfg, false).unwrap();
        assert_eq!(c.domid, 7);
        // xenbr0 is there: only the port; br-lan is made and brought up.
        assert_eq!(
            log(&s),
            [
                "addif xenbr0 vif7.0",
                "up vif7.0",
                "addbr br-lan",
                "up br-lan",
                "addif br-lan vif7.1",
                "up vif7.1"
            ]
        );
        for (dev, br) in [("vif7.0", "xenbr0"), ("vif7.1", "br-lan")] {
            let l = s.host.link(dev).unwrap();
            assert!(l.up, "{dev}");
            assert_eq!(l.master.as_deref(), Some(br), "{dev}");
        }
        assert!(s.host.link("br-lan").unwrap().is_bridge);
        for (k, v) in [
            ("mac", "00:16:3e:01:02:03"),
            ("bridge", "xenbr0"),
            ("handle", "0"),
            ("script", "/etc/xen/scripts/vif-bridge"),
            ("frontend", "/local/domain/7/device/vif/0"),
            ("hotplug-status", "connected"),
            ("state", "2"),
        ] {
            assert_eq!(be(&s, 7, 0, k).as_deref(), Some(v), "{k}");
        }
        // No mac=: Xen's OUI, the fake's random bytes a1 a2 a3 with the
        // top bit of the first cleared.
        assert_eq!(be(&s, 7, 1, "mac").as_deref(), Some("00:16:3e:21:a2:a3"));
        assert_eq!(
            s.store.value("/local/domain/7/device/vif/1/mac").as_deref(),
            Some("00:16:3e:21:a2:a3")
        );
        assert_eq!(be(&s, 7, 1, "handle").as_deref(), Some("1"));
        assert_eq!(be(&s, 7, 1, "hotplug-status").as_deref(), Some("connected"));
        // Both in one transaction (hotplug-status empty there), after the
        // domain's introduction; each connected, then the unpause.
        let batches = s.store.batches.borrow();
        let recs = batches
            .iter()
            .position(|b| b.iter().any(|n| n.path.contains("/backend/vif/")))
            .unwrap();
        for devid in [0, 1] {
            let hp = format!("/local/domain/0/backend/vif/7/{devid}/hotplug-status");
            assert!(
                batches[recs]
                    .iter()
                    .any(|n| n.path == hp && n.value.is_empty()),
                "{hp}"
            );
        }
        let connected: Vec<usize> = batches
            .iter()
            .enumerate()
            .filter(|(_, b)| {
                b.len() == 1 && b[0].path.ends_with("/hotplug-status") && b[0].value == "connected"
            })
            .map(|(i, _)| i)
            .collect();
        assert_eq!(connected, [recs + 1, recs + 2]);
        let ev = s.store.events.borrow();
        let at = |e: &str| {
            ev.iter()
                .position(|x| x == e)
                .unwrap_or_else(|| panic!("{e}: {ev:?}"))
        };
        assert!(at("introduce 7") < at(&format!("publish #{recs}")));
        assert!(at(&format!("publish #{}", recs + 2)) < at("unpause"));
        assert!(s.b.transport().destroyed.borrow().is_empty());
    }

    #[test]
    fn a_vifname_is_the_interface_s_name() {
        let s = net_setup("vif-name", &["vifname=web0"]);
        crate::domu::create(&s.b, &s.cfg, true).unwrap();
        assert_eq!(
            log(&s),
            ["rename vif7.0 web0", "addif xenbr0 web0", "up web0"]
        );
        assert!(s.host.link("vif7.0").is_none());
        assert_eq!(be(&s, 7, 0, "vifname").as_deref(), Some("web0"));
        assert_eq!(be(&s, 7, 0, "hotplug-status").as_deref(), Some("connected"));
        // A port already: not added twice.
        let s = net_setup("vif-port", &[""]);
        s.host.add_link("vif7.0", false, false);
        s.host.links.borrow_mut().get_mut("vif7.0").unwrap().master = Some("xenbr0".into());
        // The fake netback re-adds it (a fresh, down one) only if missing.
        s.store.netback.replace(None);
        s.store.set("/local/domain/0/backend/vif/7/0/state", "2");
        let nics = check(&s.cfg.vifs, &*s.b.host).unwrap();
        let r = records(7, &nics[0]).unwrap();
        online(&*s.b.store, &*s.b.host, 7, &nics[0], &r, Duration::ZERO).unwrap();
        assert_eq!(log(&s), ["up vif7.0"]);
    }

    #[test]
    fn no_netback_fails_in_bounded_time_and_leaves_nothing() {
        let s = net_setup("vif-nonetback", &["bridge=xenbr0"]);
        s.store.netback.replace(None);
        let t0 = Instant::now();
        let e = crate::domu::create(&s.b, &s.cfg, false).unwrap_err();
        assert!(t0.elapsed() >= Duration::from_millis(150));
        assert!(
            e.to_string().contains(
                "d7: vif 0 of domain 7: no interface vif7.0 in dom0 after 0.1 s (/local/domain/0/backend/vif/7/0 in state 1): is xen-netback loaded in dom0 (modprobe xen-netback)?"
            ),
            "{e}"
        );
        assert_eq!(*s.b.transport().destroyed.borrow(), [7]);
        assert!(!s.b.transport().domu.borrow().unpaused);
        assert!(s.store.under("/local/domain/0/backend/vif/7").is_empty());
        assert!(s.store.under("/local/domain/7").is_empty());
        assert!(s.store.under("/libxl/7").is_empty());
        assert!(log(&s).is_empty());
        // A netback that gave up on the device: said at once, with its
        // error.
        let s = net_setup("vif-fatal", &[""]);
        s.store.netback.replace(None);
        let nics = check(&s.cfg.vifs, &*s.b.host).unwrap();
        let r = records(7, &nics[0]).unwrap();
        s.store.set(&format!("{}/state", r.backend_path), "5");
        s.store.set(
            "/local/domain/0/error/backend/vif/7/0/error",
            "2 reading script",
        );
        let t0 = Instant::now();
        let e = online(
            &*s.b.store,
            &*s.b.host,
            7,
            &nics[0],
            &r,
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(1));
        assert_eq!(
            e,
            "vif 0 of domain 7: netback gave up on /local/domain/0/backend/vif/7/0 (state 5): 2 reading script"
        );
    }

    #[test]
    fn a_later_failure_takes_the_interfaces_back() {
        let s = net_setup("vif-undo", &["", "bridge=br-lan"]);
        *s.host.refuse_link.borrow_mut() = Some("vif7.1".into());
        let e = crate::domu::create(&s.b, &s.cfg, false).unwrap_err();
        assert!(
            e.to_string()
                .contains("d7: vif 1 of domain 7: adding vif7.1 to bridge br-lan: "),
            "{e}"
        );
        assert_eq!(*s.b.transport().destroyed.borrow(), [7]);
        assert!(!s.b.transport().domu.borrow().unpaused);
        for gone in [
            "/local/domain/0/backend/vif/7",
            "/local/domain/7",
            "/libxl/7",
        ] {
            assert!(s.store.under(gone).is_empty(), "{gone}");
        }
        // netback freed both interfaces; the bridge made stays.
        assert!(s.host.link("vif7.0").is_none());
        assert!(s.host.link("vif7.1").is_none());
        assert!(s.host.link("br-lan").is_some());
    }

    #[test]
    fn refusals() {
        let s = net_setup("vif-refuse", &[]);
        s.host.add_link("eth0", false, true);
        for (specs, want) in [
            (
                &["type=ioemu"][..],
                "vif 0: type=ioemu is an emulated NIC",
            ),
            (
                &["backend=netdom"],
                "vif 0: backend=netdom is not supported: keelctl serves interfaces from dom0's netback only",
            ),
            (
                &["script=vif-route"],
                "vif 0: script=vif-route is not supported",
            ),
            (
                &["script=/etc/xen/scripts/vif-nat"],
                "script=/etc/xen/scripts/vif-nat is not supported",
            ),
            (
                &["bridge=a-bridge-too-long"],
                "vif 0: bridge=a-bridge-too-long: 'a-bridge-too-long' is 17 bytes long: an interface name is at most 15 (IFNAMSIZ)",
            ),
            (&["bridge=eth0"], "vif 0: bridge=eth0: dom0's interface eth0 is not a bridge"),
            (
                &["vifname=eth0"],
                "vif 0: vifname=eth0: dom0 has an interface of that name already",
            ),
            (&["vifname=a/b"], "vif 0: vifname=a/b: 'a/b': an interface name has no '/'"),
            (
                &["vifname=web0", "vifname=web0"],
                "vif 1: vifname=web0 is also another interface's",
            ),
            (&["devid=1", "devid=1"], "vif 1: devid=1 is also another interface's"),
        ] {
            let mut cfg = s.cfg.clone();
            cfg.vifs = vifs(specs);
            let e = crate::domu::create(&s.b, &cfg, false).unwrap_err();
            assert!(matches!(e, BackendError::Failed(_)), "{specs:?}: {e:?}");
            assert!(e.to_string().contains(want), "{specs:?}: {e}");
        }
        assert!(s.b.transport().created.borrow().is_empty());
        assert!(log(&s).is_empty());
        // What only an emulated NIC uses, and vif-bridge named either way:
        // fine.
        let mut cfg = s.cfg.clone();
        cfg.vifs = vifs(&[
            "model=e1000,script=vif-bridge,backend=0",
            "script=/etc/xen/scripts/vif-bridge,type=vif",
        ]);
        crate::domu::create(&s.b, &cfg, true).unwrap();
        assert_eq!(be(&s, 7, 1, "hotplug-status").as_deref(), Some("connected"));
    }

    #[test]
    fn devids_as_libxl_gives_them() {
        let ids = |specs: &[&str]| devids(&vifs(specs));
        assert_eq!(ids(&["", "", ""]), Ok(vec![0, 1, 2]));
        assert_eq!(ids(&["", "devid=4", ""]), Ok(vec![5, 4, 6]));
        assert_eq!(ids(&["devid=2", "devid=0"]), Ok(vec![2, 0]));
        // One past the highest given, wherever it is.
        assert_eq!(ids(&["", "devid=0"]), Ok(vec![1, 0]));
        let e = ids(&["devid=3", "devid=3"]).unwrap_err();
        assert_eq!(
            e,
            "vif 1: devid=3 is also another interface's: each needs a devid of its own"
        );
    }

    /// Domain 1 (which the fake hypervisor has) with `specs` added.
    fn d1_with(s: &Setup, specs: &[&str]) {
        let nics = check(&vifs(specs), &*s.b.host).unwrap();
        add(&*s.b.store, &*s.b.host, 1, &nics, Duration::ZERO).unwrap();
        s.store.set("/local/domain/1/name", "web");
    }

    #[test]
    fn destroy_closes_and_removes_the_interfaces() {
        let s = net_setup("vif-destroy", &[]);
        d1_with(&s, &["mac=00:16:3e:00:00:01", "bridge=br-lan"]);
        assert!(s.host.link("vif1.1").is_some());
        assert!(has_nics(&*s.b.store, 1));
        s.store.events.borrow_mut().clear();
        s.host.log.borrow_mut().clear();
        let before = s.store.batches.borrow().len();
        s.b.destroy(&DomainRef::parse("web")).unwrap();
        let calls = s.b.transport().calls.borrow().clone();
        assert!(calls.contains(&"pause-op 3 d1".to_string()), "{calls:?}");
        assert_eq!(*s.b.transport().destroyed.borrow(), [1]);
        // Offline and Closing, then the frontend goes, netback closes,
        // then the rest, then the domain.
        let offline: Vec<(String, String)> = s.store.batches.borrow()[before]
            .iter()
            .map(|n| (n.path.clone(), n.value.clone()))
            .collect();
        assert_eq!(
            offline,
            [
                ("/local/domain/0/backend/vif/1/0/online".into(), "0".into()),
                ("/local/domain/0/backend/vif/1/0/state".into(), "5".into()),
            ]
        );
        let ev = s.store.events.borrow().clone();
        let pos = |e: &str| {
            ev.iter()
                .position(|x| x == e)
                .unwrap_or_else(|| panic!("{e}: {ev:?}"))
        };
        assert!(pos("rm /local/domain/1/device/vif/0") < pos("rm /local/domain/0/backend/vif/1/0"));
        assert!(pos("rm /local/domain/0/backend/vif/1/1") < pos("release 1"));
        for gone in [
            "/local/domain/0/backend/vif/1",
            "/local/domain/1",
            "/libxl/1",
        ] {
            assert!(s.store.under(gone).is_empty(), "{gone}");
        }
        // netback freed the interfaces; the bridges stay; nothing was
        // asked of the host.
        assert!(s.host.link("vif1.0").is_none());
        assert!(s.host.link("vif1.1").is_none());
        assert!(s.host.link("br-lan").is_some());
        assert!(log(&s).is_empty(), "{:?}", log(&s));
        assert!(s.warnings.borrow().is_empty(), "{:?}", s.warnings.borrow());
        assert!(!has_nics(&*s.b.store, 1));
    }

    #[test]
    fn destroy_gives_netback_a_bounded_time() {
        let s = net_setup("vif-stuck", &[]);
        d1_with(&s, &[""]);
        // A netback that never closes.
        s.store.netback.replace(None);
        let t0 = Instant::now();
        s.b.destroy(&DomainRef::Id(1)).unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(150));
        let w = s.warnings.borrow().clone();
        assert_eq!(
            w,
            ["vif 0 of domain 1: netback did not close /local/domain/0/backend/vif/1/0 within 0.1 s (state 5, not 6): removing it anyway"]
        );
        assert!(s.store.under("/local/domain/0/backend/vif/1").is_empty());
        assert!(s.store.under("/libxl/1").is_empty());
    }

    #[test]
    fn network_list_reads_the_records_as_xl_does() {
        let s = net_setup("vif-list", &[]);
        d1_with(&s, &["mac=00:16:3e:0a:0b:0c", "bridge=xenbr0"]);
        let f = "/local/domain/1/device/vif/0";
        s.store.set(&format!("{f}/state"), "4");
        s.store.set(&format!("{f}/event-channel"), "11");
        s.store.set(&format!("{f}/tx-ring-ref"), "768");
        s.store.set(&format!("{f}/rx-ring-ref"), "769");
        let l = s.b.network_list(&DomainRef::parse("web")).unwrap();
        assert_eq!(
            l[0],
            NicInfo {
                devid: 0,
                backend_id: 0,
                mac: MacAddr([0, 0x16, 0x3e, 0x0a, 0x0b, 0x0c]),
                state: 4,
                evtch: 11,
                tx_ring_ref: 768,
                rx_ring_ref: 769,
                backend_path: "/local/domain/0/backend/vif/1/0".into(),
            }
        );
        assert_eq!((l[1].devid, l[1].state, l[1].evtch), (1, 1, -1));
        assert_eq!(l.len(), 2);
        assert_eq!(
            crate::format::network_list_table(&l),
            "Idx BE Mac Addr.         handle state evt-ch   tx-/rx-ring-ref BE-path                       \n\
             0   0  00:16:3e:0a:0b:0c     0     4     11   768/769         /local/domain/0/backend/vif/1/0\n\
             1   0  00:16:3e:21:a2:a3     1     1     -1    -1/-1          /local/domain/0/backend/vif/1/1\n"
        );
        assert!(s.b.network_list(&DomainRef::Id(5)).unwrap().is_empty());
        assert!(matches!(
            s.b.network_list(&DomainRef::Id(9)),
            Err(BackendError::NoSuchDomain(_))
        ));
    }

    #[test]
    fn a_restart_keeps_the_mac_addresses_made_up() {
        let s = net_setup("vif-macs", &[]);
        // devids 6, 7, 5, as libxl gives them.
        d1_with(&s, &["mac=00:16:3e:00:00:01", "", "devid=5"]);
        s.store
            .set("/local/domain/0/backend/vif/1/7/mac", "00:16:3e:77:77:77");
        let m = macs(&*s.b.store, 1);
        assert_eq!(
            m.iter()
                .map(|(d, m)| (*d, m.to_string()))
                .collect::<Vec<_>>(),
            [
                (5, "00:16:3e:21:a2:a3".to_string()),
                (6, "00:16:3e:00:00:01".to_string()),
                (7, "00:16:3e:77:77:77".to_string()),
            ]
        );
        // The config's own stays; the others get theirs back by devid.
        let specs = vifs(&["mac=02:22:33:44:55:66", "", "devid=5"]);
        let again = with_macs(&specs, &m);
        assert_eq!(
            again[0].mac,
            Some(MacAddr([2, 0x22, 0x33, 0x44, 0x55, 0x66]))
        );
        assert_eq!(
            again[1].mac,
            Some(MacAddr([0, 0x16, 0x3e, 0x77, 0x77, 0x77]))
        );
        assert_eq!(
            again[2].mac,
            Some(MacAddr([0, 0x16, 0x3e, 0x21, 0xa2, 0xa3]))
        );
        assert_eq!(
            check(&again, &*s.b.host).unwrap()[1].mac,
            again[1].mac.unwrap()
        );
    }

    fn keelctl(s: &Setup, args: &[&str]) -> (i32, String) {
        let (rc, out, err) = crate::tests::exec(&s.b, args);
        assert_eq!(out, "", "{args:?}");
        (rc, err)
    }

    #[test]
    fn network_attach_adds_an_interface_to_a_running_domain() {
        let s = net_setup("vif-attach", &[]);
        d1_with(&s, &["mac=00:16:3e:00:00:01"]);
        s.host.log.borrow_mut().clear();
        // The next devid, a MAC made up, the bridge made.
        let (rc, err) = keelctl(&s, &["network-attach", "web", "bridge=br-lan"]);
        assert_eq!((rc, err.as_str()), (0, ""));
        assert_eq!(
            log(&s),
            [
                "addbr br-lan",
                "up br-lan",
                "addif br-lan vif1.1",
                "up vif1.1"
            ]
        );
        for (k, v) in [
            ("handle", "1"),
            ("mac", "00:16:3e:21:a2:a3"),
            ("bridge", "br-lan"),
            ("frontend", "/local/domain/1/device/vif/1"),
            ("hotplug-status", "connected"),
        ] {
            assert_eq!(be(&s, 1, 1, k).as_deref(), Some(v), "{k}");
        }
        assert_eq!(
            s.host.link("vif1.1").unwrap().master.as_deref(),
            Some("br-lan")
        );
        // The spec in pieces; a devid and MAC of its own; then one past
        // the highest.
        let (rc, err) = keelctl(
            &s,
            &["network-attach", "1", "mac=00:16:3e:0a:0b:0c", "devid=5"],
        );
        assert_eq!((rc, err.as_str()), (0, ""));
        assert_eq!(be(&s, 1, 5, "mac").as_deref(), Some("00:16:3e:0a:0b:0c"));
        let (rc, err) = keelctl(&s, &["network-attach", "web"]);
        assert_eq!((rc, err.as_str()), (0, ""));
        assert_eq!(be(&s, 1, 6, "bridge").as_deref(), Some("xenbr0"));
        let l = s.b.network_list(&DomainRef::Id(1)).unwrap();
        assert_eq!(l.iter().map(|n| n.devid).collect::<Vec<_>>(), [0, 1, 5, 6]);
        // The first untouched.
        assert_eq!(be(&s, 1, 0, "mac").as_deref(), Some("00:16:3e:00:00:01"));
    }

    #[test]
    fn network_attach_refusals_leave_nothing() {
        let s = net_setup("vif-attach-refuse", &[]);
        d1_with(&s, &[""]);
        s.host.log.borrow_mut().clear();
        for (args, want) in [
            (
                &["network-attach", "web", "devid=0"][..],
                "keelctl: network-attach: domain 'web': vif 0: domain 1 has an interface 0 already: detach it first or choose another devid\n",
            ),
            (
                &["network-attach", "web", "script=vif-route"],
                "domain 'web': vif 1: script=vif-route is not supported",
            ),
            (&["network-attach", "web", "mac=01:00:00:00:00:01"], "multicast"),
        ] {
            let (rc, err) = keelctl(&s, args);
            assert_eq!(rc, crate::EXIT_ERROR, "{args:?}");
            assert!(err.contains(want), "{args:?}: {err}");
        }
        // No netback to take it up: the records taken back.
        s.store.netback.replace(None);
        let (rc, err) = keelctl(&s, &["network-attach", "web"]);
        assert_eq!(rc, crate::EXIT_ERROR);
        assert!(
            err.contains("vif 1 of domain 1: no interface vif1.1 in dom0 after 0.1 s"),
            "{err}"
        );
        assert!(s.store.under("/local/domain/0/backend/vif/1/1").is_empty());
        assert!(s.store.under("/local/domain/1/device/vif/1").is_empty());
        assert!(s.store.under("/libxl/1/device/vif/1").is_empty());
        assert_eq!(be(&s, 1, 0, "hotplug-status").as_deref(), Some("connected"));
        assert!(log(&s).is_empty(), "{:?}", log(&s));
    }

    #[test]
    fn network_detach_by_mac_and_by_devid() {
        let s = net_setup("vif-detach", &[]);
        d1_with(&s, &["mac=00:16:3e:00:00:01", "bridge=br-lan"]);
        s.store.guest_releases.set(true);
        let before = s.store.batches.borrow().len();
        let (rc, err) = keelctl(&s, &["network-detach", "web", "00:16:3e:00:00:01"]);
        assert_eq!((rc, err.as_str()), (0, ""));
        let offline: Vec<(String, String)> = s.store.batches.borrow()[before]
            .iter()
            .map(|n| (n.path.clone(), n.value.clone()))
            .collect();
        assert_eq!(
            offline,
            [
                ("/local/domain/0/backend/vif/1/0/online".into(), "0".into()),
                ("/local/domain/0/backend/vif/1/0/state".into(), "5".into()),
            ]
        );
        for gone in [
            "/local/domain/0/backend/vif/1/0",
            "/local/domain/1/device/vif/0",
            "/libxl/1/device/vif/0",
        ] {
            assert!(s.store.under(gone).is_empty(), "{gone}");
        }
        // netback freed it; the other stays.
        assert!(s.host.link("vif1.0").is_none());
        assert!(s.host.link("vif1.1").is_some());
        assert_eq!(be(&s, 1, 1, "hotplug-status").as_deref(), Some("connected"));
        let (rc, err) = keelctl(&s, &["network-detach", "1", "1"]);
        assert_eq!((rc, err.as_str()), (0, ""));
        assert!(s.store.under("/local/domain/0/backend/vif/1").is_empty());
        assert!(s.host.link("vif1.1").is_none());
        assert!(s.host.link("br-lan").is_some(), "the bridge stays");
        assert!(!has_nics(&*s.b.store, 1));
        for (dev, want) in [
            (
                "0",
                "keelctl: network-detach: domain 'web': domain 1 has no interface 0\n",
            ),
            (
                "00:16:3e:00:00:01",
                "domain 1 has no interface with MAC address 00:16:3e:00:00:01\n",
            ),
            ("00:16:3e", "invalid MAC address '00:16:3e'"),
            (
                "eth0",
                "invalid interface 'eth0': a device id (0, 1...) or a MAC address",
            ),
        ] {
            let (rc, err) = keelctl(&s, &["network-detach", "web", dev]);
            assert_eq!(rc, crate::EXIT_ERROR, "{dev}");
            assert!(err.contains(want), "{dev}: {err}");
        }
    }

    #[test]
    fn network_detach_of_an_interface_the_guest_keeps_fails() {
        let s = net_setup("vif-detach-busy", &[]);
        d1_with(&s, &[""]);
        let t0 = Instant::now();
        let (rc, err) = keelctl(&s, &["network-detach", "web", "0"]);
        assert!(t0.elapsed() >= Duration::from_millis(150));
        assert_eq!(rc, crate::EXIT_ERROR);
        assert_eq!(
            err,
            "keelctl: network-detach: domain 'web': the guest did not release vif 0 (still in use?): netback left /local/domain/0/backend/vif/1/0 in state 5, not 6 (Closed), for 0.1 s; it stays attached\n"
        );
        // Back online in the state netback had; still there.
        assert_eq!(be(&s, 1, 0, "online").as_deref(), Some("1"));
        assert_eq!(be(&s, 1, 0, "state").as_deref(), Some("2"));
        assert!(s.host.link("vif1.0").is_some());
        assert_eq!(s.b.network_list(&DomainRef::Id(1)).unwrap().len(), 1);
    }
}
