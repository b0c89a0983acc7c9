//! A minimal blocking xenstore client over the Unix socket. Used by the
//! tests and as the benchmark's fallback when libxenstore is unavailable.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::wire::{FrameDecoder, Message, MsgType, XsError};

#[derive(Debug)]
pub enum ClientError {
    Io(io::Error),
    Xs(XsError),
    /// Unparseable reply or an error name we don't know.
    Protocol(String),
}

impl PartialEq for ClientError {
    fn eq(&self, o: &ClientError) -> bool {
        match (self, o) {
            (ClientError::Xs(a), ClientError::Xs(b)) => a == b,
            (ClientError::Protocol(a), ClientError::Protocol(b)) => a == b,
            (ClientError::Io(a), ClientError::Io(b)) => a.kind() == b.kind(),
            _ => false,
        }
    }
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

impl From<XsError> for ClientError {
    fn from(e: XsError) -> Self {
        ClientError::Xs(e)
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "i/o: {e}"),
            ClientError::Xs(e) => write!(f, "xenstore: {e}"),
            ClientError::Protocol(m) => write!(f, "protocol: {m}"),
        }
    }
}

impl std::error::Error for ClientError {}

pub type Result<T> = std::result::Result<T, ClientError>;

pub struct Client {
    s: UnixStream,
    dec: FrameDecoder,
    events: VecDeque<(String, String)>,
    inbox: VecDeque<Message>,
    next_req: u32,
}

fn z(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

impl Client {
    pub fn connect(path: &Path) -> Result<Client> {
        Ok(Client {
            s: UnixStream::connect(path)?,
            dec: FrameDecoder::new(),
            events: VecDeque::new(),
            inbox: VecDeque::new(),
            next_req: 1,
        })
    }

    /// Bounds each wait for the daemon (`None`: wait for ever).
    pub fn set_timeout(&self, t: Option<std::time::Duration>) -> Result<()> {
        self.s.set_read_timeout(t)?;
        self.s.set_write_timeout(t)?;
        Ok(())
    }

    fn read_msg(&mut self) -> Result<Message> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(m) = self.inbox.pop_front() {
                return Ok(m);
            }
            let n = self.s.read(&mut buf)?;
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
            let msgs = self
                .dec
                .push(&buf[..n])
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            self.inbox.extend(msgs);
        }
    }

    fn stash(&mut self, m: Message) -> Result<()> {
        if m.header.ty != MsgType::WatchEvent as u32 {
            return Err(ClientError::Protocol(format!(
                "unexpected message type {}",
                m.header.ty
            )));
        }
        let parts: Vec<String> = m
            .payload
            .split(|&b| b == 0)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        if parts.len() < 2 {
            return Err(ClientError::Protocol("short watch event".into()));
        }
        self.events.push_back((parts[0].clone(), parts[1].clone()));
        Ok(())
    }

    /// Sends a raw request and waits for its reply payload.
    pub fn request(&mut self, ty: MsgType, tx: u32, payload: &[u8]) -> Result<Vec<u8>> {
        let req = self.next_req;
        self.next_req = self.next_req.wrapping_add(1);
        self.s
            .write_all(&Message::new(ty, req, tx, payload.to_vec()).to_bytes())?;
        loop {
            let m = self.read_msg()?;
            if m.header.ty == MsgType::WatchEvent as u32 {
                self.stash(m)?;
                continue;
            }
            if m.header.req_id != req {
                return Err(ClientError::Protocol(format!(
                    "reply for req {} != {req}",
                    m.header.req_id
                )));
            }
            if m.header.ty == MsgType::Error as u32 {
                return Err(XsError::parse(&m.payload)
                    .map(ClientError::Xs)
                    .unwrap_or_else(|| {
                        ClientError::Protocol(String::from_utf8_lossy(&m.payload).into())
                    }));
            }
            return Ok(m.payload);
        }
    }

    pub fn read(&mut self, path: &str) -> Result<Vec<u8>> {
        self.request(MsgType::Read, 0, &z(path))
    }

    pub fn read_tx(&mut self, tx: u32, path: &str) -> Result<Vec<u8>> {
        self.request(MsgType::Read, tx, &z(path))
    }

    pub fn write(&mut self, path: &str, value: &[u8]) -> Result<()> {
        self.write_tx(0, path, value)
    }

    pub fn write_tx(&mut self, tx: u32, path: &str, value: &[u8]) -> Result<()> {
        let mut p = z(path);
        p.extend_from_slice(value);
        self.request(MsgType::Write, tx, &p).map(drop)
    }

    pub fn mkdir(&mut self, path: &str) -> Result<()> {
        self.request(MsgType::Mkdir, 0, &z(path)).map(drop)
    }

    pub fn rm(&mut self, path: &str) -> Result<()> {
        self.request(MsgType::Rm, 0, &z(path)).map(drop)
    }

    pub fn directory(&mut self, path: &str) -> Result<Vec<String>> {
        let r = self.request(MsgType::Directory, 0, &z(path))?;
        Ok(r.split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect())
    }

    pub fn set_perms(&mut self, path: &str, perms: &[&str]) -> Result<()> {
        self.set_perms_tx(0, path, perms)
    }

    pub fn set_perms_tx(&mut self, tx: u32, path: &str, perms: &[&str]) -> Result<()> {
        let mut p = z(path);
        for x in perms {
            p.extend(z(x));
        }
        self.request(MsgType::SetPerms, tx, &p).map(drop)
    }

    /// `INTRODUCE domid gfn port`: the daemon attaches the domain's ring.
    pub fn introduce(&mut self, domid: u32, gfn: u64, port: u32) -> Result<()> {
        let mut p = z(&domid.to_string());
        p.extend(z(&gfn.to_string()));
        p.extend(z(&port.to_string()));
        self.request(MsgType::Introduce, 0, &p).map(drop)
    }

    pub fn watch(&mut self, path: &str, token: &str) -> Result<()> {
        let mut p = z(path);
        p.extend(z(token));
        self.request(MsgType::Watch, 0, &p).map(drop)
    }

    /// Blocks until a watch event arrives.
    pub fn wait_event(&mut self) -> Result<(String, String)> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Ok(e);
            }
            let m = self.read_msg()?;
            self.stash(m)?;
        }
    }

    pub fn transaction_start(&mut self) -> Result<u32> {
        let r = self.request(MsgType::TransactionStart, 0, b"\0")?;
        let s = String::from_utf8_lossy(&r)
            .trim_end_matches('\0')
            .to_string();
        s.parse()
            .map_err(|_| ClientError::Protocol(format!("bad transaction id {s:?}")))
    }

    pub fn transaction_end(&mut self, tx: u32, commit: bool) -> Result<()> {
        self.request(
            MsgType::TransactionEnd,
            tx,
            if commit { b"T\0" } else { b"F\0" },
        )
        .map(drop)
    }
}
