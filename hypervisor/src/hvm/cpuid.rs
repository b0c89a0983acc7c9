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

/// CPUID `leaf`/`sub` as the guest sees it.
pub fn guest_cpuid(
    leaf: u32,
    sub: u32,
    vcpu_id: u32,
    domid: u16,
    native: impl Fn(u32, u32) -> [u32; 4],
) -> [u32; 4] {
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
        _ => {
            let [mut a, b, mut c, mut d] = native(leaf, sub);
            // No machine-check architecture is offered (no MCG MSRs).
            const MCE_MCA: u32 = (1 << 7) | (1 << 14);
            match leaf {
                // Hypervisor present; x2APIC (keel's virtual local APIC is
                // x2APIC-only); no nested VMX; no MONITOR/MWAIT (TCG raises
                // #GP on MWAIT hints).
                1 => {
                    c = (c | (1 << 31) | (1 << 21)) & !(1 << 5) & !(1 << 3);
                    d &= !MCE_MCA;
                }
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
#[cfg(target_os = "none")]
pub fn emulate(v: &mut dyn super::vcpu::Vcpu, vcpu_id: u32, domid: u16, len: u8) {
    let r = v.regs_mut();
    let [a, b, c, d] = guest_cpuid(r.rax as u32, r.rcx as u32, vcpu_id, domid, |l, s| {
        let x = core::arch::x86_64::__cpuid_count(l, s);
        [x.eax, x.ebx, x.ecx, x.edx]
    });
    (r.rax, r.rbx, r.rcx, r.rdx) = (a as u64, b as u64, c as u64, d as u64);
    v.skip(len);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(leaf: u32, _sub: u32) -> [u32; 4] {
        match leaf {
            1 => [0x800f12, 0, 0x7ed8_320b | (1 << 5) | (1 << 3), 0x178b_fbff],
            0x8000_0001 => [0, 0, 0x75c2_37ff, 0x2fd3_fbff],
            0x8000_000a => [1, 16, 0, 1],
            _ => [leaf, 1, 2, 3],
        }
    }

    #[test]
    fn xen_leaves() {
        let l0 = guest_cpuid(0x4000_0000, 0, 0, 0, host);
        let mut sig = Vec::new();
        for r in &l0[1..] {
            sig.extend_from_slice(&r.to_le_bytes());
        }
        assert_eq!(&sig, b"XenVMMXenVMM");
        assert!(l0[0] >= 0x4000_0002, "Linux needs at least base + 2");
        assert_eq!(guest_cpuid(0x4000_0001, 0, 0, 0, host)[0], 0x0004_0011);
        assert_eq!(
            guest_cpuid(0x4000_0002, 0, 0, 0, host)[1],
            HYPERCALL_PAGE_MSR
        );
        assert_eq!(guest_cpuid(0x4000_0004, 0, 3, 7, host), [0x18, 3, 7, 0]);
    }

    #[test]
    fn host_leaves_adjusted() {
        let l1 = guest_cpuid(1, 0, 0, 0, host);
        assert!(l1[2] & (1 << 31) != 0, "hypervisor bit");
        assert!(l1[2] & (1 << 21) != 0, "x2APIC");
        assert_eq!(l1[3] & ((1 << 7) | (1 << 14)), 0, "no MCE/MCA");
        assert_eq!(l1[2] & ((1 << 5) | (1 << 3)), 0, "no VMX, no MONITOR");
        assert_eq!(
            guest_cpuid(0x8000_0001, 0, 0, 0, host)[2] & (1 << 2),
            0,
            "no SVM"
        );
        assert_eq!(guest_cpuid(0x8000_000a, 0, 0, 0, host)[0], 0);
        assert_eq!(guest_cpuid(7, 0, 0, 0, host), [7, 1, 2, 3]);
    }
}
