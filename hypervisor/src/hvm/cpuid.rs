//! What guests see from CPUID: the host's leaves with virtualization and
//! hypervisor bits adjusted, plus Xen's hypervisor leaves at 0x4000_0000
//! (keel speaks the Xen ABI, so it says so the way Xen does). Pure: the
//! host's CPUID comes in as a function, so this is tested on the host.

/// Highest hypervisor leaf keel answers.
pub const MAX_LEAF: u32 = 0x4000_0004;
/// Xen version keel reports (the ABI level it follows): 4.17.
pub const XEN_MAJOR: u32 = 4;
pub const XEN_MINOR: u32 = 17;
/// The MSR through which a guest asks for the hypercall page.
pub const HYPERCALL_PAGE_MSR: u32 = 0x4000_0000;

// Leaf 0x4000_0004 EAX bits (public/arch-x86/cpuid.h).
const HVM_VCPU_ID_PRESENT: u32 = 1 << 3;
const HVM_DOMID_PRESENT: u32 = 1 << 4;

/// Who is asking: the parts of the answer that depend on the vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ctx {
    /// The vCPU's number (Xen's vcpu_id, in leaf 0x4000_0004).
    pub vcpu_id: u32,
    /// Its (x2)APIC ID.
    pub apic_id: u32,
    pub domid: u16,
    /// The guest's XCR0 (XSAVE sizes depend on it).
    pub xcr0: u64,
    /// The guest's CR4.OSXSAVE (mirrored in leaf 1 ECX bit 27).
    pub osxsave: bool,
    /// The domain's shape: see [`Topology`].
    pub topo: Topology,
    /// The featureset the toolstack's CPU policy narrowed the domain to
    /// (`domctl set_cpu_policy`), if it set one.
    pub features: Option<crate::domain::toolstate::Features>,
    /// Whether the CPU's XSAVEC may be offered (`fpu::xsavec_works`).
    pub xsavec: bool,
}

impl Ctx {
    /// vCPU `vcpu_id` of a domain whose vCPUs are 0..=vcpu_id, with APIC
    /// IDs equal to their numbers.
    pub fn new(vcpu_id: u32, domid: u16) -> Self {
        Ctx {
            vcpu_id,
            apic_id: vcpu_id,
            domid,
            xcr0: 1,
            osxsave: false,
            topo: Topology::new(vcpu_id + 1, vcpu_id),
            features: None,
            xsavec: true,
        }
    }
}

/// The CPU topology a domain sees, whatever the host's: one package, one
/// die, `vcpus` cores of one thread each, sharing the last-level cache.
/// APIC IDs are the domain's own (dom0 keeps the host's, which may be
/// sparse), so the core field is wide enough for the highest one.
///
/// Every topology leaf says the same: 1 (EBX[23:16], EDX.HTT), 4 (Intel
/// caches), 0xB and 0x1F (x2APIC levels), 0x8000_0008 ECX (AMD core
/// count), 0x8000_001D (AMD caches) and 0x8000_001E (AMD core/node IDs).
/// Passing the host's values through would describe the host's package
/// with the guest's vCPU count, which Linux reports as firmware bugs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Topology {
    pub vcpus: u32,
    /// log2 of the APIC ID space of the package: every APIC ID of the
    /// domain is below `1 << core_bits`.
    pub core_bits: u32,
}

impl Topology {
    /// `vcpus` vCPUs whose highest APIC ID is `max_apic_id`.
    pub fn new(vcpus: u32, max_apic_id: u32) -> Self {
        let span = vcpus.max(max_apic_id.saturating_add(1)).max(1);
        Topology {
            vcpus: vcpus.max(1),
            core_bits: span.next_power_of_two().trailing_zeros(),
        }
    }

    /// `1 << core_bits`, the package's addressable IDs.
    fn span(&self) -> u32 {
        1 << self.core_bits.min(31)
    }

    /// Leaves 0xB and 0x1F: an SMT level of one thread, then the core
    /// level holding every vCPU, then the invalid level that ends the list.
    fn extended(&self, sub: u32, x2apic_id: u32) -> [u32; 4] {
        const SMT: u32 = 1 << 8;
        const CORE: u32 = 2 << 8;
        match sub {
            0 => [0, 1, SMT, x2apic_id],
            1 => [self.core_bits, self.vcpus & 0xffff, CORE | 1, x2apic_id],
            _ => [0, 0, sub & 0xff, x2apic_id],
        }
    }

    /// A deterministic cache leaf (4 or 0x8000_001D) with its sharing
    /// fields rewritten: L1 and L2 belong to one core (one thread), the
    /// L3 to the package. Leaf 4 also carries the cores per package.
    fn cache(&self, r: [u32; 4], intel_leaf4: bool) -> [u32; 4] {
        let [mut a, b, c, d] = r;
        if a & 0x1f == 0 {
            return r; // no cache at this index: the list ends here
        }
        let level = (a >> 5) & 7;
        let sharing = if level >= 3 { self.span() - 1 } else { 0 };
        a = (a & !(0xfff << 14)) | ((sharing & 0xfff) << 14);
        if intel_leaf4 {
            a = (a & 0x03ff_ffff) | (((self.span() - 1) & 0x3f) << 26);
        }
        [a, b, c, d]
    }
}

/// The XSAVE leaf (0xD) for the guest's XCR0. The host's CPUID would size
/// the area for whatever XCR0 and IA32_XSS keel has loaded; Linux checks
/// these sizes against the per-component offsets and refuses XSAVE (and
/// then its userspace takes #UD) when they disagree. keel offers no XSAVES
/// (it does not virtualize IA32_XSS), so no supervisor components either.
fn xsave_leaf(
    sub: u32,
    xcr0: u64,
    xsavec: bool,
    native: &impl Fn(u32, u32) -> [u32; 4],
) -> [u32; 4] {
    const LEGACY_AND_HEADER: u32 = 512 + 64;
    let user = |i: u32| (2..63).contains(&i) && xcr0 & (1 << i) != 0;
    match sub {
        0 => {
            let [a, _, c, d] = native(0xd, 0);
            let size = (2..63)
                .filter(|&i| user(i))
                .map(|i| {
                    let [sz, off, _, _] = native(0xd, i);
                    off + sz
                })
                .fold(LEGACY_AND_HEADER, u32::max);
            [a, size, c, d]
        }
        1 => {
            // XSAVEOPT, XSAVEC and XGETBV with ECX=1 stay; XSAVES goes, and
            // XSAVEC where the CPU's is broken (`Ctx::xsavec`).
            let [mut a, _, _, _] = native(0xd, 1);
            if !xsavec {
                a &= !(1 << 1);
            }
            let size = (2..63)
                .filter(|&i| user(i))
                .fold(LEGACY_AND_HEADER, |at, i| {
                    let [sz, _, flags, _] = native(0xd, i);
                    let at = if flags & 2 != 0 { (at + 63) & !63 } else { at };
                    at + sz
                });
            [a & !(1 << 3), size, 0, 0]
        }
        _ => {
            let r = native(0xd, sub);
            // Supervisor (IA32_XSS) components are not offered.
            if r[2] & 1 != 0 {
                [0; 4]
            } else {
                r
            }
        }
    }
}

/// CPUID 7.0 EDX bits that promise speculation-control MSRs (see
/// [`guest_cpuid`]).
const SPEC_CTRL_LEAF7_EDX: u32 = 0xfc00_0000;
/// CPUID 0x8000_0008 EBX bits that promise them on AMD: IBPB (12), IBRS
/// (14), STIBP (15), STIBP always on (17), IBRS preferred (18), IBRS same
/// mode (19), SSBD (24), VIRT_SSBD (25), IBPB_BRTYPE (28).
const SPEC_CTRL_AMD_EBX: u32 = (1 << 12)
    | (1 << 14)
    | (1 << 15)
    | (1 << 17)
    | (1 << 18)
    | (1 << 19)
    | (1 << 24)
    | (1 << 25)
    | (1 << 28);

/// CPUID `leaf`/`sub` as the guest sees it.
pub fn guest_cpuid(
    leaf: u32,
    sub: u32,
    ctx: &Ctx,
    native: impl Fn(u32, u32) -> [u32; 4],
) -> [u32; 4] {
    let (vcpu_id, apic_id, domid) = (ctx.vcpu_id, ctx.apic_id, ctx.domid);
    let sig = |s: &[u8; 4]| u32::from_le_bytes(*s);
    match leaf {
        0x4000_0000 => [MAX_LEAF, sig(b"XenV"), sig(b"MMXe"), sig(b"nVMM")],
        0x4000_0001 => [(XEN_MAJOR << 16) | XEN_MINOR, 0, 0, 0],
        // One hypercall page, requested through HYPERCALL_PAGE_MSR.
        0x4000_0002 => [1, HYPERCALL_PAGE_MSR, 0, 0],
        // Time leaf: no TSC scaling information offered.
        0x4000_0003 => [0; 4],
        0x4000_0004 => [
            HVM_VCPU_ID_PRESENT | HVM_DOMID_PRESENT,
            vcpu_id,
            domid as u32,
            0,
        ],
        0x4000_0005..=0x4000_00ff => [0; 4],
        0xd => xsave_leaf(sub, ctx.xcr0, ctx.xsavec, &native),
        // MONITOR/MWAIT is not offered (leaf 1 ECX[3]), so neither is its leaf.
        5 => [0; 4],
        4 => ctx.topo.cache(native(4, sub), true),
        0x8000_001d => ctx.topo.cache(native(0x8000_001d, sub), false),
        0xb | 0x1f if leaf <= native(0, 0)[0] => ctx.topo.extended(sub, apic_id),
        // Core and node IDs (AMD): one node, one thread per core, the core
        // numbered as in the APIC ID.
        0x8000_001e if leaf <= native(0x8000_0000, 0)[0] => [apic_id, apic_id & 0xff, 0, 0],
        // No memory encryption (SME/SEV) for guests: Linux's early
        // sme_enable reads MSR_AMD64_SEV, unguarded, when this offers it.
        0x8000_001f => [0; 4],
        _ => {
            let [mut a, mut b, mut c, mut d] = native(leaf, sub);
            // No machine-check architecture is offered (no MCG MSRs).
            const MCE_MCA: u32 = (1 << 7) | (1 << 14);
            match leaf {
                // Hypervisor present; x2APIC (keel's virtual local APIC is
                // x2APIC-only); no nested VMX; no MONITOR/MWAIT (TCG raises
                // #GP on MWAIT hints). The initial APIC ID is the vCPU's;
                // OSXSAVE mirrors the guest's CR4, not keel's.
                1 => {
                    // No PDCM either (IA32_PERF_CAPABILITIES is the host's).
                    c = (c | (1 << 31) | (1 << 21)) & !(1 << 5) & !(1 << 3) & !(1 << 15);
                    c = (c & !(1 << 27)) | ((ctx.osxsave as u32) << 27);
                    // No thermal monitoring (ACPI, TM): its MSRs are the
                    // host's business.
                    d &= !MCE_MCA & !(1 << 22) & !(1 << 29);
                    // EBX[23:16] counts the package's addressable IDs and
                    // is valid when HTT is set.
                    let ids = ctx.topo.span().min(0xff);
                    b = (b & 0xffff) | (ids << 16) | (apic_id << 24);
                    d = (d & !(1 << 28)) | (((ctx.topo.vcpus > 1) as u32) << 28);
                }
                // Power management: only the always-running APIC timer;
                // no APERF/MPERF, energy-performance bias or HWP MSRs.
                6 => (a, b, c, d) = (a & (1 << 2), 0, 0, 0),
                // No nested SVM, no MONITORX/MWAITX (ECX[29]: Linux on AMD
                // would use MWAITX for udelay, with interrupts off); AMD
                // mirrors MCE/MCA here.
                0x8000_0001 => {
                    c &= !(1 << 2) & !(1 << 29);
                    d &= !MCE_MCA;
                }
                // AMD core count: NC (ECX[7:0]) and the APIC ID bits that
                // number cores (ECX[15:12]).
                // Speculation controls: keel does not virtualize
                // IA32_SPEC_CTRL, PRED_CMD, FLUSH_CMD, ARCH_CAPABILITIES or
                // CORE_CAPABILITIES (a guest's RDMSR/WRMSR of them #GPs), so
                // the bits that promise them are not offered: IBRS/IBPB
                // (26), STIBP (27), L1D_FLUSH (28), ARCH_CAPABILITIES (29),
                // CORE_CAPABILITIES (30), SSBD (31); subleaf 2's EDX holds
                // only SPEC_CTRL controls. Linux writes SPEC_CTRL unguarded
                // where CPUID offers it.
                7 if sub == 0 => d &= !SPEC_CTRL_LEAF7_EDX,
                7 if sub == 2 => d = 0,
                0x8000_0008 => {
                    // AMD's: IBPB, IBRS, STIBP and their hints, SSBD and
                    // VIRT_SSBD, IBPB_BRTYPE.
                    b &= !SPEC_CTRL_AMD_EBX;
                    let t = ctx.topo;
                    c = (c & !0xf0ff) | ((t.core_bits & 0xf) << 12) | ((t.vcpus - 1) & 0xff);
                }
                0x8000_000a => a = 0,
                _ => {}
            }
            [a, b, c, d]
        }
    }
}

/// Leaves indexed by ECX (the rest ignore it).
pub fn has_subleaves(leaf: u32) -> bool {
    matches!(
        leaf,
        4 | 7 | 0xb | 0xd | 0xf | 0x10 | 0x12 | 0x14 | 0x17 | 0x18 | 0x1d | 0x1e | 0x1f | 0x20
    ) || matches!(leaf, 0x8000_001d | 0x8000_0020 | 0x8000_0026)
}

/// The leaf/subleaf pairs `cpuid_dump` prints for a CPU whose highest
/// basic and extended leaves are `max_basic` and `max_ext`: every leaf,
/// and subleaves 0-31 of the ECX-indexed ones. The output is what the
/// host tests' CPU models (`cpuid/*.txt`) were recorded from.
pub fn dump_list(max_basic: u32, max_ext: u32) -> impl Iterator<Item = (u32, u32)> {
    let basic = 0..=max_basic.min(0x3f);
    let ext = 0x8000_0000..=max_ext.clamp(0x8000_0000, 0x8000_003f);
    basic.chain(ext).flat_map(|leaf| {
        let subs = if has_subleaves(leaf) { 32 } else { 1 };
        (0..subs).map(move |sub| (leaf, sub))
    })
}

/// Prints the host's CPUID (`cpuid_dump` on keel's command line), one
/// `cpuid LEAF.SUB: EAX EBX ECX EDX` line each, in the format the host
/// tests read back.
pub fn dump_host() {
    let raw = |l: u32, s: u32| {
        let x = core::arch::x86_64::__cpuid_count(l, s);
        [x.eax, x.ebx, x.ecx, x.edx]
    };
    let (max_basic, max_ext) = (raw(0, 0)[0], raw(0x8000_0000, 0)[0]);
    for (leaf, sub) in dump_list(max_basic, max_ext) {
        let [a, b, c, d] = raw(leaf, sub);
        if sub > 0 && [a, b, c, d] == [0; 4] {
            continue;
        }
        log::info!("cpuid {leaf:08x}.{sub:02x}: {a:08x} {b:08x} {c:08x} {d:08x}");
    }
}

/// Serves a CPUID exit: the guest's view of the leaf in RAX/RCX, then skip.
/// `ctx.osxsave` is taken from the vCPU's CR4 here, and `ctx.xcr0` from
/// the CPU: keel leaves the guest's XCR0 loaded across exits (AMD-V need
/// not even intercept XSETBV), so XGETBV reads the guest's value.
pub fn emulate(v: &mut dyn super::vcpu::Vcpu, ctx: Ctx, len: u8) {
    #[cfg(target_os = "none")]
    let host_osxsave = crate::arch::x86::cpu::read_cr4() & (1 << 18) != 0;
    #[cfg(not(target_os = "none"))]
    let host_osxsave = false;
    #[cfg(target_os = "none")]
    let xsavec = crate::arch::x86::fpu::xsavec_works();
    #[cfg(not(target_os = "none"))]
    let xsavec = true;
    let ctx = Ctx {
        xsavec,
        osxsave: v.control_regs()[2] & (1 << 18) != 0,
        xcr0: if host_osxsave {
            let (lo, hi): (u32, u32);
            // SAFETY: XGETBV with ECX = 0 is valid once CR4.OSXSAVE is set;
            // it only reads XCR0.
            unsafe {
                core::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack))
            };
            (hi as u64) << 32 | lo as u64
        } else {
            ctx.xcr0
        },
        ..ctx
    };
    let r = v.regs_mut();
    let (leaf, sub) = (r.rax as u32, r.rcx as u32);
    let mut regs = guest_cpuid(leaf, sub, &ctx, |l, s| {
        let x = core::arch::x86_64::__cpuid_count(l, s);
        [x.eax, x.ebx, x.ecx, x.edx]
    });
    if let Some(f) = &ctx.features {
        regs = crate::xen::cpu_policy::apply_features(leaf, sub, regs, f);
    }
    let [a, b, c, d] = regs;
    (r.rax, r.rbx, r.rcx, r.rdx) = (a as u64, b as u64, c as u64, d as u64);
    v.skip(len);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(vcpu: u32, dom: u16) -> Ctx {
        Ctx::new(vcpu, dom)
    }

    /// A host like Bochs' skylake_x: x87, SSE, AVX, MPX (3, 4), AVX-512
    /// (5-7), and a supervisor component (8, PT) in IA32_XSS.
    fn host(leaf: u32, sub: u32) -> [u32; 4] {
        match (leaf, sub) {
            (0xd, 0) => [0xff, 2432, 2688, 0],
            (0xd, 1) => [0xf, 9999, 0x100, 0],
            (0xd, 2) => [256, 576, 0, 0],
            (0xd, 3) => [64, 960, 0, 0],
            (0xd, 4) => [64, 1024, 0, 0],
            (0xd, 5) => [64, 1088, 0, 0],
            (0xd, 6) => [512, 1152, 0, 0],
            (0xd, 7) => [1024, 1664, 0, 0],
            (0xd, 8) => [128, 0, 1, 0],
            (0xd, _) => [0; 4],
            _ => host_leaf(leaf),
        }
    }

    fn host_leaf(leaf: u32) -> [u32; 4] {
        match leaf {
            0 => [0xd, 0, 0, 0],
            1 => [
                0x800f12,
                0x0301_0800,
                0x7ed8_320b | (1 << 5) | (1 << 3) | (1 << 27),
                0x178b_fbff,
            ],
            0x8000_0001 => [0, 0, 0x75c2_37ff, 0x2fd3_fbff],
            0x8000_000a => [1, 16, 0, 1],
            _ => [leaf, 1, 2, 3],
        }
    }

    #[test]
    fn xen_leaves() {
        let l0 = guest_cpuid(0x4000_0000, 0, &c(0, 0), host);
        let mut sig = Vec::new();
        for r in &l0[1..] {
            sig.extend_from_slice(&r.to_le_bytes());
        }
        assert_eq!(&sig, b"XenVMMXenVMM");
        assert!(l0[0] >= 0x4000_0002, "Linux needs at least base + 2");
        assert_eq!(guest_cpuid(0x4000_0001, 0, &c(0, 0), host)[0], 0x0004_0011);
        assert_eq!(
            guest_cpuid(0x4000_0002, 0, &c(0, 0), host)[1],
            HYPERCALL_PAGE_MSR
        );
        assert_eq!(guest_cpuid(0x4000_0004, 0, &c(3, 7), host), [0x18, 3, 7, 0]);
    }

    #[test]
    fn host_leaves_adjusted() {
        let l1 = guest_cpuid(1, 0, &c(0, 0), host);
        assert!(l1[2] & (1 << 31) != 0, "hypervisor bit");
        assert!(l1[2] & (1 << 21) != 0, "x2APIC");
        assert_eq!(l1[3] & ((1 << 7) | (1 << 14)), 0, "no MCE/MCA");
        assert_eq!(l1[3] & ((1 << 22) | (1 << 29)), 0, "no thermal monitor");
        assert_eq!(l1[2] & ((1 << 5) | (1 << 3)), 0, "no VMX, no MONITOR");
        assert_eq!(
            guest_cpuid(0x8000_0001, 0, &c(0, 0), host)[2] & (1 << 2),
            0,
            "no SVM"
        );
        assert_eq!(guest_cpuid(0x8000_000a, 0, &c(0, 0), host)[0], 0);
        assert_eq!(
            guest_cpuid(0x8000_001f, 0, &c(0, 0), host),
            [0; 4],
            "no SME/SEV"
        );
        assert_eq!(guest_cpuid(7, 0, &c(0, 0), host), [7, 1, 2, 3]);
    }

    #[test]
    fn speculation_controls_without_their_msrs_are_not_offered() {
        let all = |_: u32, _: u32| [u32::MAX; 4];
        let l7 = guest_cpuid(7, 0, &c(0, 0), all);
        assert_eq!(
            l7[3] >> 26,
            0,
            "IBRS, STIBP, L1D_FLUSH, ARCH_CAPS, CORE_CAPS, SSBD"
        );
        assert_eq!(
            l7[3] & 0x03ff_ffff,
            0x03ff_ffff,
            "the rest (MD_CLEAR...) stays"
        );
        assert_eq!(l7[0..3], [u32::MAX; 3]);
        assert_eq!(guest_cpuid(7, 2, &c(0, 0), all)[3], 0);
        assert_eq!(guest_cpuid(7, 1, &c(0, 0), all)[3], u32::MAX);
        let amd = guest_cpuid(0x8000_0008, 0, &c(0, 0), all)[1];
        assert_eq!(amd & SPEC_CTRL_AMD_EBX, 0);
        assert_eq!(amd & (1 << 26), 1 << 26, "SSB_NO is a fact, not a control");
    }

    #[test]
    fn per_vcpu_ids_and_osxsave() {
        let l1 = guest_cpuid(1, 0, &c(1, 0), host);
        assert_eq!(l1[1] >> 24, 1, "initial APIC ID");
        assert_eq!(l1[1] & 0xffff, 0x0800, "CLFLUSH size and brand stay");
        assert_eq!((l1[1] >> 16) & 0xff, 2, "two addressable IDs");
        assert_eq!(l1[2] & (1 << 27), 0, "guest CR4.OSXSAVE is clear");
        let on = Ctx {
            osxsave: true,
            ..c(0, 0)
        };
        assert_ne!(guest_cpuid(1, 0, &on, host)[2] & (1 << 27), 0);
        assert_eq!(guest_cpuid(0xb, 0, &c(1, 0), host)[3], 1, "x2APIC ID");
    }

    /// A CPU model recorded with `cpuid_dump` (`cpu-models/*.txt`).
    struct Model(std::collections::BTreeMap<(u32, u32), [u32; 4]>);

    impl Model {
        fn load(text: &str) -> Model {
            let mut m = std::collections::BTreeMap::new();
            for line in text
                .lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
            {
                let (key, regs) = line.split_once(": ").expect("LEAF.SUB: regs");
                let (leaf, sub) = key.split_once('.').unwrap();
                let hex = |s: &str| u32::from_str_radix(s, 16).unwrap();
                let r: Vec<u32> = regs.split(' ').map(hex).collect();
                m.insert((hex(leaf), hex(sub)), [r[0], r[1], r[2], r[3]]);
            }
            Model(m)
        }

        /// The CPU's answer: subleaves that were not recorded read 0;
        /// leaves without subleaves ignore ECX.
        fn cpuid(&self, leaf: u32, sub: u32) -> [u32; 4] {
            let sub = if has_subleaves(leaf) { sub } else { 0 };
            self.0.get(&(leaf, sub)).copied().unwrap_or([0; 4])
        }
    }

    fn models() -> [(&'static str, Model); 3] {
        [
            (
                "QEMU EPYC",
                Model::load(include_str!("cpu-models/qemu-epyc.txt")),
            ),
            (
                "Bochs corei7_skylake_x",
                Model::load(include_str!("cpu-models/bochs-skylake-x.txt")),
            ),
            (
                "Bochs ryzen",
                Model::load(include_str!("cpu-models/bochs-ryzen.txt")),
            ),
        ]
    }

    /// What a guest kernel works out from the topology leaves, the way
    /// Linux does, checked for agreement between the leaves. Returns each
    /// vCPU's (package, core, thread).
    fn read_topology(
        apic_ids: &[u32],
        cpu: &dyn Fn(u32, u32, u32) -> [u32; 4],
    ) -> Vec<(u32, u32, u32)> {
        let n = apic_ids.len() as u32;
        let max_apic = *apic_ids.iter().max().unwrap();
        let mut seen = Vec::new();
        for (i, &apic) in apic_ids.iter().enumerate() {
            let q = |leaf, sub| cpu(i as u32, leaf, sub);
            let (max_basic, max_ext) = (q(0, 0)[0], q(0x8000_0000, 0)[0]);
            let l1 = q(1, 0);
            assert_eq!(l1[1] >> 24, apic & 0xff, "leaf 1 initial APIC ID");
            let htt = l1[3] & (1 << 28) != 0;
            assert_eq!(htt, n > 1, "HTT iff more than one vCPU");
            let ids = (l1[1] >> 16) & 0xff;
            if htt {
                assert!(
                    ids.is_power_of_two() && ids > max_apic.min(0xfe),
                    "leaf 1 EBX[23:16] {ids}"
                );
            }
            assert_eq!(l1[2] & (1 << 3), 0, "no MONITOR");
            // x2APIC topology: SMT level of 1, core level of n.
            let mut shift = None;
            for leaf in [0xb, 0x1f].into_iter().filter(|&l| l <= max_basic) {
                let smt = q(leaf, 0);
                let core = q(leaf, 1);
                assert_eq!([smt[3], core[3]], [apic, apic], "{leaf:#x} x2APIC ID");
                assert_eq!((smt[2] >> 8) & 0xff, 1, "{leaf:#x}.0 is the SMT level");
                assert_eq!(
                    (smt[0] & 0x1f, smt[1] & 0xffff),
                    (0, 1),
                    "one thread per core"
                );
                assert_eq!((core[2] >> 8) & 0xff, 2, "{leaf:#x}.1 is the core level");
                assert_eq!(core[1] & 0xffff, n, "{leaf:#x}.1 counts every vCPU");
                assert_eq!((q(leaf, 2)[2] >> 8) & 0xff, 0, "{leaf:#x}.2 ends the list");
                let s = core[0] & 0x1f;
                assert!(shift.is_none_or(|x| x == s), "0xb and 0x1f agree");
                shift = Some(s);
            }
            // Intel caches: cores per package, sharing.
            for sub in 0..8 {
                let c = q(4, sub);
                if c[0] & 0x1f == 0 {
                    break;
                }
                let cores = (c[0] >> 26) + 1;
                assert!(
                    cores.is_power_of_two() && cores > max_apic,
                    "leaf 4 cores {cores}"
                );
                let sharing = ((c[0] >> 14) & 0xfff) + 1;
                match (c[0] >> 5) & 7 {
                    1 | 2 => assert_eq!(sharing, 1, "L1/L2 belong to one core"),
                    _ => assert!(sharing > max_apic, "the L3 is shared by all"),
                }
            }
            // AMD: core count, core IDs, caches.
            if max_ext >= 0x8000_0008 && q(0x8000_0000, 0)[1] == u32::from_le_bytes(*b"Auth") {
                let c = q(0x8000_0008, 0)[2];
                assert_eq!((c & 0xff) + 1, n, "0x8000_0008 NC");
                // ApicIdSize; 0 means "count NC's bits" (Linux does).
                let size = match (c >> 12) & 0xf {
                    0 => n.next_power_of_two().trailing_zeros(),
                    s => s,
                };
                assert!(1 << size > max_apic, "ApicIdSize {size}");
                assert_eq!(shift.unwrap_or(size), size, "ApicIdSize agrees with 0xb");
                shift = Some(size);
            }
            assert_eq!(q(0x8000_0001, 0)[2] & (1 << 29), 0, "no MONITORX");
            let topoext = q(0x8000_0001, 0)[2] & (1 << 22) != 0;
            let mut core = apic;
            if topoext && max_ext >= 0x8000_001e {
                let e = q(0x8000_001e, 0);
                assert_eq!(e[0], apic, "0x8000_001e extended APIC ID");
                assert_eq!((e[1] >> 8) & 0xff, 0, "one thread per core");
                assert_eq!(e[2] & 0x7ff, 0, "one node, node 0");
                core = e[1] & 0xff;
            }
            if topoext {
                for sub in 0..8 {
                    let c = q(0x8000_001d, sub);
                    if c[0] & 0x1f == 0 {
                        break;
                    }
                    let sharing = ((c[0] >> 14) & 0xfff) + 1;
                    match (c[0] >> 5) & 7 {
                        1 | 2 => assert_eq!(sharing, 1, "L1/L2 belong to one core"),
                        _ => assert!(sharing > max_apic, "the L3 is shared by all"),
                    }
                }
            }
            let shift = shift.unwrap_or_else(|| ids.trailing_zeros());
            seen.push((apic >> shift, core, 0));
        }
        seen
    }

    /// Leaves 1, 4, 0xB, 0x1F, 0x8000_0008, 0x8000_001D and 0x8000_001E
    /// agree, for every CPU model the tests run on and any vCPU count:
    /// one package, one core per vCPU, distinct cores.
    #[test]
    fn topology_is_consistent_on_every_model() {
        for (name, model) in models() {
            let ids = |n: u32| (0..n).collect::<Vec<u32>>();
            // dom0 keeps the host's APIC IDs, which may be sparse.
            let sparse = vec![0, 2, 4, 6];
            let cases = [ids(1), ids(2), ids(3), ids(4), ids(8), sparse];
            for apic_ids in cases {
                let n = apic_ids.len() as u32;
                let topo = Topology::new(n, *apic_ids.iter().max().unwrap());
                let cpu = |i: u32, leaf: u32, sub: u32| {
                    let ctx = Ctx {
                        apic_id: apic_ids[i as usize],
                        topo,
                        ..c(i, 0)
                    };
                    guest_cpuid(leaf, sub, &ctx, |l, s| model.cpuid(l, s))
                };
                let t = read_topology(&apic_ids, &cpu);
                let packages: std::collections::BTreeSet<u32> = t.iter().map(|x| x.0).collect();
                assert_eq!(packages.len(), 1, "{name}, {n} vCPUs: one package ({t:?})");
                let cores: std::collections::BTreeSet<(u32, u32)> =
                    t.iter().map(|x| (x.0, x.1)).collect();
                assert_eq!(cores.len(), n as usize, "{name}, {n} vCPUs: distinct cores");
            }
        }
    }

    /// The host's own values would not have passed: Bochs ryzen offers
    /// MONITORX and QEMU EPYC says two cores whatever the vCPU count.
    #[test]
    fn the_recorded_models_need_the_rewrite() {
        let [epyc, _, ryzen] = models();
        assert_ne!(ryzen.1.cpuid(0x8000_0001, 0)[2] & (1 << 29), 0);
        assert_eq!(epyc.1.cpuid(0xb, 1)[1], 2);
        assert_eq!(epyc.1.cpuid(0x8000_0008, 0)[2] & 0xff, 1);
    }

    #[test]
    fn xsave_sizes_follow_the_guest_xcr0() {
        // Linux enables x87|SSE|AVX|AVX-512 (no MPX): standard size 2688,
        // compacted 2432, whatever the host reported for its own XCR0.
        let ctx = Ctx {
            xcr0: 0xe7,
            ..c(0, 0)
        };
        let l0 = guest_cpuid(0xd, 0, &ctx, host);
        assert_eq!(l0, [0xff, 2688, 2688, 0]);
        let l1 = guest_cpuid(0xd, 1, &ctx, host);
        assert_eq!(l1[0] & (1 << 3), 0, "no XSAVES");
        assert_ne!(l1[0] & (1 << 1), 0, "XSAVEC where the CPU's works");
        let broken = Ctx {
            xsavec: false,
            ..ctx
        };
        assert_eq!(
            guest_cpuid(0xd, 1, &broken, host)[0],
            l1[0] & !(1 << 1),
            "no XSAVEC where it is broken, the rest as it was"
        );
        assert_eq!(l1[1], 576 + 256 + 64 + 512 + 1024);
        assert_eq!([l1[2], l1[3]], [0, 0], "no IA32_XSS components");
        assert_eq!(
            guest_cpuid(0xd, 8, &ctx, host),
            [0; 4],
            "supervisor state hidden"
        );
        assert_eq!(guest_cpuid(0xd, 2, &ctx, host), [256, 576, 0, 0]);
        // Before XSETBV (XCR0 = x87 only): the legacy area and header.
        assert_eq!(guest_cpuid(0xd, 0, &c(0, 0), host)[1], 576);
        // 64-byte alignment in the compacted form.
        let aligned = |leaf: u32, sub: u32| match (leaf, sub) {
            (0xd, 2) => [100, 576, 0, 0],
            (0xd, 5) => [64, 1088, 2, 0],
            _ => host(leaf, sub),
        };
        let x = Ctx { xcr0: 7, ..c(0, 0) };
        assert_eq!(guest_cpuid(0xd, 1, &x, aligned)[1], 576 + 100);
        let x = Ctx {
            xcr0: 0x27,
            ..c(0, 0)
        };
        assert_eq!(guest_cpuid(0xd, 1, &x, aligned)[1], 704 + 64);
    }
}
