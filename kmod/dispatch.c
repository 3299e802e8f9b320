// SPDX-License-Identifier: GPL-2.0
/*
 * vfmediate dispatch: the per-device table that routes a device's
 * accesses, and the slow paths taken when that table is not the
 * pass-through one.
 *
 * The pattern is KVM's I/O bus: readers srcu_dereference() an immutable
 * table; a writer publishes a new one, waits for an SRCU grace period and
 * frees the old one. Readers take no lock and never wait for a writer.
 */
#include <linux/slab.h>

#include "vfmediate_core.h"

const struct vfm_table vfm_passthrough_table;

/* Free a compiled table; never the pass-through one. */
static void vfm_table_free(const struct vfm_table *tbl)
{
	kfree(tbl);
}

void vfm_table_init(struct vfm_device *vd)
{
	RCU_INIT_POINTER(vd->table, &vfm_passthrough_table);
}

/*
 * Make @tbl the table of @vd; once no reader can still use the table it
 * replaces, free that. Readers of the pass-through table run only
 * vfio-pci-core code and it is never freed, so replacing it needs no wait:
 * closing a device that mediated nothing costs no grace period.
 *
 * synchronize_srcu() waits for readers, so the caller must not hold any
 * lock a reader may take, vfio-pci-core's memory_lock included. @cfg_lock
 * is not such a lock, but it is dropped before waiting anyway so that
 * configuration is never stalled by a slow reader.
 */
static void vfm_table_publish(struct vfm_device *vd,
			      const struct vfm_table *tbl)
{
	const struct vfm_table *old;

	mutex_lock(&vd->cfg_lock);
	old = rcu_replace_pointer(vd->table, tbl,
				  lockdep_is_held(&vd->cfg_lock));
	mutex_unlock(&vd->cfg_lock);

	if (old == &vfm_passthrough_table)
		return;
	synchronize_srcu(&vd->srcu);
	vfm_table_free(old);
}

/* Stop mediating @vd: route everything straight to vfio-pci-core. */
void vfm_table_reset(struct vfm_device *vd)
{
	vfm_table_publish(vd, &vfm_passthrough_table);
}

/*
 * Route one read or write through @tbl. This is where the handler of the
 * interval holding [*ppos, *ppos + count) in region
 * VFIO_PCI_OFFSET_TO_INDEX(*ppos) will be looked up; until a table can
 * hold rules, every range goes to vfio-pci-core.
 */
static ssize_t vfm_table_rw(struct vfm_device *vd, const struct vfm_table *tbl,
			    char __user *buf, size_t count, loff_t *ppos,
			    bool iswrite)
{
	struct vfio_device *core_vdev = &vd->core.vdev;

	if (iswrite)
		return vfio_pci_core_write(core_vdev, buf, count, ppos);
	return vfio_pci_core_read(core_vdev, buf, count, ppos);
}

/*
 * Route an mmap() through @tbl. This is where mapping a page that a rule
 * traps will be refused.
 */
static int vfm_table_mmap(struct vfm_device *vd, const struct vfm_table *tbl,
			  struct vm_area_struct *vma)
{
	return vfio_pci_core_mmap(&vd->core.vdev, vma);
}

/*
 * The slow paths are kept out of line so that the pass-through fast path
 * in main.c stays a test and a tail call, without the stack frame an SRCU
 * read section needs.
 */
noinline ssize_t vfm_rw_slow(struct vfm_device *vd, char __user *buf,
			     size_t count, loff_t *ppos, bool iswrite)
{
	const struct vfm_table *tbl;
	ssize_t ret;
	int idx;

	idx = srcu_read_lock(&vd->srcu);
	tbl = srcu_dereference(vd->table, &vd->srcu);
	ret = vfm_table_rw(vd, tbl, buf, count, ppos, iswrite);
	srcu_read_unlock(&vd->srcu, idx);

	return ret;
}

noinline int vfm_mmap_slow(struct vfm_device *vd, struct vm_area_struct *vma)
{
	const struct vfm_table *tbl;
	int idx, ret;

	idx = srcu_read_lock(&vd->srcu);
	tbl = srcu_dereference(vd->table, &vd->srcu);
	ret = vfm_table_mmap(vd, tbl, vma);
	srcu_read_unlock(&vd->srcu, idx);

	return ret;
}
