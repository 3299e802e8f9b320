// SPDX-License-Identifier: GPL-2.0
/*
 * vfmfuzz: structured random uAPI calls against an edu function bound to
 * vfmediate (issue 16, item 2), as root in a test guest:
 *
 *   vfmfuzz [-s SEED] [-n CALLS] [-t SECONDS] [-j THREADS] [-e EPOCH]
 *           [-m] [-L MS] [-v] GROUP BDF
 *
 * The run is a series of epochs. Each starts with the device closed: the
 * controller writes random values into four sentinel registers of edu's
 * BAR0 (liveness 0x04 and the DMA registers 0x80, 0x88, 0x90, which only
 * the VFIO user's writes change), then gives each sentinel a role for the
 * epoch: a guard (a rule with action ro, deny or ignore, access w or rw,
 * over its 4 or 8 bytes), a witness (no rule; written only by writes that
 * also touch a ro or deny byte) or free; maybe a guard on the MSI
 * capability, maybe one on config space's cache line size (a byte
 * vfio-pci-core writes through to the device: the open/close thread
 * reads the device's own value from sysfs, a path no rule covers, all
 * along); random other rules and a mediator. It opens the device
 * (which compiles the table) and lets go:
 *
 *   - THREADS fuzz threads: pread/pwrite at random places and sizes
 *     (region edges, index bits, huge offsets and lengths), every VFIO
 *     device ioctl with random argsz, flags, indexes and payloads
 *     (SET_IRQS, IOEVENTFD, FEATURE, resets, hot reset, infos, and random
 *     ioctl numbers), mmap/munmap/mremap/fork and accesses through the
 *     mappings (ops.c);
 *   - a configfs thread: random rules, actions, mediators and arguments,
 *     mmap off, invalid values, live applies (cfs.c);
 *   - an open/close thread: more fds of the device, opened, used, closed.
 *
 * After EPOCH calls (all threads together) the threads stop and unmap,
 * the controller removes every rule, either by a live apply or by a
 * close and reopen (at random), and reads the sentinels back through the
 * device file, now without rules: each guard and witness must hold the
 * value it was given (or the value a reset gives it, if a reset ran).
 * While the epoch runs, every result whose outcome the documentation
 * defines is checked as it comes (ops.c: check_read(), check_write()):
 * accesses to guarded bytes fail with EACCES or EPERM or read zeros as
 * their action says, accesses inside the guard zone that meet no refusing
 * guard succeed whole, sentinel reads return their values, nothing
 * succeeds past a region's end, no mmap or sparse area reaches a guarded
 * page, IOEVENTFD and SET_IRQS fail with EPERM while a guard forbids
 * them, and no feature outside the allowlist succeeds.
 *
 * Each thread draws from its own generator, seeded from SEED, the epoch
 * and the thread: a thread's calls repeat with the seed; their
 * interleaving does not (-j 1 makes a run nearly repeatable).
 *
 * With -m the function offers VFIO migration (it was bound with
 * regshadow attached): the fuzz threads also make checked state
 * transitions and use every data fd they return, and most epochs run
 * with regshadow over the guard zone, so that loads of streams saved
 * earlier (or forged) may succeed where no guard is in their way (mig.c).
 *
 * -L MS, for a test of the fuzzer itself: the open/close thread starts
 * each epoch MS milliseconds after the others (as a thread the scheduler
 * holds back may), so that a budget used up early in an epoch finds it
 * not yet started.
 *
 * Unbinding, rebinding and VF removal are not done here: the removal
 * race tests (issue 16, item 3) cover them.
 *
 * Prints "seed=..." first, "WRONG: ..." for each failed check, and last
 * "result: calls=N epochs=N seconds=N wrong=N" (with -m, migration's
 * counts: mig_print()) after a table of outcomes
 * per call. Exit status 0: no wrong result; 1: some; 3: the fuzzer could
 * not run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fuzz.h"

struct fuzz fz;

static struct timespec t0;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

#define MAX_WRONG_SHOWN	50

static double elapsed(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9;
}

void rng_seed(struct rng *r, uint64_t seed, uint64_t epoch, uint64_t who)
{
	r->s = seed ^ (epoch * 0x9e3779b97f4a7c15ULL) ^ (who << 56);
	rnd(r);
}

bool count_call(void)
{
	unsigned long n = atomic_fetch_add(&fz.calls, 1) + 1;

	/* every 64 calls: a slow kernel's slice keeps close to its limit */
	if (n >= fz.budget || (fz.seconds && (n & 63) == 0 &&
			       elapsed() >= fz.seconds))
		atomic_store(&fz.done, true);
	return atomic_load(&fz.done);
}

void wrong(const char *fmt, ...)
{
	unsigned long n = atomic_fetch_add(&fz.wrong, 1);
	va_list ap;

	if (n >= MAX_WRONG_SHOWN)
		return;
	pthread_mutex_lock(&out_lock);
	printf("WRONG: epoch %lu call ~%lu: ", fz.ep.n, atomic_load(&fz.calls));
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
}

/* -- the device ------------------------------------------------------ */

static int open_fd(void)
{
	return ioctl(fz.dev.group, VFIO_GROUP_GET_DEVICE_FD, fz.bdf);
}

static uint32_t rd32(uint64_t pos)
{
	uint32_t v = 0;

	if (pread(fz.fd, &v, 4, pos) != 4)
		die("pread");
	return v;
}

static void wr32(uint64_t pos, uint32_t v)
{
	if (pwrite(fz.fd, &v, 4, pos) != 4)
		die("pwrite");
}

#define CFG(off)	(((uint64_t)VFIO_PCI_CONFIG_REGION_INDEX << 40) + (off))

/* What a fuzzed epoch may have left: low power, memory decoding off. */
static void revive(void)
{
	struct vfio_device_feature f = {
		.argsz = sizeof(f),
		.flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_EXIT,
	};
	uint16_t cmd = 0;

	ioctl(fz.fd, VFIO_DEVICE_FEATURE, &f);
	if (pread(fz.fd, &cmd, 2, CFG(CFG_COMMAND)) != 2)
		die("read command register");
	if (!(cmd & 0x2)) {
		cmd |= 0x2;
		if (pwrite(fz.fd, &cmd, 2, CFG(CFG_COMMAND)) != 2)
			die("write command register");
	}
	if (rd32(0) != EDU_ID_VALUE)
		wrong("edu's ID register reads 0x%08x without rules", rd32(0));
}

static const uint32_t sentinel_offs[NSENT] = { 0x04, 0x80, 0x88, 0x90 };

/* Random values into the sentinels (no rules now); v0 as read back. */
static void set_sentinels(struct rng *r)
{
	unsigned int i;

	for (i = 0; i < NSENT; i++) {
		fz.ep.s[i].off = sentinel_offs[i];
		wr32(fz.ep.s[i].off, rnd(r));
		fz.ep.s[i].v0 = rd32(fz.ep.s[i].off);
	}
}

uint8_t sysfs_cls(void)
{
	char path[300];
	uint8_t v;
	int fd;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/config", fz.bdf);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || pread(fd, &v, 1, CFG_CLS) != 1)
		die(path);
	close(fd);
	return v;
}

void check_cls(void)
{
	uint8_t v;

	if (!fz.ep.cls.on)
		return;
	v = sysfs_cls();
	if (v != fz.ep.cls.v0)
		wrong("guarded config byte 0x%x changed on the device: 0x%02x, set to 0x%02x",
		      CFG_CLS, v, fz.ep.cls.v0);
}

/*
 * What VFIO_DEVICE_RESET does to the sentinels: nothing (the emulated
 * edu keeps them), or their reset values.
 */
static void measure_reset(struct rng *r)
{
	unsigned int i;

	set_sentinels(r);
	if (ioctl(fz.fd, VFIO_DEVICE_RESET) < 0) {
		printf("reset: %s (resets cannot change the sentinels)\n",
		       errname(errno));
		return;
	}
	revive();
	for (i = 0; i < NSENT; i++) {
		fz.ep.s[i].reset = rd32(fz.ep.s[i].off);
		if (fz.ep.s[i].reset != fz.ep.s[i].v0)
			fz.reset_known = true;
	}
	printf("reset: %s\n", fz.reset_known ?
	       "changes the sentinels to their reset values" :
	       "keeps the sentinels");
	if (!fz.reset_known)
		return;
	/* reset values must not depend on what was written before */
	set_sentinels(r);
	ioctl(fz.fd, VFIO_DEVICE_RESET);
	revive();
	for (i = 0; i < NSENT; i++)
		if (rd32(fz.ep.s[i].off) != fz.ep.s[i].reset)
			die("reset values vary");
}

/*
 * Migratability is decided at bind and stays while the function is bound
 * (kmod/migrate.c): the directory made again here says so, and the
 * feature is there exactly with -m, STOP_COPY only.
 */
static void check_migration(void)
{
	uint64_t a[2] = { 0 };
	struct vfio_device_feature *f = (void *)a;
	char path[300], state[32] = "";
	int fd, err;

	f->argsz = sizeof(a);
	f->flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION;
	err = xioctl(fz.fd, VFIO_DEVICE_FEATURE, f);
	if (fz.mig ? err || a[1] != VFIO_MIGRATION_STOP_COPY : err != ENOTTY)
		wrong("GET MIGRATION: %s, flags 0x%llx (-m %s)", errname(err),
		      (unsigned long long)a[1], fz.mig ? "given" : "not given");
	snprintf(path, sizeof(path), "%s/migration", fz.cfs);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, state, sizeof(state) - 1) < 0)
		die(path);
	close(fd);
	if (strcmp(state, fz.mig ? "running\n" : "none\n"))
		wrong("configfs migration reads %s", state);
}

/* -- epochs ---------------------------------------------------------- */

static const char *const action_names[] = { "ro", "deny", "ignore" };

static void write_rule(const char *region, const char *name, uint64_t start,
		       uint64_t len, const char *access, const char *action)
{
	char rel[256], val[64];

	snprintf(rel, sizeof(rel), "regions/%s/rules/%s", region, name);
	if (cfs_mkdir(rel))
		die("mkdir guard");
	snprintf(val, sizeof(val), "0x%llx+0x%llx", (unsigned long long)start,
		 (unsigned long long)len);
	snprintf(rel, sizeof(rel), "regions/%s/rules/%s/range", region, name);
	if (cfs_write(rel, val))
		die("guard range");
	snprintf(rel, sizeof(rel), "regions/%s/rules/%s/access", region, name);
	if (cfs_write(rel, access))
		die("guard access");
	snprintf(rel, sizeof(rel), "regions/%s/rules/%s/action", region, name);
	if (cfs_write(rel, action))
		die("guard action");
}

static void pick_roles(struct rng *r)
{
	struct epoch *ep = &fz.ep;
	unsigned int i;

	ep->guarded = chance(r, 80);
	ep->bar_write_rule = false;
	for (i = 0; i < NSENT; i++) {
		struct sentinel *s = &ep->s[i];

		s->role = FREE;
		if (!ep->guarded)
			continue;
		s->role = chance(r, 45) ? GUARD : chance(r, 50) ? WITNESS : FREE;
		s->action = below(r, 3);
		s->reads = chance(r, 50);
		s->len = chance(r, 30) ? 8 : 4;
	}
	if (ep->guarded) {
		/* at least one guard */
		ep->s[below(r, NSENT)].role = GUARD;
		ep->bar_write_rule = true;
	}
	ep->msi_guard = fz.msi_cap && chance(r, 30);
	ep->cls.on = chance(r, 50);
	ep->cls.action = below(r, 3);
	ep->cls.reads = chance(r, 50);
}

static void write_guards(struct rng *r)
{
	unsigned int i;
	char name[16];

	for (i = 0; i < NSENT; i++) {
		const struct sentinel *s = &fz.ep.s[i];

		if (s->role != GUARD)
			continue;
		snprintf(name, sizeof(name), "g%u", i);
		write_rule("bar0", name, s->off, s->len, s->reads ? "rw" : "w",
			   action_names[s->action]);
	}
	if (fz.ep.cls.on)
		write_rule("config", "clsg", CFG_CLS, 1,
			   fz.ep.cls.reads ? "rw" : "w",
			   action_names[fz.ep.cls.action]);
	if (fz.ep.msi_guard)
		write_rule("config", "msig", fz.msi_cap + below(r, 10),
			   below(r, 4) + 1, "w", action_names[below(r, 3)]);
}

static void describe_epoch(void)
{
	static const char *const roles[] = { "free", "guard", "witness" };
	unsigned int i;

	if (!fz.verbose)
		return;
	printf("epoch %lu:", fz.ep.n);
	for (i = 0; i < NSENT; i++) {
		const struct sentinel *s = &fz.ep.s[i];

		printf(" 0x%02x=%s", s->off, roles[s->role]);
		if (s->role == GUARD)
			printf("(%s,%s,%u)", action_names[s->action],
			       s->reads ? "rw" : "w", s->len);
	}
	if (fz.ep.cls.on)
		printf(" cls=guard(%s,%s)", action_names[fz.ep.cls.action],
		       fz.ep.cls.reads ? "rw" : "w");
	printf("%s\n", fz.ep.msi_guard ? " msi=guard" : "");
	fflush(stdout);
}

/*
 * -m: regshadow over the guard zone for most epochs (the configfs thread
 * then leaves the mediator alone, cfs.c), so that a load's outcome is
 * known; the others run with the configfs thread's mediators.
 */
static void attach_window(void)
{
	if (!fz.ep.mig_window)
		return;
	if (cfs_write("mediator", "regshadow") ||
	    cfs_write("mediator_args", "bar=0,range=0x0-0xff"))
		die("attach regshadow");
}

/* One read alone at each of a few places of BAR0 (see start_epoch()). */
static void first_accesses(void)
{
	const uint64_t size = fz.dev.region_size[0];
	const uint64_t at[] = { 0x100, 0x1000, size / 2, size - 4 };
	uint32_t v;
	unsigned int i;

	for (i = 0; i < NSENT; i++)
		if (pread(fz.fd, &v, 4, fz.ep.s[i].off) < 0)
			continue;
	for (i = 0; i < sizeof(at) / sizeof(at[0]); i++)
		if (pread(fz.fd, &v, 4, at[i]) < 0)
			continue;
}

/* The device is open without rules on entry; open with the epoch's. */
static void start_epoch(struct rng *r, struct stats *st)
{
	revive();
	set_sentinels(r);
	close(fz.fd);
	pick_roles(r);
	write_guards(r);
	cfs_random(r, st, below(r, 12));
	fz.ep.mig_window = fz.mig && chance(r, 75);
	attach_window();
	describe_epoch();
	fz.fd = open_fd();
	tally_add(&st->t[OP_REOPEN], fz.fd < 0 ? errno : 0);
	if (fz.fd >= 0)
		goto opened;
	/* the random part may not open (fails closed): the guards must */
	cfs_purge();
	write_guards(r);
	attach_window();
	fz.fd = open_fd();
	if (fz.fd < 0) {
		wrong("open with the epoch's guards alone: %s", errname(errno));
		cfs_purge();
		fz.fd = open_fd();
		if (fz.fd < 0)
			die("open without rules");
		pick_roles(r);
		memset(fz.ep.s, 0, sizeof(fz.ep.s));
		fz.ep.cls.on = fz.ep.msi_guard = fz.ep.mig_window = false;
	}
opened:
	/*
	 * vfio-pci-core maps a BAR at its first access after an open, without
	 * a lock: two first accesses at once make the second fail with EBUSY
	 * (vfio_pci_core_setup_barmap() requests the region twice), under
	 * vfio-pci as under vfmediate. Make the first accesses here, alone.
	 * Not one: an access a mediator traps (regshadow's window, -m) goes
	 * through vfmediate's own mapping and leaves vfio-pci-core's unmade,
	 * so read at places different rules may send different ways (the
	 * sentinels, outside the zone); failures do not matter here.
	 */
	first_accesses();
	if (rd32(0) != EDU_ID_VALUE)
		wrong("edu's ID register reads 0x%08x at the epoch's open", rd32(0));
	/*
	 * Not a value of ours: vfio-pci-core restores config space at each
	 * close to what it was at the open.
	 */
	fz.ep.cls.v0 = sysfs_cls();
	atomic_store(&fz.ep.reset_seen, false);
	atomic_store(&fz.stop_epoch, false);
	mig_epoch_start();
}

/* Rules off (live or by reopening), then the guards' and witnesses' values. */
static void end_epoch(struct rng *r, struct stats *st)
{
	unsigned int i;
	int err;

	/* before the close: it restores config space to the open's */
	check_cls();
	if (chance(r, 50)) {
		cfs_purge();
		err = cfs_write("apply", "1");
		tally_add(&st->t[OP_APPLY], err);
		if (err)
			wrong("live apply of no rules: %s", errname(err));
	} else {
		close(fz.fd);
		cfs_purge();
		fz.fd = open_fd();
		if (fz.fd < 0)
			die("reopen without rules");
	}
	revive();
	for (i = 0; i < NSENT; i++) {
		const struct sentinel *s = &fz.ep.s[i];
		uint32_t v;

		if (s->role == FREE)
			continue;
		v = rd32(s->off);
		if (!sentinel_ok(s, v))
			wrong("%s sentinel bar0+0x%x changed: 0x%08x, set to 0x%08x",
			      s->role == GUARD ? "guarded" : "witness", s->off,
			      v, s->v0);
	}
}

/* -- threads --------------------------------------------------------- */

enum kind { FUZZER, CONFIGFS, OPENER };

struct thread {
	pthread_t tid;
	enum kind kind;
	unsigned int who;
	struct stats st;
};

static void *thread_main(void *arg)
{
	struct thread *t = arg;
	struct rng r;

	fault_handler_init();
	for (;;) {
		pthread_barrier_wait(&fz.start);
		if (fz.late_ms && t->kind == OPENER)
			usleep(fz.late_ms * 1000);
		/*
		 * Not fz.done: another thread may use up the budget before
		 * this one gets here, and the controller then waits for
		 * this one at the epoch's end.
		 */
		if (atomic_load(&fz.quit))
			return NULL;
		rng_seed(&r, fz.seed, fz.ep.n, t->who + 1);
		if (t->kind == FUZZER)
			fuzz_epoch(&r, &t->st, t->who);
		else if (t->kind == CONFIGFS)
			cfs_epoch(&r, &t->st);
		else
			reopen_epoch(&r, &t->st);
		pthread_barrier_wait(&fz.end);
	}
}

/*
 * No call for a minute: say where each thread is, in the fuzzer (ops.c's
 * index of its call) and in the kernel (its stack), once.
 */
static void stall_report(void)
{
	char path[300], buf[4096];
	struct dirent *de;
	unsigned int i;
	DIR *dir;
	ssize_t n;
	int fd;

	printf("STALL: no call for 60 s at call %lu; controller: %s; threads doing:",
	       atomic_load(&fz.calls), atomic_load(&fz.phase));
	for (i = 0; i < fz.threads; i++)
		printf(" %d", atomic_load(&doing[i]));
	printf("\n");
	dir = opendir("/proc/self/task");
	while (dir && (de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/stack", de->d_name);
		fd = open(path, O_RDONLY);
		n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
		if (fd >= 0)
			close(fd);
		buf[n > 0 ? n : 0] = 0;
		printf("STALL: task %s:\n%s", de->d_name, buf);
	}
	if (dir)
		closedir(dir);
	fflush(stdout);
}

/*
 * A thread watching for a stall (a hang anywhere stops every call), until
 * the run has ended: the way out after the last call (joins, the last
 * close, the clean-up) takes well under a minute too.
 */
static void *watchdog(void *arg)
{
	unsigned long last = ~0UL, still = 0;

	(void)arg;
	while (!atomic_load(&fz.finished)) {
		sleep(2);
		if (atomic_load(&fz.calls) != last) {
			last = atomic_load(&fz.calls);
			still = 0;
		} else if (++still == 30) {
			stall_report();
		}
	}
	return NULL;
}

/* Wait for the epoch's calls, or a device stuck in RESUMING (its last close frees it). */
static void wait_epoch(unsigned long mark)
{
	while (!atomic_load(&fz.done) &&
	       atomic_load(&fz.calls) - mark < fz.epoch_calls && !mig_stuck())
		usleep(2000);
}

/* The controller: epochs until the budget or the time is used up. */
static void run(struct thread *th, unsigned int nth, struct stats *st)
{
	struct rng r;
	unsigned long mark;

	while (!atomic_load(&fz.done)) {
		rng_seed(&r, fz.seed, fz.ep.n, 0);
		atomic_store(&fz.phase, "starting an epoch");
		start_epoch(&r, st);
		mark = atomic_load(&fz.calls);
		pthread_barrier_wait(&fz.start);
		atomic_store(&fz.phase, "waiting for the epoch's calls");
		wait_epoch(mark);
		atomic_store(&fz.stop_epoch, true);
		atomic_store(&fz.phase, "waiting for the threads to end the epoch");
		pthread_barrier_wait(&fz.end);
		atomic_store(&fz.phase, "ending an epoch");
		end_epoch(&r, st);
		fz.ep.n++;
		if (atomic_load(&fz.calls) / 100000 != mark / 100000)
			printf("progress: calls=%lu epochs=%lu seconds=%.0f wrong=%lu\n",
			       atomic_load(&fz.calls), fz.ep.n, elapsed(),
			       atomic_load(&fz.wrong));
	}
	atomic_store(&fz.phase, "joining the threads");
	atomic_store(&fz.quit, true);
	pthread_barrier_wait(&fz.start);	/* releases them to exit */
	while (nth--)
		pthread_join(th[nth].tid, NULL);
}

static void print_stats(struct thread *th, unsigned int nth, struct stats *st)
{
	unsigned int i, op;

	for (i = 0; i < nth; i++)
		for (op = 0; op < NOPS; op++) {
			unsigned int e;

			for (e = 0; e < 256; e++)
				st->t[op].by_errno[e] += th[i].st.t[op].by_errno[e];
		}
	for (op = 0; op < NOPS; op++) {
		printf("  %-15s", op_names[op]);
		tally_print(&st->t[op]);
		printf("\n");
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: vfmfuzz [-s SEED] [-n CALLS] [-t SECONDS] "
		"[-j THREADS] [-e EPOCH] [-m] [-L MS] [-v] GROUP BDF\n");
	exit(EXIT_BROKEN);
}

static void parse(int argc, char **argv)
{
	int c;

	fz.seed = time(NULL) ^ ((uint64_t)getpid() << 32);
	fz.budget = 100000;
	fz.threads = 3;
	fz.epoch_calls = 5000;
	while ((c = getopt(argc, argv, "s:n:t:j:e:mL:v")) != -1) {
		switch (c) {
		case 's': fz.seed = strtoull(optarg, NULL, 0); break;
		case 'n': fz.budget = strtoul(optarg, NULL, 0); break;
		case 't': fz.seconds = strtoul(optarg, NULL, 0); break;
		case 'j': fz.threads = strtoul(optarg, NULL, 0); break;
		case 'e': fz.epoch_calls = strtoul(optarg, NULL, 0); break;
		case 'm': fz.mig = true; break;
		case 'L': fz.late_ms = strtoul(optarg, NULL, 0); break;
		case 'v': fz.verbose = true; break;
		default: usage();
		}
	}
	if (argc - optind != 2 || !fz.threads || !fz.epoch_calls || !fz.budget)
		usage();
	fz.group_path = argv[optind];
	fz.bdf = argv[optind + 1];
}

int main(int argc, char **argv)
{
	struct thread *th;
	struct stats *st = calloc(1, sizeof(*st));
	unsigned int i, nth;
	struct rng r;
	pthread_t wd;

	parse(argc, argv);
	mig_init();
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("seed=0x%llx calls=%lu threads=%u epoch=%lu device=%s%s\n",
	       (unsigned long long)fz.seed, fz.budget, fz.threads,
	       fz.epoch_calls, fz.bdf, fz.mig ? " migration" : "");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	snprintf(fz.cfs, sizeof(fz.cfs), "/sys/kernel/config/vfmediate/devices/%s",
		 fz.bdf);
	if (mkdir(fz.cfs, 0755) && errno != EEXIST)
		die(fz.cfs);
	cfs_purge();
	vdev_open(&fz.dev, fz.group_path, fz.bdf);
	fz.fd = fz.dev.fd;
	if (fz.dev.region_size[0] < 0x100000 || rd32(0) != EDU_ID_VALUE)
		skip("not an edu device");
	fz.msi_cap = find_cap(&fz.dev, CAP_ID_MSI);
	check_migration();
	fault_handler_init();
	rng_seed(&r, fz.seed, ~0ULL, 0);
	measure_reset(&r);

	nth = fz.threads + 2;
	th = calloc(nth, sizeof(*th));
	if (!st || !th)
		die("calloc");
	pthread_barrier_init(&fz.start, NULL, nth + 1);
	pthread_barrier_init(&fz.end, NULL, nth + 1);
	for (i = 0; i < nth; i++) {
		th[i].who = i;
		th[i].kind = i < fz.threads ? FUZZER :
			     i == fz.threads ? CONFIGFS : OPENER;
		errno = pthread_create(&th[i].tid, NULL, thread_main, &th[i]);
		if (errno)
			die("pthread_create");
	}
	atomic_store(&fz.phase, "starting");
	errno = pthread_create(&wd, NULL, watchdog, NULL);
	if (errno)
		die("pthread_create");
	pthread_detach(wd);
	run(th, nth, st);
	atomic_store(&fz.phase, "closing the device");
	close(fz.fd);
	atomic_store(&fz.phase, "emptying configfs");
	cfs_purge();
	if (rmdir(fz.cfs))
		die("rmdir device directory");
	atomic_store(&fz.phase, "closing the data fds");
	mig_finish();
	atomic_store(&fz.finished, true);
	print_stats(th, nth, st);
	printf("result: seed=0x%llx calls=%lu epochs=%lu seconds=%.0f wrong=%lu",
	       (unsigned long long)fz.seed, atomic_load(&fz.calls), fz.ep.n,
	       elapsed(), atomic_load(&fz.wrong));
	mig_print();
	printf("\n");
	return atomic_load(&fz.wrong) ? 1 : 0;
}
