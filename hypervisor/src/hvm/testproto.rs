//! The protocol between keel and its small test guests (`tests/guests/`).
//!
//! Test guests talk to keel through port I/O and hypercalls only, so the
//! same guest runs unchanged on VT-x and AMD-V:
//!
//! | port / call | direction | meaning |
//! |---|---|---|
//! | `CONSOLE` 0x510 | out (byte) | a console byte; keel prints each line as `(dN) line` |
//! | `SCRATCH` 0x511 | out / in (1, 2, 4 bytes) | out stores a value; in returns the stored value + 1 |
//! | `SCENARIO` 0x512 | in (4 bytes) | which scenario this guest instance runs ([`Scenario`]) |
//! | `DONE` 0x513 | out (4 bytes) | 0 = all checks passed, anything else = failed; ends the guest |
//! | `TIMER` 0x514 | out (4 bytes) | arm the local APIC timer one-shot: interrupt [`TIMER_VECTOR`] after N µs (the guest EOIs it, x2APIC MSR 0x80b) |
//! | `EXPECT` 0x515 | in (4 bytes) | a counter keel keeps: number of nested-paging faults it served |
//! | `PEER` 0x516 | in (4 bytes) | the event-channel port keel bound to this guest's partner (ping-pong), 0 if none |
//! | `FUZZ_COUNT` 0x517 | in (4 bytes) | the fuzzing guest's hypercall count (`fuzz_count=`) |
//! | `FUZZ_SEED` 0x518 | in (4 bytes) | the fuzzing guest's PRNG seed (`fuzz_seed=`) |
//! | VMCALL / VMMCALL, RAX = 0 | | null hypercall: returns 0 in RAX |
//! | VMCALL / VMMCALL, RAX = other | | the Xen ABI, as for any unprivileged domain (sysctl and domctl: -EPERM; unknown numbers: -ENOSYS) |
//! | MSR `SCRATCH_MSR` | rdmsr / wrmsr | a 64-bit register keel emulates |
//! | any other MSR | rdmsr | keel injects #GP(0) |
//! | CPUID 0x4000_0000 | | "XenVMMXenVMM" signature, max leaf in EAX |
//!
//! Guest-physical memory: `[0, RAM_SIZE)` is backed at start;
//! `[ON_DEMAND_BASE, ON_DEMAND_BASE + ON_DEMAND_SIZE)` is backed lazily on
//! first touch (each page costs one nested-paging fault); anything else is
//! not the guest's, and touching it kills the guest.

pub const CONSOLE: u16 = 0x510;
pub const SCRATCH: u16 = 0x511;
pub const SCENARIO: u16 = 0x512;
pub const DONE: u16 = 0x513;
pub const TIMER: u16 = 0x514;
pub const EXPECT: u16 = 0x515;
pub const PEER: u16 = 0x516;
pub const FUZZ_COUNT: u16 = 0x517;
pub const FUZZ_SEED: u16 = 0x518;
pub const SCRATCH_MSR: u32 = 0x4000_00f0;
pub const TIMER_VECTOR: u8 = 0x30;
pub const ENOSYS: i64 = -38;

/// Where the guest image is loaded and entered (real mode, CS:IP = 0x0800:0).
pub const ENTRY_GPA: u64 = 0x8000;
pub const SIPI_VECTOR: u8 = (ENTRY_GPA >> 12) as u8;
pub const RAM_SIZE: u64 = 4 << 20;
pub const ON_DEMAND_BASE: u64 = 4 << 20;
pub const ON_DEMAND_SIZE: u64 = 4 << 20;
/// A guest-physical address no test guest owns.
pub const NOT_OWNED_GPA: u64 = 0x8000_0000;

/// What a test guest does, read from the `SCENARIO` port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Scenario {
    /// Every check: CPUID, MSRs, I/O, memory, on-demand pages, HLT + timer,
    /// exception injection, hypercalls.
    Suite = 0,
    /// Prints, then triple-faults on purpose.
    TripleFault = 1,
    /// Touches [`NOT_OWNED_GPA`].
    BadAccess = 2,
    /// Benchmark: N null hypercalls (N from `SCRATCH` in), then DONE.
    BenchHypercall = 3,
    /// Benchmark: N CPUID instructions, then DONE.
    BenchCpuid = 4,
    /// Spins printing a heartbeat until it has done N rounds (a long run
    /// for the "other guest keeps running" check), then DONE.
    LongRun = 5,
    /// CPU-bound forever, with no exits (the scheduler preempts it).
    Spin = 6,
    /// Halts with interrupts on and nothing armed: blocked for good.
    Halt = 7,
    /// Event-channel ping-pong, the side that starts and counts: N round
    /// trips over its `PEER` port, then DONE.
    Ping = 8,
    /// The other side: answers every event, forever.
    Pong = 9,
    /// Hostile: N random hypercalls (N from `FUZZ_COUNT`, seeded by
    /// `FUZZ_SEED`) with random and adversarial arguments, mixed with
    /// random port, MSR and CPUID accesses; its hypercall count in
    /// `SCRATCH`, then DONE.
    Fuzz = 10,
}

/// A test guest's state in keel (its one vCPU's registers are elsewhere).
#[derive(Debug)]
pub struct TestState {
    pub scenario: Scenario,
    pub scratch: u32,
    pub scratch_msr: u64,
    /// Nested-paging faults served in the on-demand region.
    pub npf_served: u32,
    /// The port keel bound for its ping-pong partner (0: none).
    pub peer_port: u32,
    /// What the fuzzing guest reads from `FUZZ_COUNT` and `FUZZ_SEED`.
    pub fuzz_count: u32,
    pub fuzz_seed: u32,
}

impl TestState {
    pub fn new(scenario: Scenario) -> Self {
        TestState {
            scenario,
            scratch: 0,
            scratch_msr: 0,
            npf_served: 0,
            peer_port: 0,
            fuzz_count: 0,
            fuzz_seed: 0,
        }
    }
}

/// A test guest's MAX_EXITS: a runaway guest cannot run a test forever.
pub const MAX_EXITS: u64 = 20_000_000;

/// A scenario's short name (domain names, logs).
pub fn name(s: Scenario) -> &'static str {
    match s {
        Scenario::Suite => "suite",
        Scenario::TripleFault => "triple-fault",
        Scenario::BadAccess => "bad-access",
        Scenario::BenchHypercall => "bench-hypercall",
        Scenario::BenchCpuid => "bench-cpuid",
        Scenario::LongRun => "long-run",
        Scenario::Spin => "spin",
        Scenario::Halt => "halt",
        Scenario::Ping => "ping",
        Scenario::Pong => "pong",
        Scenario::Fuzz => "fuzz",
    }
}
