//! The VMCB (AMD APM vol. 2, appendix B): control area at 0x000, state-save
//! area at 0x400, typed with offsets asserted.

/// Control area (0x000..0x400).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Control {
    pub intercept_cr: u32,         // 0x000: reads 0-15, writes 16-31
    pub intercept_dr: u32,         // 0x004
    pub intercept_exceptions: u32, // 0x008
    pub intercept_misc1: u32,      // 0x00c
    pub intercept_misc2: u32,      // 0x010
    pub intercept_misc3: u32,      // 0x014
    _r0: [u8; 0x03c - 0x018],
    pub pause_filter_threshold: u16, // 0x03c
    pub pause_filter_count: u16,     // 0x03e
    pub iopm_base_pa: u64,           // 0x040
    pub msrpm_base_pa: u64,          // 0x048
    pub tsc_offset: u64,             // 0x050
    pub asid: u32,                   // 0x058
    pub tlb_control: u8,             // 0x05c
    _r1: [u8; 3],
    pub vintr: u64,            // 0x060
    pub interrupt_shadow: u64, // 0x068
    pub exit_code: u64,        // 0x070
    pub exit_info1: u64,       // 0x078
    pub exit_info2: u64,       // 0x080
    pub exit_int_info: u64,    // 0x088
    pub np_enable: u64,        // 0x090
    _r2: [u8; 0x0a8 - 0x098],
    pub event_inj: u64,  // 0x0a8
    pub n_cr3: u64,      // 0x0b0
    pub lbr_virt: u64,   // 0x0b8
    pub clean_bits: u32, // 0x0c0
    _r3: u32,
    pub next_rip: u64,        // 0x0c8
    pub insn_len: u8,         // 0x0d0
    pub insn_bytes: [u8; 15], // 0x0d1
    _r4: [u8; 0x400 - 0x0e0],
}

/// A segment in the state-save area.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Seg {
    pub selector: u16,
    /// Packed attributes: access byte in bits 0-7, AVL/L/DB/G in bits 8-11.
    pub attrib: u16,
    pub limit: u32,
    pub base: u64,
}

/// State-save area (0x400..0x1000).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Save {
    pub es: Seg,   // 0x400
    pub cs: Seg,   // 0x410
    pub ss: Seg,   // 0x420
    pub ds: Seg,   // 0x430
    pub fs: Seg,   // 0x440
    pub gs: Seg,   // 0x450
    pub gdtr: Seg, // 0x460
    pub ldtr: Seg, // 0x470
    pub idtr: Seg, // 0x480
    pub tr: Seg,   // 0x490
    _r0: [u8; 0x4cb - 0x4a0],
    pub cpl: u8, // 0x4cb
    _r1: u32,
    pub efer: u64, // 0x4d0
    _r2: [u8; 0x548 - 0x4d8],
    pub cr4: u64,    // 0x548
    pub cr3: u64,    // 0x550
    pub cr0: u64,    // 0x558
    pub dr7: u64,    // 0x560
    pub dr6: u64,    // 0x568
    pub rflags: u64, // 0x570
    pub rip: u64,    // 0x578
    _r3: [u8; 0x5d8 - 0x580],
    pub rsp: u64, // 0x5d8
    _r4: [u8; 0x5f8 - 0x5e0],
    pub rax: u64,            // 0x5f8
    pub star: u64,           // 0x600
    pub lstar: u64,          // 0x608
    pub cstar: u64,          // 0x610
    pub sfmask: u64,         // 0x618
    pub kernel_gs_base: u64, // 0x620
    pub sysenter_cs: u64,    // 0x628
    pub sysenter_esp: u64,   // 0x630
    pub sysenter_eip: u64,   // 0x638
    pub cr2: u64,            // 0x640
    _r5: [u8; 0x668 - 0x648],
    pub g_pat: u64, // 0x668
    _r6: [u8; 0x1000 - 0x670],
}

#[repr(C, align(4096))]
#[derive(Clone, Copy)]
pub struct Vmcb {
    pub control: Control,
    pub save: Save,
}

const _: () = {
    assert!(core::mem::size_of::<Control>() == 0x400);
    assert!(core::mem::size_of::<Save>() == 0xc00);
    assert!(core::mem::size_of::<Vmcb>() == 0x1000);
    assert!(core::mem::offset_of!(Control, iopm_base_pa) == 0x40);
    assert!(core::mem::offset_of!(Control, asid) == 0x58);
    assert!(core::mem::offset_of!(Control, exit_code) == 0x70);
    assert!(core::mem::offset_of!(Control, np_enable) == 0x90);
    assert!(core::mem::offset_of!(Control, event_inj) == 0xa8);
    assert!(core::mem::offset_of!(Control, n_cr3) == 0xb0);
    assert!(core::mem::offset_of!(Control, next_rip) == 0xc8);
    assert!(core::mem::offset_of!(Save, tr) == 0x490 - 0x400);
    assert!(core::mem::offset_of!(Save, cpl) == 0x4cb - 0x400);
    assert!(core::mem::offset_of!(Save, efer) == 0x4d0 - 0x400);
    assert!(core::mem::offset_of!(Save, cr4) == 0x548 - 0x400);
    assert!(core::mem::offset_of!(Save, rip) == 0x578 - 0x400);
    assert!(core::mem::offset_of!(Save, rsp) == 0x5d8 - 0x400);
    assert!(core::mem::offset_of!(Save, rax) == 0x5f8 - 0x400);
    assert!(core::mem::offset_of!(Save, cr2) == 0x640 - 0x400);
    assert!(core::mem::offset_of!(Save, g_pat) == 0x668 - 0x400);
};

// Intercept bits.
pub mod intercept {
    // misc1 (0x00c)
    pub const INTR: u32 = 1 << 0;
    pub const NMI: u32 = 1 << 1;
    pub const SMI: u32 = 1 << 2;
    pub const INIT: u32 = 1 << 3;
    pub const VINTR: u32 = 1 << 4;
    pub const CPUID: u32 = 1 << 18;
    pub const PAUSE: u32 = 1 << 23;
    pub const HLT: u32 = 1 << 24;
    pub const INVLPGA: u32 = 1 << 26;
    pub const IOIO_PROT: u32 = 1 << 27;
    pub const MSR_PROT: u32 = 1 << 28;
    pub const SHUTDOWN: u32 = 1 << 31;
    // misc2 (0x010)
    pub const VMRUN: u32 = 1 << 0;
    pub const VMMCALL: u32 = 1 << 1;
    pub const VMLOAD: u32 = 1 << 2;
    pub const VMSAVE: u32 = 1 << 3;
    pub const STGI: u32 = 1 << 4;
    pub const CLGI: u32 = 1 << 5;
    pub const SKINIT: u32 = 1 << 6;
    pub const MONITOR: u32 = 1 << 10;
    /// MWAIT (and MWAITX), unconditionally.
    pub const MWAIT: u32 = 1 << 11;
    pub const MWAIT_ARMED: u32 = 1 << 12;
    pub const XSETBV: u32 = 1 << 13;
}

/// Exit codes (APM vol. 2, appendix C).
pub mod exit {
    pub const EXCP_BASE: u64 = 0x40;
    pub const INTR: u64 = 0x60;
    pub const NMI: u64 = 0x61;
    pub const SMI: u64 = 0x62;
    pub const INIT: u64 = 0x63;
    pub const VINTR: u64 = 0x64;
    pub const CPUID: u64 = 0x72;
    pub const PAUSE: u64 = 0x77;
    pub const HLT: u64 = 0x78;
    pub const INVLPGA: u64 = 0x7a;
    pub const IOIO: u64 = 0x7b;
    pub const MSR: u64 = 0x7c;
    pub const SHUTDOWN: u64 = 0x7f;
    pub const VMRUN: u64 = 0x80;
    pub const VMMCALL: u64 = 0x81;
    pub const VMLOAD: u64 = 0x82;
    pub const VMSAVE: u64 = 0x83;
    pub const STGI: u64 = 0x84;
    pub const CLGI: u64 = 0x85;
    pub const SKINIT: u64 = 0x86;
    pub const MONITOR: u64 = 0x8a;
    pub const MWAIT: u64 = 0x8b;
    pub const MWAIT_ARMED: u64 = 0x8c;
    pub const XSETBV: u64 = 0x8d;
    pub const NPF: u64 = 0x400;
    /// VMEXIT_INVALID is -1; QEMU stores it as 0xffffffff, so compare the low 32 bits.
    pub const INVALID_LOW32: u64 = 0xffff_ffff;
}

/// VMX-layout access rights (bits 0-7 and 12-15) to the VMCB's packed form.
pub const fn pack_attr(vmx_ar: u16) -> u16 {
    (vmx_ar & 0xff) | ((vmx_ar >> 4) & 0xf00)
}

/// Bit index of `msr`'s read-intercept bit in the MSR permission map (the
/// write bit follows it), or `None` for MSRs outside the three mapped ranges
/// (always intercepted). APM vol. 2, 15.11.
pub fn msrpm_bit(msr: u32) -> Option<usize> {
    let (base, range_off) = match msr {
        0x0000_0000..=0x0000_1fff => (0x0000_0000, 0x0000),
        0xc000_0000..=0xc000_1fff => (0xc000_0000, 0x0800),
        0xc001_0000..=0xc001_1fff => (0xc001_0000, 0x1000),
        _ => return None,
    };
    Some(range_off * 8 + (msr - base) as usize * 2)
}

/// EVENTINJ encoding.
pub fn event_inj(vector: u8, kind: u64, error_code: Option<u32>) -> u64 {
    let mut v = vector as u64 | (kind << 8) | (1 << 31);
    if let Some(e) = error_code {
        v |= (1 << 11) | ((e as u64) << 32);
    }
    v
}
pub const EVENT_INTR: u64 = 0;
pub const EVENT_NMI: u64 = 2;
pub const EVENT_EXCEPTION: u64 = 3;

/// The VMCB's virtual-interrupt field (0x060): V_IRQ requests a virtual
/// interrupt, taken by the guest as soon as its RFLAGS.IF allows
/// (V_INTR_MASKING), at priority V_INTR_PRIO, vector V_INTR_VECTOR
/// (bits 39:32), regardless of V_TPR with V_IGN_TPR.
pub mod vintr {
    pub const V_IRQ: u64 = 1 << 8;
    pub const V_INTR_PRIO: u64 = 0xf << 16;
    pub const V_IGN_TPR: u64 = 1 << 20;
    pub const V_INTR_MASKING: u64 = 1 << 24;
    pub const V_INTR_VECTOR: u64 = 0xff << 32;

    /// `field` with a virtual interrupt of `vector` requested at the
    /// highest priority, whatever the guest's TPR.
    pub fn request(field: u64, vector: u8) -> u64 {
        (field & !(V_INTR_VECTOR | V_INTR_PRIO))
            | V_IRQ
            | V_INTR_PRIO
            | V_IGN_TPR
            | (vector as u64) << 32
    }
}

/// An event EXITINTINFO says was being delivered, as it must be delivered
/// again: `Ok(vector)` for an external interrupt (requested again as a
/// virtual interrupt, see `SvmVcpu::inject`), `Err(eventinj)` for anything
/// else. QEMU's TCG reports an interrupted hardware interrupt with the
/// exception type: any vector of 32 or more is an interrupt.
pub fn redeliver(exit_int_info: u64) -> Option<Result<u8, u64>> {
    if exit_int_info & (1 << 31) == 0 {
        return None;
    }
    let vector = exit_int_info as u8;
    let kind = (exit_int_info >> 8) & 7;
    if kind == EVENT_INTR || (kind == EVENT_EXCEPTION && vector >= 32) {
        Some(Ok(vector))
    } else {
        Some(Err(exit_int_info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn attr_packing() {
        assert_eq!(pack_attr(0x9b), 0x9b);
        assert_eq!(pack_attr(0xa09b), 0xa9b); // 64-bit code: L + G
        assert_eq!(pack_attr(0xc093), 0xc93);
    }
    #[test]
    fn msr_permission_map_bits() {
        assert_eq!(msrpm_bit(0), Some(0));
        assert_eq!(msrpm_bit(0x174), Some(0x2e8));
        assert_eq!(msrpm_bit(0xc000_0080), Some(0x800 * 8 + 0x100)); // EFER
        assert_eq!(msrpm_bit(0xc001_0114), Some(0x1000 * 8 + 0x228));
        assert_eq!(msrpm_bit(0x4000_0000), None);
        assert!(msrpm_bit(0xc001_1fff).unwrap() / 8 < 0x1800);
    }

    #[test]
    fn virtual_interrupt_request() {
        let f = vintr::request(vintr::V_INTR_MASKING | 0x5, 0xf3);
        assert_eq!(f & 0xff, 0x5, "V_TPR kept");
        assert_ne!(f & vintr::V_INTR_MASKING, 0);
        assert_eq!(f >> 32, 0xf3);
        assert_eq!(
            f & (vintr::V_IRQ | vintr::V_IGN_TPR),
            vintr::V_IRQ | vintr::V_IGN_TPR
        );
        assert_eq!((f >> 16) & 0xf, 0xf);
        // A second request replaces the vector.
        assert_eq!(vintr::request(f, 0x30) >> 32, 0x30);
    }

    #[test]
    fn what_is_delivered_again() {
        assert_eq!(redeliver(0), None);
        assert_eq!(redeliver(0x30), None, "not valid");
        assert_eq!(redeliver(event_inj(0xf3, EVENT_INTR, None)), Some(Ok(0xf3)));
        // QEMU's form of an interrupted hardware interrupt.
        assert_eq!(
            redeliver(event_inj(0xf3, EVENT_EXCEPTION, None)),
            Some(Ok(0xf3))
        );
        let pf = event_inj(14, EVENT_EXCEPTION, Some(2));
        assert_eq!(redeliver(pf), Some(Err(pf)));
        let nmi = event_inj(2, EVENT_NMI, None);
        assert_eq!(redeliver(nmi), Some(Err(nmi)));
    }

    #[test]
    fn event_encoding() {
        assert_eq!(event_inj(0x30, EVENT_INTR, None), 0x8000_0030);
        assert_eq!(event_inj(13, EVENT_EXCEPTION, Some(0)), 0x8000_0b0d);
        assert_eq!(
            event_inj(14, EVENT_EXCEPTION, Some(2)),
            (2 << 32) | 0x8000_0b0e
        );
    }
}
