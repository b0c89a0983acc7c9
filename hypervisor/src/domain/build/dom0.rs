//! dom0, the initial domain: built at boot from the `dom0` boot module as
//! a PVH domain that owns the machine (docs/dom0.md): its RAM is host RAM
//! 1:1 from 16 MiB, it sees the host's ACPI tables (with a MADT of its
//! vCPUs), and the host's ports, MMIO and device interrupts are its own.

use super::pvh::{self, IDENTITY_BASE};
use crate::bootinfo::{BootInfo, Module, RegionKind};
use crate::loader::pvh::MemType;
use crate::mm::phys;
use crate::mm::{align_up, PAGE_SIZE};
use crate::platform;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

/// dom0's vCPU `i` has the local APIC ID of physical CPU `i`, so that the
/// device interrupts dom0 routes to it arrive on that CPU; vCPUs beyond
/// the CPU count get IDs above every physical one (IPIs reach them; device
/// interrupts cannot, see docs/dom0.md).
pub fn apic_ids(vcpus: u32) -> Vec<u32> {
    let ncpus = platform::cpu_count();
    let phys: Vec<u32> = (0..ncpus).filter_map(platform::apic_id_of).collect();
    let above = phys.iter().copied().max().map_or(0, |m| m + 1);
    (0..vcpus as usize)
        .map(|i| {
            phys.get(i)
                .copied()
                .unwrap_or(above + (i - phys.len()) as u32)
        })
        .collect()
}

/// Builds dom0 from the boot modules and starts it.
pub fn boot(bi: &BootInfo) -> Result<Arc<super::super::Domain>, String> {
    let opts = crate::cmdline::get();
    // dom0's RAM is host RAM 1:1 from 16 MiB, where GRUB may have put the
    // modules: move those out of the way first (keel's own allocations are
    // already at the top of memory).
    let requested = opts.dom0_mem.size.unwrap_or(256 << 20);
    let want_end = IDENTITY_BASE + requested;
    let dom0 = bi.module("dom0").ok_or("no dom0 module")?;
    // dom0's command line: the `dom0-cmdline` module, else the words after
    // `dom0` on GRUB's module2 line (as Xen does), else a default. Copied
    // now: the multiboot2 information may lie in what becomes dom0's RAM.
    let args = (dom0.args.1 > 0).then(|| module_bytes_at(dom0.args.0, dom0.args.1));
    let cmdline: String = bi
        .module("dom0-cmdline")
        .map(module_bytes)
        .or(args)
        .and_then(|b| core::str::from_utf8(b).ok())
        .map(|s| s.trim_matches(|c: char| c == '\0' || c.is_whitespace()))
        .unwrap_or("console=hvc0 earlyprintk=xen")
        .into();
    let kernel = movable_module(dom0, want_end);
    let initrd = bi
        .module("dom0-initrd")
        .map(|m| movable_module(m, want_end));
    // The free run of host RAM from 16 MiB up bounds dom0's 1:1 memory;
    // keep 1/8 of what is free for keel (p2m tables, grant frames, ...).
    let (run_end, free) = {
        let f = phys::frames();
        let end = f
            .ranges()
            .iter()
            .find(|r| r.start <= IDENTITY_BASE && IDENTITY_BASE < r.end)
            .map_or(IDENTITY_BASE, |r| r.end);
        (end, f.free_bytes())
    };
    let room = (run_end - IDENTITY_BASE).min(free - free / 8);
    let mem = requested.min(room) & !((2 << 20) - 1);
    if mem < requested {
        log::warn!(
            "dom0_mem={} MiB: only {} MiB of host RAM is free from 16 MiB up",
            requested >> 20,
            mem >> 20
        );
    }
    // One vCPU per online CPU, as Xen's default; more share the CPUs.
    let online = platform::cpu_count() as u32;
    let vcpus = match opts.dom0_max_vcpus {
        Some(n) if n > pvh::MAX_VCPUS => {
            log::warn!("dom0_max_vcpus={n}: keel offers at most {}", pvh::MAX_VCPUS);
            pvh::MAX_VCPUS
        }
        Some(0) => online.min(pvh::MAX_VCPUS),
        Some(n) => n,
        None => online.min(pvh::MAX_VCPUS),
    };
    if vcpus > online {
        log::warn!(
            "dom0: {vcpus} vCPUs on {online} CPUs: they share the CPUs; device interrupts reach vCPUs 0-{} only",
            online - 1
        );
    }
    let d = pvh::build(&pvh::Config {
        domid: 0,
        name: "Domain-0",
        kernel,
        initrd,
        cmdline: &cmdline,
        mem_bytes: mem,
        initial: true,
        vcpus,
        apic_ids: apic_ids(vcpus),
        identity: true,
    })?;
    crate::arch::x86::irq::enable_forwarding();
    // vCPU n starts on CPU n (its device interrupts arrive there); any CPU
    // may run it.
    super::launch(d, &|_| u64::MAX, &|i| i as usize % online.max(1) as usize)
}

/// A module's bytes; if they lie below `end` (in dom0's 1:1 memory to
/// be), a copy at the top of memory, and the old range goes back to keel.
fn movable_module(m: &Module, end: u64) -> &'static [u8] {
    let bytes = module_bytes(m);
    let (start, stop) = (
        m.phys & !(PAGE_SIZE - 1),
        align_up(m.phys + m.len, PAGE_SIZE),
    );
    if stop <= IDENTITY_BASE || start >= end || m.len == 0 {
        return bytes;
    }
    let pages = (stop - start) / PAGE_SIZE;
    let Some(new) = phys::frames().alloc(pages) else {
        log::warn!(
            "module '{}': no memory to move it out of dom0's range",
            m.name()
        );
        return bytes;
    };
    let at = new + (m.phys - start);
    phys::write(at, bytes);
    phys::free(start, pages);
    log::info!(
        "module '{}' moved to {at:#x} (out of dom0's 1:1 memory)",
        m.name()
    );
    module_bytes_at(at, m.len)
}

fn module_bytes(m: &Module) -> &'static [u8] {
    module_bytes_at(m.phys, m.len)
}

fn module_bytes_at(pa: u64, len: u64) -> &'static [u8] {
    // SAFETY: boot modules (and their moved copies) and the multiboot2
    // information are reserved physical memory that nothing else uses or
    // frees; the direct map covers them.
    unsafe {
        core::slice::from_raw_parts(
            crate::arch::x86::cpu::phys_to_virt(pa) as *const u8,
            len as usize,
        )
    }
}

/// The host's firmware ranges above 1 MiB (ACPI tables, NVS, flash,
/// MMCONFIG): dom0 reaches them 1:1, so its map names them as the host's.
pub fn host_firmware_ranges() -> impl Iterator<Item = (u64, u64, MemType)> {
    crate::bootinfo::host_regions().iter().filter_map(|r| {
        let t = match r.kind {
            RegionKind::Reserved => MemType::Reserved,
            RegionKind::AcpiReclaimable => MemType::Acpi,
            RegionKind::AcpiNvs => MemType::Nvs,
            _ => return None,
        };
        (r.start >= 0x10_0000).then_some((r.start, r.end - r.start, t))
    })
}

/// dom0's ACPI tables: the host's, with a new root and MADT for its vCPUs
/// (`domain::hostacpi`), placed at [`pvh::ACPI_BASE`]; `None` (keel's own
/// tables then) if the host's cannot be used.
pub fn host_acpi(apic_ids: &[u32]) -> Option<(u64, Vec<u8>, u64)> {
    use crate::domain::hostacpi::{rebuild_for, Action, Cpus};
    let rsdp = crate::bootinfo::host_rsdp()?;
    let read = |pa: u64, buf: &mut [u8]| {
        if pa.checked_add(buf.len() as u64).is_none_or(|e| e > 1 << 40) {
            return false;
        }
        // Firmware tables below 1 TiB, read through the direct map.
        phys::read(pa, buf);
        true
    };
    match rebuild_for(&read, rsdp, Cpus::ApicIdsOrNew(apic_ids), pvh::ACPI_BASE) {
        Ok(r) => {
            log::info!(
                "d0: the host's ACPI tables, MADT with {} of {} CPUs, {} table(s) hidden",
                r.vcpus.len(),
                r.host_cpus,
                r.tables
                    .iter()
                    .filter(|t| matches!(t.action, Action::Dropped))
                    .count()
            );
            Some((r.base, r.bytes, r.rsdp_addr))
        }
        Err(e) => {
            log::warn!("d0: host ACPI tables unusable ({e}); dom0 gets keel's own");
            None
        }
    }
}
