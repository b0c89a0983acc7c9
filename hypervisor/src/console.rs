//! The serial console (COM1) and the `log` backend.
//!
//! Lines look like Xen's: `(XEN) message`. The level filter comes from
//! `loglvl=` (default `info`). Every line also goes into the console ring
//! ([`crate::conring`], the newest bytes win), which dom0 reads with
//! `keelctl dmesg` as `xl dmesg` reads Xen's. Fatal paths use [`emergency_write`], which
//! does not wait for the lock, so a fault while printing cannot deadlock
//! the diagnostic.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};
use spin::Mutex;
use uart_16550::SerialPort;

const COM1: u16 = 0x3f8;

static PORT: Mutex<Option<SerialPort>> = Mutex::new(None);
static ENABLED: AtomicBool = AtomicBool::new(true);

use crate::conring::Ring;
use crate::conswitch::{Action, InputQueue, Owner, Switch, SWITCH_CODE};

static RING: Mutex<Ring> = Mutex::new(Ring::new());

/// Xen's `readconsole` on the console ring (see [`Ring::read_from`]).
pub fn ring_read_from(incremental: bool, index: u32, out: &mut [u8]) -> (usize, u32) {
    RING.lock().read_from(incremental, index, out)
}

/// Forgets the ring's bytes before `index` (see [`Ring::clear_to`]).
pub fn ring_clear_to(index: u32) {
    RING.lock().clear_to(index)
}

/// Reads the console ring (see [`Ring::read`]); `clear` empties it after.
pub fn ring_read(out: &mut [u8], clear: bool) -> usize {
    let mut r = RING.lock();
    let n = r.read(out);
    if clear {
        r.clear();
    }
    n
}

/// Writes formatted text into a [`Ring`].
struct RingWriter<'a>(&'a mut Ring);

impl Write for RingWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.push(s.as_bytes());
        Ok(())
    }
}

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
    let _ = writeln!(RingWriter(&mut RING.lock()), "(XEN) {args}");
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    if let Some(port) = PORT.lock().as_mut() {
        if MID_LINE.swap(false, Ordering::Relaxed) {
            let _ = writeln!(Line(port));
        }
        let _ = writeln!(Line(port), "(XEN) {args}");
    }
}

/// dom0's output left the cursor mid-line (a shell prompt): keel's next
/// line starts on a fresh one.
static MID_LINE: AtomicBool = AtomicBool::new(false);

/// dom0's console output (console_io): straight to the serial line, as
/// Xen prints its hardware domain's, so prompts and echo show at once.
pub fn guest_write(bytes: &[u8]) {
    if bytes.is_empty() || !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    if let Some(port) = PORT.lock().as_mut() {
        for &b in bytes {
            if b == b'\n' {
                port.send(b'\r');
            }
            port.send(b);
        }
        MID_LINE.store(*bytes.last().unwrap() != b'\n', Ordering::Relaxed);
    }
}

static SWITCH: Mutex<Switch> = Mutex::new(Switch::new());
/// Input for dom0, waiting for its console_io read.
static DOM0_IN: Mutex<InputQueue> = Mutex::new(InputQueue::new(4096));

/// Takes the bytes the serial port received: dom0's go to its queue,
/// keel's to `key`; three Ctrl-A switch. True when dom0 has new input.
pub fn poll_input(key: &mut dyn FnMut(u8)) -> bool {
    let mut got = [0u8; 64];
    let mut n = 0;
    if let Some(port) = PORT.lock().as_mut() {
        while n < got.len() {
            match port.try_receive() {
                Ok(b) => {
                    got[n] = b;
                    n += 1;
                }
                Err(_) => break,
            }
        }
    }
    let mut for_dom0 = false;
    for &b in &got[..n] {
        let action = SWITCH.lock().feed(b);
        match action {
            Action::Hold => {}
            Action::Switched(o) => print_line(format_args!(
                "*** Serial input to {} (type 'CTRL-a' three times to switch input)",
                match o {
                    Owner::Dom0 => "DOM0",
                    Owner::Keel => "keel",
                }
            )),
            Action::Deliver { owner, held, byte } => {
                let held = core::iter::repeat_n(SWITCH_CODE, held as usize);
                for c in held.chain(core::iter::once(byte)) {
                    match owner {
                        Owner::Dom0 => {
                            DOM0_IN.lock().push(c);
                            for_dom0 = true;
                        }
                        Owner::Keel => key(c),
                    }
                }
            }
        }
    }
    for_dom0
}

/// dom0's console_io read: hands up to `max` pending input bytes to
/// `deliver`, and takes them off the queue only if it succeeds.
pub fn take_input(max: usize, deliver: impl FnOnce(&[u8]) -> bool) -> usize {
    let mut buf = alloc::vec![0u8; max.min(4096)];
    let mut q = DOM0_IN.lock();
    let n = q.peek_into(&mut buf);
    if n == 0 || !deliver(&buf[..n]) {
        return 0;
    }
    q.discard(n);
    n
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
