//! `hvm_op` (hypercall 34, `hvm/hvm_op.h`, `hvm/params.h`): the parameters
//! a toolstack sets on a new HVM/PVH domain, and ([`save`]) the HVM save
//! records of `gethvmcontext`/`sethvmcontext`.

use crate::DomId;

pod! {
    "struct xen_hvm_param" =>
    /// `struct xen_hvm_param` ([`SET_PARAM`], [`GET_PARAM`]).
    pub struct HvmParam {
        pub domid: DomId,
        pub pad: u16,
        /// [`param`] index.
        pub index: u32,
        /// IN for set, OUT for get.
        pub value: u64,
    }
}

consts! {
    /// [`HvmParam`].
    SET_PARAM: u32 = 0 => "HVMOP_set_param";
    /// [`HvmParam`].
    GET_PARAM: u32 = 1 => "HVMOP_get_param";
}

/// HVM parameter indices (`HVM_PARAM_*`) and their values.
pub mod param {
    consts! {
        /// How events reach the guest; the type is in bits 56..64
        /// ([`CALLBACK_IRQ_TYPE_MASK`]), e.g. [`CALLBACK_TYPE_VECTOR`].
        CALLBACK_IRQ: u32 = 0 => "HVM_PARAM_CALLBACK_IRQ";
        CALLBACK_IRQ_TYPE_MASK: u64 = 0xff00_0000_0000_0000 => "HVM_PARAM_CALLBACK_IRQ_TYPE_MASK";
        CALLBACK_TYPE_GSI: u64 = 0 => "HVM_PARAM_CALLBACK_TYPE_GSI";
        CALLBACK_TYPE_PCI_INTX: u64 = 1 => "HVM_PARAM_CALLBACK_TYPE_PCI_INTX";
        CALLBACK_TYPE_VECTOR: u64 = 2 => "HVM_PARAM_CALLBACK_TYPE_VECTOR";
        /// The xenstore ring's GFN.
        STORE_PFN: u32 = 1 => "HVM_PARAM_STORE_PFN";
        /// The xenstore ring's event channel (in the guest).
        STORE_EVTCHN: u32 = 2 => "HVM_PARAM_STORE_EVTCHN";
        IOREQ_PFN: u32 = 5 => "HVM_PARAM_IOREQ_PFN";
        BUFIOREQ_PFN: u32 = 6 => "HVM_PARAM_BUFIOREQ_PFN";
        VIRIDIAN: u32 = 9 => "HVM_PARAM_VIRIDIAN";
        /// How missed timer ticks are delivered (`TIMER_MODE_*`); libxl
        /// sets it on every HVM/PVH domain.
        TIMER_MODE: u32 = 10 => "HVM_PARAM_TIMER_MODE";
        TIMER_MODE_DELAY_FOR_MISSED_TICKS: u64 = 0 => "HVMPTM_delay_for_missed_ticks";
        TIMER_MODE_NO_DELAY_FOR_MISSED_TICKS: u64 = 1 => "HVMPTM_no_delay_for_missed_ticks";
        TIMER_MODE_NO_MISSED_TICKS_PENDING: u64 = 2 => "HVMPTM_no_missed_ticks_pending";
        TIMER_MODE_ONE_MISSED_TICK_PENDING: u64 = 3 => "HVMPTM_one_missed_tick_pending";
        HPET_ENABLED: u32 = 11 => "HVM_PARAM_HPET_ENABLED";
        IDENT_PT: u32 = 12 => "HVM_PARAM_IDENT_PT";
        ACPI_S_STATE: u32 = 14 => "HVM_PARAM_ACPI_S_STATE";
        VM86_TSS: u32 = 15 => "HVM_PARAM_VM86_TSS";
        VPT_ALIGN: u32 = 16 => "HVM_PARAM_VPT_ALIGN";
        /// The PV console ring's GFN.
        CONSOLE_PFN: u32 = 17 => "HVM_PARAM_CONSOLE_PFN";
        /// The PV console's event channel (in the guest).
        CONSOLE_EVTCHN: u32 = 18 => "HVM_PARAM_CONSOLE_EVTCHN";
        ACPI_IOPORTS_LOCATION: u32 = 19 => "HVM_PARAM_ACPI_IOPORTS_LOCATION";
        BUFIOREQ_EVTCHN: u32 = 26 => "HVM_PARAM_BUFIOREQ_EVTCHN";
        PAGING_RING_PFN: u32 = 27 => "HVM_PARAM_PAGING_RING_PFN";
        MONITOR_RING_PFN: u32 = 28 => "HVM_PARAM_MONITOR_RING_PFN";
        SHARING_RING_PFN: u32 = 29 => "HVM_PARAM_SHARING_RING_PFN";
        TRIPLE_FAULT_REASON: u32 = 31 => "HVM_PARAM_TRIPLE_FAULT_REASON";
        IOREQ_SERVER_PFN: u32 = 32 => "HVM_PARAM_IOREQ_SERVER_PFN";
        NR_IOREQ_SERVER_PAGES: u32 = 33 => "HVM_PARAM_NR_IOREQ_SERVER_PAGES";
        VM_GENERATION_ID_ADDR: u32 = 34 => "HVM_PARAM_VM_GENERATION_ID_ADDR";
        /// Alternate p2m mode (`ALTP2M_*`); libxl sets it (0) on every domain.
        ALTP2M: u32 = 35 => "HVM_PARAM_ALTP2M";
        ALTP2M_DISABLED: u64 = 0 => "XEN_ALTP2M_disabled";
        ALTP2M_MIXED: u64 = 1 => "XEN_ALTP2M_mixed";
        ALTP2M_EXTERNAL: u64 = 2 => "XEN_ALTP2M_external";
        ALTP2M_LIMITED: u64 = 3 => "XEN_ALTP2M_limited";
        X87_FIP_WIDTH: u32 = 36 => "HVM_PARAM_X87_FIP_WIDTH";
        VM86_TSS_SIZED: u32 = 37 => "HVM_PARAM_VM86_TSS_SIZED";
        MCA_CAP: u32 = 38 => "HVM_PARAM_MCA_CAP";
        /// Number of parameter indices.
        NR_PARAMS: u32 = 39 => "HVM_NR_PARAMS";
    }
}

pub mod save {
    //! HVM save records (`hvm/save.h`, `arch-x86/hvm/save.h`): the buffer of
    //! [`domctl::HvmContext`](crate::domctl::HvmContext) is a sequence of
    //! [`Descriptor`] + record, from a [`HEADER`] record to an [`END`] one
    //! (a descriptor with no record after it).

    pod! {
        "struct hvm_save_descriptor" =>
        /// `struct hvm_save_descriptor`: precedes each record.
        pub struct Descriptor {
            /// Record type ([`HEADER`], [`CPU`], [`MTRR`], [`END`], ...).
            pub typecode: u16,
            /// vCPU number for per-vCPU records, else 0.
            pub instance: u16,
            /// Bytes of record after this descriptor.
            pub length: u32,
        }

        "struct hvm_save_header" =>
        /// `struct hvm_save_header` ([`HEADER`] record).
        pub struct Header {
            /// [`FILE_MAGIC`].
            pub magic: u32,
            /// [`FILE_VERSION`].
            pub version: u32,
            pub changeset: u64,
            /// CPUID leaf 1 EAX of the saving machine.
            pub cpuid: u32,
            pub gtsc_khz: u32,
        }

        "struct hvm_hw_cpu" =>
        /// `struct hvm_hw_cpu` ([`CPU`] record, one per vCPU): the
        /// register state `sethvmcontext` loads (libxl starts a PVH BSP
        /// with CR0 = PE|ET, flat 32-bit segments, RIP = the kernel's
        /// PVH entry, RBX = the start_info address).
        pub struct HwCpu {
            /// FXSAVE image.
            pub fpu_regs: [u8; 512],
            pub rax: u64,
            pub rbx: u64,
            pub rcx: u64,
            pub rdx: u64,
            pub rbp: u64,
            pub rsi: u64,
            pub rdi: u64,
            pub rsp: u64,
            pub r8: u64,
            pub r9: u64,
            pub r10: u64,
            pub r11: u64,
            pub r12: u64,
            pub r13: u64,
            pub r14: u64,
            pub r15: u64,
            pub rip: u64,
            pub rflags: u64,
            pub cr0: u64,
            pub cr2: u64,
            pub cr3: u64,
            pub cr4: u64,
            pub dr0: u64,
            pub dr1: u64,
            pub dr2: u64,
            pub dr3: u64,
            pub dr6: u64,
            pub dr7: u64,
            pub cs_sel: u32,
            pub ds_sel: u32,
            pub es_sel: u32,
            pub fs_sel: u32,
            pub gs_sel: u32,
            pub ss_sel: u32,
            pub tr_sel: u32,
            pub ldtr_sel: u32,
            pub cs_limit: u32,
            pub ds_limit: u32,
            pub es_limit: u32,
            pub fs_limit: u32,
            pub gs_limit: u32,
            pub ss_limit: u32,
            pub tr_limit: u32,
            pub ldtr_limit: u32,
            pub idtr_limit: u32,
            pub gdtr_limit: u32,
            pub cs_base: u64,
            pub ds_base: u64,
            pub es_base: u64,
            pub fs_base: u64,
            pub gs_base: u64,
            pub ss_base: u64,
            pub tr_base: u64,
            pub ldtr_base: u64,
            pub idtr_base: u64,
            pub gdtr_base: u64,
            /// Segment attributes in Xen's 12-bit format
            /// (`segment_register.attr`: type, S, DPL, P, AVL, L, D/B, G;
            /// a flat 32-bit code segment is 0xc9b).
            pub cs_arbytes: u32,
            pub ds_arbytes: u32,
            pub es_arbytes: u32,
            pub fs_arbytes: u32,
            pub gs_arbytes: u32,
            pub ss_arbytes: u32,
            pub tr_arbytes: u32,
            pub ldtr_arbytes: u32,
            pub sysenter_cs: u64,
            pub sysenter_esp: u64,
            pub sysenter_eip: u64,
            pub shadow_gs: u64,
            /// Obsolete, ignored.
            pub msr_flags: u64,
            pub msr_lstar: u64,
            pub msr_star: u64,
            pub msr_cstar: u64,
            pub msr_syscall_mask: u64,
            pub msr_efer: u64,
            pub msr_tsc_aux: u64,
            /// The guest's TSC.
            pub tsc: u64,
            /// Pending event: vector in bits 0..8, type 8..11, error code
            /// valid bit 11, valid bit 31 (C bitfields over this word).
            pub pending_event: u32,
            pub error_code: u32,
            /// [`FPU_INITIALISED`].
            pub flags: u32,
            pub pad0: u32,
        }

        "struct hvm_hw_mtrr" =>
        /// `struct hvm_hw_mtrr` ([`MTRR`] record, one per vCPU).
        pub struct HwMtrr {
            pub msr_pat_cr: u64,
            /// Base/mask pairs of the 8 variable ranges.
            pub msr_mtrr_var: [u64; 16],
            pub msr_mtrr_fixed: [u64; 11],
            pub msr_mtrr_cap: u64,
            pub msr_mtrr_def_type: u64,
        }
    }

    consts! {
        /// Ends the record list (no record follows its descriptor).
        END: u16 = 0 => "HVM_SAVE_CODE(END)";
        /// [`Header`].
        HEADER: u16 = 1 => "HVM_SAVE_CODE(HEADER)";
        /// [`HwCpu`].
        CPU: u16 = 2 => "HVM_SAVE_CODE(CPU)";
        PIC: u16 = 3 => "HVM_SAVE_CODE(PIC)";
        IOAPIC: u16 = 4 => "HVM_SAVE_CODE(IOAPIC)";
        LAPIC: u16 = 5 => "HVM_SAVE_CODE(LAPIC)";
        LAPIC_REGS: u16 = 6 => "HVM_SAVE_CODE(LAPIC_REGS)";
        PIT: u16 = 10 => "HVM_SAVE_CODE(PIT)";
        RTC: u16 = 11 => "HVM_SAVE_CODE(RTC)";
        HPET: u16 = 12 => "HVM_SAVE_CODE(HPET)";
        PMTIMER: u16 = 13 => "HVM_SAVE_CODE(PMTIMER)";
        /// [`HwMtrr`].
        MTRR: u16 = 14 => "HVM_SAVE_CODE(MTRR)";
        TSC_ADJUST: u16 = 19 => "HVM_SAVE_CODE(TSC_ADJUST)";
        /// [`Header::magic`].
        FILE_MAGIC: u32 = 0x5438_1286 => "HVM_FILE_MAGIC";
        /// [`Header::version`].
        FILE_VERSION: u32 = 1 => "HVM_FILE_VERSION";
        /// [`HwCpu::flags`]: the FPU state is valid.
        FPU_INITIALISED: u32 = 1 << 0 => "XEN_X86_FPU_INITIALISED";
        /// Length of a [`HEADER`] record.
        HEADER_LENGTH: usize = core::mem::size_of::<Header>() => "HVM_SAVE_LENGTH(HEADER)";
        /// Length of a [`CPU`] record.
        CPU_LENGTH: usize = core::mem::size_of::<HwCpu>() => "HVM_SAVE_LENGTH(CPU)";
        /// Length of an [`MTRR`] record.
        MTRR_LENGTH: usize = core::mem::size_of::<HwMtrr>() => "HVM_SAVE_LENGTH(MTRR)";
        /// Variable MTRR ranges in [`HwMtrr`].
        MTRR_VCNT: usize = 8 => "MTRR_VCNT";
        /// Fixed-range MTRR MSRs in [`HwMtrr`].
        NUM_FIXED_MSR: usize = 11 => "NUM_FIXED_MSR";
    }
}

/// The PVH boot ABI (`arch-x86/hvm/start_info.h`): what a PVH kernel finds
/// at `%ebx` when it starts at its `XEN_ELFNOTE_PHYS32_ENTRY`. keel writes
/// it for dom0; keel-builder writes it for a domU.
pub mod start_info {
    pod! {
        "struct hvm_start_info" =>
        /// `struct hvm_start_info` (version 1: with the memory map).
        pub struct HvmStartInfo {
            /// [`MAGIC_VALUE`].
            pub magic: u32,
            pub version: u32,
            /// `SIF_*`.
            pub flags: u32,
            pub nr_modules: u32,
            /// Guest-physical address of `nr_modules` [`HvmModlistEntry`]s.
            pub modlist_paddr: u64,
            /// Guest-physical address of the NUL-terminated command line.
            pub cmdline_paddr: u64,
            /// Guest-physical address of the ACPI RSDP (0: none).
            pub rsdp_paddr: u64,
            /// Guest-physical address of `memmap_entries`
            /// [`HvmMemmapTableEntry`]s (version 1).
            pub memmap_paddr: u64,
            pub memmap_entries: u32,
            pub reserved: u32,
        }

        "struct hvm_modlist_entry" =>
        /// `struct hvm_modlist_entry`: a module (the ramdisk).
        pub struct HvmModlistEntry {
            pub paddr: u64,
            pub size: u64,
            /// 0: no command line for this module.
            pub cmdline_paddr: u64,
            pub reserved: u64,
        }

        "struct hvm_memmap_table_entry" =>
        /// `struct hvm_memmap_table_entry`: one range of the memory map.
        pub struct HvmMemmapTableEntry {
            pub addr: u64,
            pub size: u64,
            /// `MEMMAP_TYPE_*` (the e820 types).
            pub kind: u32 = "type",
            pub reserved: u32,
        }
    }

    consts! {
        /// [`HvmStartInfo::magic`].
        MAGIC_VALUE: u32 = 0x336e_c578 => "XEN_HVM_START_MAGIC_VALUE";
        MEMMAP_TYPE_RAM: u32 = 1 => "XEN_HVM_MEMMAP_TYPE_RAM";
        MEMMAP_TYPE_RESERVED: u32 = 2 => "XEN_HVM_MEMMAP_TYPE_RESERVED";
        MEMMAP_TYPE_ACPI: u32 = 3 => "XEN_HVM_MEMMAP_TYPE_ACPI";
        MEMMAP_TYPE_NVS: u32 = 4 => "XEN_HVM_MEMMAP_TYPE_NVS";
        MEMMAP_TYPE_UNUSABLE: u32 = 5 => "XEN_HVM_MEMMAP_TYPE_UNUSABLE";
        MEMMAP_TYPE_DISABLED: u32 = 6 => "XEN_HVM_MEMMAP_TYPE_DISABLED";
        MEMMAP_TYPE_PMEM: u32 = 7 => "XEN_HVM_MEMMAP_TYPE_PMEM";
    }
}
