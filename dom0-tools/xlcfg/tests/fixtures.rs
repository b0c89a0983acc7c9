//! keel's own example configurations (tests/fixtures/*.cfg).

use std::path::PathBuf;

use keel_xlcfg::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn pvh_web_all_typed_keys() {
    let p = parse_file(fixture("pvh-web.cfg")).unwrap_or_else(|e| panic!("{e}"));
    let c = &p.config;
    assert_eq!(c.name, "web01");
    assert_eq!(c.guest_type, GuestType::Pvh);
    assert_eq!(
        c.uuid.as_deref(),
        Some("6f1c2a4e-3b5d-4c7e-9f80-1a2b3c4d5e6f")
    );
    assert_eq!((c.memory_mb, c.maxmem_mb), (Some(1024), Some(2048)));
    assert_eq!((c.vcpus, c.maxvcpus), (2, Some(4)));
    match &c.cpus {
        Some(CpuAffinity::AllVcpus(l)) => {
            assert_eq!(l.to_string(), "0-3,^1");
            assert_eq!(
                l.resolve(8, |_| vec![]).into_iter().collect::<Vec<_>>(),
                [0, 2, 3]
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&c.cpus_soft, Some(CpuAffinity::PerVcpu(v)) if v.len() == 4));
    assert_eq!(
        c.ramdisk.as_deref(),
        Some("/var/lib/keel/kernels/initrd-6.1.img")
    );
    assert_eq!(
        c.cmdline.as_deref(),
        Some("root=/dev/xvda1 ro console=hvc0 quiet")
    );
    assert_eq!(
        (c.on_poweroff, c.on_reboot, c.on_crash),
        (Action::Destroy, Action::Restart, Action::CoredumpRestart)
    );

    assert_eq!(c.disks.len(), 4);
    let d = &c.disks;
    assert_eq!(d[0].target.as_deref(), Some("/dev/vg0/web01-root"));
    assert_eq!(
        (d[0].vdev.as_str(), d[0].access),
        ("xvda", DiskAccess::ReadWrite)
    );
    assert!(d[0].legacy_syntax);
    assert_eq!(
        (d[1].vdev.as_str(), d[1].access),
        ("xvdb1", DiskAccess::ReadOnly)
    );
    assert_eq!(d[2].format, DiskFormat::Qcow2);
    assert_eq!(d[2].target.as_deref(), Some("/srv/images/scratch,1.qcow2"));
    assert!(d[3].cdrom && d[3].target.is_none());

    assert_eq!(c.vifs.len(), 2);
    let v = &c.vifs[0];
    assert_eq!(v.mac.unwrap().to_string(), "00:16:3e:5a:01:02");
    assert_eq!(v.ip.as_deref(), Some("192.0.2.10"));
    let r = v.rate.unwrap();
    assert_eq!(
        (r.bytes_per_sec, r.interval_us, r.bytes_per_interval()),
        (1_250_000, 20_000, 25_000)
    );
    let v = &c.vifs[1];
    assert_eq!(v.vif_type, Some(VifType::Vif));
    assert_eq!(
        (v.vifname.as_deref(), v.backend.as_deref(), v.mtu),
        (Some("web01-back"), Some("netdom"), Some(9000))
    );
    assert_eq!(v.script.as_deref(), Some("vif-bridge"));

    // `vnc` is a known xl key: ignored with a warning that says so.
    assert_eq!(p.warnings.len(), 4, "{:#?}", p.warnings); // vnc + 3 legacy disk syntaxes
    assert!(p
        .warnings
        .iter()
        .any(|w| matches!(&w.kind, WarningKind::IgnoredKey { key } if key == "vnc")));
    assert_eq!(c.ignored.len(), 1);
}

#[test]
fn hvm_minimal_defaults() {
    let p = parse_file(fixture("hvm-minimal.cfg")).unwrap();
    let c = &p.config;
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert_eq!(c.guest_type, GuestType::Hvm);
    assert_eq!(
        (c.vcpus, c.effective_maxvcpus(), c.effective_maxmem_mb()),
        (1, 1, Some(256))
    );
    assert_eq!(c.on_reboot, Action::Restart);
    assert_eq!(c.vifs, vec![VifSpec::default()]);
    assert_eq!(c.disks[0].vdev, "hda");
}

#[test]
fn pv_cmdline_wins_and_typo_warns() {
    let p = parse_file(fixture("pv-cmdline.cfg")).unwrap();
    assert_eq!(
        p.config.cmdline.as_deref(),
        Some("root=/dev/xvda2 console=hvc0")
    );
    assert_eq!(p.config.memory_mb, None);
    let file = fixture("pv-cmdline.cfg").display().to_string();
    let rendered: Vec<String> = p.warnings.iter().map(|w| w.render(&file)).collect();
    assert!(
        rendered
            .iter()
            .any(|w| w
                .ends_with(":6:1: warning: 'root' ignored because 'cmdline' is set (as xl does)")),
        "{rendered:#?}"
    );
    assert!(
        rendered
            .iter()
            .any(|w| w
                .ends_with(":8:1: warning: unknown key 'memroy' ignored (did you mean 'memory'?)")),
        "{rendered:#?}"
    );
}

#[test]
fn bad_syntax_reports_file_line_col() {
    let path = fixture("bad-syntax.cfg");
    let e = parse_file(&path).unwrap_err();
    let Error::Syntax(s) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(s.location, Location::new(6, 1));
    assert_eq!(
        e.to_string(),
        format!(
            "{}:6:1: error: expected ',' or ']' in the list opened at 4:8, found 'v'",
            path.display()
        )
    );
}

#[test]
fn bad_semantics_lists_every_problem() {
    let e = parse_file(fixture("bad-semantics.cfg")).unwrap_err();
    let Error::Invalid { errors, .. } = &e else {
        panic!("{e:?}")
    };
    let kinds: Vec<_> = errors.iter().map(|e| (&e.kind, e.location)).collect();
    assert!(
        matches!(kinds[0], (SemanticErrorKind::MaxmemBelowMemory { memory: 1024, maxmem: 512 }, Some(l)) if l == Location::new(6, 10)),
        "{kinds:?}"
    );
    assert!(matches!(
        kinds[1],
        (
            SemanticErrorKind::VcpusAboveMaxvcpus {
                vcpus: 8,
                maxvcpus: 4
            },
            Some(_)
        )
    ));
    assert!(
        matches!(kinds[2], (SemanticErrorKind::InvalidChoice { .. }, Some(l)) if l == Location::new(9, 12))
    );
    assert!(
        matches!(kinds[3], (SemanticErrorKind::InvalidMac { index: 0, .. }, Some(l)) if l == Location::new(10, 9))
    );
    assert_eq!(errors.len(), 4);
    let text = e.to_string();
    assert!(text.contains("bad-semantics.cfg:6:10: error: 'maxmem' (512 MB) must be greater than or equal to 'memory' (1024 MB)"), "{text}");
    assert!(text.contains("multicast"), "{text}");
}

#[test]
fn semantic_error_table() {
    let base = "name='t'\ntype='pvh'\n";
    for (extra, want) in [
        ("memory=0", "'memory' must be greater than 0"),
        ("vcpus=0", "'vcpus' must be at least 1"),
        ("memory='lots'", "not a valid non-negative number"),
        ("memory=[1]", "'memory' must be a number, found a list"),
        ("name=[]", "'name' must be a string, found a list"),
        ("type='xen'", "expected one of: pv, pvh, hvm"),
        ("uuid='1234'", "invalid uuid"),
        ("cpus='4-2'", "reversed"),
        ("disk=['/x.img']", "no vdev"),
        ("disk='/x.img,,xvda'", "must be a list of strings"),
        ("disk=['/a,,xvda','/b,,xvda']", "defined more than once"),
        ("vif=['bridge']", "not a key=value pair"),
        ("vif=['mac=00:16:3e:00:00']", "invalid MAC address"),
        ("name='12'", "confused with a domain id"),
    ] {
        let src = format!("{base}{extra}\n");
        let e = parse_str(&src, "t.cfg").expect_err(extra);
        assert!(e.to_string().contains(want), "{extra}: {e}");
        assert!(e.to_string().starts_with("t.cfg:"), "{e}");
    }
    let e = parse_str("type = 'hvm'\nmemory = 1", "t.cfg").unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.cfg: error: mandatory key 'name' is missing"
    );
    let e = parse_str("name='p'", "t.cfg").unwrap_err();
    assert!(e
        .to_string()
        .contains("PV guest needs either 'kernel' or 'bootloader'"));
    // Quoted numbers and octal are accepted like xl does.
    let p = parse_str("name='q'\ntype='hvm'\nmemory='0x100'\nmaxmem=0400\n", "t").unwrap();
    assert_eq!(
        (p.config.memory_mb, p.config.maxmem_mb),
        (Some(256), Some(256))
    );
}

#[test]
fn not_utf8_and_missing_file() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    // Per process: a concurrent run of this test would truncate a shared
    // file while this one reads it.
    let f = dir.join(format!("xlcfg-not-utf8-{}.cfg", std::process::id()));
    std::fs::write(&f, b"name = 'x'\nkernel = '\xff'\n").unwrap();
    let e = parse_file(&f).unwrap_err();
    let _ = std::fs::remove_file(&f);
    assert!(
        e.to_string()
            .ends_with(":2:11: error: file is not valid UTF-8"),
        "{e}"
    );
    let e = parse_file(dir.join("does-not-exist.cfg")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }));
    assert!(e.to_string().contains("cannot read file"));
}
