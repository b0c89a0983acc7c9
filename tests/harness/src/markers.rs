//! Parsing keel's serial console.
//!
//! keel's own lines start with `(XEN) `; everything else on COM1 (firmware,
//! bootloader, GRUB) is kept for the failure report but never decides an
//! outcome. The markers are specified in `docs/testing.md`.

use std::collections::BTreeMap;

/// Prefix of every line keel prints.
pub const PREFIX: &str = "(XEN) ";
/// Needle prefix for [`Console::contains`]: match dom0's console output.
pub const DOM0: &str = "dom0> ";

/// One recognised keel console line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// `keel-test: PASS <scenario> key=value...`
    Pass {
        scenario: String,
        fields: BTreeMap<String, String>,
    },
    /// `keel-test: FAIL <scenario> reason=<text>`
    Fail { scenario: String, reason: String },
    /// `*** FATAL ...`: start of an exception/panic diagnostic.
    Fatal(String),
    /// `keel: powering off`
    PoweringOff,
    /// `CPU<i> online ...`
    CpuOnline(u32),
    /// `SMP: <n>/<m> CPUs online`
    Smp { online: u32, total: u32 },
    /// `cmdline: unknown option '<name>'`
    UnknownOption(String),
    /// `cmdline: bad value for '<name>': '<value>'`
    BadValue { name: String, value: String },
    /// `boot modules: archive rejected: <reason>`
    ArchiveRejected(String),
    /// Any other keel line (text after the prefix).
    Other(String),
}

/// Strips the trailing CR/whitespace and anything before `(XEN) ` (a line
/// can be glued to firmware output that did not end in a newline).
/// Returns the text after the prefix, or `None` for non-keel lines.
pub fn keel_text(line: &str) -> Option<&str> {
    let line = line.trim_end_matches(['\r', '\n', ' ', '\t']);
    line.find(PREFIX).map(|i| &line[i + PREFIX.len()..])
}

/// Log-level tags keel may put after the prefix (`(XEN) ERROR: ...`).
pub const LEVEL_TAGS: [&str; 5] = ["ERROR: ", "WARNING: ", "WARN: ", "DEBUG: ", "TRACE: "];

/// Drops a leading log-level tag.
pub fn strip_level(t: &str) -> &str {
    LEVEL_TAGS
        .iter()
        .find_map(|l| t.strip_prefix(l))
        .unwrap_or(t)
}

fn quoted(s: &str) -> Option<(&str, &str)> {
    // s starts with '<x>' ... returns (x, rest after closing quote)
    let s = s.strip_prefix('\'')?;
    let end = s.find('\'')?;
    Some((&s[..end], &s[end + 1..]))
}

/// Parses `key=value key2=value2` (values run to the next space).
pub fn parse_fields(s: &str) -> BTreeMap<String, String> {
    s.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Classifies one console line; `None` if it is not one of keel's lines.
pub fn parse_line(line: &str) -> Option<Marker> {
    let t = strip_level(keel_text(line)?);
    if let Some(rest) = t.strip_prefix("keel-test: PASS ") {
        let (scenario, fields) = rest.split_once(' ').unwrap_or((rest, ""));
        return Some(Marker::Pass {
            scenario: scenario.to_string(),
            fields: parse_fields(fields),
        });
    }
    if let Some(rest) = t.strip_prefix("keel-test: FAIL ") {
        let (scenario, tail) = rest.split_once(' ').unwrap_or((rest, ""));
        let reason = tail
            .trim_start()
            .strip_prefix("reason=")
            .unwrap_or(tail.trim_start());
        return Some(Marker::Fail {
            scenario: scenario.to_string(),
            reason: reason.to_string(),
        });
    }
    if t.starts_with("*** FATAL") {
        return Some(Marker::Fatal(t.to_string()));
    }
    if t.starts_with("keel: powering off") {
        return Some(Marker::PoweringOff);
    }
    if let Some(rest) = t.strip_prefix("CPU") {
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let after = &rest[digits.len()..];
        if !digits.is_empty() && (after == " online" || after.starts_with(" online ")) {
            if let Ok(i) = digits.parse() {
                return Some(Marker::CpuOnline(i));
            }
        }
    }
    if let Some(rest) = t.strip_prefix("SMP: ") {
        if let Some((frac, tail)) = rest.split_once(' ') {
            if tail.starts_with("CPUs online") {
                if let Some((n, m)) = frac.split_once('/') {
                    if let (Ok(online), Ok(total)) = (n.parse(), m.parse()) {
                        return Some(Marker::Smp { online, total });
                    }
                }
            }
        }
    }
    if let Some(rest) = t.strip_prefix("cmdline: unknown option ") {
        if let Some((name, _)) = quoted(rest) {
            return Some(Marker::UnknownOption(name.to_string()));
        }
    }
    if let Some(rest) = t.strip_prefix("cmdline: bad value for ") {
        if let Some((name, tail)) = quoted(rest) {
            let value = tail
                .strip_prefix(": ")
                .and_then(quoted)
                .map(|(v, _)| v)
                .unwrap_or("");
            return Some(Marker::BadValue {
                name: name.to_string(),
                value: value.to_string(),
            });
        }
    }
    if let Some(rest) = t.strip_prefix("boot modules: archive rejected: ") {
        return Some(Marker::ArchiveRejected(rest.to_string()));
    }
    Some(Marker::Other(t.to_string()))
}

/// Everything the outcome decision needs from one console log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Console {
    /// Every line, as printed (CR stripped).
    pub lines: Vec<String>,
    /// The recognised keel lines, in order, with their line index.
    pub markers: Vec<(usize, Marker)>,
}

impl Console {
    /// Parses a whole log (lossy UTF-8 is fine: only keel's lines matter).
    pub fn parse(log: &str) -> Console {
        let mut c = Console::default();
        for (i, raw) in log.split('\n').enumerate() {
            let line = raw.trim_end_matches('\r');
            if let Some(m) = parse_line(line) {
                c.markers.push((i, m));
            }
            c.lines.push(line.to_string());
        }
        // A final empty string after the last newline is not a line.
        if c.lines.last().is_some_and(|l| l.is_empty()) {
            c.lines.pop();
        }
        c
    }

    pub fn from_bytes(log: &[u8]) -> Console {
        Console::parse(&String::from_utf8_lossy(log))
    }

    fn find<'a, T>(&'a self, f: impl Fn(&'a Marker) -> Option<T>) -> Option<T> {
        self.markers.iter().find_map(|(_, m)| f(m))
    }

    /// The first PASS line (scenario, fields).
    pub fn pass(&self) -> Option<(&str, &BTreeMap<String, String>)> {
        self.find(|m| match m {
            Marker::Pass { scenario, fields } => Some((scenario.as_str(), fields)),
            _ => None,
        })
    }

    /// The first FAIL line (scenario, reason).
    pub fn fail(&self) -> Option<(&str, &str)> {
        self.find(|m| match m {
            Marker::Fail { scenario, reason } => Some((scenario.as_str(), reason.as_str())),
            _ => None,
        })
    }

    /// The first `*** FATAL` line.
    pub fn fatal(&self) -> Option<&str> {
        self.find(|m| match m {
            Marker::Fatal(t) => Some(t.as_str()),
            _ => None,
        })
    }

    pub fn powered_off(&self) -> bool {
        self.markers.iter().any(|(_, m)| *m == Marker::PoweringOff)
    }

    /// The CPUs that printed `CPU<i> online`, sorted, without duplicates.
    pub fn cpus_online(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .markers
            .iter()
            .filter_map(|(_, m)| {
                if let Marker::CpuOnline(i) = m {
                    Some(*i)
                } else {
                    None
                }
            })
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The last `SMP: n/m CPUs online` summary.
    pub fn smp(&self) -> Option<(u32, u32)> {
        self.markers.iter().rev().find_map(|(_, m)| match m {
            Marker::Smp { online, total } => Some((*online, *total)),
            _ => None,
        })
    }

    /// True if some keel line (text after the prefix) contains `needle`; a
    /// needle that itself starts with `(XEN) ` is matched against whole lines;
    /// one that starts with [`DOM0`] against the lines that are not keel's
    /// (dom0's console output, which keel passes through as it is).
    pub fn contains(&self, needle: &str) -> bool {
        if let Some(n) = needle.strip_prefix(DOM0) {
            return self
                .lines
                .iter()
                .any(|l| keel_text(l).is_none() && l.contains(n));
        }
        self.lines
            .iter()
            .any(|l| match needle.strip_prefix(PREFIX) {
                Some(n) => keel_text(l).is_some_and(|t| t.contains(n)),
                None => keel_text(l).is_some_and(|t| t.contains(needle)),
            })
    }

    /// True once the run has printed its result: a PASS/FAIL marker or a
    /// FATAL diagnostic. (A FATAL diagnostic spans several lines; callers
    /// give it a moment to finish before stopping an emulator.)
    pub fn has_result(&self) -> bool {
        self.pass().is_some() || self.fail().is_some() || self.fatal().is_some()
    }

    /// A panic of the `bootloader` crate's stages before keel ran (they
    /// print `panicked at <file>:<line>:` and the message on the next line).
    pub fn loader_panic(&self) -> Option<String> {
        let i = self
            .lines
            .iter()
            .position(|l| keel_text(l).is_none() && l.contains("panicked at "))?;
        let at = &self.lines[i][self.lines[i].find("panicked at ").unwrap()..];
        let msg = self.lines.get(i + 1).map(|l| l.trim()).unwrap_or("");
        Some(format!("{at} {msg}").trim().to_string())
    }

    /// dom0's `KEEL-LINUX: sleep 1 took N ms`, if it printed it.
    pub fn dom0_sleep_ms(&self) -> Option<u64> {
        self.lines.iter().find_map(|l| {
            if keel_text(l).is_some() {
                return None;
            }
            let rest = l.split("KEEL-LINUX: sleep 1 took ").nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        })
    }

    /// The first line of a guest kernel's log (a Linux console line,
    /// `[seconds] message`) that reports a kernel problem: a `WARNING:` or
    /// `BUG:` splat, an oops or panic, a taint, an MSR access that faulted
    /// where the kernel expected none, or a `[Firmware Bug]` (the firmware
    /// and MSRs a guest sees are keel's). CPU-vulnerability notices such as
    /// `RETBleed: WARNING: ...` describe the emulated CPU model, are printed
    /// the same on bare metal, and are not problems.
    pub fn kernel_problem(&self) -> Option<&str> {
        self.lines
            .iter()
            .filter(|l| keel_text(l).is_none())
            .find(|l| kernel_message(l).is_some_and(is_kernel_problem))
            .map(String::as_str)
    }

    /// The last `n` lines, for failure reports.
    pub fn tail(&self, n: usize) -> &[String] {
        &self.lines[self.lines.len().saturating_sub(n)..]
    }
}

/// The message of a Linux console line `[    1.234567] message`.
fn kernel_message(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix('[')?;
    let (stamp, msg) = rest.split_once(']')?;
    let (secs, frac) = stamp.trim_start().split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(secs) && digits(frac)).then(|| msg.trim_start())
}

fn is_kernel_problem(msg: &str) -> bool {
    const STARTS: [&str; 8] = [
        "WARNING:",
        "unchecked MSR access error",
        "BUG:",
        "Oops",
        "Kernel panic",
        "kernel BUG at",
        "general protection fault",
        "[Firmware Bug]",
    ];
    // A user process killed by the CPU (`comm[pid]: segfault at ...`,
    // `traps: comm[pid] general protection fault ...`) is evidence too:
    // Bochs 2.7's XSAVEC first showed as busybox segfaults in dom0.
    const CONTAINS: [&str; 4] = [
        "Tainted: ",
        "kernel taint",
        "tainting kernel",
        ": segfault at ",
    ];
    msg.starts_with("traps: ")
        || STARTS.iter().any(|p| msg.starts_with(p))
        || CONTAINS.iter().any(|p| msg.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_line_with_fields() {
        let m = parse_line("(XEN) keel-test: PASS boot cpus=4/4 mem=512M\r").unwrap();
        let Marker::Pass { scenario, fields } = m else {
            panic!("{m:?}")
        };
        assert_eq!(scenario, "boot");
        assert_eq!(fields["cpus"], "4/4");
        assert_eq!(fields["mem"], "512M");
    }

    #[test]
    fn fail_line_keeps_spaces_in_reason() {
        assert_eq!(
            parse_line("(XEN) keel-test: FAIL boot reason=missing-module dom0"),
            Some(Marker::Fail {
                scenario: "boot".into(),
                reason: "missing-module dom0".into()
            })
        );
    }

    #[test]
    fn other_markers() {
        assert_eq!(
            parse_line("(XEN) keel: powering off"),
            Some(Marker::PoweringOff)
        );
        assert_eq!(
            parse_line("(XEN) CPU3 online apic=3"),
            Some(Marker::CpuOnline(3))
        );
        assert_eq!(parse_line("(XEN) CPU0 online"), Some(Marker::CpuOnline(0)));
        assert!(matches!(
            parse_line("(XEN) CPU0 offline"),
            Some(Marker::Other(_))
        ));
        assert_eq!(
            parse_line("(XEN) SMP: 2/4 CPUs online"),
            Some(Marker::Smp {
                online: 2,
                total: 4
            })
        );
        assert_eq!(
            parse_line("(XEN) cmdline: unknown option 'bogus_opt'"),
            Some(Marker::UnknownOption("bogus_opt".into()))
        );
        assert_eq!(
            parse_line("(XEN) cmdline: bad value for 'smp': 'abc'"),
            Some(Marker::BadValue {
                name: "smp".into(),
                value: "abc".into()
            })
        );
        assert_eq!(
            parse_line("(XEN) boot modules: archive rejected: entry 1: truncated"),
            Some(Marker::ArchiveRejected("entry 1: truncated".into()))
        );
        assert!(matches!(
            parse_line("(XEN) *** FATAL: #PF"),
            Some(Marker::Fatal(_))
        ));
        assert_eq!(
            parse_line("(XEN) ERROR: cmdline: unknown option 'bogus_opt'"),
            Some(Marker::UnknownOption("bogus_opt".into()))
        );
        assert_eq!(
            parse_line("(XEN) WARNING: boot modules: archive rejected: x (truncated)"),
            Some(Marker::ArchiveRejected("x (truncated)".into()))
        );
        assert_eq!(parse_line("BdsDxe: loading Boot0001"), None);
        assert_eq!(
            parse_line("keel-test: PASS boot cpus=1/1"),
            None,
            "no prefix, not keel's"
        );
    }

    #[test]
    fn prefix_glued_to_firmware_output() {
        assert_eq!(
            parse_line("\x1b[0mINFO: jumping to kernel(XEN) keel: powering off"),
            Some(Marker::PoweringOff)
        );
    }

    #[test]
    fn bootloader_panic_is_found() {
        let log = "BdsDxe: starting Boot0001\r\n\x1b[2J\x1b[01;01Hpanicked at /x/bootloader-x86_64-common-0.11.15/src/lib.rs:107:18:\r\n\
                   bootloader config section not found; kernel must be compiled against bootloader_api\r\n";
        let c = Console::parse(log);
        let p = c.loader_panic().unwrap();
        assert!(p.starts_with("panicked at /x/bootloader"), "{p}");
        assert!(p.ends_with("compiled against bootloader_api"), "{p}");
        assert_eq!(
            Console::parse("(XEN) keel: panicked at foo\n").loader_panic(),
            None
        );
    }

    #[test]
    fn console_summary() {
        let log = "SeaBIOS (version 1.16)\r\n(XEN) CPU0 online\r\n(XEN) CPU1 online\r\n\
                   (XEN) CPU1 online\r\n(XEN) SMP: 2/2 CPUs online\r\n\
                   (XEN) keel-test: PASS boot cpus=2/2\r\n(XEN) keel: powering off\r\n";
        let c = Console::parse(log);
        assert_eq!(c.lines.len(), 7);
        assert_eq!(c.cpus_online(), vec![0, 1]);
        assert_eq!(c.smp(), Some((2, 2)));
        assert_eq!(c.pass().unwrap().0, "boot");
        assert!(c.powered_off());
        assert!(c.has_result());
        assert!(c.fail().is_none() && c.fatal().is_none());
        assert!(c.contains("SMP: 2/2"));
        assert!(c.contains("(XEN) SMP: 2/2"));
        assert!(!c.contains("SeaBIOS"), "only keel lines are searched");
        assert!(
            c.contains("dom0> SeaBIOS"),
            "dom0> searches the other lines"
        );
        assert!(!c.contains("dom0> SMP: 2/2"), "dom0> skips keel's lines");
        assert_eq!(
            c.tail(2),
            [
                "(XEN) keel-test: PASS boot cpus=2/2",
                "(XEN) keel: powering off"
            ]
        );
    }

    #[test]
    fn kernel_problems_in_the_guest_log() {
        let ok = "[    0.61] Speculative Return Stack Overflow: WARNING: See https://kernel.org/doc/html/latest/admin-guide/hw-vuln/srso.html\n\
                  [    2.38] RETBleed: WARNING: Spectre v2 mitigation leaves CPU vulnerable to RETBleed attacks, data leaks possible!\n\
                  (XEN) WARNING: time: HPET and PIT disagree\n\
                  KEEL-LINUX: WARNING: not a kernel line\n";
        assert_eq!(Console::parse(ok).kernel_problem(), None);
        for bad in [
            "[    1.234567] WARNING: CPU: 1 PID: 0 at arch/x86/kernel/smpboot.c:424 topology_sane.isra.0+0x6d/0x80",
            "[    3.100000] BUG: kernel NULL pointer dereference, address: 0000000000000000",
            "[    3.100001] CPU: 0 PID: 1 Comm: init Tainted: G        W          6.1.0-28-amd64 #1",
            "[   12.5] Disabling lock debugging due to kernel taint",
            "[    0.1] [Firmware Bug]: CPU1: APIC id mismatch. Firmware: 1 APIC: 0",
            "[    0.000000] unchecked MSR access error: RDMSR from 0xc0010140 at rIP: 0xffffffff8107e7c3 (native_read_msr+0x3/0x30)",
            "[   96.137014] exe[426]: segfault at 0 ip 00000000004a4d02 sp 00007ffd6886af28 error 4 in busybox[401000+184000] likely on CPU 1 (core 1, socket 0)",
            "[   12.000001] traps: xl[812] general protection fault ip:7f0a1c2b3d4e sp:7ffc0 error:0 in libc.so.6[7f0a1c200000+155000]",
        ] {
            let log = format!("(XEN) keel\n{bad}\n[    9.0] ok\n");
            assert_eq!(Console::parse(&log).kernel_problem(), Some(bad), "{bad}");
        }
    }
}
