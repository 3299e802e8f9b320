#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# tests/demo/demo.sh: the story `make demo` tells, in the test guest
# (tests/vm/run -- tests/demo/demo.sh). An admin guards parts of two
# passed-through functions with mkdir, echo and cat alone; a VFIO user
# (tests/demo/vfio-client.py) then shows what it sees. Every step is
# checked: anything that does not behave as told ends the demo with a
# message and exit status 1.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
CFG=/sys/kernel/config/vfmediate
PCI=/sys/bus/pci/devices
steps=0

fail() {
	printf '\ndemo: FAILED: %s\n' "$*" >&2
	exit 1
}

say() {
	printf '\n== %s\n' "$*"
}

# run CMD...: show the admin's command, then run it.
run() {
	printf '# %s\n' "$*"
	eval "$@" || fail "'$*' failed"
	steps=$((steps + 1))
}

# expect FILE VALUE: cat FILE, which must read VALUE.
expect() {
	got=$(cat "$1") || fail "cannot read $1"
	printf '# cat %s\n%s\n' "$1" "$got"
	[ "$got" = "$2" ] || fail "$1 reads '$got', not '$2'"
	steps=$((steps + 1))
}

# client BDF STEP...: the VFIO user's side; it checks its own steps.
client() {
	python3 "$here/vfio-client.py" "$@" ||
		fail "the VFIO user did not see what it was told it would"
	steps=$((steps + $# - 1))
}

# find VENDOR DEVICE [vf]: the first function with that ID (a VF with vf).
find_fn() {
	for d in "$PCI"/*; do
		[ "$(cat "$d/vendor"):$(cat "$d/device")" = "$1:$2" ] || continue
		[ "${3:-}" = vf ] && [ ! -e "$d/physfn" ] && continue
		basename "$d"
		return
	done
}

# bind BDF: hand the function to vfmediate, as driverctl or libvirt do.
bind() {
	if [ -e "$PCI/$1/driver" ]; then
		run "echo $1 > $PCI/$1/driver/unbind"
	fi
	run "echo vfmediate > $PCI/$1/driver_override"
	run "echo $1 > /sys/bus/pci/drivers_probe"
	drv=$(basename "$(readlink "$PCI/$1/driver")")
	printf '# basename $(readlink %s/driver)\n%s\n' "$PCI/$1" "$drv"
	[ "$drv" = vfmediate ] || fail "$1 is bound to '$drv', not vfmediate"
}

# rule BDF REGION NAME RANGE ACTION [AUDIT]
rule() {
	r=$CFG/devices/$1/regions/$2/rules/$3
	run "mkdir $r"
	run "echo $4 > $r/range"
	run "echo $5 > $r/action"
	[ -z "${6:-}" ] || run "echo $6 > $r/audit"
}

EDU=$(find_fn 0x1234 0x11e8)
VF=$(find_fn 0x1b36 0x0010 vf)
[ -n "$EDU" ] || fail "no edu device (1234:11e8) in the guest"
[ -n "$VF" ] || fail "no NVMe VF (1b36:0010) in the guest"

cleanup() {
	for b in "$EDU" "$VF"; do
		d=$CFG/devices/$b
		if [ -d "$d" ]; then
			for r in "$d"/regions/*/rules/*; do
				[ -d "$r" ] && rmdir "$r"
			done
			rmdir "$d"
		fi
		[ -e "$PCI/$b/driver" ] && echo "$b" > "$PCI/$b/driver/unbind"
		echo > "$PCI/$b/driver_override"
	done 2>/dev/null || true
}
trap cleanup EXIT

say "1. vfmediate: a vfio-pci drop-in with a configfs tree"
run modprobe vfmediate
run "ls $CFG"

say "2. Two functions go to vfmediate: QEMU's edu ($EDU) and an NVMe VF ($VF)"
bind "$EDU"
bind "$VF"

say "3. The admin writes rules for edu's BAR0"
echo "   0x00 ID: read-only; 0x04 liveness: passed through, audited;"
echo "   0x08 factorial: denied"
run "mkdir $CFG/devices/$EDU"
expect "$CFG/devices/$EDU/state" bound
rule "$EDU" bar0 id-ro 0x00+4 ro
rule "$EDU" bar0 liveness-audit 0x04+4 pass 1
rule "$EDU" bar0 no-factorial 0x08+4 deny
expect "$CFG/devices/$EDU/regions/bar0/rules/no-factorial/range" 0x8-0xb

say "4. ... and for the VF's: VS audited, AQA read-only; doorbells untouched"
run "mkdir $CFG/devices/$VF"
rule "$VF" bar0 vs-audit 0x08+4 pass 1
rule "$VF" bar0 aqa-ro 0x24+4 ro

say "5. What the VFIO user sees on edu: page 0 (the rules) trapped, the rest mmap'ed"
client "$EDU" \
	"info:bar0=read,write,mmap,caps/0x1000+0xff000" \
	"read:bar0:0x00:4=0x010000ed" \
	"write:bar0:0x00:4:0xffffffff=EPERM" \
	"read:bar0:0x00:4=0x010000ed" \
	"write:bar0:0x04:4:0x12345678=ok" \
	"read:bar0:0x04:4=0xedcba987" \
	"read:bar0:0x08:4=EACCES" \
	"write:bar0:0x08:4:5=EACCES" \
	"mmap:bar0:0x0:0x1000=EINVAL" \
	"mmap:bar0:0x1000:0x1000=ok"
expect "$CFG/devices/$EDU/regions/bar0/rules/id-ro/hits" 3
expect "$CFG/devices/$EDU/regions/bar0/rules/liveness-audit/hits" 2
expect "$CFG/devices/$EDU/regions/bar0/rules/no-factorial/hits" 2

say "6. ... and on the VF: registers trapped, doorbells and MSI-X still mmap'ed"
client "$VF" \
	"info:bar0=read,write,mmap,caps/0x1000+0x3000" \
	"read:bar0:0x08:4=0x00010400" \
	"read:bar0:0x24:4=0" \
	"write:bar0:0x24:4:0x001f001f=EPERM" \
	"read:bar0:0x24:4=0" \
	"mmap:bar0:0x0:0x1000=EINVAL" \
	"mmap:bar0:0x1000:0x1000=ok"
expect "$CFG/devices/$VF/regions/bar0/rules/vs-audit/hits" 1
expect "$CFG/devices/$VF/regions/bar0/rules/aqa-ro/hits" 3

say "7. Without rules, edu is plain passthrough again"
run "rmdir $CFG/devices/$EDU/regions/bar0/rules/*"
run "rmdir $CFG/devices/$EDU"
client "$EDU" \
	"info:bar0=read,write,mmap/none" \
	"mmap:bar0:0x0:0x1000=ok" \
	"write:bar0:0x08:4:5=ok"

trap - EXIT
cleanup
printf '\ndemo: all %d steps behaved as told\n' "$steps"
