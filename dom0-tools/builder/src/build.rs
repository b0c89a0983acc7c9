//! The build sequence: what libxl/libxenguest do to a created, paused, empty PVH domain
//! (`docs/domain-builder.md`; xen-toolstack notes §2.3 steps 18–22 and the grant seed),
//! as calls on a [`Guest`] the caller implements.
//!
//! | # | [`Step`] | Xen | `Guest` calls |
//! |---|---|---|---|
//! | 1 | `PopulateRam` | `meminit_hvm` | `populate` 1 GiB extents, falling back to 2 MiB, then exact 4 KiB |
//! | 2 | `SetMemoryMap` | `domain_construct_memmap` | `set_memory_map` |
//! | 3 | `LoadKernel` | `xc_dom_build_image` | `write` each segment, `zero` its `.bss` |
//! | 4 | `LoadRamdisk` | ″ (module 0) | `write` |
//! | 5 | `LoadAcpi` | `xc_dom_load_acpi` | `populate` (4 KiB) + `write` the tables |
//! | 6 | `SpecialPages` | `alloc_magic_pages_hvm` | `populate` 8 pages, `zero` them, `write` the ident PT |
//! | 7 | `SetParams` | ″ | `set_param` STORE_PFN, CONSOLE_PFN (fatal), BUFIOREQ/IOREQ/PAGING/MONITOR/SHARING_RING_PFN, IDENT_PT (failures tolerated, as Xen ignores them) |
//! | 8 | `StartInfo` | `bootlate_hvm` | `write` hvm_start_info + cmdline + modlist + memmap |
//! | 9 | `EventChannels` | ″ | `set_param` CONSOLE_EVTCHN, STORE_EVTCHN |
//! | 10 | `Mtrr` | `vcpu_hvm` | `set_mtrr_def_type` (write-back, enabled) for every vCPU |
//! | 11 | `Bsp` | ″ (last: it resets the vCPUs) | `set_bsp` |
//! | 12 | `GrantTable` | `xc_dom_gnttab_seed` | `seed_grant_table` (console = 0, xenstore = 1) |
//!
//! **Failure contract.** [`build`] stops at the first failing step and returns it in
//! [`BuildError::step`]. Any step from `PopulateRam` on may have changed the domain, so the
//! caller must then destroy it (`XEN_DOMCTL_destroydomain`, which frees whatever was
//! populated), as libxl does; only [`Step::Layout`] errors leave the domain untouched. The
//! builder never retries, unpauses or destroys anything itself.

use crate::abi::GTF_PERMIT_ACCESS;
use crate::abi::{E820Entry, GrantEntryV1, GNTTAB_RESERVED_CONSOLE, GNTTAB_RESERVED_XENSTORE};
use crate::kernel::KernelImage;
use crate::layout::{
    special, special_pfn, DomainSpec, Layout, LayoutError, NR_SPECIAL_PAGES, PAGE,
};
use keel_xen_abi::hvm::param;
use keel_xen_abi::hvm::save::HwCpu;

/// What the builder needs from the hypervisor, for one domain. keelctl implements it over
/// privcmd (memory_op, hvm_op, domctl, foreign maps); tests with a fake memory.
pub trait Guest {
    type Error: core::fmt::Debug + core::fmt::Display;

    /// `XENMEM_populate_physmap`: one extent of `2^order` pages at each GFN of `gfns` (each
    /// aligned to its order). Returns how many extents, from the first, were populated.
    /// For `order > 0` a short count or an error is not fatal (smaller pages are tried);
    /// for order 0 anything but all of them fails the build.
    fn populate(&mut self, gfns: &[u64], order: u32) -> Result<usize, Self::Error>;

    /// Copies `bytes` to guest-physical `gpa` (populated memory; foreign map + copy).
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), Self::Error>;

    /// Zeroes `len` bytes at `gpa`. The default writes zeros.
    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), Self::Error> {
        const CHUNK: u64 = 1 << 16;
        let z = vec![0u8; CHUNK.min(len) as usize];
        let mut done = 0;
        while done < len {
            let n = CHUNK.min(len - done);
            self.write(gpa + done, &z[..n as usize])?;
            done += n;
        }
        Ok(())
    }

    /// `XENMEM_set_memory_map` (the e820 `XENMEM_memory_map` gives back to the guest).
    fn set_memory_map(&mut self, e820: &[E820Entry]) -> Result<(), Self::Error>;

    /// `HVMOP_set_param` (`index` is an `HVM_PARAM_*`, [`keel_xen_abi::hvm::param`]).
    fn set_param(&mut self, index: u32, value: u64) -> Result<(), Self::Error>;

    /// `XEN_DOMCTL_sethvmcontext` with vCPU `vcpu`'s MTRR record whose `msr_mtrr_def_type`
    /// is `def_type` (the caller reads the current record with gethvmcontext first).
    fn set_mtrr_def_type(&mut self, vcpu: u32, def_type: u64) -> Result<(), Self::Error>;

    /// `XEN_DOMCTL_sethvmcontext` with the header the hypervisor gave and this CPU record
    /// for vCPU 0 (`instance` 0), then END.
    fn set_bsp(&mut self, cpu: &HwCpu) -> Result<(), Self::Error>;

    /// Writes grant entries `(reference, entry)` into the guest's (v1) grant table
    /// (`XENMEM_acquire_resource` of the grant table, or the add_to_physmap fallback).
    fn seed_grant_table(&mut self, entries: &[(u32, GrantEntryV1)]) -> Result<(), Self::Error>;
}

/// The build steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// Checking the spec and laying out memory: nothing done to the domain yet.
    Layout,
    PopulateRam,
    SetMemoryMap,
    LoadKernel,
    LoadRamdisk,
    LoadAcpi,
    SpecialPages,
    SetParams,
    StartInfo,
    EventChannels,
    Mtrr,
    Bsp,
    GrantTable,
}

/// What went wrong in a step.
#[derive(Debug)]
pub enum Cause<E> {
    Layout(LayoutError),
    /// The [`Guest`] call failed.
    Guest(E),
    /// An order-0 `populate` populated `done` of `wanted` pages.
    ShortPopulate {
        wanted: usize,
        done: usize,
    },
}

/// A failed build: the step that failed (see the module's failure contract) and why.
#[derive(Debug)]
pub struct BuildError<E> {
    pub step: Step,
    pub cause: Cause<E>,
}

impl<E: core::fmt::Display> core::fmt::Display for BuildError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "domain build failed at {:?}: ", self.step)?;
        match &self.cause {
            Cause::Layout(e) => write!(f, "{e}"),
            Cause::Guest(e) => write!(f, "{e}"),
            Cause::ShortPopulate { wanted, done } => {
                write!(f, "populated {done} of {wanted} pages")
            }
        }
    }
}

impl<E: core::fmt::Debug + core::fmt::Display> std::error::Error for BuildError<E> {}

/// How RAM was populated (libxenguest prints the same).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PopulateStats {
    pub pages_1g: u64,
    pub pages_2m: u64,
    pub pages_4k: u64,
}

/// A built domain, ready to unpause.
#[derive(Debug, Clone)]
pub struct Built {
    pub layout: Layout,
    pub populate: PopulateStats,
    /// The BSP state given to [`Guest::set_bsp`].
    pub bsp: HwCpu,
    /// Parameters whose `set_param` failed and were tolerated, as Xen tolerates them.
    pub tolerated: Vec<(u32, String)>,
}

/// CR0.PE | CR0.ET.
pub const CR0_PE_ET: u64 = 0x11;
/// MTRR default type write-back (6) with MTRRs enabled (bit 11).
pub const MTRR_DEF_WB_ENABLED: u64 = 6 | 1 << 11;
/// Orders of the extents `populate` is asked for.
pub const ORDER_1G: u32 = 18;
pub const ORDER_2M: u32 = 9;

/// The BSP's initial state for a PVH kernel (Xen's `vcpu_hvm`): 32-bit flat protected mode,
/// paging off, `RIP` = the PVH entry, `RBX` = the `hvm_start_info` address.
pub fn bsp_state(entry: u32, start_info: u64) -> HwCpu {
    HwCpu {
        rip: entry as u64,
        rbx: start_info,
        rflags: 0x2,
        cr0: CR0_PE_ET,
        dr6: 0xffff_0ff0,
        dr7: 0x400,
        cs_limit: !0,
        ds_limit: !0,
        es_limit: !0,
        ss_limit: !0,
        tr_limit: 0x67,
        // Code: present, DPL 0, execute/read, accessed, 32-bit, 4 KiB granularity; data:
        // read/write, accessed; TR: busy 32-bit TSS.
        cs_arbytes: 0xc9b,
        ds_arbytes: 0xc93,
        es_arbytes: 0xc93,
        ss_arbytes: 0xc93,
        tr_arbytes: 0x8b,
        ..HwCpu::default()
    }
}

/// The grant entries the toolstack seeds: the console and xenstore rings, for their backends.
pub fn grant_seed(layout: &Layout, spec: &DomainSpec) -> [(u32, GrantEntryV1); 2] {
    [
        (
            GNTTAB_RESERVED_CONSOLE,
            GrantEntryV1 {
                flags: GTF_PERMIT_ACCESS,
                domid: spec.console_domid,
                frame: layout.console_pfn as u32,
            },
        ),
        (
            GNTTAB_RESERVED_XENSTORE,
            GrantEntryV1 {
                flags: GTF_PERMIT_ACCESS,
                domid: spec.store_domid,
                frame: layout.store_pfn as u32,
            },
        ),
    ]
}

/// The 32-bit non-PAE identity page directory of 4 MiB pages libxenguest puts in the
/// IDENT_PT special page (for running with CR0.PG = 0 under EPT without unrestricted guest).
pub fn ident_pt() -> Vec<u8> {
    // present | rw | user | accessed | dirty | PSE
    const FLAGS: u32 = 0x1 | 0x2 | 0x4 | 0x20 | 0x40 | 0x80;
    (0u32..1024)
        .flat_map(|i| ((i << 22) | FLAGS).to_le_bytes())
        .collect()
}

struct Run<'g, G: Guest> {
    g: &'g mut G,
    step: Step,
}

impl<G: Guest> Run<'_, G> {
    fn err(&self, cause: Cause<G::Error>) -> BuildError<G::Error> {
        BuildError {
            step: self.step,
            cause,
        }
    }
    fn call<T>(&self, r: Result<T, G::Error>) -> Result<T, BuildError<G::Error>> {
        r.map_err(|e| self.err(Cause::Guest(e)))
    }

    /// Order-0 pages, exactly.
    fn populate_exact(&mut self, first: u64, n: u64) -> Result<(), BuildError<G::Error>> {
        let gfns: Vec<u64> = (first..first + n).collect();
        for chunk in gfns.chunks(512) {
            let done = self.g.populate(chunk, 0);
            let done = self.call(done)?;
            if done != chunk.len() {
                return Err(self.err(Cause::ShortPopulate {
                    wanted: chunk.len(),
                    done,
                }));
            }
        }
        Ok(())
    }

    /// Extents of `order` at `first`, `n` of them, at most 512 per call. Errors and short
    /// counts end the attempt; returns how many were populated.
    fn populate_large(&mut self, first: u64, n: u64, order: u32) -> u64 {
        let mut done = 0;
        while done < n {
            let batch = (n - done).min(512);
            let gfns: Vec<u64> = (0..batch).map(|i| first + ((done + i) << order)).collect();
            let got = self.g.populate(&gfns, order).unwrap_or(0).min(gfns.len()) as u64;
            done += got;
            if got < batch {
                break;
            }
        }
        done
    }

    /// RAM `[start, end)` (page frame numbers), 1 GiB extents where aligned, then 2 MiB,
    /// then 4 KiB, as `meminit_hvm`.
    fn populate_ram(
        &mut self,
        start: u64,
        end: u64,
        stats: &mut PopulateStats,
    ) -> Result<(), BuildError<G::Error>> {
        let (g1, m2) = (1u64 << ORDER_1G, 1u64 << ORDER_2M);
        let mut cur = start;
        while cur < end {
            if cur.is_multiple_of(g1) && end - cur >= g1 {
                let n = (end - cur) / g1;
                let got = self.populate_large(cur, n, ORDER_1G);
                stats.pages_1g += got;
                cur += got * g1;
                if got == n {
                    continue;
                }
            }
            // Up to the next 1 GiB boundary with smaller pages.
            let stop = end.min((cur / g1 + 1) * g1);
            if cur.is_multiple_of(m2) && stop - cur >= m2 {
                let n = (stop - cur) / m2;
                let got = self.populate_large(cur, n, ORDER_2M);
                stats.pages_2m += got;
                cur += got * m2;
                if got == n {
                    continue;
                }
            }
            let stop = stop.min((cur / m2 + 1) * m2);
            self.populate_exact(cur, stop - cur)?;
            stats.pages_4k += stop - cur;
            cur = stop;
        }
        Ok(())
    }
}

/// Builds a PVH domain: lays it out, then runs the steps above on `guest` in order.
/// `ramdisk` becomes module 0. See the module docs for the failure contract.
pub fn build<G: Guest>(
    guest: &mut G,
    kernel: &KernelImage,
    ramdisk: Option<&[u8]>,
    spec: &DomainSpec,
) -> Result<Built, BuildError<G::Error>> {
    let layout =
        Layout::new(kernel, ramdisk.map(|r| r.len() as u64), spec).map_err(|e| BuildError {
            step: Step::Layout,
            cause: Cause::Layout(e),
        })?;
    let mut r = Run {
        g: guest,
        step: Step::PopulateRam,
    };
    let mut stats = PopulateStats::default();
    for &(s, e) in &layout.ram {
        r.populate_ram(s / PAGE, e / PAGE, &mut stats)?;
    }

    r.step = Step::SetMemoryMap;
    let res = r.g.set_memory_map(&layout.e820);
    r.call(res)?;

    r.step = Step::LoadKernel;
    for s in &kernel.segments {
        let res = r.g.write(s.paddr, kernel.data(s));
        r.call(res)?;
        if s.memsz > s.filesz {
            let res = r.g.zero(s.paddr + s.filesz, s.memsz - s.filesz);
            r.call(res)?;
        }
    }

    r.step = Step::LoadRamdisk;
    if let (Some((at, _)), Some(bytes)) = (layout.ramdisk, ramdisk) {
        let res = r.g.write(at, bytes);
        r.call(res)?;
    }

    r.step = Step::LoadAcpi;
    r.populate_exact(layout.acpi.base / PAGE, layout.acpi_len / PAGE)?;
    let res = r.g.write(layout.acpi.base, &layout.acpi.bytes);
    r.call(res)?;

    r.step = Step::SpecialPages;
    r.populate_exact(special_pfn(0), NR_SPECIAL_PAGES)?;
    let res = r.g.zero(special_pfn(0) * PAGE, NR_SPECIAL_PAGES * PAGE);
    r.call(res)?;
    let res =
        r.g.write(special_pfn(special::IDENT_PT) * PAGE, &ident_pt());
    r.call(res)?;

    r.step = Step::SetParams;
    let mut tolerated = Vec::new();
    for (index, value, fatal) in [
        (param::STORE_PFN, layout.store_pfn, true),
        (param::BUFIOREQ_PFN, special_pfn(special::BUFIOREQ), false),
        (param::IOREQ_PFN, special_pfn(special::IOREQ), false),
        (param::CONSOLE_PFN, layout.console_pfn, true),
        (param::PAGING_RING_PFN, special_pfn(special::PAGING), false),
        (param::MONITOR_RING_PFN, special_pfn(special::ACCESS), false),
        (
            param::SHARING_RING_PFN,
            special_pfn(special::SHARING),
            false,
        ),
        (
            param::IDENT_PT,
            special_pfn(special::IDENT_PT) * PAGE,
            false,
        ),
    ] {
        match r.g.set_param(index, value) {
            Ok(()) => {}
            Err(e) if !fatal => tolerated.push((index, e.to_string())),
            Err(e) => return Err(r.err(Cause::Guest(e))),
        }
    }

    r.step = Step::StartInfo;
    let info = layout.boot_info(&spec.cmdline);
    let res = r.g.write(layout.start_info, &info);
    r.call(res)?;

    r.step = Step::EventChannels;
    let res =
        r.g.set_param(param::CONSOLE_EVTCHN, spec.console_evtchn as u64);
    r.call(res)?;
    let res = r.g.set_param(param::STORE_EVTCHN, spec.store_evtchn as u64);
    r.call(res)?;

    r.step = Step::Mtrr;
    for v in 0..spec.max_vcpus {
        let res = r.g.set_mtrr_def_type(v, MTRR_DEF_WB_ENABLED);
        r.call(res)?;
    }

    r.step = Step::Bsp;
    let bsp = bsp_state(kernel.entry, layout.start_info);
    let res = r.g.set_bsp(&bsp);
    r.call(res)?;

    r.step = Step::GrantTable;
    let res = r.g.seed_grant_table(&grant_seed(&layout, spec));
    r.call(res)?;

    Ok(Built {
        layout,
        populate: stats,
        bsp,
        tolerated,
    })
}
