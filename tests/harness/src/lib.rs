//! keel's emulator test harness (used by `cargo xtask test|run`).
//!
//! * [`scenario`]: what a run is, the required set, and the outcome decision.
//! * [`markers`]: parsing keel's `(XEN) ` console lines.
//! * [`emulator`]: QEMU and Bochs command lines.
//! * [`images`]: KEELMODS ramdisks, `keel-boot` disk images, GRUB ISOs.
//! * [`runner`]: launching, following the serial log, timeouts, reports.
//! * [`host`]: Debian host packages.
//! * [`session`]: a scripted serial console (log in, type commands, read output).
//!
//! See `docs/testing.md`.

pub mod emulator;
pub mod host;
pub mod images;
pub mod markers;
pub mod runner;
pub mod scenario;
pub mod session;

pub use scenario::{
    bench_scenarios, domu_scenarios, fuzz_bench_scenarios, fuzz_scenarios, guest_scenarios,
    linux_scenarios, required, Emulator, Expect, Firmware, Scenario, Status, Vendor,
};
