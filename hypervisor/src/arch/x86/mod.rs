//! x86-64: the thin layers that touch hardware. Each `unsafe` block here
//! carries a `// SAFETY:` note; everything above this module is safe Rust.
//! Hardware modules build only for the bare-metal target; `svm` and `vmx`
//! also keep pure, host-tested parts (encodings, decoding, ASIDs).
#[cfg(target_os = "none")]
pub mod acpi;
#[cfg(target_os = "none")]
pub mod apic;
#[cfg(target_os = "none")]
pub mod cpu;
#[cfg(target_os = "none")]
pub mod fpu;
#[cfg(target_os = "none")]
pub mod gdt;
#[cfg(target_os = "none")]
pub mod hvm;
#[cfg(target_os = "none")]
pub mod io;
#[cfg(target_os = "none")]
pub mod irq;
#[cfg(target_os = "none")]
pub mod percpu;
#[cfg(target_os = "none")]
pub mod power;
#[cfg(target_os = "none")]
pub mod smp;
pub mod svm;
#[cfg(target_os = "none")]
pub mod time;
#[cfg(target_os = "none")]
pub mod trap;
pub mod vmx;
