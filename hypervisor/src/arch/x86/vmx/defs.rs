//! VT-x definitions and pure logic: VMCS field encodings, control bits,
//! control adjustment against the capability MSRs, exit decoding, entry
//! event encoding, VM-instruction errors, segment access rights and a
//! software mirror of the main guest-state checks. Nothing here touches
//! hardware, so all of it is unit-tested on the host.
//!
//! References are to the Intel SDM vol. 3C (chapters 25-28, appendices A-C).

use crate::hvm::vcpu::{Access, Event, Exit, Regs};

/// VMX capability and related MSRs (SDM appendix A).
pub mod msr {
    pub const FEATURE_CONTROL: u32 = 0x3a;
    pub const SYSENTER_CS: u32 = 0x174;
    pub const SYSENTER_ESP: u32 = 0x175;
    pub const SYSENTER_EIP: u32 = 0x176;
    pub const VMX_BASIC: u32 = 0x480;
    /// IA32_VMX_MISC: bits 4:0 are the VMX-preemption timer's rate (it
    /// counts down once every 2^rate TSC ticks).
    pub const VMX_MISC: u32 = 0x485;
    pub const VMX_PINBASED_CTLS: u32 = 0x481;
    pub const VMX_PROCBASED_CTLS: u32 = 0x482;
    pub const VMX_EXIT_CTLS: u32 = 0x483;
    pub const VMX_ENTRY_CTLS: u32 = 0x484;
    pub const VMX_CR0_FIXED0: u32 = 0x486;
    pub const VMX_CR0_FIXED1: u32 = 0x487;
    pub const VMX_CR4_FIXED0: u32 = 0x488;
    pub const VMX_CR4_FIXED1: u32 = 0x489;
    pub const VMX_PROCBASED_CTLS2: u32 = 0x48b;
    pub const VMX_EPT_VPID_CAP: u32 = 0x48c;
    pub const VMX_TRUE_PINBASED_CTLS: u32 = 0x48d;
    pub const VMX_TRUE_PROCBASED_CTLS: u32 = 0x48e;
    pub const VMX_TRUE_EXIT_CTLS: u32 = 0x48f;
    pub const VMX_TRUE_ENTRY_CTLS: u32 = 0x490;
    pub const EFER: u32 = 0xc000_0080;
    pub const FS_BASE: u32 = 0xc000_0100;
    pub const GS_BASE: u32 = 0xc000_0101;

    /// IA32_FEATURE_CONTROL bits.
    pub const FC_LOCK: u64 = 1 << 0;
    pub const FC_VMXON_OUTSIDE_SMX: u64 = 1 << 2;

    /// IA32_VMX_BASIC bits.
    pub const BASIC_REVISION_MASK: u64 = 0x7fff_ffff;
    pub const BASIC_32BIT_ADDRESSES: u64 = 1 << 48;
    pub const BASIC_MEMTYPE_SHIFT: u32 = 50;
    pub const BASIC_TRUE_CTLS: u64 = 1 << 55;

    /// IA32_VMX_EPT_VPID_CAP bits.
    pub const EPT_WALK_4: u64 = 1 << 6;
    pub const EPT_WB: u64 = 1 << 14;
    pub const EPT_2M_PAGES: u64 = 1 << 16;
    pub const EPT_1G_PAGES: u64 = 1 << 17;
    pub const EPT_INVEPT: u64 = 1 << 20;
    pub const EPT_INVEPT_SINGLE: u64 = 1 << 25;
    pub const EPT_INVEPT_ALL: u64 = 1 << 26;
    pub const VPID_INVVPID: u64 = 1 << 32;
    pub const VPID_INVVPID_SINGLE: u64 = 1 << 41;
    pub const VPID_INVVPID_ALL: u64 = 1 << 42;
}

/// VMCS component encodings (SDM appendix B). The width is in bits 14:13
/// of the encoding: 0 = 16-bit, 1 = 64-bit, 2 = 32-bit, 3 = natural width.
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Field {
    // 16-bit control
    Vpid = 0x0000,
    // 16-bit guest state
    GuestEsSelector = 0x0800,
    GuestCsSelector = 0x0802,
    GuestSsSelector = 0x0804,
    GuestDsSelector = 0x0806,
    GuestFsSelector = 0x0808,
    GuestGsSelector = 0x080a,
    GuestLdtrSelector = 0x080c,
    GuestTrSelector = 0x080e,
    // 16-bit host state
    HostEsSelector = 0x0c00,
    HostCsSelector = 0x0c02,
    HostSsSelector = 0x0c04,
    HostDsSelector = 0x0c06,
    HostFsSelector = 0x0c08,
    HostGsSelector = 0x0c0a,
    HostTrSelector = 0x0c0c,
    // 64-bit control
    IoBitmapA = 0x2000,
    IoBitmapB = 0x2002,
    MsrBitmap = 0x2004,
    ExitMsrStoreAddr = 0x2006,
    ExitMsrLoadAddr = 0x2008,
    EntryMsrLoadAddr = 0x200a,
    TscOffset = 0x2010,
    EptPointer = 0x201a,
    // 64-bit read-only
    GuestPhysicalAddress = 0x2400,
    // 64-bit guest state
    VmcsLinkPointer = 0x2800,
    GuestDebugctl = 0x2802,
    GuestPat = 0x2804,
    GuestEfer = 0x2806,
    GuestPdpte0 = 0x280a,
    GuestPdpte1 = 0x280c,
    GuestPdpte2 = 0x280e,
    GuestPdpte3 = 0x2810,
    // 64-bit host state
    HostPat = 0x2c00,
    HostEfer = 0x2c02,
    // 32-bit control
    PinBasedControls = 0x4000,
    ProcBasedControls = 0x4002,
    ExceptionBitmap = 0x4004,
    PageFaultErrorCodeMask = 0x4006,
    PageFaultErrorCodeMatch = 0x4008,
    Cr3TargetCount = 0x400a,
    ExitControls = 0x400c,
    ExitMsrStoreCount = 0x400e,
    ExitMsrLoadCount = 0x4010,
    EntryControls = 0x4012,
    EntryMsrLoadCount = 0x4014,
    EntryInterruptionInfo = 0x4016,
    EntryExceptionErrorCode = 0x4018,
    EntryInstructionLength = 0x401a,
    TprThreshold = 0x401c,
    SecondaryControls = 0x401e,
    // 32-bit read-only
    VmInstructionError = 0x4400,
    ExitReason = 0x4402,
    ExitInterruptionInfo = 0x4404,
    ExitInterruptionErrorCode = 0x4406,
    IdtVectoringInfo = 0x4408,
    IdtVectoringErrorCode = 0x440a,
    ExitInstructionLength = 0x440c,
    VmxInstructionInfo = 0x440e,
    // 32-bit guest state
    GuestEsLimit = 0x4800,
    GuestCsLimit = 0x4802,
    GuestSsLimit = 0x4804,
    GuestDsLimit = 0x4806,
    GuestFsLimit = 0x4808,
    GuestGsLimit = 0x480a,
    GuestLdtrLimit = 0x480c,
    GuestTrLimit = 0x480e,
    GuestGdtrLimit = 0x4810,
    GuestIdtrLimit = 0x4812,
    GuestEsAccessRights = 0x4814,
    GuestCsAccessRights = 0x4816,
    GuestSsAccessRights = 0x4818,
    GuestDsAccessRights = 0x481a,
    GuestFsAccessRights = 0x481c,
    GuestGsAccessRights = 0x481e,
    GuestLdtrAccessRights = 0x4820,
    GuestTrAccessRights = 0x4822,
    GuestInterruptibility = 0x4824,
    GuestActivityState = 0x4826,
    GuestSmbase = 0x4828,
    GuestSysenterCs = 0x482a,
    GuestPreemptionTimer = 0x482e,
    // 32-bit host state
    HostSysenterCs = 0x4c00,
    // natural-width control
    Cr0GuestHostMask = 0x6000,
    Cr4GuestHostMask = 0x6002,
    Cr0ReadShadow = 0x6004,
    Cr4ReadShadow = 0x6006,
    // natural-width read-only
    ExitQualification = 0x6400,
    GuestLinearAddress = 0x640a,
    // natural-width guest state
    GuestCr0 = 0x6800,
    GuestCr3 = 0x6802,
    GuestCr4 = 0x6804,
    GuestEsBase = 0x6806,
    GuestCsBase = 0x6808,
    GuestSsBase = 0x680a,
    GuestDsBase = 0x680c,
    GuestFsBase = 0x680e,
    GuestGsBase = 0x6810,
    GuestLdtrBase = 0x6812,
    GuestTrBase = 0x6814,
    GuestGdtrBase = 0x6816,
    GuestIdtrBase = 0x6818,
    GuestDr7 = 0x681a,
    GuestRsp = 0x681c,
    GuestRip = 0x681e,
    GuestRflags = 0x6820,
    GuestPendingDebugExceptions = 0x6822,
    GuestSysenterEsp = 0x6824,
    GuestSysenterEip = 0x6826,
    // natural-width host state
    HostCr0 = 0x6c00,
    HostCr3 = 0x6c02,
    HostCr4 = 0x6c04,
    HostFsBase = 0x6c06,
    HostGsBase = 0x6c08,
    HostTrBase = 0x6c0a,
    HostGdtrBase = 0x6c0c,
    HostIdtrBase = 0x6c0e,
    HostSysenterEsp = 0x6c10,
    HostSysenterEip = 0x6c12,
    HostRsp = 0x6c14,
    HostRip = 0x6c16,
}

impl Field {
    pub const fn encoding(self) -> u32 {
        self as u32
    }
    /// Width in bits of the component (natural width counts as 64).
    pub const fn width(self) -> u32 {
        match (self as u32 >> 13) & 3 {
            0 => 16,
            2 => 32,
            _ => 64,
        }
    }
}

/// Guest segment registers and their four VMCS fields each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seg {
    Es,
    Cs,
    Ss,
    Ds,
    Fs,
    Gs,
    Ldtr,
    Tr,
}

impl Seg {
    pub const ALL: [Seg; 8] = [
        Seg::Es,
        Seg::Cs,
        Seg::Ss,
        Seg::Ds,
        Seg::Fs,
        Seg::Gs,
        Seg::Ldtr,
        Seg::Tr,
    ];
    /// (selector, base, limit, access rights)
    pub const fn fields(self) -> (Field, Field, Field, Field) {
        use Field::*;
        match self {
            Seg::Es => (
                GuestEsSelector,
                GuestEsBase,
                GuestEsLimit,
                GuestEsAccessRights,
            ),
            Seg::Cs => (
                GuestCsSelector,
                GuestCsBase,
                GuestCsLimit,
                GuestCsAccessRights,
            ),
            Seg::Ss => (
                GuestSsSelector,
                GuestSsBase,
                GuestSsLimit,
                GuestSsAccessRights,
            ),
            Seg::Ds => (
                GuestDsSelector,
                GuestDsBase,
                GuestDsLimit,
                GuestDsAccessRights,
            ),
            Seg::Fs => (
                GuestFsSelector,
                GuestFsBase,
                GuestFsLimit,
                GuestFsAccessRights,
            ),
            Seg::Gs => (
                GuestGsSelector,
                GuestGsBase,
                GuestGsLimit,
                GuestGsAccessRights,
            ),
            Seg::Ldtr => (
                GuestLdtrSelector,
                GuestLdtrBase,
                GuestLdtrLimit,
                GuestLdtrAccessRights,
            ),
            Seg::Tr => (
                GuestTrSelector,
                GuestTrBase,
                GuestTrLimit,
                GuestTrAccessRights,
            ),
        }
    }
}

/// Pin-based VM-execution controls (SDM 25.6.1).
pub mod pin {
    pub const EXTERNAL_INTERRUPT_EXITING: u32 = 1 << 0;
    pub const NMI_EXITING: u32 = 1 << 3;
    pub const VIRTUAL_NMIS: u32 = 1 << 5;
    pub const ACTIVATE_PREEMPTION_TIMER: u32 = 1 << 6;
}

/// Primary processor-based VM-execution controls (SDM 25.6.2).
pub mod proc {
    pub const INTERRUPT_WINDOW_EXITING: u32 = 1 << 2;
    pub const USE_TSC_OFFSETTING: u32 = 1 << 3;
    pub const HLT_EXITING: u32 = 1 << 7;
    pub const INVLPG_EXITING: u32 = 1 << 9;
    pub const MWAIT_EXITING: u32 = 1 << 10;
    pub const RDPMC_EXITING: u32 = 1 << 11;
    pub const RDTSC_EXITING: u32 = 1 << 12;
    pub const CR3_LOAD_EXITING: u32 = 1 << 15;
    pub const CR3_STORE_EXITING: u32 = 1 << 16;
    pub const CR8_LOAD_EXITING: u32 = 1 << 19;
    pub const CR8_STORE_EXITING: u32 = 1 << 20;
    pub const USE_TPR_SHADOW: u32 = 1 << 21;
    pub const NMI_WINDOW_EXITING: u32 = 1 << 22;
    pub const MOV_DR_EXITING: u32 = 1 << 23;
    pub const UNCONDITIONAL_IO_EXITING: u32 = 1 << 24;
    pub const USE_IO_BITMAPS: u32 = 1 << 25;
    pub const MONITOR_TRAP_FLAG: u32 = 1 << 27;
    pub const USE_MSR_BITMAPS: u32 = 1 << 28;
    pub const MONITOR_EXITING: u32 = 1 << 29;
    pub const PAUSE_EXITING: u32 = 1 << 30;
    pub const ACTIVATE_SECONDARY: u32 = 1 << 31;
}

/// Secondary processor-based VM-execution controls (SDM 25.6.2).
pub mod proc2 {
    pub const VIRTUALIZE_APIC_ACCESSES: u32 = 1 << 0;
    pub const ENABLE_EPT: u32 = 1 << 1;
    pub const DESCRIPTOR_TABLE_EXITING: u32 = 1 << 2;
    pub const ENABLE_RDTSCP: u32 = 1 << 3;
    pub const ENABLE_VPID: u32 = 1 << 5;
    pub const WBINVD_EXITING: u32 = 1 << 6;
    pub const UNRESTRICTED_GUEST: u32 = 1 << 7;
    pub const ENABLE_INVPCID: u32 = 1 << 12;
    pub const ENABLE_XSAVES: u32 = 1 << 20;
}

/// VM-exit controls (SDM 25.7.1).
pub mod exit_ctl {
    pub const SAVE_DEBUG_CONTROLS: u32 = 1 << 2;
    pub const HOST_ADDRESS_SPACE_SIZE: u32 = 1 << 9;
    pub const ACK_INTERRUPT_ON_EXIT: u32 = 1 << 15;
    pub const SAVE_PAT: u32 = 1 << 18;
    pub const LOAD_PAT: u32 = 1 << 19;
    pub const SAVE_EFER: u32 = 1 << 20;
    pub const LOAD_EFER: u32 = 1 << 21;
}

/// VM-entry controls (SDM 25.8.1).
pub mod entry_ctl {
    pub const LOAD_DEBUG_CONTROLS: u32 = 1 << 2;
    pub const IA32E_MODE_GUEST: u32 = 1 << 9;
    pub const LOAD_PAT: u32 = 1 << 14;
    pub const LOAD_EFER: u32 = 1 << 15;
}

/// Control-register and EFER bits used by the backend.
pub mod bits {
    pub const CR0_PE: u64 = 1 << 0;
    pub const CR0_ET: u64 = 1 << 4;
    pub const CR0_NE: u64 = 1 << 5;
    pub const CR0_NW: u64 = 1 << 29;
    pub const CR0_CD: u64 = 1 << 30;
    pub const CR0_PG: u64 = 1 << 31;
    pub const CR4_PAE: u64 = 1 << 5;
    pub const CR4_OSFXSR: u64 = 1 << 9;
    pub const CR4_VMXE: u64 = 1 << 13;
    pub const EFER_SCE: u64 = 1 << 0;
    pub const EFER_LME: u64 = 1 << 8;
    pub const EFER_LMA: u64 = 1 << 10;
    pub const EFER_NXE: u64 = 1 << 11;
    pub const RFLAGS_FIXED: u64 = 1 << 1;
    pub const RFLAGS_IF: u64 = 1 << 9;
    pub const RFLAGS_VM: u64 = 1 << 17;
    /// Guest interruptibility state (SDM 25.4.2).
    pub const BLOCK_STI: u32 = 1 << 0;
    pub const BLOCK_MOV_SS: u32 = 1 << 1;
    pub const BLOCK_NMI: u32 = 1 << 3;
}

/// Basic exit reasons (SDM appendix C).
pub mod reason {
    pub const EXCEPTION_NMI: u16 = 0;
    pub const EXTERNAL_INTERRUPT: u16 = 1;
    pub const TRIPLE_FAULT: u16 = 2;
    pub const INIT: u16 = 3;
    pub const SIPI: u16 = 4;
    pub const INTERRUPT_WINDOW: u16 = 7;
    pub const NMI_WINDOW: u16 = 8;
    pub const TASK_SWITCH: u16 = 9;
    pub const CPUID: u16 = 10;
    pub const GETSEC: u16 = 11;
    pub const HLT: u16 = 12;
    pub const INVD: u16 = 13;
    pub const VMCALL: u16 = 18;
    pub const VMCLEAR: u16 = 19;
    pub const VMXON: u16 = 27;
    pub const CR_ACCESS: u16 = 28;
    pub const IO: u16 = 30;
    pub const RDMSR: u16 = 31;
    pub const WRMSR: u16 = 32;
    pub const INVALID_GUEST_STATE: u16 = 33;
    pub const MWAIT: u16 = 36;
    pub const MONITOR: u16 = 39;
    pub const MSR_LOADING: u16 = 34;
    pub const PAUSE: u16 = 40;
    pub const MACHINE_CHECK: u16 = 41;
    pub const EPT_VIOLATION: u16 = 48;
    pub const EPT_MISCONFIG: u16 = 49;
    pub const INVEPT: u16 = 50;
    pub const INVVPID: u16 = 53;
    pub const PREEMPTION_TIMER: u16 = 52;
    pub const XSETBV: u16 = 55;
    /// Bit 31 of the exit-reason field: VM entry failed.
    pub const ENTRY_FAILURE: u32 = 1 << 31;
}

/// Interruption-information types (entry, exit and IDT-vectoring fields).
pub mod intr {
    pub const EXTERNAL: u32 = 0;
    pub const NMI: u32 = 2;
    pub const HARDWARE_EXCEPTION: u32 = 3;
    pub const SOFTWARE_INTERRUPT: u32 = 4;
    pub const PRIVILEGED_SOFTWARE_EXCEPTION: u32 = 5;
    pub const SOFTWARE_EXCEPTION: u32 = 6;
    pub const ERROR_CODE_VALID: u32 = 1 << 11;
    pub const NMI_UNBLOCKING: u32 = 1 << 12;
    pub const VALID: u32 = 1 << 31;
}

/// Combines the controls keel wants with a capability MSR: the low half
/// holds the bits that must be 1 (allowed-0 settings), the high half the
/// bits that may be 1 (allowed-1 settings). `Err` carries the wanted bits
/// this CPU cannot set.
pub fn adjust_controls(wanted: u32, cap: u64) -> Result<u32, u32> {
    let must = cap as u32;
    let may = (cap >> 32) as u32;
    let missing = wanted & !may;
    if missing != 0 {
        Err(missing)
    } else {
        Ok(wanted | must)
    }
}

/// The subset of `optional` bits the CPU allows.
pub fn optional_controls(optional: u32, cap: u64) -> u32 {
    optional & (cap >> 32) as u32
}

/// A CR0/CR4 value forced into the fixed-bit constraints (bits set in
/// FIXED0 must be 1, bits clear in FIXED1 must be 0); `exempt` bits (PE
/// and PG under unrestricted guest) are left as they are.
pub fn apply_fixed(value: u64, fixed0: u64, fixed1: u64, exempt: u64) -> u64 {
    let fixed0 = fixed0 & !exempt;
    let fixed1 = fixed1 | exempt;
    (value | fixed0) & fixed1
}

/// The raw exit fields `decode_exit` needs (read from the VMCS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawExit {
    pub reason: u32,
    pub qualification: u64,
    pub instruction_len: u32,
    pub interruption_info: u32,
    pub interruption_error: u32,
    pub guest_physical: u64,
}

/// Access recorded in an EPT-violation qualification (SDM table 28-7):
/// bit 0 read, 1 write, 2 fetch; bits 3-5 the permissions the translation
/// had (any set = the page was present).
pub fn ept_violation(qual: u64) -> (Access, bool) {
    let access = if qual & 2 != 0 {
        Access::Write
    } else if qual & 4 != 0 {
        Access::Execute
    } else {
        Access::Read
    };
    (access, qual & 0x38 != 0)
}

/// CR-access qualification (SDM table 28-3): (cr, access type, gpr,
/// LMSW source). Access type 0 = MOV to CR, 1 = MOV from CR, 2 = CLTS,
/// 3 = LMSW.
pub fn cr_access(qual: u64) -> (u8, u8, u8, u16) {
    (
        (qual & 15) as u8,
        ((qual >> 4) & 3) as u8,
        ((qual >> 8) & 15) as u8,
        (qual >> 16) as u16,
    )
}

/// Decodes an exit into the vendor-neutral [`Exit`]. `regs` supplies the
/// MSR number and value for RDMSR/WRMSR. The backend handles some of the
/// results itself (EFER, masked CR bits, VMX instructions) before anything
/// reaches common code.
pub fn decode_exit(raw: &RawExit, regs: &Regs) -> Exit {
    let len = raw.instruction_len as u8;
    let q = raw.qualification;
    if raw.reason & reason::ENTRY_FAILURE != 0 {
        return entry_failure(raw.reason as u16, q);
    }
    match raw.reason as u16 {
        reason::EXCEPTION_NMI => {
            let info = raw.interruption_info;
            let error_code = (info & intr::ERROR_CODE_VALID != 0).then_some(raw.interruption_error);
            Exit::Exception {
                vector: info as u8,
                error_code,
            }
        }
        reason::EXTERNAL_INTERRUPT => Exit::ExternalInterrupt,
        reason::TRIPLE_FAULT => Exit::TripleFault,
        reason::INIT => Exit::Init,
        reason::SIPI => Exit::Sipi { vector: q as u8 },
        reason::INTERRUPT_WINDOW => Exit::InterruptWindow,
        reason::CPUID => Exit::Cpuid { len },
        reason::HLT => Exit::Hlt { len },
        reason::VMCALL => Exit::Hypercall { len },
        reason::PAUSE => Exit::Pause { len },
        reason::XSETBV => Exit::Xsetbv { len },
        reason::MONITOR | reason::MWAIT => Exit::MonitorMwait,
        reason::CR_ACCESS => {
            let (cr, ty, gpr, _) = cr_access(q);
            match ty {
                0 | 1 => Exit::CrAccess {
                    cr,
                    write: ty == 0,
                    gpr,
                    len,
                },
                // CLTS and LMSW write CR0 without a GPR operand.
                _ => Exit::CrAccess {
                    cr,
                    write: true,
                    gpr: 0xff,
                    len,
                },
            }
        }
        reason::IO => Exit::Io {
            port: (q >> 16) as u16,
            size: ((q & 7) + 1) as u8,
            write: q & 8 == 0,
            string: q & 16 != 0,
            rep: q & 32 != 0,
            len,
        },
        reason::RDMSR => Exit::MsrRead {
            msr: regs.rcx as u32,
            len,
        },
        reason::WRMSR => Exit::MsrWrite {
            msr: regs.rcx as u32,
            value: (regs.rdx << 32) | (regs.rax & 0xffff_ffff),
            len,
        },
        reason::EPT_VIOLATION => {
            let (access, present) = ept_violation(q);
            Exit::NestedPageFault {
                gpa: raw.guest_physical,
                access,
                present,
            }
        }
        reason::EPT_MISCONFIG => Exit::InvalidGuestState {
            detail: "EPT misconfiguration (a malformed EPT entry; code = GPA)",
            code: raw.guest_physical,
        },
        // keel's own deadline (see `Vcpu::set_deadline`).
        reason::PREEMPTION_TIMER => Exit::PreemptionTimer,
        r => Exit::Unhandled { reason: r as u64 },
    }
}

fn entry_failure(basic: u16, qual: u64) -> Exit {
    let detail = match (basic, qual) {
        (reason::INVALID_GUEST_STATE, 2) => "VM entry failed: invalid guest state: PDPTE loading",
        (reason::INVALID_GUEST_STATE, 3) => {
            "VM entry failed: invalid guest state: NMI injection while NMIs are blocked"
        }
        (reason::INVALID_GUEST_STATE, 4) => {
            "VM entry failed: invalid guest state: VMCS link pointer"
        }
        (reason::INVALID_GUEST_STATE, _) => "VM entry failed: invalid guest state",
        (reason::MSR_LOADING, _) => "VM entry failed: MSR loading (code = failing entry)",
        (reason::MACHINE_CHECK, _) => "VM entry failed: machine-check event",
        _ => "VM entry failed",
    };
    Exit::InvalidGuestState {
        detail,
        code: basic as u64 | (qual << 32),
    }
}

/// True if an exit reason is a VMX instruction executed by the guest
/// (keel offers no nested VMX: the backend injects #UD).
pub fn is_vmx_instruction(basic: u16) -> bool {
    matches!(
        basic,
        reason::VMCLEAR..=reason::VMXON | reason::INVEPT | reason::INVVPID
    )
}

/// Text for a VM-instruction error number (SDM 31.4).
pub fn instruction_error(n: u32) -> &'static str {
    match n {
        1 => "VMCALL executed in VMX root operation",
        2 => "VMCLEAR with invalid physical address",
        3 => "VMCLEAR with VMXON pointer",
        4 => "VMLAUNCH with non-clear VMCS",
        5 => "VMRESUME with non-launched VMCS",
        6 => "VMRESUME after VMXOFF",
        7 => "VM entry with invalid control field(s)",
        8 => "VM entry with invalid host-state field(s)",
        9 => "VMPTRLD with invalid physical address",
        10 => "VMPTRLD with VMXON pointer",
        11 => "VMPTRLD with incorrect VMCS revision identifier",
        12 => "VMREAD/VMWRITE from/to unsupported VMCS component",
        13 => "VMWRITE to read-only VMCS component",
        15 => "VMXON executed in VMX root operation",
        16 => "VM entry with invalid executive-VMCS pointer",
        17 => "VM entry with non-launched executive VMCS",
        18 => "VM entry with executive-VMCS pointer not VMXON pointer",
        19 => "VMCALL with non-clear VMCS",
        20 => "VMCALL with invalid VM-exit control fields",
        22 => "VMCALL with incorrect MSEG revision identifier",
        23 => "VMXOFF under dual-monitor treatment of SMIs and SMM",
        24 => "VMCALL with invalid SMM-monitor features",
        25 => "VM entry with invalid VM-execution control fields in executive VMCS",
        26 => "VM entry with events blocked by MOV SS",
        28 => "invalid operand to INVEPT/INVVPID",
        _ => "unknown VM-instruction error",
    }
}

/// Segment access rights in the VMX layout (SDM 25.4.1): type 3:0, S 4,
/// DPL 6:5, P 7, AVL 12, L 13, D/B 14, G 15, unusable 16.
pub mod ar {
    pub const UNUSABLE: u32 = 1 << 16;
    pub const S: u32 = 1 << 4;
    pub const P: u32 = 1 << 7;
    pub const L: u32 = 1 << 13;
    pub const DB: u32 = 1 << 14;
    pub const G: u32 = 1 << 15;
    /// Real-mode code: present, S, execute/read, accessed.
    pub const REAL_CODE: u32 = 0x9b;
    /// Real-mode data: present, S, read/write, accessed.
    pub const REAL_DATA: u32 = 0x93;
    /// Busy 32/64-bit TSS, present (valid in every mode).
    pub const TSS_BUSY: u32 = 0x8b;
    /// Flat 32-bit code: type 0xb, S, P, D/B, G.
    pub const FLAT32_CODE: u32 = 0x9b | DB | G;
    /// Flat 32-bit data: type 0x3, S, P, D/B, G.
    pub const FLAT32_DATA: u32 = 0x93 | DB | G;

    pub const fn seg_type(ar: u32) -> u32 {
        ar & 15
    }
    pub const fn dpl(ar: u32) -> u32 {
        (ar >> 5) & 3
    }
    pub const fn usable(ar: u32) -> bool {
        ar & UNUSABLE == 0
    }
    /// The VMCS value for the vendor-neutral attribute (0 = unusable).
    pub const fn from_attr(attr: u16) -> u32 {
        if attr == 0 {
            UNUSABLE
        } else {
            attr as u32 & 0xf0ff
        }
    }
    /// The vendor-neutral attribute for a VMCS value (unusable = 0).
    pub const fn to_attr(ar: u32) -> u16 {
        if ar & UNUSABLE != 0 {
            0
        } else {
            (ar & 0xf0ff) as u16
        }
    }
}

/// The VM-entry interruption-information word (and error code) for an
/// event. `protected`: guest CR0.PE; in real mode no error code is pushed
/// (SDM 27.2.1.3: with unrestricted guest and PE = 0 the deliver-error-code
/// bit must be 0).
pub fn entry_event(ev: Event, protected: bool) -> (u32, Option<u32>) {
    match ev {
        Event::Interrupt(v) => (intr::VALID | (intr::EXTERNAL << 8) | v as u32, None),
        Event::Nmi => (intr::VALID | (intr::NMI << 8) | 2, None),
        Event::Exception { vector, error_code } => {
            let has_code = matches!(vector, 8 | 10..=14 | 17 | 21) && protected;
            let mut info = intr::VALID | (intr::HARDWARE_EXCEPTION << 8) | (vector as u32 & 0xff);
            match error_code {
                Some(c) if has_code => {
                    info |= intr::ERROR_CODE_VALID;
                    (info, Some(c))
                }
                _ if has_code => (info | intr::ERROR_CODE_VALID, Some(0)),
                _ => (info, None),
            }
        }
    }
}

/// The guest state the software checks look at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestState {
    pub cr0: u64,
    pub cr4: u64,
    pub efer: u64,
    pub rflags: u64,
    pub entry_controls: u32,
    pub unrestricted: bool,
    pub cs_ar: u32,
    pub ss_ar: u32,
    pub tr_ar: u32,
    pub ldtr_ar: u32,
    pub activity: u32,
    pub interruptibility: u32,
    pub link_pointer: u64,
}

/// A software mirror of the guest-state checks (SDM 27.3.1) that keel's
/// own state can get wrong; run after a failed entry to name the check.
/// Hardware (and Bochs' log) stay the authority: `None` means "none of
/// these".
pub fn check_guest_state(
    g: &GuestState,
    cr0_fixed: (u64, u64),
    cr4_fixed: (u64, u64),
) -> Option<&'static str> {
    use bits::*;
    let exempt = if g.unrestricted { CR0_PE | CR0_PG } else { 0 };
    if apply_fixed(g.cr0, cr0_fixed.0, cr0_fixed.1, exempt) != g.cr0 {
        return Some("guest CR0 violates the VMX fixed bits (CR0.NE?)");
    }
    if g.cr0 & CR0_PG != 0 && g.cr0 & CR0_PE == 0 {
        return Some("guest CR0.PG set without CR0.PE");
    }
    if apply_fixed(g.cr4, cr4_fixed.0, cr4_fixed.1, 0) != g.cr4 {
        return Some("guest CR4 violates the VMX fixed bits (CR4.VMXE?)");
    }
    let ia32e = g.entry_controls & entry_ctl::IA32E_MODE_GUEST != 0;
    if ia32e && (g.cr0 & CR0_PG == 0 || g.cr4 & CR4_PAE == 0) {
        return Some("IA-32e mode guest without CR0.PG and CR4.PAE");
    }
    if g.entry_controls & entry_ctl::LOAD_EFER != 0 {
        if (g.efer & EFER_LMA != 0) != ia32e {
            return Some("guest EFER.LMA differs from the IA-32e mode guest entry control");
        }
        if g.cr0 & CR0_PG != 0 && (g.efer & EFER_LMA != 0) != (g.efer & EFER_LME != 0) {
            return Some("guest EFER.LME differs from EFER.LMA with paging on");
        }
    }
    if g.rflags & RFLAGS_FIXED == 0 || g.rflags & 0xffff_ffff_ffc0_8028 != 0 {
        return Some("guest RFLAGS reserved bits");
    }
    if (ia32e || g.cr0 & CR0_PE == 0) && g.rflags & RFLAGS_VM != 0 {
        return Some("guest RFLAGS.VM in IA-32e or real mode");
    }
    let cs_type = ar::seg_type(g.cs_ar);
    let cs_ok = matches!(cs_type, 9 | 11 | 13 | 15) || (cs_type == 3 && g.unrestricted);
    if !cs_ok || g.cs_ar & ar::S == 0 || g.cs_ar & ar::P == 0 {
        return Some("guest CS access rights (type/S/P)");
    }
    if ia32e && g.cs_ar & ar::L != 0 && g.cs_ar & ar::DB != 0 {
        return Some("guest CS has both L and D/B in IA-32e mode");
    }
    if ar::usable(g.ss_ar) && !matches!(ar::seg_type(g.ss_ar), 3 | 7) {
        return Some("guest SS type");
    }
    if g.cr0 & CR0_PE == 0 && g.unrestricted && ar::usable(g.ss_ar) && ar::dpl(g.ss_ar) != 0 {
        return Some("guest SS.DPL non-zero in real mode");
    }
    let tr_type = ar::seg_type(g.tr_ar);
    if !ar::usable(g.tr_ar)
        || g.tr_ar & ar::S != 0
        || g.tr_ar & ar::P == 0
        || !(tr_type == 11 || (tr_type == 3 && !ia32e))
    {
        return Some("guest TR access rights (must be a present busy TSS)");
    }
    if ar::usable(g.ldtr_ar)
        && (ar::seg_type(g.ldtr_ar) != 2 || g.ldtr_ar & ar::S != 0 || g.ldtr_ar & ar::P == 0)
    {
        return Some("guest LDTR access rights");
    }
    if g.activity > 3 {
        return Some("guest activity state");
    }
    if g.interruptibility & (BLOCK_STI | BLOCK_MOV_SS) == (BLOCK_STI | BLOCK_MOV_SS) {
        return Some("guest interruptibility: STI and MOV SS blocking both set");
    }
    if g.interruptibility & BLOCK_STI != 0 && g.rflags & RFLAGS_IF == 0 {
        return Some("guest interruptibility: STI blocking with RFLAGS.IF = 0");
    }
    if g.link_pointer != u64::MAX {
        return Some("VMCS link pointer is not all ones");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    // Bochs corei7_skylake_x values (shared/notes/emulators.md).
    const CR0_FIXED: (u64, u64) = (0x8000_0021, 0xffff_ffff);
    const CR4_FIXED: (u64, u64) = (0x2000, 0x0037_27ff);

    #[test]
    fn field_encodings_and_widths() {
        assert_eq!(Field::Vpid.width(), 16);
        assert_eq!(Field::EptPointer.encoding(), 0x201a);
        assert_eq!(Field::EptPointer.width(), 64);
        assert_eq!(Field::ExitReason.width(), 32);
        assert_eq!(Field::GuestRip.width(), 64);
        assert_eq!(Field::HostRip.encoding(), 0x6c16);
        // Each segment's fields follow the architectural stride of 2.
        for (i, s) in Seg::ALL.iter().enumerate() {
            let (sel, base, limit, ar) = s.fields();
            let i = i as u32 * 2;
            assert_eq!(
                (sel as u32, base as u32, limit as u32, ar as u32),
                (0x800 + i, 0x6806 + i, 0x4800 + i, 0x4814 + i)
            );
        }
    }

    #[test]
    fn control_adjustment() {
        // must-be-1 = 0x16, may-be-1 = 0xff.
        let cap = (0xffu64 << 32) | 0x16;
        assert_eq!(adjust_controls(0x81, cap), Ok(0x97));
        assert_eq!(adjust_controls(0x100 | 0x1, cap), Err(0x100));
        assert_eq!(optional_controls(0x101, cap), 0x1);
        // skylake_x secondary controls: EPT, VPID and unrestricted guest allowed.
        let proc2 = 0x0217_7fff_0000_0000;
        let want = proc2::ENABLE_EPT | proc2::ENABLE_VPID | proc2::UNRESTRICTED_GUEST;
        assert_eq!(adjust_controls(want, proc2), Ok(want));
    }

    #[test]
    fn fixed_bits() {
        // Real mode under unrestricted guest: PE/PG exempt, NE forced.
        assert_eq!(
            apply_fixed(
                0x6000_0010,
                CR0_FIXED.0,
                CR0_FIXED.1,
                bits::CR0_PE | bits::CR0_PG
            ),
            0x6000_0030
        );
        assert_eq!(apply_fixed(0x10, CR0_FIXED.0, CR0_FIXED.1, 0), 0x8000_0031);
        assert_eq!(apply_fixed(0, CR4_FIXED.0, CR4_FIXED.1, 0), 0x2000);
        assert_eq!(apply_fixed(1 << 40, 0, 0xffff_ffff, 0), 0);
    }

    fn raw(reason: u32, q: u64, len: u32) -> RawExit {
        RawExit {
            reason,
            qualification: q,
            instruction_len: len,
            ..Default::default()
        }
    }

    #[test]
    fn decoding() {
        let mut r = Regs {
            rcx: 0x4000_00f0,
            rax: 0xffff_ffff_1234_5678,
            rdx: 0x9abc,
            ..Default::default()
        };
        assert_eq!(decode_exit(&raw(10, 0, 2), &r), Exit::Cpuid { len: 2 });
        assert_eq!(decode_exit(&raw(18, 0, 3), &r), Exit::Hypercall { len: 3 });
        assert_eq!(decode_exit(&raw(12, 0, 1), &r), Exit::Hlt { len: 1 });
        assert_eq!(
            decode_exit(&raw(31, 0, 2), &r),
            Exit::MsrRead {
                msr: 0x4000_00f0,
                len: 2
            }
        );
        assert_eq!(
            decode_exit(&raw(32, 0, 2), &r),
            Exit::MsrWrite {
                msr: 0x4000_00f0,
                value: 0x9abc_1234_5678,
                len: 2
            }
        );
        // out dx, al to 0x510: size 1, out, port in bits 31:16.
        assert_eq!(
            decode_exit(&raw(30, 0x0510_0000, 1), &r),
            Exit::Io {
                port: 0x510,
                size: 1,
                write: true,
                string: false,
                rep: false,
                len: 1
            }
        );
        // in eax, dx (size 4, in); rep insw (string, rep, size 2).
        assert_eq!(
            decode_exit(&raw(30, 0x0511_0008 | 3, 1), &r),
            Exit::Io {
                port: 0x511,
                size: 4,
                write: false,
                string: false,
                rep: false,
                len: 1
            }
        );
        assert_eq!(
            decode_exit(&raw(30, 0x0080_0039, 2), &r),
            Exit::Io {
                port: 0x80,
                size: 2,
                write: false,
                string: true,
                rep: true,
                len: 2
            }
        );
        // mov cr0, rbx (gpr 3), mov rax, cr4, lmsw.
        assert_eq!(
            decode_exit(&raw(28, 0x300, 3), &r),
            Exit::CrAccess {
                cr: 0,
                write: true,
                gpr: 3,
                len: 3
            }
        );
        assert_eq!(
            decode_exit(&raw(28, 0x14, 3), &r),
            Exit::CrAccess {
                cr: 4,
                write: false,
                gpr: 0,
                len: 3
            }
        );
        assert_eq!(
            decode_exit(&raw(28, 0x30, 3), &r),
            Exit::CrAccess {
                cr: 0,
                write: true,
                gpr: 0xff,
                len: 3
            }
        );
        // EPT violations as Bochs reports them: 0x181 read, 0x182 write of
        // an unmapped page; a fetch from a present RW page.
        let mut e = raw(48, 0x182, 0);
        e.guest_physical = 0x40_1234;
        assert_eq!(
            decode_exit(&e, &r),
            Exit::NestedPageFault {
                gpa: 0x40_1234,
                access: Access::Write,
                present: false
            }
        );
        e.qualification = 0x181;
        assert!(matches!(
            decode_exit(&e, &r),
            Exit::NestedPageFault {
                access: Access::Read,
                present: false,
                ..
            }
        ));
        e.qualification = 0x18c;
        assert!(matches!(
            decode_exit(&e, &r),
            Exit::NestedPageFault {
                access: Access::Execute,
                present: true,
                ..
            }
        ));
        assert_eq!(decode_exit(&raw(2, 0, 0), &r), Exit::TripleFault);
        assert_eq!(decode_exit(&raw(4, 0x9, 0), &r), Exit::Sipi { vector: 9 });
        assert_eq!(decode_exit(&raw(7, 0, 0), &r), Exit::InterruptWindow);
        assert_eq!(decode_exit(&raw(1, 0, 0), &r), Exit::ExternalInterrupt);
        assert_eq!(decode_exit(&raw(52, 0, 0), &r), Exit::PreemptionTimer);
        assert_eq!(decode_exit(&raw(55, 0, 3), &r), Exit::Xsetbv { len: 3 });
        assert_eq!(decode_exit(&raw(36, 0, 3), &r), Exit::MonitorMwait);
        assert_eq!(decode_exit(&raw(39, 0, 3), &r), Exit::MonitorMwait);
        assert_eq!(
            decode_exit(&raw(9, 0, 0), &r),
            Exit::Unhandled { reason: 9 }
        );
        let mut x = raw(0, 0, 0);
        x.interruption_info =
            intr::VALID | (intr::HARDWARE_EXCEPTION << 8) | intr::ERROR_CODE_VALID | 13;
        x.interruption_error = 0x18;
        assert_eq!(
            decode_exit(&x, &r),
            Exit::Exception {
                vector: 13,
                error_code: Some(0x18)
            }
        );
        r.rcx = 0xc000_0080;
        assert_eq!(
            decode_exit(&raw(31, 0, 2), &r),
            Exit::MsrRead {
                msr: 0xc000_0080,
                len: 2
            }
        );
    }

    #[test]
    fn entry_failures() {
        let r = Regs::default();
        match decode_exit(&raw(reason::ENTRY_FAILURE | 33, 0, 0), &r) {
            Exit::InvalidGuestState { detail, code } => {
                assert_eq!(detail, "VM entry failed: invalid guest state");
                assert_eq!(code, 33);
            }
            e => panic!("{e:?}"),
        }
        match decode_exit(&raw(reason::ENTRY_FAILURE | 33, 4, 0), &r) {
            Exit::InvalidGuestState { detail, .. } => {
                assert!(detail.ends_with("VMCS link pointer"))
            }
            e => panic!("{e:?}"),
        }
        assert!(matches!(
            decode_exit(&raw(reason::ENTRY_FAILURE | 34, 1, 0), &r),
            Exit::InvalidGuestState { .. }
        ));
        assert!(matches!(
            decode_exit(&raw(49, 0, 0), &r),
            Exit::InvalidGuestState { .. }
        ));
    }

    #[test]
    fn vmx_instructions_and_errors() {
        assert!(
            is_vmx_instruction(19)
                && is_vmx_instruction(27)
                && is_vmx_instruction(50)
                && is_vmx_instruction(53)
        );
        assert!(!is_vmx_instruction(18) && !is_vmx_instruction(28));
        assert_eq!(
            instruction_error(7),
            "VM entry with invalid control field(s)"
        );
        assert_eq!(
            instruction_error(8),
            "VM entry with invalid host-state field(s)"
        );
        assert_eq!(instruction_error(99), "unknown VM-instruction error");
    }

    #[test]
    fn access_rights() {
        assert_eq!(ar::from_attr(0), ar::UNUSABLE);
        assert_eq!(ar::to_attr(ar::UNUSABLE | 0x82), 0);
        assert_eq!(ar::from_attr(0xa09b), 0xa09b);
        assert_eq!(ar::to_attr(0xa09b), 0xa09b);
        assert_eq!(ar::from_attr(0x0f9b), 0x9b); // reserved bits 11:8 dropped
        assert_eq!(ar::seg_type(ar::REAL_CODE), 11);
        assert_eq!(ar::dpl(0xe3), 3);
        assert!(ar::usable(ar::TSS_BUSY) && !ar::usable(ar::UNUSABLE));
    }

    #[test]
    fn event_encoding() {
        assert_eq!(
            entry_event(Event::Interrupt(0x30), false),
            (0x8000_0030, None)
        );
        assert_eq!(entry_event(Event::Nmi, true), (0x8000_0202, None));
        // #GP(0) in protected mode carries its code; in real mode it must not.
        assert_eq!(
            entry_event(
                Event::Exception {
                    vector: 13,
                    error_code: Some(0)
                },
                true
            ),
            (0x8000_0b0d, Some(0))
        );
        assert_eq!(
            entry_event(
                Event::Exception {
                    vector: 13,
                    error_code: Some(0)
                },
                false
            ),
            (0x8000_030d, None)
        );
        // #UD never has one, even if asked; #PF without a code gets 0.
        assert_eq!(
            entry_event(
                Event::Exception {
                    vector: 6,
                    error_code: Some(5)
                },
                true
            ),
            (0x8000_0306, None)
        );
        assert_eq!(
            entry_event(
                Event::Exception {
                    vector: 14,
                    error_code: None
                },
                true
            ),
            (0x8000_0b0e, Some(0))
        );
    }

    fn real_mode() -> GuestState {
        GuestState {
            cr0: 0x6000_0030,
            cr4: 0x2000,
            efer: 0,
            rflags: 2,
            entry_controls: entry_ctl::LOAD_EFER,
            unrestricted: true,
            cs_ar: ar::REAL_CODE,
            ss_ar: ar::REAL_DATA,
            tr_ar: ar::TSS_BUSY,
            ldtr_ar: ar::UNUSABLE,
            activity: 0,
            interruptibility: 0,
            link_pointer: u64::MAX,
        }
    }

    #[test]
    fn guest_state_checks() {
        let ok = real_mode();
        assert_eq!(check_guest_state(&ok, CR0_FIXED, CR4_FIXED), None);
        let chk = |f: &dyn Fn(&mut GuestState)| {
            let mut g = real_mode();
            f(&mut g);
            check_guest_state(&g, CR0_FIXED, CR4_FIXED).unwrap_or("none")
        };
        assert!(chk(&|g| g.cr0 &= !bits::CR0_NE).contains("CR0"));
        assert!(chk(&|g| g.cr4 = 0).contains("CR4"));
        assert!(chk(&|g| g.unrestricted = false).contains("CR0"));
        assert!(chk(&|g| g.cr0 |= bits::CR0_PG).contains("PG set without"));
        assert!(chk(&|g| g.efer = bits::EFER_LMA).contains("LMA"));
        assert!(chk(&|g| g.entry_controls |= entry_ctl::IA32E_MODE_GUEST).contains("IA-32e"));
        assert!(chk(&|g| g.rflags = 0).contains("RFLAGS"));
        assert!(chk(&|g| g.tr_ar = 0x89).contains("TR"));
        assert!(chk(&|g| g.ss_ar = 0xf3).contains("SS.DPL"));
        assert!(chk(&|g| g.interruptibility = 1).contains("STI"));
        assert!(chk(&|g| g.link_pointer = 0).contains("link"));
        // Long mode: PG+PE+PAE, LME=LMA, 64-bit code segment.
        let mut lm = real_mode();
        lm.cr0 = 0x8000_0031;
        lm.cr4 = 0x2020;
        lm.efer = bits::EFER_LME | bits::EFER_LMA;
        lm.entry_controls |= entry_ctl::IA32E_MODE_GUEST;
        lm.cs_ar = 0xa09b;
        assert_eq!(check_guest_state(&lm, CR0_FIXED, CR4_FIXED), None);
        lm.cs_ar |= ar::DB;
        assert!(check_guest_state(&lm, CR0_FIXED, CR4_FIXED)
            .unwrap()
            .contains("L and D/B"));
    }
}
