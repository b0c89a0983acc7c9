//! Grant tables, version 1: the hypervisor side of `GNTTABOP_*`.
//!
//! * [`GrantTable`]: one domain's table as a *granter*: its size
//!   (`setup_table`/`query_size`, frames grown on demand up to a maximum,
//!   default 32) and the active (pinned) entries that foreign mappings hold.
//!   The entries themselves live in guest memory and are passed in as
//!   `&mut [GrantEntryV1]`.
//! * [`MapTrack`]: one domain's mappings as a *mapper*: grant handles.
//! * [`map_grant_ref`] / [`unmap_grant_ref`]: Xen's validation and
//!   `GTF_reading`/`GTF_writing` bookkeeping, returning `GNTST_*` codes.
//! * [`check_copy`]: `GNTTABOP_copy` validation, producing what to copy.
//!
//! Version 2 is not supported: `set_version(2)` answers `-ENOSYS` (Linux
//! then stays on v1), `get_version` answers 1.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU16, AtomicU32, Ordering};

use super::abi::{
    gntcopy, gntmap, gtf, DomId, Errno, GntSt, GnttabCopy, GnttabCopyPtr, GrantEntryV1,
    GrantHandle, GrantRef, XenResult, DOMID_SELF, GRANT_ENTRIES_PER_FRAME_V1, PAGE_SIZE,
};

/// keel's default `max_grant_frames` (Xen's default too).
pub const DEFAULT_MAX_FRAMES: u32 = 32;
/// Frames a new table starts with.
pub const INITIAL_FRAMES: u32 = 1;
/// Default limit on one domain's grant handles (Xen: 1024 maptrack frames
/// of 256 entries).
pub const DEFAULT_MAX_MAPTRACK: u32 = 1024 * 256;

/// Largest number of pins one entry may hold (guards the counters).
const MAX_PINS: u32 = 1 << 24;

/// A pinned entry (Xen's `active_grant_entry`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Active {
    /// The mapping domain (fixed while pinned).
    domid: DomId,
    /// The frame, read from the entry at first pin.
    frame: u32,
    ro_pins: u32,
    rw_pins: u32,
}

/// One domain's grant table (granter side).
#[derive(Clone, Debug)]
pub struct GrantTable {
    nr_frames: u32,
    max_frames: u32,
    active: BTreeMap<GrantRef, Active>,
}

impl Default for GrantTable {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAMES)
    }
}

impl GrantTable {
    /// A table of [`INITIAL_FRAMES`] that may grow to `max_frames` (at
    /// least 1).
    pub fn new(max_frames: u32) -> Self {
        let max_frames = max_frames.max(1);
        GrantTable {
            nr_frames: INITIAL_FRAMES.min(max_frames),
            max_frames,
            active: BTreeMap::new(),
        }
    }

    pub fn nr_frames(&self) -> u32 {
        self.nr_frames
    }

    pub fn max_frames(&self) -> u32 {
        self.max_frames
    }

    /// Valid grant refs: `0..nr_entries()`.
    pub fn nr_entries(&self) -> u32 {
        self.nr_frames * GRANT_ENTRIES_PER_FRAME_V1 as u32
    }

    /// `GNTTABOP_query_size`: (nr_frames, max_nr_frames).
    pub fn query_size(&self) -> (u32, u32) {
        (self.nr_frames, self.max_frames)
    }

    /// `GNTTABOP_setup_table`: grow to at least `nr_frames` (never shrinks).
    /// The caller then writes the frames' GFNs to `frame_list`.
    pub fn setup_table(&mut self, nr_frames: u32) -> Result<(), GntSt> {
        if nr_frames > self.max_frames {
            return Err(GntSt::GeneralError);
        }
        self.nr_frames = self.nr_frames.max(nr_frames);
        Ok(())
    }

    /// `XENMEM_add_to_physmap` with `XENMAPSPACE_grant_table`, `idx`: grows
    /// the table to include frame `idx` (`-EINVAL` past the maximum; status
    /// frames are a v2 thing, also `-EINVAL`).
    pub fn map_frame(&mut self, idx: u64) -> XenResult<u32> {
        if idx >= self.max_frames as u64 {
            return Err(Errno::EINVAL);
        }
        let idx = idx as u32;
        self.nr_frames = self.nr_frames.max(idx + 1);
        Ok(idx)
    }

    /// `GNTTABOP_set_version`: only version 1.
    pub fn set_version(&self, version: u32) -> XenResult<u32> {
        match version {
            1 => Ok(1),
            2 => Err(Errno::ENOSYS),
            _ => Err(Errno::EINVAL),
        }
    }

    /// `GNTTABOP_get_version`.
    pub fn get_version(&self) -> u32 {
        1
    }

    /// Whether `gref` is pinned by a mapping.
    pub fn is_pinned(&self, gref: GrantRef) -> bool {
        self.active.contains_key(&gref)
    }

    /// (read-only pins, writable pins) of `gref`.
    pub fn pins(&self, gref: GrantRef) -> (u32, u32) {
        self.active
            .get(&gref)
            .map_or((0, 0), |a| (a.ro_pins, a.rw_pins))
    }

    /// Total pinned entries.
    pub fn nr_active(&self) -> usize {
        self.active.len()
    }
}

/// One live mapping held by a mapper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The granting domain.
    pub dom: DomId,
    pub gref: GrantRef,
    pub readonly: bool,
    /// Where it is mapped in the mapper (a GPA for PVH).
    pub host_addr: u64,
    /// The granted frame (a GFN of `dom`).
    pub frame: u32,
}

/// One domain's grant handles (mapper side).
#[derive(Clone, Debug)]
pub struct MapTrack {
    slots: Vec<Option<Mapping>>,
    free: Vec<GrantHandle>,
    max: u32,
}

impl Default for MapTrack {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_MAPTRACK)
    }
}

impl MapTrack {
    pub fn new(max: u32) -> Self {
        MapTrack {
            slots: Vec::new(),
            free: Vec::new(),
            max,
        }
    }

    pub fn get(&self, handle: GrantHandle) -> Option<&Mapping> {
        self.slots.get(handle as usize)?.as_ref()
    }

    /// Live mappings.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = (GrantHandle, &Mapping)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(h, m)| m.as_ref().map(|m| (h as GrantHandle, m)))
    }

    fn has_room(&self) -> bool {
        !self.free.is_empty() || (self.slots.len() as u64) < self.max as u64
    }

    fn insert(&mut self, m: Mapping) -> GrantHandle {
        if let Some(h) = self.free.pop() {
            self.slots[h as usize] = Some(m);
            h
        } else {
            self.slots.push(Some(m));
            (self.slots.len() - 1) as GrantHandle
        }
    }

    fn remove(&mut self, handle: GrantHandle) -> Option<Mapping> {
        let m = self.slots.get_mut(handle as usize)?.take()?;
        self.free.push(handle);
        Some(m)
    }
}

// The entry is shared with the granting guest, which may revoke it at any
// time: like Xen, the flags are updated with a compare-and-swap on the
// combined (flags, domid) word, retried a few times.
fn combo(e: &mut GrantEntryV1) -> &AtomicU32 {
    // SAFETY: `flags` and `domid` are the first 4 bytes of a 4-aligned
    // `repr(C)` struct (asserted in abi.rs); `e` is uniquely borrowed.
    unsafe { AtomicU32::from_ptr(e as *mut GrantEntryV1 as *mut u32) }
}

fn flags16(e: &mut GrantEntryV1) -> &AtomicU16 {
    // SAFETY: `flags` is a 2-aligned u16 uniquely borrowed through `e`.
    unsafe { AtomicU16::from_ptr(&mut e.flags) }
}

/// Xen's `_set_status_v1`: check an entry may be pinned by `mapper` and set
/// `GTF_reading` (+ `GTF_writing`).
fn pin_entry(
    e: &mut GrantEntryV1,
    mapper: DomId,
    readonly: bool,
    already_pinned: bool,
) -> Result<(), GntSt> {
    let word = combo(e);
    let mut cur = word.load(Ordering::SeqCst);
    for _ in 0..5 {
        let flags = cur as u16;
        let domid = (cur >> 16) as u16;
        if !already_pinned && ((flags & gtf::TYPE_MASK) != gtf::PERMIT_ACCESS || domid != mapper) {
            return Err(GntSt::GeneralError);
        }
        let mut new = flags | gtf::READING;
        if !readonly {
            if flags & gtf::READONLY != 0 {
                return Err(GntSt::GeneralError);
            }
            new |= gtf::WRITING;
        }
        let new_word = (cur & 0xffff_0000) | new as u32;
        match word.compare_exchange(cur, new_word, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return Ok(()),
            Err(seen) => cur = seen,
        }
    }
    // "Shared grant entry is unstable."
    Err(GntSt::GeneralError)
}

/// A granter's entries, by grant ref: a slice (the tests), or the host
/// frames behind a domain's table (the hypercall), which need not be
/// contiguous.
pub trait Entries {
    /// The entry of `gref`; `None` where the memory has none.
    fn entry(&mut self, gref: GrantRef) -> Option<&mut GrantEntryV1>;
}

impl Entries for [GrantEntryV1] {
    fn entry(&mut self, gref: GrantRef) -> Option<&mut GrantEntryV1> {
        self.get_mut(gref as usize)
    }
}

impl Entries for Vec<GrantEntryV1> {
    fn entry(&mut self, gref: GrantRef) -> Option<&mut GrantEntryV1> {
        self.get_mut(gref as usize)
    }
}

/// Result of a successful map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapped {
    pub handle: GrantHandle,
    /// The granter's frame to map at `host_addr` in the mapper.
    pub frame: u32,
}

/// The flags of a map op: `GNTMAP_host_map` or `GNTMAP_device_map` must be
/// set (`bad_gntref` otherwise, as Xen); device, application and
/// PTE-contained mappings are not for a translated mapper
/// (`general_error`).
pub fn check_map_flags(flags: u32) -> Result<(), GntSt> {
    if flags & (gntmap::HOST_MAP | gntmap::DEVICE_MAP) == 0 {
        return Err(GntSt::BadGntref);
    }
    // keel's domains are all translated (PVH): no device, application or
    // PTE-contained mappings, as Xen for HVM.
    if flags & (gntmap::DEVICE_MAP | gntmap::APPLICATION_MAP | gntmap::CONTAINS_PTE) != 0 {
        return Err(GntSt::GeneralError);
    }
    Ok(())
}

/// `GNTTABOP_map_grant_ref` validation and bookkeeping.
///
/// `granter_dom` has already been resolved (`GNTST_bad_domain` is the
/// caller's when it does not exist); `entries` is the granter's table memory
/// (at least `table.nr_entries()` long, or refs past its end are
/// `bad_gntref`). On success the caller maps `frame` at `host_addr` in the
/// mapper's p2m.
#[allow(clippy::too_many_arguments)]
pub fn map_grant_ref<E: Entries + ?Sized>(
    mapper_dom: DomId,
    maptrack: &mut MapTrack,
    granter_dom: DomId,
    table: &mut GrantTable,
    entries: &mut E,
    flags: u32,
    gref: GrantRef,
    host_addr: u64,
) -> Result<Mapped, GntSt> {
    check_map_flags(flags)?;
    if !maptrack.has_room() {
        return Err(GntSt::NoSpace);
    }
    if gref >= table.nr_entries() {
        return Err(GntSt::BadGntref);
    }
    let e = entries.entry(gref).ok_or(GntSt::BadGntref)?;
    let readonly = flags & gntmap::READONLY != 0;
    let act = table.active.get(&gref).copied();
    if let Some(a) = act {
        if a.domid != mapper_dom || a.ro_pins + a.rw_pins >= MAX_PINS {
            return Err(GntSt::GeneralError);
        }
    }
    if act.is_none() || (!readonly && act.is_some_and(|a| a.rw_pins == 0)) {
        pin_entry(e, mapper_dom, readonly, act.is_some())?;
    }
    let mut a = act.unwrap_or(Active {
        domid: mapper_dom,
        frame: e.frame,
        ro_pins: 0,
        rw_pins: 0,
    });
    if readonly {
        a.ro_pins += 1;
    } else {
        a.rw_pins += 1;
    }
    table.active.insert(gref, a);
    let handle = maptrack.insert(Mapping {
        dom: granter_dom,
        gref,
        readonly,
        host_addr,
        frame: a.frame,
    });
    Ok(Mapped {
        handle,
        frame: a.frame,
    })
}

/// The granter side handed to [`unmap_grant_ref`].
pub enum Granter<'a> {
    /// The granting domain's table and entry memory.
    Live(&'a mut GrantTable, &'a mut dyn Entries),
    /// The granting domain is gone: only the handle is released.
    Gone,
}

/// `GNTTABOP_unmap_grant_ref`: release `handle`. `host_addr`, when
/// non-zero, must be in the page where the grant is mapped (Xen compares
/// frames: the offset in the page does not matter). Clears `GTF_writing` when
/// the last writable mapping goes and `GTF_reading` when the last mapping
/// goes. Returns the mapping so the caller can drop it from the p2m.
///
/// Look the handle up first ([`MapTrack::get`]) to find the granter.
pub fn unmap_grant_ref(
    maptrack: &mut MapTrack,
    handle: GrantHandle,
    host_addr: u64,
    granter: Granter<'_>,
) -> Result<Mapping, GntSt> {
    let m = *maptrack.get(handle).ok_or(GntSt::BadHandle)?;
    if host_addr != 0 && host_addr >> 12 != m.host_addr >> 12 {
        return Err(GntSt::GeneralError);
    }
    maptrack.remove(handle);
    if let Granter::Live(table, entries) = granter {
        if let Some(a) = table.active.get_mut(&m.gref) {
            if m.readonly {
                a.ro_pins = a.ro_pins.saturating_sub(1);
            } else {
                a.rw_pins = a.rw_pins.saturating_sub(1);
            }
            let (ro, rw) = (a.ro_pins, a.rw_pins);
            let mut clear = 0;
            if rw == 0 {
                clear |= gtf::WRITING;
            }
            if ro + rw == 0 {
                clear |= gtf::READING;
                table.active.remove(&m.gref);
            }
            if let Some(e) = entries.entry(m.gref) {
                flags16(e).fetch_and(!clear, Ordering::SeqCst);
            }
        }
    }
    Ok(m)
}

/// One side of a validated copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyFrame {
    /// Whose memory.
    pub dom: DomId,
    /// A GFN of `dom`.
    pub gfn: u64,
    pub offset: u16,
}

/// What a `GNTTABOP_copy` element copies, once validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyPlan {
    pub src: CopyFrame,
    pub dst: CopyFrame,
    pub len: u16,
}

/// One side's grant table for [`check_copy`]: `None` when the side's domain
/// does not exist. Only consulted for a side that names a grant ref.
pub type CopyTable<'a> = Option<(&'a GrantTable, &'a [GrantEntryV1])>;

fn copy_side(
    copier: DomId,
    p: &GnttabCopyPtr,
    is_gref: bool,
    table: CopyTable<'_>,
    write: bool,
) -> Result<CopyFrame, GntSt> {
    // Only DOMID_SELF may be addressed by frame (Xen checks the literal
    // value: the copier's own numeric id is refused too).
    if !is_gref {
        if p.domid != DOMID_SELF {
            return Err(GntSt::PermissionDenied);
        }
        return Ok(CopyFrame {
            dom: copier,
            gfn: p.u,
            offset: p.offset,
        });
    }
    let (t, entries) = table.ok_or(GntSt::BadDomain)?;
    let gref = p.u as u32;
    if p.u > u32::MAX as u64 || gref >= t.nr_entries() || gref as usize >= entries.len() {
        return Err(GntSt::BadGntref);
    }
    let e = entries[gref as usize];
    // A pinned entry stays valid for its mapper even if the granter has
    // since changed the shared flags (Xen checks the active entry instead).
    let pinned_by_copier = t.active.get(&gref).is_some_and(|a| a.domid == copier);
    if !pinned_by_copier && ((e.flags & gtf::TYPE_MASK) != gtf::PERMIT_ACCESS || e.domid != copier)
    {
        return Err(GntSt::GeneralError);
    }
    if write && e.flags & gtf::READONLY != 0 {
        return Err(GntSt::GeneralError);
    }
    let frame = t.active.get(&gref).map_or(e.frame, |a| a.frame);
    Ok(CopyFrame {
        dom: if p.domid == DOMID_SELF {
            copier
        } else {
            p.domid
        },
        gfn: frame as u64,
        offset: p.offset,
    })
}

/// `GNTTABOP_copy` validation for one element issued by `copier`.
///
/// `src_table` / `dst_table` are the grant tables of `op.source.domid` /
/// `op.dest.domid` (with `DOMID_SELF` resolved to `copier` by the caller).
/// Errors: `bad_copy_arg` (crosses a page), `permission_denied` (a frame of
/// another domain), `bad_domain`, `bad_gntref`, `general_error` (entry not
/// granted to the copier, or read-only destination).
///
/// The hypercall (`grant_table_op::copy_one`) does not use this: the
/// granting guest may revoke an entry while keel copies, so it pins each
/// grant side with [`map_grant_ref`] for the length of the copy, as Xen's
/// `acquire_grant_for_copy` does, which makes the same checks.
pub fn check_copy(
    copier: DomId,
    op: &GnttabCopy,
    src_table: CopyTable<'_>,
    dst_table: CopyTable<'_>,
) -> Result<CopyPlan, GntSt> {
    let len = op.len as usize;
    if op.source.offset as usize + len > PAGE_SIZE || op.dest.offset as usize + len > PAGE_SIZE {
        return Err(GntSt::BadCopyArg);
    }
    let src = copy_side(
        copier,
        &op.source,
        op.flags & gntcopy::SOURCE_GREF != 0,
        src_table,
        false,
    )?;
    let dst = copy_side(
        copier,
        &op.dest,
        op.flags & gntcopy::DEST_GREF != 0,
        dst_table,
        true,
    )?;
    Ok(CopyPlan {
        src,
        dst,
        len: op.len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const A: DomId = 1; // granter
    const B: DomId = 2; // mapper

    fn setup() -> (GrantTable, Vec<GrantEntryV1>, MapTrack) {
        let t = GrantTable::new(4);
        let entries = vec![GrantEntryV1::default(); 4 * GRANT_ENTRIES_PER_FRAME_V1];
        (t, entries, MapTrack::default())
    }

    fn grant(e: &mut [GrantEntryV1], r: usize, to: DomId, frame: u32, ro: bool) {
        e[r] = GrantEntryV1 {
            flags: gtf::PERMIT_ACCESS | if ro { gtf::READONLY } else { 0 },
            domid: to,
            frame,
        };
    }

    #[test]
    fn sizes_and_versions() {
        let mut t = GrantTable::default();
        assert_eq!(t.query_size(), (1, 32));
        assert_eq!(t.nr_entries(), 512);
        assert_eq!(t.setup_table(4), Ok(()));
        assert_eq!(t.setup_table(2), Ok(()));
        assert_eq!(t.nr_frames(), 4);
        assert_eq!(t.setup_table(33), Err(GntSt::GeneralError));
        assert_eq!(t.map_frame(31), Ok(31));
        assert_eq!(t.nr_frames(), 32);
        assert_eq!(t.map_frame(32), Err(Errno::EINVAL));
        assert_eq!(t.map_frame(0x8000_0000), Err(Errno::EINVAL));
        assert_eq!(t.set_version(1), Ok(1));
        assert_eq!(t.set_version(2), Err(Errno::ENOSYS));
        assert_eq!(t.set_version(3), Err(Errno::EINVAL));
        assert_eq!(t.get_version(), 1);
    }

    #[test]
    fn map_unmap_flags() {
        let (mut t, mut e, mut mt) = setup();
        grant(&mut e, 10, B, 0x1234, false);
        let m1 =
            map_grant_ref(B, &mut mt, A, &mut t, &mut e, gntmap::HOST_MAP, 10, 0x1000).unwrap();
        assert_eq!(m1.frame, 0x1234);
        assert_eq!(
            e[10].flags,
            gtf::PERMIT_ACCESS | gtf::READING | gtf::WRITING
        );
        let m2 = map_grant_ref(
            B,
            &mut mt,
            A,
            &mut t,
            &mut e,
            gntmap::HOST_MAP | gntmap::READONLY,
            10,
            0x2000,
        )
        .unwrap();
        assert_ne!(m1.handle, m2.handle);
        assert_eq!(t.pins(10), (1, 1));
        // Wrong host_addr / bad handles.
        assert_eq!(
            unmap_grant_ref(&mut mt, m1.handle, 0x9000, Granter::Live(&mut t, &mut e)),
            Err(GntSt::GeneralError)
        );
        assert_eq!(
            unmap_grant_ref(&mut mt, 999, 0, Granter::Live(&mut t, &mut e)),
            Err(GntSt::BadHandle)
        );
        // Last writer goes: GTF_writing clears, reading stays.
        unmap_grant_ref(&mut mt, m1.handle, 0x1000, Granter::Live(&mut t, &mut e)).unwrap();
        assert_eq!(e[10].flags, gtf::PERMIT_ACCESS | gtf::READING);
        assert_eq!(
            unmap_grant_ref(&mut mt, m1.handle, 0, Granter::Live(&mut t, &mut e)),
            Err(GntSt::BadHandle)
        );
        unmap_grant_ref(&mut mt, m2.handle, 0, Granter::Live(&mut t, &mut e)).unwrap();
        assert_eq!(e[10].flags, gtf::PERMIT_ACCESS);
        assert!(!t.is_pinned(10));
        assert!(mt.is_empty());
    }

    #[test]
    fn hostile_maps() {
        let (mut t, mut e, mut mt) = setup();
        grant(&mut e, 3, B, 7, true);
        let h = gntmap::HOST_MAP;
        let map = |flags, r, mt: &mut MapTrack, t: &mut GrantTable, e: &mut [GrantEntryV1]| {
            map_grant_ref(B, mt, A, t, e, flags, r, 0)
        };
        // No host/device flag.
        assert_eq!(map(0, 3, &mut mt, &mut t, &mut e), Err(GntSt::BadGntref));
        assert_eq!(
            map(gntmap::DEVICE_MAP, 3, &mut mt, &mut t, &mut e),
            Err(GntSt::GeneralError)
        );
        // Out of range refs (table is 1 frame = 512 entries).
        assert_eq!(map(h, 512, &mut mt, &mut t, &mut e), Err(GntSt::BadGntref));
        assert_eq!(
            map(h, u32::MAX, &mut mt, &mut t, &mut e),
            Err(GntSt::BadGntref)
        );
        // Not granted / granted to someone else / read-only for writing.
        assert_eq!(map(h, 4, &mut mt, &mut t, &mut e), Err(GntSt::GeneralError));
        grant(&mut e, 5, 9, 7, false);
        assert_eq!(map(h, 5, &mut mt, &mut t, &mut e), Err(GntSt::GeneralError));
        assert_eq!(map(h, 3, &mut mt, &mut t, &mut e), Err(GntSt::GeneralError));
        e[6] = GrantEntryV1 {
            flags: gtf::ACCEPT_TRANSFER,
            domid: B,
            frame: 1,
        };
        assert_eq!(map(h, 6, &mut mt, &mut t, &mut e), Err(GntSt::GeneralError));
        // Nothing was pinned by the failures.
        assert_eq!(t.nr_active(), 0);
        assert!(mt.is_empty());
        assert_eq!(e[3].flags, gtf::PERMIT_ACCESS | gtf::READONLY);
        // Read-only works; then another domain cannot piggy-back the pin.
        map(h | gntmap::READONLY, 3, &mut mt, &mut t, &mut e).unwrap();
        let mut mt2 = MapTrack::default();
        assert_eq!(
            map_grant_ref(9, &mut mt2, A, &mut t, &mut e, h | gntmap::READONLY, 3, 0),
            Err(GntSt::GeneralError)
        );
        // Upgrading to write still honours GTF_readonly.
        assert_eq!(map(h, 3, &mut mt, &mut t, &mut e), Err(GntSt::GeneralError));
        // The entry memory shorter than the table: refs past it are bad.
        t.setup_table(4).unwrap();
        assert_eq!(
            map_grant_ref(B, &mut mt, A, &mut t, &mut e[..100], h, 200, 0),
            Err(GntSt::BadGntref)
        );
        // Handle exhaustion.
        let mut small = MapTrack::new(1);
        grant(&mut e, 20, B, 1, false);
        map_grant_ref(B, &mut small, A, &mut t, &mut e, h, 20, 0).unwrap();
        assert_eq!(
            map_grant_ref(B, &mut small, A, &mut t, &mut e, h, 20, 0),
            Err(GntSt::NoSpace)
        );
    }

    #[test]
    fn granter_gone_releases_handle() {
        let (mut t, mut e, mut mt) = setup();
        grant(&mut e, 1, B, 5, false);
        let m = map_grant_ref(B, &mut mt, A, &mut t, &mut e, gntmap::HOST_MAP, 1, 0).unwrap();
        let r = unmap_grant_ref(&mut mt, m.handle, 0, Granter::Gone).unwrap();
        assert_eq!((r.dom, r.gref, r.frame), (A, 1, 5));
        assert!(mt.is_empty());
    }

    fn copy_op(src: (u64, DomId, u16), dst: (u64, DomId, u16), len: u16, flags: u16) -> GnttabCopy {
        GnttabCopy {
            source: GnttabCopyPtr {
                u: src.0,
                domid: src.1,
                offset: src.2,
            },
            dest: GnttabCopyPtr {
                u: dst.0,
                domid: dst.1,
                offset: dst.2,
            },
            len,
            flags,
            status: 0,
        }
    }

    #[test]
    fn copy_validation() {
        let (t, mut e, _) = setup();
        grant(&mut e, 8, B, 0x77, false);
        grant(&mut e, 9, B, 0x78, true);
        let tab = Some((&t, &e[..]));
        // B copies from A's grant 8 into its own frame 0x500.
        let op = copy_op(
            (8, A, 16),
            (0x500, DOMID_SELF, 32),
            100,
            gntcopy::SOURCE_GREF,
        );
        let plan = check_copy(B, &op, tab, None).unwrap();
        assert_eq!(
            plan,
            CopyPlan {
                src: CopyFrame {
                    dom: A,
                    gfn: 0x77,
                    offset: 16
                },
                dst: CopyFrame {
                    dom: B,
                    gfn: 0x500,
                    offset: 32
                },
                len: 100
            }
        );
        // Into a read-only grant: refused; from it: fine.
        let op = copy_op((0x500, DOMID_SELF, 0), (9, A, 0), 8, gntcopy::DEST_GREF);
        assert_eq!(check_copy(B, &op, None, tab), Err(GntSt::GeneralError));
        let op = copy_op((9, A, 0), (0x500, DOMID_SELF, 0), 8, gntcopy::SOURCE_GREF);
        assert!(check_copy(B, &op, tab, None).is_ok());
        // Crossing the page.
        let op = copy_op(
            (8, A, 4000),
            (0x500, DOMID_SELF, 0),
            100,
            gntcopy::SOURCE_GREF,
        );
        assert_eq!(check_copy(B, &op, tab, None), Err(GntSt::BadCopyArg));
        let op = copy_op(
            (8, A, 0),
            (0x500, DOMID_SELF, 4095),
            2,
            gntcopy::SOURCE_GREF,
        );
        assert_eq!(check_copy(B, &op, tab, None), Err(GntSt::BadCopyArg));
        // Another domain's frame by gmfn, even its own numeric id.
        let op = copy_op((0x10, A, 0), (0x500, DOMID_SELF, 0), 8, 0);
        assert_eq!(check_copy(B, &op, None, None), Err(GntSt::PermissionDenied));
        let op = copy_op((0x10, DOMID_SELF, 0), (0x500, B, 0), 8, 0);
        assert_eq!(check_copy(B, &op, None, None), Err(GntSt::PermissionDenied));
        // Unknown domain, bad refs, not granted to the copier.
        let op = copy_op((8, 42, 0), (0x500, DOMID_SELF, 0), 8, gntcopy::SOURCE_GREF);
        assert_eq!(check_copy(B, &op, None, None), Err(GntSt::BadDomain));
        for r in [512u64, u32::MAX as u64, 1 << 40] {
            let op = copy_op((r, A, 0), (0x500, DOMID_SELF, 0), 8, gntcopy::SOURCE_GREF);
            assert_eq!(check_copy(B, &op, tab, None), Err(GntSt::BadGntref));
        }
        // Granted to B, copied by domain 9.
        let op = copy_op((8, A, 0), (0x500, DOMID_SELF, 0), 8, gntcopy::SOURCE_GREF);
        assert_eq!(check_copy(9, &op, tab, None), Err(GntSt::GeneralError));
    }

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
    fn randomized_map_unmap() {
        for seed in 1..=6u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let (mut t, mut e, mut mt) = setup();
            t.setup_table(2).unwrap();
            // Grant 64 refs to B (some read-only), a few to others.
            for r in 0..64usize {
                let to = if r % 13 == 0 { 9 } else { B };
                grant(&mut e, r, to, 0x1000 + r as u32, r % 5 == 0);
            }
            let mut live: Vec<(GrantHandle, Mapping)> = Vec::new();
            let mut ok_maps = 0;
            for step in 0..5000 {
                if rng.below(2) == 0 || live.is_empty() {
                    let r = match rng.below(10) {
                        0 => rng.next() as u32,
                        _ => rng.below(80) as u32,
                    };
                    let mut flags = gntmap::HOST_MAP;
                    if rng.below(2) == 0 {
                        flags |= gntmap::READONLY;
                    }
                    if rng.below(20) == 0 {
                        flags = rng.next() as u32 & 0x1f;
                    }
                    let addr = rng.next() & !0xfff;
                    match map_grant_ref(B, &mut mt, A, &mut t, &mut e, flags, r, addr) {
                        Ok(m) => {
                            ok_maps += 1;
                            let ent = e[r as usize];
                            assert_eq!(ent.domid, B);
                            assert!(
                                flags & gntmap::READONLY != 0 || ent.flags & gtf::READONLY == 0
                            );
                            live.push((m.handle, *mt.get(m.handle).unwrap()));
                        }
                        Err(s) => assert!(matches!(s, GntSt::BadGntref | GntSt::GeneralError)),
                    }
                } else {
                    let i = rng.below(live.len() as u64) as usize;
                    let (h, m) = live.swap_remove(i);
                    let addr = if rng.below(4) == 0 { 0 } else { m.host_addr };
                    assert_eq!(
                        unmap_grant_ref(&mut mt, h, addr, Granter::Live(&mut t, &mut e)),
                        Ok(m)
                    );
                    // A stale handle is refused (unless reused since).
                    if mt.get(h).is_none() {
                        assert_eq!(
                            unmap_grant_ref(&mut mt, h, 0, Granter::Live(&mut t, &mut e)),
                            Err(GntSt::BadHandle)
                        );
                    }
                }
                // Invariants: flags mirror the pin counts exactly.
                for r in 0..80u32 {
                    let (ro, rw) = live.iter().fold((0, 0), |(ro, rw), (_, m)| {
                        if m.gref != r {
                            (ro, rw)
                        } else if m.readonly {
                            (ro + 1, rw)
                        } else {
                            (ro, rw + 1)
                        }
                    });
                    assert_eq!(t.pins(r), (ro, rw), "seed {seed} step {step} ref {r}");
                    let f = e[r as usize].flags;
                    assert_eq!(f & gtf::READING != 0, ro + rw > 0);
                    assert_eq!(f & gtf::WRITING != 0, rw > 0);
                }
                assert_eq!(mt.len(), live.len());
            }
            assert!(ok_maps > 500, "seed {seed}: only {ok_maps} maps");
            for (h, _) in live.drain(..) {
                unmap_grant_ref(&mut mt, h, 0, Granter::Live(&mut t, &mut e)).unwrap();
            }
            assert_eq!(t.nr_active(), 0);
            assert!(e
                .iter()
                .all(|x| x.flags & (gtf::READING | gtf::WRITING) == 0));
        }
    }
}
