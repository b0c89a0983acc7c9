//! MULTICALL: a batch of hypercalls, each entry's result written back into
//! it (Xen's `do_multicall`). libxc issues every `memory_op` as a
//! one-entry multicall on 64-bit Linux (the privcmd ioctl returns an
//! `int`; the entry's `result` holds the whole `long`), so a toolstack's
//! claim, populate_physmap and memory map reach keel through here.

use super::guest::put;
use super::{Ctx, HcResult, Ret};
use crate::xen::abi::{Errno, Hypercall, MulticallEntry};
use core::mem::size_of;

/// The most entries one call takes: Xen bounds a batch only by preemption,
/// which keel does not do; this bounds the time one batch holds a CPU.
pub const MAX_CALLS: u64 = 4096;

/// Runs entries `0..nr` of the list at `list` in order. A list keel cannot
/// read or write back: -EFAULT (the entries before it are done). A call
/// in the batch that would block the vCPU (SCHEDOP_block, poll) returns
/// at once with 0, a wake-up the ABI allows; one that ends the domain
/// ends it there. A nested multicall's result is -EINVAL, an unknown
/// hypercall's -ENOSYS.
pub fn call(cx: &mut Ctx, list: u64, nr: u64) -> HcResult {
    let nr = nr & 0xffff_ffff;
    if nr > MAX_CALLS {
        return Err(Errno::EINVAL);
    }
    for i in 0..nr {
        let at = list.wrapping_add(i * size_of::<MulticallEntry>() as u64);
        let e: MulticallEntry = cx.mem().read_obj(at)?;
        let a = [e.args[0], e.args[1], e.args[2], e.args[3], e.args[4]];
        let r = match Hypercall::from_u64(e.op) {
            Some(Hypercall::Multicall) => Err(Errno::EINVAL),
            Some(c) => super::xen(cx, c, a),
            None => Err(Errno::ENOSYS),
        };
        let result = match r {
            Ok(Ret::Val(v)) => v,
            Ok(Ret::Block(_)) => 0,
            Ok(end @ Ret::End(_)) => return Ok(end),
            Err(e) => e.to_ret() as u64,
        };
        put!(cx.mem(), at, MulticallEntry, result, result)?;
    }
    Ok(Ret::Val(0))
}
