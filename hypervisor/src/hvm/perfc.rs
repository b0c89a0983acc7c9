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
//!
//! Besides the counts, where a domain's time goes ([`TIMES`], in µs of the
//! TSC, by domain): in guest mode (from VM entry to the exit) and in keel
//! after its exits (from each exit until the vCPU enters guest mode again
//! or has left its CPU: the handler, the next entry's preparation, the
//! CPU's other duties meanwhile; what keel itself costs the domain). With
//! `xenperf -r` before a piece of work and `xenperf -f` after it, keel's
//! share of that work is the second over the work's time (the split-driver
//! bench does this).

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

/// Times exported after the gauges, by domain, in µs (u32: they wrap
/// after 71 minutes, as Xen's counters wrap): its vCPUs' time in guest
/// mode, and keel's time after their exits until they entered guest mode
/// again or left their CPU.
pub const TIMES: [&str; 2] = ["guest mode us [domid]", "exit handling us [domid]"];

/// Counters exported in all: one per exit reason, then the [`GAUGES`],
/// then the [`TIMES`].
pub const COUNTERS: usize = REASONS + GAUGES.len() + TIMES.len();

/// `xen_sysctl_perfc_desc.name` of counter `i`: `vmexit <reason> [domid]`
/// for a reason, else the gauge's or the time's name (the values are
/// indexed by domain id).
pub fn counter_name(i: usize) -> alloc::string::String {
    match NAMES.get(i) {
        Some(n) => alloc::format!("vmexit {n} [domid]"),
        None => GAUGES
            .iter()
            .chain(&TIMES)
            .nth(i - REASONS)
            .copied()
            .unwrap_or("")
            .into(),
    }
}

/// A vCPU's exits by reason, and its time in guest mode and in keel's
/// exit handling (TSC ticks).
#[derive(Default)]
pub struct ExitCounters {
    by_reason: [AtomicU64; REASONS],
    guest_tsc: AtomicU64,
    handling_tsc: AtomicU64,
}

impl ExitCounters {
    /// Counts one exit (unless counting is off).
    #[inline]
    pub fn count(&self, e: &Exit) {
        if ENABLED.load(Ordering::Relaxed) {
            self.by_reason[Reason::of(e) as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds `ticks` in guest mode (unless counting is off).
    #[inline]
    pub fn add_guest(&self, ticks: u64) {
        if ENABLED.load(Ordering::Relaxed) {
            self.guest_tsc.fetch_add(ticks, Ordering::Relaxed);
        }
    }

    /// Adds `ticks` of keel's time after an exit (unless counting is off).
    #[inline]
    pub fn add_handling(&self, ticks: u64) {
        if ENABLED.load(Ordering::Relaxed) {
            self.handling_tsc.fetch_add(ticks, Ordering::Relaxed);
        }
    }

    pub fn get(&self, r: usize) -> u64 {
        self.by_reason[r].load(Ordering::Relaxed)
    }

    /// (guest mode, exit handling), TSC ticks.
    pub fn times(&self) -> (u64, u64) {
        (
            self.guest_tsc.load(Ordering::Relaxed),
            self.handling_tsc.load(Ordering::Relaxed),
        )
    }

    /// Zeroes every reason and both times (`XEN_SYSCTL_PERFCOP_reset`).
    pub fn reset(&self) {
        for c in self
            .by_reason
            .iter()
            .chain([&self.guest_tsc, &self.handling_tsc])
        {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// TSC ticks as µs, at `tsc_khz` ticks per ms.
pub fn tsc_to_us(ticks: u64, tsc_khz: u64) -> u64 {
    (ticks as u128 * 1000 / tsc_khz.max(1) as u128) as u64
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
        assert_eq!(counter_name(REASONS + 2), "guest mode us [domid]");
        assert_eq!(counter_name(COUNTERS - 1), "exit handling us [domid]");
        assert_eq!(tsc_to_us(3_000_000, 3_000_000), 1000);
        assert_eq!(tsc_to_us(1 << 40, 0), (1 << 40) * 1000);
        assert_eq!(counter_name(0), "vmexit cpuid [domid]");
        let mut seen = alloc::vec::Vec::new();
        for n in NAMES {
            assert!(!seen.contains(&n) && !n.contains(' '), "{n}");
            seen.push(n);
        }
        assert_eq!((slot(0), slot(62), slot(63), slot(0x7fef)), (0, 62, 63, 63));
    }
}
