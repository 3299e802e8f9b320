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
 * Migration: regshadow is migration-capable, so a function bound to
 * vfmediate with it attached offers VFIO migration. Its device state is
 * the shadow: a struct regshadow_state naming the window, the window's
 * bytes (0 where never written), then one byte per window byte, 1 where
 * it was written. On the destination, which must shadow the same window,
 * every run of written bytes is written back to the device in offset
 * order, naturally aligned 4, 2 or 1 bytes at a time (memory decoding
 * must be on: a VMM restores config space first), and the shadow becomes
 * the source's. Registers whose effect depends on the order or width of
 * the source's writes need a mediator of their own.
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
#define REGSHADOW_STATE_V1	1

/* The migration state: this, then the shadow, then the written mask. */
struct regshadow_state {
	__le32 version;
	__le32 bar;
	__le64 start;
	__le64 len;
};

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

static size_t regshadow_state_size(struct vfm_device *vd, void *priv)
{
	struct regshadow *rs = priv;

	return sizeof(struct regshadow_state) + 2 * rs->w.len;
}

static ssize_t regshadow_save_state(struct vfm_device *vd, void *priv,
				    void *buf, size_t size)
{
	size_t total = regshadow_state_size(vd, priv);
	struct regshadow_state *st = buf;
	struct regshadow *rs = priv;
	u8 *shadow = buf + sizeof(*st);
	u8 *mask = shadow + rs->w.len;
	u64 i;

	if (size < total)
		return -ENOSPC;
	st->version = cpu_to_le32(REGSHADOW_STATE_V1);
	st->bar = cpu_to_le32(rs->w.bar);
	st->start = cpu_to_le64(rs->w.start);
	st->len = cpu_to_le64(rs->w.len);
	mutex_lock(&rs->lock);
	regshadow_sync(rs);
	for (i = 0; i < rs->w.len; i++) {
		mask[i] = test_bit(i, rs->written);
		shadow[i] = mask[i] ? rs->shadow[i] : 0;
	}
	mutex_unlock(&rs->lock);
	return total;
}

/* Is @buf a state of this window, with a mask of 0s and 1s only? */
static bool regshadow_state_valid(struct regshadow *rs, const void *buf,
				  size_t len)
{
	const struct regshadow_state *st = buf;
	const u8 *mask = buf + sizeof(*st) + rs->w.len;
	u64 i;

	if (len != sizeof(*st) + 2 * rs->w.len ||
	    le32_to_cpu(st->version) != REGSHADOW_STATE_V1 ||
	    le32_to_cpu(st->bar) != rs->w.bar ||
	    le64_to_cpu(st->start) != rs->w.start ||
	    le64_to_cpu(st->len) != rs->w.len)
		return false;
	for (i = 0; i < rs->w.len; i++)
		if (mask[i] > 1)
			return false;
	return true;
}

/*
 * Write every run of written bytes back to the device, in offset order;
 * the shadow then holds what the device got. A failed write leaves the
 * runs before it in the shadow and the device.
 */
static int regshadow_load_state(struct vfm_device *vd, void *priv,
				const void *buf, size_t len)
{
	struct regshadow *rs = priv;
	const u8 *shadow = buf + sizeof(struct regshadow_state);
	const u8 *mask = shadow + rs->w.len;
	u64 from, to;
	ssize_t ret = 0;

	if (!regshadow_state_valid(rs, buf, len))
		return -EINVAL;
	mutex_lock(&rs->lock);
	regshadow_sync(rs);
	bitmap_zero(rs->written, rs->w.len);
	for (from = 0; from < rs->w.len; from = to) {
		for (to = from; to < rs->w.len && mask[to] == mask[from]; to++)
			;
		if (!mask[from])
			continue;
		ret = vfm_default_write(vd, rs->w.bar, shadow + from, to - from,
					rs->w.start + from);
		if (ret < 0)
			break;
		regshadow_record(rs, rs->w.bar, rs->w.start + from, shadow + from,
				 to - from);
	}
	mutex_unlock(&rs->lock);
	return ret < 0 ? ret : 0;
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
	.state_size	= regshadow_state_size,
	.save_state	= regshadow_save_state,
	.load_state	= regshadow_load_state,
};

module_vfm_mediator(regshadow_ops);
MODULE_ALIAS_VFM_MEDIATOR("regshadow");
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("vfmediate mediator that shadows the registers written in a BAR window");
