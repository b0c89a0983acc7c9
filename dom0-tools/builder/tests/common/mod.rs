//! Test helpers: synthetic kernels and (`fake`) a fake guest that records everything.
#![allow(dead_code)]

pub mod fake;

pub fn note(name: &[u8], ty: u32, desc: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
    v.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    v.extend_from_slice(&ty.to_le_bytes());
    v.extend_from_slice(name);
    v.push(0);
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v.extend_from_slice(desc);
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v
}

pub fn pvh_note(entry: u64) -> Vec<u8> {
    note(b"Xen", 18, &entry.to_le_bytes())
}

/// A loadable segment of a synthetic kernel.
#[derive(Clone)]
pub struct Seg {
    pub paddr: u64,
    pub data: Vec<u8>,
    pub memsz: u64,
}

pub fn seg(paddr: u64, data: &[u8], memsz: u64) -> Seg {
    Seg {
        paddr,
        data: data.to_vec(),
        memsz,
    }
}

/// ELF64 (`class64`) or ELF32 x86 executable: PT_NOTE (if `notes` is non-empty) then the
/// PT_LOAD segments. With `notes_in_section`, the notes go in an SHT_NOTE section instead.
pub fn elf(class64: bool, segs: &[Seg], notes: &[u8], notes_in_section: bool) -> Vec<u8> {
    let (ehsize, phentsize, shentsize) = if class64 { (64, 56, 64) } else { (52, 32, 40) };
    let has_pt_note = !notes.is_empty() && !notes_in_section;
    let phnum = segs.len() + has_pt_note as usize;
    let mut data_off = ehsize + phentsize * phnum;
    let notes_off = data_off;
    data_off += notes.len();
    let mut seg_offs = Vec::new();
    for s in segs {
        seg_offs.push(data_off);
        data_off += s.data.len();
    }
    // Section headers (null + note) after the data, when asked.
    let shoff = if notes_in_section { data_off } else { 0 };
    let shnum = if notes_in_section { 2 } else { 0 };
    let total = data_off + shnum * shentsize;
    let mut b = vec![0u8; total];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = if class64 { 2 } else { 1 };
    b[5] = 1;
    b[6] = 1;
    let w16 = |b: &mut Vec<u8>, o: usize, v: u16| b[o..o + 2].copy_from_slice(&v.to_le_bytes());
    let w32 = |b: &mut Vec<u8>, o: usize, v: u32| b[o..o + 4].copy_from_slice(&v.to_le_bytes());
    let w64 = |b: &mut Vec<u8>, o: usize, v: u64| b[o..o + 8].copy_from_slice(&v.to_le_bytes());
    w16(&mut b, 16, 2); // ET_EXEC
    w16(&mut b, 18, if class64 { 62 } else { 3 });
    w32(&mut b, 20, 1);
    if class64 {
        w64(&mut b, 24, 0xffff_ffff_8100_0000);
        w64(&mut b, 32, ehsize as u64);
        w64(&mut b, 40, shoff as u64);
        w16(&mut b, 52, ehsize as u16);
        w16(&mut b, 54, phentsize as u16);
        w16(&mut b, 56, phnum as u16);
        w16(&mut b, 58, shentsize as u16);
        w16(&mut b, 60, shnum as u16);
    } else {
        w32(&mut b, 24, 0x10_0000);
        w32(&mut b, 28, ehsize as u32);
        w32(&mut b, 32, shoff as u32);
        w16(&mut b, 40, ehsize as u16);
        w16(&mut b, 42, phentsize as u16);
        w16(&mut b, 44, phnum as u16);
        w16(&mut b, 46, shentsize as u16);
        w16(&mut b, 48, shnum as u16);
    }
    // (type, offset, paddr, filesz, memsz, align)
    let mut phdrs = Vec::new();
    if has_pt_note {
        phdrs.push((
            4u32,
            notes_off,
            0u64,
            notes.len() as u64,
            notes.len() as u64,
            4u64,
        ));
    }
    for (s, &off) in segs.iter().zip(&seg_offs) {
        phdrs.push((1, off, s.paddr, s.data.len() as u64, s.memsz, 0x1000));
    }
    for (i, &(ty, off, paddr, filesz, memsz, align)) in phdrs.iter().enumerate() {
        let o = ehsize + i * phentsize;
        w32(&mut b, o, ty);
        if class64 {
            w32(&mut b, o + 4, 7);
            w64(&mut b, o + 8, off as u64);
            w64(&mut b, o + 16, paddr | 0xffff_ffff_0000_0000);
            w64(&mut b, o + 24, paddr);
            w64(&mut b, o + 32, filesz);
            w64(&mut b, o + 40, memsz);
            w64(&mut b, o + 48, align);
        } else {
            w32(&mut b, o + 4, off as u32);
            w32(&mut b, o + 8, paddr as u32);
            w32(&mut b, o + 12, paddr as u32);
            w32(&mut b, o + 16, filesz as u32);
            w32(&mut b, o + 20, memsz as u32);
            w32(&mut b, o + 24, 7);
            w32(&mut b, o + 28, align as u32);
        }
    }
    b[notes_off..notes_off + notes.len()].copy_from_slice(notes);
    for (s, &off) in segs.iter().zip(&seg_offs) {
        b[off..off + s.data.len()].copy_from_slice(&s.data);
    }
    if notes_in_section {
        let o = shoff + shentsize; // section 1
        w32(&mut b, o + 4, 7); // SHT_NOTE
        if class64 {
            w64(&mut b, o + 24, notes_off as u64);
            w64(&mut b, o + 32, notes.len() as u64);
            w64(&mut b, o + 48, 4);
        } else {
            w32(&mut b, o + 16, notes_off as u32);
            w32(&mut b, o + 20, notes.len() as u32);
            w32(&mut b, o + 32, 4);
        }
    }
    b
}

/// A Linux-like PVH kernel: text at 16 MiB with the entry inside, data, and a .bss.
pub fn linux_like() -> Vec<u8> {
    let text: Vec<u8> = (0..0x3000u32).map(|i| (i * 7 + 1) as u8).collect();
    let data: Vec<u8> = (0..0x1800u32).map(|i| (i * 13 + 5) as u8).collect();
    elf(
        true,
        &[
            seg(0x100_0000, &text, 0x3000),
            seg(0x100_4000, &data, 0x1_0000),
        ],
        &[note(b"Xen", 6, b"linux\0"), pvh_note(0x100_0850)].concat(),
        false,
    )
}

/// A bzImage around `payload` (setup_sects 4, payload at pm_start + 0x40).
pub fn bzimage(payload: &[u8]) -> Vec<u8> {
    let pm = 5 * 512;
    let mut b = vec![0u8; pm + 0x40 + payload.len()];
    b[0x1f1] = 4;
    b[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
    b[0x202..0x206].copy_from_slice(b"HdrS");
    b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    b[0x248..0x24c].copy_from_slice(&0x40u32.to_le_bytes());
    b[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    b[pm + 0x40..].copy_from_slice(payload);
    b
}
