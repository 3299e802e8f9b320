// SPDX-License-Identifier: GPL-2.0
/*
 * The fuzz threads' calls: reads and writes of the device file at random
 * places and sizes, every VFIO device ioctl with random arguments, and
 * mmap/munmap/mremap/fork with accesses through the mappings. Each
 * result is checked against the documented semantics where they define
 * it (see check_read() and check_write()).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fuzz.h"

#define PAGE		4096ULL
#define OFF_BITS	40
#define OFF_MASK	((1ULL << OFF_BITS) - 1)
#define MAXLEN		(64 * 1024)
#define NMAPS		8
#define NEFD		4

atomic_int doing[64];

const char *const op_names[NOPS] = {
	"read", "write", "get_info", "region_info", "irq_info", "set_irqs",
	"reset", "hot_reset_info", "hot_reset", "ioeventfd", "feature",
	"raw_ioctl", "mmap", "munmap", "mremap", "fork", "mmio",
	"configfs", "apply", "reopen", "mig", "data_fd",
};

struct mapping {
	uint8_t *addr;
	size_t len;
	uint64_t off;		/* in BAR0 */
};

/* One fuzz thread's own things. */
struct worker {
	struct rng *r;
	struct stats *st;
	unsigned int who;
	uint8_t *buf;
	struct mapping maps[NMAPS];
	unsigned int nmaps;
	int efd[NEFD];
};

/* -- edu's hazards -------------------------------------------------- */

/*
 * Bytes of edu's BAR0 whose writes would make the emulated device do
 * more than store a value: start a DMA to a random address (0x98 bit 0),
 * raise an interrupt no handler may own (0x60, status bit 7 at 0x20) or
 * compute the factorial of a 32-bit number for seconds (0x08). Cleared
 * in every write the fuzzer makes to BAR0, by any path.
 */
static const struct {
	uint32_t off;
	uint8_t clear;
} hazards[] = {
	{ 0x09, 0xff }, { 0x0a, 0xff }, { 0x0b, 0xff },
	{ 0x20, 0x80 },
	{ 0x60, 0xff }, { 0x61, 0xff }, { 0x62, 0xff }, { 0x63, 0xff },
	{ 0x98, 0x01 },
};

void hazard_fix(uint64_t off, uint8_t *buf, uint64_t len)
{
	unsigned int i;

	for (i = 0; i < sizeof(hazards) / sizeof(hazards[0]); i++)
		if (hazards[i].off >= off && hazards[i].off - off < len)
			buf[hazards[i].off - off] &= ~hazards[i].clear;
}

/* -- where an access lands ------------------------------------------- */

struct access {
	uint64_t pos;		/* device file offset */
	uint64_t len;
	unsigned int index;	/* pos >> 40 */
	uint64_t off;		/* in the region */
};

static uint64_t pick_len(struct rng *r)
{
	static const uint64_t small[] = { 1, 2, 3, 4, 4, 4, 8, 8, 16 };

	switch (below(r, 4)) {
	case 0:
	case 1:
		return small[below(r, sizeof(small) / sizeof(small[0]))];
	case 2:
		return below(r, 256) + 1;
	}
	return below(r, MAXLEN) + 1;
}

/* An offset at or around the edge of a region of @size bytes. */
static uint64_t edge(struct rng *r, uint64_t size)
{
	static const int64_t delta[] = { 0, -1, -2, -3, -4, -8, 1, 4, 4096 };
	int64_t d = delta[below(r, sizeof(delta) / sizeof(delta[0]))];

	switch (below(r, 4)) {
	case 0:
		return below(r, size + 1);
	case 1:
		return OFF_MASK - below(r, 16);
	}
	if (d < 0 && (uint64_t)-d > size)
		return 0;
	return size + d;
}

static void pick_access(struct rng *r, struct access *a)
{
	unsigned int k = below(r, 100), index = 0;
	uint64_t off;

	a->len = pick_len(r);
	if (k < 45) {
		off = below(r, ZONE_END);
		if (chance(r, 80) && off + a->len > ZONE_END)
			a->len = below(r, ZONE_END - off) + 1;
	} else if (k < 60) {
		index = VFIO_PCI_CONFIG_REGION_INDEX;
		off = edge(r, fz.dev.region_size[index]);
		if (chance(r, 50))
			off = below(r, fz.dev.region_size[index] + 1);
	} else if (k < 80) {
		off = edge(r, fz.dev.region_size[0]);
		if (chance(r, 50))
			off = below(r, fz.dev.region_size[0]);
	} else if (k < 92) {
		index = below(r, VFIO_PCI_NUM_REGIONS + 3);
		off = edge(r, index < VFIO_PCI_NUM_REGIONS ?
			   fz.dev.region_size[index] : 0);
	} else {
		/* anything: index bits and huge offsets */
		a->pos = rnd(r) >> below(r, 64);
		if (chance(r, 20))
			a->len = rnd(r);
		goto split;
	}
	a->pos = ((uint64_t)index << OFF_BITS) + (off & OFF_MASK);
split:
	a->index = a->pos >> OFF_BITS;
	a->off = a->pos & OFF_MASK;
}

/* What the epoch's guards say about bytes [off, off + len) of BAR0. */
struct verdict {
	bool deny_w, ro_w, deny_r, witness;
	bool in_zone;		/* every byte in the guard zone */
};

const struct sentinel *guard_at(uint64_t b)
{
	unsigned int i;

	for (i = 0; i < NSENT; i++) {
		const struct sentinel *s = &fz.ep.s[i];

		if (s->role == GUARD && b >= s->off && b < s->off + s->len)
			return s;
	}
	return NULL;
}

static bool witness_at(uint64_t b)
{
	unsigned int i;

	for (i = 0; i < NSENT; i++) {
		const struct sentinel *s = &fz.ep.s[i];

		if (s->role == WITNESS && b >= s->off && b < s->off + 4)
			return true;
	}
	return false;
}

static void judge(const struct access *a, struct verdict *v)
{
	uint64_t b, end;

	memset(v, 0, sizeof(*v));
	if (a->index != 0 || a->off >= ZONE_END)
		return;
	end = a->len > ZONE_END - a->off ? ZONE_END : a->off + a->len;
	v->in_zone = end == a->off + a->len;
	for (b = a->off; b < end; b++) {
		const struct sentinel *s = guard_at(b);

		if (witness_at(b))
			v->witness = true;
		if (!s)
			continue;
		if (s->action == A_DENY) {
			v->deny_w = true;
			v->deny_r |= s->reads;
		} else if (s->action == A_RO) {
			v->ro_w = true;
		}
	}
}

/*
 * A split access stops at the first part that fails and returns what the
 * parts before it did, as read(2) and write(2) may (e.g. an ignored part,
 * then vfio-pci-core's EIO with memory decoding off): a short count must
 * end where a guard does.
 */
static bool part_boundary(uint64_t b)
{
	unsigned int i;

	for (i = 0; i < NSENT; i++) {
		const struct sentinel *s = &fz.ep.s[i];

		if (s->role == GUARD && (b == s->off || b == s->off + s->len))
			return true;
	}
	return false;
}

static bool count_ok(const struct access *a, ssize_t n)
{
	return (uint64_t)n == a->len ||
	       (n > 0 && (uint64_t)n < a->len && part_boundary(a->off + n));
}

/*
 * The value a sentinel's dword may hold now: its own, its reset value
 * after a reset, and for a witness, a value a migration load may have
 * left (mig.c registers those before the load can run).
 */
bool sentinel_ok(const struct sentinel *s, uint32_t val)
{
	unsigned int i, n;

	if (val == s->v0 || (atomic_load(&fz.ep.reset_seen) &&
			     fz.reset_known && val == s->reset))
		return true;
	if (s->role != WITNESS)
		return false;
	if (atomic_load(&s->loose))
		return true;
	n = atomic_load(&s->ncand);
	for (i = 0; i < n; i++)
		if (atomic_load(&s->cand[i]) == val)
			return true;
	return false;
}

/* -- checks ---------------------------------------------------------- */

static void check_region_bounds(const struct access *a, ssize_t n,
				const char *what)
{
	uint64_t size;

	if (n <= 0)
		return;
	if (a->index >= VFIO_PCI_NUM_REGIONS) {
		wrong("%s of region index %u (pos 0x%llx len 0x%llx) returned %zd",
		      what, a->index, (unsigned long long)a->pos,
		      (unsigned long long)a->len, n);
		return;
	}
	size = fz.dev.region_size[a->index];
	if (a->off >= size || (uint64_t)n > size - a->off)
		wrong("%s past the end of region %u (size 0x%llx): off 0x%llx returned %zd",
		      what, a->index, (unsigned long long)size,
		      (unsigned long long)a->off, n);
}

/* A sentinel's dword read through a path the guard lets reads pass. */
static void check_sentinel_read(const struct access *a, ssize_t n,
				const uint8_t *buf)
{
	unsigned int i;
	uint32_t val;

	if (a->len != 4 || n != 4)
		return;
	for (i = 0; i < NSENT; i++) {
		const struct sentinel *s = &fz.ep.s[i];

		if (s->off != a->off || s->role == FREE)
			continue;
		if (s->role == GUARD && s->reads && s->action != A_RO)
			continue;
		memcpy(&val, buf, 4);
		if (!sentinel_ok(s, val))
			wrong("sentinel 0x%x (%s) reads 0x%08x, set to 0x%08x",
			      s->off, s->role == GUARD ? "guarded" : "witness",
			      val, s->v0);
	}
}

/*
 * An access over the guarded cache line size byte. Other random rules
 * may cover the rest of config space, so only what the guard alone
 * decides is checked: a refusal, or a zero read.
 */
static void check_cls_access(const struct access *a, ssize_t n, int err,
			     const uint8_t *buf, bool iswrite)
{
	enum action act = fz.ep.cls.action;
	bool refuse;

	if (!fz.ep.cls.on || a->index != VFIO_PCI_CONFIG_REGION_INDEX ||
	    a->off > CFG_CLS || a->off + a->len <= CFG_CLS)
		return;
	refuse = iswrite ? act != A_IGNORE : act == A_DENY && fz.ep.cls.reads;
	if (refuse && (n >= 0 || (err != EACCES && err != EPERM && err != EINVAL) ||
		       (err == EPERM && act == A_DENY)))
		wrong("%s of guarded config byte 0x%x (off 0x%llx len 0x%llx): %zd %s",
		      iswrite ? "write" : "read", CFG_CLS,
		      (unsigned long long)a->off, (unsigned long long)a->len,
		      n, errname(err));
	if (!iswrite && act == A_IGNORE && fz.ep.cls.reads &&
	    n > (ssize_t)(CFG_CLS - a->off) && buf[CFG_CLS - a->off])
		wrong("ignored config byte 0x%x reads 0x%02x", CFG_CLS,
		      buf[CFG_CLS - a->off]);
}

static void check_read(const struct access *a, ssize_t n, int err,
		const uint8_t *buf)
{
	struct verdict v;
	uint64_t b;

	check_region_bounds(a, n, "read");
	check_cls_access(a, n, err, buf, false);
	judge(a, &v);
	if (v.deny_r) {
		if (n >= 0 || (err != EACCES && (v.in_zone || err != EINVAL)))
			wrong("read of denied bytes at bar0+0x%llx len 0x%llx: %zd %s, expected EACCES",
			      (unsigned long long)a->off,
			      (unsigned long long)a->len, n, errname(err));
		return;
	}
	if (!v.in_zone)
		return;
	if (n < 0) {
		if (err != EIO)	/* memory decoding off, low power */
			wrong("read in the guard zone at bar0+0x%llx len 0x%llx failed: %s",
			      (unsigned long long)a->off,
			      (unsigned long long)a->len, errname(err));
		return;
	}
	if (!count_ok(a, n)) {
		wrong("read in the guard zone at bar0+0x%llx len 0x%llx returned %zd",
		      (unsigned long long)a->off, (unsigned long long)a->len, n);
		return;
	}
	for (b = a->off; b < a->off + n; b++) {
		const struct sentinel *s = guard_at(b);

		if (s && s->action == A_IGNORE && s->reads && buf[b - a->off])
			wrong("ignored byte bar0+0x%llx reads 0x%02x, not 0",
			      (unsigned long long)b, buf[b - a->off]);
	}
	check_sentinel_read(a, n, buf);
}

static void check_write(const struct access *a, ssize_t n, int err)
{
	struct verdict v;
	int want;

	check_region_bounds(a, n, "write");
	check_cls_access(a, n, err, NULL, true);
	judge(a, &v);
	if (v.deny_w || v.ro_w) {
		want = v.deny_w ? EACCES : EPERM;
		if (n >= 0 || (err != want &&
			       (v.in_zone || (err != EINVAL && err != EACCES))))
			wrong("write of %s bytes at bar0+0x%llx len 0x%llx: %zd %s, expected %s",
			      v.deny_w ? "denied" : "read-only",
			      (unsigned long long)a->off,
			      (unsigned long long)a->len, n, errname(err),
			      errname(want));
		return;
	}
	if (!v.in_zone)
		return;
	if (n < 0 ? err != EIO : !count_ok(a, n))
		wrong("write in the guard zone at bar0+0x%llx len 0x%llx: %zd %s, expected %llu",
		      (unsigned long long)a->off, (unsigned long long)a->len,
		      n, errname(err), (unsigned long long)a->len);
}

/*
 * A write may touch a witness (a sentinel no rule covers) only together
 * with a byte that refuses it: then the whole write must be refused and
 * the witness keep its value (checked at the epoch's end).
 */
static bool write_allowed(const struct access *a)
{
	struct verdict v;

	judge(a, &v);
	return !v.witness || v.deny_w || v.ro_w;
}

/* -- reads and writes ------------------------------------------------ */

static void fill(struct rng *r, uint8_t *buf, uint64_t len)
{
	uint64_t i, pat = rnd(r);

	if (chance(r, 50)) {
		for (i = 0; i < len; i++)
			buf[i] = pat >> (8 * (i & 7));
		return;
	}
	for (i = 0; i < len; i += 8) {
		uint64_t v = rnd(r);

		memcpy(buf + i, &v, len - i < 8 ? len - i : 8);
	}
}

static void op_read(struct worker *w)
{
	struct access a;
	ssize_t n;

	pick_access(w->r, &a);
	n = pread(fz.fd, w->buf, a.len > MAXLEN ? MAXLEN : a.len, a.pos);
	tally_add(&w->st->t[OP_READ], n < 0 ? errno : 0);
	if (a.len <= MAXLEN)
		check_read(&a, n, n < 0 ? errno : 0, w->buf);
}

static void op_write(struct worker *w)
{
	struct access a;
	uint64_t len;
	ssize_t n;

	pick_access(w->r, &a);
	if (!write_allowed(&a))
		return;
	len = a.len > MAXLEN ? MAXLEN : a.len;
	fill(w->r, w->buf, len);
	if (a.index == 0)
		hazard_fix(a.off, w->buf, len);
	/*
	 * Memory decoding off fails every BAR access with EIO: let a tenth
	 * of the writes to the command register turn it off, not half.
	 */
	if (a.index == VFIO_PCI_CONFIG_REGION_INDEX && a.off <= CFG_COMMAND &&
	    a.off + len > CFG_COMMAND && chance(w->r, 90))
		w->buf[CFG_COMMAND - a.off] |= 0x2;
	n = pwrite(fz.fd, w->buf, len, a.pos);
	tally_add(&w->st->t[OP_WRITE], n < 0 ? errno : 0);
	if (a.len <= MAXLEN)
		check_write(&a, n, n < 0 ? errno : 0);
}

/* Used by the open/close thread on its own device fds too. */
void read_sentinel(int fd, struct rng *r, struct stats *st)
{
	struct access a = { .index = 0, .len = 4 };
	uint8_t buf[4];
	ssize_t n;

	a.off = fz.ep.s[below(r, NSENT)].off;
	a.pos = a.off;
	n = pread(fd, buf, 4, a.pos);
	tally_add(&st->t[OP_READ], n < 0 ? errno : 0);
	check_read(&a, n, n < 0 ? errno : 0, buf);
}

/* -- ioctls ---------------------------------------------------------- */

/* argsz: usually right, else anything from 0 to the buffer's size. */
static uint32_t pick_argsz(struct rng *r, uint32_t right, uint32_t max)
{
	switch (below(r, 6)) {
	case 0:
		return below(r, right + 1);
	case 1:
		return below(r, max + 1);
	}
	return right;
}

static int do_ioctl(struct worker *w, enum op op, unsigned long req, void *arg)
{
	int err = xioctl(fz.fd, req, arg);

	tally_add(&w->st->t[op], err);
	return err;
}

static void op_info(struct worker *w)
{
	struct vfio_device_info *info = (void *)w->buf;

	fill(w->r, w->buf, 256);
	info->argsz = pick_argsz(w->r, sizeof(*info), 256);
	do_ioctl(w, OP_INFO, VFIO_DEVICE_GET_INFO, info);
}

/* In a guarded epoch the sparse areas of BAR0 never include page 0. */
static void check_sparse(const struct vfio_region_info *info)
{
	const struct vfio_info_cap_header *h;
	const struct vfio_region_info_cap_sparse_mmap *sp;
	uint32_t at = info->cap_offset, hops, i;

	if (!(info->flags & VFIO_REGION_INFO_FLAG_CAPS))
		return;
	for (hops = 0; at && hops < 16; hops++) {
		if (at < sizeof(*info) || at + sizeof(*h) > info->argsz ||
		    at + sizeof(*h) > 4096)
			return;
		h = (const void *)((const uint8_t *)info + at);
		if (h->id == VFIO_REGION_INFO_CAP_SPARSE_MMAP) {
			sp = (const void *)h;
			for (i = 0; i < sp->nr_areas; i++) {
				if ((uint8_t *)&sp->areas[i + 1] >
				    (uint8_t *)info + info->argsz)
					break;
				if (sp->areas[i].offset < ZONE_END)
					wrong("sparse area 0x%llx+0x%llx of bar0 covers the guard zone",
					      (unsigned long long)sp->areas[i].offset,
					      (unsigned long long)sp->areas[i].size);
			}
		}
		at = h->next;
	}
}

static void op_region_info(struct worker *w)
{
	struct vfio_region_info *info = (void *)w->buf;
	uint32_t index = below(w->r, VFIO_PCI_NUM_REGIONS + 2);

	if (chance(w->r, 5))
		index = rnd(w->r);
	memset(w->buf, 0, 4096);
	info->argsz = pick_argsz(w->r, chance(w->r, 50) ? 4096 : sizeof(*info),
				 4096);
	info->index = index;
	if (do_ioctl(w, OP_REGION_INFO, VFIO_DEVICE_GET_REGION_INFO, info))
		return;
	if (index == 0 && fz.ep.guarded && info->argsz <= 4096) {
		if (info->flags & VFIO_REGION_INFO_FLAG_MMAP &&
		    !(info->flags & VFIO_REGION_INFO_FLAG_CAPS) &&
		    info->argsz >= sizeof(*info) + 8)
			wrong("bar0 with guards reported mmap-able without sparse areas");
		check_sparse(info);
	}
}

static void op_irq_info(struct worker *w)
{
	struct vfio_irq_info *info = (void *)w->buf;

	fill(w->r, w->buf, 64);
	info->argsz = pick_argsz(w->r, sizeof(*info), 64);
	info->index = chance(w->r, 90) ? below(w->r, VFIO_PCI_NUM_IRQS + 1) :
					 rnd(w->r);
	do_ioctl(w, OP_IRQ_INFO, VFIO_DEVICE_GET_IRQ_INFO, info);
}

static int pick_fd(struct worker *w)
{
	switch (below(w->r, 8)) {
	case 0:
		return -1;
	case 1:
		return below(w->r, 64);
	}
	return w->efd[below(w->r, NEFD)];
}

static void op_set_irqs(struct worker *w)
{
	static const uint32_t types[] = {
		VFIO_IRQ_SET_DATA_NONE, VFIO_IRQ_SET_DATA_BOOL,
		VFIO_IRQ_SET_DATA_EVENTFD,
	};
	static const uint32_t actions[] = {
		VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_UNMASK,
		VFIO_IRQ_SET_ACTION_TRIGGER,
	};
	struct vfio_irq_set *set = (void *)w->buf;
	uint32_t i, count, type = types[below(w->r, 3)];
	int32_t *fds = (int32_t *)set->data;
	uint8_t *bools = set->data;
	int err;

	count = chance(w->r, 90) ? below(w->r, 5) : rnd(w->r);
	set->flags = chance(w->r, 95) ? type | actions[below(w->r, 3)] :
					(uint32_t)rnd(w->r);
	set->index = chance(w->r, 95) ? below(w->r, VFIO_PCI_NUM_IRQS + 1) :
					(uint32_t)rnd(w->r);
	set->start = chance(w->r, 90) ? below(w->r, 3) : (uint32_t)rnd(w->r);
	set->count = count;
	for (i = 0; i < 16; i++) {
		fds[i] = pick_fd(w);
		if (type == VFIO_IRQ_SET_DATA_BOOL && i < 4 * 16)
			bools[i] = below(w->r, 3);
	}
	set->argsz = pick_argsz(w->r, sizeof(*set) + 4 * (count < 16 ? count : 16),
				sizeof(*set) + 64);
	err = do_ioctl(w, OP_SET_IRQS, VFIO_DEVICE_SET_IRQS, set);
	if (fz.ep.msi_guard && err != EPERM)
		wrong("SET_IRQS with a guarded MSI capability: %s, expected EPERM",
		      errname(err));
}

static void op_reset(struct worker *w)
{
	/* before the call: a reader may see its effect before it returns */
	atomic_store(&fz.ep.reset_seen, true);
	mig_interfere_begin();	/* a reset returns to RUNNING */
	do_ioctl(w, OP_RESET, VFIO_DEVICE_RESET, NULL);
	mig_interfere_end();
}

static void op_hot_reset_info(struct worker *w)
{
	struct vfio_pci_hot_reset_info *info = (void *)w->buf;

	fill(w->r, w->buf, 256);
	info->argsz = pick_argsz(w->r, chance(w->r, 50) ? 256 : sizeof(*info),
				 256);
	do_ioctl(w, OP_HOT_RESET_INFO, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, info);
}

static void op_hot_reset(struct worker *w)
{
	struct vfio_pci_hot_reset *hr = (void *)w->buf;
	uint32_t count = below(w->r, 4);

	hr->flags = chance(w->r, 90) ? 0 : rnd(w->r);
	hr->count = chance(w->r, 95) ? count : rnd(w->r);
	hr->group_fds[0] = chance(w->r, 80) ? fz.dev.group : pick_fd(w);
	hr->group_fds[1] = pick_fd(w);
	hr->group_fds[2] = fz.dev.group;
	hr->group_fds[3] = -1;
	hr->argsz = pick_argsz(w->r, sizeof(*hr) + 4 * count, sizeof(*hr) + 16);
	atomic_store(&fz.ep.reset_seen, true);
	mig_interfere_begin();
	do_ioctl(w, OP_HOT_RESET, VFIO_DEVICE_PCI_HOT_RESET, hr);
	mig_interfere_end();
}

/* An ioeventfd's write, made safe for edu the way any other write is. */
static uint64_t safe_data(uint64_t off, uint64_t data, unsigned int size)
{
	uint8_t b[8];

	memcpy(b, &data, 8);
	hazard_fix(off, b, size);
	memcpy(&data, b, 8);
	return data;
}

static void op_ioeventfd(struct worker *w)
{
	struct vfio_device_ioeventfd *io = (void *)w->buf;
	unsigned int size = 1u << below(w->r, 4);
	uint64_t off = chance(w->r, 50) ? below(w->r, ZONE_END) & ~(size - 1ULL) :
					  edge(w->r, fz.dev.region_size[0]);
	int err;

	io->argsz = pick_argsz(w->r, sizeof(*io), 64);
	io->flags = chance(w->r, 95) ? size : (uint32_t)rnd(w->r);
	/*
	 * Never bit 63: vfio-pci-core takes the offset as a signed loff_t,
	 * and its BAR index (offset >> 40) then passes "bar > 5" negative and
	 * indexes pdev->resource[] with it: an Oops in vfio_pci_ioeventfd()
	 * on Debian's 6.1 and 6.12, under vfio-pci as under vfmediate (found
	 * by this fuzzer; not ours to fix, see README "Fuzzing").
	 */
	io->offset = chance(w->r, 90) ? off :
				       (rnd(w->r) >> below(w->r, 64)) & ~(1ULL << 63);
	/* data is masked for the whole BAR0 offset, whatever the size */
	io->data = safe_data(io->offset & OFF_MASK, rnd(w->r), 8);
	io->fd = pick_fd(w);
	err = do_ioctl(w, OP_IOEVENTFD, VFIO_DEVICE_IOEVENTFD, io);
	if (fz.ep.bar_write_rule && err != EPERM)
		wrong("IOEVENTFD with a guard on bar0: %s, expected EPERM",
		      errname(err));
	if (!err && io->fd >= 0) {
		uint64_t one = 1;

		/* fire it: the kernel then writes the BAR itself */
		if (write(io->fd, &one, 8) < 0 && errno != EAGAIN)
			die("write eventfd");
	}
}

/* With -m, vfio core's migration features (MIG_DATA_SIZE: 6.3 and later). */
static bool feature_allowed(uint32_t feature)
{
	if (fz.mig && (feature == VFIO_DEVICE_FEATURE_MIGRATION ||
		       feature == VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE ||
		       feature == VFIO_DEVICE_FEATURE_MIG_DATA_SIZE))
		return true;
	return feature == VFIO_DEVICE_FEATURE_PCI_VF_TOKEN ||
	       feature == VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY ||
	       feature == VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP ||
	       feature == VFIO_DEVICE_FEATURE_LOW_POWER_EXIT;
}

static void op_feature(struct worker *w)
{
	static const uint32_t kinds[] = {
		VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_SET,
		VFIO_DEVICE_FEATURE_PROBE,
		VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET,
		VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET,
	};
	struct vfio_device_feature *f = (void *)w->buf;
	uint32_t feature = chance(w->r, 90) ? below(w->r, 12) :
					      (uint16_t)rnd(w->r);
	int32_t *data = (int32_t *)f->data;
	int err;

	fill(w->r, w->buf, 128);
	f->flags = chance(w->r, 95) ? feature | kinds[below(w->r, 5)] :
				      (uint32_t)rnd(w->r);
	feature = f->flags & VFIO_DEVICE_FEATURE_MASK;
	data[0] = pick_fd(w);		/* LOW_POWER_ENTRY_WITH_WAKEUP */
	data[1] = chance(w->r, 90) ? 0 : data[1];
	f->argsz = pick_argsz(w->r, sizeof(*f) + 8, 128);
	if (feature == VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY ||
	    feature == VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP)
		atomic_store(&fz.ep.reset_seen, true);	/* D3hot */
	/* a SET of MIG_DEVICE_STATE moves the state behind mig_op() */
	mig_interfere_begin();
	err = do_ioctl(w, OP_FEATURE, VFIO_DEVICE_FEATURE, f);
	mig_feature_result(f, err);
	mig_interfere_end();
	if (!err && !feature_allowed(feature))
		wrong("VFIO_DEVICE_FEATURE %u (flags 0x%x) succeeded; not allowlisted",
		      feature, f->flags);
}

/*
 * Any ioctl number of VFIO's range with any size and direction, and a
 * few of nobody's. Not IOEVENTFD: its random data would start edu's DMA.
 */
static void op_raw_ioctl(struct worker *w)
{
	unsigned int nr = VFIO_BASE + below(w->r, 32);
	unsigned long req;

	if (nr == VFIO_BASE + 16)	/* VFIO_DEVICE_IOEVENTFD */
		nr++;
	req = _IOC(below(w->r, 4), VFIO_TYPE, nr, below(w->r, 256));
	if (chance(w->r, 50))
		req = _IO(VFIO_TYPE, nr);
	if (chance(w->r, 5))
		req = (uint32_t)rnd(w->r);
	if (_IOC_TYPE(req) == VFIO_TYPE && _IOC_NR(req) == VFIO_BASE + 16)
		return;
	fill(w->r, w->buf, 4096);
	/*
	 * Never a MIG_DEVICE_STATE feature: the data fd it may return would
	 * not be known (op_feature() makes those calls).
	 */
	if (req == VFIO_DEVICE_FEATURE &&
	    (((struct vfio_device_feature *)w->buf)->flags &
	     VFIO_DEVICE_FEATURE_MASK) == VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE)
		((struct vfio_device_feature *)w->buf)->flags ^= 0x100;
	/* resets and low power (VFIO_BASE + 11, 13, 17) may run */
	atomic_store(&fz.ep.reset_seen, true);
	mig_interfere_begin();
	do_ioctl(w, OP_RAW_IOCTL, req, w->buf);
	mig_interfere_end();
}

/* -- mappings -------------------------------------------------------- */

/* volatile: the handler reads it; the stores must not be merged away */
static __thread sigjmp_buf *volatile fault_jmp;

static void on_sigbus(int sig)
{
	if (!fault_jmp) {
		signal(sig, SIG_DFL);
		raise(sig);
	}
	siglongjmp(*fault_jmp, 1);
}

void fault_handler_init(void)
{
	struct sigaction sa = { .sa_handler = on_sigbus };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
}

/*
 * Touch a mapped dword; false when it faulted (memory decoding off, low
 * power, or the mapping revoked).
 */
static bool mmio(volatile uint32_t *p, bool store, uint32_t val)
{
	sigjmp_buf jb;
	volatile bool ok = false;

	if (sigsetjmp(jb, 1) == 0) {
		fault_jmp = &jb;
		if (store)
			*p = val;
		else
			(void)*p;
		ok = true;
	}
	fault_jmp = NULL;
	return ok;
}

static void op_mmap(struct worker *w)
{
	uint64_t npages = below(w->r, 4) + 1;
	uint64_t off = (chance(w->r, 20) ? 0 : below(w->r, 256)) * PAGE;
	uint64_t pos = off;
	int prot = chance(w->r, 70) ? PROT_READ | PROT_WRITE : PROT_READ;
	int flags = chance(w->r, 95) ? MAP_SHARED : MAP_PRIVATE;
	void *p;

	if (w->nmaps == NMAPS)
		return;
	if (chance(w->r, 10))		/* another region, or nowhere */
		pos = ((uint64_t)below(w->r, VFIO_PCI_NUM_REGIONS + 2) << OFF_BITS) |
		      (rnd(w->r) & OFF_MASK & ~(PAGE - 1));
	p = mmap(NULL, npages * PAGE, prot, flags, fz.fd, pos);
	tally_add(&w->st->t[OP_MMAP], p == MAP_FAILED ? errno : 0);
	if (p == MAP_FAILED)
		return;
	if (pos >> OFF_BITS || pos + npages * PAGE > fz.dev.region_size[0])
		wrong("mmap of 0x%llx+%llu pages succeeded outside bar0",
		      (unsigned long long)pos, (unsigned long long)npages);
	if (fz.ep.guarded && pos < ZONE_END)
		wrong("mmap of bar0 page 0 succeeded while guards rule it");
	w->maps[w->nmaps].addr = p;
	w->maps[w->nmaps].len = npages * PAGE;
	w->maps[w->nmaps].off = pos;
	w->nmaps++;
}

static void drop_map(struct worker *w, unsigned int i)
{
	w->maps[i] = w->maps[--w->nmaps];
}

static void op_munmap(struct worker *w)
{
	unsigned int i;
	struct mapping *m;
	int err;

	if (!w->nmaps)
		return;
	i = below(w->r, w->nmaps);
	m = &w->maps[i];
	if (m->len > PAGE && chance(w->r, 30)) {	/* the first page only */
		err = munmap(m->addr, PAGE) ? errno : 0;
		tally_add(&w->st->t[OP_MUNMAP], err);
		if (!err) {
			m->addr += PAGE;
			m->len -= PAGE;
			m->off += PAGE;
		}
		return;
	}
	err = munmap(m->addr, m->len) ? errno : 0;
	tally_add(&w->st->t[OP_MUNMAP], err);
	drop_map(w, i);
}

static void op_mremap(struct worker *w)
{
	struct mapping *m;
	size_t len;
	void *p;

	if (!w->nmaps)
		return;
	m = &w->maps[below(w->r, w->nmaps)];
	len = (below(w->r, 4) + 1) * PAGE;
	p = mremap(m->addr, m->len, len, chance(w->r, 80) ? MREMAP_MAYMOVE : 0);
	tally_add(&w->st->t[OP_MREMAP], p == MAP_FAILED ? errno : 0);
	if (p == MAP_FAILED)
		return;
	m->addr = p;
	m->len = len;
}

static void op_mmio(struct worker *w)
{
	struct mapping *m;
	uint64_t at;
	uint32_t val;
	bool store;

	if (!w->nmaps)
		return;
	m = &w->maps[below(w->r, w->nmaps)];
	at = below(w->r, m->len / 4) * 4;
	store = chance(w->r, 50);
	val = rnd(w->r);
	if (store) {
		if (m->off + at < ZONE_END && fz.ep.guarded)
			wrong("a mapping reaches the guard zone");
		hazard_fix(m->off + at, (uint8_t *)&val, 4);
	}
	/* a store to a read-only mapping faults: that is fine */
	tally_add(&w->st->t[OP_MMIO],
		  mmio((uint32_t *)(m->addr + at), store, val) ? 0 : EFAULT);
}

/* The child touches every inherited mapping, then exits. */
static void op_fork(struct worker *w)
{
	unsigned int i;
	pid_t pid;
	int status;

	if (!w->nmaps)
		return;
	pid = fork();
	if (pid < 0) {
		tally_add(&w->st->t[OP_FORK], errno);
		return;
	}
	if (pid == 0) {
		for (i = 0; i < w->nmaps; i++)
			mmio((uint32_t *)w->maps[i].addr, false, 0);
		_exit(0);
	}
	tally_add(&w->st->t[OP_FORK],
		  waitpid(pid, &status, 0) == pid && WIFEXITED(status) ? 0 : ECHILD);
}

/* -- migration (mig.c, -m) ------------------------------------------ */

static void op_mig(struct worker *w)
{
	mig_op(w->r, w->st, w->buf);
}

static void op_dfd(struct worker *w)
{
	dfd_op(w->r, w->st, w->buf);
}

/* -- the thread ------------------------------------------------------ */

static const struct {
	void (*fn)(struct worker *w);
	unsigned int weight;
} ops[] = {
	{ op_read, 30 }, { op_write, 30 }, { op_info, 2 },
	{ op_region_info, 5 }, { op_irq_info, 2 }, { op_set_irqs, 4 },
	{ op_reset, 1 }, { op_hot_reset_info, 1 }, { op_hot_reset, 1 },
	{ op_ioeventfd, 3 }, { op_feature, 3 }, { op_raw_ioctl, 2 },
	{ op_mmap, 4 }, { op_munmap, 3 }, { op_mremap, 1 }, { op_mmio, 8 },
	{ op_fork, 1 }, { op_mig, 5 }, { op_dfd, 8 },
};

static unsigned int weight(unsigned int i)
{
	bool mig = ops[i].fn == op_mig || ops[i].fn == op_dfd;

	return mig && !fz.mig ? 0 : ops[i].weight;	/* migration: -m */
}

static void one_call(struct worker *w)
{
	unsigned int total = 0, i, k;

	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		total += weight(i);
	k = below(w->r, total);
	for (i = 0; k >= weight(i); i++)
		k -= weight(i);
	atomic_store(&doing[w->who & 63], i);
	ops[i].fn(w);
	atomic_store(&doing[w->who & 63], -1);
}

void fuzz_epoch(struct rng *r, struct stats *st, unsigned int who)
{
	static __thread uint8_t *buf;
	static __thread int efd[NEFD] = { -1, -1, -1, -1 };
	struct worker w = { .r = r, .st = st, .who = who };
	unsigned int i;

	if (!buf && posix_memalign((void **)&buf, PAGE, MAXLEN + PAGE))
		die("posix_memalign");
	for (i = 0; i < NEFD; i++)
		if (efd[i] < 0)
			efd[i] = new_eventfd();
	w.buf = buf;
	memcpy(w.efd, efd, sizeof(efd));
	while (!atomic_load(&fz.stop_epoch) && !count_call())
		one_call(&w);
	/* mappings keep the device open: none may outlive the epoch */
	while (w.nmaps) {
		munmap(w.maps[0].addr, w.maps[0].len);
		drop_map(&w, 0);
	}
}
