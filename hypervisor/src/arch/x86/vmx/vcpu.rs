//! The VT-x virtual CPU: one VMCS with its MSR and I/O bitmaps, the
//! entry/exit assembly, and the architectural bookkeeping the backend keeps
//! away from common code (EFER/LMA, CR0/CR4 shadows, event re-injection).
use super::defs::{self, ar, bits, entry_ctl, intr, msr, proc, reason, Field, RawExit, Seg};
use super::hw::{self, Caps, VmFail};
use crate::arch::x86::fpu::GuestFpu;
use crate::arch::x86::{cpu, gdt};
use crate::hvm::vcpu::{Event, Exit, Regs, StartMode, Vcpu};
use crate::mm::p2m::{self, Format, P2m};
use core::arch::{asm, global_asm};

// Entry and exit. `keel_vmx_enter(regs, launched)` saves the host's
// callee-saved registers and the `regs` pointer on the stack, records that
// stack pointer as HOST_RSP, loads the guest GPRs and enters with
// VMLAUNCH or VMRESUME. A VM exit lands on `keel_vmx_exit` (HOST_RIP) with
// that stack: it stores the guest GPRs through the saved pointer, restores
// the host registers and returns 0. If the entry instruction itself fails
// it falls through and returns 1 (VMfailInvalid) or 2 (VMfailValid).
// Offsets are those of `Regs` (rax 0, rbx 8, ..., r15 112).
global_asm!(
    r#"
    .section .text.keel_vmx, "ax"
    .global keel_vmx_enter
keel_vmx_enter:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    push rdi
    mov rax, {host_rsp}
    vmwrite rax, rsp
    mov rax, rdi
    cmp rsi, 0
    mov rbx, [rax + 8]
    mov rcx, [rax + 16]
    mov rdx, [rax + 24]
    mov rsi, [rax + 32]
    mov rdi, [rax + 40]
    mov rbp, [rax + 48]
    mov r8, [rax + 56]
    mov r9, [rax + 64]
    mov r10, [rax + 72]
    mov r11, [rax + 80]
    mov r12, [rax + 88]
    mov r13, [rax + 96]
    mov r14, [rax + 104]
    mov r15, [rax + 112]
    mov rax, [rax]
    je 2f
    vmresume
    jmp 3f
2:
    vmlaunch
3:
    mov eax, 1
    jc 4f
    mov eax, 2
4:
    add rsp, 8
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret

    .global keel_vmx_exit
keel_vmx_exit:
    push rax
    mov rax, [rsp + 8]
    mov [rax + 8], rbx
    mov [rax + 16], rcx
    mov [rax + 24], rdx
    mov [rax + 32], rsi
    mov [rax + 40], rdi
    mov [rax + 48], rbp
    mov [rax + 56], r8
    mov [rax + 64], r9
    mov [rax + 72], r10
    mov [rax + 80], r11
    mov [rax + 88], r12
    mov [rax + 96], r13
    mov [rax + 104], r14
    mov [rax + 112], r15
    pop rbx
    mov [rax], rbx
    add rsp, 8
    xor eax, eax
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret
"#,
    host_rsp = const 0x6c14u32,
);

const _: () = assert!(Field::HostRsp as u32 == 0x6c14);
const _: () =
    assert!(core::mem::offset_of!(Regs, r15) == 112 && core::mem::offset_of!(Regs, rbx) == 8);

extern "C" {
    fn keel_vmx_enter(regs: *mut Regs, launched: u64) -> u64;
    fn keel_vmx_exit();
}

/// CR0 bits the host owns: NE (VMX requires it set; the guest sees its own
/// value) and CD/NW (kept clear in the real CR0; the guest sees the reset
/// value 0x60000010 and may change it).
const CR0_HOST_OWNED: u64 = bits::CR0_NE | bits::CR0_CD | bits::CR0_NW;
/// The SYSCALL MSRs and KERNEL_GS_BASE: the VMCS has no fields for them,
/// so the guest reads and writes the CPU's own registers (the MSR bitmap
/// lets these through) and keel, which never uses SYSCALL or SWAPGS,
/// switches them only when another vCPU ran on this CPU in between.
const SYSCALL_MSRS: [u32; 5] = [
    0xc000_0081, // STAR
    0xc000_0082, // LSTAR
    0xc000_0083, // CSTAR
    0xc000_0084, // SFMASK
    0xc000_0102, // KERNEL_GS_BASE
];

/// EFER bits a guest may set on an Intel CPU.
const EFER_WRITABLE: u64 = bits::EFER_SCE | bits::EFER_LME | bits::EFER_NXE;

pub struct VmxVcpu {
    vmcs: u64,
    msr_bitmap: u64,
    io_bitmaps: u64,
    vpid: u16,
    caps: Caps,
    regs: Regs,
    /// The CPU this VMCS is active on, if any.
    cpu: Option<u32>,
    launched: bool,
    eptp: u64,
    eptp_dirty: bool,
    flush: bool,
    reset_pending: Option<StartMode>,
    /// An exception the backend raises itself (#GP, #UD); goes first.
    exception: Option<Event>,
    /// The event common code queued.
    event: Option<Event>,
    /// An event whose delivery an exit interrupted: (info, error code,
    /// instruction length), re-injected on the next entry.
    reinject: Option<(u32, u32, u32)>,
    window: bool,
    /// Exit on PAUSE (while another vCPU waits for this CPU).
    pause_exiting: bool,
    /// keel's next deadline for this run (TSC), for the preemption timer.
    deadline: Option<u64>,
    proc: u32,
    // Guest state as of the last exit (or reset): CR0/CR4 as the guest
    // sees them, EFER, entry controls, interruptibility.
    cr0: u64,
    cr3: u64,
    cr4: u64,
    efer: u64,
    /// SS.DPL as of the last exit: the guest's CPL.
    cpl: u8,
    /// The guest's CR2: VT-x leaves it in the CPU across exits and
    /// entries, so another vCPU run here in between (or keel) would
    /// otherwise hand this guest a stale page-fault address.
    cr2: u64,
    entry: u32,
    interruptibility: u32,
    interruptibility_dirty: bool,
    /// The guest's x87/SSE state (see `arch::x86::fpu`).
    fpu: GuestFpu,
    /// The guest's [`SYSCALL_MSRS`] while it is not on a CPU.
    syscall_msrs: [u64; 5],
    /// Load `syscall_msrs` on the next entry whoever owns the CPU's (after
    /// a reset, and for a new vCPU whose VMCS frame may be a dead one's).
    syscall_reload: bool,
    /// Exits served inside the backend (for diagnostics).
    pub internal_exits: u64,
}

// SAFETY: the VMCS and bitmaps are frames owned by this vCPU; it is moved
// between CPUs only while not running (see `release`).
unsafe impl Send for VmxVcpu {}

fn err(e: VmFail, what: &'static str) -> Exit {
    log::error!("VT-x: {what}: {}", e.message());
    Exit::InvalidGuestState {
        detail: e.message(),
        code: e.0.unwrap_or(0) as u64,
    }
}

fn w(f: Field, v: u64) -> Result<(), Exit> {
    hw::vmwrite(f, v).map_err(|e| {
        log::error!("VT-x: VMWRITE {f:?} = {v:#x} failed: {}", e.message());
        Exit::InvalidGuestState {
            detail: e.message(),
            code: f as u64,
        }
    })
}

fn r(f: Field) -> u64 {
    hw::vmread(f)
}

impl VmxVcpu {
    /// Allocates the VMCS and bitmaps. `vpid` must be non-zero and unique
    /// among live vCPUs.
    pub fn new(vpid: u16) -> Result<Self, &'static str> {
        if vpid == 0 {
            return Err("VT-x: VPID 0 is the host's");
        }
        hw::supported()?;
        let caps = hw::caps()?;
        let vmcs = hw::alloc_zeroed(1).ok_or("VT-x: out of memory for the VMCS")?;
        let msr_bitmap = hw::alloc_zeroed(1).ok_or("VT-x: out of memory for the MSR bitmap")?;
        let io_bitmaps = hw::alloc_zeroed(2).ok_or("VT-x: out of memory for the I/O bitmaps")?;
        // SAFETY: the frames were just allocated for this vCPU; the direct
        // map covers them read/write.
        unsafe {
            (cpu::phys_to_virt(vmcs) as *mut u32).write_volatile(caps.revision);
            // Every MSR and every port exits: common code decides.
            core::ptr::write_bytes(cpu::phys_to_virt(msr_bitmap) as *mut u8, 0xff, 4096);
            core::ptr::write_bytes(cpu::phys_to_virt(io_bitmaps) as *mut u8, 0xff, 8192);
            // ...but the SYSCALL MSRs (high range: read bitmap at 1024,
            // write bitmap at 3072).
            let bm = cpu::phys_to_virt(msr_bitmap) as *mut u8;
            for m in SYSCALL_MSRS {
                let bit = (m - 0xc000_0000) as usize;
                for base in [1024, 3072] {
                    *bm.add(base + bit / 8) &= !(1 << (bit % 8));
                }
            }
        }
        let mut v = VmxVcpu {
            vmcs,
            msr_bitmap,
            io_bitmaps,
            vpid,
            caps,
            regs: Regs::default(),
            cpu: None,
            launched: false,
            eptp: 0,
            eptp_dirty: false,
            flush: false,
            reset_pending: None,
            exception: None,
            event: None,
            reinject: None,
            window: false,
            pause_exiting: false,
            deadline: None,
            proc: caps.proc,
            cr0: 0,
            cr3: 0,
            cr4: 0,
            efer: 0,
            cpl: 0,
            cr2: 0,
            entry: caps.entry,
            interruptibility: 0,
            interruptibility_dirty: false,
            fpu: GuestFpu::new(),
            syscall_msrs: [0; 5],
            syscall_reload: true,
            internal_exits: 0,
        };
        v.reset(StartMode::RealModeSipi { vector: 0 });
        Ok(v)
    }

    /// VMCLEARs the VMCS on this CPU so it can run on another one next.
    /// Must run on the CPU that last ran the vCPU.
    pub fn release(&mut self) {
        let here = gdt::cpu_index();
        if self.cpu == Some(here) {
            self.fpu.release();
            let _ = hw::vmclear(self.vmcs);
            self.cpu = None;
            self.launched = false;
            // This CPU's SYSCALL MSRs may be ours, but this vCPU may change
            // them elsewhere before it comes back: reload them then.
            let owner = &crate::arch::x86::percpu::this().syscall_owner;
            let _ = owner.compare_exchange(
                self.vmcs,
                0,
                core::sync::atomic::Ordering::Relaxed,
                core::sync::atomic::Ordering::Relaxed,
            );
        }
    }

    fn real_cr0(&self, visible: u64) -> u64 {
        let (f0, f1) = self.caps.cr0_fixed;
        defs::apply_fixed(
            visible & !(bits::CR0_CD | bits::CR0_NW),
            f0,
            f1,
            bits::CR0_PE | bits::CR0_PG,
        )
    }

    fn cr0_mask(&self) -> u64 {
        CR0_HOST_OWNED | (self.caps.cr0_fixed.0 & !(bits::CR0_PE | bits::CR0_PG))
    }

    fn cr4_mask(&self) -> u64 {
        bits::CR4_VMXE | self.caps.cr4_fixed.0 | !self.caps.cr4_fixed.1
    }

    /// Makes the VMCS current on this CPU, setting it up on first use here.
    fn load(&mut self) -> Result<(), Exit> {
        let here = gdt::cpu_index();
        match self.cpu {
            Some(c) if c == here => {
                if hw::vmptrst() != self.vmcs {
                    hw::vmptrld(self.vmcs).map_err(|e| err(e, "VMPTRLD"))?;
                }
                Ok(())
            }
            Some(_) => Err(Exit::InvalidGuestState {
                detail:
                    "VT-x: vCPU moved to another CPU without release() (VMCLEAR) on the old one",
                code: here as u64,
            }),
            None => {
                hw::vmclear(self.vmcs).map_err(|e| err(e, "VMCLEAR"))?;
                hw::vmptrld(self.vmcs).map_err(|e| err(e, "VMPTRLD"))?;
                self.cpu = Some(here);
                self.launched = false;
                self.setup_controls()?;
                self.setup_host()?;
                // A VPID may have been used before on this CPU, and this
                // CPU may hold translations of this p2m from before a change
                // (another vCPU of the domain ran here then): flush both.
                let _ = hw::invvpid(self.caps.invvpid_type(), self.vpid);
                self.flush = true;
                self.eptp_dirty = true;
                self.interruptibility_dirty = true;
                Ok(())
            }
        }
    }

    fn setup_controls(&mut self) -> Result<(), Exit> {
        let c = self.caps;
        w(Field::PinBasedControls, c.pin as u64)?;
        w(Field::ProcBasedControls, self.proc as u64)?;
        w(Field::SecondaryControls, c.proc2 as u64)?;
        w(Field::ExitControls, c.exit as u64)?;
        w(Field::EntryControls, self.entry as u64)?;
        w(Field::ExceptionBitmap, 0)?;
        w(Field::PageFaultErrorCodeMask, 0)?;
        w(Field::PageFaultErrorCodeMatch, 0)?;
        w(Field::Cr3TargetCount, 0)?;
        w(Field::ExitMsrStoreCount, 0)?;
        w(Field::ExitMsrLoadCount, 0)?;
        w(Field::EntryMsrLoadCount, 0)?;
        w(Field::EntryInterruptionInfo, 0)?;
        w(Field::IoBitmapA, self.io_bitmaps)?;
        w(Field::IoBitmapB, self.io_bitmaps + 4096)?;
        w(Field::MsrBitmap, self.msr_bitmap)?;
        w(Field::Vpid, self.vpid as u64)?;
        w(Field::Cr0GuestHostMask, self.cr0_mask())?;
        w(Field::Cr4GuestHostMask, self.cr4_mask())?;
        w(Field::VmcsLinkPointer, u64::MAX)?;
        w(Field::TscOffset, 0)
    }

    fn setup_host(&mut self) -> Result<(), Exit> {
        let (cs, ss, ds, es, tr): (u16, u16, u16, u16, u16);
        let mut gdtr = [0u8; 10];
        let mut idtr = [0u8; 10];
        // SAFETY: reads segment registers and descriptor-table registers.
        unsafe {
            asm!("mov {0:x}, cs", "mov {1:x}, ss", "mov {2:x}, ds", "mov {3:x}, es", "str {4:x}",
                out(reg) cs, out(reg) ss, out(reg) ds, out(reg) es, out(reg) tr, options(nomem, nostack));
            asm!("sgdt [{}]", "sidt [{}]", in(reg) gdtr.as_mut_ptr(), in(reg) idtr.as_mut_ptr(), options(nostack));
        }
        let gdt_base = u64::from_le_bytes(gdtr[2..10].try_into().unwrap());
        let idt_base = u64::from_le_bytes(idtr[2..10].try_into().unwrap());
        if tr == 0 {
            return Err(Exit::InvalidGuestState {
                detail: "VT-x: host TR is 0 (no TSS loaded)",
                code: 0,
            });
        }
        // The TSS base from its (16-byte) descriptor in the host GDT.
        // SAFETY: TR names a descriptor inside the loaded GDT.
        let (lo, hi) = unsafe {
            let d = (gdt_base + (tr & !7) as u64) as *const u64;
            (d.read(), d.add(1).read())
        };
        let tr_base =
            ((lo >> 16) & 0xff_ffff) | (((lo >> 56) & 0xff) << 24) | ((hi & 0xffff_ffff) << 32);
        let sel = |s: u16| (s & !7) as u64;
        w(Field::HostCr0, cpu::read_cr0())?;
        w(Field::HostCr3, cpu::read_cr3())?;
        w(Field::HostCr4, cpu::read_cr4())?;
        w(Field::HostCsSelector, sel(cs))?;
        w(Field::HostSsSelector, sel(ss))?;
        w(Field::HostDsSelector, sel(ds))?;
        w(Field::HostEsSelector, sel(es))?;
        w(Field::HostFsSelector, 0)?;
        w(Field::HostGsSelector, 0)?;
        w(Field::HostTrSelector, sel(tr))?;
        w(Field::HostFsBase, cpu::rdmsr(msr::FS_BASE))?;
        w(Field::HostGsBase, cpu::rdmsr(msr::GS_BASE))?;
        w(Field::HostTrBase, tr_base)?;
        w(Field::HostGdtrBase, gdt_base)?;
        w(Field::HostIdtrBase, idt_base)?;
        w(Field::HostSysenterCs, cpu::rdmsr(msr::SYSENTER_CS))?;
        w(Field::HostSysenterEsp, cpu::rdmsr(msr::SYSENTER_ESP))?;
        w(Field::HostSysenterEip, cpu::rdmsr(msr::SYSENTER_EIP))?;
        w(Field::HostEfer, cpu::rdmsr(msr::EFER))?;
        w(Field::HostRip, keel_vmx_exit as *const () as u64)
    }

    /// Writes the architectural reset state for `mode` into the VMCS.
    fn write_reset_state(&mut self, mode: StartMode) -> Result<(), Exit> {
        for s in Seg::ALL {
            let (sel, base, limit, arf) = s.fields();
            let (selector, b, lim, a) = match (mode, s) {
                (StartMode::RealModeSipi { vector }, Seg::Cs) => (
                    (vector as u64) << 8,
                    (vector as u64) << 12,
                    0xffff,
                    ar::REAL_CODE,
                ),
                (StartMode::RealModeSipi { .. }, Seg::Tr) => (0, 0, 0xffff, ar::TSS_BUSY),
                (_, Seg::Ldtr) => (0, 0, 0xffff, ar::UNUSABLE),
                (StartMode::RealModeSipi { .. }, _) => (0, 0, 0xffff, ar::REAL_DATA),
                // PVH: flat 4 GiB segments and a 32-bit TSS.
                (StartMode::Pvh32 { .. }, Seg::Cs) => (0x8, 0, 0xffff_ffff, ar::FLAT32_CODE),
                (StartMode::Pvh32 { .. }, Seg::Tr) => (0x18, 0, 0x67, ar::TSS_BUSY),
                (StartMode::Pvh32 { .. }, _) => (0x10, 0, 0xffff_ffff, ar::FLAT32_DATA),
            };
            w(sel, selector)?;
            w(base, b)?;
            w(limit, lim)?;
            w(arf, a as u64)?;
        }
        w(Field::GuestGdtrBase, 0)?;
        w(Field::GuestGdtrLimit, 0xffff)?;
        w(Field::GuestIdtrBase, 0)?;
        w(Field::GuestIdtrLimit, 0xffff)?;
        w(Field::GuestCr0, self.real_cr0(self.cr0))?;
        w(Field::Cr0ReadShadow, self.cr0)?;
        let (f0, f1) = self.caps.cr4_fixed;
        w(Field::GuestCr4, defs::apply_fixed(self.cr4, f0, f1, 0))?;
        w(Field::Cr4ReadShadow, self.cr4)?;
        w(Field::GuestCr3, 0)?;
        w(Field::GuestEfer, 0)?;
        w(Field::EntryControls, self.entry as u64)?;
        w(Field::GuestDr7, 0x400)?;
        w(Field::GuestDebugctl, 0)?;
        w(Field::GuestPendingDebugExceptions, 0)?;
        w(Field::GuestActivityState, 0)?;
        w(Field::GuestInterruptibility, 0)?;
        w(Field::GuestSysenterCs, 0)?;
        w(Field::GuestSysenterEsp, 0)?;
        w(Field::GuestSysenterEip, 0)?;
        for f in [
            Field::GuestPdpte0,
            Field::GuestPdpte1,
            Field::GuestPdpte2,
            Field::GuestPdpte3,
        ] {
            w(f, 0)?;
        }
        let _ = hw::invvpid(self.caps.invvpid_type(), self.vpid);
        Ok(())
    }

    /// Makes this vCPU's x87/SSE state the CPU's (interrupts are off).
    fn switch_fpu(&mut self) {
        self.fpu.load();
    }

    /// Everything that must be in the VMCS before an entry.
    fn prepare_entry(&mut self) -> Result<(), Exit> {
        if let Some(mode) = self.reset_pending.take() {
            self.write_reset_state(mode)?;
        }
        if self.eptp_dirty {
            if self.eptp == 0 {
                return Err(Exit::InvalidGuestState {
                    detail: "VT-x: no p2m root set (set_p2m_root)",
                    code: 0,
                });
            }
            w(Field::EptPointer, self.eptp)?;
            self.eptp_dirty = false;
        }
        if self.flush {
            // Single-context INVEPT drops the guest-physical and combined
            // translations of this EPTP on this CPU.
            hw::invept(self.caps.invept_type(), self.eptp).map_err(|e| {
                log::error!("VT-x: INVEPT of EPTP {:#x} failed: {}", self.eptp, e.message());
                Exit::InvalidGuestState {
                    detail: "INVEPT refused the EPTP: invalid p2m root (beyond the physical-address width?)",
                    code: e.0.unwrap_or(0) as u64,
                }
            })?;
            self.flush = false;
        }
        if self.interruptibility_dirty {
            w(Field::GuestInterruptibility, self.interruptibility as u64)?;
            self.interruptibility_dirty = false;
        }
        let mut want = if self.window {
            self.proc | proc::INTERRUPT_WINDOW_EXITING
        } else {
            self.proc & !proc::INTERRUPT_WINDOW_EXITING
        };
        if self.pause_exiting {
            want |= proc::PAUSE_EXITING;
        } else {
            want &= !proc::PAUSE_EXITING;
        }
        if want != self.proc {
            w(Field::ProcBasedControls, want as u64)?;
            self.proc = want;
        }
        if let Some(rate) = self.caps.preemption_rate {
            let left = self
                .deadline
                .map_or(u64::MAX, |d| d.saturating_sub(cpu::rdtsc()) >> rate);
            w(Field::GuestPreemptionTimer, left.min(u32::MAX as u64))?;
        }
        w(Field::GuestRip, self.regs.rip)?;
        w(Field::GuestRsp, self.regs.rsp)?;
        w(Field::GuestRflags, self.regs.rflags | bits::RFLAGS_FIXED)?;
        let protected = self.cr0 & bits::CR0_PE != 0;
        let (info, code, len) = if let Some(ri) = self.reinject {
            ri
        } else if let Some(ev) = self.exception.or(self.event) {
            let (info, code) = defs::entry_event(ev, protected);
            (info, code.unwrap_or(0), 0)
        } else {
            (0, 0, 0)
        };
        // Bits 30:12 are reserved in the entry field.
        w(Field::EntryInterruptionInfo, (info & !0x7fff_f000) as u64)?;
        if info & intr::VALID != 0 {
            w(Field::EntryExceptionErrorCode, code as u64)?;
            w(Field::EntryInstructionLength, len as u64)?;
        }
        Ok(())
    }

    /// The event injected on the entry that just succeeded is delivered.
    fn entered(&mut self) {
        if self.reinject.take().is_none() && self.exception.take().is_none() {
            self.event = None;
        }
        self.launched = true;
    }

    fn read_back(&mut self) {
        self.regs.rip = r(Field::GuestRip);
        self.regs.rsp = r(Field::GuestRsp);
        self.regs.rflags = r(Field::GuestRflags);
        let m0 = self.cr0_mask();
        self.cr0 = (r(Field::GuestCr0) & !m0) | (r(Field::Cr0ReadShadow) & m0);
        let m4 = self.cr4_mask();
        self.cr4 = (r(Field::GuestCr4) & !m4) | (r(Field::Cr4ReadShadow) & m4);
        self.cr3 = r(Field::GuestCr3);
        self.efer = r(Field::GuestEfer);
        self.cpl = ar::dpl(r(Field::GuestSsAccessRights) as u32) as u8;
        self.entry = r(Field::EntryControls) as u32;
        self.interruptibility = r(Field::GuestInterruptibility) as u32;
        let idt = r(Field::IdtVectoringInfo) as u32;
        if idt & intr::VALID != 0 {
            let code = r(Field::IdtVectoringErrorCode) as u32;
            let len = r(Field::ExitInstructionLength) as u32;
            self.reinject = Some((idt, code, len));
        }
    }

    fn raw_exit(&self, reason: u32) -> RawExit {
        RawExit {
            reason,
            qualification: r(Field::ExitQualification),
            instruction_len: r(Field::ExitInstructionLength) as u32,
            interruption_info: r(Field::ExitInterruptionInfo) as u32,
            interruption_error: r(Field::ExitInterruptionErrorCode) as u32,
            guest_physical: r(Field::GuestPhysicalAddress),
        }
    }

    fn gp(&mut self) {
        self.exception = Some(Event::Exception {
            vector: 13,
            error_code: Some(0),
        });
    }

    fn advance(&mut self, len: u8) {
        self.skip(len);
    }

    /// Emulates a guest write of `v` to CR0 (the exit came because a
    /// host-owned bit changed). Keeps EFER.LMA and the IA-32e-mode entry
    /// control consistent and loads the PDPTEs for PAE paging.
    fn write_cr0(&mut self, v: u64) -> Result<(), Exit> {
        let old = self.cr0;
        if v >> 32 != 0
            || (v & bits::CR0_PG != 0 && v & bits::CR0_PE == 0)
            || (v & bits::CR0_NW != 0 && v & bits::CR0_CD == 0)
        {
            self.gp();
            return Ok(());
        }
        let paging_on = v & bits::CR0_PG != 0 && old & bits::CR0_PG == 0;
        let paging_off = v & bits::CR0_PG == 0 && old & bits::CR0_PG != 0;
        let mut efer = self.efer;
        let mut entry = self.entry;
        if paging_on && efer & bits::EFER_LME != 0 {
            if self.cr4 & bits::CR4_PAE == 0 {
                self.gp();
                return Ok(());
            }
            efer |= bits::EFER_LMA;
            entry |= entry_ctl::IA32E_MODE_GUEST;
        }
        if paging_off && efer & bits::EFER_LMA != 0 {
            efer &= !bits::EFER_LMA;
            entry &= !entry_ctl::IA32E_MODE_GUEST;
        }
        if paging_on && efer & bits::EFER_LMA == 0 && self.cr4 & bits::CR4_PAE != 0 {
            self.load_pdptes()?;
        }
        w(Field::GuestCr0, self.real_cr0(v))?;
        w(Field::Cr0ReadShadow, v)?;
        if efer != self.efer {
            w(Field::GuestEfer, efer)?;
            self.efer = efer;
        }
        if entry != self.entry {
            w(Field::EntryControls, entry as u64)?;
            self.entry = entry;
        }
        self.cr0 = v;
        Ok(())
    }

    /// PAE paging enabled by an emulated CR0 write: the CPU did not load
    /// the four PDPTEs, so the backend does (from guest CR3 via the p2m).
    fn load_pdptes(&mut self) -> Result<(), Exit> {
        let p2m = P2m {
            format: Format::Ept,
            root: self.eptp & crate::mm::paging::ADDR_MASK,
        };
        let mut b = [0u8; 32];
        if !crate::hvm::guestmem::read(&p2m, self.cr3 & 0xffff_ffe0, &mut b) {
            b = [0; 32];
        }
        for (i, f) in [
            Field::GuestPdpte0,
            Field::GuestPdpte1,
            Field::GuestPdpte2,
            Field::GuestPdpte3,
        ]
        .into_iter()
        .enumerate()
        {
            w(
                f,
                u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap()),
            )?;
        }
        Ok(())
    }

    fn write_cr4(&mut self, v: u64) -> Result<(), Exit> {
        if v & bits::CR4_VMXE != 0 || v >> 32 != 0 {
            // No nested VMX: the guest cannot turn on VMXE.
            self.gp();
            return Ok(());
        }
        let (f0, f1) = self.caps.cr4_fixed;
        w(Field::GuestCr4, defs::apply_fixed(v, f0, f1, 0))?;
        w(Field::Cr4ReadShadow, v)?;
        self.cr4 = v;
        Ok(())
    }

    /// MSRs that are VMCS state: served here. `None` = not ours.
    fn read_msr(&mut self, m: u32) -> Option<u64> {
        Some(match m {
            msr::EFER => self.efer,
            msr::FS_BASE => r(Field::GuestFsBase),
            msr::GS_BASE => r(Field::GuestGsBase),
            msr::SYSENTER_CS => r(Field::GuestSysenterCs),
            msr::SYSENTER_ESP => r(Field::GuestSysenterEsp),
            msr::SYSENTER_EIP => r(Field::GuestSysenterEip),
            _ => return None,
        })
    }

    fn write_msr(&mut self, m: u32, v: u64) -> Option<Result<(), Exit>> {
        let canonical = |a: u64| ((a as i64) << 16 >> 16) as u64 == a;
        let field = match m {
            msr::EFER => {
                let lme_change = (v ^ self.efer) & bits::EFER_LME != 0;
                if v & !(EFER_WRITABLE | bits::EFER_LMA) != 0
                    || (lme_change && self.cr0 & bits::CR0_PG != 0)
                {
                    self.gp();
                    return Some(Ok(()));
                }
                let efer = (v & EFER_WRITABLE) | (self.efer & bits::EFER_LMA);
                self.efer = efer;
                return Some(w(Field::GuestEfer, efer));
            }
            msr::FS_BASE => Field::GuestFsBase,
            msr::GS_BASE => Field::GuestGsBase,
            msr::SYSENTER_CS => Field::GuestSysenterCs,
            msr::SYSENTER_ESP => Field::GuestSysenterEsp,
            msr::SYSENTER_EIP => Field::GuestSysenterEip,
            _ => return None,
        };
        if field != Field::GuestSysenterCs && !canonical(v) {
            self.gp();
            return Some(Ok(()));
        }
        Some(w(field, v))
    }

    /// Serves exits that are architectural bookkeeping. `Ok(None)` = done,
    /// re-enter; `Ok(Some(exit))` = common code decides.
    fn handle(&mut self, raw: &RawExit) -> Result<Option<Exit>, Exit> {
        let basic = raw.reason as u16;
        let len = raw.instruction_len as u8;
        if raw.reason & reason::ENTRY_FAILURE == 0 {
            match basic {
                reason::CR_ACCESS => {
                    let (cr, ty, gpr, lmsw) = defs::cr_access(raw.qualification);
                    let long = self.efer & bits::EFER_LMA != 0;
                    let val = |v: u64| if long { v } else { v & 0xffff_ffff };
                    let handled =
                        match (cr, ty) {
                            (0, 0) => Some(self.write_cr0(val(self.regs.gpr(gpr)))),
                            (4, 0) => Some(self.write_cr4(val(self.regs.gpr(gpr)))),
                            // CLTS; LMSW (cannot clear PE).
                            (0, 2) => Some(self.write_cr0(self.cr0 & !8)),
                            (0, 3) => Some(self.write_cr0(
                                (self.cr0 & !0xe) | (lmsw as u64 & 0xf) | (self.cr0 & 1),
                            )),
                            _ => None,
                        };
                    if let Some(res) = handled {
                        res?;
                        if self.exception.is_none() {
                            self.advance(len);
                        }
                        return Ok(None);
                    }
                }
                reason::RDMSR => {
                    if let Some(v) = self.read_msr(self.regs.rcx as u32) {
                        self.regs.rax = v & 0xffff_ffff;
                        self.regs.rdx = v >> 32;
                        self.advance(len);
                        return Ok(None);
                    }
                }
                reason::WRMSR => {
                    let v = (self.regs.rdx << 32) | (self.regs.rax & 0xffff_ffff);
                    if let Some(res) = self.write_msr(self.regs.rcx as u32, v) {
                        res?;
                        if self.exception.is_none() {
                            self.advance(len);
                        }
                        return Ok(None);
                    }
                }
                reason::INVD => {
                    self.advance(len);
                    return Ok(None);
                }
                b if defs::is_vmx_instruction(b) => {
                    self.exception = Some(Event::Exception {
                        vector: 6,
                        error_code: None,
                    });
                    return Ok(None);
                }
                reason::EPT_VIOLATION
                    if raw.qualification & (1 << 12) != 0 && self.reinject.is_none() =>
                {
                    // The fault hit an IRET that had unblocked NMIs: block again.
                    self.interruptibility |= bits::BLOCK_NMI;
                    self.interruptibility_dirty = true;
                }
                _ => {}
            }
        }
        let exit = defs::decode_exit(raw, &self.regs);
        if let Exit::InvalidGuestState { detail, code } = exit {
            return Ok(Some(self.explain_entry_failure(detail, code)));
        }
        Ok(Some(exit))
    }

    /// Names the failing check after an invalid-guest-state entry failure
    /// by running the software mirror of the checks on the VMCS contents.
    fn explain_entry_failure(&self, detail: &'static str, code: u64) -> Exit {
        if code & 0xffff != reason::INVALID_GUEST_STATE as u64 || (code >> 32) != 0 {
            return Exit::InvalidGuestState { detail, code };
        }
        let g = defs::GuestState {
            cr0: r(Field::GuestCr0),
            cr4: r(Field::GuestCr4),
            efer: r(Field::GuestEfer),
            rflags: r(Field::GuestRflags),
            entry_controls: r(Field::EntryControls) as u32,
            unrestricted: self.caps.proc2 & defs::proc2::UNRESTRICTED_GUEST != 0,
            cs_ar: r(Field::GuestCsAccessRights) as u32,
            ss_ar: r(Field::GuestSsAccessRights) as u32,
            tr_ar: r(Field::GuestTrAccessRights) as u32,
            ldtr_ar: r(Field::GuestLdtrAccessRights) as u32,
            activity: r(Field::GuestActivityState) as u32,
            interruptibility: r(Field::GuestInterruptibility) as u32,
            link_pointer: r(Field::VmcsLinkPointer),
        };
        let found = defs::check_guest_state(&g, self.caps.cr0_fixed, self.caps.cr4_fixed);
        log::error!(
            "VT-x: VM entry failed (invalid guest state): {}; guest state {g:x?}",
            found.unwrap_or("no software check matched; see the CPU/emulator log")
        );
        Exit::InvalidGuestState {
            detail: found.unwrap_or(detail),
            code,
        }
    }

    fn run_inner(&mut self) -> Exit {
        if let Err(e) = hw::enable_cpu() {
            return Exit::InvalidGuestState { detail: e, code: 0 };
        }
        if let Err(e) = self.load() {
            return e;
        }
        self.switch_fpu();
        loop {
            if let Err(e) = self.prepare_entry() {
                return e;
            }
            cpu::load_guest_cr2(self.cr2);
            // SAFETY: the VMCS is current on this CPU and fully set up; the
            // stub preserves the host's callee-saved registers and stack.
            let rc = unsafe { keel_vmx_enter(&mut self.regs, self.launched as u64) };
            self.cr2 = cpu::read_cr2();
            if rc != 0 {
                let fail = if rc == 1 {
                    VmFail(None)
                } else {
                    VmFail(Some(r(Field::VmInstructionError) as u32))
                };
                log::error!(
                    "VT-x: {} failed: {}",
                    if self.launched {
                        "VMRESUME"
                    } else {
                        "VMLAUNCH"
                    },
                    fail.message()
                );
                return Exit::InvalidGuestState {
                    detail: fail.message(),
                    code: fail.0.unwrap_or(0) as u64,
                };
            }
            let reason = r(Field::ExitReason) as u32;
            if reason & reason::ENTRY_FAILURE == 0 {
                self.entered();
            }
            self.read_back();
            if reason as u16 == reason::EXTERNAL_INTERRUPT {
                // "Acknowledge interrupt on exit" is off: the interrupt is
                // still pending at the local APIC. Let the host take it now.
                x86_64::instructions::interrupts::enable();
                x86_64::instructions::nop();
                x86_64::instructions::interrupts::disable();
            }
            let raw = self.raw_exit(reason);
            match self.handle(&raw) {
                Ok(None) => self.internal_exits += 1,
                Ok(Some(exit)) => return exit,
                Err(e) => return e,
            }
        }
    }
}

impl Vcpu for VmxVcpu {
    fn reset(&mut self, mode: StartMode) {
        self.regs = Regs {
            rflags: bits::RFLAGS_FIXED,
            ..Regs::default()
        };
        self.cr0 = bits::CR0_CD | bits::CR0_NW | bits::CR0_ET;
        self.syscall_msrs = [0; 5];
        self.syscall_reload = true;
        if let StartMode::Pvh32 { entry, ebx } = mode {
            self.regs.rip = entry as u64;
            self.regs.rbx = ebx as u64;
            self.cr0 = bits::CR0_ET | bits::CR0_PE;
        }
        self.cr3 = 0;
        self.cr4 = 0;
        self.efer = 0;
        self.cr2 = 0;
        self.entry = self.caps.entry;
        self.interruptibility = 0;
        self.interruptibility_dirty = true;
        self.exception = None;
        self.event = None;
        self.reinject = None;
        self.window = false;
        self.reset_pending = Some(mode);
    }

    fn set_p2m_root(&mut self, root: u64) {
        self.eptp = p2m::eptp(root);
        self.eptp_dirty = true;
        self.flush = true;
    }

    fn run(&mut self) -> Exit {
        let was = x86_64::instructions::interrupts::are_enabled();
        x86_64::instructions::interrupts::disable();
        let owner = &crate::arch::x86::percpu::this().syscall_owner;
        if self.syscall_reload || owner.load(core::sync::atomic::Ordering::Relaxed) != self.vmcs {
            self.syscall_reload = false;
            for (m, v) in SYSCALL_MSRS.iter().zip(self.syscall_msrs) {
                cpu::wrmsr(*m, v);
            }
            owner.store(self.vmcs, core::sync::atomic::Ordering::Relaxed);
        }
        let exit = self.run_inner();
        // Common code may run another vCPU here next: keep ours.
        for (m, v) in SYSCALL_MSRS.iter().zip(self.syscall_msrs.iter_mut()) {
            *v = cpu::rdmsr(*m);
        }
        if was {
            x86_64::instructions::interrupts::enable();
        }
        exit
    }

    fn regs(&self) -> &Regs {
        &self.regs
    }

    fn regs_mut(&mut self) -> &mut Regs {
        &mut self.regs
    }

    /// Advances RIP and ends an STI / MOV SS interrupt shadow, as
    /// completing the instruction would.
    fn skip(&mut self, len: u8) {
        self.regs.rip = self.regs.rip.wrapping_add(len as u64);
        if self.interruptibility & (bits::BLOCK_STI | bits::BLOCK_MOV_SS) != 0 {
            self.interruptibility &= !(bits::BLOCK_STI | bits::BLOCK_MOV_SS);
            self.interruptibility_dirty = true;
        }
    }

    fn inject(&mut self, ev: Event) {
        self.event = Some(ev);
    }

    fn can_inject_interrupt(&self) -> bool {
        self.regs.rflags & bits::RFLAGS_IF != 0
            && self.interruptibility & (bits::BLOCK_STI | bits::BLOCK_MOV_SS) == 0
            && self.event.is_none()
            && self.reinject.is_none()
            && self.exception.is_none()
    }

    fn request_interrupt_window(&mut self, on: bool) {
        self.window = on;
    }

    fn control_regs(&self) -> [u64; 4] {
        [self.cr0, self.cr3, self.cr4, self.efer]
    }

    fn cpl(&self) -> u8 {
        self.cpl
    }

    fn flush_p2m(&mut self) {
        self.flush = true;
    }

    fn backend(&self) -> &'static str {
        "VT-x"
    }

    fn unbind(&mut self) {
        self.release();
    }

    fn set_pause_exiting(&mut self, on: bool) {
        self.pause_exiting = on && self.caps.pause_exiting;
    }

    fn set_deadline(&mut self, tsc: Option<u64>) {
        self.deadline = tsc;
    }

    fn hypercall_insn(&self) -> [u8; 3] {
        [0x0f, 0x01, 0xc1] // VMCALL
    }

    fn set_xcr0(&mut self, value: u64) -> bool {
        self.fpu.set_xcr0(value)
    }

    fn set_io_intercept(&mut self, port: u16, intercept: bool) {
        crate::arch::x86::io::set_bitmap_port(self.io_bitmaps, port, intercept);
    }
}

impl Drop for VmxVcpu {
    fn drop(&mut self) {
        match self.cpu {
            Some(c) if c != gdt::cpu_index() => {
                // Still active on another CPU: that CPU may write the VMCS
                // back at any time and may hold its FPU state, so neither
                // its frames nor its FXSAVE area can be reused.
                log::warn!("VT-x: vCPU dropped while active on CPU{c}; leaking its VMCS");
                core::mem::take(&mut self.fpu).leak();
                return;
            }
            Some(_) => self.release(),
            None => {}
        }
        let mut f = crate::mm::phys::frames();
        f.free(self.vmcs, 1);
        f.free(self.msr_bitmap, 1);
        f.free(self.io_bitmaps, 2);
    }
}
