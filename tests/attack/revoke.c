// SPDX-License-Identifier: GPL-2.0
/*
 * A VFIO user keeps using its mapping of a BAR while the admin revokes
 * and frees one page of it over and over (issue 14, revocation). Each
 * revocation ("revoke" to apply) must zap the page from the mapping, and
 * a later fault of it must fail (SIGBUS) instead of mapping it again;
 * each freeing apply lets it fault back in. The pages around it must
 * never fault and always answer as the device does.
 *
 *   revoke race  GROUP BDF
 *	maps the first three pages of BAR0 of edu. Thread A reads the
 *	middle page (edu answers 0xffffffff there) in a loop, a SIGBUS
 *	counted and survived; thread B writes edu's liveness register on
 *	the first page and reads back its complement. Prints "ready", then
 *	reads lines from its standard input until it ends: after the test
 *	wrote "revoke" to apply it sends "r", and the middle page must
 *	fault here; after it freed the page, "f", and the page must read
 *	back. Each line is answered "ok" once checked.
 *
 * Last line: "result: mid_ok=N mid_sigbus=N mid_wrong=N live_ok=N
 * live_sigbus=N live_wrong=N revoked=N leaked=N freed=N stuck=N".
 * Exit 1 when the middle page read a wrong value, was readable after a
 * revocation returned or not after a freeing one, or the first page
 * faulted or answered wrong; 0 otherwise.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common.h"

#define EDU_LIVE	0x04
#define EMPTY		0xffffffffu

struct counts {
	unsigned long ok, sigbus, wrong;
};

static volatile uint32_t *bar;
static long page;
static volatile int stop;
static struct counts mid;	/* read_mid()'s */
static __thread sigjmp_buf fault_jmp;
static __thread volatile int armed;

static void on_sigbus(int sig)
{
	(void)sig;
	if (!armed)
		abort();
	siglongjmp(fault_jmp, 1);
}

/* The 32-bit word at byte @off of the mapping; false on SIGBUS. */
static bool mapped_read(uint64_t off, uint32_t *v)
{
	if (sigsetjmp(fault_jmp, 1)) {
		armed = 0;
		return false;
	}
	armed = 1;
	*v = bar[off / 4];
	armed = 0;
	return true;
}

static bool mapped_write(uint64_t off, uint32_t v)
{
	if (sigsetjmp(fault_jmp, 1)) {
		armed = 0;
		return false;
	}
	armed = 1;
	bar[off / 4] = v;
	armed = 0;
	return true;
}

static void *read_mid(void *arg)
{
	struct counts *c = arg;
	uint32_t v;

	while (!stop) {
		if (!mapped_read(page, &v))
			__atomic_fetch_add(&c->sigbus, 1, __ATOMIC_RELAXED);
		else if (v != EMPTY)
			c->wrong++;
		else
			c->ok++;
	}
	return NULL;
}

static void *use_live(void *arg)
{
	struct counts *c = arg;
	uint32_t i = 0, v;

	while (!stop) {
		i++;
		if (!mapped_write(EDU_LIVE, i) || !mapped_read(EDU_LIVE, &v))
			c->sigbus++;
		else if (v != ~i)
			c->wrong++;
		else
			c->ok++;
	}
	return NULL;
}

/*
 * After a revocation, give read_mid() a fifth of a second or so to
 * fault on the page: in a loaded guest it may otherwise not run once
 * while the page is revoked, and the test could not tell that the race
 * ran.
 */
static void let_the_reader_fault(void)
{
	unsigned long seen = __atomic_load_n(&mid.sigbus, __ATOMIC_RELAXED);
	int i;

	for (i = 0; i < 200; i++) {
		if (__atomic_load_n(&mid.sigbus, __ATOMIC_RELAXED) != seen)
			return;
		usleep(1000);
	}
}

/* The checks the test asks for, one line each, until input ends. */
struct checks {
	unsigned long revoked, leaked, freed, stuck;
};

static void check_lines(struct checks *c)
{
	char line[16];
	uint32_t v;

	while (fgets(line, sizeof(line), stdin)) {
		bool readable = mapped_read(page, &v) && v == EMPTY;

		if (line[0] == 'r') {
			c->revoked++;
			c->leaked += readable;
			let_the_reader_fault();
		} else if (line[0] == 'f') {
			c->freed++;
			c->stuck += !readable;
		}
		printf("ok\n");
		fflush(stdout);
	}
}

static int race(const char *group, const char *bdf)
{
	struct counts live = { 0 };
	struct sigaction sa = { .sa_handler = on_sigbus };
	struct checks c = { 0 };
	pthread_t a, b;
	struct vdev d;

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGBUS, &sa, NULL))
		die("sigaction");
	vdev_open(&d, group, bdf);
	page = sysconf(_SC_PAGESIZE);
	bar = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_SHARED, d.fd,
		   d.region_off[VFIO_PCI_BAR0_REGION_INDEX]);
	if (bar == MAP_FAILED)
		die("mmap of BAR0");
	if (pthread_create(&a, NULL, read_mid, &mid) ||
	    pthread_create(&b, NULL, use_live, &live))
		die("pthread_create");
	printf("ready\n");
	fflush(stdout);
	check_lines(&c);
	stop = 1;
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	munmap((void *)bar, 3 * page);
	vdev_close(&d);
	printf("result: mid_ok=%lu mid_sigbus=%lu mid_wrong=%lu live_ok=%lu live_sigbus=%lu live_wrong=%lu revoked=%lu leaked=%lu freed=%lu stuck=%lu\n",
	       mid.ok, mid.sigbus, mid.wrong, live.ok, live.sigbus,
	       live.wrong, c.revoked, c.leaked, c.freed, c.stuck);
	return mid.wrong || live.sigbus || live.wrong || c.leaked || c.stuck ?
	       EXIT_WON : EXIT_HELD;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "race"))
		return race(argv[2], argv[3]);
	fprintf(stderr, "usage: revoke race GROUP BDF\n");
	return EXIT_BROKEN;
}
