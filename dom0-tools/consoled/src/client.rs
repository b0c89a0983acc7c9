//! The client side, what `keelctl console` runs: connect to the daemon's
//! socket, `ATTACH <domid>`, then copy the terminal to the guest and the
//! guest to the terminal until the escape byte (Ctrl-], as `xl console`).

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::sys;

/// `$KEEL_CONSOLE_SOCK` overrides [`crate::daemon::SOCKET_PATH`].
pub const SOCKET_ENV: &str = "KEEL_CONSOLE_SOCK";
/// Ctrl-]: leaves the console.
pub const ESCAPE: u8 = 0x1d;

/// The daemon's socket: `$KEEL_CONSOLE_SOCK` or `/run/keel/console.sock`.
pub fn socket_path() -> PathBuf {
    std::env::var_os(SOCKET_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(crate::daemon::SOCKET_PATH))
}

/// How a console session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The user typed the escape byte.
    Escape,
    /// The daemon closed the connection (the domain went away).
    Closed,
    /// The caller's deadline passed.
    Timeout,
}

#[derive(Debug)]
pub enum AttachError {
    /// No daemon at the socket.
    Connect(PathBuf, io::Error),
    /// The daemon said `ERR ...`.
    Refused(String),
    Io(io::Error),
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachError::Connect(p, e) => write!(
                f,
                "cannot reach the console daemon at {}: {e} (is keel-consoled running?)",
                p.display()
            ),
            AttachError::Refused(m) => write!(f, "console daemon: {m}"),
            AttachError::Io(e) => write!(f, "console connection: {e}"),
        }
    }
}

impl std::error::Error for AttachError {}

impl From<io::Error> for AttachError {
    fn from(e: io::Error) -> Self {
        AttachError::Io(e)
    }
}

/// Connects and sends `ATTACH <domid>`; returns the stream once the daemon
/// said `OK` (nothing of the console's output consumed yet).
pub fn connect(socket: &Path, domid: u32) -> Result<UnixStream, AttachError> {
    let mut s =
        UnixStream::connect(socket).map_err(|e| AttachError::Connect(socket.to_path_buf(), e))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("ATTACH {domid}\n").as_bytes())?;
    // One byte at a time: what follows the reply line is console output
    // for the session loop.
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b)? {
            0 => {
                return Err(AttachError::Refused(
                    "closed the connection without a reply".into(),
                ))
            }
            _ if b[0] == b'\n' => break,
            _ if line.len() > 512 => return Err(AttachError::Refused("reply too long".into())),
            _ => line.push(b[0]),
        }
    }
    let line = String::from_utf8_lossy(&line).into_owned();
    s.set_read_timeout(None)?;
    match line.as_str() {
        "OK" => Ok(s),
        l => Err(AttachError::Refused(
            l.strip_prefix("ERR ").unwrap_or(l).to_string(),
        )),
    }
}

/// `keelctl console`: attaches stdin/stdout to domain `domid`'s console.
/// On a terminal, stdin goes to raw mode (restored on return) and `escape`
/// leaves. Without a terminal, end of stdin does not end the session:
/// output is copied until the daemon closes or `timeout` passes.
pub fn attach(
    socket: &Path,
    domid: u32,
    escape: u8,
    timeout: Option<Duration>,
) -> Result<Ended, AttachError> {
    let stream = connect(socket, domid)?;
    let stdin = io::stdin();
    let tty = sys::isatty(stdin.as_raw_fd());
    let mut input = File::from(stdin.as_fd().try_clone_to_owned()?);
    let _raw = if tty {
        Some(sys::make_raw(input.as_raw_fd())?)
    } else {
        None
    };
    let mut out = io::stdout().lock();
    let r = session(stream, &mut input, &mut out, escape, timeout);
    if tty {
        // The guest's last line may lack a newline.
        let _ = out.write_all(b"\r\n");
        let _ = out.flush();
    }
    r
}

/// The copy loop of [`attach`], on any input and output (tests).
pub fn session<I: Read + AsRawFd>(
    mut stream: UnixStream,
    input: &mut I,
    output: &mut dyn Write,
    escape: u8,
    timeout: Option<Duration>,
) -> Result<Ended, AttachError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut input_open = true;
    let mut buf = [0u8; 4096];
    loop {
        let wait = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(Ended::Timeout);
                }
                left.as_millis().clamp(1, i32::MAX as u128) as i32
            }
            None => -1,
        };
        let mut fds = vec![sys::pollfd(stream.as_raw_fd(), libc::POLLIN)];
        if input_open {
            fds.push(sys::pollfd(input.as_raw_fd(), libc::POLLIN));
        }
        if sys::poll(&mut fds, wait)? == 0 {
            continue;
        }
        if fds[0].revents != 0 {
            let n = match stream.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => 0,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                return Ok(Ended::Closed);
            }
            output.write_all(&buf[..n])?;
            output.flush()?;
        }
        if input_open && fds[1].revents != 0 {
            let n = match input.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            if n == 0 {
                input_open = false;
                continue;
            }
            let data = &buf[..n];
            if let Some(k) = data.iter().position(|&b| b == escape) {
                stream.write_all(&data[..k])?;
                return Ok(Ended::Escape);
            }
            stream.write_all(data)?;
        }
    }
}
