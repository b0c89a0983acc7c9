//! Linux's `/dev/xen/gntdev`: mapping pages another domain granted to
//! this one (`GNTTABOP_map_grant_ref` underneath), as libxengnttab's
//! `xengnttab_map_grant_ref` does.
//!
//! A domU's builder grants its console and xenstore ring frames to dom0
//! in the reserved entries [`GNTTAB_RESERVED_CONSOLE`] and
//! [`GNTTAB_RESERVED_XENSTORE`]; Xen's xenconsoled and C xenstored map
//! those rings this way first and fall back to foreign mapping (privcmd)
//! only when it fails. [`map_ring`] is that choice, with the mappers as
//! closures so that it runs in host tests.
//!
//! The driver's protocol: `IOCTL_GNTDEV_MAP_GRANT_REF` reserves an
//! offset (`index`) for the grants; `mmap` of the device at that offset
//! does the actual grant map (a grant the hypervisor refuses fails the
//! `mmap`); `munmap` plus `IOCTL_GNTDEV_UNMAP_GRANT_REF` undo it.
//!
//! This module holds all of the dom0 tools' gntdev `unsafe` code.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

/// Where Linux puts the device.
pub const GNTDEV: &str = "/dev/xen/gntdev";

/// Grant reference of a domU's console ring page (Xen's
/// `public/grant_table.h`).
pub const GNTTAB_RESERVED_CONSOLE: u32 = 0;
/// Grant reference of a domU's xenstore ring page.
pub const GNTTAB_RESERVED_XENSTORE: u32 = 1;

const PAGE: usize = 4096;

/// `struct ioctl_gntdev_grant_ref` from Linux's `include/uapi/xen/gntdev.h`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GntdevGrantRef {
    pub domid: u32,
    pub gref: u32,
}

const _: () = assert!(std::mem::size_of::<GntdevGrantRef>() == 8);

/// `struct ioctl_gntdev_map_grant_ref` with its one-element `refs[1]`
/// (the size the ioctl number encodes): map `count` grants; the driver
/// returns the `mmap` offset in `index`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GntdevMapGrantRef {
    pub count: u32,
    pub pad: u32,
    pub index: u64,
    pub refs: [GntdevGrantRef; 1],
}

const _: () = assert!(std::mem::size_of::<GntdevMapGrantRef>() == 24);
const _: () = assert!(std::mem::offset_of!(GntdevMapGrantRef, index) == 8);
const _: () = assert!(std::mem::offset_of!(GntdevMapGrantRef, refs) == 16);

/// `struct ioctl_gntdev_unmap_grant_ref`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GntdevUnmapGrantRef {
    pub index: u64,
    pub count: u32,
    pub pad: u32,
}

const _: () = assert!(std::mem::size_of::<GntdevUnmapGrantRef>() == 16);

/// Linux's `_IOC(_IOC_NONE, 'G', nr, size)`.
const fn ioc_gntdev(nr: u8, size: usize) -> u32 {
    crate::ioc(crate::IOC_NONE, b'G', nr, size)
}

/// `IOCTL_GNTDEV_MAP_GRANT_REF`.
pub const IOCTL_GNTDEV_MAP_GRANT_REF: u32 = ioc_gntdev(0, std::mem::size_of::<GntdevMapGrantRef>());
/// `IOCTL_GNTDEV_UNMAP_GRANT_REF`.
pub const IOCTL_GNTDEV_UNMAP_GRANT_REF: u32 =
    ioc_gntdev(1, std::mem::size_of::<GntdevUnmapGrantRef>());

const _: () = assert!(IOCTL_GNTDEV_MAP_GRANT_REF == 0x0018_4700);
const _: () = assert!(IOCTL_GNTDEV_UNMAP_GRANT_REF == 0x0010_4701);

/// A failed step of a grant mapping, with its errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantError {
    /// `"IOCTL_GNTDEV_MAP_GRANT_REF"` or `"mmap"` (where the hypervisor's
    /// refusal of the grant shows).
    pub step: &'static str,
    pub errno: i32,
}

impl std::fmt::Display for GrantError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}",
            self.step,
            io::Error::from_raw_os_error(self.errno)
        )
    }
}

impl std::error::Error for GrantError {}

fn last_errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// An open `/dev/xen/gntdev`.
#[derive(Debug)]
pub struct Gntdev {
    file: Arc<File>,
}

impl Gntdev {
    /// Opens `path` (normally [`GNTDEV`]) with `O_RDWR | O_CLOEXEC`; the
    /// error names the path.
    pub fn open(path: &Path) -> io::Result<Gntdev> {
        let file = crate::open_named(path)?;
        Ok(Gntdev {
            file: Arc::new(file),
        })
    }

    /// Maps grant `gref` of domain `domid`, one page, read-write, into
    /// this process until the returned value drops.
    pub fn map_grant(&self, domid: u32, gref: u32) -> Result<GrantMap, GrantError> {
        let fd = self.file.as_raw_fd();
        let mut op = GntdevMapGrantRef {
            count: 1,
            pad: 0,
            index: 0,
            refs: [GntdevGrantRef { domid, gref }],
        };
        // SAFETY: `op` is an aligned `struct ioctl_gntdev_map_grant_ref`
        // holding `count` (1) grant refs, its layout asserted above, the
        // request's argument; the driver writes `index`.
        unsafe { crate::ioctl(fd, IOCTL_GNTDEV_MAP_GRANT_REF, &mut op) }.map_err(|errno| {
            GrantError {
                step: "IOCTL_GNTDEV_MAP_GRANT_REF",
                errno,
            }
        })?;
        let unreserve = || {
            let mut un = GntdevUnmapGrantRef {
                index: op.index,
                count: 1,
                pad: 0,
            };
            // SAFETY: `un` is a `struct ioctl_gntdev_unmap_grant_ref`
            // (layout asserted above), the request's argument, naming the
            // range the map ioctl just reserved, which nothing maps; a
            // failure leaves it to close().
            let _ = unsafe { crate::ioctl(fd, IOCTL_GNTDEV_UNMAP_GRANT_REF, &mut un) };
        };
        let Ok(offset) = libc::off_t::try_from(op.index) else {
            unreserve();
            return Err(GrantError {
                step: "IOCTL_GNTDEV_MAP_GRANT_REF",
                errno: libc::EOVERFLOW,
            });
        };
        // SAFETY: a fresh shared mapping of the device at an address the
        // kernel picks, at the offset the driver gave for these grants; no
        // existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            let errno = last_errno();
            unreserve();
            return Err(GrantError {
                step: "mmap",
                errno,
            });
        }
        let Some(ptr) = NonNull::new(p.cast::<u8>()) else {
            unreserve();
            return Err(GrantError {
                step: "mmap",
                errno: libc::EFAULT,
            });
        };
        Ok(GrantMap {
            ptr,
            index: op.index,
            file: self.file.clone(),
        })
    }
}

/// One granted page mapped into this process, read-write; dropping it
/// unmaps it (`munmap`, then `IOCTL_GNTDEV_UNMAP_GRANT_REF`, as
/// libxengnttab's unmap).
#[derive(Debug)]
pub struct GrantMap {
    ptr: NonNull<u8>,
    index: u64,
    file: Arc<File>,
}

// SAFETY: a `GrantMap` owns its mapping and its reference to the device
// outright (no thread-local state); unmapping from another thread is fine.
unsafe impl Send for GrantMap {}
// SAFETY: through `&GrantMap` only the base address and length can be
// had; writing through the address is the user's `unsafe` business.
unsafe impl Sync for GrantMap {}

impl GrantMap {
    /// The first mapped byte (page aligned).
    pub fn as_ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Always one page.
    pub fn len(&self) -> usize {
        PAGE
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

impl Drop for GrantMap {
    fn drop(&mut self) {
        // SAFETY: `ptr` and one page are exactly what `mmap` returned; the
        // owner of this value holds no slice of it past the drop.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), PAGE);
        }
        let mut un = GntdevUnmapGrantRef {
            index: self.index,
            count: 1,
            pad: 0,
        };
        // SAFETY: `un` is a `struct ioctl_gntdev_unmap_grant_ref` (layout
        // asserted above), the request's argument, naming the grants this
        // value mapped; the fd is kept open by `self.file`. A failure
        // leaves them to close().
        let _ =
            unsafe { crate::ioctl(self.file.as_raw_fd(), IOCTL_GNTDEV_UNMAP_GRANT_REF, &mut un) };
    }
}

/// How a ring page came to be mapped (see [`map_ring`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappedBy {
    /// Through the grant table (gntdev).
    GrantTable,
    /// By foreign mapping (privcmd), after the grant mapping failed with
    /// `grant_error`.
    Foreign { grant_error: String },
}

impl std::fmt::Display for MappedBy {
    /// Completes "mapped domu1's console ring ...".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MappedBy::GrantTable => write!(f, "through the grant table"),
            MappedBy::Foreign { grant_error } => {
                write!(f, "by foreign mapping (gntdev: {grant_error})")
            }
        }
    }
}

/// Maps a ring as Xen's daemons do: `grant` (gntdev) first, `foreign`
/// (privcmd) only if that fails. Returns the mapping and which way it was
/// made; when both fail, one error naming both causes.
pub fn map_ring<T>(
    grant: impl FnOnce() -> Result<T, String>,
    foreign: impl FnOnce() -> Result<T, String>,
) -> Result<(T, MappedBy), String> {
    match grant() {
        Ok(t) => Ok((t, MappedBy::GrantTable)),
        Err(grant_error) => match foreign() {
            Ok(t) => Ok((t, MappedBy::Foreign { grant_error })),
            Err(foreign_error) => Err(format!(
                "gntdev: {grant_error}; foreign mapping: {foreign_error}"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gntdev_abi() {
        assert_eq!(IOCTL_GNTDEV_MAP_GRANT_REF, 0x0018_4700);
        assert_eq!(IOCTL_GNTDEV_UNMAP_GRANT_REF, 0x0010_4701);
        assert_eq!(std::mem::size_of::<GntdevMapGrantRef>(), 24);
        assert_eq!(std::mem::offset_of!(GntdevMapGrantRef, refs), 16);
        assert_eq!(std::mem::offset_of!(GntdevGrantRef, gref), 4);
        assert_eq!(std::mem::offset_of!(GntdevUnmapGrantRef, count), 8);
        assert_eq!((GNTTAB_RESERVED_CONSOLE, GNTTAB_RESERVED_XENSTORE), (0, 1));
    }

    #[test]
    fn gntdev_refuses_cleanly_off_the_device() {
        let e = Gntdev::open(Path::new("/nonexistent/keel-test/gntdev")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("/nonexistent/keel-test/gntdev"));
        // A regular file opens; the map ioctl on it is ENOTTY and nothing
        // is left mapped.
        let f = std::env::temp_dir().join(format!("keel-gntdev-{}", std::process::id()));
        std::fs::write(&f, vec![0u8; 8192]).unwrap();
        let g = Gntdev::open(&f).unwrap();
        let e = g.map_grant(1, GNTTAB_RESERVED_CONSOLE).unwrap_err();
        assert_eq!(
            e,
            GrantError {
                step: "IOCTL_GNTDEV_MAP_GRANT_REF",
                errno: libc::ENOTTY
            }
        );
        assert!(e.to_string().starts_with("IOCTL_GNTDEV_MAP_GRANT_REF: "));
        std::fs::remove_file(&f).unwrap();
    }

    #[test]
    fn map_ring_prefers_the_grant_table() {
        let foreign_called = std::cell::Cell::new(false);
        let r = map_ring(
            || Ok("granted"),
            || {
                foreign_called.set(true);
                Ok("foreign")
            },
        );
        assert_eq!(r, Ok(("granted", MappedBy::GrantTable)));
        assert!(
            !foreign_called.get(),
            "foreign mapping tried after a grant map"
        );
        assert_eq!(MappedBy::GrantTable.to_string(), "through the grant table");
    }

    #[test]
    fn map_ring_falls_back_to_foreign_mapping() {
        let (page, how) = map_ring(|| Err("mmap: EINVAL".to_string()), || Ok(7)).unwrap();
        assert_eq!(page, 7);
        assert_eq!(how.to_string(), "by foreign mapping (gntdev: mmap: EINVAL)");
    }

    #[test]
    fn map_ring_reports_both_failures() {
        let e = map_ring::<()>(|| Err("no gntdev".into()), || Err("errno 22".into())).unwrap_err();
        assert_eq!(e, "gntdev: no gntdev; foreign mapping: errno 22");
    }
}
