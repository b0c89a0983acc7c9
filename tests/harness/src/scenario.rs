//! What a test run is (a [`Scenario`]) and how its outcome is decided
//! ([`decide`]). The required set is [`required`]; `docs/testing.md` explains
//! how to add one.

use std::fmt;
use std::time::Duration;

use crate::markers::Console;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emulator {
    Qemu,
    Bochs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Amd,
    Intel,
}

/// How keel is booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// `bootloader` crate BIOS disk image (cmdline + modules in a KEELMODS ramdisk).
    Bios,
    /// `bootloader` crate UEFI disk image, OVMF firmware.
    Uefi,
    /// GRUB ISO: `multiboot2` + `module2` (BIOS firmware underneath).
    Grub,
}

macro_rules! names {
    ($t:ty { $($v:ident = $s:literal),* }) => {
        impl $t {
            pub fn name(self) -> &'static str { match self { $(Self::$v => $s),* } }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.name()) }
        }
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok(Self::$v),)*
                    _ => Err(format!("'{}' is not one of: {}", s, [$($s),*].join(", "))),
                }
            }
        }
    };
}
names!(Emulator { Qemu = "qemu", Bochs = "bochs" });
names!(Vendor { Amd = "amd", Intel = "intel" });
names!(Firmware { Bios = "bios", Uefi = "uefi", Grub = "grub" });

/// The outcome a scenario expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// `keel-test: PASS <test> cpus=N/N`, then `keel: powering off` and a
    /// clean exit (QEMU status 0; Bochs always exits 1, so markers decide).
    Pass { test: String },
    /// An expected failure: every pattern must appear on keel's console and
    /// QEMU must exit with `qemu_status` (isa-debug-exit: 1 -> 3). A run that
    /// passes instead is a failure of the suite.
    Failure {
        patterns: Vec<String>,
        qemu_status: i32,
    },
    /// Only the `must_contain` lines matter (no FATAL allowed); once they are
    /// all seen the harness stops the emulator if keel does not.
    Lines,
}

/// Per-CPU-model settings the launchers use.
impl Vendor {
    pub fn qemu_cpu(self) -> &'static str {
        match self {
            // TCG implements SVM+NPT; EPYC advertises them.
            Vendor::Amd => "EPYC",
            // TCG has no VMX at all: this only checks that keel boots on an
            // Intel-branded CPU without VT-x. Use Bochs for VMX.
            Vendor::Intel => "Skylake-Client",
        }
    }
    pub fn bochs_cpu(self) -> &'static str {
        match self {
            Vendor::Amd => "ryzen",
            Vendor::Intel => "corei7_skylake_x",
        }
    }
}

/// One emulator run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    /// Short unique name (also the work-directory name).
    pub name: String,
    pub description: String,
    pub emulator: Emulator,
    pub vendor: Vendor,
    pub firmware: Firmware,
    pub cpus: u32,
    pub memory_mib: u32,
    /// The complete hypervisor command line.
    pub cmdline: String,
    /// Boot modules (name, contents): `module2` lines for GRUB, archive
    /// entries after "cmdline" for BIOS/UEFI.
    pub modules: Vec<(String, Vec<u8>)>,
    /// Cut the KEELMODS archive this many bytes short (BIOS/UEFI only).
    pub truncate_archive: Option<usize>,
    /// Hard bound on the emulator's wall time.
    pub timeout: Duration,
    /// Stop early if COM1 has stayed completely empty this long (firmware or
    /// bootloader hang: nothing will come).
    pub silence_timeout: Duration,
    pub expect: Expect,
    /// keel console lines (substrings of the text after `(XEN) `) that must appear.
    pub must_contain: Vec<String>,
    /// A fresh ext4 disk (virtio under QEMU, ATA under Bochs).
    pub disk: bool,
    /// A virtio network card on QEMU's restricted user-mode network.
    pub net: bool,
    /// A reset reboots the machine (the scenario sees two boots).
    pub allow_reboot: bool,
    /// QEMU runs every vCPU in one host thread (`emulator::tcg_accel`):
    /// the default, since a thread per vCPU meets a QEMU bug.
    pub single_thread_tcg: bool,
}

/// The base command line of every test run.
pub fn test_cmdline(cpus: u32) -> String {
    format!("console=com1 loglvl=info smp={cpus} test=boot debug_exit=0xf4")
}

impl Scenario {
    /// A scenario that must boot to `keel-test: PASS boot cpus=N/N` and power off.
    pub fn boot(
        name: &str,
        emulator: Emulator,
        vendor: Vendor,
        firmware: Firmware,
        cpus: u32,
    ) -> Self {
        let (timeout, silence_timeout) = match emulator {
            Emulator::Qemu => (Duration::from_secs(120), Duration::from_secs(60)),
            Emulator::Bochs => (Duration::from_secs(360), Duration::from_secs(120)),
        };
        Scenario {
            name: name.to_string(),
            description: format!(
                "{emulator} {vendor} {firmware}, {cpus} CPU{}: boot, all CPUs online, power off",
                if cpus == 1 { "" } else { "s" }
            ),
            emulator,
            vendor,
            firmware,
            cpus,
            memory_mib: match emulator {
                Emulator::Qemu => 512,
                Emulator::Bochs => 256,
            },
            cmdline: test_cmdline(cpus),
            modules: Vec::new(),
            truncate_archive: None,
            timeout,
            silence_timeout,
            expect: Expect::Pass {
                test: "boot".into(),
            },
            must_contain: Vec::new(),
            disk: false,
            net: false,
            allow_reboot: false,
            single_thread_tcg: true,
        }
    }

    pub fn describe(mut self, d: &str) -> Self {
        self.description = d.to_string();
        self
    }
    pub fn extra_cmdline(mut self, extra: &str) -> Self {
        self.cmdline = format!("{} {extra}", self.cmdline);
        self
    }
    /// Adds a boot module, or replaces the one of that name.
    pub fn module(mut self, name: &str, data: Vec<u8>) -> Self {
        self.modules.retain(|(n, _)| n != name);
        self.modules.push((name.to_string(), data));
        self
    }
    pub fn expect(mut self, e: Expect) -> Self {
        self.expect = e;
        self
    }
    /// Lines dom0 must print on its console (passed through raw by keel).
    pub fn dom0_must_contain(mut self, lines: &[&str]) -> Self {
        self.must_contain
            .extend(lines.iter().map(|l| format!("{}{l}", crate::markers::DOM0)));
        self
    }

    pub fn must_contain(mut self, lines: &[&str]) -> Self {
        self.must_contain
            .extend(lines.iter().map(|s| s.to_string()));
        self
    }

    /// Whether a failure verdict is what this scenario wants.
    pub fn expects_failure(&self) -> bool {
        matches!(self.expect, Expect::Failure { .. })
    }
}

/// A stand-in dom0 module: recognisable bytes, several pages long.
pub fn dummy_module(pages: usize) -> Vec<u8> {
    let mut v = b"keel test module\n".repeat(pages * 4096 / 17 + 1);
    v.truncate(pages * 4096 - 123);
    v
}

/// The scenarios `cargo xtask test` runs.
pub fn required() -> Vec<Scenario> {
    use Emulator::*;
    use Firmware::*;
    use Vendor::*;
    vec![
        Scenario::boot("qemu-uefi-4cpu", Qemu, Amd, Uefi, 4),
        Scenario::boot("qemu-bios-2cpu", Qemu, Amd, Bios, 2),
        Scenario::boot("bochs-intel-grub-2cpu", Bochs, Intel, Grub, 2)
            .describe("Bochs corei7_skylake_x (VMX), GRUB multiboot2, 2 CPUs: boot, power off"),
        Scenario::boot("bochs-amd-grub-2cpu", Bochs, Amd, Grub, 2)
            .describe("Bochs ryzen (SVM), GRUB multiboot2, 2 CPUs: boot, power off"),
        Scenario::boot("qemu-uefi-fault-pf", Qemu, Amd, Uefi, 2)
            .describe("deliberate page fault (test_fault=pf): FATAL diagnostic, exit status 3")
            .extra_cmdline("test_fault=pf")
            .expect(Expect::Failure {
                patterns: vec!["*** FATAL".into(), "RIP".into(), "CR2".into()],
                qemu_status: 3,
            }),
        Scenario::boot("qemu-uefi-bad-cmdline", Qemu, Amd, Uefi, 2)
            .describe("unknown option and bad value are reported, boot still passes")
            .extra_cmdline("bogus_opt=1 smp=abc")
            .must_contain(&[
                "cmdline: unknown option 'bogus_opt'",
                "cmdline: bad value for 'smp': 'abc'",
            ]),
        {
            let mut s = Scenario::boot("qemu-uefi-truncated-archive", Qemu, Amd, Uefi, 2)
                .describe("boot-module archive cut short: rejected as truncated, no crash")
                .module("dom0", dummy_module(16))
                .expect(Expect::Lines)
                .must_contain(&["boot modules: archive rejected:", "truncated"]);
            s.truncate_archive = Some(8 * 4096);
            s
        },
        Scenario::boot("qemu-uefi-missing-module", Qemu, Amd, Uefi, 2)
            .describe(
                "test_require_module=dom0 without a dom0 module: FAIL boot reason=missing-module",
            )
            .extra_cmdline("test_require_module=dom0")
            .expect(Expect::Failure {
                patterns: vec!["keel-test: FAIL boot reason=missing-module dom0".into()],
                qemu_status: 3,
            }),
        Scenario::boot("qemu-uefi-module-present", Qemu, Amd, Uefi, 2)
            .describe("test_require_module=dom0 with a dom0 module in the archive: PASS")
            .extra_cmdline("test_require_module=dom0")
            .module("dom0", dummy_module(4)),
    ]
}

/// The virtualization scenarios (issue 3): keel runs its test guest
/// (`tests/guests`, passed as the `testguest` boot module) on each vendor.
/// `guest_elf` is the built guest.
pub fn guest_scenarios(guest_elf: &[u8]) -> Vec<Scenario> {
    use Emulator::*;
    use Firmware::*;
    use Vendor::*;
    let guests = |name: &str, emulator, vendor, firmware, what: &str| {
        let mut s = Scenario::boot(name, emulator, vendor, firmware, 2)
            .describe(what)
            .module("testguest", guest_elf.to_vec())
            .expect(Expect::Pass { test: "guests".into() })
            .must_contain(&[
                "(d1) suite: 11/11 checks passed",
                // sysctl and domctl are refused to a domain that is not dom0.
                "(d1) check toolstack-eperm: ok",
                // Guests run one after another on a CPU: none may see another's FPU state.
                "(d1) fpu state: clean",
                "(d2) fpu state: clean",
                "(d3) fpu state: clean",
                "(d4) fpu state: clean",
                "guests: d1 suite: Done(0)",
                "guests: d2 bad access: Killed(\"read of guest-physical 0x80000000, which the guest does not own\")",
                "guests: d3 triple fault: Killed(\"triple fault\")",
                "guests: d4 long run (on CPU1, alongside d3): Done(0)",
            ]);
        s.cmdline = s.cmdline.replace("test=boot", "test=guests");
        s
    };
    vec![
        guests(
            "qemu-amd-guests",
            Qemu,
            Amd,
            Uefi,
            "QEMU TCG EPYC (AMD-V+NPT, no next-RIP): test guests: every exit path, a bad access and a triple fault killed, a parallel guest finishes",
        ),
        guests(
            "bochs-intel-guests",
            Bochs,
            Intel,
            Grub,
            "Bochs corei7_skylake_x (VT-x+EPT): the same test guests",
        ),
        guests(
            "bochs-amd-guests",
            Bochs,
            Amd,
            Grub,
            "Bochs ryzen (AMD-V+NPT, next-RIP): the same test guests",
        ),
        {
            // QEMU TCG has no VMX: an Intel CPU model without VT-x.
            let mut s = Scenario::boot("qemu-no-vmx-guests", Qemu, Intel, Uefi, 2)
                .describe("a CPU without VT-x/AMD-V: a clear boot message, guests refused, no crash")
                .module("testguest", guest_elf.to_vec())
                .expect(Expect::Failure {
                    patterns: vec![
                        "HVM: VT-x unavailable: no VMX".into(),
                        "keel-test: FAIL guests reason=suite-guest Killed(\"cannot create a vCPU".into(),
                    ],
                    qemu_status: 3,
                });
            s.cmdline = s.cmdline.replace("test=boot", "test=guests");
            s
        },
    ]
}

/// The hypercall fuzzer's count in the test scenarios, per emulator: each
/// run takes well under a minute on the 2-core development VM.
pub const FUZZ_COUNT_QEMU: u32 = 100_000;
pub const FUZZ_COUNT_BOCHS: u32 = 20_000;

/// One `test=fuzz` run (issue 12): the fuzzing test guest makes `count`
/// random hypercalls (with random ports, MSRs and CPUID) beside a
/// well-behaved guest; a suite guest runs after it on its CPU.
pub fn fuzz_scenario(
    name: &str,
    emulator: Emulator,
    vendor: Vendor,
    firmware: Firmware,
    count: u32,
    guest_elf: &[u8],
) -> Scenario {
    let mut s = Scenario::boot(name, emulator, vendor, firmware, 2)
        .describe(&format!(
            "test=fuzz: {count} random hypercalls, ports, MSRs and CPUIDs from a hostile guest beside a well-behaved one; keel survives, the others finish"
        ))
        .module("testguest", guest_elf.to_vec())
        .expect(Expect::Pass {
            test: "fuzz".into(),
        })
        .must_contain(&[
            &format!("(d21) fuzz: {count} hypercalls, rc histogram: 0:"),
            &format!("(d21) fuzz: by kind: hypercall {count} "),
            "fuzz: d21: Done(0): ",
            "fuzz: d20 long run beside the fuzzer: Done(0)",
            "(d22) suite: 11/11 checks passed",
            "fuzz: d22 suite after the fuzzer: Done(0)",
        ]);
    s.cmdline = s
        .cmdline
        .replace("test=boot", &format!("test=fuzz fuzz_count={count}"));
    s
}

/// The fuzzing scenarios `cargo xtask test` runs, one per vendor/emulator.
pub fn fuzz_scenarios(guest_elf: &[u8]) -> Vec<Scenario> {
    use Emulator::*;
    use Firmware::*;
    use Vendor::*;
    vec![
        fuzz_scenario("qemu-amd-fuzz", Qemu, Amd, Uefi, FUZZ_COUNT_QEMU, guest_elf),
        fuzz_scenario(
            "bochs-intel-fuzz",
            Bochs,
            Intel,
            Grub,
            FUZZ_COUNT_BOCHS,
            guest_elf,
        ),
        fuzz_scenario(
            "bochs-amd-fuzz",
            Bochs,
            Amd,
            Grub,
            FUZZ_COUNT_BOCHS,
            guest_elf,
        ),
    ]
}

/// The fuzzing benchmark runs (`cargo xtask bench`): `count` hypercalls
/// on each emulator, with room for Bochs' pace.
pub fn fuzz_bench_scenarios(guest_elf: &[u8], count: u32) -> Vec<Scenario> {
    use Emulator::*;
    use Firmware::*;
    use Vendor::*;
    [
        ("bench-fuzz-qemu-amd", Qemu, Amd, Uefi),
        ("bench-fuzz-bochs-intel", Bochs, Intel, Grub),
        ("bench-fuzz-bochs-amd", Bochs, Amd, Grub),
    ]
    .into_iter()
    .map(|(name, e, v, f)| {
        let mut s = fuzz_scenario(name, e, v, f, count, guest_elf);
        s.timeout = std::time::Duration::from_secs(match e {
            Qemu => 900,
            Bochs => 3600,
        });
        s
    })
    .collect()
}

/// Linux as a PVH domain: Debian's stock kernel (from `cargo xtask linux`,
/// filled in by xtask as the `dom0` and `dom0-initrd` modules) as the
/// initial domain with 2 vCPUs, to userspace and back: the initramfs's
/// markers, both CPUs online (the second started by INIT/SIPI), Xen
/// detected in sysfs, `sleep 1` (timer events through event channels), and
/// the kernel's power-off through ACPI S5 (keel's sleep control register),
/// which ends the domain with SHUTDOWN_poweroff.
///
/// On all three machines: QEMU EPYC, Bochs `corei7_skylake_x` and Bochs
/// `ryzen` (where Linux once slept for good in MWAITX with interrupts off:
/// docs/linux-guest.md).
pub fn linux_scenarios() -> Vec<Scenario> {
    let full = |name: &str, emulator: Emulator, vendor: Vendor, secs: u64| {
        let mut s = linux(name, emulator, vendor)
            .describe("Debian's kernel as PVH dom0 (2 vCPUs) to userspace: KEEL-LINUX markers, both CPUs online, /sys/hypervisor/type = xen, keelctl and Debian's xl 4.17 info/list/dmesg/vcpu-pin/vcpu-list/sched-credit through privcmd (Xen 4.17 sysctl/domctl), sleep 1, ACPI power-off")
            .dom0_must_contain(&[
                "KEEL-LINUX: userspace reached",
                "KEEL-LINUX: cpus online: 0-1",
                "KEEL-LINUX: hypervisor type: xen",
                // keelctl, through privcmd and Xen 4.17's sysctl/domctl:
                // the CPUs and memory the emulator was given (2 CPUs, 1024 MiB
                // of which the firmware keeps 1 MiB), dom0's size, keel's log.
                "KEEL-LINUX: /dev/xen/privcmd present",
                "hypervisor            : keel",
                "nr_cpus               : 2",
                "total_memory          : 1023",
                "scheduler             : credit",
                "KEEL-LINUX: keelctl info exit 0",
                "Domain-0                                     0    256     2   r-----",
                "KEEL-LINUX: keelctl list exit 0",
                // vcpu-pin and vcpu-list through domctl: the pin is seen.
                "KEEL-LINUX: keelctl vcpu-pin exit 0",
                "KEEL-LINUX: vcpu 0 cpu",
                "KEEL-LINUX: vcpu 1 cpu 0 affinity 0 / all",
                "KEEL-LINUX: then vcpu 1 cpu 1 affinity 1 / all",
                "KEEL-LINUX: keelctl sched-credit -w exit 0",
                "KEEL-LINUX: credit weight 512 cap 0",
                // Debian's unmodified xl (xen-utils-4.17) with keel-xenstored
                // as dom0's xenstore: the same facts as keelctl.
                "KEEL-LINUX: /proc/xen/capabilities: control_d",
                "KEEL-LINUX: xenstored: keel-xenstored: serving dom0's kernel on its ring of domain 0",
                "KEEL-LINUX: xen-init-dom0 exit 0 name Domain-0",
                "KEEL-LINUX: xenstore through dom0's kernel: Domain-0",
                "KEEL-LINUX: xl info exit 0",
                "XL| nr_cpus                : 2",
                "XL| total_memory           : 1023",
                "XL| xen_version            : 4.17-keel",
                "XL| xen_caps               : xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64",
                "XL| xen_pagesize           : 4096",
                "KEEL-LINUX: xl and keelctl info agree on 5 of 5: nr_cpus=2 nr_nodes=1",
                "KEEL-LINUX: xl and keelctl agree: scheduler credit",
                "KEEL-LINUX: xl list exit 0",
                "XL| Domain-0                                     0   256     2     r-----",
                "KEEL-LINUX: xl and keelctl list agree: Domain-0 0 256 2 r-----",
                "KEEL-LINUX: xl vcpu-pin exit 0",
                "KEEL-LINUX: xl vcpu 1 cpu 0 affinity 0 / all; keelctl vcpu 1 cpu 0 affinity 0 / all",
                "KEEL-LINUX: xl sched-credit -w exit 0",
                "XL| Cpupool Pool-0: tslice=10ms ratelimit=1000us migration-delay=0us",
                "KEEL-LINUX: xl sched-credit weight 384 cap 0; keelctl weight 384 cap 0",
                // As on Xen: a domain cannot pause itself.
                "KEEL-LINUX: xl pause 0: Pausing domain: Invalid argument",
                "KEEL-LINUX: xl dmesg exit 0 d0: PVH kernel entry",
                // Debian's `xl create -p` gets keel to create a domain, stops
                // at the first call keel does not serve yet (issue 14), and
                // libxl destroys what it made.
                "KEEL-LINUX: xl create -p left nothing behind",
                // Debian's xentop (libxenstat) sees Domain-0 running.
                "KEEL-LINUX: xentop exit 0",
                "XL|   Domain-0 -----r",
                // xen-cpuid (libxenguest): keel's featuresets and policies in
                // Xen's formats; PV ones are refused, as by a Xen without PV.
                "KEEL-LINUX: xen-cpuid exit 0",
                "KEEL-LINUX: xen-cpuid -p exit 0",
                "XL| PV Default featureset not supported by Xen",
                "XL| Xen reports there are maximum 120 leaves and 2 MSRs",
                "XL| Host policy: ",
                "XL| HVM Default policy: ",
                "KEEL-LINUX: keelctl dmesg exit 0",
                "KEEL-LINUX: keel log: d0: PVH kernel entry",
                // keelctl top: keel's VM-exit counters (sysctl perfc_op).
                "KEEL-LINUX: keelctl top exit 0",
                "KEEL-LINUX: top: Domain-0 hypercall exits/s non-zero",
                // Debian's xenperf on the same counters (19 reasons).
                "KEEL-LINUX: xenperf exit 0 counters 19",
                "KEEL-LINUX: xenperf: Domain-0 hypercall exits non-zero",
                "KEEL-LINUX: sleep 1 took",
                "KEEL-LINUX: powering off",
                "reboot: Power down",
            ])
            .must_contain(&[
                "d1: created by the toolstack (1 vCPU(s), paused)",
                "d1: Killed(\"destroyed by d0\")",
                "d0: Shutdown(Poweroff)",
            ]);
        s.timeout = std::time::Duration::from_secs(secs);
        s
    };
    let mut reboot = linux("qemu-amd-linux-reboot", Emulator::Qemu, Vendor::Amd)
        .describe("dom0's `reboot -f` resets the machine: Linux resets through a port keel watches (0xcf9 or the 8042), keel ends dom0 with SHUTDOWN_reboot and resets (QEMU -no-reboot then exits)")
        .module(
            "dom0-cmdline",
            format!("{DOM0_CMDLINE} keel.reboot").into_bytes(),
        )
        .dom0_must_contain(&["KEEL-LINUX: rebooting", "reboot: Restarting system"])
        .must_contain(&["d0: Shutdown(Reboot)", "keel: rebooting"]);
    reboot.timeout = std::time::Duration::from_secs(180);
    let mut devices = linux("qemu-amd-dom0-devices", Emulator::Qemu, Vendor::Amd)
        .describe("dom0 drives the machine's devices: virtio-blk with ext4 (a file written, synced, and found again after a machine reboot) and virtio-net (DHCP lease from QEMU's restrict=on user network)")
        .module(
            "dom0-cmdline",
            format!("{DOM0_CMDLINE} keel.disk=vda keel.net").into_bytes(),
        )
        .dom0_must_contain(&[
            "virtio_blk virtio",
            "KEEL-LINUX: disk: /dev/vda mounted read-write",
            "KEEL-LINUX: disk: wrote 'written by dom0 on keel, boot 1', synced; rebooting",
            "reboot: Restarting system",
            "KEEL-LINUX: disk: after reboot found 'written by dom0 on keel, boot 1'",
            "KEEL-LINUX: net: DHCP lease on eth0",
            "reboot: Power down",
        ])
        .must_contain(&["d0: Shutdown(Reboot)", "keel: rebooting", "d0: Shutdown(Poweroff)"]);
    devices.disk = true;
    devices.net = true;
    devices.allow_reboot = true;
    devices.timeout = std::time::Duration::from_secs(300);
    // Under Bochs, dom0 also drives an ATA disk (ata_piix) with ext4, and
    // then runs the privcmd fuzzer: one Linux boot on Bochs takes about
    // four minutes of `.ci/run`'s budget, so it carries both.
    let bochs = |name: &str, vendor: Vendor| {
        let s = full(name, Emulator::Bochs, vendor, 900).module(
            "dom0-cmdline",
            format!("{DOM0_CMDLINE} keel.mount=sda").into_bytes(),
        );
        let mut s = with_privcmd_fuzz(s, PRIVCMD_FUZZ_COUNT_BOCHS)
            .describe(&format!("the same as qemu-amd-linux, plus an ATA disk with ext4; then dom0's userspace makes {PRIVCMD_FUZZ_COUNT_BOCHS} random hypercalls through privcmd (as qemu-amd-privcmd-fuzz) before sleep 1 and power-off"))
            .dom0_must_contain(&[
                "ata1.01: ATA-",
                "KEEL-LINUX: disk: /dev/sda mounted, wrote and read back 'hello from dom0'",
            ]);
        s.disk = true;
        s
    };
    vec![
        full("qemu-amd-linux", Emulator::Qemu, Vendor::Amd, 180),
        bochs("bochs-intel-linux", Vendor::Intel),
        bochs("bochs-amd-linux", Vendor::Amd),
        reboot,
        devices,
        privcmd_fuzz(
            "qemu-amd-privcmd-fuzz",
            Emulator::Qemu,
            Vendor::Amd,
            PRIVCMD_FUZZ_COUNT_QEMU,
            300,
        ),
        sched("qemu-amd-sched", Emulator::Qemu, Vendor::Amd, 300),
        sched("bochs-intel-sched", Emulator::Bochs, Vendor::Intel, 1200),
        sched("bochs-amd-sched", Emulator::Bochs, Vendor::Amd, 1200),
    ]
}

/// The dom0 privcmd fuzzer's count per emulator (`keel.privcmd_fuzz=N`).
pub const PRIVCMD_FUZZ_COUNT_QEMU: u32 = 200_000;
pub const PRIVCMD_FUZZ_COUNT_BOCHS: u32 = 200_000;

/// `keel-privcmd-badptr`'s cases and sub-ops (`keelctl::badptr::CASES`
/// and `OPS`): its summary line must name them all as expected.
pub const PRIVCMD_BADPTR_CASES: usize = 377;
pub const PRIVCMD_BADPTR_OPS: usize = 35;

/// Extra dom0 command-line words for the privcmd fuzzing scenarios, to
/// reproduce a run: `keel.privcmd_fuzz_seed=S`, `keel.privcmd_fuzz_trace=I`
/// (print each call from index I on), or another `keel.privcmd_fuzz=N`.
pub const PRIVCMD_FUZZ_ENV: &str = "KEEL_PRIVCMD_FUZZ_ARGS";

/// dom0's userspace makes `count` random hypercalls through privcmd
/// (`keel-privcmd-fuzz`, issue 12; what it leaves out and why:
/// `keelctl::fuzz`), then runs the rest of its script: dom0 must survive
/// them with its timer (`sleep 1`) and power off.
fn privcmd_fuzz(name: &str, emulator: Emulator, vendor: Vendor, count: u32, secs: u64) -> Scenario {
    let mut s = with_privcmd_fuzz(linux(name, emulator, vendor), count)
        .describe(&format!("dom0's userspace makes {count} random hypercalls (random sub-ops, structures, pointers) through privcmd; dom0 survives, sleep 1 and power-off work"))
        .dom0_must_contain(&[
            "KEEL-LINUX: userspace reached",
            "KEEL-LINUX: /dev/xen/privcmd present",
            "KEEL-LINUX: sleep 1 took",
            "KEEL-LINUX: powering off",
            "reboot: Power down",
        ])
        .must_contain(&["d0: Shutdown(Poweroff)"]);
    s.timeout = std::time::Duration::from_secs(secs);
    s
}

/// `s`'s dom0 also runs `keel-privcmd-badptr` (bad pointers to every
/// toolstack sub-op) and then `count` random hypercalls through privcmd
/// (`keel-privcmd-fuzz`), after the rest of its script's checks and
/// before `sleep 1` and power-off: the words go on its `dom0-cmdline`.
fn with_privcmd_fuzz(s: Scenario, count: u32) -> Scenario {
    let extra = std::env::var(PRIVCMD_FUZZ_ENV).unwrap_or_default();
    let cmdline = s
        .modules
        .iter()
        .find(|(n, _)| n == "dom0-cmdline")
        .map(|(_, d)| String::from_utf8_lossy(d).into_owned())
        .unwrap_or_else(|| DOM0_CMDLINE.to_string());
    s.module(
        "dom0-cmdline",
        format!("{cmdline} keel.privcmd_badptr keel.privcmd_fuzz={count} {extra}")
            .trim_end()
            .as_bytes()
            .to_vec(),
    )
    .dom0_must_contain(&[
        // Bad pointers to every toolstack sub-op first (keel-privcmd-badptr).
        &format!("KEEL-LINUX: privcmd-badptr: {PRIVCMD_BADPTR_CASES} cases, {PRIVCMD_BADPTR_CASES} as expected; good calls after: {PRIVCMD_BADPTR_OPS}, {PRIVCMD_BADPTR_OPS} as expected"),
        "KEEL-LINUX: privcmd-badptr: a hypercall from user mode (CPL 3) got -EPERM, as expected",
        "KEEL-LINUX: privcmd-badptr: interface version 0x14: domctl -EACCES, sysctl -EACCES, as expected",
        "KEEL-LINUX: privcmd-badptr exit 0",
        &format!("KEEL-LINUX: privcmd-fuzz: {count} calls done in"),
        "KEEL-LINUX: privcmd-fuzz exit 0",
    ])
}

/// Many domains on shared CPUs: dom0 with 4 vCPUs on a 2-CPU machine, and
/// beside it four test-guest domains on CPU 1 (`test=sched`): CPU-bound
/// ones with weights 256 and 512, one capped at 25 %, and a vCPU halted
/// throughout. keel measures their shares over a window and judges them
/// (`keel-test: PASS sched`); dom0 boots with all four vCPUs online and
/// its `sleep 1` takes about a second while they run.
fn sched(name: &str, emulator: Emulator, vendor: Vendor, secs: u64) -> Scenario {
    let mut s = linux(name, emulator, vendor)
        .describe("dom0 with 4 vCPUs on 2 CPUs beside CPU-bound test domains on CPU1: weights 256:512 within 10% of 1:2, a 25% cap, a halted vCPU under 1%; dom0's sleep 1 about a second; keelctl and Debian's xl pause/unpause a test domain, xl's credit weight moves CPU time")
        .module("testguest", Vec::new())
        .dom0_must_contain(&[
            "KEEL-LINUX: userspace reached",
            "KEEL-LINUX: cpus online: 0-3",
            "KEEL-LINUX: nproc: 4",
            // dom0's vCPU 1 pinned beside the CPU-bound domains keeps running.
            "KEEL-LINUX: then vcpu 1 cpu 1 affinity 1 / all",
            // domctl pause/unpause: refused on dom0 itself; a test domain's
            // CPU time stops while paused and moves again after.
            "KEEL-LINUX: pause 0 refused",
            "KEEL-LINUX: pause d11 exit 0 state --p---",
            "KEEL-LINUX: unpause d11 exit 0",
            "KEEL-LINUX: the paused domain stood still",
            "KEEL-LINUX: the unpaused domain ran again",
            // The same through Debian's xl, and a weight set by xl moves
            // CPU time between two CPU-bound domains.
            // keelctl reads the names a toolstack wrote in xenstore.
            "KEEL-LINUX: keelctl names d11 test-d11, xl test-d11",
            "KEEL-LINUX: keelctl pause/unpause by name exit 0",
            // Debian's xentop and keelctl top: a CPU-bound test domain at
            // more than 5 % CPU, and keelctl's exit reasons add up.
            "KEEL-LINUX: xentop: test-d12 busy",
            "KEEL-LINUX: top: test-d12 busy",
            "KEEL-LINUX: top: test-d12 exit reasons add up",
            "KEEL-LINUX: xl pause d11 state --p---",
            "KEEL-LINUX: xl unpause d11: not paused",
            "KEEL-LINUX: xl: the paused domain stood still",
            "KEEL-LINUX: xl: the unpaused domain ran again",
            "KEEL-LINUX: xl: weight 1024 for d11",
            "KEEL-LINUX: xl: the share followed the weight",
            "KEEL-LINUX: top: Domain-0 hypercall exits/s non-zero",
            "KEEL-LINUX: sleep 1 took",
            "reboot: Power down",
        ])
        .must_contain(&[
            // The spinners hold every vector register they have (AVX-512
            // on Bochs's Skylake-X) and check them: keel's FPU switching.
            "(d11) spinning, ",
            "(d12) spinning, ",
            "sched: weight 512 : weight 256 = ",
            "keel-test: PASS sched",
            "d0: Shutdown(Poweroff)",
        ]);
    s.cmdline = format!("{} test=sched dom0_max_vcpus=4", s.cmdline);
    s.timeout = std::time::Duration::from_secs(secs);
    s
}

/// The placeholder for dom0's initramfs with the domU payload appended
/// (`cargo xtask`'s `domu.rs` fills it in).
pub const DOMU_INITRD: &[u8] = b"@keel: dom0 initramfs with the domU payload";

/// A PVH domU beside dom0 (issue 14): dom0's `keelctl create -p` builds
/// Debian's kernel as shipped (the bzImage) with its own initramfs from
/// `/etc/keel/domu.cfg` (256 MiB, 2 vCPUs), lists it, unpauses it; the
/// domU's /init reports through its kernel log (`earlyprintk=xen`: keel's
/// serial, as `(d1) ...`) and powers off.
/// A Linux scenario whose dom0 builds domUs: 512 MiB for dom0 (keelctl
/// holds a Debian kernel decompressed, 62 MiB, and XZ's 32 MiB dictionary
/// while it builds one, and a monitor may build beside it; with 256 MiB
/// and the domU payload in its initramfs, dom0 ran out of memory), on a
/// machine with 512 MiB more.
fn domu_host(name: &str, emulator: Emulator, vendor: Vendor) -> Scenario {
    let mut s = linux(name, emulator, vendor);
    s.cmdline = s.cmdline.replace("dom0_mem=256M", "dom0_mem=512M");
    s.memory_mib += 512;
    for l in &mut s.must_contain {
        *l = l
            .replace("[0x1000000, 0x11000000)", "[0x1000000, 0x21000000)")
            .replace("0x0000000010ffffff] usable", "0x0000000020ffffff] usable");
    }
    s
}

/// `cycles`: the create/destroy cycles dom0 runs (`keel.domu_cycles`).
pub fn domu(name: &str, emulator: Emulator, vendor: Vendor, cycles: u32, secs: u64) -> Scenario {
    let gave = format!("KEEL-LINUX: domu: {cycles} cycles gave every page back");
    let left = format!("KEEL-LINUX: domu: {cycles} cycles left dom0's mapping count as it was");
    let mut s = domu_host(name, emulator, vendor)
        .describe("a PVH domU from dom0: keelctl create -c builds Debian's vmlinuz (256 MiB, 2 vCPUs) as libxl does and attaches to its console, the domU reaches userspace, reads /sys/hypervisor/type and its domid from xenstore, is refused the toolstack's calls, powers off; 20 create/destroy cycles; then Debian's xl creates a domU, xl console shows it, xl shutdown ends it, xl create and xl destroy again")
        .module("dom0-initrd", DOMU_INITRD.to_vec())
        .module(
            "dom0-cmdline",
            format!("{DOM0_CMDLINE} keel.domu keel.domu_cycles={cycles}").into_bytes(),
        )
        .dom0_must_contain(&[
            "KEEL-LINUX: userspace reached",
            "KEEL-LINUX: domu: xenstore name domu1",
            "KEEL-LINUX: domu: 0 left after",
            "KEEL-LINUX: domu: create -c exit 0",
            // Its console ring, served by keel-consoled.
            "KEEL-LINUX: domu: console log: KEEL-DOMU: /sys/hypervisor/type = xen",
            // The id keelctl list gives it (not always 1: ids go round-robin).
            "KEEL-LINUX: domu: the domU read its own id (",
            // and gave it a pty (Debian's `xl console` opens that).
            "keel-consoled: attached domu1 (domain ",
            "KEEL-LINUX: domu: keel-consoled gave it a pty",
            // Both daemons map its rings through the grant table
            // (GNTTABOP_map_grant_ref via /dev/xen/gntdev), as Xen's do.
            "keel-consoled: mapped domu1's console ring through the grant table",
            "'s xenstore ring through the grant table",
            // and `keelctl create -c` attached to it.
            "KEEL-LINUX: domu: create -c console: KEEL-DOMU: name from xenstore: domu1",
            // The create/destroy cycles give keel's memory back to the
            // page, and dom0 maps no more of other domains than before.
            &gave,
            &left,
            // Debian's xl builds and runs the lifecycle guest (domu2),
            // its console through keel-consoled too (xl console shows
            // it), shuts it down (xl's daemon destroys it), creates it
            // again and destroys it.
            "KEEL-LINUX: domu: xl create exit 0",
            "KEEL-LINUX: domu: xl unpause exit 0",
            "KEEL-LINUX: domu: xl console log: KEEL-DOMU: name from xenstore: domu2",
            "KEEL-LINUX: domu: xl console: KEEL-DOMU: alive",
            "KEEL-LINUX: domu: xl shutdown -w exit 0",
            "KEEL-LINUX: domu: xl shutdown: 0 domu2 left",
            "KEEL-LINUX: domu: xl create again exit 0",
            "KEEL-LINUX: domu: xl destroy exit 0 after 2 boots",
            "KEEL-LINUX: domu: xl destroy: 0 domu2 left",
            "reboot: Power down",
        ])
        // The domU's lines come through its kernel log: "(d1) [  t] KEEL-DOMU: ...".
        .must_contain(&[
            ": created by the toolstack (2 vCPU(s), paused)",
            "] KEEL-DOMU: userspace reached",
            "] KEEL-DOMU: /sys/hypervisor/type = xen",
            "] KEEL-DOMU: cpus online: 0-1",
            "] KEEL-DOMU: domid from xenstore: ",
            "] KEEL-DOMU: name from xenstore: domu1",
            // Isolation: the toolstack's calls are refused in a domU.
            "] KEEL-DOMU: keelctl list: exit 3 (1 refusal)",
            "] KEEL-DOMU: keelctl info: exit 3 (1 refusal)",
            "] KEEL-DOMU: keelctl destroy 1: exit 3 (1 refusal)",
            "] KEEL-DOMU: keelctl unpause 1: exit 3 (1 refusal)",
            // ... and grants it was not given: each an error status.
            "] KEEL-DOMU: grant probe of dom0's refs 0-7: exit 0 (8 refused)",
            "] KEEL-DOMU: grant probe of its own refs 0-1: exit 0 (2 refused)",
            // dom0's reserved entries grant nothing: general_error; its
            // own grants are not its own to map: bad_domain.
            "] KEEL-DOMU: grant probe: map_grant_ref dom 0 ref 1: status -1 (general_error)",
            " ref 1: status -2 (bad_domain)",
            ": Shutdown(Poweroff); kept until the toolstack destroys it",
            "d0: Shutdown(Poweroff)",
        ]);
    s.timeout = std::time::Duration::from_secs(secs);
    s
}

/// The lifecycle scenarios (issue 14, item 2): `domus` domUs at once from
/// `/etc/keel/life.cfg`, each followed by keelctl's monitor. The first is
/// rebooted (`keelctl reboot`, on_reboot restart), panics (sysrq `c`,
/// on_crash restart) and every one is shut down (`keelctl shutdown -w`,
/// on_poweroff destroy), after which keel's free memory is back to within
/// a page. With two or more, the second runs a CPU-bound loop whose CPU
/// time `pause` stops and `unpause` gives back, and the others must go on
/// running through the first one's panic.
pub fn domu_life(
    name: &str,
    emulator: Emulator,
    vendor: Vendor,
    domus: u32,
    secs: u64,
) -> Scenario {
    let mut must = vec![
        "KEEL-LINUX: userspace reached".to_string(),
        "KEEL-LINUX: life: reboot exit 0".into(),
        format!("KEEL-LINUX: life: keelctl console showed life{domus}'s heartbeat"),
        "KEEL-LINUX: life: life1 booted again (domain ".into(),
        "KEEL-LINUX: life: asked life1 to panic: exit 0".into(),
        "KEEL-LINUX: life: life1 panicked and was started again (domain ".into(),
        "KEEL-LINUX: life: life1 was ended for it and started again (domain ".into(),
        "KEEL-LINUX: life: every page came back".into(),
        "reboot: Power down".into(),
    ];
    for n in 1..=domus {
        must.push(format!("KEEL-LINUX: life: create life{n} exit 0"));
        must.push(format!("KEEL-LINUX: life: life{n} is up (domain "));
        must.push(format!(
            "KEEL-LINUX: life: shutdown -w life{n} exit 0 (0 left)"
        ));
    }
    if domus >= 2 {
        must.push("KEEL-LINUX: life: pause stopped its CPU time, unpause gave it back".into());
        must.push(format!(
            "KEEL-LINUX: life: {0} of {0} others ran on through life1's panic and end",
            domus - 1
        ));
    }
    let must: Vec<&str> = must.iter().map(String::as_str).collect();
    let mut s = domu_host(name, emulator, vendor)
        .describe("PVH domUs at once from dom0 (keelctl create, each with its monitor): pause stops a domU's CPU time, reboot restarts it, a panic restarts it while the others run on, shutdown destroys it, and keel's memory comes back")
        .module("dom0-initrd", DOMU_INITRD.to_vec())
        .module(
            "dom0-cmdline",
            format!("{DOM0_CMDLINE} keel.domu_life={domus}").into_bytes(),
        )
        .dom0_must_contain(&must)
        .must_contain(&[
            "Shutdown(Reboot); kept until the toolstack destroys it",
            "Shutdown(Crash); kept until the toolstack destroys it",
            // Isolation: a domU reading past its memory is ended, alone.
            "read of guest-physical 0x40000000: no memory or emulated device there",
            "Shutdown(Poweroff); kept until the toolstack destroys it",
            "d0: Shutdown(Poweroff)",
        ]);
    s.timeout = std::time::Duration::from_secs(secs);
    s
}

/// A domU with a disk and a network interface (issue 15): `keelctl
/// create` attaches an image file in dom0 (ext4, made by Debian's
/// mkfs.ext4) as its `xvda` through a loop device and xen-blkback, and
/// puts netback's interface for its eth0 on the bridge `xenbr0`; the domU
/// (xen-blkfront, xen-netfront) counts its boots in its disk, pings dom0
/// and is pinged, serves dom0 100 MiB over TCP, is rebooted once by
/// `keelctl reboot` (its monitor restarts it); in its second boot a
/// domU with a garbage block ring (`keel-bad-frontend`) must be halted
/// alone, and dom0 hot-plugs a disk and an interface into it and out
/// again; it powers off; dom0 creates it again (a third
/// boot); then dom0 finds the boots' writes in the image, e2fsck finds it
/// clean, and the loop devices are gone.
pub fn domu_disk(name: &str, emulator: Emulator, vendor: Vendor, secs: u64) -> Scenario {
    let mut s = domu_host(name, emulator, vendor)
        .describe("a domU with a disk and a network: keelctl create attaches an ext4 image as xvda (loop device, blkback) and a vif on the bridge xenbr0 (netback); the domU mounts its disk, counts its boots, pings dom0 and is pinged, sends dom0 100 MiB over TCP (md5 checked), a second domU on the bridge pings it, keelctl reboot; a domU with garbage in its block ring is halted alone; block-attach/-detach and network-attach/-detach on the running domU; created again, a third boot; dom0 finds the writes, e2fsck is clean")
        .module("dom0-initrd", DOMU_INITRD.to_vec())
        .module(
            "dom0-cmdline",
            format!("{DOM0_CMDLINE} keel.domu_disk").into_bytes(),
        )
        .dom0_must_contain(&[
            "KEEL-LINUX: disk: mkfs.ext4 exit 0",
            "KEEL-LINUX: disk: create exit 0",
            "KEEL-LINUX: net: xenbr0 10.99.0.1 up: exit 0",
            "KEEL-LINUX: disk: console: KEEL-DOMU: disk: xvda 32768 sectors, ro 0",
            "KEEL-LINUX: disk: console: KEEL-DOMU: disk: boot 1: mounted xvda, boots=1 written",
            "KEEL-LINUX: disk: console: KEEL-DOMU: net: boot 1: dom0 answers ping",
            "KEEL-LINUX: net: boot 1: ping domU exit 0 (3 replies)",
            "KEEL-LINUX: net: boot 1: 100 MiB from the domU over TCP in",
            "s, md5 matches",
            "KEEL-LINUX: net: net2 create exit 0",
            "KEEL-LINUX: net: net2: KEEL-DOMU: net: 10.99.0.3 pings 10.99.0.2: answered",
            "KEEL-LINUX: net: net2 0 left after",
            "KEEL-LINUX: disk: keelctl reboot exit 0",
            "KEEL-LINUX: disk: console: KEEL-DOMU: disk: boot 2: mounted xvda, boots=2 written",
            "KEEL-LINUX: disk: console: KEEL-DOMU: net: boot 2: dom0 answers ping",
            "KEEL-LINUX: net: boot 2: ping domU exit 0 (3 replies)",
            // A domU that writes garbage into its block ring: blkback
            // answers with errors, then halts that ring alone, and disk1
            // keeps its disk and network.
            "KEEL-LINUX: bad: create exit 0",
            "KEEL-LINUX: bad: console: KEEL-DOMU: bad-frontend: garbage: 32 random requests, 32 responses (status:",
            "xen-blkback: Frontend provided bogus ring requests",
            "KEEL-LINUX: bad: console: KEEL-DOMU: bad-frontend: garbage: req_prod 1032: responses unchanged after 3 s",
            "KEEL-LINUX: bad: 0 left after",
            "KEEL-LINUX: bad: loop devices of bad*.img: 0",
            "KEEL-LINUX: attach: console: KEEL-DOMU: attach: xvda still works",
            "KEEL-LINUX: attach: console: KEEL-DOMU: attach: eth0 still works",
            "KEEL-LINUX: attach: block-attach exit 0",
            "KEEL-LINUX: attach: console: KEEL-DOMU: attach: xvdb 16384 sectors after",
            "KEEL-LINUX: attach: console: KEEL-DOMU: attach: xvdb mounted, written, unmounted",
            "KEEL-LINUX: attach: block-detach exit 0",
            "KEEL-LINUX: attach: vbds left: 1",
            "KEEL-LINUX: attach: in disk2.img: hot-plugged into disk1",
            "KEEL-LINUX: attach: network-attach exit 0",
            "KEEL-LINUX: attach: console: KEEL-DOMU: attach: dom0 answers ping on eth1",
            "KEEL-LINUX: attach: network-detach exit 0",
            "KEEL-LINUX: attach: vifs left: 1, vif",
            ".1 in dom0: gone",
            "KEEL-LINUX: attach: console: KEEL-DOMU: attach: eth1 gone after",
            "KEEL-LINUX: disk: 0 left after",
            "KEEL-LINUX: disk: create again exit 0",
            "KEEL-LINUX: disk: console: KEEL-DOMU: disk: boot 3: mounted xvda, boots=3 written",
            "KEEL-LINUX: net: boot 3: ping domU exit 0 (3 replies)",
            "KEEL-LINUX: disk: 0 left after the third boot",
            "KEEL-LINUX: disk: loop devices in use after: 0",
            "KEEL-LINUX: disk: e2fsck -fn exit 0",
            "KEEL-LINUX: disk: in the image: boots=3, note: written by boot 3 of disk1",
            // Debian's xl, the same config (as xl1), Debian's hotplug
            // scripts: a fourth boot, pinged; gone after, with its loop
            // device and bridge port.
            "KEEL-LINUX: xl: create exit 0",
            "KEEL-LINUX: xl: console: KEEL-DOMU: disk: boot 4: mounted xvda, boots=4 written",
            "KEEL-LINUX: xl: console: KEEL-DOMU: net: boot 4: dom0 answers ping",
            "KEEL-LINUX: net: boot 4: ping domU exit 0 (3 replies)",
            "KEEL-LINUX: xl: 0 left after",
            "KEEL-LINUX: xl: ports left on xenbr0: 0",
            "KEEL-LINUX: xl: loop devices in use after: 0",
            "KEEL-LINUX: xl: e2fsck -fn exit 0",
            "KEEL-LINUX: xl: in the image: boots=4, note: written by boot 4 of xl1",
            "reboot: Power down",
        ])
        .must_contain(&["d0: Shutdown(Poweroff)"]);
    s.timeout = std::time::Duration::from_secs(secs);
    s
}

/// The domU benchmark run (`cargo xtask bench --only domu`): dom0 times
/// `keelctl create` (`keel.bench_domu`, see the dom0 init script), with
/// room for a 1 GiB domU beside dom0's 512 MiB.
pub fn domu_bench(name: &str, emulator: Emulator, vendor: Vendor) -> Scenario {
    let mut s = domu_host(name, emulator, vendor)
        .describe("domU creation timed from dom0: create -p of 256 MiB and 1 GiB guests, create to the domU's first userspace line, an idle domU's memory overhead")
        .module("dom0-initrd", DOMU_INITRD.to_vec())
        .module(
            "dom0-cmdline",
            format!("{DOM0_CMDLINE} keel.bench_domu").into_bytes(),
        )
        .dom0_must_contain(&[
            "KEEL-LINUX: bench-domu: create exit 0",
            "KEEL-LINUX: bench-domu: shutdown exit 0",
            "reboot: Power down",
        ]);
    s.memory_mib = 2048;
    s.timeout = std::time::Duration::from_secs(900);
    s
}

/// The split-driver bench run (`cargo xtask bench --only split`, issue
/// 15): dom0 (`keel.bench_split=MIB`, see its init script) times its own
/// writes and reads of the image file `/tmp/bench.img` and TCP to itself
/// against a domU's through blkfront/blkback and netfront/netback
/// (`/etc/keel/bench.cfg`), `rounds` times in turn, and pings the domU.
/// `mib`: the image and each transfer; QEMU's clock is the host's (noisy
/// on a busy host: several rounds), Bochs' counts instructions (one).
pub fn split_bench(name: &str, emulator: Emulator, vendor: Vendor) -> Scenario {
    let (mib, rounds, secs) = split_bench_size(emulator);
    let mut s = domu_host(name, emulator, vendor)
        .describe(&format!("split drivers against dom0 itself: dom0 writes and reads a {mib} MiB image file and sends {mib} MiB to itself over TCP; a domU with that image as its xvda (blkfront, O_DIRECT) and a vif on xenbr0 does the same and sends to dom0; {rounds} round(s) in turn; ping dom0 to domU"))
        .module("dom0-initrd", DOMU_INITRD.to_vec())
        .module(
            "dom0-cmdline",
            format!("{DOM0_CMDLINE} keel.bench_split={mib} keel.bench_split_rounds={rounds}")
                .into_bytes(),
        )
        .dom0_must_contain(&[
            "KEEL-LINUX: bench-split: create exit 0",
            "KEEL-LINUX: bench-split: done",
            "reboot: Power down",
        ])
        .must_contain(&["d0: Shutdown(Poweroff)"]);
    s.timeout = std::time::Duration::from_secs(secs);
    s
}

/// The split-driver bench's MiB per transfer, rounds and time limit (s) on
/// each emulator. Bochs runs about ten times slower than QEMU TCG in guest
/// time: less data there.
pub fn split_bench_size(emulator: Emulator) -> (u32, u32, u64) {
    match emulator {
        Emulator::Qemu => (64, 3, 1800),
        Emulator::Bochs => (32, 1, 5400),
    }
}

/// The domU scenarios (issue 14). The Bochs ones run only when named
/// (`xtask`'s `OPT_IN`: too long for CI).
pub fn domu_scenarios() -> Vec<Scenario> {
    vec![
        domu("qemu-amd-domu", Emulator::Qemu, Vendor::Amd, 20, 600),
        // A cycle takes minutes on Bochs.
        domu("bochs-intel-domu", Emulator::Bochs, Vendor::Intel, 3, 2400),
        domu_life("qemu-amd-domu-life", Emulator::Qemu, Vendor::Amd, 3, 900),
        domu_disk("qemu-amd-domu-disk", Emulator::Qemu, Vendor::Amd, 600),
        // The 100 MiB alone take many minutes on Bochs; the whole about
        // 65 minutes of one idle host core (more when it shares it).
        domu_disk(
            "bochs-intel-domu-disk",
            Emulator::Bochs,
            Vendor::Intel,
            7200,
        ),
        domu_life(
            "bochs-intel-domu-life",
            Emulator::Bochs,
            Vendor::Intel,
            1,
            1800,
        ),
    ]
}

/// dom0's kernel command line in the Linux scenarios. `no_timer_check`:
/// Linux's boot-time check that the IO-APIC timer ticks counts PIT ticks
/// against the TSC in a 4-jiffy window, which emulators do not always
/// meet (a loaded host made QEMU TCG fail it: "IO-APIC + timer doesn't
/// work!", 2026-12-03); dom0's clock is Xen's pvclock anyway (docs/dom0.md).
pub const DOM0_CMDLINE: &str = "console=hvc0 earlyprintk=xen no_timer_check";

fn linux(name: &str, emulator: Emulator, vendor: Vendor) -> Scenario {
    let mut s = Scenario::boot(name, emulator, vendor, Firmware::Grub, 2)
        .module("dom0", Vec::new())
        .module("dom0-initrd", Vec::new())
        .module("dom0-cmdline", DOM0_CMDLINE.as_bytes().to_vec())
        .expect(Expect::Lines)
        .must_contain(&["d0: RAM 1:1 with host memory at [0x1000000, 0x11000000)"])
        .dom0_must_contain(&[
            // dom0_mem=256M of host RAM at the same addresses (1:1).
            "BIOS-e820: [mem 0x0000000001000000-0x0000000010ffffff] usable",
            "[    0.000000] Linux version 6.1",
            "[    0.000000] Hypervisor detected: Xen HVM",
            "[    0.000000] Xen version 4.17.",
            "tsc: Detected",
            // The host's ACPI tables under a root keel rebuilt at 0xf0000,
            // with a MADT of dom0's vCPUs.
            "ACPI: RSDP 0x00000000000F0000 000024 (v02 BOCHS )",
            "ACPI: XSDT 0x00000000000F0040",
            "ACPI: APIC 0x00000000000F00",
            "ACPI: FACP 0x00000000",
        ]);
    s.cmdline = "console=com1 loglvl=info dom0_mem=256M debug_exit=0xf4".into();
    s.memory_mib = 1024;
    s
}

/// The VM-exit benchmark runs (`cargo xtask bench`): `test=bench` on each
/// emulator; keel prints `bench: <loop>: ... = N exits/s (<backend>)`.
pub fn bench_scenarios(guest_elf: &[u8]) -> Vec<Scenario> {
    use Emulator::*;
    use Firmware::*;
    use Vendor::*;
    [
        ("bench-qemu-amd", Qemu, Amd, Bios),
        ("bench-bochs-intel", Bochs, Intel, Grub),
        ("bench-bochs-amd", Bochs, Amd, Grub),
    ]
    .into_iter()
    .map(|(name, e, v, f)| {
        let mut s = Scenario::boot(name, e, v, f, 1)
            .describe("VM-exit round trips: null hypercall and CPUID loops")
            .module("testguest", guest_elf.to_vec())
            .expect(Expect::Pass {
                test: "bench".into(),
            });
        s.cmdline = s.cmdline.replace("test=boot", "test=bench");
        s
    })
    .collect()
}

/// How the emulator run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited by itself with this status (`None`: killed by a signal).
    Status(Option<i32>),
    /// The harness stopped it after the result was on the console.
    Stopped,
    /// It ran past the scenario's timeout and was killed.
    TimedOut,
    /// Nothing at all appeared on COM1 within the silence timeout; killed.
    Silent,
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Status(Some(c)) => write!(f, "exit status {c}"),
            Exit::Status(None) => write!(f, "killed by a signal"),
            Exit::Stopped => write!(f, "stopped by the harness after its result"),
            Exit::TimedOut => write!(f, "timed out"),
            Exit::Silent => write!(
                f,
                "killed: COM1 stayed empty (firmware or bootloader hang?)"
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Passed as expected.
    Passed,
    /// Failed exactly the way the scenario expects.
    ExpectedFailure,
    /// Anything else.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
    /// One line: why it failed, or what was seen.
    pub reason: String,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.status != Status::Failed
    }
    fn fail(reason: impl Into<String>) -> Verdict {
        Verdict {
            status: Status::Failed,
            reason: reason.into(),
        }
    }
}

/// Decides a run from its console and exit. Pure: unit-tested on canned logs.
pub fn decide(s: &Scenario, console: &Console, exit: Exit) -> Verdict {
    let missing: Vec<&str> = s
        .must_contain
        .iter()
        .map(String::as_str)
        .filter(|l| !console.contains(l))
        .collect();
    let missing_msg = || format!("missing console line(s): {}", quote_all(&missing));
    let timed_out =
        |what: &str| Verdict::fail(format!("timed out after {}s {what}", s.timeout.as_secs()));
    if console.markers.is_empty() {
        if let Some(p) = console.loader_panic() {
            return Verdict::fail(format!("the bootloader panicked before keel ran: {p}"));
        }
    }
    // A guest kernel's log is evidence: a splat, an oops or a taint fails
    // the run whatever else it printed.
    if let Some(l) = console.kernel_problem() {
        return Verdict::fail(format!("guest kernel log: '{}'", l.trim()));
    }
    match &s.expect {
        Expect::Pass { test } => {
            if let Some(f) = console.fatal() {
                return Verdict::fail(format!("unexpected FATAL: {f}"));
            }
            if let Some((sc, reason)) = console.fail() {
                return Verdict::fail(format!("keel-test: FAIL {sc} reason={reason}"));
            }
            let Some((sc, fields)) = console.pass() else {
                return match exit {
                    Exit::TimedOut => timed_out("without a PASS/FAIL marker"),
                    e => Verdict::fail(format!("no PASS marker ({e})")),
                };
            };
            if sc != test {
                return Verdict::fail(format!("PASS for test '{sc}', expected '{test}'"));
            }
            let want = format!("{0}/{0}", s.cpus);
            match fields.get("cpus") {
                Some(c) if *c == want => {}
                Some(c) => return Verdict::fail(format!("cpus={c} online, expected {want}")),
                None => return Verdict::fail("PASS line has no cpus= field"),
            }
            if let Some((n, m)) = console.smp() {
                if n != s.cpus || m != s.cpus {
                    return Verdict::fail(format!("SMP: {n}/{m} CPUs online, expected {want}"));
                }
            }
            let online = console.cpus_online();
            if !online.is_empty() && online != (0..s.cpus).collect::<Vec<_>>() {
                return Verdict::fail(format!(
                    "CPU online lines for {online:?}, expected 0..{}",
                    s.cpus
                ));
            }
            if !missing.is_empty() {
                return Verdict::fail(missing_msg());
            }
            if !console.powered_off() {
                return match exit {
                    Exit::TimedOut => timed_out("after PASS without 'keel: powering off'"),
                    e => Verdict::fail(format!("no 'keel: powering off' line ({e})")),
                };
            }
            match (s.emulator, exit) {
                (Emulator::Qemu, Exit::Status(Some(0))) | (Emulator::Bochs, _) => Verdict {
                    status: Status::Passed,
                    reason: format!("PASS {sc} cpus={want}, powered off"),
                },
                (Emulator::Qemu, e) => {
                    Verdict::fail(format!("powered off but QEMU did not exit cleanly ({e})"))
                }
            }
        }
        Expect::Failure {
            patterns,
            qemu_status,
        } => {
            if let Some((sc, _)) = console.pass() {
                if console.fatal().is_none() && console.fail().is_none() {
                    return Verdict::fail(format!(
                        "expected failure not detected: keel reported PASS {sc}"
                    ));
                }
            }
            let absent: Vec<&str> = patterns
                .iter()
                .map(String::as_str)
                .filter(|p| !console.contains(p))
                .collect();
            if !absent.is_empty() {
                return match exit {
                    Exit::TimedOut => timed_out(&format!(
                        "without the expected failure: {}",
                        quote_all(&absent)
                    )),
                    e => Verdict::fail(format!(
                        "expected failure not detected ({e}): missing {}",
                        quote_all(&absent)
                    )),
                };
            }
            if !missing.is_empty() {
                return Verdict::fail(missing_msg());
            }
            if s.emulator == Emulator::Qemu && exit != Exit::Status(Some(*qemu_status)) {
                return Verdict::fail(format!(
                    "failure seen but QEMU {exit}, expected exit status {qemu_status} (debug_exit)"
                ));
            }
            let what = console
                .fail()
                .map(|(sc, r)| format!("FAIL {sc} reason={r}"))
                .or_else(|| console.fatal().map(str::to_string))
                .unwrap_or_default();
            Verdict {
                status: Status::ExpectedFailure,
                reason: format!("expected failure detected: {what} ({exit})"),
            }
        }
        Expect::Lines => {
            if let Some(f) = console.fatal() {
                return Verdict::fail(format!("unexpected FATAL: {f}"));
            }
            if let Some((sc, reason)) = console.fail() {
                return Verdict::fail(format!("keel-test: FAIL {sc} reason={reason}"));
            }
            // dom0's `sleep 1` is timed by its clock: it must take about a
            // second, on keel's PV clock and timer events.
            if let Some(ms) = console.dom0_sleep_ms() {
                if !SLEEP_1_MS.contains(&ms) {
                    return Verdict::fail(format!(
                        "dom0's sleep 1 took {ms} ms (want {}-{} ms)",
                        SLEEP_1_MS.start(),
                        SLEEP_1_MS.end()
                    ));
                }
            }
            if !missing.is_empty() {
                return match exit {
                    Exit::TimedOut => timed_out(&format!("; {}", missing_msg())),
                    e => Verdict::fail(format!("{} ({e})", missing_msg())),
                };
            }
            Verdict {
                status: Status::Passed,
                reason: format!("all expected lines seen ({exit})"),
            }
        }
    }
}

/// What "about a second" means for dom0's `sleep 1` (emulated, so a
/// little slack above).
pub const SLEEP_1_MS: std::ops::RangeInclusive<u64> = 950..=1500;

fn quote_all(v: &[&str]) -> String {
    v.iter()
        .map(|l| format!("'{l}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the runner should do now, given the console so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Keep waiting.
    Running,
    /// The result is on the console: wait at most a short grace period for
    /// the emulator to exit by itself, then stop it.
    Done,
}

/// Whether a run's result is already on the console.
pub fn progress(s: &Scenario, console: &Console) -> Progress {
    if console.markers.is_empty() && console.loader_panic().is_some() {
        return Progress::Done;
    }
    let done = match s.expect {
        // A PASS line (a self-test beside dom0) is not the end: the
        // expected lines are.
        Expect::Lines => {
            console.fatal().is_some()
                || console.fail().is_some()
                || s.must_contain.iter().all(|l| console.contains(l))
        }
        _ => console.fatal().is_some() || console.fail().is_some() || console.powered_off(),
    };
    if done {
        Progress::Done
    } else {
        Progress::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(name: &str) -> Scenario {
        required().into_iter().find(|s| s.name == name).unwrap()
    }

    const GOOD2: &str = "SeaBIOS\n(XEN) keel: booting\n(XEN) CPU0 online\n(XEN) CPU1 online\n\
        (XEN) SMP: 2/2 CPUs online\n(XEN) keel-test: PASS boot cpus=2/2\n(XEN) keel: powering off\n";

    /// A `qemu-amd-fuzz` run's keel lines (QEMU, 2026-12-02), shortened.
    const FUZZ_LOG: &str = "(XEN) SMP: 2/2 CPUs online (2 present)\n\
        (XEN) (d21) fuzz: 100000 hypercalls, rc histogram: 0:3024 -1:7821 -2:1224 -3:48 -14:377 -22:1333 -38:86054 -62:1 other-negative:0 positive:118 faulted:0\n\
        (XEN) (d21) fuzz: by kind: hypercall 100000 port-in 9863 port-out 9884 rdmsr 10087 (7401 #GP) wrmsr 9695 (8137 #GP) cpuid 20244\n\
        (XEN) fuzz: d21: Done(0): 100000 hypercalls (86015 -ENOSYS for unimplemented calls) and 159548 exits in 16951292 us = 5899 hypercalls/s (AMD-V)\n\
        (XEN) (d22) suite: 11/11 checks passed\n\
        (XEN) fuzz: d20 long run beside the fuzzer: Done(0)\n\
        (XEN) fuzz: d22 suite after the fuzzer: Done(0)\n\
        (XEN) keel-test: PASS fuzz cpus=2/2 fuzzer=done calls=100000 us=16951292 calls_per_s=5899 backend=AMD-V\n\
        (XEN) keel: powering off\n";

    #[test]
    fn fuzz_scenarios_decide_on_the_summary_lines() {
        let all = fuzz_scenarios(&[]);
        assert_eq!(all.len(), 3);
        let s = &all[0];
        assert_eq!(s.name, "qemu-amd-fuzz");
        assert!(all.iter().all(|s| s.single_thread_tcg));
        assert!(
            s.cmdline.contains("test=fuzz fuzz_count=100000"),
            "{}",
            s.cmdline
        );
        let v = decide(s, &Console::parse(FUZZ_LOG), Exit::Status(Some(0)));
        assert_eq!(v.status, Status::Passed, "{v:?}");
        // The fuzzer ended early: its summary is missing.
        let short: String = FUZZ_LOG
            .lines()
            .filter(|l| !l.contains("(d21)"))
            .map(|l| format!("{l}\n"))
            .collect();
        let v = decide(s, &Console::parse(&short), Exit::Status(Some(0)));
        assert!(!v.ok() && v.reason.contains("rc histogram"), "{v:?}");
        // The bench runs ask for their own count and have room for it.
        let b = fuzz_bench_scenarios(&[], 1_000_000);
        assert!(b.iter().all(|s| s.cmdline.contains("fuzz_count=1000000")));
    }

    #[test]
    fn required_scenarios_are_complete_and_unique() {
        let all = required();
        let mut names: Vec<_> = all.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert!(all
            .iter()
            .any(|s| s.emulator == Emulator::Qemu && s.firmware == Firmware::Uefi && s.cpus == 4));
        assert!(all
            .iter()
            .any(|s| s.emulator == Emulator::Bochs && s.vendor == Vendor::Intel));
        assert!(all
            .iter()
            .any(|s| s.emulator == Emulator::Bochs && s.vendor == Vendor::Amd));
        assert!(all
            .iter()
            .any(|s| s.expects_failure() && s.cmdline.contains("test_fault=pf")));
        for s in &all {
            assert!(s.cmdline.contains("debug_exit=0xf4"), "{}", s.name);
            assert!(s.truncate_archive.is_none() || s.firmware != Firmware::Grub);
        }
    }

    #[test]
    fn clean_pass() {
        let s = scenario("qemu-bios-2cpu");
        let v = decide(&s, &Console::parse(GOOD2), Exit::Status(Some(0)));
        assert_eq!(v.status, Status::Passed, "{v:?}");
        assert_eq!(progress(&s, &Console::parse(GOOD2)), Progress::Done);
    }

    #[test]
    fn pass_needs_clean_qemu_exit_and_power_off() {
        let s = scenario("qemu-bios-2cpu");
        let c = Console::parse(GOOD2);
        assert!(!decide(&s, &c, Exit::Status(Some(3))).ok());
        assert!(!decide(&s, &c, Exit::Stopped).ok());
        let no_off = GOOD2.replace("(XEN) keel: powering off\n", "");
        let c = Console::parse(&no_off);
        assert_eq!(progress(&s, &c), Progress::Running);
        // A triple fault with -no-reboot also exits QEMU with status 0.
        let v = decide(&s, &c, Exit::Status(Some(0)));
        assert!(!v.ok() && v.reason.contains("powering off"), "{v:?}");
    }

    #[test]
    fn bochs_exit_status_does_not_matter() {
        let s = scenario("bochs-intel-grub-2cpu");
        let c = Console::parse(GOOD2);
        assert!(decide(&s, &c, Exit::Status(Some(1))).ok());
        assert!(decide(&s, &c, Exit::Stopped).ok());
    }

    #[test]
    fn missing_cpu_is_a_failure() {
        let s = scenario("qemu-uefi-4cpu");
        let log = "(XEN) CPU0 online\n(XEN) CPU1 online\n(XEN) SMP: 2/4 CPUs online\n\
                   (XEN) keel-test: PASS boot cpus=2/4\n(XEN) keel: powering off\n";
        let v = decide(&s, &Console::parse(log), Exit::Status(Some(0)));
        assert!(!v.ok());
        assert!(v.reason.contains("cpus=2/4"), "{v:?}");
    }

    #[test]
    fn unexpected_fatal_and_fail() {
        let s = scenario("qemu-bios-2cpu");
        let log =
            "(XEN) CPU0 online\n(XEN) *** FATAL: #GP vector=13 error=0 cpu=1\n(XEN) RIP=ffff8000\n";
        let v = decide(&s, &Console::parse(log), Exit::Status(Some(3)));
        assert!(!v.ok() && v.reason.contains("FATAL"), "{v:?}");
        let log = "(XEN) keel-test: FAIL boot reason=smp-timeout\n";
        let v = decide(&s, &Console::parse(log), Exit::Status(Some(3)));
        assert!(!v.ok() && v.reason.contains("smp-timeout"), "{v:?}");
    }

    #[test]
    fn bootloader_panic_ends_the_run() {
        let s = scenario("qemu-uefi-4cpu");
        let c =
            Console::parse("panicked at /b/lib.rs:107:18:\nbootloader config section not found\n");
        assert_eq!(progress(&s, &c), Progress::Done);
        let v = decide(&s, &c, Exit::Stopped);
        assert!(!v.ok() && v.reason.contains("bootloader panicked"), "{v:?}");
    }

    #[test]
    fn timeout_without_marker() {
        let s = scenario("qemu-bios-2cpu");
        let v = decide(&s, &Console::parse("(XEN) keel: booting\n"), Exit::TimedOut);
        assert!(!v.ok() && v.reason.contains("timed out"), "{v:?}");
    }

    #[test]
    fn deliberate_fault_is_an_expected_failure() {
        let s = scenario("qemu-uefi-fault-pf");
        let log = "(XEN) CPU0 online\n(XEN) *** FATAL: page fault (vector 14) on CPU0\n\
                   (XEN)     error code 0002 RIP ffff800000101234 CR2 0000dead0000beef\n";
        let c = Console::parse(log);
        assert_eq!(progress(&s, &c), Progress::Done);
        let v = decide(&s, &c, Exit::Status(Some(3)));
        assert_eq!(v.status, Status::ExpectedFailure, "{v:?}");
        // Wrong exit status (e.g. debug_exit not written): not accepted.
        assert!(!decide(&s, &c, Exit::Stopped).ok());
        // The fault not happening at all is a failure of the suite.
        let v = decide(&s, &Console::parse(GOOD2), Exit::Status(Some(0)));
        assert!(!v.ok() && v.reason.contains("not detected"), "{v:?}");
    }

    #[test]
    fn missing_module() {
        let s = scenario("qemu-uefi-missing-module");
        let log = "(XEN) keel-test: FAIL boot reason=missing-module dom0\n";
        assert_eq!(
            decide(&s, &Console::parse(log), Exit::Status(Some(3))).status,
            Status::ExpectedFailure
        );
        let log = "(XEN) keel-test: FAIL boot reason=smp-timeout\n";
        assert!(!decide(&s, &Console::parse(log), Exit::Status(Some(3))).ok());
    }

    #[test]
    fn bad_cmdline_needs_both_lines_and_a_pass() {
        let s = scenario("qemu-uefi-bad-cmdline");
        let both = format!(
            "(XEN) cmdline: unknown option 'bogus_opt'\n(XEN) cmdline: bad value for 'smp': 'abc'\n{GOOD2}"
        );
        assert!(decide(&s, &Console::parse(&both), Exit::Status(Some(0))).ok());
        let one = format!("(XEN) cmdline: unknown option 'bogus_opt'\n{GOOD2}");
        let v = decide(&s, &Console::parse(&one), Exit::Status(Some(0)));
        assert!(!v.ok() && v.reason.contains("bad value"), "{v:?}");
    }

    #[test]
    fn truncated_archive() {
        let s = scenario("qemu-uefi-truncated-archive");
        let log = "(XEN) boot modules: archive rejected: entry 1: data runs past the end of the archive (truncated)\n";
        let c = Console::parse(log);
        assert_eq!(progress(&s, &c), Progress::Done);
        assert!(decide(&s, &c, Exit::Stopped).ok());
        let c = Console::parse("(XEN) boot modules: archive rejected: bad magic\n");
        assert_eq!(progress(&s, &c), Progress::Running);
        assert!(!decide(&s, &c, Exit::TimedOut).ok());
    }

    #[test]
    fn split_bench_asks_dom0_for_its_size_and_rounds() {
        for (e, v) in [
            (Emulator::Qemu, Vendor::Amd),
            (Emulator::Bochs, Vendor::Intel),
        ] {
            let s = split_bench("b", e, v);
            let (mib, rounds, secs) = split_bench_size(e);
            let line = s
                .modules
                .iter()
                .find(|(n, _)| n == "dom0-cmdline")
                .map(|(_, d)| String::from_utf8_lossy(d).into_owned())
                .unwrap();
            assert!(
                line.contains(&format!(
                    "keel.bench_split={mib} keel.bench_split_rounds={rounds}"
                )),
                "{line}"
            );
            assert_eq!(s.timeout.as_secs(), secs);
            assert!(s.cmdline.contains("dom0_mem=512M"), "{}", s.cmdline);
            assert!(s
                .must_contain
                .iter()
                .any(|l| l.ends_with("KEEL-LINUX: bench-split: done")));
        }
    }

    /// A Linux scenario with every expected line passes, and fails when the
    /// kernel's log has a splat or a taint anywhere in it.
    #[test]
    fn linux_scenario_fails_on_a_kernel_warning() {
        let s = linux_scenarios()
            .into_iter()
            .find(|s| s.name == "qemu-amd-linux")
            .unwrap();
        let mut log = String::new();
        for needle in &s.must_contain {
            match needle.strip_prefix(crate::markers::DOM0) {
                Some(l) if l.starts_with("KEEL-LINUX: sleep 1 took") => {
                    log.push_str("KEEL-LINUX: sleep 1 took 1012 ms\n")
                }
                Some(l) => log.push_str(&format!("[    5.000000] {l}\n")),
                None => log.push_str(&format!("(XEN) {needle}\n")),
            }
        }
        let v = decide(&s, &Console::parse(&log), Exit::Status(Some(0)));
        assert!(v.ok(), "{v:?}");
        let warn = "[    1.234567] WARNING: CPU: 1 PID: 0 at arch/x86/kernel/smpboot.c:424 topology_sane.isra.0+0x6d/0x80\n";
        let v = decide(
            &s,
            &Console::parse(&format!("{warn}{log}")),
            Exit::Status(Some(0)),
        );
        assert!(
            !v.ok() && v.reason.contains("guest kernel log") && v.reason.contains("topology_sane"),
            "{v:?}"
        );
    }
}
