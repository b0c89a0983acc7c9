//! `cargo xtask deb`: keel's Debian package, the way keel is installed on a
//! Debian 12 server (`docs/install.md`).
//!
//! `keel_<version>_amd64.deb` holds keel's ELF (`/boot/keel.elf`), the static
//! dom0 tools (`keelctl`, `keel-xenstored`, `keel-consoled`, `keel-vmlinux`
//! in `/usr/sbin`), the GRUB script `/etc/grub.d/08_linux_keel` with its options
//! `/etc/default/keel`, the kernel hooks that keep `/boot/keel/vmlinux-*`
//! (the PVH ELF of each installed kernel), and the systemd units of the dom0
//! services. The files are in `dist/debian/`; its `DEBIAN/` holds the
//! maintainer scripts. `dpkg-deb --root-owner-group` builds it without root.

use std::path::{Path, PathBuf};
use std::process::Command;

type Result<T> = std::result::Result<T, String>;

/// Where a file of the package comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Src {
    /// A path under `dist/debian/`.
    Dist(&'static str),
    /// A path relative to the repository.
    Repo(&'static str),
    /// keel's kernel ELF.
    Kernel,
    /// A static musl binary (package, binary).
    Musl(&'static str, &'static str),
}

/// One file of the package: source, installed path, mode, conffile?
pub type Entry = (Src, &'static str, u32, bool);

/// Every file keel's package installs.
pub const FILES: &[Entry] = &[
    (Src::Kernel, "boot/keel.elf", 0o644, false),
    (
        Src::Musl("keelctl", "keelctl"),
        "usr/sbin/keelctl",
        0o755,
        false,
    ),
    (
        Src::Musl("keel-xenstored", "keel-xenstored"),
        "usr/sbin/keel-xenstored",
        0o755,
        false,
    ),
    (
        Src::Musl("keel-consoled", "keel-consoled"),
        "usr/sbin/keel-consoled",
        0o755,
        false,
    ),
    (
        Src::Musl("keel-vmlinux", "keel-vmlinux"),
        "usr/sbin/keel-vmlinux",
        0o755,
        false,
    ),
    (
        Src::Dist("grub.d/08_linux_keel"),
        "etc/grub.d/08_linux_keel",
        0o755,
        true,
    ),
    (Src::Dist("default/keel"), "etc/default/keel", 0o644, true),
    (
        Src::Dist("kernel/postinst.d/keel"),
        "etc/kernel/postinst.d/keel",
        0o755,
        true,
    ),
    (
        Src::Dist("kernel/postrm.d/keel"),
        "etc/kernel/postrm.d/keel",
        0o755,
        true,
    ),
    (
        Src::Dist("systemd/keel-dom0.service"),
        "lib/systemd/system/keel-dom0.service",
        0o644,
        false,
    ),
    (
        Src::Dist("systemd/keel-xenstored.service"),
        "lib/systemd/system/keel-xenstored.service",
        0o644,
        false,
    ),
    (
        Src::Dist("systemd/keel-consoled.service"),
        "lib/systemd/system/keel-consoled.service",
        0o644,
        false,
    ),
    (
        Src::Repo("docs/install.md"),
        "usr/share/doc/keel/install.md",
        0o644,
        false,
    ),
    (
        Src::Repo("docs/console.md"),
        "usr/share/doc/keel/console.md",
        0o644,
        false,
    ),
    (
        Src::Dist("copyright"),
        "usr/share/doc/keel/copyright",
        0o644,
        false,
    ),
];

/// Maintainer scripts in `dist/debian/DEBIAN/`.
pub const SCRIPTS: &[&str] = &["postinst", "prerm", "postrm"];

/// The static binaries the package needs.
pub fn musl_bins() -> Vec<(&'static str, &'static str)> {
    FILES
        .iter()
        .filter_map(|(s, ..)| match s {
            Src::Musl(p, b) => Some((*p, *b)),
            _ => None,
        })
        .collect()
}

/// `0.1.0+git42.1a2b3c4` from the workspace version and git (commit count,
/// so versions grow, and the commit); `0.1.0` outside a git checkout.
pub fn version(root: &Path) -> String {
    let base = env!("CARGO_PKG_VERSION");
    let git = |args: &[&str]| -> Option<String> {
        let o = Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    match (
        git(&["rev-list", "--count", "HEAD"]),
        git(&["rev-parse", "--short", "HEAD"]),
    ) {
        (Some(n), Some(sha)) => format!("{base}+git{n}.{sha}"),
        _ => base.to_string(),
    }
}

/// The `DEBIAN/control` file.
pub fn control(version: &str, installed_kib: u64) -> String {
    format!(
        "Package: keel\n\
         Version: {version}\n\
         Architecture: amd64\n\
         Maintainer: keel developers <keel@localhost>\n\
         Section: admin\n\
         Priority: optional\n\
         Installed-Size: {installed_kib}\n\
         Depends: init-system-helpers (>= 1.18)\n\
         Recommends: grub2-common\n\
         Description: keel, a Xen-style hypervisor, with its dom0 tools\n \
         keel is a bare-metal Type-1 hypervisor for x86_64 (VT-x + EPT or AMD-V +\n \
         NPT). This package boots the installed Debian system on keel as dom0:\n \
         /boot/keel.elf, GRUB entries for each installed kernel\n \
         (/etc/grub.d/08_linux_keel, options in /etc/default/keel), keelctl and\n \
         the dom0 services.\n"
    )
}

/// `dist/debian/...`
fn dist(root: &Path, p: &str) -> PathBuf {
    root.join("dist/debian").join(p)
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<u64> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(d) = to.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let n = std::fs::copy(from, to)
        .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", to.display()))?;
    Ok(n)
}

/// Builds the package from `kernel` and the musl binaries in `musl_dir`
/// into `out_dir`; returns the `.deb`'s path.
pub fn build(root: &Path, kernel: &Path, musl_dir: &Path, out_dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let version = version(root);
    let stage = out_dir.join("deb-root");
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(stage.join("DEBIAN"))
        .map_err(|e| format!("{}: {e}", stage.display()))?;
    // dpkg-deb wants 0755 directories, whatever the umask.
    let mut bytes = 0;
    let mut conffiles = String::new();
    for (src, dest, mode, conf) in FILES {
        let from = match src {
            Src::Dist(p) => dist(root, p),
            Src::Repo(p) => root.join(p),
            Src::Kernel => kernel.to_path_buf(),
            Src::Musl(_, b) => musl_dir.join(b),
        };
        bytes += copy(&from, &stage.join(dest), *mode)?;
        if *conf {
            conffiles += &format!("/{dest}\n");
        }
    }
    for s in SCRIPTS {
        copy(
            &dist(root, &format!("DEBIAN/{s}")),
            &stage.join("DEBIAN").join(s),
            0o755,
        )?;
    }
    std::fs::write(stage.join("DEBIAN/conffiles"), conffiles)
        .map_err(|e| format!("conffiles: {e}"))?;
    std::fs::write(
        stage.join("DEBIAN/control"),
        control(&version, bytes.div_ceil(1024)),
    )
    .map_err(|e| format!("control: {e}"))?;
    let mut dirs = vec![stage.clone()];
    while let Some(d) = dirs.pop() {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("{}: {e}", d.display()))?;
        for e in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let p = e.map_err(|e| e.to_string())?.path();
            if p.is_dir() {
                dirs.push(p);
            }
        }
    }
    let deb = out_dir.join(format!("keel_{version}_amd64.deb"));
    let _ = std::fs::remove_file(&deb);
    let out = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "--build"])
        .arg(&stage)
        .arg(&deb)
        .output()
        .map_err(|e| format!("cannot run dpkg-deb (package dpkg): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "dpkg-deb --build failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(deb)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf()
    }

    #[test]
    fn every_packaged_file_exists_and_is_listed_once() {
        let r = root();
        let mut dests: Vec<&str> = FILES.iter().map(|f| f.1).collect();
        dests.sort_unstable();
        dests.dedup();
        assert_eq!(dests.len(), FILES.len());
        for (src, dest, mode, conf) in FILES {
            match src {
                Src::Dist(p) => assert!(dist(&r, p).is_file(), "dist/debian/{p}"),
                Src::Repo(p) => assert!(r.join(p).is_file(), "{p}"),
                _ => {}
            }
            // conffiles are exactly what lives under /etc.
            assert_eq!(*conf, dest.starts_with("etc/"), "{dest}");
            // Executables: scripts and binaries.
            let exec = dest.starts_with("usr/sbin/")
                || dest.starts_with("etc/grub.d/")
                || dest.starts_with("etc/kernel/");
            assert_eq!(*mode == 0o755, exec, "{dest}");
        }
        for s in SCRIPTS {
            let t = std::fs::read_to_string(dist(&r, &format!("DEBIAN/{s}"))).unwrap();
            assert!(t.starts_with("#!/bin/sh\n"), "{s}");
            assert!(t.contains("\nset -e\n"), "{s}");
        }
        assert_eq!(
            musl_bins(),
            [
                ("keelctl", "keelctl"),
                ("keel-xenstored", "keel-xenstored"),
                ("keel-consoled", "keel-consoled"),
                ("keel-vmlinux", "keel-vmlinux")
            ]
        );
    }

    #[test]
    fn control_fields() {
        let c = control("0.1.0+git5.abc1234", 4711);
        assert!(c.starts_with("Package: keel\nVersion: 0.1.0+git5.abc1234\n"));
        assert!(c.contains("\nArchitecture: amd64\n"));
        assert!(c.contains("\nInstalled-Size: 4711\n"));
        // Continuation lines of the description start with one space.
        let desc: Vec<&str> = c
            .lines()
            .skip_while(|l| !l.starts_with("Description:"))
            .collect();
        assert!(desc.len() > 2);
        for l in &desc[1..] {
            assert!(l.starts_with(' ') && !l.starts_with("  "), "{l:?}");
        }
        assert!(c.ends_with('\n'));
    }

    /// A fake /boot for `08_linux_keel`, and the script's run.
    struct GrubRun {
        dir: PathBuf,
    }

    const LIB: &str = "/usr/share/grub/grub-mkconfig_lib";

    impl GrubRun {
        fn new(name: &str) -> GrubRun {
            let dir =
                std::env::temp_dir().join(format!("keel-grub-test-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("boot/keel")).unwrap();
            std::fs::create_dir_all(dir.join("lib")).unwrap();
            assert!(
                Path::new(LIB).is_file(),
                "{LIB} is missing: install grub-common (`cargo xtask test` does)"
            );
            // GRUB's own library, with the three functions that ask grub-probe
            // about real devices replaced.
            std::fs::write(
                dir.join("lib/grub-mkconfig_lib"),
                format!(
                    ". {LIB}\n\
                     prepare_grub_to_access_device () {{ echo \"search --no-floppy --fs-uuid --set=root TESTUUID\"; }}\n\
                     make_system_path_relative_to_its_root () {{ echo \"$1\" | sed \"s,^$KEEL_GRUB_BOOT_DIR,/boot,\"; }}\n\
                     grub_get_device_id () {{ echo TESTUUID; }}\n"
                ),
            )
            .unwrap();
            std::fs::write(dir.join("boot/keel.elf"), b"keel").unwrap();
            GrubRun { dir }
        }

        /// A kernel in /boot: its bzImage, config (dom0-capable or not), and
        /// optionally the extracted vmlinux and an initrd.
        fn kernel(&self, version: &str, dom0: bool, vmlinux: bool, initrd: bool) -> &Self {
            let b = self.dir.join("boot");
            std::fs::write(b.join(format!("vmlinuz-{version}")), b"bz").unwrap();
            let cfg = if dom0 {
                "CONFIG_XEN=y\nCONFIG_XEN_PVH=y\nCONFIG_XEN_DOM0=y\n"
            } else {
                "CONFIG_XEN=y\nCONFIG_XEN_PVH=y\n# CONFIG_XEN_DOM0 is not set\n"
            };
            std::fs::write(b.join(format!("config-{version}")), cfg).unwrap();
            if vmlinux {
                std::fs::write(b.join(format!("keel/vmlinux-{version}")), b"elf").unwrap();
            }
            if initrd {
                std::fs::write(b.join(format!("initrd.img-{version}")), b"cpio").unwrap();
            }
            self
        }

        fn defaults(&self, text: &str) -> &Self {
            std::fs::write(self.dir.join("default-keel"), text).unwrap();
            self
        }

        /// (exit status, stdout, stderr)
        fn run(&self) -> (bool, String, String) {
            let o = Command::new("sh")
                .arg(root().join("dist/debian/grub.d/08_linux_keel"))
                .env("pkgdatadir", self.dir.join("lib"))
                .env("KEEL_GRUB_BOOT_DIR", self.dir.join("boot"))
                .env("KEEL_GRUB_DEFAULTS", self.dir.join("default-keel"))
                .env("GRUB_DEVICE", "/dev/vda3")
                .env("GRUB_DEVICE_BOOT", "/dev/vda3")
                .env("GRUB_DEVICE_UUID", "no-such-uuid-on-this-host")
                .env("GRUB_DISTRIBUTOR", "Debian")
                .env("GRUB_CMDLINE_LINUX", "console=ttyS0")
                .env("GRUB_CMDLINE_LINUX_DEFAULT", "quiet")
                .env("GRUB_RECOVERY_TITLE", "recovery mode")
                .output()
                .unwrap();
            (
                o.status.success(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        }
    }

    impl Drop for GrubRun {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Lines of `cfg` (trimmed) that start with `word`.
    fn lines<'a>(cfg: &'a str, word: &str) -> Vec<&'a str> {
        cfg.lines()
            .map(str::trim)
            .filter(|l| l.starts_with(word))
            .collect()
    }

    #[test]
    fn grub_entries_for_each_dom0_kernel() {
        let g = GrubRun::new("entries");
        g.kernel("6.1.0-9-amd64", true, true, true)
            .kernel("6.1.0-10-amd64", true, true, true)
            // Not dom0-capable, and not extracted: left out, with a word why.
            .kernel("6.1.0-10-cloud-amd64", false, false, true)
            .kernel("6.1.0-8-amd64", true, false, true);
        let (ok, cfg, err) = g.run();
        assert!(ok, "{err}");
        // The newest kernel first (the default entry), then a submenu with
        // normal and recovery entries for each kernel.
        let entries = lines(&cfg, "menuentry ");
        assert_eq!(entries.len(), 5, "{cfg}");
        assert!(entries[0].starts_with("menuentry 'Debian GNU/Linux, with keel hypervisor' --class debian --class gnu-linux --class gnu --class os --class xen $menuentry_id_option 'keel-gnulinux-simple-TESTUUID' {"), "{}", entries[0]);
        assert!(entries[1]
            .starts_with("menuentry 'Debian GNU/Linux, with keel and Linux 6.1.0-10-amd64' "));
        assert!(entries[2].starts_with(
            "menuentry 'Debian GNU/Linux, with keel and Linux 6.1.0-10-amd64 (recovery mode)' "
        ));
        assert!(entries[3]
            .starts_with("menuentry 'Debian GNU/Linux, with keel and Linux 6.1.0-9-amd64' "));
        assert_eq!(lines(&cfg, "submenu ").len(), 1);
        assert_eq!(
            lines(&cfg, "multiboot2")[0],
            "multiboot2\t/boot/keel.elf\tconsole=com1 loglvl=info dom0_mem=1024M"
        );
        let modules = lines(&cfg, "module2");
        assert_eq!(modules.len(), 10);
        assert_eq!(
            modules[0],
            "module2\t/boot/keel/vmlinux-6.1.0-10-amd64 dom0 root=/dev/vda3 ro console=ttyS0 quiet console=hvc0"
        );
        assert_eq!(
            modules[1],
            "module2\t--nounzip /boot/initrd.img-6.1.0-10-amd64 dom0-initrd"
        );
        // Recovery: single user, without GRUB_CMDLINE_LINUX_DEFAULT.
        assert_eq!(
            modules[4],
            "module2\t/boot/keel/vmlinux-6.1.0-10-amd64 dom0 root=/dev/vda3 ro single console=ttyS0 console=hvc0"
        );
        assert!(modules[7].contains("/boot/initrd.img-6.1.0-9-amd64 dom0-initrd"));
        assert_eq!(lines(&cfg, "search ").len(), 5);
        // Braces balance.
        assert_eq!(cfg.matches('{').count(), cfg.matches('}').count(), "{cfg}");
        assert!(err.contains("6.1.0-10-cloud-amd64 cannot be dom0"), "{err}");
        assert!(err.contains("keel-vmlinux "), "{err}");
        assert!(err.contains("vmlinux-6.1.0-8-amd64"), "{err}");
        assert!(!cfg.contains("6.1.0-8-amd64"), "{cfg}");
    }

    #[test]
    fn grub_options_from_etc_default_keel() {
        let g = GrubRun::new("options");
        g.kernel("6.1.0-9-amd64", true, true, false).defaults(
            "KEEL_DOM0_MEM=\"4G,max:4G\"\nKEEL_DOM0_MAX_VCPUS=2\nKEEL_CONSOLE=none\n\
             KEEL_LOGLVL=debug\nKEEL_CMDLINE=\"noreboot\"\nKEEL_DOM0_CMDLINE=\"console=hvc0 nomodeset\"\n",
        );
        let (ok, cfg, err) = g.run();
        assert!(ok, "{err}");
        assert_eq!(
            lines(&cfg, "multiboot2")[0],
            "multiboot2\t/boot/keel.elf\tconsole=none loglvl=debug dom0_mem=4G,max:4G dom0_max_vcpus=2 noreboot"
        );
        // No initrd: the kernel gets the device itself (UUID= needs an initrd).
        assert_eq!(
            lines(&cfg, "module2")[0],
            "module2\t/boot/keel/vmlinux-6.1.0-9-amd64 dom0 root=/dev/vda3 ro console=ttyS0 quiet console=hvc0 nomodeset"
        );
        assert!(!cfg.contains("dom0-initrd"));
    }

    #[test]
    fn grub_bad_options_stop_update_grub_with_a_reason() {
        for (line, what) in [
            ("KEEL_DOM0_MEM=lots", "KEEL_DOM0_MEM=\"lots\" is not a size"),
            ("KEEL_DOM0_MEM=1G2", "KEEL_DOM0_MEM=\"1G2\" is not a size"),
            (
                "KEEL_DOM0_MEM=1G,max:",
                "KEEL_DOM0_MEM=\"1G,max:\" is not a size",
            ),
            ("KEEL_DOM0_MAX_VCPUS=0", "KEEL_DOM0_MAX_VCPUS=\"0\" is not"),
            (
                "KEEL_DOM0_MAX_VCPUS=two",
                "KEEL_DOM0_MAX_VCPUS=\"two\" is not",
            ),
            (
                "KEEL_CONSOLE=ttyS0",
                "KEEL_CONSOLE=\"ttyS0\" is not com1 or none",
            ),
            ("KEEL_LOGLVL=loud", "KEEL_LOGLVL=\"loud\" is not one of"),
        ] {
            let g = GrubRun::new("bad");
            g.kernel("6.1.0-9-amd64", true, true, true).defaults(line);
            let (ok, cfg, err) = g.run();
            assert!(!ok, "{line}: accepted");
            assert!(err.contains(what), "{line}: {err}");
            assert!(
                err.contains("default-keel"),
                "{line}: names the file: {err}"
            );
            assert!(!cfg.contains("multiboot2"), "{line}: {cfg}");
        }
    }

    #[test]
    fn grub_nothing_without_keel_or_kernels() {
        let g = GrubRun::new("none");
        g.kernel("6.1.0-9-amd64", true, true, true);
        std::fs::remove_file(g.dir.join("boot/keel.elf")).unwrap();
        let (ok, cfg, _) = g.run();
        assert!(ok && cfg.trim().is_empty(), "{cfg}");
        let g = GrubRun::new("nokernel");
        let (ok, cfg, err) = g.run();
        assert!(ok && cfg.trim().is_empty(), "{cfg}");
        assert!(err.contains("no kernel for dom0"), "{err}");
    }
}
