//! VM-exit counters: every vCPU counts its exits by vendor-neutral reason
//! (the [`Exit`] variant) on the one exit path ([`super::exit::handle`]),
//! with relaxed atomics (the vCPU's own CPU increments them; `sysctl
//! perfc_op` reads them from another CPU). The command-line switch
//! `perfc=0` turns the counting off (the benchmark measures its cost).
//!
//! Exported as Xen's software performance counters (`XEN_SYSCTL_perfc_op`,
//! what `xenperf` and `keelctl top` read): one counter per reason, named
//! `vmexit <reason> [domid]` ([`counter_name`]), each an array of
//! [`DOMAIN_SLOTS`] values: value `i` is domain `i`'s exits for that
//! reason (all its vCPUs), the last one the domains with ids from
//! `DOMAIN_SLOTS - 1` up together. The shape never changes, so a tool that
//! asked for the sizes first (xenperf does, then passes buffers without
//! their sizes) always has room.

use super::vcpu::Exit;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Why a vCPU left the guest, as counted ([`Exit`] without its operands).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    Cpuid,
    MsrRead,
    MsrWrite,
    Io,
    Cr,
    Hlt,
    Pause,
    Hypercall,
    Xsetbv,
    Mwait,
    Npf,
    Interrupt,
    IntrWindow,
    Timer,
    InitSipi,
    TripleFault,
    Exception,
    Invalid,
    Unhandled,
}

/// Number of [`Reason`]s.
pub const REASONS: usize = 19;

/// Every reason's short name, in [`Reason`] order (the counter names'
/// middle word).
pub const NAMES: [&str; REASONS] = [
    "cpuid",
    "msr_read",
    "msr_write",
    "io",
    "cr",
    "hlt",
    "pause",
    "hypercall",
    "xsetbv",
    "mwait",
    "npf",
    "intr",
    "intr_window",
    "timer",
    "init_sipi",
    "triple_fault",
    "exception",
    "invalid",
    "unhandled",
];

/// Values per exported counter: domain ids 0..DOMAIN_SLOTS-1, the last
/// one shared by every id from `DOMAIN_SLOTS - 1` up.
pub const DOMAIN_SLOTS: usize = 64;

impl Reason {
    pub fn of(e: &Exit) -> Reason {
        match e {
            Exit::Cpuid { .. } => Reason::Cpuid,
            Exit::MsrRead { .. } => Reason::MsrRead,
            Exit::MsrWrite { .. } => Reason::MsrWrite,
            Exit::Io { .. } => Reason::Io,
            Exit::CrAccess { .. } => Reason::Cr,
            Exit::Hlt { .. } => Reason::Hlt,
            Exit::Pause { .. } => Reason::Pause,
            Exit::Hypercall { .. } => Reason::Hypercall,
            Exit::Xsetbv { .. } => Reason::Xsetbv,
            Exit::MonitorMwait => Reason::Mwait,
            Exit::NestedPageFault { .. } => Reason::Npf,
            Exit::ExternalInterrupt => Reason::Interrupt,
            Exit::InterruptWindow => Reason::IntrWindow,
            Exit::PreemptionTimer => Reason::Timer,
            Exit::Init | Exit::Sipi { .. } => Reason::InitSipi,
            Exit::TripleFault => Reason::TripleFault,
            Exit::Exception { .. } => Reason::Exception,
            Exit::InvalidGuestState { .. } => Reason::Invalid,
            Exit::Unhandled { .. } => Reason::Unhandled,
        }
    }

    pub fn name(self) -> &'static str {
        NAMES[self as usize]
    }
}

/// Gauges exported after the exit counters, by domain: the pages it maps
/// of other domains now, by foreign mapping (privcmd) and by grant. A
/// toolstack that created and destroyed domains must have these back where
/// they were (issue 14: `xenperf | grep mapped`).
pub const GAUGES: [&str; 2] = ["mapped foreign pages [domid]", "mapped grants [domid]"];

/// Counters exported in all: one per exit reason, then the [`GAUGES`].
pub const COUNTERS: usize = REASONS + GAUGES.len();

/// `xen_sysctl_perfc_desc.name` of counter `i`: `vmexit <reason> [domid]`
/// for a reason, else the gauge's name (the values are indexed by domain
/// id).
pub fn counter_name(i: usize) -> alloc::string::String {
    match NAMES.get(i) {
        Some(n) => alloc::format!("vmexit {n} [domid]"),
        None => GAUGES[i - REASONS].into(),
    }
}

/// A vCPU's exits by reason.
#[derive(Default)]
pub struct ExitCounters([AtomicU64; REASONS]);

impl ExitCounters {
    /// Counts one exit (unless counting is off).
    #[inline]
    pub fn count(&self, e: &Exit) {
        if ENABLED.load(Ordering::Relaxed) {
            self.0[Reason::of(e) as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn get(&self, r: usize) -> u64 {
        self.0[r].load(Ordering::Relaxed)
    }

    /// Zeroes every reason (`XEN_SYSCTL_PERFCOP_reset`).
    pub fn reset(&self) {
        for c in &self.0 {
            c.store(0, Ordering::Relaxed);
        }
    }
}

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the counting on or off (`perfc=` on keel's command line).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The slot of domain `id` in a counter's values.
pub fn slot(id: u16) -> usize {
    (id as usize).min(DOMAIN_SLOTS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_reasons() {
        assert_eq!(Reason::of(&Exit::Cpuid { len: 2 }).name(), "cpuid");
        assert_eq!(Reason::of(&Exit::Hypercall { len: 3 }).name(), "hypercall");
        assert_eq!(Reason::of(&Exit::PreemptionTimer).name(), "timer");
        assert_eq!(
            Reason::of(&Exit::Unhandled { reason: 9 }),
            Reason::Unhandled
        );
        assert_eq!(Reason::Unhandled as usize, REASONS - 1);
        // xenperf prints names in 35 columns; Xen's desc has 80 bytes.
        for i in 0..COUNTERS {
            assert!(counter_name(i).len() <= 35, "{}", counter_name(i));
        }
        assert_eq!(counter_name(REASONS + 1), "mapped grants [domid]");
        assert_eq!(counter_name(0), "vmexit cpuid [domid]");
        let mut seen = alloc::vec::Vec::new();
        for n in NAMES {
            assert!(!seen.contains(&n) && !n.contains(' '), "{n}");
            seen.push(n);
        }
        assert_eq!((slot(0), slot(62), slot(63), slot(0x7fef)), (0, 62, 63, 63));
    }
}
