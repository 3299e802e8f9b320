// SPDX-License-Identifier: GPL-2.0
/*
 * vfmediate policy: the staged configuration (config.h) turned into rule
 * specs, compiled (table.c) and published (dispatch.c), when a device is
 * opened. The configfs tree (cfs.c) stages; this file applies.
 */
#include <linux/kernel.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/overflow.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <uapi/linux/vfmediate.h>

#include "config.h"

/* Sorts after every rule name: an admin's rule wins ties with a trap. */
#define VFM_TRAP_NAME		"~mediator"

/* The staged configuration; see vfmediate_core.h. */
DEFINE_MUTEX(vfm_config_lock);
LIST_HEAD(vfm_cfg_devs);
LIST_HEAD(vfm_bound);

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

const char *vfm_region_name(unsigned int index)
{
	return index < VFM_NUM_REGIONS ? vfm_region_names[index] : "";
}

/*
 * Staged changes are numbered from one counter for all devices, so that a
 * directory removed and made again never repeats the number the running
 * table was compiled from.
 */
u64 vfm_config_seq;

void vfm_staged(struct vfm_cfg_dev *dev)
{
	lockdep_assert_held(&vfm_config_lock);
	dev->seq = ++vfm_config_seq;
}

/*
 * Can the attached mediator take trapped accesses of @access? -ENOENT
 * without a mediator, -EINVAL when it has neither a handler nor observe().
 */
int vfm_can_trap(const struct vfm_mediator_ops *ops, u8 access)
{
	if (!ops)
		return -ENOENT;
	if ((access & VFM_ACCESS_READ) && !ops->read && !ops->observe)
		return -EINVAL;
	if ((access & VFM_ACCESS_WRITE) && !ops->write && !ops->observe)
		return -EINVAL;
	return 0;
}

const struct vfm_mediator_ops *vfm_cfg_ops(struct vfm_cfg_dev *dev)
{
	return dev->mediator ? dev->mediator->ops : NULL;
}

/*
 * Mediator code that runs outside a VFIO user's own access, open() and
 * show(), must not wait for memory_lock (io.c): mark the task, one at a
 * time per device.
 */
void vfm_nowait_begin(struct vfm_device *vd)
{
	mutex_lock(&vd->nowait_lock);
	WRITE_ONCE(vd->nowait_task, current);
}

void vfm_nowait_end(struct vfm_device *vd)
{
	WRITE_ONCE(vd->nowait_task, NULL);
	mutex_unlock(&vd->nowait_lock);
}

void vfm_policy_bind(struct vfm_device *vd)
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

void vfm_policy_unbind(struct vfm_device *vd)
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
int vfm_policy_open(struct vfm_device *vd)
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

void vfm_policy_close(struct vfm_device *vd)
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
