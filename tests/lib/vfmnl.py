# SPDX-License-Identifier: GPL-2.0
"""A small generic netlink client for the vfmediate family, for the tests.

The numbers come from include/uapi/linux/vfmediate.h itself (its enums
are parsed at import), so a test cannot agree with a stale copy::

    from vfmnl import Nl, A, CMD, EV

    with Nl() as nl:
        devs = nl.dump(CMD.DEV_GET)          # [Msg, ...]
        d = nl.do(CMD.DEV_GET, {A.DEV_NAME: "0000:00:04.0"})
        d.str(A.DEV_NAME), d.u8(A.DEV_STATE), d.u64(A.DEV_GENERATION)
        for region in d.nests(A.REGION): ...
        nl.subscribe("monitor")
        ev = nl.event(timeout=2)             # Msg or None

A refused request raises NlError carrying the errno and the kernel's
extended ack message (``e.errno``, ``e.msg``).
"""
from __future__ import annotations

import errno
import os
import re
import select
import socket
import struct
import time
from types import SimpleNamespace
from typing import Optional

HEADER = os.path.join(os.path.dirname(__file__), "..", "..", "include",
                      "uapi", "linux", "vfmediate.h")

NETLINK_GENERIC = 16
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_DROP_MEMBERSHIP = 2
NETLINK_EXT_ACK = 11
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
CTRL_ATTR_MCAST_GROUPS = 7
CTRL_ATTR_MCAST_GRP_NAME = 1
CTRL_ATTR_MCAST_GRP_ID = 2
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_DUMP_INTR = 0x10
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSGERR_ATTR_MSG = 1
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF


def _parse_enums(text: str) -> dict[str, int]:
    """Every enumerator of every enum in a C header, by name."""
    values: dict[str, int] = {}
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    for body in re.findall(r"enum\s+\w*\s*\{(.*?)\}", text, flags=re.S):
        nxt = 0
        for item in body.split(","):
            item = item.strip()
            if not item:
                continue
            name, _, val = item.partition("=")
            name, val = name.strip(), val.strip()
            if val:
                nxt = values[val] if val in values else eval(  # noqa: S307
                    re.sub(r"\b([A-Z_][A-Z0-9_]*)\b",
                           lambda m: str(values[m[1]]), val))
            values[name] = nxt
            nxt += 1
    for name, val in re.findall(r"#define\s+(VFMEDIATE_\w+)\s+(\S+)", text):
        values[name] = val.strip('"') if val.startswith('"') else int(val, 0)
    return values


def _load() -> SimpleNamespace:
    with open(HEADER) as f:
        v = _parse_enums(f.read())

    def ns(prefix):
        return SimpleNamespace(**{k[len(prefix):]: n for k, n in v.items()
                                  if k.startswith(prefix)})
    return SimpleNamespace(all=v, A=ns("VFMEDIATE_A_"),
                           CMD=ns("VFMEDIATE_CMD_"),
                           EV=ns("VFMEDIATE_EVENT_"),
                           ACTION=ns("VFMEDIATE_ACTION_"),
                           DEV=ns("VFMEDIATE_DEV_"))


_U = _load()
A, CMD, EV, ACTION, DEV = _U.A, _U.CMD, _U.EV, _U.ACTION, _U.DEV
FAMILY = _U.all["VFMEDIATE_GENL_NAME"]
VERSION = _U.all["VFMEDIATE_GENL_VERSION"]
MONITOR = _U.all["VFMEDIATE_GENL_MCGRP_MONITOR"]

EV_NAMES = {v: k.lower() for k, v in vars(EV).items()
            if not k.startswith("_") and k not in ("UNSPEC", "MAX")}


class NlError(OSError):
    def __init__(self, err: int, msg: str = ""):
        super().__init__(err, (os.strerror(err) + (f": {msg}" if msg else "")))
        self.msg = msg


def _attrs(buf: bytes) -> list[tuple[int, bytes]]:
    out, off = [], 0
    while off + 4 <= len(buf):
        ln, typ = struct.unpack_from("=HH", buf, off)
        if ln < 4:
            break
        out.append((typ & NLA_TYPE_MASK, buf[off + 4:off + ln]))
        off += (ln + 3) & ~3
    return out


def attr(typ: int, data: bytes) -> bytes:
    b = struct.pack("=HH", 4 + len(data), typ) + data
    return b + b"\0" * (-len(b) % 4)


def attr_str(typ: int, s: str) -> bytes:
    return attr(typ, s.encode() + b"\0")


class Msg:
    """A message's (or nest's) attributes; a type may repeat (nests)."""

    def __init__(self, payload: bytes, cmd: int = 0, flags: int = 0):
        self.cmd = cmd
        self.flags = flags
        self.items = _attrs(payload)

    def raw(self, typ: int) -> Optional[bytes]:
        for t, d in self.items:
            if t == typ:
                return d
        return None

    def has(self, typ: int) -> bool:
        return self.raw(typ) is not None

    def str(self, typ: int) -> Optional[str]:
        d = self.raw(typ)
        return None if d is None else d.split(b"\0", 1)[0].decode()

    def _int(self, typ: int, fmt: str) -> Optional[int]:
        d = self.raw(typ)
        if d is None:
            return None
        assert len(d) == struct.calcsize(fmt), (typ, len(d), fmt)
        return struct.unpack(fmt, d)[0]

    def u8(self, typ: int) -> Optional[int]:
        return self._int(typ, "=B")

    def u32(self, typ: int) -> Optional[int]:
        return self._int(typ, "=I")

    def u64(self, typ: int) -> Optional[int]:
        return self._int(typ, "=Q")

    def nests(self, typ: int) -> list["Msg"]:
        return [Msg(d) for t, d in self.items if t == typ]

    def event(self) -> str:
        return EV_NAMES.get(self.u32(A.EVENT), "?")

    def __repr__(self) -> str:
        return f"Msg(cmd={self.cmd}, {len(self.items)} attrs)"


class Nl:
    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW,
                                  NETLINK_GENERIC)
        self.sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        self.sock.bind((0, 0))
        self.seq = 0
        self.family_id, self.groups = self._resolve(FAMILY)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Nl":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _send(self, family: int, cmd: int, payload: bytes, flags: int,
              version: int = VERSION, reserved: int = 0) -> int:
        self.seq += 1
        body = struct.pack("=BBH", cmd, version, reserved) + payload
        hdr = struct.pack("=IHHII", 16 + len(body), family,
                          flags | NLM_F_REQUEST, self.seq, 0)
        self.sock.send(hdr + body)
        return self.seq

    def _replies(self, seq: int) -> list[Msg]:
        """Messages answering @seq, up to NLMSG_DONE or the ack/error."""
        out, done = [], False
        while not done:
            buf = self.sock.recv(1 << 20)
            off = 0
            while off + 16 <= len(buf):
                ln, typ, flags, mseq, _ = struct.unpack_from("=IHHII", buf, off)
                body = buf[off + 16:off + ln]
                off += (ln + 3) & ~3
                if mseq != seq:
                    continue
                if typ == NLMSG_DONE:
                    # a dump that failed says so here, with its extack
                    err = -struct.unpack_from("=i", body)[0] if body else 0
                    if err:
                        msg = Msg(body[4:]).str(NLMSGERR_ATTR_MSG) or ""
                        raise NlError(err, msg)
                    done = True
                elif typ == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", body)[0]
                    if err:
                        raise NlError(err, self._extack(body, flags))
                    done = True
                else:
                    m = Msg(body[4:], cmd=body[0], flags=flags)
                    out.append(m)
                    if not flags & NLM_F_MULTI:
                        done = True
        return out

    @staticmethod
    def _extack(body: bytes, flags: int) -> str:
        # struct nlmsgerr: error + the original header (capped: 0x100)
        off = 4 + (16 if flags & 0x100 else
                   struct.unpack_from("=I", body, 4)[0])
        off = (off + 3) & ~3
        for t, d in _attrs(body[off:]):
            if t == NLMSGERR_ATTR_MSG:
                return d.split(b"\0", 1)[0].decode()
        return ""

    def _resolve(self, name: str) -> tuple[int, dict[str, int]]:
        seq = self._send(GENL_ID_CTRL, CTRL_CMD_GETFAMILY,
                         attr_str(CTRL_ATTR_FAMILY_NAME, name), 0, version=1)
        (m,) = self._replies(seq)
        groups = {}
        for g in m.nests(CTRL_ATTR_MCAST_GROUPS):
            for t, d in g.items:
                gm = Msg(d)
                groups[gm.str(CTRL_ATTR_MCAST_GRP_NAME)] = gm.u32(
                    CTRL_ATTR_MCAST_GRP_ID)
        return struct.unpack("=H", m.raw(CTRL_ATTR_FAMILY_ID))[0], groups

    def request(self, cmd: int, attrs: Optional[dict] = None,
                dump: bool = False, raw: bytes = b"",
                reserved: int = 0) -> list[Msg]:
        payload = raw
        for typ, val in (attrs or {}).items():
            payload += attr_str(typ, val) if isinstance(val, str) else \
                attr(typ, val)
        flags = NLM_F_DUMP if dump else NLM_F_ACK
        seq = self._send(self.family_id, cmd, payload, flags,
                         reserved=reserved)
        return self._replies(seq)

    def do(self, cmd: int, attrs: Optional[dict] = None, **kw) -> Msg:
        (m,) = self.request(cmd, attrs, **kw)
        return m

    def dump(self, cmd: int, attrs: Optional[dict] = None, **kw) -> list[Msg]:
        return self.request(cmd, attrs, dump=True, **kw)

    def subscribe(self, group: str = MONITOR) -> None:
        self.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP,
                             self.groups[group])
        # Before 6.7 nothing tells the family of a new listener: the
        # access path notices it within a tick (kmod/netlink.c). Two
        # ticks at HZ=100, the lowest there is.
        time.sleep(0.02)

    def unsubscribe(self, group: str = MONITOR) -> None:
        self.sock.setsockopt(SOL_NETLINK, NETLINK_DROP_MEMBERSHIP,
                             self.groups[group])

    def event(self, timeout: float = 2.0) -> Optional[Msg]:
        """The next multicast message, or None after @timeout seconds."""
        while True:
            r, _, _ = select.select([self.sock], [], [], timeout)
            if not r:
                return None
            buf = self.sock.recv(1 << 16)
            ln, typ, flags, seq, pid = struct.unpack_from("=IHHII", buf)
            if typ == self.family_id and seq == 0:
                return Msg(buf[20:ln], cmd=buf[16], flags=flags)

    def events(self, timeout: float = 0.5,
               first: Optional[float] = None) -> list[Msg]:
        """Every event until none came for @timeout seconds; the first
        may take up to @first seconds, when given. The kernel sends
        events from a work item, which a loaded guest can hold back
        longer than a quiet period: a test that expects events says how
        long to wait for them."""
        out = []
        wait = timeout if first is None else max(first, timeout)
        while (m := self.event(wait)) is not None:
            out.append(m)
            wait = timeout
        return out


def stats(nl: Nl, dev: Optional[str] = None) -> dict:
    """STATS_GET merged: {(dev, region): {"sums": {action: (h, b, r)},
    "rules": {name: Msg}}}, checking no rule comes twice."""
    out: dict = {}
    msgs = nl.dump(CMD.STATS_GET, {A.DEV_NAME: dev} if dev else None)
    for m in msgs:
        (reg,) = m.nests(A.REGION)
        key = (m.str(A.DEV_NAME), reg.str(A.REGION_NAME))
        first = key not in out
        ent = out.setdefault(key, {"sums": {}, "rules": {}})
        sums = reg.nests(A.ACTION_STATS)
        assert bool(sums) == first, f"ACTION_STATS only first for {key}"
        for s in sums:
            ent["sums"][s.u8(A.RULE_ACTION)] = (
                s.u64(A.HITS), s.u64(A.BYTES), s.u64(A.REFUSED))
        for r in reg.nests(A.RULE):
            name = r.str(A.RULE_NAME)
            assert name not in ent["rules"], f"rule {name} twice in {key}"
            ent["rules"][name] = r
    return out


def errno_of(fn) -> int:
    try:
        fn()
    except OSError as e:
        return e.errno
    return 0


__all__ = ["Nl", "NlError", "Msg", "A", "CMD", "EV", "ACTION", "DEV",
           "stats", "errno_of", "attr", "attr_str", "errno"]
