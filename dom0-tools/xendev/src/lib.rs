//! Linux's Xen device files, as keel's dom0 tools use them: `privcmd`
//! (hypercalls from userspace, and mapping another domain's pages) and
//! `gntdev` (mapping pages another domain granted to dom0); `gntalloc`
//! and `evtchn` for a frontend played by hand in tests. One
//! crate so that keelctl (the toolstack and domain builder) and
//! keel-xenstored (which maps each domU's xenstore ring) share one thin,
//! audited layer of `unsafe`. [`domctl`] asks the hypervisor about a
//! domain (`getdomaininfo`) through privcmd.

pub mod domctl;
pub mod evtchn;
pub mod gntalloc;
pub mod gntdev;
pub mod privcmd;

/// Linux's `_IOC(dir, type, nr, size)` (asm-generic encoding, as on x86),
/// for every device's ioctl numbers.
const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | ((ty as u32) << 8) | nr as u32
}

/// `_IOC_NONE`: the Xen devices' ioctls name no direction.
const IOC_NONE: u32 = 0;

/// Opens a device file `O_RDWR | O_CLOEXEC`, as the Xen libraries do.
fn open_rw(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

/// [`open_rw`], the error naming the path.
fn open_named(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    open_rw(path).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// The last OS error, prefixed with what failed (`IOCTL_...: ...`).
fn os_error(what: &str) -> std::io::Error {
    let e = std::io::Error::last_os_error();
    std::io::Error::new(e.kind(), format!("{what}: {e}"))
}
