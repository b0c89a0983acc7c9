//! A domain's disks, end to end, as `xl` and Xen's `block` hotplug script
//! serve them, so that dom0's unmodified xen-blkback and the guest's
//! xen-blkfront connect; keelctl does the script's work itself (no udev,
//! no script run):
//!
//! * [`check`], before the domain exists: what [`devices::vbd_records`]
//!   refuses (formats, backend types, vdevs...), a backend domain or
//!   hotplug script keelctl cannot honour, a target that is missing, of
//!   the wrong kind or does not open in the disk's mode, two disks with
//!   one vdev, and a target shared the way the script refuses;
//! * [`add`], once the domain's own records are written and before it
//!   runs: a block device target is given to blkback as it is, an image
//!   file is bound to a free loop device ([`crate::hotplug`]); then
//!   every disk's records, with what the script writes
//!   (`physical-device`, `physical-device-path`, `hotplug-status`, and
//!   `node` for a loop device), in one transaction. [`undo`] takes that
//!   back when a later step fails;
//! * [`remove_all`], when the domain is destroyed: libxl's forced removal
//!   (`libxl__initiate_device_generic_remove`), then the script's
//!   `remove` (the loop device goes);
//! * [`plug`] and [`unplug`], on a running domain (`block-attach`,
//!   `block-detach`): one disk checked and added as at create, or taken
//!   away as libxl does, asking the guest first unless forced
//!   ([`crate::teardown`]);
//! * [`list`]: what `xl block-list` shows.
//!
//! Sharing: like the script's `check_sharing`, a target may be attached
//! to several domains only when all of them have it read-only. The other
//! domains' disks are found in xenstore, under
//! `/local/domain/0/backend/vbd/*/*` (their `params`, `mode` and
//! `physical-device`), not in `/sys/block/loop*/loop/backing_file`:
//! xenstore says which domain has the target and in which mode (sysfs
//! knows neither), covers block devices as well as image files, and
//! holds the disks of domains that `xl` made too. The target is compared
//! by identity (device and inode for a file, device number for a block
//! device), so that two paths to one file are one target. Unlike the
//! script, keelctl also refuses one image twice in the same domain
//! unless both are read-only.

use std::io;
use std::time::Duration;

use keel_xlcfg::{DiskAccess, DiskSpec};

use crate::backend::BlockInfo;
use crate::devices::{self, PhysicalDevice};
use crate::hotplug::{self, FileKind, Host, Stat};
use crate::teardown::{self, Device};
use crate::xen::{Node, Xenstore};

/// The domain whose blkback serves the disks: dom0 (no driver domains).
pub const BACKEND_DOMID: u16 = 0;
/// How long `destroy` waits for blkback to close a disk
/// (`LIBXL_DESTROY_TIMEOUT`).
pub const DESTROY_TIMEOUT: Duration = Duration::from_secs(10);
/// Free loop devices tried when others take the one offered first.
const LOOP_TRIES: usize = 8;
/// dom0's vbd backends: `<frontend domid>/<devid>` below.
const BACKEND_ROOT: &str = "/local/domain/0/backend/vbd";

/// What blkback is given for a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A block device, as it is.
    Block { major: u32, minor: u32 },
    /// An image file, through a loop device.
    File,
}

/// What makes two paths one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Identity {
    Device(u32, u32),
    Inode(u64, u64),
}

fn identity(s: &Stat) -> Identity {
    match s.kind {
        FileKind::Block => Identity::Device(s.major, s.minor),
        _ => Identity::Inode(s.dev, s.ino),
    }
}

/// A disk of a configuration, checked ([`check`]).
#[derive(Debug, Clone)]
pub struct Disk {
    pub spec: DiskSpec,
    /// The device id: the vdev's number.
    pub devid: u32,
    /// The target, as the configuration names it (`params`).
    pub path: String,
    pub writable: bool,
    pub target: Target,
    identity: Identity,
}

/// A disk made ready for blkback ([`attach`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub devid: u32,
    pub physical: PhysicalDevice,
    /// The loop device bound to its image file.
    pub loop_dev: Option<u32>,
}

fn is_block_script(s: &str) -> bool {
    s == devices::DEFAULT_BLOCK_SCRIPT
        || s == format!("{}/{}", devices::SCRIPT_DIR, devices::DEFAULT_BLOCK_SCRIPT)
}

/// Checks the disks of a domain about to be made, before it exists;
/// `domains` are the ids of the domains there are (the disks of others,
/// left behind in xenstore, do not count).
pub fn check(
    specs: &[DiskSpec],
    store: &dyn Xenstore,
    host: &dyn Host,
    domains: &[u32],
) -> Result<Vec<Disk>, String> {
    let mut out: Vec<Disk> = Vec::new();
    for spec in specs {
        let d = check_one(spec, host)?;
        let vdev = &d.spec.vdev;
        if let Some(o) = out.iter().find(|o| o.devid == d.devid) {
            return Err(format!(
                "disk {vdev}: the same device as disk {} (vbd {}): each disk needs a vdev of its own",
                o.spec.vdev, d.devid
            ));
        }
        if let Some(o) = out
            .iter()
            .find(|o| o.identity == d.identity && (o.writable || d.writable))
        {
            return Err(format!(
                "disk {vdev}: {} is also disk {} of this domain: one target is attached twice only read-only",
                d.path, o.spec.vdev
            ));
        }
        check_sharing(&d, store, host, domains)?;
        out.push(d);
    }
    Ok(out)
}

fn check_one(spec: &DiskSpec, host: &dyn Host) -> Result<Disk, String> {
    let vdev = &spec.vdev;
    // Formats, backend types, vdevs, an empty cdrom: any frontend will do.
    let records = devices::vbd_records(BACKEND_DOMID, 1, spec, None)?;
    if let Some(b) = spec
        .backend
        .as_deref()
        .filter(|b| !matches!(*b, "0" | "Domain-0"))
    {
        return Err(format!(
            "disk {vdev}: backend={b} is not supported: keelctl serves disks from dom0's blkback only (no driver domains)"
        ));
    }
    if let Some(s) = spec.script.as_deref().filter(|s| !is_block_script(s)) {
        return Err(format!(
            "disk {vdev}: script={s} is not supported: keelctl does the block script's work itself (block devices and raw image files) and runs no hotplug script"
        ));
    }
    let path = spec
        .target
        .clone()
        .ok_or_else(|| format!("disk {vdev}: no target"))?;
    let writable = spec.access == DiskAccess::ReadWrite;
    let st = host
        .stat(&path)
        .map_err(|e| format!("disk {vdev}: cannot use {path}: {e}"))?;
    let target = match st.kind {
        FileKind::Block => Target::Block {
            major: st.major,
            minor: st.minor,
        },
        FileKind::Regular => Target::File,
        FileKind::Other => {
            return Err(format!(
                "disk {vdev}: {path} is neither a block device nor a regular file"
            ))
        }
    };
    // As the script: a file nobody may write is not given read-write.
    if target == Target::File && writable && st.mode & 0o222 == 0 {
        return Err(format!(
            "disk {vdev}: {path} is a read-only file: attach it read-only (access r) or make it writable"
        ));
    }
    let how = if writable { "read-write" } else { "read-only" };
    host.check_open(&path, writable)
        .map_err(|e| format!("disk {vdev}: cannot open {path} {how}: {e}"))?;
    Ok(Disk {
        spec: spec.clone(),
        devid: records.devid,
        path,
        writable,
        target,
        identity: identity(&st),
    })
}

/// Refuses `d` when another domain has its target and either has it, or
/// asks for it, read-write.
fn check_sharing(
    d: &Disk,
    store: &dyn Xenstore,
    host: &dyn Host,
    domains: &[u32],
) -> Result<(), String> {
    let vdev = &d.spec.vdev;
    let ctx = |e: String| format!("disk {vdev}: finding the domains that use {}: {e}", d.path);
    for fe in store.directory(BACKEND_ROOT).map_err(ctx)? {
        let Ok(fe_id) = fe.parse::<u32>() else {
            continue;
        };
        if !domains.contains(&fe_id) {
            continue;
        }
        let dir = format!("{BACKEND_ROOT}/{fe}");
        for dev in store.directory(&dir).map_err(ctx)? {
            let be = format!("{dir}/{dev}");
            let mode = store
                .read(&format!("{be}/mode"))
                .map_err(ctx)?
                .unwrap_or_default();
            let theirs_writable = mode.contains('w');
            if !(d.writable || theirs_writable) || !same_target(d, store, host, &be).map_err(ctx)? {
                continue;
            }
            return Err(if d.writable {
                format!(
                    "disk {vdev}: {} is in use by domain {fe_id} (its vbd {dev}, mode {mode}): a target attached read-write is not shared with another domain",
                    d.path
                )
            } else {
                format!(
                    "disk {vdev}: {} is attached read-write to domain {fe_id} (its vbd {dev}): it is not shared with another domain, not even read-only",
                    d.path
                )
            });
        }
    }
    Ok(())
}

/// Is the backend at `be` serving `d`'s target?
fn same_target(d: &Disk, store: &dyn Xenstore, host: &dyn Host, be: &str) -> Result<bool, String> {
    if let Target::Block { major, minor } = d.target {
        let mm = format!("{major:x}:{minor:x}");
        if store.read(&format!("{be}/physical-device"))?.as_deref() == Some(mm.as_str()) {
            return Ok(true);
        }
    }
    let Some(params) = store.read(&format!("{be}/params"))? else {
        return Ok(false);
    };
    Ok(match host.stat(&params) {
        Ok(s) => identity(&s) == d.identity,
        Err(_) => params == d.path,
    })
}

/// Binds `file` to a free loop device; returns its number.
fn bind_loop(host: &dyn Host, file: &str, read_only: bool) -> io::Result<u32> {
    let mut busy = None;
    for _ in 0..LOOP_TRIES {
        let n = host.loop_get_free()?;
        match host.loop_attach(n, file, read_only) {
            Ok(()) => return Ok(n),
            // Someone else bound it meanwhile: another one.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => busy = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(busy.expect("tried at least once"))
}

/// What the `block` script does for a disk's target: the device blkback
/// opens.
pub fn attach(host: &dyn Host, d: &Disk) -> Result<Attached, String> {
    let vdev = &d.spec.vdev;
    let (physical, loop_dev) = match d.target {
        Target::Block { major, minor } => (
            PhysicalDevice {
                major,
                minor,
                path: d.path.clone(),
            },
            None,
        ),
        Target::File => {
            let how = if d.writable {
                "read-write"
            } else {
                "read-only"
            };
            let n = bind_loop(host, &d.path, !d.writable).map_err(|e| {
                format!(
                    "disk {vdev}: binding {} to a loop device ({how}): {e}",
                    d.path
                )
            })?;
            let path = hotplug::loop_path(n);
            match host.stat(&path) {
                Ok(s) if s.kind == FileKind::Block => (
                    PhysicalDevice {
                        major: s.major,
                        minor: s.minor,
                        path,
                    },
                    Some(n),
                ),
                other => {
                    let _ = host.loop_detach(n);
                    let why = other
                        .err()
                        .map_or("not a block device".into(), |e| e.to_string());
                    return Err(format!("disk {vdev}: {path}: {why}"));
                }
            }
        }
    };
    Ok(Attached {
        devid: d.devid,
        physical,
        loop_dev,
    })
}

/// The directories of disk `devid` of domain `domid`: libxl's, the
/// frontend's, the backend's.
pub fn roots(domid: u16, devid: u32) -> [String; 3] {
    [
        format!("/libxl/{domid}/device/vbd/{devid}"),
        format!("/local/domain/{domid}/device/vbd/{devid}"),
        format!("{BACKEND_ROOT}/{domid}/{devid}"),
    ]
}

/// The records of disk `d`, ready as `a`, for domain `domid`.
pub fn nodes(domid: u16, d: &Disk, a: &Attached) -> Result<Vec<Node>, String> {
    let r = devices::vbd_records(BACKEND_DOMID, domid, &d.spec, Some(&a.physical))?;
    let mut v = r.nodes();
    if let Some(n) = a.loop_dev {
        // The script's note of the loop device it bound, which its
        // `remove` (run by a stock xl) unbinds.
        v.push(Node {
            path: format!("{}/node", r.backend_path),
            value: hotplug::loop_path(n),
            perms: r.backend[0].perms.clone(),
        });
    }
    Ok(v)
}

/// Makes `disks` ready and writes their records for domain `domid`, in
/// one transaction (after clearing what an earlier domain with this id
/// may have left, as `libxl__device_generic_add`). `attached` gets each
/// disk as it is made ready, for [`undo`].
pub fn add(
    store: &dyn Xenstore,
    host: &dyn Host,
    domid: u16,
    disks: &[Disk],
    attached: &mut Vec<Attached>,
) -> Result<(), String> {
    for d in disks {
        attached.push(attach(host, d)?);
    }
    let mut all = Vec::new();
    for (d, a) in disks.iter().zip(attached.iter()) {
        all.extend(nodes(domid, d, a)?);
    }
    let stale: Vec<String> = disks.iter().flat_map(|d| roots(domid, d.devid)).collect();
    store
        .remove(&stale)
        .and_then(|()| store.publish(&all))
        .map_err(|e| format!("writing the disks' records: {e}"))
}

/// Takes back what [`add`] did: the disks' records, the loop devices.
pub fn undo(
    store: &dyn Xenstore,
    host: &dyn Host,
    domid: u16,
    disks: &[Disk],
    attached: &[Attached],
) {
    if !disks.is_empty() {
        let r: Vec<String> = disks.iter().flat_map(|d| roots(domid, d.devid)).collect();
        let _ = store.remove(&r);
        teardown::remove_if_empty(store, &format!("{BACKEND_ROOT}/{domid}"));
    }
    for n in attached.iter().filter_map(|a| a.loop_dev) {
        let _ = host.loop_detach(n);
    }
}

/// The device ids of domain `domid`'s disks: from libxl's records and
/// the backends'.
fn devids(store: &dyn Xenstore, domid: u16) -> Vec<u32> {
    let mut v: Vec<u32> = [
        format!("/libxl/{domid}/device/vbd"),
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

/// Has domain `domid` any disk records?
pub fn has_disks(store: &dyn Xenstore, domid: u16) -> bool {
    !devids(store, domid).is_empty()
}

/// Disk `devid` of domain `domid`, to be taken away, and the loop device
/// bound to its image file: named by `node` (which a block device
/// target has not) and `physical-device-path`.
fn closing(store: &dyn Xenstore, domid: u16, devid: u32) -> (Device, Option<u32>) {
    let d = Device::new(
        store,
        format!("disk {devid} of domain {domid}"),
        "blkback",
        roots(domid, devid),
    );
    let loop_dev = match (d.read(store, "node"), d.read(store, "physical-device-path")) {
        (Some(n), Some(p)) if n == p => hotplug::loop_number(&p),
        _ => None,
    };
    (d, loop_dev)
}

/// Unbinds loop device `n` of `d` (`LOOP_CLR_FD`: when blkback still
/// holds it, it goes when blkback lets go); unbound already is fine.
fn unbind(host: &dyn Host, d: &Device, n: u32) -> Result<(), String> {
    match host.loop_detach(n) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(()),
        Err(e) => Err(format!(
            "{}: unbinding {}: {e}",
            d.what,
            hotplug::loop_path(n)
        )),
    }
}

/// Takes every disk of domain `domid` away, as libxl does when it
/// destroys a domain (forced: the guest is not asked,
/// [`teardown::remove_forced`]), then unbinds the loop devices bound to
/// image files. Whatever fails is a `warn`; the rest goes on.
pub fn remove_all(
    store: &dyn Xenstore,
    host: &dyn Host,
    domid: u16,
    timeout: Duration,
    warn: &dyn Fn(String),
) {
    let (devs, loops): (Vec<Device>, Vec<Option<u32>>) = devids(store, domid)
        .into_iter()
        .map(|devid| closing(store, domid, devid))
        .unzip();
    teardown::remove_forced(store, &devs, timeout, warn);
    for (d, n) in devs.iter().zip(loops) {
        if let Some(e) = n.and_then(|n| unbind(host, d, n).err()) {
            warn(e);
        }
    }
    teardown::remove_if_empty(store, &format!("{BACKEND_ROOT}/{domid}"));
}

/// `block-attach`: disk `spec` for running domain `domid`, checked as
/// [`check`] does (`domains`: the domains there are) and refused when
/// the domain has a disk with its vdev; then made ready and its records
/// written ([`add`]): the guest's blkfront, which watches its device
/// directory, connects by itself. Returns the disk.
pub fn plug(
    store: &dyn Xenstore,
    host: &dyn Host,
    domid: u16,
    spec: &DiskSpec,
    domains: &[u32],
) -> Result<Disk, String> {
    let vdev = &spec.vdev;
    if let Ok(devid) = devices::vdev_number(vdev) {
        if devids(store, domid).contains(&devid) {
            return Err(format!(
                "disk {vdev}: domain {domid} has a disk {vdev} already (vbd {devid}): detach it first or choose another vdev"
            ));
        }
    }
    let disks = check(std::slice::from_ref(spec), store, host, domains)?;
    let mut attached = Vec::new();
    if let Err(e) = add(store, host, domid, &disks, &mut attached) {
        undo(store, host, domid, &disks, &attached);
        return Err(e);
    }
    Ok(disks.into_iter().next().expect("one disk checked"))
}

/// `block-detach`: takes disk `devid` (named `name` in messages) away
/// from running domain `domid`. Without `force`, the guest is asked
/// ([`teardown::remove_live`]): a disk the guest does not let go of
/// within `timeout` stays attached and is an error; with it, libxl's
/// forced removal ([`teardown::remove_forced`], failures a `warn`). Then
/// the loop device bound to its image file is unbound.
pub fn unplug(
    store: &dyn Xenstore,
    host: &dyn Host,
    domid: u16,
    (devid, name): (u32, &str),
    force: bool,
    timeout: Duration,
    warn: &dyn Fn(String),
) -> Result<(), String> {
    if !devids(store, domid).contains(&devid) {
        return Err(format!("domain {domid} has no disk {name} (vbd {devid})"));
    }
    let (d, loop_dev) = closing(store, domid, devid);
    if force {
        teardown::remove_forced(store, std::slice::from_ref(&d), timeout, warn);
    } else {
        teardown::remove_live(store, &d, name, timeout)
            .map_err(|e| format!("{e} (block-detach -f removes it anyway)"))?;
    }
    teardown::remove_if_empty(store, &format!("{BACKEND_ROOT}/{domid}"));
    loop_dev.map_or(Ok(()), |n| unbind(host, &d, n))
}

/// Domain `domid`'s disks as `xl block-list` finds them
/// (`libxl_device_disk_list`, `libxl_device_disk_getinfo`): one per
/// `/libxl/<domid>/device/vbd/<devid>` with a `backend`, in device id
/// order; state, event channel and ring reference from the frontend.
pub fn list(store: &dyn Xenstore, domid: u16) -> Result<Vec<BlockInfo>, String> {
    let dir = format!("/libxl/{domid}/device/vbd");
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
        let fe = format!("/local/domain/{domid}/device/vbd/{devid}");
        let num = |k: &str| -> Result<i64, String> {
            Ok(store
                .read(&format!("{fe}/{k}"))?
                .map_or(-1, |v| devices::c_int(&v)))
        };
        out.push(BlockInfo {
            devid,
            backend_id,
            frontend_id: domid as u32,
            state: num("state")?,
            evtch: num("event-channel")?,
            ring_ref: num("ring-ref")?,
            backend_path: backend,
        });
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::backend::{BackendError, DomainRef, Hypervisor};
    use crate::hotplug::fake::{block, file, FakeHost};
    use crate::xen::fake::{backend, FakeXen, MemStore};
    use crate::xen::XenBackend;
    use keel_xlcfg::parse_disk_spec;
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::Instant;

    /// A fake hypervisor, xenstore (acting as blkback) and host, with
    /// image files `/srv/web.img` and `/srv/data.img`, block device
    /// `/dev/vg/data` (254:3), and a domain config with `disks`.
    pub(crate) struct Setup {
        pub b: XenBackend<FakeXen>,
        pub store: Rc<MemStore>,
        pub host: Rc<FakeHost>,
        pub warnings: Rc<RefCell<Vec<String>>>,
        pub cfg: keel_xlcfg::DomainConfig,
        _files: crate::domu::tests::Files,
    }

    pub(crate) fn setup(tag: &str, disks: &[&str]) -> Setup {
        let (mut cfg, files) = crate::domu::tests::config(tag);
        cfg.disks = disks
            .iter()
            .map(|d| parse_disk_spec(d).unwrap_or_else(|e| panic!("{d}: {e}")))
            .collect();
        let x = FakeXen::new();
        x.domu.borrow_mut().max_frames = 64 * 256 + 64;
        let mut b = backend(x);
        let store = Rc::new(MemStore::default());
        store.blkback.set(true);
        b.transport().domu.borrow_mut().events = store.events.clone();
        b.store = Box::new(store.clone());
        let host = Rc::new(FakeHost::default());
        host.add("/srv/web.img", file(11));
        host.add("/srv/data.img", file(12));
        host.add("/dev/vg/data", block(254, 3));
        b.host = Box::new(host.clone());
        b.device_timeout = Duration::from_millis(150);
        let warnings = Rc::new(RefCell::new(Vec::new()));
        let w = warnings.clone();
        b.warn = Box::new(move |s| w.borrow_mut().push(s));
        Setup {
            b,
            store,
            host,
            warnings,
            cfg,
            _files: files,
        }
    }

    fn log(h: &FakeHost) -> Vec<String> {
        h.log.borrow().clone()
    }

    /// The value of `key` in the backend of domain `d`'s disk `devid`.
    fn be(s: &Setup, d: u16, devid: u32, key: &str) -> Option<String> {
        s.store
            .value(&format!("/local/domain/0/backend/vbd/{d}/{devid}/{key}"))
    }

    #[test]
    fn create_writes_the_disks_records_before_the_domain_runs() {
        let s = setup(
            "vbd-create",
            &["/srv/web.img,raw,xvda,rw", "/dev/vg/data,raw,xvdb,w"],
        );
        let c = crate::domu::create(&s.b, &s.cfg, false).unwrap();
        assert_eq!(c.domid, 7);
        // The image file went through a loop device, read-write; the
        // block device is given as it is.
        assert_eq!(log(&s.host), ["attach 0 /srv/web.img rw"]);
        for (k, v) in [
            ("params", "/srv/web.img"),
            ("mode", "w"),
            ("physical-device", "7:0"),
            ("physical-device-path", "/dev/loop0"),
            ("node", "/dev/loop0"),
            ("hotplug-status", "connected"),
            ("frontend", "/local/domain/7/device/vbd/51712"),
            ("state", "1"),
            ("online", "1"),
        ] {
            assert_eq!(be(&s, 7, 51712, k).as_deref(), Some(v), "{k}");
        }
        for (k, v) in [
            ("params", "/dev/vg/data"),
            ("physical-device", "fe:3"),
            ("physical-device-path", "/dev/vg/data"),
            ("hotplug-status", "connected"),
        ] {
            assert_eq!(be(&s, 7, 51728, k).as_deref(), Some(v), "{k}");
        }
        assert_eq!(
            be(&s, 7, 51728, "node"),
            None,
            "no loop device of keelctl's"
        );
        assert_eq!(
            s.store
                .value("/local/domain/7/device/vbd/51728/backend")
                .as_deref(),
            Some("/local/domain/0/backend/vbd/7/51728")
        );
        assert_eq!(
            s.store
                .value("/libxl/7/device/vbd/51712/backend")
                .as_deref(),
            Some("/local/domain/0/backend/vbd/7/51712")
        );
        // Both disks in one transaction, after the domain's records and
        // its introduction, before the unpause.
        let batches = s.store.batches.borrow();
        let disks = batches
            .iter()
            .position(|b| b.iter().any(|n| n.path.contains("/backend/vbd/")))
            .unwrap();
        assert!(batches[disks]
            .iter()
            .any(|n| n.path == "/local/domain/0/backend/vbd/7/51728/physical-device"));
        assert!(batches[disks]
            .iter()
            .any(|n| n.path == "/local/domain/0/backend/vbd/7/51712/physical-device"));
        let ev = s.store.events.borrow();
        let at = |e: &str| {
            ev.iter()
                .position(|x| x == e)
                .unwrap_or_else(|| panic!("{e}: {ev:?}"))
        };
        assert!(at("publish #0") < at("introduce 7"));
        assert!(at("introduce 7") < at(&format!("publish #{disks}")));
        assert!(at(&format!("publish #{disks}")) < at("unpause"));
        assert!(s.b.transport().destroyed.borrow().is_empty());
    }

    #[test]
    fn a_read_only_disk_is_bound_read_only() {
        let s = setup("vbd-ro", &["/srv/data.img,raw,xvdc,r"]);
        crate::domu::create(&s.b, &s.cfg, true).unwrap();
        assert_eq!(log(&s.host), ["attach 0 /srv/data.img ro"]);
        assert_eq!(s.host.loops.borrow()[&0], ("/srv/data.img".into(), true));
        assert_eq!(be(&s, 7, 51744, "mode").as_deref(), Some("r"));
        // A read-only file is fine read-only, refused read-write.
        let mut ro = file(13);
        ro.mode = 0o444;
        s.host.add("/srv/ro.img", ro);
        let mut cfg = s.cfg.clone();
        cfg.disks = vec![parse_disk_spec("/srv/ro.img,raw,xvda,r").unwrap()];
        crate::domu::create(&s.b, &cfg, true).unwrap();
        cfg.disks = vec![parse_disk_spec("/srv/ro.img,raw,xvda,w").unwrap()];
        let e = crate::domu::create(&s.b, &cfg, true).unwrap_err();
        assert!(
            e.to_string().contains("/srv/ro.img is a read-only file"),
            "{e}"
        );
    }

    #[test]
    fn a_loop_device_taken_meanwhile_is_not_fatal() {
        let s = setup("vbd-race", &["/srv/web.img,raw,xvda,rw"]);
        s.host.races.set(2);
        crate::domu::create(&s.b, &s.cfg, true).unwrap();
        assert_eq!(log(&s.host), ["attach 2 /srv/web.img rw"]);
        assert_eq!(be(&s, 7, 51712, "physical-device").as_deref(), Some("7:2"));
    }

    /// Refused before a domain exists: nothing made, nothing bound.
    #[test]
    fn refusals() {
        let s = setup("vbd-refuse", &[]);
        s.host.add(
            "/srv",
            crate::hotplug::Stat {
                kind: FileKind::Other,
                ..file(1)
            },
        );
        s.host.locked.borrow_mut().push("/srv/data.img".into());
        for (disks, want) in [
            (
                &["/srv/web.qcow2,qcow2,xvda,rw"][..],
                "disk xvda: format=qcow2 is not supported",
            ),
            (
                &["/srv/missing.img,raw,xvda,rw"],
                "disk xvda: cannot use /srv/missing.img: No such file or directory",
            ),
            (
                &["/srv,raw,xvda,rw"],
                "disk xvda: /srv is neither a block device nor a regular file",
            ),
            (
                &["/srv/data.img,raw,xvda,r"],
                "disk xvda: cannot open /srv/data.img read-only: Permission denied",
            ),
            (
                &["/srv/web.img,raw,xvda,rw,backend=driver"],
                "backend=driver is not supported",
            ),
            (
                &["/srv/web.img,raw,xvda,rw,script=block-iscsi"],
                "script=block-iscsi is not supported",
            ),
            (
                &["/srv/web.img,raw,xvda,rw", "/dev/vg/data,raw,51712,rw"],
                "disk 51712: the same device as disk xvda (vbd 51712)",
            ),
            (
                &["/srv/web.img,raw,xvda,rw", "/srv/web.img,raw,xvdb,rw"],
                "disk xvdb: /srv/web.img is also disk xvda of this domain",
            ),
            (
                &["/srv/web.img,raw,xvda,r", "/srv/web.img,raw,xvdb,rw"],
                "is also disk xvda",
            ),
        ] {
            let mut cfg = s.cfg.clone();
            cfg.disks = disks.iter().map(|d| parse_disk_spec(d).unwrap()).collect();
            let e = crate::domu::create(&s.b, &cfg, false).unwrap_err();
            assert!(matches!(e, BackendError::Failed(_)), "{disks:?}: {e:?}");
            assert!(e.to_string().contains(want), "{disks:?}: {e}");
        }
        // One image twice read-only is fine.
        let mut cfg = s.cfg.clone();
        cfg.disks = ["/srv/web.img,raw,xvda,r", "/srv/web.img,raw,xvdb,r"]
            .iter()
            .map(|d| parse_disk_spec(d).unwrap())
            .collect();
        crate::domu::create(&s.b, &cfg, true).unwrap();
        assert_eq!(s.b.transport().created.borrow().len(), 1);
    }

    /// Another domain's disks, as xenstore has them: d1 exists, d3 does
    /// not (its records are left over).
    fn other_domains_disks(s: &Setup, d: u16, params: &str, mode: &str) {
        let p = format!("/local/domain/0/backend/vbd/{d}/51712");
        s.store.set(&format!("{p}/params"), params);
        s.store.set(&format!("{p}/mode"), mode);
    }

    #[test]
    fn a_target_another_domain_has_read_write_is_refused() {
        let s = setup("vbd-shared", &[]);
        // Another path to the same file.
        s.host.add("/mnt/web-link.img", file(11));
        other_domains_disks(&s, 1, "/mnt/web-link.img", "w");
        other_domains_disks(&s, 3, "/srv/data.img", "w");
        let make = |spec: &str| {
            let mut cfg = s.cfg.clone();
            cfg.disks = vec![parse_disk_spec(spec).unwrap()];
            crate::domu::create(&s.b, &cfg, true)
        };
        let e = make("/srv/web.img,raw,xvda,rw").unwrap_err();
        assert!(
            e.to_string().contains(
                "disk xvda: /srv/web.img is in use by domain 1 (its vbd 51712, mode w): a target attached read-write is not shared"
            ),
            "{e}"
        );
        let e = make("/srv/web.img,raw,xvda,r").unwrap_err();
        assert!(
            e.to_string()
                .contains("is attached read-write to domain 1 (its vbd 51712): it is not shared with another domain, not even read-only"),
            "{e}"
        );
        assert!(s.b.transport().created.borrow().is_empty());
        assert!(log(&s.host).is_empty());
        // Read-only in both: shared. And a domain that is gone holds
        // nothing.
        other_domains_disks(&s, 1, "/mnt/web-link.img", "r");
        make("/srv/web.img,raw,xvda,r").unwrap();
        make("/srv/data.img,raw,xvdb,rw").unwrap();
        // A block device another domain has read-write, by its number.
        let p = "/local/domain/0/backend/vbd/1/51728";
        s.store.set(&format!("{p}/params"), "/dev/disk/by-id/x");
        s.store.set(&format!("{p}/mode"), "w");
        s.store.set(&format!("{p}/physical-device"), "fe:3");
        let e = make("/dev/vg/data,raw,xvdc,r").unwrap_err();
        assert!(
            e.to_string()
                .contains("/dev/vg/data is attached read-write to domain 1"),
            "{e}"
        );
    }

    #[test]
    fn a_failed_write_of_the_records_takes_everything_back() {
        let s = setup(
            "vbd-undo",
            &["/srv/web.img,raw,xvda,rw", "/srv/data.img,raw,xvdb,r"],
        );
        *s.store.fail_publish.borrow_mut() = Some("/backend/vbd/".into());
        let e = crate::domu::create(&s.b, &s.cfg, false).unwrap_err();
        assert!(
            e.to_string().contains("d7: writing the disks' records"),
            "{e}"
        );
        assert_eq!(
            log(&s.host),
            [
                "attach 0 /srv/web.img rw",
                "attach 1 /srv/data.img ro",
                "detach 0",
                "detach 1"
            ]
        );
        assert!(s.host.loops.borrow().is_empty());
        assert_eq!(*s.b.transport().destroyed.borrow(), [7]);
        assert!(!s.b.transport().domu.borrow().unpaused);
        assert!(s.store.under("/local/domain/0/backend/vbd/7").is_empty());
        assert!(s.store.under("/local/domain/7").is_empty());
        assert!(s.store.under("/libxl/7").is_empty());
    }

    #[test]
    fn a_failed_bind_unbinds_the_disks_bound_before_it() {
        // No loop device to be had: nothing bound, the domain gone.
        let s = setup("vbd-bind", &["/srv/web.img,raw,xvda,rw"]);
        s.host.races.set(u32::MAX);
        let e = crate::domu::create(&s.b, &s.cfg, false).unwrap_err();
        assert!(
            e.to_string()
                .contains("disk xvda: binding /srv/web.img to a loop device (read-write): "),
            "{e}"
        );
        assert_eq!(*s.b.transport().destroyed.borrow(), [7]);
        assert!(log(&s.host).is_empty());
        // The third disk's image gone between the check and the bind:
        // the first's loop device is unbound again, the block device
        // left alone.
        let s = setup("vbd-bind2", &[]);
        let specs: Vec<DiskSpec> = [
            "/srv/web.img,raw,xvda,rw",
            "/dev/vg/data,raw,xvdb,rw",
            "/srv/data.img,raw,xvdc,rw",
        ]
        .iter()
        .map(|d| parse_disk_spec(d).unwrap())
        .collect();
        let disks = check(&specs, &*s.b.store, &*s.b.host, &[0, 1, 5]).unwrap();
        s.host.files.borrow_mut().remove("/srv/data.img");
        let mut attached = Vec::new();
        let e = add(&*s.b.store, &*s.b.host, 9, &disks, &mut attached).unwrap_err();
        assert!(
            e.starts_with("disk xvdc: binding /srv/data.img to a loop device (read-write): "),
            "{e}"
        );
        assert_eq!(attached.len(), 2);
        undo(&*s.b.store, &*s.b.host, 9, &disks, &attached);
        assert_eq!(log(&s.host), ["attach 0 /srv/web.img rw", "detach 0"]);
        assert!(s.store.under("/local/domain/0/backend/vbd/9").is_empty());
    }

    /// Domain 1 (which the fake hypervisor has) with `disks` added.
    fn d1_with(s: &Setup, disks: &[&str]) -> Vec<Attached> {
        let specs: Vec<DiskSpec> = disks.iter().map(|d| parse_disk_spec(d).unwrap()).collect();
        let disks = check(&specs, &*s.b.store, &*s.b.host, &[0, 1, 5]).unwrap();
        let mut a = Vec::new();
        add(&*s.b.store, &*s.b.host, 1, &disks, &mut a).unwrap();
        s.store.set("/local/domain/1/name", "web");
        a
    }

    #[test]
    fn destroy_closes_removes_and_unbinds_the_disks() {
        let s = setup("vbd-destroy", &[]);
        d1_with(&s, &["/srv/web.img,raw,xvda,rw", "/dev/vg/data,raw,xvdb,r"]);
        // The guest connected them.
        for devid in [51712, 51728] {
            s.store
                .set(&format!("/local/domain/0/backend/vbd/1/{devid}/state"), "4");
            s.store
                .set(&format!("/local/domain/1/device/vbd/{devid}/state"), "4");
        }
        s.store.events.borrow_mut().clear();
        s.host.log.borrow_mut().clear();
        s.b.destroy(&DomainRef::parse("web")).unwrap();
        // Paused first, then the disks, then the domain.
        let calls = s.b.transport().calls.borrow().clone();
        assert!(calls.contains(&"pause-op 3 d1".to_string()), "{calls:?}");
        assert_eq!(*s.b.transport().destroyed.borrow(), [1]);
        let ev = s.store.events.borrow().clone();
        let fe = "rm /local/domain/1/device/vbd/51712".to_string();
        let be = "rm /local/domain/0/backend/vbd/1/51712".to_string();
        let pos = |e: &String| {
            ev.iter()
                .position(|x| x == e)
                .unwrap_or_else(|| panic!("{e}: {ev:?}"))
        };
        // Offline, then the frontend goes (blkback closes), then the rest.
        assert!(pos(&"publish #1".to_string()) < pos(&fe), "{ev:?}");
        assert!(pos(&fe) < pos(&be), "{ev:?}");
        assert!(pos(&be) < pos(&"release 1".to_string()), "{ev:?}");
        let offline: Vec<(String, String)> = s.store.batches.borrow()[1]
            .iter()
            .map(|n| (n.path.clone(), n.value.clone()))
            .collect();
        assert_eq!(
            offline,
            [
                (
                    "/local/domain/0/backend/vbd/1/51712/online".to_string(),
                    "0".to_string()
                ),
                (
                    "/local/domain/0/backend/vbd/1/51712/state".to_string(),
                    "5".to_string()
                ),
            ]
        );
        // Only the loop device keelctl bound is unbound.
        assert_eq!(log(&s.host), ["detach 0"]);
        assert!(s.host.loops.borrow().is_empty());
        for gone in [
            "/local/domain/0/backend/vbd/1",
            "/local/domain/1",
            "/libxl/1",
        ] {
            assert!(
                s.store.under(gone).is_empty(),
                "{gone}: {:?}",
                s.store.under(gone)
            );
        }
        assert!(s.warnings.borrow().is_empty(), "{:?}", s.warnings.borrow());
    }

    #[test]
    fn destroy_gives_blkback_a_bounded_time() {
        let s = setup("vbd-stuck", &[]);
        d1_with(&s, &["/srv/web.img,raw,xvda,rw"]);
        s.store
            .set("/local/domain/0/backend/vbd/1/51712/state", "4");
        // A blkback that never closes.
        s.store.blkback.set(false);
        let t0 = Instant::now();
        s.b.destroy(&DomainRef::Id(1)).unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(150));
        let w = s.warnings.borrow().clone();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("disk 51712 of domain 1: blkback did not close /local/domain/0/backend/vbd/1/51712 within 0.1 s (state 5, not 6)"),
            "{w:?}"
        );
        // Removed and unbound all the same.
        assert_eq!(log(&s.host), ["attach 0 /srv/web.img rw", "detach 0"]);
        assert!(s.store.under("/local/domain/0/backend/vbd/1").is_empty());
    }

    #[test]
    fn destroy_of_a_domain_without_disks_is_unchanged() {
        let s = setup("vbd-none", &[]);
        s.b.destroy(&DomainRef::Id(1)).unwrap();
        let calls = s.b.transport().calls.borrow().clone();
        assert!(
            !calls.iter().any(|c| c.starts_with("pause-op")),
            "{calls:?}"
        );
        assert_eq!(
            *s.store.events.borrow(),
            ["release 1", "rm /local/domain/1", "rm /libxl/1"]
        );
    }

    #[test]
    fn block_list_reads_the_records_as_xl_does() {
        let s = setup("vbd-list", &[]);
        d1_with(&s, &["/dev/vg/data,raw,xvdb,r", "/srv/web.img,raw,xvda,rw"]);
        let f = "/local/domain/1/device/vbd/51712";
        s.store.set(&format!("{f}/state"), "4");
        s.store.set(&format!("{f}/event-channel"), "9");
        s.store.set(&format!("{f}/ring-ref"), "8");
        let l = s.b.block_list(&DomainRef::parse("web")).unwrap();
        assert_eq!(
            l,
            [
                BlockInfo {
                    devid: 51712,
                    backend_id: 0,
                    frontend_id: 1,
                    state: 4,
                    evtch: 9,
                    ring_ref: 8,
                    backend_path: "/local/domain/0/backend/vbd/1/51712".into(),
                },
                BlockInfo {
                    devid: 51728,
                    backend_id: 0,
                    frontend_id: 1,
                    // Not connected yet: no ring.
                    state: 1,
                    evtch: -1,
                    ring_ref: -1,
                    backend_path: "/local/domain/0/backend/vbd/1/51728".into(),
                },
            ]
        );
        assert_eq!(
            crate::format::block_list_table(&l),
            "Vdev  BE  handle state evt-ch ring-ref BE-path                       \n\
             51712 0   1      4     9      8        /local/domain/0/backend/vbd/1/51712\n\
             51728 0   1      1     -1     -1       /local/domain/0/backend/vbd/1/51728\n"
        );
        assert!(s.b.block_list(&DomainRef::Id(5)).unwrap().is_empty());
        assert!(matches!(
            s.b.block_list(&DomainRef::Id(9)),
            Err(BackendError::NoSuchDomain(_))
        ));
        assert_eq!(devices::c_int("12abc"), 12);
        assert_eq!(devices::c_int("x"), 0);
    }

    /// Domain 1, `web`, running with disk xvda (/srv/web.img, loop 0),
    /// connected.
    fn web_running(tag: &str) -> Setup {
        let s = setup(tag, &[]);
        d1_with(&s, &["/srv/web.img,raw,xvda,rw"]);
        for p in [
            "/local/domain/0/backend/vbd/1/51712/state",
            "/local/domain/1/device/vbd/51712/state",
        ] {
            s.store.set(p, "4");
        }
        s
    }

    fn keelctl(s: &Setup, args: &[&str]) -> (i32, String) {
        let (rc, out, err) = crate::tests::exec(&s.b, args);
        assert_eq!(out, "", "{args:?}");
        (rc, err)
    }

    #[test]
    fn block_attach_adds_a_disk_to_a_running_domain() {
        let s = web_running("vbd-attach");
        // The spec in pieces, as xl takes it.
        let (rc, err) = keelctl(
            &s,
            &["block-attach", "web", "/srv/data.img", "raw", "xvdb", "r"],
        );
        assert_eq!((rc, err.as_str()), (0, ""));
        assert_eq!(
            log(&s.host),
            ["attach 0 /srv/web.img rw", "attach 1 /srv/data.img ro"]
        );
        for (k, v) in [
            ("params", "/srv/data.img"),
            ("mode", "r"),
            ("physical-device-path", "/dev/loop1"),
            ("node", "/dev/loop1"),
            ("hotplug-status", "connected"),
            ("frontend", "/local/domain/1/device/vbd/51728"),
            ("state", "1"),
        ] {
            assert_eq!(be(&s, 1, 51728, k).as_deref(), Some(v), "{k}");
        }
        assert_eq!(
            s.store
                .value("/local/domain/1/device/vbd/51728/backend")
                .as_deref(),
            Some("/local/domain/0/backend/vbd/1/51728")
        );
        // The first disk untouched; both listed.
        assert_eq!(be(&s, 1, 51712, "state").as_deref(), Some("4"));
        let l = s.b.block_list(&DomainRef::parse("web")).unwrap();
        assert_eq!(
            l.iter().map(|b| b.devid).collect::<Vec<_>>(),
            [51712, 51728]
        );
        // A block device, by id, under a vdev given as a number.
        let (rc, err) = keelctl(&s, &["block-attach", "1", "/dev/vg/data,raw,51744,w"]);
        assert_eq!((rc, err.as_str()), (0, ""));
        assert_eq!(be(&s, 1, 51744, "physical-device").as_deref(), Some("fe:3"));
        assert_eq!(log(&s.host).len(), 2, "no loop device for a block device");
    }

    #[test]
    fn block_attach_refuses_a_used_vdev_and_a_shared_target() {
        let s = web_running("vbd-attach-used");
        for (spec, want) in [
            (
                "/srv/data.img,raw,xvda,r",
                "keelctl: block-attach: domain 'web': disk xvda: domain 1 has a disk xvda already (vbd 51712): detach it first or choose another vdev\n",
            ),
            ("/srv/data.img,raw,51712,r", "disk 51712: domain 1 has a disk 51712 already (vbd 51712)"),
            (
                "/srv/web.img,raw,xvdb,r",
                "disk xvdb: /srv/web.img is attached read-write to domain 1 (its vbd 51712)",
            ),
            ("/srv/missing.img,raw,xvdb,r", "disk xvdb: cannot use /srv/missing.img"),
            ("/srv/data.img,raw,xvdb,rw,nonsense", "invalid disk spec '/srv/data.img,raw,xvdb,rw,nonsense'"),
        ] {
            let (rc, err) = keelctl(&s, &["block-attach", "web", spec]);
            assert_eq!(rc, crate::EXIT_ERROR, "{spec}");
            assert!(err.contains(want), "{spec}: {err}");
        }
        // Nothing bound, nothing written, xvda as it was.
        assert_eq!(log(&s.host), ["attach 0 /srv/web.img rw"]);
        assert!(s
            .store
            .under("/local/domain/0/backend/vbd/1/51728")
            .is_empty());
        assert_eq!(be(&s, 1, 51712, "params").as_deref(), Some("/srv/web.img"));
    }

    #[test]
    fn hot_plug_refuses_domain_0_and_unknown_domains() {
        let s = web_running("vbd-attach-dom0");
        s.store.set("/local/domain/0/name", "Domain-0");
        for (args, want) in [
            (
                &["block-attach", "Domain-0", "/srv/data.img,raw,xvdb,r"][..],
                "keelctl: block-attach: Domain-0's disks are its own kernel's: keelctl attaches and detaches those of other domains only\n",
            ),
            (&["block-detach", "0", "xvda"], "Domain-0's disks are its own kernel's"),
            (&["network-attach", "0"], "Domain-0's network interfaces are its own kernel's"),
            (&["network-detach", "Domain-0", "0"], "Domain-0's network interfaces are its own kernel's"),
            (
                &["block-attach", "nope", "/srv/data.img,raw,xvdb,r"],
                "keelctl: block-attach: domain 'nope' does not exist\n",
            ),
            (&["block-detach", "-f", "9", "xvda"], "keelctl: block-detach: domain '9' does not exist\n"),
            (&["network-attach", "nope"], "keelctl: network-attach: domain 'nope' does not exist\n"),
            (&["network-detach", "9", "0"], "keelctl: network-detach: domain '9' does not exist\n"),
        ] {
            let (rc, err) = keelctl(&s, args);
            assert_eq!(rc, crate::EXIT_ERROR, "{args:?}");
            assert!(err.contains(want) && err.ends_with('\n'), "{args:?}: {err}");
        }
        assert_eq!(log(&s.host), ["attach 0 /srv/web.img rw"]);
        assert!(s.store.under("/local/domain/0/backend/vbd/0").is_empty());
        assert_eq!(be(&s, 1, 51712, "state").as_deref(), Some("4"));
    }

    #[test]
    fn block_detach_of_a_disk_the_guest_releases() {
        let s = web_running("vbd-detach");
        keelctl(&s, &["block-attach", "web", "/dev/vg/data,raw,xvdb,r"]);
        s.store.guest_releases.set(true);
        s.store.events.borrow_mut().clear();
        let before = s.store.batches.borrow().len();
        let (rc, err) = keelctl(&s, &["block-detach", "web", "xvda"]);
        assert_eq!((rc, err.as_str()), (0, ""));
        // Offline and Closing in one transaction; the frontend left to the
        // guest (not removed first), which closed; then the records.
        let offline: Vec<(String, String)> = s.store.batches.borrow()[before]
            .iter()
            .map(|n| (n.path.clone(), n.value.clone()))
            .collect();
        let b = "/local/domain/0/backend/vbd/1/51712";
        assert_eq!(
            offline,
            [
                (format!("{b}/online"), "0".to_string()),
                (format!("{b}/state"), "5".to_string())
            ]
        );
        assert_eq!(
            *s.store.events.borrow(),
            [
                format!("publish #{before}"),
                "rm /libxl/1/device/vbd/51712".to_string(),
                "rm /local/domain/1/device/vbd/51712".to_string(),
                format!("rm {b}"),
            ]
        );
        assert_eq!(log(&s.host), ["attach 0 /srv/web.img rw", "detach 0"]);
        assert!(s.host.loops.borrow().is_empty());
        for gone in [
            b,
            "/local/domain/1/device/vbd/51712",
            "/libxl/1/device/vbd/51712",
        ] {
            assert!(s.store.under(gone).is_empty(), "{gone}");
        }
        // xvdb stays; then it goes too, by its number (a block device:
        // no loop device to unbind), and dom0's directory for the domain.
        assert_eq!(be(&s, 1, 51728, "params").as_deref(), Some("/dev/vg/data"));
        let (rc, err) = keelctl(&s, &["block-detach", "web", "51728"]);
        assert_eq!((rc, err.as_str()), (0, ""));
        assert!(s.store.under("/local/domain/0/backend/vbd/1").is_empty());
        assert!(s.b.block_list(&DomainRef::Id(1)).unwrap().is_empty());
        assert_eq!(log(&s.host).len(), 2);
        assert!(s.warnings.borrow().is_empty(), "{:?}", s.warnings.borrow());
        // Gone now, and never there.
        for (dev, want) in [
            (
                "xvda",
                "keelctl: block-detach: domain 'web': domain 1 has no disk xvda (vbd 51712)\n",
            ),
            ("xvd1", "keelctl: block-detach: invalid vdev 'xvd1'"),
        ] {
            let (rc, err) = keelctl(&s, &["block-detach", "web", dev]);
            assert_eq!(rc, crate::EXIT_ERROR, "{dev}");
            assert!(err.starts_with(want), "{dev}: {err}");
        }
    }

    #[test]
    fn block_detach_of_a_disk_in_use_fails_unless_forced() {
        let s = web_running("vbd-detach-busy");
        // blkfront keeps a mounted disk: it never closes.
        let t0 = Instant::now();
        let (rc, err) = keelctl(&s, &["block-detach", "web", "xvda"]);
        assert!(t0.elapsed() >= Duration::from_millis(150));
        assert_eq!(rc, crate::EXIT_ERROR);
        assert_eq!(
            err,
            "keelctl: block-detach: domain 'web': the guest did not release xvda (still in use?): blkback left /local/domain/0/backend/vbd/1/51712 in state 5, not 6 (Closed), for 0.1 s; it stays attached (block-detach -f removes it anyway)\n"
        );
        // Still attached: records, backend back online as it was, the
        // loop device bound.
        assert_eq!(be(&s, 1, 51712, "online").as_deref(), Some("1"));
        assert_eq!(be(&s, 1, 51712, "state").as_deref(), Some("4"));
        assert_eq!(
            s.store
                .value("/local/domain/1/device/vbd/51712/state")
                .as_deref(),
            Some("4")
        );
        assert_eq!(s.b.block_list(&DomainRef::Id(1)).unwrap().len(), 1);
        assert_eq!(log(&s.host), ["attach 0 /srv/web.img rw"]);
        // -f: the frontend goes, blkback closes, all removed.
        let (rc, err) = keelctl(&s, &["block-detach", "-f", "web", "xvda"]);
        assert_eq!((rc, err.as_str()), (0, ""));
        assert!(s.store.under("/local/domain/0/backend/vbd/1").is_empty());
        assert!(s.store.under("/local/domain/1/device/vbd/51712").is_empty());
        assert!(s.store.under("/libxl/1/device/vbd/51712").is_empty());
        assert_eq!(log(&s.host), ["attach 0 /srv/web.img rw", "detach 0"]);
        assert!(s.warnings.borrow().is_empty(), "{:?}", s.warnings.borrow());
    }

    #[test]
    fn forced_detach_removes_a_disk_blkback_does_not_close() {
        let s = web_running("vbd-detach-stuck");
        s.store.blkback.set(false);
        let (rc, err) = keelctl(&s, &["block-detach", "-f", "web", "xvda"]);
        assert_eq!((rc, err.as_str()), (0, ""));
        assert_eq!(
            *s.warnings.borrow(),
            ["disk 51712 of domain 1: blkback did not close /local/domain/0/backend/vbd/1/51712 within 0.1 s (state 5, not 6): removing it anyway"]
        );
        assert!(s.store.under("/local/domain/0/backend/vbd/1").is_empty());
        assert_eq!(log(&s.host), ["attach 0 /srv/web.img rw", "detach 0"]);
    }
}
