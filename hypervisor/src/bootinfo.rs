//! One boot-information structure for every way into keel.
//!
//! Each boot path (bootloader crate BIOS/UEFI, GRUB multiboot2) fills a
//! [`BootInfo`] by value: fixed-size arrays, no references into the loader's
//! memory, so keel can drop the loader's page tables right after. Parsing
//! the multiboot2 information structure is plain code tested on the host.

pub const MAX_REGIONS: usize = 128;
pub const MAX_MODULES: usize = 16;
pub const MAX_RESERVED: usize = 24;
pub const CMDLINE_MAX: usize = 1024;
pub const NAME_MAX: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loader {
    Bios,
    Uefi,
    Multiboot2,
}

impl Loader {
    pub fn name(self) -> &'static str {
        match self {
            Loader::Bios => "BIOS (bootloader crate)",
            Loader::Uefi => "UEFI (bootloader crate)",
            Loader::Multiboot2 => "multiboot2 (GRUB)",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    Usable,
    Reserved,
    AcpiReclaimable,
    AcpiNvs,
    Bad,
    /// In use by the loader (its page tables, the kernel image, the ramdisk).
    Loader,
}

impl RegionKind {
    pub fn name(self) -> &'static str {
        match self {
            RegionKind::Usable => "usable",
            RegionKind::Reserved => "reserved",
            RegionKind::AcpiReclaimable => "ACPI data",
            RegionKind::AcpiNvs => "ACPI NVS",
            RegionKind::Bad => "bad",
            RegionKind::Loader => "loader",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub kind: RegionKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Module {
    name: [u8; NAME_MAX],
    name_len: usize,
    pub phys: u64,
    pub len: u64,
    /// multiboot2: the words after the name in the module's string (GRUB's
    /// `module2 FILE dom0 root=/dev/sda1 ro` gives name `dom0` and these
    /// args), as (physical address, length) inside the information
    /// structure, which stays reserved. Xen takes dom0's kernel command
    /// line from there too.
    pub args: (u64, u64),
}

impl Module {
    pub fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len]).unwrap_or("?")
    }
}

/// Problems found while normalizing the loader's information. They are
/// reported on the console; none of them stops the boot by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootProblem {
    TooManyRegions,
    TooManyModules,
    CmdlineTooLong,
    ModuleArchive(keel_bootmod::Error),
    /// The loader put a boot module in non-contiguous physical frames.
    ModuleNotContiguous,
    Mb2Malformed(&'static str),
}

#[derive(Clone, Debug)]
pub struct BootInfo {
    pub loader: Loader,
    regions: [Region; MAX_REGIONS],
    nregions: usize,
    modules: [Module; MAX_MODULES],
    nmodules: usize,
    reserved: [(u64, u64); MAX_RESERVED],
    nreserved: usize,
    cmdline: [u8; CMDLINE_MAX],
    cmdline_len: usize,
    pub rsdp: Option<u64>,
    /// Virtual address at which the loader mapped physical memory.
    pub phys_offset: u64,
    /// Physical memory below this is reachable through `phys_offset`.
    pub phys_mapped_limit: u64,
    pub problems: [Option<BootProblem>; 8],
}

const EMPTY_REGION: Region = Region {
    start: 0,
    end: 0,
    kind: RegionKind::Reserved,
};
const EMPTY_MODULE: Module = Module {
    name: [0; NAME_MAX],
    name_len: 0,
    phys: 0,
    len: 0,
    args: (0, 0),
};

impl BootInfo {
    pub const fn new(loader: Loader) -> Self {
        BootInfo {
            loader,
            regions: [EMPTY_REGION; MAX_REGIONS],
            nregions: 0,
            modules: [EMPTY_MODULE; MAX_MODULES],
            nmodules: 0,
            reserved: [(0, 0); MAX_RESERVED],
            nreserved: 0,
            cmdline: [0; CMDLINE_MAX],
            cmdline_len: 0,
            rsdp: None,
            phys_offset: 0,
            phys_mapped_limit: 0,
            problems: [None; 8],
        }
    }

    pub fn problem(&mut self, p: BootProblem) {
        if let Some(slot) = self
            .problems
            .iter_mut()
            .find(|s| s.is_none() || **s == Some(p))
        {
            *slot = Some(p);
        }
    }

    /// Adds a memory-map entry, keeping the map sorted and merging
    /// adjacent entries of the same kind.
    pub fn add_region(&mut self, start: u64, end: u64, kind: RegionKind) {
        if end <= start {
            return;
        }
        if self.nregions > 0 {
            let last = &mut self.regions[self.nregions - 1];
            if last.kind == kind && last.end == start {
                last.end = end;
                return;
            }
        }
        if self.nregions == MAX_REGIONS {
            self.problem(BootProblem::TooManyRegions);
            return;
        }
        let mut i = self.nregions;
        while i > 0 && self.regions[i - 1].start > start {
            self.regions[i] = self.regions[i - 1];
            i -= 1;
        }
        self.regions[i] = Region { start, end, kind };
        self.nregions += 1;
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions[..self.nregions]
    }

    pub fn usable_bytes(&self) -> u64 {
        self.regions()
            .iter()
            .filter(|r| r.kind == RegionKind::Usable)
            .map(|r| r.end - r.start)
            .sum()
    }

    /// Highest address of any RAM-like region (for sizing the direct map).
    pub fn top_of_ram(&self) -> u64 {
        self.regions()
            .iter()
            .filter(|r| r.kind != RegionKind::Reserved)
            .map(|r| r.end)
            .max()
            .unwrap_or(0)
    }

    /// Ranges that must never be handed out even if the map calls them
    /// usable (the kernel image and boot modules under multiboot2).
    pub fn add_reserved(&mut self, start: u64, end: u64) {
        if self.nreserved < MAX_RESERVED && end > start {
            self.reserved[self.nreserved] = (start, end);
            self.nreserved += 1;
        }
    }

    pub fn reserved(&self) -> &[(u64, u64)] {
        &self.reserved[..self.nreserved]
    }

    pub fn add_module(&mut self, name: &str, phys: u64, len: u64) {
        if self.nmodules == MAX_MODULES {
            self.problem(BootProblem::TooManyModules);
            return;
        }
        let mut m = EMPTY_MODULE;
        let mut n = name.len().min(NAME_MAX);
        while !name.is_char_boundary(n) {
            n -= 1;
        }
        m.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        m.name_len = n;
        m.phys = phys;
        m.len = len;
        self.modules[self.nmodules] = m;
        self.nmodules += 1;
    }

    pub fn modules(&self) -> &[Module] {
        &self.modules[..self.nmodules]
    }

    pub fn module(&self, name: &str) -> Option<&Module> {
        self.modules().iter().find(|m| m.name() == name)
    }

    pub fn set_cmdline(&mut self, s: &str) {
        let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        let mut n = s.len();
        if n > CMDLINE_MAX {
            self.problem(BootProblem::CmdlineTooLong);
            n = CMDLINE_MAX;
            while !s.is_char_boundary(n) {
                n -= 1;
            }
        }
        self.cmdline[..n].copy_from_slice(&s.as_bytes()[..n]);
        self.cmdline_len = n;
    }

    pub fn cmdline(&self) -> &str {
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }
}

/// Multiboot2 information structure (spec: GNU Multiboot2, section 3.6).
pub mod multiboot2 {
    use super::{BootInfo, BootProblem, RegionKind};

    pub const BOOTLOADER_MAGIC: u32 = 0x36d7_6289;
    const TAG_END: u32 = 0;
    const TAG_CMDLINE: u32 = 1;
    const TAG_MODULE: u32 = 3;
    const TAG_MMAP: u32 = 6;
    const TAG_ACPI_OLD: u32 = 14;
    const TAG_ACPI_NEW: u32 = 15;

    fn u32_at(b: &[u8], off: usize) -> Option<u32> {
        Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
    }
    fn u64_at(b: &[u8], off: usize) -> Option<u64> {
        Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
    }
    fn cstr(b: &[u8]) -> &str {
        let n = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        core::str::from_utf8(&b[..n]).unwrap_or("")
    }

    /// Total size of the structure, from its first word.
    pub fn total_size(first8: &[u8]) -> Option<usize> {
        u32_at(first8, 0).map(|v| v as usize)
    }

    /// Fills `bi` from the information structure `b`, which lives at
    /// physical address `info_phys`.
    pub fn parse(b: &[u8], info_phys: u64, bi: &mut BootInfo) -> Result<(), BootProblem> {
        let bad = |why| BootProblem::Mb2Malformed(why);
        let total = u32_at(b, 0).ok_or(bad("shorter than 8 bytes"))? as usize;
        if total < 16 || total > b.len() {
            return Err(bad("total size out of range"));
        }
        let b = &b[..total];
        bi.add_reserved(info_phys, info_phys + total as u64);
        let mut off = 8;
        loop {
            let ty = u32_at(b, off).ok_or(bad("tag past the end"))?;
            let size = u32_at(b, off + 4).ok_or(bad("tag past the end"))? as usize;
            if size < 8 || off + size > total {
                return Err(bad("tag size out of range"));
            }
            let body = &b[off + 8..off + size];
            match ty {
                TAG_END => return Ok(()),
                TAG_CMDLINE => bi.set_cmdline(cstr(body)),
                TAG_MODULE => {
                    let start = u32_at(body, 0).ok_or(bad("short module tag"))? as u64;
                    let end = u32_at(body, 4).ok_or(bad("short module tag"))? as u64;
                    if end < start {
                        return Err(bad("module ends before it starts"));
                    }
                    // "NAME ARGS...": the name is the first word.
                    let string = cstr(&body[8..]).trim_start();
                    let (name, args) = string
                        .split_once(|c: char| c.is_ascii_whitespace())
                        .unwrap_or((string, ""));
                    bi.add_module(
                        if name.is_empty() { "module" } else { name },
                        start,
                        end - start,
                    );
                    let args = args.trim();
                    if !args.is_empty() && bi.nmodules > 0 {
                        let at = args.as_ptr() as u64 - b.as_ptr() as u64;
                        bi.modules[bi.nmodules - 1].args = (info_phys + at, args.len() as u64);
                    }
                    bi.add_reserved(start, end);
                }
                TAG_MMAP => {
                    let esize = u32_at(body, 0).ok_or(bad("short mmap tag"))? as usize;
                    if esize < 24 {
                        return Err(bad("mmap entry size < 24"));
                    }
                    let mut e = 8;
                    while e + esize <= body.len() {
                        let base = u64_at(body, e).unwrap();
                        let len = u64_at(body, e + 8).unwrap();
                        let kind = match u32_at(body, e + 16).unwrap() {
                            1 => RegionKind::Usable,
                            3 => RegionKind::AcpiReclaimable,
                            4 => RegionKind::AcpiNvs,
                            5 => RegionKind::Bad,
                            _ => RegionKind::Reserved,
                        };
                        bi.add_region(base, base.saturating_add(len), kind);
                        e += esize;
                    }
                }
                // The tag holds a copy of the RSDP; its address is valid as
                // long as the information structure is kept (it is reserved).
                TAG_ACPI_NEW => bi.rsdp = Some(info_phys + off as u64 + 8),
                TAG_ACPI_OLD if bi.rsdp.is_none() => bi.rsdp = Some(info_phys + off as u64 + 8),
                _ => {}
            }
            off = (off + size + 7) & !7;
        }
    }

    #[cfg(test)]
    pub(crate) mod build {
        //! Test helper: builds an information structure.
        pub fn tag(out: &mut Vec<u8>, ty: u32, body: &[u8]) {
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&(8 + body.len() as u32).to_le_bytes());
            out.extend_from_slice(body);
            while !out.len().is_multiple_of(8) {
                out.push(0);
            }
        }
        pub fn finish(mut tags: Vec<u8>) -> Vec<u8> {
            tag(&mut tags, 0, &[]);
            let mut out = Vec::new();
            out.extend_from_slice(&(8 + tags.len() as u32).to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&tags);
            out
        }
    }
}

static BOOT: spin::Once<BootInfo> = spin::Once::new();

/// Keeps the boot information for the rest of keel's life (once, at boot).
pub fn set(bi: BootInfo) -> &'static BootInfo {
    BOOT.call_once(|| bi)
}

/// The boot information, once [`set`].
pub fn get() -> Option<&'static BootInfo> {
    BOOT.get()
}

/// The firmware's memory map (empty before boot information exists).
pub fn host_regions() -> &'static [Region] {
    BOOT.get().map_or(&[], |b| b.regions())
}

/// The firmware's RSDP, if the loader passed one.
pub fn host_rsdp() -> Option<u64> {
    BOOT.get().and_then(|b| b.rsdp)
}

#[cfg(test)]
mod tests {
    use super::multiboot2::build::{finish, tag};
    use super::*;

    fn sample_mb2() -> Vec<u8> {
        let mut t = Vec::new();
        tag(&mut t, 1, b"console=com1 smp=2\0");
        let mut m = Vec::new();
        m.extend_from_slice(&0x40_0000u32.to_le_bytes());
        m.extend_from_slice(&0x40_2000u32.to_le_bytes());
        m.extend_from_slice(b"dom0\0");
        tag(&mut t, 3, &m);
        let mut mm = Vec::new();
        mm.extend_from_slice(&24u32.to_le_bytes());
        mm.extend_from_slice(&0u32.to_le_bytes());
        for (base, len, ty) in [
            (0u64, 0x9f000u64, 1u32),
            (0x100000, 0x7ef0000, 1),
            (0x7ff0000, 0x10000, 3),
        ] {
            mm.extend_from_slice(&base.to_le_bytes());
            mm.extend_from_slice(&len.to_le_bytes());
            mm.extend_from_slice(&ty.to_le_bytes());
            mm.extend_from_slice(&0u32.to_le_bytes());
        }
        tag(&mut t, 6, &mm);
        tag(&mut t, 14, b"RSD PTR \0\0\0\0\0\0\0\0\0\0\0\0");
        finish(t)
    }

    #[test]
    fn multiboot2_is_normalized() {
        let b = sample_mb2();
        let mut bi = BootInfo::new(Loader::Multiboot2);
        multiboot2::parse(&b, 0x9000, &mut bi).unwrap();
        assert_eq!(bi.cmdline(), "console=com1 smp=2");
        assert_eq!(bi.modules().len(), 1);
        assert_eq!(bi.module("dom0").unwrap().len, 0x2000);
        assert_eq!(bi.regions().len(), 3);
        assert_eq!(bi.usable_bytes(), 0x9f000 + 0x7ef0000);
        assert_eq!(bi.regions()[2].kind, RegionKind::AcpiReclaimable);
        assert!(bi.rsdp.unwrap() > 0x9000);
        assert!(bi.reserved().contains(&(0x40_0000, 0x40_2000)));
        assert_eq!(bi.module("dom0").unwrap().args, (0, 0));
    }

    #[test]
    fn multiboot2_module_args_follow_the_name() {
        let mut t = Vec::new();
        let mut m = Vec::new();
        m.extend_from_slice(&0x40_0000u32.to_le_bytes());
        m.extend_from_slice(&0x40_2000u32.to_le_bytes());
        m.extend_from_slice(b"dom0 root=UUID=1234 ro  console=hvc0 \0");
        tag(&mut t, 3, &m);
        let b = finish(t);
        let mut bi = BootInfo::new(Loader::Multiboot2);
        multiboot2::parse(&b, 0x9000, &mut bi).unwrap();
        let dom0 = bi.module("dom0").unwrap();
        let (phys, len) = dom0.args;
        let at = (phys - 0x9000) as usize;
        assert_eq!(
            &b[at..at + len as usize],
            b"root=UUID=1234 ro  console=hvc0"
        );
    }

    #[test]
    fn malformed_multiboot2_is_refused_not_panicking() {
        let good = sample_mb2();
        let mut bi = BootInfo::new(Loader::Multiboot2);
        assert!(multiboot2::parse(&good[..4], 0, &mut bi).is_err());
        assert!(multiboot2::parse(&good[..good.len() - 8], 0, &mut bi).is_err());
        let mut x: u32 = 12345;
        for _ in 0..3000 {
            let mut b = good.clone();
            for _ in 0..3 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let i = (x as usize >> 4) % b.len();
                b[i] = (x >> 16) as u8;
            }
            let mut bi = BootInfo::new(Loader::Multiboot2);
            let _ = multiboot2::parse(&b, 0, &mut bi);
        }
    }

    #[test]
    fn regions_sort_and_merge() {
        let mut bi = BootInfo::new(Loader::Bios);
        bi.add_region(0x2000, 0x3000, RegionKind::Usable);
        bi.add_region(0x3000, 0x4000, RegionKind::Usable);
        bi.add_region(0x0, 0x1000, RegionKind::Reserved);
        assert_eq!(bi.regions().len(), 2);
        assert_eq!(bi.regions()[0].start, 0);
        assert_eq!(
            bi.regions()[1],
            Region {
                start: 0x2000,
                end: 0x4000,
                kind: RegionKind::Usable
            }
        );
    }

    #[test]
    fn long_cmdline_is_cut_and_reported() {
        let mut bi = BootInfo::new(Loader::Bios);
        let long = "x".repeat(CMDLINE_MAX + 10);
        bi.set_cmdline(&long);
        assert_eq!(bi.cmdline().len(), CMDLINE_MAX);
        assert_eq!(bi.problems[0], Some(BootProblem::CmdlineTooLong));
    }
}
