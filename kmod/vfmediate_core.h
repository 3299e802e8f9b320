/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vfmediate core: per-device state and the dispatch table.
 */
#ifndef _VFMEDIATE_CORE_H
#define _VFMEDIATE_CORE_H

#include <linux/mm_types.h>
#include <linux/mutex.h>
#include <linux/rcupdate.h>
#include <linux/srcu.h>
#include <linux/types.h>
#include <linux/vfio_pci_core.h>
#include <linux/vfmediate.h>

/*
 * A compiled, immutable description of how to route one device's
 * accesses. It is built from the configuration when the device is opened,
 * published with rcu_assign_pointer() and replaced as a whole, never
 * changed in place. The per-region interval arrays are added with the
 * first rule that needs them.
 */
struct vfm_table {
	u64 generation;		/* 0: the pass-through table */
};

/*
 * The table of a device that mediates nothing. vfm_device.table is never
 * NULL: "no mediation" is this table, so the hot path tests one pointer
 * and the slow path may dereference whatever it finds.
 */
extern const struct vfm_table vfm_passthrough_table;

/**
 * struct vfm_device - a PCI device bound to vfmediate
 * @core: vfio-pci-core's device; first, as vfio_alloc_device() requires.
 * @cfg_lock: serializes configuration, mediator attach/detach and table
 *	publication. Readers of @table never take it.
 * @mediator: the attached mediator, or NULL. Protected by @cfg_lock.
 * @mediator_priv: the mediator's per-device state, from its open().
 * @table: the dispatch table, never NULL. Written under @cfg_lock, read
 *	under @srcu.
 * @srcu: protects @table. Handlers copy to and from user memory, so they
 *	may sleep (page faults, even userfaultfd), which plain RCU forbids.
 *	It is per device so that a reader stalled by one device's user
 *	cannot delay a table update of another device.
 */
struct vfm_device {
	struct vfio_pci_core_device core;
	struct mutex cfg_lock;		/* config, mediator, table writers */
	const struct vfm_mediator_ops *mediator;
	void *mediator_priv;
	const struct vfm_table __rcu *table;
	struct srcu_struct srcu;
};

static inline struct vfm_device *to_vfm(struct vfio_device *core_vdev)
{
	return container_of(core_vdev, struct vfm_device, core.vdev);
}

/*
 * True when @vd mediates nothing. Compares the pointer without
 * dereferencing it, so no SRCU read section is needed. A caller that sees
 * true may race with the publication of a real table; its access is then
 * ordered before the change, as if it had started a moment earlier.
 * Updates that must also wait for such accesses need more than
 * synchronize_srcu().
 */
static inline bool vfm_passthrough(struct vfm_device *vd)
{
	return rcu_access_pointer(vd->table) == &vfm_passthrough_table;
}

/* dispatch.c */
void vfm_table_init(struct vfm_device *vd);
void vfm_table_reset(struct vfm_device *vd);
ssize_t vfm_rw_slow(struct vfm_device *vd, char __user *buf, size_t count,
		    loff_t *ppos, bool iswrite);
int vfm_mmap_slow(struct vfm_device *vd, struct vm_area_struct *vma);

#endif /* _VFMEDIATE_CORE_H */
