//! Layout metadata: what the definition macros record about every struct,
//! type and constant, so a test can compare all of it with a C compiler's
//! view of Xen's headers (`tests/layout.rs`, `docs/xen-toolstack-abi.md`).

/// A struct or type: its Rust path, the C type it mirrors, and its layout.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Rust path, e.g. `keel_xen_abi::domctl::GetDomainInfo`.
    pub rust: &'static str,
    /// C type name, e.g. `struct xen_domctl_getdomaininfo` or `xen_domain_handle_t`.
    pub c: &'static str,
    pub size: usize,
    pub align: usize,
    /// Every field (empty for a type alias).
    pub fields: &'static [Field],
    /// Decodes the first `size` bytes of the input and encodes the value
    /// into the output (for tests: every field lands where it came from,
    /// padding becomes zero); false if either is too short.
    pub reencode: fn(&[u8], &mut [u8]) -> bool,
}

/// One field of a [`Layout`].
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub rust: &'static str,
    /// The C member designator (`flags`, or `u.foreign_domid` for a member
    /// of an anonymous C union that keel flattens).
    pub c: &'static str,
    pub offset: usize,
    pub size: usize,
    /// The Rust type as written, e.g. `XenctlBitmap` or `[u8; 16]`.
    pub ty: &'static str,
}

/// [`Layout::reencode`] of `T`.
pub fn reencode<T: crate::Pod>(input: &[u8], out: &mut [u8]) -> bool {
    match T::from_prefix(input) {
        Some(v) => v.write_to(out).is_some(),
        None => false,
    }
}

/// A constant and the C expression (usually a macro name) it must equal.
#[derive(Clone, Copy, Debug)]
pub struct Const {
    pub rust: &'static str,
    pub c: &'static str,
    /// The value as the C program prints it: `(unsigned long long)(expr)`.
    pub value: u64,
}

/// `type` from `r#type` (the C name of a field named with a Rust keyword).
pub const fn strip_raw(s: &str) -> &str {
    match s.as_bytes() {
        [b'r', b'#', ..] => s.split_at(2).1,
        _ => s,
    }
}

/// Every module's `LAYOUTS`.
pub const ALL_LAYOUTS: &[&[Layout]] = &[
    crate::LAYOUTS,
    crate::arch_x86::LAYOUTS,
    crate::domctl::LAYOUTS,
    crate::sysctl::LAYOUTS,
    crate::version::LAYOUTS,
    crate::memory::LAYOUTS,
    crate::hvm::LAYOUTS,
    crate::hvm::save::LAYOUTS,
    crate::hvm::start_info::LAYOUTS,
    crate::evtchn::LAYOUTS,
    crate::grant::LAYOUTS,
];

/// Every module's `CONSTS`.
pub const ALL_CONSTS: &[&[Const]] = &[
    crate::hypercall::CONSTS,
    crate::hvm::start_info::CONSTS,
    crate::grant::CONSTS,
    crate::sched::shutdown::CONSTS,
    crate::CONSTS,
    crate::arch_x86::CONSTS,
    crate::domctl::CONSTS,
    crate::domctl::op::CONSTS,
    crate::domctl::cdf::CONSTS,
    crate::domctl::dominf::CONSTS,
    crate::domctl::affinity::CONSTS,
    crate::domctl::scheduler::CONSTS,
    crate::domctl::schedop::CONSTS,
    crate::sysctl::CONSTS,
    crate::sysctl::op::CONSTS,
    crate::sysctl::physcap::CONSTS,
    crate::sysctl::cpupool_op::CONSTS,
    crate::sysctl::featureset::CONSTS,
    crate::sysctl::cpu_policy::CONSTS,
    crate::sysctl::perfcop::CONSTS,
    crate::version::CONSTS,
    crate::memory::CONSTS,
    crate::memory::mapspace::CONSTS,
    crate::memory::resource::CONSTS,
    crate::hvm::CONSTS,
    crate::hvm::param::CONSTS,
    crate::hvm::save::CONSTS,
    crate::evtchn::CONSTS,
    crate::evtchn::stat::CONSTS,
];
