# SPDX-License-Identifier: GPL-2.0
"""Bad input to every attribute and every mkdir point of the configfs tree.

Thousands of generated invalid values and names (random bytes with NUL and
non-UTF-8, huge, negative and signed numbers, overflowing, inverted and
empty ranges, unknown words, white space and case variants of valid values,
strings longer than a page, names with '/', upper case BDFs, slots above
0x1f, functions above 7...) are written, each with its own
open/write/close, to every attribute of a staged configuration of two
devices, and made with mkdir at every mkdir point and elsewhere. Each must
fail with the errno configfs-schema/vfmediate.schema documents for its
kind of bad value (tests/lib/cfschema.py turns the schema's grammars into
that expectation; valid values are never written). Afterwards every
directory and attribute of the tree reads exactly as before, and edu,
opened through VFIO, behaves as its rules say. The autouse dmesg fixture
checks the kernel log.

The configuration, with edu's function unbound, then bound to vfmediate
(ranges then meet the real region sizes), then open (no refused write may
make "pending" turn 1):

    devices/<edu>/         mediator nop; rules in every region, among them
                           a trap rule, so detaching is EBUSY
    devices/0000:ff:1f.7/  no such function, no mediator; a rule in every
                           region, so "trap" is ENOENT

The random generator is seeded: a failure reproduces.
"""
import errno
import os
import random
import time
from collections import Counter

import pytest

import cfschema as cs
from budget import scaled
import pci
from vfio import BAR0, Device, VfioError
from vfm import Module

SEED = 20261125
S = cs.Schema()
ROOT = cs.ROOT
DEVICES = f"{ROOT}/devices"
RULE_DIR = "devices/<bdf>/regions/<region>/rules/<rule>"
DEV_DIR = "devices/<bdf>"
REGION_DIR = "devices/<bdf>/regions/<region>"
REGIONS = S.names["region"]["values"]
ABSENT_BDF = "0000:ff:1f.7"
NOP = Module("vfmediate_nop")

EDU_ID = 0x010000ED
PAGE = os.sysconf("SC_PAGE_SIZE")

# Writes per phase; together well over 10,000 (a fifth of that under the
# debug kernel, budget.py). Each write is its own open/write/close:
# measured at about 0.2 ms in the emulated guest.
WRITES_UNBOUND = scaled(6000)
WRITES_BOUND = scaled(4000)
WRITES_OPEN = scaled(1500)
NAMES = scaled(1500)
UNKNOWN_MEDIATORS = 6       # valid names nobody provides: each runs modprobe

# edu's rules: name -> (region, range, access, action, audit). The regions
# edu lacks get a rule too, written while unbound (no geometry yet).
EDU_RULES = {
    ("config", "c0"): ("0x2c-0x2f", "r", "ignore", "1"),
    ("bar0", "id"): ("0x0-0x3", "w", "deny", "0"),
    ("bar0", "live"): ("0x4+4", "rw", "ro", "1"),
    ("bar0", "fact"): ("0x8-0xb", "rw", "trap", "0"),
}
EDU_ABSENT = ["bar1", "bar2", "bar3", "bar4", "bar5", "rom", "vga"]
for _r in EDU_ABSENT:
    EDU_RULES[(_r, "x")] = ("0x0-0xf", "rw", "deny", "0")
OTHER_RULES = {(r, "r"): ("0x1000+0x100", "r", "ignore", "1")
               for r in REGIONS}


# -- writing and mkdir, each from scratch -------------------------------------

def write_once(path, data):
    """One open/write/close; the errno, or None when it was accepted."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as e:
        return e.errno
    try:
        os.write(fd, data)
        return None
    except OSError as e:
        return e.errno
    finally:
        os.close(fd)


def mkdir_once(path):
    try:
        os.mkdir(path)
        return None
    except OSError as e:
        return e.errno


def rmdir_once(path):
    try:
        os.rmdir(path)
        return None
    except OSError as e:
        return e.errno


# -- generated values ---------------------------------------------------------

WORDS = [
    "allow", "block", "readonly", "read-only", "RO", "Ro", "none", "true",
    "false", "yes", "no", "on", "enable", "disabled", "2", "-1", "01", "00",
    "0x1", "0x0", "1.0", "rwx", "wr", "R", "W", "RW", "x", "read", "write",
    "both", "offf", "Auto", "AUTO", "of", "au", "passthrough", "trapped",
    "Deny", "DENY", "ignored", "drop", "pass,deny", "pass deny", "pass|ro",
    "r w", "r,w", "~mediator", "nop ", " nop", "NOP", "n0p", "audit!",
    "nop\tx", "null", "(null)", "%s", "%n%n", "../nop", "nop/", "-", "+",
    "0-", "-0", "0+", "+0", "--", "++", "0--1", "0++1", "0x-0x1", "0x+1",
    "1-0", "1+0", "0+0", "0-0-0", "0+1+1", "0-1+1", "0:1", "0..1", "0,1",
    "[0-1]", "0 - 1", "0 +1", "0x1g-0x2", "0x-", "0b1-0b10", "0o7-0o10",
    "1e3-2e3", "1_000-2_000", "0x1p4-2", "inf-nan", "+5-10", "5-+10",
    "5++10", "-5-10", "5--10", "5-10k", "5k-10", "0xg-1", "08-09x",
    "0\n-0xf", "1\n+1", "0x10\r-0x20", "٠-٩", "０-１",
]

HUGE = [
    "18446744073709551615", "18446744073709551616", "0xffffffffffffffff",
    "0x10000000000000000", "99999999999999999999999999", "1" + "0" * 40,
    "0x" + "f" * 17, "0x" + "0" * 30 + "1", "1099511627775",
    "1099511627776", "0xffffffffff", "0x10000000000", "0xfffffffffff",
    "-1", "-0", "-18446744073709551615", "+0", "+1", "-0x1", "4294967296",
]


def _num(rng):
    v = rng.choice([0, 1, 2, 0xF, 0xFF, 0x100, 0xFFF, 0x1000, 0xFFFFF,
                    0x100000, (1 << 40) - 2, (1 << 40) - 1, 1 << 40,
                    (1 << 40) + 1, (1 << 64) - 1, 1 << 64, (1 << 64) + 1,
                    rng.randrange(1 << 12), rng.randrange(1 << 41),
                    rng.randrange(1 << 65)])
    style = rng.randrange(9)
    if style == 0:
        return str(v)
    if style == 1:
        return hex(v)
    if style == 2:
        return "0X" + format(v, "X")
    if style == 3:
        return "0x" + "0" * rng.randrange(1, 40) + format(v, "x")
    if style == 4:
        return rng.choice(["-", "+", " ", "\t", "0o", "0b", "\\x"]) + str(v)
    if style == 5:
        return str(v) + rng.choice(["k", "M", " ", "\n", "L", "ULL", ".",
                                    "h", "\0", "\r"])
    if style == 6:
        return rng.choice(HUGE)
    if style == 7:
        return "0x" + format(v, "x") + rng.choice(["g", "G", "x", ""])
    return format(v, "o") if v else "0"


def g_range(rng):
    a, b = _num(rng), _num(rng)
    sep = rng.choice(["-", "+", "-", "+", "--", "+-", "-+", "..", ":", ",",
                      " - ", " + ", "", "~"])
    s = a + sep + b
    if rng.random() < 0.1:
        s = rng.choice(["", " ", "\t", "\n"]) + s + rng.choice(
            ["", " ", "\n", "\n\n", "\0"])
    return s.encode()


def g_inverted(rng):
    b = rng.randrange(1 << 40)
    a = b + rng.randrange(1, 1 << 20)
    return f"{hex(a)}-{hex(b)}".encode()


def g_overflow(rng):
    a = (1 << 64) - rng.randrange(1, 1 << 16)
    b = rng.randrange(1 << 16, 1 << 63)
    return rng.choice([f"{hex(a)}+{hex(b)}", "0xffffffffffffffff+1",
                       f"{a}+{b}", f"0x1+{hex((1 << 64) - 1)}",
                       f"0-{(1 << 40) + rng.randrange(1 << 30)}",
                       f"{hex(1 << 40)}+1", "0+0"]).encode()


def g_random_bytes(rng):
    n = rng.choice([1, 2, 3, 4, 5, 8, 15, 16, 31, 32, 47, 48, 64, 100, 255,
                    256, 300])
    return bytes(rng.randrange(256) for _ in range(n))


def g_text(rng):
    n = rng.randrange(1, 60)
    return "".join(chr(rng.randrange(32, 127)) for _ in range(n)).encode()


def g_unicode(rng):
    n = rng.randrange(1, 12)
    return "".join(chr(rng.choice([rng.randrange(0xA0, 0x3000),
                                   rng.randrange(0x1F300, 0x1F600),
                                   0xFF10 + rng.randrange(10)]))
                   for _ in range(n)).encode()


def g_non_utf8(rng):
    bad = rng.choice([b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xa0\xa1",
                      b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc", b"\x80",
                      b"\xed\xa0\x80"])
    base = rng.choice(WORDS).encode()
    i = rng.randrange(len(base) + 1)
    return base[:i] + bad + base[i:]


def g_word(rng):
    return rng.choice(WORDS).encode()


def g_huge(rng):
    return rng.choice(HUGE).encode()


def g_long(rng):
    n = rng.choice([16, 32, 47, 48, 63, 64, 255, 256, 1000, 4094, 4095,
                    4096, 4097, 5000, 8192])
    unit = rng.choice([b"a", b"0", b"f", b"pass", b"rw", b"1", b"nop", b" ",
                       b"\n", b"0x0-0x1", b"-"])
    s = (unit * (n // len(unit) + 1))[:n]
    if rng.random() < 0.3:
        s = rng.choice([b"pass", b"0x0-0x3", b"nop", b"1", b"auto"]) + s
    return s


def g_blank(rng):
    return rng.choice([b"\n\n", b" ", b" \n", b"\t", b"\r", b"\r\n", b"\0",
                       b"\0\n", b"\n\0", b"\n \n", b"\x0b", b"\x0c"])


def g_mutant(rng, valid):
    v = rng.choice(valid).encode()
    op = rng.randrange(10)
    if op == 0:
        return v.upper() if v != v.upper() else v + b"x"
    if op == 1:
        return rng.choice([b" ", b"\t", b"\r", b"\0"]) + v
    if op == 2:
        return v + rng.choice([b" ", b"\t", b"\r", b"\0", b"\n\n", b" \n",
                               b"\r\n", b"\n\0"])
    if op == 3 and len(v) > 1:
        i = rng.randrange(len(v))
        return v[:i] + v[i + 1:]
    if op == 4:
        i = rng.randrange(len(v) + 1)
        return v[:i] + bytes([rng.randrange(1, 256)]) + v[i:]
    if op == 5:
        return v + v
    if op == 6 and v:
        i = rng.randrange(len(v))
        return v[:i] + bytes([v[i] ^ (1 << rng.randrange(8))]) + v[i + 1:]
    if op == 7:
        return v + b"\n" + v
    if op == 8:
        return v[:1] + b"\0" + v[1:]
    return b'"' + v + b'"'


FAMILIES = [g_random_bytes, g_text, g_unicode, g_non_utf8, g_word, g_huge,
            g_long, g_blank, g_range]


def candidates(rng, attr):
    """An endless supply of candidate values for @attr, weighted toward its
    own grammar."""
    valid = [v["value"] for v in attr.get("values", [])]
    valid += [e["write"] for e in attr.get("examples", []) if e["write"]]
    valid = valid or ["x"]
    extra = {"range": [g_range, g_range, g_range, g_inverted, g_overflow]
             }.get(attr["type"], [])
    fams = FAMILIES + extra + [lambda r: g_mutant(r, valid)] * 4
    while True:
        v = rng.choice(fams)(rng)
        if rng.random() < 0.5 and not v.endswith(b"\n"):
            v += b"\n"          # as echo writes it
        yield v


# -- the configuration under test ---------------------------------------------

def known_mediators():
    names = {n: None for n in cs.mediator_aliases()}
    for n in os.listdir(f"{ROOT}/mediators"):
        ops = cs.read_raw(f"{ROOT}/mediators/{n}/ops").decode().split()
        names[n] = set(ops)
    return names


class Config:
    """The two device directories: what each attribute's grammar depends
    on, and every (relpath, schema attribute, WriteCtx) to write to."""

    def __init__(self, edu):
        self.edu = edu
        self.devs = {edu: dict(EDU_RULES), ABSENT_BDF: dict(OTHER_RULES)}
        self.mediator = {edu: "nop", ABSENT_BDF: None}
        self.region_len = None      # {region: bytes} of edu while bound

    def create(self):
        for bdf, rules in self.devs.items():
            d = f"{DEVICES}/{bdf}"
            os.mkdir(d)
            if self.mediator[bdf]:
                _write(f"{d}/mediator", self.mediator[bdf])
            for (region, name), (rng, acc, act, aud) in rules.items():
                r = f"{d}/regions/{region}/rules/{name}"
                os.mkdir(r)
                _write(f"{r}/range", rng)
                _write(f"{r}/access", acc)
                _write(f"{r}/action", act)
                _write(f"{r}/audit", aud)
        _write(f"{DEVICES}/{ABSENT_BDF}/regions/bar0/mmap", "off")
        _write(f"{DEVICES}/{self.edu}/regions/bar2/mmap", "off")

    def remove(self):
        for bdf in self.devs:
            d = f"{DEVICES}/{bdf}"
            if not os.path.isdir(d):
                continue
            for region in REGIONS:
                rd = f"{d}/regions/{region}/rules"
                for n in os.listdir(rd):
                    os.rmdir(f"{rd}/{n}")
            os.rmdir(d)

    def drop_edu_absent_rules(self):
        """Rules of regions edu lacks: an open would fail closed on them."""
        for region in EDU_ABSENT:
            os.rmdir(f"{DEVICES}/{self.edu}/regions/{region}/rules/x")
            del self.devs[self.edu][(region, "x")]

    def ctx(self, bdf, region=None, rule=None, known=None):
        med = self.mediator[bdf]
        known = known if known is not None else known_mediators()
        trap = {acc for (_, _), (_, acc, act, _) in self.devs[bdf].items()
                if act == "trap"}
        trap_access = ("rw" if "rw" in trap or {"r", "w"} <= trap
                       else "".join(trap))
        c = cs.WriteCtx(mediator=med,
                        mediator_ops=known.get(med) or set(),
                        trap_access=trap_access, known_mediators=known)
        if bdf == self.edu and self.region_len is not None and region:
            c.region_len = self.region_len[region]
        if rule:
            _, c.rule_access, c.rule_action, _ = self.devs[bdf][(region, rule)]
        return c

    def targets(self):
        """(path, attribute, ctx) of every attribute of the tree."""
        out = []
        known = known_mediators()
        for bdf, rules in self.devs.items():
            d = f"{DEVICES}/{bdf}"
            for a in S.dirs[DEV_DIR]["attributes"]:
                out.append((f"{d}/{a['name']}", a,
                            self.ctx(bdf, known=known)))
            for region in REGIONS:
                for a in S.dirs[REGION_DIR]["attributes"]:
                    out.append((f"{d}/regions/{region}/{a['name']}", a,
                                self.ctx(bdf, region, known=known)))
            for (region, name) in rules:
                for a in S.dirs[RULE_DIR]["attributes"]:
                    out.append((f"{d}/regions/{region}/rules/{name}/"
                                f"{a['name']}", a,
                                self.ctx(bdf, region, name, known)))
        for n in os.listdir(f"{ROOT}/mediators"):
            for a in S.dirs["mediators/<mediator>"]["attributes"]:
                out.append((f"{ROOT}/mediators/{n}/{a['name']}", a,
                            cs.WriteCtx()))
        return out


def _write(path, value):
    err = write_once(path, (value + "\n").encode())
    assert err is None, f"{path} <- {value!r}: {cs.errno_name(err)}"


def region_sizes(bdf):
    sizes = dict(zip(["bar0", "bar1", "bar2", "bar3", "bar4", "bar5"],
                     pci.bar_sizes(bdf)))
    sizes["rom"] = pci.rom_size(bdf)
    sizes["config"] = os.path.getsize(f"/sys/bus/pci/devices/{bdf}/config")
    sizes["vga"] = 0        # edu is no VGA device
    return sizes


@pytest.fixture
def config(edu):
    assert pci.driver(edu) is None, f"edu {edu} is bound to {pci.driver(edu)}"
    assert os.listdir(DEVICES) == [], "a device directory was left over"
    c = Config(edu)
    try:
        c.create()
        yield c
    finally:
        c.remove()
        if NOP.loaded:
            NOP.unload()


# -- the storms ---------------------------------------------------------------

class Tally:
    def __init__(self, what):
        self.what = what
        self.n = 0
        self.by_case = Counter()
        self.bad = []           # (path, data, expected, got)
        self.t0 = time.monotonic()

    def check(self, label, path, data, case, want, got):
        """@label groups the report: an attribute, or a mkdir point."""
        self.n += 1
        self.by_case[case] += 1
        if got != getattr(errno, want):
            self.bad.append((label, path, data, f"{want} ({case})",
                             cs.errno_name(got)))

    def report(self):
        secs = time.monotonic() - self.t0
        print(f"{self.what}: {self.n} in {secs:.1f} s; cases: "
              + ", ".join(f"{k}={v}" for k, v in sorted(self.by_case.items())))
        if not self.bad:
            return ""
        kinds = Counter((lb, w, g) for lb, _, _, w, g in self.bad)
        lines = [f"{len(self.bad)} of {self.n} {self.what} got the wrong "
                 f"result (where, expected, got: count):"]
        lines += [f"  {a}: expected {w}, got {g}: {c}"
                  for (a, w, g), c in kinds.most_common()]
        lines.append("first ones:")
        lines += [f"  {p[len(ROOT) + 1:]} <- {d[:80]!r}: expected {w}, "
                  f"got {g}" for _, p, d, w, g in self.bad[:25]]
        return "\n".join(lines)


def storm_values(rng, config, total, what):
    """Write about @total generated invalid values, spread over every
    attribute of the tree; returns the Tally."""
    tally = Tally(what)
    targets = config.targets()
    rw = [t for t in targets if t[1]["mode"] == "0644"]
    ro = [t for t in targets if t[1]["mode"] == "0444"]
    per = -(-total // len(rw))
    unknown_left = UNKNOWN_MEDIATORS
    before = cs.snapshot(ROOT)
    for path, attr, ctx in rw:
        gen = candidates(rng, attr)
        done = tries = 0
        while done < per and tries < 50 * per:
            tries += 1
            data = next(gen)
            exp = S.expect_write(attr, data, ctx)
            if exp is None or exp[1] is None:
                continue                # valid, or the mediator's to judge
            if exp[0] == "unknown":
                if unknown_left == 0:
                    continue
                unknown_left -= 1
            got = write_once(path, data)
            tally.check(attr["name"], path, data, *exp, got)
            done += 1
            if got is None:             # accepted: put the value back
                _restore(path, before)
        assert done == per, f"{path}: only {done} invalid values generated"
    for path, attr, ctx in ro:
        for data in (b"0\n", b"", b"open\n", next(candidates(rng, attr))):
            got = write_once(path, data)
            tally.check(attr["name"], path, data,
                        *S.expect_write(attr, data, ctx), got)
    return tally


def _restore(path, before):
    rel = os.path.relpath(path, ROOT)
    old = before.get(rel)
    if isinstance(old, bytes) and old.strip():
        write_once(path, old)


def storm_names(rng, config, total):
    """mkdir of generated names at every mkdir point and elsewhere, rmdir
    where it is refused."""
    tally = Tally("mkdir/rmdir")
    edu_d = f"{DEVICES}/{config.edu}"
    points = [(DEVICES, "bdf")]
    for bdf in config.devs:
        for region in REGIONS:
            points.append((f"{DEVICES}/{bdf}/regions/{region}/rules", "rule"))
    elsewhere = [ROOT, f"{ROOT}/mediators", f"{ROOT}/mediators/nop", edu_d,
                 f"{edu_d}/regions", f"{edu_d}/regions/bar0",
                 f"{edu_d}/regions/bar0/rules/id",
                 f"{DEVICES}/{ABSENT_BDF}/regions/rom/rules/r"]
    bdf_like = [config.edu, ABSENT_BDF, "0000:00:00.0", "ffff:ff:1f.7",
                "10000:00:00.0"]
    per = -(-total // (len(points) + len(elsewhere)))
    for parent, kind in points + [(p, None) for p in elsewhere]:
        existing = set(os.fsencode(n) for n in os.listdir(parent))
        done = tries = 0
        while done < per and tries < 50 * per:
            tries += 1
            name = gen_name(rng, kind, existing, bdf_like)
            if not name:
                continue
            try:
                exp = S.expect_mkdir(kind, name, existing)
            except ValueError:
                continue
            if exp is None:
                continue
            path = os.fsencode(parent) + b"/" + name
            got = mkdir_once(path)
            where = S.template_of(parent[len(ROOT) + 1:])[0]
            tally.check(f"mkdir in {where}/", os.fsdecode(path), name,
                        *exp, got)
            done += 1
            if got is None:
                os.rmdir(path)
        assert done == per, f"{parent}: only {done} invalid names generated"

    # rmdir where the tree refuses it
    fixed = [f"{ROOT}/devices", f"{ROOT}/mediators", f"{ROOT}/mediators/nop",
             f"{edu_d}/regions", f"{edu_d}/regions/bar0",
             f"{edu_d}/regions/bar0/rules", f"{edu_d}/regions/vga/rules"]
    for p in fixed:
        tally.check("rmdir", p, b"", "rmdir_fixed",
                    S.common("rmdir_fixed"), rmdir_once(p))
    for bdf in config.devs:
        p = f"{DEVICES}/{bdf}"
        tally.check("rmdir", p, b"", "not_empty",
                    S.errno_of(S.dirs[DEV_DIR]["rmdir_errors"], "not_empty"),
                    rmdir_once(p))
    return tally


def gen_name(rng, kind, existing, bdf_like):
    """A candidate directory name (bytes, no NUL)."""
    r = rng.randrange(16)
    if r == 0:
        name = g_random_bytes(rng)
    elif r == 1:
        name = g_text(rng)
    elif r == 2:
        name = g_unicode(rng)
    elif r == 3:
        name = b"a" * rng.choice([64, 65, 100, 200, 255, 256, 300, 1000])
    elif r == 4:
        name = rng.choice(sorted(existing) or [b"."]) if existing else b".."
    elif r == 5:
        name = rng.choice([b".", b"..", b"..."])
    elif r == 6:                                        # a path
        name = (b"nx-" + g_text(rng).replace(b"/", b"") + b"/"
                + rng.choice([b"x", b"0000:00:04.0", b"r0", b"a/b"]))
    elif r == 7:
        name = g_word(rng)
    else:                                               # near misses
        v = rng.choice(bdf_like)
        dom, bus, rest = v.split(":")
        slot, fn = rest.split(".")
        m = rng.randrange(12)
        if m == 0:
            name = v.upper()
        elif m == 1:
            name = f"{dom}:{bus}:{rng.randrange(0x20, 0x100):02x}.{fn}"
        elif m == 2:
            name = f"{dom}:{bus}:{slot}.{rng.randrange(8, 10)}"
        elif m == 3:
            name = f"{bus}:{slot}.{fn}"
        elif m == 4:
            name = f"{dom}:{bus}:{slot}:{fn}"
        elif m == 5:
            name = f"0{dom}:{bus}:{slot}.{fn}"
        elif m == 6:
            name = f"{dom}:{bus}:{slot}.{fn}" + rng.choice(
                [" ", "0", ".", "\t", "\n"])
        elif m == 7:
            name = f"{dom}:{bus}:{int(slot, 16)}.{fn}"
        elif m == 8:
            name = "".join(c.upper() if rng.random() < 0.3 else c
                           for c in v)
        elif m == 9:
            name = f"{dom}:{bus}:{slot}.{rng.choice('abcdefx')}"
        elif m == 10:
            name = rng.choice(["rule with space", "r!", "r@x", "r#", "r/",
                               "-", "a" * 64, "rule$", "\u00fcber", "r\\x"])
        else:
            name = f"{dom}-{bus}-{slot}-{fn}"
        name = name.encode()
    return name.replace(b"\0", b"")


def fill_rules(config):
    """Fill one region of the absent device to its limit: one more rule is
    ENOSPC (a bad name EINVAL, an existing one EEXIST); then empty it."""
    tally = Tally("mkdir in a full region")
    rules = f"{DEVICES}/{ABSENT_BDF}/regions/bar3/rules"
    limit = S.limits["rules_per_region"]
    have = len(os.listdir(rules))
    made = []
    try:
        for i in range(limit - have):
            os.mkdir(f"{rules}/fill{i}")
            made.append(f"{rules}/fill{i}")
        existing = set(os.fsencode(n) for n in os.listdir(rules))
        assert len(existing) == limit
        for name in (b"one-more", b"fill-x", b"a" * 63, b"Z", b"bad name",
                     b"fill0", b"r", b"..", b"a" * 64):
            exp = S.expect_mkdir("rule", name, existing, full=True)
            got = mkdir_once(os.fsencode(rules) + b"/" + name)
            tally.check("mkdir in a full rules/", f"{rules}/{name!r}", name,
                        *exp, got)
            if got is None:
                os.rmdir(os.fsencode(rules) + b"/" + name)
    finally:
        for p in made:
            os.rmdir(p)
    return tally


def assert_clean(tallies, before, minimum):
    after = cs.snapshot(ROOT)
    report = "\n".join(t.report() for t in tallies if t.report())
    changed = cs.diff_snapshots(before, after)
    total = sum(t.n for t in tallies)
    msgs = []
    if report:
        msgs.append(report)
    if changed:
        msgs.append("the tree changed:\n  " + "\n  ".join(changed[:40]))
    assert not msgs, "\n".join(msgs)
    assert total >= minimum, f"only {total} bad inputs tried"


# -- tests --------------------------------------------------------------------

def test_bad_values_unbound(config):
    rng = random.Random(SEED)
    before = cs.snapshot(ROOT)
    t = storm_values(rng, config, WRITES_UNBOUND, "writes (unbound)")
    assert_clean([t], before, WRITES_UNBOUND)


def test_bad_names(config):
    rng = random.Random(SEED + 1)
    before = cs.snapshot(ROOT)
    t1 = storm_names(rng, config, NAMES)
    t2 = fill_rules(config)
    assert_clean([t1, t2], before, NAMES)


@pytest.mark.parametrize("name, err", [
    ("10000:00:00.0", None),            # Intel VMD's first domain
    ("fffffff0:e0:1f.7", None),
    ("010000:00:00.0", errno.EINVAL),   # not how the kernel spells it
    ("100000000:00:00.0", errno.EINVAL),
    ("100:00:00.0", errno.EINVAL),
    ("1000A:00:00.0", errno.EINVAL),
])
def test_pci_domains(name, err):
    """Domains print with four hex digits or more (pci_name())."""
    path = f"{DEVICES}/{name}"
    try:
        os.mkdir(path)
    except OSError as e:
        assert e.errno == err, f"mkdir {name}: {e}"
        return
    os.rmdir(path)
    assert err is None, f"mkdir {name} succeeded"


def test_bad_values_bound(config, bind):
    bind(config.edu, "vfmediate")
    config.region_len = region_sizes(config.edu)
    assert cs.read_raw(f"{DEVICES}/{config.edu}/state") == b"bound\n"
    rng = random.Random(SEED + 2)
    before = cs.snapshot(ROOT)
    t = storm_values(rng, config, WRITES_BOUND, "writes (bound)")
    assert_clean([t], before, WRITES_BOUND)


def test_bad_values_open(config, bind):
    """While open, no refused write may touch the staged configuration
    (pending stays 0); then the device behaves as its rules say."""
    edu = config.edu
    bind(edu, "vfmediate")
    config.region_len = region_sizes(edu)
    config.drop_edu_absent_rules()
    d = f"{DEVICES}/{edu}"
    with Device(edu) as dev:
        assert cs.read_raw(f"{d}/state") == b"open\n"
        assert cs.read_raw(f"{d}/pending") == b"0\n"
        assert cs.read_raw(f"{d}/error") == b"\n"
        rng = random.Random(SEED + 3)
        before = cs.snapshot(ROOT)
        t = storm_values(rng, config, WRITES_OPEN, "writes (open)")
        assert_clean([t], before, WRITES_OPEN)
        assert cs.read_raw(f"{d}/pending") == b"0\n"
        check_edu_behaves(dev, d)


def _hits(d, region, rule):
    return int(cs.read_raw(f"{d}/regions/{region}/rules/{rule}/hits"))


def check_edu_behaves(dev, d):
    # id: writes denied, reads untouched (the rule is for writes only)
    assert dev.read32(BAR0, 0x0) == EDU_ID
    assert _hits(d, "bar0", "id") == 0
    with pytest.raises(VfioError) as e:
        dev.write32(BAR0, 0x0, 0)
    assert e.value.errno == errno.EACCES
    assert _hits(d, "bar0", "id") == 1
    assert dev.read32(BAR0, 0x0) == EDU_ID
    # live: read-only, audited
    with pytest.raises(VfioError) as e:
        dev.write32(BAR0, 0x4, 0x12345678)
    assert e.value.errno == errno.EPERM
    dev.read32(BAR0, 0x4)
    assert _hits(d, "bar0", "live") == 2
    # fact: trapped to nop, which hands it to the device: 5! = 120
    dev.write32(BAR0, 0x8, 5)
    deadline = time.monotonic() + 5
    while dev.read32(BAR0, 0x20) & 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert dev.read32(BAR0, 0x8) == 120
    assert _hits(d, "bar0", "fact") == 2
    # c0: reads of the subsystem IDs are ignored (zeros)
    assert dev.config_read32(0x2C) == 0
    assert _hits(d, "config", "c0") == 1
    # the ruled page is not mmap-able; the rest of BAR0 is
    info = dev.region_info(BAR0)
    assert info.sparse_areas == [(PAGE, info.size - PAGE)]
