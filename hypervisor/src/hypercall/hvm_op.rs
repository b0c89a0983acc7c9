//! HVM_OP: HVM parameters and the per-vCPU event-channel upcall vector.

use super::{Ctx, HcResult, Ret};
use crate::xen::abi::{hvm_param, hvmop, Errno, XenHvmEvtchnUpcallVector, XenHvmParam, DOMID_SELF};
use core::sync::atomic::Ordering;

pub fn call(cx: &mut Ctx, cmd: u64, arg: u64) -> HcResult {
    let mem = cx.mem();
    match cmd {
        hvmop::SET_PARAM | hvmop::GET_PARAM => {
            let p: XenHvmParam = mem.read_obj(arg)?;
            if p.domid != DOMID_SELF && p.domid != cx.dom.id {
                return Err(Errno::EPERM);
            }
            let index = p.index as usize;
            let mut xs = cx.dom.xen.lock();
            let slot = xs.params.get_mut(index).ok_or(Errno::EINVAL)?;
            if cmd == hvmop::SET_PARAM {
                *slot = p.value;
                // CALLBACK_IRQ of type 2 (vector) names the upcall vector.
                if index == hvm_param::CALLBACK_IRQ as usize && p.value >> 56 == 2 {
                    cx.dom
                        .callback_vector
                        .store(p.value as u8, Ordering::Relaxed);
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
