// SPDX-License-Identifier: GPL-2.0
/*
 * udev-attach BDF: what udev/60-vfmediate.rules runs for every PCI
 * function that appears; it acts on SR-IOV virtual functions only. It
 * reads the profiles,
 * /etc/vfmediate/profiles/NAME.json (another directory with --profiles or
 * $VFMEDIATE_PROFILES), in name order; the first whose "match" fits the
 * function gives its configuration, which is written to configfs as
 * restore writes one device (all or nothing), and the function is bound
 * to vfmediate as "vfmediate bind" does. No profile directory, no
 * profile, or no profile that fits: nothing is done, quietly.
 *
 * Every profile is checked whole, whether it fits or not: a profile
 * that is not right may have been meant for this function, and applying
 * another one instead would be wrong, so a wrong profile stops the
 * helper for every function (exit status 1, the file and the key named)
 * until it is mended. Messages go to standard error, which udev logs at
 * debug level only, and to syslog(3).
 *
 * The kernel announces a VF (pci_device_add()) a moment before it links
 * it to its PF (pci_iov_sysfs_link()), so udev may run the helper before
 * "physfn" exists. A function without the link whose vendor:device a
 * profile names is therefore given VF_LINK_WAIT_MS for the link to
 * appear; any other function without it is left alone at once.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "vfm.h"

#define PROFILES_DIR	"/etc/vfmediate/profiles"
#define PROFILES_ENV	"VFMEDIATE_PROFILES"
#define VF_INDEX_MAX	65535	/* TotalVFs is 16 bits wide */
#define VF_LINK_WAIT_MS	2000
#define VF_LINK_POLL_MS	10

static const char *const profile_keys[] = {
	"match", "mediator", "mediator_args", "regions", NULL
};
static const char *const match_keys[] = { "id", "pf", "vf", NULL };

/* The function udev named, as the profiles' "match" sees it. */
struct fn {
	const char *bdf;
	unsigned int vendor, device;
	char pf[64];	/* its PF's address; "" when it is not a VF */
	long vf;	/* its index under the PF (virtfnN); -1 when unknown */
	bool id_named;	/* a profile's match.id is its vendor:device */
};

static int read_id(const char *bdf, const char *attr, unsigned int *v)
{
	char p[256], buf[32], *end;
	unsigned long x;

	snprintf(p, sizeof(p), SYSFS_PCI "/devices/%s/%s", bdf, attr);
	if (cfs_read(p, buf, sizeof(buf)))
		return -1;
	errno = 0;
	x = strtoul(buf, &end, 16);
	if (errno || end == buf || *end || x > 0xffff)
		return -1;
	*v = x;
	return 0;
}

static int link_name(const char *path, char *buf, size_t len)
{
	char link[PATH_MAX], *s;
	ssize_t n = readlink(path, link, sizeof(link) - 1);

	if (n < 0)
		return -1;
	link[n] = 0;
	s = strrchr(link, '/');
	s = s ? s + 1 : link;
	if (strlen(s) >= len)
		return -1;
	strcpy(buf, s);
	return 0;
}

static int fn_read(struct fn *f, const char *bdf)
{
	char p[256], name[64], **ents;
	int i, n;

	f->bdf = bdf;
	f->vf = -1;
	f->id_named = false;
	*f->pf = 0;
	if (read_id(bdf, "vendor", &f->vendor) ||
	    read_id(bdf, "device", &f->device)) {
		err("udev-attach: %s: no such PCI function (not in "
		    SYSFS_PCI "/devices)", bdf);
		return -1;
	}
	snprintf(p, sizeof(p), SYSFS_PCI "/devices/%s/physfn", bdf);
	if (link_name(p, f->pf, sizeof(f->pf)))
		return 0;		/* not a VF */
	/* Its index: the PF's virtfnN link that leads to it. */
	snprintf(p, sizeof(p), SYSFS_PCI "/devices/%s", f->pf);
	ents = cfs_list(p, &n);
	for (i = 0; i < n; i++) {
		char *end;
		long k;

		if (strncmp(ents[i], "virtfn", 6) || !isdigit(ents[i][6]))
			continue;
		k = strtol(ents[i] + 6, &end, 10);
		if (*end)
			continue;
		snprintf(p, sizeof(p), SYSFS_PCI "/devices/%s/%s", f->pf,
			 ents[i]);
		if (!link_name(p, name, sizeof(name)) && !strcmp(name, bdf)) {
			f->vf = k;
			break;
		}
	}
	free_list(ents, n);
	return 0;
}

/* "vvvv:dddd", hex, as lspci -n prints it. */
static int parse_id(const char *s, unsigned int *v, unsigned int *d)
{
	int i;

	if (strlen(s) != 9 || s[4] != ':')
		return -1;
	for (i = 0; i < 9; i++)
		if (i != 4 && !isxdigit((unsigned char)s[i]))
			return -1;
	*v = strtoul(s, NULL, 16);
	*d = strtoul(s + 5, NULL, 16);
	return 0;
}

static bool vf_index(struct json_object *o, long *k)
{
	int64_t v;

	if (!json_object_is_type(o, json_type_int))
		return false;
	v = json_object_get_int64(o);
	if (v < 0 || v > VF_INDEX_MAX)
		return false;
	*k = v;
	return true;
}

/* Check "match" whole; *fits says whether it fits the function. */
static int check_match(struct cfg_ctx *c, struct json_object *m,
		       struct fn *f, bool *fits)
{
	struct json_object *id, *pf, *vf;
	unsigned int vendor, device;
	size_t i, n;
	bool any = false;
	long k;

	*c->where = 0;
	if (cfg_check_keys(c, m, "\"match\"", match_keys, "ss*"))
		return -1;
	*fits = true;
	if (!json_object_object_get_ex(m, "id", &id))
		return cfg_bad(c, "match: no \"id\" (the function's vendor:device, "
			       "hex, as lspci -n prints it)");
	if (parse_id(json_object_get_string(id), &vendor, &device))
		return cfg_bad(c, "match.id '%s': not vendor:device, four hex "
			       "digits each, as lspci -n prints it",
			       json_object_get_string(id));
	if (vendor != f->vendor || device != f->device)
		*fits = false;
	else
		f->id_named = true;
	if (!*f->pf)
		*fits = false;	/* not a VF (yet) */
	if (json_object_object_get_ex(m, "pf", &pf)) {
		if (!valid_bdf(json_object_get_string(pf)))
			return cfg_bad(c, "match.pf '%s': not a PCI address "
				       "DDDD:BB:DD.F (lower-case hex, as "
				       "lspci -D prints it)",
				       json_object_get_string(pf));
		if (strcmp(json_object_get_string(pf), f->pf))
			*fits = false;
	}
	if (!json_object_object_get_ex(m, "vf", &vf))
		return 0;
	if (json_object_is_type(vf, json_type_array)) {
		n = json_object_array_length(vf);
		if (!n)
			return cfg_bad(c, "match.vf: an empty list, which no VF "
				       "fits");
		for (i = 0; i < n; i++) {
			if (!vf_index(json_object_array_get_idx(vf, i), &k))
				return cfg_bad(c, "match.vf: item %zu is not a VF "
					       "index (an integer, 0 to %d)",
					       i, VF_INDEX_MAX);
			if (k == f->vf)
				any = true;
		}
	} else if (vf_index(vf, &k)) {
		any = k == f->vf;
	} else {
		return cfg_bad(c, "match.vf: not a VF index (an integer, 0 to %d) "
			       "or a list of them", VF_INDEX_MAX);
	}
	if (!any)
		*fits = false;
	return 0;
}

/* json-c's last error, without its newline. */
static const char *json_why(void)
{
	static char buf[256];
	const char *s = json_util_get_last_err();

	snprintf(buf, sizeof(buf), "%s", s ? s : "?");
	buf[strcspn(buf, "\n")] = 0;
	return buf;
}

/*
 * One profile, checked whole. When it fits and nothing before it did,
 * *want is its configuration for the function, in canonical form.
 */
static int check_profile(const char *file, struct fn *f,
			 struct json_object **want)
{
	struct cfg_ctx c = { .cmd = "udev-attach", .file = file };
	struct json_object *top, *m, *o;
	bool fits = false;
	int ret = -1;

	top = json_object_from_file(file);
	if (!top) {
		if (access(file, R_OK))
			err("udev-attach: %s: %s", file, strerror(errno));
		else
			err("udev-attach: %s: not valid JSON: %s", file,
			    json_why());
		return -1;
	}
	if (cfg_check_keys(&c, top, "the profile", profile_keys, "ossa"))
		goto out;
	if (!json_object_object_get_ex(top, "match", &m)) {
		cfg_bad(&c, "no \"match\" (which functions the profile is for)");
		goto out;
	}
	if (check_match(&c, m, f, &fits))
		goto out;
	fits = fits && !*want;
	*c.where = 0;
	o = json_object_new_object();
	if (fits)
		jadd_str(o, "device", f->bdf);
	/* Ranges are checked against the BARs of the function it is for. */
	if (cfg_check_config(&c, fits ? f->bdf : NULL, top, o)) {
		json_object_put(o);
		goto out;
	}
	if (fits) {
		cfg_canonical(o);
		*want = o;
	} else {
		json_object_put(o);
	}
	ret = 0;
out:
	json_object_put(top);
	return ret;
}

/* Every profile checked; *want is the first that fits, from *from. */
static int check_profiles(char **files, int n, struct fn *f,
			  struct json_object **want, const char **from)
{
	int i;

	for (i = 0; i < n; i++) {
		struct json_object *had = *want;

		if (check_profile(files[i], f, want))
			return -1;
		if (!had && *want)
			*from = files[i];
	}
	return 0;
}

/* True once @bdf has its physfn link, false after VF_LINK_WAIT_MS. */
static bool wait_physfn(const char *bdf)
{
	char p[256];
	int t;

	snprintf(p, sizeof(p), SYSFS_PCI "/devices/%s/physfn", bdf);
	for (t = 0; t < VF_LINK_WAIT_MS; t += VF_LINK_POLL_MS) {
		if (!access(p, F_OK))
			return true;
		usleep(VF_LINK_POLL_MS * 1000);
	}
	return !access(p, F_OK);
}

/* The profiles, NAME.json in name order; NULL with *n 0 when none. */
static char **profiles(const char *dir, int *n, int *e)
{
	char **all, **l, p[PATH_MAX];
	struct stat st;
	size_t len;
	int i, k = 0, m;

	*n = 0;
	*e = 0;
	if (stat(dir, &st)) {
		*e = errno;
		return NULL;
	}
	if (!S_ISDIR(st.st_mode)) {
		*e = ENOTDIR;
		return NULL;
	}
	if (access(dir, R_OK | X_OK)) {
		*e = errno;
		return NULL;
	}
	all = cfs_list(dir, &m);
	l = calloc(m + 1, sizeof(*l));
	for (i = 0; l && i < m; i++) {
		len = strlen(all[i]);
		if (all[i][0] == '.' || len < 6 ||
		    strcmp(all[i] + len - 5, ".json"))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, all[i]);
		if (stat(p, &st) || S_ISDIR(st.st_mode))
			continue;	/* a dangling link, a directory */
		l[k++] = strdup(p);
	}
	free_list(all, m);
	*n = k;
	return l;
}

int do_udev_attach(int argc, char **argv)
{
	static const char use[] = "[--profiles DIR] BDF";
	const char *dir = NULL, *bdf, *from = NULL;
	struct json_object *want = NULL, *before;
	char **files;
	struct fn f;
	int i, n, e, ret = EXIT_FAIL;

	if (argc > 1 && is_help(argv[1]))
		return cmd_help("udev-attach", use);
	for (i = 1; i < argc && !strcmp(argv[i], "--profiles"); i += 2) {
		if (i + 1 >= argc)
			return usage_err("udev-attach", "--profiles needs DIR");
		dir = argv[i + 1];
	}
	if (i >= argc)
		return usage_err("udev-attach", "needs BDF");
	if (i + 1 < argc)
		return usage_err("udev-attach", "too many arguments");
	bdf = argv[i];
	if (check_bdf_arg("udev-attach", bdf))
		return EXIT_USAGE;
	if (!dir)
		dir = getenv(PROFILES_ENV);
	if (!dir || !*dir)
		dir = PROFILES_DIR;

	opt.syslog = true;
	openlog("vfmediate", LOG_PID, LOG_DAEMON);
	files = profiles(dir, &n, &e);
	if (e == ENOENT)
		return EXIT_OK;		/* no profiles here: nothing to do */
	if (e) {
		err("udev-attach: %s: %s", dir, strerror(e));
		return EXIT_FAIL;
	}
	if (!n) {
		free_list(files, n);
		return EXIT_OK;
	}
	if (fn_read(&f, bdf) || check_profiles(files, n, &f, &want, &from))
		goto out;
	if (!*f.pf && f.id_named && wait_physfn(bdf) &&
	    (fn_read(&f, bdf) || check_profiles(files, n, &f, &want, &from)))
		goto out;
	if (!want) {
		/* No profile is for this function, or it is not a VF. */
		ret = EXIT_OK;
		goto out;
	}
	load_driver();
	if (cfs_need())
		goto out;
	before = cfg_saved(bdf);
	if (cfg_apply("udev-attach", bdf, want)) {
		err("udev-attach: %s: profile %s not applied", bdf, from);
		json_object_put(before);
		goto out;
	}
	if (dev_bind(bdf)) {
		/* Leave the configuration as it was: all or nothing. */
		if (cfg_apply("udev-attach", bdf, before))
			err("udev-attach: %s: not bound, and the configuration "
			    "of profile %s could not be taken back", bdf, from);
		else
			err("udev-attach: %s: not bound; the configuration is "
			    "as it was before profile %s", bdf, from);
		json_object_put(before);
		goto out;
	}
	json_object_put(before);
	printf("%s: configured from %s and bound to vfmediate\n", bdf, from);
	syslog(LOG_INFO, "%s: configured from %s and bound to vfmediate", bdf,
	       from);
	ret = EXIT_OK;
out:
	json_object_put(want);
	free_list(files, n);
	return ret;
}
