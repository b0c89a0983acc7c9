//! keel-xenstored: the xenstore daemon.
//!
//! Usage: keel-xenstored [--socket PATH] [--persist FILE] [--no-dom0-ring] [--verbose]
//! The socket path defaults to $XENSTORED_PATH, else /run/xenstored/socket.
//! In dom0 with xenfs mounted it also serves dom0's own kernel on the ring
//! in /proc/xen/xsd_kva (Linux's local-xenstore mode), as Xen's xenstored does,
//! and binds VIRQ_DOM_EXC to drop dead domains and fire @releaseDomain.

use std::path::PathBuf;
use std::process::ExitCode;

use keel_xenstored::engine::Engine;
use keel_xenstored::quota::Quota;
use keel_xenstored::server::Server;
use keel_xenstored::store::Store;
use keel_xenstored::transport::xendev;
use keel_xenstored::transport::Transport;

/// Linux's privcmd device, for mapping introduced guests' rings.
const PRIVCMD: &str = "/dev/xen/privcmd";

const USAGE: &str =
    "usage: keel-xenstored [--socket PATH] [--persist FILE] [--no-dom0-ring] [--verbose]

  --socket PATH   Unix socket to listen on (default: $XENSTORED_PATH, else /run/xenstored/socket)
  --persist FILE  load the tree from FILE at start, save it there on SIGTERM/SIGINT
  --no-dom0-ring  do not serve dom0's kernel on /proc/xen/xsd_kva (served when it exists)
  --verbose       log connections and failed requests to stderr";

fn main() -> ExitCode {
    let mut socket: Option<PathBuf> = None;
    let mut persist: Option<PathBuf> = None;
    let mut verbose = false;
    let mut dom0_ring = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--socket" | "-s" => socket = args.next().map(PathBuf::from),
            "--persist" => persist = args.next().map(PathBuf::from),
            "--verbose" | "-v" => verbose = true,
            "--no-dom0-ring" => dom0_ring = false,
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => {
                eprintln!("keel-xenstored: unknown argument {a:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let socket = socket
        .or_else(|| std::env::var_os("XENSTORED_PATH").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(keel_xenstored::DEFAULT_SOCKET));
    let store = match &persist {
        Some(f) => match keel_xenstored::persist::load(f) {
            Ok(Some(s)) => {
                eprintln!(
                    "keel-xenstored: loaded {} nodes from {}",
                    s.len(),
                    f.display()
                );
                s
            }
            Ok(None) => Store::new(),
            Err(e) => {
                eprintln!("keel-xenstored: cannot load {}: {e}", f.display());
                return ExitCode::FAILURE;
            }
        },
        None => Store::new(),
    };
    let run = || -> std::io::Result<()> {
        let mut server = Server::new(Engine::new(store, Quota::default()))?;
        server.set_verbose(verbose);
        server.listen(&socket)?;
        if dom0_ring && std::path::Path::new(xendev::XSD_KVA).exists() {
            let ring = xendev::dom0_ring()
                .map_err(|e| std::io::Error::new(e.kind(), format!("dom0's xenstore ring: {e}")))?;
            eprintln!(
                "keel-xenstored: serving dom0's kernel on its {}",
                ring.describe()
            );
            server.add_transport(Box::new(ring));
        }
        // Guests the toolstack introduces: their rings through the grant
        // table (gntdev), or privcmd foreign mapping if that fails.
        let privcmd = std::path::Path::new(PRIVCMD);
        if privcmd.exists() {
            match xendev::PrivcmdConnector::open(privcmd) {
                Ok(c) => server.set_connector(Box::new(c)),
                Err(e) => eprintln!("keel-xenstored: guests cannot be introduced: {e}"),
            }
        }
        // Domains that die or shut down: VIRQ_DOM_EXC, then getdomaininfo
        // about each introduced one. Off Xen/keel (no such device, not
        // privileged) the daemon serves on without it.
        match xendev::DomExcVirq::bind()
            .and_then(|virq| xendev::PrivcmdDomains::open(privcmd).map(|src| (virq, src)))
        {
            Ok((virq, src)) => server.watch_domain_exceptions(Box::new(virq), Box::new(src)),
            Err(e) => eprintln!(
                "keel-xenstored: not watching for dead domains (VIRQ_DOM_EXC): {e}; \
                 @releaseDomain fires only on RELEASE"
            ),
        }
        if let Some(f) = persist.clone() {
            server.persist_to(f);
        }
        server.install_signal_handlers()?;
        eprintln!("keel-xenstored: listening on {}", socket.display());
        server.run()?;
        eprintln!("keel-xenstored: shut down");
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keel-xenstored: {e}");
            ExitCode::FAILURE
        }
    }
}
