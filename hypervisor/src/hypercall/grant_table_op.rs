//! GRANT_TABLE_OP: the table's size and version. Mapping and copying
//! grants (for backends) come with the split drivers: -ENOSYS.

use super::guest::put;
use super::{Ctx, HcResult, Ret};
use crate::xen::abi::{
    gnttabop, Errno, GntSt, GnttabGetVersion, GnttabQuerySize, GnttabSetVersion, DOMID_SELF,
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
        _ => return Err(cx.unimplemented(format_args!("grant_table_op {cmd}"))),
    }
    Ok(Ret::Val(0))
}
