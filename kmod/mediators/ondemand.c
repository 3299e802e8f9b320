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
 * reads=N stops=N runs=N": the switch, the retrap() calls that declared
 * traps, the reads of the window's rest it answered, and the migration
 * stop() and run() calls.
 *
 * It migrates its switch (the migration tests): its device state is the
 * switch's 4 bytes, and loading it on the destination asks for a retrap,
 * so that the destination traps as the source did. While the switch is
 * ONDEMAND_NOSTOP, stop() fails with -EBUSY, for the failing transition.
 */
#include <linux/atomic.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/vfmediate.h>

#include "window.h"

#define ONDEMAND_MARK	0x0dde3a4du
#define ONDEMAND_NOSTOP	2

struct ondemand {
	struct med_window w;
	u32 on;
	atomic_t retraps;
	atomic_t reads;
	atomic_t stops;
	atomic_t runs;
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

	return sysfs_emit(buf, "switch=%u retraps=%d reads=%d stops=%d runs=%d\n",
			  READ_ONCE(d->on), atomic_read(&d->retraps),
			  atomic_read(&d->reads), atomic_read(&d->stops),
			  atomic_read(&d->runs));
}

static size_t ondemand_state_size(struct vfm_device *vd, void *priv)
{
	return sizeof(u32);
}

static ssize_t ondemand_save_state(struct vfm_device *vd, void *priv,
				   void *buf, size_t size)
{
	struct ondemand *d = priv;
	__le32 v = cpu_to_le32(READ_ONCE(d->on));

	if (size < sizeof(v))
		return -ENOSPC;
	memcpy(buf, &v, sizeof(v));
	return sizeof(v);
}

/* The source's switch, and the traps it means. */
static int ondemand_load_state(struct vfm_device *vd, void *priv,
			       const void *buf, size_t len)
{
	struct ondemand *d = priv;
	__le32 v;

	if (len != sizeof(v))
		return -EINVAL;
	memcpy(&v, buf, sizeof(v));
	WRITE_ONCE(d->on, le32_to_cpu(v));
	vfm_request_retrap(vd);
	return 0;
}

static int ondemand_stop(struct vfm_device *vd, void *priv)
{
	struct ondemand *d = priv;

	if (READ_ONCE(d->on) == ONDEMAND_NOSTOP)
		return -EBUSY;
	atomic_inc(&d->stops);
	return 0;
}

static int ondemand_run(struct vfm_device *vd, void *priv)
{
	struct ondemand *d = priv;

	atomic_inc(&d->runs);
	return 0;
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
	.state_size	= ondemand_state_size,
	.save_state	= ondemand_save_state,
	.load_state	= ondemand_load_state,
	.stop		= ondemand_stop,
	.run		= ondemand_run,
};

module_vfm_mediator(ondemand_ops);
MODULE_ALIAS_VFM_MEDIATOR("ondemand");
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("vfmediate test mediator: traps a window while switched on (retrap)");
