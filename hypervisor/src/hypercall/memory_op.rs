//! MEMORY_OP: the caller's memory map and reservation, and placing keel's
//! pages (shared_info, grant-table frames) in its physical address space;
//! for the toolstack, another domain's memory: populating it
//! (`populate_physmap`, as libxenguest builds a domU), its memory map and
//! reservation.

use super::guest::put;
use super::{Ctx, HcResult, Ret};
use crate::domain::{Domain, XenState};
use crate::mm::p2m::Perm;
use crate::mm::phys;
use crate::xen::abi::{
    xenmapspace, xenmem, E820Entry, Errno, XenAddToPhysmap, XenMemoryMap, DOMID_SELF,
};
use alloc::sync::Arc;
use alloc::vec::Vec;
use keel_xen_abi::memory::{ForeignMemoryMap, MemoryReservation};

pub fn call(cx: &mut Ctx, cmd: u64, arg: u64) -> HcResult {
    match cmd & xenmem::MEMOP_CMD_MASK {
        xenmem::MEMORY_MAP | xenmem::MACHINE_MEMORY_MAP => memory_map(cx, arg),
        xenmem::ADD_TO_PHYSMAP => add_to_physmap(cx, arg),
        xenmem::CURRENT_RESERVATION => Ok(Ret::Val(domain_arg(cx, arg)?.tot_pages())),
        xenmem::MAXIMUM_RESERVATION => {
            let d = domain_arg(cx, arg)?;
            Ok(Ret::Val(if d.mem.ram_pages > 0 {
                d.mem.ram_pages
            } else {
                d.max_pages()
            }))
        }
        xenmem::MAXIMUM_GPFN => Ok(Ret::Val(
            domain_arg(cx, arg)?.mem.gfn_limit().saturating_sub(1),
        )),
        xenmem::POPULATE_PHYSMAP => populate_physmap(cx, cmd >> xenmem::MEMOP_EXTENT_SHIFT, arg),
        xenmem::SET_MEMORY_MAP => set_memory_map(cx, arg),
        other => Err(cx.unimplemented(format_args!("memory_op {other}"))),
    }
}

/// The reservation sub-ops take a pointer to a domid: the caller's own,
/// or (for the toolstack) another domain's.
fn domain_arg(cx: &Ctx, arg: u64) -> Result<Arc<Domain>, Errno> {
    let mut b = [0u8; 2];
    cx.mem().read(arg, &mut b)?;
    cx.target(u16::from_le_bytes(b))
}

/// The most extents one `populate_physmap` call takes (libxenguest asks
/// for at most a few thousand at a time).
const MAX_EXTENTS: u64 = 1 << 20;
/// Guest frames keel maps: below 2^36 (256 TiB of guest-physical space).
const GFN_LIMIT: u64 = 1 << 36;

/// `XENMEM_populate_physmap` on another domain (the toolstack building
/// it): an extent of `2^extent_order` fresh, zeroed pages at each gfn of
/// the list, from extent `start` (the continuation index in `cmd`), owned
/// by the domain, counted against its `max_mem` and mapped in its p2m.
/// Returns how many extents are done: as on Xen, a short count (an extent
/// keel cannot place, no memory, the domain's limit) is not an error, and
/// the toolstack falls back to smaller extents.
fn populate_physmap(cx: &mut Ctx, start: u64, arg: u64) -> HcResult {
    let r: MemoryReservation = cx.mem().read_abi(arg)?;
    let d = cx.target(r.domid)?;
    if Arc::ptr_eq(&d, cx.dom) {
        // A guest's own (the balloon driver): not yet.
        return Err(cx.unimplemented(format_args!("memory_op populate_physmap on itself")));
    }
    if r.extent_order > 18 || r.mem_flags & !0xff != 0 || r.nr_extents > MAX_EXTENTS {
        return Err(Errno::EINVAL);
    }
    let pages = 1u64 << r.extent_order;
    let mut done = start.min(r.nr_extents);
    while done < r.nr_extents {
        let at = r.extent_start.addr().wrapping_add(8 * done);
        let gfn: u64 = cx.mem().read_abi(at)?;
        if !gfn.is_multiple_of(pages) || gfn.checked_add(pages).is_none_or(|e| e > GFN_LIMIT) {
            break;
        }
        let (gpa, len) = (gfn << 12, pages << 12);
        // Only where nothing is mapped yet: populating never replaces.
        if (0..pages).any(|i| d.mem.translate(gpa + (i << 12)).is_some()) {
            break;
        }
        if d.charge_pages(pages).is_err() {
            break;
        }
        let Some(frames) = phys::frames().alloc_in(pages, len, 0, u64::MAX) else {
            d.uncharge_pages(pages);
            break;
        };
        phys::zero(frames, len);
        d.mem.own(frames, pages);
        if d.mem.map_ram(gpa, frames, len, Perm::RWX).is_err() {
            // Owned: freed with the domain. Not counted as populated.
            break;
        }
        d.mem.raise_gfn_limit(gfn + pages);
        done += 1;
    }
    Ok(Ret::Val(done))
}

/// `XENMEM_set_memory_map`: the e820 the toolstack gives a domain, which
/// the domain's own `XENMEM_memory_map` then returns.
fn set_memory_map(cx: &mut Ctx, arg: u64) -> HcResult {
    let m: ForeignMemoryMap = cx.mem().read_abi(arg)?;
    let d = cx.target(m.domid)?;
    if Arc::ptr_eq(&d, cx.dom) {
        return Err(Errno::EPERM);
    }
    const MAX_ENTRIES: u32 = 128;
    if m.map.nr_entries > MAX_ENTRIES {
        return Err(Errno::EINVAL);
    }
    let mut map = Vec::with_capacity(m.map.nr_entries as usize);
    for i in 0..m.map.nr_entries as u64 {
        let mut e = [0u8; 20];
        cx.mem()
            .read(m.map.buffer.addr().wrapping_add(20 * i), &mut e)?;
        let word = |o: usize| u64::from_le_bytes(e[o..o + 8].try_into().unwrap());
        let kind = u32::from_le_bytes(e[16..20].try_into().unwrap());
        map.push((word(0), word(8), kind));
    }
    *d.mem.toolstack_e820.lock() = Some(map);
    Ok(Ret::Val(0))
}

/// XENMEM_memory_map: the domain's e820, as many entries as fit.
fn memory_map(cx: &mut Ctx, arg: u64) -> HcResult {
    let mem = cx.mem();
    let map: XenMemoryMap = mem.read_obj(arg)?;
    let e820: Vec<(u64, u64, u32)> = match &*cx.dom.mem.toolstack_e820.lock() {
        Some(m) => m.clone(),
        None => cx
            .dom
            .mem
            .e820
            .iter()
            .map(|&(a, s, k)| (a, s, k as u32))
            .collect(),
    };
    let n = e820.len().min(map.nr_entries as usize);
    for (i, &(addr, size, kind)) in e820[..n].iter().enumerate() {
        let at = map.buffer.wrapping_add(20 * i as u64);
        put!(mem, at, E820Entry, addr, addr)?;
        put!(mem, at, E820Entry, size, size)?;
        put!(mem, at, E820Entry, kind, kind)?;
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
