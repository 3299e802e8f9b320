/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vfmfuzz: a uAPI fuzzer for a device bound to vfmediate (issue 16,
 * item 2). See vfmfuzz.c for what it does and checks.
 *
 * Built with: cc -O2 -Wall -Wextra -Werror -pthread tests/fuzz/\*.c
 * tests/attack/common.c
 */
#ifndef VFM_FUZZ_H
#define VFM_FUZZ_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "../attack/common.h"

/* A small PRNG (splitmix64): one per thread, seeded from the run's seed. */
struct rng {
	uint64_t s;
};

static inline uint64_t rnd(struct rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static inline uint64_t below(struct rng *r, uint64_t n)
{
	return n ? rnd(r) % n : 0;
}

static inline bool chance(struct rng *r, unsigned int percent)
{
	return below(r, 100) < percent;
}

void rng_seed(struct rng *r, uint64_t seed, uint64_t epoch, uint64_t who);

/*
 * The guard zone: the first 0x100 bytes of edu's BAR0. Only the epoch's
 * guard rules cover it (the configfs thread's random rules and mediator
 * windows stay out), so every access inside it has one documented
 * outcome. Its sentinels are registers that only the VFIO user's writes
 * change (edu's liveness and DMA address and count registers; DMA never
 * starts, see hazard_fix()).
 */
#define ZONE_END	0x100
#define NSENT		4
#define EDU_ID_VALUE	0x010000edu
#define CFG_CLS		0x0c	/* cache line size */

enum role { FREE, GUARD, WITNESS };

/*
 * Values a witness may hold besides its epoch's value: a migration load
 * may legitimately write it (no rule guards it), so each stream that
 * could be loaded adds, before anyone can load it, the values the load
 * would leave (mig.c). Past NCAND of them the witness goes unchecked
 * for the rest of the epoch ("loose", counted).
 */
#define NCAND		48
enum action { A_RO, A_DENY, A_IGNORE };

struct sentinel {
	uint32_t off;		/* dword in BAR0 */
	enum role role;
	enum action action;	/* GUARD */
	bool reads;		/* GUARD: access rw, not w */
	uint32_t len;		/* GUARD: 4 or 8 bytes from off */
	uint32_t v0;		/* value at the epoch's start */
	uint32_t reset;		/* value after a reset (reset_known) */
	_Atomic uint32_t cand[NCAND];	/* WITNESS: values loads may leave */
	atomic_uint ncand;
	atomic_bool loose;
};

/* What one epoch runs with; fixed while its fuzz threads run. */
struct epoch {
	unsigned long n;
	bool guarded;		/* some sentinel has a guard */
	bool bar_write_rule;	/* a guard refuses or drops writes: no ioeventfd */
	bool msi_guard;		/* a ro/deny/ignore rule on edu's MSI capability */
	/*
	 * A guard on config space's cache line size, a byte vfio-pci-core
	 * writes through to the device: checked on the device itself, from
	 * sysfs, a path no rule covers, while the epoch runs and at its end.
	 */
	struct {
		bool on;
		enum action action;
		bool reads;
		uint8_t v0;
	} cls;
	struct sentinel s[NSENT];
	/*
	 * -m: regshadow shadows the guard zone (bar=0,range=0x0-0xff) for the
	 * whole epoch, and the configfs thread leaves the mediator alone, so
	 * that a load's outcome is known (mig.c). Otherwise the mediator is
	 * the configfs thread's, whatever it is.
	 */
	bool mig_window;
	atomic_bool reset_seen;	/* a reset succeeded in this epoch */
};

struct fuzz {
	/* options */
	uint64_t seed;
	unsigned long budget;	/* calls */
	unsigned int seconds;	/* 0: no time limit */
	unsigned int threads;
	unsigned long epoch_calls;
	const char *group_path;
	const char *bdf;
	bool verbose;
	bool mig;		/* -m: the function offers VFIO migration */
	unsigned int late_ms;	/* -L: the open/close thread starts late */

	struct vdev dev;	/* container, group, first fd, region layout */
	int fd;			/* the epoch's device fd */
	char cfs[256];		/* configfs device directory */
	unsigned int msi_cap;	/* 0: none */
	bool reset_known;	/* a reset changes the sentinels (to .reset) */

	struct epoch ep;
	atomic_ulong calls;
	atomic_ulong wrong;
	atomic_bool stop_epoch;	/* fuzz threads: finish the epoch */
	atomic_bool done;	/* budget or time used up */
	atomic_bool quit;	/* the controller: threads, leave */
	atomic_bool finished;	/* the run ended: the watchdog stops */
	const char *_Atomic phase;	/* what the controller does */
	pthread_barrier_t start, end;
};

extern struct fuzz fz;

/* Count one call; true when the run's budget is used up. */
bool count_call(void);
/* Report a result that contradicts the documented semantics. */
void wrong(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Per-thread outcome counts, added up at the end. */
enum op {
	OP_READ, OP_WRITE, OP_INFO, OP_REGION_INFO, OP_IRQ_INFO, OP_SET_IRQS,
	OP_RESET, OP_HOT_RESET_INFO, OP_HOT_RESET, OP_IOEVENTFD, OP_FEATURE,
	OP_RAW_IOCTL, OP_MMAP, OP_MUNMAP, OP_MREMAP, OP_FORK, OP_MMIO,
	OP_CFS, OP_APPLY, OP_REOPEN, OP_MIG, OP_DFD, NOPS
};

extern const char *const op_names[NOPS];

/* Each fuzz thread's call now (ops.c's index, -1: none), for a stall's report. */
extern atomic_int doing[64];

struct stats {
	struct tally t[NOPS];
};

/* The device's cache line size as sysfs reads it; checked if guarded. */
uint8_t sysfs_cls(void);
void check_cls(void);
/* ops.c: one fuzz thread's epoch; returns at stop_epoch. */
void fuzz_epoch(struct rng *r, struct stats *st, unsigned int who);
/* A sentinel read through @fd, checked (the open/close thread's fds). */
void read_sentinel(int fd, struct rng *r, struct stats *st);
/* SIGBUS/SIGSEGV of an access through a mapping: not fatal (ops.c). */
void fault_handler_init(void);
/* Make a BAR0 write safe for the emulated edu (no DMA, no IRQ storms). */
void hazard_fix(uint64_t off, uint8_t *buf, uint64_t len);
/* The guard over byte @b of BAR0, or NULL. */
const struct sentinel *guard_at(uint64_t b);
/* Whether a sentinel's dword may read @val now (resets, loads). */
bool sentinel_ok(const struct sentinel *s, uint32_t val);

/* mig.c: VFIO migration (-m). */
void mig_init(void);
/* At an epoch's start, the device just opened: RUNNING, nothing open. */
void mig_epoch_start(void);
/* The epoch is stuck in RESUMING (a refused load) for long: end it. */
bool mig_stuck(void);
/* Around a call that may change the migration state behind op_mig(). */
void mig_interfere_begin(void);
void mig_interfere_end(void);
/* A VFIO_DEVICE_FEATURE call's result: data fds, migration answers. */
void mig_feature_result(const struct vfio_device_feature *f, int err);
/* The fuzz threads' calls: a transition, and a data fd's call. */
void mig_op(struct rng *r, struct stats *st, uint8_t *buf);
void dfd_op(struct rng *r, struct stats *st, uint8_t *buf);
/* The end of the run: every data fd closed, none left. */
void mig_finish(void);
void mig_print(void);

/* cfs.c: configfs. */
int cfs_write(const char *rel, const char *val);
int cfs_mkdir(const char *rel);
int cfs_rmdir(const char *rel);
void cfs_purge(void);
/* @steps random changes of the staged configuration. */
void cfs_random(struct rng *r, struct stats *st, unsigned int steps);
/* The configfs thread's epoch: random rules, mediators, live applies. */
void cfs_epoch(struct rng *r, struct stats *st);
/* The open/close thread's epoch: more device fds, opened and closed. */
void reopen_epoch(struct rng *r, struct stats *st);

#endif
