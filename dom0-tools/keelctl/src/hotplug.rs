//! What Xen's `block` hotplug script (tools/hotplug/Linux/block) does to a
//! disk's target on the host, as Linux calls behind [`Host`], so that the
//! logic above them ([`crate::disks`]) is tested with a fake:
//!
//! * `stat(2)` a target: a block device gives blkback its `major:minor`
//!   (`st_rdev`), a regular file needs a loop device;
//! * open it read-only or read-write, as the disk's mode asks;
//! * bind an image file to a free loop device (`/dev/loop-control`
//!   `LOOP_CTL_GET_FREE`, then `LOOP_CONFIGURE` on `/dev/loopN`, or
//!   `LOOP_SET_FD` + `LOOP_SET_STATUS64` before Linux 5.8), read-only for
//!   a read-only disk; and unbind it (`LOOP_CLR_FD`).
//!
//! No `LO_FLAGS_AUTOCLEAR` at bind time: the kernel clears such a loop
//! device when its last opener closes it, and keelctl closes its
//! descriptor (and exits) before blkback opens the device, which it does
//! only once it sees the records. So keelctl binds as `losetup` does for
//! the script, and unbinds at teardown; `LOOP_CLR_FD` on a device blkback
//! still holds turns autoclear on instead (Linux's lazy detach), so the
//! device goes when blkback lets go of it.
//!
//! The only `unsafe` of keelctl's disks: the `ioctl(2)` calls, each in its
//! own small function.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};

/// The loop driver's control device.
pub const LOOP_CONTROL: &str = "/dev/loop-control";

// linux/loop.h
const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
/// `LO_FLAGS_READ_ONLY`.
pub const LO_FLAGS_READ_ONLY: u32 = 1;
/// `LO_NAME_SIZE`.
const LO_NAME_SIZE: usize = 64;

/// `struct loop_info64` (linux/loop.h).
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config` (linux/loop.h, `LOOP_CONFIGURE`).
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);
const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

/// What a path is, as far as a disk is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Block,
    Regular,
    /// A directory, character device, socket...
    Other,
}

/// The parts of `stat(2)` (symbolic links followed) a disk needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub kind: FileKind,
    /// The file's own identity: filesystem and inode.
    pub dev: u64,
    pub ino: u64,
    /// A block device's number (`st_rdev`), 0:0 for a file.
    pub major: u32,
    pub minor: u32,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

/// The Linux calls of a disk's hotplug.
pub trait Host {
    /// `stat(2)`, following symbolic links.
    fn stat(&self, path: &str) -> io::Result<Stat>;
    /// Opens `path` read-only or read-write, and closes it again.
    fn check_open(&self, path: &str, writable: bool) -> io::Result<()>;
    /// `LOOP_CTL_GET_FREE`: the number of a free loop device (the driver
    /// makes one when none is free).
    fn loop_get_free(&self) -> io::Result<u32>;
    /// Binds `/dev/loop<n>` to `file`, opened read-only with
    /// `LO_FLAGS_READ_ONLY` when `read_only`, else read-write. `EBUSY`:
    /// someone else bound it first.
    fn loop_attach(&self, n: u32, file: &str, read_only: bool) -> io::Result<()>;
    /// `LOOP_CLR_FD` on `/dev/loop<n>`. `ENXIO`: it was not bound.
    fn loop_detach(&self, n: u32) -> io::Result<()>;

    // A network interface's hotplug (Xen's `vif-bridge`), see
    // [`crate::netdev`] for the Linux calls.

    /// Whether network interface `name` exists (`/sys/class/net/<name>`).
    fn net_exists(&self, name: &str) -> bool;
    /// Whether interface `name` is a bridge
    /// (`/sys/class/net/<name>/bridge`).
    fn is_bridge(&self, name: &str) -> bool;
    /// Whether `dev` is a port of bridge `bridge`
    /// (`/sys/class/net/<bridge>/brif/<dev>`).
    fn is_bridge_port(&self, bridge: &str, dev: &str) -> bool;
    /// Creates bridge `name` (`SIOCBRADDBR`). `EEXIST`: there is one.
    fn bridge_create(&self, name: &str) -> io::Result<()>;
    /// Makes `dev` a port of `bridge` (`SIOCBRADDIF`).
    fn bridge_add_port(&self, bridge: &str, dev: &str) -> io::Result<()>;
    /// Brings interface `name` up (`IFF_UP`).
    fn link_up(&self, name: &str) -> io::Result<()>;
    /// Renames interface `from` (down) to `to` (`SIOCSIFNAME`).
    fn link_rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Fills `buf` with random bytes (a NIC's MAC address).
    fn random_bytes(&self, buf: &mut [u8]) -> io::Result<()>;
}

/// `/dev/loop<n>`.
pub fn loop_path(n: u32) -> String {
    format!("/dev/loop{n}")
}

/// The number of a `/dev/loopN` path.
pub fn loop_number(path: &str) -> Option<u32> {
    let n = path.strip_prefix("/dev/loop")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// The host's own calls.
pub struct LinuxHost;

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// An ioctl whose argument is a plain integer.
fn ioctl_int(f: &File, request: libc::c_ulong, arg: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: `f` keeps the descriptor open for the call; the loop
    // requests made here (LOOP_CTL_GET_FREE, LOOP_SET_FD, LOOP_CLR_FD)
    // take an integer argument and access no memory of ours.
    check(unsafe { libc::ioctl(f.as_raw_fd(), request as _, arg) })
}

/// `LOOP_CONFIGURE` with `c`.
fn ioctl_configure(f: &File, c: &LoopConfig) -> io::Result<()> {
    // SAFETY: `c` is a live, fully initialised `struct loop_config`
    // (repr(C), size checked above) that the kernel only reads, for the
    // duration of the call; `f` keeps the descriptor open.
    check(unsafe { libc::ioctl(f.as_raw_fd(), LOOP_CONFIGURE as _, c as *const LoopConfig) })
        .map(drop)
}

/// `LOOP_SET_STATUS64` with `i`.
fn ioctl_set_status(f: &File, i: &LoopInfo64) -> io::Result<()> {
    // SAFETY: `i` is a live, fully initialised `struct loop_info64`
    // (repr(C), size checked above) that the kernel only reads, for the
    // duration of the call; `f` keeps the descriptor open.
    check(unsafe {
        libc::ioctl(
            f.as_raw_fd(),
            LOOP_SET_STATUS64 as _,
            i as *const LoopInfo64,
        )
    })
    .map(drop)
}

fn open(path: &str, writable: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(writable)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

impl Host for LinuxHost {
    fn stat(&self, path: &str) -> io::Result<Stat> {
        let m = std::fs::metadata(path)?;
        let t = m.file_type();
        let kind = if t.is_block_device() {
            FileKind::Block
        } else if t.is_file() {
            FileKind::Regular
        } else {
            FileKind::Other
        };
        Ok(Stat {
            kind,
            dev: m.dev(),
            ino: m.ino(),
            major: libc::major(m.rdev()),
            minor: libc::minor(m.rdev()),
            mode: m.mode() & 0o7777,
        })
    }

    fn check_open(&self, path: &str, writable: bool) -> io::Result<()> {
        open(path, writable).map(drop)
    }

    fn loop_get_free(&self) -> io::Result<u32> {
        let ctl = open(LOOP_CONTROL, true)?;
        ioctl_int(&ctl, LOOP_CTL_GET_FREE, 0).map(|n| n as u32)
    }

    fn loop_attach(&self, n: u32, file: &str, read_only: bool) -> io::Result<()> {
        let backing = open(file, !read_only)?;
        // A loop device opened read-only is bound read-only.
        let dev = open(&loop_path(n), !read_only)?;
        let mut info = LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: if read_only { LO_FLAGS_READ_ONLY } else { 0 },
            lo_file_name: [0; LO_NAME_SIZE],
            lo_crypt_name: [0; LO_NAME_SIZE],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        };
        // The name `losetup -a` shows (the kernel keeps 63 bytes).
        let name = file.as_bytes();
        let len = name.len().min(LO_NAME_SIZE - 1);
        info.lo_file_name[..len].copy_from_slice(&name[..len]);
        let config = LoopConfig {
            fd: backing.as_raw_fd() as u32,
            block_size: 0,
            info,
            reserved: [0; 8],
        };
        match ioctl_configure(&dev, &config) {
            Ok(()) => Ok(()),
            // Before Linux 5.8 (as util-linux falls back).
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOTTY)) => {
                ioctl_int(&dev, LOOP_SET_FD, backing.as_raw_fd() as libc::c_ulong)?;
                if let Err(e) = ioctl_set_status(&dev, &info) {
                    let _ = ioctl_int(&dev, LOOP_CLR_FD, 0);
                    return Err(e);
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn loop_detach(&self, n: u32) -> io::Result<()> {
        let dev = open(&loop_path(n), false)?;
        ioctl_int(&dev, LOOP_CLR_FD, 0).map(drop)
    }

    fn net_exists(&self, name: &str) -> bool {
        crate::netdev::sys_net(name, "").exists()
    }

    fn is_bridge(&self, name: &str) -> bool {
        crate::netdev::sys_net(name, "bridge").is_dir()
    }

    fn is_bridge_port(&self, bridge: &str, dev: &str) -> bool {
        crate::netdev::sys_net(bridge, &format!("brif/{dev}")).exists()
    }

    fn bridge_create(&self, name: &str) -> io::Result<()> {
        crate::netdev::bridge_create(name)
    }

    fn bridge_add_port(&self, bridge: &str, dev: &str) -> io::Result<()> {
        crate::netdev::bridge_add_port(bridge, dev)
    }

    fn link_up(&self, name: &str) -> io::Result<()> {
        crate::netdev::link_up(name)
    }

    fn link_rename(&self, from: &str, to: &str) -> io::Result<()> {
        crate::netdev::link_rename(from, to)
    }

    fn random_bytes(&self, buf: &mut [u8]) -> io::Result<()> {
        use std::io::Read;
        File::open("/dev/urandom")?.read_exact(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_paths_and_numbers() {
        assert_eq!(loop_path(3), "/dev/loop3");
        assert_eq!(loop_number("/dev/loop3"), Some(3));
        assert_eq!(loop_number("/dev/loop12"), Some(12));
        for bad in ["/dev/loop", "/dev/loop-control", "/dev/sda", "/dev/loop1p1"] {
            assert_eq!(loop_number(bad), None, "{bad}");
        }
    }

    #[test]
    fn stat_tells_files_from_block_devices() {
        let dir = std::env::temp_dir().join(format!("keelctl-hotplug-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("img");
        std::fs::write(&f, [0u8; 512]).unwrap();
        let s = LinuxHost.stat(f.to_str().unwrap()).unwrap();
        assert_eq!(s.kind, FileKind::Regular);
        let d = LinuxHost.stat(dir.to_str().unwrap()).unwrap();
        assert_eq!(d.kind, FileKind::Other);
        assert_ne!((s.dev, s.ino), (d.dev, d.ino));
        let e = LinuxHost.stat("/nonexistent/keel/img").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        LinuxHost.check_open(f.to_str().unwrap(), false).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The real loop calls: binds one of this host's loop devices, so it
    /// runs only when asked (`cargo test -p keelctl -- --ignored`, as
    /// root); the dom0 scenario `qemu-amd-domu-disk` drives them for real.
    #[test]
    #[ignore = "binds a loop device on this host (root): run with --ignored"]
    fn a_real_loop_device_binds_and_unbinds() {
        let h = LinuxHost;
        let Ok(n) = h.loop_get_free() else {
            eprintln!("no loop devices to use here: skipped");
            return;
        };
        let dir = std::env::temp_dir().join(format!("keelctl-loop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("img");
        std::fs::write(&f, vec![0u8; 1 << 20]).unwrap();
        let file = f.to_str().unwrap();
        let sys = format!("/sys/block/loop{n}");
        match h.loop_attach(n, file, true) {
            Ok(()) => {}
            // Someone else took it meanwhile, or a container without the
            // device node: nothing to check.
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    || matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
                    ) =>
            {
                let _ = std::fs::remove_dir_all(&dir);
                return;
            }
            Err(e) => panic!("loop{n}: {e}"),
        }
        let backing = std::fs::read_to_string(format!("{sys}/loop/backing_file"));
        let ro = std::fs::read_to_string(format!("{sys}/ro"));
        let autoclear = std::fs::read_to_string(format!("{sys}/loop/autoclear"));
        let st = h.stat(&loop_path(n));
        h.loop_detach(n).unwrap();
        let st = st.unwrap();
        assert_eq!((st.kind, st.minor), (FileKind::Block, n));
        // What sysfs says of it, where there is one.
        if let (Ok(backing), Ok(ro), Ok(autoclear)) = (backing, ro, autoclear) {
            assert_eq!(backing.trim(), file);
            assert_eq!(ro.trim(), "1");
            assert_eq!(autoclear.trim(), "0");
        }
        // Unbound now: a second detach says so.
        let e = h.loop_detach(n).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENXIO), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// A host for tests: files and block devices by path, loop devices that
/// bind and unbind, and a log of the calls that change something.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::BTreeMap;

    #[derive(Default)]
    pub struct FakeHost {
        /// What `stat` finds (besides `/dev/loopN`, always there).
        pub files: RefCell<BTreeMap<String, Stat>>,
        /// Paths that do not open (EACCES).
        pub locked: RefCell<Vec<String>>,
        /// Bound loop devices: number -> (file, read-only).
        pub loops: RefCell<BTreeMap<u32, (String, bool)>>,
        /// `attach N FILE ro|rw`, `detach N`.
        pub log: RefCell<Vec<String>>,
        /// This many binds fail with EBUSY (another process was faster).
        pub races: Cell<u32>,
        /// Network interfaces by name (the fake netback of
        /// [`crate::xen::fake::MemStore`] adds and removes its own).
        /// `addbr B`, `addif B DEV`, `up DEV`, `rename A B` go to `log`.
        pub links: RefCell<BTreeMap<String, Link>>,
        /// A call on this interface fails (EPERM).
        pub refuse_link: RefCell<Option<String>>,
    }

    /// A fake network interface.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct Link {
        pub up: bool,
        pub is_bridge: bool,
        /// The bridge it is a port of.
        pub master: Option<String>,
    }

    /// A regular file's stat (inode `ino`, mode 0644).
    pub fn file(ino: u64) -> Stat {
        Stat {
            kind: FileKind::Regular,
            dev: 0xfe00,
            ino,
            major: 0,
            minor: 0,
            mode: 0o644,
        }
    }

    /// A block device's stat.
    pub fn block(major: u32, minor: u32) -> Stat {
        Stat {
            kind: FileKind::Block,
            dev: 5,
            ino: 1000 + minor as u64,
            major,
            minor,
            mode: 0o660,
        }
    }

    fn errno<T>(e: i32) -> io::Result<T> {
        Err(io::Error::from_raw_os_error(e))
    }

    impl FakeHost {
        pub fn add(&self, path: &str, st: Stat) {
            self.files.borrow_mut().insert(path.into(), st);
        }

        /// An interface `name`, up or down.
        pub fn add_link(&self, name: &str, is_bridge: bool, up: bool) {
            self.links.borrow_mut().insert(
                name.into(),
                Link {
                    up,
                    is_bridge,
                    master: None,
                },
            );
        }

        pub fn link(&self, name: &str) -> Option<Link> {
            self.links.borrow().get(name).cloned()
        }

        fn refused(&self, name: &str) -> io::Result<()> {
            if self.refuse_link.borrow().as_deref() == Some(name) {
                return errno(libc::EPERM);
            }
            Ok(())
        }
    }

    impl Host for std::rc::Rc<FakeHost> {
        fn stat(&self, path: &str) -> io::Result<Stat> {
            if let Some(n) = loop_number(path) {
                return Ok(block(7, n));
            }
            self.files
                .borrow()
                .get(path)
                .copied()
                .map_or_else(|| errno(libc::ENOENT), Ok)
        }
        fn check_open(&self, path: &str, _: bool) -> io::Result<()> {
            self.stat(path)?;
            if self.locked.borrow().iter().any(|p| p == path) {
                return errno(libc::EACCES);
            }
            Ok(())
        }
        fn loop_get_free(&self) -> io::Result<u32> {
            let l = self.loops.borrow();
            Ok((0..).find(|n| !l.contains_key(n)).expect("a free one"))
        }
        fn loop_attach(&self, n: u32, file: &str, read_only: bool) -> io::Result<()> {
            if self.races.get() > 0 {
                self.races.set(self.races.get() - 1);
                self.loops
                    .borrow_mut()
                    .insert(n, ("/elsewhere".into(), false));
                return errno(libc::EBUSY);
            }
            self.check_open(file, !read_only)?;
            if self.loops.borrow().contains_key(&n) {
                return errno(libc::EBUSY);
            }
            self.loops.borrow_mut().insert(n, (file.into(), read_only));
            let how = if read_only { "ro" } else { "rw" };
            self.log
                .borrow_mut()
                .push(format!("attach {n} {file} {how}"));
            Ok(())
        }
        fn loop_detach(&self, n: u32) -> io::Result<()> {
            self.log.borrow_mut().push(format!("detach {n}"));
            match self.loops.borrow_mut().remove(&n) {
                Some(_) => Ok(()),
                None => errno(libc::ENXIO),
            }
        }
        fn net_exists(&self, name: &str) -> bool {
            self.links.borrow().contains_key(name)
        }
        fn is_bridge(&self, name: &str) -> bool {
            self.link(name).is_some_and(|l| l.is_bridge)
        }
        fn is_bridge_port(&self, bridge: &str, dev: &str) -> bool {
            self.link(dev)
                .is_some_and(|l| l.master.as_deref() == Some(bridge))
        }
        fn bridge_create(&self, name: &str) -> io::Result<()> {
            self.refused(name)?;
            if self.net_exists(name) {
                return errno(libc::EEXIST);
            }
            self.log.borrow_mut().push(format!("addbr {name}"));
            self.add_link(name, true, false);
            Ok(())
        }
        fn bridge_add_port(&self, bridge: &str, dev: &str) -> io::Result<()> {
            self.refused(dev)?;
            if !self.is_bridge(bridge) || !self.net_exists(dev) {
                return errno(libc::ENODEV);
            }
            self.log.borrow_mut().push(format!("addif {bridge} {dev}"));
            self.links.borrow_mut().get_mut(dev).expect("there").master = Some(bridge.into());
            Ok(())
        }
        fn link_up(&self, name: &str) -> io::Result<()> {
            self.refused(name)?;
            let mut l = self.links.borrow_mut();
            let Some(link) = l.get_mut(name) else {
                return errno(libc::ENODEV);
            };
            self.log.borrow_mut().push(format!("up {name}"));
            link.up = true;
            Ok(())
        }
        fn link_rename(&self, from: &str, to: &str) -> io::Result<()> {
            self.refused(from)?;
            let mut l = self.links.borrow_mut();
            if l.contains_key(to) {
                return errno(libc::EEXIST);
            }
            let Some(link) = l.remove(from) else {
                return errno(libc::ENODEV);
            };
            self.log.borrow_mut().push(format!("rename {from} {to}"));
            l.insert(to.into(), link);
            Ok(())
        }
        fn random_bytes(&self, buf: &mut [u8]) -> io::Result<()> {
            // Not random: 0xa1, 0xa2... (the first one's top bit set, for
            // the MAC rule to clear).
            for (i, b) in buf.iter_mut().enumerate() {
                *b = 0xa1 + i as u8;
            }
            Ok(())
        }
    }
}
