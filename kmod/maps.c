// SPDX-License-Identifier: GPL-2.0
/*
 * vfmediate maps: which ranges of a device's regions a VFIO user holds
 * mmap'ed right now, so that a live apply can refuse a table that would
 * rule a page the user could still reach through its mapping.
 *
 * Every mapping made through the device fd is recorded here, with the
 * range it had when made or copied (fork, mremap, a split: vm_ops->open)
 * and forgotten when its vma goes (vm_ops->close). The vm_ops are
 * vfio-pci-core's own, wrapped: one copy of them with open and close of
 * ours that call the originals. A vma shrunk by a partial munmap keeps
 * its first range, so a record is never smaller than the mapping: a
 * check errs on the side of refusing. A mapping made by a mediator's
 * mmap() with vm_ops of its own is recorded and kept until the device
 * is closed, for the same reason.
 *
 * @vd->maps_lock also makes an mmap() and a live apply exclusive: an
 * mmap() checked against the running table is recorded before a new
 * table can be checked against the records (lock order: mmap_lock of the
 * mm, then maps_lock; the publishers take it under vfm_config_lock).
 */
#include <linux/mm.h>
#include <linux/slab.h>

#include "vfmediate_core.h"

struct vfm_map {
	struct list_head node;
	const struct vm_area_struct *vma;
	u32 index;
	u64 start;
	u64 len;
};

static DEFINE_MUTEX(vfm_vm_ops_lock);	/* sets up the two below once */
static const struct vm_operations_struct *vfm_core_vm_ops;
/* vfio-pci-core's, with our open and close; built at the first mmap. */
static const struct vm_operations_struct *vfm_vm_ops;

static struct vfm_device *vfm_vma_dev(struct vm_area_struct *vma)
{
	struct vfio_pci_core_device *core = vma->vm_private_data;

	return container_of(core, struct vfm_device, core);
}

/* Record @vma, mapping @len bytes from @start of region @index. */
static void vfm_maps_add(struct vfm_device *vd,
			 const struct vm_area_struct *vma, u32 index,
			 u64 start, u64 len)
{
	struct vfm_map *m = kmalloc(sizeof(*m), GFP_KERNEL);

	lockdep_assert_held(&vd->maps_lock);
	if (!m) {
		/* Unknown from now on: every page counts as mapped. */
		vd->maps_lost = true;
		return;
	}
	m->vma = vma;
	m->index = index;
	m->start = start;
	m->len = len;
	list_add(&m->node, &vd->maps);
}

/*
 * The region and offset a mapping vfio-pci-core made points at: from
 * vm_pgoff, in VFIO's offset form or as a physical page number, which is
 * then found in the BAR that holds it (compat.h). False if none does.
 */
static bool vfm_core_vma_range(struct pci_dev *pdev,
			       const struct vm_area_struct *vma, u32 *index,
			       u64 *start)
{
	u64 phys = (u64)vma->vm_pgoff << PAGE_SHIFT;
	unsigned int bar;

	if (!VFM_CORE_VMA_PGOFF_PHYS) {
		*index = vma->vm_pgoff >> (VFIO_PCI_OFFSET_SHIFT - PAGE_SHIFT);
		*start = phys & VFIO_PCI_OFFSET_MASK;
		return true;
	}
	for (bar = 0; bar < PCI_STD_NUM_BARS; bar++) {
		u64 base = pci_resource_start(pdev, bar);

		if (pci_resource_len(pdev, bar) && phys >= base &&
		    phys < base + pci_resource_len(pdev, bar)) {
			*index = bar;
			*start = phys - base;
			return true;
		}
	}
	return false;
}

/* A copy of a mapping vfio-pci-core made: fork, mremap, a split. */
static void vfm_vma_open(struct vm_area_struct *vma)
{
	struct vfm_device *vd = vfm_vma_dev(vma);
	u64 start;
	u32 index;

	if (vfm_core_vm_ops->open)
		vfm_core_vm_ops->open(vma);
	mutex_lock(&vd->maps_lock);
	if (vfm_core_vma_range(vd->core.pdev, vma, &index, &start))
		vfm_maps_add(vd, vma, index, start,
			     vma->vm_end - vma->vm_start);
	else
		vd->maps_lost = true;
	mutex_unlock(&vd->maps_lock);
}

static void vfm_vma_close(struct vm_area_struct *vma)
{
	struct vfm_device *vd = vfm_vma_dev(vma);
	struct vfm_map *m;

	mutex_lock(&vd->maps_lock);
	list_for_each_entry(m, &vd->maps, node) {
		if (m->vma == vma) {
			list_del(&m->node);
			kfree(m);
			break;
		}
	}
	mutex_unlock(&vd->maps_lock);
	if (vfm_core_vm_ops->close)
		vfm_core_vm_ops->close(vma);
}

/*
 * Give @vma our wrapper of vfio-pci-core's vm_ops, if it has those. The
 * first mapping of any device tells what they are. Without memory for
 * the wrapper, the mapping stays recorded until the device is closed.
 */
static void vfm_vm_ops_init(struct vm_operations_struct *ops, const void *core)
{
	memcpy(ops, core, sizeof(*ops));
	ops->open = vfm_vma_open;
	ops->close = vfm_vma_close;
}

static void vfm_wrap_vm_ops(struct vm_area_struct *vma)
{
	void *ops;

	mutex_lock(&vfm_vm_ops_lock);
	if (!vfm_vm_ops && vma->vm_ops) {
		ops = kmalloc(sizeof(*vma->vm_ops), GFP_KERNEL);
		if (ops) {
			vfm_vm_ops_init(ops, vma->vm_ops);
			vfm_core_vm_ops = vma->vm_ops;
			vfm_vm_ops = ops;
		}
	}
	if (vfm_vm_ops && vma->vm_ops == vfm_core_vm_ops)
		vma->vm_ops = vfm_vm_ops;
	mutex_unlock(&vfm_vm_ops_lock);
}

/* At module exit: no mapping of a device is left. */
void vfm_maps_exit(void)
{
	kfree(vfm_vm_ops);
}

/*
 * mmap() of the device fd: @do_mmap decides and maps against the running
 * table; the mapping is recorded before any new table can be checked.
 */
int vfm_maps_mmap(struct vfm_device *vd, struct vm_area_struct *vma,
		  int (*do_mmap)(struct vfm_device *vd,
				 struct vm_area_struct *vma))
{
	/* Before @do_mmap, which may rewrite vm_pgoff. */
	u32 index = vma->vm_pgoff >> (VFIO_PCI_OFFSET_SHIFT - PAGE_SHIFT);
	u64 start = ((u64)vma->vm_pgoff << PAGE_SHIFT) & VFIO_PCI_OFFSET_MASK;
	int ret;

	mutex_lock(&vd->maps_lock);
	ret = do_mmap(vd, vma);
	if (!ret) {
		vfm_maps_add(vd, vma, index, start,
			     vma->vm_end - vma->vm_start);
		if (vma->vm_private_data == &vd->core)
			vfm_wrap_vm_ops(vma);
	}
	mutex_unlock(&vd->maps_lock);
	return ret;
}

/*
 * Would @rules rule a page the user holds mapped? Returns a recorded
 * mapping's region index and range in @index, @start and @len then.
 * Under @vd->maps_lock, held until the table is published.
 */
bool vfm_maps_conflict(struct vfm_device *vd, const struct vfm_rules *rules,
		       u32 *index, u64 *start, u64 *len)
{
	const struct vfm_map *m;

	lockdep_assert_held(&vd->maps_lock);
	list_for_each_entry(m, &vd->maps, node) {
		if (m->index >= VFM_NUM_REGIONS ||
		    vfm_mmap_allowed(&rules->region[m->index], m->start, m->len))
			continue;
		*index = m->index;
		*start = m->start;
		*len = m->len;
		return true;
	}
	if (vd->maps_lost) {
		*index = VFM_NUM_REGIONS;
		return true;
	}
	return false;
}

/* The device is closed: no vma of it is left. */
void vfm_maps_clear(struct vfm_device *vd)
{
	struct vfm_map *m, *tmp;

	mutex_lock(&vd->maps_lock);
	list_for_each_entry_safe(m, tmp, &vd->maps, node) {
		list_del(&m->node);
		kfree(m);
	}
	vd->maps_lost = false;
	mutex_unlock(&vd->maps_lock);
}
