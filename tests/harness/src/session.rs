//! A scripted serial console: an emulator whose COM1 is a Unix socket that
//! the harness reads (into the serial log) and types into, as a person at a
//! serial terminal would (log in, run commands, read their output).
//!
//! QEMU: `-chardev socket,id=com1,path=SOCK,server=on,wait=on -serial
//! chardev:com1`; QEMU waits for [`Session::start`] to connect before it
//! runs the machine, so nothing is lost.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::emulator;

/// How long the emulator may take to open its console socket.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an emulator runs on after a fatal console line ([`Session::linger`]).
const FATAL_LINGER: Duration = Duration::from_secs(3);

/// QEMU's arguments for a COM1 on the Unix socket `sock` (server; waits
/// for the harness to connect).
pub fn qemu_serial_args(sock: &Path) -> Vec<String> {
    vec![
        "-chardev".into(),
        format!("socket,id=com1,path={},server=on,wait=on", sock.display()),
        "-serial".into(),
        "chardev:com1".into(),
    ]
}

/// Why [`Session::expect`] gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The deadline passed.
    Timeout,
    /// The emulator exited (with this status, if any).
    Exited(Option<i32>),
    /// One of the fatal patterns appeared: (pattern, the line it is on).
    Fatal(String, String),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Timeout => write!(f, "timed out"),
            Stop::Exited(Some(c)) => write!(f, "the emulator exited with status {c}"),
            Stop::Exited(None) => write!(f, "the emulator was killed by a signal"),
            Stop::Fatal(p, l) => write!(f, "'{p}' on the console: {l}"),
        }
    }
}

/// A running emulator with a scripted console.
pub struct Session {
    child: Child,
    to: UnixStream,
    /// Every console byte so far (also appended to the serial log).
    buf: Arc<Mutex<Vec<u8>>>,
    /// Where the next `expect` starts looking.
    pos: usize,
    /// Patterns that end any `expect` at once (a panic, an emergency shell).
    pub fatal: Vec<String>,
    pub start: Instant,
    /// A bound on the whole session: no `expect` waits past it.
    pub deadline: Option<Instant>,
    exit: Option<Option<i32>>,
}

impl Session {
    /// Spawns `cmd` (its stdout/stderr to `emulator_log`), connects to its
    /// console socket `sock` and copies what comes out of it to `serial_log`.
    pub fn start(
        mut cmd: Command,
        sock: &Path,
        serial_log: &Path,
        emulator_log: &Path,
    ) -> Result<Session, String> {
        let _ = std::fs::remove_file(sock);
        let log = std::fs::File::create(emulator_log)
            .map_err(|e| format!("{}: {e}", emulator_log.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
        emulator::die_with_parent(&mut cmd);
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
        let deadline = start + CONNECT_TIMEOUT;
        let stream = loop {
            if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!(
                    "the emulator exited ({st}) before its console socket {} accepted a \
                     connection; see {}",
                    sock.display(),
                    emulator_log.display()
                ));
            }
            match UnixStream::connect(sock) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("connecting to {}: {e}", sock.display()));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let mut from = stream.try_clone().map_err(|e| e.to_string())?;
        let mut file = std::fs::File::create(serial_log)
            .map_err(|e| format!("{}: {e}", serial_log.display()))?;
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        std::thread::spawn(move || {
            let mut b = [0u8; 4096];
            loop {
                match from.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let _ = file.write_all(&b[..n]);
                        sink.lock().unwrap().extend_from_slice(&b[..n]);
                    }
                }
            }
        });
        Ok(Session {
            child,
            to: stream,
            buf,
            pos: 0,
            fatal: Vec::new(),
            start,
            deadline: None,
            exit: None,
        })
    }

    /// The whole console so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }

    /// Where the console is now: `since(mark)` gives what came after.
    pub fn mark(&self) -> usize {
        self.buf.lock().unwrap().len()
    }

    /// What the console printed from `mark` on.
    pub fn since(&self, mark: usize) -> String {
        let b = self.buf.lock().unwrap();
        String::from_utf8_lossy(&b[mark.min(b.len())..]).into_owned()
    }

    fn exited(&mut self) -> Option<Option<i32>> {
        if self.exit.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.exit = Some(st.code());
            }
        }
        self.exit
    }

    /// Waits until `pattern` appears after the previous match; returns the
    /// console text from the previous match to the end of this one.
    pub fn expect(&mut self, pattern: &str, timeout: Duration) -> Result<String, Stop> {
        self.expect_any(&[pattern], timeout).map(|(_, t)| t)
    }

    /// Waits for the first of `patterns`; returns its index and the text up
    /// to the end of the match.
    pub fn expect_any(
        &mut self,
        patterns: &[&str],
        timeout: Duration,
    ) -> Result<(usize, String), Stop> {
        let mut deadline = Instant::now() + timeout;
        if let Some(d) = self.deadline {
            deadline = deadline.min(d);
        }
        let mut fatal_from = self.pos;
        loop {
            let exited = self.exited();
            if exited.is_some() {
                // Let the reader drain what the emulator wrote last.
                std::thread::sleep(Duration::from_millis(200));
            }
            {
                let b = self.buf.lock().unwrap();
                let hay = &b[self.pos..];
                let hit = patterns
                    .iter()
                    .enumerate()
                    .filter_map(|(i, p)| find(hay, p.as_bytes()).map(|at| (at, i, p.len())))
                    .min();
                // Fatal patterns count only before the match.
                let scan_end = hit.map_or(hay.len(), |h| h.0);
                let scan_from = (fatal_from - self.pos).min(scan_end);
                for f in &self.fatal {
                    if let Some(at) = find(&hay[scan_from..scan_end], f.as_bytes()) {
                        let at = scan_from + at;
                        let ls = hay[..at]
                            .iter()
                            .rposition(|&c| c == b'\n')
                            .map_or(0, |i| i + 1);
                        let le = hay[at..]
                            .iter()
                            .position(|&c| c == b'\n')
                            .map_or(hay.len(), |i| at + i);
                        let line = String::from_utf8_lossy(&hay[ls..le]).trim_end().to_string();
                        let pattern = f.clone();
                        drop(b);
                        self.linger(FATAL_LINGER);
                        return Err(Stop::Fatal(pattern, line));
                    }
                }
                // A fatal pattern may straddle two reads: rescan a little.
                fatal_from = self.pos + scan_end.saturating_sub(200);
                if let Some((at, i, len)) = hit {
                    let out = String::from_utf8_lossy(&hay[..at + len]).into_owned();
                    self.pos += at + len;
                    return Ok((i, out));
                }
            }
            if let Some(code) = exited {
                return Err(Stop::Exited(code));
            }
            if Instant::now() >= deadline {
                return Err(Stop::Timeout);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Lets the emulator run on for up to `d` (or until it exits) so that
    /// what follows a fatal line (the rest of a kernel's oops, keel's own
    /// report of the crash, its dump of the guest's event channels) reaches
    /// the console log and the failure report.
    fn linger(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && self.exited().is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    /// Types `text` on the console. Slowly enough for a guest that polls its
    /// UART (keel polls COM1 for dom0 every 20 ms and keeps 4 KiB).
    pub fn send(&mut self, text: &str) -> Result<(), String> {
        for chunk in text.as_bytes().chunks(64) {
            self.to
                .write_all(chunk)
                .map_err(|e| format!("typing on the console: {e}"))?;
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Waits for the emulator to exit; kills it after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>, Stop> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self.exited() {
                std::thread::sleep(Duration::from_millis(200));
                return Ok(c);
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(Stop::Timeout);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn kill(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where `needle` first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The socket path for a run in `dir` (kept short: Unix socket paths are
/// limited to 107 bytes, and checkouts can be deep).
pub fn socket_path(dir: &Path) -> PathBuf {
    let p = dir.join("com1.sock");
    if p.as_os_str().len() < 100 {
        return p;
    }
    std::env::temp_dir().join(format!("keel-com1-{}.sock", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session on one end of a socket pair (the test is the guest on the
    /// other end); `sleep` stands in for the emulator process.
    fn pair() -> (Session, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let mut from = a.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut b = [0u8; 256];
            while let Ok(n) = from.read(&mut b) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&b[..n]);
            }
        });
        (
            Session {
                child,
                to: a,
                buf,
                pos: 0,
                fatal: vec!["Kernel panic".into()],
                start: Instant::now(),
                deadline: None,
                exit: None,
            },
            b,
        )
    }

    #[test]
    fn expect_consumes_in_order_and_types_back() {
        let (mut s, mut guest) = pair();
        guest
            .write_all(b"boot \xff\xfe junk\r\nkeel-debian login: ")
            .unwrap();
        let t = s.expect("login: ", Duration::from_secs(5)).unwrap();
        assert!(t.ends_with("keel-debian login: "), "{t}");
        s.send("root\n").unwrap();
        let mut got = [0u8; 5];
        guest.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"root\n");
        // The same text again is not matched twice.
        assert_eq!(
            s.expect("login: ", Duration::from_millis(200)),
            Err(Stop::Timeout)
        );
        guest.write_all(b"x\r\nKEEL-RC 0\r\n").unwrap();
        let (i, t) = s
            .expect_any(&["KEEL-RC 1", "KEEL-RC 0"], Duration::from_secs(5))
            .unwrap();
        assert_eq!(i, 1);
        assert!(t.ends_with("KEEL-RC 0"), "{t}");
    }

    #[test]
    fn fatal_patterns_end_the_wait_with_their_line() {
        let (mut s, mut guest) = pair();
        guest
            .write_all(b"[ 1.0] ok\r\n[ 2.0] Kernel panic - not syncing: VFS\r\nmore\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        // What the machine prints after the panic (here, a second later)
        // still reaches the console log: the emulator lingers.
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(1));
            guest.write_all(b"keel: d0 crashed\r\n").unwrap();
            guest
        });
        match s.expect("login: ", Duration::from_secs(5)) {
            Err(Stop::Fatal(p, line)) => {
                assert_eq!(p, "Kernel panic");
                assert_eq!(line, "[ 2.0] Kernel panic - not syncing: VFS");
            }
            r => panic!("{r:?}"),
        }
        assert!(s.text().contains("keel: d0 crashed"), "{}", s.text());
        drop(late.join().unwrap());
        // A fatal pattern after the match does not spoil it.
        let (mut s, mut guest) = pair();
        guest
            .write_all(b"login: \r\nKernel panic later\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(s.expect("login: ", Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn an_exited_emulator_ends_the_wait() {
        let (mut s, _guest) = pair();
        s.kill();
        assert_eq!(
            s.expect("login: ", Duration::from_secs(5)),
            Err(Stop::Exited(None))
        );
    }
}
