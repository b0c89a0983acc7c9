//! The hardware-touching half of the SVM backend.
use super::asid::{Asid, AsidPool, Flush};
use super::exit::RawExit;
use super::vmcb::{self, exit, intercept, Seg, Vmcb};
use crate::arch::x86::fpu::{self, GuestFpu};
use crate::arch::x86::{cpu, gdt};
use crate::hvm::decode;
use crate::hvm::guestmem::{self, P2mReader};
use crate::hvm::vcpu::{Event, Exit, Regs, StartMode, Vcpu};
use crate::mm::p2m::{Format, P2m};
use crate::mm::phys::frames;
use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering};
use raw_cpuid::CpuId;

const MSR_VM_CR: u32 = 0xc001_0114;
const MSR_VM_HSAVE_PA: u32 = 0xc001_0117;
const EFER_SVME: u64 = 1 << 12;
const VM_CR_SVMDIS: u64 = 1 << 4;

#[derive(Clone, Copy, Debug)]
pub struct Caps {
    pub asids: u32,
    pub nrip: bool,
    pub flush_by_asid: bool,
    pub npt: bool,
}

pub fn caps() -> Option<Caps> {
    let c = CpuId::new();
    let svm = c.get_svm_info()?;
    Some(Caps {
        asids: svm.supported_asids(),
        nrip: svm.has_nrip(),
        flush_by_asid: svm.has_flush_by_asid(),
        // QEMU TCG runs NPT without advertising it in every model; keel
        // requires the bit, as real hardware sets it.
        npt: svm.has_nested_paging(),
    })
}

/// Whether AMD-V with nested paging can be used, and why not.
pub fn supported() -> Result<Caps, &'static str> {
    let ext = CpuId::new().get_extended_processor_and_feature_identifiers();
    if !ext.is_some_and(|e| e.has_svm()) {
        return Err("the CPU has no AMD-V (SVM)");
    }
    if cpu::rdmsr(MSR_VM_CR) & VM_CR_SVMDIS != 0 {
        return Err("AMD-V is disabled by firmware (VM_CR.SVMDIS)");
    }
    let c = caps().ok_or("no SVM feature leaf (CPUID 0x8000000A)")?;
    if !c.npt {
        return Err("AMD-V without nested paging is not supported");
    }
    Ok(c)
}

/// A CPU's AMD-V state (in its per-CPU block).
pub struct CpuState {
    hsave: u64,
    host_vmcb: u64,
    asids: AsidPool,
}

fn zeroed_frames(pages: u64) -> Result<u64, &'static str> {
    let f = frames()
        .alloc(pages)
        .ok_or("out of memory for SVM structures")?;
    // SAFETY: freshly allocated frames, mapped by the direct map.
    unsafe { core::ptr::write_bytes(cpu::phys_to_virt(f) as *mut u8, 0, (pages * 4096) as usize) };
    Ok(f)
}

/// Turns SVM on for this CPU (idempotent).
pub fn enable_cpu() -> Result<(), &'static str> {
    let c = supported()?;
    let mut slot = crate::arch::x86::percpu::this().svm.lock();
    if slot.is_none() {
        let hsave = zeroed_frames(1)?;
        let host_vmcb = zeroed_frames(1)?;
        cpu::wrmsr(cpu::MSR_EFER, cpu::rdmsr(cpu::MSR_EFER) | EFER_SVME);
        fpu::enable_on_this_cpu();
        cpu::wrmsr(MSR_VM_HSAVE_PA, hsave);
        *slot = Some(CpuState {
            hsave,
            host_vmcb,
            asids: AsidPool::new(c.asids),
        });
    }
    Ok(())
}

pub fn disable_cpu() {
    cpu::wrmsr(cpu::MSR_EFER, cpu::rdmsr(cpu::MSR_EFER) & !EFER_SVME);
}

static VMRUNS: AtomicU64 = AtomicU64::new(0);

/// MSRs the guest reads and writes directly: VMRUN/#VMEXIT or VMLOAD/VMSAVE
/// switch them (FS/GS bases, KernelGSbase, the SYSCALL and SYSENTER MSRs),
/// or nested paging redirects them to the VMCB (PAT goes to G_PAT).
const PASSTHROUGH_MSRS: &[u32] = &[
    0x174,       // SYSENTER_CS
    0x175,       // SYSENTER_ESP
    0x176,       // SYSENTER_EIP
    0x277,       // PAT (G_PAT under nested paging)
    0xc000_0081, // STAR
    0xc000_0082, // LSTAR
    0xc000_0083, // CSTAR
    0xc000_0084, // SFMASK
    0xc000_0100, // FS_BASE
    0xc000_0101, // GS_BASE
    0xc000_0102, // KERNEL_GS_BASE
];

pub struct SvmVcpu {
    vmcb_pa: u64,
    iopm_pa: u64,
    msrpm_pa: u64,
    regs: Regs,
    asid: Option<Asid>,
    cpu: usize,
    caps: Caps,
    flush: bool,
    p2m: Option<P2m>,
    /// The guest's view of EFER (SVME hidden).
    guest_efer: u64,
    /// The guest's x87/SSE state (see `arch::x86::fpu`).
    fpu: GuestFpu,
    /// The last #VMEXIT's code, for the reports below.
    last_exit: u64,
    /// Where the guest was when `inject` queued the pending virtual
    /// interrupt, and how many exits it has survived since with the guest
    /// able to take it (see `deliver_stuck_interrupt`).
    virq_rip: u64,
    virq_exits: u8,
}

// SAFETY: the VMCB and maps are owned by this vCPU alone.
unsafe impl Send for SvmVcpu {}

impl SvmVcpu {
    pub fn new() -> Result<Self, &'static str> {
        let caps = supported()?;
        let vmcb_pa = zeroed_frames(1)?;
        let iopm_pa = zeroed_frames(3)?;
        let msrpm_pa = zeroed_frames(2)?;
        // Intercept every port and every MSR (common code decides), except
        // the MSRs whose guest values the hardware keeps in the VMCB.
        // SAFETY: just allocated, direct-mapped.
        unsafe {
            core::ptr::write_bytes(cpu::phys_to_virt(iopm_pa) as *mut u8, 0xff, 3 * 4096);
            core::ptr::write_bytes(cpu::phys_to_virt(msrpm_pa) as *mut u8, 0xff, 2 * 4096);
        }
        // SAFETY: the MSR permission map is 8 KiB, direct-mapped, ours.
        let msrpm = unsafe { &mut *(cpu::phys_to_virt(msrpm_pa) as *mut [u8; 8192]) };
        for &msr in PASSTHROUGH_MSRS {
            let bit = super::vmcb::msrpm_bit(msr).expect("MSR in a mapped range");
            // Clear the read and the write intercept (two adjacent bits).
            msrpm[bit / 8] &= !(0b11 << (bit % 8));
        }
        let v = SvmVcpu {
            vmcb_pa,
            iopm_pa,
            msrpm_pa,
            regs: Regs::default(),
            asid: None,
            cpu: usize::MAX,
            caps,
            flush: true,
            p2m: None,
            guest_efer: 0,
            fpu: GuestFpu::new(),
            last_exit: u64::MAX,
            virq_rip: 0,
            virq_exits: 0,
        };
        Ok(v)
    }

    fn vmcb(&mut self) -> &mut Vmcb {
        // SAFETY: the VMCB frame belongs to this vCPU; direct-mapped.
        unsafe { &mut *(cpu::phys_to_virt(self.vmcb_pa) as *mut Vmcb) }
    }
    fn vmcb_ref(&self) -> &Vmcb {
        // SAFETY: as above.
        unsafe { &*(cpu::phys_to_virt(self.vmcb_pa) as *const Vmcb) }
    }

    /// Names the first VMCB consistency check (APM vol. 2, 15.5.1) the
    /// state fails, so an invalid-state exit can say which.
    fn check_state(&self) -> Option<&'static str> {
        let s = &self.vmcb_ref().save;
        let c = &self.vmcb_ref().control;
        if s.efer & EFER_SVME == 0 {
            return Some("guest EFER.SVME is clear");
        }
        if s.cr0 & (1 << 29) != 0 && s.cr0 & (1 << 30) == 0 {
            return Some("guest CR0.NW set with CR0.CD clear");
        }
        if s.cr0 >> 32 != 0 {
            return Some("guest CR0[63:32] not zero");
        }
        if s.dr6 >> 32 != 0 || s.dr7 >> 32 != 0 {
            return Some("guest DR6/DR7[63:32] not zero");
        }
        if s.efer & (1 << 8) != 0 && s.cr0 & (1 << 31) != 0 && s.cr4 & (1 << 5) == 0 {
            return Some("long mode paging (EFER.LME and CR0.PG) without CR4.PAE");
        }
        if s.efer & (1 << 8) != 0 && s.cr0 & (1 << 31) != 0 && s.cr0 & 1 == 0 {
            return Some("long mode paging without CR0.PE");
        }
        if c.intercept_misc2 & intercept::VMRUN == 0 {
            return Some("VMRUN intercept clear");
        }
        if c.asid == 0 {
            return Some("ASID 0");
        }
        None
    }

    fn insn_len(&self, exit_code: u64) -> u8 {
        let v = self.vmcb_ref();
        if self.caps.nrip && v.control.next_rip != 0 {
            return v.control.next_rip.wrapping_sub(v.save.rip) as u8;
        }
        // Decode it ourselves: fetch up to 15 bytes at CS.base + RIP.
        let s = &v.save;
        let la = s.cs.base.wrapping_add(s.rip);
        let mut bytes = [0u8; 15];
        let long = s.efer & (1 << 10) != 0 && s.cs.attrib & 0x200 != 0;
        if let Some(p2m) = &self.p2m {
            let mut rd = P2mReader(p2m);
            if let Some(gpa) = decode::linear_to_gpa(&mut rd, s.cr0, s.cr3, s.cr4, s.efer, la) {
                // The instruction may cross a page: read what is there.
                let first = (4096 - (gpa & 0xfff)).min(15) as usize;
                guestmem::read(p2m, gpa, &mut bytes[..first]);
                if first < 15 {
                    if let Some(g2) = decode::linear_to_gpa(
                        &mut rd,
                        s.cr0,
                        s.cr3,
                        s.cr4,
                        s.efer,
                        la + first as u64,
                    ) {
                        guestmem::read(p2m, g2, &mut bytes[first..]);
                    }
                }
            }
        }
        decode::exit_insn_len(&bytes, long).unwrap_or_else(|| {
            log::warn!("svm: cannot decode the instruction for exit {exit_code:#x} at {la:#x}: {bytes:02x?}");
            0
        })
    }
}

impl SvmVcpu {
    /// A virtual interrupt `inject` requested (V_IRQ without the VINTR
    /// intercept) that the guest has not taken yet.
    fn virq_queued(&self) -> bool {
        let c = &self.vmcb_ref().control;
        c.vintr & vmcb::vintr::V_IRQ != 0 && c.intercept_misc1 & intercept::VINTR == 0
    }

    /// After an exit: a virtual interrupt the guest could have taken (its
    /// RFLAGS.IF set, no interrupt shadow) but has not, though it ran on
    /// (RIP moved) or two exits went by, goes in through EVENTINJ instead.
    /// The CPU takes a virtual interrupt at the first instruction boundary
    /// where it can, so this happens only under Bochs 2.7, which masks a
    /// virtual interrupt at each #VMEXIT and unmasks it only when the
    /// guest's RFLAGS.IF changes: one injected while IF = 1 waited for the
    /// guest's next `cli`/`sti` (a HLT, a busy loop). EVENTINJ interrupts
    /// are delivered once there (QEMU's flaw, `inject`, is QEMU's alone).
    fn deliver_stuck_interrupt(&mut self) {
        if !self.virq_queued() {
            return;
        }
        if !self.interruptible() {
            return;
        }
        self.virq_exits = self.virq_exits.saturating_add(1);
        if self.regs.rip == self.virq_rip && self.virq_exits < 2 {
            return;
        }
        self.virq_to_eventinj();
    }

    /// The guest could take an external interrupt at this boundary:
    /// RFLAGS.IF set, no interrupt shadow, and no event in EVENTINJ still
    /// (e.g. one being re-delivered).
    fn interruptible(&self) -> bool {
        let c = &self.vmcb_ref().control;
        self.regs.rflags & (1 << 9) != 0
            && c.interrupt_shadow & 1 == 0
            && c.event_inj & (1 << 31) == 0
    }

    /// Moves the queued virtual interrupt to EVENTINJ.
    fn virq_to_eventinj(&mut self) {
        let c = &mut self.vmcb().control;
        let vector = (c.vintr >> 32) as u8;
        c.vintr &= !vmcb::vintr::V_IRQ;
        c.event_inj = vmcb::event_inj(vector, vmcb::EVENT_INTR, None);
    }

    /// keel intercepts #DF: if the guest's IDT cannot deliver it (limit too
    /// small for vector 8, or a non-present gate), the architecture turns it
    /// into a triple fault, i.e. shutdown. Deciding that here instead of
    /// relying on the SHUTDOWN intercept gives the same result on hardware
    /// and also works on Bochs 2.7, which resets the whole machine on a
    /// guest triple fault instead of taking the intercept.
    fn double_fault_is_shutdown(&self) -> bool {
        let s = &self.vmcb_ref().save;
        let long = s.efer & (1 << 10) != 0;
        let gate_size = if long { 16 } else { 8 };
        if (s.idtr.limit as u64) < 8 * gate_size + gate_size - 1 {
            return true;
        }
        let Some(p2m) = &self.p2m else { return true };
        let la = s.idtr.base + 8 * gate_size;
        let mut rd = P2mReader(p2m);
        let Some(gpa) = decode::linear_to_gpa(&mut rd, s.cr0, s.cr3, s.cr4, s.efer, la) else {
            return true;
        };
        let mut gate = [0u8; 8];
        // Real mode has no gates (IVT entries are always "present").
        s.cr0 & 1 != 0 && (!guestmem::read(p2m, gpa, &mut gate) || gate[5] & 0x80 == 0)
    }
}

impl Drop for SvmVcpu {
    fn drop(&mut self) {
        if self.cpu == gdt::cpu_index() as usize {
            self.fpu.release();
        } else if self.cpu != usize::MAX {
            // Another CPU may still hold (and later save into) this state.
            core::mem::take(&mut self.fpu).leak();
        }
        let mut f = frames();
        f.free(self.vmcb_pa, 1);
        f.free(self.iopm_pa, 3);
        f.free(self.msrpm_pa, 2);
    }
}

core::arch::global_asm!(
    r#"
    .section .text.keel_svm_run, "ax"
    .global keel_svm_run
    // rdi = &mut Regs, rsi = guest VMCB pa, rdx = host VMCB pa (VMSAVE area)
keel_svm_run:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    push rdi
    push rdx
    mov rax, rdx
    vmsave                      // host FS/GS/TR/LDTR/KernelGsBase/STAR... -> host VMCB
    mov rax, rsi
    mov rbx, [rdi + 8*1]
    mov rcx, [rdi + 8*2]
    mov rdx, [rdi + 8*3]
    mov rsi, [rdi + 8*4]
    mov rbp, [rdi + 8*6]
    mov r8,  [rdi + 8*7]
    mov r9,  [rdi + 8*8]
    mov r10, [rdi + 8*9]
    mov r11, [rdi + 8*10]
    mov r12, [rdi + 8*11]
    mov r13, [rdi + 8*12]
    mov r14, [rdi + 8*13]
    mov r15, [rdi + 8*14]
    mov rdi, [rdi + 8*5]
    vmload
    vmrun
    .global keel_svm_after_vmrun
keel_svm_after_vmrun:
    vmsave                      // RAX is the guest VMCB again after #VMEXIT
    push rdi
    mov rdi, [rsp + 16]         // &mut Regs
    mov [rdi + 8*1], rbx
    mov [rdi + 8*2], rcx
    mov [rdi + 8*3], rdx
    mov [rdi + 8*4], rsi
    mov [rdi + 8*6], rbp
    mov [rdi + 8*7], r8
    mov [rdi + 8*8], r9
    mov [rdi + 8*9], r10
    mov [rdi + 8*10], r11
    mov [rdi + 8*11], r12
    mov [rdi + 8*12], r13
    mov [rdi + 8*13], r14
    mov [rdi + 8*14], r15
    pop rax
    mov [rdi + 8*5], rax
    pop rax                     // host VMCB pa
    vmload
    pop rdi
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret
"#
);

extern "C" {
    fn keel_svm_run(regs: *mut Regs, vmcb_pa: u64, host_vmcb_pa: u64);
    /// The instruction after `vmrun`: the RIP VMRUN saves as the host's.
    static keel_svm_after_vmrun: u8;
}

/// Whether `rip` is the host RIP VMRUN saves: a guest state holding it is
/// keel's own state (see `SvmVcpu::run`).
fn is_host_rip(rip: u64) -> bool {
    // Only the label's address is taken (no read): no `unsafe` needed.
    rip == core::ptr::addr_of!(keel_svm_after_vmrun) as u64
}

fn seg(selector: u16, base: u64, limit: u32, vmx_ar: u16) -> Seg {
    Seg {
        selector,
        attrib: vmcb::pack_attr(vmx_ar),
        limit,
        base,
    }
}

impl Vcpu for SvmVcpu {
    fn reset(&mut self, mode: StartMode) {
        let (iopm, msrpm) = (self.iopm_pa, self.msrpm_pa);
        let v = self.vmcb();
        let c = &mut v.control;
        c.intercept_cr = 0;
        // #DF only: see `double_fault_is_shutdown`.
        c.intercept_exceptions = 1 << 8;
        c.intercept_misc1 = intercept::INTR
            | intercept::NMI
            | intercept::SMI
            | intercept::INIT
            | intercept::CPUID
            | intercept::HLT
            | intercept::INVLPGA
            | intercept::IOIO_PROT
            | intercept::MSR_PROT
            | intercept::SHUTDOWN;
        // The SVM instructions: the guest's EFER.SVME is really set (VMRUN
        // requires it), so without these intercepts VMLOAD/VMSAVE would
        // read and write *host* physical memory at the guest's RAX, CLGI
        // would hold off the host's interrupts, and INVLPGA would flush
        // other vCPUs' ASIDs. The guest sees EFER.SVME clear and no SVM
        // in CPUID: each gets the #UD a CPU without SVM gives.
        c.intercept_misc2 = intercept::VMRUN
            | intercept::VMLOAD
            | intercept::VMSAVE
            | intercept::STGI
            | intercept::CLGI
            | intercept::SKINIT
            | intercept::VMMCALL
            | intercept::XSETBV
            | intercept::MONITOR
            | intercept::MWAIT
            | intercept::MWAIT_ARMED;
        c.iopm_base_pa = iopm;
        c.msrpm_base_pa = msrpm;
        // With PAUSE intercepted (`set_pause_exiting`), a spinning vCPU
        // exits after this many PAUSEs where the CPU has a pause filter.
        c.pause_filter_count = 3000;
        c.np_enable = 1;
        c.event_inj = 0;
        c.vintr = vmcb::vintr::V_INTR_MASKING; // the host keeps physical interrupts
        let s = &mut v.save;
        let (rip, rbx) = match mode {
            StartMode::RealModeSipi { vector } => {
                s.cs = seg((vector as u16) << 8, (vector as u64) << 12, 0xffff, 0x9b);
                for d in [&mut s.ds, &mut s.es, &mut s.ss, &mut s.fs, &mut s.gs] {
                    *d = seg(0, 0, 0xffff, 0x93);
                }
                s.tr = seg(0, 0, 0xffff, 0x8b);
                s.cr0 = 0x30; // ET | NE
                (0, 0)
            }
            StartMode::Pvh32 { entry, ebx } => {
                // Flat 32-bit segments (G, D/B set), a 32-bit TSS, PE on.
                s.cs = seg(0x8, 0, 0xffff_ffff, 0xc09b);
                for d in [&mut s.ds, &mut s.es, &mut s.ss, &mut s.fs, &mut s.gs] {
                    *d = seg(0x10, 0, 0xffff_ffff, 0xc093);
                }
                s.tr = seg(0x18, 0, 0x67, 0x8b);
                s.cr0 = 0x31; // PE | ET | NE
                (entry as u64, ebx as u64)
            }
        };
        s.gdtr = seg(0, 0, 0xffff, 0);
        s.idtr = seg(0, 0, 0xffff, 0);
        s.ldtr = seg(0, 0, 0xffff, 0x82);
        s.cpl = 0;
        s.efer = EFER_SVME;
        s.cr3 = 0;
        s.cr4 = 0;
        s.dr6 = 0xffff_0ff0;
        s.dr7 = 0x400;
        s.rflags = 2;
        s.rip = rip;
        s.rsp = 0;
        s.rax = 0;
        s.g_pat = 0x0007_0406_0007_0406;
        self.regs = Regs {
            rflags: 2,
            rip,
            rbx,
            ..Regs::default()
        };
        self.guest_efer = 0;
        self.flush = true;
    }

    fn set_p2m_root(&mut self, root: u64) {
        self.vmcb().control.n_cr3 = root;
        self.p2m = Some(P2m {
            format: Format::Npt {
                nx: cpu::features().nx,
            },
            root,
        });
        self.flush = true;
    }

    fn run(&mut self) -> Exit {
        let here = gdt::cpu_index() as usize;
        let (host_vmcb, asid, flush_all) = {
            let mut slot = crate::arch::x86::percpu::this().svm.lock();
            let Some(pc) = slot.as_mut() else {
                return Exit::InvalidGuestState {
                    detail: "SVM not enabled on this CPU",
                    code: 0,
                };
            };
            // A vCPU moving to another CPU needs that CPU's ASID.
            let cur = if self.cpu == here { self.asid } else { None };
            let (a, f) = pc.asids.refresh(cur);
            let _ = pc.hsave;
            (pc.host_vmcb, a, f == Flush::All)
        };
        self.cpu = here;
        self.asid = Some(asid);
        let want_flush = core::mem::take(&mut self.flush);
        {
            let regs = self.regs;
            let caps = self.caps;
            let v = self.vmcb();
            v.control.asid = asid.asid;
            // Flush point: a recycled ASID or a changed p2m. Without
            // flush-by-ASID the only choice is flushing everything.
            v.control.tlb_control = if flush_all || (want_flush && !caps.flush_by_asid) {
                1
            } else if want_flush {
                3
            } else {
                0
            };
            v.control.clean_bits = 0;
            v.save.rax = regs.rax;
            v.save.rsp = regs.rsp;
            v.save.rip = regs.rip;
            v.save.rflags = regs.rflags;
        }
        if let Some(why) = self.check_state() {
            return Exit::InvalidGuestState {
                detail: why,
                code: 0,
            };
        }
        // keel's own state as the guest's (docs/dom0.md, "Intermittent
        // fault"): caught here, it ends the domain with a report instead of
        // running keel's code in guest mode.
        if is_host_rip(self.regs.rip) {
            log::error!(
                "svm: the VMCB at {:#x} holds keel's host state before VMRUN (last exit {:#x}, CPU{here})",
                self.vmcb_pa,
                self.last_exit
            );
            return Exit::InvalidGuestState {
                detail: "the VMCB held keel's host state before VMRUN",
                code: self.last_exit,
            };
        }
        let injected = self.vmcb_ref().control.event_inj;
        VMRUNS.fetch_add(1, Ordering::Relaxed);
        x86_64::instructions::interrupts::disable();
        self.fpu.load();
        // VMRUN loads the guest's CR2 from the VMCB, except on Bochs (2.7
        // and later), which reads the field but never loads it: a vCPU
        // switched in there would see the last vCPU's page-fault address
        // (dom0's init died of a SIGSEGV at another process's address on
        // `ryzen` with 4 vCPUs on 2 CPUs). Loading it here costs nothing
        // where VMRUN does it too (the CPU's CR2 is already the guest's
        // after its own #VMEXIT).
        cpu::load_guest_cr2(self.vmcb_ref().save.cr2);
        // SAFETY: SVM is enabled on this CPU (checked above); the VMCB,
        // maps and host save area are valid frames; the stub saves and
        // restores every callee-saved register. With GIF clear, STI lets no
        // interrupt in here, but VMRUN saves the host's IF = 1: with
        // V_INTR_MASKING that is what lets a physical interrupt (a kick, the
        // host timer) end guest mode with an INTR exit. Without it such an
        // interrupt would wait for the guest's next unrelated exit.
        unsafe {
            core::arch::asm!("clgi", "sti");
            keel_svm_run(&mut self.regs, self.vmcb_pa, host_vmcb);
            core::arch::asm!("cli", "stgi");
        }
        let (code, info1, info2, again) = {
            let v = self.vmcb();
            // An event whose delivery the exit interrupted (EXITINTINFO
            // valid, e.g. a #NPF on the guest's IDT) is delivered again on
            // the next entry (an interrupt as a virtual interrupt, as
            // `inject` does, below); anything else injected has been
            // delivered.
            v.control.event_inj = 0;
            let again = vmcb::redeliver(v.control.exit_int_info);
            if let Some(Err(event)) = again {
                v.control.event_inj = event;
            }
            (
                v.control.exit_code,
                v.control.exit_info1,
                v.control.exit_info2,
                again,
            )
        };
        {
            let s = self.vmcb_ref().save;
            self.regs.rax = s.rax;
            self.regs.rsp = s.rsp;
            self.regs.rip = s.rip;
            self.regs.rflags = s.rflags;
        }
        if let Some(Ok(vector)) = again {
            self.inject(Event::Interrupt(vector));
        }
        self.deliver_stuck_interrupt();
        let prev_exit = core::mem::replace(&mut self.last_exit, code);
        if is_host_rip(self.regs.rip) {
            let c = &self.vmcb_ref().control;
            log::error!(
                "svm: #VMEXIT {code:#x} (info {info1:#x} {info2:#x}, exit_int_info {:#x}, injected {injected:#x}, previous exit {prev_exit:#x}) stored keel's host state as the guest's, VMCB {:#x}, CPU{here}",
                c.exit_int_info,
                self.vmcb_pa
            );
            return Exit::InvalidGuestState {
                detail: "#VMEXIT stored keel's host state as the guest's",
                code,
            };
        }
        // Exits the backend finishes itself, then the neutral decoding.
        match code {
            exit::INTR | exit::NMI => {
                // Let the host take it now.
                x86_64::instructions::interrupts::enable();
                x86_64::instructions::nop();
                x86_64::instructions::interrupts::disable();
            }
            exit::VINTR => self.vmcb().control.vintr &= !vmcb::vintr::V_IRQ,
            exit::SHUTDOWN => {
                // A triple fault keel's #DF intercept did not see: what
                // the CPU was delivering, and what keel had injected.
                let s = &self.vmcb_ref().save;
                log::info!(
                    "svm: shutdown at RIP {:#x} RSP {:#x} CR2 {:#x}: exit_int_info {:#x}, injected at entry {injected:#x}, previous exit {prev_exit:#x}",
                    s.rip,
                    s.rsp,
                    s.cr2,
                    self.vmcb_ref().control.exit_int_info
                );
            }
            exit::VMRUN
            | exit::VMLOAD
            | exit::VMSAVE
            | exit::STGI
            | exit::CLGI
            | exit::SKINIT
            | exit::INVLPGA => {
                // Nested SVM is not offered: the guest gets #UD.
                self.inject(Event::Exception {
                    vector: 6,
                    error_code: None,
                });
                return self.run();
            }
            exit::MSR if self.regs.rcx as u32 == cpu::MSR_EFER => {
                // Architectural bookkeeping stays here: SVME stays set
                // underneath and is hidden from the guest.
                let len = self.insn_len(code);
                if info1 == 1 {
                    let val = (self.regs.rdx << 32) | (self.regs.rax & 0xffff_ffff);
                    self.guest_efer = val;
                    self.vmcb().save.efer = val | EFER_SVME;
                } else {
                    let val = self.vmcb_ref().save.efer & !EFER_SVME;
                    self.regs.rax = val & 0xffff_ffff;
                    self.regs.rdx = val >> 32;
                }
                self.skip(len);
                return self.run();
            }
            c if c == exit::EXCP_BASE + 8 => {
                // What led to it: at info level when it ends the guest
                // (the report of a triple fault), else debug (a guest may
                // raise #DF at will).
                let s = &self.vmcb_ref().save;
                let shutdown = self.double_fault_is_shutdown();
                log::log!(
                    if shutdown { log::Level::Info } else { log::Level::Debug },
                    "svm: #DF at RIP {:#x} RSP {:#x} CR2 {:#x}: exit_int_info {:#x}, injected at entry {injected:#x}, previous exit {prev_exit:#x}",
                    s.rip,
                    s.rsp,
                    s.cr2,
                    self.vmcb_ref().control.exit_int_info
                );
                if shutdown {
                    return Exit::TripleFault;
                }
                self.inject(Event::Exception {
                    vector: 8,
                    error_code: Some(0),
                });
                return self.run();
            }
            _ => {}
        }
        let raw = RawExit {
            code,
            info1,
            info2,
            rip: self.regs.rip,
            rax: self.regs.rax,
            rcx: self.regs.rcx,
            rdx: self.regs.rdx,
        };
        super::exit::decode(&raw, || self.insn_len(code))
    }

    fn skip(&mut self, len: u8) {
        self.regs.rip = self.regs.rip.wrapping_add(len as u64);
        // The instruction is done: any STI/MOV SS shadow it sat in is over
        // (an `sti; hlt` reports the shadow at the HLT exit).
        self.vmcb().control.interrupt_shadow &= !1;
        // A virtual interrupt still queued was held off by that shadow, or
        // Bochs sat on it (`deliver_stuck_interrupt`): the guest takes it
        // at the next boundary either way, and EVENTINJ is sure to do it.
        // (`sti; hlt` in Linux's idle loop: it is why the HLT ends.)
        if self.virq_queued() && self.regs.rflags & (1 << 9) != 0 {
            self.virq_to_eventinj();
        }
    }

    fn regs(&self) -> &Regs {
        &self.regs
    }
    fn regs_mut(&mut self) -> &mut Regs {
        &mut self.regs
    }

    /// An external interrupt goes in as a virtual interrupt (V_IRQ, not
    /// intercepted), which the guest takes at its first instruction
    /// boundary (`can_inject_interrupt` checked that it can), exactly as an
    /// EVENTINJ interrupt. Not EVENTINJ: QEMU's TCG (7.2 at least) delivers
    /// an EVENTINJ interrupt inside VMRUN and leaves its vector as the
    /// vCPU's pending exception, so the next kick of that vCPU thread
    /// delivers it a second time, wherever the guest then is and with
    /// RFLAGS.IF = 0: in dom0, between `swapgs` and `iretq` on the way back
    /// to user mode, Linux's handler then ran with the user's GS and died
    /// ("ENTRY_TRAMPOLINE stack guard page was hit", docs/testing.md).
    /// Exceptions and NMIs still use EVENTINJ (QEMU delivers those through
    /// its exception path, once).
    fn inject(&mut self, ev: Event) {
        let e = match ev {
            Event::Interrupt(v) => {
                self.virq_rip = self.regs.rip;
                self.virq_exits = 0;
                let c = &mut self.vmcb().control;
                c.vintr = vmcb::vintr::request(c.vintr, v);
                c.intercept_misc1 &= !intercept::VINTR;
                return;
            }
            Event::Nmi => vmcb::event_inj(2, vmcb::EVENT_NMI, None),
            Event::Exception { vector, error_code } => {
                vmcb::event_inj(vector, vmcb::EVENT_EXCEPTION, error_code)
            }
        };
        self.vmcb().control.event_inj = e;
    }

    fn can_inject_interrupt(&self) -> bool {
        // Nor while an injected interrupt has not been taken yet.
        self.interruptible() && !self.virq_queued()
    }

    /// An interrupt `inject` requested that the guest has not taken yet:
    /// a virtual interrupt, or one `deliver_stuck_interrupt` moved to
    /// EVENTINJ.
    fn interrupt_queued(&self) -> bool {
        let c = &self.vmcb_ref().control;
        self.virq_queued()
            || (c.event_inj & (1 << 31) != 0 && (c.event_inj >> 8) & 7 == vmcb::EVENT_INTR)
    }

    fn request_interrupt_window(&mut self, on: bool) {
        // An injected interrupt not taken yet is the next thing the guest
        // takes: the exit after it is the next chance to inject (a VINTR
        // intercept now would turn its delivery into an exit).
        if self.virq_queued() {
            return;
        }
        let c = &mut self.vmcb().control;
        if on {
            // A virtual interrupt the guest can take whenever it can: its
            // VINTR exit is the window.
            c.vintr = vmcb::vintr::request(c.vintr, 0);
            c.intercept_misc1 |= intercept::VINTR;
        } else {
            c.vintr &= !vmcb::vintr::V_IRQ;
            c.intercept_misc1 &= !intercept::VINTR;
        }
    }

    fn control_regs(&self) -> [u64; 4] {
        let s = &self.vmcb_ref().save;
        [s.cr0, s.cr3, s.cr4, s.efer & !EFER_SVME]
    }

    fn cpl(&self) -> u8 {
        self.vmcb_ref().save.cpl & 3
    }

    fn flush_p2m(&mut self) {
        self.flush = true;
    }

    fn backend(&self) -> &'static str {
        "AMD-V"
    }

    fn unbind(&mut self) {
        self.fpu.release();
    }

    fn set_pause_exiting(&mut self, on: bool) {
        let c = &mut self.vmcb().control;
        if on {
            c.intercept_misc1 |= intercept::PAUSE;
        } else {
            c.intercept_misc1 &= !intercept::PAUSE;
        }
    }

    fn hypercall_insn(&self) -> [u8; 3] {
        [0x0f, 0x01, 0xd9] // VMMCALL
    }

    fn set_xcr0(&mut self, value: u64) -> bool {
        self.fpu.set_xcr0(value)
    }

    fn set_io_intercept(&mut self, port: u16, intercept: bool) {
        crate::arch::x86::io::set_bitmap_port(self.iopm_pa, port, intercept);
    }
}

/// A one-line description for the boot log.
pub fn describe() -> String {
    match supported() {
        Ok(c) => alloc::format!(
            "AMD-V with nested paging, {} ASIDs, next-RIP save {}, flush-by-ASID {}",
            c.asids,
            if c.nrip {
                "yes"
            } else {
                "no (instruction lengths decoded)"
            },
            if c.flush_by_asid { "yes" } else { "no" }
        ),
        Err(e) => alloc::format!("AMD-V unavailable: {e}"),
    }
}

pub fn vmruns() -> u64 {
    VMRUNS.load(Ordering::Relaxed)
}
