// SPDX-License-Identifier: GPL-2.0
/*
 * Devices: show, mediators, attach, detach, bind, unbind.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vfm.h"

/* Host drivers a group peer may have while we bind (as VFIO requires). */
static const char *const group_ok[] = {
	"vfio-pci", "vfmediate", "pcieport", NULL
};

static const char *yesno(bool b)
{
	return b ? "yes" : "no";
}

static void show_text(struct json_object *devs)
{
	size_t i, n = json_object_array_length(devs);

	for (i = 0; i < n; i++) {
		struct json_object *d = json_object_array_get_idx(devs, i);
		const char *med = jstr(d, "mediator");
		const char *args = jstr(d, "mediator_args");
		const char *e = jstr(d, "error"), *w = jstr(d, "warning");
		const char *m = jstr(d, "migration");

		printf("%s: state %s configured %s mediator %s",
		       jstr(d, "device"), str_or(jstr(d, "state"), "?"),
		       yesno(jbool(d, "configured")),
		       med && *med ? med : "-");
		if (args && *args)
			printf(" args '%s'", args);
		printf(" generation %lld pending %s",
		       (long long)jint(d, "generation"),
		       yesno(jbool(d, "pending")));
		if (m && *m && strcmp(m, "none"))
			printf(" migration %s", m);
		printf("\n");
		if (e && *e)
			printf("    error: %s\n", e);
		if (w && *w)
			printf("    warning: %s\n", w);
	}
}

/* Devices from configfs alone, when the netlink family is not there. */
static int show_cfs(const char *bdf, struct json_object *out)
{
	char **devs;
	int i, n;

	if (cfs_need())
		return EXIT_FAIL;
	if (bdf) {
		if (need_configured(bdf))
			return EXIT_FAIL;
		json_object_array_add(out, cfs_device(bdf));
		return EXIT_OK;
	}
	devs = cfs_list(VFM_CFS_DEVICES, &n);
	for (i = 0; i < n; i++)
		json_object_array_add(out, cfs_device(devs[i]));
	free_list(devs, n);
	return EXIT_OK;
}

int do_show(int argc, char **argv)
{
	struct json_object *out;
	struct vnl *h;
	const char *bdf = NULL;
	int ret;

	if (argc > 1 && is_help(argv[1]))
		return cmd_help("show", "[BDF]");
	if (argc > 2)
		return usage_err("show", "too many arguments");
	if (argc == 2) {
		if (check_bdf_arg("show", argv[1]))
			return EXIT_USAGE;
		bdf = argv[1];
	}
	out = json_object_new_array();
	ret = vnl_open(&h);
	if (ret == -ENOENT) {
		ret = show_cfs(bdf, out);
	} else if (ret) {
		err("show: netlink: %s", vnl_why(ret));
		ret = EXIT_FAIL;
	} else {
		ret = vnl_dev_get(h, bdf, out);
		vnl_close(h);
		if (ret) {
			if (bdf && (ret == -ENODEV || ret == -ENOENT))
				err("%s: not bound to vfmediate and not configured",
				    bdf);
			else
				err("show%s%s: %s", bdf ? " " : "",
				    bdf ? bdf : "", vnl_why(ret));
			ret = EXIT_FAIL;
		}
	}
	if (!ret) {
		if (opt.json)
			print_json(out);
		else
			show_text(out);
	}
	json_object_put(out);
	return ret;
}

static bool listed(struct json_object *meds, const char *name)
{
	size_t i, n = json_object_array_length(meds);

	for (i = 0; i < n; i++) {
		const char *s = jstr(json_object_array_get_idx(meds, i), "name");

		if (s && !strcmp(s, name))
			return true;
	}
	return false;
}

/*
 * Mediators installed but not loaded: "alias vfmediate-mediator:NAME
 * MODULE" lines of the running kernel's modules.alias.
 */
static void add_installed(struct json_object *meds, const char *only,
			  bool *found)
{
	static const char prefix[] = "alias vfmediate-mediator:";
	char path[PATH_MAX], line[512], name[256], mod[256];
	struct json_object *o;
	struct utsname u;
	FILE *f;

	if (uname(&u))
		return;
	snprintf(path, sizeof(path), "/lib/modules/%s/modules.alias",
		 u.release);
	f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, prefix, sizeof(prefix) - 1))
			continue;
		if (sscanf(line + sizeof(prefix) - 1, "%255s %255s", name,
			   mod) != 2)
			continue;
		if (only) {
			if (!strcmp(only, name))
				*found = true;
			continue;
		}
		if (listed(meds, name))
			continue;
		o = json_object_new_object();
		jadd_str(o, "name", name);
		jadd_str(o, "module", mod);
		jadd_u64(o, "users", 0);
		jadd_bool(o, "loaded", false);
		json_object_array_add(meds, o);
	}
	fclose(f);
}

static int cmp_name(const void *a, const void *b)
{
	const char *x = jstr(*(struct json_object *const *)a, "name");
	const char *y = jstr(*(struct json_object *const *)b, "name");

	return strcmp(x ? x : "", y ? y : "");
}

/* The hooks each registered mediator provides: configfs alone has them. */
static void add_ops(struct json_object *meds)
{
	char p[512], buf[256];
	size_t i;

	for (i = 0; i < json_object_array_length(meds); i++) {
		struct json_object *m = json_object_array_get_idx(meds, i);

		snprintf(p, sizeof(p), VFM_CFS_MEDS "/%s/ops",
			 str_or(jstr(m, "name"), ""));
		if (!cfs_read(p, buf, sizeof(buf)))
			jadd_str(m, "ops", buf);
	}
}

/* Registered mediators (netlink, else configfs) and installed ones. */
static struct json_object *mediator_list(void)
{
	struct json_object *meds = NULL;
	struct vnl *h;

	if (!vnl_open(&h)) {
		meds = json_object_new_array();
		if (vnl_med_get(h, meds)) {
			json_object_put(meds);
			meds = NULL;
		}
		vnl_close(h);
	}
	if (meds)
		add_ops(meds);
	else
		meds = cfs_mediators();
	add_installed(meds, NULL, NULL);
	json_object_array_sort(meds, cmp_name);
	return meds;
}

/* A mediator is registered or some installed module provides it. */
bool mediator_known(const char *name)
{
	char p[512];
	bool found = false;

	snprintf(p, sizeof(p), VFM_CFS_MEDS "/%s", name);
	if (!access(p, F_OK))
		return true;
	add_installed(NULL, name, &found);
	return found;
}

int do_mediators(int argc, char **argv)
{
	struct json_object *meds;
	size_t i, n;

	if (argc > 1 && is_help(argv[1]))
		return cmd_help("mediators", "");
	if (argc > 1)
		return usage_err("mediators", "too many arguments");
	meds = mediator_list();
	if (opt.json) {
		print_json(meds);
	} else {
		n = json_object_array_length(meds);
		if (n)
			printf("%-20s %-24s %6s  %s\n", "NAME", "MODULE",
			       "USERS", "STATE");
		for (i = 0; i < n; i++) {
			struct json_object *m = json_object_array_get_idx(meds, i);
			bool loaded = jbool(m, "loaded");

			printf("%-20s %-24s %6lld  %s\n", jstr(m, "name"),
			       str_or(jstr(m, "module"), "-"),
			       (long long)jint(m, "users"),
			       loaded ? "loaded" : "installed");
		}
	}
	json_object_put(meds);
	return EXIT_OK;
}

/* mkdir devices/BDF unless it is there; *made says whether we did. */
static int dev_ensure(const char *bdf, bool *made)
{
	char p[256];
	int ret;

	*made = false;
	if (dev_configured(bdf))
		return 0;
	dev_path(p, sizeof(p), bdf, NULL);
	ret = cfs_mkdir(p);
	if (ret) {
		report_write(bdf, NULL, "mkdir", NULL, ret);
		return -1;
	}
	*made = true;
	return 0;
}

static void dev_undo(const char *bdf, bool made)
{
	char p[256];

	if (!made)
		return;
	dev_path(p, sizeof(p), bdf, NULL);
	cfs_rmdir(p);
}

int do_attach(int argc, char **argv)
{
	const char *bdf, *name, *args = NULL;
	char p[512], old[64] = "", oldargs[MED_ARGS_MAX + 2] = "";
	bool made;
	int ret;

	if (argc > 1 && is_help(argv[1]))
		return cmd_help("attach", "BDF NAME [ARGS]");
	if (argc < 3)
		return usage_err("attach", "needs BDF and a mediator NAME");
	if (argc > 4)
		return usage_err("attach", "too many arguments (quote ARGS)");
	bdf = argv[1];
	name = argv[2];
	if (argc == 4)
		args = argv[3];
	if (check_bdf_arg("attach", bdf))
		return EXIT_USAGE;
	if (!valid_med_name(name))
		return usage_err("attach", "'%s' is not a mediator name "
				 "(1 to %d of [a-z0-9_-])", name, MED_NAME_MAX);
	if (args && (strlen(args) > MED_ARGS_MAX || strchr(args, '\n'))) {
		err("%s: mediator_args: longer than %d bytes or holds a newline",
		    bdf, MED_ARGS_MAX);
		return EXIT_FAIL;
	}
	if (cfs_need())
		return EXIT_FAIL;
	if (!mediator_known(name)) {
		err("%s: mediator '%s': none is registered and no installed "
		    "module provides it (vfmediate mediators lists them)", bdf,
		    name);
		return EXIT_FAIL;
	}
	if (dev_ensure(bdf, &made))
		return EXIT_FAIL;
	dev_path(p, sizeof(p), bdf, "mediator");
	cfs_read(p, old, sizeof(old));
	dev_path(p, sizeof(p), bdf, "mediator_args");
	cfs_read(p, oldargs, sizeof(oldargs));
	dev_path(p, sizeof(p), bdf, "mediator");
	ret = cfs_write(p, name);
	if (ret) {
		report_write(bdf, NULL, "mediator", name, ret);
		dev_undo(bdf, made);
		return EXIT_FAIL;
	}
	if (!args)
		return EXIT_OK;
	dev_path(p, sizeof(p), bdf, "mediator_args");
	ret = cfs_write(p, args);
	if (ret) {
		report_write(bdf, NULL, "mediator_args", args, ret);
		/* Put back the mediator we found: attach is all or nothing. */
		if (strcmp(old, name)) {
			dev_path(p, sizeof(p), bdf, "mediator");
			cfs_write(p, old);
		}
		dev_path(p, sizeof(p), bdf, "mediator_args");
		if (*old)
			cfs_write(p, oldargs);
		dev_undo(bdf, made);
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

/*
 * The one argument of detach and apply, a configured function's address:
 * EXIT_OK, or the exit status once what was wrong has been said.
 */
static int configured_bdf_arg(const char *cmd, int argc, char **argv)
{
	if (argc != 2)
		return usage_err(cmd, argc < 2 ? "needs BDF"
					       : "too many arguments");
	if (check_bdf_arg(cmd, argv[1]))
		return EXIT_USAGE;
	if (cfs_need() || need_configured(argv[1]))
		return EXIT_FAIL;
	return EXIT_OK;
}

int do_detach(int argc, char **argv)
{
	char p[512];
	int ret;

	if (argc > 1 && is_help(argv[1]))
		return cmd_help("detach", "BDF");
	ret = configured_bdf_arg("detach", argc, argv);
	if (ret != EXIT_OK)
		return ret;
	dev_path(p, sizeof(p), argv[1], "mediator");
	ret = cfs_write(p, "");
	if (ret)
		return report_write(argv[1], NULL, "mediator", "", ret);
	return EXIT_OK;
}

/* Take @flag out of @argv, wherever it is: was it there? */
static bool take_flag(int *argc, char **argv, const char *flag)
{
	int i;

	for (i = 1; i < *argc; i++) {
		if (strcmp(argv[i], flag))
			continue;
		memmove(&argv[i], &argv[i + 1], (*argc - i) * sizeof(*argv));
		(*argc)--;
		return true;
	}
	return false;
}

/*
 * Apply the staged configuration of an open device now (configfs
 * "apply"); on a device that is not open it applies at the next open.
 * With --revoke, pages the new rules take are zapped from the VFIO
 * user's mappings instead of refusing the change ("revoke").
 * A refusal leaves the running table as it was: say why, from "error".
 */
int do_apply(int argc, char **argv)
{
	char p[512], why[256];
	bool revoke;
	int ret;

	if (argc > 1 && is_help(argv[1]))
		return cmd_help("apply", "BDF [--revoke]");
	revoke = take_flag(&argc, argv, "--revoke");
	ret = configured_bdf_arg("apply", argc, argv);
	if (ret != EXIT_OK)
		return ret;
	dev_path(p, sizeof(p), argv[1], "apply");
	ret = cfs_write(p, revoke ? "revoke" : "1");
	if (!ret)
		return EXIT_OK;
	/* What the kernel refused, not who may write (EACCES, EPERM). */
	dev_path(p, sizeof(p), argv[1], "error");
	if (ret != -EACCES && ret != -EPERM &&
	    !cfs_read(p, why, sizeof(why)) && why[0]) {
		err("%s: apply: %s: %s", argv[1], strerror(-ret), why);
		if (ret == -EBUSY && !revoke && strstr(why, "revoke"))
			err("%s: apply: 'vfmediate apply %s --revoke' takes the pages from the user's mappings",
			    argv[1], argv[1]);
		return EXIT_FAIL;
	}
	return report_write(argv[1], NULL, "apply", NULL, ret);
}

/* sysfs helpers for bind/unbind */
static int pci_driver(const char *bdf, char *buf, size_t len)
{
	char p[256], link[PATH_MAX];
	ssize_t n;
	char *s;

	snprintf(p, sizeof(p), SYSFS_PCI "/devices/%s/driver", bdf);
	n = readlink(p, link, sizeof(link) - 1);
	if (n < 0) {
		snprintf(buf, len, "none");
		return errno == ENOENT ? 0 : -errno;
	}
	link[n] = 0;
	s = strrchr(link, '/');
	s = s ? s + 1 : link;
	if (strlen(s) >= len)
		return -ENAMETOOLONG;
	strcpy(buf, s);
	return 0;
}

static bool pci_exists(const char *bdf)
{
	char p[256];

	snprintf(p, sizeof(p), SYSFS_PCI "/devices/%s", bdf);
	return !access(p, F_OK);
}

static int sysfs_write(const char *bdf, const char *file, const char *what,
		       const char *value)
{
	int ret = cfs_write(file, value);

	if (!ret)
		return 0;
	if (ret == -EACCES || ret == -EPERM)
		err("%s: %s: permission denied (binding needs root)", bdf, what);
	else
		err("%s: %s: %s", bdf, what, strerror(-ret));
	return -1;
}

static bool group_driver_ok(const char *drv)
{
	int i;

	if (!strcmp(drv, "none") || strstr(drv, "vfio"))
		return true;
	for (i = 0; group_ok[i]; i++)
		if (!strcmp(drv, group_ok[i]))
			return true;
	return false;
}

/* Refuse when a peer in the IOMMU group has a host driver; name them. */
static int check_group(const char *bdf)
{
	char p[256], drv[64], bad[1024] = "", link[PATH_MAX], *g;
	char **devs;
	int i, n, nbad = 0;
	ssize_t len;

	snprintf(p, sizeof(p), SYSFS_PCI "/devices/%s/iommu_group", bdf);
	len = readlink(p, link, sizeof(link) - 1);
	if (len < 0) {
		err("%s: has no IOMMU group: VFIO needs an IOMMU (intel_iommu=on or amd_iommu=on)",
		    bdf);
		return -1;
	}
	link[len] = 0;
	g = strrchr(link, '/');
	g = g ? g + 1 : link;
	snprintf(p, sizeof(p), SYSFS_PCI "/devices/%s/iommu_group/devices",
		 bdf);
	devs = cfs_list(p, &n);
	for (i = 0; i < n; i++) {
		if (!strcmp(devs[i], bdf))
			continue;
		pci_driver(devs[i], drv, sizeof(drv));
		if (group_driver_ok(drv))
			continue;
		snprintf(bad + strlen(bad), sizeof(bad) - strlen(bad),
			 "%s%s (%s)", nbad++ ? ", " : "", devs[i], drv);
	}
	free_list(devs, n);
	if (!nbad)
		return 0;
	err("%s: IOMMU group %s also holds %s bound to host drivers: %s; "
	    "unbind %s or bind %s to vfio-pci or vfmediate first", bdf, g,
	    nbad > 1 ? "functions" : "a function", bad,
	    nbad > 1 ? "them" : "it", nbad > 1 ? "them" : "it");
	return -1;
}

void load_driver(void)
{
	int st;
	pid_t pid;

	if (!access(SYSFS_PCI "/drivers/vfmediate", F_OK))
		return;
	pid = fork();
	if (pid == 0) {
		execlp("modprobe", "modprobe", "-q", "vfmediate", (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, &st, 0);
}

/* Bind BDF to vfmediate; 0, or -1 with the reason said. */
int dev_bind(const char *bdf)
{
	char drv[64], p[256];

	if (!pci_exists(bdf)) {
		err("%s: no such PCI function (not in " SYSFS_PCI "/devices)",
		    bdf);
		return -1;
	}
	pci_driver(bdf, drv, sizeof(drv));
	if (!strcmp(drv, "vfmediate"))
		return 0;
	if (check_group(bdf))
		return -1;
	load_driver();
	if (access(SYSFS_PCI "/drivers/vfmediate", F_OK)) {
		err("%s: the vfmediate driver is not loaded and modprobe "
		    "vfmediate failed", bdf);
		return -1;
	}
	snprintf(p, sizeof(p), SYSFS_PCI "/devices/%s/driver_override", bdf);
	if (sysfs_write(bdf, p, "driver_override", "vfmediate"))
		return -1;
	if (strcmp(drv, "none")) {
		snprintf(p, sizeof(p), SYSFS_PCI "/devices/%s/driver/unbind",
			 bdf);
		if (sysfs_write(bdf, p, "unbinding from its driver", bdf))
			return -1;
	}
	/* drivers_probe may fail with the probe's errno: check the result. */
	cfs_write(SYSFS_PCI "/drivers_probe", bdf);
	pci_driver(bdf, drv, sizeof(drv));
	if (strcmp(drv, "vfmediate")) {
		err("%s: vfmediate did not take the function (driver now: %s); "
		    "see the kernel log", bdf, drv);
		return -1;
	}
	return 0;
}

int do_bind(int argc, char **argv)
{
	if (argc > 1 && is_help(argv[1]))
		return cmd_help("bind", "BDF");
	if (argc != 2)
		return usage_err("bind", argc < 2 ? "needs BDF"
						  : "too many arguments");
	if (check_bdf_arg("bind", argv[1]))
		return EXIT_USAGE;
	return dev_bind(argv[1]) ? EXIT_FAIL : EXIT_OK;
}

int do_unbind(int argc, char **argv)
{
	const char *bdf;
	char drv[64], p[256];

	if (argc > 1 && is_help(argv[1]))
		return cmd_help("unbind", "BDF");
	if (argc != 2)
		return usage_err("unbind", argc < 2 ? "needs BDF"
						    : "too many arguments");
	bdf = argv[1];
	if (check_bdf_arg("unbind", bdf))
		return EXIT_USAGE;
	if (!pci_exists(bdf)) {
		err("%s: no such PCI function (not in " SYSFS_PCI "/devices)",
		    bdf);
		return EXIT_FAIL;
	}
	pci_driver(bdf, drv, sizeof(drv));
	if (strcmp(drv, "vfmediate")) {
		err("%s: not bound to vfmediate (driver: %s)", bdf, drv);
		return EXIT_FAIL;
	}
	snprintf(p, sizeof(p), SYSFS_PCI "/devices/%s/driver/unbind", bdf);
	if (sysfs_write(bdf, p, "unbinding from vfmediate", bdf))
		return EXIT_FAIL;
	snprintf(p, sizeof(p), SYSFS_PCI "/devices/%s/driver_override", bdf);
	if (sysfs_write(bdf, p, "clearing driver_override", ""))
		return EXIT_FAIL;
	/* Back to its default driver, as driverctl unset-override does. */
	cfs_write(SYSFS_PCI "/drivers_probe", bdf);
	return EXIT_OK;
}
