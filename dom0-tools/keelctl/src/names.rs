//! Domain names from xenstore, as `xl` reads them: `/local/domain/N/name`
//! through the xenstore daemon's Unix socket (`$XENSTORED_PATH`, else
//! `/run/xenstored/socket`, libxenstore's order). One connection per
//! keelctl run, opened on the first name asked for; without a daemon
//! (or when it does not answer within [`TIMEOUT`]) every name is unknown
//! and keelctl goes on with ids, as `xl` shows "(null)".

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Duration;

use keel_xenstored::client::{Client, ClientError};
use keel_xenstored::wire::{MsgType, XsError};

use crate::xen::{Node, Xenstore};

/// How long one xenstore read may take before keelctl gives up on names.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// How long one of the toolstack's requests (the [`Xenstore`] calls that
/// build, wire up and tear down domains) may take: a daemon slowed down
/// by a busy machine must not leave a domain half built, as a hung one
/// must not hang keelctl.
pub const TOOLSTACK_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times [`XenstoreSocket::publish`] begins its transaction.
pub const PUBLISH_TRIES: u32 = 20;

pub const SOCKET_ENV: &str = "XENSTORED_PATH";
pub const SOCKET_PATH: &str = "/run/xenstored/socket";

/// Names read through the xenstore socket.
pub struct XenstoreSocket {
    path: PathBuf,
    /// `None` before the first read; `Some(None)` once connecting failed.
    conn: RefCell<Option<Option<Client>>>,
}

impl XenstoreSocket {
    pub fn new(path: PathBuf) -> Self {
        XenstoreSocket {
            path,
            conn: RefCell::new(None),
        }
    }

    /// At `$XENSTORED_PATH` or `/run/xenstored/socket`.
    pub fn from_env() -> Self {
        Self::new(
            std::env::var_os(SOCKET_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(SOCKET_PATH)),
        )
    }
}

impl XenstoreSocket {
    /// Runs `f` on the connection (made on first use), each request
    /// [`TOOLSTACK_TIMEOUT`] at most. After an I/O error (a timeout among
    /// them: its reply may still come) the next call connects again.
    fn with<R>(&self, f: impl FnOnce(&mut Client) -> Result<R, ClientError>) -> Result<R, String> {
        let mut conn = self.conn.borrow_mut();
        if matches!(*conn, Some(None)) {
            *conn = None;
        }
        let c = conn.get_or_insert_with(|| Client::connect(&self.path).ok());
        let client = c
            .as_mut()
            .ok_or_else(|| format!("no xenstore daemon at {}", self.path.display()))?;
        let r = client
            .set_timeout(Some(TOOLSTACK_TIMEOUT))
            .and_then(|()| f(client));
        if let Err(ClientError::Io(_)) = r {
            *conn = None;
        }
        r.map_err(|e| format!("xenstore: {e}"))
    }
}

impl Xenstore for XenstoreSocket {
    /// In one transaction, begun again when its commit meets a
    /// concurrent change (EAGAIN: another connection changed a node the
    /// transaction read, e.g. a parent such as `/local/domain` whose
    /// children changed), as libxl's transaction loop does;
    /// [`PUBLISH_TRIES`] times at most.
    fn publish(&self, nodes: &[Node]) -> Result<(), String> {
        self.with(|c| {
            let mut tries = 0;
            loop {
                let tx = c.transaction_start()?;
                let mut write = || -> Result<(), ClientError> {
                    for n in nodes {
                        c.write_tx(tx, &n.path, n.value.as_bytes())?;
                        if !n.perms.is_empty() {
                            let p: Vec<&str> = n.perms.iter().map(String::as_str).collect();
                            c.set_perms_tx(tx, &n.path, &p)?;
                        }
                    }
                    Ok(())
                };
                if let Err(e) = write() {
                    let _ = c.transaction_end(tx, false);
                    return Err(e);
                }
                tries += 1;
                match c.transaction_end(tx, true) {
                    Err(ClientError::Xs(XsError::EAGAIN)) if tries < PUBLISH_TRIES => continue,
                    r => return r,
                }
            }
        })
    }

    fn introduce(&self, domid: u32, gfn: u64, port: u32) -> Result<(), String> {
        self.with(|c| c.introduce(domid, gfn, port))
    }

    fn remove(&self, paths: &[String]) -> Result<(), String> {
        self.with(|c| {
            for p in paths {
                match c.rm(p) {
                    Ok(()) | Err(ClientError::Xs(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
    }

    fn read(&self, path: &str) -> Result<Option<String>, String> {
        self.with(|c| match c.read(path) {
            Ok(v) => Ok(Some(String::from_utf8_lossy(&v).into_owned())),
            Err(ClientError::Xs(XsError::ENOENT)) => Ok(None),
            Err(e) => Err(e),
        })
    }

    fn directory(&self, path: &str) -> Result<Vec<String>, String> {
        self.with(|c| match c.directory(path) {
            Err(ClientError::Xs(XsError::ENOENT)) => Ok(Vec::new()),
            r => r,
        })
    }

    fn release(&self, domid: u32) -> Result<(), String> {
        self.with(|c| {
            c.request(MsgType::Release, 0, format!("{domid}\0").as_bytes())
                .map(|_| ())
        })
    }

    fn name(&self, domid: u32) -> Option<String> {
        let mut conn = self.conn.borrow_mut();
        let c = conn.get_or_insert_with(|| Client::connect(&self.path).ok());
        let client = c.as_mut()?;
        client.set_timeout(Some(TIMEOUT)).ok()?;
        match client.read(&format!("/local/domain/{domid}/name")) {
            Ok(v) => Some(String::from_utf8_lossy(&v).into_owned()),
            Err(ClientError::Xs(_)) => None,
            // A broken or silent daemon: no more names this run.
            Err(_) => {
                *c = None;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;

    /// A xenstore daemon on a socket in `dir` for one connection: `answer`
    /// gets each request (type, payload) and gives the reply's (the wire
    /// format: 16-byte header, payload).
    fn daemon(
        dir: &std::path::Path,
        mut answer: impl FnMut(u32, &[u8]) -> (u32, Vec<u8>) + Send + 'static,
    ) -> PathBuf {
        let path = dir.join("socket");
        let l = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut h = [0u8; 16];
            while s.read_exact(&mut h).is_ok() {
                let ty = u32::from_le_bytes(h[0..4].try_into().unwrap());
                let len = u32::from_le_bytes(h[12..16].try_into().unwrap()) as usize;
                let mut p = vec![0; len];
                s.read_exact(&mut p).unwrap();
                let (rty, body) = answer(ty, &p);
                let mut out = Vec::new();
                out.extend_from_slice(&rty.to_le_bytes());
                out.extend_from_slice(&h[4..12]);
                out.extend_from_slice(&(body.len() as u32).to_le_bytes());
                out.extend_from_slice(&body);
                s.write_all(&out).unwrap();
            }
        });
        path
    }

    const XS_ERROR: u32 = MsgType::Error as u32;

    /// A xenstore that knows d3 as "web" and nothing else.
    fn fake_daemon(dir: &std::path::Path) -> PathBuf {
        daemon(dir, |ty, p| {
            if p == b"/local/domain/3/name\0" {
                (ty, b"web".to_vec())
            } else {
                (XS_ERROR, b"ENOENT\0".to_vec())
            }
        })
    }

    fn temp_dir(what: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("keelctl-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A commit that meets a concurrent change (EAGAIN) is tried again
    /// from the start, all the nodes written again; one that keeps
    /// failing gives up after PUBLISH_TRIES with the daemon's error.
    #[test]
    fn publish_begins_again_when_the_commit_meets_a_change() {
        use std::sync::{Arc, Mutex};
        for (conflicts, ok) in [(3, true), (PUBLISH_TRIES, false)] {
            let dir = temp_dir(&format!("publish-{conflicts}"));
            let asked = Arc::new(Mutex::new(Vec::new()));
            let log = asked.clone();
            let mut left = conflicts;
            let xs = XenstoreSocket::new(daemon(&dir, move |ty, p| {
                let t = MsgType::from_u32(ty);
                log.lock().unwrap().push(t);
                match t {
                    Some(MsgType::TransactionStart) => (ty, b"7\0".to_vec()),
                    Some(MsgType::TransactionEnd) if p == b"T\0" && left > 0 => {
                        left -= 1;
                        (XS_ERROR, b"EAGAIN\0".to_vec())
                    }
                    _ => (ty, b"OK\0".to_vec()),
                }
            }));
            let nodes = [
                Node {
                    path: "/local/domain/5/name".into(),
                    value: "web".into(),
                    perms: vec![],
                },
                Node {
                    path: "/local/domain/5/domid".into(),
                    value: "5".into(),
                    perms: vec!["n5".into()],
                },
            ];
            let r = xs.publish(&nodes);
            assert_eq!(r.is_ok(), ok, "{r:?}");
            if !ok {
                assert!(r.unwrap_err().contains("EAGAIN"));
            }
            let asked = asked.lock().unwrap();
            let tries = conflicts.min(PUBLISH_TRIES - 1) + 1;
            let count = |t| asked.iter().filter(|a| **a == Some(t)).count() as u32;
            assert_eq!(count(MsgType::TransactionStart), tries);
            assert_eq!(count(MsgType::TransactionEnd), tries);
            assert_eq!(count(MsgType::Write), 2 * tries);
            assert_eq!(count(MsgType::SetPerms), tries);
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn names_from_the_daemon_and_none_without_one() {
        let dir = temp_dir("names");
        let xs = XenstoreSocket::new(fake_daemon(&dir));
        assert_eq!(xs.name(3).as_deref(), Some("web"));
        assert_eq!(xs.name(4), None);
        assert_eq!(xs.name(3).as_deref(), Some("web"));
        let none = XenstoreSocket::new(dir.join("no-such-socket"));
        assert_eq!(none.name(3), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
