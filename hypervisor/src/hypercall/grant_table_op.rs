//! GRANT_TABLE_OP: the table's size, version and frames, and mapping
//! another domain's grants into the caller's physical address space
//! (`map_grant_ref`/`unmap_grant_ref`, as a PVH backend's gntdev, blkback
//! and netback do), and copying to and from granted pages (`copy`, as
//! netback does). Transferring grants: -ENOSYS.

use super::guest::put;
use super::memory_op::{mappable, FOREIGN};
use super::{Ctx, HcResult, Ret};
use crate::domain::{table, DomId, Domain, GrantMaps, XenState};
use crate::mm::p2m::Perm;
use crate::mm::phys;
use crate::xen::abi::{
    gntcopy, gntmap, gnttabop, Errno, GntSt, GnttabCopy, GnttabCopyPtr, GnttabGetVersion,
    GnttabMapGrantRef, GnttabQuerySize, GnttabSetVersion, GnttabSetupTable, GnttabUnmapGrantRef,
    GrantEntryV1, GrantHandle, GrantRef, DOMID_SELF, GRANT_ENTRIES_PER_FRAME_V1, PAGE_SIZE,
};
use crate::xen::grant::{self, Entries, Granter, MapTrack, Mapping};
use alloc::sync::Arc;
use core::mem::size_of;

pub fn call(cx: &mut Ctx, cmd: u64, arg: u64, count: u64) -> HcResult {
    let mem = cx.mem();
    let own = |d: u16| d == DOMID_SELF || d == cx.dom.id;
    match cmd {
        gnttabop::QUERY_SIZE => {
            if count != 1 {
                return Err(Errno::EINVAL);
            }
            let q: GnttabQuerySize = mem.read_obj(arg)?;
            if own(q.dom) {
                let (n, max) = cx.dom.xen.lock().grant.query_size();
                put!(mem, arg, GnttabQuerySize, nr_frames, n)?;
                put!(mem, arg, GnttabQuerySize, max_nr_frames, max)?;
                put!(mem, arg, GnttabQuerySize, status, GntSt::Okay.raw())?;
            } else {
                // Only its own table.
                put!(mem, arg, GnttabQuerySize, status, GntSt::GeneralError.raw())?;
            }
        }
        gnttabop::SET_VERSION => {
            let v: GnttabSetVersion = mem.read_obj(arg)?;
            let (r, now) = {
                let xs = cx.dom.xen.lock();
                (xs.grant.set_version(v.version), xs.grant.get_version())
            };
            put!(mem, arg, GnttabSetVersion, version, now)?;
            r?;
        }
        gnttabop::GET_VERSION => {
            let g: GnttabGetVersion = mem.read_obj(arg)?;
            if !own(g.dom) {
                return Err(Errno::EPERM);
            }
            let v = cx.dom.xen.lock().grant.get_version();
            put!(mem, arg, GnttabGetVersion, version, v)?;
        }
        gnttabop::SETUP_TABLE => {
            if count != 1 {
                return Err(Errno::EINVAL);
            }
            let st = setup_table(cx, arg)?;
            put!(mem, arg, GnttabSetupTable, status, st.raw())?;
        }
        gnttabop::MAP_GRANT_REF => map_grant_refs(cx, arg, count)?,
        gnttabop::UNMAP_GRANT_REF => unmap_grant_refs(cx, arg, count)?,
        gnttabop::COPY => copy_grants(cx, arg, count)?,
        _ => return Err(cx.unimplemented(format_args!("grant_table_op {cmd}"))),
    }
    Ok(Ret::Val(0))
}

/// `GNTTABOP_setup_table`, as Xen answers a translated (PVH) domain's
/// table: the table grows to `nr_frames`, and `frame_list` gets the gfn at
/// which each frame is mapped in the domain's p2m (`add_to_physmap` of
/// `XENMAPSPACE_grant_table`), `INVALID_GFN` where it is not. libxenguest
/// asks this of a domain it builds (its compat grant seed: map frame 0 at
/// a scratch gfn, ask where it is, foreign-map it, write the console and
/// xenstore grants). Another domain's table only for a privileged caller
/// (`GNTST_permission_denied`); none: `GNTST_bad_domain`; more frames than
/// the table may have: `GNTST_general_error`; a list keel cannot write:
/// `GNTST_bad_virt_addr`.
fn setup_table(cx: &Ctx, arg: u64) -> Result<GntSt, Errno> {
    let mem = cx.mem();
    let op: GnttabSetupTable = mem.read_obj(arg)?;
    let d = match cx.target(op.dom) {
        Ok(d) => d,
        Err(Errno::EPERM) => return Ok(GntSt::PermissionDenied),
        Err(_) => return Ok(GntSt::BadDomain),
    };
    let gfns = {
        let mut xs = d.xen.lock();
        if op.nr_frames > xs.grant.max_frames() {
            return Ok(GntSt::GeneralError);
        }
        if op.nr_frames > 0 && xs.grant.map_frame(u64::from(op.nr_frames) - 1).is_err() {
            return Ok(GntSt::GeneralError);
        }
        (0..op.nr_frames as usize)
            .map(|i| {
                xs.grant_gfns
                    .get(i)
                    .copied()
                    .unwrap_or(crate::domain::INVALID_GFN)
            })
            .collect::<alloc::vec::Vec<u64>>()
    };
    for (i, g) in gfns.iter().enumerate() {
        if mem
            .write_u64(op.frame_list.wrapping_add(8 * i as u64), *g)
            .is_err()
        {
            return Ok(GntSt::BadVirtAddr);
        }
    }
    Ok(GntSt::Okay)
}

/// The most map or unmap operations one call takes. Xen bounds a batch
/// only by preemption (it continues the call where it stopped), which keel
/// does not do; this bounds the time one call holds a CPU. Linux's
/// backends map a ring or a request's segments at a time, well below it.
pub const MAX_OPS: u64 = 4096;

/// A domain's grant entries, in place in the host frames behind its table
/// (`XenState::grant_frames`, allocated on first use, never freed before
/// the domain's memory).
struct FrameEntries<'a>(&'a [u64]);

impl Entries for FrameEntries<'_> {
    fn entry(&mut self, gref: GrantRef) -> Option<&mut GrantEntryV1> {
        let frame = *self.0.get(gref as usize / GRANT_ENTRIES_PER_FRAME_V1)?;
        let off = (gref as usize % GRANT_ENTRIES_PER_FRAME_V1) * size_of::<GrantEntryV1>();
        // SAFETY: `frame` is a 4 KiB frame keel allocated for the table and
        // the domain owns until its memory is dropped (the caller holds the
        // domain); the 8-byte entry is 8-aligned inside it and any bits are
        // a valid `GrantEntryV1`. keel touches entries only under the
        // domain's `xen` lock (one reference at a time, borrowed from
        // `self`); the guest writes them concurrently, which is why grant.rs
        // updates the flags with atomic operations.
        Some(unsafe { phys::obj::<GrantEntryV1>(frame + off as u64) })
    }
}

/// `GNTTABOP_map_grant_ref`: `count` ops from `arg`, in order, each with
/// its own status (and on success its handle and `dev_bus_addr`, the host
/// address of the frame, as Xen writes it). A list keel cannot read or
/// write: -EFAULT, the ops before it done.
fn map_grant_refs(cx: &mut Ctx, arg: u64, count: u64) -> Result<(), Errno> {
    if count > MAX_OPS {
        return Err(Errno::EINVAL);
    }
    let mut mapped = false;
    let mut res = Ok(());
    for i in 0..count {
        let at = arg.wrapping_add(i * size_of::<GnttabMapGrantRef>() as u64);
        let op: GnttabMapGrantRef = match cx.mem().read_obj(at) {
            Ok(op) => op,
            Err(e) => {
                res = Err(e);
                break;
            }
        };
        let st = match map_one(cx.dom, &op) {
            Ok((handle, hpa)) => {
                mapped = true;
                let mem = cx.mem();
                let w = put!(mem, at, GnttabMapGrantRef, handle, handle)
                    .and_then(|()| put!(mem, at, GnttabMapGrantRef, dev_bus_addr, hpa));
                if let Err(e) = w {
                    res = Err(e);
                    break;
                }
                GntSt::Okay
            }
            Err(st) => st,
        };
        if let Err(e) = put!(cx.mem(), at, GnttabMapGrantRef, status, st.raw()) {
            res = Err(e);
            break;
        }
    }
    // A new entry over a hole needs no flush; over one of dom0's 1:1
    // device pages it does (map_4k moved the p2m's generation for the
    // other vCPUs).
    if mapped {
        cx.hw.flush_p2m();
    }
    res
}

/// One map op by `mapper` (a translated domain, as every keel domain is):
/// the granter's frame (its gfn from the grant entry, through its p2m) at
/// the mapper's guest-physical `host_addr` (its page; Xen ignores the
/// offset), 4 KiB, read-only with `GNTMAP_readonly`. Returns the handle
/// and the host address of the frame.
///
/// Statuses: flags without `GNTMAP_host_map`/`device_map`: bad_gntref;
/// device, application or PTE mappings (not for a translated mapper):
/// general_error; no such domain, one ending, or the mapper itself:
/// bad_domain; no handle left: no_space; a ref past the table:
/// bad_gntref; an entry not granted to the mapper, read-only for a
/// writable map: general_error; an entry whose frame is not the granter's
/// own memory: bad_page (Xen's `get_paged_frame`); then, the grant being
/// good, `host_addr` not a hole of the mapper (its RAM, a grant already
/// there, past keel's gfns): general_error, as Xen's
/// `create_grant_p2m_mapping` answers a translated mapper (Xen's order: a
/// bad grant's status comes first, whatever the address).
fn map_one(mapper: &Arc<Domain>, op: &GnttabMapGrantRef) -> Result<(GrantHandle, u64), GntSt> {
    grant::check_map_flags(op.flags)?;
    let granter = table::get(op.dom)
        .filter(|d| !d.is_ending() && !Arc::ptr_eq(d, mapper))
        .ok_or(GntSt::BadDomain)?;
    let gfn = op.host_addr >> 12;
    let gpa = gfn << 12;
    // Under the lock decrease_reservation frees under: the granter's frame
    // is either seen mapped here, or no longer in the granter's p2m.
    let _held = FOREIGN.lock();
    // Asked now (it takes the mapper's locks, which must come before the
    // granter's) and answered last, once the grant is known good, as Xen's
    // create_grant_p2m_mapping: general_error where the page cannot go.
    // FOREIGN keeps the answer true until the mapping is recorded.
    let addr_ok = mappable(mapper, gfn, false).is_ok();
    let mut xs = granter.xen.lock();
    // Table frames not allocated yet hold no grants (all zero, as Xen's).
    let in_table = op.r#ref < xs.grant.nr_entries();
    if in_table && op.r#ref as usize / GRANT_ENTRIES_PER_FRAME_V1 >= xs.grant_frames.len() {
        return Err(GntSt::GeneralError);
    }
    let XenState {
        grant,
        grant_frames,
        ..
    } = &mut *xs;
    let mut entries = FrameEntries(grant_frames);
    let mut gm = mapper.grant_maps.lock();
    let m = grant::map_grant_ref(
        mapper.id,
        &mut gm.track,
        granter.id,
        grant,
        &mut entries,
        op.flags,
        op.r#ref,
        gpa,
    )?;
    let readonly = op.flags & gntmap::READONLY != 0;
    // Pinned already (by this mapper: pins are one domain's): the frame
    // found at the first pin, as Xen keeps it in the active entry, even if
    // the granter has changed its p2m since.
    let (ro, rw) = grant.pins(op.r#ref);
    let pinned = (ro + rw > 1)
        .then(|| pinned_frame(&gm, granter.id, op.r#ref, Some(m.handle)))
        .flatten();
    let hpa = pinned
        .or_else(|| own_frame(&granter, u64::from(m.frame)))
        .ok_or(GntSt::BadPage)
        .and_then(|hpa| {
            if !addr_ok {
                return Err(GntSt::GeneralError);
            }
            let perm = if readonly { Perm::R } else { Perm::RW };
            // Only -ENOMEM for a p2m table (Xen: general_error).
            mapper
                .mem
                .map_4k(gpa, hpa, perm)
                .map(|()| hpa)
                .map_err(|_| GntSt::GeneralError)
        });
    let hpa = match hpa {
        Ok(h) => h,
        Err(st) => {
            // Undone: the pin and the handle go again.
            let _ = grant::unmap_grant_ref(
                &mut gm.track,
                m.handle,
                0,
                Granter::Live(grant, &mut entries),
            );
            return Err(st);
        }
    };
    gm.held.insert(m.handle, (granter.clone(), hpa));
    gm.at.insert(gfn, m.handle);
    Ok((m.handle, hpa))
}

/// The host frame `maps` holds for its mapping of `granter`'s `gref` (other
/// than handle `except`), if it maps it.
fn pinned_frame(
    maps: &GrantMaps,
    granter: DomId,
    gref: GrantRef,
    except: Option<GrantHandle>,
) -> Option<u64> {
    maps.track
        .iter()
        .find(|(h, x)| Some(*h) != except && x.dom == granter && x.gref == gref)
        .and_then(|(h, _)| maps.held.get(&h))
        .map(|held| held.1)
}

/// The host frame behind `granter`'s gfn `gfn`, if it is the granter's own
/// memory: not a page it maps from another domain (foreign or granted: Xen
/// refuses to grant those on), nor, for dom0, a device page it sees 1:1
/// ("HVM guests can't grant map iomem"). Called under [`FOREIGN`] (it
/// takes the granter's `grant_maps` while the caller holds the mapper's:
/// every path that holds two domains' `grant_maps` holds `FOREIGN`).
fn own_frame(granter: &Domain, gfn: u64) -> Option<u64> {
    if gfn >= 1 << 36
        || granter.foreign.lock().contains_key(&gfn)
        || granter.grant_maps.lock().at.contains_key(&gfn)
    {
        return None;
    }
    let hpa = granter.mem.translate(gfn << 12)? & !0xfff;
    if granter.mem.identity && !crate::mm::host_ram(hpa) {
        return None;
    }
    Some(hpa)
}

/// `GNTTABOP_unmap_grant_ref`: `count` ops from `arg`, in order, each with
/// its own status; then the caller's p2m is flushed. A list keel cannot
/// read or write: -EFAULT, the ops before it done.
fn unmap_grant_refs(cx: &mut Ctx, arg: u64, count: u64) -> Result<(), Errno> {
    if count > MAX_OPS {
        return Err(Errno::EINVAL);
    }
    let mut unmapped = false;
    let mut res = Ok(());
    for i in 0..count {
        let at = arg.wrapping_add(i * size_of::<GnttabUnmapGrantRef>() as u64);
        let op: GnttabUnmapGrantRef = match cx.mem().read_obj(at) {
            Ok(op) => op,
            Err(e) => {
                res = Err(e);
                break;
            }
        };
        let st = match unmap_one(cx.dom, &op) {
            Ok(done) => {
                unmapped |= done;
                GntSt::Okay
            }
            Err(st) => st,
        };
        if let Err(e) = put!(cx.mem(), at, GnttabUnmapGrantRef, status, st.raw()) {
            res = Err(e);
            break;
        }
    }
    if unmapped {
        // This vCPU flushes before it re-enters; the others flush at their
        // next entry (the p2m's generation moved), and are kicked out of
        // the guest to get there soon.
        cx.hw.flush_p2m();
        let me = crate::platform::cpu_index();
        for v in &cx.dom.vcpus {
            if let Some(cpu) = v.running_on().filter(|&c| c != me) {
                if !Arc::ptr_eq(v, cx.vcpu) {
                    crate::platform::kick_cpu(cpu);
                }
            }
        }
    }
    res
}

/// One unmap op: true when a mapping went. A handle that maps nothing:
/// bad_handle; `host_addr` not in the page the grant is mapped at:
/// general_error. As Xen, a `host_addr` of 0 undoes nothing of a host
/// mapping (only a device mapping, which keel has none of): okay, the
/// handle stays.
fn unmap_one(mapper: &Arc<Domain>, op: &GnttabUnmapGrantRef) -> Result<bool, GntSt> {
    let (m, granter) = {
        let gm = mapper.grant_maps.lock();
        let m = *gm.track.get(op.handle).ok_or(GntSt::BadHandle)?;
        let g = gm.held.get(&op.handle).ok_or(GntSt::BadHandle)?.0.clone();
        (m, g)
    };
    if op.host_addr == 0 {
        return Ok(false);
    }
    release(mapper, op.handle, op.host_addr, &m, &granter)?;
    Ok(true)
}

/// Releases `mapper`'s grant handle `handle`, found mapping `m` of
/// `granter`: the granter's pin goes (its `GTF_reading`/`GTF_writing` clear
/// with the last mapping; a granter that is ending keeps its pins, only
/// the handle goes), the page leaves the mapper's p2m and the granter is no
/// longer held by it. The granter's `xen` lock is taken before the mapper's
/// `grant_maps`, so the handle is looked at again under both:
/// bad_handle if another vCPU unmapped (or reused) it meanwhile.
fn release(
    mapper: &Domain,
    handle: GrantHandle,
    host_addr: u64,
    m: &Mapping,
    granter: &Arc<Domain>,
) -> Result<(), GntSt> {
    let hold = {
        let mut xs = granter.xen.lock();
        let mut gm = mapper.grant_maps.lock();
        let same = gm.track.get(handle) == Some(m)
            && gm
                .held
                .get(&handle)
                .is_some_and(|(g, _)| Arc::ptr_eq(g, granter));
        if !same {
            return Err(GntSt::BadHandle);
        }
        let XenState {
            grant,
            grant_frames,
            ..
        } = &mut *xs;
        let mut entries = FrameEntries(grant_frames);
        let side = if granter.is_ending() {
            Granter::Gone
        } else {
            Granter::Live(grant, &mut entries)
        };
        let m = grant::unmap_grant_ref(&mut gm.track, handle, host_addr, side)?;
        gm.at.remove(&(m.host_addr >> 12));
        let _ = mapper.mem.unmap_4k(m.host_addr & !0xfff);
        gm.held.remove(&handle)
    };
    // The last hold on a destroyed granter frees its memory: here, with
    // no lock held.
    drop(hold);
    Ok(())
}

/// Releases every grant `d` maps (it is finished: none of its vCPUs is on
/// a CPU), as Xen's `gnttab_release_mappings`.
pub fn release_grant_maps(d: &Domain) {
    loop {
        let next = {
            let gm = d.grant_maps.lock();
            let first = gm.track.iter().next().map(|(h, m)| (h, *m));
            first.and_then(|(h, m)| Some((h, m, gm.held.get(&h)?.0.clone())))
        };
        let Some((h, m, granter)) = next else {
            break;
        };
        if release(d, h, m.host_addr, &m, &granter).is_err() {
            // Cannot happen (nothing else runs for `d` now); never loop.
            log::warn!("d{}: grant handle {h} not released", d.id);
            break;
        }
    }
}

/// `GNTTABOP_copy`: `count` ops of `gnttab_copy` (at most [`MAX_OPS`]) in
/// order, each with its own status. A list keel cannot read or write:
/// -EFAULT, the ops before it done.
fn copy_grants(cx: &mut Ctx, arg: u64, count: u64) -> Result<(), Errno> {
    if count > MAX_OPS {
        return Err(Errno::EINVAL);
    }
    // The pins of one op's two sides, kept for the whole call: a track
    // reused op after op allocates nothing after the first.
    let mut tracks = [MapTrack::new(1), MapTrack::new(1)];
    for i in 0..count {
        let at = arg.wrapping_add(i * size_of::<GnttabCopy>() as u64);
        let op: GnttabCopy = cx.mem().read_obj(at)?;
        let st = match copy_one(cx.dom, &op, &mut tracks) {
            Ok(()) => GntSt::Okay,
            Err(st) => st,
        };
        put!(cx.mem(), at, GnttabCopy, status, st.raw())?;
    }
    Ok(())
}

/// The domain one side of a copy names: by frame only `DOMID_SELF`
/// (permission_denied otherwise, even the copier's own id, as Xen); a
/// grant of `DOMID_SELF` or of any domain that exists and is not ending
/// (bad_domain otherwise).
fn copy_domain(
    copier: &Arc<Domain>,
    p: &GnttabCopyPtr,
    is_gref: bool,
) -> Result<Arc<Domain>, GntSt> {
    if !is_gref && p.domid != DOMID_SELF {
        return Err(GntSt::PermissionDenied);
    }
    if p.domid == DOMID_SELF {
        return Ok(copier.clone());
    }
    table::get(p.domid)
        .filter(|d| !d.is_ending())
        .ok_or(GntSt::BadDomain)
}

/// One side of a copy, claimed: the host frame, and for a grant the pin
/// that holds it (its handle in the side's own maptrack, released after
/// the copy).
struct Claim {
    dom: Arc<Domain>,
    hpa: u64,
    pin: Option<GrantHandle>,
}

/// Claims one side: a grant is pinned for the copier as a map would pin it
/// (`GTF_reading`, and `GTF_writing` for the destination), so the granter
/// sees it in use until the copy is done, as Xen's
/// `acquire_grant_for_copy`; a frame of the copier's must be its own
/// memory. Statuses as for a map (bad_gntref, general_error), and
/// bad_page for a frame that is not the domain's own memory. Under
/// [`FOREIGN`], so no frame is freed while claimed.
fn claim(
    copier: &Arc<Domain>,
    dom: Arc<Domain>,
    p: &GnttabCopyPtr,
    is_gref: bool,
    write: bool,
    track: &mut MapTrack,
) -> Result<Claim, GntSt> {
    if !is_gref {
        let hpa = own_frame(&dom, p.u).ok_or(GntSt::BadPage)?;
        return Ok(Claim {
            dom,
            hpa,
            pin: None,
        });
    }
    // A ref is the low 32 bits of the union (Xen reads `u.ref`).
    let gref = p.u as GrantRef;
    let flags = gntmap::HOST_MAP | if write { 0 } else { gntmap::READONLY };
    let (m, already) = {
        let mut xs = dom.xen.lock();
        if gref < xs.grant.nr_entries()
            && gref as usize / GRANT_ENTRIES_PER_FRAME_V1 >= xs.grant_frames.len()
        {
            return Err(GntSt::GeneralError);
        }
        let XenState {
            grant,
            grant_frames,
            ..
        } = &mut *xs;
        let m = grant::map_grant_ref(
            copier.id,
            track,
            dom.id,
            grant,
            &mut FrameEntries(grant_frames),
            flags,
            gref,
            0,
        )?;
        let (ro, rw) = grant.pins(gref);
        (m, ro + rw > 1)
    };
    // Pinned already by one of the copier's mappings: that mapping's frame.
    let mapped = already
        .then(|| pinned_frame(&copier.grant_maps.lock(), dom.id, gref, None))
        .flatten();
    let hpa = mapped.or_else(|| own_frame(&dom, u64::from(m.frame)));
    let c = Claim {
        dom,
        hpa: hpa.unwrap_or(0),
        pin: Some(m.handle),
    };
    if hpa.is_none() {
        unclaim(c, track);
        return Err(GntSt::BadPage);
    }
    Ok(c)
}

/// Releases a side's pin from its `track` (`GTF_reading`/`GTF_writing`
/// clear with the last pin).
fn unclaim(c: Claim, track: &mut MapTrack) {
    if let Some(handle) = c.pin {
        let mut xs = c.dom.xen.lock();
        let XenState {
            grant,
            grant_frames,
            ..
        } = &mut *xs;
        let mut entries = FrameEntries(grant_frames);
        let _ = grant::unmap_grant_ref(track, handle, 0, Granter::Live(grant, &mut entries));
    }
}

/// One copy op by `copier`: `len` bytes from the source to the
/// destination, each a grant (`GNTCOPY_*_gref`) or a frame of the
/// copier's own (`DOMID_SELF` only), neither crossing its page
/// (bad_copy_arg). Domains are looked up first (source, then destination),
/// then the sides are claimed, then the bounds checked, in Xen's order.
fn copy_one(
    copier: &Arc<Domain>,
    op: &GnttabCopy,
    [src_track, dst_track]: &mut [MapTrack; 2],
) -> Result<(), GntSt> {
    let src_gref = op.flags & gntcopy::SOURCE_GREF != 0;
    let dst_gref = op.flags & gntcopy::DEST_GREF != 0;
    let src_dom = copy_domain(copier, &op.source, src_gref)?;
    let dst_dom = copy_domain(copier, &op.dest, dst_gref)?;
    // Frames are not freed (decrease_reservation) while claimed.
    let _held = FOREIGN.lock();
    let src = claim(copier, src_dom, &op.source, src_gref, false, src_track)?;
    let dst = match claim(copier, dst_dom, &op.dest, dst_gref, true, dst_track) {
        Ok(d) => d,
        Err(st) => {
            unclaim(src, src_track);
            return Err(st);
        }
    };
    let len = op.len as usize;
    let r = if op.source.offset as usize + len > PAGE_SIZE
        || op.dest.offset as usize + len > PAGE_SIZE
    {
        Err(GntSt::BadCopyArg)
    } else {
        // A memmove: source and destination may be the same frame.
        phys::copy(
            src.hpa + u64::from(op.source.offset),
            dst.hpa + u64::from(op.dest.offset),
            len,
        );
        Ok(())
    };
    unclaim(src, src_track);
    unclaim(dst, dst_track);
    r
}
