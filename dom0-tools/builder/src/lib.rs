//! `keel-builder`: the PVH domain builder, run in dom0's userspace as Xen's libxenguest is.
//!
//! Given a created, paused, empty domain (createdomain, max_vcpus, max_mem: keelctl's
//! `XenBackend::create_container`), it turns a kernel image, an optional ramdisk and a
//! [`DomainSpec`] into a domain ready to unpause:
//!
//! 1. [`KernelImage::parse`]: ELF64/ELF32 with a Xen `PHYS32_ENTRY` note, or a bzImage
//!    (Debian's `/boot/vmlinuz-*`) unpacked through `keel-vmlinux`;
//! 2. [`Layout::new`]: where RAM, kernel, ramdisk, `hvm_start_info`, ACPI tables and the
//!    special pages (console, xenstore rings) go, and the e820 — Xen's PVH layout;
//! 3. [`build()`]: the ordered steps libxenguest performs (populate, memory map, load,
//!    ACPI, special pages, HVM params, start_info, event channel params, MTRRs, BSP state,
//!    grant seed) as calls on a [`Guest`] the caller implements over the hypervisor.
//!
//! The crate makes no hypercalls itself and is tested on the host with a fake [`Guest`]. See
//! `docs/domain-builder.md`.

#![forbid(unsafe_code)]

pub mod abi;
pub mod acpi;
pub mod build;
pub mod kernel;
pub mod layout;

pub use acpi::ApicIds;
pub use build::{build, BuildError, Built, Cause, Guest, PopulateStats, Step};
pub use kernel::{KernelError, KernelFormat, KernelImage, Segment};
pub use layout::{DomainSpec, Layout, LayoutError};
