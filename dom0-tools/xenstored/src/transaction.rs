//! Transactions: a copy-on-write overlay over the committed store with
//! optimistic conflict detection.
//!
//! Every node a transaction touches (read or written, including absent
//! nodes) is recorded with the generation it had in the committed store at
//! first access. Commit fails with EAGAIN if any of those generations has
//! changed since; otherwise the overlay is applied atomically.

use std::collections::HashMap;

use crate::store::{Change, Node, Store, Tree};
use crate::wire::XsError;

#[derive(Debug, Default)]
pub struct Transaction {
    pub id: u32,
    /// Modified nodes; `None` = deleted in this transaction.
    overlay: HashMap<String, Option<Node>>,
    /// Generation seen at first access (0 = absent).
    seen: HashMap<String, u64>,
    /// Copy of each node as first read, so repeated reads inside the
    /// transaction are stable even if others commit meanwhile.
    snapshot: HashMap<String, Option<Node>>,
    /// Change in nodes owned per domain, for quota checks.
    owned_delta: HashMap<u32, isize>,
    /// Watch events to fire on commit.
    changes: Vec<Change>,
}

impl Transaction {
    pub fn new(id: u32) -> Transaction {
        Transaction {
            id,
            ..Default::default()
        }
    }

    /// A [`Tree`] view of the store through this transaction.
    pub fn view<'a>(&'a mut self, store: &'a Store) -> TxView<'a> {
        TxView { store, tx: self }
    }

    pub fn record(&mut self, changes: Vec<Change>) {
        self.changes.extend(changes);
    }

    /// Number of nodes touched (for diagnostics).
    pub fn footprint(&self) -> usize {
        self.seen.len()
    }

    /// Validates and applies the transaction. On success returns the changes
    /// to fire watches for.
    pub fn commit(self, store: &mut Store) -> Result<Vec<Change>, XsError> {
        if self.seen.iter().any(|(p, g)| store.gen_of(p) != *g) {
            return Err(XsError::EAGAIN);
        }
        // Deterministic order: shorter (parent) paths first.
        let mut ops: Vec<(String, Option<Node>)> = self.overlay.into_iter().collect();
        ops.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(&b.0)));
        for (p, n) in ops {
            match n {
                Some(n) => store.put(&p, n),
                None => store.delete(&p),
            }
        }
        Ok(self.changes)
    }
}

/// Tree view used while executing a request inside a transaction.
pub struct TxView<'a> {
    store: &'a Store,
    tx: &'a mut Transaction,
}

impl TxView<'_> {
    fn note(&mut self, path: &str) {
        if !self.tx.seen.contains_key(path) {
            self.tx
                .seen
                .insert(path.to_string(), self.store.gen_of(path));
        }
    }

    fn current_owner(&mut self, path: &str) -> Option<u32> {
        self.get(path).map(|n| n.perms.owner())
    }

    fn adjust(&mut self, domid: u32, d: isize) {
        *self.tx.owned_delta.entry(domid).or_insert(0) += d;
    }
}

impl Tree for TxView<'_> {
    fn get(&mut self, path: &str) -> Option<Node> {
        if let Some(n) = self.tx.overlay.get(path) {
            return n.clone();
        }
        if let Some(n) = self.tx.snapshot.get(path) {
            return n.clone();
        }
        self.note(path);
        let n = self.store.node(path).cloned();
        self.tx.snapshot.insert(path.to_string(), n.clone());
        n
    }

    fn put(&mut self, path: &str, node: Node) {
        if let Some(o) = self.current_owner(path) {
            self.adjust(o, -1);
        }
        self.adjust(node.perms.owner(), 1);
        self.tx.overlay.insert(path.to_string(), Some(node));
    }

    fn delete(&mut self, path: &str) {
        if let Some(o) = self.current_owner(path) {
            self.adjust(o, -1);
        }
        self.tx.overlay.insert(path.to_string(), None);
    }

    fn owned(&self, domid: u32) -> usize {
        let base = self.store.owned(domid) as isize;
        (base + self.tx.owned_delta.get(&domid).copied().unwrap_or(0)).max(0) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perms::Caller;
    use crate::quota::Quota;
    use crate::store;

    #[test]
    fn isolation_and_commit() {
        let mut s = Store::new();
        let q = Quota::default();
        let c = Caller::dom0();
        store::write(&mut s, &c, &q, "/a", b"1").unwrap();
        let mut tx = Transaction::new(1);
        let ch = store::write(&mut tx.view(&s), &c, &q, "/a/b", b"2").unwrap();
        tx.record(ch);
        assert_eq!(store::read(&mut tx.view(&s), &c, "/a/b").unwrap(), b"2");
        assert_eq!(store::read(&mut s, &c, "/a/b"), Err(XsError::ENOENT));
        let changes = tx.commit(&mut s).unwrap();
        assert_eq!(changes[0].path, "/a/b");
        assert_eq!(store::read(&mut s, &c, "/a/b").unwrap(), b"2");
        assert_eq!(store::directory(&mut s, &c, "/a").unwrap(), b"b\0");
    }

    #[test]
    fn conflict_detected() {
        let mut s = Store::new();
        let q = Quota::default();
        let c = Caller::dom0();
        store::write(&mut s, &c, &q, "/a", b"1").unwrap();
        let mut t1 = Transaction::new(1);
        let mut t2 = Transaction::new(2);
        store::read(&mut t1.view(&s), &c, "/a").unwrap();
        store::write(&mut t1.view(&s), &c, &q, "/a", b"t1").unwrap();
        store::read(&mut t2.view(&s), &c, "/a").unwrap();
        store::write(&mut t2.view(&s), &c, &q, "/a", b"t2").unwrap();
        t1.commit(&mut s).unwrap();
        assert_eq!(store::read(&mut t2.view(&s), &c, "/a").unwrap(), b"t2");
        assert_eq!(t2.commit(&mut s), Err(XsError::EAGAIN));
        assert_eq!(store::read(&mut s, &c, "/a").unwrap(), b"t1");
    }

    #[test]
    fn repeatable_reads() {
        // Xen's test-xenstore "ta err": a read inside the transaction keeps
        // seeing the value it first saw; the commit then fails with EAGAIN.
        let mut s = Store::new();
        let q = Quota::default();
        let c = Caller::dom0();
        store::write(&mut s, &c, &q, "/a", b"a").unwrap();
        let mut t = Transaction::new(1);
        assert_eq!(store::read(&mut t.view(&s), &c, "/a").unwrap(), b"a");
        store::write(&mut s, &c, &q, "/a", b"b").unwrap();
        assert_eq!(store::read(&mut t.view(&s), &c, "/a").unwrap(), b"a");
        store::write(&mut t.view(&s), &c, &q, "/a", b"c").unwrap();
        assert_eq!(store::read(&mut t.view(&s), &c, "/a").unwrap(), b"c");
        assert_eq!(t.commit(&mut s), Err(XsError::EAGAIN));
        assert_eq!(store::read(&mut s, &c, "/a").unwrap(), b"b");
    }

    #[test]
    fn unrelated_paths_do_not_conflict() {
        let mut s = Store::new();
        let q = Quota::default();
        let c = Caller::dom0();
        store::write(&mut s, &c, &q, "/a", b"1").unwrap();
        store::write(&mut s, &c, &q, "/b", b"1").unwrap();
        let mut t1 = Transaction::new(1);
        store::write(&mut t1.view(&s), &c, &q, "/a", b"x").unwrap();
        store::write(&mut s, &c, &q, "/b", b"2").unwrap();
        t1.commit(&mut s).unwrap();
        // reading a node that was later created is a conflict too
        let mut t2 = Transaction::new(2);
        assert!(store::read(&mut t2.view(&s), &c, "/new").is_err());
        store::write(&mut s, &c, &q, "/new", b"1").unwrap();
        assert_eq!(t2.commit(&mut s), Err(XsError::EAGAIN));
    }

    #[test]
    fn rm_in_transaction_and_quota_delta() {
        let mut s = Store::new();
        let q = Quota {
            max_nodes: 3,
            ..Quota::default()
        };
        let c = Caller::dom0();
        let g = Caller::domain(4);
        store::write(&mut s, &c, &q, "/d", b"").unwrap();
        store::set_perms(
            &mut s,
            &c,
            "/d",
            crate::perms::Perms::parse_csv("b0,b4").unwrap(),
        )
        .unwrap();
        let mut t = Transaction::new(1);
        for i in 0..3 {
            store::write(&mut t.view(&s), &g, &q, &format!("/d/{i}"), b"").unwrap();
        }
        assert_eq!(
            store::write(&mut t.view(&s), &g, &q, "/d/x", b""),
            Err(XsError::EQUOTA)
        );
        store::rm(&mut t.view(&s), &g, "/d/0").unwrap();
        store::write(&mut t.view(&s), &g, &q, "/d/x", b"").unwrap();
        t.commit(&mut s).unwrap();
        assert_eq!(s.owned(4), 3);
        assert_eq!(store::directory(&mut s, &c, "/d").unwrap(), b"1\x002\0x\0");
    }
}
