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
use super::vcpu::{io_in_result, Exit, StartMode, Vcpu};
use crate::arch::x86::time;
use crate::arch::x86::{cpu, hvm};
use crate::domain::acpi;
use crate::kernel::FRAMES;
use crate::loader::pvh::{MemType, PvhImage, StartInfoBuilder, SIF_INITDOMAIN, SIF_PRIVILEGED};
use crate::mm::p2m::{P2m, Perm};
use crate::mm::paging::PageSize;
use crate::xen::abi::{self, Errno, Hypercall, SharedInfo};
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

    fn shared_info(&mut self) -> &mut SharedInfo {
        // SAFETY: keel's own shared_info frame, direct-mapped; the guest
        // may write it concurrently only on its own CPU, which is here.
        unsafe { &mut *(cpu::phys_to_virt(self.shared_info) as *mut SharedInfo) }
    }

    /// Publishes vCPU 0's PV clock: system time = ns since the domain started.
    fn update_time(&mut self) {
        let now = cpu::rdtsc();
        let (scale, start) = (self.scale, self.tsc_start);
        let t = &mut self.shared_info().vcpu_info[0].time;
        publish(t, scale, now, scale.ns(now - start));
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
                if msr == 0x1a0 {
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
                    // APIC base: the BSP's, enabled, xAPIC mode.
                    0x1b => Some(0xfee0_0000 | (1 << 11) | (1 << 8)),
                    // MTRRcap, MTRRdefType: no MTRRs (Linux then treats the
                    // memory types as the hypervisor's business, as on Xen).
                    0xfe | 0x2ff => Some(0),
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
                return Some(Outcome::Stopped(String::from(
                    "vCPU halted to wait for an event or timer: event delivery and timers are not implemented yet",
                )));
            }
            Exit::Pause { len } => v.skip(len),
            Exit::Xsetbv { .. } => v.inject_gp(),
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
                        *slot = u64::from_le_bytes(b[8..].try_into().unwrap());
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
                    ok(v, 0)
                }
                _ => {
                    self.unimplemented += 1;
                    Err(Errno::ENOSYS)
                }
            },
            Hypercall::SchedOp => match a1 {
                abi::schedop::YIELD => ok(v, 0),
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
            Hypercall::EventChannelOp if a1 == abi::evtchnop::INIT_CONTROL => {
                // No FIFO event channels: Linux falls back to 2-level.
                Err(Errno::ENOSYS)
            }
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
