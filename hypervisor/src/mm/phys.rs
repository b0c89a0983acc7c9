//! Access to physical memory: keel's one place for dereferencing a
//! physical address, and the machine's frame allocator.
//!
//! On the bare-metal target physical memory is reached through keel's
//! direct map (`arch::x86::cpu::phys_to_virt`). In a host build it is an
//! arena of [`HOST_ARENA`] bytes whose offsets are the "physical"
//! addresses, with the frame allocator handing out frames from it, so that
//! domains, p2m tables and guest memory work in unit tests exactly as they
//! do on the machine.

use super::frame::FrameAllocator;
use super::paging::TableMemory;
use super::PAGE_SIZE;
use spin::{Mutex, MutexGuard};

static FRAMES: Mutex<FrameAllocator> = Mutex::new(FrameAllocator::new());

/// The machine's frame allocator (a leaf lock: take nothing else while
/// holding it).
pub fn frames() -> MutexGuard<'static, FrameAllocator> {
    #[cfg(not(target_os = "none"))]
    host::init();
    FRAMES.lock()
}

/// Allocates `pages` zeroed frames.
pub fn alloc_zeroed(pages: u64) -> Option<u64> {
    let f = frames().alloc(pages)?;
    zero(f, pages * PAGE_SIZE);
    Some(f)
}

/// Gives `pages` frames from `pa` back to the allocator.
pub fn free(pa: u64, pages: u64) {
    frames().free(pa, pages);
}

#[cfg(target_os = "none")]
fn ptr(pa: u64) -> *mut u8 {
    crate::arch::x86::cpu::phys_to_virt(pa) as *mut u8
}

#[cfg(not(target_os = "none"))]
fn ptr(pa: u64) -> *mut u8 {
    host::ptr(pa)
}

/// Copies `buf.len()` bytes of physical memory at `pa` out.
pub fn read(pa: u64, buf: &mut [u8]) {
    // SAFETY: callers name memory keel owns or a guest's RAM (found through
    // its p2m); the direct map (or the host arena) covers all of it. Guests
    // may write the same bytes concurrently: the copy is of plain bytes.
    unsafe { core::ptr::copy_nonoverlapping(ptr(pa), buf.as_mut_ptr(), buf.len()) }
}

/// Copies `data` into physical memory at `pa`.
pub fn write(pa: u64, data: &[u8]) {
    // SAFETY: as in `read`; keel writes only its own frames and guest RAM.
    unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), ptr(pa), data.len()) }
}

/// Copies `len` bytes of physical memory from `src` to `dst` (the two may
/// overlap, as a frame copied within itself).
pub fn copy(src: u64, dst: u64, len: usize) {
    // SAFETY: as in `read` and `write`; `copy` is a memmove.
    unsafe { core::ptr::copy(ptr(src), ptr(dst), len) }
}

/// Zeroes `len` bytes at `pa`.
pub fn zero(pa: u64, len: u64) {
    // SAFETY: as in `write`.
    unsafe { core::ptr::write_bytes(ptr(pa), 0, len as usize) }
}

/// Fills `len` bytes at `pa` with `byte`.
pub fn fill(pa: u64, byte: u8, len: u64) {
    // SAFETY: as in `write`.
    unsafe { core::ptr::write_bytes(ptr(pa), byte, len as usize) }
}

/// A `T` at physical address `pa`.
///
/// # Safety
/// `pa` must be suitably aligned for `T`, the `size_of::<T>()` bytes must
/// lie in memory that stays mapped (keel's own frame, or a guest page that
/// keel keeps while the reference is used), every bit pattern must be a
/// valid `T`, and the caller must not let two such references to the same
/// memory be used mutably at once inside keel (guests may touch it
/// concurrently: shared structures use atomic or tear-tolerant protocols).
pub unsafe fn obj<T>(pa: u64) -> &'static mut T {
    // SAFETY: the caller's contract above.
    unsafe { &mut *(ptr(pa) as *mut T) }
}

/// Page-table frames from the frame allocator, for p2m tables.
pub struct Tables;

impl TableMemory for Tables {
    fn alloc_table(&mut self) -> Option<u64> {
        alloc_zeroed(1)
    }
    fn table(&mut self, phys: u64) -> &mut [u64; 512] {
        // SAFETY: `phys` is a page-table frame keel allocated (aligned,
        // 4 KiB, keel's alone); p2m updates are serialized by their owner.
        unsafe { obj(phys) }
    }
}

/// Size of the host build's "physical memory".
#[cfg(not(target_os = "none"))]
pub const HOST_ARENA: u64 = 512 << 20;

#[cfg(not(target_os = "none"))]
mod host {
    use super::{FRAMES, HOST_ARENA};
    use std::sync::Once;

    static INIT: Once = Once::new();
    static mut BASE: usize = 0;

    pub fn init() {
        INIT.call_once(|| {
            let layout = std::alloc::Layout::from_size_align(HOST_ARENA as usize, 4096).unwrap();
            // SAFETY: a non-zero size; the arena lives for the whole test
            // process (never freed). Zeroed pages are committed lazily.
            let p = unsafe { std::alloc::alloc_zeroed(layout) };
            assert!(!p.is_null(), "host arena");
            // SAFETY: written once, inside `call_once`, before any reader.
            unsafe { BASE = p as usize };
            // Frame 0..1 MiB stays unused, like a PC's low memory.
            FRAMES.lock().add_free(1 << 20, HOST_ARENA);
        });
    }

    pub fn ptr(pa: u64) -> *mut u8 {
        init();
        assert!(
            pa < HOST_ARENA,
            "physical address {pa:#x} outside the host arena"
        );
        // SAFETY: BASE was set by `init` (above) and never changes again.
        unsafe { (BASE + pa as usize) as *mut u8 }
    }
}
