//! The scheduling policy: pure decision logic, host-tested, driven by the
//! per-CPU mechanism in [`super::core`]. See `docs/scheduler.md`.
//!
//! The interface is Xen's credit scheduler's (per-domain **weight** 1-65535,
//! default 256, and **cap** in percent of one CPU; per-vCPU hard affinity),
//! and that is what keel reports to a toolstack. The algorithm is the one
//! of Xen's credit2, because credit1's global accounting does not honour
//! weights between vCPUs that share one CPU while another CPU idles (two
//! CPU-bound vCPUs of weights 256 and 512 pinned to one CPU of two got 1:1;
//! see `weights_hold_for_vcpus_pinned_to_one_cpu`):
//!
//! * Every vCPU has a **credit** (in ns). While it runs, its credit burns
//!   at `DEFAULT_WEIGHT / weight` ns per ns: a vCPU of weight 512 burns half
//!   as fast as one of 256 and so runs twice as long for the same credit.
//! * A CPU runs the eligible vCPU with the most credit among its run queue
//!   and the vCPU it was running. When that best credit is not positive,
//!   every vCPU assigned to the CPU gets [`CREDIT_INIT`] more (none keeps
//!   more than [`CREDIT_INIT`]: a long sleeper cannot hoard), so shares
//!   between competitors follow their weights exactly and a vCPU that
//!   mostly sleeps wakes with full credit, ahead of the CPU hogs.
//! * The time slice lasts until the running vCPU's credit would fall below
//!   the next candidate's, within [[`MIN_SLICE_NS`], [`MAX_SLICE_NS`]].
//! * A woken vCPU goes to its last CPU if that is idle, else to an idle CPU
//!   of its affinity, else back to its last CPU (or the least loaded one in
//!   its affinity); its CPU is kicked if it is idle or runs a vCPU with
//!   less credit. An idle CPU steals the best eligible vCPU from the other
//!   queues; a CPU whose queue is two longer than another's lets that one
//!   take a vCPU.
//! * A **cap** is a budget: a capped domain may run `cap`% of
//!   [`CAP_PERIOD_NS`] per period over all its vCPUs. Its running vCPU's
//!   slice ends when the budget does; with none left its vCPUs are parked
//!   (not run, even on an idle CPU) until the next period refills it.
//! * Hard affinity: a vCPU is only ever queued on, picked by, or stolen to a
//!   CPU in its mask.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

/// The most a vCPU runs before the CPU decides again.
pub const MAX_SLICE_NS: u64 = 10_000_000;
/// The least (Xen's rate limit): a vCPU that has just started is not
/// preempted before this, unless it blocks.
pub const MIN_SLICE_NS: u64 = 1_000_000;
/// Credit handed out at a reset, and the most a vCPU holds.
pub const CREDIT_INIT: i64 = 10_000_000;
/// The cap budget's refill period.
pub const CAP_PERIOD_NS: u64 = 10_000_000;
pub const DEFAULT_WEIGHT: u16 = 256;
/// Xen's weight range.
pub const MAX_WEIGHT: u16 = 65535;
use crate::MAX_CPUS;
/// "Never": the timeslice of an idle CPU with nothing to wait for.
pub const NEVER: u64 = u64::MAX;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Waiting in `cpu`'s run queue.
    Queued,
    /// Running on `cpu`.
    Running,
    /// Blocked (halted, paused, not started): never picked until woken.
    Blocked,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The vCPU to run, or `None`: idle (halt until an interrupt).
    pub run: Option<VcpuRef>,
    /// Decide again after this long ([`NEVER`]: only when kicked).
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

#[derive(Clone, Copy, Debug)]
struct VcpuInfo {
    state: RunState,
    /// The run queue it is in, the CPU it runs on, or the last one.
    cpu: usize,
    credit: i64,
    affinity: u64,
    yielded: bool,
    /// Time it has run, in total.
    runtime_ns: u64,
}

#[derive(Clone, Copy, Debug)]
struct DomInfo {
    weight: u16,
    cap: u16,
    nr_vcpus: usize,
    /// Cap budget left in this period (ns; may go negative by an overrun).
    budget: i64,
    /// When the budget is refilled next.
    refill_at: u64,
}

impl DomInfo {
    fn per_period(&self) -> i64 {
        (CAP_PERIOD_NS as u128 * self.cap as u128 / 100) as i64
    }
    fn parked(&self) -> bool {
        self.cap != 0 && self.budget <= 0
    }
}

#[derive(Clone, Debug)]
pub struct Scheduler {
    ncpus: usize,
    all_cpus: u64,
    runq: Vec<VecDeque<VcpuRef>>,
    current: Vec<Option<VcpuRef>>,
    /// When `current[cpu]` was last charged.
    since: Vec<u64>,
    /// When `current[cpu]` started running (for the rate limit).
    started: Vec<u64>,
    vcpus: BTreeMap<VcpuRef, VcpuInfo>,
    doms: BTreeMap<u16, DomInfo>,
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
            started: alloc::vec![0; ncpus],
            vcpus: BTreeMap::new(),
            doms: BTreeMap::new(),
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
    pub fn credit(&self, v: VcpuRef) -> Option<i64> {
        self.vcpus.get(&v).map(|i| i.credit)
    }
    pub fn affinity(&self, v: VcpuRef) -> Option<u64> {
        self.vcpus.get(&v).map(|i| i.affinity)
    }
    /// The CPU `v` is queued on, runs on, or last ran on.
    pub fn cpu_of(&self, v: VcpuRef) -> Option<usize> {
        self.vcpus.get(&v).map(|i| i.cpu)
    }
    /// Time `v` has run (charged at each decision of its CPU).
    pub fn runtime_ns(&self, v: VcpuRef) -> Option<u64> {
        self.vcpus.get(&v).map(|i| i.runtime_ns)
    }
    pub fn weight(&self, domid: u16) -> Option<u16> {
        self.doms.get(&domid).map(|d| d.weight)
    }
    pub fn cap(&self, domid: u16) -> Option<u16> {
        self.doms.get(&domid).map(|d| d.cap)
    }
    /// Queued vCPUs of `cpu`, in order.
    pub fn runqueue(&self, cpu: usize) -> impl Iterator<Item = VcpuRef> + '_ {
        self.runq[cpu].iter().copied()
    }

    /// Adds a vCPU with hard affinity `affinity` (`u64::MAX`: any CPU),
    /// blocked (it is woken when it may run) or runnable; a runnable one
    /// first goes to `home` if that CPU is in its affinity and idle.
    /// Returns a CPU to kick.
    pub fn add_vcpu(
        &mut self,
        v: VcpuRef,
        affinity: u64,
        home: usize,
        runnable: bool,
    ) -> Result<Option<usize>, SchedError> {
        if self.vcpus.contains_key(&v) {
            return Err(SchedError::AlreadyPresent(v));
        }
        let affinity = affinity & self.all_cpus;
        if affinity == 0 {
            return Err(SchedError::EmptyAffinity);
        }
        let d = self.doms.entry(v.domid).or_insert(DomInfo {
            weight: DEFAULT_WEIGHT,
            cap: 0,
            nr_vcpus: 0,
            budget: 0,
            refill_at: 0,
        });
        d.nr_vcpus += 1;
        let cpu = if affinity & (1 << home.min(63)) != 0 && home < self.ncpus {
            home
        } else {
            affinity.trailing_zeros() as usize
        };
        self.vcpus.insert(
            v,
            VcpuInfo {
                state: RunState::Blocked,
                cpu,
                credit: CREDIT_INIT,
                affinity,
                yielded: false,
                runtime_ns: 0,
            },
        );
        if runnable {
            return self.wake(v);
        }
        Ok(None)
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
        let d = self
            .doms
            .get_mut(&domid)
            .ok_or(SchedError::NoSuchDomain(domid))?;
        d.cap = cap;
        d.budget = d.per_period();
        d.refill_at = 0;
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
            // Blocked but still `cpu`'s current vCPU (that CPU has not
            // decided since): it stays there, so that a wake-up before then
            // finds it current and that CPU's next decision moves it (a
            // vCPU moved now would be queued elsewhere while still current
            // here, and run on two CPUs). Have `cpu` decide soon.
            RunState::Blocked if self.current[cpu] == Some(v) => Ok(Some(cpu)),
            // Blocked: it stays assigned to `cpu`, whose run loop keeps its
            // timers (a sleeper moved to another CPU would be dropped by
            // this one and unknown to that one: its timer would never fire).
            // Its wake-up queues it inside the new mask.
            RunState::Blocked => Ok(None),
        }
    }

    /// The vCPU cannot run (halted, paused, ...). Returns the CPU to
    /// reschedule if it was running there.
    pub fn block(&mut self, v: VcpuRef) -> Result<Option<usize>, SchedError> {
        let i = self.vcpus.get_mut(&v).ok_or(SchedError::NoSuchVcpu(v))?;
        let (state, cpu) = (i.state, i.cpu);
        i.state = RunState::Blocked;
        match state {
            RunState::Queued => {
                self.runq[cpu].retain(|&x| x != v);
                Ok(None)
            }
            // Stays `current` until that CPU's next decision charges it.
            RunState::Running => Ok(Some(cpu)),
            RunState::Blocked => Ok(None),
        }
    }

    /// The vCPU may run again. Returns a CPU to kick (idle, or running a
    /// vCPU with less credit).
    pub fn wake(&mut self, v: VcpuRef) -> Result<Option<usize>, SchedError> {
        let i = self.vcpus.get_mut(&v).ok_or(SchedError::NoSuchVcpu(v))?;
        if i.state != RunState::Blocked {
            return Ok(None);
        }
        // Still current on its CPU (blocked and woken before that CPU
        // decided again): it simply keeps running.
        if self.current[i.cpu] == Some(v) {
            i.state = RunState::Running;
            return Ok(None);
        }
        Ok(self.enqueue(v))
    }

    /// `SCHEDOP_yield`: let anything else eligible run first. Returns the
    /// CPU to reschedule if it is running.
    pub fn yield_(&mut self, v: VcpuRef) -> Result<Option<usize>, SchedError> {
        let i = self.vcpus.get_mut(&v).ok_or(SchedError::NoSuchVcpu(v))?;
        i.yielded = true;
        Ok((i.state == RunState::Running).then_some(i.cpu))
    }

    fn idle(&self, c: usize) -> bool {
        self.current[c].is_none() && self.runq[c].is_empty()
    }

    fn load(&self, c: usize) -> usize {
        self.runq[c].len() + self.current[c].is_some() as usize
    }

    /// Picks a CPU in `v`'s affinity and queues `v` there. Returns the CPU
    /// to kick if `v` should run there now.
    fn enqueue(&mut self, v: VcpuRef) -> Option<usize> {
        let i = self.vcpus[&v];
        let in_mask = |c: usize| i.affinity & (1 << c) != 0;
        let cpu = if in_mask(i.cpu) && self.idle(i.cpu) {
            i.cpu
        } else if let Some(c) = (0..self.ncpus).find(|&c| in_mask(c) && self.idle(c)) {
            c
        } else if in_mask(i.cpu) && self.load(i.cpu) <= 1 {
            i.cpu
        } else {
            // Least loaded CPU in the mask; ties to the previous CPU, then
            // the lowest number.
            let mut best = None::<usize>;
            for c in (0..self.ncpus).filter(|&c| in_mask(c)) {
                let better = match best {
                    None => true,
                    Some(b) => {
                        self.load(c) < self.load(b) || (self.load(c) == self.load(b) && c == i.cpu)
                    }
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
        info.yielded = false;
        let credit = info.credit;
        self.runq[cpu].push_back(v);
        let kick = match self.current[cpu] {
            None => true,
            Some(cur) => self.vcpus.get(&cur).is_none_or(|c| c.credit < credit),
        };
        kick.then_some(cpu)
    }

    /// Charges `cpu`'s current vCPU for the time since it was last charged.
    fn charge(&mut self, cpu: usize, now: u64) {
        let Some(cur) = self.current[cpu] else {
            return;
        };
        let ran = now.saturating_sub(self.since[cpu]);
        self.since[cpu] = now;
        let Some(d) = self.doms.get_mut(&cur.domid) else {
            return;
        };
        if d.cap != 0 {
            d.budget -= ran as i64;
        }
        let weight = d.weight.max(1) as u128;
        if let Some(i) = self.vcpus.get_mut(&cur) {
            let burn = (ran as u128 * DEFAULT_WEIGHT as u128 / weight).min(i64::MAX as u128);
            i.credit = i.credit.saturating_sub(burn as i64);
            i.runtime_ns += ran;
        }
    }

    /// Refills the cap budgets whose period is over. Returns the next
    /// refill time of a capped domain (for idle CPUs with parked vCPUs).
    fn refill(&mut self, now: u64) -> u64 {
        let mut next = NEVER;
        for d in self.doms.values_mut().filter(|d| d.cap != 0) {
            if d.refill_at == 0 {
                d.refill_at = now + CAP_PERIOD_NS;
            }
            if now >= d.refill_at {
                let periods = (now - d.refill_at) / CAP_PERIOD_NS + 1;
                let per = d.per_period();
                // An overrun is paid back; unused budget is not kept.
                d.budget = (d.budget + per * periods as i64).min(per);
                d.refill_at += periods * CAP_PERIOD_NS;
            }
            next = next.min(d.refill_at);
        }
        next
    }

    fn eligible(&self, v: VcpuRef, cpu: usize) -> bool {
        self.vcpus.get(&v).is_some_and(|i| {
            i.affinity & (1 << cpu) != 0
                && i.state == RunState::Queued
                && !self.doms.get(&v.domid).is_some_and(|d| d.parked())
        })
    }

    /// The best eligible vCPU of run queue `q` for `cpu`: most credit,
    /// then queue order; a vCPU that yielded only if nothing else is.
    fn best_in(&self, q: usize, cpu: usize) -> Option<(usize, VcpuRef, i64)> {
        let mut best: Option<(usize, VcpuRef, i64, bool)> = None;
        for (pos, &v) in self.runq[q].iter().enumerate() {
            if !self.eligible(v, cpu) {
                continue;
            }
            let i = self.vcpus[&v];
            let better = match best {
                None => true,
                Some((_, _, c, y)) => (!i.yielded, i.credit) > (!y, c),
            };
            if better {
                best = Some((pos, v, i.credit, i.yielded));
            }
        }
        best.map(|(pos, v, c, _)| (pos, v, c))
    }

    /// Every vCPU assigned to `cpu` gets `CREDIT_INIT` more, so that the
    /// best of them (`head` credit) is positive again; none keeps more than
    /// `CREDIT_INIT`.
    fn reset_credit(&mut self, cpu: usize, head: i64) {
        let m = if head <= 0 {
            1 + (-head) / CREDIT_INIT
        } else {
            1
        };
        for i in self.vcpus.values_mut().filter(|i| i.cpu == cpu) {
            i.credit = i.credit.saturating_add(m * CREDIT_INIT).min(CREDIT_INIT);
        }
    }

    /// Decides what `cpu` runs from `now` (ns, monotonic): charges what
    /// ran, and picks the eligible vCPU with the most credit.
    pub fn tick(&mut self, cpu: usize, now: u64) -> Result<Decision, SchedError> {
        if cpu >= self.ncpus {
            return Err(SchedError::NoSuchCpu(cpu));
        }
        self.charge(cpu, now);
        let next_refill = self.refill(now);
        // The current vCPU, if it can go on.
        let cur = self.current[cpu].filter(|v| {
            self.vcpus.get(v).is_some_and(|i| {
                i.state == RunState::Running
                    && i.affinity & (1 << cpu) != 0
                    && !self.doms.get(&v.domid).is_some_and(|d| d.parked())
            })
        });
        // Rate limit: a vCPU that just started keeps the CPU unless it
        // yielded.
        if let Some(c) = cur {
            let ran = now.saturating_sub(self.started[cpu]);
            if ran < MIN_SLICE_NS && !self.vcpus[&c].yielded {
                return Ok(Decision {
                    run: Some(c),
                    timeslice_ns: self.slice_for(c, MIN_SLICE_NS - ran),
                });
            }
        }
        // Balance: a queue two longer than ours gives us one.
        self.pull_if_unbalanced(cpu);
        let mut local = self.best_in(cpu, cpu);
        if local.is_none() && cur.is_none() {
            // Idle: steal the best eligible vCPU of another queue.
            if let Some((q, pos, v)) = self.steal_for(cpu) {
                self.runq[q].remove(pos);
                let i = self.vcpus.get_mut(&v).unwrap();
                i.cpu = cpu;
                self.runq[cpu].push_back(v);
                local = self.best_in(cpu, cpu);
            }
        }
        // Choose between the current vCPU and the best queued one.
        let cur_credit = cur.map(|c| (self.vcpus[&c].credit, self.vcpus[&c].yielded));
        let pick_queued = match (cur_credit, local) {
            (None, None) => None,
            (Some(_), None) => Some(false),
            (None, Some(_)) => Some(true),
            (Some((cc, yielded)), Some((_, _, qc))) => Some(yielded || qc > cc),
        };
        let Some(pick_queued) = pick_queued else {
            // Nothing to run. The last vCPU (if any) stays off the CPU.
            self.put_back(cpu);
            return Ok(Decision {
                run: None,
                timeslice_ns: if self.has_parked_on(cpu) {
                    next_refill.saturating_sub(now).max(1)
                } else {
                    NEVER
                },
            });
        };
        let head = if pick_queued {
            local.unwrap().2
        } else {
            cur_credit.unwrap().0
        };
        if head <= 0 {
            self.reset_credit(cpu, head);
        }
        let run = if pick_queued {
            let (pos, v, _) = local.unwrap();
            self.put_back(cpu);
            self.runq[cpu].remove(pos);
            self.current[cpu] = Some(v);
            self.started[cpu] = now;
            v
        } else {
            cur.unwrap()
        };
        self.since[cpu] = now;
        let i = self.vcpus.get_mut(&run).unwrap();
        i.state = RunState::Running;
        i.cpu = cpu;
        i.yielded = false;
        // Run until its credit falls to the next candidate's.
        let my = i.credit;
        let next = self.runq[cpu]
            .iter()
            .filter(|&&v| self.eligible(v, cpu))
            .map(|v| self.vcpus[v].credit)
            .max();
        let slice = match next {
            None => MAX_SLICE_NS,
            Some(n) => {
                let w = self
                    .doms
                    .get(&run.domid)
                    .map_or(DEFAULT_WEIGHT, |d| d.weight) as i128;
                let lead = (my as i128 - n as i128).max(0);
                (lead * w / DEFAULT_WEIGHT as i128)
                    .clamp(MIN_SLICE_NS as i128, MAX_SLICE_NS as i128) as u64
            }
        };
        Ok(Decision {
            run: Some(run),
            timeslice_ns: self.slice_for(run, slice),
        })
    }

    /// `slice`, shortened to what a capped domain's budget allows.
    fn slice_for(&self, v: VcpuRef, slice: u64) -> u64 {
        match self.doms.get(&v.domid) {
            Some(d) if d.cap != 0 => slice.min(d.budget.max(0) as u64).max(100_000),
            _ => slice,
        }
    }

    /// Takes `cpu`'s current vCPU off it: back to the tail of its queue if
    /// it can still run (elsewhere if its affinity changed).
    fn put_back(&mut self, cpu: usize) {
        let Some(cur) = self.current[cpu].take() else {
            return;
        };
        let Some(i) = self.vcpus.get_mut(&cur) else {
            return;
        };
        if i.state != RunState::Running {
            return;
        }
        i.state = RunState::Queued;
        // A yield gives way once: this decision took the CPU from it, so
        // from now on it competes by credit again (kept, the flag would
        // lose it every decision to CPU-bound vCPUs, for good).
        i.yielded = false;
        if i.affinity & (1 << cpu) != 0 {
            self.runq[cpu].push_back(cur);
        } else {
            self.enqueue(cur);
        }
    }

    fn has_parked_on(&self, cpu: usize) -> bool {
        self.runq[cpu]
            .iter()
            .any(|v| self.doms.get(&v.domid).is_some_and(|d| d.parked()))
    }

    /// The best vCPU another queue can give an idle `cpu`: (queue,
    /// position, vCPU).
    fn steal_for(&self, cpu: usize) -> Option<(usize, usize, VcpuRef)> {
        let mut best: Option<(usize, usize, VcpuRef, i64)> = None;
        for k in 1..self.ncpus {
            let q = (cpu + k) % self.ncpus;
            if let Some((pos, v, c)) = self.best_in(q, cpu) {
                if best.is_none_or(|(_, _, _, bc)| c > bc) {
                    best = Some((q, pos, v, c));
                }
            }
        }
        best.map(|(q, pos, v, _)| (q, pos, v))
    }

    /// If some queue is at least two longer than `cpu`'s, moves its best
    /// vCPU that may run on `cpu` here.
    fn pull_if_unbalanced(&mut self, cpu: usize) {
        let mine = self.load(cpu);
        let busiest = (0..self.ncpus)
            .filter(|&c| c != cpu)
            .max_by_key(|&c| self.load(c));
        let Some(src) = busiest else {
            return;
        };
        if self.load(src) < mine + 2 {
            return;
        }
        if let Some((pos, v, _)) = self.best_in(src, cpu) {
            self.runq[src].remove(pos);
            self.vcpus.get_mut(&v).unwrap().cpu = cpu;
            self.runq[cpu].push_back(v);
        }
    }
}
