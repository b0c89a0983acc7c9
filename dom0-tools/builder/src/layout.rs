//! Where everything goes in a PVH domU's guest-physical address space, as Xen 4.17's libxl and
//! libxenguest place it for a PVH guest without a device model:
//!
//! ```text
//! 0 ─────────────────────────────── RAM (e820 RAM) ──────────────────────────── low_ram_end
//!     kernel PT_LOAD segments at their p_paddr (Linux: 16 MiB)
//!     ramdisk                 page-aligned, right after the kernel
//!     boot info page(s)       page-aligned, after the ramdisk:
//!                               hvm_start_info | cmdline\0 | modlist | memmap
//! low_ram_end = min(RAM, 0xfc00_0000)          (the MMIO hole starts at the ACPI area)
//! 0xfc00_0000  ACPI tables (e820 ACPI, own pages)  RSDP, XSDT, FADT, DSDT, MADT
//! 0xfee0_0000  local APIC (not memory)
//! 0xfeff_8000  8 special pages (e820 Reserved): paging, access, sharing, bufioreq,
//!              xenstore (+4), ioreq, ident_pt, console (+7)   [X86_HVM_END_SPECIAL_REGION - 8]
//! 0xff00_0000 … 4 GiB: hole
//! 4 GiB ─────────────── RAM beyond low_ram_end, if any (e820 RAM) ─────────── high_ram_end
//! ```
//!
//! libxl computes the hole for a PVH guest without a device model as starting at the lowest of
//! the special pages, the local APIC and `ACPI_INFO_PHYSICAL_ADDRESS` (0xfc000000): RAM above
//! that moves to 4 GiB. The ACPI pages and special pages are populated in addition to the RAM
//! (`Layout::extra_pages`), as libxenguest does.

use crate::abi::{
    E820Entry, E820Type, HvmMemmapEntry, HvmModlistEntry, HvmStartInfo, XEN_HVM_START_MAGIC_VALUE,
};
use crate::acpi::{self, AcpiTables, ApicIds};
use crate::kernel::{KernelError, KernelImage};

pub const PAGE: u64 = 4096;
/// `ACPI_INFO_PHYSICAL_ADDRESS`: libxl's ACPI area for PVH, and where the MMIO hole starts.
pub const ACPI_BASE: u64 = 0xfc00_0000;
/// Where RAM below 4 GiB ends at most.
pub const HOLE_START: u64 = ACPI_BASE;
/// `X86_HVM_END_SPECIAL_REGION` (a PFN) and `X86_HVM_NR_SPECIAL_PAGES`.
pub const END_SPECIAL_REGION_PFN: u64 = 0xff000;
pub const NR_SPECIAL_PAGES: u64 = 8;
pub const FOUR_GIB: u64 = 1 << 32;

/// The special pages (`SPECIALPAGE_*` in libxenguest): index into the region.
pub mod special {
    pub const PAGING: u64 = 0;
    pub const ACCESS: u64 = 1;
    pub const SHARING: u64 = 2;
    pub const BUFIOREQ: u64 = 3;
    pub const XENSTORE: u64 = 4;
    pub const IOREQ: u64 = 5;
    pub const IDENT_PT: u64 = 6;
    pub const CONSOLE: u64 = 7;
}

/// `special_pfn(x)`.
pub const fn special_pfn(x: u64) -> u64 {
    END_SPECIAL_REGION_PFN - NR_SPECIAL_PAGES + x
}

/// What the domain looks like, from the toolstack's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSpec {
    /// RAM in MiB (xl's `memory=`).
    pub memory_mib: u64,
    /// vCPUs online at boot (xl's `vcpus=`).
    pub vcpus: u32,
    /// vCPUs the domain may ever have (xl's `maxvcpus=`); the MADT lists this many.
    pub max_vcpus: u32,
    /// Kernel command line (no NUL inside).
    pub cmdline: String,
    /// Local APIC IDs in the MADT (the hypervisor must agree).
    pub apic_ids: ApicIds,
    /// The console and xenstore event channels (allocated unbound in the guest for the
    /// backends, `EVTCHNOP_alloc_unbound`), and the backends' domains (0: dom0).
    pub console_evtchn: u32,
    pub store_evtchn: u32,
    pub console_domid: u16,
    pub store_domid: u16,
}

impl DomainSpec {
    /// A spec with `memory_mib` MiB and `vcpus` vCPUs, no command line, event channels 0.
    pub fn new(memory_mib: u64, vcpus: u32) -> DomainSpec {
        DomainSpec {
            memory_mib,
            vcpus,
            max_vcpus: vcpus,
            cmdline: String::new(),
            apic_ids: ApicIds::Xen,
            console_evtchn: 0,
            store_evtchn: 0,
            console_domid: 0,
            store_domid: 0,
        }
    }

    /// From a parsed xl.cfg (`type = "pvh"`): memory, vcpus, maxvcpus and cmdline. The event
    /// channels are the caller's to fill in once allocated.
    pub fn from_xl(cfg: &keel_xlcfg::DomainConfig) -> Result<DomainSpec, LayoutError> {
        if cfg.guest_type != keel_xlcfg::GuestType::Pvh {
            return Err(LayoutError::NotPvh(cfg.guest_type.name()));
        }
        let memory_mib = cfg.memory_mb.ok_or(LayoutError::NoMemory)?;
        let mut s = DomainSpec::new(memory_mib, cfg.vcpus);
        s.max_vcpus = cfg.effective_maxvcpus();
        s.cmdline = cfg.cmdline.clone().unwrap_or_default();
        Ok(s)
    }

    pub fn mem_bytes(&self) -> u64 {
        self.memory_mib << 20
    }
}

/// Why a layout cannot be made (nothing has been done to the domain yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// Less than 2 MiB, or so much that addresses overflow.
    BadMemory(u64),
    /// `vcpus` is 0, above `max_vcpus`, or `max_vcpus` above [`acpi::MAX_VCPUS`].
    BadVcpus { vcpus: u32, max_vcpus: u32 },
    /// The kernel does not fit in the domain's RAM.
    Kernel(KernelError),
    /// The ramdisk plus the boot info pages end beyond RAM below the hole.
    NoRoom {
        what: &'static str,
        end: u64,
        ram_end: u64,
    },
    /// The command line contains a NUL byte.
    NulInCmdline,
    /// xl.cfg: not `type = "pvh"`.
    NotPvh(&'static str),
    /// xl.cfg: no `memory=`.
    NoMemory,
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LayoutError::BadMemory(m) => write!(f, "{m} MiB of RAM: want at least 2"),
            LayoutError::BadVcpus { vcpus, max_vcpus } => write!(
                f,
                "{vcpus} vCPUs of {max_vcpus}: want 1 <= vcpus <= maxvcpus <= {}",
                acpi::MAX_VCPUS
            ),
            LayoutError::Kernel(e) => write!(f, "{e}"),
            LayoutError::NoRoom { what, end, ram_end } => write!(
                f,
                "{what} would end at {end:#x}, beyond the domain's RAM below the hole \
                 ({ram_end:#x}): give the domain more memory"
            ),
            LayoutError::NulInCmdline => write!(f, "the kernel command line contains a NUL byte"),
            LayoutError::NotPvh(t) => write!(f, "type = \"{t}\": the builder builds PVH domains"),
            LayoutError::NoMemory => write!(f, "no memory= in the domain configuration"),
        }
    }
}

impl std::error::Error for LayoutError {}

/// The computed layout. All addresses guest-physical.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// RAM ranges `[start, end)`: below the hole, and above 4 GiB when RAM exceeds the hole.
    pub ram: Vec<(u64, u64)>,
    /// `[start, end)` of the kernel's segments.
    pub kernel: (u64, u64),
    /// `(address, length)` of the ramdisk (module 0).
    pub ramdisk: Option<(u64, u64)>,
    /// The boot info pages: `hvm_start_info` at the start (`%ebx`).
    pub start_info: u64,
    pub start_info_len: u64,
    /// 0 when the command line is empty.
    pub cmdline: u64,
    pub modlist: u64,
    pub memmap: u64,
    /// ACPI tables (at [`ACPI_BASE`]) and the page-rounded length of their pages.
    pub acpi: AcpiTables,
    pub acpi_len: u64,
    /// The guest's memory map, sorted by address.
    pub e820: Vec<E820Entry>,
    /// The PV console and xenstore rings' GFNs.
    pub console_pfn: u64,
    pub store_pfn: u64,
}

fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

impl Layout {
    /// Lays out `kernel` (and a ramdisk of `ramdisk_len` bytes) for `spec`.
    pub fn new(
        kernel: &KernelImage,
        ramdisk_len: Option<u64>,
        spec: &DomainSpec,
    ) -> Result<Layout, LayoutError> {
        if spec.memory_mib < 2 || spec.memory_mib > 1 << 30 {
            return Err(LayoutError::BadMemory(spec.memory_mib));
        }
        if spec.vcpus == 0 || spec.vcpus > spec.max_vcpus || spec.max_vcpus > acpi::MAX_VCPUS {
            return Err(LayoutError::BadVcpus {
                vcpus: spec.vcpus,
                max_vcpus: spec.max_vcpus,
            });
        }
        if spec.cmdline.as_bytes().contains(&0) {
            return Err(LayoutError::NulInCmdline);
        }
        let mem = spec.mem_bytes();
        let low_end = mem.min(HOLE_START);
        let mut ram = vec![(0, low_end)];
        if mem > low_end {
            ram.push((FOUR_GIB, FOUR_GIB + (mem - low_end)));
        }
        kernel.check_fits(low_end).map_err(LayoutError::Kernel)?;
        let kernel_range = (kernel.start(), kernel.end());

        // The ramdisk, then the boot info, page-aligned after the kernel (libxenguest's
        // segment allocator: kernel, modules, then start_info).
        let mut next = align_up(kernel_range.1, PAGE);
        let ramdisk = ramdisk_len.filter(|&n| n > 0).map(|n| (next, n));
        if let Some((at, n)) = ramdisk {
            next = align_up(at + n, PAGE);
            if at + n > low_end {
                return Err(LayoutError::NoRoom {
                    what: "the ramdisk",
                    end: at + n,
                    ram_end: low_end,
                });
            }
        }

        let acpi_tables = acpi::build(ACPI_BASE, spec.vcpus, spec.max_vcpus, spec.apic_ids);
        let acpi_len = align_up(acpi_tables.bytes.len() as u64, PAGE);
        let special_base = special_pfn(0) * PAGE;
        let mut e820 = vec![E820Entry {
            addr: 0,
            size: low_end,
            kind: E820Type::Ram,
        }];
        e820.push(E820Entry {
            addr: ACPI_BASE,
            size: acpi_len,
            kind: E820Type::Acpi,
        });
        e820.push(E820Entry {
            addr: special_base,
            size: NR_SPECIAL_PAGES * PAGE,
            kind: E820Type::Reserved,
        });
        if let Some(&(s, e)) = ram.get(1) {
            e820.push(E820Entry {
                addr: s,
                size: e - s,
                kind: E820Type::Ram,
            });
        }

        // hvm_start_info | cmdline\0 (8-aligned) | modlist | memmap.
        let start_info = next;
        let cmdline_len = if spec.cmdline.is_empty() {
            0
        } else {
            align_up(spec.cmdline.len() as u64 + 1, 8)
        };
        let cmdline = if cmdline_len > 0 {
            start_info + HvmStartInfo::SIZE as u64
        } else {
            0
        };
        let modlist = start_info + HvmStartInfo::SIZE as u64 + cmdline_len;
        let memmap = modlist + HvmModlistEntry::SIZE as u64 * u64::from(ramdisk.is_some());
        let info_end = memmap + HvmMemmapEntry::SIZE as u64 * e820.len() as u64;
        let start_info_len = align_up(info_end - start_info, PAGE);
        if start_info + start_info_len > low_end {
            return Err(LayoutError::NoRoom {
                what: "the boot info (hvm_start_info, command line, memory map)",
                end: start_info + start_info_len,
                ram_end: low_end,
            });
        }
        Ok(Layout {
            ram,
            kernel: kernel_range,
            ramdisk,
            start_info,
            start_info_len,
            cmdline,
            modlist,
            memmap,
            acpi: acpi_tables,
            acpi_len,
            e820,
            console_pfn: special_pfn(special::CONSOLE),
            store_pfn: special_pfn(special::XENSTORE),
        })
    }

    /// RAM pages.
    pub fn ram_pages(&self) -> u64 {
        self.ram.iter().map(|(s, e)| (e - s) / PAGE).sum()
    }

    /// Pages populated beyond RAM: ACPI and special pages. The domain's `max_mem` must allow
    /// `ram_pages() + extra_pages()`.
    pub fn extra_pages(&self) -> u64 {
        self.acpi_len / PAGE + NR_SPECIAL_PAGES
    }

    /// The boot info bytes (`start_info_len` long) to write at `start_info`.
    pub fn boot_info(&self, cmdline: &str) -> Vec<u8> {
        let mut b = vec![0u8; self.start_info_len as usize];
        let off = |gpa: u64| (gpa - self.start_info) as usize;
        let si = HvmStartInfo {
            magic: XEN_HVM_START_MAGIC_VALUE,
            version: 1,
            flags: 0,
            nr_modules: u32::from(self.ramdisk.is_some()),
            modlist_paddr: if self.ramdisk.is_some() {
                self.modlist
            } else {
                0
            },
            cmdline_paddr: self.cmdline,
            rsdp_paddr: self.acpi.rsdp,
            memmap_paddr: self.memmap,
            memmap_entries: self.e820.len() as u32,
            reserved: 0,
        };
        b[..HvmStartInfo::SIZE].copy_from_slice(&si.to_bytes());
        if self.cmdline != 0 {
            let o = off(self.cmdline);
            b[o..o + cmdline.len()].copy_from_slice(cmdline.as_bytes());
            // The NUL (and padding) are already zero.
        }
        if let Some((paddr, size)) = self.ramdisk {
            let m = HvmModlistEntry {
                paddr,
                size,
                cmdline_paddr: 0,
                reserved: 0,
            };
            let o = off(self.modlist);
            b[o..o + HvmModlistEntry::SIZE].copy_from_slice(&m.to_bytes());
        }
        for (i, e) in self.e820.iter().enumerate() {
            let o = off(self.memmap) + i * HvmMemmapEntry::SIZE;
            b[o..o + HvmMemmapEntry::SIZE].copy_from_slice(&e.memmap().to_bytes());
        }
        b
    }
}
