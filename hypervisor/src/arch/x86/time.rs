//! Time: the TSC, calibrated once against PIT channel 2 (as Xen does by
//! default), cross-checked against the HPET when ACPI lists one. Under QEMU
//! 7.2 TCG the HPET-based figure came out 3.4x too low while the PIT's
//! matched the wall clock, so a disagreement is reported, not trusted.
use super::{cpu, io};
use core::sync::atomic::{AtomicU64, Ordering};

static TSC_KHZ: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy, Debug)]
pub enum Source {
    Hpet,
    Pit,
}

/// Calibrates over 10 ms; returns the TSC frequency in kHz.
pub fn calibrate(hpet_phys: Option<u64>) -> (u64, Source) {
    let pit = calibrate_pit();
    let hpet = hpet_phys.and_then(calibrate_hpet);
    let (khz, src) = if pit > 1000 {
        (pit, Source::Pit)
    } else {
        (hpet.unwrap_or(pit), Source::Hpet)
    };
    if let Some(h) = hpet {
        if h.abs_diff(pit) > pit / 20 {
            log::warn!(
                "time: HPET and PIT disagree on the TSC: {h} kHz vs {pit} kHz; using {src:?}"
            );
        }
    }
    TSC_KHZ.store(khz.max(1), Ordering::SeqCst);
    (khz, src)
}

fn calibrate_hpet(phys: u64) -> Option<u64> {
    let base = cpu::phys_to_virt(phys);
    let reg = |off: u64| base + off;
    // SAFETY: the HPET block is MMIO covered by the direct map; the offsets
    // are the HPET spec's capability (0x0), config (0x10) and counter (0xf0).
    let (cap, _) = unsafe { (core::ptr::read_volatile(reg(0) as *const u64), 0) };
    let period_fs = cap >> 32;
    if period_fs == 0 || period_fs > 100_000_000 {
        return None; // absent or bogus (spec: at most 100 ns)
    }
    // SAFETY: as above; setting ENABLE_CNF starts the main counter.
    unsafe {
        let cfg = core::ptr::read_volatile(reg(0x10) as *const u64);
        core::ptr::write_volatile(reg(0x10) as *mut u64, cfg | 1);
    }
    // SAFETY: as above.
    let counter = || unsafe { core::ptr::read_volatile(reg(0xf0) as *const u64) };
    let ticks = 10_000_000_000_000u64 / period_fs; // 10 ms in fs / period
    let c0 = counter();
    let t0 = cpu::rdtsc();
    let mut spins = 0u64;
    while counter().wrapping_sub(c0) < ticks {
        spins += 1;
        if spins > 1 << 32 {
            return None; // counter not running
        }
    }
    let t1 = cpu::rdtsc();
    let elapsed_fs = (counter().wrapping_sub(c0)) * period_fs;
    Some((t1 - t0) * 1_000_000_000_000 / elapsed_fs.max(1))
}

fn calibrate_pit() -> u64 {
    const PIT_HZ: u64 = 1_193_182;
    let ticks = (PIT_HZ / 100) as u16; // 10 ms
                                       // Gate channel 2 on, speaker off; mode 0 (interrupt on terminal count).
    io::outb(0x61, (io::inb(0x61) & !0x02) | 0x01);
    io::outb(0x43, 0b1011_0000);
    io::outb(0x42, ticks as u8);
    io::outb(0x42, (ticks >> 8) as u8);
    let t0 = cpu::rdtsc();
    let mut spins = 0u64;
    while io::inb(0x61) & 0x20 == 0 {
        spins += 1;
        if spins > 1 << 28 {
            break;
        }
    }
    let t1 = cpu::rdtsc();
    if spins > 1 << 28 {
        return 0; // no PIT
    }
    (t1 - t0) / 10
}

pub fn tsc_khz() -> u64 {
    TSC_KHZ.load(Ordering::Relaxed)
}

/// Microseconds since the TSC started (boot, in practice).
pub fn now_us() -> u64 {
    (cpu::rdtsc() as u128 * 1000 / tsc_khz().max(1) as u128) as u64
}

pub fn delay_us(us: u64) {
    let end = cpu::rdtsc() + us * tsc_khz().max(1) / 1000;
    while cpu::rdtsc() < end {
        cpu::pause();
    }
}
