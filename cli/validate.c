// SPDX-License-Identifier: GPL-2.0
/*
 * Validation before anything is written: the grammar of names, ranges,
 * actions and access as configfs-schema/vfmediate.schema gives it, and
 * ranges against the size of the region the function really has, so
 * that most mistakes are told clearly and never reach the kernel.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vfm.h"

const char *const vfm_regions[VFM_NR_REGIONS] = {
	"config", "bar0", "bar1", "bar2", "bar3", "bar4", "bar5", "rom", "vga"
};

const char *const vfm_actions[] = {
	"pass", "trap", "ro", "deny", "ignore", NULL
};

static bool hexdig(int c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/*
 * The canonical form the kernel gives a function's address: DDDD:BB:DD.F,
 * lower case; a domain above ffff has up to 8 digits and no leading 0.
 */
bool valid_bdf(const char *s)
{
	size_t n = strlen(s), dom, i;

	if (n < 12 || n > 16)
		return false;
	dom = n - 8;
	if (dom > 4 && s[0] == '0')
		return false;
	for (i = 0; i < n; i++) {
		if (i == dom || i == dom + 3) {
			if (s[i] != ':')
				return false;
		} else if (i == dom + 6) {
			if (s[i] != '.')
				return false;
		} else if (!hexdig(s[i])) {
			return false;
		}
	}
	return s[dom + 4] <= '1' && s[dom + 7] <= '7';
}

static bool name_ok(const char *s, size_t max, const char *extra, bool upper)
{
	size_t n = strlen(s), i;

	if (!n || n > max)
		return false;
	for (i = 0; i < n; i++) {
		unsigned char c = s[i];

		if (islower(c) || isdigit(c) || (upper && isupper(c)))
			continue;
		if (!strchr(extra, c) || !c)
			return false;
	}
	return true;
}

bool valid_rule_name(const char *s)
{
	return name_ok(s, RULE_NAME_MAX, "_.:-", true);
}

bool valid_med_name(const char *s)
{
	return name_ok(s, MED_NAME_MAX, "_-", false);
}

int region_index(const char *s)
{
	int i;

	for (i = 0; i < VFM_NR_REGIONS; i++)
		if (!strcmp(s, vfm_regions[i]))
			return i;
	return -1;
}

int action_index(const char *s)
{
	int i;

	for (i = 0; vfm_actions[i]; i++)
		if (!strcmp(s, vfm_actions[i]))
			return i;
	return -1;
}

bool valid_access(const char *s)
{
	return !strcmp(s, "r") || !strcmp(s, "w") || !strcmp(s, "rw");
}

/* on|off|1|0|yes|no -> 1/0, else -1 */
int parse_onoff(const char *s)
{
	if (!strcmp(s, "on") || !strcmp(s, "1") || !strcmp(s, "yes"))
		return 1;
	if (!strcmp(s, "off") || !strcmp(s, "0") || !strcmp(s, "no"))
		return 0;
	return -1;
}

/* A number as the kernel takes it: decimal or 0x hex, nothing else. */
static int parse_num(const char *s, size_t len, uint64_t *v)
{
	uint64_t x = 0;
	unsigned int base = 10, d;
	size_t i = 0;

	if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		i = 2;
	}
	if (i == len)
		return -EINVAL;
	for (; i < len; i++) {
		int c = tolower((unsigned char)s[i]);

		if (isdigit(c))
			d = c - '0';
		else if (base == 16 && c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else
			return -EINVAL;
		if (x > (UINT64_MAX - d) / base)
			return -ERANGE;
		x = x * base + d;
	}
	*v = x;
	return 0;
}

/*
 * "START-END" (END inclusive) or "START+LEN". *end is the last byte.
 * On failure *why says what is wrong, in words.
 */
int parse_range(const char *s, uint64_t *start, uint64_t *end,
		const char **why)
{
	const char *sep = s + strcspn(s, "-+");
	uint64_t a, b;
	int ret;

	*why = "not START-END or START+LEN (decimal or 0x hex numbers)";
	if (strlen(s) > 47 || !*sep || sep == s || !sep[1])
		return -EINVAL;
	ret = parse_num(s, sep - s, &a);
	if (!ret)
		ret = parse_num(sep + 1, strlen(sep + 1), &b);
	if (ret == -ERANGE)
		*why = "a number beyond 64 bits";
	if (ret)
		return ret;
	if (*sep == '+') {
		if (!b) {
			*why = "its length is zero";
			return -ERANGE;
		}
		if (a > UINT64_MAX - (b - 1)) {
			*why = "START+LEN does not fit in 64 bits";
			return -ERANGE;
		}
		b = a + b - 1;
	} else if (b < a) {
		*why = "its end lies below its start";
		return -ERANGE;
	}
	if (b >= OFFSET_SPACE) {
		*why = "it ends beyond the region offset space (0xffffffffff)";
		return -ERANGE;
	}
	*start = a;
	*end = b;
	return 0;
}

/*
 * The size of a region of an existing function, from sysfs: BARs and ROM
 * from "resource", config space from the size of "config". -ENOENT when
 * the function does not exist (nothing to check against), 0 with *size 0
 * when it lacks the region; vga is not checked (-ENOENT).
 */
int region_size(const char *bdf, const char *region, uint64_t *size)
{
	char path[256], line[128];
	uint64_t s, e, fl;
	int idx = -1, i = 0;
	struct stat st;
	FILE *f;

	if (!strcmp(region, "config")) {
		snprintf(path, sizeof(path), SYSFS_PCI "/devices/%s/config", bdf);
		if (stat(path, &st))
			return -ENOENT;
		*size = st.st_size;
		return 0;
	}
	if (!strncmp(region, "bar", 3))
		idx = region[3] - '0';
	else if (!strcmp(region, "rom"))
		idx = 6;
	else
		return -ENOENT;
	snprintf(path, sizeof(path), SYSFS_PCI "/devices/%s/resource", bdf);
	f = fopen(path, "r");
	if (!f)
		return -ENOENT;
	*size = 0;
	while (fgets(line, sizeof(line), f)) {
		if (i++ != idx)
			continue;
		if (sscanf(line, "%" SCNx64 " %" SCNx64 " %" SCNx64,
			   &s, &e, &fl) == 3 && (s || e) && e >= s)
			*size = e - s + 1;
		break;
	}
	fclose(f);
	return 0;
}

static void region_label(char *buf, size_t len, const char *region)
{
	size_t i;

	snprintf(buf, len, "%s", region);
	if (strncmp(region, "bar", 3) && strcmp(region, "rom"))
		return;
	for (i = 0; buf[i]; i++)
		buf[i] = toupper((unsigned char)buf[i]);
}

/*
 * Whether [START, END] fits the region the function has; when not, why
 * in BUF. A function that does not exist (yet) is not checked.
 */
int range_fits(const char *bdf, const char *region, uint64_t start,
	       uint64_t end, char *buf, size_t len)
{
	uint64_t size;
	char label[16];

	if (region_size(bdf, region, &size))
		return 0;
	region_label(label, sizeof(label), region);
	if (!size) {
		snprintf(buf, len, "the function has no %s", label);
		return -1;
	}
	if (end >= size) {
		snprintf(buf, len, "range 0x%" PRIx64 "-0x%" PRIx64
			 " lies outside %s (size 0x%" PRIx64 ")", start, end,
			 label, size);
		return -1;
	}
	return 0;
}

/* Print why RANGE is not good for RULE, return 0 when it is. */
int check_range(const char *bdf, const char *region, const char *rule,
		const char *range)
{
	uint64_t start, end;
	const char *why;
	char buf[160];

	if (parse_range(range, &start, &end, &why)) {
		err("%s: %s rule '%s': range '%s': %s", bdf, region, rule,
		    range, why);
		return -1;
	}
	if (range_fits(bdf, region, start, end, buf, sizeof(buf))) {
		err("%s: %s rule '%s': %s", bdf, region, rule, buf);
		return -1;
	}
	return 0;
}

/* A BDF argument: canonical, or a usage error saying what it should be. */
int check_bdf_arg(const char *cmd, const char *bdf)
{
	if (valid_bdf(bdf))
		return 0;
	return usage_err(cmd, "'%s' is not a PCI address in the form "
			 "DDDD:BB:DD.F (lower-case hex, as lspci -D prints it)",
			 bdf);
}
