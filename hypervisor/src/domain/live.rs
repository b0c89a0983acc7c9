//! The domains that exist right now, as management tools see them
//! (`keelctl list`): a registry each running domain adds itself to, with
//! counters its vCPUs update lock-free. The management hypercall reads it
//! without taking any domain's lock, so a domain can list itself.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use keel_mgmt::{dflags, DomainEntry, FixedStr};
use spin::Mutex;

/// One domain's public facts and counters.
pub struct LiveDomain {
    pub id: u16,
    pub name: String,
    pub vcpus: u32,
    pub mem_bytes: u64,
    pub privileged: bool,
    /// Bit `i`: vCPU `i` is halted or blocked (not runnable).
    halted: AtomicU32,
    shutdown: AtomicBool,
    /// TSC ticks its vCPUs spent in guest mode.
    guest_tsc: AtomicU64,
}

impl LiveDomain {
    pub fn new(id: u16, name: &str, vcpus: u32, mem_bytes: u64, privileged: bool) -> Self {
        LiveDomain {
            id,
            name: String::from(name),
            vcpus,
            mem_bytes,
            privileged,
            // vCPUs other than 0 wait for their start-up IPI.
            halted: AtomicU32::new(((1u64 << vcpus.min(32)) - 1) as u32 & !1),
            shutdown: AtomicBool::new(false),
            guest_tsc: AtomicU64::new(0),
        }
    }

    pub fn set_halted(&self, vcpu: usize, halted: bool) {
        let bit = 1u32 << (vcpu % 32);
        if halted {
            self.halted.fetch_or(bit, Ordering::Relaxed);
        } else {
            self.halted.fetch_and(!bit, Ordering::Relaxed);
        }
    }

    pub fn set_shutdown(&self) {
        self.shutdown.store(true, Ordering::Relaxed);
    }

    pub fn add_guest_tsc(&self, ticks: u64) {
        self.guest_tsc.fetch_add(ticks, Ordering::Relaxed);
    }

    /// xl's state flags: shut down, else blocked when no vCPU can run,
    /// else running.
    pub fn flags(&self) -> u32 {
        let all = ((1u64 << self.vcpus.min(32)) - 1) as u32;
        let mut f = if self.shutdown.load(Ordering::Relaxed) {
            dflags::SHUTDOWN
        } else if self.halted.load(Ordering::Relaxed) & all == all {
            dflags::BLOCKED
        } else {
            dflags::RUNNING
        };
        if self.privileged {
            f |= dflags::PRIVILEGED;
        }
        f
    }

    /// The record `keelctl list` gets; `tsc_khz` converts guest time.
    pub fn entry(&self, tsc_khz: u64) -> DomainEntry {
        let ticks = self.guest_tsc.load(Ordering::Relaxed);
        DomainEntry {
            domid: self.id as u32,
            flags: self.flags(),
            vcpus: self.vcpus,
            mem_bytes: self.mem_bytes,
            cpu_time_ns: if tsc_khz == 0 {
                0
            } else {
                (ticks as u128 * 1_000_000 / tsc_khz as u128) as u64
            },
            name: FixedStr::new(&self.name),
        }
    }
}

static LIVE: Mutex<Vec<Arc<LiveDomain>>> = Mutex::new(Vec::new());

/// Adds a domain; it stays listed until [`unregister`].
pub fn register(d: Arc<LiveDomain>) {
    let mut l = LIVE.lock();
    l.retain(|x| x.id != d.id);
    l.push(d);
    l.sort_by_key(|x| x.id);
}

pub fn unregister(id: u16) {
    LIVE.lock().retain(|x| x.id != id);
}

/// The records of domains with id >= `first`, in id order.
pub fn entries(first: u32, tsc_khz: u64) -> Vec<DomainEntry> {
    LIVE.lock()
        .iter()
        .filter(|d| d.id as u32 >= first)
        .map(|d| d.entry(tsc_khz))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_time() {
        let d = LiveDomain::new(0, "Domain-0", 2, 256 << 20, true);
        // vCPU 1 waits for its SIPI; vCPU 0 runs.
        assert_eq!(d.flags(), dflags::RUNNING | dflags::PRIVILEGED);
        d.set_halted(0, true);
        assert_eq!(d.flags() & !dflags::PRIVILEGED, dflags::BLOCKED);
        d.set_halted(1, false);
        assert_eq!(d.flags() & !dflags::PRIVILEGED, dflags::RUNNING);
        d.set_shutdown();
        assert_eq!(d.flags() & !dflags::PRIVILEGED, dflags::SHUTDOWN);
        d.add_guest_tsc(3_000_000_000);
        let e = d.entry(2_000_000); // 2 GHz: 1.5 s
        assert_eq!(e.cpu_time_ns, 1_500_000_000);
        assert_eq!(e.name.as_str(), "Domain-0");
        assert_eq!(e.mem_bytes, 256 << 20);
        assert_eq!(d.entry(0).cpu_time_ns, 0);
    }

    #[test]
    fn registry_orders_and_filters() {
        // Ids unlikely to clash with other tests sharing the registry.
        register(Arc::new(LiveDomain::new(907, "b", 1, 4096, false)));
        register(Arc::new(LiveDomain::new(905, "a", 1, 4096, false)));
        let ids: Vec<u32> = entries(900, 0).iter().map(|e| e.domid).collect();
        assert_eq!(ids, [905, 907]);
        assert_eq!(entries(906, 0).len(), 1);
        unregister(905);
        unregister(907);
        assert!(entries(900, 0).is_empty());
    }
}
