//! Parse the example configurations Debian ships in `xen-utils-common`
//! (`/etc/xen/xlexample.*`).
//!
//! The package is fetched with `apt-get download` and unpacked with
//! `dpkg -x` into a cache under `target/` (never committed). If that is
//! impossible the test FAILS, unless `KEEL_SKIP_REAL_CLIENTS=1` is set.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use keel_xlcfg::{parse_file, DiskAccess, DiskFormat, GuestType, VifSpec, WarningKind};

fn skip_allowed() -> bool {
    std::env::var("KEEL_SKIP_REAL_CLIENTS").is_ok_and(|v| v == "1")
}

/// Directory holding the unpacked `/etc/xen`, or an explanation of why not.
fn fetch_examples() -> Result<PathBuf, String> {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("xen-utils-common");
    let etc = cache.join("root/etc/xen");
    if etc.join("xlexample.hvm").is_file() {
        return Ok(etc);
    }
    std::fs::create_dir_all(&cache)
        .map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    let out = Command::new("apt-get")
        .args(["download", "xen-utils-common"])
        .current_dir(&cache)
        .output()
        .map_err(|e| format!("cannot run apt-get: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`apt-get download xen-utils-common` failed ({}): {}\n(hint: run `apt-get update` first)",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let deb = std::fs::read_dir(&cache)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or("apt-get download succeeded but no .deb file appeared")?;
    let out = Command::new("dpkg")
        .arg("-x")
        .arg(&deb)
        .arg(cache.join("root"))
        .output()
        .map_err(|e| format!("cannot run dpkg: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`dpkg -x {}` failed: {}",
            deb.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if !etc.join("xlexample.hvm").is_file() {
        return Err(format!("{} has no etc/xen/xlexample.hvm", deb.display()));
    }
    Ok(etc)
}

/// `Some(dir)` with the examples; `None` when skipping is allowed; panics otherwise.
fn examples() -> Option<&'static Path> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match DIR.get_or_init(fetch_examples) {
        Ok(p) => Some(p),
        Err(why) if skip_allowed() => {
            eprintln!("SKIPPED (KEEL_SKIP_REAL_CLIENTS=1): cannot get Debian's xl examples: {why}");
            None
        }
        Err(why) => panic!(
            "cannot get Debian's xen-utils-common xl examples: {why}\n\
             Install apt/dpkg or set KEEL_SKIP_REAL_CLIENTS=1 to skip this test."
        ),
    }
}

#[test]
fn every_shipped_example_parses() {
    let Some(dir) = examples() else { return };
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("xlexample.")
        {
            continue;
        }
        let p = parse_file(&path).unwrap_or_else(|e| panic!("{e}"));
        for w in &p.warnings {
            // Only "valid xl key, ignored by keel" is expected (hvm: sdl).
            assert!(
                matches!(w.kind, WarningKind::IgnoredKey { .. }),
                "{}",
                w.render(&path.display().to_string())
            );
        }
        n += 1;
    }
    assert!(
        n >= 3,
        "expected at least 3 xlexample.* files in {}, found {n}",
        dir.display()
    );
}

#[test]
fn xlexample_hvm() {
    let Some(dir) = examples() else { return };
    let p = parse_file(dir.join("xlexample.hvm")).unwrap();
    let c = &p.config;
    assert_eq!(c.name, "example.hvm");
    assert_eq!(c.guest_type, GuestType::Hvm);
    assert_eq!((c.memory_mb, c.vcpus), (Some(128), 2));
    assert_eq!(c.vifs, vec![VifSpec::default()]);
    let d = &c.disks[0];
    assert_eq!(d.target.as_deref(), Some("/dev/vg/guest-volume"));
    assert_eq!(
        (d.format, d.vdev.as_str(), d.access),
        (DiskFormat::Raw, "xvda", DiskAccess::ReadWrite)
    );
    assert!(p
        .warnings
        .iter()
        .any(|w| matches!(&w.kind, WarningKind::IgnoredKey { key } if key == "sdl")));
}

#[test]
fn xlexample_pv_and_pvh() {
    let Some(dir) = examples() else { return };
    let pv = parse_file(dir.join("xlexample.pvlinux")).unwrap().config;
    assert_eq!(
        (pv.name.as_str(), pv.guest_type),
        ("example.pvlinux", GuestType::Pv)
    );
    assert_eq!(pv.kernel.as_deref(), Some("/boot/vmlinuz"));
    assert_eq!(pv.cmdline.as_deref(), Some("root=/dev/xvda1"));
    assert_eq!((pv.memory_mb, pv.vcpus), (Some(128), 2));
    let pvh = parse_file(dir.join("xlexample.pvhlinux")).unwrap().config;
    assert_eq!(
        (pvh.name.as_str(), pvh.guest_type),
        ("example.pvhlinux", GuestType::Pvh)
    );
    assert_eq!((pvh.memory_mb, pvh.vcpus), (Some(512), 4));
    assert_eq!(
        pvh.disks[0].target.as_deref(),
        Some("/dev/zvol/tank/guest-volume")
    );
}

#[test]
fn uncommented_optional_lines_also_parse() {
    // The examples carry commented-out settings (uuid, maxmem, ramdisk,
    // viridian, vnc); enable them all and the result must still parse.
    let Some(dir) = examples() else { return };
    for f in ["xlexample.hvm", "xlexample.pvlinux", "xlexample.pvhlinux"] {
        let src = std::fs::read_to_string(dir.join(f)).unwrap();
        let enabled: String = src
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest)
                    if rest.contains(" = ") || rest.contains("=") && !rest.starts_with(' ') =>
                {
                    rest.replace(
                        "XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX",
                        "00000000-1111-2222-3333-444444444444",
                    )
                }
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let p =
            keel_xlcfg::parse_str(&enabled, f).unwrap_or_else(|e| panic!("{e}\n---\n{enabled}"));
        assert!(p.config.uuid.is_some(), "{f}");
    }
}
