//! `domctl` (hypercall 36, `domctl.h`): per-domain management operations,
//! one [`XenDomctl`] per call, at [`INTERFACE_VERSION`] 0x15 (Xen 4.17).
//!
//! Xen answers a call whose `interface_version` is not exactly
//! [`INTERFACE_VERSION`] with `-EACCES`; the tools do not negotiate.
//! Operations without arguments (`pausedomain`, `unpausedomain`,
//! `destroydomain`) carry only the header's `domain`.

use crate::arch_x86::{ArchDomainConfig, CpuidLeaf, MsrEntry};
use crate::{DomId, DomainHandle, GuestHandle, Pod, XenctlBitmap};

pod_union! {
    /// The `u` union of `struct xen_domctl`: one sub-op's argument,
    /// 128 bytes (its `pad[128]` member), 8-aligned.
    pub struct DomctlU([u8; 128]), align 8;
}

pod_union! {
    /// The `u` union of `struct xen_domctl_scheduler_op`: [`SchedCredit`],
    /// [`SchedCredit2`], [`SchedRtds`] or [`SchedOpVcpus`].
    pub struct SchedOpU([u8; 16]), align 8;
}

pod_union! {
    /// The `u` union of `struct xen_domctl_schedparam_vcpu`: [`SchedCredit`],
    /// [`SchedCredit2`] or [`SchedRtds`].
    pub struct SchedParamU([u8; 12]), align 4;
}

pod! {
    "struct xen_domctl" =>
    /// `struct xen_domctl`: the domctl hypercall's one argument.
    pub struct XenDomctl {
        /// [`op`] number.
        pub cmd: u32,
        /// Must be [`INTERFACE_VERSION`].
        pub interface_version: u32,
        /// The target domain (IN/OUT for `createdomain`).
        pub domain: DomId,
        pub pad: [u16; 3] = "_pad",
        /// The sub-op's argument (see [`XenDomctl::op`]).
        pub u: DomctlU,
    }

    "struct xen_domctl_createdomain" =>
    /// `struct xen_domctl_createdomain` ([`op::CREATEDOMAIN`]). The new
    /// domain's id is returned in the header's `domain`: an id of 0 or one
    /// at or above [`DOMID_FIRST_RESERVED`](crate::DOMID_FIRST_RESERVED)
    /// asks Xen to choose one.
    pub struct CreateDomain {
        pub ssidref: u32,
        pub handle: DomainHandle,
        /// [`cdf`] bits.
        pub flags: u32,
        /// [`cdf::IOMMU_NO_SHAREPT`].
        pub iommu_opts: u32,
        pub max_vcpus: u32,
        pub max_evtchn_port: u32,
        /// Negative: the hypervisor's default.
        pub max_grant_frames: i32,
        /// Negative: the hypervisor's default.
        pub max_maptrack_frames: i32,
        /// Grant table version in the low 4 bits ([`GRANT_VERSION_MASK`]).
        pub grant_opts: u32,
        /// Per-vCPU trace buffer bytes (0: none).
        pub vmtrace_size: u32,
        pub cpupool_id: u32,
        pub arch: ArchDomainConfig,
    }

    "struct xen_domctl_getdomaininfo" =>
    /// `struct xen_domctl_getdomaininfo`: the answer of
    /// [`op::GETDOMAININFO`] and the element of
    /// [`sysctl::GetDomainInfoList`](crate::sysctl::GetDomainInfoList)'s
    /// buffer. In 4.17 `getdomaininfo` reports the first existing domain
    /// whose id is at least the header's `domain` (tools iterate with it).
    pub struct GetDomainInfo {
        pub domain: DomId,
        pub pad1: u16,
        /// [`dominf`] bits, with the shutdown code in bits 16..24.
        pub flags: u32,
        pub tot_pages: u64,
        pub max_pages: u64,
        pub outstanding_pages: u64,
        pub shr_pages: u64,
        pub paged_pages: u64,
        /// GFN of the domain's shared_info page.
        pub shared_info_frame: u64,
        /// Nanoseconds of CPU time used by all vCPUs.
        pub cpu_time: u64,
        pub nr_online_vcpus: u32,
        /// Highest vCPU id, or [`INVALID_MAX_VCPU_ID`] for none.
        pub max_vcpu_id: u32,
        pub ssidref: u32,
        pub handle: DomainHandle,
        pub cpupool: u32,
        /// Guest physical address width.
        pub gpaddr_bits: u8,
        pub pad2: [u8; 7],
        pub arch_config: ArchDomainConfig,
    }

    "struct xen_domctl_max_mem" =>
    /// `struct xen_domctl_max_mem` ([`op::MAX_MEM`]).
    pub struct MaxMem {
        pub max_memkb: u64,
    }

    "struct xen_domctl_getvcpuinfo" =>
    /// `struct xen_domctl_getvcpuinfo` ([`op::GETVCPUINFO`]).
    pub struct GetVcpuInfo {
        /// IN.
        pub vcpu: u32,
        pub online: u8,
        pub blocked: u8,
        pub running: u8,
        /// Nanoseconds.
        pub cpu_time: u64,
        /// The physical CPU it runs (or last ran) on.
        pub cpu: u32,
    }

    "struct xen_domctl_nodeaffinity" =>
    /// `struct xen_domctl_nodeaffinity` ([`op::SETNODEAFFINITY`],
    /// [`op::GETNODEAFFINITY`]).
    pub struct NodeAffinity {
        pub nodemap: XenctlBitmap,
    }

    "struct xen_domctl_vcpuaffinity" =>
    /// `struct xen_domctl_vcpuaffinity` ([`op::SETVCPUAFFINITY`],
    /// [`op::GETVCPUAFFINITY`]). `set` writes back the effective masks.
    pub struct VcpuAffinity {
        pub vcpu: u32,
        /// [`affinity`] bits: which of the two masks the call is about.
        pub flags: u32,
        pub cpumap_hard: XenctlBitmap,
        pub cpumap_soft: XenctlBitmap,
    }

    "struct xen_domctl_max_vcpus" =>
    /// `struct xen_domctl_max_vcpus` ([`op::MAX_VCPUS`]); must equal
    /// `CreateDomain::max_vcpus`.
    pub struct MaxVcpus {
        pub max: u32,
    }

    "struct xen_domctl_sched_credit" =>
    /// `struct xen_domctl_sched_credit`: weight (default 256) and cap
    /// (percent of one CPU, 0 = none).
    pub struct SchedCredit {
        pub weight: u16,
        pub cap: u16,
    }

    "struct xen_domctl_sched_credit2" =>
    /// `struct xen_domctl_sched_credit2`.
    pub struct SchedCredit2 {
        pub weight: u16,
        pub cap: u16,
    }

    "struct xen_domctl_sched_rtds" =>
    /// `struct xen_domctl_sched_rtds` (microseconds).
    pub struct SchedRtds {
        pub period: u32,
        pub budget: u32,
        /// [`schedop::RT_EXTRA`].
        pub flags: u32,
    }

    "__typeof__(((struct xen_domctl_scheduler_op *)0)->u.v)" =>
    /// The `v` member of `struct xen_domctl_scheduler_op`'s union: per-vCPU
    /// parameters ([`schedop::PUTVCPUINFO`], [`schedop::GETVCPUINFO`]).
    pub struct SchedOpVcpus {
        pub vcpus: GuestHandle<SchedParamVcpu>,
        /// IN: elements in `vcpus`; OUT: elements processed.
        pub nr_vcpus: u32,
        pub padding: u32,
    }

    "struct xen_domctl_schedparam_vcpu" =>
    /// `xen_domctl_schedparam_vcpu_t`: one element of [`SchedOpVcpus`].
    pub struct SchedParamVcpu {
        pub u: SchedParamU,
        pub vcpuid: u32,
    }

    "struct xen_domctl_scheduler_op" =>
    /// `struct xen_domctl_scheduler_op` ([`op::SCHEDULER_OP`]).
    pub struct SchedulerOp {
        /// [`scheduler`] id; must be the domain's scheduler.
        pub sched_id: u32,
        /// [`schedop`].
        pub cmd: u32,
        pub u: SchedOpU,
    }

    "struct xen_domctl_setdomainhandle" =>
    /// `struct xen_domctl_setdomainhandle` ([`op::SETDOMAINHANDLE`]).
    pub struct SetDomainHandle {
        pub handle: DomainHandle,
    }

    "struct xen_domctl_settimeoffset" =>
    /// `struct xen_domctl_settimeoffset` ([`op::SETTIMEOFFSET`]).
    pub struct SetTimeOffset {
        /// Added to the domain's wallclock.
        pub time_offset_seconds: i64,
    }

    "struct xen_domctl_hvmcontext" =>
    /// `struct xen_domctl_hvmcontext` ([`op::GETHVMCONTEXT`],
    /// [`op::SETHVMCONTEXT`]): a buffer of HVM save records
    /// ([`hvm::save`](crate::hvm::save)). `get` with a NULL buffer returns
    /// the size needed in `size`.
    pub struct HvmContext {
        /// IN: buffer size; OUT: bytes used.
        pub size: u32,
        pub buffer: GuestHandle<u8>,
    }

    "struct xen_domctl_cpu_policy" =>
    /// `struct xen_domctl_cpu_policy` ([`op::GET_CPU_POLICY`],
    /// [`op::SET_CPU_POLICY`]).
    pub struct CpuPolicy {
        /// IN: room in `leaves`; OUT: leaves written.
        pub nr_leaves: u32,
        /// IN: room in `msrs`; OUT: MSRs written.
        pub nr_msrs: u32,
        pub leaves: GuestHandle<CpuidLeaf>,
        pub msrs: GuestHandle<MsrEntry>,
        /// OUT (`set` errors): the leaf, subleaf or MSR that was refused.
        pub err_leaf: u32,
        pub err_subleaf: u32,
        pub err_msr: u32,
    }

    "struct xen_domctl_tsc_info" =>
    /// `struct xen_domctl_tsc_info` ([`op::SETTSCINFO`], [`op::GETTSCINFO`]).
    pub struct TscInfo {
        pub tsc_mode: u32,
        pub gtsc_khz: u32,
        pub incarnation: u32,
        pub pad: u32,
        pub elapsed_nsec: u64,
    }

    "struct xen_domctl_paging_mempool" =>
    /// `struct xen_domctl_paging_mempool` ([`op::SET_PAGING_MEMPOOL_SIZE`],
    /// [`op::GET_PAGING_MEMPOOL_SIZE`]).
    pub struct PagingMempool {
        /// Bytes.
        pub size: u64,
    }
}

consts! {
    /// `XEN_DOMCTL_INTERFACE_VERSION` of Xen 4.17 (4.16: 0x14, 4.18: 0x16).
    INTERFACE_VERSION: u32 = 0x15 => "XEN_DOMCTL_INTERFACE_VERSION";
    /// `GetDomainInfo::max_vcpu_id` of a domain without vCPUs.
    INVALID_MAX_VCPU_ID: u32 = 0xffff_ffff => "XEN_INVALID_MAX_VCPU_ID";
    /// `CreateDomain::grant_opts`: the grant table version bits.
    GRANT_VERSION_MASK: u32 = 0xf => "XEN_DOMCTL_GRANT_version_mask";
}

impl XenDomctl {
    /// A call of `cmd` on `domain` with argument `arg`, stamped with
    /// [`INTERFACE_VERSION`].
    pub fn new<T: Pod>(cmd: u32, domain: DomId, arg: &T) -> Self {
        Self {
            cmd,
            interface_version: INTERFACE_VERSION,
            domain,
            pad: [0; 3],
            u: DomctlU::new(arg),
        }
    }

    /// A call without argument (`pausedomain`, `unpausedomain`,
    /// `destroydomain`).
    pub fn without_arg(cmd: u32, domain: DomId) -> Self {
        Self {
            cmd,
            interface_version: INTERFACE_VERSION,
            domain,
            pad: [0; 3],
            u: DomctlU::default(),
        }
    }

    /// The sub-op argument, decoded as `T`.
    pub fn op<T: Pod>(&self) -> T {
        self.u.get()
    }

    /// Whether the caller speaks 4.17's domctl.
    pub fn version_ok(&self) -> bool {
        self.interface_version == INTERFACE_VERSION
    }
}

impl GetDomainInfo {
    /// The guest's shutdown code (`SHUTDOWN_*`), meaningful when
    /// [`dominf::SHUTDOWN`] is set.
    pub const fn shutdown_code(&self) -> u32 {
        (self.flags >> dominf::SHUTDOWNSHIFT) & dominf::SHUTDOWNMASK
    }
}

/// Command numbers (`XEN_DOMCTL_*`, [`XenDomctl::cmd`]).
pub mod op {
    consts! {
        /// [`CreateDomain`](super::CreateDomain).
        CREATEDOMAIN: u32 = 1 => "XEN_DOMCTL_createdomain";
        /// No argument.
        DESTROYDOMAIN: u32 = 2 => "XEN_DOMCTL_destroydomain";
        /// No argument. Pauses nest: each needs an unpause.
        PAUSEDOMAIN: u32 = 3 => "XEN_DOMCTL_pausedomain";
        /// No argument.
        UNPAUSEDOMAIN: u32 = 4 => "XEN_DOMCTL_unpausedomain";
        /// [`GetDomainInfo`](super::GetDomainInfo).
        GETDOMAININFO: u32 = 5 => "XEN_DOMCTL_getdomaininfo";
        /// [`VcpuAffinity`](super::VcpuAffinity).
        SETVCPUAFFINITY: u32 = 9 => "XEN_DOMCTL_setvcpuaffinity";
        SHADOW_OP: u32 = 10 => "XEN_DOMCTL_shadow_op";
        /// [`MaxMem`](super::MaxMem).
        MAX_MEM: u32 = 11 => "XEN_DOMCTL_max_mem";
        SETVCPUCONTEXT: u32 = 12 => "XEN_DOMCTL_setvcpucontext";
        GETVCPUCONTEXT: u32 = 13 => "XEN_DOMCTL_getvcpucontext";
        /// [`GetVcpuInfo`](super::GetVcpuInfo).
        GETVCPUINFO: u32 = 14 => "XEN_DOMCTL_getvcpuinfo";
        /// [`MaxVcpus`](super::MaxVcpus).
        MAX_VCPUS: u32 = 15 => "XEN_DOMCTL_max_vcpus";
        /// [`SchedulerOp`](super::SchedulerOp).
        SCHEDULER_OP: u32 = 16 => "XEN_DOMCTL_scheduler_op";
        /// [`SetDomainHandle`](super::SetDomainHandle).
        SETDOMAINHANDLE: u32 = 17 => "XEN_DOMCTL_setdomainhandle";
        SETDEBUGGING: u32 = 18 => "XEN_DOMCTL_setdebugging";
        IRQ_PERMISSION: u32 = 19 => "XEN_DOMCTL_irq_permission";
        IOMEM_PERMISSION: u32 = 20 => "XEN_DOMCTL_iomem_permission";
        IOPORT_PERMISSION: u32 = 21 => "XEN_DOMCTL_ioport_permission";
        HYPERCALL_INIT: u32 = 22 => "XEN_DOMCTL_hypercall_init";
        /// [`SetTimeOffset`](super::SetTimeOffset).
        SETTIMEOFFSET: u32 = 24 => "XEN_DOMCTL_settimeoffset";
        /// [`VcpuAffinity`](super::VcpuAffinity).
        GETVCPUAFFINITY: u32 = 25 => "XEN_DOMCTL_getvcpuaffinity";
        RESUMEDOMAIN: u32 = 27 => "XEN_DOMCTL_resumedomain";
        SENDTRIGGER: u32 = 28 => "XEN_DOMCTL_sendtrigger";
        SUBSCRIBE: u32 = 29 => "XEN_DOMCTL_subscribe";
        /// [`HvmContext`](super::HvmContext).
        GETHVMCONTEXT: u32 = 33 => "XEN_DOMCTL_gethvmcontext";
        /// [`HvmContext`](super::HvmContext).
        SETHVMCONTEXT: u32 = 34 => "XEN_DOMCTL_sethvmcontext";
        SET_ADDRESS_SIZE: u32 = 35 => "XEN_DOMCTL_set_address_size";
        GET_ADDRESS_SIZE: u32 = 36 => "XEN_DOMCTL_get_address_size";
        ASSIGN_DEVICE: u32 = 37 => "XEN_DOMCTL_assign_device";
        BIND_PT_IRQ: u32 = 38 => "XEN_DOMCTL_bind_pt_irq";
        MEMORY_MAPPING: u32 = 39 => "XEN_DOMCTL_memory_mapping";
        IOPORT_MAPPING: u32 = 40 => "XEN_DOMCTL_ioport_mapping";
        SET_EXT_VCPUCONTEXT: u32 = 42 => "XEN_DOMCTL_set_ext_vcpucontext";
        GET_EXT_VCPUCONTEXT: u32 = 43 => "XEN_DOMCTL_get_ext_vcpucontext";
        TEST_ASSIGN_DEVICE: u32 = 45 => "XEN_DOMCTL_test_assign_device";
        SET_TARGET: u32 = 46 => "XEN_DOMCTL_set_target";
        DEASSIGN_DEVICE: u32 = 47 => "XEN_DOMCTL_deassign_device";
        UNBIND_PT_IRQ: u32 = 48 => "XEN_DOMCTL_unbind_pt_irq";
        GET_DEVICE_GROUP: u32 = 50 => "XEN_DOMCTL_get_device_group";
        DEBUG_OP: u32 = 54 => "XEN_DOMCTL_debug_op";
        GETHVMCONTEXT_PARTIAL: u32 = 55 => "XEN_DOMCTL_gethvmcontext_partial";
        VM_EVENT_OP: u32 = 56 => "XEN_DOMCTL_vm_event_op";
        MEM_SHARING_OP: u32 = 57 => "XEN_DOMCTL_mem_sharing_op";
        /// [`TscInfo`](super::TscInfo).
        GETTSCINFO: u32 = 59 => "XEN_DOMCTL_gettscinfo";
        /// [`TscInfo`](super::TscInfo).
        SETTSCINFO: u32 = 60 => "XEN_DOMCTL_settscinfo";
        GETPAGEFRAMEINFO3: u32 = 61 => "XEN_DOMCTL_getpageframeinfo3";
        SETVCPUEXTSTATE: u32 = 62 => "XEN_DOMCTL_setvcpuextstate";
        GETVCPUEXTSTATE: u32 = 63 => "XEN_DOMCTL_getvcpuextstate";
        SET_ACCESS_REQUIRED: u32 = 64 => "XEN_DOMCTL_set_access_required";
        AUDIT_P2M: u32 = 65 => "XEN_DOMCTL_audit_p2m";
        SET_VIRQ_HANDLER: u32 = 66 => "XEN_DOMCTL_set_virq_handler";
        SET_BROKEN_PAGE_P2M: u32 = 67 => "XEN_DOMCTL_set_broken_page_p2m";
        /// [`NodeAffinity`](super::NodeAffinity).
        SETNODEAFFINITY: u32 = 68 => "XEN_DOMCTL_setnodeaffinity";
        /// [`NodeAffinity`](super::NodeAffinity).
        GETNODEAFFINITY: u32 = 69 => "XEN_DOMCTL_getnodeaffinity";
        CACHEFLUSH: u32 = 71 => "XEN_DOMCTL_cacheflush";
        GET_VCPU_MSRS: u32 = 72 => "XEN_DOMCTL_get_vcpu_msrs";
        SET_VCPU_MSRS: u32 = 73 => "XEN_DOMCTL_set_vcpu_msrs";
        SETVNUMAINFO: u32 = 74 => "XEN_DOMCTL_setvnumainfo";
        PSR_CMT_OP: u32 = 75 => "XEN_DOMCTL_psr_cmt_op";
        MONITOR_OP: u32 = 77 => "XEN_DOMCTL_monitor_op";
        PSR_ALLOC: u32 = 78 => "XEN_DOMCTL_psr_alloc";
        SOFT_RESET: u32 = 79 => "XEN_DOMCTL_soft_reset";
        VUART_OP: u32 = 81 => "XEN_DOMCTL_vuart_op";
        /// [`CpuPolicy`](super::CpuPolicy).
        GET_CPU_POLICY: u32 = 82 => "XEN_DOMCTL_get_cpu_policy";
        /// [`CpuPolicy`](super::CpuPolicy).
        SET_CPU_POLICY: u32 = 83 => "XEN_DOMCTL_set_cpu_policy";
        VMTRACE_OP: u32 = 84 => "XEN_DOMCTL_vmtrace_op";
        /// [`PagingMempool`](super::PagingMempool).
        GET_PAGING_MEMPOOL_SIZE: u32 = 85 => "XEN_DOMCTL_get_paging_mempool_size";
        /// [`PagingMempool`](super::PagingMempool) (a 4.17.x addition, XSA-409).
        SET_PAGING_MEMPOOL_SIZE: u32 = 86 => "XEN_DOMCTL_set_paging_mempool_size";
        GDBSX_GUESTMEMIO: u32 = 1000 => "XEN_DOMCTL_gdbsx_guestmemio";
        GDBSX_PAUSEVCPU: u32 = 1001 => "XEN_DOMCTL_gdbsx_pausevcpu";
        GDBSX_UNPAUSEVCPU: u32 = 1002 => "XEN_DOMCTL_gdbsx_unpausevcpu";
        GDBSX_DOMSTATUS: u32 = 1003 => "XEN_DOMCTL_gdbsx_domstatus";
    }
}

/// `CreateDomain::flags` (`XEN_DOMCTL_CDF_*`) and `iommu_opts`.
pub mod cdf {
    consts! {
        /// An HVM (or PVH) guest rather than PV.
        HVM: u32 = 1 << 0 => "XEN_DOMCTL_CDF_hvm";
        /// Hardware-assisted paging (EPT/NPT).
        HAP: u32 = 1 << 1 => "XEN_DOMCTL_CDF_hap";
        S3_INTEGRITY: u32 = 1 << 2 => "XEN_DOMCTL_CDF_s3_integrity";
        OOS_OFF: u32 = 1 << 3 => "XEN_DOMCTL_CDF_oos_off";
        /// The xenstore domain.
        XS_DOMAIN: u32 = 1 << 4 => "XEN_DOMCTL_CDF_xs_domain";
        /// May use the IOMMU (device passthrough).
        IOMMU: u32 = 1 << 5 => "XEN_DOMCTL_CDF_iommu";
        NESTED_VIRT: u32 = 1 << 6 => "XEN_DOMCTL_CDF_nested_virt";
        VPMU: u32 = 1 << 7 => "XEN_DOMCTL_CDF_vpmu";
        /// The highest defined flag.
        MAX: u32 = 1 << 7 => "XEN_DOMCTL_CDF_MAX";
        /// `CreateDomain::iommu_opts`: do not share the HAP tables with the IOMMU.
        IOMMU_NO_SHAREPT: u32 = 1 << 0 => "XEN_DOMCTL_IOMMU_no_sharept";
    }
}

/// `GetDomainInfo::flags` (`XEN_DOMINF_*`).
pub mod dominf {
    consts! {
        DYING: u32 = 1 << 0 => "XEN_DOMINF_dying";
        HVM_GUEST: u32 = 1 << 1 => "XEN_DOMINF_hvm_guest";
        /// The guest shut down; the code is in bits 16..24.
        SHUTDOWN: u32 = 1 << 2 => "XEN_DOMINF_shutdown";
        /// Paused by the toolstack.
        PAUSED: u32 = 1 << 3 => "XEN_DOMINF_paused";
        BLOCKED: u32 = 1 << 4 => "XEN_DOMINF_blocked";
        RUNNING: u32 = 1 << 5 => "XEN_DOMINF_running";
        DEBUGGED: u32 = 1 << 6 => "XEN_DOMINF_debugged";
        XS_DOMAIN: u32 = 1 << 7 => "XEN_DOMINF_xs_domain";
        HAP: u32 = 1 << 8 => "XEN_DOMINF_hap";
        SHUTDOWNMASK: u32 = 255 => "XEN_DOMINF_shutdownmask";
        SHUTDOWNSHIFT: u32 = 16 => "XEN_DOMINF_shutdownshift";
    }
}

/// `VcpuAffinity::flags` (`XEN_VCPUAFFINITY_*`).
pub mod affinity {
    consts! {
        HARD: u32 = 1 << 0 => "XEN_VCPUAFFINITY_HARD";
        SOFT: u32 = 1 << 1 => "XEN_VCPUAFFINITY_SOFT";
        /// Undo a guest's `SCHEDOP_pin_override`.
        FORCE: u32 = 1 << 2 => "XEN_VCPUAFFINITY_FORCE";
    }
}

/// Scheduler ids (`XEN_SCHEDULER_*`): `SchedulerOp::sched_id`, sysctl
/// `sched_id`, `cpupool_op`.
pub mod scheduler {
    consts! {
        CREDIT: u32 = 5 => "XEN_SCHEDULER_CREDIT";
        CREDIT2: u32 = 6 => "XEN_SCHEDULER_CREDIT2";
        ARINC653: u32 = 7 => "XEN_SCHEDULER_ARINC653";
        RTDS: u32 = 8 => "XEN_SCHEDULER_RTDS";
        NULL: u32 = 9 => "XEN_SCHEDULER_NULL";
    }
}

/// `SchedulerOp::cmd` (`XEN_DOMCTL_SCHEDOP_*`) and RTDS flags.
pub mod schedop {
    consts! {
        /// Set the domain's parameters (every vCPU).
        PUTINFO: u32 = 0 => "XEN_DOMCTL_SCHEDOP_putinfo";
        /// Get the domain's parameters.
        GETINFO: u32 = 1 => "XEN_DOMCTL_SCHEDOP_getinfo";
        PUTVCPUINFO: u32 = 2 => "XEN_DOMCTL_SCHEDOP_putvcpuinfo";
        GETVCPUINFO: u32 = 3 => "XEN_DOMCTL_SCHEDOP_getvcpuinfo";
        /// `SchedRtds::flags`: may run beyond its budget.
        RT_EXTRA: u32 = 1 << 0 => "XEN_DOMCTL_SCHEDRT_extra";
    }
}

/// `TscInfo::tsc_mode` values. Xen 4.17 keeps them in its private
/// `asm/time.h` (`TSC_MODE_*`) and libxl mirrors them
/// (`LIBXL_TSC_MODE_*`); the public headers only describe them (leaf
/// 0x4000_0003 EBX in `arch-x86/cpuid.h`), so nothing here is checked
/// against a C header.
pub mod tsc_mode {
    /// Native TSC where that is safe, emulated otherwise (`tsc_mode="default"`).
    pub const DEFAULT: u32 = 0;
    /// Every RDTSC emulated (`tsc_mode="always_emulate"`).
    pub const ALWAYS_EMULATE: u32 = 1;
    /// Never emulated: the native TSC (`tsc_mode="native"`).
    pub const NEVER_EMULATE: u32 = 2;
}
