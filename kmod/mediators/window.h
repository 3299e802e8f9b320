/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The "bar=N,range=RANGE" argument string of the regshadow and nop
 * mediators: one window of one BAR.
 *
 *	bar=N		BAR number, 0 to 5
 *	range=RANGE	START-END (END inclusive, as in /proc/iomem) or
 *			START+LEN; numbers in decimal or 0x-prefixed hex
 *
 * Both keys once each, in either order, separated by a comma, no spaces;
 * leading and trailing white space is ignored. As for the core's rule
 * ranges, a malformed string is -EINVAL; an inverted, empty or
 * overflowing range and a BAR number above 5 are -ERANGE.
 *
 * Static inline, so that each mediator module stays self-contained.
 */
#ifndef _VFM_MEDIATORS_WINDOW_H
#define _VFM_MEDIATORS_WINDOW_H

#include <linux/ctype.h>
#include <linux/kernel.h>
#include <linux/overflow.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/vfio.h>
#include <linux/vfmediate.h>

struct med_window {
	unsigned int bar;
	u64 start;
	u64 len;		/* 0: no window given */
};

/* A number in decimal or 0x-prefixed hex; no sign, no octal. */
static inline int med_parse_u64(const char *s, u64 *val)
{
	if (!isdigit(s[0]))
		return -EINVAL;
	if (s[0] == '0' && tolower(s[1]) == 'x')
		return kstrtoull(s, 16, val);
	return kstrtoull(s, 10, val);
}

/* START-END or START+LEN into a start and a non-zero length. */
static inline int med_parse_range(char *s, u64 *start, u64 *len)
{
	char *p = strpbrk(s, "-+");
	u64 start_v, v, last;
	char sep;
	int ret;

	if (!p)
		return -EINVAL;
	sep = *p;
	*p++ = '\0';
	ret = med_parse_u64(s, &start_v);
	if (!ret)
		ret = med_parse_u64(p, &v);
	if (ret)
		return ret;

	if (sep == '-') {
		if (v < start_v)
			return -ERANGE;
		if (v - start_v == U64_MAX)
			return -ERANGE;
		*len = v - start_v + 1;
	} else {
		if (!v)
			return -ERANGE;
		if (check_add_overflow(start_v, v - 1, &last))
			return -ERANGE;
		*len = v;
	}
	*start = start_v;
	return 0;
}

/*
 * Parse @args into @w. An empty string gives w->len == 0; a caller that
 * needs a window refuses that.
 */
static inline int med_window_parse(const char *args, struct med_window *w)
{
	bool have_bar = false, have_range = false;
	char *buf, *s, *key, *val;
	u64 bar = 0;
	int ret = 0;

	memset(w, 0, sizeof(*w));
	buf = kstrdup(args, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;

	s = strim(buf);
	if (!*s)
		goto out;
	while (!ret && s) {
		key = strsep(&s, ",");
		val = strchr(key, '=');
		if (!val) {
			ret = -EINVAL;
			break;
		}
		*val++ = '\0';
		if (!strcmp(key, "bar") && !have_bar) {
			have_bar = true;
			ret = med_parse_u64(val, &bar);
			if (!ret && bar > VFIO_PCI_BAR5_REGION_INDEX)
				ret = -ERANGE;
		} else if (!strcmp(key, "range") && !have_range) {
			have_range = true;
			ret = med_parse_range(val, &w->start, &w->len);
		} else {
			ret = -EINVAL;
		}
	}
	if (!ret && !(have_bar && have_range))
		ret = -EINVAL;
	w->bar = bar;
out:
	kfree(buf);
	return ret;
}

/* At open: the window must lie inside the BAR the device really has. */
static inline int med_window_check(struct vfm_device *vd,
				   const struct med_window *w)
{
	u64 size = vfm_region_size(vd, w->bar);

	if (w->start >= size || w->len > size - w->start)
		return -ERANGE;
	return 0;
}

#endif /* _VFM_MEDIATORS_WINDOW_H */
