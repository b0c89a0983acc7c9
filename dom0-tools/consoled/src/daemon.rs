//! The daemon: finds consoles in xenstore, serves each ([`Domain`]) and
//! answers `ATTACH <domid>` on its Unix socket, in one `poll(2)` loop.
//!
//! Xenstore and the hypervisor sit behind [`Store`] and [`Connector`] so
//! that the loop runs in host tests with in-memory pages and fake event
//! channels; [`XsStore`], [`XenConnector`] and [`spawn_watcher`] are the
//! real ones.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_xendev::gntdev::{self, Gntdev, MappedBy};
use keel_xendev::privcmd::Privcmd;
use keel_xenstored::client::{Client, ClientError};
use keel_xenstored::transport::xendev::Evtchn;

use crate::domain::{Conn, Domain, EventChannel};
use crate::ring::ConsPage;
use crate::sys;

/// Where `keelctl console` finds the daemon.
pub const SOCKET_PATH: &str = "/run/keel/console.sock";
/// Where the guests' output is logged, one file per domain.
pub const LOG_DIR: &str = "/var/log/keel/console";
/// Longest request line a client may send.
const MAX_REQUEST: usize = 128;
/// A client that has not sent its request by then is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the daemon reads and writes in xenstore.
pub trait Store {
    /// `Ok(None)`: no such node.
    fn read(&mut self, path: &str) -> Result<Option<String>, String>;
    fn write(&mut self, path: &str, value: &str) -> Result<(), String>;
    /// `Ok(None)`: no such node.
    fn directory(&mut self, path: &str) -> Result<Option<Vec<String>>, String>;
}

/// A domain's console, connected: its page mapped, its event channel bound.
pub struct Console {
    pub page: ConsPage,
    pub evtchn: Box<dyn EventChannel>,
    /// How the page was mapped, said once when the domain attaches
    /// (`None`: nothing to say).
    pub mapped: Option<MappedBy>,
}

/// Maps a domain's console page and binds its event channel.
pub trait Connector {
    fn connect(&mut self, domid: u32, ring_ref: u64, port: u32) -> Result<Console, String>;
}

/// Connects a console as xenconsoled does: the page through the grant
/// table (`grant`: gntdev, `GNTTAB_RESERVED_CONSOLE`) or, if that fails,
/// by foreign mapping of `ring-ref` (`foreign`: privcmd); then the event
/// channel (`bind`). The mappers are closures so that tests can drive it.
pub fn connect_console(
    grant: impl FnOnce() -> Result<ConsPage, String>,
    foreign: impl FnOnce() -> Result<ConsPage, String>,
    bind: impl FnOnce() -> Result<Box<dyn EventChannel>, String>,
) -> Result<Console, String> {
    let (page, mapped) = gntdev::map_ring(grant, foreign)?;
    let evtchn = bind()?;
    Ok(Console {
        page,
        evtchn,
        mapped: Some(mapped),
    })
}

pub struct Config {
    pub socket: PathBuf,
    pub log_dir: PathBuf,
    /// Give each domain a pty (and write its path to `console/tty`).
    pub pty: bool,
    /// Print attach/detach lines to stdout (messages are kept either way).
    pub verbose: bool,
}

/// A connection that has not sent its `ATTACH` line yet.
struct Pending {
    stream: UnixStream,
    buf: Vec<u8>,
    since: Instant,
}

pub struct Daemon {
    cfg: Config,
    store: Box<dyn Store>,
    connector: Box<dyn Connector>,
    listener: UnixListener,
    /// Readable when a xenstore watch fired ([`spawn_watcher`]).
    wake: Option<UnixStream>,
    domains: BTreeMap<u32, Domain>,
    /// Domains that failed to attach or were dropped, with the ring-ref and
    /// port they had: not retried until those change or the domain goes.
    failed: BTreeMap<u32, (u64, u32)>,
    pending: Vec<Pending>,
    /// Every line the daemon reported (attach, detach, errors).
    pub messages: Vec<String>,
}

#[derive(Clone, Copy)]
enum Src {
    Listener,
    Wake,
    Evtchn(u32),
    Pty(u32),
    Client(u32, usize),
    Pending(usize),
}

impl Daemon {
    /// Binds the socket (replacing a stale one) and creates the log dir.
    pub fn new(
        cfg: Config,
        store: Box<dyn Store>,
        connector: Box<dyn Connector>,
        wake: Option<UnixStream>,
    ) -> io::Result<Daemon> {
        let ctx = |what: &str, p: &Path, e: io::Error| {
            io::Error::new(e.kind(), format!("{what} {}: {e}", p.display()))
        };
        if let Some(dir) = cfg.socket.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ctx("creating", dir, e))?;
        }
        if UnixStream::connect(&cfg.socket).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{}: another daemon is serving it", cfg.socket.display()),
            ));
        }
        let _ = std::fs::remove_file(&cfg.socket);
        let listener =
            UnixListener::bind(&cfg.socket).map_err(|e| ctx("binding", &cfg.socket, e))?;
        // Root's only: a client types into the guest's console.
        std::fs::set_permissions(&cfg.socket, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| ctx("chmod", &cfg.socket, e))?;
        listener.set_nonblocking(true)?;
        std::fs::create_dir_all(&cfg.log_dir).map_err(|e| ctx("creating", &cfg.log_dir, e))?;
        if let Some(w) = &wake {
            w.set_nonblocking(true)?;
        }
        Ok(Daemon {
            cfg,
            store,
            connector,
            listener,
            wake,
            domains: BTreeMap::new(),
            failed: BTreeMap::new(),
            pending: Vec::new(),
            messages: Vec::new(),
        })
    }

    fn say(&mut self, line: String) {
        if self.cfg.verbose {
            println!("keel-consoled: {line}");
        }
        self.messages.push(line);
    }

    /// The ids of the domains served now.
    pub fn attached(&self) -> Vec<u32> {
        self.domains.keys().copied().collect()
    }

    pub fn domain(&self, domid: u32) -> Option<&Domain> {
        self.domains.get(&domid)
    }

    fn read_num<T: std::str::FromStr>(&mut self, path: &str) -> Option<T> {
        match self.store.read(path) {
            Ok(Some(v)) => v.trim().parse().ok(),
            _ => None,
        }
    }

    /// Attaches every domain with a console that is not served yet and
    /// detaches those whose `/local/domain/N` is gone.
    pub fn rescan(&mut self) {
        let ids: BTreeSet<u32> = match self.store.directory("/local/domain") {
            Ok(Some(v)) => v.iter().filter_map(|s| s.parse().ok()).collect(),
            Ok(None) => BTreeSet::new(),
            Err(e) => {
                self.say(format!("xenstore: listing /local/domain: {e}"));
                return;
            }
        };
        let gone: Vec<u32> = self
            .domains
            .keys()
            .filter(|d| !ids.contains(d))
            .copied()
            .collect();
        for d in gone {
            self.detach(d, "domain gone");
        }
        self.failed.retain(|d, _| ids.contains(d));
        for &d in ids.iter().filter(|&&d| d != 0) {
            if self.domains.contains_key(&d) {
                continue;
            }
            let base = format!("/local/domain/{d}/console");
            let (Some(ring_ref), Some(port)) = (
                self.read_num::<u64>(&format!("{base}/ring-ref")),
                self.read_num::<u32>(&format!("{base}/port")),
            ) else {
                continue;
            };
            if self.failed.get(&d) == Some(&(ring_ref, port)) {
                continue;
            }
            if let Ok(Some(t)) = self.store.read(&format!("{base}/type")) {
                if t != "xenconsoled" {
                    continue;
                }
            }
            self.attach(d, ring_ref, port);
        }
    }

    fn attach(&mut self, d: u32, ring_ref: u64, port: u32) {
        let Console {
            page,
            evtchn: ev,
            mapped,
        } = match self.connector.connect(d, ring_ref, port) {
            Ok(x) => x,
            Err(e) => {
                self.failed.insert(d, (ring_ref, port));
                self.say(format!("dom{d}: cannot attach console: {e}"));
                return;
            }
        };
        let name = self
            .store
            .read(&format!("/local/domain/{d}/name"))
            .ok()
            .flatten();
        let mut dom = Domain::new(d, name, page, ev, &self.cfg.log_dir, self.cfg.pty);
        let warnings = std::mem::take(&mut dom.warnings);
        if let Some(tty) = dom.tty_path() {
            let tty = tty.to_string();
            if let Err(e) = self
                .store
                .write(&format!("/local/domain/{d}/console/tty"), &tty)
            {
                self.say(format!("dom{d}: writing console/tty: {e}"));
            }
        }
        let line = format!(
            "attached {} (domain {d}, tty {}, log {})",
            dom.label(),
            dom.tty_path().unwrap_or("none"),
            dom.log_path.display()
        );
        let label = dom.label();
        self.domains.insert(d, dom);
        if let Some(how) = mapped {
            self.say(format!("mapped {label}'s console ring {how}"));
        }
        for w in warnings {
            self.say(format!("dom{d}: {w}"));
        }
        self.say(line);
        // Output written before we came.
        self.service(d);
    }

    fn detach(&mut self, d: u32, why: &str) {
        if let Some(mut dom) = self.domains.remove(&d) {
            // What the guest wrote last (the page stays mapped until `dom`
            // drops), and what the clients still have queued, best effort.
            let _ = dom.pump_output();
            for c in &mut dom.clients {
                let _ = c.stream.set_nonblocking(false);
                let _ = c.stream.set_write_timeout(Some(Duration::from_millis(200)));
                let _ = c.flush();
            }
            let label = dom.label();
            self.say(format!("detached {label} (domain {d}): {why}"));
        }
    }

    /// Output to the log and clients, queued input to the ring; a broken
    /// ring drops the domain.
    fn service(&mut self, d: u32) {
        let Some(dom) = self.domains.get_mut(&d) else {
            return;
        };
        let r = dom.pump_output().and_then(|_| dom.flush_input());
        let warnings = std::mem::take(&mut dom.warnings);
        let mut gone = Vec::new();
        for (i, c) in dom.clients.iter_mut().enumerate() {
            if c.flush().is_err() {
                gone.push(i);
            }
        }
        for i in gone.into_iter().rev() {
            dom.clients.remove(i);
        }
        for w in warnings {
            self.say(format!("dom{d}: {w}"));
        }
        if let Err(e) = r {
            let key = self.failed_key(d);
            self.detach(d, &format!("console ring broken: {e}"));
            if let Some(k) = key {
                self.failed.insert(d, k);
            }
        }
    }

    fn failed_key(&mut self, d: u32) -> Option<(u64, u32)> {
        let base = format!("/local/domain/{d}/console");
        Some((
            self.read_num(&format!("{base}/ring-ref"))?,
            self.read_num(&format!("{base}/port"))?,
        ))
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    if s.set_nonblocking(true).is_ok() {
                        self.pending.push(Pending {
                            stream: s,
                            buf: Vec::new(),
                            since: Instant::now(),
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }

    /// Reads a pending client's request; true when it is settled (attached
    /// or refused) or gone.
    fn read_request(&mut self, i: usize) -> bool {
        let p = &mut self.pending[i];
        let mut buf = [0u8; 256];
        match p.stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => p.buf.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
        let Some(nl) = p.buf.iter().position(|&b| b == b'\n') else {
            if p.buf.len() > MAX_REQUEST {
                refuse(&mut p.stream, "request line too long");
                return true;
            }
            return false;
        };
        let line = String::from_utf8_lossy(&p.buf[..nl]).trim_end().to_string();
        let rest = p.buf[nl + 1..].to_vec();
        let domid = match parse_request(&line) {
            Ok(d) => d,
            Err(e) => {
                refuse(&mut p.stream, &e);
                return true;
            }
        };
        let Some(dom) = self.domains.get_mut(&domid) else {
            refuse(&mut p.stream, &format!("no console for domain {domid}"));
            return true;
        };
        let stream = p.stream.try_clone();
        let Ok(stream) = stream else { return true };
        let mut c = Conn::new(stream);
        c.queue(b"OK\n");
        dom.add_client(c);
        dom.queue_input(&rest);
        let _ = dom.clients.last_mut().map(Conn::flush);
        true
    }

    /// Reads a client's input for the guest; false when it hung up.
    fn read_client(&mut self, d: u32, i: usize) -> bool {
        let Some(dom) = self.domains.get_mut(&d) else {
            return true;
        };
        let room = dom.input_room();
        if room == 0 {
            return true;
        }
        let mut buf = vec![0u8; room.min(4096)];
        match dom.clients[i].stream.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => {
                dom.queue_input(&buf[..n]);
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
            Err(_) => false,
        }
    }

    /// One round: waits up to `timeout` for anything, handles it, then
    /// services every domain.
    pub fn step(&mut self, timeout: Duration) -> io::Result<()> {
        let mut fds = Vec::new();
        let mut srcs = Vec::new();
        let mut add = |fd: RawFd, ev: libc::c_short, s: Src| {
            fds.push(sys::pollfd(fd, ev));
            srcs.push(s);
        };
        add(self.listener.as_raw_fd(), libc::POLLIN, Src::Listener);
        if let Some(w) = &self.wake {
            add(w.as_raw_fd(), libc::POLLIN, Src::Wake);
        }
        for (i, p) in self.pending.iter().enumerate() {
            add(p.stream.as_raw_fd(), libc::POLLIN, Src::Pending(i));
        }
        for (&d, dom) in &self.domains {
            add(dom.evtchn_fd(), libc::POLLIN, Src::Evtchn(d));
            let want_in = dom.input_room() > 0;
            if let (Some(fd), true) = (dom.pty_fd(), want_in) {
                add(fd, libc::POLLIN, Src::Pty(d));
            }
            for (i, c) in dom.clients.iter().enumerate() {
                let mut ev = 0;
                if want_in {
                    ev |= libc::POLLIN;
                }
                if c.wants_write() {
                    ev |= libc::POLLOUT;
                }
                add(c.stream.as_raw_fd(), ev, Src::Client(d, i));
            }
        }
        sys::poll(&mut fds, timeout.as_millis().min(i32::MAX as u128) as i32)?;
        let mut rescan = false;
        let mut settled = Vec::new();
        let mut hung_up: Vec<(u32, usize)> = Vec::new();
        for (pfd, src) in fds.iter().zip(srcs) {
            if pfd.revents == 0 {
                continue;
            }
            match src {
                Src::Listener => self.accept(),
                Src::Wake => {
                    let mut b = [0u8; 64];
                    if let Some(w) = &mut self.wake {
                        while matches!(w.read(&mut b), Ok(n) if n > 0) {}
                    }
                    rescan = true;
                }
                Src::Pending(i) => {
                    if self.read_request(i) {
                        settled.push(i);
                    }
                }
                Src::Evtchn(d) => {
                    if let Some(dom) = self.domains.get(&d) {
                        dom.drain_events();
                    }
                }
                Src::Pty(d) => {
                    if let Some(dom) = self.domains.get_mut(&d) {
                        dom.read_pty();
                    }
                }
                Src::Client(d, i) => {
                    let hup = pfd.revents & (libc::POLLHUP | libc::POLLERR) != 0;
                    if (pfd.revents & libc::POLLIN != 0 && !self.read_client(d, i))
                        || (hup && pfd.revents & libc::POLLIN == 0)
                    {
                        hung_up.push((d, i));
                    }
                }
            }
        }
        for (d, i) in hung_up.into_iter().rev() {
            if let Some(dom) = self.domains.get_mut(&d) {
                dom.clients.remove(i);
            }
        }
        let now = Instant::now();
        let mut i = 0;
        self.pending.retain(|p| {
            let keep = !settled.contains(&i) && now.duration_since(p.since) < REQUEST_TIMEOUT;
            i += 1;
            keep
        });
        if rescan {
            self.rescan();
        }
        let ids = self.attached();
        for d in ids {
            self.service(d);
        }
        Ok(())
    }

    /// Serves for ever, rescanning on each watch event and every
    /// `rescan_every` in case an event was missed.
    pub fn run(&mut self, rescan_every: Duration) -> io::Result<()> {
        self.rescan();
        let mut last = Instant::now();
        loop {
            self.step(Duration::from_millis(500))?;
            if last.elapsed() >= rescan_every {
                self.rescan();
                last = Instant::now();
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.cfg.socket);
    }
}

fn refuse(s: &mut UnixStream, why: &str) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
    let _ = s.write_all(format!("ERR {why}\n").as_bytes());
}

/// `ATTACH <domid>` → the domid.
pub fn parse_request(line: &str) -> Result<u32, String> {
    let mut w = line.split_ascii_whitespace();
    match (w.next(), w.next(), w.next()) {
        (Some("ATTACH"), Some(d), None) => d
            .parse()
            .map_err(|_| format!("bad domain id {d:?}: expected ATTACH <domid>")),
        _ => Err(format!("bad request {line:?}: expected ATTACH <domid>")),
    }
}

/// Xenstore through keel-xenstored's socket client; reconnects after an
/// I/O error.
pub struct XsStore {
    path: PathBuf,
    client: Option<Client>,
}

impl XsStore {
    pub fn connect(path: &Path) -> Result<XsStore, String> {
        let mut s = XsStore {
            path: path.to_path_buf(),
            client: None,
        };
        s.client()?;
        Ok(s)
    }

    fn client(&mut self) -> Result<&mut Client, String> {
        if self.client.is_none() {
            let c = Client::connect(&self.path)
                .map_err(|e| format!("xenstore {}: {e}", self.path.display()))?;
            c.set_timeout(Some(Duration::from_secs(5)))
                .map_err(|e| e.to_string())?;
            self.client = Some(c);
        }
        Ok(self.client.as_mut().expect("just set"))
    }

    fn call<T>(
        &mut self,
        f: impl FnOnce(&mut Client) -> Result<T, ClientError>,
    ) -> Result<Option<T>, String> {
        let r = f(self.client()?);
        match r {
            Ok(v) => Ok(Some(v)),
            Err(ClientError::Xs(_)) => Ok(None),
            Err(e) => {
                self.client = None;
                Err(e.to_string())
            }
        }
    }
}

impl Store for XsStore {
    fn read(&mut self, path: &str) -> Result<Option<String>, String> {
        self.call(|c| c.read(path))
            .map(|v| v.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }
    fn write(&mut self, path: &str, value: &str) -> Result<(), String> {
        match self.call(|c| c.write(path, value.as_bytes()))? {
            Some(()) => Ok(()),
            None => Err(format!("xenstore refused writing {path}")),
        }
    }
    fn directory(&mut self, path: &str) -> Result<Option<Vec<String>>, String> {
        self.call(|c| c.directory(path))
    }
}

/// Real consoles: the page through the grant table (`/dev/xen/gntdev`,
/// the domain's `GNTTAB_RESERVED_CONSOLE` grant) or, failing that, a
/// privcmd foreign mapping of `ring-ref`; the port through
/// `/dev/xen/evtchn`.
pub struct XenConnector {
    /// The open gntdev, or why it could not be opened (then every console
    /// is mapped by foreign mapping, and each attach says why).
    gntdev: Result<Gntdev, String>,
    privcmd: Privcmd,
}

impl XenConnector {
    /// Opens both devices; only privcmd is required.
    pub fn open(privcmd: &Path, gntdev: &Path) -> Result<XenConnector, String> {
        use keel_xendev::privcmd::OpenError;
        let gntdev = Gntdev::open(gntdev).map_err(|e| e.to_string());
        Privcmd::open(privcmd)
            .map(|privcmd| XenConnector { gntdev, privcmd })
            .map_err(|e| {
                let why = match e {
                    OpenError::Missing => {
                        "not found: load the xen-privcmd module (not running on Xen?)".to_string()
                    }
                    OpenError::Permission(e) | OpenError::Other(e) => e.to_string(),
                };
                format!("{}: {why}", privcmd.display())
            })
    }
}

impl Connector for XenConnector {
    fn connect(&mut self, domid: u32, ring_ref: u64, port: u32) -> Result<Console, String> {
        let dom = u16::try_from(domid).map_err(|_| format!("domain id {domid} out of range"))?;
        let grant = || {
            let gntdev = self.gntdev.as_ref().map_err(Clone::clone)?;
            let map = gntdev
                .map_grant(domid, gntdev::GNTTAB_RESERVED_CONSOLE)
                .map_err(|e| e.to_string())?;
            let ptr = map.as_ptr();
            // SAFETY: `map` is one page (4096 bytes, page aligned, more
            // than a xencons_interface) mapped read-write until it drops;
            // the Arc that owns it goes into the ConsPage.
            Ok(unsafe { ConsPage::from_owned(ptr, Arc::new(map)) })
        };
        let foreign = || {
            let map = self
                .privcmd
                .map_foreign(dom, &[ring_ref])
                .map_err(|(_, e)| format!("mapping ring-ref {ring_ref:#x}: {e:?}"))?;
            let ptr = map.as_ptr();
            // SAFETY: as above: one read-write page, owned by the ConsPage.
            Ok(unsafe { ConsPage::from_owned(ptr, Arc::new(map)) })
        };
        let bind = || {
            Evtchn::bind_interdomain(domid, port)
                .map(|ev| Box::new(ev) as Box<dyn EventChannel>)
                .map_err(|e| e.to_string())
        };
        connect_console(grant, foreign, bind)
    }
}

/// Watches xenstore for domains coming and going on a connection of its
/// own (in a thread); the returned stream becomes readable on each event.
/// The watches are set before this returns, so nothing after is missed.
pub fn spawn_watcher(path: &Path) -> Result<UnixStream, String> {
    let watch = |path: &Path| -> Result<Client, String> {
        let mut c =
            Client::connect(path).map_err(|e| format!("xenstore {}: {e}", path.display()))?;
        for (p, t) in [
            ("@introduceDomain", "intro"),
            ("@releaseDomain", "release"),
            ("/local/domain", "dir"),
        ] {
            c.watch(p, t).map_err(|e| format!("watching {p}: {e}"))?;
        }
        Ok(c)
    };
    let mut c = watch(path)?;
    let (rx, mut tx) = UnixStream::pair().map_err(|e| e.to_string())?;
    tx.set_nonblocking(true).map_err(|e| e.to_string())?;
    let path = path.to_path_buf();
    std::thread::spawn(move || loop {
        match c.wait_event() {
            Ok((p, _)) => {
                if relevant(&p) {
                    let _ = tx.write(&[1]);
                }
            }
            Err(e) => {
                eprintln!("keel-consoled: xenstore watch: {e}; reconnecting");
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                    if let Ok(n) = watch(&path) {
                        c = n;
                        let _ = tx.write(&[1]);
                        break;
                    }
                }
            }
        }
    });
    Ok(rx)
}

/// Whether a watch event may change which consoles exist: the special
/// paths, `/local/domain[/N]` and anything under `console/`.
pub fn relevant(path: &str) -> bool {
    if path.starts_with('@') {
        return true;
    }
    let Some(rest) = path.strip_prefix("/local/domain") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    parts.len() <= 1 || parts.get(1) == Some(&"console") || parts.get(1) == Some(&"name")
}
