# SPDX-License-Identifier: GPL-2.0
"""Slab fault injection (CONFIG_FAILSLAB) and kmemleak, for the debug kernel.

Two ways to make an operation's allocations fail, both limited to the
calling test process and to call stacks that pass through one module::

    import failslab
    with failslab.Failslab(module="vfmediate") as fs:
        # every failure point in turn: N = 1, 2, ... until the operation
        # runs out of allocations before the Nth
        for n in itertools.count(1):
            with fs.nth(n) as shot:
                try_the_operation()
            if not shot.injected:
                break
        # random failures: each allocation fails with some probability,
        # at most ``times`` of them
        with fs.random(probability=30, times=2) as shot:
            try_the_operation()
        shot.injected                      # how many failed

``nth`` uses /proc/thread-self/fail-nth; ``random`` uses the debugfs
attributes (probability, interval, times, space) with task-filter and
/proc/self/make-it-fail. Both honour the stack filter (require-start/end
set to ``module``'s text), so allocations that vfio, the driver core or
configfs make on the module's behalf fail too, and Python's own system
calls do not. Every attribute is restored on close.

``Kmemleak`` lists what a scan reports that an earlier scan did not.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional

DIR = "/sys/kernel/debug/failslab"
KMEMLEAK = "/sys/kernel/debug/kmemleak"
ATTRS = ["probability", "interval", "times", "space", "verbose",
         "task-filter", "ignore-gfp-wait", "cache-filter",
         "stacktrace-depth", "require-start", "require-end",
         "reject-start", "reject-end"]


def available() -> Optional[str]:
    """None when failslab can be driven here, else why not."""
    if not os.path.isdir(DIR):
        return (f"no {DIR}: kernel {os.uname().release} lacks CONFIG_FAILSLAB "
                "and CONFIG_FAULT_INJECTION_DEBUG_FS (only the debug kernel "
                "has them)")
    if not os.path.exists(os.path.join(DIR, "require-start")):
        return "no failslab stack filter (CONFIG_FAULT_INJECTION_STACKTRACE_FILTER)"
    if not os.path.exists("/proc/thread-self/fail-nth"):
        return "no /proc/thread-self/fail-nth"
    return None


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _write(path: str, value) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, str(value).encode())
    finally:
        os.close(fd)


def module_text(name: str) -> tuple[int, int]:
    """[start, end) around a loaded module's code, from /proc/kallsyms
    (page-rounded: a module's text is its own page-aligned allocation)."""
    lo, hi = None, None
    tag = f"[{name}]"
    with open("/proc/kallsyms") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 4 or parts[3] != tag or parts[1] not in "tT":
                continue
            a = int(parts[0], 16)
            lo = a if lo is None else min(lo, a)
            hi = a if hi is None else max(hi, a)
    if lo is None or lo == 0:
        raise RuntimeError(f"no text symbols of module {name} in /proc/kallsyms")
    return lo & ~0xFFF, (hi | 0xFFF) + 1


@dataclass
class Shot:
    injected: int = 0


class Failslab:
    def __init__(self, module: Optional[str] = None, depth: int = 32,
                 verbose: int = 0):
        self.saved = {a: _read(os.path.join(DIR, a)) for a in ATTRS}
        self._set("probability", 0)
        # 1: a line per injected failure, 2: with the stack
        self._set("verbose", verbose)
        self._set("interval", 1)
        self._set("space", 0)
        self._set("times", -1)
        self._set("task-filter", "Y")
        # Sleeping allocations (GFP_KERNEL: nearly all of ours) are exactly
        # the ones to fail; failslab leaves them alone by default.
        self._set("ignore-gfp-wait", "N")
        self._set("cache-filter", "N")
        self.range = None
        if module:
            self.target(module, depth)

    def _set(self, attr: str, value) -> None:
        _write(os.path.join(DIR, attr), value)

    def target(self, module: str, depth: int = 32) -> None:
        """Fail only allocations whose call stack passes through module
        within its innermost ``depth`` frames (at most 32). A small depth
        keeps failures to the module's own allocations and those of the
        helpers it calls directly, away from deep kernel paths that have
        their own, untested error handling."""
        start, end = module_text(module)
        self._set("stacktrace-depth", depth)
        self._set("require-start", hex(start))
        self._set("require-end", hex(end))
        self.range = (start, end)

    @contextmanager
    def nth(self, n: int):
        """The n-th allocation (that passes the stack filter) from here on
        fails; shot.injected says whether there was an n-th."""
        shot = Shot()
        path = "/proc/thread-self/fail-nth"
        _write(path, n)
        try:
            yield shot
        finally:
            left = int(_read(path))
            _write(path, 0)
            shot.injected = int(left == 0)

    @contextmanager
    def random(self, probability: int, times: int = 1, interval: int = 1):
        """Each allocation fails with ``probability`` percent, at most
        ``times`` times in all, counting every ``interval``-th call."""
        shot = Shot()
        self._set("times", times)
        self._set("interval", interval)
        _write("/proc/self/make-it-fail", 1)
        self._set("probability", probability)
        try:
            yield shot
        finally:
            self._set("probability", 0)
            _write("/proc/self/make-it-fail", 0)
            shot.injected = times - int(_read(os.path.join(DIR, "times")))
            self._set("times", -1)
            self._set("interval", 1)

    def close(self) -> None:
        for p, v in (("/proc/thread-self/fail-nth", 0),
                     ("/proc/self/make-it-fail", 0)):
            try:
                _write(p, v)
            except OSError:
                pass
        self._set("probability", 0)
        for a in ATTRS:
            if a == "probability":
                continue
            v = self.saved[a]
            if a == "stacktrace-depth" and v == "0":
                continue
            try:
                self._set(a, v)
            except OSError:
                pass

    def __enter__(self) -> "Failslab":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_OBJ = re.compile(r"^unreferenced object (0x[0-9a-f]+) \(size (\d+)\):", re.M)


class Kmemleak:
    """Reports of a kmemleak scan that were not there at construction."""

    def __init__(self):
        self.before = {self._key(e) for e in self._entries(self._scan())}

    @staticmethod
    def on() -> bool:
        try:
            _read(KMEMLEAK)
            return True
        except OSError:
            return False

    @staticmethod
    def _scan() -> str:
        _write(KMEMLEAK, "scan")
        return _read(KMEMLEAK)

    @staticmethod
    def _entries(report: str) -> list[str]:
        starts = [m.start() for m in _OBJ.finditer(report)]
        return [report[a:b].rstrip() for a, b in
                zip(starts, starts[1:] + [len(report)])]

    @staticmethod
    def _key(entry: str) -> str:
        # Address, size, and the allocating task and time: an object's
        # hex dump may change between scans, these do not.
        return "\n".join(entry.splitlines()[:2])

    def new(self) -> list[str]:
        """Scan (twice: a stale stack slot can hide a leak for one scan)
        and return the reports that are new since construction."""
        self._scan()
        return [e for e in self._entries(self._scan())
                if self._key(e) not in self.before]
