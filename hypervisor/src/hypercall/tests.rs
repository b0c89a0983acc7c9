//! The dispatcher on the host: real domains in the host build's fake
//! physical memory, a fake vCPU whose page tables live in its guest RAM,
//! and hypercalls made the way a guest makes them (registers in, RAX out).

use super::*;
use crate::domain::{table, Kind, Memory, Outcome, ShutdownReason, Vcpu};
use crate::hvm::vcpu::{Event, Exit, Regs, StartMode, Vcpu as HwVcpu};
use crate::loader::pvh::MemType;
use crate::mm::p2m::{Format, P2m, Perm};
use crate::mm::phys::{self, Tables};
use crate::xen::abi::{self, consoleio, evtchnop, schedop, xenmem, xenver, Hypercall};
use alloc::boxed::Box;
use std::sync::atomic::{AtomicU16, Ordering as O};

/// A vCPU's registers and paging mode, nothing more.
#[derive(Default)]
struct FakeHw {
    regs: Regs,
    cr: [u64; 4],
    flushes: u32,
    injected: Vec<Event>,
}

impl HwVcpu for FakeHw {
    fn reset(&mut self, _: StartMode) {}
    fn set_p2m_root(&mut self, _: u64) {}
    fn run(&mut self) -> Exit {
        Exit::Hlt { len: 1 }
    }
    fn regs(&self) -> &Regs {
        &self.regs
    }
    fn regs_mut(&mut self) -> &mut Regs {
        &mut self.regs
    }
    fn inject(&mut self, e: Event) {
        self.injected.push(e);
    }
    fn can_inject_interrupt(&self) -> bool {
        true
    }
    fn request_interrupt_window(&mut self, _: bool) {}
    fn control_regs(&self) -> [u64; 4] {
        self.cr
    }
    fn flush_p2m(&mut self) {
        self.flushes += 1;
    }
    fn backend(&self) -> &'static str {
        "fake"
    }
    fn unbind(&mut self) {}
    fn set_pause_exiting(&mut self, _: bool) {}
    fn hypercall_insn(&self) -> [u8; 3] {
        [0x0f, 0x01, 0xc1]
    }
    fn set_io_intercept(&mut self, _: u16, _: bool) {}
    fn set_xcr0(&mut self, _: u64) -> bool {
        true
    }
}

const RAM: u64 = 4 << 20;
/// Guest page tables (long mode) at these guest-physical pages.
const PML4: u64 = 0x1000;
/// Guest-virtual layout the fake vCPU's tables give: [GVA, GVA + 1 MiB)
/// maps guest-physical [1 MiB, 2 MiB) writable, except one read-only page
/// at `RO_PAGE`, and nothing at `HOLE`.
const GVA: u64 = 0xffff_8000_0000_0000;
const RO_PAGE: u64 = GVA + 0x8000;
const HOLE: u64 = GVA + 0x10_0000;

static NEXT_ID: AtomicU16 = AtomicU16::new(100);

struct T {
    dom: Arc<Domain>,
    hw: FakeHw,
}

/// A domain with `RAM` of memory whose vCPU 0 runs in long mode with the
/// page tables described at [`GVA`].
fn domain(privileged: bool) -> T {
    let id = NEXT_ID.fetch_add(1, O::SeqCst);
    let p2m = P2m::new(Format::Ept, &mut Tables).unwrap();
    let si = phys::alloc_zeroed(1).unwrap();
    let mut mem = Memory::new(p2m, si, false);
    let ram = phys::alloc_zeroed(RAM / 4096).unwrap();
    mem.own(ram, RAM / 4096);
    mem.map_4k_range(0, ram, RAM, Perm::RWX).unwrap();
    mem.ram_pages = RAM / 4096;
    mem.gfn_limit = RAM / 4096;
    mem.e820 = alloc::vec![
        (0, 0x9f000, MemType::Ram),
        (0x10_0000, RAM - 0x10_0000, MemType::Ram)
    ];
    // PML4[256] -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000: 256 pages from 1 MiB.
    let w = |m: &Memory, gpa: u64, v: u64| assert!(m.write(gpa, &v.to_le_bytes()));
    w(&mem, PML4 + 256 * 8, 0x2003);
    w(&mem, 0x2000, 0x3003);
    w(&mem, 0x3000, 0x4003);
    for i in 0..256u64 {
        let flags = if GVA + i * 4096 == RO_PAGE { 0x1 } else { 0x3 };
        w(&mem, 0x4000 + i * 8, (0x10_0000 + i * 4096) | flags);
    }
    let v = Arc::new(Vcpu::new(id, 0, 0, Box::new(FakeHw::default())));
    let dom = Arc::new(Domain::new(
        id,
        "test",
        privileged,
        Kind::Pvh {
            passthrough: false,
            own_acpi: true,
        },
        mem,
        alloc::vec![v],
    ));
    table::insert(dom.clone()).unwrap();
    let hw = FakeHw {
        cr: [0x8000_0011, PML4, 1 << 5, 0x500],
        ..FakeHw::default()
    };
    T { dom, hw }
}

impl T {
    /// Issues hypercall `nr` with `args`; returns RAX as a signed value.
    fn call(&mut self, nr: u64, args: &[u64]) -> (i64, Next) {
        let r = &mut self.hw.regs;
        r.rax = nr;
        let a = |i: usize| args.get(i).copied().unwrap_or(0);
        (r.rdi, r.rsi, r.rdx, r.r10, r.r8) = (a(0), a(1), a(2), a(3), a(4));
        let v = self.dom.vcpus[0].clone();
        let next = dispatch(&mut Ctx {
            dom: &self.dom,
            vcpu: &v,
            hw: &mut self.hw,
        });
        (self.hw.regs.rax as i64, next)
    }

    fn ret(&mut self, nr: Hypercall, args: &[u64]) -> i64 {
        self.call(nr.nr(), args).0
    }

    fn put(&self, gva: u64, bytes: &[u8]) {
        let gpa = 0x10_0000 + (gva - GVA);
        assert!(self.dom.mem.write(gpa, bytes));
    }

    fn get(&self, gva: u64, n: usize) -> Vec<u8> {
        let gpa = 0x10_0000 + (gva - GVA);
        let mut b = vec![0u8; n];
        assert!(self.dom.mem.read(gpa, &mut b));
        b
    }
}

impl Drop for T {
    fn drop(&mut self) {
        self.dom.end(Outcome::Killed(String::from("test over")));
    }
}

const EFAULT: i64 = -14;
const EINVAL: i64 = -22;
const ENOSYS: i64 = -38;
const EPERM: i64 = -1;

#[test]
fn xen_version_and_unknown_calls() {
    let mut t = domain(false);
    assert_eq!(
        t.ret(Hypercall::XenVersion, &[xenver::VERSION]),
        0x0004_0011
    );
    assert_eq!(
        t.ret(Hypercall::XenVersion, &[xenver::EXTRAVERSION, GVA]),
        0
    );
    assert_eq!(&t.get(GVA, 6), b"-keel\0");
    assert_eq!(t.ret(Hypercall::XenVersion, &[xenver::PAGESIZE]), 4096);
    let before = t.dom.stats.unimplemented.load(O::Relaxed);
    assert_eq!(t.call(99, &[]).0, ENOSYS);
    assert_eq!(t.call(u64::MAX, &[]).0, ENOSYS);
    assert_eq!(t.ret(Hypercall::XenVersion, &[12345]), ENOSYS);
    assert_eq!(t.dom.stats.unimplemented.load(O::Relaxed), before + 3);
}

#[test]
fn an_unprivileged_console_flood_is_rate_limited() {
    use crate::domain::console::{BURST, RATE};
    let mut t = domain(false);
    t.put(GVA, &[b'z'; 4096]);
    // 64 KiB at once: the burst is shown, the rest is dropped and counted;
    // each call still succeeds (as on Xen). The fake clock is shared with
    // other tests: whatever time they add refills RATE bytes a second.
    let refill = |t0: u64| RATE * (crate::platform::tsc() - t0).div_ceil(1_000_000_000) + 1;
    let t0 = crate::platform::tsc();
    for _ in 0..16 {
        assert_eq!(
            t.ret(Hypercall::ConsoleIo, &[consoleio::WRITE, 4096, GVA]),
            0
        );
    }
    let dropped = t.dom.console_dropped();
    assert!(dropped <= 16 * 4096 - BURST && dropped + refill(t0) >= 16 * 4096 - BURST);
    // A second later, RATE bytes more get through, and the count restarts.
    crate::platform::advance_ns(1_000_000_000);
    assert_eq!(
        t.ret(Hypercall::ConsoleIo, &[consoleio::WRITE, 4096, GVA]),
        0
    );
    assert!(t.dom.console_dropped() <= 4096 - RATE);
    // A bad pointer is still -EFAULT, a huge count is cut, not an overflow.
    assert_eq!(
        t.ret(Hypercall::ConsoleIo, &[consoleio::WRITE, 16, HOLE]),
        EFAULT
    );
    assert_eq!(
        t.ret(Hypercall::ConsoleIo, &[consoleio::WRITE, u64::MAX, GVA]),
        0
    );
}

#[test]
fn bad_pointers_are_efault() {
    let mut t = domain(false);
    // Unmapped, null, non-canonical, read-only (a write), straddling into a hole.
    for p in [HOLE, 0, 0x0000_8000_0000_0000, RO_PAGE, HOLE - 8] {
        assert_eq!(
            t.ret(Hypercall::XenVersion, &[xenver::EXTRAVERSION, p]),
            EFAULT,
            "pointer {p:#x}"
        );
    }
    // A read from the read-only page is fine (GET_FEATURES reads, then writes).
    t.put(RO_PAGE, &0u32.to_le_bytes());
    assert_eq!(
        t.ret(Hypercall::XenVersion, &[xenver::GET_FEATURES, RO_PAGE]),
        EFAULT
    );
    assert_eq!(
        t.ret(Hypercall::XenVersion, &[xenver::GET_FEATURES, GVA]),
        0
    );
    // Nothing was written where the guest could not write.
    assert_eq!(t.get(RO_PAGE, 4), [0; 4]);
    // Paging off: addresses are guest-physical; beyond RAM is a fault.
    t.hw.cr = [0x11, 0, 0, 0];
    assert_eq!(
        t.ret(Hypercall::XenVersion, &[xenver::EXTRAVERSION, 0x20_0000]),
        0
    );
    assert_eq!(
        t.ret(Hypercall::XenVersion, &[xenver::EXTRAVERSION, RAM - 4]),
        EFAULT
    );
}

#[test]
fn memory_map_and_reservation() {
    let mut t = domain(false);
    // struct xen_memory_map { nr_entries; buffer } at GVA, entries at GVA + 64.
    let mut m = [0u8; 16];
    m[..4].copy_from_slice(&8u32.to_le_bytes());
    m[8..].copy_from_slice(&(GVA + 64).to_le_bytes());
    t.put(GVA, &m);
    assert_eq!(t.ret(Hypercall::MemoryOp, &[xenmem::MEMORY_MAP, GVA]), 0);
    assert_eq!(u32::from_le_bytes(t.get(GVA, 4).try_into().unwrap()), 2);
    let e1 = t.get(GVA + 64 + 20, 20);
    assert_eq!(u64::from_le_bytes(e1[..8].try_into().unwrap()), 0x10_0000);
    // Capacity 1: one entry.
    t.put(GVA, &1u32.to_le_bytes());
    assert_eq!(t.ret(Hypercall::MemoryOp, &[xenmem::MEMORY_MAP, GVA]), 0);
    assert_eq!(u32::from_le_bytes(t.get(GVA, 4).try_into().unwrap()), 1);
    // The buffer in a hole: -EFAULT.
    t.put(GVA + 8, &HOLE.to_le_bytes());
    assert_eq!(
        t.ret(Hypercall::MemoryOp, &[xenmem::MEMORY_MAP, GVA]),
        EFAULT
    );
    // Reservations of itself only.
    t.put(GVA, &abi::DOMID_SELF.to_le_bytes());
    assert_eq!(
        t.ret(Hypercall::MemoryOp, &[xenmem::CURRENT_RESERVATION, GVA]),
        (RAM / 4096) as i64
    );
    t.put(GVA, &0u16.to_le_bytes());
    assert_eq!(
        t.ret(Hypercall::MemoryOp, &[xenmem::CURRENT_RESERVATION, GVA]),
        EPERM
    );
}

#[test]
fn add_to_physmap_places_shared_info() {
    let mut t = domain(false);
    // struct xen_add_to_physmap { domid, size, space, idx, gpfn }.
    let mut a = [0u8; 24];
    a[..2].copy_from_slice(&abi::DOMID_SELF.to_le_bytes());
    a[4..8].copy_from_slice(&abi::xenmapspace::SHARED_INFO.to_le_bytes());
    a[16..].copy_from_slice(&0x300u64.to_le_bytes());
    t.put(GVA, &a);
    assert_eq!(
        t.ret(Hypercall::MemoryOp, &[xenmem::ADD_TO_PHYSMAP, GVA]),
        0
    );
    assert_eq!(t.dom.mem.translate(0x30_0000), Some(t.dom.mem.shared_info));
    assert!(t.hw.flushes > 0, "a replaced mapping flushes");
    // Unknown space: -ENOSYS; a huge gfn: -EINVAL.
    a[4..8].copy_from_slice(&77u32.to_le_bytes());
    t.put(GVA, &a);
    assert_eq!(
        t.ret(Hypercall::MemoryOp, &[xenmem::ADD_TO_PHYSMAP, GVA]),
        ENOSYS
    );
    a[4..8].copy_from_slice(&abi::xenmapspace::SHARED_INFO.to_le_bytes());
    a[16..].copy_from_slice(&(1u64 << 40).to_le_bytes());
    t.put(GVA, &a);
    assert_eq!(
        t.ret(Hypercall::MemoryOp, &[xenmem::ADD_TO_PHYSMAP, GVA]),
        EINVAL
    );
}

#[test]
fn event_channels_within_and_between_domains() {
    let mut a = domain(false);
    let mut b = domain(false);
    // bind_virq(TIMER, vcpu 0): the port comes back in the struct.
    let mut bv = [0u8; 12];
    bv[..4].copy_from_slice(&abi::virq::TIMER.to_le_bytes());
    a.put(GVA, &bv);
    assert_eq!(
        a.ret(Hypercall::EventChannelOp, &[evtchnop::BIND_VIRQ, GVA]),
        0
    );
    let virq_port = u32::from_le_bytes(a.get(GVA + 8, 4).try_into().unwrap());
    assert!(virq_port > 0);
    // a allocates an unbound port for b; b binds to it; b sends; a's port
    // is pending.
    let mut au = [0u8; 8];
    au[..2].copy_from_slice(&abi::DOMID_SELF.to_le_bytes());
    au[2..4].copy_from_slice(&b.dom.id.to_le_bytes());
    a.put(GVA, &au);
    assert_eq!(
        a.ret(Hypercall::EventChannelOp, &[evtchnop::ALLOC_UNBOUND, GVA]),
        0
    );
    let a_port = u32::from_le_bytes(a.get(GVA + 4, 4).try_into().unwrap());
    let mut bi = [0u8; 12];
    bi[..2].copy_from_slice(&a.dom.id.to_le_bytes());
    bi[4..8].copy_from_slice(&a_port.to_le_bytes());
    b.put(GVA, &bi);
    assert_eq!(
        b.ret(
            Hypercall::EventChannelOp,
            &[evtchnop::BIND_INTERDOMAIN, GVA]
        ),
        0
    );
    let b_port = u32::from_le_bytes(b.get(GVA + 8, 4).try_into().unwrap());
    assert!(!a.dom.port_pending(a_port));
    b.put(GVA, &b_port.to_le_bytes());
    assert_eq!(b.ret(Hypercall::EventChannelOp, &[evtchnop::SEND, GVA]), 0);
    assert!(
        a.dom.port_pending(a_port),
        "the event reached the other domain"
    );
    // Unbound ports for a third domain are the toolstack's: -EPERM.
    au[..2].copy_from_slice(&b.dom.id.to_le_bytes());
    a.put(GVA, &au);
    assert_eq!(
        a.ret(Hypercall::EventChannelOp, &[evtchnop::ALLOC_UNBOUND, GVA]),
        EPERM
    );
    // Bad ports: -EINVAL; close then send: -EINVAL.
    a.put(GVA, &9999u32.to_le_bytes());
    assert_eq!(
        a.ret(Hypercall::EventChannelOp, &[evtchnop::SEND, GVA]),
        EINVAL
    );
    b.put(GVA, &b_port.to_le_bytes());
    assert_eq!(b.ret(Hypercall::EventChannelOp, &[evtchnop::CLOSE, GVA]), 0);
    assert_eq!(
        b.ret(Hypercall::EventChannelOp, &[evtchnop::SEND, GVA]),
        EINVAL
    );
}

#[test]
fn sched_ops_block_poll_and_shutdown() {
    let mut t = domain(false);
    assert_eq!(
        t.call(Hypercall::SchedOp.nr(), &[schedop::BLOCK]).1,
        Next::Block(crate::domain::Wait::Halt)
    );
    // shutdown(reboot) ends the domain; an unknown reason is refused.
    t.put(GVA, &1u32.to_le_bytes());
    assert_eq!(
        t.call(Hypercall::SchedOp.nr(), &[schedop::SHUTDOWN, GVA]).1,
        Next::End(Outcome::Shutdown(ShutdownReason::Reboot))
    );
    t.put(GVA, &77u32.to_le_bytes());
    assert_eq!(t.ret(Hypercall::SchedOp, &[schedop::SHUTDOWN, GVA]), EINVAL);
    // poll: more than 128 ports, an invalid port, a bad array pointer.
    let poll = |t: &mut T, ports: u64, n: u32| {
        let mut p = [0u8; 24];
        p[..8].copy_from_slice(&ports.to_le_bytes());
        p[8..12].copy_from_slice(&n.to_le_bytes());
        t.put(GVA, &p);
        t.call(Hypercall::SchedOp.nr(), &[schedop::POLL, GVA])
    };
    assert_eq!(poll(&mut t, GVA + 64, 129).0, EINVAL);
    t.put(GVA + 64, &5000u32.to_le_bytes());
    assert_eq!(poll(&mut t, GVA + 64, 1).0, EINVAL);
    assert_eq!(poll(&mut t, HOLE, 4).0, EFAULT);
    assert_eq!(t.ret(Hypercall::SchedOp, &[99]), ENOSYS);
}

#[test]
fn privileged_calls_are_refused_to_others() {
    let mut t = domain(false);
    // Arguments point at nothing: the refusal comes before any read.
    assert_eq!(t.call(keel_mgmt::HYPERCALL, &[0, HOLE, 64, 0]).0, EPERM);
    assert_eq!(t.ret(Hypercall::PlatformOp, &[HOLE]), EPERM);
    let mut d0 = domain(true);
    // dom0's platform_op checks the interface version.
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(&55u32.to_le_bytes());
    h[4..].copy_from_slice(&0x0300_0000u32.to_le_bytes());
    d0.put(GVA, &h);
    assert_eq!(d0.ret(Hypercall::PlatformOp, &[GVA]), -13);
}

#[test]
fn vcpu_op_checks_its_arguments() {
    let mut t = domain(false);
    assert_eq!(t.ret(Hypercall::VcpuOp, &[abi::vcpuop::IS_UP, 0]), 1);
    assert_eq!(t.ret(Hypercall::VcpuOp, &[abi::vcpuop::IS_UP, 5]), -2);
    // register_vcpu_info with an offset past the page: -EINVAL.
    let mut r = [0u8; 16];
    r[..8].copy_from_slice(&0x200u64.to_le_bytes());
    r[8..12].copy_from_slice(&4090u32.to_le_bytes());
    t.put(GVA, &r);
    assert_eq!(
        t.ret(
            Hypercall::VcpuOp,
            &[abi::vcpuop::REGISTER_VCPU_INFO, 0, GVA]
        ),
        EINVAL
    );
    r[8..12].copy_from_slice(&64u32.to_le_bytes());
    t.put(GVA, &r);
    assert_eq!(
        t.ret(
            Hypercall::VcpuOp,
            &[abi::vcpuop::REGISTER_VCPU_INFO, 0, GVA]
        ),
        0
    );
    assert_eq!(
        t.ret(
            Hypercall::VcpuOp,
            &[abi::vcpuop::REGISTER_VCPU_INFO, 0, GVA]
        ),
        EINVAL,
        "only once"
    );
}

/// Random hypercall numbers, sub-ops and arguments (valid, edge and
/// hostile pointers) from an unprivileged and a privileged domain: keel
/// answers every one (no panic), and RAX is a result, never garbage.
#[test]
fn random_hypercalls_never_panic() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for privileged in [false, true] {
        let mut t = domain(privileged);
        for i in 0..20_000u32 {
            let pick = |r: u64| match r % 8 {
                0 => GVA + r % 0x10_0000,
                1 => HOLE + r % 4096,
                2 => RO_PAGE + r % 4096,
                3 => r,
                4 => 0,
                5 => u64::MAX - r % 64,
                6 => r % 64,
                _ => GVA + 0x10_0000 - r % 64,
            };
            let nr = if i % 4 == 0 {
                rnd() % 70
            } else {
                [17, 12, 29, 32, 34, 20, 24, 37, 18, 31][rnd() as usize % 10]
            };
            let args = [rnd() % 16, pick(rnd()), pick(rnd()), rnd(), rnd()];
            // Scribble over the argument area now and then.
            if i % 7 == 0 {
                let r = rnd();
                t.put(GVA + (r % 0xff000), &r.to_le_bytes());
            }
            if nr == Hypercall::SchedOp.nr() && args[0] == schedop::SHUTDOWN {
                continue; // ends the domain: the test goes on with it alive
            }
            let (rax, _) = t.call(nr, &args);
            assert!(rax >= -200, "hypercall {nr} {args:x?}: RAX {rax:#x}");
        }
    }
}

/// A vCPU blocked in SCHEDOP_poll wakes when its port is signalled, and the
/// scheduler has it runnable again; one blocked in HLT does not wake for a
/// masked port's event, only for an interrupt.
#[test]
fn blocked_vcpus_wake_on_their_condition() {
    use crate::domain::Wait;
    let mut t = domain(false);
    let v = t.dom.vcpus[0].clone();
    t.dom.start(&|_| 0b1, &|_| 0);
    let r = v.sched_ref();
    assert_eq!(
        crate::sched::decide(0, crate::sched::now_ns())
            .run
            .map(|x| x.domid),
        Some(r.domid)
    );
    // An IPI port to poll on.
    let mut b = [0u8; 8];
    t.put(GVA, &b);
    assert_eq!(
        t.ret(Hypercall::EventChannelOp, &[evtchnop::BIND_IPI, GVA]),
        0
    );
    let port = u32::from_le_bytes(t.get(GVA + 4, 4).try_into().unwrap());
    b[..8].copy_from_slice(&(GVA + 64).to_le_bytes());
    let mut p = [0u8; 24];
    p[..8].copy_from_slice(&(GVA + 64).to_le_bytes());
    p[8..12].copy_from_slice(&1u32.to_le_bytes());
    t.put(GVA + 64, &port.to_le_bytes());
    t.put(GVA + 128, &p);
    assert_eq!(
        t.call(Hypercall::SchedOp.nr(), &[schedop::POLL, GVA + 128])
            .1,
        Next::Block(Wait::Poll)
    );
    {
        let mut st = v.st.lock();
        st.wait = Some(Wait::Poll);
        assert!(!t.dom.ready(&st), "nothing pending yet");
        v.block(&mut st, Wait::Poll);
    }
    assert_eq!(crate::sched::decide(0, crate::sched::now_ns()).run, None);
    // The event: signal the port (as EVTCHNOP_send of an IPI port does).
    t.put(GVA, &port.to_le_bytes());
    assert_eq!(t.ret(Hypercall::EventChannelOp, &[evtchnop::SEND, GVA]), 0);
    assert_eq!(v.st.lock().wait, None, "woken");
    assert_eq!(crate::sched::decide(0, crate::sched::now_ns()).run, Some(r));
    // HLT: a pending but masked port does not end it; a local APIC
    // interrupt does.
    {
        let mut st = v.st.lock();
        st.wait = Some(Wait::Halt);
        assert!(!t.dom.ready(&st));
        v.block(&mut st, Wait::Halt);
        st.lapic
            .write(crate::hvm::vlapic::MSR_BASE + 0xf, 0x1ff, 0)
            .unwrap(); // SVR: enable
        st.lapic.raise(0x40);
        t.dom.poke(&v, &mut st);
        assert_eq!(st.wait, None);
    }
}

/// The exit path: HLT blocks (or parks with interrupts off), CPUID answers
/// Xen's leaves, a bad MSR value is a #GP, MWAIT is a #UD, the hypercall
/// page is written.
#[test]
fn the_exit_path_serves_the_common_exits() {
    use crate::domain::Wait;
    use crate::hvm::exit::{handle, Step};
    let mut t = domain(false);
    let v = t.dom.vcpus[0].clone();
    let step = |t: &mut T, e: Exit| {
        handle(
            &mut Ctx {
                dom: &t.dom,
                vcpu: &v,
                hw: &mut t.hw,
            },
            e,
        )
    };
    t.hw.regs.rflags = 0x202;
    assert_eq!(step(&mut t, Exit::Hlt { len: 1 }), Step::Block(Wait::Halt));
    t.hw.regs.rflags = 0x2;
    assert_eq!(step(&mut t, Exit::Hlt { len: 1 }), Step::Block(Wait::Park));
    t.hw.regs.rax = 0x4000_0000;
    t.hw.regs.rcx = 0;
    assert_eq!(step(&mut t, Exit::Cpuid { len: 2 }), Step::Go);
    assert_eq!(t.hw.regs.rbx as u32, u32::from_le_bytes(*b"XenV"));
    // IA32_PAT with a reserved memory type: #GP, RIP unchanged.
    let rip = t.hw.regs.rip;
    assert_eq!(
        step(
            &mut t,
            Exit::MsrWrite {
                msr: 0x277,
                value: 0x0202_0202_0202_0202,
                len: 2
            }
        ),
        Step::Go
    );
    assert_eq!(t.hw.regs.rip, rip);
    assert!(matches!(
        t.hw.injected.last(),
        Some(Event::Exception { vector: 13, .. })
    ));
    // AMD's HWCR says the TSC counts at P0; OSVW knows no errata; a
    // write that changes HWCR is a #GP.
    t.hw.regs.rcx = 0xc001_0015;
    assert_eq!(
        step(
            &mut t,
            Exit::MsrRead {
                msr: 0xc001_0015,
                len: 2
            }
        ),
        Step::Go
    );
    assert_eq!((t.hw.regs.rdx << 32) | t.hw.regs.rax, 1 << 24);
    t.hw.regs.rax = 7;
    assert_eq!(
        step(
            &mut t,
            Exit::MsrRead {
                msr: 0xc001_0140,
                len: 2
            }
        ),
        Step::Go
    );
    assert_eq!(t.hw.regs.rax, 0);
    let n = t.hw.injected.len();
    let hwcr = |value| Exit::MsrWrite {
        msr: 0xc001_0015,
        value,
        len: 2,
    };
    assert_eq!(step(&mut t, hwcr(1 << 24)), Step::Go);
    assert_eq!(t.hw.injected.len(), n, "the value it reads is accepted");
    assert_eq!(step(&mut t, hwcr(1 << 30)), Step::Go);
    assert_eq!(t.hw.injected.len(), n + 1, "anything else is a #GP");
    let rip = t.hw.regs.rip;
    // MONITOR/MWAIT(X): not offered, so #UD with RIP unchanged.
    assert_eq!(step(&mut t, Exit::MonitorMwait), Step::Go);
    assert_eq!(t.hw.regs.rip, rip);
    assert_eq!(
        t.hw.injected.last(),
        Some(&Event::Exception {
            vector: 6,
            error_code: None
        })
    );
    // The hypercall page: inside RAM, written with VMCALL entries; outside, #GP.
    assert_eq!(
        step(
            &mut t,
            Exit::MsrWrite {
                msr: 0x4000_0000,
                value: 0x5000,
                len: 2
            }
        ),
        Step::Go
    );
    let mut page = [0u8; 9];
    assert!(t.dom.mem.read(0x5000 + 32, &mut page));
    assert_eq!(page, [0xb8, 1, 0, 0, 0, 0x0f, 0x01, 0xc1, 0xc3]);
    let n = t.hw.injected.len();
    step(
        &mut t,
        Exit::MsrWrite {
            msr: 0x4000_0000,
            value: 1 << 40,
            len: 2,
        },
    );
    assert_eq!(t.hw.injected.len(), n + 1);
    // Memory the domain does not have: it is killed, with the reason.
    match step(
        &mut t,
        Exit::NestedPageFault {
            gpa: 1 << 33,
            access: crate::hvm::vcpu::Access::Read,
            present: false,
        },
    ) {
        Step::End(Outcome::Killed(why)) => assert!(why.contains("no memory"), "{why}"),
        s => panic!("{s:?}"),
    }
}

/// Issue 12: a SCHEDOP_poll on no ports with a timeout, ended before the
/// timeout (at once, the timeout being past, or by an event), must leave
/// no deadline behind. A stale one in the past made every VT-x entry end
/// at once (VMX-preemption timer 0): dom0's vCPU never ran again.
#[test]
fn a_finished_poll_leaves_no_deadline() {
    use crate::domain::Wait;
    use crate::hvm::exit::prepare_entry;
    let mut t = domain(false);
    let v = t.dom.vcpus[0].clone();
    let poll = |t: &mut T, n: u32, timeout: u64| {
        let mut p = [0u8; 24];
        p[..8].copy_from_slice(&(GVA + 64).to_le_bytes());
        p[8..12].copy_from_slice(&n.to_le_bytes());
        p[16..24].copy_from_slice(&timeout.to_le_bytes());
        t.put(GVA, &p);
        t.call(Hypercall::SchedOp.nr(), &[schedop::POLL, GVA]).1
    };
    let entry = |t: &mut T| {
        prepare_entry(&mut Ctx {
            dom: &t.dom,
            vcpu: &v,
            hw: &mut t.hw,
        })
    };
    assert_eq!(entry(&mut t), None, "no timers to begin with");
    // A timeout already past: the poll is over at once (the scheduler's
    // `block` finds the vCPU ready and lets it run on).
    assert_eq!(poll(&mut t, 0, 1), Next::Block(Wait::Poll));
    {
        let mut st = v.st.lock();
        st.wait = Some(Wait::Poll);
        assert!(t.dom.ready(&st));
        assert_eq!(st.next_wakeup(), Some(1), "while it polls");
        st.wait = None;
    }
    assert_eq!(entry(&mut t), None, "no deadline left behind");
    assert_eq!(v.st.lock().poll_timeout_ns, None);
    // A timeout ahead, the poll ended early by an upcall: the same.
    let later = t.dom.now_ns() + 1_000_000_000;
    assert_eq!(poll(&mut t, 0, later), Next::Block(Wait::Poll));
    {
        let mut st = v.st.lock();
        st.wait = Some(Wait::Poll);
        assert!(!t.dom.ready(&st));
        st.callback_pending = true;
        assert!(t.dom.ready(&st));
        st.wait = None;
        assert_eq!(st.next_wakeup(), None, "not polling: no poll deadline");
    }
    t.hw.regs.rflags = 0x202;
    assert_eq!(entry(&mut t), None);
    assert_eq!(v.st.lock().poll_timeout_ns, None);
}

/// Guest-chosen times beyond the TSC's range saturate instead of wrapping
/// to a deadline in the past (set_timer_op(u64::MAX) at a 2.6 GHz TSC).
#[test]
fn tsc_at_saturates() {
    use crate::domain::tsc_at;
    assert_eq!(tsc_at(1000, 100_000, 10_000), 2000);
    assert_eq!(tsc_at(1000, 2_600_000, 1_000_000_000), 1000 + 2_600_000_000);
    assert_eq!(tsc_at(1000, 2_600_000, u64::MAX), u64::MAX);
    assert_eq!(tsc_at(1000, 2_600_000, 1 << 63), u64::MAX);
    assert_eq!(tsc_at(u64::MAX - 5, 1_000_000, 10), u64::MAX);
}
