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

    /// The absolute position of the oldest byte held.
    fn oldest(&self) -> u64 {
        self.start.max(self.total.saturating_sub(RING_BYTES as u64))
    }

    /// The absolute position a 32-bit ring index names: the newest
    /// position at or before the end whose low 32 bits are `index` (none
    /// if that would be before the first byte ever written).
    fn absolute(&self, index: u32) -> Option<u64> {
        self.total
            .checked_sub((self.total as u32).wrapping_sub(index) as u64)
    }

    /// Xen's `readconsole` (sysctl): copies held bytes, oldest first, from
    /// the oldest, or from `index` (a 32-bit position, as Xen's ring
    /// indices are) if `incremental` and it lies within what is held;
    /// returns the bytes copied and the index after them, to pass back in
    /// the next call.
    pub fn read_from(&self, incremental: bool, index: u32, out: &mut [u8]) -> (usize, u32) {
        let oldest = self.oldest();
        let mut from = oldest;
        if incremental {
            if let Some(at) = self.absolute(index).filter(|&a| a > oldest) {
                from = at;
            }
        }
        let n = ((self.total - from) as usize).min(out.len());
        for (i, o) in out[..n].iter_mut().enumerate() {
            *o = self.buf[((from + i as u64) % RING_BYTES as u64) as usize];
        }
        (n, (from + n as u64) as u32)
    }

    /// Forgets the bytes before `index` (a position [`Ring::read_from`]
    /// returned): Xen's `readconsole` with `clear`.
    pub fn clear_to(&mut self, index: u32) {
        if let Some(at) = self.absolute(index).filter(|&a| a > self.start) {
            self.start = at;
        }
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

    #[test]
    fn xen_readconsole_reads_from_an_index_and_clears_up_to_it() {
        let mut r = Box::new(Ring::new());
        let mut out = [0u8; 8];
        assert_eq!(r.read_from(false, 0, &mut out), (0, 0));
        r.push(b"0123456789");
        // From the oldest, a buffer at a time, as xl dmesg iterates.
        assert_eq!(r.read_from(true, 0, &mut out), (8, 8));
        assert_eq!(&out, b"01234567");
        assert_eq!(r.read_from(true, 8, &mut out), (2, 10));
        assert_eq!(&out[..2], b"89");
        assert_eq!(r.read_from(true, 10, &mut out), (0, 10));
        // Not incremental: from the oldest whatever the index.
        assert_eq!(r.read_from(false, 8, &mut out).0, 8);
        // An index outside what is held reads from the oldest.
        assert_eq!(r.read_from(true, 1000, &mut out), (8, 8));
        // Clear up to what was read: the rest stays.
        r.clear_to(8);
        assert_eq!(r.read_from(false, 0, &mut out), (2, 10));
        assert_eq!(&out[..2], b"89");
        assert_eq!(
            r.read_from(true, 3, &mut out),
            (2, 10),
            "cleared bytes are gone"
        );
        // Past a wrap of the ring the oldest bytes are the newest RING_BYTES.
        let data: std::vec::Vec<u8> = (0..RING_BYTES * 2).map(|i| (i % 253) as u8).collect();
        r.push(&data);
        let total = 10 + data.len();
        let mut all = std::vec![0u8; RING_BYTES];
        let (n, next) = r.read_from(true, 0, &mut all);
        assert_eq!((n, next as usize), (RING_BYTES, total));
        assert_eq!(&all[..], &data[data.len() - RING_BYTES..]);
    }
}
