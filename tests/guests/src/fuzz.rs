//! Scenario 10: the hostile guest (issue 12, "hostile guests change
//! nothing"). N random hypercalls (N from keel's `FUZZ_COUNT` port, the
//! PRNG seeded from `FUZZ_SEED`): every number 0..=63, 64 and some out
//! of range, with random sub-ops and random and
//! adversarial pointers and lengths; mixed with random port I/O, rdmsr,
//! wrmsr and CPUID. Every instruction that may fault runs under
//! `trap::expect_fault`. At the end: a histogram of the return codes and
//! the calls by kind on the console, the hypercall count in `SCRATCH`,
//! then DONE(0).
//!
//! The guest only avoids what would legitimately stop or break *itself*
//! (keel is right to honour it): sched_op block/shutdown, poll (but for
//! one on no ports with a timeout already past, which ends at once), hvm_op
//! set_param and the upcall vector (an event would then arrive on a vector
//! this guest has no handler for), add_to_physmap onto its own RAM, long
//! console writes (its own console budget, needed for the summary), writes
//! to EFER and the x2APIC MSRs, and writes to the protocol's CONSOLE, DONE
//! and TIMER ports; pointers just below its image (0x7000..0x8000, where
//! a 1 KiB answer would reach its code) move to page 0; vcpu_info is
//! registered only in the scratch area or where keel must refuse it;
//! a multicall runs only a list of such tamed calls.
//! "Valid" pointers point into a scratch area at the top
//! of its RAM, above everything it uses, so that whatever keel writes
//! there (or after it) cannot hit its code, stack or page tables.
use crate::arch::{self, HypercallInsn};
use crate::{println, proto, trap};

/// The scratch area "valid" pointers point into: [3 MiB, 4 MiB).
const BUF_BASE: u64 = 3 << 20;
const BUF_SIZE: u64 = 1 << 20;

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// One argument: a small int, a sub-op, anything, a valid pointer, one
/// that straddles the end of RAM, memory not the guest's, non-canonical,
/// the kernel half, zero, huge lengths, domain ids.
fn arg(r: &mut Rng) -> u64 {
    match r.below(11) {
        0 => r.below(16),
        1 => r.below(41),
        2 => r.next(),
        3 => BUF_BASE + r.below(BUF_SIZE - 4096),
        4 => {
            let end = r.pick(&[
                proto::RAM_SIZE,
                proto::ON_DEMAND_BASE + proto::ON_DEMAND_SIZE,
                1 << 32, // the end of the guest's own page tables' map
            ]);
            end - 1 - r.below(16)
        }
        5 => r.pick(&[
            proto::NOT_OWNED_GPA,
            proto::NOT_OWNED_GPA + 0xff8,
            0xfee0_0000,
            0xfec0_0000,
            0xffff_f000,
            0x1_0000_0000,
        ]),
        6 => 0x0000_8000_0000_0000 | r.below(1 << 46) | r.pick(&[0, 0x7fff << 48]),
        7 => 0xffff_8000_0000_0000 | (r.next() & 0x7fff_ffff_ffff),
        8 => 0,
        9 => r.pick(&[
            0xffff_ffff,
            u64::MAX,
            0x7fff_ffff,
            1 << 31,
            (1 << 20) + 1,
            1 << 40,
            u64::MAX - 7,
        ]),
        _ => r.pick(&[0x7ff0, 0x7ff1, 0x7ff2, 0x7ff4, 0xffff, 0, 20, 21, 22, 1]),
    }
}

/// Fills 64 bytes at `p` (inside the scratch area) with arguments, so
/// that structures keel reads there hold adversarial fields too.
fn scribble(r: &mut Rng, p: u64) {
    if !(BUF_BASE..BUF_BASE + BUF_SIZE - 64).contains(&p) {
        return;
    }
    for i in 0..8 {
        let v = arg(r);
        // SAFETY: [p, p + 64) lies inside the scratch area (checked above),
        // guest RAM that no Rust object uses and that is identity-mapped.
        unsafe { core::ptr::write_unaligned((p + i * 8) as *mut u64, v) };
    }
}

const HVMOP_SET_PARAM: u64 = 0;
const HVMOP_GET_PARAM: u64 = 1;
const HVMOP_SET_EVTCHN_UPCALL_VECTOR: u64 = 23;
const SCHEDOP_YIELD: u64 = 0;
const CONSOLEIO_WRITE: u64 = 0;
const HYPERVISOR_CONSOLE_IO: u64 = 18;
const HYPERVISOR_HVM_OP: u64 = 34;
const HYPERVISOR_VCPU_OP: u64 = 24;
const HYPERVISOR_MULTICALL: u64 = 13;
/// Where a multicall's list goes: above every tamed structure (those lie
/// below `BUF_BASE + BUF_SIZE - 4096 + 64`), room for 16 entries.
const MULTICALL_LIST: u64 = BUF_BASE + BUF_SIZE - 1024;
const VCPUOP_REGISTER_VCPU_INFO: u64 = 10;

/// A hypercall number: 0..=63 mostly, 64 (once keel's private management
/// call, now unassigned like the rest), some out of range.
fn number(r: &mut Rng) -> u64 {
    match r.below(16) {
        0 => 64,
        1 => r.pick(&[65, 127, 0xffff, 0xffff_ffff, 1 << 32, u64::MAX]),
        _ => r.below(64),
    }
}

/// Rewrites what would stop or break this guest itself (see the top).
fn tame(r: &mut Rng, nr: u64, a: &mut [u64; 5]) {
    for x in a.iter_mut() {
        // The domain ids 0x7ff0.. as pointers: a 1 KiB answer there (say
        // XENVER_capabilities) would overwrite this guest's code at 0x8000.
        if (0x7000..0x8000).contains(x) {
            *x -= 0x7000;
        }
    }
    match nr {
        // A poll on no ports whose timeout is already past ends at once:
        // it stays (issue 12: keel kept that timeout as a deadline in the
        // past, and under VT-x the vCPU never ran again).
        proto::HYPERVISOR_SCHED_OP if a[0] == proto::SCHEDOP_POLL => {
            // struct sched_poll { u64 ports; u32 nr_ports; u64 timeout }
            let p = (BUF_BASE + r.below(BUF_SIZE - 4096)) & !7;
            let timeout = 1 + r.below(1000);
            // SAFETY: p is 8-aligned inside the scratch area, 24 bytes fit.
            unsafe {
                core::ptr::write(p as *mut u64, BUF_BASE);
                core::ptr::write((p + 8) as *mut u64, 0);
                core::ptr::write((p + 16) as *mut u64, timeout);
            }
            a[1] = p;
        }
        proto::HYPERVISOR_SCHED_OP if matches!(a[0], 1 | 2) => a[0] = SCHEDOP_YIELD,
        HYPERVISOR_HVM_OP if matches!(a[0], HVMOP_SET_PARAM | HVMOP_SET_EVTCHN_UPCALL_VECTOR) => {
            a[0] = HVMOP_GET_PARAM
        }
        HYPERVISOR_CONSOLE_IO if a[0] == CONSOLEIO_WRITE => a[1] = r.below(16),
        proto::HYPERVISOR_MEMORY_OP if a[0] == proto::XENMEM_ADD_TO_PHYSMAP => {
            // struct xen_add_to_physmap, built here, with a GFN that is not
            // the guest's RAM: the on-demand region, beyond it, the limit.
            let p = (BUF_BASE + r.below(BUF_SIZE - 4096)) & !7;
            let domid = r.pick(&[proto::DOMID_SELF, 21, 20, 0, 0x7ff1, 0xffff]);
            let space = r.pick(&[0u32, 1, 2, 3, u32::MAX]);
            let any = r.next();
            let idx = r.pick(&[0, 1, 2, 31, 32, 1 << 31, u64::MAX, any]);
            let on_demand = (proto::ON_DEMAND_BASE >> 12) + r.below(proto::ON_DEMAND_SIZE >> 12);
            let beyond = 0x800 + r.below(1 << 20);
            let gpfn = r.pick(&[
                on_demand,
                beyond,
                (1 << 36) - 1,
                1 << 36,
                u64::MAX,
                0x8_0000,
            ]);
            // SAFETY: p is 8-aligned inside the scratch area, 24 bytes fit.
            unsafe {
                core::ptr::write(p as *mut u16, domid);
                core::ptr::write((p + 2) as *mut u16, 0);
                core::ptr::write((p + 4) as *mut u32, space);
                core::ptr::write((p + 8) as *mut u64, idx);
                core::ptr::write((p + 16) as *mut u64, gpfn);
            }
            a[1] = p;
        }
        HYPERVISOR_MULTICALL => {
            // keel runs each entry as the call it names: a list drawn at
            // random would run untamed calls (one registered this guest's
            // page tables as its vcpu_info). Up to 4 entries, each drawn
            // and tamed as a direct call, never a nested multicall (keel
            // refuses those, and one would run an untamed list); the count
            // sometimes beyond keel's bound.
            let n = r.below(5);
            let mut list = [[0u64; 8]; 4];
            for e in list.iter_mut().take(n as usize) {
                let mut nr = number(r);
                if nr == HYPERVISOR_MULTICALL {
                    nr = 65; // unassigned instead
                }
                let mut b = [arg(r), arg(r), arg(r), arg(r), arg(r)];
                tame(r, nr, &mut b);
                *e = [nr, 0, b[0], b[1], b[2], b[3], b[4], 0];
            }
            for (i, e) in list.iter().enumerate() {
                for (j, w) in e.iter().enumerate() {
                    let at = MULTICALL_LIST + 64 * i as u64 + 8 * j as u64;
                    // SAFETY: inside the scratch area's last KiB, which only
                    // this list uses.
                    unsafe { core::ptr::write(at as *mut u64, *w) };
                }
            }
            a[0] = MULTICALL_LIST;
            a[1] = r.pick(&[n, n, n, 4097, u64::MAX]);
        }
        HYPERVISOR_VCPU_OP if a[0] == VCPUOP_REGISTER_VCPU_INFO => {
            // struct vcpu_register_vcpu_info { mfn, offset, rsvd }: keel
            // writes the vcpu_info there from now on, so the frame is the
            // scratch area's or one keel must refuse.
            let p = (BUF_BASE + r.below(BUF_SIZE - 4096)) & !7;
            let scratch = (BUF_BASE >> 12) + r.below(BUF_SIZE >> 12);
            let on_demand = (proto::ON_DEMAND_BASE >> 12) + r.below(proto::ON_DEMAND_SIZE >> 12);
            let mfn = r.pick(&[scratch, on_demand, 0x800, 0x8_0000, u64::MAX]);
            let offset = r.pick(&[0u32, 64, 4096 - 64, 4096 - 63, 4096, u32::MAX]);
            // SAFETY: p is 8-aligned inside the scratch area, 16 bytes fit.
            unsafe {
                core::ptr::write(p as *mut u64, mfn);
                core::ptr::write((p + 8) as *mut u32, offset);
                core::ptr::write((p + 12) as *mut u32, 0);
            }
            a[2] = p;
        }
        _ => {}
    }
}

/// The hypercall with all five argument registers (RDI, RSI, RDX, R10, R8).
#[inline(never)]
fn hypercall5(insn: HypercallInsn, nr: u64, a: [u64; 5]) -> u64 {
    let mut rax = nr;
    macro_rules! call {
        ($insn:literal) => {
            // SAFETY: exits to keel, which may write RAX and guest memory
            // at the pointers passed (only the scratch area or memory this
            // guest does not use, see the top); not `nomem`. Callers wrap
            // it in expect_fault(3, ..).
            unsafe {
                core::arch::asm!(
                    $insn,
                    inout("rax") rax,
                    in("rdi") a[0],
                    in("rsi") a[1],
                    in("rdx") a[2],
                    in("r10") a[3],
                    in("r8") a[4],
                    options(nostack),
                )
            }
        };
    }
    match insn {
        HypercallInsn::Vmcall => call!("vmcall"),
        HypercallInsn::Vmmcall => call!("vmmcall"),
    }
    rax
}

/// Return codes by class.
struct Histogram {
    zero: u64,
    /// -1 ..= -127
    errno: [u64; 128],
    other_negative: u64,
    positive: u64,
    faulted: u64,
}

impl Histogram {
    fn add(&mut self, rc: u64) {
        let v = rc as i64;
        match v {
            0 => self.zero += 1,
            -127..=-1 => self.errno[(-v) as usize] += 1,
            v if v < 0 => self.other_negative += 1,
            _ => self.positive += 1,
        }
    }
    fn print(&self, calls: u64) {
        use core::fmt::Write as _;
        let mut c = crate::console::Console;
        let _ = write!(
            c,
            "fuzz: {} hypercalls, rc histogram: 0:{}",
            calls, self.zero
        );
        for (e, &n) in self.errno.iter().enumerate() {
            if n != 0 {
                let _ = write!(c, " -{}:{}", e, n);
            }
        }
        let _ = writeln!(
            c,
            " other-negative:{} positive:{} faulted:{}",
            self.other_negative, self.positive, self.faulted
        );
    }
}

#[derive(Default)]
struct Kinds {
    hypercall: u64,
    port_in: u64,
    port_out: u64,
    rdmsr: u64,
    rdmsr_gp: u64,
    wrmsr: u64,
    wrmsr_gp: u64,
    cpuid: u64,
}

/// An MSR: those keel handles, those it must refuse, and random ones.
fn msr(r: &mut Rng) -> u32 {
    const KNOWN: &[u32] = &[
        0x10,
        0x1b,
        0x3a,
        0x3b,
        0x48,
        0x49,
        0x8b,
        0x10a,
        0xe7,
        0xe8,
        0xfe,
        0x174,
        0x175,
        0x176,
        0x1a0,
        0x1d9,
        0x277,
        0x2ff,
        0x480,
        0x48d,
        0x6e0,
        0x802,
        0x830,
        0x838,
        0xc000_0080,
        0xc000_0081,
        0xc000_0082,
        0xc000_0100,
        0xc000_0101,
        0xc000_0102,
        0xc000_0103,
        0xc001_0010,
        0xc001_0015,
        0xc001_001f,
        0xc001_0114,
        0xc001_0117,
        0xc001_0140,
        0x4000_0000,
        0x4000_0001,
        proto::SCRATCH_MSR,
    ];
    match r.below(5) {
        0 | 1 => r.pick(KNOWN),
        2 => r.below(0x2000) as u32,
        3 => r.pick(&[0xc000_0000u32, 0xc001_0000, 0x4000_0000]) + r.below(0x2000) as u32,
        _ => r.next() as u32,
    }
}

/// MSRs whose writes would only break this guest's own paging or its
/// timer interrupt (EFER, the x2APIC).
fn self_harming_write(m: u32) -> bool {
    m == 0xc000_0080 || (0x800..=0x8ff).contains(&m)
}

pub fn run() -> ! {
    let insn = HypercallInsn::detect();
    let n = arch::inl(proto::FUZZ_COUNT) as u64;
    let seed = arch::inl(proto::FUZZ_SEED) as u64;
    println!("fuzz: {} hypercalls, seed {:#x} ({})", n, seed, insn.name());
    let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut h = Histogram {
        zero: 0,
        errno: [0; 128],
        other_negative: 0,
        positive: 0,
        faulted: 0,
    };
    let mut k = Kinds::default();
    while k.hypercall < n {
        match r.below(8) {
            0..=4 => {
                let nr = number(&mut r);
                let mut a = [
                    arg(&mut r),
                    arg(&mut r),
                    arg(&mut r),
                    arg(&mut r),
                    arg(&mut r),
                ];
                if r.below(2) == 0 {
                    a[0] = r.below(41); // a plausible sub-op
                }
                for &p in &a {
                    scribble(&mut r, p);
                }
                tame(&mut r, nr, &mut a);
                let (rc, f) = trap::expect_fault(3, || hypercall5(insn, nr, a));
                if f.count != 0 {
                    h.faulted += 1;
                } else {
                    h.add(rc);
                }
                k.hypercall += 1;
            }
            5 => {
                let port = r.next() as u16;
                let size = r.pick(&[1u8, 2, 4]);
                if r.below(2) == 0 {
                    k.port_in += 1;
                    let v = r.next();
                    core::hint::black_box(match size {
                        1 => arch::inb_rax(port, v),
                        2 => arch::inw_rax(port, v),
                        _ => arch::inl_rax(port, v),
                    });
                } else if !matches!(port, proto::CONSOLE | proto::DONE | proto::TIMER) {
                    k.port_out += 1;
                    let v = r.next() as u32;
                    match size {
                        1 => arch::outb(port, v as u8),
                        2 => arch::outw(port, v as u16),
                        _ => arch::outl(port, v),
                    }
                }
            }
            6 => {
                let m = msr(&mut r);
                if r.below(2) == 0 {
                    k.rdmsr += 1;
                    let (_, f) = trap::expect_fault(2, || arch::rdmsr(m));
                    k.rdmsr_gp += (f.count != 0) as u64;
                } else if !self_harming_write(m) {
                    k.wrmsr += 1;
                    let v = arg(&mut r);
                    let (_, f) = trap::expect_fault(2, || arch::wrmsr(m, v));
                    k.wrmsr_gp += (f.count != 0) as u64;
                }
            }
            _ => {
                k.cpuid += 1;
                let leaf = match r.below(4) {
                    0 => r.below(0x20) as u32,
                    1 => 0x4000_0000 + r.below(0x20) as u32,
                    2 => 0x8000_0000 + r.below(0x30) as u32,
                    _ => r.next() as u32,
                };
                core::hint::black_box(arch::cpuid(leaf, r.next() as u32));
            }
        }
    }
    // End the line a CONSOLE_IO write may have left open.
    println!();
    h.print(k.hypercall);
    println!(
        "fuzz: by kind: hypercall {} port-in {} port-out {} rdmsr {} ({} #GP) wrmsr {} ({} #GP) cpuid {}",
        k.hypercall, k.port_in, k.port_out, k.rdmsr, k.rdmsr_gp, k.wrmsr, k.wrmsr_gp, k.cpuid
    );
    arch::outl(proto::SCRATCH, k.hypercall as u32);
    arch::done(proto::DONE_PASS)
}
