//! Emulator command lines: QEMU (TCG, `-cpu EPYC` for AMD-V+NPT) and Bochs
//! (VMX with `corei7_skylake_x`, SVM with `ryzen`). The facts behind these
//! settings are in `docs/testing.md`.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::scenario::{Emulator, Firmware, Vendor};

/// isa-debug-exit: keel writes 1 on FAIL/FATAL, QEMU exits with (1 << 1) | 1.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;
pub const QEMU_FAILURE_STATUS: i32 = 3;

pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
pub const BOCHS_BIOS: &str = "/usr/share/bochs/BIOS-bochs-latest";
pub const BOCHS_VGABIOS: &str = "/usr/share/vgabios/vgabios.bin";

/// How the console is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// COM1 only to the serial log file (tests, `run --headless`).
    File,
    /// COM1 on the terminal and also logged to the serial log file. QEMU:
    /// its stdio chardev, multiplexed with the monitor, Ctrl-] x quits.
    /// Bochs: COM1 is a TCP server on a loopback port that the runner
    /// connects to the terminal, Ctrl-] x quits (see `runner`).
    Terminal,
}

/// Where Bochs's COM1 goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BochsCom1 {
    /// Output only, to the serial log file.
    File,
    /// A TCP server on this loopback address: Bochs waits for one client
    /// before it starts the simulation, then COM1 is that connection.
    Socket(SocketAddrV4),
}

/// What [`Launch::prepare`] returns: the command to spawn and, for Bochs
/// with [`Console::Terminal`], the COM1 socket to connect to once spawned.
#[derive(Debug)]
pub struct Prepared {
    pub command: Command,
    pub serial_socket: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    Kvm,
}

impl std::str::FromStr for Accel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tcg" => Ok(Accel::Tcg),
            "kvm" => Ok(Accel::Kvm),
            _ => Err(format!("'{s}' is not one of: kvm, tcg")),
        }
    }
}

/// Everything needed to start one emulator.
#[derive(Debug, Clone)]
pub struct Launch {
    pub emulator: Emulator,
    pub vendor: Vendor,
    pub firmware: Firmware,
    pub cpus: u32,
    pub memory_mib: u32,
    /// BIOS/UEFI disk image, or the GRUB ISO.
    pub image: PathBuf,
    /// Files for this run (serial log, OVMF vars copy, bochs rc) go here.
    pub work_dir: PathBuf,
    pub console: Console,
    pub accel: Accel,
    /// Devices beyond the boot medium, for dom0 to drive.
    pub devices: Devices,
}

/// Size of the test disk: 40 cylinders of 16 heads x 63 sectors (Bochs
/// wants a CHS geometry for a flat image).
pub const DISK_BYTES: u64 = 40 * 16 * 63 * 512;

/// Makes a fresh ext4 file system image of [`DISK_BYTES`] at `path`
/// (`mkfs.ext4` from e2fsprogs).
pub fn make_ext4_image(path: &std::path::Path) -> Result<(), String> {
    let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.set_len(DISK_BYTES)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    drop(f);
    let mkfs = ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4", "mkfs.ext4"]
        .into_iter()
        .find(|p| !p.starts_with('/') || std::path::Path::new(p).exists())
        .unwrap();
    let out = std::process::Command::new(mkfs)
        .args(["-q", "-F", "-L", "keeltest"])
        .arg(path)
        .output()
        .map_err(|e| format!("{mkfs}: {e} (package e2fsprogs)"))?;
    if !out.status.success() {
        return Err(format!(
            "mkfs.ext4 {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// The processes that have `path` open (pid, command line), from
/// `/proc/<pid>/fd` (only those this user may look at).
pub fn holders(path: &Path) -> Vec<(u32, String)> {
    let Ok(want) = path.canonicalize() else {
        return Vec::new();
    };
    let mut v = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return v;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == want))
        {
            let cmd = std::fs::read(p.path().join("cmdline"))
                .map(|b| {
                    String::from_utf8_lossy(&b)
                        .replace('\0', " ")
                        .trim()
                        .to_string()
                })
                .unwrap_or_default();
            v.push((pid, cmd));
        }
    }
    v
}

/// Makes sure a new emulator can open `disk`: an error naming the process
/// if a live one has it open, and the removal of a lock file Bochs left
/// behind (`<disk>.lock`, when a Bochs run was killed: its terminal closed,
/// or Ctrl-C) that no live process holds. Returns a note when it removed one.
pub fn claim_disk(disk: &Path) -> Result<Option<String>, String> {
    if let Some((pid, cmd)) = holders(disk).into_iter().next() {
        return Err(format!(
            "{} is in use by process {pid} ({cmd}): end that run first (Ctrl-] x in its \
             terminal, or `kill {pid}`)",
            disk.display()
        ));
    }
    let mut lock = disk.as_os_str().to_owned();
    lock.push(".lock");
    let lock = PathBuf::from(lock);
    if !lock.exists() {
        return Ok(None);
    }
    if let Some((pid, cmd)) = holders(&lock).into_iter().next() {
        return Err(format!(
            "{} is held by process {pid} ({cmd}): end that run first (`kill {pid}`)",
            lock.display()
        ));
    }
    std::fs::remove_file(&lock).map_err(|e| {
        format!(
            "{}: a stale Bochs lock (no emulator is running on {}), but removing it failed: \
             {e}; remove it by hand",
            lock.display(),
            disk.display()
        )
    })?;
    Ok(Some(format!(
        "removed {}: a lock a Bochs run left behind when it was killed (no emulator has the \
         disk open)",
        lock.display()
    )))
}

/// Asks the kernel to send the emulator SIGTERM when the thread that
/// spawned it exits, so that it never outlives xtask (a closed terminal
/// kills xtask with SIGHUP; an orphaned emulator would keep its disk).
/// Spawn from a thread that lives as long as the run (xtask's main thread).
pub fn die_with_parent(c: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        c.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The machine's own devices (dom0 drives them with Linux's drivers).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Devices {
    /// A raw disk image: virtio-blk under QEMU, an ATA disk under Bochs.
    pub disk: Option<PathBuf>,
    /// A network card on QEMU's user-mode network, always with
    /// `restrict=on` (nothing leaves the machine): virtio-net.
    pub net: bool,
    /// Let a reset reboot the machine (else QEMU exits on reset).
    pub allow_reboot: bool,
    /// QEMU TCG with all vCPUs in one host thread ([`tcg_accel`]).
    pub single_thread_tcg: bool,
}

impl Launch {
    pub fn serial_log(&self) -> PathBuf {
        self.work_dir.join("serial.log")
    }
    /// The emulator's own stdout/stderr (Bochs also writes `bochs.log`).
    pub fn emulator_log(&self) -> PathBuf {
        self.work_dir.join("emulator.log")
    }

    /// Writes the run's support files and returns the command to spawn.
    pub fn command(&self) -> Result<Command, String> {
        Ok(self.prepare()?.command)
    }

    /// Writes the run's support files and returns the command to spawn with
    /// the serial socket it will serve, if any.
    pub fn prepare(&self) -> Result<Prepared, String> {
        std::fs::create_dir_all(&self.work_dir)
            .map_err(|e| format!("creating {}: {e}", self.work_dir.display()))?;
        let _ = std::fs::remove_file(self.serial_log());
        if let Some(disk) = &self.devices.disk {
            if let Some(note) = claim_disk(disk)? {
                eprintln!("note: {note}");
            }
        }
        match self.emulator {
            Emulator::Qemu => Ok(Prepared {
                command: self.qemu()?,
                serial_socket: None,
            }),
            Emulator::Bochs => {
                let com1 = match self.console {
                    Console::File => BochsCom1::File,
                    Console::Terminal => BochsCom1::Socket(free_loopback_addr()?),
                };
                Ok(Prepared {
                    command: self.bochs(com1)?,
                    serial_socket: match com1 {
                        BochsCom1::File => None,
                        BochsCom1::Socket(a) => Some(SocketAddr::V4(a)),
                    },
                })
            }
        }
    }

    fn qemu(&self) -> Result<Command, String> {
        let mut c = Command::new("qemu-system-x86_64");
        match self.accel {
            Accel::Tcg => c.args([
                "-accel",
                tcg_accel(self.devices.single_thread_tcg),
                "-cpu",
                self.vendor.qemu_cpu(),
            ]),
            Accel::Kvm => c.args(["-accel", "kvm", "-cpu", "host"]),
        };
        c.args([
            "-smp",
            &self.cpus.to_string(),
            "-m",
            &self.memory_mib.to_string(),
        ]);
        c.arg("-nodefaults");
        // A debugging aid: KEEL_QEMU_LOG=cpu_reset,int (QEMU's -d items)
        // writes QEMU's log next to the serial log, e.g. the CPU state of a
        // triple fault that ends a run without a word on the console.
        if let Ok(items) = std::env::var("KEEL_QEMU_LOG") {
            let log = self.serial_log().with_file_name("qemu-debug.log");
            c.args(["-d", &items, "-D"]).arg(log);
        }
        if !self.devices.allow_reboot {
            c.arg("-no-reboot");
        }
        if let Some(disk) = &self.devices.disk {
            c.arg("-drive")
                .arg(format!("file={},format=raw,if=virtio", disk.display()));
        }
        if self.devices.net {
            // restrict=on: the guest reaches QEMU's DHCP/DNS and nothing else.
            c.args([
                "-netdev",
                "user,id=net0,restrict=on",
                "-device",
                "virtio-net-pci,netdev=net0",
            ]);
        }
        c.args([
            "-device",
            &format!("isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04"),
        ]);
        let serial = self.serial_log();
        match self.console {
            Console::File => {
                c.args(["-display", "none", "-serial"])
                    .arg(format!("file:{}", serial.display()));
            }
            Console::Terminal => {
                // Ctrl-] is QEMU's escape key here (Ctrl-] x quits): Ctrl-A
                // must reach keel, which switches serial input on three.
                c.args(["-nographic", "-echr", "0x1d", "-chardev"])
                    .arg(format!(
                        "stdio,id=com1,mux=on,signal=off,logfile={}",
                        serial.display()
                    ))
                    .args([
                        "-serial",
                        "chardev:com1",
                        "-mon",
                        "chardev=com1,mode=readline",
                    ]);
            }
        }
        match self.firmware {
            Firmware::Uefi => {
                let vars = self.work_dir.join("OVMF_VARS_4M.fd");
                std::fs::copy(OVMF_VARS, &vars)
                    .map_err(|e| format!("copying {OVMF_VARS}: {e} (package ovmf)"))?;
                c.arg("-drive")
                    .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"));
                c.arg("-drive")
                    .arg(format!("if=pflash,format=raw,file={}", vars.display()));
                c.arg("-drive")
                    .arg(format!("format=raw,file={}", self.image.display()));
            }
            // The bootloader's BIOS stage 2 sets a VESA mode and hangs
            // without a VGA device (which -nodefaults removes); GRUB too.
            Firmware::Bios => {
                c.args(["-vga", "std"]);
                c.arg("-drive")
                    .arg(format!("format=raw,file={}", self.image.display()));
            }
            Firmware::Grub => {
                c.args(["-vga", "std"]);
                c.arg("-cdrom").arg(&self.image).args(["-boot", "d"]);
            }
        }
        Ok(c)
    }

    /// The `com1:` line of the Bochs configuration.
    pub fn bochs_com1(&self, com1: BochsCom1) -> String {
        match com1 {
            BochsCom1::File => format!(
                "com1: enabled=1, mode=file, dev={}\n",
                self.serial_log().display()
            ),
            BochsCom1::Socket(a) => format!("com1: enabled=1, mode=socket-server, dev={a}\n"),
        }
    }

    /// The Bochs configuration (see docs/testing.md for why each line).
    pub fn bochs_rc(&self, com1: BochsCom1) -> Result<String, String> {
        let boot = match self.firmware {
            Firmware::Grub => format!(
                "ata0-master: type=cdrom, path={}, status=inserted\n{}boot: cdrom\n",
                self.image.display(),
                match &self.devices.disk {
                    // A flat image of DISK_BYTES: 40 cylinders, 16 heads, 63 sectors.
                    Some(d) => format!(
                        "ata0-slave: type=disk, path={}, mode=flat, cylinders=40, heads=16, spt=63\n",
                        d.display()
                    ),
                    None => String::new(),
                }
            ),
            Firmware::Bios => {
                // Tried: Bochs 2.7 runs the bootloader crate's BIOS stages up
                // to the VBE mode switch and then makes no progress.
                return Err("under Bochs keel boots through GRUB only (--firmware grub)".into());
            }
            Firmware::Uefi => {
                return Err("Bochs has no UEFI firmware: use --firmware grub or bios".into())
            }
        };
        Ok(format!(
            "# generated by keel-harness\n\
             megs: {megs}\n\
             romimage: file={BOCHS_BIOS}\n\
             vgaromimage: file={BOCHS_VGABIOS}\n\
             cpu: model={model}, count={cpus}, ips=100000000, reset_on_triple_fault=1\n\
             display_library: rfb, options=\"timeout=0\"\n\
             {boot}\
             {com1}\
             port_e9_hack: enabled=1\n\
             clock: sync=none, time0=local\n\
             speaker: enabled=0\n\
             log: {log}\n\
             panic: action=fatal\n\
             error: action=report\n\
             info: action=ignore\n\
             debug: action=ignore\n",
            megs = self.memory_mib,
            model = self.vendor.bochs_cpu(),
            cpus = self.cpus,
            com1 = self.bochs_com1(com1),
            log = self.work_dir.join("bochs.log").display(),
        ))
    }

    fn bochs(&self, com1: BochsCom1) -> Result<Command, String> {
        if self.accel == Accel::Kvm {
            return Err("Bochs is an emulator: --accel kvm only applies to QEMU".into());
        }
        let rc = self.work_dir.join("keel.bochsrc");
        let dbg = self.work_dir.join("continue.rc");
        write(&rc, &self.bochs_rc(com1)?)?;
        write(&dbg, &bochs_debugger_script(self.cpus))?;
        let mut c = Command::new("bochs-bin");
        c.arg("-q").arg("-f").arg(&rc).arg("-rc").arg(&dbg);
        Ok(c)
    }
}

/// What Bochs's built-in debugger runs (`-rc`). It stops at reset:
/// continue. When the harness interrupts a run that timed out (SIGINT
/// stops the `c`), it prints each CPU's registers, control registers and
/// the next instructions into the emulator's log, which is what shows
/// where a hung keel or guest spins; then quit.
pub fn bochs_debugger_script(cpus: u32) -> String {
    let mut rc = String::from("c\n");
    for cpu in 0..cpus {
        rc += &format!("set $cpu = {cpu}\nr\nsreg\ncreg\nu /8\nprint-stack 16\n");
    }
    rc + "q\n"
}

/// A loopback address with a port that was free a moment ago (bound to
/// port 0, read, released): the emulator binds it next.
fn free_loopback_addr() -> Result<SocketAddrV4, String> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| format!("finding a free loopback port: {e}"))?;
    let port = l.local_addr().map_err(|e| e.to_string())?.port();
    Ok(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

fn write(p: &Path, s: &str) -> Result<(), String> {
    std::fs::write(p, s).map_err(|e| format!("writing {}: {e}", p.display()))
}

/// Debian packages each piece needs.
pub fn packages_for(emulator: Emulator, firmware: Firmware) -> Vec<&'static str> {
    let mut v = match emulator {
        Emulator::Qemu => vec!["qemu-system-x86"],
        Emulator::Bochs => vec!["bochs", "bochsbios", "vgabios", "bochs-term"],
    };
    match firmware {
        Firmware::Uefi => v.push("ovmf"),
        Firmware::Grub => v.extend(GRUB_PACKAGES),
        Firmware::Bios => {}
    }
    v
}

pub const GRUB_PACKAGES: [&str; 4] = ["grub-pc-bin", "grub-common", "xorriso", "mtools"];

/// Every host package the full test suite (and bench) uses.
pub const ALL_PACKAGES: [&str; 11] = [
    "qemu-system-x86",
    "ovmf",
    "bochs",
    "bochsbios",
    "vgabios",
    "bochs-term",
    "grub-pc-bin",
    "grub-common",
    "xorriso",
    "mtools",
    "xenstore-utils",
];

/// QEMU's TCG accelerator: a host thread per vCPU, or with `single` all
/// vCPUs in one (`thread=single`, every scenario's default).
/// `KEEL_QEMU_TCG=single|multi` overrides both for every run.
///
/// With a thread per vCPU, QEMU (7.2, and 10.0.2 from bookworm-backports)
/// now and then walks the page tables right after a VMRUN or #VMEXIT as if
/// the other world's nested paging were in force: keel's first instruction
/// after `vmrun` faults "not present" on tables that never change, or a
/// guest's first instruction after an exit does while the tables read
/// through its p2m are intact, or the #VMEXIT stores keel's own state as
/// the guest's (docs/testing.md, "QEMU and nested paging"). Two guests
/// exiting often on two CPUs hit it in about half their runs; a Debian dom0
/// met it once in many runs (`qemu-debian-bios`, 2026-12-04). With one
/// thread it was never seen.
pub fn tcg_accel(single: bool) -> &'static str {
    let single = match std::env::var("KEEL_QEMU_TCG").as_deref() {
        Ok("single") => true,
        Ok("multi") => false,
        _ => single,
    };
    if single {
        "tcg,thread=single"
    } else {
        "tcg"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bochs_debugger_dumps_every_cpu_after_continue() {
        let rc = bochs_debugger_script(2);
        let lines: Vec<&str> = rc.lines().collect();
        assert_eq!(lines.first(), Some(&"c"));
        assert_eq!(lines.last(), Some(&"q"));
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with("set $cpu = "))
                .count(),
            2
        );
        assert!(rc.contains("set $cpu = 1\nr\n"), "{rc}");
        assert_eq!(bochs_debugger_script(1).matches("\nr\n").count(), 1);
    }

    /// A scratch directory of this test process: two test runs at once (two
    /// checkouts on one machine) must not share one.
    fn unit_dir(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("{name}-{}", std::process::id()))
    }

    fn launch(emulator: Emulator, firmware: Firmware) -> Launch {
        Launch {
            emulator,
            vendor: Vendor::Intel,
            firmware,
            cpus: 2,
            memory_mib: 256,
            image: "/tmp/keel.iso".into(),
            work_dir: unit_dir("keel-harness-unit"),
            console: Console::File,
            accel: Accel::Tcg,
            devices: Devices::default(),
        }
    }

    #[test]
    fn bochs_rc_has_cpu_model_count_and_serial_file() {
        let l = launch(Emulator::Bochs, Firmware::Grub);
        let rc = l.bochs_rc(BochsCom1::File).unwrap();
        assert!(rc.contains("cpu: model=corei7_skylake_x, count=2,"));
        assert!(rc.contains("type=cdrom, path=/tmp/keel.iso"));
        let serial = l.serial_log();
        assert!(rc.contains(&format!(
            "\ncom1: enabled=1, mode=file, dev={}\nport_e9_hack:",
            serial.display()
        )));
        assert!(rc.contains("megs: 256"));
        let uefi = launch(Emulator::Bochs, Firmware::Uefi);
        assert!(uefi.bochs_rc(BochsCom1::File).is_err());
        let bios = launch(Emulator::Bochs, Firmware::Bios);
        assert!(bios.bochs_rc(BochsCom1::File).is_err());
    }

    #[test]
    fn bochs_com1_socket_server_on_loopback() {
        let l = launch(Emulator::Bochs, Firmware::Grub);
        let a = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 40123);
        assert_eq!(
            l.bochs_com1(BochsCom1::Socket(a)),
            "com1: enabled=1, mode=socket-server, dev=127.0.0.1:40123\n"
        );
        let rc = l.bochs_rc(BochsCom1::Socket(a)).unwrap();
        assert!(rc.contains("\ncom1: enabled=1, mode=socket-server, dev=127.0.0.1:40123\n"));
        assert!(!rc.contains("mode=file"));
    }

    #[test]
    fn prepare_picks_the_serial_socket_by_console() {
        let mut l = launch(Emulator::Bochs, Firmware::Grub);
        l.work_dir = unit_dir("keel-harness-unit-prepare");
        assert!(l.prepare().unwrap().serial_socket.is_none());
        let rc = std::fs::read_to_string(l.work_dir.join("keel.bochsrc")).unwrap();
        assert!(rc.contains("mode=file"));
        l.console = Console::Terminal;
        let a = l.prepare().unwrap().serial_socket.unwrap();
        assert!(a.ip().is_loopback() && a.port() != 0, "{a}");
        let rc = std::fs::read_to_string(l.work_dir.join("keel.bochsrc")).unwrap();
        assert!(
            rc.contains(&format!("mode=socket-server, dev={a}\n")),
            "{rc}"
        );
        let mut q = launch(Emulator::Qemu, Firmware::Bios);
        q.console = Console::Terminal;
        q.work_dir = l.work_dir.clone();
        assert!(q.prepare().unwrap().serial_socket.is_none());
        let _ = std::fs::remove_dir_all(&l.work_dir);
    }

    #[test]
    fn stale_bochs_lock_is_removed_and_a_live_holder_named() {
        let dir = std::env::temp_dir().join(format!("keel-harness-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let disk = dir.join("disk.img");
        std::fs::write(&disk, b"disk").unwrap();
        assert_eq!(claim_disk(&disk).unwrap(), None);
        let lock = dir.join("disk.img.lock");
        std::fs::write(&lock, b"").unwrap();
        let note = claim_disk(&disk).unwrap().unwrap();
        assert!(
            note.contains("removed") && note.contains("disk.img.lock"),
            "{note}"
        );
        assert!(!lock.exists());
        // A live process with the disk open: named, nothing removed.
        std::fs::write(&lock, b"").unwrap();
        let mut child = Command::new("sleep")
            .arg("30")
            .stdin(std::fs::File::open(&disk).unwrap())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        // Until the child has exec'd `sleep` (before that, its command line
        // is still this test binary's).
        let execd = || {
            std::fs::read(format!("/proc/{}/cmdline", child.id()))
                .is_ok_and(|c| c.starts_with(b"sleep"))
        };
        while (holders(&disk).is_empty() || !execd()) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let err = claim_disk(&disk).unwrap_err();
        let _ = child.kill();
        let _ = child.wait();
        assert!(err.contains(&format!("process {}", child.id())), "{err}");
        assert!(err.contains("sleep 30"), "{err}");
        assert!(lock.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn qemu_args() {
        let c = launch(Emulator::Qemu, Firmware::Bios).command().unwrap();
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let s = args.join(" ");
        assert!(
            s.contains("-device isa-debug-exit,iobase=0xf4,iosize=0x04"),
            "{s}"
        );
        assert!(s.contains("-no-reboot") && s.contains("-nodefaults"));
        assert!(s.contains("-smp 2 -m 256"));
        assert!(s.contains("-serial file:"));
        if std::env::var_os("KEEL_QEMU_TCG").is_none() {
            assert!(s.contains("-accel tcg -cpu "), "{s}");
            let mut l = launch(Emulator::Qemu, Firmware::Bios);
            l.devices.single_thread_tcg = true;
            let c = l.command().unwrap();
            let s: Vec<String> = c
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            assert!(
                s.join(" ").contains("-accel tcg,thread=single -cpu"),
                "{s:?}"
            );
        }
        // command() created the work directory.
        let _ = std::fs::remove_dir_all(unit_dir("keel-harness-unit"));
    }
}
