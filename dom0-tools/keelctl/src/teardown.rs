//! Taking one device of a domain away, disk or network interface alike,
//! as libxl does (`libxl__initiate_device_generic_remove`, then
//! `libxl__device_destroy`):
//!
//! * [`take_offline`]: in one transaction the backend's `online` becomes
//!   0 and its `state` Closing (5) (unless it is Closed already);
//! * forced ([`remove_forced`], as on destroy or `block-detach -f`): the
//!   frontend's directory goes too, so that the backend driver closes
//!   whatever the guest does; then at most a timeout for it to reach
//!   Closed (6), and the records go either way;
//! * live ([`remove_live`], as `block-detach` without `-f`): the guest's
//!   frontend sees Closing and closes when it can (blkfront does not
//!   while the disk is in use); the records go only once the backend is
//!   Closed, otherwise the backend is put back as it was and the device
//!   stays.

use std::time::{Duration, Instant};

use crate::devices::XenbusState;
use crate::xen::{Node, Xenstore};

/// How often the waits look.
const POLL: Duration = Duration::from_millis(50);

/// A device of a domain being taken away.
#[derive(Debug, Clone)]
pub struct Device {
    /// For messages: `disk 51712 of domain 1`.
    pub what: String,
    /// The dom0 driver that closes it: `blkback`, `netback`.
    pub driver: &'static str,
    /// libxl's, the frontend's and the backend's directories.
    pub dirs: [String; 3],
    /// The backend's directory, as libxl's record names it (the third of
    /// `dirs` without one).
    pub backend: String,
}

impl Device {
    /// The device whose directories are `dirs` (libxl's, frontend's,
    /// backend's).
    pub fn new(
        store: &dyn Xenstore,
        what: String,
        driver: &'static str,
        dirs: [String; 3],
    ) -> Self {
        let backend = store
            .read(&format!("{}/backend", dirs[0]))
            .ok()
            .flatten()
            .unwrap_or_else(|| dirs[2].clone());
        Device {
            what,
            driver,
            dirs,
            backend,
        }
    }

    /// The backend's node `key`.
    pub fn read(&self, store: &dyn Xenstore, key: &str) -> Option<String> {
        store
            .read(&format!("{}/{key}", self.backend))
            .ok()
            .flatten()
    }

    fn node(&self, key: &str, value: String) -> Node {
        Node {
            path: format!("{}/{key}", self.backend),
            value,
            perms: vec![],
        }
    }
}

/// Has the driver closed the backend at `be` (Closed, or the directory
/// gone)?
pub fn closed(store: &dyn Xenstore, be: &str) -> bool {
    match store.read(&format!("{be}/state")) {
        Ok(Some(s)) => XenbusState::parse(&s) == Ok(XenbusState::Closed),
        // Gone, or nothing to ask: no use waiting.
        Ok(None) | Err(_) => true,
    }
}

/// Backend `online` 0 and `state` Closing, in one transaction. Returns
/// the state it had (`None`: it has none, nothing was asked).
pub fn take_offline(store: &dyn Xenstore, d: &Device) -> Result<Option<String>, String> {
    let Some(state) = d.read(store, "state") else {
        return Ok(None);
    };
    let mut w = vec![d.node("online", "0".into())];
    if XenbusState::parse(&state) != Ok(XenbusState::Closed) {
        w.push(d.node("state", XenbusState::Closing.to_xenstore()));
    }
    store
        .publish(&w)
        .map_err(|e| format!("{}: taking its backend offline: {e}", d.what))?;
    Ok(Some(state))
}

/// Puts back what [`take_offline`] changed: `online` 1 and the state the
/// backend had.
fn put_back(store: &dyn Xenstore, d: &Device, state: String) -> Result<(), String> {
    store
        .publish(&[d.node("online", "1".into()), d.node("state", state)])
        .map_err(|e| format!("{}: putting its backend back online: {e}", d.what))
}

/// Waits at most `timeout` for each of `devs` to be closed; returns those
/// still open, with their backend's state.
pub fn wait_closed<'a>(
    store: &dyn Xenstore,
    devs: &[&'a Device],
    timeout: Duration,
) -> Vec<(&'a Device, String)> {
    let t0 = Instant::now();
    loop {
        let open: Vec<&Device> = devs
            .iter()
            .copied()
            .filter(|d| !closed(store, &d.backend))
            .collect();
        if open.is_empty() {
            return Vec::new();
        }
        if t0.elapsed() >= timeout {
            return open
                .into_iter()
                .map(|d| (d, d.read(store, "state").unwrap_or_default()))
                .collect();
        }
        std::thread::sleep(POLL);
    }
}

/// Removes `d`'s directories: libxl's, the frontend's, the backend's.
pub fn remove_records(store: &dyn Xenstore, d: &Device) -> Result<(), String> {
    let mut dirs = d.dirs.to_vec();
    if d.backend != d.dirs[2] {
        dirs.push(d.backend.clone());
    }
    store
        .remove(&dirs)
        .map_err(|e| format!("{}: removing its records: {e}", d.what))
}

/// libxl's forced removal of `devs`: offline and Closing, the frontends
/// gone, at most `timeout` for the drivers to close them (a `warn` for
/// each that did not), then their records gone. Whatever fails is a
/// `warn`; the rest goes on.
pub fn remove_forced(
    store: &dyn Xenstore,
    devs: &[Device],
    timeout: Duration,
    warn: &dyn Fn(String),
) {
    let mut asked = Vec::new();
    for d in devs {
        match take_offline(store, d) {
            Ok(Some(_)) => asked.push(d),
            Ok(None) => {}
            Err(e) => warn(e),
        }
        // After the offline: the driver, which closes when it sees its
        // frontend gone, writes its Closed after Closing, not before
        // (libxl does both in one transaction).
        if let Err(e) = store.remove(&[d.dirs[1].clone()]) {
            warn(format!("{}: removing its frontend: {e}", d.what));
        }
    }
    for (d, state) in wait_closed(store, &asked, timeout) {
        warn(format!(
            "{}: {} did not close {} within {:.1} s (state {state}, not 6): removing it anyway",
            d.what,
            d.driver,
            d.backend,
            timeout.as_secs_f64()
        ));
    }
    for d in devs {
        if let Err(e) = remove_records(store, d) {
            warn(e);
        }
    }
}

/// The removal of `d` from a running guest that is asked first: offline
/// and Closing, at most `timeout` for the guest to let go and the driver
/// to close, then its records gone. When the guest does not let go, the
/// backend is put back online and the error says so, naming the device
/// as `name`.
pub fn remove_live(
    store: &dyn Xenstore,
    d: &Device,
    name: &str,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(was) = take_offline(store, d)? {
        if let Some((_, state)) = wait_closed(store, &[d], timeout).pop() {
            let _ = put_back(store, d, was);
            return Err(format!(
                "the guest did not release {name} (still in use?): {} left {} in state {state}, not 6 (Closed), for {:.1} s; it stays attached",
                d.driver,
                d.backend,
                timeout.as_secs_f64()
            ));
        }
    }
    remove_records(store, d)
}

/// Removes `path` when it has no children left.
pub fn remove_if_empty(store: &dyn Xenstore, path: &str) {
    if store.directory(path).is_ok_and(|d| d.is_empty()) {
        let _ = store.remove(&[path.to_string()]);
    }
}
