//! The PVH `vmlinux` inside a Linux bzImage.
//!
//! keel boots dom0 from an ELF kernel with a Xen `PHYS32_ENTRY` note (PVH); Debian ships
//! `/boot/vmlinuz-*`, a bzImage whose payload is that ELF, XZ-compressed. This crate finds the
//! payload through the bzImage setup header, decompresses it, checks the ELF and trims the
//! relocation table Kbuild appends after it. Used by `cargo xtask linux` (the test guest) and by
//! the `keel-vmlinux` tool that keel's Debian package runs for each installed kernel
//! (`docs/install.md`).

use std::io::Read;

pub type Result<T> = std::result::Result<T, String>;

// --------------------------------------------------------------------- bzImage

/// The fields of a bzImage's setup header (Documentation/arch/x86/boot.rst) that locate its
/// compressed payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BzHeader {
    /// Setup sectors after the boot sector (`setup_sects`, 0 meaning 4).
    pub setup_sects: u32,
    /// Boot protocol version, e.g. 0x020f.
    pub version: u16,
    /// File offset of the protected-mode code, `(setup_sects + 1) * 512`.
    pub pm_start: usize,
    /// Payload offset relative to `pm_start` and its length.
    pub payload_offset: u32,
    pub payload_length: u32,
}

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn le64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

pub fn parse_bzimage(img: &[u8]) -> Result<BzHeader> {
    if img.len() < 0x250 {
        return Err(format!(
            "not a bzImage: {} bytes, too short for a setup header",
            img.len()
        ));
    }
    if &img[0x202..0x206] != b"HdrS" {
        return Err("not a bzImage: no \"HdrS\" setup header magic at 0x202".into());
    }
    let version = le16(img, 0x206);
    if version < 0x0208 {
        return Err(format!(
            "bzImage boot protocol {}.{:02} has no payload fields (needs 2.08+)",
            version >> 8,
            version & 0xff
        ));
    }
    let setup_sects = match img[0x1f1] {
        0 => 4,
        n => n as u32,
    };
    let h = BzHeader {
        setup_sects,
        version,
        pm_start: (setup_sects as usize + 1) * 512,
        payload_offset: le32(img, 0x248),
        payload_length: le32(img, 0x24c),
    };
    let start = h.pm_start + h.payload_offset as usize;
    if h.payload_length == 0 || start + h.payload_length as usize > img.len() {
        return Err(format!(
            "bzImage payload {:#x}+{:#x} lies outside the {:#x}-byte file",
            start,
            h.payload_length,
            img.len()
        ));
    }
    Ok(h)
}

impl BzHeader {
    pub fn payload<'a>(&self, img: &'a [u8]) -> &'a [u8] {
        let start = self.pm_start + self.payload_offset as usize;
        &img[start..start + self.payload_length as usize]
    }
}

/// The compression of a kernel payload, by magic (as the kernel's decompressors detect it).
pub fn payload_format(p: &[u8]) -> &'static str {
    const MAGICS: &[(&[u8], &str)] = &[
        (&[0xfd, b'7', b'z', b'X', b'Z', 0], "xz"),
        (&[0x1f, 0x8b], "gzip"),
        (b"BZh", "bzip2"),
        (&[0x5d, 0, 0], "lzma"),
        (&[0x89, b'L', b'Z', b'O'], "lzo"),
        (&[0x02, 0x21, 0x4c, 0x18], "lz4"),
        (&[0x28, 0xb5, 0x2f, 0xfd], "zstd"),
        (b"\x7fELF", "uncompressed ELF"),
    ];
    MAGICS
        .iter()
        .find(|(m, _)| p.starts_with(m))
        .map_or("unknown", |(_, n)| n)
}

/// Decompresses a kernel XZ payload. Kbuild appends the uncompressed size (u32 LE) after the
/// stream; it is dropped and checked when present.
pub fn decompress_xz(payload: &[u8]) -> Result<Vec<u8>> {
    let fmt = payload_format(payload);
    if fmt != "xz" {
        return Err(format!(
            "payload is not XZ (looks like {fmt}; the standard flavour is XZ, the cloud one LZ4)"
        ));
    }
    let (stream, expect) = if payload.ends_with(b"YZ") {
        (payload, None)
    } else if payload.len() >= 6 && &payload[payload.len() - 6..payload.len() - 4] == b"YZ" {
        let n = payload.len() - 4;
        (&payload[..n], Some(le32(payload, n) as usize))
    } else {
        return Err("XZ payload has no stream footer (truncated?)".into());
    };
    let mut out = Vec::with_capacity(expect.unwrap_or(stream.len() * 4));
    lzma_rust2::XzReader::new(stream, false)
        .read_to_end(&mut out)
        .map_err(|e| format!("XZ decompression failed: {e}"))?;
    if let Some(n) = expect {
        if n != out.len() {
            return Err(format!(
                "XZ decompression gave {} bytes, the bzImage says {n}",
                out.len()
            ));
        }
    }
    Ok(out)
}

/// What [`extract_vmlinux`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vmlinux {
    /// The ELF image, ending where its last header table, segment or section ends.
    pub elf: Vec<u8>,
    pub pvh: PvhElf,
    /// Bytes dropped after the ELF image (Kbuild's relocation table).
    pub trailer: usize,
}

/// bzImage -> the vmlinux ELF, trimmed of the relocation table Kbuild appends after it.
pub fn extract_vmlinux(img: &[u8]) -> Result<Vmlinux> {
    let h = parse_bzimage(img)?;
    let mut elf = decompress_xz(h.payload(img))?;
    let pvh = check_pvh_elf(&elf)?;
    let end = elf_extent(&elf)?;
    let trailer = elf.len() - end;
    elf.truncate(end);
    Ok(Vmlinux { elf, pvh, trailer })
}

// ------------------------------------------------------------------------- ELF

const PT_NOTE: u32 = 4;
const SHT_NOTE: u32 = 7;
const SHT_NOBITS: u32 = 8;
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// What `check_pvh_elf` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PvhElf {
    pub e_entry: u64,
    /// The 32-bit PVH entry point (`XEN_ELFNOTE_PHYS32_ENTRY`).
    pub phys32_entry: u64,
    /// 4 or 8 (Linux uses 8, Xen's shim 4).
    pub note_size: usize,
}

struct Elf64<'a> {
    b: &'a [u8],
    phoff: usize,
    phentsize: usize,
    phnum: usize,
    shoff: usize,
    shentsize: usize,
    shnum: usize,
}

/// (type, offset, file size) of each program header, or of each section header.
type Ranges = Vec<(u32, usize, usize)>;

impl<'a> Elf64<'a> {
    fn parse(b: &'a [u8]) -> Result<Elf64<'a>> {
        if b.len() < 64 || &b[..4] != b"\x7fELF" {
            return Err("not an ELF file".into());
        }
        if b[4] != 2 || b[5] != 1 {
            return Err("not a little-endian ELF64".into());
        }
        let machine = le16(b, 18);
        if machine != 62 {
            return Err(format!("ELF machine {machine}, not x86-64 (62)"));
        }
        let e = Elf64 {
            b,
            phoff: le64(b, 32) as usize,
            shoff: le64(b, 40) as usize,
            phentsize: le16(b, 54) as usize,
            phnum: le16(b, 56) as usize,
            shentsize: le16(b, 58) as usize,
            shnum: le16(b, 60) as usize,
        };
        let fits = |off: usize, n: usize, sz: usize, min: usize| {
            n == 0 || (sz >= min && off.checked_add(n * sz).is_some_and(|end| end <= b.len()))
        };
        if !fits(e.phoff, e.phnum, e.phentsize, 56) || !fits(e.shoff, e.shnum, e.shentsize, 64) {
            return Err("ELF header tables lie outside the file".into());
        }
        Ok(e)
    }

    fn phdrs(&self) -> Ranges {
        (0..self.phnum)
            .map(|i| {
                let o = self.phoff + i * self.phentsize;
                (
                    le32(self.b, o),
                    le64(self.b, o + 8) as usize,
                    le64(self.b, o + 32) as usize,
                )
            })
            .collect()
    }

    fn shdrs(&self) -> Ranges {
        (0..self.shnum)
            .map(|i| {
                let o = self.shoff + i * self.shentsize;
                (
                    le32(self.b, o + 4),
                    le64(self.b, o + 24) as usize,
                    le64(self.b, o + 32) as usize,
                )
            })
            .collect()
    }

    fn slice(&self, off: usize, len: usize) -> Result<&'a [u8]> {
        off.checked_add(len)
            .filter(|&end| end <= self.b.len())
            .map(|end| &self.b[off..end])
            .ok_or_else(|| format!("ELF range {off:#x}+{len:#x} lies outside the file"))
    }
}

/// One ELF note: (name without its NUL, type, descriptor).
pub type Note<'a> = (&'a [u8], u32, &'a [u8]);

/// Parses a note area (namesz, descsz, type, name, desc; name and desc padded to 4 bytes).
pub fn parse_notes(mut b: &[u8]) -> Result<Vec<Note<'_>>> {
    let pad = |n: usize| (n + 3) & !3;
    let mut v = Vec::new();
    while b.len() >= 12 {
        let (namesz, descsz, ty) = (le32(b, 0) as usize, le32(b, 4) as usize, le32(b, 8));
        let desc_at = 12 + pad(namesz);
        let end = desc_at + pad(descsz);
        if desc_at + descsz > b.len() {
            return Err(format!(
                "truncated ELF note (namesz {namesz}, descsz {descsz}, type {ty})"
            ));
        }
        let name = &b[12..12 + namesz];
        let name = name.strip_suffix(&[0]).unwrap_or(name);
        v.push((name, ty, &b[desc_at..desc_at + descsz]));
        b = &b[end.min(b.len())..];
    }
    Ok(v)
}

/// The Xen `PHYS32_ENTRY` value among `notes` (4- or 8-byte descriptor).
pub fn phys32_entry(notes: &[Note<'_>]) -> Result<Option<(u64, usize)>> {
    for (name, ty, desc) in notes {
        if *name == b"Xen" && *ty == XEN_ELFNOTE_PHYS32_ENTRY {
            return match desc.len() {
                4 => Ok(Some((le32(desc, 0) as u64, 4))),
                8 => Ok(Some((le64(desc, 0), 8))),
                n => Err(format!(
                    "Xen PHYS32_ENTRY note has a {n}-byte value (want 4 or 8)"
                )),
            };
        }
    }
    Ok(None)
}

/// Checks an ELF64 x86-64 image with a Xen PVH entry note (from PT_NOTE segments, else
/// SHT_NOTE sections).
pub fn check_pvh_elf(b: &[u8]) -> Result<PvhElf> {
    let elf = Elf64::parse(b).map_err(|e| format!("decompressed kernel: {e}"))?;
    let mut areas: Vec<_> = elf.phdrs().into_iter().filter(|p| p.0 == PT_NOTE).collect();
    if areas.is_empty() {
        areas = elf
            .shdrs()
            .into_iter()
            .filter(|s| s.0 == SHT_NOTE)
            .collect();
    }
    for (_, off, len) in areas {
        if let Some((entry, size)) = phys32_entry(&parse_notes(elf.slice(off, len)?)?)? {
            return Ok(PvhElf {
                e_entry: le64(b, 24),
                phys32_entry: entry,
                note_size: size,
            });
        }
    }
    Err(
        "no PVH entry: the kernel ELF has no Xen PHYS32_ENTRY note (type 18; built without \
         CONFIG_XEN_PVH?)"
            .into(),
    )
}

/// Where the ELF image ends: its header tables and every segment/section with file contents.
pub fn elf_extent(b: &[u8]) -> Result<usize> {
    let e = Elf64::parse(b)?;
    let mut end = 64.max(e.phoff + e.phnum * e.phentsize);
    end = end.max(e.shoff + e.shnum * e.shentsize);
    for (_, off, len) in e.phdrs() {
        end = end.max(off.saturating_add(len));
    }
    for (ty, off, len) in e.shdrs() {
        if ty != SHT_NOBITS {
            end = end.max(off.saturating_add(len));
        }
    }
    Ok(end.min(b.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `xz --check=crc32 --x86 --lzma2=dict=64KiB` of `XZ_PLAIN`: BCJ x86 + LZMA2, like Kbuild.
    const XZ_PLAIN: &[u8] =
        b"keel xz bcj test: \xe8\x00\x00\x00\x00 call call \xe8\x10\x00\x00\x00\n";
    const XZ_BCJ: &[u8] = &[
        0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0x00, 0x01, 0x69, 0x22, 0xde, 0x36, 0x02, 0x01, 0x04,
        0x00, 0x21, 0x01, 0x08, 0x00, 0xd2, 0xb9, 0x74, 0xcb, 0xe0, 0x00, 0x27, 0x00, 0x26, 0x5d,
        0x00, 0x35, 0x99, 0x6c, 0xd8, 0x20, 0x34, 0x10, 0x5a, 0x7f, 0x2f, 0x29, 0xe3, 0x68, 0x1f,
        0x16, 0x96, 0xdf, 0xd2, 0x00, 0xcf, 0x28, 0xec, 0x8f, 0x8e, 0x22, 0xe2, 0x15, 0x93, 0x28,
        0xa0, 0x8e, 0x00, 0x23, 0x7f, 0x11, 0x79, 0x28, 0x00, 0x00, 0x00, 0x00, 0xb2, 0xb1, 0xef,
        0x92, 0x00, 0x01, 0x3e, 0x28, 0xac, 0x06, 0xf6, 0x54, 0x90, 0x42, 0x99, 0x0d, 0x01, 0x00,
        0x00, 0x00, 0x00, 0x01, 0x59, 0x5a,
    ];

    /// A synthetic bzImage: `setup_sects` raw, payload at `pm_start + 0x40`.
    fn bzimage(setup_sects: u8, payload: &[u8]) -> Vec<u8> {
        let pm = (if setup_sects == 0 {
            4
        } else {
            setup_sects as usize
        } + 1)
            * 512;
        let mut b = vec![0u8; pm + 0x40 + payload.len() + 16];
        b[0x1f1] = setup_sects;
        b[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        b[0x248..0x24c].copy_from_slice(&0x40u32.to_le_bytes());
        b[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        b[pm + 0x40..pm + 0x40 + payload.len()].copy_from_slice(payload);
        b
    }

    #[test]
    fn bzimage_header() {
        let img = bzimage(0, XZ_BCJ);
        let h = parse_bzimage(&img).unwrap();
        assert_eq!(h.setup_sects, 4, "setup_sects 0 means 4");
        assert_eq!(h.pm_start, 5 * 512);
        assert_eq!(h.version, 0x020f);
        assert_eq!(
            (h.payload_offset, h.payload_length),
            (0x40, XZ_BCJ.len() as u32)
        );
        assert_eq!(h.payload(&img), XZ_BCJ);

        let img = bzimage(30, b"\x02\x21\x4c\x18lz4");
        let h = parse_bzimage(&img).unwrap();
        assert_eq!(h.pm_start, 31 * 512);
        assert_eq!(payload_format(h.payload(&img)), "lz4");
    }

    #[test]
    fn bzimage_errors() {
        let mut img = bzimage(0, XZ_BCJ);
        assert!(parse_bzimage(&img[..0x100])
            .unwrap_err()
            .contains("too short"));
        img[0x202] = b'X';
        assert!(parse_bzimage(&img).unwrap_err().contains("HdrS"));
        let mut img = bzimage(0, XZ_BCJ);
        img[0x206..0x208].copy_from_slice(&0x0204u16.to_le_bytes());
        assert!(parse_bzimage(&img).unwrap_err().contains("2.08"));
        let mut img = bzimage(0, XZ_BCJ);
        img[0x24c..0x250].copy_from_slice(&0x10_0000u32.to_le_bytes());
        assert!(parse_bzimage(&img).unwrap_err().contains("outside"));
        // An LZ4 (cloud) payload is refused by name.
        let img = bzimage(0, b"\x02\x21\x4c\x18lz4");
        assert!(extract_vmlinux(&img).unwrap_err().contains("not XZ"));
    }

    #[test]
    fn xz_bcj_payload() {
        assert_eq!(decompress_xz(XZ_BCJ).unwrap(), XZ_PLAIN);
        // Kbuild's trailing size word is stripped and checked.
        let mut p = XZ_BCJ.to_vec();
        p.extend_from_slice(&(XZ_PLAIN.len() as u32).to_le_bytes());
        assert_eq!(decompress_xz(&p).unwrap(), XZ_PLAIN);
        let n = p.len();
        p[n - 4] += 1;
        assert!(decompress_xz(&p).unwrap_err().contains("says"));
        // Corrupt compressed data.
        let mut p = XZ_BCJ.to_vec();
        p[40] ^= 0xff;
        assert!(decompress_xz(&p)
            .unwrap_err()
            .contains("decompression failed"));
        assert!(decompress_xz(&XZ_BCJ[..50]).unwrap_err().contains("footer"));
    }

    fn note(name: &[u8], ty: u32, desc: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
        v.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        v.extend_from_slice(&ty.to_le_bytes());
        v.extend_from_slice(name);
        v.push(0);
        while !v.len().is_multiple_of(4) {
            v.push(0);
        }
        v.extend_from_slice(desc);
        while !v.len().is_multiple_of(4) {
            v.push(0);
        }
        v
    }

    /// ELF64 x86-64: header, one PT_NOTE phdr at 64, notes at 120, `tail` bytes after.
    fn elf(notes: &[u8], machine: u16, tail: usize) -> Vec<u8> {
        let mut b = vec![0u8; 120];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[6] = 1;
        b[16..18].copy_from_slice(&2u16.to_le_bytes());
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b[24..32].copy_from_slice(&0xffff_ffff_8100_0000u64.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        b[64..68].copy_from_slice(&PT_NOTE.to_le_bytes());
        b[72..80].copy_from_slice(&120u64.to_le_bytes());
        b[96..104].copy_from_slice(&(notes.len() as u64).to_le_bytes());
        b.extend_from_slice(notes);
        b.resize(b.len() + tail, 0xee);
        b
    }

    #[test]
    fn notes() {
        let mut area = note(b"GNU", 3, &[1, 2, 3, 4, 5]);
        area.extend(note(b"Xen", 6, b"linux"));
        area.extend(note(b"Xen", 18, &0x0100_0850u64.to_le_bytes()));
        let n = parse_notes(&area).unwrap();
        assert_eq!(n.len(), 3);
        assert_eq!(n[0], (&b"GNU"[..], 3, &[1u8, 2, 3, 4, 5][..]));
        assert_eq!(n[1], (&b"Xen"[..], 6, &b"linux"[..]));
        assert_eq!(phys32_entry(&n).unwrap(), Some((0x0100_0850, 8)));

        let e = check_pvh_elf(&elf(&area, 62, 0)).unwrap();
        assert_eq!(e.phys32_entry, 0x0100_0850);
        assert_eq!(e.note_size, 8);
        assert_eq!(e.e_entry, 0xffff_ffff_8100_0000);

        // Xen's shim: a 4-byte value.
        let four = note(b"Xen", 18, &0x0010_0000u32.to_le_bytes());
        let e = check_pvh_elf(&elf(&four, 62, 0)).unwrap();
        assert_eq!((e.phys32_entry, e.note_size), (0x0010_0000, 4));

        let odd = note(b"Xen", 18, &[1, 2]);
        assert!(check_pvh_elf(&elf(&odd, 62, 0))
            .unwrap_err()
            .contains("2-byte"));
        // Type 18 under another name is not the PVH note.
        let gnu = note(b"GNU", 18, &[0; 8]);
        assert!(check_pvh_elf(&elf(&gnu, 62, 0))
            .unwrap_err()
            .contains("no PVH entry"));
        assert!(check_pvh_elf(&elf(&area, 3, 0))
            .unwrap_err()
            .contains("x86-64"));
        assert!(
            check_pvh_elf(b"MZ not an elf at all, padded to 64 bytes ......................")
                .unwrap_err()
                .contains("not an ELF")
        );
        let mut trunc = area.clone();
        trunc.truncate(area.len() - 4);
        assert!(check_pvh_elf(&elf(&trunc, 62, 0))
            .unwrap_err()
            .contains("truncated"));
    }

    #[test]
    fn elf_extent_drops_trailer() {
        let area = note(b"Xen", 18, &0x0100_0850u64.to_le_bytes());
        let img = elf(&area, 62, 100);
        assert_eq!(elf_extent(&img).unwrap(), 120 + area.len());
    }
}
