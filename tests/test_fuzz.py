# SPDX-License-Identifier: GPL-2.0
"""The uAPI fuzzer's bounded slice (issue 16, item 2): tests/fuzz/vfmfuzz
against edu bound to vfmediate, with a fixed seed and a call budget, as
part of every kernel's suite. ``make fuzz`` runs the same test for long
(tests/fuzz/run-fuzz), through these environment variables:

- VFM_FUZZ_CALLS: the call budget (default: the slice's, a fifth of it
  on the debug kernel);
- VFM_FUZZ_SECONDS: a time limit as well (default: the slice's);
- VFM_FUZZ_SEED: the seed (default: the slice's fixed one), to replay a
  run that found something;
- VFM_FUZZ_THREADS: fuzz threads (default 3);
- VFM_FUZZ_MIGRATION=0: without migration (-m).

The function is bound with regshadow attached, so it offers VFIO
migration for as long as it stays bound; its configfs directory is then
removed (the fuzzer makes it again, and empties and removes it itself),
and the fuzzer runs with -m: checked state transitions, data fds used
from every thread, saved streams replayed, forged and damaged loads
(tests/fuzz/mig.c).

The fuzzer checks every result whose outcome the documentation defines
(see tests/fuzz/vfmfuzz.c) and prints a line per wrong result; the test
fails on any, on a fuzzer that could not run or stalled (no call for a
minute: its own report, then the kernel's blocked tasks), and (conftest)
on any splat in the kernel log.
"""
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time

import pytest

import pci
import vfio
import vfm
from budget import DEBUG_KERNEL, scaled
from conftest import Kmsg
from vfio import Device
from vfm import Vfm

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "fuzz")
COMMON = os.path.join(HERE, "attack", "common.c")
HOST_BUILT = os.path.join(HERE, "..", "build", "fuzz", "vfmfuzz")

# The slice: 60,000 calls, 12,000 on the debug kernel (about 20 s and
# 40 s on an idle machine); the time limit caps it on a loaded one.
SEED = int(os.environ.get("VFM_FUZZ_SEED", "0x16f022"), 0)
CALLS = int(os.environ.get("VFM_FUZZ_CALLS", scaled(60000)))
SECONDS = int(os.environ.get("VFM_FUZZ_SECONDS", 70 if DEBUG_KERNEL else 40))
THREADS = int(os.environ.get("VFM_FUZZ_THREADS", 3))
# Calls the slice must at least make: a fuzzer that stops early (a hang
# broken by the time limit, a crash) tests nothing.
MIN_CALLS = int(os.environ.get("VFM_FUZZ_MIN_CALLS", min(CALLS, 2000)))
# regshadow over the fuzzer's guard zone (edu's first 0x100 bytes)
WINDOW = "bar=0,range=0x0-0xff"

pytestmark = pytest.mark.usefixtures("no_config_left")


@pytest.fixture(scope="module")
def fuzzer():
    """vfmfuzz, built on the host by tests/run-suite (when newer than its
    sources) or here."""
    out = tempfile.mkdtemp(prefix="vfm-fuzz-")
    exe = os.path.join(out, "vfmfuzz")
    sources = [os.path.join(SRC, f) for f in sorted(os.listdir(SRC))
               if f.endswith((".c", ".h"))]
    newest = max(os.path.getmtime(f) for f in sources + [COMMON])
    if os.path.exists(HOST_BUILT) and os.path.getmtime(HOST_BUILT) >= newest:
        shutil.copy(HOST_BUILT, exe)
    else:
        p = subprocess.run(
            ["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread", "-o", exe]
            + [f for f in sources if f.endswith(".c")] + [COMMON],
            capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    yield exe
    shutil.rmtree(out)


def _result(out):
    m = re.search(r"^result: (.*)$", out, re.M)
    assert m, f"the fuzzer printed no result line:\n{out}"
    return {k: v for k, _, v in (w.partition("=") for w in m[1].split())}


def migratable_edu(edu, bind):
    """edu bound with regshadow attached, then its configfs directory
    removed: migratability is decided at bind and stays while bound."""
    cfg = Vfm(edu, mediator="regshadow", args=WINDOW).create()
    try:
        bind(edu, "vfmediate")
        assert cfg.read("migration") == "running"
    finally:
        cfg.remove()
    assert vfm.devices() == []
    with Device(edu) as dev:
        assert dev.migration_flags() == vfio.VFIO_MIGRATION_STOP_COPY
    return edu


# Migration mode, unless VFM_FUZZ_MIGRATION=0 (e.g. to tell whether a
# failure needs it).
MIGRATION = os.environ.get("VFM_FUZZ_MIGRATION", "1") != "0"


def blocked_tasks():
    """The kernel's list of blocked tasks with their stacks (SysRq w),
    which the hung-task detector does not cover for killable waits."""
    kmsg = Kmsg()
    try:
        with open("/proc/sysrq-trigger", "w") as f:
            f.write("w")
        return "\n".join(kmsg.read())
    finally:
        kmsg.close()


def run_fuzzer(cmd):
    """Run the fuzzer, its lines shown as they come (make fuzz runs for
    long); its output. A stall (the fuzzer's STALL report: no call for a
    minute) or a run past its time limit fails the test, with the kernel's
    blocked tasks, instead of hanging the guest."""
    print("running:", " ".join(cmd), flush=True)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    lines, stalled = [], threading.Event()

    def reader():
        for line in p.stdout:
            print(line, end="", flush=True)
            lines.append(line)
            if line.startswith("STALL: task"):
                stalled.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    end = time.monotonic() + SECONDS + 600 if SECONDS else None
    while not stalled.is_set():
        try:
            p.wait(timeout=1)
            break
        except subprocess.TimeoutExpired:
            if end is not None and time.monotonic() > end:
                break
    if p.poll() is None:
        time.sleep(2)  # the rest of the stall report
        tasks = blocked_tasks()
        p.kill()
        t.join(timeout=10)  # a task stuck in the kernel keeps the pipe
        pytest.fail("the fuzzer stalled or overran; its output:\n" +
                    "".join(lines) + "\nblocked tasks (SysRq w):\n" + tasks)
    t.join(timeout=60)
    out = "".join(lines)
    assert not t.is_alive(), "the fuzzer's output stays open:\n" + out
    assert p.returncode == 0, out
    return out


def test_fuzz_edu(fuzzer, edu, bind):
    """Random uAPI calls (migration too, unless VFM_FUZZ_MIGRATION=0)
    and configfs changes on edu; no wrong result."""
    bdf = migratable_edu(edu, bind) if MIGRATION else bind(edu, "vfmediate")
    group = f"/dev/vfio/{pci.iommu_group(bdf)}"
    before = vfm.mediators()
    cmd = [fuzzer, "-s", hex(SEED), "-n", str(CALLS), "-t", str(SECONDS),
           "-j", str(THREADS)] + (["-m"] if MIGRATION else []) + [group, bdf]
    out = run_fuzzer(cmd)
    res = _result(out)
    assert res["wrong"] == "0", out
    assert int(res["calls"]) >= MIN_CALLS, out
    assert int(res["epochs"]) >= 1, out
    # migration was exercised: transitions, saves read whole, loads
    for key in ("mig_ok", "saves", "loads_ok", "dfd_read", "dfd_written"):
        assert not MIGRATION or int(res[key]) > 0, (key, out)
    # the mediators it attached are detached again: none has users
    for name in vfm.mediators():
        assert vfm.read_attr(f"{vfm.MEDIATORS}/{name}/users") == "0", \
            (name, before)


def test_fuzz_budget_used_up_as_an_epoch_starts(fuzzer, edu, bind):
    """The fuzzer itself: a run whose calls are used up early in an epoch,
    while one of its threads has not started that epoch yet, ends. (Such
    a thread used to see the run done and leave, and the controller
    waited for it forever: the fuzzer's own stall report then fails the
    test within a minute.)"""
    bdf = bind(edu, "vfmediate")
    group = f"/dev/vfio/{pci.iommu_group(bdf)}"
    # epoch 1: 1,000 calls; epoch 2: the last 300, made long before the
    # open/close thread starts it 3 s late (300 calls take about 1 s on
    # the debug kernel)
    out = run_fuzzer([fuzzer, "-s", hex(SEED), "-n", "1300", "-e", "1000",
                      "-L", "3000", "-j", str(THREADS), group, bdf])
    res = _result(out)
    assert res["wrong"] == "0", out
    assert res["epochs"] == "2" and int(res["calls"]) >= 1300, out
