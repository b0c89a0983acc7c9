//! `cargo xtask bench`'s boot comparison against Xen 4.17: the same
//! Debian kernel and initramfs as dom0, booted by GRUB under the same QEMU
//! command line, once under keel and once under Debian's Xen 4.17 (its
//! `xen-hypervisor-4.17-amd64`, fetched and cached like the kernel), in
//! turns, with every serial line timestamped on arrival.
//!
//! Xen 4.17 boots a PV dom0 here: its PVH dom0 needs an IOMMU, which
//! QEMU's TCG AMD machine lacks. keel boots the same kernel as a PVH dom0.

use crate::linux;
use keel_harness::images;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, String>;

/// Rounds per hypervisor (keel, Xen, keel, Xen, ...); the table gives medians.
const ROUNDS: usize = 3;
/// One boot's limit.
const TIMEOUT: Duration = Duration::from_secs(300);
/// The machine both run on: Xen's idle loop needs MONITOR hidden under TCG
/// (`-monitor`: MWAIT with hints raises #GP there), so both get it hidden.
const QEMU_CPU: &str = "EPYC,-monitor";
const CPUS: u32 = 2;
const MEMORY_MIB: u32 = 1024;
/// dom0: 256 MiB and one vCPU per CPU under both.
const KEEL_CMDLINE: &str = "console=com1 dom0_mem=256M debug_exit=0xf4";
const XEN_CMDLINE: &str =
    "console=com1 com1=115200,8n1 dom0_mem=256M,max:256M dom0_max_vcpus=2 smap=hvm";

/// When each milestone's line arrived, in seconds since QEMU started.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timeline {
    /// The hypervisor's first line.
    pub first: f64,
    /// dom0's `Linux version`.
    pub linux: f64,
    /// dom0's `/init` reached userspace.
    pub user: f64,
    /// dom0 powered the machine off (`reboot: Power down`).
    pub end: f64,
}

impl Timeline {
    pub fn boot(&self) -> f64 {
        self.linux - self.first
    }
    pub fn kernel(&self) -> f64 {
        self.user - self.linux
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypervisor {
    Keel,
    Xen,
}

impl Hypervisor {
    /// Is `line` this hypervisor's first console line?
    fn is_first(self, line: &str) -> bool {
        match self {
            Hypervisor::Keel => line.contains("(XEN) keel ") && line.contains(" starting"),
            // Xen's banner (figlet "Xen 4.17"), or its version line with a
            // banner-less console.
            Hypervisor::Xen => line.starts_with(" __  __") || line.contains("(XEN) Xen version"),
        }
    }
}

/// The milestones in `lines` ((seconds, line) as they arrived), or which
/// one is missing.
pub fn timeline(hv: Hypervisor, lines: &[(f64, String)]) -> Result<Timeline> {
    let find = |what: &str, f: &dyn Fn(&str) -> bool| {
        lines
            .iter()
            .find(|(_, l)| f(l))
            .map(|(t, _)| *t)
            .ok_or(format!("no {what} line on the console"))
    };
    let first = find("first hypervisor", &|l| hv.is_first(l))?;
    let linux = find("`Linux version`", &|l| l.contains("] Linux version "))?;
    let user = find("`KEEL-LINUX: userspace reached`", &|l| {
        l.contains("KEEL-LINUX: userspace reached")
    })?;
    let end = find("`reboot: Power down`", &|l| {
        l.contains("reboot: Power down")
    })?;
    if !(first <= linux && linux <= user && user <= end) {
        return Err(format!(
            "milestones out of order: first {first:.3}, Linux {linux:.3}, userspace {user:.3}, end {end:.3}"
        ));
    }
    Ok(Timeline {
        first,
        linux,
        user,
        end,
    })
}

/// Boots `iso` under QEMU and returns its serial lines with their arrival
/// times; ends at power-off (or `TIMEOUT`). The log goes to `log` too.
fn timed_boot(iso: &Path, log: &Path) -> Result<Vec<(f64, String)>> {
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", keel_harness::emulator::tcg_accel(false)])
        .args(["-cpu", QEMU_CPU])
        .args(["-smp", &CPUS.to_string(), "-m", &MEMORY_MIB.to_string()])
        .args(["-nodefaults", "-display", "none", "-no-reboot"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .args(["-serial", "stdio"])
        .arg("-cdrom")
        .arg(iso)
        .args(["-boot", "d"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("qemu-system-x86_64: {e}"))?;
    let start = Instant::now();
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            let t = start.elapsed().as_secs_f64();
            for &b in &buf[..n] {
                if b == b'\n' {
                    let s = String::from_utf8_lossy(&line).trim_end().to_string();
                    if tx.send((t, s)).is_err() {
                        return;
                    }
                    line.clear();
                } else {
                    line.push(b);
                }
            }
        }
        if !line.is_empty() {
            let _ = tx.send((
                start.elapsed().as_secs_f64(),
                String::from_utf8_lossy(&line).to_string(),
            ));
        }
    });
    let mut lines = Vec::new();
    let mut powered_off: Option<Instant> = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok((t, l)) => {
                if l.contains("reboot: Power down") && powered_off.is_none() {
                    powered_off = Some(Instant::now());
                }
                lines.push((t, l));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        // A hypervisor that does not turn QEMU off after dom0's power-off
        // has 10 s; the measurement ends at dom0's line anyway.
        if start.elapsed() > TIMEOUT || powered_off.is_some_and(|t| t.elapsed().as_secs() >= 10) {
            let _ = child.kill();
            break;
        }
    }
    let _ = child.wait();
    let text: String = lines
        .iter()
        .map(|(t, l)| format!("[{t:8.3}] {l}\n"))
        .collect();
    std::fs::write(log, text).map_err(|e| format!("{}: {e}", log.display()))?;
    Ok(lines)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs the comparison; returns the Markdown section.
pub fn bench(keel_elf: &Path, work: &Path) -> Result<String> {
    let code = linux::cmd_linux(&[])?;
    if code != 0 {
        return Err("cargo xtask linux failed".into());
    }
    let (xen, xen_version) = linux::fetch_xen()?;
    let dir = crate::root().join("target/keel/linux");
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let vmlinux = read(&dir.join("vmlinux"))?;
    let initrd = read(&dir.join("initrd.cpio.gz"))?;
    std::fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;

    let keel_iso = work.join("boot-keel.iso");
    images::grub_iso(
        keel_elf,
        KEEL_CMDLINE,
        &[
            ("dom0".into(), vmlinux.clone()),
            ("dom0-initrd".into(), initrd.clone()),
            (
                "dom0-cmdline".into(),
                keel_harness::scenario::DOM0_CMDLINE.as_bytes().to_vec(),
            ),
        ],
        &keel_iso,
    )?;
    let xen_iso = work.join("boot-xen.iso");
    // Xen takes the kernel's command line from its module line after a
    // first word (GRUB passes no file name; Debian's grub.d writes
    // "placeholder" there).
    let cfg = images::grub_cfg_entry(
        "Xen 4.17",
        "xen.gz",
        XEN_CMDLINE,
        &[
            (
                "vmlinux",
                &format!("placeholder {}", keel_harness::scenario::DOM0_CMDLINE),
            ),
            ("initrd", "initrd"),
        ],
    )?;
    images::grub_iso_files(
        ("xen.gz", &read(&xen)?),
        &[("vmlinux", &vmlinux), ("initrd", &initrd)],
        &cfg,
        &xen_iso,
    )?;

    let mut keel = Vec::new();
    let mut xenr = Vec::new();
    for round in 1..=ROUNDS {
        for (hv, iso, v) in [
            (Hypervisor::Keel, &keel_iso, &mut keel),
            (Hypervisor::Xen, &xen_iso, &mut xenr),
        ] {
            let name = match hv {
                Hypervisor::Keel => "keel",
                Hypervisor::Xen => "xen",
            };
            let log = work.join(format!("boot-{name}-{round}.serial.log"));
            eprintln!(
                "==> bench boot {round}/{ROUNDS}: {name} + Debian's kernel as dom0 under QEMU TCG -cpu {QEMU_CPU}"
            );
            let lines = timed_boot(iso, &log)?;
            let t =
                timeline(hv, &lines).map_err(|e| format!("{name}: {e} (see {})", log.display()))?;
            eprintln!(
                "    first line {:.2} s, Linux version {:.2} s, userspace {:.2} s, power-off {:.2} s",
                t.first, t.linux, t.user, t.end
            );
            v.push(t);
        }
    }
    Ok(section(&keel, &xenr, &xen_version))
}

/// The Markdown section for `keel` and `xen` timelines (medians of each
/// column; the individual runs listed under the table).
pub fn section(keel: &[Timeline], xen: &[Timeline], xen_version: &str) -> String {
    type Interval = fn(&Timeline) -> f64;
    let col = |v: &[Timeline], f: Interval| median(v.iter().map(f).collect());
    let rows: [(&str, Interval); 3] = [
        (
            "hypervisor's first line → dom0 `Linux version`",
            Timeline::boot,
        ),
        (
            "dom0 `Linux version` → userspace (`/init` runs)",
            Timeline::kernel,
        ),
        ("whole run: QEMU start → dom0's power-off", |t| t.end),
    ];
    let mut out = format!(
        "## Boot against Xen 4.17\n\n\
         `cargo xtask bench` boots the same Debian kernel and initramfs (those of the Linux boot \
         above) as dom0 with 256 MiB and 2 vCPUs under keel and under Debian's Xen 4.17 \
         (`xen-hypervisor-4.17-amd64` {xen_version}), each from its own GRUB ISO, under the same \
         QEMU command line (TCG, `-cpu {QEMU_CPU} -smp {CPUS} -m {MEMORY_MIB}`), {ROUNDS} times \
         each in turns; every serial line is timestamped as it arrives. Medians of the {ROUNDS} \
         runs. keel: `{KEEL_CMDLINE}`, dom0 as **PVH**. Xen: `{XEN_CMDLINE}`, dom0 as **PV** \
         (Xen 4.17's PVH dom0 needs an IOMMU, which this machine lacks), so the kernel-boot row \
         compares a PVH boot with a PV one. **Emulated figures.**\n\n\
         | interval | keel | Xen 4.17 | keel/Xen |\n|---|---:|---:|---:|\n"
    );
    for (what, f) in rows {
        let (k, x) = (col(keel, f), col(xen, f));
        out += &format!("| {what} | {k:.2} s | {x:.2} s | {:.2} |\n", k / x);
    }
    out += "\nRuns (first line / `Linux version` / userspace / power-off, seconds from QEMU's start):\n\n";
    for (name, v) in [("keel", keel), ("Xen 4.17", xen)] {
        let runs: Vec<String> = v
            .iter()
            .map(|t| {
                format!(
                    "{:.2} / {:.2} / {:.2} / {:.2}",
                    t.first, t.linux, t.user, t.end
                )
            })
            .collect();
        out += &format!("- {name}: {}\n", runs.join("; "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[(f64, &str)]) -> Vec<(f64, String)> {
        v.iter().map(|(t, l)| (*t, l.to_string())).collect()
    }

    #[test]
    fn milestones_from_each_hypervisors_console() {
        let keel = lines(&[
            (0.5, "  Booting `keel'"),
            (1.0, "(XEN) keel 0.1.0 (Xen-ABI hypervisor) starting"),
            (
                1.6,
                "[    0.000000] Linux version 6.1.0-57-amd64 (debian-kernel@...)",
            ),
            (4.0, "KEEL-LINUX: userspace reached"),
            (6.0, "[    5.1] reboot: Power down"),
        ]);
        let t = timeline(Hypervisor::Keel, &keel).unwrap();
        assert_eq!((t.first, t.linux, t.user, t.end), (1.0, 1.6, 4.0, 6.0));
        assert!((t.boot() - 0.6).abs() < 1e-9 && (t.kernel() - 2.4).abs() < 1e-9);
        // keel's banner does not count as Xen's, and the other way round.
        assert!(timeline(Hypervisor::Xen, &keel).is_err());
        let xen = lines(&[
            (0.9, " __  __            _  _    _ _____"),
            (1.0, "(XEN) Xen version 4.17.5 (Debian 4.17.5+...)"),
            (2.0, "[    0.000000] Linux version 6.1.0-57-amd64"),
            (5.0, "KEEL-LINUX: userspace reached"),
            (7.0, "[    6.0] reboot: Power down"),
        ]);
        assert_eq!(timeline(Hypervisor::Xen, &xen).unwrap().first, 0.9);
        assert!(timeline(Hypervisor::Keel, &xen).is_err());
        // A run that never reached userspace is an error, not a figure.
        let cut = &xen[..3];
        assert!(timeline(Hypervisor::Xen, cut)
            .unwrap_err()
            .contains("userspace"));
    }

    #[test]
    fn section_has_medians_and_ratios() {
        let t = |first, linux, user, end| Timeline {
            first,
            linux,
            user,
            end,
        };
        let keel = [
            t(1.0, 1.5, 4.0, 6.0),
            t(1.0, 1.6, 4.0, 6.0),
            t(1.0, 9.0, 12.0, 14.0),
        ];
        let xen = [
            t(1.0, 2.0, 5.0, 8.0),
            t(1.0, 2.2, 5.0, 8.0),
            t(1.0, 2.1, 5.0, 8.0),
        ];
        let s = section(&keel, &xen, "4.17.5");
        // medians: keel boot 0.6, Xen boot 1.1
        assert!(
            s.contains(
                "| hypervisor's first line → dom0 `Linux version` | 0.60 s | 1.10 s | 0.55 |"
            ),
            "{s}"
        );
        assert!(
            s.contains("| whole run: QEMU start → dom0's power-off | 6.00 s | 8.00 s | 0.75 |"),
            "{s}"
        );
        assert!(s.contains("- keel: 1.00 / 1.50 / 4.00 / 6.00; "));
        assert!(s.contains("**PV**"));
    }
}
