// SPDX-License-Identifier: GPL-2.0
/* Helpers shared by the attack programs: see common.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#include "common.h"

void die(const char *what)
{
	fprintf(stderr, "%s: %s\n", what, strerror(errno));
	printf("broken: %s: %s\n", what, errname(errno));
	exit(EXIT_BROKEN);
}

void skip(const char *why)
{
	printf("skip: %s\n", why);
	exit(EXIT_SKIP);
}

const char *errname(int err)
{
	static char buf[16];

	switch (err) {
	case 0: return "ok";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case EIO: return "EIO";
	case EBADF: return "EBADF";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case ENXIO: return "ENXIO";
	case ENODEV: return "ENODEV";
	case EINVAL: return "EINVAL";
	case ENOSPC: return "ENOSPC";
	case ERANGE: return "ERANGE";
	case ENOTTY: return "ENOTTY";
	case ENOSYS: return "ENOSYS";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case EFBIG: return "EFBIG";
	case ESPIPE: return "ESPIPE";
	case EMFILE: return "EMFILE";
	}
	snprintf(buf, sizeof(buf), "E%d", err);
	return buf;
}

int xioctl(int fd, unsigned long req, void *arg)
{
	return ioctl(fd, req, arg) < 0 ? errno : 0;
}

static void region_infos(struct vdev *d)
{
	unsigned int i;

	for (i = 0; i < VFIO_PCI_NUM_REGIONS; i++) {
		struct vfio_region_info info = {
			.argsz = sizeof(info), .index = i,
		};

		if (ioctl(d->fd, VFIO_DEVICE_GET_REGION_INFO, &info) < 0)
			continue;
		d->region_off[i] = info.offset;
		d->region_size[i] = info.size;
	}
}

void vdev_open(struct vdev *d, const char *group, const char *bdf)
{
	struct vfio_group_status status = { .argsz = sizeof(status) };

	memset(d, 0, sizeof(*d));
	d->container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	if (d->container < 0)
		die("open /dev/vfio/vfio");
	if (ioctl(d->container, VFIO_GET_API_VERSION) != VFIO_API_VERSION)
		die("VFIO_GET_API_VERSION");
	d->group = open(group, O_RDWR | O_CLOEXEC);
	if (d->group < 0)
		die(group);
	if (ioctl(d->group, VFIO_GROUP_GET_STATUS, &status) < 0)
		die("VFIO_GROUP_GET_STATUS");
	if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE)) {
		errno = EBUSY;
		die("group not viable");
	}
	if (ioctl(d->group, VFIO_GROUP_SET_CONTAINER, &d->container) < 0)
		die("VFIO_GROUP_SET_CONTAINER");
	if (ioctl(d->container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) < 0 &&
	    ioctl(d->container, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU) < 0)
		die("VFIO_SET_IOMMU");
	d->fd = ioctl(d->group, VFIO_GROUP_GET_DEVICE_FD, bdf);
	if (d->fd < 0)
		die("VFIO_GROUP_GET_DEVICE_FD");
	region_infos(d);
}

void vdev_close(struct vdev *d)
{
	close(d->fd);
	close(d->group);
	close(d->container);
}

static uint32_t region_read(struct vdev *d, unsigned int index, uint64_t off,
			    unsigned int size)
{
	uint32_t v = 0;

	if (pread(d->fd, &v, size, d->region_off[index] + off) != size)
		die("pread");
	return v;
}

uint32_t cfg_read(struct vdev *d, unsigned int off, unsigned int size)
{
	return region_read(d, VFIO_PCI_CONFIG_REGION_INDEX, off, size);
}

uint32_t bar_read32(struct vdev *d, unsigned int bar, uint64_t off)
{
	return region_read(d, bar, off, 4);
}

unsigned int find_cap(struct vdev *d, uint8_t id)
{
	unsigned int pos, n;

	if (!(cfg_read(d, CFG_STATUS, 2) & 0x10))
		return 0;
	pos = cfg_read(d, CFG_CAP_PTR, 1) & ~3u;
	for (n = 0; pos && n < 48; n++) {
		if (cfg_read(d, pos, 1) == id)
			return pos;
		pos = cfg_read(d, pos + 1, 1) & ~3u;
	}
	return 0;
}

int new_eventfd(void)
{
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	if (fd < 0)
		die("eventfd");
	return fd;
}

void tally_add(struct tally *t, int err)
{
	t->by_errno[err < 256 ? err : 255]++;
}

void tally_print(const struct tally *t)
{
	int e;

	for (e = 0; e < 256; e++)
		if (t->by_errno[e])
			printf(" %s=%lu", errname(e), t->by_errno[e]);
}

/*
 * Hold each value a while: where the two threads do not run at the same
 * instant (one host thread emulating both vCPUs, or both on one CPU), the
 * other thread sees the value the flipper had when it was switched out,
 * which is then either value about as often.
 */
static void hold(void)
{
	volatile unsigned int i;

	for (i = 0; i < 256; i++)
		;
}

/* Run the calling thread on @cpu only, if there is such a CPU. */
static void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void *flipper_run(void *arg)
{
	struct flipper *f = arg;

	pin(1);
	while (!f->stop) {
		*f->word = f->a;
		hold();
		*f->word = f->b;
		hold();
		f->flips++;
	}
	return NULL;
}

static pthread_t flipper_thread;

/*
 * The ioctl thread (the caller) on CPU 0, the flipper on CPU 1: on one
 * CPU the flipper could only run where the ioctl sleeps, and there is no
 * such point between the two copies.
 */
void flipper_start(struct flipper *f)
{
	pin(0);
	f->stop = 0;
	f->flips = 0;
	errno = pthread_create(&flipper_thread, NULL, flipper_run, f);
	if (errno)
		die("pthread_create");
}

void flipper_stop(struct flipper *f)
{
	f->stop = 1;
	pthread_join(flipper_thread, NULL);
}

static int open_uffd(void)
{
	int fd, dev;

	/* Non-blocking: poll() can report a fault that is gone by read(). */
	fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0 || errno != EPERM)
		return fd;
	/* 6.1+: /dev/userfaultfd, when the admin opened it to this user */
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0) {
		errno = EPERM;
		return -1;
	}
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	close(dev);
	return fd;
}

int uffd_split_init(struct uffd_split *s)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { 0 };
	char *p;

	s->page_size = sysconf(_SC_PAGESIZE);
	s->uffd = open_uffd();
	if (s->uffd < 0)
		return errno;
	if (ioctl(s->uffd, UFFDIO_API, &api) < 0)
		die("UFFDIO_API");
	p = mmap(NULL, 2 * s->page_size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("mmap");
	s->page[0] = p;
	s->page[1] = p + s->page_size;
	memset(p, 0, s->page_size);
	s->fill = calloc(1, s->page_size);
	if (!s->fill)
		die("calloc");
	reg.range.start = (unsigned long)s->page[1];
	reg.range.len = s->page_size;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (ioctl(s->uffd, UFFDIO_REGISTER, &reg) < 0)
		die("UFFDIO_REGISTER");
	return 0;
}

/* Serve one fault on the second page; give up after two seconds. */
static void *uffd_split_run(void *arg)
{
	struct uffd_split *s = arg;
	struct pollfd pfd = { .fd = s->uffd, .events = POLLIN };
	struct uffdio_copy copy = { 0 };
	struct uffd_msg msg;

	if (poll(&pfd, 1, 2000) != 1 || !(pfd.revents & POLLIN))
		return NULL;
	if (read(s->uffd, &msg, sizeof(msg)) != sizeof(msg)) {
		if (errno == EAGAIN)
			return NULL;
		die("read uffd");
	}
	if (msg.event != UFFD_EVENT_PAGEFAULT)
		return NULL;
	s->faults++;
	if (s->on_fault)
		s->on_fault(s);
	copy.dst = (unsigned long)s->page[1];
	copy.src = (unsigned long)s->fill;
	copy.len = s->page_size;
	if (ioctl(s->uffd, UFFDIO_COPY, &copy) < 0)
		die("UFFDIO_COPY");
	return NULL;
}

static pthread_t uffd_thread;

void uffd_split_arm(struct uffd_split *s)
{
	if (madvise(s->page[1], s->page_size, MADV_DONTNEED) < 0)
		die("madvise");
	errno = pthread_create(&uffd_thread, NULL, uffd_split_run, s);
	if (errno)
		die("pthread_create");
}

void uffd_split_wait(struct uffd_split *s)
{
	(void)s;
	pthread_join(uffd_thread, NULL);
}
