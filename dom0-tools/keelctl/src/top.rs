//! `keelctl top`: a live view of the domains, as `xentop`: per domain its
//! state, CPU time and CPU % (of one CPU, between two samples), memory,
//! vCPUs, and its VM exits per second by reason, from keel's VM-exit
//! counters (`sysctl perfc_op`, the same ones `xenperf` prints).
//!
//! keel names its exit counters `vmexit <reason> [domid]`: one counter
//! per vendor-neutral exit reason, each an array whose value `i` is domain
//! `i`'s exits for that reason (the last value holds every domain with an
//! id from there up together, so those domains show no exit figures). The
//! values are u32 and wrap; a count smaller than the last one (the
//! counters were reset, or the domain id was reused) counts from zero.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::backend::{BackendError, DomainInfo, Hypervisor, PerfCounter};
use crate::format::json_str;

/// The name of keel's exit counter for a reason: `vmexit <reason> [domid]`.
const EXIT_PREFIX: &str = "vmexit ";
const EXIT_SUFFIX: &str = " [domid]";

/// How `top` runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Plain lines, a header and a row per domain each iteration (`xentop -b`).
    pub batch: bool,
    /// One JSON object per iteration, one a line.
    pub json: bool,
    /// Seconds between samples.
    pub delay: f64,
    /// Stop after this many iterations (None: until interrupted).
    pub iterations: Option<u32>,
}

/// Time for `top`: a monotonic clock and a way to wait (a fake in tests).
pub trait Clock {
    /// Seconds since some fixed moment.
    fn now(&mut self) -> f64;
    fn sleep(&mut self, secs: f64);
}

/// The machine's monotonic clock.
pub struct RealClock(Instant);

impl RealClock {
    pub fn new() -> Self {
        RealClock(Instant::now())
    }
}

impl Default for RealClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for RealClock {
    fn now(&mut self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
    fn sleep(&mut self, secs: f64) {
        std::thread::sleep(Duration::from_secs_f64(secs.max(0.0)));
    }
}

/// What one look at the hypervisor saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// When ([`Clock::now`]).
    pub at: f64,
    pub domains: Vec<DomainInfo>,
    /// The performance counters; `None`: the hypervisor has none.
    pub counters: Option<Vec<PerfCounter>>,
}

/// Domain `domid`'s exit counts by reason, in counter order, from keel's
/// `vmexit <reason> [domid]` counters; `None` if there are none, or the
/// domain has no value of its own (its id is at or past the last one).
pub fn domain_exits(counters: &[PerfCounter], domid: u32) -> Option<Vec<(String, u32)>> {
    let mut out = Vec::new();
    for c in counters {
        let Some(reason) = c
            .name
            .strip_prefix(EXIT_PREFIX)
            .and_then(|r| r.strip_suffix(EXIT_SUFFIX))
        else {
            continue;
        };
        if domid as usize + 1 >= c.values.len() {
            return None;
        }
        out.push((reason.to_string(), c.values[domid as usize]));
    }
    (!out.is_empty()).then_some(out)
}

/// One domain's line.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    pub domid: u32,
    /// `r b p s c d` flags, as `list`.
    pub state: String,
    pub cpu_s: f64,
    /// CPU time over wall time between the samples, percent of one CPU.
    pub cpu_pct: Option<f64>,
    pub mem_kib: u64,
    /// Of the host's memory.
    pub mem_pct: f64,
    pub vcpus: u32,
    /// Exits per second by reason (every reason, counter order); `None`
    /// without an earlier sample of the domain or without counters.
    pub exit_rates: Option<Vec<(String, f64)>>,
}

impl Row {
    /// Exits per second, all reasons.
    pub fn exits_per_s(&self) -> Option<f64> {
        self.exit_rates
            .as_ref()
            .map(|r| r.iter().map(|(_, x)| x).sum())
    }
}

/// How far a counter moved from `prev` to `cur`: a smaller value means it
/// started again from zero (reset, or a new domain with the same id).
fn moved(prev: u32, cur: u32) -> u32 {
    if cur >= prev {
        cur - prev
    } else {
        cur
    }
}

/// The rows of `cur`, with the rates since `prev` (the sample before it).
/// `host_kib` is the host's memory.
pub fn rows(prev: Option<&Sample>, cur: &Sample, host_kib: u64) -> Vec<Row> {
    let dt = prev.map_or(0.0, |p| cur.at - p.at);
    cur.domains
        .iter()
        .map(|d| {
            // The same domain earlier, unless its CPU time went back (a
            // new domain with the old one's id).
            let before = prev
                .filter(|_| dt > 0.0)
                .and_then(|p| {
                    p.domains
                        .iter()
                        .find(|x| x.domid == d.domid)
                        .map(|x| (p, x))
                })
                .filter(|(_, x)| x.cpu_time_ns <= d.cpu_time_ns);
            let cpu_pct =
                before.map(|(_, x)| (d.cpu_time_ns - x.cpu_time_ns) as f64 / 1e9 / dt * 100.0);
            let exit_rates = before.and_then(|(p, _)| {
                let now = domain_exits(cur.counters.as_deref()?, d.domid)?;
                let then = domain_exits(p.counters.as_deref()?, d.domid)?;
                Some(
                    now.into_iter()
                        .map(|(reason, n)| {
                            let was = then.iter().find(|t| t.0 == reason).map_or(0, |t| t.1);
                            (reason, moved(was, n) as f64 / dt)
                        })
                        .collect(),
                )
            });
            Row {
                name: d.name.clone(),
                domid: d.domid,
                state: d.state.flags(),
                cpu_s: d.cpu_time_ns as f64 / 1e9,
                cpu_pct,
                mem_kib: d.mem_kib,
                mem_pct: if host_kib == 0 {
                    0.0
                } else {
                    d.mem_kib as f64 * 100.0 / host_kib as f64
                },
                vcpus: d.vcpus,
                exit_rates,
            }
        })
        .collect()
}

/// A rate as the table shows it: whole numbers from 100 up, else one or
/// two decimals.
pub fn rate_text(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 1.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// The non-zero exit rates, highest first: `hypercall=812 hlt=301.5`
/// (`-` if none, or none known).
pub fn reasons_text(r: &Row) -> String {
    let Some(rates) = &r.exit_rates else {
        return "-".into();
    };
    let mut nz: Vec<&(String, f64)> = rates.iter().filter(|(_, x)| *x > 0.0).collect();
    nz.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if nz.is_empty() {
        return "-".into();
    }
    nz.iter()
        .map(|(n, x)| format!("{n}={}", rate_text(*x)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The header and a line per domain (`xentop -b`'s first columns, then
/// exits per second, all and by reason).
pub fn table(rows: &[Row]) -> String {
    let mut o = format!(
        "{:>10} {:>5} {:>6} {:>9} {:>6} {:>10} {:>6} {:>5} {:>9}  {}\n",
        "NAME",
        "ID",
        "STATE",
        "CPU(sec)",
        "CPU(%)",
        "MEM(k)",
        "MEM(%)",
        "VCPUS",
        "EXITS/s",
        "EXITS/s BY REASON"
    );
    let opt = |x: Option<f64>, f: &dyn Fn(f64) -> String| x.map_or("-".into(), f);
    for r in rows {
        o += &format!(
            "{:>10} {:>5} {:>6} {:>9.0} {:>6} {:>10} {:>6.1} {:>5} {:>9}  {}\n",
            r.name,
            r.domid,
            r.state,
            r.cpu_s,
            opt(r.cpu_pct, &|x| format!("{x:.1}")),
            r.mem_kib,
            r.mem_pct,
            r.vcpus,
            opt(r.exits_per_s(), &|x| format!("{x:.0}")),
            reasons_text(r)
        );
    }
    o
}

/// One iteration as a JSON object (one line).
pub fn json(at: f64, rows: &[Row]) -> String {
    let num = |x: Option<f64>, digits: usize| x.map_or("null".into(), |x| format!("{x:.digits$}"));
    let doms: Vec<String> = rows
        .iter()
        .map(|r| {
            let by = r.exit_rates.as_ref().map_or("null".into(), |rates| {
                let kv: Vec<String> = rates
                    .iter()
                    .map(|(n, x)| format!("{}:{x:.2}", json_str(n)))
                    .collect();
                format!("{{{}}}", kv.join(","))
            });
            format!(
                "{{\"name\":{},\"domid\":{},\"state\":{},\"cpu_time_s\":{:.3},\"cpu_pct\":{},\"mem_kib\":{},\"mem_pct\":{:.1},\"vcpus\":{},\"exits_per_s\":{},\"exits_per_s_by_reason\":{by}}}",
                json_str(&r.name),
                r.domid,
                json_str(&r.state),
                r.cpu_s,
                num(r.cpu_pct, 1),
                r.mem_kib,
                r.mem_pct,
                r.vcpus,
                num(r.exits_per_s(), 2),
            )
        })
        .collect();
    format!("{{\"time_s\":{at:.3},\"domains\":[{}]}}\n", doms.join(","))
}

fn sample(
    hv: &dyn Hypervisor,
    clock: &mut dyn Clock,
    warned: &mut bool,
    err: &mut dyn Write,
) -> crate::backend::Result<Sample> {
    let domains = hv.list_domains()?;
    let counters = match hv.perf_counters() {
        Ok(c) => Some(c),
        Err(BackendError::NotImplemented(why)) => {
            if !*warned {
                let _ = writeln!(
                    err,
                    "keelctl: top: no VM-exit figures: {why} (keel counts them unless booted with perfc=0)"
                );
                *warned = true;
            }
            None
        }
        Err(e) => return Err(e),
    };
    Ok(Sample {
        at: clock.now(),
        domains,
        counters,
    })
}

/// Runs `top` until its iterations are done (or forever); returns the
/// exit status.
pub fn run(hv: &dyn Hypervisor, o: &Options, io: &mut crate::Io, clock: &mut dyn Clock) -> i32 {
    let host_kib = match hv.host_info() {
        Ok(h) => h.total_mem_mib * 1024,
        Err(e) => return crate::backend_error(io, "top", e),
    };
    let mut prev: Option<Sample> = None;
    let mut warned = false;
    let mut i = 0u32;
    loop {
        let cur = match sample(hv, clock, &mut warned, io.err) {
            Ok(s) => s,
            Err(e) => return crate::backend_error(io, "top", e),
        };
        let r = rows(prev.as_ref(), &cur, host_kib);
        let text = if o.json {
            json(cur.at, &r)
        } else if o.batch {
            table(&r)
        } else {
            // Interactive: redraw the screen.
            format!(
                "\x1b[H\x1b[2Jkeelctl top - {} domains - every {}s - Ctrl-C quits\n\n{}",
                r.len(),
                o.delay,
                table(&r)
            )
        };
        if io
            .out
            .write_all(text.as_bytes())
            .and_then(|()| io.out.flush())
            .is_err()
        {
            // The reader went away (a closed pipe): nothing more to show.
            return crate::EXIT_OK;
        }
        i += 1;
        if o.iterations.is_some_and(|n| i >= n) {
            return crate::EXIT_OK;
        }
        prev = Some(cur);
        clock.sleep(o.delay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::DomainState;
    use crate::xen::fake::{backend, FakeXen};

    /// A clock that moves only when `top` waits, and changes the fake
    /// hypervisor's figures then (`on_sleep`).
    struct FakeClock<'a> {
        t: f64,
        slept: Vec<f64>,
        on_sleep: Box<dyn FnMut() + 'a>,
    }

    impl Clock for FakeClock<'_> {
        fn now(&mut self) -> f64 {
            self.t
        }
        fn sleep(&mut self, secs: f64) {
            self.t += secs;
            self.slept.push(secs);
            (self.on_sleep)();
        }
    }

    /// keel's exit counters with 6 values each (domains 0-4, then 5 up),
    /// and a counter of another kind.
    fn counters(cpuid: [u32; 2], hypercall: [u32; 2], hlt: [u32; 2]) -> Vec<(String, Vec<u32>)> {
        let c = |name: &str, v: [u32; 2]| {
            (
                format!("vmexit {name} [domid]"),
                vec![v[0], v[1], 0, 0, 0, 9],
            )
        };
        vec![
            c("cpuid", cpuid),
            ("exceptions".into(), vec![3, 4]),
            c("hypercall", hypercall),
            c("hlt", hlt),
        ]
    }

    fn top(
        b: &crate::xen::XenBackend<FakeXen>,
        args: &[&str],
        clock: &mut FakeClock,
    ) -> (i32, String, String) {
        use clap::Parser;
        let cli =
            crate::cli::Cli::try_parse_from(["keelctl", "top"].iter().chain(args.iter()).copied())
                .unwrap();
        let crate::cli::Command::Top {
            batch,
            delay,
            iterations,
            json,
        } = cli.command
        else {
            unreachable!()
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let rc = run(
            b,
            &Options {
                batch,
                json,
                delay,
                iterations,
            },
            &mut crate::Io {
                out: &mut out,
                err: &mut err,
            },
            clock,
        );
        (
            rc,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    /// Two samples 2 s apart through the Xen backend: dom0 used one second
    /// of CPU and made 5000 hypercall and 200 CPUID exits; domain 1's hlt
    /// count went back (reset): counted from zero; domain 5 shares the last
    /// value with every later id: no figures of its own.
    #[test]
    fn batch_rates_from_two_samples() {
        let b = backend(FakeXen::new());
        let x = b.transport();
        *x.perfc.borrow_mut() = Some(counters([100, 10], [1000, 0], [50, 5]));
        let mut clock = FakeClock {
            t: 10.0,
            slept: Vec::new(),
            on_sleep: Box::new(|| {
                *x.perfc.borrow_mut() = Some(counters([300, 10], [6000, 0], [50, 2]));
                x.cpu_ns.borrow_mut().push((0, 2_500_000_000));
            }),
        };
        let (rc, out, err) = top(&b, &["-b", "-i", "2", "-d", "2"], &mut clock);
        assert_eq!((rc, err.as_str()), (0, ""));
        assert_eq!(clock.slept, [2.0], "one wait between the two iterations");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 8, "{out}");
        let header = "      NAME    ID  STATE  CPU(sec) CPU(%)     MEM(k) MEM(%) VCPUS   EXITS/s  EXITS/s BY REASON";
        assert_eq!((lines[0], lines[4]), (header, header));
        // The first iteration has no rates yet.
        assert_eq!(
            lines[1],
            "  Domain-0     0 r-----         2      -     262144   25.0     2         -  -"
        );
        assert_eq!(
            lines[5],
            "  Domain-0     0 r-----         2   50.0     262144   25.0     2      2600  hypercall=2500 cpuid=100"
        );
        assert_eq!(
            lines[6],
            "    (null)     1 -b----         2    0.0       4096    0.4     1         1  hlt=1.0"
        );
        assert_eq!(
            lines[7],
            "    (null)     5 ----c-         2    0.0       1024    0.1     1         -  -"
        );
    }

    #[test]
    fn json_lines_and_no_counters() {
        let b = backend(FakeXen::new());
        let x = b.transport();
        *x.perfc.borrow_mut() = Some(counters([0, 0], [0, 0], [0, 0]));
        let mut clock = FakeClock {
            t: 0.0,
            slept: Vec::new(),
            on_sleep: Box::new(|| {
                *x.perfc.borrow_mut() = Some(counters([0, 0], [30, 0], [0, 0]));
            }),
        };
        let (rc, out, _) = top(&b, &["--json", "-i", "2", "-d", "0.5"], &mut clock);
        assert_eq!(rc, 0);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("{\"time_s\":0.000,\"domains\":[{\"name\":\"Domain-0\",\"domid\":0,\"state\":\"r-----\",\"cpu_time_s\":1.500,\"cpu_pct\":null,\"mem_kib\":262144,\"mem_pct\":25.0,\"vcpus\":2,\"exits_per_s\":null,\"exits_per_s_by_reason\":null}"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].contains("\"cpu_pct\":0.0,\"mem_kib\":262144,\"mem_pct\":25.0,\"vcpus\":2,\"exits_per_s\":60.00,\"exits_per_s_by_reason\":{\"cpuid\":0.00,\"hypercall\":60.00,\"hlt\":0.00}}"),
            "{}",
            lines[1]
        );

        // Without counters (perfc=0, or a Xen without them): said once,
        // the rest as usual.
        *x.perfc.borrow_mut() = None;
        let mut clock = FakeClock {
            t: 0.0,
            slept: Vec::new(),
            on_sleep: Box::new(|| {}),
        };
        let (rc, out, err) = top(&b, &["-b", "-i", "3", "-d", "1"], &mut clock);
        assert_eq!(rc, 0);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("no VM-exit figures") && err.contains("perfc=0"),
            "{err}"
        );
        assert!(out.lines().nth(5).unwrap().ends_with("      -  -"), "{out}");
        assert!(
            out.lines()
                .nth(5)
                .unwrap()
                .contains("r-----         2    0.0"),
            "{out}"
        );
        // Interactive: the screen redrawn each time.
        let (_, out, _) = top(&b, &["-i", "2", "-d", "1"], &mut clock);
        assert_eq!(
            out.matches("\x1b[H\x1b[2Jkeelctl top - 3 domains").count(),
            2
        );
    }

    #[test]
    fn refusals_and_bad_options() {
        use clap::Parser;
        let mut x = FakeXen::new();
        x.privileged = false;
        let mut clock = FakeClock {
            t: 0.0,
            slept: Vec::new(),
            on_sleep: Box::new(|| {}),
        };
        let (rc, out, err) = top(&backend(x), &["-b"], &mut clock);
        assert_eq!((rc, out.as_str()), (crate::EXIT_NOT_SUPPORTED, ""));
        assert!(err.contains("not privileged"), "{err}");
        for bad in [&["-d", "0"][..], &["-d", "x"], &["-i", "0"], &["-d", "-1"]] {
            let r = crate::cli::Cli::try_parse_from(["keelctl", "top"].iter().chain(bad).copied());
            assert!(r.is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rates_by_hand() {
        let dom = |domid, secs: f64| DomainInfo {
            name: format!("d{domid}"),
            domid,
            mem_kib: 1024,
            vcpus: 1,
            state: DomainState::default(),
            cpu_time_ns: (secs * 1e9) as u64,
        };
        let pc = |v: Vec<u32>| {
            Some(vec![PerfCounter {
                name: "vmexit io [domid]".into(),
                values: v,
            }])
        };
        let a = Sample {
            at: 1.0,
            domains: vec![dom(0, 1.0), dom(1, 5.0), dom(2, 0.0)],
            counters: pc(vec![10, u32::MAX - 1, 7, 0]),
        };
        let b = Sample {
            at: 5.0,
            domains: vec![dom(0, 3.0), dom(1, 0.5), dom(3, 0.0)],
            counters: pc(vec![30, 3, 7, 0]),
        };
        let r = rows(Some(&a), &b, 4096);
        // d0: 2 s of CPU in 4 s, 20 exits in 4 s.
        assert_eq!(r[0].cpu_pct, Some(50.0));
        assert_eq!(r[0].exit_rates, Some(vec![("io".to_string(), 5.0)]));
        assert_eq!(r[0].mem_pct, 25.0);
        // d1: its CPU time went back: a new domain with the id, no rates.
        assert_eq!((r[1].cpu_pct, r[1].exit_rates.as_ref()), (None, None));
        // d3: not seen before; and past the last own value anyway.
        assert_eq!((r[2].cpu_pct, r[2].exit_rates.as_ref()), (None, None));
        assert_eq!(domain_exits(b.counters.as_deref().unwrap(), 3), None);
        assert_eq!(
            domain_exits(b.counters.as_deref().unwrap(), 2),
            Some(vec![("io".to_string(), 7)])
        );
        assert_eq!(moved(u32::MAX - 1, 3), 3);
        assert_eq!(moved(3, 3), 0);
        // No earlier sample, or none earlier in time: no rates.
        assert!(rows(None, &b, 4096).iter().all(|r| r.cpu_pct.is_none()));
        assert!(rows(Some(&b), &b, 4096)
            .iter()
            .all(|r| r.exit_rates.is_none()));
        assert_eq!(
            (rate_text(1234.4), rate_text(12.34), rate_text(0.125)),
            ("1234".into(), "12.3".into(), "0.12".into())
        );
    }
}
