//! PLATFORM_OP (dom0 only): the physical CPUs and setting the wall clock.
//! Others (firmware info, power management, ...): -ENOSYS.

use super::guest::put;
use super::{Ctx, HcResult, Ret};
use crate::xen::abi::{
    platform_op as pf, Errno, XenPlatformOpHdr, XenpfPcpuinfo, XenpfSettime32, XenpfSettime64,
};

/// The union `u` of `struct xen_platform_op`.
const U: u64 = 8;

pub fn call(cx: &mut Ctx, arg: u64) -> HcResult {
    if !cx.dom.privileged {
        return Err(Errno::EPERM);
    }
    let mem = cx.mem();
    let h: XenPlatformOpHdr = mem.read_obj(arg)?;
    if h.interface_version != pf::INTERFACE_VERSION {
        return Err(Errno::EACCES);
    }
    match h.cmd {
        pf::SETTIME32 => {
            let t: XenpfSettime32 = mem.read_obj(arg + U)?;
            settime(cx, t.secs as u64, t.nsecs, t.system_time)
        }
        pf::SETTIME64 => {
            let t: XenpfSettime64 = mem.read_obj(arg + U)?;
            if t.mbz != 0 {
                return Err(Errno::EINVAL);
            }
            settime(cx, t.secs, t.nsecs, t.system_time)
        }
        pf::GET_CPUINFO => {
            let p: XenpfPcpuinfo = mem.read_obj(arg + U)?;
            let n = crate::platform::cpu_count() as u32;
            let (flags, apic) = match crate::platform::apic_id_of(p.xen_cpuid as usize)
                .filter(|_| p.xen_cpuid < n)
            {
                Some(a) => (pf::PCPU_ONLINE, a),
                None => (pf::PCPU_INVALID, 0),
            };
            let at = arg + U;
            put!(mem, at, XenpfPcpuinfo, max_present, n - 1)?;
            put!(mem, at, XenpfPcpuinfo, flags, flags)?;
            put!(mem, at, XenpfPcpuinfo, apic_id, apic)?;
            put!(mem, at, XenpfPcpuinfo, acpi_id, p.xen_cpuid)?;
            Ok(Ret::Val(0))
        }
        cmd => Err(cx.unimplemented(format_args!("platform_op {cmd}"))),
    }
}

fn settime(cx: &Ctx, secs: u64, nsecs: u32, system_time: u64) -> HcResult {
    if nsecs >= 1_000_000_000 {
        return Err(Errno::EINVAL);
    }
    let xs = cx.dom.xen.lock();
    cx.dom.set_wallclock(&xs, secs, nsecs, system_time);
    Ok(Ret::Val(0))
}
