#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# tests/demo/demo.sh: the story `make demo` tells, in the test guest
# (tests/vm/run -- tests/demo/demo.sh). An operator guards parts of two
# passed-through functions with the vfmediate command alone (bind, rule
# add, attach), a VFIO user (tests/demo/vfio-client.py) then shows what
# it sees, and the operator reads back what happened: show, stats and
# the events "vfmediate monitor" captured meanwhile.
#
# Every check is counted and must hold: the first that does not ends the
# demo with a message and exit status 1. Commands that merely do what
# they are told are shown but not counted.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
VFM=$(cd "$here/../../cli" && pwd)/vfmediate
PCI=/sys/bus/pci/devices
GHOST=0000:7f:1f.7		# no such function: a configuration waiting
checks=0
tmp=$(mktemp -d)

fail() {
	printf '\ndemo: FAILED: %s\n' "$*" >&2
	exit 1
}

say() {
	printf '\n== %s\n' "$*"
}

# run CMD...: show the operator's command, then run it; it must succeed.
run() {
	printf '# %s\n' "$*"
	"$@" || fail "'$*' failed"
}

# vfm ARGS...: the vfmediate command, shown as the operator types it.
vfm() {
	printf '# vfmediate %s\n' "$*"
	"$VFM" "$@" || fail "'vfmediate $*' failed"
}

# check WHAT PYEXPR ARGS...: "vfmediate -j ARGS" must give JSON j for
# which the Python expression PYEXPR holds.
check() {
	what=$1 expr=$2
	shift 2
	"$VFM" -j "$@" > "$tmp/out.json" ||
		fail "'vfmediate -j $*' failed"
	python3 - "$expr" "$tmp/out.json" <<-'EOF' || fail "$what"
	import json, sys
	j = json.load(open(sys.argv[2]))
	sys.exit(0 if eval("(" + sys.argv[1] + ")") else 1)
	EOF
	printf '   ok: %s\n' "$what"
	checks=$((checks + 1))
}

# client BDF STEP...: the VFIO user's side; it checks its own steps.
client() {
	python3 "$here/vfio-client.py" "$@" ||
		fail "the VFIO user did not see what it was told it would"
	checks=$((checks + $# - 1))
}

# find_fn VENDOR DEVICE [vf]: the first function with that ID (a VF with vf).
find_fn() {
	for d in "$PCI"/*; do
		[ "$(cat "$d/vendor"):$(cat "$d/device")" = "$1:$2" ] || continue
		[ "${3:-}" = vf ] && [ ! -e "$d/physfn" ] && continue
		basename "$d"
		return
	done
}

[ -x "$VFM" ] || fail "$VFM is not built (make -C cli)"
EDU=$(find_fn 0x1234 0x11e8)
VF=$(find_fn 0x1b36 0x0010 vf)
[ -n "$EDU" ] || fail "no edu device (1234:11e8) in the guest"
[ -n "$VF" ] || fail "no NVMe VF (1b36:0010) in the guest"
MON=

cleanup() {
	[ -z "$MON" ] || kill "$MON" 2>/dev/null || true
	for b in "$EDU" "$VF" "$GHOST"; do
		"$VFM" detach "$b" 2>/dev/null
		for r in $("$VFM" rule list "$b" 2>/dev/null |
			   awk 'NR > 1 { print $2 " " $3 }' | tr ' ' ':'); do
			"$VFM" rule del "$b" "${r%%:*}" "${r#*:}"
		done
		rmdir "/sys/kernel/config/vfmediate/devices/$b"
		[ -e "$PCI/$b/driver" ] && "$VFM" unbind "$b"
	done > /dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT

say "1. vfmediate: a vfio-pci drop-in, its mediators and its netlink family"
run modprobe vfmediate
vfm mediators
check "the mediators shipped are there" \
	'{"audit", "nop", "regshadow"} <= {m["name"] for m in j}' mediators

say "2. The operator watches: vfmediate monitor, in the background"
printf '# vfmediate -j monitor > events &\n'
"$VFM" -j monitor > "$tmp/events" 2> "$tmp/monitor.err" &
MON=$!
# Subscribed once an event of its own comes through: attach a mediator
# to a configuration that waits for a function not there yet.
i=0
until grep -q "\"$GHOST\"" "$tmp/events"; do
	i=$((i + 1))
	[ $i -le 50 ] || fail "the monitor heard nothing: $(cat "$tmp/monitor.err")"
	"$VFM" attach "$GHOST" nop > /dev/null || fail "attach $GHOST failed"
	"$VFM" detach "$GHOST" > /dev/null || fail "detach $GHOST failed"
	sleep 0.1
done
rmdir "/sys/kernel/config/vfmediate/devices/$GHOST"
printf '   ok: the monitor hears\n'
checks=$((checks + 1))

say "3. Two functions go to vfmediate: QEMU's edu ($EDU) and an NVMe VF ($VF)"
vfm bind "$EDU"
vfm bind "$VF"
vfm show "$EDU"
check "edu is bound, nothing configured yet" \
	'j[0]["state"] == "bound" and not j[0]["configured"]' show "$EDU"

say "4. Rules for edu's BAR0: ID read-only, liveness audited, factorial denied"
vfm rule add "$EDU" bar0 id-ro 0x00+4 ro
vfm rule add "$EDU" bar0 liveness-audit 0x04+4 pass audit on
vfm rule add "$EDU" bar0 no-factorial 0x08+4 deny
vfm rule list "$EDU"
check "three rules, ranges as the kernel reads them back" \
	'[(r["name"], r["range"], r["action"]) for r in j] == [
	 ("id-ro", "0x0-0x3", "ro"), ("liveness-audit", "0x4-0x7", "pass"),
	 ("no-factorial", "0x8-0xb", "deny")]' rule list "$EDU"

say "5. The VF: CSTS handed to the nop mediator, VS audited, AQA read-only"
vfm attach "$VF" nop bar=0,range=0x1c+4
vfm rule add "$VF" bar0 vs-audit 0x08+4 pass audit on
vfm rule add "$VF" bar0 aqa-ro 0x24+4 ro
check "the VF's configuration waits for an open" \
	'j[0]["mediator"] == "nop" and j[0]["state"] == "bound"' show "$VF"

say "6. What the VFIO user sees on edu: page 0 (the rules) trapped, the rest mmap'ed"
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

say "7. ... and on the VF: registers trapped, doorbells and MSI-X still mmap'ed"
client "$VF" \
	"info:bar0=read,write,mmap,caps/0x1000+0x3000" \
	"read:bar0:0x08:4=0x00010400" \
	"read:bar0:0x1c:4=0" \
	"read:bar0:0x24:4=0" \
	"write:bar0:0x24:4:0x001f001f=EPERM" \
	"read:bar0:0x24:4=0" \
	"mmap:bar0:0x0:0x1000=EINVAL" \
	"mmap:bar0:0x1000:0x1000=ok"

say "8. What the operator reads back: show and stats"
vfm show
vfm stats "$EDU"
check "edu ran one table and is closed again" \
	'j[0]["state"] == "bound" and j[0]["generation"] == 0 and
	 not j[0]["pending"] and j[0]["error"] == ""' show "$EDU"
check "per rule: hits, bytes and refusals of each access above" \
	'{r["name"]: (r["hits"], r["bytes"], r["refused"])
	  for g in j[0]["regions"] for r in g["rules"]} == {
	 "id-ro": (3, 12, 1), "liveness-audit": (2, 8, 0),
	 "no-factorial": (2, 8, 2)}' stats "$EDU"
check "the VF's: VS read once, AQA read twice and refused once" \
	'{r["name"]: (r["hits"], r["refused"])
	  for g in j[0]["regions"] for r in g["rules"]} == {
	 "vs-audit": (1, 0), "aqa-ro": (3, 1)}' stats "$VF"

say "9. ... and what vfmediate monitor saw meanwhile"
# Accesses the rate limit held back are summed up within a second.
i=0
until python3 "$here/story.py" "$tmp/events" "$EDU" "$VF"; do
	i=$((i + 1))
	[ $i -le 30 ] || break
	sleep 0.1
done
kill "$MON"
wait "$MON" 2>/dev/null || true
MON=
grep -e "\"$EDU\"" -e "\"$VF\"" "$tmp/events" || true
python3 "$here/story.py" "$tmp/events" "$EDU" "$VF" --show ||
	fail "the events are not what happened"
printf '   ok: every bind, open and close in order, every guarded access\n'
checks=$((checks + 1))

say "10. Rules gone, edu is plain passthrough again; both functions back"
vfm rule del "$EDU" bar0 id-ro
vfm rule del "$EDU" bar0 liveness-audit
vfm rule del "$EDU" bar0 no-factorial
client "$EDU" \
	"info:bar0=read,write,mmap/none" \
	"mmap:bar0:0x0:0x1000=ok" \
	"write:bar0:0x08:4:5=ok"
vfm detach "$VF"
vfm rule del "$VF" bar0 vs-audit
vfm rule del "$VF" bar0 aqa-ro
vfm unbind "$EDU"
vfm unbind "$VF"
for b in "$EDU" "$VF"; do
	check "$b unbound, no mediator left" \
		'(j[0]["state"], j[0]["mediator"]) == ("absent", "")' show "$b"
done
check "no rule left" 'j == []' rule list

trap - EXIT
cleanup
printf '\ndemo: all %d checks held\n' "$checks"
