# SPDX-License-Identifier: GPL-2.0
"""vfmediate's configfs tree and mediator modules, for the guest tests.

One device's configuration is a ``Vfm``: a context manager that creates
``/sys/kernel/config/vfmediate/devices/<BDF>/``, optionally attaches a
mediator, adds rules, and on leaving removes everything it created, in
reverse order (rules first, then the device directory)::

    from vfm import Vfm, Module

    with Vfm(bdf, mediator="audit", args="regions=bar0,config") as v:
        v.state                              # "absent" | "bound" | "open"
        r = v.add_rule("bar0", "guard", "0x0-0xfff", "ro", access="w")
        r.hits                               # int
        v.mediator_state                     # the mediator's show() text
        v.write("mediator", "")              # detach (as `echo > mediator`)

    Module("vfmediate_audit").loaded / .refcnt / .unload() -> errno or 0
    vfm.purge(bdf)          # remove a device directory and all its rules

Every write goes out in one write(2) of the value plus a newline, as
``echo VALUE > attr`` does, and a refused write raises OSError with the
kernel's errno (``e.errno``). Reads return the value without its trailing
newline.
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
from typing import Optional

ROOT = "/sys/kernel/config/vfmediate"
DEVICES = f"{ROOT}/devices"
MEDIATORS = f"{ROOT}/mediators"

_libc = ctypes.CDLL(None, use_errno=True)
_SYS_delete_module = 176        # x86_64

# Region directory names, by VFIO region index.
REGIONS = ["bar0", "bar1", "bar2", "bar3", "bar4", "bar5", "rom", "config",
           "vga"]


def read_attr(path: str) -> str:
    """An attribute's value, without the trailing newline."""
    with open(path, "rb") as f:
        data = f.read().decode()
    return data[:-1] if data.endswith("\n") else data


def write_attr(path: str, value: str, newline: bool = True) -> None:
    """Store ``value`` (plus "\\n" unless told not to) with one write(2);
    raises OSError carrying the errno the kernel returned."""
    data = (value + ("\n" if newline else "")).encode()
    fd = os.open(path, os.O_WRONLY)
    try:
        n = os.write(fd, data)
        if n != len(data):
            raise OSError(errno.EIO, f"short write {n}/{len(data)}", path)
    except OSError as e:
        if e.filename is None:
            raise OSError(e.errno, os.strerror(e.errno), path) from None
        raise
    finally:
        os.close(fd)


class Rule:
    """regions/<region>/rules/<name>/ of one device."""

    def __init__(self, dev: "Vfm", region: str, name: str):
        self.dev = dev
        self.region = region
        self.name = name
        self.path = dev.path("regions", region, "rules", name)

    def read(self, attr: str) -> str:
        return read_attr(os.path.join(self.path, attr))

    def write(self, attr: str, value, newline: bool = True) -> None:
        write_attr(os.path.join(self.path, attr), str(value), newline)

    @property
    def hits(self) -> int:
        return int(self.read("hits"), 0)

    def __repr__(self) -> str:
        return f"<vfm.Rule {self.dev.bdf} {self.region}/{self.name}>"


class Vfm:
    """The configfs directory of one device (see the module docstring).

    ``Vfm(bdf)`` does nothing until ``create()`` (or entering the ``with``
    block): then it makes the directory, writes ``mediator`` and then
    ``mediator_args`` when given (in that order: the mediator's
    check_args validates the arguments). ``remove()`` (or leaving the
    block) removes the rules this object added, in reverse order, then
    the directory; what is already gone is skipped."""

    def __init__(self, bdf: str, mediator: Optional[str] = None,
                 args: Optional[str] = None):
        self.bdf = bdf
        self.dir = f"{DEVICES}/{bdf}"
        self.mediator_name = mediator
        self.args = args
        self.rules: list[Rule] = []

    # -- lifetime -----------------------------------------------------------

    def create(self) -> "Vfm":
        os.mkdir(self.dir)
        try:
            if self.mediator_name is not None:
                self.write("mediator", self.mediator_name)
            if self.args is not None:
                self.write("mediator_args", self.args)
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        """Remove the rules added here (newest first), then the device
        directory. A rule or directory already gone is not an error."""
        while self.rules:
            r = self.rules.pop()
            _rmdir_quiet(r.path)
        _rmdir_quiet(self.dir)

    def __enter__(self) -> "Vfm":
        return self.create()

    def __exit__(self, *exc) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"<vfm.Vfm {self.bdf}>"

    # -- attributes ---------------------------------------------------------

    def path(self, *parts: str) -> str:
        return os.path.join(self.dir, *parts)

    def exists(self) -> bool:
        return os.path.isdir(self.dir)

    def read(self, attr: str) -> str:
        return read_attr(self.path(attr))

    def write(self, attr: str, value, newline: bool = True) -> None:
        write_attr(self.path(attr), str(value), newline)

    @property
    def mediator(self) -> str:
        return self.read("mediator")

    @mediator.setter
    def mediator(self, name: str) -> None:
        self.write("mediator", name)

    @property
    def mediator_args(self) -> str:
        return self.read("mediator_args")

    @mediator_args.setter
    def mediator_args(self, args: str) -> None:
        self.write("mediator_args", args)

    @property
    def mediator_state(self) -> str:
        return self.read("mediator_state")

    @property
    def state(self) -> str:
        """absent | bound | open"""
        return self.read("state")

    @property
    def generation(self) -> int:
        return int(self.read("generation"), 0)

    @property
    def pending(self) -> bool:
        """True when staged changes wait for the next open."""
        v = self.read("pending").strip()
        return v not in ("", "0", "no", "none")

    @property
    def error(self) -> str:
        return self.read("error")

    # -- regions and rules --------------------------------------------------

    def region_path(self, region: str, *parts: str) -> str:
        return self.path("regions", region, *parts)

    def region_mmap(self, region: str) -> str:
        return read_attr(self.region_path(region, "mmap"))

    def set_region_mmap(self, region: str, value: str) -> None:
        write_attr(self.region_path(region, "mmap"), value)

    def add_rule(self, region: str, name: str, range: str, action: str,
                 access: str = "rw", audit: int = 0) -> Rule:
        """mkdir regions/<region>/rules/<name> and write range, access,
        action and audit, in that order. The rule is removed at remove()
        even when one of the writes fails (the OSError propagates)."""
        r = Rule(self, region, name)
        os.mkdir(r.path)
        self.rules.append(r)
        r.write("range", range)
        r.write("access", access)
        r.write("action", action)
        r.write("audit", audit)
        return r

    def rule(self, region: str, name: str) -> Rule:
        return Rule(self, region, name)

    def remove_rule(self, region: str, name: str) -> None:
        r = Rule(self, region, name)
        os.rmdir(r.path)
        self.rules = [x for x in self.rules if x.path != r.path]


def _rmdir_quiet(path: str) -> None:
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def devices() -> list[str]:
    """Names of the device directories that exist."""
    try:
        return sorted(os.listdir(DEVICES))
    except FileNotFoundError:
        return []


def purge(bdf: str) -> None:
    """Remove devices/<bdf>/ whoever made it: every rule of every region
    first, then the directory. Nothing there is not an error."""
    d = f"{DEVICES}/{bdf}"
    for region in REGIONS:
        rules = os.path.join(d, "regions", region, "rules")
        try:
            names = os.listdir(rules)
        except FileNotFoundError:
            continue
        for name in names:
            _rmdir_quiet(os.path.join(rules, name))
    _rmdir_quiet(d)


# -- mediators and their modules ----------------------------------------------

def mediators() -> list[str]:
    """Names of the registered mediators (configfs mediators/)."""
    try:
        return sorted(os.listdir(MEDIATORS))
    except FileNotFoundError:
        return []


def mediator_info(name: str) -> dict[str, str]:
    """mediators/<name>/: {attribute: value} of its read-only attributes."""
    d = f"{MEDIATORS}/{name}"
    return {a: read_attr(os.path.join(d, a)) for a in sorted(os.listdir(d))}


class Module:
    """A loadable module by name, as /sys/module and modprobe see it."""

    def __init__(self, name: str):
        self.name = name

    @property
    def loaded(self) -> bool:
        # refcnt exists for loadable modules only, not for built-ins
        # that merely have parameters.
        return os.path.exists(f"/sys/module/{self.name}/refcnt")

    @property
    def refcnt(self) -> int:
        return int(read_attr(f"/sys/module/{self.name}/refcnt"))

    def param(self, name: str) -> str:
        return read_attr(f"/sys/module/{self.name}/parameters/{name}")

    def load(self) -> None:
        subprocess.run(["modprobe", self.name], check=True,
                       capture_output=True)

    def unload(self) -> int:
        """delete_module(2), as rmmod does it (O_NONBLOCK): 0 on success,
        else its errno (EWOULDBLOCK when in use, ENOENT when not
        loaded)."""
        ret = _libc.syscall(_SYS_delete_module, self.name.encode(),
                            os.O_NONBLOCK)
        return 0 if ret == 0 else ctypes.get_errno()

    def __repr__(self) -> str:
        return f"<vfm.Module {self.name}>"
