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
//!
//! ```
//! use keel_builder::abi::{E820Entry, GrantEntryV1};
//! use keel_builder::{build, DomainSpec, Guest, HwCpu, KernelImage, Step};
//!
//! /// A guest that keeps nothing (keelctl's talks to the hypervisor instead).
//! struct Null;
//! impl Guest for Null {
//!     type Error = String;
//!     fn populate(&mut self, gfns: &[u64], _order: u32) -> Result<usize, String> {
//!         Ok(gfns.len())
//!     }
//!     fn write(&mut self, _gpa: u64, _bytes: &[u8]) -> Result<(), String> { Ok(()) }
//!     fn set_memory_map(&mut self, _e820: &[E820Entry]) -> Result<(), String> { Ok(()) }
//!     fn set_param(&mut self, _index: u32, _value: u64) -> Result<(), String> { Ok(()) }
//!     fn set_mtrr_def_type(&mut self, _vcpu: u32, _def: u64) -> Result<(), String> { Ok(()) }
//!     fn set_bsp(&mut self, _cpu: &HwCpu) -> Result<(), String> { Ok(()) }
//!     fn seed_grant_table(&mut self, _e: &[(u32, GrantEntryV1)]) -> Result<(), String> {
//!         Err("no grant table".into())
//!     }
//! }
//!
//! # fn kernel() -> Vec<u8> {
//! #     // ELF64 header, one PT_NOTE (the Xen PHYS32_ENTRY note), one PT_LOAD at 1 MiB.
//! #     let mut b = vec![0u8; 64 + 2 * 56];
//! #     b[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
//! #     b[16] = 2; b[18] = 62; b[20] = 1; b[32] = 64; b[54] = 56; b[56] = 2;
//! #     let note_at = b.len() as u64;
//! #     for w in [4u32, 8, 18] { b.extend_from_slice(&w.to_le_bytes()); }
//! #     b.extend_from_slice(b"Xen\0");
//! #     b.extend_from_slice(&0x10_0000u64.to_le_bytes());
//! #     let load_at = b.len() as u64;
//! #     b.extend_from_slice(&[0xf4; 16]);
//! #     for (i, (ty, off, pa, len)) in [(4u32, note_at, 0u64, 24u64), (1, load_at, 0x10_0000, 16)]
//! #         .into_iter().enumerate()
//! #     {
//! #         let o = 64 + i * 56;
//! #         b[o..o + 4].copy_from_slice(&ty.to_le_bytes());
//! #         b[o + 8..o + 16].copy_from_slice(&off.to_le_bytes());
//! #         b[o + 24..o + 32].copy_from_slice(&pa.to_le_bytes());
//! #         b[o + 32..o + 40].copy_from_slice(&len.to_le_bytes());
//! #         b[o + 40..o + 48].copy_from_slice(&len.to_le_bytes());
//! #     }
//! #     b
//! # }
//! let kernel = KernelImage::parse(&kernel()).unwrap();
//! let mut spec = DomainSpec::new(64, 2);
//! spec.cmdline = "console=hvc0".into();
//! let err = build(&mut Null, &kernel, None, &spec).unwrap_err();
//! // Everything up to the grant seed was done: the caller now destroys the domain.
//! assert_eq!(err.step, Step::GrantTable);
//! ```

#![forbid(unsafe_code)]

pub mod abi;
pub mod acpi;
pub mod build;
pub mod kernel;
pub mod layout;

pub use acpi::ApicIds;
pub use build::{build, BuildError, Built, Cause, Guest, PopulateStats, Step};
/// The BSP state record (`struct hvm_hw_cpu`) [`Guest::set_bsp`] takes.
pub use keel_xen_abi::hvm::save::HwCpu;
pub use kernel::{KernelError, KernelFormat, KernelImage, Segment};
pub use layout::{DomainSpec, Layout, LayoutError};
