// SPDX-License-Identifier: GPL-2.0
/*
 * rule add | del | list | set: the rules of a region, one configfs
 * directory each. add writes range, access, audit and then action (a trap
 * is checked against the mediator last) and removes what it made when a
 * store is refused, so a rule is added whole or not at all.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vfm.h"

#define ADD_USAGE "add BDF REGION NAME RANGE ACTION [access r|w|rw] [audit on|off]"

/* Usage-level checks of the words naming a rule. */
static int check_rule_args(const char *cmd, const char *bdf,
			   const char *region, const char *name)
{
	if (check_bdf_arg(cmd, bdf))
		return EXIT_USAGE;
	if (region_index(region) < 0)
		return usage_err(cmd, "'%s' is not a region (config, bar0 to "
				 "bar5, rom, vga)", region);
	if (!valid_rule_name(name))
		return usage_err(cmd, "'%s' is not a rule name (1 to %d of "
				 "[A-Za-z0-9_.:-])", name, RULE_NAME_MAX);
	return 0;
}

/* A value for KEY, checked by grammar alone; audit on|off becomes 1|0. */
static int check_value(const char *cmd, const char *key, const char *v,
		       const char **out)
{
	uint64_t s, e;
	const char *why;
	int b;

	*out = v;
	if (!strcmp(key, "range")) {
		if (parse_range(v, &s, &e, &why))
			return usage_err(cmd, "range '%s': %s", v, why);
	} else if (!strcmp(key, "action")) {
		if (action_index(v) < 0)
			return usage_err(cmd, "'%s' is not an action (pass, "
					 "trap, ro, deny, ignore)", v);
	} else if (!strcmp(key, "access")) {
		if (!valid_access(v))
			return usage_err(cmd, "access '%s': not r, w or rw", v);
	} else if (!strcmp(key, "audit")) {
		b = parse_onoff(v);
		if (b < 0)
			return usage_err(cmd, "audit '%s': not on or off", v);
		*out = b ? "1" : "0";
	} else {
		return usage_err(cmd, "'%s' is not a rule attribute (range, "
				 "access, action, audit)", key);
	}
	return 0;
}

static bool has_mediator(const char *bdf)
{
	char p[256], buf[64] = "";

	dev_path(p, sizeof(p), bdf, "mediator");
	return !cfs_read(p, buf, sizeof(buf)) && *buf;
}

static int rule_store(const char *bdf, const char *region, const char *name,
		      const char *attr, const char *value)
{
	char p[512], what[128];
	int ret;

	rule_path(p, sizeof(p), bdf, region, name, attr);
	ret = cfs_write(p, value);
	if (!ret)
		return 0;
	snprintf(what, sizeof(what), "%s rule '%s'", region, name);
	report_write(bdf, what, attr, value, ret);
	return -1;
}

static int rule_add(int argc, char **argv)
{
	const char *bdf, *region, *name, *range, *action;
	const char *access = "rw", *audit = "0", *v;
	char p[512], what[128];
	bool made = false;
	int i, ret;

	if (argc > 1 && is_help(argv[1]))
		return cmd_help("rule", ADD_USAGE);
	if (argc < 6)
		return usage_err("rule add", "needs BDF REGION NAME RANGE ACTION");
	bdf = argv[1];
	region = argv[2];
	name = argv[3];
	range = argv[4];
	action = argv[5];
	ret = check_rule_args("rule add", bdf, region, name);
	if (ret)
		return ret;
	if (check_value("rule add", "range", range, &v) ||
	    check_value("rule add", "action", action, &v))
		return EXIT_USAGE;
	for (i = 6; i < argc; i += 2) {
		if (strcmp(argv[i], "access") && strcmp(argv[i], "audit"))
			return usage_err("rule add", "unexpected '%s' (access "
					 "r|w|rw or audit on|off)", argv[i]);
		if (i + 1 >= argc)
			return usage_err("rule add", "'%s' needs a value",
					 argv[i]);
		if (check_value("rule add", argv[i], argv[i + 1], &v))
			return EXIT_USAGE;
		if (!strcmp(argv[i], "access"))
			access = v;
		else
			audit = v;
	}
	if (cfs_need())
		return EXIT_FAIL;
	if (check_range(bdf, region, name, range))
		return EXIT_FAIL;
	if (!strcmp(action, "trap") && !has_mediator(bdf)) {
		err("%s: %s rule '%s': action trap needs a mediator: "
		    "vfmediate attach %s NAME first", bdf, region, name, bdf);
		return EXIT_FAIL;
	}
	if (!dev_configured(bdf)) {
		dev_path(p, sizeof(p), bdf, NULL);
		ret = cfs_mkdir(p);
		if (ret)
			return report_write(bdf, NULL, "mkdir", NULL, ret);
		made = true;
	}
	rule_path(p, sizeof(p), bdf, region, name, NULL);
	ret = cfs_mkdir(p);
	if (ret) {
		snprintf(what, sizeof(what), "%s rule '%s'", region, name);
		report_write(bdf, what, "mkdir", NULL, ret);
		goto undo_dev;
	}
	if (rule_store(bdf, region, name, "range", range) ||
	    rule_store(bdf, region, name, "access", access) ||
	    rule_store(bdf, region, name, "audit", audit) ||
	    rule_store(bdf, region, name, "action", action)) {
		cfs_rmdir(p);
		goto undo_dev;
	}
	return EXIT_OK;
undo_dev:
	if (made) {
		dev_path(p, sizeof(p), bdf, NULL);
		cfs_rmdir(p);
	}
	return EXIT_FAIL;
}

static int rule_del(int argc, char **argv)
{
	char p[512], what[128];
	int ret;

	if (argc > 1 && is_help(argv[1]))
		return cmd_help("rule", "del BDF REGION NAME");
	if (argc != 4)
		return usage_err("rule del", argc < 4 ? "needs BDF REGION NAME"
						      : "too many arguments");
	ret = check_rule_args("rule del", argv[1], argv[2], argv[3]);
	if (ret)
		return ret;
	if (cfs_need())
		return EXIT_FAIL;
	rule_path(p, sizeof(p), argv[1], argv[2], argv[3], NULL);
	ret = cfs_rmdir(p);
	if (ret == -ENOENT) {
		err("%s: %s rule '%s': no such rule", argv[1], argv[2], argv[3]);
		return EXIT_FAIL;
	}
	if (ret) {
		snprintf(what, sizeof(what), "%s rule '%s'", argv[2], argv[3]);
		return report_write(argv[1], what, "rmdir", NULL, ret);
	}
	return EXIT_OK;
}

static void list_text(struct json_object *rules)
{
	size_t i, n = json_object_array_length(rules);

	if (n)
		printf("%-13s %-6s %-20s %-23s %-6s %-6s %-5s %s\n", "DEVICE",
		       "REGION", "RULE", "RANGE", "ACCESS", "ACTION", "AUDIT",
		       "HITS");
	for (i = 0; i < n; i++) {
		struct json_object *r = json_object_array_get_idx(rules, i);
		const char *range = jstr(r, "range");

		printf("%-13s %-6s %-20s %-23s %-6s %-6s %-5s %lld\n",
		       jstr(r, "device"), jstr(r, "region"), jstr(r, "name"),
		       range && *range ? range : "-", str_or(jstr(r, "access"), "-"),
		       str_or(jstr(r, "action"), "-"),
		       jbool(r, "audit") ? "on" : "off",
		       (long long)jint(r, "hits"));
	}
}

static int rule_list(int argc, char **argv)
{
	struct json_object *all, *one;
	char **devs;
	int i, n;
	size_t j;

	if (argc > 1 && is_help(argv[1]))
		return cmd_help("rule", "list [BDF]");
	if (argc > 2)
		return usage_err("rule list", "too many arguments");
	if (argc == 2 && check_bdf_arg("rule list", argv[1]))
		return EXIT_USAGE;
	if (cfs_need())
		return EXIT_FAIL;
	if (argc == 2) {
		if (need_configured(argv[1]))
			return EXIT_FAIL;
		all = cfs_rules(argv[1]);
	} else {
		all = json_object_new_array();
		devs = cfs_list(VFM_CFS_DEVICES, &n);
		for (i = 0; i < n; i++) {
			one = cfs_rules(devs[i]);
			for (j = 0; j < json_object_array_length(one); j++)
				json_object_array_add(all, json_object_get(
					json_object_array_get_idx(one, j)));
			json_object_put(one);
		}
		free_list(devs, n);
	}
	if (opt.json)
		print_json(all);
	else
		list_text(all);
	json_object_put(all);
	return EXIT_OK;
}

static int rule_set(int argc, char **argv)
{
	const char *bdf, *region, *name, *key, *v;
	char p[512];
	int ret;

	if (argc > 1 && is_help(argv[1]))
		return cmd_help("rule", "set BDF REGION NAME KEY VALUE");
	if (argc != 6)
		return usage_err("rule set", argc < 6 ?
				 "needs BDF REGION NAME KEY VALUE" :
				 "too many arguments");
	bdf = argv[1];
	region = argv[2];
	name = argv[3];
	key = argv[4];
	ret = check_rule_args("rule set", bdf, region, name);
	if (ret)
		return ret;
	if (check_value("rule set", key, argv[5], &v))
		return EXIT_USAGE;
	if (cfs_need())
		return EXIT_FAIL;
	rule_path(p, sizeof(p), bdf, region, name, NULL);
	if (access(p, F_OK)) {
		err("%s: %s rule '%s': no such rule", bdf, region, name);
		return EXIT_FAIL;
	}
	if (!strcmp(key, "range") && check_range(bdf, region, name, v))
		return EXIT_FAIL;
	if (!strcmp(key, "action") && !strcmp(v, "trap") && !has_mediator(bdf)) {
		err("%s: %s rule '%s': action trap needs a mediator: "
		    "vfmediate attach %s NAME first", bdf, region, name, bdf);
		return EXIT_FAIL;
	}
	return rule_store(bdf, region, name, key, v) ? EXIT_FAIL : EXIT_OK;
}

static const struct cmd rule_cmds[] = {
	{ "add", rule_add, "" },
	{ "del", rule_del, "" },
	{ "delete", rule_del, "" },
	{ "list", rule_list, "" },
	{ "show", rule_list, "" },
	{ "set", rule_set, "" },
	{ NULL, NULL, NULL }
};

int do_rule(int argc, char **argv)
{
	if (argc < 2 || is_help(argv[1])) {
		fprintf(argc < 2 ? stderr : stdout,
		       "Usage: vfmediate [-j] [-p] rule " ADD_USAGE "\n"
		       "       vfmediate rule del BDF REGION NAME\n"
		       "       vfmediate [-j] [-p] rule list [BDF]\n"
		       "       vfmediate rule set BDF REGION NAME KEY VALUE\n"
		       "REGION: config bar0..bar5 rom vga; ACTION: pass trap ro deny ignore\n"
		       "RANGE: START-END (END inclusive) or START+LEN; KEY: range access action audit\n");
		return argc < 2 ? EXIT_USAGE : EXIT_OK;
	}
	return run_cmd(rule_cmds, "rule ", argc - 1, argv + 1);
}
