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
//! | `TIMER` 0x514 | out (4 bytes) | arm a one-shot virtual timer: interrupt [`TIMER_VECTOR`] after N µs |
//! | `EXPECT` 0x515 | in (4 bytes) | a counter keel keeps: number of nested-paging faults it served |
//! | VMCALL / VMMCALL, RAX = 0 | | null hypercall: returns 0 in RAX |
//! | VMCALL / VMMCALL, RAX = `keel_mgmt::HYPERCALL` | | keel's management call: -EPERM (-1), test guests are not dom0 |
//! | VMCALL / VMMCALL, RAX = other | | returns -ENOSYS (-38) |
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
}
