//! Building and running a PVH domain that speaks the Xen ABI (Linux's own
//! Xen support): its memory and p2m, the kernel and initrd, hvm_start_info,
//! ACPI tables, and the exits its vCPUs cause: CPUID, MSRs (the local APIC,
//! the hypercall page), port I/O (ACPI soft-off) and hypercalls
//! ([`hypercall`]).
//!
//! vCPUs: vCPU 0 starts at the kernel's PVH entry; the others wait, as real
//! CPUs do, for INIT and a start-up IPI through their local APIC and then
//! start in real mode at the SIPI vector. Each vCPU runs on its own
//! physical CPU (vCPU `n` on CPU `n`, pinned); the domain's shared state
//! sits behind one lock that a vCPU takes only between its VM exit and its
//! next entry. A vCPU that makes an interrupt or event due on another one
//! kicks that CPU with an IPI, so the target leaves guest mode (or its
//! halt) and delivers it. Each CPU arms its local APIC timer for its vCPU's
//! next timer, so a guest in a long loop still gets its timer interrupt,
//! and a halted vCPU's CPU really halts until then.
//!
//! dom0 (`Config::identity`) owns the machine: RAM 1:1 with host memory,
//! the host's ACPI tables, I/O ports, MMIO and device interrupts
//! (docs/dom0.md). Not yet: vCPUs sharing a physical CPU (the credit
//! scheduler in `sched` is host-tested but not wired in).
//! Hypercalls and sub-ops keel does not implement return -ENOSYS and are
//! counted.

mod hypercall;

use super::cpuid;
use super::decode;
use super::guestmem::{self, HostTables, P2mReader};
use super::vcpu::{io_in_result, Event, Exit, StartMode, Vcpu};
use super::vlapic::{self, Ipi, Vlapic};
use crate::arch::x86::time;
use crate::arch::x86::{apic, cpu, hvm, smp, trap};
use crate::domain::acpi;
use crate::domain::live::{self, LiveDomain};
use crate::loader::pvh::{MemType, PvhImage, StartInfoBuilder, SIF_INITDOMAIN, SIF_PRIVILEGED};
use crate::mm::p2m::{P2m, Perm};
use crate::mm::paging::PageSize;
use crate::mm::phys::frames;
use crate::xen::abi::{self, Errno, SharedInfo, VcpuInfo, VcpuTimeInfo};
use crate::xen::evtchn::{Channels, Pending, VcpuInfoRef};
use crate::xen::grant::GrantTable;
use crate::xen::time::{publish, TimeScale};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use spin::Mutex;

/// Guest-physical [0, 1 MiB): RAM, boot structures and ACPI tables.
const LOW_BYTES: u64 = 0x10_0000;
/// The end of low RAM in a PVH guest's map (the EBDA and BIOS area above).
const LOW_RAM_END: u64 = 0x9_f000;
/// Where keel puts the boot structures in a PVH guest's memory.
const START_INFO_BASE: u64 = 0x1000;
const START_INFO_LEN: u64 = 0x7000;
const ACPI_BASE: u64 = 0xf_0000;
/// A safety net: a vCPU that exits this often is stopped.
const MAX_EXITS: u64 = 400_000_000;
/// IA32_PAT's power-on value.
const PAT_RESET: u64 = 0x0007_0406_0007_0406;
/// The most vCPUs a PVH domain gets (legacy vcpu_info slots in shared_info).
pub const MAX_VCPUS: u32 = abi::XEN_LEGACY_MAX_VCPUS as u32;

pub struct Config<'a> {
    pub domid: u16,
    pub kernel: &'a [u8],
    pub initrd: Option<&'a [u8]>,
    pub cmdline: &'a str,
    pub mem_bytes: u64,
    /// The initial domain (dom0): privileged, console through console_io.
    pub initial: bool,
    /// vCPUs (1..=MAX_VCPUS, at most one per online physical CPU).
    pub vcpus: u32,
    /// dom0's layout: RAM at [`IDENTITY_BASE`], `IDENTITY_BASE + mem_bytes`)
    /// is the host RAM at the same addresses (so device DMA needs no
    /// IOMMU); the caller must have left that range free. Otherwise RAM is
    /// anywhere in host memory, seen from guest-physical 0.
    pub identity: bool,
}

/// Where dom0's 1:1 RAM starts: Debian's kernel is linked (and, without a
/// relocatable PVH entry, must run) at 16 MiB.
pub const IDENTITY_BASE: u64 = 16 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// SCHEDOP_shutdown (or ACPI soft-off) with this reason.
    Shutdown(u32),
    /// keel stopped the domain, for this reason.
    Stopped(String),
}

/// Where a vCPU is in its start-up, as a real CPU's INIT/SIPI protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Power {
    /// Waiting for INIT.
    Down,
    /// INIT received: waiting for a start-up IPI.
    Init,
    /// A start-up IPI arrived with this vector; its CPU starts it.
    Start(u8),
    Up,
}

/// What the vCPU loop does after an exit.
#[derive(Debug)]
enum Step {
    Go,
    /// HLT or SCHEDOP_block: sleep until an interrupt or event is due.
    Halt,
    /// HLT with interrupts off: nothing but INIT or NMI could wake it.
    Park,
    End(Outcome),
}

/// One vCPU's state that the domain's other vCPUs touch too (IPIs, event
/// channels): it lives in the domain, under its lock.
struct VcpuState {
    lapic: Vlapic,
    power: Power,
    /// Guest-physical address of its registered vcpu_info, if any
    /// (VCPUOP_register_vcpu_info); else its slot in shared_info is used.
    vcpu_info_gpa: Option<u64>,
    /// Guest-physical address of an extra vcpu_time_info copy
    /// (VCPUOP_register_vcpu_time_memory_area, for the vDSO).
    time_area_gpa: Option<u64>,
    /// IA32_TSC_AUX (what RDTSCP/RDPID report: Linux stores the CPU number).
    tsc_aux: u64,
    /// IA32_PAT as the guest wrote it (VT-x exits on it; AMD-V keeps it in
    /// the VMCB). Memory types are keel's (EPT/NPT), so it is only stored.
    pat: u64,
    /// HVMOP_set_evtchn_upcall_vector: upcalls go through the local APIC
    /// and the guest EOIs them.
    lapic_upcall: Option<u8>,
    /// A direct (HVM_PARAM_CALLBACK_IRQ, never acknowledged) upcall is due.
    callback_pending: bool,
    /// Xen's single-shot vCPU timer (VCPUOP_set_singleshot_timer,
    /// set_timer_op): system time in ns at which VIRQ_TIMER fires.
    xen_timer_ns: Option<u64>,
    /// SCHEDOP_poll in progress: the ports it waits on (it also wakes on
    /// its timers, its timeout, or any upcall).
    poll: Vec<u32>,
    /// SCHEDOP_poll's timeout (system time, ns).
    poll_timeout_ns: Option<u64>,
    /// Halted with nothing armed that could wake it.
    parked: bool,
    /// Local APIC ID of the physical CPU it runs on (for kicks).
    host_apic: u32,
    /// The p2m generation its TLB has seen (flushed before entry if older).
    p2m_seen: u64,
    /// Level-triggered device vectors (dom0) whose physical EOI waits for
    /// the guest's EOI.
    phys_vectors: [u64; 4],
    exits: u64,
}

struct Domain {
    id: u16,
    initial: bool,
    /// dom0's 1:1 layout: host devices, ports and MMIO are its own.
    identity: bool,
    /// It has keel's own ACPI tables (not the host's), so keel's sleep
    /// control port means soft-off; with the host's, that port may be a
    /// real register and is the hardware's.
    own_acpi: bool,
    p2m: P2m,
    /// Host frames behind its RAM: (host address, pages), keel's to free.
    ram: Vec<(u64, u64)>,
    /// Pages of RAM it has.
    ram_pages: u64,
    /// Guest frame numbers below this may be RAM (the top of its RAM).
    gfn_limit: u64,
    shared_info: u64,
    e820: Vec<(u64, u64, MemType)>,
    line: String,
    params: [u64; 64],
    /// HVM_PARAM_CALLBACK_IRQ of type "vector": injected directly.
    callback_vector: u8,
    unimplemented: u64,
    hypercalls: u64,
    /// The TSC when the domain started: its system time counts from here.
    tsc_start: u64,
    scale: TimeScale,
    /// Event channels (2-level).
    chans: Channels,
    /// Grant table v1 (as a granter) and the host frames behind its
    /// frames, allocated when the guest first maps them.
    grant: GrantTable,
    grant_frames: Vec<u64>,
    vcpus: Vec<VcpuState>,
    /// Bumped when a present p2m entry changes: every vCPU must flush.
    p2m_gen: u64,
    /// The vCPU whose exit is being handled (set under the lock).
    cur: usize,
    /// Set once, when the domain ends; every vCPU then stops.
    outcome: Option<Outcome>,
    /// What `keelctl list` shows of it (read without this lock).
    live: Arc<LiveDomain>,
}

impl Drop for Domain {
    fn drop(&mut self) {
        let mut tables = Vec::new();
        self.p2m
            .free_tables(&mut HostTables, &mut |t| tables.push(t));
        let mut f = frames();
        for t in tables {
            f.free(t, 1);
        }
        for &(hpa, pages) in &self.ram {
            f.free(hpa, pages);
        }
        f.free(self.shared_info, 1);
        for &g in &self.grant_frames {
            f.free(g, 1);
        }
    }
}

fn zero(hpa: u64, len: u64) {
    // SAFETY: a range keel just allocated for this domain, direct-mapped.
    unsafe { core::ptr::write_bytes(cpu::phys_to_virt(hpa) as *mut u8, 0, len as usize) };
}

fn build(cfg: &Config) -> Result<(Domain, u32, u32), String> {
    let format = hvm::p2m_format()?;
    if cfg.vcpus == 0 || cfg.vcpus > MAX_VCPUS {
        return Err(format!("{} vCPUs: keel offers 1 to {MAX_VCPUS}", cfg.vcpus));
    }
    let mut vcpus = Vec::new();
    for i in 0..cfg.vcpus {
        let host_apic = smp::apic_id_of(i).ok_or_else(|| {
            format!(
                "{} vCPUs need as many physical CPUs (vCPUs are pinned, one per CPU) but only {} are online",
                cfg.vcpus,
                smp::online_count()
            )
        })?;
        vcpus.push(VcpuState {
            lapic: Vlapic::new(i),
            power: if i == 0 { Power::Up } else { Power::Down },
            vcpu_info_gpa: None,
            time_area_gpa: None,
            tsc_aux: 0,
            pat: PAT_RESET,
            lapic_upcall: None,
            callback_pending: false,
            xen_timer_ns: None,
            poll: Vec::new(),
            poll_timeout_ns: None,
            parked: false,
            host_apic,
            p2m_seen: 0,
            phys_vectors: [0; 4],
            exits: 0,
        });
    }
    // (guest-physical, host-physical, bytes) runs of RAM.
    let mut runs: Vec<(u64, u64, u64)> = Vec::new();
    let gpa_top;
    if cfg.identity {
        // Low memory: the boot structures and ACPI tables (read, never a
        // DMA target) are keel's frames; the RAM between them, where Linux
        // puts its AP trampoline and may put DMA buffers, is 1:1 too.
        let (lo_ram, hi_ram) = (START_INFO_BASE + START_INFO_LEN, LOW_RAM_END);
        let identity_low = frames().take(lo_ram, hi_ram);
        let keel_low: &[(u64, u64)] = if identity_low {
            &[(0, lo_ram), (hi_ram, LOW_BYTES)]
        } else {
            log::warn!(
                "d0: host RAM [{lo_ram:#x}, {hi_ram:#x}) is not free: dom0's low memory is not 1:1"
            );
            &[(0, LOW_BYTES)]
        };
        for &(g0, g1) in keel_low {
            let pages = (g1 - g0) / 4096;
            let hpa = frames()
                .alloc(pages)
                .ok_or("out of memory for dom0's low memory")?;
            runs.push((g0, hpa, g1 - g0));
        }
        if identity_low {
            runs.push((lo_ram, lo_ram, hi_ram - lo_ram));
        }
        gpa_top = IDENTITY_BASE + cfg.mem_bytes;
        if !frames().take(IDENTITY_BASE, gpa_top) {
            return Err(format!(
                "dom0's 1:1 memory [{IDENTITY_BASE:#x}, {gpa_top:#x}) is not free host RAM"
            ));
        }
        runs.push((IDENTITY_BASE, IDENTITY_BASE, cfg.mem_bytes));
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
        let ram = frames()
            .alloc_in(cfg.mem_bytes / 4096, 2 << 20, 0x10_0000, u64::MAX)
            .ok_or_else(|| format!("not enough memory for a {} MiB domain", cfg.mem_bytes >> 20))?;
        runs.push((0, ram, cfg.mem_bytes));
    }
    let shared_info = frames().alloc(1).ok_or("out of memory for shared_info")?;
    zero(shared_info, 4096);
    let p2m = P2m::new(format, &mut HostTables).map_err(|e| format!("p2m: {e:?}"))?;
    let mut d = Domain {
        id: cfg.domid,
        initial: cfg.initial,
        identity: cfg.identity,
        own_acpi: true,
        p2m,
        ram: runs.iter().map(|&(_, h, b)| (h, b / 4096)).collect(),
        ram_pages: runs.iter().map(|&(_, _, b)| b / 4096).sum(),
        gfn_limit: gpa_top / 4096,
        shared_info,
        e820: Vec::new(),
        line: String::new(),
        params: [0; 64],
        callback_vector: 0,
        unimplemented: 0,
        hypercalls: 0,
        tsc_start: cpu::rdtsc(),
        scale: TimeScale::from_hz(time::tsc_khz() * 1000),
        chans: Channels::new(cfg.domid, cfg.vcpus),
        grant: GrantTable::default(),
        grant_frames: Vec::new(),
        vcpus,
        p2m_gen: 0,
        cur: 0,
        outcome: None,
        live: Arc::new(LiveDomain::new(
            cfg.domid,
            &if cfg.domid == 0 {
                String::from("Domain-0")
            } else {
                format!("d{}", cfg.domid)
            },
            cfg.vcpus,
            cfg.mem_bytes,
            cfg.initial,
        )),
    };
    // 4 KiB pages: pages get replaced (shared_info, grant frames) by gfn.
    for &(gpa, hpa, bytes) in &runs {
        zero(hpa, bytes);
        for i in 0..bytes / 4096 {
            d.p2m
                .map(
                    &mut HostTables,
                    gpa + i * 4096,
                    hpa + i * 4096,
                    PageSize::Size4K,
                    Perm::RWX,
                )
                .map_err(|e| format!("p2m: {e:?}"))?;
        }
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
    img.elf.load(
        |gpa, b| assert!(guestmem::write(&d.p2m, gpa, b)),
        |_, _| {}, /* RAM is zeroed */
    );
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
        if at + initrd.len() as u64 > gpa_top {
            return Err(format!(
                "initrd ({} bytes) does not fit after the kernel",
                initrd.len()
            ));
        }
        assert!(guestmem::write(&d.p2m, at, initrd));
        sib = sib.initrd(at, initrd.len() as u64);
    }
    let (base, bytes, rsdp) = match cfg.identity.then(|| host_acpi(cfg.vcpus)).flatten() {
        Some(t) => {
            d.own_acpi = false;
            t
        }
        None => {
            let t = acpi::build(ACPI_BASE, cfg.vcpus).map_err(|e| format!("ACPI tables: {e:?}"))?;
            (t.base, t.bytes, t.rsdp_gpa)
        }
    };
    assert!(guestmem::write(&d.p2m, base, &bytes));
    let acpi_end = (base + bytes.len() as u64 + 0xfff) & !0xfff;
    d.e820 = alloc::vec![
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
        d.e820
            .push((0x10_0000, IDENTITY_BASE - 0x10_0000, MemType::Reserved));
        d.e820.push((IDENTITY_BASE, cfg.mem_bytes, MemType::Ram));
    } else {
        d.e820
            .push((0x10_0000, cfg.mem_bytes - 0x10_0000, MemType::Ram));
    }
    if cfg.identity {
        // The host's firmware ranges (ACPI tables, NVS, flash, MMCONFIG):
        // dom0 reaches them 1:1, so its map names them as the host's does.
        use crate::bootinfo::RegionKind;
        for r in crate::kernel::host_regions() {
            let t = match r.kind {
                RegionKind::Reserved => MemType::Reserved,
                RegionKind::AcpiReclaimable => MemType::Acpi,
                RegionKind::AcpiNvs => MemType::Nvs,
                _ => continue,
            };
            if r.start >= 0x10_0000 {
                d.e820.push((r.start, r.end - r.start, t));
            }
        }
    }
    d.e820.sort_by_key(|&(start, _, _)| start);
    sib = sib.rsdp(rsdp);
    for &(a, s, k) in &d.e820 {
        sib = sib.memmap(a, s, k);
    }
    let layout = sib
        .build(START_INFO_BASE, START_INFO_LEN)
        .map_err(|e| format!("start_info: {e:?}"))?;
    for (gpa, bytes) in &layout.writes {
        assert!(guestmem::write(&d.p2m, *gpa, bytes));
    }
    log::info!(
        "d{}: PVH kernel entry {:#x}, {} MiB, {} vCPU(s), initrd {} bytes, cmdline '{}'",
        cfg.domid,
        img.entry,
        cfg.mem_bytes >> 20,
        cfg.vcpus,
        cfg.initrd.map_or(0, |i| i.len()),
        cfg.cmdline
    );
    Ok((d, img.entry, layout.start_info_gpa as u32))
}

/// dom0's ACPI tables: the host's, with a new root and MADT for its vCPUs
/// (`domain::hostacpi`), placed at [`ACPI_BASE`]; `None` (keel's own tables
/// then) if the host's cannot be used.
fn host_acpi(vcpus: u32) -> Option<(u64, Vec<u8>, u64)> {
    use crate::domain::hostacpi::{rebuild_for, Cpus};
    let rsdp = crate::kernel::host_rsdp()?;
    let ids: Vec<u32> = (0..vcpus).filter_map(smp::apic_id_of).collect();
    let read = |pa: u64, buf: &mut [u8]| {
        if pa.checked_add(buf.len() as u64).is_none_or(|e| e > 1 << 40) {
            return false;
        }
        // SAFETY: firmware tables below 1 TiB, reached through the direct
        // map (as keel's own ACPI parser reads them); read only.
        unsafe {
            core::ptr::copy_nonoverlapping(
                cpu::phys_to_virt(pa) as *const u8,
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        true
    };
    match rebuild_for(&read, rsdp, Cpus::ApicIds(&ids), ACPI_BASE) {
        Ok(r) => {
            log::info!(
                "d0: the host's ACPI tables, MADT with {} of {} CPUs, {} table(s) hidden",
                r.vcpus.len(),
                r.host_cpus,
                r.tables
                    .iter()
                    .filter(|t| matches!(t.action, crate::domain::hostacpi::Action::Dropped))
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

/// Builds the domain and runs it: vCPU 0 on this CPU (which must be CPU
/// 0), vCPU `n` on CPU `n`, until it shuts down or keel has to stop it.
pub fn run(cfg: &Config) -> Outcome {
    let (d, entry, start_info) = match build(cfg) {
        Ok(x) => x,
        Err(e) => return Outcome::Stopped(e),
    };
    let id = d.id;
    if d.identity {
        crate::arch::x86::irq::enable_forwarding();
    }
    live::register(d.live.clone());
    let dom = Arc::new(Mutex::new(d));
    let others = Arc::new(AtomicU32::new(0));
    for i in 1..cfg.vcpus {
        let (dom2, others2) = (dom.clone(), others.clone());
        others.fetch_add(1, Ordering::SeqCst);
        let job = Box::new(move || {
            vcpu_main(&dom2, i as usize, None);
            others2.fetch_sub(1, Ordering::SeqCst);
        });
        if !crate::kernel::run_on_cpu(i, job) {
            others.fetch_sub(1, Ordering::SeqCst);
            dom.lock()
                .end(Outcome::Stopped(format!("CPU{i} cannot take vCPU{i}")));
        }
    }
    vcpu_main(
        &dom,
        0,
        Some(StartMode::Pvh32 {
            entry,
            ebx: start_info,
        }),
    );
    while others.load(Ordering::SeqCst) != 0 {
        cpu::pause();
    }
    let mut d = dom.lock();
    if !d.line.is_empty() {
        d.console(b'\n');
    }
    let outcome = d
        .outcome
        .clone()
        .unwrap_or(Outcome::Stopped(String::from("?")));
    let exits: u64 = d.vcpus.iter().map(|v| v.exits).sum();
    live::unregister(id);
    log::info!(
        "d{}: {:?} after {exits} exits on {} vCPU(s), {} hypercalls ({} unimplemented)",
        d.id,
        outcome,
        d.vcpus.len(),
        d.hypercalls,
        d.unimplemented,
    );
    outcome
}

/// One vCPU's life on this physical CPU: create it here, wait for its
/// start-up IPI (all but vCPU 0), then run it until the domain ends.
fn vcpu_main(dom: &Mutex<Domain>, idx: usize, boot: Option<StartMode>) {
    let (domid, root, live) = {
        let d = dom.lock();
        (d.id, d.p2m.root, d.live.clone())
    };
    // VPIDs (VT-x): distinct per vCPU; 0 is the host's.
    let vpid = 1 + domid * MAX_VCPUS as u16 + idx as u16;
    let mut v = match hvm::new_vcpu(vpid) {
        Ok(v) => v,
        Err(e) => {
            dom.lock()
                .end(Outcome::Stopped(format!("vCPU{idx}: cannot create: {e}")));
            return;
        }
    };
    v.set_p2m_root(root);
    let (identity, own_acpi) = {
        let d = dom.lock();
        (d.identity, d.own_acpi)
    };
    if identity {
        // dom0 drives the machine's devices: their ports go straight to
        // the hardware, but for the ones keel keeps or watches.
        for port in 0..=u16::MAX {
            v.set_io_intercept(port, keel_port(port, own_acpi));
        }
    }
    let mode = match boot {
        Some(m) => m,
        None => match wait_for_sipi(dom, idx) {
            Some(vector) => {
                log::info!(
                    "d{domid}v{idx}: started by SIPI at {:#x}",
                    (vector as u32) << 12
                );
                StartMode::RealModeSipi { vector }
            }
            None => return,
        },
    };
    v.reset(mode);
    live.set_halted(idx, false);
    let khz = time::tsc_khz();
    let mut armed = None;
    loop {
        {
            let mut d = dom.lock();
            if d.outcome.is_some() {
                break;
            }
            d.cur = idx;
            if d.vcpus[idx].p2m_seen != d.p2m_gen {
                d.vcpus[idx].p2m_seen = d.p2m_gen;
                v.flush_p2m();
            }
            d.poll_console(idx);
            d.take_device_irqs(idx);
            d.deliver_interrupts(&mut *v);
            let next = d.next_wakeup(idx).map(|ns| d.tsc_at(ns));
            let next = d.console_poll_deadline(idx, next);
            if next != armed {
                match next {
                    Some(t) => apic::arm_timer(t, khz),
                    None => apic::disarm_timer(),
                }
                armed = next;
            }
        }
        let t0 = cpu::rdtsc();
        let e = v.run();
        live.add_guest_tsc(cpu::rdtsc().wrapping_sub(t0));
        let mut d = dom.lock();
        d.cur = idx;
        d.vcpus[idx].exits += 1;
        let step = if d.vcpus[idx].exits > MAX_EXITS {
            Step::End(Outcome::Stopped(format!(
                "vCPU{idx} exceeded {MAX_EXITS} exits"
            )))
        } else {
            d.handle(&mut *v, e)
        };
        match step {
            Step::Go => {}
            Step::Halt | Step::Park => {
                let park = matches!(step, Step::Park);
                drop(d);
                live.set_halted(idx, true);
                idle(dom, idx, park);
                live.set_halted(idx, false);
                armed = None;
            }
            Step::End(o) => {
                let [cr0, cr3, cr4, efer] = v.control_regs();
                log::info!(
                    "d{domid}v{idx}: ends the domain at RIP {:#x} CR0 {cr0:#x} CR3 {cr3:#x} CR4 {cr4:#x} EFER {efer:#x}",
                    v.regs().rip
                );
                d.end(o);
                break;
            }
        }
    }
    apic::disarm_timer();
}

/// A vCPU that is not vCPU 0 waits, halted, for INIT and a start-up IPI.
fn wait_for_sipi(dom: &Mutex<Domain>, idx: usize) -> Option<u8> {
    loop {
        x86_64::instructions::interrupts::disable();
        {
            let mut d = dom.lock();
            if d.outcome.is_some() {
                return None;
            }
            if let Power::Start(vector) = d.vcpus[idx].power {
                d.vcpus[idx].power = Power::Up;
                return Some(vector);
            }
        }
        apic::disarm_timer();
        // sti;hlt: a kick that arrives after the check still ends the hlt.
        x86_64::instructions::interrupts::enable_and_hlt();
    }
}

/// A halted vCPU: its CPU halts until the vCPU's next timer or a kick,
/// and returns once an interrupt or event is due for it. `park`: halted
/// with interrupts off, so only the end of the domain ends this.
fn idle(dom: &Mutex<Domain>, idx: usize, park: bool) {
    let khz = time::tsc_khz();
    loop {
        x86_64::instructions::interrupts::disable();
        let deadline = {
            let mut d = dom.lock();
            if d.outcome.is_some() {
                return;
            }
            d.cur = idx;
            d.poll_console(idx);
            d.take_device_irqs(idx);
            d.tick(idx);
            let polled = !d.vcpus[idx].poll.is_empty() && d.poll_done(idx);
            let s = &d.vcpus[idx];
            if !park && (s.lapic.pending().is_some() || s.callback_pending || polled) {
                d.vcpus[idx].parked = false;
                d.vcpus[idx].poll.clear();
                d.vcpus[idx].poll_timeout_ns = None;
                return;
            }
            let next = if park { None } else { d.next_wakeup(idx) };
            d.vcpus[idx].parked = next.is_none();
            if d.vcpus.iter().all(|v| v.parked || v.power != Power::Up) {
                d.end(Outcome::Stopped(String::from(
                    "every vCPU is halted with nothing armed that could wake it",
                )));
                return;
            }
            let next = next.map(|ns| d.tsc_at(ns));
            d.console_poll_deadline(idx, next)
        };
        match deadline {
            Some(t) => apic::arm_timer(t, khz),
            None => apic::disarm_timer(),
        }
        x86_64::instructions::interrupts::enable_and_hlt();
    }
}

/// A port write that resets a PC: the reset control register (0xcf9)
/// with its reset bit (2), or command 0xfe (pulse reset) to the 8042.
fn is_reset(port: u16, val: u8) -> bool {
    (port == acpi::RESET_PORT && val & 0x04 != 0) || (port == 0x64 && val == 0xfe)
}

/// Ports keel keeps or watches even for dom0 (every other port goes
/// straight to the hardware): COM1 (keel's console), the reset register and
/// the 8042 (reboot), and the sleep control registers (power-off): the
/// host's, and keel's own FADT's when dom0 has keel's tables (`own_acpi`).
fn keel_port(port: u16, own_acpi: bool) -> bool {
    port == 0x64
        || absent_port(port)
        || port == acpi::RESET_PORT
        || (own_acpi && port == acpi::SLEEP_CONTROL_PORT)
        || crate::arch::x86::power::is_pm1_control(port)
}

/// Ports that look empty to dom0 (reads all ones, writes dropped): COM1,
/// keel's console; and the 8259 PICs with their ELCR, which keel keeps
/// masked: dom0 uses the IO-APIC and MSIs (as a Xen PVH dom0, it has no
/// PIC; Linux then also skips its PIT-through-the-8259 timer checks).
fn absent_port(port: u16) -> bool {
    matches!(
        port,
        0x3f8..=0x3ff | 0x20 | 0x21 | 0xa0 | 0xa1 | 0x4d0 | 0x4d1
    )
}

/// Is `pa` RAM in the firmware's memory map (keel's or a domain's)?
fn host_ram(pa: u64) -> bool {
    use crate::bootinfo::RegionKind;
    crate::kernel::host_regions().iter().any(|r| {
        r.start <= pa && pa < r.end && matches!(r.kind, RegionKind::Usable | RegionKind::Loader)
    })
}

/// How often dom0's CPU 0 looks at the serial port for input.
const CONSOLE_POLL_MS: u64 = 20;

impl Domain {
    /// dom0: moves the device vectors this CPU received into vCPU `idx`'s
    /// virtual local APIC (vCPU n runs on CPU n, so they are its own).
    fn take_device_irqs(&mut self, idx: usize) {
        if !self.identity {
            return;
        }
        let cpu = crate::arch::x86::gdt::cpu_index() as usize;
        let (got, level) = crate::arch::x86::irq::take(cpu);
        for (w, bits) in got.iter().enumerate() {
            let mut b = *bits;
            while b != 0 {
                let vec = (w * 64) as u8 + b.trailing_zeros() as u8;
                b &= b - 1;
                self.vcpus[idx].lapic.raise(vec);
            }
            self.vcpus[idx].phys_vectors[w] |= level[w];
        }
    }

    /// dom0 touched guest-physical `gpa` outside its RAM: if the host has
    /// no RAM there (device MMIO, firmware tables), map that page 1:1,
    /// uncached by the guest's own choice. The local APIC stays emulated.
    fn map_host_mmio(&mut self, gpa: u64) -> bool {
        let page = gpa & !0xfff;
        if !self.identity || page == 0xfee0_0000 || gpa < 0x10_0000 || host_ram(page) {
            return false;
        }
        self.p2m
            .map(&mut HostTables, page, page, PageSize::Size4K, Perm::RWX)
            .is_ok()
    }

    /// dom0's port I/O that keel traps but does not own: done on the
    /// hardware for it.
    fn forward_io(v: &mut dyn Vcpu, port: u16, size: u8, write: bool) {
        use crate::arch::x86::io;
        let r = v.regs_mut();
        if write {
            match size {
                1 => io::outb(port, r.rax as u8),
                2 => io::outw(port, r.rax as u16),
                _ => io::outl(port, r.rax as u32),
            }
        } else {
            let val = match size {
                1 => io::inb(port) as u64,
                2 => io::inw(port) as u64,
                _ => io::inl(port) as u64,
            };
            r.rax = io_in_result(r.rax, size, val);
        }
    }

    /// dom0's vCPU 0 takes the serial port's input: bytes for dom0 raise
    /// VIRQ_CONSOLE (Linux's hvc0 then reads them with console_io).
    fn poll_console(&mut self, idx: usize) {
        if !self.initial || idx != 0 {
            return;
        }
        if crate::console::poll_input(&mut crate::kernel::debug_key) {
            if let Some(port) = self.chans.virq_port(abi::virq::CONSOLE, 0) {
                self.signal(port);
            }
        }
    }

    /// dom0's vCPU 0 wakes at least every [`CONSOLE_POLL_MS`] to poll the
    /// serial port (keel leaves the port's interrupt alone).
    fn console_poll_deadline(&self, idx: usize, next: Option<u64>) -> Option<u64> {
        if !self.initial || idx != 0 {
            return next;
        }
        let poll = cpu::rdtsc() + time::tsc_khz() * CONSOLE_POLL_MS;
        Some(next.map_or(poll, |t| t.min(poll)))
    }

    fn console(&mut self, b: u8) {
        if b == b'\n' || self.line.len() >= 400 {
            log::info!("(d{}) {}", self.id, self.line);
            self.line.clear();
        } else if b != b'\r' {
            self.line
                .push(if b.is_ascii_graphic() || b == b' ' || b == b'\t' {
                    b as char
                } else {
                    '.'
                });
        }
    }

    /// Ends the domain (the first outcome wins) and kicks every other vCPU
    /// so its CPU notices.
    fn end(&mut self, o: Outcome) {
        if self.outcome.is_none() {
            self.outcome = Some(o);
            self.live.set_shutdown();
        }
        for i in 0..self.vcpus.len() {
            self.kick(i);
        }
    }

    /// Makes vCPU `i`'s CPU leave guest mode or its halt (unless it is the
    /// CPU handling this exit), so it sees what changed for it.
    fn kick(&self, i: usize) {
        if i != self.cur {
            apic::send_fixed(self.vcpus[i].host_apic, trap::VECTOR_WAKE);
        }
    }

    /// A present p2m entry changed (the current vCPU has flushed): the
    /// others flush before their next entry.
    fn p2m_changed(&mut self) {
        self.p2m_gen += 1;
        let cur = self.cur;
        self.vcpus[cur].p2m_seen = self.p2m_gen;
        for i in 0..self.vcpus.len() {
            self.kick(i);
        }
    }

    /// Nanoseconds since the domain started (its system time).
    fn now_ns(&self) -> u64 {
        self.scale.ns(cpu::rdtsc() - self.tsc_start)
    }

    /// The TSC value at system time `ns`.
    fn tsc_at(&self, ns: u64) -> u64 {
        self.tsc_start + (ns as u128 * time::tsc_khz() as u128 / 1_000_000) as u64
    }

    /// Fires vCPU `i`'s timers that are due.
    fn tick(&mut self, i: usize) {
        let now = self.now_ns();
        if self.vcpus[i].xen_timer_ns.is_some_and(|t| now >= t) {
            self.vcpus[i].xen_timer_ns = None;
            if let Some(port) = self.chans.virq_port(abi::virq::TIMER, i as u32) {
                self.signal(port);
            }
        }
        self.vcpus[i].lapic.tick(now);
    }

    /// Injects the current vCPU's highest pending interrupt if it can take
    /// it now, else asks for an interrupt window.
    fn deliver_interrupts(&mut self, v: &mut dyn Vcpu) {
        let i = self.cur;
        self.tick(i);
        let s = &mut self.vcpus[i];
        if s.callback_pending {
            if v.can_inject_interrupt() {
                v.inject(Event::Interrupt(self.callback_vector));
                s.callback_pending = false;
            } else {
                v.request_interrupt_window(true);
            }
            return;
        }
        match s.lapic.pending() {
            Some(vec) if v.can_inject_interrupt() => {
                v.inject(Event::Interrupt(vec));
                s.lapic.accept(vec);
                v.request_interrupt_window(false);
            }
            Some(_) => v.request_interrupt_window(true),
            None => v.request_interrupt_window(false),
        }
    }

    /// The earliest moment a timer of vCPU `i` fires (or its poll ends).
    fn next_wakeup(&self, i: usize) -> Option<u64> {
        let s = &self.vcpus[i];
        [s.lapic.next_deadline(), s.xen_timer_ns, s.poll_timeout_ns]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether vCPU `i`'s SCHEDOP_poll is over: a polled port is pending,
    /// or its timeout passed.
    fn poll_done(&mut self, i: usize) -> bool {
        if self.vcpus[i]
            .poll_timeout_ns
            .is_some_and(|t| self.now_ns() >= t)
        {
            return true;
        }
        let ports = core::mem::take(&mut self.vcpus[i].poll);
        let si = self.shared_info();
        let hit = ports.iter().any(|&p| Pending::new(&mut *si).is_pending(p));
        self.vcpus[i].poll = ports;
        hit
    }

    /// Sets `port` pending for its vCPU (2-level ABI) and, when that makes
    /// an upcall due, raises it on that vCPU.
    fn signal(&mut self, port: u32) {
        let Ok(vcpu) = self.chans.notify_vcpu(port) else {
            return;
        };
        if let Ok(true) = self.with_pending(vcpu as usize, |p, vi| {
            p.set(port, vcpu, vi).map(|d| d.upcall)
        }) {
            self.raise_upcall(vcpu as usize);
        }
        // A vCPU polling this port (usually masked: no upcall) wakes too.
        for i in 0..self.vcpus.len() {
            if self.vcpus[i].poll.contains(&port) {
                self.kick(i);
            }
        }
    }

    /// Runs `f` on the 2-level pending bitmaps and vCPU `i`'s vcpu_info.
    fn with_pending<T>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Pending, VcpuInfoRef) -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        if i >= self.vcpus.len() {
            return Err(Errno::EINVAL);
        }
        let si = cpu::phys_to_virt(self.shared_info) as *mut SharedInfo;
        let registered = self.registered_vcpu_info(i).map(|r| r as *mut VcpuInfo);
        // SAFETY: shared_info is keel's frame and a registered vcpu_info
        // lies in the guest's RAM: distinct memory, both mapped. The guest
        // may touch them concurrently from its vCPUs; the 2-level protocol
        // uses atomic bit operations on both sides, as under Xen.
        let vi = match registered {
            Some(p) => VcpuInfoRef::Registered(unsafe { &mut *p }),
            None => VcpuInfoRef::Legacy,
        };
        // SAFETY: as above.
        let mut p = Pending::new(unsafe { &mut *si });
        f(&mut p, vi)
    }

    fn raise_upcall(&mut self, i: usize) {
        let s = &mut self.vcpus[i];
        if let Some(vec) = s.lapic_upcall {
            s.lapic.raise(vec);
        } else if self.callback_vector >= 16 {
            s.callback_pending = true;
        } else {
            return;
        }
        self.kick(i);
    }

    fn shared_info(&mut self) -> &mut SharedInfo {
        // SAFETY: keel's own shared_info frame, direct-mapped.
        unsafe { &mut *(cpu::phys_to_virt(self.shared_info) as *mut SharedInfo) }
    }

    /// A structure of type `T` at guest-physical `gpa`, checked at
    /// registration to lie within one page of the domain's RAM.
    fn guest_struct<T>(&self, gpa: u64) -> Option<&'static mut T> {
        let (hpa, _, _) = self.p2m.translate(&mut HostTables, gpa)?;
        // SAFETY: `hpa` backs the guest page holding the structure (which
        // does not cross a page); RAM stays mapped while the domain lives,
        // and keel only writes it under the domain's lock.
        Some(unsafe { &mut *(cpu::phys_to_virt(hpa) as *mut T) })
    }

    /// vCPU `i`'s registered vcpu_info in guest memory.
    fn registered_vcpu_info(&self, i: usize) -> Option<&'static mut VcpuInfo> {
        self.guest_struct(self.vcpus[i].vcpu_info_gpa?)
    }

    /// Publishes every vCPU's PV clock: system time = ns since the domain
    /// started (one invariant TSC, so one record fits all vCPUs).
    fn update_time(&mut self) {
        let now = cpu::rdtsc();
        let (scale, start) = (self.scale, self.tsc_start);
        let ns = scale.ns(now - start);
        for i in 0..self.vcpus.len() {
            publish(&mut self.shared_info().vcpu_info[i].time, scale, now, ns);
            if let Some(vi) = self.registered_vcpu_info(i) {
                publish(&mut vi.time, scale, now, ns);
            }
            if let Some(gpa) = self.vcpus[i].time_area_gpa {
                if let Some(t) = self.guest_struct::<VcpuTimeInfo>(gpa) {
                    publish(t, scale, now, ns);
                }
            }
        }
    }

    /// Sends what the current vCPU wrote to its ICR.
    fn route_ipi(&mut self, ipi: Ipi) {
        let from = self.cur as u32;
        let targets =
            |dest: vlapic::Dest, n: usize| (0..n).filter(move |&i| dest.matches(i as u32, from));
        match ipi {
            Ipi::Fixed { dest, vector } => {
                for i in targets(dest, self.vcpus.len()) {
                    self.vcpus[i].lapic.raise(vector);
                    self.kick(i);
                }
            }
            Ipi::Init { dest } => {
                for i in targets(dest, self.vcpus.len()).filter(|&i| i != self.cur) {
                    match self.vcpus[i].power {
                        Power::Up => log::debug!(
                            "d{}: INIT to running vCPU{i} ignored (no vCPU reset yet)",
                            self.id
                        ),
                        _ => self.vcpus[i].power = Power::Init,
                    }
                }
            }
            Ipi::Startup { dest, vector } => {
                for i in targets(dest, self.vcpus.len()) {
                    if self.vcpus[i].power == Power::Init {
                        self.vcpus[i].power = Power::Start(vector);
                        self.kick(i);
                    }
                }
            }
            Ipi::Ignored { mode } => {
                log::debug!("d{}: IPI delivery mode {mode} ignored", self.id)
            }
        }
    }

    fn gpa_of(&self, v: &dyn Vcpu, gva: u64, write: bool) -> Option<u64> {
        let [cr0, cr3, cr4, efer] = v.control_regs();
        decode::linear_to_gpa_for(&mut P2mReader(&self.p2m), cr0, cr3, cr4, efer, gva, write)
    }

    /// Copies from a guest virtual address (page by page through the
    /// guest's own page tables); -EFAULT if any byte is unmapped.
    fn read(&self, v: &dyn Vcpu, gva: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let mut done = 0;
        while done < buf.len() {
            let a = gva + done as u64;
            let n = ((4096 - (a & 0xfff)) as usize).min(buf.len() - done);
            let gpa = self.gpa_of(v, a, false).ok_or(Errno::EFAULT)?;
            if !guestmem::read(&self.p2m, gpa, &mut buf[done..done + n]) {
                return Err(Errno::EFAULT);
            }
            done += n;
        }
        Ok(())
    }

    fn write(&self, v: &dyn Vcpu, gva: u64, data: &[u8]) -> Result<(), Errno> {
        let mut done = 0;
        while done < data.len() {
            let a = gva + done as u64;
            let n = ((4096 - (a & 0xfff)) as usize).min(data.len() - done);
            let gpa = self.gpa_of(v, a, true).ok_or(Errno::EFAULT)?;
            if !guestmem::write(&self.p2m, gpa, &data[done..done + n]) {
                return Err(Errno::EFAULT);
            }
            done += n;
        }
        Ok(())
    }

    fn wrmsr(&mut self, v: &mut dyn Vcpu, msr: u32, value: u64) -> Result<(), ()> {
        let i = self.cur;
        match msr {
            vlapic::MSR_BASE..=vlapic::MSR_END => {
                let now = self.now_ns();
                let eoi = (msr == vlapic::EOI)
                    .then(|| self.vcpus[i].lapic.in_service())
                    .flatten();
                match self.vcpus[i].lapic.write(msr, value, now) {
                    Ok(Some(ipi)) => self.route_ipi(ipi),
                    Ok(None) => {}
                    Err(_) => return Err(()),
                }
                if let Some(vec) = eoi {
                    let pv = &mut self.vcpus[i].phys_vectors[vec as usize / 64];
                    if *pv & (1 << (vec % 64)) != 0 {
                        // dom0 is done with a device interrupt: now the
                        // physical local APIC (and a level line) may go on.
                        *pv &= !(1 << (vec % 64));
                        apic::eoi();
                    }
                }
            }
            0xc000_0103 => self.vcpus[i].tsc_aux = value & 0xffff_ffff,
            // IA32_PAT: each byte a valid type (0, 1, 4, 5, 6, 7).
            0x277 => {
                if value
                    .to_le_bytes()
                    .iter()
                    .any(|&t| matches!(t, 2 | 3) || t > 7)
                {
                    return Err(());
                }
                self.vcpus[i].pat = value;
            }
            // APIC base: x2APIC stays enabled (keel has no xAPIC MMIO).
            0x1b => {}
            // IA32_BIOS_SIGN_ID (Linux writes 0 before reading the
            // microcode revision) and IA32_MISC_ENABLE: accepted, ignored.
            0x8b | 0x1a0 => {}
            // IA32_TSC_ADJUST: keel does not let a guest move the TSC;
            // writing the value it reads (0) is all Linux does.
            0x3b if value == 0 => {}
            // AMD NB_CFG: accepted, ignored (see rdmsr).
            0xc001_001f => {}
            cpuid::HYPERCALL_PAGE_MSR => {
                if let Err(e) = self.write_hypercall_page(v, value & !0xfff) {
                    log::warn!("d{}: {e}", self.id);
                    return Err(());
                }
            }
            _ => {
                log::debug!("d{}v{i}: wrmsr {msr:#x} <- {value:#x}: #GP", self.id);
                return Err(());
            }
        }
        Ok(())
    }

    fn rdmsr(&mut self, msr: u32) -> Option<u64> {
        let i = self.cur;
        Some(match msr {
            0x10 => cpu::rdtsc(), // TSC
            // APIC base: enabled, in x2APIC mode (EXTD), as firmware that
            // enabled x2APIC leaves it; the BSP flag on vCPU 0.
            0x1b => 0xfee0_0000 | (1 << 11) | (1 << 10) | (((i == 0) as u64) << 8),
            vlapic::MSR_BASE..=vlapic::MSR_END => {
                self.vcpus[i].lapic.read(msr, self.now_ns()).ok()?
            }
            // Microcode revision: none. IA32_TSC_ADJUST: 0 (keel never
            // offsets the TSC; Linux reads it where CPUID offers it).
            0x8b | 0x3b => 0,
            // MTRRcap, MTRRdefType: no MTRRs (Linux then treats the memory
            // types as the hypervisor's business, as on Xen).
            0xfe | 0x2ff => 0,
            0xc000_0103 => self.vcpus[i].tsc_aux,
            0x277 => self.vcpus[i].pat,
            // AMD SYSCFG: nothing enabled. NB_CFG: nothing set (Linux reads
            // it, unguarded, on some AMD families).
            0xc001_0010 | 0xc001_001f => 0,
            // IA32_MISC_ENABLE: fast strings; no BTS, no PEBS; XD not
            // disabled. Linux's early verify_cpu reads it without a fault
            // handler on Intel CPUs.
            0x1a0 => 1 | (1 << 11) | (1 << 12),
            _ => {
                log::debug!("d{}v{i}: rdmsr {msr:#x}: #GP", self.id);
                return None;
            }
        })
    }

    fn handle(&mut self, v: &mut dyn Vcpu, exit: Exit) -> Step {
        let i = self.cur;
        match exit {
            Exit::Cpuid { len } => cpuid::emulate(v, cpuid::Ctx::new(i as u32, self.id), len),
            Exit::MsrWrite { msr, value, len } => match self.wrmsr(v, msr, value) {
                Ok(()) => v.skip(len),
                Err(()) => v.inject_gp(),
            },
            Exit::MsrRead { msr, len } => match self.rdmsr(msr) {
                Some(x) => v.complete_rdmsr(x, len),
                None => v.inject_gp(),
            },
            Exit::Io {
                port,
                size,
                write,
                string,
                len,
                ..
            } => {
                if string {
                    return Step::End(Outcome::Stopped(format!(
                        "string I/O on port {port:#x} is not supported"
                    )));
                }
                if write && self.own_acpi && port == acpi::SLEEP_CONTROL_PORT {
                    // ACPI soft-off (hardware-reduced): SLP_EN with S5's type.
                    let val = v.regs().rax as u8;
                    if val & acpi::SLP_EN != 0 && (val >> 2) & 7 == acpi::SLEEP_TYPE_S5 {
                        return Step::End(Outcome::Shutdown(abi::shutdown::POWEROFF));
                    }
                }
                if write && is_reset(port, v.regs().rax as u8) {
                    // The FADT's reset register (0xcf9), or the 8042's
                    // pulse-reset command: the guest asks for a reboot.
                    return Step::End(Outcome::Shutdown(abi::shutdown::REBOOT));
                }
                if self.identity
                    && write
                    && crate::arch::x86::power::is_soft_off_write(port, v.regs().rax as u16)
                {
                    // dom0 puts the machine into S5: keel does it itself.
                    return Step::End(Outcome::Shutdown(abi::shutdown::POWEROFF));
                }
                if self.identity && !absent_port(port) {
                    Self::forward_io(v, port, size, write);
                    v.skip(len);
                    return Step::Go;
                }
                if !write {
                    // No device: reads return all ones.
                    let r = v.regs_mut();
                    r.rax = io_in_result(r.rax, size, u64::MAX);
                }
                v.skip(len);
            }
            Exit::Hypercall { len } => {
                self.hypercalls += 1;
                let step = match self.hypercall(v) {
                    Ok(s) => s,
                    Err(e) => {
                        v.regs_mut().rax = e.to_ret() as u64;
                        Step::Go
                    }
                };
                v.skip(len);
                return step;
            }
            Exit::Hlt { len } => {
                v.skip(len);
                return if v.regs().rflags & (1 << 9) == 0 {
                    Step::Park
                } else {
                    Step::Halt
                };
            }
            Exit::Pause { len } => v.skip(len),
            Exit::Xsetbv { len } => {
                let r = *v.regs();
                let value = (r.rdx << 32) | (r.rax & 0xffff_ffff);
                if r.rcx as u32 == 0 && v.set_xcr0(value).is_ok() {
                    v.skip(len);
                } else {
                    v.inject_gp();
                }
            }
            Exit::NestedPageFault { gpa, .. } if self.map_host_mmio(gpa) => {}
            Exit::NestedPageFault { gpa, access, .. } => {
                let what = access.name();
                return Step::End(Outcome::Stopped(format!(
                    "vCPU{i}: {what} of guest-physical {gpa:#x}: no memory or emulated device there (MMIO emulation is not implemented yet)"
                )));
            }
            Exit::ExternalInterrupt | Exit::InterruptWindow => {}
            Exit::TripleFault => {
                return Step::End(Outcome::Stopped(format!("vCPU{i}: triple fault")))
            }
            other => {
                return Step::End(Outcome::Stopped(format!(
                    "vCPU{i}: unexpected exit {other:?}"
                )))
            }
        }
        Step::Go
    }
}
