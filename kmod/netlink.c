// SPDX-License-Identifier: GPL-2.0
/*
 * vfmediate generic netlink family "vfmediate": devices, mediators and
 * rule counters for reading, and the "monitor" multicast group of events
 * (events.c queues them). The uAPI is include/uapi/linux/vfmediate.h.
 *
 * Every command only reads, so any user may send it; the monitor group
 * names the tasks that touch devices, so joining it takes CAP_NET_ADMIN.
 * Requests are validated strictly against a policy per command.
 */
#include <linux/slab.h>
#include <net/genetlink.h>
#include <uapi/linux/vfmediate.h>

#include "vfmediate_core.h"

/* Rules read from the configuration at a time, for a stats dump. */
#define VFM_NL_RULE_BATCH	16

static struct genl_family vfm_genl_family;

enum { VFM_NL_MONITOR };

static const struct genl_multicast_group vfm_nl_mcgrps[] = {
	[VFM_NL_MONITOR] = {
		.name = VFMEDIATE_GENL_MCGRP_MONITOR,
		.flags = VFM_MONITOR_FLAGS,
	},
};

static const struct nla_policy vfm_nl_dev_policy[VFMEDIATE_A_DEV_NAME + 1] = {
	[VFMEDIATE_A_DEV_NAME] = { .type = NLA_NUL_STRING,
				   .len = VFM_DEV_NAME_LEN - 1 },
};

static const struct nla_policy vfm_nl_med_policy[VFMEDIATE_A_MED_NAME + 1] = {
	[VFMEDIATE_A_MED_NAME] = { .type = NLA_NUL_STRING,
				   .len = VFM_NAME_LEN - 1 },
};

bool vfm_nl_listening(void)
{
	return genl_has_listeners(&vfm_genl_family, &init_net, VFM_NL_MONITOR);
}

/*
 * Whether the monitor group has listeners, for the access path
 * (vfm_monitored()): VFM_NL_ON when someone does, valid while
 * VFM_NL_VALID is set; else (0, or a stale stamp) unknown: the next
 * access asks genetlink and keeps the answer unless the word changed
 * meanwhile.
 *
 * With the family's bind callbacks the answer is exact: a socket joining
 * sets ON, before it is a listener; one leaving, or a multicast that
 * found no listener, forgets the answer. Each of those changes bumps a
 * count in the bits above the flags, so that an answer asked for before
 * it is never kept after it. A listener thus never misses an event for a
 * stale "no"; a stale "yes", whose events go nowhere, lasts until the
 * first of them is sent.
 *
 * Without them (before 6.7) nothing tells the family of a socket joining,
 * and asking netlink_has_listeners() at every audited or refused access
 * would cost more than the rest of the access's decision: the answer is
 * kept for the rest of the tick it was asked in, stamped in the bits
 * above the flags. A new listener is noticed within a tick.
 */
unsigned long vfm_nl_monitor_state;

bool vfm_nl_monitored_slow(void)
{
	unsigned long old = READ_ONCE(vfm_nl_monitor_state);
	bool on = vfm_nl_listening();
	unsigned long new;

	if (VFM_GENL_BIND)
		new = (old & ~VFM_NL_FLAGS) | VFM_NL_VALID | on;
	else
		new = vfm_nl_stamp() | on;
	cmpxchg(&vfm_nl_monitor_state, old, new);
	return on;
}

/* A change of listeners: the new flags, and a new count (see above). */
static void vfm_nl_monitor_change(unsigned long old, unsigned long flags)
{
	unsigned long new;

	do {
		new = ((old & ~VFM_NL_FLAGS) + BIT(VFM_NL_SHIFT)) | flags;
	} while (!try_cmpxchg(&vfm_nl_monitor_state, &old, new));
}

/* A multicast found no listener: forget a "yes". */
static void vfm_nl_monitor_nobody(void)
{
	unsigned long old = READ_ONCE(vfm_nl_monitor_state);

	if (!(old & VFM_NL_ON))
		return;
	if (VFM_GENL_BIND)
		vfm_nl_monitor_change(old, 0);
	else
		cmpxchg(&vfm_nl_monitor_state, old, 0);
}

static int __maybe_unused vfm_nl_bind(int group)
{
	if (group == VFM_NL_MONITOR)
		vfm_nl_monitor_change(READ_ONCE(vfm_nl_monitor_state),
				      VFM_NL_FLAGS);
	return 0;
}

static void __maybe_unused vfm_nl_unbind(int group)
{
	if (group == VFM_NL_MONITOR)
		vfm_nl_monitor_change(READ_ONCE(vfm_nl_monitor_state), 0);
}

static int vfm_nl_put_u64(struct sk_buff *skb, int type, u64 v)
{
	return nla_put_u64_64bit(skb, type, v, VFMEDIATE_A_PAD);
}

/* ---- DEV_GET ---- */

static int vfm_nl_fill_dev(struct sk_buff *skb, const struct vfm_dev_info *di,
			   u32 portid, u32 seq, struct netlink_callback *cb)
{
	void *hdr;
	int flags = cb ? NLM_F_MULTI : 0;

	hdr = genlmsg_put(skb, portid, seq, &vfm_genl_family, flags,
			  VFMEDIATE_CMD_DEV_GET);
	if (!hdr)
		return -EMSGSIZE;
	if (nla_put_string(skb, VFMEDIATE_A_DEV_NAME, di->name) ||
	    nla_put_u8(skb, VFMEDIATE_A_DEV_STATE, di->state) ||
	    nla_put_u8(skb, VFMEDIATE_A_DEV_CONFIGURED, di->configured) ||
	    vfm_nl_put_u64(skb, VFMEDIATE_A_DEV_GENERATION, di->generation) ||
	    nla_put_u8(skb, VFMEDIATE_A_DEV_PENDING, di->pending) ||
	    nla_put_string(skb, VFMEDIATE_A_DEV_ERROR, di->error) ||
	    nla_put_string(skb, VFMEDIATE_A_DEV_WARNING, di->warning) ||
	    vfm_nl_put_u64(skb, VFMEDIATE_A_DEV_TABLE_BYTES, di->table_bytes) ||
	    vfm_nl_put_u64(skb, VFMEDIATE_A_DEV_RESETS, di->resets) ||
	    (di->migratable &&
	     nla_put_u8(skb, VFMEDIATE_A_DEV_MIGRATION, di->mig_state)) ||
	    (di->mediator[0] &&
	     (nla_put_string(skb, VFMEDIATE_A_MED_NAME, di->mediator) ||
	      nla_put_string(skb, VFMEDIATE_A_MED_ARGS, di->args)))) {
		genlmsg_cancel(skb, hdr);
		return -EMSGSIZE;
	}
	if (cb)
		genl_dump_check_consistent(cb, hdr);
	genlmsg_end(skb, hdr);
	return 0;
}

static int vfm_nl_dev_get_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct vfm_dev_info *di;
	struct sk_buff *msg;
	int ret;

	if (!info->attrs[VFMEDIATE_A_DEV_NAME]) {
		NL_SET_ERR_MSG(info->extack, "a device name is required");
		return -EINVAL;
	}
	di = kmalloc(sizeof(*di), GFP_KERNEL);
	if (!di)
		return -ENOMEM;
	ret = vfm_cfs_dev_info(nla_data(info->attrs[VFMEDIATE_A_DEV_NAME]), 0,
			       di);
	if (ret) {
		NL_SET_ERR_MSG_ATTR(info->extack,
				    info->attrs[VFMEDIATE_A_DEV_NAME],
				    "no such device configured or bound");
		goto out;
	}
	ret = -ENOMEM;
	msg = genlmsg_new(NLMSG_DEFAULT_SIZE, GFP_KERNEL);
	if (!msg)
		goto out;
	ret = vfm_nl_fill_dev(msg, di, info->snd_portid, info->snd_seq, NULL);
	if (ret)
		nlmsg_free(msg);
	else
		ret = genlmsg_reply(msg, info);
out:
	kfree(di);
	return ret;
}

/* cb->args[0]: the next device's position. */
static int vfm_nl_dev_get_dumpit(struct sk_buff *skb,
				 struct netlink_callback *cb)
{
	struct vfm_dev_info *di;
	int ret = 0;

	di = kmalloc(sizeof(*di), GFP_KERNEL);
	if (!di)
		return -ENOMEM;
	cb->seq = vfm_cfs_seq();
	for (; !vfm_cfs_dev_info(NULL, cb->args[0], di); cb->args[0]++) {
		ret = vfm_nl_fill_dev(skb, di, NETLINK_CB(cb->skb).portid,
				      cb->nlh->nlmsg_seq, cb);
		if (ret)
			break;
	}
	kfree(di);
	/* A full skb ends this part of the dump; the next goes on. */
	return ret == -EMSGSIZE && skb->len ? skb->len : ret ?: skb->len;
}

/* ---- MED_GET ---- */

static int vfm_nl_fill_med(struct sk_buff *skb, const struct vfm_med_info *mi,
			   u32 portid, u32 seq, int flags)
{
	void *hdr;

	hdr = genlmsg_put(skb, portid, seq, &vfm_genl_family, flags,
			  VFMEDIATE_CMD_MED_GET);
	if (!hdr)
		return -EMSGSIZE;
	if (nla_put_string(skb, VFMEDIATE_A_MED_NAME, mi->name) ||
	    nla_put_string(skb, VFMEDIATE_A_MED_MODULE, mi->module) ||
	    nla_put_u32(skb, VFMEDIATE_A_MED_USERS, mi->users)) {
		genlmsg_cancel(skb, hdr);
		return -EMSGSIZE;
	}
	genlmsg_end(skb, hdr);
	return 0;
}

static int vfm_nl_med_get_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct nlattr *name = info->attrs[VFMEDIATE_A_MED_NAME];
	struct vfm_med_info mi;
	struct sk_buff *msg;
	int ret;

	if (!name) {
		NL_SET_ERR_MSG(info->extack, "a mediator name is required");
		return -EINVAL;
	}
	if (vfm_registry_info(nla_data(name), 0, &mi)) {
		NL_SET_ERR_MSG_ATTR(info->extack, name,
				    "no such mediator registered");
		return -ENOENT;
	}
	msg = genlmsg_new(NLMSG_DEFAULT_SIZE, GFP_KERNEL);
	if (!msg)
		return -ENOMEM;
	ret = vfm_nl_fill_med(msg, &mi, info->snd_portid, info->snd_seq, 0);
	if (ret) {
		nlmsg_free(msg);
		return ret;
	}
	return genlmsg_reply(msg, info);
}

static int vfm_nl_med_get_dumpit(struct sk_buff *skb,
				 struct netlink_callback *cb)
{
	struct vfm_med_info mi;
	int ret = 0;

	for (; !vfm_registry_info(NULL, cb->args[0], &mi); cb->args[0]++) {
		ret = vfm_nl_fill_med(skb, &mi, NETLINK_CB(cb->skb).portid,
				      cb->nlh->nlmsg_seq, NLM_F_MULTI);
		if (ret)
			break;
	}
	return ret == -EMSGSIZE && skb->len ? skb->len : ret ?: skb->len;
}

/* ---- STATS_GET ---- */

/* Where a stats dump is: cb->args[]. */
enum {
	VFM_NL_DEV,		/* device position, when dumping all */
	VFM_NL_REGION,		/* region index */
	VFM_NL_RULE,		/* next rule of the region */
	VFM_NL_STARTED,		/* the region's first message was sent */
};

static int vfm_nl_put_counts(struct sk_buff *skb, const struct vfm_counts *c)
{
	return vfm_nl_put_u64(skb, VFMEDIATE_A_HITS, c->hits) ||
	       vfm_nl_put_u64(skb, VFMEDIATE_A_BYTES, c->bytes) ||
	       vfm_nl_put_u64(skb, VFMEDIATE_A_REFUSED, c->refused);
}

static int vfm_nl_put_rule(struct sk_buff *skb, const struct vfm_rule_info *ri)
{
	struct nlattr *nest = nla_nest_start(skb, VFMEDIATE_A_RULE);

	if (!nest)
		return -EMSGSIZE;
	if (nla_put_string(skb, VFMEDIATE_A_RULE_NAME, ri->name) ||
	    nla_put_u8(skb, VFMEDIATE_A_RULE_ACTION, ri->action) ||
	    nla_put_u8(skb, VFMEDIATE_A_RULE_ACCESS, ri->access) ||
	    vfm_nl_put_u64(skb, VFMEDIATE_A_RULE_START, ri->start) ||
	    vfm_nl_put_u64(skb, VFMEDIATE_A_RULE_END, ri->end) ||
	    nla_put_u8(skb, VFMEDIATE_A_RULE_AUDIT, ri->audit) ||
	    vfm_nl_put_counts(skb, &ri->counts)) {
		nla_nest_cancel(skb, nest);
		return -EMSGSIZE;
	}
	nla_nest_end(skb, nest);
	return 0;
}

/*
 * The sums per action of region @index's rules, put as ACTION_STATS
 * nests for the actions that have rules. Returns how many rules there
 * are (0: nothing put), or a negative errno.
 */
static int vfm_nl_put_sums(struct sk_buff *skb, const char *dev,
			   unsigned int index, struct vfm_rule_info *ri)
{
	struct vfm_counts sum[VFM_NR_ACTIONS] = {};
	u32 rules[VFM_NR_ACTIONS] = {}, pos = 0;
	int a, i, n;

	while ((n = vfm_cfs_rule_info(dev, index, pos, ri,
				      VFM_NL_RULE_BATCH)) > 0) {
		for (i = 0; i < n; i++) {
			a = ri[i].action;
			rules[a]++;
			sum[a].hits += ri[i].counts.hits;
			sum[a].bytes += ri[i].counts.bytes;
			sum[a].refused += ri[i].counts.refused;
		}
		pos += n;
	}
	if (n < 0)
		return n;
	for (a = 0; a < VFM_NR_ACTIONS; a++) {
		struct nlattr *nest;

		if (!rules[a])
			continue;
		nest = nla_nest_start(skb, VFMEDIATE_A_ACTION_STATS);
		if (!nest || nla_put_u8(skb, VFMEDIATE_A_RULE_ACTION, a) ||
		    vfm_nl_put_counts(skb, &sum[a]))
			return -EMSGSIZE;
		nla_nest_end(skb, nest);
	}
	return pos;
}

/*
 * One message of region @index of @dev: its sums in the first one, then
 * as many rules as fit, from cb->args[VFM_NL_RULE] on. Returns 1 when the
 * region is done, 0 when the skb is full, or a negative errno.
 */
static int vfm_nl_stats_region(struct sk_buff *skb,
			       struct netlink_callback *cb, const char *dev,
			       unsigned int index, struct vfm_rule_info *ri)
{
	struct nlattr *region;
	int i, n, done = 0;
	void *hdr;

	hdr = genlmsg_put(skb, NETLINK_CB(cb->skb).portid, cb->nlh->nlmsg_seq,
			  &vfm_genl_family, NLM_F_MULTI,
			  VFMEDIATE_CMD_STATS_GET);
	if (!hdr)
		return 0;
	if (nla_put_string(skb, VFMEDIATE_A_DEV_NAME, dev))
		goto full;
	region = nla_nest_start(skb, VFMEDIATE_A_REGION);
	if (!region || nla_put_u32(skb, VFMEDIATE_A_REGION_INDEX, index) ||
	    nla_put_string(skb, VFMEDIATE_A_REGION_NAME,
			   vfm_region_name(index)))
		goto full;
	if (!cb->args[VFM_NL_STARTED]) {
		n = vfm_nl_put_sums(skb, dev, index, ri);
		if (n == -EMSGSIZE)
			goto full;
		if (n <= 0) {
			/* No rules, or the device went: nothing to send. */
			genlmsg_cancel(skb, hdr);
			return 1;
		}
	}
	for (;;) {
		n = vfm_cfs_rule_info(dev, index, cb->args[VFM_NL_RULE], ri,
				      VFM_NL_RULE_BATCH);
		if (n <= 0) {
			done = 1;
			break;
		}
		for (i = 0; i < n; i++) {
			if (vfm_nl_put_rule(skb, &ri[i]))
				goto end;
			cb->args[VFM_NL_RULE]++;
		}
	}
end:
	nla_nest_end(skb, region);
	genl_dump_check_consistent(cb, hdr);
	genlmsg_end(skb, hdr);
	cb->args[VFM_NL_STARTED] = 1;
	return done;
full:
	genlmsg_cancel(skb, hdr);
	return 0;
}

/* Every region of @dev with rules, from cb->args[VFM_NL_REGION] on. */
static int vfm_nl_stats_dev(struct sk_buff *skb, struct netlink_callback *cb,
			    const char *dev, struct vfm_rule_info *ri)
{
	int ret;

	while (cb->args[VFM_NL_REGION] < VFM_NUM_REGIONS) {
		ret = vfm_nl_stats_region(skb, cb, dev,
					  cb->args[VFM_NL_REGION], ri);
		if (ret <= 0)
			return ret;
		cb->args[VFM_NL_REGION]++;
		cb->args[VFM_NL_RULE] = 0;
		cb->args[VFM_NL_STARTED] = 0;
	}
	return 1;
}

static int vfm_nl_stats_dumpit(struct sk_buff *skb,
			       struct netlink_callback *cb)
{
	struct nlattr *name = vfm_genl_dump_attrs(cb)[VFMEDIATE_A_DEV_NAME];
	struct vfm_dev_info *di;
	struct vfm_rule_info *ri;
	int ret = -ENOMEM;

	di = kmalloc(sizeof(*di), GFP_KERNEL);
	ri = kcalloc(VFM_NL_RULE_BATCH, sizeof(*ri), GFP_KERNEL);
	if (!di || !ri)
		goto out;
	cb->seq = vfm_cfs_seq();
	if (name) {
		ret = vfm_cfs_dev_info(nla_data(name), 0, di);
		if (ret || !di->configured) {
			NL_SET_ERR_MSG_ATTR(cb->extack, name,
					    "no such device configured");
			ret = -ENODEV;
			goto out;
		}
		ret = vfm_nl_stats_dev(skb, cb, di->name, ri);
		goto out;
	}
	for (;; cb->args[VFM_NL_DEV]++) {
		if (vfm_cfs_dev_info(NULL, cb->args[VFM_NL_DEV], di) ||
		    !di->configured) {
			ret = 1;
			break;
		}
		ret = vfm_nl_stats_dev(skb, cb, di->name, ri);
		if (ret <= 0)
			break;
		cb->args[VFM_NL_REGION] = 0;
	}
out:
	kfree(ri);
	kfree(di);
	if (ret < 0 && ret != -ENODEV && skb->len)
		return skb->len;	/* gone meanwhile: end here */
	return ret < 0 ? ret : skb->len;
}

/* ---- events ---- */

static void vfm_nl_multicast(struct sk_buff *msg, void *hdr)
{
	genlmsg_end(msg, hdr);
	if (genlmsg_multicast(&vfm_genl_family, msg, 0, VFM_NL_MONITOR,
			      GFP_KERNEL) == -ESRCH)
		vfm_nl_monitor_nobody();
}

/* An event message of @type about @dev, its header in @hdr; NULL if none. */
static struct sk_buff *vfm_nl_event_new(u32 type, const char *dev, void **hdr)
{
	struct sk_buff *msg;

	msg = genlmsg_new(NLMSG_DEFAULT_SIZE, GFP_KERNEL);
	if (!msg)
		return NULL;
	*hdr = genlmsg_put(msg, 0, 0, &vfm_genl_family, 0,
			   VFMEDIATE_CMD_EVENT);
	if (!*hdr || nla_put_u32(msg, VFMEDIATE_A_EVENT, type) ||
	    nla_put_string(msg, VFMEDIATE_A_DEV_NAME, dev)) {
		nlmsg_free(msg);
		return NULL;
	}
	return msg;
}

/* A lifecycle event, from the event worker. */
void vfm_nl_event(u32 type, const char *dev, const char *mediator,
		  u64 generation, int err, const char *error)
{
	struct sk_buff *msg;
	void *hdr;

	msg = vfm_nl_event_new(type, dev, &hdr);
	if (!msg)
		return;
	if ((mediator[0] &&
	     nla_put_string(msg, VFMEDIATE_A_MED_NAME, mediator)) ||
	    (generation &&
	     vfm_nl_put_u64(msg, VFMEDIATE_A_DEV_GENERATION, generation)) ||
	    (err && nla_put_u32(msg, VFMEDIATE_A_ERRNO, -err)) ||
	    (error[0] && nla_put_string(msg, VFMEDIATE_A_DEV_ERROR, error))) {
		nlmsg_free(msg);
		return;
	}
	vfm_nl_multicast(msg, hdr);
}

static int vfm_nl_put_rec(struct sk_buff *msg, const struct vfm_access_rec *rec)
{
	if (vfm_nl_put_u64(msg, VFMEDIATE_A_OFFSET, rec->off) ||
	    nla_put_u32(msg, VFMEDIATE_A_SIZE, rec->size) ||
	    nla_put_u8(msg, VFMEDIATE_A_WRITE, rec->write) ||
	    nla_put_u8(msg, VFMEDIATE_A_RULE_ACTION, rec->action))
		return -EMSGSIZE;
	if (!VFM_MONITOR_PRIVATE)
		return 0;
	return nla_put_u32(msg, VFMEDIATE_A_PID, rec->pid) ||
	       nla_put_string(msg, VFMEDIATE_A_COMM, rec->comm);
}

/*
 * An access of @c's rule (@rec), or with @rec NULL a summary of the
 * accesses of that @kind that were suppressed.
 */
void vfm_nl_access_event(const struct vfm_counter *c,
			 const struct vfm_access_rec *rec, int kind,
			 u64 suppressed)
{
	u32 type = kind == VFM_EV_REFUSED ? VFMEDIATE_EVENT_ACCESS_REFUSED :
					    VFMEDIATE_EVENT_ACCESS_AUDITED;
	struct sk_buff *msg;
	void *hdr;

	msg = vfm_nl_event_new(type, c->dev, &hdr);
	if (!msg)
		return;
	if (nla_put_u32(msg, VFMEDIATE_A_REGION_INDEX, c->region) ||
	    nla_put_string(msg, VFMEDIATE_A_REGION_NAME,
			   vfm_region_name(c->region)) ||
	    nla_put_string(msg, VFMEDIATE_A_RULE_NAME, c->name) ||
	    vfm_nl_put_u64(msg, VFMEDIATE_A_SUPPRESSED, suppressed) ||
	    (rec && vfm_nl_put_rec(msg, rec))) {
		nlmsg_free(msg);
		return;
	}
	vfm_nl_multicast(msg, hdr);
}

/* ---- the family ---- */

static const struct genl_ops vfm_nl_ops[] = {
	{
		.cmd = VFMEDIATE_CMD_DEV_GET,
		.doit = vfm_nl_dev_get_doit,
		.dumpit = vfm_nl_dev_get_dumpit,
		.policy = vfm_nl_dev_policy,
		.maxattr = ARRAY_SIZE(vfm_nl_dev_policy) - 1,
	},
	{
		.cmd = VFMEDIATE_CMD_MED_GET,
		.doit = vfm_nl_med_get_doit,
		.dumpit = vfm_nl_med_get_dumpit,
		.policy = vfm_nl_med_policy,
		.maxattr = ARRAY_SIZE(vfm_nl_med_policy) - 1,
	},
	{
		.cmd = VFMEDIATE_CMD_STATS_GET,
		.dumpit = vfm_nl_stats_dumpit,
		.policy = vfm_nl_dev_policy,
		.maxattr = ARRAY_SIZE(vfm_nl_dev_policy) - 1,
	},
};

static struct genl_family vfm_genl_family __ro_after_init = {
	.name = VFMEDIATE_GENL_NAME,
	.version = VFMEDIATE_GENL_VERSION,
	.module = THIS_MODULE,
	.ops = vfm_nl_ops,
	.n_ops = ARRAY_SIZE(vfm_nl_ops),
	/* Every command: strict validation, reserved header fields zero. */
	.resv_start_op = VFMEDIATE_CMD_DEV_GET,
	.mcgrps = vfm_nl_mcgrps,
	.n_mcgrps = ARRAY_SIZE(vfm_nl_mcgrps),
	VFM_GENL_BIND_OPS
};

int vfm_nl_init(void)
{
	/* Access bits go out as the mediator API numbers them. */
	BUILD_BUG_ON((VFM_ACCESS_READ ^ VFMEDIATE_ACCESS_READ) |
		     (VFM_ACCESS_WRITE ^ VFMEDIATE_ACCESS_WRITE));
	return genl_register_family(&vfm_genl_family);
}

void vfm_nl_exit(void)
{
	genl_unregister_family(&vfm_genl_family);
}
