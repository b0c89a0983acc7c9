//! `keel-grant-probe DOMID REF...`: asks the hypervisor to map grant REF of
//! domain DOMID into this domain (`GNTTABOP_map_grant_ref`, `GNTMAP_host_map`,
//! read-write) at guest-physical 64 GiB and up, one page each, and prints
//! each element's status; a mapping that succeeds is unmapped again. For
//! the domU scenarios' isolation check (issue 14): a domU asking for a
//! grant it was not given must get an error status. Exits 0 when every
//! element was refused, 1 when one was mapped, 2 on a usage or device
//! error. Only for test machines: not installed by keel's package.

use keel_xen_abi::grant::{
    MapGrantRef, UnmapGrantRef, GNTMAP_HOST_MAP, GNTST_BAD_DOMAIN, GNTST_BAD_GNTREF,
    GNTST_GENERAL_ERROR, GNTST_OKAY, GNTTABOP_MAP_GRANT_REF, GNTTABOP_UNMAP_GRANT_REF,
};
use keel_xen_abi::{hypercall, Pod};
use keelctl::backend::privcmd_path;
use keelctl::privcmd::Privcmd;
use keelctl::xen::XenCall;

/// Where the probe asks for its mappings: guest-physical 64 GiB, past a
/// domU's RAM and the special pages its builder puts below 4 GiB (a hole,
/// as a mapper's unpopulated pages are).
const HOST_ADDR: u64 = 1 << 36;

fn status_name(s: i16) -> &'static str {
    match s {
        GNTST_OKAY => "okay",
        GNTST_GENERAL_ERROR => "general_error",
        GNTST_BAD_DOMAIN => "bad_domain",
        GNTST_BAD_GNTREF => "bad_gntref",
        _ => "other",
    }
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()
        .unwrap_or_else(|_| {
            eprintln!("usage: keel-grant-probe DOMID REF...");
            std::process::exit(2)
        });
    let [dom, refs @ ..] = &args[..] else {
        eprintln!("usage: keel-grant-probe DOMID REF...");
        std::process::exit(2)
    };
    if refs.is_empty() || *dom > u16::MAX as u64 || refs.iter().any(|r| *r > u32::MAX as u64) {
        eprintln!("usage: keel-grant-probe DOMID REF...");
        std::process::exit(2)
    }
    let pc = Privcmd::open(&privcmd_path()).unwrap_or_else(|e| {
        eprintln!("keel-grant-probe: {}: {e:?}", privcmd_path().display());
        std::process::exit(2)
    });
    // A call any guest kernel may make, first: tells a refusal of the
    // grant op from one of every call made through privcmd here.
    let mut none = [0u8; 8];
    let v = pc.call(hypercall::XEN_VERSION, [0, 0, 0, 0, 0], &mut none);
    println!(
        "xen_version: {:?}",
        v.map(|v| format!("{}.{}", v >> 16, v & 0xffff))
            .map_err(|e| e.errno)
    );
    let ops: Vec<MapGrantRef> = refs
        .iter()
        .enumerate()
        .map(|(i, r)| MapGrantRef {
            host_addr: HOST_ADDR + 4096 * i as u64,
            flags: GNTMAP_HOST_MAP,
            gref: *r as u32,
            dom: *dom as u16,
            ..MapGrantRef::zeroed()
        })
        .collect();
    let mut buf = vec![0u8; ops.len() * MapGrantRef::SIZE];
    for (op, out) in ops.iter().zip(buf.chunks_exact_mut(MapGrantRef::SIZE)) {
        op.put_le(out);
    }
    let at = buf.as_mut_ptr() as u64;
    let r = pc.call(
        hypercall::GRANT_TABLE_OP,
        [GNTTABOP_MAP_GRANT_REF, at, ops.len() as u64, 0, 0],
        &mut buf,
    );
    if let Err(e) = r {
        // The whole call refused (not an element): nothing was mapped.
        println!("map_grant_ref: errno {}", e.errno);
        return;
    }
    let mut mapped = false;
    for (i, chunk) in buf.chunks_exact(MapGrantRef::SIZE).enumerate() {
        let m = MapGrantRef::get_le(chunk);
        println!(
            "map_grant_ref dom {} ref {}: status {} ({})",
            m.dom,
            m.gref,
            m.status,
            status_name(m.status)
        );
        if m.status == GNTST_OKAY {
            mapped = true;
            let u = UnmapGrantRef {
                host_addr: HOST_ADDR + 4096 * i as u64,
                handle: m.handle,
                ..UnmapGrantRef::zeroed()
            };
            let mut ub = u.to_bytes();
            let at = ub.as_mut_ptr() as u64;
            let r = pc.call(
                hypercall::GRANT_TABLE_OP,
                [GNTTABOP_UNMAP_GRANT_REF, at, 1, 0, 0],
                &mut ub,
            );
            println!(
                "  unmapped: {:?}, status {}",
                r.map_err(|e| e.errno),
                UnmapGrantRef::get_le(&ub).status
            );
        }
    }
    std::process::exit(mapped as i32)
}
