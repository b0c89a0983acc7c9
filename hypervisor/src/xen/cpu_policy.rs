//! CPU policies in Xen's toolstack formats: the *featureset* (feature
//! words, `XEN_SYSCTL_get_cpu_featureset`) and the *serialised policy*
//! (`xen_cpuid_leaf_t[]` and `xen_msr_entry_t[]`,
//! `XEN_SYSCTL_get_cpu_policy`), built from a CPUID function: the host's
//! for the raw and host policies, what keel shows guests for the HVM ones.
//! libxenguest (`xc_cpuid_apply_policy`, `xen-cpuid`) reads these, so the
//! order and the bounds are Xen 4.17's (`xen/lib/x86/cpuid.c`,
//! `x86_cpuid_copy_to_buffer`; `xen/include/xen/lib/x86/cpu-policy.h`).
//! Pure: host-tested with made-up CPUs.

use crate::xen::abi::Errno;
use alloc::vec::Vec;
use keel_xen_abi::arch_x86::{CpuidLeaf, MsrEntry, CPUID_NO_SUBLEAF};

/// Xen 4.17's array sizes of `struct cpu_policy` (`CPUID_GUEST_NR_*`):
/// basic leaves 0..=0xd, leaf 4 subleaves, leaf 7 subleaves, leaf 0xb
/// subleaves, leaf 0xd subleaves, extended leaves 0x8000_0000..=0x8000_0021.
pub const NR_BASIC: u32 = 0xd + 1;
pub const NR_CACHE: u32 = 5 + 1;
pub const NR_FEAT: u32 = 2 + 1;
pub const NR_TOPO: u32 = 1 + 1;
pub const NR_XSTATE: u32 = 62 + 1;
pub const NR_EXTD: u32 = 0x21 + 1;

/// `CPUID_MAX_SERIALISED_LEAVES`: what a NULL-buffer query answers.
pub const MAX_SERIALISED_LEAVES: u32 =
    NR_BASIC + (NR_FEAT - 1) + (NR_CACHE - 1) + (NR_TOPO - 1) + (NR_XSTATE - 1) + NR_EXTD + 2;
/// `MSR_MAX_SERIALISED_ENTRIES`: MSR_INTEL_PLATFORM_INFO and MSR_ARCH_CAPABILITIES.
pub const MAX_SERIALISED_MSRS: u32 = 2;

pub const MSR_INTEL_PLATFORM_INFO: u32 = 0xce;
pub const MSR_ARCH_CAPABILITIES: u32 = 0x10a;

/// The featureset's words in Xen 4.17's order (`FEATURESET_*`): (leaf,
/// subleaf, register 0-3 = EAX-EDX). Words 16 and 17 are MSR
/// ARCH_CAPABILITIES' halves, not CPUID.
const FEATURESET: [Option<(u32, u32, usize)>; 19] = [
    Some((1, 0, 3)),           // 1d
    Some((1, 0, 2)),           // 1c
    Some((0x8000_0001, 0, 3)), // e1d
    Some((0x8000_0001, 0, 2)), // e1c
    Some((0xd, 1, 0)),         // Da1
    Some((7, 0, 1)),           // 7b0
    Some((7, 0, 2)),           // 7c0
    Some((0x8000_0007, 0, 3)), // e7d
    Some((0x8000_0008, 0, 1)), // e8b
    Some((7, 0, 3)),           // 7d0
    Some((7, 1, 0)),           // 7a1
    Some((0x8000_0021, 0, 0)), // e21a
    Some((7, 1, 1)),           // 7b1
    Some((7, 2, 3)),           // 7d2
    Some((7, 1, 2)),           // 7c1
    Some((7, 1, 3)),           // 7d1
    None,                      // m10Al
    None,                      // m10Ah
    Some((0x8000_0021, 0, 2)), // e21c
];

/// `FSCAPINTS` of Xen 4.17 (Debian's 4.17.7 headers have words 0-18).
pub const FEATURESET_WORDS: usize = FEATURESET.len();

/// The featureset of the CPU `cpuid` describes. A word whose leaf is past
/// the CPU's highest leaf (or subleaf, for leaf 7) is 0, as in Xen's policy.
pub fn featureset(cpuid: &impl Fn(u32, u32) -> [u32; 4]) -> [u32; FEATURESET_WORDS] {
    let max_basic = cpuid(0, 0)[0];
    let max_ext = cpuid(0x8000_0000, 0)[0];
    let max_7 = if max_basic >= 7 { cpuid(7, 0)[0] } else { 0 };
    let mut out = [0u32; FEATURESET_WORDS];
    for (w, src) in out.iter_mut().zip(FEATURESET) {
        let Some((leaf, sub, reg)) = src else {
            continue;
        };
        let present = if leaf >= 0x8000_0000 {
            leaf <= max_ext
        } else {
            leaf <= max_basic && (leaf != 7 || sub <= max_7)
        };
        if present {
            *w = cpuid(leaf, sub)[reg];
        }
    }
    out
}

/// The serialised CPUID part of a policy, in `x86_cpuid_copy_to_buffer`'s
/// order, at most `room` leaves (-ENOBUFS beyond, as Xen).
pub fn leaves(cpuid: &impl Fn(u32, u32) -> [u32; 4], room: u32) -> Result<Vec<CpuidLeaf>, Errno> {
    let mut out = Vec::new();
    let mut put = |leaf: u32, subleaf: u32, r: [u32; 4]| {
        if out.len() as u32 >= room {
            return Err(Errno::ENOBUFS);
        }
        out.push(CpuidLeaf {
            leaf,
            subleaf,
            a: r[0],
            b: r[1],
            c: r[2],
            d: r[3],
        });
        Ok(())
    };
    let max_basic = cpuid(0, 0)[0];
    for leaf in 0..=max_basic.min(NR_BASIC - 1) {
        match leaf {
            // Deterministic cache parameters: up to and including the
            // first null (type 0) entry.
            4 => {
                for sub in 0..NR_CACHE {
                    let r = cpuid(4, sub);
                    put(4, sub, r)?;
                    if r[0] & 0x1f == 0 {
                        break;
                    }
                }
            }
            7 => {
                let max_sub = cpuid(7, 0)[0];
                for sub in 0..=max_sub.min(NR_FEAT - 1) {
                    put(7, sub, cpuid(7, sub))?;
                }
            }
            // x2APIC topology: up to and including the first invalid level.
            0xb => {
                for sub in 0..NR_TOPO {
                    let r = cpuid(0xb, sub);
                    put(0xb, sub, r)?;
                    if (r[2] >> 8) & 0xff == 0 {
                        break;
                    }
                }
            }
            // XSAVE: subleaves 0 and 1, then one per state component from
            // 2 up to the highest set in XCR0 | XSS.
            0xd => {
                let s0 = cpuid(0xd, 0);
                let s1 = cpuid(0xd, 1);
                put(0xd, 0, s0)?;
                put(0xd, 1, s1)?;
                let mut xstates = (u64::from(s0[3]) << 32 | u64::from(s0[0]))
                    | (u64::from(s1[3]) << 32 | u64::from(s1[2]));
                xstates >>= 2;
                let mut sub = 2;
                while xstates != 0 && sub < NR_XSTATE {
                    put(0xd, sub, cpuid(0xd, sub))?;
                    xstates >>= 1;
                    sub += 1;
                }
            }
            _ => put(leaf, CPUID_NO_SUBLEAF, cpuid(leaf, 0))?,
        }
    }
    // Xen's own and Viridian's leaf limits: 0, the defaults (keel offers
    // no Viridian leaves and all of its Xen leaves).
    put(0x4000_0000, CPUID_NO_SUBLEAF, [0; 4])?;
    put(0x4000_0100, CPUID_NO_SUBLEAF, [0; 4])?;
    let max_ext = cpuid(0x8000_0000, 0)[0];
    if max_ext >= 0x8000_0000 {
        for i in 0..=(max_ext & 0xffff).min(NR_EXTD - 1) {
            put(0x8000_0000 | i, CPUID_NO_SUBLEAF, cpuid(0x8000_0000 | i, 0))?;
        }
    } else {
        // A CPU without extended leaves still has leaf 0x8000_0000 in the
        // policy (Xen serialises entry 0 of the extended array).
        put(0x8000_0000, CPUID_NO_SUBLEAF, [0; 4])?;
    }
    Ok(out)
}

/// The serialised MSR part of a policy: PLATFORM_INFO and
/// ARCH_CAPABILITIES, both 0 (keel offers neither: a guest's RDMSR of
/// either raises #GP), at most `room` entries.
pub fn msrs(room: u32) -> Result<Vec<MsrEntry>, Errno> {
    let all = [MSR_INTEL_PLATFORM_INFO, MSR_ARCH_CAPABILITIES].map(|idx| MsrEntry {
        idx,
        flags: 0,
        val: 0,
    });
    if room < all.len() as u32 {
        return Err(Errno::ENOBUFS);
    }
    Ok(all.to_vec())
}

/// Feature bits keel sets per vCPU as the guest's state says (1.ECX
/// OSXSAVE, 7.0.ECX OSPKE), as Xen's `guest_cpuid` does: a policy never
/// clears them (its serialised form has them clear).
const DYNAMIC: [(usize, u32); 2] = [(1, 1 << 27), (6, 1 << 4)];

/// `regs`, the answer to CPUID `leaf`/`sub`, with the feature bits of
/// words `features` (a featureset, see [`featureset`]) lacks cleared.
pub fn apply_features(
    leaf: u32,
    sub: u32,
    mut regs: [u32; 4],
    features: &[u32; FEATURESET_WORDS],
) -> [u32; 4] {
    for (w, src) in FEATURESET.iter().enumerate() {
        let Some((l, s, reg)) = *src else {
            continue;
        };
        // Leaves 1 and 0x8000_000x have no subleaves: any ECX reads them.
        if l == leaf && (s == sub || (l != 7 && l != 0xd)) {
            let keep = DYNAMIC
                .iter()
                .filter(|&&(dw, _)| dw == w)
                .fold(features[w], |m, &(_, bit)| m | bit);
            regs[reg] &= keep;
        }
    }
    regs
}

/// Why a serialised policy was refused: the errno and, as Xen reports
/// them in `struct xen_domctl_cpu_policy`, the leaf, subleaf and MSR at
/// fault (`!0` where none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyError {
    pub errno: Errno,
    pub leaf: u32,
    pub subleaf: u32,
    pub msr: u32,
}

/// A featureset, [`FEATURESET_WORDS`] words.
pub type Features = [u32; FEATURESET_WORDS];

impl PolicyError {
    /// An error at no particular leaf or MSR.
    pub fn of(errno: Errno) -> Self {
        Self::new(errno)
    }

    fn new(errno: Errno) -> Self {
        PolicyError {
            errno,
            leaf: !0,
            subleaf: !0,
            msr: !0,
        }
    }
    fn leaf(errno: Errno, leaf: u32, subleaf: u32) -> Self {
        PolicyError {
            leaf,
            subleaf,
            ..Self::new(errno)
        }
    }
    fn msr(errno: Errno, msr: u32) -> Self {
        PolicyError {
            msr,
            ..Self::new(errno)
        }
    }
}

/// Whether Xen 4.17's `struct cpu_policy` has a slot for `leaf`/`subleaf`
/// (`x86_cpuid_copy_from_buffer`: anything else is -ERANGE).
fn in_range(leaf: u32, subleaf: u32) -> bool {
    let n = CPUID_NO_SUBLEAF;
    match leaf {
        4 => subleaf < NR_CACHE,
        7 => subleaf < NR_FEAT,
        0xb => subleaf < NR_TOPO,
        0xd => subleaf < NR_XSTATE,
        l if l < NR_BASIC => subleaf == n,
        0x4000_0000 | 0x4000_0100 => subleaf == n,
        l if (0x8000_0000..0x8000_0000 + NR_EXTD).contains(&l) => subleaf == n,
        _ => false,
    }
}

/// A toolstack's policy for a domain (`domctl set_cpu_policy`), checked as
/// Xen 4.17's `update_domain_cpu_policy` does against `max`, the CPU keel
/// shows guests: more than Xen serialises is -E2BIG; a leaf, subleaf or
/// MSR outside Xen's policy -ERANGE; MSR flags -EINVAL; a platform-info
/// value wider than 32 bits -EOVERFLOW; maximum leaves (basic, leaf 7's
/// subleaves, extended) or platform-info bits beyond `max` -EINVAL. Leaves
/// not given keep their values in `base`, the domain's policy so far (Xen
/// merges the given leaves into it).
///
/// Returns the featureset the domain is then shown: the policy's feature
/// words, each narrowed to `max`'s (Xen's `recalculate_cpuid_policy`
/// clamps rather than refuses). The rest of the policy (topology, cache
/// and XSAVE sizes, brand, maximum leaves below `max`'s) is checked but
/// not applied: keel's CPUID computes those itself.
pub fn set_policy(
    max: &impl Fn(u32, u32) -> [u32; 4],
    base: &impl Fn(u32, u32) -> [u32; 4],
    leaves: &[CpuidLeaf],
    msrs: &[MsrEntry],
) -> Result<[u32; FEATURESET_WORDS], PolicyError> {
    if leaves.len() as u32 > MAX_SERIALISED_LEAVES || msrs.len() as u32 > MAX_SERIALISED_MSRS {
        return Err(PolicyError::new(Errno::E2BIG));
    }
    for l in leaves {
        if !in_range(l.leaf, l.subleaf) {
            return Err(PolicyError::leaf(Errno::ERANGE, l.leaf, l.subleaf));
        }
    }
    for m in msrs {
        if m.flags != 0 {
            return Err(PolicyError::msr(Errno::EINVAL, m.idx));
        }
        match m.idx {
            MSR_INTEL_PLATFORM_INFO if m.val > u64::from(u32::MAX) => {
                return Err(PolicyError::msr(Errno::EOVERFLOW, m.idx));
            }
            // keel offers no platform-info bits (the MSR is #GP).
            MSR_INTEL_PLATFORM_INFO if m.val != 0 => {
                return Err(PolicyError::msr(Errno::EINVAL, m.idx));
            }
            // Not audited by Xen 4.17; keel shows none (clamped).
            MSR_INTEL_PLATFORM_INFO | MSR_ARCH_CAPABILITIES => {}
            _ => return Err(PolicyError::msr(Errno::ERANGE, m.idx)),
        }
    }
    // The last entry for a leaf wins, as in Xen's copy into its arrays.
    let given = |leaf: u32, sub: u32| {
        leaves
            .iter()
            .rev()
            .find(|l| {
                l.leaf == leaf && (l.subleaf == sub || l.subleaf == CPUID_NO_SUBLEAF && sub == 0)
            })
            .map_or_else(|| base(leaf, sub), |l| [l.a, l.b, l.c, l.d])
    };
    let n = CPUID_NO_SUBLEAF;
    if given(0, 0)[0] > max(0, 0)[0] {
        return Err(PolicyError::leaf(Errno::EINVAL, 0, n));
    }
    if given(7, 0)[0] > max(7, 0)[0] {
        return Err(PolicyError::leaf(Errno::EINVAL, 7, 0));
    }
    if given(0x8000_0000, 0)[0] > max(0x8000_0000, 0)[0] {
        return Err(PolicyError::leaf(Errno::EINVAL, 0x8000_0000, n));
    }
    let want = featureset(&given);
    let can = featureset(max);
    Ok(core::array::from_fn(|w| want[w] & can[w]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A made-up CPU: basic leaves to 0x16, leaf 7 with subleaves 0-1,
    /// four caches, two topology levels, x87/SSE/AVX (XCR0 = 7) and no
    /// XSS, extended leaves to 0x8000_0008.
    fn cpu(leaf: u32, sub: u32) -> [u32; 4] {
        match (leaf, sub) {
            (0, _) => [0x16, 1, 2, 3],
            (1, _) => [0x906ea, 0x0010_0800, 0xfffa_3203, 0x178b_fbff],
            (4, s) if s < 4 => [0x121 + s * 0x20, 0, 0, 0],
            (4, _) => [0; 4],
            (7, 0) => [1, 0x29c6fbf, 0x4000_0000, 0xbc00_0400],
            (7, 1) => [0x10, 0, 0, 0],
            (7, _) => [0; 4],
            (0xb, 0) => [1, 1, 0x100, 0],
            (0xb, 1) => [4, 4, 0x201, 0],
            (0xb, _) => [0, 0, sub, 0],
            (0xd, 0) => [7, 0x340, 0x340, 0],
            (0xd, 1) => [1, 0, 0, 0],
            (0xd, 2) => [0x100, 0x240, 0, 0],
            (0x8000_0000, _) => [0x8000_0008, 0, 0, 0],
            (0x8000_0001, _) => [0, 0, 0x121, 0x2c10_0800],
            (0x8000_0008, _) => [0x3027, 0x200, 0, 0],
            (l, _) if (0x4000_0000..0x8000_0000).contains(&l) => panic!("Xen leaf {l:#x} read"),
            _ => [leaf, sub, 0, 0],
        }
    }

    #[test]
    fn serialised_leaves_follow_xens_order_and_bounds() {
        let v = leaves(&cpu, MAX_SERIALISED_LEAVES).unwrap();
        let ids: Vec<(u32, u32)> = v.iter().map(|l| (l.leaf, l.subleaf)).collect();
        let n = CPUID_NO_SUBLEAF;
        let mut want = vec![(0, n), (1, n), (2, n), (3, n)];
        // Leaf 4: the four caches and the null entry after them.
        want.extend((0..5).map(|s| (4, s)));
        want.extend([(5, n), (6, n), (7, 0), (7, 1), (8, n), (9, n), (0xa, n)]);
        // Leaf 0xb: both levels, then the invalid one (NR_TOPO = 2 caps it).
        want.extend([(0xb, 0), (0xb, 1), (0xc, n)]);
        // Leaf 0xd: 0, 1 and component 2 (AVX): XCR0 = 7.
        want.extend([(0xd, 0), (0xd, 1), (0xd, 2)]);
        // Basic leaves stop at 0xd although the CPU has 0x16.
        want.extend([(0x4000_0000, n), (0x4000_0100, n)]);
        want.extend((0..=8).map(|i| (0x8000_0000 + i, n)));
        assert_eq!(ids, want);
        assert!(v.len() as u32 <= MAX_SERIALISED_LEAVES);
        assert_eq!(MAX_SERIALISED_LEAVES, 120);
        let l7 = &v[ids.iter().position(|&x| x == (7, 0)).unwrap()];
        assert_eq!(
            (l7.a, l7.b, l7.c, l7.d),
            (1, 0x29c6fbf, 0x4000_0000, 0xbc00_0400)
        );
        // Too small a buffer: -ENOBUFS, as Xen.
        assert_eq!(leaves(&cpu, 10).unwrap_err(), Errno::ENOBUFS);
        assert_eq!(leaves(&cpu, v.len() as u32).unwrap().len(), v.len());
    }

    #[test]
    fn featureset_words_come_from_their_leaves() {
        let f = featureset(&cpu);
        assert_eq!(f[0], 0x178b_fbff); // 1.EDX
        assert_eq!(f[1], 0xfffa_3203); // 1.ECX
        assert_eq!(f[3], 0x121); // e1.ECX
        assert_eq!(f[5], 0x29c6fbf); // 7.0.EBX
        assert_eq!(f[9], 0xbc00_0400); // 7.0.EDX
        assert_eq!(f[10], 0x10); // 7.1.EAX
        assert_eq!(f[8], 0x200); // e8.EBX
                                 // 7.2 is past leaf 7's highest subleaf (1); 0x8000_0021 past the
                                 // highest extended leaf; words 16-17 are MSR halves.
        assert_eq!((f[13], f[11], f[18], f[16], f[17]), (0, 0, 0, 0, 0));
    }

    #[test]
    fn msrs_are_the_two_xen_serialises() {
        let m = msrs(2).unwrap();
        assert_eq!(
            m.iter()
                .map(|e| (e.idx, e.flags, e.val))
                .collect::<Vec<_>>(),
            [(0xce, 0, 0), (0x10a, 0, 0)]
        );
        assert_eq!(msrs(1).unwrap_err(), Errno::ENOBUFS);
    }

    #[test]
    fn a_policy_masks_feature_words_but_not_the_dynamic_bits() {
        let mut f = featureset(&cpu);
        f[1] = 0; // 1.ECX
        f[5] &= !1; // 7.0.EBX bit 0
        let r1 = apply_features(1, 0, [1, 2, 0xffff_ffff, 0xffff_ffff], &f);
        // OSXSAVE (bit 27) follows CR4, not the policy.
        assert_eq!(r1, [1, 2, 1 << 27, 0x178b_fbff]);
        // Leaf 1 has no subleaves: any ECX reads the same.
        assert_eq!(apply_features(1, 9, r1, &f), r1);
        assert_eq!(
            apply_features(7, 0, [1, 0xff, 0, 0], &f),
            [1, 0xff & 0x29c6fbf & !1, 0, 0]
        );
        // Leaf 7 subleaf 3 is no featureset word: untouched.
        assert_eq!(apply_features(7, 3, [9; 4], &f), [9; 4]);
        // Not a feature leaf.
        assert_eq!(apply_features(0xb, 0, [5; 4], &f), [5; 4]);
    }

    #[test]
    fn set_policy_merges_checks_and_clamps() {
        let l = |leaf, subleaf, c| CpuidLeaf {
            leaf,
            subleaf,
            a: 0,
            b: 0,
            c,
            d: 0x178b_fbff,
        };
        // 1.ECX narrowed to bit 0 plus a bit the CPU lacks (clamped).
        let f = set_policy(&cpu, &cpu, &[l(1, CPUID_NO_SUBLEAF, 1 | 1 << 2)], &[]).unwrap();
        assert_eq!(f[1], 1 & 0xfffa_3203);
        assert_eq!(f[0], 0x178b_fbff);
        // Untouched words keep the base's.
        assert_eq!(f[5], 0x29c6fbf);
        let e = set_policy(&cpu, &cpu, &[l(0x4000_0001, CPUID_NO_SUBLEAF, 0)], &[]).unwrap_err();
        assert_eq!((e.errno, e.leaf), (Errno::ERANGE, 0x4000_0001));
        let many = vec![l(1, CPUID_NO_SUBLEAF, 0); MAX_SERIALISED_LEAVES as usize + 1];
        assert_eq!(
            set_policy(&cpu, &cpu, &many, &[]).unwrap_err().errno,
            Errno::E2BIG
        );
    }
}
