# SPDX-License-Identifier: GPL-2.0
"""Host-side check of tests/lib/vfio.py against the C uAPI headers.

For every installed <linux/vfio.h> (the libc one and each Debian
linux-headers-*-common uapi tree) compile a tiny C program that prints
sizeof/offsetof of the structs vfio.py declares and the value of every VFIO_*
constant vfio.py defines, and compare. Needs gcc; skips otherwise.

Runs on the host, outside the guest suite (tests/conftest.py ignores
tests/host and refuses to run outside the guest), so skip that conftest:

    python3 -m pytest --noconftest tests/host/
"""

import ctypes
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import vfio  # noqa: E402

# Fields that exist only in newer headers (6.12) but sit in what is tail
# padding or beyond the kernel's minsz on 6.1.
OPTIONAL_FIELDS = {"pad", "reserved"}
# Structs whose 6.1 C size is smaller than ours (vfio.py uses the newer,
# larger layout; the kernel accepts any argsz >= its minsz).
MAY_BE_LARGER = {"vfio_device_info"}


def _headers():
    found = []
    if os.path.exists("/usr/include/linux/vfio.h"):
        found.append(("libc", None))
    for d in sorted(glob.glob("/usr/src/linux-headers-*-common/include/uapi")):
        if os.path.exists(os.path.join(d, "linux", "vfio.h")):
            found.append((d.split("/")[3], d))
    return found


def _structs():
    out = {}
    for name in dir(vfio):
        obj = getattr(vfio, name)
        if (name.startswith("vfio_") and isinstance(obj, type)
                and issubclass(obj, ctypes.Structure)):
            out[name] = obj
    return out


def _constants(header_text):
    idents = set(re.findall(r"\b(VFIO_[A-Za-z0-9_]+)\b", header_text))
    # function-like macros cannot be printed as values
    funcs = set(re.findall(r"#define\s+(VFIO_\w+)\(", header_text))
    out = {}
    for n in sorted(idents - funcs):
        v = getattr(vfio, n, None)
        if isinstance(v, int):
            out[n] = v
    return out


def _run_c(include_dir, header_text):
    structs = _structs()
    consts = _constants(header_text)
    lines = ["#include <stdio.h>", "#include <stddef.h>",
             "#include <linux/vfio.h>", "int main(void) {"]
    for sname, cls in structs.items():
        lines.append(f'printf("S {sname} %zu\\n", sizeof(struct {sname}));')
        for fname, _ in cls._fields_:
            if fname in OPTIONAL_FIELDS:
                continue
            lines.append(f'printf("F {sname}.{fname} %zu\\n", '
                         f'offsetof(struct {sname}, {fname}));')
    for c in consts:
        lines.append(f'printf("C {c} %lld\\n", (long long)({c}));')
    lines.append("return 0; }")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "abi.c")
        exe = os.path.join(tmp, "abi")
        with open(src, "w") as f:
            f.write("\n".join(lines) + "\n")
        cmd = ["gcc", "-D__user=", "-o", exe, src]
        if include_dir:
            # Only vfio.h comes from the kernel tree (the raw uapi tree needs
            # kernel-internal headers); its includes resolve from libc's.
            os.makedirs(os.path.join(tmp, "linux"))
            shutil.copy(os.path.join(include_dir, "linux", "vfio.h"),
                        os.path.join(tmp, "linux", "vfio.h"))
            cmd[1:1] = ["-I", tmp]
        cc = subprocess.run(cmd, capture_output=True, text=True)
        assert cc.returncode == 0, f"gcc failed:\n{cc.stderr[-3000:]}"
        out = subprocess.run([exe], check=True, capture_output=True,
                             text=True).stdout
    res = {}
    for line in out.splitlines():
        kind, key, val = line.split()
        res[(kind, key)] = int(val)
    return res, consts


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc")
@pytest.mark.parametrize("label,include_dir", _headers() or
                         [pytest.param("none", None, marks=pytest.mark.skip(
                             reason="no vfio.h installed"))])
def test_abi_matches_header(label, include_dir):
    path = os.path.join(include_dir or "/usr/include", "linux", "vfio.h")
    with open(path) as f:
        text = f.read()
    res, consts = _run_c(include_dir, text)
    problems = []
    for sname, cls in _structs().items():
        csize = res[("S", sname)]
        psize = ctypes.sizeof(cls)
        if psize != csize and not (sname in MAY_BE_LARGER and psize > csize):
            problems.append(f"sizeof {sname}: C {csize} py {psize}")
        for fname, _ in cls._fields_:
            if fname in OPTIONAL_FIELDS:
                continue
            coff = res[("F", f"{sname}.{fname}")]
            poff = getattr(cls, fname).offset
            if coff != poff:
                problems.append(f"offsetof {sname}.{fname}: C {coff} py {poff}")
    for c, v in consts.items():
        cv = res[("C", c)]
        if cv < 0 and v >= 0:       # (1 << 31) is a negative int in C
            cv &= 0xFFFFFFFF
        if cv != v:
            problems.append(f"{c}: C {cv:#x} py {v:#x}")
    assert not problems, f"{label}: " + "; ".join(problems)
    # the ioctls must all have been compared
    for n in ("VFIO_GROUP_GET_DEVICE_FD", "VFIO_DEVICE_GET_REGION_INFO",
              "VFIO_DEVICE_SET_IRQS", "VFIO_DEVICE_FEATURE",
              "VFIO_IOMMU_MAP_DMA", "VFIO_DEVICE_IOEVENTFD"):
        assert ("C", n) in res
