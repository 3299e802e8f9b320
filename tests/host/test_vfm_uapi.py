# SPDX-License-Identifier: GPL-2.0
"""Host-side check of include/uapi/linux/vfmediate.h, the netlink uAPI
shared by the kernel module, the CLI and the guest tests.

It must compile on its own as C and C++ for userspace (no kernel types,
no other include), and every value tests/lib/vfmnl.py reads from it by
parsing must be the value a C compiler sees. Attribute numbers are ABI:
the ones released are pinned here, so a change that renumbers them (an
attribute inserted in the middle of the enum) fails.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))
import vfmnl  # noqa: E402

HEADER = os.path.join(TOP, "include", "uapi", "linux", "vfmediate.h")

# Released in version 1: never renumber.
PINNED = {
    "VFMEDIATE_CMD_DEV_GET": 1, "VFMEDIATE_CMD_MED_GET": 2,
    "VFMEDIATE_CMD_STATS_GET": 3, "VFMEDIATE_CMD_EVENT": 4,
    "VFMEDIATE_A_DEV_NAME": 2, "VFMEDIATE_A_MED_NAME": 11,
    "VFMEDIATE_A_REGION": 15, "VFMEDIATE_A_RULE": 19,
    "VFMEDIATE_A_HITS": 26, "VFMEDIATE_A_EVENT": 29,
    "VFMEDIATE_A_SUPPRESSED": 36,
    "VFMEDIATE_ACTION_PASS": 0, "VFMEDIATE_ACTION_IGNORE": 4,
    "VFMEDIATE_EVENT_BOUND": 1, "VFMEDIATE_EVENT_ACCESS_REFUSED": 10,
    "VFMEDIATE_ACCESS_READ": 1, "VFMEDIATE_ACCESS_WRITE": 2,
}


def _compile_and_run(src: str, compiler: str, flags: list[str]) -> str:
    with tempfile.TemporaryDirectory() as d:
        c = os.path.join(d, "t.c")
        exe = os.path.join(d, "t")
        with open(c, "w") as f:
            f.write(src)
        lang = ["-x", "c++"] if compiler.endswith("++") else []
        subprocess.run([compiler, *lang, *flags,
                        "-I", os.path.join(TOP, "include", "uapi"),
                        "-o", exe, c], check=True, capture_output=True,
                       text=True)
        return subprocess.run([exe], check=True, capture_output=True,
                              text=True).stdout


@pytest.mark.parametrize("compiler, flags", [
    ("gcc", ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]),
    ("g++", ["-Wall", "-Wextra", "-Werror"]),
])
def test_values_as_a_compiler_sees_them(compiler, flags):
    if not shutil.which(compiler):
        pytest.skip(f"{compiler} not installed")
    ints = {k: v for k, v in vfmnl._U.all.items() if isinstance(v, int)}
    body = "".join(f'\tprintf("%s %ld\\n", "{k}", (long){k});\n'
                   for k in sorted(ints))
    src = ("#include <stdio.h>\n#include <linux/vfmediate.h>\n"
           f"int main(void)\n{{\n{body}\treturn 0;\n}}\n")
    out = _compile_and_run(src, compiler, flags)
    seen = dict(line.split() for line in out.splitlines())
    assert {k: int(v) for k, v in seen.items()} == ints


def test_released_numbers_do_not_move():
    got = {k: vfmnl._U.all[k] for k in PINNED}
    assert got == PINNED


def test_strings():
    assert vfmnl.FAMILY == "vfmediate"
    assert vfmnl.MONITOR == "monitor"
    assert vfmnl.VERSION == 1


def test_header_stands_alone():
    with open(HEADER) as f:
        text = f.read()
    assert "#include" not in text
    assert "WITH Linux-syscall-note" in text.splitlines()[0]
