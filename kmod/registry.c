// SPDX-License-Identifier: GPL-2.0
/*
 * vfmediate mediator registry: registration by name, demand loading by
 * module alias, and the module references that keep a mediator loaded
 * while it is attached to a device or in use by an open one.
 *
 * Each registered mediator also appears, read-only, as
 * /sys/kernel/config/vfmediate/mediators/<name>/.
 */
#include <linux/kmod.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "vfmediate_core.h"

static DEFINE_MUTEX(vfm_registry_lock);
static LIST_HEAD(vfm_mediators);
static struct config_group *vfm_mediators_group;

/* A name fit for a module alias and a configfs directory: [a-z0-9_-]. */
bool vfm_valid_name(const char *name)
{
	size_t i, len;

	if (!name)
		return false;
	len = strnlen(name, VFM_NAME_LEN);
	if (!len || len >= VFM_NAME_LEN)
		return false;
	for (i = 0; i < len; i++) {
		char c = name[i];

		/* Not islower(): the kernel's ctype takes Latin-1 letters. */
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

static struct vfm_mediator *vfm_find_locked(const char *name)
{
	struct vfm_mediator *m;

	lockdep_assert_held(&vfm_registry_lock);
	list_for_each_entry(m, &vfm_mediators, node)
		if (!strcmp(m->ops->name, name))
			return m;
	return NULL;
}

/* A mediator being registered is listed, to hold its name, but not live. */
static struct vfm_mediator *vfm_find_live(const char *name)
{
	struct vfm_mediator *m = vfm_find_locked(name);

	return m && m->live ? m : NULL;
}

/* The mediator @name with a reference on its module, or NULL. */
static struct vfm_mediator *vfm_lookup_get(const char *name)
{
	struct vfm_mediator *m;

	mutex_lock(&vfm_registry_lock);
	m = vfm_find_live(name);
	if (m && try_module_get(m->ops->owner))
		atomic_inc(&m->users);
	else
		m = NULL;
	mutex_unlock(&vfm_registry_lock);
	return m;
}

/*
 * The live mediator named @name, or else the @pos'th live one, for
 * netlink. -ENOENT past the end.
 */
int vfm_registry_info(const char *name, unsigned long pos,
		      struct vfm_med_info *info)
{
	struct vfm_mediator *m;
	int ret = -ENOENT;

	mutex_lock(&vfm_registry_lock);
	list_for_each_entry(m, &vfm_mediators, node) {
		if (!m->live || (name ? strcmp(m->ops->name, name) : pos--))
			continue;
		strscpy(info->name, m->ops->name, sizeof(info->name));
		strscpy(info->module, m->ops->owner ?
			module_name(m->ops->owner) : "", sizeof(info->module));
		info->users = atomic_read(&m->users);
		ret = 0;
		break;
	}
	mutex_unlock(&vfm_registry_lock);
	return ret;
}

/**
 * vfm_mediator_get() - find a mediator, loading its module if need be
 * @name: a name that passed vfm_valid_name()
 *
 * Return: the mediator, whose module stays loaded until the matching
 * vfm_mediator_put(), or NULL when no module provides @name.
 */
struct vfm_mediator *vfm_mediator_get(const char *name)
{
	struct vfm_mediator *m = vfm_lookup_get(name);

	if (m)
		return m;
	/* The result does not matter: the lookup tells. */
	request_module("vfmediate-mediator:%s", name);
	return vfm_lookup_get(name);
}

void vfm_mediator_put(struct vfm_mediator *m)
{
	if (!m)
		return;
	atomic_dec(&m->users);
	module_put(m->ops->owner);
}

/* mediators/<name>/: module, users, ops. */
static inline struct vfm_mediator *to_mediator(struct config_item *item)
{
	return container_of(to_config_group(item), struct vfm_mediator, group);
}

static ssize_t vfm_med_module_show(struct config_item *item, char *page)
{
	return sysfs_emit(page, "%s\n", module_name(to_mediator(item)->ops->owner));
}

static ssize_t vfm_med_users_show(struct config_item *item, char *page)
{
	return sysfs_emit(page, "%d\n", atomic_read(&to_mediator(item)->users));
}

static ssize_t vfm_med_ops_show(struct config_item *item, char *page)
{
	const struct vfm_mediator_ops *ops = to_mediator(item)->ops;
	static const struct {
		size_t offset;
		const char *name;
	} names[] = {
		{ offsetof(struct vfm_mediator_ops, check_args), "check_args" },
		{ offsetof(struct vfm_mediator_ops, open), "open" },
		{ offsetof(struct vfm_mediator_ops, close), "close" },
		{ offsetof(struct vfm_mediator_ops, region_info), "region_info" },
		{ offsetof(struct vfm_mediator_ops, read), "read" },
		{ offsetof(struct vfm_mediator_ops, write), "write" },
		{ offsetof(struct vfm_mediator_ops, observe), "observe" },
		{ offsetof(struct vfm_mediator_ops, reset), "reset" },
		{ offsetof(struct vfm_mediator_ops, mmap), "mmap" },
		{ offsetof(struct vfm_mediator_ops, show), "show" },
		{ offsetof(struct vfm_mediator_ops, retrap), "retrap" },
		{ offsetof(struct vfm_mediator_ops, state_size), "state_size" },
		{ offsetof(struct vfm_mediator_ops, save_state), "save_state" },
		{ offsetof(struct vfm_mediator_ops, load_state), "load_state" },
		{ offsetof(struct vfm_mediator_ops, stop), "stop" },
		{ offsetof(struct vfm_mediator_ops, run), "run" },
	};
	int i, len = 0;

	for (i = 0; i < ARRAY_SIZE(names); i++) {
		if (!*(void **)((char *)ops + names[i].offset))
			continue;
		len += sysfs_emit_at(page, len, "%s%s", len ? " " : "",
				     names[i].name);
	}
	return len + sysfs_emit_at(page, len, "\n");
}

CONFIGFS_ATTR_RO(vfm_med_, module);
CONFIGFS_ATTR_RO(vfm_med_, users);
CONFIGFS_ATTR_RO(vfm_med_, ops);

static struct configfs_attribute *vfm_med_attrs[] = {
	&vfm_med_attr_module,
	&vfm_med_attr_users,
	&vfm_med_attr_ops,
	NULL,
};

/*
 * Freed on the group's last reference: config_group_put(), not kfree(),
 * also frees a name longer than CONFIGFS_ITEM_NAME_LEN, which
 * config_group_init_type_name() allocated.
 */
static void vfm_med_release(struct config_item *item)
{
	kfree(to_mediator(item));
}

static struct configfs_item_operations vfm_med_item_ops = {
	.release = vfm_med_release,
};

static const struct config_item_type vfm_med_type = {
	.ct_item_ops = &vfm_med_item_ops,
	.ct_attrs = vfm_med_attrs,
	.ct_owner = THIS_MODULE,
};

/**
 * vfm_register_mediator() - make a mediator available by name
 * @ops: the mediator; must outlive its registration (static, normally)
 *
 * Return: 0; -EINVAL for a missing or unfit name or a missing .owner;
 * -EEXIST when the name is taken; -ENOMEM.
 */
int vfm_register_mediator(const struct vfm_mediator_ops *ops)
{
	struct vfm_mediator *m;
	int ret;

	if (!ops || !vfm_valid_name(ops->name) || !ops->owner)
		return -EINVAL;
	m = kzalloc(sizeof(*m), GFP_KERNEL);
	if (!m)
		return -ENOMEM;
	m->ops = ops;
	config_group_init_type_name(&m->group, ops->name, &vfm_med_type);

	mutex_lock(&vfm_registry_lock);
	if (vfm_find_locked(ops->name)) {
		mutex_unlock(&vfm_registry_lock);
		config_group_put(&m->group);
		return -EEXIST;
	}
	list_add_tail(&m->node, &vfm_mediators);
	mutex_unlock(&vfm_registry_lock);

	/* Outside the lock: configfs takes its own, which readers hold. */
	ret = configfs_register_group(vfm_mediators_group, &m->group);
	mutex_lock(&vfm_registry_lock);
	if (ret)
		list_del(&m->node);
	else
		m->live = true;
	mutex_unlock(&vfm_registry_lock);
	if (ret)
		config_group_put(&m->group);
	return ret;
}
EXPORT_SYMBOL_GPL(vfm_register_mediator);

/**
 * vfm_unregister_mediator() - withdraw a mediator
 * @ops: as registered
 *
 * Called from the mediator's module exit. No device can be using it then:
 * every use holds a reference on its module.
 */
void vfm_unregister_mediator(const struct vfm_mediator_ops *ops)
{
	struct vfm_mediator *m;

	mutex_lock(&vfm_registry_lock);
	list_for_each_entry(m, &vfm_mediators, node)
		if (m->ops == ops)
			break;
	if (list_entry_is_head(m, &vfm_mediators, node)) {
		mutex_unlock(&vfm_registry_lock);
		return;
	}
	list_del(&m->node);
	mutex_unlock(&vfm_registry_lock);

	/* Waits out readers of its attributes; then nothing can reach @m. */
	configfs_unregister_group(&m->group);
	config_group_put(&m->group);
}
EXPORT_SYMBOL_GPL(vfm_unregister_mediator);

int vfm_registry_init(struct config_group *parent)
{
	vfm_mediators_group = parent;
	return 0;
}

void vfm_registry_exit(void)
{
	/* Mediators depend on us: all are gone before our exit runs. */
	WARN_ON(!list_empty(&vfm_mediators));
}
