//! keel's console daemon, the equivalent of Xen's xenconsoled: every domU
//! with `console/ring-ref` and `console/port` in xenstore gets its
//! `struct xencons_interface` page mapped, its event channel bound, a pty
//! (whose slave path goes to `console/tty`) and a log file. [`client`] is the
//! other end, what `keelctl console` (like `xl console`) runs on that pty.

pub mod client;
pub mod daemon;
pub mod domain;
pub mod ring;
pub mod sys;

#[cfg(test)]
mod tests;
