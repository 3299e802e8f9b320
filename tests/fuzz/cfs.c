// SPDX-License-Identifier: GPL-2.0
/*
 * configfs for the fuzzer: the epoch's fixed guards are written by the
 * controller (vfmfuzz.c); here, the configfs thread's random rules,
 * mediators and live applies, and the open/close thread.
 *
 * Random rules and mediator windows stay out of BAR0's guard zone and,
 * when the epoch guards it, out of the MSI capability: a rule there
 * could take a guarded byte back (the most specific rule wins), and the
 * expected result of an access in the zone would no longer be known.
 * Everything else is fair: any region, any action, invalid values.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

#define MSI_CAP_LEN	14	/* edu's: 64-bit addresses, no masking */

static const char *const regions[] = {
	"bar0", "bar1", "bar2", "bar3", "bar4", "bar5", "rom", "config", "vga",
};

static void path_of(char *p, size_t n, const char *rel)
{
	snprintf(p, n, "%s/%s", fz.cfs, rel);
}

/* One write(2) of @val and a newline, as echo does; 0 or the errno. */
int cfs_write(const char *rel, const char *val)
{
	char p[600], buf[512];
	int fd, err = 0;
	size_t len;

	path_of(p, sizeof(p), rel);
	len = snprintf(buf, sizeof(buf), "%s\n", val);
	fd = open(p, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	if (write(fd, buf, len) != (ssize_t)len)
		err = errno ? errno : EIO;
	close(fd);
	return err;
}

static int cfs_read(const char *rel, char *buf, size_t n)
{
	char p[600];
	ssize_t got;
	int fd;

	path_of(p, sizeof(p), rel);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	got = read(fd, buf, n - 1);
	close(fd);
	if (got < 0)
		return errno;
	buf[got] = 0;
	return 0;
}

int cfs_mkdir(const char *rel)
{
	char p[600];

	path_of(p, sizeof(p), rel);
	return mkdir(p, 0755) ? errno : 0;
}

int cfs_rmdir(const char *rel)
{
	char p[600];

	path_of(p, sizeof(p), rel);
	return rmdir(p) ? errno : 0;
}

/* Back to no rules, no mediator, every region mmap auto. */
void cfs_purge(void)
{
	char rel[300], p[600];
	struct dirent *de;
	unsigned int i;
	DIR *d;

	for (i = 0; i < sizeof(regions) / sizeof(regions[0]); i++) {
		snprintf(rel, sizeof(rel), "regions/%s/rules", regions[i]);
		path_of(p, sizeof(p), rel);
		d = opendir(p);
		if (!d)
			die(p);
		while ((de = readdir(d)))
			if (de->d_name[0] != '.') {
				snprintf(rel, sizeof(rel), "regions/%s/rules/%s",
					 regions[i], de->d_name);
				if (cfs_rmdir(rel))
					die("rmdir rule");
			}
		closedir(d);
		snprintf(rel, sizeof(rel), "regions/%s/mmap", regions[i]);
		if (cfs_write(rel, "auto"))
			die("mmap auto");
	}
	if (cfs_write("mediator", ""))
		die("detach mediator");
}

/* -- random values --------------------------------------------------- */

static const char *const bad_ranges[] = {
	"", "-", "+", "0x", "0x10-0x1", "5+0", "+5", " 0x100-0x200",
	"0x100-0x200 ", "0x1000000000000000000-0x1", "18446744073709551615+2",
	"0x10000000000-0x10000000001", "0x100--0x200", "0x100+-4", "0X1g0+4",
	"0x200000+0x10", "0xffffffffff+1",
};

/* A range in region @reg that keeps out of the guarded bytes. */
static void pick_range(struct rng *r, unsigned int reg, char *buf, size_t n)
{
	uint64_t size = fz.dev.region_size[reg], start, len;
	uint64_t lo = 0;

	if (chance(r, 10)) {
		snprintf(buf, n, "%s",
			 bad_ranges[below(r, sizeof(bad_ranges) / sizeof(bad_ranges[0]))]);
		return;
	}
	if (reg == 0)
		lo = ZONE_END;
	if (!size || size <= lo)
		size = lo + 0x10000;	/* a region it lacks: ERANGE */
	start = lo + below(r, size - lo);
	len = chance(r, 50) ? below(r, 16) + 1 : below(r, 0x2000) + 1;
	if (reg == VFIO_PCI_CONFIG_REGION_INDEX && fz.ep.cls.on &&
	    start <= CFG_CLS && start + len > CFG_CLS)
		start = CFG_CLS + 1;
	if (reg == VFIO_PCI_CONFIG_REGION_INDEX && fz.ep.msi_guard &&
	    start < fz.msi_cap + MSI_CAP_LEN && start + len > fz.msi_cap)
		start = fz.msi_cap + MSI_CAP_LEN;
	if (chance(r, 50))
		snprintf(buf, n, "0x%llx+0x%llx", (unsigned long long)start,
			 (unsigned long long)len);
	else
		snprintf(buf, n, "%llu-%llu", (unsigned long long)start,
			 (unsigned long long)(start + len - 1));
}

static const char *pick(struct rng *r, const char *const *v, unsigned int n)
{
	return v[below(r, n)];
}

#define PICK(r, ...) ({ \
	static const char *const _v[] = { __VA_ARGS__ }; \
	pick(r, _v, sizeof(_v) / sizeof(_v[0])); })

/* Mostly the regions edu has (bar0, config): rules elsewhere never apply. */
static unsigned int pick_region(struct rng *r)
{
	static const unsigned int w[] = {
		0, 0, 0, 0, 0, 0, 7, 7, 7, 0, 0, 7, 7, 6, 1, 2, 8,
	};

	return w[below(r, sizeof(w) / sizeof(w[0]))];
}

static void mediator_args(struct rng *r, char *buf, size_t n)
{
	uint64_t size = fz.dev.region_size[0], start, len;

	switch (below(r, 5)) {
	case 0:
		snprintf(buf, n, "%s", PICK(r, "", "regions=bar0",
			 "regions=config,bar0", "regions=rom", "regions=vga",
			 "regions=bogus", "bar=7,range=0+4", "bar=0", "x"));
		return;
	case 1:
		snprintf(buf, n, "bar=%llu,range=0x%llx+0x%llx",
			 (unsigned long long)below(r, 6),
			 (unsigned long long)(rnd(r) >> below(r, 64)),
			 (unsigned long long)(rnd(r) >> below(r, 64)));
		return;
	}
	/* a window of BAR0 out of the zone, longer than any guard */
	start = ZONE_END + below(r, size - ZONE_END - 16);
	len = 16 + below(r, 0x2000);
	if (start + len > size)
		len = size - start;
	snprintf(buf, n, "bar=0,range=0x%llx+0x%llx", (unsigned long long)start,
		 (unsigned long long)len);
}

/* -- the configfs thread -------------------------------------------- */

static int rule_attr(struct rng *r)
{
	char rel[256], val[128];
	unsigned int reg = pick_region(r);
	const char *attr;

	switch (below(r, 4)) {
	case 0:
		attr = "range";
		pick_range(r, reg, val, sizeof(val));
		break;
	case 1:
		attr = "action";
		snprintf(val, sizeof(val), "%s", PICK(r, "pass", "trap", "ro",
			 "deny", "ignore", "Deny", "pass "));
		break;
	case 2:
		attr = "access";
		snprintf(val, sizeof(val), "%s", PICK(r, "r", "w", "rw", "wr", ""));
		break;
	default:
		attr = "audit";
		snprintf(val, sizeof(val), "%s", PICK(r, "0", "1", "2", "yes"));
		break;
	}
	snprintf(rel, sizeof(rel), "regions/%s/rules/r%u/%s", regions[reg],
		 (unsigned int)below(r, 6), attr);
	return cfs_write(rel, val);
}

/*
 * A rule made whole at once, most of the time: a rule without a range
 * fails every apply and open (failing closed), which would leave live
 * apply little to do.
 */
static int new_rule(struct rng *r)
{
	unsigned int reg = pick_region(r), n = below(r, 6);
	char rel[256], val[128];
	int err;

	snprintf(rel, sizeof(rel), "regions/%s/rules/r%u", regions[reg], n);
	err = cfs_mkdir(rel);
	if (err || chance(r, 20))
		return err;
	pick_range(r, reg, val, sizeof(val));
	snprintf(rel, sizeof(rel), "regions/%s/rules/r%u/range", regions[reg], n);
	cfs_write(rel, val);
	snprintf(rel, sizeof(rel), "regions/%s/rules/r%u/action", regions[reg], n);
	return cfs_write(rel, PICK(r, "pass", "trap", "ro", "deny", "ignore"));
}

static int read_something(struct rng *r)
{
	char rel[256], buf[4096];

	snprintf(rel, sizeof(rel), "%s", PICK(r, "state", "pending", "error",
		 "generation", "warning", "isolation", "table_bytes",
		 "compile_ns", "mediator", "mediator_args", "mediator_state"));
	if (chance(r, 20))
		snprintf(rel, sizeof(rel), "regions/%s/rules/r%u/hits",
			 regions[pick_region(r)], (unsigned int)below(r, 6));
	return cfs_read(rel, buf, sizeof(buf));
}

/* One random change (or read) of the staged configuration. */
static void cfs_step(struct rng *r, struct stats *st)
{
	char rel[256], val[256];
	unsigned int k = below(r, 100);
	enum op op = OP_CFS;
	int err;

	if (k < 20) {
		err = new_rule(r);
	} else if (k < 55) {
		err = rule_attr(r);
	} else if (k < 65) {
		snprintf(rel, sizeof(rel), "regions/%s/rules/r%u",
			 regions[pick_region(r)], (unsigned int)below(r, 6));
		err = cfs_rmdir(rel);
	} else if (k < 77 && fz.ep.mig_window) {
		/* the epoch's regshadow stays: loads have known outcomes */
		err = read_something(r);
	} else if (k < 71) {
		err = cfs_write("mediator", PICK(r, "", "nop", "audit",
				"regshadow", "devread", "nosuch", "Audit"));
	} else if (k < 77) {
		mediator_args(r, val, sizeof(val));
		err = cfs_write("mediator_args", val);
	} else if (k < 80) {
		snprintf(rel, sizeof(rel), "regions/%s/mmap",
			 regions[pick_region(r)]);
		err = cfs_write(rel, PICK(r, "auto", "off", "on"));
	} else if (k < 92) {
		op = OP_APPLY;
		err = cfs_write("apply", chance(r, 95) ? "1" : "0");
	} else {
		err = read_something(r);
	}
	tally_add(&st->t[op], err);
}

void cfs_random(struct rng *r, struct stats *st, unsigned int steps)
{
	while (steps--)
		cfs_step(r, st);
}

void cfs_epoch(struct rng *r, struct stats *st)
{
	while (!atomic_load(&fz.stop_epoch) && !count_call())
		cfs_step(r, st);
}

/* -- the open/close thread ------------------------------------------- */

/*
 * More fds of the same device, each used a little and closed; the
 * epoch's own fd keeps the device open meanwhile, so its state must say
 * so. (The device's last close and next open, which compile the table,
 * happen at every epoch's end and start.)
 */
void reopen_epoch(struct rng *r, struct stats *st)
{
	char state[64];
	int fd;

	while (!atomic_load(&fz.stop_epoch) && !count_call()) {
		fd = ioctl(fz.dev.group, VFIO_GROUP_GET_DEVICE_FD, fz.bdf);
		tally_add(&st->t[OP_REOPEN], fd < 0 ? errno : 0);
		if (fd < 0) {
			wrong("a second fd of the open device: %s", errname(errno));
			continue;
		}
		read_sentinel(fd, r, st);
		close(fd);
		check_cls();
		/* an open costs little: leave the calls to the others */
		usleep(2000);
		if (chance(r, 20) && !cfs_read("state", state, sizeof(state)) &&
		    strcmp(state, "open\n"))
			wrong("state reads \"%.*s\" while the device is open",
			      (int)strcspn(state, "\n"), state);
	}
}
