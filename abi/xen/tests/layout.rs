//! Every struct, type and constant of `keel-xen-abi` against Xen 4.17's
//! public headers as a C compiler sees them.
//!
//! The headers come from Debian bookworm's `libxen-dev` (4.17.x), read at
//! test time and never copied into the tree, found in this order:
//!
//! 1. `KEEL_XEN_INCLUDE=DIR`: a directory holding `xen/domctl.h` (any source);
//! 2. the installed `libxen-dev` package, if its version is 4.17.*;
//! 3. a cached extraction under `target/tmp/libxen-dev-4.17/`;
//! 4. otherwise `apt-get download libxen-dev` (retried after `apt-get
//!    update` when root), checked to be 4.17.*, `dpkg-deb -x`'d into that
//!    cache.
//!
//! If none works the tests fail with the reason. `KEEL_SKIP_XEN_HEADERS=1`
//! skips them instead (for a machine without Debian package sources; never
//! in CI). A C program generated from the crate's layout registry
//! (`keel_xen_abi::layout`) prints `sizeof`, `_Alignof`, `offsetof` and field
//! sizes of every registered struct and the value of every registered
//! constant; each is compared with Rust's view.

use keel_xen_abi::layout::{ALL_CONSTS, ALL_LAYOUTS};
use keel_xen_abi::{domctl, memory, sysctl, version};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Values of C function-like macros, with the Rust function that mirrors
/// each (constants proper come from the registry).
fn macro_calls() -> Vec<(&'static str, u64)> {
    vec![
        (
            "XENMEMF_address_bits(32)",
            memory::memf_address_bits(32) as u64,
        ),
        (
            "XENMEMF_get_address_bits(0x123)",
            memory::memf_get_address_bits(0x123) as u64,
        ),
        ("XENMEMF_node(0)", memory::memf_node(0) as u64),
        ("XENMEMF_node(3)", memory::memf_node(3) as u64),
        (
            "XENMEMF_get_node(XENMEMF_node(5))",
            memory::memf_get_node(memory::memf_node(5)) as u64,
        ),
        ("XENMEMF_get_node(0)", memory::memf_get_node(0) as u64),
        ("XENMEMF_exact_node(2)", memory::memf_exact_node(2) as u64),
        (
            "XENMEM_resource_ioreq_server_frame_ioreq(3)",
            memory::resource::ioreq_server_frame_ioreq(3),
        ),
        (
            "XEN_DOMCTL_GRANT_version(0x12)",
            (0x12 & domctl::GRANT_VERSION_MASK) as u64,
        ),
        // The unions are sized by their pad members, not by the largest sub-op.
        (
            "sizeof(((struct xen_domctl *)0)->u.pad)",
            domctl::DomctlU::SIZE as u64,
        ),
        (
            "sizeof(((struct xen_sysctl *)0)->u.pad)",
            sysctl::SysctlU::SIZE as u64,
        ),
        // A toolstack checks the version it is told; keel reports 4.17.
        ("(4 << 16) | 17", version::XEN_4_17 as u64),
    ]
}

// ------------------------------------------------------------ the headers

const CACHE: &str = "libxen-dev-4.17";

/// Where the Xen 4.17 headers are (the directory holding `xen/`), and
/// where they came from; `Ok(None)` when skipped by the environment.
fn xen_include() -> Result<Option<(PathBuf, String)>, String> {
    if std::env::var("KEEL_SKIP_XEN_HEADERS").is_ok_and(|v| v == "1") {
        return Ok(None);
    }
    if let Some(dir) = std::env::var_os("KEEL_XEN_INCLUDE") {
        let dir = PathBuf::from(dir);
        if !dir.join("xen/domctl.h").is_file() {
            return Err(format!(
                "KEEL_XEN_INCLUDE={} holds no xen/domctl.h",
                dir.display()
            ));
        }
        let from = format!("KEEL_XEN_INCLUDE={}", dir.display());
        return Ok(Some((dir, from)));
    }
    if let Some(v) = installed_version() {
        if v.starts_with("4.17") && Path::new("/usr/include/xen/domctl.h").is_file() {
            return Ok(Some((
                PathBuf::from("/usr/include"),
                format!("installed libxen-dev {v}"),
            )));
        }
    }
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join(CACHE);
    if let Some(found) = cached(&cache) {
        return Ok(Some(found));
    }
    download(&cache)?;
    cached(&cache)
        .map(Some)
        .ok_or_else(|| format!("{} is incomplete after extraction", cache.display()))
}

fn installed_version() -> Option<String> {
    let o = Command::new("dpkg-query")
        .args(["-W", "-f", "${Status} ${Version}", "libxen-dev"])
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&o.stdout);
    s.strip_prefix("install ok installed ").map(str::to_string)
}

fn cached(cache: &Path) -> Option<(PathBuf, String)> {
    let inc = cache.join("root/usr/include");
    let v = std::fs::read_to_string(cache.join("version")).ok()?;
    inc.join("xen/domctl.h").is_file().then(|| {
        let from = format!(
            "libxen-dev {} (.deb cached in {})",
            v.trim(),
            cache.display()
        );
        (inc, from)
    })
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn run(c: &mut Command) -> Result<String, String> {
    let o = c.output().map_err(|e| format!("cannot run {c:?}: {e}"))?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(format!(
            "{c:?} failed ({}):\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}

/// `apt-get download libxen-dev` into a private directory, check the
/// version, extract, and move the result to `cache` in one rename (so a
/// concurrent run never sees half a tree).
fn download(cache: &Path) -> Result<(), String> {
    let work = cache.with_file_name(format!("{CACHE}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    eprintln!(
        "layout test: apt-get download libxen-dev into {}",
        work.display()
    );
    let apt = |args: &[&str]| {
        let mut c = Command::new("apt-get");
        if is_root() {
            // apt's _apt sandbox user cannot write into a checkout.
            c.args(["-o", "APT::Sandbox::User=root"]);
        }
        c.args(args).current_dir(&work);
        run(&mut c)
    };
    if let Err(first) = apt(&["download", "libxen-dev"]) {
        if !is_root() {
            return Err(format!(
                "{first}\n(a stale package list? `apt-get update` as root, then run again)"
            ));
        }
        eprintln!("layout test: apt-get download failed; apt-get update and retry");
        apt(&["update"])?;
        apt(&["download", "libxen-dev"])?;
    }
    let deb = std::fs::read_dir(&work)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or("apt-get download left no .deb")?;
    let v = run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Version"))?;
    let v = v.trim();
    if !v.starts_with("4.17") {
        return Err(format!(
            "apt's libxen-dev is {v}, not 4.17.*: these tests need Debian 12 (bookworm) \
             package sources, or KEEL_XEN_INCLUDE pointing at Xen 4.17's public headers"
        ));
    }
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(work.join("root")))?;
    std::fs::write(work.join("version"), v).map_err(|e| e.to_string())?;
    std::fs::remove_file(&deb).map_err(|e| e.to_string())?;
    if std::fs::rename(&work, cache).is_err() {
        // Another run got there first.
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(())
}

// ------------------------------------------------------- the C program

/// What the C program printed: sizes/alignments by layout, offsets/sizes
/// by (layout, field), values by constant index.
struct CView {
    from: String,
    layouts: HashMap<usize, (usize, usize)>,
    fields: HashMap<(usize, usize), (usize, usize)>,
    consts: HashMap<usize, u64>,
    calls: HashMap<usize, u64>,
}

fn c_program() -> String {
    let mut c = String::from(
        "#include <stddef.h>\n#include <stdint.h>\n#include <stdio.h>\n\
         #include <xen/xen.h>\n#include <xen/domctl.h>\n#include <xen/sysctl.h>\n\
         #include <xen/version.h>\n#include <xen/memory.h>\n#include <xen/event_channel.h>\n\
         #include <xen/hvm/hvm_op.h>\n#include <xen/hvm/params.h>\n#include <xen/hvm/save.h>\n\
         #include <xen/arch-x86/hvm/start_info.h>\n#include <xen/grant_table.h>\n#include <xen/sched.h>\n\
         int main(void) {\n",
    );
    for (i, l) in ALL_LAYOUTS.iter().flat_map(|m| m.iter()).enumerate() {
        let t = l.c;
        writeln!(
            c,
            "  printf(\"L {i} %zu %zu\\n\", sizeof({t}), _Alignof({t}));"
        )
        .unwrap();
        for (j, f) in l.fields.iter().enumerate() {
            writeln!(
                c,
                "  printf(\"F {i} {j} %zu %zu\\n\", offsetof({t}, {m}), sizeof((({t} *)0)->{m}));",
                m = f.c
            )
            .unwrap();
        }
    }
    for (i, k) in ALL_CONSTS.iter().flat_map(|m| m.iter()).enumerate() {
        writeln!(
            c,
            "  printf(\"C {i} %llu\\n\", (unsigned long long)({}));",
            k.c
        )
        .unwrap();
    }
    for (i, (expr, _)) in macro_calls().iter().enumerate() {
        writeln!(
            c,
            "  printf(\"M {i} %llu\\n\", (unsigned long long)({expr}));"
        )
        .unwrap();
    }
    c.push_str("  return 0;\n}\n");
    c
}

/// Compiles and runs the program once per test binary; `None` if skipped.
fn c_view() -> Option<&'static CView> {
    static VIEW: OnceLock<Result<Option<CView>, String>> = OnceLock::new();
    match VIEW.get_or_init(build_c_view) {
        Ok(Some(v)) => Some(v),
        Ok(None) => {
            eprintln!(
                "SKIPPED: KEEL_SKIP_XEN_HEADERS=1, keel-xen-abi's layouts are NOT checked \
                 against Xen's headers"
            );
            None
        }
        Err(e) => panic!(
            "cannot check keel-xen-abi against Xen 4.17's headers: {e}\n\n\
             Install Debian 12's libxen-dev (4.17), point KEEL_XEN_INCLUDE at a directory \
             holding Xen 4.17's xen/domctl.h, or set KEEL_SKIP_XEN_HEADERS=1 to skip (not in CI)."
        ),
    }
}

fn build_c_view() -> Result<Option<CView>, String> {
    let Some((inc, from)) = xen_include()? else {
        return Ok(None);
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("xen-abi-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let src = dir.join("layout.c");
    let exe = dir.join("layout");
    std::fs::write(&src, c_program()).map_err(|e| e.to_string())?;
    run(
        Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
            .args(["-std=gnu11", "-Wall", "-D__XEN_TOOLS__", "-I"])
            .arg(&inc)
            .arg("-o")
            .arg(&exe)
            .arg(&src),
    )
    .map_err(|e| format!("compiling {} against {from}: {e}", src.display()))?;
    let out = run(&mut Command::new(&exe))?;
    let _ = std::fs::remove_dir_all(&dir);
    let mut v = CView {
        from,
        layouts: HashMap::new(),
        fields: HashMap::new(),
        consts: HashMap::new(),
        calls: HashMap::new(),
    };
    for line in out.lines() {
        let w: Vec<&str> = line.split(' ').collect();
        let n = |i: usize| -> Result<u64, String> {
            w.get(i)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("bad line from the C program: {line:?}"))
        };
        match w[0] {
            "L" => {
                v.layouts
                    .insert(n(1)? as usize, (n(2)? as usize, n(3)? as usize));
            }
            "F" => {
                v.fields.insert(
                    (n(1)? as usize, n(2)? as usize),
                    (n(3)? as usize, n(4)? as usize),
                );
            }
            "C" => {
                v.consts.insert(n(1)? as usize, n(2)?);
            }
            "M" => {
                v.calls.insert(n(1)? as usize, n(2)?);
            }
            _ => return Err(format!("bad line from the C program: {line:?}")),
        }
    }
    Ok(Some(v))
}

// ------------------------------------------------------------ the tests

#[test]
fn struct_layouts_match_xen_4_17_headers() {
    let Some(c) = c_view() else { return };
    let mut bad = Vec::new();
    let (mut structs, mut fields) = (0, 0);
    for (i, l) in ALL_LAYOUTS.iter().flat_map(|m| m.iter()).enumerate() {
        structs += 1;
        match c.layouts.get(&i) {
            Some(&(size, align)) => {
                if (size, align) != (l.size, l.align) {
                    bad.push(format!(
                        "{} ({}): size/align C {size}/{align}, Rust {}/{}",
                        l.rust, l.c, l.size, l.align
                    ));
                }
            }
            None => bad.push(format!("{}: the C program printed nothing", l.rust)),
        }
        for (j, f) in l.fields.iter().enumerate() {
            fields += 1;
            match c.fields.get(&(i, j)) {
                Some(&(off, size)) => {
                    if (off, size) != (f.offset, f.size) {
                        bad.push(format!(
                            "{}.{} ({}.{}): offset/size C {off}/{size}, Rust {}/{}",
                            l.rust, f.rust, l.c, f.c, f.offset, f.size
                        ));
                    }
                }
                None => bad.push(format!(
                    "{}.{}: the C program printed nothing",
                    l.rust, f.rust
                )),
            }
        }
        // Equal sizes and offsets cannot see a C member that Rust left out
        // where its bytes read as Rust padding: so every struct's implicit
        // padding is pinned here, each entry checked against the header.
        let pad = l.size - l.fields.iter().map(|f| f.size).sum::<usize>();
        let want = PADDING.iter().find(|p| p.0 == l.c).map_or(0, |p| p.1);
        if !l.fields.is_empty() && pad != want {
            bad.push(format!(
                "{} ({}): {pad} bytes of implicit padding, PADDING says {want}: \
                 is a C member missing, or PADDING stale?",
                l.rust, l.c
            ));
        }
    }
    for (name, _) in PADDING {
        if !ALL_LAYOUTS
            .iter()
            .flat_map(|m| m.iter())
            .any(|l| l.c == *name)
        {
            bad.push(format!("PADDING names {name}, which nothing mirrors"));
        }
    }
    eprintln!(
        "checked {structs} structs/types and {fields} fields against {}",
        c.from
    );
    assert!(
        structs >= 50 && fields >= 300,
        "registry suspiciously small: {structs}/{fields}"
    );
    assert!(
        bad.is_empty(),
        "{} layout mismatches vs {}:\n{}",
        bad.len(),
        c.from,
        bad.join("\n")
    );
}

/// Structs with implicit padding (bytes), as in the headers: every other
/// struct's fields cover all of it.
const PADDING: &[(&str, usize)] = &[
    ("struct xenctl_bitmap", 4),                // after nr_bits
    ("struct xen_domctl_getvcpuinfo", 5),       // before cpu_time, after cpu
    ("struct xen_domctl_hvmcontext", 4),        // before buffer
    ("struct xen_domctl_cpu_policy", 4),        // after err_msr
    ("struct xen_sysctl_readconsole", 4),       // after count
    ("struct xen_sysctl_perfc_op", 4),          // before desc
    ("struct xen_sysctl_getdomaininfolist", 6), // after first_domain, num_domains
    ("struct xen_sysctl_cputopoinfo", 4),       // before cputopo
    ("struct xen_sysctl_numainfo", 4),          // before meminfo
    ("struct xen_sysctl_scheduler_op", 4),      // before u
    ("struct xen_memory_reservation", 6),       // after domid
    ("struct xen_memory_map", 4),               // before buffer
    ("struct xen_foreign_memory_map", 6),       // before map
    ("struct xen_remove_from_physmap", 6),      // before gpfn
    ("struct xen_pod_target", 6),               // after domid
    ("struct evtchn_bind_interdomain", 2),      // before remote_port
    ("struct evtchn_status", 2),                // before port
    ("struct gnttab_unmap_grant_ref", 2),       // after status
];

#[test]
fn constants_match_xen_4_17_headers() {
    let Some(c) = c_view() else { return };
    let mut bad = Vec::new();
    let mut n = 0;
    for (i, k) in ALL_CONSTS.iter().flat_map(|m| m.iter()).enumerate() {
        n += 1;
        match c.consts.get(&i) {
            Some(&v) if v == k.value => {}
            Some(&v) => bad.push(format!("{} = {:#x}, but {} = {v:#x}", k.rust, k.value, k.c)),
            None => bad.push(format!("{}: the C program printed nothing", k.rust)),
        }
    }
    for (i, (expr, rust)) in macro_calls().iter().enumerate() {
        n += 1;
        match c.calls.get(&i) {
            Some(v) if v == rust => {}
            other => bad.push(format!("{expr}: C {other:?}, Rust {rust:#x}")),
        }
    }
    eprintln!("checked {n} constants and macro values against {}", c.from);
    assert!(n >= 250, "registry suspiciously small: {n}");
    assert!(
        bad.is_empty(),
        "{} constant mismatches vs {}:\n{}",
        bad.len(),
        c.from,
        bad.join("\n")
    );
}

#[test]
fn the_interface_versions_are_4_17s() {
    let Some(c) = c_view() else { return };
    // Named on their own, so a header of another Xen release fails with
    // this message rather than somewhere in a list.
    let find = |name: &str| {
        let i = ALL_CONSTS
            .iter()
            .flat_map(|m| m.iter())
            .position(|k| k.c == name)
            .unwrap();
        c.consts[&i]
    };
    assert_eq!(
        find("XEN_DOMCTL_INTERFACE_VERSION"),
        0x15,
        "{} is not Xen 4.17's domctl",
        c.from
    );
    assert_eq!(find("XEN_SYSCTL_INTERFACE_VERSION"), 0x15, "{}", c.from);
    assert_eq!(domctl::INTERFACE_VERSION, 0x15);
    assert_eq!(sysctl::INTERFACE_VERSION, 0x15);
}
