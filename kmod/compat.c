// SPDX-License-Identifier: GPL-2.0
/*
 * vfmediate: what differs between kernels in kind, not only in names
 * (compat.h has those): how a fault of a BAR mapping that vfio-pci-core
 * made is served once maps.c has found the page mappable.
 */
#include <linux/mm.h>
#include <linux/slab.h>

#include "vfmediate_core.h"

#ifdef VFM_HAVE_VFIO_DEVICE_INODE

/*
 * v6.12: vfio-pci-core maps the faulting page (or huge page) alone, under
 * memory_lock, and zaps through the device's inode.
 */
vm_fault_t vfm_core_fault(const struct vm_operations_struct *ops,
			  struct vm_fault *vmf, unsigned int order)
{
	if (order)
		return ops->huge_fault(vmf, order);
	return ops->fault(vmf);
}

#else

/*
 * An entry of vdev->vma_list: the vmas vfio-pci-core populated, which
 * disabling memory decoding zaps. The type is private to
 * vfio_pci_core.c (v5.8 to v6.9); its layout, unchanged there, is
 * repeated here.
 */
struct vfm_core_mmap_vma {
	struct vm_area_struct *vma;
	struct list_head vma_next;
};

static bool vfm_core_vma_listed(struct vfio_pci_core_device *core,
				struct vm_area_struct *vma)
{
	struct vfm_core_mmap_vma *e;

	list_for_each_entry(e, &core->vma_list, vma_next)
		if (e->vma == vma)
			return true;
	return false;
}

/*
 * Up to v6.9 vfio-pci-core's fault handler maps the whole vma, ruled
 * pages included, and takes a fault of a vma it has listed as mapped
 * for a race with another fault: a page zapped by a revocation would
 * fault again and again. So faults are served here, a page at a time,
 * with the handler's own locks and checks; a vma served joins the list,
 * so that disabling memory decoding still zaps it (and vfio-pci-core's
 * close frees the entry).
 */
vm_fault_t vfm_core_fault(const struct vm_operations_struct *ops,
			  struct vm_fault *vmf, unsigned int order)
{
	struct vm_area_struct *vma = vmf->vma;
	struct vfio_pci_core_device *core = vma->vm_private_data;
	unsigned long addr = vmf->address & PAGE_MASK;
	struct vfm_core_mmap_vma *e;
	vm_fault_t ret = VM_FAULT_SIGBUS;

	mutex_lock(&core->vma_lock);
	down_read(&core->memory_lock);
	if (core->pm_runtime_engaged || !vfm_memory_enabled(core))
		goto out;
	if (!vfm_core_vma_listed(core, vma)) {
		e = kmalloc(sizeof(*e), GFP_KERNEL);
		if (!e) {
			ret = VM_FAULT_OOM;
			goto out;
		}
		e->vma = vma;
		list_add(&e->vma_next, &core->vma_list);
	}
	ret = vmf_insert_pfn(vma, addr,
			     vma->vm_pgoff + ((addr - vma->vm_start) >> PAGE_SHIFT));
out:
	up_read(&core->memory_lock);
	mutex_unlock(&core->vma_lock);
	return ret;
}

#endif
