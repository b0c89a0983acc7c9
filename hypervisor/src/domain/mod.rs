//! Domains: the one domain type every guest is (dom0, test guests, the
//! domUs to come), its vCPUs ([`vcpu`]), the table of domains by id
//! ([`table`]), its life cycle ([`lifecycle`]) and the builders
//! ([`build`]).
//!
//! A domain is shared (`Arc`) between the CPUs running its vCPUs, the
//! table, and whoever signals it. What changes after the build sits behind
//! small locks: `xen` (event channels, grant table, HVM params) for the
//! domain, `st` per vCPU, the p2m's edit lock; the rest is fixed at build
//! time. Lock order: vCPU `hw` → `xen` → vCPU `st` → scheduler; never two
//! domains' `xen` locks at once. Grant and foreign mappings: the global
//! `FOREIGN` lock (memory_op) → a granting domain's `xen` → a mapping
//! domain's `grant_maps` → the p2m's edit lock.
//!
//! Everything here is plain Rust over the [`crate::platform`] and
//! [`crate::mm::phys`] shims, so the host tests build domains and run
//! hypercalls against them.

pub mod acpi;
#[cfg(target_os = "none")]
pub mod build;
pub mod console;
pub mod create;
pub mod hostacpi;
pub mod lifecycle;
pub mod table;
pub mod toolstate;
pub mod vcpu;

pub use crate::xen::abi::DomId;
pub use lifecycle::{DomainState, Lifecycle, ShutdownReason};
pub use vcpu::{Power, Vcpu, VcpuState, Wait};

use crate::hvm::testproto::TestState;
use crate::hvm::vlapic::Ipi;
use crate::loader::pvh::MemType;
use crate::mm::p2m::{P2m, Perm};
use crate::mm::paging::{PageSize, TableMemory};
use crate::mm::phys::{self, Tables};
use crate::platform;
use crate::xen::abi::GrantHandle;
use crate::xen::abi::{self, Errno, SharedInfo, VcpuInfo, VcpuTimeInfo};
use crate::xen::evtchn::{Channels, Pending, VcpuInfoRef};
use crate::xen::grant::{GrantTable, MapTrack};
use crate::xen::time::{publish, TimeScale};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use spin::Mutex;

/// How a domain ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It shut itself down (SCHEDOP_shutdown, ACPI soft-off, a reset).
    Shutdown(ShutdownReason),
    /// A test guest reported DONE with this code (0: its checks passed).
    Done(u32),
    /// keel stopped it, for this reason.
    Killed(String),
}

/// What sets a guest apart on the common exit path: data, looked at by
/// `hvm::exit` where guests differ.
pub enum Kind {
    /// A Xen-ABI PVH guest (Linux). `passthrough`: the initial domain,
    /// which owns the machine's ports, MMIO and device interrupts.
    /// `own_acpi`: it has keel's ACPI tables (keel's sleep control port
    /// means soft-off); with the host's, that port is the hardware's.
    Pvh { passthrough: bool, own_acpi: bool },
    /// keel's test guest (`tests/guests`): its ports and on-demand memory.
    Test(Mutex<TestState>),
}

/// The Xen state a domain's hypercalls change.
pub struct XenState {
    pub chans: Channels,
    pub grant: GrantTable,
    /// Host frames behind the grant table's frames (allocated on first use).
    pub grant_frames: Vec<u64>,
    /// Where each grant-table frame is mapped in the domain's p2m
    /// (`add_to_physmap`), [`INVALID_GFN`] where it is not:
    /// `GNTTABOP_setup_table` answers with these.
    pub grant_gfns: Vec<u64>,
    pub params: [u64; 64],
}

/// The grants a domain maps from others, as a mapper
/// (`GNTTABOP_map_grant_ref`): its grant handles, and for each the granting
/// domain, held so that its memory is not freed, even once it is destroyed,
/// until the mapping goes, and the host frame mapped (which the granter's
/// `decrease_reservation` must not free either).
#[derive(Default)]
pub struct GrantMaps {
    pub track: MapTrack,
    /// Per handle: the granting domain and the host frame it granted.
    pub held: alloc::collections::BTreeMap<GrantHandle, (Arc<Domain>, u64)>,
    /// The handle mapped at each gfn that holds a grant mapping.
    pub at: alloc::collections::BTreeMap<u64, GrantHandle>,
}

/// No gfn (Xen's `INVALID_GFN`).
pub const INVALID_GFN: u64 = u64::MAX;

impl XenState {
    /// Records that grant frame `idx` is now at `gfn` (and nothing else is).
    pub fn grant_frame_at(&mut self, idx: usize, gfn: u64) {
        self.grant_frame_gone(gfn);
        if self.grant_gfns.len() <= idx {
            self.grant_gfns.resize(idx + 1, INVALID_GFN);
        }
        self.grant_gfns[idx] = gfn;
    }

    /// `gfn` no longer holds a grant frame (unmapped or mapped over).
    pub fn grant_frame_gone(&mut self, gfn: u64) {
        for g in self.grant_gfns.iter_mut().filter(|g| **g == gfn) {
            *g = INVALID_GFN;
        }
    }
}

/// A domain's memory: its p2m and the host frames it owns.
pub struct Memory {
    pub p2m: P2m,
    /// Serializes p2m edits (the hardware walks the tables concurrently).
    edit: Mutex<()>,
    /// Bumped when a present p2m entry changes: every vCPU flushes its
    /// cached translations before its next entry.
    gen: AtomicU64,
    /// keel's shared_info frame for the domain.
    pub shared_info: u64,
    /// Host frames it owns, (start, pages): freed with the domain.
    frames: Mutex<Vec<(u64, u64)>>,
    /// Pages of RAM it was given.
    pub ram_pages: u64,
    /// Guest frame numbers below this may be RAM (the top of its RAM; a
    /// toolstack domain's grows as the toolstack populates it).
    gfn_limit: AtomicU64,
    /// Its memory map, sorted (a boot-built domain's).
    pub e820: Vec<(u64, u64, MemType)>,
    /// The memory map the toolstack gave it (`XENMEM_set_memory_map`),
    /// which `XENMEM_memory_map` then returns instead of [`Memory::e820`].
    pub toolstack_e820: Mutex<Option<Vec<(u64, u64, u32)>>>,
    /// dom0's layout: RAM 1:1 with host memory, host devices its own.
    pub identity: bool,
    /// The largest page the p2m may use (the hardware's limit).
    pub max_page: PageSize,
    /// Zeroed frames set aside for the p2m's own tables
    /// ([`Memory::reserve_tables`]): dom0's p2m grows while it runs, as it
    /// maps other domains' pages into its holes, and as on Xen, where HAP
    /// tables come from the domain's paging pool, that growth does not
    /// take from the host's free memory until the pool runs dry.
    table_pool: Mutex<Vec<u64>>,
}

/// The p2m's table frames: from a domain's pool first, else the allocator.
struct PoolTables<'a>(&'a mut Vec<u64>, Tables);

impl TableMemory for PoolTables<'_> {
    fn alloc_table(&mut self) -> Option<u64> {
        // Pool frames were allocated zeroed and never used since.
        self.0.pop().or_else(|| self.1.alloc_table())
    }
    fn table(&mut self, phys: u64) -> &mut [u64; 512] {
        self.1.table(phys)
    }
}

impl Memory {
    pub fn new(p2m: P2m, shared_info: u64, identity: bool, max_page: PageSize) -> Self {
        Memory {
            p2m,
            edit: Mutex::new(()),
            gen: AtomicU64::new(0),
            shared_info,
            frames: Mutex::new(Vec::new()),
            ram_pages: 0,
            gfn_limit: AtomicU64::new(0),
            e820: Vec::new(),
            toolstack_e820: Mutex::new(None),
            identity,
            max_page,
            table_pool: Mutex::new(Vec::new()),
        }
    }

    /// Sets `pages` zeroed frames aside for the p2m's tables; false (with
    /// what was set aside kept) if the allocator runs out first.
    pub fn reserve_tables(&self, pages: usize) -> bool {
        let mut pool = self.table_pool.lock();
        while pool.len() < pages {
            match phys::alloc_zeroed(1) {
                Some(f) => pool.push(f),
                None => return false,
            }
        }
        true
    }

    /// Frames left in the table pool.
    pub fn table_pool_left(&self) -> usize {
        self.table_pool.lock().len()
    }

    /// Records host frames the domain owns (freed with it).
    pub fn own(&self, start: u64, pages: u64) {
        self.frames.lock().push((start, pages));
    }

    /// Guest frame numbers below this may be RAM.
    pub fn gfn_limit(&self) -> u64 {
        self.gfn_limit.load(Ordering::Acquire)
    }

    /// Sets the top of RAM (building a domain).
    pub fn set_gfn_limit(&self, limit: u64) {
        self.gfn_limit.store(limit, Ordering::Release);
    }

    /// Raises the top of RAM to at least `limit` (the toolstack populated
    /// memory up to there).
    pub fn raise_gfn_limit(&self, limit: u64) {
        self.gfn_limit.fetch_max(limit, Ordering::AcqRel);
    }

    pub fn gen(&self) -> u64 {
        self.gen.load(Ordering::Acquire)
    }

    /// Maps `hpa` at `gpa` (4 KiB), replacing what was there; a replaced
    /// present entry makes every vCPU flush.
    pub fn map_4k(&self, gpa: u64, hpa: u64, perm: Perm) -> Result<(), Errno> {
        let _g = self.edit.lock();
        let mut pool = self.table_pool.lock();
        let mut t = PoolTables(&mut pool, Tables);
        let replaced = self.p2m.unmap(&mut t, gpa, PageSize::Size4K).is_ok();
        self.p2m
            .map(&mut t, gpa, hpa, PageSize::Size4K, perm)
            .map_err(|_| Errno::EINVAL)?;
        if replaced {
            self.gen.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Removes the 4 KiB mapping at `gpa` (-ENOENT if none); every vCPU
    /// flushes before it runs again.
    pub fn unmap_4k(&self, gpa: u64) -> Result<u64, Errno> {
        let _g = self.edit.lock();
        let mut pool = self.table_pool.lock();
        let hpa = self
            .p2m
            .unmap(&mut PoolTables(&mut pool, Tables), gpa, PageSize::Size4K)
            .map_err(|_| Errno::ENOENT)?;
        self.gen.fetch_add(1, Ordering::AcqRel);
        Ok(hpa)
    }

    /// Maps a run of RAM for the build with the largest pages that fit
    /// (up to `max_page`, what the CPU's p2m format offers); a later 4 KiB
    /// change (shared_info, grant frames, a foreign page) splits only the
    /// large page around it.
    pub fn map_ram(&self, gpa: u64, hpa: u64, len: u64, perm: Perm) -> Result<(), Errno> {
        let _g = self.edit.lock();
        let mut pool = self.table_pool.lock();
        self.p2m
            .map_range(
                &mut PoolTables(&mut pool, Tables),
                gpa,
                hpa,
                len,
                perm,
                self.max_page,
            )
            .map_err(|_| Errno::ENOMEM)
    }

    /// Host-physical address behind `gpa`.
    pub fn translate(&self, gpa: u64) -> Option<u64> {
        self.p2m.translate(&mut Tables, gpa).map(|(h, _, _)| h)
    }

    /// Copies guest-physical memory out; false if any byte is unmapped.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> bool {
        self.copy(gpa, buf.len(), |hpa, off, n| {
            phys::read(hpa, &mut buf[off..off + n])
        })
    }

    /// Zeroes guest-physical memory; false if any byte is unmapped.
    pub fn zero(&self, gpa: u64, len: u64) -> bool {
        self.copy(gpa, len as usize, |hpa, _, n| phys::zero(hpa, n as u64))
    }

    /// Copies into guest-physical memory; false if any byte is unmapped.
    pub fn write(&self, gpa: u64, data: &[u8]) -> bool {
        self.copy(gpa, data.len(), |hpa, off, n| {
            phys::write(hpa, &data[off..off + n])
        })
    }

    fn copy(&self, gpa: u64, len: usize, mut f: impl FnMut(u64, usize, usize)) -> bool {
        let mut done = 0;
        while done < len {
            let a = gpa.wrapping_add(done as u64);
            let Some(hpa) = self.translate(a) else {
                return false;
            };
            let n = ((4096 - (a & 0xfff)) as usize).min(len - done);
            f(hpa, done, n);
            done += n;
        }
        true
    }
}

impl Drop for Memory {
    /// Gives the domain's frames back, scrubbed first: free memory never
    /// holds a domain's data, so no builder has to zero what it allocates
    /// from the pool for another domain to be safe (docs/memory.md).
    fn drop(&mut self) {
        let mut tables = Vec::new();
        self.p2m.free_tables(&mut Tables, &mut |t| tables.push(t));
        // The pool's frames are unused tables: zero already.
        tables.append(&mut self.table_pool.lock());
        let owned = core::mem::take(&mut *self.frames.lock());
        // Scrubbed outside the allocator's lock: other CPUs allocate meanwhile.
        for &(start, pages) in &owned {
            phys::zero(start, pages * 4096);
        }
        phys::zero(self.shared_info, 4096);
        for &t in &tables {
            phys::zero(t, 4096);
        }
        let mut f = phys::frames();
        for t in tables {
            f.free(t, 1);
        }
        for &(start, pages) in &owned {
            f.free(start, pages);
        }
        f.free(self.shared_info, 1);
    }
}

/// Counters read without locks (`keelctl list`, the logs).
#[derive(Default)]
pub struct DomStats {
    pub hypercalls: AtomicU64,
    pub unimplemented: AtomicU64,
}

struct Life {
    lc: Lifecycle,
    outcome: Option<Outcome>,
}

pub struct Domain {
    pub id: DomId,
    pub name: String,
    /// The control domain (dom0): management hypercalls, platform_op.
    pub privileged: bool,
    pub kind: Kind,
    pub mem: Memory,
    pub xen: Mutex<XenState>,
    pub vcpus: Vec<Arc<Vcpu>>,
    /// The TSC when the domain started: its system time counts from here.
    pub tsc_start: u64,
    pub scale: TimeScale,
    /// HVM_PARAM_CALLBACK_IRQ of type "vector" (0: none), read without `xen`.
    pub callback_vector: AtomicU8,
    /// The toolstack's settings and populated-memory ledger.
    pub tools: toolstate::ToolState,
    pub stats: DomStats,
    /// The toolstack's 16-byte handle for it (a UUID; `setdomainhandle`).
    pub handle: Mutex<[u8; 16]>,
    /// Other domains' pages it maps (`XENMAPSPACE_gmfn_foreign`), by the
    /// gfn they sit at here: each holds the other domain, whose memory is
    /// therefore not freed, even once it is destroyed, until the last
    /// such mapping goes.
    pub foreign: Mutex<alloc::collections::BTreeMap<u64, Arc<Domain>>>,
    /// Other domains' grants it maps; released when it is finished.
    pub grant_maps: Mutex<GrantMaps>,
    /// Toolstack pauses not undone yet (`domctl pausedomain`).
    pauses: AtomicU32,
    life: Mutex<Life>,
    ending: AtomicBool,
    finished: AtomicBool,
    /// Kept in the table once ended, until the toolstack destroys it
    /// (a toolstack domain: `xl` reads its shutdown reason, then acts).
    kept: AtomicBool,
    /// `domctl destroydomain` came: it leaves the table once stopped.
    destroyed: AtomicBool,
    console: Mutex<console::GuestConsole>,
}

impl Domain {
    /// Puts a built domain together (in `Created`: [`Domain::start`] runs it).
    pub fn new(
        id: DomId,
        name: &str,
        privileged: bool,
        kind: Kind,
        mem: Memory,
        vcpus: Vec<Arc<Vcpu>>,
    ) -> Self {
        let n = vcpus.len() as u32;
        Domain {
            id,
            name: String::from(name),
            privileged,
            kind,
            xen: Mutex::new(XenState {
                chans: Channels::new(id, n),
                grant: GrantTable::default(),
                grant_frames: Vec::new(),
                grant_gfns: Vec::new(),
                params: default_params(),
            }),
            tsc_start: platform::tsc(),
            scale: TimeScale::from_hz(platform::tsc_khz() * 1000),
            callback_vector: AtomicU8::new(0),
            tools: toolstate::ToolState::default(),
            stats: DomStats::default(),
            handle: Mutex::new([0; 16]),
            foreign: Mutex::new(alloc::collections::BTreeMap::new()),
            grant_maps: Mutex::new(GrantMaps::default()),
            pauses: AtomicU32::new(0),
            life: Mutex::new(Life {
                lc: Lifecycle::new(mem.ram_pages),
                outcome: None,
            }),
            ending: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            kept: AtomicBool::new(false),
            destroyed: AtomicBool::new(false),
            console: Mutex::new(console::GuestConsole::default()),
            mem,
            vcpus,
        }
    }

    pub fn is_test(&self) -> bool {
        matches!(self.kind, Kind::Test(_))
    }

    /// dom0: the machine's devices are its own.
    pub fn passthrough(&self) -> bool {
        matches!(
            self.kind,
            Kind::Pvh {
                passthrough: true,
                ..
            }
        )
    }

    pub fn state(&self) -> DomainState {
        self.life.lock().lc.state()
    }

    pub fn outcome(&self) -> Option<Outcome> {
        self.life.lock().outcome.clone()
    }

    /// Ending: its vCPUs stop at their next exit.
    pub fn is_ending(&self) -> bool {
        self.ending.load(Ordering::SeqCst)
    }

    /// Keeps the domain in the table after it ends, shut down with its
    /// reason, until [`Domain::destroy`]: as Xen keeps a domain that shut
    /// itself down for its toolstack to look at (and restart or destroy).
    pub fn keep_until_destroyed(&self) {
        self.kept.store(true, Ordering::SeqCst);
    }

    /// `domctl destroydomain` came for it.
    pub fn is_destroyed(&self) -> bool {
        self.destroyed.load(Ordering::SeqCst)
    }

    /// `domctl destroydomain`: ends the domain if it still runs (`why`),
    /// and it leaves the table once none of its vCPUs is on a CPU. Its
    /// memory goes back with the last reference (a foreign mapping holds
    /// one).
    pub fn destroy(self: &Arc<Self>, why: Outcome) {
        self.destroyed.store(true, Ordering::SeqCst);
        self.end(why);
        self.maybe_finish();
    }

    /// Runs the domain: vCPU 0 and any vCPU whose start-up IPI came become
    /// runnable in the scheduler, each first on CPU `home(vcpu)` if its
    /// affinity allows.
    pub fn start(&self, affinity: &dyn Fn(u32) -> u64, home: &dyn Fn(u32) -> usize) {
        let _ = self.life.lock().lc.start();
        for v in &self.vcpus {
            let mut st = v.st.lock();
            let runnable = st.power == Power::Up;
            if !runnable {
                st.wait = Some(Wait::Down);
            }
            if let Err(e) = crate::sched::add(v.sched_ref(), affinity(v.id), home(v.id), runnable) {
                log::error!("d{}v{}: not scheduled: {e:?}", self.id, v.id);
            }
        }
    }

    /// Nanoseconds since the domain started (its system time).
    pub fn now_ns(&self) -> u64 {
        self.scale.ns(platform::tsc().wrapping_sub(self.tsc_start))
    }

    /// The TSC value at system time `ns`, `u64::MAX` ("never") for a time
    /// beyond the TSC's range. Guests choose these times (set_timer_op,
    /// SCHEDOP_poll): a wrapped value would be a deadline in the past that
    /// never comes due, and under VT-x a VMX-preemption timer of 0 that
    /// keeps the vCPU from running (issue 12).
    pub fn tsc_at(&self, ns: u64) -> u64 {
        tsc_at(self.tsc_start, platform::tsc_khz(), ns)
    }

    pub fn vcpu(&self, i: usize) -> Option<&Arc<Vcpu>> {
        self.vcpus.get(i)
    }

    // --- waking ---------------------------------------------------------------

    /// Whether a waiting vCPU's wake condition holds (never while the
    /// toolstack has the domain paused).
    pub fn ready(&self, st: &VcpuState) -> bool {
        if st.wait.is_some() && self.is_paused() {
            return false;
        }
        match st.wait {
            None => true,
            Some(Wait::Halt) => st.interrupt_due(),
            Some(Wait::Poll) => {
                st.interrupt_due()
                    || st.poll_timeout_ns.is_some_and(|t| self.now_ns() >= t)
                    || st.poll.iter().any(|&p| self.port_pending(p))
            }
            Some(Wait::Down) => matches!(st.power, Power::Start(_) | Power::StartPvh { .. }),
            Some(Wait::Park) | Some(Wait::Stopped) => false,
            Some(Wait::Paused) => true,
        }
    }

    // --- toolstack pause --------------------------------------------------------

    /// The most pages the domain may hold (`domctl max_mem`).
    pub fn max_pages(&self) -> u64 {
        self.life.lock().lc.max_pages()
    }

    pub fn set_max_pages(&self, pages: u64) {
        self.life.lock().lc.set_max_pages(pages);
    }

    /// Pages it holds: its boot-built RAM and what the toolstack populated.
    pub fn tot_pages(&self) -> u64 {
        self.mem.ram_pages + self.life.lock().lc.tot_pages()
    }

    /// Counts `n` more pages against its `max_pages` (-ENOMEM past it,
    /// -EINVAL once it is dying).
    pub fn charge_pages(&self, n: u64) -> Result<(), Errno> {
        let mut l = self.life.lock();
        // Its boot-built RAM counts against the limit too.
        let after = self
            .mem
            .ram_pages
            .saturating_add(l.lc.tot_pages())
            .saturating_add(n);
        if after > l.lc.max_pages() {
            return Err(Errno::ENOMEM);
        }
        l.lc.alloc_pages(n).map_err(|e| e.errno())
    }

    /// Undoes a [`Domain::charge_pages`] of `n` pages.
    pub fn uncharge_pages(&self, n: u64) {
        let _ = self.life.lock().lc.free_pages(n);
    }

    /// Paused by the toolstack (its pause count is not zero).
    pub fn is_paused(&self) -> bool {
        self.pauses.load(Ordering::SeqCst) != 0
    }

    /// `domctl pausedomain`: its vCPUs leave their CPUs at their next exit
    /// and stay off until as many unpauses came. Pauses nest (255 at most,
    /// as on Xen).
    pub fn pause(&self) -> Result<(), Errno> {
        self.pauses
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < 255).then_some(n + 1)
            })
            .map_err(|_| Errno::EOVERFLOW)?;
        let _ = self.life.lock().lc.pause();
        for v in &self.vcpus {
            if let Some(cpu) = v.running_on() {
                crate::sched::resched(cpu);
            }
        }
        Ok(())
    }

    /// `domctl unpausedomain`: undoes one pause (-EINVAL if not paused); the
    /// last one lets every vCPU whose wake condition holds run again.
    pub fn unpause(&self) -> Result<(), Errno> {
        let before = self
            .pauses
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .map_err(|_| Errno::EINVAL)?;
        if before == 1 {
            let _ = self.life.lock().lc.unpause();
            for v in &self.vcpus {
                let mut st = v.st.lock();
                if st.wait == Some(Wait::Paused) {
                    st.wait = None;
                    crate::sched::wake(v.sched_ref());
                } else {
                    self.poke(v, &mut st);
                }
            }
        }
        Ok(())
    }

    /// Something changed for `v`: wake it if it may run, else kick its CPU.
    pub fn poke(&self, v: &Vcpu, st: &mut VcpuState) {
        let ready = self.ready(st);
        v.poke(st, ready);
    }

    // --- event channels -------------------------------------------------------

    /// keel's shared_info frame for the domain. Callers hold `xen` (which
    /// serializes keel's writers; the guest's use atomic operations).
    fn shared_info(&self, _xen: &XenState) -> &'static mut SharedInfo {
        // SAFETY: keel's own 4 KiB frame, allocated for this domain and
        // freed only with it; `SharedInfo` fits a page and is plain data.
        unsafe { phys::obj(self.mem.shared_info) }
    }

    /// Logs every event channel in use with its binding, vCPU, and pending
    /// and mask bits (when a guest crashed: what its kernel saw of its
    /// events, e.g. an event on a port it thought masked).
    pub fn dump_channels(&self) {
        let xs = self.xen.lock();
        let mut pd = Pending::new(self.shared_info(&xs));
        for (port, state) in xs.chans.ports_in_use() {
            log::info!(
                "d{}: event channel {port}: {state:?}, vCPU {}{}{}",
                self.id,
                xs.chans.notify_vcpu(port).unwrap_or(0),
                if pd.is_pending(port) { ", pending" } else { "" },
                if pd.is_masked(port) { ", masked" } else { "" },
            );
        }
    }

    /// Clears `port`'s pending bit (on close, as Xen's `evtchn_free`).
    pub fn clear_pending(&self, xs: &XenState, port: u32) {
        let _ = Pending::new(self.shared_info(xs)).clear(port);
    }

    /// Whether `port` is pending (an atomic read of its word).
    pub fn port_pending(&self, port: u32) -> bool {
        if port >= crate::xen::evtchn::NR_EVENT_CHANNELS {
            return false;
        }
        let off = core::mem::offset_of!(SharedInfo, evtchn_pending) as u64 + (port as u64 / 64) * 8;
        // SAFETY: an aligned u64 inside keel's shared_info frame.
        let w: &AtomicU64 = unsafe { phys::obj(self.mem.shared_info + off) };
        w.load(Ordering::SeqCst) & (1 << (port % 64)) != 0
    }

    /// A structure of type `T` at guest-physical `gpa`, checked when it was
    /// registered to lie within one page of the domain's RAM.
    fn guest_struct<T>(&self, gpa: u64) -> Option<&'static mut T> {
        let hpa = self.mem.translate(gpa)?;
        if (gpa & 0xfff) as usize + core::mem::size_of::<T>() > 4096 {
            return None;
        }
        // SAFETY: `hpa` backs the guest page holding the structure (which
        // does not cross the page); RAM stays mapped while the domain
        // lives, and keel writes it only under the domain's `xen` lock.
        Some(unsafe { phys::obj(hpa) })
    }

    /// Runs `f` on the 2-level pending bitmaps and vCPU `i`'s vcpu_info.
    pub fn with_pending<T>(
        &self,
        xs: &XenState,
        i: usize,
        f: impl FnOnce(&mut Pending, VcpuInfoRef) -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        let v = self.vcpus.get(i).ok_or(Errno::EINVAL)?;
        let registered = v.st.lock().vcpu_info_gpa;
        let vi = match registered.and_then(|g| self.guest_struct::<VcpuInfo>(g)) {
            Some(p) => VcpuInfoRef::Registered(p),
            None => VcpuInfoRef::Legacy,
        };
        let mut p = Pending::new(self.shared_info(xs));
        f(&mut p, vi)
    }

    /// Sets `port` pending for its vCPU and, when that makes an upcall due,
    /// raises it; wakes a vCPU polling the port.
    pub fn signal(&self, xs: &XenState, port: u32) {
        let Ok(vcpu) = xs.chans.notify_vcpu(port) else {
            return;
        };
        if let Ok(true) = self.with_pending(xs, vcpu as usize, |p, vi| {
            p.set(port, vcpu, vi).map(|d| d.upcall)
        }) {
            self.raise_upcall(vcpu as usize);
        }
        // A vCPU polling this port (usually masked: no upcall) wakes too.
        for v in &self.vcpus {
            let mut st = v.st.lock();
            if st.poll.contains(&port) {
                self.poke(v, &mut st);
            }
        }
    }

    /// Makes the event-channel upcall due on vCPU `i`.
    pub fn raise_upcall(&self, i: usize) {
        let Some(v) = self.vcpus.get(i) else {
            return;
        };
        let mut st = v.st.lock();
        if let Some(vec) = st.lapic_upcall {
            st.lapic.raise(vec);
        } else if self.callback_vector.load(Ordering::Relaxed) >= 16 {
            st.callback_pending = true;
        } else {
            return;
        }
        self.poke(v, &mut st);
    }

    /// Publishes every vCPU's PV clock: system time = ns since the domain
    /// started (one invariant TSC, so one record fits all vCPUs).
    pub fn update_time(&self, xs: &XenState) {
        let now = platform::tsc();
        let ns = self.scale.ns(now.wrapping_sub(self.tsc_start));
        let si = self.shared_info(xs);
        for (i, v) in self.vcpus.iter().enumerate() {
            let (info, area) = {
                let st = v.st.lock();
                (st.vcpu_info_gpa, st.time_area_gpa)
            };
            if i < abi::XEN_LEGACY_MAX_VCPUS {
                publish(&mut si.vcpu_info[i].time, self.scale, now, ns);
            }
            if let Some(vi) = info.and_then(|g| self.guest_struct::<VcpuInfo>(g)) {
                publish(&mut vi.time, self.scale, now, ns);
            }
            if let Some(t) = area.and_then(|g| self.guest_struct::<VcpuTimeInfo>(g)) {
                publish(t, self.scale, now, ns);
            }
        }
    }

    /// Sets the wall clock so that `secs.nsecs` was the time at system
    /// time `system_time` (ns): shared_info then holds the wall time at
    /// system time 0, as Xen's `do_settime` keeps it.
    pub fn set_wallclock(&self, xs: &XenState, secs: u64, nsecs: u32, system_time: u64) {
        let at = secs as u128 * 1_000_000_000 + nsecs as u128;
        let base = at.saturating_sub(system_time as u128);
        let (sec, nsec) = ((base / 1_000_000_000) as u64, (base % 1_000_000_000) as u32);
        let si = self.shared_info(xs);
        si.wc_version = si.wc_version.wrapping_add(1) | 1;
        core::sync::atomic::fence(Ordering::SeqCst);
        si.wc_sec = sec as u32;
        si.wc_sec_hi = (sec >> 32) as u32;
        si.wc_nsec = nsec;
        core::sync::atomic::fence(Ordering::SeqCst);
        si.wc_version = si.wc_version.wrapping_add(1);
    }

    /// Fires `v`'s timers that are due: its local APIC timer, and Xen's
    /// single-shot timer (VIRQ_TIMER). Takes `xen`, then `st`.
    pub fn fire_timers(&self, v: &Vcpu) {
        let now = self.now_ns();
        let xen_due = {
            let mut st = v.st.lock();
            st.lapic.tick(now);
            let due = st.xen_timer_ns.is_some_and(|t| now >= t);
            if due {
                st.xen_timer_ns = None;
            }
            self.poke(v, &mut st);
            due
        };
        if xen_due {
            let xs = self.xen.lock();
            if let Some(port) = xs.chans.virq_port(abi::virq::TIMER, v.id) {
                self.signal(&xs, port);
            }
        }
    }

    // --- IPIs -----------------------------------------------------------------

    /// Delivers what vCPU `from` wrote to its ICR.
    pub fn route_ipi(&self, from: &Vcpu, ipi: Ipi) {
        let targets = |dest: crate::hvm::vlapic::Dest| {
            self.vcpus
                .iter()
                .filter(move |v| dest.matches(v.apic_id, from.apic_id))
        };
        match ipi {
            Ipi::Fixed { dest, vector } => {
                for v in targets(dest) {
                    let mut st = v.st.lock();
                    st.lapic.raise(vector);
                    self.poke(v, &mut st);
                }
            }
            Ipi::Init { dest } => {
                for v in targets(dest).filter(|v| v.id != from.id) {
                    let mut st = v.st.lock();
                    match st.power {
                        Power::Up => log::debug!(
                            "d{}: INIT to running vCPU{} ignored (no vCPU reset yet)",
                            self.id,
                            v.id
                        ),
                        _ => st.power = Power::Init,
                    }
                }
            }
            Ipi::Startup { dest, vector } => {
                for v in targets(dest) {
                    let mut st = v.st.lock();
                    if st.power == Power::Init {
                        st.power = Power::Start(vector);
                        self.poke(v, &mut st);
                    }
                }
            }
            Ipi::Ignored { mode } => {
                log::debug!("d{}: IPI delivery mode {mode} ignored", self.id)
            }
        }
    }

    // --- the console ----------------------------------------------------------

    /// Console bytes dropped by the rate limit since output last got through.
    pub fn console_dropped(&self) -> u64 {
        self.console.lock().dropped()
    }

    /// An unprivileged guest's console output: printed by line as
    /// `(dN) line`, non-printing bytes shown as '.', within the rate limit
    /// of [`console`].
    pub fn console_write(&self, bytes: &[u8]) {
        let now_us =
            (u128::from(platform::tsc()) * 1000 / u128::from(platform::tsc_khz().max(1))) as u64;
        let id = self.id;
        self.console
            .lock()
            .write(bytes, now_us, |line| log::info!("(d{id}) {line}"));
    }

    // --- the end --------------------------------------------------------------

    /// Ends the domain (the first outcome wins): every vCPU leaves the
    /// scheduler and stops at its next exit; once none is on a CPU the
    /// domain is finished ([`table::finish`]).
    pub fn end(self: &Arc<Self>, o: Outcome) {
        {
            let mut l = self.life.lock();
            if l.outcome.is_none() {
                let _ = l.lc.shutdown(match &o {
                    Outcome::Shutdown(r) => *r,
                    Outcome::Done(_) => ShutdownReason::Poweroff,
                    Outcome::Killed(_) => ShutdownReason::Crash,
                });
                // A guest kernel that crashed: what it saw of its events.
                if matches!(o, Outcome::Shutdown(ShutdownReason::Crash))
                    && matches!(self.kind, Kind::Pvh { .. })
                {
                    self.dump_channels();
                }
                l.outcome = Some(o);
            }
        }
        if self.ending.swap(true, Ordering::SeqCst) {
            return;
        }
        for v in &self.vcpus {
            let mut st = v.st.lock();
            st.wait = Some(Wait::Stopped);
            crate::sched::remove(v.sched_ref());
            drop(st);
            if let Some(cpu) = v.running_on() {
                crate::sched::resched(cpu);
            }
        }
        self.maybe_finish();
        if !self.finished.load(Ordering::SeqCst) {
            if self.kept.load(Ordering::SeqCst) && !self.is_destroyed() {
                if let Some(o) = self.outcome() {
                    log::info!("d{}: {o:?}; kept until the toolstack destroys it", self.id);
                }
            }
            dom_exc(self.id);
        }
    }

    /// Finishes an ending domain once none of its vCPUs is on a CPU (the
    /// CPU that takes the last one off calls this too).
    pub fn maybe_finish(self: &Arc<Self>) {
        if !self.is_ending() || self.vcpus.iter().any(|v| v.running_on().is_some()) {
            return;
        }
        // A kept domain stays, stopped, until the toolstack destroys it.
        if self.kept.load(Ordering::SeqCst) && !self.is_destroyed() {
            return;
        }
        if self.finished.swap(true, Ordering::SeqCst) {
            return;
        }
        let id = self.id;
        self.console
            .lock()
            .flush(|line| log::info!("(d{id}) {line}"));
        let _ = self.life.lock().lc.destroy();
        // Its vCPUs are off every CPU: the grants it maps go back to their
        // granters (pins dropped, granters no longer held), as Xen's
        // `gnttab_release_mappings` when a domain dies.
        crate::hypercall::release_grant_maps(self);
        table::finish(self);
    }
}

/// A new domain's HVM params, as Xen's `hvm_domain_initialise` sets them:
/// all zero but the shutdown reason a triple fault gives (reboot: a PVH
/// Linux whose reset register and 8042 did nothing reboots that way).
fn default_params() -> [u64; 64] {
    let mut p = [0; 64];
    p[crate::xen::abi::hvm_param::TRIPLE_FAULT_REASON as usize] =
        crate::xen::abi::shutdown::REBOOT as u64;
    p
}

/// `VIRQ_DOM_EXC`: domain `changed` shut down or is dying. Every
/// privileged domain that bound the VIRQ hears of it (Xen's global VIRQ
/// handler, dom0 unless the toolstack moved it): xenstored fires
/// `@releaseDomain` from it, and `xl`'s domain-death watch follows.
pub fn dom_exc(changed: DomId) {
    for d in table::all() {
        if !d.privileged || d.id == changed || d.is_ending() {
            continue;
        }
        let xs = d.xen.lock();
        if let Some(port) = xs.chans.virq_port(crate::xen::abi::virq::DOM_EXC, 0) {
            d.signal(&xs, port);
        }
    }
}

/// The TSC value `ns` nanoseconds after `tsc_start` at `khz`, saturating.
pub fn tsc_at(tsc_start: u64, khz: u64, ns: u64) -> u64 {
    let ticks = ns as u128 * khz as u128 / 1_000_000;
    u64::try_from(ticks).map_or(u64::MAX, |t| tsc_start.saturating_add(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::p2m::Format;

    /// A domain's frames go back to the pool scrubbed: the next domain
    /// given them never sees the old data.
    /// The frame pool is shared with the tests running beside this one:
    /// when one of them took a freed frame before it could be looked at,
    /// the whole check runs again (it never passes without looking).
    #[test]
    fn freed_memory_is_scrubbed() {
        for _ in 0..50 {
            if scrub_check() {
                return;
            }
        }
        panic!("other tests took the freed frames 50 times in a row");
    }

    /// The p2m's tables come from the domain's pool while it lasts (a
    /// mapping far from the others takes a new table per level), then
    /// from the allocator; the pool's frames are the domain's own.
    #[test]
    fn p2m_tables_come_from_the_pool_first() {
        let p2m = P2m::new(Format::Ept, &mut Tables).unwrap();
        let si = phys::alloc_zeroed(1).unwrap();
        let mem = Memory::new(p2m, si, true, PageSize::Size2M);
        assert!(mem.reserve_tables(4));
        assert_eq!(mem.table_pool_left(), 4);
        let page = phys::alloc_zeroed(1).unwrap();
        mem.own(page, 1);
        // Below 512 GiB, a new 1 GiB range: an L3, an L2 and an L1 table.
        mem.map_4k(0x40_0000_0000 + 0x1000, page, Perm::RW).unwrap();
        assert_eq!(mem.table_pool_left(), 1);
        assert_eq!(mem.translate(0x40_0000_1008), Some(page + 8));
        // The same 2 MiB range needs nothing new; another 1 GiB range needs
        // an L2 and an L1: one from the pool, one from the allocator.
        mem.map_4k(0x40_0000_2000, page, Perm::RW).unwrap();
        assert_eq!(mem.table_pool_left(), 1);
        mem.map_4k(0x40_4000_0000, page, Perm::RW).unwrap();
        assert_eq!(mem.table_pool_left(), 0);
        assert_eq!(mem.translate(0x40_4000_0010), Some(page + 0x10));
        assert_eq!(mem.unmap_4k(0x40_4000_0000), Ok(page));
        assert_eq!(mem.translate(0x40_4000_0010), None);
        // Topped up again; what is left goes back with the domain.
        assert!(mem.reserve_tables(2));
        assert_eq!(mem.table_pool_left(), 2);
        drop(mem);
    }

    /// One round of [`freed_memory_is_scrubbed`]: false when the frames
    /// could not all be taken back to look at.
    fn scrub_check() -> bool {
        const PAGES: u64 = 1024; // 4 MiB: two 2 MiB p2m pages
        let p2m = P2m::new(Format::Ept, &mut Tables).unwrap();
        let si = phys::alloc_zeroed(1).unwrap();
        let mem = Memory::new(p2m, si, false, PageSize::Size2M);
        let ram = phys::frames()
            .alloc_in(PAGES, 2 << 20, 0, u64::MAX)
            .unwrap();
        mem.own(ram, PAGES);
        mem.map_ram(0, ram, PAGES * 4096, Perm::RWX).unwrap();
        assert_eq!(mem.translate(0x20_1234), Some(ram + 0x20_1234));
        // A frame replaced inside a 2 MiB page splits it; the rest stays.
        let extra = phys::alloc_zeroed(1).unwrap();
        mem.own(extra, 1);
        mem.map_4k(0x5000, extra, Perm::RW).unwrap();
        assert_eq!(mem.translate(0x5008), Some(extra + 8));
        assert_eq!(mem.translate(0x6008), Some(ram + 0x6008));
        assert!(mem.write(0, &[0xa5; 4096 * 8]));
        assert!(mem.write(PAGES * 4096 - 16, &[0x5a; 16]));
        phys::fill(si, 0x77, 4096);
        drop(mem);
        // Take the frames back (nobody else has them if this succeeds: they
        // were free, so nobody wrote them) and look.
        let ranges = [(ram, PAGES), (extra, 1), (si, 1)];
        let mut f = phys::frames();
        let back = ranges.map(|(a, n)| f.take(a, a + n * 4096));
        drop(f);
        if back.contains(&false) {
            // Give back what was taken; the next round starts afresh.
            for ((a, n), _) in ranges.iter().zip(back).filter(|(_, b)| *b) {
                phys::free(*a, *n);
            }
            return false;
        }
        let mut buf = vec![0xffu8; (PAGES * 4096) as usize];
        phys::read(ram, &mut buf);
        assert!(
            buf.iter().all(|&b| b == 0),
            "a freed domain's RAM kept its data"
        );
        let mut page = [0xffu8; 4096];
        phys::read(extra, &mut page);
        assert!(page.iter().all(|&b| b == 0), "a freed frame kept its data");
        phys::read(si, &mut page);
        assert!(page.iter().all(|&b| b == 0), "shared_info kept its data");
        phys::free(si, 1);
        phys::free(ram, PAGES);
        phys::free(extra, 1);
        true
    }
}
