//! The end of every fatal path: a message on the console, the test
//! harness told, the CPU stopped. Also the panic handler.

use crate::arch::x86::{cpu, gdt, power};
use crate::console;

/// A fatal error keel cannot go on from.
pub fn fatal_message(msg: core::fmt::Arguments) -> ! {
    console::emergency_write(format_args!("*** FATAL: {msg}"));
    fatal_stop("fatal-error")
}

/// Reports, tells the test harness (`test=`, `debug_exit=`), stops.
pub fn fatal_stop(reason: &str) -> ! {
    let o = crate::cmdline::get();
    if let Some(t) = o.test {
        console::emergency_write(format_args!("keel-test: FAIL {t} reason={reason}"));
    }
    if let Some(port) = o.debug_exit {
        power::debug_exit(port, 1);
    }
    console::emergency_write(format_args!("keel: system halted"));
    cpu::halt_forever()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    console::emergency_write(format_args!(
        "*** FATAL: CPU{}: panic: {info}",
        gdt::cpu_index()
    ));
    fatal_stop("panic")
}
