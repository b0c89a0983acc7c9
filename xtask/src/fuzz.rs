//! The hypercall-fuzzing benchmark (issue 12): keel boots with `test=fuzz
//! fuzz_count=N` on each emulator; its fuzzing test guest prints a
//! histogram of return codes and keel the count, time and rate. This
//! module reads those lines back into a table (pure, unit-tested).

/// What one run reported.
#[derive(Debug, PartialEq, Eq)]
pub struct Row {
    pub calls: u64,
    pub per_s: u64,
    pub backend: String,
    /// The guest's histogram, as printed: "0:12 -22:34 ... faulted:0".
    pub histogram: String,
    /// The guest's calls by kind: "hypercall N port-in ...".
    pub kinds: String,
}

/// Finds the fuzzer's lines among a run's console lines.
pub fn parse(lines: &[String]) -> Option<Row> {
    // "(XEN) fuzz: d21: Done(0): 100000 hypercalls (12 -ENOSYS ...) and 200000 exits in 1000 us = 100000 hypercalls/s (AMD-V)"
    let rate = lines
        .iter()
        .find(|l| l.contains("fuzz: d21: ") && l.contains(" hypercalls/s ("))?;
    let (_, tail) = rate.split_once(" us = ")?;
    let (per_s, backend) = tail.split_once(" hypercalls/s (")?;
    // "(XEN) (d21) fuzz: 100000 hypercalls, rc histogram: 0:1 -38:2 ..."
    let hist = lines
        .iter()
        .find(|l| l.contains(" hypercalls, rc histogram: "))?;
    let (head, histogram) = hist.split_once(" hypercalls, rc histogram: ")?;
    let calls = head.rsplit(' ').next()?.parse().ok()?;
    let kinds = lines
        .iter()
        .find_map(|l| {
            l.split_once("fuzz: by kind: ")
                .map(|(_, k)| k.trim().to_string())
        })
        .unwrap_or_default();
    Some(Row {
        calls,
        per_s: per_s.trim().parse().ok()?,
        backend: backend.trim_end_matches(')').to_string(),
        histogram: histogram.trim().to_string(),
        kinds,
    })
}

/// The histogram with Xen's errno names: "0: 12, -EINVAL (-22): 34, ...".
pub fn named_histogram(h: &str) -> String {
    h.split_whitespace()
        .map(|part| {
            let Some((rc, n)) = part.split_once(':') else {
                return part.to_string();
            };
            let name = match rc {
                "-1" => "EPERM",
                "-2" => "ENOENT",
                "-3" => "ESRCH",
                "-7" => "E2BIG",
                "-12" => "ENOMEM",
                "-13" => "EACCES",
                "-14" => "EFAULT",
                "-16" => "EBUSY",
                "-17" => "EEXIST",
                "-22" => "EINVAL",
                "-28" => "ENOSPC",
                "-38" => "ENOSYS",
                "-62" => "ETIME",
                "-95" => "EOPNOTSUPP",
                _ => "",
            };
            if name.is_empty() {
                format!("{rc}: {n}")
            } else {
                format!("{rc} {name}: {n}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The benchmark's section for docs/benchmarks.md.
pub fn section(count: u32, rows: &[(String, Row, f64)]) -> String {
    let mut out = format!(
        "## Hypercall fuzzing (keel's test guest)\n\n\
         `cargo xtask bench` (or `cargo xtask fuzz --count N` alone): keel boots with \
         `test=fuzz fuzz_count={count}`; its fuzzing test guest makes {count} hypercalls with \
         random numbers (0-63, 64 (keel's former management call) and out-of-range ones), sub-ops and \
         random or adversarial pointers and lengths (its own scratch memory, the last bytes of \
         its RAM, memory it does not own, non-canonical and kernel-half addresses, huge \
         lengths), mixed with random port I/O, rdmsr/wrmsr and CPUID, while a well-behaved \
         guest runs on the other CPU; a suite guest then runs on the fuzzer's CPU. keel must \
         not panic and the other guests must finish (`docs/testing.md`). Return codes as the \
         guest saw them (`faulted`: the call raised an exception in the guest); the rate is \
         hypercalls per second of the emulated machine's TSC, the other accesses included in \
         the time. **Emulated figures.**\n\n\
         | machine | backend | hypercalls | hypercalls/s | run wall time | return codes | calls by kind |\n\
         |---|---|---:|---:|---:|---|---|\n"
    );
    for (model, r, wall) in rows {
        out += &format!(
            "| {model} | {} | {} | {} | {wall:.1} s | {} | {} |\n",
            r.backend,
            r.calls,
            r.per_s,
            named_histogram(&r.histogram),
            r.kinds
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(String::from).collect()
    }

    #[test]
    fn parses_a_run() {
        let log = lines(
            "(XEN) fuzz: d21: 1000000 hypercalls, seed 0x6b65656c, on CPU1 beside d20\n\
             (XEN) (d21) fuzz: 1000000 hypercalls, rc histogram: 0:5 -1:7 -14:9 -38:11 other-negative:0 positive:2 faulted:0\n\
             (XEN) (d21) fuzz: by kind: hypercall 1000000 port-in 3 port-out 4 rdmsr 5 (1 #GP) wrmsr 6 (2 #GP) cpuid 7\n\
             (XEN) fuzz: d21: Done(0): 1000000 hypercalls (11 -ENOSYS for unimplemented calls) and 1200000 exits in 20000000 us = 50000 hypercalls/s (VT-x)\n",
        );
        let r = parse(&log).unwrap();
        assert_eq!(r.calls, 1_000_000);
        assert_eq!(r.per_s, 50_000);
        assert_eq!(r.backend, "VT-x");
        assert!(r.histogram.starts_with("0:5 -1:7"), "{}", r.histogram);
        assert!(r.kinds.starts_with("hypercall 1000000 port-in 3"));
        assert_eq!(
            named_histogram(&r.histogram),
            "0: 5, -1 EPERM: 7, -14 EFAULT: 9, -38 ENOSYS: 11, other-negative: 0, positive: 2, faulted: 0"
        );
        let s = section(1_000_000, &[("QEMU".into(), r, 12.5)]);
        assert!(s.contains("| QEMU | VT-x | 1000000 | 50000 | 12.5 s | 0: 5, -1 EPERM: 7"));
        assert!(parse(&log[..2]).is_none());
    }
}
