// SPDX-License-Identifier: GPL-2.0
/*
 * vfmediate_devread: TEST ONLY, a mediator that reads its device from
 * open() and show().
 *
 * It exists for tests/test_mediator_api.py: open() and show() read the
 * first dword of BAR0 with vfm_default_read(), which takes the device's
 * memory_lock, so that a test can prove they no longer run under the
 * core's configuration lock (issue 12, hole 9: a PF bound to vfmediate
 * holds its memory_lock while the VFs that sriov_configure creates bind
 * and take that lock). reset() counts resets, for the reset hook's test.
 *
 * Arguments (the device's configfs "mediator_args"), see window.h:
 *	(empty)			trap nothing
 *	bar=N,range=RANGE	also trap that window for reads and writes,
 *				forwarded to the default handlers
 * A failed read of BAR0 in open() fails the open with its error.
 *
 * State (the device's configfs "mediator_state"), one line:
 *	bar0[0]=0x1234abcd reads=2 resets=0 core_resets=5 dev=0000:00:04.0
 * bar0[0] as show() read it just now, reads the BAR0 reads open() and
 * show() made, resets the reset() calls since open(), core_resets the
 * resets the core counted since bind (vfm_reset_count()), dev the
 * function's address through vfm_pdev() (the accessors' test). A failed
 * read in show() fails the read of "mediator_state" with its error.
 */
#include <linux/atomic.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/slab.h>
#include <linux/vfio_pci_core.h>
#include <linux/vfmediate.h>

#include "window.h"

struct devread {
	atomic64_t reads;		/* BAR0 reads by open() and show() */
	atomic64_t resets;		/* reset() calls */
};

static int devread_check_args(const char *args)
{
	struct med_window w;

	return med_window_parse(args, &w);
}

/* BAR0's first dword, little-endian as the VFIO user reads it. */
static int devread_bar0(struct vfm_device *vd, struct devread *d, u32 *val)
{
	__le32 v;
	ssize_t ret;

	ret = vfm_default_read(vd, VFIO_PCI_BAR0_REGION_INDEX, &v, sizeof(v),
			       0);
	if (ret < 0)
		return ret;
	if (ret != sizeof(v))
		return -EIO;
	atomic64_inc(&d->reads);
	*val = le32_to_cpu(v);
	return 0;
}

static int devread_open(struct vfm_device *vd, const char *args, void **priv)
{
	struct med_window w;
	struct devread *d;
	u32 val;
	int ret;

	ret = med_window_parse(args, &w);
	if (!ret && w.len)
		ret = med_window_check(vd, &w);
	if (ret)
		return ret;

	d = kzalloc(sizeof(*d), GFP_KERNEL);
	if (!d)
		return -ENOMEM;
	ret = devread_bar0(vd, d, &val);
	if (!ret && w.len)
		ret = vfm_trap_range(vd, w.bar, w.start, w.len, VFM_ACCESS_RW);
	if (ret) {
		kfree(d);
		return ret;
	}
	*priv = d;
	return 0;
}

static void devread_close(struct vfm_device *vd, void *priv)
{
	kfree(priv);
}

static ssize_t devread_read(struct vfm_device *vd, void *priv,
			    unsigned int index, void *buf, size_t count,
			    loff_t off)
{
	return vfm_default_read(vd, index, buf, count, off);
}

static ssize_t devread_write(struct vfm_device *vd, void *priv,
			     unsigned int index, const void *buf, size_t count,
			     loff_t off)
{
	return vfm_default_write(vd, index, buf, count, off);
}

/* May run under vfio-pci-core's memory_lock: counts, nothing else. */
static void devread_reset(struct vfm_device *vd, void *priv)
{
	struct devread *d = priv;

	atomic64_inc(&d->resets);
}

static ssize_t devread_show(struct vfm_device *vd, void *priv, char *buf)
{
	struct devread *d = priv;
	u32 val;
	int ret;

	ret = devread_bar0(vd, d, &val);
	if (ret)
		return ret;
	/* The two accessors name the same function. */
	if (vfm_core_device(vd)->pdev != vfm_pdev(vd))
		return -EIO;
	return scnprintf(buf, PAGE_SIZE,
			 "bar0[0]=0x%08x reads=%lld resets=%lld core_resets=%llu dev=%s\n",
			 val, (long long)atomic64_read(&d->reads),
			 (long long)atomic64_read(&d->resets), vfm_reset_count(vd),
			 pci_name(vfm_pdev(vd)));
}

static const struct vfm_mediator_ops devread_ops = {
	.name		= "devread",
	.owner		= THIS_MODULE,
	.check_args	= devread_check_args,
	.open		= devread_open,
	.close		= devread_close,
	.read		= devread_read,
	.write		= devread_write,
	.reset		= devread_reset,
	.show		= devread_show,
};

module_vfm_mediator(devread_ops);
MODULE_ALIAS_VFM_MEDIATOR("devread");
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("vfmediate test mediator that reads BAR0 from open() and show()");
