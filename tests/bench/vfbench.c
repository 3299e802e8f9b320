// SPDX-License-Identifier: GPL-2.0
/*
 * vfbench: one round of the vfmediate benchmark, in one fresh process.
 *
 *   vfbench [options] BDF_A BDF_B
 *
 * Opens both functions through VFIO (one type1 container, one group each,
 * a device fd each) and times the same operation on A and on B,
 * alternately, in blocks: block k runs A then B when k is even, B then A
 * when it is odd, so that neither function is always first. Prints one
 * JSON object on stdout: for each operation and each function the median
 * per-operation time over the blocks (and min, p10, p90), the result of
 * the first operation (bytes or an errno name) and, with --cfs, the
 * table_bytes and compile_ns vfmediate reported for a function after
 * each of its opens.
 *
 * Operations (--ops, comma-separated, each timed in its own blocks):
 *   pread	4-byte pread of BAR0 at --roff through the device fd
 *   pwrite	4-byte pwrite of --wval at BAR0 --woff through the device fd
 *   null	4-byte pread of a region index the device does not have,
 *		which vfio-pci-core refuses first thing (EINVAL): the cost
 *		of the system call and of VFIO's dispatch alone
 *   mmap	4-byte load at --roff from a mmap of BAR0's page holding it
 *   open	VFIO_GROUP_GET_DEVICE_FD then close(), one per block; with
 *		--touch FILE, "0" is written to FILE before each timed open
 *		(outside the timing): a rule's audit file, so that
 *		vfmediate's next open compiles its table afresh
 *
 * Which driver each function has is the caller's business (driver
 * script run.py): the program only talks VFIO and never changes a
 * binding. With --reopen N, the whole sequence runs N times, the device
 * fds closed and opened again in between (a fresh open maps the BARs
 * afresh in the kernel); each run is reported on its own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/vfio.h>

#define PAGE		4096UL
#define MAX_BLOCKS	4096
/* vfio-pci's offset of region index 32: no PCI device has that many. */
#define NULL_REGION_OFFSET	(32ULL << 40)

enum op { OP_PREAD, OP_PWRITE, OP_NULL, OP_MMAP, OP_OPEN, NR_OPS };
static const char *const op_names[NR_OPS] = {
	"pread", "pwrite", "null", "mmap", "open",
};

struct func {
	const char *bdf;
	int group;
	int dev;		/* -1 while closed */
	uint64_t bar_off;	/* BAR0's offset in the device fd */
	uint64_t bar_size;
	uint32_t bar_flags;
	void *page;		/* the mmap'ed page, or NULL */
	volatile uint32_t *map;	/* the register in it */
	char cfs[PATH_MAX];	/* configfs dir to sample, or "" */
	/* per block, ns per operation */
	double t[MAX_BLOCKS];
	/* first result of the current operation */
	long first_ret;
	int first_errno;
	/* configfs samples after each open */
	long table_bytes;
	unsigned long long compile_ns[MAX_BLOCKS];
	int nr_compile;
};

static struct {
	uint64_t roff, woff;
	uint32_t wval;
	int blocks;
	int reopen;
	const char *touch;
	int iters[NR_OPS];
	int cpu;
	unsigned int ops;
} opt = {
	.roff = 0, .woff = 4, .wval = 0, .blocks = 40, .reopen = 1,
	.iters = { 200, 200, 200, 2000, 1 }, .cpu = -1,
};

static int container = -1;

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("vfbench: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int iommu_group_of(const char *bdf)
{
	char path[PATH_MAX], link[PATH_MAX];
	const char *base;
	ssize_t n;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", bdf);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		die("%s: no IOMMU group (%s)", bdf, strerror(errno));
	link[n] = '\0';
	base = strrchr(link, '/');
	return atoi(base ? base + 1 : link);
}

static void open_container(void)
{
	container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	if (container < 0)
		die("/dev/vfio/vfio: %s", strerror(errno));
	if (ioctl(container, VFIO_GET_API_VERSION) != VFIO_API_VERSION)
		die("unknown VFIO API version");
	if (!ioctl(container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU))
		die("no type1v2 IOMMU");
}

static void open_group(struct func *f)
{
	struct vfio_group_status st = { .argsz = sizeof(st) };
	char path[64];

	snprintf(path, sizeof(path), "/dev/vfio/%d", iommu_group_of(f->bdf));
	f->group = open(path, O_RDWR | O_CLOEXEC);
	if (f->group < 0)
		die("%s: %s: %s", f->bdf, path, strerror(errno));
	if (ioctl(f->group, VFIO_GROUP_GET_STATUS, &st))
		die("%s: VFIO_GROUP_GET_STATUS: %s", f->bdf, strerror(errno));
	if (!(st.flags & VFIO_GROUP_FLAGS_VIABLE))
		die("%s: group not viable (another function of it bound elsewhere?)",
		    f->bdf);
	if (ioctl(f->group, VFIO_GROUP_SET_CONTAINER, &container))
		die("%s: VFIO_GROUP_SET_CONTAINER: %s", f->bdf, strerror(errno));
}

static long read_cfs_long(const struct func *f, const char *attr)
{
	char path[PATH_MAX + 32], buf[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", f->cfs, attr);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return strtol(buf, NULL, 0);
}

static void sample_cfs(struct func *f)
{
	long ns;

	if (!f->cfs[0])
		return;
	/* Absent when the function has no configfs directory. */
	f->table_bytes = read_cfs_long(f, "table_bytes");
	ns = read_cfs_long(f, "compile_ns");
	if (ns >= 0 && f->nr_compile < MAX_BLOCKS)
		f->compile_ns[f->nr_compile++] = (unsigned long long)ns;
}

static int get_device(struct func *f)
{
	return ioctl(f->group, VFIO_GROUP_GET_DEVICE_FD, f->bdf);
}

static void open_device(struct func *f)
{
	struct vfio_region_info ri = {
		.argsz = sizeof(ri), .index = VFIO_PCI_BAR0_REGION_INDEX,
	};

	f->dev = get_device(f);
	if (f->dev < 0)
		die("%s: VFIO_GROUP_GET_DEVICE_FD: %s", f->bdf, strerror(errno));
	sample_cfs(f);
	if (ioctl(f->dev, VFIO_DEVICE_GET_REGION_INFO, &ri))
		die("%s: BAR0 region info: %s", f->bdf, strerror(errno));
	f->bar_off = ri.offset;
	f->bar_size = ri.size;
	f->bar_flags = ri.flags;
	if (opt.roff + 4 > ri.size || opt.woff + 4 > ri.size)
		die("%s: offset beyond BAR0 (%#llx bytes)", f->bdf,
		    (unsigned long long)ri.size);
}

static void close_device(struct func *f)
{
	if (f->dev >= 0)
		close(f->dev);
	f->dev = -1;
}

static void map_page(struct func *f)
{
	uint64_t page = opt.roff & ~(PAGE - 1);
	void *p;

	if (!(f->bar_flags & VFIO_REGION_INFO_FLAG_MMAP))
		die("%s: BAR0 is not mmap-able", f->bdf);
	p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, f->dev,
		 (off_t)(f->bar_off + page));
	if (p == MAP_FAILED)
		die("%s: mmap of BAR0 page %#llx: %s", f->bdf,
		    (unsigned long long)page, strerror(errno));
	f->page = p;
	f->map = (volatile uint32_t *)((char *)p + (opt.roff - page));
}

/* A mapping holds the device open: drop it before timing opens. */
static void unmap_page(struct func *f)
{
	if (f->page)
		munmap(f->page, PAGE);
	f->page = NULL;
	f->map = NULL;
}

/* One operation, its result in bytes or -errno. */
static long do_op(struct func *f, enum op op)
{
	uint32_t v = opt.wval;
	ssize_t n;

	switch (op) {
	case OP_PREAD:
		n = pread(f->dev, &v, 4, (off_t)(f->bar_off + opt.roff));
		return n < 0 ? -errno : n;
	case OP_PWRITE:
		n = pwrite(f->dev, &v, 4, (off_t)(f->bar_off + opt.woff));
		return n < 0 ? -errno : n;
	case OP_NULL:
		n = pread(f->dev, &v, 4, (off_t)NULL_REGION_OFFSET);
		return n < 0 ? -errno : n;
	case OP_MMAP:
		v = *f->map;
		__asm__ volatile("" : : "r"(v) : "memory");
		return 4;
	case OP_OPEN:
		f->dev = get_device(f);
		if (f->dev < 0)
			return -errno;
		close(f->dev);
		f->dev = -1;
		return 0;
	default:
		return -EINVAL;
	}
}

static double time_block(struct func *f, enum op op, int iters)
{
	uint64_t t0, t1;
	int i;

	t0 = now_ns();
	for (i = 0; i < iters; i++)
		do_op(f, op);
	t1 = now_ns();
	return (double)(t1 - t0) / iters;
}

/* The open blocks sample configfs between timings, outside them. */
/* Stage a change (the same value again) in vfmediate's configuration. */
static void touch(void)
{
	int fd;

	if (!opt.touch)
		return;
	fd = open(opt.touch, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, "0", 1) != 1)
		die("%s: %s", opt.touch, strerror(errno));
	close(fd);
}

static double time_open_block(struct func *f)
{
	uint64_t t0, t1;
	int fd;

	touch();
	t0 = now_ns();
	fd = get_device(f);
	if (fd < 0)
		die("%s: VFIO_GROUP_GET_DEVICE_FD: %s", f->bdf, strerror(errno));
	close(fd);
	t1 = now_ns();
	/* compile_ns is only shown while open: sample on a separate open. */
	return (double)(t1 - t0);
}

static void sample_open(struct func *f)
{
	int fd;

	if (!f->cfs[0])
		return;
	fd = get_device(f);
	if (fd < 0)
		die("%s: VFIO_GROUP_GET_DEVICE_FD: %s", f->bdf, strerror(errno));
	sample_cfs(f);
	close(fd);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double quantile(const double *sorted, int n, double q)
{
	double pos = q * (n - 1);
	int i = (int)pos;

	if (i + 1 >= n)
		return sorted[n - 1];
	return sorted[i] + (pos - i) * (sorted[i + 1] - sorted[i]);
}

static void print_result(struct func *f, const char *label, int n,
			 const char *sep)
{
	double s[MAX_BLOCKS];

	memcpy(s, f->t, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_double);
	printf("\"%s\":{\"med\":%.1f,\"min\":%.1f,\"p10\":%.1f,\"p90\":%.1f,",
	       label, quantile(s, n, 0.5), s[0], quantile(s, n, 0.1),
	       quantile(s, n, 0.9));
	if (f->first_ret < 0)
		printf("\"ret\":\"%s\"}%s", strerrorname_np(f->first_errno) ?: "?", sep);
	else
		printf("\"ret\":%ld}%s", f->first_ret, sep);
}

/*
 * Block k of A and block k of B ran back to back: their ratio cancels
 * whatever slowed both (the host, a timer tick); its median over the
 * blocks is the process's figure.
 */
static void print_ratio(const struct func *fa, const struct func *fb, int n)
{
	double r[MAX_BLOCKS];
	int k;

	for (k = 0; k < n; k++)
		r[k] = fa->t[k] / fb->t[k];
	qsort(r, n, sizeof(*r), cmp_double);
	printf("\"ratio\":{\"med\":%.5f,\"p10\":%.5f,\"p90\":%.5f}}",
	       quantile(r, n, 0.5), quantile(r, n, 0.1), quantile(r, n, 0.9));
}

static void run_op(struct func *fa, struct func *fb, enum op op, int first)
{
	struct func *fs[2] = { fa, fb };
	int k, j, iters = opt.iters[op];

	if (op == OP_MMAP) {
		map_page(fa);
		map_page(fb);
	}
	for (j = 0; j < 2; j++) {
		long r;

		if (op == OP_OPEN) {
			close(fs[j]->dev);
			fs[j]->dev = -1;
		}
		r = do_op(fs[j], op);	/* also the warm-up */
		fs[j]->first_ret = r;
		fs[j]->first_errno = r < 0 ? (int)-r : 0;
		if (op != OP_OPEN)
			time_block(fs[j], op, iters);
	}
	for (k = 0; k < opt.blocks; k++) {
		for (j = 0; j < 2; j++) {
			struct func *f = fs[(k + j) & 1];

			if (op == OP_OPEN)
				f->t[k] = time_open_block(f);
			else
				f->t[k] = time_block(f, op, iters);
		}
	}
	if (op == OP_OPEN) {
		for (j = 0; j < 2; j++)
			for (k = 0; k < 4; k++)
				sample_open(fs[j]);
	}
	if (op == OP_MMAP) {
		unmap_page(fa);
		unmap_page(fb);
	}
	printf("%s\"%s\":{\"iters\":%d,\"blocks\":%d,", first ? "" : ",",
	       op_names[op], iters, opt.blocks);
	print_result(fa, "A", opt.blocks, ",");
	print_result(fb, "B", opt.blocks, ",");
	print_ratio(fa, fb, opt.blocks);
}

static void print_cfs(const struct func *f, const char *label, const char *sep)
{
	int i;

	printf("\"%s\":{\"table_bytes\":", label);
	if (f->table_bytes < 0)
		printf("null");
	else
		printf("%ld", f->table_bytes);
	printf(",\"compile_ns\":[");
	for (i = 0; i < f->nr_compile; i++)
		printf("%s%llu", i ? "," : "", f->compile_ns[i]);
	printf("]}%s", sep);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: vfbench [--ops pread,pwrite,null,mmap,open] [--blocks N]\n"
		"               [--iters OP=N] [--roff OFF] [--woff OFF] [--wval V]\n"
		"               [--cpu N] [--reopen N] [--cfs-a DIR] [--cfs-b DIR]\n"
		"               [--touch FILE]\n"
		"               BDF_A BDF_B\n");
	exit(2);
}

static void parse_ops(const char *s)
{
	char *copy = strdup(s), *tok, *save = NULL;
	int i;

	for (tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		for (i = 0; i < NR_OPS; i++)
			if (!strcmp(tok, op_names[i]))
				break;
		if (i == NR_OPS)
			die("unknown operation '%s'", tok);
		opt.ops |= 1U << i;
	}
	free(copy);
}

static void parse_iters(const char *s)
{
	const char *eq = strchr(s, '=');
	int i;

	if (!eq)
		die("--iters takes OP=N");
	for (i = 0; i < NR_OPS; i++) {
		if (strlen(op_names[i]) == (size_t)(eq - s) &&
		    !strncmp(s, op_names[i], eq - s)) {
			opt.iters[i] = atoi(eq + 1);
			if (opt.iters[i] < 1)
				die("--iters: N must be positive");
			return;
		}
	}
	die("--iters: unknown operation in '%s'", s);
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "ops", required_argument, NULL, 'o' },
		{ "blocks", required_argument, NULL, 'b' },
		{ "iters", required_argument, NULL, 'i' },
		{ "roff", required_argument, NULL, 'r' },
		{ "woff", required_argument, NULL, 'w' },
		{ "wval", required_argument, NULL, 'v' },
		{ "cpu", required_argument, NULL, 'c' },
		{ "reopen", required_argument, NULL, 'n' },
		{ "cfs-a", required_argument, NULL, 'A' },
		{ "cfs-b", required_argument, NULL, 'B' },
		{ "touch", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	static struct func fa = { .table_bytes = -1 }, fb = { .table_bytes = -1 };
	int c, i, run, first;

	while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (c) {
		case 'o': parse_ops(optarg); break;
		case 'b': opt.blocks = atoi(optarg); break;
		case 'i': parse_iters(optarg); break;
		case 'r': opt.roff = strtoull(optarg, NULL, 0); break;
		case 'w': opt.woff = strtoull(optarg, NULL, 0); break;
		case 'v': opt.wval = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'c': opt.cpu = atoi(optarg); break;
		case 'n': opt.reopen = atoi(optarg); break;
		case 'A': snprintf(fa.cfs, sizeof(fa.cfs), "%s", optarg); break;
		case 'B': snprintf(fb.cfs, sizeof(fb.cfs), "%s", optarg); break;
		case 't': opt.touch = optarg; break;
		default: usage();
		}
	}
	if (argc - optind != 2 || !opt.ops)
		usage();
	if (opt.blocks < 1 || opt.blocks > MAX_BLOCKS)
		die("--blocks takes 1..%d", MAX_BLOCKS);
	if (opt.reopen < 1)
		die("--reopen takes a positive count");
	if ((opt.roff | opt.woff) & 3)
		die("offsets must be 4-byte aligned");
	fa.bdf = argv[optind];
	fb.bdf = argv[optind + 1];

	if (opt.cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(opt.cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set))
			die("cpu %d: %s", opt.cpu, strerror(errno));
	}

	open_container();
	open_group(&fa);
	open_group(&fb);
	if (ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU))
		die("VFIO_SET_IOMMU: %s", strerror(errno));
	printf("{\"a\":\"%s\",\"b\":\"%s\",\"runs\":[", fa.bdf, fb.bdf);
	for (run = 0; run < opt.reopen; run++) {
		/* B first every other run: neither is always opened first. */
		if (run & 1) {
			open_device(&fb);
			open_device(&fa);
		} else {
			open_device(&fa);
			open_device(&fb);
		}
		printf("%s{\"ops\":{", run ? "," : "");
		first = 1;
		for (i = 0; i < NR_OPS; i++) {
			if (!(opt.ops & (1U << i)))
				continue;
			run_op(&fa, &fb, i, first);
			first = 0;
		}
		printf("}}");
		close_device(&fa);
		close_device(&fb);
	}
	printf("],\"cfs\":{");
	print_cfs(&fa, "A", ",");
	print_cfs(&fb, "B", "}}\n");
	return 0;
}
