// SPDX-License-Identifier: GPL-2.0
/*
 * A VFIO user races its own migration transfers (issue 15): the stream
 * it gives RESUMING is copied once into the kernel, checked whole (magic,
 * mediator, length, CRC) and only then loaded, so no interleaving of
 * writes, reads and transitions may load anything but a whole good
 * stream, and the state machine must always say where it is.
 *
 *   migrate race GROUP BDF ROUNDS
 *	edu bound to vfmediate with regshadow shadowing 0x0-0xff of BAR0.
 *	Saves a stream holding MAGIC at 0x80, then ROUNDS times moves the
 *	device to STOP_COPY (odd rounds) or RESUMING (even ones) and back to
 *	RUNNING. Each transfer's data fd is also handed to a second thread,
 *	which reads it (and writes every other one) while the first goes
 *	on. A RESUMING round
 *	writes the good stream: when RESUMING ends well, 0x80 must read
 *	MAGIC again (the round before cleared it); when it fails (the other
 *	thread wrote first: the stream is spoiled), the device must still be
 *	in RESUMING, and a reopen brings it back to RUNNING.
 *
 * Last line: "result: rounds=N saves=N loads=N spoiled=N raced_reads=N
 * raced_writes=N wrong=N". Exit 1 on a wrong state, a wrong register or
 * an error the uAPI does not allow; 0 otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define EDU_DMA_SRC	0x80
#define MAGIC		0x13572468u
#define STREAM_MAX	4096

struct mig_buf {
	struct vfio_device_feature hdr;
	struct vfio_device_feature_mig_state st;
};

static struct vdev dev;
static const char *group_path, *bdf;
static int slot = -1;			/* a data fd for the racer */
static volatile int stop;
static unsigned long raced_reads, raced_writes, wrong;

static void fail(const char *what, int err)
{
	printf("wrong: %s: %s\n", what, errname(err));
	wrong++;
}

/* SET the migration state; 0 or the errno, and the data fd or -1. */
static int set_state(uint32_t state, int *data_fd)
{
	struct mig_buf b = { 0 };
	int err;

	b.hdr.argsz = sizeof(b);
	b.hdr.flags = VFIO_DEVICE_FEATURE_SET |
		      VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE;
	b.st.device_state = state;
	b.st.data_fd = -1;
	err = xioctl(dev.fd, VFIO_DEVICE_FEATURE, &b);
	if (data_fd)
		*data_fd = err ? -1 : b.st.data_fd;
	return err;
}

static uint32_t get_state(void)
{
	struct mig_buf b = { 0 };
	int err;

	b.hdr.argsz = sizeof(b);
	b.hdr.flags = VFIO_DEVICE_FEATURE_GET |
		      VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE;
	err = xioctl(dev.fd, VFIO_DEVICE_FEATURE, &b);
	if (err) {
		fail("GET state", err);
		return ~0u;
	}
	return b.st.device_state;
}

static void bar_write32(uint64_t off, uint32_t v)
{
	if (pwrite(dev.fd, &v, 4, dev.region_off[VFIO_PCI_BAR0_REGION_INDEX] +
		   off) != 4)
		die("BAR0 write");
}

static void open_device(void)
{
	uint16_t cmd;
	off_t cfg;

	vdev_open(&dev, group_path, bdf);
	cfg = dev.region_off[VFIO_PCI_CONFIG_REGION_INDEX] + CFG_COMMAND;
	cmd = cfg_read(&dev, CFG_COMMAND, 2) | 0x2;	/* memory space */
	if (pwrite(dev.fd, &cmd, 2, cfg) != 2)
		die("config write");
}

/*
 * Give @fd's duplicate to the racer and wait until it has taken it: what
 * both do next then overlaps (a handshake, not a delay).
 */
static void hand_over(int fd)
{
	int dup_fd = dup(fd);

	if (dup_fd < 0)
		die("dup");
	__atomic_store_n(&slot, dup_fd, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&slot, __ATOMIC_SEQ_CST) >= 0)
		sched_yield();
}

static bool allowed(int err)
{
	/* Transfer over, wrong direction, stream longer than the state. */
	return err == ENODEV || err == EBADF || err == EFBIG;
}

/*
 * Every data fd handed over is read; every other one written first, so
 * that about half the RESUMING rounds race a spoiling write and the
 * other half load.
 */
static void *racer(void *arg)
{
	unsigned long taken = 0;
	char buf[64];
	ssize_t n;
	int fd;

	(void)arg;
	memset(buf, 0x5a, sizeof(buf));
	while (!stop) {
		fd = __atomic_exchange_n(&slot, -1, __ATOMIC_SEQ_CST);
		if (fd < 0) {
			sched_yield();
			continue;
		}
		if (taken++ % 4 == 0) {
			if (write(fd, buf, sizeof(buf)) > 0)
				__atomic_add_fetch(&raced_writes, 1, __ATOMIC_SEQ_CST);
			else if (!allowed(errno))
				fail("racer write", errno);
		}
		n = read(fd, buf, sizeof(buf));
		if (n > 0)
			__atomic_add_fetch(&raced_reads, 1, __ATOMIC_SEQ_CST);
		else if (n < 0 && !allowed(errno))
			fail("racer read", errno);
		close(fd);
	}
	return NULL;
}

static size_t save(char *out)
{
	ssize_t n, len = 0;
	int fd, err;

	err = set_state(VFIO_DEVICE_STATE_STOP_COPY, &fd);
	if (err || fd < 0) {
		errno = err;
		die("STOP_COPY");
	}
	while ((n = read(fd, out + len, STREAM_MAX - len)) > 0)
		len += n;
	close(fd);
	if (n < 0 || set_state(VFIO_DEVICE_STATE_RUNNING, NULL))
		die("saving the stream");
	return len;
}

static void save_round(void)
{
	char buf[STREAM_MAX];
	int fd, err;

	err = set_state(VFIO_DEVICE_STATE_STOP_COPY, &fd);
	if (err) {
		fail("STOP_COPY", err);
		return;
	}
	hand_over(fd);
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	close(fd);
	err = set_state(VFIO_DEVICE_STATE_RUNNING, NULL);
	if (err || get_state() != VFIO_DEVICE_STATE_RUNNING)
		fail("STOP_COPY -> RUNNING", err);
}

/* One RESUMING round; true when the stream was spoiled. */
static bool load_round(const char *good, size_t len)
{
	uint32_t v = 0;
	int fd, err;

	bar_write32(EDU_DMA_SRC, 0);
	err = set_state(VFIO_DEVICE_STATE_RESUMING, &fd);
	if (err) {
		fail("RESUMING", err);
		return false;
	}
	hand_over(fd);
	if (write(fd, good, len) < 0 && errno != EFBIG)
		fail("stream write", errno);
	close(fd);
	err = set_state(VFIO_DEVICE_STATE_RUNNING, NULL);
	if (err) {
		if (err != EINVAL || get_state() != VFIO_DEVICE_STATE_RESUMING)
			fail("spoiled RESUMING -> RUNNING", err);
		/* Only a reset or a new open leave RESUMING. */
		vdev_close(&dev);
		open_device();
		if (get_state() != VFIO_DEVICE_STATE_RUNNING)
			fail("reopened state", 0);
		return true;
	}
	if (pread(dev.fd, &v, 4, dev.region_off[VFIO_PCI_BAR0_REGION_INDEX] +
		  EDU_DMA_SRC) != 4 || v != MAGIC)
		fail("register after the load", 0);
	return false;
}

int main(int argc, char **argv)
{
	unsigned long rounds, i, saves = 0, loads = 0, spoiled = 0;
	static char good[STREAM_MAX];
	pthread_t thread;
	size_t len;
	int fd;

	if (argc != 5 || strcmp(argv[1], "race"))
		skip("usage: migrate race GROUP BDF ROUNDS");
	group_path = argv[2];
	bdf = argv[3];
	rounds = strtoul(argv[4], NULL, 0);
	open_device();
	bar_write32(EDU_DMA_SRC, MAGIC);
	if (set_state(VFIO_DEVICE_STATE_STOP, NULL))
		die("STOP");
	len = save(good);

	if (pthread_create(&thread, NULL, racer, NULL))
		die("pthread_create");
	for (i = 0; i < rounds; i++) {
		if (i % 2) {
			save_round();
			saves++;
		} else if (load_round(good, len)) {
			spoiled++;
		} else {
			loads++;
		}
	}
	stop = 1;
	pthread_join(thread, NULL);
	fd = __atomic_exchange_n(&slot, -1, __ATOMIC_SEQ_CST);
	if (fd >= 0)
		close(fd);
	vdev_close(&dev);
	printf("result: rounds=%lu saves=%lu loads=%lu spoiled=%lu raced_reads=%lu raced_writes=%lu wrong=%lu\n",
	       rounds, saves, loads, spoiled, raced_reads, raced_writes, wrong);
	return wrong ? EXIT_WON : EXIT_HELD;
}
