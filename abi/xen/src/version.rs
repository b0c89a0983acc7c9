//! `xen_version` (hypercall 17, `version.h`): sub-op numbers in RDI, an
//! output buffer (or nothing) in RSI. Every sub-op returns 0 on success
//! except `VERSION`, `PAGESIZE` and `BUILD_ID`, which return their value
//! (or size).

pod! {
    "xen_extraversion_t" =>
    /// `xen_extraversion_t`: the version suffix, e.g. `.7`.
    pub type ExtraVersion = [u8; 16];

    "struct xen_compile_info" =>
    /// `xen_compile_info_t` ([`COMPILE_INFO`]); NUL-padded strings.
    pub struct CompileInfo {
        pub compiler: [u8; 64],
        pub compile_by: [u8; 16],
        pub compile_domain: [u8; 32],
        pub compile_date: [u8; 32],
    }

    "xen_capabilities_info_t" =>
    /// `xen_capabilities_info_t` ([`CAPABILITIES`]): space-separated guest
    /// types, e.g. `xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64`.
    pub type CapabilitiesInfo = [u8; 1024];

    "xen_changeset_info_t" =>
    /// `xen_changeset_info_t` ([`CHANGESET`]).
    pub type ChangesetInfo = [u8; 64];

    "struct xen_platform_parameters" =>
    /// `xen_platform_parameters_t` ([`PLATFORM_PARAMETERS`]).
    pub struct PlatformParameters {
        /// Start of the hypervisor's reserved virtual area (PV guests).
        pub virt_start: u64,
    }

    "struct xen_feature_info" =>
    /// `xen_feature_info_t` ([`GET_FEATURES`]): 32 `XENFEAT_*` bits.
    pub struct FeatureInfo {
        /// IN: which 32-bit word.
        pub submap_idx: u32,
        /// OUT.
        pub submap: u32,
    }

    "xen_commandline_t" =>
    /// `xen_commandline_t` ([`COMMANDLINE`]): the hypervisor's command line.
    pub type Commandline = [u8; 1024];

    "struct xen_build_id" =>
    /// `xen_build_id_t` ([`BUILD_ID`]): the header before the build id's
    /// bytes (a flexible array at [`BUILD_ID_BUF_OFFSET`]). A zero-length
    /// buffer asks for the size; the call returns the bytes written.
    pub struct BuildId {
        /// IN: room for the id after this header.
        pub len: u32,
    }
}

consts! {
    /// No argument; returns `major << 16 | minor` ([`encode`]).
    VERSION: u32 = 0 => "XENVER_version";
    /// [`ExtraVersion`].
    EXTRAVERSION: u32 = 1 => "XENVER_extraversion";
    /// [`CompileInfo`].
    COMPILE_INFO: u32 = 2 => "XENVER_compile_info";
    /// [`CapabilitiesInfo`].
    CAPABILITIES: u32 = 3 => "XENVER_capabilities";
    /// [`ChangesetInfo`].
    CHANGESET: u32 = 4 => "XENVER_changeset";
    /// [`PlatformParameters`].
    PLATFORM_PARAMETERS: u32 = 5 => "XENVER_platform_parameters";
    /// [`FeatureInfo`].
    GET_FEATURES: u32 = 6 => "XENVER_get_features";
    /// No argument; returns the page size (4096: `xl` divides by it).
    PAGESIZE: u32 = 7 => "XENVER_pagesize";
    /// [`DomainHandle`](crate::DomainHandle).
    GUEST_HANDLE: u32 = 8 => "XENVER_guest_handle";
    /// [`Commandline`].
    COMMANDLINE: u32 = 9 => "XENVER_commandline";
    /// [`BuildId`].
    BUILD_ID: u32 = 10 => "XENVER_build_id";
    EXTRAVERSION_LEN: usize = 16 => "XEN_EXTRAVERSION_LEN";
    CAPABILITIES_INFO_LEN: usize = 1024 => "XEN_CAPABILITIES_INFO_LEN";
    CHANGESET_INFO_LEN: usize = 64 => "XEN_CHANGESET_INFO_LEN";
    /// Where the build id's bytes start in a [`BuildId`] buffer.
    BUILD_ID_BUF_OFFSET: usize = 4 => "offsetof(struct xen_build_id, buf)";
}

/// [`VERSION`]'s return value for `major.minor`.
pub const fn encode(major: u16, minor: u16) -> u32 {
    (major as u32) << 16 | minor as u32
}

/// Xen 4.17, the version keel reports so Debian's `xen-utils-wrapper`
/// picks the 4.17 tools.
pub const XEN_4_17: u32 = encode(4, 17);
