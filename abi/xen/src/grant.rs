//! The grant table (`grant_table.h`): the v1 entry a domain writes to let
//! another map one of its frames, the references reserved for the
//! toolstack's rings, and the map/unmap operations a mapper sends.

pod! {
    "struct grant_entry_v1" =>
    /// `struct grant_entry_v1`: one grant, in the granting domain's table.
    pub struct GrantEntryV1 {
        /// `GTF_*` ([`GTF_PERMIT_ACCESS`]...).
        pub flags: u16,
        /// The domain allowed to map the frame.
        pub domid: u16,
        /// The granting domain's frame (gfn).
        pub frame: u32,
    }
    "struct gnttab_map_grant_ref" =>
    /// `GNTTABOP_map_grant_ref`'s element: map grant `gref` of domain
    /// `dom` at `host_addr` (a guest-physical address for a translated
    /// mapper).
    pub struct MapGrantRef {
        pub host_addr: u64,
        /// `GNTMAP_*`.
        pub flags: u32,
        pub gref: u32 = "ref",
        pub dom: u16,
        /// OUT: `GNTST_*`.
        pub status: i16,
        /// OUT: the handle to unmap it with.
        pub handle: u32,
        /// OUT.
        pub dev_bus_addr: u64,
    }
    "struct gnttab_unmap_grant_ref" =>
    /// `GNTTABOP_unmap_grant_ref`'s element.
    pub struct UnmapGrantRef {
        pub host_addr: u64,
        pub dev_bus_addr: u64,
        pub handle: u32,
        /// OUT: `GNTST_*`.
        pub status: i16,
    }
}

consts! {
    /// The grantee may map the frame.
    GTF_PERMIT_ACCESS: u16 = 1 => "GTF_permit_access";
    /// Read-only.
    GTF_READONLY: u16 = 1 << 2 => "GTF_readonly";
    /// The reference of the PV console ring's grant.
    GNTTAB_RESERVED_CONSOLE: u32 = 0 => "GNTTAB_RESERVED_CONSOLE";
    /// The reference of the xenstore ring's grant.
    GNTTAB_RESERVED_XENSTORE: u32 = 1 => "GNTTAB_RESERVED_XENSTORE";
    /// `GRANT_TABLE_OP` sub-op: map grants.
    GNTTABOP_MAP_GRANT_REF: u64 = 0 => "GNTTABOP_map_grant_ref";
    /// `GRANT_TABLE_OP` sub-op: unmap them.
    GNTTABOP_UNMAP_GRANT_REF: u64 = 1 => "GNTTABOP_unmap_grant_ref";
    /// Map for the CPU (at `host_addr`).
    GNTMAP_HOST_MAP: u32 = 1 << 1 => "GNTMAP_host_map";
    /// Read-only.
    GNTMAP_READONLY: u32 = 1 << 2 => "GNTMAP_readonly";
    /// Status: done.
    GNTST_OKAY: i16 = 0 => "GNTST_okay";
    /// Status: the grant may not be mapped by this domain (not granted to
    /// it, not permitted, or read-only asked for writing).
    GNTST_GENERAL_ERROR: i16 = -1 => "GNTST_general_error";
    /// Status: no such domain.
    GNTST_BAD_DOMAIN: i16 = -2 => "GNTST_bad_domain";
    /// Status: no such grant reference.
    GNTST_BAD_GNTREF: i16 = -3 => "GNTST_bad_gntref";
}
