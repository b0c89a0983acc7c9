//! xenstored-bench: operations per second of keel-xenstored.
//!
//! Starts keel's server in-process on a private Unix socket and drives it
//! through the real client library, Debian's libxenstore.so.4 (loaded with
//! dlopen, so there is no build-time dependency on it). If the library is
//! missing (or with --own-client) it falls back to keel's own minimal
//! socket client and says so in the output.
//!
//! usage: xenstored-bench [--clients N] [--secs S] [--own-client]
//! Prints a markdown table on stdout.

use std::ffi::{c_char, c_uint, c_ulong, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_xenstored::client::Client;
use keel_xenstored::engine::Engine;
use keel_xenstored::server::Server;

type XsOpen = unsafe extern "C" fn(c_ulong) -> *mut c_void;
type XsClose = unsafe extern "C" fn(*mut c_void);
type XsRead = unsafe extern "C" fn(*mut c_void, u32, *const c_char, *mut c_uint) -> *mut c_void;
type XsWrite = unsafe extern "C" fn(*mut c_void, u32, *const c_char, *const c_void, c_uint) -> bool;
type XsDirectory =
    unsafe extern "C" fn(*mut c_void, u32, *const c_char, *mut c_uint) -> *mut *mut c_char;
type XsWatch = unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char) -> bool;
type XsReadWatch = unsafe extern "C" fn(*mut c_void, *mut c_uint) -> *mut *mut c_char;
type XsTxStart = unsafe extern "C" fn(*mut c_void) -> u32;
type XsTxEnd = unsafe extern "C" fn(*mut c_void, u32, bool) -> bool;

/// Entry points of libxenstore.so.4.
#[derive(Clone, Copy)]
struct Lib {
    open: XsOpen,
    close: XsClose,
    read: XsRead,
    write: XsWrite,
    directory: XsDirectory,
    watch: XsWatch,
    read_watch: XsReadWatch,
    tx_start: XsTxStart,
    tx_end: XsTxEnd,
}

impl Lib {
    fn load() -> Result<Lib, String> {
        // SAFETY: dlopen/dlsym with nul-terminated names; the symbols are
        // cast to the prototypes from Xen's xenstore.h (4.x ABI, VERS_4.0).
        unsafe {
            let h = libc::dlopen(c"libxenstore.so.4".as_ptr(), libc::RTLD_NOW);
            if h.is_null() {
                let e = libc::dlerror();
                let msg = if e.is_null() {
                    "dlopen failed".into()
                } else {
                    CStr::from_ptr(e).to_string_lossy().into_owned()
                };
                return Err(msg);
            }
            let sym = |name: &CStr| -> Result<*mut c_void, String> {
                let p = libc::dlsym(h, name.as_ptr());
                if p.is_null() {
                    Err(format!("missing symbol {name:?}"))
                } else {
                    Ok(p)
                }
            };
            Ok(Lib {
                open: std::mem::transmute::<*mut c_void, XsOpen>(sym(c"xs_open")?),
                close: std::mem::transmute::<*mut c_void, XsClose>(sym(c"xs_close")?),
                read: std::mem::transmute::<*mut c_void, XsRead>(sym(c"xs_read")?),
                write: std::mem::transmute::<*mut c_void, XsWrite>(sym(c"xs_write")?),
                directory: std::mem::transmute::<*mut c_void, XsDirectory>(sym(c"xs_directory")?),
                watch: std::mem::transmute::<*mut c_void, XsWatch>(sym(c"xs_watch")?),
                read_watch: std::mem::transmute::<*mut c_void, XsReadWatch>(sym(c"xs_read_watch")?),
                tx_start: std::mem::transmute::<*mut c_void, XsTxStart>(sym(
                    c"xs_transaction_start",
                )?),
                tx_end: std::mem::transmute::<*mut c_void, XsTxEnd>(sym(c"xs_transaction_end")?),
            })
        }
    }
}

/// One client connection, either backend.
trait BenchClient {
    fn read(&mut self, path: &CStr);
    fn write(&mut self, path: &CStr, v: &[u8]);
    fn directory(&mut self, path: &CStr);
    fn watch(&mut self, path: &CStr, token: &CStr);
    /// Blocks for the next watch event; returns its path.
    fn next_event(&mut self) -> String;
    /// start, read, write, commit; false on EAGAIN.
    fn transaction(&mut self, path: &CStr, v: &[u8]) -> bool;
}

struct LibClient {
    lib: Lib,
    h: *mut c_void,
}

impl LibClient {
    fn open(lib: Lib) -> LibClient {
        // SAFETY: xs_open(0) returns a handle or NULL.
        let h = unsafe { (lib.open)(0) };
        assert!(
            !h.is_null(),
            "xs_open failed: {}",
            std::io::Error::last_os_error()
        );
        LibClient { lib, h }
    }
}

impl Drop for LibClient {
    fn drop(&mut self) {
        // SAFETY: handle from xs_open, closed once.
        unsafe { (self.lib.close)(self.h) }
    }
}

impl BenchClient for LibClient {
    fn read(&mut self, path: &CStr) {
        let mut len = 0;
        // SAFETY: valid handle and nul-terminated path; result is malloc'd.
        let p = unsafe { (self.lib.read)(self.h, 0, path.as_ptr(), &mut len) };
        assert!(
            !p.is_null(),
            "xs_read {path:?}: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `p` is the malloc'd result of xs_read, freed once.
        unsafe { libc::free(p) };
    }

    fn write(&mut self, path: &CStr, v: &[u8]) {
        // SAFETY: valid handle, path, and buffer/length.
        let ok = unsafe {
            (self.lib.write)(
                self.h,
                0,
                path.as_ptr(),
                v.as_ptr().cast(),
                v.len() as c_uint,
            )
        };
        assert!(ok, "xs_write {path:?}: {}", std::io::Error::last_os_error());
    }

    fn directory(&mut self, path: &CStr) {
        let mut n = 0;
        // SAFETY: as above; the vector is one malloc'd block.
        let p = unsafe { (self.lib.directory)(self.h, 0, path.as_ptr(), &mut n) };
        assert!(
            !p.is_null(),
            "xs_directory: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `p` is the malloc'd vector of xs_directory, freed once.
        unsafe { libc::free(p.cast()) };
    }

    fn watch(&mut self, path: &CStr, token: &CStr) {
        // SAFETY: valid handle and strings.
        let ok = unsafe { (self.lib.watch)(self.h, path.as_ptr(), token.as_ptr()) };
        assert!(ok, "xs_watch");
    }

    fn next_event(&mut self) -> String {
        let mut n = 0;
        // SAFETY: blocks until an event; returns a malloc'd vector.
        let v = unsafe { (self.lib.read_watch)(self.h, &mut n) };
        assert!(
            !v.is_null(),
            "xs_read_watch: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: v[0] is the nul-terminated event path.
        let s = unsafe { CStr::from_ptr(*v).to_string_lossy().into_owned() };
        // SAFETY: `v` is the malloc'd vector of xs_read_watch, freed once.
        unsafe { libc::free(v.cast()) };
        s
    }

    fn transaction(&mut self, path: &CStr, v: &[u8]) -> bool {
        // SAFETY: as for the individual calls above.
        unsafe {
            let t = (self.lib.tx_start)(self.h);
            assert!(t != 0, "xs_transaction_start");
            let mut len = 0;
            let p = (self.lib.read)(self.h, t, path.as_ptr(), &mut len);
            libc::free(p);
            assert!((self.lib.write)(
                self.h,
                t,
                path.as_ptr(),
                v.as_ptr().cast(),
                v.len() as c_uint
            ));
            (self.lib.tx_end)(self.h, t, false)
        }
    }
}

struct OwnClient(Client);

fn s(p: &CStr) -> &str {
    p.to_str().expect("ascii path")
}

impl BenchClient for OwnClient {
    fn read(&mut self, path: &CStr) {
        self.0.read(s(path)).expect("read");
    }
    fn write(&mut self, path: &CStr, v: &[u8]) {
        self.0.write(s(path), v).expect("write");
    }
    fn directory(&mut self, path: &CStr) {
        self.0.directory(s(path)).expect("directory");
    }
    fn watch(&mut self, path: &CStr, token: &CStr) {
        self.0.watch(s(path), s(token)).expect("watch");
    }
    fn next_event(&mut self) -> String {
        self.0.wait_event().expect("event").0
    }
    fn transaction(&mut self, path: &CStr, v: &[u8]) -> bool {
        let t = self.0.transaction_start().expect("tx start");
        let _ = self.0.read_tx(t, s(path));
        self.0.write_tx(t, s(path), v).expect("tx write");
        self.0.transaction_end(t, true).is_ok()
    }
}

#[derive(Clone)]
enum Backend {
    Lib(Lib),
    Own(PathBuf),
}

impl Backend {
    fn connect(&self) -> Box<dyn BenchClient> {
        match self {
            Backend::Lib(l) => Box::new(LibClient::open(*l)),
            Backend::Own(p) => Box::new(OwnClient(Client::connect(p).expect("connect"))),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Read,
    Write,
    Directory,
    WatchRoundTrip,
    Transaction,
}

const OPS: [(Op, &str); 5] = [
    (Op::Read, "read (1 KiB value)"),
    (Op::Write, "write (64 B value)"),
    (Op::Directory, "directory (32 children)"),
    (Op::WatchRoundTrip, "watch round trip (write + event)"),
    (Op::Transaction, "transaction (start, read, write, commit)"),
];

/// One client's loop; returns completed operations.
fn client_loop(backend: &Backend, op: Op, id: usize, dur: Duration) -> u64 {
    let mut c = backend.connect();
    let base = format!("/bench/c{id}");
    let key = CString::new(format!("{base}/key")).unwrap();
    let dir = CString::new(format!("{base}/dir")).unwrap();
    let wpath = CString::new(format!("{base}/watched")).unwrap();
    let wleaf = CString::new(format!("{base}/watched/x")).unwrap();
    c.write(&key, &[b'v'; 1024]);
    for i in 0..32 {
        c.write(&CString::new(format!("{base}/dir/e{i}")).unwrap(), b"");
    }
    if op == Op::WatchRoundTrip {
        c.watch(&wpath, c"bench");
        c.next_event(); // the initial event
    }
    let small = [b'w'; 64];
    let start = Instant::now();
    let mut n = 0u64;
    let mut aborted = 0u64;
    while start.elapsed() < dur {
        for _ in 0..16 {
            match op {
                Op::Read => c.read(&key),
                Op::Write => c.write(&key, &small),
                Op::Directory => c.directory(&dir),
                Op::WatchRoundTrip => {
                    c.write(&wleaf, &small);
                    while c.next_event() != wleaf.to_str().unwrap() {}
                }
                Op::Transaction => {
                    if !c.transaction(&key, &small) {
                        aborted += 1;
                        continue;
                    }
                }
            }
            n += 1;
        }
    }
    if aborted > 0 {
        eprintln!("client {id}: {aborted} transactions got EAGAIN");
    }
    n
}

fn measure(backend: &Backend, op: Op, clients: usize, dur: Duration) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let b = backend.clone();
            std::thread::spawn(move || client_loop(&b, op, i, dur))
        })
        .collect();
    let total: u64 = handles
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .sum();
    // Setup time is excluded per client; use the nominal duration.
    let _ = start;
    total as f64 / dur.as_secs_f64()
}

fn main() {
    let mut clients = 4usize;
    let mut secs = 1.0f64;
    let mut own = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--clients" => {
                clients = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--clients N")
            }
            "--secs" => secs = args.next().and_then(|v| v.parse().ok()).expect("--secs S"),
            "--own-client" => own = true,
            _ => {
                eprintln!("usage: xenstored-bench [--clients N] [--secs S] [--own-client]");
                std::process::exit(2);
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("keel-xs-bench-{}", std::process::id()));
    let sock = dir.join("socket");
    let mut server = Server::new(Engine::default()).expect("server");
    server.listen(&sock).expect("listen");
    let stop = server.shutdown_handle();
    let srv = std::thread::spawn(move || server.run().expect("server run"));

    // libxenstore reads XENSTORED_PATH in xs_open; set before any threads use it.
    std::env::set_var("XENSTORED_PATH", &sock);
    std::env::remove_var("XENSTORE_DOMAIN_INTERFACE");
    let (backend, how) = if own {
        (
            Backend::Own(sock.clone()),
            "keel's own socket client (--own-client)".to_string(),
        )
    } else {
        match Lib::load() {
            Ok(l) => (
                Backend::Lib(l),
                "Debian libxenstore.so.4 (xs_open/xs_read/...) over the Unix socket".to_string(),
            ),
            Err(e) => (
                Backend::Own(sock.clone()),
                format!("keel's own socket client (libxenstore.so.4 unavailable: {e})"),
            ),
        }
    };
    let dur = Duration::from_secs_f64(secs);
    let backend = Arc::new(backend);
    println!("### keel-xenstored throughput\n");
    println!(
        "Client: {how}. Server: keel-xenstored (single-threaded poll loop), in-process, {}.",
        build_profile()
    );
    println!("Each cell: completed operations per second over {secs} s; N clients run concurrently, one connection each.\n");
    println!("| operation | 1 client (ops/s) | {clients} clients (ops/s, total) |");
    println!("|---|---:|---:|");
    for (op, name) in OPS {
        let one = measure(&backend, op, 1, dur);
        let many = measure(&backend, op, clients, dur);
        println!("| {name} | {one:.0} | {many:.0} |");
    }
    stop.shutdown();
    srv.join().expect("server thread");
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}

fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug build (use --release for meaningful numbers)"
    } else {
        "release build"
    }
}
