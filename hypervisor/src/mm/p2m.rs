//! The p2m: guest-physical to host-physical translation, in the format the
//! CPU walks for the guest: Intel EPT or AMD NPT (which is an ordinary
//! x86-64 page table walked with user-level permissions).
//!
//! One abstraction over both: map, unmap, change permissions and translate,
//! with 4 KiB, 2 MiB and 1 GiB pages. The p2m only edits tables; whoever
//! changes or removes a *present* entry must then flush every CPU that may
//! cache it (`Vcpu::flush_p2m`: INVEPT on VT-x, a new ASID or a TLB flush
//! on AMD-V). Both emulators used in CI flush on every VM entry, so a
//! missing flush cannot fail a test there: callers are careful by
//! construction, and each flush site says so.

use super::paging::{PageSize, TableMemory, ADDR_MASK};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Intel EPT (SDM vol. 3, 29.3), write-back memory type on leaves.
    Ept,
    /// AMD NPT (APM vol. 2, 15.25): long-mode page tables; `nx` says whether
    /// the host runs with EFER.NXE (the NX bit is reserved otherwise).
    Npt { nx: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Perm {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

impl Perm {
    pub const RWX: Perm = Perm {
        read: true,
        write: true,
        exec: true,
    };
    pub const RW: Perm = Perm {
        read: true,
        write: true,
        exec: false,
    };
    pub const RX: Perm = Perm {
        read: true,
        write: false,
        exec: true,
    };
    pub const R: Perm = Perm {
        read: true,
        write: false,
        exec: false,
    };
    pub const NONE: Perm = Perm {
        read: false,
        write: false,
        exec: false,
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum P2mError {
    Misaligned,
    AlreadyMapped,
    NotMapped,
    OutOfMemory,
    /// A permission the format cannot express (EPT: write without read;
    /// NPT: write or exec without read, exec-only).
    Unrepresentable,
    /// Beyond the 48-bit guest-physical space.
    OutOfRange,
}

// EPT bits.
const EPT_R: u64 = 1 << 0;
const EPT_W: u64 = 1 << 1;
const EPT_X: u64 = 1 << 2;
const EPT_MT_WB: u64 = 6 << 3;
const EPT_LARGE: u64 = 1 << 7;
// NPT (x86 page-table) bits.
const PT_P: u64 = 1 << 0;
const PT_RW: u64 = 1 << 1;
const PT_US: u64 = 1 << 2;
const PT_PS: u64 = 1 << 7;
const PT_NX: u64 = 1 << 63;

/// EPTP for a 4-level, write-back EPT rooted at `root`.
pub fn eptp(root: u64) -> u64 {
    (root & ADDR_MASK) | (3 << 3) | 6
}

impl Format {
    pub fn leaf(self, hpa: u64, p: Perm, size: PageSize) -> Result<u64, P2mError> {
        let large = size != PageSize::Size4K;
        match self {
            Format::Ept => {
                if p.write && !p.read {
                    return Err(P2mError::Unrepresentable);
                }
                if p == Perm::NONE {
                    return Ok(0);
                }
                let mut e = hpa & ADDR_MASK | EPT_MT_WB;
                e |= if p.read { EPT_R } else { 0 }
                    | if p.write { EPT_W } else { 0 }
                    | if p.exec { EPT_X } else { 0 };
                Ok(e | if large { EPT_LARGE } else { 0 })
            }
            Format::Npt { nx } => {
                if p == Perm::NONE {
                    return Ok(0);
                }
                if !p.read || (!p.exec && !nx) {
                    return Err(P2mError::Unrepresentable);
                }
                let mut e = hpa & ADDR_MASK | PT_P | PT_US;
                e |= if p.write { PT_RW } else { 0 } | if !p.exec { PT_NX } else { 0 };
                Ok(e | if large { PT_PS } else { 0 })
            }
        }
    }

    pub fn table(self, hpa: u64) -> u64 {
        match self {
            Format::Ept => hpa & ADDR_MASK | EPT_R | EPT_W | EPT_X,
            Format::Npt { .. } => hpa & ADDR_MASK | PT_P | PT_RW | PT_US,
        }
    }

    pub fn present(self, e: u64) -> bool {
        match self {
            Format::Ept => e & (EPT_R | EPT_W | EPT_X) != 0,
            Format::Npt { .. } => e & PT_P != 0,
        }
    }

    pub fn is_large(self, e: u64) -> bool {
        e & match self {
            Format::Ept => EPT_LARGE,
            Format::Npt { .. } => PT_PS,
        } != 0
    }

    pub fn perm(self, e: u64) -> Perm {
        match self {
            Format::Ept => Perm {
                read: e & EPT_R != 0,
                write: e & EPT_W != 0,
                exec: e & EPT_X != 0,
            },
            Format::Npt { .. } => {
                let p = e & PT_P != 0;
                Perm {
                    read: p,
                    write: p && e & PT_RW != 0,
                    exec: p && e & PT_NX == 0,
                }
            }
        }
    }
}

fn index(gpa: u64, level: usize) -> usize {
    ((gpa >> (12 + 9 * (level - 1))) & 0x1ff) as usize
}

fn level_of(size: PageSize) -> usize {
    match size {
        PageSize::Size4K => 1,
        PageSize::Size2M => 2,
        PageSize::Size1G => 3,
    }
}

/// A guest's p2m: a root table and its format. Table memory is passed in
/// per call, so the p2m itself holds no allocator.
#[derive(Clone, Copy, Debug)]
pub struct P2m {
    pub format: Format,
    pub root: u64,
}

impl P2m {
    pub fn new<M: TableMemory>(format: Format, mem: &mut M) -> Result<Self, P2mError> {
        Ok(P2m {
            format,
            root: mem.alloc_table().ok_or(P2mError::OutOfMemory)?,
        })
    }

    /// The leaf slot for `gpa` at `size`'s level, creating tables on the
    /// way (`create`) and splitting a larger page that covers it (`split`).
    fn slot<M: TableMemory>(
        &self,
        mem: &mut M,
        gpa: u64,
        size: PageSize,
        create: bool,
        split: bool,
    ) -> Result<(u64, usize), P2mError> {
        if gpa >= 1 << 48 {
            return Err(P2mError::OutOfRange);
        }
        let mut table = self.root;
        for level in (level_of(size) + 1..=4).rev() {
            let i = index(gpa, level);
            let e = mem.table(table)[i];
            table = if !self.format.present(e) {
                if !create {
                    return Err(P2mError::NotMapped);
                }
                let t = mem.alloc_table().ok_or(P2mError::OutOfMemory)?;
                mem.table(table)[i] = self.format.table(t);
                t
            } else if self.format.is_large(e) && split {
                let t = self.split(mem, e, level)?;
                mem.table(table)[i] = self.format.table(t);
                t
            } else if self.format.is_large(e) {
                return Err(if create {
                    P2mError::AlreadyMapped
                } else {
                    P2mError::NotMapped
                });
            } else {
                e & ADDR_MASK
            };
        }
        Ok((table, index(gpa, level_of(size))))
    }

    /// A new table holding the 512 pages of the next smaller size that
    /// together translate exactly as the large entry `e` at `level` does.
    /// The caller installs it in place of `e`: a CPU walking meanwhile sees
    /// either, and both give the same translations.
    fn split<M: TableMemory>(&self, mem: &mut M, e: u64, level: usize) -> Result<u64, P2mError> {
        let (big, small) = match level {
            3 => (PageSize::Size1G, PageSize::Size2M),
            2 => (PageSize::Size2M, PageSize::Size4K),
            _ => unreachable!("only 1 GiB and 2 MiB entries are large"),
        };
        let base = e & ADDR_MASK & !(big.bytes() - 1);
        let perm = self.format.perm(e);
        let t = mem.alloc_table().ok_or(P2mError::OutOfMemory)?;
        for i in 0..512u64 {
            mem.table(t)[i as usize] = self.format.leaf(base + i * small.bytes(), perm, small)?;
        }
        Ok(t)
    }

    pub fn map<M: TableMemory>(
        &self,
        mem: &mut M,
        gpa: u64,
        hpa: u64,
        size: PageSize,
        p: Perm,
    ) -> Result<(), P2mError> {
        if !gpa.is_multiple_of(size.bytes()) || !hpa.is_multiple_of(size.bytes()) {
            return Err(P2mError::Misaligned);
        }
        let leaf = self.format.leaf(hpa, p, size)?;
        let (t, i) = self.slot(mem, gpa, size, true, false)?;
        if self.format.present(mem.table(t)[i]) {
            return Err(P2mError::AlreadyMapped);
        }
        mem.table(t)[i] = leaf;
        Ok(())
    }

    /// Maps a range with the largest pages that fit, up to `max`.
    pub fn map_range<M: TableMemory>(
        &self,
        mem: &mut M,
        gpa: u64,
        hpa: u64,
        len: u64,
        p: Perm,
        max: PageSize,
    ) -> Result<(), P2mError> {
        if !gpa.is_multiple_of(4096) || !hpa.is_multiple_of(4096) || !len.is_multiple_of(4096) {
            return Err(P2mError::Misaligned);
        }
        let mut off = 0;
        while off < len {
            let (g, h, left) = (gpa + off, hpa + off, len - off);
            let size = [PageSize::Size1G, PageSize::Size2M, PageSize::Size4K]
                .into_iter()
                .find(|s| {
                    s.bytes() <= max.bytes()
                        && g % s.bytes() == 0
                        && h % s.bytes() == 0
                        && left >= s.bytes()
                })
                .unwrap();
            self.map(mem, g, h, size, p)?;
            off += size.bytes();
        }
        Ok(())
    }

    /// Removes the mapping of size `size` at `gpa`, splitting a larger page
    /// around it (the rest of which stays mapped as it was). Caller flushes.
    pub fn unmap<M: TableMemory>(
        &self,
        mem: &mut M,
        gpa: u64,
        size: PageSize,
    ) -> Result<u64, P2mError> {
        if !gpa.is_multiple_of(size.bytes()) {
            return Err(P2mError::Misaligned);
        }
        if self.translate(mem, gpa).is_none() {
            return Err(P2mError::NotMapped);
        }
        let (t, i) = self.slot(mem, gpa, size, false, true)?;
        let e = mem.table(t)[i];
        if !self.format.present(e) || (size != PageSize::Size4K) != self.format.is_large(e) {
            return Err(P2mError::NotMapped);
        }
        mem.table(t)[i] = 0;
        Ok(e & ADDR_MASK)
    }

    /// Changes the permissions of the page of size `size` at `gpa`,
    /// splitting a larger page around it. Caller flushes.
    pub fn protect<M: TableMemory>(
        &self,
        mem: &mut M,
        gpa: u64,
        size: PageSize,
        p: Perm,
    ) -> Result<(), P2mError> {
        if !gpa.is_multiple_of(size.bytes()) {
            return Err(P2mError::Misaligned);
        }
        if self.translate(mem, gpa).is_none() {
            return Err(P2mError::NotMapped);
        }
        let (t, i) = self.slot(mem, gpa, size, false, true)?;
        let e = mem.table(t)[i];
        if !self.format.present(e) || (size != PageSize::Size4K) != self.format.is_large(e) {
            return Err(P2mError::NotMapped);
        }
        let hpa = e & ADDR_MASK & !(size.bytes() - 1);
        mem.table(t)[i] = self.format.leaf(hpa, p, size)?;
        Ok(())
    }

    /// Hands every table frame (not the mapped memory) to `free`, root last.
    /// The p2m must no longer be in use by any CPU.
    pub fn free_tables<M: TableMemory>(&self, mem: &mut M, free: &mut impl FnMut(u64)) {
        self.free_level(mem, self.root, 4, free);
    }

    fn free_level<M: TableMemory>(
        &self,
        mem: &mut M,
        table: u64,
        level: usize,
        free: &mut impl FnMut(u64),
    ) {
        if level > 1 {
            for i in 0..512 {
                let e = mem.table(table)[i];
                if self.format.present(e) && !self.format.is_large(e) {
                    self.free_level(mem, e & ADDR_MASK, level - 1, free);
                }
            }
        }
        free(table);
    }

    /// Host-physical address, permissions and page size behind `gpa`.
    pub fn translate<M: TableMemory>(
        &self,
        mem: &mut M,
        gpa: u64,
    ) -> Option<(u64, Perm, PageSize)> {
        let mut table = self.root;
        for level in (1..=4).rev() {
            let e = mem.table(table)[index(gpa, level)];
            if !self.format.present(e) {
                return None;
            }
            let size = match level {
                3 if self.format.is_large(e) => Some(PageSize::Size1G),
                2 if self.format.is_large(e) => Some(PageSize::Size2M),
                1 => Some(PageSize::Size4K),
                _ => None,
            };
            if let Some(s) = size {
                let base = e & ADDR_MASK & !(s.bytes() - 1);
                return Some((base + (gpa & (s.bytes() - 1)), self.format.perm(e), s));
            }
            table = e & ADDR_MASK;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Mem {
        next: u64,
        t: HashMap<u64, Box<[u64; 512]>>,
    }
    impl TableMemory for Mem {
        fn alloc_table(&mut self) -> Option<u64> {
            self.next += 0x1000;
            self.t.insert(self.next, Box::new([0; 512]));
            Some(self.next)
        }
        fn table(&mut self, p: u64) -> &mut [u64; 512] {
            self.t.get_mut(&p).unwrap()
        }
    }

    #[test]
    fn ept_encoding() {
        let f = Format::Ept;
        assert_eq!(
            f.leaf(0x1234_5000, Perm::RWX, PageSize::Size4K),
            Ok(0x1234_5000 | 0x37)
        );
        assert_eq!(
            f.leaf(0x4000_0000, Perm::RW, PageSize::Size1G),
            Ok(0x4000_0000 | 0x33 | 0x80)
        );
        assert_eq!(
            f.leaf(0x20_0000, Perm::RX, PageSize::Size2M),
            Ok(0x20_0000 | 0x35 | 0x80)
        );
        assert_eq!(
            f.leaf(
                0,
                Perm {
                    read: false,
                    write: true,
                    exec: false
                },
                PageSize::Size4K
            ),
            Err(P2mError::Unrepresentable)
        );
        // execute-only is legal in EPT
        assert_eq!(
            f.leaf(
                0x1000,
                Perm {
                    read: false,
                    write: false,
                    exec: true
                },
                PageSize::Size4K
            ),
            Ok(0x1000 | 0x34)
        );
        assert_eq!(f.table(0x5000), 0x5007);
        assert_eq!(eptp(0x12_3000), 0x12_301e);
    }

    #[test]
    fn npt_encoding() {
        let f = Format::Npt { nx: true };
        assert_eq!(
            f.leaf(0x1234_5000, Perm::RWX, PageSize::Size4K),
            Ok(0x1234_5000 | 0x7)
        );
        assert_eq!(
            f.leaf(0x20_0000, Perm::R, PageSize::Size2M),
            Ok(0x20_0000 | 0x5 | 0x80 | (1 << 63))
        );
        assert_eq!(f.table(0x5000), 0x5007); // U bit is required on every level
        assert_eq!(
            Format::Npt { nx: false }.leaf(0x1000, Perm::RW, PageSize::Size4K),
            Err(P2mError::Unrepresentable)
        );
        assert_eq!(f.perm(0x1000 | 0x5 | (1 << 63)), Perm::R);
    }

    #[test]
    fn map_translate_protect_unmap_both_formats() {
        for format in [Format::Ept, Format::Npt { nx: true }] {
            let mut m = Mem::default();
            let p = P2m::new(format, &mut m).unwrap();
            p.map_range(
                &mut m,
                0,
                0x4000_0000,
                0x4020_0000 + 0x3000,
                Perm::RWX,
                PageSize::Size1G,
            )
            .unwrap();
            assert_eq!(
                p.translate(&mut m, 0x1234).unwrap(),
                (0x4000_1234, Perm::RWX, PageSize::Size1G)
            );
            assert_eq!(
                p.translate(&mut m, 0x4010_0000).unwrap().2,
                PageSize::Size2M
            );
            assert_eq!(
                p.translate(&mut m, 0x4020_2fff).unwrap(),
                (0x8020_2fff, Perm::RWX, PageSize::Size4K)
            );
            assert_eq!(p.translate(&mut m, 0x4020_3000), None);
            p.protect(&mut m, 0x4020_1000, PageSize::Size4K, Perm::R)
                .unwrap();
            assert_eq!(p.translate(&mut m, 0x4020_1000).unwrap().1, Perm::R);
            assert_eq!(
                p.unmap(&mut m, 0x4020_2000, PageSize::Size4K),
                Ok(0x8020_2000)
            );
            assert_eq!(p.translate(&mut m, 0x4020_2000), None);
            assert_eq!(
                p.unmap(&mut m, 0x4020_2000, PageSize::Size4K),
                Err(P2mError::NotMapped)
            );
            // mapping over a present page is refused, also inside a large one
            assert_eq!(
                p.map(&mut m, 0x1000, 0, PageSize::Size4K, Perm::RW),
                Err(P2mError::AlreadyMapped)
            );
            // a 2M unmap where 4K pages are mapped is refused, not half-done
            assert_eq!(
                p.unmap(&mut m, 0x4020_0000, PageSize::Size2M),
                Err(P2mError::NotMapped)
            );
            assert_eq!(
                p.map(&mut m, 0x1001, 0, PageSize::Size4K, Perm::RW),
                Err(P2mError::Misaligned)
            );
            assert_eq!(
                p.map(&mut m, 1 << 48, 0, PageSize::Size4K, Perm::RW),
                Err(P2mError::OutOfRange)
            );
            let mut freed = Vec::new();
            p.free_tables(&mut m, &mut |t| freed.push(t));
            assert_eq!(freed.len(), m.t.len(), "every table freed once");
            assert_eq!(*freed.last().unwrap(), p.root);
        }
    }

    /// Every 4 KiB page's translation in [0, len), sampled at one address per page.
    fn snapshot(p: &P2m, m: &mut Mem, len: u64) -> Vec<Option<(u64, Perm)>> {
        (0..len)
            .step_by(4096)
            .map(|g| p.translate(m, g + 0x123).map(|(h, perm, _)| (h, perm)))
            .collect()
    }

    #[test]
    fn unmap_and_protect_split_large_pages_and_keep_the_rest() {
        for format in [Format::Ept, Format::Npt { nx: true }] {
            let mut m = Mem::default();
            let p = P2m::new(format, &mut m).unwrap();
            let hpa = 0x1_0000_0000;
            p.map_range(&mut m, 0, hpa, 2 << 30, Perm::RWX, PageSize::Size1G)
                .unwrap();
            let tables = m.t.len();
            assert_eq!(tables, 2, "two 1 GiB leaves: the root and one PDPT");
            let mut want = snapshot(&p, &mut m, 2 << 30);
            // A 4 KiB hole in the first GiB: 1G -> 2M -> 4K.
            assert_eq!(
                p.unmap(&mut m, 0x20_3000, PageSize::Size4K),
                Ok(hpa + 0x20_3000)
            );
            want[0x203] = None;
            assert_eq!(m.t.len(), tables + 2, "one 2M table and one 4K table");
            assert_eq!(p.translate(&mut m, 0x20_2000).unwrap().2, PageSize::Size4K);
            assert_eq!(p.translate(&mut m, 0x40_0000).unwrap().2, PageSize::Size2M);
            assert_eq!(
                p.translate(&mut m, 0x4000_0000).unwrap().2,
                PageSize::Size1G
            );
            // Read-only 4 KiB inside the second GiB.
            p.protect(&mut m, 0x4123_4000, PageSize::Size4K, Perm::R)
                .unwrap();
            want[0x41234] = Some((hpa + 0x4123_4123, Perm::R));
            // A whole 2 MiB page out of the second GiB.
            assert_eq!(
                p.unmap(&mut m, 0x4060_0000, PageSize::Size2M),
                Ok(hpa + 0x4060_0000)
            );
            for w in &mut want[0x40600..0x40800] {
                *w = None;
            }
            assert_eq!(snapshot(&p, &mut m, 2 << 30), want);
            // The hole can be filled again; the untouched neighbours stay.
            p.map(&mut m, 0x20_3000, 0x5000, PageSize::Size4K, Perm::RW)
                .unwrap();
            assert_eq!(
                p.translate(&mut m, 0x20_3008),
                Some((0x5008, Perm::RW, PageSize::Size4K))
            );
            // Unmapped or misaligned requests change nothing.
            let before = m.t.len();
            assert_eq!(
                p.unmap(&mut m, 0x8000_0000, PageSize::Size4K),
                Err(P2mError::NotMapped)
            );
            assert_eq!(
                p.unmap(&mut m, 0x4000_1000, PageSize::Size2M),
                Err(P2mError::Misaligned)
            );
            assert_eq!(
                p.protect(&mut m, 0x8000_0000, PageSize::Size4K, Perm::R),
                Err(P2mError::NotMapped)
            );
            assert_eq!(m.t.len(), before);
            let mut freed = Vec::new();
            p.free_tables(&mut m, &mut |t| freed.push(t));
            assert_eq!(freed.len(), m.t.len(), "split tables are freed too");
        }
    }
}
