//! Scenarios 1-9.
use core::ptr::read_volatile;

use crate::arch::{self, HypercallInsn};
use crate::{println, proto, trap, vectors};

/// Scenario 1: an empty IDT, then int3 -> #GP -> #DF -> triple fault.
pub fn triple_fault() -> ! {
    println!("about to triple fault");
    trap::load_empty_idt();
    // SAFETY: deliberate: with the empty IDT int3 escalates to a triple fault and keel ends
    // the guest, so nothing runs after it; if it returns, we only report FAIL.
    unsafe { core::arch::asm!("int3", options(nomem, nostack)) };
    println!("triple-fault: FAIL still running after int3 with an empty IDT");
    arch::done(proto::DONE_FAIL)
}

/// Scenario 2: read a guest-physical address the guest does not own
/// (identity-mapped by our page tables); keel must kill the guest.
pub fn bad_access() -> ! {
    println!("touching memory I do not own");
    // SAFETY: deliberate bad access: the aligned address is identity-mapped but holds no Rust
    // object and no guest RAM, so keel must kill the guest; a returned value is only printed.
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

/// Scenario 6: CPU-bound forever, with no exits (keel's scheduler must
/// preempt it through the host timer).
///
/// It spins with interrupts on (none are sent to it). On hardware the
/// host's timer ends guest mode whatever the guest's IF (AMD-V's
/// V_INTR_MASKING, VT-x's external-interrupt exiting), but Bochs 2.7's
/// AMD-V computes the interrupt mask at VMRUN from the guest's IF: a
/// guest entered with IF=0 keeps host interrupts out until it sets IF
/// (docs/linux-guest.md).
///
/// Its vector registers (all of them: ZMM0-31 and k0-7 where the CPU has
/// AVX-512) hold values of its own throughout, checked after each stretch
/// of spinning: the spinners share a CPU with each other and with dom0,
/// so keel switches their FPU state over and over, and a register that
/// comes back changed ends the guest with a failure (`vectors`). So do
/// the SYSCALL MSRs, KERNEL_GS_BASE and TSC_AUX, set to values of its own.
pub fn spin() -> ! {
    let seed = arch::rdtsc();
    let canary = vectors::Canary::fill(seed);
    let msrs = vectors::MsrCanary::fill(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    println!(
        "spinning, {} vector registers of {} bits held (XCR0 {:#x})",
        canary.width.registers(),
        canary.width.bytes() * 8,
        canary.xcr0
    );
    // SAFETY: ring 0; `sti` touches no memory, and trap::init loaded the
    // IDT, so any interrupt that came would be handled.
    unsafe { core::arch::asm!("sti", options(nomem, nostack)) }
    let mut x: u64 = 1;
    for round in 0u64.. {
        for _ in 0..1_000_000 {
            x = core::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        if let Err((reg, got, want)) = canary.check() {
            println!(
                "spin: vector state CORRUPT after {} rounds: register {} reads {:#x}, held {:#x}",
                round, reg, got, want
            );
            arch::done(proto::DONE_FAIL);
        }
        if let Err((msr, got, want)) = msrs.check() {
            println!(
                "spin: MSR {:#x} CORRUPT after {} rounds: reads {:#x}, set {:#x}",
                msr, round, got, want
            );
            arch::done(proto::DONE_FAIL);
        }
    }
    unreachable!()
}

/// Scenario 7: halted with interrupts on and nothing armed: blocked until
/// keel ends it.
pub fn halt() -> ! {
    println!("halting");
    loop {
        // SAFETY: ring 0; sti/hlt touch no memory, and trap::init loaded the IDT, so whatever
        // wakes the vCPU is handled by keel_guest_trap before we halt again.
        unsafe { core::arch::asm!("sti", "hlt", options(nomem, nostack)) }
    }
}

const PING_ROUNDS: u32 = 20_000;

/// Scenarios 8 and 9: event-channel ping-pong with the partner domain over
/// the port keel bound (`PEER`): the pinger sends and waits (SCHEDOP_poll)
/// for the answer `PING_ROUNDS` times, then reports the count in SCRATCH;
/// the ponger answers forever.
pub fn ping_pong(pinger: bool) -> ! {
    let insn = HypercallInsn::detect();
    let port = arch::inl(proto::PEER);
    if port == 0 {
        println!("ping-pong: FAIL keel bound no port");
        arch::done(proto::DONE_FAIL);
    }
    // Map shared_info to see (and clear) the port's pending bit:
    // struct xen_add_to_physmap { domid, size, space, idx, gpfn }.
    #[repr(C)]
    struct AddToPhysmap {
        domid: u16,
        size: u16,
        space: u32,
        idx: u64,
        gpfn: u64,
    }
    let a = AddToPhysmap {
        domid: proto::DOMID_SELF,
        size: 0,
        space: proto::XENMAPSPACE_SHARED_INFO,
        idx: 0,
        gpfn: proto::SHARED_INFO_GPA >> 12,
    };
    let rc = arch::xen_hypercall(
        insn,
        proto::HYPERVISOR_MEMORY_OP,
        proto::XENMEM_ADD_TO_PHYSMAP,
        &a as *const _ as u64,
        0,
    );
    if rc != 0 {
        println!("ping-pong: FAIL add_to_physmap: {}", rc);
        arch::done(proto::DONE_FAIL);
    }
    let word = (proto::SHARED_INFO_GPA + proto::EVTCHN_PENDING_OFFSET + (port as u64 / 64) * 8)
        as *const core::sync::atomic::AtomicU64;
    let bit = 1u64 << (port % 64);
    let ports = [port];
    #[repr(C)]
    struct Poll {
        ports: u64,
        nr_ports: u32,
        timeout: u64,
    }
    let poll = Poll {
        ports: ports.as_ptr() as u64,
        nr_ports: 1,
        timeout: 0,
    };
    let wait = || loop {
        // SAFETY: add_to_physmap succeeded, so shared_info is mapped at the identity-mapped
        // SHARED_INFO_GPA; `word` is an aligned evtchn_pending word that keel updates atomically.
        let w = unsafe { &*word };
        if w.fetch_and(!bit, core::sync::atomic::Ordering::SeqCst) & bit != 0 {
            return;
        }
        arch::xen_hypercall(
            insn,
            proto::HYPERVISOR_SCHED_OP,
            proto::SCHEDOP_POLL,
            &poll as *const _ as u64,
            0,
        );
    };
    let send = || {
        let rc = arch::xen_hypercall(
            insn,
            proto::HYPERVISOR_EVENT_CHANNEL_OP,
            proto::EVTCHNOP_SEND,
            &port as *const u32 as u64,
            0,
        );
        if rc != 0 {
            println!("ping-pong: FAIL send: {}", rc);
            arch::done(proto::DONE_FAIL);
        }
    };
    if pinger {
        println!("ping: {} round trips over port {}", PING_ROUNDS, port);
        for _ in 0..PING_ROUNDS {
            send();
            wait();
        }
        arch::outl(proto::SCRATCH, PING_ROUNDS);
        println!("ping: {} round trips done", PING_ROUNDS);
        arch::done(proto::DONE_PASS)
    } else {
        println!("pong: answering on port {}", port);
        loop {
            wait();
            send();
        }
    }
}
