//! The xenstore records of a domU's split-driver devices, as Xen 4.17's
//! libxl writes them to add a disk (`vbd`) or a network interface (`vif`),
//! so that dom0's unmodified Linux xen-blkback/xen-netback and the guest's
//! xen-blkfront/xen-netfront find each other and connect.
//!
//! Pure: [`vbd_records`] and [`vif_records`] return [`DeviceRecords`]
//! (paths, values, permissions as [`Node`]s, the type
//! [`crate::domu::xenstore_nodes`] uses); the caller writes them through
//! keelctl's xenstore client, in one transaction.
//!
//! Where each record comes from (Xen 4.17, tools/libs/light):
//!
//! * paths: `libxl__device_backend_path`, `libxl__device_frontend_path`,
//!   `libxl__device_libxl_path` (libxl_device.c);
//! * the directories and their permissions: `libxl__device_generic_add`:
//!   the backend directory owned by the backend domain and readable by the
//!   guest, the frontend directory owned by the guest and readable by the
//!   backend, each with its `frontend`/`backend` pointer to the other;
//! * the disk's keys: `device_disk_add` (libxl_disk.c), its defaults from
//!   `libxl__device_disk_setdefault` and xl's disk parser (a cdrom is
//!   removable and read-only; `discard-enable` follows the access mode);
//! * the NIC's keys: `libxl__device_add_async` (libxl_device.c) and
//!   `libxl__set_xenstore_nic`, defaults from `libxl__device_nic_setdefault`
//!   (libxl_nic.c).
//!
//! What the drivers read of them (Linux drivers/block/xen-blkback/xenbus.c,
//! drivers/net/xen-netback/xenbus.c, and the xenbus core): `frontend`,
//! `frontend-id`, `online` and `state` (xenbus, both kinds); blkback
//! watches `physical-device` (`major:minor` in hex, written by the `block`
//! hotplug script, see [`PhysicalDevice`]) and then reads `mode` (`w` in it
//! means writable), `discard-enable`, `dev` (its thread's name) and the
//! frontend's `device-type`; netback reads `script` (it fails the device
//! when absent), `handle`, `mac`, `rate`, and holds the Connected state
//! until `hotplug-status` reads `connected` (see
//! [`DeviceRecords::hotplug_connected`]). The toolstack writes no
//! `feature-*` key: the drivers advertise their own (blkback
//! `feature-max-indirect-segments`, `feature-flush-cache`,
//! `feature-discard`, `feature-persistent`...; netback `feature-sg`,
//! `feature-gso-tcpv4`, `feature-rx-copy`, `feature-ctrl-ring`...) and the
//! frontends theirs.
//!
//! The `/libxl/<domid>/device/<kind>/<devid>` records are written too:
//! `xl` lists a domain's devices (`block-list`, `network-list`), refuses a
//! second device with the same id (`libxl__device_exists`) and tears them
//! down on `destroy` (`libxl__devices_destroy`) from that directory, so a
//! domain keelctl made stays manageable by a stock `xl`.

use std::fmt;

use keel_xlcfg::disk::{DiskBackendType, DiskSpecification};
use keel_xlcfg::{DiskAccess, DiskFormat, DiskSpec, MacAddr, VifSpec, VifType};

use crate::xen::Node;

/// Where libxl finds relative hotplug script names
/// (`libxl__xen_script_dir_path()`, Debian's `XEN_SCRIPT_DIR`).
pub const SCRIPT_DIR: &str = "/etc/xen/scripts";
/// The disk hotplug script libxl names for a `phy` disk without `script=`.
pub const DEFAULT_BLOCK_SCRIPT: &str = "block";
/// The NIC hotplug script libxl names without `script=`.
pub const DEFAULT_VIF_SCRIPT: &str = "vif-bridge";
/// The bridge libxl puts a NIC on without `bridge=`.
pub const DEFAULT_BRIDGE: &str = "xenbr0";
/// `LIBXL_DEVICE_NIC_MTU_DEFAULT`.
pub const DEFAULT_MTU: u32 = 1500;
/// Xen's organisationally unique identifier, the first half of every
/// MAC address libxl makes up.
pub const XEN_OUI: [u8; 3] = [0x00, 0x16, 0x3e];

/// The toolstack's domain: owner of `/libxl/...` (`LIBXL_TOOLSTACK_DOMID`).
const TOOLSTACK_DOMID: u16 = 0;

/// The xenbus state machine (xen/include/public/io/xenbus.h), as each end
/// writes it, in decimal, to its `state` node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum XenbusState {
    Unknown = 0,
    /// What the toolstack writes for both ends of a new device.
    Initialising = 1,
    /// A backend waiting for its frontend (blkback: also for the
    /// hotplug script's `physical-device`).
    InitWait = 2,
    Initialised = 3,
    Connected = 4,
    Closing = 5,
    Closed = 6,
    Reconfiguring = 7,
    Reconfigured = 8,
}

impl XenbusState {
    /// Every state, in numeric order.
    pub const ALL: [XenbusState; 9] = [
        XenbusState::Unknown,
        XenbusState::Initialising,
        XenbusState::InitWait,
        XenbusState::Initialised,
        XenbusState::Connected,
        XenbusState::Closing,
        XenbusState::Closed,
        XenbusState::Reconfiguring,
        XenbusState::Reconfigured,
    ];

    /// The state's number.
    pub fn value(self) -> u8 {
        self as u8
    }

    /// The state with number `v`, if there is one.
    pub fn from_value(v: u32) -> Option<XenbusState> {
        XenbusState::ALL.get(usize::try_from(v).ok()?).copied()
    }

    /// The state's name, as Linux's `xenbus_strstate` spells it.
    pub fn name(self) -> &'static str {
        match self {
            XenbusState::Unknown => "Unknown",
            XenbusState::Initialising => "Initialising",
            XenbusState::InitWait => "InitWait",
            XenbusState::Initialised => "Initialised",
            XenbusState::Connected => "Connected",
            XenbusState::Closing => "Closing",
            XenbusState::Closed => "Closed",
            XenbusState::Reconfiguring => "Reconfiguring",
            XenbusState::Reconfigured => "Reconfigured",
        }
    }

    /// The value a `state` node holds for this state (`"4"`).
    pub fn to_xenstore(self) -> String {
        self.value().to_string()
    }

    /// A `state` node's value: a decimal number from 0 to 8 (surrounding
    /// whitespace and a trailing NUL are tolerated).
    pub fn parse(s: &str) -> Result<XenbusState, String> {
        let t = s.trim_end_matches('\0').trim();
        let v = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            t.parse::<u32>().ok().and_then(XenbusState::from_value)
        } else {
            None
        };
        v.ok_or_else(|| {
            format!("invalid xenbus state {s:?}: expected a number from 0 (Unknown) to 8 (Reconfigured)")
        })
    }
}

impl fmt::Display for XenbusState {
    /// `Connected (4)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.value())
    }
}

impl std::str::FromStr for XenbusState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        XenbusState::parse(s)
    }
}

/// The device kinds this module writes, named as in xenstore paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// A disk: blkback / blkfront.
    Vbd,
    /// A network interface: netback / netfront.
    Vif,
}

impl DeviceKind {
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Vbd => "vbd",
            DeviceKind::Vif => "vif",
        }
    }
}

/// The largest disk index the `xvd` and `dNpM` names reach (libxl's
/// `(1<<20)-1`: 20 bits of the extended device number).
const MAX_XVD_DISK: u32 = (1 << 20) - 1;
/// Set in an extended (`(1<<28)|(disk<<8)|part`) device number.
const EXTENDED: u32 = 1 << 28;
/// The Linux major of the `xvd` devices.
const XVD_MAJOR: u32 = 202;

/// The drive letters of disk index `n`, as Linux and libxl spell them
/// (`a`..`z`, `aa`..`zz`, `aaa`...).
pub fn disk_letters(mut n: u32) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'a' + (n % 26) as u8);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII")
}

/// The Xen device number of disk `disk`, partition `part`: the compact
/// form `(202<<8)|(disk<<4)|part` for disks and partitions under 16, the
/// extended form `(1<<28)|(disk<<8)|part` otherwise.
fn xen_number(disk: u32, part: u32) -> u32 {
    if disk <= 15 && part <= 15 {
        (XVD_MAJOR << 8) | (disk << 4) | part
    } else {
        EXTENDED | (disk << 8) | part
    }
}

/// A decimal number without a sign or leading zeros.
fn plain_decimal(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    // Too many digits overflow: the callers' range checks then refuse.
    Some(s.parse().unwrap_or(u32::MAX))
}

/// `prefix` + drive letters + optional partition (`xvdb3`), as libxl's
/// `device_virtdisk_matches` decodes them: (disk index, partition).
fn letters_and_partition(
    vdev: &str,
    prefix: &str,
    rest: &str,
    max_disk: u32,
    max_part: u32,
) -> Result<(u32, u32), String> {
    let bad = |why: String| format!("invalid vdev '{vdev}': {why}");
    let n = rest.bytes().take_while(u8::is_ascii_lowercase).count();
    if n == 0 {
        return Err(bad(format!(
            "no drive letter after '{prefix}' (e.g. {prefix}a, {prefix}b1)"
        )));
    }
    let mut disk: u32 = 0;
    for (i, c) in rest[..n].bytes().enumerate() {
        let c = (c - b'a') as u32;
        disk = if i == 0 { c } else { (disk + 1) * 26 + c };
        if disk > max_disk {
            return Err(bad(format!(
                "the last {prefix} disk is {prefix}{}",
                disk_letters(max_disk)
            )));
        }
    }
    let part = &rest[n..];
    if part.is_empty() {
        return Ok((disk, 0));
    }
    if part.starts_with('0') {
        return Err(bad(
            "a partition number has no leading zero (the whole disk has none)".into(),
        ));
    }
    let p = plain_decimal(part).ok_or_else(|| {
        bad(format!(
            "unexpected '{part}' after the drive letters (expected a partition number)"
        ))
    })?;
    if p > max_part {
        return Err(bad(format!(
            "partition {p} is beyond the last one {prefix} names have ({max_part})"
        )));
    }
    Ok((disk, p))
}

/// A number as C's `strtoul(s, _, 0)` reads it: `0x` hexadecimal, a
/// leading `0` octal, else decimal; the whole string, no sign.
fn c_number(s: &str) -> Option<u64> {
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    // Overflow: far beyond the range the caller accepts.
    Some(u64::from_str_radix(digits, radix).unwrap_or(u64::MAX))
}

/// Xen's virtual device number of a guest device name (libxl's
/// `libxl__device_disk_dev_number`), which is also the vbd's device id:
///
/// * `xvdX[N]` (`X`: letters `a`..`bgqcv`, `N`: 1..255) and `dDpP`
///   (`D` < 2^20, `P` < 256): `(202<<8)|(disk<<4)|part` when both are
///   under 16, else `(1<<28)|(disk<<8)|part` (xvda = 51712, xvdq =
///   `(1<<28)|(16<<8)`);
/// * `hdX[N]` (hda..hdd, N ≤ 63): majors 3 and 22, two disks each, 64
///   minors per disk (hda = 768, hdc = 5632);
/// * `sdX[N]` (sda..sdp, N ≤ 15): `(8<<8)|(disk<<4)|part` (sda = 2048);
/// * a number (decimal, `0x` hex or `0` octal, as `strtoul` reads it) up
///   to 2^31-1, taken as is.
///
/// Stricter than libxl where libxl reads garbage: names without a drive
/// letter (`xvd1`), signs, and an empty name are refused.
pub fn vdev_number(vdev: &str) -> Result<u32, String> {
    if vdev.is_empty() {
        return Err("invalid vdev '': empty (expected a name such as xvda)".into());
    }
    if let Some(rest) = vdev.strip_prefix("xvd") {
        let (disk, part) = letters_and_partition(vdev, "xvd", rest, MAX_XVD_DISK, 255)?;
        return Ok(xen_number(disk, part));
    }
    if let Some(rest) = vdev.strip_prefix("hd") {
        let (disk, part) = letters_and_partition(vdev, "hd", rest, 3, 63)?;
        let major = if disk < 2 { 3 } else { 22 };
        return Ok((major << 8) | ((disk & 1) << 6) | part);
    }
    if let Some(rest) = vdev.strip_prefix("sd") {
        let (disk, part) = letters_and_partition(vdev, "sd", rest, 15, 15)?;
        return Ok((8 << 8) | (disk << 4) | part);
    }
    if let Some(rest) = vdev.strip_prefix('d') {
        let bad = |why: &str| format!("invalid vdev '{vdev}': {why}");
        let Some((d, p)) = rest.split_once('p') else {
            return Err(bad(
                "the dN form needs a partition: dNpM, where dNp0 is the whole disk",
            ));
        };
        let disk = plain_decimal(d)
            .ok_or_else(|| bad("expected dNpM with decimal N and M, without leading zeros"))?;
        let part = plain_decimal(p)
            .ok_or_else(|| bad("expected dNpM with decimal N and M, without leading zeros"))?;
        if disk > MAX_XVD_DISK {
            return Err(bad(&format!("the disk number is at most {MAX_XVD_DISK}")));
        }
        if part > 255 {
            return Err(bad("the partition number is at most 255"));
        }
        return Ok(xen_number(disk, part));
    }
    if vdev.starts_with(|c: char| c.is_ascii_digit()) {
        return match c_number(vdev) {
            Some(n) if n <= i32::MAX as u64 => Ok(n as u32),
            Some(_) => Err(format!(
                "invalid vdev '{vdev}': a device number is at most {}",
                i32::MAX
            )),
            None => Err(format!(
                "invalid vdev '{vdev}': not a number (decimal, 0x hex or 0 octal)"
            )),
        };
    }
    Err(format!(
        "invalid vdev '{vdev}': expected xvdX[N], hdX[N], sdX[N], dNpM or a device number"
    ))
}

/// A MAC address as libxl makes one up for a NIC without `mac=`: Xen's
/// OUI 00:16:3e, then three random bytes with the top bit of the first
/// cleared (`libxl__device_nic_setdefault`). The caller supplies the
/// random bytes.
pub fn default_mac(rand: [u8; 3]) -> MacAddr {
    let [a, b, c] = XEN_OUI;
    MacAddr([a, b, c, rand[0] & 0x7f, rand[1], rand[2]])
}

/// The block device blkback opens for a disk, as the `block` hotplug
/// script reports it (`write_dev` in block-common.sh): the device itself
/// for a block-device target, the loop device it set up for an image file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhysicalDevice {
    pub major: u32,
    pub minor: u32,
    /// Its `/dev` path (`/dev/loop0`).
    pub path: String,
}

/// The records of one device.
///
/// Each list starts with its directory's node (empty value) and gives
/// every node its permissions explicitly, as the directory's would be
/// inherited: the backend's `n<back>, r<front>`, the frontend's
/// `n<front>, r<back>` (but the frontend's read-only keys, a NIC's `mtu`,
/// `n<back>, r<front>`: the guest may read, not change them), libxl's
/// `n0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecords {
    pub kind: DeviceKind,
    pub backend_domid: u16,
    pub frontend_domid: u16,
    /// The device id: a vbd's is its vdev's number ([`vdev_number`]).
    pub devid: u32,
    /// `/local/domain/<back>/backend/<kind>/<front>/<devid>`.
    pub backend_path: String,
    /// `/local/domain/<front>/device/<kind>/<devid>`.
    pub frontend_path: String,
    /// `/libxl/<front>/device/<kind>/<devid>`.
    pub libxl_path: String,
    /// The backend directory: what the backend driver reads.
    pub backend: Vec<Node>,
    /// The frontend directory: what the guest's driver reads.
    pub frontend: Vec<Node>,
    /// libxl's own copy: pointers to both ends and the backend's keys as
    /// libxl wrote them (never updated afterwards, as in libxl).
    pub libxl: Vec<Node>,
}

impl DeviceRecords {
    /// Every node, in the order libxl writes them (libxl's pointers,
    /// frontend, backend, libxl's copy); to be written in one
    /// transaction, after removing [`roots`](Self::roots) as
    /// `libxl__device_generic_add` does.
    pub fn nodes(&self) -> Vec<Node> {
        let (ptrs, copy) = self.libxl.split_at(self.libxl.len().min(2));
        let mut v = ptrs.to_vec();
        v.extend_from_slice(&self.frontend);
        v.extend_from_slice(&self.backend);
        v.extend_from_slice(copy);
        v
    }

    /// The directories the records live in: to clear stale ones before
    /// writing, and to remove when the device goes.
    pub fn roots(&self) -> Vec<String> {
        vec![
            self.libxl_path.clone(),
            self.frontend_path.clone(),
            self.backend_path.clone(),
        ]
    }

    /// What a hotplug script writes when it has done its work
    /// (`success` in xen-hotplug-common.sh): `hotplug-status =
    /// connected` in the backend directory. netback holds back its
    /// Connected state until it reads this (a vif's records start with
    /// it empty); for a vbd, [`vbd_records`] writes it with `physical`.
    pub fn hotplug_connected(&self) -> Node {
        Node {
            path: format!("{}/hotplug-status", self.backend_path),
            value: "connected".into(),
            perms: self.backend_perms(),
        }
    }

    fn backend_perms(&self) -> Vec<String> {
        perms(self.backend_domid, self.frontend_domid)
    }
}

/// Owner `owner` (nobody else may write), readable by `reader`.
fn perms(owner: u16, reader: u16) -> Vec<String> {
    vec![format!("n{owner}"), format!("r{reader}")]
}

/// The keys libxl hands `libxl__device_generic_add`: backend (`bents`),
/// frontend (`fents`), read-only frontend (`ro_fents`), plus what the
/// hotplug script would write to the backend (not copied to libxl's
/// directory).
#[derive(Default)]
struct Entries {
    back: Vec<(&'static str, String)>,
    front: Vec<(&'static str, String)>,
    ro_front: Vec<(&'static str, String)>,
    script: Vec<(&'static str, String)>,
}

fn assemble(kind: DeviceKind, back: u16, front: u16, devid: u32, e: Entries) -> DeviceRecords {
    let k = kind.name();
    let backend_path = format!("/local/domain/{back}/backend/{k}/{front}/{devid}");
    let frontend_path = format!("/local/domain/{front}/device/{k}/{devid}");
    let libxl_path = format!("/libxl/{front}/device/{k}/{devid}");
    let (be, fe, ro) = (perms(back, front), perms(front, back), perms(back, front));
    let libxl_perms = vec![format!("n{TOOLSTACK_DOMID}")];
    let node = |dir: &str, key: &str, value: String, p: &Vec<String>| Node {
        path: if key.is_empty() {
            dir.to_string()
        } else {
            format!("{dir}/{key}")
        },
        value,
        perms: p.clone(),
    };

    let mut frontend = vec![
        node(&frontend_path, "", String::new(), &fe),
        node(&frontend_path, "backend", backend_path.clone(), &fe),
    ];
    frontend.extend(
        e.front
            .into_iter()
            .map(|(key, v)| node(&frontend_path, key, v, &fe)),
    );
    frontend.extend(
        e.ro_front
            .into_iter()
            .map(|(key, v)| node(&frontend_path, key, v, &ro)),
    );

    let mut backend = vec![
        node(&backend_path, "", String::new(), &be),
        node(&backend_path, "frontend", frontend_path.clone(), &be),
    ];
    backend.extend(
        e.back
            .iter()
            .map(|(key, v)| node(&backend_path, key, v.clone(), &be)),
    );
    backend.extend(
        e.script
            .into_iter()
            .map(|(key, v)| node(&backend_path, key, v, &be)),
    );

    let mut libxl = vec![
        node(&libxl_path, "frontend", frontend_path.clone(), &libxl_perms),
        node(&libxl_path, "backend", backend_path.clone(), &libxl_perms),
    ];
    libxl.extend(
        e.back
            .into_iter()
            .map(|(key, v)| node(&libxl_path, key, v, &libxl_perms)),
    );

    DeviceRecords {
        kind,
        backend_domid: back,
        frontend_domid: front,
        devid,
        backend_path,
        frontend_path,
        libxl_path,
        backend,
        frontend,
        libxl,
    }
}

/// A hotplug script path as libxl writes it (`libxl__abs_path`): as given
/// when absolute, else under [`SCRIPT_DIR`].
fn script_path(s: &str) -> String {
    if s.starts_with('/') {
        s.to_string()
    } else {
        format!("{SCRIPT_DIR}/{s}")
    }
}

fn flag(b: bool) -> String {
    if b { "1" } else { "0" }.into()
}

/// The records that add `disk` to domain `frontend_domid`, served by
/// blkback in `backend_domid`, as libxl's `device_disk_add` writes them
/// for a `phy` disk. The device id is the vdev's number.
///
/// Backend: `frontend`, `params` (the target), `script` (`block` or the
/// disk's `script=`), `frontend-id`, `online`=1, `removable` (1 for a
/// cdrom), `bootable`=1, `state`=1, `dev` (the vdev), `type`=phy, `mode`
/// (`w`/`r`), `device-type` (disk/cdrom), `direct-io-safe` (only when
/// set), `discard-enable` (default: 1 when writable), `specification`=xen.
/// Frontend: `backend`, `backend-id`, `state`=1, `virtual-device` (the
/// number), `device-type`, `trusted` (default 1). libxl writes no
/// `protocol` for a PVH guest.
///
/// `physical`: when the caller has done the `block` script's work itself
/// (found the block device, set up a loop device for an image file), the
/// script's records too: `physical-device` (`major:minor` in hex, as
/// `stat -c %t:%T` prints it), `physical-device-path` and
/// `hotplug-status`=connected; blkback opens the device as soon as it
/// sees them. `None`: the script writes them later.
///
/// Refused: formats other than raw and backend types other than phy
/// (keel serves raw files and block devices through blkback only: no
/// QEMU qdisk), an empty cdrom drive (libxl gives it a qdisk), a virtio
/// disk, a vdev [`vdev_number`] refuses.
pub fn vbd_records(
    backend_domid: u16,
    frontend_domid: u16,
    disk: &DiskSpec,
    physical: Option<&PhysicalDevice>,
) -> Result<DeviceRecords, String> {
    let vdev = &disk.vdev;
    let devid = vdev_number(vdev).map_err(|e| format!("disk {vdev}: {e}"))?;
    if disk.specification == Some(DiskSpecification::Virtio) {
        return Err(format!(
            "disk {vdev}: specification=virtio is not supported: keel serves Xen PV disks (blkback/blkfront) only"
        ));
    }
    match disk.backend_type {
        None | Some(DiskBackendType::Phy) => {}
        Some(t) => {
            let name = match t {
                DiskBackendType::Qdisk => "qdisk",
                _ => "standalone",
            };
            return Err(format!(
                "disk {vdev}: backendtype={name} is not supported: keel serves raw files and block devices through dom0's blkback only (backendtype=phy)"
            ));
        }
    }
    if disk.format != DiskFormat::Raw {
        return Err(format!(
            "disk {vdev}: format={} is not supported: keel serves raw files and block devices only (blkback reads no image format; convert it with `qemu-img convert -O raw`)",
            disk.format.name()
        ));
    }
    let Some(target) = disk.target.as_deref() else {
        return Err(format!(
            "disk {vdev}: an empty cdrom drive is not supported: libxl serves it with QEMU's qdisk, and keel serves raw files and block devices only"
        ));
    };
    let writable = disk.access == DiskAccess::ReadWrite;
    let device_type = if disk.cdrom { "cdrom" } else { "disk" };
    let mut e = Entries::default();
    e.back.push(("params", target.to_string()));
    e.back.push((
        "script",
        script_path(disk.script.as_deref().unwrap_or(DEFAULT_BLOCK_SCRIPT)),
    ));
    e.back.push(("frontend-id", frontend_domid.to_string()));
    e.back.push(("online", "1".into()));
    e.back.push(("removable", flag(disk.cdrom)));
    e.back.push(("bootable", "1".into()));
    e.back
        .push(("state", XenbusState::Initialising.to_xenstore()));
    e.back.push(("dev", vdev.clone()));
    e.back.push(("type", "phy".into()));
    e.back
        .push(("mode", if writable { "w" } else { "r" }.into()));
    e.back.push(("device-type", device_type.into()));
    if disk.direct_io_safe {
        e.back.push(("direct-io-safe", "1".into()));
    }
    e.back
        .push(("discard-enable", flag(disk.discard.unwrap_or(writable))));
    e.back.push(("specification", "xen".into()));

    e.front.push(("backend-id", backend_domid.to_string()));
    e.front
        .push(("state", XenbusState::Initialising.to_xenstore()));
    e.front.push(("virtual-device", devid.to_string()));
    e.front.push(("device-type", device_type.into()));
    e.front
        .push(("trusted", flag(disk.trusted.unwrap_or(true))));

    if let Some(p) = physical {
        e.script
            .push(("physical-device", format!("{:x}:{:x}", p.major, p.minor)));
        e.script.push(("physical-device-path", p.path.clone()));
        e.script.push(("hotplug-status", "connected".into()));
    }
    Ok(assemble(
        DeviceKind::Vbd,
        backend_domid,
        frontend_domid,
        devid,
        e,
    ))
}

/// The records that add network interface `devid` (the caller's choice:
/// libxl takes `devid=` from the spec, else one past the highest) to
/// domain `frontend_domid`, served by netback in `backend_domid`, as
/// `libxl__device_add_async` and `libxl__set_xenstore_nic` write them.
/// `fallback_mac` is used when the spec has no `mac=` (see
/// [`default_mac`]).
///
/// Backend: `frontend`, `frontend-id`, `online`=1, `state`=1, `script`
/// (`vif-bridge` or `script=`), `vifname` (if set), `mac`, `ip`,
/// `gatewaydev` (if set), `rate` (`bytes-per-interval,interval-µs`, if
/// set), `mtu` (if not 1500), `bridge` (default xenbr0), `handle` (the
/// devid), `type`=vif, and `hotplug-status` empty, so netback waits for
/// the hotplug script ([`DeviceRecords::hotplug_connected`]) before it
/// connects. Frontend: `backend`, `backend-id`, `state`=1, `handle`,
/// `mac`, `trusted` (default 1), and `mtu`, which the guest may only
/// read.
///
/// Refused: `type=ioemu` (an emulated NIC: keel domains are PVH, as
/// libxl refuses it for PVH), a spec `devid=` other than `devid`.
pub fn vif_records(
    backend_domid: u16,
    frontend_domid: u16,
    devid: u32,
    vif: &VifSpec,
    fallback_mac: MacAddr,
) -> Result<DeviceRecords, String> {
    if vif.vif_type == Some(VifType::Ioemu) {
        return Err(format!(
            "vif {devid}: type=ioemu is an emulated NIC, which needs QEMU: keel domains are PVH and get PV interfaces (type=vif) only"
        ));
    }
    if let Some(d) = vif.devid.filter(|d| *d != devid) {
        return Err(format!(
            "vif {devid}: the spec asks for devid={d}, not {devid}"
        ));
    }
    let mac = vif.mac.unwrap_or(fallback_mac).to_string();
    let mtu = vif.mtu.unwrap_or(DEFAULT_MTU);
    let mut e = Entries::default();
    e.back.push(("frontend-id", frontend_domid.to_string()));
    e.back.push(("online", "1".into()));
    e.back
        .push(("state", XenbusState::Initialising.to_xenstore()));
    e.back.push((
        "script",
        script_path(vif.script.as_deref().unwrap_or(DEFAULT_VIF_SCRIPT)),
    ));
    if let Some(n) = &vif.vifname {
        e.back.push(("vifname", n.clone()));
    }
    e.back.push(("mac", mac.clone()));
    if let Some(ip) = &vif.ip {
        e.back.push(("ip", ip.clone()));
    }
    if let Some(g) = &vif.gatewaydev {
        e.back.push(("gatewaydev", g.clone()));
    }
    if let Some(r) = vif.rate {
        e.back.push((
            "rate",
            format!("{},{}", r.bytes_per_interval(), r.interval_us),
        ));
    }
    if mtu != DEFAULT_MTU {
        e.back.push(("mtu", mtu.to_string()));
    }
    e.back.push((
        "bridge",
        vif.bridge.as_deref().unwrap_or(DEFAULT_BRIDGE).to_string(),
    ));
    e.back.push(("handle", devid.to_string()));
    e.back.push(("type", "vif".into()));
    e.back.push(("hotplug-status", String::new()));

    e.front.push(("backend-id", backend_domid.to_string()));
    e.front
        .push(("state", XenbusState::Initialising.to_xenstore()));
    e.front.push(("handle", devid.to_string()));
    e.front.push(("mac", mac));
    e.front.push(("trusted", flag(vif.trusted.unwrap_or(true))));
    e.ro_front.push(("mtu", mtu.to_string()));
    Ok(assemble(
        DeviceKind::Vif,
        backend_domid,
        frontend_domid,
        devid,
        e,
    ))
}

/// The domain of a backend path `/local/domain/<N>/...`.
pub fn backend_domid(path: &str) -> Option<u32> {
    path.strip_prefix("/local/domain/")?
        .split('/')
        .next()?
        .parse()
        .ok()
}

/// A number as libxl reads one (`strtoul`, stored in an `int`): the
/// leading digits, 0 without any.
pub fn c_int(s: &str) -> i64 {
    let digits: String = s
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let n: u64 = digits
        .parse()
        .unwrap_or(if digits.is_empty() { 0 } else { u64::MAX });
    n as u32 as i32 as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_xlcfg::{parse_disk_spec, parse_vif_spec};

    fn disk(s: &str) -> DiskSpec {
        parse_disk_spec(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn vif(s: &str) -> VifSpec {
        parse_vif_spec(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// (key relative to `dir`, value, perms) of `nodes`, in order.
    fn rel<'a>(dir: &str, nodes: &'a [Node]) -> Vec<(String, &'a str, String)> {
        nodes
            .iter()
            .map(|n| {
                let key = if n.path == dir {
                    String::new()
                } else {
                    n.path
                        .strip_prefix(&format!("{dir}/"))
                        .unwrap_or_else(|| panic!("{} is not under {dir}", n.path))
                        .to_string()
                };
                (key, n.value.as_str(), n.perms.join(","))
            })
            .collect()
    }

    fn own(v: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
        v.iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect()
    }

    fn same(dir: &str, nodes: &[Node], want: &[(&str, &str, &str)]) {
        let got: Vec<(String, String, String)> = rel(dir, nodes)
            .into_iter()
            .map(|(a, b, c)| (a, b.to_string(), c))
            .collect();
        assert_eq!(got, own(want), "under {dir}");
    }

    fn value<'a>(nodes: &'a [Node], path: &str) -> Option<&'a str> {
        nodes
            .iter()
            .find(|n| n.path == path)
            .map(|n| n.value.as_str())
    }

    #[test]
    fn typical_disk_records() {
        let r = vbd_records(0, 7, &disk("/srv/d.img,raw,xvda,rw"), None).unwrap();
        assert_eq!((r.kind, r.devid), (DeviceKind::Vbd, 51712));
        assert_eq!(r.backend_path, "/local/domain/0/backend/vbd/7/51712");
        assert_eq!(r.frontend_path, "/local/domain/7/device/vbd/51712");
        assert_eq!(r.libxl_path, "/libxl/7/device/vbd/51712");
        let be = "n0,r7";
        same(
            &r.backend_path,
            &r.backend,
            &[
                ("", "", be),
                ("frontend", "/local/domain/7/device/vbd/51712", be),
                ("params", "/srv/d.img", be),
                ("script", "/etc/xen/scripts/block", be),
                ("frontend-id", "7", be),
                ("online", "1", be),
                ("removable", "0", be),
                ("bootable", "1", be),
                ("state", "1", be),
                ("dev", "xvda", be),
                ("type", "phy", be),
                ("mode", "w", be),
                ("device-type", "disk", be),
                ("discard-enable", "1", be),
                ("specification", "xen", be),
            ],
        );
        let fe = "n7,r0";
        same(
            &r.frontend_path,
            &r.frontend,
            &[
                ("", "", fe),
                ("backend", "/local/domain/0/backend/vbd/7/51712", fe),
                ("backend-id", "0", fe),
                ("state", "1", fe),
                ("virtual-device", "51712", fe),
                ("device-type", "disk", fe),
                ("trusted", "1", fe),
            ],
        );
        // libxl's copy: both pointers, then the backend's keys (no
        // directory node, no `frontend` key of its own), owned by dom0.
        let l = rel(&r.libxl_path, &r.libxl);
        assert_eq!(
            l[..2],
            [
                (
                    "frontend".to_string(),
                    "/local/domain/7/device/vbd/51712",
                    "n0".to_string()
                ),
                (
                    "backend".to_string(),
                    "/local/domain/0/backend/vbd/7/51712",
                    "n0".to_string()
                ),
            ]
        );
        let copied: Vec<_> = l[2..].iter().map(|(k, v, _)| (k.as_str(), *v)).collect();
        let backend_keys: Vec<_> = rel(&r.backend_path, &r.backend)[2..]
            .iter()
            .map(|(k, v, _)| (k.clone(), *v))
            .collect();
        assert_eq!(
            copied,
            backend_keys
                .iter()
                .map(|(k, v)| (k.as_str(), *v))
                .collect::<Vec<_>>()
        );
        assert!(l.iter().all(|(_, _, p)| p == "n0"));
        // No script-written keys without `physical`.
        assert!(!r.backend.iter().any(|n| n.path.contains("physical-device")));
    }

    #[test]
    fn disk_in_a_driver_domain_swaps_the_permissions() {
        let r = vbd_records(3, 9, &disk("/dev/vg/x,raw,xvdb,w"), None).unwrap();
        assert_eq!(r.backend_path, "/local/domain/3/backend/vbd/9/51728");
        assert!(r.backend.iter().all(|n| n.perms == ["n3", "r9"]));
        assert!(r.frontend.iter().all(|n| n.perms == ["n9", "r3"]));
        assert_eq!(
            value(&r.frontend, "/local/domain/9/device/vbd/51728/backend-id"),
            Some("3")
        );
        assert_eq!(
            value(
                &r.backend,
                "/local/domain/3/backend/vbd/9/51728/frontend-id"
            ),
            Some("9")
        );
    }

    #[test]
    fn physical_device_as_the_block_script_writes_it() {
        let p = PhysicalDevice {
            major: 7,
            minor: 0,
            path: "/dev/loop0".into(),
        };
        let r = vbd_records(0, 7, &disk("/srv/d.img,raw,xvda,rw"), Some(&p)).unwrap();
        let tail: Vec<_> = rel(&r.backend_path, &r.backend)
            .into_iter()
            .rev()
            .take(3)
            .collect();
        assert_eq!(
            tail,
            [
                (
                    "hotplug-status".to_string(),
                    "connected",
                    "n0,r7".to_string()
                ),
                (
                    "physical-device-path".to_string(),
                    "/dev/loop0",
                    "n0,r7".to_string()
                ),
                ("physical-device".to_string(), "7:0", "n0,r7".to_string()),
            ]
        );
        // Hex, as `stat -c %t:%T` prints it and blkback scans it (%x:%x).
        let p = PhysicalDevice {
            major: 254,
            minor: 17,
            path: "/dev/dm-17".into(),
        };
        let r = vbd_records(0, 7, &disk("/dev/vg/x,raw,xvda,rw"), Some(&p)).unwrap();
        assert_eq!(
            value(
                &r.backend,
                "/local/domain/0/backend/vbd/7/51712/physical-device"
            ),
            Some("fe:11")
        );
        // The script's records are not libxl's: not in its copy.
        assert!(!r
            .libxl
            .iter()
            .any(|n| n.path.contains("physical") || n.path.ends_with("hotplug-status")));
    }

    #[test]
    fn read_only_cdrom() {
        let d = disk("/srv/install.iso,raw,hdc,devtype=cdrom");
        assert_eq!(d.access, DiskAccess::ReadOnly);
        let r = vbd_records(0, 4, &d, None).unwrap();
        assert_eq!(r.devid, 5632);
        let b = "/local/domain/0/backend/vbd/4/5632";
        for (k, v) in [
            ("mode", "r"),
            ("removable", "1"),
            ("device-type", "cdrom"),
            ("discard-enable", "0"),
            ("dev", "hdc"),
            ("params", "/srv/install.iso"),
        ] {
            assert_eq!(value(&r.backend, &format!("{b}/{k}")), Some(v), "{k}");
        }
        let f = "/local/domain/4/device/vbd/5632";
        assert_eq!(
            value(&r.frontend, &format!("{f}/device-type")),
            Some("cdrom")
        );
        assert_eq!(
            value(&r.frontend, &format!("{f}/virtual-device")),
            Some("5632")
        );
    }

    #[test]
    fn disk_options_reach_the_backend() {
        let r = vbd_records(
            0,
            2,
            &disk("/dev/sdb,raw,xvdc,w,direct-io-safe,no-discard,untrusted,script=block-dm"),
            None,
        )
        .unwrap();
        let b = "/local/domain/0/backend/vbd/2/51744";
        assert_eq!(value(&r.backend, &format!("{b}/direct-io-safe")), Some("1"));
        assert_eq!(value(&r.backend, &format!("{b}/discard-enable")), Some("0"));
        assert_eq!(
            value(&r.backend, &format!("{b}/script")),
            Some("/etc/xen/scripts/block-dm")
        );
        assert_eq!(
            value(&r.frontend, "/local/domain/2/device/vbd/51744/trusted"),
            Some("0")
        );
        let r = vbd_records(0, 2, &disk("/x,raw,xvda,w,script=/opt/blk"), None).unwrap();
        assert_eq!(
            value(&r.backend, "/local/domain/0/backend/vbd/2/51712/script"),
            Some("/opt/blk")
        );
    }

    #[test]
    fn unsupported_disks_are_refused() {
        for (spec, frag) in [
            (
                "/srv/d.qcow2,qcow2,xvda,rw",
                "format=qcow2 is not supported",
            ),
            ("/srv/d.vhd,vhd,xvda,rw", "raw files and block devices only"),
            (
                "/srv/d.img,raw,xvda,rw,backendtype=qdisk",
                "backendtype=qdisk",
            ),
            (
                "/srv/d.img,raw,xvda,rw,backendtype=standalone",
                "backendtype=standalone",
            ),
            ("/srv/d.img,raw,xvda,rw,specification=virtio", "virtio"),
            (",raw,hdc,devtype=cdrom", "empty cdrom"),
        ] {
            let e = vbd_records(0, 1, &disk(spec), None).expect_err(spec);
            assert!(e.contains(frag), "{spec}: {e}");
            assert!(e.starts_with("disk "), "{spec}: {e}");
        }
        // xlcfg takes `d12`; libxl (and so keel) needs dNpM.
        let e = vbd_records(0, 1, &disk("/srv/d.img,raw,d12,rw"), None).unwrap_err();
        assert!(
            e.contains("invalid vdev 'd12'") && e.contains("dNpM"),
            "{e}"
        );
    }

    #[test]
    fn vdev_numbers() {
        let ext = |disk: u32, part: u32| (1 << 28) | (disk << 8) | part;
        for (name, want) in [
            ("xvda", 51712),
            ("xvdb", 51728),
            ("xvda1", 51713),
            ("xvda15", 51727),
            ("xvdp", 51952),
            ("xvdp15", 51967),
            ("xvdq", ext(16, 0)),
            ("xvda16", ext(0, 16)),
            ("xvdb255", ext(1, 255)),
            ("xvdz", ext(25, 0)),
            ("xvdaa", ext(26, 0)),
            ("xvdzz", ext(701, 0)),
            ("xvdaaa", ext(702, 0)),
            ("xvdbgqcv255", ext((1 << 20) - 1, 255)),
            ("d0p0", 51712),
            ("d0p1", 51713),
            ("d1p0", 51728),
            ("d16p0", ext(16, 0)),
            ("d2p20", ext(2, 20)),
            ("d1048575p255", 536_870_911),
            ("hda", 768),
            ("hda1", 769),
            ("hda63", 831),
            ("hdb", 832),
            ("hdc", 5632),
            ("hdd", 5696),
            ("hdd2", 5698),
            ("sda", 2048),
            ("sda1", 2049),
            ("sdb", 2064),
            ("sdp15", 2303),
            ("51712", 51712),
            ("0", 0),
            ("0xca00", 51712),
            ("0XCA10", 51728),
            ("0144", 100),
            ("2147483647", 2_147_483_647),
        ] {
            assert_eq!(vdev_number(name), Ok(want), "{name}");
        }
    }

    #[test]
    fn bad_vdevs() {
        for (name, frag) in [
            ("", "empty"),
            ("xvd", "no drive letter"),
            ("xvd1", "no drive letter"),
            ("xvdA", "no drive letter"),
            ("xvda0", "leading zero"),
            ("xvda01", "leading zero"),
            ("xvda256", "partition 256"),
            ("xvda-1", "unexpected '-1'"),
            ("xvda1b", "unexpected '1b'"),
            ("xvdbgqcw", "the last xvd disk is xvdbgqcv"),
            ("xvdaaaaaaaaaaaaaaaaaaaa", "the last xvd disk"),
            ("hde", "the last hd disk is hdd"),
            ("hda64", "partition 64"),
            ("hd1", "no drive letter"),
            ("sdq", "the last sd disk is sdp"),
            ("sda16", "partition 16"),
            ("d12", "needs a partition"),
            ("d", "needs a partition"),
            ("dp1", "expected dNpM"),
            ("d0p", "expected dNpM"),
            ("d01p0", "expected dNpM"),
            ("d0p01", "expected dNpM"),
            ("d-1p0", "expected dNpM"),
            ("d1048576p0", "at most 1048575"),
            ("d0p256", "at most 255"),
            ("d99999999999p0", "at most 1048575"),
            ("2147483648", "at most 2147483647"),
            ("99999999999999999999999", "at most 2147483647"),
            ("0x", "not a number"),
            ("089", "not a number"),
            ("12ab", "not a number"),
            ("/dev/xvda", "expected xvdX"),
            ("vda", "expected xvdX"),
            ("Xvda", "expected xvdX"),
            (" xvda", "expected xvdX"),
        ] {
            let e = vdev_number(name).expect_err(name);
            assert!(e.contains(frag), "{name:?}: {e}");
            assert!(e.starts_with(&format!("invalid vdev '{name}'")), "{e}");
        }
    }

    #[test]
    fn disk_letters_match_the_linux_names() {
        for (n, s) in [
            (0, "a"),
            (1, "b"),
            (25, "z"),
            (26, "aa"),
            (27, "ab"),
            (701, "zz"),
            (702, "aaa"),
            ((1 << 20) - 1, "bgqcv"),
        ] {
            assert_eq!(disk_letters(n), s, "{n}");
            // And back: the name numbers as disk n.
            let num = vdev_number(&format!("xvd{s}")).unwrap();
            let disk = if num & EXTENDED != 0 {
                (num & !EXTENDED) >> 8
            } else {
                (num >> 4) & 0xf
            };
            assert_eq!(disk, n, "xvd{s}");
        }
    }

    #[test]
    fn xenbus_states_round_trip() {
        for (v, name) in [
            (0, "Unknown"),
            (1, "Initialising"),
            (2, "InitWait"),
            (3, "Initialised"),
            (4, "Connected"),
            (5, "Closing"),
            (6, "Closed"),
            (7, "Reconfiguring"),
            (8, "Reconfigured"),
        ] {
            let s = XenbusState::parse(&v.to_string()).unwrap();
            assert_eq!((s.value(), s.name()), (v, name));
            assert_eq!(s.to_xenstore(), v.to_string());
            assert_eq!(XenbusState::from_value(v as u32), Some(s));
            assert_eq!(s.to_string(), format!("{name} ({v})"));
            assert_eq!(s.to_xenstore().parse::<XenbusState>(), Ok(s));
        }
        assert_eq!(XenbusState::parse("4\n"), Ok(XenbusState::Connected));
        assert_eq!(XenbusState::parse("2\0"), Ok(XenbusState::InitWait));
        assert_eq!(XenbusState::Initialising.to_xenstore(), "1");
    }

    #[test]
    fn xenbus_state_garbage() {
        for bad in [
            "",
            " ",
            "9",
            "10",
            "-1",
            "+4",
            "4x",
            "0x4",
            "Connected",
            "4 4",
            "99999999999",
        ] {
            let e = XenbusState::parse(bad).expect_err(bad);
            assert!(
                e.contains("0 (Unknown) to 8 (Reconfigured)"),
                "{bad:?}: {e}"
            );
        }
        assert_eq!(XenbusState::from_value(9), None);
    }

    #[test]
    fn default_macs_are_xen_unicast_addresses() {
        let m = default_mac([0xff, 0xab, 0xcd]);
        assert_eq!(m.to_string(), "00:16:3e:7f:ab:cd");
        assert_eq!(default_mac([0x12, 0, 1]).0, [0x00, 0x16, 0x3e, 0x12, 0, 1]);
        assert_eq!(MacAddr::parse(&m.to_string()), Ok(m));
    }

    #[test]
    fn typical_vif_records() {
        let spec = vif("bridge=xenbr0,mac=00:16:3e:01:02:03");
        let r = vif_records(0, 7, 0, &spec, default_mac([9, 9, 9])).unwrap();
        assert_eq!((r.kind, r.devid), (DeviceKind::Vif, 0));
        assert_eq!(r.backend_path, "/local/domain/0/backend/vif/7/0");
        assert_eq!(r.frontend_path, "/local/domain/7/device/vif/0");
        assert_eq!(r.libxl_path, "/libxl/7/device/vif/0");
        let be = "n0,r7";
        same(
            &r.backend_path,
            &r.backend,
            &[
                ("", "", be),
                ("frontend", "/local/domain/7/device/vif/0", be),
                ("frontend-id", "7", be),
                ("online", "1", be),
                ("state", "1", be),
                ("script", "/etc/xen/scripts/vif-bridge", be),
                ("mac", "00:16:3e:01:02:03", be),
                ("bridge", "xenbr0", be),
                ("handle", "0", be),
                ("type", "vif", be),
                ("hotplug-status", "", be),
            ],
        );
        let fe = "n7,r0";
        same(
            &r.frontend_path,
            &r.frontend,
            &[
                ("", "", fe),
                ("backend", "/local/domain/0/backend/vif/7/0", fe),
                ("backend-id", "0", fe),
                ("state", "1", fe),
                ("handle", "0", fe),
                ("mac", "00:16:3e:01:02:03", fe),
                ("trusted", "1", fe),
                // Read-only to the guest: owned by the backend.
                ("mtu", "1500", "n0,r7"),
            ],
        );
        assert_eq!(r.libxl.len(), 2 + 9);
        assert_eq!(
            value(&r.libxl, "/libxl/7/device/vif/0/backend"),
            Some("/local/domain/0/backend/vif/7/0")
        );
        assert_eq!(
            value(&r.libxl, "/libxl/7/device/vif/0/hotplug-status"),
            Some("")
        );
        let h = r.hotplug_connected();
        assert_eq!(
            (h.path.as_str(), h.value.as_str(), h.perms.join(",")),
            (
                "/local/domain/0/backend/vif/7/0/hotplug-status",
                "connected",
                "n0,r7".to_string()
            )
        );
    }

    #[test]
    fn vif_defaults_and_options() {
        // No spec at all: libxl's defaults, the caller's MAC.
        let r = vif_records(0, 5, 1, &vif(""), default_mac([0x80, 1, 2])).unwrap();
        let b = "/local/domain/0/backend/vif/5/1";
        assert_eq!(
            value(&r.backend, &format!("{b}/mac")),
            Some("00:16:3e:00:01:02")
        );
        assert_eq!(value(&r.backend, &format!("{b}/bridge")), Some("xenbr0"));
        assert_eq!(value(&r.backend, &format!("{b}/handle")), Some("1"));
        assert_eq!(
            value(&r.backend, &format!("{b}/mtu")),
            None,
            "1500 is not written"
        );
        for k in ["ip", "vifname", "gatewaydev", "rate"] {
            assert_eq!(value(&r.backend, &format!("{b}/{k}")), None, "{k}");
        }
        assert_eq!(
            value(&r.frontend, "/local/domain/5/device/vif/1/mac"),
            Some("00:16:3e:00:01:02")
        );
        // Every option.
        let spec = vif(
            "mac=00:16:3e:aa:bb:cc,bridge=br-lan,ip=10.0.0.2,vifname=web0,gatewaydev=eth1,rate=10Mb/s,mtu=9000,script=vif-route,devid=2,untrusted",
        );
        let r = vif_records(0, 5, 2, &spec, default_mac([1, 1, 1])).unwrap();
        let b = "/local/domain/0/backend/vif/5/2";
        let keys: Vec<_> = rel(b, &r.backend)
            .into_iter()
            .map(|(k, v, _)| (k, v.to_string()))
            .collect();
        let want: Vec<(String, String)> = [
            ("", ""),
            ("frontend", "/local/domain/5/device/vif/2"),
            ("frontend-id", "5"),
            ("online", "1"),
            ("state", "1"),
            ("script", "/etc/xen/scripts/vif-route"),
            ("vifname", "web0"),
            ("mac", "00:16:3e:aa:bb:cc"),
            ("ip", "10.0.0.2"),
            ("gatewaydev", "eth1"),
            // 10 Mbit/s = 1250000 B/s, 50 ms: 62500 bytes per interval.
            ("rate", "62500,50000"),
            ("mtu", "9000"),
            ("bridge", "br-lan"),
            ("handle", "2"),
            ("type", "vif"),
            ("hotplug-status", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(keys, want);
        let f = "/local/domain/5/device/vif/2";
        assert_eq!(value(&r.frontend, &format!("{f}/trusted")), Some("0"));
        assert_eq!(value(&r.frontend, &format!("{f}/mtu")), Some("9000"));
        let r = vif_records(0, 5, 0, &vif("script=/opt/vif"), default_mac([1, 1, 1])).unwrap();
        assert_eq!(
            value(&r.backend, "/local/domain/0/backend/vif/5/0/script"),
            Some("/opt/vif")
        );
    }

    #[test]
    fn unsupported_vifs_are_refused() {
        let m = default_mac([1, 2, 3]);
        let e = vif_records(0, 3, 0, &vif("type=ioemu"), m).unwrap_err();
        assert!(e.contains("type=ioemu") && e.contains("PVH"), "{e}");
        let e = vif_records(0, 3, 0, &vif("devid=4"), m).unwrap_err();
        assert!(e.contains("devid=4"), "{e}");
        assert!(vif_records(0, 3, 4, &vif("devid=4,type=vif"), m).is_ok());
    }

    #[test]
    fn nodes_and_roots() {
        let r = vbd_records(0, 7, &disk("/srv/d.img,raw,xvda,rw"), None).unwrap();
        let all = r.nodes();
        assert_eq!(
            all.len(),
            r.backend.len() + r.frontend.len() + r.libxl.len()
        );
        // libxl's pointers first, then the frontend, the backend, libxl's copy.
        assert_eq!(all[0].path, "/libxl/7/device/vbd/51712/frontend");
        assert_eq!(all[1].path, "/libxl/7/device/vbd/51712/backend");
        assert_eq!(all[2].path, "/local/domain/7/device/vbd/51712");
        let be_dir = all.iter().position(|n| n.path == r.backend_path).unwrap();
        assert_eq!(be_dir, 2 + r.frontend.len());
        assert_eq!(
            all[be_dir + r.backend.len()].path,
            "/libxl/7/device/vbd/51712/params"
        );
        assert_eq!(
            r.roots(),
            [
                "/libxl/7/device/vbd/51712",
                "/local/domain/7/device/vbd/51712",
                "/local/domain/0/backend/vbd/7/51712",
            ]
        );
        // Every node has explicit permissions, as domu's records do.
        assert!(all.iter().all(|n| !n.perms.is_empty()));
    }
}
