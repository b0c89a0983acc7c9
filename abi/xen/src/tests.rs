//! Host tests of the encoding and the registry. The layouts themselves are
//! checked against Xen's headers in `tests/layout.rs`.

extern crate std;

use crate::domctl::{self, GetDomainInfo, SchedCredit, SchedulerOp, VcpuAffinity, XenDomctl};
use crate::evtchn::{self, Status};
use crate::layout::{Layout, ALL_CONSTS, ALL_LAYOUTS};
use crate::sysctl::{self, GetDomainInfoList, PerfcDesc, PerfcOp, XenSysctl};
use crate::*;
use std::collections::HashSet;
use std::vec;
use std::vec::Vec;

fn layouts() -> impl Iterator<Item = &'static Layout> {
    ALL_LAYOUTS.iter().flat_map(|m| m.iter())
}

/// Bytes 1, 2, 3, ... (never 0, so a zeroed byte stands out).
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251 + 1) as u8).collect()
}

/// Marks the bytes of `l` that belong to a field (recursing into fields
/// whose type is itself a registered struct, which may have padding).
fn field_bytes(l: &Layout, base: usize, mask: &mut [bool]) {
    if l.fields.is_empty() {
        mask[base..base + l.size].fill(true);
    }
    for f in l.fields {
        let nested = layouts().find(|n| n.rust.rsplit("::").next() == Some(f.ty));
        match nested {
            Some(n) if n.size == f.size => field_bytes(n, base + f.offset, mask),
            _ => mask[base + f.offset..base + f.offset + f.size].fill(true),
        }
    }
}

#[test]
fn every_struct_encodes_each_field_in_place_and_zeroes_padding() {
    let mut n = 0;
    for l in layouts() {
        let input = pattern(l.size);
        let mut out = vec![0xeeu8; l.size + 3];
        assert!((l.reencode)(&input, &mut out), "{}", l.rust);
        let mut mask = vec![false; l.size];
        field_bytes(l, 0, &mut mask);
        for i in 0..l.size {
            let want = if mask[i] { input[i] } else { 0 };
            assert_eq!(out[i], want, "{} byte {i}", l.rust);
        }
        assert_eq!(
            &out[l.size..],
            &[0xee; 3],
            "{}: wrote past its size",
            l.rust
        );
        // Too short either way: nothing decoded, nothing written.
        let mut short = vec![0xeeu8; l.size - 1];
        assert!(!(l.reencode)(&input[..l.size - 1], &mut out), "{}", l.rust);
        assert!(!(l.reencode)(&input, &mut short), "{}", l.rust);
        assert!(short.iter().all(|&b| b == 0xee), "{}", l.rust);
        n += 1;
    }
    assert!(n >= 50, "{n} layouts");
}

#[test]
fn registry_names_are_unique_and_fields_sane() {
    let mut rust = HashSet::new();
    let mut c = HashSet::new();
    for l in layouts() {
        assert!(rust.insert(l.rust), "{} registered twice", l.rust);
        assert!(c.insert(l.c), "{} mirrored twice", l.c);
        assert!(l.size > 0 && l.size % l.align == 0, "{}", l.rust);
        let mut end = 0;
        for f in l.fields {
            // Declared in C order: no overlap, nothing out of bounds.
            assert!(f.offset >= end, "{}.{} overlaps", l.rust, f.rust);
            end = f.offset + f.size;
            assert!(end <= l.size, "{}.{}", l.rust, f.rust);
            assert!(!f.c.starts_with("r#"), "{}.{}", l.rust, f.c);
        }
    }
    let mut consts = HashSet::new();
    for k in ALL_CONSTS.iter().flat_map(|m| m.iter()) {
        assert!(consts.insert(k.rust), "{} registered twice", k.rust);
    }
    assert_eq!(layout::strip_raw("r#type"), "type");
    assert_eq!(layout::strip_raw("rtype"), "rtype");
}

#[test]
fn domctl_header_and_payload_bytes() {
    let d = XenDomctl::new(domctl::op::GETDOMAININFO, 7, &GetDomainInfo::default());
    let b = d.to_bytes();
    assert_eq!(b.len(), 144);
    assert_eq!(&b[0..4], &5u32.to_le_bytes());
    assert_eq!(&b[4..8], &0x15u32.to_le_bytes());
    assert_eq!(&b[8..10], &7u16.to_le_bytes());
    assert!(b[10..].iter().all(|&x| x == 0));
    assert!(d.version_ok());

    // A hypervisor's view: bytes from the guest, then the typed argument.
    let mut raw = [0u8; 144];
    raw[0..4].copy_from_slice(&domctl::op::SETVCPUAFFINITY.to_le_bytes());
    raw[4..8].copy_from_slice(&0x14u32.to_le_bytes());
    raw[8..10].copy_from_slice(&3u16.to_le_bytes());
    raw[16..20].copy_from_slice(&1u32.to_le_bytes()); // vcpu
    raw[20..24].copy_from_slice(&domctl::affinity::HARD.to_le_bytes());
    raw[24..32].copy_from_slice(&0xdead_b000u64.to_le_bytes()); // cpumap_hard.bitmap
    raw[32..36].copy_from_slice(&64u32.to_le_bytes()); // cpumap_hard.nr_bits
    let d = XenDomctl::from_bytes(&raw).unwrap();
    assert!(!d.version_ok(), "0x14 is 4.16's domctl");
    assert_eq!(d.domain, 3);
    let a: VcpuAffinity = d.op();
    assert_eq!(a.vcpu, 1);
    assert_eq!(a.flags, domctl::affinity::HARD);
    assert_eq!(a.cpumap_hard.bitmap.addr(), 0xdead_b000);
    assert_eq!(a.cpumap_hard.nr_bits, 64);
    assert!(a.cpumap_soft.bitmap.is_null());

    // Writing an answer back keeps the header and replaces the payload.
    let mut d = d;
    d.u.set(&GetDomainInfo {
        domain: 3,
        flags: domctl::dominf::SHUTDOWN | (4 << domctl::dominf::SHUTDOWNSHIFT),
        ..Default::default()
    });
    let info: GetDomainInfo = d.op();
    assert_eq!(info.shutdown_code(), 4);
    assert_eq!(d.to_bytes()[..10], raw[..10]);
    assert!(XenDomctl::from_bytes(&raw[..143]).is_none());
    assert!(XenDomctl::from_bytes(&[0u8; 145]).is_none());
    assert!(XenDomctl::from_prefix(&[0u8; 145]).is_some());
}

#[test]
fn nested_unions() {
    let mut op = SchedulerOp {
        sched_id: domctl::scheduler::CREDIT,
        cmd: domctl::schedop::PUTINFO,
        ..Default::default()
    };
    op.u.set(&SchedCredit {
        weight: 512,
        cap: 25,
    });
    let b = op.to_bytes();
    assert_eq!(b.len(), 24);
    assert_eq!(&b[8..12], &[0x00, 0x02, 25, 0]);
    let back = SchedulerOp::from_bytes(&b).unwrap();
    assert_eq!(back.u.get::<SchedCredit>().weight, 512);
    assert_eq!(back, op);
    // set() clears what a larger member left behind.
    op.u.set(&domctl::SchedOpVcpus {
        vcpus: GuestHandle::new(u64::MAX),
        nr_vcpus: 9,
        padding: 0,
    });
    op.u.set(&SchedCredit { weight: 1, cap: 0 });
    assert!(op.u.0[4..].iter().all(|&x| x == 0));
    assert!(std::format!("{:?}", op.u).ends_with("SchedOpU([01] + 15 zero bytes)"));
}

#[test]
fn sysctl_round_trip() {
    let s = XenSysctl::new(
        sysctl::op::GETDOMAININFOLIST,
        &GetDomainInfoList {
            first_domain: 1,
            max_domains: 1024,
            buffer: GuestHandle::new(0x7fff_0000),
            num_domains: 0,
        },
    );
    let b = s.to_bytes();
    assert_eq!(b.len(), 136);
    assert_eq!(&b[0..8], &[6, 0, 0, 0, 0x15, 0, 0, 0]);
    assert_eq!(&b[8..10], &[1, 0]);
    assert_eq!(&b[12..16], &1024u32.to_le_bytes());
    assert_eq!(&b[16..24], &0x7fff_0000u64.to_le_bytes());
    let l: GetDomainInfoList = XenSysctl::from_bytes(&b).unwrap().op();
    assert_eq!(GetDomainInfo::SIZE, 112);
    assert_eq!(l.buffer.element(2), Some(0x7fff_0000 + 2 * 112));
    assert_eq!(GuestHandle::<GetDomainInfo>::new(u64::MAX).element(1), None);
    assert_eq!(GuestHandle::<GetDomainInfo>::new(8).element(u64::MAX), None);
}

#[test]
fn evtchn_status_union() {
    let mut s = Status {
        dom: DOMID_SELF,
        port: 5,
        status: evtchn::stat::INTERDOMAIN,
        ..Default::default()
    };
    s.set_interdomain(2, 17);
    let b = s.to_bytes();
    assert_eq!(&b[16..24], &[2, 0, 0, 0, 17, 0, 0, 0]);
    let s = Status::from_bytes(&b).unwrap();
    assert_eq!((s.remote_dom(), s.remote_port()), (2, 17));
}

#[test]
fn c_strings() {
    let mut f = [0xffu8; 8];
    assert_eq!(put_cstr(&mut f, b"4.17"), 4);
    assert_eq!(&f, b"4.17\0\0\0\0");
    assert_eq!(cstr(&f), b"4.17");
    assert_eq!(put_cstr(&mut f, b"0123456789"), 7);
    assert_eq!(&f, b"0123456\0");
    assert_eq!(cstr(b"abc"), b"abc");
    assert_eq!(put_cstr(&mut [], b"x"), 0);
}

#[test]
fn small_helpers() {
    assert_eq!(version::XEN_4_17, 0x0004_0011);
    assert_eq!(memory::memf_get_node(memory::memf_node(3)), 3);
    assert_eq!(memory::memf_get_node(0), 0xff);
    assert_eq!(
        hvm::save::CPU_LENGTH,
        hvm::save::HwCpu::SIZE,
        "the CPU record is the struct"
    );
    // Integers are little-endian, arrays element by element.
    assert_eq!(0x0102_0304u32.to_le_bytes(), {
        let mut b = [0u8; 4];
        0x0102_0304u32.write_to(&mut b).unwrap();
        b
    });
    let a: [u16; 3] = Pod::from_bytes(&[1, 0, 2, 0, 3, 0]).unwrap();
    assert_eq!(a, [1, 2, 3]);
    assert_eq!(<[u64; 0]>::SIZE, 0);
}

#[test]
fn perfc_op_and_descriptions() {
    // xenperf's query: cmd, two OUT counts, then the two handles.
    let s = XenSysctl::new(
        sysctl::op::PERFC_OP,
        &PerfcOp {
            cmd: sysctl::perfcop::QUERY,
            nr_counters: 0xdead,
            nr_vals: 0xbeef,
            desc: GuestHandle::new(0x1000),
            val: GuestHandle::new(0x2000),
        },
    );
    let b = s.to_bytes();
    assert_eq!(&b[0..4], &5u32.to_le_bytes());
    assert_eq!(&b[8..12], &2u32.to_le_bytes());
    assert_eq!(&b[12..16], &0xdeadu32.to_le_bytes());
    assert_eq!(&b[16..20], &0xbeefu32.to_le_bytes());
    assert_eq!(&b[24..32], &0x1000u64.to_le_bytes());
    assert_eq!(&b[32..40], &0x2000u64.to_le_bytes());
    let p: PerfcOp = XenSysctl::from_bytes(&b).unwrap().op();
    assert_eq!(p.val.element(3), Some(0x200c));
    // A description: 80 name bytes, then nr_vals.
    let mut d = PerfcDesc {
        name: [0; 80],
        nr_vals: 64,
    };
    put_cstr(&mut d.name, b"vmexit cpuid [domid]");
    let b = d.to_bytes();
    assert_eq!(b.len(), 84);
    assert_eq!(cstr(&b[..80]), b"vmexit cpuid [domid]");
    assert_eq!(&b[80..84], &64u32.to_le_bytes());
    assert_eq!(p.desc.element(2), Some(0x1000 + 2 * 84));
}
