# SPDX-License-Identifier: GPL-2.0
"""vfmtiny (tests/mig/guest), the multiboot guest kernel that does MMIO on
one PCI function, driven from a test: its build, its QEMU machine and its
serial port.

    from vfmtiny import Serial, build, machine_args, first_pass, next_round

    elf = build(out_dir)                      # make, when missing or stale
    args = machine_args(elf, "1234:11e8", {0x80: 1}, [0x80],
                        ["-device", "edu"], serial_path)
    with qmp.Qemu(args + ["-S"], sock_dir) as vm:
        ser = Serial(serial_path)             # before the guest runs
        vm.qmp.cmd("cont")
        first_pass(ser, [0x80], 30)           # -> {0x80: 1}, at "ready"
        ser.send(b"\\n")
        next_round(ser, 1, 30)                # -> {0x80: ...} read again

A "vfmtiny: error" line not waited for or a wait that runs out fails
with an AssertionError that carries everything the guest said.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from typing import Iterable, Mapping

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "mig",
                   "guest")


def build(out: str, timeout: float = 300.0) -> str:
    """make vfmtiny.elf in ``out`` (nothing when up to date); its path.
    OUT is given relative to the sources: make cannot name files with
    spaces, which a checkout's path may have (tests/mig/guest/Makefile)."""
    rel = os.path.relpath(os.path.abspath(out), os.path.realpath(SRC))
    subprocess.run(["make", "-s", "-C", os.path.realpath(SRC), f"OUT={rel}"],
                   check=True, capture_output=True, timeout=timeout)
    return os.path.join(out, "vfmtiny.elf")


def cmdline(dev: str, writes: Mapping[int, int], reads: Iterable[int]) -> str:
    """vfmtiny's command line: the writes, in order, then the reads."""
    steps = [f"dev={dev}"]
    steps += [f"w32={off:#x}:{val:#x}" for off, val in writes.items()]
    steps += [f"r32={off:#x}" for off in reads]
    return " ".join(steps)


def machine_args(elf: str, dev: str, writes: Mapping[int, int],
                 reads: Iterable[int], devices: list[str],
                 serial: str) -> list[str]:
    """QEMU's arguments for a small pc machine booting vfmtiny, with
    ``devices`` (e.g. ["-device", "edu"]) and COM1 on a unix socket
    server at ``serial`` (connect with Serial before the guest runs: what
    it prints before that is lost)."""
    return ["-M", "pc", "-m", "32M", "-nodefaults", "-display", "none",
            "-accel", "tcg", "-no-reboot", "-kernel", elf,
            "-append", cmdline(dev, writes, reads), *devices,
            "-chardev", f"socket,id=ser0,path={serial},server=on,wait=off",
            "-serial", "chardev:ser0"]


class Serial:
    """The guest's COM1, through QEMU's unix socket chardev."""

    def __init__(self, path: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                assert time.monotonic() < deadline, \
                    f"serial socket {path} not up in {timeout} s"
                time.sleep(0.05)
        self.sock = s
        self.buf = b""
        self.lines: list[str] = []

    def line(self, pattern: str, timeout: float) -> re.Match:
        """Read lines until one matches ``pattern`` (a regex, whole
        line); an error line that does not match fails."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buf:
                raw, self.buf = self.buf.split(b"\n", 1)
                ln = raw.decode(errors="replace").strip()
                self.lines.append(ln)
                m = re.fullmatch(pattern, ln)
                if m:
                    return m
                assert not ln.startswith("vfmtiny: error"), self.text()
            left = deadline - time.monotonic()
            assert left > 0, f"no {pattern!r} in {timeout} s:\n{self.text()}"
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            assert data, f"serial closed before {pattern!r}:\n{self.text()}"
            self.buf += data

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def text(self) -> str:
        return "\n".join(self.lines)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Serial":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_R32 = r"vfmtiny: r32 (0x[0-9a-f]+) = (0x[0-9a-f]{8})"


def first_pass(ser: Serial, reads: Iterable[int], timeout: float
               ) -> dict[int, int]:
    """The reads of the command line's steps, up to "ready"."""
    regs = {}
    for off in reads:
        m = ser.line(rf"vfmtiny: r32 {off:#04x} = (0x[0-9a-f]{{8}})",
                     timeout)
        regs[off] = int(m[1], 16)
    ser.line("vfmtiny: ready", timeout)
    return regs


def next_round(ser: Serial, n: int, timeout: float) -> dict:
    """The registers read again in round ``n`` (after a byte was sent):
    {offset: value}, and under "bar0" and "command" what config space
    held then."""
    m = ser.line(f"vfmtiny: round {n} bar0 (0x[0-9a-f]{{8}}) "
                 "command (0x[0-9a-f]{4})", timeout)
    regs = {"bar0": int(m[1], 16), "command": int(m[2], 16)}
    while True:
        m = ser.line(rf"{_R32}|vfmtiny: done (\d+)", timeout)
        if m[3]:
            assert int(m[3]) == n, ser.text()
            return regs
        regs[int(m[1], 16)] = int(m[2], 16)


def wait_migration(vm, timeout: float, what: str) -> dict:
    """Poll QMP query-migrate until it completes; its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        st = vm.qmp.cmd("query-migrate")
        if st.get("status") == "completed":
            return st
        assert st.get("status") not in ("failed", "cancelled"), \
            f"{what}: {st}"
        assert time.monotonic() < deadline, \
            f"{what} not done in {timeout} s: {st}"
        time.sleep(0.2)
