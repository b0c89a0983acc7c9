//! The machine as the toolstack's calls describe it (sysctl, domctl,
//! xen_version): a trait, so the host tests answer with a fake machine.

use crate::xen::abi::Errno;

/// The machine facts the toolstack calls report (sysctl physinfo and
/// CPU policies, xen_version's command line, readconsole): the real
/// machine in keel, a fake in the host tests.
pub trait HostFacts: Sync {
    /// CPUs keel runs on (0..n).
    fn nr_cpus(&self) -> u32;
    fn cpu_khz(&self) -> u32;
    /// Usable RAM, pages.
    fn total_pages(&self) -> u64;
    /// RAM not given out, pages.
    fn free_pages(&self) -> u64;
    /// The highest usable machine frame.
    fn max_mfn(&self) -> u64;
    /// CPUID `leaf`/`sub` of this machine (`Cpu::Host`) or as keel shows
    /// it to an HVM guest (`Cpu::Guest`, vCPU 0 of a one-vCPU domain).
    fn cpuid(&self, cpu: Cpu, leaf: u32, sub: u32) -> [u32; 4];
    /// keel's console ring as Xen's `readconsole` reads it
    /// ([`crate::conring::Ring::read_from`]).
    fn console_read_from(&self, incremental: bool, index: u32, out: &mut [u8]) -> (usize, u32);
    /// [`crate::conring::Ring::clear_to`].
    fn console_clear_to(&self, index: u32);
    /// keel's own command line, as the boot loader gave it.
    fn commandline(&self) -> alloc::string::String;
}

/// Whose CPUID a policy describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cpu {
    Host,
    Guest,
}

static HOST: spin::Once<&'static dyn HostFacts> = spin::Once::new();

/// Sets the machine's facts (at boot).
pub fn set_host(h: &'static dyn HostFacts) {
    HOST.call_once(|| h);
}

/// The machine's facts (-ENOSYS before [`set_host`]).
pub fn get() -> Result<&'static dyn HostFacts, Errno> {
    HOST.get().copied().ok_or(Errno::ENOSYS)
}

/// keel's machine: the CPUs it brought up, its frame allocator, the
/// firmware's memory map and the host's CPUID.
#[cfg(target_os = "none")]
pub struct Machine;

#[cfg(target_os = "none")]
impl HostFacts for Machine {
    fn nr_cpus(&self) -> u32 {
        crate::arch::x86::smp::online_count()
    }
    fn cpu_khz(&self) -> u32 {
        crate::arch::x86::time::tsc_khz() as u32
    }
    fn total_pages(&self) -> u64 {
        crate::bootinfo::get().map_or(0, |b| b.usable_bytes()) / 4096
    }
    fn free_pages(&self) -> u64 {
        crate::mm::phys::frames().free_bytes() / 4096
    }
    fn max_mfn(&self) -> u64 {
        (crate::bootinfo::get().map_or(0, |b| b.top_of_ram()) / 4096).saturating_sub(1)
    }
    fn cpuid(&self, cpu: Cpu, leaf: u32, sub: u32) -> [u32; 4] {
        let native = |l: u32, s: u32| {
            let r = core::arch::x86_64::__cpuid_count(l, s);
            [r.eax, r.ebx, r.ecx, r.edx]
        };
        match cpu {
            Cpu::Host => native(leaf, sub),
            Cpu::Guest => crate::hvm::cpuid::guest_cpuid(
                leaf,
                sub,
                &crate::hvm::cpuid::Ctx {
                    xsavec: crate::arch::x86::fpu::xsavec_works(),
                    ..crate::hvm::cpuid::Ctx::new(0, 0)
                },
                native,
            ),
        }
    }
    fn console_read_from(&self, incremental: bool, index: u32, out: &mut [u8]) -> (usize, u32) {
        crate::console::ring_read_from(incremental, index, out)
    }
    fn console_clear_to(&self, index: u32) {
        crate::console::ring_clear_to(index)
    }
    fn commandline(&self) -> alloc::string::String {
        alloc::string::String::from(crate::bootinfo::get().map_or("", |b| b.cmdline()))
    }
}
