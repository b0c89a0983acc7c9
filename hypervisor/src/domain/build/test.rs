//! keel's test guests (`tests/guests`) as ordinary domains: 4 MiB of RAM
//! at 0 with the guest's ELF loaded, an on-demand region above it, one
//! vCPU starting in real mode at the protocol's SIPI vector, and the test
//! personality (`hvm::testproto`).

use super::super::{Domain, Kind, Memory};
use crate::arch::x86::hvm as hw;
use crate::hvm::testproto::{self as tp, Scenario, TestState};
use crate::hvm::vcpu::StartMode;
use crate::loader::elf;
use crate::loader::pvh::MemType;
use crate::mm::p2m::{P2m, Perm};
use crate::mm::phys::{self, Tables};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use spin::Mutex;

/// Builds test guest `id` running `scenario` from the ELF `image`.
pub fn build(id: u16, scenario: Scenario, image: &[u8]) -> Result<Domain, String> {
    let format = hw::p2m_format()?;
    let p2m = P2m::new(format, &mut Tables).map_err(|e| format!("p2m: {e:?}"))?;
    let shared_info = phys::alloc_zeroed(1).ok_or("out of memory for shared_info")?;
    let mut mem = Memory::new(p2m, shared_info, false, hw::p2m_max_page());
    let pages = tp::RAM_SIZE / 4096;
    let ram = phys::frames()
        .alloc_in(pages, 2 << 20, 0x10_0000, u64::MAX)
        .ok_or("out of memory for guest RAM")?;
    mem.own(ram, pages);
    phys::zero(ram, tp::RAM_SIZE);
    mem.map_ram(0, ram, tp::RAM_SIZE, Perm::RWX)
        .map_err(|e| format!("p2m: {e:?}"))?;
    mem.ram_pages = pages;
    mem.set_gfn_limit((tp::ON_DEMAND_BASE + tp::ON_DEMAND_SIZE) / 4096);
    mem.e820 = vec![(0, tp::RAM_SIZE, MemType::Ram)];
    let img =
        elf::Image::parse(image, tp::RAM_SIZE).map_err(|e| format!("guest image refused: {e}"))?;
    let mut ok = true;
    img.load(
        |gpa, d| ok &= mem.write(gpa, d),
        |_, _| {}, /* RAM is zeroed */
    );
    if !ok {
        return Err(String::from("guest image outside its RAM"));
    }
    let vcpus = super::vcpus(id, 1, mem.p2m.root, |i| i)?;
    vcpus[0].hw.lock().reset(StartMode::RealModeSipi {
        vector: tp::SIPI_VECTOR,
    });
    Ok(Domain::new(
        id,
        &format!("test-{}", tp::name(scenario)),
        false,
        Kind::Test(Mutex::new(TestState::new(scenario))),
        mem,
        vcpus,
    ))
}
