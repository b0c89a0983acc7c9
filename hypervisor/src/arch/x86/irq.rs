//! Device interrupts that belong to dom0 (docs/dom0.md, "Interrupts").
//!
//! dom0 programs the IO-APIC and MSIs itself, with its vCPU n's APIC ID
//! being CPU n's, so a device interrupt arrives on the CPU that runs the
//! vCPU it targets, with the vector dom0 chose. keel's handler for vectors
//! [`FIRST`]..=[`LAST`] marks the vector pending for this CPU; the vCPU
//! loop moves it into the vCPU's virtual local APIC. An edge-triggered
//! interrupt (MSI, most ISA lines) is EOId at once. A level-triggered one
//! (the trigger mode register says) is EOId only when dom0 EOIs it: until
//! then the IO-APIC's remote IRR holds the line, so a device dom0 has not
//! serviced yet cannot storm. keel's own vectors (0xf0 and up) are of a
//! higher priority class, so they still arrive meanwhile.

use crate::MAX_CPUS;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

pub const FIRST: u8 = 0x20;
pub const LAST: u8 = 0xef;

/// Set once dom0 owns the devices; before, a stray vector is EOId.
static FORWARD: AtomicBool = AtomicBool::new(false);
static PENDING: [[AtomicU64; 4]; MAX_CPUS] = [const { [const { AtomicU64::new(0) }; 4] }; MAX_CPUS];
/// Of those, the level-triggered ones (their physical EOI waits).
static LEVEL: [[AtomicU64; 4]; MAX_CPUS] = [const { [const { AtomicU64::new(0) }; 4] }; MAX_CPUS];

pub fn enable_forwarding() {
    FORWARD.store(true, Ordering::SeqCst);
}

/// From the interrupt handler: true if `vector` was taken for dom0 (the
/// caller must not EOI it: this did, unless it is level-triggered).
pub fn raise(cpu: usize, vector: u8) -> bool {
    if !FORWARD.load(Ordering::Relaxed) || !(FIRST..=LAST).contains(&vector) || cpu >= MAX_CPUS {
        return false;
    }
    let (w, bit) = (vector as usize / 64, 1u64 << (vector % 64));
    if super::apic::is_level(vector) {
        LEVEL[cpu][w].fetch_or(bit, Ordering::SeqCst);
    } else {
        super::apic::eoi();
    }
    PENDING[cpu][w].fetch_or(bit, Ordering::SeqCst);
    true
}

/// Takes this CPU's pending vectors and, of those, the level-triggered
/// ones (256-bit sets); the caller EOIs each level one when dom0 does.
pub fn take(cpu: usize) -> ([u64; 4], [u64; 4]) {
    let (mut pending, mut level) = ([0; 4], [0; 4]);
    if cpu < MAX_CPUS {
        for i in 0..4 {
            pending[i] = PENDING[cpu][i].swap(0, Ordering::SeqCst);
            level[i] = LEVEL[cpu][i].swap(0, Ordering::SeqCst) & pending[i];
        }
    }
    (pending, level)
}

/// Per CPU: EOIs owed to its local APIC for level-triggered interrupts
/// that dom0 finished while its vCPU ran on another CPU.
static OWED_EOIS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// dom0 EOId a level-triggered interrupt that arrived on the CPU with
/// `apic_id`: EOI that local APIC now if this is that CPU, else have that
/// CPU do it (the interrupt stays in service there until then).
pub fn eoi_for(apic_id: u32) {
    let here = super::gdt::cpu_index() as usize;
    if super::smp::apic_id_of(here as u32) == Some(apic_id) {
        super::apic::eoi();
        return;
    }
    let cpu = (0..super::smp::online_count() as usize)
        .find(|&c| super::smp::apic_id_of(c as u32) == Some(apic_id));
    if let Some(c) = cpu {
        OWED_EOIS[c].fetch_add(1, Ordering::SeqCst);
        crate::platform::kick_cpu(c);
    }
}

/// EOIs this CPU owes (see [`eoi_for`]).
pub fn run_pending_eois() {
    let here = super::gdt::cpu_index() as usize;
    if here < MAX_CPUS {
        for _ in 0..OWED_EOIS[here].swap(0, Ordering::SeqCst) {
            super::apic::eoi();
        }
    }
}
