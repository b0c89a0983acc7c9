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
