//! CPU identification, MSRs, control registers and the direct map.
use core::sync::atomic::{AtomicU64, Ordering};
use raw_cpuid::CpuId;

pub const MSR_APIC_BASE: u32 = 0x1b;
pub const MSR_EFER: u32 = 0xc000_0080;
pub const MSR_GS_BASE: u32 = 0xc000_0101;
pub const EFER_LME: u64 = 1 << 8;
pub const EFER_NXE: u64 = 1 << 11;

/// IA32_TSC_AUX: what RDTSCP and RDPID return in ECX / their operand.
pub const MSR_TSC_AUX: u32 = 0xc000_0103;

/// Whether the CPU has IA32_TSC_AUX (it has RDTSCP or RDPID).
pub fn has_tsc_aux() -> bool {
    static HAS: spin::Once<bool> = spin::Once::new();
    *HAS.call_once(|| {
        let c = CpuId::new();
        c.get_extended_processor_and_feature_identifiers()
            .is_some_and(|e| e.has_rdtscp())
            || c.get_extended_feature_info().is_some_and(|e| e.has_rdpid())
    })
}

pub fn rdmsr(msr: u32) -> u64 {
    // SAFETY: keel reads only architectural MSRs it has checked for.
    unsafe { x86_64::registers::model_specific::Msr::new(msr).read() }
}
pub fn wrmsr(msr: u32, v: u64) {
    // SAFETY: keel writes only architectural MSRs with valid values.
    unsafe { x86_64::registers::model_specific::Msr::new(msr).write(v) }
}

pub fn read_cr0() -> u64 {
    let v: u64;
    // SAFETY: reading a control register has no side effects.
    unsafe { core::arch::asm!("mov {}, cr0", out(reg) v, options(nomem, nostack)) };
    v
}
pub fn read_cr2() -> u64 {
    let v: u64;
    // SAFETY: as above.
    unsafe { core::arch::asm!("mov {}, cr2", out(reg) v, options(nomem, nostack)) };
    v
}
/// Loads CR2 (the page-fault address). Only a #PF handler reads it; no
/// translation depends on it.
pub fn write_cr2(v: u64) {
    // SAFETY: CR2 is a plain register: writing it changes no mapping,
    // protection or control state.
    unsafe { core::arch::asm!("mov cr2, {}", in(reg) v, options(nomem, nostack)) };
}

/// Makes the CPU's CR2 hold a guest's before entering it: VT-x never
/// switches CR2, and Bochs's VMRUN does not load the VMCB's (`svm`). A
/// write only when the value differs: MOV to CR2 serializes.
pub fn load_guest_cr2(v: u64) {
    if read_cr2() != v {
        write_cr2(v);
    }
}
pub fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: as above.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) v, options(nomem, nostack)) };
    v
}
pub fn read_cr4() -> u64 {
    let v: u64;
    // SAFETY: as above.
    unsafe { core::arch::asm!("mov {}, cr4", out(reg) v, options(nomem, nostack)) };
    v
}

pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

pub fn pause() {
    core::hint::spin_loop();
}

/// Stops this CPU for good.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Features {
    pub vendor: Vendor,
    pub nx: bool,
    pub gib_pages: bool,
    pub x2apic: bool,
    pub tsc_deadline: bool,
    pub invariant_tsc: bool,
    pub vmx: bool,
    pub svm: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Vendor {
    Intel,
    Amd,
    #[default]
    Other,
}

pub fn features() -> Features {
    let c = CpuId::new();
    let vendor = match c.get_vendor_info().as_ref().map(|v| v.as_str()) {
        Some("GenuineIntel") => Vendor::Intel,
        Some("AuthenticAMD") => Vendor::Amd,
        _ => Vendor::Other,
    };
    let f = c.get_feature_info();
    let ext = c.get_extended_processor_and_feature_identifiers();
    Features {
        vendor,
        nx: ext.as_ref().is_some_and(|e| e.has_execute_disable()),
        gib_pages: ext.as_ref().is_some_and(|e| e.has_1gib_pages()),
        x2apic: f.as_ref().is_some_and(|f| f.has_x2apic()),
        tsc_deadline: f.as_ref().is_some_and(|f| f.has_tsc_deadline()),
        invariant_tsc: c
            .get_advanced_power_mgmt_info()
            .is_some_and(|a| a.has_invariant_tsc()),
        vmx: f.as_ref().is_some_and(|f| f.has_vmx()),
        svm: ext.as_ref().is_some_and(|e| e.has_svm()),
    }
}

/// Virtual address at which all of physical memory is mapped: the loader's
/// mapping at first, keel's own direct map once keel's page tables are live.
static PHYS_OFFSET: AtomicU64 = AtomicU64::new(0);

pub fn set_phys_offset(off: u64) {
    PHYS_OFFSET.store(off, Ordering::SeqCst);
}

pub fn phys_offset() -> u64 {
    PHYS_OFFSET.load(Ordering::Relaxed)
}

pub fn phys_to_virt(phys: u64) -> u64 {
    phys + phys_offset()
}
