//! Minimal ACPI tables for a domain without host devices.
//!
//! A PVH guest finds its CPUs through ACPI (`hvm_start_info.rsdp_paddr`):
//! Linux reads the MADT for local APICs and, with the FADT's
//! `HW_REDUCED_ACPI` flag, expects no PM1/GPE/PM-timer blocks, no SCI, no
//! FACS and no legacy devices. These tables are the least that satisfies it:
//!
//! ```text
//! base + 0x000  RSDP  (ACPI 2.0+, 36 bytes, revision 2, both checksums)
//! base + 0x040  XSDT  (36 + 8 * 2: FADT, MADT)
//! base + 0x080  FADT  (revision 6, 276 bytes, HW_REDUCED_ACPI)
//! base + 0x1a0  DSDT  (just `Name(_S5, Package() {5, 5})`)
//! base + 0x1d0  MADT  (44 + 8 per vCPU: one enabled Processor Local APIC each)
//! ```
//!
//! Each table starts 16-byte aligned. vCPU `n` gets ACPI processor UID `n`
//! and APIC ID `n`; the virtual LAPIC must report the same IDs. The whole
//! blob is at most `4 KiB` for 255 vCPUs and should be described as
//! `XEN_HVM_MEMMAP_TYPE_ACPI` (3) in the guest's memory map.
//!
//! Pure code: it returns the bytes and where they go.

use alloc::vec::Vec;

pub const RSDP_OFFSET: u64 = 0x000;
pub const XSDT_OFFSET: u64 = 0x040;
pub const FADT_OFFSET: u64 = 0x080;
pub const DSDT_OFFSET: u64 = 0x1a0;
pub const MADT_OFFSET: u64 = 0x1d0;

pub const RSDP_LEN: usize = 36;
pub const HEADER_LEN: usize = 36;
pub const XSDT_LEN: usize = HEADER_LEN + 8 * 2;
/// ACPI 6.0+ FADT (through the Hypervisor Vendor Identity field).
pub const FADT_LEN: usize = 276;
pub const DSDT_LEN: usize = HEADER_LEN + S5_AML.len();

/// The sleep registers, `_S5` and the local APIC address domU tables
/// (keel-builder) promise too: keel-xen-abi's `platform`.
pub use keel_xen_abi::platform::{
    LAPIC_ADDR, S5_AML, SLEEP_CONTROL_PORT, SLEEP_STATUS_PORT, SLEEP_TYPE_S5, SLP_EN,
};
pub const MADT_HEADER_LEN: usize = 44;
pub const MADT_LAPIC_LEN: usize = 8;

/// The most vCPUs these tables describe (8-bit APIC IDs; no x2APIC entries).
pub const MAX_VCPUS: u32 = 255;

/// FADT flags bit 20.
pub const FADT_HW_REDUCED_ACPI: u32 = 1 << 20;
/// FADT flags bit 10: RESET_REG is valid.
pub const FADT_RESET_REG_SUP: u32 = 1 << 10;
/// The reset register (FADT RESET_REG, 8-bit System I/O) and the value a
/// guest writes there to reset: the PCI reset control port's "full reset"
/// (system reset + reset CPU), as firmware commonly describes it.
pub const RESET_PORT: u16 = 0x0cf9;
pub const RESET_VALUE: u8 = 0x06;
/// IAPC_BOOT_ARCH bit 2: VGA not present.
pub const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;
/// IAPC_BOOT_ARCH bit 5: CMOS RTC not present.
pub const IAPC_CMOS_RTC_NOT_PRESENT: u16 = 1 << 5;

const OEM_ID: &[u8; 6] = b"KEEL  ";
const OEM_TABLE_ID: &[u8; 8] = b"KEELDOM ";
const CREATOR_ID: &[u8; 4] = b"KEEL";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiBuildError {
    /// Zero vCPUs, or more than [`MAX_VCPUS`].
    BadVcpuCount(u32),
    /// The base is not 16-byte aligned, or the tables would not fit below
    /// 4 GiB (the FADT's 32-bit DSDT field and the RSDT-era readers need it).
    BadBase(u64),
}

impl core::fmt::Display for AcpiBuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AcpiBuildError::BadVcpuCount(n) => {
                write!(f, "cannot describe {n} vCPUs (1..={MAX_VCPUS})")
            }
            AcpiBuildError::BadBase(b) => {
                write!(f, "ACPI base {b:#x} not 16-byte aligned or not below 4 GiB")
            }
        }
    }
}

/// The tables, laid out to be copied to `base` in guest memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcpiBlob {
    pub base: u64,
    pub bytes: Vec<u8>,
    /// Goes in `hvm_start_info.rsdp_paddr`.
    pub rsdp_gpa: u64,
    pub xsdt_gpa: u64,
    pub fadt_gpa: u64,
    pub dsdt_gpa: u64,
    pub madt_gpa: u64,
}

/// Sum of all bytes, mod 256: 0 for a valid ACPI checksum.
pub fn sum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |s, &x| s.wrapping_add(x))
}

fn fix_checksum(b: &mut [u8], at: usize) {
    b[at] = 0;
    b[at] = 0u8.wrapping_sub(sum(b));
}

fn put_u16(b: &mut [u8], o: usize, v: u16) {
    b[o..o + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], o: usize, v: u64) {
    b[o..o + 8].copy_from_slice(&v.to_le_bytes());
}

/// A system description table header (checksum filled in by [`fix_checksum`]).
fn sdt(sig: &[u8; 4], len: usize, revision: u8) -> Vec<u8> {
    let mut t = alloc::vec![0u8; len];
    t[0..4].copy_from_slice(sig);
    put_u32(&mut t, 4, len as u32);
    t[8] = revision;
    t[10..16].copy_from_slice(OEM_ID);
    t[16..24].copy_from_slice(OEM_TABLE_ID);
    put_u32(&mut t, 24, 1); // OEM revision
    t[28..32].copy_from_slice(CREATOR_ID);
    put_u32(&mut t, 32, 1); // creator revision
    t
}

/// Builds the tables for `nr_vcpus` vCPUs at guest-physical `base`.
pub fn build(base: u64, nr_vcpus: u32) -> Result<AcpiBlob, AcpiBuildError> {
    if nr_vcpus == 0 || nr_vcpus > MAX_VCPUS {
        return Err(AcpiBuildError::BadVcpuCount(nr_vcpus));
    }
    let madt_len = MADT_HEADER_LEN + MADT_LAPIC_LEN * nr_vcpus as usize;
    let total = MADT_OFFSET + madt_len as u64;
    if !base.is_multiple_of(16) || base.checked_add(total).is_none_or(|e| e > 1 << 32) {
        return Err(AcpiBuildError::BadBase(base));
    }
    let (rsdp_gpa, xsdt_gpa) = (base + RSDP_OFFSET, base + XSDT_OFFSET);
    let (fadt_gpa, dsdt_gpa) = (base + FADT_OFFSET, base + DSDT_OFFSET);
    let madt_gpa = base + MADT_OFFSET;

    // RSDP (ACPI 6.x 5.2.5.3): signature, checksum over the first 20 bytes,
    // OEMID, revision 2, RsdtAddress 0 (no RSDT), length, XsdtAddress,
    // extended checksum over all 36 bytes.
    let mut rsdp = [0u8; RSDP_LEN];
    rsdp[0..8].copy_from_slice(b"RSD PTR ");
    rsdp[9..15].copy_from_slice(OEM_ID);
    rsdp[15] = 2;
    put_u32(&mut rsdp, 20, RSDP_LEN as u32);
    put_u64(&mut rsdp, 24, xsdt_gpa);
    fix_checksum(&mut rsdp[..20], 8);
    fix_checksum(&mut rsdp, 32);

    let mut xsdt = sdt(b"XSDT", XSDT_LEN, 1);
    put_u64(&mut xsdt, 36, fadt_gpa);
    put_u64(&mut xsdt, 44, madt_gpa);
    fix_checksum(&mut xsdt, 9);

    // FADT (ACPI 6.x 5.2.9): everything zero (no PM blocks, no SCI, no
    // SMI_CMD, no FACS) except the fields below.
    let mut fadt = sdt(b"FACP", FADT_LEN, 6);
    put_u32(&mut fadt, 40, dsdt_gpa as u32); // DSDT
    put_u16(
        &mut fadt,
        109,
        IAPC_VGA_NOT_PRESENT | IAPC_CMOS_RTC_NOT_PRESENT,
    ); // IAPC_BOOT_ARCH: no LEGACY_DEVICES, no 8042
    put_u32(&mut fadt, 112, FADT_HW_REDUCED_ACPI | FADT_RESET_REG_SUP); // Flags
    fadt[116..120].copy_from_slice(&[1, 8, 0, 1]); // RESET_REG: System I/O, 8 bits
    put_u64(&mut fadt, 120, RESET_PORT as u64);
    fadt[128] = RESET_VALUE; // RESET_VALUE
    fadt[131] = 0; // FADT minor version: 6.0
    put_u64(&mut fadt, 140, dsdt_gpa); // X_DSDT
                                       // SLEEP_CONTROL_REG (244) and SLEEP_STATUS_REG (256): 8-bit System I/O
                                       // registers (GAS: space 1, width 8, offset 0, byte access).
    for (off, port) in [(244, SLEEP_CONTROL_PORT), (256, SLEEP_STATUS_PORT)] {
        fadt[off..off + 4].copy_from_slice(&[1, 8, 0, 1]);
        put_u64(&mut fadt, off + 4, port as u64);
    }
    fadt[268..276].copy_from_slice(b"KeelVMM\0"); // Hypervisor Vendor Identity
    fix_checksum(&mut fadt, 9);

    // DSDT: revision 2 (64-bit AML integers); the AML names only _S5.
    let mut dsdt = sdt(b"DSDT", DSDT_LEN, 2);
    dsdt[HEADER_LEN..].copy_from_slice(&S5_AML);
    fix_checksum(&mut dsdt, 9);

    // MADT (ACPI 6.x 5.2.12), revision 5: local APIC address, flags 0 (no
    // 8259 PC-AT pair), then one Processor Local APIC structure per vCPU:
    // type 0, length 8, processor UID, APIC ID, flags (bit 0 Enabled).
    let mut madt = sdt(b"APIC", madt_len, 5);
    put_u32(&mut madt, 36, LAPIC_ADDR);
    put_u32(&mut madt, 40, 0);
    for i in 0..nr_vcpus as usize {
        let o = MADT_HEADER_LEN + i * MADT_LAPIC_LEN;
        madt[o] = 0;
        madt[o + 1] = MADT_LAPIC_LEN as u8;
        madt[o + 2] = i as u8;
        madt[o + 3] = i as u8;
        put_u32(&mut madt, o + 4, 1);
    }
    fix_checksum(&mut madt, 9);

    let mut bytes = alloc::vec![0u8; total as usize];
    for (off, t) in [
        (RSDP_OFFSET, &rsdp[..]),
        (XSDT_OFFSET, &xsdt[..]),
        (FADT_OFFSET, &fadt[..]),
        (DSDT_OFFSET, &dsdt[..]),
        (MADT_OFFSET, &madt[..]),
    ] {
        bytes[off as usize..off as usize + t.len()].copy_from_slice(t);
    }
    Ok(AcpiBlob {
        base,
        bytes,
        rsdp_gpa,
        xsdt_gpa,
        fadt_gpa,
        dsdt_gpa,
        madt_gpa,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::ptr::NonNull;
    use std::rc::Rc;

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    fn table(blob: &AcpiBlob, gpa: u64) -> &[u8] {
        let o = (gpa - blob.base) as usize;
        let len = u32_at(&blob.bytes, o + 4) as usize;
        &blob.bytes[o..o + len]
    }

    #[test]
    fn layout_signatures_lengths_checksums() {
        for n in [1u32, 2, 4, 64, 255] {
            let base = 0xf_0000;
            let b = build(base, n).unwrap();
            assert_eq!(b.rsdp_gpa, base);
            let rsdp = &b.bytes[..36];
            assert_eq!(&rsdp[..8], b"RSD PTR ");
            assert_eq!(sum(&rsdp[..20]), 0);
            assert_eq!(sum(rsdp), 0);
            assert_eq!(rsdp[15], 2);
            assert_eq!(u32_at(rsdp, 20), 36);
            assert_eq!(u64_at(rsdp, 24), b.xsdt_gpa);
            for (gpa, sig, len) in [
                (b.xsdt_gpa, b"XSDT", XSDT_LEN),
                (b.fadt_gpa, b"FACP", FADT_LEN),
                (b.dsdt_gpa, b"DSDT", DSDT_LEN),
                (b.madt_gpa, b"APIC", 44 + 8 * n as usize),
            ] {
                assert_eq!(gpa % 16, 0);
                let t = table(&b, gpa);
                assert_eq!(&t[..4], sig);
                assert_eq!(t.len(), len);
                assert_eq!(sum(t), 0, "{} checksum", core::str::from_utf8(sig).unwrap());
            }
            let xsdt = table(&b, b.xsdt_gpa);
            assert_eq!(u64_at(xsdt, 36), b.fadt_gpa);
            assert_eq!(u64_at(xsdt, 44), b.madt_gpa);
            let fadt = table(&b, b.fadt_gpa);
            assert_eq!(fadt[8], 6);
            assert_eq!(
                u32_at(fadt, 112) & FADT_HW_REDUCED_ACPI,
                FADT_HW_REDUCED_ACPI
            );
            assert_eq!(u32_at(fadt, 40) as u64, b.dsdt_gpa);
            assert_eq!(u64_at(fadt, 140), b.dsdt_gpa);
            assert_eq!(u32_at(fadt, 36), 0); // no FACS
            assert_eq!(u32_at(fadt, 76), 0); // no PM timer
            let madt = table(&b, b.madt_gpa);
            assert_eq!(u32_at(madt, 36), 0xfee0_0000);
            assert_eq!(u32_at(madt, 40), 0);
            let entries: Vec<_> = madt[44..].chunks(8).collect();
            assert_eq!(entries.len(), n as usize);
            for (i, e) in entries.iter().enumerate() {
                assert_eq!(e[0], 0, "Processor Local APIC");
                assert_eq!(e[1], 8);
                assert_eq!(e[2] as usize, i);
                assert_eq!(e[3] as usize, i);
                assert_eq!(u32_at(e, 4), 1, "enabled");
            }
        }
    }

    #[test]
    fn bad_arguments() {
        assert_eq!(
            build(0x1000, 0).unwrap_err(),
            AcpiBuildError::BadVcpuCount(0)
        );
        assert_eq!(
            build(0x1000, 256).unwrap_err(),
            AcpiBuildError::BadVcpuCount(256)
        );
        assert_eq!(
            build(0x1008, 1).unwrap_err(),
            AcpiBuildError::BadBase(0x1008)
        );
        assert_eq!(
            build(0xffff_ff00, 1).unwrap_err(),
            AcpiBuildError::BadBase(0xffff_ff00)
        );
        assert!(build(!15, 1).is_err());
        assert!(build(0xffff_f000, 1).is_ok(), "fits just below 4 GiB");
    }

    /// Guest memory as the `acpi` crate sees it: physical address -> the
    /// blob's bytes. Out-of-range accesses panic (the tables would be wrong).
    #[derive(Clone)]
    struct Mem(Rc<(u64, Vec<u8>)>);

    impl acpi::AcpiHandler for Mem {
        unsafe fn map_physical_region<T>(
            &self,
            phys: usize,
            size: usize,
        ) -> acpi::PhysicalMapping<Self, T> {
            let (base, bytes) = &*self.0;
            let off = (phys as u64).checked_sub(*base).expect("below the tables") as usize;
            assert!(
                off + size <= bytes.len(),
                "map {phys:#x}+{size:#x} past the tables"
            );
            // SAFETY: `off + size` is within `bytes` (checked above), which
            // the handler keeps alive; the acpi crate only reads through it.
            unsafe {
                let ptr = NonNull::new(bytes.as_ptr().add(off) as *mut T).unwrap();
                acpi::PhysicalMapping::new(phys, ptr, size, size, self.clone())
            }
        }
        fn unmap_physical_region<T>(_: &acpi::PhysicalMapping<Self, T>) {}
    }

    #[test]
    fn acpi_crate_parses_the_tables() {
        for n in [1u32, 2, 8, 255] {
            let b = build(0x9_0000, n).unwrap();
            let mem = Mem(Rc::new((b.base, b.bytes.clone())));
            // SAFETY: the handler maps "physical" addresses into the bytes
            // just built, and the RSDP address is the one `build` reported.
            let tables = unsafe { acpi::AcpiTables::from_rsdp(mem, b.rsdp_gpa as usize) }.unwrap();
            assert_eq!(tables.revision(), 2);
            let fadt = tables.find_table::<acpi::fadt::Fadt>().unwrap();
            assert_eq!(fadt.dsdt_address().unwrap() as u64, b.dsdt_gpa);
            assert!({ fadt.flags }.system_is_hw_reduced_acpi());
            drop(fadt);
            assert!(tables.find_table::<acpi::madt::Madt>().is_ok());
            let dsdt = tables.dsdt().unwrap();
            assert_eq!(dsdt.address as u64, b.dsdt_gpa + 36);
            assert_eq!(dsdt.length as usize, S5_AML.len());
            let aml =
                &b.bytes[(DSDT_OFFSET as usize + HEADER_LEN)..(DSDT_OFFSET as usize + DSDT_LEN)];
            assert_eq!(
                crate::acpi_aml::s5_sleep_types(aml),
                Some((SLEEP_TYPE_S5, SLEEP_TYPE_S5))
            );
            let f = tables.find_table::<acpi::fadt::Fadt>().unwrap();
            let ctl = f.sleep_control_register().unwrap().unwrap();
            assert_eq!((ctl.address, ctl.bit_width), (SLEEP_CONTROL_PORT as u64, 8));
            assert!({ f.flags }.supports_system_reset_via_fadt());
            let rst = f.reset_register().unwrap();
            assert_eq!((rst.address, rst.bit_width), (RESET_PORT as u64, 8));
            assert_eq!(f.reset_value, RESET_VALUE);
            drop(f);
            let info = tables.platform_info().unwrap();
            assert!(info.pm_timer.is_none());
            match info.interrupt_model {
                acpi::InterruptModel::Apic(apic) => {
                    assert_eq!(apic.local_apic_address, 0xfee0_0000);
                    assert!(apic.io_apics.is_empty());
                    assert!(!apic.also_has_legacy_pics);
                }
                other => panic!("interrupt model {other:?}"),
            }
            let p = info.processor_info.unwrap();
            assert_eq!(p.boot_processor.local_apic_id, 0);
            assert_eq!(1 + p.application_processors.len(), n as usize);
            for (i, ap) in p.application_processors.iter().enumerate() {
                assert_eq!(ap.local_apic_id as usize, i + 1);
                assert_eq!(ap.processor_uid as usize, i + 1);
                assert_eq!(ap.state, acpi::platform::ProcessorState::WaitingForSipi);
            }
        }
    }
}
