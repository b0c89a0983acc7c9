//! `cargo xtask <command>`: build, run and test keel.
//!
//! ```text
//! cargo xtask build                 kernel + image builder + BIOS/UEFI images + GRUB ISO
//! cargo xtask image [opts]          one boot image
//! cargo xtask run [opts]            boot keel in QEMU or Bochs
//! cargo xtask test [opts]           host unit tests + every emulator scenario
//! cargo xtask bench                 benchmarks -> docs/benchmarks.md
//! cargo xtask fuzz [--count N]      the hypercall-fuzzing benchmark alone
//! cargo xtask boot-vs-xen           the boot comparison against Xen 4.17 alone
//! ```
//! Run `cargo xtask help` for the options.

mod deb;
mod debian;
mod domu;
mod fuzz;
mod linux;
mod split;
mod xenbench;
mod xentools;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use keel_harness::emulator::{self, Accel, Launch};
use keel_harness::host;
use keel_harness::images::{self, Tools};
use keel_harness::markers::Console;
use keel_harness::runner::{self, Report};
use keel_harness::scenario::{Emulator, Exit, Firmware, Progress, Status, Vendor};

const HELP: &str = "\
cargo xtask <command> [options]

commands:
  build                 build the kernel, the image builder and the default images
                        (target/keel/keel-bios.img, keel-uefi.img, keel.iso)
  image                 build one boot image
      --firmware bios|uefi|grub   (default uefi)
      --cmdline \"...\"             hypervisor command line (default: console=com1 loglvl=info)
      --module NAME=FILE          add a boot module (repeatable)
      --out PATH                  (default target/keel/keel-<firmware>.{img,iso})
  run                   boot keel and Debian's Linux as dom0 in an emulator: a dom0 shell on
                        this terminal (keelctl info/list/dmesg); CTRL-a three times switches
                        serial input between dom0 and keel; `poweroff` in dom0 ends the run
      --no-dom0                   boot keel alone (no dom0 kernel)
      --vendor amd|intel          (default amd)
      --emulator qemu|bochs       (default: qemu for amd, bochs for intel)
      --firmware uefi|bios|grub   (default: uefi for qemu; bochs: grub only)
      --cpus N                    (default 2)
      --memory MiB                (default 1024 with dom0, else 512 for qemu, 256 for bochs)
      --cmdline \"...\"             extra hypervisor options
      --module NAME=FILE          add a boot module (repeatable)
      --accel tcg|kvm             (default tcg; QEMU only)
      --headless                  no terminal console: stream the log, stop at the result and
                                  exit with the run's status (adds test=boot unless --cmdline has test=)
      --timeout SECS              (headless default 300)
      Console (QEMU and Bochs): Ctrl-] x quits the emulator; other keys go to the guest.
  test                  host `cargo test` + every emulator scenario, with a summary
      --only NAME|SUBSTR          run only the scenario named NAME, or those whose name
                                  contains SUBSTR (repeatable)
      --no-host-tests             skip the host `cargo test`
      --list                      list the scenarios and exit
  bench                 run the available benchmarks and write docs/benchmarks.md
      --only SECTION              run only this section (repeatable) and replace just its part
                                  of docs/benchmarks.md: xenstored, vm-exits, exit-counters,
                                  mgmt, fuzz, linux-boot, boot-vs-xen, domu, split
  fuzz [--count N]      the hypercall-fuzzing benchmark alone (default 1000000 hypercalls
                        per vendor): prints its table, writes nothing
  boot-vs-xen           the bench's boot comparison alone: Debian's kernel as dom0 under keel
                        and under Debian's Xen 4.17 (fetched, cached), same QEMU machine, 3 runs
                        each: prints its table, writes nothing
  deb                   keel's Debian package (target/keel/keel_<version>_amd64.deb): keel, the
                        GRUB script, the dom0 tools and services (docs/install.md)
  linux                 fetch Debian's standard kernel + busybox-static and build a PVH test
                        guest: DIR/vmlinux + DIR/initrd.cpio.gz (cached; docs/linux-guest.md)
      --out DIR                   (default target/keel/linux)

environment:
  KEEL_KERNEL=PATH      use this kernel ELF instead of building keel-hypervisor
";

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprint!("{HELP}");
        return ExitCode::from(2);
    };
    if std::env::var_os("CARGO_TARGET_DIR").is_some() {
        eprintln!(
            "warning: CARGO_TARGET_DIR is set; xtask removes it for the builds it runs (the \
             bootloader's nested cargo install deadlocks on it) and uses target/"
        );
    }
    let r = match cmd.as_str() {
        "build" => cmd_build(rest),
        "image" => cmd_image(rest),
        "run" => cmd_run(rest),
        "test" => cmd_test(rest),
        "bench" => cmd_bench(rest),
        "fuzz" => cmd_fuzz(rest),
        "boot-vs-xen" => cmd_boot_vs_xen(rest),
        "linux" => linux::cmd_linux(rest),
        "deb" => cmd_deb(rest),
        "help" | "-h" | "--help" => {
            print!("{HELP}");
            Ok(0)
        }
        other => Err(format!("unknown command '{other}'\n\n{HELP}")),
    };
    match r {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------- arguments

struct Args {
    items: Vec<String>,
    pos: usize,
}

impl Args {
    fn new(a: &[String]) -> Args {
        Args {
            items: a.to_vec(),
            pos: 0,
        }
    }
    fn next(&mut self) -> Option<String> {
        let v = self.items.get(self.pos).cloned();
        self.pos += 1;
        v
    }
    fn value(&mut self, flag: &str) -> Result<String> {
        self.next().ok_or_else(|| format!("{flag} needs a value"))
    }
    fn parsed<T: std::str::FromStr>(&mut self, flag: &str) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        let v = self.value(flag)?;
        v.parse().map_err(|e| format!("{flag} {v}: {e}"))
    }
}

fn parse_module(v: &str) -> Result<(String, Vec<u8>)> {
    let (name, path) = v.split_once('=').ok_or("--module wants NAME=FILE")?;
    let data = std::fs::read(path).map_err(|e| format!("--module {path}: {e}"))?;
    Ok((name.to_string(), data))
}

// ------------------------------------------------------------------- builds

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn out_dir() -> PathBuf {
    root().join("target").join("keel")
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root()).env_remove("CARGO_TARGET_DIR");
    c
}

fn status(mut c: Command, what: &str) -> Result<()> {
    let st = c.status().map_err(|e| format!("cannot run {what}: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({st})"))
    }
}

fn kernel_path() -> PathBuf {
    root().join("target/x86_64-unknown-none/release/keel")
}

fn build_kernel() -> Result<PathBuf> {
    if let Some(k) = std::env::var_os("KEEL_KERNEL") {
        eprintln!(
            "==> using KEEL_KERNEL={} (no kernel build)",
            Path::new(&k).display()
        );
        return Ok(PathBuf::from(k));
    }
    eprintln!("==> building the kernel (keel-hypervisor, x86_64-unknown-none, release)");
    let mut c = cargo();
    c.args([
        "build",
        "-p",
        "keel-hypervisor",
        "--bin",
        "keel",
        "--target",
        "x86_64-unknown-none",
        "--release",
    ]);
    status(c, "kernel build")?;
    Ok(kernel_path())
}

/// Builds keel's test guest (`tests/guests`), the `testguest` boot module.
fn build_test_guest() -> Result<Vec<u8>> {
    eprintln!("==> building the test guest (keel-test-guest, x86_64-unknown-none, release)");
    let mut c = cargo();
    c.args([
        "build",
        "-p",
        "keel-test-guest",
        "--target",
        "x86_64-unknown-none",
        "--release",
    ]);
    status(c, "test guest build")?;
    let path = root().join("target/x86_64-unknown-none/release/keel-test-guest");
    std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Whether any scenario has an empty placeholder module named `name`
/// (filled in by xtask once the real thing is built or fetched).
fn wants(scenarios: &[keel_harness::Scenario], name: &str) -> bool {
    scenarios
        .iter()
        .any(|s| s.modules.iter().any(|(n, d)| n == name && d.is_empty()))
}

/// Fills the empty placeholder modules called `name` with `data`; modules
/// that already have contents (e.g. a stand-in `dom0`) are left alone.
fn fill(scenarios: &mut [keel_harness::Scenario], name: &str, data: &[u8]) {
    for s in scenarios {
        for (n, d) in &mut s.modules {
            if n == name && d.is_empty() {
                *d = data.to_vec();
            }
        }
    }
}

/// Fetches Debian's kernel and builds the initramfs (`cargo xtask linux`,
/// cached), then puts them into the scenarios' `dom0` and `dom0-initrd`.
fn fill_linux(scenarios: &mut [keel_harness::Scenario]) -> Result<()> {
    let code = linux::cmd_linux(&[])?;
    if code != 0 {
        return Err("cargo xtask linux failed".into());
    }
    let dir = root().join("target/keel/linux");
    let read =
        |f: &str| std::fs::read(dir.join(f)).map_err(|e| format!("{}: {e}", dir.join(f).display()));
    fill(scenarios, "dom0", &read("vmlinux")?);
    // The domU scenarios' dom0 initramfs carries the domU payload too
    // (`domu.rs`); they name it with a placeholder.
    if scenarios.iter().any(|s| {
        s.modules
            .iter()
            .any(|(n, d)| n == "dom0-initrd" && d == keel_harness::scenario::DOMU_INITRD)
    }) {
        let domu = read("initrd-domu.cpio.gz")?;
        for s in scenarios.iter_mut() {
            for (n, d) in &mut s.modules {
                if n == "dom0-initrd" && d == keel_harness::scenario::DOMU_INITRD {
                    *d = domu.clone();
                }
            }
        }
    }
    fill(scenarios, "dom0-initrd", &read("initrd.cpio.gz")?);
    Ok(())
}

fn build_image_builder() -> Result<PathBuf> {
    let bin = root().join("target/debug/keel-boot");
    if bin.exists() {
        eprintln!("==> building the image builder (keel-boot)");
    } else {
        eprintln!(
            "==> building the image builder (keel-boot): the first build compiles the bootloader's \
             BIOS and UEFI stages (a few minutes, ~2 GB)"
        );
    }
    let t = Instant::now();
    let mut c = cargo();
    c.args(["build", "-p", "keel-boot", "--bin", "keel-boot"]);
    // The bootloader's build script compiles its stages with nested `cargo
    // install`s that print nothing until they are done: say it is alive.
    let beat = (!bin.exists()).then(|| {
        heartbeat(
            "still building the image builder (the bootloader's build script compiles its \
             BIOS and UEFI stages; it prints nothing until it is done)",
        )
    });
    let r = status(c, "image builder build");
    drop(beat);
    r?;
    eprintln!(
        "    image builder ready in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    Ok(bin)
}

/// Prints `what` with the time so far every 30 s until dropped (dropping
/// the sender ends the thread's wait).
struct Heartbeat(#[allow(dead_code)] std::sync::mpsc::Sender<()>);

fn heartbeat(what: &'static str) -> Heartbeat {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let t = Instant::now();
    std::thread::spawn(move || {
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            rx.recv_timeout(Duration::from_secs(30))
        {
            eprintln!("    ... {:.0}s: {what}", t.elapsed().as_secs_f64());
        }
    });
    Heartbeat(tx)
}

fn build_tools() -> Result<Tools> {
    let kernel = build_kernel()?;
    let keel_boot = build_image_builder()?;
    Ok(Tools { kernel, keel_boot })
}

const DEFAULT_CMDLINE: &str = "console=com1 loglvl=info";
/// dom0's kernel command line for `cargo xtask run`: a shell on hvc0.
/// `no_timer_check`: Linux's boot-time IO-APIC timer check counts PIT ticks
/// against the TSC in a 4-jiffy window, which emulators do not always meet;
/// dom0's clock is Xen's pvclock anyway (docs/dom0.md).
const DOM0_RUN_CMDLINE: &str = "console=hvc0 no_timer_check keel.shell";

fn make_image(
    tools: &Tools,
    firmware: Firmware,
    cmdline: &str,
    modules: &[(String, Vec<u8>)],
    out: &Path,
) -> Result<()> {
    if let Some(p) = out.parent() {
        std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    match firmware {
        Firmware::Grub => {
            host::ensure_packages(&emulator::GRUB_PACKAGES)?;
            images::grub_iso(&tools.kernel, cmdline, modules, out)
        }
        fw => {
            let ramdisk = out.with_extension("keelmods");
            std::fs::write(&ramdisk, images::archive(cmdline, modules)?)
                .map_err(|e| format!("{}: {e}", ramdisk.display()))?;
            images::disk_image(tools, fw, &ramdisk, out)
        }
    }
}

fn default_image_path(firmware: Firmware) -> PathBuf {
    match firmware {
        Firmware::Grub => out_dir().join("keel.iso"),
        fw => out_dir().join(format!("keel-{}.img", fw.name())),
    }
}

fn cmd_build(a: &[String]) -> Result<u8> {
    if let Some(x) = a.first() {
        return Err(format!("build takes no options (got '{x}')"));
    }
    let tools = build_tools()?;
    for fw in [Firmware::Bios, Firmware::Uefi, Firmware::Grub] {
        let out = default_image_path(fw);
        let t = Instant::now();
        make_image(&tools, fw, DEFAULT_CMDLINE, &[], &out)?;
        eprintln!("    {} ({:.1}s)", out.display(), t.elapsed().as_secs_f64());
    }
    println!("kernel: {}", tools.kernel.display());
    Ok(0)
}

fn cmd_image(a: &[String]) -> Result<u8> {
    let mut args = Args::new(a);
    let (mut firmware, mut cmdline, mut modules, mut out) = (
        Firmware::Uefi,
        DEFAULT_CMDLINE.to_string(),
        Vec::new(),
        None,
    );
    while let Some(f) = args.next() {
        match f.as_str() {
            "--firmware" => firmware = args.parsed(&f)?,
            "--cmdline" => cmdline = args.value(&f)?,
            "--module" => modules.push(parse_module(&args.value(&f)?)?),
            "--out" => out = Some(PathBuf::from(args.value(&f)?)),
            other => return Err(format!("image: unknown option '{other}'")),
        }
    }
    let tools = build_tools()?;
    let out = out.unwrap_or_else(|| default_image_path(firmware));
    make_image(&tools, firmware, &cmdline, &modules, &out)?;
    println!("{}", out.display());
    Ok(0)
}

/// Builds keel's Debian package from `kernel`; returns its path.
fn build_deb(kernel: &Path) -> Result<PathBuf> {
    let musl = linux::build_musl(&deb::musl_bins())?;
    eprintln!("==> keel's Debian package (dpkg-deb)");
    let deb = deb::build(&root(), kernel, &musl, &out_dir())?;
    eprintln!("    {}", deb.display());
    Ok(deb)
}

fn cmd_deb(a: &[String]) -> Result<u8> {
    if let Some(x) = a.first() {
        return Err(format!("deb takes no options (got '{x}')"));
    }
    let kernel = build_kernel()?;
    println!("{}", build_deb(&kernel)?.display());
    Ok(0)
}

// ---------------------------------------------------------------------- run

fn cmd_run(a: &[String]) -> Result<u8> {
    let mut args = Args::new(a);
    let mut vendor = Vendor::Amd;
    let (mut emu, mut fw, mut memory, mut timeout) = (None, None, None, None);
    let mut cpus = 2u32;
    let mut extra = String::new();
    let mut modules = Vec::new();
    let mut accel = Accel::Tcg;
    let mut headless = false;
    let mut dom0 = true;
    while let Some(f) = args.next() {
        match f.as_str() {
            "--no-dom0" => dom0 = false,
            "--vendor" => vendor = args.parsed(&f)?,
            "--emulator" => emu = Some(args.parsed::<Emulator>(&f)?),
            "--firmware" => fw = Some(args.parsed::<Firmware>(&f)?),
            "--cpus" => cpus = args.parsed(&f)?,
            "--memory" => memory = Some(args.parsed::<u32>(&f)?),
            "--cmdline" => extra = format!("{extra} {}", args.value(&f)?),
            "--module" => modules.push(parse_module(&args.value(&f)?)?),
            "--accel" => accel = args.parsed(&f)?,
            "--headless" => headless = true,
            "--timeout" => timeout = Some(Duration::from_secs(args.parsed(&f)?)),
            other => return Err(format!("run: unknown option '{other}'")),
        }
    }
    if cpus == 0 {
        return Err("--cpus must be at least 1".into());
    }
    let emulator = emu.unwrap_or(match vendor {
        Vendor::Amd => Emulator::Qemu,
        Vendor::Intel => Emulator::Bochs,
    });
    let firmware = fw.unwrap_or(match emulator {
        // dom0's kernel and initramfs are GRUB modules.
        _ if dom0 => Firmware::Grub,
        Emulator::Qemu => Firmware::Uefi,
        Emulator::Bochs => Firmware::Grub,
    });
    if emulator == Emulator::Bochs && firmware != Firmware::Grub {
        return Err(
            "under Bochs keel boots through GRUB only: use --firmware grub (the default)".into(),
        );
    }
    if emulator == Emulator::Qemu && vendor == Vendor::Intel && accel == Accel::Tcg {
        eprintln!("note: QEMU TCG has no VMX; use --emulator bochs to exercise VT-x");
    }
    let memory = memory.unwrap_or(match emulator {
        _ if dom0 => 1024,
        Emulator::Qemu => 512,
        Emulator::Bochs => 256,
    });
    let mut cmdline = format!("{DEFAULT_CMDLINE} debug_exit=0xf4");
    if dom0 {
        if firmware != Firmware::Grub {
            return Err("dom0 boots through GRUB only (--firmware grub, the default)".into());
        }
        let code = linux::cmd_linux(&[])?;
        if code != 0 {
            return Err("cargo xtask linux failed".into());
        }
        let dir = root().join("target/keel/linux");
        let read = |f: &str| {
            std::fs::read(dir.join(f)).map_err(|e| format!("{}: {e}", dir.join(f).display()))
        };
        modules.push(("dom0".into(), read("vmlinux")?));
        modules.push(("dom0-initrd".into(), read("initrd.cpio.gz")?));
        modules.push(("dom0-cmdline".into(), DOM0_RUN_CMDLINE.as_bytes().to_vec()));
        if !extra.contains("dom0_mem=") {
            cmdline += " dom0_mem=512M";
        }
    }
    if headless && !extra.split_whitespace().any(|w| w.starts_with("test=")) {
        cmdline += " test=boot";
    }
    cmdline += &extra;
    host::ensure_packages(&emulator::packages_for(emulator, firmware))?;
    let tools = build_tools()?;
    let work_dir = out_dir().join("run");
    let _ = std::fs::remove_dir_all(&work_dir);
    // dom0's devices: a virtio (QEMU) or ATA (Bochs) disk with ext4, kept in
    // target/keel/run-disk.img across runs, and (QEMU) a virtio NIC on a
    // restricted user-mode network.
    let mut devices = emulator::Devices {
        // As every scenario: a thread per vCPU meets a QEMU bug
        // (`emulator::tcg_accel`).
        single_thread_tcg: true,
        ..Default::default()
    };
    if dom0 {
        let disk = out_dir().join("run-disk.img");
        if !disk.exists() {
            eprintln!("==> {}: new ext4 disk image", disk.display());
            emulator::make_ext4_image(&disk)?;
        }
        devices.disk = Some(disk);
        devices.net = emulator == Emulator::Qemu;
        devices.allow_reboot = true;
    }
    let image = work_dir.join(match firmware {
        Firmware::Grub => "keel.iso".to_string(),
        fw => format!("keel-{}.img", fw.name()),
    });
    make_image(&tools, firmware, &cmdline, &modules, &image)?;
    let launch = Launch {
        emulator,
        vendor,
        firmware,
        cpus,
        memory_mib: memory,
        image,
        work_dir: work_dir.clone(),
        console: if headless {
            emulator::Console::File
        } else {
            emulator::Console::Terminal
        },
        accel,
        devices,
    };
    eprintln!(
        "==> {emulator} ({vendor}, {firmware}, {cpus} CPUs, {memory} MiB): {cmdline}\n    logs: {}",
        work_dir.display()
    );
    if !headless {
        match emulator {
            Emulator::Qemu => eprintln!(
                "    console on this terminal; Ctrl-] x quits QEMU; CTRL-a three times switches serial input dom0 <-> keel\n"
            ),
            Emulator::Bochs => eprintln!(
                "    console on this terminal; Ctrl-] x quits Bochs; CTRL-a three times switches serial input dom0 <-> keel\n"
            ),
        }
        let r = runner::run(&launch, timeout, None, false, &|_| Progress::Running)?;
        return Ok(match r.exit {
            // Bochs exits with 1 after an ACPI power-off: a clean end all the same.
            _ if emulator == Emulator::Bochs && r.console.powered_off() => 0,
            Exit::Status(Some(c)) => c.clamp(0, 255) as u8,
            _ => 1,
        });
    }
    let timeout = timeout.unwrap_or(Duration::from_secs(300));
    let done = |c: &Console| {
        if c.has_result() || c.powered_off() {
            Progress::Done
        } else {
            Progress::Running
        }
    };
    let r = runner::run(&launch, Some(timeout), None, true, &done)?;
    let c = &r.console;
    let clean = c.fatal().is_none() && c.fail().is_none() && c.powered_off();
    let code: u8 = match (emulator, r.exit) {
        (_, Exit::TimedOut | Exit::Silent) => 124,
        (Emulator::Qemu, Exit::Status(Some(s))) => s.clamp(0, 255) as u8,
        (_, _) if clean => 0,
        _ => 1,
    };
    eprintln!(
        "\n==> {} after {:.1}s ({}): exit {code}",
        if code == 0 {
            "clean power-off"
        } else {
            "run failed"
        },
        r.wall.as_secs_f64(),
        r.exit
    );
    Ok(code)
}

// --------------------------------------------------------------------- test

fn cmd_test(a: &[String]) -> Result<u8> {
    let mut args = Args::new(a);
    let (mut only, mut host_tests, mut list) = (Vec::new(), true, false);
    while let Some(f) = args.next() {
        match f.as_str() {
            "--only" => only.push(args.value(&f)?),
            "--no-host-tests" => host_tests = false,
            "--list" => list = true,
            other => return Err(format!("test: unknown option '{other}'")),
        }
    }
    // The guest scenarios get the built test guest after the build below;
    // the Debian server scenarios (issue 16) run last: they are the longest.
    let all: Vec<_> = keel_harness::required()
        .into_iter()
        .chain(keel_harness::guest_scenarios(&[]))
        .chain(keel_harness::linux_scenarios())
        .chain(keel_harness::fuzz_scenarios(&[]))
        .chain(keel_harness::domu_scenarios())
        .collect();
    let all_debian = debian::scenarios();
    // `--only NAME` picks the scenario of that exact name alone, any other
    // value every scenario whose name contains it.
    let exact: Vec<String> = all
        .iter()
        .chain(&all_debian)
        .map(|s| s.name.clone())
        .filter(|n| only.contains(n))
        .collect();
    let matches = |name: &str| {
        only.iter().any(|o| {
            if exact.contains(o) {
                name == o
            } else {
                name.contains(o.as_str())
            }
        })
    };
    let selected = |s: &keel_harness::Scenario| only.is_empty() || matches(&s.name);
    // `OPT_IN` scenarios run only when named.
    let named = |s: &keel_harness::Scenario| !only.is_empty() && matches(&s.name);
    let opt_in = |s: &keel_harness::Scenario| OPT_IN.contains(&s.name.as_str());
    let mut scenarios: Vec<_> = all
        .into_iter()
        .filter(|s| if opt_in(s) { named(s) } else { selected(s) })
        .collect();
    let debian: Vec<_> = all_debian.into_iter().filter(selected).collect();
    // More of keel's command line for a look inside a run (`sched_debug`,
    // `loglvl=debug`): KEEL_EXTRA_CMDLINE, added to every scenario's.
    if let Ok(extra) = std::env::var("KEEL_EXTRA_CMDLINE") {
        for s in &mut scenarios {
            s.cmdline = format!("{} {extra}", s.cmdline);
        }
    }
    // And of dom0's (`print-fatal-signals=1`): KEEL_DOM0_EXTRA_CMDLINE, added
    // to every Linux dom0's command line.
    if let Ok(extra) = std::env::var("KEEL_DOM0_EXTRA_CMDLINE") {
        for s in &mut scenarios {
            for (name, data) in &mut s.modules {
                if name == "dom0-cmdline" {
                    data.extend_from_slice(format!(" {extra}").as_bytes());
                }
            }
        }
    }
    if list {
        for s in scenarios.iter().chain(&debian) {
            println!(
                "{:30} {:>4}s  {}",
                s.name,
                s.timeout.as_secs(),
                s.description
            );
        }
        return Ok(0);
    }
    if scenarios.is_empty() && debian.is_empty() {
        return Err(format!("no scenario matches {only:?} (see --list)"));
    }
    let t_all = Instant::now();
    host::ensure_packages(&emulator::ALL_PACKAGES)?;
    if !debian.is_empty() {
        host::ensure_packages(debian::HOST_PACKAGES)?;
    }

    let mut checks: Vec<Check> = Vec::new();
    if host_tests {
        eprintln!("==> host tests: cargo test (workspace default members)");
        let t = Instant::now();
        let mut c = cargo();
        c.arg("test");
        let ok = status(c, "cargo test")
            .map_err(|e| eprintln!("{e}"))
            .is_ok();
        checks.push(Check::new(
            "host-tests",
            ok,
            t,
            "cargo test (workspace default members)",
        ));
        // Style and lints are part of the suite: CI enforces them.
        for (name, args, what) in LINTS {
            eprintln!("==> {name}: cargo {}", args.join(" "));
            let t = Instant::now();
            let mut c = cargo();
            c.args(*args);
            let ok = status(c, name).map_err(|e| eprintln!("{e}")).is_ok();
            checks.push(Check::new(name, ok, t, what));
        }
    }

    let t_build = Instant::now();
    let mut reports: Vec<Report> = Vec::new();
    let work_root = out_dir().join("test");
    // The kernel and the image builder (the Debian scenarios need only the kernel).
    let tools = if scenarios.is_empty() {
        build_kernel().map(|kernel| Tools {
            kernel,
            keel_boot: PathBuf::new(),
        })
    } else {
        build_tools()
    };
    let tools = match tools {
        Ok(t) => t,
        Err(e) => {
            eprintln!("xtask: {e}: no emulator scenario can run");
            print_summary(&checks, &[], t_build.elapsed(), t_all.elapsed());
            return Ok(1);
        }
    };
    if wants(&scenarios, "testguest") {
        match build_test_guest() {
            Ok(g) => fill(&mut scenarios, "testguest", &g),
            Err(e) => {
                eprintln!("xtask: {e}: the guest scenarios cannot run");
                print_summary(&checks, &[], t_build.elapsed(), t_all.elapsed());
                return Ok(1);
            }
        }
    }
    if wants(&scenarios, "dom0") {
        if let Err(e) = fill_linux(&mut scenarios) {
            eprintln!("xtask: {e}: the Linux scenarios cannot run");
            print_summary(&checks, &[], t_build.elapsed(), t_all.elapsed());
            return Ok(1);
        }
    }
    let build_time = t_build.elapsed();

    let total = scenarios.len() + debian.len();
    let started = std::sync::atomic::AtomicUsize::new(0);
    let announce = |s: &keel_harness::Scenario| {
        let i = started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        eprintln!(
            "==> [{}/{total}] {}: {} (timeout {}s)",
            i + 1,
            s.name,
            s.description,
            s.timeout.as_secs()
        );
    };
    // The scenarios run in lanes, one per host CPU. QEMU's run one at a
    // time in the first lane: TCG's guest clock is the host's, so a guest
    // needs its host CPU (every QEMU scenario runs its vCPUs in one host
    // thread, `emulator::tcg_accel`) or dom0's `sleep 1` runs late. Bochs
    // keeps its own clock (`clock: sync=none`): what its guests measure
    // does not depend on the host's load, so its scenarios fill the other
    // lanes from the start, longest first, and the first lane too once the
    // QEMU scenarios are done.
    let (mut bochs, qemu): (Vec<_>, Vec<_>) = scenarios
        .iter()
        .enumerate()
        .partition(|(_, s)| s.emulator == Emulator::Bochs);
    bochs.sort_by_key(|(_, s)| std::cmp::Reverse(s.timeout));
    let lanes = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, bochs.len() + 1);
    if lanes > 1 && !bochs.is_empty() {
        eprintln!(
            "==> {lanes} lanes: the {} QEMU scenarios one after the other in the first, the {} Bochs scenarios (Bochs's clock is virtual) in the others, and in the first once QEMU's are done",
            qemu.len(),
            bochs.len()
        );
    }
    let queue = std::sync::Mutex::new(bochs.into_iter());
    let finished = std::sync::Mutex::new(Vec::new());
    let run_one = |i: usize, s: &keel_harness::Scenario| {
        announce(s);
        let r = runner::run_scenario(s, &tools, &work_root);
        let mut done = finished.lock().unwrap();
        report_one(&r);
        done.push((i, r));
    };
    let bochs_lane = || loop {
        let Some((i, s)) = queue.lock().unwrap().next() else {
            break;
        };
        run_one(i, s);
    };
    // Debian's image (cached) and keel's package, made once for both Debian
    // scenarios, once QEMU's scenarios are done (debootstrap would take CPU
    // from them): it waits mostly on the network and the disk, and nothing
    // the Bochs scenarios measure depends on the host.
    let mut prepared = None;
    std::thread::scope(|scope| {
        let first = scope.spawn(|| {
            for (i, s) in qemu {
                run_one(i, s);
            }
            let image = (!debian.is_empty()).then(|| {
                scope.spawn(|| {
                    let t = Instant::now();
                    let p = debian::base_image(&out_dir().join("debian"))
                        .and_then(|base| build_deb(&tools.kernel).map(|deb| (base, deb)));
                    (p, t.elapsed())
                })
            });
            bochs_lane();
            image.map(|h| h.join().expect("the Debian image thread panicked"))
        });
        for _ in 1..lanes {
            scope.spawn(bochs_lane);
        }
        prepared = first.join().expect("the first lane panicked");
    });
    let mut indexed = finished.into_inner().unwrap();
    indexed.sort_by_key(|(i, _)| *i);
    reports.extend(indexed.into_iter().map(|(_, r)| r));

    if let Some((prepared, time)) = prepared {
        checks.push(Check {
            name: "debian-image",
            ok: prepared.is_ok(),
            time,
            what: "Debian 12 image (debootstrap, first boot; cached in target/keel/debian) + keel's .deb, made beside the Bochs scenarios",
        });
        let mut installed: Option<PathBuf> = None;
        for s in &debian {
            announce(s);
            let r = match &prepared {
                Ok((base, deb)) => {
                    let (r, disk) = debian::run(s, base, deb, &work_root, installed.as_deref());
                    // The next scenario boots the same installed system
                    // under the other firmware.
                    if installed.is_none() {
                        installed = disk;
                    }
                    r
                }
                Err(e) => Report {
                    scenario: s.clone(),
                    verdict: keel_harness::scenario::Verdict {
                        status: Status::Failed,
                        reason: format!("no Debian image or package: {e}"),
                    },
                    wall: Duration::ZERO,
                    prepare: Duration::ZERO,
                    record: None,
                    work_dir: work_root.join(&s.name),
                },
            };
            report_one(&r);
            reports.push(r);
        }
    }
    let ok = print_summary(&checks, &reports, build_time, t_all.elapsed());
    Ok(if ok { 0 } else { 1 })
}

fn report_one(r: &Report) {
    let tag = match r.verdict.status {
        Status::Passed => "PASS",
        Status::ExpectedFailure => "PASS (expected failure seen)",
        Status::Failed => "FAIL",
    };
    eprintln!(
        "    {tag} {} in {:.1}s: {}",
        r.scenario.name,
        r.wall.as_secs_f64(),
        r.verdict.reason
    );
    if !r.verdict.ok() {
        eprint!("{}", r.details());
    }
}

/// Scenarios `cargo xtask test` runs only when `--only` names them, with
/// the reason in docs/testing.md: one that fails now and then for a reason
/// not found yet (none today), so that it cannot make every CI run a coin
/// toss, and the Bochs domU scenarios, 20 minutes or more each on the
/// 2-core CI host, beyond `.ci/run`'s budget.
const OPT_IN: &[&str] = &[
    "bochs-intel-domu",
    "bochs-intel-domu-life",
    "bochs-intel-domu-disk",
];

/// The lint and style checks `cargo xtask test` runs after the host tests.
const LINTS: &[(&str, &[&str], &str)] = &[
    (
        "fmt",
        &["fmt", "--all", "--", "--check"],
        "cargo fmt --all -- --check",
    ),
    (
        "clippy-host",
        &["clippy", "--all-targets", "--", "-D", "warnings"],
        "cargo clippy --all-targets -- -D warnings (host crates)",
    ),
    (
        "clippy-bare-metal",
        &[
            "clippy",
            "-p",
            "keel-hypervisor",
            "-p",
            "keel-test-guest",
            "--target",
            "x86_64-unknown-none",
            "--",
            "-D",
            "warnings",
        ],
        "cargo clippy of the kernel and the test guest for x86_64-unknown-none -- -D warnings",
    ),
];

/// One non-scenario check of the suite (host tests, lints).
struct Check {
    name: &'static str,
    ok: bool,
    time: Duration,
    what: &'static str,
}

impl Check {
    fn new(name: &'static str, ok: bool, started: Instant, what: &'static str) -> Self {
        Check {
            name,
            ok,
            time: started.elapsed(),
            what,
        }
    }
}

fn print_summary(checks: &[Check], reports: &[Report], build: Duration, total: Duration) -> bool {
    let mut out = String::from("\n================ keel test summary ================\n");
    let mut ok = true;
    for c in checks {
        ok &= c.ok;
        out += &format!(
            "{:<6} {:<30} {:>7.1}s  {}\n",
            if c.ok { "ok" } else { "FAIL" },
            c.name,
            c.time.as_secs_f64(),
            c.what
        );
    }
    out += &format!(
        "{:<6} {:<30} {:>7.1}s  kernel + image builder\n",
        "",
        "build",
        build.as_secs_f64()
    );
    for r in reports {
        let (tag, what) = match r.verdict.status {
            Status::Passed => ("ok", String::new()),
            Status::ExpectedFailure => ("ok", " [expected failure detected]".to_string()),
            Status::Failed => ("FAIL", format!(" -- {}", r.verdict.reason)),
        };
        ok &= r.verdict.ok();
        out += &format!(
            "{tag:<6} {:<30} {:>7.1}s  {}{what}\n",
            r.scenario.name,
            r.wall.as_secs_f64(),
            r.scenario.description
        );
    }
    let failed = reports.iter().filter(|r| !r.verdict.ok()).count();
    out += &format!(
        "---------------------------------------------------\n{}: {} scenario(s), {} failed, total {:.0}s\n",
        if ok { "PASSED" } else { "FAILED" },
        reports.len(),
        failed,
        total.as_secs_f64()
    );
    print!("{out}");
    let _ = std::fs::create_dir_all(out_dir());
    let _ = std::fs::write(out_dir().join("test-summary.txt"), &out);
    ok
}

// -------------------------------------------------------------------- bench

/// A benchmark binary: prints a Markdown section on stdout, progress on stderr.
struct Bench {
    name: &'static str,
    package: &'static str,
    package_dir: &'static str,
    bin: &'static str,
    packages: &'static [&'static str],
}

const BENCHES: &[Bench] = &[Bench {
    name: "xenstored",
    package: "keel-xenstored",
    package_dir: "dom0-tools/xenstored",
    bin: "xenstored-bench",
    packages: &["xenstore-utils"],
}];

/// A bench section's run: its Markdown.
type BenchFn = fn() -> Result<String>;

/// The bench's sections, by the name `--only` takes.
const BENCH_SECTIONS: &[&str] = &[
    "xenstored",
    "vm-exits",
    "exit-counters",
    "mgmt",
    "fuzz",
    "linux-boot",
    "boot-vs-xen",
    "domu",
    "split",
];

fn cmd_bench(a: &[String]) -> Result<u8> {
    let mut args = Args::new(a);
    let mut only: Vec<String> = Vec::new();
    while let Some(f) = args.next() {
        match f.as_str() {
            "--only" => {
                let v: String = args.parsed(&f)?;
                if !BENCH_SECTIONS.contains(&v.as_str()) {
                    return Err(format!(
                        "bench --only: unknown section '{v}' (one of {})",
                        BENCH_SECTIONS.join(", ")
                    ));
                }
                only.push(v);
            }
            other => return Err(format!("bench: unknown option '{other}'")),
        }
    }
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let mut sections = Vec::new();
    let mut skipped = Vec::new();
    let mut failed = false;
    for b in BENCHES.iter().filter(|b| wanted(b.name)) {
        let manifest = root().join(b.package_dir).join("Cargo.toml");
        let declared = std::fs::read_to_string(&manifest)
            .map(|m| m.contains(&format!("name = \"{}\"", b.bin)))
            .unwrap_or(false);
        if !declared {
            skipped.push(format!(
                "{}: no `{}` binary in {} yet",
                b.name, b.bin, b.package_dir
            ));
            continue;
        }
        host::ensure_packages(b.packages)?;
        eprintln!(
            "==> bench {}: cargo run --release -p {} --bin {}",
            b.name, b.package, b.bin
        );
        let t = Instant::now();
        let out = cargo()
            .args([
                "run",
                "--quiet",
                "--release",
                "-p",
                b.package,
                "--bin",
                b.bin,
            ])
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() {
            failed = true;
            skipped.push(format!("{}: failed ({})", b.name, out.status));
            continue;
        }
        if body.is_empty() {
            skipped.push(format!("{}: printed nothing", b.name));
            continue;
        }
        sections.push(format!(
            "## {}\n\n`cargo run --release -p {} --bin {}` ({:.0}s)\n\n{body}\n",
            b.name,
            b.package,
            b.bin,
            t.elapsed().as_secs_f64()
        ));
    }
    let runs: [(&str, &str, BenchFn); 8] = [
        ("vm-exits", "VM exits", bench_vm_exits),
        ("exit-counters", "VM-exit counter cost", bench_exit_counters),
        ("mgmt", "management-call latency", bench_mgmt),
        ("fuzz", "hypercall fuzzing", || bench_fuzz(FUZZ_BENCH_COUNT)),
        ("linux-boot", "Linux boot", bench_linux_boot),
        ("boot-vs-xen", "boot against Xen 4.17", bench_boot_vs_xen),
        ("domu", "domU creation", bench_domu),
        ("split", "split drivers", bench_split),
    ];
    for (name, what, f) in runs {
        if !wanted(name) {
            continue;
        }
        match f() {
            Ok(section) => sections.push(section),
            Err(e) => {
                failed = true;
                skipped.push(format!("{what}: {e}"));
            }
        }
    }
    for s in &skipped {
        eprintln!("skipped: {s}");
    }
    if sections.is_empty() {
        eprintln!("no benchmark ran; docs/benchmarks.md left as it is");
        return Ok(if failed { 1 } else { 0 });
    }
    let path = root().join("docs/benchmarks.md");
    if !only.is_empty() {
        // Only these sections: replace them in the document, keep the rest.
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let doc = replace_sections(&old, &sections);
        std::fs::write(&path, doc).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("updated {} ({})", path.display(), only.join(", "));
        return Ok(if failed { 1 } else { 0 });
    }
    let mut doc =
        String::from("# Benchmarks\n\nGenerated by `cargo xtask bench`; do not edit by hand.\n\n");
    doc += &format!("Host: {}\n\n", host_description());
    for s in &sections {
        doc += s;
        doc.push('\n');
    }
    if !skipped.is_empty() {
        doc += "## Skipped\n\n";
        for s in &skipped {
            doc += &format!("- {s}\n");
        }
    }
    std::fs::write(&path, doc).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(if failed { 1 } else { 0 })
}

/// `doc` with each of `sections` (Markdown starting `## Title`) in place
/// of its namesake, or, if it has none, added before `## Skipped` (or at
/// the end).
fn replace_sections(doc: &str, sections: &[String]) -> String {
    // The document's parts: a preamble, then one part per `## ` heading.
    let mut parts: Vec<String> = vec![String::new()];
    for line in doc.lines() {
        if line.starts_with("## ") {
            parts.push(String::new());
        }
        let last = parts.last_mut().expect("never empty");
        last.push_str(line);
        last.push('\n');
    }
    let title = |p: &str| p.lines().next().unwrap_or("").to_string();
    for s in sections {
        let body = format!("{}\n", s.trim_end());
        match parts
            .iter()
            .position(|p| p.starts_with("## ") && title(p) == title(s))
        {
            Some(i) => parts[i] = body + "\n",
            None => {
                let at = parts
                    .iter()
                    .position(|p| title(p) == "## Skipped")
                    .unwrap_or(parts.len());
                let before = &mut parts[at - 1];
                if !before.is_empty() && !before.ends_with("\n\n") {
                    before.push('\n');
                }
                parts.insert(at, body + "\n");
            }
        }
    }
    let mut out = parts.concat();
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// A VM-exit bench run's two rates ("bench: hypercall: 100114 exits in
/// 1577094 us = 63480 exits/s (AMD-V)"): null hypercall and CPUID exits/s,
/// and the backend.
fn exit_rates(lines: &[String]) -> Option<(u64, u64, String)> {
    let rate = |what: &str| -> Option<(u64, String)> {
        let l = lines
            .iter()
            .find(|l| l.contains(&format!("bench: {what}: ")))?;
        let (_, rest) = l.split_once(" = ")?;
        let (n, rest) = rest.split_once(" exits/s (")?;
        Some((
            n.trim().parse().ok()?,
            rest.trim_end_matches(')').to_string(),
        ))
    };
    let (hc, backend) = rate("hypercall")?;
    let (cpuid, _) = rate("cpuid")?;
    Some((hc, cpuid, backend))
}

fn bench_model(s: &keel_harness::Scenario) -> String {
    match s.emulator {
        keel_harness::Emulator::Qemu => format!(
            "QEMU TCG{} -cpu {}",
            if s.single_thread_tcg {
                " (one thread)"
            } else {
                ""
            },
            s.vendor.qemu_cpu()
        ),
        keel_harness::Emulator::Bochs => format!("Bochs 2.7 {}", s.vendor.bochs_cpu()),
    }
}

/// Runs of each configuration in the exit-counter bench (alternating):
/// QEMU's clock is the host's (noisy when the host is busy: the best of
/// several), Bochs' counts instructions (its runs repeat exactly).
fn counter_bench_rounds(e: keel_harness::Emulator) -> usize {
    match e {
        keel_harness::Emulator::Qemu => 4,
        keel_harness::Emulator::Bochs => 1,
    }
}

/// The exit counters' cost: the VM-exit bench scenarios with the counters
/// on (the default) and off (`perfc=0`), alternating, side by side.
fn bench_exit_counters() -> Result<String> {
    host::ensure_packages(&emulator::ALL_PACKAGES)?;
    let tools = build_tools()?;
    let guest = build_test_guest()?;
    let work_root = out_dir().join("bench");
    let mut rows = Vec::new();
    let mut all_runs = Vec::new();
    for on in keel_harness::bench_scenarios(&guest) {
        let mut off = on.clone().extra_cmdline("perfc=0");
        off.name = format!("{}-perfc0", on.name);
        // (hypercall, CPUID) exits/s of each run: on, then off.
        let mut runs: [Vec<(u64, u64)>; 2] = [Vec::new(), Vec::new()];
        let mut backend = String::new();
        for _ in 0..counter_bench_rounds(on.emulator) {
            for (i, s) in [&on, &off].into_iter().enumerate() {
                let (lines, _) = bench_console(s, &tools, &work_root)?;
                let (hc, cpuid, b) = exit_rates(&lines)
                    .ok_or_else(|| format!("{}: no bench lines on the console", s.name))?;
                if i == 1
                    && !lines
                        .iter()
                        .any(|l| l.contains("perfc=0: VM exits are not counted"))
                {
                    return Err(format!("{}: keel did not take perfc=0", s.name));
                }
                eprintln!("    {}: {hc} hypercall, {cpuid} CPUID exits/s", s.name);
                runs[i].push((hc, cpuid));
                backend = b;
            }
        }
        let best = |r: &[(u64, u64)]| {
            (
                r.iter().map(|x| x.0).max().unwrap_or(0),
                r.iter().map(|x| x.1).max().unwrap_or(0),
            )
        };
        let list = |r: &[(u64, u64)]| {
            r.iter()
                .map(|(h, c)| format!("{h}/{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        all_runs.push(format!(
            "- {}: on {}; off {}",
            bench_model(&on),
            list(&runs[0]),
            list(&runs[1])
        ));
        rows.push((bench_model(&on), backend, best(&runs[0]), best(&runs[1])));
    }
    let mut out = format!(
        "## VM-exit counter cost\n\n\
         `cargo xtask bench` (alone: `--only exit-counters`): the VM-exit runs above (`test=bench`: \
         100,000 null hypercalls, 100,000 CPUIDs) with keel's VM-exit counters on (the default: \
         every exit adds one to its vCPU's counter for the exit's reason, a relaxed atomic, and \
         the vCPU's time in guest mode and in keel after the exit to two more, \
         `sysctl perfc_op` reads them) and off (`perfc=0` on keel's command line), on the same \
         emulator one after the other: under QEMU {} runs of each, alternating, the best run of \
         each; under Bochs one of each. \
         The ratio is counters-on over counters-off (1.00: no cost; below 1: slower with them). \
         **Emulated figures.** Bochs' clock counts emulated instructions (`ips`, `clock: \
         sync=none`), so its runs repeat to the exit and its ratio is the counters' cost in guest \
         time; QEMU TCG's clock is the host's, so on a busy host its ratio is mostly the host's \
         noise.\n\n\
         | machine | backend | hypercall exits/s, on | off | on/off | CPUID exits/s, on | off | on/off |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
        counter_bench_rounds(keel_harness::Emulator::Qemu)
    );
    for (model, backend, (hc_on, cpuid_on), (hc_off, cpuid_off)) in &rows {
        out += &format!(
            "| {model} | {backend} | {hc_on} | {hc_off} | {:.3} | {cpuid_on} | {cpuid_off} | {:.3} |\n",
            *hc_on as f64 / (*hc_off).max(1) as f64,
            *cpuid_on as f64 / (*cpuid_off).max(1) as f64
        );
    }
    out += "\nEvery run (hypercall/CPUID exits/s, in the order run):\n\n";
    out += &all_runs.join("\n");
    out.push('\n');
    Ok(out)
}

/// `keelctl list` calls per management-call bench run.
const MGMT_BENCH_CALLS: u32 = 200;

/// Management-call latency: dom0 (the `qemu-amd-linux` scenario) runs
/// `keelctl list` N times in a shell loop (`keel.bench_list=N`), timed
/// with its uptime clock.
fn bench_mgmt() -> Result<String> {
    host::ensure_packages(&emulator::ALL_PACKAGES)?;
    let tools = build_tools()?;
    let mut s = keel_harness::linux_scenarios()
        .into_iter()
        .find(|s| s.name == "qemu-amd-linux")
        .ok_or("no qemu-amd-linux scenario")?
        .module(
            "dom0-cmdline",
            format!(
                "{} keel.bench_list={MGMT_BENCH_CALLS}",
                keel_harness::scenario::DOM0_CMDLINE
            )
            .into_bytes(),
        );
    s.name = "bench-mgmt-qemu-amd".into();
    let mut one = [s];
    fill_linux(&mut one)?;
    let work_root = out_dir().join("bench");
    let (lines, _) = bench_console(&one[0], &tools, &work_root)?;
    // "KEEL-LINUX: bench: keelctl list x200 in 13.53 s", and "bench64:"
    // for the same with 64 domains.
    let timing = |key: &str, tool: &str| {
        let key = format!("KEEL-LINUX: {key}: {tool} list x");
        lines
            .iter()
            .find_map(|l| {
                let (_, rest) = l.split_once(key.as_str())?;
                let (n, rest) = rest.split_once(" in ")?;
                let secs: f64 = rest.strip_suffix(" s")?.trim().parse().ok()?;
                Some((n.trim().parse::<u32>().ok()?, secs))
            })
            .ok_or(format!("no '{key}' timing for {tool} on dom0's console"))
    };
    let listed = lines
        .iter()
        .find_map(|l| {
            l.split_once("KEEL-LINUX: bench: domains listed: ")
                .map(|x| x.1.trim())
        })
        .ok_or("no 64-domain line on dom0's console")?;
    if listed != "keelctl 63 paused + dom0, xl 63" {
        return Err(format!(
            "the 64-domain rows would not be 64 domains: dom0 saw {listed}"
        ));
    }
    let m = bench_model(&one[0]);
    let mut rows = String::new();
    for (key, doms) in [("bench", 1), ("bench64", 64)] {
        let (n, secs) = timing(key, "keelctl")?;
        let (xn, xsecs) = timing(key, "xl")?;
        let ms = secs * 1000.0 / n.max(1) as f64;
        let xl_ms = xsecs * 1000.0 / xn.max(1) as f64;
        eprintln!("    {doms} domain(s): keelctl list {ms:.2} ms, xl list {xl_ms:.2} ms per call");
        let ratio = xl_ms / ms.max(f64::MIN_POSITIVE);
        rows += &format!(
            "| {m} | {doms} | `keelctl list` | {n} | {secs:.2} s | {ms:.2} ms | 1 |\n\
             | {m} | {doms} | `xl list` | {xn} | {xsecs:.2} s | {xl_ms:.2} ms | {ratio:.2} |\n"
        );
    }
    let after = lines
        .iter()
        .find_map(|l| {
            l.split_once("KEEL-LINUX: bench: after destroy: ")
                .map(|x| x.1.trim())
        })
        .unwrap_or("(not reported)");
    Ok(format!(
        "## Management-call latency (dom0)\n\n\
         `cargo xtask bench` (alone: `--only mgmt`): dom0 of the `qemu-amd-linux` scenario (Debian's \
         kernel as PVH dom0, 2 vCPUs, busybox userspace) runs `keelctl list >/dev/null` {MGMT_BENCH_CALLS} times \
         in shell loops (`keel.bench_list={MGMT_BENCH_CALLS}` on its command line), timed with its uptime \
         clock (10 ms resolution over each loop). Each call is a whole process: fork, exec of \
         the static keelctl, open `/dev/xen/privcmd`, `getdomaininfolist` (sysctl, 32 domains a \
         call), a xenstore read of each other domain's name (as xl reads them), the table on stdout. **Emulated figures** (QEMU TCG).\n\n\
         Then Debian's unmodified `xl list` (xen-utils 4.17, dynamically linked against glibc, \
         libxenlight and libxenctrl; a xenstore read of each domain's name through keel-xenstored) \
         as many times, in the same boot, in four rounds in which the two take turns (so that a \
         load on the host weighs on both alike): the ratio is xl's time over keelctl's. Then both again \
         with 64 domains: `keel-mkdomains 63` makes 63 empty, paused PVH domains beside dom0 \
         (`createdomain`, `max_vcpus`, `max_mem`: the first steps of a build), named in xenstore \
         (seen: {listed}); `keelctl destroy` removes them after (seen: {after} left).\n\n\
         | machine | domains | command | calls | total | per call | ratio |\n\
         |---|---:|---|---:|---:|---:|---:|\n\
         {rows}"
    ))
}

/// VM-exit round trips per second on each emulator, side by side in one run.
fn bench_vm_exits() -> Result<String> {
    host::ensure_packages(&emulator::ALL_PACKAGES)?;
    let tools = build_tools()?;
    let guest = build_test_guest()?;
    let work_root = out_dir().join("bench");
    let mut rows = Vec::new();
    for s in keel_harness::bench_scenarios(&guest) {
        let (lines, wall) = bench_console(&s, &tools, &work_root)?;
        let (hc, cpuid, backend) = exit_rates(&lines)
            .ok_or_else(|| format!("{}: no bench lines on the console", s.name))?;
        // "(XEN) bench: evtchn-ping-pong: 20000 round trips in 1234 us = 32414 vCPU switches/s on one CPU (AMD-V)"
        let switches = lines
            .iter()
            .find(|l| l.contains("bench: evtchn-ping-pong: "))
            .and_then(|l| l.split_once(" = "))
            .and_then(|(_, r)| r.split_once(" vCPU switches/s"))
            .and_then(|(n, _)| n.trim().parse::<u64>().ok())
            .ok_or_else(|| format!("{}: no ping-pong line on the console", s.name))?;
        rows.push((bench_model(&s), backend, hc, cpuid, switches, wall));
    }
    let base = rows.first().map(|r| r.2.max(1)).unwrap_or(1) as f64;
    let mut out = String::from(
        "## VM exits (keel's test guest)\n\n\
         `cargo xtask bench`: keel boots with `test=bench` and runs its test guest through 100,000 \
         null hypercalls (VMCALL/VMMCALL) and 100,000 CPUIDs, each a full VM exit and re-entry; \
         then two test-guest domains on one CPU ping-pong 20,000 times over an event channel \
         (EVTCHNOP_send, SCHEDOP_poll): each round trip is two vCPU switches (block, pick, \
         release the old vCPU's VMCS/FPU state, load the new one's). \
         Rates are exits per second of the emulated machine's TSC, which keel calibrates against \
         the PIT. **These are emulated figures**, measured side by side in one run: they compare \
         emulators and keel versions, not hardware. Real timings need KVM with nested \
         virtualization (`--accel kvm`).\n\n\
         | machine | backend | null hypercall exits/s | CPUID exits/s | vCPU switches/s (one CPU) | switches per null hypercall | hypercall rate vs first row | run wall time |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (model, backend, hc, cpuid, switches, wall) in &rows {
        out += &format!(
            "| {model} | {backend} | {hc} | {cpuid} | {switches} | {:.2} | {:.2} | {wall:.1} s |\n",
            *switches as f64 / (*hc).max(1) as f64,
            *hc as f64 / base
        );
    }
    Ok(out)
}

/// `cargo xtask boot-vs-xen`: the boot comparison against Xen 4.17 alone.
fn cmd_boot_vs_xen(a: &[String]) -> Result<u8> {
    if let Some(x) = a.first() {
        return Err(format!("boot-vs-xen takes no options (got '{x}')"));
    }
    println!("{}", bench_boot_vs_xen()?);
    Ok(0)
}

fn bench_boot_vs_xen() -> Result<String> {
    host::ensure_packages(&emulator::ALL_PACKAGES)?;
    let kernel = build_kernel()?;
    xenbench::bench(&kernel, &out_dir().join("bench"))
}

/// Hypercalls per vendor in the fuzzing benchmark.
const FUZZ_BENCH_COUNT: u32 = 1_000_000;

/// `cargo xtask fuzz [--count N]`: the fuzzing benchmark alone.
fn cmd_fuzz(a: &[String]) -> Result<u8> {
    let mut args = Args::new(a);
    let mut count = FUZZ_BENCH_COUNT;
    while let Some(f) = args.next() {
        match f.as_str() {
            "--count" => count = args.parsed(&f)?,
            other => return Err(format!("fuzz: unknown option '{other}'")),
        }
    }
    let section = bench_fuzz(count)?;
    println!("{section}");
    Ok(0)
}

/// The hypercall-fuzzing runs (`test=fuzz fuzz_count=count`) on each
/// emulator, one after the other: their table.
fn bench_fuzz(count: u32) -> Result<String> {
    host::ensure_packages(&emulator::ALL_PACKAGES)?;
    let tools = build_tools()?;
    let guest = build_test_guest()?;
    let work_root = out_dir().join("bench");
    let mut rows = Vec::new();
    for s in keel_harness::fuzz_bench_scenarios(&guest, count) {
        let (lines, wall) = bench_console(&s, &tools, &work_root)?;
        let row = fuzz::parse(&lines)
            .ok_or_else(|| format!("{}: no fuzzing summary on the console", s.name))?;
        let model = bench_model(&s);
        eprintln!(
            "    {model}: {} hypercalls, {}/s, {wall:.1} s",
            row.calls, row.per_s
        );
        rows.push((model, row, wall));
    }
    Ok(fuzz::section(count, &rows))
}

/// The kernel's own clock at `Run /init` in a console line
/// ("... [    2.488294] Run /init as init process").
fn run_init_secs(lines: &[String]) -> Option<f64> {
    let l = lines.iter().find(|l| l.contains("] Run /init"))?;
    let (_, rest) = l.split_once('[')?;
    rest.split_once(']')?.0.trim().parse().ok()
}

/// Debian's kernel to userspace and back: on keel (the `linux_scenarios`,
/// each emulator) against the same kernel and initramfs booted straight
/// Runs one benchmark scenario: its console lines and the emulator's wall
/// time (s), or why it failed.
fn bench_console(
    s: &keel_harness::Scenario,
    tools: &Tools,
    work_root: &Path,
) -> Result<(Vec<String>, f64)> {
    eprintln!("==> bench {}: {}", s.name, s.description);
    let r = runner::run_scenario(s, tools, work_root);
    if !r.verdict.ok() {
        eprint!("{}", r.details());
        return Err(format!("{} failed: {}", s.name, r.verdict.reason));
    }
    let wall = r.wall.as_secs_f64();
    Ok((
        r.record.map(|rec| rec.console.lines).unwrap_or_default(),
        wall,
    ))
}

/// under QEMU TCG (PVH entry, same vCPUs and memory), in one run.
fn bench_linux_boot() -> Result<String> {
    host::ensure_packages(&emulator::ALL_PACKAGES)?;
    let tools = build_tools()?;
    // The one-boot scenarios (not the reboot and device runs).
    let mut scenarios: Vec<_> = keel_harness::linux_scenarios()
        .into_iter()
        .filter(|s| {
            matches!(
                s.name.as_str(),
                "qemu-amd-linux" | "bochs-intel-linux" | "bochs-amd-linux"
            )
        })
        .collect();
    fill_linux(&mut scenarios)?;
    let work_root = out_dir().join("bench");
    std::fs::create_dir_all(&work_root).map_err(|e| e.to_string())?;

    // The baseline: no hypervisor.
    eprintln!("==> bench linux-direct: the same kernel straight under QEMU TCG (-cpu EPYC, 2 vCPUs, 256 MiB)");
    let single = scenarios.iter().any(|s| s.single_thread_tcg);
    let (_, direct_wall, direct_lines) = direct_boot(&work_root, 2, 256, single)?;
    let direct_init = run_init_secs(&direct_lines).ok_or("direct boot: no 'Run /init' line")?;

    let mut rows = vec![(
        "QEMU TCG -cpu EPYC, no hypervisor".to_string(),
        "-".to_string(),
        direct_init,
        direct_wall,
    )];
    for s in &scenarios {
        let (lines, wall) = bench_console(s, &tools, &work_root)?;
        let init = run_init_secs(&lines).ok_or(format!("{}: no 'Run /init' line", s.name))?;
        let model = match s.emulator {
            keel_harness::Emulator::Qemu => format!("QEMU TCG -cpu {}, keel", s.vendor.qemu_cpu()),
            keel_harness::Emulator::Bochs => format!("Bochs 2.7 {}, keel", s.vendor.bochs_cpu()),
        };
        let backend = match s.vendor {
            keel_harness::Vendor::Intel => "VT-x",
            keel_harness::Vendor::Amd => "AMD-V",
        };
        rows.push((model, backend.to_string(), init, wall));
    }
    let mut out = String::from(
        "## Linux boot (Debian's kernel as a PVH domain, 2 vCPUs)\n\n\
         `cargo xtask bench` boots Debian's stock kernel and the busybox initramfs of \
         `cargo xtask linux` to userspace and back to power-off: as keel's dom0 (the \
         `*-linux` test scenarios: GRUB, keel, then the kernel), and, as the baseline, straight \
         under QEMU TCG with no hypervisor (`-kernel vmlinux`, its PVH entry). \
         *Run /init* is the kernel's own clock at `Run /init`; *wall* is the emulator's whole \
         run, firmware and keel's boot included. Ratios are against the baseline row, measured \
         side by side in this run. **These are emulated figures**: they compare emulators and \
         keel versions, not hardware.\n\n\
         | machine | backend | Run /init (kernel clock) | ratio | wall, start to power-off | ratio |\n\
         |---|---|---:|---:|---:|---:|\n",
    );
    for (model, backend, init, wall) in &rows {
        out += &format!(
            "| {model} | {backend} | {init:.2} s | {:.2} | {wall:.1} s | {:.2} |\n",
            init / direct_init,
            wall / direct_wall
        );
    }
    Ok(out)
}

/// Debian's kernel straight under QEMU TCG (`-kernel vmlinux`, its PVH
/// entry) with the busybox initramfs, to power-off: the wall time until
/// its /init's first line reached the serial log (the log is watched every
/// 10 ms), the wall time of the whole run, and its console lines.
/// `single`: one TCG thread, as the keel run it is measured against.
fn direct_boot(
    work_root: &Path,
    cpus: u32,
    mib: u32,
    single: bool,
) -> Result<(f64, f64, Vec<String>)> {
    let dir = root().join("target/keel/linux");
    let log = work_root.join("linux-direct.serial.log");
    let _ = std::fs::remove_file(&log);
    let t = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            keel_harness::emulator::tcg_accel(single),
            "-cpu",
            "EPYC",
        ])
        .args(["-smp", &cpus.to_string(), "-m", &mib.to_string()])
        .args(["-nodefaults", "-display", "none", "-no-reboot", "-serial"])
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(dir.join("vmlinux"))
        .arg("-initrd")
        .arg(dir.join("initrd.cpio.gz"))
        .args(["-append", "console=ttyS0 panic=-1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("qemu-system-x86_64: {e}"))?;
    let mut to_user = None;
    let st = loop {
        if to_user.is_none()
            && std::fs::read_to_string(&log)
                .is_ok_and(|l| l.contains("KEEL-LINUX: userspace reached"))
        {
            to_user = Some(t.elapsed().as_secs_f64());
        }
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            break st;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let wall = t.elapsed().as_secs_f64();
    let to_user = to_user.unwrap_or(wall);
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect();
    if !st.success() || !lines.iter().any(|l| l.contains("KEEL-LINUX: powering off")) {
        return Err(format!(
            "the direct QEMU boot did not reach power-off (see {})",
            log.display()
        ));
    }
    Ok((to_user, wall, lines))
}

/// The number after `key` in the first console line holding it, up to the
/// next space.
fn figure_after(lines: &[String], key: &str) -> Option<f64> {
    lines.iter().find_map(|l| {
        let (_, rest) = l.split_once(key)?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The median of `v` (`None` if empty).
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// domU creation (issue 14): dom0 of a QEMU TCG AMD run (`keel.bench_domu`)
/// times `keelctl create -p` for 256 MiB and 1 GiB guests, and `create` to
/// the domU's first userspace line, against the same kernel booted straight
/// under the same QEMU; and what keel's free memory loses to an idle domU
/// beyond its RAM.
fn bench_domu() -> Result<String> {
    host::ensure_packages(&emulator::ALL_PACKAGES)?;
    let tools = build_tools()?;
    let mut one = [keel_harness::scenario::domu_bench(
        "bench-domu-qemu-amd",
        keel_harness::Emulator::Qemu,
        keel_harness::Vendor::Amd,
    )];
    fill_linux(&mut one)?;
    let work_root = out_dir().join("bench");
    std::fs::create_dir_all(&work_root).map_err(|e| e.to_string())?;
    eprintln!("==> bench linux-direct: the same kernel straight under QEMU TCG (-cpu EPYC, 2 vCPUs, 256 MiB, one TCG thread as the domU scenarios)");
    let (direct_user, _, direct_lines) = direct_boot(&work_root, 2, 256, one[0].single_thread_tcg)?;
    let direct_init = run_init_secs(&direct_lines).ok_or("direct boot: no 'Run /init' line")?;
    let (lines, _) = bench_console(&one[0], &tools, &work_root)?;
    let creates = |mib: u32| -> Vec<f64> {
        let key = format!("KEEL-LINUX: bench-domu: create -p {mib} MiB exit 0 in ");
        lines
            .iter()
            .filter_map(|l| {
                l.split_once(key.as_str())?
                    .1
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    };
    let (c256, c1g) = (creates(256), creates(1024));
    if c256.len() != 3 || c1g.len() != 3 {
        return Err(format!(
            "expected 3 timed creates of each size, dom0 printed {} and {}",
            c256.len(),
            c1g.len()
        ));
    }
    let to_user = figure_after(&lines, "KEEL-LINUX: bench-domu: create to userspace in ")
        .ok_or("no 'create to userspace' line")?;
    let domu_init = lines
        .iter()
        .find(|l| l.contains("KEEL-LINUX: bench-domu: domU: "))
        .and_then(|l| run_init_secs(std::slice::from_ref(l)))
        .ok_or("no domU 'Run /init' line")?;
    let idle = lines
        .iter()
        .find_map(|l| {
            l.split_once("KEEL-LINUX: bench-domu: idle domU: free pages ")
                .map(|x| x.1.to_string())
        })
        .ok_or("no idle-domU line")?;
    // "<before> before, <after> with it up (its RAM: 65536)"
    let nums: Vec<i64> = idle
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let [before, after, ram] = nums[..] else {
        return Err(format!("idle-domU line not understood: {idle}"));
    };
    let overhead = before - after - ram;
    let (m256, m1g) = (median(c256.clone()).unwrap(), median(c1g.clone()).unwrap());
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    eprintln!(
        "    create -p: 256 MiB {m256:.2} s, 1 GiB {m1g:.2} s; create to userspace {to_user:.2} s (direct boot {direct_user:.2} s); overhead {overhead} pages"
    );
    Ok(format!(
        "## domU creation (keelctl, dom0 on QEMU TCG AMD)\n\n\
         `cargo xtask bench` (alone: `--only domu`): keel on QEMU TCG `-cpu EPYC` (2 CPUs, 2 GiB, \
         one TCG thread as in the domU scenarios, and so is the baseline), dom0 Debian's kernel with 512 MiB (`keel.bench_domu` on its command line). dom0 times, with \
         its own clock (`/proc/uptime`, 10 ms), `keelctl create -p` of the domU scenarios' guest \
         (Debian's `vmlinuz` as shipped, which keelctl decompresses, and a busybox initramfs; built \
         as libxl builds a PVH guest, then destroyed) with 256 MiB and 1 GiB, three rounds each; \
         then `keelctl create` of a 256 MiB, 2-vCPU guest until its `/init` prints its first line \
         on its console (keel-consoled's log), and the domU kernel's own clock at `Run /init`. The \
         baseline: the same kernel booted straight under the same QEMU with 2 vCPUs and 256 MiB \
         (`-kernel vmlinux`, PVH entry, `console=ttyS0`, dom0's busybox initramfs), from QEMU's \
         start to its /init's first line on the serial port, in the same run. Then, with that domU \
         up and idle for 5 s, keel's free memory against before its create: what it costs beyond \
         its 256 MiB (shared_info, grant frames, p2m tables, keel's per-domain frames). \
         **Emulated figures**.\n\n\
         | measure | value | baseline (no hypervisor) | ratio |\n\
         |---|---:|---:|---:|\n\
         | `keelctl create -p`, 256 MiB (median of {list256}) | {m256:.2} s | | |\n\
         | `keelctl create -p`, 1 GiB (median of {list1g}) | {m1g:.2} s | | |\n\
         | `keelctl create` to the domU's first userspace line | {to_user:.2} s | {direct_user:.2} s | {r1:.2} |\n\
         | domU kernel clock at `Run /init` | {domu_init:.2} s | {direct_init:.2} s | {r2:.2} |\n\
         | keel's memory per idle 256 MiB domU beyond its RAM | {overhead} pages ({kib} KiB) | | |\n",
        list256 = list(&c256),
        list1g = list(&c1g),
        r1 = to_user / direct_user,
        r2 = domu_init / direct_init,
        kib = overhead * 4,
    ))
}

/// The split drivers against dom0 itself (issue 15): the split-bench
/// scenario (`keel.bench_split`, see `split.rs`) on QEMU TCG AMD and on
/// Bochs Intel, one after the other. A run that fails is in the section
/// as such, without figures; if none ran, the section is an error.
fn bench_split() -> Result<String> {
    host::ensure_packages(&emulator::ALL_PACKAGES)?;
    let tools = build_tools()?;
    let mut scenarios = [
        keel_harness::scenario::split_bench(
            "bench-split-qemu-amd",
            keel_harness::Emulator::Qemu,
            keel_harness::Vendor::Amd,
        ),
        keel_harness::scenario::split_bench(
            "bench-split-bochs-intel",
            keel_harness::Emulator::Bochs,
            keel_harness::Vendor::Intel,
        ),
    ];
    fill_linux(&mut scenarios)?;
    let work_root = out_dir().join("bench");
    std::fs::create_dir_all(&work_root).map_err(|e| e.to_string())?;
    let mut outcomes = Vec::new();
    for s in &scenarios {
        let machine = bench_model(s);
        let run = bench_console(s, &tools, &work_root).and_then(|(lines, _)| split::parse(&lines));
        match &run {
            Ok(r) => eprintln!("    {machine}: {}", split::summary(r)),
            Err(e) => eprintln!("    {machine}: no figures: {e}"),
        }
        outcomes.push((machine, run));
    }
    if outcomes.iter().all(|(_, r)| r.is_err()) {
        let why: Vec<String> = outcomes
            .iter()
            .filter_map(|(m, r)| r.as_ref().err().map(|e| format!("{m}: {e}")))
            .collect();
        return Err(why.join("; "));
    }
    Ok(split::section(&outcomes))
}

fn host_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let rustc = Command::new("rustc")
        .arg("--version")
        .current_dir(root())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {n} CPUs; {rustc}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_only_replaces_its_sections() {
        let doc =
            "# Benchmarks\n\nHost: x\n\n## A\n\nold a\n\n## B\n\nold b\n\n## Skipped\n\n- z\n";
        let new = replace_sections(
            doc,
            &["## B\n\nnew b\n".to_string(), "## C\n\nnew c\n".to_string()],
        );
        assert_eq!(
            new,
            "# Benchmarks\n\nHost: x\n\n## A\n\nold a\n\n## B\n\nnew b\n\n## C\n\nnew c\n\n## Skipped\n\n- z\n"
        );
        // Without a Skipped part, a new one goes last; an empty document works.
        assert_eq!(
            replace_sections("## A\n\na\n", &["## C\n\nc".to_string()]),
            "## A\n\na\n\n## C\n\nc\n"
        );
        assert_eq!(
            replace_sections("", &["## C\n\nc\n".to_string()]),
            "## C\n\nc\n"
        );
        assert!(exit_rates(&[
            "(XEN) bench: hypercall: 1 exits in 2 us = 63480 exits/s (AMD-V)".into()
        ])
        .is_none());
        assert_eq!(
            exit_rates(&[
                "(XEN) bench: hypercall: 1 exits in 2 us = 63480 exits/s (AMD-V)".into(),
                "(XEN) bench: cpuid: 1 exits in 2 us = 55322 exits/s (AMD-V)".into(),
            ]),
            Some((63480, 55322, "AMD-V".into()))
        );
    }
}
