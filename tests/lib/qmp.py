# SPDX-License-Identifier: GPL-2.0
"""A tiny QMP client (QEMU Machine Protocol over a unix socket) and a
helper that runs a QEMU process with a QMP socket.

    with Qemu(["-M", "q35", "-S", ...], sock_dir=d) as vm:
        vm.qmp.cmd("query-pci")          # -> the "return" value
        vm.quit()                        # -> QEMU's exit status

``cmd`` raises QmpError for an {"error": ...} answer. Asynchronous events
that arrive meanwhile are kept in ``events``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from typing import Any, Optional, Sequence


class QmpError(Exception):
    def __init__(self, command: str, error: dict):
        super().__init__(f"{command}: {error.get('class')}: "
                         f"{error.get('desc')}")
        self.command = command
        self.error = error


class Qmp:
    """One QMP connection; capabilities are negotiated on connect."""

    def __init__(self, path: str, timeout: float = 30.0):
        self.timeout = timeout
        self.events: list[dict] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.file = self.sock.makefile("rwb", buffering=0)
        self.greeting = self._read()
        if "QMP" not in self.greeting:
            raise QmpError("greeting", {"desc": repr(self.greeting)})
        self.cmd("qmp_capabilities")

    def _read(self) -> dict:
        line = self.file.readline()
        if not line:
            raise EOFError("QMP connection closed")
        return json.loads(line)

    def cmd(self, command: str, args: Optional[dict] = None,
            **kw: Any) -> Any:
        """Execute ``command`` and return its "return" value."""
        msg: dict = {"execute": command}
        a = dict(args or {}, **kw)
        if a:
            msg["arguments"] = a
        self.file.write(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._read()
            if "event" in r:
                self.events.append(r)
                continue
            if "error" in r:
                raise QmpError(command, r["error"])
            return r.get("return")

    def hmp(self, line: str) -> str:
        """A human-monitor command through QMP."""
        return self.cmd("human-monitor-command", {"command-line": line})

    def close(self) -> None:
        try:
            self.file.close()
        finally:
            self.sock.close()


class Qemu:
    """A QEMU process with a QMP unix socket at ``<sock_dir>/qmp.sock``;
    its stdout and stderr are collected in ``output`` once it ended."""

    def __init__(self, args: Sequence[str], sock_dir: str,
                 binary: str = "/usr/bin/qemu-system-x86_64",
                 start_timeout: float = 60.0):
        self.path = os.path.join(sock_dir, "qmp.sock")
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.log = os.path.join(sock_dir, "qemu.log")
        self.output = ""
        self.qmp: Optional[Qmp] = None
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(
                [binary, *args, "-qmp",
                 f"unix:{self.path},server=on,wait=off"],
                stdin=subprocess.DEVNULL, stdout=logf,
                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + start_timeout
        while True:
            if self.proc.poll() is not None:
                self._collect()
                raise RuntimeError(f"QEMU exited with {self.proc.returncode}"
                                   f" before QMP was up:\n{self.output}")
            if os.path.exists(self.path):
                try:
                    self.qmp = Qmp(self.path,
                                   max(1.0, deadline - time.monotonic()))
                    break
                except (ConnectionRefusedError, FileNotFoundError):
                    pass
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"QEMU's QMP socket not up in "
                                   f"{start_timeout}s:\n{self.output}")
            time.sleep(0.05)

    def _collect(self) -> None:
        try:
            with open(self.log, errors="replace") as f:
                self.output = f.read()
        except OSError:
            pass

    def quit(self, timeout: float = 30.0) -> int:
        """QMP quit; wait for the process; return its exit status."""
        try:
            self.qmp.cmd("quit")
        except (EOFError, ConnectionError):
            pass        # QEMU may close the socket before answering
        try:
            rc = self.proc.wait(timeout)
        finally:
            self.kill()
        return rc

    def kill(self) -> None:
        if self.qmp is not None:
            self.qmp.close()
            self.qmp = None
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._collect()

    def __enter__(self) -> "Qemu":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()
