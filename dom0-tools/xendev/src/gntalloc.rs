//! Linux's `/dev/xen/gntalloc`: a page of this domain's memory granted to
//! another domain, as a frontend shares its rings (libxengnttab's
//! `xengntshr_share_pages`). keel's tests use it in a domU to play a
//! frontend by hand (`keel-bad-frontend`).
//!
//! The driver's protocol: `IOCTL_GNTALLOC_ALLOC_GREF` allocates a page,
//! grants it to `domid` and returns the grant reference and an offset
//! (`index`); `mmap` of the device at that offset maps the page into
//! this process. `munmap` plus `IOCTL_GNTALLOC_DEALLOC_GREF` give it back
//! (the grant ends once the other side has unmapped it).
//!
//! All of the `unsafe` code for gntalloc is in this module.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;

/// Where Linux puts the device.
pub const GNTALLOC: &str = "/dev/xen/gntalloc";

const PAGE: usize = 4096;

/// The grant lets the other domain write (`GNTALLOC_FLAG_WRITABLE`).
pub const GNTALLOC_FLAG_WRITABLE: u16 = 1;

/// `struct ioctl_gntalloc_alloc_gref` from Linux's
/// `include/uapi/xen/gntalloc.h`, with its one-element `gref_ids[1]` (the
/// size the ioctl number encodes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GntallocAllocGref {
    pub domid: u16,
    pub flags: u16,
    pub count: u32,
    pub index: u64,
    pub gref_ids: [u32; 1],
}

const _: () = assert!(std::mem::size_of::<GntallocAllocGref>() == 24);
const _: () = assert!(std::mem::offset_of!(GntallocAllocGref, index) == 8);
const _: () = assert!(std::mem::offset_of!(GntallocAllocGref, gref_ids) == 16);

/// `struct ioctl_gntalloc_dealloc_gref`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GntallocDeallocGref {
    pub index: u64,
    pub count: u32,
    pub pad: u32,
}

const _: () = assert!(std::mem::size_of::<GntallocDeallocGref>() == 16);

/// Linux's `_IOC(_IOC_NONE, 'G', nr, size)`.
const fn ioc_g(nr: u8, size: usize) -> u32 {
    crate::ioc(crate::IOC_NONE, b'G', nr, size)
}

/// `IOCTL_GNTALLOC_ALLOC_GREF`.
pub const IOCTL_GNTALLOC_ALLOC_GREF: u32 = ioc_g(5, std::mem::size_of::<GntallocAllocGref>());
/// `IOCTL_GNTALLOC_DEALLOC_GREF`.
pub const IOCTL_GNTALLOC_DEALLOC_GREF: u32 = ioc_g(6, std::mem::size_of::<GntallocDeallocGref>());

const _: () = assert!(IOCTL_GNTALLOC_ALLOC_GREF == 0x0018_4705);
const _: () = assert!(IOCTL_GNTALLOC_DEALLOC_GREF == 0x0010_4706);

/// An open `/dev/xen/gntalloc`.
#[derive(Debug)]
pub struct Gntalloc {
    file: File,
}

impl Gntalloc {
    /// Opens `path` (normally [`GNTALLOC`]); the error names the path.
    pub fn open(path: &Path) -> io::Result<Gntalloc> {
        let file = crate::open_named(path)?;
        Ok(Gntalloc { file })
    }

    /// Gives back the page at `index` (one this device allocated, no
    /// longer mapped here): the grant goes once the other domain has
    /// unmapped it. A failure leaves it to close().
    fn dealloc(&self, index: u64) {
        let mut d = GntallocDeallocGref {
            index,
            count: 1,
            pad: 0,
        };
        // SAFETY: `d` is a `struct ioctl_gntalloc_dealloc_gref` (layout
        // asserted above) naming one page, the request's argument.
        let _ = unsafe { crate::ioctl(self.file.as_raw_fd(), IOCTL_GNTALLOC_DEALLOC_GREF, &mut d) };
    }

    /// A new zeroed page granted to `domid` (writable by it with
    /// `writable`), mapped into this process until the value drops.
    pub fn share(&self, domid: u16, writable: bool) -> io::Result<SharedPage<'_>> {
        let fd = self.file.as_raw_fd();
        let mut op = GntallocAllocGref {
            domid,
            flags: if writable { GNTALLOC_FLAG_WRITABLE } else { 0 },
            count: 1,
            ..Default::default()
        };
        // SAFETY: `op` is an aligned `struct ioctl_gntalloc_alloc_gref` for
        // one page (layout asserted above), the request's argument; the
        // driver writes `index` and `gref_ids[0]`.
        unsafe { crate::ioctl(fd, IOCTL_GNTALLOC_ALLOC_GREF, &mut op) }
            .map_err(|e| crate::errno_error("IOCTL_GNTALLOC_ALLOC_GREF", e))?;
        let Ok(offset) = libc::off_t::try_from(op.index) else {
            self.dealloc(op.index);
            return Err(io::Error::from_raw_os_error(libc::EOVERFLOW));
        };
        // SAFETY: a fresh shared mapping of the device at an address the
        // kernel picks, at the offset the driver gave for this page; no
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
            let e = crate::os_error("mmap of the granted page");
            self.dealloc(op.index);
            return Err(e);
        }
        let Some(ptr) = NonNull::new(p.cast::<u8>()) else {
            self.dealloc(op.index);
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        };
        Ok(SharedPage {
            ptr,
            gref: op.gref_ids[0],
            index: op.index,
            dev: self,
        })
    }
}

/// A page of this domain granted to another, mapped here. The other
/// domain may change it at any time, so it is read and written only a
/// word at a time, volatile, never through a Rust reference.
#[derive(Debug)]
pub struct SharedPage<'a> {
    ptr: NonNull<u8>,
    gref: u32,
    index: u64,
    dev: &'a Gntalloc,
}

impl SharedPage<'_> {
    /// The grant reference the other domain maps it by.
    pub fn gref(&self) -> u32 {
        self.gref
    }

    /// Bytes in the page.
    pub fn len(&self) -> usize {
        PAGE
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The 32-bit word at byte `offset` (4-aligned, inside the page).
    pub fn read_u32(&self, offset: usize) -> u32 {
        assert!(
            offset.is_multiple_of(4) && offset + 4 <= PAGE,
            "offset {offset}"
        );
        // SAFETY: in bounds and aligned (asserted); the mapping lives as
        // long as `self`; volatile, as the other domain may write it.
        unsafe { self.ptr.as_ptr().add(offset).cast::<u32>().read_volatile() }
    }

    /// Writes the 32-bit word at byte `offset` (4-aligned, in the page).
    pub fn write_u32(&self, offset: usize, v: u32) {
        assert!(
            offset.is_multiple_of(4) && offset + 4 <= PAGE,
            "offset {offset}"
        );
        // SAFETY: as in `read_u32`; the page is mapped writable.
        unsafe {
            self.ptr
                .as_ptr()
                .add(offset)
                .cast::<u32>()
                .write_volatile(v)
        }
    }
}

impl Drop for SharedPage<'_> {
    fn drop(&mut self) {
        // SAFETY: `ptr` and one page are exactly what `mmap` returned, and
        // no reference into it exists (all access is by value).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), PAGE);
        }
        self.dev.dealloc(self.index);
    }
}
