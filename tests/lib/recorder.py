# SPDX-License-Identifier: GPL-2.0
"""The test-only recorder mediators (kmod/mediators/recorder.c).

``recorder``, ``recorder-rd``, ``recorder-obs`` and ``recorder-rdonly``
differ in the handlers they have (read+write+observe, read+observe,
observe, read). Their handlers change the data they pass on: a read gives
the device's bytes XOR READ_XOR, a write gives the device the user's
bytes with WRITE_XOR XORed into each byte at a 4-byte aligned offset.

``State(text)`` parses their ``mediator_state``: ``counts`` (read, write,
observe, region_info, mmap) and ``log``, a list of Entry, oldest first.
"""
from __future__ import annotations

from typing import NamedTuple

from vfm import Module

MODULE = Module("vfmediate_recorder")
READ_XOR = 0x80
WRITE_XOR = 0x01
# mediator -> (has read, has write, has observe)
HANDLERS = {"recorder": (True, True, True),
            "recorder-rd": (True, False, True),
            "recorder-obs": (False, False, True),
            "recorder-rdonly": (True, False, False)}


class Entry(NamedTuple):
    seq: int
    path: str           # read, write, observe-r, observe-w
    index: int
    off: int
    count: int
    ret: int

    def what(self) -> tuple:
        """The entry without its sequence number."""
        return (self.path, self.index, self.off, self.count, self.ret)


class State:
    def __init__(self, text: str):
        lines = text.splitlines()
        self.counts = {k: int(v) for k, v in
                       (kv.split("=") for kv in lines[0].split())}
        self.log = []
        for ln in lines[1:]:
            seq, path, index, off, count, ret = ln.split()
            self.log.append(Entry(int(seq), path, int(index), int(off, 16),
                                  int(count), int(ret)))

    @property
    def last_seq(self) -> int:
        return self.log[-1].seq if self.log else 0

    def since(self, seq: int) -> list[tuple]:
        """What was recorded after ``seq``, without sequence numbers."""
        return [e.what() for e in self.log if e.seq > seq]


def state(v) -> State:
    """The recorder state of the open device of Vfm ``v``."""
    return State(v.mediator_state)


def path(mediator: str, write: bool) -> str:
    """The path a trapped BAR access takes with this mediator."""
    rd, wr, _ = HANDLERS[mediator]
    if write:
        return "write" if wr else "observe-w"
    return "read" if rd else "observe-r"


def read_bytes(data: bytes) -> bytes:
    """What the read handler gives for the device's ``data``."""
    return bytes(b ^ READ_XOR for b in data)


def write_bytes(off: int, data: bytes) -> bytes:
    """What the write handler gives the device for the user's ``data``."""
    return bytes(b ^ WRITE_XOR if (off + i) % 4 == 0 else b
                 for i, b in enumerate(data))
