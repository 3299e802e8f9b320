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
#   make debug-kernel  build (if stale) and install the debug kernel
#   make check-debug   the guest suite on the debug kernel only
#
# KVER=<release> restricts build and check to one installed kernel (the
# debug kernel's release included); the debug kernel is then not built.

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
	@$(MAKE) --no-print-directory check-kernels

debug-kernel:
	@scripts/debug-kernel

# The debug lane alone: the whole suite on the KASAN/lockdep/PROVE_RCU/
# kmemleak kernel (built and cached on first use, about 15 minutes).
check-debug: deps
	@scripts/debug-kernel
	@tests/run-suite $$(tests/vm/kernels --debug)

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
	[ -n "$$k" ] || k=$$(tests/vm/kernels | grep -v -- '-vfm-debug$$' | tail -n1); \
	[ -n "$$k" ] || { echo "demo: no supported kernel installed" >&2; exit 1; }; \
	mkdir -p build; \
	echo "demo: building the modules for $$k and the vfmediate command"; \
	{ $(MAKE) --no-print-directory -C kmod KVER=$$k && \
	  $(MAKE) --no-print-directory -C cli; } > build/demo-build.log 2>&1 || \
		{ cat build/demo-build.log >&2; echo "demo: build failed" >&2; exit 1; }; \
	echo "demo: booting a test guest ($$k), about a minute"; \
	tests/vm/run --kernel $$k -- tests/demo/demo.sh

# README's "Performance": for each supported kernel (not the debug
# kernel: its figures would mean nothing) a test guest runs
# tests/bench/run.py, about 6 minutes each; results under build/bench/.
.PHONY: bench bench-kernels
bench: deps
	@$(MAKE) --no-print-directory bench-kernels

bench-kernels:
	@tests/bench/bench -- $(filter-out %-vfm-debug,$(KERNELS))

clean:
	rm -rf build
	@$(MAKE) --no-print-directory -C cli clean
