//! `keel-builder`: the PVH domain builder, run in dom0's userspace as Xen's libxenguest is.

#![forbid(unsafe_code)]

pub mod abi;
pub mod kernel;

pub use kernel::{KernelError, KernelFormat, KernelImage, Segment};
