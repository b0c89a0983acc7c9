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

fn have_sudo() -> bool {
    Command::new("sudo")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A command that runs `prog` as root: `prog` itself when this process is
/// root, else `sudo -- prog` (sudo may ask for a password on the terminal).
/// `why` says what needs root, for the message when neither is possible.
pub fn as_root(prog: &str, why: &str) -> Result<Command, String> {
    if is_root() {
        return Ok(Command::new(prog));
    }
    if have_sudo() {
        let mut c = Command::new("sudo");
        c.arg("--").arg(prog);
        return Ok(c);
    }
    Err(format!(
        "{why} needs root ({prog}): run this as root, or install sudo and run it as a user \
         who may use it"
    ))
}

/// Makes sure every package in `pkgs` is installed: runs `apt-get update`
/// (once per call) and `apt-get install -y`, showing apt's progress, as root
/// or through sudo; with neither, returns an error naming the exact command.
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
    let root = is_root();
    if !root && !have_sudo() {
        return Err(format!(
            "missing host packages: {}\nrun as root:  apt-get update && {cmd}",
            missing.join(" ")
        ));
    }
    eprintln!("==> installing host packages: {}", missing.join(" "));
    let apt = |args: &[&str]| -> Result<(), String> {
        eprintln!(
            "==> {}apt-get {}",
            if root { "" } else { "sudo " },
            args.join(" ")
        );
        let mut c = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.args(["--preserve-env=DEBIAN_FRONTEND", "--", "apt-get"]);
            c
        };
        let st = c
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
