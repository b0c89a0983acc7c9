//! The architecture's part of each CPU's block ([`crate::percpu::PerCpu`]).

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64};
use spin::Mutex;

/// Work another CPU hands to this one (`kernel::run_on_cpu`).
pub type Job = alloc::boxed::Box<dyn FnOnce() + Send>;

pub struct ArchCpu {
    pub apic_id: AtomicU32,
    pub online: AtomicBool,
    /// The FPU area whose state its registers hold (`fpu`).
    pub fpu_owner: AtomicPtr<u8>,
    /// dom0's device vectors that arrived here, the level-triggered ones
    /// among them, and EOIs owed to its local APIC (`irq`).
    pub irq_pending: [AtomicU64; 4],
    pub irq_level: [AtomicU64; 4],
    pub owed_eois: AtomicU32,
    /// VT-x: in VMX operation, its VMXON region, and the VMCS whose
    /// SYSCALL MSRs it holds (`vmx`).
    pub vmx_on: AtomicBool,
    pub vmxon_region: AtomicU64,
    pub syscall_owner: AtomicU64,
    /// AMD-V: its host save area, host VMCB and ASID pool (`svm`).
    pub svm: Mutex<Option<super::svm::CpuState>>,
    /// A job handed to it (`kernel::run_on_cpu`).
    pub job: Mutex<Option<Job>>,
    /// The value in its IA32_TSC_AUX (`u64::MAX`: not known yet): the
    /// last vCPU's, loaded before entry (`platform::load_tsc_aux`).
    pub tsc_aux: AtomicU64,
}

impl ArchCpu {
    pub fn new() -> Self {
        ArchCpu {
            apic_id: AtomicU32::new(u32::MAX),
            online: AtomicBool::new(false),
            fpu_owner: AtomicPtr::new(core::ptr::null_mut()),
            irq_pending: [const { AtomicU64::new(0) }; 4],
            irq_level: [const { AtomicU64::new(0) }; 4],
            owed_eois: AtomicU32::new(0),
            vmx_on: AtomicBool::new(false),
            vmxon_region: AtomicU64::new(0),
            syscall_owner: AtomicU64::new(0),
            svm: Mutex::new(None),
            job: Mutex::new(None),
            tsc_aux: AtomicU64::new(u64::MAX),
        }
    }
}

impl Default for ArchCpu {
    fn default() -> Self {
        Self::new()
    }
}

/// This CPU's architecture block.
pub fn this() -> &'static ArchCpu {
    &crate::percpu::this().arch
}

/// CPU `i`'s architecture block, once that CPU is up.
pub fn get(i: usize) -> Option<&'static ArchCpu> {
    crate::percpu::get(i).map(|p| &p.arch)
}
