//! Instruction lengths for the instructions that cause exits, decoded from
//! their bytes. Needed on AMD CPUs without next-RIP saving (QEMU TCG has
//! none): the hypervisor must skip the instruction itself.

/// Length of the exiting instruction at the start of `b`, or `None` if it
/// is not one keel expects to exit on (or is truncated).
pub fn exit_insn_len(b: &[u8], long_mode: bool) -> Option<u8> {
    let mut i = 0;
    // Legacy prefixes (at most 14 before the 15-byte limit).
    while i < 14 {
        match *b.get(i)? {
            0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3 | 0x2e | 0x36 | 0x3e | 0x26 | 0x64 | 0x65 => i += 1,
            _ => break,
        }
    }
    if long_mode && (0x40..=0x4f).contains(b.get(i)?) {
        i += 1;
    }
    let op = *b.get(i)?;
    let rest = match op {
        0xf4 => 1,        // hlt
        0x90 => 1,        // pause (F3 90) / nop
        0xe4..=0xe7 => 2, // in/out imm8
        0xec..=0xef => 1, // in/out dx
        0x6c..=0x6f => 1, // ins/outs
        0x0f => match *b.get(i + 1)? {
            0xa2 => 2,        // cpuid
            0x30..=0x32 => 2, // wrmsr, rdmsr, rdtsc
            0x01 => match *b.get(i + 2)? {
                0xc1 | 0xd9 | 0xd1 | 0xf9 => 3, // vmcall, vmmcall, xsetbv, rdtscp
                _ => return None,
            },
            _ => return None,
        },
        _ => return None,
    };
    let len = i + rest;
    (len <= 15 && b.len() >= len).then_some(len as u8)
}

/// Reads guest-physical memory (8-byte little-endian words) for page walks.
pub trait GuestPhys {
    fn read_u64(&mut self, gpa: u64) -> Option<u64>;
}

const CR0_PG: u64 = 1 << 31;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const EFER_LMA: u64 = 1 << 10;
const ADDR: u64 = 0x000f_ffff_ffff_f000;

/// Translates a guest linear address through the guest's own page tables
/// (all four x86 paging modes), ignoring permissions.
pub fn linear_to_gpa<M: GuestPhys>(
    m: &mut M,
    cr0: u64,
    cr3: u64,
    cr4: u64,
    efer: u64,
    la: u64,
) -> Option<u64> {
    linear_to_gpa_for(m, cr0, cr3, cr4, efer, la, false)
}

/// As [`linear_to_gpa`]; with `write`, every level must also allow
/// writes (R/W, bit 1), so keel never writes through a read-only guest
/// mapping (a copy-on-write page, the shared zero page) on the guest's
/// behalf.
pub fn linear_to_gpa_for<M: GuestPhys>(
    m: &mut M,
    cr0: u64,
    cr3: u64,
    cr4: u64,
    efer: u64,
    la: u64,
    write: bool,
) -> Option<u64> {
    if cr0 & CR0_PG == 0 {
        return Some(la & 0xffff_ffff);
    }
    // Present, and writable when asked.
    let need = if write { 0b11 } else { 0b01 };
    let ok = |e: u64| e & need == need;
    if efer & EFER_LMA != 0 {
        let mut table = cr3 & ADDR;
        for level in (1..=4).rev() {
            let e = m.read_u64(table + ((la >> (12 + 9 * (level - 1))) & 0x1ff) * 8)?;
            if !ok(e) {
                return None;
            }
            if level == 1 || (level <= 3 && e & 0x80 != 0) {
                let size = 1u64 << (12 + 9 * (level - 1));
                return Some((e & ADDR & !(size - 1)) | (la & (size - 1)));
            }
            table = e & ADDR;
        }
        None
    } else if cr4 & CR4_PAE != 0 {
        let pdpte = m.read_u64((cr3 & 0xffff_ffe0) + ((la >> 30) & 3) * 8)?;
        if pdpte & 1 == 0 {
            return None;
        }
        let pde = m.read_u64((pdpte & ADDR) + ((la >> 21) & 0x1ff) * 8)?;
        if !ok(pde) {
            return None;
        }
        if pde & 0x80 != 0 {
            return Some((pde & ADDR & !0x1f_ffff) | (la & 0x1f_ffff));
        }
        let pte = m.read_u64((pde & ADDR) + ((la >> 12) & 0x1ff) * 8)?;
        ok(pte).then_some((pte & ADDR) | (la & 0xfff))
    } else {
        let rd32 = |m: &mut M, a: u64| {
            m.read_u64(a & !7)
                .map(|v| if a & 4 != 0 { v >> 32 } else { v & 0xffff_ffff })
        };
        let pde = rd32(m, (cr3 & 0xffff_f000) + ((la >> 22) & 0x3ff) * 4)?;
        if !ok(pde) {
            return None;
        }
        if pde & 0x80 != 0 && cr4 & CR4_PSE != 0 {
            return Some((pde & 0xffc0_0000) | (la & 0x3f_ffff));
        }
        let pte = rd32(m, (pde & 0xffff_f000) + ((la >> 12) & 0x3ff) * 4)?;
        ok(pte).then_some((pte & 0xffff_f000) | (la & 0xfff))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn lengths() {
        assert_eq!(exit_insn_len(&[0x0f, 0xa2], false), Some(2));
        assert_eq!(exit_insn_len(&[0x0f, 0x01, 0xd9], true), Some(3));
        assert_eq!(exit_insn_len(&[0x0f, 0x01, 0xc1], true), Some(3));
        assert_eq!(exit_insn_len(&[0xf4], true), Some(1));
        assert_eq!(exit_insn_len(&[0xf3, 0x90], true), Some(2));
        assert_eq!(exit_insn_len(&[0x48, 0x0f, 0x32], true), Some(3)); // REX.W rdmsr
        assert_eq!(exit_insn_len(&[0x48, 0x0f, 0x32], false), None); // 0x48 is dec eax in 32-bit mode
        assert_eq!(exit_insn_len(&[0x66, 0xe5, 0x10], false), Some(3));
        assert_eq!(exit_insn_len(&[0xf3, 0x6e], true), Some(2)); // rep outsb
        assert_eq!(exit_insn_len(&[0x0f, 0x01], true), None); // truncated
        assert_eq!(exit_insn_len(&[0x0f, 0x0b], true), None); // ud2: not an exit
        assert_eq!(exit_insn_len(&[0x66; 15], true), None);
    }

    struct Mem(HashMap<u64, u64>);
    impl GuestPhys for Mem {
        fn read_u64(&mut self, gpa: u64) -> Option<u64> {
            Some(*self.0.get(&gpa).unwrap_or(&0))
        }
    }

    #[test]
    fn walks_all_modes() {
        // long mode: PML4 at 0x1000 -> PDPT 0x2000 -> PD 0x3000 (2M page at 0x40_0000)
        let mut m = Mem(HashMap::from([
            (0x1000, 0x2003),
            (0x2000, 0x3003),
            (0x3000 + 8, 0x40_0083),
        ]));
        let (cr0, lma) = (CR0_PG | 1, EFER_LMA | 0x100);
        assert_eq!(
            linear_to_gpa(&mut m, cr0, 0x1000, CR4_PAE, lma, 0x21_2345),
            Some(0x41_2345)
        );
        assert_eq!(
            linear_to_gpa(&mut m, cr0, 0x1000, CR4_PAE, lma, 0x8000_0000),
            None
        );
        // paging off
        assert_eq!(
            linear_to_gpa(&mut m, 1, 0, 0, 0, 0x1_0000_8000),
            Some(0x8000)
        );
        // 32-bit non-PAE, 4 KiB: PD at 0x5000 entry 1 -> PT 0x6000 entry 2 -> 0x9000
        let mut m = Mem(HashMap::from([
            (0x5000, 0x0000_6003u64 << 32),
            (0x6008, 0x9003),
        ]));
        assert_eq!(
            linear_to_gpa(&mut m, CR0_PG, 0x5000, 0, 0, 0x40_2abc),
            Some(0x9abc)
        );
        // PAE: PDPT at 0x7000 -> PD 0x8000 -> 2 MiB page
        let mut m = Mem(HashMap::from([(0x7000, 0x8001), (0x8000, 0x60_0083)]));
        assert_eq!(
            linear_to_gpa(&mut m, CR0_PG, 0x7000, CR4_PAE, 0, 0x1_2345),
            Some(0x61_2345)
        );
    }

    #[test]
    fn writes_need_writable_mappings() {
        // long mode, 4 KiB page whose PTE is read-only (a COW or zero page).
        let mut m = Mem(HashMap::from([
            (0x1000, 0x2003),
            (0x2000, 0x3003),
            (0x3000, 0x4003),
            (0x4000, 0x9001), // page 0: present, read-only
            (0x4008, 0xa003), // page 1: writable
        ]));
        let (cr0, lma) = (CR0_PG | 1, EFER_LMA | 0x100);
        let walk = |m: &mut Mem, la, w| linear_to_gpa_for(m, cr0, 0x1000, CR4_PAE, lma, la, w);
        assert_eq!(walk(&mut m, 0x10, false), Some(0x9010));
        assert_eq!(walk(&mut m, 0x10, true), None);
        assert_eq!(walk(&mut m, 0x1010, true), Some(0xa010));
        // A read-only upper level forbids writes below it too.
        m.0.insert(0x2000, 0x3001);
        assert_eq!(walk(&mut m, 0x1010, true), None);
        assert_eq!(walk(&mut m, 0x1010, false), Some(0xa010));
    }
}
