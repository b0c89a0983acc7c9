//! keel's console ring (Xen's "conring"): the newest [`RING_BYTES`] bytes
//! of everything keel printed, which dom0 reads with `keelctl dmesg`.

/// Size of the console ring.
pub const RING_BYTES: usize = 64 * 1024;

/// The newest [`RING_BYTES`] bytes of console output.
pub struct Ring {
    buf: [u8; RING_BYTES],
    /// Bytes ever written (the next byte goes to `total % RING_BYTES`).
    total: u64,
    /// `total` when the ring was last cleared.
    start: u64,
}

impl Ring {
    pub const fn new() -> Self {
        Ring {
            buf: [0; RING_BYTES],
            total: 0,
            start: 0,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.buf[(self.total % RING_BYTES as u64) as usize] = b;
            self.total += 1;
        }
    }

    /// Bytes held: written since the last clear, at most [`RING_BYTES`].
    pub fn len(&self) -> usize {
        (self.total - self.start).min(RING_BYTES as u64) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the newest `out.len()` (or fewer) held bytes, oldest first.
    pub fn read(&self, out: &mut [u8]) -> usize {
        let n = self.len().min(out.len());
        let first = self.total - n as u64;
        for (i, o) in out[..n].iter_mut().enumerate() {
            *o = self.buf[((first + i as u64) % RING_BYTES as u64) as usize];
        }
        n
    }

    pub fn clear(&mut self) {
        self.start = self.total;
    }
}

impl Default for Ring {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;

    #[test]
    fn ring_keeps_the_newest_bytes_in_order() {
        let mut r = Box::new(Ring::new());
        let mut out = [0u8; 16];
        assert_eq!(r.read(&mut out), 0);
        r.push(b"hello\n");
        assert_eq!(r.read(&mut out), 6);
        assert_eq!(&out[..6], b"hello\n");
        // A smaller buffer gets the newest bytes.
        let mut small = [0u8; 3];
        assert_eq!(r.read(&mut small), 3);
        assert_eq!(&small, b"lo\n");
        // Wrap: write 1.5 rings of a counting pattern.
        let data: std::vec::Vec<u8> = (0..RING_BYTES * 3 / 2).map(|i| (i % 251) as u8).collect();
        r.push(&data);
        assert_eq!(r.len(), RING_BYTES);
        let mut all = std::vec![0u8; RING_BYTES + 10];
        assert_eq!(r.read(&mut all), RING_BYTES);
        assert_eq!(&all[..RING_BYTES], &data[data.len() - RING_BYTES..]);
        r.clear();
        assert!(r.is_empty());
        r.push(b"x");
        assert_eq!(r.read(&mut out), 1);
        assert_eq!(out[0], b'x');
    }
}
