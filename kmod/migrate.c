// SPDX-License-Identifier: GPL-2.0
/*
 * vfmediate: VFIO migration (v2) through the device's mediator.
 *
 * The core implements the uAPI once, in the manner of the in-tree variant
 * drivers (mlx5, hisi_acc, virtio): the state machine, stepped with
 * vfio_mig_get_next_state(), the data files, and the error and reset
 * paths. A mediator supplies only its device state, as one buffer: it
 * saves it into a kernel buffer on STOP -> STOP_COPY and loads it from
 * one on RESUMING -> STOP, and may stop and restart the device on
 * RUNNING <-> STOP (<linux/vfmediate.h>).
 *
 * Migratability. vfio wants vfio_device.mig_ops before the device is
 * registered, so it is decided at bind: the function is migratable when
 * the mediator attached in its configfs directory at that moment has
 * the state hooks (vfm_mig_capable()). Otherwise VFIO_DEVICE_FEATURE_MIGRATION
 * is absent, exactly as on vfio-pci. A transition that needs the state
 * (to STOP_COPY or out of RESUMING) uses the mediator of the running
 * table, and fails (the device's "error" says why) when that one has no
 * state hooks, since the configuration may change after bind.
 *
 * The data stream is a struct vfm_mig_header, then the mediator's state.
 * The header names the mediator and holds the state's length and CRC, so
 * that a truncated, corrupted or foreign stream is refused before the
 * mediator sees it: RESUMING -> STOP then fails with -EINVAL and the
 * device stays in RESUMING, unchanged.
 *
 * Dirty tracking. The core does not implement VFIO_DEVICE_FEATURE_DMA_LOGGING:
 * no mediator hook can report the pages a device wrote, and claiming
 * logging it cannot do would lose guest memory. A VMM tracks DMA through
 * its IOMMU container instead (type1's dirty bitmap, or iommufd's dirty
 * tracking), as for any device without logging.
 *
 * Locking, as mlx5's: @mig_lock serializes transitions; each data file has
 * its own lock, taken under @mig_lock to end it and by read() and write(),
 * which copy to and from user memory and so may fault on a BAR mapping
 * and wait for memory_lock. A reset (reset_done(), with memory_lock held
 * for writing) must not wait for @mig_lock, whose holder may wait for
 * memory_lock in the mediator: it only marks the reset, and the holder of
 * @mig_lock acts on it as it unlocks. Acting on a reset may happen under
 * memory_lock, so it must not wait for a file's lock either, held across
 * a user copy that may wait for memory_lock: it only flags the files
 * void, and their buffers go when the files do. Nor does the mediator run
 * under a file's lock: RESUMING takes the written stream out of its file
 * before load_state() sees it.
 */
#include <linux/anon_inodes.h>
#include <linux/crc32.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vfio.h>

#include "vfmediate_core.h"

#define VFM_MIG_MAGIC		0x4d4d4656	/* "VFMM" */
#define VFM_MIG_VERSION		1
/* The largest state a mediator may have: a kernel buffer holds it whole. */
#define VFM_MIG_STATE_MAX	SZ_16M

struct vfm_mig_header {
	__le32 magic;
	__le32 version;
	char mediator[VFM_NAME_LEN];
	__le64 length;			/* bytes of state that follow */
	__le32 crc;			/* crc32_le(~0, state, length) */
	__le32 reserved;		/* 0 */
};

/*
 * A data file: the saved stream for reading, or the buffer a stream is
 * written into. Never touches the device: it may outlive it.
 */
struct vfm_mig_file {
	struct file *filp;
	struct mutex lock;		/* all below */
	bool disabled;			/* the transfer ended */
	u8 *data;
	size_t len;			/* bytes held */
	size_t cap;			/* bytes @data can hold */
};

bool vfm_mig_capable(const struct vfm_mediator_ops *ops)
{
	return ops && ops->state_size && ops->save_state && ops->load_state;
}

/* For the device's configfs "migration" attribute. */
const char *vfm_mig_state_name(enum vfio_device_mig_state state)
{
	switch (state) {
	case VFIO_DEVICE_STATE_STOP:
		return "stop";
	case VFIO_DEVICE_STATE_RUNNING:
		return "running";
	case VFIO_DEVICE_STATE_STOP_COPY:
		return "stop_copy";
	case VFIO_DEVICE_STATE_RESUMING:
		return "resuming";
	default:
		return "error";
	}
}

/*
 * Under @vd->mig_lock: why the transition fails, for the device's "error"
 * once the SRCU read section is over (vfm_mig_set_state()).
 */
static void vfm_mig_error(struct vfm_device *vd, const char *why, int err)
{
	snprintf(vd->mig_error, sizeof(vd->mig_error), "migration: %s (%d)",
		 why, err);
}

static void vfm_mig_file_end(struct vfm_mig_file *migf)
{
	mutex_lock(&migf->lock);
	WRITE_ONCE(migf->disabled, true);
	kvfree(migf->data);
	migf->data = NULL;
	migf->len = 0;
	migf->cap = 0;
	mutex_unlock(&migf->lock);
}

static int vfm_mig_release(struct inode *inode, struct file *filp)
{
	struct vfm_mig_file *migf = filp->private_data;

	vfm_mig_file_end(migf);
	mutex_destroy(&migf->lock);
	kfree(migf);
	return 0;
}

/*
 * Lock @migf for a read() or write(): the files are streams, and one
 * whose transfer ended (or was taken for a load) says ENODEV.
 */
static int vfm_mig_file_lock(struct vfm_mig_file *migf, loff_t *pos)
{
	if (pos)
		return -ESPIPE;
	mutex_lock(&migf->lock);
	if (READ_ONCE(migf->disabled)) {
		mutex_unlock(&migf->lock);
		return -ENODEV;
	}
	return 0;
}

static ssize_t vfm_mig_read(struct file *filp, char __user *buf, size_t len,
			    loff_t *pos)
{
	struct vfm_mig_file *migf = filp->private_data;
	ssize_t ret;

	ret = vfm_mig_file_lock(migf, pos);
	if (ret)
		return ret;
	pos = &filp->f_pos;
	if (*pos > migf->len) {
		ret = -EINVAL;
		goto out;
	}
	len = min_t(size_t, len, migf->len - *pos);
	ret = len;
	if (copy_to_user(buf, migf->data + *pos, len))
		ret = -EFAULT;
	else
		*pos += len;
out:
	mutex_unlock(&migf->lock);
	return ret;
}

static ssize_t vfm_mig_write(struct file *filp, const char __user *buf,
			     size_t len, loff_t *pos)
{
	struct vfm_mig_file *migf = filp->private_data;
	ssize_t ret;

	ret = vfm_mig_file_lock(migf, pos);
	if (ret)
		return ret;
	pos = &filp->f_pos;
	/* A stream longer than the destination's state can be is not ours. */
	if (*pos != migf->len || len > migf->cap - migf->len) {
		ret = -EFBIG;
		goto out;
	}
	ret = len;
	if (copy_from_user(migf->data + migf->len, buf, len)) {
		ret = -EFAULT;
	} else {
		migf->len += len;
		*pos += len;
	}
out:
	mutex_unlock(&migf->lock);
	return ret;
}

static const struct file_operations vfm_mig_save_fops = {
	.owner		= THIS_MODULE,
	.read		= vfm_mig_read,
	.release	= vfm_mig_release,
};

static const struct file_operations vfm_mig_resume_fops = {
	.owner		= THIS_MODULE,
	.write		= vfm_mig_write,
	.release	= vfm_mig_release,
};

static struct vfm_mig_file *vfm_mig_file_new(size_t cap, bool save)
{
	struct vfm_mig_file *migf;

	migf = kzalloc(sizeof(*migf), GFP_KERNEL_ACCOUNT);
	if (!migf)
		return ERR_PTR(-ENOMEM);
	mutex_init(&migf->lock);
	migf->cap = cap;
	migf->data = kvzalloc(cap, GFP_KERNEL_ACCOUNT);
	if (!migf->data)
		goto err;
	migf->filp = anon_inode_getfile("vfmediate_mig", save ?
					&vfm_mig_save_fops : &vfm_mig_resume_fops,
					migf, save ? O_RDONLY : O_WRONLY);
	if (IS_ERR(migf->filp))
		goto err;
	stream_open(migf->filp->f_inode, migf->filp);
	return migf;
err:
	kvfree(migf->data);
	mutex_destroy(&migf->lock);
	kfree(migf);
	return ERR_PTR(-ENOMEM);
}

/*
 * Under @vd->mig_lock: end both transfers, drop the core's references.
 * @reset: acting on a reset, maybe under memory_lock: do not wait for a
 * file's lock (see the top); read() and write() see the flag.
 */
static void vfm_mig_files_end(struct vfm_device *vd, bool reset)
{
	struct vfm_mig_file **files[] = { &vd->mig_save, &vd->mig_resume };
	int i;

	for (i = 0; i < ARRAY_SIZE(files); i++) {
		if (!*files[i])
			continue;
		if (reset)
			WRITE_ONCE((*files[i])->disabled, true);
		else
			vfm_mig_file_end(*files[i]);
		fput((*files[i])->filp);
		*files[i] = NULL;
	}
}

/*
 * The mediator of the running table, under the SRCU read lock the caller
 * holds: its instance stays while the lock is held.
 */
static const struct vfm_table *vfm_mig_table(struct vfm_device *vd)
{
	return srcu_dereference(vd->table, &vd->srcu);
}

static size_t vfm_mig_state_size(struct vfm_device *vd,
				 const struct vfm_table *tbl)
{
	if (!vfm_mig_capable(tbl->mops))
		return 0;
	return min_t(size_t, tbl->mops->state_size(vd, tbl->mpriv),
		     VFM_MIG_STATE_MAX);
}

static int vfm_mig_no_state(struct vfm_device *vd, const struct vfm_table *tbl)
{
	snprintf(vd->mig_error, sizeof(vd->mig_error),
		 "migration: the running mediator (%s) has no device state",
		 tbl->mops ? tbl->mops->name : "none");
	return -EOPNOTSUPP;
}

/* STOP -> STOP_COPY: the whole stream, saved at once. */
static struct file *vfm_mig_save(struct vfm_device *vd)
{
	const struct vfm_table *tbl;
	struct vfm_mig_header *hdr;
	struct vfm_mig_file *migf;
	ssize_t len;
	size_t max;
	int idx;

	idx = srcu_read_lock(&vd->srcu);
	tbl = vfm_mig_table(vd);
	if (!vfm_mig_capable(tbl->mops)) {
		len = vfm_mig_no_state(vd, tbl);
		goto out;
	}
	max = vfm_mig_state_size(vd, tbl);
	migf = vfm_mig_file_new(sizeof(*hdr) + max, true);
	if (IS_ERR(migf)) {
		len = PTR_ERR(migf);
		goto out;
	}
	len = tbl->mops->save_state(vd, tbl->mpriv, migf->data + sizeof(*hdr),
				    max);
	if (len < 0 || len > max) {
		len = len < 0 ? len : -EOVERFLOW;
		vfm_mig_error(vd, "the mediator could not save its state", len);
		fput(migf->filp);
		goto out;
	}
	hdr = (struct vfm_mig_header *)migf->data;
	hdr->magic = cpu_to_le32(VFM_MIG_MAGIC);
	hdr->version = cpu_to_le32(VFM_MIG_VERSION);
	strscpy(hdr->mediator, tbl->mops->name, sizeof(hdr->mediator));
	hdr->length = cpu_to_le64(len);
	hdr->crc = cpu_to_le32(crc32_le(~0, migf->data + sizeof(*hdr), len));
	migf->len = sizeof(*hdr) + len;
	srcu_read_unlock(&vd->srcu, idx);

	get_file(migf->filp);
	vd->mig_save = migf;
	return migf->filp;
out:
	srcu_read_unlock(&vd->srcu, idx);
	return ERR_PTR(len);
}

/* STOP -> RESUMING: a buffer as large as this device's state can be. */
static struct file *vfm_mig_resume(struct vfm_device *vd)
{
	const struct vfm_table *tbl;
	struct vfm_mig_file *migf;
	int idx, ret = 0;
	size_t max;

	idx = srcu_read_lock(&vd->srcu);
	tbl = vfm_mig_table(vd);
	if (vfm_mig_capable(tbl->mops))
		max = vfm_mig_state_size(vd, tbl);
	else
		ret = vfm_mig_no_state(vd, tbl);
	srcu_read_unlock(&vd->srcu, idx);
	if (ret)
		return ERR_PTR(ret);

	migf = vfm_mig_file_new(sizeof(struct vfm_mig_header) + max, false);
	if (IS_ERR(migf))
		return ERR_CAST(migf);
	get_file(migf->filp);
	vd->mig_resume = migf;
	return migf->filp;
}

/* What is wrong with a written stream for mediator @name, or NULL. */
static const char *vfm_mig_check(const u8 *data, size_t len, const char *name)
{
	const struct vfm_mig_header *hdr = (const void *)data;

	if (len < sizeof(*hdr))
		return "the stream is shorter than its header";
	if (le32_to_cpu(hdr->magic) != VFM_MIG_MAGIC ||
	    le32_to_cpu(hdr->version) != VFM_MIG_VERSION || hdr->reserved)
		return "the stream is not a vfmediate stream of a known version";
	if (strncmp(hdr->mediator, name, sizeof(hdr->mediator)))
		return "the stream was saved by another mediator";
	if (le64_to_cpu(hdr->length) != len - sizeof(*hdr))
		return "the stream is truncated or too long";
	if (le32_to_cpu(hdr->crc) != crc32_le(~0, data + sizeof(*hdr),
					      len - sizeof(*hdr)))
		return "the stream is corrupted (CRC mismatch)";
	return NULL;
}

/*
 * RESUMING -> STOP: take the stream out of its file, which takes no more
 * writes from now on, check it whole, then hand it to the mediator.
 */
static int vfm_mig_load(struct vfm_device *vd)
{
	struct vfm_mig_file *migf = vd->mig_resume;
	const size_t hdr = sizeof(struct vfm_mig_header);
	const struct vfm_table *tbl;
	const char *why;
	size_t len;
	int idx, ret;
	u8 *data;

	mutex_lock(&migf->lock);
	WRITE_ONCE(migf->disabled, true);
	data = migf->data;
	len = migf->len;
	migf->data = NULL;
	migf->len = 0;
	mutex_unlock(&migf->lock);

	idx = srcu_read_lock(&vd->srcu);
	tbl = vfm_mig_table(vd);
	if (!vfm_mig_capable(tbl->mops)) {
		ret = vfm_mig_no_state(vd, tbl);
		goto out;
	}
	why = vfm_mig_check(data, len, tbl->mops->name);
	if (why) {
		ret = -EINVAL;
		vfm_mig_error(vd, why, ret);
		goto out;
	}
	WRITE_ONCE(vd->restore_task, current);
	ret = tbl->mops->load_state(vd, tbl->mpriv, data + hdr, len - hdr);
	WRITE_ONCE(vd->restore_task, NULL);
	if (ret)
		vfm_mig_error(vd, "the mediator refused the state", ret);
out:
	srcu_read_unlock(&vd->srcu, idx);
	kvfree(data);
	return ret;
}

/* RUNNING <-> STOP: the mediator's optional stop() and run(). */
static int vfm_mig_run(struct vfm_device *vd, bool run)
{
	const struct vfm_table *tbl;
	int idx, ret = 0;

	idx = srcu_read_lock(&vd->srcu);
	tbl = vfm_mig_table(vd);
	if (tbl->mops && run && tbl->mops->run)
		ret = tbl->mops->run(vd, tbl->mpriv);
	else if (tbl->mops && !run && tbl->mops->stop)
		ret = tbl->mops->stop(vd, tbl->mpriv);
	srcu_read_unlock(&vd->srcu, idx);
	if (ret)
		vfm_mig_error(vd, run ? "the mediator could not run the device" :
			      "the mediator could not stop the device", ret);
	return ret;
}

/* One arc of the state machine; a file for the arcs that start a transfer. */
static struct file *vfm_mig_step(struct vfm_device *vd,
				 enum vfio_device_mig_state next)
{
	enum vfio_device_mig_state cur = vd->mig_state;

	if (cur == VFIO_DEVICE_STATE_RUNNING && next == VFIO_DEVICE_STATE_STOP)
		return ERR_PTR(vfm_mig_run(vd, false));
	if (cur == VFIO_DEVICE_STATE_STOP && next == VFIO_DEVICE_STATE_RUNNING)
		return ERR_PTR(vfm_mig_run(vd, true));
	if (cur == VFIO_DEVICE_STATE_STOP && next == VFIO_DEVICE_STATE_STOP_COPY)
		return vfm_mig_save(vd);
	if (cur == VFIO_DEVICE_STATE_STOP && next == VFIO_DEVICE_STATE_RESUMING)
		return vfm_mig_resume(vd);
	if (cur == VFIO_DEVICE_STATE_STOP_COPY && next == VFIO_DEVICE_STATE_STOP) {
		vfm_mig_files_end(vd, false);
		return NULL;
	}
	if (cur == VFIO_DEVICE_STATE_RESUMING && next == VFIO_DEVICE_STATE_STOP) {
		int ret = vfm_mig_load(vd);

		if (!ret)
			vfm_mig_files_end(vd, false);
		return ERR_PTR(ret);
	}
	/* vfio_mig_get_next_state() gives no other arc for our flags. */
	return ERR_PTR(-EINVAL);
}

/* Unlock @mig_lock, acting first on a reset that came meanwhile. */
static void vfm_mig_unlock(struct vfm_device *vd)
{
again:
	spin_lock(&vd->mig_reset_lock);
	if (vd->mig_reset) {
		vd->mig_reset = false;
		spin_unlock(&vd->mig_reset_lock);
		vd->mig_state = VFIO_DEVICE_STATE_RUNNING;
		vfm_mig_files_end(vd, true);
		goto again;
	}
	mutex_unlock(&vd->mig_lock);
	spin_unlock(&vd->mig_reset_lock);
}

static struct file *vfm_mig_set_state(struct vfio_device *core_vdev,
				      enum vfio_device_mig_state new)
{
	struct vfm_device *vd = to_vfm(core_vdev);
	enum vfio_device_mig_state next;
	struct file *res = NULL;
	int ret;

	mutex_lock(&vd->mig_lock);
	vd->mig_error[0] = '\0';
	while (new != vd->mig_state) {
		ret = vfio_mig_get_next_state(core_vdev, vd->mig_state, new,
					      &next);
		if (ret) {
			res = ERR_PTR(ret);
			break;
		}
		res = vfm_mig_step(vd, next);
		if (IS_ERR(res))
			break;
		vd->mig_state = next;
		/* Only the last arc may start a transfer. */
		if (WARN_ON(res && new != next)) {
			fput(res);
			res = ERR_PTR(-EINVAL);
			break;
		}
	}
	if (vd->mig_error[0])
		vfm_policy_set_error(vd, vd->mig_error);
	vfm_mig_unlock(vd);
	return res;
}

static int vfm_mig_get_state(struct vfio_device *core_vdev,
			     enum vfio_device_mig_state *state)
{
	struct vfm_device *vd = to_vfm(core_vdev);

	mutex_lock(&vd->mig_lock);
	*state = vd->mig_state;
	vfm_mig_unlock(vd);
	return 0;
}

/* VFIO_DEVICE_FEATURE_MIG_DATA_SIZE (6.3 and later): header and state. */
static int __maybe_unused vfm_mig_data_size(struct vfio_device *core_vdev,
					    unsigned long *len)
{
	struct vfm_device *vd = to_vfm(core_vdev);
	int idx;

	idx = srcu_read_lock(&vd->srcu);
	*len = sizeof(struct vfm_mig_header) +
	       vfm_mig_state_size(vd, vfm_mig_table(vd));
	srcu_read_unlock(&vd->srcu, idx);
	return 0;
}

static const struct vfio_migration_ops vfm_mig_ops = {
	.migration_set_state	= vfm_mig_set_state,
	.migration_get_state	= vfm_mig_get_state,
	VFM_MIG_DATA_SIZE_OP(vfm_mig_data_size)
};

void vfm_mig_init(struct vfm_device *vd)
{
	mutex_init(&vd->mig_lock);
	spin_lock_init(&vd->mig_reset_lock);
	vd->mig_state = VFIO_DEVICE_STATE_RUNNING;
}

/* At probe, before registration: vfio reads mig_ops only then. */
void vfm_mig_enable(struct vfm_device *vd)
{
	vd->core.vdev.migration_flags = VFIO_MIGRATION_STOP_COPY;
	vd->core.vdev.mig_ops = &vfm_mig_ops;
}

void vfm_mig_destroy(struct vfm_device *vd)
{
	mutex_destroy(&vd->mig_lock);
}

/* Open and close: a new user finds the device RUNNING, no transfer open. */
void vfm_mig_reset_state(struct vfm_device *vd)
{
	if (!vd->core.vdev.mig_ops)
		return;
	mutex_lock(&vd->mig_lock);
	vd->mig_state = VFIO_DEVICE_STATE_RUNNING;
	vfm_mig_files_end(vd, false);
	vfm_mig_unlock(vd);
}

/*
 * The function was reset: it runs again (the uAPI's "RESET returns to
 * RUNNING") and any transfer is void. From reset_done(), possibly with
 * memory_lock held: never wait for @mig_lock (see the top).
 */
void vfm_mig_reset_done(struct vfm_device *vd)
{
	if (!vd->core.vdev.mig_ops)
		return;
	spin_lock(&vd->mig_reset_lock);
	vd->mig_reset = true;
	if (!mutex_trylock(&vd->mig_lock)) {
		spin_unlock(&vd->mig_reset_lock);
		return;
	}
	spin_unlock(&vd->mig_reset_lock);
	vfm_mig_unlock(vd);
}
