//! Starting an emulator, following its serial log, bounding it in time and
//! deciding the outcome.

use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::emulator::{self, Launch};
use crate::images::{self, Tools};
use crate::markers::Console;
use crate::scenario::{self, Exit, Progress, Scenario, Status, Verdict};

/// How long an emulator may take to exit by itself once its result is on
/// the console (a FATAL diagnostic is still being printed, S5 in progress).
pub const GRACE: Duration = Duration::from_secs(5);
/// Lines of console shown with a failure.
pub const TAIL_LINES: usize = 40;

#[derive(Debug, Clone)]
pub struct Record {
    pub console: Console,
    pub exit: Exit,
    pub wall: Duration,
}

/// How long Bochs may take to open its COM1 socket.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Ctrl-]: the escape key of an interactive Bochs console, as `-echr 0x1d`
/// makes it QEMU's (Ctrl-A must reach keel, which switches serial input on
/// three of them).
pub const ESCAPE: u8 = 0x1d;
const ESCAPE_HELP: &str =
    "\r\nC-] x    quit Bochs\r\nC-] h    print this help\r\nC-] C-]  send C-] to the guest\r\n";

/// Runs `launch` until it exits, `progress` says the result is in (then at
/// most [`GRACE`] more), or `timeout` passes. With `stream`, console bytes are
/// copied to stdout as they arrive.
///
/// Bochs with [`emulator::Console::Terminal`]: its COM1 is a loopback socket;
/// what comes out of it goes to stdout and the serial log, and stdin goes
/// into it (a terminal is put in raw mode meanwhile, Ctrl-] x quits).
pub fn run(
    launch: &Launch,
    timeout: Option<Duration>,
    silence: Option<Duration>,
    stream: bool,
    progress: &dyn Fn(&Console) -> Progress,
) -> Result<Record, String> {
    let prepared = launch.prepare()?;
    let mut cmd = prepared.command;
    let interactive = launch.console == emulator::Console::Terminal;
    let qemu_on_tty = interactive && launch.emulator == scenario::Emulator::Qemu;
    if !qemu_on_tty {
        let log = File::create(launch.emulator_log())
            .map_err(|e| format!("{}: {e}", launch.emulator_log().display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
    }
    // A socket console copies to stdout itself.
    let stream = stream && prepared.serial_socket.is_none();
    emulator::die_with_parent(&mut cmd);
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| {
        format!(
            "cannot start {:?}: {e} (is it installed?)",
            cmd.get_program()
        )
    })?;
    let serial = launch.serial_log();
    let console = match prepared.serial_socket {
        None => None,
        Some(addr) => match SocketConsole::start(addr, &serial, &mut child, launch) {
            Ok(c) => Some(c),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        },
    };
    let mut shown = 0usize;
    let mut done_at: Option<Instant> = None;
    let mut parsed_len = usize::MAX;
    let exit = loop {
        let status = child.try_wait().map_err(|e| e.to_string())?;
        let bytes = std::fs::read(&serial).unwrap_or_default();
        if stream && bytes.len() > shown {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&bytes[shown..]);
            let _ = out.flush();
            shown = bytes.len();
        }
        if let Some(st) = status {
            break Exit::Status(st.code());
        }
        if console.as_ref().is_some_and(|c| c.quit_requested()) {
            let _ = child.kill();
            let _ = child.wait();
            eprint!("\r\nBochs: terminated (Ctrl-] x)\r\n");
            // As QEMU exits after Ctrl-] x.
            break Exit::Status(Some(0));
        }
        // Re-parse only when the log grew.
        if done_at.is_none() && bytes.len() != parsed_len {
            parsed_len = bytes.len();
            if progress(&Console::from_bytes(&bytes)) == Progress::Done {
                done_at = Some(Instant::now());
            }
        }
        if done_at.is_some_and(|t| t.elapsed() >= GRACE) {
            let _ = child.kill();
            let _ = child.wait();
            break Exit::Stopped;
        }
        if bytes.is_empty() && silence.is_some_and(|t| start.elapsed() >= t) {
            let _ = child.kill();
            let _ = child.wait();
            break Exit::Silent;
        }
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            if launch.emulator == scenario::Emulator::Bochs {
                interrupt_bochs(&mut child);
            }
            let _ = child.kill();
            let _ = child.wait();
            break Exit::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let wall = start.elapsed();
    if let Some(c) = console {
        c.finish();
    }
    let bytes = std::fs::read(&serial).unwrap_or_default();
    if stream && bytes.len() > shown {
        let _ = std::io::stdout().write_all(&bytes[shown..]);
        let _ = std::io::stdout().flush();
    }
    Ok(Record {
        console: Console::from_bytes(&bytes),
        exit,
        wall,
    })
}

/// Stops a running Bochs the way Ctrl-C does (SIGINT), so that its
/// debugger script prints each CPU's state into the emulator's log
/// ([`emulator::bochs_debugger_script`]), and gives it a few seconds to.
fn interrupt_bochs(child: &mut Child) {
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    if !sent {
        return;
    }
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What Ctrl-] and the key after it do on an interactive Bochs console
/// (QEMU's `-echr` rules: an unknown key after the escape is dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// Goes to the guest.
    Send(u8),
    /// Swallowed (the escape itself, or an unknown key after it).
    Nothing,
    Quit,
    Help,
}

/// The Ctrl-] x state machine: one byte of stdin at a time.
#[derive(Debug, Default)]
pub struct EscapeKeys {
    escaped: bool,
}

impl EscapeKeys {
    pub fn feed(&mut self, b: u8) -> Key {
        if !self.escaped {
            if b == ESCAPE {
                self.escaped = true;
                return Key::Nothing;
            }
            return Key::Send(b);
        }
        self.escaped = false;
        match b {
            b'x' | b'X' => Key::Quit,
            b'h' | b'?' => Key::Help,
            ESCAPE => Key::Send(ESCAPE),
            _ => Key::Nothing,
        }
    }

    /// Appends what goes to the guest to `out`; stops at Quit (the rest is
    /// dropped) and returns whether it was seen and whether help was asked.
    pub fn filter(&mut self, input: &[u8], out: &mut Vec<u8>) -> (bool, bool) {
        let mut help = false;
        for &b in input {
            match self.feed(b) {
                Key::Send(b) => out.push(b),
                Key::Nothing => {}
                Key::Help => help = true,
                Key::Quit => return (true, help),
            }
        }
        (false, help)
    }
}

/// The controlling terminal in raw mode (as QEMU's stdio: no echo, no line
/// editing, no signals from Ctrl-C, output processing kept), restored on drop.
struct RawTerminal {
    saved: String,
}

impl RawTerminal {
    /// Only when stdin is a terminal; `stty` acts on its stdin, ours.
    fn enter() -> Option<RawTerminal> {
        if !std::io::stdin().is_terminal() {
            return None;
        }
        let saved = stty(&["-g"]).ok()?;
        let saved = saved.trim().to_string();
        if saved.is_empty() {
            return None;
        }
        let raw = RawTerminal { saved };
        stty(&["raw", "-echo", "-iexten", "opost"]).ok()?;
        Some(raw)
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if stty(&[self.saved.as_str()]).is_err() {
            let _ = stty(&["sane"]);
        }
    }
}

fn stty(args: &[&str]) -> Result<String, String> {
    let out = Command::new("stty")
        .args(args)
        .stdin(Stdio::inherit())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("stty: {e}"))?;
    if !out.status.success() {
        return Err(format!("stty {args:?}: {}", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An interactive Bochs COM1: the socket to stdout and the serial log, stdin
/// to the socket.
struct SocketConsole {
    quit: Arc<AtomicBool>,
    /// Signalled when the socket reached its end and all is in the log.
    drained: mpsc::Receiver<()>,
    /// Dropped last: the terminal stays raw until the output is drained.
    _raw: Option<RawTerminal>,
}

impl SocketConsole {
    fn start(
        addr: SocketAddr,
        serial: &Path,
        child: &mut Child,
        launch: &Launch,
    ) -> Result<SocketConsole, String> {
        debug_assert!(addr.ip().is_loopback());
        // Bochs opens its COM1 server at startup and waits for us there.
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let sock = loop {
            if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!(
                    "{} exited ({st}) before its COM1 socket {addr} accepted a connection; see {}",
                    launch.emulator,
                    launch.emulator_log().display()
                ));
            }
            match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!(
                        "connecting to {}'s COM1 at {addr}: {e}; see {}",
                        launch.emulator,
                        launch.emulator_log().display()
                    ))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        let _ = sock.set_nodelay(true);
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(serial)
            .map_err(|e| format!("{}: {e}", serial.display()))?;
        let mut from = sock.try_clone().map_err(|e| e.to_string())?;
        let mut to = sock;
        let (done, drained) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let _ = log.write_all(&buf[..n]);
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(&buf[..n]);
                        let _ = out.flush();
                    }
                }
            }
            let _ = log.flush();
            let _ = done.send(());
        });
        eprint!(
            "    COM1 on this terminal: keys go to the guest (Ctrl-C and Ctrl-A too); \
             Ctrl-] x quits Bochs, Ctrl-] h helps\n\n"
        );
        let raw = RawTerminal::enter();
        let quit = Arc::new(AtomicBool::new(false));
        let quit2 = quit.clone();
        // Left blocked on stdin when Bochs exits by itself: the process ends
        // soon after.
        std::thread::spawn(move || {
            let mut keys = EscapeKeys::default();
            let mut buf = [0u8; 256];
            let mut send = Vec::with_capacity(buf.len());
            let mut stdin = std::io::stdin();
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                send.clear();
                let (quit, help) = keys.filter(&buf[..n], &mut send);
                if to.write_all(&send).is_err() {
                    return;
                }
                if help {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(ESCAPE_HELP.as_bytes());
                    let _ = out.flush();
                }
                if quit {
                    quit2.store(true, Ordering::SeqCst);
                    return;
                }
            }
        });
        Ok(SocketConsole {
            quit,
            drained,
            _raw: raw,
        })
    }

    fn quit_requested(&self) -> bool {
        self.quit.load(Ordering::SeqCst)
    }

    /// Once the emulator is gone: waits (boundedly) for the last output,
    /// then restores the terminal.
    fn finish(self) {
        let _ = self.drained.recv_timeout(Duration::from_secs(2));
    }
}

/// A finished scenario.
#[derive(Debug, Clone)]
pub struct Report {
    pub scenario: Scenario,
    pub verdict: Verdict,
    /// Emulator wall time (image preparation not included).
    pub wall: Duration,
    /// Image preparation time.
    pub prepare: Duration,
    pub record: Option<Record>,
    pub work_dir: std::path::PathBuf,
}

impl Report {
    /// The failure report: reason, console tail and where the logs are.
    pub fn details(&self) -> String {
        let mut s = format!("  reason: {}\n", self.verdict.reason);
        s += &format!(
            "  scenario: {}\n  cmdline: {}\n",
            self.scenario.description, self.scenario.cmdline
        );
        if let Some(r) = &self.record {
            if r.console.lines.is_empty() {
                s += "  (nothing on the serial console)\n";
                let emu =
                    std::fs::read_to_string(self.work_dir.join("emulator.log")).unwrap_or_default();
                // QEMU warns once per CPU about each EPYC feature TCG lacks.
                let tail: Vec<&str> = emu
                    .lines()
                    .filter(|l| !l.contains("TCG doesn't support requested feature"))
                    .rev()
                    .take(15)
                    .collect();
                if !tail.is_empty() {
                    s += "  --- emulator output (last lines) ---\n";
                    for l in tail.iter().rev() {
                        s += &format!("  | {l}\n");
                    }
                }
            } else {
                s += &format!("  --- console, last {TAIL_LINES} lines ---\n");
                for l in r.console.tail(TAIL_LINES) {
                    s += &format!("  | {}\n", l.replace('\x1b', "^["));
                }
            }
        }
        s += &format!("  logs: {}\n", self.work_dir.display());
        s
    }
}

/// Prepares the image and runs one scenario headless under `work_root/<name>`.
pub fn run_scenario(s: &Scenario, tools: &Tools, work_root: &Path) -> Report {
    let dir = work_root.join(&s.name);
    let _ = std::fs::remove_dir_all(&dir);
    let t0 = Instant::now();
    let fail = |reason: String, prepare| Report {
        scenario: s.clone(),
        verdict: Verdict {
            status: Status::Failed,
            reason,
        },
        wall: Duration::ZERO,
        prepare,
        record: None,
        work_dir: dir.clone(),
    };
    let image = match images::prepare(s, tools, &dir) {
        Ok(i) => i,
        Err(e) => return fail(format!("image: {e}"), t0.elapsed()),
    };
    let mut devices = emulator::Devices {
        net: s.net,
        allow_reboot: s.allow_reboot,
        single_thread_tcg: s.single_thread_tcg,
        ..Default::default()
    };
    if s.disk {
        let img = dir.join("disk.img");
        if let Err(e) = emulator::make_ext4_image(&img) {
            return fail(format!("disk image: {e}"), t0.elapsed());
        }
        devices.disk = Some(img);
    }
    let prepare = t0.elapsed();
    let launch = Launch {
        emulator: s.emulator,
        vendor: s.vendor,
        firmware: s.firmware,
        cpus: s.cpus,
        memory_mib: s.memory_mib,
        image,
        work_dir: dir.clone(),
        console: emulator::Console::File,
        accel: emulator::Accel::Tcg,
        devices,
    };
    let progress = |c: &Console| scenario::progress(s, c);
    match run(
        &launch,
        Some(s.timeout),
        Some(s.silence_timeout),
        false,
        &progress,
    ) {
        Ok(record) => Report {
            scenario: s.clone(),
            verdict: scenario::decide(s, &record.console, record.exit),
            wall: record.wall,
            prepare,
            record: Some(record),
            work_dir: dir,
        },
        Err(e) => fail(e, prepare),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(input: &[u8]) -> (Vec<u8>, bool, bool) {
        let mut k = EscapeKeys::default();
        let mut out = Vec::new();
        let (quit, help) = k.filter(input, &mut out);
        (out, quit, help)
    }

    #[test]
    fn escape_x_quits_and_drops_the_rest() {
        assert_eq!(filter(b"ls\r\x1dxmore"), (b"ls\r".to_vec(), true, false));
        assert_eq!(filter(b"\x1dX"), (vec![], true, false));
    }

    #[test]
    fn ctrl_c_and_ctrl_a_go_to_the_guest() {
        assert_eq!(
            filter(b"\x03\x01\x01\x01x"),
            (b"\x03\x01\x01\x01x".to_vec(), false, false)
        );
    }

    #[test]
    fn escape_twice_sends_one_and_unknown_keys_are_dropped() {
        assert_eq!(filter(b"a\x1d\x1db"), (b"a\x1db".to_vec(), false, false));
        assert_eq!(filter(b"a\x1dqb"), (b"ab".to_vec(), false, false));
        assert_eq!(filter(b"\x1dh"), (vec![], false, true));
    }

    #[test]
    fn escape_state_spans_reads() {
        let mut k = EscapeKeys::default();
        let mut out = Vec::new();
        assert_eq!(k.filter(b"ab\x1d", &mut out), (false, false));
        assert_eq!(out, b"ab");
        assert_eq!(k.feed(b'x'), Key::Quit);
        assert_eq!(k.feed(b'x'), Key::Send(b'x'));
    }
}
