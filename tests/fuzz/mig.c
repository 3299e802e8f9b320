// SPDX-License-Identifier: GPL-2.0
/*
 * VFIO migration (v2) for the fuzzer (-m): the function was bound with
 * regshadow attached, so it offers VFIO_DEVICE_FEATURE_MIGRATION
 * (STOP_COPY only) for as long as it stays bound, whatever its configfs
 * directory holds since (kmod/migrate.c, vfmediate-mediator(9)).
 *
 * mig_op() makes checked transitions: it holds the model lock for
 * writing, so that no call that may change the state (resets, random
 * features, random ioctls: they hold it for reading) runs meanwhile, and
 * GET must then say what the last SET left. Every data fd a SET returns,
 * from mig_op() or from a random VFIO_DEVICE_FEATURE, goes into a pool;
 * dfd_op() takes one out (a thread owns it while it uses it, so its
 * number is never closed under another thread), reads, writes, seeks,
 * polls, maps or closes it, and puts it back for any thread to take next.
 * A few are kept for many calls, past the end of their transfer and of
 * their epoch; all are closed at the end, and none may be left.
 *
 * Each RESUMING fd gets a plan when it is made: a stream replayed from
 * a STOP_COPY read earlier, one forged with a good CRC (over the guards
 * or not), or a truncated, corrupted, over-long, random or empty one.
 * Whoever holds the fd feeds it a chunk of its plan or random bytes, and
 * records what the kernel took, so that when RESUMING ends the fuzzer
 * knows what was loaded and asks oracle() what must happen: the header
 * and CRC as the core checks them, then, in an epoch whose regshadow
 * window is the guard zone (mig_window), regshadow's own checks and the
 * rule that a load restores no byte a guard keeps the user from writing
 * (EPERM). A load is a VFIO user's write, so it may change a witness:
 * each stream that could load adds the values it would leave to the
 * witnesses it covers before anyone can load it (sentinel_ok()), while
 * guards stay as strict as ever.
 *
 * A refused load leaves the device in RESUMING until its last close; an
 * epoch stuck there for STUCK_CALLS calls ends early (mig_stuck()), and
 * the next one starts RUNNING.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "fuzz.h"

#define HDR_LEN		56		/* struct vfm_mig_header */
#define RS_LEN		24		/* struct regshadow_state */
#define MIG_MAGIC	0x4d4d4656u	/* "VFMM" */
#define WIN_LEN		ZONE_END	/* mig_window: bar=0,range=0x0-0xff */
#define WIN_STREAM	(HDR_LEN + RS_LEN + 2 * WIN_LEN)
#define NDFD		12
#define NLIB		8
#define STREAM_MAX	(256 * 1024)
#define STUCK_CALLS	200
#define DPAGE		4096

#define S_RUNNING	VFIO_DEVICE_STATE_RUNNING
#define S_STOP		VFIO_DEVICE_STATE_STOP
#define S_STOP_COPY	VFIO_DEVICE_STATE_STOP_COPY
#define S_RESUMING	VFIO_DEVICE_STATE_RESUMING

/* A data fd in the pool. */
struct dfd {
	int fd;			/* -1: a free slot */
	bool save;		/* STOP_COPY's (read) or RESUMING's (written) */
	bool busy;		/* a thread holds it */
	bool ended;		/* it said ENODEV: its transfer ended */
	bool eof;		/* save: read() returned 0 */
	bool loaded;		/* resume: a load took its bytes (len 0 now) */
	bool exact;		/* buf holds every byte that went through it */
	unsigned long epoch;
	unsigned long keep;	/* not closed before this many calls */
	uint64_t serial;
	size_t cap;		/* resume: bytes it takes (0: unknown) */
	uint8_t *buf;		/* save: bytes read; resume: bytes written */
	size_t len;
	uint8_t *plan;		/* resume: the stream meant for it */
	size_t plan_len, fed;	/* fed: bytes of the plan handed out */
};

enum count {
	C_SET_OK, C_SET_REFUSED, C_LOAD_OK, C_LOAD_REFUSED, C_SAVES,
	C_READ, C_WRITTEN, C_OPENED, C_CLOSED, C_UNSTUCK, C_LOOSE, C_WVALUES,
	NCOUNT
};

static struct {
	pthread_mutex_t lock;	/* the pool, the library, witness candidates */
	struct dfd d[NDFD];
	struct {
		uint8_t *b;
		size_t len;
	} lib[NLIB];		/* streams read whole from STOP_COPY */
	unsigned int nlib, libnext;
	uint64_t serial;

	pthread_rwlock_t rw;	/* write: mig_op(); read: interferers */
	atomic_bool unknown;	/* an interferer ran since mig_op() looked */
	bool known;		/* under rw for writing: state is the device's */
	uint32_t state;
	uint64_t cur;		/* serial of the fd of mig_op()'s RESUMING */
	bool cur_exact;		/* nothing but mig_op() touched that transfer */
	atomic_bool stuck;
	atomic_ulong stuck_since;
	atomic_ulong n[NCOUNT];
	bool data_size;		/* MIG_DATA_SIZE is there: 6.3 and later */
} mg = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
};

static void bump(enum count c, unsigned long by)
{
	atomic_fetch_add(&mg.n[c], by);
}

/* -- streams --------------------------------------------------------- */

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

/* The kernel's crc32_le(~0, p, n): reflected 0xedb88320, no final xor. */
static uint32_t crc32_le(const uint8_t *p, size_t n)
{
	uint32_t c = ~0u;
	int k;

	while (n--) {
		c ^= *p++;
		for (k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xedb88320u & -(c & 1));
	}
	return c;
}

/*
 * The core's check of a stream for regshadow (vfm_mig_check()): as it
 * compares the name with strncmp(), bytes after the name's NUL are not
 * looked at, and a stream differing only there is as good.
 */
static bool header_ok(const uint8_t *s, size_t len)
{
	if (len < HDR_LEN || get32(s) != MIG_MAGIC || get32(s + 4) != 1 ||
	    get32(s + 52) || strncmp((const char *)s + 8, "regshadow", 32) ||
	    get64(s + 40) != len - HDR_LEN)
		return false;
	return get32(s + 48) == crc32_le(s + HDR_LEN, len - HDR_LEN);
}

static void seal(uint8_t *s, size_t len)
{
	uint64_t l = len - HDR_LEN;
	uint32_t crc = crc32_le(s + HDR_LEN, len - HDR_LEN);

	memcpy(s + 40, &l, 8);
	memcpy(s + 48, &crc, 4);
}

/* regshadow's state, as regshadow_state_valid() wants it. */
struct body {
	uint32_t bar;
	uint64_t start, wlen;
	uint8_t *shadow, *mask;
};

static bool body_parse(uint8_t *s, size_t len, struct body *b)
{
	uint8_t *p = s + HDR_LEN;
	uint64_t i;

	if (len < HDR_LEN + RS_LEN || get32(p) != 1)
		return false;
	b->bar = get32(p + 4);
	b->start = get64(p + 8);
	b->wlen = get64(p + 16);
	if (b->wlen > STREAM_MAX || len != HDR_LEN + RS_LEN + 2 * b->wlen)
		return false;
	b->shadow = p + RS_LEN;
	b->mask = b->shadow + b->wlen;
	for (i = 0; i < b->wlen; i++)
		if (b->mask[i] > 1)
			return false;
	return true;
}

/* Does the stream restore a byte that a guard keeps the user from writing? */
static bool hits_guard(const struct body *b)
{
	uint64_t i;

	if (b->bar)
		return false;
	for (i = 0; i < b->wlen && b->start + i < ZONE_END; i++)
		if (b->mask[i] && guard_at(b->start + i))
			return true;
	return false;
}

/* Outcomes allowed for a call, as a set. */
enum {
	XP_OK = 1, XP_EINVAL = 2, XP_EPERM = 4, XP_EIO = 8, XP_NOSTATE = 16,
	XP_ENOMEM = 32,
};

static bool allowed(unsigned int x, int err)
{
	return (!err && (x & XP_OK)) || (err == EINVAL && (x & XP_EINVAL)) ||
	       (err == EPERM && (x & XP_EPERM)) || (err == EIO && (x & XP_EIO)) ||
	       (err == EOPNOTSUPP && (x & XP_NOSTATE)) ||
	       (err == ENOMEM && (x & XP_ENOMEM));
}

/*
 * What ending RESUMING must do with @s loaded. Under mig_window the
 * running mediator is regshadow over the guard zone: the core refuses a
 * bad header or CRC (EINVAL), regshadow a state of another window or a
 * mask byte other than 0 or 1 (EINVAL), then a stream over a guard
 * (EPERM); a good one loads, unless its device writes fail with memory
 * decoding off or in low power (EIO). Otherwise the running mediator is
 * the configfs thread's, maybe none with state (EOPNOTSUPP), but no
 * mediator loads a bad stream, nor a byte a guard keeps.
 */
static unsigned int oracle(uint8_t *s, size_t len)
{
	struct body b;

	if (!header_ok(s, len))
		return fz.ep.mig_window ? XP_EINVAL : XP_EINVAL | XP_NOSTATE;
	if (!fz.ep.mig_window)
		return body_parse(s, len, &b) && !hits_guard(&b) ?
		       XP_OK | XP_EINVAL | XP_EIO | XP_NOSTATE | XP_EPERM :
		       XP_EINVAL | XP_EPERM | XP_NOSTATE;
	if (!body_parse(s, len, &b) || b.bar || b.start || b.wlen != WIN_LEN)
		return XP_EINVAL;
	return hits_guard(&b) ? XP_EPERM : XP_OK | XP_EIO;
}

/* -- witnesses ------------------------------------------------------- */

/* Under mg.lock. */
static void cand_add(struct sentinel *s, uint32_t v)
{
	unsigned int n = atomic_load(&s->ncand), i;

	if (v == s->v0)
		return;
	for (i = 0; i < n; i++)
		if (atomic_load(&s->cand[i]) == v)
			return;
	if (n == NCAND) {
		if (!atomic_exchange(&s->loose, true))
			bump(C_LOOSE, 1);
		return;
	}
	atomic_store(&s->cand[n], v);
	atomic_store(&s->ncand, n + 1);	/* readers see the value first */
	bump(C_WVALUES, 1);
}

/*
 * The values a load of @b may leave in witness @s, from any value it may
 * hold now: regshadow writes its runs in offset order, and a failing
 * device write stops it, so each prefix of the runs over the dword, as
 * written and inverted (edu's liveness register reads back the NOT of a
 * write; edu drops writes narrower than 4 bytes, which leave old values).
 */
static void witness_load(struct sentinel *s, const struct body *b)
{
	uint32_t base[NCAND + 1], v;
	unsigned int nb = 0, n, i, k;
	uint64_t at;
	bool any;

	base[nb++] = s->v0;
	n = atomic_load(&s->ncand);
	for (i = 0; i < n; i++)
		base[nb++] = atomic_load(&s->cand[i]);
	for (i = 0; i < nb; i++) {
		v = base[i];
		any = false;
		for (k = 0; k < 4; k++) {
			at = s->off + k;
			if (at < b->start || at - b->start >= b->wlen ||
			    !b->mask[at - b->start]) {
				if (any) {
					cand_add(s, v);
					cand_add(s, ~v);
				}
				any = false;
				continue;
			}
			((uint8_t *)&v)[k] = b->shadow[at - b->start];
			any = true;
		}
		if (any) {
			cand_add(s, v);
			cand_add(s, ~v);
		}
	}
}

/*
 * Before a plan can be fed: what loading it would leave in the
 * witnesses. Its first HDR_LEN + length bytes are what an over-long plan
 * loads, since the write past the buffer fails (EFBIG).
 */
static void register_plan(uint8_t *p, size_t len)
{
	struct body b;
	unsigned int i;

	if (len < HDR_LEN || get64(p + 40) > len - HDR_LEN)
		return;
	len = HDR_LEN + get64(p + 40);
	if (!header_ok(p, len) || !body_parse(p, len, &b) || b.bar)
		return;
	pthread_mutex_lock(&mg.lock);
	for (i = 0; i < NSENT; i++)
		if (fz.ep.s[i].role == WITNESS)
			witness_load(&fz.ep.s[i], &b);
	pthread_mutex_unlock(&mg.lock);
}

/* -- plans ----------------------------------------------------------- */

/* A copy of a stream of the library, or NULL. */
static uint8_t *lib_pick(struct rng *r, size_t *len)
{
	uint8_t *p = NULL;
	unsigned int i;

	pthread_mutex_lock(&mg.lock);
	if (mg.nlib) {
		i = below(r, mg.nlib);
		p = malloc(mg.lib[i].len);
		if (!p)
			die("malloc");
		memcpy(p, mg.lib[i].b, mg.lib[i].len);
		*len = mg.lib[i].len;
	}
	pthread_mutex_unlock(&mg.lock);
	return p;
}

static void lib_add(const uint8_t *s, size_t len)
{
	unsigned int i;

	pthread_mutex_lock(&mg.lock);
	i = mg.nlib < NLIB ? mg.nlib++ : mg.libnext++ % NLIB;
	free(mg.lib[i].b);
	mg.lib[i].b = malloc(len);
	if (!mg.lib[i].b)
		die("malloc");
	memcpy(mg.lib[i].b, s, len);
	mg.lib[i].len = len;
	pthread_mutex_unlock(&mg.lock);
}

/* A stream for the epoch's window, empty. */
static uint8_t *blank(size_t *len)
{
	uint8_t *s = calloc(1, WIN_STREAM);
	uint32_t one = 1, bar = 0;
	uint64_t start = 0, wlen = WIN_LEN;

	if (!s)
		die("calloc");
	memcpy(s, &(uint32_t){ MIG_MAGIC }, 4);
	memcpy(s + 4, &one, 4);
	strcpy((char *)s + 8, "regshadow");
	memcpy(s + HDR_LEN, &one, 4);
	memcpy(s + HDR_LEN + 4, &bar, 4);
	memcpy(s + HDR_LEN + 8, &start, 8);
	memcpy(s + HDR_LEN + 16, &wlen, 8);
	*len = WIN_STREAM;
	return s;
}

/*
 * A stream with a good CRC the fuzzer made up: random runs of random
 * bytes, made safe for edu as every write is, kept off the guards or
 * not, rarely with a mask byte regshadow refuses.
 */
static void forge(struct rng *r, uint8_t *s, size_t len, bool over_guards)
{
	struct body b;
	uint64_t i, at;
	bool on = false;

	if (!body_parse(s, len, &b))
		return;
	for (i = 0; i < b.wlen; i++) {
		if (chance(r, 15))
			on = !on;
		if (chance(r, 60))
			b.mask[i] = on;
		if (b.mask[i] && chance(r, 50))
			b.shadow[i] = rnd(r);
	}
	if (!b.bar)
		hazard_fix(b.start, b.shadow, b.wlen);
	for (i = 0; i < b.wlen; i++) {
		at = b.start + i;
		if (!b.bar && !over_guards && at < ZONE_END && guard_at(at))
			b.mask[i] = 0;
		if (!b.mask[i])
			b.shadow[i] = 0;
	}
	if (chance(r, 5) && b.wlen)
		b.mask[below(r, b.wlen)] = 2;
	seal(s, len);
}

enum plan_kind { P_REPLAY, P_FORGE, P_TRUNC, P_CORRUPT, P_RANDOM, P_LONG, P_EMPTY };

static const unsigned int plan_weights[] = { 35, 35, 7, 8, 5, 5, 5 };

static enum plan_kind pick_plan(struct rng *r)
{
	unsigned int k = below(r, 100), i;

	for (i = 0; k >= plan_weights[i]; i++)
		k -= plan_weights[i];
	return i;
}

/* A RESUMING fd's plan, its witness values registered. */
static uint8_t *make_plan(struct rng *r, size_t *len)
{
	enum plan_kind kind = pick_plan(r);
	uint8_t *s = kind == P_FORGE ? NULL : lib_pick(r, len);

	if (!s) {
		s = blank(len);
		if (kind == P_REPLAY)
			kind = P_FORGE;
	}
	if (kind == P_FORGE || (kind != P_REPLAY && chance(r, 30)))
		forge(r, s, *len, chance(r, 20));
	switch (kind) {
	case P_TRUNC:
		*len = below(r, *len);
		break;
	case P_CORRUPT:
		s[below(r, *len)] ^= 1 + below(r, 255);
		break;
	case P_RANDOM:
		*len = below(r, 2 * WIN_STREAM);
		s = realloc(s, *len + 1);
		for (size_t i = 0; i < *len; i++)
			s[i] = rnd(r);
		break;
	case P_LONG:
		s = realloc(s, *len + 128);
		for (size_t i = 0; i < 128; i++)
			s[*len + i] = rnd(r);
		*len += below(r, 128) + 1;
		break;
	case P_EMPTY:
		*len = 0;
		break;
	default:
		break;
	}
	if (!s)
		die("realloc");
	register_plan(s, *len);
	return s;
}

/* -- the pool -------------------------------------------------------- */

/* Under mg.lock, the slot held: the fd closed, the slot free. */
static void slot_free(struct dfd *d)
{
	if (close(d->fd))
		wrong("close of a data fd: %s", errname(errno));
	bump(C_CLOSED, 1);
	free(d->buf);
	free(d->plan);
	memset(d, 0, sizeof(*d));
	d->fd = -1;
}

/*
 * A new data fd, held by the caller; a full pool closes one of the
 * others first (any may be closed at any time: its transfer is void).
 */
static struct dfd *dfd_add(struct rng *r, int fd, bool save)
{
	struct dfd *d = NULL;
	unsigned int i, at;

	bump(C_OPENED, 1);
	pthread_mutex_lock(&mg.lock);
	for (i = 0; i < NDFD && !d; i++)
		if (mg.d[i].fd < 0)
			d = &mg.d[i];
	for (i = 0, at = below(r, NDFD); i < NDFD && !d; i++)
		if (!mg.d[(at + i) % NDFD].busy) {
			d = &mg.d[(at + i) % NDFD];
			slot_free(d);
		}
	if (d) {
		memset(d, 0, sizeof(*d));
		d->fd = fd;
		d->save = save;
		d->busy = d->exact = true;
		d->epoch = fz.ep.n;
		d->serial = ++mg.serial;
		d->keep = chance(r, 30) ? atomic_load(&fz.calls) + below(r, 20000) : 0;
		d->cap = !save && fz.ep.mig_window ? WIN_STREAM : 0;
	}
	pthread_mutex_unlock(&mg.lock);
	if (!d)
		die("every data fd slot held");
	if (!save)
		d->plan = make_plan(r, &d->plan_len);
	return d;
}

static void dfd_put(struct dfd *d)
{
	pthread_mutex_lock(&mg.lock);
	d->busy = false;
	pthread_mutex_unlock(&mg.lock);
}

static struct dfd *dfd_take(struct rng *r)
{
	unsigned int i, at = below(r, NDFD);
	struct dfd *d = NULL;

	pthread_mutex_lock(&mg.lock);
	for (i = 0; i < NDFD && !d; i++) {
		struct dfd *c = &mg.d[(at + i) % NDFD];

		if (c->fd >= 0 && !c->busy) {
			c->busy = true;
			d = c;
		}
	}
	pthread_mutex_unlock(&mg.lock);
	return d;
}

/* The fd of transfer @serial, waiting for its holder; NULL if gone. */
static struct dfd *dfd_take_serial(uint64_t serial)
{
	unsigned int i, tries;

	for (tries = 0; tries < 20000; tries++) {
		bool held = false;

		pthread_mutex_lock(&mg.lock);
		for (i = 0; i < NDFD; i++) {
			struct dfd *c = &mg.d[i];

			if (c->fd < 0 || c->serial != serial)
				continue;
			if (!c->busy) {
				c->busy = true;
				pthread_mutex_unlock(&mg.lock);
				return c;
			}
			held = true;
		}
		pthread_mutex_unlock(&mg.lock);
		if (!held)
			return NULL;
		usleep(50);
	}
	return NULL;
}

static void dfd_close(struct dfd *d)
{
	pthread_mutex_lock(&mg.lock);
	slot_free(d);
	pthread_mutex_unlock(&mg.lock);
}

/* -- data fd calls --------------------------------------------------- */

static void append(struct dfd *d, const uint8_t *p, size_t n)
{
	if (!d->exact || d->len + n > STREAM_MAX) {
		d->exact = false;
		return;
	}
	d->buf = realloc(d->buf, d->len + n + 1);
	if (!d->buf)
		die("realloc");
	memcpy(d->buf + d->len, p, n);
	d->len += n;
}

/*
 * A STOP_COPY stream read whole: it passes the core's own check, holds a
 * regshadow state whose unwritten bytes are 0, and (saved in this epoch,
 * whose guards have held since the open) records no guarded byte as
 * written, since nothing may write one. Then it may be replayed.
 */
static void saved_whole(struct dfd *d)
{
	struct body b;
	uint64_t i;

	if (!d->exact)
		return;
	if (!header_ok(d->buf, d->len) || !body_parse(d->buf, d->len, &b)) {
		wrong("a STOP_COPY stream of %zu bytes fails its own check", d->len);
		return;
	}
	for (i = 0; i < b.wlen; i++)
		if (!b.mask[i] && b.shadow[i])
			wrong("a saved stream holds 0x%02x for an unwritten byte", b.shadow[i]);
	if (d->epoch == fz.ep.n && hits_guard(&b))
		wrong("a saved stream records a guarded byte of bar0 as written");
	bump(C_SAVES, 1);
	lib_add(d->buf, d->len);
}

static size_t pick_size(struct rng *r)
{
	static const size_t sizes[] = { 0, 1, 7, HDR_LEN, 64, 4096, 65536 };

	return chance(r, 70) ? sizes[below(r, 7)] : below(r, 2 * WIN_STREAM);
}

/* read() of a STOP_COPY fd: the stream's next bytes, or ENODEV once ended. */
static void save_read(struct dfd *d, struct stats *st, uint8_t *buf,
		      size_t want)
{
	ssize_t n = read(d->fd, buf, want);
	int err = n < 0 ? errno : 0;

	tally_add(&st->t[OP_DFD], err);
	if (n < 0) {
		if (err != ENODEV)
			wrong("read of a STOP_COPY data fd: %s", errname(err));
		d->ended = true;
		return;
	}
	if (d->ended)
		wrong("a data fd read %zd bytes after it said ENODEV", n);
	if ((size_t)n > want || (d->eof && n))
		wrong("read of %zu bytes of a STOP_COPY data fd returned %zd%s",
		      want, n, d->eof ? " past its end" : "");
	bump(C_READ, n);
	if (n) {
		append(d, buf, n);
	} else if (want && !d->eof) {
		d->eof = true;
		saved_whole(d);
	}
}

/* A STOP_COPY stream read to its end at once, as a VMM does. */
static void save_drain(struct dfd *d, struct rng *r, struct stats *st,
		       uint8_t *buf)
{
	unsigned int i;

	for (i = 0; i < 64 && !d->eof && !d->ended; i++)
		save_read(d, st, buf, chance(r, 50) ? 65536 : below(r, 700) + 1);
}

/*
 * write() of a RESUMING fd: all it is given, or EFBIG past the buffer
 * the destination's state fits in (known under mig_window), or ENODEV
 * once the transfer ended. What it took is recorded for oracle().
 */
static void resume_write(struct dfd *d, struct rng *r, struct stats *st,
			 uint8_t *buf)
{
	bool from_plan = d->fed < d->plan_len && chance(r, 92);
	size_t len = from_plan ? 1 + below(r, d->plan_len - d->fed) : pick_size(r);
	ssize_t n;
	int err;

	if (from_plan && chance(r, 40))
		len = d->plan_len - d->fed;
	if (from_plan)
		memcpy(buf, d->plan + d->fed, len);
	else
		for (size_t i = 0; i < len; i++)
			buf[i] = rnd(r);
	n = write(d->fd, buf, len);
	err = n < 0 ? errno : 0;
	tally_add(&st->t[OP_DFD], err);
	if (n < 0) {
		if (err == ENODEV)
			d->ended = true;
		else if (err != EFBIG ||
			 (d->cap && d->exact && !d->ended && d->len + len <= d->cap))
			wrong("write of %zu bytes to a RESUMING data fd holding %zu: %s",
			      len, d->len, errname(err));
		return;
	}
	if (d->ended || (size_t)n > len ||
	    (d->cap && d->exact && d->len + n > d->cap))
		wrong("write of %zu bytes to a RESUMING data fd holding %zu returned %zd%s",
		      len, d->len, n, d->ended ? " after ENODEV" : "");
	bump(C_WRITTEN, n);
	append(d, buf, n);
	if (from_plan)
		d->fed += n;
}

/* Calls a data fd has no use for: each has one documented answer. */
static void dfd_misc(struct dfd *d, struct rng *r, struct stats *st,
		     uint8_t *buf)
{
	int whence = below(r, 6), err, want;
	const char *what;
	off_t pos = rnd(r) >> below(r, 64);
	struct pollfd p = { .fd = d->fd, .events = POLLIN | POLLOUT };
	ssize_t n;
	void *m;

	switch (below(r, 6)) {
	case 0:	/* lseek: a stream (stream_open()) */
		what = "lseek";
		n = lseek(d->fd, pos, whence);
		want = whence > SEEK_HOLE ? EINVAL : ESPIPE;
		break;
	case 1:	/* pread/pwrite: no positions either */
		what = "pread/pwrite";
		n = d->save ? pread(d->fd, buf, 16, pos) : pwrite(d->fd, buf, 16, pos);
		want = pos < 0 ? EINVAL : ESPIPE;
		break;
	case 2:	/* the other direction: opened O_RDONLY or O_WRONLY */
		what = "write/read";
		n = d->save ? write(d->fd, buf, 16) : read(d->fd, buf, 16);
		want = EBADF;
		break;
	case 3:	/* a VFIO ioctl on a data fd: none reaches the device */
		what = "ioctl";
		n = ioctl(d->fd, _IO(VFIO_TYPE, VFIO_BASE + below(r, 32)), buf);
		want = ENOTTY;
		break;
	case 4:	/* no mmap; no read access at all for RESUMING's */
		what = "mmap";
		m = mmap(NULL, DPAGE, PROT_READ, MAP_SHARED, d->fd, 0);
		if (m != MAP_FAILED)
			munmap(m, DPAGE);
		n = m == MAP_FAILED ? -1 : 0;
		want = d->save ? ENODEV : EACCES;
		break;
	default: /* poll: no poll method, so always ready; never POLLNVAL */
		n = poll(&p, 1, 0);
		err = n < 0 ? errno : 0;
		tally_add(&st->t[OP_DFD], err);
		if (n != 1 || (p.revents & (POLLNVAL | POLLERR)))
			wrong("poll of a data fd: %zd revents 0x%x %s", n,
			      p.revents, errname(err));
		return;
	}
	err = n < 0 ? errno : 0;
	tally_add(&st->t[OP_DFD], err);
	if (err != want)
		wrong("%s of a %s data fd: %zd %s, expected %s", what,
		      d->save ? "STOP_COPY" : "RESUMING", n,
		      errname(err), errname(want));
}

void dfd_op(struct rng *r, struct stats *st, uint8_t *buf)
{
	struct dfd *d = dfd_take(r);
	unsigned int k = below(r, 100);

	if (!d)
		return;
	if (k < 55 && d->save)
		save_read(d, st, buf, pick_size(r));
	else if (k < 55)
		resume_write(d, r, st, buf);
	else if (k < 80)
		dfd_misc(d, r, st, buf);
	else if (k < 92 && atomic_load(&fz.calls) >= d->keep) {
		dfd_close(d);
		return;
	}
	dfd_put(d);	/* for whichever thread takes it next */
}

/* -- transitions ----------------------------------------------------- */

/* VFIO_DEVICE_FEATURE with MIG_DEVICE_STATE: 0 or the errno. */
static int mig_ioctl(uint32_t flags, struct vfio_device_feature_mig_state *m)
{
	uint64_t a[2];
	struct vfio_device_feature *f = (void *)a;
	int err;

	f->argsz = sizeof(a);
	f->flags = flags | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE;
	m->data_fd = -1;
	memcpy(&a[1], m, sizeof(*m));
	err = xioctl(fz.fd, VFIO_DEVICE_FEATURE, f);
	memcpy(m, &a[1], sizeof(*m));
	return err;
}

static bool valid_state(uint32_t s)
{
	return s == S_RUNNING || s == S_STOP || s == S_STOP_COPY ||
	       s == S_RESUMING;
}

/*
 * GET, under rw for writing: the state the model holds, unless a call
 * that may change it ran since; always one the device supports. Returns
 * whether the model held (the previous transition is the last one).
 */
static bool mig_get(struct stats *st, uint32_t *state)
{
	struct vfio_device_feature_mig_state m = { 0 };
	bool held;
	int err;

	/* a random SET may have loaded or ended mig_op()'s transfer too */
	if (atomic_exchange(&mg.unknown, false))
		mg.known = mg.cur_exact = false;
	held = mg.known;
	err = mig_ioctl(VFIO_DEVICE_FEATURE_GET, &m);
	tally_add(&st->t[OP_MIG], err);
	if (err || !valid_state(m.device_state)) {
		wrong("GET MIG_DEVICE_STATE: %s, state %u", errname(err),
		      m.device_state);
		mg.known = false;
		return false;
	}
	if (held && m.device_state != mg.state)
		wrong("GET MIG_DEVICE_STATE says %u, the last SET left %u",
		      m.device_state, mg.state);
	*state = m.device_state;
	mg.state = *state;
	mg.known = true;
	if (*state != S_RESUMING)
		atomic_store(&mg.stuck, false);
	return held;
}

static uint32_t pick_target(struct rng *r, uint32_t cur)
{
	static const uint32_t bad[] = { VFIO_DEVICE_STATE_ERROR, 5, 6, 7, 8, 0xffffffff };
	unsigned int k = below(r, 100);

	if (k < 12)
		return chance(r, 80) ? bad[below(r, 6)] : (uint32_t)rnd(r);
	if (k < 17)
		return cur;
	switch (cur) {
	case S_RESUMING:
		return k < 65 ? S_STOP : k < 90 ? S_RUNNING : S_STOP_COPY;
	case S_STOP_COPY:
		return k < 55 ? S_STOP : k < 85 ? S_RUNNING : S_RESUMING;
	case S_STOP:
		return k < 40 ? S_STOP_COPY : k < 75 ? S_RESUMING : S_RUNNING;
	}
	return k < 45 ? S_STOP_COPY : k < 80 ? S_RESUMING : S_STOP;
}

/* What a transition not out of RESUMING may answer. */
static unsigned int expect_move(uint32_t cur, uint32_t target)
{
	if (!valid_state(target))
		return XP_EINVAL;
	if (target == cur)
		return XP_OK;
	if (target == S_STOP_COPY || target == S_RESUMING)
		return fz.ep.mig_window ? XP_OK | XP_ENOMEM :
					  XP_OK | XP_ENOMEM | XP_NOSTATE;
	return XP_OK;
}

/* Feed a RESUMING fd the rest of its plan, in chunks, or only part. */
static void feed(struct dfd *d, struct rng *r, struct stats *st, uint8_t *buf)
{
	unsigned int i, n = chance(r, 90) ? 64 : below(r, 3);

	for (i = 0; i < n && d->fed < d->plan_len && !d->ended; i++)
		resume_write(d, r, st, buf);
}

/*
 * Out of mig_op()'s own RESUMING: its fd, held across the SET so that
 * nothing is written meanwhile, and what loading what it took must do.
 */
static unsigned int expect_load(struct rng *r, struct stats *st, uint8_t *buf,
				uint32_t target, struct dfd **held)
{
	unsigned int x = XP_OK | XP_EINVAL | XP_EPERM | XP_EIO | XP_NOSTATE;
	struct dfd *d = dfd_take_serial(mg.cur);

	*held = d;
	if (d) {
		if (chance(r, 90))
			feed(d, r, st, buf);
		/* a load ended it: the next loads find nothing */
		if (d->exact && (!d->ended || d->loaded))
			x = oracle(d->buf, d->len);
	}
	if (target == S_STOP_COPY && (x & XP_OK))
		x |= expect_move(S_STOP, S_STOP_COPY);
	return x;
}

/* A SET's new fd: a STOP_COPY stream read now or later, a RESUMING fed. */
static void new_fd(struct rng *r, struct stats *st, uint8_t *buf, int fd,
		   bool save)
{
	struct dfd *d = dfd_add(r, fd, save);

	if (save && chance(r, 50))
		save_drain(d, r, st, buf);
	if (!save) {
		mg.cur = d->serial;
		mg.cur_exact = true;
		if (chance(r, 70))
			feed(d, r, st, buf);
	}
	dfd_put(d);
}

/* After a SET: GET agrees; a failed one left cur or STOP (vfmediate has no ERROR). */
static void after_set(struct stats *st, uint32_t cur, uint32_t target, int err)
{
	uint32_t now;

	mg.known = false;
	mig_get(st, &now);
	if (!mg.known)
		return;
	if (!err && now != target)
		wrong("SET MIG_DEVICE_STATE %u succeeded, GET says %u", target, now);
	if (err && now != cur && now != S_STOP)
		wrong("SET MIG_DEVICE_STATE %u -> %u failed (%s), GET says %u",
		      cur, target, errname(err), now);
	if (err && now == S_RESUMING && !atomic_load(&mg.stuck)) {
		atomic_store(&mg.stuck_since, atomic_load(&fz.calls));
		atomic_store(&mg.stuck, true);
	}
}

static void check_set(uint32_t cur, uint32_t target, int err, int fd,
		      unsigned int x)
{
	bool wants_fd = !err && target != cur &&
			(target == S_STOP_COPY || target == S_RESUMING);

	bump(err ? C_SET_REFUSED : C_SET_OK, 1);
	if (!allowed(x, err))
		wrong("SET MIG_DEVICE_STATE %u -> %u: %s (allowed 0x%x)", cur,
		      target, errname(err), x);
	if (wants_fd != (fd >= 0))
		wrong("SET MIG_DEVICE_STATE %u -> %u: %s, data_fd %d", cur,
		      target, errname(err), fd);
}

/* The migration and size features' answers (size: 6.3 and later). */
static void mig_query(struct stats *st)
{
	uint64_t a[4] = { 0 };
	struct vfio_device_feature *f = (void *)a;
	int err;

	f->argsz = sizeof(a);
	f->flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION;
	err = xioctl(fz.fd, VFIO_DEVICE_FEATURE, f);
	tally_add(&st->t[OP_MIG], err);
	if (err || a[1] != VFIO_MIGRATION_STOP_COPY)
		wrong("GET MIGRATION: %s, flags 0x%llx", errname(err),
		      (unsigned long long)a[1]);
	f->flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE;
	err = xioctl(fz.fd, VFIO_DEVICE_FEATURE, f);
	tally_add(&st->t[OP_MIG], err);
	if (err != (mg.data_size ? 0 : ENOTTY) ||
	    (!err && (a[1] < HDR_LEN || (fz.ep.mig_window && a[1] != WIN_STREAM))))
		wrong("GET MIG_DATA_SIZE: %s, %llu bytes", errname(err),
		      (unsigned long long)a[1]);
}

void mig_op(struct rng *r, struct stats *st, uint8_t *buf)
{
	struct vfio_device_feature_mig_state m = { 0 };
	struct dfd *held = NULL;
	uint32_t cur, target;
	unsigned int x;
	bool exact, load;
	int err;

	pthread_rwlock_wrlock(&mg.rw);
	exact = mig_get(st, &cur);
	if (!mg.known)
		goto out;
	if (chance(r, 8)) {
		mig_query(st);
		goto out;
	}
	target = pick_target(r, cur);
	x = expect_move(cur, target);
	load = cur == S_RESUMING && valid_state(target) && target != cur;
	if (load)
		x = exact && mg.cur_exact ?
		    expect_load(r, st, buf, target, &held) :
			    XP_OK | XP_EINVAL | XP_EPERM | XP_EIO | XP_NOSTATE | XP_ENOMEM;
	m.device_state = target;
	err = mig_ioctl(VFIO_DEVICE_FEATURE_SET, &m);
	tally_add(&st->t[OP_MIG], err);
	check_set(cur, target, err, m.data_fd, x);
	if (load)
		bump(err ? C_LOAD_REFUSED : C_LOAD_OK, 1);
	if (load && !held)	/* what the kernel holds now is not known */
		mg.cur_exact = false;
	if (held) {
		/* the load took the stream out of the file, which ended */
		held->len = 0;
		held->ended = held->loaded = true;
		dfd_put(held);
	}
	if (m.data_fd >= 0)
		new_fd(r, st, buf, m.data_fd, target == S_STOP_COPY);
	after_set(st, cur, target, err);
out:
	pthread_rwlock_unlock(&mg.rw);
}

/* -- the rest of the fuzzer ----------------------------------------- */

void mig_interfere_begin(void)
{
	if (!fz.mig)
		return;
	pthread_rwlock_rdlock(&mg.rw);
	atomic_store(&mg.unknown, true);
}

void mig_interfere_end(void)
{
	if (fz.mig)
		pthread_rwlock_unlock(&mg.rw);
}

/*
 * A random VFIO_DEVICE_FEATURE call that succeeded (the interferers'
 * read lock held): migration's answers are checked, a data fd joins the
 * pool like any other.
 */
void mig_feature_result(const struct vfio_device_feature *f, int err)
{
	uint32_t feature = f->flags & VFIO_DEVICE_FEATURE_MASK;
	const int32_t *data = (const int32_t *)f->data;
	struct rng r = { .s = (uint64_t)data[1] ^ atomic_load(&fz.calls) };

	if (!fz.mig || (f->flags & VFIO_DEVICE_FEATURE_PROBE) ||
	    feature != VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE)
		return;
	if (f->flags & VFIO_DEVICE_FEATURE_SET)
		bump(err ? C_SET_REFUSED : C_SET_OK, 1);
	if (err)
		return;
	if ((f->flags & VFIO_DEVICE_FEATURE_GET) && !valid_state(data[0]))
		wrong("GET MIG_DEVICE_STATE (random call) says %d", data[0]);
	if ((f->flags & VFIO_DEVICE_FEATURE_SET) && data[1] >= 0)
		dfd_put(dfd_add(&r, data[1], data[0] == S_STOP_COPY));
}

void mig_init(void)
{
	pthread_rwlockattr_t at;
	unsigned int i, major = 0, minor = 0;
	struct utsname u;

	if (!uname(&u))
		sscanf(u.release, "%u.%u", &major, &minor);
	mg.data_size = major > 6 || (major == 6 && minor >= 3);

	pthread_rwlockattr_init(&at);
	/* the checked transitions must not starve behind the interferers */
	pthread_rwlockattr_setkind_np(&at,
				      PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&mg.rw, &at);
	for (i = 0; i < NDFD; i++)
		mg.d[i].fd = -1;
}

/* The device was just opened (its last close came before): RUNNING. */
void mig_epoch_start(void)
{
	static struct stats st;	/* not counted: the controller's */
	uint32_t state = 0;
	unsigned int i;

	for (i = 0; i < NSENT; i++) {
		atomic_store(&fz.ep.s[i].ncand, 0);
		atomic_store(&fz.ep.s[i].loose, false);
	}
	if (!fz.mig)
		return;
	mg.known = false;
	atomic_store(&mg.stuck, false);
	mg.cur = 0;
	mg.cur_exact = false;
	mig_get(&st, &state);
	if (state != S_RUNNING)
		wrong("an opened device is in migration state %u, not RUNNING", state);
	mg.state = S_RUNNING;
	mg.known = true;
}

bool mig_stuck(void)
{
	if (!atomic_load(&mg.stuck) ||
	    atomic_load(&fz.calls) - atomic_load(&mg.stuck_since) < STUCK_CALLS)
		return false;
	bump(C_UNSTUCK, 1);
	return true;
}

/* Data fds of the process, by /proc: none may be left at the end. */
static unsigned int mig_fds_left(void)
{
	char path[300], link[128];
	unsigned int n = 0;
	struct dirent *de;
	DIR *dir = opendir("/proc/self/fd");
	ssize_t l;

	if (!dir)
		die("/proc/self/fd");
	while ((de = readdir(dir))) {
		snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
		l = readlink(path, link, sizeof(link) - 1);
		if (l > 0) {
			link[l] = 0;
			n += !!strstr(link, "vfmediate_mig");
		}
	}
	closedir(dir);
	return n;
}

void mig_finish(void)
{
	unsigned int i, left;

	if (!fz.mig)
		return;
	pthread_mutex_lock(&mg.lock);
	for (i = 0; i < NDFD; i++)
		if (mg.d[i].fd >= 0)
			slot_free(&mg.d[i]);
	for (i = 0; i < mg.nlib; i++)
		free(mg.lib[i].b);
	pthread_mutex_unlock(&mg.lock);
	left = mig_fds_left();
	if (left || atomic_load(&mg.n[C_OPENED]) != atomic_load(&mg.n[C_CLOSED]))
		wrong("data fds: %lu opened, %lu closed, %u left open",
		      atomic_load(&mg.n[C_OPENED]), atomic_load(&mg.n[C_CLOSED]),
		      left);
}

/* The migration counts, for the result line. */
void mig_print(void)
{
	if (!fz.mig)
		return;
	printf(" mig_ok=%lu mig_refused=%lu loads_ok=%lu loads_refused=%lu"
	       " saves=%lu dfd_read=%lu dfd_written=%lu dfds=%lu unstuck=%lu"
	       " witness_values=%lu loose=%lu",
	       mg.n[C_SET_OK], mg.n[C_SET_REFUSED], mg.n[C_LOAD_OK],
	       mg.n[C_LOAD_REFUSED], mg.n[C_SAVES], mg.n[C_READ],
	       mg.n[C_WRITTEN], mg.n[C_OPENED], mg.n[C_UNSTUCK],
	       mg.n[C_WVALUES], mg.n[C_LOOSE]);
}
