//! Entry from GRUB (multiboot2). The assembly stub in `main.rs` identity-maps
//! the first 4 GiB and calls [`enter`] with the magic and the physical
//! address of the information structure.
use crate::bootinfo::{multiboot2, BootInfo, BootProblem, Loader};

pub fn enter(magic: u32, info: u32) -> ! {
    let mut bi = BootInfo::new(Loader::Multiboot2);
    bi.phys_offset = 0;
    bi.phys_mapped_limit = 4 << 30;
    let [start, _, _, _, end] = super::image_layout();
    // Linked and loaded at the same address: virtual = physical.
    bi.add_reserved(start, end);
    if magic != multiboot2::BOOTLOADER_MAGIC {
        bi.problem(BootProblem::Mb2Malformed("bad bootloader magic"));
    } else {
        // SAFETY: GRUB passes the structure's physical address, identity
        // mapped by the stub; its first word is its total size.
        let head = unsafe { core::slice::from_raw_parts(info as usize as *const u8, 8) };
        let total = multiboot2::total_size(head).unwrap_or(0).clamp(8, 1 << 20);
        // SAFETY: as above, for the size the structure declares (capped).
        let all = unsafe { core::slice::from_raw_parts(info as usize as *const u8, total) };
        if let Err(p) = multiboot2::parse(all, info as u64, &mut bi) {
            bi.problem(p);
        }
    }
    crate::kernel::start(bi)
}
