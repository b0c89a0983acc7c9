//! MEMORY_OP: the caller's memory map and reservation, and placing keel's
//! pages (shared_info, grant-table frames) in its physical address space;
//! for the toolstack, another domain's memory: populating it
//! (`populate_physmap`, as libxenguest builds a domU, after a
//! `claim_pages`), its memory map and reservation; and for both,
//! `decrease_reservation` of memory the toolstack populated (ballooning).
//! `acquire_resource` answers -EOPNOTSUPP on purpose (libxenguest seeds
//! the grant table through `add_to_physmap` instead), uncounted; other
//! sub-ops -ENOSYS, counted as unimplemented.

use super::guest::put;
use super::{Ctx, HcResult, Ret};
use crate::domain::{Domain, XenState};
use crate::mm::p2m::Perm;
use crate::mm::phys;
use crate::xen::abi::{xenmapspace, xenmem, E820Entry, Errno, XenAddToPhysmap, XenMemoryMap};
use alloc::collections::BTreeSet;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use keel_xen_abi::memory::{
    mapspace, AddToPhysmapBatch, ForeignMemoryMap, MemoryReservation, RemoveFromPhysmap,
};

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
        xenmem::POPULATE_PHYSMAP => {
            let r = populate_physmap(cx, cmd >> xenmem::MEMOP_EXTENT_SHIFT, arg);
            if let Err(e) = &r {
                // The toolstack's domain build stops on it: say why.
                log::debug!("d{}: populate_physmap refused: {e:?}", cx.dom.id);
            }
            r
        }
        xenmem::ADD_TO_PHYSMAP_BATCH => add_to_physmap_batch(cx, arg),
        xenmem::REMOVE_FROM_PHYSMAP => remove_from_physmap(cx, arg),
        xenmem::SET_MEMORY_MAP => set_memory_map(cx, arg),
        xenmem::DECREASE_RESERVATION => {
            decrease_reservation(cx, cmd >> xenmem::MEMOP_EXTENT_SHIFT, arg)
        }
        xenmem::CLAIM_PAGES => claim_pages(cx, cmd >> xenmem::MEMOP_EXTENT_SHIFT, arg),
        // keel maps no resource into a caller: libxenguest then seeds the
        // grant table through its compat path (add_to_physmap of the
        // grant frame, a foreign map, remove_from_physmap), which keel
        // has. An answer, not a gap: not counted as unimplemented.
        xenmem::ACQUIRE_RESOURCE => Err(Errno::EOPNOTSUPP),
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
    if r.extent_order > 18 || r.nr_extents > MAX_EXTENTS {
        return Err(Errno::EINVAL);
    }
    let below = populate_limit(r.mem_flags)?;
    let pages = 1u64 << r.extent_order;
    let mut done = start.min(r.nr_extents);
    let mut short = None;
    while done < r.nr_extents {
        let at = r.extent_start.addr().wrapping_add(8 * done);
        let gfn: u64 = cx.mem().read_abi(at)?;
        if !gfn.is_multiple_of(pages) || gfn.checked_add(pages).is_none_or(|e| e > GFN_LIMIT) {
            short = Some((gfn, "a misaligned or out-of-range gfn"));
            break;
        }
        let (gpa, len) = (gfn << 12, pages << 12);
        // Only where nothing is mapped yet: populating never replaces.
        if (0..pages).any(|i| d.mem.translate(gpa + (i << 12)).is_some()) {
            short = Some((gfn, "memory already there"));
            break;
        }
        if d.charge_pages(pages).is_err() {
            short = Some((gfn, "over the domain's max_mem"));
            break;
        }
        let Some(frames) = phys::frames().alloc_in(pages, len, 0, below) else {
            d.uncharge_pages(pages);
            short = Some((gfn, "no free host memory that fits"));
            break;
        };
        phys::zero(frames, len);
        d.mem.own(frames, pages);
        if d.mem.map_ram(gpa, frames, len, Perm::RWX).is_err() {
            // Owned: freed with the domain. Not counted as populated.
            short = Some((gfn, "its p2m could not map it"));
            break;
        }
        d.mem.raise_gfn_limit(gfn + pages);
        d.tools.add_populated(frames, pages);
        done += 1;
    }
    // Xen says the same (at debug level); a toolstack that does not fall
    // back to smaller extents fails on it, and this says why. 2 MiB
    // extents that do not fit are the usual fallback: those stay quiet.
    if let Some((gfn, why)) = short.filter(|_| r.extent_order == 0) {
        log::debug!(
            "d{}: populate_physmap stopped at gfn {gfn:#x} ({done} of {} pages done, flags \
             {:#x}): {why}",
            d.id,
            r.nr_extents,
            r.mem_flags
        );
    }
    Ok(Ret::Val(done))
}

/// What `populate_physmap`'s `mem_flags` ask of the frames: the end of the
/// host memory to take them from (`XENMEMF_address_bits`; none: all of
/// it). keel's host is one NUMA node, node 0, which is also every guest's
/// one virtual node: a node (hint or `exact_node_request`, physical or
/// `vnode`) of 0 is what keel gives anyway and is accepted, as Xen takes
/// a node request that its only node meets (libxenguest asks for
/// `XENMEMF_exact_node(0)` when libxl placed the domain on node 0).
/// Another node: -EINVAL (no such node). Populate-on-demand: not
/// supported (-EOPNOTSUPP; a toolstack asks for it when `maxmem` exceeds
/// `memory`). Unknown bits: -EINVAL.
fn populate_limit(flags: u32) -> Result<u64, Errno> {
    use keel_xen_abi::memory::{
        memf_get_address_bits, memf_get_node, MEMF_EXACT_NODE_REQUEST, MEMF_POPULATE_ON_DEMAND,
        MEMF_VNODE,
    };
    const NO_NODE: u32 = 0xff;
    if flags & MEMF_POPULATE_ON_DEMAND != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    if flags & !(0xffff | MEMF_EXACT_NODE_REQUEST | MEMF_VNODE) != 0 {
        return Err(Errno::EINVAL);
    }
    let node = memf_get_node(flags);
    if node != NO_NODE && node != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(match memf_get_address_bits(flags) {
        0 | 64.. => u64::MAX,
        // Frames end below 2^bits (too few bits: no frame fits, none done).
        bits => 1u64 << bits,
    })
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
    // Its own, or (the toolstack's compat grant seed) another domain's.
    let d = cx.target(a.domid)?;
    let own = Arc::ptr_eq(&d, cx.dom);
    if a.gpfn >= GFN_LIMIT {
        return Err(Errno::EINVAL);
    }
    let mut xs = d.xen.lock();
    let hpa = match a.space {
        xenmapspace::SHARED_INFO if a.idx == 0 => d.mem.shared_info,
        xenmapspace::SHARED_INFO => return Err(Errno::EINVAL),
        xenmapspace::GRANT_TABLE => grant_frame(&d, &mut xs, a.idx)?,
        space => {
            return Err(cx.unimplemented(format_args!("add_to_physmap space {space}")));
        }
    };
    d.mem.map_4k(a.gpfn << 12, hpa, Perm::RW)?;
    if a.space == xenmapspace::GRANT_TABLE {
        xs.grant_frame_at(a.idx as usize, a.gpfn);
    } else {
        xs.grant_frame_gone(a.gpfn);
    }
    // Flush point: a present gfn may now point elsewhere; this vCPU
    // flushes before it re-enters, the others see the new generation.
    if own {
        cx.hw.flush_p2m();
    }
    if a.space == xenmapspace::SHARED_INFO {
        d.update_time(&xs);
    }
    log::debug!(
        "d{}: space {} idx {} at gfn {:#x}",
        d.id,
        a.space,
        a.idx,
        a.gpfn
    );
    Ok(Ret::Val(0))
}

/// `XENMEM_add_to_physmap_batch` (`_range` in Linux) with
/// `XENMAPSPACE_gmfn_foreign`: the toolstack maps another domain's pages
/// into its own physical address space (privcmd's foreign mapping: a PVH
/// dom0 has no other way to write a domain it builds). Each entry's
/// result goes to `errs`; the call itself succeeds once its arguments
/// are read. A page is mapped only where the caller has no RAM (a dom0
/// maps into holes), and holds the other domain until unmapped.
fn add_to_physmap_batch(cx: &mut Ctx, arg: u64) -> HcResult {
    let b: AddToPhysmapBatch = cx.mem().read_abi(arg)?;
    if b.space != mapspace::GMFN_FOREIGN as u16 {
        return Err(cx.unimplemented(format_args!("add_to_physmap_batch space {}", b.space)));
    }
    // Into the caller's own physical address space only.
    if !Arc::ptr_eq(&cx.target(b.domid)?, cx.dom) {
        return Err(Errno::EPERM);
    }
    let other = cx.target(b.foreign_domid)?;
    if Arc::ptr_eq(&other, cx.dom) {
        return Err(Errno::EINVAL);
    }
    for i in 0..b.size as u64 {
        let idx: u64 = cx.mem().read_abi(b.idxs.addr().wrapping_add(8 * i))?;
        let gpfn: u64 = cx.mem().read_abi(b.gpfns.addr().wrapping_add(8 * i))?;
        let r = map_foreign(cx, &other, idx, gpfn);
        let e = r.map_or_else(|e| e.to_ret() as i32, |()| 0);
        cx.mem()
            .write_u32(b.errs.addr().wrapping_add(4 * i), e as u32)?;
    }
    cx.hw.flush_p2m();
    Ok(Ret::Val(0))
}

/// Whether `d` may take another domain's page at its gfn `gpfn` (a
/// foreign mapping, `map_foreign`, or a grant mapping): -EINVAL past the
/// gfns keel maps; -EBUSY over the domain's memory map (its RAM, and for
/// dom0 the host firmware's ranges it sees 1:1), over keel's pages it
/// placed there (shared_info, a grant-table frame: it would lose them) and
/// where a grant is mapped already; a foreign mapping there is replaced by another foreign
/// one (`replace_foreign`), refused to a grant. Only holes, which is where
/// Linux's unpopulated-page allocator puts them. Host RAM dom0 does not
/// own is a hole to dom0 (nothing of it is in dom0's p2m). Called under
/// [`FOREIGN`], which every new foreign or grant mapping is made under, so
/// the answer holds until the caller's mapping is recorded.
pub(super) fn mappable(d: &Domain, gpfn: u64, replace_foreign: bool) -> Result<(), Errno> {
    if gpfn >= GFN_LIMIT {
        return Err(Errno::EINVAL);
    }
    let gpa = gpfn << 12;
    let foreign_here = d.foreign.lock().contains_key(&gpfn);
    let ram = if d.mem.identity {
        d.mem
            .e820
            .iter()
            .any(|&(start, len, _)| (start..start + len).contains(&gpa))
    } else {
        gpfn < d.mem.gfn_limit() && !foreign_here
    };
    let keels = d
        .mem
        .translate(gpa)
        .is_some_and(|h| h & !0xfff == d.mem.shared_info)
        || d.xen.lock().grant_gfns.contains(&gpfn);
    if ram
        || keels
        || (foreign_here && !replace_foreign)
        || d.grant_maps.lock().at.contains_key(&gpfn)
    {
        return Err(Errno::EBUSY);
    }
    Ok(())
}

/// One foreign page: `other`'s gfn `idx` at the caller's gfn `gpfn`.
fn map_foreign(cx: &Ctx, other: &Arc<Domain>, idx: u64, gpfn: u64) -> Result<(), Errno> {
    if gpfn >= GFN_LIMIT || idx >= GFN_LIMIT {
        return Err(Errno::EINVAL);
    }
    let gpa = gpfn << 12;
    // Under the lock decrease_reservation frees under: a frame it takes
    // out of `other` is either seen mapped here, or not translated here.
    let _held = FOREIGN.lock();
    mappable(cx.dom, gpfn, true)?;
    let hpa = other.mem.translate(idx << 12).ok_or(Errno::EINVAL)? & !0xfff;
    cx.dom.mem.map_4k(gpa, hpa, Perm::RW)?;
    // A mapping replaced drops the domain it held.
    cx.dom.foreign.lock().insert(gpfn, other.clone());
    Ok(())
}

/// `XENMEM_remove_from_physmap`: the caller's foreign mapping at `gpfn`
/// goes (and with it its hold on the other domain), or the toolstack takes
/// a page out of another domain's physical address space (the compat
/// grant seed's scratch frame). -ENOENT where nothing is mapped.
fn remove_from_physmap(cx: &mut Ctx, arg: u64) -> HcResult {
    let r: RemoveFromPhysmap = cx.mem().read_abi(arg)?;
    let d = cx.target(r.domid)?;
    if r.gpfn >= GFN_LIMIT {
        return Err(Errno::EINVAL);
    }
    if Arc::ptr_eq(&d, cx.dom) {
        // Its own: only what it mapped from others.
        let held = cx.dom.foreign.lock().remove(&r.gpfn).ok_or(Errno::ENOENT)?;
        cx.dom.mem.unmap_4k(r.gpfn << 12)?;
        cx.hw.flush_p2m();
        drop(held);
    } else {
        d.mem.unmap_4k(r.gpfn << 12)?;
        d.xen.lock().grant_frame_gone(r.gpfn);
    }
    Ok(Ret::Val(0))
}

/// The host frame behind grant-table frame `idx`, allocated (zeroed) on
/// first use; the table grows to include it.
fn grant_frame(d: &Domain, xs: &mut XenState, idx: u64) -> Result<u64, Errno> {
    if idx & xenmapspace::XENMAPIDX_GRANT_TABLE_STATUS != 0 {
        return Err(Errno::EINVAL); // status frames are v2's
    }
    let idx = xs.grant.map_frame(idx)? as usize;
    while xs.grant_frames.len() <= idx {
        let f = crate::mm::phys::alloc_zeroed(1).ok_or(Errno::ENOMEM)?;
        d.mem.own(f, 1);
        xs.grant_frames.push(f);
    }
    Ok(xs.grant_frames[idx])
}

/// Serializes a foreign mapping's lookup of a frame and its record in the
/// mapper's `foreign` table with `decrease_reservation`'s taking frames
/// out of a domain and deciding whether they are still mapped elsewhere.
/// Grant mappings (`GNTTABOP_map_grant_ref`) are made under it too.
pub(super) static FOREIGN: spin::Mutex<()> = spin::Mutex::new(());

/// `d`'s frames other domains map (foreign mappings:
/// `add_to_physmap_batch`; grant mappings). Called under [`FOREIGN`].
fn mapped_elsewhere(d: &Arc<Domain>) -> BTreeSet<u64> {
    let mut held = BTreeSet::new();
    for m in crate::domain::table::all() {
        for (&gpfn, other) in m.foreign.lock().iter() {
            if Arc::ptr_eq(other, d) {
                if let Some(h) = m.mem.translate(gpfn << 12) {
                    held.insert(h & !0xfff);
                }
            }
        }
        for (granter, hpa) in m.grant_maps.lock().held.values() {
            if Arc::ptr_eq(granter, d) {
                held.insert(*hpa);
            }
        }
    }
    held
}

/// `XENMEM_decrease_reservation`: a guest's balloon driver giving pages
/// back, or the toolstack taking them from another domain. Each extent
/// (`2^extent_order` pages from its gfn, at most order 9) leaves the
/// domain's p2m and its page count, whole or not at all: every page of
/// it must be RAM the toolstack populated into that domain
/// (`populate_physmap`; a boot-built domain's own RAM, grant frames,
/// shared_info, foreign mappings and holes are not), else the call stops
/// there and returns the extents done, as Xen stops at a page it cannot
/// remove. A frame goes back to the allocator scrubbed, unless another
/// domain still maps it (a foreign or grant mapping) or a vCPU of the domain other
/// than the caller is on a CPU (it may still hold the old translation in
/// its TLB until its next entry, which flushes: the p2m's generation
/// moved): then it stays the domain's, out of its p2m and its count, and
/// is freed with the domain. Bad orders, counts
/// or flags: -EINVAL; a list keel cannot read: -EFAULT if nothing was done.
fn decrease_reservation(cx: &mut Ctx, start: u64, arg: u64) -> HcResult {
    let r: MemoryReservation = cx.mem().read_abi(arg)?;
    let d = cx.target(r.domid)?;
    if r.extent_order > 9 || r.mem_flags != 0 || r.nr_extents > MAX_EXTENTS {
        return Err(Errno::EINVAL);
    }
    let own = Arc::ptr_eq(&d, cx.dom);
    let pages = 1u64 << r.extent_order;
    let mut done = start.min(r.nr_extents);
    let mut freed = Vec::new();
    while done < r.nr_extents {
        let at = r.extent_start.addr().wrapping_add(8 * done);
        let gfn: u64 = match cx.mem().read_abi(at) {
            Ok(g) => g,
            Err(e) if done == start => return Err(e),
            Err(_) => break,
        };
        if gfn.checked_add(pages).is_none_or(|e| e > GFN_LIMIT) {
            break;
        }
        let _g = FOREIGN.lock();
        let hpas: Option<Vec<u64>> = (0..pages)
            .map(|i| {
                let h = d.mem.translate((gfn + i) << 12)? & !0xfff;
                d.tools.is_populated(h).then_some(h)
            })
            .collect();
        let Some(hpas) = hpas else {
            break;
        };
        let held = mapped_elsewhere(&d);
        for (i, &h) in hpas.iter().enumerate() {
            // Translated above under the same lock: mapped, so this unmaps.
            let _ = d.mem.unmap_4k((gfn + i as u64) << 12);
            d.tools.take_populated(h);
            if !held.contains(&h) {
                freed.push(h);
            }
        }
        d.uncharge_pages(pages);
        done += 1;
    }
    if own && done > start {
        cx.hw.flush_p2m();
    }
    // The unmaps moved the p2m generation (a locked RMW, a full barrier
    // on x86) before this reads where the vCPUs are: one that enters
    // later stores its CPU first, then sees the new generation and
    // flushes. One on a CPU now may still translate to the frames.
    core::sync::atomic::fence(Ordering::SeqCst);
    let quiet = d
        .vcpus
        .iter()
        .all(|v| (own && Arc::ptr_eq(v, cx.vcpu)) || v.running_on().is_none());
    if !quiet {
        freed.clear();
    }
    // Owned no more: freed here. The rest stays owned, freed with the domain.
    freed.retain(|&h| d.mem.disown(h));
    // Scrubbed outside the allocator's lock.
    for &h in &freed {
        phys::zero(h, 4096);
    }
    let mut f = phys::frames();
    for h in freed {
        f.free(h, 1);
    }
    Ok(Ret::Val(done))
}

/// `XENMEM_claim_pages` (the toolstack, before it populates a domain):
/// `nr_extents` is the number of pages the domain will hold, 0 cancels
/// the claim. As Xen's `domain_set_outstanding_pages`: one claim at a
/// time, for more pages than the domain holds and no more than its
/// `max_mem` (-EINVAL), and no more than is free (-ENOMEM). keel checks
/// and records the claim but sets nothing aside: other allocations may
/// still take the memory before `populate_physmap` does.
fn claim_pages(cx: &mut Ctx, start: u64, arg: u64) -> HcResult {
    if start != 0 {
        return Err(Errno::EINVAL);
    }
    let r: MemoryReservation = cx.mem().read_abi(arg)?;
    if !r.extent_start.is_null() || r.extent_order != 0 || r.mem_flags != 0 {
        return Err(Errno::EINVAL);
    }
    if !cx.dom.privileged {
        return Err(Errno::EPERM);
    }
    // Xen looks the domain up by its real id only (no DOMID_SELF).
    let d = crate::domain::table::get(r.domid)
        .filter(|d| !d.is_ending())
        .ok_or(Errno::EINVAL)?;
    let pages = r.nr_extents;
    if pages == 0 {
        d.tools.claimed.store(0, Ordering::Relaxed);
        return Ok(Ret::Val(0));
    }
    let held = d.tot_pages();
    if d.tools.claimed.load(Ordering::Relaxed) != 0 || pages <= held || pages > d.max_pages() {
        return Err(Errno::EINVAL);
    }
    let free = phys::frames().free_bytes() / 4096;
    if pages - held > free {
        return Err(Errno::ENOMEM);
    }
    d.tools.claimed.store(pages - held, Ordering::Relaxed);
    Ok(Ret::Val(0))
}
