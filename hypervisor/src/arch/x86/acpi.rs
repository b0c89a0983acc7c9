//! ACPI tables (through the `acpi` crate): CPUs and IO-APICs from the MADT,
//! power-off and reset from the FADT (+ the DSDT's `_S5_`), the HPET, and
//! PCI Express config space from the MCFG.
use super::cpu;
use acpi::{AcpiHandler, AcpiTable, AcpiTables, PhysicalMapping};
use alloc::vec::Vec;
use core::ptr::NonNull;

#[derive(Clone, Copy)]
struct DirectMap;

impl AcpiHandler for DirectMap {
    unsafe fn map_physical_region<T>(&self, phys: usize, size: usize) -> PhysicalMapping<Self, T> {
        let virt = cpu::phys_to_virt(phys as u64) as *mut T;
        // SAFETY: all physical memory (ACPI tables included) is mapped
        // read/write through the direct map for as long as keel runs.
        unsafe { PhysicalMapping::new(phys, NonNull::new(virt).unwrap(), size, size, *self) }
    }
    fn unmap_physical_region<T>(_: &PhysicalMapping<Self, T>) {}
}

#[derive(Clone, Copy, Debug)]
pub struct Cpu {
    pub apic_id: u32,
    pub is_bsp: bool,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Pm1 {
    pub a_cnt: u16,
    pub b_cnt: Option<u16>,
    pub slp_typ: Option<(u8, u8)>,
    pub smi_cmd: u16,
    pub acpi_enable: u8,
    pub reset: Option<(acpi::address::AddressSpace, u64, u8)>,
}

#[derive(Debug)]
pub struct Platform {
    pub revision: u8,
    pub oem_id: [u8; 6],
    pub cpus: Vec<Cpu>,
    pub io_apics: Vec<(u8, u32, u32)>,
    pub lapic_phys: u64,
    pub hpet: Option<u64>,
    pub mcfg: Vec<(u16, u8, u8, u64)>,
    pub pm1: Pm1,
}

pub fn parse(rsdp: u64) -> Result<Platform, acpi::AcpiError> {
    // SAFETY: `rsdp` comes from the firmware (via the loader) and the
    // direct map covers it.
    let tables = unsafe { AcpiTables::from_rsdp(DirectMap, rsdp as usize)? };
    let info = tables.platform_info()?;
    let mut p = Platform {
        revision: tables.revision(),
        oem_id: [0; 6],
        cpus: Vec::new(),
        io_apics: Vec::new(),
        lapic_phys: 0xfee0_0000,
        hpet: None,
        mcfg: Vec::new(),
        pm1: Pm1::default(),
    };
    if let Some(pi) = &info.processor_info {
        p.cpus.push(Cpu {
            apic_id: pi.boot_processor.local_apic_id,
            is_bsp: true,
        });
        for ap in pi.application_processors.iter() {
            if ap.state != acpi::platform::ProcessorState::Disabled {
                p.cpus.push(Cpu {
                    apic_id: ap.local_apic_id,
                    is_bsp: false,
                });
            }
        }
    }
    if let acpi::InterruptModel::Apic(apic) = &info.interrupt_model {
        p.lapic_phys = apic.local_apic_address;
        for io in apic.io_apics.iter() {
            p.io_apics
                .push((io.id, io.address, io.global_system_interrupt_base));
        }
    }
    p.hpet = acpi::HpetInfo::new(&tables)
        .ok()
        .map(|h| h.base_address as u64);
    if let Ok(mcfg) = tables.find_table::<acpi::mcfg::Mcfg>() {
        for e in mcfg.entries() {
            p.mcfg.push((
                e.pci_segment_group,
                e.bus_number_start,
                e.bus_number_end,
                e.base_address,
            ));
        }
    }
    if let Ok(fadt) = tables.find_table::<acpi::fadt::Fadt>() {
        p.oem_id = fadt.header().oem_id;
        let port = |g: acpi::address::GenericAddress| {
            (g.address_space == acpi::address::AddressSpace::SystemIo).then_some(g.address as u16)
        };
        p.pm1.a_cnt = fadt.pm1a_control_block().ok().and_then(port).unwrap_or(0);
        p.pm1.b_cnt = fadt.pm1b_control_block().ok().flatten().and_then(port);
        p.pm1.smi_cmd = { fadt.smi_cmd_port } as u16;
        p.pm1.acpi_enable = fadt.acpi_enable;
        let flags = { fadt.flags };
        if flags.supports_system_reset_via_fadt() {
            if let Ok(r) = fadt.reset_register() {
                p.pm1.reset = Some((r.address_space, r.address, fadt.reset_value));
            }
        }
    }
    if let Ok(dsdt) = tables.dsdt() {
        let va = cpu::phys_to_virt(dsdt.address as u64) as *const u8;
        // SAFETY: the DSDT's AML stream, whose bounds the table header gives,
        // lies in firmware memory mapped by the direct map.
        let aml = unsafe { core::slice::from_raw_parts(va, dsdt.length as usize) };
        p.pm1.slp_typ = crate::acpi_aml::s5_sleep_types(aml);
    }
    Ok(p)
}
