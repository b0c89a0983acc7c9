//! Port I/O.
use x86_64::instructions::port::Port;

pub fn outb(port: u16, v: u8) {
    // SAFETY: callers name ports keel owns (PIT, PM1 control, debug exit,
    // keyboard controller); a byte written to an absent port is dropped.
    unsafe { Port::<u8>::new(port).write(v) }
}
pub fn inb(port: u16) -> u8 {
    // SAFETY: as for outb; reads have no side effects on these ports.
    unsafe { Port::<u8>::new(port).read() }
}
pub fn outw(port: u16, v: u16) {
    // SAFETY: as for outb.
    unsafe { Port::<u16>::new(port).write(v) }
}
pub fn inw(port: u16) -> u16 {
    // SAFETY: as for inb.
    unsafe { Port::<u16>::new(port).read() }
}
pub fn outl(port: u16, v: u32) {
    // SAFETY: as for outb.
    unsafe { Port::<u32>::new(port).write(v) }
}
pub fn inl(port: u16) -> u32 {
    // SAFETY: as for outb.
    unsafe { Port::<u32>::new(port).read() }
}

/// Sets or clears `port`'s bit in a one-bit-per-port I/O intercept bitmap
/// at `bitmap_phys` (VT-x's bitmaps A and B back to back, AMD-V's IOPM:
/// the same layout for ports 0-0xffff).
pub fn set_bitmap_port(bitmap_phys: u64, port: u16, intercept: bool) {
    let byte = super::cpu::phys_to_virt(bitmap_phys + port as u64 / 8) as *mut u8;
    let bit = 1u8 << (port % 8);
    // SAFETY: the bitmap is a vCPU's (8 KiB or more, direct-mapped), and
    // the hardware reads it only while this CPU runs that vCPU.
    unsafe {
        let v = byte.read_volatile();
        byte.write_volatile(if intercept { v | bit } else { v & !bit });
    }
}
