// SPDX-License-Identifier: GPL-2.0
/*
 * vfmediate configfs: regions/<name>/ of a device and the rules in them,
 *
 *   regions/<config|bar0..bar5|rom|vga>/
 *     mmap
 *     rules/<name>/             mkdir
 *       range access action audit hits
 *
 * Every store parses and validates completely, then changes the staged
 * configuration under vfm_config_lock, or changes nothing and fails.
 */
#include <linux/ctype.h>
#include <linux/kernel.h>
#include <linux/overflow.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "config.h"

static const char * const vfm_action_names[VFM_NR_ACTIONS] = {
	[VFM_PASS] = "pass",
	[VFM_TRAP] = "trap",
	[VFM_RO] = "ro",
	[VFM_DENY] = "deny",
	[VFM_IGNORE] = "ignore",
};

static const char * const vfm_access_names[] = {
	[VFM_ACCESS_READ] = "r",
	[VFM_ACCESS_WRITE] = "w",
	[VFM_ACCESS_RW] = "rw",
};

/* Copy an attribute write into @buf without its trailing newline. */
int vfm_strip(char *buf, size_t size, const char *page, size_t count)
{
	if (count && page[count - 1] == '\n')
		count--;
	if (count >= size || memchr(page, '\0', count))
		return -EINVAL;
	memcpy(buf, page, count);
	buf[count] = '\0';
	return 0;
}

/* Index of @s in @names (NULL entries skipped), or -EINVAL. */
int vfm_match(const char * const *names, int n, const char *page,
	      size_t count)
{
	char buf[16];
	int i;

	if (vfm_strip(buf, sizeof(buf), page, count))
		return -EINVAL;
	for (i = 0; i < n; i++)
		if (names[i] && !strcmp(buf, names[i]))
			return i;
	return -EINVAL;
}

/* -ERANGE if [start, end) does not fit the region of a bound device. */
static int vfm_check_fits(struct vfm_cfg_region *region, u64 start, u64 end)
{
	struct vfm_device *vd = region->dev->vd;

	if (vd && end > vfm_region_len(vd, region->index))
		return -ERANGE;
	return 0;
}

/* ---- rules/<name>/ ---- */

/*
 * A number: "0x" and hex digits, or decimal digits (a leading 0 is not
 * octal). Nothing else, not even a sign or space. Too big: -ERANGE.
 */
static int vfm_parse_u64(const char *s, u64 *v)
{
	unsigned int base = 10;
	const char *p;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		s += 2;
		base = 16;
	}
	if (!*s)
		return -EINVAL;
	for (p = s; *p; p++)
		if (base == 16 ? !isxdigit(*p) : !isdigit(*p))
			return -EINVAL;
	return kstrtou64(s, base, v);
}

/*
 * "START-END" (END inclusive, as /proc/iomem) or "START+LEN", each number
 * hex (0x) or decimal. Malformed: -EINVAL; inverted, empty, overflowing
 * or beyond any VFIO region offset: -ERANGE.
 */
static int vfm_parse_range(const char *page, size_t count, u64 *start,
			   u64 *end)
{
	char buf[48], *sep;
	u64 a, b;
	int ret;

	if (vfm_strip(buf, sizeof(buf), page, count))
		return -EINVAL;
	sep = strpbrk(buf, "-+");
	if (!sep || sep == buf)
		return -EINVAL;
	ret = *sep == '-' ? 1 : 0;
	*sep = '\0';
	if (vfm_parse_u64(buf, &a) == -EINVAL ||
	    vfm_parse_u64(sep + 1, &b) == -EINVAL)
		return -EINVAL;
	if (vfm_parse_u64(buf, &a) || vfm_parse_u64(sep + 1, &b))
		return -ERANGE;
	if (ret) {
		if (b < a || b > VFIO_PCI_OFFSET_MASK)
			return -ERANGE;
		*end = b + 1;
	} else if (!b || check_add_overflow(a, b, end)) {
		return -ERANGE;
	}
	if (*end > VFIO_PCI_OFFSET_MASK + 1)
		return -ERANGE;
	*start = a;
	return 0;
}

static ssize_t vfm_rule_range_show(struct config_item *item, char *page)
{
	struct vfm_cfg_rule *r = to_cfg_rule(item);
	ssize_t len;

	mutex_lock(&vfm_config_lock);
	if (r->end)
		len = sysfs_emit(page, "%#llx-%#llx\n", r->start, r->end - 1);
	else
		len = sysfs_emit(page, "\n");
	mutex_unlock(&vfm_config_lock);
	return len;
}

static ssize_t vfm_rule_range_store(struct config_item *item,
				    const char *page, size_t count)
{
	struct vfm_cfg_rule *r = to_cfg_rule(item);
	u64 start, end;
	int ret;

	ret = vfm_parse_range(page, count, &start, &end);
	if (ret)
		return ret;
	mutex_lock(&vfm_config_lock);
	ret = vfm_check_fits(r->region, start, end);
	if (!ret) {
		r->start = start;
		r->end = end;
		vfm_staged(r->region->dev);
	}
	mutex_unlock(&vfm_config_lock);
	return ret ?: count;
}

static ssize_t vfm_rule_access_show(struct config_item *item, char *page)
{
	return sysfs_emit(page, "%s\n",
			  vfm_access_names[READ_ONCE(to_cfg_rule(item)->access)]);
}

static ssize_t vfm_rule_access_store(struct config_item *item,
				     const char *page, size_t count)
{
	struct vfm_cfg_rule *r = to_cfg_rule(item);
	int access, ret = 0;

	access = vfm_match(vfm_access_names, ARRAY_SIZE(vfm_access_names),
			   page, count);
	if (access < 0)
		return access;
	mutex_lock(&vfm_config_lock);
	if (r->action == VFM_TRAP)
		ret = vfm_can_trap(vfm_cfg_ops(r->region->dev), access);
	if (!ret) {
		WRITE_ONCE(r->access, access);
		vfm_staged(r->region->dev);
	}
	mutex_unlock(&vfm_config_lock);
	return ret ?: count;
}

static ssize_t vfm_rule_action_show(struct config_item *item, char *page)
{
	return sysfs_emit(page, "%s\n",
			  vfm_action_names[READ_ONCE(to_cfg_rule(item)->action)]);
}

static ssize_t vfm_rule_action_store(struct config_item *item,
				     const char *page, size_t count)
{
	struct vfm_cfg_rule *r = to_cfg_rule(item);
	int action, ret = 0;

	action = vfm_match(vfm_action_names, VFM_NR_ACTIONS, page, count);
	if (action < 0)
		return action;
	mutex_lock(&vfm_config_lock);
	if (action == VFM_TRAP)
		ret = vfm_can_trap(vfm_cfg_ops(r->region->dev), r->access);
	if (!ret) {
		WRITE_ONCE(r->action, action);
		vfm_staged(r->region->dev);
	}
	mutex_unlock(&vfm_config_lock);
	return ret ?: count;
}

static ssize_t vfm_rule_audit_show(struct config_item *item, char *page)
{
	return sysfs_emit(page, "%d\n", READ_ONCE(to_cfg_rule(item)->audit));
}

static ssize_t vfm_rule_audit_store(struct config_item *item,
				    const char *page, size_t count)
{
	struct vfm_cfg_rule *r = to_cfg_rule(item);
	int audit;

	audit = vfm_match((const char * const []){ "0", "1" }, 2, page, count);
	if (audit < 0)
		return audit;
	mutex_lock(&vfm_config_lock);
	WRITE_ONCE(r->audit, audit);
	vfm_staged(r->region->dev);
	mutex_unlock(&vfm_config_lock);
	return count;
}

static ssize_t vfm_rule_hits_show(struct config_item *item, char *page)
{
	struct vfm_counts sum;

	vfm_counter_read(to_cfg_rule(item)->ctr, &sum);
	return sysfs_emit(page, "%llu\n", sum.hits);
}

CONFIGFS_ATTR(vfm_rule_, range);
CONFIGFS_ATTR(vfm_rule_, access);
CONFIGFS_ATTR(vfm_rule_, action);
CONFIGFS_ATTR(vfm_rule_, audit);
CONFIGFS_ATTR_RO(vfm_rule_, hits);

static struct configfs_attribute *vfm_rule_attrs[] = {
	&vfm_rule_attr_range,
	&vfm_rule_attr_access,
	&vfm_rule_attr_action,
	&vfm_rule_attr_audit,
	&vfm_rule_attr_hits,
	NULL,
};

static void vfm_rule_release(struct config_item *item)
{
	struct vfm_cfg_rule *r = to_cfg_rule(item);

	vfm_counter_put(r->ctr);
	kfree(r);
}

static struct configfs_item_operations vfm_rule_item_ops = {
	.release = vfm_rule_release,
};

static const struct config_item_type vfm_rule_type = {
	.ct_item_ops = &vfm_rule_item_ops,
	.ct_attrs = vfm_rule_attrs,
	.ct_owner = THIS_MODULE,
};

/* Rule names: 1..63 characters of [A-Za-z0-9_.:-]. */
static bool vfm_valid_rule_name(const char *name)
{
	size_t i, len = strnlen(name, VFM_RULE_NAME_LEN);

	if (!len || len >= VFM_RULE_NAME_LEN)
		return false;
	for (i = 0; i < len; i++) {
		char c = name[i];

		/* Not isalnum(): the kernel's ctype takes Latin-1 letters. */
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || strchr("_.:-", c)))
			return false;
	}
	return true;
}

static struct config_item *vfm_rules_make_item(struct config_group *group,
					       const char *name)
{
	struct vfm_cfg_region *region =
		container_of(group, struct vfm_cfg_region, rules);
	struct vfm_cfg_rule *r;

	if (!vfm_valid_rule_name(name))
		return ERR_PTR(-EINVAL);
	r = kzalloc(sizeof(*r), GFP_KERNEL);
	if (!r)
		return ERR_PTR(-ENOMEM);
	r->ctr = vfm_counter_new(config_item_name(&region->dev->group.cg_item),
				 region->index, name);
	if (!r->ctr) {
		kfree(r);
		return ERR_PTR(-ENOMEM);
	}
	r->region = region;
	r->access = VFM_ACCESS_RW;
	r->action = VFM_DENY;	/* an unfinished rule fails closed */
	config_item_init_type_name(&r->item, name, &vfm_rule_type);

	mutex_lock(&vfm_config_lock);
	if (region->nr_rules >= VFM_MAX_RULES) {
		mutex_unlock(&vfm_config_lock);
		/* Not vfm_rule_release(): the item's name may be allocated. */
		config_item_put(&r->item);
		return ERR_PTR(-ENOSPC);
	}
	list_add_tail(&r->node, &region->rule_list);
	region->nr_rules++;
	vfm_staged(region->dev);
	mutex_unlock(&vfm_config_lock);
	return &r->item;
}

static void vfm_rules_drop_item(struct config_group *group,
				struct config_item *item)
{
	struct vfm_cfg_rule *r = to_cfg_rule(item);

	mutex_lock(&vfm_config_lock);
	list_del(&r->node);
	r->region->nr_rules--;
	vfm_staged(r->region->dev);
	mutex_unlock(&vfm_config_lock);
	config_item_put(item);
}

static struct configfs_group_operations vfm_rules_group_ops = {
	.make_item = vfm_rules_make_item,
	.drop_item = vfm_rules_drop_item,
};

const struct config_item_type vfm_rules_type = {
	.ct_group_ops = &vfm_rules_group_ops,
	.ct_owner = THIS_MODULE,
};

/* ---- regions/<name>/ ---- */

static ssize_t vfm_region_mmap_show(struct config_item *item, char *page)
{
	return sysfs_emit(page, "%s\n",
			  READ_ONCE(to_cfg_region(item)->mmap_off) ? "off" : "auto");
}

static ssize_t vfm_region_mmap_store(struct config_item *item,
				     const char *page, size_t count)
{
	struct vfm_cfg_region *region = to_cfg_region(item);
	int off;

	off = vfm_match((const char * const []){ "auto", "off" }, 2, page, count);
	if (off < 0)
		return off;
	mutex_lock(&vfm_config_lock);
	WRITE_ONCE(region->mmap_off, off);
	vfm_staged(region->dev);
	mutex_unlock(&vfm_config_lock);
	return count;
}

CONFIGFS_ATTR(vfm_region_, mmap);

static struct configfs_attribute *vfm_region_attrs[] = {
	&vfm_region_attr_mmap,
	NULL,
};

const struct config_item_type vfm_region_type = {
	.ct_attrs = vfm_region_attrs,
	.ct_owner = THIS_MODULE,
};
