//! `keel-builder`: the PVH domain builder, run in dom0's userspace as Xen's libxenguest is.

#![forbid(unsafe_code)]

pub mod abi;
pub mod acpi;
pub mod kernel;
pub mod layout;

pub use acpi::ApicIds;
pub use kernel::{KernelError, KernelFormat, KernelImage, Segment};
pub use layout::{DomainSpec, Layout, LayoutError};
