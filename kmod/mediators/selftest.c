// SPDX-License-Identifier: GPL-2.0
/*
 * vfmediate_selftest: TEST ONLY, not a mediator and never demand-loaded.
 *
 * Its init calls vfm_register_mediator() with valid and invalid ops and
 * records what each call returned in the read-only parameter "results"
 * (/sys/module/vfmediate_selftest/parameters/results), as space-separated
 * KEY=RETURN pairs in the order of the table below. Whatever registered
 * is unregistered before init returns: the module leaves no mediator
 * behind. The guest tests (tests/test_mediators.py) load it after
 * vfmediate_audit, so that "audit" is a duplicate.
 */
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/string.h>
#include <linux/vfmediate.h>

static char results[512];
module_param_string(results, results, sizeof(results), 0444);
MODULE_PARM_DESC(results, "KEY=RETURN of each registration tried at load");

/* Handlers, so that only the property under test makes ops invalid. */
static int st_open(struct vfm_device *vd, const char *args, void **priv)
{
	return 0;
}

static void st_close(struct vfm_device *vd, void *priv)
{
}

static ssize_t st_read(struct vfm_device *vd, void *priv, unsigned int index,
		       void *buf, size_t count, loff_t off)
{
	return vfm_default_read(vd, index, buf, count, off);
}

static ssize_t st_write(struct vfm_device *vd, void *priv,
			unsigned int index, const void *buf, size_t count,
			loff_t off)
{
	return vfm_default_write(vd, index, buf, count, off);
}

#define ST_OPS(_name, _owner) {			\
	.name = _name,				\
	.owner = _owner,			\
	.open = st_open,			\
	.close = st_close,			\
	.read = st_read,			\
	.write = st_write,			\
}

/* VFM_NAME_LEN - 1 characters: the longest valid name, and one more. */
#define ST_NAME_31	"abcdefghijklmnopqrstuvwxyz-_012"
#define ST_NAME_32	ST_NAME_31 "3"

/*
 * One registration, kept registered when it succeeds until the end of
 * init, or (@unreg) the unregistration of the step named "valid".
 */
struct st_step {
	const char *key;
	bool unreg;
	struct vfm_mediator_ops ops;
	int ret;
	bool registered;
};

static struct st_step st_steps[] __initdata = {
	{ "null", false, ST_OPS(NULL, THIS_MODULE) },
	{ "empty", false, ST_OPS("", THIS_MODULE) },
	{ "noowner", false, ST_OPS("selftest", NULL) },
	{ "upper", false, ST_OPS("Selftest", THIS_MODULE) },
	{ "slash", false, ST_OPS("self/test", THIS_MODULE) },
	{ "dot", false, ST_OPS("self.test", THIS_MODULE) },
	{ "colon", false, ST_OPS("self:test", THIS_MODULE) },
	{ "space", false, ST_OPS("self test", THIS_MODULE) },
	{ "newline", false, ST_OPS("selftest\n", THIS_MODULE) },
	{ "long", false, ST_OPS(ST_NAME_32, THIS_MODULE) },
	{ "maxlen", false, ST_OPS(ST_NAME_31, THIS_MODULE) },
	{ "valid", false, ST_OPS("selftest", THIS_MODULE) },
	{ "dup", false, ST_OPS("selftest", THIS_MODULE) },
	{ "audit", false, ST_OPS("audit", THIS_MODULE) },
	{ "unreg", true },
	{ "again", false, ST_OPS("selftest", THIS_MODULE) },
};

static int __init st_init(void)
{
	struct st_step *valid = NULL;
	unsigned int i;
	int len = 0;

	for (i = 0; i < ARRAY_SIZE(st_steps); i++) {
		struct st_step *s = &st_steps[i];

		if (!strcmp(s->key, "valid"))
			valid = s;
		if (s->unreg) {
			if (valid && valid->registered) {
				vfm_unregister_mediator(&valid->ops);
				valid->registered = false;
			} else {
				s->ret = -ENOENT;
			}
		} else {
			s->ret = vfm_register_mediator(&s->ops);
			s->registered = !s->ret;
		}
		len += scnprintf(results + len, sizeof(results) - len,
				 "%s%s=%d", len ? " " : "", s->key, s->ret);
	}

	while (i--)
		if (st_steps[i].registered)
			vfm_unregister_mediator(&st_steps[i].ops);
	return 0;
}

static void __exit st_exit(void)
{
}

module_init(st_init);
module_exit(st_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("vfmediate registration self-test (test only)");
