//! SCHED_OP: yield, block, poll and shutdown.

use super::{Ctx, HcResult, Ret};
use crate::domain::{Outcome, ShutdownReason, Wait};
use crate::xen::abi::{schedop, Errno, SchedPoll, SchedShutdown};

/// Xen's limit on the ports one SCHEDOP_poll waits on.
const MAX_POLL_PORTS: u32 = 128;

pub fn call(cx: &mut Ctx, cmd: u64, arg: u64) -> HcResult {
    match cmd {
        schedop::YIELD => {
            crate::sched::yield_(cx.vcpu.sched_ref());
            Ok(Ret::Val(0))
        }
        // Sleep until an event or a timer is due.
        schedop::BLOCK => Ok(Ret::Block(Wait::Halt)),
        schedop::POLL => poll(cx, arg),
        schedop::SHUTDOWN => {
            let s: SchedShutdown = cx.mem().read_obj(arg)?;
            let r = ShutdownReason::from_code(s.reason).ok_or(Errno::EINVAL)?;
            Ok(Ret::End(Outcome::Shutdown(r)))
        }
        _ => Err(cx.unimplemented(format_args!("sched_op {cmd}"))),
    }
}

/// SCHEDOP_poll: wait until one of the ports is pending, the timeout
/// (absolute system time, 0 = none) passes, or any upcall is due.
fn poll(cx: &mut Ctx, arg: u64) -> HcResult {
    let mem = cx.mem();
    let p: SchedPoll = mem.read_obj(arg)?;
    if p.nr_ports > MAX_POLL_PORTS {
        return Err(Errno::EINVAL);
    }
    let ports: alloc::vec::Vec<u32> = mem.read_array(p.ports, p.nr_ports as usize)?;
    {
        let xs = cx.dom.xen.lock();
        if ports.iter().any(|&port| !xs.chans.port_is_valid(port)) {
            return Err(Errno::EINVAL);
        }
    }
    let mut st = cx.vcpu.st.lock();
    st.poll = ports;
    st.poll_timeout_ns = (p.timeout != 0).then_some(p.timeout);
    Ok(Ret::Block(Wait::Poll))
}
