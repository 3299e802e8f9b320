// SPDX-License-Identifier: GPL-2.0
/*
 * The configfs tree, /sys/kernel/config/vfmediate: the one place the
 * configuration is written. Every store is one write(2) of the value and
 * a newline, as echo does; a refused store returns the kernel's errno,
 * which cfs_why() turns into words for the attribute concerned.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vfm.h"

bool cfs_present(void)
{
	struct stat st;

	return !stat(VFM_CFS_DEVICES, &st) && S_ISDIR(st.st_mode);
}

/* The tree must be there: say how to get it when it is not. */
int cfs_need(void)
{
	if (cfs_present())
		return 0;
	if (access("/sys/kernel/config", F_OK) || access("/sys/kernel/config/.", R_OK))
		err("configfs is not mounted on /sys/kernel/config "
		    "(mount -t configfs none /sys/kernel/config)");
	else
		err(VFM_CFS_ROOT " does not exist: the vfmediate module is not "
		    "loaded (modprobe vfmediate)");
	return -1;
}

/* The value without its trailing newline; -errno on failure. */
int cfs_read(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	if (n < 0) {
		n = -errno;
		close(fd);
		return n;
	}
	close(fd);
	buf[n] = 0;
	if (n && buf[n - 1] == '\n')
		buf[--n] = 0;
	return 0;
}

int cfs_write(const char *path, const char *value)
{
	size_t len = strlen(value);
	char *data = malloc(len + 2);
	ssize_t n;
	int fd, ret = 0;

	if (!data)
		return -ENOMEM;
	memcpy(data, value, len);
	data[len++] = '\n';
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
	} else {
		n = write(fd, data, len);
		if (n < 0)
			ret = -errno;
		else if ((size_t)n != len)
			ret = -EIO;
		close(fd);
	}
	free(data);
	return ret;
}

int cfs_mkdir(const char *path)
{
	return mkdir(path, 0755) ? -errno : 0;
}

int cfs_rmdir(const char *path)
{
	return rmdir(path) ? -errno : 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in a directory but . and .., sorted; NULL with *n 0 if none. */
char **cfs_list(const char *dir, int *n)
{
	char **l = NULL, **nl;
	struct dirent *de;
	DIR *d = opendir(dir);

	*n = 0;
	if (!d)
		return NULL;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		nl = realloc(l, (*n + 1) * sizeof(*l));
		if (!nl)
			break;
		l = nl;
		l[(*n)++] = strdup(de->d_name);
	}
	closedir(d);
	if (*n)
		qsort(l, *n, sizeof(*l), cmp_str);
	return l;
}

void free_list(char **l, int n)
{
	while (n-- > 0)
		free(l[n]);
	free(l);
}

int dev_path(char *buf, size_t len, const char *bdf, const char *attr)
{
	return snprintf(buf, len, VFM_CFS_DEVICES "/%s%s%s", bdf,
			attr ? "/" : "", attr ? attr : "");
}

int rule_path(char *buf, size_t len, const char *bdf, const char *region,
	      const char *rule, const char *attr)
{
	return snprintf(buf, len, VFM_CFS_DEVICES "/%s/regions/%s/rules%s%s%s%s",
			bdf, region, rule ? "/" : "", rule ? rule : "",
			attr ? "/" : "", attr ? attr : "");
}

bool dev_configured(const char *bdf)
{
	char p[256];
	struct stat st;

	dev_path(p, sizeof(p), bdf, NULL);
	return !stat(p, &st) && S_ISDIR(st.st_mode);
}

/* 0 when @bdf has a configfs directory; else says so and returns -1. */
int need_configured(const char *bdf)
{
	if (dev_configured(bdf))
		return 0;
	err("%s: not configured (no %s/%s)", bdf, VFM_CFS_DEVICES, bdf);
	return -1;
}

/* What a refused store of ATTR means, from the schema's error table. */
const char *cfs_why(const char *attr, int e)
{
	if (e < 0)
		e = -e;
	if (e == EACCES || e == EPERM)
		return "permission denied (changing the configuration needs root)";
	if (!strcmp(attr, "range")) {
		if (e == ERANGE)
			return "out of range: beyond the region the bound function has, or past the offset space";
		if (e == EINVAL)
			return "not a valid range (START-END or START+LEN)";
	} else if (!strcmp(attr, "action")) {
		if (e == ENOENT)
			return "trap needs a mediator: attach one first (vfmediate attach)";
		if (e == EINVAL)
			return "the attached mediator handles neither direction of this rule";
	} else if (!strcmp(attr, "access")) {
		if (e == EINVAL)
			return "not r, w or rw, or a direction the trap rule's mediator does not handle";
	} else if (!strcmp(attr, "mediator")) {
		if (e == ENOENT)
			return "no such mediator: none is registered and no "
			       "installed module provides it (see vfmediate mediators)";
		if (e == EBUSY)
			return "a trap rule of the device needs the mediator: delete the trap rules first";
		if (e == EINVAL)
			return "the mediator cannot take the device's trap rules";
	} else if (!strcmp(attr, "mediator_args")) {
		if (e == ENOENT)
			return "no mediator is attached";
		if (e == EINVAL || e == ERANGE)
			return "the mediator refused the arguments (see its documentation)";
	} else if (!strcmp(attr, "mkdir")) {
		if (e == EEXIST)
			return "it exists already";
		if (e == ENOSPC)
			return "the region already has 1024 rules, the most it may have";
		if (e == EINVAL)
			return "the kernel refused the name";
		if (e == ENOENT)
			return "its parent directory does not exist";
	} else if (!strcmp(attr, "rmdir")) {
		if (e == ENOTEMPTY)
			return "the device still has rules";
		if (e == ENOENT)
			return "it does not exist";
	}
	if (e == ENOENT)
		return "no such attribute or directory";
	return strerror(e);
}

int report_write(const char *bdf, const char *what, const char *attr,
		 const char *value, int e)
{
	const char *sep = what && *what ? ": " : "";

	if (value)
		err("%s: %s%s%s '%s': %s", bdf, what ? what : "", sep, attr,
		    value, cfs_why(attr, e));
	else
		err("%s: %s%s%s: %s", bdf, what ? what : "", sep, attr,
		    cfs_why(attr, e));
	return EXIT_FAIL;
}

/* Remove devices/BDF with all its rules; 0 or -errno. */
int dev_purge(const char *bdf)
{
	char p[512];
	char **rules;
	int i, j, n, ret;

	for (i = 0; i < VFM_NR_REGIONS; i++) {
		rule_path(p, sizeof(p), bdf, vfm_regions[i], NULL, NULL);
		rules = cfs_list(p, &n);
		for (j = 0; j < n; j++) {
			rule_path(p, sizeof(p), bdf, vfm_regions[i], rules[j],
				  NULL);
			ret = cfs_rmdir(p);
			if (ret && ret != -ENOENT) {
				free_list(rules, n);
				return ret;
			}
		}
		free_list(rules, n);
	}
	dev_path(p, sizeof(p), bdf, NULL);
	ret = cfs_rmdir(p);
	return ret == -ENOENT ? 0 : ret;
}

static void add_attr(struct json_object *o, const char *key, const char *path)
{
	char buf[4096];

	if (!cfs_read(path, buf, sizeof(buf)))
		jadd_str(o, key, buf);
}

static void add_u64_attr(struct json_object *o, const char *key,
			 const char *path)
{
	char buf[64];

	if (!cfs_read(path, buf, sizeof(buf)))
		jadd_u64(o, key, strtoull(buf, NULL, 0));
}

/*
 * One device as configfs tells it, with the keys of netlink's DEV_GET
 * (show falls back to this when the family is not there).
 */
struct json_object *cfs_device(const char *bdf)
{
	struct json_object *o = json_object_new_object();
	char p[512], buf[64];

	jadd_str(o, "device", bdf);
	dev_path(p, sizeof(p), bdf, "state");
	if (!cfs_read(p, buf, sizeof(buf)))
		jadd_str(o, "state", buf);
	jadd_bool(o, "configured", true);
	dev_path(p, sizeof(p), bdf, "mediator");
	add_attr(o, "mediator", p);
	dev_path(p, sizeof(p), bdf, "mediator_args");
	add_attr(o, "mediator_args", p);
	dev_path(p, sizeof(p), bdf, "generation");
	add_u64_attr(o, "generation", p);
	dev_path(p, sizeof(p), bdf, "pending");
	if (!cfs_read(p, buf, sizeof(buf)))
		jadd_bool(o, "pending", !strcmp(buf, "1"));
	dev_path(p, sizeof(p), bdf, "error");
	add_attr(o, "error", p);
	dev_path(p, sizeof(p), bdf, "warning");
	add_attr(o, "warning", p);
	dev_path(p, sizeof(p), bdf, "table_bytes");
	add_u64_attr(o, "table_bytes", p);
	dev_path(p, sizeof(p), bdf, "migration");
	add_attr(o, "migration", p);
	return o;
}

static struct json_object *cfs_rule(const char *bdf, const char *region,
				    const char *name)
{
	struct json_object *o = json_object_new_object();
	char p[512], buf[64];

	jadd_str(o, "device", bdf);
	jadd_str(o, "region", region);
	jadd_str(o, "name", name);
	rule_path(p, sizeof(p), bdf, region, name, "range");
	add_attr(o, "range", p);
	rule_path(p, sizeof(p), bdf, region, name, "access");
	add_attr(o, "access", p);
	rule_path(p, sizeof(p), bdf, region, name, "action");
	add_attr(o, "action", p);
	rule_path(p, sizeof(p), bdf, region, name, "audit");
	if (!cfs_read(p, buf, sizeof(buf)))
		jadd_bool(o, "audit", !strcmp(buf, "1"));
	rule_path(p, sizeof(p), bdf, region, name, "hits");
	add_u64_attr(o, "hits", p);
	return o;
}

/* Every rule of a device, regions in their fixed order, names sorted. */
struct json_object *cfs_rules(const char *bdf)
{
	struct json_object *a = json_object_new_array();
	char p[512];
	char **rules;
	int i, j, n;

	for (i = 0; i < VFM_NR_REGIONS; i++) {
		rule_path(p, sizeof(p), bdf, vfm_regions[i], NULL, NULL);
		rules = cfs_list(p, &n);
		for (j = 0; j < n; j++)
			json_object_array_add(a, cfs_rule(bdf, vfm_regions[i],
							  rules[j]));
		free_list(rules, n);
	}
	return a;
}

/* The registered mediators as configfs lists them. */
struct json_object *cfs_mediators(void)
{
	struct json_object *a = json_object_new_array(), *o;
	char **meds, p[512];
	int i, n;

	meds = cfs_list(VFM_CFS_MEDS, &n);
	for (i = 0; i < n; i++) {
		o = json_object_new_object();
		jadd_str(o, "name", meds[i]);
		snprintf(p, sizeof(p), VFM_CFS_MEDS "/%s/module", meds[i]);
		add_attr(o, "module", p);
		snprintf(p, sizeof(p), VFM_CFS_MEDS "/%s/users", meds[i]);
		add_u64_attr(o, "users", p);
		snprintf(p, sizeof(p), VFM_CFS_MEDS "/%s/ops", meds[i]);
		add_attr(o, "ops", p);
		jadd_bool(o, "loaded", true);
		json_object_array_add(a, o);
	}
	free_list(meds, n);
	return a;
}

/* json helpers */
const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

int64_t jint(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		return 0;
	return json_object_get_int64(v);
}

bool jbool(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) &&
	       json_object_get_boolean(v);
}

void jadd_str(struct json_object *o, const char *key, const char *v)
{
	json_object_object_add(o, key, json_object_new_string(v));
}

void jadd_u64(struct json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_uint64(v));
}

void jadd_bool(struct json_object *o, const char *key, bool v)
{
	json_object_object_add(o, key, json_object_new_boolean(v));
}
