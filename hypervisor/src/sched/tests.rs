use super::credit::*;
use std::collections::HashMap;

const A: VcpuRef = VcpuRef::new(1, 0);
const B: VcpuRef = VcpuRef::new(2, 0);
const C: VcpuRef = VcpuRef::new(3, 0);
const ANY: u64 = u64::MAX;

/// Runs every CPU by the policy's decisions, event by event (each CPU
/// decides again when its slice ends), from `*t` for `ns` of time, with
/// every vCPU CPU-bound. Returns the time each vCPU ran; checks the
/// invariants at every decision.
fn simulate(s: &mut Scheduler, t: &mut u64, ns: u64) -> HashMap<VcpuRef, u64> {
    let before: HashMap<VcpuRef, u64> = all(s).map(|v| (v, s.runtime_ns(v).unwrap())).collect();
    let end = *t + ns;
    let mut next = vec![*t; s.ncpus()];
    loop {
        let (cpu, &at) = next.iter().enumerate().min_by_key(|(_, &at)| at).unwrap();
        if at >= end {
            break;
        }
        let d = s.tick(cpu, at).unwrap();
        if let Some(v) = d.run {
            check_pick(s, cpu, v);
        }
        assert!(d.timeslice_ns > 0);
        next[cpu] = at.saturating_add(d.timeslice_ns.min(MAX_SLICE_NS));
    }
    // Charge everyone up to `end`.
    for cpu in 0..s.ncpus() {
        s.tick(cpu, end).unwrap();
    }
    *t = end;
    all(s)
        .map(|v| {
            (
                v,
                s.runtime_ns(v).unwrap() - before.get(&v).copied().unwrap_or(0),
            )
        })
        .collect()
}

fn all(s: &Scheduler) -> impl Iterator<Item = VcpuRef> {
    let mut v = Vec::new();
    for d in 0..16u16 {
        for i in 0..4 {
            let r = VcpuRef::new(d, i);
            if s.state(r).is_some() {
                v.push(r);
            }
        }
    }
    v.into_iter()
}

fn check_pick(s: &Scheduler, cpu: usize, v: VcpuRef) {
    assert_eq!(s.state(v), Some(RunState::Running));
    assert_ne!(
        s.affinity(v).unwrap() & (1 << cpu),
        0,
        "{v:?} outside its affinity on {cpu}"
    );
    assert_eq!(s.current(cpu), Some(v));
    for other in (0..s.ncpus()).filter(|&c| c != cpu) {
        assert_ne!(s.current(other), Some(v), "{v:?} on two CPUs");
    }
}

fn share(ran: &HashMap<VcpuRef, u64>, v: VcpuRef, total: u64) -> f64 {
    *ran.get(&v).unwrap_or(&0) as f64 / total as f64
}

const SEC: u64 = 1_000_000_000;

#[test]
fn idle_when_empty() {
    let mut s = Scheduler::new(2).unwrap();
    let d = s.tick(0, 0).unwrap();
    assert_eq!(
        d,
        Decision {
            run: None,
            timeslice_ns: NEVER
        }
    );
    assert_eq!(s.tick(1, MAX_SLICE_NS).unwrap().run, None);
    assert_eq!(s.tick(2, 0).unwrap_err(), SchedError::NoSuchCpu(2));
    assert_eq!(Scheduler::new(0).unwrap_err(), SchedError::BadCpuCount(0));
    assert_eq!(Scheduler::new(65).unwrap_err(), SchedError::BadCpuCount(65));
    assert!(Scheduler::new(64).is_ok());
}

#[test]
fn single_vcpu_runs_and_blocked_never_chosen() {
    let mut s = Scheduler::new(1).unwrap();
    assert_eq!(
        s.add_vcpu(A, ANY, 0, true).unwrap(),
        Some(0),
        "idle CPU gets kicked"
    );
    assert_eq!(
        s.add_vcpu(A, ANY, 0, true).unwrap_err(),
        SchedError::AlreadyPresent(A)
    );
    assert_eq!(s.tick(0, 0).unwrap().run, Some(A));
    assert_eq!(s.block(A).unwrap(), Some(0));
    let mut t = MAX_SLICE_NS;
    for _ in 0..20 {
        assert_eq!(s.tick(0, t).unwrap().run, None, "blocked: idle");
        t += MAX_SLICE_NS;
    }
    assert_eq!(s.wake(A).unwrap(), Some(0));
    assert_eq!(s.tick(0, t).unwrap().run, Some(A));
    assert_eq!(s.remove_vcpu(A).unwrap(), Some(0));
    assert_eq!(s.tick(0, t + MAX_SLICE_NS).unwrap().run, None);
    assert_eq!(s.remove_vcpu(A).unwrap_err(), SchedError::NoSuchVcpu(A));
}

#[test]
fn added_blocked_waits_for_its_wake() {
    let mut s = Scheduler::new(1).unwrap();
    assert_eq!(s.add_vcpu(A, ANY, 0, false).unwrap(), None);
    assert_eq!(s.tick(0, 0).unwrap().run, None);
    assert_eq!(s.wake(A).unwrap(), Some(0));
    assert_eq!(s.tick(0, 1).unwrap().run, Some(A));
}

#[test]
fn equal_weights_share_equally() {
    let mut s = Scheduler::new(1).unwrap();
    s.add_vcpu(A, ANY, 0, true).unwrap();
    s.add_vcpu(B, ANY, 0, true).unwrap();
    let mut t = 0;
    let ran = simulate(&mut s, &mut t, 10 * SEC);
    assert!((share(&ran, A, 10 * SEC) - 0.5).abs() < 0.02, "{ran:?}");
    assert!((share(&ran, B, 10 * SEC) - 0.5).abs() < 0.02, "{ran:?}");
}

#[test]
fn fairness_by_weight() {
    let mut s = Scheduler::new(1).unwrap();
    s.add_vcpu(A, ANY, 0, true).unwrap();
    s.add_vcpu(B, ANY, 0, true).unwrap();
    s.set_weight(1, 256).unwrap();
    s.set_weight(2, 512).unwrap();
    let mut t = 0;
    let ran = simulate(&mut s, &mut t, 10 * SEC);
    let (a, b) = (ran[&A] as f64, ran[&B] as f64);
    let ratio = b / a;
    assert!((ratio - 2.0).abs() / 2.0 < 0.03, "B/A = {ratio}");
    assert_eq!(a + b, 10.0 * SEC as f64, "work conserving");
}

/// The case credit1 gets wrong (its accounting hands out the idle CPU's
/// credit too, and both vCPUs end up never short of credit: 1:1).
#[test]
fn weights_hold_for_vcpus_pinned_to_one_cpu() {
    let mut s = Scheduler::new(2).unwrap();
    s.add_vcpu(A, 0b10, 1, true).unwrap();
    s.add_vcpu(B, 0b10, 1, true).unwrap();
    s.set_weight(1, 256).unwrap();
    s.set_weight(2, 512).unwrap();
    let mut t = 0;
    let ran = simulate(&mut s, &mut t, 10 * SEC);
    let ratio = ran[&B] as f64 / ran[&A] as f64;
    assert!((ratio - 2.0).abs() / 2.0 < 0.03, "B/A = {ratio}");
    assert_eq!(s.current(0), None, "CPU 0 stays idle");
}

#[test]
fn fairness_by_weight_on_two_cpus() {
    // Four single-vCPU domains, weights 1:1:2:4 on two CPUs: a vCPU gets at
    // most one CPU, the rest is shared by weight: 4 gets CPU 1 alone
    // (1/2), the others share CPU 0 as 1:1:2.
    let mut s = Scheduler::new(2).unwrap();
    let vs: Vec<_> = (1..=4).map(|d| VcpuRef::new(d, 0)).collect();
    for (v, w) in vs.iter().zip([256, 256, 512, 1024]) {
        s.add_vcpu(*v, ANY, 0, true).unwrap();
        s.set_weight(v.domid, w).unwrap();
    }
    let mut t = 0;
    let ran = simulate(&mut s, &mut t, 20 * SEC);
    let total = 2 * 20 * SEC;
    let got: Vec<f64> = vs.iter().map(|v| share(&ran, *v, total)).collect();
    let sum: f64 = got.iter().sum();
    assert!((sum - 1.0).abs() < 0.01, "work conserving: {got:?}");
    // The heaviest gets the most, and no vCPU gets more than a CPU.
    assert!(got[3] >= got[2] && got[2] >= got[0] * 1.5, "{got:?}");
    assert!(got.iter().all(|&g| g <= 0.5 + 0.01), "{got:?}");
}

#[test]
fn caps_limit_share() {
    // Alone on a CPU: capped at 25% even though the CPU is otherwise idle.
    let mut s = Scheduler::new(1).unwrap();
    s.add_vcpu(A, ANY, 0, true).unwrap();
    s.set_cap(1, 25).unwrap();
    let mut t = 0;
    let ran = simulate(&mut s, &mut t, 10 * SEC);
    let a = share(&ran, A, 10 * SEC);
    assert!((0.24..=0.26).contains(&a), "capped share {a}");

    // Competing with an uncapped domain of the same weight.
    s.add_vcpu(B, ANY, 0, true).unwrap();
    let ran = simulate(&mut s, &mut t, 10 * SEC);
    let a = share(&ran, A, 10 * SEC);
    let b = share(&ran, B, 10 * SEC);
    assert!(a <= 0.26, "capped share {a}");
    assert!(b >= 0.74, "uncapped share {b}");

    // Removing the cap restores the fair share.
    s.set_cap(1, 0).unwrap();
    let ran = simulate(&mut s, &mut t, 10 * SEC);
    let a = share(&ran, A, 10 * SEC);
    assert!((a - 0.5).abs() < 0.03, "uncapped again {a}");
}

#[test]
fn the_sched_scenario_mix() {
    // What the sched scenario runs on CPU 1 of 2: weights 256 and 512, a
    // domain capped at 25 %, a vCPU halted throughout, and an interactive
    // vCPU that runs 200 us every 4 ms (dom0's).
    let mut s = Scheduler::new(2).unwrap();
    let (lo, hi, capped, halted, inter) = (
        VcpuRef::new(1, 0),
        VcpuRef::new(2, 0),
        VcpuRef::new(3, 0),
        VcpuRef::new(4, 0),
        VcpuRef::new(0, 1),
    );
    for v in [lo, hi, capped] {
        s.add_vcpu(v, 0b10, 1, true).unwrap();
    }
    s.add_vcpu(halted, 0b10, 1, true).unwrap();
    // Pinned too, so that it competes (unpinned, it would take CPU 0).
    s.add_vcpu(inter, 0b10, 1, false).unwrap();
    s.set_weight(2, 512).unwrap();
    s.set_cap(3, 25).unwrap();
    s.tick(1, 0).unwrap();
    s.block(halted).unwrap();
    // Drive it by hand: CPU 1 decides at slice ends; the interactive vCPU
    // wakes every 4 ms and blocks after 200 us of running.
    let (mut t, end) = (0u64, 10 * SEC);
    let mut next_wake = 4_000_000u64;
    let mut block_at: Option<u64> = None;
    let mut latency_max = 0u64;
    let mut woke_at = 0u64;
    while t < end {
        let d = s.tick(1, t).unwrap();
        if d.run == Some(inter) && block_at.is_none() {
            latency_max = latency_max.max(t - woke_at);
            block_at = Some(t + 200_000);
        }
        let mut until = t.saturating_add(d.timeslice_ns).min(end);
        until = until.min(next_wake);
        if let Some(b) = block_at {
            until = until.min(b);
        }
        t = until;
        if block_at == Some(t) {
            s.block(inter).unwrap();
            block_at = None;
        }
        if t == next_wake {
            s.wake(inter).unwrap();
            woke_at = t;
            next_wake += 4_000_000;
        }
    }
    s.tick(1, end).unwrap();
    let run = |v| s.runtime_ns(v).unwrap() as f64 / end as f64;
    let ratio = run(hi) / run(lo);
    assert!((ratio - 2.0).abs() / 2.0 < 0.05, "hi/lo = {ratio}");
    assert!(run(capped) <= 0.26, "capped {}", run(capped));
    assert!(run(halted) < 0.001, "halted {}", run(halted));
    assert!(
        (run(inter) - 0.05).abs() < 0.005,
        "interactive {}",
        run(inter)
    );
    assert!(
        latency_max <= MIN_SLICE_NS,
        "wake-up latency {latency_max} ns"
    );
}

#[test]
fn sleeper_wakes_ahead_of_hogs() {
    let mut s = Scheduler::new(1).unwrap();
    s.add_vcpu(A, ANY, 0, true).unwrap();
    s.add_vcpu(B, ANY, 0, true).unwrap();
    s.add_vcpu(C, ANY, 0, false).unwrap();
    let mut t = 0;
    simulate(&mut s, &mut t, SEC);
    // C slept: it has full credit, the hogs no more; it runs within a
    // slice of waking, ahead of the hog that would come next.
    s.wake(C).unwrap();
    let woke = t;
    loop {
        let d = s.tick(0, t).unwrap();
        if d.run == Some(C) {
            break;
        }
        t += d.timeslice_ns;
        assert!(t - woke <= MAX_SLICE_NS, "C waited {} ns", t - woke);
    }
}

#[test]
fn yield_lets_others_run() {
    let mut s = Scheduler::new(1).unwrap();
    s.add_vcpu(A, ANY, 0, true).unwrap();
    s.add_vcpu(B, ANY, 0, true).unwrap();
    let first = s.tick(0, 0).unwrap().run.unwrap();
    let other = if first == A { B } else { A };
    assert_eq!(s.yield_(first).unwrap(), Some(0));
    assert_eq!(s.tick(0, 100_000).unwrap().run, Some(other));
    // Yielding with nobody else around: keeps running.
    s.remove_vcpu(other).unwrap();
    s.yield_(first).unwrap();
    assert_eq!(s.tick(0, 2_000_000).unwrap().run, Some(first));
}

/// A yield gives way once, not for good: a vCPU that yielded beside
/// CPU-bound vCPUs runs again within a few slices (it never did: dom0's
/// vCPU pinned beside the sched scenario's hogs starved, RCU stalls).
#[test]
fn a_yield_does_not_starve_the_yielder() {
    let mut s = Scheduler::new(1).unwrap();
    let y = VcpuRef::new(4, 0);
    s.add_vcpu(A, ANY, 0, true).unwrap();
    s.add_vcpu(B, ANY, 0, true).unwrap();
    s.add_vcpu(y, ANY, 0, true).unwrap();
    let mut t = 0;
    // Run until `y` runs, then have it yield.
    loop {
        let d = s.tick(0, t).unwrap();
        t += d.timeslice_ns.min(MAX_SLICE_NS);
        if d.run == Some(y) {
            s.yield_(y).unwrap();
            break;
        }
    }
    let mut picked_again = None;
    for n in 0..50 {
        let d = s.tick(0, t).unwrap();
        t += d.timeslice_ns.min(MAX_SLICE_NS);
        if d.run == Some(y) {
            picked_again = Some(n);
            break;
        }
    }
    let n = picked_again.expect("the vCPU that yielded never ran again");
    assert!(n >= 1, "it gave way at least once");
}

#[test]
fn pinning_moves_and_restricts() {
    let mut s = Scheduler::new(4).unwrap();
    s.add_vcpu(A, ANY, 0, true).unwrap();
    assert_eq!(s.pin(A, 0).unwrap_err(), SchedError::EmptyAffinity);
    assert_eq!(
        s.pin(A, 1 << 7).unwrap_err(),
        SchedError::EmptyAffinity,
        "no CPU 7"
    );
    s.pin(A, 1 << 2).unwrap();
    assert_eq!(s.runqueue(2).collect::<Vec<_>>(), [A]);
    for cpu in [0, 1, 3] {
        assert_eq!(
            s.tick(cpu, 0).unwrap().run,
            None,
            "never stolen outside the mask"
        );
    }
    assert_eq!(s.tick(2, 0).unwrap().run, Some(A));
    // Re-pin while running: CPU 2 must be kicked, and A moves to CPU 3.
    assert_eq!(s.pin(A, 1 << 3).unwrap(), Some(2));
    assert_eq!(s.tick(2, MAX_SLICE_NS).unwrap().run, None);
    assert_eq!(s.tick(3, MAX_SLICE_NS).unwrap().run, Some(A));
    // Pinning a blocked vCPU: it stays CPU 3's until it wakes (CPU 3's run
    // loop holds its timers), then wakes inside the new mask.
    s.block(A).unwrap();
    s.tick(3, 2 * MAX_SLICE_NS).unwrap();
    s.pin(A, 1 << 1).unwrap();
    assert_eq!(s.cpu_of(A), Some(3));
    assert_eq!(s.wake(A).unwrap(), Some(1));
    assert_eq!(s.cpu_of(A), Some(1));
}

/// A vCPU that blocked is still its CPU's current one until that CPU
/// decides again. Pinned elsewhere and woken in that window, it must run
/// on one CPU only: the old CPU's next decision must not queue it again
/// while the new one runs it (it did: dom0 then hung with a vCPU lost in
/// SCHEDOP_poll, seen after `keelctl vcpu-pin`).
#[test]
fn pinned_while_blocked_but_still_current_runs_on_one_cpu() {
    let mut s = Scheduler::new(2).unwrap();
    s.add_vcpu(A, ANY, 0, true).unwrap();
    assert_eq!(s.tick(0, 0).unwrap().run, Some(A));
    s.block(A).unwrap();
    s.pin(A, 0b10).unwrap();
    s.wake(A).unwrap();
    let mut runs = 0;
    for (cpu, t) in [(1, 1_000), (0, 2_000), (1, 3_000), (0, 4_000), (1, 5_000)] {
        let d = s.tick(cpu, t).unwrap();
        if let Some(v) = d.run {
            check_pick(&s, cpu, v);
            assert_eq!(cpu, 1, "runs only inside its new affinity");
            runs += 1;
        }
        let queued = (0..2)
            .flat_map(|c| s.runqueue(c).collect::<Vec<_>>())
            .filter(|&v| v == A)
            .count();
        let current = (0..2).filter(|&c| s.current(c) == Some(A)).count();
        assert!(
            queued + current <= 1,
            "A queued {queued}x and current on {current} CPU(s) at {t}"
        );
    }
    assert!(runs >= 2, "A runs on CPU 1");
}

#[test]
fn idle_cpus_steal_within_affinity() {
    let mut s = Scheduler::new(2).unwrap();
    for v in [A, B, C] {
        s.add_vcpu(v, 0b01, 0, true).unwrap();
    }
    assert_eq!(s.runqueue(0).count(), 3);
    assert!(s.tick(0, 0).unwrap().run.is_some());
    assert_eq!(s.tick(1, 0).unwrap().run, None, "all pinned to CPU 0");
    s.pin(C, 0b11).unwrap();
    if s.current(0) != Some(C) {
        assert_eq!(s.tick(1, 1).unwrap().run, Some(C), "stolen from CPU 0");
    }
    // Over a long run both CPUs stay busy and A, B share CPU 0.
    let mut t = 2;
    let ran = simulate(&mut s, &mut t, 10 * SEC);
    assert!(share(&ran, C, 10 * SEC) > 0.95, "{ran:?}");
    assert!((share(&ran, A, 10 * SEC) - 0.5).abs() < 0.03, "{ran:?}");
}

#[test]
fn unpinned_vcpus_spread_over_cpus() {
    let mut s = Scheduler::new(2).unwrap();
    let vs: Vec<_> = (1..=4).map(|d| VcpuRef::new(d, 0)).collect();
    for v in &vs {
        s.add_vcpu(*v, ANY, 0, true).unwrap();
    }
    let mut t = 0;
    let ran = simulate(&mut s, &mut t, 10 * SEC);
    for v in &vs {
        let sh = share(&ran, *v, 2 * 10 * SEC);
        assert!((sh - 0.25).abs() < 0.03, "{v:?}: {sh} ({ran:?})");
    }
}

#[test]
fn errors() {
    let mut s = Scheduler::new(1).unwrap();
    assert_eq!(
        s.set_weight(9, 256).unwrap_err(),
        SchedError::NoSuchDomain(9)
    );
    assert_eq!(s.set_cap(9, 10).unwrap_err(), SchedError::NoSuchDomain(9));
    assert_eq!(
        s.add_vcpu(A, 0b10, 0, true).unwrap_err(),
        SchedError::EmptyAffinity,
        "no CPU 1 on this machine"
    );
    s.add_vcpu(A, ANY, 0, true).unwrap();
    assert_eq!(s.set_weight(1, 0).unwrap_err(), SchedError::BadWeight(0));
    assert_eq!(s.wake(B).unwrap_err(), SchedError::NoSuchVcpu(B));
    assert_eq!(s.block(B).unwrap_err(), SchedError::NoSuchVcpu(B));
    assert_eq!(s.yield_(B).unwrap_err(), SchedError::NoSuchVcpu(B));
    assert_eq!(s.pin(B, 1).unwrap_err(), SchedError::NoSuchVcpu(B));
    assert_eq!(
        s.wake(A).unwrap(),
        None,
        "waking a runnable vCPU is a no-op"
    );
}

/// Random operations on 4 CPUs / 10 vCPUs: no vCPU ever runs outside its
/// affinity, blocked vCPUs are never picked, none runs on two CPUs, queues
/// hold exactly the queued vCPUs.
#[test]
fn randomized_invariants() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut s = Scheduler::new(4).unwrap();
    let vs: Vec<_> = (0..10)
        .map(|i| VcpuRef::new(1 + i / 3, i as u32 % 3))
        .collect();
    let mut present = vec![false; vs.len()];
    let mut t = 0u64;
    for _ in 0..50_000 {
        let k = rnd(vs.len() as u64) as usize;
        let v = vs[k];
        match rnd(10) {
            0 if !present[k] => {
                let aff = 1 + rnd(15);
                s.add_vcpu(v, aff, rnd(4) as usize, rnd(2) == 0).unwrap();
                present[k] = true;
            }
            1 if present[k] && rnd(4) == 0 => {
                s.remove_vcpu(v).unwrap();
                present[k] = false;
            }
            2 if present[k] => {
                s.block(v).unwrap();
            }
            3 if present[k] => {
                s.wake(v).unwrap();
            }
            4 if present[k] => {
                let _ = s.pin(v, rnd(16));
            }
            5 if present[k] => {
                s.yield_(v).unwrap();
            }
            6 if present[k] => {
                s.set_weight(v.domid, 1 + rnd(1024) as u16).unwrap();
                s.set_cap(v.domid, [0, 0, 10, 50, 150][rnd(5) as usize])
                    .unwrap();
            }
            _ => {
                let cpu = rnd(4) as usize;
                t += rnd(2 * MAX_SLICE_NS);
                let d = s.tick(cpu, t).unwrap();
                if let Some(r) = d.run {
                    check_pick(&s, cpu, r);
                }
            }
        }
        let mut queued = 0;
        for cpu in 0..4 {
            for q in s.runqueue(cpu) {
                queued += 1;
                assert_eq!(s.state(q), Some(RunState::Queued));
                assert_ne!(
                    s.affinity(q).unwrap() & (1 << cpu),
                    0,
                    "queued outside affinity"
                );
            }
        }
        let want = vs
            .iter()
            .filter(|v| s.state(**v) == Some(RunState::Queued))
            .count();
        assert_eq!(queued, want);
        // A queued vCPU is nobody's current one; a running one is its
        // CPU's current one, and no other CPU's.
        for &v in &vs {
            let on: Vec<usize> = (0..4).filter(|&c| s.current(c) == Some(v)).collect();
            match s.state(v) {
                Some(RunState::Queued) => assert_eq!(on, [], "{v:?} queued and current"),
                Some(RunState::Running) => assert_eq!(on, [s.cpu_of(v).unwrap()], "{v:?} running"),
                _ => assert!(on.len() <= 1, "{v:?} current on {on:?}"),
            }
        }
    }
}
