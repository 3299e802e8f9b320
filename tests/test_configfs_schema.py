# SPDX-License-Identifier: GPL-2.0
"""The live configfs tree against configfs-schema/vfmediate.schema.

- The whole tree under /sys/kernel/config/vfmediate, with a device
  directory for edu and a rule in every region, edu unbound and then bound
  to vfmediate, and a mediator registered: no directory or attribute
  missing or extra, every mode (os.stat) as documented, every attribute of
  a fresh directory reading its documented default, every value matching
  its documented read grammar; the same while the device is open.
- Every example value of every writable attribute reads back as
  documented.
- Every attribute the schema calls staged is staged: a write while the
  device is open turns "pending" to 1 and leaves the running generation;
  the next open applies it.
- The EXAMPLES of vfmediate-configfs(5), which the schema holds, run in
  bash and print what the page shows.

The schema is the only source of what is expected here.
"""
import errno
import os
import re
import subprocess

import pytest

import cfschema as cs
import pci
from vfio import Device
from vfm import Module

S = cs.Schema()
ROOT = cs.ROOT
DEVICES = f"{ROOT}/devices"
REGIONS = S.names["region"]["values"]
DEV_DIR = "devices/<bdf>"
RULE_DIR = "devices/<bdf>/regions/<region>/rules/<rule>"
ABSENT_BDF = "0000:ff:1f.7"
NOP = Module("vfmediate_nop")
MAN_BDF = "0000:00:04.0"            # edu, where tests/vm/run puts it


def rule_name(region):
    return f"r-{region}"


def read(path):
    return cs.read_raw(path)


def write(path, value):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, (value + "\n").encode())
    finally:
        os.close(fd)


def rmtree_config(bdf):
    d = f"{DEVICES}/{bdf}"
    if not os.path.isdir(d):
        return
    for region in REGIONS:
        rd = f"{d}/regions/{region}/rules"
        for n in os.listdir(rd):
            os.rmdir(f"{rd}/{n}")
    os.rmdir(d)


@pytest.fixture
def clean():
    """No device directory before; none, and no nop module, after."""
    assert os.listdir(DEVICES) == [], "a device directory was left over"
    made = []
    yield made
    for bdf in made:
        rmtree_config(bdf)
    if NOP.loaded:
        assert NOP.unload() == 0


def expected_mediators():
    """Registered mediators, from the modules that are loaded (each
    declares its names as vfmediate-mediator: aliases)."""
    return sorted(n for n, mod in cs.mediator_aliases().items()
                  if os.path.exists(f"/sys/module/{mod}/refcnt"))


def check_tree(devs, states, fresh_mediators=True):
    """Compare the live tree with the schema; @devs: {bdf: [regions with
    one rule]}, @states: {bdf: its state}. Defaults are checked for the
    devices not open, and for the mediators when @fresh_mediators (none
    attached). Returns a list of differences."""
    rules = {(bdf, r): [rule_name(r)] for bdf, regs in devs.items()
             for r in regs}
    instances = {"bdf": sorted(devs), "mediator": expected_mediators()}
    want = S.expected(instances, rules)
    have = cs.walk(ROOT)
    problems = []
    for rel in sorted(set(want) - set(have)):
        problems.append(f"missing: {rel} {want[rel]}")
    for rel in sorted(set(have) - set(want)):
        problems.append(f"extra: {rel} {have[rel]}")
    for rel in sorted(set(want) & set(have)):
        if want[rel] != have[rel]:
            problems.append(f"{rel}: {have[rel]}, documented {want[rel]}")
    # values: defaults of fresh directories, and every read's grammar
    for rel, (kind, _) in sorted(have.items()):
        if kind != "attr" or rel not in want:
            continue
        dpath, binding = S.template_of(os.path.dirname(rel))
        attr = S.attr(dpath, os.path.basename(rel))
        if attr["mode"] == "0200":
            continue                    # write-only: nothing to read
        raw = read(f"{ROOT}/{rel}")
        if "bdf" in binding:
            state = states[binding["bdf"]]
        else:
            state = "absent" if fresh_mediators else "open"
        problems += check_value(rel, attr, raw, state)
    return problems


def check_value(rel, attr, raw, state):
    out = []
    newline = attr.get("newline", True)
    if newline and not raw.endswith(b"\n"):
        out.append(f"{rel}: {raw!r} is not newline-terminated")
    value = raw[:-1].decode() if newline and raw.endswith(b"\n") \
        else raw.decode()
    if not re.fullmatch(attr["read"], value):
        out.append(f"{rel}: {value!r} does not match {attr['read']!r}")
    default = attr["default"]
    if isinstance(default, dict):
        default = default.get(state)
    if default is not None and state in ("absent", "bound"):
        if newline and raw != (default + "\n").encode():
            out.append(f"{rel}: reads {raw!r}, documented default "
                       f"{default!r}")
        if not newline and raw != default.encode():
            out.append(f"{rel}: reads {raw!r}, documented default "
                       f"{default!r} (no newline)")
    return out


def make_config(bdf, regions, clean):
    os.mkdir(f"{DEVICES}/{bdf}")
    clean.append(bdf)
    for r in regions:
        os.mkdir(f"{DEVICES}/{bdf}/regions/{r}/rules/{rule_name(r)}")


# -- the tree -----------------------------------------------------------------

def test_fixed_tree():
    """The fixed part, whatever else exists: its directories, no
    attribute of its own."""
    have = cs.walk(ROOT)
    for path, d in S.dirs.items():
        if d["kind"] == "fixed":
            assert have.get(path) == ("dir", d["mode"]), path
            assert d["attributes"] == []
    top = sorted(os.listdir(ROOT))
    assert top == sorted(p for p, d in S.dirs.items()
                         if p and "/" not in p), top


@pytest.mark.parametrize("bound", [False, True], ids=["unbound", "bound"])
def test_tree_matches_schema(edu, bind, clean, bound):
    NOP.load()                          # a registered mediator to walk
    if bound:
        bind(edu, "vfmediate")
    else:
        assert pci.driver(edu) is None
    make_config(edu, REGIONS, clean)
    make_config(ABSENT_BDF, ["bar0", "rom"], clean)
    state = "bound" if bound else "absent"
    assert read(f"{DEVICES}/{edu}/state") == f"{state}\n".encode()
    problems = check_tree({edu: REGIONS, ABSENT_BDF: ["bar0", "rom"]},
                          {edu: state, ABSENT_BDF: "absent"})
    assert problems == [], "\n".join(problems)


def test_tree_while_open(edu, bind, clean):
    """Open, with a ruled configuration and nop attached: the same tree,
    every value within its read grammar, the state as documented."""
    bind(edu, "vfmediate")
    make_config(edu, ["bar0"], clean)
    d = f"{DEVICES}/{edu}"
    write(f"{d}/mediator", "nop")
    r = f"{d}/regions/bar0/rules/{rule_name('bar0')}"
    write(f"{r}/range", "0x0-0x3")
    with Device(edu):
        problems = check_tree({edu: ["bar0"]}, {edu: "open"},
                              fresh_mediators=False)
        assert problems == [], "\n".join(problems)
        assert read(f"{d}/state") == b"open\n"
        assert int(read(f"{d}/generation")) >= 1
        assert read(f"{d}/pending") == b"0\n"
        assert int(read(f"{d}/table_bytes")) > 0
        assert read(f"{d}/error") == b"\n"
        assert read(f"{ROOT}/mediators/nop/users") == b"1\n"
    assert read(f"{d}/state") == b"bound\n"
    assert read(f"{d}/generation") == b"0\n"


def test_mediator_dir_defaults(clean):
    """A registered mediator nobody uses, as documented."""
    NOP.load()
    d = f"{ROOT}/mediators/nop"
    assert read(f"{d}/module") == b"vfmediate_nop\n"
    assert read(f"{d}/users") == (S.attr("mediators/<mediator>", "users")
                                  ["default"] + "\n").encode()
    ops = read(f"{d}/ops").decode().strip()
    assert re.fullmatch(S.attr("mediators/<mediator>", "ops")["read"], ops)


# -- values -------------------------------------------------------------------

def _rw_attrs():
    for path, d in S.dirs.items():
        for a in d["attributes"]:
            if a["mode"] == "0644":
                yield path, a


@pytest.mark.parametrize("dpath,attr", [
    pytest.param(p, a, id=a["name"]) for p, a in _rw_attrs()])
def test_examples_read_back(dpath, attr, clean):
    """Every documented example value reads back as documented, on an
    unbound device directory (no geometry to fit)."""
    d = f"{DEVICES}/{ABSENT_BDF}"
    bad = []
    for ex in attr["examples"]:
        os.mkdir(d)
        clean.append(ABSENT_BDF)
        try:
            if attr.get("requires_mediator"):
                write(f"{d}/mediator", attr["requires_mediator"])
            target = {DEV_DIR: d,
                      "devices/<bdf>/regions/<region>": f"{d}/regions/bar0",
                      RULE_DIR: f"{d}/regions/bar0/rules/ex"}[dpath]
            if dpath == RULE_DIR:
                os.mkdir(target)
            try:
                write(f"{target}/{attr['name']}", ex["write"])
            except OSError as e:
                bad.append(f"{ex['write']!r}: {errno.errorcode[e.errno]}")
                continue
            got = read(f"{target}/{attr['name']}")
            if got != (ex["read"] + "\n").encode():
                bad.append(f"{ex['write']!r} reads back {got!r}, "
                           f"documented {ex['read']!r}")
        finally:
            rmtree_config(ABSENT_BDF)
            clean.remove(ABSENT_BDF)
    assert bad == [], f"{attr['name']}: " + "; ".join(bad)


# -- staged changes -----------------------------------------------------------

def _staged_cases():
    for path, a in _rw_attrs():
        yield pytest.param(path, a, id=a["name"])
    yield pytest.param("rules", "mkdir", id="mkdir-rule")
    yield pytest.param("rules", "rmdir", id="rmdir-rule")


@pytest.mark.parametrize("dpath,attr", list(_staged_cases()))
def test_staged(edu, bind, clean, dpath, attr):
    """A change while open waits for the next open: pending turns 1, the
    running generation stays; the next open runs it (pending 0, a new
    generation)."""
    bind(edu, "vfmediate")
    d = f"{DEVICES}/{edu}"
    rules = f"{d}/regions/bar0/rules"
    os.mkdir(d)
    clean.append(edu)
    os.mkdir(f"{rules}/g")
    write(f"{rules}/g/range", "0x0-0x3")
    write(f"{rules}/g/access", "w")
    staged = True
    if isinstance(attr, dict):
        staged = attr["staged"]
        if attr.get("requires_mediator"):
            write(f"{d}/mediator", attr["requires_mediator"])
    if attr == "rmdir":
        os.mkdir(f"{rules}/new")
        write(f"{rules}/new/range", "0x10+4")
    with Device(edu):
        gen = int(read(f"{d}/generation"))
        assert gen >= 1
        assert read(f"{d}/pending") == b"0\n"
        if attr == "mkdir":
            os.mkdir(f"{rules}/new")
        elif attr == "rmdir":
            os.rmdir(f"{rules}/new")
        else:
            target = {DEV_DIR: d,
                      "devices/<bdf>/regions/<region>": f"{d}/regions/bar0",
                      RULE_DIR: f"{rules}/g"}[dpath]
            path = f"{target}/{attr['name']}"
            cur = read(path)
            ex = next(e for e in attr["examples"]
                      if (e["read"] + "\n").encode() != cur)
            write(path, ex["write"])
        assert read(f"{d}/pending") == (b"1\n" if staged else b"0\n")
        assert int(read(f"{d}/generation")) == gen
        assert read(f"{d}/state") == b"open\n"
    if attr == "mkdir":
        write(f"{rules}/new/range", "0x10+4")   # else it fails closed
    with Device(edu):
        assert read(f"{d}/pending") == b"0\n"
        assert int(read(f"{d}/generation")) > gen
        assert read(f"{d}/error") == b"\n"


# -- the man page's examples --------------------------------------------------

def test_man_examples(edu, clean):
    """vfmediate-configfs(5) EXAMPLES, run in bash as printed."""
    if edu != MAN_BDF:
        pytest.skip(f"the examples use {MAN_BDF}; edu is at {edu}")
    assert pci.driver(edu) is None
    cmds = [c for ex in S.doc["examples"] for c in ex["commands"]]
    script = []
    for i, c in enumerate(cmds):
        script.append(f"echo '@@ {i}'; echo '@@ {i}' >&2")
        script.append(f"{c['cmd']}")
        script.append("echo \"@@ rc $?\"")
    clean.append(MAN_BDF)
    try:
        p = subprocess.run(["bash", "-c", "\n".join(script)],
                           capture_output=True, text=True, timeout=60)
    finally:
        pci.restore(edu)
    out = _split(p.stdout)
    err = _split(p.stderr)
    bad = []
    for i, c in enumerate(cmds):
        lines = out.get(i, [])
        rc = lines[-1] if lines else "@@ rc ?"
        lines = lines[:-1]
        msg = "".join(err.get(i, []))
        if "errno" in c:
            want = os.strerror(getattr(errno, c["errno"]))
            if rc == "@@ rc 0" or want not in msg:
                bad.append(f"{c['cmd']!r}: {rc}, stderr {msg!r}, "
                           f"documented {c['errno']} ({want})")
        elif rc != "@@ rc 0" or msg:
            bad.append(f"{c['cmd']!r}: {rc}, stderr {msg!r}")
        if lines != c.get("out", []):
            bad.append(f"{c['cmd']!r} printed {lines}, documented "
                       f"{c.get('out', [])}")
    assert bad == [], "\n".join(bad)


def _split(text):
    """{command index: [lines]} from the markers the script printed."""
    out, cur = {}, None
    for line in text.splitlines():
        m = re.fullmatch(r"@@ (\d+)", line)
        if m:
            cur = int(m[1])
            out[cur] = []
        elif cur is not None:
            out[cur].append(line)
    return out
