//! keel's host-side image builder.
//!
//! The same kernel ELF boots three ways (see `docs/boot.md`):
//! * [`bios_image`] / [`uefi_image`]: disk images made by the `bootloader`
//!   crate; the hypervisor command line and every boot module travel in one
//!   ramdisk, a `KEELMODS` archive ([`keel_bootmod`]).
//! * GRUB multiboot2: built by the test harness (`keel_harness::grub`), which
//!   does not depend on this crate so that `cargo test` stays fast.
//!
//! Building this crate compiles the bootloader's stages (minutes the first
//! time); `cargo xtask` builds and runs the `keel-boot` binary on demand.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
pub use bootloader::{BiosBoot, BootConfig, UefiBoot};
pub use keel_bootmod;

/// Which firmware a disk image is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    Bios,
    Uefi,
}

impl std::str::FromStr for Firmware {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "bios" => Ok(Firmware::Bios),
            "uefi" => Ok(Firmware::Uefi),
            other => bail!("unknown firmware '{other}' (expected bios or uefi)"),
        }
    }
}

fn check_kernel(kernel: &Path) -> Result<()> {
    let head =
        std::fs::read(kernel).with_context(|| format!("reading kernel {}", kernel.display()))?;
    if head.len() < 4 || &head[..4] != b"\x7fELF" {
        bail!("{} is not an ELF file", kernel.display());
    }
    Ok(())
}

/// Creates a disk image for `firmware` from `kernel`, with `ramdisk` (a
/// KEELMODS archive, or any bytes: the kernel validates it) as the one ramdisk.
pub fn disk_image(
    firmware: Firmware,
    kernel: &Path,
    ramdisk: Option<&Path>,
    out: &Path,
) -> Result<()> {
    check_kernel(kernel)?;
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // The kernel only writes to COM1; the bootloader's framebuffer logger
    // costs seconds under TCG and nobody looks at it in tests.
    let mut config = BootConfig::default();
    config.frame_buffer_logging = false;
    match firmware {
        Firmware::Bios => {
            let mut b = BiosBoot::new(kernel);
            b.set_boot_config(&config);
            if let Some(r) = ramdisk {
                b.set_ramdisk(r);
            }
            b.create_disk_image(out)
        }
        Firmware::Uefi => {
            let mut b = UefiBoot::new(kernel);
            b.set_boot_config(&config);
            if let Some(r) = ramdisk {
                b.set_ramdisk(r);
            }
            b.create_disk_image(out)
        }
    }
    .with_context(|| format!("creating {firmware:?} image {}", out.display()))
}

/// [`disk_image`] for BIOS.
pub fn bios_image(kernel: &Path, ramdisk: Option<&Path>, out: &Path) -> Result<()> {
    disk_image(Firmware::Bios, kernel, ramdisk, out)
}

/// [`disk_image`] for UEFI.
pub fn uefi_image(kernel: &Path, ramdisk: Option<&Path>, out: &Path) -> Result<()> {
    disk_image(Firmware::Uefi, kernel, ramdisk, out)
}

/// Writes a KEELMODS archive holding `cmdline` (entry "cmdline") followed by
/// `modules` (name, file) to `out`.
pub fn write_archive(cmdline: &str, modules: &[(String, PathBuf)], out: &Path) -> Result<()> {
    let mut datas = Vec::new();
    for (name, path) in modules {
        datas.push((
            name.as_str(),
            std::fs::read(path).with_context(|| format!("reading module {}", path.display()))?,
        ));
    }
    let mut entries: Vec<(&str, &[u8])> = vec![(keel_bootmod::CMDLINE, cmdline.as_bytes())];
    entries.extend(datas.iter().map(|(n, d)| (*n, d.as_slice())));
    let bytes = keel_bootmod::build(&entries).map_err(anyhow::Error::msg)?;
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))
}
