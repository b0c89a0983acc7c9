//! x86-64: the thin layers that touch hardware. Each `unsafe` block here
//! carries a `// SAFETY:` note; everything above this module is safe Rust.
pub mod acpi;
pub mod apic;
pub mod cpu;
pub mod gdt;
pub mod io;
pub mod power;
pub mod smp;
pub mod time;
pub mod trap;
