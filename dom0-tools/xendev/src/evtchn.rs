//! Linux's `/dev/xen/evtchn`: event channels from userspace, as
//! libxenevtchn uses them. Only what a frontend played by hand needs
//! (`keel-bad-frontend`): an unbound port another domain can bind to,
//! and notifying it.
//!
//! All of the `unsafe` code for evtchn is in this module.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Where Linux puts the device.
pub const EVTCHN: &str = "/dev/xen/evtchn";

/// `struct ioctl_evtchn_bind_unbound_port` (Linux's
/// `include/uapi/xen/evtchn.h`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EvtchnBindUnboundPort {
    pub remote_domain: u32,
}

/// `struct ioctl_evtchn_notify`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EvtchnNotify {
    pub port: u32,
}

const _: () = assert!(std::mem::size_of::<EvtchnBindUnboundPort>() == 4);
const _: () = assert!(std::mem::size_of::<EvtchnNotify>() == 4);

/// Linux's `_IOC(_IOC_NONE, 'E', nr, size)`.
const fn ioc_e(nr: u8, size: usize) -> u32 {
    crate::ioc(crate::IOC_NONE, b'E', nr, size)
}

/// `IOCTL_EVTCHN_BIND_UNBOUND_PORT`: returns the local port.
pub const IOCTL_EVTCHN_BIND_UNBOUND_PORT: u32 =
    ioc_e(2, std::mem::size_of::<EvtchnBindUnboundPort>());
/// `IOCTL_EVTCHN_NOTIFY`.
pub const IOCTL_EVTCHN_NOTIFY: u32 = ioc_e(4, std::mem::size_of::<EvtchnNotify>());

const _: () = assert!(IOCTL_EVTCHN_BIND_UNBOUND_PORT == 0x0004_4502);
const _: () = assert!(IOCTL_EVTCHN_NOTIFY == 0x0004_4504);

/// An open `/dev/xen/evtchn`; its ports close with it.
#[derive(Debug)]
pub struct Evtchn {
    file: File,
}

impl Evtchn {
    /// Opens `path` (normally [`EVTCHN`]); the error names the path.
    pub fn open(path: &Path) -> io::Result<Evtchn> {
        let file = crate::open_named(path)?;
        Ok(Evtchn { file })
    }

    /// A new port of this domain that domain `remote` may bind to
    /// (`EVTCHNOP_alloc_unbound`).
    pub fn bind_unbound(&self, remote: u16) -> io::Result<u32> {
        let mut op = EvtchnBindUnboundPort {
            remote_domain: remote.into(),
        };
        // SAFETY: `op` is a `struct ioctl_evtchn_bind_unbound_port` (size
        // asserted), this device's argument for the request.
        let r = unsafe {
            crate::ioctl(
                self.file.as_raw_fd(),
                IOCTL_EVTCHN_BIND_UNBOUND_PORT,
                &mut op,
            )
        };
        r.map(|port| port as u32)
            .map_err(|e| crate::errno_error("IOCTL_EVTCHN_BIND_UNBOUND_PORT", e))
    }

    /// Signals `port` (one of this device's) to its other end.
    pub fn notify(&self, port: u32) -> io::Result<()> {
        let mut op = EvtchnNotify { port };
        // SAFETY: `op` is a `struct ioctl_evtchn_notify` (size asserted),
        // this device's argument for the request.
        let r = unsafe { crate::ioctl(self.file.as_raw_fd(), IOCTL_EVTCHN_NOTIFY, &mut op) };
        r.map(drop)
            .map_err(|e| crate::errno_error("IOCTL_EVTCHN_NOTIFY", e))
    }
}
