//! Event channels, 2-level ABI: per-domain port state and delivery onto the
//! `shared_info` bitmaps.
//!
//! Two halves, both pure logic:
//!
//! * [`Channels`]: one domain's port table (`EVTCHNOP_*` semantics and the
//!   `-errno` Xen answers for bad input). Operations that touch a second
//!   domain (`bind_interdomain`, `close` of an interdomain port) take the
//!   other side as a [`Peer`]; [`EvtchnSet`] shows how a caller holding all
//!   domains' tables resolves that (and is what the tests drive).
//! * [`Pending`]: Xen's 2-level set-pending / unmask rules over
//!   `evtchn_pending`, `evtchn_mask` and a vCPU's `evtchn_pending_sel` +
//!   `evtchn_upcall_pending`, reporting whether an upcall must be injected.
//!
//! FIFO event channels (`init_control`, `expand_array`, `set_priority`) are
//! not implemented and answer `-ENOSYS`, which makes Linux stay on 2-level.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use super::abi::{
    evtchnstat, resolve_domid, virq, DomId, Errno, EvtchnPort, EvtchnStatus, EvtchnStatusU,
    SharedInfo, VcpuInfo, XenResult, DOMID_FIRST_RESERVED, EVTCHN_2L_NR_CHANNELS,
    XEN_LEGACY_MAX_VCPUS,
};

/// An event-channel port number.
pub type Port = EvtchnPort;

/// Ports of the 2-level ABI on x86_64.
pub const NR_EVENT_CHANNELS: u32 = EVTCHN_2L_NR_CHANNELS as u32;

const NR_VIRQS: usize = virq::NR_VIRQS as usize;

/// The state of one port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelState {
    /// Not in use.
    Free,
    /// Port 0: never handed out (Linux treats 0 as "no port").
    Reserved,
    /// Allocated, waiting for `remote_dom` to bind to it.
    Unbound { remote_dom: DomId },
    /// Connected to `remote_port` in `remote_dom` (which points back).
    Interdomain {
        remote_dom: DomId,
        remote_port: Port,
    },
    /// Bound to a VIRQ; `vcpu` is the vCPU it was bound on (its
    /// virq-to-port slot), which for global VIRQs is vCPU 0.
    Virq { virq: u32, vcpu: u32 },
    /// An IPI channel (send delivers to this domain's notify vCPU).
    Ipi,
    /// Physical IRQ: reserved; keel never creates these yet.
    Pirq { pirq: u32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Channel {
    state: ChannelState,
    /// The vCPU whose selector/upcall a pending event raises.
    notify_vcpu: u32,
}

const FREE: Channel = Channel {
    state: ChannelState::Free,
    notify_vcpu: 0,
};

/// Where to set a port pending after an operation: the caller looks up
/// `dom`'s table for the notify vCPU ([`Channels::notify_vcpu`]) and applies
/// [`Pending::set`] on that domain's shared_info.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signal {
    pub dom: DomId,
    pub port: Port,
}

/// The other side of a two-domain operation.
pub enum Peer<'a> {
    /// The remote domain is this same domain (loopback channels).
    Local,
    /// The remote domain's table.
    Remote(&'a mut Channels),
    /// The remote domain no longer exists (only meaningful for `close`).
    Gone,
}

/// One domain's event-channel table.
#[derive(Clone, Debug)]
pub struct Channels {
    domid: DomId,
    nr_vcpus: u32,
    max_ports: u32,
    /// Indexed by port; grows on demand up to `max_ports`.
    chans: Vec<Channel>,
    /// Per vCPU: VIRQ → port (0 = unbound).
    virq_to_port: Vec<[Port; NR_VIRQS]>,
}

impl Channels {
    /// A table for `domid` with `nr_vcpus` vCPUs and the full 2-level port
    /// space.
    pub fn new(domid: DomId, nr_vcpus: u32) -> Self {
        Self::with_max_ports(domid, nr_vcpus, NR_EVENT_CHANNELS)
    }

    /// As [`new`](Self::new) with a lower port limit (clamped to
    /// 1..=`NR_EVENT_CHANNELS`).
    pub fn with_max_ports(domid: DomId, nr_vcpus: u32, max_ports: u32) -> Self {
        let max_ports = max_ports.clamp(1, NR_EVENT_CHANNELS);
        let chans = alloc::vec![Channel {
            state: ChannelState::Reserved,
            notify_vcpu: 0,
        }];
        Channels {
            domid,
            nr_vcpus,
            max_ports,
            chans,
            virq_to_port: alloc::vec![[0; NR_VIRQS]; nr_vcpus as usize],
        }
    }

    pub fn domid(&self) -> DomId {
        self.domid
    }

    pub fn nr_vcpus(&self) -> u32 {
        self.nr_vcpus
    }

    pub fn max_ports(&self) -> u32 {
        self.max_ports
    }

    /// Whether `port` is inside this domain's port space (Xen's
    /// `port_is_valid`).
    pub fn port_is_valid(&self, port: Port) -> bool {
        port < self.max_ports
    }

    /// The state of `port` (`Free` for valid but never-used ports).
    pub fn state(&self, port: Port) -> XenResult<ChannelState> {
        if !self.port_is_valid(port) {
            return Err(Errno::EINVAL);
        }
        Ok(self
            .chans
            .get(port as usize)
            .map_or(ChannelState::Free, |c| c.state))
    }

    /// The vCPU a pending event on `port` is delivered to.
    pub fn notify_vcpu(&self, port: Port) -> XenResult<u32> {
        if !self.port_is_valid(port) {
            return Err(Errno::EINVAL);
        }
        Ok(self.chans.get(port as usize).map_or(0, |c| c.notify_vcpu))
    }

    /// The remote domain of an interdomain port (so the caller can fetch
    /// that domain's table before `close`).
    pub fn peer_of(&self, port: Port) -> Option<DomId> {
        match self.state(port) {
            Ok(ChannelState::Interdomain { remote_dom, .. }) => Some(remote_dom),
            _ => None,
        }
    }

    /// The port bound to `virq` on `vcpu`, if any (for raising VIRQs).
    pub fn virq_port(&self, virq: u32, vcpu: u32) -> Option<Port> {
        let p = *self.virq_to_port.get(vcpu as usize)?.get(virq as usize)?;
        (p != 0).then_some(p)
    }

    /// Ports currently in use (not free, not reserved).
    pub fn ports_in_use(&self) -> impl Iterator<Item = (Port, ChannelState)> + '_ {
        self.chans
            .iter()
            .enumerate()
            .filter(|(_, c)| !matches!(c.state, ChannelState::Free | ChannelState::Reserved))
            .map(|(p, c)| (p as Port, c.state))
    }

    fn check_vcpu(&self, vcpu: u32) -> XenResult<()> {
        if vcpu < self.nr_vcpus {
            Ok(())
        } else {
            Err(Errno::ENOENT)
        }
    }

    /// The lowest free port (not yet claimed), growing the table if needed.
    fn find_free_port(&self) -> XenResult<Port> {
        if let Some(p) = self
            .chans
            .iter()
            .position(|c| c.state == ChannelState::Free)
        {
            return Ok(p as Port);
        }
        if (self.chans.len() as u32) < self.max_ports {
            Ok(self.chans.len() as Port)
        } else {
            Err(Errno::ENOSPC)
        }
    }

    fn claim(&mut self, port: Port, state: ChannelState, notify_vcpu: u32) {
        let i = port as usize;
        if i >= self.chans.len() {
            self.chans.resize(i + 1, FREE);
        }
        self.chans[i] = Channel { state, notify_vcpu };
    }

    fn free(&mut self, port: Port) {
        if let Some(c) = self.chans.get_mut(port as usize) {
            *c = FREE;
        }
        // Shrink trailing free entries so the table stays small.
        while self.chans.len() > 1 && self.chans.last() == Some(&FREE) {
            self.chans.pop();
        }
    }

    /// `EVTCHNOP_alloc_unbound`: a port that `remote_dom` (or `DOMID_SELF`)
    /// may later bind to. The `dom` field (allocating on behalf of another
    /// domain, a privileged operation) is the dispatcher's business.
    pub fn alloc_unbound(&mut self, remote_dom: DomId) -> XenResult<Port> {
        let remote_dom = resolve_domid(remote_dom, self.domid);
        if remote_dom >= DOMID_FIRST_RESERVED {
            return Err(Errno::EINVAL);
        }
        let port = self.find_free_port()?;
        self.claim(port, ChannelState::Unbound { remote_dom }, 0);
        Ok(port)
    }

    /// `EVTCHNOP_bind_interdomain`: connect a new local port to
    /// `remote_port`, an unbound port of `remote_dom` that names this domain.
    ///
    /// `peer` is `remote_dom`'s table (`Peer::Local` when it is this domain).
    /// Like Xen, the caller should then set the new local port pending
    /// (returned as a [`Signal`]): notifications sent to the unbound port
    /// before the bind were dropped.
    pub fn bind_interdomain(
        &mut self,
        peer: Peer<'_>,
        remote_dom: DomId,
        remote_port: Port,
    ) -> XenResult<(Port, Signal)> {
        let remote_dom = resolve_domid(remote_dom, self.domid);
        let ldom = self.domid;
        match peer {
            Peer::Gone => return Err(Errno::ESRCH),
            Peer::Local if remote_dom != ldom => return Err(Errno::ESRCH),
            Peer::Remote(ref r) if r.domid != remote_dom || r.domid == ldom => {
                return Err(Errno::ESRCH)
            }
            _ => {}
        }
        let lport = self.find_free_port()?;
        let rtab: &Channels = match &peer {
            Peer::Remote(r) => r,
            _ => self,
        };
        match rtab.state(remote_port)? {
            ChannelState::Unbound {
                remote_dom: allowed,
            } if allowed == ldom => {}
            _ => return Err(Errno::EINVAL),
        }
        self.claim(
            lport,
            ChannelState::Interdomain {
                remote_dom,
                remote_port,
            },
            0,
        );
        let rtab: &mut Channels = match peer {
            Peer::Remote(r) => r,
            _ => self,
        };
        let rc = &mut rtab.chans[remote_port as usize];
        rc.state = ChannelState::Interdomain {
            remote_dom: ldom,
            remote_port: lport,
        };
        Ok((
            lport,
            Signal {
                dom: ldom,
                port: lport,
            },
        ))
    }

    /// `EVTCHNOP_bind_virq`: one port per (virq, vcpu). Global VIRQs must be
    /// bound on vCPU 0.
    pub fn bind_virq(&mut self, virq: u32, vcpu: u32) -> XenResult<Port> {
        if virq >= virq::NR_VIRQS {
            return Err(Errno::EINVAL);
        }
        if !virq::is_per_vcpu(virq) && vcpu != 0 {
            return Err(Errno::EINVAL);
        }
        self.check_vcpu(vcpu)?;
        if self.virq_to_port[vcpu as usize][virq as usize] != 0 {
            return Err(Errno::EEXIST);
        }
        let port = self.find_free_port()?;
        self.claim(port, ChannelState::Virq { virq, vcpu }, vcpu);
        self.virq_to_port[vcpu as usize][virq as usize] = port;
        Ok(port)
    }

    /// `EVTCHNOP_bind_ipi`.
    pub fn bind_ipi(&mut self, vcpu: u32) -> XenResult<Port> {
        self.check_vcpu(vcpu)?;
        let port = self.find_free_port()?;
        self.claim(port, ChannelState::Ipi, vcpu);
        Ok(port)
    }

    /// `EVTCHNOP_bind_vcpu`: change the notify vCPU of an unbound,
    /// interdomain or global-VIRQ port.
    pub fn bind_vcpu(&mut self, port: Port, vcpu: u32) -> XenResult<()> {
        self.check_vcpu(vcpu)?;
        match self.state(port)? {
            ChannelState::Unbound { .. } | ChannelState::Interdomain { .. } => {}
            ChannelState::Virq { virq, .. } if !virq::is_per_vcpu(virq) => {}
            ChannelState::Pirq { .. } => {}
            _ => return Err(Errno::EINVAL),
        }
        self.chans[port as usize].notify_vcpu = vcpu;
        Ok(())
    }

    /// `EVTCHNOP_close`. An interdomain port's remote end goes back to
    /// unbound (naming this domain), as in Xen. The dispatcher should clear
    /// the port's pending bit afterwards ([`Pending::clear`]), as Xen's
    /// `evtchn_free` does.
    pub fn close(&mut self, peer: Peer<'_>, port: Port) -> XenResult<()> {
        let state = self.state(port)?;
        match state {
            ChannelState::Free | ChannelState::Reserved => return Err(Errno::EINVAL),
            ChannelState::Unbound { .. } | ChannelState::Ipi | ChannelState::Pirq { .. } => {}
            ChannelState::Virq { virq, vcpu } => {
                if let Some(slot) = self
                    .virq_to_port
                    .get_mut(vcpu as usize)
                    .and_then(|v| v.get_mut(virq as usize))
                {
                    if *slot == port {
                        *slot = 0;
                    }
                }
            }
            ChannelState::Interdomain {
                remote_dom,
                remote_port,
            } => {
                let ldom = self.domid;
                let rtab: Option<&mut Channels> = match peer {
                    Peer::Local if remote_dom == ldom => Some(&mut *self),
                    Peer::Remote(r) if r.domid == remote_dom && remote_dom != ldom => Some(r),
                    Peer::Gone => None,
                    _ => return Err(Errno::ESRCH),
                };
                if let Some(rtab) = rtab {
                    if let Some(rc) = rtab.chans.get_mut(remote_port as usize) {
                        if rc.state
                            == (ChannelState::Interdomain {
                                remote_dom: ldom,
                                remote_port: port,
                            })
                        {
                            rc.state = ChannelState::Unbound { remote_dom: ldom };
                        }
                    }
                }
            }
        }
        self.free(port);
        Ok(())
    }

    /// `EVTCHNOP_send`: which (domain, port) to set pending, or `None` when
    /// the event is dropped (unbound port, as Xen does).
    pub fn send(&self, port: Port) -> XenResult<Option<Signal>> {
        match self.state(port)? {
            ChannelState::Interdomain {
                remote_dom,
                remote_port,
            } => Ok(Some(Signal {
                dom: remote_dom,
                port: remote_port,
            })),
            ChannelState::Ipi => Ok(Some(Signal {
                dom: self.domid,
                port,
            })),
            ChannelState::Unbound { .. } => Ok(None),
            _ => Err(Errno::EINVAL),
        }
    }

    /// `EVTCHNOP_status` (for this domain; `dom` checks are the
    /// dispatcher's).
    pub fn status(&self, port: Port) -> XenResult<EvtchnStatus> {
        let state = self.state(port)?;
        let (status, u) = match state {
            ChannelState::Free | ChannelState::Reserved => {
                (evtchnstat::CLOSED, EvtchnStatusU::default())
            }
            ChannelState::Unbound { remote_dom } => {
                (evtchnstat::UNBOUND, EvtchnStatusU::unbound(remote_dom))
            }
            ChannelState::Interdomain {
                remote_dom,
                remote_port,
            } => (
                evtchnstat::INTERDOMAIN,
                EvtchnStatusU::interdomain(remote_dom, remote_port),
            ),
            ChannelState::Virq { virq, .. } => (evtchnstat::VIRQ, EvtchnStatusU::word(virq)),
            ChannelState::Ipi => (evtchnstat::IPI, EvtchnStatusU::default()),
            ChannelState::Pirq { pirq } => (evtchnstat::PIRQ, EvtchnStatusU::word(pirq)),
        };
        Ok(EvtchnStatus {
            dom: self.domid,
            port,
            status,
            vcpu: self.notify_vcpu(port)?,
            u,
        })
    }

    /// `EVTCHNOP_init_control` / `expand_array` / `set_priority`: FIFO is
    /// not available.
    pub fn fifo_op(&self) -> XenResult<()> {
        Err(Errno::ENOSYS)
    }
}

// ---------------------------------------------------------------------------
// Delivery on shared_info
// ---------------------------------------------------------------------------

/// Outcome of setting a port pending.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// The pending bit went 0 → 1 (wake vCPUs in `SCHEDOP_poll` on it).
    pub newly_pending: bool,
    /// `evtchn_upcall_pending` went 0 → 1: inject the upcall (callback
    /// vector / GSI) into the notify vCPU.
    pub upcall: bool,
}

/// Where a vCPU's `vcpu_info` lives.
pub enum VcpuInfoRef<'a> {
    /// The legacy slot in shared_info (`vcpu < 32`).
    Legacy,
    /// An area registered with `VCPUOP_register_vcpu_info`.
    Registered(&'a mut VcpuInfo),
}

// The words below are shared with a running guest, so every read-modify-
// write is an atomic (lock-prefixed) operation, as in Xen. Building an
// atomic view from `&mut` is sound (unique, aligned) and compiles to the
// same instructions the guest-memory path will need.
fn a64(w: &mut u64) -> &AtomicU64 {
    // SAFETY: `w` is a valid, 8-aligned, uniquely borrowed u64 for the
    // returned lifetime.
    unsafe { AtomicU64::from_ptr(w) }
}

fn a8(b: &mut u8) -> &AtomicU8 {
    // SAFETY: as above, for a byte.
    unsafe { AtomicU8::from_ptr(b) }
}

fn test_and_set(w: &mut u64, bit: u32) -> bool {
    let m = 1u64 << bit;
    a64(w).fetch_or(m, Ordering::SeqCst) & m != 0
}

fn test_and_clear(w: &mut u64, bit: u32) -> bool {
    let m = 1u64 << bit;
    a64(w).fetch_and(!m, Ordering::SeqCst) & m != 0
}

fn test(w: &mut u64, bit: u32) -> bool {
    a64(w).load(Ordering::SeqCst) & (1u64 << bit) != 0
}

/// `vcpu_mark_events_pending`: true when the upcall flag went 0 → 1.
fn mark_events_pending(vi: &mut VcpuInfo) -> bool {
    a8(&mut vi.evtchn_upcall_pending).swap(1, Ordering::SeqCst) == 0
}

/// 2-level pending/mask operations on one domain's shared_info.
///
/// The `evtchn_upcall_mask` byte is PV-only; like Xen for HVM guests keel
/// ignores it (a PVH guest masks upcalls with RFLAGS.IF), so the caller
/// decides when to actually inject based on the vCPU's interrupt window.
pub struct Pending<'a> {
    si: &'a mut SharedInfo,
}

impl<'a> Pending<'a> {
    pub fn new(si: &'a mut SharedInfo) -> Self {
        Pending { si }
    }

    fn split(port: Port) -> XenResult<(usize, u32)> {
        if port >= NR_EVENT_CHANNELS {
            return Err(Errno::EINVAL);
        }
        Ok(((port / 64) as usize, port % 64))
    }

    /// Splits shared_info into (pending, mask, vcpu_info) for `vcpu`.
    fn parts<'b>(
        &'b mut self,
        vcpu: u32,
        vi: VcpuInfoRef<'b>,
    ) -> XenResult<(&'b mut [u64; 64], &'b mut [u64; 64], &'b mut VcpuInfo)> {
        let SharedInfo {
            vcpu_info,
            evtchn_pending,
            evtchn_mask,
            ..
        } = &mut *self.si;
        let vi = match vi {
            VcpuInfoRef::Registered(v) => v,
            VcpuInfoRef::Legacy => vcpu_info
                .get_mut(vcpu as usize)
                .filter(|_| (vcpu as usize) < XEN_LEGACY_MAX_VCPUS)
                .ok_or(Errno::EINVAL)?,
        };
        Ok((evtchn_pending, evtchn_mask, vi))
    }

    /// Xen's `evtchn_2l_set_pending`: set the pending bit; if it was clear
    /// and the port is unmasked, set the selector bit for its word and, if
    /// that was clear, `evtchn_upcall_pending`.
    pub fn set(&mut self, port: Port, vcpu: u32, vi: VcpuInfoRef<'_>) -> XenResult<Delivery> {
        let (w, b) = Self::split(port)?;
        let (pending, mask, vi) = self.parts(vcpu, vi)?;
        if test_and_set(&mut pending[w], b) {
            return Ok(Delivery::default());
        }
        let mut d = Delivery {
            newly_pending: true,
            upcall: false,
        };
        if !test(&mut mask[w], b) && !test_and_set(&mut vi.evtchn_pending_sel, w as u32) {
            d.upcall = mark_events_pending(vi);
        }
        Ok(d)
    }

    /// Xen's `evtchn_2l_unmask`: clear the mask bit; if it was set and the
    /// port is pending, set the selector bit and upcall flag as for `set`.
    /// Returns whether to inject the upcall.
    pub fn unmask(&mut self, port: Port, vcpu: u32, vi: VcpuInfoRef<'_>) -> XenResult<bool> {
        let (w, b) = Self::split(port)?;
        let (pending, mask, vi) = self.parts(vcpu, vi)?;
        if test_and_clear(&mut mask[w], b)
            && test(&mut pending[w], b)
            && !test_and_set(&mut vi.evtchn_pending_sel, w as u32)
        {
            return Ok(mark_events_pending(vi));
        }
        Ok(false)
    }

    /// Clears a port's pending bit (on close, as Xen's `evtchn_free`).
    pub fn clear(&mut self, port: Port) -> XenResult<()> {
        let (w, b) = Self::split(port)?;
        test_and_clear(&mut self.si.evtchn_pending[w], b);
        Ok(())
    }

    /// Masks a port (the guest normally does this itself).
    pub fn mask(&mut self, port: Port) -> XenResult<()> {
        let (w, b) = Self::split(port)?;
        test_and_set(&mut self.si.evtchn_mask[w], b);
        Ok(())
    }

    pub fn is_pending(&mut self, port: Port) -> bool {
        Self::split(port).is_ok_and(|(w, b)| test(&mut self.si.evtchn_pending[w], b))
    }

    pub fn is_masked(&mut self, port: Port) -> bool {
        Self::split(port).is_ok_and(|(w, b)| test(&mut self.si.evtchn_mask[w], b))
    }
}

// ---------------------------------------------------------------------------
// A set of domains
// ---------------------------------------------------------------------------

/// All domains' tables, resolving the two-table operations. The hypervisor's
/// domain list can do the same with its own storage; this is the reference
/// and the test harness.
#[derive(Clone, Debug, Default)]
pub struct EvtchnSet {
    doms: Vec<Channels>,
}

impl EvtchnSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a domain; `-EEXIST` if the id is taken.
    pub fn add(&mut self, chans: Channels) -> XenResult<()> {
        if self.get(chans.domid).is_some() {
            return Err(Errno::EEXIST);
        }
        self.doms.push(chans);
        Ok(())
    }

    pub fn get(&self, dom: DomId) -> Option<&Channels> {
        self.doms.iter().find(|c| c.domid == dom)
    }

    pub fn get_mut(&mut self, dom: DomId) -> Option<&mut Channels> {
        self.doms.iter_mut().find(|c| c.domid == dom)
    }

    fn index(&self, dom: DomId) -> XenResult<usize> {
        self.doms
            .iter()
            .position(|c| c.domid == dom)
            .ok_or(Errno::ESRCH)
    }

    /// (local, peer) for two domains, possibly the same.
    fn pair(&mut self, a: DomId, b: DomId) -> XenResult<(&mut Channels, Peer<'_>)> {
        let ia = self.index(a)?;
        let ib = match self.index(b) {
            Ok(i) => i,
            Err(_) => return Ok((&mut self.doms[ia], Peer::Gone)),
        };
        if ia == ib {
            return Ok((&mut self.doms[ia], Peer::Local));
        }
        let (lo, hi) = self.doms.split_at_mut(ia.max(ib));
        Ok(if ia < ib {
            (&mut lo[ia], Peer::Remote(&mut hi[0]))
        } else {
            (&mut hi[0], Peer::Remote(&mut lo[ib]))
        })
    }

    pub fn alloc_unbound(&mut self, dom: DomId, remote: DomId) -> XenResult<Port> {
        self.get_mut(dom).ok_or(Errno::ESRCH)?.alloc_unbound(remote)
    }

    pub fn bind_interdomain(
        &mut self,
        dom: DomId,
        remote_dom: DomId,
        remote_port: Port,
    ) -> XenResult<(Port, Signal)> {
        let remote_dom = resolve_domid(remote_dom, dom);
        let (l, peer) = self.pair(dom, remote_dom)?;
        if matches!(peer, Peer::Gone) {
            return Err(Errno::ESRCH);
        }
        l.bind_interdomain(peer, remote_dom, remote_port)
    }

    pub fn close(&mut self, dom: DomId, port: Port) -> XenResult<()> {
        let l = self.get(dom).ok_or(Errno::ESRCH)?;
        let peer_dom = l.peer_of(port).unwrap_or(dom);
        let (l, peer) = self.pair(dom, peer_dom)?;
        l.close(peer, port)
    }

    /// `send` resolved to (domain, port, notify vCPU) to set pending.
    pub fn send(&self, dom: DomId, port: Port) -> XenResult<Option<(Signal, u32)>> {
        let l = self.get(dom).ok_or(Errno::ESRCH)?;
        match l.send(port)? {
            None => Ok(None),
            Some(s) => {
                let vcpu = self.get(s.dom).ok_or(Errno::ESRCH)?.notify_vcpu(s.port)?;
                Ok(Some((s, vcpu)))
            }
        }
    }

    /// Destroys a domain: closes all its ports (remote ends become unbound)
    /// and removes its table.
    pub fn remove(&mut self, dom: DomId) -> XenResult<Channels> {
        let ports: Vec<Port> = self
            .get(dom)
            .ok_or(Errno::ESRCH)?
            .ports_in_use()
            .map(|(p, _)| p)
            .collect();
        for p in ports {
            let _ = self.close(dom, p);
        }
        let i = self.index(dom)?;
        Ok(self.doms.remove(i))
    }

    /// Checks the cross-domain invariants; returns a description of the
    /// first violation.
    pub fn check_invariants(&self) -> Result<(), alloc::string::String> {
        use alloc::format;
        for d in &self.doms {
            if d.chans.first().map(|c| c.state) != Some(ChannelState::Reserved) {
                return Err(format!("d{}: port 0 not reserved", d.domid));
            }
            if d.chans.len() as u32 > d.max_ports {
                return Err(format!("d{}: table over max", d.domid));
            }
            for (p, c) in d.chans.iter().enumerate() {
                let p = p as Port;
                if c.notify_vcpu >= d.nr_vcpus.max(1) {
                    return Err(format!("d{} p{}: notify vcpu out of range", d.domid, p));
                }
                match c.state {
                    ChannelState::Reserved if p != 0 => {
                        return Err(format!("d{} p{}: stray reserved", d.domid, p))
                    }
                    ChannelState::Free if c.notify_vcpu != 0 => {
                        return Err(format!("d{} p{}: free with vcpu", d.domid, p))
                    }
                    ChannelState::Interdomain {
                        remote_dom,
                        remote_port,
                    } => {
                        let back = self.get(remote_dom).and_then(|r| r.state(remote_port).ok());
                        let want = ChannelState::Interdomain {
                            remote_dom: d.domid,
                            remote_port: p,
                        };
                        if back != Some(want) {
                            return Err(format!(
                                "d{} p{} -> d{} p{} does not point back ({:?})",
                                d.domid, p, remote_dom, remote_port, back
                            ));
                        }
                    }
                    ChannelState::Virq { virq, vcpu } if d.virq_port(virq, vcpu) != Some(p) => {
                        return Err(format!("d{} p{}: virq table mismatch", d.domid, p));
                    }
                    _ => {}
                }
            }
            for (v, row) in d.virq_to_port.iter().enumerate() {
                for (virq, &p) in row.iter().enumerate() {
                    if p != 0
                        && d.state(p).ok()
                            != Some(ChannelState::Virq {
                                virq: virq as u32,
                                vcpu: v as u32,
                            })
                    {
                        return Err(format!(
                            "d{} vcpu{} virq{} -> stale p{}",
                            d.domid, v, virq, p
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;

    fn set2() -> EvtchnSet {
        let mut s = EvtchnSet::new();
        s.add(Channels::new(0, 2)).unwrap();
        s.add(Channels::new(1, 4)).unwrap();
        s
    }

    #[test]
    fn interdomain_lifecycle() {
        let mut s = set2();
        let p = s.alloc_unbound(1, 0).unwrap();
        assert_eq!(p, 1);
        assert_eq!(
            s.get(1).unwrap().state(p),
            Ok(ChannelState::Unbound { remote_dom: 0 })
        );
        // Sending on an unbound port is silently dropped.
        assert_eq!(s.send(1, p), Ok(None));
        let (lp, sig) = s.bind_interdomain(0, 1, p).unwrap();
        assert_eq!(sig, Signal { dom: 0, port: lp });
        s.check_invariants().unwrap();
        // Binding again: the remote port is no longer unbound.
        assert_eq!(s.bind_interdomain(0, 1, p), Err(Errno::EINVAL));
        s.get_mut(1).unwrap().bind_vcpu(p, 3).unwrap();
        assert_eq!(s.send(0, lp), Ok(Some((Signal { dom: 1, port: p }, 3))));
        assert_eq!(s.send(1, p), Ok(Some((Signal { dom: 0, port: lp }, 0))));
        let st = s.get(0).unwrap().status(lp).unwrap();
        assert_eq!(st.status, evtchnstat::INTERDOMAIN);
        assert_eq!((st.u.dom(), st.u.port()), (1, p));
        // Close one end: the other becomes unbound, naming the closer.
        s.close(0, lp).unwrap();
        assert_eq!(
            s.get(1).unwrap().state(p),
            Ok(ChannelState::Unbound { remote_dom: 0 })
        );
        assert_eq!(s.close(0, lp), Err(Errno::EINVAL));
        // ... and can be re-bound.
        let (lp2, _) = s.bind_interdomain(0, 1, p).unwrap();
        s.check_invariants().unwrap();
        s.close(1, p).unwrap();
        assert_eq!(
            s.get(0).unwrap().state(lp2),
            Ok(ChannelState::Unbound { remote_dom: 1 })
        );
        s.check_invariants().unwrap();
    }

    #[test]
    fn bind_interdomain_checks_remote_domid() {
        let mut s = set2();
        s.add(Channels::new(2, 1)).unwrap();
        let p = s.alloc_unbound(1, 2).unwrap();
        // Domain 0 is not the one allowed.
        assert_eq!(s.bind_interdomain(0, 1, p), Err(Errno::EINVAL));
        assert_eq!(s.bind_interdomain(0, 1, 4095), Err(Errno::EINVAL));
        assert_eq!(s.bind_interdomain(0, 1, 4096), Err(Errno::EINVAL));
        assert_eq!(s.bind_interdomain(0, 1, 0), Err(Errno::EINVAL));
        assert_eq!(s.bind_interdomain(0, 9, 1), Err(Errno::ESRCH));
        assert!(s.bind_interdomain(2, 1, p).is_ok());
        s.check_invariants().unwrap();
        // A failed bind leaves no port behind.
        assert_eq!(s.get(0).unwrap().ports_in_use().count(), 0);
    }

    #[test]
    fn loopback_channel() {
        let mut s = set2();
        let p = s.alloc_unbound(1, super::super::abi::DOMID_SELF).unwrap();
        let (lp, _) = s
            .bind_interdomain(1, super::super::abi::DOMID_SELF, p)
            .unwrap();
        assert_ne!(lp, p);
        s.check_invariants().unwrap();
        assert_eq!(
            s.send(1, lp).unwrap().unwrap().0,
            Signal { dom: 1, port: p }
        );
        s.close(1, p).unwrap();
        assert_eq!(
            s.get(1).unwrap().state(lp),
            Ok(ChannelState::Unbound { remote_dom: 1 })
        );
        s.check_invariants().unwrap();
    }

    #[test]
    fn virq_and_ipi() {
        let mut c = Channels::new(3, 2);
        let t0 = c.bind_virq(virq::TIMER, 0).unwrap();
        let t1 = c.bind_virq(virq::TIMER, 1).unwrap();
        assert_ne!(t0, t1);
        assert_eq!(c.bind_virq(virq::TIMER, 1), Err(Errno::EEXIST));
        assert_eq!(c.bind_virq(virq::TIMER, 2), Err(Errno::ENOENT));
        assert_eq!(c.bind_virq(virq::NR_VIRQS, 0), Err(Errno::EINVAL));
        assert_eq!(c.bind_virq(u32::MAX, 0), Err(Errno::EINVAL));
        // Global virqs only on vCPU 0, then movable.
        assert_eq!(c.bind_virq(virq::CONSOLE, 1), Err(Errno::EINVAL));
        let con = c.bind_virq(virq::CONSOLE, 0).unwrap();
        c.bind_vcpu(con, 1).unwrap();
        assert_eq!(c.notify_vcpu(con), Ok(1));
        // Per-vCPU virqs and IPIs cannot be moved.
        assert_eq!(c.bind_vcpu(t0, 1), Err(Errno::EINVAL));
        let ipi = c.bind_ipi(1).unwrap();
        assert_eq!(c.bind_vcpu(ipi, 0), Err(Errno::EINVAL));
        assert_eq!(c.bind_ipi(2), Err(Errno::ENOENT));
        assert_eq!(c.send(ipi), Ok(Some(Signal { dom: 3, port: ipi })));
        assert_eq!(c.send(t0), Err(Errno::EINVAL));
        assert_eq!(c.virq_port(virq::TIMER, 1), Some(t1));
        let st = c.status(con).unwrap();
        assert_eq!(
            (st.status, st.vcpu, st.u.virq()),
            (evtchnstat::VIRQ, 1, virq::CONSOLE)
        );
        c.close(Peer::Gone, t1).unwrap();
        assert_eq!(c.virq_port(virq::TIMER, 1), None);
        assert_eq!(c.bind_virq(virq::TIMER, 1), Ok(t1));
        assert_eq!(c.fifo_op(), Err(Errno::ENOSYS));
    }

    #[test]
    fn hostile_ports() {
        let mut c = Channels::new(5, 1);
        for p in [0, 1, 4095, 4096, u32::MAX] {
            assert_eq!(c.close(Peer::Gone, p), Err(Errno::EINVAL));
            assert_eq!(c.bind_vcpu(p, 0), Err(Errno::EINVAL));
            assert!(matches!(c.send(p), Err(Errno::EINVAL)));
        }
        assert_eq!(c.status(0).unwrap().status, evtchnstat::CLOSED);
        assert_eq!(c.status(4095).unwrap().status, evtchnstat::CLOSED);
        assert_eq!(c.status(4096), Err(Errno::EINVAL));
        assert_eq!(c.alloc_unbound(0x7ff5), Err(Errno::EINVAL));
        assert_eq!(c.bind_vcpu(1, 7), Err(Errno::ENOENT));
    }

    #[test]
    fn port_exhaustion() {
        let mut c = Channels::with_max_ports(1, 1, 8);
        for want in 1..8 {
            assert_eq!(c.bind_ipi(0), Ok(want));
        }
        assert_eq!(c.bind_ipi(0), Err(Errno::ENOSPC));
        c.close(Peer::Gone, 3).unwrap();
        assert_eq!(c.alloc_unbound(0), Ok(3));
        let mut full = Channels::new(2, 1);
        for _ in 1..NR_EVENT_CHANNELS {
            full.bind_ipi(0).unwrap();
        }
        assert_eq!(full.bind_ipi(0), Err(Errno::ENOSPC));
    }

    #[test]
    fn domain_removal_unbinds_peers() {
        let mut s = set2();
        let p = s.alloc_unbound(1, 0).unwrap();
        s.bind_interdomain(0, 1, p).unwrap();
        s.remove(0).unwrap();
        assert_eq!(
            s.get(1).unwrap().state(p),
            Ok(ChannelState::Unbound { remote_dom: 0 })
        );
        s.check_invariants().unwrap();
    }

    #[test]
    fn set_pending_semantics() {
        let mut si = Box::new(SharedInfo::zeroed());
        let mut pd = Pending::new(&mut si);
        let d = pd.set(70, 1, VcpuInfoRef::Legacy).unwrap();
        assert_eq!(
            d,
            Delivery {
                newly_pending: true,
                upcall: true
            }
        );
        // Already pending: nothing new.
        assert_eq!(
            pd.set(70, 1, VcpuInfoRef::Legacy).unwrap(),
            Delivery::default()
        );
        // Same word, other port: selector already set → no new upcall.
        let d = pd.set(71, 1, VcpuInfoRef::Legacy).unwrap();
        assert_eq!((d.newly_pending, d.upcall), (true, false));
        assert_eq!(si.evtchn_pending[1], 0b11 << 6);
        assert_eq!(si.vcpu_info[1].evtchn_pending_sel, 1 << 1);
        assert_eq!(si.vcpu_info[1].evtchn_upcall_pending, 1);
        // Guest acks: clears upcall_pending; a port in another word upcalls.
        si.vcpu_info[1].evtchn_upcall_pending = 0;
        let mut pd = Pending::new(&mut si);
        assert!(pd.set(4095, 1, VcpuInfoRef::Legacy).unwrap().upcall);
        assert_eq!(si.vcpu_info[1].evtchn_pending_sel, (1 << 1) | (1 << 63));
        assert_eq!(
            Pending::new(&mut si).set(4096, 0, VcpuInfoRef::Legacy),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            Pending::new(&mut si).set(1, 32, VcpuInfoRef::Legacy),
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn masked_then_unmask() {
        let mut si = Box::new(SharedInfo::zeroed());
        let mut pd = Pending::new(&mut si);
        pd.mask(5).unwrap();
        let d = pd.set(5, 0, VcpuInfoRef::Legacy).unwrap();
        assert_eq!((d.newly_pending, d.upcall), (true, false));
        assert!(pd.is_pending(5) && pd.is_masked(5));
        assert_eq!(si.vcpu_info[0].evtchn_pending_sel, 0);
        assert_eq!(si.vcpu_info[0].evtchn_upcall_pending, 0);
        let mut pd = Pending::new(&mut si);
        assert!(pd.unmask(5, 0, VcpuInfoRef::Legacy).unwrap());
        assert!(!pd.is_masked(5));
        assert_eq!(si.vcpu_info[0].evtchn_pending_sel, 1);
        assert_eq!(si.vcpu_info[0].evtchn_upcall_pending, 1);
        // Unmasking an unmasked or non-pending port does nothing.
        let mut pd = Pending::new(&mut si);
        assert!(!pd.unmask(5, 0, VcpuInfoRef::Legacy).unwrap());
        pd.mask(6).unwrap();
        assert!(!pd.unmask(6, 0, VcpuInfoRef::Legacy).unwrap());
        pd.clear(5).unwrap();
        assert!(!pd.is_pending(5));
    }

    #[test]
    fn registered_vcpu_info() {
        let mut si = Box::new(SharedInfo::zeroed());
        let mut vi = VcpuInfo::default();
        let d = Pending::new(&mut si)
            .set(130, 40, VcpuInfoRef::Registered(&mut vi))
            .unwrap();
        assert!(d.upcall);
        assert_eq!(vi.evtchn_pending_sel, 1 << 2);
        assert_eq!(
            si.vcpu_info
                .iter()
                .filter(|v| v.evtchn_pending_sel != 0)
                .count(),
            0
        );
    }

    /// xorshift64*: deterministic, dependency-free.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn randomized_two_domains() {
        const DOMS: [DomId; 2] = [1, 2];
        for seed in 1..=8u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut s = EvtchnSet::new();
            s.add(Channels::with_max_ports(1, 3, 64)).unwrap();
            s.add(Channels::with_max_ports(2, 2, 4096)).unwrap();
            let mut si = [
                Box::new(SharedInfo::zeroed()),
                Box::new(SharedInfo::zeroed()),
            ];
            let (mut binds, mut delivered) = (0, 0);
            for step in 0..4000 {
                let di = rng.below(2) as usize;
                let d = DOMS[di];
                let other = DOMS[rng.below(2) as usize];
                // Ports: mostly small (likely in use), sometimes hostile.
                let port = match rng.below(10) {
                    0 => rng.next() as u32,
                    1 => 4090 + rng.below(12) as u32,
                    _ => rng.below(70) as u32,
                };
                let vcpu = rng.below(4) as u32;
                match rng.below(11) {
                    0 | 1 => {
                        let r = if rng.below(8) == 0 {
                            rng.next() as u16
                        } else {
                            other
                        };
                        let _ = s.alloc_unbound(d, r);
                    }
                    2 | 3 => {
                        let r = if rng.below(8) == 0 {
                            rng.next() as u16
                        } else {
                            other
                        };
                        if let Ok((lp, sig)) = s.bind_interdomain(d, r, port) {
                            assert_eq!(sig, Signal { dom: d, port: lp });
                            binds += 1;
                        }
                    }
                    4 => {
                        let _ = s.bind_virq_for_test(d, rng.below(26) as u32, vcpu);
                    }
                    5 => {
                        let _ = s.get_mut(d).unwrap().bind_ipi(vcpu);
                    }
                    6 => {
                        let _ = s.get_mut(d).unwrap().bind_vcpu(port, vcpu);
                    }
                    7 | 8 => {
                        let before = s.get(d).unwrap().state(port);
                        let r = s.close(d, port);
                        match before {
                            Ok(ChannelState::Free) | Ok(ChannelState::Reserved) | Err(_) => {
                                assert_eq!(r, Err(Errno::EINVAL))
                            }
                            _ => {
                                assert_eq!(r, Ok(()));
                                assert_eq!(s.get(d).unwrap().state(port), Ok(ChannelState::Free));
                                Pending::new(&mut si[di]).clear(port).unwrap();
                            }
                        }
                    }
                    9 => {
                        if let Ok(Some((sig, v))) = s.send(d, port) {
                            let ti = DOMS.iter().position(|&x| x == sig.dom).unwrap();
                            let dl = Pending::new(&mut si[ti])
                                .set(sig.port, v, VcpuInfoRef::Legacy)
                                .unwrap();
                            if dl.upcall {
                                assert!(dl.newly_pending);
                            }
                            delivered += 1;
                            // Guest acks sometimes.
                            if rng.below(3) == 0 {
                                si[ti].vcpu_info[v as usize].evtchn_upcall_pending = 0;
                                si[ti].evtchn_pending[(sig.port / 64) as usize] = 0;
                                si[ti].vcpu_info[v as usize].evtchn_pending_sel = 0;
                            }
                        }
                    }
                    _ => {
                        let c = s.get(d).unwrap();
                        match c.status(port) {
                            Ok(st) => assert!(st.status <= evtchnstat::IPI),
                            Err(e) => {
                                assert_eq!(e, Errno::EINVAL);
                                assert!(!c.port_is_valid(port));
                            }
                        }
                        if let Ok(v) = c.notify_vcpu(port) {
                            let _ = Pending::new(&mut si[di]).unmask(port, v, VcpuInfoRef::Legacy);
                        }
                    }
                }
                if let Err(e) = s.check_invariants() {
                    panic!("seed {seed} step {step}: {e}");
                }
                // Free ports are really free: not pending after close, and
                // not reachable through any peer (checked above).
                for (i, &dom) in DOMS.iter().enumerate() {
                    let c = s.get(dom).unwrap();
                    for p in 1..c.max_ports().min(128) {
                        if c.state(p) == Ok(ChannelState::Free) {
                            assert!(!Pending::new(&mut si[i]).is_pending(p));
                            assert_eq!(c.notify_vcpu(p), Ok(0));
                        }
                    }
                }
            }
            // The walk must actually have exercised the paths.
            assert!(
                binds > 20 && delivered > 20,
                "seed {seed}: {binds} binds, {delivered} sends"
            );
        }
    }

    impl EvtchnSet {
        fn bind_virq_for_test(&mut self, d: DomId, v: u32, vcpu: u32) -> XenResult<Port> {
            self.get_mut(d).ok_or(Errno::ESRCH)?.bind_virq(v, vcpu)
        }
    }
}
