// SPDX-License-Identifier: GPL-2.0
/*
 * hammer [-w WRITE_OFF] [-s UUID | -t UUID] BDF THREADS FAR: keep a VFIO
 * device busy from THREADS threads while the test removes, unbinds or
 * unloads it (tests/test_removal_races.py).
 *
 * The device is opened through its IOMMU group in a type1 container,
 * with an eventfd on its REQ interrupt (vfio asks the user for the
 * device through it when the device is being removed). -s: a PF, whose
 * VF token is set to UUID at each open; -t: a VF of a PF bound to a
 * vfio-pci-core driver, opened with that VF token. BAR0 is read once
 * before the threads start: vfio-pci-core requests a BAR's region at
 * its first access without a lock, so that two threads making the first
 * access at once see one of them fail with EBUSY (upstream, as with
 * vfio-pci; not what this program tests). The threads
 * access it in turns: pread of BAR0 at 0 and at FAR (a page the test
 * puts rules on) and pwrite of WRITE_OFF when given; pread of config
 * space and VFIO_DEVICE_GET_REGION_INFO; mmap of BAR0's first page,
 * loads from it, munmap.
 *
 * Commands on stdin, one a line; each gets exactly one line on stdout:
 *   open   open the device and start the threads; "open ok" once every
 *          thread has made an access, or "open ERRNO" (nothing started).
 *          Then, when vfio asks for the device: each thread makes 16
 *          more accesses (they overlap the removal, which waits for us),
 *          the device is closed and "req inflight=N ..." printed, N
 *          being the accesses in flight when the request came.
 *   close  stop and close: "closed ...".
 *   loop K "looping" once the first open has made its accesses, then:
 *          open, K accesses per thread, close, again, until "stop" or
 *          an open fails (but for EINVAL or ERANGE, a configuration
 *          refused as it stands, or EACCES, a VF token not set yet, for
 *          less than REFUSED_MAX_S seconds in a row): "loop cycles=N reqs=N
 *          end=stop|ERRNO ...",
 *          reqs counting the cycles vfio asked for the device in.
 * "..." is "accesses=N errors=[ERRNO:N,...]". Exit at end of input.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <linux/vfio.h>

#include "../attack/common.h"

#define MAX_THREADS	16
#define POST_REQ	16

struct dev {
	int container, group, fd, req;
	uint64_t bar0, config;
	int bar0_mmap;
};

struct worker {
	pthread_t tid;
	int kind;
	unsigned long n, quota;		/* under lock */
};

static const char *bdf, *set_token, *vf_token;
static int nthreads;
static uint64_t far_off;
static long write_off = -1;
static long page_size;

static struct dev d;
static struct worker workers[MAX_THREADS];
static atomic_int stop;
static atomic_int inflight;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static unsigned long accesses, errors[256];	/* under lock */

static int region(int fd, unsigned int index, uint64_t *off, int *mmappable)
{
	struct vfio_region_info info = { .argsz = sizeof(info), .index = index };

	if (ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, &info) < 0)
		return errno;
	*off = info.offset;
	if (mmappable)
		*mmappable = !!(info.flags & VFIO_REGION_INFO_FLAG_MMAP);
	return 0;
}

static int set_req(int fd, int efd)
{
	char buf[sizeof(struct vfio_irq_set) + sizeof(int)];
	struct vfio_irq_set *s = (void *)buf;

	s->argsz = sizeof(buf);
	s->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
	s->index = VFIO_PCI_REQ_IRQ_INDEX;
	s->start = 0;
	s->count = 1;
	memcpy(s->data, &efd, sizeof(int));
	return ioctl(fd, VFIO_DEVICE_SET_IRQS, s) < 0 ? errno : 0;
}

/* VFIO_DEVICE_FEATURE_PCI_VF_TOKEN with the UUID @uuid (36 characters). */
static int set_vf_token(int fd, const char *uuid)
{
	char buf[sizeof(struct vfio_device_feature) + 16];
	struct vfio_device_feature *f = (void *)buf;
	unsigned int i;

	f->argsz = sizeof(buf);
	f->flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PCI_VF_TOKEN;
	for (i = 0; i < 16; i++) {
		while (*uuid == '-')
			uuid++;
		if (sscanf(uuid, "%2hhx", &f->data[i]) != 1)
			return EINVAL;
		uuid += 2;
	}
	return ioctl(fd, VFIO_DEVICE_FEATURE, f) < 0 ? errno : 0;
}

static void dev_close(void)
{
	if (d.fd >= 0)
		close(d.fd);
	if (d.req >= 0)
		close(d.req);
	if (d.group >= 0)
		close(d.group);
	if (d.container >= 0)
		close(d.container);
	d.fd = d.req = d.group = d.container = -1;
}

/* 0, or the errno of the step that failed (the device is then closed). */
/* The step of the last open that failed, for the loop's closing line. */
static const char *open_failed_at = "";

#define OPEN_STEP(what, ok) \
	({ open_failed_at = (what); (ok); })

static int dev_open(void)
{
	char link[256], path[PATH_MAX], *g;
	struct vfio_group_status st = { .argsz = sizeof(st) };
	uint32_t v;
	ssize_t n;
	int err;

	d.fd = d.req = d.group = d.container = -1;
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", bdf);
	n = readlink(path, link, sizeof(link) - 1);
	if (!OPEN_STEP("group", n >= 0))
		return errno;
	link[n] = '\0';
	g = strrchr(link, '/');
	snprintf(path, sizeof(path), "/dev/vfio/%s", g ? g + 1 : link);
	d.container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	d.group = open(path, O_RDWR | O_CLOEXEC);
	if (!OPEN_STEP("open", d.container >= 0 && d.group >= 0))
		goto fail;
	if (!OPEN_STEP("group_status",
		       ioctl(d.group, VFIO_GROUP_GET_STATUS, &st) >= 0))
		goto fail;
	if (!(st.flags & VFIO_GROUP_FLAGS_VIABLE)) {
		errno = EBUSY;
		goto fail;
	}
	if (!OPEN_STEP("set_container",
		       !ioctl(d.group, VFIO_GROUP_SET_CONTAINER, &d.container)) ||
	    !OPEN_STEP("set_iommu",
		       !ioctl(d.container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU)))
		goto fail;
	snprintf(path, sizeof(path), "%s%s%s", bdf, vf_token ? " vf_token=" : "",
		 vf_token ? vf_token : "");
	d.fd = ioctl(d.group, VFIO_GROUP_GET_DEVICE_FD, path);
	if (!OPEN_STEP("get_device_fd", d.fd >= 0))
		goto fail;
	d.req = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!OPEN_STEP("eventfd", d.req >= 0))
		goto fail;
	err = OPEN_STEP("region_info", region(d.fd, VFIO_PCI_BAR0_REGION_INDEX,
					      &d.bar0, &d.bar0_mmap));
	if (!err)
		err = region(d.fd, VFIO_PCI_CONFIG_REGION_INDEX, &d.config, NULL);
	if (!err)
		err = OPEN_STEP("set_req", set_req(d.fd, d.req));
	if (!err && OPEN_STEP("read", pread(d.fd, &v, sizeof(v), d.bar0)) !=
		    sizeof(v))
		err = errno;
	if (!err && set_token)
		err = OPEN_STEP("set_token", set_vf_token(d.fd, set_token));
	if (err) {
		errno = err;
		goto fail;
	}
	return 0;
fail:
	err = errno;
	dev_close();
	return err;
}

static int access_once(struct worker *w, unsigned long i)
{
	struct vfio_region_info info = { .argsz = sizeof(info) };
	uint32_t v = ~(uint32_t)i;
	volatile uint32_t *p;
	void *map;

	switch (w->kind) {
	case 0:
		if (pread(d.fd, &v, 4, d.bar0) != 4)
			return errno;
		if (pread(d.fd, &v, 4, d.bar0 + far_off) != 4)
			return errno;
		if (write_off >= 0 && pwrite(d.fd, &v, 4, d.bar0 + write_off) != 4)
			return errno;
		return 0;
	case 1:
		if (pread(d.fd, &v, 4, d.config) != 4)
			return errno;
		return ioctl(d.fd, VFIO_DEVICE_GET_REGION_INFO, &info) < 0 ? errno : 0;
	default:
		if (!d.bar0_mmap)
			return pread(d.fd, &v, 2, d.config) == 2 ? 0 : errno;
		map = mmap(NULL, page_size, PROT_READ | PROT_WRITE, MAP_SHARED,
			   d.fd, d.bar0);
		if (map == MAP_FAILED)
			return errno;
		p = map;
		for (int k = 0; k < 8; k++)
			v += p[0];
		munmap(map, page_size);
		return 0;
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	unsigned long i = 0;

	while (!atomic_load(&stop)) {
		int err;

		atomic_fetch_add(&inflight, 1);
		err = access_once(w, i++);
		atomic_fetch_sub(&inflight, 1);
		pthread_mutex_lock(&lock);
		accesses++;
		errors[err < 256 ? err : 255] += !!err;
		if (++w->n == w->quota)
			pthread_cond_broadcast(&cond);
		pthread_mutex_unlock(&lock);
	}
	return NULL;
}

static void start_threads(void)
{
	atomic_store(&stop, 0);
	for (int i = 0; i < nthreads; i++) {
		workers[i].kind = i % 3;
		workers[i].n = workers[i].quota = 0;
		if (pthread_create(&workers[i].tid, NULL, worker_main, &workers[i])) {
			perror("pthread_create");
			exit(3);
		}
	}
}

/* Wait until every thread has made @k more accesses. */
static void wait_accesses(unsigned long k)
{
	int i;

	pthread_mutex_lock(&lock);
	for (i = 0; i < nthreads; i++)
		workers[i].quota = workers[i].n + k;
	for (i = 0; i < nthreads; i++)
		while (workers[i].n < workers[i].quota)
			pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
}

static void stop_threads(void)
{
	atomic_store(&stop, 1);
	for (int i = 0; i < nthreads; i++)
		pthread_join(workers[i].tid, NULL);
}

static int req_fired(void)
{
	uint64_t v;

	return d.req >= 0 && read(d.req, &v, sizeof(v)) == sizeof(v);
}

/* " accesses=N errors=[...]", and the counts reset. */
static void print_counts(void)
{
	const char *sep = "";

	pthread_mutex_lock(&lock);
	printf(" accesses=%lu errors=[", accesses);
	for (int e = 1; e < 256; e++) {
		if (errors[e])
			printf("%s%s:%lu", sep, errname(e), errors[e]);
		if (errors[e])
			sep = ",";
		errors[e] = 0;
	}
	printf("]\n");
	accesses = 0;
	pthread_mutex_unlock(&lock);
}

/* Input lines, read with read(2) so that poll(2) on stdin stays true. */
static char ibuf[4096];
static size_t ilen;

/* 1 and the line in @line, 0 at end of input. Blocks for a line. */
static int next_line(char *line, size_t size)
{
	for (;;) {
		char *nl = memchr(ibuf, '\n', ilen);
		ssize_t n;

		if (nl) {
			size_t len = nl - ibuf;

			snprintf(line, size, "%.*s", (int)len, ibuf);
			memmove(ibuf, nl + 1, ilen - len - 1);
			ilen -= len + 1;
			return 1;
		}
		if (ilen == sizeof(ibuf))
			ilen = 0;
		n = read(0, ibuf + ilen, sizeof(ibuf) - ilen);
		if (n <= 0)
			return 0;
		ilen += n;
	}
}

static int input_ready(int timeout)
{
	struct pollfd p = { .fd = 0, .events = POLLIN };

	return memchr(ibuf, '\n', ilen) || poll(&p, 1, timeout) > 0;
}

static void held(void)
{
	struct pollfd p[2] = {
		{ .fd = d.req, .events = POLLIN }, { .fd = 0, .events = POLLIN },
	};
	char line[64];
	int busy;

	start_threads();
	wait_accesses(1);
	printf("open ok\n");
	/* until vfio asks for the device or the test says "close" */
	while (!memchr(ibuf, '\n', ilen) && poll(p, 2, -1) >= 0 &&
	       !(p[0].revents & POLLIN) && !(p[1].revents & (POLLIN | POLLHUP)))
		;
	if (req_fired()) {
		busy = atomic_load(&inflight);
		wait_accesses(POST_REQ);
		stop_threads();
		dev_close();
		printf("req inflight=%d", busy);
		print_counts();
		return;
	}
	stop_threads();
	dev_close();
	if (next_line(line, sizeof(line)) && strcmp(line, "close"))
		fprintf(stderr, "hammer: '%s' while open: closed\n", line);
	printf("closed");
	print_counts();
}

/*
 * How long the loop keeps opening a device that refuses to open with
 * EINVAL or EACCES. A count of tries would end it while the test is
 * merely slow between two writes of a rule (an emulated guest on a busy
 * machine): a failed open takes microseconds, a configfs write from
 * Python can take milliseconds.
 */
#define REFUSED_MAX_S	10

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * A loop ended by a refused open: what the device's configuration said of
 * it then (vfmediate's "error" attribute), on stderr for the test's log.
 */
static void print_config_error(void)
{
	char path[PATH_MAX], msg[256];
	FILE *f;

	snprintf(path, sizeof(path),
		 "/sys/kernel/config/vfmediate/devices/%s/error", bdf);
	f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "hammer: no configuration of %s\n", bdf);
		return;
	}
	if (fgets(msg, sizeof(msg), f))
		fprintf(stderr, "hammer: %s error: %s", bdf, msg);
	fclose(f);
}

static void loop(unsigned long k)
{
	unsigned long cycles = 0, reqs = 0;
	double refused_since = 0;
	char line[64];
	int err = 0;

	for (;;) {
		/*
		 * The test's word ends the loop, even while the device
		 * refuses to open: a refusal ends it only once it has
		 * lasted REFUSED_MAX_S. (Tested after the open, a stop that
		 * came while a refused open was unwinding, vfio-pci-core
		 * resetting the function for milliseconds, ended the loop
		 * with that refusal: a failure the test could not explain.)
		 */
		if (input_ready(0)) {
			err = 0;
			break;
		}
		err = dev_open();
		/*
		 * EINVAL, ERANGE: the configuration is refused as it stands
		 * (a rule the test is still writing; a mediator attached
		 * whose arguments are not written yet, which ondemand
		 * refuses as an empty window); EACCES: a VF whose PF has not
		 * set the token yet since it was bound. Try again, a while.
		 */
		if (err == EINVAL || err == ERANGE || err == EACCES) {
			if (!refused_since)
				refused_since = now();
			if (now() - refused_since < REFUSED_MAX_S)
				continue;
		}
		if (err)
			break;
		refused_since = 0;
		start_threads();
		wait_accesses(k);
		if (!cycles)
			printf("looping\n");
		reqs += req_fired();
		stop_threads();
		dev_close();
		cycles++;
	}
	if (!err && next_line(line, sizeof(line)) && strcmp(line, "stop"))
		fprintf(stderr, "hammer: '%s' while looping: stopped\n", line);
	printf("loop cycles=%lu reqs=%lu end=%s", cycles, reqs,
	       err ? errname(err) : "stop");
	if (err) {
		printf(" at=%s", open_failed_at);
		print_config_error();
	}
	print_counts();
}

int main(int argc, char **argv)
{
	char line[64];
	int err, opt;

	while ((opt = getopt(argc, argv, "w:s:t:")) != -1) {
		switch (opt) {
		case 'w': write_off = strtol(optarg, NULL, 0); break;
		case 's': set_token = optarg; break;
		case 't': vf_token = optarg; break;
		default: goto usage;
		}
	}
	if (argc - optind != 3)
		goto usage;
	bdf = argv[optind];
	nthreads = atoi(argv[optind + 1]);
	far_off = strtoull(argv[optind + 2], NULL, 0);
	if (nthreads < 1 || nthreads > MAX_THREADS) {
		fprintf(stderr, "hammer: 1 to %d threads\n", MAX_THREADS);
		return 2;
	}
	page_size = sysconf(_SC_PAGESIZE);
	setvbuf(stdout, NULL, _IOLBF, 0);
	d.fd = d.req = d.group = d.container = -1;

	while (next_line(line, sizeof(line))) {
		if (!strcmp(line, "open")) {
			err = dev_open();
			if (err)
				printf("open %s\n", errname(err));
			else
				held();
		} else if (!strncmp(line, "loop ", 5)) {
			loop(strtoul(line + 5, NULL, 0));
		} else if (strcmp(line, "stop") && strcmp(line, "close")) {
			/* "stop"/"close" after the loop or hold ended: no-op */
			fprintf(stderr, "hammer: unknown command '%s'\n", line);
			return 2;
		}
	}
	return 0;
usage:
	fprintf(stderr, "usage: hammer [-w OFF] [-s UUID | -t UUID] BDF THREADS FAR\n");
	return 2;
}
