# SPDX-License-Identifier: GPL-2.0
"""configfs-schema/vfmediate.schema for the guest tests: the tree it
describes, the live tree, and what a write or mkdir must return.

    import cfschema as cs

    S = cs.Schema()                         # the JSON, with lookups
    S.attr("devices/<bdf>/regions/<region>/rules/<rule>", "range")
    S.errno_of(attr_or_name, "inverted")    # -> errno.ERANGE, from the schema
    cs.walk(cs.ROOT)                        # {relpath: (kind, mode)}
    cs.snapshot(cs.ROOT + "/devices")       # {relpath: bytes | DIR}

    ctx = cs.WriteCtx(mediator="nop", ...)
    S.expect_write("range", b"5-1\\n", ctx)  # -> ("inverted", "ERANGE")
    S.expect_mkdir(kind, name, ...)         # -> (case, errno name) | None

The expect_* functions are the schema's grammars in executable form: they
return the case of the schema's error list a value falls under, and its
errno as the schema gives it, or None for a valid value (which the
bad-input test never writes).
"""

from __future__ import annotations

import errno as _errno
import json
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
SCHEMA_PATH = os.path.join(TOP, "configfs-schema", "vfmediate.schema")
ROOT = "/sys/kernel/config/vfmediate"

DIR = "<dir>"           # snapshot() value of a directory

# A number as the schema's "values.numbers" describes it.
_NUMBER = re.compile(rb"0[xX][0-9a-fA-F]+|[0-9]+")


class Schema:
    def __init__(self, path: str = SCHEMA_PATH):
        with open(path) as f:
            self.doc = json.load(f)
        self.root = self.doc["root"]
        self.limits = self.doc["limits"]
        self.names = self.doc["names"]
        self.dirs = {d["path"]: d for d in self.doc["directories"]}
        self._attr_by_name = {}
        for d in self.doc["directories"]:
            for a in d["attributes"]:
                self._attr_by_name.setdefault(a["name"], a)

    # -- lookups ---------------------------------------------------------

    def attr(self, dirpath: str, name: str) -> dict:
        for a in self.dirs[dirpath]["attributes"]:
            if a["name"] == name:
                return a
        raise KeyError(f"{dirpath}/{name}")

    def attr_named(self, name: str) -> dict:
        return self._attr_by_name[name]

    def common(self, case: str) -> str:
        for e in self.doc["common_errors"]:
            if e["case"] == case:
                return e["errno"]
        raise KeyError(case)

    def errno_of(self, errors: list, case: str) -> str:
        """The errno name the schema gives @case in @errors."""
        for e in errors:
            if e["case"] == case:
                return e["errno"]
        raise KeyError(f"no error case {case!r} in the schema")

    def name_regex(self, key: str) -> re.Pattern:
        nm = self.names[key]
        if "regex" in nm:
            return re.compile(nm["regex"])
        return re.compile("|".join(map(re.escape, nm["values"])))

    def mkdir_dirs(self) -> list[str]:
        """Schema paths of the directories made by mkdir."""
        return [p for p, d in self.dirs.items() if d["kind"] == "mkdir"]

    # -- the tree --------------------------------------------------------

    def expected(self, instances: dict[str, list[str]],
                 rules: dict[tuple[str, str], list[str]]) -> dict:
        """{relpath: (kind, mode)} of the whole tree, given the names of
        the instances of each placeholder: instances["bdf"] and
        instances["mediator"], and rules[(bdf, region)]."""
        out = {}
        regions = self.names["region"]["values"]

        def add(d, rel):
            out[rel] = ("dir", d["mode"])
            for a in d["attributes"]:
                out[f"{rel}/{a['name']}".lstrip("/")] = ("attr", a["mode"])

        for path, d in self.dirs.items():
            parts = path.split("/") if path else []
            for rel, binding in self._instances(parts, instances, rules,
                                                regions):
                add(d, rel)
        return out

    @staticmethod
    def _instances(parts, instances, rules, regions):
        """Every relpath @parts stands for, with its placeholder values."""
        results = [("", {})]
        for p in parts:
            nxt = []
            for rel, b in results:
                if p == "<region>":
                    names = regions
                elif p == "<rule>":
                    names = rules.get((b["bdf"], b["region"]), [])
                elif p.startswith("<"):
                    names = instances.get(p[1:-1], [])
                else:
                    names = [p]
                for n in names:
                    nb = dict(b)
                    if p.startswith("<"):
                        nb[p[1:-1]] = n
                    nxt.append((f"{rel}/{n}".lstrip("/"), nb))
            results = nxt
        return results

    def template_of(self, relpath: str) -> tuple[str, dict]:
        """The schema directory path that @relpath (a directory) is an
        instance of, and the placeholder values."""
        parts = relpath.split("/") if relpath else []
        for path in self.dirs:
            tparts = path.split("/") if path else []
            if len(tparts) != len(parts):
                continue
            binding = {}
            for t, p in zip(tparts, parts):
                if t.startswith("<"):
                    if not self.name_regex(t[1:-1]).fullmatch(p):
                        break
                    binding[t[1:-1]] = p
                elif t != p:
                    break
            else:
                return path, binding
        raise KeyError(relpath)

    # -- what a write returns --------------------------------------------

    def expect_write(self, attr: dict, data: bytes, ctx: "WriteCtx"
                     ) -> Optional[tuple[str, str]]:
        """(case, errno name) for writing @data in one write(2) to @attr,
        or None when the value is valid, or ("mediator", None) when only
        the attached mediator's check_args can tell."""
        if attr["mode"] == "0444":
            return ("read_only", self.common("read_only"))
        if not data:
            return ("zero_length", self.common("zero_length"))
        data = data[:self.limits["configfs_write_max"]]
        body = data[:-1] if data.endswith(b"\n") else data
        errs = attr["errors"]
        kind = attr["type"]
        if kind == "enum":
            return self._expect_enum(attr, body, ctx)
        if kind == "range":
            case = self._range_case(body, ctx.region_len)
            return (case, self.errno_of(errs, case)) if case else None
        if kind == "mediator":
            case = self._mediator_case(body, ctx)
            return (case, self.errno_of(errs, case)) if case else None
        if kind == "args":
            if len(body) > self.limits["mediator_args_max"] or b"\0" in body:
                return ("too_long", self.errno_of(errs, "too_long"))
            if ctx.mediator is None:
                return ("no_mediator", self.errno_of(errs, "no_mediator"))
            return ("mediator", None)
        raise ValueError(f"no write grammar for type {kind}")

    def _expect_enum(self, attr, body, ctx):
        errs = attr["errors"]
        values = [v["value"].encode() for v in attr["values"]]
        if body not in values:
            return ("syntax", self.errno_of(errs, "syntax"))
        if attr["name"] == "action" and body == b"trap":
            if ctx.mediator is None:
                return ("trap_no_mediator",
                        self.errno_of(errs, "trap_no_mediator"))
            if not ctx.can_trap(ctx.rule_access):
                return ("unhandled", self.errno_of(errs, "unhandled"))
        if attr["name"] == "access" and ctx.rule_action == "trap":
            if not ctx.can_trap(body.decode()):
                return ("unhandled", self.errno_of(errs, "unhandled"))
        return None

    @staticmethod
    def _number(s: bytes) -> Optional[int]:
        """The value of a well-formed number (of any size), else None."""
        if not _NUMBER.fullmatch(s):
            return None
        return int(s, 16) if s[:2] in (b"0x", b"0X") else int(s, 10)

    def _range_case(self, body: bytes, region_len: Optional[int]
                    ) -> Optional[str]:
        if len(body) > self.limits["range_max_bytes"] or b"\0" in body:
            return "syntax"
        m = re.search(rb"[-+]", body)
        if not m or m.start() == 0:
            return "syntax"
        a = self._number(body[:m.start()])
        b = self._number(body[m.end():])
        if a is None or b is None:
            return "syntax"
        if a >= 1 << 64 or b >= 1 << 64:
            return "too_big"
        if m[0] == b"-":
            if b < a:
                return "inverted"
            end = b + 1
        else:
            if b == 0:
                return "empty"
            end = a + b
            if end >= 1 << 64:
                return "overflow"
        if end > self.limits["offset_space"]:
            return "offset_space"
        if region_len is not None and end > region_len:
            return "outside_region"
        return None

    def _mediator_case(self, body: bytes, ctx) -> Optional[str]:
        if len(body) > self.limits["mediator_name_max"] or b"\0" in body:
            return "syntax"
        if body == b"":
            return "trap_rules" if ctx.trap_access else None
        try:
            name = body.decode("ascii")
        except UnicodeDecodeError:
            return "syntax"
        if not self.name_regex("mediator").fullmatch(name):
            return "syntax"
        if name == ctx.mediator:
            return None
        if name not in ctx.known_mediators:
            return "unknown"
        ops = ctx.known_mediators[name]
        if ops is None:         # not loaded: its handlers are unknown
            return None
        need = {"r": {"read"}, "w": {"write"}, "rw": {"read", "write"},
                "": set()}[ctx.trap_access]
        return "unhandled" if not need <= ops else None

    # -- what a mkdir returns --------------------------------------------

    def expect_mkdir(self, parent_kind: Optional[str], name: bytes,
                     existing: set[bytes], full: bool = False
                     ) -> Optional[tuple[str, str]]:
        """(case, errno name) for mkdir of @name in a directory that is a
        mkdir point for @parent_kind ("bdf", "rule") or none (None), which
        holds @existing. None when the mkdir would succeed."""
        parts = [p for p in name.split(b"/") if p]
        if not parts:
            raise ValueError("name without a component")
        if len(parts) > 1:
            first = parts[0]
            if len(first) > self.limits["name_max"]:
                return ("name_too_long", self.common("name_too_long"))
            if first in existing or first in (b".", b".."):
                raise ValueError("a path through an existing directory")
            return ("no_parent", self.common("no_parent"))
        nm = parts[0]
        if len(nm) > self.limits["name_max"]:
            return ("name_too_long", self.common("name_too_long"))
        if nm in existing or nm in (b".", b".."):
            return ("exists", self.common("exists"))
        if parent_kind is None:
            return ("mkdir_elsewhere", self.common("mkdir_elsewhere"))
        errs = self.names[parent_kind]["errors"]
        try:
            text = nm.decode("ascii")
        except UnicodeDecodeError:
            text = None
        if text is None or not self.name_regex(parent_kind).fullmatch(text):
            return ("syntax", self.errno_of(errs, "syntax"))
        if full:
            return ("full", self.errno_of(errs, "full"))
        return None


@dataclass
class WriteCtx:
    """What the grammar of a write depends on, besides the value."""
    mediator: Optional[str] = None          # attached mediator, if any
    mediator_ops: set = field(default_factory=set)
    trap_access: str = ""                   # "r" "w" "rw" of trap rules
    # name -> its ops (None while not registered): every loadable one
    known_mediators: dict = field(default_factory=dict)
    region_len: Optional[int] = None        # when bound
    rule_action: str = "deny"
    rule_access: str = "rw"

    def can_trap(self, access: str) -> bool:
        need = {"r": {"read"}, "w": {"write"}, "rw": {"read", "write"}}
        return self.mediator is not None and need[access] <= self.mediator_ops


# -- the live tree ------------------------------------------------------------

def walk(top: str) -> dict[str, tuple[str, str]]:
    """{relpath: ("dir"|"attr"|"other", "0NNN")} of everything under @top,
    @top itself as ""."""
    out = {}

    def mode(st):
        return f"{stat.S_IMODE(st.st_mode):04o}"

    st = os.lstat(top)
    out[""] = ("dir", mode(st))
    for dirpath, dirnames, filenames in os.walk(top):
        rel = os.path.relpath(dirpath, top)
        rel = "" if rel == "." else rel
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            kind = ("dir" if stat.S_ISDIR(st.st_mode) else
                    "attr" if stat.S_ISREG(st.st_mode) else "other")
            out[f"{rel}/{n}".lstrip("/")] = (kind, mode(st))
    return out


def read_raw(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


WRITE_ONLY = "(write-only)"


def snapshot(top: str) -> dict[str, object]:
    """Every directory and the raw content of every attribute under @top."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        rel = os.path.relpath(dirpath, top)
        out[rel] = DIR
        for n in filenames:
            p = os.path.join(dirpath, n)
            # A write-only attribute (apply) cannot be read, even by root.
            if not os.stat(p).st_mode & 0o444:
                out[os.path.join(rel, n)] = WRITE_ONLY
                continue
            out[os.path.join(rel, n)] = read_raw(p)
    return out


def diff_snapshots(before: dict, after: dict) -> list[str]:
    lines = []
    for k in sorted(set(before) | set(after)):
        if before.get(k) != after.get(k):
            lines.append(f"{k}: {before.get(k, '(absent)')!r} -> "
                         f"{after.get(k, '(absent)')!r}")
    return lines


def mediator_aliases() -> dict[str, str]:
    """{mediator name: module} from the modules.alias of the running
    kernel: every mediator a write to "mediator" could load."""
    out = {}
    path = f"/lib/modules/{os.uname().release}/modules.alias"
    prefix = "alias vfmediate-mediator:"
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(prefix):
                    name, module = line[len(prefix):].split()
                    out[name] = module
    except OSError:
        pass
    return out


def errno_name(n: Optional[int]) -> str:
    return "success" if n is None else _errno.errorcode.get(n, str(n))
