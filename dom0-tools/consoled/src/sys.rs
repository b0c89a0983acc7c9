//! The few libc calls the daemon and the client need (openpty, poll,
//! termios, O_NONBLOCK), each behind a small safe function.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

/// A pseudo-terminal: the daemon keeps both ends open (an unopened slave
/// would make reads of the master fail with EIO), the master non-blocking.
pub struct Pty {
    pub master: File,
    pub slave: File,
    /// The slave's path, `/dev/pts/N`.
    pub path: String,
}

/// `openpty(3)`, slave in raw mode (as xenconsoled: the guest's own tty
/// does the line discipline), master non-blocking and close-on-exec.
pub fn openpty() -> io::Result<Pty> {
    let mut m: libc::c_int = -1;
    let mut s: libc::c_int = -1;
    // SAFETY: both out-pointers are valid locals; name, termios and winsize
    // are NULL, which openpty allows (it then writes no name).
    let r = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openpty succeeded, so `m` and `s` are fresh fds that nothing
    // else owns.
    let (master, slave) = unsafe { (File::from_raw_fd(m), File::from_raw_fd(s)) };
    let path = ptsname(master.as_raw_fd())?;
    set_cloexec(master.as_raw_fd())?;
    set_cloexec(slave.as_raw_fd())?;
    set_nonblocking(master.as_raw_fd())?;
    // Raw for good: the guard's restore is not wanted here.
    std::mem::forget(make_raw(slave.as_raw_fd())?);
    Ok(Pty {
        master,
        slave,
        path,
    })
}

fn ptsname(fd: RawFd) -> io::Result<String> {
    let mut buf = [0 as libc::c_char; 128];
    // SAFETY: `buf` is writable for its full length, which is passed.
    let r = unsafe { libc::ptsname_r(fd, buf.as_mut_ptr(), buf.len()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    // SAFETY: ptsname_r succeeded, so `buf` holds a NUL-terminated string.
    let s = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Ok(s.to_string_lossy().into_owned())
}

fn fcntl_or(fd: RawFd, get: libc::c_int, set: libc::c_int, bits: libc::c_int) -> io::Result<()> {
    // SAFETY: F_GETFL/F_GETFD on an fd take no pointer arguments.
    let old = unsafe { libc::fcntl(fd, get) };
    if old < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: F_SETFL/F_SETFD take an int argument.
    if unsafe { libc::fcntl(fd, set, old | bits) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets `O_NONBLOCK` on `fd`.
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    fcntl_or(fd, libc::F_GETFL, libc::F_SETFL, libc::O_NONBLOCK)
}

fn set_cloexec(fd: RawFd) -> io::Result<()> {
    fcntl_or(fd, libc::F_GETFD, libc::F_SETFD, libc::FD_CLOEXEC)
}

/// `poll(2)`; an interrupted call counts as "nothing ready".
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: `fds` is a valid, writable array of `fds.len()` pollfds.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(r as usize)
}

/// Whether `fd` is a terminal.
pub fn isatty(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the fd.
    unsafe { libc::isatty(fd) == 1 }
}

/// A terminal put in raw mode; dropping it restores the saved settings.
pub struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: `saved` is a termios tcgetattr filled in for this fd.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

/// `cfmakeraw(3)` on the terminal `fd`; the returned guard restores it.
pub fn make_raw(fd: RawFd) -> io::Result<RawMode> {
    // SAFETY: termios is plain data; all-zero is a valid value to be
    // overwritten by tcgetattr.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a valid, writable termios.
    if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let saved = t;
    // SAFETY: `t` is a valid termios; cfmakeraw only edits its flags.
    unsafe { libc::cfmakeraw(&mut t) };
    // SAFETY: `t` is a valid termios read above.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(RawMode { fd, saved })
}

/// One pollfd.
pub fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}
