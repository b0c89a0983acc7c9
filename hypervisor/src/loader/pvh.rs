//! PVH boot: finding a kernel's 32-bit PVH entry point and laying out the
//! `hvm_start_info` block it is started with.
//!
//! A PVH kernel is an ordinary ELF64 image (loaded by [`super::elf`]) that
//! carries Xen ELF notes (name `"Xen"`, see Xen's `public/elfnote.h`). The one
//! that matters is `XEN_ELFNOTE_PHYS32_ENTRY` (18): the guest-physical address
//! at which the vCPU starts in 32-bit protected mode, paging off, with `%ebx`
//! holding the guest-physical address of an `hvm_start_info`
//! (`public/arch-x86/hvm/start_info.h`, `docs/misc/pvh.pandoc`).
//!
//! Notes are looked for in `PT_NOTE` program headers first and, only if those
//! carry no Xen note, in `SHT_NOTE` sections (the same order as Xen's libelf).
//! Numeric note values may be 1, 2, 4 or 8 bytes: Linux emits PHYS32_ENTRY as
//! an 8-byte `.quad` on x86-64, Xen's own shim as a 4-byte `.long`.
//!
//! Like the ELF loader, everything is validated before anything is used; a
//! bad image yields a [`PvhError`], never a panic.
//!
//! [`StartInfoBuilder`] is pure: it produces the bytes to write and where,
//! and the caller copies them into guest memory. The layouts are defined here
//! byte by byte (offsets documented on the constants) so this module does not
//! depend on `crate::xen::abi`.

use super::elf::{ElfError, Image};
use alloc::vec::Vec;

/// `XEN_ELFNOTE_*` note types: defined once, in the Xen ABI module.
pub use crate::xen::abi::elfnote as note;

const PT_NOTE: u32 = 4;
const SHT_NOTE: u32 = 7;
/// At most this many note regions (segments + sections) are scanned.
const MAX_NOTE_REGIONS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PvhError {
    /// The image is not a loadable ELF64 x86-64 executable.
    Elf(ElfError),
    /// A note header, name or value runs past the end of its note region,
    /// or the region itself lies outside the image. The value is the file
    /// offset of the offending note (or region).
    TruncatedNote(u64),
    /// Section headers are present but lie outside the image.
    BadSectionHeaders,
    /// A numeric Xen note (`type`) whose value is not 1, 2, 4 or 8 bytes long.
    BadNoteSize { ntype: u32, size: u32 },
    /// No `XEN_ELFNOTE_PHYS32_ENTRY` note: not a PVH kernel.
    NoPvhEntry,
    /// The PVH entry is above 4 GiB (it is entered in 32-bit mode).
    EntryAbove4G(u64),
    /// The PVH entry does not lie inside any loaded segment.
    EntryOutsideSegments(u64),
}

impl From<ElfError> for PvhError {
    fn from(e: ElfError) -> Self {
        PvhError::Elf(e)
    }
}

impl core::fmt::Display for PvhError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PvhError::Elf(e) => write!(f, "{e}"),
            PvhError::TruncatedNote(o) => write!(f, "ELF note at offset {o:#x} is truncated"),
            PvhError::BadSectionHeaders => write!(f, "section headers outside the image"),
            PvhError::BadNoteSize { ntype, size } => {
                write!(
                    f,
                    "Xen note {ntype} has a {size}-byte value (want 1, 2, 4 or 8)"
                )
            }
            PvhError::NoPvhEntry => {
                write!(f, "no XEN_ELFNOTE_PHYS32_ENTRY note: not a PVH kernel")
            }
            PvhError::EntryAbove4G(e) => write!(f, "PVH entry {e:#x} is above 4 GiB"),
            PvhError::EntryOutsideSegments(e) => {
                write!(f, "PVH entry {e:#x} is outside every loaded segment")
            }
        }
    }
}

fn u16_at(b: &[u8], o: u64) -> Option<u16> {
    let o = usize::try_from(o).ok()?;
    Some(u16::from_le_bytes(
        b.get(o..o.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn u32_at(b: &[u8], o: u64) -> Option<u32> {
    let o = usize::try_from(o).ok()?;
    Some(u32::from_le_bytes(
        b.get(o..o.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn u64_at(b: &[u8], o: u64) -> Option<u64> {
    let o = usize::try_from(o).ok()?;
    Some(u64::from_le_bytes(
        b.get(o..o.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// One ELF note: `name` without its terminating NUL(s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Note<'a> {
    pub name: &'a [u8],
    pub ntype: u32,
    pub desc: &'a [u8],
}

/// Iterates over the notes of one note region (`bytes` = the region's file
/// contents, `base` = its file offset, used in errors). Names and values are
/// padded to 4 bytes. Stops after the first error.
pub struct Notes<'a> {
    bytes: &'a [u8],
    pos: usize,
    base: u64,
    failed: bool,
}

impl<'a> Notes<'a> {
    pub fn new(bytes: &'a [u8], base: u64) -> Self {
        Notes {
            bytes,
            pos: 0,
            base,
            failed: false,
        }
    }
}

fn pad4(n: usize) -> Option<usize> {
    n.checked_add(3).map(|n| n & !3)
}

impl<'a> Iterator for Notes<'a> {
    type Item = Result<Note<'a>, PvhError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.bytes.len() {
            return None;
        }
        let at = self.base.saturating_add(self.pos as u64);
        let b = &self.bytes[self.pos..];
        let parsed = (|| {
            let namesz = u32_at(b, 0)? as usize;
            let descsz = u32_at(b, 4)? as usize;
            let ntype = u32_at(b, 8)?;
            let name_end = 12usize.checked_add(namesz)?;
            let desc_start = 12usize.checked_add(pad4(namesz)?)?;
            let desc_end = desc_start.checked_add(descsz)?;
            let name = b.get(12..name_end)?;
            let desc = b.get(desc_start..desc_end)?;
            // The final padding may be missing at the very end of the region.
            let next = desc_start.checked_add(pad4(descsz)?)?.min(b.len());
            let nul = name.iter().position(|&c| c == 0).unwrap_or(name.len());
            Some((
                Note {
                    name: &name[..nul],
                    ntype,
                    desc,
                },
                next,
            ))
        })();
        match parsed {
            Some((note, next)) => {
                self.pos += next;
                Some(Ok(note))
            }
            None => {
                self.failed = true;
                Some(Err(PvhError::TruncatedNote(at)))
            }
        }
    }
}

/// The numeric value of a note: 1, 2, 4 or 8 little-endian bytes.
pub fn note_numeric(n: &Note<'_>) -> Result<u64, PvhError> {
    let d = n.desc;
    Ok(match d.len() {
        1 => d[0] as u64,
        2 => u16::from_le_bytes([d[0], d[1]]) as u64,
        4 => u32::from_le_bytes([d[0], d[1], d[2], d[3]]) as u64,
        8 => u64::from_le_bytes(d.try_into().unwrap()),
        _ => {
            return Err(PvhError::BadNoteSize {
                ntype: n.ntype,
                size: d.len() as u32,
            })
        }
    })
}

/// A string note's value up to its first NUL, or "?" if it is not UTF-8.
fn note_str(d: &[u8]) -> &str {
    let end = d.iter().position(|&c| c == 0).unwrap_or(d.len());
    core::str::from_utf8(&d[..end]).unwrap_or("?")
}

/// What the Xen notes say (the informative ones are kept for logging).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenNotes<'a> {
    pub phys32_entry: Option<u64>,
    pub guest_os: Option<&'a str>,
    pub guest_version: Option<&'a str>,
    pub xen_version: Option<&'a str>,
    pub loader: Option<&'a str>,
    pub features: Option<&'a str>,
    /// `XEN_ELFNOTE_ENTRY` (the PV entry; informative only for PVH).
    pub pv_entry: Option<u64>,
    /// How many Xen notes were seen.
    pub count: usize,
}

impl<'a> XenNotes<'a> {
    fn absorb(&mut self, n: &Note<'a>) -> Result<(), PvhError> {
        if n.name != b"Xen" {
            return Ok(());
        }
        self.count += 1;
        let s = || Some(note_str(n.desc));
        match n.ntype {
            note::PHYS32_ENTRY => {
                let v = note_numeric(n)?;
                self.phys32_entry.get_or_insert(v);
            }
            note::ENTRY => {
                let v = note_numeric(n)?;
                self.pv_entry.get_or_insert(v);
            }
            note::GUEST_OS => self.guest_os = s(),
            note::GUEST_VERSION => self.guest_version = s(),
            note::XEN_VERSION => self.xen_version = s(),
            note::LOADER => self.loader = s(),
            note::FEATURES => self.features = s(),
            _ => {}
        }
        Ok(())
    }

    /// Logs the notes at info level.
    pub fn log(&self) {
        log::info!(
            "PVH kernel: guest_os={} guest_version={} xen_version={} loader={} phys32_entry={:#x?}",
            self.guest_os.unwrap_or("-"),
            self.guest_version.unwrap_or("-"),
            self.xen_version.unwrap_or("-"),
            self.loader.unwrap_or("-"),
            self.phys32_entry,
        );
    }
}

/// Collects the Xen notes of an image whose ELF header is already valid.
fn scan_notes(bytes: &[u8]) -> Result<XenNotes<'_>, PvhError> {
    let len = bytes.len() as u64;
    let mut notes = XenNotes::default();
    // Program headers (already bounds-checked by elf::Image::parse).
    let phoff = u64_at(bytes, 32).unwrap_or(0);
    let phentsize = u16_at(bytes, 54).unwrap_or(0) as u64;
    let phnum = u16_at(bytes, 56).unwrap_or(0) as u64;
    let mut regions = 0usize;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32_at(bytes, ph) != Some(PT_NOTE) {
            continue;
        }
        let off = u64_at(bytes, ph + 8).ok_or(PvhError::TruncatedNote(ph))?;
        let size = u64_at(bytes, ph + 32).ok_or(PvhError::TruncatedNote(ph))?;
        scan_region(bytes, off, size, len, &mut notes)?;
        regions += 1;
        if regions == MAX_NOTE_REGIONS {
            break;
        }
    }
    if notes.count > 0 {
        return Ok(notes);
    }
    // Fall back to SHT_NOTE sections.
    let shoff = u64_at(bytes, 40).unwrap_or(0);
    let shentsize = u16_at(bytes, 58).unwrap_or(0) as u64;
    let shnum = u16_at(bytes, 60).unwrap_or(0) as u64;
    if shoff == 0 || shnum == 0 {
        return Ok(notes);
    }
    let sh_end = shnum
        .checked_mul(shentsize)
        .and_then(|n| n.checked_add(shoff));
    if shentsize < 64 || sh_end.is_none_or(|e| e > len) {
        return Err(PvhError::BadSectionHeaders);
    }
    for i in 0..shnum {
        let sh = shoff + i * shentsize;
        if u32_at(bytes, sh + 4) != Some(SHT_NOTE) {
            continue;
        }
        let off = u64_at(bytes, sh + 24).ok_or(PvhError::BadSectionHeaders)?;
        let size = u64_at(bytes, sh + 32).ok_or(PvhError::BadSectionHeaders)?;
        scan_region(bytes, off, size, len, &mut notes)?;
        regions += 1;
        if regions == MAX_NOTE_REGIONS {
            break;
        }
    }
    Ok(notes)
}

fn scan_region<'a>(
    bytes: &'a [u8],
    off: u64,
    size: u64,
    len: u64,
    notes: &mut XenNotes<'a>,
) -> Result<(), PvhError> {
    let end = off
        .checked_add(size)
        .filter(|&e| e <= len)
        .ok_or(PvhError::TruncatedNote(off))?;
    for n in Notes::new(&bytes[off as usize..end as usize], off) {
        notes.absorb(&n?)?;
    }
    Ok(())
}

/// A validated PVH kernel: a loadable ELF image plus its PVH entry point.
#[derive(Clone, Copy, Debug)]
pub struct PvhImage<'a> {
    pub elf: Image<'a>,
    /// Guest-physical 32-bit entry point (`XEN_ELFNOTE_PHYS32_ENTRY`).
    pub entry: u32,
    pub notes: XenNotes<'a>,
}

impl<'a> PvhImage<'a> {
    /// Parses `bytes` as a PVH kernel for a guest of `mem_size` bytes.
    pub fn parse(bytes: &'a [u8], mem_size: u64) -> Result<Self, PvhError> {
        let elf = Image::parse(bytes, mem_size)?;
        let notes = scan_notes(bytes)?;
        let entry = notes.phys32_entry.ok_or(PvhError::NoPvhEntry)?;
        let entry32 = u32::try_from(entry).map_err(|_| PvhError::EntryAbove4G(entry))?;
        if !elf
            .segments()
            .iter()
            .any(|s| entry >= s.paddr && entry - s.paddr < s.memsz)
        {
            return Err(PvhError::EntryOutsideSegments(entry));
        }
        Ok(PvhImage {
            elf,
            entry: entry32,
            notes,
        })
    }
}

// ---------------------------------------------------------------------------
// hvm_start_info
// ---------------------------------------------------------------------------

/// `XEN_HVM_START_MAGIC_VALUE`.
pub const START_MAGIC: u32 = crate::xen::abi::XEN_HVM_START_MAGIC_VALUE;
/// Version 1 adds the memory map.
pub const START_VERSION: u32 = 1;
/// `SIF_PRIVILEGED`: the domain may touch hardware (dom0).
pub const SIF_PRIVILEGED: u32 = 1 << 0;
/// `SIF_INITDOMAIN`: the initial domain.
pub const SIF_INITDOMAIN: u32 = 1 << 1;

/// Byte offsets in `struct hvm_start_info`, from the ABI struct (whose
/// layout is asserted against the public headers in `xen::abi`).
pub mod start_info {
    use crate::xen::abi::HvmStartInfo as S;
    use core::mem::{offset_of, size_of};
    pub const SIZE: usize = size_of::<S>();
    pub const MAGIC: usize = offset_of!(S, magic);
    pub const VERSION: usize = offset_of!(S, version);
    pub const FLAGS: usize = offset_of!(S, flags);
    pub const NR_MODULES: usize = offset_of!(S, nr_modules);
    pub const MODLIST_PADDR: usize = offset_of!(S, modlist_paddr);
    pub const CMDLINE_PADDR: usize = offset_of!(S, cmdline_paddr);
    pub const RSDP_PADDR: usize = offset_of!(S, rsdp_paddr);
    pub const MEMMAP_PADDR: usize = offset_of!(S, memmap_paddr);
    pub const MEMMAP_ENTRIES: usize = offset_of!(S, memmap_entries);
    pub const RESERVED: usize = offset_of!(S, reserved);
}

/// Byte offsets in `struct hvm_modlist_entry`.
pub mod modlist_entry {
    use crate::xen::abi::HvmModlistEntry as M;
    use core::mem::{offset_of, size_of};
    pub const SIZE: usize = size_of::<M>();
    pub const PADDR: usize = offset_of!(M, paddr);
    pub const LEN: usize = offset_of!(M, size);
    pub const CMDLINE_PADDR: usize = offset_of!(M, cmdline_paddr);
    pub const RESERVED: usize = offset_of!(M, reserved);
}

/// Byte offsets in `struct hvm_memmap_table_entry`.
pub mod memmap_entry {
    use crate::xen::abi::HvmMemmapTableEntry as E;
    use core::mem::{offset_of, size_of};
    pub const SIZE: usize = size_of::<E>();
    pub const ADDR: usize = offset_of!(E, addr);
    pub const LEN: usize = offset_of!(E, size);
    pub const TYPE: usize = offset_of!(E, kind);
    pub const RESERVED: usize = offset_of!(E, reserved);
}

/// `XEN_HVM_MEMMAP_TYPE_*` (the e820 types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum MemType {
    Ram = 1,
    Reserved = 2,
    Acpi = 3,
    Nvs = 4,
    Unusable = 5,
    Disabled = 6,
    Pmem = 7,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemmapEntry {
    pub addr: u64,
    pub size: u64,
    pub kind: MemType,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleDesc<'a> {
    pub paddr: u64,
    pub size: u64,
    /// `None`: cmdline_paddr 0 (no command line).
    pub cmdline: Option<&'a str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartInfoError {
    /// The scratch region starts at 0 (0 means "absent" to the guest) or is
    /// not 8-byte aligned.
    BadScratchBase(u64),
    /// Everything needs this many bytes; the scratch region is smaller.
    ScratchTooSmall { need: u64, have: u64 },
    /// The scratch region wraps around the address space.
    ScratchWraps,
    /// A command line (kernel: `None`, module n: `Some(n)`) contains a NUL.
    NulInCmdline(Option<usize>),
    /// Module `n` is empty, at address 0 or overlaps the scratch region.
    BadModule(usize),
}

/// The start-of-day block to write into guest memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartInfoLayout {
    /// Goes in the vCPU's `%ebx` at the PVH entry.
    pub start_info_gpa: u64,
    /// (guest-physical address, bytes) to copy, in ascending address order,
    /// all inside the scratch region.
    pub writes: Vec<(u64, Vec<u8>)>,
    /// First byte after what was used.
    pub end_gpa: u64,
}

/// Builds an `hvm_start_info` block. Layout inside the scratch region, each
/// part 8-byte aligned: start_info (56), modlist (32 each), memmap (24 each),
/// then the NUL-terminated kernel command line and module command lines.
#[derive(Clone, Debug, Default)]
pub struct StartInfoBuilder<'a> {
    flags: u32,
    cmdline: Option<&'a str>,
    modules: Vec<ModuleDesc<'a>>,
    rsdp_paddr: u64,
    memmap: Vec<MemmapEntry>,
}

fn put_u32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], o: usize, v: u64) {
    b[o..o + 8].copy_from_slice(&v.to_le_bytes());
}
fn align8(v: u64) -> u64 {
    (v + 7) & !7
}

impl<'a> StartInfoBuilder<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    /// `SIF_*` flags.
    pub fn flags(mut self, flags: u32) -> Self {
        self.flags = flags;
        self
    }

    pub fn cmdline(mut self, cmdline: &'a str) -> Self {
        self.cmdline = Some(cmdline);
        self
    }

    /// The initial ramdisk: always module 0, without a command line.
    pub fn initrd(mut self, paddr: u64, size: u64) -> Self {
        self.modules.insert(
            0,
            ModuleDesc {
                paddr,
                size,
                cmdline: None,
            },
        );
        self
    }

    /// A further module, after the initrd.
    pub fn module(mut self, m: ModuleDesc<'a>) -> Self {
        self.modules.push(m);
        self
    }

    pub fn rsdp(mut self, paddr: u64) -> Self {
        self.rsdp_paddr = paddr;
        self
    }

    pub fn memmap(mut self, addr: u64, size: u64, kind: MemType) -> Self {
        self.memmap.push(MemmapEntry { addr, size, kind });
        self
    }

    /// Lays everything out in `[base, base + len)`.
    pub fn build(&self, base: u64, len: u64) -> Result<StartInfoLayout, StartInfoError> {
        if base == 0 || !base.is_multiple_of(8) {
            return Err(StartInfoError::BadScratchBase(base));
        }
        let limit = base.checked_add(len).ok_or(StartInfoError::ScratchWraps)?;
        if self.cmdline.is_some_and(|c| c.as_bytes().contains(&0)) {
            return Err(StartInfoError::NulInCmdline(None));
        }
        for (i, m) in self.modules.iter().enumerate() {
            if m.cmdline.is_some_and(|c| c.as_bytes().contains(&0)) {
                return Err(StartInfoError::NulInCmdline(Some(i)));
            }
            let end = m.paddr.checked_add(m.size);
            if m.paddr == 0 || m.size == 0 || end.is_none_or(|e| e > base && m.paddr < limit) {
                return Err(StartInfoError::BadModule(i));
            }
        }
        // Addresses (computed in u128-free u64: all sizes are small and
        // bounded by the checks on `limit` below).
        let nmod = self.modules.len() as u64;
        let nmap = self.memmap.len() as u64;
        let modlist = base + start_info::SIZE as u64;
        let memmap = modlist + nmod * modlist_entry::SIZE as u64;
        let mut strings = align8(memmap + nmap * memmap_entry::SIZE as u64);
        let strings_start = strings;
        let mut take = |s: Option<&str>| -> u64 {
            match s {
                Some(s) => {
                    let at = strings;
                    strings += s.len() as u64 + 1;
                    at
                }
                None => 0,
            }
        };
        let cmdline_paddr = take(self.cmdline);
        let mod_cmdlines: Vec<u64> = self.modules.iter().map(|m| take(m.cmdline)).collect();
        let end = strings;
        if end > limit {
            return Err(StartInfoError::ScratchTooSmall {
                need: end - base,
                have: len,
            });
        }

        let mut si = alloc::vec![0u8; start_info::SIZE];
        put_u32(&mut si, start_info::MAGIC, START_MAGIC);
        put_u32(&mut si, start_info::VERSION, START_VERSION);
        put_u32(&mut si, start_info::FLAGS, self.flags);
        put_u32(&mut si, start_info::NR_MODULES, nmod as u32);
        put_u64(
            &mut si,
            start_info::MODLIST_PADDR,
            if nmod > 0 { modlist } else { 0 },
        );
        put_u64(&mut si, start_info::CMDLINE_PADDR, cmdline_paddr);
        put_u64(&mut si, start_info::RSDP_PADDR, self.rsdp_paddr);
        put_u64(
            &mut si,
            start_info::MEMMAP_PADDR,
            if nmap > 0 { memmap } else { 0 },
        );
        put_u32(&mut si, start_info::MEMMAP_ENTRIES, nmap as u32);
        let mut writes = alloc::vec![(base, si)];

        if nmod > 0 {
            let mut ml = alloc::vec![0u8; self.modules.len() * modlist_entry::SIZE];
            for (i, m) in self.modules.iter().enumerate() {
                let o = i * modlist_entry::SIZE;
                put_u64(&mut ml, o + modlist_entry::PADDR, m.paddr);
                put_u64(&mut ml, o + modlist_entry::LEN, m.size);
                put_u64(&mut ml, o + modlist_entry::CMDLINE_PADDR, mod_cmdlines[i]);
            }
            writes.push((modlist, ml));
        }
        if nmap > 0 {
            let mut mm = alloc::vec![0u8; self.memmap.len() * memmap_entry::SIZE];
            for (i, e) in self.memmap.iter().enumerate() {
                let o = i * memmap_entry::SIZE;
                put_u64(&mut mm, o + memmap_entry::ADDR, e.addr);
                put_u64(&mut mm, o + memmap_entry::LEN, e.size);
                put_u32(&mut mm, o + memmap_entry::TYPE, e.kind as u32);
            }
            writes.push((memmap, mm));
        }
        if end > strings_start {
            let mut s = Vec::with_capacity((end - strings_start) as usize);
            for c in core::iter::once(self.cmdline)
                .chain(self.modules.iter().map(|m| m.cmdline))
                .flatten()
            {
                s.extend_from_slice(c.as_bytes());
                s.push(0);
            }
            writes.push((strings_start, s));
        }
        Ok(StartInfoLayout {
            start_info_gpa: base,
            writes,
            end_gpa: end,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note_bytes(name: &[u8], ntype: u32, desc: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(name.len() as u32).to_le_bytes());
        v.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        v.extend_from_slice(&ntype.to_le_bytes());
        v.extend_from_slice(name);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v.extend_from_slice(desc);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    fn linux_notes(entry: u64, entry_size: usize) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend(note_bytes(b"Xen\0", note::GUEST_OS, b"linux\0"));
        n.extend(note_bytes(b"Xen\0", note::GUEST_VERSION, b"2.6\0"));
        n.extend(note_bytes(b"Xen\0", note::XEN_VERSION, b"xen-3.0\0"));
        n.extend(note_bytes(b"GNU\0", 3, &[0xab; 20]));
        n.extend(note_bytes(
            b"Xen\0",
            note::PHYS32_ENTRY,
            &entry.to_le_bytes()[..entry_size],
        ));
        n
    }

    /// ELF64 EXEC image: one PT_LOAD (paddr, code, memsz), then optionally a
    /// PT_NOTE over `notes`, and optionally an SHT_NOTE section over them.
    fn build(
        paddr: u64,
        code: &[u8],
        memsz: u64,
        notes: &[u8],
        as_phdr: bool,
        as_shdr: bool,
    ) -> Vec<u8> {
        let nph = 1 + as_phdr as usize;
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[6] = 1;
        b[16..18].copy_from_slice(&2u16.to_le_bytes());
        b[18..20].copy_from_slice(&62u16.to_le_bytes());
        b[24..32].copy_from_slice(&0xffff_ffff_8100_0000u64.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&(nph as u16).to_le_bytes());
        let code_off = (64 + 56 * nph) as u64;
        let notes_off = code_off + code.len() as u64;
        let mut ph = vec![0u8; 56];
        ph[..4].copy_from_slice(&1u32.to_le_bytes());
        ph[8..16].copy_from_slice(&code_off.to_le_bytes());
        ph[24..32].copy_from_slice(&paddr.to_le_bytes());
        ph[32..40].copy_from_slice(&(code.len() as u64).to_le_bytes());
        ph[40..48].copy_from_slice(&memsz.to_le_bytes());
        b.extend_from_slice(&ph);
        if as_phdr {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&PT_NOTE.to_le_bytes());
            ph[8..16].copy_from_slice(&notes_off.to_le_bytes());
            ph[32..40].copy_from_slice(&(notes.len() as u64).to_le_bytes());
            ph[48..56].copy_from_slice(&4u64.to_le_bytes());
            b.extend_from_slice(&ph);
        }
        b.extend_from_slice(code);
        b.extend_from_slice(notes);
        if as_shdr {
            let shoff = b.len() as u64;
            b.extend_from_slice(&[0u8; 64]); // SHN_UNDEF
            let mut sh = vec![0u8; 64];
            sh[4..8].copy_from_slice(&SHT_NOTE.to_le_bytes());
            sh[24..32].copy_from_slice(&notes_off.to_le_bytes());
            sh[32..40].copy_from_slice(&(notes.len() as u64).to_le_bytes());
            b.extend_from_slice(&sh);
            b[40..48].copy_from_slice(&shoff.to_le_bytes());
            b[58..60].copy_from_slice(&64u16.to_le_bytes());
            b[60..62].copy_from_slice(&2u16.to_le_bytes());
        }
        b
    }

    #[test]
    fn finds_8_byte_entry_like_linux() {
        let img = build(
            0x100_0000,
            &[0x90; 64],
            0x1000,
            &linux_notes(0x100_0010, 8),
            true,
            false,
        );
        let p = PvhImage::parse(&img, 1 << 30).unwrap();
        assert_eq!(p.entry, 0x100_0010);
        assert_eq!(p.notes.guest_os, Some("linux"));
        assert_eq!(p.notes.guest_version, Some("2.6"));
        assert_eq!(p.notes.xen_version, Some("xen-3.0"));
        assert_eq!(p.notes.count, 4);
        p.notes.log();
    }

    #[test]
    fn finds_4_byte_entry_like_the_shim() {
        let img = build(
            0x10_0000,
            &[0x90; 64],
            0x40,
            &linux_notes(0x10_0020, 4),
            true,
            false,
        );
        assert_eq!(PvhImage::parse(&img, 1 << 30).unwrap().entry, 0x10_0020);
    }

    #[test]
    fn falls_back_to_note_sections() {
        let img = build(
            0x10_0000,
            &[0x90; 64],
            0x40,
            &linux_notes(0x10_0020, 8),
            false,
            true,
        );
        assert_eq!(PvhImage::parse(&img, 1 << 30).unwrap().entry, 0x10_0020);
        // Entry in bss (inside memsz, past filesz) is fine.
        let img = build(
            0x10_0000,
            &[0x90; 64],
            0x1000,
            &linux_notes(0x10_0800, 8),
            true,
            true,
        );
        assert_eq!(PvhImage::parse(&img, 1 << 30).unwrap().entry, 0x10_0800);
    }

    #[test]
    fn bad_pvh_images_are_refused() {
        // Not ELF: the ELF loader's errors come through.
        let good = build(
            0x10_0000,
            &[0x90; 64],
            0x40,
            &linux_notes(0x10_0020, 8),
            true,
            false,
        );
        let mut b = good.clone();
        b[1] = b'X';
        assert_eq!(
            PvhImage::parse(&b, 1 << 30).unwrap_err(),
            PvhError::Elf(ElfError::NotElf)
        );
        assert_eq!(
            PvhImage::parse(&good[..20], 1 << 30).unwrap_err(),
            PvhError::Elf(ElfError::TooShort)
        );
        // No PVH note (a plain Xen PV kernel or no notes at all).
        let mut n = note_bytes(b"Xen\0", note::GUEST_OS, b"linux\0");
        n.extend(note_bytes(
            b"Xen\0",
            note::ENTRY,
            &0xffff_ffff_8100_0000u64.to_le_bytes(),
        ));
        let img = build(0x10_0000, &[0x90; 64], 0x40, &n, true, false);
        assert_eq!(
            PvhImage::parse(&img, 1 << 30).unwrap_err(),
            PvhError::NoPvhEntry
        );
        let img = build(0x10_0000, &[0x90; 64], 0x40, &[], false, false);
        assert_eq!(
            PvhImage::parse(&img, 1 << 30).unwrap_err(),
            PvhError::NoPvhEntry
        );
        // A PHYS32_ENTRY note from someone other than Xen does not count.
        let n = note_bytes(b"Xyz\0", note::PHYS32_ENTRY, &0x10_0020u32.to_le_bytes());
        let img = build(0x10_0000, &[0x90; 64], 0x40, &n, true, false);
        assert_eq!(
            PvhImage::parse(&img, 1 << 30).unwrap_err(),
            PvhError::NoPvhEntry
        );
        // Truncated note: cut the region short in the middle of a note.
        let notes = linux_notes(0x10_0020, 8);
        let img = build(
            0x10_0000,
            &[0x90; 64],
            0x40,
            &notes[..notes.len() - 6],
            true,
            false,
        );
        assert!(matches!(
            PvhImage::parse(&img, 1 << 30).unwrap_err(),
            PvhError::TruncatedNote(_)
        ));
        // Truncated: note region past the end of the file.
        let img = build(0x10_0000, &[0x90; 64], 0x40, &notes, true, false);
        assert!(matches!(
            PvhImage::parse(&img[..img.len() - 1], 1 << 30).unwrap_err(),
            PvhError::TruncatedNote(_)
        ));
        // Odd-sized value.
        let n = note_bytes(b"Xen\0", note::PHYS32_ENTRY, &[1, 2, 3]);
        let img = build(0x10_0000, &[0x90; 64], 0x40, &n, true, false);
        assert_eq!(
            PvhImage::parse(&img, 1 << 30).unwrap_err(),
            PvhError::BadNoteSize {
                ntype: note::PHYS32_ENTRY,
                size: 3
            }
        );
        // Entry outside the loaded segments, and above 4 GiB.
        let img = build(
            0x10_0000,
            &[0x90; 64],
            0x40,
            &linux_notes(0x10_0040, 8),
            true,
            false,
        );
        assert_eq!(
            PvhImage::parse(&img, 1 << 30).unwrap_err(),
            PvhError::EntryOutsideSegments(0x10_0040)
        );
        let img = build(
            0x10_0000,
            &[0x90; 64],
            0x40,
            &linux_notes(1 << 32, 8),
            true,
            false,
        );
        assert_eq!(
            PvhImage::parse(&img, 1 << 30).unwrap_err(),
            PvhError::EntryAbove4G(1 << 32)
        );
        // Broken section headers when falling back to sections.
        let mut img = build(0x10_0000, &[0x90; 64], 0x40, &notes, false, true);
        let l = img.len();
        img[60..62].copy_from_slice(&100u16.to_le_bytes());
        assert_eq!(
            PvhImage::parse(&img[..l], 1 << 30).unwrap_err(),
            PvhError::BadSectionHeaders
        );
    }

    #[test]
    fn mutated_images_never_panic() {
        let good = build(
            0x10_0000,
            &[0x90; 64],
            0x1000,
            &linux_notes(0x10_0020, 8),
            true,
            true,
        );
        let mut x: u32 = 0x1234_5678;
        let mut ok = 0;
        for round in 0..30000 {
            let mut b = good.clone();
            let flips = 1 + round % 4;
            for _ in 0..flips {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let i = (x as usize >> 8) % b.len();
                b[i] = (x >> 24) as u8;
            }
            if round % 7 == 0 {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                b.truncate((x as usize >> 4) % (b.len() + 1));
            }
            match PvhImage::parse(&b, 1 << 30) {
                Ok(p) => {
                    ok += 1;
                    let e = p.entry as u64;
                    assert!(p
                        .elf
                        .segments()
                        .iter()
                        .any(|s| e >= s.paddr && e < s.paddr + s.memsz));
                }
                Err(e) => {
                    let _ = alloc::format!("{e}");
                }
            }
        }
        assert!(ok > 0);
    }

    fn read_u32(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }
    fn read_u64(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    #[test]
    fn start_info_layout_matches_start_info_h() {
        let base = 0x6000u64;
        let l = StartInfoBuilder::new()
            .flags(SIF_PRIVILEGED | SIF_INITDOMAIN)
            .cmdline("console=hvc0 root=/dev/xvda")
            .initrd(0x200_0000, 0x12_3456)
            .module(ModuleDesc {
                paddr: 0x300_0000,
                size: 0x1000,
                cmdline: Some("m1"),
            })
            .rsdp(0xe_0000)
            .memmap(0, 0xa_0000, MemType::Ram)
            .memmap(0xe_0000, 0x2_0000, MemType::Acpi)
            .memmap(0x10_0000, 0x3ff0_0000, MemType::Ram)
            .build(base, 0x1000)
            .unwrap();
        assert_eq!(l.start_info_gpa, base);
        // Flatten into a memory image of the scratch page.
        let mut mem = vec![0xeeu8; 0x1000];
        let mut last = 0;
        for (gpa, bytes) in &l.writes {
            assert!(*gpa >= last, "writes ascend and do not overlap");
            let o = (*gpa - base) as usize;
            mem[o..o + bytes.len()].copy_from_slice(bytes);
            last = gpa + bytes.len() as u64;
        }
        assert_eq!(l.end_gpa, last);
        // hvm_start_info, 56 bytes.
        assert_eq!(l.writes[0].1.len(), 56);
        assert_eq!(read_u32(&mem, 0), 0x336ec578);
        assert_eq!(read_u32(&mem, 4), 1);
        assert_eq!(read_u32(&mem, 8), 3);
        assert_eq!(read_u32(&mem, 12), 2);
        assert_eq!(read_u64(&mem, 16), base + 56); // modlist right after
        let cmdline = read_u64(&mem, 24);
        assert_eq!(read_u64(&mem, 32), 0xe_0000);
        assert_eq!(read_u64(&mem, 40), base + 56 + 2 * 32); // memmap after modlist
        assert_eq!(read_u32(&mem, 48), 3);
        assert_eq!(read_u32(&mem, 52), 0);
        // Modlist entries, 32 bytes each: module 0 = initrd, no cmdline.
        let m0 = 56;
        assert_eq!(read_u64(&mem, m0), 0x200_0000);
        assert_eq!(read_u64(&mem, m0 + 8), 0x12_3456);
        assert_eq!(read_u64(&mem, m0 + 16), 0);
        assert_eq!(read_u64(&mem, m0 + 24), 0);
        let m1 = m0 + 32;
        assert_eq!(read_u64(&mem, m1), 0x300_0000);
        let m1_cmd = read_u64(&mem, m1 + 16) - base;
        assert_eq!(&mem[m1_cmd as usize..m1_cmd as usize + 3], b"m1\0");
        // Memmap entries, 24 bytes each.
        let mm = 56 + 64;
        assert_eq!(read_u64(&mem, mm), 0);
        assert_eq!(read_u64(&mem, mm + 8), 0xa_0000);
        assert_eq!(read_u32(&mem, mm + 16), 1);
        assert_eq!(read_u32(&mem, mm + 20), 0);
        assert_eq!(read_u64(&mem, mm + 24), 0xe_0000);
        assert_eq!(read_u32(&mem, mm + 24 + 16), 3);
        assert_eq!(read_u64(&mem, mm + 48 + 8), 0x3ff0_0000);
        // Command line: after the memmap, 8-aligned, NUL-terminated.
        assert_eq!(cmdline, base + 56 + 64 + 72);
        let c = (cmdline - base) as usize;
        assert_eq!(&mem[c..c + 28], b"console=hvc0 root=/dev/xvda\0");
        assert_eq!(l.end_gpa, cmdline + 28 + 3);
    }

    #[test]
    fn start_info_minimal_and_errors() {
        // Nothing but the header: absent things are 0.
        let l = StartInfoBuilder::new().build(0x1000, 56).unwrap();
        assert_eq!(l.writes.len(), 1);
        let si = &l.writes[0].1;
        assert_eq!(read_u32(si, 12), 0);
        assert_eq!(read_u64(si, 16), 0);
        assert_eq!(read_u64(si, 24), 0);
        assert_eq!(read_u64(si, 40), 0);
        assert_eq!(read_u32(si, 48), 0);
        assert_eq!(
            StartInfoBuilder::new().build(0x1000, 55).unwrap_err(),
            StartInfoError::ScratchTooSmall { need: 56, have: 55 }
        );
        assert_eq!(
            StartInfoBuilder::new().build(0, 4096).unwrap_err(),
            StartInfoError::BadScratchBase(0)
        );
        assert_eq!(
            StartInfoBuilder::new().build(0x1004, 4096).unwrap_err(),
            StartInfoError::BadScratchBase(0x1004)
        );
        assert_eq!(
            StartInfoBuilder::new()
                .build(u64::MAX - 7, 4096)
                .unwrap_err(),
            StartInfoError::ScratchWraps
        );
        assert_eq!(
            StartInfoBuilder::new()
                .cmdline("a\0b")
                .build(0x1000, 4096)
                .unwrap_err(),
            StartInfoError::NulInCmdline(None)
        );
        assert_eq!(
            StartInfoBuilder::new()
                .initrd(0x1800, 0x1000)
                .build(0x1000, 4096)
                .unwrap_err(),
            StartInfoError::BadModule(0)
        );
        assert_eq!(
            StartInfoBuilder::new()
                .initrd(0x10_0000, 0)
                .build(0x1000, 4096)
                .unwrap_err(),
            StartInfoError::BadModule(0)
        );
        // The cmdline just fits / just does not.
        let b = StartInfoBuilder::new().cmdline("1234567");
        assert!(b.build(0x1000, 64).is_ok());
        assert!(b.build(0x1000, 63).is_err());
    }
}
