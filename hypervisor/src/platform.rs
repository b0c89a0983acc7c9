//! The few machine services that keel's common code uses: the time stamp
//! counter, which CPU this is, kicking another CPU, and dom0's raw console.
//!
//! On the bare-metal target they are the real thing (`arch::x86`). In a
//! host build (the unit tests) they are fakes, so that domains, the
//! hypercall dispatcher, event channels and the exit handler run as plain
//! Rust: a clock the test moves, a CPU index of 0, kicks that are only
//! counted, and console output that is kept. Physical memory has its own
//! shim in [`crate::mm::phys`].

#[cfg(target_os = "none")]
mod imp {
    use crate::arch::x86::{apic, cpu, gdt, smp, time, trap};

    /// The time stamp counter (invariant, the same on every CPU).
    pub fn tsc() -> u64 {
        cpu::rdtsc()
    }

    /// TSC ticks per millisecond.
    pub fn tsc_khz() -> u64 {
        time::tsc_khz()
    }

    /// This CPU's index (0 = the boot CPU).
    pub fn cpu_index() -> usize {
        gdt::cpu_index() as usize
    }

    /// Makes CPU `cpu` leave guest mode or its halt, so that it looks at
    /// its vCPUs again (the wake-up vector does nothing else).
    pub fn kick_cpu(cpu: usize) {
        if let Some(apic_id) = smp::apic_id_of(cpu as u32) {
            apic::send_fixed(apic_id, trap::VECTOR_WAKE);
        }
    }

    /// dom0's console output, as it is (dom0 owns the console).
    pub fn guest_console(bytes: &[u8]) {
        crate::console::guest_write(bytes);
    }

    /// Serial input queued for dom0: up to `max` bytes handed to
    /// `deliver`, which says whether it took them.
    pub fn take_console_input(max: usize, deliver: &mut dyn FnMut(&[u8]) -> bool) -> usize {
        crate::console::take_input(max, deliver)
    }

    /// Online physical CPUs.
    pub fn cpu_count() -> usize {
        smp::online_count() as usize
    }

    /// The local APIC ID of physical CPU `cpu`.
    pub fn apic_id_of(cpu: usize) -> Option<u32> {
        smp::apic_id_of(cpu as u32)
    }

    /// An AMD (or Hygon) CPU: the AMD-only MSRs exist.
    pub fn amd() -> bool {
        cpu::features().vendor == cpu::Vendor::Amd
    }

    /// dom0's port I/O that keel traps but does not own, done on the
    /// hardware for it.
    pub fn port_in(port: u16, size: u8) -> u32 {
        use crate::arch::x86::io;
        match size {
            1 => io::inb(port) as u32,
            2 => io::inw(port) as u32,
            _ => io::inl(port),
        }
    }

    pub fn port_out(port: u16, size: u8, val: u32) {
        use crate::arch::x86::io;
        match size {
            1 => io::outb(port, val as u8),
            2 => io::outw(port, val as u16),
            _ => io::outl(port, val),
        }
    }

    /// dom0 EOId a level-triggered device interrupt that arrived on the
    /// physical CPU with APIC ID `apic_id`: that local APIC's EOI.
    pub fn device_eoi(apic_id: u32) {
        crate::arch::x86::irq::eoi_for(apic_id);
    }

    /// Puts the vCPU about to run's IA32_TSC_AUX into this CPU's, where
    /// its RDTSCP and RDPID read it (neither VT-x nor AMD-V switches it,
    /// and keel itself never reads it); written only when it changes.
    pub fn load_tsc_aux(value: u32) {
        use core::sync::atomic::Ordering;
        if !cpu::has_tsc_aux() {
            return;
        }
        let loaded = &crate::percpu::this().arch.tsc_aux;
        if loaded.load(Ordering::Relaxed) != value as u64 {
            cpu::wrmsr(cpu::MSR_TSC_AUX, value as u64);
            loaded.store(value as u64, Ordering::Relaxed);
        }
    }

    /// Whether `port` is one of the host's PM1 control registers.
    pub fn is_pm1_control(port: u16) -> bool {
        crate::arch::x86::power::is_pm1_control(port)
    }

    /// Whether writing `val` to `port` would put the host into ACPI S5.
    pub fn is_soft_off_write(port: u16, val: u16) -> bool {
        crate::arch::x86::power::is_soft_off_write(port, val)
    }
}

#[cfg(not(target_os = "none"))]
mod imp {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    static TSC: AtomicU64 = AtomicU64::new(1_000_000);
    static KICKS: AtomicU64 = AtomicU64::new(0);
    static CONSOLE: Mutex<Vec<u8>> = Mutex::new(Vec::new());

    /// The fake TSC: 1 GHz, moved only by [`advance_ns`] (and a little by
    /// every read, so time never stands still).
    pub fn tsc() -> u64 {
        TSC.fetch_add(1, Ordering::SeqCst)
    }

    pub fn tsc_khz() -> u64 {
        1_000_000
    }

    pub fn cpu_index() -> usize {
        0
    }

    pub fn kick_cpu(_cpu: usize) {
        KICKS.fetch_add(1, Ordering::SeqCst);
    }

    std::thread_local! {
        /// The host tests' IA32_TSC_AUX, one per test thread ([`tsc_aux`]
        /// reads it back).
        static TSC_AUX: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }

    pub fn load_tsc_aux(value: u32) {
        TSC_AUX.with(|a| a.set(value));
    }

    /// What this thread's last [`load_tsc_aux`] put there.
    pub fn tsc_aux() -> u32 {
        TSC_AUX.with(|a| a.get())
    }

    pub fn guest_console(bytes: &[u8]) {
        CONSOLE.lock().unwrap().extend_from_slice(bytes);
    }

    pub fn take_console_input(_max: usize, _deliver: &mut dyn FnMut(&[u8]) -> bool) -> usize {
        0
    }

    /// The fake machine has 4 CPUs, APIC IDs 0-3.
    pub fn cpu_count() -> usize {
        4
    }

    pub fn apic_id_of(cpu: usize) -> Option<u32> {
        (cpu < 4).then_some(cpu as u32)
    }

    /// The fake machine's CPUs are AMD's.
    pub fn amd() -> bool {
        true
    }

    /// No devices: reads float high.
    pub fn port_in(_port: u16, _size: u8) -> u32 {
        u32::MAX
    }

    pub fn port_out(_port: u16, _size: u8, _val: u32) {}

    pub fn device_eoi(_apic_id: u32) {}

    pub fn is_pm1_control(_port: u16) -> bool {
        false
    }

    pub fn is_soft_off_write(_port: u16, _val: u16) -> bool {
        false
    }

    /// Moves the fake clock forward.
    pub fn advance_ns(ns: u64) {
        TSC.fetch_add(ns, Ordering::SeqCst);
    }

    /// Kicks sent so far (all tests share the counter).
    pub fn kicks() -> u64 {
        KICKS.load(Ordering::SeqCst)
    }

    /// Takes what was written to the fake console.
    pub fn take_console() -> Vec<u8> {
        core::mem::take(&mut *CONSOLE.lock().unwrap())
    }
}

pub use imp::*;
