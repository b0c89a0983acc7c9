//! The build sequence against a fake guest that records everything.

mod common;
use common::fake::{FakeGuest, Op, OpMatch};
use common::*;
use keel_builder::abi::*;
use keel_builder::acpi::checksum;
use keel_builder::build::{CR0_PE_ET, MTRR_DEF_WB_ENABLED};
use keel_builder::layout::{special_pfn, NR_SPECIAL_PAGES, PAGE};
use keel_builder::{build, Cause, DomainSpec, KernelImage, LayoutError, Step};
use keel_xen_abi::hvm::param;
use keel_xen_abi::Pod;

const CMDLINE: &str = "console=hvc0 root=/dev/xvda1 ro";

fn spec(mib: u64, vcpus: u32) -> DomainSpec {
    let mut s = DomainSpec::new(mib, vcpus);
    s.cmdline = CMDLINE.into();
    s.console_evtchn = 3;
    s.store_evtchn = 2;
    s
}

fn ramdisk() -> Vec<u8> {
    (0..0x2_1234u32).map(|i| (i % 251) as u8).collect()
}

#[test]
fn builds_a_domain() {
    let img = linux_like();
    let k = KernelImage::parse(&img).unwrap();
    let rd = ramdisk();
    let s = spec(128, 4);
    let mut g = FakeGuest::new();
    let built = build(&mut g, &k, Some(&rd), &s).unwrap();
    let l = &built.layout;

    // Memory: exactly RAM + ACPI + special pages populated.
    assert_eq!(
        g.populated.len() as u64,
        l.ram_pages() + l.extra_pages(),
        "populated pages"
    );
    for gfn in 0..(128 << 8) {
        assert!(g.is_populated(gfn), "RAM gfn {gfn:#x}");
    }
    // 128 MiB: no 1 GiB extent, 64 of 2 MiB.
    assert_eq!(built.populate.pages_1g, 0);
    assert_eq!(built.populate.pages_2m, 64);
    assert_eq!(built.populate.pages_4k, 0);

    // The kernel's bytes at their physical addresses, .bss zero.
    for s in &k.segments {
        assert_eq!(g.read(s.paddr, s.filesz as usize), k.data(s));
        let bss = g.read(s.paddr + s.filesz, (s.memsz - s.filesz) as usize);
        assert!(bss.iter().all(|&b| b == 0));
    }
    // The ramdisk, page-aligned after the kernel.
    let (rd_at, rd_len) = l.ramdisk.unwrap();
    assert_eq!(rd_at % PAGE, 0);
    assert!(rd_at >= k.end());
    assert_eq!(g.read(rd_at, rd_len as usize), rd);

    // start_info parses back.
    let si = HvmStartInfo::from_bytes(&g.read(l.start_info, HvmStartInfo::SIZE)).unwrap();
    assert_eq!(si.magic, XEN_HVM_START_MAGIC_VALUE);
    assert_eq!(si.version, 1);
    assert_eq!(si.flags, 0);
    assert_eq!(si.nr_modules, 1);
    let m = HvmModlistEntry::from_bytes(&g.read(si.modlist_paddr, 32)).unwrap();
    assert_eq!(
        (m.paddr, m.size, m.cmdline_paddr),
        (rd_at, rd.len() as u64, 0)
    );
    // The command line, NUL-terminated.
    let c = g.read(si.cmdline_paddr, CMDLINE.len() + 1);
    assert_eq!(&c[..CMDLINE.len()], CMDLINE.as_bytes());
    assert_eq!(c[CMDLINE.len()], 0);
    // The memmap is the e820 given to the hypervisor.
    let mm: Vec<_> = (0..si.memmap_entries as u64)
        .map(|i| HvmMemmapEntry::from_bytes(&g.read(si.memmap_paddr + 24 * i, 24)).unwrap())
        .collect();
    assert_eq!(mm, g.e820.iter().map(|e| e.memmap()).collect::<Vec<_>>());
    // The e820 covers RAM exactly.
    let ram: Vec<_> = g
        .e820
        .iter()
        .filter(|e| e.kind == E820Type::Ram)
        .map(|e| (e.addr, e.end()))
        .collect();
    assert_eq!(ram, vec![(0, 128 << 20)]);

    // ACPI: RSDP at rsdp_paddr, MADT with 4 LAPICs and a valid checksum.
    let rsdp = AcpiRsdp::from_bytes(&g.read(si.rsdp_paddr, 36)).unwrap();
    assert_eq!(&{ rsdp.signature }, b"RSD PTR ");
    assert_eq!(checksum(&g.read(si.rsdp_paddr, 36)), 0);
    let xsdt_len = g.read(rsdp.xsdt_address + 4, 4)[0] as usize;
    let xsdt = g.read(rsdp.xsdt_address, xsdt_len);
    let madt_at = u64::from_le_bytes(xsdt[44..52].try_into().unwrap());
    let h = AcpiHeader::from_bytes(&g.read(madt_at, 36)).unwrap();
    assert_eq!(&h.signature, b"APIC");
    let madt = g.read(madt_at, h.length as usize);
    assert_eq!(checksum(&madt), 0);
    let lapics: Vec<_> = madt[44..]
        .chunks(8)
        .map(|e| MadtLocalApic::from_bytes(e).unwrap())
        .collect();
    assert_eq!(lapics.len(), 4);
    assert!(lapics.iter().all(|e| e.kind == 0 && e.flags == 1));

    // Special pages: zero but the identity page table; params point at them.
    for i in 0..NR_SPECIAL_PAGES {
        let gfn = special_pfn(i);
        assert!(g.is_populated(gfn));
        let page = g.read(gfn * PAGE, PAGE as usize);
        assert_eq!(page.iter().all(|&b| b == 0), i != 6, "special page {i}");
    }
    assert_eq!(g.params[&param::STORE_PFN], 0xfeffc);
    assert_eq!(g.params[&param::CONSOLE_PFN], 0xfefff);
    assert_eq!(g.params[&param::CONSOLE_EVTCHN], 3);
    assert_eq!(g.params[&param::STORE_EVTCHN], 2);
    assert_eq!(g.params[&param::IDENT_PT], 0xfeffe000);
    assert!(built.tolerated.is_empty());

    // Grant entries 0 and 1 grant the rings to dom0.
    assert_eq!(
        g.grants,
        vec![
            (
                0,
                GrantEntryV1 {
                    flags: 1,
                    domid: 0,
                    frame: 0xfefff
                }
            ),
            (
                1,
                GrantEntryV1 {
                    flags: 1,
                    domid: 0,
                    frame: 0xfeffc
                }
            ),
        ]
    );
    // MTRRs of every vCPU, then the BSP in flat 32-bit protected mode.
    assert_eq!(g.mtrr.len(), 4);
    assert!(g.mtrr.values().all(|&v| v == MTRR_DEF_WB_ENABLED));
    let bsp = g.bsp.unwrap();
    assert_eq!(bsp.rip, 0x100_0850);
    assert_eq!(bsp.rbx, l.start_info);
    assert_eq!(bsp.cr0, CR0_PE_ET);
    assert_eq!((bsp.cs_base, bsp.cs_limit, bsp.cs_arbytes), (0, !0, 0xc9b));
    assert_eq!((bsp.ss_limit, bsp.ss_arbytes), (!0, 0xc93));
    assert_eq!(
        bsp.cr4 | bsp.msr_efer | bsp.cr3,
        0,
        "paging off, not long mode"
    );

    // Nothing written twice: every write and zeroing is disjoint from the others, but the
    // identity page table written into the zeroed special pages.
    let special = (special_pfn(0) * PAGE, NR_SPECIAL_PAGES * PAGE);
    let mut ranges: Vec<(u64, u64)> = g
        .ops
        .iter()
        .filter_map(|o| match *o {
            Op::Write { gpa, len } => Some((gpa, gpa + len)),
            Op::Zero { gpa, len } if (gpa, len) != special => Some((gpa, gpa + len)),
            _ => None,
        })
        .collect();
    ranges.sort();
    for w in ranges.windows(2) {
        assert!(w[0].1 <= w[1].0, "{:x?} overlaps {:x?}", w[0], w[1]);
    }
}

/// The calls come in libxenguest's order: populate RAM, memory map, kernel, ramdisk, ACPI,
/// special pages, params, start_info, event channels, MTRRs, BSP last but the grant seed.
#[test]
fn steps_in_order() {
    let k = KernelImage::parse(&linux_like()).unwrap();
    let mut g = FakeGuest::new();
    let built = build(&mut g, &k, Some(&ramdisk()), &spec(64, 2)).unwrap();
    let l = &built.layout;
    let kind = |o: &Op| -> u8 {
        match o {
            Op::Populate { first, .. } if *first == 0xfc000 => 4,
            Op::Populate { first, .. } if *first < 0xfc000 => 0,
            Op::SetMemoryMap(_) => 1,
            Op::Write { gpa, .. } | Op::Zero { gpa, .. } if *gpa < l.ramdisk.unwrap().0 => 2,
            Op::Write { gpa, .. } if *gpa == l.ramdisk.unwrap().0 => 3,
            Op::Write { gpa, .. } if *gpa == 0xfc00_0000 => 4,
            Op::Populate { .. } | Op::Zero { .. } => 5,
            Op::Write { gpa, .. } if *gpa >= 0xfeff_8000 => 5,
            Op::SetParam(i, _) if *i != param::CONSOLE_EVTCHN && *i != param::STORE_EVTCHN => 6,
            Op::Write { gpa, .. } if *gpa == l.start_info => 7,
            Op::SetParam(..) => 8,
            Op::Mtrr(..) => 9,
            Op::Bsp => 10,
            Op::Grants => 11,
            o => panic!("unexpected {o:?}"),
        }
    };
    let kinds: Vec<u8> = g.ops.iter().map(kind).collect();
    let mut dedup = kinds.clone();
    dedup.dedup();
    assert_eq!(dedup, (0..=11).collect::<Vec<_>>(), "{:?}", g.ops);
}

#[test]
fn populate_falls_back_to_smaller_extents() {
    let k = KernelImage::parse(&linux_like()).unwrap();
    // 1 GiB + 3 MiB: one 1 GiB extent, one 2 MiB, 256 pages of 4 KiB.
    let mut g = FakeGuest::new();
    let b = build(&mut g, &k, None, &spec(1027, 1)).unwrap();
    assert_eq!(
        (
            b.populate.pages_1g,
            b.populate.pages_2m,
            b.populate.pages_4k
        ),
        (1, 1, 256)
    );
    // No 1 GiB pages available: 2 MiB ones.
    let mut g = FakeGuest::new();
    g.max_order = 9;
    let b = build(&mut g, &k, None, &spec(1027, 1)).unwrap();
    assert_eq!(
        (
            b.populate.pages_1g,
            b.populate.pages_2m,
            b.populate.pages_4k
        ),
        (0, 513, 256)
    );
    // Only 4 KiB pages.
    let mut g = FakeGuest::new();
    g.max_order = 0;
    let b = build(&mut g, &k, None, &spec(64, 1)).unwrap();
    assert_eq!(
        (
            b.populate.pages_1g,
            b.populate.pages_2m,
            b.populate.pages_4k
        ),
        (0, 0, 64 << 8)
    );
    assert_eq!(g.populated.len() as u64, (64 << 8) + b.layout.extra_pages());
    assert!(g
        .ops
        .iter()
        .all(|o| !matches!(o, Op::Populate { n, order: 0, .. } if *n > 512)));
}

/// A refused large extent is not fatal; a failed 4 KiB one is, at PopulateRam.
#[test]
fn populate_failures() {
    let k = KernelImage::parse(&linux_like()).unwrap();
    let mut g = FakeGuest::new();
    g.fail_on = Some((|o| matches!(o, Op::Populate { order: 9, .. }), 0));
    assert!(build(&mut g, &k, None, &spec(64, 1)).is_ok());
    let mut g = FakeGuest::new();
    g.max_order = 0;
    g.fail_on = Some((|o| matches!(o, Op::Populate { order: 0, .. }), 3));
    let e = build(&mut g, &k, None, &spec(64, 1)).unwrap_err();
    assert_eq!(e.step, Step::PopulateRam);
    assert!(matches!(e.cause, Cause::Guest(_)));
    assert!(e.to_string().contains("PopulateRam"), "{e}");
}

/// Each step's failure is reported as that step, and nothing after it runs.
#[test]
fn failures_name_their_step() {
    let k = KernelImage::parse(&linux_like()).unwrap();
    let cases: [(OpMatch, usize, Step); 11] = [
        (|o| matches!(o, Op::SetMemoryMap(_)), 0, Step::SetMemoryMap),
        (
            |o| {
                matches!(
                    o,
                    Op::Write {
                        gpa: 0x100_0000,
                        ..
                    }
                )
            },
            0,
            Step::LoadKernel,
        ),
        (|o| matches!(o, Op::Zero { .. }), 0, Step::LoadKernel),
        (
            |o| {
                matches!(
                    o,
                    Op::Write {
                        gpa: 0x101_4000,
                        ..
                    }
                )
            },
            0,
            Step::LoadRamdisk,
        ),
        (
            |o| matches!(o, Op::Populate { first: 0xfc000, .. }),
            0,
            Step::LoadAcpi,
        ),
        (
            |o| matches!(o, Op::Populate { first: 0xfeff8, .. }),
            0,
            Step::SpecialPages,
        ),
        (|o| matches!(o, Op::SetParam(1, _)), 0, Step::SetParams),
        (|o| matches!(o, Op::SetParam(18, _)), 0, Step::EventChannels),
        (|o| matches!(o, Op::Mtrr(1, _)), 0, Step::Mtrr),
        (|o| matches!(o, Op::Bsp), 0, Step::Bsp),
        (|o| matches!(o, Op::Grants), 0, Step::GrantTable),
    ];
    for (pred, n, step) in cases {
        let mut g = FakeGuest::new();
        g.fail_on = Some((pred, n));
        let e = build(&mut g, &k, Some(&ramdisk()), &spec(64, 2)).unwrap_err();
        assert_eq!(e.step, step, "{e}");
        assert!(matches!(&e.cause, Cause::Guest(m) if m.contains("injected")));
        assert!(pred(g.ops.last().unwrap()), "stopped at the failing call");
    }
    // The start_info write.
    let at = build(&mut FakeGuest::new(), &k, Some(&ramdisk()), &spec(64, 2))
        .unwrap()
        .layout
        .start_info;
    static AT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    AT.store(at, std::sync::atomic::Ordering::Relaxed);
    let mut g = FakeGuest::new();
    g.fail_on = Some((
        |o| matches!(o, Op::Write { gpa, .. } if *gpa == AT.load(std::sync::atomic::Ordering::Relaxed)),
        0,
    ));
    let e = build(&mut g, &k, Some(&ramdisk()), &spec(64, 2)).unwrap_err();
    assert_eq!(e.step, Step::StartInfo);
}

#[test]
fn layout_errors_touch_nothing() {
    let k = KernelImage::parse(&linux_like()).unwrap();
    let mut g = FakeGuest::new();
    let e = build(&mut g, &k, None, &spec(16, 1)).unwrap_err();
    assert_eq!(e.step, Step::Layout);
    assert!(matches!(e.cause, Cause::Layout(LayoutError::Kernel(_))));
    assert!(g.ops.is_empty());
}

/// Xen ignores failures of the optional PFN params; STORE_PFN and CONSOLE_PFN are fatal here.
#[test]
fn optional_params_are_tolerated() {
    let k = KernelImage::parse(&linux_like()).unwrap();
    let mut g = FakeGuest::new();
    g.bad_params = vec![param::IOREQ_PFN, param::IDENT_PT];
    let b = build(&mut g, &k, None, &spec(64, 1)).unwrap();
    assert_eq!(
        b.tolerated.iter().map(|t| t.0).collect::<Vec<_>>(),
        vec![param::IOREQ_PFN, param::IDENT_PT]
    );
    let mut g = FakeGuest::new();
    g.bad_params = vec![param::CONSOLE_PFN];
    assert_eq!(
        build(&mut g, &k, None, &spec(64, 1)).unwrap_err().step,
        Step::SetParams
    );
}

#[test]
fn max_vcpus_and_backends() {
    let k = KernelImage::parse(&linux_like()).unwrap();
    let mut s = spec(64, 2);
    s.max_vcpus = 6;
    s.console_domid = 7;
    s.store_domid = 8;
    let mut g = FakeGuest::new();
    let b = build(&mut g, &k, None, &s).unwrap();
    assert_eq!(g.mtrr.len(), 6);
    let madt = g.read(b.layout.acpi.madt, 44 + 6 * 8);
    let enabled: Vec<u32> = madt[44..].chunks(8).map(|e| e[4] as u32).collect();
    assert_eq!(enabled, vec![1, 1, 0, 0, 0, 0]);
    assert_eq!((g.grants[0].1.domid, g.grants[1].1.domid), (7, 8));
}

/// RAM beyond the hole continues at 4 GiB, in 1 GiB extents where aligned.
#[test]
fn builds_above_the_hole() {
    let k = KernelImage::parse(&linux_like()).unwrap();
    let mut g = FakeGuest::new();
    let b = build(&mut g, &k, None, &spec(4096 + 1024, 1)).unwrap();
    let low = 0xfc00_0000u64;
    // [0, 3 GiB) in 1 GiB extents, [3 GiB, low) in 2 MiB ones; [4 GiB, 4 GiB + 1 GiB + 64 MiB)
    // in one 1 GiB extent and 32 of 2 MiB.
    assert_eq!(b.populate.pages_1g, 3 + 1);
    assert_eq!(b.populate.pages_2m, (low - (3 << 30)) / (2 << 20) + 32);
    assert_eq!(b.populate.pages_4k, 0);
    assert!(g.is_populated(low / PAGE - 1) && !g.is_populated(low / PAGE + 1));
    assert!(g.is_populated((5u64 << 30) / PAGE + (64 << 8) - 1));
    assert!(!g.is_populated((5u64 << 30) / PAGE + (64 << 8)));
    let ram: u64 = g
        .e820
        .iter()
        .filter(|e| e.kind == E820Type::Ram)
        .map(|e| e.size)
        .sum();
    assert_eq!(ram, 5 << 30);
    assert_eq!(g.e820.last().unwrap().addr, 1 << 32);
}
