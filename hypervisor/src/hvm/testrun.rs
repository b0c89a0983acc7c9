//! Runs keel's small test guests (`tests/guests/`) in test mode: builds
//! their memory and p2m, starts their vCPU in real mode, and serves every
//! exit the way `testproto` describes. A guest that misbehaves is killed
//! with a reason; keel and other guests carry on.

use super::guestmem::{self, HostTables};
use super::testproto::{self as tp, Scenario};
use super::vcpu::{io_in_result, Event, Exit, StartMode, Vcpu};
use crate::arch::x86::{cpu, hvm, time};
use crate::loader::elf;
use crate::mm::p2m::{P2m, Perm};
use crate::mm::paging::PageSize;
use crate::mm::phys::frames;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The guest reported DONE with this code (0 = its checks passed).
    Done(u32),
    /// keel killed the guest, for this reason.
    Killed(String),
}

#[derive(Clone, Debug)]
pub struct Report {
    pub outcome: Outcome,
    pub exits: u64,
    pub npf_served: u32,
    pub elapsed_us: u64,
    pub backend: &'static str,
}

/// Exits served so far for guest ids 0..16 (progress another CPU can watch).
static PROGRESS: [core::sync::atomic::AtomicU64; 16] =
    [const { core::sync::atomic::AtomicU64::new(0) }; 16];

pub fn exits_so_far(id: u32) -> u64 {
    PROGRESS
        .get(id as usize)
        .map_or(0, |p| p.load(core::sync::atomic::Ordering::Relaxed))
}

/// A test guest's memory as the management call sees it: unreachable.
struct NoMemory;

impl crate::mgmt::CallerMem for NoMemory {
    fn write(&mut self, gva: u64, _: &[u8]) -> Result<(), keel_mgmt::Errno> {
        log::warn!("mgmt: wrote to a test guest's buffer at {gva:#x}");
        Err(keel_mgmt::Errno::EFAULT)
    }
}

/// Upper bound on exits per run, so a runaway guest cannot hang a test.
const MAX_EXITS: u64 = 20_000_000;

struct Guest {
    id: u32,
    scenario: Scenario,
    p2m: P2m,
    ram: u64,
    demand_frames: Vec<u64>,
    scratch: u32,
    scratch_msr: u64,
    line: String,
    npf_served: u32,
    timer_deadline: Option<u64>,
    timer_pending: bool,
}

impl Guest {
    fn console(&mut self, b: u8) {
        if b == b'\n' || self.line.len() >= 200 {
            log::info!("(d{}) {}", self.id, self.line);
            self.line.clear();
        } else if b != b'\r' {
            self.line.push(if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            });
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let mut tables = Vec::new();
        self.p2m
            .free_tables(&mut HostTables, &mut |t| tables.push(t));
        let mut f = frames();
        for t in tables {
            f.free(t, 1);
        }
        f.free(self.ram, tp::RAM_SIZE / 4096);
        for d in &self.demand_frames {
            f.free(*d, 1);
        }
    }
}

fn alloc_guest(id: u32, scenario: Scenario, image: &[u8]) -> Result<Guest, String> {
    let format = hvm::p2m_format()?;
    let p2m = P2m::new(format, &mut HostTables).map_err(|e| format!("p2m: {e:?}"))?;
    let pages = tp::RAM_SIZE / 4096;
    let ram = frames()
        .alloc_in(pages, 2 << 20, 0x10_0000, u64::MAX)
        .ok_or("out of memory for guest RAM")?;
    let g = Guest {
        id,
        scenario,
        p2m,
        ram,
        demand_frames: Vec::new(),
        scratch: 0,
        scratch_msr: 0,
        line: String::new(),
        npf_served: 0,
        timer_deadline: None,
        timer_pending: false,
    };
    // SAFETY: freshly allocated guest RAM, direct-mapped.
    unsafe { core::ptr::write_bytes(cpu::phys_to_virt(ram) as *mut u8, 0, tp::RAM_SIZE as usize) };
    g.p2m
        .map_range(&mut HostTables, 0, ram, tp::RAM_SIZE, Perm::RWX, false)
        .map_err(|e| format!("p2m: {e:?}"))?;
    let img =
        elf::Image::parse(image, tp::RAM_SIZE).map_err(|e| format!("guest image refused: {e}"))?;
    img.load(
        |gpa, d| assert!(guestmem::write(&g.p2m, gpa, d)),
        |_, _| {}, /* RAM is zeroed */
    );
    Ok(g)
}

/// Runs one test guest to its end on this CPU.
pub fn run(id: u32, scenario: Scenario, image: &[u8]) -> Report {
    let start = time::now_us();
    let report = |outcome, exits, npf, backend| Report {
        outcome,
        exits,
        npf_served: npf,
        elapsed_us: time::now_us() - start,
        backend,
    };
    let mut vcpu = match hvm::new_vcpu(id as u16) {
        Ok(v) => v,
        Err(e) => {
            return report(
                Outcome::Killed(format!("cannot create a vCPU: {e}")),
                0,
                0,
                "none",
            )
        }
    };
    let backend = vcpu.backend();
    let mut g = match alloc_guest(id, scenario, image) {
        Ok(g) => g,
        Err(e) => return report(Outcome::Killed(e), 0, 0, backend),
    };
    vcpu.reset(StartMode::RealModeSipi {
        vector: tp::SIPI_VECTOR,
    });
    vcpu.set_p2m_root(g.p2m.root);
    log::debug!("d{id}: starting {scenario:?} on {backend}");
    let mut exits = 0u64;
    let outcome = loop {
        if exits >= MAX_EXITS {
            break Outcome::Killed(format!("exceeded {MAX_EXITS} exits"));
        }
        if let Some(dl) = g.timer_deadline {
            if time::now_us() >= dl {
                g.timer_deadline = None;
                g.timer_pending = true;
            }
        }
        if g.timer_pending {
            if vcpu.can_inject_interrupt() {
                vcpu.inject(Event::Interrupt(tp::TIMER_VECTOR));
                g.timer_pending = false;
                vcpu.request_interrupt_window(false);
            } else {
                vcpu.request_interrupt_window(true);
            }
        }
        let exit = vcpu.run();
        exits += 1;
        if let Some(p) = PROGRESS.get(id as usize) {
            p.store(exits, core::sync::atomic::Ordering::Relaxed);
        }
        if let Some(o) = handle(&mut g, &mut *vcpu, exit) {
            break o;
        }
    };
    if let Outcome::Killed(why) = &outcome {
        let [cr0, cr3, cr4, efer] = vcpu.control_regs();
        log::error!(
            "d{id}: killed: {why} (RIP {:#x}, CR0 {cr0:#x}, CR3 {cr3:#x}, CR4 {cr4:#x}, EFER {efer:#x})",
            vcpu.regs().rip
        );
    }
    if !g.line.is_empty() {
        g.console(b'\n');
    }
    let npf = g.npf_served;
    drop(g);
    report(outcome, exits, npf, backend)
}

fn handle(g: &mut Guest, v: &mut dyn Vcpu, exit: Exit) -> Option<Outcome> {
    match exit {
        Exit::Cpuid { len } => super::cpuid::emulate(v, super::cpuid::Ctx::new(0, 0), len),
        Exit::MsrRead { msr, len } => {
            if msr == tp::SCRATCH_MSR {
                v.complete_rdmsr(g.scratch_msr, len);
            } else {
                v.inject_gp();
            }
        }
        Exit::MsrWrite { msr, value, len } => {
            if msr == tp::SCRATCH_MSR {
                g.scratch_msr = value;
                v.skip(len);
            } else {
                v.inject_gp();
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
                return Some(Outcome::Killed(format!(
                    "string I/O on port {port:#x} is not supported"
                )));
            }
            let mask = if size >= 4 {
                0xffff_ffffu64
            } else {
                (1u64 << (size * 8)) - 1
            };
            let val = v.regs().rax & mask;
            if write {
                match port {
                    tp::CONSOLE => g.console(val as u8),
                    tp::SCRATCH => g.scratch = val as u32,
                    tp::DONE => return Some(Outcome::Done(val as u32)),
                    tp::TIMER => g.timer_deadline = Some(time::now_us() + val),
                    _ => {} // no device: writes vanish, as on real hardware
                }
            } else {
                let r = match port {
                    tp::SCRATCH => (g.scratch as u64).wrapping_add(1),
                    tp::SCENARIO => g.scenario as u64,
                    tp::EXPECT => g.npf_served as u64,
                    _ => u64::MAX, // no device: all ones
                };
                let regs = v.regs_mut();
                regs.rax = io_in_result(regs.rax, size, r);
            }
            v.skip(len);
        }
        Exit::Hlt { len } => {
            v.skip(len);
            if v.regs().rflags & (1 << 9) == 0 {
                return Some(Outcome::Killed(String::from(
                    "halted with interrupts disabled",
                )));
            }
            match g.timer_deadline {
                Some(dl) => {
                    // The vCPU sleeps until its timer: nothing else to run here.
                    while time::now_us() < dl {
                        cpu::pause();
                    }
                    g.timer_deadline = None;
                    g.timer_pending = true;
                }
                None if !g.timer_pending => {
                    return Some(Outcome::Killed(String::from(
                        "halted forever (no timer armed)",
                    )))
                }
                None => {}
            }
        }
        Exit::Pause { len } => v.skip(len),
        Exit::Hypercall { len } => {
            let r = *v.regs();
            v.regs_mut().rax = if r.rax == keel_mgmt::HYPERCALL {
                // Test guests are never dom0: keel must refuse before it
                // touches their memory (which NoMemory would report).
                let args = [r.rdi, r.rsi, r.rdx, r.r10];
                match crate::mgmt::call(g.id as u16, args, &crate::kernel::KeelHost, &mut NoMemory)
                {
                    Ok(x) => x,
                    Err(e) => e.to_ret() as u64,
                }
            } else if r.rax == 0 {
                0
            } else {
                tp::ENOSYS as u64
            };
            v.skip(len);
        }
        Exit::Xsetbv { .. } => v.inject_gp(),
        Exit::NestedPageFault {
            gpa,
            access,
            present,
        } => {
            let in_demand =
                (tp::ON_DEMAND_BASE..tp::ON_DEMAND_BASE + tp::ON_DEMAND_SIZE).contains(&gpa);
            if in_demand && !present {
                let Some(frame) = frames().alloc(1) else {
                    return Some(Outcome::Killed(String::from(
                        "out of memory for an on-demand page",
                    )));
                };
                // SAFETY: a fresh frame, direct-mapped.
                unsafe { core::ptr::write_bytes(cpu::phys_to_virt(frame) as *mut u8, 0, 4096) };
                let page = gpa & !0xfff;
                if let Err(e) = g
                    .p2m
                    .map(&mut HostTables, page, frame, PageSize::Size4K, Perm::RWX)
                {
                    return Some(Outcome::Killed(format!(
                        "mapping on-demand page {page:#x}: {e:?}"
                    )));
                }
                g.demand_frames.push(frame);
                g.npf_served += 1;
                // Not-present -> present needs no flush by the architecture;
                // keel flushes anyway on the next entry for simplicity.
                v.flush_p2m();
            } else {
                let what = access.name();
                return Some(Outcome::Killed(format!(
                    "{what} of guest-physical {gpa:#x}, which the guest does not own"
                )));
            }
        }
        Exit::ExternalInterrupt | Exit::InterruptWindow => {}
        Exit::TripleFault => return Some(Outcome::Killed(String::from("triple fault"))),
        Exit::Init | Exit::Sipi { .. } => {
            return Some(Outcome::Killed(String::from("unexpected INIT/SIPI")))
        }
        Exit::CrAccess { cr, .. } => {
            return Some(Outcome::Killed(format!("unexpected CR{cr} access exit")))
        }
        Exit::Exception { vector, error_code } => {
            return Some(Outcome::Killed(format!(
                "exception {vector} (error code {error_code:?})"
            )))
        }
        Exit::InvalidGuestState { detail, code } => {
            return Some(Outcome::Killed(format!(
                "invalid guest state: {detail} (code {code:#x})"
            )))
        }
        Exit::Unhandled { reason } => {
            return Some(Outcome::Killed(format!("unhandled exit {reason:#x}")))
        }
    }
    None
}
