// SPDX-License-Identifier: GPL-2.0
/*
 * vfmediate(8): global options, the table of subcommands and the one
 * output path (json-c objects, printed as JSON or as text).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "vfm.h"

#ifndef VFM_VERSION
#define VFM_VERSION "0.1"
#endif

struct opts opt;

/*
 * A message is written with one write(2): udev, which reads a helper's
 * standard error from a pipe, logs each read as a line of its own.
 */
static void say(int prio, const char *prefix, const char *fmt, va_list ap)
{
	char msg[2048];
	va_list aq;

	va_copy(aq, ap);
	vsnprintf(msg, sizeof(msg), fmt, aq);
	va_end(aq);
	fflush(stdout);
	fprintf(stderr, "vfmediate: %s%s\n", prefix, msg);
	if (opt.syslog)
		syslog(prio, "%s%s", prefix, msg);
}

void err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say(LOG_ERR, "", fmt, ap);
	va_end(ap);
}

void warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say(LOG_WARNING, "warning: ", fmt, ap);
	va_end(ap);
}

/* A usage mistake: the message, a pointer to -h, exit status 2. */
int usage_err(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("vfmediate: ", stderr);
	if (cmd)
		fprintf(stderr, "%s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (try 'vfmediate %s%s-h')\n", cmd ? cmd : "",
		cmd ? " " : "");
	return EXIT_USAGE;
}

void print_json(struct json_object *o)
{
	int flags = JSON_C_TO_STRING_NOSLASHESCAPE;

	flags |= opt.pretty ? JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED
			    : JSON_C_TO_STRING_PLAIN;
	puts(json_object_to_json_string_ext(o, flags));
	fflush(stdout);
}

bool is_help(const char *arg)
{
	return !strcmp(arg, "-h") || !strcmp(arg, "--help") ||
	       !strcmp(arg, "help");
}

int cmd_help(const char *cmd, const char *usage)
{
	printf("Usage: vfmediate [-j] [-p] %s %s\n", cmd, usage);
	return EXIT_OK;
}

/*
 * Find argv[0] in a table by unambiguous prefix, as ip(8) does; an exact
 * name always wins over being the prefix of a longer one.
 */
int run_cmd(const struct cmd *table, const char *what, int argc, char **argv)
{
	const struct cmd *c, *found = NULL;
	size_t len = strlen(argv[0]);
	int n = 0;

	for (c = table; c->name; c++) {
		if (!strcmp(c->name, argv[0])) {
			found = c;
			n = 1;
			break;
		}
		if (len && !strncmp(c->name, argv[0], len)) {
			found = c;
			n++;
		}
	}
	if (n == 1)
		return found->fn(argc, argv);
	if (n > 1) {
		err("%s'%s' is ambiguous; it may be any of:", what, argv[0]);
		for (c = table; c->name; c++)
			if (!strncmp(c->name, argv[0], len))
				fprintf(stderr, "  %s\n", c->name);
		return EXIT_USAGE;
	}
	err("unknown %scommand '%s' (try 'vfmediate -h')", what, argv[0]);
	return EXIT_USAGE;
}

static int do_help(int argc, char **argv);

static const struct cmd commands[] = {
	{ "show",	do_show,	"[BDF]" },
	{ "mediators",	do_mediators,	"" },
	{ "attach",	do_attach,	"BDF NAME [ARGS]" },
	{ "detach",	do_detach,	"BDF" },
	{ "apply",	do_apply,	"BDF [--revoke]" },
	{ "bind",	do_bind,	"BDF" },
	{ "unbind",	do_unbind,	"BDF" },
	{ "rule",	do_rule,	"{ add | del | list | set } ..." },
	{ "stats",	do_stats,	"[--prometheus] [BDF] [-w SECONDS]" },
	{ "monitor",	do_monitor,	"[-c COUNT]" },
	{ "save",	do_save,	"[FILE]" },
	{ "restore",	do_restore,	"FILE" },
	{ "udev-attach", do_udev_attach, "[--profiles DIR] BDF" },
	{ "help",	do_help,	"" },
	{ NULL, NULL, NULL }
};

static void usage(FILE *f)
{
	const struct cmd *c;

	fputs("Usage: vfmediate [-j] [-p] [-V] [-h] COMMAND [ARGS]\n"
	      "Options:\n"
	      "  -j, --json     JSON output\n"
	      "  -p, --pretty   pretty-printed JSON output (implies -j)\n"
	      "  -V, --version  print the version and exit\n"
	      "  -h, --help     this help; COMMAND -h for a command's\n"
	      "Commands:\n", f);
	for (c = commands; c->name; c++)
		if (strcmp(c->name, "help"))
			fprintf(f, "  %-10s %s\n", c->name, c->usage);
	fputs("Prefixes of a command work when unambiguous (vfmediate sh).\n"
	      "Exit status: 0 success, 1 failure, 2 usage error.\n", f);
}

static int do_help(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	usage(stdout);
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "-j") || !strcmp(a, "--json")) {
			opt.json = true;
		} else if (!strcmp(a, "-p") || !strcmp(a, "--pretty")) {
			opt.json = opt.pretty = true;
		} else if (!strcmp(a, "-jp") || !strcmp(a, "-pj")) {
			opt.json = opt.pretty = true;
		} else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
			printf("vfmediate %s\n", VFM_VERSION);
			return EXIT_OK;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return EXIT_OK;
		} else if (!strcmp(a, "--")) {
			i++;
			break;
		} else {
			err("unknown option '%s' (try 'vfmediate -h')", a);
			return EXIT_USAGE;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	return run_cmd(commands, "", argc - i, argv + i);
}
