// SPDX-License-Identifier: GPL-2.0
/*
 * A VFIO user tries to make regshadow's shadow lie (issue 12, item 7):
 * before handlers got kernel buffers, regshadow copied a write's bytes
 * from user memory for its shadow and handed the user pointer on to
 * vfm_default_write(), which copied them again. Whoever changes the
 * buffer between the two copies makes the device take one value and the
 * shadow record another: the state a migration would restore is wrong.
 * The core now copies once, and the handler passes on what it records.
 *
 *   shadow race  GROUP BDF BAR OFF A B TRIES CHECK STATE
 *	thread A pwrite()s the 4 bytes of a buffer to register OFF of BAR
 *	TRIES times; thread B flips the buffer between A and B meanwhile.
 *	Every CHECK writes, and after the last, the register is read back
 *	with pread and compared with the dword at OFF in the regshadow
 *	state file STATE (the device's configfs "mediator_state").
 *   shadow uffd  GROUP BDF BAR OFF A B STATE
 *	deterministic: the 4-byte buffer straddles a page boundary, its
 *	last two bytes on a page under userfaultfd. The first copy from it
 *	stops there; the fault handler rewrites the first two bytes to B's
 *	and fills in A's last two. One copy sees A, a later one A's top
 *	half under B's bottom half. Done ROUNDS times.
 *
 * OFF must be a register that reads back what is written (NVMe AQA, edu's
 * DMA address registers). A check fails when the state holds no value
 * for the dword, a value that differs from the register's, or (race) a
 * value other than A or B, (uffd) other than A or the mix.
 * Last line: "result: writes=N checks=N mismatches=N strange=N
 * state=0x... device=0x...". Exit 1 on any failed check, 0 when the
 * shadow always matched, 2 when the variant cannot run here.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define ROUNDS	16

struct target {
	struct vdev dev;
	unsigned int bar;
	uint64_t off;		/* in the BAR */
	uint64_t pos;		/* device fd offset of the register */
	const char *state;
	unsigned long checks, mismatches, strange;
	uint32_t last_state, last_device;
	int last_known;
};

/*
 * The state file's value for the dword at t->off: 1 with it in *val,
 * 0 when the state holds no complete value for it.
 */
static int state_value(struct target *t, uint32_t *val)
{
	char buf[4096 + 1], key[40], *p, *end;
	ssize_t n;
	int fd;

	fd = open(t->state, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die(t->state);
	n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0)
		die("read state");
	close(fd);
	buf[n] = '\0';
	snprintf(key, sizeof(key), "\n%#llx=0x", (unsigned long long)t->off);
	p = strstr(buf, key);
	if (!p)
		return 0;
	p += strlen(key);
	errno = 0;
	*val = strtoul(p, &end, 16);
	return end == p + 8 && *end == '\n' && !errno;
}

static uint32_t device_value(struct target *t)
{
	return bar_read32(&t->dev, t->bar, t->off);
}

/* One check; @ok1 and @ok2 are the values the shadow may hold. */
static void check(struct target *t, uint32_t ok1, uint32_t ok2)
{
	t->checks++;
	t->last_device = device_value(t);
	t->last_known = state_value(t, &t->last_state);
	if (!t->last_known || t->last_state != t->last_device) {
		if (t->mismatches++ < 5)
			printf("mismatch: state=%s%#010x device=%#010x\n",
			       t->last_known ? "" : "(unknown) ",
			       t->last_state, t->last_device);
	} else if (t->last_state != ok1 && t->last_state != ok2) {
		if (t->strange++ < 5)
			printf("strange: state=device=%#010x\n", t->last_state);
	}
}

static void setup(struct target *t, char **argv)
{
	memset(t, 0, sizeof(*t));
	vdev_open(&t->dev, argv[0], argv[1]);
	t->bar = strtoul(argv[2], NULL, 0);
	if (t->bar > VFIO_PCI_BAR5_REGION_INDEX) {
		errno = EINVAL;
		die("BAR");
	}
	t->off = strtoull(argv[3], NULL, 0);
	t->pos = t->dev.region_off[t->bar] + t->off;
}

static int report(struct target *t, unsigned long writes,
		  unsigned long failed)
{
	printf("result: writes=%lu failed=%lu checks=%lu mismatches=%lu strange=%lu state=%s%#x device=%#x\n",
	       writes, failed, t->checks, t->mismatches, t->strange,
	       t->last_known ? "" : "unknown:", t->last_state, t->last_device);
	return t->mismatches || t->strange ? EXIT_WON : EXIT_HELD;
}

static int cmd_race(char **argv)
{
	struct flipper f = { 0 };
	unsigned long i, max, every, failed = 0;
	uint32_t a, b, word;
	struct target t;

	setup(&t, argv);
	a = strtoul(argv[4], NULL, 0);
	b = strtoul(argv[5], NULL, 0);
	max = strtoul(argv[6], NULL, 0);
	every = strtoul(argv[7], NULL, 0);
	t.state = argv[8];
	word = a;
	f.word = &word;
	f.a = a;
	f.b = b;
	flipper_start(&f);
	for (i = 1; i <= max; i++) {
		if (pwrite(t.dev.fd, &word, 4, t.pos) != 4)
			failed++;
		if (every && !(i % every))
			check(&t, a, b);
	}
	flipper_stop(&f);
	check(&t, a, b);
	printf("flips: %lu\n", f.flips);
	return report(&t, max, failed);
}

struct mix {
	uint32_t a, b;
};

/* The first copy stopped on the second page: change the first. */
static void rewrite_first(struct uffd_split *s)
{
	struct mix *m = s->ctx;

	memcpy(s->page[1] - 2, &m->b, 2);
}

static int cmd_uffd(char **argv)
{
	struct uffd_split s = { 0 };
	unsigned long failed = 0;
	struct target t;
	struct mix m;
	uint32_t mixed;
	char *buf;
	int i, err, faults = 0;

	setup(&t, argv);
	m.a = strtoul(argv[4], NULL, 0);
	m.b = strtoul(argv[5], NULL, 0);
	t.state = argv[6];
	mixed = (m.a & 0xffff0000u) | (m.b & 0xffffu);
	err = uffd_split_init(&s);
	if (err) {
		printf("uffd: userfaultfd: %s\n", errname(err));
		skip("no userfaultfd that serves kernel faults for this user");
	}
	/* bytes 0-1 on the plain page, 2-3 on the userfaultfd one */
	buf = s.page[1] - 2;
	memcpy(s.fill, (char *)&m.a + 2, 2);
	s.on_fault = rewrite_first;
	s.ctx = &m;
	for (i = 0; i < ROUNDS; i++) {
		memcpy(buf, &m.a, 2);
		uffd_split_arm(&s);
		if (pwrite(t.dev.fd, buf, 4, t.pos) != 4)
			failed++;
		uffd_split_wait(&s);
		check(&t, m.a, mixed);
		faults = s.faults;
	}
	printf("uffd: faults=%d rounds=%d\n", faults, ROUNDS);
	return report(&t, ROUNDS, failed);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 11 && !strcmp(argv[1], "race"))
		return cmd_race(argv + 2);
	if (argc == 9 && !strcmp(argv[1], "uffd"))
		return cmd_uffd(argv + 2);
	fprintf(stderr,
		"usage: %s race GROUP BDF BAR OFF A B TRIES CHECK STATE\n"
		"       %s uffd GROUP BDF BAR OFF A B STATE\n",
		argv[0], argv[0]);
	return EXIT_BROKEN;
}
