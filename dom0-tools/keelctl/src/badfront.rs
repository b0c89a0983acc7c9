//! A misbehaving block frontend, for the split-driver scenario (issue 15,
//! item 5): what `keel-bad-frontend` puts in a blkif ring it shares with
//! dom0's blkback in place of xen-blkfront, and how it reads what came
//! back. Pure, so that the layout and the garbage are host-tested; the
//! binary does the granting, the event channel and xenstore.
//!
//! The ring (Xen's `public/io/ring.h` and `public/io/blkif.h`, x86_64
//! ABI): a shared page whose header holds `req_prod`, `req_event`,
//! `rsp_prod` and `rsp_event` (32 bits each) and is padded to 64 bytes;
//! then 32 entries (the largest power of two that fits) of 112 bytes, the
//! size of `struct blkif_request`, each either a request or a response
//! (`id` u64, `operation` u8, `status` i16 at byte 10).
//!
//! What blkback owes (Linux `drivers/block/xen-blkback/blkback.c`): a
//! garbage request gets an error response (unknown operation, too many
//! segments, a sector past the end, a grant it cannot map) and the ring
//! goes on; a `req_prod` more than a ring ahead of its responses
//! ("Frontend provided bogus ring requests") halts that ring alone.
//! keel's part: every grant map blkback asks for on the bad domain's
//! behalf fails cleanly, and nothing else is disturbed.

/// Bytes of the shared ring page.
pub const PAGE: usize = 4096;
/// Byte offsets of the header's indexes.
pub const REQ_PROD: usize = 0;
pub const REQ_EVENT: usize = 4;
pub const RSP_PROD: usize = 8;
pub const RSP_EVENT: usize = 12;
/// Where the entries start (the header's padded size).
pub const ENTRIES: usize = 64;
/// Bytes of one entry (`sizeof(struct blkif_request)`, x86_64).
pub const ENTRY: usize = 112;
/// Entries in a one-page ring (`__RING_SIZE`).
pub const RING_SIZE: u32 = 32;

const _: () = assert!(ENTRIES + ENTRY * RING_SIZE as usize <= PAGE);
const _: () = assert!(ENTRIES + ENTRY * 2 * RING_SIZE as usize > PAGE);

/// Byte offset of entry `i` (modulo the ring).
pub fn entry(i: u32) -> usize {
    ENTRIES + ENTRY * (i % RING_SIZE) as usize
}

/// `struct blkif_request` (x86_64): `operation` u8 at 0, `nr_segments`
/// u8 at 1, `handle` u16 at 2, `id` u64 at 8, `sector_number` u64 at 16,
/// then 11 segments of 8 bytes from 24: `gref` u32, `first_sect` u8,
/// `last_sect` u8.
pub const BLKIF_OP_READ: u8 = 0;
pub const BLKIF_OP_WRITE: u8 = 1;
/// Segments a direct request may carry.
pub const MAX_SEGMENTS: u32 = 11;
const SEGMENTS: usize = 24;

/// The page's words for a ring of `requests` garbage requests (at most
/// [`RING_SIZE`]) behind a header that is valid (the requests are
/// published, no response yet, events wanted). Entry `i`'s garbage by
/// `i % 4`: 0, random bytes; 1 and 2, a read or a write of a sector of
/// the first 2048 (so that blkback gets as far as mapping its pages),
/// with 0 to 12 segments whose grant references are random, small (2 to
/// 7: entries Linux reserves and leaves unused) or, for a write (the
/// disk is written from the page), the ring page's own `ring_gref`; 3,
/// another operation
/// (barrier, flush, discard, indirect) or a random one, on random
/// fields.
pub fn garbage_ring(seed: u64, requests: u32, ring_gref: u32) -> Vec<u32> {
    assert!(requests <= RING_SIZE, "{requests} requests do not fit");
    // Deterministic (keel-privcmd-fuzz's generator), so that a failing
    // run's garbage can be had again from its seed.
    let mut g = crate::fuzz::Rng::new(seed);
    let mut words: Vec<u32> = (0..PAGE / 4).map(|_| g.next_u32()).collect();
    for i in 0..RING_SIZE {
        let w = entry(i) / 4;
        let r = g.next_u32();
        let (op, nr) = match i % 4 {
            0 => continue,
            1 | 2 => {
                let nr = if r.is_multiple_of(8) {
                    (r >> 8) % 2 * 12
                } else {
                    1 + (r >> 8) % MAX_SEGMENTS
                };
                (
                    if i % 4 == 1 {
                        BLKIF_OP_READ
                    } else {
                        BLKIF_OP_WRITE
                    },
                    nr,
                )
            }
            _ => (
                [2u8, 3, 5, 6, r as u8][(r >> 8) as usize % 5],
                (r >> 16) % 16,
            ),
        };
        // operation, nr_segments, handle (kept random); id = i.
        words[w] = (words[w] & 0xffff_0000) | op as u32 | (nr << 8);
        words[w + 2] = i;
        words[w + 3] = 0;
        if op <= BLKIF_OP_WRITE {
            words[w + 4] = g.next_u32() % 2048;
            words[w + 5] = 0;
            for s in 0..MAX_SEGMENTS as usize {
                let sw = (entry(i) + SEGMENTS + 8 * s) / 4;
                let r = g.next_u32();
                words[sw] = match r % 3 {
                    0 => 2 + (r >> 2) % 6,
                    2 if op == BLKIF_OP_WRITE => ring_gref,
                    _ => g.next_u32(),
                };
                let first = (r >> 8) % 8;
                let last = first + (r >> 12) % (8 - first);
                words[sw + 1] = first | (last << 8);
            }
        }
    }
    words[REQ_PROD / 4] = requests;
    words[REQ_EVENT / 4] = 1;
    words[RSP_PROD / 4] = 0;
    words[RSP_EVENT / 4] = 1;
    for w in &mut words[4..ENTRIES / 4] {
        *w = 0;
    }
    words
}

/// A response's status from the word at byte 8 of its entry
/// (`operation` in the low byte, `status` in the high half).
pub fn response_status(word8: u32) -> i16 {
    (word8 >> 16) as u16 as i16
}

/// Counts of each status among responses, as `0: 3, -1: 29`.
pub fn histogram(statuses: &[i16]) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for s in statuses {
        *counts.entry(*s).or_insert(0u32) += 1;
    }
    counts
        .iter()
        .rev()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `req_prod` that blkback must take for a broken ring: `ahead`
/// entries past the responses it has given, more than a ring.
pub fn bogus_req_prod(rsp_prod: u32, ahead: u32) -> u32 {
    assert!(ahead > RING_SIZE);
    rsp_prod.wrapping_add(ahead)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_layout_is_blkifs() {
        // 32 entries of 112 bytes after a 64-byte header, as __RING_SIZE
        // computes for one page.
        assert_eq!((PAGE - ENTRIES) / ENTRY, 36);
        assert_eq!(entry(0), 64);
        assert_eq!(entry(31), 64 + 31 * 112);
        assert_eq!(entry(32), entry(0));
    }

    #[test]
    fn garbage_has_a_valid_header_and_random_entries() {
        let w = garbage_ring(7, 32, 9);
        assert_eq!(w.len(), 1024);
        assert_eq!(&w[..4], &[32, 1, 0, 1]);
        assert!(w[4..16].iter().all(|&x| x == 0));
        // Random after the header, the same for the same seed, not for another.
        let distinct: std::collections::BTreeSet<u32> = w[16..].iter().copied().collect();
        assert!(distinct.len() > 600, "{}", distinct.len());
        assert_eq!(w, garbage_ring(7, 32, 9));
        assert_ne!(w[16..], garbage_ring(8, 32, 9)[16..]);
    }

    #[test]
    #[should_panic(expected = "33 requests do not fit")]
    fn more_requests_than_the_ring_holds_are_refused() {
        garbage_ring(1, 33, 9);
    }

    #[test]
    fn reads_and_writes_reach_the_grant_maps() {
        let w = garbage_ring(3, 32, 9);
        let mut segs = 0;
        let mut refs = std::collections::BTreeSet::new();
        for i in 0..RING_SIZE {
            let e = entry(i) / 4;
            let (op, nr) = (w[e] as u8, (w[e] >> 8) as u8 as u32);
            match i % 4 {
                1 => assert_eq!(op, BLKIF_OP_READ),
                2 => assert_eq!(op, BLKIF_OP_WRITE),
                _ => continue,
            }
            assert_eq!(w[e + 2], i, "id");
            assert!(w[e + 4] < 2048 && w[e + 5] == 0, "sector inside the disk");
            assert!(nr <= 12);
            for s in 0..nr.min(MAX_SEGMENTS) as usize {
                let sw = (entry(i) + SEGMENTS + 8 * s) / 4;
                let (first, last) = (w[sw + 1] & 0xff, (w[sw + 1] >> 8) & 0xff);
                assert!(first <= last && last < 8, "{first}..{last}");
                refs.insert(w[sw]);
                segs += 1;
            }
        }
        assert!(segs > 40, "{segs}");
        assert!(refs.contains(&9), "the ring's own page");
        assert!(refs.iter().any(|&r| (2..8).contains(&r)) && refs.iter().any(|&r| r > 1 << 20));
        assert!(
            !refs.contains(&0) && !refs.contains(&1),
            "console and xenstore pages"
        );
    }

    #[test]
    fn statuses_and_their_counts() {
        // operation 1 (write), status -1 (BLKIF_RSP_ERROR).
        assert_eq!(response_status(0xffff_0001), -1);
        assert_eq!(response_status(0xfffe_0000), -2);
        assert_eq!(response_status(0x0000_0003), 0);
        assert_eq!(histogram(&[-1, 0, -1, -2]), "0: 1, -1: 2, -2: 1");
        assert_eq!(histogram(&[]), "");
    }

    #[test]
    fn a_bogus_producer_is_more_than_a_ring_ahead() {
        assert_eq!(bogus_req_prod(32, 1000), 1032);
        assert_eq!(bogus_req_prod(u32::MAX, 1000), 999);
    }
}
