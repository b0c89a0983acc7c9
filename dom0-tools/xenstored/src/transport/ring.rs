//! The shared-page ring transport (`struct xenstore_domain_interface`).
//!
//! A guest's xenstore page holds two 1 KiB byte rings: `req` (guest →
//! daemon) and `rsp` (daemon → guest) with free-running 32-bit indexes.
//! The page is shared with an untrusted guest, so every index read from it
//! is validated (`prod - cons <= XENSTORE_RING_SIZE`) and data bytes are
//! read with volatile loads; a violation marks the ring with
//! `XENSTORE_ERROR_RINGIDX` and the connection is dropped.
//!
//! Real domains attach later (mapping the grant/foreign page and binding the
//! event channel); until then the ring is exercised over an in-memory page
//! via [`RingPage::new_in_memory`], with [`RingClient`] playing the guest.

use std::cell::UnsafeCell;
use std::io;
use std::mem::offset_of;
use std::os::fd::RawFd;
use std::ptr::{addr_of, NonNull};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::Transport;

pub const XENSTORE_RING_SIZE: u32 = 1024;
pub const XENSTORE_SERVER_FEATURE_RECONNECTION: u32 = 1;
pub const XENSTORE_SERVER_FEATURE_ERROR: u32 = 2;
pub const XENSTORE_CONNECTED: u32 = 0;
pub const XENSTORE_RECONNECT: u32 = 1;
pub const XENSTORE_ERROR_NONE: u32 = 0;
pub const XENSTORE_ERROR_COMM: u32 = 1;
pub const XENSTORE_ERROR_RINGIDX: u32 = 2;
pub const XENSTORE_ERROR_PROTO: u32 = 3;

/// `struct xenstore_domain_interface` from `io/xs_wire.h`.
#[repr(C)]
pub struct XenstoreDomainInterface {
    pub req: [u8; XENSTORE_RING_SIZE as usize],
    pub rsp: [u8; XENSTORE_RING_SIZE as usize],
    pub req_cons: u32,
    pub req_prod: u32,
    pub rsp_cons: u32,
    pub rsp_prod: u32,
    pub server_features: u32,
    pub connection: u32,
    pub error: u32,
}

// Layout must match the C definition exactly.
const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<XenstoreDomainInterface>() == 2076);
    assert!(align_of::<XenstoreDomainInterface>() == 4);
    assert!(offset_of!(XenstoreDomainInterface, req) == 0);
    assert!(offset_of!(XenstoreDomainInterface, rsp) == 1024);
    assert!(offset_of!(XenstoreDomainInterface, req_cons) == 2048);
    assert!(offset_of!(XenstoreDomainInterface, req_prod) == 2052);
    assert!(offset_of!(XenstoreDomainInterface, rsp_cons) == 2056);
    assert!(offset_of!(XenstoreDomainInterface, rsp_prod) == 2060);
    assert!(offset_of!(XenstoreDomainInterface, server_features) == 2064);
    assert!(offset_of!(XenstoreDomainInterface, connection) == 2068);
    assert!(offset_of!(XenstoreDomainInterface, error) == 2072);
    assert!(size_of::<XenstoreDomainInterface>() <= 4096);
};

/// A 4 KiB page-aligned buffer standing in for a guest page.
#[repr(C, align(4096))]
struct PageBuf(UnsafeCell<[u8; 4096]>);

// SAFETY: all access goes through atomics (indexes) and volatile byte
// accesses (ring data), exactly as with a page shared with another VM.
unsafe impl Sync for PageBuf {}
// SAFETY: as above: the buffer holds plain bytes, owned by whoever holds it.
unsafe impl Send for PageBuf {}

/// A handle to a mapped xenstore page.
#[derive(Clone)]
pub struct RingPage {
    ptr: NonNull<XenstoreDomainInterface>,
    _owner: Option<Arc<dyn Send + Sync>>,
}

// SAFETY: see PageBuf; the page is designed for concurrent access.
unsafe impl Send for RingPage {}
// SAFETY: as above.
unsafe impl Sync for RingPage {}

impl RingPage {
    /// Wraps a mapped page.
    ///
    /// # Safety
    /// `ptr` must point to a mapping of at least
    /// `size_of::<XenstoreDomainInterface>()` bytes, 4-byte aligned, that
    /// stays mapped while any clone of the returned handle exists.
    pub unsafe fn from_raw(ptr: NonNull<u8>) -> RingPage {
        RingPage {
            ptr: ptr.cast(),
            _owner: None,
        }
    }

    /// Wraps a mapped page that `owner` keeps mapped (it is dropped, and
    /// the page unmapped, with the last clone of the handle).
    ///
    /// # Safety
    /// As [`RingPage::from_raw`], for as long as `owner` lives.
    pub unsafe fn from_owned(ptr: NonNull<u8>, owner: Arc<dyn Send + Sync>) -> RingPage {
        RingPage {
            ptr: ptr.cast(),
            _owner: Some(owner),
        }
    }

    /// A zeroed in-memory page; clone the handle for the "guest" side.
    pub fn new_in_memory() -> RingPage {
        let buf: Arc<PageBuf> = Arc::new(PageBuf(UnsafeCell::new([0; 4096])));
        let ptr = NonNull::new(buf.0.get() as *mut XenstoreDomainInterface).expect("non-null");
        RingPage {
            ptr,
            _owner: Some(buf),
        }
    }

    fn iface(&self) -> *mut XenstoreDomainInterface {
        self.ptr.as_ptr()
    }

    /// The 32-bit index field at byte `offset` of the interface.
    fn idx(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(
            offset.is_multiple_of(4) && offset + 4 <= size_of::<XenstoreDomainInterface>()
        );
        // SAFETY: `offset` is one of the interface's u32 fields (the callers
        // below pass `offset_of!`), inside the mapped page and 4-byte
        // aligned; it is only ever accessed atomically by this code (the
        // other side is another VM using its own barriers).
        unsafe { AtomicU32::from_ptr((self.iface() as *mut u8).add(offset) as *mut u32) }
    }

    pub fn req_cons(&self) -> &AtomicU32 {
        self.idx(offset_of!(XenstoreDomainInterface, req_cons))
    }
    pub fn req_prod(&self) -> &AtomicU32 {
        self.idx(offset_of!(XenstoreDomainInterface, req_prod))
    }
    pub fn rsp_cons(&self) -> &AtomicU32 {
        self.idx(offset_of!(XenstoreDomainInterface, rsp_cons))
    }
    pub fn rsp_prod(&self) -> &AtomicU32 {
        self.idx(offset_of!(XenstoreDomainInterface, rsp_prod))
    }
    pub fn server_features(&self) -> &AtomicU32 {
        self.idx(offset_of!(XenstoreDomainInterface, server_features))
    }
    pub fn connection(&self) -> &AtomicU32 {
        self.idx(offset_of!(XenstoreDomainInterface, connection))
    }
    pub fn error(&self) -> &AtomicU32 {
        self.idx(offset_of!(XenstoreDomainInterface, error))
    }

    fn req_data(&self) -> *mut u8 {
        // SAFETY: in-bounds field projection of the mapped struct.
        unsafe { addr_of!((*self.iface()).req) as *mut u8 }
    }

    fn rsp_data(&self) -> *mut u8 {
        // SAFETY: as above.
        unsafe { addr_of!((*self.iface()).rsp) as *mut u8 }
    }
}

/// Copies out of a ring; `Err` on corrupt indexes.
fn ring_read(
    data: *mut u8,
    cons_idx: &AtomicU32,
    prod_idx: &AtomicU32,
    buf: &mut [u8],
) -> io::Result<usize> {
    let cons = cons_idx.load(Ordering::Relaxed);
    let prod = prod_idx.load(Ordering::Acquire);
    let avail = prod.wrapping_sub(cons);
    if avail > XENSTORE_RING_SIZE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "ring index out of range",
        ));
    }
    if avail == 0 {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    let n = (avail as usize).min(buf.len());
    for (i, b) in buf[..n].iter_mut().enumerate() {
        let off = (cons.wrapping_add(i as u32) & (XENSTORE_RING_SIZE - 1)) as usize;
        // SAFETY: off < XENSTORE_RING_SIZE, inside the ring array.
        *b = unsafe { data.add(off).read_volatile() };
    }
    cons_idx.store(cons.wrapping_add(n as u32), Ordering::Release);
    Ok(n)
}

/// Copies into a ring; `Err` on corrupt indexes.
fn ring_write(
    data: *mut u8,
    cons_idx: &AtomicU32,
    prod_idx: &AtomicU32,
    buf: &[u8],
) -> io::Result<usize> {
    let prod = prod_idx.load(Ordering::Relaxed);
    let cons = cons_idx.load(Ordering::Acquire);
    let used = prod.wrapping_sub(cons);
    if used > XENSTORE_RING_SIZE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "ring index out of range",
        ));
    }
    let space = (XENSTORE_RING_SIZE - used) as usize;
    if space == 0 {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    let n = space.min(buf.len());
    for (i, &b) in buf[..n].iter().enumerate() {
        let off = (prod.wrapping_add(i as u32) & (XENSTORE_RING_SIZE - 1)) as usize;
        // SAFETY: off < XENSTORE_RING_SIZE, inside the ring array.
        unsafe { data.add(off).write_volatile(b) };
    }
    prod_idx.store(prod.wrapping_add(n as u32), Ordering::Release);
    Ok(n)
}

/// Event-channel notification hook.
pub type Notify = Box<dyn FnMut() + Send>;

/// Daemon side of a domain's ring.
pub struct RingTransport {
    page: RingPage,
    domid: u32,
    notify: Notify,
    evtchn_fd: Option<RawFd>,
}

impl RingTransport {
    /// Attaches to a page; advertises the features this daemon supports.
    pub fn new(
        page: RingPage,
        domid: u32,
        notify: Notify,
        evtchn_fd: Option<RawFd>,
    ) -> RingTransport {
        page.server_features()
            .store(XENSTORE_SERVER_FEATURE_ERROR, Ordering::Release);
        page.error().store(XENSTORE_ERROR_NONE, Ordering::Release);
        RingTransport {
            page,
            domid,
            notify,
            evtchn_fd,
        }
    }

    fn fail(&mut self, code: u32) {
        self.page.error().store(code, Ordering::Release);
        (self.notify)();
    }
}

impl Transport for RingTransport {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.page.connection().load(Ordering::Acquire) != XENSTORE_CONNECTED {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let r = ring_read(
            self.page.req_data(),
            self.page.req_cons(),
            self.page.req_prod(),
            buf,
        );
        match &r {
            Ok(_) => (self.notify)(),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => self.fail(XENSTORE_ERROR_RINGIDX),
            Err(_) => {}
        }
        r
    }

    fn send(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = ring_write(
            self.page.rsp_data(),
            self.page.rsp_cons(),
            self.page.rsp_prod(),
            buf,
        );
        match &r {
            Ok(_) => (self.notify)(),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => self.fail(XENSTORE_ERROR_RINGIDX),
            Err(_) => {}
        }
        r
    }

    fn poll_fd(&self) -> Option<RawFd> {
        self.evtchn_fd
    }

    fn domid(&self) -> u32 {
        self.domid
    }

    fn protocol_error(&mut self) {
        self.fail(XENSTORE_ERROR_PROTO);
    }

    fn describe(&self) -> String {
        format!("ring of domain {}", self.domid)
    }
}

/// Guest side of a ring (for tests and in-process guests).
pub struct RingClient {
    page: RingPage,
}

impl RingClient {
    pub fn new(page: RingPage) -> RingClient {
        RingClient { page }
    }

    /// Writes as much as fits into `req`.
    pub fn send(&mut self, buf: &[u8]) -> io::Result<usize> {
        ring_write(
            self.page.req_data(),
            self.page.req_cons(),
            self.page.req_prod(),
            buf,
        )
    }

    /// Reads available bytes from `rsp`.
    pub fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        ring_read(
            self.page.rsp_data(),
            self.page.rsp_cons(),
            self.page.rsp_prod(),
            buf,
        )
    }

    pub fn page(&self) -> &RingPage {
        &self.page
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;
    use crate::wire::{FrameDecoder, Message, MsgType};
    use std::sync::atomic::AtomicUsize;

    fn pair() -> (RingTransport, RingClient, Arc<AtomicUsize>) {
        let page = RingPage::new_in_memory();
        let kicks = Arc::new(AtomicUsize::new(0));
        let k = kicks.clone();
        let t = RingTransport::new(
            page.clone(),
            3,
            Box::new(move || {
                k.fetch_add(1, Ordering::Relaxed);
            }),
            None,
        );
        (t, RingClient::new(page), kicks)
    }

    #[test]
    fn features_advertised() {
        let (t, c, _) = pair();
        assert_eq!(
            c.page().server_features().load(Ordering::Relaxed),
            XENSTORE_SERVER_FEATURE_ERROR
        );
        assert_eq!(t.domid(), 3);
    }

    #[test]
    fn bytes_cross_both_rings_with_wraparound() {
        let (mut t, mut c, kicks) = pair();
        let mut buf = [0u8; 700];
        for round in 0..10u8 {
            let data = vec![round; 700];
            assert_eq!(c.send(&data).unwrap(), 700);
            assert_eq!(t.recv(&mut buf).unwrap(), 700);
            assert_eq!(buf, [round; 700]);
            assert_eq!(t.send(&data).unwrap(), 700);
            assert_eq!(c.recv(&mut buf).unwrap(), 700);
            assert_eq!(buf, [round; 700]);
        }
        assert!(kicks.load(Ordering::Relaxed) >= 20);
        assert_eq!(
            t.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        // full ring
        assert_eq!(t.send(&[1; 2000]).unwrap(), 1024);
        assert_eq!(
            t.send(&[1; 10]).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn corrupt_indexes_rejected() {
        let (mut t, c, _) = pair();
        c.page().req_prod().store(5000, Ordering::Relaxed);
        let mut buf = [0u8; 16];
        assert_eq!(
            t.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        assert_eq!(
            c.page().error().load(Ordering::Relaxed),
            XENSTORE_ERROR_RINGIDX
        );
        c.page().rsp_cons().store(2000, Ordering::Relaxed);
        assert_eq!(t.send(b"x").unwrap_err().kind(), io::ErrorKind::InvalidData);
        t.protocol_error();
        assert_eq!(
            c.page().error().load(Ordering::Relaxed),
            XENSTORE_ERROR_PROTO
        );
    }

    #[test]
    fn index_wraps_at_u32_max() {
        let (mut t, mut c, _) = pair();
        for idx in [c.page().req_cons(), c.page().req_prod()] {
            idx.store(u32::MAX - 3, Ordering::Relaxed);
        }
        assert_eq!(c.send(b"abcdefgh").unwrap(), 8);
        let mut buf = [0u8; 8];
        assert_eq!(t.recv(&mut buf).unwrap(), 8);
        assert_eq!(&buf, b"abcdefgh");
        assert_eq!(c.page().req_cons().load(Ordering::Relaxed), 4);
    }

    #[test]
    fn guest_session_over_ring() {
        // A whole request/response exchange: a guest (domid 3) writes and
        // reads its own home, driven by the engine, over the in-memory page.
        let (mut t, mut c, _) = pair();
        let mut e = Engine::default();
        let admin = e.add_connection(0);
        e.handle(
            admin,
            Message::new(MsgType::Mkdir, 1, 0, b"/local/domain/3\0".to_vec()),
        );
        e.handle(
            admin,
            Message::new(MsgType::SetPerms, 2, 0, b"/local/domain/3\0n3\0".to_vec()),
        );
        let g = e.add_connection(3);
        let mut dec = FrameDecoder::new();
        let mut cdec = FrameDecoder::new();
        let reqs = [
            Message::new(MsgType::Write, 1, 0, b"name\0guest-three".to_vec()),
            Message::new(MsgType::Read, 2, 0, b"name\0".to_vec()),
            Message::new(MsgType::Read, 3, 0, b"/local/domain\0".to_vec()),
        ];
        let mut replies = Vec::new();
        for r in &reqs {
            c.send(&r.to_bytes()).unwrap();
            let mut buf = [0u8; 1024];
            let n = t.recv(&mut buf).unwrap();
            for m in dec.push(&buf[..n]).unwrap() {
                e.handle(g, m);
            }
            let out = e.take_output(g, usize::MAX);
            t.send(&out).unwrap();
            let n = c.recv(&mut buf).unwrap();
            replies.extend(cdec.push(&buf[..n]).unwrap());
        }
        assert_eq!(replies[0].payload, b"OK\0");
        assert_eq!(replies[1].payload, b"guest-three");
        assert_eq!(replies[2].header.ty, MsgType::Error as u32);
        assert_eq!(replies[2].payload, b"EACCES\0");
    }
}
