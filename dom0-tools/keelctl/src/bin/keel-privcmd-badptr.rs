//! `keel-privcmd-badptr [--device PATH]`: every toolstack sub-op keel
//! implements, from dom0's userspace through `/dev/xen/privcmd`, with
//! each of its pointers made bad in each way (`keelctl::badptr`: the plan
//! and the answers keel owes), then once more with good pointers. Also a
//! hypercall made directly from user mode (CPL 3), which keel must refuse.
//! Prints a line per case that went wrong, then
//! `KEEL-LINUX: privcmd-badptr: N cases, N as expected; ...`; exits 1 if
//! any went wrong. Only for test machines: not installed by keel's package.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;

use keel_xen_abi::domctl::{GetDomainInfo, XenDomctl};
use keel_xen_abi::sysctl::{CpuFeatureset, CpuPolicy, PerfcOp, PhysInfo, SchedulerOp, XenSysctl};
use keel_xen_abi::version as ver;
use keel_xen_abi::{hypercall, Pod};
use keelctl::badptr::{
    answer_text, failure_line, plan, run, summary_line, Answer, Case, Env, Kind, Op, Target,
    CPUMAP_BYTES, OPS, RODATA_BYTES,
};
use keelctl::privcmd::Privcmd;

const PAGE: usize = 4096;
/// Bytes of each good and read-only buffer (perfc_op's values take 4864).
const BUF: usize = 2 * PAGE;
/// Slots per call at most (the argument and two handles).
const SLOTS: usize = 3;
/// Where the kernel's direct map of physical memory starts without KASLR
/// (PVH boots without it), and an address in the unmapped guard hole at
/// the start of the kernel half: 4-level paging, then 5-level.
const LAYOUTS: [(u64, u64); 2] = [
    (0xffff_8880_0000_0000, 0xffff_8000_0000_1000),
    (0xff11_0000_0000_0000, 0xff00_0000_0000_1000),
];

/// `len` bytes of fresh anonymous memory, populated and locked.
fn map(len: usize) -> *mut u8 {
    // SAFETY: a new private anonymous mapping; it aliases nothing.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE | libc::MAP_LOCKED,
            -1,
            0,
        )
    };
    assert!(p != libc::MAP_FAILED, "mmap failed");
    p as *mut u8
}

fn protect(p: *mut u8, len: usize, prot: i32) {
    // SAFETY: `p..p+len` is a whole-page range of a mapping this process
    // made; only its protection changes, and no reference into it is held
    // across the change (pages are reached through raw pointers only).
    let rc = unsafe { libc::mprotect(p as *mut libc::c_void, len, prot) };
    assert_eq!(rc, 0, "mprotect");
}

/// Far below where Linux places mmaps (top-down from the stack), so that
/// no later mapping of this process (the allocator's) lands in the hole.
const HOLE_HINT: u64 = 0x1000_0000_0000;

/// Whether the page at `va` is mapped in this process.
fn is_mapped(va: u64) -> bool {
    let mut v = 0u8;
    // SAFETY: mincore only reports on the page (ENOMEM if unmapped) and
    // writes one byte into `v`, which lives across the call.
    unsafe { libc::mincore(va as *mut libc::c_void, PAGE, &mut v) == 0 }
}

/// A user page mmap'ed then munmap'ed, where nothing else will map.
fn unmapped_page() -> u64 {
    // SAFETY: a new private anonymous mapping at an address nothing of
    // ours uses (MAP_FIXED_NOREPLACE fails rather than replace one).
    let p = unsafe {
        libc::mmap(
            HOLE_HINT as *mut libc::c_void,
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    assert!(p != libc::MAP_FAILED, "mmap at {HOLE_HINT:#x} failed");
    // SAFETY: the page just mapped; nothing refers to it.
    let rc = unsafe { libc::munmap(p, PAGE) };
    assert_eq!(rc, 0, "munmap");
    assert!(!is_mapped(p as u64));
    p as u64
}

/// The physical address of the page at `va` (dom0's physical addresses
/// are the machine's: keel maps dom0 1:1). Needs CAP_SYS_ADMIN.
fn phys(pagemap: &File, va: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    pagemap.read_exact_at(&mut b, va / PAGE as u64 * 8).ok()?;
    let e = u64::from_le_bytes(b);
    let pfn = e & ((1 << 55) - 1);
    (e >> 63 == 1 && pfn != 0).then_some(pfn * PAGE as u64)
}

/// The address of `sym` in /proc/kallsyms (0 when hidden from us).
fn kallsyms(sym: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/kallsyms").ok()?;
    s.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        let (a, _, n) = (w.next()?, w.next()?, w.next()?);
        (n == sym && w.next().is_none())
            .then(|| u64::from_str_radix(a, 16).ok())
            .flatten()
            .filter(|&a| a != 0)
    })
}

/// A hypercall made straight from this process at CPL 3, as a user
/// program could (VMCALL and VMMCALL exit to the hypervisor at any CPL).
fn user_mode_hypercall(amd: bool, nr: u64, a0: u64, a1: u64) -> u64 {
    let mut rax = nr;
    // SAFETY: the instruction only exits to the hypervisor, which puts
    // its answer in RAX and changes no memory of ours for this call
    // (xen_version's version sub-op has no buffer); the other registers
    // it may touch are declared.
    unsafe {
        if amd {
            core::arch::asm!("vmmcall", inout("rax") rax, in("rdi") a0, in("rsi") a1,
                lateout("rcx") _, lateout("r11") _, options(nostack));
        } else {
            core::arch::asm!("vmcall", inout("rax") rax, in("rdi") a0, in("rsi") a1,
                lateout("rcx") _, lateout("r11") _, options(nostack));
        }
    }
    rax
}

/// AMD's (and Hygon's) hypercall instruction is VMMCALL, Intel's VMCALL.
fn cpu_is_amd() -> bool {
    let r = std::arch::x86_64::__cpuid(0);
    let v: Vec<u8> = [r.ebx, r.edx, r.ecx]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    v == b"AuthenticAMD" || v == b"HygonGenuine"
}

/// This process's pages for the calls, and the kernel addresses.
struct Real {
    pc: Privcmd,
    /// Per slot: a writable buffer (locked: its first page's direct-map
    /// alias stays).
    good: [*mut u8; SLOTS],
    good_phys: [Option<u64>; SLOTS],
    /// Per slot: a buffer PROT_READ except while being filled.
    ro: [*mut u8; SLOTS],
    /// Per slot: a writable page and a PROT_NONE page after it.
    straddle: [*mut u8; SLOTS],
    /// A page unmapped again.
    hole: u64,
    /// In the kernel half's guard hole.
    kernel_hole: u64,
    text: u64,
    rodata: u64,
    direct_map: Option<u64>,
}

impl Real {
    fn straddle_at(&self, slot: usize, len: usize) -> (*mut u8, usize) {
        // The first half in the writable page, the rest past its end.
        let off = PAGE - len.div_ceil(2);
        // SAFETY: `off < PAGE`: inside the straddle mapping's first page.
        (unsafe { self.straddle[slot].add(off) }, off)
    }
}

impl Target for Real {
    fn addr(&mut self, slot: usize, kind: Option<Kind>, len: usize) -> u64 {
        let good = self.good[slot] as u64;
        match kind {
            None => good,
            Some(Kind::UserUnmapped) => {
                // Nothing may have been mapped there since.
                assert!(!is_mapped(self.hole), "the unmapped page was mapped again");
                self.hole
            }
            Some(Kind::KernelUnmapped) => self.kernel_hole,
            Some(Kind::KernelText) => self.text,
            Some(Kind::KernelRodata) => self.rodata,
            Some(Kind::Straddle) => self.straddle_at(slot, len).0 as u64,
            Some(Kind::NonCanonical) => good | 1 << 63,
            Some(Kind::ReadOnly) => self.ro[slot] as u64,
            Some(Kind::KernelDirect) => match (self.direct_map, self.good_phys[slot]) {
                (Some(base), Some(pa)) => base + pa,
                // Not found: main reports it and runs no such case.
                _ => self.kernel_hole,
            },
        }
    }

    fn fill(&mut self, slot: usize, kind: Option<Kind>, bytes: &[u8]) {
        assert!(bytes.len() <= BUF);
        let (dst, n) = match kind {
            None | Some(Kind::NonCanonical) | Some(Kind::KernelDirect) => {
                (self.good[slot], bytes.len())
            }
            Some(Kind::ReadOnly) => {
                protect(self.ro[slot], BUF, libc::PROT_READ | libc::PROT_WRITE);
                (self.ro[slot], bytes.len())
            }
            Some(Kind::Straddle) => {
                let (p, off) = self.straddle_at(slot, bytes.len());
                (p, bytes.len().min(PAGE - off))
            }
            _ => return,
        };
        // SAFETY: `dst..dst+n` lies in a writable buffer of ours (checked
        // above: n <= BUF from a buffer's start, or up to the straddle
        // page's end); `bytes` is a separate Rust slice.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, n) };
        if kind == Some(Kind::ReadOnly) {
            protect(self.ro[slot], BUF, libc::PROT_READ);
        }
    }

    fn read(&mut self, slot: usize, kind: Option<Kind>, len: usize) -> Option<Vec<u8>> {
        let src = match kind {
            None | Some(Kind::NonCanonical) | Some(Kind::KernelDirect) => self.good[slot],
            Some(Kind::ReadOnly) => self.ro[slot],
            _ => return None,
        };
        let mut v = vec![0u8; len.min(BUF)];
        // SAFETY: `src` starts a readable buffer of ours and `v.len() <= BUF`.
        unsafe { std::ptr::copy_nonoverlapping(src, v.as_mut_ptr(), v.len()) };
        Some(v)
    }

    fn hypercall(&mut self, nr: u64, args: [u64; 5]) -> Answer {
        self.pc.hypercall(nr, args).map_err(|e| e.errno)
    }
}

/// A good call of `op`; the answer and the first slot's bytes after it.
fn good_call(t: &mut Real, env: &Env, op: Op, slot: usize, len: usize) -> (Answer, Vec<u8>) {
    let o = run(t, env, &Case { op, bad: None });
    (o.got, t.read(slot, None, len).unwrap_or_default())
}

fn main() {
    let mut device = keelctl::backend::privcmd_path();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--device" => match args.next() {
                Some(d) => device = d.into(),
                None => {
                    eprintln!("keel-privcmd-badptr: --device needs a value");
                    std::process::exit(2);
                }
            },
            _ => {
                eprintln!("keel-privcmd-badptr: unknown argument '{a}' (usage: keel-privcmd-badptr [--device PATH])");
                std::process::exit(2);
            }
        }
    }
    let mut out = std::io::stdout().lock();
    let mut problems = 0usize;
    let mut problem = |out: &mut dyn Write, msg: String| {
        let _ = writeln!(out, "KEEL-LINUX: privcmd-badptr: FAIL {msg}");
        problems += 1;
    };
    let pc = match Privcmd::open(&device) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(
                out,
                "KEEL-LINUX: privcmd-badptr: cannot open {}: {e:?}",
                device.display()
            );
            std::process::exit(1);
        }
    };
    let pagemap = File::open("/proc/self/pagemap").ok();
    let mut good = [std::ptr::null_mut(); SLOTS];
    let mut good_phys = [None; SLOTS];
    let mut ro = [std::ptr::null_mut(); SLOTS];
    let mut straddle = [std::ptr::null_mut(); SLOTS];
    for i in 0..SLOTS {
        good[i] = map(BUF);
        good_phys[i] = pagemap.as_ref().and_then(|f| phys(f, good[i] as u64));
        ro[i] = map(BUF);
        protect(ro[i], BUF, libc::PROT_READ);
        straddle[i] = map(2 * PAGE);
        // SAFETY: the second page of the two just mapped.
        protect(unsafe { straddle[i].add(PAGE) }, PAGE, libc::PROT_NONE);
    }
    let hole = unmapped_page();
    let text = kallsyms("_text");
    let rodata = kallsyms("linux_banner");
    let version = std::fs::read("/proc/version").unwrap_or_default();
    if text.is_none() || rodata.is_none() {
        problem(
            &mut out,
            "no _text or linux_banner in /proc/kallsyms".to_string(),
        );
    }
    if !version.starts_with(RODATA_BYTES) {
        problem(
            &mut out,
            "/proc/version does not start as linux_banner should".to_string(),
        );
    }
    let mut t = Real {
        pc,
        good,
        good_phys,
        ro,
        straddle,
        hole,
        kernel_hole: LAYOUTS[0].1,
        text: text.unwrap_or(LAYOUTS[0].1),
        rodata: rodata.unwrap_or(LAYOUTS[0].1),
        direct_map: None,
    };

    // What the calls need to know, from good calls.
    let mut env = Env::initial();
    let (r, b) = good_call(&mut t, &env, Op::PhysInfo, 0, XenSysctl::SIZE);
    match (r, XenSysctl::from_bytes(&b)) {
        (Ok(0), Some(s)) => env.ncpus = s.op::<PhysInfo>().nr_cpus,
        _ => problem(&mut out, format!("physinfo: {}", answer_text(r))),
    }
    let (r, b) = good_call(&mut t, &env, Op::GetVcpuAffinity, 1, CPUMAP_BYTES);
    match r {
        Ok(0) => env.hard = b,
        _ => problem(&mut out, format!("getvcpuaffinity: {}", answer_text(r))),
    }
    let (r, b) = good_call(&mut t, &env, Op::Version(ver::GUEST_HANDLE), 0, 16);
    match r {
        Ok(0) => env.handle.copy_from_slice(&b),
        _ => problem(&mut out, format!("guest_handle: {}", answer_text(r))),
    }
    let (r, b) = good_call(&mut t, &env, Op::CpuFeatureset, 0, XenSysctl::SIZE);
    match (r, XenSysctl::from_bytes(&b)) {
        (Ok(0), Some(s)) => env.featureset_words = s.op::<CpuFeatureset>().nr_features,
        _ => problem(&mut out, format!("get_cpu_featureset: {}", answer_text(r))),
    }
    let (r, b) = good_call(&mut t, &env, Op::CpuPolicy, 0, XenSysctl::SIZE);
    match (r, XenSysctl::from_bytes(&b)) {
        (Ok(0), Some(s)) => {
            let p: CpuPolicy = s.op();
            (env.policy_leaves, env.policy_msrs) = (p.nr_leaves, p.nr_msrs);
        }
        _ => problem(&mut out, format!("get_cpu_policy: {}", answer_text(r))),
    }
    let (r, b) = good_call(&mut t, &env, Op::SysctlSchedGet, 0, XenSysctl::SIZE);
    match (r, XenSysctl::from_bytes(&b)) {
        (Ok(0), Some(s)) => env.credit = s.op::<SchedulerOp>().u.get(),
        _ => problem(
            &mut out,
            format!("sysctl scheduler_op get: {}", answer_text(r)),
        ),
    }
    let (r, b) = good_call(&mut t, &env, Op::PerfcQuery, 0, XenSysctl::SIZE);
    match (r, XenSysctl::from_bytes(&b)) {
        (Ok(0), Some(s)) => {
            let p: PerfcOp = s.op();
            (env.perfc_counters, env.perfc_vals) = (p.nr_counters, p.nr_vals);
        }
        _ => problem(&mut out, format!("perfc_op query: {}", answer_text(r))),
    }
    let (r, b) = good_call(&mut t, &env, Op::GetDomainInfo, 0, XenDomctl::SIZE);
    match (r, XenDomctl::from_bytes(&b)) {
        (Ok(0), Some(d)) => env.max_memkb = d.op::<GetDomainInfo>().max_pages * 4,
        _ => problem(&mut out, format!("getdomaininfo: {}", answer_text(r))),
    }
    // Every handle must be written, or a bad one would go unnoticed; and
    // every buffer must fit ours.
    let fits = |n: u32, size: usize| (1..=BUF).contains(&(n as usize * size));
    if !fits(env.perfc_counters, keel_xen_abi::sysctl::PerfcDesc::SIZE)
        || !fits(env.perfc_vals, 4)
        || env.max_memkb == 0
    {
        problem(&mut out, format!("perfc_op or getdomaininfo: {env:?}"));
    }
    if env.featureset_words == 0 || env.policy_leaves == 0 || env.policy_msrs == 0 {
        problem(&mut out, format!("empty featureset or policy: {env:?}"));
    }
    // The direct map: where sched_id through it writes into our page.
    for (base, kernel_hole) in LAYOUTS {
        let Some(pa) = t.good_phys[0] else { break };
        let img = Op::SchedId.image(&env, &[base + pa]);
        t.fill(0, None, &img[0]);
        let r = t.hypercall(hypercall::SYSCTL, [base + pa, 0, 0, 0, 0]);
        let after = t.read(0, None, XenSysctl::SIZE).unwrap_or_default();
        if r == Ok(0) && after[8..12] == 5u32.to_le_bytes() {
            t.direct_map = Some(base);
            t.kernel_hole = kernel_hole;
            break;
        }
    }
    let _ = writeln!(
        out,
        "KEEL-LINUX: privcmd-badptr: {} CPUs, {} feature words, {} CPUID leaves, {} MSRs, {} perf counters ({} values), dom0 max {} KiB, _text {:#x}, linux_banner {:#x}, kernel hole {:#x}, direct map {}, pages at {:#x} (phys {})",
        env.ncpus,
        env.featureset_words,
        env.policy_leaves,
        env.policy_msrs,
        env.perfc_counters,
        env.perfc_vals,
        env.max_memkb,
        t.text,
        t.rodata,
        t.kernel_hole,
        t.direct_map.map_or("not found".into(), |b| format!("{b:#x}")),
        t.good[0] as u64,
        t.good_phys[0].map_or("unknown".into(), |p| format!("{p:#x}"))
    );

    let cases = plan(&env);
    let mut expected = 0;
    for c in &cases {
        if let Some((i, Kind::KernelDirect)) = c.bad {
            // Only the first page of a buffer is known in the direct map.
            let why = if t.direct_map.is_none() {
                Some("the direct map of our page was not found")
            } else if c.op.slots(&env)[i].len > PAGE {
                Some("longer than a page")
            } else {
                None
            };
            if let Some(why) = why {
                let _ = writeln!(
                    out,
                    "KEEL-LINUX: privcmd-badptr: FAIL {}: not run: {why}",
                    c.name(&env)
                );
                continue;
            }
        }
        let o = run(&mut t, &env, c);
        if o.ok() {
            expected += 1;
        } else {
            let _ = writeln!(out, "{}", failure_line(&env, c, &o));
        }
        let _ = out.flush();
    }

    // A hypercall straight from user mode: Xen answers -EPERM (any CPL
    // but 0), and so must keel, or any dom0 process could use sysctl.
    let r = user_mode_hypercall(cpu_is_amd(), hypercall::XEN_VERSION, ver::VERSION as u64, 0);
    let want = (-(libc::EPERM as i64)) as u64;
    if r == want {
        let _ = writeln!(
            out,
            "KEEL-LINUX: privcmd-badptr: a hypercall from user mode (CPL 3) got -EPERM, as expected"
        );
    } else {
        problem(
            &mut out,
            format!("a hypercall from user mode (CPL 3) got {r:#x}, want -EPERM"),
        );
    }

    // Xen 4.16's interface version (0x14) on well-formed calls: -EACCES,
    // as Xen answers every version but its own (the tools do not negotiate).
    let old_version = |nr: u64, mut bytes: Vec<u8>| {
        // `interface_version` is the second u32 of both structs.
        bytes[4..8].copy_from_slice(&0x14u32.to_le_bytes());
        let r = t.pc.hypercall(nr, [bytes.as_mut_ptr() as u64, 0, 0, 0, 0]);
        std::hint::black_box(&bytes);
        r.err().map(|e| e.errno)
    };
    let mut dc = vec![0u8; XenDomctl::SIZE];
    XenDomctl::new(
        keel_xen_abi::domctl::op::GETDOMAININFO,
        0,
        &GetDomainInfo::zeroed(),
    )
    .write_to(&mut dc);
    let mut sc = vec![0u8; XenSysctl::SIZE];
    XenSysctl::new(keel_xen_abi::sysctl::op::PHYSINFO, &PhysInfo::zeroed()).write_to(&mut sc);
    let (d, s) = (
        old_version(hypercall::DOMCTL, dc),
        old_version(hypercall::SYSCTL, sc),
    );
    if d == Some(libc::EACCES) && s == Some(libc::EACCES) {
        let _ = writeln!(
            out,
            "KEEL-LINUX: privcmd-badptr: interface version 0x14: domctl -EACCES, sysctl -EACCES, as expected"
        );
    } else {
        problem(
            &mut out,
            format!("interface version 0x14: domctl errno {d:?}, sysctl errno {s:?}, want EACCES"),
        );
    }

    // keel and dom0 still fine: every sub-op with good pointers.
    let mut after_ok = 0;
    for op in OPS {
        let c = Case { op, bad: None };
        let o = run(&mut t, &env, &c);
        if o.ok() {
            after_ok += 1;
        } else {
            let _ = writeln!(out, "{}", failure_line(&env, &c, &o));
        }
    }
    let _ = writeln!(
        out,
        "{}",
        summary_line(cases.len(), expected, OPS.len(), after_ok)
    );
    let _ = out.flush();
    if problems > 0 || expected != cases.len() || after_ok != OPS.len() {
        std::process::exit(1);
    }
}
