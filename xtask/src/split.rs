//! The split-driver benchmark (issue 15, `cargo xtask bench --only split`):
//! dom0 (`keel.bench_split=MIB`, its init script in `linux.rs`; the domU's
//! side in `domu.rs`) prints one line per figure,
//!
//! ```text
//! KEEL-LINUX: bench-split: size 64 MiB rounds 3
//! KEEL-LINUX: bench-split: round 1 dom0 disk-write 210 ms exit 0 mib 64
//! KEEL-LINUX: bench-split: round 1 dom0 loop-write 250 ms exit 0 mib 64 dev /dev/loop0
//! KEEL-LINUX: bench-split: round 1 domU tcp 30120 ms exit 0 bytes 67108864
//! KEEL-LINUX: bench-split: round 1 domU ping 1.234 ms replies 20
//! KEEL-LINUX: bench-split: round 1 keel: dom0 exits 4200 guest 650000 us handling 31000 us; domU exits 2500 guest 500000 us handling 12000 us
//! KEEL-LINUX: bench-split: done
//! ```
//!
//! and this module reads them back (pure, unit-tested) into a table.

/// What is measured: the first four on each side, the last two (dom0
/// through the loop device blkback serves the domU's disk from, with
/// O_DIRECT, as the domU writes and reads) by dom0 alone.
const MEASURES: [&str; 6] = [
    "disk-write",
    "disk-read",
    "tcp",
    "ping",
    "loop-write",
    "loop-read",
];

/// The measures both sides make ([`MEASURES`]' first ones).
const BOTH: usize = 4;

/// Indices into [`MEASURES`].
const LOOP_WRITE: usize = 4;
const LOOP_READ: usize = 5;

/// One side's figures, one per round, in the order of [`MEASURES`]: ms
/// for the transfers, the average round trip (ms) for ping; the domU has
/// none for dom0's own measures.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Side {
    pub figures: [Vec<f64>; 6],
}

/// What keel's counters say of one side (dom0 or the domU) over the
/// domU's disk turn of a round: its exits, its vCPUs' time in guest mode
/// and keel's time handling their exits (µs).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct KeelSide {
    pub exits: u64,
    pub guest_us: u64,
    pub handling_us: u64,
}

/// One run's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// MiB per transfer (the image's size).
    pub mib: u32,
    pub rounds: u32,
    pub dom0: Side,
    pub domu: Side,
    /// Per round: keel's counters over the domU's disk turn, (dom0, domU).
    pub keel: Vec<(KeelSide, KeelSide)>,
}

const PREFIX: &str = "KEEL-LINUX: bench-split: ";

/// dom0's bench lines among a run's console lines: every figure of every
/// round, each transfer complete and with exit status 0, or why not.
pub fn parse(lines: &[String]) -> Result<Run, String> {
    let ours: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_once(PREFIX).map(|(_, r)| r.trim()))
        .collect();
    let head = ours
        .iter()
        .find_map(|l| l.strip_prefix("size "))
        .ok_or("no 'bench-split: size' line: dom0 did not run the bench (keel.bench_split)")?;
    let (mib, rounds) = match head.split_whitespace().collect::<Vec<_>>()[..] {
        [m, "MiB", "rounds", r] => (
            m.parse::<u32>()
                .map_err(|_| format!("bad size line: {head}"))?,
            r.parse::<u32>()
                .map_err(|_| format!("bad size line: {head}"))?,
        ),
        _ => return Err(format!("bad size line: {head}")),
    };
    if mib == 0 || rounds == 0 {
        return Err(format!("bad size line: {head}"));
    }
    if let Some(l) = ours.iter().find(|l| l.starts_with("domU d")) {
        if l.ends_with("not ready") {
            return Err(format!("dom0: {l}"));
        }
    }
    let mut run = Run {
        mib,
        rounds,
        dom0: Side::default(),
        domu: Side::default(),
        keel: Vec::new(),
    };
    for r in 1..=rounds {
        let key = format!("round {r} keel: ");
        let line = ours
            .iter()
            .find(|l| l.starts_with(&key))
            .ok_or_else(|| format!("no 'round {r} keel' counters"))?;
        run.keel.push(keel_line(&line[key.len()..])?);
        for (i, measure) in MEASURES.iter().enumerate() {
            for (side, name) in [(&mut run.dom0, "dom0"), (&mut run.domu, "domU")] {
                if i >= BOTH && name == "domU" {
                    continue;
                }
                let key = format!("round {r} {name} {measure} ");
                let line = ours
                    .iter()
                    .find(|l| l.starts_with(&key))
                    .ok_or_else(|| format!("no 'round {r} {name} {measure}' figure"))?;
                side.figures[i].push(figure(line, &key, measure, mib)?);
            }
        }
    }
    if !ours.contains(&"done") {
        return Err("dom0 did not finish the bench (no 'bench-split: done')".into());
    }
    Ok(run)
}

/// keel's counters of a round ("dom0 exits N guest N us handling N us;
/// domU exits ..."), both sides.
fn keel_line(rest: &str) -> Result<(KeelSide, KeelSide), String> {
    let side = |part: &str, name: &str| -> Option<KeelSide> {
        match part.split_whitespace().collect::<Vec<_>>()[..] {
            [n, "exits", e, "guest", g, "us", "handling", h, "us"] if n == name => Some(KeelSide {
                exits: e.parse().ok()?,
                guest_us: g.parse().ok()?,
                handling_us: h.parse().ok()?,
            }),
            _ => None,
        }
    };
    let bad = || format!("bad keel counters: '{rest}'");
    let (a, b) = rest.split_once(';').ok_or_else(bad)?;
    let (d0, du) = side(a, "dom0").zip(side(b, "domU")).ok_or_else(bad)?;
    if d0.exits == 0 || du.exits == 0 {
        return Err(format!(
            "keel counted no exits (xenperf missing, or perfc=0?): '{rest}'"
        ));
    }
    Ok((d0, du))
}

/// The value of one figure line ("round 1 domU tcp 30120 ms exit 0 bytes N"),
/// checked: a number above 0 in ms, exit 0, the whole transfer.
fn figure(line: &str, key: &str, measure: &str, mib: u32) -> Result<f64, String> {
    let what = key.trim_end();
    let mut words = line[key.len()..].split_whitespace();
    let value = words.next().unwrap_or("");
    let v: f64 = value
        .parse()
        .map_err(|_| format!("{what}: '{value}' ({line})"))?;
    if !(v > 0.0 && v.is_finite()) || words.next() != Some("ms") {
        return Err(format!("{what}: not a time: {line}"));
    }
    // The rest: "key value" pairs.
    let rest: Vec<&str> = words.collect();
    let field = |k: &str| {
        rest.chunks(2)
            .find(|p| p.first() == Some(&k))
            .and_then(|p| p.get(1).copied())
    };
    let bytes = u64::from(mib) * 1024 * 1024;
    match measure {
        "ping" => {
            if field("replies").is_some_and(|n| n == "0") {
                return Err(format!("{what}: no replies ({line})"));
            }
        }
        _ => {
            match field("exit") {
                Some("0") => {}
                Some(rc) => return Err(format!("{what}: exit {rc} ({line})")),
                None => return Err(format!("{what}: no exit status ({line})")),
            }
            if let Some(m) = field("mib") {
                if m != mib.to_string() {
                    return Err(format!("{what}: {m} MiB, not {mib} ({line})"));
                }
            }
            if measure == "tcp" && field("bytes") != Some(bytes.to_string().as_str()) {
                return Err(format!(
                    "{what}: {} bytes arrived of {bytes} ({line})",
                    field("bytes").unwrap_or("no count of")
                ));
            }
        }
    }
    Ok(v)
}

/// One line on a run's medians, for the terminal.
pub fn summary(r: &Run) -> String {
    let m = |s: &Side, i: usize| median(&s.figures[i]);
    format!(
        "{} MiB, {} round(s): disk write {:.0}/{:.0}/{:.0} ms, read {:.0}/{:.0}/{:.0} ms, tcp {:.0}/{:.0} ms (domU/dom0 loop device/dom0 file, medians)",
        r.mib,
        r.rounds,
        m(&r.domu, 0),
        m(&r.dom0, LOOP_WRITE),
        m(&r.dom0, 0),
        m(&r.domu, 1),
        m(&r.dom0, LOOP_READ),
        m(&r.dom0, 1),
        m(&r.domu, 2),
        m(&r.dom0, 2),
    )
}

/// The domU's kernel command line in the bench (`bench.cfg`'s `extra=`).
fn domu_cmdline() -> &'static str {
    crate::domu::BENCH_CFG
        .lines()
        .find_map(|l| l.strip_prefix("extra = "))
        .unwrap_or("")
        .trim_matches('"')
}

/// The median of `v` (the mean of the middle two for an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// One emulator's outcome: its machine's name and its figures, or why
/// there are none.
pub type Outcome = (String, Result<Run, String>);

/// The Markdown section for all runs.
pub fn section(outcomes: &[Outcome]) -> String {
    let mut out = String::from(
        "## Split drivers (domU disk and network against dom0 itself)\n\n\
         `cargo xtask bench` (alone: `--only split`): keel on each emulator (2 CPUs; dom0 Debian's \
         kernel with 512 MiB and 2 vCPUs, `keel.bench_split=MIB` on its command line) makes a raw \
         image file of MIB MiB in its RAM (`/tmp/bench.img`, on the initramfs' tmpfs) and creates a \
         domU (256 MiB, 2 vCPUs, `/etc/keel/bench.cfg`) with that image as its `xvda` (keelctl binds \
         it to a loop device, dom0's xen-blkback serves it, the domU's xen-blkfront) and a vif on \
         the bridge `xenbr0` (xen-netback, xen-netfront; dom0 10.99.0.1, the domU 10.99.0.2). Then, \
         in rounds in which the two take turns: dom0 writes the image file sequentially (`dd \
         bs=1M conv=notrunc,fsync`) and reads it back (`dd bs=1M`; the file is in dom0's page \
         cache, so this baseline runs at memory speed), writes and reads it through the loop \
         device blkback serves the domU's disk from, with O_DIRECT as the domU does (`dd bs=1M \
         oflag=direct` / `iflag=direct`: the domU's path without the split drivers), and sends MIB MiB to itself over TCP on \
         127.0.0.1 (busybox `nc`, from `/dev/zero`, the receiver counting the bytes); then the domU \
         writes and reads its whole `xvda` with O_DIRECT (`dd bs=1M oflag=direct` / `iflag=direct`: \
         every byte through blkfront and blkback, none from its own page cache) and sends MIB MiB \
         to dom0 over TCP the same way (dom0 counts them); then dom0 pings the domU and itself, 20 \
         times each, 0.2 s apart (busybox `ping`'s average). Each side times its own work with its \
         own kernel's monotonic clock (`/proc/timer_list`, read by the shell: no process starts \
         inside a timed span); while one side is timed, the other only looks at xenstore once a \
         second. Throughput is MiB over the median time; the ratio is the domU's throughput over \
         dom0's (1: the split drivers cost nothing; **the goal for disk is at least 0.9**, against \
         dom0 on the same loop device with O_DIRECT, the fair baseline: dom0's page cache is \
         memory speed, which no disk reaches without a cache); for ping, the domU's round trip \
         against dom0's own over loopback. The domU's blkfront is loaded with its defaults \
         except what `bench.cfg`'s `extra=` says (shown below the table); blkback's counts show \
         its requests' size in the serial log (`vbd after`). Under QEMU TCG every VM entry and \
         exit flushes QEMU's software TLB, so each of the exits a request brings (the event \
         channel notifications, the vCPUs' halts and wake-ups, their timer hypercalls) also \
         costs the guest a refill of that TLB, in host time; Bochs' clock, which counts \
         instructions, does not see such costs. QEMU's clock is the host's \
         (several rounds, the median), Bochs' counts instructions (its runs repeat: one round). \
         **These are emulated figures**: they compare emulators and keel versions, not hardware.\n\n\
         | machine | MiB | measure | domU (split drivers) | dom0 alone | ratio |\n\
         |---|---:|---|---:|---:|---:|\n",
    );
    let mut notes = Vec::new();
    let mut every = Vec::new();
    let mut shares = Vec::new();
    for (machine, outcome) in outcomes {
        let run = match outcome {
            Ok(run) => run,
            Err(e) => {
                let e = e.replace('|', "\\|").replace('\n', " ");
                out += &format!("| {machine} | | **not measured**: {e} | | | |\n");
                notes.push(format!("{machine}: the run failed, no figures ({e})."));
                continue;
            }
        };
        let mib = run.mib;
        let rate = |ms: &[f64]| f64::from(mib) * 1000.0 / median(ms);
        // (name, the domU's measure, dom0's measure)
        let rows = [
            (
                "disk sequential write (MiB/s), dom0 on the loop device, O_DIRECT",
                0,
                LOOP_WRITE,
            ),
            (
                "disk sequential read (MiB/s), dom0 on the loop device, O_DIRECT",
                1,
                LOOP_READ,
            ),
            (
                "disk sequential write (MiB/s), dom0 to the file, page cache",
                0,
                0,
            ),
            (
                "disk sequential read (MiB/s), dom0 from the file, page cache",
                1,
                1,
            ),
            (
                "TCP domU → dom0 (domU) / dom0 → dom0 loopback (MiB/s)",
                2,
                2,
            ),
        ];
        let mut disk_ratios = Vec::new();
        for (name, iu, id) in rows {
            let u = rate(&run.domu.figures[iu]);
            let d = rate(&run.dom0.figures[id]);
            let ratio = u / d;
            if id >= BOTH {
                disk_ratios.push(ratio);
            }
            out += &format!("| {machine} | {mib} | {name} | {u:.1} | {d:.1} | {ratio:.2} |\n");
        }
        let (pu, pd) = (median(&run.domu.figures[3]), median(&run.dom0.figures[3]));
        out += &format!(
            "| {machine} | | ping round trip, dom0 ↔ domU / dom0 loopback (ms) | {pu:.3} | {pd:.3} | {:.1}× the time |\n",
            pu / pd
        );
        let met = disk_ratios.iter().all(|r| *r >= 0.9);
        notes.push(format!(
            "{machine}: disk goal (ratio ≥ 0.9 against dom0 on the loop device) {}: write {:.2}, read {:.2}.",
            if met { "met" } else { "not met" },
            disk_ratios[0],
            disk_ratios[1]
        ));
        let list = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        shares.push(keel_row(machine, run));
        for (r, (d0, du)) in run.keel.iter().enumerate() {
            every.push(format!(
                "- {machine}, round {}, keel over the domU's disk turn: dom0 {} exits, {} µs in guest mode, {} µs in keel after its exits; domU {} exits, {} µs, {} µs",
                r + 1,
                d0.exits,
                d0.guest_us,
                d0.handling_us,
                du.exits,
                du.guest_us,
                du.handling_us
            ));
        }
        for (i, m) in MEASURES.iter().enumerate() {
            every.push(if i < BOTH {
                format!(
                    "- {machine}, {m}: domU {}; dom0 {}",
                    list(&run.domu.figures[i]),
                    list(&run.dom0.figures[i])
                )
            } else {
                format!("- {machine}, {m}: dom0 {}", list(&run.dom0.figures[i]))
            });
        }
    }
    out.push('\n');
    out += &format!(
        "The domU's kernel command line (`bench.cfg`'s `extra=`): `{}`.\n\n",
        domu_cmdline()
    );
    for n in &notes {
        out += &format!("{n}\n");
    }
    if !shares.is_empty() {
        out += "\n**keel's own share of the domU's disk turn** (keel's counters: `xenperf -r` \
                before the domU's disk turn, `xenperf -f` after it; medians of the rounds). Over \
                the turn (the domU's write and read of its whole disk, its own clock, and the \
                second or so either side of it, in which both sides are idle but for their \
                timers), for dom0's vCPUs (blkback, the loop device) and the domU's (blkfront) \
                together: their exits, their time in guest mode, and keel's time after their \
                exits (from each exit until the vCPU enters guest mode again or leaves its CPU). \
                keel's share is the last over the two: of the time these vCPUs were on a CPU, \
                how much was keel's. Both emulators run their CPUs in turn on one host thread \
                while every CPU's TSC moves, so each time here also holds the other CPU's \
                turns; the share, a ratio of two such times, stands, the times alone do not. The \
                emulator's own cost of each exit (QEMU's TLB flush on every entry and exit, and \
                the refill after it) falls in guest mode.\n\n\
                | machine | domU disk turn (write + read) | exits, dom0 + domU | exits per MiB | guest mode | keel after exits | keel's share |\n\
                |---|---:|---:|---:|---:|---:|---:|\n";
        for row in &shares {
            out += row;
        }
    }
    if !every.is_empty() {
        out += "\nEvery round (ms; for ping the average round trip), in the order run:\n\n";
        out += &every.join("\n");
        out.push('\n');
    }
    out
}

/// The keel-share table's row for one run (medians of its rounds).
fn keel_row(machine: &str, run: &Run) -> String {
    let turns: Vec<f64> = (0..run.keel.len())
        .map(|r| run.domu.figures[0][r] + run.domu.figures[1][r])
        .collect();
    // One figure per round, both sides added.
    let both = |f: fn(&KeelSide) -> u64| -> Vec<f64> {
        run.keel.iter().map(|(a, b)| (f(a) + f(b)) as f64).collect()
    };
    let guest = both(|k| k.guest_us);
    let keel = both(|k| k.handling_us);
    let shares: Vec<f64> = keel
        .iter()
        .zip(&guest)
        .map(|(k, g)| k / (k + g).max(1.0))
        .collect();
    let side = |f: fn(&(KeelSide, KeelSide)) -> u64| {
        median(&run.keel.iter().map(|k| f(k) as f64).collect::<Vec<_>>())
    };
    format!(
        "| {machine} | {:.0} ms | {:.0} + {:.0} | {:.0} | {:.0} ms | {:.1} ms | {:.1}% |\n",
        median(&turns),
        side(|k| k.0.exits),
        side(|k| k.1.exits),
        median(&both(|k| k.exits)) / (2.0 * f64::from(run.mib)),
        median(&guest) / 1000.0,
        median(&keel) / 1000.0,
        100.0 * median(&shares)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// dom0's lines from a rehearsal of the two scripts on a Linux host
    /// (xenstore, keelctl and the bridge stood in for), 8 MiB, 2 rounds.
    const GOOD: &str = "\
KEEL-LINUX: bench-split: size 8 MiB rounds 2
KEEL-LINUX: bench-split: create exit 0
KEEL-LINUX: bench-split: xenbr0 10.99.0.1 up: exit 0
KEEL-LINUX: bench-split: domU d5 ready
KEEL-LINUX: bench-split: round 1 dom0 disk-write 7 ms exit 0 mib 8
KEEL-LINUX: bench-split: round 1 dom0 disk-read 1 ms exit 0 mib 8
KEEL-LINUX: bench-split: round 1 dom0 tcp 57 ms exit 0 bytes 8388608
KEEL-LINUX: bench-split: round 1 dom0 loop-write 10 ms exit 0 mib 8 dev /dev/loop0
KEEL-LINUX: bench-split: round 1 dom0 loop-read 5 ms exit 0 mib 8 dev /dev/loop0
KEEL-LINUX: bench-split: round 1 keel: dom0 exits 400 guest 15000 us handling 600 us; domU exits 200 guest 9000 us handling 240 us
KEEL-LINUX: bench-split: round 1 domU disk-write 13 ms exit 0 mib 8
KEEL-LINUX: bench-split: round 1 domU disk-read 8 ms exit 0 mib 8
KEEL-LINUX: bench-split: round 1 domU tcp 74 ms exit 0 bytes 8388608
KEEL-LINUX: bench-split: round 1 domU ping 0.074 ms replies 20
KEEL-LINUX: bench-split: round 1 dom0 ping 0.071 ms replies 20
KEEL-LINUX: bench-split: round 2 dom0 disk-write 8 ms exit 0 mib 8
KEEL-LINUX: bench-split: round 2 dom0 disk-read 2 ms exit 0 mib 8
KEEL-LINUX: bench-split: round 2 dom0 tcp 47 ms exit 0 bytes 8388608
KEEL-LINUX: bench-split: round 2 dom0 loop-write 14 ms exit 0 mib 8 dev /dev/loop0
KEEL-LINUX: bench-split: round 2 dom0 loop-read 7 ms exit 0 mib 8 dev /dev/loop0
KEEL-LINUX: bench-split: round 2 keel: dom0 exits 360 guest 14000 us handling 500 us; domU exits 180 guest 8000 us handling 220 us
KEEL-LINUX: bench-split: round 2 domU disk-write 12 ms exit 0 mib 8
KEEL-LINUX: bench-split: round 2 domU disk-read 6 ms exit 0 mib 8
KEEL-LINUX: bench-split: round 2 domU tcp 70 ms exit 0 bytes 8388608
KEEL-LINUX: bench-split: round 2 domU ping 0.076 ms replies 20
KEEL-LINUX: bench-split: round 2 dom0 ping 0.071 ms replies 20
KEEL-LINUX: bench-split: console: KEEL-DOMU: bench-split: xvda 8 MiB, dom0 answers ping
KEEL-LINUX: bench-split: done
";

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(String::from).collect()
    }

    #[test]
    fn reads_every_figure_of_every_round() {
        let run = parse(&lines(GOOD)).unwrap();
        assert_eq!((run.mib, run.rounds), (8, 2));
        assert_eq!(run.dom0.figures[0], vec![7.0, 8.0]);
        assert_eq!(run.domu.figures[1], vec![8.0, 6.0]);
        assert_eq!(run.domu.figures[2], vec![74.0, 70.0]);
        assert_eq!(run.dom0.figures[3], vec![0.071, 0.071]);
        assert_eq!(run.dom0.figures[LOOP_WRITE], vec![10.0, 14.0]);
        assert_eq!(run.dom0.figures[LOOP_READ], vec![5.0, 7.0]);
        assert!(run.domu.figures[LOOP_WRITE].is_empty());
        assert_eq!(
            run.keel[1],
            (
                KeelSide {
                    exits: 360,
                    guest_us: 14000,
                    handling_us: 500
                },
                KeelSide {
                    exits: 180,
                    guest_us: 8000,
                    handling_us: 220
                }
            )
        );
        // Lines with a console prefix (keel passes dom0's console through).
        let prefixed: Vec<String> = GOOD.lines().map(|l| format!("[dom0] {l}")).collect();
        assert_eq!(parse(&prefixed).unwrap(), run);
    }

    #[test]
    fn a_missing_or_failed_figure_is_an_error_not_a_number() {
        let cases = [
            (
                "round 2 domU tcp 70 ms exit 0 bytes 8388608",
                "round 2 domU tcp 70 ms exit 0 bytes 1024",
                "1024 bytes arrived of 8388608",
            ),
            (
                "round 1 domU disk-write 13 ms exit 0 mib 8",
                "round 1 domU disk-write missing ms exit none mib none",
                "'missing'",
            ),
            (
                "round 1 domU disk-read 8 ms exit 0 mib 8",
                "round 1 domU disk-read 8 ms exit 1 mib 8",
                "exit 1",
            ),
            (
                "round 1 dom0 disk-read 1 ms exit 0 mib 8",
                "round 1 dom0 disk-read 0 ms exit 0 mib 8",
                "not a time",
            ),
            (
                "round 1 domU disk-read 8 ms exit 0 mib 8",
                "round 1 domU disk-read 8 ms exit 0 mib 4",
                "4 MiB, not 8",
            ),
            (
                "round 1 domU ping 0.074 ms replies 20",
                "round 1 domU ping missing ms replies 0",
                "'missing'",
            ),
            (
                "round 2 dom0 ping 0.071 ms replies 20",
                "",
                "no 'round 2 dom0 ping' figure",
            ),
            (
                "round 2 dom0 loop-read 7 ms exit 0 mib 8 dev /dev/loop0",
                "round 2 dom0 loop-read 7 ms exit 1 mib 8 dev /dev/loop0",
                "exit 1",
            ),
            (
                "round 1 dom0 loop-write 10 ms exit 0 mib 8 dev /dev/loop0",
                "",
                "no 'round 1 dom0 loop-write' figure",
            ),
            ("KEEL-LINUX: bench-split: done", "", "did not finish"),
            ("size 8 MiB rounds 2", "", "no 'bench-split: size' line"),
            ("domU d5 ready", "domU d5 not ready", "not ready"),
            (
                "KEEL-LINUX: bench-split: round 2 keel: dom0",
                "",
                "no 'round 2 keel' counters",
            ),
            (
                "round 1 keel: dom0 exits 400 guest",
                "round 1 keel: dom0 exits x guest",
                "bad keel counters",
            ),
            (
                "handling 240 us",
                "handling 240 us extra",
                "bad keel counters",
            ),
            (
                "round 2 keel: dom0 exits 360 guest 14000 us handling 500 us; domU exits 180",
                "round 2 keel: dom0 exits 0 guest 0 us handling 0 us; domU exits 0",
                "keel counted no exits",
            ),
        ];
        for (from, to, want) in cases {
            assert!(GOOD.contains(from), "{from}");
            let bad = GOOD.replace(from, to);
            let e = parse(&lines(&bad)).unwrap_err();
            assert!(e.contains(want), "{from} -> {to}: {e}");
        }
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn the_section_has_ratios_and_says_what_failed() {
        let run = parse(&lines(GOOD)).unwrap();
        let s = section(&[
            ("QEMU TCG -cpu EPYC".into(), Ok(run)),
            ("Bochs 2.7 corei7_skylake_x".into(), Err("timed out".into())),
        ]);
        assert!(s.starts_with("## Split drivers"));
        // Write: domU 8 MiB in 12.5 ms, dom0 on the loop device in 12 ms,
        // to the file in 7.5 ms (medians).
        assert!(
            s.contains("| QEMU TCG -cpu EPYC | 8 | disk sequential write (MiB/s), dom0 on the loop device, O_DIRECT | 640.0 | 666.7 | 0.96 |"),
            "{s}"
        );
        assert!(
            s.contains("| QEMU TCG -cpu EPYC | 8 | disk sequential write (MiB/s), dom0 to the file, page cache | 640.0 | 1066.7 | 0.60 |"),
            "{s}"
        );
        assert!(s.contains("| 0.075 | 0.071 |"), "{s}");
        // Read: domU 7 ms, dom0 on the loop device 6 ms.
        assert!(
            s.contains("disk goal (ratio ≥ 0.9 against dom0 on the loop device) not met: write 0.96, read 0.86"),
            "{s}"
        );
        assert!(
            s.contains("- QEMU TCG -cpu EPYC, loop-read: dom0 5, 7"),
            "{s}"
        );
        assert!(
            s.contains("command line (`bench.cfg`'s `extra=`): `console=hvc0 "),
            "{s}"
        );
        assert!(s.contains("| Bochs 2.7 corei7_skylake_x | | **not measured**: timed out |"));
        // keel's share: turns 21 and 18 ms; exits 600 and 540 over 16 MiB;
        // guest mode 24 and 22 ms, keel 0.84 and 0.72 ms: 3.38% and 3.17%.
        assert!(
            s.contains("| QEMU TCG -cpu EPYC | 20 ms | 380 + 190 | 36 | 23 ms | 0.8 ms | 3.3% |"),
            "{s}"
        );
        assert!(
            s.contains("- QEMU TCG -cpu EPYC, round 2, keel over the domU's disk turn: dom0 360 exits, 14000 µs in guest mode, 500 µs in keel after its exits; domU 180 exits, 8000 µs, 220 µs"),
            "{s}"
        );
        assert!(
            s.contains("- QEMU TCG -cpu EPYC, tcp: domU 74, 70; dom0 57, 47"),
            "{s}"
        );
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
