// SPDX-License-Identifier: GPL-2.0
/*
 * vfmediate: a VFIO PCI variant driver whose devices can have part of
 * their accesses handed to mediators (<linux/vfmediate.h>). With nothing
 * to mediate it behaves like vfio-pci: every vfio_device op ends in
 * vfio-pci-core. (vfio-pci's Intel IGD regions are the exception: their
 * code is private to vfio-pci.)
 *
 * Binding. vfmediate has no ID table, hence nothing in modules.alias, in
 * particular no "vfio_pci:" alias that libvirt's automatic choice of a
 * variant driver could pick. It binds only to a device whose
 * driver_override names it, as set by driverctl or libvirt. The PCI core
 * allows that without any ID entry: pci_match_device() in
 * drivers/pci/pci-driver.c returns &pci_device_id_any when the override
 * names the driver and its dynamic and static ID lists match nothing
 * (6.1: "if (dev->driver_override) return &pci_device_id_any"; Debian's
 * 6.12, which tests the override with device_match_driver_override():
 * "if (ret > 0) return &pci_device_id_any"). Both walk a NULL id_table
 * safely (do_pci_match_id() and pci_match_id() test for NULL), and
 * __pci_device_probe() then calls our probe with that dummy ID.
 *
 * Module parameters. vfio-pci's nointxmask, disable_vga and
 * disable_idle_d3 configure vfio-pci-core itself: vfio-pci hands them to
 * vfio_pci_core_set_params(), which sets globals shared by every variant
 * driver. Like the other variant drivers, vfmediate leaves them to
 * vfio-pci and never calls it. enable_sriov and disable_denylist are
 * policies of the vfio-pci driver alone; vfmediate has its own, with the
 * same names, defaults and meaning, so that binding a device to vfmediate
 * instead of vfio-pci allows nothing more. vfio-pci's ids= binds by ID,
 * which vfmediate never does.
 */
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/vfio.h>
#include <linux/vfio_pci_core.h>

#include "vfmediate_core.h"

static bool enable_sriov;
module_param(enable_sriov, bool, 0644);
MODULE_PARM_DESC(enable_sriov,
		 "Allow enabling SR-IOV on a PF bound to vfmediate, as vfio-pci's enable_sriov (default: no)");

static bool disable_denylist;
module_param(disable_denylist, bool, 0444);
MODULE_PARM_DESC(disable_denylist,
		 "Bind devices that vfio-pci denies for known errata, as vfio-pci's disable_denylist (default: no)");

/*
 * The devices vfio-pci refuses unless disable_denylist is set. A copy of
 * vfio_pci_dev_in_denylist() in drivers/vfio/pci/vfio_pci.c, the same in
 * v6.1 and v6.12; it is only matched at probe, never exported as aliases.
 */
static const struct pci_device_id vfm_denylist[] = {
	{ PCI_VDEVICE(INTEL, PCI_DEVICE_ID_INTEL_QAT_C3XXX) },
	{ PCI_VDEVICE(INTEL, PCI_DEVICE_ID_INTEL_QAT_C3XXX_VF) },
	{ PCI_VDEVICE(INTEL, PCI_DEVICE_ID_INTEL_QAT_C62X) },
	{ PCI_VDEVICE(INTEL, PCI_DEVICE_ID_INTEL_QAT_C62X_VF) },
	{ PCI_VDEVICE(INTEL, PCI_DEVICE_ID_INTEL_QAT_DH895XCC) },
	{ PCI_VDEVICE(INTEL, PCI_DEVICE_ID_INTEL_QAT_DH895XCC_VF) },
	{ PCI_VDEVICE(INTEL, PCI_DEVICE_ID_INTEL_DSA_SPR0) },
	{ PCI_VDEVICE(INTEL, PCI_DEVICE_ID_INTEL_IAX_SPR0) },
	{ }
};

static bool vfm_is_denylisted(struct pci_dev *pdev)
{
	if (!pci_match_id(vfm_denylist, pdev))
		return false;

	if (disable_denylist) {
		pci_warn(pdev, "device denylist disabled - allowing device %04x:%04x\n",
			 pdev->vendor, pdev->device);
		return false;
	}

	pci_warn(pdev, "%04x:%04x is in the vfio-pci device denylist, not binding\n",
		 pdev->vendor, pdev->device);
	return true;
}

static int vfm_init_dev(struct vfio_device *core_vdev)
{
	struct vfm_device *vd = to_vfm(core_vdev);
	int ret;

	/*
	 * If .init fails vfio calls no .release, so undo by hand, and never
	 * with vfio_pci_core_release_dev(): on v6.1 it frees the device,
	 * which vfio then frees again.
	 */
	ret = init_srcu_struct(&vd->srcu);
	if (ret)
		return ret;

	ret = vfio_pci_core_init_dev(core_vdev);
	if (ret) {
		cleanup_srcu_struct(&vd->srcu);
		return ret;
	}

	mutex_init(&vd->cfg_lock);
	mutex_init(&vd->io_lock);
	mutex_init(&vd->nowait_lock);
	mutex_init(&vd->maps_lock);
	INIT_LIST_HEAD(&vd->maps);
	INIT_WORK(&vd->retrap_work, vfm_retrap_work);
	INIT_LIST_HEAD(&vd->node);
	vfm_table_init(vd);
	vfm_mig_init(vd);
	return 0;
}

static void vfm_release_dev(struct vfio_device *core_vdev)
{
	struct vfm_device *vd = to_vfm(core_vdev);

	vfm_mig_destroy(vd);
	mutex_destroy(&vd->maps_lock);
	mutex_destroy(&vd->nowait_lock);
	mutex_destroy(&vd->io_lock);
	mutex_destroy(&vd->cfg_lock);
	cleanup_srcu_struct(&vd->srcu);
	/* Last: on v6.1 this frees @vd. */
	vfio_pci_core_release_dev(core_vdev);
}

static int vfm_open_device(struct vfio_device *core_vdev)
{
	struct vfm_device *vd = to_vfm(core_vdev);
	int ret;

	ret = vfio_pci_core_enable(&vd->core);
	if (ret)
		return ret;
	vfio_pci_core_finish_enable(&vd->core);
	WRITE_ONCE(vd->enabled, true);
	vfm_mig_reset_state(vd);

	/*
	 * After finish_enable: the table needs the BARs' mmap-ability it
	 * probes. No access is possible before open_device returns.
	 */
	ret = vfm_policy_open(vd);
	if (ret) {
		WRITE_ONCE(vd->enabled, false);
		vfm_bar_unmap_all(vd);
		vfio_pci_core_close_device(core_vdev);
	}
	return ret;
}

static void vfm_close_device(struct vfio_device *core_vdev)
{
	struct vfm_device *vd = to_vfm(core_vdev);

	/* No access can be in flight: the last file of the device is gone. */
	vfm_mig_reset_state(vd);
	vfm_policy_close(vd);
	vfm_maps_clear(vd);
	WRITE_ONCE(vd->enabled, false);
	vfm_bar_unmap_all(vd);
	vfio_pci_core_close_device(core_vdev);
}

/*
 * The access entry points. On a device that mediates nothing each costs
 * one pointer load and one predicted branch more than vfio-pci-core's own
 * handler; the rest lives out of line in dispatch.c.
 */
static ssize_t vfm_read(struct vfio_device *core_vdev, char __user *buf,
			size_t count, loff_t *ppos)
{
	struct vfm_device *vd = to_vfm(core_vdev);

	if (likely(vfm_passthrough(vd)))
		return vfio_pci_core_read(core_vdev, buf, count, ppos);
	return vfm_read_slow(vd, buf, count, ppos);
}

static ssize_t vfm_write(struct vfio_device *core_vdev, const char __user *buf,
			 size_t count, loff_t *ppos)
{
	struct vfm_device *vd = to_vfm(core_vdev);

	if (likely(vfm_passthrough(vd)))
		return vfio_pci_core_write(core_vdev, buf, count, ppos);
	return vfm_write_slow(vd, (char __user *)buf, count, ppos);
}

static int vfm_do_mmap(struct vfm_device *vd, struct vm_area_struct *vma)
{
	if (vfm_passthrough(vd))
		return vfio_pci_core_mmap(&vd->core.vdev, vma);
	return vfm_mmap_slow(vd, vma);
}

/*
 * Every mapping is recorded (maps.c), pass-through or not: a live apply
 * must not rule a page the user holds mapped. A BAR page the user maps
 * may also be DMA-mapped into its IOMMU container, where it outlives the
 * mapping and any rule added later: remember the BARs mapped, for the
 * device's "warning".
 */
static int vfm_mmap(struct vfio_device *core_vdev, struct vm_area_struct *vma)
{
	struct vfm_device *vd = to_vfm(core_vdev);
	unsigned int index = vma->vm_pgoff >> (VFIO_PCI_OFFSET_SHIFT - PAGE_SHIFT);
	int ret;

	ret = vfm_maps_mmap(vd, vma, vfm_do_mmap);
	if (!ret && index <= VFIO_PCI_BAR5_REGION_INDEX &&
	    !test_bit(index, &vd->mmapped))
		set_bit(index, &vd->mmapped);
	return ret;
}

/*
 * Of the ioctls, REGION_INFO (sparse mmap), IOEVENTFD (which would write
 * the device past the table) and SET_IRQS (which programs the MSI and
 * MSI-X capabilities) depend on the table.
 */
/*
 * vfio-pci-core (to 6.12 at least) takes VFIO_DEVICE_IOEVENTFD's offset
 * as a signed loff_t: with bit 63 set, its BAR index is negative, passes
 * its "bar > 5" check and indexes pdev->resource[] out of bounds (an
 * Oops any VFIO user can cause). Refuse that offset here, on a copy:
 * vfio-pci-core reads the argument again, so a thread racing that second
 * read can still reach the bug; only a fix there closes it.
 */
static int vfm_ioeventfd_offset_check(unsigned long arg)
{
	struct vfio_device_ioeventfd e;
	size_t minsz = offsetofend(struct vfio_device_ioeventfd, offset);

	if (copy_from_user(&e, (void __user *)arg, minsz))
		return -EFAULT;
	if (VFIO_PCI_OFFSET_TO_INDEX(e.offset) > VFIO_PCI_BAR5_REGION_INDEX)
		return -EINVAL;
	return 0;
}

/*
 * vfio-pci-core's handling of an ioctl the table lets through. An
 * IOEVENTFD refused by a rule is refused (EPERM) before this, whatever
 * its offset, as documented.
 */
long vfm_core_ioctl(struct vfm_device *vd, unsigned int cmd, unsigned long arg)
{
	int ret;

	if (cmd == VFIO_DEVICE_IOEVENTFD) {
		ret = vfm_ioeventfd_offset_check(arg);
		if (ret)
			return ret;
	}
	return vfio_pci_core_ioctl(&vd->core.vdev, cmd, arg);
}

static long vfm_ioctl(struct vfio_device *core_vdev, unsigned int cmd,
		      unsigned long arg)
{
	struct vfm_device *vd = to_vfm(core_vdev);

	if (likely(vfm_passthrough(vd)))
		return vfm_core_ioctl(vd, cmd, arg);
	return vfm_ioctl_slow(vd, cmd, arg);
}

static const struct vfio_device_ops vfm_ops = {
	.name		= "vfmediate",
	.init		= vfm_init_dev,
	.release	= vfm_release_dev,
	.open_device	= vfm_open_device,
	.close_device	= vfm_close_device,
	.ioctl		= vfm_ioctl,
	.device_feature	= vfm_device_feature,
	.read		= vfm_read,
	.write		= vfm_write,
	.mmap		= vfm_mmap,
	.request	= vfio_pci_core_request,
	.match		= vfio_pci_core_match,
	VFM_IOMMUFD_PHYSICAL_OPS
};

static int vfm_pci_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct vfm_device *vd;
	int ret;

	if (vfm_is_denylisted(pdev))
		return -EINVAL;

	vd = vfio_alloc_device(vfm_device, core.vdev, &pdev->dev, &vfm_ops);
	if (IS_ERR(vd))
		return PTR_ERR(vd);

	/* vfio-pci-core's PCI callbacks expect its own device here. */
	dev_set_drvdata(&pdev->dev, &vd->core);
	/* Before it can be opened: its configuration applies from the start. */
	vfm_policy_bind(vd);
	/* vfio reads the migration ops at registration only. */
	if (vd->migratable)
		vfm_mig_enable(vd);
	ret = vfio_pci_core_register_device(&vd->core);
	if (ret)
		goto out_unbind;
	return 0;

out_unbind:
	vfm_policy_unbind(vd);
	vfio_put_device(&vd->core.vdev);
	return ret;
}

static void vfm_pci_remove(struct pci_dev *pdev)
{
	struct vfio_pci_core_device *core = dev_get_drvdata(&pdev->dev);

	vfio_pci_core_unregister_device(core);
	vfm_policy_unbind(container_of(core, struct vfm_device, core));
	vfio_put_device(&core->vdev);
}

static int vfm_pci_sriov_configure(struct pci_dev *pdev, int nr_virtfn)
{
	if (!enable_sriov)
		return -ENOENT;

	return vfio_pci_core_sriov_configure(dev_get_drvdata(&pdev->dev),
					     nr_virtfn);
}

/*
 * vfio-pci-core's error handlers, and a reset_done() that tells the
 * mediator: pci_dev_restore() calls it after every reset the PCI core
 * makes of the function, VFIO_DEVICE_RESET, hot reset and FLR through
 * config space included.
 */
static void vfm_pci_reset_done(struct pci_dev *pdev)
{
	struct vfio_pci_core_device *core = dev_get_drvdata(&pdev->dev);
	struct vfm_device *vd = container_of(core, struct vfm_device, core);

	vfm_reset_notify(vd);
	vfm_mig_reset_done(vd);
}

static const struct pci_error_handlers vfm_err_handlers = {
	.error_detected	= vfio_pci_core_aer_err_detected,
	.reset_done	= vfm_pci_reset_done,
};

/* No .id_table: bound through driver_override only (see the top). */
static struct pci_driver vfm_pci_driver = {
	.name			= KBUILD_MODNAME,
	.probe			= vfm_pci_probe,
	.remove			= vfm_pci_remove,
	.sriov_configure	= vfm_pci_sriov_configure,
	.err_handler		= &vfm_err_handlers,
	.driver_managed_dma	= true,
};

static int __init vfm_init(void)
{
	int ret;

	ret = vfm_nl_init();
	if (ret)
		return ret;
	ret = vfm_cfs_init();
	if (ret)
		goto out_nl;
	ret = pci_register_driver(&vfm_pci_driver);
	if (ret)
		goto out_cfs;
	return 0;
out_cfs:
	vfm_cfs_exit();
out_nl:
	vfm_events_exit();
	vfm_nl_exit();
	return ret;
}

static void __exit vfm_exit(void)
{
	pci_unregister_driver(&vfm_pci_driver);
	vfm_maps_exit();
	vfm_cfs_exit();
	/* Tables released by the unbinds are freed from RCU callbacks. */
	rcu_barrier();
	/* Nothing can queue an event now: send what waits. */
	vfm_events_exit();
	vfm_nl_exit();
}

module_init(vfm_init);
module_exit(vfm_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("vfmediate developers");
MODULE_DESCRIPTION("VFIO PCI variant driver that mediates parts of a device's accesses");
MODULE_VERSION(VFMEDIATE_VERSION);
