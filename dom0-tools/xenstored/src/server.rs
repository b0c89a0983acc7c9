//! The event loop: a single thread polls the listening socket, every
//! connection's transport and a self-pipe (for shutdown), feeding whole
//! frames to the [`Engine`] and writing back whatever it queued.
//!
//! Robustness rules:
//! - an oversized frame (len > 4096) is a protocol error: that connection is
//!   closed, everyone else keeps being served;
//! - a peer that stops reading is not read from while it has more than
//!   [`READ_PAUSE_BYTES`] of unsent output, and is disconnected if its
//!   backlog passes [`MAX_BACKLOG_BYTES`];
//! - a disconnect discards the connection's transactions (never committed
//!   data) and watches.
//!
//! With [`Server::watch_domain_exceptions`] the loop also polls the bound
//! `VIRQ_DOM_EXC` and, whenever it fires, drops dead domains and fires
//! `@releaseDomain` ([`crate::domexc`]).

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::domexc::{self, DomainInfoSource, VirqEvents};
use crate::engine::{ConnId, DomainEvent, Engine};
use crate::transport::unix::UnixTransport;
use crate::transport::Transport;
use crate::wire::FrameDecoder;

/// Stop reading from a connection with this much unsent output.
pub const READ_PAUSE_BYTES: usize = 256 * 1024;
/// Disconnect a connection with this much unsent output.
pub const MAX_BACKLOG_BYTES: usize = 16 * 1024 * 1024;
/// Poll period when some transport has no file descriptor.
const RING_POLL: Duration = Duration::from_millis(5);

/// Attaches introduced domains' rings (maps the page, binds the event
/// channel). keel's hypervisor glue implements this; tests use none.
pub trait DomainConnector: Send {
    fn connect(&mut self, domid: u32, mfn: i64, evtchn: u32) -> io::Result<Box<dyn Transport>>;
    fn disconnect(&mut self, _domid: u32) {}
}

struct ConnIo {
    t: Box<dyn Transport>,
    dec: FrameDecoder,
}

/// Asks a running server to stop (thread-safe, cloneable).
#[derive(Clone)]
pub struct ShutdownHandle {
    flag: Arc<AtomicBool>,
    fd: RawFd,
}

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.flag.store(true, Ordering::SeqCst);
        // SAFETY: writing one byte to our own pipe; failure (full pipe) is
        // harmless because the flag is already set.
        unsafe { libc::write(self.fd, b"x".as_ptr().cast(), 1) };
    }
}

static SIGNAL_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(_sig: libc::c_int) {
    let fd = SIGNAL_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe.
        unsafe { libc::write(fd, b"s".as_ptr().cast(), 1) };
    }
}

/// The bound `VIRQ_DOM_EXC` and where domains' states come from.
struct DomExc {
    virq: Box<dyn VirqEvents>,
    source: Box<dyn DomainInfoSource>,
    /// The last check had a failed query (logged once until one works).
    failing: bool,
}

pub struct Server {
    engine: Engine,
    domexc: Option<DomExc>,
    listener: Option<(UnixListener, PathBuf)>,
    conns: BTreeMap<ConnId, ConnIo>,
    wake_r: RawFd,
    wake_w: RawFd,
    flag: Arc<AtomicBool>,
    persist: Option<PathBuf>,
    connector: Option<Box<dyn DomainConnector>>,
    verbose: bool,
}

fn set_nonblock_cloexec(fd: RawFd) {
    // SAFETY: plain fcntl on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
    }
}

/// Binds the listening socket, creating the directory and replacing a
/// stale socket file.
pub fn bind_socket(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    if let Ok(md) = std::fs::symlink_metadata(path) {
        if md.file_type().is_socket() {
            std::fs::remove_file(path)?;
        } else {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

impl Server {
    pub fn new(engine: Engine) -> io::Result<Server> {
        let mut fds = [0; 2];
        // SAFETY: pipe(2) into a local array.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        set_nonblock_cloexec(fds[0]);
        set_nonblock_cloexec(fds[1]);
        Ok(Server {
            engine,
            domexc: None,
            listener: None,
            conns: BTreeMap::new(),
            wake_r: fds[0],
            wake_w: fds[1],
            flag: Arc::new(AtomicBool::new(false)),
            persist: None,
            connector: None,
            verbose: false,
        })
    }

    /// Listens on a Unix socket at `path`.
    pub fn listen(&mut self, path: &Path) -> io::Result<()> {
        let l = bind_socket(path)?;
        self.listener = Some((l, path.to_path_buf()));
        Ok(())
    }

    /// Saves a snapshot to `file` on shutdown.
    pub fn persist_to(&mut self, file: PathBuf) {
        self.persist = Some(file);
    }

    pub fn set_connector(&mut self, c: Box<dyn DomainConnector>) {
        self.connector = Some(c);
    }

    /// Polls `virq` (the bound `VIRQ_DOM_EXC`) and, each time it fires,
    /// asks `source` about every introduced domain: dead ones are dropped
    /// as on RELEASE, shut-down ones announced ([`domexc::check_domains`]).
    pub fn watch_domain_exceptions(
        &mut self,
        virq: Box<dyn VirqEvents>,
        source: Box<dyn DomainInfoSource>,
    ) {
        self.domexc = Some(DomExc {
            virq,
            source,
            failing: false,
        });
    }

    /// Whether domain exceptions are watched (bound, and not given up on).
    pub fn watches_domain_exceptions(&self) -> bool {
        self.domexc.is_some()
    }

    /// The virq fired (poll said so): consume it, unmask, check domains.
    fn domain_exception(&mut self) {
        let Some(dx) = self.domexc.as_mut() else {
            return;
        };
        match dx.virq.take() {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                // A broken descriptor would make poll(2) spin: stop
                // watching it and keep serving.
                eprintln!(
                    "keel-xenstored: {}: {e}; no longer watching for dead domains",
                    dx.virq.describe()
                );
                self.domexc = None;
                return;
            }
        }
        let check = domexc::check_domains(&mut self.engine, dx.source.as_mut());
        if self.verbose {
            for d in &check.released {
                eprintln!("keel-xenstored: domain {d} is gone or dying: released");
            }
            for d in &check.shut_down {
                eprintln!("keel-xenstored: domain {d} has shut down");
            }
        }
        match check.failed.first() {
            Some((d, e)) if !dx.failing || self.verbose => {
                eprintln!(
                    "keel-xenstored: cannot ask the hypervisor about domain {d} \
                     ({} domain(s) unknown this time, left as they were): {e}",
                    check.failed.len()
                );
                dx.failing = true;
            }
            Some(_) => {}
            None => dx.failing = false,
        }
    }

    pub fn set_verbose(&mut self, v: bool) {
        self.verbose = v;
        self.engine.set_logging(v);
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            flag: self.flag.clone(),
            fd: self.wake_w,
        }
    }

    /// Routes SIGTERM and SIGINT to a clean shutdown of this server.
    pub fn install_signal_handlers(&self) -> io::Result<()> {
        SIGNAL_FD.store(self.wake_w, Ordering::SeqCst);
        for sig in [libc::SIGTERM, libc::SIGINT] {
            // SAFETY: installing a handler that only calls write(2).
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as *const () as usize;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }

    /// Adds an already-established transport (e.g. a domain's ring).
    pub fn add_transport(&mut self, t: Box<dyn Transport>) -> ConnId {
        let id = self.engine.add_connection(t.domid());
        if self.verbose {
            eprintln!("keel-xenstored: conn {id}: {} connected", t.describe());
        }
        self.conns.insert(
            id,
            ConnIo {
                t,
                dec: FrameDecoder::new(),
            },
        );
        id
    }

    fn close(&mut self, id: ConnId, why: &str) {
        if let Some(c) = self.conns.remove(&id) {
            if self.verbose || why != "closed by peer" {
                eprintln!("keel-xenstored: conn {id} ({}): {why}", c.t.describe());
            }
        }
        self.engine.remove_connection(id);
    }

    /// Reads what is available and handles complete requests.
    fn service_input(&mut self, id: ConnId) {
        if self.engine.pending_output(id) > READ_PAUSE_BYTES {
            return;
        }
        let mut buf = [0u8; 16 * 1024];
        // Bounded per iteration so one busy client cannot starve the rest.
        for _ in 0..4 {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            let n = match c.t.recv(&mut buf) {
                Ok(0) => return self.close(id, "closed by peer"),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.close(id, &format!("read error: {e}")),
            };
            let msgs = match c.dec.push(&buf[..n]) {
                Ok(m) => m,
                Err(e) => {
                    c.t.protocol_error();
                    return self.close(id, &format!("protocol error: {e}"));
                }
            };
            for m in msgs {
                self.engine.handle(id, m);
            }
        }
    }

    /// Writes queued output; closes connections that are done or stuck.
    fn flush(&mut self) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            while self.engine.has_output(id) {
                let chunk = self.engine.take_output(id, 64 * 1024);
                let Some(c) = self.conns.get_mut(&id) else {
                    break;
                };
                match c.t.send(&chunk) {
                    Ok(n) if n == chunk.len() => continue,
                    Ok(n) => {
                        self.engine.unread_output(id, &chunk[n..]);
                        break;
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) =>
                    {
                        self.engine.unread_output(id, &chunk);
                        break;
                    }
                    Err(e) => {
                        self.close(id, &format!("write error: {e}"));
                        break;
                    }
                }
            }
            if !self.conns.contains_key(&id) {
                continue;
            }
            if self.engine.pending_output(id) > MAX_BACKLOG_BYTES {
                self.close(id, "not reading its replies/events; backlog limit exceeded");
            } else if self.engine.is_closing(id) && !self.engine.has_output(id) {
                self.close(id, "domain released");
            }
        }
    }

    fn domain_events(&mut self) {
        for ev in self.engine.take_domain_events() {
            let Some(conn) = self.connector.as_mut() else {
                continue;
            };
            match ev {
                DomainEvent::Introduced { domid, mfn, evtchn } => {
                    if self.engine.domain(domid).and_then(|d| d.conn).is_some() {
                        continue;
                    }
                    match conn.connect(domid, mfn, evtchn) {
                        Ok(t) => {
                            self.add_transport(t);
                        }
                        Err(e) => eprintln!("keel-xenstored: cannot attach domain {domid}: {e}"),
                    }
                }
                DomainEvent::Released { domid } => conn.disconnect(domid),
            }
        }
    }

    fn accept(&mut self) {
        loop {
            let Some((l, _)) = &self.listener else { return };
            match l.accept() {
                Ok((s, _)) => match UnixTransport::new(s) {
                    Ok(t) => {
                        self.add_transport(Box::new(t));
                    }
                    Err(e) => eprintln!("keel-xenstored: accept setup: {e}"),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // e.g. EMFILE: keep serving existing clients.
                    eprintln!("keel-xenstored: accept: {e}");
                    return;
                }
            }
        }
    }

    /// Serves until shutdown is requested; then saves the snapshot (if
    /// configured) and removes the socket.
    pub fn run(&mut self) -> io::Result<()> {
        loop {
            let mut fds: Vec<libc::pollfd> = Vec::with_capacity(self.conns.len() + 2);
            let mut ids: Vec<ConnId> = Vec::with_capacity(self.conns.len());
            fds.push(libc::pollfd {
                fd: self.wake_r,
                events: libc::POLLIN,
                revents: 0,
            });
            let mut listen_at = None;
            if let Some((l, _)) = &self.listener {
                listen_at = Some(fds.len());
                fds.push(libc::pollfd {
                    fd: l.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            let mut virq_at = None;
            if let Some(dx) = &self.domexc {
                virq_at = Some(fds.len());
                fds.push(libc::pollfd {
                    fd: dx.virq.poll_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            let base = fds.len();
            let mut fdless = false;
            for (id, c) in &self.conns {
                match c.t.poll_fd() {
                    Some(fd) => {
                        let mut ev = 0;
                        let out = self.engine.has_output(*id);
                        if self.engine.pending_output(*id) <= READ_PAUSE_BYTES {
                            ev |= libc::POLLIN;
                        }
                        if out && c.t.polls_for_room() {
                            ev |= libc::POLLOUT;
                        } else if out {
                            // The peer's notification is the news of room.
                            ev |= libc::POLLIN;
                        }
                        fds.push(libc::pollfd {
                            fd,
                            events: ev,
                            revents: 0,
                        });
                        ids.push(*id);
                    }
                    None => fdless = true,
                }
            }
            let timeout = if fdless {
                RING_POLL.as_millis() as i32
            } else {
                -1
            };
            // SAFETY: fds is a valid array of pollfd.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if fds[0].revents != 0 {
                let mut b = [0u8; 64];
                // SAFETY: reading into a local buffer from our pipe.
                let n = unsafe { libc::read(self.wake_r, b.as_mut_ptr().cast(), b.len()) };
                if n > 0 {
                    self.flag.store(true, Ordering::SeqCst);
                }
            }
            if self.flag.load(Ordering::SeqCst) {
                break;
            }
            if listen_at.is_some_and(|i| fds[i].revents != 0) {
                self.accept();
            }
            for (i, id) in ids.iter().enumerate() {
                let rev = fds[base + i].revents;
                if rev & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                    if let Some(c) = self.conns.get_mut(id) {
                        c.t.ack_event();
                    }
                    self.service_input(*id);
                }
            }
            if fdless {
                let ring_ids: Vec<ConnId> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.t.poll_fd().is_none())
                    .map(|(id, _)| *id)
                    .collect();
                for id in ring_ids {
                    self.service_input(id);
                }
            }
            // After the requests (a RELEASE there makes the domain unknown
            // here), before the flush (which closes dropped domains'
            // connections, unmapping their rings).
            if virq_at.is_some_and(|i| fds[i].revents != 0) {
                self.domain_exception();
            }
            self.flush();
            self.domain_events();
        }
        self.finish()
    }

    fn finish(&mut self) -> io::Result<()> {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.engine.remove_connection(id);
        }
        self.conns.clear();
        if let Some((_, path)) = self.listener.take() {
            let _ = std::fs::remove_file(path);
        }
        if let Some(f) = &self.persist {
            crate::persist::save(self.engine.store(), f)?;
            if self.verbose {
                eprintln!(
                    "keel-xenstored: saved {} nodes to {}",
                    self.engine.store().len(),
                    f.display()
                );
            }
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if SIGNAL_FD.load(Ordering::SeqCst) == self.wake_w {
            SIGNAL_FD.store(-1, Ordering::SeqCst);
        }
        // SAFETY: closing the pipe we created.
        unsafe {
            libc::close(self.wake_r);
            libc::close(self.wake_w);
        }
    }
}

#[cfg(test)]
#[allow(clippy::octal_escapes)] // "\0" followed by digits is intended
mod tests {
    use super::*;
    use crate::client::Client;
    use crate::transport::ring::{RingClient, RingPage, RingTransport};
    use crate::wire::{Header, Message, MsgType, XsError};
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    fn tmp_sock(name: &str) -> PathBuf {
        std::env::temp_dir()
            .join(format!("keel-xs-{}-{}", std::process::id(), name))
            .join("socket")
    }

    fn start(name: &str) -> (PathBuf, ShutdownHandle, std::thread::JoinHandle<Server>) {
        let p = tmp_sock(name);
        let mut s = Server::new(Engine::default()).unwrap();
        s.listen(&p).unwrap();
        let h = s.shutdown_handle();
        let j = std::thread::spawn(move || {
            s.run().unwrap();
            s
        });
        (p, h, j)
    }

    #[test]
    fn serves_clients_and_survives_bad_ones() {
        let (p, h, j) = start("srv");
        let mut good = Client::connect(&p).unwrap();
        good.write("/x", b"1").unwrap();
        // oversized frame: that connection is closed
        let mut bad = UnixStream::connect(&p).unwrap();
        let hdr = Header {
            ty: MsgType::Write as u32,
            req_id: 1,
            tx_id: 0,
            len: 5000,
        };
        bad.write_all(&hdr.encode()).unwrap();
        let mut buf = [0u8; 16];
        bad.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(bad.read(&mut buf).unwrap(), 0, "closed");
        // a client that disconnects mid-transaction and mid-frame
        {
            let mut c = Client::connect(&p).unwrap();
            let tx = c.transaction_start().unwrap();
            c.write_tx(tx, "/x", b"uncommitted").unwrap();
            c.write_tx(tx, "/y", b"uncommitted").unwrap();
            let mut raw = UnixStream::connect(&p).unwrap();
            raw.write_all(&Message::new(MsgType::Read, 1, 0, b"/x\0".to_vec()).to_bytes()[..10])
                .unwrap();
        }
        assert_eq!(good.read("/x").unwrap(), b"1");
        assert_eq!(good.read("/y"), Err(XsError::ENOENT.into()));
        // unknown type over the socket
        let r = good.request(MsgType::Error, 0, b"").unwrap_err();
        assert_eq!(r, XsError::EINVAL.into());
        h.shutdown();
        let s = j.join().unwrap();
        assert!(!p.exists(), "socket removed on shutdown");
        assert_eq!(s.engine().connections(), 0);
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }

    #[test]
    fn watch_between_two_socket_clients() {
        let (p, h, j) = start("watch");
        let mut a = Client::connect(&p).unwrap();
        let mut b = Client::connect(&p).unwrap();
        a.watch("/w", "tok").unwrap();
        assert_eq!(
            a.wait_event().unwrap(),
            ("/w".to_string(), "tok".to_string())
        );
        b.write("/w/k", b"v").unwrap();
        assert_eq!(
            a.wait_event().unwrap(),
            ("/w/k".to_string(), "tok".to_string())
        );
        h.shutdown();
        j.join().unwrap();
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }

    /// A ring whose doorbell is an eventfd, as an event channel is: its fd
    /// is readable when rung and always writable.
    struct DoorbellRing {
        ring: RingTransport,
        bell_r: std::fs::File,
        sends: Arc<std::sync::atomic::AtomicUsize>,
    }
    impl Transport for DoorbellRing {
        fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.ring.recv(buf)
        }
        fn send(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.sends.fetch_add(1, Ordering::SeqCst);
            self.ring.send(buf)
        }
        fn poll_fd(&self) -> Option<RawFd> {
            Some(self.bell_r.as_raw_fd())
        }
        fn polls_for_room(&self) -> bool {
            false
        }
        fn ack_event(&mut self) {
            let mut b = [0u8; 8];
            let _ = self.bell_r.read(&mut b);
        }
        fn domid(&self) -> u32 {
            0
        }
        fn describe(&self) -> String {
            "doorbell ring".into()
        }
    }

    /// A reply bigger than the ring waits for the peer to make room and
    /// ring the bell: the server neither spins on the full ring nor stalls
    /// once the bell rings (keel-xenstored serving dom0's kernel).
    #[test]
    fn full_event_channel_ring_waits_for_the_doorbell() {
        let p = tmp_sock("bell");
        let page = RingPage::new_in_memory();
        // An eventfd, like /dev/xen/evtchn, is readable when rung and
        // always writable.
        // SAFETY: eventfd(2) with valid flags; the fd is checked, then owned
        // by this file from here on.
        let bell_r = unsafe {
            use std::os::fd::FromRawFd;
            let fd = libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC);
            assert!(fd >= 0);
            std::fs::File::from_raw_fd(fd)
        };
        let mut bell_w = bell_r.try_clone().unwrap();
        let sends = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut s = Server::new(Engine::default()).unwrap();
        s.listen(&p).unwrap();
        s.add_transport(Box::new(DoorbellRing {
            ring: RingTransport::new(page.clone(), 0, Box::new(|| {}), None),
            bell_r,
            sends: sends.clone(),
        }));
        let h = s.shutdown_handle();
        let j = std::thread::spawn(move || s.run().unwrap());
        let mut admin = Client::connect(&p).unwrap();
        let big = vec![b'x'; 3000];
        admin.write("/big", &big).unwrap();
        let mut guest = RingClient::new(page);
        guest
            .send(&Message::new(MsgType::Read, 5, 0, b"/big\0".to_vec()).to_bytes())
            .unwrap();
        bell_w.write_all(&1u64.to_ne_bytes()).unwrap();
        // The first 1 KiB fits; then the ring is full and nobody reads.
        std::thread::sleep(Duration::from_millis(300));
        let stuck = sends.load(Ordering::SeqCst);
        assert!(
            stuck < 20,
            "{stuck} sends into a full ring in 300 ms: the server spins"
        );
        let mut dec = FrameDecoder::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let reply = loop {
            let mut buf = [0u8; 4096];
            if let Ok(n) = guest.recv(&mut buf) {
                bell_w.write_all(&1u64.to_ne_bytes()).unwrap();
                if let Some(m) = dec.push(&buf[..n]).unwrap().pop() {
                    break m;
                }
            }
            assert!(std::time::Instant::now() < deadline, "reply stalled");
            std::thread::sleep(Duration::from_millis(2));
        };
        assert_eq!((reply.header.req_id, reply.payload.len()), (5, 3000));
        h.shutdown();
        j.join().unwrap();
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }

    struct OneRing(Option<RingPage>);
    impl DomainConnector for OneRing {
        fn connect(&mut self, domid: u32, _mfn: i64, _e: u32) -> io::Result<Box<dyn Transport>> {
            let page = self.0.take().ok_or_else(|| io::Error::other("no page"))?;
            Ok(Box::new(RingTransport::new(
                page,
                domid,
                Box::new(|| {}),
                None,
            )))
        }
    }

    #[test]
    fn introduced_domain_served_over_ring() {
        let p = tmp_sock("ring");
        let page = RingPage::new_in_memory();
        let mut s = Server::new(Engine::default()).unwrap();
        s.listen(&p).unwrap();
        s.set_connector(Box::new(OneRing(Some(page.clone()))));
        let h = s.shutdown_handle();
        let j = std::thread::spawn(move || s.run().unwrap());
        let mut admin = Client::connect(&p).unwrap();
        admin.mkdir("/local/domain/7").unwrap();
        admin.set_perms("/local/domain/7", &["n7"]).unwrap();
        admin
            .request(MsgType::Introduce, 0, b"7\0001234\0005\0")
            .unwrap();
        let mut guest = RingClient::new(page);
        let msg = Message::new(MsgType::Write, 9, 0, b"hello\0from-ring".to_vec()).to_bytes();
        guest.send(&msg).unwrap();
        let mut dec = FrameDecoder::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let reply = loop {
            let mut buf = [0u8; 256];
            if let Ok(n) = guest.recv(&mut buf) {
                if let Some(m) = dec.push(&buf[..n]).unwrap().pop() {
                    break m;
                }
            }
            assert!(std::time::Instant::now() < deadline, "no reply over ring");
            std::thread::sleep(Duration::from_millis(2));
        };
        assert_eq!(reply.header.req_id, 9);
        assert_eq!(reply.payload, b"OK\0");
        assert_eq!(admin.read("/local/domain/7/hello").unwrap(), b"from-ring");
        h.shutdown();
        j.join().unwrap();
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }

    /// Maps rings as the real connector does ([`map_ring_page`]: grant
    /// table, then foreign mapping) with fake mappers: domain 7 has no
    /// grant but a foreign-mappable page, domain 8 neither.
    struct TwoWay {
        page7: Option<RingPage>,
        /// The connect errors, as the server got them.
        errors: Arc<std::sync::Mutex<Vec<String>>>,
    }
    impl DomainConnector for TwoWay {
        fn connect(&mut self, domid: u32, mfn: i64, _e: u32) -> io::Result<Box<dyn Transport>> {
            let page7 = &mut self.page7;
            let (page, how) = crate::transport::xendev::map_ring_page(
                domid,
                mfn,
                || Err("mmap: EINVAL".into()),
                |d, _gfn| match d {
                    7 => page7.take().ok_or_else(|| "mapped twice".into()),
                    _ => Err("errno 1".into()),
                },
            )
            .inspect_err(|e| self.errors.lock().unwrap().push(e.to_string()))?;
            assert_eq!(how.to_string(), "by foreign mapping (gntdev: mmap: EINVAL)");
            Ok(Box::new(RingTransport::new(
                page,
                domid,
                Box::new(|| {}),
                None,
            )))
        }
    }

    /// A domain whose ring can be mapped neither way is not attached, and
    /// the daemon goes on serving: the next domain, foreign-mapped after
    /// its grant map failed, is served over its ring.
    #[test]
    fn unmappable_domain_does_not_stop_the_others() {
        let p = tmp_sock("twoway");
        let page = RingPage::new_in_memory();
        let mut s = Server::new(Engine::default()).unwrap();
        s.listen(&p).unwrap();
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        s.set_connector(Box::new(TwoWay {
            page7: Some(page.clone()),
            errors: errors.clone(),
        }));
        let h = s.shutdown_handle();
        let j = std::thread::spawn(move || s.run().unwrap());
        let mut admin = Client::connect(&p).unwrap();
        for d in [8, 7] {
            admin.mkdir(&format!("/local/domain/{d}")).unwrap();
            admin
                .set_perms(&format!("/local/domain/{d}"), &[&format!("n{d}")])
                .unwrap();
        }
        admin
            .request(MsgType::Introduce, 0, b"8\0001234\0005\0")
            .unwrap();
        admin
            .request(MsgType::Introduce, 0, b"7\0001234\0005\0")
            .unwrap();
        let mut guest = RingClient::new(page);
        let msg = Message::new(MsgType::Write, 9, 0, b"hello\0seven".to_vec()).to_bytes();
        guest.send(&msg).unwrap();
        let mut dec = FrameDecoder::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let reply = loop {
            let mut buf = [0u8; 256];
            if let Ok(n) = guest.recv(&mut buf) {
                if let Some(m) = dec.push(&buf[..n]).unwrap().pop() {
                    break m;
                }
            }
            assert!(std::time::Instant::now() < deadline, "no reply over ring");
            std::thread::sleep(Duration::from_millis(2));
        };
        assert_eq!(reply.payload, b"OK\0");
        assert_eq!(admin.read("/local/domain/7/hello").unwrap(), b"seven");
        // The Unix socket is still served too.
        admin.write("/local/domain/8/x", b"y").unwrap();
        assert_eq!(
            *errors.lock().unwrap(),
            ["mapping domain 8's xenstore ring (frame 0x4d2): \
              gntdev: mmap: EINVAL; foreign mapping: errno 1"]
        );
        h.shutdown();
        j.join().unwrap();
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }

    use crate::domexc::tests::{FakeDomains, DYING, RUNNING, SHUTDOWN};
    use std::sync::atomic::AtomicUsize;

    /// `VIRQ_DOM_EXC` in a test: an eventfd, readable when rung (as
    /// `/dev/xen/evtchn` is when the port fired).
    struct FakeVirq(std::fs::File);
    impl VirqEvents for FakeVirq {
        fn poll_fd(&self) -> RawFd {
            self.0.as_raw_fd()
        }
        fn take(&mut self) -> io::Result<bool> {
            let mut b = [0u8; 8];
            match (&self.0).read(&mut b) {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
                Err(e) => Err(e),
            }
        }
        fn describe(&self) -> String {
            "fake VIRQ_DOM_EXC".into()
        }
    }

    fn eventfd() -> std::fs::File {
        // SAFETY: eventfd(2) with valid flags; the fd is checked, then
        // owned by the file.
        unsafe {
            use std::os::fd::FromRawFd;
            let fd = libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC);
            assert!(fd >= 0);
            std::fs::File::from_raw_fd(fd)
        }
    }

    fn ring(bell: &std::fs::File) {
        (&*bell).write_all(&1u64.to_ne_bytes()).unwrap();
    }

    /// A guest's ring that says when the server dropped it (for a real
    /// domain: its page unmapped, its event channel unbound).
    struct WatchedRing {
        ring: RingTransport,
        dropped: Arc<AtomicBool>,
    }
    impl Drop for WatchedRing {
        fn drop(&mut self) {
            self.dropped.store(true, Ordering::SeqCst);
        }
    }
    impl Transport for WatchedRing {
        fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.ring.recv(buf)
        }
        fn send(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.ring.send(buf)
        }
        fn poll_fd(&self) -> Option<RawFd> {
            None
        }
        fn domid(&self) -> u32 {
            self.ring.domid()
        }
        fn describe(&self) -> String {
            "watched ring".into()
        }
    }
    struct WatchedConnector {
        page: Option<RingPage>,
        connected: Arc<AtomicBool>,
        dropped: Arc<AtomicBool>,
    }
    impl DomainConnector for WatchedConnector {
        fn connect(&mut self, domid: u32, _mfn: i64, _e: u32) -> io::Result<Box<dyn Transport>> {
            let page = self
                .page
                .take()
                .ok_or_else(|| io::Error::other("no page"))?;
            self.connected.store(true, Ordering::SeqCst);
            Ok(Box::new(WatchedRing {
                ring: RingTransport::new(page, domid, Box::new(|| {}), None),
                dropped: self.dropped.clone(),
            }))
        }
    }

    fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// A server watching domain exceptions through `virq` and `src`, with
    /// `connector` if any; dom0's admin client watches `@releaseDomain`
    /// (its first event taken) and `/sentinel`.
    fn start_domexc(
        name: &str,
        virq: Box<dyn VirqEvents>,
        src: FakeDomains,
        connector: Option<Box<dyn DomainConnector>>,
    ) -> (
        PathBuf,
        ShutdownHandle,
        std::thread::JoinHandle<Server>,
        Client,
    ) {
        let p = tmp_sock(name);
        let mut s = Server::new(Engine::default()).unwrap();
        s.listen(&p).unwrap();
        s.watch_domain_exceptions(virq, Box::new(src));
        assert!(s.watches_domain_exceptions());
        if let Some(c) = connector {
            s.set_connector(c);
        }
        let h = s.shutdown_handle();
        let j = std::thread::spawn(move || {
            s.run().unwrap();
            s
        });
        let mut admin = Client::connect(&p).unwrap();
        admin.set_timeout(Some(Duration::from_secs(10))).unwrap();
        admin.watch("@releaseDomain", "rel").unwrap();
        assert_eq!(admin.wait_event().unwrap().0, "@releaseDomain");
        admin.write("/sentinel", b"").unwrap();
        admin.watch("/sentinel", "s").unwrap();
        assert_eq!(admin.wait_event().unwrap().0, "/sentinel");
        (p, h, j, admin)
    }

    /// The next watch event is the sentinel's: nothing fired before it.
    fn no_event_before_sentinel(admin: &mut Client) {
        admin.write("/sentinel", b"x").unwrap();
        assert_eq!(
            admin.wait_event().unwrap(),
            ("/sentinel".to_string(), "s".to_string())
        );
    }

    fn introduced(admin: &mut Client, domid: u32) -> bool {
        let r = admin
            .request(
                MsgType::IsDomainIntroduced,
                0,
                format!("{domid}\0").as_bytes(),
            )
            .unwrap();
        r == b"T\0"
    }

    /// A domain dies (VIRQ_DOM_EXC, getdomaininfo says dying): it is
    /// released, `@releaseDomain` reaches the watcher, and its ring is let
    /// go although a reply to it was still unsent.
    #[test]
    fn dying_domain_is_released_and_its_ring_dropped() {
        let bell = eventfd();
        let src = FakeDomains::default();
        let page = RingPage::new_in_memory();
        let connected = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicBool::new(false));
        let (p, h, j, mut admin) = start_domexc(
            "dx-dying",
            Box::new(FakeVirq(bell.try_clone().unwrap())),
            src.clone(),
            Some(Box::new(WatchedConnector {
                page: Some(page.clone()),
                connected: connected.clone(),
                dropped: dropped.clone(),
            })),
        );
        src.set(7, Ok(RUNNING));
        admin.introduce(7, 1234, 5).unwrap();
        wait_for("the guest's ring attached", || {
            connected.load(Ordering::SeqCst)
        });
        // A reply bigger than the ring, which the guest stops reading.
        admin.write("/big", &[b'b'; 3000]).unwrap();
        admin.set_perms("/big", &["r0"]).unwrap();
        let mut guest = RingClient::new(page);
        guest
            .send(&Message::new(MsgType::Read, 1, 0, b"/big\0".to_vec()).to_bytes())
            .unwrap();
        let mut b = [0u8; 16];
        wait_for("the reply started", || {
            guest.recv(&mut b).is_ok_and(|n| n > 0)
        });
        // Running: an event changes nothing.
        ring(&bell);
        wait_for("the check", || src.calls() >= 1);
        no_event_before_sentinel(&mut admin);
        assert!(introduced(&mut admin, 7));
        assert!(!dropped.load(Ordering::SeqCst));
        // Dying.
        src.set(7, Ok(DYING));
        ring(&bell);
        assert_eq!(
            admin.wait_event().unwrap(),
            ("@releaseDomain".to_string(), "rel".to_string())
        );
        assert!(!introduced(&mut admin, 7));
        wait_for("the ring dropped", || dropped.load(Ordering::SeqCst));
        no_event_before_sentinel(&mut admin);
        h.shutdown();
        let s = j.join().unwrap();
        assert!(s.engine().domain(7).is_none());
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }

    /// A domain that vanished (getdomaininfo: no such domain) is released.
    #[test]
    fn vanished_domain_is_released() {
        let bell = eventfd();
        let src = FakeDomains::default();
        let (p, h, j, mut admin) = start_domexc(
            "dx-gone",
            Box::new(FakeVirq(bell.try_clone().unwrap())),
            src.clone(),
            None,
        );
        src.set(8, Ok(RUNNING));
        admin.introduce(8, 1, 1).unwrap();
        admin.introduce(9, 1, 1).unwrap();
        src.set(9, Ok(RUNNING));
        src.remove(8);
        ring(&bell);
        assert_eq!(admin.wait_event().unwrap().0, "@releaseDomain");
        assert!(!introduced(&mut admin, 8));
        assert!(introduced(&mut admin, 9));
        no_event_before_sentinel(&mut admin);
        h.shutdown();
        j.join().unwrap();
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }

    /// A shut-down domain fires `@releaseDomain` once, however many
    /// events follow, and stays introduced until released.
    #[test]
    fn shut_down_domain_fires_once_and_stays() {
        let bell = eventfd();
        let src = FakeDomains::default();
        let (p, h, j, mut admin) = start_domexc(
            "dx-shutdown",
            Box::new(FakeVirq(bell.try_clone().unwrap())),
            src.clone(),
            None,
        );
        src.set(5, Ok(RUNNING));
        admin.introduce(5, 1, 1).unwrap();
        src.set(5, Ok(SHUTDOWN));
        ring(&bell);
        assert_eq!(admin.wait_event().unwrap().0, "@releaseDomain");
        assert!(introduced(&mut admin, 5));
        // The same shutdown, reported again.
        for n in 2..=3 {
            ring(&bell);
            wait_for("the check", || src.calls() >= n);
            no_event_before_sentinel(&mut admin);
        }
        assert!(introduced(&mut admin, 5));
        // xl releases it once it has dealt with it.
        admin.request(MsgType::Release, 0, b"5\0").unwrap();
        assert_eq!(admin.wait_event().unwrap().0, "@releaseDomain");
        assert!(!introduced(&mut admin, 5));
        h.shutdown();
        j.join().unwrap();
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }

    /// getdomaininfo failing drops nothing and the server serves on; a
    /// virq descriptor that breaks is given up, the server serves on.
    #[test]
    fn failing_domain_info_or_virq_does_not_stop_the_server() {
        let bell = eventfd();
        let src = FakeDomains::default();
        let (p, h, j, mut admin) = start_domexc(
            "dx-fail",
            Box::new(FakeVirq(bell.try_clone().unwrap())),
            src.clone(),
            None,
        );
        src.set(4, Err(libc::EPERM));
        admin.introduce(4, 1, 1).unwrap();
        for n in 1..=2 {
            ring(&bell);
            wait_for("the check", || src.calls() >= n);
            no_event_before_sentinel(&mut admin);
        }
        assert!(introduced(&mut admin, 4));
        h.shutdown();
        let s = j.join().unwrap();
        assert!(s.watches_domain_exceptions());
        let _ = std::fs::remove_dir_all(p.parent().unwrap());

        struct BrokenVirq(std::fs::File, Arc<AtomicUsize>);
        impl VirqEvents for BrokenVirq {
            fn poll_fd(&self) -> RawFd {
                self.0.as_raw_fd()
            }
            fn take(&mut self) -> io::Result<bool> {
                self.1.fetch_add(1, Ordering::SeqCst);
                Err(io::Error::from_raw_os_error(libc::EIO))
            }
            fn describe(&self) -> String {
                "broken virq".into()
            }
        }
        let bell = eventfd();
        let takes = Arc::new(AtomicUsize::new(0));
        let src = FakeDomains::default();
        let (p, h, j, mut admin) = start_domexc(
            "dx-broken",
            Box::new(BrokenVirq(bell.try_clone().unwrap(), takes.clone())),
            src.clone(),
            None,
        );
        admin.introduce(4, 1, 1).unwrap();
        // Rung and never drained: without giving up, poll(2) would spin.
        ring(&bell);
        wait_for("the failed take", || takes.load(Ordering::SeqCst) >= 1);
        no_event_before_sentinel(&mut admin);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            takes.load(Ordering::SeqCst),
            1,
            "given up after one failure"
        );
        assert_eq!(src.calls(), 0);
        assert!(introduced(&mut admin, 4));
        h.shutdown();
        let s = j.join().unwrap();
        assert!(!s.watches_domain_exceptions());
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }
}
