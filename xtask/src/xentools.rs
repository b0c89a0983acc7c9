//! Debian's unmodified Xen 4.17 toolstack for dom0's initramfs (issue 13):
//! `xl`, `xen-init-dom0`, `xentop`, `xenperf`, `xen-cpuid` and `xenstore-*`, exactly as
//! Debian ships them in `xen-utils-4.17`, `xen-utils-common` and
//! `xenstore-utils`, with the shared libraries they load (glibc included).
//!
//! The packages are `apt-get download`ed into the kernel's `debs/` cache and
//! `dpkg -x`ed into their own tree; [`collect`] then takes the programs in
//! [`ROOTS`] and everything they need: symlink targets (Debian's
//! `/usr/sbin/xl` is a link to `xen-utils-wrapper`, which picks
//! `/usr/lib/xen-$major.$minor/bin/xl` from `/sys/hypervisor/version`), the
//! ELF interpreter and the `DT_NEEDED` libraries, transitively. Nothing is
//! configured or rebuilt: dom0 runs Debian's bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use object::elf::{FileHeader64, DT_NEEDED, PT_INTERP};
use object::read::elf::{Dyn, FileHeader, ProgramHeader};
use object::LittleEndian;

type Result<T> = std::result::Result<T, String>;

/// Debian 12 packages: the tools, then the libraries their ELF files need
/// (checked by [`collect`]: a missing one is an error naming it).
pub const PACKAGES: &[&str] = &[
    "xen-utils-4.17",
    "xen-utils-common",
    "xenstore-utils",
    // Debian's hotplug scripts (xen-utils-common) are bash scripts.
    "bash",
    // flock(1), which their locking.sh takes (busybox-static has none).
    "util-linux",
    // ext4 for the domUs' disk images: mkfs.ext4 and e2fsck (issue 15).
    "e2fsprogs",
    "libext2fs2",
    "libcom-err2",
    "libblkid1",
    "libss2",
    "libxenmisc4.17",
    "libxenstore4",
    "libxencall1",
    "libxenevtchn1",
    "libxengnttab1",
    "libxenforeignmemory1",
    "libxendevicemodel1",
    "libxentoolcore1",
    "libxentoollog1",
    "libxenhypfs1",
    "libyajl2",
    "libuuid1",
    "liblzma5",
    "libzstd1",
    "zlib1g",
    "libncurses6",
    "libtinfo6",
    "libgcc-s1",
    "libc6",
];

/// What dom0's userspace gets, as paths inside the packages.
pub const ROOTS: &[&str] = &[
    "usr/sbin/xl",
    "usr/sbin/xentop",
    "usr/sbin/xenperf",
    "usr/lib/xen-4.17/bin/xl",
    "usr/lib/xen-4.17/bin/xentop",
    "usr/lib/xen-4.17/bin/xenperf",
    "usr/lib/xen-4.17/bin/xen-init-dom0",
    // `xl console` execs it: the domU console's pty (keel-consoled's).
    "usr/lib/xen-4.17/bin/xenconsole",
    "usr/bin/xen-cpuid",
    "usr/lib/xen-4.17/bin/xen-cpuid",
    "usr/bin/xenstore-read",
    "usr/bin/xenstore-write",
    "usr/bin/xenstore-ls",
    "usr/bin/xenstore-list",
    "usr/bin/xenstore-rm",
    "usr/bin/xenstore-exists",
    "etc/xen/xl.conf",
    // What libxl runs for `xl create`'s disks and network interfaces
    // (issue 15), and what they source.
    "bin/bash",
    "etc/xen/scripts/block",
    "etc/xen/scripts/block-common.sh",
    "etc/xen/scripts/vif-bridge",
    "etc/xen/scripts/vif-common.sh",
    "etc/xen/scripts/xen-network-common.sh",
    "etc/xen/scripts/xen-hotplug-common.sh",
    "etc/xen/scripts/xen-script-common.sh",
    "etc/xen/scripts/hotplugpath.sh",
    "etc/xen/scripts/logging.sh",
    "etc/xen/scripts/locking.sh",
    "usr/bin/flock",
    "sbin/mkfs.ext4",
    "sbin/e2fsck",
    // glibc dlopen()s it for pthread_cancel (no DT_NEEDED names it):
    // without it `xl create` aborts once the domain is up, as it cancels
    // a helper thread.
    "lib/x86_64-linux-gnu/libgcc_s.so.1",
];

/// Where glibc's loader looks for libraries on Debian (multiarch), in order.
const LIB_DIRS: &[&str] = &["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"];

/// One file of the tree, by its path without the leading `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File { perm: u32, data: Vec<u8> },
    Symlink(String),
}

/// Fetches (cached) and unpacks [`PACKAGES`] under `out` (`debs/` shared
/// with the kernel, the tree in `xen-root/`); returns the tree's root and
/// the version of `xen-utils-4.17`.
pub fn fetch(out: &Path) -> Result<(PathBuf, String)> {
    let debs = out.join("debs");
    crate::linux::mkdir(&debs)?;
    let root = out.join("xen-root");
    let mut version = String::new();
    for p in PACKAGES {
        let deb = crate::linux::download(&debs, p)?;
        if *p == "xen-utils-4.17" {
            version = crate::linux::deb_version(&deb);
        }
        crate::linux::extract(&deb, &root)?;
    }
    Ok((root, version))
}

/// [`ROOTS`] and their closure (symlink targets, ELF interpreters,
/// `DT_NEEDED` libraries) from the unpacked tree `root`.
pub fn collect(root: &Path, roots: &[&str]) -> Result<BTreeMap<String, Entry>> {
    let mut out = BTreeMap::new();
    let mut todo: Vec<String> = roots.iter().map(|s| s.to_string()).collect();
    while let Some(path) = todo.pop() {
        if out.contains_key(&path) {
            continue;
        }
        let full = root.join(&path);
        let md = std::fs::symlink_metadata(&full).map_err(|e| {
            format!(
                "{path}: not in the unpacked packages ({}): {e}",
                full.display()
            )
        })?;
        if md.file_type().is_symlink() {
            let target = std::fs::read_link(&full)
                .map_err(|e| format!("{}: {e}", full.display()))?
                .to_string_lossy()
                .into_owned();
            todo.push(resolve(&path, &target));
            out.insert(path, Entry::Symlink(target));
            continue;
        }
        use std::os::unix::fs::PermissionsExt;
        let data = std::fs::read(&full).map_err(|e| format!("{}: {e}", full.display()))?;
        if data.starts_with(b"\x7fELF") {
            let (interp, needed) = elf_deps(&data).map_err(|e| format!("{path}: {e}"))?;
            if let Some(i) = interp {
                todo.push(i.trim_start_matches('/').to_string());
            }
            for lib in needed {
                let found = LIB_DIRS
                    .iter()
                    .map(|d| format!("{d}/{lib}"))
                    .find(|p| std::fs::symlink_metadata(root.join(p)).is_ok())
                    .ok_or_else(|| {
                        format!(
                            "{path} needs {lib}, which none of the packages has (add its package to PACKAGES)"
                        )
                    })?;
                todo.push(found);
            }
        }
        out.insert(
            path,
            Entry::File {
                perm: md.permissions().mode() & 0o7777,
                data,
            },
        );
    }
    Ok(out)
}

/// The path (from the root, no leading `/`) a symlink at `link` pointing to
/// `target` names.
fn resolve(link: &str, target: &str) -> String {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        let mut p: Vec<&str> = link.split('/').collect();
        p.pop();
        p
    };
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// An x86-64 ELF file's interpreter (`PT_INTERP`) and `DT_NEEDED` names.
pub fn elf_deps(data: &[u8]) -> Result<(Option<String>, Vec<String>)> {
    let e = LittleEndian;
    let h = FileHeader64::<LittleEndian>::parse(data).map_err(|e| format!("not ELF64: {e}"))?;
    let mut interp = None;
    for ph in h.program_headers(e, data).map_err(|e| e.to_string())? {
        if ph.p_type(e) == PT_INTERP {
            let b = ph
                .data(e, data)
                .map_err(|_| "PT_INTERP outside the file".to_string())?;
            let s = b.split(|&c| c == 0).next().unwrap_or_default();
            interp = Some(String::from_utf8_lossy(s).into_owned());
        }
    }
    let mut needed = Vec::new();
    let sections = h.sections(e, data).map_err(|e| e.to_string())?;
    if let Some((dyns, link)) = sections.dynamic(e, data).map_err(|e| e.to_string())? {
        let strings = sections.strings(e, data, link).map_err(|e| e.to_string())?;
        for d in dyns {
            if d.tag32(e) == Some(DT_NEEDED) {
                let name = d.string(e, strings).map_err(|e| e.to_string())?;
                needed.push(String::from_utf8_lossy(name).into_owned());
            }
        }
    }
    Ok((interp, needed))
}

/// Every directory the entries need, parents first.
pub fn dirs(entries: &BTreeMap<String, Entry>) -> BTreeSet<String> {
    let mut d = BTreeSet::new();
    for p in entries.keys() {
        let mut acc = String::new();
        let comps: Vec<&str> = p.split('/').collect();
        for c in &comps[..comps.len() - 1] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(c);
            d.insert(acc.clone());
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_targets_resolve_like_the_kernel() {
        assert_eq!(
            resolve("usr/sbin/xl", "../lib/xen-common/bin/xen-utils-wrapper"),
            "usr/lib/xen-common/bin/xen-utils-wrapper"
        );
        assert_eq!(
            resolve(
                "lib64/ld-linux-x86-64.so.2",
                "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
            ),
            "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
        );
        assert_eq!(resolve("a/b/c", "./d"), "a/b/d");
    }

    #[test]
    fn dirs_lists_every_parent_once() {
        let mut m = BTreeMap::new();
        m.insert("usr/lib/a".to_string(), Entry::Symlink("x".into()));
        m.insert("usr/bin/b".to_string(), Entry::Symlink("x".into()));
        let d: Vec<_> = dirs(&m).into_iter().collect();
        assert_eq!(d, ["usr", "usr/bin", "usr/lib"]);
    }

    /// The closure of a real dynamically linked program: the host's own
    /// `/bin/sh` (every Debian machine has one) has an interpreter and needs libc.
    #[test]
    fn elf_deps_reads_interp_and_needed() {
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        let (interp, needed) = elf_deps(&std::fs::read(sh).unwrap()).unwrap();
        assert!(interp.unwrap().contains("ld-linux"));
        assert!(needed.iter().any(|n| n.starts_with("libc.so")));
    }

    #[test]
    fn elf_deps_rejects_garbage() {
        assert!(elf_deps(b"\x7fELF not really").is_err());
    }
}
