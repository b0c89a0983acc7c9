//! Kernel image parsing: the accepted formats and every refusal.

mod common;
use common::*;
use keel_builder::{KernelError, KernelFormat, KernelImage};

#[test]
fn elf64_pvh_kernel() {
    let k = KernelImage::parse(&linux_like()).unwrap();
    assert_eq!(k.format, KernelFormat::Elf64);
    assert_eq!(k.entry, 0x100_0850);
    assert_eq!(k.segments.len(), 2);
    assert_eq!(
        k.segments[0].paddr, 0x100_0000,
        "loads at p_paddr, not p_vaddr"
    );
    assert_eq!(k.segments[1].memsz, 0x1_0000);
    assert_eq!(k.data(&k.segments[0])[..3], [1, 8, 15]);
    assert_eq!((k.start(), k.end()), (0x100_0000, 0x101_4000));
}

#[test]
fn elf32_and_4_byte_note() {
    let img = elf(
        false,
        &[seg(0x10_0000, &[0x90; 64], 0x2000)],
        &note(b"Xen", 18, &0x10_0010u32.to_le_bytes()),
        false,
    );
    let k = KernelImage::parse(&img).unwrap();
    assert_eq!(k.format, KernelFormat::Elf32);
    assert_eq!(k.entry, 0x10_0010);
    assert_eq!(k.segments[0].memsz, 0x2000);
}

#[test]
fn notes_from_sections_when_no_pt_note() {
    for class64 in [true, false] {
        let img = elf(
            class64,
            &[seg(0x10_0000, &[0xf4; 16], 16)],
            &pvh_note(0x10_0000),
            true,
        );
        assert_eq!(KernelImage::parse(&img).unwrap().entry, 0x10_0000);
    }
}

#[test]
fn bzimage_with_uncompressed_elf_payload() {
    let k = KernelImage::parse(&bzimage(&linux_like())).unwrap();
    assert_eq!(k.format, KernelFormat::BzImage("uncompressed ELF"));
    assert_eq!(k.entry, 0x100_0850);
}

#[test]
fn bzimage_refusals() {
    // LZ4 (Debian's cloud flavour) is named, not mangled.
    let e = KernelImage::parse(&bzimage(b"\x02\x21\x4c\x18lz4 data")).unwrap_err();
    assert_eq!(e, KernelError::UnsupportedCompression("lz4"));
    assert!(e.to_string().contains("lz4"));
    // A payload cut off by the end of the file.
    let img = bzimage(&linux_like());
    let e = KernelImage::parse(&img[..img.len() - 100]).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::Truncated {
                what: "the bzImage payload",
                ..
            }
        ),
        "{e:?}"
    );
    // A setup header cut short.
    let e = KernelImage::parse(&img[..0x220]).unwrap_err();
    assert!(matches!(e, KernelError::Truncated { .. }), "{e:?}");
    // Corrupt XZ.
    let mut xz = vec![0xfd, b'7', b'z', b'X', b'Z', 0];
    xz.extend_from_slice(&[0x55; 64]);
    xz.extend_from_slice(b"YZ");
    let e = KernelImage::parse(&bzimage(&xz)).unwrap_err();
    assert!(matches!(e, KernelError::BzImage(_)), "{e:?}");
}

#[test]
fn not_a_kernel_and_truncated() {
    assert_eq!(
        KernelImage::parse(b"MZ\x90\x00 a PE file, say, and long enough").unwrap_err(),
        KernelError::NotAKernel
    );
    assert!(matches!(
        KernelImage::parse(b"\x7fE").unwrap_err(),
        KernelError::Truncated { .. }
    ));
    let img = linux_like();
    // Inside the ELF header.
    let e = KernelImage::parse(&img[..40]).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::Truncated {
                what: "the ELF header",
                ..
            }
        ),
        "{e:?}"
    );
    // Inside the program header table.
    let e = KernelImage::parse(&img[..100]).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::Truncated {
                what: "the program header table",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("truncated"));
}

#[test]
fn segment_beyond_file() {
    let img = linux_like();
    let e = KernelImage::parse(&img[..img.len() - 1]).unwrap_err();
    assert!(
        matches!(e, KernelError::SegmentBeyondFile { index: 1, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("beyond"));
}

#[test]
fn no_pvh_note() {
    let img = elf(
        true,
        &[seg(0x100_0000, &[0; 16], 16)],
        &note(b"Xen", 6, b"linux\0"),
        false,
    );
    let e = KernelImage::parse(&img).unwrap_err();
    assert_eq!(e, KernelError::NoPvhEntry);
    assert!(e.to_string().contains("PVH"));
    // Type 18 under another owner is not it either.
    let img = elf(
        true,
        &[seg(0x100_0000, &[0; 16], 16)],
        &note(b"GNU", 18, &[0; 8]),
        false,
    );
    assert_eq!(
        KernelImage::parse(&img).unwrap_err(),
        KernelError::NoPvhEntry
    );
    // No notes at all.
    let img = elf(true, &[seg(0x100_0000, &[0; 16], 16)], &[], false);
    assert_eq!(
        KernelImage::parse(&img).unwrap_err(),
        KernelError::NoPvhEntry
    );
}

#[test]
fn overlapping_segments() {
    let img = elf(
        true,
        &[
            seg(0x100_0000, &[1; 16], 0x2000),
            seg(0x100_1000, &[2; 16], 16),
        ],
        &pvh_note(0x100_0000),
        false,
    );
    assert_eq!(
        KernelImage::parse(&img).unwrap_err(),
        KernelError::OverlappingSegments { a: 0, b: 1 }
    );
}

#[test]
fn bad_entries_and_segments() {
    let img = elf(
        true,
        &[seg(0x100_0000, &[0; 16], 16)],
        &pvh_note(1 << 33),
        false,
    );
    assert_eq!(
        KernelImage::parse(&img).unwrap_err(),
        KernelError::EntryAbove4G(1 << 33)
    );
    let img = elf(
        true,
        &[seg(0x100_0000, &[0; 16], 16)],
        &pvh_note(0x200_0000),
        false,
    );
    assert_eq!(
        KernelImage::parse(&img).unwrap_err(),
        KernelError::EntryOutsideSegments(0x200_0000)
    );
    let img = elf(
        true,
        &[seg(0x100_0000, &[0; 16], 8)],
        &pvh_note(0x100_0000),
        false,
    );
    assert_eq!(
        KernelImage::parse(&img).unwrap_err(),
        KernelError::BadSegment { index: 0 }
    );
    let img = elf(true, &[], &pvh_note(0x100_0000), false);
    assert_eq!(
        KernelImage::parse(&img).unwrap_err(),
        KernelError::NoSegments
    );
    let mut img = linux_like();
    img[18] = 40; // EM_ARM
    assert!(matches!(
        KernelImage::parse(&img).unwrap_err(),
        KernelError::UnsupportedElf(_)
    ));
}

/// Random byte flips never panic the parser.
#[test]
fn mutated_images_never_panic() {
    let good = linux_like();
    let mut x: u32 = 12345;
    for _ in 0..5000 {
        let mut b = good.clone();
        for _ in 0..3 {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let i = (x as usize >> 8) % 300.min(b.len());
            b[i] = (x >> 24) as u8;
        }
        let _ = KernelImage::parse(&b);
    }
}
