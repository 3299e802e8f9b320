// SPDX-License-Identifier: GPL-2.0
/*
 * vfmediate_recorder: TEST ONLY. Records which path handled each access
 * routed to it, so that tests can tell a trapped access from one that
 * passed (tests/test_dispatch_model.py, tests/test_bar_rules.py).
 *
 * It registers four mediators that differ only in the handlers they
 * have, for the cases vfmediate-mediator(9) describes for a direction
 * without a handler:
 *
 *	recorder	read, write and observe: a BAR's trapped bytes go to
 *			the handlers, config space's to observe
 *	recorder-rd	read and observe: trapped writes are made by
 *			vfio-pci-core and observed
 *	recorder-obs	observe only: every trapped access is observed
 *	recorder-rdonly	read only: no trap rule for writes can be written
 *
 * The handlers change what they pass on, so that their effect shows in
 * the data: a read returns the BAR's bytes XOR RECORDER_READ_XOR, a write
 * hands the BAR its bytes with RECORDER_WRITE_XOR XORed into each byte at
 * a 4-byte aligned offset (bit 0 of each dword: a small number stays
 * small). Both through the default handlers, as vfio-pci would make them.
 *
 * Arguments: empty, or one or both of, comma-separated:
 *	hide-mmap	region_info() clears VFIO_REGION_INFO_FLAG_MMAP
 *	veto-mmap	mmap() refuses with EACCES instead of mapping
 * region_info() and mmap() are counted either way.
 *
 * show() prints one line of counters,
 *	"read=N write=N observe=N region_info=N mmap=N"
 * then the last RECORDER_LOG records, oldest first, one a line:
 *	"SEQ PATH INDEX OFFSET COUNT RESULT"
 * PATH is read, write, observe-r or observe-w; OFFSET in hex; SEQ counts
 * from 1 over the instance's life.
 */
#include <linux/atomic.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/vfmediate.h>

#define RECORDER_READ_XOR	0x80
#define RECORDER_WRITE_XOR	0x01
#define RECORDER_LOG		64

enum rec_path { REC_READ, REC_WRITE, REC_OBS_R, REC_OBS_W, REC_NR };

static const char *const rec_path_name[REC_NR] = {
	"read", "write", "observe-r", "observe-w",
};

struct rec_entry {
	u64 seq;
	u8 path;
	u8 index;
	u32 count;
	u64 off;
	s64 ret;
};

struct recorder {
	bool hide_mmap;
	bool veto_mmap;
	atomic_t calls[REC_NR];
	atomic_t region_info;
	atomic_t mmap;
	spinlock_t lock;	/* the log */
	u64 seq;
	struct rec_entry log[RECORDER_LOG];
};

static int recorder_parse(const char *args, bool *hide, bool *veto)
{
	char *buf, *s, *key;
	int ret = 0;

	*hide = *veto = false;
	buf = kstrdup(args, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	s = strim(buf);
	while (!ret && s && *s) {
		key = strsep(&s, ",");
		if (!strcmp(key, "hide-mmap"))
			*hide = true;
		else if (!strcmp(key, "veto-mmap"))
			*veto = true;
		else
			ret = -EINVAL;
	}
	kfree(buf);
	return ret;
}

static int recorder_check_args(const char *args)
{
	bool hide, veto;

	return recorder_parse(args, &hide, &veto);
}

static int recorder_open(struct vfm_device *vd, const char *args, void **priv)
{
	struct recorder *r = kzalloc(sizeof(*r), GFP_KERNEL);
	int ret;

	if (!r)
		return -ENOMEM;
	ret = recorder_parse(args, &r->hide_mmap, &r->veto_mmap);
	if (ret) {
		kfree(r);
		return ret;
	}
	spin_lock_init(&r->lock);
	*priv = r;
	return 0;
}

static void recorder_close(struct vfm_device *vd, void *priv)
{
	kfree(priv);
}

static void recorder_log(struct recorder *r, enum rec_path path,
			 unsigned int index, loff_t off, size_t count,
			 ssize_t ret)
{
	struct rec_entry *e;

	atomic_inc(&r->calls[path]);
	spin_lock(&r->lock);
	e = &r->log[r->seq % RECORDER_LOG];
	e->seq = ++r->seq;
	e->path = path;
	e->index = index;
	e->off = off;
	e->count = count;
	e->ret = ret;
	spin_unlock(&r->lock);
}

static ssize_t recorder_read(struct vfm_device *vd, void *priv,
			     unsigned int index, void *buf, size_t count,
			     loff_t off)
{
	ssize_t ret = vfm_default_read(vd, index, buf, count, off);
	u8 *p = buf;
	ssize_t i;

	for (i = 0; i < ret; i++)
		p[i] ^= RECORDER_READ_XOR;
	recorder_log(priv, REC_READ, index, off, count, ret);
	return ret;
}

static ssize_t recorder_write(struct vfm_device *vd, void *priv,
			      unsigned int index, const void *buf,
			      size_t count, loff_t off)
{
	u8 small[16], *p = small;
	ssize_t ret;
	size_t i;

	if (count > sizeof(small)) {
		p = kmalloc(count, GFP_KERNEL);
		if (!p)
			return -ENOMEM;
	}
	memcpy(p, buf, count);
	for (i = 0; i < count; i++)
		if (!((off + i) % 4))
			p[i] ^= RECORDER_WRITE_XOR;
	ret = vfm_default_write(vd, index, p, count, off);
	if (p != small)
		kfree(p);
	recorder_log(priv, REC_WRITE, index, off, count, ret);
	return ret;
}

static void recorder_observe(struct vfm_device *vd, void *priv,
			     unsigned int index, loff_t off, size_t count,
			     bool iswrite, ssize_t ret)
{
	recorder_log(priv, iswrite ? REC_OBS_W : REC_OBS_R, index, off, count,
		     ret);
}

static int recorder_region_info(struct vfm_device *vd, void *priv,
				struct vfio_region_info *info,
				struct vfio_info_cap *caps)
{
	struct recorder *r = priv;

	atomic_inc(&r->region_info);
	if (r->hide_mmap)
		info->flags &= ~VFIO_REGION_INFO_FLAG_MMAP;
	return 0;
}

static int recorder_mmap(struct vfm_device *vd, void *priv,
			 struct vm_area_struct *vma)
{
	struct recorder *r = priv;

	atomic_inc(&r->mmap);
	if (r->veto_mmap)
		return -EACCES;
	return vfm_default_mmap(vd, vma);
}

static ssize_t recorder_show(struct vfm_device *vd, void *priv, char *buf)
{
	struct recorder *r = priv;
	struct rec_entry *log;
	u64 seq, first, s;
	int len;

	log = kmalloc_array(RECORDER_LOG, sizeof(*log), GFP_KERNEL);
	if (!log)
		return -ENOMEM;
	spin_lock(&r->lock);
	memcpy(log, r->log, sizeof(r->log));
	seq = r->seq;
	spin_unlock(&r->lock);

	len = sysfs_emit(buf, "read=%d write=%d observe=%d region_info=%d mmap=%d\n",
			 atomic_read(&r->calls[REC_READ]),
			 atomic_read(&r->calls[REC_WRITE]),
			 atomic_read(&r->calls[REC_OBS_R]) +
			 atomic_read(&r->calls[REC_OBS_W]),
			 atomic_read(&r->region_info), atomic_read(&r->mmap));
	first = seq > RECORDER_LOG ? seq - RECORDER_LOG : 0;
	for (s = first; s < seq; s++) {
		struct rec_entry *e = &log[s % RECORDER_LOG];

		len += sysfs_emit_at(buf, len, "%llu %s %u %#llx %u %lld\n",
				     e->seq, rec_path_name[e->path], e->index,
				     e->off, e->count, e->ret);
	}
	kfree(log);
	return len;
}

#define RECORDER_COMMON					\
	.owner		= THIS_MODULE,			\
	.check_args	= recorder_check_args,		\
	.open		= recorder_open,		\
	.close		= recorder_close,		\
	.region_info	= recorder_region_info,		\
	.mmap		= recorder_mmap,		\
	.show		= recorder_show

static const struct vfm_mediator_ops recorder_ops[] = {
	{
		.name		= "recorder",
		.read		= recorder_read,
		.write		= recorder_write,
		.observe	= recorder_observe,
		RECORDER_COMMON,
	}, {
		.name		= "recorder-rd",
		.read		= recorder_read,
		.observe	= recorder_observe,
		RECORDER_COMMON,
	}, {
		.name		= "recorder-obs",
		.observe	= recorder_observe,
		RECORDER_COMMON,
	}, {
		.name		= "recorder-rdonly",
		.read		= recorder_read,
		RECORDER_COMMON,
	},
};

static int __init recorder_init(void)
{
	int i, ret;

	for (i = 0; i < ARRAY_SIZE(recorder_ops); i++) {
		ret = vfm_register_mediator(&recorder_ops[i]);
		if (ret) {
			while (i--)
				vfm_unregister_mediator(&recorder_ops[i]);
			return ret;
		}
	}
	return 0;
}

static void __exit recorder_exit(void)
{
	int i;

	for (i = ARRAY_SIZE(recorder_ops) - 1; i >= 0; i--)
		vfm_unregister_mediator(&recorder_ops[i]);
}

module_init(recorder_init);
module_exit(recorder_exit);
MODULE_ALIAS_VFM_MEDIATOR("recorder");
MODULE_ALIAS_VFM_MEDIATOR("recorder-rd");
MODULE_ALIAS_VFM_MEDIATOR("recorder-obs");
MODULE_ALIAS_VFM_MEDIATOR("recorder-rdonly");
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("vfmediate test mediator: records which path handled each access");
