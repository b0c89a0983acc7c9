//! Linux's `/dev/xen/privcmd`: the transport that carries Xen's toolstack
//! hypercalls (`xen_version`, `sysctl`, `domctl`) from dom0 userspace to
//! the hypervisor.
//!
//! It also maps another domain's pages into this process (foreign
//! mapping, as libxenforeignmemory does: an `mmap` of the device, then
//! `IOCTL_PRIVCMD_MMAPBATCH_V2`), which the domain builder writes
//! through.
//!
//! This module holds all of the dom0 tools' privcmd `unsafe` code (the `ioctl`s,
//! `mmap`/`munmap`, and the volatile page touches before a hypercall).

use crate::{ioc, IOC_NONE};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// A failed hypercall: the errno of its negative return value (or of the
/// transport itself, e.g. ENOTTY from a device that is not privcmd).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallError {
    pub errno: i32,
}

/// `struct privcmd_hypercall` from Linux's `include/uapi/xen/privcmd.h`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrivcmdHypercall {
    pub op: u64,
    pub arg: [u64; 5],
}

const _: () = assert!(std::mem::size_of::<PrivcmdHypercall>() == 48);

/// `IOCTL_PRIVCMD_HYPERCALL`:
/// `_IOC(_IOC_NONE, 'P', 0, sizeof(struct privcmd_hypercall))`.
pub const IOCTL_PRIVCMD_HYPERCALL: u32 =
    ioc(IOC_NONE, b'P', 0, std::mem::size_of::<PrivcmdHypercall>());

const _: () = assert!(IOCTL_PRIVCMD_HYPERCALL == 0x0030_5000);

/// `struct privcmd_mmapbatch_v2` from Linux's `include/uapi/xen/privcmd.h`:
/// map `num` frames of domain `dom` (`arr`: its gfns) at `addr`, an
/// address inside an `mmap` of the device; `err` gets each frame's errno
/// (0 or negative).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrivcmdMmapBatchV2 {
    pub num: u32,
    pub dom: u16,
    pub addr: u64,
    pub arr: *const u64,
    pub err: *mut i32,
}

const _: () = assert!(std::mem::size_of::<PrivcmdMmapBatchV2>() == 32);
const _: () = assert!(std::mem::offset_of!(PrivcmdMmapBatchV2, addr) == 8);

/// `IOCTL_PRIVCMD_MMAPBATCH_V2`:
/// `_IOC(_IOC_NONE, 'P', 4, sizeof(struct privcmd_mmapbatch_v2))`.
pub const IOCTL_PRIVCMD_MMAPBATCH_V2: u32 =
    ioc(IOC_NONE, b'P', 4, std::mem::size_of::<PrivcmdMmapBatchV2>());

const _: () = assert!(IOCTL_PRIVCMD_MMAPBATCH_V2 == 0x0020_5004);

const PAGE: usize = 4096;

/// Another domain's frames mapped into this process, read-write, until
/// dropped (the `munmap` makes dom0's kernel remove them from its
/// physical map again: `XENMEM_remove_from_physmap`, one per page).
#[derive(Debug)]
pub struct ForeignMap {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: a `ForeignMap` owns its mapping outright (no thread-local
// state); moving it to another thread and unmapping there is fine.
unsafe impl Send for ForeignMap {}
// SAFETY: through `&ForeignMap` only the length and the base address can
// be had; writing through the address is the user's `unsafe` business.
unsafe impl Sync for ForeignMap {}

impl ForeignMap {
    /// The first mapped byte (page aligned).
    pub fn as_ptr(&self) -> std::ptr::NonNull<u8> {
        std::ptr::NonNull::new(self.ptr).expect("mmap never gives NULL")
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` is the start of a live, private (to this value)
        // read-write mapping of `len` bytes, every page of which the
        // hypervisor mapped (`map_foreign` fails otherwise); `&mut self`
        // keeps the slice unaliased for its lifetime.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for ForeignMap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what `mmap` returned and no
        // slice borrowed from `self` outlives it.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// Why the device could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// ENOENT: no such device node.
    Missing,
    /// EACCES/EPERM: not allowed to open it.
    Permission(io::Error),
    Other(io::Error),
}

/// An open privcmd device.
#[derive(Debug)]
pub struct Privcmd {
    file: File,
    path: PathBuf,
}

impl Privcmd {
    /// Open `path` with `O_RDWR | O_CLOEXEC`.
    pub fn open(path: &Path) -> Result<Privcmd, OpenError> {
        let file = crate::open_rw(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => OpenError::Missing,
            io::ErrorKind::PermissionDenied => OpenError::Permission(e),
            _ => OpenError::Other(e),
        })?;
        Ok(Privcmd {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Issue hypercall `op` with `args`; returns its (non-negative) value,
    /// or the errno of a negative one (or of the ioctl itself).
    pub fn hypercall(&self, op: u64, args: [u64; 5]) -> Result<u64, CallError> {
        let mut hc = PrivcmdHypercall { op, arg: args };
        // SAFETY: `hc` is an aligned `struct privcmd_hypercall` exactly as
        // IOCTL_PRIVCMD_HYPERCALL expects (size asserted above), the fd
        // owned by `self.file`. Any buffer named in `args` is the caller's
        // responsibility (see `XenCall::call` below).
        let ret = unsafe { crate::ioctl(self.file.as_raw_fd(), IOCTL_PRIVCMD_HYPERCALL, &mut hc) };
        ret.map(|v| v as u64).map_err(|errno| CallError { errno })
    }
}

impl Privcmd {
    /// Maps frames `gfns` of domain `dom` into this process, in order,
    /// one page each. A frame the hypervisor refused fails the whole call
    /// with its index and errno (nothing stays mapped).
    pub fn map_foreign(&self, dom: u16, gfns: &[u64]) -> Result<ForeignMap, (usize, CallError)> {
        let whole = |errno| (usize::MAX, CallError { errno });
        if gfns.is_empty() || gfns.len() > u32::MAX as usize / PAGE {
            return Err(whole(libc::EINVAL));
        }
        let len = gfns.len() * PAGE;
        // SAFETY: a fresh shared mapping of the device at an address the
        // kernel picks; no existing memory is touched. privcmd's mmap only
        // reserves the range; the ioctl below fills it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(whole(
                io::Error::last_os_error().raw_os_error().unwrap_or(0),
            ));
        }
        let map = ForeignMap {
            ptr: ptr.cast(),
            len,
        };
        let mut errs = vec![0i32; gfns.len()];
        let mut batch = PrivcmdMmapBatchV2 {
            num: gfns.len() as u32,
            dom,
            addr: ptr as u64,
            arr: gfns.as_ptr(),
            err: errs.as_mut_ptr(),
        };
        // SAFETY: `batch` is a `struct privcmd_mmapbatch_v2` (layout
        // asserted above) whose `arr` and `err` point to `num` live
        // elements each for the whole call, and whose `addr` is the start
        // of our mapping of `num` pages of this device.
        let ret = unsafe {
            crate::ioctl(
                self.file.as_raw_fd(),
                IOCTL_PRIVCMD_MMAPBATCH_V2,
                &mut batch,
            )
        };
        // A frame's own error first (the ioctl then fails as a whole too).
        if let Some(i) = errs.iter().position(|&e| e != 0) {
            return Err((i, CallError { errno: -errs[i] }));
        }
        ret.map_err(whole)?;
        Ok(map)
    }
}

/// Make every page of `buf` present and writable in dom0's page tables.
/// Call it on every buffer a hypercall's arguments point into.
///
/// keel reaches the buffer by walking dom0's page tables; a fresh
/// allocation may still be unpopulated, or map the shared zero page
/// read-only, and the hypervisor does not fault pages in for us.
pub fn prefault(buf: &mut [u8]) {
    const PAGE: usize = 4096;
    let len = buf.len();
    let p = buf.as_mut_ptr();
    let touch = |i: usize| {
        // SAFETY: `i < len`, so `p.add(i)` is inside `buf`, which we borrow
        // mutably; reading a byte and writing it back changes nothing.
        // Volatile so the compiler cannot drop the write as redundant.
        unsafe {
            let v = std::ptr::read_volatile(p.add(i));
            std::ptr::write_volatile(p.add(i), v);
        }
    };
    // A page stride from index 0 hits every page but maybe the last.
    (0..len).step_by(PAGE).for_each(touch);
    if len > 0 {
        touch(len - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_numbers() {
        assert_eq!(IOCTL_PRIVCMD_HYPERCALL, 0x0030_5000);
        assert_eq!(std::mem::size_of::<PrivcmdHypercall>(), 48);
        assert_eq!(std::mem::offset_of!(PrivcmdHypercall, arg), 8);
    }

    #[test]
    fn mmapbatch_abi() {
        assert_eq!(IOCTL_PRIVCMD_MMAPBATCH_V2, 0x0020_5004);
        assert_eq!(std::mem::offset_of!(PrivcmdMmapBatchV2, arr), 16);
        assert_eq!(std::mem::offset_of!(PrivcmdMmapBatchV2, err), 24);
    }

    #[test]
    fn map_foreign_refuses_cleanly_off_privcmd() {
        // A regular file: nothing to map (EINVAL for none), and the mmap
        // of a file works but the ioctl is ENOTTY; nothing is left mapped.
        let f = std::env::temp_dir().join(format!("keelctl-mapf-{}", std::process::id()));
        std::fs::write(&f, vec![0u8; 8192]).unwrap();
        let p = Privcmd::open(&f).unwrap();
        assert_eq!(p.map_foreign(1, &[]).unwrap_err().1.errno, libc::EINVAL);
        assert_eq!(p.map_foreign(1, &[5, 6]).unwrap_err().1.errno, libc::ENOTTY);
        std::fs::remove_file(&f).unwrap();
    }

    #[test]
    fn open_errors() {
        assert!(matches!(
            Privcmd::open(Path::new("/nonexistent/keel-test/privcmd")),
            Err(OpenError::Missing)
        ));
        // A regular file opens; the ioctl on it fails cleanly with ENOTTY.
        let f = std::env::temp_dir().join(format!("keelctl-privcmd-{}", std::process::id()));
        std::fs::write(&f, b"").unwrap();
        let p = Privcmd::open(&f).unwrap();
        assert_eq!(p.path(), f.as_path());
        assert_eq!(
            p.hypercall(17, [0; 5]),
            Err(CallError {
                errno: libc::ENOTTY
            })
        );
        std::fs::remove_file(&f).unwrap();
    }

    #[test]
    fn prefault_keeps_contents() {
        let mut v: Vec<u8> = (0..3 * 4096 + 17).map(|i| i as u8).collect();
        let want = v.clone();
        prefault(&mut v[5..]);
        prefault(&mut []);
        assert_eq!(v, want);
    }
}
