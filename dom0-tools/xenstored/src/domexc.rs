//! Domain exceptions (`VIRQ_DOM_EXC`): noticing that an introduced domain
//! has died or shut down, and telling the toolstack through
//! `@releaseDomain`.
//!
//! The hypervisor raises the global `VIRQ_DOM_EXC` in dom0 whenever a
//! domain shuts down or dies; the event says nothing about which. On each
//! one the server runs [`check_domains`], which asks a
//! [`DomainInfoSource`] (in dom0: `domctl getdomaininfo` through privcmd)
//! about every domain it has introduced, as Xen's xenstored does
//! (`check_domains` in `xenstored_domain.c`):
//!
//! * gone (no such domain any more) or dying: dropped exactly as on
//!   RELEASE ([`Engine::release_domain`]: connection closed without its
//!   unsent output, ring unmapped, `@releaseDomain` fired);
//! * newly shut down (`XEN_DOMINF_shutdown` and not yet seen): marked, and
//!   `@releaseDomain` fires once; the domain stays introduced until the
//!   toolstack releases or destroys it (xl's domain-death watch reads the
//!   shutdown reason, then acts on on_poweroff/on_reboot/on_crash). RESUME
//!   clears the mark, so a later shutdown fires again;
//! * otherwise nothing.
//!
//! A domain the source cannot answer about is left alone: a failed call
//! must never drop a live domain.

use std::io;
use std::os::fd::RawFd;

pub use keel_xendev::domctl::DomainState;

use crate::engine::Engine;

/// Where the hypervisor's view of a domain comes from.
pub trait DomainInfoSource: Send {
    /// `Ok(None)`: no such domain.
    fn domain_info(&mut self, domid: u32) -> io::Result<Option<DomainState>>;
}

/// The bound `VIRQ_DOM_EXC`: a file descriptor that becomes readable
/// when the virq fires.
pub trait VirqEvents: Send {
    fn poll_fd(&self) -> RawFd;
    /// Consumes the pending events and unmasks the port again. `Ok(true)`
    /// if any had fired; an error other than "nothing pending" means the
    /// descriptor is unusable.
    fn take(&mut self) -> io::Result<bool>;
    fn describe(&self) -> String;
}

/// What one [`check_domains`] did.
#[derive(Debug, Default)]
pub struct Check {
    /// Dropped: gone or dying.
    pub released: Vec<u32>,
    /// Newly shut down (kept).
    pub shut_down: Vec<u32>,
    /// The source could not say; left as they were.
    pub failed: Vec<(u32, io::Error)>,
}

impl Check {
    /// Whether any `@releaseDomain` fired.
    pub fn fired(&self) -> bool {
        !self.released.is_empty() || !self.shut_down.is_empty()
    }
}

/// Compares every introduced domain with what `src` says (see the module
/// docs). `@releaseDomain` fires once per dropped domain, and once for
/// all newly shut-down ones when none was dropped (a watcher looks at
/// every domain again on any `@releaseDomain`).
pub fn check_domains(engine: &mut Engine, src: &mut dyn DomainInfoSource) -> Check {
    let mut check = Check::default();
    for domid in engine.domain_ids() {
        match src.domain_info(domid) {
            Err(e) => check.failed.push((domid, e)),
            Ok(None) => {
                if engine.release_domain(domid).is_ok() {
                    check.released.push(domid);
                }
            }
            Ok(Some(s)) if s.dying => {
                if engine.release_domain(domid).is_ok() {
                    check.released.push(domid);
                }
            }
            Ok(Some(s)) if s.shutdown => {
                if engine.mark_shutdown(domid) {
                    check.shut_down.push(domid);
                }
            }
            Ok(Some(_)) => {}
        }
    }
    if !check.shut_down.is_empty() && check.released.is_empty() {
        engine.fire_release_domain();
    }
    check
}

#[cfg(test)]
#[allow(clippy::octal_escapes)] // "\0" followed by digits is intended
pub(crate) mod tests {
    use super::*;
    use crate::engine::tests::{drain, req};
    use crate::engine::{ConnId, DomainEvent};
    use crate::wire::MsgType;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    /// A hypervisor's domain table in a test: absent ids are gone; an
    /// `Err` entry makes the call fail.
    #[derive(Clone, Default)]
    pub struct FakeDomains(
        pub Arc<Mutex<BTreeMap<u32, Result<DomainState, i32>>>>,
        /// Queries answered so far.
        pub Arc<std::sync::atomic::AtomicUsize>,
    );

    impl FakeDomains {
        pub fn calls(&self) -> usize {
            self.1.load(std::sync::atomic::Ordering::SeqCst)
        }
        pub fn set(&self, domid: u32, s: Result<DomainState, i32>) {
            self.0.lock().unwrap().insert(domid, s);
        }
        pub fn remove(&self, domid: u32) {
            self.0.lock().unwrap().remove(&domid);
        }
    }

    impl DomainInfoSource for FakeDomains {
        fn domain_info(&mut self, domid: u32) -> io::Result<Option<DomainState>> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            match self.0.lock().unwrap().get(&domid) {
                None => Ok(None),
                Some(Ok(s)) => Ok(Some(*s)),
                Some(Err(e)) => Err(io::Error::from_raw_os_error(*e)),
            }
        }
    }

    pub const RUNNING: DomainState = DomainState {
        dying: false,
        shutdown: false,
        shutdown_code: 0,
    };
    pub const DYING: DomainState = DomainState {
        dying: true,
        ..RUNNING
    };
    /// Shut down with `SHUTDOWN_poweroff` (0).
    pub const SHUTDOWN: DomainState = DomainState {
        shutdown: true,
        ..RUNNING
    };

    /// An engine with dom0's watcher on `@releaseDomain` and domains 3
    /// and 4 introduced (4 with its guest connection); all running.
    fn setup() -> (Engine, ConnId, ConnId, FakeDomains) {
        let mut e = Engine::default();
        let a = e.add_connection(0);
        req(&mut e, a, MsgType::Watch, 0, b"@releaseDomain\0r\0");
        req(&mut e, a, MsgType::Introduce, 0, b"3\0001\0001\0");
        req(&mut e, a, MsgType::Introduce, 0, b"4\0001\0001\0");
        let g = e.add_connection(4);
        e.take_domain_events();
        drain(&mut e, a);
        let src = FakeDomains::default();
        src.set(3, Ok(RUNNING));
        src.set(4, Ok(RUNNING));
        (e, a, g, src)
    }

    /// The watch events queued for `a`.
    fn events(e: &mut Engine, a: ConnId) -> Vec<Vec<u8>> {
        drain(e, a)
            .into_iter()
            .inspect(|m| assert_eq!(m.header.ty, MsgType::WatchEvent as u32))
            .map(|m| m.payload)
            .collect()
    }

    #[test]
    fn running_domains_change_nothing() {
        let (mut e, a, g, mut src) = setup();
        let c = check_domains(&mut e, &mut src);
        assert!(!c.fired() && c.failed.is_empty());
        assert!(events(&mut e, a).is_empty());
        assert_eq!(e.domain_ids(), vec![3, 4]);
        assert!(!e.is_closing(g));
    }

    #[test]
    fn dying_domain_is_dropped_and_release_domain_fires() {
        let (mut e, a, g, mut src) = setup();
        // Output queued for the guest that it will never read.
        req(&mut e, g, MsgType::Write, 0, b"data\0x");
        e.handle(
            g,
            crate::wire::Message::new(MsgType::Read, 1, 0, b"data\0".into()),
        );
        assert!(e.has_output(g));
        src.set(4, Ok(DYING));
        let c = check_domains(&mut e, &mut src);
        assert_eq!((c.released, c.shut_down), (vec![4], vec![]));
        assert_eq!(events(&mut e, a), vec![b"@releaseDomain\0r\0".to_vec()]);
        assert_eq!(e.domain_ids(), vec![3]);
        assert!(e.domain(4).is_none());
        // Dropped as on RELEASE: its connection closes, unsent output gone,
        // the transport layer told to let go of the ring.
        assert!(e.is_closing(g));
        assert!(!e.has_output(g));
        assert_eq!(
            e.take_domain_events(),
            vec![DomainEvent::Released { domid: 4 }]
        );
        // Once dropped, it is not asked about again.
        src.set(4, Err(libc::EIO));
        let c = check_domains(&mut e, &mut src);
        assert!(!c.fired() && c.failed.is_empty());
        assert!(events(&mut e, a).is_empty());
    }

    #[test]
    fn domain_absent_from_the_source_is_dropped() {
        let (mut e, a, _g, mut src) = setup();
        src.remove(3);
        let c = check_domains(&mut e, &mut src);
        assert_eq!(c.released, vec![3]);
        assert_eq!(events(&mut e, a), vec![b"@releaseDomain\0r\0".to_vec()]);
        assert_eq!(e.domain_ids(), vec![4]);
        assert_eq!(
            crate::engine::tests::req(&mut e, a, MsgType::IsDomainIntroduced, 0, b"3\0")[0].payload,
            b"F\0"
        );
    }

    #[test]
    fn shut_down_domain_fires_once_and_stays() {
        let (mut e, a, g, mut src) = setup();
        src.set(3, Ok(SHUTDOWN));
        let c = check_domains(&mut e, &mut src);
        assert_eq!((c.released, c.shut_down), (vec![], vec![3]));
        assert_eq!(events(&mut e, a), vec![b"@releaseDomain\0r\0".to_vec()]);
        assert_eq!(e.domain_ids(), vec![3, 4], "a shut-down domain stays");
        assert!(e.domain(3).unwrap().shutdown);
        assert!(!e.is_closing(g));
        assert!(e.take_domain_events().is_empty());
        // A second event for the same shutdown (e.g. another domain's):
        // nothing new.
        let c = check_domains(&mut e, &mut src);
        assert!(!c.fired());
        assert!(events(&mut e, a).is_empty());
        // Destroyed afterwards: now dropped, and fired again.
        src.set(3, Ok(DYING));
        let c = check_domains(&mut e, &mut src);
        assert_eq!(c.released, vec![3]);
        assert_eq!(events(&mut e, a).len(), 1);
        src.remove(3);
        assert!(!check_domains(&mut e, &mut src).fired());
    }

    #[test]
    fn resume_rearms_the_shutdown_notice() {
        let (mut e, a, _g, mut src) = setup();
        src.set(3, Ok(SHUTDOWN));
        check_domains(&mut e, &mut src);
        assert_eq!(events(&mut e, a).len(), 1);
        // Resumed (after a suspend), running again, then shut down again.
        assert_eq!(
            req(&mut e, a, MsgType::Resume, 0, b"3\0")[0].payload,
            b"OK\0"
        );
        src.set(3, Ok(RUNNING));
        assert!(!check_domains(&mut e, &mut src).fired());
        src.set(3, Ok(SHUTDOWN));
        assert_eq!(check_domains(&mut e, &mut src).shut_down, vec![3]);
        assert_eq!(events(&mut e, a).len(), 1);
    }

    #[test]
    fn several_changes_in_one_check() {
        let (mut e, a, _g, mut src) = setup();
        // Both shut down: one event covers both.
        src.set(3, Ok(SHUTDOWN));
        src.set(4, Ok(SHUTDOWN));
        let c = check_domains(&mut e, &mut src);
        assert_eq!(c.shut_down, vec![3, 4]);
        assert_eq!(events(&mut e, a).len(), 1);
        // Both die: one event per dropped domain, as RELEASE fires.
        src.set(3, Ok(DYING));
        src.remove(4);
        let c = check_domains(&mut e, &mut src);
        assert_eq!(c.released, vec![3, 4]);
        assert_eq!(events(&mut e, a).len(), 2);
        assert!(e.domain_ids().is_empty());
    }

    #[test]
    fn failing_source_drops_nothing() {
        let (mut e, a, g, mut src) = setup();
        src.set(3, Err(libc::EPERM));
        src.set(4, Ok(DYING));
        let c = check_domains(&mut e, &mut src);
        assert_eq!(c.released, vec![4]);
        assert_eq!(c.failed.len(), 1);
        assert_eq!(c.failed[0].0, 3);
        assert_eq!(c.failed[0].1.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(e.domain_ids(), vec![3]);
        assert_eq!(events(&mut e, a).len(), 1);
        assert!(e.is_closing(g));
        // Every call failing: nothing happens at all.
        src.set(3, Err(libc::EIO));
        let c = check_domains(&mut e, &mut src);
        assert!(!c.fired());
        assert_eq!(e.domain_ids(), vec![3]);
        assert!(events(&mut e, a).is_empty());
        // The toolstack can still release it.
        let r = req(&mut e, a, MsgType::Release, 0, b"3\0");
        assert!(r
            .iter()
            .any(|m| m.header.ty == MsgType::Release as u32 && m.payload == b"OK\0"));
        assert!(e.domain_ids().is_empty());
    }
}
