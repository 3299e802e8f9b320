// SPDX-License-Identifier: GPL-2.0
/*
 * vfmediate table compiler: rules, possibly overlapping, in; per region
 * and direction a sorted array of disjoint intervals out, plus the pages
 * that stay mmap-able.
 *
 * Overlaps: the most specific rule wins, that is the one with the shorter
 * range; between equally long ranges, the rule whose name sorts first.
 * Every byte is then handled by exactly one rule, or by none (pass).
 */
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/sort.h>

#include "vfmediate_core.h"

struct vfm_counter *vfm_counter_new(void)
{
	struct vfm_counter *c = kzalloc(sizeof(*c), GFP_KERNEL);

	if (c)
		refcount_set(&c->ref, 1);
	return c;
}

struct vfm_counter *vfm_counter_get(struct vfm_counter *c)
{
	refcount_inc(&c->ref);
	return c;
}

void vfm_counter_put(struct vfm_counter *c)
{
	if (c && refcount_dec_and_test(&c->ref))
		kfree(c);
}

struct vfm_table *vfm_table_alloc(void)
{
	struct vfm_table *tbl = kzalloc(sizeof(*tbl), GFP_KERNEL);

	if (tbl)
		tbl->bytes = sizeof(*tbl);
	return tbl;
}

static void vfm_region_table_free(struct vfm_region_table *rt)
{
	int dir;
	u32 i;

	for (dir = 0; dir < 2; dir++) {
		for (i = 0; i < rt->nr[dir]; i++)
			vfm_counter_put(rt->iv[dir][i].ctr);
		kvfree(rt->iv[dir]);
	}
	kfree(rt->areas);
}

/* Free a compiled table; never the pass-through one. */
void vfm_table_free(const struct vfm_table *ctbl)
{
	struct vfm_table *tbl = (struct vfm_table *)ctbl;
	int i;

	if (!tbl || ctbl == &vfm_passthrough_table)
		return;
	for (i = 0; i < VFM_NUM_REGIONS; i++)
		vfm_region_table_free(&tbl->region[i]);
	kfree(tbl);
}

/* The interval holding @off, or the first one after it; NULL if none. */
const struct vfm_interval *vfm_table_find(const struct vfm_region_table *rt,
					  bool iswrite, u64 off)
{
	const struct vfm_interval *iv = rt->iv[iswrite];
	u32 lo = 0, hi = rt->nr[iswrite];

	while (lo < hi) {
		u32 mid = lo + (hi - lo) / 2;

		if (iv[mid].end <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < rt->nr[iswrite] ? &iv[lo] : NULL;
}

static int vfm_cmp_u64(const void *a, const void *b)
{
	u64 x = *(const u64 *)a, y = *(const u64 *)b;

	return x < y ? -1 : x > y;
}

/* Most specific first: shorter range, then name. */
static int vfm_cmp_spec(const void *a, const void *b)
{
	const struct vfm_rule_spec *x = *(const struct vfm_rule_spec **)a;
	const struct vfm_rule_spec *y = *(const struct vfm_rule_spec **)b;
	u64 lx = x->end - x->start, ly = y->end - y->start;

	if (lx != ly)
		return lx < ly ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Index of the first of @n sorted @v not below @x. */
static u32 vfm_lower_bound(const u64 *v, u32 n, u64 x)
{
	u32 lo = 0, hi = n;

	while (lo < hi) {
		u32 mid = lo + (hi - lo) / 2;

		if (v[mid] < x)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Next segment at or after @i not yet given to a rule (path halving). */
static u32 vfm_next_free(u32 *next, u32 i)
{
	while (next[i] != i) {
		next[i] = next[next[i]];
		i = next[i];
	}
	return i;
}

/*
 * Scratch space for compiling one direction of one region: the rules of
 * that direction, the sorted distinct rule boundaries, and for each
 * elementary segment between two boundaries its winning rule.
 */
struct vfm_scratch {
	const struct vfm_rule_spec **rules;
	u64 *bounds;
	const struct vfm_rule_spec **owner;
	u32 *next;
};

static void vfm_scratch_free(struct vfm_scratch *s)
{
	kvfree(s->rules);
	kvfree(s->bounds);
	kvfree(s->owner);
	kvfree(s->next);
}

static int vfm_scratch_alloc(struct vfm_scratch *s, u32 n)
{
	s->rules = kvmalloc_array(n, sizeof(*s->rules), GFP_KERNEL);
	s->bounds = kvmalloc_array(2 * n, sizeof(*s->bounds), GFP_KERNEL);
	s->owner = kvcalloc(2 * n, sizeof(*s->owner), GFP_KERNEL);
	s->next = kvmalloc_array(2 * n, sizeof(*s->next), GFP_KERNEL);
	if (s->rules && s->bounds && s->owner && s->next)
		return 0;
	vfm_scratch_free(s);
	return -ENOMEM;
}

/* Give each segment the most specific rule covering it. */
static void vfm_paint(struct vfm_scratch *s, u32 nr, u32 nb)
{
	u32 i, seg;

	for (i = 0; i < nb; i++)
		s->next[i] = i;		/* segment nb - 1 is a sentinel */
	for (i = 0; i < nr; i++) {
		const struct vfm_rule_spec *r = s->rules[i];

		seg = vfm_lower_bound(s->bounds, nb, r->start);
		for (seg = vfm_next_free(s->next, seg);
		     seg < nb - 1 && s->bounds[seg] < r->end;
		     seg = vfm_next_free(s->next, seg)) {
			s->owner[seg] = r;
			s->next[seg] = seg + 1;
		}
	}
}

/* What a rule does to an access of one direction. */
static u8 vfm_effective_action(const struct vfm_rule_spec *r, bool iswrite)
{
	if (r->action == VFM_RO)
		return iswrite ? VFM_RO : VFM_PASS;
	return r->action;
}

/*
 * Turn painted segments into intervals, merging neighbours of one rule.
 * Pass rules without audit still become intervals (they override broader
 * rules) but count nothing: they cost no more than no rule.
 */
static int vfm_emit(struct vfm_region_table *rt, bool iswrite,
		    struct vfm_scratch *s, u32 nb)
{
	struct vfm_interval *iv, *last = NULL;
	u32 seg, n = 0;

	iv = kvcalloc(nb, sizeof(*iv), GFP_KERNEL);
	if (!iv)
		return -ENOMEM;
	for (seg = 0; seg + 1 < nb; seg++) {
		const struct vfm_rule_spec *r = s->owner[seg];

		if (!r)
			continue;
		if (last && s->owner[seg - 1] == r && last->end == s->bounds[seg]) {
			last->end = s->bounds[seg + 1];
			continue;
		}
		last = &iv[n++];
		last->start = s->bounds[seg];
		last->end = s->bounds[seg + 1];
		last->action = vfm_effective_action(r, iswrite);
		if (r->ctr && (r->audit || r->action != VFM_PASS))
			last->ctr = vfm_counter_get(r->ctr);
	}
	rt->iv[iswrite] = iv;
	rt->nr[iswrite] = n;
	return 0;
}

static int vfm_build_dir(struct vfm_region_table *rt, bool iswrite,
			 struct vfm_rule_spec *specs, u32 n)
{
	u8 want = iswrite ? VFM_ACCESS_WRITE : VFM_ACCESS_READ;
	struct vfm_scratch s;
	u32 i, nr = 0, nb = 0;
	int ret;

	if (!n)
		return 0;
	ret = vfm_scratch_alloc(&s, n);
	if (ret)
		return ret;
	for (i = 0; i < n; i++) {
		if (!(specs[i].access & want))
			continue;
		s.rules[nr++] = &specs[i];
		s.bounds[nb++] = specs[i].start;
		s.bounds[nb++] = specs[i].end;
	}
	if (nr) {
		sort(s.bounds, nb, sizeof(*s.bounds), vfm_cmp_u64, NULL);
		for (i = 1, nb = 1; i < 2 * nr; i++)
			if (s.bounds[i] != s.bounds[nb - 1])
				s.bounds[nb++] = s.bounds[i];
		sort(s.rules, nr, sizeof(*s.rules), vfm_cmp_spec, NULL);
		vfm_paint(&s, nr, nb);
		ret = vfm_emit(rt, iswrite, &s, nb);
	}
	vfm_scratch_free(&s);
	return ret;
}

/* Page-granular [start, end) spans touched by any interval, merged. */
static u32 vfm_ruled_pages(const struct vfm_region_table *rt, u64 *span)
{
	u32 dir, i, n = 0, m = 0;

	for (dir = 0; dir < 2; dir++) {
		for (i = 0; i < rt->nr[dir]; i++) {
			span[2 * n] = round_down(rt->iv[dir][i].start, PAGE_SIZE);
			span[2 * n + 1] = round_up(rt->iv[dir][i].end, PAGE_SIZE);
			n++;
		}
	}
	/* Pairs sort by start: spans are [start, end) pairs of u64. */
	sort(span, n, 2 * sizeof(*span), vfm_cmp_u64, NULL);
	for (i = 0; i < n; i++) {
		if (m && span[2 * i] <= span[2 * m - 1]) {
			span[2 * m - 1] = max(span[2 * m - 1], span[2 * i + 1]);
			continue;
		}
		span[2 * m] = span[2 * i];
		span[2 * m + 1] = span[2 * i + 1];
		m++;
	}
	return m;
}

/* The mmap-able complement of the ruled pages of a BAR of @len bytes. */
static int vfm_build_areas(struct vfm_region_table *rt, u64 len)
{
	struct vfio_region_sparse_mmap_area *a;
	u64 *span, pos = 0, end = PAGE_ALIGN(len);
	u32 i, m, n = 0;

	span = kvmalloc_array(2 * (rt->nr[0] + rt->nr[1]), sizeof(*span),
			      GFP_KERNEL);
	if (!span)
		return -ENOMEM;
	m = vfm_ruled_pages(rt, span);
	a = kcalloc(m + 1, sizeof(*a), GFP_KERNEL);
	if (!a) {
		kvfree(span);
		return -ENOMEM;
	}
	for (i = 0; i <= m; i++) {
		u64 stop = i < m ? min(span[2 * i], end) : end;

		if (stop > pos) {
			a[n].offset = pos;
			a[n].size = stop - pos;
			n++;
		}
		if (i < m)
			pos = max(pos, span[2 * i + 1]);
	}
	kvfree(span);
	rt->areas = a;
	rt->nr_areas = n;
	return 0;
}

static size_t vfm_region_bytes(const struct vfm_region_table *rt)
{
	return (rt->nr[0] + rt->nr[1]) * sizeof(struct vfm_interval) +
	       rt->nr_areas * sizeof(*rt->areas);
}

/*
 * Compile the @n rules of region @index into @tbl. Ranges must already be
 * checked against the region. @mmap_off traps the whole region for mmap.
 */
int vfm_table_build_region(struct vfm_device *vd, struct vfm_table *tbl,
			   unsigned int index, struct vfm_rule_spec *specs,
			   u32 n, bool mmap_off)
{
	struct vfm_region_table *rt = &tbl->region[index];
	bool bar = index <= VFIO_PCI_BAR5_REGION_INDEX;
	int ret;

	ret = vfm_build_dir(rt, false, specs, n);
	if (!ret)
		ret = vfm_build_dir(rt, true, specs, n);
	if (ret)
		return ret;

	rt->ruled = rt->nr[0] || rt->nr[1] || (bar && mmap_off);
	if (rt->ruled && bar && !mmap_off &&
	    vd->core.bar_mmap_supported[index]) {
		ret = vfm_build_areas(rt, vfm_region_len(vd, index));
		if (ret)
			return ret;
	}
	tbl->bytes += vfm_region_bytes(rt);
	return 0;
}
