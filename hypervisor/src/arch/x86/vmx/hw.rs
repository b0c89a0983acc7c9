//! VMX instructions, capability discovery and per-CPU VMX operation.
use super::defs::{self, bits, entry_ctl, exit_ctl, msr, pin, proc, proc2, Field};
use crate::arch::x86::{cpu, gdt};
use crate::mm::paging::PageSize;
use core::arch::asm;
use core::sync::atomic::Ordering;
use spin::Once;

/// A VMX instruction failed: `None` = VMfailInvalid (no current VMCS),
/// `Some(n)` = VMfailValid with VM-instruction error `n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmFail(pub Option<u32>);

impl VmFail {
    pub fn message(self) -> &'static str {
        match self.0 {
            None => "VMfailInvalid (no current VMCS or bad pointer)",
            Some(n) => defs::instruction_error(n),
        }
    }
}

/// Turns the flags after a VMX instruction into a result (SDM 31.2:
/// CF = VMfailInvalid, ZF = VMfailValid).
fn check(cf: u8, zf: u8) -> Result<(), VmFail> {
    if cf != 0 {
        Err(VmFail(None))
    } else if zf != 0 {
        Err(VmFail(Some(vmread(Field::VmInstructionError) as u32)))
    } else {
        Ok(())
    }
}

pub fn vmxon(phys: u64) -> Result<(), VmFail> {
    let (cf, zf): (u8, u8);
    // SAFETY: `phys` is a zeroed, page-aligned VMXON region carrying the
    // revision identifier; CR4.VMXE and the fixed bits are set.
    unsafe {
        asm!("vmxon [{p}]", "setc {cf}", "setz {zf}", p = in(reg) &phys, cf = out(reg_byte) cf, zf = out(reg_byte) zf, options(nostack))
    };
    check(cf, zf)
}

pub fn vmxoff() {
    // SAFETY: only called in VMX root operation (tracked per CPU).
    unsafe { asm!("vmxoff", options(nostack)) };
}

pub fn vmclear(phys: u64) -> Result<(), VmFail> {
    let (cf, zf): (u8, u8);
    // SAFETY: `phys` is a VMCS region this module owns.
    unsafe {
        asm!("vmclear [{p}]", "setc {cf}", "setz {zf}", p = in(reg) &phys, cf = out(reg_byte) cf, zf = out(reg_byte) zf, options(nostack))
    };
    check(cf, zf)
}

pub fn vmptrld(phys: u64) -> Result<(), VmFail> {
    let (cf, zf): (u8, u8);
    // SAFETY: `phys` is a VMCS region this module owns.
    unsafe {
        asm!("vmptrld [{p}]", "setc {cf}", "setz {zf}", p = in(reg) &phys, cf = out(reg_byte) cf, zf = out(reg_byte) zf, options(nostack))
    };
    check(cf, zf)
}

/// The current-VMCS pointer (all ones if none).
pub fn vmptrst() -> u64 {
    let mut p: u64 = 0;
    // SAFETY: stores 8 bytes into `p`.
    unsafe { asm!("vmptrst [{p}]", p = in(reg) &mut p, options(nostack)) };
    p
}

pub fn vmread(f: Field) -> u64 {
    let v: u64;
    // SAFETY: reads a component of the current VMCS; a failure leaves the
    // flags set and `v` meaningless, which callers tolerate (diagnostics).
    unsafe {
        asm!("vmread {v}, {f}", v = out(reg) v, f = in(reg) f.encoding() as u64, options(nostack))
    };
    v
}

pub fn vmwrite(f: Field, v: u64) -> Result<(), VmFail> {
    let (cf, zf): (u8, u8);
    // SAFETY: writes a component of the current VMCS, which this module owns.
    unsafe {
        asm!("vmwrite {f}, {v}", "setc {cf}", "setz {zf}", f = in(reg) f.encoding() as u64, v = in(reg) v, cf = out(reg_byte) cf, zf = out(reg_byte) zf, options(nostack))
    };
    check(cf, zf)
}

/// INVEPT: type 1 = single context (that EPTP), 2 = all contexts.
pub fn invept(ty: u64, eptp: u64) -> Result<(), VmFail> {
    let desc: [u64; 2] = [eptp, 0];
    let (cf, zf): (u8, u8);
    // SAFETY: a valid INVEPT descriptor; the type is one the CPU supports
    // (checked by the caller against EPT_VPID_CAP).
    unsafe {
        asm!("invept {t}, [{d}]", "setc {cf}", "setz {zf}", t = in(reg) ty, d = in(reg) &desc, cf = out(reg_byte) cf, zf = out(reg_byte) zf, options(nostack))
    };
    check(cf, zf)
}

/// INVVPID: type 1 = single context (that VPID), 2 = all contexts.
pub fn invvpid(ty: u64, vpid: u16) -> Result<(), VmFail> {
    let desc: [u64; 2] = [vpid as u64, 0];
    let (cf, zf): (u8, u8);
    // SAFETY: as for INVEPT.
    unsafe {
        asm!("invvpid {t}, [{d}]", "setc {cf}", "setz {zf}", t = in(reg) ty, d = in(reg) &desc, cf = out(reg_byte) cf, zf = out(reg_byte) zf, options(nostack))
    };
    check(cf, zf)
}

pub fn write_cr0(v: u64) {
    // SAFETY: callers only add bits VMX requires (NE) to the current CR0.
    unsafe { asm!("mov cr0, {}", in(reg) v, options(nostack)) };
}

pub fn write_cr4(v: u64) {
    // SAFETY: callers only toggle CR4.VMXE (and fixed bits) on the current CR4.
    unsafe { asm!("mov cr4, {}", in(reg) v, options(nostack)) };
}

/// What this CPU model offers, and the control words keel runs guests with.
#[derive(Clone, Copy, Debug)]
pub struct Caps {
    pub revision: u32,
    /// PAUSE exiting can be turned on (`Vcpu::set_pause_exiting`).
    pub pause_exiting: bool,
    /// The VMX-preemption timer is on, counting at TSC >> this.
    pub preemption_rate: Option<u8>,
    pub pin: u32,
    pub proc: u32,
    pub proc2: u32,
    pub exit: u32,
    pub entry: u32,
    pub cr0_fixed: (u64, u64),
    pub cr4_fixed: (u64, u64),
    pub ept_vpid: u64,
}

impl Caps {
    pub fn invept_type(&self) -> u64 {
        if self.ept_vpid & msr::EPT_INVEPT_SINGLE != 0 {
            1
        } else {
            2
        }
    }
    /// The largest EPT leaf this CPU supports.
    pub fn max_page(&self) -> PageSize {
        if self.ept_vpid & msr::EPT_1G_PAGES != 0 {
            PageSize::Size1G
        } else if self.ept_vpid & msr::EPT_2M_PAGES != 0 {
            PageSize::Size2M
        } else {
            PageSize::Size4K
        }
    }
    pub fn invvpid_type(&self) -> u64 {
        if self.ept_vpid & msr::VPID_INVVPID_SINGLE != 0 {
            1
        } else {
            2
        }
    }
}

static CAPS: Once<Result<Caps, &'static str>> = Once::new();

/// Capabilities and control settings, computed once (all CPUs are assumed
/// to be the same model, as on every real system keel targets).
pub fn caps() -> Result<Caps, &'static str> {
    *CAPS.call_once(compute_caps)
}

fn compute_caps() -> Result<Caps, &'static str> {
    let basic = cpu::rdmsr(msr::VMX_BASIC);
    if basic & msr::BASIC_32BIT_ADDRESSES != 0 {
        return Err("VT-x: VMX structures limited to 32-bit addresses (not supported)");
    }
    if (basic >> msr::BASIC_MEMTYPE_SHIFT) & 0xf != 6 {
        return Err("VT-x: VMCS memory type is not write-back");
    }
    // TRUE control MSRs (bit 55) allow clearing default-1 controls such as
    // CR3-load/store exiting; older CPUs only have the plain ones.
    let true_ctls = basic & msr::BASIC_TRUE_CTLS != 0;
    let pick = |t: u32, plain: u32| cpu::rdmsr(if true_ctls { t } else { plain });
    let pin_cap = pick(msr::VMX_TRUE_PINBASED_CTLS, msr::VMX_PINBASED_CTLS);
    let proc_cap = pick(msr::VMX_TRUE_PROCBASED_CTLS, msr::VMX_PROCBASED_CTLS);
    let exit_cap = pick(msr::VMX_TRUE_EXIT_CTLS, msr::VMX_EXIT_CTLS);
    let entry_cap = pick(msr::VMX_TRUE_ENTRY_CTLS, msr::VMX_ENTRY_CTLS);
    if (proc_cap >> 32) as u32 & proc::ACTIVATE_SECONDARY == 0 {
        return Err("VT-x: no secondary processor-based controls (EPT impossible)");
    }
    let proc2_cap = cpu::rdmsr(msr::VMX_PROCBASED_CTLS2);
    let p2 = (proc2_cap >> 32) as u32;
    if p2 & proc2::ENABLE_EPT == 0 {
        return Err("VT-x: EPT not supported");
    }
    if p2 & proc2::UNRESTRICTED_GUEST == 0 {
        return Err("VT-x: unrestricted guest not supported");
    }
    if p2 & proc2::ENABLE_VPID == 0 {
        return Err("VT-x: VPID not supported");
    }
    let ept_vpid = cpu::rdmsr(msr::VMX_EPT_VPID_CAP);
    if ept_vpid & msr::EPT_WALK_4 == 0 || ept_vpid & msr::EPT_WB == 0 {
        return Err("VT-x: EPT lacks 4-level walks or write-back paging structures");
    }
    if ept_vpid & msr::EPT_INVEPT == 0
        || ept_vpid & (msr::EPT_INVEPT_SINGLE | msr::EPT_INVEPT_ALL) == 0
    {
        return Err("VT-x: INVEPT not supported");
    }
    if ept_vpid & msr::VPID_INVVPID == 0
        || ept_vpid & (msr::VPID_INVVPID_SINGLE | msr::VPID_INVVPID_ALL) == 0
    {
        return Err("VT-x: INVVPID not supported");
    }
    // The VMX-preemption timer, where the CPU has it, bounds every guest
    // run by keel's next deadline even if an external interrupt cannot end
    // it (Bochs 2.7 does not exit for one while the guest runs with
    // RFLAGS.IF = 0).
    let preemption = defs::optional_controls(pin::ACTIVATE_PREEMPTION_TIMER, pin_cap);
    let pin = defs::adjust_controls(pin::EXTERNAL_INTERRUPT_EXITING | pin::NMI_EXITING, pin_cap)
        .map_err(|_| "VT-x: pin-based controls (external-interrupt/NMI exiting) not allowed")?
        | preemption;
    let proc = defs::adjust_controls(
        proc::HLT_EXITING
            | proc::MWAIT_EXITING
            | proc::MONITOR_EXITING
            | proc::CR8_LOAD_EXITING
            | proc::CR8_STORE_EXITING
            | proc::USE_IO_BITMAPS
            | proc::USE_MSR_BITMAPS
            | proc::ACTIVATE_SECONDARY,
        proc_cap,
    )
    .map_err(|_| "VT-x: primary processor-based controls not allowed")?;
    if true_ctls && proc & (proc::CR3_LOAD_EXITING | proc::CR3_STORE_EXITING) != 0 {
        log::debug!("VT-x: CR3 exiting cannot be turned off on this CPU");
    }
    let proc2 = defs::adjust_controls(
        proc2::ENABLE_EPT | proc2::ENABLE_VPID | proc2::UNRESTRICTED_GUEST,
        proc2_cap,
    )
    .map_err(|_| "VT-x: secondary controls not allowed")?
        | defs::optional_controls(proc2::ENABLE_RDTSCP | proc2::ENABLE_INVPCID, proc2_cap);
    let exit = defs::adjust_controls(
        exit_ctl::HOST_ADDRESS_SPACE_SIZE | exit_ctl::SAVE_EFER | exit_ctl::LOAD_EFER,
        exit_cap,
    )
    .map_err(|_| "VT-x: VM-exit controls (64-bit host, save/load EFER) not allowed")?;
    let entry = defs::adjust_controls(entry_ctl::LOAD_EFER, entry_cap)
        .map_err(|_| "VT-x: VM-entry control load-EFER not allowed")?;
    Ok(Caps {
        revision: (basic & msr::BASIC_REVISION_MASK) as u32,
        pause_exiting: defs::optional_controls(proc::PAUSE_EXITING, proc_cap) != 0,
        preemption_rate: (preemption != 0).then(|| (cpu::rdmsr(msr::VMX_MISC) & 0x1f) as u8),
        pin,
        proc,
        proc2,
        exit,
        entry,
        cr0_fixed: (
            cpu::rdmsr(msr::VMX_CR0_FIXED0),
            cpu::rdmsr(msr::VMX_CR0_FIXED1),
        ),
        cr4_fixed: (
            cpu::rdmsr(msr::VMX_CR4_FIXED0),
            cpu::rdmsr(msr::VMX_CR4_FIXED1),
        ),
        ept_vpid,
    })
}

/// The largest EPT page this CPU maps (4 KiB if VT-x is unusable).
pub fn max_page() -> PageSize {
    caps().map(|c| c.max_page()).unwrap_or(PageSize::Size4K)
}

/// Checks that this CPU can run keel's VT-x guests: VMX in CPUID, not
/// locked off by firmware, EPT + unrestricted guest + VPID.
pub fn supported() -> Result<(), &'static str> {
    if !cpu::features().vmx {
        return Err("no VMX (CPUID.1:ECX.VMX = 0)");
    }
    let fc = cpu::rdmsr(msr::FEATURE_CONTROL);
    if fc & msr::FC_LOCK != 0 && fc & msr::FC_VMXON_OUTSIDE_SMX == 0 {
        return Err("VT-x disabled by firmware (IA32_FEATURE_CONTROL locked)");
    }
    caps().map(|_| ())
}

/// Allocates and zeroes `pages` frames.
pub fn alloc_zeroed(pages: u64) -> Option<u64> {
    let p = crate::mm::phys::frames().alloc(pages)?;
    // SAFETY: freshly allocated frames, covered read/write by the direct map.
    unsafe { core::ptr::write_bytes(cpu::phys_to_virt(p) as *mut u8, 0, (pages * 4096) as usize) };
    Some(p)
}

/// Enters VMX root operation on this CPU (idempotent).
pub fn enable_cpu() -> Result<(), &'static str> {
    let i = gdt::cpu_index() as usize;
    let me = crate::arch::x86::percpu::this();
    if me.vmx_on.load(Ordering::Relaxed) {
        return Ok(());
    }
    supported()?;
    let caps = caps()?;
    let fc = cpu::rdmsr(msr::FEATURE_CONTROL);
    if fc & msr::FC_LOCK == 0 {
        cpu::wrmsr(
            msr::FEATURE_CONTROL,
            fc | msr::FC_LOCK | msr::FC_VMXON_OUTSIDE_SMX,
        );
    }
    let cr0 = cpu::read_cr0();
    let want0 = defs::apply_fixed(cr0, caps.cr0_fixed.0, caps.cr0_fixed.1, 0);
    if want0 != cr0 {
        if want0 & !cr0 & !bits::CR0_NE != 0 || cr0 & !want0 != 0 {
            return Err("VT-x: host CR0 does not meet the VMX fixed bits");
        }
        write_cr0(want0);
    }
    // CR4.OSFXSR makes FXSAVE/FXRSTOR (guest FPU switching) cover the
    // SSE registers, OSXSAVE lets keel load a guest's XCR0 (see
    // arch::x86::fpu); keel itself executes no SSE or XSAVE instructions.
    // Before the VMCS's host CR4 is captured.
    crate::arch::x86::fpu::enable_on_this_cpu();
    let cr4 = cpu::read_cr4() | bits::CR4_VMXE | bits::CR4_OSFXSR;
    if defs::apply_fixed(cr4, caps.cr4_fixed.0, caps.cr4_fixed.1, 0) != cr4 {
        return Err("VT-x: host CR4 does not meet the VMX fixed bits");
    }
    write_cr4(cr4);
    let mut region = me.vmxon_region.load(Ordering::Relaxed);
    if region == 0 {
        region = alloc_zeroed(1).ok_or("VT-x: out of memory for the VMXON region")?;
        me.vmxon_region.store(region, Ordering::Relaxed);
    }
    // SAFETY: the region is ours, page-aligned and mapped.
    unsafe { (cpu::phys_to_virt(region) as *mut u32).write_volatile(caps.revision) };
    if let Err(e) = vmxon(region) {
        write_cr4(cpu::read_cr4() & !bits::CR4_VMXE);
        log::error!("VT-x: VMXON failed on CPU{i}: {}", e.message());
        return Err("VT-x: VMXON failed");
    }
    // Nothing is cached for VPIDs/EPTPs from before this VMXON.
    let _ = invept(2, 0);
    let _ = invvpid(2, 0);
    me.vmx_on.store(true, Ordering::Relaxed);
    Ok(())
}

/// Leaves VMX operation on this CPU (VMXOFF, CR4.VMXE cleared). VMCSs
/// active on this CPU must have been released first.
pub fn disable_cpu() {
    if crate::arch::x86::percpu::this()
        .vmx_on
        .swap(false, Ordering::Relaxed)
    {
        vmxoff();
        write_cr4(cpu::read_cr4() & !bits::CR4_VMXE);
    }
}

/// A boot-log line: what VT-x offers here, or why it cannot be used.
pub fn describe() -> alloc::string::String {
    match supported().and_then(|_| caps()) {
        Ok(c) => alloc::format!(
            "VT-x with EPT ({} pages), VPID and unrestricted guest (VMCS revision {:#x}, INVEPT {}, INVVPID {})",
            c.max_page().name(),
            c.revision,
            if c.invept_type() == 1 { "single-context" } else { "all-context" },
            if c.invvpid_type() == 1 { "single-context" } else { "all-context" },
        ),
        Err(e) => alloc::format!("VT-x unavailable: {e}"),
    }
}
