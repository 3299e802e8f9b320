/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared helpers of the attack programs (tests/attack/): open a VFIO
 * device through its group as whatever user runs the program, read its
 * config space and BARs, race a field of an ioctl argument, and set up a
 * userfaultfd that stops the kernel's first copy of an argument.
 *
 * Every program is built with: cc -O2 -Wall -Wextra -Werror -pthread
 * prog.c common.c (so are tests/race/hammer.c, which uses errname(), and
 * the fuzzer, tests/fuzz/)
 */
#ifndef VFM_ATTACK_COMMON_H
#define VFM_ATTACK_COMMON_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <linux/vfio.h>

/* Exit statuses: the attack lost, won, or could not be run at all. */
#define EXIT_HELD	0
#define EXIT_WON	1
#define EXIT_SKIP	2
#define EXIT_BROKEN	3

/* PCI config offsets used here */
#define CFG_COMMAND		0x04
#define CFG_STATUS		0x06
#define CFG_CAP_PTR		0x34
#define CAP_ID_PM		0x01
#define CAP_ID_MSI		0x05
#define CAP_ID_MSIX		0x11
#define MSIX_FLAGS_ENABLE	0x8000
#define MSI_FLAGS_ENABLE	0x0001

struct vdev {
	int container;
	int group;
	int fd;
	uint64_t region_off[VFIO_PCI_NUM_REGIONS];
	uint64_t region_size[VFIO_PCI_NUM_REGIONS];
};

void die(const char *what) __attribute__((noreturn));
void skip(const char *why) __attribute__((noreturn));
const char *errname(int err);

/* Open group @group (its number) and device @bdf in a type1 container. */
void vdev_open(struct vdev *d, const char *group, const char *bdf);
void vdev_close(struct vdev *d);

uint32_t cfg_read(struct vdev *d, unsigned int off, unsigned int size);
uint32_t bar_read32(struct vdev *d, unsigned int bar, uint64_t off);
/* Offset of a standard capability in (virtualized) config space, or 0. */
unsigned int find_cap(struct vdev *d, uint8_t id);

int new_eventfd(void);
/* ioctl(); 0 or the errno. */
int xioctl(int fd, unsigned long req, void *arg);

/* Counts of one ioctl's outcomes, by errno (0 = success). */
struct tally {
	unsigned long by_errno[256];
};

void tally_add(struct tally *t, int err);
/* " ok=N EPERM=N ..." for the outcomes seen. */
void tally_print(const struct tally *t);

/*
 * A racing thread: flips the 32-bit @word between @a and @b until @stop
 * is set. The word is the ioctl argument's field the kernel checks.
 */
struct flipper {
	volatile uint32_t *word;
	uint32_t a, b;
	volatile int stop;
	unsigned long flips;
};

void flipper_start(struct flipper *f);
void flipper_stop(struct flipper *f);

/*
 * Two adjacent pages: @page[0] plain memory, @page[1] registered with a
 * userfaultfd in missing mode. An ioctl argument placed across the page
 * boundary makes the kernel's copy_from_user() stop on the second page
 * once the bytes on the first are copied. The handler thread then calls
 * @on_fault (which may rewrite the first page) and fills the second page
 * with @fill. Only the first copy faults: the page stays.
 */
struct uffd_split {
	int uffd;
	char *page[2];
	size_t page_size;
	char *fill;
	void (*on_fault)(struct uffd_split *s);
	void *ctx;
	int faults;
};

/*
 * 0 when ready; else the errno of userfaultfd(2) (EPERM: unprivileged
 * users get only UFFD_USER_MODE_ONLY, which never serves a kernel
 * copy_from_user(), unless vm.unprivileged_userfaultfd is 1 or
 * /dev/userfaultfd is open to them).
 */
int uffd_split_init(struct uffd_split *s);
/* Arm the second page (again): unmap it, start the handler for one fault. */
void uffd_split_arm(struct uffd_split *s);
/* Wait for the handler thread of the last arm. */
void uffd_split_wait(struct uffd_split *s);

#endif
