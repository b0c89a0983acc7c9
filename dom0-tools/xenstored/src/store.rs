//! The node tree and the operations on it.
//!
//! Operations are written once, generically over [`Tree`], and run either
//! directly on the committed [`Store`] or on a transaction's copy-on-write
//! view ([`crate::transaction::TxView`]).

use std::collections::HashMap;

use crate::path::{self, basename, join};
use crate::perms::{Caller, Perms};
use crate::quota::Quota;
use crate::wire::{XsError, XENSTORE_PAYLOAD_MAX};

/// One node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub value: Vec<u8>,
    pub perms: Perms,
    /// Child leaf names, in creation order.
    pub children: Vec<String>,
    /// Generation: bumped (from a store-wide counter) on every committed
    /// modification. Used for transaction conflict detection and
    /// DIRECTORY_PART.
    pub gen: u64,
}

impl Node {
    pub fn new(perms: Perms) -> Node {
        Node {
            value: Vec::new(),
            perms,
            children: Vec::new(),
            gen: 0,
        }
    }
}

/// What a modification did, for firing watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    /// Permissions of the node (before removal, for removals); watchers that
    /// cannot read the node are not told.
    pub perms: Perms,
    /// A (recursive) removal: watches *below* `path` fire too.
    pub removed: bool,
}

/// Storage abstraction shared by the committed store and transactions.
pub trait Tree {
    fn get(&mut self, path: &str) -> Option<Node>;
    fn put(&mut self, path: &str, node: Node);
    fn delete(&mut self, path: &str);
    /// Nodes owned by `domid`.
    fn owned(&self, domid: u32) -> usize;
}

/// The committed tree.
#[derive(Debug, Clone)]
pub struct Store {
    nodes: HashMap<String, Node>,
    gen: u64,
    owned: HashMap<u32, usize>,
}

impl Default for Store {
    fn default() -> Store {
        Store::new()
    }
}

impl Store {
    /// A store with `/`, `/local` and `/local/domain`, all owned by dom0.
    pub fn new() -> Store {
        let mut s = Store {
            nodes: HashMap::new(),
            gen: 0,
            owned: HashMap::new(),
        };
        s.put("/", Node::new(Perms::owned_by(0)));
        let c = Caller::dom0();
        let q = Quota::default();
        mkdir(&mut s, &c, &q, "/local/domain").expect("initial tree");
        s
    }

    /// An empty store (used when loading a snapshot).
    pub fn empty() -> Store {
        Store {
            nodes: HashMap::new(),
            gen: 0,
            owned: HashMap::new(),
        }
    }

    pub fn node(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Generation of a node, 0 if absent.
    pub fn gen_of(&self, path: &str) -> u64 {
        self.nodes.get(path).map_or(0, |n| n.gen)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Paths in pre-order (parents before children).
    pub fn walk(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec!["/".to_string()];
        while let Some(p) = stack.pop() {
            if let Some(n) = self.nodes.get(&p) {
                for c in n.children.iter().rev() {
                    stack.push(join(&p, c));
                }
                out.push(p);
            }
        }
        out
    }

    /// Raw insertion for snapshot loading: links into the parent, which must
    /// already exist (except for `/`).
    pub fn load_node(&mut self, p: &str, value: Vec<u8>, perms: Perms) -> Result<(), XsError> {
        if p != "/" {
            let parent = path::parent(p).ok_or(XsError::EINVAL)?.to_string();
            let mut pn = self.nodes.get(&parent).cloned().ok_or(XsError::ENOENT)?;
            let name = basename(p).to_string();
            if !pn.children.contains(&name) {
                pn.children.push(name);
                self.put(&parent, pn);
            }
        }
        let children = self
            .nodes
            .get(p)
            .map(|n| n.children.clone())
            .unwrap_or_default();
        self.put(
            p,
            Node {
                value,
                perms,
                children,
                gen: 0,
            },
        );
        Ok(())
    }

    pub(crate) fn bump_gen(&mut self) -> u64 {
        self.gen += 1;
        self.gen
    }

    fn count(&mut self, domid: u32, delta: isize) {
        let e = self.owned.entry(domid).or_insert(0);
        *e = e.saturating_add_signed(delta);
        if *e == 0 {
            self.owned.remove(&domid);
        }
    }
}

impl Tree for Store {
    fn get(&mut self, path: &str) -> Option<Node> {
        self.nodes.get(path).cloned()
    }

    fn put(&mut self, path: &str, mut node: Node) {
        node.gen = self.bump_gen();
        let new_owner = node.perms.owner();
        if let Some(old) = self.nodes.insert(path.to_string(), node) {
            self.count(old.perms.owner(), -1);
        }
        self.count(new_owner, 1);
    }

    fn delete(&mut self, path: &str) {
        if let Some(old) = self.nodes.remove(path) {
            self.count(old.perms.owner(), -1);
        }
    }

    fn owned(&self, domid: u32) -> usize {
        self.owned.get(&domid).copied().unwrap_or(0)
    }
}

fn readable<T: Tree + ?Sized>(t: &mut T, who: &Caller, path: &str) -> Result<Node, XsError> {
    let n = t.get(path).ok_or(XsError::ENOENT)?;
    if !n.perms.access(who).read {
        return Err(XsError::EACCES);
    }
    Ok(n)
}

/// READ.
pub fn read<T: Tree + ?Sized>(t: &mut T, who: &Caller, path: &str) -> Result<Vec<u8>, XsError> {
    Ok(readable(t, who, path)?.value)
}

/// Creates `path` and missing parents. Returns false if it already existed.
fn create<T: Tree + ?Sized>(t: &mut T, who: &Caller, q: &Quota, p: &str) -> Result<bool, XsError> {
    if t.get(p).is_some() {
        return Ok(false);
    }
    // Walk up to the nearest existing ancestor.
    let mut missing = vec![p.to_string()];
    let mut anc = path::parent(p).ok_or(XsError::EINVAL)?.to_string();
    let mut parent = loop {
        if let Some(n) = t.get(&anc) {
            break n;
        }
        missing.push(anc.clone());
        anc = path::parent(&anc).ok_or(XsError::ENOENT)?.to_string();
    };
    if !parent.perms.access(who).write {
        return Err(XsError::EACCES);
    }
    if !who.privileged && t.owned(who.domid) + missing.len() > q.nodes(false) {
        return Err(XsError::EQUOTA);
    }
    let mut parent_path = anc;
    for p in missing.iter().rev() {
        let mut perms = parent.perms.clone();
        if !who.privileged {
            perms.set_owner(who.domid);
        }
        parent.children.push(basename(p).to_string());
        t.put(&parent_path, parent);
        let node = Node::new(perms);
        t.put(p, node.clone());
        parent = node;
        parent_path = p.clone();
    }
    Ok(true)
}

/// WRITE: sets the value, creating the node and its parents if needed.
pub fn write<T: Tree + ?Sized>(
    t: &mut T,
    who: &Caller,
    q: &Quota,
    path: &str,
    value: &[u8],
) -> Result<Vec<Change>, XsError> {
    if value.len() > q.entry_size(who.privileged) {
        return Err(XsError::ENOSPC);
    }
    if let Some(n) = t.get(path) {
        if !n.perms.access(who).write {
            return Err(XsError::EACCES);
        }
    } else {
        create(t, who, q, path)?;
    }
    let mut n = t.get(path).ok_or(XsError::ENOENT)?;
    n.value = value.to_vec();
    let perms = n.perms.clone();
    t.put(path, n);
    Ok(vec![Change {
        path: path.to_string(),
        perms,
        removed: false,
    }])
}

/// MKDIR: ensures the node exists.
pub fn mkdir<T: Tree + ?Sized>(
    t: &mut T,
    who: &Caller,
    q: &Quota,
    path: &str,
) -> Result<Vec<Change>, XsError> {
    if let Some(n) = t.get(path) {
        if !n.perms.access(who).write {
            return Err(XsError::EACCES);
        }
        return Ok(vec![]);
    }
    create(t, who, q, path)?;
    let perms = t.get(path).ok_or(XsError::ENOENT)?.perms;
    Ok(vec![Change {
        path: path.to_string(),
        perms,
        removed: false,
    }])
}

/// RM: removes the node and its subtree.
pub fn rm<T: Tree + ?Sized>(t: &mut T, who: &Caller, p: &str) -> Result<Vec<Change>, XsError> {
    let parent_path = path::parent(p).ok_or(XsError::EINVAL)?.to_string();
    let Some(node) = t.get(p) else {
        // Absent node: fine if the parent exists.
        return match t.get(&parent_path) {
            Some(_) => Ok(vec![]),
            None => Err(XsError::ENOENT),
        };
    };
    if !node.perms.access(who).write {
        return Err(XsError::EACCES);
    }
    let mut parent = t.get(&parent_path).ok_or(XsError::ENOENT)?;
    let mut stack = vec![p.to_string()];
    while let Some(cur) = stack.pop() {
        if let Some(n) = t.get(&cur) {
            for c in &n.children {
                stack.push(join(&cur, c));
            }
            t.delete(&cur);
        }
    }
    let name = basename(p);
    parent.children.retain(|c| c != name);
    t.put(&parent_path, parent);
    Ok(vec![Change {
        path: p.to_string(),
        perms: node.perms,
        removed: true,
    }])
}

/// DIRECTORY: nul-terminated child names.
pub fn directory<T: Tree + ?Sized>(
    t: &mut T,
    who: &Caller,
    path: &str,
) -> Result<Vec<u8>, XsError> {
    let n = readable(t, who, path)?;
    let mut out = Vec::new();
    for c in &n.children {
        out.extend_from_slice(c.as_bytes());
        out.push(0);
    }
    if out.len() > XENSTORE_PAYLOAD_MAX {
        return Err(XsError::E2BIG);
    }
    Ok(out)
}

/// DIRECTORY_PART: `<gen>\0` then whole child names starting at byte
/// `offset` of the full list, as many as fit; an extra `\0` marks the end.
pub fn directory_part<T: Tree + ?Sized>(
    t: &mut T,
    who: &Caller,
    path: &str,
    offset: usize,
) -> Result<Vec<u8>, XsError> {
    let n = readable(t, who, path)?;
    let mut out = format!("{}", n.gen).into_bytes();
    out.push(0);
    let mut pos = 0usize;
    let mut complete = true;
    for c in &n.children {
        let len = c.len() + 1;
        if pos >= offset {
            // Keep room for the terminating nul.
            if out.len() + len + 1 > XENSTORE_PAYLOAD_MAX {
                complete = false;
                break;
            }
            out.extend_from_slice(c.as_bytes());
            out.push(0);
        } else if pos + len > offset {
            // Offset in the middle of a name.
            return Err(XsError::EINVAL);
        }
        pos += len;
    }
    if offset > pos {
        return Err(XsError::EINVAL);
    }
    if complete {
        out.push(0);
    }
    Ok(out)
}

/// GET_PERMS.
pub fn get_perms<T: Tree + ?Sized>(t: &mut T, who: &Caller, path: &str) -> Result<Perms, XsError> {
    Ok(readable(t, who, path)?.perms)
}

/// SET_PERMS: needs write access and ownership; only privileged callers may
/// hand a node to another owner.
pub fn set_perms<T: Tree + ?Sized>(
    t: &mut T,
    who: &Caller,
    path: &str,
    perms: Perms,
) -> Result<Vec<Change>, XsError> {
    let mut n = t.get(path).ok_or(XsError::ENOENT)?;
    if !who.privileged {
        let owner = n.perms.owner();
        let is_owner = owner == who.domid || Some(owner) == who.target;
        if !n.perms.access(who).write || !is_owner {
            return Err(XsError::EACCES);
        }
        if perms.owner() != owner {
            return Err(XsError::EPERM);
        }
    }
    // Events go to those who could read the node before or after.
    let old = std::mem::replace(&mut n.perms, perms);
    t.put(path, n);
    Ok(vec![Change {
        path: path.to_string(),
        perms: old,
        removed: false,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d0() -> Caller {
        Caller::dom0()
    }

    #[test]
    fn write_read_creates_parents() {
        let mut s = Store::new();
        let q = Quota::default();
        write(&mut s, &d0(), &q, "/a/b/c", b"v").unwrap();
        assert_eq!(read(&mut s, &d0(), "/a/b/c").unwrap(), b"v");
        assert_eq!(read(&mut s, &d0(), "/a/b").unwrap(), b"");
        assert_eq!(directory(&mut s, &d0(), "/a").unwrap(), b"b\0");
        assert_eq!(read(&mut s, &d0(), "/nope"), Err(XsError::ENOENT));
        assert_eq!(s.walk()[0], "/");
    }

    #[test]
    fn rm_semantics() {
        let mut s = Store::new();
        let q = Quota::default();
        write(&mut s, &d0(), &q, "/a/b/c", b"v").unwrap();
        write(&mut s, &d0(), &q, "/a/x", b"v").unwrap();
        let ch = rm(&mut s, &d0(), "/a/b").unwrap();
        assert!(ch[0].removed);
        assert!(s.node("/a/b/c").is_none());
        assert_eq!(directory(&mut s, &d0(), "/a").unwrap(), b"x\0");
        assert_eq!(rm(&mut s, &d0(), "/a/b").unwrap(), vec![]); // parent exists
        assert_eq!(rm(&mut s, &d0(), "/q/r"), Err(XsError::ENOENT));
        assert_eq!(rm(&mut s, &d0(), "/"), Err(XsError::EINVAL));
    }

    #[test]
    fn mkdir_keeps_value() {
        let mut s = Store::new();
        let q = Quota::default();
        write(&mut s, &d0(), &q, "/a", b"v").unwrap();
        assert!(mkdir(&mut s, &d0(), &q, "/a").unwrap().is_empty());
        assert_eq!(read(&mut s, &d0(), "/a").unwrap(), b"v");
        assert_eq!(mkdir(&mut s, &d0(), &q, "/m/n").unwrap().len(), 1);
    }

    #[test]
    fn permissions_enforced() {
        let mut s = Store::new();
        let q = Quota::default();
        let g = Caller::domain(5);
        write(&mut s, &d0(), &q, "/local/domain/5", b"").unwrap();
        set_perms(
            &mut s,
            &d0(),
            "/local/domain/5",
            Perms::parse_csv("b5").unwrap(),
        )
        .unwrap();
        write(&mut s, &g, &q, "/local/domain/5/x", b"1").unwrap();
        assert_eq!(
            get_perms(&mut s, &g, "/local/domain/5/x").unwrap().owner(),
            5
        );
        assert_eq!(write(&mut s, &g, &q, "/secret", b"1"), Err(XsError::EACCES));
        write(&mut s, &d0(), &q, "/secret", b"1").unwrap();
        assert_eq!(read(&mut s, &g, "/secret"), Err(XsError::EACCES));
        set_perms(&mut s, &d0(), "/secret", Perms::parse_csv("n0,r5").unwrap()).unwrap();
        assert_eq!(read(&mut s, &g, "/secret").unwrap(), b"1");
        assert_eq!(write(&mut s, &g, &q, "/secret", b"2"), Err(XsError::EACCES));
        // guest may not give away its node, nor change others'
        let p = Perms::parse_csv("b7").unwrap();
        assert_eq!(
            set_perms(&mut s, &g, "/local/domain/5/x", p.clone()),
            Err(XsError::EPERM)
        );
        assert_eq!(set_perms(&mut s, &g, "/secret", p), Err(XsError::EACCES));
        set_perms(
            &mut s,
            &g,
            "/local/domain/5/x",
            Perms::parse_csv("n5,r3").unwrap(),
        )
        .unwrap();
        // a guest with write on an ancestor may remove; without, not
        assert_eq!(rm(&mut s, &g, "/secret"), Err(XsError::EACCES));
    }

    #[test]
    fn node_and_entry_quota() {
        let mut s = Store::new();
        let q = Quota {
            max_nodes: 5,
            max_entry_size: 10,
            ..Quota::default()
        };
        let g = Caller::domain(5);
        write(&mut s, &d0(), &q, "/local/domain/5", b"").unwrap();
        set_perms(
            &mut s,
            &d0(),
            "/local/domain/5",
            Perms::parse_csv("b0,b5").unwrap(),
        )
        .unwrap();
        for i in 0..5 {
            write(&mut s, &g, &q, &format!("/local/domain/5/n{i}"), b"x").unwrap();
        }
        assert_eq!(
            write(&mut s, &g, &q, "/local/domain/5/n9", b"x"),
            Err(XsError::EQUOTA)
        );
        assert_eq!(
            write(&mut s, &g, &q, "/local/domain/5/n0", &[0; 11]),
            Err(XsError::ENOSPC)
        );
        rm(&mut s, &g, "/local/domain/5/n0").unwrap();
        write(&mut s, &g, &q, "/local/domain/5/n9", b"x").unwrap();
        assert_eq!(s.owned(5), 5);
    }

    #[test]
    fn directory_part_paging() {
        let mut s = Store::new();
        let q = Quota::default();
        let mut names = Vec::new();
        for i in 0..600 {
            let n = format!("child-with-a-long-name-{i:04}");
            write(&mut s, &d0(), &q, &format!("/big/{n}"), b"").unwrap();
            names.push(n);
        }
        assert_eq!(directory(&mut s, &d0(), "/big"), Err(XsError::E2BIG));
        let mut got: Vec<String> = Vec::new();
        let mut offset = 0;
        let mut gen = None;
        loop {
            let r = directory_part(&mut s, &d0(), "/big", offset).unwrap();
            assert!(r.len() <= XENSTORE_PAYLOAD_MAX);
            let mut parts = r.split(|&b| b == 0);
            let g = parts.next().unwrap().to_vec();
            assert!(gen.get_or_insert(g.clone()) == &g);
            let body = &r[g.len() + 1..];
            let done = body.ends_with(b"\0\0") || body == b"\0";
            for n in body.split(|&b| b == 0).filter(|n| !n.is_empty()) {
                offset += n.len() + 1;
                got.push(String::from_utf8(n.to_vec()).unwrap());
            }
            if done {
                break;
            }
        }
        assert_eq!(got, names);
        assert_eq!(
            directory_part(&mut s, &d0(), "/big", 3),
            Err(XsError::EINVAL)
        );
        assert_eq!(
            directory_part(&mut s, &d0(), "/big", 1 << 30),
            Err(XsError::EINVAL)
        );
    }
}
