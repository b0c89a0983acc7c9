//! ASID allocation per physical CPU, after Linux/Xen: ASIDs are handed out
//! in order within a *generation*; when they run out, a new generation
//! starts, every vCPU's ASID is stale, and the first VMRUN with a recycled
//! ASID flushes the whole TLB (TLB_CONTROL = flush all). This copes with
//! very few ASIDs (QEMU TCG offers 16).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asid {
    pub asid: u32,
    pub generation: u64,
}

#[derive(Debug)]
pub struct AsidPool {
    /// ASIDs 1..max are usable (0 is the host's).
    max: u32,
    next: u32,
    generation: u64,
    /// A new generation started without a flush yet.
    pending_flush: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    None,
    /// The ASID was recycled: flush every ASID's entries on this CPU.
    All,
}

impl AsidPool {
    pub const fn new(max: u32) -> Self {
        AsidPool {
            max,
            next: 1,
            generation: 1,
            pending_flush: false,
        }
    }

    /// Makes `cur` valid for this CPU's current generation: keeps it if it
    /// still is, else hands out a fresh one (recycling with a flush when the
    /// pool is exhausted).
    pub fn refresh(&mut self, cur: Option<Asid>) -> (Asid, Flush) {
        if let Some(a) = cur {
            if a.generation == self.generation {
                return (a, Flush::None);
            }
        }
        if self.next >= self.max {
            self.generation += 1;
            self.next = 1;
            self.pending_flush = true;
        }
        let flush = if core::mem::take(&mut self.pending_flush) {
            Flush::All
        } else {
            Flush::None
        };
        let a = Asid {
            asid: self.next,
            generation: self.generation,
        };
        self.next += 1;
        (a, flush)
    }

    /// Forces new ASIDs for everyone (e.g. after a p2m change when the CPU
    /// cannot flush by ASID).
    pub fn new_generation(&mut self) {
        self.generation += 1;
        self.next = 1;
        self.pending_flush = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_distinct_asids_then_recycles_with_flush() {
        let mut p = AsidPool::new(16); // QEMU TCG: ASIDs 1..15
        let mut got = Vec::new();
        for _ in 0..15 {
            let (a, f) = p.refresh(None);
            assert_eq!(f, Flush::None);
            got.push(a);
        }
        let ids: std::collections::HashSet<u32> = got.iter().map(|a| a.asid).collect();
        assert_eq!(ids.len(), 15);
        assert!(!ids.contains(&0), "ASID 0 belongs to the host");
        // still valid: no change, no flush
        assert_eq!(p.refresh(Some(got[3])), (got[3], Flush::None));
        // the 16th needs recycling
        let (a, f) = p.refresh(None);
        assert_eq!((a.asid, f), (1, Flush::All));
        // old-generation ASIDs are stale now
        let (b, f) = p.refresh(Some(got[0]));
        assert_ne!(b.generation, got[0].generation);
        assert_eq!((b.asid, f), (2, Flush::None));
    }

    #[test]
    fn tiny_pools_work() {
        let mut p = AsidPool::new(2); // a single usable ASID
        let (a, _) = p.refresh(None);
        let (b, f) = p.refresh(None);
        assert_eq!((a.asid, b.asid, f), (1, 1, Flush::All));
        p.new_generation();
        assert_eq!(p.refresh(Some(b)).1, Flush::All);
    }
}
