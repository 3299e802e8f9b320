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
#include <linux/percpu.h>
#include <linux/slab.h>

#include "vfmediate_core.h"

/* The counter of rule @name of region @region of device @dev. */
struct vfm_counter *vfm_counter_new(const char *dev, unsigned int region,
				    const char *name)
{
	struct vfm_counter *c = kzalloc(sizeof(*c), GFP_KERNEL);

	if (!c)
		return NULL;
	c->pcpu = alloc_percpu(struct vfm_counts);
	if (!c->pcpu) {
		kfree(c);
		return NULL;
	}
	refcount_set(&c->ref, 1);
	c->region = region;
	strscpy(c->dev, dev, sizeof(c->dev));
	strscpy(c->name, name, sizeof(c->name));
	vfm_events_counter_init(c);
	return c;
}

struct vfm_counter *vfm_counter_get(struct vfm_counter *c)
{
	refcount_inc(&c->ref);
	return c;
}

/* May run in atomic context: from an RCU callback freeing a table. */
void vfm_counter_put(struct vfm_counter *c)
{
	if (c && refcount_dec_and_test(&c->ref)) {
		free_percpu(c->pcpu);
		kfree(c);
	}
}

/* The sums over every CPU; each may be a moment old. */
void vfm_counter_read(const struct vfm_counter *c, struct vfm_counts *sum)
{
	int cpu;

	*sum = (struct vfm_counts){};
	for_each_possible_cpu(cpu) {
		const struct vfm_counts *p = per_cpu_ptr(c->pcpu, cpu);

		sum->hits += READ_ONCE(p->hits);
		sum->bytes += READ_ONCE(p->bytes);
		sum->refused += READ_ONCE(p->refused);
	}
}

/* Size of region @index of the bound device, as VFIO reports it. */
u64 vfm_region_len(struct vfm_device *vd, unsigned int index)
{
	struct pci_dev *pdev = vd->core.pdev;

	switch (index) {
	case VFIO_PCI_BAR0_REGION_INDEX ... VFIO_PCI_BAR5_REGION_INDEX:
		return pci_resource_len(pdev, index);
	case VFIO_PCI_ROM_REGION_INDEX:
		if (pci_resource_len(pdev, PCI_ROM_RESOURCE))
			return pci_resource_len(pdev, PCI_ROM_RESOURCE);
		if (pdev->resource[PCI_ROM_RESOURCE].flags & IORESOURCE_ROM_SHADOW)
			return 0x20000;
		return 0;
	case VFIO_PCI_CONFIG_REGION_INDEX:
		return pdev->cfg_size;
	case VFIO_PCI_VGA_REGION_INDEX:
		/*
		 * vfio-pci-core sets has_vga when it enables the device, at
		 * open; before, go by the class, as it does. A rule accepted
		 * then on a device it gives no VGA region (its disable_vga)
		 * fails the open.
		 */
		if (READ_ONCE(vd->enabled))
			return vd->core.has_vga ? 0xc0000 : 0;
		return (pdev->class >> 8) == PCI_CLASS_DISPLAY_VGA ? 0xc0000 : 0;
	default:
		return 0;
	}
}

struct vfm_table *vfm_table_alloc(void)
{
	return kzalloc(sizeof(struct vfm_table), GFP_KERNEL);
}

struct vfm_rules *vfm_rules_alloc(void)
{
	struct vfm_rules *rules = kzalloc(sizeof(*rules), GFP_KERNEL);

	if (rules) {
		refcount_set(&rules->ref, 1);
		rules->bytes = sizeof(*rules);
	}
	return rules;
}

struct vfm_rules *vfm_rules_get(struct vfm_rules *rules)
{
	refcount_inc(&rules->ref);
	return rules;
}

static void vfm_region_table_free(struct vfm_region_table *rt, bool packed)
{
	int dir;
	u32 i;

	for (dir = 0; dir < 2; dir++) {
		for (i = 0; i < rt->nr[dir]; i++)
			vfm_counter_put(rt->iv[dir][i].ctr);
		if (!packed)
			kvfree(rt->iv[dir]);
		bitmap_free(rt->filter[dir].bits);
	}
	kfree(rt->areas);
}

/* Never the pass-through table's rules, which are static. */
void vfm_rules_put(const struct vfm_rules *crules)
{
	struct vfm_rules *rules = (struct vfm_rules *)crules;
	int i;

	if (!rules || !refcount_dec_and_test(&rules->ref))
		return;
	for (i = 0; i < VFM_NUM_REGIONS; i++)
		vfm_region_table_free(&rules->region[i], rules->packed);
	kfree(rules->traps);
	kvfree(rules);
}

/*
 * @rules, compiled and not yet shared, moved into one allocation with all
 * its intervals after it: an access then finds its region's table and
 * intervals side by side (in one page, for a table of a few dozen
 * intervals) rather than in allocations of their own. Under emulation
 * each page an access touches costs a lookup of its own. Without the
 * memory for it, @rules stays as it is.
 */
struct vfm_rules *vfm_rules_pack(struct vfm_rules *rules)
{
	struct vfm_rules *packed;
	struct vfm_interval *iv;
	size_t n = 0;
	int i, dir;

	for (i = 0; i < VFM_NUM_REGIONS; i++)
		n += rules->region[i].nr[0] + rules->region[i].nr[1];
	packed = kvmalloc(struct_size(packed, iv, n), GFP_KERNEL);
	if (!packed)
		return rules;
	*packed = *rules;
	packed->packed = true;
	iv = packed->iv;
	for (i = 0; i < VFM_NUM_REGIONS; i++) {
		struct vfm_region_table *rt = &packed->region[i];

		for (dir = 0; dir < 2; dir++) {
			if (rt->nr[dir])
				memcpy(iv, rt->iv[dir], rt->nr[dir] * sizeof(*iv));
			kvfree(rt->iv[dir]);
			rt->iv[dir] = rt->nr[dir] ? iv : NULL;
			iv += rt->nr[dir];
		}
	}
	kfree(rules);
	return packed;
}

/* Free a compiled table; never the pass-through one. */
void vfm_table_free(const struct vfm_table *tbl)
{
	if (!tbl || tbl == &vfm_passthrough_table)
		return;
	vfm_rules_put(tbl->rules);
	kfree(tbl->margs);
	kfree(tbl);
}

/*
 * Most specific first: shorter range, then name. The order rules are
 * painted in, so it decides every overlap.
 */
static bool vfm_spec_before(const struct vfm_rule_spec *x,
			    const struct vfm_rule_spec *y)
{
	u64 lx = x->end - x->start, ly = y->end - y->start;

	if (lx != ly)
		return lx < ly;
	return strcmp(x->name, y->name) < 0;
}

/*
 * Two bottom-up merge sorts, one per element type, with the comparison
 * inlined: the library sort() is a heapsort that calls its comparison
 * through a (retpolined) function pointer, which made it most of the
 * compile time. Input already in order, the usual case (rules are mostly
 * made in address order), costs one pass. @tmp holds @n elements.
 */
static void vfm_sort_u64(u64 *a, u32 n, u64 *tmp)
{
	u64 *src = a, *dst = tmp;
	u32 w, l, k;

	for (k = 1; k < n && a[k - 1] <= a[k]; k++)
		;
	if (k >= n)
		return;
	for (w = 1; w < n; w *= 2) {
		for (l = 0; l < n; l += 2 * w) {
			u32 m = min(l + w, n), r = min(l + 2 * w, n);
			u32 p = l, q = m;

			for (k = l; k < r; k++)
				dst[k] = p < m && (q >= r || src[p] <= src[q]) ?
					 src[p++] : src[q++];
		}
		swap(src, dst);
	}
	if (src != a)
		memcpy(a, src, n * sizeof(*a));
}

static void vfm_sort_specs(const struct vfm_rule_spec **a, u32 n,
			   const struct vfm_rule_spec **tmp)
{
	const struct vfm_rule_spec **src = a, **dst = tmp;
	u32 w, l, k;

	for (k = 1; k < n && !vfm_spec_before(a[k], a[k - 1]); k++)
		;
	if (k >= n)
		return;
	for (w = 1; w < n; w *= 2) {
		for (l = 0; l < n; l += 2 * w) {
			u32 m = min(l + w, n), r = min(l + 2 * w, n);
			u32 p = l, q = m;

			for (k = l; k < r; k++)
				dst[k] = p < m && (q >= r ||
					 !vfm_spec_before(src[q], src[p])) ?
					 src[p++] : src[q++];
		}
		swap(src, dst);
	}
	if (src != a)
		memcpy(a, src, n * sizeof(*a));
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
	const struct vfm_rule_spec **rtmp;
};

static void vfm_scratch_free(struct vfm_scratch *s)
{
	kvfree(s->rules);
	kvfree(s->bounds);
	kvfree(s->owner);
	kvfree(s->next);
	kvfree(s->rtmp);
}

static int vfm_scratch_alloc(struct vfm_scratch *s, u32 n)
{
	s->rules = kvmalloc_array(n, sizeof(*s->rules), GFP_KERNEL);
	s->bounds = kvmalloc_array(4 * n, sizeof(*s->bounds), GFP_KERNEL);
	s->owner = kvcalloc(2 * n, sizeof(*s->owner), GFP_KERNEL);
	s->rtmp = kvmalloc_array(n, sizeof(*s->rtmp), GFP_KERNEL);
	s->next = kvmalloc_array(2 * n, sizeof(*s->next), GFP_KERNEL);
	if (s->rules && s->bounds && s->owner && s->next && s->rtmp)
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
		last->audit = r->audit;
		if (r->ctr && (r->audit || r->action != VFM_PASS)) {
			last->ctr = vfm_counter_get(r->ctr);
			last->pcpu = r->ctr->pcpu;
		}
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
		vfm_sort_u64(s.bounds, nb, s.bounds + 2 * n);
		for (i = 1, nb = 1; i < 2 * nr; i++)
			if (s.bounds[i] != s.bounds[nb - 1])
				s.bounds[nb++] = s.bounds[i];
		vfm_sort_specs(s.rules, nr, s.rtmp);
		vfm_paint(&s, nr, nb);
		ret = vfm_emit(rt, iswrite, &s, nb);
	}
	vfm_scratch_free(&s);
	return ret;
}

/* Page-granular [start, end) spans touched by any interval, merged. */
static u32 vfm_ruled_pages(const struct vfm_region_table *rt, u64 *span)
{
	const struct vfm_interval *r = rt->iv[0], *w = rt->iv[1];
	u32 nr = rt->nr[0], nw = rt->nr[1], i, n = 0, m = 0;

	/* Each direction's intervals are sorted by start: merge them. */
	while (nr || nw) {
		const struct vfm_interval *iv;

		if (nr && (!nw || r->start <= w->start)) {
			iv = r++;
			nr--;
		} else {
			iv = w++;
			nw--;
		}
		span[2 * n] = round_down(iv->start, PAGE_SIZE);
		span[2 * n + 1] = round_up(iv->end, PAGE_SIZE);
		n++;
	}
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

/*
 * A plain pass interval (no audit, no hit counter) does what no interval
 * does: the access goes to vfio-pci-core. Such intervals are needed to
 * paint (they override broader rules) and for the mmap areas (a rule's
 * pages are never mapped), not for dispatch: leave them out of it, into
 * an array of the right size.
 */
static int vfm_drop_plain_pass(struct vfm_region_table *rt, bool iswrite)
{
	struct vfm_interval *iv = rt->iv[iswrite], *keep;
	u32 i, n = 0;

	for (i = 0; i < rt->nr[iswrite]; i++)
		n += iv[i].action != VFM_PASS || iv[i].ctr;
	keep = n ? kvmalloc_array(n, sizeof(*keep), GFP_KERNEL) : NULL;
	if (n && !keep)
		return -ENOMEM;
	for (i = 0, n = 0; i < rt->nr[iswrite]; i++)
		if (iv[i].action != VFM_PASS || iv[i].ctr)
			keep[n++] = iv[i];
	kvfree(iv);
	rt->iv[iswrite] = keep;
	rt->nr[iswrite] = n;
	return 0;
}

/*
 * The filter of one direction: the span [lo, hi) of its intervals and,
 * past VFM_FILTER_MIN of them, a bitmap of the granules of the span that
 * hold one, the granule being the smallest power of two from a page up
 * that keeps the bitmap within VFM_FILTER_BITS.
 */
static int vfm_build_filter(struct vfm_region_table *rt, bool iswrite)
{
	const struct vfm_interval *iv = rt->iv[iswrite];
	struct vfm_filter *f = &rt->filter[iswrite];
	u32 i, n = rt->nr[iswrite];
	u64 g;

	if (!n)
		return 0;
	f->lo = iv[0].start;
	f->hi = iv[n - 1].end;
	if (n <= VFM_FILTER_MIN)
		return 0;
	f->shift = PAGE_SHIFT;
	while ((f->hi - f->lo - 1) >> f->shift >= VFM_FILTER_BITS)
		f->shift++;
	f->bits = bitmap_zalloc(((f->hi - f->lo - 1) >> f->shift) + 1,
				GFP_KERNEL);
	if (!f->bits)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		for (g = (iv[i].start - f->lo) >> f->shift;
		     g <= (iv[i].end - 1 - f->lo) >> f->shift; g++)
			__set_bit(g, f->bits);
	return 0;
}

static size_t vfm_region_bytes(const struct vfm_region_table *rt)
{
	size_t bytes = (rt->nr[0] + rt->nr[1]) * sizeof(struct vfm_interval) +
		       rt->nr_areas * sizeof(*rt->areas);
	int dir;

	for (dir = 0; dir < 2; dir++)
		if (rt->filter[dir].bits)
			bytes += BITS_TO_LONGS(vfm_filter_bits(&rt->filter[dir])) *
				 sizeof(long);
	return bytes;
}

/*
 * Compile the @n rules of region @index into @rules. Ranges must already be
 * checked against the region. @mmap_off traps the whole region for mmap.
 */
int vfm_rules_build_region(struct vfm_device *vd, struct vfm_rules *rules,
			   unsigned int index, struct vfm_rule_spec *specs,
			   u32 n, bool mmap_off)
{
	struct vfm_region_table *rt = &rules->region[index];
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
	ret = vfm_drop_plain_pass(rt, false);
	if (!ret)
		ret = vfm_drop_plain_pass(rt, true);
	if (!ret)
		ret = vfm_build_filter(rt, false);
	if (!ret)
		ret = vfm_build_filter(rt, true);
	if (ret)
		return ret;
	rules->bytes += vfm_region_bytes(rt);
	return 0;
}
