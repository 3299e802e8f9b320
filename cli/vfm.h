/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vfmediate(8): the operator's tool for the vfmediate VFIO PCI variant
 * driver. configfs is where configuration is written; generic netlink
 * is where state, statistics and events are read.
 */
#ifndef VFM_CLI_H
#define VFM_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

#define VFM_CFS_ROOT	"/sys/kernel/config/vfmediate"
#define VFM_CFS_DEVICES	VFM_CFS_ROOT "/devices"
#define VFM_CFS_MEDS	VFM_CFS_ROOT "/mediators"
#define SYSFS_PCI	"/sys/bus/pci"

/* Exit statuses, as documented in vfmediate(8). */
#define EXIT_OK		0
#define EXIT_FAIL	1
#define EXIT_USAGE	2

#define RULE_NAME_MAX	63
#define MED_NAME_MAX	31
#define MED_ARGS_MAX	255
#define OFFSET_SPACE	(1ULL << 40)

extern const char *const vfm_regions[];	/* config, bar0..bar5, rom, vga */
#define VFM_NR_REGIONS	9
extern const char *const vfm_actions[];	/* indexed by enum vfmediate_action */

/* Global options. */
struct opts {
	bool json;
	bool pretty;
	bool syslog;	/* messages to syslog(3) too (udev-attach) */
};
extern struct opts opt;

/* main.c: messages and output */
void err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int usage_err(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void print_json(struct json_object *o);
bool is_help(const char *arg);

struct cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *usage;
};
int run_cmd(const struct cmd *table, const char *what, int argc, char **argv);
int cmd_help(const char *cmd, const char *usage);

/* validate.c */
bool valid_bdf(const char *s);
bool valid_rule_name(const char *s);
bool valid_med_name(const char *s);
int region_index(const char *s);
int action_index(const char *s);
bool valid_access(const char *s);
int parse_onoff(const char *s);
int parse_range(const char *s, uint64_t *start, uint64_t *end,
		const char **why);
int region_size(const char *bdf, const char *region, uint64_t *size);
int range_fits(const char *bdf, const char *region, uint64_t start,
	       uint64_t end, char *buf, size_t len);
int check_range(const char *bdf, const char *region, const char *rule,
		const char *range);
int check_bdf_arg(const char *cmd, const char *bdf);

/* cfs.c: the configfs tree */
bool cfs_present(void);
int cfs_need(void);
int cfs_read(const char *path, char *buf, size_t len);
int cfs_write(const char *path, const char *value);
int cfs_mkdir(const char *path);
int cfs_rmdir(const char *path);
char **cfs_list(const char *dir, int *n);
void free_list(char **l, int n);
int dev_path(char *buf, size_t len, const char *bdf, const char *attr);
int rule_path(char *buf, size_t len, const char *bdf, const char *region,
	      const char *rule, const char *attr);
bool dev_configured(const char *bdf);
int need_configured(const char *bdf);
const char *cfs_why(const char *attr, int e);
int report_write(const char *bdf, const char *what, const char *attr,
		 const char *value, int e);
int dev_purge(const char *bdf);
struct json_object *cfs_device(const char *bdf);
struct json_object *cfs_rules(const char *bdf);
struct json_object *cfs_mediators(void);

/* nl.c: the generic netlink family */
struct vnl;
int vnl_open(struct vnl **h);
void vnl_close(struct vnl *h);
int vnl_dev_get(struct vnl *h, const char *bdf, struct json_object *out);
int vnl_med_get(struct vnl *h, struct json_object *out);
int vnl_stats_get(struct vnl *h, const char *bdf, struct json_object *out);
int vnl_monitor(struct vnl *h, long count,
	       void (*fn)(struct json_object *ev, void *arg), void *arg);
const char *vnl_why(int e);

bool mediator_known(const char *name);

/* commands */
int do_show(int argc, char **argv);
int do_mediators(int argc, char **argv);
int do_attach(int argc, char **argv);
int do_detach(int argc, char **argv);
int do_apply(int argc, char **argv);
int do_bind(int argc, char **argv);
int do_unbind(int argc, char **argv);
int do_rule(int argc, char **argv);
int do_stats(int argc, char **argv);
int do_monitor(int argc, char **argv);
int do_save(int argc, char **argv);
int do_restore(int argc, char **argv);
int do_udev_attach(int argc, char **argv);

/* dev.c: bind, for udev-attach */
int dev_bind(const char *bdf);
void load_driver(void);

/* save.c: checking and writing one device's configuration */
struct cfg_ctx {
	const char *cmd;	/* "restore", "udev-attach": messages start so */
	const char *file;
	char where[160];	/* what is being checked, for messages */
};
int cfg_bad(struct cfg_ctx *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int cfg_check_keys(struct cfg_ctx *c, struct json_object *o, const char *what,
		   const char *const *keys, const char *types);
int cfg_check_config(struct cfg_ctx *c, const char *bdf, struct json_object *d,
		     struct json_object *o);
void cfg_canonical(struct json_object *dev);
struct json_object *cfg_saved(const char *bdf);
int cfg_apply(const char *cmd, const char *bdf, struct json_object *want);

static inline const char *str_or(const char *s, const char *dflt)
{
	return s ? s : dflt;
}

/* json helpers */
const char *jstr(struct json_object *o, const char *key);
int64_t jint(struct json_object *o, const char *key);
bool jbool(struct json_object *o, const char *key);
void jadd_str(struct json_object *o, const char *key, const char *v);
void jadd_u64(struct json_object *o, const char *key, uint64_t v);
void jadd_bool(struct json_object *o, const char *key, bool v);

#endif
