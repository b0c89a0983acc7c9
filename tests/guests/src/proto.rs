//! The keel <-> test-guest protocol, duplicated from
//! `hypervisor/src/hvm/testproto.rs` (this crate must not depend on the
//! hypervisor crate). Keep the two in sync; ideally both move into a tiny
//! shared `no_std` crate later.

pub const CONSOLE: u16 = 0x510;
pub const SCRATCH: u16 = 0x511;
#[cfg_attr(feature = "qemu-smoke", allow(dead_code))]
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

#[allow(dead_code)]
pub const ENTRY_GPA: u64 = 0x8000;
#[allow(dead_code)]
pub const RAM_SIZE: u64 = 4 << 20;
pub const ON_DEMAND_BASE: u64 = 4 << 20;
#[allow(dead_code)]
pub const ON_DEMAND_SIZE: u64 = 4 << 20;
pub const NOT_OWNED_GPA: u64 = 0x8000_0000;

// `Scenario` discriminants.
pub const SUITE: u32 = 0;
pub const TRIPLE_FAULT: u32 = 1;
pub const BAD_ACCESS: u32 = 2;
pub const BENCH_HYPERCALL: u32 = 3;
pub const BENCH_CPUID: u32 = 4;
pub const LONG_RUN: u32 = 5;
pub const SPIN: u32 = 6;
pub const HALT: u32 = 7;
pub const PING: u32 = 8;
pub const PONG: u32 = 9;
pub const FUZZ: u32 = 10;

// DONE values this guest writes (keel only distinguishes 0 from non-zero).
pub const DONE_PASS: u32 = 0;
pub const DONE_FAIL: u32 = 1;
pub const DONE_PANIC: u32 = 2;
pub const DONE_UNEXPECTED_EXCEPTION: u32 = 3;
pub const DONE_UNKNOWN_SCENARIO: u32 = 4;

pub fn scenario_name(s: u32) -> &'static str {
    match s {
        SUITE => "suite",
        TRIPLE_FAULT => "triple-fault",
        BAD_ACCESS => "bad-access",
        BENCH_HYPERCALL => "bench-hypercall",
        BENCH_CPUID => "bench-cpuid",
        LONG_RUN => "long-run",
        SPIN => "spin",
        HALT => "halt",
        PING => "ping",
        PONG => "pong",
        FUZZ => "fuzz",
        _ => "unknown",
    }
}

/// The scenario this guest instance runs: `in eax, SCENARIO`.
#[cfg(not(feature = "qemu-smoke"))]
pub fn scenario() -> u32 {
    crate::arch::inl(SCENARIO)
}

/// Smoke builds for plain QEMU have no SCENARIO port: compile-time choice.
#[cfg(feature = "qemu-smoke")]
pub fn scenario() -> u32 {
    match option_env!("KEEL_GUEST_SCENARIO") {
        Some(s) => {
            let mut v = 0u32;
            for b in s.bytes() {
                v = v * 10 + (b - b'0') as u32;
            }
            v
        }
        None => SUITE,
    }
}

// The Xen ABI pieces the ping-pong guests use (xen.h, sched.h,
// event_channel.h, memory.h).
pub const HYPERVISOR_MEMORY_OP: u64 = 12;
pub const HYPERVISOR_SCHED_OP: u64 = 29;
pub const HYPERVISOR_EVENT_CHANNEL_OP: u64 = 32;
pub const XENMEM_ADD_TO_PHYSMAP: u64 = 7;
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
pub const SCHEDOP_POLL: u64 = 3;
pub const EVTCHNOP_SEND: u64 = 4;
pub const DOMID_SELF: u16 = 0x7ff0;
/// Where the ping-pong guests map shared_info (in the on-demand region,
/// identity-mapped by the guest's page tables).
pub const SHARED_INFO_GPA: u64 = 0x70_0000;
/// `shared_info.evtchn_pending[]`.
pub const EVTCHN_PENDING_OFFSET: u64 = 2048;
