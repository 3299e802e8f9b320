// SPDX-License-Identifier: GPL-2.0
/*
 * VFIO_DEVICE_SET_IRQS against a rule that guards the MSI-X capability
 * (issue 12, holes 1 to 3): enabling MSI-X makes vfio-pci-core write the
 * Message Control register itself, so vfmediate must refuse it where a
 * ro, deny or ignore rule covers the capability.
 *
 *   irqs once GROUP BDF INDEX START COUNT ACTION
 *	one SET_IRQS; ACTION is trigger (DATA_EVENTFD, COUNT eventfds),
 *	none (TRIGGER|DATA_NONE), mask or unmask (DATA_NONE). Prints the
 *	result and whether MSI/MSI-X ended up enabled, then disables what
 *	it enabled.
 *   irqs race GROUP BDF FIELD TRIES
 *	thread A enables with one eventfd, thread B flips FIELD: "index"
 *	between REQ and MSI-X (count 1), or "count" between 0 and 1 (on
 *	MSI-X, start 0). TRIES attempts or the first win.
 *   irqs uffd GROUP BDF
 *	deterministic: argsz, flags and index on one page, start, count
 *	and the eventfd on the next, under userfaultfd; the index is INTx
 *	while vfmediate's copy runs and MSI-X for vfio-pci-core's.
 *   irqs intx-mask GROUP BDF
 *	enable INTx, mask, unmask, disable; prints each result and the
 *	command register as the VFIO user reads it (pread of config 0x04)
 *	and as the device has it (sysfs config) after each step.
 *
 * A win: a call succeeded and left MSI-X enabled (Message Control bit
 * 15, read through the device fd: vfio-pci-core does not virtualize it).
 * MSI's enable bit is virtualized, so msi_enabled shows only what the
 * user wrote there, not what SET_IRQS did. Last line: "result: ...". Exit 1 on a
 * win, 0 when the rule held, 2 when the variant cannot run here.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define MAX_FDS 64

struct irqs {
	struct vdev dev;
	const char *bdf;
	unsigned int msi, msix;	/* capability offsets, 0 if none */
	int efd[MAX_FDS];
};

struct irq_set_buf {
	struct vfio_irq_set hdr;
	int32_t fds[MAX_FDS];
};

static int set_irqs(struct irqs *q, unsigned int index, unsigned int start,
		    unsigned int count, unsigned int flags)
{
	struct irq_set_buf b = { 0 };
	unsigned int i;

	b.hdr.argsz = sizeof(b.hdr);
	b.hdr.flags = flags;
	b.hdr.index = index;
	b.hdr.start = start;
	b.hdr.count = count;
	if (flags & VFIO_IRQ_SET_DATA_EVENTFD) {
		for (i = 0; i < count && i < MAX_FDS; i++)
			b.fds[i] = q->efd[i];
		b.hdr.argsz += count * sizeof(int32_t);
	}
	return xioctl(q->dev.fd, VFIO_DEVICE_SET_IRQS, &b);
}

static int disable(struct irqs *q, unsigned int index)
{
	return set_irqs(q, index, 0, 0,
			VFIO_IRQ_SET_ACTION_TRIGGER | VFIO_IRQ_SET_DATA_NONE);
}

static int msix_enabled(struct irqs *q)
{
	return q->msix && (cfg_read(&q->dev, q->msix + 2, 2) & MSIX_FLAGS_ENABLE);
}

static int msi_enabled(struct irqs *q)
{
	return q->msi && (cfg_read(&q->dev, q->msi + 2, 2) & MSI_FLAGS_ENABLE);
}

static void setup(struct irqs *q, char **argv)
{
	int i;

	vdev_open(&q->dev, argv[0], argv[1]);
	q->bdf = argv[1];
	q->msi = find_cap(&q->dev, CAP_ID_MSI);
	q->msix = find_cap(&q->dev, CAP_ID_MSIX);
	for (i = 0; i < MAX_FDS; i++)
		q->efd[i] = new_eventfd();
}

/* Undo whatever a call may have enabled; the rules may refuse it. */
static void cleanup(struct irqs *q)
{
	disable(q, VFIO_PCI_MSIX_IRQ_INDEX);
	disable(q, VFIO_PCI_MSI_IRQ_INDEX);
	disable(q, VFIO_PCI_INTX_IRQ_INDEX);
}

static unsigned int action_flags(const char *action)
{
	if (!strcmp(action, "trigger"))
		return VFIO_IRQ_SET_ACTION_TRIGGER | VFIO_IRQ_SET_DATA_EVENTFD;
	if (!strcmp(action, "none"))
		return VFIO_IRQ_SET_ACTION_TRIGGER | VFIO_IRQ_SET_DATA_NONE;
	if (!strcmp(action, "mask"))
		return VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_DATA_NONE;
	if (!strcmp(action, "unmask"))
		return VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_DATA_NONE;
	errno = EINVAL;
	die(action);
}

static int cmd_once(char **argv)
{
	unsigned int index, start, count, flags;
	struct irqs q;
	int err, msix, msi;

	setup(&q, argv);
	index = strtoul(argv[2], NULL, 0);
	start = strtoul(argv[3], NULL, 0);
	count = strtoul(argv[4], NULL, 0);
	flags = action_flags(argv[5]);
	if (count > MAX_FDS) {
		errno = EINVAL;
		die("COUNT");
	}
	err = set_irqs(&q, index, start, count, flags);
	msix = msix_enabled(&q);
	msi = msi_enabled(&q);
	cleanup(&q);
	printf("result: set_irqs=%s msix_enabled=%d msi_enabled=%d after_cleanup=%d\n",
	       errname(err), msix, msi, msix_enabled(&q) || msi_enabled(&q));
	return msix || msi ? EXIT_WON : EXIT_HELD;
}

/* A call succeeded: did it leave MSI-X enabled? Then disable it. */
static int won(struct irqs *q)
{
	if (msix_enabled(q)) {
		disable(q, VFIO_PCI_MSIX_IRQ_INDEX);
		return 1;
	}
	return 0;
}

static int cmd_race(char **argv)
{
	struct irq_set_buf b = { 0 };
	struct flipper f = { 0 };
	struct tally tl = { { 0 } };
	unsigned long tries, max;
	struct irqs q;
	int wins = 0, err;

	setup(&q, argv);
	max = strtoul(argv[3], NULL, 0);
	if (!q.msix)
		skip("no MSI-X capability");
	b.hdr.argsz = sizeof(b.hdr) + sizeof(int32_t);
	b.hdr.flags = VFIO_IRQ_SET_ACTION_TRIGGER | VFIO_IRQ_SET_DATA_EVENTFD;
	b.hdr.start = 0;
	b.fds[0] = q.efd[0];
	if (!strcmp(argv[2], "index")) {
		/*
		 * REQ rather than INTx as the allowed index: setting its
		 * trigger again and again is cheap, where enabling and
		 * disabling INTx would take most of each try's time, time in
		 * which the race cannot be won.
		 */
		b.hdr.index = VFIO_PCI_REQ_IRQ_INDEX;
		b.hdr.count = 1;
		f.word = &b.hdr.index;
		f.a = VFIO_PCI_REQ_IRQ_INDEX;
		f.b = VFIO_PCI_MSIX_IRQ_INDEX;
	} else if (!strcmp(argv[2], "count")) {
		b.hdr.index = VFIO_PCI_MSIX_IRQ_INDEX;
		b.hdr.count = 0;
		f.word = &b.hdr.count;
		f.a = 0;
		f.b = 1;
	} else {
		errno = EINVAL;
		die(argv[2]);
	}
	flipper_start(&f);
	for (tries = 0; tries < max && !wins; tries++) {
		err = xioctl(q.dev.fd, VFIO_DEVICE_SET_IRQS, &b);
		tally_add(&tl, err);
		if (!err)
			wins = won(&q);
	}
	flipper_stop(&f);
	cleanup(&q);
	printf("flips: %lu\n", f.flips);
	printf("result: tries=%lu", tries);
	tally_print(&tl);
	printf(" wins=%d msix_enabled=%d\n", wins, msix_enabled(&q));
	return wins ? EXIT_WON : EXIT_HELD;
}

static void flip_to_msix(struct uffd_split *s)
{
	struct vfio_irq_set *hdr =
		(void *)(s->page[1] - offsetof(struct vfio_irq_set, start));

	hdr->index = VFIO_PCI_MSIX_IRQ_INDEX;
}

static int cmd_uffd(char **argv)
{
	struct vfio_irq_set *hdr;
	struct uffd_split s = { 0 };
	uint32_t tail[3];
	int wins = 0, err;
	struct irqs q;

	setup(&q, argv);
	if (!q.msix)
		skip("no MSI-X capability");
	err = uffd_split_init(&s);
	if (err) {
		printf("uffd: userfaultfd: %s\n", errname(err));
		skip("no userfaultfd that serves kernel faults for this user");
	}
	/* argsz, flags, index on the first page; start, count, fd after */
	hdr = (void *)(s.page[1] - offsetof(struct vfio_irq_set, start));
	hdr->argsz = sizeof(*hdr) + sizeof(int32_t);
	hdr->flags = VFIO_IRQ_SET_ACTION_TRIGGER | VFIO_IRQ_SET_DATA_EVENTFD;
	hdr->index = VFIO_PCI_INTX_IRQ_INDEX;
	tail[0] = 0;		/* start */
	tail[1] = 1;		/* count */
	tail[2] = q.efd[0];	/* data[0] */
	memcpy(s.fill, tail, sizeof(tail));
	s.on_fault = flip_to_msix;
	uffd_split_arm(&s);
	err = xioctl(q.dev.fd, VFIO_DEVICE_SET_IRQS, hdr);
	uffd_split_wait(&s);
	if (!err)
		wins = won(&q);
	cleanup(&q);
	printf("uffd: faults=%d\n", s.faults);
	printf("result: tries=1 %s=1 wins=%d\n", errname(err), wins);
	return wins ? EXIT_WON : EXIT_HELD;
}

/* The command register as the device has it, from sysfs (0xffff: none). */
static unsigned int phys_command(struct irqs *q)
{
	char path[128];
	uint16_t v = 0xffff;
	int fd;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/config", q->bdf);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0xffff;
	if (pread(fd, &v, 2, CFG_COMMAND) != 2)
		v = 0xffff;
	close(fd);
	return v;
}

static int cmd_intx_mask(char **argv)
{
	static const char *const step[] = { "enable", "mask", "unmask" };
	unsigned int flags[] = {
		VFIO_IRQ_SET_ACTION_TRIGGER | VFIO_IRQ_SET_DATA_EVENTFD,
		VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_DATA_NONE,
		VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_DATA_NONE,
	};
	struct irqs q;
	int i, err;

	setup(&q, argv);
	printf("before: command=%#06x device=%#06x\n",
	       cfg_read(&q.dev, CFG_COMMAND, 2), phys_command(&q));
	for (i = 0; i < 3; i++) {
		err = set_irqs(&q, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, flags[i]);
		printf("%s: %s command=%#06x device=%#06x\n", step[i],
		       errname(err), cfg_read(&q.dev, CFG_COMMAND, 2),
		       phys_command(&q));
	}
	err = disable(&q, VFIO_PCI_INTX_IRQ_INDEX);
	printf("disable: %s command=%#06x device=%#06x\n", errname(err),
	       cfg_read(&q.dev, CFG_COMMAND, 2), phys_command(&q));
	return EXIT_HELD;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 8 && !strcmp(argv[1], "once"))
		return cmd_once(argv + 2);
	if (argc == 6 && !strcmp(argv[1], "race"))
		return cmd_race(argv + 2);
	if (argc == 4 && !strcmp(argv[1], "uffd"))
		return cmd_uffd(argv + 2);
	if (argc == 4 && !strcmp(argv[1], "intx-mask"))
		return cmd_intx_mask(argv + 2);
	fprintf(stderr,
		"usage: %s once GROUP BDF INDEX START COUNT trigger|none|mask|unmask\n"
		"       %s race GROUP BDF index|count TRIES\n"
		"       %s uffd GROUP BDF\n"
		"       %s intx-mask GROUP BDF\n",
		argv[0], argv[0], argv[0], argv[0]);
	return EXIT_BROKEN;
}
