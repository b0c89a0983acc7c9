//! Building and running a PVH domain that speaks the Xen ABI (Linux's own
//! Xen support): its memory and p2m, the kernel and initrd, hvm_start_info,
//! ACPI tables, and the exits it causes: CPUID, MSRs (the hypercall page),
//! and hypercalls.
//!
//! Status: enough for a stock Linux kernel to enter through PVH and print
//! through `console_io`. Not yet: timers and event delivery (a vCPU that
//! halts waiting for them is reported and stopped), the local APIC, more
//! than one vCPU, dom0's 1:1 memory and device access. Hypercalls and
//! sub-ops keel does not implement return -ENOSYS and are counted.

use super::cpuid;
use super::decode;
use super::guestmem::{self, HostTables, P2mReader};
use super::vcpu::{io_in_result, Event, Exit, StartMode, Vcpu};
use super::vlapic::{self, Vlapic};
use crate::arch::x86::time;
use crate::arch::x86::{cpu, hvm};
use crate::domain::acpi;
use crate::kernel::FRAMES;
use crate::loader::pvh::{MemType, PvhImage, StartInfoBuilder, SIF_INITDOMAIN, SIF_PRIVILEGED};
use crate::mm::p2m::{P2m, Perm};
use crate::mm::paging::PageSize;
use crate::xen::abi::{self, Errno, Hypercall, SharedInfo, VcpuInfo};
use crate::xen::evtchn::{Channels, Peer, Pending, VcpuInfoRef};
use crate::xen::time::{publish, TimeScale};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Where keel puts the boot structures in a PVH guest's memory.
const START_INFO_BASE: u64 = 0x1000;
const START_INFO_LEN: u64 = 0x7000;
const ACPI_BASE: u64 = 0xf_0000;
const MAX_EXITS: u64 = 200_000_000;

pub struct Config<'a> {
    pub domid: u16,
    pub kernel: &'a [u8],
    pub initrd: Option<&'a [u8]>,
    pub cmdline: &'a str,
    pub mem_bytes: u64,
    /// The initial domain (dom0): privileged, console through console_io.
    pub initial: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// SCHEDOP_shutdown with this reason.
    Shutdown(u32),
    /// keel stopped the domain, for this reason.
    Stopped(String),
}

struct Domain {
    id: u16,
    initial: bool,
    p2m: P2m,
    ram: u64,
    ram_pages: u64,
    shared_info: u64,
    e820: Vec<(u64, u64, MemType)>,
    line: String,
    params: [u64; 64],
    upcall_vector: u8,
    unimplemented: u64,
    hypercalls: u64,
    /// The TSC when the domain started: its system time counts from here.
    tsc_start: u64,
    scale: TimeScale,
    lapic: Vlapic,
    /// Guest-physical address of vCPU 0's registered vcpu_info, if any
    /// (VCPUOP_register_vcpu_info); else the slot in shared_info is used.
    vcpu_info_gpa: Option<u64>,
    /// IA32_TSC_AUX (what RDTSCP/RDPID report: Linux stores the CPU number).
    tsc_aux: u64,
    /// Event channels (2-level).
    chans: Channels,
    /// The upcall vector came from HVMOP_set_evtchn_upcall_vector: it goes
    /// through the local APIC and the guest EOIs it. Through
    /// HVM_PARAM_CALLBACK_IRQ it is injected directly, never acknowledged.
    upcall_via_lapic: bool,
    /// A direct (non-LAPIC) callback-vector upcall is due.
    callback_pending: bool,
    /// Xen's single-shot vCPU timer (VCPUOP_set_singleshot_timer,
    /// set_timer_op): system time in ns at which VIRQ_TIMER fires.
    xen_timer_ns: Option<u64>,
}

impl Drop for Domain {
    fn drop(&mut self) {
        let mut tables = Vec::new();
        self.p2m
            .free_tables(&mut HostTables, &mut |t| tables.push(t));
        let mut f = FRAMES.lock();
        for t in tables {
            f.free(t, 1);
        }
        f.free(self.ram, self.ram_pages);
        f.free(self.shared_info, 1);
    }
}

fn zero(hpa: u64, len: u64) {
    // SAFETY: a range keel just allocated for this domain, direct-mapped.
    unsafe { core::ptr::write_bytes(cpu::phys_to_virt(hpa) as *mut u8, 0, len as usize) };
}

fn build(cfg: &Config) -> Result<(Domain, u32, u32), String> {
    let format = hvm::p2m_format()?;
    let ram_pages = cfg.mem_bytes / 4096;
    let ram = FRAMES
        .lock()
        .alloc_in(ram_pages, 2 << 20, 0x10_0000, u64::MAX)
        .ok_or_else(|| format!("not enough memory for a {} MiB domain", cfg.mem_bytes >> 20))?;
    let shared_info = FRAMES
        .lock()
        .alloc(1)
        .ok_or("out of memory for shared_info")?;
    zero(shared_info, 4096);
    let p2m = P2m::new(format, &mut HostTables).map_err(|e| format!("p2m: {e:?}"))?;
    let mut d = Domain {
        id: cfg.domid,
        initial: cfg.initial,
        p2m,
        ram,
        ram_pages,
        shared_info,
        e820: Vec::new(),
        line: String::new(),
        params: [0; 64],
        upcall_vector: 0,
        unimplemented: 0,
        hypercalls: 0,
        tsc_start: cpu::rdtsc(),
        scale: TimeScale::from_hz(time::tsc_khz() * 1000),
        lapic: Vlapic::new(0),
        vcpu_info_gpa: None,
        tsc_aux: 0,
        chans: Channels::new(cfg.domid, 1),
        upcall_via_lapic: false,
        callback_pending: false,
        xen_timer_ns: None,
    };
    zero(ram, cfg.mem_bytes);
    // 4 KiB pages: pages get replaced (shared_info, grant frames) by gfn.
    for i in 0..ram_pages {
        d.p2m
            .map(
                &mut HostTables,
                i * 4096,
                ram + i * 4096,
                PageSize::Size4K,
                Perm::RWX,
            )
            .map_err(|e| format!("p2m: {e:?}"))?;
    }
    let img =
        PvhImage::parse(cfg.kernel, cfg.mem_bytes).map_err(|e| format!("kernel refused: {e}"))?;
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
        if at + initrd.len() as u64 > cfg.mem_bytes {
            return Err(format!(
                "initrd ({} bytes) does not fit after the kernel",
                initrd.len()
            ));
        }
        assert!(guestmem::write(&d.p2m, at, initrd));
        sib = sib.initrd(at, initrd.len() as u64);
    }
    let tables = acpi::build(ACPI_BASE, 1).map_err(|e| format!("ACPI tables: {e:?}"))?;
    assert!(guestmem::write(&d.p2m, tables.base, &tables.bytes));
    let acpi_end = (tables.base + tables.bytes.len() as u64 + 0xfff) & !0xfff;
    d.e820 = alloc::vec![
        (0, START_INFO_BASE, MemType::Ram),
        (START_INFO_BASE, START_INFO_LEN, MemType::Reserved),
        (
            START_INFO_BASE + START_INFO_LEN,
            0x9_f000 - (START_INFO_BASE + START_INFO_LEN),
            MemType::Ram
        ),
        (0x9_f000, ACPI_BASE - 0x9_f000, MemType::Reserved),
        (ACPI_BASE, acpi_end - ACPI_BASE, MemType::Acpi),
        (acpi_end, 0x10_0000 - acpi_end, MemType::Reserved),
        (0x10_0000, cfg.mem_bytes - 0x10_0000, MemType::Ram),
    ];
    sib = sib.rsdp(tables.rsdp_gpa);
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
        "d{}: PVH kernel entry {:#x}, {} MiB, initrd {} bytes, cmdline '{}'",
        cfg.domid,
        img.entry,
        cfg.mem_bytes >> 20,
        cfg.initrd.map_or(0, |i| i.len()),
        cfg.cmdline
    );
    Ok((d, img.entry, layout.start_info_gpa as u32))
}

/// Builds the domain and runs its first vCPU on this CPU until it shuts
/// down or keel has to stop it.
pub fn run(cfg: &Config) -> Outcome {
    let (mut d, entry, start_info) = match build(cfg) {
        Ok(x) => x,
        Err(e) => return Outcome::Stopped(e),
    };
    let mut v = match hvm::new_vcpu(cfg.domid + 1) {
        Ok(v) => v,
        Err(e) => return Outcome::Stopped(format!("cannot create a vCPU: {e}")),
    };
    v.reset(StartMode::Pvh32 {
        entry,
        ebx: start_info,
    });
    v.set_p2m_root(d.p2m.root);
    let mut exits = 0u64;
    let outcome = loop {
        if exits >= MAX_EXITS {
            break Outcome::Stopped(format!("exceeded {MAX_EXITS} exits"));
        }
        d.deliver_interrupts(&mut *v);
        let e = v.run();
        exits += 1;
        if let Some(o) = d.handle(&mut *v, e) {
            break o;
        }
    };
    if !d.line.is_empty() {
        d.console(b'\n');
    }
    let [cr0, cr3, cr4, efer] = v.control_regs();
    log::info!(
        "d{}: {:?} after {exits} exits, {} hypercalls ({} unimplemented); RIP {:#x} CR0 {cr0:#x} CR3 {cr3:#x} CR4 {cr4:#x} EFER {efer:#x}",
        d.id,
        outcome,
        d.hypercalls,
        d.unimplemented,
        v.regs().rip
    );
    outcome
}

impl Domain {
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

    /// Nanoseconds since the domain started (its system time).
    fn now_ns(&self) -> u64 {
        self.scale.ns(cpu::rdtsc() - self.tsc_start)
    }

    /// Injects the local APIC's highest pending interrupt if the vCPU can
    /// take it now, else asks for an interrupt window.
    fn deliver_interrupts(&mut self, v: &mut dyn Vcpu) {
        let now = self.now_ns();
        if self.xen_timer_ns.is_some_and(|t| now >= t) {
            self.xen_timer_ns = None;
            if let Some(port) = self.chans.virq_port(abi::virq::TIMER, 0) {
                self.signal(port);
            }
        }
        self.lapic.tick(now);
        if self.callback_pending {
            if v.can_inject_interrupt() {
                v.inject(Event::Interrupt(self.upcall_vector));
                self.callback_pending = false;
            } else {
                v.request_interrupt_window(true);
            }
            return;
        }
        match self.lapic.pending() {
            Some(vec) if v.can_inject_interrupt() => {
                v.inject(Event::Interrupt(vec));
                self.lapic.accept(vec);
                v.request_interrupt_window(false);
            }
            Some(_) => v.request_interrupt_window(true),
            None => v.request_interrupt_window(false),
        }
    }

    /// The earliest moment something will wake a halted vCPU.
    fn next_wakeup(&self) -> Option<u64> {
        match (self.lapic.next_deadline(), self.xen_timer_ns) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A halted vCPU (HLT or SCHEDOP_block) sleeps until its next timer;
    /// false if nothing could ever wake it.
    fn sleep(&mut self) -> bool {
        if self.lapic.pending().is_some() || self.callback_pending {
            return true;
        }
        let Some(dl) = self.next_wakeup() else {
            return false;
        };
        while self.now_ns() < dl {
            cpu::pause();
        }
        true
    }

    /// Sets `port` pending for its vCPU (2-level ABI) and, when that makes
    /// an upcall due, raises the upcall vector in the local APIC.
    fn signal(&mut self, port: u32) {
        let Ok(vcpu) = self.chans.notify_vcpu(port) else {
            return;
        };
        let si = cpu::phys_to_virt(self.shared_info) as *mut SharedInfo;
        let registered = self.registered_vcpu_info().map(|r| r as *mut VcpuInfo);
        // SAFETY: shared_info is keel's frame and the registered vcpu_info
        // lies in the guest's RAM; they are distinct memory, both mapped,
        // and the guest does not run while keel updates them.
        let vi = match registered {
            Some(p) => VcpuInfoRef::Registered(unsafe { &mut *p }),
            None => VcpuInfoRef::Legacy,
        };
        // SAFETY: as above.
        let d = Pending::new(unsafe { &mut *si }).set(port, vcpu, vi);
        if d.is_ok_and(|d| d.upcall) {
            self.raise_upcall();
        }
    }

    fn raise_upcall(&mut self) {
        if self.upcall_vector < 16 {
            return;
        }
        if self.upcall_via_lapic {
            self.lapic.raise(self.upcall_vector);
        } else {
            self.callback_pending = true;
        }
    }

    fn shared_info(&mut self) -> &mut SharedInfo {
        // SAFETY: keel's own shared_info frame, direct-mapped; the guest
        // may write it concurrently only on its own CPU, which is here.
        unsafe { &mut *(cpu::phys_to_virt(self.shared_info) as *mut SharedInfo) }
    }

    /// vCPU 0's registered vcpu_info in guest memory (checked to lie in
    /// one page of the domain's RAM when it was registered).
    fn registered_vcpu_info(&mut self) -> Option<&mut VcpuInfo> {
        let gpa = self.vcpu_info_gpa?;
        let (hpa, _, _) = self.p2m.translate(&mut HostTables, gpa)?;
        // SAFETY: `hpa` backs the guest page holding the structure (which
        // does not cross a page, checked at registration); the guest runs
        // only on this CPU, and only while keel is not in here.
        Some(unsafe { &mut *(cpu::phys_to_virt(hpa) as *mut VcpuInfo) })
    }

    /// Publishes vCPU 0's PV clock: system time = ns since the domain started.
    fn update_time(&mut self) {
        let now = cpu::rdtsc();
        let (scale, start) = (self.scale, self.tsc_start);
        publish(
            &mut self.shared_info().vcpu_info[0].time,
            scale,
            now,
            scale.ns(now - start),
        );
        if let Some(vi) = self.registered_vcpu_info() {
            publish(&mut vi.time, scale, now, scale.ns(now - start));
        }
    }

    fn gpa_of(&self, v: &dyn Vcpu, gva: u64) -> Option<u64> {
        let [cr0, cr3, cr4, efer] = v.control_regs();
        decode::linear_to_gpa(&mut P2mReader(&self.p2m), cr0, cr3, cr4, efer, gva)
    }

    /// Copies from a guest virtual address (page by page through the
    /// guest's own page tables); -EFAULT if any byte is unmapped.
    fn read(&self, v: &dyn Vcpu, gva: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let mut done = 0;
        while done < buf.len() {
            let a = gva + done as u64;
            let n = ((4096 - (a & 0xfff)) as usize).min(buf.len() - done);
            let gpa = self.gpa_of(v, a).ok_or(Errno::EFAULT)?;
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
            let gpa = self.gpa_of(v, a).ok_or(Errno::EFAULT)?;
            if !guestmem::write(&self.p2m, gpa, &data[done..done + n]) {
                return Err(Errno::EFAULT);
            }
            done += n;
        }
        Ok(())
    }

    fn handle(&mut self, v: &mut dyn Vcpu, exit: Exit) -> Option<Outcome> {
        match exit {
            Exit::Cpuid { len } => cpuid::emulate(v, 0, self.id, len),
            Exit::MsrWrite { msr, value, len } => {
                if (vlapic::MSR_BASE..=vlapic::MSR_END).contains(&msr) {
                    let now = self.now_ns();
                    match self.lapic.write(msr, value, now) {
                        Ok(()) => v.skip(len),
                        Err(_) => v.inject_gp(),
                    }
                } else if msr == 0xc000_0103 {
                    self.tsc_aux = value & 0xffff_ffff;
                    v.skip(len);
                } else if msr == 0x1b {
                    // APIC base: x2APIC stays enabled (keel has no xAPIC MMIO).
                    v.skip(len);
                } else if msr == 0x1a0 {
                    // IA32_MISC_ENABLE: writes are accepted and ignored.
                    v.skip(len);
                } else if msr == cpuid::HYPERCALL_PAGE_MSR {
                    if let Err(e) = self.write_hypercall_page(v, value & !0xfff) {
                        return Some(Outcome::Stopped(e));
                    }
                    v.skip(len);
                } else {
                    log::debug!("d{}: wrmsr {msr:#x} <- {value:#x}: #GP", self.id);
                    v.inject_gp();
                }
            }
            Exit::MsrRead { msr, len } => {
                let val = match msr {
                    0x10 => Some(cpu::rdtsc()), // TSC
                    // APIC base: the BSP's, enabled, in x2APIC mode (EXTD), as
                    // firmware that enabled x2APIC leaves it.
                    0x1b => Some(0xfee0_0000 | (1 << 11) | (1 << 10) | (1 << 8)),
                    m if (vlapic::MSR_BASE..=vlapic::MSR_END).contains(&m) => {
                        match self.lapic.read(m, self.now_ns()) {
                            Ok(x) => Some(x),
                            Err(_) => None,
                        }
                    }
                    // MTRRcap, MTRRdefType: no MTRRs (Linux then treats the
                    // memory types as the hypervisor's business, as on Xen).
                    0xfe | 0x2ff => Some(0),
                    0xc000_0103 => Some(self.tsc_aux),
                    // AMD SYSCFG: nothing enabled.
                    0xc001_0010 => Some(0),
                    // IA32_MISC_ENABLE: fast strings; no BTS, no PEBS; XD
                    // not disabled. Linux's early verify_cpu reads it
                    // without a fault handler on Intel CPUs.
                    0x1a0 => Some(1 | (1 << 11) | (1 << 12)),
                    _ => None,
                };
                match val {
                    Some(x) => {
                        let r = v.regs_mut();
                        r.rax = x & 0xffff_ffff;
                        r.rdx = x >> 32;
                        v.skip(len);
                    }
                    None => {
                        log::debug!("d{}: rdmsr {msr:#x}: #GP", self.id);
                        v.inject_gp();
                    }
                }
            }
            Exit::Io {
                port,
                size,
                write,
                string,
                len,
                ..
            } => {
                if string {
                    return Some(Outcome::Stopped(format!(
                        "string I/O on port {port:#x} is not supported"
                    )));
                }
                if write && port == acpi::SLEEP_CONTROL_PORT {
                    // ACPI soft-off (hardware-reduced): SLP_EN with S5's type.
                    let val = v.regs().rax as u8;
                    if val & acpi::SLP_EN != 0 && (val >> 2) & 7 == acpi::SLEEP_TYPE_S5 {
                        return Some(Outcome::Shutdown(abi::shutdown::POWEROFF));
                    }
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
                let ret = self.hypercall(v);
                match ret {
                    Ok(Some(o)) => return Some(o),
                    Ok(None) => {}
                    Err(e) => v.regs_mut().rax = e.to_ret() as u64,
                }
                v.skip(len);
            }
            Exit::Hlt { len } => {
                v.skip(len);
                if v.regs().rflags & (1 << 9) == 0 {
                    return Some(Outcome::Stopped(String::from(
                        "halted with interrupts disabled",
                    )));
                }
                if !self.sleep() {
                    return Some(Outcome::Stopped(String::from(
                        "vCPU halted with no timer armed and no event pending: nothing can wake it",
                    )));
                }
            }
            Exit::Pause { len } => v.skip(len),
            Exit::Xsetbv { len } => {
                let r = *v.regs();
                let value = (r.rdx << 32) | (r.rax & 0xffff_ffff);
                if r.rcx as u32 == 0 && crate::arch::x86::fpu::set_guest_xcr0(value).is_ok() {
                    v.skip(len);
                } else {
                    v.inject_gp();
                }
            }
            Exit::NestedPageFault { gpa, access, .. } => {
                let what = access.name();
                return Some(Outcome::Stopped(format!(
                    "{what} of guest-physical {gpa:#x}: no memory or emulated device there (MMIO emulation is not implemented yet)"
                )));
            }
            Exit::ExternalInterrupt | Exit::InterruptWindow => {}
            Exit::TripleFault => return Some(Outcome::Stopped(String::from("triple fault"))),
            other => return Some(Outcome::Stopped(format!("unexpected exit {other:?}"))),
        }
        None
    }

    /// EVENT_CHANNEL_OP: the 2-level ABI on this domain's own table.
    fn evtchn_op(
        &mut self,
        v: &mut dyn Vcpu,
        cmd: u64,
        arg: u64,
    ) -> Result<Option<Outcome>, Errno> {
        let mut b = [0u8; 12];
        let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        match cmd {
            abi::evtchnop::BIND_VIRQ => {
                self.read(v, arg, &mut b)?;
                let port = self.chans.bind_virq(u32_at(&b, 0), u32_at(&b, 4))?;
                self.write(v, arg + 8, &port.to_le_bytes())?;
            }
            abi::evtchnop::BIND_IPI => {
                self.read(v, arg, &mut b[..8])?;
                let port = self.chans.bind_ipi(u32_at(&b, 0))?;
                self.write(v, arg + 4, &port.to_le_bytes())?;
            }
            abi::evtchnop::ALLOC_UNBOUND => {
                self.read(v, arg, &mut b[..8])?;
                let remote = u16::from_le_bytes([b[2], b[3]]);
                let port = self
                    .chans
                    .alloc_unbound(abi::resolve_domid(remote, self.id))?;
                self.write(v, arg + 4, &port.to_le_bytes())?;
            }
            abi::evtchnop::SEND => {
                self.read(v, arg, &mut b[..4])?;
                if let Some(sig) = self.chans.send(u32_at(&b, 0))? {
                    if sig.dom == self.id {
                        self.signal(sig.port);
                    }
                }
            }
            abi::evtchnop::UNMASK => {
                self.read(v, arg, &mut b[..4])?;
                let port = u32_at(&b, 0);
                let vcpu = self.chans.notify_vcpu(port)?;
                let si = cpu::phys_to_virt(self.shared_info) as *mut SharedInfo;
                let registered = self.registered_vcpu_info().map(|r| r as *mut VcpuInfo);
                // SAFETY: see `signal`.
                let vi = match registered {
                    Some(p) => VcpuInfoRef::Registered(unsafe { &mut *p }),
                    None => VcpuInfoRef::Legacy,
                };
                // SAFETY: see `signal`.
                if unsafe { Pending::new(&mut *si) }.unmask(port, vcpu, vi)? {
                    self.raise_upcall();
                }
            }
            abi::evtchnop::CLOSE => {
                self.read(v, arg, &mut b[..4])?;
                let port = u32_at(&b, 0);
                self.chans.close(Peer::Local, port)?;
                let _ = Pending::new(self.shared_info()).clear(port);
            }
            abi::evtchnop::BIND_VCPU => {
                self.read(v, arg, &mut b[..8])?;
                self.chans.bind_vcpu(u32_at(&b, 0), u32_at(&b, 4))?;
            }
            // No FIFO event channels: Linux falls back to 2-level.
            abi::evtchnop::INIT_CONTROL => return Err(Errno::ENOSYS),
            _ => {
                self.unimplemented += 1;
                log::debug!("d{}: event_channel_op {cmd}: -ENOSYS", self.id);
                return Err(Errno::ENOSYS);
            }
        }
        v.regs_mut().rax = 0;
        Ok(None)
    }

    /// Fills the hypercall page: entry `i` is `mov eax, i; vmcall|vmmcall; ret`.
    fn write_hypercall_page(&self, v: &dyn Vcpu, gpa: u64) -> Result<(), String> {
        let call: [u8; 3] = if v.backend() == "VT-x" {
            [0x0f, 0x01, 0xc1]
        } else {
            [0x0f, 0x01, 0xd9]
        };
        let mut page = [0xccu8; 4096];
        for i in 0..(4096 / abi::HYPERCALL_PAGE_ENTRY_SIZE) {
            let e = &mut page[i * abi::HYPERCALL_PAGE_ENTRY_SIZE..];
            e[0] = 0xb8;
            e[1..5].copy_from_slice(&(i as u32).to_le_bytes());
            e[5..8].copy_from_slice(&call);
            e[8] = 0xc3;
        }
        if !guestmem::write(&self.p2m, gpa, &page) {
            return Err(format!(
                "hypercall page at {gpa:#x} is outside the domain's memory"
            ));
        }
        log::debug!("d{}: hypercall page at {gpa:#x}", self.id);
        Ok(())
    }

    /// One hypercall: RAX = number, arguments in RDI, RSI, RDX, R10, R8.
    fn hypercall(&mut self, v: &mut dyn Vcpu) -> Result<Option<Outcome>, Errno> {
        let r = *v.regs();
        let (a1, a2, a3) = (r.rdi, r.rsi, r.rdx);
        let ok = |v: &mut dyn Vcpu, x: u64| {
            v.regs_mut().rax = x;
            Ok(None)
        };
        let Some(call) = Hypercall::from_u64(r.rax) else {
            self.unimplemented += 1;
            log::debug!("d{}: hypercall {} unknown: -ENOSYS", self.id, r.rax);
            return Err(Errno::ENOSYS);
        };
        match call {
            Hypercall::ConsoleIo => match a1 {
                abi::consoleio::WRITE => {
                    let mut buf = alloc::vec![0u8; (a2 as usize).min(16 * 1024)];
                    self.read(v, a3, &mut buf)?;
                    for b in buf {
                        self.console(b);
                    }
                    ok(v, 0)
                }
                abi::consoleio::READ => ok(v, 0),
                _ => Err(Errno::EINVAL),
            },
            Hypercall::XenVersion => match a1 {
                abi::xenver::VERSION => ok(
                    v,
                    abi::xenver::encode(cpuid::XEN_MAJOR as u16, cpuid::XEN_MINOR as u16),
                ),
                abi::xenver::EXTRAVERSION => {
                    let mut s = [0u8; abi::xenver::EXTRAVERSION_LEN];
                    s[..6].copy_from_slice(b"-keel\0");
                    self.write(v, a2, &s)?;
                    ok(v, 0)
                }
                abi::xenver::CAPABILITIES => {
                    let mut s = [0u8; abi::xenver::CAPABILITIES_LEN];
                    s[..14].copy_from_slice(b"hvm-3.0-x86_64");
                    self.write(v, a2, &s)?;
                    ok(v, 0)
                }
                abi::xenver::GET_FEATURES => {
                    let idx = {
                        let mut b = [0u8; 4];
                        self.read(v, a2, &mut b)?;
                        u32::from_le_bytes(b)
                    };
                    let map = if idx == 0 {
                        abi::xenfeat::pvh_submap(self.initial)
                    } else {
                        0
                    };
                    self.write(v, a2 + 4, &map.to_le_bytes())?;
                    ok(v, 0)
                }
                abi::xenver::PAGESIZE => ok(v, 4096),
                _ => {
                    self.unimplemented += 1;
                    Err(Errno::ENOSYS)
                }
            },
            Hypercall::MemoryOp => match a1 & abi::xenmem::MEMOP_CMD_MASK {
                abi::xenmem::MEMORY_MAP | abi::xenmem::MACHINE_MEMORY_MAP => {
                    // struct xen_memory_map { uint nr_entries; handle buffer }
                    let mut hdr = [0u8; 16];
                    self.read(v, a2, &mut hdr)?;
                    let max = u32::from_le_bytes(hdr[..4].try_into().unwrap()) as usize;
                    let buf = u64::from_le_bytes(hdr[8..].try_into().unwrap());
                    let n = self.e820.len().min(max);
                    for (i, &(addr, size, kind)) in self.e820[..n].iter().enumerate() {
                        let mut e = [0u8; 20];
                        e[..8].copy_from_slice(&addr.to_le_bytes());
                        e[8..16].copy_from_slice(&size.to_le_bytes());
                        e[16..].copy_from_slice(&(kind as u32).to_le_bytes());
                        self.write(v, buf + 20 * i as u64, &e)?;
                    }
                    self.write(v, a2, &(n as u32).to_le_bytes())?;
                    ok(v, 0)
                }
                abi::xenmem::ADD_TO_PHYSMAP => {
                    // struct xen_add_to_physmap { domid u16; size u16; space u32; idx u64; gpfn u64 }
                    let mut b = [0u8; 24];
                    self.read(v, a2, &mut b)?;
                    let space = u32::from_le_bytes(b[4..8].try_into().unwrap());
                    let gpfn = u64::from_le_bytes(b[16..24].try_into().unwrap());
                    if space != abi::xenmapspace::SHARED_INFO {
                        self.unimplemented += 1;
                        return Err(Errno::ENOSYS);
                    }
                    let gpa = gpfn << 12;
                    let _ = self.p2m.unmap(&mut HostTables, gpa, PageSize::Size4K);
                    self.p2m
                        .map(
                            &mut HostTables,
                            gpa,
                            self.shared_info,
                            PageSize::Size4K,
                            Perm::RW,
                        )
                        .map_err(|_| Errno::EINVAL)?;
                    // Flush point: a present gfn now points elsewhere.
                    v.flush_p2m();
                    self.update_time();
                    log::debug!("d{}: shared_info at gfn {gpfn:#x}", self.id);
                    ok(v, 0)
                }
                abi::xenmem::CURRENT_RESERVATION | abi::xenmem::MAXIMUM_RESERVATION => {
                    ok(v, self.ram_pages)
                }
                abi::xenmem::MAXIMUM_GPFN => ok(v, self.ram_pages - 1),
                _ => {
                    self.unimplemented += 1;
                    Err(Errno::ENOSYS)
                }
            },
            Hypercall::HvmOp => match a1 {
                abi::hvmop::SET_PARAM | abi::hvmop::GET_PARAM => {
                    // struct xen_hvm_param { domid u16; pad; index u32; value u64 }
                    let mut b = [0u8; 16];
                    self.read(v, a2, &mut b)?;
                    let index = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
                    let slot = self.params.get_mut(index).ok_or(Errno::EINVAL)?;
                    if a1 == abi::hvmop::SET_PARAM {
                        let val = u64::from_le_bytes(b[8..].try_into().unwrap());
                        *slot = val;
                        // CALLBACK_IRQ of type 2 (vector) names the upcall vector.
                        if index == abi::hvm_param::CALLBACK_IRQ as usize && val >> 56 == 2 {
                            self.upcall_vector = val as u8;
                            self.upcall_via_lapic = false;
                        }
                    } else {
                        let val = *slot;
                        self.write(v, a2 + 8, &val.to_le_bytes())?;
                    }
                    ok(v, 0)
                }
                abi::hvmop::SET_EVTCHN_UPCALL_VECTOR => {
                    let mut b = [0u8; 5];
                    self.read(v, a2, &mut b)?;
                    self.upcall_vector = b[4];
                    self.upcall_via_lapic = true;
                    ok(v, 0)
                }
                _ => {
                    self.unimplemented += 1;
                    Err(Errno::ENOSYS)
                }
            },
            Hypercall::SchedOp => match a1 {
                abi::schedop::YIELD => ok(v, 0),
                abi::schedop::BLOCK => {
                    // Block until an event: sleep to the next timer.
                    if !self.sleep() {
                        return Ok(Some(Outcome::Stopped(String::from(
                            "SCHEDOP_block with no timer armed and no event pending: nothing can wake it",
                        ))));
                    }
                    ok(v, 0)
                }
                abi::schedop::SHUTDOWN => {
                    let mut b = [0u8; 4];
                    self.read(v, a2, &mut b)?;
                    Ok(Some(Outcome::Shutdown(u32::from_le_bytes(b))))
                }
                _ => {
                    self.unimplemented += 1;
                    Err(Errno::ENOSYS)
                }
            },
            Hypercall::VcpuOp => {
                // a2 = vCPU number; keel runs one vCPU per domain so far.
                if a2 != 0 {
                    return Err(if a1 == abi::vcpuop::IS_UP {
                        Errno::EINVAL
                    } else {
                        Errno::ENOENT
                    });
                }
                match a1 {
                    abi::vcpuop::IS_UP => ok(v, 1),
                    abi::vcpuop::REGISTER_VCPU_INFO => {
                        // struct vcpu_register_vcpu_info { u64 mfn; u32 offset; u32 rsvd }
                        let mut b = [0u8; 16];
                        self.read(v, a3, &mut b)?;
                        let gfn = u64::from_le_bytes(b[..8].try_into().unwrap());
                        let offset = u32::from_le_bytes(b[8..12].try_into().unwrap()) as u64;
                        let size = core::mem::size_of::<VcpuInfo>() as u64;
                        if offset + size > 4096 || gfn >= self.ram_pages {
                            return Err(Errno::EINVAL);
                        }
                        if self.vcpu_info_gpa.is_some() {
                            return Err(Errno::EINVAL); // Xen allows it once
                        }
                        self.vcpu_info_gpa = Some((gfn << 12) + offset);
                        self.update_time();
                        log::debug!("d{}: vcpu_info at {:#x}", self.id, (gfn << 12) + offset);
                        ok(v, 0)
                    }
                    abi::vcpuop::SET_SINGLESHOT_TIMER => {
                        // struct vcpu_set_singleshot_timer { u64 timeout_abs_ns; u32 flags }
                        let mut b = [0u8; 12];
                        self.read(v, a3, &mut b)?;
                        let t = u64::from_le_bytes(b[..8].try_into().unwrap());
                        let flags = u32::from_le_bytes(b[8..12].try_into().unwrap());
                        if flags & abi::vcpuop::VCPU_SSHOTTMR_FUTURE != 0 && t < self.now_ns() {
                            return Err(Errno::ETIME);
                        }
                        self.xen_timer_ns = Some(t);
                        log::trace!(
                            "d{}: singleshot timer at {t} (now {})",
                            self.id,
                            self.now_ns()
                        );
                        ok(v, 0)
                    }
                    abi::vcpuop::STOP_SINGLESHOT_TIMER => {
                        log::trace!("d{}: singleshot timer stopped", self.id);
                        self.xen_timer_ns = None;
                        ok(v, 0)
                    }
                    // keel has no periodic vCPU timer to stop.
                    abi::vcpuop::STOP_PERIODIC_TIMER => ok(v, 0),
                    abi::vcpuop::REGISTER_RUNSTATE_MEMORY_AREA => {
                        // Accepted; keel does not account steal time yet, so
                        // the area stays as the guest left it (all zero).
                        ok(v, 0)
                    }
                    _ => {
                        self.unimplemented += 1;
                        log::debug!("d{}: vcpu_op {a1}: -ENOSYS", self.id);
                        Err(Errno::ENOSYS)
                    }
                }
            }
            Hypercall::SetTimerOp => {
                // a1 = absolute system time in ns; 0 cancels.
                self.xen_timer_ns = (a1 != 0).then_some(a1);
                ok(v, 0)
            }
            Hypercall::EventChannelOp => self.evtchn_op(v, a1, a2),
            other => {
                self.unimplemented += 1;
                log::debug!(
                    "d{}: hypercall {other:?} ({a1:#x}, {a2:#x}, {a3:#x}) at RIP {:#x}: -ENOSYS",
                    self.id,
                    r.rip
                );
                Err(Errno::ENOSYS)
            }
        }
    }
}
