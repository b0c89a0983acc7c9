//! HVM_OP: HVM parameters (a guest's own, within what Xen lets a guest
//! touch; any domain's for the toolstack) and the per-vCPU event-channel
//! upcall vector.

use super::{Ctx, HcResult, Ret};
use crate::xen::abi::shutdown::SOFT_RESET;
use crate::xen::abi::{hvm_param, hvmop, Errno, XenHvmEvtchnUpcallVector, XenHvmParam};
use alloc::sync::Arc;
use core::sync::atomic::Ordering;

/// Params a guest may set in itself (Xen's `hvm_allow_set_param`).
const GUEST_SET: &[u32] = &[
    hvm_param::CALLBACK_IRQ,
    hvm_param::VM86_TSS,
    hvm_param::VM86_TSS_SIZED,
    hvm_param::ACPI_IOPORTS_LOCATION,
    hvm_param::VM_GENERATION_ID_ADDR,
    hvm_param::STORE_EVTCHN,
    hvm_param::CONSOLE_EVTCHN,
    hvm_param::X87_FIP_WIDTH,
];

/// Params a guest may read in itself (Xen's `hvm_allow_get_param`): the
/// settable ones and where its rings are.
const GUEST_GET: &[u32] = &[
    hvm_param::STORE_PFN,
    hvm_param::CONSOLE_PFN,
    hvm_param::ALTP2M,
];

/// Params that keep their first non-zero value.
const SET_ONCE: &[u32] = &[
    hvm_param::VIRIDIAN,
    hvm_param::IOREQ_SERVER_PFN,
    hvm_param::NR_IOREQ_SERVER_PAGES,
    hvm_param::ALTP2M,
    hvm_param::MCA_CAP,
];

fn guest_may(index: u32, set: bool) -> bool {
    GUEST_SET.contains(&index) || (!set && GUEST_GET.contains(&index))
}

pub fn call(cx: &mut Ctx, cmd: u64, arg: u64) -> HcResult {
    let mem = cx.mem();
    match cmd {
        hvmop::SET_PARAM | hvmop::GET_PARAM => {
            let p: XenHvmParam = mem.read_obj(arg)?;
            let d = cx.target(p.domid)?;
            let own = Arc::ptr_eq(&d, cx.dom);
            let set = cmd == hvmop::SET_PARAM;
            if p.index >= hvm_param::NR_PARAMS {
                return Err(Errno::EINVAL);
            }
            // As Xen's hvm_allow_{set,get}_param: a domain reaches only
            // the params a guest may touch in itself; the rest are the
            // toolstack's, on other domains.
            if own && !guest_may(p.index, set) {
                return Err(Errno::EPERM);
            }
            let index = p.index as usize;
            let mut xs = d.xen.lock();
            let slot = xs.params.get_mut(index).ok_or(Errno::EINVAL)?;
            if set {
                // Set once: a second, different value is -EEXIST.
                if SET_ONCE.contains(&p.index) && *slot != 0 && *slot != p.value {
                    return Err(Errno::EEXIST);
                }
                // A shutdown code (Xen's SHUTDOWN_MAX is soft_reset).
                if p.index == hvm_param::TRIPLE_FAULT_REASON && p.value > SOFT_RESET as u64 {
                    return Err(Errno::EINVAL);
                }
                *slot = p.value;
                // CALLBACK_IRQ of type 2 (vector) names the upcall vector.
                if index == hvm_param::CALLBACK_IRQ as usize && p.value >> 56 == 2 {
                    d.callback_vector.store(p.value as u8, Ordering::Relaxed);
                }
            } else {
                let v = *slot;
                drop(xs);
                super::guest::put!(mem, arg, XenHvmParam, value, v)?;
            }
            Ok(Ret::Val(0))
        }
        hvmop::SET_EVTCHN_UPCALL_VECTOR => {
            let u: XenHvmEvtchnUpcallVector = mem.read_obj(arg)?;
            if u.vector < 16 {
                return Err(Errno::EINVAL);
            }
            let v = cx.dom.vcpu(u.vcpu as usize).ok_or(Errno::ENOENT)?;
            v.st.lock().lapic_upcall = Some(u.vector);
            Ok(Ret::Val(0))
        }
        _ => Err(cx.unimplemented(format_args!("hvm_op {cmd}"))),
    }
}
