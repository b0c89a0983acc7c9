//! keel's command line, in Xen's style: space-separated `name=value`,
//! `name` (boolean true) or `no-name` (boolean false) options.
//!
//! Every unknown option and every malformed value is reported through the
//! callback (and so on the console); the option keeps its default.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Console {
    Com1,
    None,
}

/// Log verbosity, Xen's `loglvl=` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    None,
    Error,
    Warning,
    Info,
    Debug,
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Read an unmapped address: #PF.
    PageFault,
    /// Execute `ud2`: #UD.
    InvalidOpcode,
    /// A Rust panic.
    Panic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Dom0Mem {
    pub size: Option<u64>,
    pub max: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options<'a> {
    pub console: Console,
    pub loglvl: LogLevel,
    pub dom0_mem: Dom0Mem,
    /// Bring up at most this many CPUs (`smp=` or Xen's `maxcpus=`).
    pub max_cpus: Option<u32>,
    /// dom0's vCPUs (Xen's `dom0_max_vcpus=`; default: one per CPU).
    pub dom0_max_vcpus: Option<u32>,
    pub noreboot: bool,
    /// Test mode: the scenario to run (`test=boot`).
    pub test: Option<&'a str>,
    pub test_fault: Option<Fault>,
    pub test_require_module: Option<&'a str>,
    /// I/O port of an exit device (QEMU's isa-debug-exit) used to report a
    /// failed run as a non-zero emulator status.
    pub debug_exit: Option<u16>,
    /// Print the scheduler's state every 2 s (`sched_debug`), as the
    /// debug key 'r' does once.
    pub sched_debug: bool,
    /// Print the host's CPUID leaves at boot (`cpuid_dump`).
    pub cpuid_dump: bool,
    /// Count VM exits by reason (`perfc`, default on; `perfc=0` turns
    /// the counters and `sysctl perfc_op` off).
    pub perfc: bool,
    /// `test=fuzz`: the fuzzing guest's hypercall count (`fuzz_count=`).
    pub fuzz_count: u32,
    /// `test=fuzz`: its PRNG seed (`fuzz_seed=`).
    pub fuzz_seed: u32,
}

/// `fuzz_count`'s default: a short run.
pub const FUZZ_COUNT_DEFAULT: u32 = 10_000;
/// `fuzz_seed`'s default.
pub const FUZZ_SEED_DEFAULT: u32 = 0x6b65_656c;

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            console: Console::Com1,
            loglvl: LogLevel::Info,
            dom0_mem: Dom0Mem::default(),
            max_cpus: None,
            dom0_max_vcpus: None,
            noreboot: false,
            test: None,
            test_fault: None,
            test_require_module: None,
            debug_exit: None,
            sched_debug: false,
            cpuid_dump: false,
            perfc: true,
            fuzz_count: FUZZ_COUNT_DEFAULT,
            fuzz_seed: FUZZ_SEED_DEFAULT,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem<'a> {
    Unknown(&'a str),
    BadValue { name: &'a str, value: &'a str },
    MissingValue(&'a str),
}

impl core::fmt::Display for Problem<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Problem::Unknown(n) => write!(f, "unknown option '{n}'"),
            Problem::BadValue { name, value } => write!(f, "bad value for '{name}': '{value}'"),
            Problem::MissingValue(n) => write!(f, "option '{n}' needs a value"),
        }
    }
}

/// Parses a size: a number with an optional K, M, G or T suffix (binary
/// units, as Xen does); a bare number is in bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 10),
        b'm' | b'M' => (&s[..s.len() - 1], 20),
        b'g' | b'G' => (&s[..s.len() - 1], 30),
        b't' | b'T' => (&s[..s.len() - 1], 40),
        b'b' | b'B' => (&s[..s.len() - 1], 0),
        _ => (s, 0),
    };
    let n = parse_u64(digits)?;
    n.checked_mul(1u64 << shift)
}

pub fn parse_u64(s: &str) -> Option<u64> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else {
        s.parse().ok()
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "yes" | "on" | "true" | "enable" => Some(true),
        "0" | "no" | "off" | "false" | "disable" => Some(false),
        _ => None,
    }
}

fn parse_dom0_mem(v: &str) -> Option<Dom0Mem> {
    let mut m = Dom0Mem::default();
    for part in v.split(',') {
        if let Some(max) = part.strip_prefix("max:") {
            m.max = Some(parse_size(max)?);
        } else if let Some(min) = part.strip_prefix("min:") {
            // Accepted for Xen compatibility; keel has no ballooning floor yet.
            parse_size(min)?;
        } else {
            m.size = Some(parse_size(part)?);
        }
    }
    Some(m)
}

/// Parses `s`, calling `report` for every problem.
pub fn parse<'a>(s: &'a str, mut report: impl FnMut(Problem<'a>)) -> Options<'a> {
    let mut o = Options::default();
    for word in s.split_ascii_whitespace() {
        let (name, value) = match word.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (word, None),
        };
        // Xen treats '-' and '_' alike in option names.
        let mut buf = [0u8; 32];
        let key = normalize(name, &mut buf);
        let bad = |report: &mut dyn FnMut(Problem<'a>)| match value {
            Some(v) => report(Problem::BadValue { name, value: v }),
            None => report(Problem::MissingValue(name)),
        };
        match key {
            "console" => match value {
                Some("com1") => o.console = Console::Com1,
                Some("none") => o.console = Console::None,
                _ => bad(&mut report),
            },
            "loglvl" => {
                o.loglvl = match value {
                    Some("none") => LogLevel::None,
                    Some("error") | Some("err") => LogLevel::Error,
                    Some("warning") | Some("warn") => LogLevel::Warning,
                    Some("info") => LogLevel::Info,
                    Some("debug") => LogLevel::Debug,
                    Some("all") => LogLevel::All,
                    _ => {
                        bad(&mut report);
                        continue;
                    }
                }
            }
            "dom0_mem" => match value.and_then(parse_dom0_mem) {
                Some(m) => o.dom0_mem = m,
                None => bad(&mut report),
            },
            "smp" | "maxcpus" => match value.and_then(parse_u64) {
                Some(n) if (1..=4096).contains(&n) => o.max_cpus = Some(n as u32),
                _ => bad(&mut report),
            },
            "dom0_max_vcpus" => match value.and_then(parse_u64) {
                Some(n) if (1..=4096).contains(&n) => o.dom0_max_vcpus = Some(n as u32),
                _ => bad(&mut report),
            },
            "noreboot" => match value.map_or(Some(true), parse_bool) {
                Some(b) => o.noreboot = b,
                None => bad(&mut report),
            },
            "no_reboot" => o.noreboot = false,
            "test" => match value {
                Some(v) if !v.is_empty() => o.test = Some(v),
                _ => bad(&mut report),
            },
            "test_fault" => {
                o.test_fault = match value {
                    Some("pf") => Some(Fault::PageFault),
                    Some("ud") => Some(Fault::InvalidOpcode),
                    Some("panic") => Some(Fault::Panic),
                    _ => {
                        bad(&mut report);
                        continue;
                    }
                }
            }
            "test_require_module" => match value {
                Some(v) if !v.is_empty() => o.test_require_module = Some(v),
                _ => bad(&mut report),
            },
            "sched_debug" => match value.map_or(Some(true), parse_bool) {
                Some(b) => o.sched_debug = b,
                None => bad(&mut report),
            },
            "cpuid_dump" => match value.map_or(Some(true), parse_bool) {
                Some(b) => o.cpuid_dump = b,
                None => bad(&mut report),
            },
            "perfc" => match value.map_or(Some(true), parse_bool) {
                Some(b) => o.perfc = b,
                None => bad(&mut report),
            },
            "fuzz_count" => match value.and_then(parse_u64) {
                Some(n) if (1..=u32::MAX as u64).contains(&n) => o.fuzz_count = n as u32,
                _ => bad(&mut report),
            },
            "fuzz_seed" => match value.and_then(parse_u64) {
                Some(n) if n <= u32::MAX as u64 => o.fuzz_seed = n as u32,
                _ => bad(&mut report),
            },
            "debug_exit" => match value.and_then(parse_u64) {
                Some(p) if p <= 0xffff => o.debug_exit = Some(p as u16),
                _ => bad(&mut report),
            },
            _ => report(Problem::Unknown(name)),
        }
    }
    o
}

fn normalize<'b>(name: &str, buf: &'b mut [u8; 32]) -> &'b str {
    if name.len() > buf.len() {
        return "";
    }
    for (d, s) in buf.iter_mut().zip(name.bytes()) {
        *d = if s == b'-' { b'_' } else { s };
    }
    // Only ASCII '-' was replaced, so the bytes stay valid UTF-8.
    core::str::from_utf8(&buf[..name.len()]).unwrap_or("")
}

static OPTIONS: spin::Once<Options<'static>> = spin::Once::new();

/// Keeps the parsed command line (once, at boot).
pub fn set(o: Options<'static>) -> &'static Options<'static> {
    OPTIONS.call_once(|| o)
}

/// The command line's options (the defaults before [`set`]).
pub fn get() -> &'static Options<'static> {
    static DEFAULT: spin::Once<Options<'static>> = spin::Once::new();
    OPTIONS
        .get()
        .unwrap_or_else(|| DEFAULT.call_once(Options::default))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(s: &str) -> (Options<'_>, Vec<Problem<'_>>) {
        let mut p = Vec::new();
        let o = parse(s, |x| p.push(x));
        (o, p)
    }

    #[test]
    fn defaults() {
        let (o, p) = parse_all("");
        assert!(p.is_empty());
        assert_eq!(o, Options::default());
        assert_eq!(o.loglvl, LogLevel::Info);
    }

    #[test]
    fn xen_style_options() {
        let (o, p) = parse_all(
            "console=com1 loglvl=debug dom0_mem=512M,max:1G smp=4 test=boot debug-exit=0xf4 noreboot dom0_max_vcpus=2",
        );
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(o.loglvl, LogLevel::Debug);
        assert_eq!(o.dom0_max_vcpus, Some(2));
        assert_eq!(
            o.dom0_mem,
            Dom0Mem {
                size: Some(512 << 20),
                max: Some(1 << 30)
            }
        );
        assert_eq!(o.max_cpus, Some(4));
        assert_eq!(o.test, Some("boot"));
        assert_eq!(o.debug_exit, Some(0xf4));
        assert!(o.noreboot);
        assert_eq!(parse_all("maxcpus=2").0.max_cpus, Some(2));
        assert!(o.perfc, "the exit counters are on by default");
        assert!(!parse_all("perfc=0").0.perfc);
        assert!(parse_all("perfc=0 perfc").0.perfc);
        let (o, p) = parse_all("perfc=maybe");
        assert!(o.perfc);
        assert_eq!(
            p,
            vec![Problem::BadValue {
                name: "perfc",
                value: "maybe"
            }]
        );
    }

    #[test]
    fn unknown_and_malformed_options_are_reported() {
        let (o, p) = parse_all("bogus_opt=1 smp=abc loglvl=loud dom0_mem=12Q test_fault=pf smp");
        assert_eq!(
            p,
            vec![
                Problem::Unknown("bogus_opt"),
                Problem::BadValue {
                    name: "smp",
                    value: "abc"
                },
                Problem::BadValue {
                    name: "loglvl",
                    value: "loud"
                },
                Problem::BadValue {
                    name: "dom0_mem",
                    value: "12Q"
                },
                Problem::MissingValue("smp"),
            ]
        );
        // Bad values keep the defaults; good ones still apply.
        assert_eq!(o.max_cpus, None);
        assert_eq!(o.loglvl, LogLevel::Info);
        assert_eq!(o.test_fault, Some(Fault::PageFault));
        assert_eq!(format!("{}", p[1]), "bad value for 'smp': 'abc'");
        assert_eq!(format!("{}", p[0]), "unknown option 'bogus_opt'");
    }

    #[test]
    fn fuzz_options() {
        let (o, p) = parse_all("test=fuzz fuzz_count=1000000 fuzz-seed=0x1234");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!((o.fuzz_count, o.fuzz_seed), (1_000_000, 0x1234));
        let d = Options::default();
        assert_eq!(
            (d.fuzz_count, d.fuzz_seed),
            (FUZZ_COUNT_DEFAULT, FUZZ_SEED_DEFAULT)
        );
        let (o, p) = parse_all("fuzz_count=0 fuzz_count=0x100000000 fuzz_seed=-1 fuzz_count");
        assert_eq!(p.len(), 4, "{p:?}");
        assert_eq!(
            (o.fuzz_count, o.fuzz_seed),
            (FUZZ_COUNT_DEFAULT, FUZZ_SEED_DEFAULT)
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("4k"), Some(4096));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("0x10M"), Some(16 << 20));
        assert_eq!(parse_size("99999999999T"), None); // overflow
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("M"), None);
    }

    #[test]
    fn hostile_words_never_panic() {
        let long = "a".repeat(100);
        let s = format!(
            "{long}=1 =x == === \u{e9}=\u{e9} smp=99999999999999999999999 debug_exit=0x10000"
        );
        let (_, p) = parse_all(&s);
        assert_eq!(p.len(), 7);
    }
}
