/*
 * Multiboot2 entry (GRUB). GRUB loads keel at its link address and jumps to
 * mb2_entry32 in 32-bit protected mode, paging off, EAX = 0x36d76289, EBX =
 * physical address of the multiboot2 information structure. This stub builds
 * an identity map of the first 4 GiB with 2 MiB pages, enables long mode and
 * calls keel_mb2_main(magic, info) on a boot stack. keel replaces these page
 * tables with its own (W^X) as soon as it runs Rust code.
 *
 * 32-bit absolute addresses come from *_abs symbols the linker script defines
 * as ABSOLUTE(), so the PIE carries no 32-bit relocations.
 */
    .section .multiboot2, "a"
    .balign 8
    .global mb2_header
mb2_header:
    .long 0xE85250D6                    /* magic */
    .long 0                             /* architecture: i386 protected mode */
    .long mb2_header_end - mb2_header
    .long 0x100000000 - (0xE85250D6 + (mb2_header_end - mb2_header))
    /* information request (optional): cmdline, modules, mmap, ACPI old/new */
    .balign 8
    .short 1, 1
    .long 8 + 5 * 4
    .long 1, 3, 6, 14, 15
    /* address tag: load the file raw at its link address. GRUB 2.06 will
       not load an ELF that carries relocations (keel is a static PIE), and
       the linker script keeps file offsets linear in addresses. */
    .balign 8
    .short 2, 0
    .long 24
    .long mb2_header_abs                /* header_addr */
    .long mb2_load_start_abs            /* load_addr */
    .long mb2_load_end_abs              /* load_end_addr: end of file data */
    .long mb2_bss_end_abs               /* bss_end_addr */
    /* entry address: the 32-bit entry below */
    .balign 8
    .short 3, 0
    .long 12
    .long mb2_entry32_abs
    /* page-align modules */
    .balign 8
    .short 6, 0
    .long 8
    /* end tag */
    .balign 8
    .short 0, 0
    .long 8
mb2_header_end:

    .balign 8
    .global mb2_gdt
mb2_gdt:
    .quad 0
    .quad 0x00AF9B000000FFFF            /* 0x08: 64-bit code */
    .quad 0x00CF93000000FFFF            /* 0x10: data */
    .global mb2_gdtr
mb2_gdtr:
    .short 3 * 8 - 1
    .long mb2_gdt_abs

    .global mb2_no_lm_msg
mb2_no_lm_msg:
    .asciz "keel: this CPU has no long mode (x86-64); cannot boot\r\n"

    .section .text.boot32, "ax"
    .code32
    .global mb2_entry32
mb2_entry32:
    cli
    cld
    mov esp, offset mb2_stack_top_abs
    push eax                            /* [esp+4] = magic */
    push ebx                            /* [esp]   = info  */

    mov eax, 0x80000000
    cpuid
    cmp eax, 0x80000001
    jb 90f
    mov eax, 0x80000001
    cpuid
    test edx, 1 << 29                   /* LM */
    jz 90f
    mov ebp, edx                        /* keep NX (bit 20) for below */

    /* zero PML4, PDPT and the four PDs (contiguous, 6 pages) */
    mov edi, offset mb2_pml4_abs
    mov ecx, 6 * 4096 / 4
    xor eax, eax
    rep stosd

    mov eax, offset mb2_pdpt_abs
    or eax, 3
    mov dword ptr [mb2_pml4_abs], eax
    xor ecx, ecx
1:  mov eax, ecx
    shl eax, 12
    add eax, offset mb2_pd_abs
    or eax, 3
    mov dword ptr [mb2_pdpt_abs + ecx * 8], eax
    inc ecx
    cmp ecx, 4
    jne 1b
    xor ecx, ecx
2:  mov eax, ecx
    shl eax, 21
    or eax, 0x83                        /* present, writable, 2 MiB */
    mov dword ptr [mb2_pd_abs + ecx * 8], eax
    inc ecx
    cmp ecx, 2048
    jne 2b

    mov eax, cr4
    or eax, 1 << 5                      /* PAE */
    mov cr4, eax
    mov eax, offset mb2_pml4_abs
    mov cr3, eax
    mov ecx, 0xC0000080                 /* EFER */
    rdmsr
    or eax, 1 << 8                      /* LME */
    test ebp, 1 << 20
    jz 3f
    or eax, 1 << 11                     /* NXE, when the CPU has NX */
3:  wrmsr
    mov eax, cr0
    and eax, 0x9FFFFFFF                 /* caches on: clear CD, NW */
    or eax, 0x80010021                  /* PG, WP, NE, PE */
    mov cr0, eax
    lgdt [mb2_gdtr_abs]
    mov eax, offset mb2_entry64_abs
    push 0x08
    push eax
    retf

90: mov esi, offset mb2_no_lm_msg_abs
91: lodsb
    test al, al
    jz 93f
    mov bl, al
    mov dx, 0x3FD
92: in al, dx
    test al, 0x20
    jz 92b
    mov dx, 0x3F8
    mov al, bl
    out dx, al
    jmp 91b
93: hlt
    jmp 93b

    .code64
    .global mb2_entry64
mb2_entry64:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov esi, dword ptr [rsp]            /* info */
    mov edi, dword ptr [rsp + 4]        /* magic */
    lea rsp, [rip + mb2_stack_top]
    xor ebp, ebp
    call keel_mb2_main
    ud2

    .section .bss.mb2, "aw", @nobits
    .balign 4096
    .global mb2_pml4
mb2_pml4:   .skip 4096
    .global mb2_pdpt
mb2_pdpt:   .skip 4096
    .global mb2_pd
mb2_pd:     .skip 4 * 4096
mb2_stack:  .skip 64 * 1024
    .global mb2_stack_top
mb2_stack_top:
