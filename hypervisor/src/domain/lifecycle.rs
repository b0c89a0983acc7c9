//! A domain's life cycle and memory accounting, in the style of Xen's
//! `struct domain` bookkeeping: pure state, host-tested.
//!
//! ```text
//! Created --start--> Running --pause--> Paused
//!                      ^  <---unpause----  |
//!                      |                   |
//!                      +-- shutdown(r) ----+--> ShuttingDown(r) --destroy--> Dead
//!   Created --destroy--> Dead   (a domain whose build failed)
//!   ShuttingDown(Suspend) --resume--> Running
//! ```
//!
//! Invalid transitions are errors and change nothing.

use super::DomId;
use crate::xen::abi::Errno;

/// The longest domain name accepted.
pub const NAME_MAX: usize = 64;

use crate::xen::abi::shutdown;

/// Why a domain shut down: Xen's `SHUTDOWN_*` codes (`xen::abi::shutdown`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ShutdownReason {
    Poweroff = shutdown::POWEROFF,
    Reboot = shutdown::REBOOT,
    Suspend = shutdown::SUSPEND,
    Crash = shutdown::CRASH,
    Watchdog = shutdown::WATCHDOG,
}

impl ShutdownReason {
    /// From the guest's `SCHEDOP_shutdown` argument.
    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            shutdown::POWEROFF => ShutdownReason::Poweroff,
            shutdown::REBOOT => ShutdownReason::Reboot,
            shutdown::SUSPEND => ShutdownReason::Suspend,
            shutdown::CRASH => ShutdownReason::Crash,
            shutdown::WATCHDOG => ShutdownReason::Watchdog,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainState {
    Created,
    Running,
    Paused,
    ShuttingDown(ShutdownReason),
    Dead,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainError {
    InvalidTransition {
        from: DomainState,
        to: DomainState,
    },
    /// Allocating would take the domain past its `max_pages`.
    OverMaxPages {
        tot: u64,
        max: u64,
        want: u64,
    },
    /// Freeing more pages than the domain holds.
    FreeUnderflow {
        tot: u64,
        free: u64,
    },
    /// The domain is dying or dead: no more memory.
    Dying,
    BadDomid(u32),
    DomidInUse(DomId),
    NoSuchDomain(DomId),
    NameTooLong,
    NoVcpus,
}

impl DomainError {
    /// The Xen errno a hypercall returns for it.
    pub fn errno(&self) -> Errno {
        match self {
            DomainError::OverMaxPages { .. } => Errno::ENOMEM,
            DomainError::NoSuchDomain(_) => Errno::ESRCH,
            DomainError::DomidInUse(_) => Errno::EEXIST,
            _ => Errno::EINVAL,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Lifecycle {
    state: DomainState,
    tot_pages: u64,
    max_pages: u64,
}

impl Lifecycle {
    /// A new domain in `Created`, with a memory limit of `max_pages`.
    pub fn new(max_pages: u64) -> Self {
        Lifecycle {
            state: DomainState::Created,
            tot_pages: 0,
            max_pages,
        }
    }

    pub fn state(&self) -> DomainState {
        self.state
    }

    /// Shutting down or dead: no more memory, no more running.
    pub fn is_dying(&self) -> bool {
        matches!(self.state, DomainState::ShuttingDown(_) | DomainState::Dead)
    }

    fn transition(&mut self, to: DomainState) -> Result<(), DomainError> {
        use DomainState::*;
        let ok = matches!(
            (self.state, to),
            (Created, Running)
                | (Running, Paused)
                | (Paused, Running)
                | (Running | Paused, ShuttingDown(_))
                | (ShuttingDown(ShutdownReason::Suspend), Running)
                | (Created | ShuttingDown(_), Dead)
        );
        if !ok {
            return Err(DomainError::InvalidTransition {
                from: self.state,
                to,
            });
        }
        self.state = to;
        Ok(())
    }

    /// First unpause after the build.
    pub fn start(&mut self) -> Result<(), DomainError> {
        if self.state != DomainState::Created {
            return Err(DomainError::InvalidTransition {
                from: self.state,
                to: DomainState::Running,
            });
        }
        self.transition(DomainState::Running)
    }

    pub fn pause(&mut self) -> Result<(), DomainError> {
        self.transition(DomainState::Paused)
    }

    pub fn unpause(&mut self) -> Result<(), DomainError> {
        if self.state != DomainState::Paused {
            return Err(DomainError::InvalidTransition {
                from: self.state,
                to: DomainState::Running,
            });
        }
        self.transition(DomainState::Running)
    }

    /// `SCHEDOP_shutdown`: every vCPU stops.
    pub fn shutdown(&mut self, reason: ShutdownReason) -> Result<(), DomainError> {
        self.transition(DomainState::ShuttingDown(reason))
    }

    /// Resume after a suspend: vCPU 0 comes back.
    pub fn resume(&mut self) -> Result<(), DomainError> {
        if self.state != DomainState::ShuttingDown(ShutdownReason::Suspend) {
            return Err(DomainError::InvalidTransition {
                from: self.state,
                to: DomainState::Running,
            });
        }
        self.transition(DomainState::Running)
    }

    /// Final teardown: the caller must have freed the domain's memory
    /// (`tot_pages` is reset here for accounting).
    pub fn destroy(&mut self) -> Result<(), DomainError> {
        self.transition(DomainState::Dead)?;
        self.tot_pages = 0;
        Ok(())
    }

    // --- memory -----------------------------------------------------------

    pub fn tot_pages(&self) -> u64 {
        self.tot_pages
    }
    pub fn max_pages(&self) -> u64 {
        self.max_pages
    }

    /// `XEN_DOMCTL_max_mem`: may go below `tot_pages` (further allocation
    /// then fails until enough is freed), like Xen.
    pub fn set_max_pages(&mut self, max: u64) {
        self.max_pages = max;
    }

    /// Accounts `n` newly allocated pages.
    pub fn alloc_pages(&mut self, n: u64) -> Result<(), DomainError> {
        if matches!(self.state, DomainState::ShuttingDown(_) | DomainState::Dead) {
            return Err(DomainError::Dying);
        }
        match self.tot_pages.checked_add(n) {
            Some(t) if t <= self.max_pages => {
                self.tot_pages = t;
                Ok(())
            }
            _ => Err(DomainError::OverMaxPages {
                tot: self.tot_pages,
                max: self.max_pages,
                want: n,
            }),
        }
    }

    pub fn free_pages(&mut self, n: u64) -> Result<(), DomainError> {
        if n > self.tot_pages {
            return Err(DomainError::FreeUnderflow {
                tot: self.tot_pages,
                free: n,
            });
        }
        self.tot_pages -= n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DomainState::*;

    #[test]
    fn life_cycle() {
        let mut d = Lifecycle::new(256);
        assert_eq!(d.state(), Created);
        d.start().unwrap();
        assert_eq!(d.state(), Running);
        d.pause().unwrap();
        assert_eq!(d.state(), Paused);
        d.unpause().unwrap();
        d.pause().unwrap();
        assert!(!d.is_dying());
        d.shutdown(ShutdownReason::Reboot).unwrap();
        assert_eq!(d.state(), ShuttingDown(ShutdownReason::Reboot));
        assert!(d.is_dying());
        d.destroy().unwrap();
        assert_eq!(d.state(), Dead);
    }

    #[test]
    fn invalid_transitions_are_errors() {
        let mut d = Lifecycle::new(16);
        let e = |from, to| Err(DomainError::InvalidTransition { from, to });
        assert_eq!(d.pause(), e(Created, Paused));
        assert_eq!(d.unpause(), e(Created, Running));
        assert_eq!(
            d.shutdown(ShutdownReason::Crash),
            e(Created, ShuttingDown(ShutdownReason::Crash))
        );
        assert_eq!(d.resume(), e(Created, Running));
        d.start().unwrap();
        assert_eq!(d.start(), e(Running, Running));
        assert_eq!(d.unpause(), e(Running, Running));
        assert_eq!(d.destroy(), e(Running, Dead));
        d.pause().unwrap();
        assert_eq!(d.pause(), e(Paused, Paused));
        d.shutdown(ShutdownReason::Poweroff).unwrap();
        assert_eq!(
            d.shutdown(ShutdownReason::Crash),
            e(
                ShuttingDown(ShutdownReason::Poweroff),
                ShuttingDown(ShutdownReason::Crash)
            )
        );
        assert_eq!(
            d.unpause(),
            e(ShuttingDown(ShutdownReason::Poweroff), Running)
        );
        assert_eq!(
            d.resume(),
            e(ShuttingDown(ShutdownReason::Poweroff), Running)
        );
        d.destroy().unwrap();
        assert_eq!(d.destroy(), e(Dead, Dead));
        assert_eq!(d.start(), e(Dead, Running));
        assert_eq!(d.state(), Dead, "failed transitions change nothing");
        // A domain whose build failed goes straight to Dead.
        let mut d = Lifecycle::new(16);
        d.destroy().unwrap();
    }

    #[test]
    fn suspend_and_resume() {
        let mut d = Lifecycle::new(16);
        d.start().unwrap();
        d.shutdown(ShutdownReason::Suspend).unwrap();
        d.resume().unwrap();
        assert_eq!(d.state(), Running);
    }

    #[test]
    fn shutdown_codes_match_xen() {
        for (c, r) in [
            (0, ShutdownReason::Poweroff),
            (1, ShutdownReason::Reboot),
            (2, ShutdownReason::Suspend),
            (3, ShutdownReason::Crash),
            (4, ShutdownReason::Watchdog),
        ] {
            assert_eq!(ShutdownReason::from_code(c), Some(r));
            assert_eq!(r as u32, c);
        }
        assert_eq!(ShutdownReason::from_code(5), None);
    }

    #[test]
    fn memory_accounting() {
        let mut d = Lifecycle::new(100);
        d.alloc_pages(60).unwrap();
        d.alloc_pages(40).unwrap();
        assert_eq!(d.tot_pages(), 100);
        assert_eq!(
            d.alloc_pages(1),
            Err(DomainError::OverMaxPages {
                tot: 100,
                max: 100,
                want: 1
            })
        );
        assert_eq!(d.alloc_pages(u64::MAX).unwrap_err().errno(), Errno::ENOMEM);
        d.free_pages(30).unwrap();
        assert_eq!(
            d.free_pages(71),
            Err(DomainError::FreeUnderflow { tot: 70, free: 71 })
        );
        d.set_max_pages(50);
        assert!(d.alloc_pages(1).is_err(), "over the lowered limit");
        d.free_pages(20).unwrap();
        d.alloc_pages(0).unwrap();
        assert_eq!(d.tot_pages(), 50);
        d.start().unwrap();
        d.shutdown(ShutdownReason::Poweroff).unwrap();
        assert_eq!(d.alloc_pages(1), Err(DomainError::Dying));
        d.free_pages(50).unwrap();
        d.destroy().unwrap();
        assert_eq!(d.tot_pages(), 0);
    }
}
