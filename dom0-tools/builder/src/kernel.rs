//! The kernel image: what libxenguest's `xc_dom_parse_image` does for a PVH guest.
//!
//! Accepted:
//!
//! * an ELF64 (x86-64) or ELF32 (i386 or x86-64 machine) executable whose Xen notes carry
//!   `XEN_ELFNOTE_PHYS32_ENTRY` (18, 4- or 8-byte value): the 32-bit PVH entry point;
//! * a Linux bzImage (Debian's `/boot/vmlinuz-*`) whose payload is such an ELF, XZ-compressed
//!   (the standard flavour) or stored uncompressed; the payload is found and decompressed by
//!   the `keel-vmlinux` crate.
//!
//! Notes are read from `PT_NOTE` segments and, only if those hold no Xen note, from `SHT_NOTE`
//! sections, 4-byte aligned (as Xen's libelf reads them). Segments (`PT_LOAD`) load at their
//! physical address `p_paddr`, as Xen loads a PVH kernel; `p_memsz - p_filesz` bytes after the
//! file data are zeroed (`.bss`).
//!
//! Every check happens before anything is loaded; each failure is a [`KernelError`].

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader};
use object::Endianness;

/// `XEN_ELFNOTE_PHYS32_ENTRY`.
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// Why a kernel image was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelError {
    /// The file ends inside a header, a header table or the bzImage payload.
    Truncated {
        what: &'static str,
        need: u64,
        have: u64,
    },
    /// Neither an ELF (`\x7fELF`) nor a bzImage (`HdrS` at 0x202).
    NotAKernel,
    /// An ELF, but not one a PVH domain can run (class, byte order, machine, type).
    UnsupportedElf(String),
    /// A bzImage whose payload this builder cannot unpack (e.g. LZ4, the cloud flavour).
    UnsupportedCompression(&'static str),
    /// The bzImage payload is corrupt (decompression failed) or malformed.
    BzImage(String),
    /// Malformed ELF structures (notes, section headers).
    Malformed(String),
    /// No `XEN_ELFNOTE_PHYS32_ENTRY` note: the kernel is not PVH-capable.
    NoPvhEntry,
    /// The PVH entry is above 4 GiB (it is entered in 32-bit mode).
    EntryAbove4G(u64),
    /// The PVH entry lies in no loadable segment.
    EntryOutsideSegments(u64),
    /// `PT_LOAD` segments `a` and `b` overlap in guest-physical memory.
    OverlappingSegments { a: usize, b: usize },
    /// Segment `index`'s file data lies (partly) beyond the end of the file.
    SegmentBeyondFile {
        index: usize,
        end: u64,
        file_len: u64,
    },
    /// Segment `index` has more file bytes than memory bytes, or wraps the address space.
    BadSegment { index: usize },
    /// No `PT_LOAD` segment.
    NoSegments,
    /// The kernel's segments end at `end`, beyond the domain's low RAM (`ram_end`).
    TooLarge { end: u64, ram_end: u64 },
}

impl core::fmt::Display for KernelError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use KernelError::*;
        match self {
            Truncated { what, need, have } => write!(
                f,
                "kernel image truncated: {what} needs {need} bytes, the file has {have}"
            ),
            NotAKernel => write!(f, "not a kernel image: neither ELF nor a Linux bzImage"),
            UnsupportedElf(m) => write!(f, "unsupported ELF kernel: {m}"),
            UnsupportedCompression(c) => write!(
                f,
                "bzImage payload is {c}: only XZ (Debian's standard flavour) or an uncompressed \
                 ELF is supported"
            ),
            BzImage(m) => write!(f, "bzImage: {m}"),
            Malformed(m) => write!(f, "malformed ELF kernel: {m}"),
            NoPvhEntry => write!(
                f,
                "not a PVH kernel: no Xen PHYS32_ENTRY note (type 18; built without \
                 CONFIG_XEN_PVH?)"
            ),
            EntryAbove4G(e) => write!(f, "PVH entry {e:#x} is above 4 GiB"),
            EntryOutsideSegments(e) => {
                write!(f, "PVH entry {e:#x} lies outside every loadable segment")
            }
            OverlappingSegments { a, b } => write!(f, "kernel segments {a} and {b} overlap"),
            SegmentBeyondFile {
                index,
                end,
                file_len,
            } => write!(
                f,
                "kernel segment {index} ends at file offset {end:#x}, beyond the {file_len:#x}-byte file"
            ),
            BadSegment { index } => write!(
                f,
                "kernel segment {index} is larger in the file than in memory, or wraps"
            ),
            NoSegments => write!(f, "kernel has no loadable segment"),
            TooLarge { end, ram_end } => write!(
                f,
                "kernel ends at {end:#x}, beyond the domain's RAM below the hole ({ram_end:#x}): \
                 give the domain more memory"
            ),
        }
    }
}

impl std::error::Error for KernelError {}

/// The container the kernel came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    Elf64,
    Elf32,
    /// A bzImage with its payload's compression (`"xz"`, `"uncompressed ELF"`).
    BzImage(&'static str),
}

/// One loadable segment: `filesz` bytes from the ELF at `offset` go to guest-physical `paddr`,
/// then zeros up to `memsz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub paddr: u64,
    pub offset: u64,
    pub filesz: u64,
    pub memsz: u64,
}

impl Segment {
    pub fn end(&self) -> u64 {
        self.paddr + self.memsz
    }
}

/// A validated PVH kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelImage {
    pub format: KernelFormat,
    /// The ELF image (decompressed for a bzImage).
    pub elf: Vec<u8>,
    /// The 32-bit PVH entry point (guest-physical).
    pub entry: u32,
    /// `PT_LOAD` segments in file order (at least one, none overlapping).
    pub segments: Vec<Segment>,
}

impl KernelImage {
    /// Parses an ELF or bzImage kernel.
    pub fn parse(bytes: &[u8]) -> Result<KernelImage, KernelError> {
        if bytes.starts_with(b"\x7fELF") {
            return parse_elf(bytes.to_vec(), None);
        }
        if bytes.len() >= 0x206 && &bytes[0x202..0x206] == b"HdrS" {
            return parse_bzimage(bytes);
        }
        if bytes.len() < 4 {
            // Too short to tell what it is.
            return Err(KernelError::Truncated {
                what: "an ELF or bzImage header",
                need: 4,
                have: bytes.len() as u64,
            });
        }
        Err(KernelError::NotAKernel)
    }

    /// The file bytes of segment `s`.
    pub fn data(&self, s: &Segment) -> &[u8] {
        &self.elf[s.offset as usize..(s.offset + s.filesz) as usize]
    }

    /// Lowest guest-physical address any segment occupies.
    pub fn start(&self) -> u64 {
        self.segments.iter().map(|s| s.paddr).min().unwrap_or(0)
    }

    /// First guest-physical address after every segment (`.bss` included).
    pub fn end(&self) -> u64 {
        self.segments.iter().map(Segment::end).max().unwrap_or(0)
    }

    /// Fails with [`KernelError::TooLarge`] when a segment reaches past `ram_end`.
    pub fn check_fits(&self, ram_end: u64) -> Result<(), KernelError> {
        let end = self.end();
        if end > ram_end {
            return Err(KernelError::TooLarge { end, ram_end });
        }
        Ok(())
    }
}

fn parse_bzimage(img: &[u8]) -> Result<KernelImage, KernelError> {
    // The payload fields (0x248, 0x24c) end at 0x250.
    if img.len() < 0x250 {
        return Err(KernelError::Truncated {
            what: "the bzImage setup header",
            need: 0x250,
            have: img.len() as u64,
        });
    }
    let h = keel_vmlinux::parse_bzimage(img).map_err(|e| {
        let le32 = |o: usize| u32::from_le_bytes(img[o..o + 4].try_into().unwrap()) as u64;
        let sects = match img[0x1f1] {
            0 => 4,
            n => n as u64,
        };
        let end = (sects + 1) * 512 + le32(0x248) + le32(0x24c);
        if end > img.len() as u64 && le32(0x24c) != 0 {
            KernelError::Truncated {
                what: "the bzImage payload",
                need: end,
                have: img.len() as u64,
            }
        } else {
            KernelError::BzImage(e)
        }
    })?;
    let payload = h.payload(img);
    let fmt = keel_vmlinux::payload_format(payload);
    let elf = match fmt {
        "xz" => keel_vmlinux::decompress_xz(payload).map_err(KernelError::BzImage)?,
        "uncompressed ELF" => payload.to_vec(),
        other => return Err(KernelError::UnsupportedCompression(other)),
    };
    if !elf.starts_with(b"\x7fELF") {
        return Err(KernelError::BzImage(
            "the decompressed payload is not an ELF image".into(),
        ));
    }
    parse_elf(elf, Some(fmt))
}

fn parse_elf(elf: Vec<u8>, bz: Option<&'static str>) -> Result<KernelImage, KernelError> {
    if elf.len() < 5 {
        return Err(KernelError::Truncated {
            what: "the ELF identification",
            need: 5,
            have: elf.len() as u64,
        });
    }
    let (segments, entry, class) = match elf[4] {
        elf::ELFCLASS64 => {
            let (s, e) = elf_parts::<elf::FileHeader64<Endianness>>(&elf, 64)?;
            (s, e, KernelFormat::Elf64)
        }
        elf::ELFCLASS32 => {
            let (s, e) = elf_parts::<elf::FileHeader32<Endianness>>(&elf, 52)?;
            (s, e, KernelFormat::Elf32)
        }
        c => return Err(KernelError::UnsupportedElf(format!("ELF class {c}"))),
    };
    Ok(KernelImage {
        format: bz.map_or(class, KernelFormat::BzImage),
        elf,
        entry,
        segments,
    })
}

fn elf_parts<Elf: FileHeader<Endian = Endianness>>(
    data: &[u8],
    header_len: u64,
) -> Result<(Vec<Segment>, u32), KernelError> {
    let have = data.len() as u64;
    if have < header_len {
        return Err(KernelError::Truncated {
            what: "the ELF header",
            need: header_len,
            have,
        });
    }
    let hdr = Elf::parse(data).map_err(|e| KernelError::Malformed(e.to_string()))?;
    let endian = hdr
        .endian()
        .map_err(|e| KernelError::UnsupportedElf(e.to_string()))?;
    if endian != Endianness::Little {
        return Err(KernelError::UnsupportedElf("big-endian".into()));
    }
    let machine = hdr.e_machine(endian);
    let ok_machine = machine == elf::EM_X86_64 || (!hdr.is_type_64() && machine == elf::EM_386);
    if !ok_machine {
        return Err(KernelError::UnsupportedElf(format!(
            "machine {machine} (want x86-64, or i386 for ELF32)"
        )));
    }
    if hdr.e_type(endian) != elf::ET_EXEC {
        return Err(KernelError::UnsupportedElf(format!(
            "type {} (want an executable, ET_EXEC)",
            hdr.e_type(endian)
        )));
    }
    // The program header table must lie inside the file (a cut-off image ends here).
    let phoff: u64 = hdr.e_phoff(endian).into();
    let phend = phoff.saturating_add(hdr.e_phnum(endian) as u64 * hdr.e_phentsize(endian) as u64);
    if phend > have {
        return Err(KernelError::Truncated {
            what: "the program header table",
            need: phend,
            have,
        });
    }
    let phdrs = hdr
        .program_headers(endian, data)
        .map_err(|e| KernelError::Malformed(e.to_string()))?;

    let mut segs: Vec<Segment> = Vec::new();
    let mut notes: Vec<&[u8]> = Vec::new();
    for ph in phdrs {
        let (off, filesz): (u64, u64) = (ph.p_offset(endian).into(), ph.p_filesz(endian).into());
        match ph.p_type(endian) {
            elf::PT_LOAD => {
                let index = segs.len();
                let s = Segment {
                    paddr: ph.p_paddr(endian).into(),
                    offset: off,
                    filesz,
                    memsz: ph.p_memsz(endian).into(),
                };
                let end = off.saturating_add(filesz);
                if end > have {
                    return Err(KernelError::SegmentBeyondFile {
                        index,
                        end,
                        file_len: have,
                    });
                }
                if s.filesz > s.memsz || s.paddr.checked_add(s.memsz).is_none() {
                    return Err(KernelError::BadSegment { index });
                }
                if let Some(a) = segs.iter().position(|t| {
                    s.memsz > 0 && t.memsz > 0 && s.paddr < t.end() && t.paddr < s.end()
                }) {
                    return Err(KernelError::OverlappingSegments { a, b: index });
                }
                segs.push(s);
            }
            elf::PT_NOTE => {
                let d = ph.data(endian, data).map_err(|_| KernelError::Truncated {
                    what: "a PT_NOTE segment",
                    need: off.saturating_add(filesz),
                    have,
                })?;
                notes.push(d);
            }
            _ => {}
        }
    }
    if segs.is_empty() {
        return Err(KernelError::NoSegments);
    }

    let mut entry = find_phys32(&notes)?;
    if entry.is_none() {
        // Fall back to SHT_NOTE sections (as libelf does when segments carry no Xen note).
        let shoff: u64 = hdr.e_shoff(endian).into();
        if shoff != 0 {
            let sections = hdr
                .section_headers(endian, data)
                .map_err(|e| KernelError::Malformed(format!("section headers: {e}")))?;
            let mut areas = Vec::new();
            for sh in sections {
                if sh.sh_type(endian) == elf::SHT_NOTE {
                    areas.push(
                        sh.data(endian, data)
                            .map_err(|e| KernelError::Malformed(format!("note section: {e}")))?,
                    );
                }
            }
            entry = find_phys32(&areas)?;
        }
    }
    let entry = entry.ok_or(KernelError::NoPvhEntry)?;
    let entry32 = u32::try_from(entry).map_err(|_| KernelError::EntryAbove4G(entry))?;
    if !segs
        .iter()
        .any(|s| entry >= s.paddr && entry - s.paddr < s.memsz)
    {
        return Err(KernelError::EntryOutsideSegments(entry));
    }
    Ok((segs, entry32))
}

/// The PHYS32_ENTRY value in note areas (keel-vmlinux's note parser: 4-byte alignment).
fn find_phys32(areas: &[&[u8]]) -> Result<Option<u64>, KernelError> {
    for a in areas {
        let notes = keel_vmlinux::parse_notes(a).map_err(KernelError::Malformed)?;
        if let Some((v, _)) = keel_vmlinux::phys32_entry(&notes).map_err(KernelError::Malformed)? {
            return Ok(Some(v));
        }
    }
    Ok(None)
}
