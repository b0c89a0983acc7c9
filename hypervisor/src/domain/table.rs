//! The table of domains by id: created at run time, looked up by every
//! CPU that runs or signals a domain, and left only once a domain is
//! finished (ended, and none of its vCPUs on a CPU), so an id is never
//! reused while a domain is dying. `keelctl list` and the domctls read it.

use super::{DomId, Domain, Outcome};
use crate::xen::abi::{Errno, DOMID_FIRST_RESERVED};
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU16, Ordering};
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

/// The id [`next_free_id`] handed out last (Xen's `rover`).
static ROVER: AtomicU16 = AtomicU16::new(0);

/// An id for a new domain that the caller did not choose: the first free
/// one (no domain, living or dying, has it) after the last one handed
/// out, wrapping round to 1, as Xen's createdomain picks it. Ids are not
/// reused at once: libxl keeps a recently destroyed id apart (its domid
/// history) and destroys and re-creates a domain given one, so handing out
/// the lowest free id would loop.
pub fn next_free_id() -> Option<DomId> {
    let t = DOMAINS.read();
    let id = after(ROVER.load(Ordering::Relaxed), |i| t.contains_key(&i))?;
    ROVER.store(id, Ordering::Relaxed);
    Some(id)
}

/// The first id after `rover` (from 1 to `DOMID_FIRST_RESERVED - 1`, then
/// round from 1 to `rover` itself) that is not `taken`.
fn after(rover: DomId, taken: impl Fn(DomId) -> bool) -> Option<DomId> {
    let rover = rover.min(DOMID_FIRST_RESERVED - 1);
    (rover + 1..DOMID_FIRST_RESERVED)
        .chain(1..=rover)
        .find(|&i| !taken(i))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_handed_out_round_robin_like_xen() {
        let none = |_| false;
        // From the start: 1; then the one after the last, not the lowest.
        assert_eq!(after(0, none), Some(1));
        assert_eq!(after(1, none), Some(2));
        assert_eq!(after(7, |i| i == 8 || i == 9), Some(10));
        // Round from the top to 1, skipping what is taken, up to the rover.
        let top = DOMID_FIRST_RESERVED - 1;
        assert_eq!(after(top, none), Some(1));
        assert_eq!(after(top - 1, |i| i == top), Some(1));
        assert_eq!(after(5, |i| i != 5), Some(5));
        assert_eq!(after(5, |_| true), None);
        // A reserved id as the rover (never stored) is the top.
        assert_eq!(after(DOMID_FIRST_RESERVED, none), Some(1));
    }
}
