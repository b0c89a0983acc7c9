//! x86 parts of the toolstack ABI (`arch-x86/xen.h`): the per-domain
//! configuration inside `createdomain`/`getdomaininfo`, and the serialised
//! CPUID leaf and MSR entries of the CPU policy operations
//! ([`domctl::CpuPolicy`](crate::domctl::CpuPolicy),
//! [`sysctl::CpuPolicy`](crate::sysctl::CpuPolicy)).

pod! {
    "struct xen_arch_domainconfig" =>
    /// `struct xen_arch_domainconfig` (x86).
    pub struct ArchDomainConfig {
        /// `XEN_X86_EMU_*`: the devices Xen emulates for the domain. A PVH
        /// guest gets [`EMU_LAPIC`] only.
        pub emulation_flags: u32,
        /// [`MSR_RELAXED`].
        pub misc_flags: u32,
    }

    "xen_cpuid_leaf_t" =>
    /// `xen_cpuid_leaf_t`: one CPUID leaf (and subleaf) of a policy.
    pub struct CpuidLeaf {
        pub leaf: u32,
        /// [`CPUID_NO_SUBLEAF`] for leaves without subleaves.
        pub subleaf: u32,
        pub a: u32,
        pub b: u32,
        pub c: u32,
        pub d: u32,
    }

    "xen_msr_entry_t" =>
    /// `xen_msr_entry_t`: one MSR of a policy.
    pub struct MsrEntry {
        pub idx: u32,
        /// Reserved, must be zero.
        pub flags: u32,
        pub val: u64,
    }
}

consts! {
    EMU_LAPIC: u32 = 1 << 0 => "XEN_X86_EMU_LAPIC";
    EMU_HPET: u32 = 1 << 1 => "XEN_X86_EMU_HPET";
    EMU_PM: u32 = 1 << 2 => "XEN_X86_EMU_PM";
    EMU_RTC: u32 = 1 << 3 => "XEN_X86_EMU_RTC";
    EMU_IOAPIC: u32 = 1 << 4 => "XEN_X86_EMU_IOAPIC";
    EMU_PIC: u32 = 1 << 5 => "XEN_X86_EMU_PIC";
    EMU_VGA: u32 = 1 << 6 => "XEN_X86_EMU_VGA";
    EMU_IOMMU: u32 = 1 << 7 => "XEN_X86_EMU_IOMMU";
    EMU_PIT: u32 = 1 << 8 => "XEN_X86_EMU_PIT";
    EMU_USE_PIRQ: u32 = 1 << 9 => "XEN_X86_EMU_USE_PIRQ";
    EMU_VPCI: u32 = 1 << 10 => "XEN_X86_EMU_VPCI";
    /// Every `EMU_*` bit (a fully emulated HVM guest).
    EMU_ALL: u32 = (1 << 11) - 1 => "XEN_X86_EMU_ALL";
    /// `misc_flags`: unhandled MSR accesses read 0 / are ignored instead of #GP.
    MSR_RELAXED: u32 = 1 << 0 => "XEN_X86_MSR_RELAXED";
    /// `CpuidLeaf::subleaf` of a leaf without subleaves.
    CPUID_NO_SUBLEAF: u32 = 0xffff_ffff => "XEN_CPUID_NO_SUBLEAF";
    /// An unused CPUID input (domctl.h).
    CPUID_INPUT_UNUSED: u32 = 0xffff_ffff => "XEN_CPUID_INPUT_UNUSED";
}
