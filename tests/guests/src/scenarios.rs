//! Scenarios 1-5.
use core::ptr::read_volatile;

use crate::arch::{self, HypercallInsn};
use crate::{println, proto, trap};

/// Scenario 1: an empty IDT, then int3 -> #GP -> #DF -> triple fault.
pub fn triple_fault() -> ! {
    println!("about to triple fault");
    trap::load_empty_idt();
    unsafe { core::arch::asm!("int3", options(nomem, nostack)) };
    println!("triple-fault: FAIL still running after int3 with an empty IDT");
    arch::done(proto::DONE_FAIL)
}

/// Scenario 2: read a guest-physical address the guest does not own
/// (identity-mapped by our page tables); keel must kill the guest.
pub fn bad_access() -> ! {
    println!("touching memory I do not own");
    let v = unsafe { read_volatile(proto::NOT_OWNED_GPA as *const u64) };
    println!(
        "bad-access: FAIL read of {:#x} returned {:#x}",
        proto::NOT_OWNED_GPA,
        v
    );
    arch::done(proto::DONE_FAIL)
}

const BENCH_N: u32 = 100_000;

/// Scenario 3: N null hypercalls.
pub fn bench_hypercall() -> ! {
    let insn = HypercallInsn::detect();
    println!("bench hypercall: N={} ({})", BENCH_N, insn.name());
    let mut bad = 0u32;
    for _ in 0..BENCH_N {
        if arch::hypercall(insn, 0) != 0 {
            bad += 1;
        }
    }
    if bad != 0 {
        println!(
            "bench hypercall: FAIL {} of {} null hypercalls returned non-zero",
            bad, BENCH_N
        );
        arch::done(proto::DONE_FAIL);
    }
    println!("bench hypercall: {} done", BENCH_N);
    arch::done(proto::DONE_PASS)
}

/// Scenario 4: N CPUID(0).
pub fn bench_cpuid() -> ! {
    println!("bench cpuid: N={}", BENCH_N);
    for _ in 0..BENCH_N {
        core::hint::black_box(arch::cpuid(0, 0));
    }
    println!("bench cpuid: {} done", BENCH_N);
    arch::done(proto::DONE_PASS)
}

/// Scenario 5: 200 rounds of 1000 SCRATCH round trips, a heartbeat every
/// 50 rounds.
pub fn long_run() -> ! {
    const ROUNDS: u32 = 200;
    const TRIPS: u32 = 1000;
    println!("long run: {} rounds of {} io round trips", ROUNDS, TRIPS);
    for round in 1..=ROUNDS {
        for i in 0..TRIPS {
            let v = round << 16 | i;
            arch::outl(proto::SCRATCH, v);
            let got = arch::inl(proto::SCRATCH);
            if got != v.wrapping_add(1) {
                println!(
                    "long run: FAIL round {} trip {}: in {:#x}, want {:#x}",
                    round,
                    i,
                    got,
                    v + 1
                );
                arch::done(proto::DONE_FAIL);
            }
        }
        if round % 50 == 0 {
            println!("heartbeat {}", round);
        }
    }
    println!("long run: {} rounds done", ROUNDS);
    arch::done(proto::DONE_PASS)
}
