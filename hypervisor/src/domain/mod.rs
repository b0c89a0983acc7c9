//! Domains: the bookkeeping for one guest, in the style of Xen's
//! `struct domain`: id, name, privilege, life-cycle state, memory
//! accounting and vCPUs.
//!
//! Life cycle (invalid transitions are errors, the state is unchanged):
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
//! Pure bookkeeping, host-tested; the hypervisor wires it to the scheduler
//! and the p2m.

pub mod acpi;
pub mod hostacpi;
pub mod live;

use alloc::string::String;
use alloc::vec::Vec;

pub type DomId = u16;

/// `DOMID_FIRST_RESERVED` (Xen `public/xen.h`): ids from here up are
/// special (`DOMID_SELF`, `DOMID_IO`, ...), never a real domain.
pub const DOMID_FIRST_RESERVED: DomId = 0x7ff0;
/// Xen's `EPERM`; hypercalls return `-EPERM`.
pub const EPERM: i32 = 1;
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
pub enum VcpuState {
    Offline,
    Runnable,
    Blocked,
    Running,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vcpu {
    pub id: u32,
    pub state: VcpuState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainError {
    InvalidTransition {
        from: DomainState,
        to: DomainState,
    },
    InvalidVcpuTransition {
        vcpu: u32,
        from: VcpuState,
        to: VcpuState,
    },
    NoSuchVcpu(u32),
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
    /// The Xen errno (negative) a hypercall would return.
    pub fn errno(&self) -> i32 {
        match self {
            DomainError::OverMaxPages { .. } => -12, // ENOMEM
            DomainError::NoSuchDomain(_) => -3,      // ESRCH
            DomainError::DomidInUse(_) => -17,       // EEXIST
            _ => -22,                                // EINVAL
        }
    }
}

#[derive(Clone, Debug)]
pub struct Domain {
    id: DomId,
    name: String,
    privileged: bool,
    state: DomainState,
    tot_pages: u64,
    max_pages: u64,
    vcpus: Vec<Vcpu>,
}

impl Domain {
    /// A new domain in `Created`, with `nr_vcpus` vCPUs (vCPU 0 runnable
    /// once the domain starts, the others offline until brought up) and a
    /// memory limit of `max_pages` 4 KiB pages. Domain 0 is privileged.
    pub fn new(id: DomId, name: &str, max_pages: u64, nr_vcpus: u32) -> Result<Self, DomainError> {
        if id >= DOMID_FIRST_RESERVED {
            return Err(DomainError::BadDomid(id as u32));
        }
        if name.len() > NAME_MAX {
            return Err(DomainError::NameTooLong);
        }
        if nr_vcpus == 0 {
            return Err(DomainError::NoVcpus);
        }
        Ok(Domain {
            id,
            name: String::from(name),
            privileged: id == 0,
            state: DomainState::Created,
            tot_pages: 0,
            max_pages,
            vcpus: (0..nr_vcpus)
                .map(|id| Vcpu {
                    id,
                    state: VcpuState::Offline,
                })
                .collect(),
        })
    }

    pub fn id(&self) -> DomId {
        self.id
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn is_privileged(&self) -> bool {
        self.privileged
    }
    pub fn state(&self) -> DomainState {
        self.state
    }

    /// `Ok` for the control domain, `Err(-EPERM)` for everyone else.
    pub fn check_privileged(&self, op: &str) -> Result<(), i32> {
        if self.privileged {
            Ok(())
        } else {
            log::debug!("d{}: {op} refused: not privileged", self.id);
            Err(-EPERM)
        }
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

    /// First unpause after the build: vCPU 0 comes online.
    pub fn start(&mut self) -> Result<(), DomainError> {
        if self.state != DomainState::Created {
            return Err(DomainError::InvalidTransition {
                from: self.state,
                to: DomainState::Running,
            });
        }
        self.transition(DomainState::Running)?;
        self.vcpus[0].state = VcpuState::Runnable;
        Ok(())
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

    /// `SCHEDOP_shutdown`: every vCPU stops (offline).
    pub fn shutdown(&mut self, reason: ShutdownReason) -> Result<(), DomainError> {
        self.transition(DomainState::ShuttingDown(reason))?;
        for v in &mut self.vcpus {
            v.state = VcpuState::Offline;
        }
        Ok(())
    }

    /// Resume after a suspend: vCPU 0 comes back.
    pub fn resume(&mut self) -> Result<(), DomainError> {
        if self.state != DomainState::ShuttingDown(ShutdownReason::Suspend) {
            return Err(DomainError::InvalidTransition {
                from: self.state,
                to: DomainState::Running,
            });
        }
        self.transition(DomainState::Running)?;
        self.vcpus[0].state = VcpuState::Runnable;
        Ok(())
    }

    /// Final teardown: the caller must have freed the domain's memory
    /// (`tot_pages` is reset here for accounting).
    pub fn destroy(&mut self) -> Result<(), DomainError> {
        self.transition(DomainState::Dead)?;
        for v in &mut self.vcpus {
            v.state = VcpuState::Offline;
        }
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

    // --- vCPUs ------------------------------------------------------------

    pub fn vcpus(&self) -> &[Vcpu] {
        &self.vcpus
    }

    pub fn vcpu(&self, id: u32) -> Result<&Vcpu, DomainError> {
        self.vcpus
            .get(id as usize)
            .ok_or(DomainError::NoSuchVcpu(id))
    }

    /// Changes vCPU `id`'s state. Allowed: Offline -> Runnable (bring up,
    /// only while the domain runs), Runnable <-> Running, Running/Runnable
    /// -> Blocked (HLT, `SCHEDOP_block`), Blocked -> Runnable (wake), and
    /// any -> Offline (`VCPUOP_down`).
    pub fn set_vcpu_state(&mut self, id: u32, to: VcpuState) -> Result<(), DomainError> {
        use VcpuState::*;
        let dom_running = self.state == DomainState::Running;
        let v = self
            .vcpus
            .get_mut(id as usize)
            .ok_or(DomainError::NoSuchVcpu(id))?;
        let ok = match (v.state, to) {
            (_, Offline) => true,
            (Offline, Runnable) => dom_running,
            (Runnable, Running) => dom_running,
            (Running, Runnable) | (Running | Runnable, Blocked) | (Blocked, Runnable) => true,
            _ => false,
        };
        if !ok {
            return Err(DomainError::InvalidVcpuTransition {
                vcpu: id,
                from: v.state,
                to,
            });
        }
        v.state = to;
        Ok(())
    }

    /// vCPUs the scheduler may run now: none unless the domain is running.
    pub fn runnable_vcpus(&self) -> impl Iterator<Item = u32> + '_ {
        let on = self.state == DomainState::Running;
        self.vcpus
            .iter()
            .filter(move |v| on && matches!(v.state, VcpuState::Runnable | VcpuState::Running))
            .map(|v| v.id)
    }
}

/// All domains, by id.
#[derive(Clone, Debug, Default)]
pub struct Domains {
    doms: alloc::collections::BTreeMap<DomId, Domain>,
}

impl Domains {
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates domain `id`, or the lowest free non-zero id when `None`
    /// (domain 0 is only ever created explicitly).
    pub fn create(
        &mut self,
        id: Option<DomId>,
        name: &str,
        max_pages: u64,
        nr_vcpus: u32,
    ) -> Result<DomId, DomainError> {
        let id = match id {
            Some(id) if self.doms.contains_key(&id) => return Err(DomainError::DomidInUse(id)),
            Some(id) => id,
            None => (1..DOMID_FIRST_RESERVED)
                .find(|i| !self.doms.contains_key(i))
                .ok_or(DomainError::BadDomid(DOMID_FIRST_RESERVED as u32))?,
        };
        let d = Domain::new(id, name, max_pages, nr_vcpus)?;
        self.doms.insert(id, d);
        Ok(id)
    }

    pub fn get(&self, id: DomId) -> Result<&Domain, DomainError> {
        self.doms.get(&id).ok_or(DomainError::NoSuchDomain(id))
    }

    pub fn get_mut(&mut self, id: DomId) -> Result<&mut Domain, DomainError> {
        self.doms.get_mut(&id).ok_or(DomainError::NoSuchDomain(id))
    }

    /// Removes a dead domain's record (its id becomes free).
    pub fn reap(&mut self, id: DomId) -> Result<Domain, DomainError> {
        let d = self.get(id)?;
        if d.state != DomainState::Dead {
            return Err(DomainError::InvalidTransition {
                from: d.state,
                to: DomainState::Dead,
            });
        }
        Ok(self.doms.remove(&id).unwrap())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Domain> {
        self.doms.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DomainState::*;

    #[test]
    fn life_cycle() {
        let mut d = Domain::new(3, "guest", 256, 2).unwrap();
        assert_eq!(d.state(), Created);
        assert!(!d.is_privileged());
        assert_eq!(d.runnable_vcpus().count(), 0);
        d.start().unwrap();
        assert_eq!(d.state(), Running);
        assert_eq!(d.runnable_vcpus().collect::<Vec<_>>(), [0]);
        d.pause().unwrap();
        assert_eq!(d.state(), Paused);
        assert_eq!(d.runnable_vcpus().count(), 0, "paused: nothing to run");
        d.unpause().unwrap();
        d.pause().unwrap();
        d.shutdown(ShutdownReason::Reboot).unwrap();
        assert_eq!(d.state(), ShuttingDown(ShutdownReason::Reboot));
        assert!(d.vcpus().iter().all(|v| v.state == VcpuState::Offline));
        d.destroy().unwrap();
        assert_eq!(d.state(), Dead);
    }

    #[test]
    fn invalid_transitions_are_errors() {
        let mut d = Domain::new(1, "g", 16, 1).unwrap();
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
        let mut d = Domain::new(2, "h", 16, 1).unwrap();
        d.destroy().unwrap();
    }

    #[test]
    fn suspend_and_resume() {
        let mut d = Domain::new(1, "g", 16, 2).unwrap();
        d.start().unwrap();
        d.set_vcpu_state(1, VcpuState::Runnable).unwrap();
        d.shutdown(ShutdownReason::Suspend).unwrap();
        d.resume().unwrap();
        assert_eq!(d.state(), Running);
        assert_eq!(d.vcpu(0).unwrap().state, VcpuState::Runnable);
        assert_eq!(d.vcpu(1).unwrap().state, VcpuState::Offline);
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
        let mut d = Domain::new(1, "g", 100, 1).unwrap();
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
        assert_eq!(d.alloc_pages(u64::MAX).unwrap_err().errno(), -12);
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

    #[test]
    fn vcpu_states() {
        use VcpuState::*;
        let mut d = Domain::new(1, "g", 16, 3).unwrap();
        assert_eq!(d.vcpus().len(), 3);
        assert!(
            d.set_vcpu_state(1, Runnable).is_err(),
            "domain not running yet"
        );
        d.start().unwrap();
        d.set_vcpu_state(1, Runnable).unwrap();
        d.set_vcpu_state(1, Running).unwrap();
        d.set_vcpu_state(1, Blocked).unwrap();
        assert_eq!(
            d.set_vcpu_state(1, Running),
            Err(DomainError::InvalidVcpuTransition {
                vcpu: 1,
                from: Blocked,
                to: Running
            })
        );
        d.set_vcpu_state(1, Runnable).unwrap();
        d.set_vcpu_state(1, Offline).unwrap();
        assert!(
            d.set_vcpu_state(2, Blocked).is_err(),
            "offline cannot block"
        );
        assert_eq!(
            d.set_vcpu_state(3, Runnable),
            Err(DomainError::NoSuchVcpu(3))
        );
        d.pause().unwrap();
        assert!(d.set_vcpu_state(0, Running).is_err(), "paused: cannot run");
        assert_eq!(d.runnable_vcpus().count(), 0);
    }

    #[test]
    fn privilege() {
        let d0 = Domain::new(0, "Domain-0", 1 << 20, 2).unwrap();
        let du = Domain::new(5, "guest", 1, 1).unwrap();
        assert!(d0.is_privileged());
        assert_eq!(d0.check_privileged("domctl"), Ok(()));
        assert_eq!(du.check_privileged("domctl"), Err(-EPERM));
        assert_eq!(du.check_privileged("domctl"), Err(-1));
    }

    #[test]
    fn bad_domains_and_registry() {
        assert_eq!(
            Domain::new(0x7ff0, "x", 1, 1).unwrap_err(),
            DomainError::BadDomid(0x7ff0)
        );
        assert_eq!(Domain::new(1, "x", 1, 0).unwrap_err(), DomainError::NoVcpus);
        let long = "x".repeat(NAME_MAX + 1);
        assert_eq!(
            Domain::new(1, &long, 1, 1).unwrap_err(),
            DomainError::NameTooLong
        );

        let mut ds = Domains::new();
        assert_eq!(ds.create(Some(0), "Domain-0", 100, 1), Ok(0));
        assert_eq!(ds.create(None, "a", 10, 1), Ok(1));
        assert_eq!(ds.create(None, "b", 10, 1), Ok(2));
        assert_eq!(
            ds.create(Some(1), "c", 10, 1),
            Err(DomainError::DomidInUse(1))
        );
        assert!(ds.reap(1).is_err(), "not dead yet");
        ds.get_mut(1).unwrap().destroy().unwrap();
        ds.reap(1).unwrap();
        assert_eq!(ds.get(1).unwrap_err(), DomainError::NoSuchDomain(1));
        assert_eq!(ds.create(None, "d", 10, 1), Ok(1), "lowest free id reused");
        assert_eq!(ds.iter().count(), 3);
        assert!(ds.get(0).unwrap().is_privileged());
        assert!(!ds.get(2).unwrap().is_privileged());
    }
}
