#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""The vfmediate benchmark driver, run inside the test guest (as root).

    tests/bench/run.py [--smoke] [--rounds N] [--only NAME,...]
                       [--bin PATH] [--out FILE]

Takes two functions of the same kind (two edu devices when the guest has
them, tests/vm/run --edu 2; else two NVMe VFs), and for every scenario:

1. configures vfmediate through configfs, identically for both
   functions (rules only act on the one bound to vfmediate);
2. runs N rounds; a round binds one function to vfmediate and the other
   to vfio-pci (which one alternates round by round, and which of them
   the process names first alternates every other round), then runs a fresh
   vfbench process that opens both and times the same operation on
   both, alternately, in blocks; it does so --reopen times, closing and
   opening the devices in between. Each of those runs gives one sample:
   the median over its blocks of the ratio vfmediate / vfio-pci of two
   blocks run back to back;
3. the "floor" scenario does exactly the same with both functions on
   vfio-pci: its ratios are the noise floor of the method.

Writes every round's raw output and the summary as JSON (--out) and
prints the table (tests/bench/report.py formats it). With --smoke, a few
short rounds of every scenario: it checks that each scenario does what
it claims (errnos, hit counters, table sizes), not how fast it is.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
sys.path.insert(0, HERE)

import pci  # noqa: E402
import report  # noqa: E402
import vfm  # noqa: E402

EDU_ID = (0x1234, 0x11E8)
NVME_ID = (0x1B36, 0x0010)
RULES_MAX = 1024


class Profile:
    """Where a kind of function is accessed and where filler rules go.

    roff/woff: the registers read and written (side-effect free);
    filler rule i covers [base + i*stride, +flen); "last" places the
    accessed window above every filler, at last_off."""

    def __init__(self, kind, roff, woff, wval, base, stride, flen, last_off,
                 mmap_rules_off):
        self.kind = kind
        self.roff, self.woff, self.wval = roff, woff, wval
        self.base, self.stride, self.flen = base, stride, flen
        self.last_off = last_off
        self.mmap_rules_off = mmap_rules_off


PROFILES = {
    # edu BAR0 (1 MiB): 0x00 ID (read), 0x04 liveness (write: any value);
    # offsets edu does not decode read as ~0 and ignore writes.
    "edu": Profile("edu", 0x0, 0x4, 0x5a5a5a5a, base=0x1000, stride=0x100,
                   flen=8, last_off=0x1000 + RULES_MAX * 0x100,
                   mmap_rules_off=0x1000),
    # NVMe VF BAR0 (16 KiB): 0x08 VS (read), 0x0c INTMS (write 0: sets
    # no mask bit); 0x40..0xfff is reserved (reads 0, writes ignored).
    "nvme": Profile("nvme", 0x8, 0xC, 0, base=0x40, stride=2, flen=1,
                    last_off=0xE00, mmap_rules_off=0x1000),
}


def find_pair():
    """(profile, [bdf_x, bdf_y]): two edu, else two NVMe VFs."""
    edus = sorted(pci.find_functions(*EDU_ID))
    if len(edus) >= 2:
        return PROFILES["edu"], edus[:2]
    vfs = sorted(b for b in pci.find_functions(*NVME_ID) if pci.physfn(b))
    if len(vfs) >= 2:
        return PROFILES["nvme"], vfs[:2]
    raise SystemExit("bench: needs two edu devices (tests/vm/run --edu 2) "
                     "or two NVMe VFs")


def window(lo, hi):
    """configfs range string of [lo, hi)."""
    return f"{lo:#x}-{hi - 1:#x}"


class Scenario:
    """One vfmediate configuration and the operations timed under it.

    nrules: total rules including the one on the accessed window (the
    others are "deny" fillers elsewhere); action: what the rule on the
    accessed window does (None: no rule there); last: that rule is the
    highest interval of the table; mediator: attach nop trapping the
    window; expect: the first result vfmediate must give, per op."""

    def __init__(self, name, label, ops, nrules=0, action=None, audit=0,
                 last=False, mediator=False, mmap_rules=0, floor=False,
                 expect=None, group="access", touch=False, listen=False,
                 applies=False):
        self.name, self.label, self.ops = name, label, ops
        self.listen, self.applies = listen, applies
        self.nrules, self.action, self.audit = nrules, action, audit
        self.last, self.mediator, self.mmap_rules = last, mediator, mmap_rules
        self.floor = floor
        self.touch = touch
        self.expect = expect or {}
        self.group = group

    def offsets(self, prof):
        if self.last:
            return prof.last_off, prof.last_off + (prof.woff - prof.roff)
        return prof.roff, prof.woff

    def configure(self, bdf, prof):
        """Create this scenario's configfs state for @bdf; returns the Vfm."""
        if self.floor or (not self.nrules and not self.mediator
                          and not self.mmap_rules):
            return None
        roff, woff = self.offsets(prof)
        lo, hi = min(roff, woff), max(roff, woff) + 4
        v = vfm.Vfm(bdf, mediator="nop" if self.mediator else None,
                    args=f"bar=0,range={window(lo, hi)}"
                    if self.mediator else None)
        v.create()
        try:
            fillers = self.nrules - (1 if self.action else 0)
            for i in range(fillers):
                start = prof.base + i * prof.stride
                add_filler(v, f"f{i:04d}", window(start, start + prof.flen))
            if self.action:
                v.add_rule("bar0", "target", window(lo, hi), self.action,
                           audit=self.audit)
            for i in range(self.mmap_rules):
                start = prof.mmap_rules_off + i * 0x100
                add_filler(v, f"m{i:04d}", window(start, start + 8))
        except BaseException:
            v.remove()
            raise
        return v


def add_filler(v, name, rng):
    """A deny rule on BAR0 with the fewest writes (access rw and audit 0
    are the defaults; an unfinished rule already denies)."""
    r = vfm.Rule(v, "bar0", name)
    os.mkdir(r.path)
    v.rules.append(r)
    r.write("range", rng)
    r.write("action", "deny")


READ_WRITE = ["pread", "pwrite"]
SOFTWARE = READ_WRITE + ["null"]

SCENARIOS = [
    Scenario("floor", "vfio-pci / vfio-pci (noise floor)",
             READ_WRITE + ["mmap", "open"], floor=True),
    Scenario("none", "no rules", READ_WRITE + ["mmap", "open"]),
    Scenario("r16", "16 rules, access on a pass rule", READ_WRITE,
             nrules=16, action="pass"),
    Scenario("r1024", "1024 rules, access on a pass rule",
             READ_WRITE + ["open"], nrules=1024, action="pass"),
    # Reopening an unchanged configuration reuses the compiled rules;
    # here a change is staged before every open, which compiles again.
    Scenario("r1024c", "1024 rules, open after a change", ["open"],
             nrules=1024, action="pass", touch=True),
    Scenario("r1024last", "1024 rules, access on the last rule", READ_WRITE,
             nrules=1024, action="pass", last=True),
    # The same while another CPU applies a change of one of the 1024
    # rules live in a loop: each apply compiles and publishes a table
    # under the accesses. The applies are timed too.
    Scenario("applies", "1024 rules, pass, during live applies",
             READ_WRITE, nrules=1024, action="pass", applies=True),
    Scenario("audit", "audit rule on the access", READ_WRITE, nrules=1,
             action="pass", audit=1),
    # The same with a netlink monitor listening: every access is an event
    # (rate-limited to 10 a second, the rest counted as suppressed).
    Scenario("auditmon", "audit rule on the access, monitor listening",
             READ_WRITE, nrules=1, action="pass", audit=1, listen=True),
    # nop traps the window (its arguments) and a trap rule names it, so
    # the rule's hits show that the accesses were trapped.
    Scenario("trap", "trap to the nop mediator", READ_WRITE, nrules=1,
             action="trap", mediator=True),
    Scenario("ro", "ro rule (write refused)", READ_WRITE, nrules=1,
             action="ro", expect={"pwrite": "EPERM"}),
    Scenario("deny", "deny rule (refused)", READ_WRITE, nrules=1,
             action="deny", expect={"pread": "EACCES", "pwrite": "EACCES"}),
    Scenario("mmap16", "mmap'ed page, 16 rules on other pages", ["mmap"],
             mmap_rules=16),
    # "null": a read past the end of BAR0, refused by vfio-pci-core
    # before any device access: the cost of the system call and VFIO.
    Scenario("ignore1", "ignore rule, no other rule", SOFTWARE, nrules=1,
             action="ignore", group="software"),
    Scenario("ignore16", "ignore rule, 16 rules", SOFTWARE, nrules=16,
             action="ignore", group="software"),
    Scenario("ignore1024", "ignore rule, 1024 rules", SOFTWARE,
             nrules=1024, action="ignore", group="software"),
]


def bind_roles(pair, vfm_bdf, floor):
    for bdf in pair:
        drv = "vfmediate" if (bdf == vfm_bdf and not floor) else "vfio-pci"
        pci.bind(bdf, drv)


def _flip(res):
    """A vfbench result seen from the other side: A and B swapped and
    the per-block ratios inverted."""
    r = res["ratio"]
    return {**res, "A": res["B"], "B": res["A"],
            "ratio": {"med": 1 / r["med"], "p10": 1 / r["p90"],
                      "p90": 1 / r["p10"]}}


def round_roles(pair, k):
    """(function on vfmediate, its position in vfbench's arguments) for
    round k. Both alternate, so that every four rounds cover the four
    combinations and any two the two functions and the two positions:
    under emulation a function can be slower for where it sits (which
    of the two the process names first) as well as for what it is, and
    each must fall on both drivers alike."""
    return pair[k % 2], ((k + 1) // 2) % 2


class Applier:
    """Applies a change of one filler rule to the function on vfmediate
    in a loop, from a thread of this process (vfbench runs pinned to
    another CPU), and times each apply."""

    def __init__(self, bdf):
        dev = f"{vfm.DEVICES}/{bdf}"
        self.rule = f"{dev}/regions/bar0/rules/f0000/audit"
        self.apply = f"{dev}/apply"
        self.generation = f"{dev}/generation"
        self.stop = threading.Event()
        self.ns = []
        self.thread = threading.Thread(target=self.run)

    def gen(self):
        with open(self.generation) as f:
            return f.read()

    def run(self):
        i = 0
        while not self.stop.is_set():
            i += 1
            with open(self.rule, "w") as f:
                f.write(str(i & 1))
            before = self.gen()
            t0 = time.monotonic_ns()
            with open(self.apply, "w") as f:
                f.write("1")
            t = time.monotonic_ns() - t0
            # Only applies that published a table: the device is closed
            # while vfbench starts and ends, and an apply then waits.
            if self.gen() != before:
                self.ns.append(t)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def run_round(args, prof, scen, pair, k):
    """One round: bind, run one vfbench process per set of operations,
    return the results with A always the function bound to vfmediate
    (in the floor: the one that would be)."""
    a, pos = round_roles(pair, k)
    b = pair[1] if a == pair[0] else pair[0]
    bind_roles(pair, a, scen.floor)
    roff, woff = scen.offsets(prof)
    ops = [op for op in scen.ops if op != "open"]
    sets = [ops] if ops else []
    if "open" in scen.ops:
        sets.append(["open"])
    out = {"a": a, "b": b, "a_pos": pos, "runs": []}
    for oplist in sets:
        is_open = oplist == ["open"]
        cmd = [args.bin, "--ops", ",".join(oplist), "--blocks",
               str(args.open_blocks if is_open else args.blocks),
               "--reopen", str(1 if is_open else args.reopen),
               "--roff", hex(roff), "--woff", hex(woff),
               "--wval", hex(prof.wval), "--cpu", str(args.cpu)]
        for op, n in args.iters.items():
            cmd += ["--iters", f"{op}={n}"]
        if not scen.floor:
            cmd += ["--cfs-b" if pos else "--cfs-a", f"{vfm.DEVICES}/{a}"]
        if scen.touch and not scen.floor:
            cmd += ["--touch",
                    f"{vfm.DEVICES}/{a}/regions/bar0/rules/target/audit"]
        cmd += [b, a] if pos else [a, b]
        if scen.applies and not scen.floor:
            with Applier(a) as ap:
                p = subprocess.run(cmd, capture_output=True, text=True)
            out.setdefault("apply_ns", []).extend(ap.ns)
        else:
            p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"{scen.name}: {' '.join(cmd)}: "
                               f"{p.stderr.strip()}")
        res = json.loads(p.stdout)
        for i, run in enumerate(res["runs"]):
            if i >= len(out["runs"]):
                out["runs"].append({"ops": {}})
            for op, r in run["ops"].items():
                out["runs"][i]["ops"][op] = _flip(r) if pos else r
        cfs = res["cfs"]
        if pos:
            cfs = {"A": cfs["B"], "B": cfs["A"]}
        if not is_open or "cfs" not in out:
            out["cfs"] = cfs
    return out


def check_round(scen, r, errors):
    """The scenario did what it says: results of the first operations."""
    for run in r["runs"]:
        for op, res in run["ops"].items():
            if op not in ("pread", "pwrite", "null"):
                continue
            base = "EINVAL" if op == "null" else 4
            want = scen.expect.get(op, base)
            for side, exp in (("A", want), ("B", base)):
                got = res[side]["ret"]
                if got != exp:
                    errors.append(f"{scen.name} {op} {side}: result {got}, "
                                  f"expected {exp}")


LISTENER = f"""
import signal, sys
sys.path.insert(0, {os.path.join(ROOT, "tests", "lib")!r})
from vfmnl import Nl, A
n = 0
def stop(*_):
    print(n, flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
with Nl() as nl:
    nl.subscribe()
    print("ready", flush=True)
    while True:
        e = nl.event(timeout=3600)
        if e is not None and e.has(A.OFFSET):
            n += 1 + e.u64(A.SUPPRESSED)
"""


def start_listener():
    p = subprocess.Popen([sys.executable, "-c", LISTENER],
                         stdout=subprocess.PIPE, text=True)
    if p.stdout.readline().strip() != "ready":
        raise RuntimeError("the netlink listener did not start")
    return p


def stop_listener(p):
    """The accesses the listener's events accounted for."""
    p.terminate()
    out, _ = p.communicate(timeout=30)
    return int(out.strip() or 0)


def run_scenario(args, prof, scen, pair):
    cfgs = []
    listener = start_listener() if scen.listen else None
    t0 = time.monotonic()
    try:
        for bdf in pair:
            v = scen.configure(bdf, prof)
            if v:
                cfgs.append(v)
        setup_s = time.monotonic() - t0
        rounds, errors = [], []
        for k in range(args.rounds):
            r = run_round(args, prof, scen, pair, k)
            check_round(scen, r, errors)
            rounds.append(r)
        hits = None
        if (scen.audit or scen.action == "trap") and cfgs:
            hits = sum(v.rule("bar0", "target").hits for v in cfgs)
            if hits <= 0:
                errors.append(f"{scen.name}: the {scen.action} rule "
                              "counted no hit")
        if scen.applies:
            n = sum(len(r.get("apply_ns", [])) for r in rounds)
            if n <= 0:
                errors.append(f"{scen.name}: no live apply ran")
        if listener:
            heard = stop_listener(listener)
            listener = None
            if heard <= 0:
                errors.append(f"{scen.name}: the listener heard no event")
    finally:
        if listener:
            listener.kill()
        for bdf in pair:
            pci.bind(bdf, "vfio-pci")
        for v in cfgs:
            v.remove()
    return {"name": scen.name, "label": scen.label, "group": scen.group,
            "floor": scen.floor, "nrules": scen.nrules, "ops": scen.ops,
            "setup_s": round(setup_s, 2),
            "run_s": round(time.monotonic() - t0 - setup_s, 2),
            "audit_hits": hits, "errors": errors, "rounds": rounds}


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true",
                    help="a few short rounds, checks only")
    ap.add_argument("--rounds", type=int, help="processes per scenario")
    ap.add_argument("--blocks", type=int, help="A/B blocks per run")
    ap.add_argument("--reopen", type=int,
                    help="runs (device opens) per process")
    ap.add_argument("--open-blocks", type=int,
                    help="A/B open+close pairs per process")
    ap.add_argument("--only", help="comma-separated scenario names")
    ap.add_argument("--cpu", type=int, default=1, help="CPU to run on")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bench",
                                                  "vfbench"))
    ap.add_argument("--out", help="JSON file for the raw results")
    args = ap.parse_args(argv)
    if args.smoke:
        args.rounds = args.rounds or 2
        args.reopen = args.reopen or 2
        args.blocks = args.blocks or 3
        args.open_blocks = args.open_blocks or 2
        args.iters = {"pread": 20, "pwrite": 20, "null": 20, "mmap": 100}
    else:
        args.rounds = args.rounds or 24
        args.reopen = args.reopen or 5
        args.blocks = args.blocks or 24
        args.open_blocks = args.open_blocks or 12
        args.iters = {"pread": 150, "pwrite": 150, "null": 150,
                      "mmap": 1500}
    if args.cpu >= os.cpu_count():
        args.cpu = 0
    return args


def main(argv=None):
    args = parse_args(argv)
    if not os.access(args.bin, os.X_OK):
        raise SystemExit(f"bench: {args.bin} missing (make bench builds it)")
    pci.modprobe("vfio-pci", "vfmediate")
    prof, pair = find_pair()
    left = [b for b in pair if os.path.isdir(f"{vfm.DEVICES}/{b}")]
    if left:
        raise SystemExit(f"bench: configfs directories already exist: {left}")
    scens = SCENARIOS
    if args.only:
        want = args.only.split(",")
        unknown = set(want) - {s.name for s in SCENARIOS}
        if unknown:
            raise SystemExit(f"bench: unknown scenario(s) {sorted(unknown)}")
        scens = [s for s in SCENARIOS if s.name in want]
    result = {
        "kernel": platform.release(), "kind": prof.kind, "pair": pair,
        "smoke": args.smoke, "rounds": args.rounds, "reopen": args.reopen,
        "blocks": args.blocks,
        "open_blocks": args.open_blocks, "iters": args.iters,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "scenarios": [],
    }
    t0 = time.monotonic()
    try:
        for scen in scens:
            print(f"bench: {scen.name} ...", file=sys.stderr, flush=True)
            result["scenarios"].append(run_scenario(args, prof, scen, pair))
    finally:
        for bdf in pair:
            pci.restore(bdf)
    result["elapsed_s"] = round(time.monotonic() - t0, 1)
    result["summary"] = report.summarize(result)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out + ".tmp", "w") as f:
            json.dump(result, f, indent=1)
        os.replace(args.out + ".tmp", args.out)
    print(report.format_kernel(result))
    errors = [e for s in result["scenarios"] for e in s["errors"]]
    for e in errors:
        print(f"bench: ERROR: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
