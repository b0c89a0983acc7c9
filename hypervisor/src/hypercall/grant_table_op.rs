//! GRANT_TABLE_OP: the table's size, version and frames. Mapping and
//! copying grants (for backends) come with the split drivers: -ENOSYS.

use super::guest::put;
use super::{Ctx, HcResult, Ret};
use crate::xen::abi::{
    gnttabop, Errno, GntSt, GnttabGetVersion, GnttabQuerySize, GnttabSetVersion, GnttabSetupTable,
    DOMID_SELF,
};

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
