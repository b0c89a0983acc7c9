//! ELF64 loading for guests: PT_LOAD segments placed at their physical
//! addresses (p_paddr) inside the guest's memory.
//!
//! Every field is checked before anything is written, so a bad image is
//! refused whole (never half-loaded): wrong magic, class, endianness or
//! machine, truncated headers or segments, segments larger in the file than
//! in memory, outside guest memory, or overlapping each other.

pub const MAX_SEGMENTS: usize = 16;
const PT_LOAD: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    TooShort,
    NotElf,
    Not64Bit,
    NotLittleEndian,
    NotX86_64,
    NotExecutable,
    BadProgramHeaders,
    TooManySegments,
    /// Segment `n`'s file data lies past the end of the image.
    TruncatedSegment(usize),
    /// Segment `n` has more bytes in the file than in memory.
    BadSegmentSize(usize),
    /// Segment `n` does not fit in the guest's memory.
    OutsideGuestMemory(usize),
    /// Segments `a` and `b` overlap.
    Overlap(usize, usize),
    NoSegments,
}

impl core::fmt::Display for ElfError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ElfError::TooShort => write!(f, "image shorter than an ELF header"),
            ElfError::NotElf => write!(f, "not an ELF image (bad magic)"),
            ElfError::Not64Bit => write!(f, "not a 64-bit ELF image"),
            ElfError::NotLittleEndian => write!(f, "not a little-endian ELF image"),
            ElfError::NotX86_64 => write!(f, "not an x86-64 ELF image"),
            ElfError::NotExecutable => write!(f, "not an executable ELF image (type must be EXEC)"),
            ElfError::BadProgramHeaders => {
                write!(f, "program headers missing or outside the image")
            }
            ElfError::TooManySegments => write!(f, "more than {MAX_SEGMENTS} loadable segments"),
            ElfError::TruncatedSegment(n) => {
                write!(f, "segment {n} runs past the end of the image (truncated)")
            }
            ElfError::BadSegmentSize(n) => {
                write!(f, "segment {n} is larger in the file than in memory")
            }
            ElfError::OutsideGuestMemory(n) => {
                write!(f, "segment {n} lies outside the guest's memory")
            }
            ElfError::Overlap(a, b) => write!(f, "segments {a} and {b} overlap"),
            ElfError::NoSegments => write!(f, "no loadable segments"),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub paddr: u64,
    pub offset: u64,
    pub filesz: u64,
    pub memsz: u64,
}

#[derive(Clone, Copy, Debug)]
pub struct Image<'a> {
    pub bytes: &'a [u8],
    pub entry: u64,
    segs: [Segment; MAX_SEGMENTS],
    nsegs: usize,
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

impl<'a> Image<'a> {
    /// Parses and validates against a guest memory of `mem_size` bytes.
    pub fn parse(bytes: &'a [u8], mem_size: u64) -> Result<Self, ElfError> {
        if bytes.len() < 64 {
            return Err(ElfError::TooShort);
        }
        if &bytes[..4] != b"\x7fELF" {
            return Err(ElfError::NotElf);
        }
        if bytes[4] != 2 {
            return Err(ElfError::Not64Bit);
        }
        if bytes[5] != 1 {
            return Err(ElfError::NotLittleEndian);
        }
        if u16_at(bytes, 18) != Some(62) {
            return Err(ElfError::NotX86_64);
        }
        if u16_at(bytes, 16) != Some(2) {
            return Err(ElfError::NotExecutable);
        }
        let entry = u64_at(bytes, 24).unwrap();
        let phoff = u64_at(bytes, 32).unwrap();
        let phentsize = u16_at(bytes, 54).unwrap() as u64;
        let phnum = u16_at(bytes, 56).unwrap() as u64;
        if phentsize < 56 || phnum == 0 {
            return Err(ElfError::BadProgramHeaders);
        }
        let ph_end = phnum
            .checked_mul(phentsize)
            .and_then(|n| n.checked_add(phoff));
        if ph_end.is_none_or(|e| e > bytes.len() as u64) {
            return Err(ElfError::BadProgramHeaders);
        }
        let mut img = Image {
            bytes,
            entry,
            segs: [Segment::default(); MAX_SEGMENTS],
            nsegs: 0,
        };
        for i in 0..phnum {
            let ph = (phoff + i * phentsize) as usize;
            if u32_at(bytes, ph) != Some(PT_LOAD) {
                continue;
            }
            let n = img.nsegs;
            if n == MAX_SEGMENTS {
                return Err(ElfError::TooManySegments);
            }
            let s = Segment {
                offset: u64_at(bytes, ph + 8).unwrap(),
                paddr: u64_at(bytes, ph + 24).unwrap(),
                filesz: u64_at(bytes, ph + 32).unwrap(),
                memsz: u64_at(bytes, ph + 40).unwrap(),
            };
            if s.filesz > s.memsz {
                return Err(ElfError::BadSegmentSize(n));
            }
            if s.offset
                .checked_add(s.filesz)
                .is_none_or(|e| e > bytes.len() as u64)
            {
                return Err(ElfError::TruncatedSegment(n));
            }
            if s.paddr.checked_add(s.memsz).is_none_or(|e| e > mem_size) {
                return Err(ElfError::OutsideGuestMemory(n));
            }
            for (j, t) in img.segs[..n].iter().enumerate() {
                if s.memsz > 0
                    && t.memsz > 0
                    && s.paddr < t.paddr + t.memsz
                    && t.paddr < s.paddr + s.memsz
                {
                    return Err(ElfError::Overlap(j, n));
                }
            }
            img.segs[n] = s;
            img.nsegs += 1;
        }
        if img.nsegs == 0 {
            return Err(ElfError::NoSegments);
        }
        Ok(img)
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segs[..self.nsegs]
    }

    /// Copies every segment into guest memory through `write(gpa, bytes)`
    /// and zeroes the rest of each segment through `zero(gpa, len)`.
    pub fn load(&self, mut write: impl FnMut(u64, &[u8]), mut zero: impl FnMut(u64, u64)) {
        for s in self.segments() {
            write(
                s.paddr,
                &self.bytes[s.offset as usize..(s.offset + s.filesz) as usize],
            );
            if s.memsz > s.filesz {
                zero(s.paddr + s.filesz, s.memsz - s.filesz);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 x86-64 EXEC image with the given (paddr, data, memsz) segments.
    pub fn build(segs: &[(u64, &[u8], u64)]) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[6] = 1;
        b[16..18].copy_from_slice(&2u16.to_le_bytes());
        b[18..20].copy_from_slice(&62u16.to_le_bytes());
        b[24..32].copy_from_slice(&0x8000u64.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        let data_start = 64 + 56 * segs.len();
        let mut off = data_start as u64;
        for (paddr, data, memsz) in segs {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&1u32.to_le_bytes());
            ph[8..16].copy_from_slice(&off.to_le_bytes());
            ph[16..24].copy_from_slice(&paddr.to_le_bytes());
            ph[24..32].copy_from_slice(&paddr.to_le_bytes());
            ph[32..40].copy_from_slice(&(data.len() as u64).to_le_bytes());
            ph[40..48].copy_from_slice(&memsz.to_le_bytes());
            b.extend_from_slice(&ph);
            off += data.len() as u64;
        }
        for (_, data, _) in segs {
            b.extend_from_slice(data);
        }
        b
    }

    #[test]
    fn loads_segments_and_zeroes_bss() {
        let img = build(&[(0x8000, b"\xfa\xf4", 0x10), (0x9000, b"abc", 3)]);
        let e = Image::parse(&img, 1 << 20).unwrap();
        assert_eq!(e.entry, 0x8000);
        assert_eq!(e.segments().len(), 2);
        let mem = std::cell::RefCell::new(vec![0xffu8; 1 << 16]);
        e.load(
            |gpa, d| mem.borrow_mut()[gpa as usize..gpa as usize + d.len()].copy_from_slice(d),
            |gpa, n| mem.borrow_mut()[gpa as usize..(gpa + n) as usize].fill(0),
        );
        let mem = mem.into_inner();
        assert_eq!(&mem[0x8000..0x8003], b"\xfa\xf4\x00");
        assert!(mem[0x8002..0x8010].iter().all(|&b| b == 0));
        assert_eq!(&mem[0x9000..0x9003], b"abc");
    }

    #[test]
    fn bad_images_are_refused() {
        let good = build(&[(0x8000, b"\xf4", 1)]);
        assert_eq!(
            Image::parse(&good[..10], 1 << 20).unwrap_err(),
            ElfError::TooShort
        );
        let mut b = good.clone();
        b[0] = 0;
        assert_eq!(Image::parse(&b, 1 << 20).unwrap_err(), ElfError::NotElf);
        let mut b = good.clone();
        b[4] = 1;
        assert_eq!(Image::parse(&b, 1 << 20).unwrap_err(), ElfError::Not64Bit);
        let mut b = good.clone();
        b[18] = 3;
        assert_eq!(Image::parse(&b, 1 << 20).unwrap_err(), ElfError::NotX86_64);
        let mut b = good.clone();
        b[16] = 3; // ET_DYN
        assert_eq!(
            Image::parse(&b, 1 << 20).unwrap_err(),
            ElfError::NotExecutable
        );
        assert_eq!(
            Image::parse(&good[..good.len() - 1], 1 << 20).unwrap_err(),
            ElfError::TruncatedSegment(0)
        );
        assert_eq!(
            Image::parse(&good, 0x8000).unwrap_err(),
            ElfError::OutsideGuestMemory(0)
        );
        let big = build(&[(0x8000, b"ab", 1)]);
        assert_eq!(
            Image::parse(&big, 1 << 20).unwrap_err(),
            ElfError::BadSegmentSize(0)
        );
        let ov = build(&[(0x8000, b"ab", 0x100), (0x8080, b"c", 1)]);
        assert_eq!(
            Image::parse(&ov, 1 << 20).unwrap_err(),
            ElfError::Overlap(0, 1)
        );
        let huge = build(&[(u64::MAX - 1, b"ab", 2)]);
        assert_eq!(
            Image::parse(&huge, u64::MAX).unwrap_err(),
            ElfError::OutsideGuestMemory(0)
        );
    }

    #[test]
    fn mutated_images_never_panic() {
        let good = build(&[(0x8000, &[0x90; 100], 200), (0x9000, b"xyz", 3)]);
        let mut x: u32 = 7;
        for _ in 0..20000 {
            let mut b = good.clone();
            for _ in 0..3 {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let i = (x as usize >> 8) % b.len();
                b[i] = (x >> 24) as u8;
            }
            if let Ok(img) = Image::parse(&b, 1 << 20) {
                img.load(|_, _| {}, |_, _| {});
            }
        }
    }
}
