// SPDX-License-Identifier: GPL-2.0
/*
 * vfmediate configfs tree: the staged configuration of each device.
 *
 *   /sys/kernel/config/vfmediate/
 *     devices/<DDDD:BB:DD.F>/       mkdir; the device need not exist yet
 *       mediator mediator_args apply mediator_state state generation
 *       pending error warning isolation table_bytes compile_ns
 *       regions/<config|bar0..bar5|rom|vga>/   (cfs_rules.c)
 *     mediators/<name>/             one per registered mediator (registry.c)
 *
 * configfs-schema/vfmediate.schema is the reference for every attribute.
 * Every store parses and validates completely, then changes the staged
 * configuration under vfm_config_lock, or changes nothing and fails.
 * Changes to an open device are staged: "pending" says whether any are
 * waiting; they apply at its next open, or at once when "apply" is
 * written. policy.c compiles and publishes them.
 */
#include <linux/iommu.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <uapi/linux/vfmediate.h>

#include "config.h"

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

/*
 * Whether the function offers VFIO migration (decided at bind, see
 * migrate.c), and where its state machine is. Read without the
 * migration lock: a transition may be under way.
 */
static ssize_t vfm_dev_migration_show(struct config_item *item, char *page)
{
	struct vfm_cfg_dev *dev = to_cfg_dev(item);
	const char *state = "none";

	mutex_lock(&vfm_config_lock);
	if (dev->vd && dev->vd->core.vdev.mig_ops)
		state = vfm_mig_state_name(READ_ONCE(dev->vd->mig_state));
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

/*
 * "1": apply the staged configuration to the open device now, or fail
 * and keep the running table (policy.c); "revoke": the same, taking
 * newly ruled pages away from the user's mappings instead of failing.
 * On a device that is not open it does nothing: the next open applies
 * the configuration anyway.
 */
static ssize_t vfm_dev_apply_store(struct config_item *item,
				   const char *page, size_t count)
{
	static const char * const modes[] = { "1", "revoke" };
	struct vfm_cfg_dev *dev = to_cfg_dev(item);
	struct vfm_device *vd;
	int mode, ret;

	mode = vfm_match(modes, ARRAY_SIZE(modes), page, count);
	if (mode < 0)
		return -EINVAL;
	/* Applying waits for readers: not under vfm_config_lock. */
	mutex_lock(&vfm_config_lock);
	vd = dev->vd;
	if (vd)
		get_device(&vd->core.vdev.device);
	mutex_unlock(&vfm_config_lock);
	if (!vd)
		return count;
	ret = vfm_policy_apply(vd, mode == 1);
	put_device(&vd->core.vdev.device);
	return ret ?: count;
}

CONFIGFS_ATTR(vfm_dev_, mediator);
CONFIGFS_ATTR(vfm_dev_, mediator_args);
CONFIGFS_ATTR_WO(vfm_dev_, apply);
CONFIGFS_ATTR_RO(vfm_dev_, mediator_state);
CONFIGFS_ATTR_RO(vfm_dev_, state);
CONFIGFS_ATTR_RO(vfm_dev_, migration);
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
	&vfm_dev_attr_apply,
	&vfm_dev_attr_mediator_state,
	&vfm_dev_attr_state,
	&vfm_dev_attr_migration,
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
	config_group_init_type_name(&region->group, vfm_region_name(index),
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
	info->migratable = !!vd->core.vdev.mig_ops;
	info->mig_state = READ_ONCE(vd->mig_state);
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
