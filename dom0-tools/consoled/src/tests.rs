//! Host tests: the daemon with in-memory console pages, fake event
//! channels and a fake xenstore, real Unix sockets and log files in a
//! temporary directory.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::client::{self, AttachError, Ended};
use crate::daemon::{
    connect_console, parse_request, relevant, Config, Connector, Console, Daemon, Store,
};
use crate::domain::{log_file_name, Domain, EventChannel, BACKLOG};
use crate::ring::{ConsPage, OUT_SIZE};

fn tmpdir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "keel-consoled-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Xenstore as a map of paths to values.
#[derive(Clone, Default)]
struct FakeStore(Arc<Mutex<BTreeMap<String, String>>>);

impl FakeStore {
    fn set(&self, k: &str, v: &str) {
        self.0.lock().unwrap().insert(k.into(), v.into());
    }
    fn get(&self, k: &str) -> Option<String> {
        self.0.lock().unwrap().get(k).cloned()
    }
    fn rm(&self, prefix: &str) {
        self.0
            .lock()
            .unwrap()
            .retain(|k, _| k != prefix && !k.starts_with(&format!("{prefix}/")));
    }
    fn add_domain(&self, d: u32, name: &str) {
        let b = format!("/local/domain/{d}");
        self.set(&format!("{b}/name"), name);
        self.set(&format!("{b}/console/ring-ref"), &format!("{}", 0x1000 + d));
        self.set(&format!("{b}/console/port"), "2");
        self.set(&format!("{b}/console/type"), "xenconsoled");
        self.set(&format!("{b}/console/limit"), "1048576");
    }
}

impl Store for FakeStore {
    fn read(&mut self, path: &str) -> Result<Option<String>, String> {
        Ok(self.get(path))
    }
    fn write(&mut self, path: &str, value: &str) -> Result<(), String> {
        self.set(path, value);
        Ok(())
    }
    fn directory(&mut self, path: &str) -> Result<Option<Vec<String>>, String> {
        let m = self.0.lock().unwrap();
        let pre = format!("{path}/");
        let mut v: Vec<String> = m
            .keys()
            .filter_map(|k| k.strip_prefix(&pre))
            .map(|r| r.split('/').next().unwrap().to_string())
            .collect();
        v.dedup();
        Ok(if v.is_empty() { None } else { Some(v) })
    }
}

/// An event channel: a socket pair the "guest" kicks; notifies counted.
struct FakeEv {
    rx: UnixStream,
    notified: Arc<AtomicUsize>,
}

impl EventChannel for FakeEv {
    fn notify(&self) {
        self.notified.fetch_add(1, Ordering::Relaxed);
    }
    fn drain(&self) -> bool {
        let mut b = [0u8; 64];
        let mut any = false;
        while matches!((&self.rx).read(&mut b), Ok(n) if n > 0) {
            any = true;
        }
        any
    }
    fn fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }
}

/// The guest's side of one console.
#[derive(Clone)]
struct Guest {
    page: ConsPage,
    kick: Arc<UnixStream>,
    notified: Arc<AtomicUsize>,
    rx: Arc<Mutex<Option<UnixStream>>>,
}

impl Guest {
    fn new() -> Guest {
        let (rx, tx) = UnixStream::pair().unwrap();
        rx.set_nonblocking(true).unwrap();
        Guest {
            page: ConsPage::new_in_memory(),
            kick: Arc::new(tx),
            notified: Arc::new(AtomicUsize::new(0)),
            rx: Arc::new(Mutex::new(Some(rx))),
        }
    }
    fn write(&self, s: &[u8]) {
        assert_eq!(self.page.guest_write(s), s.len());
        let _ = (&*self.kick).write(&[1]);
    }
    fn ev(&self) -> FakeEv {
        FakeEv {
            rx: self.rx.lock().unwrap().take().expect("connected once"),
            notified: self.notified.clone(),
        }
    }
}

#[derive(Clone, Default)]
struct FakeXen(Arc<Mutex<BTreeMap<u32, Guest>>>);

impl FakeXen {
    fn guest(&self, d: u32) -> Guest {
        self.0
            .lock()
            .unwrap()
            .entry(d)
            .or_insert_with(Guest::new)
            .clone()
    }
}

impl Connector for FakeXen {
    fn connect(&mut self, d: u32, ring_ref: u64, port: u32) -> Result<Console, String> {
        assert_eq!((ring_ref, port), (0x1000 + d as u64, 2));
        let g = self
            .0
            .lock()
            .unwrap()
            .get(&d)
            .cloned()
            .ok_or(format!("no page for domain {d}"))?;
        Ok(Console {
            page: g.page.clone(),
            evtchn: Box::new(g.ev()),
            mapped: None,
        })
    }
}

/// Which of the two mappers work for a domain (see [`TwoWayXen`]).
#[derive(Clone, Copy)]
struct Mappable {
    grant: bool,
    foreign: bool,
}

/// A connector like [`crate::daemon::XenConnector`]: [`connect_console`]
/// with a fake gntdev and a fake foreign mapper, each of which maps the
/// guest's page or fails as `ways` says. Records which mappers it tried.
struct TwoWayXen {
    xen: FakeXen,
    ways: BTreeMap<u32, Mappable>,
    tried: Arc<Mutex<Vec<(u32, &'static str)>>>,
}

impl Connector for TwoWayXen {
    fn connect(&mut self, d: u32, ring_ref: u64, _port: u32) -> Result<Console, String> {
        let g = self.xen.guest(d);
        let way = self.ways[&d];
        let tried = &self.tried;
        let grant = || {
            tried.lock().unwrap().push((d, "grant"));
            if way.grant {
                Ok(g.page.clone())
            } else {
                Err("mmap: Invalid argument (os error 22)".to_string())
            }
        };
        let foreign = || {
            tried.lock().unwrap().push((d, "foreign"));
            if way.foreign {
                Ok(g.page.clone())
            } else {
                Err(format!("mapping ring-ref {ring_ref:#x}: errno 1"))
            }
        };
        connect_console(grant, foreign, || {
            Ok(Box::new(g.ev()) as Box<dyn EventChannel>)
        })
    }
}

struct Setup {
    dir: PathBuf,
    sock: PathBuf,
    store: FakeStore,
    xen: FakeXen,
    wake: UnixStream,
    d: Daemon,
}

impl Setup {
    fn new(tag: &str, pty: bool) -> Setup {
        let dir = tmpdir(tag);
        let sock = dir.join("console.sock");
        let store = FakeStore::default();
        store.set("/local/domain/0/name", "Domain-0");
        let xen = FakeXen::default();
        let (wake, rx) = UnixStream::pair().unwrap();
        let d = Daemon::new(
            Config {
                socket: sock.clone(),
                log_dir: dir.join("logs"),
                pty,
                verbose: false,
            },
            Box::new(store.clone()),
            Box::new(xen.clone()),
            Some(rx),
        )
        .unwrap();
        Setup {
            dir,
            sock,
            store,
            xen,
            wake,
            d,
        }
    }

    fn add(&self, d: u32, name: &str) -> Guest {
        let g = self.xen.guest(d);
        self.store.add_domain(d, name);
        g
    }

    /// A watch event.
    fn fire(&mut self) {
        (&self.wake).write_all(&[1]).unwrap();
    }

    fn steps(&mut self, n: usize) {
        for _ in 0..n {
            self.d.step(Duration::from_millis(5)).unwrap();
        }
    }

    /// Steps until `f` holds (5 s at most).
    fn until(&mut self, what: &str, mut f: impl FnMut(&mut Setup) -> bool) {
        let t0 = Instant::now();
        while !f(self) {
            assert!(t0.elapsed() < Duration::from_secs(5), "timed out: {what}");
            self.d.step(Duration::from_millis(10)).unwrap();
        }
    }

    /// A raw client: sends `req`, returns the stream (non-blocking).
    fn raw(&self, req: &[u8]) -> UnixStream {
        let mut s = UnixStream::connect(&self.sock).unwrap();
        s.write_all(req).unwrap();
        s.set_nonblocking(true).unwrap();
        s
    }

    /// Steps until the client has received something ending with `end`
    /// (accumulated in `got`); false when the client saw EOF instead.
    fn read_until(&mut self, s: &mut UnixStream, got: &mut Vec<u8>, end: &[u8]) -> bool {
        let t0 = Instant::now();
        let mut buf = [0u8; 65536];
        loop {
            if got.ends_with(end) {
                return true;
            }
            match s.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return false,
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "timed out waiting for {:?}; got {:?}",
                String::from_utf8_lossy(end),
                String::from_utf8_lossy(got)
            );
            self.d.step(Duration::from_millis(10)).unwrap();
        }
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join("logs").join(name)).unwrap_or_default()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn attaches_domains_from_xenstore_records() {
    let mut t = Setup::new("scan", false);
    t.add(3, "web");
    t.add(5, "qemu");
    t.store.set("/local/domain/5/console/type", "ioemu");
    t.xen.guest(4);
    t.store.set("/local/domain/4/name", "half");
    t.store.set("/local/domain/4/console/port", "2");
    t.d.rescan();
    assert_eq!(t.d.attached(), [3]);
    assert!(
        t.d.messages
            .iter()
            .any(|m| m.starts_with("attached web (domain 3")),
        "{:?}",
        t.d.messages
    );
    // The ring-ref arrives later: the watch fires, the domain attaches.
    t.store.set("/local/domain/4/console/ring-ref", "4100");
    t.fire();
    t.steps(2);
    assert_eq!(t.d.attached(), [3, 4]);
    // Idempotent.
    t.d.rescan();
    assert_eq!(t.d.attached(), [3, 4]);
    assert_eq!(
        t.d.messages
            .iter()
            .filter(|m| m.starts_with("attached"))
            .count(),
        2
    );
}

/// As xenconsoled: a console page is mapped through the grant table when
/// the domain granted it, by foreign mapping when not, and a domain that
/// can be mapped neither way is reported once while the others are served.
#[test]
fn rings_are_mapped_through_the_grant_table_first() {
    let dir = tmpdir("gnt");
    let store = FakeStore::default();
    let xen = FakeXen::default();
    let both = Mappable {
        grant: true,
        foreign: true,
    };
    let foreign_only = Mappable {
        grant: false,
        foreign: true,
    };
    let neither = Mappable {
        grant: false,
        foreign: false,
    };
    let ways = BTreeMap::from([(3, both), (4, foreign_only), (5, neither)]);
    for (d, name) in [(3, "granted"), (4, "foreign"), (5, "neither")] {
        xen.guest(d);
        store.add_domain(d, name);
    }
    let tried = Arc::new(Mutex::new(Vec::new()));
    let connector = TwoWayXen {
        xen: xen.clone(),
        ways,
        tried: tried.clone(),
    };
    let mut d = Daemon::new(
        Config {
            socket: dir.join("console.sock"),
            log_dir: dir.join("logs"),
            pty: false,
            verbose: false,
        },
        Box::new(store.clone()),
        Box::new(connector),
        None,
    )
    .unwrap();
    d.rescan();
    assert_eq!(d.attached(), [3, 4], "{:?}", d.messages);
    assert_eq!(
        *tried.lock().unwrap(),
        [
            (3, "grant"),
            (4, "grant"),
            (4, "foreign"),
            (5, "grant"),
            (5, "foreign")
        ]
    );
    let has = |d: &Daemon, line: &str| d.messages.iter().filter(|m| *m == line).count();
    assert_eq!(
        has(&d, "mapped granted's console ring through the grant table"),
        1,
        "{:?}",
        d.messages
    );
    assert_eq!(
        has(
            &d,
            "mapped foreign's console ring by foreign mapping \
             (gntdev: mmap: Invalid argument (os error 22))"
        ),
        1,
        "{:?}",
        d.messages
    );
    assert_eq!(
        has(
            &d,
            "dom5: cannot attach console: gntdev: mmap: Invalid argument (os error 22); \
             foreign mapping: mapping ring-ref 0x1005: errno 1"
        ),
        1,
        "{:?}",
        d.messages
    );
    // Said once per domain; the failed one is not retried.
    d.rescan();
    let mapped = d
        .messages
        .iter()
        .filter(|m| m.starts_with("mapped "))
        .count();
    assert_eq!(mapped, 2, "{:?}", d.messages);
    assert_eq!(tried.lock().unwrap().len(), 5);
    // Both mapped domains are served.
    xen.guest(3).write(b"via grant\n");
    xen.guest(4).write(b"via privcmd\n");
    let log = |n: &str| std::fs::read_to_string(dir.join("logs").join(n)).unwrap_or_default();
    let t0 = Instant::now();
    while log("granted.log") != "via grant\n" || log("foreign.log") != "via privcmd\n" {
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", d.messages);
        d.step(Duration::from_millis(10)).unwrap();
    }
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_domain_that_cannot_be_mapped_is_reported_once() {
    let mut t = Setup::new("nomap", false);
    t.store.add_domain(7, "ghost");
    t.d.rescan();
    t.d.rescan();
    assert!(t.d.attached().is_empty());
    let errs: Vec<_> =
        t.d.messages
            .iter()
            .filter(|m| m.contains("cannot attach"))
            .collect();
    assert_eq!(errs.len(), 1, "{:?}", t.d.messages);
    assert!(errs[0].contains("dom7") && errs[0].contains("no page for domain 7"));
}

#[test]
fn output_reaches_log_and_client_with_backlog() {
    let mut t = Setup::new("output", false);
    let g = t.add(3, "web");
    g.write(b"before attach\n");
    t.d.rescan();
    assert_eq!(t.log("web.log"), "before attach\n");
    g.write(b"boot line\n");
    t.steps(2);
    assert_eq!(t.log("web.log"), "before attach\nboot line\n");
    let mut c = t.raw(b"ATTACH 3\n");
    let mut got = Vec::new();
    assert!(t.read_until(&mut c, &mut got, b"boot line\n"));
    assert_eq!(got, b"OK\nbefore attach\nboot line\n");
    g.write(b"login: ");
    assert!(t.read_until(&mut c, &mut got, b"login: "));
    // A second client gets the backlog too; both get live output.
    let mut c2 = t.raw(b"ATTACH 3\n");
    let mut got2 = Vec::new();
    assert!(t.read_until(&mut c2, &mut got2, b"login: "));
    assert_eq!(got2, b"OK\nbefore attach\nboot line\nlogin: ");
    g.write(b"root\n");
    assert!(t.read_until(&mut c, &mut got, b"root\n"));
    assert!(t.read_until(&mut c2, &mut got2, b"root\n"));
    assert_eq!(t.log("web.log"), "before attach\nboot line\nlogin: root\n");
    // The guest was told the ring has room again.
    assert!(g.notified.load(Ordering::Relaxed) > 0);
}

#[test]
fn a_nameless_domain_logs_to_dom_n() {
    let mut t = Setup::new("nameless", false);
    let g = t.add(9, "x");
    t.store.rm("/local/domain/9/name");
    g.write(b"hi\n");
    t.d.rescan();
    assert_eq!(t.log("dom9.log"), "hi\n");
}

#[test]
fn backlog_keeps_the_last_16k() {
    let g = Guest::new();
    let dir = tmpdir("backlog");
    let mut d = Domain::new(1, None, g.page.clone(), Box::new(g.ev()), &dir, false);
    let mut all = Vec::new();
    for i in 0..20u8 {
        let chunk: Vec<u8> = (0..OUT_SIZE).map(|k| i.wrapping_add(k as u8)).collect();
        g.write(&chunk);
        assert_eq!(d.pump_output(), Ok(OUT_SIZE as usize));
        all.extend(chunk);
    }
    assert_eq!(d.backlog().len(), BACKLOG);
    assert_eq!(d.backlog(), all[all.len() - BACKLOG..]);
    assert_eq!(std::fs::read(dir.join("dom1.log")).unwrap(), all);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn client_input_reaches_the_ring() {
    let mut t = Setup::new("input", false);
    let g = t.add(3, "web");
    t.d.rescan();
    // Input in the same packet as the request counts too.
    let mut c = t.raw(b"ATTACH 3\nfirst ");
    let mut got = Vec::new();
    assert!(t.read_until(&mut c, &mut got, b"OK\n"));
    c.write_all(b"ls -l\n").unwrap();
    let mut seen = Vec::new();
    t.until("input in the ring", |_| {
        seen.extend(g.page.guest_read());
        seen == b"first ls -l\n"
    });
    let before = g.notified.load(Ordering::Relaxed);
    assert!(before > 0);
    // More than the ring holds: delivered as the guest consumes.
    let big: Vec<u8> = (0..3000).map(|i| b'a' + (i % 26) as u8).collect();
    c.write_all(&big).unwrap();
    let mut seen = Vec::new();
    t.until("3000 bytes through a 1024-byte ring", |_| {
        seen.extend(g.page.guest_read());
        seen.len() >= big.len()
    });
    assert_eq!(seen, big);
}

#[test]
fn a_corrupt_ring_drops_that_domain_only() {
    let mut t = Setup::new("corrupt", false);
    let good = t.add(3, "good");
    let bad = t.add(4, "bad");
    t.d.rescan();
    assert_eq!(t.d.attached(), [3, 4]);
    let mut c = t.raw(b"ATTACH 4\n");
    let mut got = Vec::new();
    assert!(t.read_until(&mut c, &mut got, b"OK\n"));
    // out_prod - out_cons > size.
    bad.page
        .out_prod()
        .store(OUT_SIZE + 7, std::sync::atomic::Ordering::Release);
    let _ = (&*bad.kick).write(&[1]);
    t.until("bad domain dropped", |t| t.d.attached() == [3]);
    let m =
        t.d.messages
            .iter()
            .find(|m| m.starts_with("detached bad (domain 4)"))
            .expect("a detach line");
    assert!(m.contains("console ring broken: output ring indexes out of range"));
    // Its client is disconnected.
    assert!(!t.read_until(&mut c, &mut got, b"never"));
    // Not attached again on the next scan.
    t.d.rescan();
    assert_eq!(t.d.attached(), [3]);
    // The other one goes on.
    good.write(b"still here\n");
    t.steps(2);
    assert_eq!(t.log("good.log"), "still here\n");
    // Corrupt input indexes are caught as well.
    let mut c3 = t.raw(b"ATTACH 3\n");
    assert!(t.read_until(&mut c3, &mut got, b"still here\n"));
    good.page.in_cons().store(500, Ordering::Release);
    c3.write_all(b"x").unwrap();
    t.until("good domain dropped on bad input ring", |t| {
        t.d.attached().is_empty()
    });
    assert!(t
        .d
        .messages
        .iter()
        .any(|m| m.contains("input ring indexes out of range")));
}

#[test]
fn a_vanished_domain_is_detached() {
    let mut t = Setup::new("vanish", false);
    let g = t.add(3, "web");
    t.add(6, "other");
    t.d.rescan();
    let mut c = t.raw(b"ATTACH 3\n");
    let mut got = Vec::new();
    assert!(t.read_until(&mut c, &mut got, b"OK\n"));
    g.write(b"last words\n");
    // keelctl destroy removes the domain's directory; the watch fires.
    t.store.rm("/local/domain/3");
    t.fire();
    t.until("detached", |t| t.d.attached() == [6]);
    assert!(t
        .d
        .messages
        .iter()
        .any(|m| m == "detached web (domain 3): domain gone"));
    // The client gets what was left, then EOF.
    assert!(!t.read_until(&mut c, &mut got, b"never"));
    assert_eq!(got, b"OK\nlast words\n");
    assert_eq!(t.log("web.log"), "last words\n");
    // Unknown from then on.
    let mut c = t.raw(b"ATTACH 3\n");
    let mut got = Vec::new();
    assert!(t.read_until(&mut c, &mut got, b"\n"));
    assert_eq!(got, b"ERR no console for domain 3\n");
}

#[test]
fn bad_requests_get_err() {
    let mut t = Setup::new("badreq", false);
    t.add(3, "web");
    t.d.rescan();
    for (req, want) in [
        (
            &b"HELLO\n"[..],
            "ERR bad request \"HELLO\": expected ATTACH <domid>\n",
        ),
        (b"ATTACH 99\n", "ERR no console for domain 99\n"),
        (
            b"ATTACH web\n",
            "ERR bad domain id \"web\": expected ATTACH <domid>\n",
        ),
        (
            b"ATTACH 3 4\n",
            "ERR bad request \"ATTACH 3 4\": expected ATTACH <domid>\n",
        ),
        (&[b'A'; 300][..], "ERR request line too long\n"),
    ] {
        let mut c = t.raw(req);
        let mut got = Vec::new();
        assert!(t.read_until(&mut c, &mut got, b"\n"), "{want}");
        assert_eq!(String::from_utf8_lossy(&got), want);
        assert!(
            !t.read_until(&mut c, &mut got, b"never"),
            "closed after ERR"
        );
    }
    assert_eq!(parse_request("ATTACH 12"), Ok(12));
    assert_eq!(parse_request("  ATTACH   12 "), Ok(12));
}

/// The client library against the daemon: the daemon steps in this
/// thread, the client session runs in another.
#[test]
fn client_session_escape_timeout_and_close() {
    let mut t = Setup::new("client", false);
    let g = t.add(3, "web");
    g.write(b"Debian GNU/Linux 12 web hvc0\n");
    t.d.rescan();

    // Interactive-style: input, then the escape byte.
    let sock = t.sock.clone();
    let (mut user, input) = UnixStream::pair().unwrap();
    let h = std::thread::spawn(move || {
        let mut input = input;
        let s = client::connect(&sock, 3)?;
        let mut out = Vec::new();
        let r = client::session(s, &mut input, &mut out, client::ESCAPE, None)?;
        Ok::<_, AttachError>((r, out))
    });
    user.write_all(b"uname\n").unwrap();
    let mut seen = Vec::new();
    t.until("typed input", |_| {
        seen.extend(g.page.guest_read());
        seen == b"uname\n"
    });
    user.write_all(b"ab\x1dcd").unwrap();
    while !h.is_finished() {
        t.steps(1);
    }
    let (r, out) = h.join().unwrap().unwrap();
    assert_eq!(r, Ended::Escape);
    assert_eq!(out, b"Debian GNU/Linux 12 web hvc0\n");
    t.steps(3);
    assert_eq!(g.page.guest_read(), b"ab", "nothing after the escape");

    // Scripted: stdin at EOF, output until the deadline.
    let sock = t.sock.clone();
    let h = std::thread::spawn(move || {
        let (user, mut input) = UnixStream::pair().unwrap();
        drop(user);
        let s = client::connect(&sock, 3)?;
        let mut out = Vec::new();
        let r = client::session(
            s,
            &mut input,
            &mut out,
            client::ESCAPE,
            Some(Duration::from_millis(400)),
        )?;
        Ok::<_, AttachError>((r, out))
    });
    t.steps(5);
    g.write(b"live\n");
    while !h.is_finished() {
        t.steps(1);
    }
    let (r, out) = h.join().unwrap().unwrap();
    assert_eq!(r, Ended::Timeout);
    assert_eq!(out, b"Debian GNU/Linux 12 web hvc0\nlive\n");

    // The domain goes: the session ends.
    let sock = t.sock.clone();
    let h = std::thread::spawn(move || {
        let (_user, mut input) = UnixStream::pair().unwrap();
        let s = client::connect(&sock, 3)?;
        let mut out = Vec::new();
        client::session(s, &mut input, &mut out, client::ESCAPE, None)
    });
    t.steps(5);
    t.store.rm("/local/domain/3");
    t.fire();
    while !h.is_finished() {
        t.steps(1);
    }
    assert_eq!(h.join().unwrap().unwrap(), Ended::Closed);

    // Errors.
    let sock = t.sock.clone();
    let h = std::thread::spawn(move || client::connect(&sock, 3).map(drop));
    while !h.is_finished() {
        t.steps(1);
    }
    match h.join().unwrap() {
        Err(AttachError::Refused(m)) => assert_eq!(m, "no console for domain 3"),
        o => panic!("{o:?}"),
    }
    let missing = t.dir.join("nope.sock");
    let e = client::connect(&missing, 3).unwrap_err();
    assert!(matches!(e, AttachError::Connect(..)));
    assert!(e.to_string().contains("is keel-consoled running?"), "{e}");
}

fn poll_read(f: &mut std::fs::File, got: &mut Vec<u8>, t: &mut Setup, end: &[u8]) {
    let t0 = Instant::now();
    while !got.ends_with(end) {
        assert!(t0.elapsed() < Duration::from_secs(5), "pty: {got:?}");
        t.steps(1);
        let mut fds = [crate::sys::pollfd(f.as_raw_fd(), libc::POLLIN)];
        if crate::sys::poll(&mut fds, 10).unwrap() > 0 {
            let mut b = [0u8; 1024];
            let n = f.read(&mut b).unwrap();
            got.extend_from_slice(&b[..n]);
        }
    }
}

#[test]
fn the_pty_carries_the_console_and_its_path_is_in_xenstore() {
    let mut t = Setup::new("pty", true);
    let g = t.add(3, "web");
    t.d.rescan();
    let Some(tty) = t.d.domain(3).and_then(|d| d.tty_path()).map(String::from) else {
        // No /dev/ptmx here: the console works without (logged).
        assert!(t.d.messages.iter().any(|m| m.contains("openpty")));
        return;
    };
    assert_eq!(
        t.store.get("/local/domain/3/console/tty"),
        Some(tty.clone())
    );
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&tty)
        .unwrap();
    g.write(b"hvc0 says hi\r\n");
    let mut got = Vec::new();
    poll_read(&mut f, &mut got, &mut t, b"hi\r\n");
    assert_eq!(got, b"hvc0 says hi\r\n", "raw mode: no translation");
    f.write_all(b"typed\r").unwrap();
    let mut seen = Vec::new();
    t.until("pty input in the ring", |_| {
        seen.extend(g.page.guest_read());
        seen == b"typed\r"
    });
}

#[test]
fn an_unread_pty_never_blocks_the_daemon() {
    let mut t = Setup::new("ptyfull", true);
    let g = t.add(3, "web");
    t.d.rescan();
    let chunk = vec![b'z'; OUT_SIZE as usize];
    // Far more than a pty buffers, with nobody on the slave.
    for _ in 0..200 {
        g.write(&chunk);
        t.steps(1);
    }
    assert_eq!(
        std::fs::metadata(t.dir.join("logs/web.log")).unwrap().len(),
        200 * OUT_SIZE as u64
    );
}

#[test]
fn watch_paths_and_log_names() {
    assert!(relevant("@introduceDomain"));
    assert!(relevant("@releaseDomain"));
    assert!(relevant("/local/domain"));
    assert!(relevant("/local/domain/5"));
    assert!(relevant("/local/domain/5/console/ring-ref"));
    assert!(relevant("/local/domain/5/name"));
    assert!(!relevant("/local/domain/5/device/vbd/51712/state"));
    assert!(!relevant("/vm/abc"));
    assert_eq!(log_file_name(4, Some("web")), "web.log");
    assert_eq!(log_file_name(4, Some("../etc/x y")), "_etc_x_y.log");
    assert_eq!(log_file_name(4, None), "dom4.log");
    assert_eq!(log_file_name(4, Some("")), "dom4.log");
}

#[test]
fn a_second_daemon_on_the_same_socket_is_refused() {
    let t = Setup::new("twice", false);
    let e = Daemon::new(
        Config {
            socket: t.sock.clone(),
            log_dir: t.dir.join("logs"),
            pty: false,
            verbose: false,
        },
        Box::new(FakeStore::default()),
        Box::new(FakeXen::default()),
        None,
    )
    .err()
    .expect("refused");
    assert!(e.to_string().contains("another daemon"), "{e}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&t.sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "root's only");
}

/// The real xenstore side: keel-xenstored's server in a thread,
/// [`XsStore`] and [`spawn_watcher`] against it; pages still fake.
#[test]
fn real_xenstored_watches_attach_and_detach() {
    use crate::daemon::{spawn_watcher, XsStore};
    use keel_xenstored::client::Client;
    use keel_xenstored::engine::Engine;
    use keel_xenstored::quota::Quota;
    use keel_xenstored::server::Server;
    use keel_xenstored::store::Store as XsTree;

    let dir = tmpdir("xenstored");
    let xs = dir.join("xenstored.sock");
    let mut server = Server::new(Engine::new(XsTree::new(), Quota::default())).unwrap();
    server.listen(&xs).unwrap();
    let stop = server.shutdown_handle();
    let th = std::thread::spawn(move || server.run());

    let mut tool = Client::connect(&xs).unwrap();
    let w = |c: &mut Client, p: &str, v: &str| c.write(p, v.as_bytes()).unwrap();
    w(&mut tool, "/local/domain/0/name", "Domain-0");
    w(&mut tool, "/local/domain/3/name", "web");

    let xen = FakeXen::default();
    let g = xen.guest(3);
    let sock = dir.join("console.sock");
    let mut d = Daemon::new(
        Config {
            socket: sock.clone(),
            log_dir: dir.join("logs"),
            pty: true,
            verbose: false,
        },
        Box::new(XsStore::connect(&xs).unwrap()),
        Box::new(xen.clone()),
        Some(spawn_watcher(&xs).unwrap()),
    )
    .unwrap();
    d.rescan();
    assert!(d.attached().is_empty());
    let until = |d: &mut Daemon, what: &str, f: &dyn Fn(&Daemon) -> bool| {
        let t0 = Instant::now();
        while !f(d) {
            assert!(t0.elapsed() < Duration::from_secs(5), "timed out: {what}");
            d.step(Duration::from_millis(20)).unwrap();
        }
    };
    // As keelctl create: the records, then the domain appears.
    w(&mut tool, "/local/domain/3/console/port", "2");
    w(&mut tool, "/local/domain/3/console/ring-ref", "4099");
    w(&mut tool, "/local/domain/3/console/type", "xenconsoled");
    until(&mut d, "attach on the watch", &|d| d.attached() == [3]);
    if let Some(tty) = d.domain(3).and_then(|x| x.tty_path()) {
        let v = tool.read("/local/domain/3/console/tty").unwrap();
        assert_eq!(String::from_utf8_lossy(&v), tty);
    }
    g.write(b"hello from xenstore land\n");
    until(&mut d, "logged", &|_| {
        std::fs::read(dir.join("logs/web.log")).unwrap_or_default() == b"hello from xenstore land\n"
    });
    // As keelctl destroy.
    tool.rm("/local/domain/3").unwrap();
    until(&mut d, "detach on the watch", &|d| d.attached().is_empty());
    drop(d);
    stop.shutdown();
    th.join().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
