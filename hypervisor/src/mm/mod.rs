//! Memory management: physical frames and keel's own page tables.
pub mod frame;
pub mod p2m;
pub mod paging;
pub mod phys;

pub const PAGE_SIZE: u64 = 4096;

pub const fn align_up(x: u64, a: u64) -> u64 {
    (x + a - 1) & !(a - 1)
}
pub const fn align_down(x: u64, a: u64) -> u64 {
    x & !(a - 1)
}

/// Whether host-physical `pa` is RAM in the firmware's memory map (keel's
/// or a domain's), as opposed to device MMIO or firmware ranges.
#[cfg(target_os = "none")]
pub fn host_ram(pa: u64) -> bool {
    use crate::bootinfo::RegionKind;
    crate::bootinfo::host_regions().iter().any(|r| {
        r.start <= pa && pa < r.end && matches!(r.kind, RegionKind::Usable | RegionKind::Loader)
    })
}

/// The host build's fake machine is all RAM.
#[cfg(not(target_os = "none"))]
pub fn host_ram(_pa: u64) -> bool {
    true
}
