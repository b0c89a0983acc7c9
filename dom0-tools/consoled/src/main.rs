//! `keel-consoled`: serves every domU's console (see the library docs and
//! docs/console.md). Always runs in the foreground; the caller backgrounds
//! it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use keel_consoled::daemon::{self, Config, Daemon, XenConnector, XsStore};

const USAGE: &str = "usage: keel-consoled [--xenstore PATH] [--socket PATH] [--log-dir PATH] \
[--privcmd PATH] [--gntdev PATH] [--no-pty]

  --xenstore PATH  xenstored's socket (default $XENSTORED_PATH or /run/xenstored/socket)
  --socket PATH    where `keelctl console` connects (default $KEEL_CONSOLE_SOCK or
                   /run/keel/console.sock)
  --log-dir PATH   one NAME.log (or domN.log) per domain (default /var/log/keel/console)
  --privcmd PATH   the privcmd device (default /dev/xen/privcmd)
  --gntdev PATH    the grant device rings are mapped through first (default /dev/xen/gntdev)
  --no-pty         no pty per domain (and no console/tty in xenstore)";

/// The command line.
#[derive(Debug, PartialEq)]
struct Args {
    xenstore: PathBuf,
    socket: PathBuf,
    log_dir: PathBuf,
    privcmd: PathBuf,
    gntdev: PathBuf,
    pty: bool,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        xenstore: std::env::var_os("XENSTORED_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/run/xenstored/socket")),
        socket: keel_consoled::client::socket_path(),
        log_dir: PathBuf::from(daemon::LOG_DIR),
        privcmd: PathBuf::from("/dev/xen/privcmd"),
        gntdev: PathBuf::from(keel_xendev::gntdev::GNTDEV),
        pty: true,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |what: &str| {
            it.next()
                .map(PathBuf::from)
                .ok_or_else(|| format!("{what} needs a value"))
        };
        match arg.as_str() {
            "--xenstore" => a.xenstore = value(arg)?,
            "--socket" => a.socket = value(arg)?,
            "--log-dir" => a.log_dir = value(arg)?,
            "--privcmd" => a.privcmd = value(arg)?,
            "--gntdev" => a.gntdev = value(arg)?,
            "--no-pty" => a.pty = false,
            "--foreground" => {}
            "-h" | "--help" => return Err(String::new()),
            o => return Err(format!("unknown argument {o:?}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let a = match parse(&argv) {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("keel-consoled: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match serve(a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keel-consoled: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(a: Args) -> Result<(), String> {
    let store = XsStore::connect(&a.xenstore)?;
    let wake = daemon::spawn_watcher(&a.xenstore)?;
    let connector = XenConnector::open(&a.privcmd, &a.gntdev)?;
    let cfg = Config {
        socket: a.socket.clone(),
        log_dir: a.log_dir.clone(),
        pty: a.pty,
        verbose: true,
    };
    let mut d = Daemon::new(cfg, Box::new(store), Box::new(connector), Some(wake))
        .map_err(|e| e.to_string())?;
    println!(
        "keel-consoled: serving consoles (socket {}, logs {})",
        a.socket.display(),
        a.log_dir.display()
    );
    d.run(Duration::from_secs(10)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn arguments() {
        let a = parse(&s(&[
            "--socket",
            "/tmp/c.sock",
            "--log-dir",
            "/tmp/l",
            "--no-pty",
            "--gntdev",
            "/tmp/gntdev",
        ]))
        .unwrap();
        assert_eq!(a.gntdev, PathBuf::from("/tmp/gntdev"));
        assert_eq!(a.privcmd, PathBuf::from("/dev/xen/privcmd"));
        assert_eq!(a.socket, PathBuf::from("/tmp/c.sock"));
        assert_eq!(a.log_dir, PathBuf::from("/tmp/l"));
        assert!(!a.pty);
        assert_eq!(
            parse(&s(&["--socket"])).unwrap_err(),
            "--socket needs a value"
        );
        assert!(parse(&s(&["--bogus"])).unwrap_err().contains("--bogus"));
        assert_eq!(parse(&s(&["--help"])).unwrap_err(), "");
    }
}
