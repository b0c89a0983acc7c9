//! keel's own Rust definitions of Xen 4.17's toolstack ABI: the `domctl`
//! (hypercall 36) and `sysctl` (35) operations at interface version 0x15,
//! and the `xen_version`, `memory_op`, `hvm_op` and `event_channel_op`
//! structures a toolstack (Xen's `xl`/libxl/libxenctrl, or keel's `keelctl`)
//! issues. Shared by the hypervisor and dom0's tools; x86_64 only.
//!
//! The definitions are written from Xen's public headers (as shipped in
//! Debian bookworm's `libxen-dev` 4.17) and Xen's documentation; no Xen code
//! is copied. `tests/layout.rs` compiles a C program against those headers,
//! read at test time, and checks every struct's size, alignment and field
//! offsets and every constant here against it (`docs/xen-toolstack-abi.md`).
//!
//! # Conventions
//!
//! * Modules follow the headers: [`domctl`], [`sysctl`], [`version`],
//!   [`memory`], [`hvm`] (`hvm_op`, params, save records and the PVH
//!   `start_info`), [`evtchn`], [`grant`] (v1 entries), [`sched`]
//!   (shutdown reasons),
//!   [`arch_x86`] (`xen_arch_domainconfig`, CPUID/MSR policy entries).
//! * Structs are Rust-named (`xen_domctl_getdomaininfo` is
//!   [`domctl::GetDomainInfo`]) with the C field names; each struct's docs
//!   name its C type. Constants keep the part of the C name after the
//!   module's prefix, in a submodule named after the prefix:
//!   `XEN_DOMCTL_getdomaininfo` is [`domctl::op::GETDOMAININFO`],
//!   `XEN_DOMINF_paused` is [`domctl::dominf::PAUSED`].
//! * Guest handles (`XEN_GUEST_HANDLE_64(...)`, and plain
//!   `XEN_GUEST_HANDLE(...)` which is the same 8 bytes on x86_64) are
//!   [`GuestHandle<T>`]: a guest-virtual address, typed by what it points to.
//! * C unions are aligned byte arrays with typed `get`/`set`
//!   ([`domctl::DomctlU`]); where every member of a small union is one
//!   integer, the struct has that integer (named after the member).
//!
//! # Bytes in and out: [`Pod`]
//!
//! The hypervisor copies these structs out of guest memory as bytes and
//! back. Every struct implements [`Pod`]: `from_bytes`/`from_prefix` decode,
//! `write_to`/`to_bytes` encode, field by field in little-endian order at
//! the field's `offset_of!`. That was chosen over reinterpreting memory
//! (a `zerocopy`-style derive) because:
//!
//! * the crate stays `#![forbid(unsafe_code)]` and dependency-free, which
//!   matters for a crate linked into the hypervisor (no proc-macro stack,
//!   nothing to audit);
//! * encoding writes padding as zeros, so a hypervisor that copies a struct
//!   to a guest cannot leak stale bytes through padding (a cast would copy
//!   whatever the padding held);
//! * any byte string decodes (all fields are integers or byte arrays), so
//!   a malicious guest cannot make a decode fail or produce an invalid value;
//!   validation stays with the code that interprets fields.
//!
//! The cost is a copy per struct, at most a few KiB (`hvm_hw_cpu`), and
//! compile-time checks that each field's encoded size equals its memory
//! size, so a decode or encode can never index past [`Pod::SIZE`].

#![no_std]
#![forbid(unsafe_code)]

#[macro_use]
mod macros;

pub mod layout;
mod pod;

pub mod arch_x86;
pub mod domctl;
pub mod evtchn;
pub mod grant;
pub mod hvm;
pub mod memory;
pub mod platform;
pub mod sched;
pub mod sysctl;
pub mod version;

pub use pod::Pod;

use core::fmt;
use core::marker::PhantomData;

/// `domid_t`.
pub type DomId = u16;
/// `evtchn_port_t`.
pub type EvtchnPort = u32;
/// `xen_pfn_t` (a guest frame number; `unsigned long`).
pub type XenPfn = u64;
/// `xen_ulong_t`.
pub type XenUlong = u64;

/// Hypercall numbers (`__HYPERVISOR_*`, passed in RAX) of the hypercalls
/// this crate describes.
pub mod hypercall {
    consts! {
        MEMORY_OP: u64 = 12 => "__HYPERVISOR_memory_op";
        XEN_VERSION: u64 = 17 => "__HYPERVISOR_xen_version";
        GRANT_TABLE_OP: u64 = 20 => "__HYPERVISOR_grant_table_op";
        SCHED_OP: u64 = 29 => "__HYPERVISOR_sched_op";
        EVENT_CHANNEL_OP: u64 = 32 => "__HYPERVISOR_event_channel_op";
        HVM_OP: u64 = 34 => "__HYPERVISOR_hvm_op";
        /// Argument: a [`XenSysctl`](crate::sysctl::XenSysctl).
        SYSCTL: u64 = 35 => "__HYPERVISOR_sysctl";
        /// Argument: a [`XenDomctl`](crate::domctl::XenDomctl).
        DOMCTL: u64 = 36 => "__HYPERVISOR_domctl";
    }
}

consts! {
    /// Domain ids from here up are not ordinary domains.
    DOMID_FIRST_RESERVED: DomId = 0x7ff0 => "DOMID_FIRST_RESERVED";
    /// "The calling domain".
    DOMID_SELF: DomId = 0x7ff0 => "DOMID_SELF";
    DOMID_IO: DomId = 0x7ff1 => "DOMID_IO";
    DOMID_XEN: DomId = 0x7ff2 => "DOMID_XEN";
    DOMID_COW: DomId = 0x7ff3 => "DOMID_COW";
    DOMID_INVALID: DomId = 0x7ff4 => "DOMID_INVALID";
    DOMID_IDLE: DomId = 0x7fff => "DOMID_IDLE";
}

/// A guest-virtual address of a `T` (or of an array of them) in the
/// caller's address space: `XEN_GUEST_HANDLE_64(T)`. 0 is the NULL handle,
/// which several operations read as "only tell me the size".
#[repr(transparent)]
pub struct GuestHandle<T>(u64, PhantomData<fn() -> T>);

impl<T> GuestHandle<T> {
    pub const NULL: Self = Self(0, PhantomData);

    pub const fn new(addr: u64) -> Self {
        Self(addr, PhantomData)
    }

    pub const fn addr(self) -> u64 {
        self.0
    }

    pub const fn is_null(self) -> bool {
        self.0 == 0
    }
}

impl<T: Pod> GuestHandle<T> {
    /// The address of element `index` of the array the handle points to;
    /// `None` if it does not fit in 64 bits.
    pub fn element(self, index: u64) -> Option<u64> {
        index
            .checked_mul(T::SIZE as u64)
            .and_then(|off| self.0.checked_add(off))
    }
}

impl<T> Clone for GuestHandle<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for GuestHandle<T> {}
impl<T> PartialEq for GuestHandle<T> {
    fn eq(&self, o: &Self) -> bool {
        self.0 == o.0
    }
}
impl<T> Eq for GuestHandle<T> {}
impl<T> Default for GuestHandle<T> {
    fn default() -> Self {
        Self::NULL
    }
}
impl<T> fmt::Debug for GuestHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GuestHandle({:#x})", self.0)
    }
}

impl<T> Pod for GuestHandle<T> {
    const SIZE: usize = 8;
    fn zeroed() -> Self {
        Self::NULL
    }
    fn put_le(&self, out: &mut [u8]) {
        self.0.put_le(out)
    }
    fn get_le(b: &[u8]) -> Self {
        Self::new(u64::get_le(b))
    }
}

pod! {
    "xen_domain_handle_t" =>
    /// `xen_domain_handle_t`: a domain's 16-byte handle (the toolstack
    /// stores its UUID there).
    pub type DomainHandle = [u8; 16];

    "struct xenctl_bitmap" =>
    /// `struct xenctl_bitmap`: a bitmap in guest memory (CPU or node masks),
    /// `nr_bits` bits, bit `n` in byte `n / 8`, bit `n % 8`.
    pub struct XenctlBitmap {
        pub bitmap: GuestHandle<u8>,
        pub nr_bits: u32,
    }
}

/// The bytes of a NUL-terminated C string field, up to the first NUL (all
/// of `field` if it has none).
pub fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&c| c == 0).unwrap_or(field.len());
    &field[..end]
}

/// Fills a C string field: as much of `s` as fits with a terminating NUL,
/// the rest zeroed. Returns how many bytes of `s` were stored.
pub fn put_cstr(field: &mut [u8], s: &[u8]) -> usize {
    let n = s.len().min(field.len().saturating_sub(1));
    field[..n].copy_from_slice(&s[..n]);
    field[n..].fill(0);
    n
}

#[cfg(test)]
mod tests;
