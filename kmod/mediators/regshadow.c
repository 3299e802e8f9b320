// SPDX-License-Identifier: GPL-2.0
/*
 * vfmediate_regshadow: keep a shadow of the registers a VFIO user writes.
 *
 * Traps one window of one BAR, for reads and writes. Every access goes on
 * to the device unchanged; a write that the device took is also recorded,
 * byte by byte, in a shadow of the window. The shadow is what a later
 * migration step saves and writes back. On QEMU's NVMe VF,
 * "bar=0,range=0x0-0xfff" shadows the controller registers (CAP, VS, CC,
 * CSTS, AQA, ASQ, ACQ) while the doorbells from 0x1000 on stay mmap'ed.
 *
 * Arguments (the device's configfs "mediator_args"), see window.h:
 *	bar=N,range=START-END	or	bar=N,range=START+LEN
 * The window is at most REGSHADOW_MAX bytes (-ERANGE); that it lies
 * inside the BAR is checked at open (-ERANGE).
 *
 * State (the device's configfs "mediator_state"): a first line
 * "bar=N range=START-END" in hex, then one line per dword that holds a
 * written byte since the last reset, in offset order, "OFFSET=VALUE": OFFSET the dword's
 * offset in the BAR, VALUE its four bytes as a little-endian number in
 * hex, "xx" for a byte never written (or outside the window):
 *	bar=0 range=0x0-0xfff
 *	0x14=0x00460001
 *	0x24=0xxxxx001f
 * The attribute holds one page: when the written dwords do not fit, the
 * last line is "truncated".
 *
 * The shadow holds what the device got since its last reset: the core
 * copies a write's bytes from the VFIO user once, and the same kernel
 * buffer goes to the device and into the shadow. A reset (the reset()
 * hook counts them) empties it. Admin "trap" rules can route other
 * ranges to regshadow too: BAR ranges go to the device unrecorded,
 * others fail -EOPNOTSUPP, as config space, ROM and VGA have no
 * kernel-buffer accessor.
 *
 * Locking: a per-device mutex serializes writes with each other and with
 * show(), held across the device write and the shadow update so that the
 * shadow's last value of a register is the last value the device got.
 * reset() may run with vfio-pci-core's memory_lock held for writing,
 * which a write holding the mutex may wait for: it takes no lock and only
 * counts; the next write or show() under the mutex empties the shadow.
 */
#include <linux/bitmap.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/vfmediate.h>

#include "window.h"

#define REGSHADOW_MAX		SZ_64K

struct regshadow {
	struct mutex lock;		/* protects shadow and written */
	struct med_window w;
	u8 *shadow;			/* w.len bytes, last value written */
	unsigned long *written;		/* w.len bits, set: byte written */
	atomic64_t resets;		/* resets seen by reset() */
	u64 resets_seen;		/* resets the shadow knows of */
};

static int regshadow_parse(const char *args, struct med_window *w)
{
	int ret = med_window_parse(args, w);

	if (ret)
		return ret;
	if (!w->len)
		return -EINVAL;
	if (w->len > REGSHADOW_MAX)
		return -ERANGE;
	return 0;
}

static int regshadow_check_args(const char *args)
{
	struct med_window w;

	return regshadow_parse(args, &w);
}

static void regshadow_free(struct regshadow *rs)
{
	bitmap_free(rs->written);
	kvfree(rs->shadow);
	mutex_destroy(&rs->lock);
	kfree(rs);
}

static int regshadow_open(struct vfm_device *vd, const char *args,
			  void **priv)
{
	struct regshadow *rs;
	int ret;

	rs = kzalloc(sizeof(*rs), GFP_KERNEL);
	if (!rs)
		return -ENOMEM;
	mutex_init(&rs->lock);

	ret = regshadow_parse(args, &rs->w);
	if (!ret)
		ret = med_window_check(vd, &rs->w);
	if (ret)
		goto err;

	ret = -ENOMEM;
	rs->shadow = kvzalloc(rs->w.len, GFP_KERNEL);
	rs->written = bitmap_zalloc(rs->w.len, GFP_KERNEL);
	if (!rs->shadow || !rs->written)
		goto err;

	ret = vfm_trap_range(vd, rs->w.bar, rs->w.start, rs->w.len,
			     VFM_ACCESS_RW);
	if (ret)
		goto err;

	*priv = rs;
	return 0;

err:
	regshadow_free(rs);
	return ret;
}

static void regshadow_close(struct vfm_device *vd, void *priv)
{
	regshadow_free(priv);
}

/*
 * Reads change nothing here: they are trapped with the writes so that the
 * window leaves the mmap'ed part of the BAR as one unit, and go straight
 * to the device.
 */
static ssize_t regshadow_read(struct vfm_device *vd, void *priv,
			      unsigned int index, void *buf, size_t count,
			      loff_t off)
{
	return vfm_default_read(vd, index, buf, count, off);
}

/*
 * Record the bytes of a successful write [off, off + done) that fall in
 * the window. Admin "trap" rules can route other ranges of any region to
 * us too: those go to the device without a shadow.
 */
static void regshadow_record(struct regshadow *rs, unsigned int index,
			     loff_t off, const u8 *data, size_t done)
{
	u64 from = max_t(u64, off, rs->w.start);
	u64 to = min_t(u64, off + done, rs->w.start + rs->w.len);

	if (index != rs->w.bar || from >= to)
		return;
	memcpy(rs->shadow + (from - rs->w.start), data + (from - off), to - from);
	bitmap_set(rs->written, from - rs->w.start, to - from);
}

/* Under rs->lock: forget what a reset since the last look undid. */
static u64 regshadow_sync(struct regshadow *rs)
{
	u64 resets = atomic64_read(&rs->resets);

	if (resets != rs->resets_seen) {
		bitmap_zero(rs->written, rs->w.len);
		rs->resets_seen = resets;
	}
	return resets;
}

static ssize_t regshadow_write(struct vfm_device *vd, void *priv,
			       unsigned int index, const void *buf,
			       size_t count, loff_t off)
{
	struct regshadow *rs = priv;
	u64 before;
	ssize_t ret;

	mutex_lock(&rs->lock);
	before = regshadow_sync(rs);
	ret = vfm_default_write(vd, index, buf, count, off);
	/*
	 * A reset in between may have come before or after the device took
	 * the write: the bytes are then unknown, which the sync records.
	 */
	if (ret > 0 && regshadow_sync(rs) == before)
		regshadow_record(rs, index, off, buf, ret);
	mutex_unlock(&rs->lock);
	return ret;
}

static void regshadow_reset(struct vfm_device *vd, void *priv)
{
	struct regshadow *rs = priv;

	atomic64_inc(&rs->resets);
}

/* One dword of the state, "xx" for the bytes the shadow does not hold. */
static int regshadow_show_dword(struct regshadow *rs, u64 dw, char *buf,
				int size)
{
	int len, b;

	len = scnprintf(buf, size, "0x%llx=0x", dw);
	for (b = 3; b >= 0; b--) {
		u64 off = dw + b;

		if (off >= rs->w.start && off - rs->w.start < rs->w.len &&
		    test_bit(off - rs->w.start, rs->written))
			len += scnprintf(buf + len, size - len, "%02x",
					 rs->shadow[off - rs->w.start]);
		else
			len += scnprintf(buf + len, size - len, "xx");
	}
	len += scnprintf(buf + len, size - len, "\n");
	return len;
}

static ssize_t regshadow_show(struct vfm_device *vd, void *priv, char *buf)
{
	/* The longest dword line, and the line that ends a full page. */
	const int line_max = sizeof("0x0123456789abcdef=0x01234567\n");
	const int trunc = sizeof("truncated\n");
	struct regshadow *rs = priv;
	unsigned long bit;
	u64 dw;
	int len;

	mutex_lock(&rs->lock);
	regshadow_sync(rs);
	len = scnprintf(buf, PAGE_SIZE, "bar=%u range=0x%llx-0x%llx\n",
			rs->w.bar, rs->w.start, rs->w.start + rs->w.len - 1);
	bit = find_first_bit(rs->written, rs->w.len);
	while (bit < rs->w.len) {
		if (len + line_max + trunc > PAGE_SIZE) {
			len += scnprintf(buf + len, PAGE_SIZE - len,
					 "truncated\n");
			break;
		}
		dw = round_down(rs->w.start + bit, 4);
		len += regshadow_show_dword(rs, dw, buf + len, PAGE_SIZE - len);
		/* On to the first written byte of a later dword. */
		bit = find_next_bit(rs->written, rs->w.len,
				    dw + 4 - rs->w.start);
	}
	mutex_unlock(&rs->lock);
	return len;
}

static const struct vfm_mediator_ops regshadow_ops = {
	.name		= "regshadow",
	.owner		= THIS_MODULE,
	.check_args	= regshadow_check_args,
	.open		= regshadow_open,
	.close		= regshadow_close,
	.read		= regshadow_read,
	.write		= regshadow_write,
	.reset		= regshadow_reset,
	.show		= regshadow_show,
};

module_vfm_mediator(regshadow_ops);
MODULE_ALIAS_VFM_MEDIATOR("regshadow");
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("vfmediate mediator that shadows the registers written in a BAR window");
