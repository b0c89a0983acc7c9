//! End-to-end tests of the `keelctl` binary (std::process, no extra deps).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SUBCOMMANDS: &[&str] = keelctl::cli::SUBCOMMANDS;

fn xlcfg_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../xlcfg/tests/fixtures")
        .join(name)
}

/// Run keelctl with a privcmd path that certainly does not exist, on a
/// host that looks like no Xen-ABI hypervisor.
fn keelctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keelctl"))
        .args(args)
        .env("KEELCTL_PRIVCMD", "/nonexistent/keel-test/privcmd")
        .env("KEELCTL_HYPERVISOR_TYPE", "/nonexistent/keel-test/type")
        .output()
        .expect("run keelctl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_works_for_every_subcommand() {
    let top = keelctl(&["--help"]);
    assert!(top.status.success());
    let top_out = text(&top.stdout);
    for sub in SUBCOMMANDS {
        // `monitor` is create's background helper: hidden from the list.
        assert_eq!(
            top_out.contains(&format!("  {sub} ")),
            *sub != "monitor",
            "top-level help and {sub}"
        );
        for form in [vec![*sub, "--help"], vec!["help", *sub]] {
            let o = keelctl(&form);
            assert_eq!(o.status.code(), Some(0), "{form:?}: {}", text(&o.stderr));
            let out = text(&o.stdout);
            assert!(out.contains("Usage: keelctl "), "{form:?}: {out}");
            assert!(out.contains(sub), "{form:?}: {out}");
        }
    }
    for tabular in ["list", "vcpu-list", "info"] {
        assert!(
            text(&keelctl(&[tabular, "--help"]).stdout).contains("--json"),
            "{tabular}"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["frobnicate"][..],
        &["destroy"],
        &["create"],
        &["list", "--bogus"],
    ] {
        let o = keelctl(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(text(&o.stderr).contains("error:"), "{args:?}");
    }
}

#[test]
fn create_malformed_config_shows_file_line_col() {
    let cfg = xlcfg_fixture("bad-syntax.cfg");
    let o = keelctl(&["create", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    let want = format!(
        "{}:6:1: error: expected ',' or ']' in the list opened at 4:8, found 'v'",
        cfg.display()
    );
    assert!(err.lines().next() == Some(want.as_str()), "{err}");
    assert!(err.contains("configuration is invalid"), "{err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn create_semantically_invalid_config_lists_errors() {
    let cfg = xlcfg_fixture("bad-semantics.cfg");
    let o = keelctl(&["create", "-f", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert_eq!(err.matches(": error: ").count(), 4, "{err}");
    let want = format!(
        "{}:7:9: error: 'vcpus' (8) must not exceed 'maxvcpus' (4)",
        cfg.display()
    );
    assert!(err.lines().any(|l| l == want), "{err}");
}

#[test]
fn create_valid_config_is_not_supported_yet() {
    let cfg = xlcfg_fixture("pvh-web.cfg");
    let o = keelctl(&["create", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    let err = text(&o.stderr);
    assert!(
        err.contains("warning: key 'vnc' is valid for xl but not supported by keel; ignored"),
        "{err}"
    );
    assert!(
        err.contains("configuration for domain 'web01' is valid"),
        "{err}"
    );
    assert!(
        err.ends_with("keelctl: 'create' is not supported yet: /nonexistent/keel-test/privcmd not found: not running on keel (no Xen-ABI hypervisor detected)\n"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn create_dry_run_succeeds() {
    let cfg = xlcfg_fixture("hvm-minimal.cfg");
    let o = keelctl(&["create", "--dry-run", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        out.contains("name         hvm-min") && out.contains("type         hvm"),
        "{out}"
    );
}

#[test]
fn create_missing_file() {
    let o = keelctl(&["create", "/nonexistent/keel-test/guest.cfg"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).starts_with("/nonexistent/keel-test/guest.cfg: error: cannot read file")
    );
}

#[test]
fn list_without_privcmd_gives_clear_error() {
    for args in [&["list"][..], &["list", "--json"]] {
        let o = keelctl(args);
        assert_eq!(o.status.code(), Some(3));
        assert_eq!(
            text(&o.stderr),
            "keelctl: 'list' is not supported yet: /nonexistent/keel-test/privcmd not found: not running on keel (no Xen-ABI hypervisor detected)\n"
        );
        assert!(o.stdout.is_empty());
    }
}

#[test]
fn default_privcmd_path_is_dev_xen_privcmd() {
    if Path::new("/dev/xen/privcmd").exists() {
        return; // really in a dom0 (or a Xen guest): the message differs.
    }
    let o = Command::new(env!("CARGO_BIN_EXE_keelctl"))
        .arg("info")
        .env_remove("KEELCTL_PRIVCMD")
        .env_remove("KEELCTL_HYPERVISOR_TYPE")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    let on_xen = std::fs::read_to_string("/sys/hypervisor/type").is_ok_and(|t| t.trim() == "xen");
    let why = if on_xen {
        "load the xen-privcmd module (modprobe xen-privcmd / insmod xen-privcmd.ko)"
    } else {
        "not running on keel (no Xen-ABI hypervisor detected)"
    };
    assert_eq!(
        text(&o.stderr),
        format!("keelctl: 'info' is not supported yet: /dev/xen/privcmd not found: {why}\n")
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn xen_without_privcmd_says_load_the_module() {
    let dir = std::env::temp_dir().join(format!("keelctl-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ty = dir.join("type");
    std::fs::write(&ty, "xen\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_keelctl"))
        .arg("dmesg")
        .env("KEELCTL_PRIVCMD", dir.join("privcmd"))
        .env("KEELCTL_HYPERVISOR_TYPE", &ty)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(
        text(&o.stderr),
        format!(
            "keelctl: 'dmesg' is not supported yet: {}/privcmd not found: load the xen-privcmd \
             module (modprobe xen-privcmd / insmod xen-privcmd.ko)\n",
            dir.display()
        )
    );
}

#[test]
fn a_device_that_is_not_privcmd_fails_cleanly() {
    // /dev/null opens read-write, but is no privcmd: the ioctl gets ENOTTY.
    let o = Command::new(env!("CARGO_BIN_EXE_keelctl"))
        .arg("info")
        .env("KEELCTL_PRIVCMD", "/dev/null")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr),
        "keelctl: info: xen_version failed: ENOTTY (errno 25)\n"
    );
}

#[test]
fn every_unbuilt_command_exits_3_with_message() {
    for args in [
        &["destroy", "web"][..],
        &["shutdown", "web"],
        &["reboot", "web"],
        &["pause", "web"],
        &["unpause", "web"],
        &["console", "web"],
        &["info"],
        &["dmesg"],
        &["vcpu-list", "--json"],
        &["vcpu-pin", "web", "0", "1-2"],
        &["mem-set", "web", "256m"],
        &["block-attach", "web", "phy:/dev/vg/x,xvdb,w"],
        &["block-detach", "-f", "web", "xvdb"],
        &["block-list", "web"],
        &["network-attach", "web", "bridge=xenbr0"],
        &["network-detach", "web", "00:16:3e:00:00:01"],
        &["save", "web", "/tmp/web.save"],
        &["restore", "/tmp/web.save"],
        &["top"],
    ] {
        let o = keelctl(args);
        assert_eq!(o.status.code(), Some(3), "{args:?}");
        let err = text(&o.stderr);
        let prefix = format!("keelctl: '{}' is not supported yet: ", args[0]);
        assert!(
            err.starts_with(&prefix) && err.ends_with('\n') && err.len() > prefix.len() + 10,
            "{args:?}: {err}"
        );
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}
