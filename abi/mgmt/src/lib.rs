//! keel's management hypercall: the one ABI between the hypervisor and
//! dom0's tools (`keelctl`). Both sides use this crate, so the numbers and
//! the byte layouts exist once.
//!
//! # Calling convention
//!
//! A Xen-style hypercall (VMCALL/VMMCALL, number in RAX) with number
//! [`HYPERCALL`], which lies outside every range Xen allocates (0..=55),
//! so Linux's privcmd passes it through unchanged:
//!
//! | register | meaning |
//! |---|---|
//! | arg1 (RDI) | [`Cmd`] |
//! | arg2 (RSI) | guest-virtual address of the caller's buffer (0 if none) |
//! | arg3 (RDX) | buffer length in bytes |
//! | arg4 (R10) | command argument |
//!
//! It returns a non-negative value on success and `-errno` (Xen's errno
//! numbers, [`Errno`]) on failure. keel serves it only to dom0; any other
//! domain gets [`Errno::EPERM`] before its arguments are looked at.
//!
//! # Versioning
//!
//! [`Cmd::Version`] returns [`ABI_VERSION`] (`major << 16 | minor`). A
//! caller must refuse a different major; minors only add commands or use
//! reserved (zero) bytes at the end of records.
//!
//! # Records
//!
//! Buffers hold fixed-size little-endian records ([`HostInfo`],
//! [`DomainEntry`]) encoded and decoded here, never by casting memory, so
//! a hypervisor and a tool built by different compilers agree byte for
//! byte. Strings are NUL-padded UTF-8 in fixed fields.

#![no_std]
#![forbid(unsafe_code)]

/// The hypercall number (RAX). Xen uses 0..=42 and 48..=55.
pub const HYPERCALL: u64 = 64;

/// `major << 16 | minor`.
pub const ABI_VERSION: u32 = 1 << 16;

/// "KEEL", first field of [`HostInfo`].
pub const MAGIC: u32 = u32::from_le_bytes(*b"KEEL");

/// The major part of an encoded version.
pub const fn major(v: u32) -> u16 {
    (v >> 16) as u16
}

/// The minor part of an encoded version.
pub const fn minor(v: u32) -> u16 {
    v as u16
}

/// Management commands (arg1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Cmd {
    /// Returns [`ABI_VERSION`]. No buffer.
    Version = 0,
    /// Writes one [`HostInfo`] record; returns its size.
    HostInfo = 1,
    /// Writes [`DomainEntry`] records for the domains whose id is at least
    /// arg4, in id order, as many as fit; returns how many it wrote.
    DomainList = 2,
    /// Writes keel's console ring, oldest byte first (only its newest
    /// bytes if the buffer is smaller); returns the byte count. arg4 bit 0
    /// ([`CONSOLE_CLEAR`]) empties the ring afterwards.
    ConsoleRead = 3,
}

impl Cmd {
    pub const fn from_u64(v: u64) -> Option<Cmd> {
        Some(match v {
            0 => Cmd::Version,
            1 => Cmd::HostInfo,
            2 => Cmd::DomainList,
            3 => Cmd::ConsoleRead,
            _ => return None,
        })
    }
}

/// [`Cmd::ConsoleRead`] flag: clear the ring after reading it.
pub const CONSOLE_CLEAR: u64 = 1;

/// Xen errno values the management call returns (negated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub u16);

impl Errno {
    /// The caller is not dom0.
    pub const EPERM: Errno = Errno(1);
    /// A buffer address the hypervisor could not reach.
    pub const EFAULT: Errno = Errno(14);
    /// An unknown command or a malformed argument.
    pub const EINVAL: Errno = Errno(22);
    /// The buffer is too small for one record.
    pub const ENOSPC: Errno = Errno(28);
    /// No such hypercall: the hypervisor is not keel (or predates this ABI).
    pub const ENOSYS: Errno = Errno(38);

    pub const fn to_ret(self) -> i64 {
        -(self.0 as i64)
    }

    /// The errno of a negative hypercall return value.
    pub fn from_ret(ret: i64) -> Option<Errno> {
        if (-4095..0).contains(&ret) {
            Some(Errno((-ret) as u16))
        } else {
            None
        }
    }

    pub const fn name(self) -> &'static str {
        match self.0 {
            1 => "EPERM",
            14 => "EFAULT",
            22 => "EINVAL",
            28 => "ENOSPC",
            38 => "ENOSYS",
            _ => "errno",
        }
    }
}

/// Why a record could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the record's size.
    Short { have: usize, need: usize },
    /// [`HostInfo`] without [`MAGIC`].
    BadMagic(u32),
    /// A different major ABI version.
    Version(u32),
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DecodeError::Short { have, need } => {
                write!(f, "record too short: {have} bytes, need {need}")
            }
            DecodeError::BadMagic(m) => write!(f, "bad record magic {m:#010x}"),
            DecodeError::Version(v) => write!(
                f,
                "management ABI {}.{} (this build speaks {}.{})",
                major(*v),
                minor(*v),
                major(ABI_VERSION),
                minor(ABI_VERSION)
            ),
        }
    }
}

/// A fixed-size NUL-padded string field.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FixedStr<const N: usize>(pub [u8; N]);

impl<const N: usize> FixedStr<N> {
    /// `s`, cut at a character boundary to fit with a terminating NUL.
    pub fn new(s: &str) -> Self {
        let mut b = [0u8; N];
        let mut end = s.len().min(N.saturating_sub(1));
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        b[..end].copy_from_slice(&s.as_bytes()[..end]);
        FixedStr(b)
    }

    /// The text up to the first NUL (invalid UTF-8 shows as "?").
    pub fn as_str(&self) -> &str {
        let end = self.0.iter().position(|&c| c == 0).unwrap_or(N);
        core::str::from_utf8(&self.0[..end]).unwrap_or("?")
    }
}

impl<const N: usize> core::fmt::Debug for FixedStr<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl<const N: usize> Default for FixedStr<N> {
    fn default() -> Self {
        FixedStr([0; N])
    }
}

/// Little-endian writer over a record buffer.
struct W<'a>(&'a mut [u8], usize);

impl W<'_> {
    fn u32(&mut self, v: u32) {
        self.0[self.1..self.1 + 4].copy_from_slice(&v.to_le_bytes());
        self.1 += 4;
    }
    fn u64(&mut self, v: u64) {
        self.0[self.1..self.1 + 8].copy_from_slice(&v.to_le_bytes());
        self.1 += 8;
    }
    fn bytes(&mut self, b: &[u8]) {
        self.0[self.1..self.1 + b.len()].copy_from_slice(b);
        self.1 += b.len();
    }
}

/// Little-endian reader over a record buffer (length checked up front).
struct R<'a>(&'a [u8], usize);

impl R<'_> {
    fn u32(&mut self) -> u32 {
        let v = u32::from_le_bytes(self.0[self.1..self.1 + 4].try_into().unwrap());
        self.1 += 4;
        v
    }
    fn u64(&mut self) -> u64 {
        let v = u64::from_le_bytes(self.0[self.1..self.1 + 8].try_into().unwrap());
        self.1 += 8;
        v
    }
    fn str<const N: usize>(&mut self) -> FixedStr<N> {
        let mut b = [0u8; N];
        b.copy_from_slice(&self.0[self.1..self.1 + N]);
        self.1 += N;
        FixedStr(b)
    }
}

fn need(b: &[u8], n: usize) -> Result<(), DecodeError> {
    if b.len() < n {
        Err(DecodeError::Short {
            have: b.len(),
            need: n,
        })
    } else {
        Ok(())
    }
}

/// The CPU vendor keel runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Vendor {
    Unknown = 0,
    Intel = 1,
    Amd = 2,
}

impl Vendor {
    pub const fn from_u32(v: u32) -> Vendor {
        match v {
            1 => Vendor::Intel,
            2 => Vendor::Amd,
            _ => Vendor::Unknown,
        }
    }
    pub const fn name(self) -> &'static str {
        match self {
            Vendor::Intel => "GenuineIntel",
            Vendor::Amd => "AuthenticAMD",
            Vendor::Unknown => "unknown",
        }
    }
}

/// Virtualization features keel uses (bits of [`HostInfo::hvm_features`]).
pub mod feature {
    /// Intel VT-x.
    pub const VMX: u32 = 1 << 0;
    /// AMD-V.
    pub const SVM: u32 = 1 << 1;
    /// Intel extended page tables.
    pub const EPT: u32 = 1 << 2;
    /// AMD nested page tables.
    pub const NPT: u32 = 1 << 3;
    /// Tagged guest TLBs (VPID on VT-x, ASID on AMD-V).
    pub const TAGGED_TLB: u32 = 1 << 4;

    /// Names of the set bits, in bit order.
    pub fn names(bits: u32) -> impl Iterator<Item = &'static str> {
        [
            (VMX, "vmx"),
            (SVM, "svm"),
            (EPT, "ept"),
            (NPT, "npt"),
            (TAGGED_TLB, "tagged-tlb"),
        ]
        .into_iter()
        .filter(move |(b, _)| bits & b != 0)
        .map(|(_, n)| n)
    }
}

/// [`Cmd::HostInfo`]'s record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostInfo {
    /// keel's version, e.g. "0.1.0".
    pub version: FixedStr<32>,
    pub vendor: u32,
    /// [`feature`] bits.
    pub hvm_features: u32,
    /// Physical CPUs keel runs on.
    pub nr_cpus: u32,
    /// TSC frequency in kHz.
    pub tsc_khz: u32,
    /// Usable host RAM (firmware memory map), bytes.
    pub total_bytes: u64,
    /// RAM keel has not given out (to itself or domains), bytes.
    pub free_bytes: u64,
    /// The scheduler, e.g. "pinned".
    pub scheduler: FixedStr<32>,
    /// Size of keel's console ring, bytes.
    pub console_ring_bytes: u32,
}

impl HostInfo {
    /// Encoded size: magic, version, 32-byte version string, 4 u32, 2 u64,
    /// 32-byte scheduler, ring size, 20 reserved bytes.
    pub const SIZE: usize = 160;

    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let mut w = W(&mut b, 0);
        w.u32(MAGIC);
        w.u32(ABI_VERSION);
        w.bytes(&self.version.0);
        w.u32(self.vendor);
        w.u32(self.hvm_features);
        w.u32(self.nr_cpus);
        w.u32(self.tsc_khz);
        w.u64(self.total_bytes);
        w.u64(self.free_bytes);
        w.bytes(&self.scheduler.0);
        w.u32(self.console_ring_bytes);
        debug_assert!(w.1 <= Self::SIZE);
        b
    }

    pub fn decode(b: &[u8]) -> Result<HostInfo, DecodeError> {
        need(b, Self::SIZE)?;
        let mut r = R(b, 0);
        let magic = r.u32();
        if magic != MAGIC {
            return Err(DecodeError::BadMagic(magic));
        }
        let v = r.u32();
        if major(v) != major(ABI_VERSION) {
            return Err(DecodeError::Version(v));
        }
        Ok(HostInfo {
            version: r.str(),
            vendor: r.u32(),
            hvm_features: r.u32(),
            nr_cpus: r.u32(),
            tsc_khz: r.u32(),
            total_bytes: r.u64(),
            free_bytes: r.u64(),
            scheduler: r.str(),
            console_ring_bytes: r.u32(),
        })
    }
}

/// Domain state bits of [`DomainEntry::flags`] (xl's `rbpscd`).
pub mod dflags {
    pub const RUNNING: u32 = 1 << 0;
    pub const BLOCKED: u32 = 1 << 1;
    pub const PAUSED: u32 = 1 << 2;
    pub const SHUTDOWN: u32 = 1 << 3;
    pub const CRASHED: u32 = 1 << 4;
    pub const DYING: u32 = 1 << 5;
    /// dom0 (not a state; `keelctl` does not print it as one).
    pub const PRIVILEGED: u32 = 1 << 8;
}

/// One [`Cmd::DomainList`] record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DomainEntry {
    pub domid: u32,
    /// [`dflags`] bits.
    pub flags: u32,
    pub vcpus: u32,
    /// Guest RAM, bytes.
    pub mem_bytes: u64,
    /// CPU time its vCPUs have spent in guest mode, ns.
    pub cpu_time_ns: u64,
    pub name: FixedStr<32>,
}

impl DomainEntry {
    /// Encoded size: 3 u32 + 4 reserved bytes, 2 u64, 32-byte name.
    pub const SIZE: usize = 64;

    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let mut w = W(&mut b, 0);
        w.u32(self.domid);
        w.u32(self.flags);
        w.u32(self.vcpus);
        w.u32(0);
        w.u64(self.mem_bytes);
        w.u64(self.cpu_time_ns);
        w.bytes(&self.name.0);
        debug_assert_eq!(w.1, Self::SIZE);
        b
    }

    pub fn decode(b: &[u8]) -> Result<DomainEntry, DecodeError> {
        need(b, Self::SIZE)?;
        let mut r = R(b, 0);
        let domid = r.u32();
        let flags = r.u32();
        let vcpus = r.u32();
        let _reserved = r.u32();
        Ok(DomainEntry {
            domid,
            flags,
            vcpus,
            mem_bytes: r.u64(),
            cpu_time_ns: r.u64(),
            name: r.str(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostInfo {
        HostInfo {
            version: FixedStr::new("0.1.0"),
            vendor: Vendor::Amd as u32,
            hvm_features: feature::SVM | feature::NPT | feature::TAGGED_TLB,
            nr_cpus: 2,
            tsc_khz: 2_994_000,
            total_bytes: 1 << 30,
            free_bytes: 700 << 20,
            scheduler: FixedStr::new("pinned"),
            console_ring_bytes: 65536,
        }
    }

    #[test]
    fn numbers_are_stable() {
        // These are the wire: changing one breaks every deployed keelctl.
        assert_eq!(HYPERCALL, 64);
        assert_eq!(ABI_VERSION, 0x0001_0000);
        assert_eq!(MAGIC, 0x4c45_454b);
        assert_eq!(Cmd::Version as u32, 0);
        assert_eq!(Cmd::HostInfo as u32, 1);
        assert_eq!(Cmd::DomainList as u32, 2);
        assert_eq!(Cmd::ConsoleRead as u32, 3);
        for c in 0..4 {
            assert_eq!(Cmd::from_u64(c).unwrap() as u64, c);
        }
        assert_eq!(Cmd::from_u64(4), None);
        assert_eq!(Cmd::from_u64(u64::MAX), None);
    }

    #[test]
    fn host_info_layout() {
        let b = host().encode();
        assert_eq!(&b[0..4], b"KEEL");
        assert_eq!(&b[4..8], &[0, 0, 1, 0]);
        assert_eq!(&b[8..14], b"0.1.0\0");
        assert!(b[13..40].iter().all(|&c| c == 0));
        assert_eq!(&b[40..44], &2u32.to_le_bytes());
        assert_eq!(&b[44..48], &(0b11010u32).to_le_bytes());
        assert_eq!(&b[48..52], &2u32.to_le_bytes());
        assert_eq!(&b[52..56], &2_994_000u32.to_le_bytes());
        assert_eq!(&b[56..64], &(1u64 << 30).to_le_bytes());
        assert_eq!(&b[64..72], &(700u64 << 20).to_le_bytes());
        assert_eq!(&b[72..79], b"pinned\0");
        assert_eq!(&b[104..108], &65536u32.to_le_bytes());
        assert!(b[108..].iter().all(|&c| c == 0), "reserved bytes are zero");
    }

    #[test]
    fn host_info_round_trip_and_errors() {
        let h = host();
        let b = h.encode();
        assert_eq!(HostInfo::decode(&b), Ok(h));
        // A longer buffer is fine (a newer minor may append fields).
        let mut long = [0u8; HostInfo::SIZE + 8];
        long[..HostInfo::SIZE].copy_from_slice(&b);
        assert_eq!(HostInfo::decode(&long), Ok(h));
        assert_eq!(
            HostInfo::decode(&b[..100]),
            Err(DecodeError::Short {
                have: 100,
                need: 160
            })
        );
        let mut bad = b;
        bad[0] = b'X';
        assert!(matches!(
            HostInfo::decode(&bad),
            Err(DecodeError::BadMagic(_))
        ));
        let mut newer = b;
        newer[4..8].copy_from_slice(&(2u32 << 16).to_le_bytes());
        assert_eq!(HostInfo::decode(&newer), Err(DecodeError::Version(2 << 16)));
        let mut minor = b;
        minor[4..8].copy_from_slice(&((1u32 << 16) | 7).to_le_bytes());
        assert!(HostInfo::decode(&minor).is_ok(), "a newer minor decodes");
    }

    #[test]
    fn domain_entry_layout_and_round_trip() {
        let d = DomainEntry {
            domid: 0,
            flags: dflags::RUNNING | dflags::PRIVILEGED,
            vcpus: 2,
            mem_bytes: 256 << 20,
            cpu_time_ns: 1_500_000_000,
            name: FixedStr::new("Domain-0"),
        };
        let b = d.encode();
        assert_eq!(&b[0..4], &[0, 0, 0, 0]);
        assert_eq!(&b[4..8], &0x101u32.to_le_bytes());
        assert_eq!(&b[8..12], &2u32.to_le_bytes());
        assert_eq!(&b[12..16], &[0, 0, 0, 0]);
        assert_eq!(&b[16..24], &(256u64 << 20).to_le_bytes());
        assert_eq!(&b[24..32], &1_500_000_000u64.to_le_bytes());
        assert_eq!(&b[32..41], b"Domain-0\0");
        assert_eq!(DomainEntry::decode(&b), Ok(d));
        assert!(DomainEntry::decode(&b[..63]).is_err());
    }

    #[test]
    fn fixed_strings() {
        assert_eq!(FixedStr::<8>::new("abc").as_str(), "abc");
        // Truncated to leave a NUL.
        assert_eq!(FixedStr::<4>::new("abcdef").as_str(), "abc");
        // Never splits a UTF-8 character.
        assert_eq!(FixedStr::<4>::new("aé€").as_str(), "aé");
        // A field without NUL and invalid UTF-8 still decode.
        assert_eq!(FixedStr::<3>(*b"xyz").as_str(), "xyz");
        assert_eq!(FixedStr::<3>([0xff, 0, 0]).as_str(), "?");
    }

    #[test]
    fn errno_values() {
        assert_eq!(Errno::EPERM.to_ret(), -1);
        assert_eq!(Errno::from_ret(-1), Some(Errno::EPERM));
        assert_eq!(Errno::from_ret(-38), Some(Errno::ENOSYS));
        assert_eq!(Errno::from_ret(0), None);
        assert_eq!(Errno::from_ret(5), None);
        assert_eq!(Errno::from_ret(-5000), None);
        assert_eq!(Errno::ENOSYS.name(), "ENOSYS");
    }

    #[test]
    fn feature_names() {
        let n: [&str; 3] = {
            let mut it = feature::names(feature::VMX | feature::EPT | feature::TAGGED_TLB);
            [it.next().unwrap(), it.next().unwrap(), it.next().unwrap()]
        };
        assert_eq!(n, ["vmx", "ept", "tagged-tlb"]);
        assert_eq!(Vendor::from_u32(2), Vendor::Amd);
        assert_eq!(Vendor::from_u32(9), Vendor::Unknown);
    }
}
