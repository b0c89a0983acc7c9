//! The protocol engine: connections, request dispatch, watches, domains.
//!
//! [`Engine`] does no I/O. Transports feed it whole [`Message`]s and collect
//! the bytes queued for each connection, so the same engine serves Unix
//! socket clients, shared-ring domains and unit tests.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::path::{self, domain_path};
use crate::perms::{Caller, Perms};
use crate::quota::Quota;
use crate::store::{self, Change, Store, Tree};
use crate::transaction::Transaction;
use crate::watch::{Watch, INTRODUCE_DOMAIN, RELEASE_DOMAIN};
use crate::wire::{split_all, split_strings, Message, MsgType, XsError};

/// Connection handle.
pub type ConnId = u64;

/// A domain known to the daemon (INTRODUCEd).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    pub domid: u32,
    pub mfn: i64,
    pub evtchn: u32,
    pub target: Option<u32>,
    pub shutdown: bool,
    pub conn: Option<ConnId>,
}

/// Requests for the transport layer (map/unmap a domain's ring).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvent {
    Introduced { domid: u32, mfn: i64, evtchn: u32 },
    Released { domid: u32 },
}

#[derive(Debug, Default)]
struct Conn {
    domid: u32,
    watches: Vec<Watch>,
    txs: HashMap<u32, Transaction>,
    out: VecDeque<u8>,
    pending_events: usize,
    closing: bool,
}

/// Counters for diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub requests: u64,
    pub errors: u64,
    pub events: u64,
    pub dropped_events: u64,
    pub commits: u64,
    pub conflicts: u64,
}

/// The daemon state.
#[derive(Debug)]
pub struct Engine {
    store: Store,
    conns: BTreeMap<ConnId, Conn>,
    domains: BTreeMap<u32, Domain>,
    quota: Quota,
    next_conn: ConnId,
    next_tx: u32,
    log: bool,
    domain_events: Vec<DomainEvent>,
    pub stats: Stats,
}

impl Default for Engine {
    fn default() -> Engine {
        Engine::new(Store::new(), Quota::default())
    }
}

const OK: &[u8] = b"OK\0";

fn parse_domid(b: &[u8]) -> Result<u32, XsError> {
    if b.is_empty() || b.len() > 5 || !b.iter().all(u8::is_ascii_digit) {
        return Err(XsError::EINVAL);
    }
    let v: u32 = std::str::from_utf8(b)
        .map_err(|_| XsError::EINVAL)?
        .parse()
        .map_err(|_| XsError::EINVAL)?;
    if v > 0xffff {
        return Err(XsError::EINVAL);
    }
    Ok(v)
}

fn parse_num<T: std::str::FromStr>(b: &[u8]) -> Result<T, XsError> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(XsError::EINVAL)
}

impl Engine {
    pub fn new(store: Store, quota: Quota) -> Engine {
        Engine {
            store,
            conns: BTreeMap::new(),
            domains: BTreeMap::new(),
            quota,
            next_conn: 1,
            next_tx: 1,
            log: false,
            domain_events: Vec::new(),
            stats: Stats::default(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    pub fn set_logging(&mut self, on: bool) {
        self.log = on;
    }

    /// Registers a connection acting as `domid` (0 = privileged).
    pub fn add_connection(&mut self, domid: u32) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            id,
            Conn {
                domid,
                ..Default::default()
            },
        );
        if let Some(d) = self.domains.get_mut(&domid) {
            if domid != 0 {
                d.conn = Some(id);
            }
        }
        id
    }

    /// Drops a connection: its transactions are discarded (nothing
    /// committed is lost) and its watches removed.
    pub fn remove_connection(&mut self, id: ConnId) {
        if let Some(c) = self.conns.remove(&id) {
            if let Some(d) = self.domains.get_mut(&c.domid) {
                if d.conn == Some(id) {
                    d.conn = None;
                }
            }
        }
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Open transactions of a connection.
    pub fn transactions(&self, id: ConnId) -> usize {
        self.conns.get(&id).map_or(0, |c| c.txs.len())
    }

    /// Watches of a connection.
    pub fn watches(&self, id: ConnId) -> usize {
        self.conns.get(&id).map_or(0, |c| c.watches.len())
    }

    pub fn domain(&self, domid: u32) -> Option<&Domain> {
        self.domains.get(&domid)
    }

    /// True if the connection should be closed once its output is flushed
    /// (e.g. its domain was released).
    pub fn is_closing(&self, id: ConnId) -> bool {
        self.conns.get(&id).is_none_or(|c| c.closing)
    }

    pub fn has_output(&self, id: ConnId) -> bool {
        self.conns.get(&id).is_some_and(|c| !c.out.is_empty())
    }

    /// Bytes queued for a connection.
    pub fn pending_output(&self, id: ConnId) -> usize {
        self.conns.get(&id).map_or(0, |c| c.out.len())
    }

    /// Takes up to `max` queued bytes for a connection.
    pub fn take_output(&mut self, id: ConnId, max: usize) -> Vec<u8> {
        let Some(c) = self.conns.get_mut(&id) else {
            return Vec::new();
        };
        let n = max.min(c.out.len());
        let v: Vec<u8> = c.out.drain(..n).collect();
        if c.out.is_empty() {
            c.pending_events = 0;
        }
        v
    }

    /// Returns bytes that a transport could not send back to the front.
    pub fn unread_output(&mut self, id: ConnId, bytes: &[u8]) {
        if let Some(c) = self.conns.get_mut(&id) {
            for &b in bytes.iter().rev() {
                c.out.push_front(b);
            }
        }
    }

    pub fn take_domain_events(&mut self) -> Vec<DomainEvent> {
        std::mem::take(&mut self.domain_events)
    }

    fn caller(&self, id: ConnId) -> Caller {
        let domid = self.conns.get(&id).map_or(u32::MAX, |c| c.domid);
        let target = self.domains.get(&domid).and_then(|d| d.target);
        Caller {
            domid,
            privileged: domid == 0,
            target,
        }
    }

    fn queue(&mut self, id: ConnId, msg: Message) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.out.extend(msg.to_bytes());
        }
    }

    fn logf(&self, args: std::fmt::Arguments<'_>) {
        if self.log {
            eprintln!("keel-xenstored: {args}");
        }
    }

    /// Handles one request from connection `id`, queueing the reply (and
    /// any watch events it triggers).
    pub fn handle(&mut self, id: ConnId, msg: Message) {
        if !self.conns.contains_key(&id) {
            return;
        }
        self.stats.requests += 1;
        let h = msg.header;
        let result = match MsgType::from_u32(h.ty) {
            None => Err(XsError::ENOSYS),
            Some(ty) => self
                .dispatch(id, ty, h.tx_id, &msg.payload)
                .map(|r| (ty, r)),
        };
        match result {
            Ok((ty, (reply, after))) => {
                self.queue(id, Message::new(ty, h.req_id, h.tx_id, reply));
                if let Some(ev) = after {
                    self.queue(id, Message::new(MsgType::WatchEvent, 0, 0, ev));
                }
            }
            Err(e) => {
                self.stats.errors += 1;
                self.logf(format_args!("conn {id}: type {} -> {e}", h.ty));
                let mut p = e.as_str().as_bytes().to_vec();
                p.push(0);
                self.queue(id, Message::new(MsgType::Error, h.req_id, h.tx_id, p));
            }
        }
    }

    /// Runs a tree operation on the store or inside transaction `tx_id`.
    fn run<R>(
        &mut self,
        id: ConnId,
        tx_id: u32,
        f: impl FnOnce(&mut dyn Tree, &Caller, &Quota) -> Result<(R, Vec<Change>), XsError>,
    ) -> Result<R, XsError> {
        let caller = self.caller(id);
        if tx_id == 0 {
            let (r, changes) = f(&mut self.store, &caller, &self.quota)?;
            self.fire(&changes);
            return Ok(r);
        }
        let conn = self.conns.get_mut(&id).ok_or(XsError::EINVAL)?;
        let tx = conn.txs.get_mut(&tx_id).ok_or(XsError::ENOENT)?;
        let (r, changes) = f(&mut tx.view(&self.store), &caller, &self.quota)?;
        tx.record(changes);
        Ok(r)
    }

    fn path_arg(&self, id: ConnId, raw: &[u8]) -> Result<String, XsError> {
        Ok(path::resolve(raw, self.caller(id).domid)?.0)
    }

    fn one_path(&self, id: ConnId, payload: &[u8]) -> Result<String, XsError> {
        let a = split_strings(payload, 1).ok_or(XsError::EINVAL)?;
        self.path_arg(id, a[0])
    }

    fn require_priv(&self, id: ConnId) -> Result<(), XsError> {
        if self.caller(id).privileged {
            Ok(())
        } else {
            Err(XsError::EACCES)
        }
    }

    /// Returns the reply payload and optionally a watch event payload to
    /// send right after the reply.
    #[allow(clippy::type_complexity)]
    fn dispatch(
        &mut self,
        id: ConnId,
        ty: MsgType,
        tx_id: u32,
        p: &[u8],
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), XsError> {
        use MsgType::*;
        let ok = || Ok((OK.to_vec(), None));
        match ty {
            Read => {
                let path = self.one_path(id, p)?;
                let v = self.run(id, tx_id, |t, c, _| Ok((store::read(t, c, &path)?, vec![])))?;
                Ok((v, None))
            }
            Write => {
                let nul = p.iter().position(|&b| b == 0).ok_or(XsError::EINVAL)?;
                let path = self.path_arg(id, &p[..nul])?;
                let value = &p[nul + 1..];
                self.run(id, tx_id, |t, c, q| {
                    Ok(((), store::write(t, c, q, &path, value)?))
                })?;
                ok()
            }
            Mkdir => {
                let path = self.one_path(id, p)?;
                self.run(id, tx_id, |t, c, q| Ok(((), store::mkdir(t, c, q, &path)?)))?;
                ok()
            }
            Rm => {
                let path = self.one_path(id, p)?;
                self.run(id, tx_id, |t, c, _| Ok(((), store::rm(t, c, &path)?)))?;
                ok()
            }
            Directory => {
                let path = self.one_path(id, p)?;
                let v = self.run(id, tx_id, |t, c, _| {
                    Ok((store::directory(t, c, &path)?, vec![]))
                })?;
                Ok((v, None))
            }
            DirectoryPart => {
                let a = split_strings(p, 2).ok_or(XsError::EINVAL)?;
                let path = self.path_arg(id, a[0])?;
                let off: usize = parse_num(a[1])?;
                let v = self.run(id, tx_id, |t, c, _| {
                    Ok((store::directory_part(t, c, &path, off)?, vec![]))
                })?;
                Ok((v, None))
            }
            GetPerms => {
                let path = self.one_path(id, p)?;
                let v = self.run(id, tx_id, |t, c, _| {
                    Ok((store::get_perms(t, c, &path)?, vec![]))
                })?;
                Ok((v.to_payload(), None))
            }
            SetPerms => {
                let a = split_all(p).ok_or(XsError::EINVAL)?;
                if a.len() < 2 {
                    return Err(XsError::EINVAL);
                }
                let path = self.path_arg(id, a[0])?;
                let perms = Perms::parse(&a[1..])?;
                self.run(id, tx_id, |t, c, _| {
                    Ok(((), store::set_perms(t, c, &path, perms)?))
                })?;
                ok()
            }
            Watch => {
                // "<path>\0<token>\0", possibly followed by reserved strings.
                let a = split_all(p).ok_or(XsError::EINVAL)?;
                if a.len() < 2 {
                    return Err(XsError::EINVAL);
                }
                let caller = self.caller(id);
                let (abs, relative) = path::resolve_watch(a[0], caller.domid)?;
                let w = crate::watch::Watch {
                    path: abs,
                    token: a[1].to_vec(),
                    relative,
                };
                let limit = self.quota.watches(caller.privileged);
                let conn = self.conns.get_mut(&id).ok_or(XsError::EINVAL)?;
                if conn
                    .watches
                    .iter()
                    .any(|x| x.path == w.path && x.token == w.token)
                {
                    return Err(XsError::EEXIST);
                }
                if conn.watches.len() >= limit {
                    return Err(XsError::EQUOTA);
                }
                // The initial event reports the path as given.
                let mut ev = a[0].to_vec();
                ev.push(0);
                ev.extend_from_slice(a[1]);
                ev.push(0);
                conn.watches.push(w);
                self.stats.events += 1;
                Ok((OK.to_vec(), Some(ev)))
            }
            Unwatch => {
                let a = split_all(p).ok_or(XsError::EINVAL)?;
                if a.len() < 2 {
                    return Err(XsError::EINVAL);
                }
                let (abs, _) = path::resolve_watch(a[0], self.caller(id).domid)?;
                let conn = self.conns.get_mut(&id).ok_or(XsError::EINVAL)?;
                let before = conn.watches.len();
                conn.watches.retain(|x| !(x.path == abs && x.token == a[1]));
                if conn.watches.len() == before {
                    return Err(XsError::ENOENT);
                }
                ok()
            }
            ResetWatches => {
                let conn = self.conns.get_mut(&id).ok_or(XsError::EINVAL)?;
                conn.watches.clear();
                conn.txs.clear();
                ok()
            }
            TransactionStart => {
                if tx_id != 0 {
                    return Err(XsError::EBUSY);
                }
                let limit = self.quota.transactions(self.caller(id).privileged);
                let conn = self.conns.get(&id).ok_or(XsError::EINVAL)?;
                if conn.txs.len() >= limit {
                    return Err(XsError::EQUOTA);
                }
                let mut t = self.next_tx;
                while t == 0 || conn.txs.contains_key(&t) {
                    t = t.wrapping_add(1);
                }
                self.next_tx = t.wrapping_add(1);
                let conn = self.conns.get_mut(&id).ok_or(XsError::EINVAL)?;
                conn.txs.insert(t, Transaction::new(t));
                Ok((format!("{t}\0").into_bytes(), None))
            }
            TransactionEnd => {
                let a = split_strings(p, 1).ok_or(XsError::EINVAL)?;
                let commit = match a[0] {
                    b"T" => true,
                    b"F" => false,
                    _ => return Err(XsError::EINVAL),
                };
                let conn = self.conns.get_mut(&id).ok_or(XsError::EINVAL)?;
                let tx = conn.txs.remove(&tx_id).ok_or(XsError::ENOENT)?;
                if commit {
                    match tx.commit(&mut self.store) {
                        Ok(changes) => {
                            self.stats.commits += 1;
                            self.fire(&changes);
                        }
                        Err(e) => {
                            self.stats.conflicts += 1;
                            return Err(e);
                        }
                    }
                }
                ok()
            }
            GetDomainPath => {
                let a = split_strings(p, 1).ok_or(XsError::EINVAL)?;
                let d = parse_domid(a[0])?;
                Ok((format!("{}\0", domain_path(d)).into_bytes(), None))
            }
            IsDomainIntroduced => {
                self.require_priv(id)?;
                let a = split_strings(p, 1).ok_or(XsError::EINVAL)?;
                let d = parse_domid(a[0])?;
                let yes = d == 0 || self.domains.contains_key(&d);
                Ok((
                    if yes {
                        b"T\0".to_vec()
                    } else {
                        b"F\0".to_vec()
                    },
                    None,
                ))
            }
            Introduce => {
                self.require_priv(id)?;
                let a = split_all(p).ok_or(XsError::EINVAL)?;
                if a.len() < 3 {
                    return Err(XsError::EINVAL);
                }
                let domid = parse_domid(a[0])?;
                let mfn: i64 = parse_num(a[1])?;
                let evtchn: u32 = parse_num(a[2])?;
                if domid == 0 {
                    return Err(XsError::EINVAL);
                }
                if let Some(d) = self.domains.get_mut(&domid) {
                    // Re-introduction rebinds the event channel.
                    d.mfn = mfn;
                    d.evtchn = evtchn;
                } else {
                    self.domains.insert(
                        domid,
                        Domain {
                            domid,
                            mfn,
                            evtchn,
                            target: None,
                            shutdown: false,
                            conn: None,
                        },
                    );
                    self.fire_special(INTRODUCE_DOMAIN);
                }
                self.domain_events
                    .push(DomainEvent::Introduced { domid, mfn, evtchn });
                ok()
            }
            Release => {
                self.require_priv(id)?;
                let a = split_strings(p, 1).ok_or(XsError::EINVAL)?;
                let domid = parse_domid(a[0])?;
                if domid == 0 {
                    return Err(XsError::EINVAL);
                }
                self.release_domain(domid)?;
                ok()
            }
            Resume => {
                self.require_priv(id)?;
                let a = split_strings(p, 1).ok_or(XsError::EINVAL)?;
                let domid = parse_domid(a[0])?;
                let d = self.domains.get_mut(&domid).ok_or(XsError::ENOENT)?;
                d.shutdown = false;
                ok()
            }
            SetTarget => {
                self.require_priv(id)?;
                let a = split_strings(p, 2).ok_or(XsError::EINVAL)?;
                let domid = parse_domid(a[0])?;
                let target = parse_domid(a[1])?;
                let d = self.domains.get_mut(&domid).ok_or(XsError::ENOENT)?;
                d.target = Some(target);
                ok()
            }
            Control => {
                self.require_priv(id)?;
                let a = split_all(p).ok_or(XsError::EINVAL)?;
                self.control(&a).map(|r| (r, None))
            }
            WatchEvent | Error => Err(XsError::EINVAL),
        }
    }

    fn control(&mut self, a: &[&[u8]]) -> Result<Vec<u8>, XsError> {
        let arg = |i: usize| a.get(i).map(|s| String::from_utf8_lossy(s).into_owned());
        match a[0] {
            b"print" => {
                eprintln!("keel-xenstored: {}", arg(1).unwrap_or_default());
                Ok(OK.to_vec())
            }
            b"log" => match a.get(1).copied() {
                Some(b"on") => {
                    self.log = true;
                    Ok(OK.to_vec())
                }
                Some(b"off") => {
                    self.log = false;
                    Ok(OK.to_vec())
                }
                _ => Err(XsError::EINVAL),
            },
            b"check" => {
                self.check()?;
                Ok(OK.to_vec())
            }
            b"help" => Ok(b"check\nhelp\nlog on|off\nprint <string>\n\0".to_vec()),
            _ => Err(XsError::EINVAL),
        }
    }

    /// Consistency check of the tree (CONTROL check).
    pub fn check(&self) -> Result<(), XsError> {
        let walked = self.store.walk();
        if walked.len() != self.store.len() {
            return Err(XsError::EIO);
        }
        Ok(())
    }

    /// Forgets introduced domain `domid` (RELEASE, or the domain died):
    /// its connection is closed without sending what was still queued for
    /// it (nobody will read it; the server then drops the transport,
    /// which unmaps the ring), its transactions and watches go, the
    /// transport layer is told ([`DomainEvent::Released`]) and
    /// `@releaseDomain` fires. ENOENT if it was not introduced.
    pub fn release_domain(&mut self, domid: u32) -> Result<(), XsError> {
        let d = self.domains.remove(&domid).ok_or(XsError::ENOENT)?;
        if let Some(c) = d.conn.and_then(|c| self.conns.get_mut(&c)) {
            c.closing = true;
            c.txs.clear();
            c.watches.clear();
            c.out.clear();
            c.pending_events = 0;
        }
        self.domain_events.push(DomainEvent::Released { domid });
        self.fire_special(RELEASE_DOMAIN);
        Ok(())
    }

    /// The introduced domains' ids, in order.
    pub fn domain_ids(&self) -> Vec<u32> {
        self.domains.keys().copied().collect()
    }

    /// Records that introduced domain `domid` has shut down. True if
    /// that is news (it was not marked yet; RESUME clears the mark), so
    /// the caller fires `@releaseDomain` once per shutdown.
    pub fn mark_shutdown(&mut self, domid: u32) -> bool {
        match self.domains.get_mut(&domid) {
            Some(d) if !d.shutdown => {
                d.shutdown = true;
                true
            }
            _ => false,
        }
    }

    /// Fires `@releaseDomain` watches (a domain shut down: the toolstack
    /// looks at every domain's state again).
    pub fn fire_release_domain(&mut self) {
        self.fire_special(RELEASE_DOMAIN);
    }

    fn fire_special(&mut self, name: &str) {
        let ch = Change {
            path: name.to_string(),
            perms: Perms::owned_by(0),
            removed: false,
        };
        self.fire(std::slice::from_ref(&ch));
    }

    /// Queues WATCH_EVENTs for every matching watch.
    fn fire(&mut self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        let max_pending = self.quota.max_pending_events;
        let targets: HashMap<u32, Option<u32>> =
            self.domains.iter().map(|(k, d)| (*k, d.target)).collect();
        let mut stats = self.stats;
        for conn in self.conns.values_mut() {
            if conn.closing {
                continue;
            }
            let caller = Caller {
                domid: conn.domid,
                privileged: conn.domid == 0,
                target: targets.get(&conn.domid).copied().flatten(),
            };
            for ch in changes {
                let special = ch.path.starts_with('@');
                if !special && !ch.perms.access(&caller).read {
                    continue;
                }
                for w in &conn.watches {
                    if let Some(ev) = w.matches(ch) {
                        if !caller.privileged && conn.pending_events >= max_pending {
                            stats.dropped_events += 1;
                            continue;
                        }
                        let payload = w.event_payload(&ev, conn.domid);
                        conn.out
                            .extend(Message::new(MsgType::WatchEvent, 0, 0, payload).to_bytes());
                        conn.pending_events += 1;
                        stats.events += 1;
                    }
                }
            }
        }
        self.stats = stats;
    }
}

#[cfg(test)]
#[allow(clippy::octal_escapes)] // "\0" followed by digits is intended
pub(crate) mod tests {
    use super::*;
    use crate::wire::{FrameDecoder, Header};

    /// Sends one request, returns all queued messages.
    pub fn req(
        core: &mut Engine,
        id: ConnId,
        ty: MsgType,
        tx: u32,
        payload: &[u8],
    ) -> Vec<Message> {
        core.handle(id, Message::new(ty, 7, tx, payload.to_vec()));
        drain(core, id)
    }

    pub fn drain(core: &mut Engine, id: ConnId) -> Vec<Message> {
        let bytes = core.take_output(id, usize::MAX);
        FrameDecoder::new().push(&bytes).unwrap()
    }

    /// The reply among the queued messages (watch events may precede it).
    fn reply(m: &[Message]) -> &Message {
        m.iter()
            .find(|m| m.header.ty != MsgType::WatchEvent as u32)
            .expect("a reply")
    }

    fn ok(m: &[Message]) -> &[u8] {
        let r = reply(m);
        assert_ne!(
            r.header.ty,
            MsgType::Error as u32,
            "error {:?}",
            String::from_utf8_lossy(&r.payload)
        );
        &r.payload
    }

    fn err(m: &[Message]) -> XsError {
        let r = reply(m);
        assert_eq!(r.header.ty, MsgType::Error as u32);
        XsError::parse(&r.payload).unwrap()
    }

    #[test]
    fn basic_ops_and_reply_headers() {
        let mut c = Engine::default();
        let id = c.add_connection(0);
        let r = req(&mut c, id, MsgType::Write, 0, b"/a/b\0hello");
        assert_eq!(
            r[0].header,
            Header {
                ty: MsgType::Write as u32,
                req_id: 7,
                tx_id: 0,
                len: 3
            }
        );
        assert_eq!(ok(&r), b"OK\0");
        assert_eq!(ok(&req(&mut c, id, MsgType::Read, 0, b"/a/b\0")), b"hello");
        assert_eq!(ok(&req(&mut c, id, MsgType::Directory, 0, b"/a\0")), b"b\0");
        assert_eq!(
            ok(&req(&mut c, id, MsgType::GetPerms, 0, b"/a/b\0")),
            b"n0\0"
        );
        assert_eq!(
            ok(&req(&mut c, id, MsgType::SetPerms, 0, b"/a/b\0b1\0r2\0")),
            b"OK\0"
        );
        assert_eq!(
            ok(&req(&mut c, id, MsgType::GetPerms, 0, b"/a/b\0")),
            b"b1\0r2\0"
        );
        assert_eq!(ok(&req(&mut c, id, MsgType::Mkdir, 0, b"/m\0")), b"OK\0");
        assert_eq!(ok(&req(&mut c, id, MsgType::Rm, 0, b"/a\0")), b"OK\0");
        assert_eq!(
            err(&req(&mut c, id, MsgType::Read, 0, b"/a/b\0")),
            XsError::ENOENT
        );
        let r = req(&mut c, id, MsgType::DirectoryPart, 0, b"/\0000\0");
        assert!(ok(&r).ends_with(b"\0\0"));
        assert_eq!(
            ok(&req(&mut c, id, MsgType::GetDomainPath, 0, b"5\0")),
            b"/local/domain/5\0"
        );
        // relative path for dom0
        req(&mut c, id, MsgType::Write, 0, b"rel\0x");
        assert_eq!(
            ok(&req(&mut c, id, MsgType::Read, 0, b"/local/domain/0/rel\0")),
            b"x"
        );
    }

    #[test]
    fn malformed_requests() {
        let mut c = Engine::default();
        let id = c.add_connection(0);
        let e = |c: &mut Engine, ty, p: &[u8]| err(&req(c, id, ty, 0, p));
        assert_eq!(e(&mut c, MsgType::Read, b"/a"), XsError::EINVAL); // no nul
        assert_eq!(e(&mut c, MsgType::Read, b"/a\0/b\0"), XsError::EINVAL);
        assert_eq!(e(&mut c, MsgType::Read, b"/a//b\0"), XsError::EINVAL);
        assert_eq!(e(&mut c, MsgType::Read, b"/\xc3\x28\0"), XsError::EINVAL);
        assert_eq!(e(&mut c, MsgType::Write, b"/novalue"), XsError::EINVAL);
        assert_eq!(e(&mut c, MsgType::SetPerms, b"/\0"), XsError::EINVAL);
        assert_eq!(e(&mut c, MsgType::SetPerms, b"/\0z1\0"), XsError::EINVAL);
        assert_eq!(e(&mut c, MsgType::WatchEvent, b"/\0t\0"), XsError::EINVAL);
        assert_eq!(
            e(&mut c, MsgType::DirectoryPart, b"/\0x\0"),
            XsError::EINVAL
        );
        assert_eq!(e(&mut c, MsgType::GetDomainPath, b"abc\0"), XsError::EINVAL);
        assert_eq!(e(&mut c, MsgType::TransactionEnd, b"X\0"), XsError::EINVAL);
        assert_eq!(
            e(&mut c, MsgType::Control, b"frobnicate\0"),
            XsError::EINVAL
        );
        assert_eq!(
            ok(&req(
                &mut c,
                id,
                MsgType::Control,
                0,
                b"print\0hello from test\0"
            )),
            b"OK\0"
        );
        c.handle(
            id,
            Message {
                header: Header {
                    ty: 20,
                    req_id: 1,
                    tx_id: 0,
                    len: 0,
                },
                payload: vec![],
            },
        );
        assert_eq!(err(&drain(&mut c, id)), XsError::ENOSYS);
        c.handle(
            id,
            Message {
                header: Header {
                    ty: 9999,
                    req_id: 1,
                    tx_id: 0,
                    len: 0,
                },
                payload: vec![],
            },
        );
        assert_eq!(err(&drain(&mut c, id)), XsError::ENOSYS);
        // unknown transaction id
        assert_eq!(
            err(&req(&mut c, id, MsgType::Read, 42, b"/\0")),
            XsError::ENOENT
        );
    }

    #[test]
    fn watches_fire() {
        let mut c = Engine::default();
        let a = c.add_connection(0);
        let b = c.add_connection(0);
        let r = req(&mut c, a, MsgType::Watch, 0, b"/w\0tok\0");
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].header.ty, MsgType::WatchEvent as u32);
        assert_eq!(r[1].payload, b"/w\0tok\0");
        assert_eq!(
            err(&req(&mut c, a, MsgType::Watch, 0, b"/w\0tok\0")),
            XsError::EEXIST
        );
        req(&mut c, b, MsgType::Write, 0, b"/w/x/y\0v");
        let ev = drain(&mut c, a);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].payload, b"/w/x/y\0tok\0");
        assert_eq!((ev[0].header.req_id, ev[0].header.tx_id), (0, 0));
        req(&mut c, b, MsgType::Write, 0, b"/other\0v");
        assert!(drain(&mut c, a).is_empty());
        // recursive removal reports the watched path
        req(&mut c, a, MsgType::Watch, 0, b"/w/x/y/z\0deep\0");
        drain(&mut c, a);
        req(&mut c, b, MsgType::Rm, 0, b"/w\0");
        let ev = drain(&mut c, a);
        let payloads: Vec<_> = ev.iter().map(|m| m.payload.clone()).collect();
        assert!(payloads.contains(&b"/w\0tok\0".to_vec()));
        assert!(payloads.contains(&b"/w/x/y/z\0deep\0".to_vec()));
        assert_eq!(
            ok(&req(&mut c, a, MsgType::Unwatch, 0, b"/w\0tok\0")),
            b"OK\0"
        );
        assert_eq!(
            err(&req(&mut c, a, MsgType::Unwatch, 0, b"/w\0tok\0")),
            XsError::ENOENT
        );
        assert_eq!(
            ok(&req(&mut c, a, MsgType::ResetWatches, 0, b"\0")),
            b"OK\0"
        );
        assert_eq!(c.watches(a), 0);
    }

    #[test]
    fn transactions_via_protocol() {
        let mut c = Engine::default();
        let a = c.add_connection(0);
        let b = c.add_connection(0);
        req(&mut c, a, MsgType::Watch, 0, b"/t\0w\0");
        drain(&mut c, a);
        let r = req(&mut c, a, MsgType::TransactionStart, 0, b"\0");
        let txs = String::from_utf8(ok(&r).to_vec()).unwrap();
        let tx: u32 = txs.trim_end_matches('\0').parse().unwrap();
        assert_ne!(tx, 0);
        assert_eq!(
            err(&req(&mut c, a, MsgType::TransactionStart, tx, b"\0")),
            XsError::EBUSY
        );
        let r = req(&mut c, a, MsgType::Write, tx, b"/t/x\0in-tx");
        assert_eq!(r[0].header.tx_id, tx);
        assert_eq!(r.len(), 1, "no event before commit");
        assert_eq!(
            err(&req(&mut c, b, MsgType::Read, 0, b"/t/x\0")),
            XsError::ENOENT
        );
        let r = req(&mut c, a, MsgType::TransactionEnd, tx, b"T\0");
        assert_eq!(ok(&r), b"OK\0");
        assert!(r
            .iter()
            .any(|m| m.header.ty == MsgType::WatchEvent as u32 && m.payload == b"/t/x\0w\0"));
        assert_eq!(ok(&req(&mut c, b, MsgType::Read, 0, b"/t/x\0")), b"in-tx");
        // conflict
        let tx = ok(&req(&mut c, a, MsgType::TransactionStart, 0, b"\0")).to_vec();
        let tx: u32 = String::from_utf8(tx)
            .unwrap()
            .trim_end_matches('\0')
            .parse()
            .unwrap();
        req(&mut c, a, MsgType::Read, tx, b"/t/x\0");
        req(&mut c, a, MsgType::Write, tx, b"/t/x\0mine");
        req(&mut c, b, MsgType::Write, 0, b"/t/x\0theirs");
        assert_eq!(
            err(&req(&mut c, a, MsgType::TransactionEnd, tx, b"T\0")),
            XsError::EAGAIN
        );
        assert_eq!(ok(&req(&mut c, b, MsgType::Read, 0, b"/t/x\0")), b"theirs");
        assert_eq!(c.transactions(a), 0);
        assert_eq!(
            err(&req(&mut c, a, MsgType::TransactionEnd, tx, b"T\0")),
            XsError::ENOENT
        );
    }

    #[test]
    fn disconnect_mid_transaction_keeps_committed_data() {
        let mut c = Engine::default();
        let a = c.add_connection(0);
        req(&mut c, a, MsgType::Write, 0, b"/keep\01");
        let tx = ok(&req(&mut c, a, MsgType::TransactionStart, 0, b"\0")).to_vec();
        let tx: u32 = String::from_utf8(tx)
            .unwrap()
            .trim_end_matches('\0')
            .parse()
            .unwrap();
        req(&mut c, a, MsgType::Write, tx, b"/keep\0lost");
        req(&mut c, a, MsgType::Write, tx, b"/gone\0lost");
        c.remove_connection(a);
        let b = c.add_connection(0);
        assert_eq!(ok(&req(&mut c, b, MsgType::Read, 0, b"/keep\0")), b"1");
        assert_eq!(
            err(&req(&mut c, b, MsgType::Read, 0, b"/gone\0")),
            XsError::ENOENT
        );
    }

    #[test]
    fn domains_and_special_watches() {
        let mut c = Engine::default();
        let a = c.add_connection(0);
        req(&mut c, a, MsgType::Watch, 0, b"@introduceDomain\0i\0");
        req(&mut c, a, MsgType::Watch, 0, b"@releaseDomain\0r\0");
        drain(&mut c, a);
        assert_eq!(
            ok(&req(&mut c, a, MsgType::IsDomainIntroduced, 0, b"3\0")),
            b"F\0"
        );
        let r = req(&mut c, a, MsgType::Introduce, 0, b"3\0-12345\0017\0");
        assert_eq!(ok(&r), b"OK\0");
        assert_eq!(r[0].payload, b"@introduceDomain\0i\0");
        assert_eq!(
            c.take_domain_events(),
            vec![DomainEvent::Introduced {
                domid: 3,
                mfn: -12345,
                evtchn: 17
            }]
        );
        assert_eq!(
            ok(&req(&mut c, a, MsgType::IsDomainIntroduced, 0, b"3\0")),
            b"T\0"
        );
        assert_eq!(
            ok(&req(&mut c, a, MsgType::IsDomainIntroduced, 0, b"0\0")),
            b"T\0"
        );
        assert_eq!(ok(&req(&mut c, a, MsgType::Resume, 0, b"3\0")), b"OK\0");
        assert_eq!(
            err(&req(&mut c, a, MsgType::Resume, 0, b"4\0")),
            XsError::ENOENT
        );
        assert_eq!(
            ok(&req(&mut c, a, MsgType::SetTarget, 0, b"3\0005\0")),
            b"OK\0"
        );
        assert_eq!(c.domain(3).unwrap().target, Some(5));
        // the guest's own connection
        let g = c.add_connection(3);
        assert_eq!(
            err(&req(&mut c, g, MsgType::Introduce, 0, b"4\0001\0001\0")),
            XsError::EACCES
        );
        assert_eq!(
            err(&req(&mut c, g, MsgType::Control, 0, b"print\0x\0")),
            XsError::EACCES
        );
        // A reply the guest has not taken yet: RELEASE discards it.
        c.handle(g, Message::new(MsgType::Read, 1, 0, b"/\0".to_vec()));
        assert!(c.has_output(g));
        let r = req(&mut c, a, MsgType::Release, 0, b"3\0");
        assert_eq!(ok(&r), b"OK\0");
        assert_eq!(r[0].payload, b"@releaseDomain\0r\0");
        assert!(c.is_closing(g));
        assert!(
            !c.has_output(g),
            "a released domain's unsent output is dropped"
        );
        assert_eq!(
            err(&req(&mut c, a, MsgType::Release, 0, b"3\0")),
            XsError::ENOENT
        );
        assert_eq!(
            err(&req(&mut c, a, MsgType::Introduce, 0, b"0\0001\0001\0")),
            XsError::EINVAL
        );
    }

    #[test]
    fn guest_permissions_quota_and_relative_watch() {
        let mut c = Engine::new(
            Store::new(),
            Quota {
                max_watches: 2,
                max_transactions: 1,
                ..Quota::default()
            },
        );
        let a = c.add_connection(0);
        req(&mut c, a, MsgType::Introduce, 0, b"3\0001\0001\0");
        req(&mut c, a, MsgType::Mkdir, 0, b"/local/domain/3\0");
        req(&mut c, a, MsgType::SetPerms, 0, b"/local/domain/3\0n3\0");
        drain(&mut c, a);
        let g = c.add_connection(3);
        let r = req(&mut c, g, MsgType::Watch, 0, b"data\0t\0");
        assert_eq!(r[1].payload, b"data\0t\0");
        req(&mut c, g, MsgType::Watch, 0, b"other\0t\0");
        assert_eq!(
            err(&req(&mut c, g, MsgType::Watch, 0, b"third\0t\0")),
            XsError::EQUOTA
        );
        let r = req(&mut c, g, MsgType::Write, 0, b"data/x\0v");
        assert_eq!(ok(&r), b"OK\0");
        assert_eq!(r[0].payload, b"data/x\0t\0");
        assert_eq!(
            ok(&req(
                &mut c,
                a,
                MsgType::Read,
                0,
                b"/local/domain/3/data/x\0"
            )),
            b"v"
        );
        assert_eq!(
            err(&req(&mut c, g, MsgType::Read, 0, b"/local/domain\0")),
            XsError::EACCES
        );
        assert_eq!(
            err(&req(&mut c, g, MsgType::Write, 0, b"/local/x\0v")),
            XsError::EACCES
        );
        req(&mut c, g, MsgType::TransactionStart, 0, b"\0");
        assert_eq!(
            err(&req(&mut c, g, MsgType::TransactionStart, 0, b"\0")),
            XsError::EQUOTA
        );
        // guest can't see events on nodes it cannot read
        req(
            &mut c,
            a,
            MsgType::Write,
            0,
            b"/local/domain/3/data/secret\0s",
        );
        req(
            &mut c,
            a,
            MsgType::SetPerms,
            0,
            b"/local/domain/3/data/secret\0n0\0",
        );
        drain(&mut c, g);
        req(
            &mut c,
            a,
            MsgType::Write,
            0,
            b"/local/domain/3/data/secret\0t",
        );
        assert!(drain(&mut c, g).is_empty());
    }

    /// Randomized garbage straight into the engine, from a privileged and
    /// an unprivileged connection: no panics, replies always well-formed,
    /// tree stays consistent.
    #[test]
    fn randomized_garbage_requests() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut c = Engine::new(
            Store::new(),
            Quota {
                max_nodes: 50,
                ..Quota::default()
            },
        );
        let a = c.add_connection(0);
        req(&mut c, a, MsgType::Introduce, 0, b"9\0001\0001\0");
        req(&mut c, a, MsgType::Mkdir, 0, b"/local/domain/9\0");
        req(&mut c, a, MsgType::SetPerms, 0, b"/local/domain/9\0n9\0");
        let mut g = c.add_connection(9);
        let mut handled = 0;
        let words: [&[u8]; 12] = [
            b"/",
            b"a",
            b"/a",
            b"b",
            b"@releaseDomain",
            b"T",
            b"F",
            b"0",
            b"9",
            b"r9",
            b"b0",
            b"\xff",
        ];
        for i in 0..20000u32 {
            let conn = if rnd() % 2 == 0 { a } else { g };
            let ty = (rnd() % 26) as u32;
            let mut p = Vec::new();
            for _ in 0..rnd() % 5 {
                match rnd() % 4 {
                    0 => p.push((rnd() % 256) as u8),
                    _ => p.extend_from_slice(words[(rnd() % words.len() as u64) as usize]),
                }
                if rnd() % 3 != 0 {
                    p.push(0);
                }
            }
            let tx = if rnd() % 4 == 0 {
                (rnd() % 4) as u32
            } else {
                0
            };
            c.handle(
                conn,
                Message {
                    header: Header {
                        ty,
                        req_id: i,
                        tx_id: tx,
                        len: p.len() as u32,
                    },
                    payload: p,
                },
            );
            for m in drain(&mut c, conn) {
                assert!(m.payload.len() <= crate::wire::XENSTORE_PAYLOAD_MAX);
                if m.header.ty != MsgType::WatchEvent as u32 {
                    assert_eq!(m.header.req_id, i);
                }
                if m.header.ty == MsgType::Error as u32 {
                    assert!(XsError::parse(&m.payload).is_some(), "{:?}", m.payload);
                }
            }
            drain(&mut c, a);
            handled += 1;
            if c.is_closing(g) {
                // released by a random RELEASE: reintroduce and reconnect
                c.remove_connection(g);
                req(&mut c, a, MsgType::Introduce, 0, b"9\0001\0001\0");
                g = c.add_connection(9);
            }
        }
        assert_eq!(handled, 20000);
        assert!(c.stats.errors > 1000 && c.stats.requests >= 20000);
        c.check().unwrap();
        assert!(c.store().owned(9) <= 50 + 1);
    }

    #[test]
    fn pending_event_cap_for_guests() {
        let mut c = Engine::new(
            Store::new(),
            Quota {
                max_pending_events: 3,
                ..Quota::default()
            },
        );
        let a = c.add_connection(0);
        req(&mut c, a, MsgType::Introduce, 0, b"3\0001\0001\0");
        req(&mut c, a, MsgType::Write, 0, b"/pub\0");
        req(&mut c, a, MsgType::SetPerms, 0, b"/pub\0r0\0");
        let g = c.add_connection(3);
        req(&mut c, g, MsgType::Watch, 0, b"/pub\0t\0");
        for i in 0..10 {
            req(
                &mut c,
                a,
                MsgType::Write,
                0,
                format!("/pub\0{i}").as_bytes(),
            );
        }
        assert_eq!(drain(&mut c, g).len(), 3);
        assert!(c.stats.dropped_events >= 7);
    }
}
