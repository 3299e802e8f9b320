// SPDX-License-Identifier: GPL-2.0
/*
 * vfmediate dispatch: the per-device table that routes a device's
 * accesses, and the slow paths taken when that table is not the
 * pass-through one.
 *
 * The pattern is KVM's I/O bus: readers srcu_dereference() an immutable
 * table; a writer publishes a new one, waits for an SRCU grace period and
 * frees the old one. Readers take no lock and never wait for a writer.
 *
 * Every way a VFIO user reaches the device's registers goes through here
 * or vfio-pci-core's own emulation: read/write on the device fd (all
 * regions, ROM and VGA included), mmap (refused on any page a rule
 * touches), VFIO_DEVICE_IOEVENTFD (refused on any byte a rule other
 * than a plain pass covers, since vfio-pci-core would then write the
 * device directly when the eventfd fires), and VFIO_DEVICE_SET_IRQS
 * enabling MSI/MSI-X (refused when ro, deny or ignore guards the
 * capability it programs). Resets are not byte accesses and stay allowed.
 */
#include <linux/mm.h>
#include <linux/overflow.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "vfmediate_core.h"

static const struct vfm_rules vfm_no_rules;

const struct vfm_table vfm_passthrough_table = {
	.rules = &vfm_no_rules,
};

void vfm_table_init(struct vfm_device *vd)
{
	RCU_INIT_POINTER(vd->table, &vfm_passthrough_table);
}

/*
 * Make @tbl the table of @vd and return the one it replaces, once no
 * reader can still use that; the caller releases it. Readers of the
 * pass-through table run only vfio-pci-core code, so replacing it needs no
 * wait: closing a device that mediated nothing costs no grace period.
 *
 * synchronize_srcu() waits for readers, so the caller must not hold any
 * lock a reader may take, vfio-pci-core's memory_lock included.
 */
static const struct vfm_table *vfm_table_swap(struct vfm_device *vd,
					      const struct vfm_table *tbl)
{
	const struct vfm_table *old;

	mutex_lock(&vd->cfg_lock);
	old = rcu_replace_pointer(vd->table, tbl,
				  lockdep_is_held(&vd->cfg_lock));
	mutex_unlock(&vd->cfg_lock);

	if (old != &vfm_passthrough_table)
		synchronize_srcu(&vd->srcu);
	return old;
}

static void vfm_table_free_rcu(struct rcu_head *head)
{
	vfm_table_free(container_of(head, struct vfm_table, rcu));
}

/*
 * Close the mediator @tbl opened and drop its module. Its memory goes
 * after an RCU grace period too: vfm_rw_slow() reads the filters of a
 * table under rcu_read_lock_sched() alone.
 */
void vfm_table_release(struct vfm_device *vd, const struct vfm_table *tbl)
{
	struct vfm_table *t = (struct vfm_table *)tbl;

	if (tbl == &vfm_passthrough_table)
		return;
	if (tbl->mops) {
		if (tbl->mops->close)
			tbl->mops->close(vd, tbl->mpriv);
		module_put(tbl->mops->owner);
	}
	call_rcu(&t->rcu, vfm_table_free_rcu);
}

void vfm_table_publish(struct vfm_device *vd, const struct vfm_table *tbl)
{
	vfm_table_release(vd, vfm_table_swap(vd, tbl));
}

/* Stop mediating @vd. */
void vfm_table_reset(struct vfm_device *vd)
{
	vfm_table_publish(vd, &vfm_passthrough_table);
}

/* vfio-pci-core's handling of @count bytes at @off of region @index. */
static ssize_t vfm_core_rw(struct vfm_device *vd, unsigned int index,
			   char __user *buf, size_t count, u64 off,
			   bool iswrite)
{
	loff_t pos = VFIO_PCI_INDEX_TO_OFFSET(index) + off;

	if (iswrite)
		return vfio_pci_core_write(&vd->core.vdev, buf, count, &pos);
	return vfio_pci_core_read(&vd->core.vdev, buf, count, &pos);
}

/* @count bytes at @off handled by a mediator's hook. */
static ssize_t vfm_trap_rw(struct vfm_device *vd, const struct vfm_table *tbl,
			   unsigned int index, char __user *buf, size_t count,
			   u64 off, bool iswrite)
{
	const struct vfm_mediator_ops *ops = tbl->mops;
	ssize_t n;

	if (iswrite)
		n = ops->write(vd, tbl->mpriv, index, buf, count, off);
	else
		n = ops->read(vd, tbl->mpriv, index, buf, count, off);
	if (n > (ssize_t)count) {
		/* A mediator bug; do not let it move *ppos. */
		pr_warn_once("vfmediate: mediator %s returned %zd for %zu bytes\n",
			     ops->name, n, count);
		n = -EIO;
	}
	return n;
}

/* @count bytes at @off handled as @action says; @tbl only for traps. */
static ssize_t vfm_action_rw(struct vfm_device *vd, const struct vfm_table *tbl,
			     u8 action, unsigned int index, char __user *buf,
			     size_t count, u64 off, bool iswrite)
{
	switch (action) {
	case VFM_RO:
		if (iswrite)
			return -EPERM;
		fallthrough;
	case VFM_PASS:
		return vfm_core_rw(vd, index, buf, count, off, iswrite);
	case VFM_TRAP:
		return vfm_trap_rw(vd, tbl, index, buf, count, off, iswrite);
	case VFM_IGNORE:
		if (!iswrite && clear_user(buf, count))
			return -EFAULT;
		return count;
	default:
		return -EACCES;
	}
}

/* An access that @iv holds whole: count its hit, then handle it. */
static ssize_t vfm_interval_rw(struct vfm_device *vd,
			       const struct vfm_table *tbl,
			       const struct vfm_interval *iv, unsigned int index,
			       char __user *buf, size_t count, u64 off,
			       bool iswrite)
{
	if (iv->ctr)
		atomic64_inc(&iv->ctr->hits);
	return vfm_action_rw(vd, tbl, iv->action, index, buf, count, off,
			     iswrite);
}

/*
 * A rule split by a narrower one inside it has several intervals sharing
 * its counter: count it once per access.
 */
static bool vfm_counted(const struct vfm_interval *first,
			const struct vfm_interval *iv)
{
	for (; first < iv; first++)
		if (first->ctr == iv->ctr)
			return true;
	return false;
}

/*
 * Before touching anything, count the hit of every rule the access
 * [off, end) meets and refuse it whole if any of them refuses: a write
 * that is partly read-only changes no byte.
 */
static int vfm_check(const struct vfm_region_table *rt,
		     const struct vfm_interval *iv, u64 end, bool iswrite)
{
	const struct vfm_interval *last = rt->iv[iswrite] + rt->nr[iswrite];
	const struct vfm_interval *first = iv;
	int ret = 0;

	for (; iv < last && iv->start < end; iv++) {
		if (iv->ctr && !vfm_counted(first, iv))
			atomic64_inc(&iv->ctr->hits);
		if (iv->action == VFM_DENY)
			ret = -EACCES;
		else if (iv->action == VFM_RO && iswrite && !ret)
			ret = -EPERM;
	}
	return ret;
}

/*
 * An access that meets several intervals, or an interval and a gap, is
 * split at their boundaries so that each byte is handled by its own rule;
 * the gaps go to vfio-pci-core.
 */
static ssize_t vfm_split_rw(struct vfm_device *vd, const struct vfm_table *tbl,
			    unsigned int index, const struct vfm_interval *iv,
			    char __user *buf, size_t count, u64 off,
			    bool iswrite)
{
	const struct vfm_region_table *rt = &tbl->rules->region[index];
	const struct vfm_interval *last = rt->iv[iswrite] + rt->nr[iswrite];
	u64 pos = off, end = off + count;
	ssize_t n, done = 0;

	while (pos < end) {
		u64 stop = end;
		u8 action = VFM_PASS;

		if (iv < last && iv->start <= pos) {
			stop = min(end, iv->end);
			action = iv->action;
			iv++;
		} else if (iv < last && iv->start < end) {
			stop = iv->start;
		}
		n = vfm_action_rw(vd, tbl, action, index, buf + done,
				  stop - pos, pos, iswrite);
		if (n <= 0)
			return done ? done : n;
		done += n;
		pos += n;
		if (pos < stop)		/* short: stop here, as core does */
			break;
	}
	return done;
}

/*
 * Route an access that meets the table's intervals. The usual case, one
 * interval holding the whole access, is handled without splitting.
 */
static ssize_t vfm_table_rw(struct vfm_device *vd, const struct vfm_table *tbl,
			    char __user *buf, size_t count, loff_t *ppos,
			    bool iswrite)
{
	unsigned int index = VFIO_PCI_OFFSET_TO_INDEX(*ppos);
	u64 off = *ppos & VFIO_PCI_OFFSET_MASK, end = off + count;
	const struct vfm_region_table *rt = &tbl->rules->region[index];
	const struct vfm_interval *iv;
	ssize_t ret;

	iv = vfm_table_find(rt, iswrite, off);
	if (!iv || iv->start >= end) {
		ret = vfm_core_rw(vd, index, buf, count, off, iswrite);
	} else if (iv->start <= off && end <= iv->end) {
		ret = vfm_interval_rw(vd, tbl, iv, index, buf, count, off,
				      iswrite);
	} else {
		ret = vfm_check(rt, iv, end, iswrite);
		if (ret)
			return ret;
		ret = vfm_split_rw(vd, tbl, index, iv, buf, count, off,
				   iswrite);
	}
	if (ret > 0)
		*ppos += ret;
	return ret;
}

/*
 * An access that needs the table while it is handled: a trap, whose
 * handler may sleep, or an access over several intervals. @iv is the trap
 * interval holding the whole access that vfm_quick_action() found in the
 * table of generation @gen, or NULL: it is used only if that table is
 * still the device's, which the generation, unique per device, tells.
 */
static noinline ssize_t vfm_rw_mediated(struct vfm_device *vd, u64 gen,
					const struct vfm_interval *iv,
					char __user *buf, size_t count,
					loff_t *ppos, bool iswrite)
{
	unsigned int index = VFIO_PCI_OFFSET_TO_INDEX(*ppos);
	u64 off = *ppos & VFIO_PCI_OFFSET_MASK;
	const struct vfm_table *tbl;
	ssize_t ret;
	int idx;

	idx = srcu_read_lock(&vd->srcu);
	tbl = srcu_dereference(vd->table, &vd->srcu);
	if (iv && tbl->generation == gen) {
		ret = vfm_interval_rw(vd, tbl, iv, index, buf, count, off,
				      iswrite);
		if (ret > 0)
			*ppos += ret;
	} else {
		ret = vfm_table_rw(vd, tbl, buf, count, ppos, iswrite);
	}
	srcu_read_unlock(&vd->srcu, idx);

	return ret;
}

/*
 * Decide [off, end) of region @index when that needs the table only for a
 * moment: the access meets no interval (the filter tells without a
 * search), or one interval holds it whole and is not a trap. Counts the
 * hit and returns the action then, else VFM_NR_ACTIONS for
 * vfm_rw_mediated(), with *@trap set when one trap interval holds the
 * whole access.
 */
static u8 vfm_quick_action(const struct vfm_table *tbl, unsigned int index,
			   u64 off, u64 end, bool iswrite,
			   const struct vfm_interval **trap)
{
	const struct vfm_region_table *rt = &tbl->rules->region[index];
	const struct vfm_interval *iv;

	if (!vfm_filter_hit(&rt->filter[iswrite], off, end))
		return VFM_PASS;
	iv = vfm_table_find(rt, iswrite, off);
	if (!iv || iv->start >= end)
		return VFM_PASS;
	if (iv->start > off || end > iv->end)
		return VFM_NR_ACTIONS;
	if (iv->action == VFM_TRAP) {
		*trap = iv;
		return VFM_NR_ACTIONS;
	}
	if (iv->ctr)
		atomic64_inc(&iv->ctr->hits);
	return iv->action;
}

/*
 * A device that mediates something. Handlers may sleep, so a trapped
 * access holds the table under SRCU; every other access is decided under
 * rcu_read_lock_sched(), a preempt_disable(), which costs much less, and
 * performed after it: pass, read-only, deny and ignore need nothing of
 * the table once decided.
 *
 * As with vfm_passthrough(), an access decided that way may race with the
 * publication of a new table; it is then ordered before the change, as if
 * it had started a moment earlier.
 *
 * Kept out of line so that the pass-through fast path in main.c stays a
 * test and a tail call.
 */
noinline ssize_t vfm_rw_slow(struct vfm_device *vd, char __user *buf,
			     size_t count, loff_t *ppos, bool iswrite)
{
	unsigned int index = VFIO_PCI_OFFSET_TO_INDEX(*ppos);
	u64 off = *ppos & VFIO_PCI_OFFSET_MASK, gen = 0;
	const struct vfm_interval *trap = NULL;
	const struct vfm_table *tbl;
	u8 action = VFM_PASS;
	ssize_t ret;

	if (index < VFM_NUM_REGIONS && count) {
		rcu_read_lock_sched();
		tbl = rcu_dereference_sched(vd->table);
		action = vfm_quick_action(tbl, index, off, off + count,
					  iswrite, &trap);
		gen = tbl->generation;
		rcu_read_unlock_sched();
	}
	if (action == VFM_NR_ACTIONS)
		return vfm_rw_mediated(vd, gen, trap, buf, count, ppos, iswrite);
	ret = vfm_action_rw(vd, NULL, action, index, buf, count, off, iswrite);
	if (ret > 0)
		*ppos += ret;
	return ret;
}

/* An mmap() must lie inside one area the table left mmap-able. */
static int vfm_table_mmap(struct vfm_device *vd, const struct vfm_table *tbl,
			  struct vm_area_struct *vma)
{
	unsigned int index = vma->vm_pgoff >> (VFIO_PCI_OFFSET_SHIFT - PAGE_SHIFT);
	const struct vfm_region_table *rt;
	u64 start, len;
	u32 i;

	if (index >= VFM_NUM_REGIONS || !tbl->rules->region[index].ruled)
		goto allowed;
	rt = &tbl->rules->region[index];
	start = ((u64)vma->vm_pgoff << PAGE_SHIFT) & VFIO_PCI_OFFSET_MASK;
	len = vma->vm_end - vma->vm_start;
	for (i = 0; i < rt->nr_areas; i++) {
		if (start >= rt->areas[i].offset &&
		    start + len <= rt->areas[i].offset + rt->areas[i].size)
			goto allowed;
	}
	dev_dbg(&vd->core.pdev->dev, "mmap of trapped range %#llx+%#llx refused\n",
		start, len);
	return -EINVAL;
allowed:
	if (tbl->mops && tbl->mops->mmap)
		return tbl->mops->mmap(vd, tbl->mpriv, vma);
	return vfio_pci_core_mmap(&vd->core.vdev, vma);
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

static int vfm_add_sparse_cap(const struct vfm_region_table *rt,
			      struct vfio_info_cap *caps)
{
	struct vfio_region_info_cap_sparse_mmap *sparse;
	size_t size = struct_size(sparse, areas, rt->nr_areas);
	int ret;

	sparse = kzalloc(size, GFP_KERNEL);
	if (!sparse)
		return -ENOMEM;
	sparse->header.id = VFIO_REGION_INFO_CAP_SPARSE_MMAP;
	sparse->header.version = 1;
	sparse->nr_areas = rt->nr_areas;
	memcpy(sparse->areas, rt->areas, rt->nr_areas * sizeof(*rt->areas));
	ret = vfio_info_add_capability(caps, &sparse->header, size);
	kfree(sparse);
	return ret;
}

/* Copy @info and its capability chain out, as vfio-pci-core does. */
static int vfm_region_info_put(struct vfio_region_info __user *arg,
			       struct vfio_region_info *info,
			       struct vfio_info_cap *caps)
{
	size_t minsz = offsetofend(struct vfio_region_info, offset);

	if (caps->size) {
		info->flags |= VFIO_REGION_INFO_FLAG_CAPS;
		if (info->argsz < sizeof(*info) + caps->size) {
			info->argsz = sizeof(*info) + caps->size;
			info->cap_offset = 0;
		} else {
			vfio_info_cap_shift(caps, sizeof(*info));
			if (copy_to_user(arg + 1, caps->buf, caps->size))
				return -EFAULT;
			info->cap_offset = sizeof(*info);
		}
	}
	return copy_to_user(arg, info, minsz) ? -EFAULT : 0;
}

/*
 * REGION_INFO of a BAR that rules touch: mmap-able only where the table
 * left areas, advertised as sparse-mmap areas. Returns 1 when the region
 * is none of ours and vfio-pci-core should answer.
 */
static int vfm_table_region_info(struct vfm_device *vd,
				 const struct vfm_table *tbl,
				 struct vfio_region_info __user *arg)
{
	size_t minsz = offsetofend(struct vfio_region_info, offset);
	struct vfio_info_cap caps = { .buf = NULL, .size = 0 };
	const struct vfm_region_table *rt;
	struct vfio_region_info info;
	int ret;

	if (copy_from_user(&info, arg, minsz))
		return -EFAULT;
	if (info.argsz < minsz || info.index > VFIO_PCI_BAR5_REGION_INDEX)
		return 1;
	rt = &tbl->rules->region[info.index];
	if (!rt->ruled && !(tbl->mops && tbl->mops->region_info))
		return 1;

	ret = vfm_default_region_info(vd, &info, &caps);
	if (!ret && rt->ruled) {
		if (!rt->nr_areas)
			info.flags &= ~VFIO_REGION_INFO_FLAG_MMAP;
		else if (info.flags & VFIO_REGION_INFO_FLAG_MMAP)
			ret = vfm_add_sparse_cap(rt, &caps);
	}
	if (!ret && tbl->mops && tbl->mops->region_info)
		ret = tbl->mops->region_info(vd, tbl->mpriv, &info, &caps);
	if (!ret)
		ret = vfm_region_info_put(arg, &info, &caps);
	kfree(caps.buf);
	return ret;
}

/*
 * An ioeventfd makes vfio-pci-core write the device itself when the
 * eventfd fires, past any handler: allow it only where every byte it
 * writes is plainly passed through. Returns 1 when it may go on.
 */
static int vfm_table_ioeventfd(struct vfm_device *vd,
			       const struct vfm_table *tbl,
			       struct vfio_device_ioeventfd __user *arg)
{
	size_t minsz = offsetofend(struct vfio_device_ioeventfd, fd);
	const struct vfm_region_table *rt;
	struct vfio_device_ioeventfd ev;
	const struct vfm_interval *iv;
	unsigned int index;
	u64 off, size;

	if (copy_from_user(&ev, arg, minsz))
		return -EFAULT;
	size = ev.flags & VFIO_DEVICE_IOEVENTFD_SIZE_MASK;
	index = VFIO_PCI_OFFSET_TO_INDEX(ev.offset);
	if (ev.argsz < minsz || ev.fd == -1 || index >= VFM_NUM_REGIONS)
		return 1;	/* vfio-pci-core validates or unregisters */
	rt = &tbl->rules->region[index];
	off = ev.offset & VFIO_PCI_OFFSET_MASK;
	iv = vfm_table_find(rt, true, off);
	for (; iv && iv < rt->iv[1] + rt->nr[1] && iv->start < off + size; iv++) {
		if (iv->action != VFM_PASS || iv->ctr) {
			dev_dbg(&vd->core.pdev->dev,
				"ioeventfd on mediated range %#llx refused\n", off);
			return -EPERM;
		}
	}
	return 1;
}

/* Does a rule keep the VFIO user from writing any byte of [start, end)? */
static bool vfm_write_guarded(const struct vfm_region_table *rt, u64 start,
			      u64 end)
{
	const struct vfm_interval *iv = vfm_table_find(rt, true, start);
	const struct vfm_interval *last = rt->iv[1] + rt->nr[1];

	for (; iv && iv < last && iv->start < end; iv++)
		if (iv->action == VFM_RO || iv->action == VFM_DENY ||
		    iv->action == VFM_IGNORE)
			return true;
	return false;
}

/*
 * Enabling MSI or MSI-X makes vfio-pci-core program the capability
 * itself. Where the admin forbids writing those config bytes, refuse it
 * too (-EPERM). Counting and trapping rules do not stop it: they observe
 * the user's own accesses, which this is not. Returns 1 to go on.
 */
static int vfm_table_set_irqs(struct vfm_device *vd,
			      const struct vfm_table *tbl,
			      struct vfio_irq_set __user *arg)
{
	size_t minsz = offsetofend(struct vfio_irq_set, count);
	struct pci_dev *pdev = vd->core.pdev;
	struct vfio_irq_set hdr;
	u8 cap;
	u64 len;

	if (copy_from_user(&hdr, arg, minsz))
		return -EFAULT;
	if (!(hdr.flags & VFIO_IRQ_SET_ACTION_TRIGGER) ||
	    !(hdr.flags & VFIO_IRQ_SET_DATA_EVENTFD) || !hdr.count)
		return 1;
	if (hdr.index == VFIO_PCI_MSI_IRQ_INDEX) {
		cap = pdev->msi_cap;
		len = 24;	/* the largest MSI capability: 64-bit, masking */
	} else if (hdr.index == VFIO_PCI_MSIX_IRQ_INDEX) {
		cap = pdev->msix_cap;
		len = PCI_CAP_MSIX_SIZEOF;
	} else {
		return 1;
	}
	if (cap && vfm_write_guarded(&tbl->rules->region[VFIO_PCI_CONFIG_REGION_INDEX],
				     cap, cap + len)) {
		dev_dbg(&pdev->dev, "interrupt setup over guarded capability refused\n");
		return -EPERM;
	}
	return 1;
}

noinline long vfm_ioctl_slow(struct vfm_device *vd, unsigned int cmd,
			     unsigned long arg)
{
	const struct vfm_table *tbl;
	int idx, ret = 1;

	idx = srcu_read_lock(&vd->srcu);
	tbl = srcu_dereference(vd->table, &vd->srcu);
	if (cmd == VFIO_DEVICE_GET_REGION_INFO)
		ret = vfm_table_region_info(vd, tbl, (void __user *)arg);
	else if (cmd == VFIO_DEVICE_IOEVENTFD)
		ret = vfm_table_ioeventfd(vd, tbl, (void __user *)arg);
	else if (cmd == VFIO_DEVICE_SET_IRQS)
		ret = vfm_table_set_irqs(vd, tbl, (void __user *)arg);
	srcu_read_unlock(&vd->srcu, idx);

	if (ret <= 0)
		return ret;
	return vfio_pci_core_ioctl(&vd->core.vdev, cmd, arg);
}
