//! A real Debian kernel, when one is cached locally: Debian's `/boot/vmlinuz-6.1*` bzImage as
//! `cargo xtask linux` unpacks it (`target/keel/linux/root/boot/`), or the file named by
//! `KEEL_TEST_VMLINUZ`. Skipped, with the reason printed, when none is there.

mod common;
use common::fake::FakeGuest;
use keel_builder::abi::{HvmStartInfo, XEN_HVM_START_MAGIC_VALUE};
use keel_builder::{build, DomainSpec, KernelFormat, KernelImage};
use keel_xen_abi::Pod;
use std::path::{Path, PathBuf};

fn find_kernel() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("KEEL_TEST_VMLINUZ") {
        return Ok(PathBuf::from(p));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut dirs = vec![
        root.join("target/keel/linux/root/boot"),
        root.join("target/keel/debian/rootfs/boot"),
    ];
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cache/keel"));
    }
    for d in &dirs {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        let mut found: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("vmlinuz-6.1"))
            })
            .collect();
        found.sort();
        if let Some(p) = found.pop() {
            return Ok(p);
        }
    }
    Err(format!(
        "no Debian kernel cached (looked for vmlinuz-6.1* in {}; run `cargo xtask linux` or set \
         KEEL_TEST_VMLINUZ)",
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

#[test]
fn debian_vmlinuz_builds() {
    let path = match find_kernel() {
        Ok(p) => p,
        Err(why) => {
            println!("SKIPPED debian_vmlinuz_builds: {why}");
            return;
        }
    };
    let img = std::fs::read(&path).unwrap();
    let t = std::time::Instant::now();
    let k = KernelImage::parse(&img).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    println!(
        "{}: {:?}, entry {:#x}, {} segments [{:#x}, {:#x}), parsed in {:?}",
        path.display(),
        k.format,
        k.entry,
        k.segments.len(),
        k.start(),
        k.end(),
        t.elapsed()
    );
    assert!(matches!(k.format, KernelFormat::BzImage(_)));
    // Debian's kernels are linked at 16 MiB with the PVH entry in the first segment.
    assert_eq!(k.start(), 16 << 20);
    assert!(k.entry as u64 >= k.start() && (k.entry as u64) < k.segments[0].end());

    let mut spec = DomainSpec::new(256, 2);
    spec.cmdline = "console=hvc0 panic=-1".into();
    let rd = vec![0x5a; 100_000];
    let mut g = FakeGuest::new();
    let b = build(&mut g, &k, Some(&rd), &spec).unwrap();
    // Sampled: the first and last page of each segment's file data.
    for s in &k.segments {
        let data = k.data(s);
        for off in [0, data.len().saturating_sub(4096)] {
            let n = 4096.min(data.len() - off);
            assert_eq!(g.read(s.paddr + off as u64, n), &data[off..off + n]);
        }
    }
    let si = HvmStartInfo::from_bytes(&g.read(b.layout.start_info, 56)).unwrap();
    assert_eq!(si.magic, XEN_HVM_START_MAGIC_VALUE);
    assert_eq!(g.bsp.unwrap().rip, k.entry as u64);
    assert!(b.layout.ramdisk.unwrap().0 >= k.end());
    // Too little memory for it is refused before anything is done.
    let mut g = FakeGuest::new();
    let e = build(&mut g, &k, None, &DomainSpec::new(32, 1)).unwrap_err();
    println!("32 MiB: {e}");
    assert!(g.ops.is_empty());
}
