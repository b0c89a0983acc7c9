//! keel's self-tests, chosen with `test=` on the command line and judged
//! by keel itself (the harness reads the `keel-test:` verdict line):
//!
//! * `boot`: every CPU online, the boot modules as asked, then power off.
//! * `guests`: the test guests (`tests/guests`) as ordinary domains, side by
//!   side: d1 runs every check, d2 touches memory it does not own, d3
//!   triple-faults (CPU 0), d4 runs long on CPU 1. keel must kill d2 and d3
//!   alone and let d1 and d4 finish.
//! * `bench`: VM-exit round trips per second (null hypercall, CPUID) and
//!   vCPU switches per second (two guests ping-ponging over an event
//!   channel on one CPU), one after another.
//! * `fuzz`: a hostile test guest (d21, CPU 1) makes `fuzz_count=` random
//!   hypercalls with random and adversarial arguments, mixed with random
//!   port, MSR and CPUID accesses, while a well-behaved guest (d20, long
//!   run) runs on CPU 0; then a suite guest (d22) runs on the fuzzer's CPU.
//!   d20 and d22 must finish cleanly; the fuzzer may finish or be killed
//!   with a reason. keel prints the count, time and rate.
//! * `sched`: dom0 boots as usual while CPU-bound test guests share CPU 1:
//!   weights 256 and 512, a domain capped at 25 %, a vCPU halted
//!   throughout. After the measuring window keel prints each one's share
//!   and judges them; they go on spinning beside dom0 until it powers the
//!   machine off.
//!
//! The tests start their domains and then run on their domains' ends
//! ([`domain_ended`]) and CPU 0's clock ([`poll`]); no CPU waits for them.

use crate::arch::x86::power;
use crate::bootinfo::{BootInfo, BootProblem};
use crate::domain::build::{self, test as testdom};
use crate::domain::{table, Domain, Outcome};
use crate::hvm::testproto::Scenario;
use crate::platform;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use spin::Mutex;

enum Test {
    Guests(Guests),
    Bench(Bench),
    Sched(Sched),
    Fuzz(Fuzz),
}

static TEST: Mutex<Option<Test>> = Mutex::new(None);

fn name() -> &'static str {
    crate::cmdline::get().test.unwrap_or("?")
}

/// Prints the failure verdict and powers off (a failure exit status).
fn fail(reason: core::fmt::Arguments) -> ! {
    log::info!("keel-test: FAIL {} reason={reason}", name());
    if let Some(port) = crate::cmdline::get().debug_exit {
        power::debug_exit(port, 1);
    }
    power::power_off()
}

fn pass_and_power_off(summary: core::fmt::Arguments) -> ! {
    log::info!("keel-test: PASS {} {summary}", name());
    power::power_off()
}

fn module(bi: &BootInfo, name: &str) -> &'static [u8] {
    let Some(m) = bi.module(name) else {
        fail(format_args!("missing-module {name}"))
    };
    // SAFETY: boot modules are reserved physical memory that nothing else
    // uses or frees; the direct map covers them.
    unsafe {
        core::slice::from_raw_parts(
            crate::arch::x86::cpu::phys_to_virt(m.phys) as *const u8,
            m.len as usize,
        )
    }
}

/// Builds test guest `id` and starts it on the CPUs in `affinity`.
fn guest(id: u16, sc: Scenario, image: &[u8], affinity: u64) -> Result<Arc<Domain>, String> {
    let d = testdom::build(id, sc, image)?;
    let home = affinity.trailing_zeros() as usize;
    build::launch(d, &|_| affinity, &|_| home)
}

/// Starts test `t` (the command line's `test=`).
pub fn start(t: &str, bi: &'static BootInfo, online: u32, wanted: u32) {
    let backend = || match crate::arch::x86::cpu::features().vendor {
        crate::arch::x86::cpu::Vendor::Intel => "VT-x",
        crate::arch::x86::cpu::Vendor::Amd => "AMD-V",
        crate::arch::x86::cpu::Vendor::Other => "none",
    };
    match t {
        "boot" => boot(bi, online, wanted),
        "guests" => {
            let image = module(bi, "testguest");
            let cpu1 = if online >= 2 { 0b10 } else { 0b01 };
            let mut g = Guests {
                image,
                online,
                wanted,
                backend: backend(),
                start: platform::tsc(),
                results: Vec::new(),
                d4_exits_at_d3: None,
            };
            // d4 right after d1, so that it is under way on CPU 1 when d3
            // dies on CPU 0.
            for (id, sc, aff) in [
                (1, Scenario::Suite, 0b01),
                (4, Scenario::LongRun, cpu1),
                (2, Scenario::BadAccess, 0b01),
                (3, Scenario::TripleFault, 0b01),
            ] {
                if let Err(e) = guest(id, sc, image, aff) {
                    let which = match sc {
                        Scenario::Suite => "suite-guest",
                        _ => "guest",
                    };
                    fail(format_args!("{which} Killed(\"{e}\")"));
                }
            }
            g.start = platform::tsc();
            *TEST.lock() = Some(Test::Guests(g));
        }
        "bench" => {
            let image = module(bi, "testguest");
            *TEST.lock() = Some(Test::Bench(Bench {
                image,
                cpus: (online, wanted),
                backend: backend(),
                stage: 0,
                start: 0,
                out: String::new(),
            }));
            bench_next();
        }
        "sched" => sched_start(bi, online),
        "fuzz" => fuzz_start(bi, online, wanted, backend()),
        _ => fail(format_args!("unknown-scenario")),
    }
}

/// CPU 0's clock for the tests that measure time: returns when to look
/// again (TSC), if ever.
pub fn poll() -> Option<u64> {
    let mut g = TEST.lock();
    let (next, verdict) = match g.as_mut()? {
        Test::Sched(s) => s.poll(),
        _ => return None,
    };
    drop(g);
    // The test domains go on spinning beside dom0 until the machine
    // powers off: dom0's `sleep 1` runs while they compete.
    if let Some(Err(why)) = verdict {
        fail(format_args!("{why}"));
    }
    next
}

/// A domain is finished. True if it was a test's (the test judged it).
pub fn domain_ended(d: &Arc<Domain>, o: &Outcome) -> bool {
    let mut g = TEST.lock();
    match g.as_mut() {
        Some(Test::Guests(t)) if d.is_test() => {
            t.ended(d, o);
            true
        }
        Some(Test::Bench(_)) if d.is_test() => {
            drop(g);
            bench_ended(d, o);
            true
        }
        // The sched test's domains spin (or halt) until the machine powers
        // off: one that ends (a spinner whose vector registers came back
        // changed, a fault) fails the test.
        Some(Test::Sched(_)) if d.is_test() => {
            drop(g);
            fail(format_args!("sched-domain-ended d{} {o:?}", d.id))
        }
        Some(Test::Fuzz(f)) if d.is_test() => {
            f.ended(d, o);
            true
        }
        _ => false,
    }
}

// --- boot -------------------------------------------------------------------

fn boot(bi: &BootInfo, online: u32, wanted: u32) -> ! {
    if bi
        .problems
        .iter()
        .flatten()
        .any(|p| matches!(p, BootProblem::ModuleArchive(_)))
    {
        fail(format_args!("bad-boot-modules"));
    }
    if let Some(name) = crate::cmdline::get().test_require_module {
        if bi.module(name).is_none() {
            fail(format_args!("missing-module {name}"));
        }
    }
    if online != wanted {
        fail(format_args!("cpus-online {online}/{wanted}"));
    }
    pass_and_power_off(format_args!(
        "cpus={online}/{wanted} mem={}MiB modules={}",
        bi.usable_bytes() >> 20,
        bi.modules().len()
    ))
}

// --- guests -----------------------------------------------------------------

struct Guests {
    #[allow(dead_code)]
    image: &'static [u8],
    online: u32,
    wanted: u32,
    backend: &'static str,
    start: u64,
    /// (domid, outcome, exits, on-demand pages, µs)
    results: Vec<(u16, Outcome, u64, u32, u64)>,
    d4_exits_at_d3: Option<u64>,
}

fn exits(d: &Domain) -> u64 {
    d.vcpus
        .iter()
        .map(|v| v.stats.exits.load(Ordering::Relaxed))
        .sum()
}

fn us_since(t0: u64) -> u64 {
    platform::tsc().wrapping_sub(t0) * 1000 / platform::tsc_khz().max(1)
}

impl Guests {
    fn ended(&mut self, d: &Domain, o: &Outcome) {
        let npf = match &d.kind {
            crate::domain::Kind::Test(t) => t.lock().npf_served,
            _ => 0,
        };
        if d.id == 3 {
            self.d4_exits_at_d3 = Some(table::get(4).map_or(0, |d4| exits(&d4)));
        }
        self.results
            .push((d.id, o.clone(), exits(d), npf, us_since(self.start)));
        if self.results.len() == 4 {
            self.judge();
        }
    }

    fn judge(&self) -> ! {
        let r = |id| self.results.iter().find(|x| x.0 == id).unwrap();
        let (_, o1, e1, npf1, us1) = r(1);
        log::info!(
            "guests: d1 suite: {o1:?} after {e1} exits, {npf1} pages on demand, {us1} us on {}",
            self.backend
        );
        let (_, o2, ..) = r(2);
        log::info!("guests: d2 bad access: {o2:?}");
        let (_, o3, ..) = r(3);
        let parallel = self.online >= 2;
        log::info!(
            "guests: d3 triple fault: {o3:?} (d4 had made {} exits on CPU{} by then)",
            self.d4_exits_at_d3.unwrap_or(0),
            if parallel { 1 } else { 0 }
        );
        let (_, o4, e4, ..) = r(4);
        log::info!(
            "guests: d4 long run (on CPU{}, alongside d3): {o4:?} after {e4} exits",
            if parallel { 1 } else { 0 }
        );
        if *o1 != Outcome::Done(0) {
            fail(format_args!("suite-guest {o1:?}"));
        }
        match o2 {
            Outcome::Killed(why) if why.contains("does not own") => {}
            o => fail(format_args!("bad-access-guest-not-killed {o:?}")),
        }
        if *o3 != Outcome::Killed(String::from("triple fault")) {
            fail(format_args!("triple-fault-guest {o3:?}"));
        }
        if *o4 != Outcome::Done(0) {
            fail(format_args!("long-run-guest {o4:?}"));
        }
        if self.online != self.wanted {
            fail(format_args!("cpus-online {}/{}", self.online, self.wanted));
        }
        pass_and_power_off(format_args!(
            "cpus={}/{} backend={} suite_exits={e1} on_demand_pages={npf1} parallel={parallel}",
            self.online, self.wanted, self.backend
        ))
    }
}

// --- bench --------------------------------------------------------------------

struct Bench {
    image: &'static [u8],
    cpus: (u32, u32),
    backend: &'static str,
    stage: u32,
    start: u64,
    out: String,
}

/// Starts the next benchmark guest(s), or ends the run.
fn bench_next() {
    let mut g = TEST.lock();
    let Some(Test::Bench(b)) = g.as_mut() else {
        return;
    };
    let image = b.image;
    b.start = platform::tsc();
    let started = match b.stage {
        0 => guest(10, Scenario::BenchHypercall, image, 1).map(|_| ()),
        1 => guest(11, Scenario::BenchCpuid, image, 1).map(|_| ()),
        2 => ping_pong(image),
        _ => {
            let out = core::mem::take(&mut b.out);
            let (online, wanted) = b.cpus;
            drop(g);
            pass_and_power_off(format_args!("cpus={online}/{wanted} {out}"));
        }
    };
    if let Err(e) = started {
        drop(g);
        fail(format_args!("bench-start {e}"));
    }
}

/// Two guests on CPU 0, an event channel between them bound by keel.
fn ping_pong(image: &[u8]) -> Result<(), String> {
    let ping = testdom::build(12, Scenario::Ping, image)?;
    let pong = testdom::build(13, Scenario::Pong, image)?;
    let pong_port = pong
        .xen
        .lock()
        .chans
        .alloc_unbound(12)
        .map_err(|e| format!("{e:?}"))?;
    {
        let mut a = ping.xen.lock();
        let mut b = pong.xen.lock();
        let (ping_port, _) = a
            .chans
            .bind_interdomain(
                crate::xen::evtchn::Peer::Remote(&mut b.chans),
                13,
                pong_port,
            )
            .map_err(|e| format!("{e:?}"))?;
        for (d, p) in [(&ping, ping_port), (&pong, pong_port)] {
            if let crate::domain::Kind::Test(t) = &d.kind {
                t.lock().peer_port = p;
            }
        }
    }
    build::launch(pong, &|_| 1, &|_| 0)?;
    build::launch(ping, &|_| 1, &|_| 0)?;
    Ok(())
}

fn bench_ended(d: &Arc<Domain>, o: &Outcome) {
    let mut g = TEST.lock();
    let Some(Test::Bench(b)) = g.as_mut() else {
        return;
    };
    let us = us_since(b.start).max(1);
    let name = match d.id {
        10 => "hypercall",
        11 => "cpuid",
        12 => "evtchn-ping-pong",
        _ => return, // the pong side, ended by keel
    };
    if *o != Outcome::Done(0) {
        drop(g);
        fail(format_args!("bench-{name} {o:?}"));
    }
    if d.id == 12 {
        let rounds = match &d.kind {
            crate::domain::Kind::Test(t) => t.lock().scratch as u64,
            _ => 0,
        };
        // Two vCPU switches per round trip.
        let per_s = 2 * rounds * 1_000_000 / us;
        log::info!(
            "bench: {name}: {rounds} round trips in {us} us = {per_s} vCPU switches/s on one CPU ({})",
            b.backend
        );
        b.out += &format!("switches_per_s={per_s} ");
        b.stage += 1;
        drop(g);
        if let Some(pong) = table::get(13) {
            pong.end(Outcome::Killed(String::from("benchmark over")));
        }
        bench_next();
        return;
    } else {
        let n = exits(d);
        let per_s = n * 1_000_000 / us;
        log::info!(
            "bench: {name}: {n} exits in {us} us = {per_s} exits/s ({})",
            b.backend
        );
        b.out += &format!("{name}_exits_per_s={per_s} ");
    }
    b.stage += 1;
    drop(g);
    bench_next();
}

// --- fuzz ---------------------------------------------------------------------

struct Fuzz {
    image: &'static [u8],
    cpus: (u32, u32),
    backend: &'static str,
    /// The fuzzer's CPU (a bit mask).
    fuzz_cpu: u64,
    start: u64,
    /// (domid, outcome)
    results: Vec<(u16, Outcome)>,
    /// The fuzzer's summary, once it ended.
    summary: Option<String>,
}

const FUZZ_WELL_BEHAVED: u16 = 20;
const FUZZ_FUZZER: u16 = 21;
const FUZZ_AFTER: u16 = 22;

fn fuzz_start(bi: &'static BootInfo, online: u32, wanted: u32, backend: &'static str) {
    let image = module(bi, "testguest");
    let o = crate::cmdline::get();
    let fuzz_cpu = if online >= 2 { 0b10 } else { 0b01 };
    *TEST.lock() = Some(Test::Fuzz(Fuzz {
        image,
        cpus: (online, wanted),
        backend,
        fuzz_cpu,
        start: platform::tsc(),
        results: Vec::new(),
        summary: None,
    }));
    log::info!(
        "fuzz: d{FUZZ_FUZZER}: {} hypercalls, seed {:#x}, on CPU{} beside d{FUZZ_WELL_BEHAVED} (long run) on CPU0 ({backend})",
        o.fuzz_count,
        o.fuzz_seed,
        fuzz_cpu.trailing_zeros()
    );
    if let Err(e) = guest(FUZZ_WELL_BEHAVED, Scenario::LongRun, image, 0b01) {
        fail(format_args!("long-run-guest {e}"));
    }
    let d = match testdom::build(FUZZ_FUZZER, Scenario::Fuzz, image) {
        Ok(d) => d,
        Err(e) => fail(format_args!("fuzz-guest {e}")),
    };
    if let crate::domain::Kind::Test(t) = &d.kind {
        let mut t = t.lock();
        t.fuzz_count = o.fuzz_count;
        t.fuzz_seed = o.fuzz_seed;
    }
    let home = fuzz_cpu.trailing_zeros() as usize;
    if let Err(e) = build::launch(d, &|_| fuzz_cpu, &|_| home) {
        fail(format_args!("fuzz-guest {e}"));
    }
}

impl Fuzz {
    fn ended(&mut self, d: &Domain, o: &Outcome) {
        self.results.push((d.id, o.clone()));
        if d.id == FUZZ_FUZZER {
            let us = us_since(self.start).max(1);
            let calls = match (&d.kind, o) {
                (crate::domain::Kind::Test(t), Outcome::Done(0)) => t.lock().scratch as u64,
                // Killed: keel's own count of the calls it dispatched.
                _ => d.stats.hypercalls.load(Ordering::Relaxed),
            };
            let per_s = calls * 1_000_000 / us;
            let unimpl = d.stats.unimplemented.load(Ordering::Relaxed);
            log::info!(
                "fuzz: d{FUZZ_FUZZER}: {o:?}: {calls} hypercalls ({unimpl} -ENOSYS for unimplemented calls) and {} exits in {us} us = {per_s} hypercalls/s ({})",
                exits(d),
                self.backend
            );
            self.summary = Some(format!(
                "calls={calls} us={us} calls_per_s={per_s} backend={}",
                self.backend
            ));
            // keel still serves a fresh guest on the CPU the fuzzer had.
            if let Err(e) = guest(FUZZ_AFTER, Scenario::Suite, self.image, self.fuzz_cpu) {
                fail(format_args!("suite-guest-after-fuzz {e}"));
            }
        }
        if self.results.len() == 3 {
            self.judge();
        }
    }

    fn judge(&self) -> ! {
        let r = |id| &self.results.iter().find(|x| x.0 == id).unwrap().1;
        let (wb, fz, after) = (r(FUZZ_WELL_BEHAVED), r(FUZZ_FUZZER), r(FUZZ_AFTER));
        log::info!("fuzz: d{FUZZ_WELL_BEHAVED} long run beside the fuzzer: {wb:?}");
        log::info!("fuzz: d{FUZZ_AFTER} suite after the fuzzer: {after:?}");
        if *wb != Outcome::Done(0) {
            fail(format_args!("long-run-guest {wb:?}"));
        }
        if *after != Outcome::Done(0) {
            fail(format_args!("suite-guest-after-fuzz {after:?}"));
        }
        let fuzzer = match fz {
            Outcome::Done(0) => String::from("done"),
            // keel may end a hostile guest, if it says why.
            Outcome::Killed(why) if !why.is_empty() => format!("killed({why})"),
            o => fail(format_args!("fuzz-guest {o:?}")),
        };
        let (online, wanted) = self.cpus;
        pass_and_power_off(format_args!(
            "cpus={online}/{wanted} fuzzer={fuzzer} {}",
            self.summary.as_deref().unwrap_or("")
        ))
    }
}

// --- sched --------------------------------------------------------------------

/// The measuring window, after a warm-up (both in seconds of TSC time).
const SCHED_WARMUP_MS: u64 = 2000;
const SCHED_WINDOW_MS: u64 = 4000;

struct Sched {
    /// (domid, what): the test domains, all on CPU 1.
    doms: Vec<(u16, &'static str)>,
    /// TSC at which to take the first sample, then the last.
    next: u64,
    /// Runtime of each test domain's vCPU at the first sample (ns).
    first: Option<Vec<u64>>,
    t_first: u64,
    done: bool,
}

fn sched_start(bi: &'static BootInfo, online: u32) {
    if online < 2 {
        fail(format_args!("sched needs 2 CPUs, {online} online"));
    }
    let image = module(bi, "testguest");
    // dom0 first: its RAM is host RAM 1:1 from 16 MiB up.
    if bi.module("dom0").is_some() {
        if let Err(e) = crate::domain::build::dom0::boot(bi) {
            fail(format_args!("dom0 {e}"));
        }
    }
    let doms: Vec<(u16, &'static str, Scenario, u16, u16)> = alloc::vec![
        (11, "weight 256", Scenario::Spin, 256, 0),
        (12, "weight 512", Scenario::Spin, 512, 0),
        (13, "cap 25%", Scenario::Spin, 256, 25),
        (14, "halted", Scenario::Halt, 256, 0),
    ];
    for &(id, _, sc, w, cap) in &doms {
        let d = match testdom::build(id, sc, image) {
            Ok(d) => d,
            Err(e) => fail(format_args!("sched-guest {e}")),
        };
        if let Err(e) = build::launch(d, &|_| 0b10, &|_| 1) {
            fail(format_args!("sched-guest {e}"));
        }
        let _ = crate::sched::set_weight(id, w);
        let _ = crate::sched::set_cap(id, cap);
    }
    log::info!(
        "sched: 4 test domains on CPU1 (weights 256 and 512, a 25% cap, a halted vCPU) beside dom0"
    );
    *TEST.lock() = Some(Test::Sched(Sched {
        doms: doms.iter().map(|d| (d.0, d.1)).collect(),
        next: platform::tsc() + SCHED_WARMUP_MS * platform::tsc_khz(),
        first: None,
        t_first: 0,
        done: false,
    }));
}

impl Sched {
    fn runtimes(&self) -> Vec<u64> {
        self.doms
            .iter()
            .map(|&(id, _)| {
                crate::sched::runtime_ns(crate::sched::VcpuRef::new(id, 0)).unwrap_or(0)
            })
            .collect()
    }

    /// Takes the samples; at the end, the verdict.
    fn poll(&mut self) -> (Option<u64>, Option<Result<(), String>>) {
        if self.done {
            return (None, None);
        }
        let now = platform::tsc();
        if now < self.next {
            return (Some(self.next), None);
        }
        let Some(first) = &self.first else {
            self.first = Some(self.runtimes());
            self.t_first = now;
            self.next = now + SCHED_WINDOW_MS * platform::tsc_khz();
            return (Some(self.next), None);
        };
        self.done = true;
        let window_ns = (now - self.t_first) * 1_000_000 / platform::tsc_khz().max(1);
        let ran: Vec<u64> = self
            .runtimes()
            .iter()
            .zip(first)
            .map(|(b, a)| b - a)
            .collect();
        let pct = |i: usize| ran[i] as f64 * 100.0 / window_ns.max(1) as f64;
        for (i, &(id, what)) in self.doms.iter().enumerate() {
            log::info!(
                "sched: d{id} ({what}): {} ms of {} ms on CPU1 = {:.1}%",
                ran[i] / 1_000_000,
                window_ns / 1_000_000,
                pct(i)
            );
        }
        let ratio = ran[1] as f64 / ran[0].max(1) as f64;
        log::info!("sched: weight 512 : weight 256 = {ratio:.2} (want 2, within 10%)");
        let verdict = if (ratio - 2.0).abs() > 0.2 {
            Err(format!("weights ratio {ratio:.2}"))
        } else if pct(2) > 27.0 {
            Err(format!("capped domain got {:.1}%", pct(2)))
        } else if pct(3) >= 1.0 {
            Err(format!("halted vCPU got {:.1}%", pct(3)))
        } else {
            log::info!(
                "keel-test: PASS sched ratio={ratio:.2} capped={:.1}% halted={:.2}%",
                pct(2),
                pct(3)
            );
            Ok(())
        };
        (None, Some(verdict))
    }
}
