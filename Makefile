# SPDX-License-Identifier: GPL-2.0
#
# vfmediate top-level build.
#
#   make            build the kernel modules for every supported kernel
#                   and the vfmediate(8) command line tool (cli/)
#   make check      install dependencies, build the debug kernel if it is
#                   stale, run the guest test suite on every supported
#                   kernel and on the debug kernel (the CI entry point)
#   make vm         a shell in a test guest (KVER=<release> to choose)
#   make demo       install, build, and show the policy engine at work in a
#                   test guest (README, "Demo")
#   make bench      measure vfmediate against stock vfio-pci in a test guest
#                   on every supported kernel (README, "Performance")
#   make fuzz       the uAPI fuzzer (tests/fuzz/) for long, in a test guest
#                   per kernel, one after the other: N=1000000 calls per
#                   kernel by default (a tenth on the debug kernel), a new
#                   seed each run unless SEED=; the kernel log checked as
#                   in make check (README, "Fuzzing"); make check runs a
#                   short slice of it with a fixed seed (tests/test_fuzz.py)
#   make debug-kernel  build (if stale) and install the debug kernel
#   make check-debug   the guest suite on the debug kernel only
#   make coverage   the same, then the line and function coverage of kmod/
#                   it reached (the debug kernel has gcov; make check
#                   prints it too, after the debug kernel's guests)
#   make install    modules (kbuild modules_install, for KVER or the
#                   running kernel), man pages, the udev rule, the systemd
#                   unit and, when present, the CLI (cli/Makefile);
#                   honours DESTDIR and PREFIX (README, "Installing")
#   make uninstall  remove what make install installed
#   make dkms-source   stage the DKMS source tree in
#                   $(DESTDIR)/usr/src/vfmediate-<version>
#   make dkms-check    dkms add/build/remove in a private DKMS tree for
#                   every supported kernel (part of make check)
#
# KVER=<release> restricts build and check to one installed kernel (the
# debug kernel's release included); the debug kernel is then not built.

VERSION := $(shell cat VERSION)
KERNELS := $(if $(KVER),$(KVER),$(shell tests/vm/kernels))
PYTEST_ARGS ?=
export PYTEST_ARGS

.PHONY: all deps modules cli check check-kernels kcheck hostcheck vm clean debug-kernel check-debug

all: modules cli

deps:
	@scripts/install-deps

modules:
	@set -e; for k in $(KERNELS); do $(MAKE) -C kmod KVER=$$k; done

# The CLI; the guest tests run the binary built here.
cli:
	@$(MAKE) --no-print-directory -C cli

# checkpatch --strict and sparse over kmod/ and include/.
kcheck:
	@$(MAKE) --no-print-directory -C kmod check KVER="$(KERNELS)"

# Host-side checks: the CLI builds warning-free (and is then there for
# the guest suite's tests/test_cli.py), uAPI layouts, docs and schema
# renderings.
hostcheck:
	@$(MAKE) --no-print-directory -C cli -B CFLAGS="-O2 -g -Werror"
	@/usr/bin/python3 -m pytest -p no:cacheprovider --noconftest -q tests/host/

# Deps come first and in their own make: the kernel list is only known
# once the kernels are installed, the debug kernel once it is built.
check: deps
	@$(MAKE) --no-print-directory kcheck
	@$(MAKE) --no-print-directory hostcheck
	@$(if $(KVER),,scripts/debug-kernel)
	@$(MAKE) --no-print-directory dkms-check
	@$(MAKE) --no-print-directory check-kernels

debug-kernel:
	@scripts/debug-kernel

# The debug lane alone: the whole suite on the KASAN/lockdep/PROVE_RCU/
# kmemleak kernel (built and cached on first use, about 15 minutes).
check-debug: deps
	@scripts/debug-kernel
	@tests/run-suite $$(tests/vm/kernels --debug)

# The debug lane, and its coverage of kmod/ (tests/vm/coverage), also in
# build/test-results/coverage.txt. The suite's result is make's; the
# coverage is reported, not enforced.
.PHONY: coverage
coverage: deps
	@scripts/debug-kernel
	@tests/run-suite $$(tests/vm/kernels --debug); rc=$$?; \
	test -s build/test-results/coverage.txt || \
		{ echo "coverage: no report" >&2; exit 1; }; exit $$rc

# Every kernel's guests at once, as many as there are CPUs (run-suite).
check-kernels:
	@dbg=$$(tests/vm/kernels --debug); \
	if [ -z "$(KVER)" ] && [ -z "$$dbg" ]; then \
		echo "check: no debug kernel installed (scripts/debug-kernel builds it)" >&2; \
		exit 1; \
	fi; \
	tests/run-suite $(KERNELS) $(if $(KVER),,$$dbg)

vm: modules
	tests/vm/run $(if $(KVER),--kernel $(KVER)) --keep-shell

# README's "Demo": dependencies, the modules for the newest supported
# kernel (or KVER), then tests/demo/demo.sh in a test guest.
.PHONY: demo
demo: deps
	@k='$(KVER)'; \
	[ -n "$$k" ] || k=$$(tests/vm/kernels | grep -v -- '-vfm-debug$$' | grep -v -- '-rt-amd64$$' | tail -n1); \
	[ -n "$$k" ] || { echo "demo: no supported kernel installed" >&2; exit 1; }; \
	mkdir -p build; \
	echo "demo: building the modules for $$k and the vfmediate command"; \
	{ $(MAKE) --no-print-directory -C kmod KVER=$$k && \
	  $(MAKE) --no-print-directory -C cli; } > build/demo-build.log 2>&1 || \
		{ cat build/demo-build.log >&2; echo "demo: build failed" >&2; exit 1; }; \
	echo "demo: booting a test guest ($$k), about a minute"; \
	tests/vm/run --kernel $$k -- tests/demo/demo.sh

# README's "Performance": for each supported kernel but the debug kernel
# (its figures would mean nothing) and the PREEMPT_RT one (the targets
# are for the kernels a fleet runs; KVER= measures it), BOOTS test
# guests one after the other run tests/bench/run.py, about 2-4 minutes
# each; their rounds are pooled. Results under build/bench/.
BOOTS ?= 2
.PHONY: bench bench-kernels
bench: deps
	@$(MAKE) --no-print-directory bench-kernels

bench-kernels:
	@BOOTS=$(BOOTS) tests/bench/bench -- $(if $(KVER),$(KVER),$(filter-out %-vfm-debug %-rt-amd64,$(KERNELS)))

# README's "Fuzzing": tests/fuzz/run-fuzz per kernel, one guest at a time.
N ?= 1000000
SEED ?=
.PHONY: fuzz
fuzz: deps
	@tests/fuzz/run-fuzz -n $(N) $(if $(SEED),-s $(SEED)) $(KERNELS) \
		$(if $(KVER),,$$(tests/vm/kernels --debug))

# The last run's table (build/bench/table.md) into README's Performance.
.PHONY: bench-readme
bench-readme:
	@tests/bench/readme

# make install. DESTDIR is a staging root (packaging); PREFIX the
# userspace prefix. udev rules and systemd units go where udev and systemd
# read them whatever PREFIX is. The modules are built and installed for
# KVER (one release or several), default the running kernel.
PREFIX ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
UDEVRULESDIR ?= /lib/udev/rules.d
SYSTEMDUNITDIR ?= /lib/systemd/system
INSTALL_KERNELS = $(if $(KVER),$(KVER),$(shell uname -r))
# What the CLI's own Makefile is given.
CLI_VARS = DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" SBINDIR="$(SBINDIR)" MANDIR="$(MANDIR)"
# The files under <DESTDIR>/lib/modules/<release>/extra/: every module kmod/
# builds (the list in dkms.conf), .ko.xz where the kernel compresses them.
MODULE_FILES = vfmediate.ko vfmediate.ko.* mediators/vfmediate_*.ko mediators/vfmediate_*.ko.*
# The udev rule and the unit: <source>:<directory>; @SBINDIR@ replaced.
CONF_FILES = udev/60-vfmediate.rules:'$(UDEVRULESDIR)' \
	     systemd/vfmediate-restore.service:'$(SYSTEMDUNITDIR)'

.PHONY: install install-modules install-userspace uninstall dkms-source dkms-check

install: install-modules install-userspace

# DESTDIR made absolute here: kmod/Makefile runs in kmod/.
install-modules:
	@set -e; for k in $(INSTALL_KERNELS); do \
		if [ ! -f "/lib/modules/$$k/build/Makefile" ]; then \
			echo "install: no kernel build tree /lib/modules/$$k/build:" \
				"install linux-headers-$$k, or set KVER=<release>" >&2; \
			exit 1; \
		fi; \
	done; \
	dest="$(DESTDIR)"; \
	if [ -n "$$dest" ]; then mkdir -p "$$dest"; dest=$$(cd "$$dest" && pwd); fi; \
	for k in $(INSTALL_KERNELS); do \
		$(MAKE) --no-print-directory -C kmod KVER=$$k DESTDIR="$$dest" \
			modules_install; \
	done

install-userspace:
	@set -e; \
	for f in man/*.5 man/*.8 man/*.9; do \
		[ -f "$$f" ] || continue; \
		d="$(DESTDIR)$(MANDIR)/man$${f##*.}"; \
		echo "  INSTALL $$d/$${f##*/}"; \
		install -D -m 644 "$$f" "$$d/$${f##*/}"; \
	done; \
	for f in $(CONF_FILES); do \
		src=$${f%%:*}; d="$(DESTDIR)$${f#*:}"; t="$$d/$${src##*/}"; \
		echo "  INSTALL $$t"; \
		install -d "$$d"; \
		sed 's|@SBINDIR@|$(SBINDIR)|g' "$$src" > "$$t.tmp"; \
		chmod 644 "$$t.tmp"; mv -f "$$t.tmp" "$$t"; \
	done; \
	if [ -f cli/Makefile ]; then \
		$(MAKE) --no-print-directory -C cli install $(CLI_VARS); \
	else \
		echo "install: no cli/Makefile: the vfmediate CLI is not installed" >&2; \
	fi; \
	if [ -z "$(DESTDIR)" ]; then \
		if command -v udevadm >/dev/null && [ -d /run/udev ]; then \
			udevadm control --reload || :; \
		fi; \
		if [ -d /run/systemd/system ]; then systemctl daemon-reload || :; fi; \
	fi

uninstall:
	@set -e; \
	for k in $(INSTALL_KERNELS); do \
		d="$(DESTDIR)/lib/modules/$$k/extra"; \
		for f in $(addprefix "$$d"/,$(MODULE_FILES)); do \
			[ -e "$$f" ] || continue; \
			echo "  RM      $$f"; rm -f "$$f"; \
		done; \
		rmdir "$$d/mediators" "$$d" 2>/dev/null || :; \
		if [ -z "$(DESTDIR)" ] && [ -d "/lib/modules/$$k/kernel" ]; then \
			echo "  DEPMOD  $$k"; depmod -a "$$k"; \
		fi; \
	done; \
	{ for f in man/*.5 man/*.8 man/*.9; do \
		if [ -f "$$f" ]; then echo "$(MANDIR)/man$${f##*.}/$${f##*/}"; fi; \
	  done; \
	  for f in $(CONF_FILES); do \
		src=$${f%%:*}; echo "$${f#*:}/$${src##*/}"; \
	  done; } | \
	while read -r f; do \
		[ -e "$(DESTDIR)$$f" ] || continue; \
		echo "  RM      $(DESTDIR)$$f"; rm -f "$(DESTDIR)$$f"; \
	done; \
	if [ -f cli/Makefile ] && grep -q '^uninstall[ 	]*:' cli/Makefile; then \
		$(MAKE) --no-print-directory -C cli uninstall $(CLI_VARS); \
	fi

# The DKMS source tree, /usr/src/vfmediate-<version> (under DESTDIR).
dkms-source:
	@scripts/dkms source "$(DESTDIR)/usr/src/vfmediate-$(VERSION)"

# dkms add/build/remove for every supported installed kernel (KVER: those
# only), in a private DKMS tree: the host is left as it was.
dkms-check:
	@scripts/dkms check $(KERNELS) $(if $(KVER),,$(shell tests/vm/kernels --debug))

clean:
	rm -rf build
	@$(MAKE) --no-print-directory -C cli clean
