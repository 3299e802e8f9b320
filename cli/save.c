// SPDX-License-Identifier: GPL-2.0
/*
 * save and restore: the whole configfs tree as one JSON document (the
 * format is in vfmediate(8), SAVE FORMAT), like nvmetcli's.
 *
 * restore is all or nothing. It parses and validates the whole file
 * first (grammar, limits, ranges against the functions that exist,
 * mediators that can be found), then makes the tree equal to the file,
 * touching only the devices whose configuration differs. If a store is
 * refused all the same, it makes the tree equal to the snapshot it took
 * before, the same way, so the tree is as it was.
 */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vfm.h"

#define SAVE_FORMAT	"vfmediate-config"
#define SAVE_VERSION	1

static void add_rule_obj(struct json_object *rules, struct json_object *r)
{
	struct json_object *o = json_object_new_object();

	jadd_str(o, "name", jstr(r, "name"));
	jadd_str(o, "range", str_or(jstr(r, "range"), ""));
	jadd_str(o, "access", str_or(jstr(r, "access"), "rw"));
	jadd_str(o, "action", str_or(jstr(r, "action"), "deny"));
	jadd_bool(o, "audit", jbool(r, "audit"));
	json_object_array_add(rules, o);
}

/* One device's configuration in the save format. */
static struct json_object *save_device(const char *bdf)
{
	struct json_object *o = json_object_new_object(), *regions, *reg;
	struct json_object *all, *rules;
	char p[512], buf[512];
	size_t j;
	int i;

	jadd_str(o, "device", bdf);
	dev_path(p, sizeof(p), bdf, "mediator");
	jadd_str(o, "mediator", cfs_read(p, buf, sizeof(buf)) ? "" : buf);
	dev_path(p, sizeof(p), bdf, "mediator_args");
	jadd_str(o, "mediator_args", cfs_read(p, buf, sizeof(buf)) ? "" : buf);
	regions = json_object_new_array();
	all = cfs_rules(bdf);
	for (i = 0; i < VFM_NR_REGIONS; i++) {
		snprintf(p, sizeof(p), VFM_CFS_DEVICES "/%s/regions/%s/mmap",
			 bdf, vfm_regions[i]);
		if (cfs_read(p, buf, sizeof(buf)))
			snprintf(buf, sizeof(buf), "auto");
		rules = json_object_new_array();
		for (j = 0; j < json_object_array_length(all); j++) {
			struct json_object *r = json_object_array_get_idx(all, j);

			if (!strcmp(jstr(r, "region"), vfm_regions[i]))
				add_rule_obj(rules, r);
		}
		if (!strcmp(buf, "auto") && !json_object_array_length(rules)) {
			json_object_put(rules);
			continue;
		}
		reg = json_object_new_object();
		jadd_str(reg, "region", vfm_regions[i]);
		jadd_str(reg, "mmap", buf);
		json_object_object_add(reg, "rules", rules);
		json_object_array_add(regions, reg);
	}
	json_object_put(all);
	json_object_object_add(o, "regions", regions);
	return o;
}

static struct json_object *save_all(void)
{
	struct json_object *o = json_object_new_object(), *devs;
	char **names;
	int i, n;

	jadd_str(o, "format", SAVE_FORMAT);
	jadd_u64(o, "version", SAVE_VERSION);
	devs = json_object_new_array();
	names = cfs_list(VFM_CFS_DEVICES, &n);
	for (i = 0; i < n; i++)
		json_object_array_add(devs, save_device(names[i]));
	free_list(names, n);
	json_object_object_add(o, "devices", devs);
	return o;
}

static const int save_flags = JSON_C_TO_STRING_PRETTY |
			      JSON_C_TO_STRING_SPACED |
			      JSON_C_TO_STRING_NOSLASHESCAPE;

int do_save(int argc, char **argv)
{
	const char *file = NULL;
	struct json_object *o;
	char tmp[4096];
	FILE *f;
	int ret = EXIT_OK;

	if (argc > 1 && is_help(argv[1]))
		return cmd_help("save", "[FILE]");
	if (argc > 2)
		return usage_err("save", "too many arguments");
	if (argc == 2 && strcmp(argv[1], "-"))
		file = argv[1];
	if (cfs_need())
		return EXIT_FAIL;
	o = save_all();
	if (!file) {
		puts(json_object_to_json_string_ext(o, save_flags));
		json_object_put(o);
		return EXIT_OK;
	}
	/* A new file beside the old one, renamed over it when complete. */
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", file, (int)getpid());
	f = fopen(tmp, "w");
	if (!f) {
		err("save: %s: %s", tmp, strerror(errno));
		json_object_put(o);
		return EXIT_FAIL;
	}
	fprintf(f, "%s\n", json_object_to_json_string_ext(o, save_flags));
	if (fclose(f) || rename(tmp, file)) {
		err("save: %s: %s", file, strerror(errno));
		unlink(tmp);
		ret = EXIT_FAIL;
	}
	json_object_put(o);
	return ret;
}

/* -- validation --------------------------------------------------------- */

int cfg_bad(struct cfg_ctx *c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	err("%s: %s: %s%s%s", c->cmd, c->file, c->where,
	    *c->where ? ": " : "", msg);
	return -1;
}

/*
 * Only the keys given; each of the type given ('s' string, 'b' bool,
 * 'a' array, 'i' int, 'o' object, '*' any: the caller checks it).
 */
int cfg_check_keys(struct cfg_ctx *c, struct json_object *o, const char *what,
		      const char *const *keys, const char *types)
{
	int i;

	if (!json_object_is_type(o, json_type_object))
		return cfg_bad(c, "%s is not a JSON object", what);
	json_object_object_foreach(o, k, v) {
		for (i = 0; keys[i]; i++)
			if (!strcmp(k, keys[i]))
				break;
		if (!keys[i])
			return cfg_bad(c, "%s: unknown key \"%s\"", what, k);
		if ((types[i] == 's' && !json_object_is_type(v, json_type_string)) ||
		    (types[i] == 'b' && !json_object_is_type(v, json_type_boolean)) ||
		    (types[i] == 'a' && !json_object_is_type(v, json_type_array)) ||
		    (types[i] == 'i' && !json_object_is_type(v, json_type_int)) ||
		    (types[i] == 'o' && !json_object_is_type(v, json_type_object)))
			return cfg_bad(c, "%s: \"%s\" must be %s", what, k,
				   types[i] == 's' ? "a string" :
				   types[i] == 'b' ? "true or false" :
				   types[i] == 'a' ? "an array" :
				   types[i] == 'o' ? "an object" : "an integer");
	}
	return 0;
}

static const char *const rule_keys[] = {
	"name", "range", "access", "action", "audit", NULL
};
static const char *const region_keys[] = { "region", "mmap", "rules", NULL };
static const char *const dev_keys[] = {
	"device", "mediator", "mediator_args", "regions", NULL
};
static const char *const top_keys[] = {
	"format", "version", "devices", NULL
};

/* A rule, checked; appended to OUT in its canonical form. */
static int check_rule(struct cfg_ctx *c, const char *bdf, const char *region,
		      const char *med, struct json_object *r,
		      struct json_object *out)
{
	const char *name, *range, *access, *action, *why;
	struct json_object *o;
	uint64_t s, e;
	char buf[64], why2[160];
	size_t i;

	if (cfg_check_keys(c, r, "a rule", rule_keys, "ssssb"))
		return -1;
	name = jstr(r, "name");
	if (!name)
		return cfg_bad(c, "a rule has no \"name\"");
	snprintf(c->where, sizeof(c->where), "%s%s%s rule '%s'",
		 str_or(bdf, ""), bdf ? ": " : "", region, name);
	if (!valid_rule_name(name))
		return cfg_bad(c, "not a rule name (1 to %d of [A-Za-z0-9_.:-])",
			   RULE_NAME_MAX);
	for (i = 0; i < json_object_array_length(out); i++)
		if (!strcmp(jstr(json_object_array_get_idx(out, i), "name"), name))
			return cfg_bad(c, "given twice");
	range = str_or(jstr(r, "range"), "");
	access = str_or(jstr(r, "access"), "rw");
	action = str_or(jstr(r, "action"), "deny");
	if (*range) {
		if (parse_range(range, &s, &e, &why))
			return cfg_bad(c, "range '%s': %s", range, why);
		if (bdf && range_fits(bdf, region, s, e, why2, sizeof(why2)))
			return cfg_bad(c, "%s", why2);
		snprintf(buf, sizeof(buf), "0x%" PRIx64 "-0x%" PRIx64, s, e);
		range = buf;
	}
	if (!valid_access(access))
		return cfg_bad(c, "access '%s': not r, w or rw", access);
	if (action_index(action) < 0)
		return cfg_bad(c, "action '%s': not pass, trap, ro, deny or ignore",
			   action);
	if (!strcmp(action, "trap") && !*med)
		return cfg_bad(c, "action trap needs a mediator, and the device has none");
	o = json_object_new_object();
	jadd_str(o, "name", name);
	jadd_str(o, "range", range);
	jadd_str(o, "access", access);
	jadd_str(o, "action", action);
	jadd_bool(o, "audit", jbool(r, "audit"));
	json_object_array_add(out, o);
	return 0;
}

static int check_region(struct cfg_ctx *c, const char *bdf, const char *med,
			struct json_object *reg, struct json_object *out)
{
	struct json_object *rules, *o, *nr;
	const char *name, *mmap;
	size_t i;

	snprintf(c->where, sizeof(c->where), "%s", str_or(bdf, ""));
	if (cfg_check_keys(c, reg, "a region", region_keys, "ssa"))
		return -1;
	name = jstr(reg, "region");
	if (!name || region_index(name) < 0)
		return cfg_bad(c, "region '%s': not config, bar0 to bar5, rom or vga",
			   str_or(name, ""));
	for (i = 0; i < json_object_array_length(out); i++)
		if (!strcmp(jstr(json_object_array_get_idx(out, i), "region"), name))
			return cfg_bad(c, "region '%s' given twice", name);
	mmap = str_or(jstr(reg, "mmap"), "auto");
	if (strcmp(mmap, "auto") && strcmp(mmap, "off"))
		return cfg_bad(c, "%s mmap '%s': not auto or off", name, mmap);
	o = json_object_new_object();
	jadd_str(o, "region", name);
	jadd_str(o, "mmap", mmap);
	nr = json_object_new_array();
	json_object_object_add(o, "rules", nr);
	json_object_array_add(out, o);
	json_object_object_get_ex(reg, "rules", &rules);
	for (i = 0; rules && i < json_object_array_length(rules); i++)
		if (check_rule(c, bdf, name, med,
			       json_object_array_get_idx(rules, i), nr))
			return -1;
	return 0;
}

/*
 * The configuration keys of one device (mediator, mediator_args,
 * regions; the caller checked which keys D has) into O. BDF is the
 * function whose BARs the ranges must fit, or NULL.
 */
int cfg_check_config(struct cfg_ctx *c, const char *bdf, struct json_object *d,
		     struct json_object *o)
{
	struct json_object *regions, *nr;
	const char *med, *args;
	size_t i;

	med = str_or(jstr(d, "mediator"), "");
	args = str_or(jstr(d, "mediator_args"), "");
	if (*med && !valid_med_name(med))
		return cfg_bad(c, "mediator '%s': not a mediator name (1 to %d of [a-z0-9_-])",
			       med, MED_NAME_MAX);
	if (*med && !mediator_known(med))
		return cfg_bad(c, "mediator '%s': none is registered and no installed module provides it",
			       med);
	if (strlen(args) > MED_ARGS_MAX || strchr(args, '\n'))
		return cfg_bad(c, "mediator_args: longer than %d bytes or holds a newline",
			       MED_ARGS_MAX);
	if (*args && !*med)
		return cfg_bad(c, "mediator_args given without a mediator");
	jadd_str(o, "mediator", med);
	jadd_str(o, "mediator_args", args);
	nr = json_object_new_array();
	json_object_object_add(o, "regions", nr);
	json_object_object_get_ex(d, "regions", &regions);
	for (i = 0; regions && i < json_object_array_length(regions); i++)
		if (check_region(c, bdf, med,
				 json_object_array_get_idx(regions, i), nr))
			return -1;
	return 0;
}

static int check_device(struct cfg_ctx *c, struct json_object *d,
			struct json_object *out)
{
	struct json_object *o;
	const char *bdf;
	size_t i;

	*c->where = 0;
	if (cfg_check_keys(c, d, "a device", dev_keys, "sssa"))
		return -1;
	bdf = jstr(d, "device");
	if (!bdf || !valid_bdf(bdf))
		return cfg_bad(c, "device '%s': not a PCI address DDDD:BB:DD.F",
			       str_or(bdf, ""));
	snprintf(c->where, sizeof(c->where), "%s", bdf);
	for (i = 0; i < json_object_array_length(out); i++)
		if (!strcmp(jstr(json_object_array_get_idx(out, i), "device"), bdf))
			return cfg_bad(c, "given twice");
	o = json_object_new_object();
	jadd_str(o, "device", bdf);
	json_object_array_add(out, o);
	/* Regions in their fixed order, as save writes them: canonical(). */
	return cfg_check_config(c, bdf, d, o);
}

static int region_cmp(const void *a, const void *b)
{
	return region_index(jstr(*(struct json_object *const *)a, "region")) -
	       region_index(jstr(*(struct json_object *const *)b, "region"));
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(jstr(*(struct json_object *const *)a, "name"),
		      jstr(*(struct json_object *const *)b, "name"));
}

static int dev_cmp(const void *a, const void *b)
{
	return strcmp(jstr(*(struct json_object *const *)a, "device"),
		      jstr(*(struct json_object *const *)b, "device"));
}

/* The canonical form save writes: sorted, default regions dropped. */
static void canonical(struct json_object *devs)
{
	struct json_object *d, *regs, *r, *rules, *keep;
	size_t i, j;

	json_object_array_sort(devs, dev_cmp);
	for (i = 0; i < json_object_array_length(devs); i++) {
		d = json_object_array_get_idx(devs, i);
		regs = json_object_object_get(d, "regions");
		keep = json_object_new_array();
		for (j = 0; j < json_object_array_length(regs); j++) {
			r = json_object_array_get_idx(regs, j);
			rules = json_object_object_get(r, "rules");
			json_object_array_sort(rules, name_cmp);
			if (strcmp(jstr(r, "mmap"), "auto") ||
			    json_object_array_length(rules))
				json_object_array_add(keep, json_object_get(r));
		}
		json_object_array_sort(keep, region_cmp);
		json_object_object_add(d, "regions", keep);
	}
}

/* The file, checked whole; its devices in canonical form, or NULL. */
static struct json_object *load(const char *file)
{
	struct json_object *top, *devs = NULL, *out;
	struct cfg_ctx c = { .cmd = "restore", .file = file };
	const char *fmt;
	size_t i;

	top = json_object_from_file(file);
	if (!top) {
		if (access(file, R_OK))
			err("restore: %s: %s", file, strerror(errno));
		else
			err("restore: %s: not valid JSON: %s", file,
			    json_util_get_last_err());
		return NULL;
	}
	out = json_object_new_array();
	if (cfg_check_keys(&c, top, "the document", top_keys, "sia"))
		goto fail;
	fmt = jstr(top, "format");
	if (fmt && strcmp(fmt, SAVE_FORMAT)) {
		cfg_bad(&c, "format \"%s\": not \"" SAVE_FORMAT "\"", fmt);
		goto fail;
	}
	if (json_object_object_get_ex(top, "version", NULL) &&
	    jint(top, "version") != SAVE_VERSION) {
		cfg_bad(&c, "version %" PRId64 ": this vfmediate reads version %d",
		    jint(top, "version"), SAVE_VERSION);
		goto fail;
	}
	if (!json_object_object_get_ex(top, "devices", &devs)) {
		cfg_bad(&c, "no \"devices\" array");
		goto fail;
	}
	for (i = 0; i < json_object_array_length(devs); i++)
		if (check_device(&c, json_object_array_get_idx(devs, i), out))
			goto fail;
	json_object_put(top);
	canonical(out);
	return out;
fail:
	json_object_put(top);
	json_object_put(out);
	return NULL;
}

/* -- applying ------------------------------------------------------------ */

static int store(const char *path, const char *bdf, const char *what,
		 const char *attr, const char *value)
{
	int ret = cfs_write(path, value);

	if (ret)
		report_write(bdf, what, attr, value, ret);
	return ret;
}

static int apply_rule(const char *bdf, const char *region,
		      struct json_object *r)
{
	const char *name = jstr(r, "name");
	char p[512], what[128];
	int ret;

	snprintf(what, sizeof(what), "%s rule '%s'", region, name);
	rule_path(p, sizeof(p), bdf, region, name, NULL);
	ret = cfs_mkdir(p);
	if (ret) {
		report_write(bdf, what, "mkdir", NULL, ret);
		return ret;
	}
	if (*jstr(r, "range")) {
		rule_path(p, sizeof(p), bdf, region, name, "range");
		ret = store(p, bdf, what, "range", jstr(r, "range"));
		if (ret)
			return ret;
	}
	rule_path(p, sizeof(p), bdf, region, name, "access");
	ret = store(p, bdf, what, "access", jstr(r, "access"));
	if (ret)
		return ret;
	rule_path(p, sizeof(p), bdf, region, name, "audit");
	ret = store(p, bdf, what, "audit", jbool(r, "audit") ? "1" : "0");
	if (ret)
		return ret;
	rule_path(p, sizeof(p), bdf, region, name, "action");
	return store(p, bdf, what, "action", jstr(r, "action"));
}

static int apply_device(struct json_object *d)
{
	const char *bdf = jstr(d, "device");
	struct json_object *regs, *r, *rules;
	char p[512];
	size_t i, j;
	int ret;

	dev_path(p, sizeof(p), bdf, NULL);
	ret = cfs_mkdir(p);
	if (ret)
		return report_write(bdf, NULL, "mkdir", NULL, ret), ret;
	if (*jstr(d, "mediator")) {
		dev_path(p, sizeof(p), bdf, "mediator");
		ret = store(p, bdf, NULL, "mediator", jstr(d, "mediator"));
		if (ret)
			return ret;
	}
	if (*jstr(d, "mediator_args")) {
		dev_path(p, sizeof(p), bdf, "mediator_args");
		ret = store(p, bdf, NULL, "mediator_args",
			    jstr(d, "mediator_args"));
		if (ret)
			return ret;
	}
	regs = json_object_object_get(d, "regions");
	for (i = 0; i < json_object_array_length(regs); i++) {
		r = json_object_array_get_idx(regs, i);
		if (strcmp(jstr(r, "mmap"), "auto")) {
			snprintf(p, sizeof(p), VFM_CFS_DEVICES "/%s/regions/%s/mmap",
				 bdf, jstr(r, "region"));
			ret = store(p, bdf, jstr(r, "region"), "mmap",
				    jstr(r, "mmap"));
			if (ret)
				return ret;
		}
		rules = json_object_object_get(r, "rules");
		for (j = 0; j < json_object_array_length(rules); j++) {
			ret = apply_rule(bdf, jstr(r, "region"),
					 json_object_array_get_idx(rules, j));
			if (ret)
				return ret;
		}
	}
	return 0;
}

static struct json_object *find_dev(struct json_object *devs, const char *bdf)
{
	size_t i;

	for (i = 0; i < json_object_array_length(devs); i++) {
		struct json_object *d = json_object_array_get_idx(devs, i);

		if (!strcmp(jstr(d, "device"), bdf))
			return d;
	}
	return NULL;
}

/*
 * Make the tree hold exactly the devices of WANT: a device whose saved
 * form equals its wanted form is left alone (an open device does not see
 * a pointless change), any other is removed and made again.
 */
static int converge(struct json_object *want, bool quiet)
{
	struct json_object *top = save_all(), *d, *w;
	struct json_object *now = json_object_object_get(top, "devices");
	size_t i;
	int ret = 0;

	for (i = 0; i < json_object_array_length(now); i++) {
		d = json_object_array_get_idx(now, i);
		w = find_dev(want, jstr(d, "device"));
		if (w && json_object_equal(w, d))
			continue;
		ret = dev_purge(jstr(d, "device"));
		if (ret) {
			if (!quiet)
				report_write(jstr(d, "device"), NULL, "rmdir",
					     NULL, ret);
			goto out;
		}
	}
	for (i = 0; i < json_object_array_length(want); i++) {
		w = json_object_array_get_idx(want, i);
		d = find_dev(now, jstr(w, "device"));
		if (d && json_object_equal(w, d))
			continue;
		ret = apply_device(w);
		if (ret)
			goto out;
	}
out:
	json_object_put(top);
	return ret;
}

/* -- one device, for udev-attach ------------------------------------------ */

/* BDF's configuration in the save format, or NULL when it has none. */
struct json_object *cfg_saved(const char *bdf)
{
	return dev_configured(bdf) ? save_device(bdf) : NULL;
}

/* What cfg_check_config() made, in the form save writes. */
void cfg_canonical(struct json_object *dev)
{
	struct json_object *a = json_object_new_array();

	json_object_array_add(a, json_object_get(dev));
	canonical(a);
	json_object_put(a);
}

/* Make BDF's configuration WANT (NULL: none), as converge() does. */
static int converge_one(const char *bdf, struct json_object *want, bool quiet)
{
	struct json_object *now = cfg_saved(bdf);
	int ret = 0;

	if (now && want && json_object_equal(now, want))
		goto out;
	if (now) {
		ret = dev_purge(bdf);
		if (ret) {
			if (!quiet)
				report_write(bdf, NULL, "rmdir", NULL, ret);
			goto out;
		}
	}
	if (want)
		ret = apply_device(want);
out:
	json_object_put(now);
	return ret;
}

/*
 * restore for one device: make BDF's configuration WANT (a canonical
 * device object, or NULL for none), all or nothing.
 */
int cfg_apply(const char *cmd, const char *bdf, struct json_object *want)
{
	struct json_object *before = cfg_saved(bdf);
	int ret = converge_one(bdf, want, false);

	if (ret) {
		if (converge_one(bdf, before, true))
			err("%s: %s: rolling back failed too: the configuration "
			    "is partly written; compare it with vfmediate save",
			    cmd, bdf);
		else
			err("%s: %s: nothing configured, the configuration is "
			    "as it was", cmd, bdf);
	}
	json_object_put(before);
	return ret;
}

int do_restore(int argc, char **argv)
{
	struct json_object *want, *before, *snap;
	int ret;

	if (argc > 1 && is_help(argv[1]))
		return cmd_help("restore", "FILE");
	if (argc != 2)
		return usage_err("restore", argc < 2 ? "needs FILE"
						     : "too many arguments");
	if (cfs_need())
		return EXIT_FAIL;
	want = load(argv[1]);
	if (!want)
		return EXIT_FAIL;
	snap = save_all();
	before = json_object_object_get(snap, "devices");
	ret = converge(want, false);
	if (ret) {
		if (converge(before, true))
			err("restore: %s: rolling back failed too: the "
			    "configuration is partly restored; compare it "
			    "with vfmediate save", argv[1]);
		else
			err("restore: %s: nothing restored, the configuration "
			    "is as it was", argv[1]);
	}
	json_object_put(snap);
	json_object_put(want);
	return ret ? EXIT_FAIL : EXIT_OK;
}
