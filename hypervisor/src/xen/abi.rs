//! The Xen public guest ABI as keel speaks it (x86_64 only).
//!
//! Numbers and layouts follow Xen's public headers (`xen/include/public/`,
//! interface version 0x00040e00, i.e. what Linux's in-tree Xen drivers build
//! against). These are keel's own definitions: every `#[repr(C)]` struct
//! carries compile-time assertions of its size and of the offsets Linux and
//! Xen depend on, with the values taken from the headers as a C compiler lays
//! them out for x86_64 (see `docs/xen-abi.md`).
//!
//! Conventions:
//! * hypercall numbers are a typed enum ([`Hypercall`]); sub-op numbers are
//!   `u32`/`u64` constants grouped in modules named after the hypercall;
//! * hypercalls return `0`/positive on success and `-errno` on failure
//!   ([`Errno`]); grant-table ops additionally report a per-op `GNTST_*`
//!   status ([`GntSt`]) inside the argument struct.

use core::mem::{offset_of, size_of};

/// `domid_t`.
pub type DomId = u16;
/// `evtchn_port_t`.
pub type EvtchnPort = u32;
/// `grant_ref_t`.
pub type GrantRef = u32;
/// `grant_handle_t`.
pub type GrantHandle = u32;

/// Domain ids at or above this are special (never an ordinary domain).
pub const DOMID_FIRST_RESERVED: DomId = 0x7ff0;
/// "The calling domain".
pub const DOMID_SELF: DomId = 0x7ff0;
pub const DOMID_IO: DomId = 0x7ff1;
pub const DOMID_XEN: DomId = 0x7ff2;
pub const DOMID_COW: DomId = 0x7ff3;
pub const DOMID_INVALID: DomId = 0x7ff4;
pub const DOMID_IDLE: DomId = 0x7fff;

/// Resolves `DOMID_SELF` to `caller`; any other id is returned unchanged.
pub const fn resolve_domid(dom: DomId, caller: DomId) -> DomId {
    if dom == DOMID_SELF {
        caller
    } else {
        dom
    }
}

/// Guest page size (the ABI is in 4 KiB frames).
pub const PAGE_SIZE: usize = 4096;

// ---------------------------------------------------------------------------
// Hypercall numbers (xen.h, `__HYPERVISOR_*`)
// ---------------------------------------------------------------------------

/// Hypercall number, as passed in RAX (args in RDI, RSI, RDX, R10, R8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Hypercall {
    SetTrapTable = 0,
    MmuUpdate = 1,
    SetGdt = 2,
    StackSwitch = 3,
    SetCallbacks = 4,
    FpuTaskswitch = 5,
    SchedOpCompat = 6,
    PlatformOp = 7,
    SetDebugreg = 8,
    GetDebugreg = 9,
    UpdateDescriptor = 10,
    // 11 is unused.
    MemoryOp = 12,
    Multicall = 13,
    UpdateVaMapping = 14,
    SetTimerOp = 15,
    EventChannelOpCompat = 16,
    XenVersion = 17,
    ConsoleIo = 18,
    PhysdevOpCompat = 19,
    GrantTableOp = 20,
    VmAssist = 21,
    UpdateVaMappingOtherdomain = 22,
    Iret = 23,
    VcpuOp = 24,
    SetSegmentBase = 25,
    MmuextOp = 26,
    XsmOp = 27,
    NmiOp = 28,
    SchedOp = 29,
    CallbackOp = 30,
    XenoprofOp = 31,
    EventChannelOp = 32,
    PhysdevOp = 33,
    HvmOp = 34,
    Sysctl = 35,
    Domctl = 36,
    KexecOp = 37,
    TmemOp = 38,
    ArgoOp = 39,
    XenpmuOp = 40,
    DmOp = 41,
    HypfsOp = 42,
    Arch0 = 48,
    Arch1 = 49,
    Arch2 = 50,
    Arch3 = 51,
    Arch4 = 52,
    Arch5 = 53,
    Arch6 = 54,
    Arch7 = 55,
}

impl Hypercall {
    /// Decodes RAX; `None` for numbers Xen does not define (answer `-ENOSYS`).
    pub const fn from_u64(nr: u64) -> Option<Self> {
        use Hypercall::*;
        Some(match nr {
            0 => SetTrapTable,
            1 => MmuUpdate,
            2 => SetGdt,
            3 => StackSwitch,
            4 => SetCallbacks,
            5 => FpuTaskswitch,
            6 => SchedOpCompat,
            7 => PlatformOp,
            8 => SetDebugreg,
            9 => GetDebugreg,
            10 => UpdateDescriptor,
            12 => MemoryOp,
            13 => Multicall,
            14 => UpdateVaMapping,
            15 => SetTimerOp,
            16 => EventChannelOpCompat,
            17 => XenVersion,
            18 => ConsoleIo,
            19 => PhysdevOpCompat,
            20 => GrantTableOp,
            21 => VmAssist,
            22 => UpdateVaMappingOtherdomain,
            23 => Iret,
            24 => VcpuOp,
            25 => SetSegmentBase,
            26 => MmuextOp,
            27 => XsmOp,
            28 => NmiOp,
            29 => SchedOp,
            30 => CallbackOp,
            31 => XenoprofOp,
            32 => EventChannelOp,
            33 => PhysdevOp,
            34 => HvmOp,
            35 => Sysctl,
            36 => Domctl,
            37 => KexecOp,
            38 => TmemOp,
            39 => ArgoOp,
            40 => XenpmuOp,
            41 => DmOp,
            42 => HypfsOp,
            48 => Arch0,
            49 => Arch1,
            50 => Arch2,
            51 => Arch3,
            52 => Arch4,
            53 => Arch5,
            54 => Arch6,
            55 => Arch7,
            _ => return None,
        })
    }

    /// The hypercall number.
    pub const fn nr(self) -> u64 {
        self as u64
    }

    /// Byte offset of this hypercall's stub in the hypercall page (32 bytes
    /// per entry, `XEN_ELFNOTE_HYPERCALL_PAGE`).
    pub const fn page_offset(self) -> usize {
        self as usize * HYPERCALL_PAGE_ENTRY_SIZE
    }
}

/// Bytes per hypercall stub in the hypercall page.
pub const HYPERCALL_PAGE_ENTRY_SIZE: usize = 32;

// ---------------------------------------------------------------------------
// errno (xen/errno.h). Hypercalls return the negated value.
// ---------------------------------------------------------------------------

/// A Xen errno (positive; the hypercall returns `-errno`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Errno(pub u16);

impl Errno {
    pub const EPERM: Self = Self(1);
    pub const ENOENT: Self = Self(2);
    pub const ESRCH: Self = Self(3);
    pub const EINTR: Self = Self(4);
    pub const EIO: Self = Self(5);
    pub const ENXIO: Self = Self(6);
    pub const E2BIG: Self = Self(7);
    pub const EBADF: Self = Self(9);
    pub const EAGAIN: Self = Self(11);
    pub const ENOMEM: Self = Self(12);
    pub const EACCES: Self = Self(13);
    pub const EFAULT: Self = Self(14);
    pub const EBUSY: Self = Self(16);
    pub const EEXIST: Self = Self(17);
    pub const EXDEV: Self = Self(18);
    pub const ENODEV: Self = Self(19);
    pub const EINVAL: Self = Self(22);
    pub const ENOSPC: Self = Self(28);
    pub const EROFS: Self = Self(30);
    pub const ERANGE: Self = Self(34);
    pub const EDEADLK: Self = Self(35);
    pub const ENOSYS: Self = Self(38);
    pub const ENODATA: Self = Self(61);
    pub const ETIME: Self = Self(62);
    pub const EOVERFLOW: Self = Self(75);
    pub const ERESTART: Self = Self(85);
    pub const EOPNOTSUPP: Self = Self(95);
    pub const ENOBUFS: Self = Self(105);
    pub const EISCONN: Self = Self(106);
    pub const ENOTCONN: Self = Self(107);
    pub const ETIMEDOUT: Self = Self(110);

    /// The value placed in RAX: `-errno`.
    pub const fn to_ret(self) -> i64 {
        -(self.0 as i64)
    }
}

/// Result type for hypercall-level operations.
pub type XenResult<T> = Result<T, Errno>;

/// Converts a hypercall result into the RAX value (`Ok(v)` → `v`).
pub fn ret_value(r: XenResult<u64>) -> i64 {
    match r {
        Ok(v) => v as i64,
        Err(e) => e.to_ret(),
    }
}

// ---------------------------------------------------------------------------
// Sub-op numbers
// ---------------------------------------------------------------------------

/// `HYPERVISOR_xen_version` commands (version.h).
pub mod xenver {
    pub const VERSION: u64 = 0;
    pub const EXTRAVERSION: u64 = 1;
    pub const COMPILE_INFO: u64 = 2;
    pub const CAPABILITIES: u64 = 3;
    pub const CHANGESET: u64 = 4;
    pub const PLATFORM_PARAMETERS: u64 = 5;
    pub const GET_FEATURES: u64 = 6;
    pub const PAGESIZE: u64 = 7;
    pub const GUEST_HANDLE: u64 = 8;
    pub const COMMANDLINE: u64 = 9;
    pub const BUILD_ID: u64 = 10;
    /// `xen_extraversion_t` is `char[16]`.
    pub const EXTRAVERSION_LEN: usize = 16;
    /// `xen_capabilities_info_t` is `char[1024]`.
    pub const CAPABILITIES_LEN: usize = 1024;
    /// `xen_changeset_info_t` is `char[64]`.
    pub const CHANGESET_LEN: usize = 64;
    /// `XENVER_version` encodes `major << 16 | minor`.
    pub const fn encode(major: u16, minor: u16) -> u64 {
        ((major as u64) << 16) | minor as u64
    }
}

/// `HYPERVISOR_memory_op` commands (memory.h).
pub mod xenmem {
    pub const INCREASE_RESERVATION: u64 = 0;
    pub const DECREASE_RESERVATION: u64 = 1;
    pub const MAXIMUM_RAM_PAGE: u64 = 2;
    pub const CURRENT_RESERVATION: u64 = 3;
    pub const MAXIMUM_RESERVATION: u64 = 4;
    pub const MACHPHYS_MFN_LIST: u64 = 5;
    pub const POPULATE_PHYSMAP: u64 = 6;
    pub const ADD_TO_PHYSMAP: u64 = 7;
    pub const MEMORY_MAP: u64 = 9;
    pub const MACHINE_MEMORY_MAP: u64 = 10;
    pub const EXCHANGE: u64 = 11;
    pub const MACHPHYS_MAPPING: u64 = 12;
    pub const SET_MEMORY_MAP: u64 = 13;
    pub const MAXIMUM_GPFN: u64 = 14;
    pub const REMOVE_FROM_PHYSMAP: u64 = 15;
    pub const ADD_TO_PHYSMAP_BATCH: u64 = 23;
    pub const CLAIM_PAGES: u64 = 24;
    pub const GET_VNUMAINFO: u64 = 26;
    pub const RESERVED_DEVICE_MEMORY_MAP: u64 = 27;
    pub const ACQUIRE_RESOURCE: u64 = 28;
    /// The low 6 bits of `cmd` are the op; the rest is a continuation
    /// start extent (`MEMOP_EXTENT_SHIFT`).
    pub const MEMOP_EXTENT_SHIFT: u32 = 6;
    pub const MEMOP_CMD_MASK: u64 = (1 << MEMOP_EXTENT_SHIFT) - 1;
}

/// `xen_add_to_physmap.space` values (memory.h, `XENMAPSPACE_*`).
pub mod xenmapspace {
    pub const SHARED_INFO: u32 = 0;
    pub const GRANT_TABLE: u32 = 1;
    pub const GMFN: u32 = 2;
    pub const GMFN_RANGE: u32 = 3;
    pub const GMFN_FOREIGN: u32 = 4;
    pub const DEV_MMIO: u32 = 5;
    /// Set in `idx` with `GRANT_TABLE` to map a v2 status frame.
    pub const XENMAPIDX_GRANT_TABLE_STATUS: u64 = 0x8000_0000;
}

/// `HYPERVISOR_hvm_op` commands (hvm/hvm_op.h).
pub mod hvmop {
    pub const SET_PARAM: u64 = 0;
    pub const GET_PARAM: u64 = 1;
    pub const SET_PCI_INTX_LEVEL: u64 = 2;
    pub const SET_ISA_IRQ_LEVEL: u64 = 3;
    pub const SET_PCI_LINK_ROUTE: u64 = 4;
    pub const FLUSH_TLBS: u64 = 5;
    pub const PAGETABLE_DYING: u64 = 9;
    pub const GET_TIME: u64 = 10;
    pub const XENTRACE: u64 = 11;
    pub const GET_MEM_TYPE: u64 = 15;
    pub const SET_EVTCHN_UPCALL_VECTOR: u64 = 23;
    pub const GUEST_REQUEST_VM_EVENT: u64 = 24;
    pub const ALTP2M: u64 = 25;
}

/// HVM parameter indices (hvm/params.h, `HVM_PARAM_*`).
pub mod hvm_param {
    pub const CALLBACK_IRQ: u32 = 0;
    pub const STORE_PFN: u32 = 1;
    pub const STORE_EVTCHN: u32 = 2;
    pub const PAE_ENABLED: u32 = 4;
    pub const IOREQ_PFN: u32 = 5;
    pub const BUFIOREQ_PFN: u32 = 6;
    pub const VIRIDIAN: u32 = 9;
    pub const TIMER_MODE: u32 = 10;
    pub const HPET_ENABLED: u32 = 11;
    pub const IDENT_PT: u32 = 12;
    pub const DM_DOMAIN: u32 = 13;
    pub const ACPI_S_STATE: u32 = 14;
    pub const VM86_TSS: u32 = 15;
    pub const VPT_ALIGN: u32 = 16;
    pub const CONSOLE_PFN: u32 = 17;
    pub const CONSOLE_EVTCHN: u32 = 18;
    pub const ACPI_IOPORTS_LOCATION: u32 = 19;
    pub const NESTEDHVM: u32 = 24;
    pub const BUFIOREQ_EVTCHN: u32 = 26;
    pub const PAGING_RING_PFN: u32 = 27;
    pub const MONITOR_RING_PFN: u32 = 28;
    pub const SHARING_RING_PFN: u32 = 29;
    pub const TRIPLE_FAULT_REASON: u32 = 31;
    pub const IOREQ_SERVER_PFN: u32 = 32;
    pub const NR_IOREQ_SERVER_PAGES: u32 = 33;
    pub const VM_GENERATION_ID_ADDR: u32 = 34;
    pub const ALTP2M: u32 = 35;
    pub const X87_FIP_WIDTH: u32 = 36;
    pub const VM86_TSS_SIZED: u32 = 37;
    pub const MCA_CAP: u32 = 38;
    /// `HVM_NR_PARAMS`: indices at or above this are `-EINVAL`.
    pub const NR_PARAMS: u32 = 39;

    /// `HVM_PARAM_CALLBACK_IRQ` value: the type lives in bits 63:56.
    pub const CALLBACK_IRQ_TYPE_SHIFT: u32 = 56;
    pub const CALLBACK_IRQ_TYPE_MASK: u64 = 0xff << CALLBACK_IRQ_TYPE_SHIFT;
    /// Low bits are a GSI number.
    pub const CALLBACK_TYPE_GSI: u64 = 0;
    /// Low bits encode PCI domain/bus/device/INTx.
    pub const CALLBACK_TYPE_PCI_INTX: u64 = 1;
    /// Low 8 bits are an IDT vector (what Linux PVH uses when
    /// `XENFEAT_hvm_callback_vector` is advertised).
    pub const CALLBACK_TYPE_VECTOR: u64 = 2;

    /// Decodes a `CALLBACK_IRQ` value into (type, payload).
    pub const fn callback_decode(v: u64) -> (u64, u64) {
        (
            (v & CALLBACK_IRQ_TYPE_MASK) >> CALLBACK_IRQ_TYPE_SHIFT,
            v & !CALLBACK_IRQ_TYPE_MASK,
        )
    }
}

/// `HYPERVISOR_vcpu_op` commands (vcpu.h).
pub mod vcpuop {
    pub const INITIALISE: u64 = 0;
    pub const UP: u64 = 1;
    pub const DOWN: u64 = 2;
    pub const IS_UP: u64 = 3;
    pub const GET_RUNSTATE_INFO: u64 = 4;
    pub const REGISTER_RUNSTATE_MEMORY_AREA: u64 = 5;
    pub const SET_PERIODIC_TIMER: u64 = 6;
    pub const STOP_PERIODIC_TIMER: u64 = 7;
    pub const SET_SINGLESHOT_TIMER: u64 = 8;
    pub const STOP_SINGLESHOT_TIMER: u64 = 9;
    pub const REGISTER_VCPU_INFO: u64 = 10;
    pub const SEND_NMI: u64 = 11;
    pub const GET_PHYSID: u64 = 12;
    pub const REGISTER_VCPU_TIME_MEMORY_AREA: u64 = 13;
    /// `vcpu_set_singleshot_timer.flags`: fail with `-ETIME` if the timeout
    /// is already in the past.
    pub const VCPU_SSHOTTMR_FUTURE: u32 = 1 << 0;
}

/// `vcpu_runstate_info.state` values.
pub mod runstate {
    pub const RUNNING: i32 = 0;
    pub const RUNNABLE: i32 = 1;
    pub const BLOCKED: i32 = 2;
    pub const OFFLINE: i32 = 3;
    /// Set in `state_entry_time` while Xen updates the area
    /// (`VMASST_TYPE_runstate_update_flag`).
    pub const XEN_RUNSTATE_UPDATE: u64 = 1 << 63;
}

/// `HYPERVISOR_sched_op` commands (sched.h).
pub mod schedop {
    pub const YIELD: u64 = 0;
    pub const BLOCK: u64 = 1;
    pub const SHUTDOWN: u64 = 2;
    pub const POLL: u64 = 3;
    pub const REMOTE_SHUTDOWN: u64 = 4;
    pub const SHUTDOWN_CODE: u64 = 5;
    pub const WATCHDOG: u64 = 6;
    pub const PIN_OVERRIDE: u64 = 7;
}

/// `sched_shutdown.reason` values (sched.h, `SHUTDOWN_*`).
pub use keel_xen_abi::sched::shutdown;

/// `HYPERVISOR_event_channel_op` commands (event_channel.h).
pub mod evtchnop {
    pub const BIND_INTERDOMAIN: u64 = 0;
    pub const BIND_VIRQ: u64 = 1;
    pub const BIND_PIRQ: u64 = 2;
    pub const CLOSE: u64 = 3;
    pub const SEND: u64 = 4;
    pub const STATUS: u64 = 5;
    pub const ALLOC_UNBOUND: u64 = 6;
    pub const BIND_IPI: u64 = 7;
    pub const BIND_VCPU: u64 = 8;
    pub const UNMASK: u64 = 9;
    pub const RESET: u64 = 10;
    pub const INIT_CONTROL: u64 = 11;
    pub const EXPAND_ARRAY: u64 = 12;
    pub const SET_PRIORITY: u64 = 13;
}

/// `evtchn_status.status` values (`EVTCHNSTAT_*`).
pub mod evtchnstat {
    pub const CLOSED: u32 = 0;
    pub const UNBOUND: u32 = 1;
    pub const INTERDOMAIN: u32 = 2;
    pub const PIRQ: u32 = 3;
    pub const VIRQ: u32 = 4;
    pub const IPI: u32 = 5;
}

/// Number of ports of the 2-level ABI on 64-bit: 64 selector bits × 64-bit
/// words (`EVTCHN_2L_NR_CHANNELS`).
pub const EVTCHN_2L_NR_CHANNELS: usize = 64 * 64;

/// `HYPERVISOR_grant_table_op` commands (grant_table.h).
pub mod gnttabop {
    pub const MAP_GRANT_REF: u64 = 0;
    pub const UNMAP_GRANT_REF: u64 = 1;
    pub const SETUP_TABLE: u64 = 2;
    pub const DUMP_TABLE: u64 = 3;
    pub const TRANSFER: u64 = 4;
    pub const COPY: u64 = 5;
    pub const QUERY_SIZE: u64 = 6;
    pub const UNMAP_AND_REPLACE: u64 = 7;
    pub const SET_VERSION: u64 = 8;
    pub const GET_STATUS_FRAMES: u64 = 9;
    pub const GET_VERSION: u64 = 10;
    pub const SWAP_GRANT_REF: u64 = 11;
    pub const CACHE_FLUSH: u64 = 12;
}

/// `grant_entry_v1.flags` bits (`GTF_*`).
pub mod gtf {
    pub const INVALID: u16 = 0;
    pub const PERMIT_ACCESS: u16 = 1;
    pub const ACCEPT_TRANSFER: u16 = 2;
    pub const TRANSITIVE: u16 = 3;
    pub const TYPE_MASK: u16 = 3;
    pub const READONLY: u16 = 1 << 2;
    pub const READING: u16 = 1 << 3;
    pub const WRITING: u16 = 1 << 4;
    pub const PWT: u16 = 1 << 5;
    pub const PCD: u16 = 1 << 6;
    pub const PAT: u16 = 1 << 7;
    pub const SUB_PAGE: u16 = 1 << 8;
    /// Transfer entries reuse bits 2/3.
    pub const TRANSFER_COMMITTED: u16 = 1 << 2;
    pub const TRANSFER_COMPLETED: u16 = 1 << 3;
}

/// `gnttab_map_grant_ref.flags` bits (`GNTMAP_*`).
pub mod gntmap {
    pub const DEVICE_MAP: u32 = 1 << 0;
    pub const HOST_MAP: u32 = 1 << 1;
    pub const READONLY: u32 = 1 << 2;
    pub const APPLICATION_MAP: u32 = 1 << 3;
    pub const CONTAINS_PTE: u32 = 1 << 4;
}

/// `gnttab_copy.flags` bits (`GNTCOPY_*`).
pub mod gntcopy {
    pub const SOURCE_GREF: u16 = 1 << 0;
    pub const DEST_GREF: u16 = 1 << 1;
}

/// Reserved grant refs (the toolstack fills these for the guest).
pub const GNTTAB_NR_RESERVED_ENTRIES: u32 = 8;
pub const GNTTAB_RESERVED_CONSOLE: u32 = 0;
pub const GNTTAB_RESERVED_XENSTORE: u32 = 1;

/// Per-op grant status (`GNTST_*`, an `int16_t` in the argument struct).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i16)]
pub enum GntSt {
    Okay = 0,
    GeneralError = -1,
    BadDomain = -2,
    BadGntref = -3,
    BadHandle = -4,
    BadVirtAddr = -5,
    BadDevAddr = -6,
    NoDeviceSpace = -7,
    PermissionDenied = -8,
    BadPage = -9,
    BadCopyArg = -10,
    AddressTooBig = -11,
    Eagain = -12,
    NoSpace = -13,
}

impl GntSt {
    /// The value stored in the op struct's `status` field.
    pub const fn raw(self) -> i16 {
        self as i16
    }
}

/// `HYPERVISOR_console_io` commands.
pub mod consoleio {
    pub const WRITE: u64 = 0;
    pub const READ: u64 = 1;
}

/// `HYPERVISOR_vm_assist` commands and types.
pub mod vmasst {
    pub const CMD_ENABLE: u64 = 0;
    pub const CMD_DISABLE: u64 = 1;
    pub const TYPE_4GB_SEGMENTS: u64 = 0;
    pub const TYPE_4GB_SEGMENTS_NOTIFY: u64 = 1;
    pub const TYPE_WRITABLE_PAGETABLES: u64 = 2;
    pub const TYPE_PAE_EXTENDED_CR3: u64 = 3;
    pub const TYPE_ARCHITECTURAL_IOPL: u64 = 4;
    pub const TYPE_RUNSTATE_UPDATE_FLAG: u64 = 5;
    pub const TYPE_M2P_STRICT: u64 = 32;
}

/// Feature bit numbers for `XENVER_get_features` (features.h, `XENFEAT_*`).
pub mod xenfeat {
    pub const WRITABLE_PAGE_TABLES: u32 = 0;
    pub const WRITABLE_DESCRIPTOR_TABLES: u32 = 1;
    pub const AUTO_TRANSLATED_PHYSMAP: u32 = 2;
    pub const SUPERVISOR_MODE_KERNEL: u32 = 3;
    pub const PAE_PGDIR_ABOVE_4GB: u32 = 4;
    pub const MMU_PT_UPDATE_PRESERVE_AD: u32 = 5;
    pub const HIGHMEM_ASSIST: u32 = 6;
    pub const GNTTAB_MAP_AVAIL_BITS: u32 = 7;
    pub const HVM_CALLBACK_VECTOR: u32 = 8;
    pub const HVM_SAFE_PVCLOCK: u32 = 9;
    pub const HVM_PIRQS: u32 = 10;
    pub const DOM0: u32 = 11;
    pub const GRANT_MAP_IDENTITY: u32 = 12;
    pub const MEMORY_OP_VNODE_SUPPORTED: u32 = 13;
    pub const ARM_SMCCC_SUPPORTED: u32 = 14;
    pub const LINUX_RSDP_UNRESTRICTED: u32 = 15;
    pub const NOT_DIRECT_MAPPED: u32 = 16;
    pub const DIRECT_MAPPED: u32 = 17;
    /// Number of 32-bit submaps (`XENFEAT_NR_SUBMAPS`).
    pub const NR_SUBMAPS: u32 = 1;

    /// Submap 0 as Xen reports it to a PVH guest (translated paging, not
    /// PV): writable page tables + auto-translated physmap, the vector
    /// callback, a safe pvclock and unrestricted RSDP; `dom0` adds [`DOM0`].
    /// (Xen also sets `MEMORY_OP_VNODE_SUPPORTED`; keel does not implement
    /// `XENMEM_get_vnumainfo`, so it leaves that bit clear.)
    pub const fn pvh_submap(dom0: bool) -> u32 {
        let mut m = (1 << WRITABLE_PAGE_TABLES)
            | (1 << AUTO_TRANSLATED_PHYSMAP)
            | (1 << HVM_CALLBACK_VECTOR)
            | (1 << HVM_SAFE_PVCLOCK)
            | (1 << LINUX_RSDP_UNRESTRICTED);
        if dom0 {
            m |= 1 << DOM0;
        }
        m
    }
}

/// Virtual IRQ numbers (xen.h, `VIRQ_*`).
pub mod virq {
    /// Per-vCPU: timer.
    pub const TIMER: u32 = 0;
    /// Per-vCPU: dump debug info.
    pub const DEBUG: u32 = 1;
    /// Global (dom0): emergency console input.
    pub const CONSOLE: u32 = 2;
    pub const DOM_EXC: u32 = 3;
    pub const TBUF: u32 = 4;
    pub const DEBUGGER: u32 = 6;
    /// Per-vCPU.
    pub const XENOPROF: u32 = 7;
    pub const CON_RING: u32 = 8;
    pub const PCPU_STATE: u32 = 9;
    pub const MEM_EVENT: u32 = 10;
    pub const ARGO: u32 = 11;
    pub const ENOMEM: u32 = 12;
    /// Per-vCPU.
    pub const XENPMU: u32 = 13;
    pub const ARCH_0: u32 = 16;
    pub const ARCH_7: u32 = 23;
    /// x86: machine-check (`VIRQ_MCA` = `VIRQ_ARCH_0`).
    pub const MCA: u32 = ARCH_0;
    /// `NR_VIRQS`.
    pub const NR_VIRQS: u32 = 24;

    /// Per-vCPU VIRQs are bound on any vCPU; all others are global and must
    /// be bound on vCPU 0 (and may then be moved with `bind_vcpu`).
    pub const fn is_per_vcpu(v: u32) -> bool {
        matches!(v, TIMER | DEBUG | XENOPROF | XENPMU)
    }
}

/// ELF note types in a guest kernel's "Xen" notes (elfnote.h).
pub mod elfnote {
    pub const INFO: u32 = 0;
    pub const ENTRY: u32 = 1;
    pub const HYPERCALL_PAGE: u32 = 2;
    pub const VIRT_BASE: u32 = 3;
    pub const PADDR_OFFSET: u32 = 4;
    pub const XEN_VERSION: u32 = 5;
    pub const GUEST_OS: u32 = 6;
    pub const GUEST_VERSION: u32 = 7;
    pub const LOADER: u32 = 8;
    pub const PAE_MODE: u32 = 9;
    pub const FEATURES: u32 = 10;
    pub const BSD_SYMTAB: u32 = 11;
    pub const HV_START_LOW: u32 = 12;
    pub const L1_MFN_VALID: u32 = 13;
    pub const SUSPEND_CANCEL: u32 = 14;
    pub const INIT_P2M: u32 = 15;
    pub const MOD_START_PFN: u32 = 16;
    pub const SUPPORTED_FEATURES: u32 = 17;
    /// The PVH entry point (32-bit protected mode, paging off, EBX = the
    /// physical address of `hvm_start_info`).
    pub const PHYS32_ENTRY: u32 = 18;
    pub const MAX: u32 = PHYS32_ENTRY;
    pub const CRASH_INFO: u32 = 0x0100_0001;
    pub const CRASH_REGS: u32 = 0x0100_0002;
    pub const DUMPCORE_NONE: u32 = 0x0200_0000;
    pub const DUMPCORE_HEADER: u32 = 0x0200_0001;
    pub const DUMPCORE_XEN_VERSION: u32 = 0x0200_0002;
    pub const DUMPCORE_FORMAT_VERSION: u32 = 0x0200_0003;
    /// The ELF note name.
    pub const NAME: &[u8] = b"Xen\0";
}

/// `hvm_start_info` magic ("xEn3" with bit 7 of 'E' set).
pub const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;

/// `hvm_memmap_table_entry.type` values.
pub mod memmap_type {
    pub const RAM: u32 = 1;
    pub const RESERVED: u32 = 2;
    pub const ACPI: u32 = 3;
    pub const NVS: u32 = 4;
    pub const UNUSABLE: u32 = 5;
    pub const DISABLED: u32 = 6;
    pub const PMEM: u32 = 7;
}

/// `vcpu_time_info.flags` bits.
pub const XEN_PVCLOCK_TSC_STABLE_BIT: u8 = 1 << 0;
pub const XEN_PVCLOCK_GUEST_STOPPED: u8 = 1 << 1;

/// `shared_info` holds vcpu_info for the first 32 vCPUs only
/// (`XEN_LEGACY_MAX_VCPUS`); others must use `VCPUOP_register_vcpu_info`.
pub const XEN_LEGACY_MAX_VCPUS: usize = 32;

// ---------------------------------------------------------------------------
// Structures
// ---------------------------------------------------------------------------

/// Plain guest-ABI data: `#[repr(C)]`, integer fields only, so every bit
/// pattern (whatever a guest wrote) is a valid value and keel may read one
/// from guest bytes (`hypercall::guest`).
///
/// # Safety
/// Implement only for `#[repr(C)]` types whose fields are integers or
/// arrays or structs of such (no references, `bool`s, enums or pointers).
pub unsafe trait Pod: Copy {}

// SAFETY: plain integers: every bit pattern is a value.
unsafe impl Pod for u16 {}
// SAFETY: as above.
unsafe impl Pod for u32 {}
// SAFETY: as above.
unsafe impl Pod for u64 {}

/// Asserts at compile time a struct's size and selected field offsets, and
/// marks it [`Pod`].
macro_rules! layout {
    ($t:ty, $size:expr $(, $field:ident @ $off:expr)* $(,)?) => {
        // SAFETY: every struct declared with `layout!` in this file is
        // `#[repr(C)]` with integer (or integer-array/struct) fields only.
        unsafe impl Pod for $t {}
        const _: () = assert!(size_of::<$t>() == $size, concat!("size of ", stringify!($t)));
        $(
            const _: () = assert!(
                offset_of!($t, $field) == $off,
                concat!("offset of ", stringify!($t), ".", stringify!($field))
            );
        )*
    };
}

/// `struct multicall_entry` (x86_64): one call of a `multicall` batch, its
/// result written back in place.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct MulticallEntry {
    /// The hypercall number.
    pub op: u64,
    /// OUT: what the call returned (a negative errno as unsigned).
    pub result: u64,
    pub args: [u64; 6],
}
layout!(MulticallEntry, 64, op @ 0, result @ 8, args @ 16);

/// `struct vcpu_time_info`: the pvclock record (32 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VcpuTimeInfo {
    /// Odd while an update is in progress (seqlock).
    pub version: u32,
    pub pad0: u32,
    pub tsc_timestamp: u64,
    pub system_time: u64,
    pub tsc_to_system_mul: u32,
    pub tsc_shift: i8,
    pub flags: u8,
    pub pad1: [u8; 2],
}
layout!(VcpuTimeInfo, 32, version @ 0, tsc_timestamp @ 8, system_time @ 16,
    tsc_to_system_mul @ 24, tsc_shift @ 28, flags @ 29, pad1 @ 30);

/// `struct arch_vcpu_info` (x86_64).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ArchVcpuInfo {
    pub cr2: u64,
    pub pad: u64,
}
layout!(ArchVcpuInfo, 16, cr2 @ 0, pad @ 8);

/// `struct vcpu_info` (64 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VcpuInfo {
    /// Written non-zero by the hypervisor when an upcall is pending.
    pub evtchn_upcall_pending: u8,
    /// PV-only upcall mask (HVM/PVH guests mask with RFLAGS.IF instead).
    pub evtchn_upcall_mask: u8,
    /// One bit per 64-port word of `evtchn_pending`.
    pub evtchn_pending_sel: u64,
    pub arch: ArchVcpuInfo,
    pub time: VcpuTimeInfo,
}
layout!(VcpuInfo, 64, evtchn_upcall_pending @ 0, evtchn_upcall_mask @ 1,
    evtchn_pending_sel @ 8, arch @ 16, time @ 32);

/// `struct arch_shared_info` (x86_64; PV-only p2m fields, zero for PVH).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ArchSharedInfo {
    pub max_pfn: u64,
    pub pfn_to_mfn_frame_list_list: u64,
    pub nmi_reason: u64,
    pub p2m_cr3: u64,
    pub p2m_vaddr: u64,
    pub p2m_generation: u64,
}
layout!(ArchSharedInfo, 48, max_pfn @ 0, nmi_reason @ 16, p2m_generation @ 40);

/// `struct shared_info` (3136 bytes on x86_64; fits one page).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct SharedInfo {
    pub vcpu_info: [VcpuInfo; XEN_LEGACY_MAX_VCPUS],
    pub evtchn_pending: [u64; 64],
    pub evtchn_mask: [u64; 64],
    pub wc_version: u32,
    pub wc_sec: u32,
    pub wc_nsec: u32,
    pub wc_sec_hi: u32,
    pub arch: ArchSharedInfo,
}
layout!(SharedInfo, 3136, vcpu_info @ 0, evtchn_pending @ 2048, evtchn_mask @ 2560,
    wc_version @ 3072, wc_sec @ 3076, wc_nsec @ 3080, wc_sec_hi @ 3084, arch @ 3088);
const _: () = assert!(size_of::<SharedInfo>() <= PAGE_SIZE);

impl SharedInfo {
    /// An all-zero shared_info (what a fresh page holds).
    pub const fn zeroed() -> Self {
        const VI: VcpuInfo = VcpuInfo {
            evtchn_upcall_pending: 0,
            evtchn_upcall_mask: 0,
            evtchn_pending_sel: 0,
            arch: ArchVcpuInfo { cr2: 0, pad: 0 },
            time: VcpuTimeInfo {
                version: 0,
                pad0: 0,
                tsc_timestamp: 0,
                system_time: 0,
                tsc_to_system_mul: 0,
                tsc_shift: 0,
                flags: 0,
                pad1: [0; 2],
            },
        };
        SharedInfo {
            vcpu_info: [VI; XEN_LEGACY_MAX_VCPUS],
            evtchn_pending: [0; 64],
            evtchn_mask: [0; 64],
            wc_version: 0,
            wc_sec: 0,
            wc_nsec: 0,
            wc_sec_hi: 0,
            arch: ArchSharedInfo {
                max_pfn: 0,
                pfn_to_mfn_frame_list_list: 0,
                nmi_reason: 0,
                p2m_cr3: 0,
                p2m_vaddr: 0,
                p2m_generation: 0,
            },
        }
    }
}

impl Default for SharedInfo {
    fn default() -> Self {
        Self::zeroed()
    }
}

/// `struct vcpu_runstate_info` (48 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VcpuRunstateInfo {
    /// `runstate::*`.
    pub state: i32,
    pub state_entry_time: u64,
    /// Time spent in each state, ns.
    pub time: [u64; 4],
}
layout!(VcpuRunstateInfo, 48, state @ 0, state_entry_time @ 8, time @ 16);

/// The PVH boot ABI's `hvm_start_info`, module list and memory map entry
/// (keel-xen-abi's, whose layouts are checked against Xen's headers).
pub use keel_xen_abi::hvm::start_info::{HvmMemmapTableEntry, HvmModlistEntry, HvmStartInfo};

/// An E820 entry as `XENMEM_memory_map` writes it into the guest buffer
/// (packed, 20 bytes — Linux's `struct e820_entry`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, packed)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}
layout!(E820Entry, 20, addr @ 0, size @ 8, kind @ 16);

/// `struct grant_entry_v1` (8 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct GrantEntryV1 {
    /// `gtf::*`.
    pub flags: u16,
    /// The domain allowed to use the grant.
    pub domid: DomId,
    /// The granted frame (a GFN of the granting domain).
    pub frame: u32,
}
layout!(GrantEntryV1, 8, flags @ 0, domid @ 2, frame @ 4);

/// v1 grant entries per 4 KiB grant-table frame.
pub const GRANT_ENTRIES_PER_FRAME_V1: usize = PAGE_SIZE / size_of::<GrantEntryV1>();

// --- event_channel.h argument structs -----------------------------------

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EvtchnAllocUnbound {
    pub dom: DomId,
    pub remote_dom: DomId,
    /// OUT.
    pub port: EvtchnPort,
}
layout!(EvtchnAllocUnbound, 8, dom @ 0, remote_dom @ 2, port @ 4);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EvtchnBindInterdomain {
    pub remote_dom: DomId,
    pub remote_port: EvtchnPort,
    /// OUT.
    pub local_port: EvtchnPort,
}
layout!(EvtchnBindInterdomain, 12, remote_dom @ 0, remote_port @ 4, local_port @ 8);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EvtchnBindVirq {
    pub virq: u32,
    pub vcpu: u32,
    /// OUT.
    pub port: EvtchnPort,
}
layout!(EvtchnBindVirq, 12, virq @ 0, vcpu @ 4, port @ 8);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EvtchnBindPirq {
    pub pirq: u32,
    pub flags: u32,
    pub port: EvtchnPort,
}
layout!(EvtchnBindPirq, 12, pirq @ 0, flags @ 4, port @ 8);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EvtchnBindIpi {
    pub vcpu: u32,
    /// OUT.
    pub port: EvtchnPort,
}
layout!(EvtchnBindIpi, 8, vcpu @ 0, port @ 4);

/// `evtchn_close`, `evtchn_send` and `evtchn_unmask` are all just a port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EvtchnPortArg {
    pub port: EvtchnPort,
}
layout!(EvtchnPortArg, 4, port @ 0);
pub type EvtchnClose = EvtchnPortArg;
pub type EvtchnSend = EvtchnPortArg;
pub type EvtchnUnmask = EvtchnPortArg;

/// The `evtchn_status.u` union (8 bytes, 4-aligned), kept as two raw
/// words: `u.unbound.dom` / `u.interdomain.dom` are the low 16 bits of word
/// 0 (x86 is little-endian), `u.interdomain.port` is word 1, and
/// `u.pirq` / `u.virq` are word 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EvtchnStatusU(pub [u32; 2]);
layout!(EvtchnStatusU, 8);
const _: () = assert!(core::mem::align_of::<EvtchnStatusU>() == 4);

impl EvtchnStatusU {
    /// `u.unbound` (remote domain allowed to bind).
    pub const fn unbound(dom: DomId) -> Self {
        Self([dom as u32, 0])
    }
    /// `u.interdomain`.
    pub const fn interdomain(dom: DomId, port: EvtchnPort) -> Self {
        Self([dom as u32, port])
    }
    /// `u.virq` / `u.pirq`.
    pub const fn word(v: u32) -> Self {
        Self([v, 0])
    }
    pub const fn dom(&self) -> DomId {
        self.0[0] as DomId
    }
    pub const fn port(&self) -> EvtchnPort {
        self.0[1]
    }
    pub const fn virq(&self) -> u32 {
        self.0[0]
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EvtchnStatus {
    pub dom: DomId,
    pub port: EvtchnPort,
    /// OUT: `evtchnstat::*`.
    pub status: u32,
    /// OUT: the vCPU notified.
    pub vcpu: u32,
    /// OUT: the union.
    pub u: EvtchnStatusU,
}
layout!(EvtchnStatus, 24, dom @ 0, port @ 4, status @ 8, vcpu @ 12, u @ 16);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EvtchnBindVcpu {
    pub port: EvtchnPort,
    pub vcpu: u32,
}
layout!(EvtchnBindVcpu, 8, port @ 0, vcpu @ 4);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EvtchnReset {
    pub dom: DomId,
}
layout!(EvtchnReset, 2, dom @ 0);

/// FIFO ABI (keel answers `-ENOSYS`; defined for decoding only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EvtchnInitControl {
    pub control_gfn: u64,
    pub offset: u32,
    pub vcpu: u32,
    pub link_bits: u8,
    pub _pad: [u8; 7],
}
layout!(EvtchnInitControl, 24, control_gfn @ 0, offset @ 8, vcpu @ 12, link_bits @ 16);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EvtchnExpandArray {
    pub array_gfn: u64,
}
layout!(EvtchnExpandArray, 8, array_gfn @ 0);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EvtchnSetPriority {
    pub port: EvtchnPort,
    pub priority: u32,
}
layout!(EvtchnSetPriority, 8, port @ 0, priority @ 4);

// --- memory.h -------------------------------------------------------------

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct XenAddToPhysmap {
    pub domid: DomId,
    /// Page count for `GMFN_RANGE`.
    pub size: u16,
    /// `xenmapspace::*`.
    pub space: u32,
    /// Index into the space (grant frame number, ...).
    pub idx: u64,
    /// Where the page should appear in the guest's physmap.
    pub gpfn: u64,
}
layout!(XenAddToPhysmap, 24, domid @ 0, size @ 2, space @ 4, idx @ 8, gpfn @ 16);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct XenMemoryMap {
    /// IN: capacity of `buffer` in entries; OUT: entries written.
    pub nr_entries: u32,
    /// Guest address of an array of [`E820Entry`].
    pub buffer: u64,
}
layout!(XenMemoryMap, 16, nr_entries @ 0, buffer @ 8);

// --- hvm_op.h -------------------------------------------------------------

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct XenHvmParam {
    pub domid: DomId,
    pub pad: u16,
    /// `hvm_param::*`.
    pub index: u32,
    pub value: u64,
}
layout!(XenHvmParam, 16, domid @ 0, pad @ 2, index @ 4, value @ 8);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct XenHvmEvtchnUpcallVector {
    pub vcpu: u32,
    pub vector: u8,
}
layout!(XenHvmEvtchnUpcallVector, 8, vcpu @ 0, vector @ 4);

// --- vcpu.h ---------------------------------------------------------------

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VcpuRegisterVcpuInfo {
    /// GFN of the page holding the vcpu_info.
    pub mfn: u64,
    pub offset: u32,
    pub rsvd: u32,
}
layout!(VcpuRegisterVcpuInfo, 16, mfn @ 0, offset @ 8, rsvd @ 12);

/// `vcpu_register_runstate_memory_area` and
/// `vcpu_register_time_memory_area`: one guest address (a GVA for PV, a
/// guest virtual address for HVM too — Xen translates through the guest's
/// page tables).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VcpuRegisterMemoryArea {
    pub addr: u64,
}
layout!(VcpuRegisterMemoryArea, 8, addr @ 0);
pub type VcpuRegisterRunstateMemoryArea = VcpuRegisterMemoryArea;
pub type VcpuRegisterTimeMemoryArea = VcpuRegisterMemoryArea;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VcpuSetPeriodicTimer {
    pub period_ns: u64,
}
layout!(VcpuSetPeriodicTimer, 8, period_ns @ 0);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VcpuSetSingleshotTimer {
    /// Absolute system time (ns since boot, the pvclock's timebase).
    pub timeout_abs_ns: u64,
    /// `vcpuop::VCPU_SSHOTTMR_FUTURE`.
    pub flags: u32,
}
layout!(VcpuSetSingleshotTimer, 16, timeout_abs_ns @ 0, flags @ 8);

// --- sched.h --------------------------------------------------------------

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SchedShutdown {
    /// `shutdown::*`.
    pub reason: u32,
}
layout!(SchedShutdown, 4, reason @ 0);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SchedPoll {
    /// Guest address of an `evtchn_port_t` array.
    pub ports: u64,
    pub nr_ports: u32,
    /// Absolute system time; 0 = none.
    pub timeout: u64,
}
layout!(SchedPoll, 24, ports @ 0, nr_ports @ 8, timeout @ 16);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SchedRemoteShutdown {
    pub domain_id: DomId,
    pub reason: u32,
}
layout!(SchedRemoteShutdown, 8, domain_id @ 0, reason @ 4);

// --- version.h ------------------------------------------------------------

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct XenFeatureInfo {
    pub submap_idx: u32,
    /// OUT.
    pub submap: u32,
}
layout!(XenFeatureInfo, 8, submap_idx @ 0, submap @ 4);

// --- platform.h (dom0 only) ---------------------------------------------

pub mod platform_op {
    /// `XENPF_INTERFACE_VERSION`.
    pub const INTERFACE_VERSION: u32 = 0x0300_0001;
    pub const SETTIME32: u32 = 17;
    pub const GET_CPUINFO: u32 = 55;
    pub const SETTIME64: u32 = 62;
    /// `XEN_PCPU_FLAGS_*`.
    pub const PCPU_ONLINE: u32 = 1;
    pub const PCPU_INVALID: u32 = 2;
}

/// `struct xen_platform_op`'s header; the union `u` follows at offset 8.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct XenPlatformOpHdr {
    pub cmd: u32,
    pub interface_version: u32,
}
layout!(XenPlatformOpHdr, 8, cmd @ 0, interface_version @ 4);

/// `struct xenpf_settime32` (`u` of XENPF_settime32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct XenpfSettime32 {
    pub secs: u32,
    pub nsecs: u32,
    pub system_time: u64,
}
layout!(XenpfSettime32, 16, secs @ 0, nsecs @ 4, system_time @ 8);

/// `struct xenpf_settime64`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct XenpfSettime64 {
    pub secs: u64,
    pub nsecs: u32,
    pub mbz: u32,
    pub system_time: u64,
}
layout!(XenpfSettime64, 24, secs @ 0, nsecs @ 8, mbz @ 12, system_time @ 16);

/// `struct xenpf_pcpuinfo`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct XenpfPcpuinfo {
    /// IN.
    pub xen_cpuid: u32,
    /// OUT.
    pub max_present: u32,
    pub flags: u32,
    pub apic_id: u32,
    pub acpi_id: u32,
}
layout!(XenpfPcpuinfo, 20, xen_cpuid @ 0, max_present @ 4, flags @ 8, apic_id @ 12, acpi_id @ 16);

// --- grant_table.h --------------------------------------------------------

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct GnttabSetupTable {
    pub dom: DomId,
    pub nr_frames: u32,
    /// OUT: `GntSt`.
    pub status: i16,
    /// Guest address of a `xen_pfn_t` array (OUT: frame numbers).
    pub frame_list: u64,
}
layout!(GnttabSetupTable, 24, dom @ 0, nr_frames @ 4, status @ 8, frame_list @ 16);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct GnttabQuerySize {
    pub dom: DomId,
    /// OUT.
    pub nr_frames: u32,
    /// OUT.
    pub max_nr_frames: u32,
    /// OUT.
    pub status: i16,
}
layout!(GnttabQuerySize, 16, dom @ 0, nr_frames @ 4, max_nr_frames @ 8, status @ 12);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct GnttabSetVersion {
    /// IN/OUT.
    pub version: u32,
}
layout!(GnttabSetVersion, 4, version @ 0);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct GnttabGetVersion {
    pub dom: DomId,
    pub pad: u16,
    /// OUT.
    pub version: u32,
}
layout!(GnttabGetVersion, 8, dom @ 0, pad @ 2, version @ 4);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct GnttabMapGrantRef {
    /// For HVM/PVH: the GPA (in the mapping domain) to map at.
    pub host_addr: u64,
    /// `gntmap::*`.
    pub flags: u32,
    pub r#ref: GrantRef,
    pub dom: DomId,
    /// OUT: `GntSt`.
    pub status: i16,
    /// OUT.
    pub handle: GrantHandle,
    /// OUT.
    pub dev_bus_addr: u64,
}
layout!(GnttabMapGrantRef, 32, host_addr @ 0, flags @ 8, r#ref @ 12, dom @ 16,
    status @ 18, handle @ 20, dev_bus_addr @ 24);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct GnttabUnmapGrantRef {
    pub host_addr: u64,
    pub dev_bus_addr: u64,
    pub handle: GrantHandle,
    /// OUT.
    pub status: i16,
}
layout!(GnttabUnmapGrantRef, 24, host_addr @ 0, dev_bus_addr @ 8, handle @ 16, status @ 20);

/// `struct gnttab_copy_ptr`: `u` is a grant ref (with the `*_GREF` flag) or
/// a GFN of `domid`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct GnttabCopyPtr {
    /// `grant_ref_t ref` or `xen_pfn_t gmfn` (a union; a ref uses the low
    /// 32 bits).
    pub u: u64,
    pub domid: DomId,
    pub offset: u16,
}
layout!(GnttabCopyPtr, 16, u @ 0, domid @ 8, offset @ 10);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct GnttabCopy {
    pub source: GnttabCopyPtr,
    pub dest: GnttabCopyPtr,
    pub len: u16,
    /// `gntcopy::*`.
    pub flags: u16,
    /// OUT.
    pub status: i16,
}
layout!(GnttabCopy, 40, source @ 0, dest @ 16, len @ 32, flags @ 34, status @ 36);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypercall_roundtrip() {
        for nr in 0..64u64 {
            if let Some(h) = Hypercall::from_u64(nr) {
                assert_eq!(h.nr(), nr);
            }
        }
        assert_eq!(Hypercall::from_u64(11), None);
        assert_eq!(Hypercall::from_u64(43), None);
        assert_eq!(Hypercall::from_u64(56), None);
        assert_eq!(Hypercall::from_u64(u64::MAX), None);
        assert_eq!(Hypercall::from_u64(32), Some(Hypercall::EventChannelOp));
        assert_eq!(Hypercall::from_u64(34), Some(Hypercall::HvmOp));
        assert_eq!(Hypercall::GrantTableOp.page_offset(), 640);
    }

    #[test]
    fn errno_values() {
        assert_eq!(Errno::ENOSYS.to_ret(), -38);
        assert_eq!(Errno::EINVAL.to_ret(), -22);
        assert_eq!(Errno::EFAULT.to_ret(), -14);
        assert_eq!(ret_value(Ok(5)), 5);
        assert_eq!(ret_value(Err(Errno::ESRCH)), -3);
        assert_eq!(GntSt::NoSpace.raw(), -13);
    }

    #[test]
    fn sizes_match_headers() {
        // Duplicates the const assertions so `cargo test` lists them.
        assert_eq!(size_of::<SharedInfo>(), 3136);
        assert_eq!(size_of::<VcpuInfo>(), 64);
        assert_eq!(size_of::<VcpuTimeInfo>(), 32);
        assert_eq!(size_of::<VcpuRunstateInfo>(), 48);
        assert_eq!(size_of::<HvmStartInfo>(), 56);
        assert_eq!(size_of::<HvmModlistEntry>(), 32);
        assert_eq!(size_of::<HvmMemmapTableEntry>(), 24);
        assert_eq!(size_of::<GrantEntryV1>(), 8);
        assert_eq!(GRANT_ENTRIES_PER_FRAME_V1, 512);
        assert_eq!(size_of::<GnttabCopy>(), 40);
        assert_eq!(EVTCHN_2L_NR_CHANNELS, 4096);
    }

    #[test]
    fn status_union_words() {
        let u = EvtchnStatusU::interdomain(7, 99);
        assert_eq!((u.dom(), u.port()), (7, 99));
        assert_eq!(EvtchnStatusU::word(0x1234_5678).virq(), 0x1234_5678);
        assert_eq!(EvtchnStatusU::unbound(3).dom(), 3);
    }

    #[test]
    fn callback_irq_decode() {
        let v = (hvm_param::CALLBACK_TYPE_VECTOR << 56) | 0xf3;
        assert_eq!(hvm_param::callback_decode(v), (2, 0xf3));
        assert_eq!(hvm_param::callback_decode(9), (0, 9));
    }

    #[test]
    fn virq_classes() {
        assert!(virq::is_per_vcpu(virq::TIMER));
        assert!(!virq::is_per_vcpu(virq::CONSOLE));
        assert!(!virq::is_per_vcpu(virq::MCA));
    }
}
