//! What the toolstack sets on a domain that keel records but does not
//! (yet) act on everywhere, and the ledger of the memory the toolstack
//! populated, which `XENMEM_decrease_reservation` may give back.
//!
//! Kept apart from [`Domain`](super::Domain)'s core so that the
//! toolstack's settings grow here, not in the domain's own code.

use super::Memory;
use alloc::collections::BTreeMap;
use core::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use spin::Mutex;

/// The featureset of a CPU policy the toolstack set (`domctl
/// set_cpu_policy`), already narrowed to what keel can show: it masks the
/// feature bits of the domain's CPUID
/// ([`crate::xen::cpu_policy::apply_features`]).
pub type Features = crate::xen::cpu_policy::Features;

/// The toolstack's settings on one domain.
#[derive(Default)]
pub struct ToolState {
    /// `domctl settimeoffset`: seconds added to the domain's wallclock.
    /// Recorded only: keel's wallclock (shared_info) does not add it yet.
    pub time_offset: AtomicI64,
    /// `domctl set_paging_mempool_size` (bytes): recorded and reported
    /// back; keel's p2m allocates its own tables and has no pool.
    pub paging_mempool: AtomicU64,
    /// `XENMEM_claim_pages`: pages claimed and not yet cancelled (keel
    /// checks the claim against free memory but reserves nothing).
    pub claimed: AtomicU64,
    /// `domctl set_cpu_policy`: the policy, if the toolstack set one.
    pub cpu_policy: Mutex<Option<Features>>,
    /// Host frames the toolstack populated (`populate_physmap`), by first
    /// frame address: (pages). Only these may leave the domain through
    /// `decrease_reservation`: they are charged to it and owned one
    /// extent at a time.
    populated: Mutex<BTreeMap<u64, u64>>,
}

impl ToolState {
    /// The featureset the toolstack narrowed the domain's CPUID to, if any.
    pub fn features(&self) -> Option<Features> {
        *self.cpu_policy.lock()
    }

    pub fn time_offset(&self) -> i64 {
        self.time_offset.load(Ordering::Relaxed)
    }

    /// Records `pages` populated frames from `hpa`.
    pub fn add_populated(&self, hpa: u64, pages: u64) {
        self.populated.lock().insert(hpa, pages);
    }

    /// Whether the 4 KiB frame at `hpa` is one the toolstack populated.
    pub fn is_populated(&self, hpa: u64) -> bool {
        let p = self.populated.lock();
        p.range(..=hpa)
            .next_back()
            .is_some_and(|(&s, &n)| hpa < s + n * 4096)
    }

    /// Takes the 4 KiB frame at `hpa` out of the ledger (splitting the
    /// extent around it); false if it is not in it.
    pub fn take_populated(&self, hpa: u64) -> bool {
        let mut p = self.populated.lock();
        let Some((&s, &n)) = p.range(..=hpa).next_back() else {
            return false;
        };
        if hpa >= s + n * 4096 {
            return false;
        }
        p.remove(&s);
        let before = (hpa - s) / 4096;
        if before > 0 {
            p.insert(s, before);
        }
        let after = n - before - 1;
        if after > 0 {
            p.insert(hpa + 4096, after);
        }
        true
    }
}

impl Memory {
    /// Stops owning the 4 KiB frame at `hpa` (splitting the owned run
    /// around it): the caller frees it. False if the domain does not own it.
    pub fn disown(&self, hpa: u64) -> bool {
        let mut f = self.frames.lock();
        let Some(i) = f
            .iter()
            .position(|&(s, n)| (s..s + n * 4096).contains(&hpa))
        else {
            return false;
        };
        let (s, n) = f.swap_remove(i);
        let before = (hpa - s) / 4096;
        if before > 0 {
            f.push((s, before));
        }
        let after = n - before - 1;
        if after > 0 {
            f.push((hpa + 4096, after));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_populated_ledger_splits_extents() {
        let t = ToolState::default();
        t.add_populated(0x20_0000, 512);
        t.add_populated(0x1000, 1);
        assert!(t.is_populated(0x1000) && t.is_populated(0x20_0000));
        assert!(t.is_populated(0x3f_f000) && !t.is_populated(0x40_0000));
        assert!(!t.is_populated(0x2000));
        assert!(t.take_populated(0x20_1000));
        assert!(!t.is_populated(0x20_1000) && !t.take_populated(0x20_1000));
        assert!(t.is_populated(0x20_0000) && t.is_populated(0x20_2000));
        assert!(t.take_populated(0x1000) && !t.is_populated(0x1000));
        assert!(!t.take_populated(0x50_0000));
    }
}
