//! `sysctl` (hypercall 35, `sysctl.h`): host-wide management operations,
//! one [`XenSysctl`] per call, at [`INTERFACE_VERSION`] 0x15 (Xen 4.17,
//! unchanged in 4.18 and 4.19). A different `interface_version` gets
//! `-EACCES`.

use crate::arch_x86::{CpuidLeaf, MsrEntry};
use crate::domctl::GetDomainInfo;
use crate::{DomId, GuestHandle, Pod, XenctlBitmap};

pod_union! {
    /// The `u` union of `struct xen_sysctl`: one sub-op's argument,
    /// 128 bytes (its `pad[128]` member), 8-aligned.
    pub struct SysctlU([u8; 128]), align 8;
}

pod_union! {
    /// The `u` union of `struct xen_sysctl_scheduler_op`: [`SchedCreditParams`],
    /// credit2's rate limit or arinc653's schedule handle.
    pub struct SchedulerOpU([u8; 16]), align 8;
}

pod! {
    "struct xen_sysctl_credit_schedule" =>
    /// `struct xen_sysctl_credit_schedule`: the credit scheduler's
    /// pool-wide parameters.
    pub struct SchedCreditParams {
        /// Time slice, milliseconds.
        pub tslice_ms: u32,
        /// The least a vCPU runs before it can be preempted, microseconds.
        pub ratelimit_us: u32,
        /// How long a vCPU that ran is kept from migrating, microseconds.
        pub vcpu_migr_delay_us: u32,
    }

    "struct xen_sysctl_scheduler_op" =>
    /// `struct xen_sysctl_scheduler_op` ([`op::SCHEDULER_OP`]): a cpupool
    /// scheduler's parameters (`xl sched-credit -s`).
    pub struct SchedulerOp {
        pub cpupool_id: u32,
        /// [`domctl::scheduler`](crate::domctl::scheduler) id; must be the pool's.
        pub sched_id: u32,
        /// [`schedop`].
        pub cmd: u32,
        pub u: SchedulerOpU,
    }

    "struct xen_sysctl" =>
    /// `struct xen_sysctl`: the sysctl hypercall's one argument.
    pub struct XenSysctl {
        /// [`op`] number.
        pub cmd: u32,
        /// Must be [`INTERFACE_VERSION`].
        pub interface_version: u32,
        /// The sub-op's argument (see [`XenSysctl::op`]).
        pub u: SysctlU,
    }

    "struct xen_sysctl_readconsole" =>
    /// `struct xen_sysctl_readconsole` ([`op::READCONSOLE`]): reads the
    /// hypervisor's console ring (`xl dmesg`).
    pub struct ReadConsole {
        /// Non-zero: empty the ring after reading.
        pub clear: u8,
        /// Non-zero: start at `index` (else at the oldest byte).
        pub incremental: u8,
        pub pad0: u8,
        pub pad1: u8,
        /// IN: start index (if `incremental`); OUT: the index after the
        /// last byte read.
        pub index: u32,
        pub buffer: GuestHandle<u8>,
        /// IN: buffer size; OUT: bytes written.
        pub count: u32,
    }

    "struct xen_sysctl_physinfo" =>
    /// `struct xen_sysctl_physinfo` ([`op::PHYSINFO`]): `xl info`'s host
    /// figures.
    pub struct PhysInfo {
        pub threads_per_core: u32,
        pub cores_per_socket: u32,
        /// CPUs online.
        pub nr_cpus: u32,
        pub max_cpu_id: u32,
        pub nr_nodes: u32,
        pub max_node_id: u32,
        pub cpu_khz: u32,
        /// [`physcap`] bits.
        pub capabilities: u32,
        /// Architecture-specific capability bits (none on x86 in 4.17).
        pub arch_capabilities: u32,
        pub pad: u32,
        pub total_pages: u64,
        pub free_pages: u64,
        pub scrub_pages: u64,
        pub outstanding_pages: u64,
        /// Highest machine frame number.
        pub max_mfn: u64,
        /// CPUID feature words.
        pub hw_cap: [u32; 8],
    }

    "struct xen_sysctl_sched_id" =>
    /// `struct xen_sysctl_sched_id` ([`op::SCHED_ID`]).
    pub struct SchedId {
        /// [`domctl::scheduler`](crate::domctl::scheduler) id.
        pub sched_id: u32,
    }

    "struct xen_sysctl_perfc_desc" =>
    /// `xen_sysctl_perfc_desc_t`: one software performance counter's name
    /// and how many values it has (one per CPU, or an array).
    pub struct PerfcDesc {
        /// NUL-padded.
        pub name: [u8; 80],
        pub nr_vals: u32,
    }

    "xen_sysctl_perfc_val_t" =>
    /// `xen_sysctl_perfc_val_t`: one counter value (they wrap at 2^32).
    pub type PerfcVal = u32;

    "struct xen_sysctl_perfc_op" =>
    /// `struct xen_sysctl_perfc_op` ([`op::PERFC_OP`]): `xenperf`'s
    /// counters. NULL handles ask for the counts only.
    pub struct PerfcOp {
        /// [`perfcop`].
        pub cmd: u32,
        /// OUT: number of [`PerfcDesc`]s.
        pub nr_counters: u32,
        /// OUT: number of values ([`PerfcVal`]) over all counters.
        pub nr_vals: u32,
        pub desc: GuestHandle<PerfcDesc>,
        pub val: GuestHandle<PerfcVal>,
    }

    "struct xen_sysctl_getdomaininfolist" =>
    /// `struct xen_sysctl_getdomaininfolist` ([`op::GETDOMAININFOLIST`]):
    /// up to `max_domains` domains with id at least `first_domain`, in id
    /// order.
    pub struct GetDomainInfoList {
        pub first_domain: DomId,
        pub max_domains: u32,
        pub buffer: GuestHandle<GetDomainInfo>,
        /// OUT: entries written.
        pub num_domains: u32,
    }

    "struct xen_sysctl_cputopo" =>
    /// `xen_sysctl_cputopo_t`: one CPU's place (`INVALID_*_ID` if offline).
    pub struct CpuTopo {
        pub core: u32,
        pub socket: u32,
        pub node: u32,
    }

    "struct xen_sysctl_cputopoinfo" =>
    /// `struct xen_sysctl_cputopoinfo` ([`op::CPUTOPOINFO`]). A NULL
    /// `cputopo` asks for the number of CPUs.
    pub struct CpuTopoInfo {
        /// IN: entries in `cputopo`; OUT: entries written (or wanted).
        pub num_cpus: u32,
        pub cputopo: GuestHandle<CpuTopo>,
    }

    "struct xen_sysctl_meminfo" =>
    /// `xen_sysctl_meminfo_t`: one NUMA node's memory, bytes.
    pub struct MemInfo {
        pub memsize: u64,
        pub memfree: u64,
    }

    "struct xen_sysctl_numainfo" =>
    /// `struct xen_sysctl_numainfo` ([`op::NUMAINFO`]). NULL handles ask
    /// for the number of nodes; `distance` is `num_nodes`² entries, row-major.
    pub struct NumaInfo {
        pub num_nodes: u32,
        pub meminfo: GuestHandle<MemInfo>,
        pub distance: GuestHandle<u32>,
    }

    "struct xen_sysctl_cpupool_op" =>
    /// `struct xen_sysctl_cpupool_op` ([`op::CPUPOOL_OP`]). `INFO` reports
    /// the first pool with id at least `cpupool_id` (tools iterate with it).
    pub struct CpupoolOp {
        /// [`cpupool_op`].
        pub op: u32,
        pub cpupool_id: u32,
        pub sched_id: u32,
        pub domid: u32,
        pub cpu: u32,
        /// OUT (`INFO`): domains in the pool.
        pub n_dom: u32,
        /// OUT (`INFO`, `FREEINFO`).
        pub cpumap: XenctlBitmap,
    }

    "struct xen_sysctl_cpu_featureset" =>
    /// `struct xen_sysctl_cpu_featureset` ([`op::GET_CPU_FEATURESET`]).
    /// A NULL `features` asks for the number of feature words.
    pub struct CpuFeatureset {
        /// [`featureset`].
        pub index: u32,
        /// IN: room in `features`; OUT: words written (or the maximum).
        pub nr_features: u32,
        pub features: GuestHandle<u32>,
    }

    "struct xen_sysctl_cpu_policy" =>
    /// `struct xen_sysctl_cpu_policy` ([`op::GET_CPU_POLICY`]). NULL
    /// handles ask for the maximum numbers of leaves and MSRs.
    pub struct CpuPolicy {
        /// [`cpu_policy`].
        pub index: u32,
        pub nr_leaves: u32,
        pub nr_msrs: u32,
        /// Must be zero.
        pub rsvd: u32 = "_rsvd",
        pub leaves: GuestHandle<CpuidLeaf>,
        pub msrs: GuestHandle<MsrEntry>,
    }
}

consts! {
    /// `XEN_SYSCTL_INTERFACE_VERSION` of Xen 4.17 (also 4.18 and 4.19).
    INTERFACE_VERSION: u32 = 0x15 => "XEN_SYSCTL_INTERFACE_VERSION";
    /// `CpuTopo` of an offline CPU.
    INVALID_CORE_ID: u32 = 0xffff_ffff => "XEN_INVALID_CORE_ID";
    INVALID_SOCKET_ID: u32 = 0xffff_ffff => "XEN_INVALID_SOCKET_ID";
    INVALID_NODE_ID: u32 = 0xffff_ffff => "XEN_INVALID_NODE_ID";
    /// `MemInfo` of an absent node (the C constant is a 32-bit `~0U`).
    INVALID_MEM_SZ: u32 = 0xffff_ffff => "XEN_INVALID_MEM_SZ";
    INVALID_NODE_DIST: u32 = 0xffff_ffff => "XEN_INVALID_NODE_DIST";
}

impl XenSysctl {
    /// A call of `cmd` with argument `arg`, stamped with [`INTERFACE_VERSION`].
    pub fn new<T: Pod>(cmd: u32, arg: &T) -> Self {
        Self {
            cmd,
            interface_version: INTERFACE_VERSION,
            u: SysctlU::new(arg),
        }
    }

    /// The sub-op argument, decoded as `T`.
    pub fn op<T: Pod>(&self) -> T {
        self.u.get()
    }

    /// Whether the caller speaks 4.17's sysctl.
    pub fn version_ok(&self) -> bool {
        self.interface_version == INTERFACE_VERSION
    }
}

/// `SchedulerOp::cmd` (`XEN_SYSCTL_SCHEDOP_*`).
pub mod schedop {
    consts! {
        PUTINFO: u32 = 0 => "XEN_SYSCTL_SCHEDOP_putinfo";
        GETINFO: u32 = 1 => "XEN_SYSCTL_SCHEDOP_getinfo";
        /// Bounds of [`SchedCreditParams`](super::SchedCreditParams) in a put.
        RATELIMIT_MAX: u32 = 500_000 => "XEN_SYSCTL_SCHED_RATELIMIT_MAX";
        RATELIMIT_MIN: u32 = 100 => "XEN_SYSCTL_SCHED_RATELIMIT_MIN";
        CSCHED_TSLICE_MAX: u32 = 1000 => "XEN_SYSCTL_CSCHED_TSLICE_MAX";
        CSCHED_TSLICE_MIN: u32 = 1 => "XEN_SYSCTL_CSCHED_TSLICE_MIN";
        CSCHED_MGR_DLY_MAX_US: u32 = 100_000 => "XEN_SYSCTL_CSCHED_MGR_DLY_MAX_US";
    }
}

/// Command numbers (`XEN_SYSCTL_*`, [`XenSysctl::cmd`]).
pub mod op {
    consts! {
        /// [`ReadConsole`](super::ReadConsole).
        READCONSOLE: u32 = 1 => "XEN_SYSCTL_readconsole";
        TBUF_OP: u32 = 2 => "XEN_SYSCTL_tbuf_op";
        /// [`PhysInfo`](super::PhysInfo).
        PHYSINFO: u32 = 3 => "XEN_SYSCTL_physinfo";
        /// [`SchedId`](super::SchedId).
        SCHED_ID: u32 = 4 => "XEN_SYSCTL_sched_id";
        /// [`PerfcOp`](super::PerfcOp).
        PERFC_OP: u32 = 5 => "XEN_SYSCTL_perfc_op";
        /// [`GetDomainInfoList`](super::GetDomainInfoList).
        GETDOMAININFOLIST: u32 = 6 => "XEN_SYSCTL_getdomaininfolist";
        DEBUG_KEYS: u32 = 7 => "XEN_SYSCTL_debug_keys";
        GETCPUINFO: u32 = 8 => "XEN_SYSCTL_getcpuinfo";
        AVAILHEAP: u32 = 9 => "XEN_SYSCTL_availheap";
        GET_PMSTAT: u32 = 10 => "XEN_SYSCTL_get_pmstat";
        CPU_HOTPLUG: u32 = 11 => "XEN_SYSCTL_cpu_hotplug";
        PM_OP: u32 = 12 => "XEN_SYSCTL_pm_op";
        PAGE_OFFLINE_OP: u32 = 14 => "XEN_SYSCTL_page_offline_op";
        LOCKPROF_OP: u32 = 15 => "XEN_SYSCTL_lockprof_op";
        /// [`CpuTopoInfo`](super::CpuTopoInfo).
        CPUTOPOINFO: u32 = 16 => "XEN_SYSCTL_cputopoinfo";
        /// [`NumaInfo`](super::NumaInfo).
        NUMAINFO: u32 = 17 => "XEN_SYSCTL_numainfo";
        /// [`CpupoolOp`](super::CpupoolOp).
        CPUPOOL_OP: u32 = 18 => "XEN_SYSCTL_cpupool_op";
        /// [`SchedulerOp`](super::SchedulerOp).
        SCHEDULER_OP: u32 = 19 => "XEN_SYSCTL_scheduler_op";
        COVERAGE_OP: u32 = 20 => "XEN_SYSCTL_coverage_op";
        PSR_CMT_OP: u32 = 21 => "XEN_SYSCTL_psr_cmt_op";
        PCITOPOINFO: u32 = 22 => "XEN_SYSCTL_pcitopoinfo";
        PSR_ALLOC: u32 = 23 => "XEN_SYSCTL_psr_alloc";
        GET_CPU_LEVELLING_CAPS: u32 = 25 => "XEN_SYSCTL_get_cpu_levelling_caps";
        /// [`CpuFeatureset`](super::CpuFeatureset).
        GET_CPU_FEATURESET: u32 = 26 => "XEN_SYSCTL_get_cpu_featureset";
        LIVEPATCH_OP: u32 = 27 => "XEN_SYSCTL_livepatch_op";
        /// [`CpuPolicy`](super::CpuPolicy).
        GET_CPU_POLICY: u32 = 29 => "XEN_SYSCTL_get_cpu_policy";
    }
}

/// `PhysInfo::capabilities` (`XEN_SYSCTL_PHYSCAP_*`).
pub mod physcap {
    consts! {
        HVM: u32 = 1 << 0 => "XEN_SYSCTL_PHYSCAP_hvm";
        PV: u32 = 1 << 1 => "XEN_SYSCTL_PHYSCAP_pv";
        /// Device passthrough with an IOMMU.
        DIRECTIO: u32 = 1 << 2 => "XEN_SYSCTL_PHYSCAP_directio";
        /// Hardware-assisted paging.
        HAP: u32 = 1 << 3 => "XEN_SYSCTL_PHYSCAP_hap";
        SHADOW: u32 = 1 << 4 => "XEN_SYSCTL_PHYSCAP_shadow";
        IOMMU_HAP_PT_SHARE: u32 = 1 << 5 => "XEN_SYSCTL_PHYSCAP_iommu_hap_pt_share";
        VMTRACE: u32 = 1 << 6 => "XEN_SYSCTL_PHYSCAP_vmtrace";
        VPMU: u32 = 1 << 7 => "XEN_SYSCTL_PHYSCAP_vpmu";
        GNTTAB_V1: u32 = 1 << 8 => "XEN_SYSCTL_PHYSCAP_gnttab_v1";
        GNTTAB_V2: u32 = 1 << 9 => "XEN_SYSCTL_PHYSCAP_gnttab_v2";
        /// The highest defined bit.
        MAX: u32 = 1 << 9 => "XEN_SYSCTL_PHYSCAP_MAX";
    }
}

/// `CpupoolOp::op` (`XEN_SYSCTL_CPUPOOL_OP_*`).
pub mod cpupool_op {
    consts! {
        CREATE: u32 = 1 => "XEN_SYSCTL_CPUPOOL_OP_CREATE";
        DESTROY: u32 = 2 => "XEN_SYSCTL_CPUPOOL_OP_DESTROY";
        INFO: u32 = 3 => "XEN_SYSCTL_CPUPOOL_OP_INFO";
        ADDCPU: u32 = 4 => "XEN_SYSCTL_CPUPOOL_OP_ADDCPU";
        RMCPU: u32 = 5 => "XEN_SYSCTL_CPUPOOL_OP_RMCPU";
        MOVEDOMAIN: u32 = 6 => "XEN_SYSCTL_CPUPOOL_OP_MOVEDOMAIN";
        /// The CPUs in no pool.
        FREEINFO: u32 = 7 => "XEN_SYSCTL_CPUPOOL_OP_FREEINFO";
        /// `cpupool_id`/`cpu` of `CREATE`/`ADDCPU`: any.
        PAR_ANY: u32 = 0xffff_ffff => "XEN_SYSCTL_CPUPOOL_PAR_ANY";
    }
}

/// `CpuFeatureset::index` (`XEN_SYSCTL_cpu_featureset_*`).
pub mod featureset {
    consts! {
        RAW: u32 = 0 => "XEN_SYSCTL_cpu_featureset_raw";
        HOST: u32 = 1 => "XEN_SYSCTL_cpu_featureset_host";
        PV: u32 = 2 => "XEN_SYSCTL_cpu_featureset_pv";
        HVM: u32 = 3 => "XEN_SYSCTL_cpu_featureset_hvm";
        PV_MAX: u32 = 4 => "XEN_SYSCTL_cpu_featureset_pv_max";
        HVM_MAX: u32 = 5 => "XEN_SYSCTL_cpu_featureset_hvm_max";
    }
}

/// `CpuPolicy::index` (`XEN_SYSCTL_cpu_policy_*`).
pub mod cpu_policy {
    consts! {
        RAW: u32 = 0 => "XEN_SYSCTL_cpu_policy_raw";
        HOST: u32 = 1 => "XEN_SYSCTL_cpu_policy_host";
        PV_MAX: u32 = 2 => "XEN_SYSCTL_cpu_policy_pv_max";
        HVM_MAX: u32 = 3 => "XEN_SYSCTL_cpu_policy_hvm_max";
        PV_DEFAULT: u32 = 4 => "XEN_SYSCTL_cpu_policy_pv_default";
        HVM_DEFAULT: u32 = 5 => "XEN_SYSCTL_cpu_policy_hvm_default";
    }
}

/// `PerfcOp::cmd` (`XEN_SYSCTL_PERFCOP_*`).
pub mod perfcop {
    consts! {
        /// Zero every counter.
        RESET: u32 = 1 => "XEN_SYSCTL_PERFCOP_reset";
        /// Read the descriptions and values.
        QUERY: u32 = 2 => "XEN_SYSCTL_PERFCOP_query";
    }
}
