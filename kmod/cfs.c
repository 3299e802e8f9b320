// SPDX-License-Identifier: GPL-2.0
/*
 * vfmediate configfs tree: the staged configuration of each device, and
 * its compilation into a dispatch table when the device is opened.
 *
 *   /sys/kernel/config/vfmediate/
 *     devices/<DDDD:BB:DD.F>/       mkdir; the device need not exist yet
 *       mediator mediator_args mediator_state state generation pending error
 *       table_bytes compile_ns
 *       regions/<config|bar0..bar5|rom|vga>/
 *         mmap
 *         rules/<name>/             mkdir
 *           range access action audit hits
 *     mediators/<name>/             one per registered mediator (registry.c)
 *
 * configfs-schema/vfmediate.schema is the reference for every attribute.
 * Every store parses and validates completely, then changes the staged
 * configuration under vfm_config_lock, or changes nothing and fails.
 * Changes to an open device are staged: they apply at its next open, and
 * "pending" says whether any are waiting.
 */
#include <linux/ctype.h>
#include <linux/iommu.h>
#include <linux/kernel.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/overflow.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <uapi/linux/vfmediate.h>

#include "vfmediate_core.h"

/* Sorts after every rule name: an admin's rule wins ties with a trap. */
#define VFM_TRAP_NAME		"~mediator"

static DEFINE_MUTEX(vfm_config_lock);
static LIST_HEAD(vfm_cfg_devs);	/* configured devices */
static LIST_HEAD(vfm_bound);		/* devices bound to vfmediate */

static const char * const vfm_region_names[VFM_NUM_REGIONS] = {
	[VFIO_PCI_BAR0_REGION_INDEX] = "bar0",
	[VFIO_PCI_BAR1_REGION_INDEX] = "bar1",
	[VFIO_PCI_BAR2_REGION_INDEX] = "bar2",
	[VFIO_PCI_BAR3_REGION_INDEX] = "bar3",
	[VFIO_PCI_BAR4_REGION_INDEX] = "bar4",
	[VFIO_PCI_BAR5_REGION_INDEX] = "bar5",
	[VFIO_PCI_ROM_REGION_INDEX] = "rom",
	[VFIO_PCI_CONFIG_REGION_INDEX] = "config",
	[VFIO_PCI_VGA_REGION_INDEX] = "vga",
};

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

struct vfm_cfg_dev;

struct vfm_cfg_rule {
	struct config_item item;
	struct vfm_cfg_region *region;
	struct list_head node;
	u64 start;
	u64 end;		/* exclusive; 0: no range written yet */
	u8 access;
	u8 action;
	bool audit;
	struct vfm_counter *ctr;
};

struct vfm_cfg_region {
	struct config_group group;	/* regions/<name> */
	struct config_group rules;	/* regions/<name>/rules */
	struct vfm_cfg_dev *dev;
	unsigned int index;
	bool mmap_off;
	u32 nr_rules;
	struct list_head rule_list;
};

struct vfm_cfg_dev {
	struct config_group group;	/* devices/<bdf> */
	struct config_group regions;
	struct vfm_cfg_region region[VFM_NUM_REGIONS];
	struct list_head node;
	struct vfm_device *vd;		/* bound device of that name */
	struct vfm_mediator *mediator;	/* holds a module reference */
	char args[VFM_ARGS_LEN];
	u64 seq;			/* bumped by every staged change */
	char error[VFM_ERR_LEN];	/* why the last open failed */
};

static struct vfm_cfg_dev *to_cfg_dev(struct config_item *item)
{
	return container_of(to_config_group(item), struct vfm_cfg_dev, group);
}

static struct vfm_cfg_region *to_cfg_region(struct config_item *item)
{
	return container_of(to_config_group(item), struct vfm_cfg_region, group);
}

static struct vfm_cfg_rule *to_cfg_rule(struct config_item *item)
{
	return container_of(item, struct vfm_cfg_rule, item);
}

/* Copy an attribute write into @buf without its trailing newline. */
static int vfm_strip(char *buf, size_t size, const char *page, size_t count)
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
static int vfm_match(const char * const *names, int n, const char *page,
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

/*
 * Staged changes are numbered from one counter for all devices, so that a
 * directory removed and made again never repeats the number the running
 * table was compiled from.
 */
static u64 vfm_config_seq;

static void vfm_staged(struct vfm_cfg_dev *dev)
{
	lockdep_assert_held(&vfm_config_lock);
	dev->seq = ++vfm_config_seq;
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

/* -ERANGE if [start, end) does not fit the region of a bound device. */
static int vfm_check_fits(struct vfm_cfg_region *region, u64 start, u64 end)
{
	struct vfm_device *vd = region->dev->vd;

	if (vd && end > vfm_region_len(vd, region->index))
		return -ERANGE;
	return 0;
}

/*
 * Can the attached mediator take trapped accesses of @access? -ENOENT
 * without a mediator, -EINVAL when it has neither a handler nor observe().
 */
static int vfm_can_trap(const struct vfm_mediator_ops *ops, u8 access)
{
	if (!ops)
		return -ENOENT;
	if ((access & VFM_ACCESS_READ) && !ops->read && !ops->observe)
		return -EINVAL;
	if ((access & VFM_ACCESS_WRITE) && !ops->write && !ops->observe)
		return -EINVAL;
	return 0;
}

static const struct vfm_mediator_ops *vfm_cfg_ops(struct vfm_cfg_dev *dev)
{
	return dev->mediator ? dev->mediator->ops : NULL;
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

static const struct config_item_type vfm_rules_type = {
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

static const struct config_item_type vfm_region_type = {
	.ct_attrs = vfm_region_attrs,
	.ct_owner = THIS_MODULE,
};

static const struct config_item_type vfm_regions_type = {
	.ct_owner = THIS_MODULE,
};

/* ---- devices/<bdf>/ ---- */

static ssize_t vfm_dev_mediator_show(struct config_item *item, char *page)
{
	struct vfm_cfg_dev *dev = to_cfg_dev(item);
	ssize_t len;

	mutex_lock(&vfm_config_lock);
	len = sysfs_emit(page, "%s\n",
			 dev->mediator ? dev->mediator->ops->name : "");
	mutex_unlock(&vfm_config_lock);
	return len;
}

static bool vfm_has_trap_rules(struct vfm_cfg_dev *dev, u8 *access)
{
	struct vfm_cfg_rule *r;
	int i;

	*access = 0;
	for (i = 0; i < VFM_NUM_REGIONS; i++)
		list_for_each_entry(r, &dev->region[i].rule_list, node)
			if (r->action == VFM_TRAP)
				*access |= r->access;
	return *access;
}

/*
 * Swap the attached mediator for @m (NULL: detach). Trap rules must keep
 * a mediator able to take them. Returns the one to release.
 */
static int vfm_set_mediator(struct vfm_cfg_dev *dev, struct vfm_mediator **m)
{
	struct vfm_mediator *old = dev->mediator;
	u8 access;

	lockdep_assert_held(&vfm_config_lock);
	if (old == *m)
		return 0;
	if (vfm_has_trap_rules(dev, &access)) {
		if (!*m)
			return -EBUSY;
		if (vfm_can_trap((*m)->ops, access))
			return -EINVAL;
	}
	dev->mediator = *m;
	dev->args[0] = '\0';	/* arguments belong to a mediator */
	vfm_staged(dev);
	*m = old;
	return 0;
}

/* Tell the monitor group that @dev swapped mediator @old for @new. */
static void vfm_mediator_events(struct vfm_cfg_dev *dev,
				struct vfm_mediator *old,
				struct vfm_mediator *new)
{
	const char *name = config_item_name(&dev->group.cg_item);

	if (old)
		vfm_event_post(VFMEDIATE_EVENT_MED_DETACHED, name,
			       old->ops->name, 0, 0, NULL);
	if (new)
		vfm_event_post(VFMEDIATE_EVENT_MED_ATTACHED, name,
			       new->ops->name, 0, 0, NULL);
}

static ssize_t vfm_dev_mediator_store(struct config_item *item,
				      const char *page, size_t count)
{
	struct vfm_cfg_dev *dev = to_cfg_dev(item);
	struct vfm_mediator *m = NULL;
	char name[VFM_NAME_LEN];
	int ret;

	if (vfm_strip(name, sizeof(name), page, count))
		return -EINVAL;
	if (name[0]) {
		if (!vfm_valid_name(name))
			return -EINVAL;
		/* May load a module: not under vfm_config_lock. */
		m = vfm_mediator_get(name);
		if (!m)
			return -ENOENT;
	}
	mutex_lock(&vfm_config_lock);
	ret = vfm_set_mediator(dev, &m);
	if (!ret && m != dev->mediator)
		vfm_mediator_events(dev, m, dev->mediator);
	mutex_unlock(&vfm_config_lock);
	vfm_mediator_put(m);	/* the old one, or the new one on error */
	return ret ?: count;
}

static ssize_t vfm_dev_mediator_args_show(struct config_item *item,
					  char *page)
{
	struct vfm_cfg_dev *dev = to_cfg_dev(item);
	ssize_t len;

	mutex_lock(&vfm_config_lock);
	len = sysfs_emit(page, "%s\n", dev->args);
	mutex_unlock(&vfm_config_lock);
	return len;
}

static ssize_t vfm_dev_mediator_args_store(struct config_item *item,
					   const char *page, size_t count)
{
	struct vfm_cfg_dev *dev = to_cfg_dev(item);
	const struct vfm_mediator_ops *ops;
	char *args;
	int ret;

	args = kmalloc(VFM_ARGS_LEN, GFP_KERNEL);
	if (!args)
		return -ENOMEM;
	ret = vfm_strip(args, VFM_ARGS_LEN, page, count);
	if (ret)
		goto out;
	mutex_lock(&vfm_config_lock);
	ops = vfm_cfg_ops(dev);
	if (!ops)
		ret = -ENOENT;
	else if (ops->check_args)
		ret = ops->check_args(args);
	if (!ret) {
		strscpy(dev->args, args, sizeof(dev->args));
		vfm_staged(dev);
	}
	mutex_unlock(&vfm_config_lock);
out:
	kfree(args);
	return ret ?: count;
}

/*
 * Mediator code that runs outside a VFIO user's own access, open() and
 * show(), must not wait for memory_lock (io.c): mark the task, one at a
 * time per device.
 */
static void vfm_nowait_begin(struct vfm_device *vd)
{
	mutex_lock(&vd->nowait_lock);
	WRITE_ONCE(vd->nowait_task, current);
}

static void vfm_nowait_end(struct vfm_device *vd)
{
	WRITE_ONCE(vd->nowait_task, NULL);
	mutex_unlock(&vd->nowait_lock);
}

/* The running mediator's own report, while the device is open. */
static ssize_t vfm_dev_mediator_state_show(struct config_item *item,
					   char *page)
{
	struct vfm_cfg_dev *dev = to_cfg_dev(item);
	const struct vfm_table *tbl;
	struct vfm_device *vd;
	ssize_t len = 0;
	int idx;

	/*
	 * show() may access the device, so it runs without vfm_config_lock
	 * (see vfm_open_mediator()); a reference keeps @vd, the table's SRCU
	 * read lock its mediator.
	 */
	mutex_lock(&vfm_config_lock);
	vd = dev->vd;
	if (vd && vd->open)
		get_device(&vd->core.vdev.device);
	else
		vd = NULL;
	mutex_unlock(&vfm_config_lock);
	if (!vd)
		return 0;

	vfm_nowait_begin(vd);
	idx = srcu_read_lock(&vd->srcu);
	tbl = srcu_dereference(vd->table, &vd->srcu);
	if (tbl->mops && tbl->mops->show)
		len = tbl->mops->show(vd, tbl->mpriv, page);
	srcu_read_unlock(&vd->srcu, idx);
	vfm_nowait_end(vd);
	put_device(&vd->core.vdev.device);
	return len;
}

static ssize_t vfm_dev_state_show(struct config_item *item, char *page)
{
	struct vfm_cfg_dev *dev = to_cfg_dev(item);
	const char *state = "absent";

	mutex_lock(&vfm_config_lock);
	if (dev->vd)
		state = dev->vd->open ? "open" : "bound";
	mutex_unlock(&vfm_config_lock);
	return sysfs_emit(page, "%s\n", state);
}

static ssize_t vfm_dev_generation_show(struct config_item *item, char *page)
{
	struct vfm_cfg_dev *dev = to_cfg_dev(item);
	u64 gen = 0;

	mutex_lock(&vfm_config_lock);
	if (dev->vd && dev->vd->open)
		gen = dev->vd->table_gen;
	mutex_unlock(&vfm_config_lock);
	return sysfs_emit(page, "%llu\n", gen);
}

static ssize_t vfm_dev_pending_show(struct config_item *item, char *page)
{
	struct vfm_cfg_dev *dev = to_cfg_dev(item);
	bool pending;

	mutex_lock(&vfm_config_lock);
	pending = dev->vd && dev->vd->open && dev->vd->table_seq != dev->seq;
	mutex_unlock(&vfm_config_lock);
	return sysfs_emit(page, "%d\n", pending);
}

static ssize_t vfm_dev_table_bytes_show(struct config_item *item, char *page)
{
	struct vfm_cfg_dev *dev = to_cfg_dev(item);
	size_t bytes = 0;

	mutex_lock(&vfm_config_lock);
	if (dev->vd && dev->vd->open)
		bytes = dev->vd->table_bytes;
	mutex_unlock(&vfm_config_lock);
	return sysfs_emit(page, "%zu\n", bytes);
}

static ssize_t vfm_dev_compile_ns_show(struct config_item *item, char *page)
{
	struct vfm_cfg_dev *dev = to_cfg_dev(item);
	u64 ns = 0;

	mutex_lock(&vfm_config_lock);
	if (dev->vd && dev->vd->open)
		ns = dev->vd->compile_ns;
	mutex_unlock(&vfm_config_lock);
	return sysfs_emit(page, "%llu\n", ns);
}

static ssize_t vfm_dev_warning_show(struct config_item *item, char *page)
{
	struct vfm_cfg_dev *dev = to_cfg_dev(item);
	ssize_t len;

	mutex_lock(&vfm_config_lock);
	len = sysfs_emit(page, "%s\n", dev->vd ? dev->vd->warning : "");
	mutex_unlock(&vfm_config_lock);
	return len;
}

struct vfm_peers {
	struct device *self;
	char *page;
	int len;
};

static int vfm_add_peer(struct device *dev, void *data)
{
	struct vfm_peers *p = data;

	if (dev != p->self)
		p->len += sysfs_emit_at(p->page, p->len, " %s", dev_name(dev));
	return 0;
}

/*
 * Peers in the function's IOMMU group can reach it by peer-to-peer DMA,
 * which no rule sees. The group is walked without vfm_config_lock, with a
 * reference on the device.
 */
static ssize_t vfm_dev_isolation_show(struct config_item *item, char *page)
{
	struct vfm_cfg_dev *dev = to_cfg_dev(item);
	struct vfm_peers peers = { .page = page };
	struct iommu_group *group;
	struct vfm_device *vd;

	mutex_lock(&vfm_config_lock);
	vd = dev->vd;
	if (vd)
		get_device(&vd->core.vdev.device);
	mutex_unlock(&vfm_config_lock);
	if (!vd)
		return sysfs_emit(page, "unbound\n");

	peers.self = &vd->core.pdev->dev;
	group = iommu_group_get(peers.self);
	if (!group) {
		peers.len = sysfs_emit(page, "none");
	} else {
		peers.len = sysfs_emit(page, "shared");
		iommu_group_for_each_dev(group, &peers, vfm_add_peer);
		if (peers.len == strlen("shared"))
			peers.len = sysfs_emit(page, "singleton");
		iommu_group_put(group);
	}
	put_device(&vd->core.vdev.device);
	return peers.len + sysfs_emit_at(page, peers.len, "\n");
}

static ssize_t vfm_dev_error_show(struct config_item *item, char *page)
{
	struct vfm_cfg_dev *dev = to_cfg_dev(item);
	ssize_t len;

	mutex_lock(&vfm_config_lock);
	len = sysfs_emit(page, "%s\n", dev->error);
	mutex_unlock(&vfm_config_lock);
	return len;
}

CONFIGFS_ATTR(vfm_dev_, mediator);
CONFIGFS_ATTR(vfm_dev_, mediator_args);
CONFIGFS_ATTR_RO(vfm_dev_, mediator_state);
CONFIGFS_ATTR_RO(vfm_dev_, state);
CONFIGFS_ATTR_RO(vfm_dev_, generation);
CONFIGFS_ATTR_RO(vfm_dev_, pending);
CONFIGFS_ATTR_RO(vfm_dev_, error);
CONFIGFS_ATTR_RO(vfm_dev_, warning);
CONFIGFS_ATTR_RO(vfm_dev_, isolation);
CONFIGFS_ATTR_RO(vfm_dev_, table_bytes);
CONFIGFS_ATTR_RO(vfm_dev_, compile_ns);

static struct configfs_attribute *vfm_dev_attrs[] = {
	&vfm_dev_attr_mediator,
	&vfm_dev_attr_mediator_args,
	&vfm_dev_attr_mediator_state,
	&vfm_dev_attr_state,
	&vfm_dev_attr_generation,
	&vfm_dev_attr_pending,
	&vfm_dev_attr_error,
	&vfm_dev_attr_warning,
	&vfm_dev_attr_isolation,
	&vfm_dev_attr_table_bytes,
	&vfm_dev_attr_compile_ns,
	NULL,
};

static void vfm_dev_release(struct config_item *item)
{
	struct vfm_cfg_dev *dev = to_cfg_dev(item);

	vfm_mediator_put(dev->mediator);
	kfree(dev);
}

static struct configfs_item_operations vfm_dev_item_ops = {
	.release = vfm_dev_release,
};

static const struct config_item_type vfm_dev_type = {
	.ct_item_ops = &vfm_dev_item_ops,
	.ct_attrs = vfm_dev_attrs,
	.ct_owner = THIS_MODULE,
};

/* The canonical PCI address form, as pci_name(): "0000:01:00.1". */
/*
 * pci_name()'s form: "%04x:%02x:%02x.%d", so a domain has four hex digits
 * or more (Intel VMD's domains start at 0x10000).
 */
static bool vfm_valid_bdf(const char *name)
{
	unsigned int dom, bus, slot, fn;
	char tail, canon[24];

	if (strlen(name) < 12 || strlen(name) > 16)
		return false;
	if (sscanf(name, "%8x:%2x:%2x.%1u%c", &dom, &bus, &slot, &fn,
		   &tail) != 4)
		return false;
	if (slot > 0x1f || fn > 7)
		return false;
	/* Reject upper case and other spellings of the same address. */
	snprintf(canon, sizeof(canon), "%04x:%02x:%02x.%u", dom, bus, slot, fn);
	return !strcmp(name, canon);
}

static void vfm_region_init(struct vfm_cfg_dev *dev, unsigned int index)
{
	struct vfm_cfg_region *region = &dev->region[index];

	region->dev = dev;
	region->index = index;
	INIT_LIST_HEAD(&region->rule_list);
	config_group_init_type_name(&region->group, vfm_region_names[index],
				    &vfm_region_type);
	config_group_init_type_name(&region->rules, "rules", &vfm_rules_type);
	configfs_add_default_group(&region->rules, &region->group);
	configfs_add_default_group(&region->group, &dev->regions);
}

static struct vfm_device *vfm_find_bound(const char *name)
{
	struct vfm_device *vd;

	list_for_each_entry(vd, &vfm_bound, node)
		if (!strcmp(vfm_name(vd), name))
			return vd;
	return NULL;
}

static struct config_group *vfm_devices_make_group(struct config_group *group,
						   const char *name)
{
	static const u8 order[] = {
		VFIO_PCI_CONFIG_REGION_INDEX,
		VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_BAR1_REGION_INDEX,
		VFIO_PCI_BAR2_REGION_INDEX, VFIO_PCI_BAR3_REGION_INDEX,
		VFIO_PCI_BAR4_REGION_INDEX, VFIO_PCI_BAR5_REGION_INDEX,
		VFIO_PCI_ROM_REGION_INDEX, VFIO_PCI_VGA_REGION_INDEX,
	};
	struct vfm_cfg_dev *dev;
	int i;

	if (!vfm_valid_bdf(name))
		return ERR_PTR(-EINVAL);
	dev = kzalloc(sizeof(*dev), GFP_KERNEL);
	if (!dev)
		return ERR_PTR(-ENOMEM);
	config_group_init_type_name(&dev->group, name, &vfm_dev_type);
	config_group_init_type_name(&dev->regions, "regions", &vfm_regions_type);
	configfs_add_default_group(&dev->regions, &dev->group);
	for (i = 0; i < ARRAY_SIZE(order); i++)
		vfm_region_init(dev, order[i]);

	mutex_lock(&vfm_config_lock);
	vfm_staged(dev);
	dev->vd = vfm_find_bound(name);
	if (dev->vd)
		dev->vd->cfg = dev;
	list_add_tail(&dev->node, &vfm_cfg_devs);
	mutex_unlock(&vfm_config_lock);
	return &dev->group;
}

static void vfm_devices_drop_item(struct config_group *group,
				  struct config_item *item)
{
	struct vfm_cfg_dev *dev = to_cfg_dev(item);

	mutex_lock(&vfm_config_lock);
	if (dev->vd)
		dev->vd->cfg = NULL;
	dev->vd = NULL;
	list_del(&dev->node);
	vfm_config_seq++;
	vfm_mediator_events(dev, dev->mediator, NULL);
	mutex_unlock(&vfm_config_lock);
	config_item_put(item);
}

static struct configfs_group_operations vfm_devices_group_ops = {
	.make_group = vfm_devices_make_group,
	.drop_item = vfm_devices_drop_item,
};

static const struct config_item_type vfm_devices_type = {
	.ct_group_ops = &vfm_devices_group_ops,
	.ct_owner = THIS_MODULE,
};

static const struct config_item_type vfm_mediators_type = {
	.ct_owner = THIS_MODULE,
};

static const struct config_item_type vfm_root_type = {
	.ct_owner = THIS_MODULE,
};

static struct config_group vfm_devices_group;
static struct config_group vfm_mediators_group;

static struct configfs_subsystem vfm_subsys = {
	.su_group = {
		.cg_item = {
			.ci_namebuf = "vfmediate",
			.ci_type = &vfm_root_type,
		},
	},
};

/* ---- binding, open and close ---- */

void vfm_cfs_bind(struct vfm_device *vd)
{
	struct vfm_cfg_dev *dev;

	mutex_lock(&vfm_config_lock);
	list_add_tail(&vd->node, &vfm_bound);
	list_for_each_entry(dev, &vfm_cfg_devs, node) {
		if (!strcmp(config_item_name(&dev->group.cg_item), vfm_name(vd))) {
			dev->vd = vd;
			vd->cfg = dev;
			break;
		}
	}
	mutex_unlock(&vfm_config_lock);
	vfm_event_post(VFMEDIATE_EVENT_BOUND, vfm_name(vd), NULL, 0, 0, NULL);
}

void vfm_cfs_unbind(struct vfm_device *vd)
{
	mutex_lock(&vfm_config_lock);
	list_del(&vd->node);
	if (vd->cfg)
		vd->cfg->vd = NULL;
	vd->cfg = NULL;
	vfm_rules_put(vd->rules);
	vd->rules = NULL;
	mutex_unlock(&vfm_config_lock);
	vfm_event_post(VFMEDIATE_EVENT_UNBOUND, vfm_name(vd), NULL, 0, 0, NULL);
}

static bool vfm_cfg_active(struct vfm_cfg_dev *dev)
{
	int i;

	if (dev->mediator)
		return true;
	for (i = 0; i < VFM_NUM_REGIONS; i++)
		if (dev->region[i].nr_rules || dev->region[i].mmap_off)
			return true;
	return false;
}

/*
 * What opening a device takes from its configuration, under
 * vfm_config_lock; the mediator is then opened without it.
 */
struct vfm_open_ctx {
	struct vfm_cfg_dev *dev;	/* NULL: no configuration */
	u64 seq;			/* dev->seq when taken */
	bool active;			/* anything to compile */
	const struct vfm_mediator_ops *ops;	/* with a module reference */
	char *args;
	char error[VFM_ERR_LEN];
};

static int vfm_open_begin(struct vfm_device *vd, struct vfm_open_ctx *ctx)
{
	const struct vfm_mediator_ops *ops;

	lockdep_assert_held(&vfm_config_lock);
	*ctx = (struct vfm_open_ctx){ .dev = vd->cfg };
	if (!ctx->dev)
		return 0;
	ctx->seq = ctx->dev->seq;
	if (!vfm_cfg_active(ctx->dev))
		return 0;
	ctx->active = true;
	ops = vfm_cfg_ops(ctx->dev);
	if (!ops)
		return 0;
	/* The open device's own reference, dropped when its table goes. */
	if (!try_module_get(ops->owner)) {
		snprintf(ctx->error, sizeof(ctx->error),
			 "mediator %s: module is being removed", ops->name);
		return -ENOENT;
	}
	ctx->args = kstrdup(ctx->dev->args, GFP_KERNEL);
	if (!ctx->args) {
		module_put(ops->owner);
		return -ENOMEM;
	}
	ctx->ops = ops;
	return 0;
}

/*
 * Open the mediator for @tbl; it may trap ranges meanwhile. Not under
 * vfm_config_lock: open() may access the device and so take its
 * memory_lock, which a PF's sriov_configure holds while the VFs it
 * creates bind and take vfm_config_lock. vfio opens a device once at a
 * time (its device set lock), so vd->traps needs no lock of ours.
 */
static int vfm_open_mediator(struct vfm_device *vd, struct vfm_open_ctx *ctx,
			     struct vfm_table *tbl)
{
	const struct vfm_mediator_ops *ops = ctx->ops;
	void *priv = NULL;
	int ret;

	if (!ops)
		return 0;
	vd->traps = kcalloc(VFM_MAX_TRAPS, sizeof(*vd->traps), GFP_KERNEL);
	vd->nr_traps = 0;
	vd->open_ops = ops;
	ret = vd->traps ? 0 : -ENOMEM;
	if (!ret && ops->open) {
		vfm_nowait_begin(vd);
		ret = ops->open(vd, ctx->args, &priv);
		vfm_nowait_end(vd);
	}
	vd->open_ops = NULL;
	if (ret) {
		module_put(ops->owner);
		snprintf(ctx->error, sizeof(ctx->error),
			 "mediator %s: open failed (%d)", ops->name, ret);
		return ret;
	}
	tbl->mops = ops;
	tbl->mpriv = priv;
	return 0;
}

/* A configured rule as the compiler takes it, after its final checks. */
static int vfm_rule_spec(struct vfm_device *vd, struct vfm_cfg_dev *dev,
			 const struct vfm_table *tbl, struct vfm_cfg_rule *r,
			 struct vfm_rule_spec *s)
{
	const char *region = vfm_region_names[r->region->index];
	const char *name = config_item_name(&r->item);
	u64 len = vfm_region_len(vd, r->region->index);

	if (!r->end) {
		snprintf(dev->error, sizeof(dev->error),
			 "%s/rules/%s: no range", region, name);
		return -EINVAL;
	}
	if (r->end > len) {
		snprintf(dev->error, sizeof(dev->error),
			 "%s/rules/%s: range %#llx-%#llx outside the region (%#llx bytes)",
			 region, name, r->start, r->end - 1, len);
		return -ERANGE;
	}
	if (r->action == VFM_TRAP && vfm_can_trap(tbl->mops, r->access)) {
		snprintf(dev->error, sizeof(dev->error),
			 "%s/rules/%s: trap without a mediator that handles it",
			 region, name);
		return -ENOENT;
	}
	*s = (struct vfm_rule_spec){
		.start = r->start, .end = r->end, .access = r->access,
		.action = r->action, .audit = r->audit, .name = name,
		.ctr = r->ctr,
	};
	return 0;
}

static int vfm_compile_region(struct vfm_device *vd, struct vfm_cfg_dev *dev,
			      struct vfm_table *tbl, struct vfm_rules *rules,
			      unsigned int index)
{
	struct vfm_cfg_region *region = &dev->region[index];
	struct vfm_rule_spec *specs;
	struct vfm_cfg_rule *r;
	u32 i, n = 0;
	int ret = 0;

	specs = kvcalloc(region->nr_rules + vd->nr_traps, sizeof(*specs),
			 GFP_KERNEL);
	if (!specs)
		return -ENOMEM;
	list_for_each_entry(r, &region->rule_list, node) {
		ret = vfm_rule_spec(vd, dev, tbl, r, &specs[n++]);
		if (ret)
			goto out;
	}
	for (i = 0; i < vd->nr_traps; i++) {
		if (vd->traps[i].index != index)
			continue;
		specs[n++] = (struct vfm_rule_spec){
			.start = vd->traps[i].start, .end = vd->traps[i].end,
			.access = vd->traps[i].access, .action = VFM_TRAP,
			.name = VFM_TRAP_NAME,
		};
	}
	ret = vfm_rules_build_region(vd, rules, index, specs, n,
				     region->mmap_off);
out:
	kvfree(specs);
	return ret;
}

/* Were @rules compiled from what the device being opened has now? */
static bool vfm_rules_current(const struct vfm_rules *rules,
			      struct vfm_device *vd, struct vfm_cfg_dev *dev)
{
	return rules && rules->config_seq == dev->seq &&
	       rules->nr_traps == vd->nr_traps &&
	       (!vd->nr_traps || !memcmp(rules->traps, vd->traps,
					 vd->nr_traps * sizeof(*vd->traps)));
}

/*
 * Give @tbl the compiled rules of @dev and of the traps of the mediator
 * just opened: those of the device's last table when nothing changed
 * since (compiling 1024 rules takes milliseconds), else newly compiled
 * ones, which the device then keeps for its next open.
 */
static int vfm_compile_rules(struct vfm_device *vd, struct vfm_cfg_dev *dev,
			     struct vfm_table *tbl)
{
	struct vfm_rules *rules = vd->rules;
	u64 t0 = ktime_get_ns();
	int i, ret = 0;

	if (vfm_rules_current(rules, vd, dev)) {
		tbl->rules = vfm_rules_get(rules);
		return 0;
	}
	rules = vfm_rules_alloc();
	if (!rules)
		return -ENOMEM;
	for (i = 0; !ret && i < VFM_NUM_REGIONS; i++)
		ret = vfm_compile_region(vd, dev, tbl, rules, i);
	if (ret) {
		vfm_rules_put(rules);
		return ret;
	}
	rules->compile_ns = ktime_get_ns() - t0;
	rules->config_seq = dev->seq;
	rules->nr_traps = vd->nr_traps;
	swap(rules->traps, vd->traps);
	vfm_rules_put(vd->rules);
	vd->rules = vfm_rules_get(rules);
	tbl->rules = rules;
	return 0;
}

static void vfm_drop_traps(struct vfm_device *vd)
{
	kfree(vd->traps);
	vd->traps = NULL;
	vd->nr_traps = 0;
}

/*
 * Rules on a BAR a VFIO user mapped before: a DMA mapping it made of a
 * page then stays in its IOMMU container, out of the rules' reach.
 */
static void vfm_set_warning(struct vfm_device *vd, const struct vfm_table *tbl)
{
	unsigned long bars = 0, mmapped = READ_ONCE(vd->mmapped);
	unsigned int i;
	int len = 0;

	for (i = 0; tbl && i <= VFIO_PCI_BAR5_REGION_INDEX; i++)
		if (tbl->rules->region[i].ruled && test_bit(i, &mmapped))
			__set_bit(i, &bars);
	vd->warning[0] = '\0';
	if (!bars)
		return;
	for_each_set_bit(i, &bars, VFIO_PCI_BAR5_REGION_INDEX + 1)
		len += scnprintf(vd->warning + len, sizeof(vd->warning) - len,
				 "%sbar%u", len ? " " : "", i);
	scnprintf(vd->warning + len, sizeof(vd->warning) - len,
		  " %s mmap'ed before %s current rules: DMA mappings made then may still reach ruled pages",
		  hweight_long(bars) > 1 ? "were" : "was",
		  hweight_long(bars) > 1 ? "their" : "its");
}

/* The device's state once it is open with @tbl (NULL: pass-through). */
static void vfm_opened(struct vfm_device *vd, struct vfm_cfg_dev *dev,
		       const struct vfm_table *tbl)
{
	vfm_set_warning(vd, tbl);
	if (dev)
		dev->error[0] = '\0';
	vd->open = true;
	vd->table_seq = dev ? dev->seq : 0;
	vd->table_gen = tbl ? tbl->generation : 0;
	vd->table_bytes = tbl ? sizeof(*tbl) + tbl->rules->bytes : 0;
	vd->compile_ns = tbl ? tbl->rules->compile_ns : 0;
}

/*
 * Under vfm_config_lock again: compile @tbl if the configuration is still
 * the one the mediator was opened with (else -EAGAIN, to start over), and
 * record the outcome. Fails closed: a rule that cannot be applied fails
 * the open, and "error" says why.
 */
static int vfm_open_finish(struct vfm_device *vd, struct vfm_open_ctx *ctx,
			   struct vfm_table *tbl, int ret)
{
	struct vfm_cfg_dev *dev = ctx->dev;

	lockdep_assert_held(&vfm_config_lock);
	if (vd->cfg != dev || (dev && dev->seq != ctx->seq))
		return -EAGAIN;
	if (!ctx->active) {
		vfm_opened(vd, dev, NULL);
		return 0;
	}
	if (!ret)
		ret = vfm_compile_rules(vd, dev, tbl);
	if (ret) {
		if (ctx->error[0])
			strscpy(dev->error, ctx->error, sizeof(dev->error));
		else if (!dev->error[0])
			snprintf(dev->error, sizeof(dev->error),
				 "compiling the table failed (%d)", ret);
		return ret;
	}
	tbl->generation = ++vd->generation;
	vfm_opened(vd, dev, tbl);
	return 0;
}

/* One try at opening: -EAGAIN if the configuration changed meanwhile. */
static int vfm_open_try(struct vfm_device *vd, struct vfm_table **tblp)
{
	struct vfm_open_ctx ctx;
	struct vfm_table *tbl = NULL;
	int ret;

	mutex_lock(&vfm_config_lock);
	ret = vfm_open_begin(vd, &ctx);
	if (ctx.dev && ctx.active)
		ctx.dev->error[0] = '\0';
	mutex_unlock(&vfm_config_lock);

	if (!ret && ctx.active) {
		tbl = vfm_table_alloc();
		ret = tbl ? vfm_open_mediator(vd, &ctx, tbl) : -ENOMEM;
		if (!tbl && ctx.ops)
			module_put(ctx.ops->owner);
	}
	kfree(ctx.args);

	mutex_lock(&vfm_config_lock);
	ret = vfm_open_finish(vd, &ctx, tbl, ret);
	mutex_unlock(&vfm_config_lock);

	vfm_drop_traps(vd);
	if (ret && tbl) {
		/* Not under vfm_config_lock: the mediator's close() runs. */
		vfm_table_release(vd, tbl);
		tbl = NULL;
	}
	*tblp = tbl;
	return ret;
}

/* Tell the monitor group how opening @vd went. */
static void vfm_open_events(struct vfm_device *vd, struct vfm_table *tbl,
			    int ret)
{
	char *error;

	if (!ret) {
		if (tbl)
			vfm_event_post(VFMEDIATE_EVENT_CONFIG_APPLIED,
				       vfm_name(vd), NULL, tbl->generation, 0,
				       NULL);
		vfm_event_post(VFMEDIATE_EVENT_OPENED, vfm_name(vd), NULL,
			       tbl ? tbl->generation : 0, 0, NULL);
		return;
	}
	error = kzalloc(VFM_ERR_LEN, GFP_KERNEL);
	if (!error)
		return;
	mutex_lock(&vfm_config_lock);
	if (vd->cfg)
		strscpy(error, vd->cfg->error, VFM_ERR_LEN);
	mutex_unlock(&vfm_config_lock);
	vfm_event_post(VFMEDIATE_EVENT_CONFIG_REFUSED, vfm_name(vd), NULL, 0,
		       ret, error);
	kfree(error);
}

/* Tries before an open that keeps meeting configuration changes fails. */
#define VFM_OPEN_TRIES	8

/* Compile and publish the table of a device being opened. */
int vfm_cfs_open(struct vfm_device *vd)
{
	struct vfm_table *tbl;
	int i, ret;

	for (i = 0; i < VFM_OPEN_TRIES; i++) {
		ret = vfm_open_try(vd, &tbl);
		if (ret != -EAGAIN)
			break;
	}
	if (ret == -EAGAIN)
		ret = -EBUSY;
	vfm_open_events(vd, tbl, ret);
	if (ret)
		return ret;
	if (tbl)
		vfm_table_publish(vd, tbl);
	return 0;
}

void vfm_cfs_close(struct vfm_device *vd)
{
	/* Not under vfm_config_lock: this waits for readers. */
	vfm_table_reset(vd);

	mutex_lock(&vfm_config_lock);
	vd->open = false;
	vd->table_gen = 0;
	mutex_unlock(&vfm_config_lock);
	vfm_event_post(VFMEDIATE_EVENT_CLOSED, vfm_name(vd), NULL, 0, 0, NULL);
}

/**
 * vfm_trap_range() - route a byte range of a region to the mediator
 * @vd: the device being opened
 * @index: VFIO region index
 * @start: first byte, within the region
 * @len: bytes, at least one
 * @access: VFM_ACCESS_READ, _WRITE or _RW
 *
 * Only valid from the mediator's open(). The pages it touches are no
 * longer mmap-able. A more specific rule of the admin's overrides it.
 *
 * Return: 0, -EINVAL (bad index or access, not called from open(), or a
 * mediator with neither the handler nor observe() for @access),
 * -ERANGE (outside the region), -ENOSPC (too many ranges).
 */
int vfm_trap_range(struct vfm_device *vd, unsigned int index, u64 start,
		   u64 len, unsigned int access)
{
	const struct vfm_mediator_ops *ops;
	u64 end;

	if (!vd->traps || index >= VFM_NUM_REGIONS || !access ||
	    access & ~VFM_ACCESS_RW)
		return -EINVAL;
	if (!len || check_add_overflow(start, len, &end) ||
	    end > vfm_region_len(vd, index))
		return -ERANGE;
	ops = vd->open_ops;
	if (vfm_can_trap(ops, access))
		return -EINVAL;
	if (vd->nr_traps >= VFM_MAX_TRAPS)
		return -ENOSPC;
	vd->traps[vd->nr_traps++] = (struct vfm_trap){
		.index = index, .access = access, .start = start, .end = end,
	};
	return 0;
}
EXPORT_SYMBOL_GPL(vfm_trap_range);

/* ---- what netlink reports (netlink.c) ---- */

/* The dump generation: changes when devices or rules come or go. */
u32 vfm_cfs_seq(void)
{
	return READ_ONCE(vfm_config_seq);
}

static void vfm_fill_dev_info(struct vfm_cfg_dev *dev, struct vfm_device *vd,
			      struct vfm_dev_info *info)
{
	*info = (struct vfm_dev_info){ .configured = !!dev };
	strscpy(info->name, dev ? config_item_name(&dev->group.cg_item) :
		vfm_name(vd), sizeof(info->name));
	if (dev) {
		if (dev->mediator)
			strscpy(info->mediator, dev->mediator->ops->name,
				sizeof(info->mediator));
		strscpy(info->args, dev->args, sizeof(info->args));
		strscpy(info->error, dev->error, sizeof(info->error));
	}
	if (!vd)
		return;
	info->state = vd->open ? VFMEDIATE_DEV_OPEN : VFMEDIATE_DEV_BOUND;
	strscpy(info->warning, vd->warning, sizeof(info->warning));
	info->resets = atomic64_read(&vd->resets);
	if (!vd->open)
		return;
	info->generation = vd->table_gen;
	info->table_bytes = vd->table_bytes;
	info->pending = dev && vd->table_seq != dev->seq;
}

/*
 * The device named @name, or else the @pos'th one: configured devices
 * first, then bound ones without a configuration. -ENODEV past the end.
 */
int vfm_cfs_dev_info(const char *name, unsigned long pos,
		     struct vfm_dev_info *info)
{
	struct vfm_cfg_dev *dev;
	struct vfm_device *vd;
	int ret = -ENODEV;

	mutex_lock(&vfm_config_lock);
	list_for_each_entry(dev, &vfm_cfg_devs, node) {
		if (name ? !strcmp(config_item_name(&dev->group.cg_item), name) :
		    !pos--) {
			vfm_fill_dev_info(dev, dev->vd, info);
			ret = 0;
			goto out;
		}
	}
	list_for_each_entry(vd, &vfm_bound, node) {
		if (vd->cfg)
			continue;
		if (name ? !strcmp(vfm_name(vd), name) : !pos--) {
			vfm_fill_dev_info(NULL, vd, info);
			ret = 0;
			goto out;
		}
	}
out:
	mutex_unlock(&vfm_config_lock);
	return ret;
}

static struct vfm_cfg_dev *vfm_find_cfg(const char *name)
{
	struct vfm_cfg_dev *dev;

	list_for_each_entry(dev, &vfm_cfg_devs, node)
		if (!strcmp(config_item_name(&dev->group.cg_item), name))
			return dev;
	return NULL;
}

/*
 * Up to @max rules of region @index of the configured device @name, from
 * its @pos'th rule on, into @ri. Returns how many, or -ENODEV.
 */
int vfm_cfs_rule_info(const char *name, unsigned int index, u32 pos,
		      struct vfm_rule_info *ri, u32 max)
{
	struct vfm_cfg_rule *r;
	struct vfm_cfg_dev *dev;
	int n = 0;

	if (index >= VFM_NUM_REGIONS)
		return 0;
	mutex_lock(&vfm_config_lock);
	dev = vfm_find_cfg(name);
	if (!dev) {
		n = -ENODEV;
		goto out;
	}
	list_for_each_entry(r, &dev->region[index].rule_list, node) {
		if (pos) {
			pos--;
			continue;
		}
		if (n == max)
			break;
		strscpy(ri[n].name, config_item_name(&r->item),
			sizeof(ri[n].name));
		ri[n].start = r->start;
		ri[n].end = r->end;
		ri[n].access = r->access;
		ri[n].action = r->action;
		ri[n].audit = r->audit;
		vfm_counter_read(r->ctr, &ri[n].counts);
		n++;
	}
out:
	mutex_unlock(&vfm_config_lock);
	return n;
}

const char *vfm_region_name(unsigned int index)
{
	return index < VFM_NUM_REGIONS ? vfm_region_names[index] : "";
}

int vfm_cfs_init(void)
{
	struct config_group *root = &vfm_subsys.su_group;
	int ret;

	config_group_init(root);
	mutex_init(&vfm_subsys.su_mutex);
	config_group_init_type_name(&vfm_devices_group, "devices",
				    &vfm_devices_type);
	configfs_add_default_group(&vfm_devices_group, root);
	config_group_init_type_name(&vfm_mediators_group, "mediators",
				    &vfm_mediators_type);
	configfs_add_default_group(&vfm_mediators_group, root);

	ret = vfm_registry_init(&vfm_mediators_group);
	if (ret)
		return ret;
	return configfs_register_subsystem(&vfm_subsys);
}

void vfm_cfs_exit(void)
{
	configfs_unregister_subsystem(&vfm_subsys);
	vfm_registry_exit();
}
