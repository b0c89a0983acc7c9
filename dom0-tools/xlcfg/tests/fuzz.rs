//! Property tests with a deterministic generator (no extra dependencies):
//! random and mutated input must never panic, errors must point inside
//! the input, and printed specs must round-trip.

use keel_xlcfg::*;

/// xorshift64*: small, deterministic, good enough for fuzzing.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, s: &'a [T]) -> &'a T {
        &s[self.below(s.len())]
    }
}

const SEED_CONFIGS: &[&str] = &[
    include_str!("fixtures/pvh-web.cfg"),
    include_str!("fixtures/hvm-minimal.cfg"),
    include_str!("fixtures/pv-cmdline.cfg"),
    include_str!("fixtures/bad-syntax.cfg"),
    include_str!("fixtures/bad-semantics.cfg"),
];

const TOKENS: &[&str] = &[
    "name",
    "type",
    "memory",
    "maxmem",
    "vcpus",
    "maxvcpus",
    "cpus",
    "disk",
    "vif",
    "kernel",
    "cmdline",
    "root",
    "extra",
    "on_crash",
    "uuid",
    " = ",
    "=",
    "[",
    "]",
    ",",
    ";",
    "\n",
    "#",
    "\\\n",
    "\"",
    "'",
    "0x",
    "0",
    "9",
    "18446744073709551616",
    "'pvh'",
    "'hvm'",
    "\"pv\"",
    "'phy:/dev/x,xvda,w'",
    "'mac=00:16:3e:00:00:01'",
    "'0-3,^1'",
    "'target='",
    "\\x4",
    "\\",
    "é",
    "\u{feff}",
    "\t",
    " ",
    "\r\n",
    "'rate=1MB/s@20ms'",
    "',hdc:cdrom,r'",
    "'all,^node:1'",
];

fn check(src: &str) {
    let lines = src.split('\n').count() as u32;
    match parse_str(src, "fuzz.cfg") {
        Ok(p) => {
            // Valid configs satisfy the documented invariants.
            let c = &p.config;
            assert!(!c.name.is_empty());
            assert!(c.vcpus >= 1 && c.vcpus <= c.effective_maxvcpus());
            if let (Some(m), Some(mx)) = (c.memory_mb, c.effective_maxmem_mb()) {
                assert!(m > 0 && mx >= m);
            }
            for d in &c.disks {
                let again =
                    parse_disk_spec(&d.to_string()).expect("printed disk spec must reparse");
                assert_eq!(
                    &again,
                    &DiskSpec {
                        legacy_syntax: false,
                        ignored_options: vec![],
                        ..d.clone()
                    }
                );
            }
        }
        Err(Error::Syntax(e)) => {
            assert!(
                e.location.line >= 1 && e.location.line <= lines,
                "{e} (lines={lines})"
            );
            assert!(e.location.col >= 1);
            assert!(!e.message.is_empty());
        }
        Err(Error::Invalid { errors, .. }) => {
            assert!(!errors.is_empty());
            for e in errors {
                if let Some(l) = e.location {
                    assert!(l.line >= 1 && l.line <= lines);
                }
            }
        }
        Err(Error::Io { .. }) => unreachable!(),
    }
}

#[test]
fn random_token_soup_never_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let n = rng.below(40);
        let src: String = (0..n).map(|_| *rng.pick(TOKENS)).collect();
        check(&src);
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(42);
    for _ in 0..20_000 {
        let n = rng.below(64);
        let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        check(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn mutated_configs_never_panic() {
    let mut rng = Rng(7);
    for i in 0..20_000 {
        let mut s: Vec<char> = SEED_CONFIGS[i % SEED_CONFIGS.len()].chars().collect();
        for _ in 0..1 + rng.below(6) {
            if s.is_empty() {
                break;
            }
            let at = rng.below(s.len());
            match rng.below(4) {
                0 => {
                    s.remove(at);
                }
                1 => s.insert(
                    at,
                    *rng.pick(&[
                        '"', '\'', '[', ']', ',', '=', '\n', '\\', '#', ';', ':', '^', '-', '0',
                        'x',
                    ]),
                ),
                2 => s[at] = char::from_u32(rng.below(0x250) as u32).unwrap_or('?'),
                _ => {
                    let tok: Vec<char> = rng.pick(TOKENS).chars().collect();
                    s.splice(at..at, tok);
                }
            }
        }
        check(&s.into_iter().collect::<String>());
    }
}

#[test]
fn random_disk_and_vif_specs_never_panic() {
    const PARTS: &[&str] = &[
        "phy:",
        "file:",
        "tap:",
        "aio:",
        "raw:",
        "qcow2:",
        "iscsi:",
        "/dev/vg/x",
        "/x.img",
        "",
        "raw",
        "qcow9",
        "xvda",
        "hdc",
        "hdc:cdrom",
        "sda1",
        "d0p1",
        "r",
        "rw",
        "w",
        "ro",
        "cdrom",
        "devtype=cdrom",
        "target=/a,b",
        "vdev=xvdb",
        "format=vhd",
        "access=r",
        "backend=dd",
        "backendtype=qdisk",
        "no-discard",
        "untrusted",
        "colo",
        "colo-host=h",
        "=",
        "x=",
        ":",
        "mac=00:16:3e:01:02:03",
        "mac=ff:ff:ff:ff:ff:ff",
        "bridge=xenbr0",
        "rate=10Mb/s",
        "rate=1MB/s@20ms",
        "rate=/s",
        "mtu=1500",
        "mtu=99999999999",
        "type=ioemu",
        "ip=10.0.0.1",
    ];
    let mut rng = Rng(1234);
    for _ in 0..30_000 {
        let n = rng.below(7);
        let sep = *rng.pick(&[",", ", ", " ,", ",,"]);
        let spec = (0..n)
            .map(|_| *rng.pick(PARTS))
            .collect::<Vec<_>>()
            .join(sep);
        if let Ok(d) = parse_disk_spec(&spec) {
            assert!(disk::is_valid_vdev(&d.vdev), "{spec:?}");
            assert!(d.target.is_some() || d.cdrom, "{spec:?}");
            assert!(!(d.cdrom && d.access == DiskAccess::ReadWrite), "{spec:?}");
            let again =
                parse_disk_spec(&d.to_string()).unwrap_or_else(|e| panic!("{spec:?} -> {d} : {e}"));
            assert_eq!(again.vdev, d.vdev);
            assert_eq!(again.target, d.target);
        }
        if let Ok(v) = parse_vif_spec(&spec) {
            if let Some(m) = v.mac {
                assert_eq!(MacAddr::parse(&m.to_string()), Ok(m));
            }
        }
        let _ = CpuList::parse(&spec);
    }
}
