// SPDX-License-Identifier: GPL-2.0
/*
 * vfmediate_nop: trap a window and do nothing with it.
 *
 * For tests and benchmarks: it measures what routing an access to a
 * mediator costs by itself. Every access it traps goes to the default
 * handlers (in a BAR, through the core's kernel buffer) or, in config
 * space, ROM and VGA (admin "trap" rules), to vfio-pci-core with an empty
 * observe(): no other work and no per-device state.
 *
 * Arguments (the device's configfs "mediator_args"), see window.h:
 *	(empty)			trap nothing: the mediator is attached, the
 *				table routes nothing to it
 *	bar=N,range=RANGE	trap that window for reads and writes
 * That the window lies inside the BAR is checked at open (-ERANGE).
 * It has no state to show.
 */
#include <linux/module.h>
#include <linux/vfmediate.h>

#include "window.h"

static int nop_check_args(const char *args)
{
	struct med_window w;

	return med_window_parse(args, &w);
}

static int nop_open(struct vfm_device *vd, const char *args, void **priv)
{
	struct med_window w;
	int ret;

	ret = med_window_parse(args, &w);
	if (ret || !w.len)
		return ret;
	ret = med_window_check(vd, &w);
	if (ret)
		return ret;
	return vfm_trap_range(vd, w.bar, w.start, w.len, VFM_ACCESS_RW);
}

static void nop_close(struct vfm_device *vd, void *priv)
{
}

static ssize_t nop_read(struct vfm_device *vd, void *priv,
			unsigned int index, void *buf, size_t count, loff_t off)
{
	return vfm_default_read(vd, index, buf, count, off);
}

static ssize_t nop_write(struct vfm_device *vd, void *priv,
			 unsigned int index, const void *buf, size_t count,
			 loff_t off)
{
	return vfm_default_write(vd, index, buf, count, off);
}

/* Config space, ROM and VGA traps: vfio-pci-core made the access. */
static void nop_observe(struct vfm_device *vd, void *priv, unsigned int index,
			loff_t off, size_t count, bool iswrite, ssize_t ret)
{
}

static const struct vfm_mediator_ops nop_ops = {
	.name		= "nop",
	.owner		= THIS_MODULE,
	.check_args	= nop_check_args,
	.open		= nop_open,
	.close		= nop_close,
	.read		= nop_read,
	.write		= nop_write,
	.observe	= nop_observe,
};

module_vfm_mediator(nop_ops);
MODULE_ALIAS_VFM_MEDIATOR("nop");
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("vfmediate mediator that traps a window and only forwards it");
