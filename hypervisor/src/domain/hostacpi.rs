//! dom0's view of the host's ACPI tables.
//!
//! dom0 (the initial domain, PVH) drives the host's devices, so it reads
//! the firmware's own ACPI tables, in place: its memory is mapped 1:1 onto
//! host-physical memory. Two things must change first:
//!
//! * the MADT lists only dom0's vCPUs: vCPU `i` runs on the host's `i`-th
//!   online CPU and has that CPU's APIC ID, so the host's Processor Local
//!   APIC / x2APIC entries for those CPUs are kept, in vCPU order, and every
//!   other processor entry (the CPUs dom0 does not get, disabled and
//!   online-capable ones, invalid IDs, a second entry for the same APIC ID)
//!   is dropped, not marked disabled: a disabled or online-capable entry
//!   invites dom0 to hot-add a CPU it can never run. IO-APIC, interrupt
//!   source override, NMI, x2APIC NMI and every other entry are kept as is.
//! * tables describing hardware keel keeps for itself are hidden: `DMAR`
//!   (Intel VT-d) and `IVRS` (AMD-Vi), the IOMMUs, and `HPET` ([`HIDDEN`]).
//!
//! Every other table (FACP with its DSDT and FACS, SSDTs, MCFG, SRAT,
//! WAET, ...) stays where the firmware put it, so only three new tables are
//! written, into a blob the caller places at `out_base`:
//!
//! ```text
//! out_base + 0x00  RSDP  (revision 2, 36 bytes, no RSDT, both checksums)
//! out_base + 0x40  XSDT  (36 + 8 per table: the host's root entries, in
//!                         order, less the hidden ones, the MADT's replaced)
//! out_base + ...   MADT  (16-byte aligned after the XSDT: the host's
//!                         header and entries, filtered as above)
//! ```
//!
//! The host's root table is the XSDT when the RSDP is revision 2 or later
//! and names one, else the RSDT (revision 0, ACPI 1.0). The root table and
//! the MADT are read whole and their checksums checked (keel parsed them at
//! boot through the `acpi` crate, which checks them too); of any other
//! table only the header is read, to learn its signature and extent.
//!
//! The processor entries come first in the new MADT, then the rest in host
//! order: Linux walks Local APIC and x2APIC entries together in table order
//! and numbers CPUs that way, so vCPU order is what matters.
//!
//! Pure code: memory is read through a callback, the result is bytes and
//! addresses; the caller copies the blob to `out_base`, describes it as
//! ACPI memory (`XEN_HVM_MEMMAP_TYPE_ACPI`) in dom0's map and passes
//! [`Rebuilt::rsdp_addr`] in `hvm_start_info.rsdp_paddr`.

use super::acpi::{sum, HEADER_LEN, MADT_HEADER_LEN, MADT_LAPIC_LEN, RSDP_LEN};
use alloc::vec::Vec;

/// A table signature (`b"APIC"`, ...).
pub type Sig = [u8; 4];

/// Reads host-physical memory: fills the buffer from the address, or
/// returns `false` when any byte of the range is not readable memory.
pub type PhysRead<'a> = &'a dyn Fn(u64, &mut [u8]) -> bool;

/// Offsets of the new tables in the blob.
pub const RSDP_OFFSET: u64 = 0x00;
pub const XSDT_OFFSET: u64 = 0x40;
/// Alignment of the blob and of each table in it.
pub const TABLE_ALIGN: u64 = 16;

/// The longest root table or MADT read (the host's are a few KiB).
pub const MAX_TABLE_LEN: u32 = 1 << 20;
/// The most root-table entries accepted.
pub const MAX_ROOT_ENTRIES: usize = 256;

/// Tables dom0 must not see: the IOMMUs keel owns, and the HPET, which is
/// keel's time source to calibrate against (as Xen keeps it); dom0's clock
/// is Xen's pvclock, and without an HPET Linux ticks from the PIT during
/// boot. (Under QEMU TCG the HPET runs about 3x slow, and Linux's IO-APIC
/// timer check then fails.)
pub const HIDDEN: [Sig; 3] = [*b"DMAR", *b"IVRS", *b"HPET"];
pub const SIG_MADT: Sig = *b"APIC";
pub const SIG_XSDT: Sig = *b"XSDT";
pub const SIG_RSDT: Sig = *b"RSDT";
/// XSDT revision (ACPI 6.x 5.2.8).
pub const XSDT_REVISION: u8 = 1;

// RSDP (ACPI 6.x 5.2.5.3).
const RSDP_SIGNATURE: &[u8; 8] = b"RSD PTR ";
/// The ACPI 1.0 part the first checksum covers.
const RSDP_V1_LEN: usize = 20;
const RSDP_CHECKSUM: usize = 8;
const RSDP_OEM_ID: usize = 9;
const RSDP_REVISION: usize = 15;
const RSDP_RSDT_ADDR: usize = 16;
const RSDP_LENGTH: usize = 20;
const RSDP_XSDT_ADDR: usize = 24;
const RSDP_EXT_CHECKSUM: usize = 32;
/// ACPI 1.0's RSDP (RSDT only).
const RSDP_REV_ACPI1: u8 = 0;
/// ACPI 2.0 and later (XSDT, length, extended checksum).
const RSDP_REV_ACPI2: u8 = 2;
const OEM_ID_LEN: usize = 6;

// System description table header (ACPI 6.x 5.2.6).
const SDT_LENGTH: usize = 4;
const SDT_REVISION: usize = 8;
const SDT_CHECKSUM: usize = 9;

/// Root table entry sizes: RSDT 32-bit, XSDT 64-bit addresses.
const RSDT_ENTRY_LEN: usize = 4;
const XSDT_ENTRY_LEN: usize = 8;

// MADT interrupt controller structures (ACPI 6.x 5.2.12).
const MADT_ENTRY_TYPE: usize = 0;
const MADT_ENTRY_LEN: usize = 1;
const MADT_ENTRY_HEADER_LEN: usize = 2;
/// Processor Local APIC: u8 UID at 2, u8 APIC ID at 3, u32 flags at 4.
pub const MADT_TYPE_LOCAL_APIC: u8 = 0;
pub const MADT_TYPE_IO_APIC: u8 = 1;
pub const MADT_TYPE_INT_SRC_OVERRIDE: u8 = 2;
pub const MADT_TYPE_LOCAL_APIC_NMI: u8 = 4;
/// Processor Local x2APIC: u32 x2APIC ID at 4, u32 flags at 8, u32 UID at 12.
pub const MADT_TYPE_LOCAL_X2APIC: u8 = 9;
pub const MADT_TYPE_X2APIC_NMI: u8 = 0xa;
const LAPIC_UID: usize = 2;
const LAPIC_ID: usize = 3;
const LAPIC_FLAGS: usize = 4;
const X2APIC_ID: usize = 4;
const X2APIC_FLAGS: usize = 8;
const X2APIC_UID: usize = 12;
pub const MADT_X2APIC_LEN: usize = 16;
/// Local APIC flags bit 0: the processor is usable now.
pub const LAPIC_ENABLED: u32 = 1 << 0;
/// Local APIC flags bit 1: may be enabled at run time (hot-add).
pub const LAPIC_ONLINE_CAPABLE: u32 = 1 << 1;
/// APIC IDs that name no processor (Linux skips such entries).
const INVALID_XAPIC_ID: u32 = 0xff;
const INVALID_X2APIC_ID: u32 = 0xffff_ffff;

/// Which host CPUs dom0's vCPUs are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cpus<'a> {
    /// The first `n` enabled processors, in MADT order.
    First(u32),
    /// Exactly these APIC IDs, vCPU `i` = `ids[i]` (each must be an enabled
    /// processor in the host MADT).
    ApicIds(&'a [u32]),
    /// These APIC IDs; those the host MADT has keep its entry, the others
    /// (vCPUs beyond the host's CPUs) get a new enabled Local x2APIC entry
    /// with an ACPI UID above the host's.
    ApicIdsOrNew(&'a [u32]),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Zero vCPUs asked for.
    NoVcpus,
    /// `out_base` not 16-byte aligned, or the blob would wrap.
    BadBase(u64),
    BadRsdpSignature,
    /// The ACPI 1.0 checksum (first 20 bytes).
    BadRsdpChecksum,
    /// The extended checksum (all 36 bytes) of a revision 2+ RSDP.
    BadRsdpExtendedChecksum,
    /// Neither 0 (ACPI 1.0) nor 2 or later.
    BadRsdpRevision(u8),
    /// The RSDP names no RSDT and no XSDT.
    NoRootTable,
    /// `len` bytes at `addr` are not readable memory (or wrap).
    Unreadable {
        addr: u64,
        len: u64,
    },
    /// The root table is not what the RSDP said.
    BadRootSignature {
        addr: u64,
        found: Sig,
    },
    /// A table header's length is below 36 (or 44 for a MADT), or above
    /// [`MAX_TABLE_LEN`] for a table read whole.
    BadTableLength {
        sig: Sig,
        addr: u64,
        len: u32,
    },
    BadChecksum {
        sig: Sig,
        addr: u64,
    },
    TooManyRootEntries(usize),
    NoMadt,
    /// A MADT entry at byte `offset` is shorter than its header or its
    /// structure, or runs past the table.
    BadMadtEntry {
        offset: usize,
        kind: u8,
        len: u8,
    },
    /// Fewer enabled processors in the MADT than vCPUs asked for.
    TooFewCpus {
        enabled: u32,
        wanted: u32,
    },
    /// [`Cpus::ApicIds`]: no enabled processor has this APIC ID.
    NoSuchCpu(u32),
    /// [`Cpus::ApicIds`]: an APIC ID given twice.
    DuplicateApicId(u32),
    /// The blob at `out_base` would overwrite a host table it refers to.
    Overlap {
        sig: Sig,
        addr: u64,
    },
}

/// Prints a signature, non-ASCII bytes as `?`.
pub struct SigName<'a>(pub &'a Sig);

impl core::fmt::Display for SigName<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for &c in self.0 {
            let c = if c.is_ascii_graphic() || c == b' ' {
                c as char
            } else {
                '?'
            };
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::NoVcpus => write!(f, "no vCPUs"),
            Error::BadBase(b) => write!(f, "output base {b:#x} not 16-byte aligned or wraps"),
            Error::BadRsdpSignature => write!(f, "RSDP: bad signature"),
            Error::BadRsdpChecksum => write!(f, "RSDP: bad checksum"),
            Error::BadRsdpExtendedChecksum => write!(f, "RSDP: bad extended checksum"),
            Error::BadRsdpRevision(r) => write!(f, "RSDP: unknown revision {r}"),
            Error::NoRootTable => write!(f, "RSDP: no RSDT and no XSDT"),
            Error::Unreadable { addr, len } => write!(f, "cannot read {len:#x} bytes at {addr:#x}"),
            Error::BadRootSignature { addr, found } => {
                write!(f, "root table at {addr:#x} is {}", SigName(found))
            }
            Error::BadTableLength { sig, addr, len } => {
                write!(f, "{} at {addr:#x}: bad length {len:#x}", SigName(sig))
            }
            Error::BadChecksum { sig, addr } => {
                write!(f, "{} at {addr:#x}: bad checksum", SigName(sig))
            }
            Error::TooManyRootEntries(n) => {
                write!(f, "{n} root table entries (at most {MAX_ROOT_ENTRIES})")
            }
            Error::NoMadt => write!(f, "no MADT"),
            Error::BadMadtEntry { offset, kind, len } => {
                write!(
                    f,
                    "MADT entry at {offset:#x} (type {kind:#x}, length {len}) malformed"
                )
            }
            Error::TooFewCpus { enabled, wanted } => {
                write!(
                    f,
                    "{wanted} vCPUs but the MADT has {enabled} enabled processors"
                )
            }
            Error::NoSuchCpu(id) => write!(f, "no enabled processor with APIC ID {id:#x}"),
            Error::DuplicateApicId(id) => write!(f, "APIC ID {id:#x} given twice"),
            Error::Overlap { sig, addr } => {
                write!(f, "output overlaps {} at {addr:#x}", SigName(sig))
            }
        }
    }
}

/// What became of one host root-table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Listed at its host address.
    Kept,
    /// Replaced by the rewritten copy at this address.
    Replaced(u64),
    /// Not listed: hidden (DMAR, IVRS) or a second MADT.
    Dropped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableEntry {
    pub sig: Sig,
    /// Host-physical address.
    pub addr: u64,
    pub action: Action,
}

/// The processor entry dom0's vCPU `i` gets (`Rebuilt::vcpus[i]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuApic {
    pub apic_id: u32,
    pub acpi_uid: u32,
    /// From a Local x2APIC entry (else a Processor Local APIC entry).
    pub x2apic: bool,
}

/// The new tables, laid out to be copied to `base`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rebuilt {
    pub base: u64,
    pub bytes: Vec<u8>,
    /// Goes in `hvm_start_info.rsdp_paddr`.
    pub rsdp_addr: u64,
    pub xsdt_addr: u64,
    pub madt_addr: u64,
    /// The processors the new MADT lists, in vCPU order.
    pub vcpus: Vec<VcpuApic>,
    /// Enabled processors (distinct valid APIC IDs) in the host MADT.
    pub host_cpus: u32,
    /// Every non-null host root entry, in order, for the log.
    pub tables: Vec<TableEntry>,
}

impl Rebuilt {
    pub fn nr_vcpus(&self) -> u32 {
        self.vcpus.len() as u32
    }
}

fn get_u32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn get_u64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}
fn put_u32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], o: usize, v: u64) {
    b[o..o + 8].copy_from_slice(&v.to_le_bytes());
}
fn sig_of(b: &[u8]) -> Sig {
    [b[0], b[1], b[2], b[3]]
}
fn fix_checksum(b: &mut [u8], at: usize) {
    b[at] = 0;
    b[at] = 0u8.wrapping_sub(sum(b));
}
fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

fn read_bytes(read: PhysRead, addr: u64, len: usize) -> Result<Vec<u8>, Error> {
    let bad = Error::Unreadable {
        addr,
        len: len as u64,
    };
    if addr.checked_add(len as u64).is_none() {
        return Err(bad);
    }
    let mut v = alloc::vec![0u8; len];
    if read(addr, &mut v) {
        Ok(v)
    } else {
        Err(bad)
    }
}

/// A table's header: its signature and length (at least 36, and the table
/// must not wrap the address space).
fn read_header(read: PhysRead, addr: u64) -> Result<(Sig, u32), Error> {
    let h = read_bytes(read, addr, HEADER_LEN)?;
    let (sig, len) = (sig_of(&h), get_u32(&h, SDT_LENGTH));
    if (len as usize) < HEADER_LEN {
        return Err(Error::BadTableLength { sig, addr, len });
    }
    if addr.checked_add(len as u64).is_none() {
        return Err(Error::Unreadable {
            addr,
            len: len as u64,
        });
    }
    Ok((sig, len))
}

/// A whole table of at least `min_len` bytes, checksum checked.
fn read_table(read: PhysRead, addr: u64, min_len: usize) -> Result<Vec<u8>, Error> {
    let (sig, len) = read_header(read, addr)?;
    if (len as usize) < min_len || len > MAX_TABLE_LEN {
        return Err(Error::BadTableLength { sig, addr, len });
    }
    let t = read_bytes(read, addr, len as usize)?;
    if sum(&t) != 0 {
        return Err(Error::BadChecksum { sig, addr });
    }
    Ok(t)
}

/// The host RSDP: the bytes that count (20 or 36) and its OEM ID.
struct HostRsdp {
    revision: u8,
    oem_id: [u8; OEM_ID_LEN],
    rsdt: u32,
    xsdt: u64,
    len: usize,
}

fn read_rsdp(read: PhysRead, addr: u64) -> Result<HostRsdp, Error> {
    let v1 = read_bytes(read, addr, RSDP_V1_LEN)?;
    if &v1[..RSDP_SIGNATURE.len()] != RSDP_SIGNATURE {
        return Err(Error::BadRsdpSignature);
    }
    if sum(&v1) != 0 {
        return Err(Error::BadRsdpChecksum);
    }
    let revision = v1[RSDP_REVISION];
    let mut oem_id = [0u8; OEM_ID_LEN];
    oem_id.copy_from_slice(&v1[RSDP_OEM_ID..RSDP_OEM_ID + OEM_ID_LEN]);
    let rsdt = get_u32(&v1, RSDP_RSDT_ADDR);
    match revision {
        RSDP_REV_ACPI1 => Ok(HostRsdp {
            revision,
            oem_id,
            rsdt,
            xsdt: 0,
            len: RSDP_V1_LEN,
        }),
        r if r >= RSDP_REV_ACPI2 => {
            // The extended checksum covers the 36 bytes ACPI 2.0 defines
            // (as ACPICA checks it), whatever the length field says.
            let v2 = read_bytes(read, addr, RSDP_LEN)?;
            if sum(&v2) != 0 {
                return Err(Error::BadRsdpExtendedChecksum);
            }
            Ok(HostRsdp {
                revision,
                oem_id,
                rsdt,
                xsdt: get_u64(&v2, RSDP_XSDT_ADDR),
                len: RSDP_LEN,
            })
        }
        r => Err(Error::BadRsdpRevision(r)),
    }
}

/// One processor entry of the host MADT.
struct Proc {
    offset: usize,
    len: usize,
    vcpu: VcpuApic,
}

/// The host MADT filtered: the header, then the chosen processor entries
/// in vCPU order, then every non-processor entry in host order.
fn rewrite_madt(host: &[u8], cpus: Cpus) -> Result<(Vec<u8>, Vec<VcpuApic>, u32), Error> {
    let mut procs: Vec<Proc> = Vec::new();
    let mut others: Vec<(usize, usize)> = Vec::new();
    let mut off = MADT_HEADER_LEN;
    while off < host.len() {
        let bad = |kind, len| Error::BadMadtEntry {
            offset: off,
            kind,
            len,
        };
        if host.len() - off < MADT_ENTRY_HEADER_LEN {
            return Err(bad(host[off], 0));
        }
        let (kind, elen) = (host[off + MADT_ENTRY_TYPE], host[off + MADT_ENTRY_LEN]);
        let len = elen as usize;
        if len < MADT_ENTRY_HEADER_LEN || len > host.len() - off {
            return Err(bad(kind, elen));
        }
        let e = &host[off..off + len];
        let p = match kind {
            MADT_TYPE_LOCAL_APIC => {
                if len < MADT_LAPIC_LEN {
                    return Err(bad(kind, elen));
                }
                let id = e[LAPIC_ID] as u32;
                (id != INVALID_XAPIC_ID).then_some((
                    get_u32(e, LAPIC_FLAGS),
                    VcpuApic {
                        apic_id: id,
                        acpi_uid: e[LAPIC_UID] as u32,
                        x2apic: false,
                    },
                ))
            }
            MADT_TYPE_LOCAL_X2APIC => {
                if len < MADT_X2APIC_LEN {
                    return Err(bad(kind, elen));
                }
                let id = get_u32(e, X2APIC_ID);
                (id != INVALID_X2APIC_ID).then_some((
                    get_u32(e, X2APIC_FLAGS),
                    VcpuApic {
                        apic_id: id,
                        acpi_uid: get_u32(e, X2APIC_UID),
                        x2apic: true,
                    },
                ))
            }
            _ => {
                others.push((off, len));
                None
            }
        };
        // Usable processors only, the first entry for each APIC ID.
        if let Some((flags, vcpu)) = p {
            if flags & LAPIC_ENABLED != 0 && !procs.iter().any(|q| q.vcpu.apic_id == vcpu.apic_id) {
                procs.push(Proc {
                    offset: off,
                    len,
                    vcpu,
                });
            }
        }
        off += len;
    }
    let enabled = procs.len() as u32;
    // Each vCPU: the host entry it copies, or a new x2APIC entry's values.
    let chosen: Vec<(Option<&Proc>, VcpuApic)> = match cpus {
        Cpus::First(0) => return Err(Error::NoVcpus),
        Cpus::First(n) if n > enabled => {
            return Err(Error::TooFewCpus { enabled, wanted: n });
        }
        Cpus::First(n) => procs
            .iter()
            .take(n as usize)
            .map(|p| (Some(p), p.vcpu))
            .collect(),
        Cpus::ApicIds([]) | Cpus::ApicIdsOrNew([]) => return Err(Error::NoVcpus),
        Cpus::ApicIds(ids) | Cpus::ApicIdsOrNew(ids) => {
            let new_ok = matches!(cpus, Cpus::ApicIdsOrNew(_));
            let mut next_uid = procs.iter().map(|p| p.vcpu.acpi_uid + 1).max().unwrap_or(0);
            let mut v = Vec::with_capacity(ids.len());
            for (i, &id) in ids.iter().enumerate() {
                if ids[..i].contains(&id) {
                    return Err(Error::DuplicateApicId(id));
                }
                match procs.iter().find(|p| p.vcpu.apic_id == id) {
                    Some(p) => v.push((Some(p), p.vcpu)),
                    None if new_ok && id != INVALID_X2APIC_ID => {
                        v.push((
                            None,
                            VcpuApic {
                                apic_id: id,
                                acpi_uid: next_uid,
                                x2apic: true,
                            },
                        ));
                        next_uid += 1;
                    }
                    None => return Err(Error::NoSuchCpu(id)),
                }
            }
            v
        }
    };
    let mut out = Vec::with_capacity(host.len() + 16 * chosen.len());
    out.extend_from_slice(&host[..MADT_HEADER_LEN]);
    for (p, vcpu) in &chosen {
        match p {
            Some(p) => out.extend_from_slice(&host[p.offset..p.offset + p.len]),
            None => {
                let mut e = [0u8; MADT_X2APIC_LEN];
                e[MADT_ENTRY_TYPE] = MADT_TYPE_LOCAL_X2APIC;
                e[MADT_ENTRY_LEN] = MADT_X2APIC_LEN as u8;
                put_u32(&mut e, X2APIC_ID, vcpu.apic_id);
                put_u32(&mut e, X2APIC_FLAGS, LAPIC_ENABLED);
                put_u32(&mut e, X2APIC_UID, vcpu.acpi_uid);
                out.extend_from_slice(&e);
            }
        }
    }
    for &(o, l) in &others {
        out.extend_from_slice(&host[o..o + l]);
    }
    let len = out.len() as u32;
    put_u32(&mut out, SDT_LENGTH, len);
    fix_checksum(&mut out, SDT_CHECKSUM);
    Ok((out, chosen.iter().map(|(_, v)| *v).collect(), enabled))
}

/// [`rebuild_for`] with the first `nr_vcpus` enabled host processors.
pub fn rebuild(
    read: PhysRead,
    rsdp_phys: u64,
    nr_vcpus: u32,
    out_base: u64,
) -> Result<Rebuilt, Error> {
    rebuild_for(read, rsdp_phys, Cpus::First(nr_vcpus), out_base)
}

/// Reads the host's tables from the RSDP at `rsdp_phys` and builds dom0's
/// RSDP, XSDT and MADT, to be copied to `out_base` (see the module docs).
pub fn rebuild_for(
    read: PhysRead,
    rsdp_phys: u64,
    cpus: Cpus,
    out_base: u64,
) -> Result<Rebuilt, Error> {
    if matches!(
        cpus,
        Cpus::First(0) | Cpus::ApicIds([]) | Cpus::ApicIdsOrNew([])
    ) {
        return Err(Error::NoVcpus);
    }
    if !out_base.is_multiple_of(TABLE_ALIGN) {
        return Err(Error::BadBase(out_base));
    }
    let rsdp = read_rsdp(read, rsdp_phys)?;
    let (root_addr, root_sig, entry_len) = if rsdp.xsdt != 0 {
        (rsdp.xsdt, SIG_XSDT, XSDT_ENTRY_LEN)
    } else if rsdp.rsdt != 0 {
        (rsdp.rsdt as u64, SIG_RSDT, RSDT_ENTRY_LEN)
    } else {
        return Err(Error::NoRootTable);
    };
    let root = read_table(read, root_addr, HEADER_LEN)?;
    if sig_of(&root) != root_sig {
        return Err(Error::BadRootSignature {
            addr: root_addr,
            found: sig_of(&root),
        });
    }
    // A trailing partial entry is ignored, as ACPICA and the `acpi` crate do.
    let n = (root.len() - HEADER_LEN) / entry_len;
    if n > MAX_ROOT_ENTRIES {
        return Err(Error::TooManyRootEntries(n));
    }
    // Host memory the tables refer to: the blob must not overwrite it.
    let mut extents: Vec<(Sig, u64, u64)> = alloc::vec![
        (*b"RSD ", rsdp_phys, rsdp.len as u64),
        (root_sig, root_addr, root.len() as u64),
    ];
    let mut tables = Vec::new();
    let mut madt: Option<Vec<u8>> = None;
    for i in 0..n {
        let o = HEADER_LEN + i * entry_len;
        let addr = if entry_len == XSDT_ENTRY_LEN {
            get_u64(&root, o)
        } else {
            get_u32(&root, o) as u64
        };
        if addr == 0 {
            continue; // a null entry (ACPICA skips them too)
        }
        let (sig, len) = read_header(read, addr)?;
        extents.push((sig, addr, len as u64));
        let action = if HIDDEN.contains(&sig) {
            Action::Dropped
        } else if sig == SIG_MADT {
            if madt.is_none() {
                // Its new address is known once the XSDT's size is.
                madt = Some(read_table(read, addr, MADT_HEADER_LEN)?);
                Action::Replaced(0)
            } else {
                Action::Dropped
            }
        } else {
            Action::Kept
        };
        tables.push(TableEntry { sig, addr, action });
    }
    let host_madt = madt.ok_or(Error::NoMadt)?;
    let (new_madt, vcpus, host_cpus) = rewrite_madt(&host_madt, cpus)?;

    let listed = tables
        .iter()
        .filter(|t| t.action != Action::Dropped)
        .count();
    let xsdt_len = HEADER_LEN + XSDT_ENTRY_LEN * listed;
    let madt_off = align_up(XSDT_OFFSET + xsdt_len as u64, TABLE_ALIGN);
    let total = madt_off + new_madt.len() as u64;
    let end = out_base
        .checked_add(total)
        .ok_or(Error::BadBase(out_base))?;
    for &(sig, addr, len) in &extents {
        if addr < end && out_base < addr.saturating_add(len) {
            return Err(Error::Overlap { sig, addr });
        }
    }
    let (rsdp_addr, xsdt_addr) = (out_base + RSDP_OFFSET, out_base + XSDT_OFFSET);
    let madt_addr = out_base + madt_off;
    for t in &mut tables {
        if let Action::Replaced(a) = &mut t.action {
            *a = madt_addr;
        }
    }

    // XSDT: the host root table's header (OEM fields, creator) with the
    // XSDT signature and revision, then the entries.
    let mut xsdt = alloc::vec![0u8; xsdt_len];
    xsdt[..HEADER_LEN].copy_from_slice(&root[..HEADER_LEN]);
    xsdt[..4].copy_from_slice(&SIG_XSDT);
    put_u32(&mut xsdt, SDT_LENGTH, xsdt_len as u32);
    xsdt[SDT_REVISION] = XSDT_REVISION;
    let listed_addrs = tables.iter().filter_map(|t| match t.action {
        Action::Kept => Some(t.addr),
        Action::Replaced(a) => Some(a),
        Action::Dropped => None,
    });
    for (i, a) in listed_addrs.enumerate() {
        put_u64(&mut xsdt, HEADER_LEN + i * XSDT_ENTRY_LEN, a);
    }
    fix_checksum(&mut xsdt, SDT_CHECKSUM);

    // RSDP, revision 2: the host's OEM ID, no RSDT, the new XSDT.
    let mut rsdp_new = [0u8; RSDP_LEN];
    rsdp_new[..RSDP_SIGNATURE.len()].copy_from_slice(RSDP_SIGNATURE);
    rsdp_new[RSDP_OEM_ID..RSDP_OEM_ID + OEM_ID_LEN].copy_from_slice(&rsdp.oem_id);
    rsdp_new[RSDP_REVISION] = RSDP_REV_ACPI2;
    put_u32(&mut rsdp_new, RSDP_LENGTH, RSDP_LEN as u32);
    put_u64(&mut rsdp_new, RSDP_XSDT_ADDR, xsdt_addr);
    fix_checksum(&mut rsdp_new[..RSDP_V1_LEN], RSDP_CHECKSUM);
    fix_checksum(&mut rsdp_new, RSDP_EXT_CHECKSUM);

    let mut bytes = alloc::vec![0u8; total as usize];
    for (off, t) in [
        (RSDP_OFFSET, &rsdp_new[..]),
        (XSDT_OFFSET, &xsdt[..]),
        (madt_off, &new_madt[..]),
    ] {
        bytes[off as usize..off as usize + t.len()].copy_from_slice(t);
    }
    log::debug!(
        "hostacpi: host RSDP rev {} at {rsdp_phys:#x}, {} at {root_addr:#x}: {} tables, \
         MADT {}/{} CPUs",
        rsdp.revision,
        SigName(&root_sig),
        tables.len(),
        vcpus.len(),
        host_cpus
    );
    Ok(Rebuilt {
        base: out_base,
        bytes,
        rsdp_addr,
        xsdt_addr,
        madt_addr,
        vcpus,
        host_cpus,
        tables,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::ptr::NonNull;
    use std::collections::BTreeMap;
    use std::rc::Rc;
    use std::vec;

    /// Fake physical memory: disjoint regions, address -> bytes.
    #[derive(Clone, Default)]
    struct Mem(BTreeMap<u64, Vec<u8>>);

    impl Mem {
        fn put(&mut self, addr: u64, b: &[u8]) {
            self.0.insert(addr, b.to_vec());
        }
        fn region(&self, addr: u64, len: usize) -> Option<&[u8]> {
            let (&start, bytes) = self.0.range(..=addr).next_back()?;
            let off = (addr - start) as usize;
            (off.checked_add(len)? <= bytes.len()).then(|| &bytes[off..off + len])
        }
        fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
            match self.region(addr, buf.len()) {
                Some(b) => {
                    buf.copy_from_slice(b);
                    true
                }
                None => false,
            }
        }
        fn table(&self, addr: u64) -> &[u8] {
            let len = get_u32(self.region(addr, 36).unwrap(), 4) as usize;
            self.region(addr, len).unwrap()
        }
    }

    fn sdt(sig: &[u8; 4], rev: u8, body: &[u8]) -> Vec<u8> {
        let mut t = vec![0u8; HEADER_LEN];
        t[..4].copy_from_slice(sig);
        t[8] = rev;
        t[10..16].copy_from_slice(b"HOSTOE");
        t[16..24].copy_from_slice(b"HOSTTBL ");
        t.extend_from_slice(body);
        let len = t.len() as u32;
        put_u32(&mut t, 4, len);
        fix_checksum(&mut t, 9);
        t
    }
    fn lapic(uid: u8, id: u8, flags: u32) -> Vec<u8> {
        let mut e = vec![0, 8, uid, id];
        e.extend_from_slice(&flags.to_le_bytes());
        e
    }
    fn x2apic(id: u32, uid: u32, flags: u32) -> Vec<u8> {
        let mut e = vec![9, 16, 0, 0];
        for v in [id, flags, uid] {
            e.extend_from_slice(&v.to_le_bytes());
        }
        e
    }
    fn ioapic(id: u8, addr: u32, gsi: u32) -> Vec<u8> {
        let mut e = vec![1, 12, id, 0];
        e.extend_from_slice(&addr.to_le_bytes());
        e.extend_from_slice(&gsi.to_le_bytes());
        e
    }
    fn iso(src: u8, gsi: u32, flags: u16) -> Vec<u8> {
        let mut e = vec![2, 10, 0, src];
        e.extend_from_slice(&gsi.to_le_bytes());
        e.extend_from_slice(&flags.to_le_bytes());
        e
    }
    fn lapic_nmi(uid: u8, lint: u8) -> Vec<u8> {
        vec![4, 6, uid, 5, 0, lint]
    }
    fn x2apic_nmi(uid: u32, lint: u8) -> Vec<u8> {
        let mut e = vec![0xa, 12, 5, 0];
        e.extend_from_slice(&uid.to_le_bytes());
        e.extend_from_slice(&[lint, 0, 0, 0]);
        e
    }
    fn madt(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![];
        body.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT
        for e in entries {
            body.extend_from_slice(e);
        }
        sdt(b"APIC", 5, &body)
    }
    fn rsdp(rev: u8, rsdt: u32, xsdt: u64) -> Vec<u8> {
        let mut r = vec![0u8; 36];
        r[..8].copy_from_slice(b"RSD PTR ");
        r[9..15].copy_from_slice(b"HOSTOE");
        r[15] = rev;
        put_u32(&mut r, 16, rsdt);
        put_u32(&mut r, 20, 36);
        put_u64(&mut r, 24, xsdt);
        fix_checksum(&mut r[..20], 8);
        fix_checksum(&mut r, 32);
        if rev == 0 {
            r.truncate(20);
        }
        r
    }
    fn xsdt(addrs: &[u64]) -> Vec<u8> {
        let body: Vec<u8> = addrs.iter().flat_map(|a| a.to_le_bytes()).collect();
        sdt(b"XSDT", 1, &body)
    }
    fn rsdt(addrs: &[u64]) -> Vec<u8> {
        let body: Vec<u8> = addrs
            .iter()
            .flat_map(|&a| (a as u32).to_le_bytes())
            .collect();
        sdt(b"RSDT", 1, &body)
    }

    const RSDP: u64 = 0xe_0000;
    const XSDT: u64 = 0x7fe0_0000;
    const RSDT: u64 = 0x7fe0_0100;
    const FACP: u64 = 0x7fe1_0000;
    const DSDT: u64 = 0x7fe2_0000;
    const MADT: u64 = 0x7fe3_0000;
    const HPET: u64 = 0x7fe4_0000;
    const DMAR: u64 = 0x7fe5_0000;
    const SSDT: u64 = 0x7fe6_0000;
    const MCFG: u64 = 0x7fe7_0000;
    const IVRS: u64 = 0x7fe8_0000;
    const OUT: u64 = 0x9f000;
    /// The root entries, in order.
    const ROOT: [u64; 7] = [FACP, MADT, HPET, DMAR, SSDT, MCFG, IVRS];
    /// Enabled processors' APIC IDs in MADT order.
    const ENABLED: [u32; 4] = [0, 2, 0x100, 8];

    /// The host MADT's processor and other entries.
    fn host_madt_entries() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let procs = vec![
            lapic(0, 0, LAPIC_ENABLED),
            lapic(1, 2, LAPIC_ENABLED),
            lapic(2, 4, 0),                    // disabled
            lapic(3, 6, LAPIC_ONLINE_CAPABLE), // hot-pluggable
            x2apic(0x100, 4, LAPIC_ENABLED),
            lapic(5, 0xff, LAPIC_ENABLED), // invalid ID
            lapic(6, 8, LAPIC_ENABLED),
            x2apic(8, 6, LAPIC_ENABLED), // same CPU again
        ];
        let others = vec![
            ioapic(1, 0xfec0_0000, 0),
            iso(0, 2, 0),
            iso(9, 9, 0xd),
            lapic_nmi(0xff, 1),
            x2apic_nmi(0xffff_ffff, 1),
            vec![0x7f, 6, 1, 2, 3, 4], // reserved type: kept as is
        ];
        (procs, others)
    }

    /// A host with processors and other entries interleaved.
    fn host_with(rsdp_rev: u8) -> Mem {
        let (procs, others) = host_madt_entries();
        let mut entries = vec![];
        for i in 0..procs.len().max(others.len()) {
            entries.extend(procs.get(i).cloned());
            entries.extend(others.get(i).cloned());
        }
        let mut m = Mem::default();
        let mut fadt_body = vec![0u8; 276 - 36];
        put_u32(&mut fadt_body, 40 - 36, DSDT as u32);
        put_u32(&mut fadt_body, 112 - 36, 1 << 20); // HW_REDUCED_ACPI
        put_u64(&mut fadt_body, 140 - 36, DSDT);
        m.put(FACP, &sdt(b"FACP", 6, &fadt_body));
        m.put(DSDT, &sdt(b"DSDT", 2, &[]));
        m.put(MADT, &madt(&entries));
        m.put(HPET, &sdt(b"HPET", 1, &[0; 20]));
        m.put(DMAR, &sdt(b"DMAR", 1, &[0; 12]));
        m.put(SSDT, &sdt(b"SSDT", 2, &[0x10, 0x05]));
        m.put(MCFG, &sdt(b"MCFG", 1, &[0; 24]));
        m.put(IVRS, &sdt(b"IVRS", 2, &[0; 12]));
        m.put(XSDT, &xsdt(&ROOT));
        m.put(RSDT, &rsdt(&ROOT));
        let x = if rsdp_rev >= 2 { XSDT } else { 0 };
        m.put(RSDP, &rsdp(rsdp_rev, RSDT as u32, x));
        m
    }
    fn host() -> Mem {
        host_with(2)
    }

    fn run(m: &Mem, cpus: Cpus) -> Result<Rebuilt, Error> {
        rebuild_for(&|a, b| m.read(a, b), RSDP, cpus, OUT)
    }

    /// The blob placed in memory next to the host's tables.
    fn with_blob(m: &Mem, r: &Rebuilt) -> Mem {
        let mut m = m.clone();
        m.put(r.base, &r.bytes);
        m
    }

    fn entries(madt: &[u8]) -> Vec<&[u8]> {
        let mut v = vec![];
        let mut o = MADT_HEADER_LEN;
        while o < madt.len() {
            let l = madt[o + 1] as usize;
            v.push(&madt[o..o + l]);
            o += l;
        }
        assert_eq!(o, madt.len());
        v
    }

    fn xsdt_entries(t: &[u8]) -> Vec<u64> {
        t[36..].chunks(8).map(|c| get_u64(c, 0)).collect()
    }

    #[test]
    fn keeps_first_n_enabled_cpus_and_every_other_entry() {
        let h = host();
        let (_, others) = host_madt_entries();
        for n in 1..=4u32 {
            let r = run(&h, Cpus::First(n)).unwrap();
            assert_eq!(r.nr_vcpus(), n);
            assert_eq!(r.host_cpus, 4);
            let ids: Vec<u32> = r.vcpus.iter().map(|v| v.apic_id).collect();
            assert_eq!(ids, ENABLED[..n as usize]);
            assert_eq!(r.vcpus[2.min(n as usize - 1)].x2apic, n >= 3);
            let m = with_blob(&h, &r);
            let t = m.table(r.madt_addr);
            assert_eq!(sum(t), 0);
            assert_eq!(&t[..4], b"APIC");
            let host = h.table(MADT);
            assert_eq!(t[8], host[8], "revision kept");
            assert_eq!(&t[10..36], &host[10..36], "OEM fields kept");
            assert_eq!(&t[36..44], &host[36..44], "LAPIC address and flags kept");
            let es = entries(t);
            let (p, o) = es.split_at(n as usize);
            for (e, &id) in p.iter().zip(&ENABLED) {
                match e[0] {
                    0 => assert_eq!((e[3] as u32, get_u32(e, 4)), (id, 1)),
                    9 => assert_eq!((get_u32(e, 4), get_u32(e, 8)), (id, 1)),
                    k => panic!("type {k} among processors"),
                }
            }
            assert_eq!(o, others.iter().map(|e| &e[..]).collect::<Vec<_>>());
        }
    }

    #[test]
    fn checksums_layout_and_table_actions() {
        let h = host();
        let r = run(&h, Cpus::First(2)).unwrap();
        assert_eq!(r.base, OUT);
        assert_eq!(r.rsdp_addr, OUT);
        assert_eq!(r.xsdt_addr, OUT + 0x40);
        assert_eq!(r.madt_addr % 16, 0);
        let m = with_blob(&h, &r);
        let rsdp = m.region(r.rsdp_addr, 36).unwrap();
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert_eq!((sum(&rsdp[..20]), sum(rsdp)), (0, 0));
        assert_eq!(rsdp[15], 2);
        assert_eq!(&rsdp[9..15], b"HOSTOE");
        assert_eq!(get_u32(rsdp, 16), 0, "no RSDT");
        assert_eq!(get_u32(rsdp, 20), 36);
        assert_eq!(get_u64(rsdp, 24), r.xsdt_addr);
        let x = m.table(r.xsdt_addr);
        assert_eq!((&x[..4], x[8], sum(x)), (&b"XSDT"[..], 1, 0));
        assert_eq!(&x[10..16], b"HOSTOE");
        assert_eq!(
            xsdt_entries(x),
            [FACP, r.madt_addr, SSDT, MCFG],
            "host order, host addresses, no DMAR/IVRS"
        );
        assert_eq!(
            r.madt_addr + m.table(r.madt_addr).len() as u64,
            OUT + r.bytes.len() as u64
        );
        use Action::*;
        let acts: Vec<(Sig, u64, Action)> =
            r.tables.iter().map(|t| (t.sig, t.addr, t.action)).collect();
        assert_eq!(
            acts,
            [
                (*b"FACP", FACP, Kept),
                (*b"APIC", MADT, Replaced(r.madt_addr)),
                (*b"HPET", HPET, Dropped),
                (*b"DMAR", DMAR, Dropped),
                (*b"SSDT", SSDT, Kept),
                (*b"MCFG", MCFG, Kept),
                (*b"IVRS", IVRS, Dropped),
            ]
        );
        // The convenience wrapper is the same thing.
        assert_eq!(rebuild(&|a, b| h.read(a, b), RSDP, 2, OUT), Ok(r));
    }

    #[test]
    fn rsdt_only_host() {
        let h = host_with(0);
        let r = run(&h, Cpus::First(4)).unwrap();
        let m = with_blob(&h, &r);
        let x = m.table(r.xsdt_addr);
        assert_eq!(sum(x), 0);
        assert_eq!(xsdt_entries(x), [FACP, r.madt_addr, SSDT, MCFG]);
        assert_eq!(m.region(r.rsdp_addr, 36).unwrap()[15], 2, "upgraded");
        // Revision 2 naming no XSDT: the RSDT too.
        let mut h = host();
        h.put(RSDP, &rsdp(2, RSDT as u32, 0));
        assert_eq!(run(&h, Cpus::First(4)).unwrap().bytes, r.bytes);
    }

    #[test]
    fn xsdt_preferred_over_rsdt() {
        let mut h = host();
        h.put(RSDT, &rsdt(&[FACP, MADT]));
        let r = run(&h, Cpus::First(1)).unwrap();
        let m = with_blob(&h, &r);
        assert_eq!(xsdt_entries(m.table(r.xsdt_addr)).len(), 4);
    }

    #[test]
    fn null_entries_and_second_madt() {
        let mut h = host();
        let madt2 = 0x7fe9_0000;
        h.put(madt2, &madt(&[lapic(0, 0, 1)]));
        h.put(XSDT, &xsdt(&[0, FACP, MADT, madt2, 0]));
        let r = run(&h, Cpus::First(3)).unwrap();
        let m = with_blob(&h, &r);
        assert_eq!(xsdt_entries(m.table(r.xsdt_addr)), [FACP, r.madt_addr]);
        assert_eq!(r.tables[2].action, Action::Dropped);
        assert_eq!(r.nr_vcpus(), 3);
    }

    #[test]
    fn explicit_apic_ids_in_vcpu_order() {
        let h = host();
        let r = run(&h, Cpus::ApicIds(&[8, 0, 0x100])).unwrap();
        let ids: Vec<u32> = r.vcpus.iter().map(|v| v.apic_id).collect();
        assert_eq!(ids, [8, 0, 0x100]);
        assert_eq!(r.vcpus[0].acpi_uid, 6);
        let m = with_blob(&h, &r);
        let t = m.table(r.madt_addr);
        assert_eq!(sum(t), 0);
        assert_eq!(entries(t)[0], &lapic(6, 8, 1)[..]);
        assert_eq!(run(&h, Cpus::ApicIds(&[0, 4])), Err(Error::NoSuchCpu(4)));
        // More vCPUs than host CPUs: new x2APIC entries, UIDs above the host's.
        let r = run(&h, Cpus::ApicIdsOrNew(&[0, 0x200, 0x201])).unwrap();
        assert_eq!(r.vcpus.len(), 3);
        assert_eq!(r.vcpus[0].apic_id, 0);
        assert!(r.vcpus[1].x2apic && r.vcpus[1].apic_id == 0x200);
        assert!(r.vcpus[2].acpi_uid == r.vcpus[1].acpi_uid + 1);
        assert!(r.vcpus[1].acpi_uid > r.vcpus[0].acpi_uid);
        assert_eq!(run(&h, Cpus::ApicIds(&[6])), Err(Error::NoSuchCpu(6)));
        assert_eq!(run(&h, Cpus::ApicIds(&[0xff])), Err(Error::NoSuchCpu(0xff)));
        assert_eq!(
            run(&h, Cpus::ApicIds(&[2, 0, 2])),
            Err(Error::DuplicateApicId(2))
        );
        assert_eq!(run(&h, Cpus::ApicIds(&[])), Err(Error::NoVcpus));
    }

    /// Guest memory as the `acpi` crate sees it (it checks every checksum).
    #[derive(Clone)]
    struct Handler(Rc<Mem>);

    impl acpi::AcpiHandler for Handler {
        unsafe fn map_physical_region<T>(
            &self,
            phys: usize,
            size: usize,
        ) -> acpi::PhysicalMapping<Self, T> {
            let b = self
                .0
                .region(phys as u64, size)
                .expect("map outside memory");
            let ptr = NonNull::new(b.as_ptr() as *mut T).unwrap();
            // SAFETY: the bytes live as long as the Rc the handler holds.
            unsafe { acpi::PhysicalMapping::new(phys, ptr, size, size, self.clone()) }
        }
        fn unmap_physical_region<T>(_: &acpi::PhysicalMapping<Self, T>) {}
    }

    #[test]
    fn acpi_crate_parses_the_result() {
        for rev in [0, 2] {
            let h = host_with(rev);
            for n in 1..=4u32 {
                let r = run(&h, Cpus::First(n)).unwrap();
                let m = Handler(Rc::new(with_blob(&h, &r)));
                // SAFETY: the handler maps only the fake memory.
                let t = unsafe { acpi::AcpiTables::from_rsdp(m, r.rsdp_addr as usize) }.unwrap();
                assert_eq!(t.revision(), 2);
                assert!(
                    t.find_table::<acpi::hpet::HpetTable>().is_err(),
                    "HPET hidden"
                );
                assert!(t.dsdt().is_ok());
                let info = t.platform_info().unwrap();
                let p = info.processor_info.unwrap();
                let mut ids = vec![p.boot_processor.local_apic_id];
                ids.extend(p.application_processors.iter().map(|a| a.local_apic_id));
                assert_eq!(ids, ENABLED[..n as usize]);
                assert!(p
                    .application_processors
                    .iter()
                    .all(|a| a.state == acpi::platform::ProcessorState::WaitingForSipi));
                match info.interrupt_model {
                    acpi::InterruptModel::Apic(a) => {
                        assert_eq!(a.io_apics.len(), 1);
                        assert_eq!(a.interrupt_source_overrides.len(), 2);
                        assert_eq!(a.local_apic_nmi_lines.len(), 2);
                        assert!(a.also_has_legacy_pics);
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    #[test]
    fn rsdp_errors() {
        let h = host();
        let with = |r: Vec<u8>| {
            let mut m = h.clone();
            m.put(RSDP, &r);
            run(&m, Cpus::First(1))
        };
        let mut r = rsdp(2, RSDT as u32, XSDT);
        r[0] = b'X';
        assert_eq!(with(r), Err(Error::BadRsdpSignature));
        let mut r = rsdp(2, RSDT as u32, XSDT);
        r[16] ^= 1;
        assert_eq!(with(r), Err(Error::BadRsdpChecksum));
        let mut r = rsdp(2, RSDT as u32, XSDT);
        r[24] ^= 1;
        assert_eq!(with(r), Err(Error::BadRsdpExtendedChecksum));
        let mut r = rsdp(2, RSDT as u32, XSDT);
        r[15] = 1;
        fix_checksum(&mut r[..20], 8);
        assert_eq!(with(r), Err(Error::BadRsdpRevision(1)));
        assert_eq!(with(rsdp(2, 0, 0)), Err(Error::NoRootTable));
        // A revision 2 RSDP cut short after its first 20 bytes.
        let mut r = rsdp(2, RSDT as u32, XSDT);
        r.truncate(20);
        assert_eq!(
            with(r),
            Err(Error::Unreadable {
                addr: RSDP,
                len: 36
            })
        );
        assert_eq!(
            rebuild(&|a, b| h.read(a, b), 0x1234, 1, OUT),
            Err(Error::Unreadable {
                addr: 0x1234,
                len: 20
            })
        );
        assert_eq!(
            rebuild(&|a, b| h.read(a, b), u64::MAX - 3, 1, OUT),
            Err(Error::Unreadable {
                addr: u64::MAX - 3,
                len: 20
            })
        );
    }

    #[test]
    fn argument_errors() {
        let h = host();
        let rd = |a: u64, b: &mut [u8]| h.read(a, b);
        assert_eq!(rebuild(&rd, RSDP, 0, OUT), Err(Error::NoVcpus));
        assert_eq!(
            rebuild(&rd, RSDP, 5, OUT),
            Err(Error::TooFewCpus {
                enabled: 4,
                wanted: 5
            })
        );
        assert_eq!(rebuild(&rd, RSDP, 1, OUT + 8), Err(Error::BadBase(OUT + 8)));
        assert_eq!(rebuild(&rd, RSDP, 1, !15u64), Err(Error::BadBase(!15u64)));
        // The blob over the host's tables.
        assert_eq!(
            rebuild(&rd, RSDP, 1, SSDT - 0x40),
            Err(Error::Overlap {
                sig: *b"SSDT",
                addr: SSDT
            })
        );
        assert_eq!(
            rebuild(&rd, RSDP, 1, DMAR),
            Err(Error::Overlap {
                sig: *b"DMAR",
                addr: DMAR
            }),
            "even hidden tables stay intact"
        );
        assert_eq!(
            rebuild(&rd, RSDP, 1, RSDP),
            Err(Error::Overlap {
                sig: *b"RSD ",
                addr: RSDP
            })
        );
    }

    #[test]
    fn no_madt() {
        let mut h = host();
        h.put(XSDT, &xsdt(&[FACP, HPET, DMAR]));
        assert_eq!(run(&h, Cpus::First(1)), Err(Error::NoMadt));
        // A MADT with no enabled processor.
        let mut h = host();
        h.put(MADT, &madt(&[lapic(0, 0, 0), ioapic(1, 0xfec0_0000, 0)]));
        assert_eq!(
            run(&h, Cpus::First(1)),
            Err(Error::TooFewCpus {
                enabled: 0,
                wanted: 1
            })
        );
    }

    #[test]
    fn hostile_root_tables() {
        let h = host();
        let with_root = |t: Vec<u8>| {
            let mut m = h.clone();
            m.put(XSDT, &t);
            run(&m, Cpus::First(1))
        };
        // Length below the header.
        let mut t = xsdt(&ROOT);
        put_u32(&mut t, 4, 35);
        fix_checksum(&mut t, 9);
        assert_eq!(
            with_root(t),
            Err(Error::BadTableLength {
                sig: *b"XSDT",
                addr: XSDT,
                len: 35
            })
        );
        // Absurd length.
        let mut t = xsdt(&ROOT);
        put_u32(&mut t, 4, u32::MAX);
        assert_eq!(
            with_root(t),
            Err(Error::BadTableLength {
                sig: *b"XSDT",
                addr: XSDT,
                len: u32::MAX
            })
        );
        // Longer than the memory behind it.
        let mut t = xsdt(&ROOT);
        put_u32(&mut t, 4, 0x1000);
        assert_eq!(
            with_root(t),
            Err(Error::Unreadable {
                addr: XSDT,
                len: 0x1000
            })
        );
        // Bad checksum, wrong signature.
        let mut t = xsdt(&ROOT);
        t[40] ^= 0x80;
        assert_eq!(
            with_root(t),
            Err(Error::BadChecksum {
                sig: *b"XSDT",
                addr: XSDT
            })
        );
        assert_eq!(
            with_root(rsdt(&ROOT)),
            Err(Error::BadRootSignature {
                addr: XSDT,
                found: *b"RSDT"
            })
        );
        // Too many entries.
        assert_eq!(
            with_root(xsdt(&[FACP; 257])),
            Err(Error::TooManyRootEntries(257))
        );
        let mut m = h.clone();
        m.put(XSDT, &xsdt(&[FACP; 256]));
        assert_eq!(
            run(&m, Cpus::First(1)),
            Err(Error::NoMadt),
            "256 entries are fine"
        );
        // Entries into unreadable memory, or wrapping the address space.
        assert_eq!(
            with_root(xsdt(&[FACP, 0x1234_5000, MADT])),
            Err(Error::Unreadable {
                addr: 0x1234_5000,
                len: 36
            })
        );
        assert_eq!(
            with_root(xsdt(&[u64::MAX - 10])),
            Err(Error::Unreadable {
                addr: u64::MAX - 10,
                len: 36
            })
        );
        // The root table itself in unreadable memory.
        let mut m = h.clone();
        m.put(RSDP, &rsdp(2, 0, 0xdead_0000));
        assert_eq!(
            run(&m, Cpus::First(1)),
            Err(Error::Unreadable {
                addr: 0xdead_0000,
                len: 36
            })
        );
        // A trailing partial entry is ignored.
        let mut t = xsdt(&ROOT);
        t.extend_from_slice(&[0xff; 4]);
        let len = t.len() as u32;
        put_u32(&mut t, 4, len);
        fix_checksum(&mut t, 9);
        assert_eq!(with_root(t).unwrap().tables.len(), ROOT.len());
    }

    #[test]
    fn hostile_tables() {
        let h = host();
        // A table whose length wraps the address space.
        let top = u64::MAX - 0xfff;
        let mut m = h.clone();
        let mut t = sdt(b"SSDT", 2, &[]);
        put_u32(&mut t, 4, 0x2000);
        m.put(top, &t);
        m.put(XSDT, &xsdt(&[MADT, top]));
        assert_eq!(
            run(&m, Cpus::First(1)),
            Err(Error::Unreadable {
                addr: top,
                len: 0x2000
            })
        );
        // A passed-through table with a length below its header.
        let mut m = h.clone();
        let mut t = sdt(b"SSDT", 2, &[]);
        put_u32(&mut t, 4, 0);
        m.put(SSDT, &t);
        assert_eq!(
            run(&m, Cpus::First(1)),
            Err(Error::BadTableLength {
                sig: *b"SSDT",
                addr: SSDT,
                len: 0
            })
        );
        // The MADT: too short for its fixed fields, bad checksum.
        let mut m = h.clone();
        m.put(MADT, &sdt(b"APIC", 5, &[0; 4]));
        assert_eq!(
            run(&m, Cpus::First(1)),
            Err(Error::BadTableLength {
                sig: *b"APIC",
                addr: MADT,
                len: 40
            })
        );
        let mut t = madt(&[lapic(0, 0, 1)]);
        t[50] ^= 1;
        m.put(MADT, &t);
        assert_eq!(
            run(&m, Cpus::First(1)),
            Err(Error::BadChecksum {
                sig: *b"APIC",
                addr: MADT
            })
        );
    }

    #[test]
    fn hostile_madt_entries() {
        let h = host();
        let with = |es: &[Vec<u8>]| {
            let mut m = h.clone();
            m.put(MADT, &madt(es));
            run(&m, Cpus::First(1))
        };
        let bad = |offset, kind, len| Err(Error::BadMadtEntry { offset, kind, len });
        let cpu = lapic(0, 0, 1);
        assert_eq!(with(&[cpu.clone(), vec![1, 0, 0, 0]]), bad(52, 1, 0));
        assert_eq!(with(&[cpu.clone(), vec![1, 1]]), bad(52, 1, 1));
        assert_eq!(with(&[cpu.clone(), vec![2, 10, 0, 0]]), bad(52, 2, 10));
        assert_eq!(with(&[cpu.clone(), vec![0x7f]]), bad(52, 0x7f, 0));
        assert_eq!(with(&[vec![0, 4, 0, 0], cpu.clone()]), bad(44, 0, 4));
        assert_eq!(
            with(&[cpu.clone(), vec![9, 12, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]]),
            bad(52, 9, 12)
        );
        assert_eq!(with(&[vec![0, 255]]), bad(44, 0, 255));
        // Longer processor entries than the structure are accepted whole.
        let mut long = lapic(0, 3, 1);
        long[1] = 10;
        long.extend_from_slice(&[0xaa, 0xbb]);
        let r = with(&[long.clone()]).unwrap();
        assert_eq!(r.vcpus[0].apic_id, 3);
        assert!(r.bytes.windows(10).any(|w| w == &long[..]));
    }

    /// Random corruption of the host's root table and MADT: never a panic,
    /// and anything accepted is well formed.
    #[test]
    fn fuzzed_tables_never_panic() {
        let h = host();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut ok, mut err) = (0, 0);
        for _ in 0..4000 {
            let mut m = h.clone();
            for addr in [XSDT, MADT, RSDP] {
                let mut t = m.0[&addr].clone();
                for _ in 0..(rnd() % 3) {
                    let i = (rnd() as usize) % t.len();
                    t[i] = rnd() as u8;
                }
                if rnd() % 2 == 0 && addr != RSDP {
                    // Keep the checksum right so the parser looks deeper.
                    fix_checksum(&mut t, 9);
                }
                m.put(addr, &t);
            }
            let n = 1 + (rnd() % 5) as u32;
            match run(&m, Cpus::First(n)) {
                Ok(r) => {
                    ok += 1;
                    let b = with_blob(&m, &r);
                    assert_eq!(sum(b.region(r.rsdp_addr, 36).unwrap()), 0);
                    assert_eq!(sum(b.table(r.xsdt_addr)), 0);
                    let t = b.table(r.madt_addr);
                    assert_eq!(sum(t), 0);
                    let procs = entries(t).iter().filter(|e| e[0] == 0 || e[0] == 9).count();
                    assert_eq!(procs as u32, n);
                }
                Err(_) => err += 1,
            }
        }
        assert!(ok > 100 && err > 100, "ok {ok} err {err}");
    }
}
