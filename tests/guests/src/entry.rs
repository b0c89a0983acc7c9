//! Boot path: real mode (CS:IP = 0x0800:0000) -> 32-bit protected mode ->
//! long mode -> `guest_main`. Everything the stub needs lives in the image:
//! GDT in .text, page tables and stack in .bss (which the stub zeroes).
//!
//! AT&T syntax; the far jumps are hand-encoded so that no symbol arithmetic
//! ends up in a 16-bit memory operand. In real mode DS = 0, so absolute
//! addresses (< 64 KiB, asserted in link.ld) are used directly.

core::arch::global_asm!(
    r#"
    .pushsection .text.keel_entry, "ax"
    .code16
    .global _start
_start:
    cli
    cld
    xorw    %ax, %ax
    movw    %ax, %ds
    movw    %ax, %es
    movw    %ax, %ss
    lgdtl   keel_gdt_ptr            # 66 0f 01 16 <abs16>
    movl    %cr0, %eax
    orl     $0x21, %eax             # CR0.PE | CR0.NE
    movl    %eax, %cr0
    # ljmpl $0x08, $start32
    .byte   0x66, 0xea
    .long   keel_start32
    .short  0x08

    .code32
keel_start32:
    movw    $0x10, %ax
    movw    %ax, %ds
    movw    %ax, %es
    movw    %ax, %fs
    movw    %ax, %gs
    movw    %ax, %ss

    # Zero .bss (page tables, IDT, stack, Rust statics) ourselves.
    movl    $__bss_start, %edi
    movl    $__bss_end, %ecx
    subl    %edi, %ecx
    shrl    $2, %ecx
    xorl    %eax, %eax
    rep stosl

    # Identity map [0, 4 GiB) with 2 MiB pages: PML4[0] -> PDPT,
    # PDPT[0..4] -> 4 page directories of 512 x 2 MiB (P | RW | PS).
    movl    $keel_pdpt + 3, %eax
    movl    %eax, keel_pml4
    movl    $keel_pds + 3, %eax
    movl    $keel_pdpt, %edi
    movl    $4, %ecx
.Lpdpt_loop:
    movl    %eax, (%edi)
    addl    $0x1000, %eax
    addl    $8, %edi
    loop    .Lpdpt_loop
    movl    $0x83, %eax
    movl    $keel_pds, %edi
    movl    $2048, %ecx
.Lpd_loop:
    movl    %eax, (%edi)
    addl    $0x200000, %eax
    addl    $8, %edi
    loop    .Lpd_loop

    movl    %cr4, %eax
    orl     $0x20, %eax             # CR4.PAE
    movl    %eax, %cr4
    movl    $keel_pml4, %eax
    movl    %eax, %cr3
    movl    $0xc0000080, %ecx       # EFER: written, never read
    movl    $0x100, %eax            # EFER.LME
    xorl    %edx, %edx
    wrmsr
    movl    %cr0, %eax
    orl     $0x80000000, %eax       # CR0.PG -> long mode active
    movl    %eax, %cr0
    # ljmp $0x18, $start64
    .byte   0xea
    .long   keel_start64
    .short  0x18

    .code64
keel_start64:
    movw    $0x10, %ax
    movw    %ax, %ds
    movw    %ax, %es
    movw    %ax, %fs
    movw    %ax, %gs
    movw    %ax, %ss
    movq    $keel_stack_top, %rsp
    xorl    %ebp, %ebp
    call    guest_main
.Lhang:
    cli
    hlt
    jmp     .Lhang

    .balign 8
keel_gdt:
    .quad   0
    .quad   0x00cf9b000000ffff      # 0x08: 32-bit code, flat (accessed bit preset)
    .quad   0x00cf93000000ffff      # 0x10: data, flat
    .quad   0x00af9b000000ffff      # 0x18: 64-bit code
keel_gdt_end:
    .global keel_gdt_ptr
keel_gdt_ptr:
    .short  keel_gdt_end - keel_gdt - 1
    .long   keel_gdt
    .popsection

    .pushsection .bss.keel_boot, "aw", @nobits
    .balign 4096
    .global keel_pml4
keel_pml4:
    .skip   4096
keel_pdpt:
    .skip   4096
keel_pds:
    .skip   4 * 4096
    .global keel_stack_bottom
keel_stack_bottom:
    .skip   64 * 1024
    .global keel_stack_top
keel_stack_top:
    .popsection
"#,
    options(att_syntax)
);
