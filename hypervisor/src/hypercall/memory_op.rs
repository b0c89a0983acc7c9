//! MEMORY_OP: the caller's memory map and reservation, and placing keel's
//! pages (shared_info, grant-table frames) in its physical address space.

use super::guest::put;
use super::{Ctx, HcResult, Ret};
use crate::domain::XenState;
use crate::mm::p2m::Perm;
use crate::xen::abi::{
    xenmapspace, xenmem, E820Entry, Errno, XenAddToPhysmap, XenMemoryMap, DOMID_SELF,
};

pub fn call(cx: &mut Ctx, cmd: u64, arg: u64) -> HcResult {
    match cmd & xenmem::MEMOP_CMD_MASK {
        xenmem::MEMORY_MAP | xenmem::MACHINE_MEMORY_MAP => memory_map(cx, arg),
        xenmem::ADD_TO_PHYSMAP => add_to_physmap(cx, arg),
        xenmem::CURRENT_RESERVATION | xenmem::MAXIMUM_RESERVATION => {
            own_domain(cx, arg)?;
            Ok(Ret::Val(cx.dom.mem.ram_pages))
        }
        xenmem::MAXIMUM_GPFN => {
            own_domain(cx, arg)?;
            Ok(Ret::Val(cx.dom.mem.gfn_limit.saturating_sub(1)))
        }
        other => Err(cx.unimplemented(format_args!("memory_op {other}"))),
    }
}

/// The reservation sub-ops take a pointer to a domid: the caller's own
/// only (another domain's is the toolstack's business).
fn own_domain(cx: &Ctx, arg: u64) -> Result<(), Errno> {
    let mut b = [0u8; 2];
    cx.mem().read(arg, &mut b)?;
    let d = u16::from_le_bytes(b);
    if d == DOMID_SELF || d == cx.dom.id {
        Ok(())
    } else {
        Err(Errno::EPERM)
    }
}

/// XENMEM_memory_map: the domain's e820, as many entries as fit.
fn memory_map(cx: &mut Ctx, arg: u64) -> HcResult {
    let mem = cx.mem();
    let map: XenMemoryMap = mem.read_obj(arg)?;
    let e820 = &cx.dom.mem.e820;
    let n = e820.len().min(map.nr_entries as usize);
    for (i, &(addr, size, kind)) in e820[..n].iter().enumerate() {
        let at = map.buffer.wrapping_add(20 * i as u64);
        put!(mem, at, E820Entry, addr, addr)?;
        put!(mem, at, E820Entry, size, size)?;
        put!(mem, at, E820Entry, kind, kind as u32)?;
    }
    put!(mem, arg, XenMemoryMap, nr_entries, n as u32)?;
    Ok(Ret::Val(0))
}

/// XENMEM_add_to_physmap: shared_info or a grant-table frame at a GFN of
/// the caller's choice (whatever was there is replaced).
fn add_to_physmap(cx: &mut Ctx, arg: u64) -> HcResult {
    let a: XenAddToPhysmap = cx.mem().read_obj(arg)?;
    if a.domid != DOMID_SELF && a.domid != cx.dom.id {
        return Err(Errno::EPERM);
    }
    if a.gpfn >= 1 << 36 {
        return Err(Errno::EINVAL);
    }
    let mut xs = cx.dom.xen.lock();
    let hpa = match a.space {
        xenmapspace::SHARED_INFO if a.idx == 0 => cx.dom.mem.shared_info,
        xenmapspace::SHARED_INFO => return Err(Errno::EINVAL),
        xenmapspace::GRANT_TABLE => grant_frame(cx, &mut xs, a.idx)?,
        space => {
            return Err(cx.unimplemented(format_args!("add_to_physmap space {space}")));
        }
    };
    cx.dom.mem.map_4k(a.gpfn << 12, hpa, Perm::RW)?;
    // Flush point: a present gfn may now point elsewhere; this vCPU
    // flushes before it re-enters, the others see the new generation.
    cx.hw.flush_p2m();
    if a.space == xenmapspace::SHARED_INFO {
        cx.dom.update_time(&xs);
    }
    log::debug!(
        "d{}: space {} idx {} at gfn {:#x}",
        cx.dom.id,
        a.space,
        a.idx,
        a.gpfn
    );
    Ok(Ret::Val(0))
}

/// The host frame behind grant-table frame `idx`, allocated (zeroed) on
/// first use; the table grows to include it.
fn grant_frame(cx: &Ctx, xs: &mut XenState, idx: u64) -> Result<u64, Errno> {
    if idx & xenmapspace::XENMAPIDX_GRANT_TABLE_STATUS != 0 {
        return Err(Errno::EINVAL); // status frames are v2's
    }
    let idx = xs.grant.map_frame(idx)? as usize;
    while xs.grant_frames.len() <= idx {
        let f = crate::mm::phys::alloc_zeroed(1).ok_or(Errno::ENOMEM)?;
        cx.dom.mem.own(f, 1);
        xs.grant_frames.push(f);
    }
    Ok(xs.grant_frames[idx])
}
