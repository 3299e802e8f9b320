# SPDX-License-Identifier: GPL-2.0
"""Random rules and random accesses against a model of the documented
semantics (vfmediate-configfs(5), OVERLAPS, ACTIONS, HIT COUNTERS).

Each round writes a random set of rules on edu's BAR0, opens the device
and compares every access (result, bytes, errno) and every rule's hit
count with what the model says; then reopens without a change (the
compiled rules are reused) and after a staged change (compiled again) and
compares again. The rules crowd a small window, so that they overlap and
split accesses, and are scattered over the BAR, so that the per-page
filter is exercised on pages with and without intervals.

Only offsets edu does not decode are accessed (0x1000 and up: reads give
all ones, writes are dropped), 4 or 8 bytes at 4-byte alignment, and the
rules have 4-byte granularity, so every piece of a split access is one
the device takes.
"""
import errno
import random

from budget import scaled
from vfio import BAR0, Device, VfioError
from vfm import Module, Vfm

SEED = 20261126
ROUNDS = scaled(6, minimum=2)
ACCESSES = scaled(300, minimum=60)
WINDOW = (0x1000, 0x1100)           # crowded: rules overlap here
BAR_SIZE = 1 << 20
ACTIONS = ["pass", "ro", "deny", "ignore", "trap"]
NOP = Module("vfmediate_nop")
DEVICE_BYTE = 0xFF                  # what edu reads at offsets it ignores


class Rule:
    def __init__(self, name, start, end, access, action, audit):
        self.name, self.start, self.end = name, start, end
        self.access, self.action, self.audit = access, action, audit
        self.hits = 0

    def covers(self, off, write):
        return (self.start <= off < self.end and
                ("w" if write else "r") in self.access)

    @property
    def counts(self):
        return self.action != "pass" or self.audit

    def range(self):
        return f"{self.start:#x}-{self.end - 1:#x}"


def winner(rules, off, write):
    """The rule handling byte @off: the shortest covering range, then the
    first name."""
    cover = [r for r in rules if r.covers(off, write)]
    return min(cover, key=lambda r: (r.end - r.start, r.name), default=None)


def expect(rules, off, size, write):
    """(errno or None, bytes read or None); counts the model's hits."""
    owners = [winner(rules, off + i, write) for i in range(size)]
    for r in {id(o): o for o in owners if o}.values():
        if r.counts:
            r.hits += 1
    actions = [o.action if o else "pass" for o in owners]
    if "deny" in actions:
        return errno.EACCES, None
    if write and "ro" in actions:
        return errno.EPERM, None
    if write:
        return None, None
    return None, bytes(0 if a == "ignore" else DEVICE_BYTE for a in actions)


def random_rules(rng):
    rules = []
    for i in range(rng.randrange(4, 16)):
        start = rng.randrange(WINDOW[0], WINDOW[1], 4)
        end = min(WINDOW[1], start + 4 * rng.randrange(1, 16))
        rules.append((start, end))
    for i in range(rng.randrange(0, 8)):
        start = rng.randrange(0x2000, BAR_SIZE - 0x100, 4)
        rules.append((start, start + 4 * rng.randrange(1, 32)))
    if rng.random() < 0.3:          # one over the whole window and more
        rules.append((0x1000, 0x3000))
    out = []
    for i, (s, e) in enumerate(rules):
        out.append(Rule(f"r{rng.randrange(100):02d}{i:02d}", s, e,
                        rng.choice(["r", "w", "rw", "rw"]),
                        rng.choice(ACTIONS), rng.choice([0, 0, 1])))
    return out


def random_access(rng, rules):
    k = rng.random()
    if k < 0.6:
        off = rng.randrange(WINDOW[0] - 8, WINDOW[1] + 8, 4)
    elif k < 0.85 and rules:
        r = rng.choice(rules)
        off = rng.randrange(max(0x1000, r.start - 8), r.end + 8, 4)
    else:
        off = rng.randrange(0x1000, BAR_SIZE - 8, 4)
    return off, rng.choice([4, 8]), rng.random() < 0.4


def check_accesses(rng, dev, rules, n, where):
    for _ in range(n):
        off, size, write = random_access(rng, rules)
        want_err, want = expect(rules, off, size, write)
        try:
            if write:
                got = dev.pwrite(BAR0, off, bytes(size))
                assert got == size, f"{where}: write {off:#x}+{size}: {got}"
                got = None
            else:
                got = dev.pread(BAR0, off, size)
            err = None
        except VfioError as e:
            err, got = e.errno, None
        op = "write" if write else "read"
        assert (err, got) == (want_err, want), \
            (f"{where}: {op} {off:#x}+{size}: got {err} {got}, "
             f"want {want_err} {want}; rules: "
             + ", ".join(f"{r.name} {r.range()} {r.access} {r.action}"
                         f"{' audit' if r.audit else ''}" for r in rules))


def check_hits(v, rules, where):
    got = {r.name: v.rule("bar0", r.name).hits for r in rules}
    want = {r.name: r.hits for r in rules}
    assert got == want, f"{where}: hits"


def test_random_rules_match_the_model(edu_vfm):
    rng = random.Random(SEED)
    with Device(edu_vfm) as dev:    # what the model assumes of the device
        assert dev.pread(BAR0, WINDOW[0], 8) == bytes([DEVICE_BYTE]) * 8
    for rnd in range(ROUNDS):
        rules = random_rules(rng)
        with Vfm(edu_vfm, mediator="nop") as v:
            for r in rules:
                v.add_rule("bar0", r.name, r.range(), r.action,
                           access=r.access, audit=r.audit)
            where = f"round {rnd}"
            with Device(edu_vfm) as dev:
                gen, ns = v.generation, v.read("compile_ns")
                check_accesses(rng, dev, rules, ACCESSES, where)
            check_hits(v, rules, where)
            # Reopened unchanged: the same compiled rules serve again.
            with Device(edu_vfm) as dev:
                assert (v.generation, v.read("compile_ns")) == (gen + 1, ns)
                check_accesses(rng, dev, rules, ACCESSES // 3,
                               where + " reopened")
            check_hits(v, rules, where + " reopened")
            # A staged change: compiled again at the next open.
            r = rng.choice(rules)
            r.action = rng.choice(ACTIONS)
            v.rule("bar0", r.name).write("action", r.action)
            with Device(edu_vfm) as dev:
                assert v.generation == gen + 2
                assert v.read("compile_ns") != ns
                check_accesses(rng, dev, rules, ACCESSES // 3,
                               where + " changed")
            check_hits(v, rules, where + " changed")
    NOP.unload()
