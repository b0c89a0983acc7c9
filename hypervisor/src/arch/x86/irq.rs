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

use super::percpu;
use core::sync::atomic::{AtomicBool, Ordering};

pub const FIRST: u8 = 0x20;
pub const LAST: u8 = 0xef;

/// Set once dom0 owns the devices; before, a stray vector is EOId.
static FORWARD: AtomicBool = AtomicBool::new(false);

pub fn enable_forwarding() {
    FORWARD.store(true, Ordering::SeqCst);
}

/// From the interrupt handler: true if `vector` was taken for dom0 (the
/// caller must not EOI it: this did, unless it is level-triggered).
pub fn raise(vector: u8) -> bool {
    if !FORWARD.load(Ordering::Relaxed) || !(FIRST..=LAST).contains(&vector) {
        return false;
    }
    let me = percpu::this();
    let (w, bit) = (vector as usize / 64, 1u64 << (vector % 64));
    if super::apic::is_level(vector) {
        me.irq_level[w].fetch_or(bit, Ordering::SeqCst);
    } else {
        super::apic::eoi();
    }
    me.irq_pending[w].fetch_or(bit, Ordering::SeqCst);
    true
}

/// Takes this CPU's pending vectors and, of those, the level-triggered
/// ones (256-bit sets); the caller EOIs each level one when dom0 does.
pub fn take() -> ([u64; 4], [u64; 4]) {
    let me = percpu::this();
    let (mut pending, mut level) = ([0; 4], [0; 4]);
    for i in 0..4 {
        pending[i] = me.irq_pending[i].swap(0, Ordering::SeqCst);
        level[i] = me.irq_level[i].swap(0, Ordering::SeqCst) & pending[i];
    }
    (pending, level)
}

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
    if let Some(c) = cpu.and_then(|c| percpu::get(c).map(|p| (c, p))) {
        c.1.owed_eois.fetch_add(1, Ordering::SeqCst);
        crate::platform::kick_cpu(c.0);
    }
}

/// EOIs this CPU owes (see [`eoi_for`]).
pub fn run_pending_eois() {
    for _ in 0..percpu::this().owed_eois.swap(0, Ordering::SeqCst) {
        super::apic::eoi();
    }
}
