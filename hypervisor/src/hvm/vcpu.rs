//! The vendor-neutral virtual CPU interface.

/// General-purpose registers, RIP and RFLAGS as common code sees them.
/// (Which of them the hardware saves itself differs by vendor; the backend
/// keeps this struct exact across `run`.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Regs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rsp: u64,
    pub rip: u64,
    pub rflags: u64,
}

impl Regs {
    /// GPR by the x86 encoding number (0 = RAX ... 15 = R15).
    pub fn gpr(&self, n: u8) -> u64 {
        match n & 15 {
            0 => self.rax,
            1 => self.rcx,
            2 => self.rdx,
            3 => self.rbx,
            4 => self.rsp,
            5 => self.rbp,
            6 => self.rsi,
            7 => self.rdi,
            8 => self.r8,
            9 => self.r9,
            10 => self.r10,
            11 => self.r11,
            12 => self.r12,
            13 => self.r13,
            14 => self.r14,
            _ => self.r15,
        }
    }
    pub fn set_gpr(&mut self, n: u8, v: u64) {
        let r = match n & 15 {
            0 => &mut self.rax,
            1 => &mut self.rcx,
            2 => &mut self.rdx,
            3 => &mut self.rbx,
            4 => &mut self.rsp,
            5 => &mut self.rbp,
            6 => &mut self.rsi,
            7 => &mut self.rdi,
            8 => &mut self.r8,
            9 => &mut self.r9,
            10 => &mut self.r10,
            11 => &mut self.r11,
            12 => &mut self.r12,
            13 => &mut self.r13,
            14 => &mut self.r14,
            _ => &mut self.r15,
        };
        *r = v;
    }
}

/// Kind of access that caused a nested-paging fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Execute,
}

impl Access {
    pub fn name(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Execute => "execute",
        }
    }
}

/// Stores the result of an `in` of `size` bytes into RAX the way the CPU
/// does: a 32-bit result zero-extends into RAX, 8- and 16-bit ones leave
/// the other bits alone.
pub fn io_in_result(rax: u64, size: u8, value: u64) -> u64 {
    if size >= 4 {
        value & 0xffff_ffff
    } else {
        let mask = (1u64 << (size * 8)) - 1;
        (rax & !mask) | (value & mask)
    }
}

/// Why the guest stopped running. Every backend maps its exit codes onto
/// this; `len` fields are the instruction length (for skipping it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Cpuid {
        len: u8,
    },
    MsrRead {
        msr: u32,
        len: u8,
    },
    MsrWrite {
        msr: u32,
        value: u64,
        len: u8,
    },
    /// Port I/O. For `string` forms the data is in guest memory (not
    /// emulated yet by common code: it kills the guest with a clear reason).
    Io {
        port: u16,
        size: u8,
        write: bool,
        string: bool,
        rep: bool,
        len: u8,
    },
    CrAccess {
        cr: u8,
        write: bool,
        gpr: u8,
        len: u8,
    },
    Hlt {
        len: u8,
    },
    Pause {
        len: u8,
    },
    /// VMCALL or VMMCALL.
    Hypercall {
        len: u8,
    },
    /// XSETBV (guest XCR0 write).
    Xsetbv {
        len: u8,
    },
    /// MONITOR, MWAIT or MONITORX/MWAITX. keel's CPUID offers none of
    /// them (a guest sleeping in MWAIT with interrupts off could hold a
    /// shared CPU for good), so they raise #UD, as on Xen.
    MonitorMwait,
    NestedPageFault {
        gpa: u64,
        access: Access,
        present: bool,
    },
    /// A host interrupt arrived while the guest ran (the host handled it).
    ExternalInterrupt,
    /// The guest can now take an injected interrupt.
    InterruptWindow,
    /// keel's own deadline for this entry passed (VT-x's VMX-preemption
    /// timer; AMD-V has none: there a host timer interrupt ends the entry,
    /// an [`Exit::ExternalInterrupt`]).
    PreemptionTimer,
    Init,
    Sipi {
        vector: u8,
    },
    /// Triple fault / shutdown: the guest is dead.
    TripleFault,
    /// An exception the backend intercepts (for diagnostics).
    Exception {
        vector: u8,
        error_code: Option<u32>,
    },
    /// VM entry failed or the guest state is invalid: `detail` names the
    /// failing field or check as precisely as the hardware tells.
    InvalidGuestState {
        detail: &'static str,
        code: u64,
    },
    /// An exit the backend does not decode, with its raw reason.
    Unhandled {
        reason: u64,
    },
}

/// An event to deliver to the guest on the next entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// External interrupt (needs RFLAGS.IF = 1 and no interrupt shadow:
    /// check [`Vcpu::can_inject_interrupt`], else request a window).
    Interrupt(u8),
    /// Hardware exception, with its error code where the vector has one.
    Exception {
        vector: u8,
        error_code: Option<u32>,
    },
    Nmi,
}

/// Segment register state as the hardware caches it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub selector: u16,
    pub base: u64,
    pub limit: u32,
    /// Access rights in the VMX layout (type, S, DPL, P, AVL, L, D/B, G in
    /// bits 0-15); SVM backends convert to their packed layout.
    pub attr: u16,
}

/// How a guest CPU starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartMode {
    /// Real mode at `vector << 12`, the way a SIPI starts a CPU
    /// (CS = vector << 8, IP = 0).
    RealModeSipi { vector: u8 },
    /// The PVH boot ABI (Xen's docs/misc/pvh.pandoc): 32-bit protected mode,
    /// paging off, flat 4 GiB code and data segments, a 32-bit TSS, EIP =
    /// `entry`, EBX = `ebx` (the hvm_start_info address), other GPRs zero.
    Pvh32 { entry: u32, ebx: u32 },
}

/// The vendor-neutral guest CPU.
pub trait Vcpu {
    /// Sets the initial architectural state.
    fn reset(&mut self, mode: StartMode);
    /// Points the CPU at a nested page table (EPT or NPT root, already in
    /// the vendor's format: see `mm::p2m`).
    fn set_p2m_root(&mut self, root: u64);
    /// Runs the guest until the next exit. Host interrupts stay masked
    /// while the guest runs and are taken right after the exit.
    fn run(&mut self) -> Exit;
    fn regs(&self) -> &Regs;
    fn regs_mut(&mut self) -> &mut Regs;
    /// Advances RIP past the instruction that exited.
    fn skip(&mut self, len: u8) {
        let r = self.regs_mut();
        r.rip = r.rip.wrapping_add(len as u64);
    }
    /// Queues an event for the next entry.
    fn inject(&mut self, ev: Event);
    /// True if an external interrupt could be delivered now.
    fn can_inject_interrupt(&self) -> bool;
    /// True while an interrupt `inject` queued has not been taken by the
    /// guest yet (AMD-V's virtual interrupt, which Bochs holds until the
    /// guest changes RFLAGS.IF; `docs/hvm.md`). A HLT then does not halt:
    /// the guest takes the interrupt on re-entry.
    fn interrupt_queued(&self) -> bool {
        false
    }
    /// Asks for an [`Exit::InterruptWindow`] as soon as interrupts can be
    /// delivered.
    fn request_interrupt_window(&mut self, on: bool);
    /// Guest CR0, CR3, CR4 and EFER (read-only view for diagnostics).
    fn control_regs(&self) -> [u64; 4];
    /// The guest's current privilege level (0-3) as of the last exit:
    /// SS.DPL on VT-x, the VMCB's CPL on AMD-V.
    fn cpl(&self) -> u8;
    /// Flushes this vCPU's cached nested translations (after the p2m
    /// changed a present entry). Backends do it on the next entry.
    fn flush_p2m(&mut self);
    /// Which backend: "VT-x" or "AMD-V".
    fn backend(&self) -> &'static str;
    /// Whether a spin-wait loop (PAUSE, past the CPU's pause filter where
    /// it has one) exits, so that another vCPU waiting for this CPU can run.
    fn set_pause_exiting(&mut self, on: bool);
    /// The TSC by which this run must end (keel's next timer), for a
    /// backend that can bound a run by itself too (VT-x's preemption
    /// timer); the host timer interrupt is the main bound.
    fn set_deadline(&mut self, _tsc: Option<u64>) {}
    /// The vCPU leaves this CPU: its hardware state is released here
    /// (VMCLEAR on VT-x, its FPU state saved), so any CPU may run it next.
    fn unbind(&mut self);
    /// The instruction a guest's hypercall page uses: VMCALL or VMMCALL.
    fn hypercall_insn(&self) -> [u8; 3];
    /// Whether an access to I/O `port` exits (the default for every port)
    /// or goes straight to the hardware (dom0's devices).
    fn set_io_intercept(&mut self, port: u16, intercept: bool);
    /// XSETBV: the guest's new XCR0 (loaded now, and whenever this vCPU's
    /// FPU state is). False: refused (#GP).
    fn set_xcr0(&mut self, value: u64) -> bool;

    /// Injects #GP(0), the answer to an MSR or instruction keel refuses.
    fn inject_gp(&mut self) {
        self.inject(Event::Exception {
            vector: 13,
            error_code: Some(0),
        });
    }

    /// Raises #UD (an instruction the guest's CPUID does not offer).
    fn inject_ud(&mut self) {
        self.inject(Event::Exception {
            vector: 6,
            error_code: None,
        });
    }

    /// Completes an RDMSR of `len` bytes: EDX:EAX = `value`, then skip it.
    fn complete_rdmsr(&mut self, value: u64, len: u8) {
        let r = self.regs_mut();
        r.rax = value & 0xffff_ffff;
        r.rdx = value >> 32;
        self.skip(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_results_merge_or_zero_extend() {
        let rax = 0xa5a5_a5a5_dead_beef;
        assert_eq!(io_in_result(rax, 1, 0x1234), 0xa5a5_a5a5_dead_be34);
        assert_eq!(io_in_result(rax, 2, 0x1234), 0xa5a5_a5a5_dead_1234);
        assert_eq!(io_in_result(rax, 4, 0xffff_ffff_1234), 0xffff_1234);
    }
}
