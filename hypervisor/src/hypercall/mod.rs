//! Hypercalls: the Xen ABI's, as a domain's
//! vCPU issues them with VMCALL/VMMCALL. RAX = number, arguments in RDI,
//! RSI, RDX, R10, R8; the result in RAX.
//!
//! One file per family; each decodes its arguments into the typed
//! `#[repr(C)]` structs of [`crate::xen::abi`] through the one accessor of
//! the caller's memory ([`guest::GuestVirt`]), so a bad pointer is an
//! -EFAULT and never a fault in keel. Numbers and sub-ops keel does not
//! implement answer -ENOSYS and are counted. The dispatcher is plain Rust:
//! host tests run it against domains in fake physical memory.

pub mod guest;

mod console_io;
mod domctl;
mod domctl_settings;
mod event_channel_op;
mod grant_table_op;
pub mod host;
mod hvm_op;
mod hvmctx;
mod memory_op;
mod multicall;
mod platform_op;
mod sched_op;
pub mod sysctl;
#[cfg(test)]
mod tests;
mod vcpu_op;
mod xen_version;

use crate::domain::{Domain, Outcome, Vcpu, Wait};
use crate::hvm::vcpu::Vcpu as HwVcpu;
use crate::xen::abi::{Errno, Hypercall};
use alloc::sync::Arc;
use core::sync::atomic::Ordering;
pub use grant_table_op::release_grant_maps;
use guest::GuestVirt;

/// The call being served: the domain, the calling vCPU and its hardware
/// state (registers, paging mode).
pub struct Ctx<'a> {
    pub dom: &'a Arc<Domain>,
    pub vcpu: &'a Arc<Vcpu>,
    pub hw: &'a mut dyn HwVcpu,
}

impl Ctx<'_> {
    /// The argument of a toolstack call (sysctl, domctl): only a privileged
    /// caller gets in (-EPERM before keel reads anything); the struct is
    /// copied in and must carry Xen 4.17's interface version (-EACCES
    /// otherwise, as on Xen: the tools do not negotiate).
    pub fn toolstack_arg<T: keel_xen_abi::Pod>(
        &self,
        arg: u64,
        version_ok: impl Fn(&T) -> bool,
    ) -> Result<T, Errno> {
        if !self.dom.privileged {
            return Err(Errno::EPERM);
        }
        let t: T = self.mem().read_abi(arg)?;
        if !version_ok(&t) {
            return Err(Errno::EACCES);
        }
        Ok(t)
    }

    /// The domain a call names: the caller itself for `DOMID_SELF` or
    /// its own id; another domain only for a privileged caller (-EPERM
    /// before the lookup, so an unprivileged one learns nothing), -ESRCH
    /// for none or one that is ending.
    pub fn target(&self, domid: u16) -> Result<Arc<Domain>, Errno> {
        let id = crate::xen::abi::resolve_domid(domid, self.dom.id);
        if id == self.dom.id {
            return Ok(self.dom.clone());
        }
        if !self.dom.privileged {
            return Err(Errno::EPERM);
        }
        match crate::domain::table::get(id) {
            Some(d) if !d.is_ending() => Ok(d),
            _ => Err(Errno::ESRCH),
        }
    }

    /// The domain a domctl names (`DOMID_SELF` is the caller), whatever
    /// its state: a shut-down or dying domain is still the toolstack's to
    /// query, pause and destroy. -ESRCH for none. The caller's privilege
    /// was checked with the argument (`toolstack_arg`).
    pub fn toolstack_target(&self, domid: u16) -> Result<Arc<Domain>, Errno> {
        let id = crate::xen::abi::resolve_domid(domid, self.dom.id);
        crate::domain::table::get(id).ok_or(Errno::ESRCH)
    }

    /// The caller's memory, by guest-virtual address.
    pub fn mem(&self) -> GuestVirt<'_> {
        GuestVirt::new(&self.dom.mem, &*self.hw)
    }

    fn unimplemented(&self, what: core::fmt::Arguments) -> Errno {
        self.dom.stats.unimplemented.fetch_add(1, Ordering::Relaxed);
        log::debug!("d{}: {what}: -ENOSYS", self.dom.id);
        Errno::ENOSYS
    }
}

/// What a hypercall asks of its caller's vCPU besides a result.
#[derive(Debug, PartialEq, Eq)]
pub enum Ret {
    /// Return this value in RAX.
    Val(u64),
    /// Return 0 and take the vCPU off the CPU until its wake condition.
    Block(Wait),
    /// The domain ends.
    End(Outcome),
}

pub type HcResult = Result<Ret, Errno>;

/// What the vCPU does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Go,
    Block(Wait),
    End(Outcome),
}

/// Serves the hypercall the vCPU in `cx` just made (RIP still at the
/// instruction: the caller skips it).
pub fn dispatch(cx: &mut Ctx) -> Next {
    cx.dom.stats.hypercalls.fetch_add(1, Ordering::Relaxed);
    let r = *cx.hw.regs();
    let args = [r.rdi, r.rsi, r.rdx, r.r10, r.r8];
    // As Xen (`hvm_hypercall`): only the guest's kernel may call. VMCALL
    // and VMMCALL exit at any CPL, so without this a guest's user
    // processes (dom0's included) would reach sysctl and domctl directly.
    // It also makes every guest-memory access below a supervisor one.
    let res = if cx.hw.cpl() != 0 {
        Err(Errno::EPERM)
    } else {
        match Hypercall::from_u64(r.rax) {
            Some(call) => xen(cx, call, args),
            None => Err(cx.unimplemented(format_args!("hypercall {}", r.rax))),
        }
    };
    match res {
        Ok(Ret::Val(x)) => {
            cx.hw.regs_mut().rax = x;
            Next::Go
        }
        Ok(Ret::Block(w)) => {
            cx.hw.regs_mut().rax = 0;
            Next::Block(w)
        }
        Ok(Ret::End(o)) => Next::End(o),
        Err(e) => {
            cx.hw.regs_mut().rax = e.to_ret() as u64;
            Next::Go
        }
    }
}

fn xen(cx: &mut Ctx, call: Hypercall, a: [u64; 5]) -> HcResult {
    match call {
        Hypercall::ConsoleIo => console_io::call(cx, a[0], a[1], a[2]),
        Hypercall::XenVersion => xen_version::call(cx, a[0], a[1]),
        Hypercall::MemoryOp => memory_op::call(cx, a[0], a[1]),
        Hypercall::HvmOp => hvm_op::call(cx, a[0], a[1]),
        Hypercall::SchedOp => sched_op::call(cx, a[0], a[1]),
        Hypercall::VcpuOp => vcpu_op::call(cx, a[0], a[1], a[2]),
        Hypercall::SetTimerOp => vcpu_op::set_timer_op(cx, a[0]),
        Hypercall::EventChannelOp => event_channel_op::call(cx, a[0], a[1]),
        Hypercall::GrantTableOp => grant_table_op::call(cx, a[0], a[1], a[2]),
        Hypercall::PlatformOp => platform_op::call(cx, a[0]),
        Hypercall::Sysctl => sysctl::call(cx, a[0]),
        Hypercall::Domctl => domctl::call(cx, a[0]),
        Hypercall::Multicall => multicall::call(cx, a[0], a[1]),
        other => Err(cx.unimplemented(format_args!(
            "hypercall {other:?} ({:#x}, {:#x}, {:#x})",
            a[0], a[1], a[2]
        ))),
    }
}
