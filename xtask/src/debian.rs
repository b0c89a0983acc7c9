//! The Debian server scenarios: keel installed on a Debian 12 system the way
//! `docs/install.md` says, booted by the system's own GRUB (BIOS, then UEFI),
//! with the system as dom0.
//!
//! 1. **Base image** (cached in `target/keel/debian/`, rebuilt when its
//!    recipe changes): `debootstrap` of bookworm from deb.debian.org (the
//!    minimal variant plus a kernel, systemd, udev and GRUB for BIOS and
//!    EFI) into a root file system, written into a GPT disk image (BIOS boot
//!    partition, EFI system partition, ext4 root) with `mke2fs -d` and
//!    `mkfs.fat`; then one boot of the image's kernel under QEMU runs
//!    `grub-install` for both platforms and `update-grub`, as a Debian
//!    installer would have. The result: a plain Debian server.
//! 2. **Scenario** (a copy of the base image): boot it through its GRUB, log
//!    in on the serial console, install keel's package from a second disk
//!    (`apt-get install ./keel_*.deb`, which runs `update-grub`), reboot:
//!    GRUB now starts keel with the system's kernel and initrd as dom0. Log
//!    in again on dom0's console and check: systemd's multi-user target,
//!    the root file system on the disk, keel's dom0 services, `keelctl info`
//!    and `keelctl list`, a clean kernel log; then `systemctl poweroff`.
//!
//! Root is needed to build the base image (debootstrap, chroot); as another
//! user the privileged steps run through sudo.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use keel_harness::emulator::{OVMF_CODE, OVMF_VARS};
use keel_harness::host;
use keel_harness::markers::Console;
use keel_harness::runner::{Record, Report};
use keel_harness::scenario::{Emulator, Exit, Firmware, Scenario, Status, Vendor, Verdict};
use keel_harness::session::{self, Session};

use crate::linux::{fnv, mkdir, run_status, write_atomic};

type Result<T> = std::result::Result<T, String>;

pub const SUITE: &str = "bookworm";
pub const MIRROR: &str = "http://deb.debian.org/debian";
/// On top of debootstrap's minimal variant: what a server needs to boot
/// (kernel, initramfs-tools, systemd as init, udev) and GRUB for both
/// firmwares (the `-bin` packages: `grub-pc` would run grub-install in the
/// chroot, where there is no disk).
pub const PACKAGES: &[&str] = &[
    "linux-image-amd64",
    "initramfs-tools",
    "systemd-sysv",
    "udev",
    "grub2-common",
    "grub-pc-bin",
    "grub-efi-amd64-bin",
];
/// Host packages the image build and the scenarios use.
pub const HOST_PACKAGES: &[&str] = &[
    "debootstrap",
    "fdisk",
    "dosfstools",
    "e2fsprogs",
    "qemu-system-x86",
    "ovmf",
];

pub const HOSTNAME: &str = "keel-debian";
/// root's password in the test image (nothing else uses the image, and it
/// has no network).
pub const ROOT_PASSWORD: &str = "keel";
pub const ROOT_UUID: &str = "6b65656c-0000-4000-8000-000000000016";
/// The ESP's FAT volume id (fstab: `UUID=4B45-454C`).
pub const ESP_ID: &str = "4B45454C";
const ESP_UUID: &str = "4B45-454C";

const MIB_SECTORS: u64 = 2048;
/// GPT layout, in 512-byte sectors: BIOS boot (GRUB's core.img) at 1 MiB,
/// the ESP at 2 MiB (64 MiB), root from 66 MiB to 1 MiB before the end.
pub const DISK_MIB: u64 = 3072;
const BIOS_START: u64 = MIB_SECTORS;
const ESP_START: u64 = 2 * MIB_SECTORS;
const ESP_SECTORS: u64 = 64 * MIB_SECTORS;
const ROOT_START: u64 = ESP_START + ESP_SECTORS;
const ROOT_SECTORS: u64 = DISK_MIB * MIB_SECTORS - ROOT_START - MIB_SECTORS;

/// The sfdisk script of the test disk.
pub fn sfdisk_script() -> String {
    format!(
        "label: gpt\nunit: sectors\n\
         start={BIOS_START}, size={MIB_SECTORS}, type=21686148-6449-6E6F-744E-656564454649, name=\"bios\"\n\
         start={ESP_START}, size={ESP_SECTORS}, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"esp\"\n\
         start={ROOT_START}, size={ROOT_SECTORS}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"root\"\n"
    )
}

/// Installs GRUB on the image's first boot, as the Debian installer does,
/// then powers off.
const FIRSTBOOT: &str = r#"#!/bin/sh
# keel test image, first boot: GRUB for BIOS and UEFI, grub.cfg, power off.
set -eux
grub-install --target=i386-pc /dev/vda
grub-install --target=x86_64-efi --efi-directory=/boot/efi --removable --no-nvram
update-grub
rm -f /etc/keel-image-firstboot
systemctl disable keel-image-firstboot.service
echo "KEEL-IMAGE: GRUB installed"
systemctl --no-block poweroff
"#;

const FIRSTBOOT_UNIT: &str = "[Unit]
Description=keel test image: install GRUB (BIOS and UEFI) and power off
ConditionPathExists=/etc/keel-image-firstboot
After=local-fs.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/keel-image-firstboot
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
";

/// Runs in the chroot after debootstrap: the system's identity, file
/// systems, root's password, GRUB's settings (serial console, a one-second
/// menu, the kernel's log on the console: `quiet` is dropped) and the
/// first-boot unit.
fn configure_script() -> String {
    format!(
        r#"set -eu
echo {HOSTNAME} > /etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n' > /etc/hosts
cat > /etc/fstab <<EOF
UUID={ROOT_UUID} / ext4 errors=remount-ro 0 1
UUID={ESP_UUID} /boot/efi vfat umask=0077,nofail 0 0
EOF
mkdir -p /boot/efi
echo 'root:{ROOT_PASSWORD}' | chpasswd
cp /usr/share/grub/default/grub /etc/default/grub
sed -i -e 's/^GRUB_TIMEOUT=.*/GRUB_TIMEOUT=1/' \
    -e 's/^GRUB_CMDLINE_LINUX_DEFAULT=.*/GRUB_CMDLINE_LINUX_DEFAULT=""/' \
    -e 's/^GRUB_CMDLINE_LINUX=.*/GRUB_CMDLINE_LINUX="console=ttyS0,115200n8"/' /etc/default/grub
cat >> /etc/default/grub <<EOF
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
EOF
cat > /usr/local/sbin/keel-image-firstboot <<'EOF'
{FIRSTBOOT}EOF
chmod 755 /usr/local/sbin/keel-image-firstboot
cat > /etc/systemd/system/keel-image-firstboot.service <<'EOF'
{FIRSTBOOT_UNIT}EOF
ln -sf /etc/systemd/system/keel-image-firstboot.service \
    /etc/systemd/system/multi-user.target.wants/keel-image-firstboot.service
touch /etc/keel-image-firstboot
apt-get clean
"#
    )
}

/// Everything the base image is made from: a change rebuilds it.
fn recipe() -> String {
    format!(
        "v1\n{SUITE} {MIRROR}\n{}\n{}\n{}",
        PACKAGES.join(","),
        sfdisk_script(),
        configure_script()
    )
}

/// The base image, built now or taken from the cache.
pub struct BaseImage {
    pub disk: PathBuf,
    /// e.g. `6.1.0-50-amd64`.
    pub kernel: String,
}

fn secs(t: Instant) -> String {
    format!("{:.0}s", t.elapsed().as_secs_f64())
}

/// `target/keel/debian/base.img`: cached when its stamp matches the recipe.
pub fn base_image(dir: &Path) -> Result<BaseImage> {
    mkdir(dir)?;
    let disk = dir.join("base.img");
    let stamp = dir.join("base.stamp");
    let want = format!("{:016x}\n", fnv(recipe().as_bytes()));
    let kernel_file = dir.join("base.kernel");
    if disk.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
        let kernel = std::fs::read_to_string(&kernel_file)
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        eprintln!(
            "==> Debian image: cached ({}, Linux {kernel})",
            disk.display()
        );
        return Ok(BaseImage { disk, kernel });
    }
    let t_all = Instant::now();
    host::ensure_packages(HOST_PACKAGES)?;
    let _ = std::fs::remove_file(&stamp);
    let rootfs = dir.join("rootfs");
    let debs = dir.join("debs");
    mkdir(&debs)?;
    if rootfs.exists() {
        let mut c = host::as_root("rm", "removing the old image root file system")?;
        c.arg("-rf").arg(&rootfs);
        run_status(&mut c, "rm -rf rootfs")?;
    }

    // 1. debootstrap (its own progress: one line per package).
    let t = Instant::now();
    eprintln!(
        "==> Debian image 1/4: debootstrap --variant=minbase {SUITE} from {MIRROR} (+ {}); \
         packages cached in {}",
        PACKAGES.join(" "),
        debs.display()
    );
    let mut c = host::as_root("debootstrap", "building the Debian test image")?;
    c.arg("--variant=minbase")
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(format!(
            "--cache-dir={}",
            debs.canonicalize().unwrap().display()
        ))
        .arg(SUITE)
        .arg(&rootfs)
        .arg(MIRROR)
        .env("DEBIAN_FRONTEND", "noninteractive");
    run_status(&mut c, "debootstrap")?;
    eprintln!("    debootstrap done in {}", secs(t));

    // 2. The system's configuration, in the chroot.
    let t = Instant::now();
    eprintln!("==> Debian image 2/4: configuring (hostname, fstab, root password, GRUB settings)");
    let mut c = host::as_root("chroot", "configuring the Debian test image")?;
    c.arg(&rootfs)
        .args(["/bin/sh", "-c", &configure_script()])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C");
    run_status(&mut c, "configuring the image (chroot)")?;
    let kernel = std::fs::read_dir(rootfs.join("boot"))
        .map_err(|e| format!("{}/boot: {e}", rootfs.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("vmlinuz-"))
                .map(str::to_string)
        })
        .max()
        .ok_or("debootstrap installed no kernel (no /boot/vmlinuz-*)")?;
    eprintln!("    Linux {kernel}; configured in {}", secs(t));

    // 3. The disk: GPT, FAT ESP, ext4 root filled from the tree.
    let t = Instant::now();
    eprintln!("==> Debian image 3/4: {DISK_MIB} MiB GPT disk (BIOS boot, ESP, ext4 root)");
    let tmp = dir.join("base.img.tmp");
    let _ = std::fs::remove_file(&tmp);
    std::fs::File::create(&tmp)
        .and_then(|f| f.set_len(DISK_MIB << 20))
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    let mut c = Command::new("sfdisk");
    c.arg("-q").arg(&tmp);
    stdin_status(c, &sfdisk_script(), "sfdisk")?;
    let mut c = Command::new("mkfs.fat");
    c.args(["-F", "32", "-s", "1", "-n", "KEELESP", "-i", ESP_ID])
        .arg(format!("--offset={ESP_START}"))
        .arg(&tmp)
        .arg((ESP_SECTORS / 2).to_string());
    quiet_status(c, "mkfs.fat")?;
    // mke2fs reads the whole tree, root's files included.
    let mut c = host::as_root("mke2fs", "writing the image's root file system")?;
    c.args(["-q", "-t", "ext4", "-L", "keel-root", "-U", ROOT_UUID, "-d"])
        .arg(&rootfs)
        .arg("-E")
        .arg(format!("offset={}", ROOT_START * 512))
        .arg(&tmp)
        .arg(format!("{}k", ROOT_SECTORS / 2));
    quiet_status(c, "mke2fs -d")?;
    let vmlinuz = dir.join("base.vmlinuz");
    let initrd = dir.join("base.initrd");
    for (from, to) in [
        (format!("vmlinuz-{kernel}"), &vmlinuz),
        (format!("initrd.img-{kernel}"), &initrd),
    ] {
        std::fs::copy(rootfs.join("boot").join(&from), to).map_err(|e| format!("{from}: {e}"))?;
    }
    eprintln!("    disk written in {}", secs(t));

    // 4. First boot: GRUB into the image.
    let t = Instant::now();
    eprintln!(
        "==> Debian image 4/4: first boot (QEMU TCG, the image's kernel): grub-install for \
         BIOS and EFI, update-grub"
    );
    let work = dir.join("firstboot");
    let _ = std::fs::remove_dir_all(&work);
    mkdir(&work)?;
    first_boot(&tmp, &vmlinuz, &initrd, &work)?;
    eprintln!("    GRUB installed in {}", secs(t));

    let mut c = host::as_root("rm", "removing the image root file system")?;
    c.arg("-rf").arg(&rootfs);
    run_status(&mut c, "rm -rf rootfs")?;
    std::fs::rename(&tmp, &disk).map_err(|e| format!("{}: {e}", disk.display()))?;
    write_atomic(&kernel_file, format!("{kernel}\n").as_bytes())?;
    write_atomic(&stamp, want.as_bytes())?;
    eprintln!(
        "==> Debian image ready in {} ({})",
        secs(t_all),
        disk.display()
    );
    Ok(BaseImage { disk, kernel })
}

fn stdin_status(mut c: Command, input: &str, what: &str) -> Result<()> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = c
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .map_err(|e| format!("{what}: {e}"))?;
    let st = child.wait().map_err(|e| format!("{what}: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({st})"))
    }
}

fn quiet_status(mut c: Command, what: &str) -> Result<()> {
    let o = c.output().map_err(|e| format!("cannot run {what}: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout).trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// QEMU for the test machine: TCG `-cpu EPYC` (AMD-V + NPT), 2 CPUs, 2 GiB,
/// the system disk as virtio-blk (`/dev/vda`), COM1 on the session socket,
/// no network card. A VGA device for SeaBIOS (GRUB and SeaBIOS want one);
/// none under OVMF, whose console is then the serial line alone (with a
/// graphical console, GRUB's menu takes a minute to draw under TCG).
fn qemu(disk: &Path, uefi: Option<&Path>, sock: &Path) -> Command {
    let mut c = Command::new("qemu-system-x86_64");
    c.args([
        "-accel",
        keel_harness::emulator::tcg_accel(true),
        "-cpu",
        "EPYC",
    ])
    .args(["-smp", "2", "-m", "2048"])
    .args(["-nodefaults", "-display", "none"]);
    if uefi.is_none() {
        c.args(["-vga", "std"]);
    }
    c.arg("-drive")
        .arg(format!("if=none,id=sys,format=raw,file={}", disk.display()))
        .args(["-device", "virtio-blk-pci,drive=sys,bootindex=1"]);
    if let Some(vars) = uefi {
        c.arg("-drive")
            .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"))
            .arg("-drive")
            .arg(format!("if=pflash,format=raw,file={}", vars.display()));
    }
    c.args(session::qemu_serial_args(sock));
    c
}

/// Patterns that end a Debian boot at once: nothing good follows them.
const FATAL: &[&str] = &[
    "Kernel panic",
    "(initramfs) ",
    "You are in emergency mode",
    "Give root password for maintenance",
    "*** FATAL",
    "error: file `",
    "error: no such device",
];

fn new_session(cmd: Command, work: &Path) -> Result<Session> {
    let sock = session::socket_path(work);
    let mut s = Session::start(
        cmd,
        &sock,
        &work.join("serial.log"),
        &work.join("emulator.log"),
    )?;
    s.fatal = FATAL.iter().map(|f| f.to_string()).collect();
    Ok(s)
}

fn first_boot(disk: &Path, vmlinuz: &Path, initrd: &Path, work: &Path) -> Result<()> {
    let sock = session::socket_path(work);
    let mut c = qemu(disk, None, &sock);
    c.arg("-no-reboot")
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(format!("root=UUID={ROOT_UUID} ro console=ttyS0,115200n8"));
    let mut s = new_session(c, work)?;
    let steps: &[(&str, &str, u64)] = &[
        ("Run /init", "kernel booted", 180),
        (
            "Installing for i386-pc",
            "grub-install --target=i386-pc",
            300,
        ),
        (
            "Installing for x86_64-efi",
            "grub-install --target=x86_64-efi",
            300,
        ),
        ("Generating grub configuration file", "update-grub", 300),
        ("KEEL-IMAGE: GRUB installed", "done", 300),
        ("reboot: Power down", "powered off", 120),
    ];
    for (pat, what, secs) in steps {
        s.expect(pat, Duration::from_secs(*secs)).map_err(|e| {
            format!(
                "the image's first boot stopped before '{pat}': {e}; see {}",
                work.join("serial.log").display()
            )
        })?;
        eprintln!("    {:>5.0}s  {what}", s.elapsed().as_secs_f64());
    }
    match s.wait_exit(Duration::from_secs(30)) {
        Ok(Some(0)) => Ok(()),
        Ok(c) => Err(format!("QEMU ended the first boot with {c:?}")),
        Err(e) => Err(format!("QEMU did not exit after the power-off: {e}")),
    }
}

// ------------------------------------------------------------------ scenarios

/// The Debian scenarios, for `cargo xtask test --list/--only`.
pub fn scenarios() -> Vec<Scenario> {
    let checks = "dom0 = the installed system: multi-user target, root on the disk, \
                  keel-xenstored, keelctl info/list from a login shell, clean kernel log, \
                  systemctl poweroff";
    [
        (
            "qemu-debian-bios",
            Firmware::Bios,
            format!(
                "Debian 12 server image, BIOS, its own GRUB: keel's .deb installed as \
                 docs/install.md says, reboot into keel; {checks}"
            ),
        ),
        (
            "qemu-debian-uefi",
            Firmware::Uefi,
            format!(
                "the same installed system under OVMF, its own GRUB EFI (run alone: installs \
                 keel first, booted by UEFI); {checks}"
            ),
        ),
    ]
    .into_iter()
    .map(|(name, fw, what)| {
        let mut s = Scenario::boot(name, Emulator::Qemu, Vendor::Amd, fw, 2).describe(&what);
        // The whole run, every step together (each step has its own bound).
        s.timeout = Duration::from_secs(30 * 60);
        s.memory_mib = 2048;
        s.cmdline = "(from /etc/default/keel)".into();
        s
    })
    .collect()
}

/// A command typed in dom0's login shell and what its output must hold.
pub struct Check {
    pub what: &'static str,
    pub cmd: &'static str,
    /// Exit status wanted.
    pub rc: i32,
    /// Lines (trimmed) the output must contain, each exactly.
    pub lines: &'static [&'static str],
    /// Substrings the output must contain.
    pub contains: &'static [&'static str],
}

/// dom0's checks, in order (after the login).
pub const CHECKS: &[Check] = &[
    Check {
        what: "systemd reached its multi-user target with no failed unit",
        cmd: "systemctl is-system-running --wait; systemctl is-active multi-user.target; \
              systemctl --failed --no-legend --no-pager",
        rc: 0,
        lines: &["running", "active"],
        contains: &[],
    },
    Check {
        what: "the root file system is the disk's ext4",
        cmd: "findmnt -n -o SOURCE,FSTYPE /",
        rc: 0,
        lines: &["/dev/vda3 ext4"],
        contains: &[],
    },
    Check {
        what: "Linux runs on a Xen-ABI hypervisor",
        cmd: "cat /sys/hypervisor/type",
        rc: 0,
        lines: &["xen"],
        contains: &[],
    },
    Check {
        what: "keel's dom0 services run (systemd units from keel's package)",
        cmd: "systemctl is-active keel-dom0.service keel-xenstored.service keel-consoled.service",
        rc: 0,
        lines: &["active"],
        contains: &[],
    },
    Check {
        what: "keelctl info",
        cmd: "keelctl info",
        rc: 0,
        lines: &[],
        contains: &[
            "hypervisor            : keel",
            "cpu_vendor            : AuthenticAMD",
            "nr_cpus               : 2",
            "scheduler             : credit",
        ],
    },
    Check {
        what: "keelctl list",
        cmd: "keelctl list",
        rc: 0,
        lines: &[],
        contains: &["Name", "Domain-0"],
    },
    Check {
        what: "dom0's kernel log has no WARNING, BUG or taint",
        cmd: "dmesg | grep -E 'WARNING:|BUG:|Tainted: |kernel taint' | grep -v \
              'Speculative Return Stack Overflow: WARNING: See' | tee /tmp/keel-warnings | head \
              -20; echo tainted=$(cat /proc/sys/kernel/tainted) warnings=$(grep -c . \
              /tmp/keel-warnings)",
        rc: 0,
        lines: &["tainted=0 warnings=0"],
        contains: &[],
    },
];

/// Marker after each typed command: `@@KEEL-RC <status>`. Typed as
/// `"@@KEEL""-RC $?"` so that an echoed command line never matches it.
const RC: &str = "@@KEEL-RC ";

/// `text` without ANSI escape sequences (bash's bracketed-paste switches,
/// colours).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut it = text.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if it.peek() == Some(&'[') {
            it.next();
            // Parameters, then one final byte in @..~.
            for c in it.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            it.next();
        }
    }
    out
}

/// What a command printed: its output lines (trimmed, without escape
/// sequences and without the blank line its Enter left) up to the marker,
/// and the marker's status.
pub fn command_output(text: &str) -> (Vec<String>, Option<i32>) {
    let mut lines = Vec::new();
    for l in strip_ansi(text).split('\n') {
        let l = l.trim_matches(|c: char| c == '\r' || c.is_whitespace());
        if let Some(at) = l.find(RC) {
            let rc = l[at + RC.len()..].trim().parse().ok();
            return (lines, rc);
        }
        if lines.is_empty() && l.is_empty() {
            continue;
        }
        lines.push(l.to_string());
    }
    (lines, None)
}

/// Whether a check's output and status are what it wants; the reason if not.
pub fn judge(c: &Check, lines: &[String], rc: Option<i32>) -> std::result::Result<(), String> {
    if rc != Some(c.rc) {
        return Err(format!(
            "{}: `{}` exited {rc:?}, want {}; printed: {}",
            c.what,
            c.cmd,
            c.rc,
            lines.join(" | ")
        ));
    }
    for want in c.lines {
        if !lines.iter().any(|l| l == want) {
            return Err(format!(
                "{}: no line '{want}' from `{}`; printed: {}",
                c.what,
                c.cmd,
                lines.join(" | ")
            ));
        }
    }
    for want in c.contains {
        if !lines.iter().any(|l| l.contains(want)) {
            return Err(format!(
                "{}: nothing with '{want}' from `{}`; printed: {}",
                c.what,
                c.cmd,
                lines.join(" | ")
            ));
        }
    }
    Ok(())
}

/// `keelctl list`'s dom0 row: (id, MiB, vCPUs, state).
pub fn dom0_row(lines: &[String]) -> Option<(u32, u64, u32, String)> {
    let l = lines.iter().find(|l| l.starts_with("Domain-0 "))?;
    let f: Vec<&str> = l.split_whitespace().collect();
    Some((
        f.get(1)?.parse().ok()?,
        f.get(2)?.parse().ok()?,
        f.get(3)?.parse().ok()?,
        f.get(4)?.to_string(),
    ))
}

/// Kernel log lines that are not evidence against keel: QEMU's `EPYC` model
/// has the SRSO bug and no microcode for it, and Debian's kernel says so
/// with a "WARNING:" whatever runs it (the plain boot prints it too).
pub const BENIGN: &[&str] = &["Speculative Return Stack Overflow: WARNING: See"];

/// dom0's kernel lines on the console (after keel started it) that report
/// a kernel warning, bug or taint: the kernel's own evidence against a run.
pub fn kernel_complaints(console: &str) -> Vec<String> {
    let Some(start) = console.find("d0: PVH kernel entry") else {
        return Vec::new();
    };
    console[start..]
        .split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.contains("(XEN) "))
        .filter(|l| {
            l.contains("WARNING:")
                || l.contains("BUG:")
                || l.contains(" Tainted: ")
                || l.contains("kernel taint")
        })
        .filter(|l| !BENIGN.iter().any(|b| l.contains(b)))
        .map(str::to_string)
        .collect()
}

/// Runs one Debian scenario: a fresh copy of the base image, keel installed
/// and booted under `firmware` (Bios or Uefi). With `installed` (the disk a
/// previous scenario installed keel on, in this run), it boots a copy of
/// that disk straight into keel instead: the same installed system under
/// the other firmware, without a second install. Returns the report and,
/// if keel's install succeeded, the disk it is on.
pub fn run(
    s: &Scenario,
    base: &BaseImage,
    deb: &Path,
    work_root: &Path,
    installed: Option<&Path>,
) -> (Report, Option<PathBuf>) {
    let work = work_root.join(&s.name);
    let t0 = Instant::now();
    let _ = std::fs::remove_dir_all(&work);
    let mut console = String::new();
    let mut exit = Exit::Stopped;
    let mut prepare = Duration::ZERO;
    let mut wall = Duration::ZERO;
    let disk = work.join("disk.img");
    let mut install_ok = false;
    let r = (|| -> Result<String> {
        mkdir(&work)?;
        let mut c = Command::new("cp");
        c.arg("--sparse=always")
            .arg(installed.unwrap_or(&base.disk))
            .arg(&disk);
        quiet_status(c, "copying the disk image")?;
        let inst = work.join("install");
        mkdir(&inst)?;
        let deb_name = deb.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::copy(deb, inst.join(&deb_name)).map_err(|e| format!("{deb_name}: {e}"))?;
        let inst_img = work.join("install.img");
        let mut c = Command::new("mke2fs");
        c.args(["-q", "-t", "ext4", "-L", "KEELINST", "-d"])
            .arg(&inst)
            .arg(&inst_img)
            .arg("64M");
        quiet_status(c, "mke2fs (install disk)")?;
        let uefi = s.firmware == Firmware::Uefi;
        let vars = work.join("OVMF_VARS_4M.fd");
        if uefi {
            std::fs::copy(OVMF_VARS, &vars)
                .map_err(|e| format!("{OVMF_VARS}: {e} (package ovmf)"))?;
        }
        let sock = session::socket_path(&work);
        let mut c = qemu(&disk, uefi.then_some(vars.as_path()), &sock);
        c.arg("-drive")
            .arg(format!(
                "if=none,id=inst,format=raw,readonly=on,file={}",
                inst_img.display()
            ))
            .args(["-device", "virtio-blk-pci,drive=inst"]);
        prepare = t0.elapsed();
        let mut sess = new_session(c, &work)?;
        sess.deadline = Some(sess.start + s.timeout);
        let res = drive(
            &mut sess,
            uefi,
            &deb_name,
            base,
            installed.is_some(),
            &mut install_ok,
        );
        wall = sess.elapsed();
        exit = match sess.wait_exit(Duration::from_secs(1)) {
            Ok(code) => Exit::Status(code),
            Err(_) => Exit::Stopped,
        };
        console = sess.text();
        res
    })();
    let verdict = match r {
        Ok(summary) => Verdict {
            status: Status::Passed,
            reason: summary,
        },
        Err(e) => Verdict {
            status: Status::Failed,
            reason: e,
        },
    };
    let report = Report {
        scenario: s.clone(),
        verdict,
        wall,
        prepare,
        record: Some(Record {
            console: Console::parse(&console),
            exit,
            wall,
        }),
        work_dir: work,
    };
    (report, install_ok.then_some(disk))
}

/// Logs in on the serial console (`login:`, password, shell prompt).
fn login(s: &mut Session, timeout: Duration) -> Result<()> {
    let prompt = format!("root@{HOSTNAME}:~# ");
    s.expect(&format!("{HOSTNAME} login: "), timeout)
        .map_err(|e| format!("no login prompt: {e}"))?;
    s.send("root\n")?;
    s.expect("Password: ", Duration::from_secs(60))
        .map_err(|e| format!("no password prompt: {e}"))?;
    s.send(&format!("{ROOT_PASSWORD}\n"))?;
    s.expect(&prompt, Duration::from_secs(120))
        .map_err(|e| format!("no shell prompt after logging in: {e}"))?;
    // No echo (command output stays clean), no wrapping of long lines, and
    // the kernel's messages off the console from now on (its log is checked
    // with dmesg).
    sh(
        s,
        "stty -echo cols 1000; dmesg -n 1",
        Duration::from_secs(60),
    )?;
    Ok(())
}

/// Types `cmd` in the shell; returns its output lines and exit status.
fn sh(s: &mut Session, cmd: &str, timeout: Duration) -> Result<(Vec<String>, Option<i32>)> {
    s.send(&format!("{cmd}; echo \"@@KEEL\"\"-RC $?\"\n"))?;
    let text = s
        .expect_any(&[RC], timeout)
        .map_err(|e| format!("`{cmd}`: {e}"))?
        .1;
    // Then the rest of the marker line and the next prompt.
    let rest = s
        .expect(&format!("root@{HOSTNAME}:~# "), Duration::from_secs(60))
        .map_err(|e| format!("`{cmd}`: no prompt after it: {e}"))?;
    let (mut lines, rc) = command_output(&format!("{text}{rest}"));
    // With echo on (before `stty -echo`), the first line is the command.
    if lines.first().is_some_and(|l| l.contains("@@KEEL\"\"-RC")) {
        lines.remove(0);
    }
    Ok((lines, rc))
}

fn drive(
    s: &mut Session,
    uefi: bool,
    deb_name: &str,
    base: &BaseImage,
    preinstalled: bool,
    install_ok: &mut bool,
) -> Result<String> {
    let mut phases: Vec<String> = Vec::new();
    let mut t = Instant::now();
    let mut phase = |what: &str, s: &Session| {
        let d = t.elapsed().as_secs_f64();
        eprintln!("    {:>5.0}s  {what} ({d:.0}s)", s.elapsed().as_secs_f64());
        phases.push(format!("{what} {d:.0}s"));
        t = Instant::now();
    };

    if preinstalled {
        phase("keel installed on this disk by qemu-debian-bios", s);
    } else {
        install(s, uefi, deb_name, base, &mut phase)?;
        *install_ok = true;
        // Reboot: GRUB's first entry is keel's now.
        s.send("systemctl reboot\n")?;
    }
    boot_and_check(s, uefi, &mut phase)?;
    Ok(format!("PASS: {}", phases.join(", ")))
}

/// The plain Debian system, booted by its GRUB: log in, install keel's
/// package as docs/install.md says.
fn install(
    s: &mut Session,
    uefi: bool,
    deb_name: &str,
    base: &BaseImage,
    phase: &mut dyn FnMut(&str, &Session),
) -> Result<()> {
    login(s, Duration::from_secs(900)).map_err(|e| format!("plain Debian boot: {e}"))?;
    let (fw, _) = sh(
        s,
        "[ -d /sys/firmware/efi ] && echo firmware=uefi || echo firmware=bios",
        Duration::from_secs(30),
    )?;
    let want_fw = if uefi {
        "firmware=uefi"
    } else {
        "firmware=bios"
    };
    if !fw.iter().any(|l| l == want_fw) {
        return Err(format!(
            "the plain system did not boot the expected way: {fw:?}, want {want_fw}"
        ));
    }
    phase("plain Debian booted, logged in", s);

    // docs/install.md: install the package; its postinst runs update-grub.
    let (out, rc) = sh(
        s,
        &format!(
            "mount -r /dev/vdb /mnt && apt-get install -y /mnt/{deb_name} 2>&1 | tail -25; \
             test ${{PIPESTATUS[0]}} -eq 0"
        ),
        Duration::from_secs(900),
    )?;
    if rc != Some(0) {
        return Err(format!(
            "apt-get install {deb_name} failed ({rc:?}): {}",
            out.join(" | ")
        ));
    }
    let found = format!("Found linux image for keel: /boot/vmlinuz-{}", base.kernel);
    if !out.iter().any(|l| l.contains(&found)) {
        return Err(format!(
            "update-grub (from the package's postinst) did not add a keel entry for {}: {}",
            base.kernel,
            out.join(" | ")
        ));
    }
    let (cfg, _) = sh(
        s,
        "umount /mnt; grep -m3 -E \"^menuentry|multiboot2|module2\" /boot/grub/grub.cfg",
        Duration::from_secs(30),
    )?;
    if !cfg
        .first()
        .is_some_and(|l| l.starts_with("menuentry 'Debian GNU/Linux, with keel hypervisor'"))
    {
        return Err(format!(
            "keel's entry is not the first of grub.cfg (GRUB's default): {cfg:?}"
        ));
    }
    phase("keel installed (apt-get install, update-grub)", s);
    Ok(())
}

/// GRUB's keel entry, keel, dom0 to its login prompt, the checks in dom0,
/// and the power-off.
fn boot_and_check(
    s: &mut Session,
    uefi: bool,
    phase: &mut dyn FnMut(&str, &Session),
) -> Result<()> {
    if uefi {
        // OVMF's boot manager starting the disk's removable-media GRUB.
        s.expect("BdsDxe: starting", Duration::from_secs(600))
            .map_err(|e| format!("OVMF did not start the disk's EFI loader: {e}"))?;
    }
    s.expect("Loading keel ...", Duration::from_secs(600))
        .map_err(|e| format!("GRUB did not load keel after the reboot: {e}"))?;
    s.expect("d0: PVH kernel entry", Duration::from_secs(600))
        .map_err(|e| format!("keel did not start dom0: {e}"))?;
    let line = s
        .expect("\n", Duration::from_secs(10))
        .map_err(|e| format!("keel's dom0 line: {e}"))?;
    let root = format!("root=UUID={ROOT_UUID} ro");
    if !line.contains(&root) || !line.contains("console=hvc0") || line.contains("initrd 0 bytes") {
        return Err(format!(
            "dom0's kernel command line or initrd is not what keel's GRUB entry passes \
             ({root} ... console=hvc0, the system's initrd): d0: PVH kernel entry{line}"
        ));
    }
    phase("keel started dom0 from the image's GRUB", s);
    login(s, Duration::from_secs(1200)).map_err(|e| format!("dom0 boot: {e}"))?;
    phase("dom0 (the installed system) booted, logged in", s);

    for c in CHECKS {
        let (lines, rc) = sh(s, c.cmd, Duration::from_secs(300))?;
        judge(c, &lines, rc)?;
        if c.cmd == "keelctl list" {
            match dom0_row(&lines) {
                Some((0, mib, 2, state))
                    if (1000..=1024).contains(&mib) && state.starts_with('r') => {}
                r => {
                    return Err(format!(
                        "keelctl list: dom0's row {r:?}, want id 0, ~1024 MiB \
                         (KEEL_DOM0_MEM), 2 vCPUs, running: {}",
                        lines.join(" | ")
                    ))
                }
            }
        }
        eprintln!("           ok: {}", c.what);
    }
    let bad = kernel_complaints(&s.text());
    if !bad.is_empty() {
        return Err(format!(
            "dom0's kernel log on the console: {}",
            bad.join(" | ")
        ));
    }
    phase("checks in dom0", s);

    s.send("systemctl poweroff\n")?;
    s.expect("d0: Shutdown(Poweroff)", Duration::from_secs(300))
        .map_err(|e| format!("dom0 did not power off: {e}"))?;
    s.expect("keel: powering off", Duration::from_secs(60))
        .map_err(|e| format!("keel did not power off: {e}"))?;
    match s.wait_exit(Duration::from_secs(60)) {
        Ok(Some(0)) => {}
        r => {
            return Err(format!(
                "QEMU did not exit cleanly after keel's power-off: {r:?}"
            ))
        }
    }
    phase("systemctl poweroff", s);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_layout_fits_and_is_aligned() {
        assert_eq!(ROOT_START % MIB_SECTORS, 0);
        assert_eq!(ROOT_SECTORS % MIB_SECTORS, 0);
        // GPT's backup header needs the last 33 sectors.
        const { assert!(ROOT_START + ROOT_SECTORS <= DISK_MIB * MIB_SECTORS - 34) };
        let s = sfdisk_script();
        assert!(s.starts_with("label: gpt\n"));
        assert_eq!(s.lines().filter(|l| l.starts_with("start=")).count(), 3);
    }

    #[test]
    fn recipe_covers_what_the_image_is_made_of() {
        let r = recipe();
        for p in PACKAGES {
            assert!(r.contains(p), "{p}");
        }
        assert!(r.contains("grub-install --target=i386-pc /dev/vda"));
        assert!(r.contains("grub-install --target=x86_64-efi"));
        assert!(r.contains(ROOT_UUID));
        assert!(configure_script().contains("UUID=4B45-454C /boot/efi vfat"));
    }

    #[test]
    fn command_output_and_status() {
        // What the console shows after a prompt (bash's bracketed paste on).
        let text =
            "\x1b[?2004l\r\r\n/dev/vda3 ext4\r\n@@KEEL-RC 0\r\n\x1b[?2004hroot@keel-debian:~# ";
        let (lines, rc) = command_output(text);
        assert_eq!(rc, Some(0));
        assert_eq!(lines, ["/dev/vda3 ext4"]);
        assert_eq!(strip_ansi("a\x1b[0;32mOK\x1b[0m b"), "aOK b");
        let (_, rc) = command_output("x\r\n@@KEEL-RC 3\r\n");
        assert_eq!(rc, Some(3));
        let (_, rc) = command_output("no marker\r\n");
        assert_eq!(rc, None);
    }

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn checks_pass_and_fail_as_they_should() {
        let c = &CHECKS[0];
        assert!(judge(c, &lines(&["running", "active"]), Some(0)).is_ok());
        let e = judge(
            c,
            &lines(&["degraded", "active", "foo.service loaded failed failed"]),
            Some(0),
        )
        .unwrap_err();
        assert!(
            e.contains("no line 'running'") && e.contains("foo.service"),
            "{e}"
        );
        assert!(judge(c, &lines(&["running", "active"]), Some(1)).is_err());
        let k = CHECKS.iter().find(|c| c.cmd == "keelctl info").unwrap();
        let info = lines(&[
            "hypervisor            : keel",
            "cpu_vendor            : AuthenticAMD",
            "nr_cpus               : 2",
            "scheduler             : credit",
        ]);
        assert!(judge(k, &info, Some(0)).is_ok());
        assert!(judge(k, &info[1..], Some(0)).is_err());
        let d = CHECKS.iter().find(|c| c.cmd.starts_with("dmesg")).unwrap();
        assert!(judge(d, &lines(&["tainted=0 warnings=0"]), Some(0)).is_ok());
        assert!(judge(
            d,
            &lines(&[
                "[ 3.1] WARNING: CPU: 0 PID: 1 at x",
                "tainted=512 warnings=1"
            ]),
            Some(0)
        )
        .is_err());
    }

    #[test]
    fn dom0_row_fields() {
        let l = lines(&[
            "Name                                        ID    Mem VCPUs    State    Time(s)",
            "Domain-0                                     0   1024     2   r-----       12.3",
        ]);
        assert_eq!(dom0_row(&l), Some((0, 1024, 2, "r-----".to_string())));
        assert_eq!(dom0_row(&l[..1]), None);
    }

    #[test]
    fn kernel_complaints_only_dom0s_after_its_start() {
        let log = "[ 0.5] WARNING: before keel (the plain boot)\n\
                   (XEN) WARNING: time: HPET and PIT disagree\n\
                   (XEN) d0: PVH kernel entry 0x1000850, 1024 MiB\n\
                   (XEN) WARNING: keel's own\n\
                   [    1.0] ok\n\
                   [    2.0] WARNING: CPU: 1 PID: 1 at kernel/foo.c:1 bar+0x1/0x2\n\
                   [    2.1] CPU: 1 PID: 1 Comm: swapper Tainted: G        W 6.1.0\n\
                   [    3.2] Speculative Return Stack Overflow: WARNING: See https://kernel.org/x\n";
        let v = kernel_complaints(log);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].contains("kernel/foo.c"));
        assert!(kernel_complaints("[ 1.0] WARNING: x\n").is_empty());
    }
}
