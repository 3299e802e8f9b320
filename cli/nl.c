// SPDX-License-Identifier: GPL-2.0
/*
 * The vfmediate generic netlink family (include/uapi/linux/vfmediate.h):
 * DEV_GET, MED_GET and STATS_GET requests, and the monitor group. Every
 * reply is turned into json-c objects with the keys vfmediate(8)
 * documents; attributes this version does not know are skipped, as the
 * uAPI asks of readers.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/netlink.h>
#include <linux/vfmediate.h>

#include "vfm.h"

struct vnl {
	struct nl_sock *sk;
	int family;
};

static const char *const dev_states[] = { "absent", "bound", "open" };

/* enum vfio_device_mig_state, as the configfs "migration" attribute says. */
static const char *const mig_states[] = {
	"error", "stop", "running", "stop_copy", "resuming",
};

static const char *const event_names[] = {
	[VFMEDIATE_EVENT_UNSPEC] = "unknown",
	[VFMEDIATE_EVENT_BOUND] = "bound",
	[VFMEDIATE_EVENT_UNBOUND] = "unbound",
	[VFMEDIATE_EVENT_OPENED] = "opened",
	[VFMEDIATE_EVENT_CLOSED] = "closed",
	[VFMEDIATE_EVENT_MED_ATTACHED] = "mediator-attached",
	[VFMEDIATE_EVENT_MED_DETACHED] = "mediator-detached",
	[VFMEDIATE_EVENT_CONFIG_APPLIED] = "config-applied",
	[VFMEDIATE_EVENT_CONFIG_REFUSED] = "config-refused",
	[VFMEDIATE_EVENT_ACCESS_AUDITED] = "access-audited",
	[VFMEDIATE_EVENT_ACCESS_REFUSED] = "access-refused",
};

/* A reason in words for a netlink failure (a positive errno). */
const char *vnl_why(int e)
{
	if (e < 0)
		e = -e;
	switch (e) {
	case ENOENT:
		return "the vfmediate netlink family is not registered "
		       "(is the vfmediate module loaded? modprobe vfmediate)";
	case ENODEV:
		return "no such device: not bound to vfmediate and not configured";
	case EPERM:
	case EACCES:
		return "permission denied (this needs CAP_NET_ADMIN)";
	default:
		return strerror(e);
	}
}

/* libnl's error codes back to an errno, for the few that matter. */
static int nlerr(int ret)
{
	switch (-ret) {
	case NLE_OBJ_NOTFOUND:
		return -ENOENT;
	case NLE_PERM:
		return -EPERM;
	case NLE_NOACCESS:
		return -EACCES;
	case NLE_NODEV:
		return -ENODEV;
	case NLE_NOMEM:
		return -ENOMEM;
	case NLE_INVAL:
		return -EINVAL;
	case NLE_OPNOTSUPP:
		return -EOPNOTSUPP;
	case NLE_AGAIN:
		return -EAGAIN;
	default:
		return -EIO;
	}
}

int vnl_open(struct vnl **hp)
{
	struct vnl *h = calloc(1, sizeof(*h));
	int ret;

	if (!h)
		return -ENOMEM;
	h->sk = nl_socket_alloc();
	if (!h->sk) {
		free(h);
		return -ENOMEM;
	}
	ret = genl_connect(h->sk);
	if (!ret)
		ret = genl_ctrl_resolve(h->sk, VFMEDIATE_GENL_NAME);
	if (ret < 0) {
		nl_socket_free(h->sk);
		free(h);
		return nlerr(ret);
	}
	h->family = ret;
	*hp = h;
	return 0;
}

void vnl_close(struct vnl *h)
{
	if (!h)
		return;
	nl_socket_free(h->sk);
	free(h);
}

/* Attribute readers that check the length, so a short one is skipped. */
static bool get_u64(struct nlattr *a, uint64_t *v)
{
	if (!a || nla_len(a) < (int)sizeof(uint64_t))
		return false;
	*v = nla_get_u64(a);
	return true;
}

static bool get_u32(struct nlattr *a, uint32_t *v)
{
	if (!a || nla_len(a) < (int)sizeof(uint32_t))
		return false;
	*v = nla_get_u32(a);
	return true;
}

static bool get_u8(struct nlattr *a, uint8_t *v)
{
	if (!a || nla_len(a) < 1)
		return false;
	*v = nla_get_u8(a);
	return true;
}

static void put_str(struct json_object *o, const char *key, struct nlattr *a)
{
	if (!a || nla_len(a) < 1)
		return;
	/* The kernel NUL-terminates; do not trust it blindly. */
	json_object_object_add(o, key, json_object_new_string_len(
		nla_data(a), strnlen(nla_data(a), nla_len(a))));
}

static void put_u64(struct json_object *o, const char *key, struct nlattr *a)
{
	uint64_t v;

	if (get_u64(a, &v))
		jadd_u64(o, key, v);
}

static void put_u32(struct json_object *o, const char *key, struct nlattr *a)
{
	uint32_t v;

	if (get_u32(a, &v))
		jadd_u64(o, key, v);
}

static void put_bool(struct json_object *o, const char *key, struct nlattr *a)
{
	uint8_t v;

	if (get_u8(a, &v))
		jadd_bool(o, key, v);
}

static void put_action(struct json_object *o, const char *key,
		       struct nlattr *a)
{
	uint8_t v;

	if (get_u8(a, &v))
		jadd_str(o, key, v <= VFMEDIATE_ACTION_MAX ? vfm_actions[v]
							  : "unknown");
}

static void put_access(struct json_object *o, struct nlattr *a)
{
	uint8_t v;

	if (!get_u8(a, &v))
		return;
	jadd_str(o, "access", v == (VFMEDIATE_ACCESS_READ | VFMEDIATE_ACCESS_WRITE) ?
		 "rw" : v == VFMEDIATE_ACCESS_READ ? "r" :
		 v == VFMEDIATE_ACCESS_WRITE ? "w" : "");
}

static int parse_msg(struct nl_msg *msg, struct nlattr **tb)
{
	return genlmsg_parse(nlmsg_hdr(msg), 0, tb, VFMEDIATE_A_MAX, NULL);
}

/* One request and its replies; FN gets each reply's attributes. */
struct req {
	int (*fn)(struct nlattr **tb, struct json_object *out);
	struct json_object *out;
	int err;
	bool done;
};

static int on_valid(struct nl_msg *msg, void *arg)
{
	struct nlattr *tb[VFMEDIATE_A_MAX + 1];
	struct req *r = arg;

	if (parse_msg(msg, tb) < 0)
		return NL_SKIP;
	r->err = r->fn(tb, r->out);
	return NL_OK;
}

static int on_finish(struct nl_msg *msg, void *arg)
{
	struct req *r = arg;

	(void)msg;
	r->done = true;
	return NL_STOP;
}

static int on_error(struct sockaddr_nl *nla, struct nlmsgerr *e, void *arg)
{
	struct req *r = arg;

	(void)nla;
	r->err = e->error;
	r->done = true;
	return NL_STOP;
}

static int request(struct vnl *h, int cmd, int attr, const char *name,
		   struct req *r)
{
	struct nl_msg *msg = nlmsg_alloc();
	struct nl_cb *cb = nl_cb_alloc(NL_CB_DEFAULT);
	int flags = NLM_F_ACK | (name ? 0 : NLM_F_DUMP);
	int ret = -ENOMEM;

	if (!msg || !cb)
		goto out;
	if (!genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, h->family, 0, flags,
			 cmd, VFMEDIATE_GENL_VERSION))
		goto out;
	if (name && nla_put_string(msg, attr, name) < 0)
		goto out;
	nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, on_valid, r);
	nl_cb_set(cb, NL_CB_FINISH, NL_CB_CUSTOM, on_finish, r);
	nl_cb_set(cb, NL_CB_ACK, NL_CB_CUSTOM, on_finish, r);
	nl_cb_err(cb, NL_CB_CUSTOM, on_error, r);
	ret = nl_send_auto(h->sk, msg);
	if (ret < 0) {
		ret = nlerr(ret);
		goto out;
	}
	ret = 0;
	while (!r->done) {
		ret = nl_recvmsgs(h->sk, cb);
		if (ret < 0) {
			ret = r->err ? r->err : nlerr(ret);
			break;
		}
	}
	if (!ret)
		ret = r->err;
out:
	nlmsg_free(msg);
	nl_cb_put(cb);
	return ret;
}

static int dev_reply(struct nlattr **tb, struct json_object *out)
{
	struct json_object *o = json_object_new_object();
	uint8_t st;

	put_str(o, "device", tb[VFMEDIATE_A_DEV_NAME]);
	if (get_u8(tb[VFMEDIATE_A_DEV_STATE], &st))
		jadd_str(o, "state", st <= VFMEDIATE_DEV_OPEN ? dev_states[st]
							      : "unknown");
	put_bool(o, "configured", tb[VFMEDIATE_A_DEV_CONFIGURED]);
	if (tb[VFMEDIATE_A_MED_NAME])
		put_str(o, "mediator", tb[VFMEDIATE_A_MED_NAME]);
	else
		jadd_str(o, "mediator", "");
	if (tb[VFMEDIATE_A_MED_ARGS])
		put_str(o, "mediator_args", tb[VFMEDIATE_A_MED_ARGS]);
	else
		jadd_str(o, "mediator_args", "");
	put_u64(o, "generation", tb[VFMEDIATE_A_DEV_GENERATION]);
	put_bool(o, "pending", tb[VFMEDIATE_A_DEV_PENDING]);
	if (tb[VFMEDIATE_A_DEV_ERROR])
		put_str(o, "error", tb[VFMEDIATE_A_DEV_ERROR]);
	else
		jadd_str(o, "error", "");
	if (tb[VFMEDIATE_A_DEV_WARNING])
		put_str(o, "warning", tb[VFMEDIATE_A_DEV_WARNING]);
	else
		jadd_str(o, "warning", "");
	put_u64(o, "table_bytes", tb[VFMEDIATE_A_DEV_TABLE_BYTES]);
	put_u64(o, "resets", tb[VFMEDIATE_A_DEV_RESETS]);
	if (!get_u8(tb[VFMEDIATE_A_DEV_MIGRATION], &st))
		jadd_str(o, "migration", "none");
	else if (st < sizeof(mig_states) / sizeof(mig_states[0]))
		jadd_str(o, "migration", mig_states[st]);
	else
		jadd_str(o, "migration", "unknown");
	json_object_array_add(out, o);
	return 0;
}

/* BDF NULL: every device. Appends objects to the array OUT. */
int vnl_dev_get(struct vnl *h, const char *bdf, struct json_object *out)
{
	struct req r = { .fn = dev_reply, .out = out };

	return request(h, VFMEDIATE_CMD_DEV_GET, VFMEDIATE_A_DEV_NAME, bdf, &r);
}

static int med_reply(struct nlattr **tb, struct json_object *out)
{
	struct json_object *o = json_object_new_object();

	put_str(o, "name", tb[VFMEDIATE_A_MED_NAME]);
	put_str(o, "module", tb[VFMEDIATE_A_MED_MODULE]);
	put_u32(o, "users", tb[VFMEDIATE_A_MED_USERS]);
	jadd_bool(o, "loaded", true);
	json_object_array_add(out, o);
	return 0;
}

int vnl_med_get(struct vnl *h, struct json_object *out)
{
	struct req r = { .fn = med_reply, .out = out };

	return request(h, VFMEDIATE_CMD_MED_GET, VFMEDIATE_A_MED_NAME, NULL, &r);
}

static void put_counts(struct json_object *o, struct nlattr **tb)
{
	uint64_t v;

	jadd_u64(o, "hits", get_u64(tb[VFMEDIATE_A_HITS], &v) ? v : 0);
	jadd_u64(o, "bytes", get_u64(tb[VFMEDIATE_A_BYTES], &v) ? v : 0);
	jadd_u64(o, "refused", get_u64(tb[VFMEDIATE_A_REFUSED], &v) ? v : 0);
}

static struct json_object *rule_stats(struct nlattr *nest)
{
	struct nlattr *tb[VFMEDIATE_A_MAX + 1];
	struct json_object *o;
	uint64_t start, end;
	char range[48];

	if (nla_parse_nested(tb, VFMEDIATE_A_MAX, nest, NULL) < 0)
		return NULL;
	o = json_object_new_object();
	put_str(o, "name", tb[VFMEDIATE_A_RULE_NAME]);
	put_action(o, "action", tb[VFMEDIATE_A_RULE_ACTION]);
	put_access(o, tb[VFMEDIATE_A_RULE_ACCESS]);
	if (get_u64(tb[VFMEDIATE_A_RULE_START], &start) &&
	    get_u64(tb[VFMEDIATE_A_RULE_END], &end) && end > start) {
		snprintf(range, sizeof(range), "0x%" PRIx64 "-0x%" PRIx64,
			 start, end - 1);
		jadd_str(o, "range", range);
	}
	put_bool(o, "audit", tb[VFMEDIATE_A_RULE_AUDIT]);
	put_counts(o, tb);
	return o;
}

static struct json_object *action_stats(struct nlattr *nest)
{
	struct nlattr *tb[VFMEDIATE_A_MAX + 1];
	struct json_object *o;

	if (nla_parse_nested(tb, VFMEDIATE_A_MAX, nest, NULL) < 0)
		return NULL;
	o = json_object_new_object();
	put_action(o, "action", tb[VFMEDIATE_A_RULE_ACTION]);
	put_counts(o, tb);
	return o;
}

static struct json_object *region_stats(struct nlattr *nest)
{
	struct nlattr *tb[VFMEDIATE_A_MAX + 1], *a;
	struct json_object *o, *rules, *actions, *x;
	int rem;

	if (nla_parse_nested(tb, VFMEDIATE_A_MAX, nest, NULL) < 0)
		return NULL;
	o = json_object_new_object();
	put_str(o, "region", tb[VFMEDIATE_A_REGION_NAME]);
	put_u32(o, "index", tb[VFMEDIATE_A_REGION_INDEX]);
	actions = json_object_new_array();
	rules = json_object_new_array();
	nla_for_each_nested(a, nest, rem) {
		if (nla_type(a) == VFMEDIATE_A_ACTION_STATS) {
			x = action_stats(a);
			if (x)
				json_object_array_add(actions, x);
		} else if (nla_type(a) == VFMEDIATE_A_RULE) {
			x = rule_stats(a);
			if (x)
				json_object_array_add(rules, x);
		}
	}
	json_object_object_add(o, "actions", actions);
	json_object_object_add(o, "rules", rules);
	return o;
}

/* The object of device NAME in the array OUT, made when not there. */
static struct json_object *stats_dev(struct json_object *out, const char *name)
{
	struct json_object *o;
	size_t i;

	for (i = 0; i < json_object_array_length(out); i++) {
		o = json_object_array_get_idx(out, i);
		if (!strcmp(jstr(o, "device"), name))
			return o;
	}
	o = json_object_new_object();
	jadd_str(o, "device", name);
	json_object_object_add(o, "regions", json_object_new_array());
	json_object_array_add(out, o);
	return o;
}

/* Append the actions and rules of region R to its namesake in REGIONS. */
static void stats_merge(struct json_object *regions, struct json_object *r)
{
	struct json_object *o, *from, *to;
	static const char *const keys[] = { "actions", "rules" };
	size_t i, j, k;

	for (i = 0; i < json_object_array_length(regions); i++) {
		o = json_object_array_get_idx(regions, i);
		if (strcmp(jstr(o, "region"), jstr(r, "region")))
			continue;
		for (k = 0; k < 2; k++) {
			from = json_object_object_get(r, keys[k]);
			to = json_object_object_get(o, keys[k]);
			for (j = 0; j < json_object_array_length(from); j++)
				json_object_array_add(to, json_object_get(
					json_object_array_get_idx(from, j)));
		}
		json_object_put(r);
		return;
	}
	json_object_array_add(regions, r);
}

/*
 * A STATS_GET dump sends one message per region of a device, and a
 * region with many rules over several messages (the sums in the first):
 * merge them into one object per device, one per region. REGION may
 * repeat at the top level, which genlmsg_parse would fold into one:
 * walk the attributes ourselves.
 */
static int on_stats(struct nl_msg *msg, void *arg)
{
	struct nlattr *tb[VFMEDIATE_A_MAX + 1], *a;
	struct nlmsghdr *nlh = nlmsg_hdr(msg);
	struct json_object *dev, *regions, *r;
	struct req *q = arg;
	char name[32];
	int rem;

	if (genlmsg_parse(nlh, 0, tb, VFMEDIATE_A_MAX, NULL) < 0 ||
	    !tb[VFMEDIATE_A_DEV_NAME])
		return NL_SKIP;
	nla_strlcpy(name, tb[VFMEDIATE_A_DEV_NAME], sizeof(name));
	dev = stats_dev(q->out, name);
	put_u64(dev, "generation", tb[VFMEDIATE_A_DEV_GENERATION]);
	put_u64(dev, "resets", tb[VFMEDIATE_A_DEV_RESETS]);
	regions = json_object_object_get(dev, "regions");
	nla_for_each_attr(a, genlmsg_attrdata(nlmsg_data(nlh), 0),
			  genlmsg_attrlen(nlmsg_data(nlh), 0), rem) {
		if (nla_type(a) != VFMEDIATE_A_REGION)
			continue;
		r = region_stats(a);
		if (r)
			stats_merge(regions, r);
	}
	return NL_OK;
}

int vnl_stats_get(struct vnl *h, const char *bdf, struct json_object *out)
{
	struct nl_msg *msg = nlmsg_alloc();
	struct nl_cb *cb = nl_cb_alloc(NL_CB_DEFAULT);
	/* STATS_GET is a dump; a name in it narrows it to one device. */
	int flags = NLM_F_ACK | NLM_F_DUMP;
	struct req r = { .out = out };
	int ret = -ENOMEM;

	if (!msg || !cb)
		goto out;
	if (!genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, h->family, 0, flags,
			 VFMEDIATE_CMD_STATS_GET, VFMEDIATE_GENL_VERSION))
		goto out;
	if (bdf && nla_put_string(msg, VFMEDIATE_A_DEV_NAME, bdf) < 0)
		goto out;
	nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, on_stats, &r);
	nl_cb_set(cb, NL_CB_FINISH, NL_CB_CUSTOM, on_finish, &r);
	nl_cb_set(cb, NL_CB_ACK, NL_CB_CUSTOM, on_finish, &r);
	nl_cb_err(cb, NL_CB_CUSTOM, on_error, &r);
	ret = nl_send_auto(h->sk, msg);
	if (ret < 0) {
		ret = nlerr(ret);
		goto out;
	}
	ret = 0;
	while (!r.done) {
		ret = nl_recvmsgs(h->sk, cb);
		if (ret < 0) {
			ret = r.err ? r.err : nlerr(ret);
			break;
		}
	}
	if (!ret)
		ret = r.err;
	/* A configured device without rules sends nothing: show it empty. */
	if (!ret && bdf)
		stats_dev(out, bdf);
out:
	nlmsg_free(msg);
	nl_cb_put(cb);
	return ret;
}

/* An EVENT message as one object; keys as vfmediate(8) documents. */
static struct json_object *event_obj(struct nlattr **tb)
{
	struct json_object *o = json_object_new_object();
	uint32_t ev = 0;
	uint8_t w;

	get_u32(tb[VFMEDIATE_A_EVENT], &ev);
	jadd_str(o, "event", ev <= VFMEDIATE_EVENT_MAX ? event_names[ev]
						       : "unknown");
	put_str(o, "device", tb[VFMEDIATE_A_DEV_NAME]);
	put_u64(o, "generation", tb[VFMEDIATE_A_DEV_GENERATION]);
	put_str(o, "mediator", tb[VFMEDIATE_A_MED_NAME]);
	put_u32(o, "errno", tb[VFMEDIATE_A_ERRNO]);
	put_str(o, "error", tb[VFMEDIATE_A_DEV_ERROR]);
	put_str(o, "region", tb[VFMEDIATE_A_REGION_NAME]);
	put_u32(o, "region_index", tb[VFMEDIATE_A_REGION_INDEX]);
	put_u64(o, "offset", tb[VFMEDIATE_A_OFFSET]);
	put_u32(o, "size", tb[VFMEDIATE_A_SIZE]);
	if (get_u8(tb[VFMEDIATE_A_WRITE], &w))
		jadd_str(o, "direction", w ? "write" : "read");
	put_str(o, "rule", tb[VFMEDIATE_A_RULE_NAME]);
	put_action(o, "action", tb[VFMEDIATE_A_RULE_ACTION]);
	put_u32(o, "pid", tb[VFMEDIATE_A_PID]);
	put_str(o, "comm", tb[VFMEDIATE_A_COMM]);
	put_u64(o, "suppressed", tb[VFMEDIATE_A_SUPPRESSED]);
	return o;
}

struct mon {
	void (*fn)(struct json_object *ev, void *arg);
	void *arg;
	long left;
};

static int on_event(struct nl_msg *msg, void *arg)
{
	struct nlattr *tb[VFMEDIATE_A_MAX + 1];
	struct genlmsghdr *gh = nlmsg_data(nlmsg_hdr(msg));
	struct json_object *o;
	struct mon *m = arg;

	if (gh->cmd != VFMEDIATE_CMD_EVENT || parse_msg(msg, tb) < 0)
		return NL_SKIP;
	o = event_obj(tb);
	m->fn(o, m->arg);
	json_object_put(o);
	if (m->left > 0 && --m->left == 0)
		return NL_STOP;
	return NL_OK;
}

/* Subscribe to the monitor group; COUNT events (0: until killed). */
int vnl_monitor(struct vnl *h, long count,
	       void (*fn)(struct json_object *ev, void *arg), void *arg)
{
	struct mon m = { .fn = fn, .arg = arg, .left = count };
	int grp, ret;

	grp = genl_ctrl_resolve_grp(h->sk, VFMEDIATE_GENL_NAME,
				    VFMEDIATE_GENL_MCGRP_MONITOR);
	if (grp < 0)
		return nlerr(grp);
	ret = nl_socket_add_membership(h->sk, grp);
	if (ret < 0)
		return nlerr(ret);
	nl_socket_disable_seq_check(h->sk);
	nl_socket_modify_cb(h->sk, NL_CB_VALID, NL_CB_CUSTOM, on_event, &m);
	for (;;) {
		ret = nl_recvmsgs_default(h->sk);
		if (m.left == 0 && count > 0)
			return 0;
		if (ret < 0 && ret != -NLE_INTR && ret != -NLE_AGAIN)
			return nlerr(ret);
	}
}
