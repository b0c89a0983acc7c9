//! The serial console (COM1) and the `log` backend.
//!
//! Lines look like Xen's: `(XEN) message`. The level filter comes from
//! `loglvl=` (default `info`). Fatal paths use [`emergency_write`], which
//! does not wait for the lock, so a fault while printing cannot deadlock
//! the diagnostic.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};
use spin::Mutex;
use uart_16550::SerialPort;

const COM1: u16 = 0x3f8;

static PORT: Mutex<Option<SerialPort>> = Mutex::new(None);
static ENABLED: AtomicBool = AtomicBool::new(true);

pub fn init() {
    // SAFETY: 0x3f8 is the standard COM1 base; keel owns the serial port.
    let mut port = unsafe { SerialPort::new(COM1) };
    port.init();
    *PORT.lock() = Some(port);
}

pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

struct Line<'a>(&'a mut SerialPort);

impl Write for Line<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.0.send(b'\r');
            }
            self.0.send(b);
        }
        Ok(())
    }
}

/// Prints one `(XEN) ` line.
pub fn print_line(args: fmt::Arguments) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    if let Some(port) = PORT.lock().as_mut() {
        let _ = writeln!(Line(port), "(XEN) {args}");
    }
}

/// Writes a line without taking the lock (fatal paths only).
pub fn emergency_write(args: fmt::Arguments) {
    // SAFETY: the port may be in use by a CPU that faulted while holding
    // the lock; interleaved bytes are acceptable on the way down.
    let mut port = unsafe { SerialPort::new(COM1) };
    let _ = writeln!(Line(&mut port), "(XEN) {args}");
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        match r.level() {
            log::Level::Error => print_line(format_args!("ERROR: {}", r.args())),
            log::Level::Warn => print_line(format_args!("WARNING: {}", r.args())),
            log::Level::Info => print_line(*r.args()),
            _ => print_line(format_args!("[{}] {}", r.target(), r.args())),
        }
    }
    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

pub fn init_logger(level: crate::cmdline::LogLevel) {
    use crate::cmdline::LogLevel as L;
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(match level {
        L::None => log::LevelFilter::Off,
        L::Error => log::LevelFilter::Error,
        L::Warning => log::LevelFilter::Warn,
        L::Info => log::LevelFilter::Info,
        L::Debug => log::LevelFilter::Debug,
        L::All => log::LevelFilter::Trace,
    });
}
