# SPDX-License-Identifier: GPL-2.0
"""A smoke run of the benchmark (make bench): every scenario, a few short
rounds, so that the benchmark keeps working. Nothing here is timed: the
run checks that each scenario does what it claims (vfmediate's results
per scenario, the audit rule's hits, table sizes), not how fast it is.

Uses two edu functions when the guest has them, else two NVMe VFs.
"""
import json
import os
import subprocess
import sys

import pytest

import pci
import vfm
from budget import DEBUG_KERNEL

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.join(HERE, "bench")


# tests/run-suite builds the program on the host (the guest runs the
# host's userspace), which saves the guest a minute of gcc.
HOST_BUILT = os.path.join(HERE, "..", "build", "bench", "vfbench")

# The benchmark's paths (rules, traps, audit, opens) are the suite's; what
# this adds is that make bench keeps working, which the Debian kernels
# show. Under KASAN and lockdep it cost the debug lane nearly 3 minutes.
pytestmark = pytest.mark.skipif(
    DEBUG_KERNEL, reason="make bench runs on the Debian kernels only")


@pytest.fixture(scope="module")
def vfbench(tmp_path_factory):
    """The benchmark program, built from source for this run (or by
    tests/run-suite on the host, if that is newer than the source)."""
    src = os.path.join(BENCH, "vfbench.c")
    if (os.path.exists(HOST_BUILT) and
            os.path.getmtime(HOST_BUILT) >= os.path.getmtime(src)):
        return HOST_BUILT
    exe = str(tmp_path_factory.mktemp("bench") / "vfbench")
    p = subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", exe,
                        os.path.join(BENCH, "vfbench.c")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return exe


def test_bench_smoke(vfbench, tmp_path):
    out = tmp_path / "smoke.json"
    try:
        p = subprocess.run([sys.executable, os.path.join(BENCH, "run.py"),
                            "--smoke", "--bin", vfbench, "--out", str(out)],
                           capture_output=True, text=True, timeout=600)
    finally:
        # run.py leaves both functions unbound and removes its configfs
        # directories even when it fails; make sure of it.
        left = [d for d in vfm.devices()]
        vfm.Module("vfmediate_nop").unload()
    assert p.returncode == 0, p.stdout + p.stderr
    assert left == [], f"configfs directories left: {left}"

    res = json.loads(out.read_text())
    names = [s["name"] for s in res["scenarios"]]
    assert names[0] == "floor" and {"none", "r1024", "audit", "trap", "ro",
                                    "deny", "mmap16"} <= set(names)
    summary = res["summary"]
    for s in res["scenarios"]:
        assert s["errors"] == [], s["errors"]
        assert len(s["rounds"]) == res["rounds"]
        # Roles alternate: each function was on vfmediate once.
        assert {r["a"] for r in s["rounds"]} == set(res["pair"])
        for op in s["ops"]:
            ratio = summary[s["name"]]["ops"][op]["ratio"]["median"]
            assert ratio > 0
    assert summary["audit"]["audit_hits"] > 0
    assert summary["none"]["table_bytes"] == 0
    assert 0 < summary["r16"]["table_bytes"] < summary["r1024"]["table_bytes"]
    assert summary["r1024"]["compile_ns"]["median"] > 0
    for bdf in res["pair"]:
        assert pci.driver(bdf) is None
        assert pci.driver_override(bdf) is None
