//! The domU's ACPI tables: the least a PVH Linux needs to find its CPUs and power off.
//!
//! Xen's libxl builds a PVH domU's tables with libacpi (`libxl_x86_acpi.c`): RSDP, XSDT/RSDT,
//! the HVM FADT, a PVH DSDT, a MADT with one Processor Local APIC per vCPU (APIC ID `2 * i`,
//! enabled when the vCPU is online) and no I/O APIC. keel's domUs, like keel's dom0
//! (`hypervisor/src/domain/acpi.rs`), get a **hardware-reduced** FADT instead (no PM1 blocks,
//! no SCI, no FACS, no legacy devices), with the sleep control/status registers and the reset
//! register at the ports keel's hypervisor handles, so the same power-off path serves both:
//!
//! ```text
//! base + 0x000  RSDP  (ACPI 2.0+, 36 bytes, revision 2, both checksums, no RSDT)
//! base + 0x040  XSDT  (36 + 8 * 2: FADT, MADT)
//! base + 0x080  FADT  (revision 6, 276 bytes, HW_REDUCED_ACPI | RESET_REG_SUP)
//! base + 0x1a0  DSDT  (just `Name(_S5, Package() {5, 5})`)
//! base + 0x1d0  MADT  (44 + 8 per vCPU, up to MAX_VCPUS: fits in one page)
//! ```
//!
//! Pure code: it returns the bytes and where each table is.

use crate::abi::{AcpiHeader, AcpiRsdp, MadtFixed, MadtLocalApic};

pub const RSDP_OFFSET: u64 = 0x000;
pub const XSDT_OFFSET: u64 = 0x040;
pub const FADT_OFFSET: u64 = 0x080;
pub const DSDT_OFFSET: u64 = 0x1a0;
pub const MADT_OFFSET: u64 = 0x1d0;

/// ACPI 6.0 FADT length (through the Hypervisor Vendor Identity).
pub const FADT_LEN: usize = 276;
pub const FADT_REVISION: u8 = 6;
/// FADT Flags bit 20.
pub const FADT_HW_REDUCED_ACPI: u32 = 1 << 20;
/// FADT Flags bit 10: RESET_REG is valid.
pub const FADT_RESET_REG_SUP: u32 = 1 << 10;
/// IAPC_BOOT_ARCH: VGA not present (bit 2), CMOS RTC not present (bit 5).
pub const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;
pub const IAPC_CMOS_RTC_NOT_PRESENT: u16 = 1 << 5;
/// RESET_REG (8-bit System I/O) and RESET_VALUE.
pub const RESET_PORT: u16 = 0x0cf9;
pub const RESET_VALUE: u8 = 0x06;
/// The sleep control/status registers (a guest powers off by writing `SLP_EN | SLEEP_TYPE_S5
/// << 2` to the control register), `_S5` and the local APIC address: keel's platform, as its
/// exit handlers keep it (keel-xen-abi's `platform`, shared with the hypervisor).
pub use keel_xen_abi::platform::{
    LAPIC_ADDR, S5_AML, SLEEP_CONTROL_PORT, SLEEP_STATUS_PORT, SLEEP_TYPE_S5,
};
/// Processor Local APIC structures carry 8-bit APIC IDs: with Xen's IDs (`2 * i`) that is 128
/// vCPUs, Xen's `HVM_MAX_VCPUS`.
pub const MAX_VCPUS: u32 = 128;

const OEM_ID: [u8; 6] = *b"KEEL  ";
const OEM_TABLE_ID: [u8; 8] = *b"KEELDOMU";
const CREATOR_ID: [u8; 4] = *b"KEEL";

/// How vCPU `i`'s local APIC ID is chosen; the hypervisor's virtual LAPICs must report the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApicIds {
    /// `2 * i`, as Xen's vLAPIC and libxl's MADT (`acpi_lapic_id`).
    #[default]
    Xen,
    /// `i` (keel's dom0 tables).
    Sequential,
}

impl ApicIds {
    pub fn id(self, vcpu: u32) -> u32 {
        match self {
            ApicIds::Xen => 2 * vcpu,
            ApicIds::Sequential => vcpu,
        }
    }
}

/// The tables for a domain, to be copied to `base`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiTables {
    pub base: u64,
    pub bytes: Vec<u8>,
    pub rsdp: u64,
    pub xsdt: u64,
    pub fadt: u64,
    pub dsdt: u64,
    pub madt: u64,
}

/// Sum of the bytes mod 256 (0 for a valid checksum).
pub fn checksum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |s, &x| s.wrapping_add(x))
}

fn fix(b: &mut [u8], at: usize) {
    b[at] = 0;
    b[at] = 0u8.wrapping_sub(checksum(b));
}

fn table(sig: &[u8; 4], len: usize, revision: u8) -> Vec<u8> {
    let h = AcpiHeader {
        signature: *sig,
        length: len as u32,
        revision,
        checksum: 0,
        oem_id: OEM_ID,
        oem_table_id: OEM_TABLE_ID,
        oem_revision: 1,
        creator_id: CREATOR_ID,
        creator_revision: 1,
    };
    let mut t = vec![0u8; len];
    t[..AcpiHeader::SIZE].copy_from_slice(&h.to_bytes());
    t
}

/// Offset of the header's checksum byte.
const CSUM: usize = core::mem::offset_of!(AcpiHeader, checksum);

/// The MADT size for `max_vcpus` entries.
pub fn madt_len(max_vcpus: u32) -> usize {
    AcpiHeader::SIZE + MadtFixed::SIZE + MadtLocalApic::SIZE * max_vcpus as usize
}

/// Total size of the tables for `max_vcpus`.
pub fn tables_len(max_vcpus: u32) -> u64 {
    MADT_OFFSET + madt_len(max_vcpus) as u64
}

/// Builds the tables at guest-physical `base` (16-byte aligned, below 4 GiB) for
/// `max_vcpus` vCPUs, the first `online` of them enabled. The caller checked
/// `1 <= online <= max_vcpus <= MAX_VCPUS`.
pub fn build(base: u64, online: u32, max_vcpus: u32, ids: ApicIds) -> AcpiTables {
    assert!(base.is_multiple_of(16) && base + tables_len(max_vcpus) <= 1 << 32);
    assert!(online >= 1 && online <= max_vcpus && max_vcpus <= MAX_VCPUS);
    let at = |o: u64| base + o;

    let mut rsdp = AcpiRsdp {
        signature: *b"RSD PTR ",
        checksum: 0,
        oem_id: OEM_ID,
        revision: 2,
        rsdt_address: 0,
        length: AcpiRsdp::SIZE as u32,
        xsdt_address: at(XSDT_OFFSET),
        extended_checksum: 0,
        reserved: [0; 3],
    }
    .to_bytes();
    fix(&mut rsdp[..20], core::mem::offset_of!(AcpiRsdp, checksum));
    fix(
        &mut rsdp,
        core::mem::offset_of!(AcpiRsdp, extended_checksum),
    );

    let mut xsdt = table(b"XSDT", AcpiHeader::SIZE + 16, 1);
    xsdt[36..44].copy_from_slice(&at(FADT_OFFSET).to_le_bytes());
    xsdt[44..52].copy_from_slice(&at(MADT_OFFSET).to_le_bytes());
    fix(&mut xsdt, CSUM);

    // FADT (ACPI 6.5 §5.2.9), all zero but: DSDT (40), IAPC_BOOT_ARCH (109), Flags (112),
    // RESET_REG (116) + RESET_VALUE (128), minor version (131), X_DSDT (140),
    // SLEEP_CONTROL_REG (244), SLEEP_STATUS_REG (256), hypervisor vendor (268).
    let mut fadt = table(b"FACP", FADT_LEN, FADT_REVISION);
    fadt[40..44].copy_from_slice(&(at(DSDT_OFFSET) as u32).to_le_bytes());
    fadt[109..111]
        .copy_from_slice(&(IAPC_VGA_NOT_PRESENT | IAPC_CMOS_RTC_NOT_PRESENT).to_le_bytes());
    fadt[112..116].copy_from_slice(&(FADT_HW_REDUCED_ACPI | FADT_RESET_REG_SUP).to_le_bytes());
    let gas_io8 = |t: &mut [u8], off: usize, port: u16| {
        t[off..off + 4].copy_from_slice(&[1, 8, 0, 1]); // System I/O, 8 bits, offset 0, byte
        t[off + 4..off + 12].copy_from_slice(&(port as u64).to_le_bytes());
    };
    gas_io8(&mut fadt, 116, RESET_PORT);
    fadt[128] = RESET_VALUE;
    fadt[140..148].copy_from_slice(&at(DSDT_OFFSET).to_le_bytes());
    gas_io8(&mut fadt, 244, SLEEP_CONTROL_PORT);
    gas_io8(&mut fadt, 256, SLEEP_STATUS_PORT);
    fadt[268..276].copy_from_slice(b"KeelVMM\0");
    fix(&mut fadt, CSUM);

    let mut dsdt = table(b"DSDT", AcpiHeader::SIZE + S5_AML.len(), 2);
    dsdt[AcpiHeader::SIZE..].copy_from_slice(&S5_AML);
    fix(&mut dsdt, CSUM);

    let mut madt = table(b"APIC", madt_len(max_vcpus), 5);
    let fixed = MadtFixed {
        local_apic_address: LAPIC_ADDR,
        flags: 0,
    };
    madt[AcpiHeader::SIZE..AcpiHeader::SIZE + MadtFixed::SIZE].copy_from_slice(&fixed.to_bytes());
    for i in 0..max_vcpus {
        let e = MadtLocalApic {
            kind: 0,
            length: MadtLocalApic::SIZE as u8,
            processor_uid: i as u8,
            apic_id: ids.id(i) as u8,
            flags: u32::from(i < online),
        };
        let o = AcpiHeader::SIZE + MadtFixed::SIZE + i as usize * MadtLocalApic::SIZE;
        madt[o..o + MadtLocalApic::SIZE].copy_from_slice(&e.to_bytes());
    }
    fix(&mut madt, CSUM);

    let mut bytes = vec![0u8; tables_len(max_vcpus) as usize];
    for (o, t) in [
        (RSDP_OFFSET, &rsdp),
        (XSDT_OFFSET, &xsdt),
        (FADT_OFFSET, &fadt),
        (DSDT_OFFSET, &dsdt),
        (MADT_OFFSET, &madt),
    ] {
        bytes[o as usize..o as usize + t.len()].copy_from_slice(t);
    }
    AcpiTables {
        base,
        bytes,
        rsdp: at(RSDP_OFFSET),
        xsdt: at(XSDT_OFFSET),
        fadt: at(FADT_OFFSET),
        dsdt: at(DSDT_OFFSET),
        madt: at(MADT_OFFSET),
    }
}
