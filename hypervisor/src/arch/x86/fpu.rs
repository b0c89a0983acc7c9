//! Guest x87/SSE state, switched lazily between vCPUs.
//!
//! keel is built soft-float and never touches the FPU, so a guest's x87/SSE
//! state can stay in the CPU's registers across VM exits. Only when another
//! vCPU runs on the same physical CPU does the state move: FXSAVE the owner's
//! registers into its area, FXRSTOR the newcomer's. Both backends (VT-x and
//! AMD-V) use this, so no guest ever sees another's registers. The host needs
//! CR4.OSFXSR for FXSAVE to cover the SSE registers ([`enable_on_this_cpu`]).
//! AVX/XSAVE state beyond SSE is not switched yet (guests get no XSETBV).

use super::{cpu, gdt, smp::MAX_CPUS};
use alloc::boxed::Box;
use core::arch::asm;
use core::sync::atomic::{AtomicPtr, Ordering};

const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXSAVE: u64 = 1 << 18;

/// An FXSAVE image: a guest's x87/SSE state while it is not in the CPU.
#[repr(C, align(16))]
pub struct FxArea([u8; 512]);

/// Per CPU: whose state the registers hold (null: nobody's yet).
static OWNER: [AtomicPtr<FxArea>; MAX_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS];

fn fxsave(a: *mut FxArea) {
    // SAFETY: `a` is a live, 16-byte aligned 512-byte area owned by a
    // `GuestFpu` registered in OWNER, which unregisters before freeing it.
    unsafe { asm!("fxsave64 [{}]", in(reg) a, options(nostack)) };
}

fn fxrstor(a: *const FxArea) {
    // SAFETY: as above; the image came from FXSAVE or `GuestFpu::new`.
    unsafe { asm!("fxrstor64 [{}]", in(reg) a, options(nostack)) };
}

/// Lets FXSAVE/FXRSTOR cover the SSE registers on this CPU, and enables
/// XSETBV (CR4.OSXSAVE) where the CPU has XSAVE, so keel can load a
/// guest's XCR0.
pub fn enable_on_this_cpu() {
    let cr4 = cpu::read_cr4();
    let xsave = core::arch::x86_64::__cpuid(1).ecx & (1 << 26) != 0;
    let want = cr4 | CR4_OSFXSR | if xsave { CR4_OSXSAVE } else { 0 };
    if want != cr4 {
        // SAFETY: OSFXSR/OSXSAVE only change what FXSAVE/FXRSTOR cover and
        // allow SSE and XSETBV, which keel itself does not otherwise use.
        unsafe { asm!("mov cr4, {}", in(reg) want, options(nostack)) };
    }
}

/// XCR0 bits this CPU supports (CPUID 0xD.0), 0 without XSAVE.
pub fn supported_xcr0() -> u64 {
    if core::arch::x86_64::__cpuid(1).ecx & (1 << 26) == 0 {
        return 0;
    }
    let r = core::arch::x86_64::__cpuid_count(0xd, 0);
    r.eax as u64 | ((r.edx as u64) << 32)
}

/// Loads a guest's XCR0 after checking it as XSETBV would (x87 always on,
/// AVX only with SSE, only supported bits). keel never uses XSAVE state
/// itself, so the guest's value can simply stay loaded.
pub fn set_guest_xcr0(value: u64) -> Result<(), ()> {
    let ok = value & 1 != 0 && value & !supported_xcr0() == 0 && (value & 4 == 0 || value & 2 != 0);
    if !ok || cpu::read_cr4() & CR4_OSXSAVE == 0 {
        return Err(());
    }
    // SAFETY: the value passed the architectural checks above and
    // CR4.OSXSAVE is set, so XSETBV cannot fault.
    unsafe {
        asm!("xsetbv", in("ecx") 0u32, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack))
    };
    Ok(())
}

/// One vCPU's x87/SSE state.
pub struct GuestFpu(Box<FxArea>);

impl GuestFpu {
    /// The state after INIT: FCW 0x37f, MXCSR 0x1f80, all registers empty.
    pub fn new() -> Self {
        let mut a = Box::new(FxArea([0; 512]));
        a.0[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        a.0[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        GuestFpu(a)
    }

    fn ptr(&mut self) -> *mut FxArea {
        &mut *self.0 as *mut FxArea
    }

    /// Makes this state the CPU's. Call with interrupts off, right before
    /// entering the guest.
    pub fn load(&mut self) {
        let me = self.ptr();
        let owner = &OWNER[gdt::cpu_index() as usize];
        let cur = owner.load(Ordering::Relaxed);
        if cur != me {
            if !cur.is_null() {
                fxsave(cur);
            }
            fxrstor(me);
            owner.store(me, Ordering::Relaxed);
        }
    }

    /// Saves the state out of this CPU if it holds it (before the vCPU moves
    /// to another CPU or goes away). Must run on the CPU that last ran it.
    pub fn release(&mut self) {
        let me = self.ptr();
        let was = x86_64::instructions::interrupts::are_enabled();
        x86_64::instructions::interrupts::disable();
        let owner = &OWNER[gdt::cpu_index() as usize];
        if owner.load(Ordering::Relaxed) == me {
            fxsave(me);
            owner.store(core::ptr::null_mut(), Ordering::Relaxed);
        }
        if was {
            x86_64::instructions::interrupts::enable();
        }
    }

    /// For a vCPU dropped while another CPU may still own its state: the
    /// area must outlive any later FXSAVE into it, so it is leaked.
    pub fn leak(self) {
        Box::leak(self.0);
    }
}

impl Default for GuestFpu {
    fn default() -> Self {
        Self::new()
    }
}
