//! The console ring page (`struct xencons_interface`, `io/console.h`).
//!
//! `out` carries guest output to us, `in` carries our input to the guest;
//! indexes are free-running u32s masked by the ring size. The page is
//! shared with an untrusted guest: indexes are read atomically and checked
//! (`prod - cons <= size`), data bytes are read and written volatile, and a
//! violation is an error for the caller to disconnect that console on.

use std::cell::UnsafeCell;
use std::fmt;
use std::mem::offset_of;
use std::ptr::{addr_of, addr_of_mut, NonNull};
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::sync::Arc;

pub const IN_SIZE: u32 = 1024;
pub const OUT_SIZE: u32 = 2048;

/// `struct xencons_interface`.
#[repr(C)]
pub struct XenconsInterface {
    pub input: [u8; IN_SIZE as usize],
    pub output: [u8; OUT_SIZE as usize],
    pub in_cons: u32,
    pub in_prod: u32,
    pub out_cons: u32,
    pub out_prod: u32,
}

const _: () = {
    use std::mem::{align_of, size_of};
    assert!(size_of::<XenconsInterface>() == 3088);
    assert!(align_of::<XenconsInterface>() == 4);
    assert!(offset_of!(XenconsInterface, input) == 0);
    assert!(offset_of!(XenconsInterface, output) == 1024);
    assert!(offset_of!(XenconsInterface, in_cons) == 3072);
    assert!(offset_of!(XenconsInterface, in_prod) == 3076);
    assert!(offset_of!(XenconsInterface, out_cons) == 3080);
    assert!(offset_of!(XenconsInterface, out_prod) == 3084);
    assert!(size_of::<XenconsInterface>() <= 4096);
};

/// The guest broke the ring's invariants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingError(pub String);

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RingError {}

#[repr(C, align(4096))]
struct PageBuf(UnsafeCell<[u8; 4096]>);

// SAFETY: all access goes through atomics (indexes) and volatile byte
// accesses (data), as with a page shared with another VM.
unsafe impl Sync for PageBuf {}
// SAFETY: plain bytes, owned by whoever holds them.
unsafe impl Send for PageBuf {}

/// A handle to a mapped console page; clones share it.
#[derive(Clone)]
pub struct ConsPage {
    ptr: NonNull<XenconsInterface>,
    _owner: Option<Arc<dyn Send + Sync>>,
}

// SAFETY: see PageBuf; the page is designed for concurrent access.
unsafe impl Send for ConsPage {}
// SAFETY: as above.
unsafe impl Sync for ConsPage {}

impl ConsPage {
    /// Wraps a mapped page that `owner` keeps mapped (unmapped when the
    /// last clone drops).
    ///
    /// # Safety
    /// `ptr` must point to at least `size_of::<XenconsInterface>()` bytes,
    /// 4-byte aligned, mapped for as long as `owner` lives.
    pub unsafe fn from_owned(ptr: NonNull<u8>, owner: Arc<dyn Send + Sync>) -> ConsPage {
        ConsPage {
            ptr: ptr.cast(),
            _owner: Some(owner),
        }
    }

    /// A zeroed in-memory page (tests; clone it for the "guest").
    pub fn new_in_memory() -> ConsPage {
        let buf: Arc<PageBuf> = Arc::new(PageBuf(UnsafeCell::new([0; 4096])));
        let ptr = NonNull::new(buf.0.get() as *mut XenconsInterface).expect("non-null");
        ConsPage {
            ptr,
            _owner: Some(buf),
        }
    }

    fn idx(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: `offset` is one of the interface's u32 fields (callers
        // pass `offset_of!`), inside the mapping and 4-byte aligned; this
        // code only accesses it atomically.
        unsafe { AtomicU32::from_ptr((self.ptr.as_ptr() as *mut u8).add(offset) as *mut u32) }
    }

    pub fn in_cons(&self) -> &AtomicU32 {
        self.idx(offset_of!(XenconsInterface, in_cons))
    }
    pub fn in_prod(&self) -> &AtomicU32 {
        self.idx(offset_of!(XenconsInterface, in_prod))
    }
    pub fn out_cons(&self) -> &AtomicU32 {
        self.idx(offset_of!(XenconsInterface, out_cons))
    }
    pub fn out_prod(&self) -> &AtomicU32 {
        self.idx(offset_of!(XenconsInterface, out_prod))
    }

    fn out_byte(&self, i: u32) -> u8 {
        let i = (i & (OUT_SIZE - 1)) as usize;
        // SAFETY: `i < OUT_SIZE`, inside `output`; volatile because the
        // guest may write it concurrently.
        unsafe {
            (addr_of!((*self.ptr.as_ptr()).output) as *const u8)
                .add(i)
                .read_volatile()
        }
    }

    fn set_in_byte(&self, i: u32, b: u8) {
        let i = (i & (IN_SIZE - 1)) as usize;
        // SAFETY: `i < IN_SIZE`, inside `input`; volatile as above.
        unsafe {
            (addr_of_mut!((*self.ptr.as_ptr()).input) as *mut u8)
                .add(i)
                .write_volatile(b)
        }
    }

    fn in_byte(&self, i: u32) -> u8 {
        let i = (i & (IN_SIZE - 1)) as usize;
        // SAFETY: as `set_in_byte`.
        unsafe {
            (addr_of!((*self.ptr.as_ptr()).input) as *const u8)
                .add(i)
                .read_volatile()
        }
    }

    fn set_out_byte(&self, i: u32, b: u8) {
        let i = (i & (OUT_SIZE - 1)) as usize;
        // SAFETY: as `out_byte`.
        unsafe {
            (addr_of_mut!((*self.ptr.as_ptr()).output) as *mut u8)
                .add(i)
                .write_volatile(b)
        }
    }

    /// Moves all pending guest output into `buf` and advances `out_cons`.
    /// Returns the number of bytes; at most `OUT_SIZE` per call, so a
    /// guest that keeps producing cannot keep us here.
    pub fn read_output(&self, buf: &mut Vec<u8>) -> Result<usize, RingError> {
        let cons = self.out_cons().load(Ordering::Relaxed);
        let prod = self.out_prod().load(Ordering::Acquire);
        let avail = prod.wrapping_sub(cons);
        if avail > OUT_SIZE {
            return Err(RingError(format!(
                "output ring indexes out of range: out_prod {prod:#x} out_cons {cons:#x}"
            )));
        }
        buf.reserve(avail as usize);
        for k in 0..avail {
            buf.push(self.out_byte(cons.wrapping_add(k)));
        }
        fence(Ordering::Release);
        self.out_cons()
            .store(cons.wrapping_add(avail), Ordering::Release);
        Ok(avail as usize)
    }

    /// Copies as much of `data` as fits into `in` and advances `in_prod`
    /// (never beyond `in_cons + IN_SIZE`). Returns the bytes written.
    pub fn write_input(&self, data: &[u8]) -> Result<usize, RingError> {
        let cons = self.in_cons().load(Ordering::Acquire);
        let prod = self.in_prod().load(Ordering::Relaxed);
        let used = prod.wrapping_sub(cons);
        if used > IN_SIZE {
            return Err(RingError(format!(
                "input ring indexes out of range: in_prod {prod:#x} in_cons {cons:#x}"
            )));
        }
        let n = ((IN_SIZE - used) as usize).min(data.len());
        for (k, &b) in data[..n].iter().enumerate() {
            self.set_in_byte(prod.wrapping_add(k as u32), b);
        }
        self.in_prod()
            .store(prod.wrapping_add(n as u32), Ordering::Release);
        Ok(n)
    }

    /// The guest side (tests): writes `data` into `out`, as hvc_xen does.
    pub fn guest_write(&self, data: &[u8]) -> usize {
        let cons = self.out_cons().load(Ordering::Acquire);
        let prod = self.out_prod().load(Ordering::Relaxed);
        let room = OUT_SIZE.saturating_sub(prod.wrapping_sub(cons)) as usize;
        let n = room.min(data.len());
        for (k, &b) in data[..n].iter().enumerate() {
            self.set_out_byte(prod.wrapping_add(k as u32), b);
        }
        self.out_prod()
            .store(prod.wrapping_add(n as u32), Ordering::Release);
        n
    }

    /// The guest side (tests): takes everything pending in `in`.
    pub fn guest_read(&self) -> Vec<u8> {
        let cons = self.in_cons().load(Ordering::Relaxed);
        let prod = self.in_prod().load(Ordering::Acquire);
        let n = prod.wrapping_sub(cons).min(IN_SIZE);
        let v = (0..n).map(|k| self.in_byte(cons.wrapping_add(k))).collect();
        self.in_cons()
            .store(cons.wrapping_add(n), Ordering::Release);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_round_trip() {
        let p = ConsPage::new_in_memory();
        assert_eq!(p.clone().guest_write(b"hello\n"), 6);
        let mut v = Vec::new();
        assert_eq!(p.read_output(&mut v), Ok(6));
        assert_eq!(v, b"hello\n");
        assert_eq!(p.out_cons().load(Ordering::Relaxed), 6);
        v.clear();
        assert_eq!(p.read_output(&mut v), Ok(0));
    }

    #[test]
    fn input_is_bounded_by_ring_size() {
        let p = ConsPage::new_in_memory();
        let data = vec![b'x'; 3000];
        assert_eq!(p.write_input(&data), Ok(1024));
        assert_eq!(p.write_input(&data), Ok(0));
        assert_eq!(p.guest_read().len(), 1024);
        assert_eq!(p.write_input(b"ab"), Ok(2));
        assert_eq!(p.guest_read(), b"ab");
    }

    #[test]
    fn indexes_wrap_at_u32_max() {
        let p = ConsPage::new_in_memory();
        let start = u32::MAX - 2;
        p.out_cons().store(start, Ordering::Relaxed);
        p.out_prod().store(start, Ordering::Relaxed);
        p.in_cons().store(start, Ordering::Relaxed);
        p.in_prod().store(start, Ordering::Relaxed);
        assert_eq!(p.guest_write(b"wrapping"), 8);
        let mut v = Vec::new();
        assert_eq!(p.read_output(&mut v), Ok(8));
        assert_eq!(v, b"wrapping");
        assert_eq!(p.out_cons().load(Ordering::Relaxed), start.wrapping_add(8));
        assert_eq!(p.write_input(b"input!"), Ok(6));
        assert_eq!(p.guest_read(), b"input!");
    }

    #[test]
    fn hostile_indexes_are_errors() {
        let p = ConsPage::new_in_memory();
        p.out_prod().store(OUT_SIZE + 1, Ordering::Relaxed);
        let mut v = Vec::new();
        assert!(p.read_output(&mut v).is_err());
        assert!(v.is_empty());
        // Exactly full is legal.
        p.out_prod().store(OUT_SIZE, Ordering::Relaxed);
        assert_eq!(p.read_output(&mut v), Ok(OUT_SIZE as usize));
        // in_cons ahead of in_prod (wraps to a huge "used").
        p.in_cons().store(5, Ordering::Relaxed);
        assert!(p.write_input(b"x").is_err());
    }
}
