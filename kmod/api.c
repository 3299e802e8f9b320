// SPDX-License-Identifier: GPL-2.0
/*
 * vfmediate: what the core exports to mediators besides registration
 * (registry.c) and vfm_trap_range() (policy.c): accessors, and the default
 * handlers, which do what vfio-pci would do.
 */
#include <linux/mm.h>

#include "vfmediate_core.h"

struct pci_dev *vfm_pdev(struct vfm_device *vd)
{
	return vd->core.pdev;
}
EXPORT_SYMBOL_GPL(vfm_pdev);

struct vfio_pci_core_device *vfm_core_device(struct vfm_device *vd)
{
	return &vd->core;
}
EXPORT_SYMBOL_GPL(vfm_core_device);

/**
 * vfm_region_size() - size of a region as VFIO_DEVICE_GET_REGION_INFO
 * reports it
 * @vd: the device
 * @index: VFIO region index
 *
 * Return: bytes; 0 for a region the device does not have.
 */
u64 vfm_region_size(struct vfm_device *vd, unsigned int index)
{
	return vfm_region_len(vd, index);
}
EXPORT_SYMBOL_GPL(vfm_region_size);

static bool vfm_in_region(struct vfm_device *vd, unsigned int index,
			  size_t count, loff_t off)
{
	return index < VFM_NUM_REGIONS && off >= 0 &&
	       off <= VFIO_PCI_OFFSET_MASK && count <= VFIO_PCI_OFFSET_MASK;
}

/*
 * The default accessors work on kernel memory: the core copied the VFIO
 * user's data once, before the handler saw it, so what a mediator checks
 * or records is what the device gets. BARs are accessed by the core
 * itself (io.c). vfio-pci-core's emulation of config space, and its ROM
 * and VGA accessors, take only user pointers, on every kernel: those
 * regions have no default accessor, and a mediator traps there only what
 * it emulates, or observes (vfm_mediator_ops.observe).
 */
static ssize_t vfm_default_rw(struct vfm_device *vd, unsigned int index,
			      void *buf, size_t count, loff_t off, bool iswrite)
{
	if (!vfm_in_region(vd, index, count, off))
		return -EINVAL;
	if (index > VFIO_PCI_BAR5_REGION_INDEX)
		return -EOPNOTSUPP;
	return vfm_bar_rw(vd, index, buf, count, off, iswrite);
}

/**
 * vfm_default_read() - read a BAR as vfio-pci would, into kernel memory
 * @vd: the device
 * @index: VFIO region index of a BAR
 * @buf: kernel buffer of @count bytes
 * @count: bytes
 * @off: offset within the region
 *
 * Return: @count or a negative errno: -EINVAL outside the region,
 * -EOPNOTSUPP for a region that is not a BAR, -EIO while memory decoding
 * is off or the function is in a low-power state.
 */
ssize_t vfm_default_read(struct vfm_device *vd, unsigned int index,
			 void *buf, size_t count, loff_t off)
{
	return vfm_default_rw(vd, index, buf, count, off, false);
}
EXPORT_SYMBOL_GPL(vfm_default_read);

/**
 * vfm_default_write() - write a BAR as vfio-pci would, from kernel memory
 * @vd: the device
 * @index: VFIO region index of a BAR
 * @buf: kernel buffer of @count bytes
 * @count: bytes
 * @off: offset within the region
 *
 * Return: as vfm_default_read().
 */
ssize_t vfm_default_write(struct vfm_device *vd, unsigned int index,
			  const void *buf, size_t count, loff_t off)
{
	/*
	 * A migration stream comes from the VFIO user: what load_state()
	 * writes must be what the user could have written (see
	 * vfm_write_allowed()), whatever the stream says.
	 */
	if (unlikely(READ_ONCE(vd->restore_task) == current) &&
	    !vfm_write_allowed(vd, index, off, count))
		return -EPERM;
	return vfm_default_rw(vd, index, (void *)buf, count, off, true);
}
EXPORT_SYMBOL_GPL(vfm_default_write);

/**
 * vfm_write_allowed() - may the VFIO user's writes reach these bytes?
 * @vd: the device
 * @index: VFIO region index
 * @off: offset within the region
 * @len: bytes
 *
 * For a mediator's load_state(): the stream it restores was written by
 * the VFIO user, so it may restore only bytes the running table lets the
 * user write (no "ro", "deny" or "ignore" rule on any of them).
 * vfm_default_write() refuses the others with -EPERM while load_state()
 * runs; checking every range first fails a load before it changes
 * anything.
 *
 * Return: true if no rule keeps the VFIO user from writing any of them.
 */
bool vfm_write_allowed(struct vfm_device *vd, unsigned int index, u64 off,
		       u64 len)
{
	const struct vfm_table *tbl;
	bool ok;
	int idx;

	if (index >= VFM_NUM_REGIONS || off + len < off)
		return false;
	idx = srcu_read_lock(&vd->srcu);
	tbl = srcu_dereference(vd->table, &vd->srcu);
	ok = !vfm_write_guarded(&tbl->rules->region[index], off, off + len);
	srcu_read_unlock(&vd->srcu, idx);
	return ok;
}
EXPORT_SYMBOL_GPL(vfm_write_allowed);

/**
 * vfm_reset_count() - how many times the function has been reset
 * @vd: the device
 *
 * Counts every reset vfio-pci-core or the PCI core makes while vfmediate
 * is bound (VFIO_DEVICE_RESET, hot reset, FLR through config space, error
 * recovery), counted before any mediator's reset() runs. A mediator that
 * reads it before and after an access knows whether a reset may have come
 * in between.
 *
 * Return: the count.
 */
u64 vfm_reset_count(struct vfm_device *vd)
{
	return atomic64_read(&vd->resets);
}
EXPORT_SYMBOL_GPL(vfm_reset_count);

/**
 * vfm_default_mmap() - map a region as vfio-pci would
 * @vd: the device
 * @vma: as given to the mediator's mmap()
 *
 * Return: 0 or a negative errno.
 */
int vfm_default_mmap(struct vfm_device *vd, struct vm_area_struct *vma)
{
	return vfio_pci_core_mmap(&vd->core.vdev, vma);
}
EXPORT_SYMBOL_GPL(vfm_default_mmap);

/**
 * vfm_default_region_info() - describe a BAR as vfio-pci would
 * @vd: the device
 * @info: @info->index selects the BAR; offset, size and flags are set
 * @caps: vfio-pci's capabilities of the BAR are added (MSI-X mappable)
 *
 * Return: 0; -EINVAL for a region that is not a BAR; -ENOMEM.
 */
int vfm_default_region_info(struct vfm_device *vd,
			    struct vfio_region_info *info,
			    struct vfio_info_cap *caps)
{
	struct vfio_info_cap_header msix = {
		.id = VFIO_REGION_INFO_CAP_MSIX_MAPPABLE,
		.version = 1,
	};
	unsigned int index = info->index;

	if (index > VFIO_PCI_BAR5_REGION_INDEX)
		return -EINVAL;
	info->offset = VFIO_PCI_INDEX_TO_OFFSET(index);
	info->size = pci_resource_len(vd->core.pdev, index);
	info->flags = 0;
	if (!info->size)
		return 0;
	info->flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
	if (!vd->core.bar_mmap_supported[index])
		return 0;
	info->flags |= VFIO_REGION_INFO_FLAG_MMAP;
	if (index == vd->core.msix_bar)
		return vfio_info_add_capability(caps, &msix, sizeof(msix));
	return 0;
}
EXPORT_SYMBOL_GPL(vfm_default_region_info);
