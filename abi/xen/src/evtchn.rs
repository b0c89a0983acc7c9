//! `event_channel_op` (hypercall 32, `event_channel.h`): the structs a
//! toolstack and its daemons use (allocating a guest's ports on its
//! behalf, binding to them, checking and closing them). Sub-op in RDI,
//! argument in RSI.

use crate::{DomId, EvtchnPort};

pod! {
    "struct evtchn_alloc_unbound" =>
    /// `struct evtchn_alloc_unbound` ([`ALLOC_UNBOUND`]): a new port in
    /// `dom` that `remote_dom` may bind. A privileged caller may name
    /// another domain as `dom`.
    pub struct AllocUnbound {
        pub dom: DomId,
        pub remote_dom: DomId,
        /// OUT.
        pub port: EvtchnPort,
    }

    "struct evtchn_bind_interdomain" =>
    /// `struct evtchn_bind_interdomain` ([`BIND_INTERDOMAIN`]).
    pub struct BindInterdomain {
        pub remote_dom: DomId,
        pub remote_port: EvtchnPort,
        /// OUT.
        pub local_port: EvtchnPort,
    }

    "struct evtchn_bind_virq" =>
    /// `struct evtchn_bind_virq` ([`BIND_VIRQ`]; the daemons bind
    /// [`VIRQ_DOM_EXC`]).
    pub struct BindVirq {
        pub virq: u32,
        pub vcpu: u32,
        /// OUT.
        pub port: EvtchnPort,
    }

    "struct evtchn_close" =>
    /// `struct evtchn_close` ([`CLOSE`]).
    pub struct Close {
        pub port: EvtchnPort,
    }

    "struct evtchn_send" =>
    /// `struct evtchn_send` ([`SEND`]).
    pub struct Send {
        pub port: EvtchnPort,
    }

    "struct evtchn_status" =>
    /// `struct evtchn_status` ([`STATUS`]). `u` depends on `status`: see
    /// the accessors.
    pub struct Status {
        pub dom: DomId,
        pub port: EvtchnPort,
        /// OUT: [`stat`].
        pub status: u32,
        /// OUT: the vCPU notified.
        pub vcpu: u32,
        /// OUT: the union's two 32-bit words (`unbound.dom`,
        /// `interdomain.{dom,port}`, `pirq` or `virq`).
        pub u: [u32; 2],
    }
}

impl Status {
    /// `u.unbound.dom` / `u.interdomain.dom`: the remote domain.
    pub const fn remote_dom(&self) -> DomId {
        self.u[0] as DomId
    }

    /// `u.interdomain.port`.
    pub const fn remote_port(&self) -> EvtchnPort {
        self.u[1]
    }

    /// `u.pirq` / `u.virq`.
    pub const fn irq(&self) -> u32 {
        self.u[0]
    }

    /// Sets `u` for [`stat::UNBOUND`].
    pub fn set_unbound(&mut self, remote: DomId) {
        self.u = [remote as u32, 0];
    }

    /// Sets `u` for [`stat::INTERDOMAIN`].
    pub fn set_interdomain(&mut self, remote: DomId, port: EvtchnPort) {
        self.u = [remote as u32, port];
    }

    /// Sets `u` for [`stat::PIRQ`] and [`stat::VIRQ`].
    pub fn set_irq(&mut self, irq: u32) {
        self.u = [irq, 0];
    }
}

consts! {
    /// [`BindInterdomain`].
    BIND_INTERDOMAIN: u32 = 0 => "EVTCHNOP_bind_interdomain";
    /// [`BindVirq`].
    BIND_VIRQ: u32 = 1 => "EVTCHNOP_bind_virq";
    /// [`Close`].
    CLOSE: u32 = 3 => "EVTCHNOP_close";
    /// [`Send`].
    SEND: u32 = 4 => "EVTCHNOP_send";
    /// [`Status`].
    STATUS: u32 = 5 => "EVTCHNOP_status";
    /// [`AllocUnbound`].
    ALLOC_UNBOUND: u32 = 6 => "EVTCHNOP_alloc_unbound";
    /// The global VIRQ raised to dom0 when a domain shuts down or dies.
    VIRQ_DOM_EXC: u32 = 3 => "VIRQ_DOM_EXC";
    /// The global VIRQ raised when the hypervisor's console ring has new bytes.
    VIRQ_CON_RING: u32 = 8 => "VIRQ_CON_RING";
}

/// `Status::status` (`EVTCHNSTAT_*`).
pub mod stat {
    consts! {
        CLOSED: u32 = 0 => "EVTCHNSTAT_closed";
        UNBOUND: u32 = 1 => "EVTCHNSTAT_unbound";
        INTERDOMAIN: u32 = 2 => "EVTCHNSTAT_interdomain";
        PIRQ: u32 = 3 => "EVTCHNSTAT_pirq";
        VIRQ: u32 = 4 => "EVTCHNSTAT_virq";
        IPI: u32 = 5 => "EVTCHNSTAT_ipi";
    }
}
