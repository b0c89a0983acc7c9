//! Building a PVH domain that speaks the Xen ABI (Linux's own Xen support)
//! from a kernel image: its memory and p2m, the kernel and initrd,
//! hvm_start_info, ACPI tables, the e820, and its vCPUs (vCPU 0 at the
//! kernel's PVH entry; the others wait, as real CPUs do, for INIT and a
//! start-up IPI).
//!
//! dom0 (`Config::identity`) gets its RAM 1:1 with host memory and the
//! host's ACPI tables ([`super::dom0`]).

use super::super::{acpi, Domain, Kind, Memory};
use crate::arch::x86::hvm as hw;
use crate::hvm::vcpu::StartMode;
use crate::loader::pvh::{MemType, PvhImage, StartInfoBuilder, SIF_INITDOMAIN, SIF_PRIVILEGED};
use crate::mm::p2m::{P2m, Perm};
use crate::mm::phys::{self, Tables};
use crate::xen::abi;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Guest-physical [0, 1 MiB): RAM, boot structures and ACPI tables.
const LOW_BYTES: u64 = 0x10_0000;
/// The end of low RAM in a PVH guest's map (the EBDA and BIOS area above).
const LOW_RAM_END: u64 = 0x9_f000;
/// Where keel puts the boot structures in a PVH guest's memory.
const START_INFO_BASE: u64 = 0x1000;
const START_INFO_LEN: u64 = 0x7000;
pub const ACPI_BASE: u64 = 0xf_0000;
/// The most vCPUs a PVH domain gets (legacy vcpu_info slots in shared_info).
pub const MAX_VCPUS: u32 = abi::XEN_LEGACY_MAX_VCPUS as u32;

/// Where dom0's 1:1 RAM starts: Debian's kernel is linked (and, without a
/// relocatable PVH entry, must run) at 16 MiB.
pub const IDENTITY_BASE: u64 = 16 << 20;

pub struct Config<'a> {
    pub domid: u16,
    pub name: &'a str,
    pub kernel: &'a [u8],
    pub initrd: Option<&'a [u8]>,
    pub cmdline: &'a str,
    pub mem_bytes: u64,
    /// The initial domain (dom0): privileged, console through console_io.
    pub initial: bool,
    /// vCPUs (1..=MAX_VCPUS).
    pub vcpus: u32,
    /// Their local APIC IDs (as the MADT lists them).
    pub apic_ids: Vec<u32>,
    /// dom0's layout: RAM at [`IDENTITY_BASE`], `IDENTITY_BASE + mem_bytes`)
    /// is the host RAM at the same addresses (so device DMA needs no
    /// IOMMU); the caller must have left that range free. Otherwise RAM is
    /// anywhere in host memory, seen from guest-physical 0.
    pub identity: bool,
}

/// Pages set aside for dom0's p2m tables beyond those of its boot-time
/// layout (2 MiB: a 4 KiB table for each of 512 separate 2 MiB ranges of
/// foreign or grant mappings), as Xen gives a domain a paging pool: what
/// dom0 maps of other domains does not take from the host's free memory,
/// so that keel's free memory is back to the page when they are gone.
const DOM0_TABLE_POOL: usize = 512;

pub fn build(cfg: &Config) -> Result<Domain, String> {
    let format = hw::p2m_format()?;
    if cfg.vcpus == 0 || cfg.vcpus > MAX_VCPUS || cfg.apic_ids.len() != cfg.vcpus as usize {
        return Err(format!("{} vCPUs: keel offers 1 to {MAX_VCPUS}", cfg.vcpus));
    }
    let p2m = P2m::new(format, &mut Tables).map_err(|e| format!("p2m: {e:?}"))?;
    let shared_info = phys::alloc_zeroed(1).ok_or("out of memory for shared_info")?;
    let mut mem = Memory::new(p2m, shared_info, cfg.identity, hw::p2m_max_page());
    // (guest-physical, host-physical, bytes, zero it) runs of RAM.
    let mut runs: Vec<(u64, u64, u64, bool)> = Vec::new();
    let gpa_top;
    if cfg.identity {
        // Low memory: the boot structures and ACPI tables (read, never a
        // DMA target) are keel's frames; the RAM between them, where Linux
        // puts its AP trampoline and may put DMA buffers, is 1:1 too.
        let (lo_ram, hi_ram) = (START_INFO_BASE + START_INFO_LEN, LOW_RAM_END);
        let identity_low = phys::frames().take(lo_ram, hi_ram);
        let keel_low: &[(u64, u64)] = if identity_low {
            &[(0, lo_ram), (hi_ram, LOW_BYTES)]
        } else {
            log::warn!(
                "d{}: host RAM [{lo_ram:#x}, {hi_ram:#x}) is not free: dom0's low memory is not 1:1",
                cfg.domid
            );
            &[(0, LOW_BYTES)]
        };
        for &(g0, g1) in keel_low {
            let pages = (g1 - g0) / 4096;
            let hpa = phys::frames()
                .alloc(pages)
                .ok_or("out of memory for dom0's low memory")?;
            mem.own(hpa, pages);
            runs.push((g0, hpa, g1 - g0, true));
        }
        if identity_low {
            mem.own(lo_ram, (hi_ram - lo_ram) / 4096);
            runs.push((lo_ram, lo_ram, hi_ram - lo_ram, false));
        }
        gpa_top = IDENTITY_BASE + cfg.mem_bytes;
        if !phys::frames().take(IDENTITY_BASE, gpa_top) {
            return Err(format!(
                "dom0's 1:1 memory [{IDENTITY_BASE:#x}, {gpa_top:#x}) is not free host RAM"
            ));
        }
        mem.own(IDENTITY_BASE, cfg.mem_bytes / 4096);
        runs.push((IDENTITY_BASE, IDENTITY_BASE, cfg.mem_bytes, false));
        log::info!(
            "d{}: RAM 1:1 with host memory at [{IDENTITY_BASE:#x}, {gpa_top:#x}){}",
            cfg.domid,
            if identity_low {
                " and [0x8000, 0x9f000)"
            } else {
                ""
            }
        );
    } else {
        gpa_top = cfg.mem_bytes;
        let pages = cfg.mem_bytes / 4096;
        let ram = phys::frames()
            .alloc_in(pages, 2 << 20, 0x10_0000, u64::MAX)
            .ok_or_else(|| format!("not enough memory for a {} MiB domain", cfg.mem_bytes >> 20))?;
        mem.own(ram, pages);
        runs.push((0, ram, cfg.mem_bytes, true));
    }
    mem.ram_pages = runs.iter().map(|&(_, _, b, _)| b / 4096).sum();
    mem.set_gfn_limit(gpa_top / 4096);
    // dom0's 1:1 RAM is not zeroed, as Xen builds dom0 (MEMF_no_scrub): it
    // holds only what firmware and the boot loader left there, never a
    // domain's data (domains' frames are scrubbed when freed), and dom0 may
    // read all host memory anyway. The kernel's .bss is zeroed below. Any
    // other domain's RAM, and keel's own low frames, are zeroed.
    for &(gpa, hpa, bytes, zero) in &runs {
        if zero {
            phys::zero(hpa, bytes);
        }
        mem.map_ram(gpa, hpa, bytes, Perm::RWX)
            .map_err(|e| format!("p2m: {e:?}"))?;
    }
    // Only now, with dom0's 1:1 RAM taken and mapped: the pool's frames
    // must not be host RAM dom0 is given, and its boot-time tables come
    // from the allocator.
    if cfg.identity && !mem.reserve_tables(DOM0_TABLE_POOL) {
        log::warn!(
            "d{}: only {} of {DOM0_TABLE_POOL} pages set aside for its p2m's tables",
            cfg.domid,
            mem.table_pool_left()
        );
    }
    let img = PvhImage::parse(cfg.kernel, gpa_top).map_err(|e| format!("kernel refused: {e}"))?;
    if cfg.identity {
        if let Some(s) = img.elf.segments().iter().find(|s| s.paddr < IDENTITY_BASE) {
            return Err(format!(
                "kernel segment at {:#x} is below dom0's RAM at {IDENTITY_BASE:#x}",
                s.paddr
            ));
        }
    }
    img.notes.log();
    let mut loaded = true;
    let mut zeroed = true;
    img.elf.load(
        |gpa, b| loaded &= mem.write(gpa, b),
        |gpa, len| zeroed &= mem.zero(gpa, len),
    );
    if !loaded || !zeroed {
        return Err(String::from("kernel segments outside the domain's RAM"));
    }
    let kernel_end = img
        .elf
        .segments()
        .iter()
        .map(|s| s.paddr + s.memsz)
        .max()
        .unwrap_or(0);
    let mut sib = StartInfoBuilder::new().cmdline(cfg.cmdline);
    if cfg.initial {
        sib = sib.flags(SIF_PRIVILEGED | SIF_INITDOMAIN);
    }
    if let Some(initrd) = cfg.initrd {
        let at = (kernel_end + (2 << 20) - 1) & !((2 << 20) - 1);
        if at + initrd.len() as u64 > gpa_top || !mem.write(at, initrd) {
            return Err(format!(
                "initrd ({} bytes) does not fit after the kernel",
                initrd.len()
            ));
        }
        sib = sib.initrd(at, initrd.len() as u64);
    }
    let host_tables = cfg
        .identity
        .then(|| super::dom0::host_acpi(&cfg.apic_ids))
        .flatten();
    let own_acpi = host_tables.is_none();
    let (base, bytes, rsdp) = match host_tables {
        Some(t) => t,
        None => {
            let t = acpi::build(ACPI_BASE, cfg.vcpus).map_err(|e| format!("ACPI tables: {e:?}"))?;
            (t.base, t.bytes, t.rsdp_gpa)
        }
    };
    if !mem.write(base, &bytes) {
        return Err(String::from("ACPI tables outside the domain's RAM"));
    }
    let acpi_end = (base + bytes.len() as u64 + 0xfff) & !0xfff;
    mem.e820 = alloc::vec![
        // Page 0 (real-mode IVT): RAM for domUs; dom0's is reserved (keel's
        // frame, not 1:1, so no DMA may land there).
        (
            0,
            START_INFO_BASE,
            if cfg.identity {
                MemType::Reserved
            } else {
                MemType::Ram
            }
        ),
        (START_INFO_BASE, START_INFO_LEN, MemType::Reserved),
        (
            START_INFO_BASE + START_INFO_LEN,
            LOW_RAM_END - (START_INFO_BASE + START_INFO_LEN),
            MemType::Ram
        ),
        (LOW_RAM_END, ACPI_BASE - LOW_RAM_END, MemType::Reserved),
        (ACPI_BASE, acpi_end - ACPI_BASE, MemType::Acpi),
        (acpi_end, 0x10_0000 - acpi_end, MemType::Reserved),
    ];
    if cfg.identity {
        // [1 MiB, 16 MiB) is keel's (its image) or the firmware's.
        mem.e820
            .push((0x10_0000, IDENTITY_BASE - 0x10_0000, MemType::Reserved));
        mem.e820.push((IDENTITY_BASE, cfg.mem_bytes, MemType::Ram));
        mem.e820.extend(super::dom0::host_firmware_ranges());
    } else {
        mem.e820
            .push((0x10_0000, cfg.mem_bytes - 0x10_0000, MemType::Ram));
    }
    mem.e820.sort_by_key(|&(start, _, _)| start);
    // What the domain has is the RAM its map shows (keel's boot
    // structures and ACPI pages are reserved there).
    mem.ram_pages = mem
        .e820
        .iter()
        .filter(|e| e.2 == MemType::Ram)
        .map(|e| e.1 / 4096)
        .sum();
    sib = sib.rsdp(rsdp);
    for &(a, s, k) in &mem.e820 {
        sib = sib.memmap(a, s, k);
    }
    let layout = sib
        .build(START_INFO_BASE, START_INFO_LEN)
        .map_err(|e| format!("start_info: {e:?}"))?;
    for (gpa, bytes) in &layout.writes {
        if !mem.write(*gpa, bytes) {
            return Err(String::from("start_info outside the domain's RAM"));
        }
    }
    let vcpus = super::vcpus(cfg.domid, cfg.vcpus, mem.p2m.root, |i| {
        cfg.apic_ids[i as usize]
    })?;
    if cfg.identity {
        // dom0 drives the machine's devices: their ports go straight to
        // the hardware, but for the ones keel keeps or watches.
        for v in &vcpus {
            let mut h = v.hw.lock();
            for port in 0..=u16::MAX {
                h.set_io_intercept(port, crate::hvm::exit::keel_port(port, own_acpi));
            }
        }
    }
    vcpus[0].hw.lock().reset(StartMode::Pvh32 {
        entry: img.entry,
        ebx: layout.start_info_gpa as u32,
    });
    log::info!(
        "d{}: PVH kernel entry {:#x}, {} MiB, {} vCPU(s), initrd {} bytes, cmdline '{}'",
        cfg.domid,
        img.entry,
        cfg.mem_bytes >> 20,
        cfg.vcpus,
        cfg.initrd.map_or(0, |i| i.len()),
        cfg.cmdline
    );
    Ok(Domain::new(
        cfg.domid,
        cfg.name,
        cfg.initial,
        Kind::Pvh {
            passthrough: cfg.identity,
            own_acpi,
        },
        mem,
        vcpus,
    ))
}
