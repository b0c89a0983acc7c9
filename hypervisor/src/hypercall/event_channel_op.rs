//! EVENT_CHANNEL_OP: the 2-level ABI over the domain's table
//! (`xen::evtchn`), with sends reaching other domains through the domain
//! table.

use super::guest::put;
use super::{Ctx, HcResult, Ret};
use crate::xen::abi::{
    evtchnop, resolve_domid, Errno, EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi,
    EvtchnBindVcpu, EvtchnBindVirq, EvtchnPortArg, EvtchnStatus,
};
use crate::xen::evtchn::Peer;
use core::mem::offset_of;

pub fn call(cx: &mut Ctx, cmd: u64, arg: u64) -> HcResult {
    let mem = cx.mem();
    let dom = cx.dom;
    match cmd {
        evtchnop::BIND_VIRQ => {
            let b: EvtchnBindVirq = mem.read_obj(arg)?;
            let port = dom.xen.lock().chans.bind_virq(b.virq, b.vcpu)?;
            put!(mem, arg, EvtchnBindVirq, port, port)?;
        }
        evtchnop::BIND_IPI => {
            let b: EvtchnBindIpi = mem.read_obj(arg)?;
            let port = dom.xen.lock().chans.bind_ipi(b.vcpu)?;
            put!(mem, arg, EvtchnBindIpi, port, port)?;
        }
        evtchnop::ALLOC_UNBOUND => {
            let a: EvtchnAllocUnbound = mem.read_obj(arg)?;
            // DOMID_SELF, either side, is the caller (as on Xen).
            let remote = resolve_domid(a.remote_dom, dom.id);
            let port = match resolve_domid(a.dom, dom.id) {
                id if id == dom.id => dom.xen.lock().chans.alloc_unbound(remote)?,
                // In another domain: the toolstack's (its console and
                // xenstore ports), so only for a privileged caller.
                id => target_domain(cx, id)?
                    .xen
                    .lock()
                    .chans
                    .alloc_unbound(remote)?,
            };
            put!(mem, arg, EvtchnAllocUnbound, port, port)?;
        }
        evtchnop::STATUS => {
            let st: EvtchnStatus = mem.read_obj(arg)?;
            let id = resolve_domid(st.dom, dom.id);
            let out = if id == dom.id {
                dom.xen.lock().chans.status(st.port)?
            } else {
                target_domain(cx, id)?.xen.lock().chans.status(st.port)?
            };
            // Field by field: the struct has padding after `dom`.
            put!(mem, arg, EvtchnStatus, status, out.status)?;
            put!(mem, arg, EvtchnStatus, vcpu, out.vcpu)?;
            put!(mem, arg, EvtchnStatus, u, out.u.0[0])?;
            mem.write_u32(arg + offset_of!(EvtchnStatus, u) as u64 + 4, out.u.0[1])?;
        }
        evtchnop::BIND_INTERDOMAIN => {
            let b: EvtchnBindInterdomain = mem.read_obj(arg)?;
            let port = bind_interdomain(cx, b.remote_dom, b.remote_port)?;
            put!(mem, arg, EvtchnBindInterdomain, local_port, port)?;
        }
        evtchnop::SEND => {
            let p: EvtchnPortArg = mem.read_obj(arg)?;
            send(cx, p.port)?;
        }
        evtchnop::UNMASK => {
            let p: EvtchnPortArg = mem.read_obj(arg)?;
            let xs = dom.xen.lock();
            let vcpu = xs.chans.notify_vcpu(p.port)?;
            if dom.with_pending(&xs, vcpu as usize, |pd, vi| pd.unmask(p.port, vcpu, vi))? {
                dom.raise_upcall(vcpu as usize);
            }
        }
        evtchnop::CLOSE => {
            let p: EvtchnPortArg = mem.read_obj(arg)?;
            close(cx, p.port)?;
        }
        evtchnop::BIND_VCPU => {
            let b: EvtchnBindVcpu = mem.read_obj(arg)?;
            dom.xen.lock().chans.bind_vcpu(b.port, b.vcpu)?;
        }
        // No FIFO event channels: Linux falls back to 2-level, and
        // priorities are a FIFO feature (Xen's 2-level ABI answers -ENOSYS
        // too).
        evtchnop::INIT_CONTROL | evtchnop::SET_PRIORITY => return Err(Errno::ENOSYS),
        _ => return Err(cx.unimplemented(format_args!("event_channel_op {cmd}"))),
    }
    Ok(Ret::Val(0))
}

/// Domain `id`, for an operation on another domain's event channels:
/// -EPERM unless the caller is privileged (checked first, so an
/// unprivileged caller learns nothing of other domains), -ESRCH if there is
/// none, or it is ending.
fn target_domain(cx: &Ctx, id: u16) -> Result<alloc::sync::Arc<crate::domain::Domain>, Errno> {
    if !cx.dom.privileged {
        return Err(Errno::EPERM);
    }
    match crate::domain::table::get(id) {
        Some(d) if !d.is_ending() => Ok(d),
        _ => Err(Errno::ESRCH),
    }
}

/// EVTCHNOP_send: to this domain (IPI, loopback) or another one.
pub fn send(cx: &Ctx, port: u32) -> Result<(), Errno> {
    let sig = {
        let xs = cx.dom.xen.lock();
        match xs.chans.send(port)? {
            Some(sig) if sig.dom == cx.dom.id => {
                cx.dom.signal(&xs, sig.port);
                return Ok(());
            }
            Some(sig) => sig,
            None => return Ok(()),
        }
    };
    // Another domain: its lock only after ours is released.
    if let Some(other) = crate::domain::table::get(sig.dom) {
        let xs = other.xen.lock();
        other.signal(&xs, sig.port);
    }
    Ok(())
}

/// EVTCHNOP_bind_interdomain: connects a new local port to an unbound
/// port of `remote` that was allocated for this domain.
fn bind_interdomain(cx: &Ctx, remote: u16, remote_port: u32) -> Result<u32, Errno> {
    let dom = cx.dom;
    let remote = resolve_domid(remote, dom.id);
    if remote == dom.id {
        let mut xs = dom.xen.lock();
        let (port, sig) = xs
            .chans
            .bind_interdomain(Peer::Local, remote, remote_port)?;
        dom.signal(&xs, sig.port);
        return Ok(port);
    }
    let other = crate::domain::table::get(remote).ok_or(Errno::ESRCH)?;
    // Two tables change together: lock them in domain-id order.
    let (mut a, mut b) = if dom.id < other.id {
        let a = dom.xen.lock();
        (a, other.xen.lock())
    } else {
        let b = other.xen.lock();
        (dom.xen.lock(), b)
    };
    let (port, sig) = a
        .chans
        .bind_interdomain(Peer::Remote(&mut b.chans), remote, remote_port)?;
    drop(b);
    // As Xen: notifications sent to the unbound port may be lost, so the
    // new local port starts pending.
    dom.signal(&a, sig.port);
    Ok(port)
}

/// EVTCHNOP_close: frees the port (and unbinds a connected peer's end).
fn close(cx: &Ctx, port: u32) -> Result<(), Errno> {
    let dom = cx.dom;
    let peer = dom.xen.lock().chans.peer_of(port);
    match peer {
        Some(r) if r != dom.id => {
            let other = crate::domain::table::get(r);
            match other {
                Some(other) => {
                    let (mut a, mut b) = if dom.id < other.id {
                        let a = dom.xen.lock();
                        (a, other.xen.lock())
                    } else {
                        let b = other.xen.lock();
                        (dom.xen.lock(), b)
                    };
                    a.chans.close(Peer::Remote(&mut b.chans), port)?;
                    dom.clear_pending(&a, port);
                }
                None => {
                    let mut a = dom.xen.lock();
                    a.chans.close(Peer::Gone, port)?;
                    dom.clear_pending(&a, port);
                }
            }
        }
        _ => {
            let mut a = dom.xen.lock();
            a.chans.close(Peer::Local, port)?;
            dom.clear_pending(&a, port);
        }
    }
    Ok(())
}
