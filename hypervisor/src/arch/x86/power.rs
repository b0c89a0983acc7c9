//! Power off and reboot: ACPI first, then the usual fallbacks.
use super::{cpu, io, time};
use spin::Once;

static PM1: Once<super::acpi::Pm1> = Once::new();

pub fn set_acpi(pm1: super::acpi::Pm1) {
    PM1.call_once(|| pm1);
}

const SLP_EN: u16 = 1 << 13;

/// Whether `port` is one of the host's PM1 control registers (FADT).
pub fn is_pm1_control(port: u16) -> bool {
    PM1.get()
        .is_some_and(|p| (p.a_cnt != 0 && port == p.a_cnt) || p.b_cnt == Some(port))
}

/// Whether writing `val` to `port` would put the host into ACPI S5 (SLP_EN
/// with the DSDT's `_S5` sleep type in a PM1 control register).
pub fn is_soft_off_write(port: u16, val: u16) -> bool {
    let Some(p) = PM1.get() else {
        return false;
    };
    let Some((a, b)) = p.slp_typ else {
        return false;
    };
    let slp = |t: u8| val & SLP_EN != 0 && (val >> 10) & 7 == t as u16;
    (p.a_cnt != 0 && port == p.a_cnt && slp(a)) || (p.b_cnt == Some(port) && slp(b))
}
const SCI_EN: u16 = 1;

/// Soft-off (ACPI S5). Falls back to the Bochs/QEMU shutdown port, then halts.
pub fn power_off() -> ! {
    log::info!("keel: powering off");
    if let Some(pm1) = PM1.get().filter(|p| p.a_cnt != 0) {
        match pm1.slp_typ {
            Some((a, b)) => {
                if io::inw(pm1.a_cnt) & SCI_EN == 0 && pm1.smi_cmd != 0 && pm1.acpi_enable != 0 {
                    io::outb(pm1.smi_cmd, pm1.acpi_enable);
                    for _ in 0..300 {
                        if io::inw(pm1.a_cnt) & SCI_EN != 0 {
                            break;
                        }
                        time::delay_us(1000);
                    }
                }
                io::outw(pm1.a_cnt, ((a as u16) << 10) | SLP_EN);
                if let Some(b_cnt) = pm1.b_cnt {
                    io::outw(b_cnt, ((b as u16) << 10) | SLP_EN);
                }
                time::delay_us(100_000);
                log::warn!("ACPI S5 did not power the machine off");
            }
            None => log::warn!("no _S5_ sleep state in the DSDT; cannot power off through ACPI"),
        }
    }
    // Bochs' (and old QEMU's) shutdown port; ignored elsewhere.
    for b in b"Shutdown" {
        io::outb(0x8900, *b);
    }
    log::error!("keel: power off failed; halting");
    cpu::halt_forever()
}

/// Reset: the FADT reset register, then the 8042, then port 0xCF9.
pub fn reboot() -> ! {
    log::info!("keel: rebooting");
    if let Some((space, addr, value)) = PM1.get().and_then(|p| p.reset) {
        if space == acpi::address::AddressSpace::SystemIo {
            io::outb(addr as u16, value);
            time::delay_us(50_000);
        }
    }
    io::outb(0x64, 0xfe);
    time::delay_us(50_000);
    io::outb(0xcf9, 0x02);
    io::outb(0xcf9, 0x06);
    time::delay_us(50_000);
    log::error!("keel: reboot failed; halting");
    cpu::halt_forever()
}

/// Tells an emulator's exit device (QEMU's isa-debug-exit) the run failed.
pub fn debug_exit(port: u16, code: u8) {
    io::outl(port, code as u32);
}
