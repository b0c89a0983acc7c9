//! The keel kernel binary: its two entry points. Everything else is in the
//! `keel` library, which also builds (without the hardware layers) on the
//! host for unit tests.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
mod entry {
    use bootloader_api::config::{BootloaderConfig, Mapping};

    // Multiboot2 (GRUB): header, 32-bit stub and long-mode switch. It lives in
    // the binary crate so the linker always keeps the header.
    core::arch::global_asm!(include_str!("boot/multiboot2.S"));

    /// Called by the stub above in 64-bit mode on the identity map.
    #[no_mangle]
    extern "C" fn keel_mb2_main(magic: u32, info: u32) -> ! {
        keel::boot::multiboot2::enter(magic, info)
    }

    /// The `bootloader` crate (BIOS and UEFI disk images).
    pub static BOOTLOADER_CONFIG: BootloaderConfig = {
        let mut config = BootloaderConfig::new_default();
        config.mappings.physical_memory = Some(Mapping::Dynamic);
        config.kernel_stack_size = 128 * 1024;
        config
    };
    bootloader_api::entry_point!(bootloader_main, config = &BOOTLOADER_CONFIG);

    fn bootloader_main(info: &'static mut bootloader_api::BootInfo) -> ! {
        keel::boot::bootloader::enter(info)
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("keel is a bare-metal kernel: build and boot it with `cargo xtask build` / `cargo xtask run`");
    std::process::exit(2);
}
