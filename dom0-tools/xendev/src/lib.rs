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

/// The last OS error, prefixed with what failed (`mmap ...: ...`).
fn os_error(what: &str) -> std::io::Error {
    let e = std::io::Error::last_os_error();
    std::io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// An errno as an error, prefixed with what failed (`IOCTL_...: ...`).
fn errno_error(what: &str, errno: i32) -> std::io::Error {
    let e = std::io::Error::from_raw_os_error(errno);
    std::io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// `ioctl(fd, request, arg)`, every device's one call: its non-negative
/// result, or the errno it failed with (read at once, before anything
/// else can change it).
///
/// # Safety
/// `request` must be an ioctl of the device open on `fd` whose argument
/// is a pointer to a `T` laid out as the driver's structure (each `T`'s
/// layout is asserted where it is defined), and any memory that `*arg`
/// points to must be valid for what the driver does with it during the
/// call. The driver touches `*arg` itself only during the call.
unsafe fn ioctl<T>(fd: std::os::fd::RawFd, request: u32, arg: &mut T) -> Result<i32, i32> {
    // SAFETY: the caller's contract above; `arg` is a live, exclusive `T`.
    let r = unsafe { libc::ioctl(fd, request as _, arg as *mut T) };
    if r < 0 {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO))
    } else {
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    /// A device that has no such ioctl: the errno comes back (ENOTTY), and
    /// the error names the request.
    #[test]
    fn a_failed_ioctl_gives_its_errno() {
        let f = super::open_rw(std::path::Path::new("/dev/null")).unwrap();
        let mut arg = crate::evtchn::EvtchnNotify { port: 1 };
        // SAFETY: /dev/null has no ioctls: it reads nothing of `arg`.
        let r =
            unsafe { super::ioctl(f.as_raw_fd(), crate::evtchn::IOCTL_EVTCHN_NOTIFY, &mut arg) };
        assert_eq!(r, Err(libc::ENOTTY));
        let e = super::errno_error("IOCTL_EVTCHN_NOTIFY", libc::ENOTTY);
        assert!(e.to_string().starts_with("IOCTL_EVTCHN_NOTIFY: "), "{e}");
        assert_eq!(e.raw_os_error(), None);
    }
}
