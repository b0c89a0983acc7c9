//! Scheduling: the decision logic of a credit scheduler in the style of
//! Xen's credit (credit1) scheduler. See `docs/scheduler.md`.
//!
//! Pure and deterministic: the hardware layer calls [`Scheduler::tick`] on
//! each physical CPU when its one-shot timer fires (or when told to
//! reschedule), runs the vCPU it is given for at most `timeslice_ns`, and
//! sends an IPI to the CPUs that [`Scheduler::wake`], [`Scheduler::block`],
//! [`Scheduler::pin`] ... return. Nothing here touches hardware.
//!
//! * Every domain has a weight (default 256) and a cap (percent of one
//!   physical CPU, 0 = uncapped). Every [`ACCT_PERIOD_NS`] (30 ms) the
//!   credits of the period (`CREDITS_PER_ACCT` per physical CPU) are shared
//!   among the active domains in proportion to weight × active vCPUs,
//!   limited by the cap and by one physical CPU per vCPU.
//! * A running vCPU is debited for the time it ran, [`CREDITS_PER_MS`] per
//!   millisecond. Credit >= 0 is UNDER, < 0 is OVER. A vCPU woken from
//!   blocking while UNDER is BOOSTed until it has run once.
//! * Each CPU picks the first eligible vCPU of the highest priority from
//!   its own run queue (round robin within a priority). If that is OVER or
//!   nothing, it steals a better one from another CPU's queue.
//! * A capped domain whose vCPU goes negative is parked (not run, even on
//!   an idle CPU) until the next accounting gives it credit again.
//! * Hard affinity: a vCPU is only ever queued on, picked by, or stolen to
//!   a CPU in its mask.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

/// The scheduling tick: a CPU reschedules at least this often.
pub const TICK_NS: u64 = 10_000_000;
/// Credits are handed out every accounting period (3 ticks).
pub const ACCT_PERIOD_NS: u64 = 3 * TICK_NS;
pub const CREDITS_PER_MS: i64 = 10;
/// Credits one physical CPU provides per accounting period.
pub const CREDITS_PER_ACCT: i64 = CREDITS_PER_MS * (ACCT_PERIOD_NS / 1_000_000) as i64;
pub const DEFAULT_WEIGHT: u16 = 256;
/// Xen's weight range.
pub const MAX_WEIGHT: u16 = 65535;
/// The most physical CPUs (affinity is a `u64` mask).
pub const MAX_CPUS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VcpuRef {
    pub domid: u16,
    pub vcpu: u32,
}

impl VcpuRef {
    pub const fn new(domid: u16, vcpu: u32) -> Self {
        VcpuRef { domid, vcpu }
    }
}

/// Ordered: `Over < Under < Boost`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Over,
    Under,
    Boost,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Waiting in `cpu`'s run queue.
    Queued,
    /// Running on `cpu`.
    Running,
    /// Blocked (HLT, `SCHEDOP_block`): never picked until woken.
    Blocked,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The vCPU to run, or `None`: idle (halt until an interrupt).
    pub run: Option<VcpuRef>,
    /// Arm the one-shot timer for this long, then call `tick` again.
    pub timeslice_ns: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedError {
    BadCpuCount(usize),
    NoSuchCpu(usize),
    /// The affinity mask has no CPU of this machine.
    EmptyAffinity,
    AlreadyPresent(VcpuRef),
    NoSuchVcpu(VcpuRef),
    NoSuchDomain(u16),
    /// Weight 0 (Xen's range is 1..=65535).
    BadWeight(u16),
}

/// `a / b` rounded up, for `a >= 0`, `b > 0`.
fn div_ceil(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

#[derive(Clone, Copy, Debug)]
struct VcpuInfo {
    state: RunState,
    /// The run queue it is in, the CPU it runs on, or the last one.
    cpu: usize,
    credit: i64,
    pri: Priority,
    affinity: u64,
    parked: bool,
    yielded: bool,
}

#[derive(Clone, Copy, Debug)]
struct DomInfo {
    weight: u16,
    cap: u16,
    nr_vcpus: usize,
}

#[derive(Clone, Debug)]
pub struct Scheduler {
    ncpus: usize,
    all_cpus: u64,
    runq: Vec<VecDeque<VcpuRef>>,
    current: Vec<Option<VcpuRef>>,
    /// When `current[cpu]` started its slice (for the debit).
    since: Vec<u64>,
    vcpus: BTreeMap<VcpuRef, VcpuInfo>,
    doms: BTreeMap<u16, DomInfo>,
    next_acct: Option<u64>,
}

impl Scheduler {
    pub fn new(ncpus: usize) -> Result<Self, SchedError> {
        if ncpus == 0 || ncpus > MAX_CPUS {
            return Err(SchedError::BadCpuCount(ncpus));
        }
        Ok(Scheduler {
            ncpus,
            all_cpus: if ncpus == 64 {
                u64::MAX
            } else {
                (1u64 << ncpus) - 1
            },
            runq: (0..ncpus).map(|_| VecDeque::new()).collect(),
            current: alloc::vec![None; ncpus],
            since: alloc::vec![0; ncpus],
            vcpus: BTreeMap::new(),
            doms: BTreeMap::new(),
            next_acct: None,
        })
    }

    pub fn ncpus(&self) -> usize {
        self.ncpus
    }

    /// What `cpu` runs now.
    pub fn current(&self, cpu: usize) -> Option<VcpuRef> {
        self.current.get(cpu).copied().flatten()
    }

    pub fn state(&self, v: VcpuRef) -> Option<RunState> {
        self.vcpus.get(&v).map(|i| i.state)
    }
    pub fn priority(&self, v: VcpuRef) -> Option<Priority> {
        self.vcpus.get(&v).map(|i| i.pri)
    }
    pub fn credit(&self, v: VcpuRef) -> Option<i64> {
        self.vcpus.get(&v).map(|i| i.credit)
    }
    pub fn affinity(&self, v: VcpuRef) -> Option<u64> {
        self.vcpus.get(&v).map(|i| i.affinity)
    }
    /// Queued vCPUs of `cpu`, in order.
    pub fn runqueue(&self, cpu: usize) -> impl Iterator<Item = VcpuRef> + '_ {
        self.runq[cpu].iter().copied()
    }

    /// Adds a runnable vCPU (affinity: all CPUs). Returns a CPU to kick.
    pub fn add_vcpu(&mut self, v: VcpuRef) -> Result<Option<usize>, SchedError> {
        if self.vcpus.contains_key(&v) {
            return Err(SchedError::AlreadyPresent(v));
        }
        let d = self.doms.entry(v.domid).or_insert(DomInfo {
            weight: DEFAULT_WEIGHT,
            cap: 0,
            nr_vcpus: 0,
        });
        d.nr_vcpus += 1;
        let info = VcpuInfo {
            state: RunState::Queued,
            cpu: 0,
            credit: 0,
            pri: Priority::Under,
            affinity: self.all_cpus,
            parked: false,
            yielded: false,
        };
        self.vcpus.insert(v, info);
        Ok(self.enqueue(v))
    }

    /// Removes a vCPU. Returns the CPU that was running it (reschedule it).
    pub fn remove_vcpu(&mut self, v: VcpuRef) -> Result<Option<usize>, SchedError> {
        let info = self.vcpus.remove(&v).ok_or(SchedError::NoSuchVcpu(v))?;
        if let Some(d) = self.doms.get_mut(&v.domid) {
            d.nr_vcpus -= 1;
            if d.nr_vcpus == 0 {
                self.doms.remove(&v.domid);
            }
        }
        if info.state == RunState::Queued {
            self.runq[info.cpu].retain(|&x| x != v);
        }
        // Running, or blocked but not yet switched away from.
        if self.current[info.cpu] == Some(v) {
            self.current[info.cpu] = None;
            return Ok(Some(info.cpu));
        }
        Ok(None)
    }

    /// `weight` for every vCPU of `domid` (which must have vCPUs).
    pub fn set_weight(&mut self, domid: u16, weight: u16) -> Result<(), SchedError> {
        if weight == 0 {
            return Err(SchedError::BadWeight(weight));
        }
        self.doms
            .get_mut(&domid)
            .ok_or(SchedError::NoSuchDomain(domid))?
            .weight = weight;
        Ok(())
    }

    /// Cap in percent of one physical CPU (0 = none; 200 = two CPUs).
    pub fn set_cap(&mut self, domid: u16, cap: u16) -> Result<(), SchedError> {
        self.doms
            .get_mut(&domid)
            .ok_or(SchedError::NoSuchDomain(domid))?
            .cap = cap;
        if cap == 0 {
            for (_, i) in self
                .vcpus
                .range_mut(VcpuRef::new(domid, 0)..=VcpuRef::new(domid, u32::MAX))
            {
                i.parked = false;
            }
        }
        Ok(())
    }

    /// Hard affinity. A queued vCPU outside the new mask moves; a running
    /// one must be descheduled: its CPU is returned to kick.
    pub fn pin(&mut self, v: VcpuRef, mask: u64) -> Result<Option<usize>, SchedError> {
        let mask = mask & self.all_cpus;
        if mask == 0 {
            return Err(SchedError::EmptyAffinity);
        }
        let i = self.vcpus.get_mut(&v).ok_or(SchedError::NoSuchVcpu(v))?;
        i.affinity = mask;
        let (state, cpu) = (i.state, i.cpu);
        if mask & (1 << cpu) != 0 {
            return Ok(None);
        }
        match state {
            RunState::Queued => {
                self.runq[cpu].retain(|&x| x != v);
                Ok(self.enqueue(v))
            }
            RunState::Running => Ok(Some(cpu)),
            RunState::Blocked => Ok(None),
        }
    }

    /// HLT / `SCHEDOP_block`. Returns the CPU to reschedule if it was running.
    pub fn block(&mut self, v: VcpuRef) -> Result<Option<usize>, SchedError> {
        let i = self.vcpus.get_mut(&v).ok_or(SchedError::NoSuchVcpu(v))?;
        let (state, cpu) = (i.state, i.cpu);
        i.state = RunState::Blocked;
        match state {
            RunState::Queued => {
                self.runq[cpu].retain(|&x| x != v);
                Ok(None)
            }
            // Stays `current` until that CPU's next tick debits it.
            RunState::Running => Ok(Some(cpu)),
            RunState::Blocked => Ok(None),
        }
    }

    /// An event for a blocked vCPU. UNDER becomes BOOST. Returns a CPU to
    /// kick (idle, or running something of lower priority).
    pub fn wake(&mut self, v: VcpuRef) -> Result<Option<usize>, SchedError> {
        let i = self.vcpus.get_mut(&v).ok_or(SchedError::NoSuchVcpu(v))?;
        if i.state != RunState::Blocked {
            return Ok(None);
        }
        if i.pri == Priority::Under {
            i.pri = Priority::Boost;
        }
        // Still current on its CPU (blocked and woken before the tick):
        // it simply keeps running.
        if self.current[i.cpu] == Some(v) {
            i.state = RunState::Running;
            return Ok(None);
        }
        i.state = RunState::Queued;
        Ok(self.enqueue(v))
    }

    /// `SCHEDOP_yield`: let anything else eligible run first. Returns the
    /// CPU to reschedule if it is running.
    pub fn yield_(&mut self, v: VcpuRef) -> Result<Option<usize>, SchedError> {
        let i = self.vcpus.get_mut(&v).ok_or(SchedError::NoSuchVcpu(v))?;
        i.yielded = true;
        Ok((i.state == RunState::Running).then_some(i.cpu))
    }

    /// Picks a CPU in `v`'s affinity and queues `v` there. Returns the CPU
    /// to kick if `v` should preempt what runs there.
    fn enqueue(&mut self, v: VcpuRef) -> Option<usize> {
        let i = self.vcpus[&v];
        let in_mask = |c: usize| i.affinity & (1 << c) != 0;
        let idle = |s: &Self, c: usize| s.current[c].is_none() && s.runq[c].is_empty();
        let cpu = if in_mask(i.cpu) && idle(self, i.cpu) {
            i.cpu
        } else if let Some(c) = (0..self.ncpus).find(|&c| in_mask(c) && idle(self, c)) {
            c
        } else {
            // Least loaded CPU in the mask; ties to the previous CPU, then
            // the lowest number.
            let load = |c: usize| self.runq[c].len() + self.current[c].is_some() as usize;
            let mut best = None::<usize>;
            for c in (0..self.ncpus).filter(|&c| in_mask(c)) {
                let better = match best {
                    None => true,
                    Some(b) => load(c) < load(b) || (load(c) == load(b) && c == i.cpu),
                };
                if better {
                    best = Some(c);
                }
            }
            best.expect("affinity is never empty")
        };
        let info = self.vcpus.get_mut(&v).unwrap();
        info.cpu = cpu;
        info.state = RunState::Queued;
        self.runq[cpu].push_back(v);
        let kick = match self.current[cpu] {
            None => true,
            Some(cur) => self.vcpus.get(&cur).is_none_or(|c| c.pri < i.pri),
        };
        kick.then_some(cpu)
    }

    fn debit(&mut self, v: VcpuRef, ran_ns: u64) {
        let capped = self.doms.get(&v.domid).is_some_and(|d| d.cap > 0);
        if let Some(i) = self.vcpus.get_mut(&v) {
            let used = (ran_ns as u128 * CREDITS_PER_MS as u128 / 1_000_000) as i64;
            i.credit = (i.credit - used).max(-CREDITS_PER_ACCT);
            if i.credit < 0 {
                i.pri = Priority::Over;
                i.parked = capped;
            } else if i.pri == Priority::Boost && ran_ns > 0 {
                // A boosted vCPU has had its run: back to normal.
                i.pri = Priority::Under;
            }
        }
    }

    /// Hands out one period's credits.
    fn account(&mut self) {
        // Active: vCPUs that want to run (blocked ones earn nothing).
        let mut active: BTreeMap<u16, i64> = BTreeMap::new();
        for (v, i) in &self.vcpus {
            if i.state != RunState::Blocked {
                *active.entry(v.domid).or_insert(0) += 1;
            }
        }
        let weight_total: i64 = active
            .iter()
            .map(|(d, n)| self.doms[d].weight as i64 * n)
            .sum();
        if weight_total == 0 {
            return;
        }
        let total = CREDITS_PER_ACCT * self.ncpus as i64;
        let mut share: BTreeMap<u16, i64> = BTreeMap::new();
        for (&d, &n) in &active {
            let dom = self.doms[&d];
            // Round up so that the credits handed out cover the period.
            let mut fair = div_ceil(total * dom.weight as i64 * n, weight_total);
            fair = fair.min(CREDITS_PER_ACCT * n);
            if dom.cap > 0 {
                fair = fair.min(div_ceil(CREDITS_PER_ACCT * dom.cap as i64, 100));
            }
            share.insert(d, fair / n);
        }
        for (v, i) in self.vcpus.iter_mut() {
            if i.state == RunState::Blocked {
                continue;
            }
            let capped = self.doms[&v.domid].cap > 0;
            i.credit = (i.credit + share[&v.domid]).min(CREDITS_PER_ACCT);
            if i.credit < 0 {
                i.pri = Priority::Over;
            } else if i.pri == Priority::Over {
                i.pri = Priority::Under;
            }
            i.parked = capped && i.credit < 0;
        }
    }

    fn eligible(&self, v: VcpuRef, cpu: usize) -> Option<VcpuInfo> {
        let i = self.vcpus.get(&v)?;
        (i.affinity & (1 << cpu) != 0 && !i.parked && i.state == RunState::Queued).then_some(*i)
    }

    /// Best eligible vCPU of `q` for `cpu`: highest priority, then queue
    /// order; yielded vCPUs only if nothing else.
    fn best_in(&self, q: usize, cpu: usize) -> Option<(usize, VcpuRef, Priority)> {
        let mut best: Option<(usize, VcpuRef, Priority, bool)> = None;
        for (pos, &v) in self.runq[q].iter().enumerate() {
            let Some(i) = self.eligible(v, cpu) else {
                continue;
            };
            let better = match best {
                None => true,
                Some((_, _, p, y)) => (!i.yielded, i.pri) > (!y, p),
            };
            if better {
                best = Some((pos, v, i.pri, i.yielded));
            }
        }
        best.map(|(pos, v, p, _)| (pos, v, p))
    }

    /// Reschedules `cpu` at time `now` (ns, monotonic): debits what ran,
    /// runs the accounting when a period has passed, and decides what runs
    /// next.
    pub fn tick(&mut self, cpu: usize, now: u64) -> Result<Decision, SchedError> {
        if cpu >= self.ncpus {
            return Err(SchedError::NoSuchCpu(cpu));
        }
        // 1. Debit and put back what was running.
        if let Some(cur) = self.current[cpu].take() {
            let ran = now.saturating_sub(self.since[cpu]);
            self.debit(cur, ran);
            if let Some(i) = self.vcpus.get_mut(&cur) {
                if i.state == RunState::Running {
                    i.state = RunState::Queued;
                    if i.affinity & (1 << cpu) != 0 {
                        self.runq[cpu].push_back(cur);
                    } else {
                        self.enqueue(cur);
                    }
                }
            }
        }
        // 2. Accounting, once per period (periods missed while idle are
        //    skipped, not paid out).
        match self.next_acct {
            None => self.next_acct = Some(now + ACCT_PERIOD_NS),
            Some(t) if now >= t => {
                self.account();
                let periods = (now - t) / ACCT_PERIOD_NS + 1;
                self.next_acct = Some(t + periods * ACCT_PERIOD_NS);
            }
            _ => {}
        }
        // 3. Pick: local best, or steal something better from a peer.
        let local = self.best_in(cpu, cpu);
        let mut pick = local.map(|(pos, v, p)| (cpu, pos, v, p));
        if local.is_none_or(|(_, _, p)| p == Priority::Over) {
            for k in 1..self.ncpus {
                let peer = (cpu + k) % self.ncpus;
                if let Some((pos, v, p)) = self.best_in(peer, cpu) {
                    if pick.is_none_or(|(_, _, _, bp)| p > bp) {
                        pick = Some((peer, pos, v, p));
                    }
                }
            }
        }
        let run = pick.map(|(q, pos, v, _)| {
            self.runq[q].remove(pos);
            let i = self.vcpus.get_mut(&v).unwrap();
            i.state = RunState::Running;
            i.cpu = cpu;
            i.yielded = false;
            v
        });
        self.current[cpu] = run;
        self.since[cpu] = now;
        Ok(Decision {
            run,
            timeslice_ns: TICK_NS,
        })
    }
}

#[cfg(test)]
mod tests;
