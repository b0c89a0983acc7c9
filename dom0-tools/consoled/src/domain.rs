//! One served domain: its console page, its event channel, a pty, a log
//! file, a backlog of recent output and the clients attached through the
//! daemon's socket. Nothing here blocks: the pty and the clients are
//! non-blocking, and what they cannot take is dropped (pty) or buffered up
//! to a bound (clients).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use keel_xenstored::transport::xendev::Evtchn;

use crate::ring::{ConsPage, RingError};
use crate::sys::{self, Pty};

/// Recent output kept per domain and sent to each new client first.
pub const BACKLOG: usize = 16 * 1024;
/// Output queued for one slow client at most; beyond it bytes are dropped.
pub const CLIENT_QUEUE: usize = 1024 * 1024;
/// Input waiting for room in the ring at most; input sources are not read
/// while it is full.
pub const INPUT_QUEUE: usize = 4096;

/// The event channel to the guest (real: `/dev/xen/evtchn`; tests: a fake).
pub trait EventChannel: Send {
    /// Signals the guest.
    fn notify(&self);
    /// Consumes pending events (and re-arms the port).
    fn drain(&self) -> bool;
    /// Readable while events are pending.
    fn fd(&self) -> RawFd;
}

impl EventChannel for Evtchn {
    fn notify(&self) {
        Evtchn::notify(self)
    }
    fn drain(&self) -> bool {
        Evtchn::drain(self)
    }
    fn fd(&self) -> RawFd {
        Evtchn::fd(self)
    }
}

/// A client attached through the socket.
pub struct Conn {
    pub stream: UnixStream,
    out: Vec<u8>,
}

impl Conn {
    /// `stream` must already be non-blocking.
    pub fn new(stream: UnixStream) -> Conn {
        Conn {
            stream,
            out: Vec::new(),
        }
    }

    pub fn queue(&mut self, data: &[u8]) {
        let room = CLIENT_QUEUE.saturating_sub(self.out.len());
        self.out.extend_from_slice(&data[..data.len().min(room)]);
    }

    pub fn wants_write(&self) -> bool {
        !self.out.is_empty()
    }

    /// Writes what the socket takes now.
    pub fn flush(&mut self) -> io::Result<()> {
        while !self.out.is_empty() {
            match self.stream.write(&self.out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The log file name for a domain: its name (made safe for a path) or
/// `domN`.
pub fn log_file_name(domid: u32, name: Option<&str>) -> String {
    match name {
        Some(n) if !n.is_empty() => {
            let safe: String = n
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            format!("{}.log", safe.trim_start_matches('.'))
        }
        _ => format!("dom{domid}.log"),
    }
}

pub struct Domain {
    pub domid: u32,
    pub name: Option<String>,
    page: ConsPage,
    evtchn: Box<dyn EventChannel>,
    pty: Option<Pty>,
    log: Option<File>,
    pub log_path: PathBuf,
    backlog: VecDeque<u8>,
    pub clients: Vec<Conn>,
    pending_in: Vec<u8>,
    /// Problems worth one line each (log file, pty), for the daemon to print.
    pub warnings: Vec<String>,
}

impl Domain {
    /// Sets up the log file (directory created) and, with `want_pty`, a
    /// pty; failures of either are warnings, not errors: the console still
    /// works through the other paths.
    pub fn new(
        domid: u32,
        name: Option<String>,
        page: ConsPage,
        evtchn: Box<dyn EventChannel>,
        log_dir: &Path,
        want_pty: bool,
    ) -> Domain {
        let mut warnings = Vec::new();
        let log_path = log_dir.join(log_file_name(domid, name.as_deref()));
        let log = std::fs::create_dir_all(log_dir)
            .and_then(|()| OpenOptions::new().create(true).append(true).open(&log_path))
            .map_err(|e| warnings.push(format!("log {}: {e}", log_path.display())))
            .ok();
        let pty = if want_pty {
            sys::openpty()
                .map_err(|e| warnings.push(format!("openpty: {e}")))
                .ok()
        } else {
            None
        };
        Domain {
            domid,
            name,
            page,
            evtchn,
            pty,
            log,
            log_path,
            backlog: VecDeque::with_capacity(BACKLOG),
            clients: Vec::new(),
            pending_in: Vec::new(),
            warnings,
        }
    }

    /// The name, or `domN`.
    pub fn label(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("dom{}", self.domid))
    }

    pub fn tty_path(&self) -> Option<&str> {
        self.pty.as_ref().map(|p| p.path.as_str())
    }

    pub fn evtchn_fd(&self) -> RawFd {
        self.evtchn.fd()
    }

    pub fn pty_fd(&self) -> Option<RawFd> {
        self.pty.as_ref().map(|p| p.master.as_raw_fd())
    }

    /// The recent output a new client gets first.
    pub fn backlog(&self) -> Vec<u8> {
        self.backlog.iter().copied().collect()
    }

    /// Consumes the event channel's pending events.
    pub fn drain_events(&self) {
        self.evtchn.drain();
    }

    /// Moves guest output to the log, the backlog, the pty and the clients.
    pub fn pump_output(&mut self) -> Result<usize, RingError> {
        let mut total = 0;
        loop {
            let mut buf = Vec::new();
            let n = self.page.read_output(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n;
            self.deliver(&buf);
        }
        if total > 0 {
            // The guest may be waiting for room.
            self.evtchn.notify();
        }
        Ok(total)
    }

    fn deliver(&mut self, data: &[u8]) {
        if let Some(f) = &mut self.log {
            if let Err(e) = f.write_all(data) {
                self.warnings.push(format!(
                    "log {}: {e}; logging stopped",
                    self.log_path.display()
                ));
                self.log = None;
            }
        }
        let over = (self.backlog.len() + data.len()).saturating_sub(BACKLOG);
        self.backlog.drain(..over.min(self.backlog.len()));
        let keep = data.len().min(BACKLOG);
        self.backlog.extend(&data[data.len() - keep..]);
        if let Some(p) = &mut self.pty {
            // Non-blocking: whatever nobody reads is dropped.
            let _ = p.master.write(data);
        }
        for c in &mut self.clients {
            c.queue(data);
        }
    }

    /// Room left for queued input.
    pub fn input_room(&self) -> usize {
        INPUT_QUEUE.saturating_sub(self.pending_in.len())
    }

    /// Queues input for the guest (as much as fits); see [`Self::flush_input`].
    pub fn queue_input(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.input_room());
        self.pending_in.extend_from_slice(&data[..n]);
        n
    }

    /// Writes queued input into the ring and notifies the guest.
    pub fn flush_input(&mut self) -> Result<usize, RingError> {
        if self.pending_in.is_empty() {
            return Ok(0);
        }
        let n = self.page.write_input(&self.pending_in)?;
        if n > 0 {
            self.pending_in.drain(..n);
            self.evtchn.notify();
        }
        Ok(n)
    }

    /// Reads what the pty's master has (someone typing on the slave).
    pub fn read_pty(&mut self) {
        let mut buf = [0u8; 1024];
        let room = self.input_room().min(buf.len());
        let Some(p) = &mut self.pty else { return };
        if room == 0 {
            return;
        }
        if let Ok(n) = p.master.read(&mut buf[..room]) {
            self.pending_in.extend_from_slice(&buf[..n]);
        }
    }

    /// Adds a client: the backlog is queued for it first.
    pub fn add_client(&mut self, mut c: Conn) {
        c.queue(&self.backlog());
        self.clients.push(c);
    }
}
