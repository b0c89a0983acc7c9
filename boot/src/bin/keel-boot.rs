//! `keel-boot bios|uefi --kernel K [--ramdisk R] --out IMG`
//! `keel-boot archive --cmdline "..." [--module name=path]... --out R`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use keel_boot::Firmware;

const USAGE: &str = "usage:
  keel-boot bios|uefi --kernel <elf> [--ramdisk <file>] --out <image>
  keel-boot archive [--cmdline <text>] [--module <name>=<file>]... --out <file>";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keel-boot: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().context(USAGE)?;
    let (mut kernel, mut ramdisk, mut out, mut cmdline) = (None, None, None, String::new());
    let mut modules = Vec::new();
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .with_context(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--kernel" => kernel = Some(PathBuf::from(val()?)),
            "--ramdisk" => ramdisk = Some(PathBuf::from(val()?)),
            "--out" => out = Some(PathBuf::from(val()?)),
            "--cmdline" => cmdline = val()?,
            "--module" => {
                let v = val()?;
                let (n, p) = v.split_once('=').context("--module wants <name>=<file>")?;
                modules.push((n.to_string(), PathBuf::from(p)));
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument '{other}'\n{USAGE}"),
        }
    }
    let out = out.context(format!("--out is required\n{USAGE}"))?;
    match cmd.as_str() {
        "bios" | "uefi" => {
            let fw: Firmware = cmd.parse()?;
            let kernel = kernel.context(format!("--kernel is required\n{USAGE}"))?;
            keel_boot::disk_image(fw, &kernel, ramdisk.as_deref(), &out)?;
        }
        "archive" => keel_boot::write_archive(&cmdline, &modules, &out)?,
        other => bail!("unknown command '{other}'\n{USAGE}"),
    }
    println!("{}", out.display());
    Ok(())
}
