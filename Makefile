# SPDX-License-Identifier: GPL-2.0
#
# vfmediate top-level build.
#
#   make            build the kernel modules for every supported kernel
#   make check      install dependencies, build, run the guest test suite
#                   on every supported kernel (the CI entry point)
#   make vm         a shell in a test guest (KVER=<release> to choose)
#
# KVER=<release> restricts build and check to one installed kernel.

KERNELS := $(if $(KVER),$(KVER),$(shell tests/vm/kernels))
PYTEST_ARGS ?=

.PHONY: all deps modules check check-kernel kcheck vm clean

all: modules

deps:
	@scripts/install-deps

modules:
	@set -e; for k in $(KERNELS); do $(MAKE) -C kmod KVER=$$k; done

kcheck:
	$(MAKE) -C kmod check

# Deps come first and in their own make: the kernel list is only known
# once the kernels are installed.
check: deps
	@$(MAKE) --no-print-directory check-kernels

check-kernels:
	@tests/run-suite $(KERNELS)

vm: modules
	tests/vm/run $(if $(KVER),--kernel $(KVER)) --keep-shell

clean:
	rm -rf build
