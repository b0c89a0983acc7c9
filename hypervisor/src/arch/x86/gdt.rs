//! Each CPU's GDT and TSS (with IST stacks for #DF, NMI and #MC), and GS
//! base pointing at its per-CPU block ([`crate::percpu::PerCpu`]).
use crate::percpu::PerCpu;
use alloc::boxed::Box;
use core::sync::atomic::Ordering;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

pub const IST_DOUBLE_FAULT: u16 = 1;
pub const IST_NMI: u16 = 2;
pub const IST_MACHINE_CHECK: u16 = 3;
const IST_STACK: usize = 16 * 1024;

/// A CPU's GDT and TSS: built once, then only the hardware uses them.
struct Descriptors {
    tss: TaskStateSegment,
    gdt: GlobalDescriptorTable,
}

#[repr(align(16))]
#[allow(dead_code)] // only its memory is used
struct Stack([u8; IST_STACK]);

// The boot CPU's state and IST stacks live in the image so faults are
// caught before the heap exists; other CPUs' come from the heap.
static mut BSP_IST: [Stack; 3] = [const { Stack([0; IST_STACK]) }; 3];
static mut BSP_DESC: Option<Descriptors> = None;
static mut BSP_PERCPU: Option<PerCpu> = None;

fn build(ist_tops: [u64; 3]) -> Descriptors {
    let mut tss = TaskStateSegment::new();
    for (i, top) in ist_tops.iter().enumerate() {
        tss.interrupt_stack_table[i] = VirtAddr::new(*top);
    }
    Descriptors {
        tss,
        gdt: GlobalDescriptorTable::new(),
    }
}

/// Loads `d`'s GDT and TSS on this CPU and points GS base at `pc`.
fn load(d: &'static mut Descriptors, pc: &'static PerCpu) {
    // The TSS descriptor needs a 'static reference to the TSS inside `d`.
    let tss: &'static TaskStateSegment =
        // SAFETY: `d` is leaked (or static) and never freed or moved; the
        // TSS is not written after this point.
        unsafe { &*(&d.tss as *const TaskStateSegment) };
    let code = d.gdt.append(Descriptor::kernel_code_segment());
    let data = d.gdt.append(Descriptor::kernel_data_segment());
    let tss_sel = d.gdt.append(Descriptor::tss_segment(tss));
    let gdt: &'static GlobalDescriptorTable =
        // SAFETY: as above, `d` lives forever and the GDT is complete.
        unsafe { &*(&d.gdt as *const GlobalDescriptorTable) };
    gdt.load();
    // SAFETY: the selectors index the GDT just loaded, with the
    // descriptors they name; the TSS descriptor is present and unused.
    unsafe {
        CS::set_reg(code);
        DS::set_reg(data);
        ES::set_reg(data);
        SS::set_reg(data);
        load_tss(tss_sel);
    }
    super::cpu::wrmsr(super::cpu::MSR_GS_BASE, pc as *const PerCpu as u64);
    crate::percpu::register(pc);
    let _: SegmentSelector = code;
}

/// Boot CPU, first thing: needs neither heap nor frame allocator.
pub fn init_bsp() {
    // SAFETY: only the boot CPU runs this, once, before any other CPU
    // starts; nothing else touches BSP_IST, BSP_DESC or BSP_PERCPU.
    unsafe {
        let base = core::ptr::addr_of_mut!(BSP_IST) as *mut Stack;
        let tops = [0, 1, 2].map(|i| base.add(i) as u64 + IST_STACK as u64);
        let desc = &mut *core::ptr::addr_of_mut!(BSP_DESC);
        *desc = Some(build(tops));
        let pc = &mut *core::ptr::addr_of_mut!(BSP_PERCPU);
        *pc = Some(PerCpu::new(0));
        load(desc.as_mut().unwrap(), pc.as_ref().unwrap());
    }
}

/// Application processor `index`: IST stacks from the heap.
pub fn init_ap(index: u32) {
    let tops = [0; 3].map(|_| {
        let s: &'static mut Stack = Box::leak(Box::new(Stack([0; IST_STACK])));
        s as *mut Stack as u64 + IST_STACK as u64
    });
    load(
        Box::leak(Box::new(build(tops))),
        Box::leak(Box::new(PerCpu::new(index as usize))),
    );
}

/// This CPU's PerCpu block, if it has one yet.
pub fn this_cpu() -> Option<&'static PerCpu> {
    let gs = super::cpu::rdmsr(super::cpu::MSR_GS_BASE);
    // SAFETY: GS base is only ever set by `load`, to a leaked PerCpu.
    (gs != 0).then(|| unsafe { &*(gs as *const PerCpu) })
}

pub fn cpu_index() -> u32 {
    this_cpu().map_or(0, |c| c.index as u32)
}

pub fn mark_online(apic_id: u32) {
    if let Some(c) = this_cpu() {
        c.arch.apic_id.store(apic_id, Ordering::SeqCst);
        c.arch.online.store(true, Ordering::SeqCst);
    }
}
