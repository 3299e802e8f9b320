// SPDX-License-Identifier: GPL-2.0
/*
 * vfmediate_audit: count what a VFIO user does to a device.
 *
 * The smallest useful mediator, and the worked example of
 * vfmediate-mediator(9). It traps whole regions for observation only:
 * vfio-pci-core makes every access, and audit counts those that succeed.
 *
 * Arguments (the device's configfs "mediator_args"):
 *	(empty)			every BAR the device has, and config space
 *	regions=NAME[,NAME]...	these regions: bar0..bar5, rom, config, vga
 *
 * State (the device's configfs "mediator_state"): one line per trapped
 * region, in region index order, with decimal counts of the accesses that
 * succeeded and of the bytes they moved:
 *	bar0 reads=3 writes=1 read_bytes=12 write_bytes=4
 */
#include <linux/atomic.h>
#include <linux/bitops.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/vfmediate.h>

/* Indexed by VFIO region index, as in the configfs regions/ directory. */
static const char * const audit_region_names[VFIO_PCI_NUM_REGIONS] = {
	"bar0", "bar1", "bar2", "bar3", "bar4", "bar5", "rom", "config", "vga",
};

struct audit_counters {
	atomic64_t reads;
	atomic64_t writes;
	atomic64_t read_bytes;
	atomic64_t write_bytes;
};

/* Per-device state: what open() returns in *priv. */
struct audit_dev {
	unsigned long regions;		/* bit i set: region i is trapped */
	struct audit_counters c[VFIO_PCI_NUM_REGIONS];
};

/* Parse @args into a mask of region indexes; 0 when @args is empty. */
static int audit_parse(const char *args, unsigned long *regions)
{
	char *buf, *s, *name;
	size_t len;
	int i, ret = 0;

	*regions = 0;
	buf = kstrdup(args, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;

	s = strim(buf);
	if (*s) {
		len = str_has_prefix(s, "regions=");
		if (!len)
			ret = -EINVAL;
		for (s += len; !ret && s; ) {
			name = strsep(&s, ",");
			i = match_string(audit_region_names,
					 ARRAY_SIZE(audit_region_names), name);
			if (i < 0)
				ret = -EINVAL;
			else
				*regions |= BIT(i);
		}
	}

	kfree(buf);
	return ret;
}

static int audit_check_args(const char *args)
{
	unsigned long regions;

	return audit_parse(args, &regions);
}

static int audit_open(struct vfm_device *vd, const char *args, void **priv)
{
	struct audit_dev *ad;
	unsigned long regions;
	unsigned int i;
	bool all;
	int ret;

	ret = audit_parse(args, &regions);
	if (ret)
		return ret;
	all = !regions;
	if (all)
		regions = GENMASK(VFIO_PCI_BAR5_REGION_INDEX,
				  VFIO_PCI_BAR0_REGION_INDEX) |
			  BIT(VFIO_PCI_CONFIG_REGION_INDEX);

	ad = kzalloc(sizeof(*ad), GFP_KERNEL);
	if (!ad)
		return -ENOMEM;

	for_each_set_bit(i, &regions, VFIO_PCI_NUM_REGIONS) {
		u64 size = vfm_region_size(vd, i);

		/* By default, skip what the device lacks; named, refuse it. */
		if (!size) {
			if (all)
				continue;
			ret = -ENXIO;
			goto err;
		}
		ret = vfm_trap_range(vd, i, 0, size, VFM_ACCESS_RW);
		if (ret)
			goto err;
		__set_bit(i, &ad->regions);
	}

	*priv = ad;
	return 0;

err:
	kfree(ad);
	return ret;
}

static void audit_close(struct vfm_device *vd, void *priv)
{
	kfree(priv);
}

/*
 * vfio-pci-core made the access (audit has no read or write handler), so
 * every region can be audited, config space included; count it if it
 * succeeded.
 */
static void audit_observe(struct vfm_device *vd, void *priv,
			  unsigned int index, loff_t off, size_t count,
			  bool iswrite, ssize_t ret)
{
	struct audit_counters *c = &((struct audit_dev *)priv)->c[index];

	if (ret < 0)
		return;
	if (iswrite) {
		atomic64_inc(&c->writes);
		atomic64_add(ret, &c->write_bytes);
	} else {
		atomic64_inc(&c->reads);
		atomic64_add(ret, &c->read_bytes);
	}
}

static ssize_t audit_show(struct vfm_device *vd, void *priv, char *buf)
{
	struct audit_dev *ad = priv;
	unsigned int i;
	int len = 0;

	for_each_set_bit(i, &ad->regions, VFIO_PCI_NUM_REGIONS) {
		struct audit_counters *c = &ad->c[i];

		len += scnprintf(buf + len, PAGE_SIZE - len,
				 "%s reads=%lld writes=%lld read_bytes=%lld write_bytes=%lld\n",
				 audit_region_names[i],
				 atomic64_read(&c->reads),
				 atomic64_read(&c->writes),
				 atomic64_read(&c->read_bytes),
				 atomic64_read(&c->write_bytes));
	}
	return len;
}

static const struct vfm_mediator_ops audit_ops = {
	.name		= "audit",
	.owner		= THIS_MODULE,
	.check_args	= audit_check_args,
	.open		= audit_open,
	.close		= audit_close,
	.observe	= audit_observe,
	.show		= audit_show,
};

module_vfm_mediator(audit_ops);
MODULE_ALIAS_VFM_MEDIATOR("audit");
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("vfmediate mediator that counts accesses per region");
