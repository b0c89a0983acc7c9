//! `memory_op` (hypercall 12, `memory.h`): the structs a toolstack uses to
//! populate, map and describe a guest's memory. Sub-op in RDI (low bits;
//! see [`CMD_MASK`]), argument in RSI.

use crate::{DomId, GuestHandle, XenPfn};

pod! {
    "struct xen_memory_reservation" =>
    /// `struct xen_memory_reservation` ([`INCREASE_RESERVATION`],
    /// [`DECREASE_RESERVATION`], [`POPULATE_PHYSMAP`], [`CLAIM_PAGES`]).
    /// Returns the number of extents done.
    pub struct MemoryReservation {
        /// GFNs of the extents (IN for decrease/populate, OUT for increase);
        /// must be NULL for `CLAIM_PAGES`.
        pub extent_start: GuestHandle<XenPfn>,
        pub nr_extents: u64,
        /// Each extent is `2^extent_order` pages.
        pub extent_order: u32,
        /// `XENMEMF_*`: address bits, NUMA node, populate-on-demand.
        pub mem_flags: u32,
        pub domid: DomId,
    }

    "struct xen_memory_map" =>
    /// `struct xen_memory_map` ([`MEMORY_MAP`], [`MACHINE_MEMORY_MAP`]):
    /// E820 entries (20 bytes each: addr, size, type).
    pub struct MemoryMap {
        /// IN: room in `buffer`; OUT: entries written.
        pub nr_entries: u32,
        pub buffer: GuestHandle<u8>,
    }

    "struct xen_foreign_memory_map" =>
    /// `struct xen_foreign_memory_map` ([`SET_MEMORY_MAP`]): another
    /// domain's E820.
    pub struct ForeignMemoryMap {
        pub domid: DomId,
        pub map: MemoryMap,
    }

    "struct xen_add_to_physmap" =>
    /// `struct xen_add_to_physmap` ([`ADD_TO_PHYSMAP`]).
    pub struct AddToPhysmap {
        pub domid: DomId,
        /// Pages, for [`mapspace::GMFN_RANGE`].
        pub size: u16,
        /// [`mapspace`].
        pub space: u32,
        /// Index in the space ([`mapspace::GRANT_IDX_STATUS`] marks a
        /// grant status frame).
        pub idx: u64,
        /// Where it appears in `domid`'s physical address space.
        pub gpfn: XenPfn,
    }

    "struct xen_add_to_physmap_batch" =>
    /// `struct xen_add_to_physmap_batch` ([`ADD_TO_PHYSMAP_BATCH`], which
    /// Linux's privcmd uses to map another domain's frames:
    /// [`mapspace::GMFN_FOREIGN`]).
    pub struct AddToPhysmapBatch {
        pub domid: DomId,
        /// [`mapspace`].
        pub space: u16,
        /// Entries in `idxs`, `gpfns` and `errs`.
        pub size: u16,
        /// The domain whose frames are mapped (`GMFN_FOREIGN`; 0 otherwise).
        pub foreign_domid: DomId = "u.foreign_domid",
        pub idxs: GuestHandle<u64>,
        pub gpfns: GuestHandle<XenPfn>,
        /// OUT: an errno (0 or negative) per entry.
        pub errs: GuestHandle<i32>,
    }

    "struct xen_remove_from_physmap" =>
    /// `struct xen_remove_from_physmap` ([`REMOVE_FROM_PHYSMAP`]).
    pub struct RemoveFromPhysmap {
        pub domid: DomId,
        pub gpfn: XenPfn,
    }

    "struct xen_pod_target" =>
    /// `struct xen_pod_target` ([`SET_POD_TARGET`], [`GET_POD_TARGET`]).
    pub struct PodTarget {
        pub target_pages: u64,
        pub tot_pages: u64,
        pub pod_cache_pages: u64,
        pub pod_entries: u64,
        pub domid: DomId,
    }

    "struct xen_mem_acquire_resource" =>
    /// `struct xen_mem_acquire_resource` ([`ACQUIRE_RESOURCE`]): maps a
    /// domain's resource (e.g. its grant table) into the caller. A NULL
    /// `frame_list` with `nr_frames` 0 asks for the resource's size.
    pub struct MemAcquireResource {
        pub domid: DomId,
        /// [`resource`] type.
        pub r#type: u16,
        /// Type-specific id ([`resource::GRANT_TABLE_ID_SHARED`], ...).
        pub id: u32,
        /// IN: frames to map; OUT (size query): the resource's size.
        pub nr_frames: u32,
        /// Must be zero.
        pub pad: u32,
        /// First frame of the resource to map.
        pub frame: u64,
        /// A translated caller (PVH dom0) passes the GFNs to map at.
        pub frame_list: GuestHandle<XenPfn>,
    }
}

consts! {
    /// [`MemoryReservation`].
    INCREASE_RESERVATION: u32 = 0 => "XENMEM_increase_reservation";
    /// [`MemoryReservation`].
    DECREASE_RESERVATION: u32 = 1 => "XENMEM_decrease_reservation";
    MAXIMUM_RAM_PAGE: u32 = 2 => "XENMEM_maximum_ram_page";
    CURRENT_RESERVATION: u32 = 3 => "XENMEM_current_reservation";
    MAXIMUM_RESERVATION: u32 = 4 => "XENMEM_maximum_reservation";
    MACHPHYS_MFN_LIST: u32 = 5 => "XENMEM_machphys_mfn_list";
    /// [`MemoryReservation`].
    POPULATE_PHYSMAP: u32 = 6 => "XENMEM_populate_physmap";
    /// [`AddToPhysmap`].
    ADD_TO_PHYSMAP: u32 = 7 => "XENMEM_add_to_physmap";
    /// [`MemoryMap`].
    MEMORY_MAP: u32 = 9 => "XENMEM_memory_map";
    /// [`MemoryMap`].
    MACHINE_MEMORY_MAP: u32 = 10 => "XENMEM_machine_memory_map";
    EXCHANGE: u32 = 11 => "XENMEM_exchange";
    MACHPHYS_MAPPING: u32 = 12 => "XENMEM_machphys_mapping";
    /// [`ForeignMemoryMap`].
    SET_MEMORY_MAP: u32 = 13 => "XENMEM_set_memory_map";
    MAXIMUM_GPFN: u32 = 14 => "XENMEM_maximum_gpfn";
    /// [`RemoveFromPhysmap`].
    REMOVE_FROM_PHYSMAP: u32 = 15 => "XENMEM_remove_from_physmap";
    /// [`PodTarget`].
    SET_POD_TARGET: u32 = 16 => "XENMEM_set_pod_target";
    /// [`PodTarget`].
    GET_POD_TARGET: u32 = 17 => "XENMEM_get_pod_target";
    /// No argument; without memory sharing Xen answers 0 (or -ENOSYS).
    GET_SHARING_FREED_PAGES: u32 = 18 => "XENMEM_get_sharing_freed_pages";
    /// No argument; as `GET_SHARING_FREED_PAGES`.
    GET_SHARING_SHARED_PAGES: u32 = 19 => "XENMEM_get_sharing_shared_pages";
    PAGING_OP: u32 = 20 => "XENMEM_paging_op";
    ACCESS_OP: u32 = 21 => "XENMEM_access_op";
    SHARING_OP: u32 = 22 => "XENMEM_sharing_op";
    /// [`AddToPhysmapBatch`] (also known as `XENMEM_add_to_physmap_range`).
    ADD_TO_PHYSMAP_BATCH: u32 = 23 => "XENMEM_add_to_physmap_batch";
    /// [`MemoryReservation`] with only `domid` and `nr_extents` (pages).
    CLAIM_PAGES: u32 = 24 => "XENMEM_claim_pages";
    MACHPHYS_COMPAT_MFN_LIST: u32 = 25 => "XENMEM_machphys_compat_mfn_list";
    GET_VNUMAINFO: u32 = 26 => "XENMEM_get_vnumainfo";
    RESERVED_DEVICE_MEMORY_MAP: u32 = 27 => "XENMEM_reserved_device_memory_map";
    /// [`MemAcquireResource`].
    ACQUIRE_RESOURCE: u32 = 28 => "XENMEM_acquire_resource";
    /// `mem_flags`: populate on demand.
    MEMF_POPULATE_ON_DEMAND: u32 = 1 << 16 => "XENMEMF_populate_on_demand";
    /// `mem_flags`: the node is a requirement, not a hint.
    MEMF_EXACT_NODE_REQUEST: u32 = 1 << 17 => "XENMEMF_exact_node_request";
    /// `mem_flags`: the node is a virtual (guest) node.
    MEMF_VNODE: u32 = 1 << 18 => "XENMEMF_vnode";
}

/// The sub-op bits of `memory_op`'s RDI; the bits above carry a
/// continuation's start extent (Xen's `MEMOP_EXTENT_SHIFT`, 6).
pub const CMD_MASK: u64 = (1 << 6) - 1;

/// `XENMEMF_address_bits(bits)`.
pub const fn memf_address_bits(bits: u32) -> u32 {
    bits
}

/// `XENMEMF_get_address_bits(flags)`.
pub const fn memf_get_address_bits(flags: u32) -> u32 {
    flags & 0xff
}

/// `XENMEMF_node(node)`.
pub const fn memf_node(node: u32) -> u32 {
    (node + 1) << 8
}

/// `XENMEMF_get_node(flags)`: 0xff when no node is given.
pub const fn memf_get_node(flags: u32) -> u32 {
    ((flags >> 8).wrapping_sub(1)) & 0xff
}

/// `XENMEMF_exact_node(node)`.
pub const fn memf_exact_node(node: u32) -> u32 {
    memf_node(node) | MEMF_EXACT_NODE_REQUEST
}

/// `space` of [`AddToPhysmap`] / [`AddToPhysmapBatch`] (`XENMAPSPACE_*`).
pub mod mapspace {
    consts! {
        SHARED_INFO: u32 = 0 => "XENMAPSPACE_shared_info";
        GRANT_TABLE: u32 = 1 => "XENMAPSPACE_grant_table";
        GMFN: u32 = 2 => "XENMAPSPACE_gmfn";
        /// `ADD_TO_PHYSMAP` only.
        GMFN_RANGE: u32 = 3 => "XENMAPSPACE_gmfn_range";
        /// Frames of `foreign_domid` (batch only).
        GMFN_FOREIGN: u32 = 4 => "XENMAPSPACE_gmfn_foreign";
        DEV_MMIO: u32 = 5 => "XENMAPSPACE_dev_mmio";
        /// `AddToPhysmap::idx` flag: a grant status frame.
        GRANT_IDX_STATUS: u64 = 0x8000_0000 => "XENMAPIDX_grant_table_status";
    }
}

/// [`MemAcquireResource`] types and ids (`XENMEM_resource_*`).
pub mod resource {
    consts! {
        IOREQ_SERVER: u16 = 0 => "XENMEM_resource_ioreq_server";
        GRANT_TABLE: u16 = 1 => "XENMEM_resource_grant_table";
        VMTRACE_BUF: u16 = 2 => "XENMEM_resource_vmtrace_buf";
        /// `GRANT_TABLE` id: the shared (entries) frames.
        GRANT_TABLE_ID_SHARED: u32 = 0 => "XENMEM_resource_grant_table_id_shared";
        /// `GRANT_TABLE` id: the status frames (v2).
        GRANT_TABLE_ID_STATUS: u32 = 1 => "XENMEM_resource_grant_table_id_status";
        /// `IOREQ_SERVER` frame of the buffered ioreq page.
        IOREQ_SERVER_FRAME_BUFIOREQ: u64 = 0 => "XENMEM_resource_ioreq_server_frame_bufioreq";
    }

    /// `XENMEM_resource_ioreq_server_frame_ioreq(n)`.
    pub const fn ioreq_server_frame_ioreq(n: u64) -> u64 {
        1 + n
    }
}
