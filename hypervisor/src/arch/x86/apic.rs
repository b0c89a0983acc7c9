//! The local APIC, in x2APIC mode (MSRs) when the CPU has it, else xAPIC
//! (MMIO through the direct map).
use super::cpu;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static X2APIC: AtomicBool = AtomicBool::new(false);
/// Physical base of the xAPIC MMIO page.
static XAPIC_PHYS: AtomicU64 = AtomicU64::new(0xfee0_0000);

const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;

// Register offsets (xAPIC MMIO; the x2APIC MSR is 0x800 + offset / 16).
const REG_ID: u32 = 0x20;
const REG_EOI: u32 = 0xb0;
const REG_SVR: u32 = 0xf0;
const REG_ICR_LOW: u32 = 0x300;
const REG_ICR_HIGH: u32 = 0x310;
const ICR_PENDING: u32 = 1 << 12;

fn read(reg: u32) -> u32 {
    if X2APIC.load(Ordering::Relaxed) {
        cpu::rdmsr(0x800 + (reg >> 4)) as u32
    } else {
        let va = cpu::phys_to_virt(XAPIC_PHYS.load(Ordering::Relaxed) + reg as u64);
        // SAFETY: the direct map covers the APIC page; 32-bit aligned access.
        unsafe { core::ptr::read_volatile(va as *const u32) }
    }
}

fn write(reg: u32, v: u32) {
    if X2APIC.load(Ordering::Relaxed) {
        cpu::wrmsr(0x800 + (reg >> 4), v as u64)
    } else {
        let va = cpu::phys_to_virt(XAPIC_PHYS.load(Ordering::Relaxed) + reg as u64);
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile(va as *mut u32, v) }
    }
}

/// Remaps the legacy 8259 PICs away from the exception vectors (to
/// 0x20-0x2f) and masks every line. Firmware leaves IRQ0 on vector 8, so an
/// unmasked PIC timer would look like a double fault the moment keel
/// enables interrupts; keel uses the local APIC only.
pub fn disable_legacy_pic() {
    use super::io::outb;
    // ICW1: init + ICW4; ICW2: vector bases; ICW3: cascade on IRQ2; ICW4: 8086 mode.
    for (cmd, data, base, cascade) in [(0x20u16, 0x21u16, 0x20u8, 4u8), (0xa0, 0xa1, 0x28, 2)] {
        outb(cmd, 0x11);
        outb(data, base);
        outb(data, cascade);
        outb(data, 0x01);
        outb(data, 0xff); // mask all
    }
}

/// Enables this CPU's local APIC. The boot CPU decides the mode.
pub fn init(bsp: bool, use_x2apic: bool, mmio_phys: u64) {
    if bsp {
        X2APIC.store(use_x2apic, Ordering::SeqCst);
        XAPIC_PHYS.store(mmio_phys, Ordering::SeqCst);
    }
    let mut base = cpu::rdmsr(cpu::MSR_APIC_BASE) | APIC_BASE_ENABLE;
    if X2APIC.load(Ordering::Relaxed) {
        base |= APIC_BASE_X2APIC;
    }
    cpu::wrmsr(cpu::MSR_APIC_BASE, base);
    write(REG_SVR, 0x100 | super::trap::VECTOR_SPURIOUS as u32);
}

pub fn is_x2apic() -> bool {
    X2APIC.load(Ordering::Relaxed)
}

pub fn id() -> u32 {
    let v = read(REG_ID);
    if is_x2apic() {
        v
    } else {
        v >> 24
    }
}

pub fn eoi() {
    write(REG_EOI, 0);
}

fn send_ipi(dest: u32, low: u32) {
    if is_x2apic() {
        cpu::wrmsr(0x830, ((dest as u64) << 32) | low as u64);
    } else {
        write(REG_ICR_HIGH, dest << 24);
        write(REG_ICR_LOW, low);
        while read(REG_ICR_LOW) & ICR_PENDING != 0 {
            cpu::pause();
        }
    }
}

/// A fixed interrupt `vector` to one CPU.
pub fn send_fixed(dest: u32, vector: u8) {
    send_ipi(dest, vector as u32);
}

/// INIT (level assert) to one CPU.
pub fn send_init(dest: u32) {
    send_ipi(dest, 0x0000_4500);
}

/// Start-up IPI: the CPU begins in real mode at `page << 12`.
pub fn send_sipi(dest: u32, page: u8) {
    send_ipi(dest, 0x0000_4600 | page as u32);
}
