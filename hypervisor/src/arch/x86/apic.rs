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
const REG_LVT_TIMER: u32 = 0x320;
const REG_LVT_LINT0: u32 = 0x350;
const REG_LVT_LINT1: u32 = 0x360;
/// LVT delivery mode NMI (0b100 << 8).
const LVT_DELIVERY_NMI: u32 = 0b100 << 8;
const REG_TIMER_INIT: u32 = 0x380;
const REG_TIMER_CUR: u32 = 0x390;
const REG_TIMER_DIV: u32 = 0x3e0;
const LVT_MASKED: u32 = 1 << 16;
/// Divide configuration 0b1011: divide by 1.
const TIMER_DIV_1: u32 = 0b1011;

/// The local APIC timer's rate (kHz, divide by 1), from [`calibrate_timer`].
static TIMER_KHZ: AtomicU64 = AtomicU64::new(0);
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
    // LINT0 masked: firmware leaves the boot CPU in virtual-wire mode
    // (ExtINT from the 8259), and a PIC interrupt arriving that way would
    // look like one of dom0's device vectors. LINT1 stays NMI.
    write(REG_LVT_LINT0, LVT_MASKED);
    write(REG_LVT_LINT1, LVT_DELIVERY_NMI);
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

/// Whether the interrupt in service with `vector` was level-triggered
/// (its bit in the trigger mode register, TMR, at 0x180).
pub fn is_level(vector: u8) -> bool {
    read(0x180 + 0x10 * (vector as u32 / 32)) & (1 << (vector % 32)) != 0
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

/// Measures the local APIC timer against the TSC (`tsc_khz`), over about
/// 10 ms. All CPUs share the rate, so the boot CPU does this once.
pub fn calibrate_timer(tsc_khz: u64) {
    write(REG_TIMER_DIV, TIMER_DIV_1);
    write(REG_LVT_TIMER, LVT_MASKED | super::trap::VECTOR_TIMER as u32);
    let t0 = cpu::rdtsc();
    write(REG_TIMER_INIT, u32::MAX);
    let wait = tsc_khz * 10;
    while cpu::rdtsc() - t0 < wait {
        cpu::pause();
    }
    let left = read(REG_TIMER_CUR);
    let elapsed = cpu::rdtsc() - t0;
    write(REG_TIMER_INIT, 0);
    let ticks = (u32::MAX - left) as u64;
    let khz = (ticks as u128 * tsc_khz as u128 / elapsed.max(1) as u128) as u64;
    TIMER_KHZ.store(khz, Ordering::SeqCst);
    log::info!("apic: timer {} kHz (one-shot, divide by 1)", khz);
}

/// Sets this CPU's timer up for [`arm_timer`], stopped: one-shot, divide
/// by 1, [`super::trap::VECTOR_TIMER`], unmasked. Once per CPU, before its
/// first `arm_timer`: nothing else writes these registers after, so each
/// arming writes only the count (one register write, not three: each is a
/// trip through the emulator's or the hardware's APIC, on every VM entry
/// whose deadline changed).
pub fn setup_timer() {
    write(REG_TIMER_INIT, 0);
    write(REG_TIMER_DIV, TIMER_DIV_1);
    write(REG_LVT_TIMER, super::trap::VECTOR_TIMER as u32);
}

/// Arms this CPU's timer (set up by [`setup_timer`]) to fire at TSC value
/// `deadline`, or soon if it has passed. A deadline beyond the counter's
/// reach fires early; callers re-check and re-arm.
pub fn arm_timer(deadline: u64, tsc_khz: u64) {
    let khz = TIMER_KHZ.load(Ordering::Relaxed);
    if khz == 0 || tsc_khz == 0 {
        return;
    }
    let delta = deadline.saturating_sub(cpu::rdtsc());
    let ticks = (delta as u128 * khz as u128 / tsc_khz as u128).clamp(1, u32::MAX as u128);
    write(REG_TIMER_INIT, ticks as u32);
}

/// Whether this CPU's timer is counting down (armed and not yet fired).
pub fn timer_running() -> bool {
    read(REG_TIMER_CUR) != 0
}

/// Stops this CPU's timer.
pub fn disarm_timer() {
    write(REG_TIMER_INIT, 0);
}
