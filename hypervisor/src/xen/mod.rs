//! The Xen public guest ABI (see `docs/xen-abi.md`).
//!
//! * [`abi`]: hypercall/sub-op numbers, errno and `GNTST_*` values, and the
//!   `#[repr(C)]` structures, with their x86_64 sizes asserted at compile
//!   time.
//! * [`evtchn`]: per-domain 2-level event channels and delivery onto the
//!   `shared_info` bitmaps.
//! * [`grant`]: grant table v1 (map/unmap/copy validation).
//! * [`cpu_policy`]: CPU featuresets and policies in the toolstack's formats.
//!
//! Only state logic lives here; the hypercall dispatcher and the guest-memory
//! plumbing arrive with the PVH domain work.

pub mod abi;
pub mod cpu_policy;
pub mod evtchn;
pub mod grant;
pub mod time;
