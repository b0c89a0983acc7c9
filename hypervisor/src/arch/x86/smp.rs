//! Bringing up the application processors: INIT-SIPI-SIPI to a real-mode
//! trampoline copied below 1 MiB, which switches straight to long mode on
//! keel's page tables and jumps to [`ap_main`].
//!
//! The trampoline page is identity-mapped executable (and not writable)
//! only while CPUs start; keel writes it through the direct map.

use super::{apic, cpu, time};
use core::sync::atomic::{AtomicU32, Ordering};

core::arch::global_asm!(
    r#"
    .section .rodata.keel_trampoline, "a"
    .balign 16
    .global keel_tramp_start
keel_tramp_start:
    .code16
    cli
    cld
    mov ax, cs
    mov ds, ax
    /* The assembler takes no symbol difference in a 16-bit memory
       operand, so these are encoded by hand (disp16 = offset in page). */
    .byte 0x0f, 0x01, 0x16          /* lgdt [tramp_gdtr] */
    .short tramp_gdtr - keel_tramp_start
    .byte 0x66, 0xa1                /* mov eax, dword [tramp_cr4] */
    .short tramp_cr4 - keel_tramp_start
    mov cr4, eax
    .byte 0x66, 0xa1                /* mov eax, dword [tramp_cr3] */
    .short tramp_cr3 - keel_tramp_start
    mov cr3, eax
    mov ecx, 0xc0000080
    rdmsr
    .byte 0x66, 0x0b, 0x06          /* or eax, dword [tramp_efer] */
    .short tramp_efer - keel_tramp_start
    wrmsr
    mov eax, 0x80010033
    mov cr0, eax
    /* jmp far dword [tramp_farptr]: 66 FF /5 with a 16-bit displacement */
    .byte 0x66, 0xff, 0x2e
    .short tramp_farptr - keel_tramp_start

    .code64
    .global keel_tramp_long
keel_tramp_long:
tramp_long:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov rsp, qword ptr [rip + tramp_stack]
    mov rdi, qword ptr [rip + tramp_arg]
    mov rax, qword ptr [rip + tramp_entry]
    xor ebp, ebp
    jmp rax

    .balign 8
    .global keel_tramp_gdt
keel_tramp_gdt:
    /* Accessed bits preset: the page is read-only when the CPU loads them. */
tramp_gdt:
    .quad 0
    .quad 0x00AF9B000000FFFF
    .quad 0x00CF93000000FFFF
    .global keel_tramp_gdtr
keel_tramp_gdtr:
tramp_gdtr:
    .short 23
    .long 0                 /* patched: physical address of tramp_gdt */
    .balign 4
    .global keel_tramp_farptr
keel_tramp_farptr:
tramp_farptr:
    .long 0                 /* patched: physical address of tramp_long */
    .short 0x08
    .balign 8
    .global keel_tramp_cr3
keel_tramp_cr3:
tramp_cr3:  .long 0, 0
tramp_cr4:  .long 0, 0
tramp_efer: .long 0, 0
tramp_stack: .quad 0
tramp_entry: .quad 0
tramp_arg:   .quad 0
    .global keel_tramp_end
keel_tramp_end:
    .text
"#
);

extern "C" {
    static keel_tramp_start: u8;
    static keel_tramp_long: u8;
    static keel_tramp_gdt: u8;
    static keel_tramp_gdtr: u8;
    static keel_tramp_farptr: u8;
    static keel_tramp_cr3: u8;
    static keel_tramp_end: u8;
}

/// Offsets of the patched fields after `keel_tramp_cr3`.
const OFF_CR4: usize = 8;
const OFF_EFER: usize = 16;
const OFF_STACK: usize = 24;
const OFF_ENTRY: usize = 32;
const OFF_ARG: usize = 40;

static ONLINE: AtomicU32 = AtomicU32::new(1);
pub use crate::MAX_CPUS;

/// The local APIC ID of CPU `index` (in its per-CPU block).
pub fn apic_id_of(index: u32) -> Option<u32> {
    super::percpu::get(index as usize)
        .map(|c| c.apic_id.load(Ordering::SeqCst))
        .filter(|&a| a != u32::MAX)
}

pub fn online_count() -> u32 {
    ONLINE.load(Ordering::SeqCst)
}

fn sym(s: &u8) -> usize {
    s as *const u8 as usize
}

pub struct Trampoline {
    /// Physical page of the trampoline (below 1 MiB).
    pub phys: u64,
}

impl Trampoline {
    /// Copies the trampoline to `phys` (through the direct map) and patches
    /// in the absolute addresses and the control-register values.
    pub fn install(phys: u64, cr3: u64) -> Self {
        // SAFETY: addresses of linker-placed symbols inside the image.
        let (start, cr3f, end) = unsafe {
            (
                sym(&keel_tramp_start),
                sym(&keel_tramp_cr3),
                sym(&keel_tramp_end),
            )
        };
        let len = end - start;
        assert!(len <= 4096, "trampoline larger than a page");
        let dst = cpu::phys_to_virt(phys) as *mut u8;
        // SAFETY: `phys` is a free low page keel allocated for this, mapped
        // writable through the direct map; the source is the image's rodata.
        unsafe { core::ptr::copy_nonoverlapping(start as *const u8, dst, len) };
        let t = Trampoline { phys };
        // SAFETY: addresses of linker-placed symbols inside the image.
        let (gdt_off, gdtr_off, farptr_off, long_off) = unsafe {
            (
                sym(&keel_tramp_gdt) - start,
                sym(&keel_tramp_gdtr) - start,
                sym(&keel_tramp_farptr) - start,
                sym(&keel_tramp_long) - start,
            )
        };
        let patch_off = cr3f - start;
        t.write32(gdtr_off + 2, (phys + gdt_off as u64) as u32);
        t.write32(farptr_off, (phys + long_off as u64) as u32);
        t.write64(patch_off, cr3);
        // No PCID in the trampoline: CR3 is loaded with PCIDE clear.
        t.write64(patch_off + OFF_CR4, cpu::read_cr4() & !(1 << 17));
        // Long mode (LME), plus NXE if the boot CPU uses it.
        t.write64(
            patch_off + OFF_EFER,
            cpu::EFER_LME | (cpu::rdmsr(cpu::MSR_EFER) & cpu::EFER_NXE),
        );
        t
    }

    fn field(&self, off: usize) -> *mut u8 {
        (cpu::phys_to_virt(self.phys) + off as u64) as *mut u8
    }
    fn write32(&self, off: usize, v: u32) {
        // SAFETY: `off` lies inside the trampoline page (checked by callers'
        // construction from symbol offsets within the copied code).
        unsafe { core::ptr::write_unaligned(self.field(off) as *mut u32, v) }
    }
    fn write64(&self, off: usize, v: u64) {
        // SAFETY: as in write32.
        unsafe { core::ptr::write_unaligned(self.field(off) as *mut u64, v) }
    }

    /// Starts the CPU `apic_id` as CPU number `index` on `stack_top`.
    /// Returns whether it came online within a second.
    pub fn start_cpu(&self, apic_id: u32, index: u32, stack_top: u64) -> bool {
        // SAFETY: address of a linker-placed symbol.
        let patch = unsafe { sym(&keel_tramp_cr3) - sym(&keel_tramp_start) };
        self.write64(patch + OFF_STACK, stack_top);
        self.write64(patch + OFF_ENTRY, ap_entry as *const () as u64);
        self.write64(patch + OFF_ARG, index as u64);
        let before = online_count();
        apic::send_init(apic_id);
        time::delay_us(10_000);
        for _ in 0..2 {
            apic::send_sipi(apic_id, (self.phys >> 12) as u8);
            time::delay_us(200);
            if online_count() > before {
                return true;
            }
        }
        let deadline = time::now_us() + 1_000_000;
        while time::now_us() < deadline {
            if online_count() > before {
                return true;
            }
            cpu::pause();
        }
        false
    }
}

extern "C" fn ap_entry(index: u64) -> ! {
    crate::kernel::ap_main(index as u32)
}

pub fn note_online() {
    ONLINE.fetch_add(1, Ordering::SeqCst);
}
