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
