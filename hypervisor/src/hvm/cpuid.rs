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
}

impl Ctx {
    pub fn new(vcpu_id: u32, domid: u16) -> Self {
        Ctx {
            vcpu_id,
            apic_id: vcpu_id,
            domid,
            xcr0: 1,
            osxsave: false,
        }
    }
}

/// The XSAVE leaf (0xD) for the guest's XCR0. The host's CPUID would size
/// the area for whatever XCR0 and IA32_XSS keel has loaded; Linux checks
/// these sizes against the per-component offsets and refuses XSAVE (and
/// then its userspace takes #UD) when they disagree. keel offers no XSAVES
/// (it does not virtualize IA32_XSS), so no supervisor components either.
fn xsave_leaf(sub: u32, xcr0: u64, native: &impl Fn(u32, u32) -> [u32; 4]) -> [u32; 4] {
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
            // XSAVEOPT, XSAVEC and XGETBV with ECX=1 stay; XSAVES goes.
            let [a, _, _, _] = native(0xd, 1);
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
        0xd => xsave_leaf(sub, ctx.xcr0, &native),
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
                    b = (b & 0x00ff_ffff) | (apic_id << 24);
                }
                // Power management: only the always-running APIC timer;
                // no APERF/MPERF, energy-performance bias or HWP MSRs.
                6 => (a, b, c, d) = (a & (1 << 2), 0, 0, 0),
                // Extended topology: the x2APIC ID is the vCPU's.
                0xb | 0x1f => d = apic_id,
                0x8000_001e => a = apic_id,
                // No nested SVM; AMD mirrors MCE/MCA here.
                0x8000_0001 => {
                    c &= !(1 << 2);
                    d &= !MCE_MCA;
                }
                0x8000_000a => a = 0,
                _ => {}
            }
            [a, b, c, d]
        }
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
    let ctx = Ctx {
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
    let [a, b, c, d] = guest_cpuid(r.rax as u32, r.rcx as u32, &ctx, |l, s| {
        let x = core::arch::x86_64::__cpuid_count(l, s);
        [x.eax, x.ebx, x.ecx, x.edx]
    });
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
    fn per_vcpu_ids_and_osxsave() {
        let l1 = guest_cpuid(1, 0, &c(1, 0), host);
        assert_eq!(l1[1] >> 24, 1, "initial APIC ID");
        assert_eq!(l1[1] & 0xff_ffff, 0x01_0800, "the rest of EBX stays");
        assert_eq!(l1[2] & (1 << 27), 0, "guest CR4.OSXSAVE is clear");
        let on = Ctx {
            osxsave: true,
            ..c(0, 0)
        };
        assert_ne!(guest_cpuid(1, 0, &on, host)[2] & (1 << 27), 0);
        assert_eq!(guest_cpuid(0xb, 0, &c(1, 0), host)[3], 1, "x2APIC ID");
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
