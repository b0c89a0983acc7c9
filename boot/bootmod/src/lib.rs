//! keel's boot-module archive (`KEELMODS`).
//!
//! The `bootloader` crate hands the kernel exactly one ramdisk, so BIOS and
//! UEFI images carry every boot module (dom0 kernel, initrd, domain configs)
//! and the hypervisor command line in one archive. GRUB passes modules as
//! `module2` lines instead and does not use this format.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! offset 0   magic     b"KEELMODS"
//!        8   version   u32 = 1
//!       12   count     u32  number of entries
//!       16   entries   count x Entry (80 bytes each)
//!   Entry:   name      [u8; 64]  UTF-8, NUL-padded, not empty
//!            offset    u64       from the start of the archive, 4 KiB aligned
//!            len       u64
//!   data:    each module's bytes at its offset
//! ```
//!
//! The entry named [`CMDLINE`] holds the hypervisor command line. Modules are
//! 4 KiB aligned so the hypervisor can hand their frames to a domain as-is.
#![cfg_attr(not(any(test, feature = "alloc")), no_std)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub const MAGIC: &[u8; 8] = b"KEELMODS";
pub const VERSION: u32 = 1;
pub const HEADER_LEN: usize = 16;
pub const ENTRY_LEN: usize = 80;
pub const NAME_LEN: usize = 64;
pub const ALIGN: usize = 4096;
/// Name of the entry that carries the hypervisor command line.
pub const CMDLINE: &str = "cmdline";
/// Upper bound on entries, so a corrupt count cannot make us walk far.
pub const MAX_ENTRIES: usize = 64;

/// Why an archive was refused. Every malformed input maps to one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    TooShort,
    BadMagic,
    UnsupportedVersion(u32),
    TooManyEntries(u32),
    /// Entry `index` has an empty, unterminated or non-UTF-8 name.
    BadName {
        index: usize,
    },
    /// Entry `index` points (partly) outside the archive: it was truncated.
    Truncated {
        index: usize,
    },
    Misaligned {
        index: usize,
    },
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::TooShort => write!(f, "archive shorter than its header"),
            Error::BadMagic => write!(f, "not a KEELMODS archive (bad magic)"),
            Error::UnsupportedVersion(v) => write!(f, "unsupported archive version {v}"),
            Error::TooManyEntries(n) => {
                write!(f, "archive claims {n} entries (max {MAX_ENTRIES})")
            }
            Error::BadName { index } => write!(f, "entry {index}: bad name"),
            Error::Truncated { index } => {
                write!(
                    f,
                    "entry {index}: data runs past the end of the archive (truncated)"
                )
            }
            Error::Misaligned { index } => write!(f, "entry {index}: offset not 4 KiB aligned"),
        }
    }
}

/// One module inside a validated archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Module<'a> {
    pub name: &'a str,
    /// Offset of the data from the start of the archive.
    pub offset: usize,
    pub data: &'a [u8],
}

/// A validated archive: every entry was checked by [`Archive::parse`].
#[derive(Debug, Clone, Copy)]
pub struct Archive<'a> {
    bytes: &'a [u8],
    count: usize,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

impl<'a> Archive<'a> {
    /// Validates the whole archive up front, so iteration cannot fail later.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        if bytes.len() < HEADER_LEN {
            return Err(Error::TooShort);
        }
        if &bytes[..8] != MAGIC {
            return Err(Error::BadMagic);
        }
        let version = u32_at(bytes, 8);
        if version != VERSION {
            return Err(Error::UnsupportedVersion(version));
        }
        let count = u32_at(bytes, 12);
        if count as usize > MAX_ENTRIES {
            return Err(Error::TooManyEntries(count));
        }
        let count = count as usize;
        if bytes.len() < HEADER_LEN + count * ENTRY_LEN {
            return Err(Error::TooShort);
        }
        let archive = Archive { bytes, count };
        for index in 0..count {
            archive.entry(index)?;
        }
        Ok(archive)
    }

    fn entry(&self, index: usize) -> Result<Module<'a>, Error> {
        let e = HEADER_LEN + index * ENTRY_LEN;
        let raw_name = &self.bytes[e..e + NAME_LEN];
        let name_len = raw_name.iter().position(|&c| c == 0).unwrap_or(NAME_LEN);
        if name_len == 0 || name_len == NAME_LEN {
            return Err(Error::BadName { index });
        }
        let name =
            core::str::from_utf8(&raw_name[..name_len]).map_err(|_| Error::BadName { index })?;
        let offset = u64_at(self.bytes, e + NAME_LEN);
        let len = u64_at(self.bytes, e + NAME_LEN + 8);
        if !offset.is_multiple_of(ALIGN as u64) {
            return Err(Error::Misaligned { index });
        }
        let end = offset.checked_add(len).ok_or(Error::Truncated { index })?;
        if end > self.bytes.len() as u64 {
            return Err(Error::Truncated { index });
        }
        Ok(Module {
            name,
            offset: offset as usize,
            data: &self.bytes[offset as usize..end as usize],
        })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn modules(&self) -> impl Iterator<Item = Module<'a>> + '_ {
        (0..self.count).map(move |i| self.entry(i).expect("validated in parse"))
    }

    pub fn get(&self, name: &str) -> Option<Module<'a>> {
        self.modules().find(|m| m.name == name)
    }

    /// The hypervisor command line, if the archive carries one.
    pub fn cmdline(&self) -> Option<&'a str> {
        self.get(CMDLINE)
            .and_then(|m| core::str::from_utf8(m.data).ok())
            .map(|s| s.trim_end_matches(['\0', '\n', ' ']))
    }
}

/// Builds an archive (host side: used by `boot/` and by tests).
#[cfg(any(test, feature = "alloc"))]
pub fn build(modules: &[(&str, &[u8])]) -> Result<alloc_vec::Vec<u8>, &'static str> {
    if modules.len() > MAX_ENTRIES {
        return Err("too many boot modules");
    }
    let table_end = HEADER_LEN + modules.len() * ENTRY_LEN;
    let mut out = alloc_vec::Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(modules.len() as u32).to_le_bytes());
    let mut offset = table_end.div_ceil(ALIGN) * ALIGN;
    for (name, data) in modules {
        if name.is_empty() || name.len() >= NAME_LEN || name.contains('\0') {
            return Err("boot module names must be 1..63 bytes without NUL");
        }
        let mut raw = [0u8; NAME_LEN];
        raw[..name.len()].copy_from_slice(name.as_bytes());
        out.extend_from_slice(&raw);
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        offset += data.len().div_ceil(ALIGN) * ALIGN;
    }
    for (_, data) in modules {
        out.resize(out.len().div_ceil(ALIGN) * ALIGN, 0);
        out.extend_from_slice(data);
    }
    Ok(out)
}

#[cfg(all(feature = "alloc", not(test)))]
use alloc::vec as alloc_vec;
#[cfg(test)]
use std::vec as alloc_vec;

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        build(&[
            (CMDLINE, b"console=com1 loglvl=debug\n"),
            ("dom0", &[0xAB; 5000]),
        ])
        .unwrap()
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let a = Archive::parse(&bytes).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a.cmdline(), Some("console=com1 loglvl=debug"));
        let dom0 = a.get("dom0").unwrap();
        assert_eq!(dom0.data.len(), 5000);
        assert!(dom0.data.iter().all(|&b| b == 0xAB));
        assert_eq!(dom0.offset % ALIGN, 0);
        assert!(a.get("nope").is_none());
    }

    #[test]
    fn truncated_module_is_refused() {
        let bytes = sample();
        let cut = &bytes[..bytes.len() - 1];
        assert_eq!(
            Archive::parse(cut).unwrap_err(),
            Error::Truncated { index: 1 }
        );
        assert_eq!(Archive::parse(&bytes[..10]).unwrap_err(), Error::TooShort);
        assert_eq!(
            Archive::parse(&bytes[..HEADER_LEN + 20]).unwrap_err(),
            Error::TooShort
        );
    }

    #[test]
    fn corrupt_headers_are_refused() {
        let mut b = sample();
        b[0] = b'X';
        assert_eq!(Archive::parse(&b).unwrap_err(), Error::BadMagic);
        let mut b = sample();
        b[8] = 7;
        assert_eq!(
            Archive::parse(&b).unwrap_err(),
            Error::UnsupportedVersion(7)
        );
        let mut b = sample();
        b[12..16].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(Archive::parse(&b).unwrap_err(), Error::TooManyEntries(1000));
        let mut b = sample();
        b[HEADER_LEN] = 0; // empty name
        assert_eq!(Archive::parse(&b).unwrap_err(), Error::BadName { index: 0 });
        let mut b = sample();
        let off = HEADER_LEN + ENTRY_LEN + NAME_LEN;
        b[off..off + 8].copy_from_slice(&(4097u64).to_le_bytes());
        assert_eq!(
            Archive::parse(&b).unwrap_err(),
            Error::Misaligned { index: 1 }
        );
        let mut b = sample();
        b[off + 8..off + 16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            Archive::parse(&b).unwrap_err(),
            Error::Truncated { index: 1 }
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        // A small deterministic xorshift fuzz over mutated valid archives.
        let base = sample();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..5000 {
            let mut b = base.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % (HEADER_LEN + 2 * ENTRY_LEN);
                b[i] = (x >> 32) as u8;
            }
            let len = (x as usize >> 8) % (b.len() + 1);
            let _ = Archive::parse(&b[..len]).map(|a| a.modules().count());
        }
    }
}
