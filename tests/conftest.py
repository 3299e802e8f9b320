# SPDX-License-Identifier: GPL-2.0
"""Fixtures for the guest test suite (run by tests/vm/run, never on the host).

- every test fails if the kernel log gained a splat while it ran;
- ``bind`` binds a function to a named driver the way libvirt/driverctl do
  and restores it at teardown;
- ``edu``, ``nvme_vf``, ``nvme_vfs``, ``igb`` name the guest's test
  functions (igb, QEMU 8 and later, is the one with an expansion ROM).
"""
import errno
import json
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))

import pci  # noqa: E402
import vfm  # noqa: E402

EDU_ID = (0x1234, 0x11E8)
NVME_ID = (0x1B36, 0x0010)
IGB_ID = (0x8086, 0x10C9)

SPLAT = re.compile(
    r"BUG|WARNING|Oops|refcount|list_add corruption|list_del corruption|"
    r"sleeping function called|general protection|KASAN|"
    r"possible circular locking|possible recursive locking|"
    r"suspicious RCU usage|inconsistent lock state|kmemleak")
# QEMU's NVMe VFs report an INTx pin they must not have; the PCI core says
# so once per VF. Harmless and not ours: tolerate exactly that line.
TOLERATED = re.compile(r"Hardware bug: VF reports bogus INTx pin \d+")

_KMSG_ESC = re.compile(r"\\x([0-9a-f]{2})")

collect_ignore = ["host", "vm", "lib", "bench"]


def in_guest():
    with open("/proc/cmdline") as f:
        return "vfmrun=" in f.read()


def pytest_addoption(parser):
    parser.addoption(
        "--shard", metavar="I/N", default=None,
        help="run only every N-th test, starting with the I-th (1-based): "
        "tests/run-suite spreads a slow kernel over N guests at once")


def _shard(config):
    spec = config.getoption("--shard")
    if not spec:
        return None
    m = re.fullmatch(r"(\d+)/(\d+)", spec)
    if not m or not 1 <= int(m[1]) <= int(m[2]):
        raise pytest.UsageError(f"--shard takes I/N with 1 <= I <= N, not {spec!r}")
    return int(m[1]), int(m[2])


def pytest_configure(config):
    _shard(config)
    if not in_guest():
        pytest.exit("the guest suite runs inside the test machine: "
                    "tests/vm/run -- python3 -m pytest tests/", returncode=2)


# Each test's seconds in a measured run of the debug kernel (from its
# junit XML), for dealing the tests out over shards by weight.
DURATIONS = os.path.join(os.path.dirname(__file__), "vm",
                         "debug-durations.json")
DEFAULT_SECONDS = 5.0   # a test the file does not know yet


def _deal(items, n):
    """The shard (0-based) of each test: the longest first, each to the
    shard with the least time so far (LPT), with the seconds of
    tests/vm/debug-durations.json. The same on every shard's guest."""
    try:
        with open(DURATIONS) as f:
            seconds = json.load(f)
    except (OSError, ValueError):
        seconds = {}
    weight = [seconds.get(t.nodeid, DEFAULT_SECONDS) for t in items]
    load = [0.0] * n
    shard_of = [0] * len(items)
    for k in sorted(range(len(items)), key=lambda k: (-weight[k], k)):
        s = min(range(n), key=lambda j: (load[j], j))
        shard_of[k] = s
        load[s] += weight[k]
    return shard_of


def pytest_collection_modifyitems(config, items):
    """--shard I/N: deal the tests out by their measured time, so that the
    shards end together; each runs its tests in the suite's order."""
    shard = _shard(config)
    if not shard:
        return
    i, n = shard
    shard_of = _deal(items, n)
    keep = [t for k, t in enumerate(items) if shard_of[k] == i - 1]
    drop = [t for k, t in enumerate(items) if shard_of[k] != i - 1]
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep


class Kmsg:
    """New kernel log records since open, read from /dev/kmsg."""

    def __init__(self):
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)

    def read(self):
        lines = []
        while True:
            try:
                rec = os.read(self.fd, 8192).decode(errors="replace")
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EPIPE:  # overwritten records: go on
                    continue
                raise
            if not rec:
                break
            # One record per read; /dev/kmsg writes a record's own
            # newlines and backslashes as \x0a and \x5c: undo that, so a
            # multi-line report (lockdep's) prints as the kernel wrote it.
            msg = rec.split(";", 1)[-1].rstrip("\n")
            lines.append(_KMSG_ESC.sub(lambda m: chr(int(m[1], 16)), msg))
        return lines

    def close(self):
        os.close(self.fd)


@pytest.fixture(autouse=True)
def dmesg_clean(request):
    """Fail the test whose run put a splat in the kernel log."""
    kmsg = Kmsg()
    yield kmsg
    lines = kmsg.read()
    kmsg.close()
    bad = [ln for ln in lines if SPLAT.search(ln) and not TOLERATED.search(ln)]
    if bad:
        pytest.fail("kernel log gained:\n" + "\n".join(lines), pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def vfio_modules():
    pci.modprobe("vfio-pci")
    if os.path.exists("/sys/module/vfmediate") or _module_known("vfmediate"):
        pci.modprobe("vfmediate")


def _module_known(name):
    rel = os.uname().release
    try:
        with open(f"/lib/modules/{rel}/modules.dep") as f:
            return any(f"/{name}.ko" in ln for ln in f)
    except OSError:
        return False


def _functions(ids):
    return sorted(pci.find_functions(*ids))


@pytest.fixture(scope="session")
def edu():
    found = _functions(EDU_ID)
    if not found:
        pytest.fail("no edu device in the guest")
    return found[0]


@pytest.fixture(scope="session")
def nvme_vfs():
    vfs = [b for b in _functions(NVME_ID) if pci.physfn(b)]
    if not vfs:
        pytest.fail("no NVMe VF in the guest (tests/vm/run --vfs N)")
    return vfs


@pytest.fixture(scope="session")
def nvme_vf(nvme_vfs):
    return nvme_vfs[0]


@pytest.fixture(scope="session")
def igb():
    found = [b for b in _functions(IGB_ID) if not pci.physfn(b)]
    if not found:
        pytest.skip("no igb function in the guest (QEMU older than 8)")
    return found[0]


@pytest.fixture
def no_config_left():
    """The test starts and ends without configfs device directories
    (a module asks for it with pytest.mark.usefixtures)."""
    assert vfm.devices() == [], "a configfs device directory was left over"
    yield
    left = vfm.devices()
    for bdf in left:
        vfm.purge(bdf)
    assert left == [], f"configfs device directories left: {left}"


@pytest.fixture
def edu_vfm(edu, bind):
    """edu bound to vfmediate for the test."""
    return bind(edu, "vfmediate")


@pytest.fixture
def bind():
    """bind(bdf, driver): bind now, unbind and clear the override after."""
    done = []

    def _bind(bdf, drv):
        pci.bind(bdf, drv)
        done.append(bdf)
        return bdf

    yield _bind
    for bdf in reversed(done):
        pci.restore(bdf)
