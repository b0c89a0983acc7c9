//! Transports: how request bytes reach the daemon and replies leave it.
//!
//! Both the Unix socket (dom0 tools) and the shared-page ring (guests) are
//! non-blocking byte pipes behind [`Transport`]; framing is done by
//! [`crate::wire::FrameDecoder`] in the server, identically for both.

use std::io;
use std::os::fd::RawFd;

pub mod ring;
pub mod unix;
pub mod xendev;

/// A non-blocking, bidirectional byte stream to one client.
pub trait Transport: Send {
    /// Reads available bytes. `Ok(0)`: the peer closed the connection.
    /// `Err(WouldBlock)`: nothing available now.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes some bytes. `Err(WouldBlock)`: no room now.
    fn send(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// File descriptor that becomes readable when `recv` may make progress;
    /// `None` means the server must poll it periodically.
    fn poll_fd(&self) -> Option<RawFd>;
    /// The domain this connection speaks for (0 = privileged).
    fn domid(&self) -> u32;
    /// Called before the server drops a connection for a protocol
    /// violation (the ring records it in the page's `error` field).
    fn protocol_error(&mut self) {}
    /// Human-readable description for logs.
    fn describe(&self) -> String;
}
