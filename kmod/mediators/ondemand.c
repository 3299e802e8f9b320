// SPDX-License-Identifier: GPL-2.0
/*
 * vfmediate_ondemand: TEST ONLY. Traps a window only while the VFIO user
 * switches it on, through vfm_request_retrap(): the shape of a mediator
 * that steps in for a while (a migration) and leaves the device pure
 * passthrough the rest of the time.
 *
 * Arguments: "bar=N,range=RANGE" (window.h), at least 8 bytes. The
 * window's first dword is the switch, always trapped: writing 1 to it
 * asks to trap the rest of the window, 0 to stop; it reads back what was
 * last written. While trapped, the rest of the window reads as
 * ONDEMAND_MARK and drops writes. show() prints "switch=N retraps=N
 * reads=N": the switch, the retrap() calls that declared traps, and the
 * reads of the window's rest it answered.
 */
#include <linux/atomic.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/vfmediate.h>

#include "window.h"

#define ONDEMAND_MARK	0x0dde3a4du

struct ondemand {
	struct med_window w;
	u32 on;
	atomic_t retraps;
	atomic_t reads;
};

static int ondemand_check_args(const char *args)
{
	struct med_window w;
	int ret = med_window_parse(args, &w);

	if (!ret && w.len < 8)
		ret = -ERANGE;
	return ret;
}

/* The switch, and the rest of the window while it is on. */
static int ondemand_traps(struct vfm_device *vd, struct ondemand *d)
{
	int ret;

	ret = vfm_trap_range(vd, d->w.bar, d->w.start, 4, VFM_ACCESS_RW);
	if (ret || !READ_ONCE(d->on))
		return ret;
	return vfm_trap_range(vd, d->w.bar, d->w.start + 4, d->w.len - 4,
			      VFM_ACCESS_RW);
}

static int ondemand_open(struct vfm_device *vd, const char *args, void **priv)
{
	struct ondemand *d = kzalloc(sizeof(*d), GFP_KERNEL);
	int ret;

	if (!d)
		return -ENOMEM;
	ret = med_window_parse(args, &d->w);
	if (!ret && d->w.len < 8)
		ret = -ERANGE;
	if (!ret)
		ret = med_window_check(vd, &d->w);
	if (!ret)
		ret = ondemand_traps(vd, d);
	if (ret) {
		kfree(d);
		return ret;
	}
	*priv = d;
	return 0;
}

static void ondemand_close(struct vfm_device *vd, void *priv)
{
	kfree(priv);
}

static int ondemand_retrap(struct vfm_device *vd, void *priv)
{
	struct ondemand *d = priv;
	int ret = ondemand_traps(vd, d);

	if (!ret)
		atomic_inc(&d->retraps);
	return ret;
}

static bool ondemand_switch(struct ondemand *d, loff_t off)
{
	return off == d->w.start;
}

static ssize_t ondemand_read(struct vfm_device *vd, void *priv,
			     unsigned int index, void *buf, size_t count,
			     loff_t off)
{
	struct ondemand *d = priv;
	u32 v = ONDEMAND_MARK;

	if (ondemand_switch(d, off))
		v = READ_ONCE(d->on);
	else
		atomic_inc(&d->reads);
	memset(buf, 0, count);
	memcpy(buf, &v, min(count, sizeof(v)));
	return count;
}

static ssize_t ondemand_write(struct vfm_device *vd, void *priv,
			      unsigned int index, const void *buf,
			      size_t count, loff_t off)
{
	struct ondemand *d = priv;
	u32 v = 0;

	if (!ondemand_switch(d, off))
		return count;
	memcpy(&v, buf, min(count, sizeof(v)));
	WRITE_ONCE(d->on, v);
	vfm_request_retrap(vd);
	return count;
}

static ssize_t ondemand_show(struct vfm_device *vd, void *priv, char *buf)
{
	struct ondemand *d = priv;

	return sysfs_emit(buf, "switch=%u retraps=%d reads=%d\n",
			  READ_ONCE(d->on), atomic_read(&d->retraps),
			  atomic_read(&d->reads));
}

static const struct vfm_mediator_ops ondemand_ops = {
	.name		= "ondemand",
	.owner		= THIS_MODULE,
	.check_args	= ondemand_check_args,
	.open		= ondemand_open,
	.close		= ondemand_close,
	.read		= ondemand_read,
	.write		= ondemand_write,
	.show		= ondemand_show,
	.retrap		= ondemand_retrap,
};

module_vfm_mediator(ondemand_ops);
MODULE_ALIAS_VFM_MEDIATOR("ondemand");
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("vfmediate test mediator: traps a window while switched on (retrap)");
