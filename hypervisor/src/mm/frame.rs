//! Physical frame allocator: a sorted list of free, page-aligned ranges.
//!
//! Built from the firmware memory map minus everything that must never be
//! handed out (the hypervisor image, boot modules, the loader's structures,
//! ACPI and firmware ranges: only `Usable` memory is ever added). It needs no
//! heap, so it works before the heap exists, and it is plain code tested on
//! the host.

use super::{align_down, align_up, PAGE_SIZE};

pub const MAX_RANGES: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

#[derive(Debug)]
pub struct FrameAllocator {
    ranges: [Range; MAX_RANGES],
    n: usize,
    /// Frames that could not be tracked because the range list was full.
    pub lost_bytes: u64,
}

impl Default for FrameAllocator {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameAllocator {
    pub const fn new() -> Self {
        FrameAllocator {
            ranges: [Range { start: 0, end: 0 }; MAX_RANGES],
            n: 0,
            lost_bytes: 0,
        }
    }

    pub fn ranges(&self) -> &[Range] {
        &self.ranges[..self.n]
    }

    pub fn free_bytes(&self) -> u64 {
        self.ranges().iter().map(|r| r.end - r.start).sum()
    }

    /// Adds free memory (shrunk inward to page boundaries), merging with
    /// neighbours. Overlap with already-free memory is tolerated.
    pub fn add_free(&mut self, start: u64, end: u64) {
        let (start, end) = (align_up(start, PAGE_SIZE), align_down(end, PAGE_SIZE));
        if end <= start {
            return;
        }
        // Remove any overlap first so ranges stay disjoint.
        self.reserve(start, end);
        let i = self
            .ranges()
            .iter()
            .position(|r| r.start > start)
            .unwrap_or(self.n);
        let merge_prev = i > 0 && self.ranges[i - 1].end == start;
        let merge_next = i < self.n && self.ranges[i].start == end;
        match (merge_prev, merge_next) {
            (true, true) => {
                self.ranges[i - 1].end = self.ranges[i].end;
                self.remove(i);
            }
            (true, false) => self.ranges[i - 1].end = end,
            (false, true) => self.ranges[i].start = start,
            (false, false) => {
                if !self.insert(i, Range { start, end }) {
                    self.lost_bytes += end - start;
                }
            }
        }
    }

    /// Removes `[start, end)` (widened to page boundaries) from the free set.
    pub fn reserve(&mut self, start: u64, end: u64) {
        let (start, end) = (align_down(start, PAGE_SIZE), align_up(end, PAGE_SIZE));
        let mut i = 0;
        while i < self.n {
            let r = self.ranges[i];
            if r.end <= start || r.start >= end {
                i += 1;
                continue;
            }
            match (r.start < start, r.end > end) {
                (false, false) => {
                    self.remove(i);
                    continue;
                }
                (true, false) => self.ranges[i].end = start,
                (false, true) => self.ranges[i].start = end,
                (true, true) => {
                    self.ranges[i].end = start;
                    if !self.insert(
                        i + 1,
                        Range {
                            start: end,
                            end: r.end,
                        },
                    ) {
                        self.lost_bytes += r.end - end;
                    }
                    i += 1;
                }
            }
            i += 1;
        }
    }

    /// Allocates `pages` contiguous frames aligned to `align` bytes, lowest
    /// first, lying entirely within `[min, max)`.
    pub fn alloc_in(&mut self, pages: u64, align: u64, min: u64, max: u64) -> Option<u64> {
        let len = pages.checked_mul(PAGE_SIZE)?;
        let align = align.max(PAGE_SIZE);
        for r in self.ranges() {
            let start = align_up(r.start.max(min), align);
            let end = start.checked_add(len)?;
            if end <= r.end && end <= max {
                self.reserve(start, end);
                return Some(start);
            }
        }
        None
    }

    /// Allocates contiguous frames above 1 MiB, **from the top down**:
    /// keel's own memory comes from the highest free addresses, so low and
    /// middle memory stays in one piece for dom0, whose RAM is mapped 1:1
    /// and whose kernel must sit at its link address (16 MiB).
    pub fn alloc(&mut self, pages: u64) -> Option<u64> {
        self.alloc_top(pages, PAGE_SIZE, 0x10_0000)
    }

    /// The highest `align`ed run of `pages` free frames at or above `min`.
    pub fn alloc_top(&mut self, pages: u64, align: u64, min: u64) -> Option<u64> {
        let len = pages.checked_mul(PAGE_SIZE)?;
        let align = align.max(PAGE_SIZE);
        for r in self.ranges().iter().rev() {
            let Some(top) = r.end.checked_sub(len) else {
                continue;
            };
            let start = align_down(top, align);
            if start >= r.start && start >= min {
                self.reserve(start, start + len);
                return Some(start);
            }
        }
        None
    }

    /// Takes exactly `[start, end)` if all of it is free.
    pub fn take(&mut self, start: u64, end: u64) -> bool {
        let free = self
            .ranges()
            .iter()
            .any(|r| r.start <= start && end <= r.end);
        if free && start < end {
            self.reserve(start, end);
        }
        free && start < end
    }

    pub fn free(&mut self, start: u64, pages: u64) {
        self.add_free(start, start + pages * PAGE_SIZE);
    }

    fn insert(&mut self, i: usize, r: Range) -> bool {
        if self.n == MAX_RANGES {
            return false;
        }
        self.ranges.copy_within(i..self.n, i + 1);
        self.ranges[i] = r;
        self.n += 1;
        true
    }

    fn remove(&mut self, i: usize) {
        self.ranges.copy_within(i + 1..self.n, i);
        self.n -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_invariants(a: &FrameAllocator) {
        for w in a.ranges().windows(2) {
            assert!(
                w[0].end < w[1].start,
                "ranges must be sorted, disjoint, unmerged: {w:?}"
            );
        }
        for r in a.ranges() {
            assert!(r.start < r.end && r.start % PAGE_SIZE == 0 && r.end % PAGE_SIZE == 0);
        }
    }

    #[test]
    fn never_hands_out_reserved_memory() {
        let mut a = FrameAllocator::new();
        a.add_free(0, 0xa0000);
        a.add_free(0x10_0000, 0x800_0000);
        // kernel image and a boot module
        a.reserve(0x20_0000, 0x28_1234);
        a.reserve(0x400_0000, 0x400_0001);
        check_invariants(&a);
        let mut got = Vec::new();
        while let Some(f) = a.alloc(1) {
            got.push(f);
        }
        assert!(got.iter().all(|&f| !(0x20_0000..0x28_2000).contains(&f)));
        assert!(!got.contains(&0x400_0000));
        assert!(
            got.iter().all(|&f| f >= 0x10_0000),
            "low memory kept for trampolines"
        );
        assert_eq!(
            got.len() as u64,
            (0x800_0000 - 0x10_0000 - 0x8_2000 - 0x1000) / PAGE_SIZE
        );
        // low memory is still there for a trampoline
        assert_eq!(a.alloc_in(1, PAGE_SIZE, 0x1000, 0x10_0000), Some(0x1000));
    }

    #[test]
    fn unaligned_ranges_shrink_inward() {
        let mut a = FrameAllocator::new();
        a.add_free(0x1001, 0x3fff);
        assert_eq!(
            a.ranges(),
            &[Range {
                start: 0x2000,
                end: 0x3000
            }]
        );
        a.add_free(0x5000, 0x5800);
        assert_eq!(a.ranges().len(), 1);
    }

    #[test]
    fn contiguous_aligned_and_bounded() {
        let mut a = FrameAllocator::new();
        a.add_free(0x10_0000, 0x1000_0000);
        let big = a.alloc_in(512, 0x20_0000, 0, u64::MAX).unwrap();
        assert_eq!(big % 0x20_0000, 0);
        assert!(a.alloc_in(1, PAGE_SIZE, 0, 0x10_0000).is_none());
        assert!(a.alloc_in(u64::MAX / 2, PAGE_SIZE, 0, u64::MAX).is_none());
        check_invariants(&a);
    }

    #[test]
    fn alloc_is_top_down_and_take_is_exact() {
        let mut a = FrameAllocator::new();
        a.add_free(0x10_0000, 0x20_0000);
        a.add_free(0x100_0000, 0x120_0000);
        assert_eq!(a.alloc(1), Some(0x11f_f000));
        assert_eq!(a.alloc_top(0x100, 0x10_0000, 0), Some(0x100_0000));
        // 0xff pages left up there: the range below.
        assert_eq!(a.alloc(0x100), Some(0x10_0000));
        assert_eq!(a.alloc_top(1, PAGE_SIZE, 0x11f_f000), None);
        assert!(a.take(0x110_0000, 0x111_0000));
        assert!(!a.take(0x110_0000, 0x111_0000), "already taken");
        assert!(!a.take(0x11e_0000, 0x120_0000), "partly taken");
        assert!(!a.take(0x5000, 0x4000));
        check_invariants(&a);
    }

    #[test]
    fn free_merges_back() {
        let mut a = FrameAllocator::new();
        a.add_free(0x10_0000, 0x20_0000);
        let before = a.free_bytes();
        let x = a.alloc(3).unwrap();
        let y = a.alloc(5).unwrap();
        a.free(x, 3);
        a.free(y, 5);
        assert_eq!(a.free_bytes(), before);
        assert_eq!(a.ranges().len(), 1);
    }

    #[test]
    fn random_operations_keep_invariants() {
        let mut a = FrameAllocator::new();
        let mut x: u64 = 88172645463325252;
        let mut held: Vec<(u64, u64)> = Vec::new();
        a.add_free(0x10_0000, 0x4000_0000);
        for _ in 0..20000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 4 {
                0 | 1 => {
                    let pages = 1 + (x >> 8) % 64;
                    if let Some(f) = a.alloc(pages) {
                        for &(s, p) in &held {
                            assert!(
                                f + pages * PAGE_SIZE <= s || f >= s + p * PAGE_SIZE,
                                "double allocation"
                            );
                        }
                        held.push((f, pages));
                    }
                }
                2 if !held.is_empty() => {
                    let (s, p) = held.swap_remove((x >> 8) as usize % held.len());
                    a.free(s, p);
                }
                _ => a.reserve((x >> 16) % 0x4000_0000, (x >> 16) % 0x4000_0000 + 0x3000),
            }
            check_invariants(&a);
        }
    }
}
