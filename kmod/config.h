/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vfmediate's staged configuration: what the configfs tree (cfs.c,
 * cfs_rules.c) holds and the policy layer (policy.c) compiles. Private
 * to those files; everything here is under vfm_config_lock unless said
 * otherwise.
 */
#ifndef _VFM_CONFIG_H
#define _VFM_CONFIG_H

#include "vfmediate_core.h"

struct vfm_cfg_region;

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

static inline struct vfm_cfg_dev *to_cfg_dev(struct config_item *item)
{
	return container_of(to_config_group(item), struct vfm_cfg_dev, group);
}

static inline struct vfm_cfg_region *to_cfg_region(struct config_item *item)
{
	return container_of(to_config_group(item), struct vfm_cfg_region, group);
}

static inline struct vfm_cfg_rule *to_cfg_rule(struct config_item *item)
{
	return container_of(item, struct vfm_cfg_rule, item);
}

/* policy.c: the lock and lists of the staged configuration */
extern struct mutex vfm_config_lock;
extern struct list_head vfm_cfg_devs;	/* configured devices */
extern struct list_head vfm_bound;	/* devices bound to vfmediate */
extern u64 vfm_config_seq;

void vfm_staged(struct vfm_cfg_dev *dev);
int vfm_can_trap(const struct vfm_mediator_ops *ops, u8 access);
const struct vfm_mediator_ops *vfm_cfg_ops(struct vfm_cfg_dev *dev);
void vfm_nowait_begin(struct vfm_device *vd);
void vfm_nowait_end(struct vfm_device *vd);

/* cfs_rules.c: regions/<name>/ and their rules */
extern const struct config_item_type vfm_region_type;
extern const struct config_item_type vfm_rules_type;

int vfm_strip(char *buf, size_t size, const char *page, size_t count);
int vfm_match(const char * const *names, int n, const char *page,
	      size_t count);

#endif /* _VFM_CONFIG_H */
