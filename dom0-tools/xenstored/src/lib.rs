//! keel-xenstored: keel's xenstore daemon.
//!
//! Module map:
//! - [`wire`]: message header, types, error names, frame decoder
//! - [`path`]: path validation, relative path resolution
//! - [`perms`]: node ACLs and access checks
//! - [`quota`]: per-domain limits
//! - [`store`]: the node tree and the operations on it
//! - [`transaction`]: copy-on-write transactions with conflict detection
//! - [`watch`]: watch matching and event payloads
//! - [`engine`]: the I/O-free protocol engine (connections, dispatch, domains)
//! - [`transport`]: the [`transport::Transport`] trait, Unix socket and
//!   shared-page ring implementations
//! - [`server`]: the poll(2) event loop tying transports to the engine
//! - [`domexc`]: dropping dead domains on `VIRQ_DOM_EXC` (`@releaseDomain`)
//! - [`persist`]: optional snapshot of the tree across restarts
//! - [`client`]: a minimal synchronous client (tests, benchmark fallback)

pub mod client;
pub mod domexc;
pub mod engine;
pub mod path;
pub mod perms;
pub mod persist;
pub mod quota;
pub mod server;
pub mod store;
pub mod transaction;
pub mod transport;
pub mod watch;
pub mod wire;

/// Default socket path (as used by libxenstore when `XENSTORED_PATH` is unset).
pub const DEFAULT_SOCKET: &str = "/run/xenstored/socket";
