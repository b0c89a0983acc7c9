//! `keel-privcmd-fuzz [COUNT] [--seed S] [--trace-from I] [--device PATH]`:
//! COUNT (default 10,000) random hypercalls from dom0's userspace through
//! `/dev/xen/privcmd` (issue 12; the generator and what it leaves out:
//! `keelctl::fuzz`). Progress every 10,000 calls; at the end
//! `KEEL-LINUX: privcmd-fuzz: N calls done ...` with the return codes'
//! histogram. `--trace-from I` prints every call from index I on, before
//! it is made (to find the last call before a stall), `--trace-nr N` only
//! those with hypercall number N. `--untamed N,N|all`
//! sends those hypercall numbers as drawn, even the calls that may wreck
//! dom0 (shutdown and console writes stay out). Only for test
//! machines: it is not installed by keel's package.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use keelctl::fuzz::{rc_bucket, Fuzzer, Layout};
use keelctl::privcmd::Privcmd;

/// The scratch buffer: 1 MiB, a PROT_NONE guard page after it.
const SCRATCH: usize = 1 << 20;
const PAGE: usize = 4096;

struct Opts {
    count: u64,
    seed: u64,
    trace_from: u64,
    trace_nr: Option<u64>,
    device: PathBuf,
    untamed: Vec<u64>,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        count: 10_000,
        seed: 12,
        trace_from: u64::MAX,
        trace_nr: None,
        device: keelctl::backend::privcmd_path(),
        untamed: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    let num = |v: Option<String>, what: &str| -> Result<u64, String> {
        let v = v.ok_or(format!("{what} needs a value"))?;
        let v = v.replace('_', "");
        match v.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16),
            None => v.parse(),
        }
        .map_err(|e| format!("{what}: '{v}': {e}"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seed" => o.seed = num(it.next(), "--seed")?,
            "--trace-from" => o.trace_from = num(it.next(), "--trace-from")?,
            "--trace-nr" => o.trace_nr = Some(num(it.next(), "--trace-nr")?),
            "--untamed" => {
                let v = it.next().ok_or("--untamed needs a value")?;
                for n in v.split(',') {
                    o.untamed.push(if n == "all" {
                        u64::MAX
                    } else {
                        num(Some(n.to_string()), "--untamed")?
                    });
                }
            }
            "--device" => o.device = it.next().ok_or("--device needs a value")?.into(),
            _ if !a.starts_with('-') => o.count = num(Some(a), "COUNT")?,
            _ => return Err(format!("unknown option '{a}'")),
        }
    }
    Ok(o)
}

/// `len` bytes of fresh anonymous memory with protection `prot`.
fn map(len: usize, prot: i32) -> *mut u8 {
    // SAFETY: a new private anonymous mapping; it aliases nothing.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            -1,
            0,
        )
    };
    assert!(p != libc::MAP_FAILED, "mmap failed");
    p as *mut u8
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("keel-privcmd-fuzz: {e}");
            std::process::exit(2);
        }
    };
    let pc = match Privcmd::open(&o.device) {
        Ok(p) => p,
        Err(e) => {
            println!(
                "KEEL-LINUX: privcmd-fuzz: cannot open {}: {e:?}",
                o.device.display()
            );
            std::process::exit(1);
        }
    };
    // Scratch + guard in one reservation, so the guard follows it.
    let base = map(SCRATCH + PAGE, libc::PROT_READ | libc::PROT_WRITE);
    // SAFETY: the last page of the mapping just made; nothing uses it.
    let rc = unsafe { libc::mprotect(base.add(SCRATCH) as *mut _, PAGE, libc::PROT_NONE) };
    assert_eq!(rc, 0, "mprotect guard");
    let ro = map(PAGE, libc::PROT_READ);
    // SAFETY: `base` is SCRATCH readable, writable bytes this process
    // mapped and never unmaps, used only through this slice and by keel
    // during a hypercall (the slice is not borrowed across one: the
    // pointers are plain integers to the kernel).
    let scratch = unsafe { std::slice::from_raw_parts_mut(base, SCRATCH) };
    let layout = Layout {
        scratch: base as u64,
        scratch_len: SCRATCH as u64,
        ro: ro as u64,
    };
    let mut f = Fuzzer::new(o.seed, layout);
    f.untamed = o.untamed.clone();
    let mut hist: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_nr: BTreeMap<u64, u64> = BTreeMap::new();
    let t0 = Instant::now();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "KEEL-LINUX: privcmd-fuzz: {} calls, seed {:#x}{}",
        o.count,
        o.seed,
        if o.untamed.is_empty() {
            String::new()
        } else {
            format!(", untamed {:?}", o.untamed)
        }
    );
    for i in 0..o.count {
        let c = f.next_call(scratch);
        if i >= o.trace_from && o.trace_nr.is_none_or(|n| n == c.nr) {
            // The call and, for a pointer into scratch, the first 24 bytes
            // there (the structure keel reads).
            let words: Vec<String> = c.args[..2]
                .iter()
                .filter(|&&a| {
                    a.checked_sub(layout.scratch)
                        .is_some_and(|o| o + 24 <= SCRATCH as u64)
                })
                .take(1)
                .map(|&a| {
                    let o = (a - layout.scratch) as usize;
                    (0..3)
                        .map(|k| {
                            let w = &scratch[o + 8 * k..o + 8 * k + 8];
                            format!("{:#x}", u64::from_le_bytes(w.try_into().unwrap()))
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            let _ = writeln!(
                out,
                "privcmd-fuzz: #{i} nr {} args {:#x} {:#x} {:#x} {:#x} {:#x} [{}]",
                c.nr,
                c.args[0],
                c.args[1],
                c.args[2],
                c.args[3],
                c.args[4],
                words.join("")
            );
            let _ = out.flush();
        }
        let r = pc.hypercall(c.nr, c.args).map_err(|e| e.errno);
        if r.is_ok() {
            f.completed(&c, scratch);
        }
        *hist.entry(rc_bucket(r)).or_default() += 1;
        if r != Err(libc::ENOSYS) {
            *by_nr.entry(c.nr).or_default() += 1;
        }
        if (i + 1) % 10_000 == 0 {
            let _ = writeln!(
                out,
                "KEEL-LINUX: privcmd-fuzz: {} calls, {} ms",
                i + 1,
                t0.elapsed().as_millis()
            );
            let _ = out.flush();
        }
    }
    let ms = t0.elapsed().as_millis().max(1);
    let h: Vec<String> = hist.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    let n: Vec<String> = by_nr.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    let _ = writeln!(
        out,
        "KEEL-LINUX: privcmd-fuzz: served (not -ENOSYS) by number: {}",
        n.join(" ")
    );
    let _ = writeln!(
        out,
        "KEEL-LINUX: privcmd-fuzz: {} calls done in {ms} ms ({} calls/s), own ports {}; rc histogram: {}",
        o.count,
        o.count as u128 * 1000 / ms,
        f.own_ports.len(),
        h.join(" ")
    );
}
