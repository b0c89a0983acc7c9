//! x86-64 4-level page tables: entry encoding and a builder that maps,
//! translates and unmaps with 4 KiB, 2 MiB and 1 GiB pages.
//!
//! The builder reaches table memory through [`TableMemory`], so the same code
//! builds keel's real page tables (through the direct map) and fake ones in
//! host unit tests. It enforces W^X: a leaf may be writable or executable,
//! never both.

use bitflags::bitflags;

bitflags! {
    /// Bits of a page-table entry (Intel SDM vol. 3, 4.5).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Pte: u64 {
        const PRESENT = 1 << 0;
        const WRITABLE = 1 << 1;
        const USER = 1 << 2;
        const WRITE_THROUGH = 1 << 3;
        const NO_CACHE = 1 << 4;
        const ACCESSED = 1 << 5;
        const DIRTY = 1 << 6;
        /// PS: a 2 MiB (in a PD) or 1 GiB (in a PDPT) leaf.
        const HUGE = 1 << 7;
        const GLOBAL = 1 << 8;
        const NO_EXECUTE = 1 << 63;
    }
}

pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
const ENTRIES: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    Size4K,
    Size2M,
    Size1G,
}

impl PageSize {
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => 1 << 12,
            PageSize::Size2M => 1 << 21,
            PageSize::Size1G => 1 << 30,
        }
    }
    /// "4 KiB", "2 MiB" or "1 GiB", for logs.
    pub const fn name(self) -> &'static str {
        match self {
            PageSize::Size4K => "4 KiB",
            PageSize::Size2M => "2 MiB",
            PageSize::Size1G => "1 GiB",
        }
    }
    /// Level of the leaf entry: 1 = PT, 2 = PD, 3 = PDPT.
    const fn level(self) -> usize {
        match self {
            PageSize::Size4K => 1,
            PageSize::Size2M => 2,
            PageSize::Size1G => 3,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    Misaligned,
    AlreadyMapped,
    OutOfMemory,
    /// Writable and executable at once (W^X).
    WriteAndExecute,
    NonCanonical,
}

/// Where page-table frames come from and how they are reached.
pub trait TableMemory {
    /// A zeroed, page-aligned frame; its physical address.
    fn alloc_table(&mut self) -> Option<u64>;
    /// The table at physical address `phys`.
    fn table(&mut self, phys: u64) -> &mut [u64; ENTRIES];
}

pub struct Mapper<'m, M: TableMemory> {
    root: u64,
    mem: &'m mut M,
    /// Without NX support the NX bit is reserved and must stay clear; W^X
    /// can then only be enforced for writes.
    nx: bool,
}

fn index(virt: u64, level: usize) -> usize {
    ((virt >> (12 + 9 * (level - 1))) & 0x1ff) as usize
}

fn canonical(virt: u64) -> bool {
    let top = virt >> 47;
    top == 0 || top == 0x1ffff
}

impl<'m, M: TableMemory> Mapper<'m, M> {
    pub fn new(mem: &'m mut M, nx: bool) -> Result<Self, MapError> {
        let root = mem.alloc_table().ok_or(MapError::OutOfMemory)?;
        Ok(Mapper { root, mem, nx })
    }

    /// Edits existing tables rooted at `root`.
    pub fn from_root(root: u64, mem: &'m mut M, nx: bool) -> Self {
        Mapper { root, mem, nx }
    }

    pub fn root(&self) -> u64 {
        self.root
    }

    fn leaf_flags(&self, flags: Pte) -> Result<Pte, MapError> {
        if flags.contains(Pte::WRITABLE) && !flags.contains(Pte::NO_EXECUTE) && self.nx {
            return Err(MapError::WriteAndExecute);
        }
        Ok(if self.nx {
            flags
        } else {
            flags - Pte::NO_EXECUTE
        } | Pte::PRESENT)
    }

    /// Maps one page.
    pub fn map(
        &mut self,
        virt: u64,
        phys: u64,
        size: PageSize,
        flags: Pte,
    ) -> Result<(), MapError> {
        if !virt.is_multiple_of(size.bytes())
            || !phys.is_multiple_of(size.bytes())
            || phys & !ADDR_MASK != 0
        {
            return Err(MapError::Misaligned);
        }
        if !canonical(virt) {
            return Err(MapError::NonCanonical);
        }
        let leaf = self.leaf_flags(flags)?;
        let mut table = self.root;
        for level in (size.level() + 1..=4).rev() {
            let i = index(virt, level);
            let e = self.mem.table(table)[i];
            table = if e & Pte::PRESENT.bits() == 0 {
                let t = self.mem.alloc_table().ok_or(MapError::OutOfMemory)?;
                // Intermediate entries grant everything; leaves restrict.
                self.mem.table(table)[i] = t | (Pte::PRESENT | Pte::WRITABLE).bits();
                t
            } else if e & Pte::HUGE.bits() != 0 {
                return Err(MapError::AlreadyMapped);
            } else {
                e & ADDR_MASK
            };
        }
        let i = index(virt, size.level());
        let slot = &mut self.mem.table(table)[i];
        if *slot & Pte::PRESENT.bits() != 0 {
            return Err(MapError::AlreadyMapped);
        }
        let huge = if size == PageSize::Size4K {
            Pte::empty()
        } else {
            Pte::HUGE
        };
        *slot = phys | (leaf | huge).bits();
        Ok(())
    }

    /// Maps `[virt, virt+len)` to `[phys, ...)` with the largest pages that
    /// fit (1 GiB ones only if `gib_pages`).
    pub fn map_range(
        &mut self,
        virt: u64,
        phys: u64,
        len: u64,
        flags: Pte,
        gib_pages: bool,
    ) -> Result<(), MapError> {
        if !virt.is_multiple_of(4096) || !phys.is_multiple_of(4096) || !len.is_multiple_of(4096) {
            return Err(MapError::Misaligned);
        }
        let mut off = 0;
        while off < len {
            let (v, p, left) = (virt + off, phys + off, len - off);
            let size = [PageSize::Size1G, PageSize::Size2M, PageSize::Size4K]
                .into_iter()
                .find(|s| {
                    (*s != PageSize::Size1G || gib_pages)
                        && v % s.bytes() == 0
                        && p % s.bytes() == 0
                        && left >= s.bytes()
                })
                .unwrap();
            self.map(v, p, size, flags)?;
            off += size.bytes();
        }
        Ok(())
    }

    /// The physical address, leaf flags and page size behind `virt`.
    pub fn translate(&mut self, virt: u64) -> Option<(u64, Pte, PageSize)> {
        let mut table = self.root;
        for level in (1..=4).rev() {
            let e = self.mem.table(table)[index(virt, level)];
            if e & Pte::PRESENT.bits() == 0 {
                return None;
            }
            let size = match level {
                3 if e & Pte::HUGE.bits() != 0 => Some(PageSize::Size1G),
                2 if e & Pte::HUGE.bits() != 0 => Some(PageSize::Size2M),
                1 => Some(PageSize::Size4K),
                _ => None,
            };
            if let Some(size) = size {
                let base = e & ADDR_MASK & !(size.bytes() - 1);
                return Some((
                    base + (virt & (size.bytes() - 1)),
                    Pte::from_bits_truncate(e),
                    size,
                ));
            }
            table = e & ADDR_MASK;
        }
        None
    }

    /// Removes the 4 KiB mapping at `virt` (the caller flushes the TLB).
    pub fn unmap_4k(&mut self, virt: u64) -> bool {
        let mut table = self.root;
        for level in (2..=4).rev() {
            let e = self.mem.table(table)[index(virt, level)];
            if e & Pte::PRESENT.bits() == 0 || e & Pte::HUGE.bits() != 0 {
                return false;
            }
            table = e & ADDR_MASK;
        }
        let slot = &mut self.mem.table(table)[index(virt, 1)];
        let was = *slot & Pte::PRESENT.bits() != 0;
        *slot = 0;
        was
    }
}

/// Reads a mapping out of page tables that someone else built (the loader's),
/// through `mem`. Used to find where the loader put keel's own pages.
pub fn walk<M: TableMemory>(mem: &mut M, root: u64, virt: u64) -> Option<u64> {
    let mut table = root & ADDR_MASK;
    for level in (1..=4).rev() {
        let e = mem.table(table)[index(virt, level)];
        if e & Pte::PRESENT.bits() == 0 {
            return None;
        }
        let leaf_size = match level {
            3 | 2 if e & Pte::HUGE.bits() != 0 => Some(1u64 << (12 + 9 * (level - 1))),
            1 => Some(4096),
            _ => None,
        };
        if let Some(sz) = leaf_size {
            return Some((e & ADDR_MASK & !(sz - 1)) + (virt & (sz - 1)));
        }
        table = e & ADDR_MASK;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct FakeMem {
        next: u64,
        tables: HashMap<u64, Box<[u64; 512]>>,
        limit: usize,
    }
    impl TableMemory for FakeMem {
        fn alloc_table(&mut self) -> Option<u64> {
            if self.limit != 0 && self.tables.len() >= self.limit {
                return None;
            }
            self.next += 0x1000;
            self.tables.insert(self.next, Box::new([0; 512]));
            Some(self.next)
        }
        fn table(&mut self, phys: u64) -> &mut [u64; 512] {
            self.tables.get_mut(&phys).expect("not a table")
        }
    }

    #[test]
    fn entry_encoding() {
        let mut m = FakeMem::default();
        let mut p = Mapper::new(&mut m, true).unwrap();
        p.map(
            0xffff_8000_0020_0000,
            0x20_0000,
            PageSize::Size2M,
            Pte::WRITABLE | Pte::NO_EXECUTE,
        )
        .unwrap();
        let (phys, flags, size) = p.translate(0xffff_8000_0021_2345).unwrap();
        assert_eq!((phys, size), (0x21_2345, PageSize::Size2M));
        assert!(flags.contains(Pte::PRESENT | Pte::HUGE | Pte::WRITABLE | Pte::NO_EXECUTE));
        // The raw PD entry: address | P | RW | PS | NX.
        let root = p.root();
        let pml4e = m.tables[&root][256];
        let pdpte = m.tables[&(pml4e & ADDR_MASK)][0];
        let pde = m.tables[&(pdpte & ADDR_MASK)][1];
        assert_eq!(pde, 0x20_0000 | 0x83 | (1 << 63));
    }

    #[test]
    fn write_xor_execute() {
        let mut m = FakeMem::default();
        let mut p = Mapper::new(&mut m, true).unwrap();
        assert_eq!(
            p.map(0x1000, 0x1000, PageSize::Size4K, Pte::WRITABLE),
            Err(MapError::WriteAndExecute)
        );
        p.map(0x1000, 0x1000, PageSize::Size4K, Pte::empty())
            .unwrap(); // R+X text
        p.map(
            0x2000,
            0x2000,
            PageSize::Size4K,
            Pte::WRITABLE | Pte::NO_EXECUTE,
        )
        .unwrap();
        // Without NX the bit must not be set (it would be reserved).
        let mut m2 = FakeMem::default();
        let mut q = Mapper::new(&mut m2, false).unwrap();
        q.map(
            0x2000,
            0x2000,
            PageSize::Size4K,
            Pte::WRITABLE | Pte::NO_EXECUTE,
        )
        .unwrap();
        assert!(!q.translate(0x2000).unwrap().1.contains(Pte::NO_EXECUTE));
    }

    #[test]
    fn range_uses_largest_pages() {
        let mut m = FakeMem::default();
        let mut p = Mapper::new(&mut m, true).unwrap();
        let flags = Pte::WRITABLE | Pte::NO_EXECUTE;
        p.map_range(
            0x3ff0_0000,
            0x3ff0_0000,
            0x4040_0000 - 0x3ff0_0000 + (1 << 30),
            flags,
            true,
        )
        .unwrap();
        assert_eq!(p.translate(0x3ff0_0000).unwrap().2, PageSize::Size4K);
        assert_eq!(p.translate(0x4000_0000).unwrap().2, PageSize::Size1G);
        assert_eq!(p.translate(0x8000_0000).unwrap().2, PageSize::Size2M);
        assert_eq!(p.translate(0x8040_0000), None);
        let mut m2 = FakeMem::default();
        let mut q = Mapper::new(&mut m2, true).unwrap();
        q.map_range(0, 0, 1 << 30, flags, false).unwrap();
        assert_eq!(
            q.translate(0x1234_5678).unwrap(),
            (
                0x1234_5678,
                flags | Pte::PRESENT | Pte::HUGE,
                PageSize::Size2M
            )
        );
    }

    #[test]
    fn errors() {
        let mut m = FakeMem::default();
        let mut p = Mapper::new(&mut m, true).unwrap();
        let f = Pte::NO_EXECUTE;
        assert_eq!(
            p.map(0x1001, 0, PageSize::Size4K, f),
            Err(MapError::Misaligned)
        );
        assert_eq!(
            p.map(0x20_0000, 0x1000, PageSize::Size2M, f),
            Err(MapError::Misaligned)
        );
        assert_eq!(
            p.map(0x0000_8000_0000_0000, 0, PageSize::Size4K, f),
            Err(MapError::NonCanonical)
        );
        p.map(0x20_0000, 0, PageSize::Size2M, f).unwrap();
        assert_eq!(
            p.map(0x20_1000, 0, PageSize::Size4K, f),
            Err(MapError::AlreadyMapped)
        );
        assert_eq!(
            p.map(0x20_0000, 0, PageSize::Size2M, f),
            Err(MapError::AlreadyMapped)
        );
        let mut m2 = FakeMem {
            limit: 2,
            ..Default::default()
        };
        let mut q = Mapper::new(&mut m2, true).unwrap();
        assert_eq!(
            q.map(0x1000, 0, PageSize::Size4K, f),
            Err(MapError::OutOfMemory)
        );
    }

    #[test]
    fn unmap_and_walk() {
        let mut m = FakeMem::default();
        let mut p = Mapper::new(&mut m, true).unwrap();
        p.map(0x5000, 0x9000, PageSize::Size4K, Pte::NO_EXECUTE)
            .unwrap();
        let root = p.root();
        assert!(p.unmap_4k(0x5000));
        assert!(!p.unmap_4k(0x5000));
        assert_eq!(p.translate(0x5000), None);
        p.map(0x40_0000, 0x80_0000, PageSize::Size2M, Pte::NO_EXECUTE)
            .unwrap();
        assert_eq!(walk(&mut m, root, 0x40_1234), Some(0x80_1234));
        assert_eq!(walk(&mut m, root, 0x60_0000), None);
    }
}
