//! The xenstore wire protocol (Xen's `io/xs_wire.h`, `docs/misc/xenstore.txt`).
//!
//! Every message, in both directions, is a 16-byte little-endian header
//! `{type, req_id, tx_id, len}` followed by `len` payload bytes, with
//! `len <= XENSTORE_PAYLOAD_MAX`.

use std::fmt;

/// Maximum payload length in either direction.
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;
/// Maximum length of an absolute path.
pub const XENSTORE_ABS_PATH_MAX: usize = 3072;
/// Maximum length of a relative path.
pub const XENSTORE_REL_PATH_MAX: usize = 2048;
/// Size of the message header.
pub const HEADER_LEN: usize = 16;

/// Message types (`enum xsd_sockmsg_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MsgType {
    Control = 0,
    Directory = 1,
    Read = 2,
    GetPerms = 3,
    Watch = 4,
    Unwatch = 5,
    TransactionStart = 6,
    TransactionEnd = 7,
    Introduce = 8,
    Release = 9,
    GetDomainPath = 10,
    Write = 11,
    Mkdir = 12,
    Rm = 13,
    SetPerms = 14,
    WatchEvent = 15,
    Error = 16,
    IsDomainIntroduced = 17,
    Resume = 18,
    SetTarget = 19,
    // 20 was XS_RESTRICT, removed from the protocol.
    ResetWatches = 21,
    DirectoryPart = 22,
}

impl MsgType {
    /// Decodes a raw type; `None` for unknown/removed types.
    pub fn from_u32(v: u32) -> Option<MsgType> {
        use MsgType::*;
        Some(match v {
            0 => Control,
            1 => Directory,
            2 => Read,
            3 => GetPerms,
            4 => Watch,
            5 => Unwatch,
            6 => TransactionStart,
            7 => TransactionEnd,
            8 => Introduce,
            9 => Release,
            10 => GetDomainPath,
            11 => Write,
            12 => Mkdir,
            13 => Rm,
            14 => SetPerms,
            15 => WatchEvent,
            16 => Error,
            17 => IsDomainIntroduced,
            18 => Resume,
            19 => SetTarget,
            21 => ResetWatches,
            22 => DirectoryPart,
            _ => return None,
        })
    }
}

/// Error names as transmitted in `XS_ERROR` payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XsError {
    EINVAL,
    EACCES,
    EEXIST,
    EISDIR,
    ENOENT,
    ENOMEM,
    ENOSPC,
    EIO,
    ENOTEMPTY,
    ENOSYS,
    EROFS,
    EBUSY,
    EAGAIN,
    EISCONN,
    E2BIG,
    EPERM,
    /// Not in `xs_wire.h`'s table; oxenstored sends it for quota violations
    /// (libxenstore maps unknown names to EINVAL on the client side).
    EQUOTA,
}

impl XsError {
    pub fn as_str(self) -> &'static str {
        use XsError::*;
        match self {
            EINVAL => "EINVAL",
            EACCES => "EACCES",
            EEXIST => "EEXIST",
            EISDIR => "EISDIR",
            ENOENT => "ENOENT",
            ENOMEM => "ENOMEM",
            ENOSPC => "ENOSPC",
            EIO => "EIO",
            ENOTEMPTY => "ENOTEMPTY",
            ENOSYS => "ENOSYS",
            EROFS => "EROFS",
            EBUSY => "EBUSY",
            EAGAIN => "EAGAIN",
            EISCONN => "EISCONN",
            E2BIG => "E2BIG",
            EPERM => "EPERM",
            EQUOTA => "EQUOTA",
        }
    }

    /// Parses an error name (with or without trailing nul).
    pub fn parse(b: &[u8]) -> Option<XsError> {
        use XsError::*;
        let b = b.strip_suffix(b"\0").unwrap_or(b);
        [
            EINVAL, EACCES, EEXIST, EISDIR, ENOENT, ENOMEM, ENOSPC, EIO, ENOTEMPTY, ENOSYS, EROFS,
            EBUSY, EAGAIN, EISCONN, E2BIG, EPERM, EQUOTA,
        ]
        .into_iter()
        .find(|e| e.as_str().as_bytes() == b)
    }
}

impl fmt::Display for XsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for XsError {}

/// `struct xsd_sockmsg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub ty: u32,
    pub req_id: u32,
    pub tx_id: u32,
    pub len: u32,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.ty.to_le_bytes());
        b[4..8].copy_from_slice(&self.req_id.to_le_bytes());
        b[8..12].copy_from_slice(&self.tx_id.to_le_bytes());
        b[12..16].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; HEADER_LEN]) -> Header {
        let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Header {
            ty: w(0),
            req_id: w(4),
            tx_id: w(8),
            len: w(12),
        }
    }
}

/// A complete message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub payload: Vec<u8>,
}

impl Message {
    pub fn new(ty: MsgType, req_id: u32, tx_id: u32, payload: Vec<u8>) -> Message {
        Message {
            header: Header {
                ty: ty as u32,
                req_id,
                tx_id,
                len: payload.len() as u32,
            },
            payload,
        }
    }

    /// Header + payload as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER_LEN + self.payload.len());
        let mut h = self.header;
        h.len = self.payload.len() as u32;
        v.extend_from_slice(&h.encode());
        v.extend_from_slice(&self.payload);
        v
    }

    pub fn msg_type(&self) -> Option<MsgType> {
        MsgType::from_u32(self.header.ty)
    }
}

/// Protocol violations that make a connection unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// `len` exceeds `XENSTORE_PAYLOAD_MAX`.
    Oversized(u32),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Oversized(n) => {
                write!(f, "payload length {n} exceeds {XENSTORE_PAYLOAD_MAX}")
            }
        }
    }
}

/// Incremental decoder: feed arbitrary byte chunks, pull whole messages.
///
/// Buffers at most one header plus one maximal payload, so a hostile peer
/// cannot make it grow without bound.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    /// How many bytes the decoder wants before it can make progress
    /// (callers should not read more than this, to keep buffering bounded).
    pub fn wanted(&self) -> usize {
        if self.buf.len() < HEADER_LEN {
            return HEADER_LEN - self.buf.len();
        }
        let h = self.header().unwrap_or_default();
        (HEADER_LEN + h.len as usize).saturating_sub(self.buf.len())
    }

    fn header(&self) -> Option<Header> {
        let hb: &[u8; HEADER_LEN] = self.buf.get(..HEADER_LEN)?.try_into().ok()?;
        Some(Header::decode(hb))
    }

    /// Appends bytes; returns every message completed by them. The input is
    /// consumed completely; bytes beyond complete messages stay buffered.
    pub fn push(&mut self, mut data: &[u8]) -> Result<Vec<Message>, FrameError> {
        let mut out = Vec::new();
        if let Some(e) = self.failed {
            return Err(e);
        }
        while !data.is_empty() {
            let want = self.wanted();
            let take = want.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if let Some(h) = self.header() {
                if h.len as usize > XENSTORE_PAYLOAD_MAX {
                    let e = FrameError::Oversized(h.len);
                    self.failed = Some(e);
                    return Err(e);
                }
                if self.buf.len() == HEADER_LEN + h.len as usize {
                    let payload = self.buf.split_off(HEADER_LEN);
                    self.buf.clear();
                    out.push(Message { header: h, payload });
                }
            }
        }
        Ok(out)
    }

    /// True if a partial message is buffered.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }
}

/// Splits a payload into nul-terminated strings. Returns `None` unless the
/// payload is exactly `count` strings each followed by a nul.
pub fn split_strings(payload: &[u8], count: usize) -> Option<Vec<&[u8]>> {
    if payload.last() != Some(&0) {
        return None;
    }
    let parts: Vec<&[u8]> = payload[..payload.len() - 1].split(|&b| b == 0).collect();
    (parts.len() == count).then_some(parts)
}

/// Splits a payload into all of its nul-terminated strings (at least one).
pub fn split_all(payload: &[u8]) -> Option<Vec<&[u8]>> {
    if payload.last() != Some(&0) {
        return None;
    }
    Some(payload[..payload.len() - 1].split(|&b| b == 0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_le() {
        let h = Header {
            ty: 2,
            req_id: 0x01020304,
            tx_id: 7,
            len: 5,
        };
        let b = h.encode();
        assert_eq!(&b[4..8], &[4, 3, 2, 1]);
        assert_eq!(Header::decode(&b), h);
    }

    #[test]
    fn types_roundtrip() {
        for v in 0..40u32 {
            if let Some(t) = MsgType::from_u32(v) {
                assert_eq!(t as u32, v);
            }
        }
        assert!(MsgType::from_u32(20).is_none());
        assert!(MsgType::from_u32(0xffff).is_none());
    }

    #[test]
    fn decoder_handles_fragments_and_batches() {
        let m1 = Message::new(MsgType::Read, 1, 0, b"/a\0".to_vec()).to_bytes();
        let m2 = Message::new(MsgType::TransactionStart, 2, 0, vec![]).to_bytes();
        let m3 = Message::new(MsgType::Write, 3, 0, b"/b\0xyz".to_vec()).to_bytes();
        let mut all = m1.clone();
        all.extend(&m2);
        all.extend(&m3);
        // byte at a time
        let mut d = FrameDecoder::new();
        let mut got = Vec::new();
        for b in &all {
            got.extend(d.push(std::slice::from_ref(b)).unwrap());
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].payload, b"");
        assert_eq!(got[2].payload, b"/b\0xyz");
        // all at once
        let mut d = FrameDecoder::new();
        assert_eq!(d.push(&all).unwrap().len(), 3);
        assert!(!d.has_partial());
    }

    #[test]
    fn decoder_rejects_oversized() {
        let h = Header {
            ty: 2,
            req_id: 0,
            tx_id: 0,
            len: 4097,
        };
        let mut d = FrameDecoder::new();
        assert_eq!(d.push(&h.encode()), Err(FrameError::Oversized(4097)));
        assert!(d.push(b"x").is_err());
        let h = Header {
            ty: 2,
            req_id: 0,
            tx_id: 0,
            len: 4096,
        };
        let mut d = FrameDecoder::new();
        let mut b = h.encode().to_vec();
        b.extend(vec![0u8; 4096]);
        assert_eq!(d.push(&b).unwrap().len(), 1);
    }

    #[test]
    fn split_helpers() {
        assert_eq!(
            split_strings(b"a\0b\0", 2),
            Some(vec![&b"a"[..], &b"b"[..]])
        );
        assert_eq!(split_strings(b"a\0b", 2), None);
        assert_eq!(split_strings(b"a\0", 2), None);
        assert_eq!(split_all(b"\0"), Some(vec![&b""[..]]));
        assert_eq!(split_all(b""), None);
        assert_eq!(XsError::parse(b"EAGAIN\0"), Some(XsError::EAGAIN));
        assert_eq!(XsError::parse(b"nope"), None);
    }
}
