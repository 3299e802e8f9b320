/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vfmtiny's entry: the multiboot (v1) header, a stack, the call to
 * tiny_main(magic, info) and the interrupt stubs tiny.c puts in its IDT.
 * QEMU's -kernel loads an ELF32 multiboot kernel and enters _start in
 * 32-bit protected mode, flat segments, paging and interrupts off, with
 * the magic in %eax and the information structure's address in %ebx.
 */
#define MB_MAGIC	0x1BADB002
#define MB_FLAGS	0

	.section .multiboot, "a"
	.balign 4
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)

	.text
	.globl _start
_start:
	cli
	cld
	movl $stack_top, %esp
	pushl %ebx
	pushl %eax
	call tiny_main
1:	cli
	hlt
	jmp 1b

/* A master PIC interrupt (vectors 0x20-0x27): end it and return. */
	.globl irq_master
irq_master:
	pushl %eax
	movb $0x20, %al
	outb %al, $0x20
	popl %eax
	iret

/* A slave PIC interrupt (vectors 0x28-0x2f): end it on both PICs. */
	.globl irq_slave
irq_slave:
	pushl %eax
	movb $0x20, %al
	outb %al, $0xa0
	outb %al, $0x20
	popl %eax
	iret

/* Any other vector: a CPU exception (or a stray one), reported. */
	.globl trap_other
trap_other:
	call tiny_trap
2:	cli
	hlt
	jmp 2b

	.bss
	.balign 16
	.skip 16384
stack_top:

	.section .note.GNU-stack, "", @progbits
