//! keel's own guest-platform constants, not Xen's: what the ACPI tables
//! keel writes for dom0 and keel-builder writes for a domU promise, and
//! keel's exit handlers keep. Both sides take them from here, so a domU's
//! FADT and keel's port handling cannot drift apart.

/// The hardware-reduced sleep control and status registers (FADT
/// SLEEP_CONTROL_REG / SLEEP_STATUS_REG, 8-bit system I/O). A guest powers
/// off by writing `SLP_EN | SLEEP_TYPE_S5 << 2` to the control register.
pub const SLEEP_CONTROL_PORT: u16 = 0x0600;
pub const SLEEP_STATUS_PORT: u16 = 0x0601;
/// SLP_EN in the sleep control register (ACPI 6, 4.8.3.7).
pub const SLP_EN: u8 = 1 << 5;
/// The soft-off sleep type of the DSDT's `_S5`.
pub const SLEEP_TYPE_S5: u8 = 5;
/// `Name (_S5, Package () { SLEEP_TYPE_S5, SLEEP_TYPE_S5 })`: the whole of
/// the DSDT's AML.
pub const S5_AML: [u8; 12] = [
    0x08,
    b'_',
    b'S',
    b'5',
    b'_',
    0x12,
    0x06,
    0x02,
    0x0a,
    SLEEP_TYPE_S5,
    0x0a,
    SLEEP_TYPE_S5,
];
/// The local APIC's MMIO address in the MADT.
pub const LAPIC_ADDR: u32 = 0xfee0_0000;
