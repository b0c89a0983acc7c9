//! The dispatcher on the host: real domains in the host build's fake
//! physical memory, a fake vCPU whose page tables live in its guest RAM,
//! and hypercalls made the way a guest makes them (registers in, RAX out).

use super::*;
use crate::domain::{table, Kind, Memory, Outcome, ShutdownReason, Vcpu};
use crate::hvm::vcpu::{Event, Exit, Regs, StartMode, Vcpu as HwVcpu};
use crate::loader::pvh::MemType;
use crate::mm::p2m::{Format, P2m, Perm};
use crate::mm::paging::PageSize;
use crate::mm::phys::{self, Tables};
use crate::xen::abi::{self, consoleio, evtchnop, schedop, xenmem, xenver, Hypercall};
use alloc::boxed::Box;
use std::sync::atomic::{AtomicU16, Ordering as O};

/// A vCPU's registers and paging mode, nothing more.
#[derive(Default)]
struct FakeHw {
    regs: Regs,
    cr: [u64; 4],
    cpl: u8,
    flushes: u32,
    injected: Vec<Event>,
    /// An injected interrupt the guest has not taken yet.
    queued: bool,
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
    fn interrupt_queued(&self) -> bool {
        self.queued
    }
    fn request_interrupt_window(&mut self, _: bool) {}
    fn control_regs(&self) -> [u64; 4] {
        self.cr
    }
    fn cpl(&self) -> u8 {
        self.cpl
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
    domain_with_id(NEXT_ID.fetch_add(1, O::SeqCst), privileged)
}

/// [`domain`] with id `id` (one no other test uses).
fn domain_with_id(id: u16, privileged: bool) -> T {
    let p2m = P2m::new(Format::Ept, &mut Tables).unwrap();
    let si = phys::alloc_zeroed(1).unwrap();
    let mut mem = Memory::new(p2m, si, false, PageSize::Size2M);
    // 2 MiB-aligned, so RAM is mapped with 2 MiB pages and the tests that
    // map single frames into it (shared_info, grant frames) split them.
    let ram = phys::frames()
        .alloc_in(RAM / 4096, 2 << 20, 0, u64::MAX)
        .unwrap();
    phys::zero(ram, RAM);
    mem.own(ram, RAM / 4096);
    mem.map_ram(0, ram, RAM, Perm::RWX).unwrap();
    mem.ram_pages = RAM / 4096;
    mem.set_gfn_limit(RAM / 4096);
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
        // PG, WP, ET, PE (as Linux runs); PAE; LME+LMA.
        cr: [0x8001_0011, PML4, 1 << 5, 0x500],
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
const ENOBUFS: i64 = -105;
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
fn hypercalls_from_user_mode_are_eperm() {
    let mut t = domain(true);
    for cpl in [3, 1] {
        t.hw.cpl = cpl;
        // Not served at all: no value, no -EFAULT for a bad pointer, no write.
        assert_eq!(t.ret(Hypercall::XenVersion, &[xenver::VERSION]), EPERM);
        assert_eq!(
            t.ret(Hypercall::XenVersion, &[xenver::EXTRAVERSION, GVA]),
            EPERM
        );
        assert_eq!(
            t.ret(Hypercall::XenVersion, &[xenver::EXTRAVERSION, HOLE]),
            EPERM
        );
        assert_eq!(t.ret(Hypercall::Sysctl, &[GVA]), EPERM);
        assert_eq!(t.ret(Hypercall::Domctl, &[GVA]), EPERM);
        assert_eq!(t.get(GVA, 16), [0; 16]);
    }
    t.hw.cpl = 0;
    assert_eq!(
        t.ret(Hypercall::XenVersion, &[xenver::EXTRAVERSION, GVA]),
        0
    );
    assert_eq!(&t.get(GVA, 6), b"-keel\0");
}

#[test]
fn supervisor_writes_to_read_only_pages_follow_cr0_wp() {
    let mut t = domain(false);
    // WP set (as Linux runs): the read-only page refuses the write.
    assert_eq!(
        t.ret(Hypercall::XenVersion, &[xenver::EXTRAVERSION, RO_PAGE]),
        EFAULT
    );
    assert_eq!(t.get(RO_PAGE, 16), [0; 16]);
    // WP clear: the kernel itself could store there, so keel may (as Xen).
    t.hw.cr[0] &= !(1 << 16);
    assert_eq!(
        t.ret(Hypercall::XenVersion, &[xenver::EXTRAVERSION, RO_PAGE]),
        0
    );
    assert_eq!(&t.get(RO_PAGE, 6), b"-keel\0");
    // Still nothing where nothing is mapped.
    assert_eq!(
        t.ret(Hypercall::XenVersion, &[xenver::EXTRAVERSION, HOLE - 8]),
        EFAULT
    );
    // Supervisor accesses: a user page (U/S set) and a kernel-only page
    // (every other page of the fake tables) both take a write.
    t.hw.cr[0] |= 1 << 16;
    let user = GVA + 0x9000;
    assert!(t
        .dom
        .mem
        .write(0x4000 + 9 * 8, &(0x10_9000u64 | 0x7).to_le_bytes()));
    for p in [user, GVA + 0xa000] {
        assert_eq!(
            t.ret(Hypercall::XenVersion, &[xenver::EXTRAVERSION, p]),
            0,
            "{p:#x}"
        );
        assert_eq!(&t.get(p, 6), b"-keel\0");
    }
}

#[test]
fn build_id_reads_its_buffer_header_first() {
    let mut t = domain(true);
    const ENODATA: i64 = -61;
    // As Xen's XENVER_build_id: a non-NULL buffer's header is read first.
    for p in [HOLE, 0x0000_8000_0000_0000, HOLE - 2] {
        assert_eq!(
            t.ret(Hypercall::XenVersion, &[xenver::BUILD_ID, p]),
            EFAULT,
            "{p:#x}"
        );
    }
    t.put(GVA, &0u32.to_le_bytes());
    assert_eq!(
        t.ret(Hypercall::XenVersion, &[xenver::BUILD_ID, GVA]),
        EINVAL
    );
    t.put(GVA, &64u32.to_le_bytes());
    assert_eq!(
        t.ret(Hypercall::XenVersion, &[xenver::BUILD_ID, GVA]),
        ENODATA
    );
    // Only read: a read-only page will do. NULL asks for the size.
    t.put(RO_PAGE, &64u32.to_le_bytes());
    assert_eq!(
        t.ret(Hypercall::XenVersion, &[xenver::BUILD_ID, RO_PAGE]),
        ENODATA
    );
    assert_eq!(
        t.ret(Hypercall::XenVersion, &[xenver::BUILD_ID, 0]),
        ENODATA
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

/// VIRQ_DOM_EXC reaches a privileged domain that bound it when another
/// domain shuts down or is destroyed (xenstored's `@releaseDomain` hangs on
/// it); a domain that did not bind it hears nothing.
#[test]
fn dom_exc_virq_on_another_domains_end() {
    let mut d0 = domain(true);
    let mut bv = [0u8; 12];
    bv[..4].copy_from_slice(&abi::virq::DOM_EXC.to_le_bytes());
    d0.put(GVA, &bv);
    assert_eq!(
        d0.ret(Hypercall::EventChannelOp, &[evtchnop::BIND_VIRQ, GVA]),
        0
    );
    let port = u32::from_le_bytes(d0.get(GVA + 8, 4).try_into().unwrap());
    // Only on vCPU 0: it is a global VIRQ.
    bv[4..8].copy_from_slice(&1u32.to_le_bytes());
    d0.put(GVA, &bv);
    assert_eq!(
        d0.ret(Hypercall::EventChannelOp, &[evtchnop::BIND_VIRQ, GVA]),
        EINVAL
    );
    // A privileged domain that did not bind the VIRQ.
    let other = domain(true);
    let u = domain(false);
    // The tests running beside this one end domains of their own, and d0
    // hears of those too (it is privileged and bound the VIRQ): clear the
    // port just before u ends rather than expect it clear.
    d0.dom.clear_pending(&d0.dom.xen.lock(), port);
    u.dom.end(Outcome::Shutdown(ShutdownReason::Poweroff));
    assert!(d0.dom.port_pending(port), "no VIRQ_DOM_EXC on a shutdown");
    assert!(
        (0..64).all(|p| !other.dom.port_pending(p)),
        "VIRQ_DOM_EXC signalled in a domain that did not bind it"
    );
}

/// The toolstack's event-channel calls on another domain (a domU's console
/// and xenstore ports): a privileged caller allocates an unbound port in
/// it and reads any port's status; an unprivileged one gets -EPERM.
#[test]
fn toolstack_event_channels_in_another_domain() {
    let mut d0 = domain(true);
    let mut u = domain(false);
    let uid = u.dom.id;
    // alloc_unbound { dom: u, remote_dom: DOMID_SELF (= the caller) }.
    let mut au = [0u8; 8];
    au[..2].copy_from_slice(&uid.to_le_bytes());
    au[2..4].copy_from_slice(&abi::DOMID_SELF.to_le_bytes());
    d0.put(GVA, &au);
    assert_eq!(
        d0.ret(Hypercall::EventChannelOp, &[evtchnop::ALLOC_UNBOUND, GVA]),
        0
    );
    let port = u32::from_le_bytes(d0.get(GVA + 4, 4).try_into().unwrap());
    let status = |t: &mut T, dom: u16, port: u32| {
        let mut st = [0u8; 24];
        st[..2].copy_from_slice(&dom.to_le_bytes());
        st[4..8].copy_from_slice(&port.to_le_bytes());
        t.put(GVA, &st);
        let r = t.ret(Hypercall::EventChannelOp, &[evtchnop::STATUS, GVA]);
        let w = |o: u64| u32::from_le_bytes(t.get(GVA + o, 4).try_into().unwrap());
        (r, w(8), w(16), w(20))
    };
    // The port is u's, unbound, for the caller.
    assert_eq!(
        status(&mut d0, uid, port),
        (0, abi::evtchnstat::UNBOUND, d0.dom.id as u32, 0)
    );
    // The caller binds to it from its side.
    let mut bi = [0u8; 12];
    bi[..2].copy_from_slice(&uid.to_le_bytes());
    bi[4..8].copy_from_slice(&port.to_le_bytes());
    d0.put(GVA, &bi);
    assert_eq!(
        d0.ret(
            Hypercall::EventChannelOp,
            &[evtchnop::BIND_INTERDOMAIN, GVA]
        ),
        0
    );
    let local = u32::from_le_bytes(d0.get(GVA + 8, 4).try_into().unwrap());
    assert_eq!(
        status(&mut d0, uid, port),
        (0, abi::evtchnstat::INTERDOMAIN, d0.dom.id as u32, local)
    );
    // The caller's own side, through DOMID_SELF.
    assert_eq!(
        status(&mut d0, abi::DOMID_SELF, local),
        (0, abi::evtchnstat::INTERDOMAIN, uid as u32, port)
    );
    // u reads its own port, not d0's; nobody reads a domain that is not there.
    assert_eq!(status(&mut u, abi::DOMID_SELF, port).0, 0);
    assert_eq!(status(&mut u, d0.dom.id, local).0, EPERM);
    assert_eq!(status(&mut d0, 0x7000, 1).0, -3);
    assert_eq!(status(&mut d0, uid, 5000).0, EINVAL);
    // An unprivileged domain cannot allocate in another.
    au[..2].copy_from_slice(&d0.dom.id.to_le_bytes());
    u.put(GVA, &au);
    assert_eq!(
        u.ret(Hypercall::EventChannelOp, &[evtchnop::ALLOC_UNBOUND, GVA]),
        EPERM
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
    assert_eq!(t.ret(Hypercall::Sysctl, &[HOLE]), EPERM);
    assert_eq!(t.ret(Hypercall::Domctl, &[HOLE]), EPERM);
    // 64 was keel's private management call: gone, like any unknown number.
    assert_eq!(t.call(64, &[0, HOLE, 64, 0]).0, ENOSYS);
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

/// One exit of vCPU `v` of `t`'s domain through the common exit path.
fn exit_step(
    t: &mut T,
    v: &alloc::sync::Arc<crate::domain::Vcpu>,
    e: Exit,
) -> crate::hvm::exit::Step {
    crate::hvm::exit::handle(
        &mut Ctx {
            dom: &t.dom,
            vcpu: v,
            hw: &mut t.hw,
        },
        e,
    )
}

/// A vCPU with an injected interrupt it has not taken yet (Bochs's held
/// virtual interrupt) neither halts nor blocks nor polls: HLT,
/// `SCHEDOP_block` and `SCHEDOP_poll` return at once, as on Xen, whose
/// `local_events_need_delivery` sees the upcall pending. Without one they
/// block.
#[test]
fn no_block_with_an_interrupt_still_queued() {
    use crate::domain::Wait;
    use crate::hvm::exit::Step;
    let mut t = domain(false);
    let v = t.dom.vcpus[0].clone();
    let step = |t: &mut T, e: Exit| exit_step(t, &v, e);
    // sched_poll { ports: GVA + 64, nr_ports: 1, timeout: 0 } on a port
    // that is not pending.
    let mut p = [0u8; 24];
    p[..8].copy_from_slice(&(GVA + 64).to_le_bytes());
    p[8..12].copy_from_slice(&1u32.to_le_bytes());
    t.put(GVA + 64, &5u32.to_le_bytes());
    t.put(GVA + 128, &p);
    let hypercall = |t: &mut T, args: [u64; 2]| {
        t.hw.regs.rax = Hypercall::SchedOp.nr();
        (t.hw.regs.rdi, t.hw.regs.rsi) = (args[0], args[1]);
        Exit::Hypercall { len: 3 }
    };
    t.hw.regs.rflags = 0x202;
    for queued in [false, true] {
        t.hw.queued = queued;
        let want = |w| if queued { Step::Go } else { Step::Block(w) };
        assert_eq!(step(&mut t, Exit::Hlt { len: 1 }), want(Wait::Halt));
        let e = hypercall(&mut t, [schedop::BLOCK, 0]);
        assert_eq!(step(&mut t, e), want(Wait::Halt), "block, queued {queued}");
        let e = hypercall(&mut t, [schedop::POLL, GVA + 128]);
        assert_eq!(step(&mut t, e), want(Wait::Poll), "poll, queued {queued}");
        v.st.lock().end_poll();
    }
}

/// The exit path: HLT blocks (or parks with interrupts off), CPUID answers
/// Xen's leaves, a bad MSR value is a #GP, MWAIT is a #UD, the hypercall
/// page is written.
#[test]
fn the_exit_path_serves_the_common_exits() {
    use crate::domain::Wait;
    use crate::hvm::exit::Step;
    let mut t = domain(false);
    let v = t.dom.vcpus[0].clone();
    let step = |t: &mut T, e: Exit| exit_step(t, &v, e);
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

// --- the toolstack ABI: sysctl and domctl ------------------------------------

mod toolstack {
    use super::*;
    use crate::conring::Ring;
    use keel_xen_abi::domctl::{
        self as dctl, affinity, dominf, schedop, scheduler, GetDomainInfo, GetVcpuInfo,
        SchedCredit, SchedOpU, SchedulerOp, SetDomainHandle, VcpuAffinity, XenDomctl,
    };
    use keel_xen_abi::sysctl::{
        self as sctl, GetDomainInfoList, PhysInfo, ReadConsole, SchedId, XenSysctl,
    };
    use keel_xen_abi::{GuestHandle, Pod, XenctlBitmap};
    use std::sync::Mutex as StdMutex;

    struct Fake {
        ring: StdMutex<Box<Ring>>,
    }
    impl host::HostFacts for Fake {
        fn nr_cpus(&self) -> u32 {
            4
        }
        fn cpu_khz(&self) -> u32 {
            2_600_000
        }
        fn total_pages(&self) -> u64 {
            262_144
        }
        fn free_pages(&self) -> u64 {
            100_000
        }
        fn max_mfn(&self) -> u64 {
            0x3ffff
        }
        /// A CPU whose first eight featureset words are 1-8; the guest
        /// view adds the hypervisor bit (1.ECX[31]).
        fn cpuid(&self, cpu: host::Cpu, leaf: u32, sub: u32) -> [u32; 4] {
            let hv = if cpu == host::Cpu::Guest { 1 << 31 } else { 0 };
            match (leaf, sub) {
                (0, _) => [0xd, 0, 0, 0],
                (1, _) => [0, 0, 2 | hv, 1],
                (7, 0) => [0, 6, 7, 10],
                (0xd, 0) => [3, 0, 0, 0],
                (0xd, 1) => [5, 0, 0, 0],
                (0x8000_0000, _) => [0x8000_0008, 0, 0, 0],
                (0x8000_0001, _) => [0, 0, 4, 3],
                (0x8000_0007, _) => [0, 0, 0, 8],
                (0x8000_0008, _) => [0, 9, 0, 0],
                _ => [0; 4],
            }
        }
        fn console_read_from(&self, inc: bool, index: u32, out: &mut [u8]) -> (usize, u32) {
            self.ring.lock().unwrap().read_from(inc, index, out)
        }
        fn console_clear_to(&self, index: u32) {
            self.ring.lock().unwrap().clear_to(index)
        }
        fn commandline(&self) -> String {
            String::from("console=com1 loglvl=info")
        }
    }

    fn fake() -> &'static Fake {
        static F: std::sync::OnceLock<&'static Fake> = std::sync::OnceLock::new();
        F.get_or_init(|| {
            let f: &'static Fake = Box::leak(Box::new(Fake {
                ring: StdMutex::new(Box::new(Ring::new())),
            }));
            let mut r = f.ring.lock().unwrap();
            r.push(b"(XEN) keel starting\n(XEN) d0: built\n");
            drop(r);
            host::set_host(f);
            f
        })
    }

    /// Where tests put the call's argument, and buffers after it.
    const ARG: u64 = GVA;
    const BUF: u64 = GVA + 0x1000;

    fn put_abi<P: Pod>(t: &T, gva: u64, v: &P) {
        let mut b = vec![0u8; P::SIZE];
        v.write_to(&mut b).unwrap();
        t.put(gva, &b);
    }
    fn get_abi<P: Pod>(t: &T, gva: u64) -> P {
        P::from_bytes(&t.get(gva, P::SIZE)).unwrap()
    }

    fn sysctl<P: Pod>(t: &mut T, cmd: u32, arg: &P) -> (i64, XenSysctl) {
        fake();
        put_abi(t, ARG, &XenSysctl::new(cmd, arg));
        let r = t.ret(Hypercall::Sysctl, &[ARG]);
        (r, get_abi(t, ARG))
    }

    fn domctl<P: Pod>(t: &mut T, cmd: u32, dom: u16, arg: &P) -> (i64, XenDomctl) {
        put_abi(t, ARG, &XenDomctl::new(cmd, dom, arg));
        let r = t.ret(Hypercall::Domctl, &[ARG]);
        (r, get_abi(t, ARG))
    }

    const EACCES: i64 = -13;
    const ESRCH: i64 = -3;
    const EOPNOTSUPP: i64 = -95;

    /// createdomain's machine in the host tests: EPT, fake vCPUs.
    struct FakeBackend;
    impl crate::domain::create::Backend for FakeBackend {
        fn p2m_format(&self) -> Result<crate::mm::p2m::Format, Errno> {
            Ok(crate::mm::p2m::Format::Ept)
        }
        fn max_page(&self) -> crate::mm::paging::PageSize {
            crate::mm::paging::PageSize::Size2M
        }
        fn new_vcpu(&self) -> Result<Box<dyn crate::hvm::vcpu::Vcpu + Send>, Errno> {
            Ok(Box::new(FakeHw::default()))
        }
    }

    /// The domain builder's HVM context: gethvmcontext's size then its
    /// HEADER, MTRR per vCPU and END; sethvmcontext of each vCPU's MTRR
    /// default type, then the BSP's PVH boot state, which starts it (at the
    /// entry, EBX = start_info) once scheduled. Contexts keel cannot load
    /// are refused whole, before anything changes.
    #[test]
    fn hvm_context_for_the_domain_builder() {
        use keel_xen_abi::arch_x86::{ArchDomainConfig, EMU_LAPIC};
        use keel_xen_abi::domctl::{cdf, CreateDomain, HvmContext};
        use keel_xen_abi::hvm::save::{self, Descriptor, Header, HwCpu, HwMtrr};
        use keel_xen_abi::GuestHandle;
        crate::domain::create::set_backend(&FakeBackend);
        let f = fake();
        let mut t = domain(true);
        let pvh = CreateDomain {
            flags: cdf::HVM | cdf::HAP,
            max_vcpus: 2,
            grant_opts: 1,
            arch: ArchDomainConfig {
                emulation_flags: EMU_LAPIC,
                ..ArchDomainConfig::zeroed()
            },
            ..CreateDomain::zeroed()
        };
        let (r, dc) = domctl(&mut t, dctl::op::CREATEDOMAIN, 0, &pvh);
        assert_eq!(r, 0);
        let id = dc.domain;
        let d = table::get(id).unwrap();
        const BUF: u64 = GVA + 0x1000;
        let ctx = |size: u32, at: u64| HvmContext {
            size,
            buffer: GuestHandle::new(at),
        };
        let (r, dc) = domctl(&mut t, dctl::op::GETHVMCONTEXT, id, &ctx(0, 0));
        assert_eq!(r, 0);
        let size = dc.op::<HvmContext>().size;
        assert_eq!(size as usize, 8 + Header::SIZE + 2 * (8 + HwMtrr::SIZE) + 8);
        assert_eq!(
            domctl(&mut t, dctl::op::GETHVMCONTEXT, id, &ctx(size - 1, BUF)).0,
            -28
        );
        let (r, dc) = domctl(&mut t, dctl::op::GETHVMCONTEXT, id, &ctx(size + 64, BUF));
        assert_eq!((r, dc.op::<HvmContext>().size), (0, size));
        let got = t.get(BUF, size as usize);
        let recs = super::super::hvmctx::parse(&got).unwrap();
        assert_eq!(
            recs.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
            [(save::HEADER, 0), (save::MTRR, 0), (save::MTRR, 1)]
        );
        let h = Header::from_prefix(&got[8..]).unwrap();
        assert_eq!((h.magic, h.version), (save::FILE_MAGIC, save::FILE_VERSION));
        assert_eq!(h.gtsc_khz, host::HostFacts::cpu_khz(f));
        let recs_of = |mtrr_def: [u64; 2], cpu: Option<HwCpu>| {
            let mut b = Vec::new();
            let mut push = |tc: u16, inst: u16, body: Vec<u8>| {
                let mut d = vec![0u8; 8];
                Descriptor {
                    typecode: tc,
                    instance: inst,
                    length: body.len() as u32,
                }
                .write_to(&mut d)
                .unwrap();
                b.extend(d);
                b.extend(body);
            };
            let mut h = vec![0u8; Header::SIZE];
            Header {
                magic: save::FILE_MAGIC,
                version: save::FILE_VERSION,
                ..Header::zeroed()
            }
            .write_to(&mut h)
            .unwrap();
            push(save::HEADER, 0, h);
            for (v, def) in mtrr_def.iter().enumerate() {
                let mut m = vec![0u8; HwMtrr::SIZE];
                HwMtrr {
                    msr_mtrr_def_type: *def,
                    ..HwMtrr::zeroed()
                }
                .write_to(&mut m)
                .unwrap();
                push(save::MTRR, v as u16, m);
            }
            if let Some(c) = cpu {
                let mut m = vec![0u8; HwCpu::SIZE];
                c.write_to(&mut m).unwrap();
                push(save::CPU, 0, m);
            }
            push(save::END, 0, vec![]);
            b
        };
        let set = |t: &mut T, bytes: &[u8]| {
            t.put(BUF, bytes);
            domctl(
                t,
                dctl::op::SETHVMCONTEXT,
                id,
                &ctx(bytes.len() as u32, BUF),
            )
            .0
        };
        // The PVH boot state as libxl and keel-builder send it.
        let bsp = HwCpu {
            rip: 0x100_0850,
            rbx: 0xfc00_1000,
            rflags: 2,
            cr0: 0x11,
            cs_limit: !0,
            ds_limit: !0,
            es_limit: !0,
            ss_limit: !0,
            cs_arbytes: 0xc9b,
            ds_arbytes: 0xc93,
            es_arbytes: 0xc93,
            ss_arbytes: 0xc93,
            ..HwCpu::zeroed()
        };
        assert_eq!(set(&mut t, &recs_of([0xc06, 0xc06], None)), 0);
        assert_eq!(d.vcpus[1].st.lock().mtrr_def_type, 0xc06);
        assert_eq!(set(&mut t, &recs_of([0xc06, 0xc06], Some(bsp))), 0);
        assert_eq!(
            d.vcpus[0].st.lock().power,
            crate::domain::Power::StartPvh {
                entry: 0x100_0850,
                ebx: 0xfc00_1000
            }
        );
        assert_eq!(d.vcpus[1].st.lock().power, crate::domain::Power::Down);
        // Refused whole: paging on (not the boot state), a bad header, a
        // truncated record, an unknown vCPU, a device keel does not have.
        let before = d.vcpus[1].st.lock().mtrr_def_type;
        let paged = HwCpu {
            cr0: 0x8000_0011,
            ..bsp
        };
        assert_eq!(set(&mut t, &recs_of([1, 1], Some(paged))), EOPNOTSUPP);
        assert_eq!(
            d.vcpus[1].st.lock().mtrr_def_type,
            before,
            "nothing applied"
        );
        let mut bad = recs_of([1, 1], None);
        bad[8] ^= 1; // the magic
        assert_eq!(set(&mut t, &bad), -22);
        let whole = recs_of([1, 1], None);
        assert_eq!(set(&mut t, &whole[..whole.len() - 12]), -22);
        let mut three = recs_of([1, 1], None);
        three[8 + Header::SIZE + 8 + HwMtrr::SIZE + 2] = 5; // second MTRR: vCPU 5
        assert_eq!(set(&mut t, &three), -22);
        let mut lapic = recs_of([1, 1], None);
        lapic[8 + Header::SIZE] = save::LAPIC as u8;
        assert_eq!(set(&mut t, &lapic), EOPNOTSUPP);
        // Not while it runs; not on oneself.
        d.unpause().unwrap();
        assert_eq!(set(&mut t, &recs_of([1, 1], None)), -16);
        let own = t.dom.id;
        t.put(BUF, &whole);
        assert_eq!(
            domctl(
                &mut t,
                dctl::op::SETHVMCONTEXT,
                own,
                &ctx(whole.len() as u32, BUF)
            )
            .0,
            -22
        );
        assert_eq!(domctl(&mut t, dctl::op::DESTROYDOMAIN, id, &0u32).0, 0);
    }

    /// The toolstack's domain life: createdomain makes an empty, paused
    /// PVH domain with the id keel picks (or the one asked for), max_vcpus
    /// confirms its vCPU count, max_mem sets its limit, unpause runs
    /// nothing (no vCPU has a context yet), destroydomain removes it.
    /// Configurations keel cannot run are refused as Xen refuses them.
    #[test]
    fn createdomain_max_vcpus_max_mem_destroydomain() {
        use keel_xen_abi::domctl::{cdf, CreateDomain, MaxMem, MaxVcpus};
        crate::domain::create::set_backend(&FakeBackend);
        let mut t = domain(true);
        let pvh = CreateDomain {
            handle: [7; 16],
            ..pvh_config(2)
        };
        let (r, dc) = domctl(&mut t, dctl::op::CREATEDOMAIN, 0, &pvh);
        assert_eq!(r, 0);
        let id = dc.domain;
        assert!(id > 0 && id < 0x7ff0 && id != t.dom.id);
        let info = |t: &mut T| {
            let (r, dc) = domctl(t, dctl::op::GETDOMAININFO, id, &0u32);
            (r, dc.domain, dc.op::<GetDomainInfo>())
        };
        let (r, got, gi) = info(&mut t);
        assert_eq!((r, got), (0, id));
        assert_eq!(
            gi.flags & (dominf::PAUSED | dominf::HVM_GUEST | dominf::RUNNING | dominf::DYING),
            dominf::PAUSED | dominf::HVM_GUEST
        );
        assert_eq!(
            (gi.nr_online_vcpus, gi.max_vcpu_id, gi.tot_pages),
            (0, 1, 0)
        );
        assert_eq!(gi.handle, [7; 16]);
        // max_vcpus must restate createdomain's count.
        assert_eq!(
            domctl(&mut t, dctl::op::MAX_VCPUS, id, &MaxVcpus { max: 2 }).0,
            0
        );
        assert_eq!(
            domctl(&mut t, dctl::op::MAX_VCPUS, id, &MaxVcpus { max: 3 }).0,
            EINVAL
        );
        assert_eq!(
            domctl(
                &mut t,
                dctl::op::MAX_MEM,
                id,
                &MaxMem {
                    max_memkb: 256 << 10
                }
            )
            .0,
            0
        );
        assert_eq!(info(&mut t).2.max_pages, 65536);
        // Unpaused, it still runs nothing: its vCPUs are down.
        assert_eq!(domctl(&mut t, dctl::op::UNPAUSEDOMAIN, id, &0u32).0, 0);
        let gi = info(&mut t).2;
        assert_eq!((gi.flags & dominf::PAUSED, gi.nr_online_vcpus), (0, 0));
        // The id asked for, if free; a taken one: -EEXIST.
        assert_eq!(domctl(&mut t, dctl::op::CREATEDOMAIN, id, &pvh).0, -17);
        // What keel cannot run.
        let bad = |t: &mut T, f: &dyn Fn(&mut CreateDomain)| {
            let mut c = pvh;
            f(&mut c);
            domctl(t, dctl::op::CREATEDOMAIN, 0, &c).0
        };
        assert_eq!(bad(&mut t, &|c| c.flags = cdf::HVM), EOPNOTSUPP); // shadow paging
        assert_eq!(bad(&mut t, &|c| c.flags = 0), EOPNOTSUPP); // PV
        assert_eq!(bad(&mut t, &|c| c.flags |= cdf::IOMMU), EOPNOTSUPP);
        assert_eq!(bad(&mut t, &|c| c.flags |= 1 << 8), EINVAL);
        assert_eq!(bad(&mut t, &|c| c.arch.emulation_flags = 0x3ff), EOPNOTSUPP); // full HVM
        assert_eq!(bad(&mut t, &|c| c.max_vcpus = 0), EINVAL);
        assert_eq!(bad(&mut t, &|c| c.max_vcpus = 129), EINVAL);
        assert_eq!(bad(&mut t, &|c| c.grant_opts = 2), EINVAL);
        assert_eq!(bad(&mut t, &|c| c.cpupool_id = 1), -2);
        assert_eq!(bad(&mut t, &|c| c.vmtrace_size = 4096), EOPNOTSUPP);
        assert_eq!(bad(&mut t, &|c| c.arch.misc_flags = 1), EOPNOTSUPP);
        // destroydomain: never the caller itself; then the domain is gone.
        let me = t.dom.id;
        assert_eq!(domctl(&mut t, dctl::op::DESTROYDOMAIN, me, &0u32).0, EINVAL);
        assert_eq!(domctl(&mut t, dctl::op::DESTROYDOMAIN, id, &0u32).0, 0);
        assert!(table::get(id).is_none());
        assert_eq!(domctl(&mut t, dctl::op::DESTROYDOMAIN, id, &0u32).0, ESRCH);
        assert_eq!(
            domctl(&mut t, dctl::op::MAX_MEM, id, &MaxMem { max_memkb: 1 }).0,
            ESRCH
        );
    }

    /// A toolstack domain that shuts itself down stays in the table, shut
    /// down with its reason (what `xl`'s monitor waits for), until the
    /// toolstack destroys it; one keel kills reads as a crash.
    #[test]
    fn a_shut_down_domain_stays_until_destroyed() {
        crate::domain::create::set_backend(&FakeBackend);
        let mut t = domain(true);
        let pvh = pvh_config(1);
        let make = |t: &mut T| {
            let (r, dc) = domctl(t, dctl::op::CREATEDOMAIN, 0, &pvh);
            assert_eq!(r, 0);
            dc.domain
        };
        let flags = |id| domctl::domain_info(&table::get(id).unwrap()).flags;
        for (outcome, code) in [
            (Outcome::Shutdown(ShutdownReason::Poweroff), 0),
            (Outcome::Shutdown(ShutdownReason::Reboot), 1),
            (Outcome::Killed("a fault".into()), 3),
        ] {
            let id = make(&mut t);
            table::get(id).unwrap().end(outcome.clone());
            let d = table::get(id).expect("kept after it ended");
            let f = flags(id);
            assert_eq!(f & (dominf::SHUTDOWN | dominf::DYING), dominf::SHUTDOWN);
            assert_eq!(domctl::domain_info(&d).shutdown_code(), code, "{outcome:?}");
            assert_eq!(d.outcome(), Some(outcome));
            // xl destroy pauses it first: allowed on a shut-down domain.
            assert_eq!(domctl(&mut t, dctl::op::PAUSEDOMAIN, id, &0u32).0, 0);
            drop(d);
            assert_eq!(domctl(&mut t, dctl::op::DESTROYDOMAIN, id, &0u32).0, 0);
            assert!(table::get(id).is_none(), "gone once destroyed");
        }
        // A running one destroyed goes at once.
        let id = make(&mut t);
        assert_eq!(domctl(&mut t, dctl::op::DESTROYDOMAIN, id, &0u32).0, 0);
        assert!(table::get(id).is_none());
        // keel's own domains (dom0, the test guests) are not kept.
        let g = domain(false);
        let gid = g.dom.id;
        g.dom.end(Outcome::Shutdown(ShutdownReason::Poweroff));
        assert!(table::get(gid).is_none());
    }

    #[test]
    fn xen_version_for_the_toolstack() {
        use crate::xen::abi::xenver;
        fake();
        let mut u = domain(false);
        let mut t = domain(true);
        let cstring = |t: &T, n: usize| {
            let b = t.get(BUF, n);
            String::from_utf8(b[..b.iter().position(|&c| c == 0).unwrap()].to_vec()).unwrap()
        };
        assert_eq!(
            u.ret(Hypercall::XenVersion, &[xenver::CAPABILITIES, BUF]),
            0
        );
        assert_eq!(
            cstring(&u, 1024),
            "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64"
        );
        assert_eq!(
            u.ret(Hypercall::XenVersion, &[xenver::COMPILE_INFO, BUF]),
            0
        );
        assert!(cstring(&u, 64).starts_with("rustc"));
        assert_eq!(u.ret(Hypercall::XenVersion, &[xenver::CHANGESET, BUF]), 0);
        assert!(cstring(&u, 64).starts_with("keel "));
        assert_eq!(
            u.ret(Hypercall::XenVersion, &[xenver::PLATFORM_PARAMETERS, BUF]),
            0
        );
        assert_eq!(u.get(BUF, 8), 0xffff_8000_0000_0000u64.to_le_bytes());
        *u.dom.handle.lock() = [9; 16];
        assert_eq!(
            u.ret(Hypercall::XenVersion, &[xenver::GUEST_HANDLE, BUF]),
            0
        );
        assert_eq!(u.get(BUF, 16), [9; 16]);
        // The command line and build id are dom0's alone.
        assert_eq!(
            u.ret(Hypercall::XenVersion, &[xenver::COMMANDLINE, BUF]),
            EPERM
        );
        assert_eq!(
            u.ret(Hypercall::XenVersion, &[xenver::BUILD_ID, BUF]),
            EPERM
        );
        assert_eq!(t.ret(Hypercall::XenVersion, &[xenver::COMMANDLINE, BUF]), 0);
        assert!(cstring(&t, 1024).starts_with("console=com1 loglvl=info"));
        assert_eq!(t.ret(Hypercall::XenVersion, &[xenver::BUILD_ID, BUF]), -61);
        assert_eq!(
            t.ret(Hypercall::XenVersion, &[xenver::COMMANDLINE, HOLE]),
            EFAULT
        );
        // The command line gains dom0_mem only where the operator gave none.
        use super::super::xen_version::commandline;
        assert_eq!(
            commandline("console=com1", Some(256)),
            "console=com1 dom0_mem=256M"
        );
        assert_eq!(commandline("", Some(1024)), "dom0_mem=1024M");
        assert_eq!(commandline("dom0_mem=2G x", Some(2048)), "dom0_mem=2G x");
        assert_eq!(commandline("x ", None), "x");
    }

    #[test]
    fn only_a_privileged_domain_gets_in_and_only_at_version_0x15() {
        let mut u = domain(false);
        // Refused before the argument is read: a bad pointer is no -EFAULT.
        assert_eq!(u.ret(Hypercall::Sysctl, &[HOLE]), EPERM);
        assert_eq!(u.ret(Hypercall::Domctl, &[HOLE]), EPERM);
        assert_eq!(sysctl(&mut u, sctl::op::SCHED_ID, &0u32).0, EPERM);
        let mut t = domain(true);
        assert_eq!(t.ret(Hypercall::Sysctl, &[HOLE]), EFAULT);
        assert_eq!(t.ret(Hypercall::Domctl, &[HOLE]), EFAULT);
        // 4.16's interface version (0x14) is refused as on Xen.
        let mut sc = XenSysctl::new(sctl::op::SCHED_ID, &0u32);
        sc.interface_version = 0x14;
        put_abi(&t, ARG, &sc);
        assert_eq!(t.ret(Hypercall::Sysctl, &[ARG]), EACCES);
        let mut dc = XenDomctl::new(dctl::op::GETDOMAININFO, 0, &0u32);
        dc.interface_version = 0x14;
        put_abi(&t, ARG, &dc);
        assert_eq!(t.ret(Hypercall::Domctl, &[ARG]), EACCES);
        // Unknown sub-ops: -ENOSYS, counted.
        let before = t.dom.stats.unimplemented.load(O::Relaxed);
        assert_eq!(sysctl(&mut t, 999, &0u32).0, ENOSYS);
        assert_eq!(
            {
                let id = t.dom.id;
                domctl(&mut t, 999, id, &0u32)
            }
            .0,
            ENOSYS
        );
        assert_eq!(t.dom.stats.unimplemented.load(O::Relaxed), before + 2);
        // An argument in a read-only page is read, but the answer cannot be
        // written back: -EFAULT, and keel carries on.
        let mut b = vec![0u8; XenSysctl::SIZE];
        XenSysctl::new(sctl::op::SCHED_ID, &0u32)
            .write_to(&mut b)
            .unwrap();
        assert!(t.dom.mem.write(0x10_0000 + (RO_PAGE - GVA), &b));
        assert_eq!(t.ret(Hypercall::Sysctl, &[RO_PAGE]), EFAULT);
        // Straddling the end of what is mapped.
        assert_eq!(t.ret(Hypercall::Sysctl, &[HOLE - 8]), EFAULT);
    }

    /// `xen-cpuid` and libxenguest read featuresets and policies: sizes
    /// from NULL buffers, then the data; short buffers get -ENOBUFS with
    /// what fits, PV policies -EOPNOTSUPP, bad indexes -EINVAL.
    #[test]
    fn sysctl_cpu_featureset_and_policy() {
        use crate::xen::cpu_policy as policy;
        use keel_xen_abi::arch_x86::{CpuidLeaf, MsrEntry, CPUID_NO_SUBLEAF};
        use keel_xen_abi::sysctl::{cpu_policy, featureset, CpuFeatureset, CpuPolicy};
        let mut t = domain(true);
        let fs = |index, nr, buf| CpuFeatureset {
            index,
            nr_features: nr,
            features: GuestHandle::new(buf),
        };
        let (r, sc) = sysctl(&mut t, sctl::op::GET_CPU_FEATURESET, &fs(0, 0, 0));
        assert_eq!((r, sc.op::<CpuFeatureset>().nr_features), (0, 19));
        let (r, sc) = sysctl(
            &mut t,
            sctl::op::GET_CPU_FEATURESET,
            &fs(featureset::HOST, 19, BUF),
        );
        assert_eq!((r, sc.op::<CpuFeatureset>().nr_features), (0, 19));
        let w: Vec<u32> = t
            .get(BUF, 19 * 4)
            .chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(&w[..10], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        // The HVM view is what guests see: the hypervisor bit is set.
        sysctl(
            &mut t,
            sctl::op::GET_CPU_FEATURESET,
            &fs(featureset::HVM, 19, BUF),
        );
        assert_eq!(t.get(BUF + 4, 4), (2u32 | 1 << 31).to_le_bytes());
        // A short buffer: what fits, and -ENOBUFS.
        let (r, sc) = sysctl(
            &mut t,
            sctl::op::GET_CPU_FEATURESET,
            &fs(featureset::HOST, 4, BUF),
        );
        assert_eq!((r, sc.op::<CpuFeatureset>().nr_features), (ENOBUFS, 4));
        assert_eq!(
            sysctl(
                &mut t,
                sctl::op::GET_CPU_FEATURESET,
                &fs(featureset::PV, 19, BUF)
            )
            .0,
            -95
        );
        assert_eq!(
            sysctl(&mut t, sctl::op::GET_CPU_FEATURESET, &fs(6, 19, BUF)).0,
            EINVAL
        );
        assert_eq!(
            sysctl(
                &mut t,
                sctl::op::GET_CPU_FEATURESET,
                &fs(featureset::HOST, 19, HOLE)
            )
            .0,
            EFAULT
        );

        let cp = |index, nr_leaves, leaves, nr_msrs, msrs| CpuPolicy {
            index,
            nr_leaves,
            nr_msrs,
            rsvd: 0,
            leaves: GuestHandle::new(leaves),
            msrs: GuestHandle::new(msrs),
        };
        let (r, sc) = sysctl(
            &mut t,
            sctl::op::GET_CPU_POLICY,
            &cp(cpu_policy::HVM_DEFAULT, 0, 0, 0, 0),
        );
        let got = sc.op::<CpuPolicy>();
        assert_eq!((r, got.nr_leaves, got.nr_msrs), (0, 120, 2));
        let msrs = BUF + 120 * CpuidLeaf::SIZE as u64;
        let (r, sc) = sysctl(
            &mut t,
            sctl::op::GET_CPU_POLICY,
            &cp(cpu_policy::HVM_DEFAULT, 120, BUF, 2, msrs),
        );
        let got = sc.op::<CpuPolicy>();
        let want = policy::leaves(
            &|l, s| host::HostFacts::cpuid(fake(), host::Cpu::Guest, l, s),
            120,
        )
        .unwrap();
        assert_eq!((r, got.nr_leaves, got.nr_msrs), (0, want.len() as u32, 2));
        let l1 =
            CpuidLeaf::from_bytes(&t.get(BUF + CpuidLeaf::SIZE as u64, CpuidLeaf::SIZE)).unwrap();
        assert_eq!(
            (l1.leaf, l1.subleaf, l1.c),
            (1, CPUID_NO_SUBLEAF, 2 | 1 << 31)
        );
        let m1 =
            MsrEntry::from_bytes(&t.get(msrs + MsrEntry::SIZE as u64, MsrEntry::SIZE)).unwrap();
        assert_eq!((m1.idx, m1.val), (0x10a, 0));
        // Too little room: -ENOBUFS; reserved field, bad index, PV.
        assert_eq!(
            sysctl(
                &mut t,
                sctl::op::GET_CPU_POLICY,
                &cp(cpu_policy::HOST, 3, BUF, 2, msrs)
            )
            .0,
            ENOBUFS
        );
        assert_eq!(
            sysctl(
                &mut t,
                sctl::op::GET_CPU_POLICY,
                &cp(cpu_policy::HOST, 120, BUF, 1, msrs)
            )
            .0,
            ENOBUFS
        );
        let mut bad = cp(cpu_policy::HOST, 0, 0, 0, 0);
        bad.rsvd = 1;
        assert_eq!(sysctl(&mut t, sctl::op::GET_CPU_POLICY, &bad).0, EINVAL);
        assert_eq!(
            sysctl(&mut t, sctl::op::GET_CPU_POLICY, &cp(6, 0, 0, 0, 0)).0,
            EINVAL
        );
        assert_eq!(
            sysctl(
                &mut t,
                sctl::op::GET_CPU_POLICY,
                &cp(cpu_policy::PV_MAX, 0, 0, 0, 0)
            )
            .0,
            -95
        );
        // A buffer straddling the end of what is mapped.
        assert_eq!(
            sysctl(
                &mut t,
                sctl::op::GET_CPU_POLICY,
                &cp(cpu_policy::HOST, 120, HOLE - 48, 2, msrs)
            )
            .0,
            EFAULT
        );
    }

    /// `xl sched-credit` lists the pool's parameters through sysctl
    /// scheduler_op; keel's are fixed, so a put may only restate them.
    #[test]
    fn sysctl_scheduler_op_reports_credit_parameters() {
        use keel_xen_abi::sysctl::{schedop, SchedCreditParams, SchedulerOp, SchedulerOpU};
        let mut t = domain(true);
        let so = |pool: u32, sched_id: u32, cmd: u32, p: SchedCreditParams| SchedulerOp {
            cpupool_id: pool,
            sched_id,
            cmd,
            u: SchedulerOpU::new(&p),
        };
        let zero = SchedCreditParams::zeroed();
        let (r, sc) = sysctl(
            &mut t,
            sctl::op::SCHEDULER_OP,
            &so(0, scheduler::CREDIT, schedop::GETINFO, zero),
        );
        let got: SchedCreditParams = sc.op::<SchedulerOp>().u.get();
        assert_eq!(r, 0);
        assert_eq!(
            (got.tslice_ms, got.ratelimit_us, got.vcpu_migr_delay_us),
            (10, 1000, 0)
        );
        // Restating them is accepted; changing them is refused, not ignored.
        let put = |t: &mut T, p| {
            sysctl(
                t,
                sctl::op::SCHEDULER_OP,
                &so(0, scheduler::CREDIT, schedop::PUTINFO, p),
            )
            .0
        };
        assert_eq!(put(&mut t, got), 0);
        let slice5 = SchedCreditParams {
            tslice_ms: 5,
            ..got
        };
        assert_eq!(put(&mut t, slice5), -95);
        // Xen's bounds: a 0 or 2000 ms slice, a rate limit longer than the
        // slice or below 100 us, a migration delay over 100 ms.
        for bad in [
            SchedCreditParams {
                tslice_ms: 0,
                ..got
            },
            SchedCreditParams {
                tslice_ms: 2000,
                ..got
            },
            SchedCreditParams {
                ratelimit_us: 20_000,
                ..got
            },
            SchedCreditParams {
                ratelimit_us: 50,
                ..got
            },
            SchedCreditParams {
                vcpu_migr_delay_us: 200_000,
                ..got
            },
        ] {
            assert_eq!(put(&mut t, bad), EINVAL, "{bad:?}");
        }
        // Another pool, another scheduler, another command.
        let r = |t: &mut T, pool, id, cmd| {
            sysctl(t, sctl::op::SCHEDULER_OP, &so(pool, id, cmd, zero)).0
        };
        assert_eq!(r(&mut t, 1, scheduler::CREDIT, schedop::GETINFO), ESRCH);
        assert_eq!(r(&mut t, 0, scheduler::CREDIT2, schedop::GETINFO), EINVAL);
        assert_eq!(r(&mut t, 0, scheduler::CREDIT, 7), EINVAL);
        // Not for an unprivileged domain.
        let mut u = domain(false);
        assert_eq!(r(&mut u, 0, scheduler::CREDIT, schedop::GETINFO), EPERM);
    }

    #[test]
    fn physinfo_sched_id_and_the_console() {
        let mut t = domain(true);
        let (r, sc) = sysctl(&mut t, sctl::op::PHYSINFO, &PhysInfo::zeroed());
        assert_eq!(r, 0);
        let pi: PhysInfo = sc.op();
        assert_eq!((pi.nr_cpus, pi.max_cpu_id, pi.nr_nodes), (4, 3, 1));
        assert_eq!(pi.threads_per_core * pi.cores_per_socket, 4);
        assert_eq!(
            (pi.cpu_khz, pi.total_pages, pi.free_pages),
            (2_600_000, 262_144, 100_000)
        );
        assert_eq!(pi.max_mfn, 0x3ffff);
        assert_eq!(pi.hw_cap, [1, 2, 3, 4, 5, 6, 7, 8]);
        let caps = sctl::physcap::HVM | sctl::physcap::HAP | sctl::physcap::GNTTAB_V1;
        assert_eq!(pi.capabilities, caps);
        let (r, sc) = sysctl(&mut t, sctl::op::SCHED_ID, &SchedId { sched_id: 0 });
        assert_eq!((r, sc.op::<SchedId>().sched_id), (0, scheduler::CREDIT));

        // readconsole, incremental from 0 with a small buffer, as xl dmesg.
        let rc = |index: u32, count: u32, buffer: u64, clear: u8| ReadConsole {
            clear,
            incremental: 1,
            index,
            buffer: GuestHandle::new(buffer),
            count,
            ..ReadConsole::zeroed()
        };
        let (r, sc) = sysctl(&mut t, sctl::op::READCONSOLE, &rc(0, 6, BUF, 0));
        let out: ReadConsole = sc.op();
        assert_eq!((r, out.count, out.index), (0, 6, 6));
        assert_eq!(&t.get(BUF, 6), b"(XEN) ");
        let (_, sc) = sysctl(&mut t, sctl::op::READCONSOLE, &rc(6, 4096, BUF, 0));
        let out: ReadConsole = sc.op();
        assert_eq!(
            &t.get(BUF, out.count as usize),
            b"keel starting\n(XEN) d0: built\n"
        );
        // A bad buffer with `clear`: -EFAULT and the log is kept.
        let (r, _) = sysctl(&mut t, sctl::op::READCONSOLE, &rc(0, 64, HOLE, 1));
        assert_eq!(r, EFAULT);
        let (_, sc) = sysctl(&mut t, sctl::op::READCONSOLE, &rc(0, 4096, BUF, 0));
        assert_eq!(sc.op::<ReadConsole>().count, 36);
    }

    /// The VM-exit counters through `sysctl perfc_op`, as xenperf reads
    /// them: sizes first, then descriptions and values; reset; hostile
    /// arguments; the `perfc=0` switch. (All in one test: the switch is
    /// global.)
    #[test]
    fn perfc_op_exports_the_exit_counters_by_domain_and_reason() {
        use crate::hvm::exit::handle;
        use crate::hvm::perfc::{self, COUNTERS, DOMAIN_SLOTS, REASONS};
        use keel_xen_abi::sysctl::{perfcop, PerfcDesc, PerfcOp};
        const DESC: u64 = BUF;
        const VAL: u64 = BUF + 0x1000;
        // Ids 42 and 43 belong to this test (the others start at 100).
        let mut g = domain_with_id(42, false);
        let mut t = domain_with_id(43, true);
        let exits = |g: &mut T, e: Exit, n: usize| {
            let v = g.dom.vcpus[0].clone();
            for _ in 0..n {
                handle(
                    &mut Ctx {
                        dom: &g.dom,
                        vcpu: &v,
                        hw: &mut g.hw,
                    },
                    e,
                );
            }
        };
        let op = |cmd, desc: u64, val: u64| PerfcOp {
            cmd,
            // OUT only: what a caller leaves there (xenperf: its stack)
            // changes nothing.
            nr_counters: u32::MAX,
            nr_vals: 7,
            desc: GuestHandle::new(desc),
            val: GuestHandle::new(val),
        };
        let query = |t: &mut T| -> Vec<u32> {
            let (r, sc) = sysctl(t, sctl::op::PERFC_OP, &op(perfcop::QUERY, DESC, VAL));
            assert_eq!(r, 0);
            let p: PerfcOp = sc.op();
            assert_eq!(p.nr_vals as usize, COUNTERS * DOMAIN_SLOTS);
            t.get(VAL, COUNTERS * DOMAIN_SLOTS * 4)
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
                .collect()
        };
        let at = |r: perfc::Reason, dom: usize| r as usize * DOMAIN_SLOTS + dom;

        // The sizes: NULL handles.
        let (r, sc) = sysctl(&mut t, sctl::op::PERFC_OP, &op(perfcop::QUERY, 0, 0));
        let p: PerfcOp = sc.op();
        assert_eq!(r, 0);
        assert_eq!(p.nr_counters as usize, COUNTERS);
        assert_eq!(p.nr_vals as usize, COUNTERS * DOMAIN_SLOTS);

        g.hw.regs.rflags = 0x202;
        exits(&mut g, Exit::Cpuid { len: 2 }, 3);
        exits(&mut g, Exit::Hlt { len: 1 }, 2);
        exits(&mut g, Exit::ExternalInterrupt, 1);
        exits(&mut g, Exit::PreemptionTimer, 4);
        let v = query(&mut t);
        let descs: Vec<PerfcDesc> = (0..COUNTERS)
            .map(|i| get_abi(&t, DESC + (i * PerfcDesc::SIZE) as u64))
            .collect();
        let name = |d: &PerfcDesc| String::from_utf8(keel_xen_abi::cstr(&d.name).to_vec()).unwrap();
        assert_eq!(name(&descs[0]), "vmexit cpuid [domid]");
        assert_eq!(
            name(&descs[perfc::Reason::Hypercall as usize]),
            "vmexit hypercall [domid]"
        );
        assert!(descs.iter().all(|d| d.nr_vals as usize == DOMAIN_SLOTS));
        use perfc::Reason::*;
        assert_eq!(v[at(Cpuid, 42)], 3);
        assert_eq!(v[at(Hlt, 42)], 2);
        assert_eq!(v[at(Interrupt, 42)], 1);
        assert_eq!(v[at(Timer, 42)], 4);
        assert_eq!(v[at(Io, 42)], 0);
        // The caller's own calls go straight to the dispatcher here: no exits.
        assert_eq!(
            (0..REASONS).map(|r| v[r * DOMAIN_SLOTS + 43]).sum::<u32>(),
            0
        );
        // The test domains from id 100 up share the last slot.
        assert_eq!(perfc::slot(100), DOMAIN_SLOTS - 1);
        // The gauges after them: what a domain maps of others, now.
        assert_eq!(name(&descs[REASONS]), "mapped foreign pages [domid]");
        assert_eq!(name(&descs[REASONS + 1]), "mapped grants [domid]");
        let foreign = |v: &[u32], dom: usize| v[REASONS * DOMAIN_SLOTS + dom];
        assert_eq!(foreign(&v, 43), 0);
        t.dom.foreign.lock().insert(0x9_0000, g.dom.clone());
        t.dom.foreign.lock().insert(0x9_0001, g.dom.clone());
        assert_eq!(foreign(&query(&mut t), 43), 2);
        t.dom.foreign.lock().clear();
        assert_eq!(foreign(&query(&mut t), 43), 0);
        // The times after the gauges, in µs (the host's fake TSC: 1 GHz),
        // summed over a domain's vCPUs.
        assert_eq!(name(&descs[REASONS + 2]), "guest mode us [domid]");
        assert_eq!(name(&descs[REASONS + 3]), "exit handling us [domid]");
        let times = |v: &[u32], dom: usize| {
            (
                v[(REASONS + 2) * DOMAIN_SLOTS + dom],
                v[(REASONS + 3) * DOMAIN_SLOTS + dom],
            )
        };
        let stats = &g.dom.vcpus[0].stats.by_reason;
        let (g0, h0) = times(&v, 42);
        stats.add_guest(5_000_000);
        stats.add_handling(2_000_500);
        stats.add_guest(1_000_000);
        assert_eq!(times(&query(&mut t), 42), (g0 + 6000, h0 + 2000));

        // Hostile arguments: an unknown command (-EINVAL, the sizes still
        // reported), buffers keel cannot write (-EFAULT), a NULL value
        // handle with descriptions wanted (-EFAULT, as Xen writing to NULL).
        let (r, sc) = sysctl(&mut t, sctl::op::PERFC_OP, &op(3, DESC, VAL));
        assert_eq!(r, EINVAL);
        assert_eq!(sc.op::<PerfcOp>().nr_counters as usize, COUNTERS);
        for (desc, val) in [
            (HOLE, VAL),
            (DESC, HOLE),
            (DESC, 0),
            (RO_PAGE, VAL),
            (HOLE - 8, VAL),
        ] {
            let r = sysctl(&mut t, sctl::op::PERFC_OP, &op(perfcop::QUERY, desc, val)).0;
            assert_eq!(r, EFAULT, "desc {desc:#x} val {val:#x}");
        }
        // A reset whose copy fails loses nothing.
        let r = sysctl(&mut t, sctl::op::PERFC_OP, &op(perfcop::RESET, DESC, HOLE)).0;
        assert_eq!(r, EFAULT);
        assert_eq!(query(&mut t)[at(Cpuid, 42)], 3);
        // Others may not even look.
        assert_eq!(
            sysctl(&mut g, sctl::op::PERFC_OP, &op(perfcop::QUERY, 0, 0)).0,
            EPERM
        );
        // Reset, as `xenperf -r` (NULL handles): every counter from zero.
        let (r, _) = sysctl(&mut t, sctl::op::PERFC_OP, &op(perfcop::RESET, 0, 0));
        assert_eq!(r, 0);
        let v = query(&mut t);
        assert_eq!(
            (v[at(Cpuid, 42)], v[at(Hlt, 42)], v[at(Timer, 42)]),
            (0, 0, 0)
        );
        assert_eq!(times(&v, 42), (0, 0));
        exits(&mut g, Exit::Cpuid { len: 2 }, 1);
        assert_eq!(query(&mut t)[at(Cpuid, 42)], 1);

        // perfc=0: nothing counted, and perfc_op is absent (-ENOSYS, as
        // on a Xen built without performance counters).
        perfc::set_enabled(false);
        exits(&mut g, Exit::Cpuid { len: 2 }, 5);
        g.dom.vcpus[0].stats.by_reason.add_guest(7_000);
        g.dom.vcpus[0].stats.by_reason.add_handling(7_000);
        let r = sysctl(&mut t, sctl::op::PERFC_OP, &op(perfcop::QUERY, DESC, VAL)).0;
        perfc::set_enabled(true);
        assert_eq!(r, ENOSYS);
        assert_eq!(query(&mut t)[at(Cpuid, 42)], 1);
        assert_eq!(g.dom.vcpus[0].stats.by_reason.get(Cpuid as usize), 1);
        assert_eq!(g.dom.vcpus[0].stats.by_reason.times(), (0, 0));
    }

    #[test]
    fn getdomaininfo_and_the_list_describe_the_domain() {
        let mut t = domain(true);
        let id = t.dom.id;
        let handle = [7u8; 16];
        let (r, _) = domctl(
            &mut t,
            dctl::op::SETDOMAINHANDLE,
            id,
            &SetDomainHandle { handle },
        );
        assert_eq!(r, 0);
        let (r, dc) = domctl(
            &mut t,
            dctl::op::GETDOMAININFO,
            id,
            &GetDomainInfo::zeroed(),
        );
        assert_eq!(r, 0);
        let gi: GetDomainInfo = dc.op();
        assert_eq!((dc.domain, gi.domain), (id, id));
        assert_eq!(
            gi.flags & (dominf::HVM_GUEST | dominf::HAP),
            dominf::HVM_GUEST | dominf::HAP
        );
        assert_eq!(gi.flags & (dominf::SHUTDOWN | dominf::DYING), 0);
        assert_eq!((gi.tot_pages, gi.max_pages), (RAM / 4096, RAM / 4096));
        assert_eq!((gi.nr_online_vcpus, gi.max_vcpu_id), (1, 0));
        assert_eq!(gi.handle, handle);
        assert_eq!(
            gi.arch_config.emulation_flags,
            keel_xen_abi::arch_x86::EMU_LAPIC
        );
        // "The first domain with an id at least N": past every domain, -ESRCH.
        assert_eq!(
            domctl(&mut t, dctl::op::GETDOMAININFO, 0x7fe0, &0u32).0,
            ESRCH
        );
        assert_eq!(
            domctl(&mut t, dctl::op::GETDOMAININFO, 0x7ff5, &0u32).0,
            ESRCH
        );
        // No such domain for a targeted sub-op.
        assert_eq!(
            domctl(&mut t, dctl::op::SETDOMAINHANDLE, 0x7fe0, &[0u8; 16]).0,
            ESRCH
        );

        // The sysctl list: the same record, starting at our id.
        let list = GetDomainInfoList {
            first_domain: id,
            max_domains: 1,
            buffer: GuestHandle::new(BUF),
            ..GetDomainInfoList::zeroed()
        };
        let (r, sc) = sysctl(&mut t, sctl::op::GETDOMAININFOLIST, &list);
        assert_eq!((r, sc.op::<GetDomainInfoList>().num_domains), (0, 1));
        let first: GetDomainInfo = get_abi(&t, BUF);
        assert_eq!(
            (first.domain, first.handle, first.tot_pages),
            (id, handle, RAM / 4096)
        );
        // A buffer keel cannot write: -EFAULT.
        let bad = GetDomainInfoList {
            buffer: GuestHandle::new(HOLE),
            ..list
        };
        assert_eq!(sysctl(&mut t, sctl::op::GETDOMAININFOLIST, &bad).0, EFAULT);
        // A shut-down domain reports SHUTDOWN with its code.
        t.dom.end(Outcome::Shutdown(ShutdownReason::Reboot));
        let gi = domctl::domain_info(&t.dom);
        assert_eq!(gi.flags & dominf::SHUTDOWN, dominf::SHUTDOWN);
        assert_eq!(gi.shutdown_code(), 1);
    }

    #[test]
    fn pause_and_unpause_nest_and_hold_the_vcpus() {
        let mut t = domain(true);
        let g = domain(false);
        let (me, gid) = (t.dom.id, g.dom.id);
        let pause = |t: &mut T, id| domctl(t, dctl::op::PAUSEDOMAIN, id, &0u32).0;
        let unpause = |t: &mut T, id| domctl(t, dctl::op::UNPAUSEDOMAIN, id, &0u32).0;
        // A domain cannot pause itself (xl pause 0 fails on Xen too).
        assert_eq!(pause(&mut t, me), EINVAL);
        assert_eq!(pause(&mut t, 0x7fe0), ESRCH);
        assert_eq!(unpause(&mut t, gid), EINVAL, "not paused");
        // Paused twice: still paused after one unpause.
        assert_eq!(pause(&mut t, gid), 0);
        assert_eq!(pause(&mut t, gid), 0);
        assert!(domctl::domain_info(&g.dom).flags & dominf::PAUSED != 0);
        // A halted vCPU with an interrupt due stays off the CPU while paused.
        let v = g.dom.vcpus[0].clone();
        {
            let mut st = v.st.lock();
            st.wait = Some(crate::domain::Wait::Halt);
            st.lapic
                .write(crate::hvm::vlapic::MSR_BASE + 0xf, 0x1ff, 0)
                .unwrap(); // SVR: enable
            st.lapic.raise(0x40);
            assert!(st.interrupt_due());
            assert!(!g.dom.ready(&st), "paused: not ready");
            g.dom.poke(&v, &mut st);
            assert_eq!(st.wait, Some(crate::domain::Wait::Halt));
        }
        assert_eq!(unpause(&mut t, gid), 0);
        assert!(g.dom.is_paused());
        assert_eq!(v.st.lock().wait, Some(crate::domain::Wait::Halt));
        // The last unpause wakes it.
        assert_eq!(unpause(&mut t, gid), 0);
        assert!(!g.dom.is_paused());
        assert_eq!(v.st.lock().wait, None);
        assert_eq!(domctl::domain_info(&g.dom).flags & dominf::PAUSED, 0);
        assert_eq!(unpause(&mut t, gid), EINVAL);
    }

    #[test]
    fn vcpu_info_affinity_and_credit_parameters() {
        let mut t = domain(true);
        let id = t.dom.id;
        t.dom.start(&|_| 0b1111, &|_| 0);
        let (r, dc) = domctl(&mut t, dctl::op::GETVCPUINFO, id, &GetVcpuInfo::zeroed());
        assert_eq!(r, 0);
        let vi: GetVcpuInfo = dc.op();
        assert_eq!((vi.vcpu, vi.online), (0, 1));
        assert_eq!(domctl(&mut t, dctl::op::GETVCPUINFO, id, &1u32).0, EINVAL);

        // Pin vCPU 0 to CPU 1 (hard), then read it back.
        let map = |addr: u64| XenctlBitmap {
            bitmap: GuestHandle::new(addr),
            nr_bits: 8,
        };
        let va = |flags| VcpuAffinity {
            vcpu: 0,
            flags,
            cpumap_hard: map(BUF),
            cpumap_soft: map(BUF + 8),
        };
        t.put(BUF, &[0b10]);
        assert_eq!(
            domctl(&mut t, dctl::op::SETVCPUAFFINITY, id, &va(affinity::HARD)).0,
            0
        );
        assert_eq!(
            crate::sched::affinity(t.dom.vcpus[0].sched_ref()),
            Some(0b10)
        );
        t.put(BUF, &[0xff]);
        assert_eq!(
            domctl(
                &mut t,
                dctl::op::GETVCPUAFFINITY,
                id,
                &va(affinity::HARD | affinity::SOFT)
            )
            .0,
            0
        );
        assert_eq!(t.get(BUF, 1), [0b10]);
        assert_eq!(t.get(BUF + 8, 1), [0b1111], "soft affinity: every CPU");
        // No CPU at all, a narrower soft mask, no flags: refused, nothing changed.
        t.put(BUF, &[0b1_0000]);
        assert_eq!(
            domctl(&mut t, dctl::op::SETVCPUAFFINITY, id, &va(affinity::HARD)).0,
            EINVAL
        );
        t.put(BUF + 8, &[0b1]);
        assert_eq!(
            domctl(&mut t, dctl::op::SETVCPUAFFINITY, id, &va(affinity::SOFT)).0,
            EOPNOTSUPP
        );
        assert_eq!(
            domctl(&mut t, dctl::op::SETVCPUAFFINITY, id, &va(0)).0,
            EINVAL
        );
        assert_eq!(
            crate::sched::affinity(t.dom.vcpus[0].sched_ref()),
            Some(0b10)
        );
        // A bitmap keel cannot read.
        let bad = VcpuAffinity {
            cpumap_hard: map(HOLE),
            ..va(affinity::HARD)
        };
        assert_eq!(
            domctl(&mut t, dctl::op::SETVCPUAFFINITY, id, &bad).0,
            EFAULT
        );

        // Credit: put weight and cap, get them back.
        let so = |cmd, weight, cap| SchedulerOp {
            sched_id: scheduler::CREDIT,
            cmd,
            u: SchedOpU::new(&SchedCredit { weight, cap }),
        };
        assert_eq!(
            domctl(
                &mut t,
                dctl::op::SCHEDULER_OP,
                id,
                &so(schedop::PUTINFO, 512, 50)
            )
            .0,
            0
        );
        let (r, dc) = domctl(
            &mut t,
            dctl::op::SCHEDULER_OP,
            id,
            &so(schedop::GETINFO, 0, 0),
        );
        let c: SchedCredit = dc.op::<SchedulerOp>().u.get();
        assert_eq!((r, c.weight, c.cap), (0, 512, 50));
        // Weight 0 and cap 0xffff leave both as they are.
        assert_eq!(
            domctl(
                &mut t,
                dctl::op::SCHEDULER_OP,
                id,
                &so(schedop::PUTINFO, 0, 0xffff)
            )
            .0,
            0
        );
        assert_eq!(crate::sched::weight_and_cap(id), Some((512, 50)));
        // A cap above 100 % per vCPU, or another scheduler's id: -EINVAL.
        assert_eq!(
            domctl(
                &mut t,
                dctl::op::SCHEDULER_OP,
                id,
                &so(schedop::PUTINFO, 1, 101)
            )
            .0,
            EINVAL
        );
        let other = SchedulerOp {
            sched_id: scheduler::CREDIT2,
            ..so(schedop::GETINFO, 0, 0)
        };
        assert_eq!(domctl(&mut t, dctl::op::SCHEDULER_OP, id, &other).0, EINVAL);
        assert_eq!(crate::sched::weight_and_cap(id), Some((512, 50)));
    }

    /// A new, paused PVH domain as `xl create` makes it (`createdomain`).
    fn create_domu(t: &mut T) -> u16 {
        crate::domain::create::set_backend(&FakeBackend);
        fake();
        let pvh = pvh_config(1);
        let (r, dc) = domctl(t, dctl::op::CREATEDOMAIN, 0, &pvh);
        assert_eq!(r, 0);
        dc.domain
    }

    /// `xl create`'s settings of a new domain (libxl__arch_domain_create,
    /// libxl__build_pre): the TSC mode (native only), the paging pool size
    /// (recorded, page-aligned), the NUMA node affinity (node 0, keel's
    /// only), the RTC offset (recorded); hostile arguments refused.
    #[test]
    fn tsc_mempool_node_affinity_and_time_offset_of_a_new_domain() {
        use keel_xen_abi::domctl::{tsc_mode, NodeAffinity, PagingMempool, SetTimeOffset, TscInfo};
        let mut t = domain(true);
        let id = create_domu(&mut t);
        let d = table::get(id).unwrap();
        let me = t.dom.id;
        let tsc = |mode, khz| TscInfo {
            tsc_mode: mode,
            gtsc_khz: khz,
            ..TscInfo::zeroed()
        };
        let khz = crate::platform::tsc_khz() as u32;
        let set = |t: &mut T, dom, ti: &TscInfo| domctl(t, dctl::op::SETTSCINFO, dom, ti).0;
        assert_eq!(set(&mut t, id, &tsc(tsc_mode::DEFAULT, 0)), 0);
        assert_eq!(set(&mut t, id, &tsc(tsc_mode::NEVER_EMULATE, 0)), 0);
        assert_eq!(set(&mut t, id, &tsc(tsc_mode::NEVER_EMULATE, khz)), 0);
        // Emulated or scaled: keel cannot; unknown modes: Xen's -EINVAL.
        assert_eq!(
            set(&mut t, id, &tsc(tsc_mode::DEFAULT, khz * 2)),
            EOPNOTSUPP
        );
        assert_eq!(
            set(&mut t, id, &tsc(tsc_mode::ALWAYS_EMULATE, 0)),
            EOPNOTSUPP
        );
        assert_eq!(set(&mut t, id, &tsc(3, 0)), EINVAL);
        assert_eq!(set(&mut t, id, &tsc(u32::MAX, 0)), EINVAL);
        // Not the caller's own (Xen cannot pause it), no such domain.
        assert_eq!(set(&mut t, me, &tsc(0, 0)), EINVAL);
        assert_eq!(set(&mut t, 0x7000, &tsc(0, 0)), ESRCH);
        let (r, dc) = domctl(&mut t, dctl::op::GETTSCINFO, id, &TscInfo::zeroed());
        assert_eq!(r, 0);
        assert_eq!(dc.op::<TscInfo>(), tsc(tsc_mode::NEVER_EMULATE, khz));
        assert_eq!(
            domctl(&mut t, dctl::op::GETTSCINFO, me, &TscInfo::zeroed()).0,
            EINVAL
        );

        // The paging pool: recorded in whole pages, reported back.
        let pool = |size| PagingMempool { size };
        let get_pool = |t: &mut T| {
            let (r, dc) = domctl(t, dctl::op::GET_PAGING_MEMPOOL_SIZE, id, &pool(0));
            (r, dc.op::<PagingMempool>().size)
        };
        assert_eq!(get_pool(&mut t), (0, 0));
        assert_eq!(
            domctl(
                &mut t,
                dctl::op::SET_PAGING_MEMPOOL_SIZE,
                id,
                &pool(4 << 20)
            )
            .0,
            0
        );
        assert_eq!(get_pool(&mut t), (0, 4 << 20));
        for bad in [4097, u64::MAX, 1] {
            assert_eq!(
                domctl(&mut t, dctl::op::SET_PAGING_MEMPOOL_SIZE, id, &pool(bad)).0,
                EINVAL
            );
        }
        assert_eq!(get_pool(&mut t), (0, 4 << 20));

        // Node affinity: a mask with node 0; get says node 0 alone.
        let na = |addr, nr_bits| NodeAffinity {
            nodemap: XenctlBitmap {
                bitmap: GuestHandle::new(addr),
                nr_bits,
            },
        };
        let set_nodes = |t: &mut T, mask: u8, nr_bits| {
            t.put(BUF, &[mask]);
            domctl(t, dctl::op::SETNODEAFFINITY, id, &na(BUF, nr_bits)).0
        };
        assert_eq!(set_nodes(&mut t, 0x01, 8), 0);
        assert_eq!(set_nodes(&mut t, 0xff, 8), 0);
        assert_eq!(set_nodes(&mut t, 0x02, 8), EINVAL);
        assert_eq!(set_nodes(&mut t, 0x01, 0), EINVAL);
        assert_eq!(
            domctl(&mut t, dctl::op::SETNODEAFFINITY, id, &na(0xdead_0000, 8)).0,
            EFAULT
        );
        t.put(BUF, &[0xff; 2]);
        assert_eq!(
            domctl(&mut t, dctl::op::GETNODEAFFINITY, id, &na(BUF, 16)).0,
            0
        );
        assert_eq!(t.get(BUF, 2), [0x01, 0x00]);
        assert_eq!(
            domctl(&mut t, dctl::op::GETNODEAFFINITY, id, &na(0xdead_0000, 16)).0,
            EFAULT
        );
        assert_eq!(
            domctl(&mut t, dctl::op::GETNODEAFFINITY, 0x7000, &na(BUF, 16)).0,
            ESRCH
        );

        // The RTC offset: recorded.
        let off = SetTimeOffset {
            time_offset_seconds: -3600,
        };
        assert_eq!(domctl(&mut t, dctl::op::SETTIMEOFFSET, id, &off).0, 0);
        assert_eq!(d.tools.time_offset(), -3600);

        // None of it for a stranger.
        let mut u = domain(false);
        assert_eq!(
            domctl(&mut u, dctl::op::SETTSCINFO, id, &tsc(0, 0)).0,
            EPERM
        );
        assert_eq!(domctl(&mut u, dctl::op::SETTIMEOFFSET, id, &off).0, EPERM);
        assert_eq!(domctl(&mut t, dctl::op::DESTROYDOMAIN, id, &0u32).0, 0);
    }

    /// `xc_cpuid_apply_policy` on a new domain: its policy (the default
    /// HVM one keel shows) read, narrowed and set back; the domain's CPUID
    /// then lacks what the policy cleared. What Xen refuses, keel refuses
    /// with the same errno and the same leaf, subleaf or MSR at fault.
    #[test]
    fn cpu_policy_of_a_domain_get_narrow_and_set() {
        use crate::hvm::exit::{handle, Step};
        use crate::xen::cpu_policy as policy;
        use keel_xen_abi::arch_x86::{CpuidLeaf, MsrEntry, CPUID_NO_SUBLEAF};
        use keel_xen_abi::domctl::CpuPolicy;
        let mut t = domain(true);
        let id = create_domu(&mut t);
        let me = t.dom.id;
        const MSRS: u64 = BUF + 0x1000;
        let cp = |nr_leaves, leaves, nr_msrs, msrs| CpuPolicy {
            nr_leaves,
            nr_msrs,
            leaves: GuestHandle::new(leaves),
            msrs: GuestHandle::new(msrs),
            ..CpuPolicy::zeroed()
        };
        // NULL buffers: the most there can be.
        let (r, dc) = domctl(&mut t, dctl::op::GET_CPU_POLICY, id, &cp(0, 0, 0, 0));
        let got = dc.op::<CpuPolicy>();
        assert_eq!((r, got.nr_leaves, got.nr_msrs), (0, 120, 2));
        // The leaves: sysctl's default HVM policy, as nothing was set.
        let get = |t: &mut T, dom| {
            let (r, dc) = domctl(t, dctl::op::GET_CPU_POLICY, dom, &cp(120, BUF, 2, MSRS));
            let got = dc.op::<CpuPolicy>();
            let leaves: Vec<CpuidLeaf> = (0..got.nr_leaves as u64)
                .map(|i| get_abi(t, BUF + i * CpuidLeaf::SIZE as u64))
                .collect();
            (r, leaves, got.nr_msrs)
        };
        let want = policy::leaves(
            &|l, s| host::HostFacts::cpuid(fake(), host::Cpu::Guest, l, s),
            120,
        )
        .unwrap();
        let (r, mut leaves, nr_msrs) = get(&mut t, id);
        assert_eq!((r, &leaves, nr_msrs), (0, &want, 2));
        assert_eq!(
            domctl(&mut t, dctl::op::GET_CPU_POLICY, id, &cp(3, BUF, 2, MSRS)).0,
            ENOBUFS
        );
        // Set back, one feature narrower (1.ECX bit 1) and one wider than
        // keel offers (1.ECX bit 5, clamped away, as Xen's recalculation).
        let put_leaves = |t: &mut T, v: &[CpuidLeaf]| {
            for (i, l) in v.iter().enumerate() {
                put_abi(t, BUF + (i * CpuidLeaf::SIZE) as u64, l);
            }
        };
        let l1 = leaves
            .iter()
            .position(|l| (l.leaf, l.subleaf) == (1, CPUID_NO_SUBLEAF))
            .unwrap();
        leaves[l1].c = (leaves[l1].c & !2) | 1 << 5;
        put_leaves(&mut t, &leaves);
        let msrs = [0xce, 0x10a].map(|idx| MsrEntry {
            idx,
            flags: 0,
            val: 0,
        });
        for (i, m) in msrs.iter().enumerate() {
            put_abi(&t, MSRS + (i * MsrEntry::SIZE) as u64, m);
        }
        let n = leaves.len() as u32;
        let set = |t: &mut T, dom, p: &CpuPolicy| {
            let (r, dc) = domctl(t, dctl::op::SET_CPU_POLICY, dom, p);
            let p = dc.op::<CpuPolicy>();
            (r, p.err_leaf, p.err_subleaf, p.err_msr)
        };
        assert_eq!(set(&mut t, id, &cp(n, BUF, 2, MSRS)).0, 0);
        let (_, now, _) = get(&mut t, id);
        assert_eq!(now[l1].c, want[l1].c & !2);
        assert_eq!(now.len(), want.len());

        // Hostile counts: -E2BIG before anything is read (Xen's bounds).
        let none = (!0, !0, !0);
        for (nl, nm) in [(121, 0), (u32::MAX, 0), (0, 3), (0, u32::MAX)] {
            let (r, l, s, m) = set(&mut t, id, &cp(nl, 0xdead_0000, nm, 0xdead_0000));
            assert_eq!((r, (l, s, m)), (-7, none), "{nl} leaves, {nm} MSRs");
        }
        // Unreadable buffers.
        assert_eq!(set(&mut t, id, &cp(2, 0xdead_0000, 0, 0)).0, EFAULT);
        assert_eq!(set(&mut t, id, &cp(0, 0, 1, 0xdead_0000)).0, EFAULT);
        // A leaf, subleaf or MSR Xen's policy has no room for: -ERANGE.
        let one = |t: &mut T, leaf, subleaf, a| {
            let l = CpuidLeaf {
                leaf,
                subleaf,
                a,
                b: 0,
                c: 0,
                d: 0,
            };
            put_abi(t, BUF, &l);
            set(t, id, &cp(1, BUF, 0, 0))
        };
        assert_eq!(
            one(&mut t, 0x1234_5678, CPUID_NO_SUBLEAF, 0),
            (-34, 0x1234_5678, CPUID_NO_SUBLEAF, !0)
        );
        assert_eq!(one(&mut t, 4, 6, 0), (-34, 4, 6, !0));
        assert_eq!(one(&mut t, 2, 0, 0), (-34, 2, 0, !0));
        assert_eq!(
            one(&mut t, 0x8000_0022, CPUID_NO_SUBLEAF, 0),
            (-34, 0x8000_0022, CPUID_NO_SUBLEAF, !0)
        );
        // Maximum leaves beyond keel's: -EINVAL at the leaf.
        assert_eq!(
            one(&mut t, 0, CPUID_NO_SUBLEAF, 0xe),
            (EINVAL, 0, CPUID_NO_SUBLEAF, !0)
        );
        assert_eq!(one(&mut t, 7, 0, 1), (EINVAL, 7, 0, !0));
        assert_eq!(
            one(&mut t, 0x8000_0000, CPUID_NO_SUBLEAF, 0x8000_0009),
            (EINVAL, 0x8000_0000, CPUID_NO_SUBLEAF, !0)
        );
        let msr = |t: &mut T, idx, flags, val| {
            put_abi(t, MSRS, &MsrEntry { idx, flags, val });
            set(t, id, &cp(0, 0, 1, MSRS))
        };
        assert_eq!(msr(&mut t, 0x10, 0, 0), (-34, !0, !0, 0x10));
        assert_eq!(msr(&mut t, 0xce, 1, 0), (EINVAL, !0, !0, 0xce));
        assert_eq!(msr(&mut t, 0xce, 0, 1), (EINVAL, !0, !0, 0xce));
        assert_eq!(msr(&mut t, 0xce, 0, 1 << 32), (-75, !0, !0, 0xce));
        assert_eq!(msr(&mut t, 0x10a, 0, 0), (0, 0, 0, 0));
        // The refusals changed nothing.
        assert_eq!(get(&mut t, id).1[l1].c, want[l1].c & !2);
        // Never the caller's own; not once the domain runs (Xen: -EEXIST).
        assert_eq!(set(&mut t, me, &cp(0, 0, 0, 0)).0, EINVAL);
        assert_eq!(domctl(&mut t, dctl::op::UNPAUSEDOMAIN, id, &0u32).0, 0);
        assert_eq!(set(&mut t, id, &cp(0, 0, 0, 0)).0, -17);
        assert_eq!(set(&mut t, 0x7000, &cp(0, 0, 0, 0)).0, ESRCH);
        assert_eq!(domctl(&mut t, dctl::op::DESTROYDOMAIN, id, &0u32).0, 0);

        // The CPUID exit of a domain with a policy: leaf 1 EDX cleared
        // whole masks the host's bits (FPU and all) out of what it sees.
        let mut g = domain(false);
        let gid = g.dom.id;
        let v = g.dom.vcpus[0].clone();
        let cpuid_1 = |g: &mut T| {
            g.hw.regs.rax = 1;
            g.hw.regs.rcx = 0;
            let cx = &mut Ctx {
                dom: &g.dom,
                vcpu: &v,
                hw: &mut g.hw,
            };
            assert_eq!(handle(cx, Exit::Cpuid { len: 2 }), Step::Go);
            g.hw.regs.rdx as u32
        };
        assert_ne!(cpuid_1(&mut g), 0, "the host has an FPU");
        assert_eq!(domctl(&mut t, dctl::op::PAUSEDOMAIN, gid, &0u32).0, 0);
        let leaf1 = CpuidLeaf {
            leaf: 1,
            subleaf: CPUID_NO_SUBLEAF,
            a: 0,
            b: 0,
            c: 2,
            d: 0,
        };
        put_abi(&t, BUF, &leaf1);
        assert_eq!(set(&mut t, gid, &cp(1, BUF, 0, 0)).0, 0);
        assert_eq!(cpuid_1(&mut g), 0);
        assert_eq!(domctl(&mut t, dctl::op::UNPAUSEDOMAIN, gid, &0u32).0, 0);
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

/// A vCPU's IA32_TSC_AUX (Linux's CPU number, for RDTSCP/RDPID in
/// getcpu()) is in the CPU's MSR before it runs: neither VT-x nor AMD-V
/// switches it, and a guest that read the host's got the wrong CPU.
#[test]
fn the_guest_tsc_aux_is_loaded_before_entry() {
    use crate::hvm::exit::{handle, prepare_entry, Step};
    let mut t = domain(false);
    let v = t.dom.vcpus[0].clone();
    let w = handle(
        &mut Ctx {
            dom: &t.dom,
            vcpu: &v,
            hw: &mut t.hw,
        },
        Exit::MsrWrite {
            msr: 0xc000_0103,
            value: 0x1_0000_1003,
            len: 2,
        },
    );
    assert_eq!(w, Step::Go);
    prepare_entry(&mut Ctx {
        dom: &t.dom,
        vcpu: &v,
        hw: &mut t.hw,
    });
    // The high half is reserved: only the low 32 bits are kept.
    assert_eq!(crate::platform::tsc_aux(), 0x1003);
}

/// HVM params as Xen's `hvm_allow_{set,get}_param` allow them: dom0 sets
/// a domU's ring params (what the domain builder does) and the domU reads
/// them back; a guest cannot set its own ring frames, read the toolstack's
/// params, or touch another domain's; set-once params keep their value.
#[test]
fn hvm_params_of_another_domain_are_the_toolstacks() {
    use crate::xen::abi::hvm_param as hp;
    const SET: u64 = 0;
    const GET: u64 = 1;
    let mut dom0 = domain(true);
    let mut domu = domain(false);
    let param = |t: &mut T, cmd: u64, domid: u16, index: u32, value: u64| {
        let mut b = [0u8; 16];
        b[0..2].copy_from_slice(&domid.to_le_bytes());
        b[4..8].copy_from_slice(&index.to_le_bytes());
        b[8..16].copy_from_slice(&value.to_le_bytes());
        t.put(GVA, &b);
        let r = t.ret(Hypercall::HvmOp, &[cmd, GVA]);
        (r, u64::from_le_bytes(t.get(GVA + 8, 8).try_into().unwrap()))
    };
    let u = domu.dom.id;
    assert_eq!(param(&mut dom0, SET, u, hp::STORE_PFN, 0xfeffc).0, 0);
    assert_eq!(param(&mut dom0, SET, u, hp::STORE_EVTCHN, 2).0, 0);
    assert_eq!(param(&mut dom0, SET, u, hp::TIMER_MODE, 1).0, 0);
    assert_eq!(param(&mut dom0, GET, u, hp::TIMER_MODE, 0), (0, 1));
    // The domU finds its ring where dom0 put it (DOMID_SELF or its id).
    assert_eq!(
        param(&mut domu, GET, 0x7ff0, hp::STORE_PFN, 0),
        (0, 0xfeffc)
    );
    assert_eq!(param(&mut domu, GET, u, hp::STORE_EVTCHN, 0), (0, 2));
    // ... but may not move it, nor read the toolstack's params.
    assert_eq!(param(&mut domu, SET, u, hp::STORE_PFN, 1).0, -1); // EPERM
    assert_eq!(param(&mut domu, GET, u, hp::TIMER_MODE, 0).0, -1);
    // Its own callback is its own business.
    assert_eq!(
        param(&mut domu, SET, u, hp::CALLBACK_IRQ, 2 << 56 | 0xf3).0,
        0
    );
    // Another domain's params: dom0's are not the domU's to see.
    assert_eq!(param(&mut domu, GET, dom0.dom.id, hp::STORE_PFN, 0).0, -1);
    // No such domain; no such param.
    assert_eq!(param(&mut dom0, GET, 0x7000, hp::STORE_PFN, 0).0, -3); // ESRCH
    assert_eq!(param(&mut dom0, SET, u, hp::NR_PARAMS, 0).0, -22);
    assert_eq!(param(&mut dom0, SET, u, 1 << 31, 0).0, -22);
    // Set once: a different second value is -EEXIST, the same one is fine.
    assert_eq!(param(&mut dom0, SET, u, hp::ALTP2M, 1).0, 0);
    assert_eq!(param(&mut dom0, SET, u, hp::ALTP2M, 1).0, 0);
    assert_eq!(param(&mut dom0, SET, u, hp::ALTP2M, 2).0, -17);
    // A triple fault reboots a domain unless the toolstack chose another
    // shutdown code (Xen's default); no code past soft_reset (5).
    assert_eq!(param(&mut dom0, GET, u, hp::TRIPLE_FAULT_REASON, 0), (0, 1));
    assert_eq!(param(&mut dom0, SET, u, hp::TRIPLE_FAULT_REASON, 3).0, 0);
    assert_eq!(param(&mut dom0, SET, u, hp::TRIPLE_FAULT_REASON, 6).0, -22);
    assert_eq!(param(&mut dom0, GET, u, hp::TRIPLE_FAULT_REASON, 0), (0, 3));
    // A bad pointer is -EFAULT.
    assert_eq!(dom0.ret(Hypercall::HvmOp, &[SET, 0xdead_0000]), -14);
}

/// The toolstack populates another domain's memory as libxenguest does:
/// extents of 2^order zeroed pages at the gfns it lists, counted against
/// the domain's max_mem and mapped; a short count (not an error) where an
/// extent cannot be placed; never over memory already there. It gives the
/// domain its memory map, which the domain then reads back.
#[test]
fn populate_physmap_and_set_memory_map_for_another_domain() {
    const POPULATE: u64 = 6;
    const MEMORY_MAP: u64 = 9;
    const SET_MEMORY_MAP: u64 = 13;
    let mut dom0 = domain(true);
    let mut domu = domain(false);
    let u = domu.dom.id;
    let base = RAM / 4096; // the domU's own RAM ends here
    let populate = |t: &mut T, domid: u16, order: u32, gfns: &[u64]| {
        reservation(t, POPULATE, domid, order, 0, gfns)
    };
    domu.dom.set_max_pages(domu.dom.tot_pages() + 512 + 3);
    let before = domu.dom.tot_pages();
    // A 2 MiB extent (aligned) and two 4 KiB pages: all done, zeroed.
    let big = (base + 511) & !511;
    assert_eq!(populate(&mut dom0, u, 9, &[big]), 1);
    assert_eq!(populate(&mut dom0, u, 0, &[big + 600, big + 601]), 2);
    assert_eq!(domu.dom.tot_pages(), before + 514);
    let mut b = [0xffu8; 16];
    assert!(domu.dom.mem.read((big + 100) << 12, &mut b));
    assert_eq!(b, [0; 16]);
    assert!(domu.dom.mem.gfn_limit() >= big + 602);
    // Over the domain's max_mem: the first fits, the second does not.
    assert_eq!(populate(&mut dom0, u, 0, &[big + 700, big + 701]), 1);
    // Misaligned, already populated, beyond 2^36: none done.
    domu.dom.set_max_pages(u64::MAX);
    assert_eq!(populate(&mut dom0, u, 9, &[big + 1024 + 1]), 0);
    assert_eq!(populate(&mut dom0, u, 0, &[big + 5]), 0);
    assert_eq!(populate(&mut dom0, u, 0, &[1 << 36]), 0);
    // Bad orders, strangers, no such domain, a bad list pointer.
    assert_eq!(populate(&mut dom0, u, 19, &[0]), -22);
    assert_eq!(populate(&mut domu, dom0.dom.id, 0, &[big + 900]), -1);
    assert_eq!(populate(&mut dom0, 0x7000, 0, &[big + 900]), -3);
    let mut r = [0u8; 40];
    r[0..8].copy_from_slice(&0xdead_0000u64.to_le_bytes());
    r[8..16].copy_from_slice(&1u64.to_le_bytes());
    r[24..26].copy_from_slice(&u.to_le_bytes());
    dom0.put(GVA, &r);
    assert_eq!(dom0.ret(Hypercall::MemoryOp, &[POPULATE, GVA]), -14);
    // The memory map: set by dom0, read by the domU.
    let e820: Vec<u8> = [(0u64, 0x1000_0000u64, 1u32), (0xfc00_0000, 0x1000, 2)]
        .iter()
        .flat_map(|&(a, s, k)| [&a.to_le_bytes()[..], &s.to_le_bytes(), &k.to_le_bytes()].concat())
        .collect();
    dom0.put(GVA + 64, &e820);
    let mut m = [0u8; 24];
    m[0..2].copy_from_slice(&u.to_le_bytes());
    m[8..12].copy_from_slice(&2u32.to_le_bytes());
    m[16..24].copy_from_slice(&(GVA + 64).to_le_bytes());
    dom0.put(GVA, &m);
    assert_eq!(dom0.ret(Hypercall::MemoryOp, &[SET_MEMORY_MAP, GVA]), 0);
    let mut q = [0u8; 16];
    q[0..4].copy_from_slice(&8u32.to_le_bytes());
    q[8..16].copy_from_slice(&(GVA + 256).to_le_bytes());
    domu.put(GVA, &q);
    assert_eq!(domu.ret(Hypercall::MemoryOp, &[MEMORY_MAP, GVA]), 0);
    assert_eq!(domu.get(GVA, 4), 2u32.to_le_bytes());
    assert_eq!(domu.get(GVA + 256, 40), e820);
    // A domain may not set its own (it is the toolstack's).
    domu.put(GVA, &m);
    assert_eq!(domu.ret(Hypercall::MemoryOp, &[SET_MEMORY_MAP, GVA]), -1);
}

/// A createdomain configuration as libxl gives a PVH domU: HVM with HAP and
/// an emulated LAPIC, `max_vcpus` vCPUs, default event-channel and grant
/// limits, grant table v1.
fn pvh_config(max_vcpus: u32) -> keel_xen_abi::domctl::CreateDomain {
    use keel_xen_abi::arch_x86::{ArchDomainConfig, EMU_LAPIC};
    use keel_xen_abi::domctl::{cdf, CreateDomain};
    use keel_xen_abi::Pod;
    CreateDomain {
        flags: cdf::HVM | cdf::HAP,
        max_vcpus,
        max_evtchn_port: 1023,
        max_grant_frames: -1,
        max_maptrack_frames: -1,
        grant_opts: 1,
        arch: ArchDomainConfig {
            emulation_flags: EMU_LAPIC,
            ..ArchDomainConfig::zeroed()
        },
        ..CreateDomain::zeroed()
    }
}

/// `struct xen_memory_reservation` for `domid` at `GVA`, its extent list
/// (`gfns`) at `GVA + 64`; issues `memory_op(cmd)`.
fn reservation(t: &mut T, cmd: u64, domid: u16, order: u32, flags: u32, gfns: &[u64]) -> i64 {
    let list: Vec<u8> = gfns.iter().flat_map(|g| g.to_le_bytes()).collect();
    t.put(GVA + 64, &list);
    let mut r = [0u8; 40];
    r[0..8].copy_from_slice(&(GVA + 64).to_le_bytes());
    r[8..16].copy_from_slice(&(gfns.len() as u64).to_le_bytes());
    r[16..20].copy_from_slice(&order.to_le_bytes());
    r[20..24].copy_from_slice(&flags.to_le_bytes());
    r[24..26].copy_from_slice(&domid.to_le_bytes());
    t.put(GVA, &r);
    t.ret(Hypercall::MemoryOp, &[cmd, GVA])
}

/// libxenguest's populate flags: `XENMEMF_exact_node(0)` (libxl placed the
/// domain on node 0, keel's only node), as a virtual node too, a node hint;
/// address bits bound the frames. Another node, populate-on-demand and
/// unknown bits are refused.
#[test]
fn populate_physmap_takes_node_0_and_address_bits() {
    const POPULATE: u64 = 6;
    const NODE0: u32 = 1 << 8;
    const EXACT: u32 = 1 << 17;
    const VNODE: u32 = 1 << 18;
    let mut dom0 = domain(true);
    let domu = domain(false);
    let u = domu.dom.id;
    domu.dom.set_max_pages(u64::MAX);
    let base = RAM / 4096 + 16;
    let pop = |t: &mut T, flags: u32, gfn: u64| reservation(t, POPULATE, u, 0, flags, &[gfn]);
    assert_eq!(pop(&mut dom0, NODE0 | EXACT, base), 1);
    assert_eq!(pop(&mut dom0, NODE0 | EXACT | VNODE, base + 1), 1);
    assert_eq!(pop(&mut dom0, NODE0, base + 2), 1);
    assert_eq!(pop(&mut dom0, (2 << 8) | EXACT, base + 3), -22);
    assert_eq!(pop(&mut dom0, 1 << 16, base + 3), -95);
    assert_eq!(pop(&mut dom0, 1 << 20, base + 3), -22);
    // Below 2^bits; with too few bits nothing fits: none done.
    assert_eq!(pop(&mut dom0, 48, base + 3), 1);
    assert!(domu.dom.mem.translate((base + 3) << 12).unwrap() < 1 << 48);
    assert_eq!(pop(&mut dom0, 12, base + 4), 0);
    assert!(domu.dom.mem.translate((base + 4) << 12).is_none());
}

/// `XENMEM_decrease_reservation`, by the toolstack on another domain and
/// by a domain on itself: whole extents of memory the toolstack
/// populated leave the domain's p2m and its count; the call stops at a
/// page that is not such memory (its own boot RAM, a hole) and returns the
/// extents done. A frame another domain still maps stays readable there.
#[test]
fn decrease_reservation_gives_populated_memory_back() {
    const DECREASE: u64 = 1;
    const POPULATE: u64 = 6;
    const BATCH: u64 = 23;
    const REMOVE: u64 = 15;
    let mut dom0 = domain(true);
    let mut domu = domain(false);
    let u = domu.dom.id;
    let base = RAM / 4096;
    let big = (base + 511) & !511;
    domu.dom.set_max_pages(u64::MAX);
    assert_eq!(reservation(&mut dom0, POPULATE, u, 9, 0, &[big]), 1);
    let small = [big + 600, big + 601, big + 602, big + 603];
    assert_eq!(reservation(&mut dom0, POPULATE, u, 0, 0, &small), 4);
    let pages = |t: &T| t.dom.tot_pages();
    let before = pages(&domu);
    let mapped = |t: &T, gfn: u64| t.dom.mem.translate(gfn << 12).is_some();
    let hpa = |t: &T, gfn: u64| t.dom.mem.translate(gfn << 12).unwrap();
    // Whether the domain still owns frame `h` (to be freed with it).
    let owns = |t: &T, h: u64| {
        let o = t.dom.mem.disown(h);
        if o {
            t.dom.mem.own(h, 1);
        }
        o
    };
    // One page, by the toolstack: out of the domain, its frame freed.
    let h600 = hpa(&domu, big + 600);
    assert!(owns(&domu, h600));
    assert_eq!(reservation(&mut dom0, DECREASE, u, 0, 0, &[big + 600]), 1);
    assert!(!mapped(&domu, big + 600));
    assert!(!owns(&domu, h600));
    assert_eq!(pages(&domu), before - 1);
    // Gone already: nothing done. The domU's boot RAM: not the
    // toolstack's populated memory, the list stops there.
    assert_eq!(reservation(&mut dom0, DECREASE, u, 0, 0, &[big + 600]), 0);
    assert_eq!(
        reservation(&mut dom0, DECREASE, u, 0, 0, &[big + 601, 5, big + 602]),
        1
    );
    assert!(mapped(&domu, 5) && mapped(&domu, big + 602));
    assert_eq!(pages(&domu), before - 2);
    // A 2 MiB extent, whole; then an extent only partly populated: none of it.
    assert_eq!(reservation(&mut dom0, DECREASE, u, 9, 0, &[big]), 1);
    assert!(!mapped(&domu, big) && !mapped(&domu, big + 511));
    assert_eq!(pages(&domu), before - 2 - 512);
    assert_eq!(
        reservation(&mut dom0, DECREASE, u, 1, 0, &[big + 602 - 1]),
        0
    );
    assert!(mapped(&domu, big + 602));
    // The domain itself (its balloon driver), DOMID_SELF: the caller's
    // own vCPU flushes before it goes back, so the frame is freed.
    let h602 = hpa(&domu, big + 602);
    assert_eq!(
        reservation(&mut domu, DECREASE, 0x7ff0, 0, 0, &[big + 602]),
        1
    );
    assert!(!mapped(&domu, big + 602));
    assert!(!owns(&domu, h602));
    // By the toolstack while a vCPU of the domain is on a CPU: out of its
    // p2m and count, but the frame stays the domain's (that vCPU may hold
    // the translation until its next entry).
    assert_eq!(reservation(&mut dom0, POPULATE, u, 0, 0, &[big + 604]), 1);
    let h604 = hpa(&domu, big + 604);
    let v = domu.dom.vcpus[0].clone();
    v.running_on.store(3, O::SeqCst);
    assert_eq!(reservation(&mut dom0, DECREASE, u, 0, 0, &[big + 604]), 1);
    v.running_on.store(crate::domain::vcpu::NOWHERE, O::SeqCst);
    assert!(!mapped(&domu, big + 604));
    assert!(owns(&domu, h604), "a vCPU on a CPU: not freed yet");
    // A frame dom0 maps (foreign) leaves the domU but stays readable in
    // dom0 until dom0 unmaps it.
    let hole = base + 16;
    assert!(domu.dom.mem.write((big + 603) << 12, b"still mapped"));
    dom0.put(GVA + 512, &(big + 603).to_le_bytes());
    dom0.put(GVA + 520, &hole.to_le_bytes());
    let mut b = [0u8; 32];
    b[0..2].copy_from_slice(&0x7ff0u16.to_le_bytes());
    b[2..4].copy_from_slice(&4u16.to_le_bytes());
    b[4..6].copy_from_slice(&1u16.to_le_bytes());
    b[6..8].copy_from_slice(&u.to_le_bytes());
    b[8..16].copy_from_slice(&(GVA + 512).to_le_bytes());
    b[16..24].copy_from_slice(&(GVA + 520).to_le_bytes());
    b[24..32].copy_from_slice(&(GVA + 528).to_le_bytes());
    dom0.put(GVA, &b);
    assert_eq!(dom0.ret(Hypercall::MemoryOp, &[BATCH, GVA]), 0);
    assert_eq!(dom0.get(GVA + 528, 4), [0; 4]);
    let h603 = hpa(&domu, big + 603);
    assert_eq!(reservation(&mut dom0, DECREASE, u, 0, 0, &[big + 603]), 1);
    assert!(!mapped(&domu, big + 603));
    assert!(owns(&domu, h603), "held by dom0's mapping: not freed");
    let mut c = [0u8; 12];
    assert!(dom0.dom.mem.read(hole << 12, &mut c));
    assert_eq!(&c, b"still mapped");
    let mut rm = [0u8; 16];
    rm[0..2].copy_from_slice(&0x7ff0u16.to_le_bytes());
    rm[8..16].copy_from_slice(&hole.to_le_bytes());
    dom0.put(GVA, &rm);
    assert_eq!(dom0.ret(Hypercall::MemoryOp, &[REMOVE, GVA]), 0);
    assert_eq!(pages(&domu), before - 4 - 512);
    // Repopulated where it was given back.
    assert_eq!(reservation(&mut dom0, POPULATE, u, 0, 0, &[big + 600]), 1);
    // Hostile arguments: orders past 9, flags, huge counts, a list keel
    // cannot read, no such domain, a stranger, gfns past 2^36.
    assert_eq!(reservation(&mut dom0, DECREASE, u, 10, 0, &[big]), EINVAL);
    assert_eq!(reservation(&mut dom0, DECREASE, u, 0, 1, &[big]), EINVAL);
    assert_eq!(reservation(&mut dom0, DECREASE, 0x7000, 0, 0, &[big]), -3);
    assert_eq!(
        reservation(&mut domu, DECREASE, dom0.dom.id, 0, 0, &[5]),
        EPERM
    );
    assert_eq!(reservation(&mut dom0, DECREASE, u, 0, 0, &[u64::MAX]), 0);
    assert_eq!(reservation(&mut dom0, DECREASE, u, 0, 0, &[1 << 36]), 0);
    let mut r = [0u8; 40];
    r[0..8].copy_from_slice(&0xdead_0000u64.to_le_bytes());
    r[8..16].copy_from_slice(&1u64.to_le_bytes());
    r[24..26].copy_from_slice(&u.to_le_bytes());
    dom0.put(GVA, &r);
    assert_eq!(dom0.ret(Hypercall::MemoryOp, &[DECREASE, GVA]), EFAULT);
    r[8..16].copy_from_slice(&(1u64 << 40).to_le_bytes());
    dom0.put(GVA, &r);
    assert_eq!(dom0.ret(Hypercall::MemoryOp, &[DECREASE, GVA]), EINVAL);
    // The list ends where keel can read no further: what was done counts.
    dom0.put(GVA + 0xff_ff8, &(big + 600).to_le_bytes());
    r[0..8].copy_from_slice(&(GVA + 0xff_ff8).to_le_bytes());
    r[8..16].copy_from_slice(&2u64.to_le_bytes());
    dom0.put(GVA, &r);
    assert_eq!(dom0.ret(Hypercall::MemoryOp, &[DECREASE, GVA]), 1);
    assert!(!mapped(&domu, big + 600));
    assert_eq!(domu.dom.stats.unimplemented.load(O::Relaxed), 0);
}

/// `XENMEM_claim_pages` (libxenguest's claim before it populates) and
/// `XENMEM_acquire_resource` (-EOPNOTSUPP: libxenguest seeds the grant
/// table its compat way, not counted as unimplemented).
#[test]
fn claim_pages_and_acquire_resource() {
    const CLAIM: u64 = 24;
    const ACQUIRE: u64 = 28;
    let mut dom0 = domain(true);
    let mut domu = domain(false);
    let u = domu.dom.id;
    let held = domu.dom.tot_pages();
    domu.dom.set_max_pages(held + 1000);
    let claim = |t: &mut T, domid: u16, pages: u64| reservation_claim(t, CLAIM, domid, pages);
    assert_eq!(claim(&mut dom0, u, held + 100), 0);
    // One claim at a time; 0 cancels it.
    assert_eq!(claim(&mut dom0, u, held + 100), EINVAL);
    assert_eq!(claim(&mut dom0, u, 0), 0);
    assert_eq!(claim(&mut dom0, u, 0), 0);
    assert_eq!(claim(&mut dom0, u, held + 1000), 0);
    assert_eq!(claim(&mut dom0, u, 0), 0);
    // No more than it holds, nor more than its max_mem: -EINVAL.
    assert_eq!(claim(&mut dom0, u, held), EINVAL);
    assert_eq!(claim(&mut dom0, u, held + 1001), EINVAL);
    // More than is free: -ENOMEM.
    domu.dom.set_max_pages(u64::MAX);
    assert_eq!(claim(&mut dom0, u, u64::MAX), -12);
    // Xen's lookup: a real id only (-EINVAL otherwise); privileged only.
    assert_eq!(claim(&mut dom0, 0x7000, held + 1), EINVAL);
    assert_eq!(claim(&mut dom0, 0x7ff0, held + 1), EINVAL);
    assert_eq!(claim(&mut domu, u, held + 1), EPERM);
    // Its arguments: no extent list, order 0, no flags, no continuation.
    assert_eq!(reservation(&mut dom0, CLAIM, u, 0, 0, &[1]), EINVAL);
    let mut r = [0u8; 40];
    r[8..16].copy_from_slice(&(held + 1).to_le_bytes());
    r[16..20].copy_from_slice(&1u32.to_le_bytes());
    r[24..26].copy_from_slice(&u.to_le_bytes());
    dom0.put(GVA, &r);
    assert_eq!(dom0.ret(Hypercall::MemoryOp, &[CLAIM, GVA]), EINVAL);
    r[16..20].copy_from_slice(&0u32.to_le_bytes());
    dom0.put(GVA, &r);
    assert_eq!(
        dom0.ret(Hypercall::MemoryOp, &[CLAIM | 1 << 6, GVA]),
        EINVAL
    );
    assert_eq!(dom0.ret(Hypercall::MemoryOp, &[CLAIM, 0xdead_0000]), EFAULT);
    // acquire_resource: refused, not counted as a gap.
    let seen = dom0.dom.stats.unimplemented.load(O::Relaxed);
    assert_eq!(dom0.ret(Hypercall::MemoryOp, &[ACQUIRE, GVA]), -95);
    assert_eq!(dom0.dom.stats.unimplemented.load(O::Relaxed), seen);
}

/// A claim of `pages` for `domid` (`xen_memory_reservation` with a NULL
/// list and order 0).
fn reservation_claim(t: &mut T, cmd: u64, domid: u16, pages: u64) -> i64 {
    let mut r = [0u8; 40];
    r[8..16].copy_from_slice(&pages.to_le_bytes());
    r[24..26].copy_from_slice(&domid.to_le_bytes());
    t.put(GVA, &r);
    t.ret(Hypercall::MemoryOp, &[cmd, GVA])
}

/// Foreign mapping, as a PVH dom0's privcmd does it: dom0 maps a domU's
/// pages into holes of its own physical address space (one result per
/// entry), reads and writes them there, and unmaps them; never over its own
/// RAM; each mapping holds the domU. The compat grant seed: dom0 puts the
/// domU's grant frame at a scratch gfn of the domU, maps it, removes it.
#[test]
fn foreign_mappings_into_the_toolstacks_physmap() {
    const BATCH: u64 = 23;
    const REMOVE: u64 = 15;
    const ADD: u64 = 7;
    let mut dom0 = domain(true);
    let mut domu = domain(false);
    let u = domu.dom.id;
    let hole = RAM / 4096 + 16; // above dom0's RAM
    let map = |t: &mut T, foreign: u16, pairs: &[(u64, u64)]| {
        let n = pairs.len() as u64;
        let idxs: Vec<u8> = pairs.iter().flat_map(|p| p.0.to_le_bytes()).collect();
        let gpfns: Vec<u8> = pairs.iter().flat_map(|p| p.1.to_le_bytes()).collect();
        t.put(GVA + 64, &idxs);
        t.put(GVA + 512, &gpfns);
        t.put(GVA + 1024, &vec![0x55; 4 * pairs.len()]);
        let mut b = [0u8; 32];
        b[0..2].copy_from_slice(&0x7ff0u16.to_le_bytes());
        b[2..4].copy_from_slice(&4u16.to_le_bytes()); // gmfn_foreign
        b[4..6].copy_from_slice(&(n as u16).to_le_bytes());
        b[6..8].copy_from_slice(&foreign.to_le_bytes());
        b[8..16].copy_from_slice(&(GVA + 64).to_le_bytes());
        b[16..24].copy_from_slice(&(GVA + 512).to_le_bytes());
        b[24..32].copy_from_slice(&(GVA + 1024).to_le_bytes());
        t.put(GVA, &b);
        let r = t.ret(Hypercall::MemoryOp, &[BATCH, GVA]);
        let errs: Vec<i32> = t
            .get(GVA + 1024, 4 * pairs.len())
            .chunks(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        (r, errs)
    };
    let remove = |t: &mut T, domid: u16, gpfn: u64| {
        let mut b = [0u8; 16];
        b[0..2].copy_from_slice(&domid.to_le_bytes());
        b[8..16].copy_from_slice(&gpfn.to_le_bytes());
        t.put(GVA, &b);
        t.ret(Hypercall::MemoryOp, &[REMOVE, GVA])
    };
    // Page 0x300 (not one of the test's page-table pages).
    assert!(domu.dom.mem.write(0x30_0000, b"domU page 3"));
    let holds = Arc::strong_count(&domu.dom);
    // Page 3 into a hole; page 4 over dom0's own RAM (refused); a page the
    // domU does not have (refused); each with its own result.
    let (r, errs) = map(
        &mut dom0,
        u,
        &[(0x300, hole), (0x301, 5), (1 << 20, hole + 1)],
    );
    assert_eq!(r, 0);
    assert_eq!(errs, [0, -16, -22]);
    assert_eq!(
        Arc::strong_count(&domu.dom),
        holds + 1,
        "the mapping holds the domU"
    );
    let mut b = [0u8; 11];
    assert!(dom0.dom.mem.read(hole << 12, &mut b));
    assert_eq!(&b, b"domU page 3");
    assert!(dom0.dom.mem.write((hole << 12) + 16, b"from dom0"));
    let mut c = [0u8; 9];
    assert!(domu.dom.mem.read(0x30_0010, &mut c));
    assert_eq!(&c, b"from dom0");
    // A stranger maps nothing; dom0 cannot map from itself.
    let d0 = dom0.dom.id;
    assert_eq!(map(&mut domu, d0, &[(0x300, hole)]).0, -1);
    assert_eq!(map(&mut dom0, d0, &[(0x300, hole)]).0, -22);
    // Unmapped: the hole is empty again and the hold is gone.
    assert_eq!(remove(&mut dom0, 0x7ff0, hole), 0);
    assert_eq!(dom0.dom.mem.translate(hole << 12), None);
    assert_eq!(Arc::strong_count(&domu.dom), holds);
    assert_eq!(remove(&mut dom0, 0x7ff0, hole), -2);
    // Its own RAM is not the caller's to remove this way.
    assert_eq!(remove(&mut dom0, 0x7ff0, 5), -2);
    // The compat grant seed: the domU's grant frame 0 at a scratch gfn of
    // the domU, mapped by dom0, written, removed from the domU.
    let scratch = RAM / 4096 + 100;
    let mut a = [0u8; 24];
    a[0..2].copy_from_slice(&u.to_le_bytes());
    a[4..8].copy_from_slice(&1u32.to_le_bytes()); // grant_table
    a[16..24].copy_from_slice(&scratch.to_le_bytes());
    dom0.put(GVA, &a);
    assert_eq!(dom0.ret(Hypercall::MemoryOp, &[ADD, GVA]), 0);
    // libxenguest asks where frame 0 is (GNTTABOP_setup_table): there;
    // frame 1 is mapped nowhere.
    let setup = |t: &mut T, dom: u16, n: u32| -> (i64, i16, Vec<u64>) {
        let mut st = [0u8; 24];
        st[0..2].copy_from_slice(&dom.to_le_bytes());
        st[4..8].copy_from_slice(&n.to_le_bytes());
        st[16..24].copy_from_slice(&(GVA + 512).to_le_bytes());
        t.put(GVA + 256, &st);
        t.put(GVA + 512, &[0xaa; 16]);
        let r = t.ret(Hypercall::GrantTableOp, &[2, GVA + 256, 1]);
        let status = i16::from_le_bytes(t.get(GVA + 256 + 8, 2).try_into().unwrap());
        let list = t.get(GVA + 512, 16);
        let gfns = list
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()));
        (r, status, gfns.collect())
    };
    assert_eq!(setup(&mut dom0, u, 2), (0, 0, vec![scratch, u64::MAX]));
    // Not the domU's to ask of dom0; no such domain; too many frames.
    assert_eq!(setup(&mut domu, d0, 1).1, -8);
    assert_eq!(setup(&mut dom0, 0x7000, 1).1, -2);
    assert_eq!(setup(&mut dom0, u, 1 << 20).1, -1);
    assert_eq!(dom0.ret(Hypercall::GrantTableOp, &[2, GVA + 256, 2]), -22);
    assert_eq!(map(&mut dom0, u, &[(scratch, hole)]).1, [0]);
    assert!(dom0
        .dom
        .mem
        .write(hole << 12, &[1, 0, 0, 0, 0xff, 0xef, 0x0f, 0]));
    assert_eq!(remove(&mut dom0, 0x7ff0, hole), 0);
    assert_eq!(remove(&mut dom0, u, scratch), 0);
    assert_eq!(domu.dom.mem.translate(scratch << 12), None);
    assert_eq!(setup(&mut dom0, u, 1).2[0], u64::MAX);
    let frame = domu.dom.xen.lock().grant_frames[0];
    let mut g = [0u8; 8];
    crate::mm::phys::read(frame, &mut g);
    assert_eq!(g, [1, 0, 0, 0, 0xff, 0xef, 0x0f, 0]);
    // A domU may not add to another domain's physmap.
    a[0..2].copy_from_slice(&d0.to_le_bytes());
    domu.put(GVA, &a);
    assert_eq!(domu.ret(Hypercall::MemoryOp, &[ADD, GVA]), -1);
}

/// `multicall`: libxc wraps each `memory_op` in a one-entry batch; every
/// entry runs in order and gets its own result, a bad entry does not stop
/// the others, a list keel cannot read is -EFAULT.
#[test]
fn multicall_runs_each_entry_and_writes_its_result() {
    const CURRENT_RESERVATION: u64 = 3;
    let mut dom0 = domain(true);
    let entry = |op: u64, args: [u64; 6]| -> Vec<u8> {
        let mut e = op.to_le_bytes().to_vec();
        e.extend_from_slice(&u64::MAX.to_le_bytes()); // result, overwritten
        for a in args {
            e.extend_from_slice(&a.to_le_bytes());
        }
        e
    };
    // The domid argument of current_reservation: DOMID_SELF.
    dom0.put(GVA + 1024, &0x7ff0u16.to_le_bytes());
    let list = [
        entry(
            Hypercall::MemoryOp as u64,
            [CURRENT_RESERVATION, GVA + 1024, 0, 0, 0, 0],
        ),
        entry(Hypercall::Multicall as u64, [GVA, 1, 0, 0, 0, 0]),
        entry(4095, [0; 6]),
        entry(Hypercall::XenVersion as u64, [0, 0, 0, 0, 0, 0]),
    ]
    .concat();
    dom0.put(GVA, &list);
    assert_eq!(dom0.ret(Hypercall::Multicall, &[GVA, 4]), 0);
    let result = |t: &T, i: u64| i64::from_le_bytes(t.get(GVA + 64 * i + 8, 8).try_into().unwrap());
    assert_eq!(result(&dom0, 0), dom0.dom.tot_pages() as i64);
    assert_eq!(result(&dom0, 1), -22);
    assert_eq!(result(&dom0, 2), -38);
    assert_eq!(result(&dom0, 3), dom0.ret(Hypercall::XenVersion, &[0]));
    // Nothing to do; too many; a list that is not there.
    assert_eq!(dom0.ret(Hypercall::Multicall, &[GVA, 0]), 0);
    assert_eq!(dom0.ret(Hypercall::Multicall, &[GVA, 4097]), -22);
    assert_eq!(dom0.ret(Hypercall::Multicall, &[HOLE, 1]), -14);
}

// --- grant mapping --------------------------------------------------------

/// Where a granter's grant-table frame 0 sits in its physical address
/// space (above its RAM, as Linux's unpopulated allocator puts it).
const GNT_GFN: u64 = RAM / 4096 + 200;
/// Where the mappers put grants: holes above their RAM.
const GNT_HOLE: u64 = RAM / 4096 + 16;
/// Where the tests put map/unmap op lists in the caller's memory.
const GNT_OPS: u64 = GVA + 0x2000;

/// The granter puts its grant-table frame 0 at [`GNT_GFN`]
/// (`add_to_physmap`, as Linux does), where it then writes its entries.
fn grant_table_frame(t: &mut T) {
    let mut a = [0u8; 24];
    a[0..2].copy_from_slice(&0x7ff0u16.to_le_bytes());
    a[4..8].copy_from_slice(&1u32.to_le_bytes()); // XENMAPSPACE_grant_table
    a[16..24].copy_from_slice(&GNT_GFN.to_le_bytes());
    t.put(GVA, &a);
    assert_eq!(t.ret(Hypercall::MemoryOp, &[7, GVA]), 0);
}

/// The granter writes entry `gref`: `flags` for domain `to`, its gfn `frame`.
fn grant(t: &T, gref: u32, flags: u16, to: u16, frame: u32) {
    let mut e = [0u8; 8];
    e[0..2].copy_from_slice(&flags.to_le_bytes());
    e[2..4].copy_from_slice(&to.to_le_bytes());
    e[4..8].copy_from_slice(&frame.to_le_bytes());
    assert!(t.dom.mem.write((GNT_GFN << 12) + 8 * gref as u64, &e));
}

/// The flags of the granter's entry `gref`, as the granter sees them.
fn grant_flags(t: &T, gref: u32) -> u16 {
    let mut f = [0u8; 2];
    assert!(t.dom.mem.read((GNT_GFN << 12) + 8 * gref as u64, &mut f));
    u16::from_le_bytes(f)
}

/// `GNTTABOP_map_grant_ref` of `ops` (host_addr, flags, ref, dom): the
/// call's result and each op's (status, handle, dev_bus_addr) (the handle
/// and address fields start as all ones).
fn gnt_map(t: &mut T, ops: &[(u64, u32, u32, u16)]) -> (i64, Vec<(i16, u32, u64)>) {
    let mut b = Vec::new();
    for &(addr, flags, r, dom) in ops {
        b.extend_from_slice(&addr.to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(&r.to_le_bytes());
        b.extend_from_slice(&dom.to_le_bytes());
        b.extend_from_slice(&0x7777u16.to_le_bytes());
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        b.extend_from_slice(&u64::MAX.to_le_bytes());
    }
    t.put(GNT_OPS, &b);
    let r = t.ret(Hypercall::GrantTableOp, &[0, GNT_OPS, ops.len() as u64]);
    let out = t.get(GNT_OPS, b.len());
    let res = out
        .chunks(32)
        .map(|c| {
            (
                i16::from_le_bytes(c[18..20].try_into().unwrap()),
                u32::from_le_bytes(c[20..24].try_into().unwrap()),
                u64::from_le_bytes(c[24..32].try_into().unwrap()),
            )
        })
        .collect();
    (r, res)
}

/// `GNTTABOP_unmap_grant_ref` of `ops` (host_addr, handle): the call's
/// result and each op's status.
fn gnt_unmap(t: &mut T, ops: &[(u64, u32)]) -> (i64, Vec<i16>) {
    let mut b = Vec::new();
    for &(addr, handle) in ops {
        b.extend_from_slice(&addr.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&handle.to_le_bytes());
        b.extend_from_slice(&0x7777u16.to_le_bytes());
        b.extend_from_slice(&[0; 2]);
    }
    t.put(GNT_OPS, &b);
    let r = t.ret(Hypercall::GrantTableOp, &[1, GNT_OPS, ops.len() as u64]);
    let out = t.get(GNT_OPS, b.len());
    let st = out
        .chunks(24)
        .map(|c| i16::from_le_bytes(c[20..22].try_into().unwrap()))
        .collect();
    (r, st)
}

const GTF_PERMIT: u16 = abi::gtf::PERMIT_ACCESS;
const GTF_RO: u16 = abi::gtf::READONLY;
const GTF_RW_PINNED: u16 = abi::gtf::READING | abi::gtf::WRITING;
const HOST_MAP: u32 = abi::gntmap::HOST_MAP;
const MAP_RO: u32 = abi::gntmap::HOST_MAP | abi::gntmap::READONLY;

/// A PVH dom0 backend maps a domU's grants into holes of its physical
/// address space (gntdev, blkback): it sees and writes the granted page
/// there, read-only grants only read-only, the entry's GTF_reading /
/// GTF_writing follow the mappings; every hostile op gets its status and
/// changes nothing; unmapping clears the flags and the p2m entry.
#[test]
fn grant_map_and_unmap_into_dom0() {
    let mut dom0 = domain(true);
    let mut domu = domain(false);
    let (d0, u) = (dom0.dom.id, domu.dom.id);
    grant_table_frame(&mut domu);
    assert!(domu.dom.mem.write(0x30_0000, b"granted page"));
    grant(&domu, 10, GTF_PERMIT, d0, 0x300);
    grant(&domu, 11, GTF_PERMIT | GTF_RO, d0, 0x301);
    let holds = Arc::strong_count(&domu.dom);
    let hole = GNT_HOLE << 12;
    let flushes = dom0.hw.flushes;
    let (r, res) = gnt_map(&mut dom0, &[(hole, HOST_MAP, 10, u)]);
    assert_eq!(r, 0);
    let (st, h, bus) = res[0];
    assert_eq!(st, 0);
    let frame = domu.dom.mem.translate(0x30_0000).unwrap();
    assert_eq!(bus, frame, "dev_bus_addr: the frame's host address");
    assert_eq!(grant_flags(&domu, 10), GTF_PERMIT | GTF_RW_PINNED);
    assert_eq!(Arc::strong_count(&domu.dom), holds + 1, "held by the map");
    assert!(dom0.hw.flushes > flushes);
    let mut b = [0u8; 12];
    assert!(dom0.dom.mem.read(hole, &mut b));
    assert_eq!(&b, b"granted page");
    assert!(dom0.dom.mem.write(hole + 32, b"from the backend"));
    let mut c = [0u8; 16];
    assert!(domu.dom.mem.read(0x30_0020, &mut c));
    assert_eq!(&c, b"from the backend");
    // A read-only grant: refused for writing, mapped read-only in the p2m.
    let ro_at = hole + 0x1000;
    assert_eq!(gnt_map(&mut dom0, &[(ro_at, HOST_MAP, 11, u)]).1[0].0, -1);
    assert_eq!(grant_flags(&domu, 11), GTF_PERMIT | GTF_RO);
    let (_, res) = gnt_map(&mut dom0, &[(ro_at, MAP_RO, 11, u)]);
    let (st, h_ro, _) = res[0];
    assert_eq!(st, 0);
    let (_, perm, _) = dom0.dom.mem.p2m.translate(&mut Tables, ro_at).unwrap();
    assert_eq!(perm, Perm::R);
    assert_eq!(
        grant_flags(&domu, 11),
        GTF_PERMIT | GTF_RO | abi::gtf::READING
    );
    // Hostile ops, one call, each its own status; nothing changes.
    let own_ram = 5u64 << 12;
    let ram_before = dom0.dom.mem.translate(own_ram);
    let next = hole + 0x2000;
    let (r, res) = gnt_map(
        &mut dom0,
        &[
            (own_ram, HOST_MAP, 10, u),         // over dom0's RAM
            (hole, HOST_MAP, 10, u),            // a grant is there already
            (1 << 48, HOST_MAP, 10, u),         // past keel's gfns
            (next, HOST_MAP, 10, 0x7000),       // no such domain
            (next, HOST_MAP, 10, d0),           // itself
            (next, HOST_MAP, 10, 0x7ff0),       // DOMID_SELF
            (next, HOST_MAP, 512, u),           // past the 1-frame table
            (next, HOST_MAP, u32::MAX, u),      // far past it
            (next, 0, 10, u),                   // neither host nor device
            (next, HOST_MAP | 1, 10, u),        // device map
            (next, HOST_MAP | (1 << 4), 10, u), // contains_pte
            (next, HOST_MAP, 12, u),            // not granted at all
            (next, HOST_MAP, 100, u),           // in the table, zero
            (own_ram, HOST_MAP, 512, u),        // bad ref and bad address
            (1 << 48, HOST_MAP, 10, 0x7000),    // bad domain and address
        ],
    );
    assert_eq!(r, 0);
    let st: Vec<i16> = res.iter().map(|x| x.0).collect();
    // A bad address is general_error, after the grant's own checks (Xen).
    assert_eq!(
        st,
        [-1, -1, -1, -2, -2, -2, -3, -3, -3, -1, -1, -1, -1, -3, -2]
    );
    assert!(res.iter().all(|x| x.1 == u32::MAX && x.2 == u64::MAX));
    assert_eq!(dom0.dom.mem.translate(own_ram), ram_before);
    assert_eq!(dom0.dom.mem.translate(next), None);
    assert_eq!(domu.dom.xen.lock().grant.pins(10), (0, 1));
    assert_eq!(Arc::strong_count(&domu.dom), holds + 2);
    // A table frame never allocated holds no grants: general_error.
    domu.dom.xen.lock().grant.setup_table(2).unwrap();
    assert_eq!(gnt_map(&mut dom0, &[(next, HOST_MAP, 600, u)]).1[0].0, -1);
    // Unmap: the wrong page is refused; host_addr 0 undoes nothing (as
    // Xen); the right one releases; a handle twice or never given: bad.
    assert_eq!(gnt_unmap(&mut dom0, &[(ro_at, h)]), (0, vec![-1]));
    assert_eq!(gnt_unmap(&mut dom0, &[(0, h)]), (0, vec![0]));
    assert_eq!(grant_flags(&domu, 10), GTF_PERMIT | GTF_RW_PINNED);
    assert!(dom0.dom.mem.translate(hole).is_some());
    let flushes = dom0.hw.flushes;
    assert_eq!(
        gnt_unmap(&mut dom0, &[(hole + 0x123, h), (hole, h), (0, 4242)]),
        (0, vec![0, -4, -4])
    );
    assert!(dom0.hw.flushes > flushes);
    assert_eq!(grant_flags(&domu, 10), GTF_PERMIT);
    assert_eq!(dom0.dom.mem.translate(hole), None);
    assert_eq!(domu.dom.xen.lock().grant.pins(10), (0, 0));
    assert_eq!(Arc::strong_count(&domu.dom), holds + 1);
    // The hole takes a grant again.
    let (_, res) = gnt_map(&mut dom0, &[(hole, MAP_RO, 10, u)]);
    assert_eq!(res[0].0, 0);
    assert_eq!(
        gnt_unmap(&mut dom0, &[(hole, res[0].1), (ro_at, h_ro)]),
        (0, vec![0, 0])
    );
    assert_eq!(grant_flags(&domu, 10), GTF_PERMIT);
    assert_eq!(grant_flags(&domu, 11), GTF_PERMIT | GTF_RO);
    assert_eq!(Arc::strong_count(&domu.dom), holds);
    assert!(dom0.dom.grant_maps.lock().track.is_empty());
    // Hostile calls: too many ops, a list keel cannot read.
    let many = super::grant_table_op::MAX_OPS + 1;
    assert_eq!(
        dom0.ret(Hypercall::GrantTableOp, &[0, GNT_OPS, many]),
        EINVAL
    );
    assert_eq!(
        dom0.ret(Hypercall::GrantTableOp, &[1, GNT_OPS, many]),
        EINVAL
    );
    assert_eq!(dom0.ret(Hypercall::GrantTableOp, &[0, HOLE, 1]), EFAULT);
    assert_eq!(dom0.ret(Hypercall::GrantTableOp, &[1, HOLE, 1]), EFAULT);
    assert_eq!(dom0.ret(Hypercall::GrantTableOp, &[0, GNT_OPS, 0]), 0);
    assert_eq!(dom0.dom.stats.unimplemented.load(O::Relaxed), 0);
}

/// Isolation: a domU maps only what was granted to it, and grants only its
/// own memory: not a grant given to another domain, not an entry that is
/// no grant, not a page it maps from someone else.
#[test]
fn a_domu_maps_only_grants_given_to_it() {
    let mut dom0 = domain(true);
    let mut granter = domain(false);
    let mut mapper = domain(false);
    let (g, m, d0) = (granter.dom.id, mapper.dom.id, dom0.dom.id);
    grant_table_frame(&mut granter);
    grant(&granter, 1, GTF_PERMIT, d0, 0x300); // to dom0, not to the mapper
    grant(&granter, 2, abi::gtf::ACCEPT_TRANSFER, m, 0x300);
    grant(&granter, 3, GTF_PERMIT, m, 0x301);
    let hole = GNT_HOLE << 12;
    let (r, res) = gnt_map(
        &mut mapper,
        &[
            (hole, MAP_RO, 1, g),
            (hole, HOST_MAP, 2, g),
            (hole, HOST_MAP, 4, g),
            (4 << 12, HOST_MAP, 3, g), // over its own RAM
            (4 << 12, HOST_MAP, 1, g), // and a grant not its own
        ],
    );
    assert_eq!(r, 0);
    // Over its own RAM: general_error, checked after the grant, which
    // stays unpinned.
    assert_eq!(
        res.iter().map(|x| x.0).collect::<Vec<_>>(),
        [-1, -1, -1, -1, -1]
    );
    assert_eq!(granter.dom.xen.lock().grant.pins(3), (0, 0));
    assert_eq!(grant_flags(&granter, 1), GTF_PERMIT);
    assert_eq!(mapper.dom.mem.translate(hole), None);
    // Once pinned by dom0, another domain cannot ride on the pin.
    let (_, res) = gnt_map(&mut dom0, &[(hole, MAP_RO, 1, g)]);
    assert_eq!(res[0].0, 0);
    assert_eq!(gnt_map(&mut mapper, &[(hole, MAP_RO, 1, g)]).1[0].0, -1);
    assert_eq!(mapper.dom.mem.translate(hole), None);
    // What was granted to it, it maps (no privilege needed).
    assert!(granter.dom.mem.write(0x30_1000, b"for the mapper"));
    let (_, res) = gnt_map(&mut mapper, &[(hole, HOST_MAP, 3, g)]);
    assert_eq!(res[0].0, 0);
    let mut b = [0u8; 14];
    assert!(mapper.dom.mem.read(hole, &mut b));
    assert_eq!(&b, b"for the mapper");
    // The mapper grants the page it maps on to dom0: not its own memory.
    // Nor does it map a grant over its own grant-table frame.
    grant_table_frame(&mut mapper);
    let at_table = gnt_map(&mut mapper, &[(GNT_GFN << 12, MAP_RO, 3, g)]);
    assert_eq!(at_table.1[0].0, -1);
    // Not its own memory, nor memory at all: bad_page (Xen's get_paged_frame).
    grant(&mapper, 5, GTF_PERMIT, d0, GNT_HOLE as u32);
    grant(&mapper, 6, GTF_PERMIT, d0, 0xfff_0000);
    let (_, res) = gnt_map(
        &mut dom0,
        &[(hole + 0x1000, MAP_RO, 5, m), (hole + 0x1000, MAP_RO, 6, m)],
    );
    assert_eq!((res[0].0, res[1].0), (-9, -9));
    assert_eq!(grant_flags(&mapper, 5), GTF_PERMIT);
    assert_eq!(grant_flags(&mapper, 6), GTF_PERMIT);
    assert_eq!(dom0.dom.mem.translate(hole + 0x1000), None);
    // Unmapping another domain's handle is not possible: handles are the
    // caller's own (dom0 holds handle 0, the mapper too).
    assert_eq!(gnt_unmap(&mut mapper, &[(hole, 0)]), (0, vec![0]));
    assert_eq!(grant_flags(&granter, 1), GTF_PERMIT | abi::gtf::READING);
    assert_eq!(grant_flags(&granter, 3), GTF_PERMIT);
}

/// A granter destroyed while dom0 maps its page: its memory is not freed
/// (the frame stays out of the free pool, dom0 still reads it) until dom0
/// unmaps; and a granted frame the toolstack takes out of the granter
/// (`decrease_reservation`) is not freed while mapped either.
#[test]
fn a_granted_frame_outlives_its_granter_until_unmapped() {
    let mut dom0 = domain(true);
    let mut domu = domain(false);
    let u = domu.dom.id;
    grant_table_frame(&mut domu);
    // A page the toolstack populated (decrease_reservation takes only those).
    let pop = RAM / 4096 + 512;
    domu.dom.set_max_pages(u64::MAX);
    assert_eq!(reservation(&mut dom0, 6, u, 0, 0, &[pop]), 1);
    assert!(domu.dom.mem.write(pop << 12, b"populated"));
    assert!(domu.dom.mem.write(0x30_0000, b"granted page"));
    grant(&domu, 7, GTF_PERMIT, dom0.dom.id, pop as u32);
    grant(&domu, 8, GTF_PERMIT, dom0.dom.id, 0x300);
    let (a, b) = ((GNT_HOLE << 12), (GNT_HOLE + 1) << 12);
    let (_, res) = gnt_map(&mut dom0, &[(a, HOST_MAP, 7, u), (b, HOST_MAP, 8, u)]);
    assert_eq!((res[0].0, res[1].0), (0, 0));
    let (h7, h8) = (res[0].1, res[1].1);
    let (f7, f8) = (res[0].2, res[1].2);
    // Taken out of the domU while mapped: out of its p2m, still its frame.
    assert_eq!(reservation(&mut dom0, 1, u, 0, 0, &[pop]), 1);
    assert_eq!(domu.dom.mem.translate(pop << 12), None);
    assert!(domu.dom.mem.disown(f7), "mapped elsewhere: not freed");
    domu.dom.mem.own(f7, 1);
    let mut buf = [0u8; 9];
    assert!(dom0.dom.mem.read(a, &mut buf));
    assert_eq!(&buf, b"populated");
    // Still pinned: mapped again, it is the frame of the first pin (as
    // Xen's active entry keeps it), though the gfn is empty now.
    let c = (GNT_HOLE + 2) << 12;
    let (_, res) = gnt_map(&mut dom0, &[(c, MAP_RO, 7, u)]);
    assert_eq!((res[0].0, res[0].2), (0, f7));
    assert!(dom0.dom.mem.read(c, &mut buf));
    assert_eq!(&buf, b"populated");
    assert_eq!(gnt_unmap(&mut dom0, &[(c, res[0].1)]), (0, vec![0]));
    // The domU is destroyed: it leaves the table, its memory stays.
    let weak = Arc::downgrade(&domu.dom);
    drop(domu);
    assert!(table::get(u).is_none());
    assert!(weak.upgrade().is_some(), "held by dom0's grant mappings");
    for f in [f7, f8] {
        assert!(!phys::frames().take(f, f + 4096), "{f:#x} is free");
    }
    let mut buf = [0u8; 12];
    assert!(dom0.dom.mem.read(b, &mut buf));
    assert_eq!(&buf, b"granted page");
    // Unmapped (a granter gone: only the handles go): memory freed.
    assert_eq!(gnt_unmap(&mut dom0, &[(a, h7)]), (0, vec![0]));
    assert!(weak.upgrade().is_some());
    assert_eq!(gnt_unmap(&mut dom0, &[(b, h8)]), (0, vec![0]));
    assert!(weak.upgrade().is_none(), "the last mapping went");
    assert_eq!(dom0.dom.mem.translate(a), None);
    assert_eq!(dom0.dom.mem.translate(b), None);
}

/// A mapper destroyed while it maps grants: its mappings go back, the
/// granter's pins and flags clear and the granter is no longer held.
#[test]
fn a_destroyed_mapper_releases_its_grant_mappings() {
    let mut granter = domain(false);
    let mut mapper = domain(false);
    let (g, m) = (granter.dom.id, mapper.dom.id);
    grant_table_frame(&mut granter);
    grant(&granter, 3, GTF_PERMIT, m, 0x300);
    grant(&granter, 4, GTF_PERMIT | GTF_RO, m, 0x301);
    let holds = Arc::strong_count(&granter.dom);
    let hole = GNT_HOLE << 12;
    let (_, res) = gnt_map(
        &mut mapper,
        &[
            (hole, HOST_MAP, 3, g),
            (hole + 0x1000, MAP_RO, 3, g),
            (hole + 0x2000, MAP_RO, 4, g),
        ],
    );
    assert!(res.iter().all(|x| x.0 == 0));
    assert_eq!(grant_flags(&granter, 3), GTF_PERMIT | GTF_RW_PINNED);
    assert_eq!(Arc::strong_count(&granter.dom), holds + 3);
    let mdom = mapper.dom.clone();
    drop(mapper);
    assert!(table::get(m).is_none());
    assert_eq!(grant_flags(&granter, 3), GTF_PERMIT);
    assert_eq!(grant_flags(&granter, 4), GTF_PERMIT | GTF_RO);
    assert_eq!(granter.dom.xen.lock().grant.nr_active(), 0);
    assert_eq!(Arc::strong_count(&granter.dom), holds);
    assert!(mdom.grant_maps.lock().track.is_empty());
    assert_eq!(mdom.mem.translate(hole), None);
}

/// `GNTTABOP_copy` of `ops` (source (u, domid, offset), dest (u, domid,
/// offset), len, flags): the call's result and each op's status.
#[allow(clippy::type_complexity)]
fn gnt_copy(t: &mut T, ops: &[((u64, u16, u16), (u64, u16, u16), u16, u16)]) -> (i64, Vec<i16>) {
    let mut b = Vec::new();
    for &(src, dst, len, flags) in ops {
        for (u, dom, off) in [src, dst] {
            b.extend_from_slice(&u.to_le_bytes());
            b.extend_from_slice(&dom.to_le_bytes());
            b.extend_from_slice(&off.to_le_bytes());
            b.extend_from_slice(&[0; 4]);
        }
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(&0x7777u16.to_le_bytes());
        b.extend_from_slice(&[0; 2]);
    }
    t.put(GNT_OPS, &b);
    let r = t.ret(Hypercall::GrantTableOp, &[5, GNT_OPS, ops.len() as u64]);
    let out = t.get(GNT_OPS, b.len());
    let st = out
        .chunks(40)
        .map(|c| i16::from_le_bytes(c[36..38].try_into().unwrap()))
        .collect();
    (r, st)
}

/// `GNTTABOP_copy`, as netback uses it: dom0 copies from its own frame
/// into a domU's granted page and back out of one; the entry's flags are
/// as before afterwards (the pin lasts the copy only, and one a mapping
/// holds stays); every hostile op gets its status and copies nothing.
#[test]
fn grant_copy_to_and_from_granted_pages() {
    const SRC: u16 = abi::gntcopy::SOURCE_GREF;
    const DST: u16 = abi::gntcopy::DEST_GREF;
    const SELF: u16 = 0x7ff0;
    let mut dom0 = domain(true);
    let mut domu = domain(false);
    let mut other = domain(false);
    let (d0, u) = (dom0.dom.id, domu.dom.id);
    grant_table_frame(&mut domu);
    grant(&domu, 20, GTF_PERMIT, d0, 0x300);
    grant(&domu, 21, GTF_PERMIT | GTF_RO, d0, 0x301);
    grant(&domu, 22, GTF_PERMIT, other.dom.id, 0x302);
    assert!(dom0.dom.mem.write(0x20_0010, b"rx packet"));
    assert!(domu.dom.mem.write(0x30_1000, b"tx packet"));
    // Into the domU's page, and out of its read-only one.
    let (r, st) = gnt_copy(
        &mut dom0,
        &[
            ((0x200, SELF, 0x10), (20, u, 0x40), 9, DST),
            ((21, u, 0), (0x200, SELF, 0x100), 9, SRC),
        ],
    );
    assert_eq!((r, st), (0, vec![0, 0]));
    let mut b = [0u8; 9];
    assert!(domu.dom.mem.read(0x30_0040, &mut b));
    assert_eq!(&b, b"rx packet");
    assert!(dom0.dom.mem.read(0x20_0100, &mut b));
    assert_eq!(&b, b"tx packet");
    assert_eq!(grant_flags(&domu, 20), GTF_PERMIT);
    assert_eq!(grant_flags(&domu, 21), GTF_PERMIT | GTF_RO);
    assert_eq!(domu.dom.xen.lock().grant.nr_active(), 0);
    // A grant dom0 maps: copied through too, its mapping's pin stays.
    let hole = GNT_HOLE << 12;
    let (_, res) = gnt_map(&mut dom0, &[(hole, HOST_MAP, 20, u)]);
    assert_eq!(res[0].0, 0);
    let (_, st) = gnt_copy(&mut dom0, &[((20, u, 0x40), (20, u, 0x80), 9, SRC | DST)]);
    assert_eq!(st, [0]);
    assert!(dom0.dom.mem.read(hole + 0x80, &mut b));
    assert_eq!(&b, b"rx packet");
    // Overlapping ranges of one frame: as memmove, whatever the direction.
    let (_, st) = gnt_copy(
        &mut dom0,
        &[
            ((20, u, 0x80), (20, u, 0x84), 9, SRC | DST),
            ((20, u, 0x84), (20, u, 0x82), 9, SRC | DST),
        ],
    );
    assert_eq!(st, [0, 0]);
    let mut o = [0u8; 11];
    assert!(dom0.dom.mem.read(hole + 0x80, &mut o));
    assert_eq!(&o, b"rxrx packet");
    assert_eq!(grant_flags(&domu, 20), GTF_PERMIT | GTF_RW_PINNED);
    assert_eq!(domu.dom.xen.lock().grant.pins(20), (0, 1));
    let before = {
        let mut p = [0u8; 4096];
        assert!(domu.dom.mem.read(0x30_0000, &mut p));
        p
    };
    // Hostile ops, each its own status.
    let (r, st) = gnt_copy(
        &mut dom0,
        &[
            ((0x200, SELF, 0), (21, u, 0), 8, DST),      // read-only dest
            ((22, u, 0), (0x200, SELF, 0), 8, SRC),      // granted to another
            ((23, u, 0), (0x200, SELF, 0), 8, SRC),      // not granted
            ((20, 0x7000, 0), (0x200, SELF, 0), 8, SRC), // no such domain
            ((0x300, u, 0), (0x200, SELF, 0), 8, 0),     // a frame not its own
            ((0x200, d0, 0), (20, u, 0), 8, DST),        // its own id, by frame
            ((20, u, 4000), (0x200, SELF, 0), 200, SRC), // crosses the page
            ((0x200, SELF, 0), (20, u, 4095), 2, DST),   // crosses the page
            ((512, u, 0), (0x200, SELF, 0), 8, SRC),     // past the table
            ((0x200, SELF, 0x10), (20, u, 0), 8, DST),   // fine, in between
            ((1 << 40, SELF, 0), (20, u, 0), 8, DST),    // past its gfns
            ((1 << 52 | 0x200, SELF, 0), (20, u, 0), 8, DST), // would wrap
            ((GNT_HOLE, SELF, 0), (20, u, 0), 8, DST),   // a grant it maps
        ],
    );
    assert_eq!(r, 0);
    assert_eq!(st, [-1, -1, -1, -2, -8, -8, -10, -10, -3, 0, -9, -9, -9]);
    let mut after = [0u8; 4096];
    assert!(domu.dom.mem.read(0x30_0000, &mut after));
    assert_eq!(&after[8..], &before[8..], "only the good op copied");
    assert_eq!(&after[..8], b"rx packe");
    assert_eq!(grant_flags(&domu, 20), GTF_PERMIT | GTF_RW_PINNED);
    assert_eq!(grant_flags(&domu, 21), GTF_PERMIT | GTF_RO);
    assert_eq!(grant_flags(&domu, 22), GTF_PERMIT);
    assert_eq!(domu.dom.xen.lock().grant.nr_active(), 1);
    // The domain granted to copies; a stranger cannot ride on dom0's pin.
    assert!(other.dom.mem.write(0x20_0000, b"from other"));
    let (_, st) = gnt_copy(
        &mut other,
        &[
            ((0x200, SELF, 0), (22, u, 0x200), 10, DST),
            ((20, u, 0), (0x200, SELF, 0), 8, SRC),
        ],
    );
    assert_eq!(st, [0, -1]);
    let mut c = [0u8; 10];
    assert!(domu.dom.mem.read(0x30_2200, &mut c));
    assert_eq!(&c, b"from other");
    // Too many; a list keel cannot read.
    let many = super::grant_table_op::MAX_OPS + 1;
    assert_eq!(
        dom0.ret(Hypercall::GrantTableOp, &[5, GNT_OPS, many]),
        EINVAL
    );
    assert_eq!(dom0.ret(Hypercall::GrantTableOp, &[5, HOLE, 1]), EFAULT);
    assert_eq!(gnt_unmap(&mut dom0, &[(hole, res[0].1)]), (0, vec![0]));
}
