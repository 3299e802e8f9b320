// SPDX-License-Identifier: GPL-2.0
/*
 * vfmtiny: a multiboot guest kernel that does a few MMIO accesses on one
 * PCI function and reports them on COM1, for tests/test_migration_qemu.py
 * (QEMU with a VFIO device, migrated) and for trying QEMU's emulated
 * devices by hand.
 *
 * Its multiboot command line (QEMU: -append) names the function and the
 * steps, done in order on its BAR0 (a 32-bit memory BAR, assigned by the
 * firmware below 4 GiB; memory decoding is turned on if it is off):
 *	dev=VVVV:DDDD	the first function on bus 0 with these IDs (hex)
 *	w32=OFF:VAL	write the dword VAL at OFF
 *	r32=OFF		read the dword at OFF
 * OFF and VAL are hex with 0x, else decimal. Output on COM1, one line each:
 *	vfmtiny: dev 1234:11e8 at 00:04.0 bar0 0xfea00000 size 0x100000
 *	vfmtiny: w32 0x80 = 0x12345678
 *	vfmtiny: r32 0x80 = 0x12345678
 *	vfmtiny: ready
 * then it sleeps (hlt) until a byte arrives on COM1. For each byte it
 * reads the r32= registers again (at the same address) and reports them
 * between
 *	vfmtiny: round N bar0 0xfea00000 command 0x0103
 *	vfmtiny: done N
 * (BAR0 and the command register as config space has them now), so that
 * a test can look at the device after the guest was migrated.
 * A bad command line or device: "vfmtiny: error: ..." and it stops; a CPU
 * exception: "vfmtiny: error: exception" and it stops.
 */
#include <stddef.h>
#include <stdint.h>

#define MB_BOOT_MAGIC	0x2BADB002
#define MB_INFO_CMDLINE	(1u << 2)

#define COM1		0x3f8
#define UART_RBR	0
#define UART_THR	0
#define UART_DLL	0
#define UART_IER	1
#define UART_DLM	1
#define UART_FCR	2
#define UART_LCR	3
#define UART_MCR	4
#define UART_LSR	5
#define LSR_DR		0x01
#define LSR_THRE	0x20

#define PCI_ADDR	0xcf8
#define PCI_DATA	0xcfc
#define PCI_COMMAND	0x04
#define PCI_CMD_MEM	0x0002
#define PCI_BAR0	0x10

#define PIC1		0x20
#define PIC2		0xa0
#define IRQ_BASE	0x20		/* vectors of IRQ 0-15: 0x20-0x2f */
#define IRQ_COM1	4

#define MAX_STEPS	64

struct step {
	char op;			/* 'w' or 'r' */
	uint32_t off;
	uint32_t val;
};

struct idt_gate {
	uint16_t off_lo;
	uint16_t sel;
	uint8_t zero;
	uint8_t type;
	uint16_t off_hi;
} __attribute__((packed));

struct idt_ptr {
	uint16_t limit;
	uint32_t base;
} __attribute__((packed));

void tiny_main(uint32_t magic, const uint32_t *info);
void tiny_trap(void);
extern char irq_master[], irq_slave[], trap_other[];

static struct step steps[MAX_STEPS];
static unsigned int nsteps;
static struct idt_gate idt[256];

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;

	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint32_t inl(uint16_t port)
{
	uint32_t v;

	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

/* -- COM1 -------------------------------------------------------------- */

static void putc(char c)
{
	while (!(inb(COM1 + UART_LSR) & LSR_THRE))
		;
	outb(COM1 + UART_THR, (uint8_t)c);
}

static void puts(const char *s)
{
	while (*s)
		putc(*s++);
}

static void puthex(uint32_t v, int digits)
{
	int i;

	for (i = digits - 1; i >= 0; i--)
		putc("0123456789abcdef"[(v >> (4 * i)) & 0xf]);
}

static void put0x(uint32_t v, int digits)
{
	puts("0x");
	puthex(v, digits);
}

static void putdec(uint32_t v)
{
	char buf[11];
	int n = 0;

	do {
		buf[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		putc(buf[--n]);
}

static void uart_init(void)
{
	outb(COM1 + UART_IER, 0);
	outb(COM1 + UART_LCR, 0x80);		/* divisor latch */
	outb(COM1 + UART_DLL, 1);		/* 115200 baud */
	outb(COM1 + UART_DLM, 0);
	outb(COM1 + UART_LCR, 0x03);		/* 8N1 */
	outb(COM1 + UART_FCR, 0x07);		/* FIFOs on and cleared */
	outb(COM1 + UART_MCR, 0x0b);		/* DTR, RTS, OUT2 (IRQ) */
	while (inb(COM1 + UART_LSR) & LSR_DR)
		inb(COM1 + UART_RBR);
}

static void __attribute__((noreturn)) stop(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}

static void __attribute__((noreturn)) fail(const char *what, const char *arg)
{
	puts("vfmtiny: error: ");
	puts(what);
	if (arg) {
		puts(": ");
		while (*arg && *arg != ' ')
			putc(*arg++);
	}
	putc('\n');
	stop();
}

void tiny_trap(void)
{
	fail("exception", NULL);
}

/* -- interrupts: COM1's receive interrupt only, to wake up from hlt --- */

static void set_gate(int vec, void *handler, uint16_t cs)
{
	uint32_t a = (uint32_t)handler;

	idt[vec].off_lo = a & 0xffff;
	idt[vec].sel = cs;
	idt[vec].zero = 0;
	idt[vec].type = 0x8e;			/* present, 32-bit interrupt gate */
	idt[vec].off_hi = a >> 16;
}

static void irq_init(void)
{
	struct idt_ptr p = { sizeof(idt) - 1, (uint32_t)idt };
	uint16_t cs;
	int v;

	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	for (v = 0; v < 256; v++)
		set_gate(v, trap_other, cs);
	for (v = 0; v < 8; v++) {
		set_gate(IRQ_BASE + v, irq_master, cs);
		set_gate(IRQ_BASE + 8 + v, irq_slave, cs);
	}
	__asm__ volatile("lidt %0" : : "m"(p));

	outb(PIC1, 0x11);			/* ICW1: init, ICW4 follows */
	outb(PIC2, 0x11);
	outb(PIC1 + 1, IRQ_BASE);		/* ICW2: vector bases */
	outb(PIC2 + 1, IRQ_BASE + 8);
	outb(PIC1 + 1, 0x04);			/* ICW3: slave on IRQ 2 */
	outb(PIC2 + 1, 0x02);
	outb(PIC1 + 1, 0x01);			/* ICW4: 8086 mode */
	outb(PIC2 + 1, 0x01);
	outb(PIC1 + 1, (uint8_t)~(1u << IRQ_COM1));
	outb(PIC2 + 1, 0xff);
	outb(COM1 + UART_IER, 0x01);		/* received data available */
}

/* A byte from COM1; sleeps with interrupts on until one is there. */
static uint8_t getc(void)
{
	while (!(inb(COM1 + UART_LSR) & LSR_DR))
		__asm__ volatile("sti; hlt; cli");
	return inb(COM1 + UART_RBR);
}

/* -- the command line -------------------------------------------------- */

static int starts(const char *s, const char *prefix)
{
	while (*prefix)
		if (*s++ != *prefix++)
			return 0;
	return 1;
}

/*
 * A number at *s, in base 16 with a 0x prefix, else in the base given;
 * *s is left on the first character after it.
 */
static uint32_t number(const char **s, const char *tok, int base)
{
	const char *p = *s;
	uint32_t v = 0;
	int digits = 0;

	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	}
	for (;; p++, digits++) {
		uint32_t d;

		if (*p >= '0' && *p <= '9' && *p - '0' < base)
			d = (uint32_t)(*p - '0');
		else if (base == 16 && *p >= 'a' && *p <= 'f')
			d = (uint32_t)(*p - 'a' + 10);
		else if (base == 16 && *p >= 'A' && *p <= 'F')
			d = (uint32_t)(*p - 'A' + 10);
		else
			break;
		if (v > (0xffffffffu - d) / (uint32_t)base)
			fail("number too large", tok);
		v = v * (uint32_t)base + d;
	}
	if (!digits)
		fail("number expected", tok);
	*s = p;
	return v;
}

static void expect_end(const char *s, const char *tok)
{
	if (*s && *s != ' ')
		fail("junk after a number", tok);
}

static void parse(const char *cmd, uint32_t *vendor, uint32_t *device)
{
	const char *s = cmd;
	int have_dev = 0;

	for (;;) {
		const char *tok;

		while (*s == ' ')
			s++;
		if (!*s)
			break;
		tok = s;
		if (starts(s, "dev=")) {
			s += 4;
			*vendor = number(&s, tok, 16);
			if (*s++ != ':')
				fail("dev=VVVV:DDDD expected", tok);
			*device = number(&s, tok, 16);
			expect_end(s, tok);
			have_dev = 1;
		} else if (starts(s, "w32=") || starts(s, "r32=")) {
			struct step *st = &steps[nsteps];

			if (nsteps == MAX_STEPS)
				fail("too many steps", tok);
			st->op = s[0];
			s += 4;
			st->off = number(&s, tok, 10);
			if (st->off & 3)
				fail("unaligned offset", tok);
			if (st->op == 'w') {
				if (*s++ != ':')
					fail("w32=OFF:VAL expected", tok);
				st->val = number(&s, tok, 10);
			}
			expect_end(s, tok);
			nsteps++;
		}
		/* anything else (the kernel's file name first) is skipped */
		while (*s && *s != ' ')
			s++;
	}
	if (!have_dev)
		fail("no dev= on the command line", NULL);
}

/* -- PCI ------------------------------------------------------------------ */

static uint32_t cfg_addr(uint32_t dev, uint32_t fn, uint32_t reg)
{
	return 0x80000000u | dev << 11 | fn << 8 | reg;
}

static uint32_t cfg_read(uint32_t bdf, uint32_t reg)
{
	outl(PCI_ADDR, bdf | reg);
	return inl(PCI_DATA);
}

static void cfg_write(uint32_t bdf, uint32_t reg, uint32_t v)
{
	outl(PCI_ADDR, bdf | reg);
	outl(PCI_DATA, v);
}

/* Config address of the first function with the IDs on bus 0. */
static uint32_t find(uint32_t vendor, uint32_t device)
{
	uint32_t dev, fn, want = device << 16 | vendor;

	for (dev = 0; dev < 32; dev++)
		for (fn = 0; fn < 8; fn++)
			if (cfg_read(cfg_addr(dev, fn, 0), 0) == want)
				return cfg_addr(dev, fn, 0);
	fail("no such PCI function on bus 0", NULL);
}

/* BAR0's address and size; memory decoding on. */
static uint32_t bar0(uint32_t bdf, uint32_t *size)
{
	uint32_t cmd = cfg_read(bdf, PCI_COMMAND) & 0xffff;
	uint32_t bar = cfg_read(bdf, PCI_BAR0);

	if (bar & 1)
		fail("BAR0 is an I/O BAR", NULL);
	if ((bar & 6) == 4 && cfg_read(bdf, PCI_BAR0 + 4))
		fail("BAR0 is above 4 GiB", NULL);
	if (!(bar & ~0xfu))
		fail("BAR0 has no address", NULL);
	/* size it with decoding off */
	cfg_write(bdf, PCI_COMMAND, cmd & ~PCI_CMD_MEM);
	cfg_write(bdf, PCI_BAR0, 0xffffffffu);
	*size = ~(cfg_read(bdf, PCI_BAR0) & ~0xfu) + 1;
	cfg_write(bdf, PCI_BAR0, bar);
	cfg_write(bdf, PCI_COMMAND, cmd | PCI_CMD_MEM);
	return bar & ~0xfu;
}

/* -- the steps ----------------------------------------------------------- */

static void report(const char *op, uint32_t off, uint32_t val)
{
	puts("vfmtiny: ");
	puts(op);
	putc(' ');
	put0x(off, 2);
	puts(" = ");
	put0x(val, 8);
	putc('\n');
}

static void run(volatile uint8_t *bar, int reads_only)
{
	unsigned int i;

	for (i = 0; i < nsteps; i++) {
		volatile uint32_t *reg = (volatile uint32_t *)(bar + steps[i].off);

		if (steps[i].op == 'w' && !reads_only) {
			*reg = steps[i].val;
			report("w32", steps[i].off, steps[i].val);
		} else if (steps[i].op == 'r') {
			report("r32", steps[i].off, *reg);
		}
	}
}

void tiny_main(uint32_t magic, const uint32_t *info)
{
	uint32_t vendor = 0, device = 0, bdf, base, size;
	unsigned int i, round;

	uart_init();
	puts("vfmtiny: start\n");
	if (magic != MB_BOOT_MAGIC || !(info[0] & MB_INFO_CMDLINE))
		fail("no multiboot command line", NULL);
	parse((const char *)info[4], &vendor, &device);

	bdf = find(vendor, device);
	base = bar0(bdf, &size);
	puts("vfmtiny: dev ");
	puthex(vendor, 4);
	putc(':');
	puthex(device, 4);
	puts(" at 00:");
	puthex(bdf >> 11 & 0x1f, 2);
	putc('.');
	puthex(bdf >> 8 & 7, 1);
	puts(" bar0 ");
	put0x(base, 8);
	puts(" size ");
	put0x(size, 8);
	putc('\n');
	for (i = 0; i < nsteps; i++)
		if (steps[i].off > size - 4)
			fail("offset beyond BAR0", NULL);

	run((volatile uint8_t *)base, 0);
	irq_init();
	puts("vfmtiny: ready\n");
	for (round = 1;; round++) {
		getc();
		puts("vfmtiny: round ");
		putdec(round);
		puts(" bar0 ");
		put0x(cfg_read(bdf, PCI_BAR0), 8);
		puts(" command ");
		put0x(cfg_read(bdf, PCI_COMMAND) & 0xffff, 4);
		putc('\n');
		run((volatile uint8_t *)base, 1);
		puts("vfmtiny: done ");
		putdec(round);
		putc('\n');
	}
}
