//! `keel-mkdomains N [--vcpus V] [--max-mem-kib K]`: creates N empty,
//! paused PVH domains (the first step of a domain build,
//! [`keelctl::xen::XenBackend::create_container`]: `createdomain`,
//! `max_vcpus`, `max_mem`) and prints their ids, one per line. For the
//! management-call bench (`xl list` / `keelctl list` over many domains)
//! and the create/destroy tests; `keelctl destroy ID` removes them. Only
//! for test machines: not installed by keel's package.

use keelctl::backend::privcmd_path;
use keelctl::privcmd::Privcmd;
use keelctl::xen::XenBackend;

fn usage() -> ! {
    eprintln!("usage: keel-mkdomains N [--vcpus V] [--max-mem-kib K]");
    std::process::exit(2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut n: Option<u32> = None;
    let mut vcpus = 1u32;
    let mut max_mem_kib = 0u64;
    while let Some(a) = args.next() {
        let mut val = |what: &str| match args.next().map(|v| v.parse::<u64>()) {
            Some(Ok(v)) => v,
            _ => {
                eprintln!("keel-mkdomains: {what} needs a number");
                usage()
            }
        };
        match a.as_str() {
            "--vcpus" => vcpus = val("--vcpus") as u32,
            "--max-mem-kib" => max_mem_kib = val("--max-mem-kib"),
            s => match s.parse() {
                Ok(v) if n.is_none() => n = Some(v),
                _ => usage(),
            },
        }
    }
    let n = n.unwrap_or_else(|| usage());
    let path = privcmd_path();
    let dev = match Privcmd::open(&path) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("keel-mkdomains: cannot open {}: {e:?}", path.display());
            std::process::exit(1)
        }
    };
    let xen = XenBackend::new(dev);
    for i in 0..n {
        match xen.create_container(vcpus, max_mem_kib) {
            Ok(id) => println!("{id}"),
            Err(e) => {
                eprintln!("keel-mkdomains: domain {} of {n}: {e}", i + 1);
                std::process::exit(1)
            }
        }
    }
}
