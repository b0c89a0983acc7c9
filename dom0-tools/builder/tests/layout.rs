//! The guest-visible structures, the ACPI tables and the memory layout.

mod common;
use common::*;
use core::mem::offset_of;
use keel_builder::abi::*;
use keel_builder::acpi::{self, checksum, ApicIds};
use keel_builder::layout::{special_pfn, ACPI_BASE, FOUR_GIB, HOLE_START, PAGE};
use keel_builder::{DomainSpec, KernelError, KernelImage, Layout, LayoutError};
use keel_xen_abi::Pod;
use std::ptr::NonNull;
use std::rc::Rc;

/// Sizes and offsets from Xen's `arch-x86/hvm/start_info.h`, `grant_table.h`,
/// `hvm/e820.h`'s `struct e820entry` and the ACPI specification.
#[test]
fn struct_layouts() {
    assert_eq!(HvmStartInfo::SIZE, 56);
    assert_eq!(offset_of!(HvmStartInfo, magic), 0);
    assert_eq!(offset_of!(HvmStartInfo, version), 4);
    assert_eq!(offset_of!(HvmStartInfo, flags), 8);
    assert_eq!(offset_of!(HvmStartInfo, nr_modules), 12);
    assert_eq!(offset_of!(HvmStartInfo, modlist_paddr), 16);
    assert_eq!(offset_of!(HvmStartInfo, cmdline_paddr), 24);
    assert_eq!(offset_of!(HvmStartInfo, rsdp_paddr), 32);
    assert_eq!(offset_of!(HvmStartInfo, memmap_paddr), 40);
    assert_eq!(offset_of!(HvmStartInfo, memmap_entries), 48);
    assert_eq!(offset_of!(HvmStartInfo, reserved), 52);
    assert_eq!(HvmModlistEntry::SIZE, 32);
    assert_eq!(offset_of!(HvmModlistEntry, size), 8);
    assert_eq!(offset_of!(HvmModlistEntry, cmdline_paddr), 16);
    assert_eq!(HvmMemmapEntry::SIZE, 24);
    assert_eq!(offset_of!(HvmMemmapEntry, size), 8);
    assert_eq!(offset_of!(HvmMemmapEntry, kind), 16);
    assert_eq!(E820Raw::SIZE, 20);
    assert_eq!(offset_of!(E820Raw, kind), 16);
    assert_eq!(GrantEntryV1::SIZE, 8);
    assert_eq!(offset_of!(GrantEntryV1, domid), 2);
    assert_eq!(offset_of!(GrantEntryV1, frame), 4);
    assert_eq!(AcpiRsdp::SIZE, 36);
    assert_eq!(offset_of!(AcpiRsdp, checksum), 8);
    assert_eq!(offset_of!(AcpiRsdp, revision), 15);
    assert_eq!(offset_of!(AcpiRsdp, rsdt_address), 16);
    assert_eq!(offset_of!(AcpiRsdp, length), 20);
    assert_eq!(offset_of!(AcpiRsdp, xsdt_address), 24);
    assert_eq!(offset_of!(AcpiRsdp, extended_checksum), 32);
    assert_eq!(AcpiHeader::SIZE, 36);
    assert_eq!(offset_of!(AcpiHeader, length), 4);
    assert_eq!(offset_of!(AcpiHeader, checksum), 9);
    assert_eq!(offset_of!(AcpiHeader, oem_id), 10);
    assert_eq!(offset_of!(AcpiHeader, oem_table_id), 16);
    assert_eq!(offset_of!(AcpiHeader, oem_revision), 24);
    assert_eq!(offset_of!(AcpiHeader, creator_id), 28);
    assert_eq!(offset_of!(AcpiHeader, creator_revision), 32);
    assert_eq!(MadtFixed::SIZE, 8);
    assert_eq!(MadtLocalApic::SIZE, 8);
    assert_eq!(offset_of!(MadtLocalApic, apic_id), 3);
    assert_eq!(offset_of!(MadtLocalApic, flags), 4);
    // Encoding round-trips, little-endian at the offsets.
    let si = HvmStartInfo {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: 1,
        memmap_entries: 3,
        rsdp_paddr: 0x1122_3344_5566_7788,
        ..Default::default()
    };
    let b = si.to_bytes();
    assert_eq!(&b[..4], &[0x78, 0xc5, 0x6e, 0x33]);
    assert_eq!(&b[32..40], &0x1122_3344_5566_7788u64.to_le_bytes());
    assert_eq!(HvmStartInfo::from_bytes(&b), Some(si));
    assert_eq!(HvmStartInfo::from_bytes(&b[..55]), None);
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}
fn table(t: &acpi::AcpiTables, gpa: u64) -> &[u8] {
    let o = (gpa - t.base) as usize;
    &t.bytes[o..o + u32_at(&t.bytes, o + 4) as usize]
}

#[test]
fn acpi_tables_checksums_and_madt() {
    for (online, max) in [(1, 1), (2, 2), (3, 8), (128, 128)] {
        let t = acpi::build(ACPI_BASE, online, max, ApicIds::Xen);
        let rsdp = AcpiRsdp::from_bytes(&t.bytes).unwrap();
        assert_eq!(&{ rsdp.signature }, b"RSD PTR ");
        assert_eq!(checksum(&t.bytes[..20]), 0);
        assert_eq!(checksum(&t.bytes[..36]), 0);
        assert_eq!({ rsdp.xsdt_address }, t.xsdt);
        for (gpa, sig) in [
            (t.xsdt, b"XSDT"),
            (t.fadt, b"FACP"),
            (t.dsdt, b"DSDT"),
            (t.madt, b"APIC"),
        ] {
            let tb = table(&t, gpa);
            assert_eq!(&tb[..4], sig);
            assert_eq!(checksum(tb), 0, "{sig:?} checksum");
            assert_eq!(gpa % 16, 0);
        }
        let xsdt = table(&t, t.xsdt);
        assert_eq!((u64_at(xsdt, 36), u64_at(xsdt, 44)), (t.fadt, t.madt));
        let fadt = table(&t, t.fadt);
        assert_ne!(u32_at(fadt, 112) & acpi::FADT_HW_REDUCED_ACPI, 0);
        assert_eq!(u64_at(fadt, 140), t.dsdt);
        let madt = table(&t, t.madt);
        assert_eq!(madt.len(), 44 + 8 * max as usize);
        assert_eq!(u32_at(madt, 36), 0xfee0_0000);
        for i in 0..max as usize {
            let e = MadtLocalApic::from_bytes(&madt[44 + 8 * i..]).unwrap();
            assert_eq!((e.kind, e.length), (0, 8));
            assert_eq!(e.processor_uid as usize, i);
            assert_eq!(e.apic_id as usize, 2 * i, "Xen's APIC IDs");
            assert_eq!(e.flags, u32::from(i < online as usize), "vCPU {i} enabled?");
        }
        assert!(t.bytes.len() as u64 <= PAGE, "one page");
    }
    let t = acpi::build(ACPI_BASE, 4, 4, ApicIds::Sequential);
    let madt = table(&t, t.madt);
    assert_eq!(madt[44 + 8 * 3 + 3], 3);
}

/// Guest memory for the `acpi` crate: addresses map into the tables' bytes.
#[derive(Clone)]
struct Mem(Rc<(u64, Vec<u8>)>);

impl ::acpi::AcpiHandler for Mem {
    unsafe fn map_physical_region<T>(
        &self,
        phys: usize,
        size: usize,
    ) -> ::acpi::PhysicalMapping<Self, T> {
        let (base, bytes) = &*self.0;
        let off = (phys as u64 - base) as usize;
        assert!(off + size <= bytes.len(), "map past the tables");
        // SAFETY: `off + size` lies within `bytes` (checked above), kept alive by the handler
        // held in the mapping; the acpi crate only reads through the pointer.
        unsafe {
            let ptr = NonNull::new(bytes.as_ptr().add(off) as *mut T).unwrap();
            ::acpi::PhysicalMapping::new(phys, ptr, size, size, self.clone())
        }
    }
    fn unmap_physical_region<T>(_: &::acpi::PhysicalMapping<Self, T>) {}
}

/// An independent parser (the `acpi` crate) reads the tables as a guest would.
#[test]
fn acpi_crate_reads_the_tables() {
    for n in [1u32, 4, 128] {
        let t = acpi::build(ACPI_BASE, n, n, ApicIds::Xen);
        let mem = Mem(Rc::new((t.base, t.bytes.clone())));
        // SAFETY: the handler maps addresses into the bytes just built; the RSDP address is
        // the one `build` reported.
        let tables = unsafe { ::acpi::AcpiTables::from_rsdp(mem, t.rsdp as usize) }.unwrap();
        let fadt = tables.find_table::<::acpi::fadt::Fadt>().unwrap();
        assert!({ fadt.flags }.system_is_hw_reduced_acpi());
        assert_eq!(fadt.dsdt_address().unwrap() as u64, t.dsdt);
        drop(fadt);
        let info = tables.platform_info().unwrap();
        let p = info.processor_info.unwrap();
        assert_eq!(p.boot_processor.local_apic_id, 0);
        assert_eq!(p.application_processors.len() as u32, n - 1);
        for (i, ap) in p.application_processors.iter().enumerate() {
            assert_eq!(ap.local_apic_id as usize, 2 * (i + 1));
        }
    }
}

#[test]
fn layout_small_domain() {
    let k = KernelImage::parse(&linux_like()).unwrap();
    let mut spec = DomainSpec::new(64, 2);
    spec.cmdline = "console=hvc0 root=/dev/xvda1".into();
    let l = Layout::new(&k, Some(0x12345), &spec).unwrap();
    assert_eq!(l.ram, vec![(0, 64 << 20)]);
    assert_eq!(l.kernel, (0x100_0000, 0x101_4000));
    assert_eq!(l.ramdisk, Some((0x101_4000, 0x12345)));
    assert_eq!(l.start_info, 0x102_7000, "page after the ramdisk");
    assert_eq!(l.cmdline, l.start_info + 56);
    assert_eq!(l.modlist, l.cmdline + 32, "cmdline + NUL rounded to 8");
    assert_eq!(l.memmap, l.modlist + 32);
    assert_eq!(l.start_info_len, PAGE);
    assert_eq!(l.acpi.base, 0xfc00_0000);
    assert_eq!((l.console_pfn, l.store_pfn), (0xfefff, 0xfeffc));
    assert_eq!(
        l.e820,
        vec![
            E820Entry {
                addr: 0,
                size: 64 << 20,
                kind: E820Type::Ram
            },
            E820Entry {
                addr: 0xfc00_0000,
                size: PAGE,
                kind: E820Type::Acpi
            },
            E820Entry {
                addr: 0xfeff_8000,
                size: 8 * PAGE,
                kind: E820Type::Reserved
            },
        ]
    );
    assert_eq!(l.ram_pages(), 64 << 8);
    assert_eq!(l.extra_pages(), 9);
    // Boot info decodes back.
    let b = l.boot_info(&spec.cmdline);
    let si = HvmStartInfo::from_prefix(&b).unwrap();
    assert_eq!(si.magic, XEN_HVM_START_MAGIC_VALUE);
    assert_eq!((si.version, si.nr_modules, si.memmap_entries), (1, 1, 3));
    assert_eq!(si.rsdp_paddr, 0xfc00_0000);
    let c = (si.cmdline_paddr - l.start_info) as usize;
    assert_eq!(
        &b[c..c + spec.cmdline.len() + 1],
        b"console=hvc0 root=/dev/xvda1\0"
    );
}

#[test]
fn layout_above_the_hole() {
    let k = KernelImage::parse(&linux_like()).unwrap();
    let l = Layout::new(&k, None, &DomainSpec::new(5 << 10, 1)).unwrap();
    let low = HOLE_START;
    assert_eq!(
        l.ram,
        vec![(0, low), (FOUR_GIB, FOUR_GIB + (5 << 30) - low)]
    );
    assert_eq!(l.ram_pages(), (5 << 30) / PAGE);
    let e = &l.e820;
    assert_eq!(e.len(), 4);
    assert_eq!((e[0].addr, e[0].end(), e[0].kind), (0, low, E820Type::Ram));
    assert_eq!((e[3].addr, e[3].kind), (FOUR_GIB, E820Type::Ram));
    assert_eq!(l.ramdisk, None);
    assert_eq!(l.cmdline, 0);
    let si = HvmStartInfo::from_prefix(&l.boot_info("")).unwrap();
    assert_eq!(
        (si.nr_modules, si.modlist_paddr, si.cmdline_paddr),
        (0, 0, 0)
    );
    assert_eq!(si.memmap_entries, 4);
}

/// The e820 entries never overlap, RAM entries add up to the domain's memory, and every
/// piece the builder writes lies inside RAM or its own e820 entry.
#[test]
fn layouts_do_not_overlap() {
    let k = KernelImage::parse(&linux_like()).unwrap();
    for mib in [32u64, 100, 1024, 4032, 4033, 8192] {
        for rd in [None, Some(1), Some(5 << 20)] {
            let mut spec = DomainSpec::new(mib, 3);
            spec.max_vcpus = 7;
            spec.cmdline = "x".repeat(300);
            let l = Layout::new(&k, rd, &spec).unwrap();
            let mut e = l.e820.clone();
            e.sort_by_key(|x| x.addr);
            assert_eq!(e, l.e820, "sorted");
            for w in e.windows(2) {
                assert!(w[0].end() <= w[1].addr, "{w:?}");
            }
            let ram: u64 = e
                .iter()
                .filter(|x| x.kind == E820Type::Ram)
                .map(|x| x.size)
                .sum();
            assert_eq!(ram, mib << 20);
            let mut pieces = vec![l.kernel, (l.start_info, l.start_info + l.start_info_len)];
            if let Some((a, n)) = l.ramdisk {
                pieces.push((a, a + n));
            }
            pieces.sort();
            for w in pieces.windows(2) {
                assert!(w[0].1 <= w[1].0, "{pieces:x?}");
            }
            assert!(pieces.iter().all(|p| p.1 <= e[0].end()));
            assert!(l.acpi.bytes.len() as u64 <= e[1].size && e[1].kind == E820Type::Acpi);
            assert_eq!(e[2].addr, special_pfn(0) * PAGE);
        }
    }
}

#[test]
fn layout_refusals() {
    let k = KernelImage::parse(&linux_like()).unwrap();
    assert_eq!(
        Layout::new(&k, None, &DomainSpec::new(1, 1)).unwrap_err(),
        LayoutError::BadMemory(1)
    );
    for (v, m) in [(0, 1), (2, 1), (129, 129)] {
        let mut s = DomainSpec::new(64, v);
        s.max_vcpus = m;
        assert_eq!(
            Layout::new(&k, None, &s).unwrap_err(),
            LayoutError::BadVcpus {
                vcpus: v,
                max_vcpus: m
            }
        );
    }
    let mut s = DomainSpec::new(64, 1);
    s.cmdline = "a\0b".into();
    assert_eq!(
        Layout::new(&k, None, &s).unwrap_err(),
        LayoutError::NulInCmdline
    );
}

#[test]
fn kernel_larger_than_memory() {
    // 16 MiB of memory; the kernel's .bss reaches past 16 MiB.
    let k = KernelImage::parse(&linux_like()).unwrap();
    let e = Layout::new(&k, None, &DomainSpec::new(16, 1)).unwrap_err();
    assert_eq!(
        e,
        LayoutError::Kernel(KernelError::TooLarge {
            end: 0x101_4000,
            ram_end: 16 << 20
        })
    );
    assert!(e.to_string().contains("more memory"));
    // 17 MiB fits the kernel, but not a 2 MiB ramdisk after it.
    let e = Layout::new(&k, Some(2 << 20), &DomainSpec::new(17, 1)).unwrap_err();
    assert!(
        matches!(
            e,
            LayoutError::NoRoom {
                what: "the ramdisk",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn spec_from_xl_cfg() {
    let p = keel_xlcfg::parse_str(
        "name='w'\ntype='pvh'\nkernel='/boot/vmlinuz'\nmemory=512\nvcpus=2\nmaxvcpus=4\n\
         cmdline='console=hvc0'\n",
        "w.cfg",
    )
    .unwrap();
    let s = DomainSpec::from_xl(&p.config).unwrap();
    assert_eq!((s.memory_mib, s.vcpus, s.max_vcpus), (512, 2, 4));
    assert_eq!(s.cmdline, "console=hvc0");
    let p = keel_xlcfg::parse_str("name='w'\ntype='pvh'\nkernel='/k'\n", "w.cfg").unwrap();
    assert_eq!(
        DomainSpec::from_xl(&p.config).unwrap_err(),
        LayoutError::NoMemory
    );
    let p = keel_xlcfg::parse_str("name='w'\ntype='hvm'\nmemory=64\n", "w.cfg").unwrap();
    assert!(matches!(
        DomainSpec::from_xl(&p.config).unwrap_err(),
        LayoutError::NotPvh(_)
    ));
}
