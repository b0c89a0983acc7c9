//! Unix domain socket transport. Socket clients are dom0 tools and get
//! domid 0 (privileged), as with C xenstored.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

use super::Transport;

pub struct UnixTransport {
    stream: UnixStream,
}

impl UnixTransport {
    pub fn new(stream: UnixStream) -> io::Result<UnixTransport> {
        stream.set_nonblocking(true)?;
        Ok(UnixTransport { stream })
    }
}

impl Transport for UnixTransport {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }

    fn send(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn poll_fd(&self) -> Option<RawFd> {
        Some(self.stream.as_raw_fd())
    }

    fn domid(&self) -> u32 {
        0
    }

    fn describe(&self) -> String {
        format!("socket fd {}", self.stream.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_roundtrip() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut t = UnixTransport::new(a).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(
            t.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        b.write_all(b"hi").unwrap();
        assert_eq!(t.recv(&mut buf).unwrap(), 2);
        assert_eq!(t.send(b"yo").unwrap(), 2);
        let mut r = [0u8; 2];
        b.read_exact(&mut r).unwrap();
        assert_eq!(&r, b"yo");
        drop(b);
        assert_eq!(t.recv(&mut buf).unwrap(), 0);
        assert_eq!(t.domid(), 0);
        assert!(t.poll_fd().is_some());
    }
}
