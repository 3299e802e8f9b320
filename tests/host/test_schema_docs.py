# SPDX-License-Identifier: GPL-2.0
"""Host-side checks of configfs-schema/vfmediate.schema and its renderings.

- man/vfmediate-configfs.5 and configfs-schema/ABI.txt are exactly what
  configfs-schema/gen-man makes of the schema (regenerate with
  ``configfs-schema/gen-man`` after editing the schema);
- the man page renders at 80 columns without a groff warning and without
  a line wider than the page;
- the schema is consistent with itself (modes, defaults against their own
  read grammar, errno names, examples);
- the attributes kmod/ declares (CONFIGFS_ATTR / CONFIGFS_ATTR_RO) are the
  ones the schema documents, with the same mode. The live tree is checked
  against the schema in the guest by tests/test_configfs_schema.py.

Runs on the host, outside the guest suite:

    python3 -m pytest --noconftest tests/host/
"""

import errno
import importlib.machinery
import importlib.util
import os
import re
import shutil
import subprocess

import pytest

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GEN = os.path.join(TOP, "configfs-schema", "gen-man")
MAN5 = os.path.join(TOP, "man", "vfmediate-configfs.5")
ABI = os.path.join(TOP, "configfs-schema", "ABI.txt")
KMOD = os.path.join(TOP, "kmod")

# Which schema directory each attribute prefix of kmod/ fills.
ATTR_PREFIX_DIR = {
    "vfm_dev_": "devices/<bdf>",
    "vfm_region_": "devices/<bdf>/regions/<region>",
    "vfm_rule_": "devices/<bdf>/regions/<region>/rules/<rule>",
    "vfm_med_": "mediators/<mediator>",
}


def _gen():
    loader = importlib.machinery.SourceFileLoader("vfm_gen_man", GEN)
    spec = importlib.util.spec_from_loader("vfm_gen_man", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


gen = _gen()
SCHEMA = gen.load()


def _read(path):
    with open(path) as f:
        return f.read()


def _attrs():
    for d in SCHEMA["directories"]:
        for a in d["attributes"]:
            yield d, a


def test_man_page_is_generated():
    assert _read(MAN5) == gen.render_man(SCHEMA), (
        "man/vfmediate-configfs.5 is stale: run configfs-schema/gen-man")


def test_abi_is_generated():
    assert _read(ABI) == gen.render_abi(SCHEMA), (
        "configfs-schema/ABI.txt is stale: run configfs-schema/gen-man")


def test_gen_man_check_mode():
    p = subprocess.run([GEN, "--check"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_man_renders_without_warnings():
    if not shutil.which("man"):
        pytest.skip("man(1) not installed")
    p = subprocess.run(["man", "--warnings", "-l", MAN5],
                       env=dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8"),
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stderr == "", p.stderr
    text = re.sub(".\b", "", p.stdout)         # overstrike bold/underline
    wide = [ln for ln in text.splitlines() if len(ln) > 80]
    assert wide == [], "lines wider than 80 columns:\n" + "\n".join(wide)
    for title in ("DIRECTORIES AND ATTRIBUTES", "ACTIONS", "OVERLAPPING RULES",
                  "SPLIT ACCESSES", "HIT COUNTERS", "MMAP", "IOEVENTFD AND INTERRUPT SETUP",
                  "STAGED AND RUNNING CONFIGURATION", "FAILING CLOSED",
                  "LIMITS", "EXAMPLES"):
        assert f"\n{title}\n" in text, title


def test_schema_modes_and_kinds():
    kinds = {"fixed", "default", "mkdir", "registered"}
    for d in SCHEMA["directories"]:
        assert d["kind"] in kinds, d["path"]
        assert d["mode"] == "0755", d["path"]
        if d["kind"] in ("mkdir", "registered"):
            assert d["name"] in SCHEMA["names"], d["path"]
            assert d["path"].endswith(f"<{d['name']}>"), d["path"]
    for d, a in _attrs():
        where = f"{d['path']}/{a['name']}"
        assert a["mode"] in ("0644", "0444", "0200"), where
        # A read-write attribute is staged or immediate, and says which;
        # a read-only one is neither.
        if a["mode"] == "0644":
            assert isinstance(a.get("staged"), bool), where
            assert a.get("examples"), f"{where}: no example value"
        else:
            assert "staged" not in a, where
            assert not a.get("examples"), where


def test_schema_values_match_their_grammar():
    for d, a in _attrs():
        where = f"{d['path']}/{a['name']}"
        read = re.compile(a["read"])
        defaults = a["default"]
        if isinstance(defaults, dict):
            defaults = list(defaults.values())
        elif defaults is not None:
            defaults = [defaults]
        for v in defaults or []:
            assert read.fullmatch(v), f"{where}: default {v!r}"
        for ex in a.get("examples", []):
            assert read.fullmatch(ex["read"]), f"{where}: example {ex}"
        if a.get("values"):
            vals = [v["value"] for v in a["values"]]
            assert all(read.fullmatch(v) for v in vals), where
            assert set(vals) == set(a["read"].split("|")), where


def test_schema_errnos_exist():
    every = list(SCHEMA["common_errors"])
    for nm in SCHEMA["names"].values():
        every += nm.get("errors", [])
    for d in SCHEMA["directories"]:
        every += d.get("rmdir_errors", [])
        for a in d["attributes"]:
            every += a.get("errors", [])
    for e in every:
        assert hasattr(errno, e["errno"]), e
        assert e["case"] and e["when"], e
    for ex in SCHEMA["examples"]:
        for c in ex["commands"]:
            if "errno" in c:
                assert hasattr(errno, c["errno"]), c


def test_schema_name_grammars():
    names = SCHEMA["names"]
    bdf = re.compile(names["bdf"]["regex"])
    assert bdf.fullmatch("0000:00:04.0") and bdf.fullmatch("ffff:ff:1f.7")
    for bad in ("0000:00:20.0", "0000:00:04.8", "0000:00:0A.0", "00:04.0"):
        assert not bdf.fullmatch(bad), bad
    rule = re.compile(names["rule"]["regex"])
    lim = SCHEMA["limits"]
    assert rule.fullmatch("a" * lim["rule_name_max"])
    assert not rule.fullmatch("a" * (lim["rule_name_max"] + 1))
    med = re.compile(names["mediator"]["regex"])
    assert med.fullmatch("a" * lim["mediator_name_max"])
    assert not med.fullmatch("a" * (lim["mediator_name_max"] + 1))


def _kmod_attrs():
    """{(schema dir, name): mode} of every configfs attribute kmod/
    declares."""
    found = {}
    for src in ("cfs.c", "cfs_rules.c", "registry.c"):
        code = _read(os.path.join(KMOD, src))
        for kind, prefix, name in re.findall(
                r"^CONFIGFS_ATTR(_RO|_WO)?\((\w+),\s*(\w+)\);", code, re.M):
            assert prefix in ATTR_PREFIX_DIR, f"{src}: unknown {prefix}"
            found[(ATTR_PREFIX_DIR[prefix], name)] = {
                "_RO": "0444", "_WO": "0200"}.get(kind, "0644")
    return found


def test_kmod_declares_what_the_schema_documents():
    declared = _kmod_attrs()
    documented = {(d["path"], a["name"]): a["mode"] for d, a in _attrs()}
    assert declared, "no CONFIGFS_ATTR found in kmod/"
    missing = sorted(set(declared) - set(documented))
    extra = sorted(set(documented) - set(declared))
    assert missing == [], f"in kmod/ but not in the schema: {missing}"
    assert extra == [], f"in the schema but not in kmod/: {extra}"
    modes = sorted(k for k in declared if declared[k] != documented[k])
    assert modes == [], f"modes differ: {modes}"


def test_kmod_limits_match():
    core = _read(os.path.join(KMOD, "vfmediate_core.h"))
    api = _read(os.path.join(TOP, "include", "linux", "vfmediate.h"))
    lim = SCHEMA["limits"]

    def define(text, name):
        return int(re.search(rf"#define\s+{name}\s+(\d+)", text)[1])

    assert define(core, "VFM_MAX_RULES") == lim["rules_per_region"]
    assert define(core, "VFM_RULE_NAME_LEN") - 1 == lim["rule_name_max"]
    assert define(core, "VFM_ARGS_LEN") - 1 == lim["mediator_args_max"]
    assert define(api, "VFM_NAME_LEN") - 1 == lim["mediator_name_max"]
