//! Entry from the `bootloader` crate (BIOS and UEFI disk images).
//!
//! The loader maps all physical memory at a dynamic offset and passes one
//! ramdisk: a KEELMODS archive carrying the command line and boot modules.
use crate::bootinfo::{BootInfo, BootProblem, Loader, RegionKind};
use crate::mm::paging::{walk, TableMemory};
use bootloader_api::info::MemoryRegionKind;

/// Reads page tables through the loader's physical-memory mapping.
pub struct LoaderMap(pub u64);

impl TableMemory for LoaderMap {
    fn alloc_table(&mut self) -> Option<u64> {
        None
    }
    fn table(&mut self, phys: u64) -> &mut [u64; 512] {
        // SAFETY: page-table frames named by live page-table entries are
        // mapped at `self.0 + phys` by the loader (or by keel's stub).
        unsafe { &mut *((self.0 + phys) as *mut [u64; 512]) }
    }
}

pub fn enter(info: &'static mut bootloader_api::BootInfo) -> ! {
    let uefi = info
        .memory_regions
        .iter()
        .any(|r| matches!(r.kind, MemoryRegionKind::UnknownUefi(_)));
    let mut bi = BootInfo::new(if uefi { Loader::Uefi } else { Loader::Bios });
    // Requested in main.rs's BootloaderConfig (Mapping::Dynamic).
    let offset = info.physical_memory_offset.into_option().unwrap_or(0);
    bi.phys_offset = offset;
    for r in info.memory_regions.iter() {
        let kind = match r.kind {
            MemoryRegionKind::Usable => RegionKind::Usable,
            MemoryRegionKind::Bootloader => RegionKind::Loader,
            // UEFI memory types: 7 conventional is reported as Usable above.
            MemoryRegionKind::UnknownUefi(9) => RegionKind::AcpiReclaimable,
            MemoryRegionKind::UnknownUefi(10) => RegionKind::AcpiNvs,
            MemoryRegionKind::UnknownUefi(8) => RegionKind::Bad,
            // E820 types.
            MemoryRegionKind::UnknownBios(3) => RegionKind::AcpiReclaimable,
            MemoryRegionKind::UnknownBios(4) => RegionKind::AcpiNvs,
            MemoryRegionKind::UnknownBios(5) => RegionKind::Bad,
            _ => RegionKind::Reserved,
        };
        bi.add_region(r.start, r.end, kind);
    }
    bi.phys_mapped_limit = bi.top_of_ram().max(4 << 30);
    bi.rsdp = info.rsdp_addr.into_option();
    if let Some(addr) = info.ramdisk_addr.into_option() {
        // SAFETY: the loader mapped the ramdisk at `addr` for `ramdisk_len`
        // bytes and never touches it again.
        let data =
            unsafe { core::slice::from_raw_parts(addr as *const u8, info.ramdisk_len as usize) };
        let cr3 = crate::arch::x86::cpu::read_cr3();
        match keel_bootmod::Archive::parse(data) {
            Ok(archive) => {
                if let Some(c) = archive.cmdline() {
                    bi.set_cmdline(c);
                }
                for m in archive
                    .modules()
                    .filter(|m| m.name != keel_bootmod::CMDLINE)
                {
                    let virt = addr + m.offset as u64;
                    let phys = walk(&mut LoaderMap(offset), cr3, virt).unwrap_or(0);
                    // keel hands modules around by physical range: check
                    // the loader put this one in contiguous frames.
                    let len = m.data.len() as u64;
                    let contiguous = (0..len.div_ceil(4096)).all(|p| {
                        walk(&mut LoaderMap(offset), cr3, virt + p * 4096) == Some(phys + p * 4096)
                    });
                    if contiguous {
                        bi.add_module(m.name, phys, len);
                    } else {
                        bi.problem(BootProblem::ModuleNotContiguous);
                    }
                }
            }
            Err(e) => bi.problem(BootProblem::ModuleArchive(e)),
        }
    }
    crate::kernel::start(bi)
}
