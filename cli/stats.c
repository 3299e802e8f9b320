// SPDX-License-Identifier: GPL-2.0
/*
 * stats (text, JSON, live rates, Prometheus exposition) and monitor.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vfm.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/*
 * Counters of BDF (NULL: every device) as an array of devices. Netlink
 * when the family is there; else the rule hit counters of configfs,
 * which have no byte or refusal counts.
 */
static int cfs_stats(const char *bdf, struct json_object *out)
{
	struct json_object *dev, *regions, *reg = NULL, *rules, *r;
	const char *last = "";
	char **devs = NULL;
	int i, n = 1;
	size_t j;

	if (cfs_need())
		return -ENOENT;
	if (bdf && !dev_configured(bdf))
		return -ENODEV;
	if (!bdf)
		devs = cfs_list(VFM_CFS_DEVICES, &n);
	for (i = 0; i < n; i++) {
		const char *d = bdf ? bdf : devs[i];

		dev = json_object_new_object();
		jadd_str(dev, "device", d);
		regions = json_object_new_array();
		rules = cfs_rules(d);
		last = "";
		for (j = 0; j < json_object_array_length(rules); j++) {
			r = json_object_array_get_idx(rules, j);
			if (strcmp(jstr(r, "region"), last)) {
				last = jstr(r, "region");
				reg = json_object_new_object();
				jadd_str(reg, "region", last);
				json_object_object_add(reg, "actions",
						       json_object_new_array());
				json_object_object_add(reg, "rules",
						       json_object_new_array());
				json_object_array_add(regions, reg);
			}
			json_object_object_del(r, "device");
			json_object_object_del(r, "region");
			json_object_array_add(json_object_object_get(reg, "rules"),
					      json_object_get(r));
		}
		json_object_put(rules);
		json_object_object_add(dev, "regions", regions);
		json_object_array_add(out, dev);
	}
	free_list(devs, bdf ? 0 : n);
	return 0;
}

static int get_stats(const char *bdf, struct json_object **outp)
{
	struct json_object *out = json_object_new_array();
	struct vnl *h;
	int ret;

	ret = vnl_open(&h);
	if (ret == -ENOENT) {
		ret = cfs_stats(bdf, out);
		if (ret == -ENODEV)
			err("%s: not configured", bdf);
		else if (ret)
			ret = -EEXIST;	/* cfs_need() told why */
	} else if (!ret) {
		ret = vnl_stats_get(h, bdf, out);
		vnl_close(h);
		if ((ret == -ENODEV || ret == -ENOENT) && bdf)
			err("%s: not configured (counters are kept per rule)",
			    bdf);
		else if (ret)
			err("stats: %s", vnl_why(ret));
	} else {
		err("stats: netlink: %s", vnl_why(ret));
	}
	if (ret) {
		json_object_put(out);
		return -1;
	}
	*outp = out;
	return 0;
}

static struct json_object *jarr(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (json_object_object_get_ex(o, key, &v) &&
	    json_object_is_type(v, json_type_array))
		return v;
	return NULL;
}

#define for_each_idx(i, a) \
	for (i = 0; (a) && i < json_object_array_length(a); i++)

static void counts_text(struct json_object *o)
{
	printf("hits %" PRId64, jint(o, "hits"));
	if (json_object_object_get_ex(o, "bytes", NULL))
		printf(" bytes %" PRId64 " refused %" PRId64, jint(o, "bytes"),
		       jint(o, "refused"));
	putchar('\n');
}

static void stats_text(struct json_object *devs)
{
	struct json_object *d, *regs, *r, *acts, *rules, *x;
	size_t i, j, k;

	for_each_idx(i, devs) {
		d = json_object_array_get_idx(devs, i);
		printf("%s:\n", jstr(d, "device"));
		regs = jarr(d, "regions");
		for_each_idx(j, regs) {
			r = json_object_array_get_idx(regs, j);
			printf("  %s:\n", jstr(r, "region"));
			acts = jarr(r, "actions");
			for_each_idx(k, acts) {
				x = json_object_array_get_idx(acts, k);
				printf("    action %-6s ", jstr(x, "action"));
				counts_text(x);
			}
			rules = jarr(r, "rules");
			for_each_idx(k, rules) {
				x = json_object_array_get_idx(rules, k);
				printf("    rule '%s' %s %s %s%s: ",
				       jstr(x, "name"),
				       str_or(jstr(x, "range"), "-"),
				       str_or(jstr(x, "access"), "-"),
				       str_or(jstr(x, "action"), "-"),
				       jbool(x, "audit") ? " audit" : "");
				counts_text(x);
			}
		}
	}
}

/* Prometheus text exposition format, version 0.0.4. */
static void prom_label(const char *k, const char *v, bool comma)
{
	printf("%s%s=\"", comma ? "," : "", k);
	for (; v && *v; v++) {
		if (*v == '\\' || *v == '"')
			printf("\\%c", *v);
		else if (*v == '\n')
			fputs("\\n", stdout);
		else
			putchar(*v);
	}
	putchar('"');
}

static const struct {
	const char *name, *key, *help;
	bool rule;
} prom_metrics[] = {
	{ "vfmediate_rule_hits_total", "hits", "Accesses that met the rule.", true },
	{ "vfmediate_rule_bytes_total", "bytes", "Bytes of the accesses that met the rule, inside it.", true },
	{ "vfmediate_rule_refused_total", "refused", "Accesses the rule refused.", true },
	{ "vfmediate_action_hits_total", "hits", "Accesses that met rules of the action, per region.", false },
	{ "vfmediate_action_bytes_total", "bytes", "Bytes of the accesses that met rules of the action, per region.", false },
	{ "vfmediate_action_refused_total", "refused", "Accesses refused by rules of the action, per region.", false },
};

static void prom_metric(struct json_object *devs, int m)
{
	struct json_object *d, *regs, *r, *list, *x;
	bool rule = prom_metrics[m].rule, head = false;
	size_t i, j, k;

	for_each_idx(i, devs) {
		d = json_object_array_get_idx(devs, i);
		regs = jarr(d, "regions");
		for_each_idx(j, regs) {
			r = json_object_array_get_idx(regs, j);
			list = jarr(r, rule ? "rules" : "actions");
			for_each_idx(k, list) {
				x = json_object_array_get_idx(list, k);
				if (!json_object_object_get_ex(x, prom_metrics[m].key, NULL))
					continue;
				if (!head) {
					printf("# HELP %s %s\n# TYPE %s counter\n",
					       prom_metrics[m].name,
					       prom_metrics[m].help,
					       prom_metrics[m].name);
					head = true;
				}
				printf("%s{", prom_metrics[m].name);
				prom_label("device", jstr(d, "device"), false);
				prom_label("region", jstr(r, "region"), true);
				if (rule)
					prom_label("rule", jstr(x, "name"), true);
				prom_label("action", jstr(x, "action"), true);
				printf("} %" PRId64 "\n", jint(x, prom_metrics[m].key));
			}
		}
	}
}

static void prom_devices(struct json_object *devs)
{
	struct json_object *d;
	bool head = false;
	size_t i;

	for_each_idx(i, devs) {
		d = json_object_array_get_idx(devs, i);
		if (!json_object_object_get_ex(d, "generation", NULL))
			continue;
		if (!head)
			printf("# HELP vfmediate_device_generation Generation of the running dispatch table, 0 for none.\n"
			       "# TYPE vfmediate_device_generation gauge\n");
		head = true;
		printf("vfmediate_device_generation{");
		prom_label("device", jstr(d, "device"), false);
		printf("} %" PRId64 "\n", jint(d, "generation"));
	}
	head = false;
	for_each_idx(i, devs) {
		d = json_object_array_get_idx(devs, i);
		if (!json_object_object_get_ex(d, "resets", NULL))
			continue;
		if (!head)
			printf("# HELP vfmediate_device_resets_total Resets of the function seen.\n"
			       "# TYPE vfmediate_device_resets_total counter\n");
		head = true;
		printf("vfmediate_device_resets_total{");
		prom_label("device", jstr(d, "device"), false);
		printf("} %" PRId64 "\n", jint(d, "resets"));
	}
}

static void prometheus(struct json_object *devs)
{
	size_t m;

	prom_devices(devs);
	for (m = 0; m < ARRAY_SIZE(prom_metrics); m++)
		prom_metric(devs, m);
}

/* A rule's counters in the previous sample, by device/region/name. */
static struct json_object *find_rule(struct json_object *devs,
				     const char *dev, const char *reg,
				     const char *name)
{
	struct json_object *d, *regs, *r, *rules, *x;
	size_t i, j, k;

	for_each_idx(i, devs) {
		d = json_object_array_get_idx(devs, i);
		if (strcmp(jstr(d, "device"), dev))
			continue;
		regs = jarr(d, "regions");
		for_each_idx(j, regs) {
			r = json_object_array_get_idx(regs, j);
			if (strcmp(jstr(r, "region"), reg))
				continue;
			rules = jarr(r, "rules");
			for_each_idx(k, rules) {
				x = json_object_array_get_idx(rules, k);
				if (!strcmp(jstr(x, "name"), name))
					return x;
			}
		}
	}
	return NULL;
}

static double rate(struct json_object *now, struct json_object *then,
		   const char *key, double dt)
{
	int64_t d = jint(now, key) - (then ? jint(then, key) : 0);

	return d < 0 ? 0 : d / dt;
}

static void print_rates(struct json_object *now, struct json_object *then,
			double dt, long tick)
{
	struct json_object *d, *regs, *r, *rules, *x, *o, *out, *prev;
	size_t i, j, k;

	out = json_object_new_array();
	for_each_idx(i, now) {
		d = json_object_array_get_idx(now, i);
		regs = jarr(d, "regions");
		for_each_idx(j, regs) {
			r = json_object_array_get_idx(regs, j);
			rules = jarr(r, "rules");
			for_each_idx(k, rules) {
				x = json_object_array_get_idx(rules, k);
				prev = find_rule(then, jstr(d, "device"),
						 jstr(r, "region"), jstr(x, "name"));
				o = json_object_new_object();
				jadd_str(o, "device", jstr(d, "device"));
				jadd_str(o, "region", jstr(r, "region"));
				jadd_str(o, "rule", jstr(x, "name"));
				jadd_str(o, "action", str_or(jstr(x, "action"), ""));
				json_object_object_add(o, "hits_per_second",
					json_object_new_double(rate(x, prev, "hits", dt)));
				json_object_object_add(o, "bytes_per_second",
					json_object_new_double(rate(x, prev, "bytes", dt)));
				json_object_object_add(o, "refused_per_second",
					json_object_new_double(rate(x, prev, "refused", dt)));
				json_object_array_add(out, o);
			}
		}
	}
	if (opt.json) {
		o = json_object_new_object();
		jadd_u64(o, "second", tick);
		json_object_object_add(o, "rates", out);
		print_json(o);
		json_object_put(o);
		return;
	}
	for_each_idx(i, out) {
		o = json_object_array_get_idx(out, i);
		printf("%ld %s %s rule '%s' %s: %.1f hits/s %.1f bytes/s %.1f refused/s\n",
		       tick, jstr(o, "device"), jstr(o, "region"),
		       jstr(o, "rule"), jstr(o, "action"),
		       json_object_get_double(json_object_object_get(o, "hits_per_second")),
		       json_object_get_double(json_object_object_get(o, "bytes_per_second")),
		       json_object_get_double(json_object_object_get(o, "refused_per_second")));
	}
	fflush(stdout);
	json_object_put(out);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int watch(const char *bdf, long secs)
{
	struct json_object *then, *now;
	double t0, t1;
	long i;

	if (get_stats(bdf, &then))
		return EXIT_FAIL;
	t0 = now_s();
	for (i = 1; i <= secs; i++) {
		sleep(1);
		if (get_stats(bdf, &now)) {
			json_object_put(then);
			return EXIT_FAIL;
		}
		t1 = now_s();
		print_rates(now, then, t1 - t0, i);
		json_object_put(then);
		then = now;
		t0 = t1;
	}
	json_object_put(then);
	return EXIT_OK;
}

static bool parse_long(const char *s, long *v)
{
	char *end;

	errno = 0;
	*v = strtol(s, &end, 10);
	return *s && !*end && !errno && *v > 0;
}

#define STATS_USAGE "[BDF] [-w SECONDS] | stats --prometheus [BDF]"

int do_stats(int argc, char **argv)
{
	const char *bdf = NULL;
	struct json_object *devs;
	bool prom = false;
	long secs = 0;
	int i;

	for (i = 1; i < argc; i++) {
		if (is_help(argv[i]))
			return cmd_help("stats", STATS_USAGE);
		if (!strcmp(argv[i], "--prometheus") || !strcmp(argv[i], "-P")) {
			prom = true;
		} else if (!strcmp(argv[i], "-w") || !strcmp(argv[i], "--watch")) {
			if (i + 1 >= argc || !parse_long(argv[i + 1], &secs))
				return usage_err("stats", "-w takes a number of "
						 "seconds above 0");
			i++;
		} else if (argv[i][0] == '-') {
			return usage_err("stats", "unknown option '%s'", argv[i]);
		} else if (bdf) {
			return usage_err("stats", "too many arguments");
		} else {
			if (check_bdf_arg("stats", argv[i]))
				return EXIT_USAGE;
			bdf = argv[i];
		}
	}
	if (prom && secs)
		return usage_err("stats", "-w and --prometheus do not go together");
	if (secs)
		return watch(bdf, secs);
	if (get_stats(bdf, &devs))
		return EXIT_FAIL;
	if (prom)
		prometheus(devs);
	else if (opt.json)
		print_json(devs);
	else
		stats_text(devs);
	json_object_put(devs);
	return EXIT_OK;
}

static void event_text(struct json_object *ev, void *arg)
{
	(void)arg;
	if (opt.json) {
		print_json(ev);
		return;
	}
	printf("%s %s", jstr(ev, "event"), str_or(jstr(ev, "device"), "-"));
	json_object_object_foreach(ev, k, v) {
		if (!strcmp(k, "event") || !strcmp(k, "device"))
			continue;
		if (json_object_is_type(v, json_type_string))
			printf(" %s '%s'", k, json_object_get_string(v));
		else
			printf(" %s %s", k, json_object_get_string(v));
	}
	putchar('\n');
	fflush(stdout);
}

int do_monitor(int argc, char **argv)
{
	struct vnl *h;
	long count = 0;
	int i, ret;

	for (i = 1; i < argc; i++) {
		if (is_help(argv[i]))
			return cmd_help("monitor", "[-j] [-c COUNT]");
		if (!strcmp(argv[i], "-j")) {
			opt.json = true;
		} else if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--count")) {
			if (i + 1 >= argc || !parse_long(argv[i + 1], &count))
				return usage_err("monitor", "-c takes a number "
						 "of events above 0");
			i++;
		} else {
			return usage_err("monitor", "unexpected '%s'", argv[i]);
		}
	}
	ret = vnl_open(&h);
	if (ret) {
		err("monitor: %s", vnl_why(ret));
		return EXIT_FAIL;
	}
	ret = vnl_monitor(h, count, event_text, NULL);
	vnl_close(h);
	if (ret) {
		if (ret == -EPERM || ret == -EACCES)
			err("monitor: subscribing to the monitor group needs CAP_NET_ADMIN");
		else
			err("monitor: %s", vnl_why(ret));
		return EXIT_FAIL;
	}
	return EXIT_OK;
}
