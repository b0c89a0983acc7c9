//! VCPU_OP and SET_TIMER_OP: vCPU state queries, registered vcpu_info and
//! time areas, and Xen's single-shot vCPU timer.

use super::{Ctx, HcResult, Ret};
use crate::domain::Power;
use crate::xen::abi::{
    vcpuop, Errno, VcpuInfo, VcpuRegisterMemoryArea, VcpuRegisterVcpuInfo, VcpuSetSingleshotTimer,
    VcpuTimeInfo,
};
use core::mem::size_of;

pub fn call(cx: &mut Ctx, cmd: u64, vcpu: u64, arg: u64) -> HcResult {
    let target = cx.dom.vcpu(vcpu as usize).ok_or(Errno::ENOENT)?.clone();
    let me = target.id == cx.vcpu.id;
    let mem = cx.mem();
    let ret = match cmd {
        vcpuop::IS_UP => (target.st.lock().power == Power::Up) as u64,
        vcpuop::REGISTER_VCPU_INFO => {
            let r: VcpuRegisterVcpuInfo = mem.read_obj(arg)?;
            let size = size_of::<VcpuInfo>() as u64;
            if r.offset as u64 + size > 4096 || r.mfn >= cx.dom.mem.gfn_limit() {
                return Err(Errno::EINVAL);
            }
            let gpa = (r.mfn << 12) + r.offset as u64;
            if cx.dom.mem.translate(gpa).is_none() {
                return Err(Errno::EINVAL);
            }
            {
                let mut st = target.st.lock();
                if st.vcpu_info_gpa.is_some() {
                    return Err(Errno::EINVAL); // Xen allows it once
                }
                st.vcpu_info_gpa = Some(gpa);
            }
            cx.dom.update_time(&cx.dom.xen.lock());
            log::debug!("d{}: vCPU{} vcpu_info at {gpa:#x}", cx.dom.id, target.id);
            0
        }
        vcpuop::REGISTER_VCPU_TIME_MEMORY_AREA => {
            // A guest virtual address of a vcpu_time_info: keel resolves it
            // once, to the guest-physical page behind it (a kernel page).
            let r: VcpuRegisterMemoryArea = mem.read_obj(arg)?;
            let size = size_of::<VcpuTimeInfo>() as u64;
            if r.addr & 0xfff > 4096 - size {
                return Err(Errno::EINVAL);
            }
            let gpa = mem.gpa(r.addr, false)?;
            target.st.lock().time_area_gpa = Some(gpa);
            cx.dom.update_time(&cx.dom.xen.lock());
            0
        }
        vcpuop::SET_SINGLESHOT_TIMER if me => {
            let t: VcpuSetSingleshotTimer = mem.read_obj(arg)?;
            if t.flags & vcpuop::VCPU_SSHOTTMR_FUTURE != 0 && t.timeout_abs_ns < cx.dom.now_ns() {
                return Err(Errno::ETIME);
            }
            target.st.lock().xen_timer_ns = Some(t.timeout_abs_ns);
            0
        }
        vcpuop::STOP_SINGLESHOT_TIMER if me => {
            target.st.lock().xen_timer_ns = None;
            0
        }
        // Xen only lets a vCPU set its own timers.
        vcpuop::SET_SINGLESHOT_TIMER | vcpuop::STOP_SINGLESHOT_TIMER => return Err(Errno::EINVAL),
        // keel has no periodic vCPU timer to stop.
        vcpuop::STOP_PERIODIC_TIMER => 0,
        // Accepted; keel does not account steal time yet, so the area
        // stays as the guest left it (all zero).
        vcpuop::REGISTER_RUNSTATE_MEMORY_AREA => 0,
        _ => return Err(cx.unimplemented(format_args!("vcpu_op {cmd}"))),
    };
    Ok(Ret::Val(ret))
}

/// SET_TIMER_OP: absolute system time in ns for this vCPU's single-shot
/// timer; 0 cancels.
pub fn set_timer_op(cx: &mut Ctx, when: u64) -> HcResult {
    cx.vcpu.st.lock().xen_timer_ns = (when != 0).then_some(when);
    Ok(Ret::Val(0))
}
