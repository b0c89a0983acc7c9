//! keel-test-guest: one small bare-metal guest for keel's end-to-end tests.
//!
//! keel loads the ELF's PT_LOAD segments at their p_paddr and starts the
//! vCPU in real mode at CS:IP = 0x0800:0000 (guest-physical 0x8000).
//! `entry.rs` goes real mode -> protected mode -> long mode and calls
//! [`guest_main`], which reads the scenario from keel's SCENARIO port and
//! runs it. See docs/test-guests.md.
//!
//! Built for `x86_64-unknown-none` only; a host build is a stub so that a
//! workspace-wide `cargo check` without `--target` does not break.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod arch;
#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod entry;
#[cfg(target_os = "none")]
mod fuzz;
#[cfg(target_os = "none")]
mod proto;
#[cfg(target_os = "none")]
mod scenarios;
#[cfg(target_os = "none")]
mod suite;
#[cfg(target_os = "none")]
mod trap;
#[cfg(target_os = "none")]
mod vectors;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("keel-test-guest is a bare-metal guest: build it with --target x86_64-unknown-none");
    std::process::exit(1);
}

/// Called by `entry.rs` in 64-bit mode with a stack and cleared .bss.
#[cfg(target_os = "none")]
#[no_mangle]
pub extern "C" fn guest_main() -> ! {
    trap::init();
    let scenario = proto::scenario();
    println!(
        "keel-test-guest: scenario {} ({})",
        scenario,
        proto::scenario_name(scenario)
    );
    // Every guest starts with the x87/SSE state of a freshly reset CPU: the
    // hypervisor must not leak another guest's registers into it. Then it
    // leaves a marker behind for the next guest on this CPU to (not) see.
    arch::enable_sse();
    match arch::sse_state() {
        (0, 0x1f80) => println!("fpu state: clean"),
        (x, m) => println!("fpu state: DIRTY (xmm0 {:#x}, mxcsr {:#x})", x, m),
    }
    arch::dirty_sse(0x6b65_656c_0000_0000 | scenario as u64);
    match scenario {
        proto::SUITE => suite::run(),
        proto::TRIPLE_FAULT => scenarios::triple_fault(),
        proto::BAD_ACCESS => scenarios::bad_access(),
        proto::BENCH_HYPERCALL => scenarios::bench_hypercall(),
        proto::BENCH_CPUID => scenarios::bench_cpuid(),
        proto::LONG_RUN => scenarios::long_run(),
        proto::SPIN => scenarios::spin(),
        proto::HALT => scenarios::halt(),
        proto::PING => scenarios::ping_pong(true),
        proto::PONG => scenarios::ping_pong(false),
        proto::FUZZ => fuzz::run(),
        other => {
            println!("unknown scenario {}", other);
            arch::done(proto::DONE_UNKNOWN_SCENARIO)
        }
    }
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("guest panic");
    println!("{}", info);
    arch::done(proto::DONE_PANIC)
}
