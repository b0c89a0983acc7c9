//! keel's main line: from normalized boot information to every CPU online.
//!
//! Order: console and exception handling first (so anything after can be
//! diagnosed), then the command line, memory map and frame allocator,
//! keel's own page tables (W^X, a direct map of all physical memory), the
//! heap, ACPI, the local APIC and TSC, and the application processors.

use crate::arch::x86::{acpi, apic, cpu, gdt, power, smp, time, trap};
use crate::bootinfo::{self, BootInfo, BootProblem, RegionKind};
use crate::cmdline::{self, Fault};
use crate::fatal::fatal_message;
use crate::mm::frame::FrameAllocator;
use crate::mm::paging::{walk, MapError, Mapper, PageSize, Pte, TableMemory};
use crate::mm::{align_up, PAGE_SIZE};
use crate::{boot, console};
use linked_list_allocator::LockedHeap;
use spin::Once;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

static KERNEL_CR3: Once<u64> = Once::new();
static TRAMPOLINE_PHYS: Once<u64> = Once::new();
static NX: Once<bool> = Once::new();

const BSP_STACK_PAGES: u64 = 32;
const AP_STACK_PAGES: u64 = 16;
/// Candidate bases for keel's direct map (PML4 slots 273 and 401); the
/// first one the image does not occupy is used.
const DIRECTMAP_BASES: [u64; 2] = [0xffff_8880_0000_0000, 0xffff_c880_0000_0000];

pub fn start(bi: BootInfo) -> ! {
    cpu::set_phys_offset(bi.phys_offset);
    console::init();
    gdt::init_bsp();
    trap::init_idt();
    trap::load_idt();
    apic::disable_legacy_pic();

    let bi: &'static BootInfo = bootinfo::set(bi);
    // First pass only for loglvl/console, so the second pass's reports obey them.
    let quiet = cmdline::parse(bi.cmdline(), |_| {});
    console::set_enabled(quiet.console != cmdline::Console::None);
    console::init_logger(quiet.loglvl);
    log::info!(
        "keel {} (Xen-ABI hypervisor) starting",
        env!("CARGO_PKG_VERSION")
    );
    log::info!("loader: {}", bi.loader.name());
    log::info!("command line: {}", bi.cmdline());
    cmdline::set(cmdline::parse(bi.cmdline(), |p| {
        log::error!("cmdline: {p}")
    }));
    for p in bi.problems.iter().flatten() {
        match p {
            BootProblem::ModuleArchive(e) => log::error!("boot modules: archive rejected: {e}"),
            BootProblem::Mb2Malformed(why) => log::error!("multiboot2 information: {why}"),
            BootProblem::TooManyRegions => log::warn!("memory map: too many regions, some dropped"),
            BootProblem::TooManyModules => log::warn!("boot modules: too many, some dropped"),
            BootProblem::CmdlineTooLong => log::warn!("command line too long, cut"),
            BootProblem::ModuleNotContiguous => {
                log::error!("boot modules: one is not physically contiguous; dropped")
            }
        }
    }

    log::info!("memory map:");
    for r in bi.regions() {
        log::info!(" {:#014x} - {:#014x} {}", r.start, r.end, r.kind.name());
    }
    let mut frames = crate::mm::phys::frames();
    for r in bi.regions().iter().filter(|r| r.kind == RegionKind::Usable) {
        frames.add_free(r.start, r.end.min(bi.phys_mapped_limit));
    }
    frames.reserve(0, PAGE_SIZE); // real-mode IVT / BIOS data
    for &(s, e) in bi.reserved() {
        frames.reserve(s, e);
    }
    log::info!(
        "memory: {} MiB usable, {} MiB free for keel after reservations",
        bi.usable_bytes() >> 20,
        frames.free_bytes() >> 20
    );
    if frames.free_bytes() < 16 << 20 {
        drop(frames);
        fatal_message(format_args!("less than 16 MiB of usable memory"));
    }

    let f = cpu::features();
    log::info!(
        "CPU: {:?}, NX {}, 1G pages {}, x2APIC {}, VMX {}, SVM {}",
        f.vendor,
        f.nx,
        f.gib_pages,
        f.x2apic,
        f.vmx,
        f.svm
    );
    crate::hvm::perfc::set_enabled(crate::cmdline::get().perfc);
    if !crate::cmdline::get().perfc {
        log::info!("perfc=0: VM exits are not counted by reason");
    }
    if crate::cmdline::get().cpuid_dump {
        crate::hvm::cpuid::dump_host();
    }
    NX.call_once(|| f.nx);

    let (cr3, directmap, stack_top) = match build_page_tables(bi, &mut frames, f.nx, f.gib_pages) {
        Ok(x) => x,
        Err(e) => {
            drop(frames);
            fatal_message(format_args!("building keel's page tables: {e:?}"));
        }
    };
    drop(frames);
    KERNEL_CR3.call_once(|| cr3);
    log::debug!("switching to keel's page tables (CR3 {cr3:#x}, direct map at {directmap:#x})");
    DIRECTMAP.call_once(|| directmap);
    // Keep NXE and WP on: W^X relies on both.
    if f.nx {
        cpu::wrmsr(cpu::MSR_EFER, cpu::rdmsr(cpu::MSR_EFER) | cpu::EFER_NXE);
    }
    // SAFETY: the new tables map the image (same virtual addresses), the
    // new stack and all physical memory; `on_keel_tables` never returns.
    unsafe {
        core::arch::asm!(
            "mov cr0, {cr0}",
            "mov cr3, {cr3}",
            "mov rsp, {sp}",
            "xor ebp, ebp",
            "call {f}",
            "ud2",
            cr0 = in(reg) cpu::read_cr0() | (1 << 16),
            cr3 = in(reg) cr3,
            sp = in(reg) stack_top,
            f = sym on_keel_tables,
            options(noreturn)
        )
    }
}

static DIRECTMAP: Once<u64> = Once::new();

/// Page-table memory for keel's own tables: frames from the allocator,
/// reached through `offset` (the loader's mapping, then keel's).
struct KernelTables<'a> {
    frames: &'a mut FrameAllocator,
    offset: u64,
    limit: u64,
}

impl TableMemory for KernelTables<'_> {
    fn alloc_table(&mut self) -> Option<u64> {
        let f = self.frames.alloc_in(1, PAGE_SIZE, 0x10_0000, self.limit)?;
        self.table(f).fill(0);
        Some(f)
    }
    fn table(&mut self, phys: u64) -> &mut [u64; 512] {
        // SAFETY: `phys` is a page-table frame keel allocated (or one the
        // loader's tables name), reachable through `offset`.
        unsafe { &mut *((self.offset + phys) as *mut [u64; 512]) }
    }
}

fn build_page_tables(
    bi: &BootInfo,
    frames: &mut FrameAllocator,
    nx: bool,
    gib: bool,
) -> Result<(u64, u64, u64), MapError> {
    let [img_start, text_start, text_end, data_start, img_end] = boot::image_layout();
    let image_slot = (img_start >> 39) & 0x1ff;
    let directmap = *DIRECTMAP_BASES
        .iter()
        .find(|b| (*b >> 39) & 0x1ff != image_slot)
        .unwrap();
    let old_cr3 = cpu::read_cr3();
    let offset = bi.phys_offset;
    let limit = bi.phys_mapped_limit;
    // Frames for the boot stack and the AP trampoline, before the tables.
    let stack = frames.alloc(BSP_STACK_PAGES).ok_or(MapError::OutOfMemory)?;
    let tramp = frames.alloc_in(1, PAGE_SIZE, 0x1000, 0x10_0000);
    let mut mem = KernelTables {
        frames,
        offset,
        limit,
    };
    let mut m = Mapper::new(&mut mem, nx)?;
    let rw = Pte::WRITABLE | Pte::NO_EXECUTE;
    // 1. All physical memory (at least 4 GiB, to cover MMIO), read/write, no execute.
    let top = align_up(bi.top_of_ram().max(4 << 30), 1 << 30);
    m.map_range(directmap, 0, top, rw, gib)?;
    // 2. The image at its current virtual addresses, W^X by section.
    let mut va = img_start;
    while va < img_end {
        let mut lm = crate::boot::bootloader::LoaderMap(offset);
        let pa = walk(&mut lm, old_cr3, va).ok_or(MapError::OutOfMemory)?;
        let flags = if (text_start..text_end).contains(&va) {
            Pte::empty() // read + execute
        } else if va >= data_start {
            rw
        } else {
            Pte::NO_EXECUTE // read-only data
        };
        m.map(va, pa, PageSize::Size4K, flags)?;
        va += PAGE_SIZE;
    }
    // 3. The AP trampoline, identity-mapped read + execute while CPUs start.
    if let Some(t) = tramp {
        m.map(t, t, PageSize::Size4K, Pte::empty())?;
        TRAMPOLINE_PHYS.call_once(|| t);
    }
    let root = m.root();
    Ok((
        root,
        directmap,
        directmap + stack + BSP_STACK_PAGES * PAGE_SIZE,
    ))
}

extern "C" fn on_keel_tables() -> ! {
    cpu::set_phys_offset(*DIRECTMAP.get().unwrap());
    let opts = cmdline::get();
    let bi = bootinfo::get().expect("boot information kept at boot");
    log::info!(
        "paging: keel's page tables live (W^X, direct map at {:#x})",
        cpu::phys_offset()
    );

    // Heap: 1/16 of free memory, between 4 and 64 MiB.
    {
        let mut frames = crate::mm::phys::frames();
        let size = (frames.free_bytes() / 16).clamp(4 << 20, 64 << 20) & !(PAGE_SIZE - 1);
        let Some(base) = frames.alloc(size / PAGE_SIZE) else {
            drop(frames);
            fatal_message(format_args!("no memory for the heap"));
        };
        // SAFETY: the range was just taken from the allocator, is mapped
        // read/write through the direct map and is used only by the heap.
        unsafe {
            HEAP.lock()
                .init(cpu::phys_to_virt(base) as *mut u8, size as usize)
        };
        log::debug!("heap: {} MiB at {base:#x}", size >> 20);
    }

    match opts.test_fault {
        Some(Fault::PageFault) => {
            log::info!("test: faulting on purpose (page fault)");
            // SAFETY: not safe at all, on purpose: this address is unmapped
            // and the read must raise #PF (test-only option).
            unsafe { core::ptr::read_volatile(0xdead_0000 as *const u64) };
        }
        Some(Fault::InvalidOpcode) => {
            log::info!("test: faulting on purpose (invalid opcode)");
            // SAFETY: ud2 raises #UD, on purpose (test-only option).
            unsafe { core::arch::asm!("ud2") };
        }
        Some(Fault::Panic) => panic!("test: panicking on purpose"),
        None => {}
    }

    // ACPI
    let platform = match bi.rsdp.map(acpi::parse) {
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            log::error!("ACPI: tables unusable: {e:?}");
            None
        }
        None => {
            log::error!("ACPI: no RSDP from the loader");
            None
        }
    };
    if let Some(p) = &platform {
        log::info!(
            "ACPI: revision {}, OEM '{}', RSDP at {:#x}",
            p.revision,
            core::str::from_utf8(&p.oem_id).unwrap_or("?").trim(),
            bi.rsdp.unwrap_or(0)
        );
        log::info!(
            "ACPI: MADT: {} CPUs, {} IO-APICs, local APIC at {:#x}",
            p.cpus.len(),
            p.io_apics.len(),
            p.lapic_phys
        );
        for (id, addr, gsi) in &p.io_apics {
            log::info!("ACPI:  IO-APIC {id} at {addr:#x}, GSI base {gsi}");
        }
        match p.hpet {
            Some(h) => log::info!("ACPI: HPET at {h:#x}"),
            None => log::info!("ACPI: no HPET"),
        }
        for (seg, b0, b1, base) in &p.mcfg {
            log::info!("ACPI: MCFG: segment {seg} buses {b0}-{b1} at {base:#x}");
        }
        if p.mcfg.is_empty() {
            log::info!("ACPI: no MCFG (no PCI Express config space)");
        }
        log::info!(
            "ACPI: FADT: PM1a_CNT {:#x}, S5 {:?}, reset register {}",
            p.pm1.a_cnt,
            p.pm1.slp_typ,
            if p.pm1.reset.is_some() { "yes" } else { "no" }
        );
        power::set_acpi(p.pm1);
    }

    // Local APIC and time.
    let f = cpu::features();
    let lapic = platform.as_ref().map_or(0xfee0_0000, |p| p.lapic_phys);
    apic::init(true, f.x2apic, lapic);
    let (khz, src) = time::calibrate(platform.as_ref().and_then(|p| p.hpet));
    log::info!(
        "time: TSC {}.{:03} MHz (calibrated against {:?}), local APIC in {} mode",
        khz / 1000,
        khz % 1000,
        src,
        if apic::is_x2apic() { "x2APIC" } else { "xAPIC" }
    );
    apic::calibrate_timer(khz);
    let bsp_apic = apic::id();
    gdt::mark_online(bsp_apic);
    log::info!("CPU0 online (APIC id {bsp_apic}, boot CPU)");

    // Application processors.
    let cpus = platform
        .as_ref()
        .map(|p| p.cpus.clone())
        .unwrap_or_default();
    let present = cpus.len().max(1) as u32;
    let wanted = opts.max_cpus.map_or(present, |m| m.min(present));
    bring_up_aps(&cpus, bsp_apic, wanted);
    let online = smp::online_count();
    log::info!("SMP: {online}/{wanted} CPUs online ({present} present)");

    log::info!("HVM: {}", crate::arch::x86::hvm::describe());
    log::info!("boot modules: {}", bi.modules().len());
    for m in bi.modules() {
        log::info!(" '{}' at {:#x}, {} bytes", m.name(), m.phys, m.len);
    }

    launch(bi, online, wanted)
}

/// Starts what keel runs (dom0, or a self-test), then turns every CPU
/// into a scheduler loop: no CPU is held by one domain.
fn launch(bi: &'static BootInfo, online: u32, wanted: u32) -> ! {
    if let Err(e) = crate::sched::mech::init(online as usize) {
        fatal_message(format_args!("scheduler: {e:?}"));
    }
    crate::domain::table::set_end_hook(on_domain_end);
    crate::hypercall::host::set_host(&crate::hypercall::host::Machine);
    crate::domain::create::set_backend(&crate::domain::create::Machine);
    let opts = cmdline::get();
    match opts.test {
        Some(t) => crate::selftest::start(t, bi, online, wanted),
        None if bi.module("dom0").is_some() => {
            if let Err(e) = crate::domain::build::dom0::boot(bi) {
                log::error!("dom0: {e}");
                power::power_off();
            }
        }
        None => {
            log::error!("no dom0 kernel: no boot module named 'dom0'; nothing to run");
            power::power_off()
        }
    }
    for i in 1..online {
        run_on_cpu(i, alloc::boxed::Box::new(|| crate::sched::run::cpu_loop()));
    }
    crate::sched::run::cpu_loop()
}

/// A domain is finished: dom0's end is the machine's (power off or reset,
/// as dom0 asked), and the self-tests judge theirs.
fn on_domain_end(d: &alloc::sync::Arc<crate::domain::Domain>, o: &crate::domain::Outcome) {
    use crate::domain::{Outcome, ShutdownReason};
    if crate::selftest::domain_ended(d, o) {
        return;
    }
    if d.id == 0 {
        match o {
            Outcome::Shutdown(ShutdownReason::Reboot) => power::reboot(),
            Outcome::Shutdown(_) => power::power_off(),
            o => {
                log::error!("dom0 ended: {o:?}");
                power::power_off()
            }
        }
    }
}

fn bring_up_aps(cpus: &[acpi::Cpu], bsp_apic: u32, wanted: u32) {
    let Some(&tramp_phys) = TRAMPOLINE_PHYS.get() else {
        log::error!("SMP: no free page below 1 MiB for the AP trampoline; staying on one CPU");
        return;
    };
    let tramp = smp::Trampoline::install(tramp_phys, *KERNEL_CR3.get().unwrap());
    let mut index = 1;
    for c in cpus.iter().filter(|c| c.apic_id != bsp_apic) {
        if index >= wanted {
            break;
        }
        let Some(stack) = crate::mm::phys::frames().alloc(AP_STACK_PAGES) else {
            log::error!("SMP: out of memory for CPU stacks");
            break;
        };
        let top = cpu::phys_to_virt(stack) + AP_STACK_PAGES * PAGE_SIZE;
        if tramp.start_cpu(c.apic_id, index, top) {
            index += 1;
        } else {
            log::error!("SMP: CPU with APIC id {} did not come online", c.apic_id);
        }
    }
    // Done starting CPUs: the trampoline's identity mapping goes away.
    let mut frames = crate::mm::phys::frames();
    let mut mem = KernelTables {
        frames: &mut frames,
        offset: cpu::phys_offset(),
        limit: u64::MAX,
    };
    let mut m = Mapper::from_root(*KERNEL_CR3.get().unwrap(), &mut mem, *NX.get().unwrap());
    m.unmap_4k(tramp_phys);
    // The page is free again: low memory is dom0's (1:1, for DMA).
    mem.frames.free(tramp_phys, 1);
    // Flush: this CPU by reloading CR3; the APs never used the mapping
    // after jumping to the kernel, and each flushed it on its CR3 load.
    // SAFETY: reloading the current CR3 only flushes non-global entries.
    unsafe { core::arch::asm!("mov cr3, {0}", in(reg) cpu::read_cr3()) };
}

/// Where an application processor lands, on keel's tables and its own stack.
pub fn ap_main(index: u32) -> ! {
    gdt::init_ap(index);
    trap::load_idt();
    apic::init(false, false, 0);
    let id = apic::id();
    gdt::mark_online(id);
    log::info!("CPU{index} online (APIC id {id})");
    smp::note_online();
    loop {
        x86_64::instructions::interrupts::disable();
        if let Some(job) = crate::arch::x86::percpu::this().job.lock().take() {
            job();
            continue;
        }
        // sti;hlt: a wake-up IPI arriving after the check still ends the hlt.
        x86_64::instructions::interrupts::enable_and_hlt();
    }
}

use crate::arch::x86::percpu::Job;

/// Runs `job` on application processor `index` (which must be online and
/// idle). Returns false if there is no such CPU.
pub fn run_on_cpu(index: u32, job: Job) -> bool {
    let Some(apic_id) = smp::apic_id_of(index).filter(|_| index != 0) else {
        return false;
    };
    let Some(cpu) = crate::arch::x86::percpu::get(index as usize) else {
        return false;
    };
    *cpu.job.lock() = Some(job);
    apic::send_fixed(apic_id, trap::VECTOR_WAKE);
    true
}

/// A key typed while serial input goes to keel (three Ctrl-A switch),
/// like Xen's debug keys.
pub fn debug_key(c: u8) {
    match c {
        b'h' => log::info!(
            "keel keys: 'h' this help, 'l' list domains, 'm' memory, 'r' scheduler state, 'R' reboot the machine; CTRL-a three times returns input to dom0"
        ),
        b'r' => crate::sched::run::dump(),
        b'l' => {
            for d in crate::domain::table::all() {
                let run_ns: u64 = d
                    .vcpus
                    .iter()
                    .map(|v| v.stats.run_ns.load(core::sync::atomic::Ordering::Relaxed))
                    .sum();
                log::info!(
                    "d{} {:<16} vcpus {} mem {} MiB {:?} cpu {}.{:03} s",
                    d.id,
                    d.name,
                    d.vcpus.len(),
                    d.mem.ram_pages >> 8,
                    d.state(),
                    run_ns / 1_000_000_000,
                    run_ns / 1_000_000 % 1000
                );
            }
        }
        b'm' => {
            let free = crate::mm::phys::frames().free_bytes();
            let total = bootinfo::get().map_or(0, |b| b.usable_bytes());
            log::info!("memory: {} MiB total, {} MiB free", total >> 20, free >> 20);
        }
        b'R' => power::reboot(),
        b'\r' | b'\n' => {}
        c => log::info!("key {c:#04x} does nothing: 'h' for help"),
    }
}
