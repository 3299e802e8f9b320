// SPDX-License-Identifier: GPL-2.0
/*
 * VFIO_DEVICE_FEATURE as the VFIO user sees it (issue 12, hole 3):
 * LOW_POWER_ENTRY puts the function in D3hot, which writes PMCSR past
 * any rule on it. Tries each feature vfio-pci-core implements, and one
 * it does not, with PROBE and SET, and prints one line each:
 *
 *   feature NAME probe|set RESULT [power_state=STATE]
 *
 * STATE is the function's sysfs power_state right after a successful
 * low-power entry (which is then left again with LOW_POWER_EXIT).
 *
 *   feature GROUP BDF
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#ifndef VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY
#define VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY 3
#define VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP 4
#define VFIO_DEVICE_FEATURE_LOW_POWER_EXIT 5
#endif
#define FEATURE_UNKNOWN 0xfff0

struct feature_buf {
	struct vfio_device_feature hdr;
	uint8_t data[16];	/* a uuid, or an eventfd and a reserved word */
};

static int feature(int fd, unsigned int flags, const void *data, size_t len)
{
	struct feature_buf b = { 0 };

	b.hdr.argsz = sizeof(b.hdr) + len;
	b.hdr.flags = flags;
	memcpy(b.data, data, len);
	return xioctl(fd, VFIO_DEVICE_FEATURE, &b);
}

static void power_state(const char *bdf, char *out, size_t len)
{
	char path[128];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/power_state", bdf);
	snprintf(out, len, "?");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, out, len - 1);
	close(fd);
	if (n <= 0)
		return;
	out[n] = 0;
	out[strcspn(out, "\n")] = 0;
}

static void show(const char *name, const char *op, int err)
{
	printf("feature %s %s %s\n", name, op, errname(err));
}

/* A low-power entry: probe, set; when it worked, where the function is. */
static void low_power(struct vdev *d, const char *bdf, const char *name,
		      unsigned int id, const void *data, size_t len)
{
	char state[32];
	int err;

	show(name, "probe", feature(d->fd, id | VFIO_DEVICE_FEATURE_PROBE |
				    VFIO_DEVICE_FEATURE_SET, NULL, 0));
	err = feature(d->fd, id | VFIO_DEVICE_FEATURE_SET, data, len);
	if (err) {
		show(name, "set", err);
		return;
	}
	usleep(200000);		/* runtime suspend runs after the ioctl */
	power_state(bdf, state, sizeof(state));
	printf("feature %s set ok power_state=%s\n", name, state);
	err = feature(d->fd, VFIO_DEVICE_FEATURE_LOW_POWER_EXIT |
		      VFIO_DEVICE_FEATURE_SET, NULL, 0);
	if (err)
		show("low_power_exit(after)", "set", err);
}

int main(int argc, char **argv)
{
	uint8_t uuid[16] = { 0 };
	int32_t wake[2];
	struct vdev d;
	char state[32];

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc != 3) {
		fprintf(stderr, "usage: %s GROUP BDF\n", argv[0]);
		return EXIT_BROKEN;
	}
	vdev_open(&d, argv[1], argv[2]);
	power_state(argv[2], state, sizeof(state));
	printf("power_state %s\n", state);

	low_power(&d, argv[2], "low_power_entry",
		  VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY, NULL, 0);
	wake[0] = new_eventfd();
	wake[1] = 0;
	low_power(&d, argv[2], "low_power_entry_with_wakeup",
		  VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP, wake,
		  sizeof(wake));
	show("low_power_exit", "probe",
	     feature(d.fd, VFIO_DEVICE_FEATURE_LOW_POWER_EXIT |
		     VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET,
		     NULL, 0));
	show("low_power_exit", "set",
	     feature(d.fd, VFIO_DEVICE_FEATURE_LOW_POWER_EXIT |
		     VFIO_DEVICE_FEATURE_SET, NULL, 0));
	show("pci_vf_token", "probe",
	     feature(d.fd, VFIO_DEVICE_FEATURE_PCI_VF_TOKEN |
		     VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET,
		     NULL, 0));
	show("pci_vf_token", "set",
	     feature(d.fd, VFIO_DEVICE_FEATURE_PCI_VF_TOKEN |
		     VFIO_DEVICE_FEATURE_SET, uuid, sizeof(uuid)));
	show("unknown", "probe",
	     feature(d.fd, FEATURE_UNKNOWN | VFIO_DEVICE_FEATURE_PROBE |
		     VFIO_DEVICE_FEATURE_GET, NULL, 0));
	show("unknown", "get",
	     feature(d.fd, FEATURE_UNKNOWN | VFIO_DEVICE_FEATURE_GET,
		     NULL, 0));
	vdev_close(&d);
	return EXIT_HELD;
}
