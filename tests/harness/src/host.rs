//! Host packages (Debian): find what is missing and install it when root.

use std::process::{Command, Stdio};

/// True if dpkg knows `pkg` as installed.
pub fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn have_dpkg() -> bool {
    Command::new("dpkg-query")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Makes sure every package in `pkgs` is installed: as root runs
/// `apt-get update` (once per call) and `apt-get install -y`, showing apt's
/// progress; otherwise returns an error naming the exact command to run.
pub fn ensure_packages(pkgs: &[&str]) -> Result<(), String> {
    if !have_dpkg() {
        eprintln!(
            "note: not a Debian-style host (no dpkg-query); make sure these are installed: {}",
            pkgs.join(" ")
        );
        return Ok(());
    }
    let mut missing: Vec<&str> = pkgs.iter().copied().filter(|p| !installed(p)).collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let cmd = format!(
        "apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    if !is_root() {
        return Err(format!(
            "missing host packages: {}\nrun:  sudo apt-get update && sudo {cmd}",
            missing.join(" ")
        ));
    }
    eprintln!("==> installing host packages: {}", missing.join(" "));
    let apt = |args: &[&str]| -> Result<(), String> {
        eprintln!("==> apt-get {}", args.join(" "));
        let st = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run apt-get: {e}"))?;
        if st.success() {
            Ok(())
        } else {
            Err(format!("apt-get {} failed ({st})", args.join(" ")))
        }
    };
    apt(&["update"])?;
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(&missing);
    apt(&args)?;
    let still: Vec<&str> = missing.iter().copied().filter(|p| !installed(p)).collect();
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "still missing after apt-get install: {}",
            still.join(" ")
        ))
    }
}
