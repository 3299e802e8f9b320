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
 *
 * A live apply asked to revoke may rule pages the user holds mapped: it
 * publishes the table, then zaps those pages from every mapping. The
 * fault handler, wrapped too, checks each fault against the running
 * table under maps_lock, so a ruled page faults with SIGBUS instead of
 * being mapped again, and a fault that began before the swap has mapped
 * its page before the zap runs.
 */
#include <linux/mm.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>

#include "vfmediate_core.h"

struct vfm_map {
	struct list_head node;
	struct vm_area_struct *vma;
	u32 index;
	u64 start;
	u64 len;
	bool wrapped;		/* has our vm_ops: revocable */
	u64 zap_gen;		/* vfm_device.revoke_gen it was zapped for */
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

/*
 * Record @vma, mapping @len bytes from @start of region @index. A
 * mapping made by mmap() holds no ruled page of the running table, so
 * it needs no zap for a revocation already done; a copy may hold any.
 */
static void vfm_maps_add(struct vfm_device *vd, struct vm_area_struct *vma,
			 u32 index, u64 start, u64 len, bool copy)
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
	m->wrapped = vfm_vm_ops && vma->vm_ops == vfm_vm_ops;
	m->zap_gen = copy ? 0 : vd->revoke_gen;
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
			     vma->vm_end - vma->vm_start, true);
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

/* May the user map [@addr, @addr + @size) of @vma under the running table? */
static bool vfm_vma_mappable(struct vfm_device *vd, struct vm_area_struct *vma,
			     unsigned long addr, unsigned long size)
{
	const struct vfm_table *tbl;
	u64 start;
	bool ok;
	u32 index;
	int idx;

	if (!vfm_core_vma_range(vd->core.pdev, vma, &index, &start) ||
	    index >= VFM_NUM_REGIONS)
		return false;
	start += addr - vma->vm_start;
	idx = srcu_read_lock(&vd->srcu);
	tbl = srcu_dereference(vd->table, &vd->srcu);
	ok = vfm_mmap_allowed(&tbl->rules->region[index], start, size);
	srcu_read_unlock(&vd->srcu, idx);
	return ok;
}

/*
 * A fault of a mapping: served by vfio-pci-core (compat.c) unless the
 * running table rules the page, which a revocation took away. A huge
 * fault over a ruled page falls back to pages.
 */
static vm_fault_t vfm_vma_huge_fault(struct vm_fault *vmf, unsigned int order)
{
	struct vm_area_struct *vma = vmf->vma;
	struct vfm_device *vd = vfm_vma_dev(vma);
	unsigned long size = PAGE_SIZE << order;
	unsigned long addr = vmf->address & ~(size - 1);
	vm_fault_t ret;

	if (addr < vma->vm_start || addr + size > vma->vm_end)
		return order ? VM_FAULT_FALLBACK : VM_FAULT_SIGBUS;
	mutex_lock(&vd->maps_lock);
	if (vfm_vma_mappable(vd, vma, addr, size))
		ret = vfm_core_fault(vfm_core_vm_ops, vmf, order);
	else
		ret = order ? VM_FAULT_FALLBACK : VM_FAULT_SIGBUS;
	mutex_unlock(&vd->maps_lock);
	return ret;
}

static vm_fault_t vfm_vma_fault(struct vm_fault *vmf)
{
	return vfm_vma_huge_fault(vmf, 0);
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
	ops->fault = vfm_vma_fault;
	if (ops->huge_fault)
		ops->huge_fault = vfm_huge_fault_of(vfm_vma_huge_fault);
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
		if (vma->vm_private_data == &vd->core)
			vfm_wrap_vm_ops(vma);
		vfm_maps_add(vd, vma, index, start,
			     vma->vm_end - vma->vm_start, false);
	}
	mutex_unlock(&vd->maps_lock);
	return ret;
}

static bool vfm_map_ruled(const struct vfm_map *m, const struct vfm_rules *rules)
{
	return m->index < VFM_NUM_REGIONS &&
	       !vfm_mmap_allowed(&rules->region[m->index], m->start, m->len);
}

/*
 * Would @rules rule a page the user holds mapped? Returns a recorded
 * mapping's region index and range in @index, @start and @len then, and
 * in @revocable whether every such mapping can be taken away: not one a
 * mediator made (its fault handler is not ours) or one not recorded.
 * Under @vd->maps_lock, held until the table is published.
 */
bool vfm_maps_conflict(struct vfm_device *vd, const struct vfm_rules *rules,
		       u32 *index, u64 *start, u64 *len, bool *revocable)
{
	const struct vfm_map *m;
	bool found = false;

	lockdep_assert_held(&vd->maps_lock);
	*revocable = !vd->maps_lost;
	list_for_each_entry(m, &vd->maps, node) {
		if (!vfm_map_ruled(m, rules) || (found && m->wrapped))
			continue;
		*index = m->index;
		*start = m->start;
		*len = m->len;
		found = true;
		if (!m->wrapped)
			*revocable = false;
	}
	if (vd->maps_lost && !found) {
		*index = VFM_NUM_REGIONS;
		return true;
	}
	return found;
}

/**
 * vfm_ruled_run() - the next run of pages a region's table keeps unmapped
 * @rt: the region's table
 * @pos: where to look from (page aligned); the run's start on return
 * @end: where to stop looking
 * @stop: the run's end on return
 *
 * Return: false when [@pos, @end) holds no ruled page.
 */
bool vfm_ruled_run(const struct vfm_region_table *rt, u64 *pos, u64 end,
		   u64 *stop)
{
	u64 p = *pos;
	u32 i;

	if (!rt->ruled)
		return false;
	for (i = 0; i < rt->nr_areas && p < end; i++) {
		u64 a = rt->areas[i].offset, b = a + rt->areas[i].size;

		if (b <= p)
			continue;
		if (a > p) {
			*pos = p;
			*stop = min(a, end);
			return true;
		}
		p = b;
	}
	if (p >= end)
		return false;
	*pos = p;
	*stop = end;
	return true;
}

/*
 * v6.12: each device has an inode of its own, the file of every mapping
 * of it (copies included) maps it at the region's VFIO offset.
 */
static void vfm_zap_inode(struct vfm_device *vd, const struct vfm_rules *rules)
{
	u64 pos, stop, end;
	u32 i;

	for (i = 0; i <= VFIO_PCI_BAR5_REGION_INDEX; i++) {
		end = PAGE_ALIGN(vfm_region_len(vd, i));
		for (pos = 0; vfm_ruled_run(&rules->region[i], &pos, end, &stop);
		     pos = stop)
			unmap_mapping_range(vfm_device_mapping(vd),
					    ((u64)i << VFIO_PCI_OFFSET_SHIFT) + pos,
					    stop - pos, 1);
	}
}

/* Zap the ruled pages of @vma. Under its mm's mmap_lock. */
static void vfm_zap_vma(struct vfm_device *vd, struct vm_area_struct *vma,
			const struct vfm_rules *rules)
{
	u64 start, pos, stop, end;
	u32 index;

	if (!vfm_core_vma_range(vd->core.pdev, vma, &index, &start) ||
	    index > VFIO_PCI_BAR5_REGION_INDEX)
		return;
	end = start + (vma->vm_end - vma->vm_start);
	for (pos = start;
	     vfm_ruled_run(&rules->region[index], &pos, end, &stop);
	     pos = stop)
		zap_vma_ptes(vma, vma->vm_start + (pos - start), stop - pos);
}

/*
 * The mm of a recorded mapping not yet zapped for this revocation, with
 * a reference, or NULL when none is left. Under @vd->maps_lock.
 */
static struct mm_struct *vfm_unzapped_mm(struct vfm_device *vd)
{
	struct vfm_map *m;

	list_for_each_entry(m, &vd->maps, node) {
		if (m->zap_gen == vd->revoke_gen || !m->wrapped)
			continue;
		if (mmget_not_zero(m->vma->vm_mm))
			return m->vma->vm_mm;
		m->zap_gen = vd->revoke_gen;	/* exiting: its pages go */
	}
	return NULL;
}

/*
 * Up to v6.11 the file of a mapping is an anonymous inode that every
 * VFIO device shares (and other anonymous files): zap the recorded
 * mappings one mm at a time, under its mmap_lock, which nests outside
 * maps_lock, as vfio_pci_zap_and_vma_lock() does. A fork copies the page
 * tables of a mapping: its copy, recorded with zap_gen 0, is found by
 * the next round.
 */
static void vfm_zap_vmas(struct vfm_device *vd, const struct vfm_rules *rules)
{
	struct mm_struct *mm;
	struct vfm_map *m;

	for (;;) {
		mutex_lock(&vd->maps_lock);
		mm = vfm_unzapped_mm(vd);
		mutex_unlock(&vd->maps_lock);
		if (!mm)
			return;
		mmap_read_lock(mm);
		mutex_lock(&vd->maps_lock);
		list_for_each_entry(m, &vd->maps, node) {
			if (m->vma->vm_mm != mm || !m->wrapped)
				continue;
			vfm_zap_vma(vd, m->vma, rules);
			m->zap_gen = vd->revoke_gen;
		}
		mutex_unlock(&vd->maps_lock);
		mmap_read_unlock(mm);
		mmput(mm);
	}
}

/*
 * A revocation published @rules: start one. Under @vd->maps_lock, in
 * the step that published them.
 */
void vfm_maps_revoking(struct vfm_device *vd)
{
	lockdep_assert_held(&vd->maps_lock);
	vd->revoke_gen++;
}

/*
 * Take the pages @rules rule, just published by a revocation, away from
 * every mapping of the user. A fault from now on sees @rules; one that
 * ran before mapped its page before this zaps it. Under @vd->cfg_lock,
 * which keeps @rules the running table's, not under maps_lock.
 */
void vfm_maps_revoke(struct vfm_device *vd, const struct vfm_rules *rules)
{
	if (VFM_ZAP_BY_INODE)
		vfm_zap_inode(vd, rules);
	else
		vfm_zap_vmas(vd, rules);
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
