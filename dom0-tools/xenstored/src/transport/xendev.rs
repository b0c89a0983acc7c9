//! Linux's Xen devices in dom0: the event-channel device
//! (`/dev/xen/evtchn`) and the page dom0's own kernel talks xenstore on
//! (`/proc/xen/xsd_kva`, port in `/proc/xen/xsd_port`, from xenfs).
//!
//! A PVH dom0 kernel runs its xenstore client in "local" mode: it allocates
//! the ring page and an unbound event channel itself and waits for a
//! daemon in its own userspace. [`dom0_ring`] attaches to both as Xen's C
//! xenstored does at start (`dom0_init`): map the page, bind a port of
//! this process to the kernel's (an interdomain bind to dom0 itself), then
//! notify. From then on dom0's kernel (its xenbus, `/dev/xen/xenbus`) and
//! the tools on the Unix socket share one store.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::ptr::NonNull;
use std::sync::Arc;

use keel_xendev::gntdev::{Gntdev, MappedBy, GNTTAB_RESERVED_XENSTORE};

use super::ring::{RingPage, RingTransport};
use super::Transport;

pub const EVTCHN_DEV: &str = "/dev/xen/evtchn";
pub const XSD_KVA: &str = "/proc/xen/xsd_kva";
pub const XSD_PORT: &str = "/proc/xen/xsd_port";

/// `_IOC(_IOC_NONE, 'E', nr, size)` of Linux's `include/uapi/xen/evtchn.h`.
const fn ioc_evtchn(nr: u64, size: u64) -> u64 {
    (size << 16) | ((b'E' as u64) << 8) | nr
}
/// `struct ioctl_evtchn_bind_virq { unsigned virq; }`.
const IOCTL_EVTCHN_BIND_VIRQ: u64 = ioc_evtchn(0, 4);
/// `struct ioctl_evtchn_bind_interdomain { unsigned remote_domain, remote_port; }`.
const IOCTL_EVTCHN_BIND_INTERDOMAIN: u64 = ioc_evtchn(1, 8);
/// `struct ioctl_evtchn_notify { unsigned port; }`.
const IOCTL_EVTCHN_NOTIFY: u64 = ioc_evtchn(4, 4);

/// One open `/dev/xen/evtchn` with one bound port. Readable while the port
/// has fired; [`Evtchn::drain`] consumes that and unmasks the port.
pub struct Evtchn {
    file: File,
    port: u32,
}

fn open_evtchn() -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(EVTCHN_DEV)
        .map_err(|e| io::Error::new(e.kind(), format!("{EVTCHN_DEV}: {e}")))
}

impl Evtchn {
    /// Binds global virtual interrupt `virq` (e.g. `VIRQ_DOM_EXC`) to a
    /// new local port (`EVTCHNOP_bind_virq` through the kernel driver).
    pub fn bind_virq(virq: u32) -> io::Result<Evtchn> {
        Self::bind(IOCTL_EVTCHN_BIND_VIRQ, &virq, || {
            format!("binding virq {virq}")
        })
    }

    /// Binds a new local port to `remote_port` of domain `remote_dom`
    /// (`EVTCHNOP_bind_interdomain` through the kernel driver).
    pub fn bind_interdomain(remote_dom: u32, remote_port: u32) -> io::Result<Evtchn> {
        Self::bind(
            IOCTL_EVTCHN_BIND_INTERDOMAIN,
            &[remote_dom, remote_port],
            || format!("binding to d{remote_dom} port {remote_port}"),
        )
    }

    /// A new evtchn fd bound by `ioctl` with argument `arg` (the driver
    /// returns the local port); `what` names the binding in an error.
    fn bind<T>(ioctl: u64, arg: &T, what: impl Fn() -> String) -> io::Result<Evtchn> {
        let file = open_evtchn()?;
        // SAFETY: the ioctl reads the struct at `arg` (its size is encoded
        // in `ioctl`, and `T` is that struct), which lives across the
        // call; the fd is ours.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), ioctl as _, arg as *const T) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("{}: {e}", what())));
        }
        Ok(Evtchn {
            file,
            port: r as u32,
        })
    }

    /// The local port.
    pub fn port(&self) -> u32 {
        self.port
    }

    /// Signals the other end.
    pub fn notify(&self) {
        let arg: u32 = self.port;
        // SAFETY: the ioctl reads the 4-byte struct at `arg`; a failure
        // (port closed under us) leaves nothing to do.
        unsafe { libc::ioctl(self.file.as_raw_fd(), IOCTL_EVTCHN_NOTIFY as _, &arg) };
    }

    /// Consumes pending events and unmasks the port again (the driver masks
    /// a port when it fires). Returns whether any were pending.
    pub fn drain(&self) -> bool {
        let mut ports = [0u32; 16];
        let mut any = false;
        loop {
            // SAFETY: reading into a local array of its own size.
            let n = unsafe {
                libc::read(
                    self.file.as_raw_fd(),
                    ports.as_mut_ptr().cast(),
                    std::mem::size_of_val(&ports),
                )
            };
            if n <= 0 {
                break;
            }
            any = true;
        }
        if any {
            let p = self.port;
            // SAFETY: writing the 4-byte port number from a local.
            unsafe {
                libc::write(
                    self.file.as_raw_fd(),
                    (&p as *const u32).cast(),
                    std::mem::size_of::<u32>(),
                )
            };
        }
        any
    }

    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Reads the ports that fired (u32s; the driver masks each as it
    /// fires) and writes them back, which unmasks them. `Ok(false)`: none
    /// pending. A read error other than EAGAIN/EINTR is returned.
    fn take_fired(&self) -> io::Result<bool> {
        let mut ports = [0u32; 16];
        let mut fired: Vec<u32> = Vec::new();
        loop {
            // SAFETY: reading into a local array of its own size.
            let n = unsafe {
                libc::read(
                    self.file.as_raw_fd(),
                    ports.as_mut_ptr().cast(),
                    std::mem::size_of_val(&ports),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(e),
                }
            }
            if n == 0 {
                break;
            }
            let got = n as usize / std::mem::size_of::<u32>();
            for &p in &ports[..got] {
                if !fired.contains(&p) {
                    fired.push(p);
                }
            }
        }
        for p in &fired {
            // SAFETY: writing a 4-byte port number from a local.
            unsafe {
                libc::write(
                    self.file.as_raw_fd(),
                    (p as *const u32).cast(),
                    std::mem::size_of::<u32>(),
                )
            };
        }
        Ok(!fired.is_empty())
    }
}

/// `VIRQ_DOM_EXC` bound through `/dev/xen/evtchn`: fires in dom0 when a
/// domain shuts down or dies.
pub struct DomExcVirq(Evtchn);

impl DomExcVirq {
    pub fn bind() -> io::Result<DomExcVirq> {
        Evtchn::bind_virq(keel_xen_abi::evtchn::VIRQ_DOM_EXC).map(DomExcVirq)
    }
}

impl crate::domexc::VirqEvents for DomExcVirq {
    fn poll_fd(&self) -> RawFd {
        self.0.fd()
    }

    fn take(&mut self) -> io::Result<bool> {
        self.0.take_fired()
    }

    fn describe(&self) -> String {
        format!("VIRQ_DOM_EXC (event channel port {})", self.0.port)
    }
}

/// The hypervisor's view of a domain: `domctl getdomaininfo` through
/// privcmd ([`keel_xendev::domctl`]).
pub struct PrivcmdDomains {
    privcmd: keel_xendev::privcmd::Privcmd,
}

impl PrivcmdDomains {
    pub fn open(path: &std::path::Path) -> io::Result<PrivcmdDomains> {
        let privcmd = keel_xendev::privcmd::Privcmd::open(path)
            .map_err(|e| io::Error::other(format!("{}: {e:?}", path.display())))?;
        Ok(PrivcmdDomains { privcmd })
    }
}

impl crate::domexc::DomainInfoSource for PrivcmdDomains {
    fn domain_info(&mut self, domid: u32) -> io::Result<Option<crate::domexc::DomainState>> {
        keel_xendev::domctl::domain_info(&self.privcmd, domid)
    }
}

/// A shared-page ring whose doorbell is an event channel.
pub struct EvtchnRing {
    ring: RingTransport,
    ev: Arc<Evtchn>,
}

impl EvtchnRing {
    pub fn new(page: RingPage, domid: u32, ev: Evtchn) -> EvtchnRing {
        let ev = Arc::new(ev);
        let bell = ev.clone();
        let ring = RingTransport::new(page, domid, Box::new(move || bell.notify()), None);
        EvtchnRing { ring, ev }
    }
}

impl Transport for EvtchnRing {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.ring.recv(buf)
    }

    /// The doorbell rang: consume it and unmask the port, so the fd is
    /// readable again only at the next notification (else poll(2) spins).
    fn ack_event(&mut self) {
        self.ev.drain();
    }

    fn send(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.ring.send(buf)
    }

    fn poll_fd(&self) -> Option<RawFd> {
        Some(self.ev.fd())
    }

    /// Room in a full ring comes with the peer's notification (Linux's
    /// xenbus notifies after reading from a full ring); POLLOUT on the
    /// event channel would be ready at once and spin the loop.
    fn polls_for_room(&self) -> bool {
        false
    }

    fn domid(&self) -> u32 {
        self.ring.domid()
    }

    fn protocol_error(&mut self) {
        self.ring.protocol_error()
    }

    fn describe(&self) -> String {
        format!(
            "{} (event channel port {})",
            self.ring.describe(),
            self.ev.port
        )
    }
}

/// Parses `/proc/xen/xsd_port`'s contents.
pub fn parse_port(s: &str) -> io::Result<u32> {
    s.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{XSD_PORT}: not a port number: {:?}", s.trim()),
        )
    })
}

/// dom0's own kernel's xenstore ring, attached (see the module docs).
pub fn dom0_ring() -> io::Result<EvtchnRing> {
    let port = parse_port(
        &std::fs::read_to_string(XSD_PORT)
            .map_err(|e| io::Error::new(e.kind(), format!("{XSD_PORT}: {e}")))?,
    )?;
    let kva = OpenOptions::new()
        .read(true)
        .write(true)
        .open(XSD_KVA)
        .map_err(|e| io::Error::new(e.kind(), format!("{XSD_KVA}: {e}")))?;
    // SAFETY: a fresh shared mapping of the one page xenfs offers; the
    // kernel checks the size and offset. It is never unmapped: dom0's ring
    // is served for the life of the process.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            kva.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("mmap {XSD_KVA}: {e}")));
    }
    let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave NULL"))?;
    // SAFETY: `ptr` maps a whole, page-aligned page that stays mapped (above).
    let page = unsafe { RingPage::from_raw(ptr) };
    // The kernel allocated the port unbound for itself (remote = DOMID_SELF).
    let ev = Evtchn::bind_interdomain(0, port)?;
    let ring = EvtchnRing::new(page, 0, ev);
    // Requests dom0's kernel queued before the daemon came: look now.
    ring.ev.notify();
    Ok(ring)
}

/// Attaches the domains the toolstack INTRODUCEs (a domU's ring page, by
/// its gfn, and its event channel), as Xen's C xenstored does: the page is
/// mapped through the grant table (`/dev/xen/gntdev`, the domain's
/// `GNTTAB_RESERVED_XENSTORE` grant) or, if that fails, through privcmd
/// (foreign mapping of the gfn); either is unmapped when the connection
/// goes. Then the port is bound from here and the guest notified once for
/// the requests it queued before.
pub struct PrivcmdConnector {
    privcmd: keel_xendev::privcmd::Privcmd,
    /// The open gntdev, or why not (then every ring is foreign-mapped and
    /// each attach says why).
    gntdev: Result<Gntdev, String>,
}

impl PrivcmdConnector {
    /// Opens privcmd at `path` (required) and gntdev at its usual place.
    pub fn open(path: &std::path::Path) -> io::Result<PrivcmdConnector> {
        Self::open_with(path, std::path::Path::new(keel_xendev::gntdev::GNTDEV))
    }

    /// Opens privcmd at `path` (required) and gntdev at `gntdev` (optional).
    pub fn open_with(
        path: &std::path::Path,
        gntdev: &std::path::Path,
    ) -> io::Result<PrivcmdConnector> {
        let privcmd = keel_xendev::privcmd::Privcmd::open(path)
            .map_err(|e| io::Error::other(format!("{}: {e:?}", path.display())))?;
        let gntdev = Gntdev::open(gntdev).map_err(|e| e.to_string());
        Ok(PrivcmdConnector { privcmd, gntdev })
    }
}

/// Maps introduced domain `domid`'s xenstore ring (frame `mfn`) as Xen's
/// C xenstored does: through the grant table (`grant`) first, by foreign
/// mapping of the frame (`foreign`, given the checked domain and gfn)
/// only if that fails. The domain and frame are checked before either is
/// tried: dom0's own ring is never mapped this way (see [`dom0_ring`]).
pub fn map_ring_page(
    domid: u32,
    mfn: i64,
    grant: impl FnOnce() -> Result<RingPage, String>,
    foreign: impl FnOnce(u16, u64) -> Result<RingPage, String>,
) -> io::Result<(RingPage, MappedBy)> {
    let (dom, gfn) = ring_frame(domid, mfn)?;
    keel_xendev::gntdev::map_ring(grant, || foreign(dom, gfn)).map_err(|e| {
        io::Error::other(format!(
            "mapping domain {domid}'s xenstore ring (frame {gfn:#x}): {e}"
        ))
    })
}

/// The gfn and domain an INTRODUCE names, checked before any mapping.
fn ring_frame(domid: u32, mfn: i64) -> io::Result<(u16, u64)> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    let dom = u16::try_from(domid)
        .ok()
        .filter(|&d| d != 0 && d < 0x7ff0)
        .ok_or_else(|| bad(format!("domain {domid}: not a guest domain")))?;
    // Guest frame numbers are below 2^40 on x86-64 (52-bit addresses).
    let gfn = u64::try_from(mfn)
        .ok()
        .filter(|&g| g < 1 << 40)
        .ok_or_else(|| bad(format!("domain {domid}: ring frame {mfn} out of range")))?;
    Ok((dom, gfn))
}

impl crate::server::DomainConnector for PrivcmdConnector {
    fn connect(&mut self, domid: u32, mfn: i64, evtchn: u32) -> io::Result<Box<dyn Transport>> {
        let grant = || {
            let gntdev = self.gntdev.as_ref().map_err(Clone::clone)?;
            let map = gntdev
                .map_grant(domid, GNTTAB_RESERVED_XENSTORE)
                .map_err(|e| e.to_string())?;
            let ptr = map.as_ptr();
            // SAFETY: `ptr` is the start of a whole, page-aligned,
            // read-write mapping of one page, which `map` keeps mapped and
            // the ring owns.
            Ok(unsafe { RingPage::from_owned(ptr, Arc::new(map)) })
        };
        let foreign = |dom: u16, gfn: u64| {
            let map = self
                .privcmd
                .map_foreign(dom, &[gfn])
                .map_err(|(_, e)| format!("errno {}", e.errno))?;
            let ptr = map.as_ptr();
            // SAFETY: as above: one read-write page, owned by the ring.
            Ok(unsafe { RingPage::from_owned(ptr, Arc::new(map)) })
        };
        let (page, how) = map_ring_page(domid, mfn, grant, foreign)?;
        eprintln!("keel-xenstored: mapped domain {domid}'s xenstore ring {how}");
        let ev = Evtchn::bind_interdomain(domid, evtchn)?;
        let ring = EvtchnRing::new(page, domid, ev);
        ring.ev.notify();
        Ok(Box::new(ring))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn introduced_frames_are_checked_before_mapping() {
        assert_eq!(ring_frame(3, 0xfeffc).unwrap(), (3, 0xfeffc));
        for (d, m) in [(0, 5), (0x7ff0, 5), (1 << 20, 5), (3, -1), (3, 1 << 40)] {
            let e = ring_frame(d, m).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{d} {m}: {e}");
        }
    }

    use super::*;

    /// Grant table first; foreign mapping of the checked frame only when
    /// that fails; both failing is one error naming both causes.
    #[test]
    fn rings_are_mapped_through_the_grant_table_first() {
        let no_foreign = |_: u16, _: u64| -> Result<RingPage, String> {
            panic!("foreign mapping tried after a grant map")
        };
        let (_, how) =
            map_ring_page(3, 0xfeffc, || Ok(RingPage::new_in_memory()), no_foreign).unwrap();
        assert_eq!(how, MappedBy::GrantTable);

        let mut asked = None;
        let (_, how) = map_ring_page(
            3,
            0xfeffc,
            || Err("no such device".into()),
            |d, g| {
                asked = Some((d, g));
                Ok(RingPage::new_in_memory())
            },
        )
        .unwrap();
        assert_eq!(asked, Some((3, 0xfeffc)));
        assert_eq!(
            how.to_string(),
            "by foreign mapping (gntdev: no such device)"
        );

        let e = map_ring_page(
            3,
            0xfeffc,
            || Err("mmap: EINVAL".into()),
            |_, _| Err("errno 1".into()),
        )
        .err()
        .unwrap();
        assert_eq!(
            e.to_string(),
            "mapping domain 3's xenstore ring (frame 0xfeffc): \
             gntdev: mmap: EINVAL; foreign mapping: errno 1"
        );
    }

    /// dom0 (its ring is /proc/xen/xsd_kva's, not a mapping) and bad
    /// frames are refused before either mapper runs.
    #[test]
    fn dom0_and_bad_frames_are_never_mapped() {
        for (d, m) in [(0, 5), (3, -1)] {
            let e = map_ring_page(
                d,
                m,
                || panic!("grant map of {d} tried"),
                |_, _| panic!("foreign map of {d} tried"),
            )
            .err()
            .unwrap();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        }
    }

    /// The ioctl numbers are Linux's (`_IOC(_IOC_NONE, 'E', nr, size)`).
    #[test]
    fn ioctl_numbers() {
        assert_eq!(IOCTL_EVTCHN_BIND_VIRQ, 0x0004_4500);
        assert_eq!(IOCTL_EVTCHN_BIND_INTERDOMAIN, 0x0008_4501);
        assert_eq!(IOCTL_EVTCHN_NOTIFY, 0x0004_4504);
    }

    #[test]
    fn xsd_port_parsing() {
        assert_eq!(parse_port("3\n").unwrap(), 3);
        assert!(parse_port("").is_err());
        assert!(parse_port("-1").is_err());
        assert!(parse_port("x").is_err());
    }
}
