//! The ways into keel. Each fills a [`crate::bootinfo::BootInfo`] and calls
//! [`crate::kernel::start`].
pub mod bootloader;
pub mod multiboot2;

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
    static __text_start: u8;
    static __text_end: u8;
    static __data_start: u8;
}

/// The running image's virtual bounds: (start, text start, text end, data start, end).
pub fn image_layout() -> [u64; 5] {
    // Taking addresses of linker-script symbols; nothing is read.
    {
        [
            core::ptr::addr_of!(__image_start) as u64,
            core::ptr::addr_of!(__text_start) as u64,
            core::ptr::addr_of!(__text_end) as u64,
            core::ptr::addr_of!(__data_start) as u64,
            core::ptr::addr_of!(__image_end) as u64,
        ]
    }
}
