//! The grant table (`grant_table.h`): the v1 entry a domain writes to let
//! another map one of its frames, and the references reserved for the
//! toolstack's rings.

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
}
