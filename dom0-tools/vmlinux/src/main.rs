//! `keel-vmlinux BZIMAGE OUT`: writes the PVH vmlinux ELF inside a Linux bzImage to OUT.
//!
//! keel's Debian package runs it for each installed kernel (from
//! `/etc/kernel/postinst.d/keel` and its postinst), so that
//! `/etc/grub.d/08_linux_keel` can give keel `/boot/keel/vmlinux-<version>` as dom0.
//! `keel-vmlinux --check FILE` checks that FILE already is such an ELF.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "\
usage: keel-vmlinux BZIMAGE OUT    write the PVH vmlinux ELF inside BZIMAGE to OUT
       keel-vmlinux --check FILE  check that FILE is an ELF kernel with a PVH entry

keel boots dom0 from the uncompressed ELF kernel (its Xen PHYS32_ENTRY note);
Debian's /boot/vmlinuz-* is a bzImage with that ELF inside, XZ-compressed.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["-h" | "--help"] => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        ["--check", file] => check(Path::new(file)),
        [bz, out] if !bz.starts_with('-') && !out.starts_with('-') => {
            extract(Path::new(bz), Path::new(out))
        }
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keel-vmlinux: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(file: &Path) -> Result<(), String> {
    let b = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    if keel_vmlinux::parse_bzimage(&b).is_ok() {
        return Err(format!(
            "{} is a bzImage, not the ELF inside it: keel-vmlinux {} OUT extracts it",
            file.display(),
            file.display()
        ));
    }
    let pvh = keel_vmlinux::check_pvh_elf(&b).map_err(|e| format!("{}: {e}", file.display()))?;
    println!(
        "{}: PVH kernel, entry {:#x} ({} bytes)",
        file.display(),
        pvh.phys32_entry,
        b.len()
    );
    Ok(())
}

fn extract(bz: &Path, out: &Path) -> Result<(), String> {
    let img = std::fs::read(bz).map_err(|e| format!("{}: {e}", bz.display()))?;
    let vm = keel_vmlinux::extract_vmlinux(&img).map_err(|e| format!("{}: {e}", bz.display()))?;
    // Written next to OUT, then renamed: GRUB never sees half a kernel.
    let name = out
        .file_name()
        .ok_or_else(|| format!("{}: not a file name", out.display()))?;
    let tmp = out.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&vm.elf)?;
        f.sync_all()?;
        std::fs::rename(&tmp, out)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("{}: {e}", out.display()));
    }
    println!(
        "{} -> {} ({:.1} MiB, PVH entry {:#x})",
        bz.display(),
        out.display(),
        vm.elf.len() as f64 / (1024.0 * 1024.0),
        vm.pvh.phys32_entry
    );
    Ok(())
}
