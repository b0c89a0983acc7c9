//! `keel-bad-frontend garbage|bad-ref DEVICE [SEED]`: plays the frontend
//! of block device DEVICE (a domU's `device/vbd/<id>`, which no
//! xen-blkfront drives) badly, for the split-driver scenario (issue 15,
//! item 5). Runs in a domU; needs `/dev/xen/gntalloc`, `/dev/xen/evtchn`
//! and Debian's `xenstore-read`/`-write`. Only for test machines: not
//! installed by keel's package.
//!
//! * `garbage`: a ring page granted to the backend, full of random
//!   requests (seed SEED), published as 32 requests; once blkback is
//!   Connected and notified, counts its responses and their statuses.
//!   Then it publishes a producer index 1000 past the responses, which
//!   blkback must refuse by halting this ring ("Frontend provided bogus
//!   ring requests"): no further response may come.
//! * `bad-ref`: a grant reference the domain never gave as its ring: the
//!   backend's map must fail (keel's grant table refuses it), and the
//!   backend must give up on this device alone.
//!
//! Prints `bad-frontend: ...` lines; exits 0 when it could play its part
//! (what blkback made of it is for the scenario to judge), 1 otherwise.

use std::path::Path;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use keel_xendev::evtchn::{Evtchn, EVTCHN};
use keel_xendev::gntalloc::{Gntalloc, GNTALLOC};
use keelctl::badfront::{
    bogus_req_prod, entry, garbage_ring, histogram, response_status, REQ_PROD, RING_SIZE, RSP_PROD,
};

fn xs_read(path: &str) -> Option<String> {
    let o = Command::new("xenstore-read").arg(path).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn xs_write(pairs: &[(&str, String)]) -> Result<(), String> {
    let mut c = Command::new("xenstore-write");
    for (k, v) in pairs {
        c.arg(k).arg(v);
    }
    match c.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("xenstore-write: {s}")),
        Err(e) => Err(format!("xenstore-write: {e}")),
    }
}

/// Waits up to `secs` for the backend's state to be one of `want`;
/// returns the last state read.
fn wait_state(backend: &str, want: &[&str], secs: u64) -> String {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = xs_read(&format!("{backend}/state")).unwrap_or_else(|| "gone".into());
        if want.contains(&s.as_str()) || Instant::now() >= end {
            return s;
        }
        sleep(Duration::from_millis(200));
    }
}

fn run(mode: &str, dev: &str, seed: u64) -> Result<(), String> {
    let backend = xs_read(&format!("{dev}/backend")).ok_or_else(|| format!("no {dev}/backend"))?;
    let backend_id: u16 = xs_read(&format!("{dev}/backend-id"))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no {dev}/backend-id"))?;
    let s = wait_state(&backend, &["2"], 60);
    println!("bad-frontend: {dev}: backend {backend} (domain {backend_id}) in state {s}");
    if s != "2" {
        return Err(format!("backend not in InitWait (state {s})"));
    }
    let ev = Evtchn::open(Path::new(EVTCHN)).map_err(|e| e.to_string())?;
    let port = ev.bind_unbound(backend_id).map_err(|e| e.to_string())?;
    let proto = ("protocol", "x86_64-abi".to_string());
    let path = |k: &str| format!("{dev}/{k}");
    if mode == "bad-ref" {
        // Never granted: far past any reference the domain has used.
        let gref = 0x7fff_fff0u32;
        xs_write(&[
            (&path("ring-ref"), gref.to_string()),
            (&path("event-channel"), port.to_string()),
            (&path(proto.0), proto.1),
            (&path("state"), "3".into()),
        ])?;
        let s = wait_state(&backend, &["4", "5", "6"], 60);
        let err = xs_read(&format!("/local/domain/{backend_id}/error/{backend}/error"))
            .or_else(|| xs_read(&format!("{backend}/error")))
            .unwrap_or_default();
        println!("bad-frontend: bad-ref: ring-ref {gref:#x}: backend state {s}, error '{err}'");
        return Ok(());
    }
    let ga = Gntalloc::open(Path::new(GNTALLOC)).map_err(|e| e.to_string())?;
    let page = ga.share(backend_id, true).map_err(|e| e.to_string())?;
    for (i, w) in garbage_ring(seed, RING_SIZE, page.gref())
        .into_iter()
        .enumerate()
    {
        page.write_u32(i * 4, w);
    }
    xs_write(&[
        (&path("ring-ref"), page.gref().to_string()),
        (&path("event-channel"), port.to_string()),
        (&path(proto.0), proto.1),
        (&path("state"), "3".into()),
    ])?;
    let s = wait_state(&backend, &["4", "5", "6"], 60);
    println!(
        "bad-frontend: garbage: ring-ref {} port {port} seed {seed}: backend state {s}",
        page.gref()
    );
    if s != "4" {
        return Err(format!("backend did not connect (state {s})"));
    }
    ev.notify(port).map_err(|e| e.to_string())?;
    let end = Instant::now() + Duration::from_secs(30);
    while page.read_u32(RSP_PROD) < RING_SIZE && Instant::now() < end {
        sleep(Duration::from_millis(100));
    }
    let got = page.read_u32(RSP_PROD);
    let statuses: Vec<i16> = (0..got.min(RING_SIZE))
        .map(|i| response_status(page.read_u32(entry(i) + 8)))
        .collect();
    println!(
        "bad-frontend: garbage: {RING_SIZE} random requests, {got} responses (status: {})",
        histogram(&statuses)
    );
    // A producer a thousand entries ahead: blkback halts this ring.
    let bogus = bogus_req_prod(got, 1000);
    page.write_u32(REQ_PROD, bogus);
    ev.notify(port).map_err(|e| e.to_string())?;
    sleep(Duration::from_secs(3));
    let after = page.read_u32(RSP_PROD);
    println!(
        "bad-frontend: garbage: req_prod {bogus}: responses {} after 3 s, backend state {}",
        if after == got { "unchanged" } else { "changed" },
        xs_read(&format!("{backend}/state")).unwrap_or_else(|| "gone".into())
    );
    Ok(())
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let (mode, dev) = match (a.first(), a.get(1)) {
        (Some(m), Some(d)) if m == "garbage" || m == "bad-ref" => (m.clone(), d.clone()),
        _ => {
            eprintln!("usage: keel-bad-frontend garbage|bad-ref DEVICE [SEED]");
            std::process::exit(2);
        }
    };
    let seed = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    if let Err(e) = run(&mode, &dev, seed) {
        println!("bad-frontend: {mode}: {dev}: {e}");
        std::process::exit(1);
    }
}
