//! The table of domains by id: created at run time, looked up by every
//! CPU that runs or signals a domain, and left only once a domain is
//! finished (ended, and none of its vCPUs on a CPU), so an id is never
//! reused while a domain is dying. `keelctl list` and the domctls read it.

use super::{DomId, Domain, Outcome};
use crate::xen::abi::{Errno, DOMID_FIRST_RESERVED};
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use spin::{Once, RwLock};

static DOMAINS: RwLock<BTreeMap<DomId, Arc<Domain>>> = RwLock::new(BTreeMap::new());
static END_HOOK: Once<fn(&Arc<Domain>, &Outcome)> = Once::new();

/// Adds a built domain. Its id must be an ordinary one, not in use.
pub fn insert(d: Arc<Domain>) -> Result<(), Errno> {
    if d.id >= DOMID_FIRST_RESERVED {
        return Err(Errno::EINVAL);
    }
    let mut t = DOMAINS.write();
    if t.contains_key(&d.id) {
        return Err(Errno::EEXIST);
    }
    t.insert(d.id, d);
    Ok(())
}

pub fn get(id: DomId) -> Option<Arc<Domain>> {
    DOMAINS.read().get(&id).cloned()
}

/// Every domain, in id order (a snapshot).
pub fn all() -> Vec<Arc<Domain>> {
    DOMAINS.read().values().cloned().collect()
}

/// The lowest id from 1 up that no domain (living or dying) has.
pub fn free_id() -> Option<DomId> {
    let t = DOMAINS.read();
    (1..DOMID_FIRST_RESERVED).find(|i| !t.contains_key(i))
}

/// What runs when a domain is finished (dom0's end powers the machine
/// off; the self-tests judge their guests). Set once, at boot.
pub fn set_end_hook(f: fn(&Arc<Domain>, &Outcome)) {
    END_HOOK.call_once(|| f);
}

/// A domain ended and none of its vCPUs is on a CPU: it leaves the table
/// (its memory goes back when the last reference does).
pub(super) fn finish(d: &Arc<Domain>) {
    DOMAINS.write().remove(&d.id);
    let outcome = d
        .outcome()
        .unwrap_or_else(|| Outcome::Killed(alloc::string::String::from("?")));
    let exits: u64 = d
        .vcpus
        .iter()
        .map(|v| v.stats.exits.load(core::sync::atomic::Ordering::Relaxed))
        .sum();
    log::info!(
        "d{}: {:?} after {exits} exits on {} vCPU(s), {} hypercalls ({} unimplemented)",
        d.id,
        outcome,
        d.vcpus.len(),
        d.stats
            .hypercalls
            .load(core::sync::atomic::Ordering::Relaxed),
        d.stats
            .unimplemented
            .load(core::sync::atomic::Ordering::Relaxed),
    );
    if let Some(hook) = END_HOOK.get() {
        hook(d, &outcome);
    }
    // Gone from the table: dom0's xenstored fires @releaseDomain.
    super::dom_exc(d.id);
}
