# SPDX-License-Identifier: GPL-2.0
"""Helpers for the policy-engine tests (tests/test_policy*.py) and the demo.

- ``attempt(fn, *args)``: what a VFIO user sees of one call: its value, or
  the errno's name ("EACCES") when it fails, or "ok" for a call that
  returns nothing. Expected outcomes then read as one table.
- ``mmap_areas(size, ruled)``: the sparse-mmap areas the policy engine
  must advertise for a BAR of ``size`` bytes whose ruled byte ranges are
  ``ruled``: the complement of the pages they touch.
- ``vfs_online(pf, n)``: set a PF's VF count and bring the NVMe secondary
  controllers online the way tests/vm/guest-init does.
"""

from __future__ import annotations

import errno
import mmap
import os
import subprocess
from typing import Callable, Iterable

import pci

PAGE = mmap.PAGESIZE

# edu (QEMU hw/misc/edu.c): 4-byte registers below 0x80, 4 or 8 from 0x80.
EDU_ID, EDU_LIVE, EDU_FACT, EDU_STATUS = 0x00, 0x04, 0x08, 0x20
EDU_DMA_SRC = 0x80
EDU_ID_VALUE = 0x010000ED
EDU_BAR0_SIZE = 0x100000
EDU_MSI_CAP = 0x40              # id 0x05, 64-bit, not maskable: 14 bytes

# NVMe controller registers (the VF's BAR0 is 16 KiB: registers, doorbells
# from 0x1000, MSI-X table at 0x2000, PBA at 0x3000).
NVME_CAP, NVME_VS, NVME_CC, NVME_AQA = 0x00, 0x08, 0x14, 0x24
NVME_VS_1_4 = 0x00010400
NVME_DOORBELL = 0x1000
NVME_BAR0_SIZE = 0x4000


def attempt(fn: Callable, *args):
    """fn(*args)'s result; "ok" if that is None; the errno name if it
    raises an OSError (VfioError included)."""
    try:
        r = fn(*args)
    except OSError as e:
        return errno.errorcode.get(e.errno, e.errno)
    return "ok" if r is None else r


def pages(ranges: Iterable[tuple[int, int]]) -> set[int]:
    """Page numbers touched by [start, end) byte ranges."""
    out = set()
    for start, end in ranges:
        out.update(range(start // PAGE, (end + PAGE - 1) // PAGE))
    return out


def mmap_areas(size: int, ruled: Iterable[tuple[int, int]]
               ) -> list[tuple[int, int]]:
    """(offset, size) of the maximal runs of pages of a ``size``-byte BAR
    that no [start, end) range in ``ruled`` touches, in offset order."""
    bad = pages(ruled)
    out: list[tuple[int, int]] = []
    npages = (size + PAGE - 1) // PAGE
    for p in range(npages):
        if p in bad:
            continue
        if out and out[-1][0] + out[-1][1] == p * PAGE:
            out[-1] = (out[-1][0], out[-1][1] + PAGE)
        else:
            out.append((p * PAGE, PAGE))
    return out


def nvme_ctrl(pf: str) -> str:
    return "/dev/" + sorted(os.listdir(pci.dev_path(pf, "nvme")))[0]


def vfs_online(pf: str, n: int) -> list[str]:
    """Give the PF ``n`` VFs (through 0 when it has others) and bring the
    secondary controllers online as tests/vm/guest-init does: a VF's
    registers read as zeros until then. Returns the VFs' BDFs."""
    if pci.sriov_numvfs(pf) != n:
        if pci.sriov_numvfs(pf):
            pci.sriov_set_numvfs(pf, 0)
        if n:
            pci.sriov_set_numvfs(pf, n)
    ctrl = nvme_ctrl(pf)
    for i in range(1, n + 1):
        for args in (["-r", "0", "-a", "8", "-n", "2"],
                     ["-r", "1", "-a", "8", "-n", "1"],
                     ["-r", "0", "-a", "9", "-n", "0"]):
            subprocess.run(["nvme", "virt-mgmt", ctrl, "-c", str(i)] + args,
                           check=True, capture_output=True, timeout=60)
    return pci.vfs(pf)
