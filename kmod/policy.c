// SPDX-License-Identifier: GPL-2.0
/*
 * vfmediate policy: the staged configuration (config.h) turned into rule
 * specs, compiled (table.c) and published (dispatch.c), when a device is
 * opened and when a live apply asks for it while it is open. The
 * configfs tree (cfs.c) stages; this file applies.
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
			vd->migratable = vfm_mig_capable(vfm_cfg_ops(dev));
			break;
		}
	}
	mutex_unlock(&vfm_config_lock);
	vfm_event_post(VFMEDIATE_EVENT_BOUND, vfm_name(vd), NULL, 0, 0, NULL);
}

/*
 * A failure outside compile and publish (a migration transition), for
 * the device's "error". Not from an SRCU read section of @vd.
 */
void vfm_policy_set_error(struct vfm_device *vd, const char *text)
{
	mutex_lock(&vfm_config_lock);
	if (vd->cfg)
		strscpy(vd->cfg->error, text, sizeof(vd->cfg->error));
	mutex_unlock(&vfm_config_lock);
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

/* Why a table is built. */
enum vfm_build_mode {
	VFM_BUILD_OPEN,		/* the device is being opened */
	VFM_BUILD_APPLY,	/* a live apply */
	VFM_BUILD_REVOKE,	/* a live apply that may take mapped pages */
	VFM_BUILD_RETRAP,	/* the running mediator's retrap() asked for */
};

/*
 * What building a table takes from the configuration, under
 * vfm_config_lock; the mediator is then opened without it.
 */
struct vfm_open_ctx {
	struct vfm_cfg_dev *dev;	/* NULL: no configuration */
	u64 seq;			/* dev->seq when taken */
	bool active;			/* anything to compile */
	bool live;			/* a live apply, not an open */
	bool revoke;			/* ruled pages may be mapped */
	bool retrap;			/* the mediator declares its traps anew */
	/* With a module reference of its own, unless @keep is set. */
	const struct vfm_mediator_ops *ops;
	/* The running table, whose mediator instance the new one keeps. */
	const struct vfm_table *keep;
	char *args;
	char error[VFM_ERR_LEN];
};

/*
 * A live apply that leaves the mediator and its arguments as they are
 * keeps the running instance: its state (a migration under way, say)
 * survives a change of rules, and its open() does not run again. The
 * caller holds @vd->cfg_lock, so the running table stays.
 */
static bool vfm_keeps_mediator(struct vfm_device *vd, struct vfm_open_ctx *ctx)
{
	const struct vfm_table *running;

	if (!ctx->live)
		return false;
	running = rcu_dereference_protected(vd->table,
					    lockdep_is_held(&vd->cfg_lock));
	if (running->mops != ctx->ops || !running->margs ||
	    strcmp(running->margs, ctx->args))
		return false;
	ctx->keep = running;
	return true;
}

static int vfm_open_begin(struct vfm_device *vd, struct vfm_open_ctx *ctx,
			  enum vfm_build_mode mode)
{
	const struct vfm_mediator_ops *ops;

	lockdep_assert_held(&vfm_config_lock);
	*ctx = (struct vfm_open_ctx){
		.dev = vd->cfg, .live = mode != VFM_BUILD_OPEN,
		.revoke = mode == VFM_BUILD_REVOKE,
		.retrap = mode == VFM_BUILD_RETRAP,
	};
	if (!ctx->dev)
		return 0;
	ctx->seq = ctx->dev->seq;
	if (!vfm_cfg_active(ctx->dev))
		return 0;
	ctx->active = true;
	/* A mediator's retrap applies no half-written change of the admin's. */
	if (ctx->retrap && ctx->seq != vd->table_seq) {
		snprintf(ctx->error, sizeof(ctx->error),
			 "the mediator's retrap waits: staged changes are pending (apply them)");
		return -EBUSY;
	}
	ops = vfm_cfg_ops(ctx->dev);
	if (!ops)
		return 0;
	ctx->args = kstrdup(ctx->dev->args, GFP_KERNEL);
	if (!ctx->args)
		return -ENOMEM;
	ctx->ops = ops;
	if (vfm_keeps_mediator(vd, ctx))
		return 0;
	/* The table's own reference, dropped when it goes. */
	if (!try_module_get(ops->owner)) {
		ctx->ops = NULL;
		snprintf(ctx->error, sizeof(ctx->error),
			 "mediator %s: module is being removed", ops->name);
		return -ENOENT;
	}
	return 0;
}

/* The running instance declares its traps anew (vfm_request_retrap()). */
static int vfm_retrap_mediator(struct vfm_device *vd, struct vfm_open_ctx *ctx)
{
	const struct vfm_mediator_ops *ops = ctx->keep->mops;
	int ret;

	vd->open_ops = ops;
	vfm_nowait_begin(vd);
	ret = ops->retrap(vd, ctx->keep->mpriv);
	vfm_nowait_end(vd);
	vd->open_ops = NULL;
	if (ret)
		snprintf(ctx->error, sizeof(ctx->error),
			 "mediator %s: retrap failed (%d)", ops->name, ret);
	return ret;
}

/*
 * Let @tbl borrow the running instance, with the ranges it trapped, or
 * those its retrap(), when it has one, declares now: what it wants
 * trapped may have changed since (a retrap refused over pending changes).
 */
static int vfm_keep_mediator(struct vfm_device *vd, struct vfm_open_ctx *ctx,
			     struct vfm_table *tbl)
{
	const struct vfm_rules *rules = ctx->keep->rules;
	int ret;

	if (!vd->traps)
		return -ENOMEM;
	if (ctx->keep->mops->retrap) {
		ret = vfm_retrap_mediator(vd, ctx);
		if (ret)
			return ret;
	} else {
		if (rules->nr_traps)
			memcpy(vd->traps, rules->traps,
			       rules->nr_traps * sizeof(*vd->traps));
		vd->nr_traps = rules->nr_traps;
	}
	tbl->mops = ctx->keep->mops;
	tbl->mpriv = ctx->keep->mpriv;
	tbl->borrowed = true;
	return 0;
}

/*
 * Open the mediator for @tbl; it may trap ranges meanwhile. Not under
 * vfm_config_lock: open() may access the device and so take its
 * memory_lock, which a PF's sriov_configure holds while the VFs it
 * creates bind and take vfm_config_lock. Under @vd->cfg_lock, which
 * makes opens and live applies of the device take turns: vd->traps needs
 * no other lock.
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
	tbl->margs = ctx->args;
	ctx->args = NULL;
	if (ctx->keep)
		return vfm_keep_mediator(vd, ctx, tbl);
	vd->open_ops = ops;
	ret = vd->traps ? 0 : -ENOMEM;
	if (!ret && ops->open) {
		vfm_nowait_begin(vd);
		ret = ops->open(vd, tbl->margs, &priv);
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
	rules = vfm_rules_pack(rules);
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

/* Why a table that would rule a mapped page is refused. */
static void vfm_conflict_error(struct vfm_open_ctx *ctx, u32 index, u64 start,
			       u64 len, bool revocable)
{
	const char *what = index < VFM_NUM_REGIONS ? vfm_region_names[index] :
			   "a mapping that could not be recorded:";

	if (!ctx->revoke)
		snprintf(ctx->error, sizeof(ctx->error),
			 "%s %#llx+%#llx is mmap'ed by the VFIO user and the new rules would trap it: refused (write revoke to apply to take it away)",
			 what, start, len);
	else if (!revocable)
		snprintf(ctx->error, sizeof(ctx->error),
			 "%s %#llx+%#llx is mmap'ed by the VFIO user through the mediator or unrecorded, and cannot be revoked: refused",
			 what, start, len);
}

/*
 * Make @tbl (NULL: pass-through) the running table unless the user holds
 * mmap'ed a page it would rule and this is no revocation that can take
 * it away: the check and the swap are one step for mmap() and faults
 * (maps.c). The replaced table is left in *@oldp for vfm_table_retire();
 * a revocation's zap follows, in vfm_policy_apply().
 */
static int vfm_publish(struct vfm_device *vd, struct vfm_open_ctx *ctx,
		       struct vfm_table *tbl, const struct vfm_table **oldp,
		       bool *handover)
{
	u64 start = 0, len = 0;
	bool revocable;
	u32 index;

	mutex_lock(&vd->maps_lock);
	if (tbl && vfm_maps_conflict(vd, tbl->rules, &index, &start, &len,
				     &revocable) &&
	    (!ctx->revoke || !revocable)) {
		mutex_unlock(&vd->maps_lock);
		vfm_conflict_error(ctx, index, start, len, revocable);
		return -EBUSY;
	}
	if (tbl)
		tbl->generation = ++vd->generation;
	*oldp = vfm_table_replace(vd, tbl, handover);
	if (ctx->revoke)
		vfm_maps_revoking(vd);
	mutex_unlock(&vd->maps_lock);
	vfm_opened(vd, ctx->dev, tbl);
	return 0;
}

/*
 * Under vfm_config_lock again: compile @tbl if the configuration is still
 * the one the mediator was opened with (else -EAGAIN, to start over), and
 * publish it. Fails closed: a rule that cannot be applied fails the open
 * or the apply, and "error" says why.
 */
static int vfm_open_finish(struct vfm_device *vd, struct vfm_open_ctx *ctx,
			   struct vfm_table *tbl, int ret,
			   const struct vfm_table **oldp, bool *handover)
{
	struct vfm_cfg_dev *dev = ctx->dev;

	lockdep_assert_held(&vfm_config_lock);
	if (vd->cfg != dev || (dev && dev->seq != ctx->seq))
		return -EAGAIN;
	if (!ctx->active)
		return vfm_publish(vd, ctx, NULL, oldp, handover);
	if (!ret)
		ret = vfm_compile_rules(vd, dev, tbl);
	if (!ret)
		ret = vfm_publish(vd, ctx, tbl, oldp, handover);
	if (ret) {
		if (ctx->error[0])
			strscpy(dev->error, ctx->error, sizeof(dev->error));
		else if (!dev->error[0])
			snprintf(dev->error, sizeof(dev->error),
				 "compiling the table failed (%d)", ret);
		return ret;
	}
	return 0;
}

/*
 * One try at building and publishing a table: -EAGAIN if the
 * configuration changed meanwhile. Under @vd->cfg_lock.
 */
static int vfm_build_try(struct vfm_device *vd, enum vfm_build_mode mode,
			 const struct vfm_table **oldp, bool *handover)
{
	struct vfm_open_ctx ctx;
	struct vfm_table *tbl = NULL;
	int ret;

	mutex_lock(&vfm_config_lock);
	ret = vfm_open_begin(vd, &ctx, mode);
	if (ctx.dev && ctx.active)
		ctx.dev->error[0] = '\0';
	mutex_unlock(&vfm_config_lock);

	if (!ret && ctx.active) {
		tbl = vfm_table_alloc();
		ret = tbl ? vfm_open_mediator(vd, &ctx, tbl) : -ENOMEM;
		if (!tbl && ctx.ops && !ctx.keep)
			module_put(ctx.ops->owner);
	}
	kfree(ctx.args);

	mutex_lock(&vfm_config_lock);
	ret = vfm_open_finish(vd, &ctx, tbl, ret, oldp, handover);
	mutex_unlock(&vfm_config_lock);

	vfm_drop_traps(vd);
	/*
	 * Not under vfm_config_lock: the mediator's close() runs, unless the
	 * table only borrowed the running instance.
	 */
	if (ret)
		vfm_table_release(vd, tbl);
	return ret;
}

/* Tries before a build that keeps meeting configuration changes fails. */
#define VFM_OPEN_TRIES	8

/*
 * Build and publish the table of @vd from its staged configuration. On
 * failure the running table is untouched.
 */
static int vfm_build(struct vfm_device *vd, enum vfm_build_mode mode,
		     const struct vfm_table **oldp, bool *handover)
{
	int i, ret;

	lockdep_assert_held(&vd->cfg_lock);
	for (i = 0; i < VFM_OPEN_TRIES; i++) {
		ret = vfm_build_try(vd, mode, oldp, handover);
		if (ret != -EAGAIN)
			break;
	}
	return ret == -EAGAIN ? -EBUSY : ret;
}

/* Tell the monitor group how building a table of generation @gen went. */
static void vfm_build_events(struct vfm_device *vd, u64 gen, int ret,
			     bool live)
{
	char *error;

	if (!ret) {
		/* A live apply back to pass-through is reported too. */
		if (gen || live)
			vfm_event_post(VFMEDIATE_EVENT_CONFIG_APPLIED,
				       vfm_name(vd), NULL, gen, 0, NULL);
		if (!live)
			vfm_event_post(VFMEDIATE_EVENT_OPENED, vfm_name(vd),
				       NULL, gen, 0, NULL);
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

/* Compile and publish the table of a device being opened. */
int vfm_policy_open(struct vfm_device *vd)
{
	const struct vfm_table *old;
	bool handover;
	u64 gen;
	int ret;

	mutex_lock(&vd->cfg_lock);
	ret = vfm_build(vd, VFM_BUILD_OPEN, &old, &handover);
	gen = READ_ONCE(vd->table_gen);
	/* @old is the pass-through table: a closed device mediates nothing. */
	if (!ret)
		vfm_table_retire(vd, old, handover);
	mutex_unlock(&vd->cfg_lock);
	vfm_build_events(vd, ret ? 0 : gen, ret, false);
	return ret;
}

/* The rules of the running table, which @vd->cfg_lock keeps running. */
static const struct vfm_rules *vfm_running_rules(struct vfm_device *vd)
{
	return rcu_dereference_protected(vd->table,
					 lockdep_is_held(&vd->cfg_lock))->rules;
}

/**
 * vfm_policy_apply() - apply the staged configuration of an open device
 * @vd: the device, with a reference held
 * @revoke: take ruled pages away from the user's mappings of them
 *
 * Compiles the staged configuration into a new table and publishes it:
 * accesses in flight finish on the old table, later ones see the new
 * one, and the old one is released once no reader can hold it. A
 * mediator attached, detached, changed or given other arguments is
 * opened before the swap and the old one closed after it, neither under
 * vfm_config_lock. A device that is not open, or has nothing pending,
 * is left as it is: the staged configuration applies at its next open.
 *
 * Without @revoke, a table that would rule a page the user holds mmap'ed
 * is refused. With it, the table is published and then every mapping of
 * a page it rules is zapped; a later fault of one gets SIGBUS. The write
 * returns once no mapping reaches a ruled page.
 *
 * Return: 0, or why the running table was kept (-EBUSY: a page the user
 * has mmap'ed would be ruled and may not be revoked, or the
 * configuration kept changing); the configuration's "error" says more.
 */
int vfm_policy_apply(struct vfm_device *vd, bool revoke)
{
	const struct vfm_table *old;
	bool handover, pending;
	u64 gen = 0;
	int ret;

	mutex_lock(&vd->cfg_lock);
	mutex_lock(&vfm_config_lock);
	pending = vd->open && vd->cfg && vd->table_seq != vd->cfg->seq;
	mutex_unlock(&vfm_config_lock);
	if (!pending) {
		mutex_unlock(&vd->cfg_lock);
		return 0;
	}
	ret = vfm_build(vd, revoke ? VFM_BUILD_REVOKE : VFM_BUILD_APPLY, &old,
			&handover);
	if (!ret) {
		gen = READ_ONCE(vd->table_gen);
		if (revoke)
			vfm_maps_revoke(vd, vfm_running_rules(vd));
		vfm_table_retire(vd, old, handover);
	}
	mutex_unlock(&vd->cfg_lock);
	vfm_build_events(vd, gen, ret, true);
	return ret;
}

void vfm_policy_close(struct vfm_device *vd)
{
	const struct vfm_table *old;
	bool handover;

	/* Not under vfm_config_lock: retiring waits for readers. */
	mutex_lock(&vd->cfg_lock);
	old = vfm_table_replace(vd, NULL, &handover);
	vfm_table_retire(vd, old, handover);
	mutex_lock(&vfm_config_lock);
	vd->open = false;
	vd->table_gen = 0;
	mutex_unlock(&vfm_config_lock);
	mutex_unlock(&vd->cfg_lock);
	/* The mediator is closed: nobody asks for a retrap any more. */
	cancel_work_sync(&vd->retrap_work);
	vfm_event_post(VFMEDIATE_EVENT_CLOSED, vfm_name(vd), NULL, 0, 0, NULL);
}

/* Has the running table a mediator with a retrap() hook? */
static bool vfm_running_retraps(struct vfm_device *vd)
{
	const struct vfm_table *tbl;

	tbl = rcu_dereference_protected(vd->table,
					lockdep_is_held(&vd->cfg_lock));
	return tbl->mops && tbl->mops->retrap;
}

/*
 * What vfm_request_retrap() asked for: a table with the traps the
 * running mediator declares now, built and published as a live apply of
 * an unchanged configuration is. Refused, with a config-refused event
 * and the reason in "error", while staged changes are pending or when a
 * newly trapped page is mmap'ed by the VFIO user.
 */
void vfm_retrap_work(struct work_struct *work)
{
	struct vfm_device *vd = container_of(work, struct vfm_device,
					     retrap_work);
	const struct vfm_table *old;
	bool handover, open;
	u64 gen = 0;
	int ret;

	mutex_lock(&vd->cfg_lock);
	mutex_lock(&vfm_config_lock);
	open = vd->open;
	mutex_unlock(&vfm_config_lock);
	if (!open || !vfm_running_retraps(vd)) {
		mutex_unlock(&vd->cfg_lock);
		return;
	}
	ret = vfm_build(vd, VFM_BUILD_RETRAP, &old, &handover);
	if (!ret) {
		gen = READ_ONCE(vd->table_gen);
		vfm_table_retire(vd, old, handover);
	}
	mutex_unlock(&vd->cfg_lock);
	vfm_build_events(vd, gen, ret, true);
}

/**
 * vfm_request_retrap() - ask to start or stop trapping while open
 * @vd: a device the calling mediator has open
 *
 * Queues a call of the running instance's retrap() hook, in which it
 * declares the ranges to trap from now on, and the publication of a
 * table with them; returns at once. Accesses use the running table until
 * the new one is published (the device's "generation" then changes and
 * a config-applied event is sent; a refusal sends config-refused and
 * sets "error"). May be called from any context, the mediator's own
 * handlers included, until its close() returns; requests made before
 * the work runs are merged.
 */
void vfm_request_retrap(struct vfm_device *vd)
{
	schedule_work(&vd->retrap_work);
}
EXPORT_SYMBOL_GPL(vfm_request_retrap);

/**
 * vfm_trap_range() - route a byte range of a region to the mediator
 * @vd: the device being opened
 * @index: VFIO region index
 * @start: first byte, within the region
 * @len: bytes, at least one
 * @access: VFM_ACCESS_READ, _WRITE or _RW
 *
 * Only valid from the mediator's open() and retrap(). The pages it
 * touches are no longer mmap-able. A more specific rule of the admin's overrides it.
 *
 * Return: 0, -EINVAL (bad index or access, not called from open() or
 * retrap(), or a mediator with neither the handler nor observe() for
 * @access), -ERANGE (outside the region), -ENOSPC (too many ranges).
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
