# SPDX-License-Identifier: GPL-2.0
"""Allocation failures in vfmediate's own paths (debug kernel only).

For each operation — bind, open (group path and, where the kernel has it,
the iommufd cdev), configfs mkdir, configfs rule writes, mediator attach —
slab allocations are made to fail in this test process only, and only
where the call stack passes through vfmediate.ko (lib/failslab.py):

- systematically: the 1st, 2nd, ... allocation fails, until the
  operation completes without reaching the Nth (every failure point once);
- randomly: ROUNDS more runs with a random probability and number of
  failures.

Each run must either succeed or fail with an error returned to the caller,
leave the state as it was (no half-bound device, no half-made directory, an
attribute that failed to change still reads its old value), and give back
every module reference; the kernel log must stay clean, and kmemleak must
find nothing new at the end of each operation's loop.

The configfs operations run once the configfs tree exists; they are
skipped, with the reason, on a module without it.
"""
import itertools
import os
import random

import pytest

import failslab
import iommufd
import pci
import vfio
from conftest import SPLAT, TOLERATED

pytestmark = pytest.mark.skipif(failslab.available() is not None,
                                reason=str(failslab.available()))

CFS = "/sys/kernel/config/vfmediate"
DRIVER = "vfmediate"
# Failure points per operation are counted in tens to a few hundred;
# the cap only stops a runaway loop.
MAX_POINTS = int(os.environ.get("VFM_FAILSLAB_MAX_POINTS", "600"))
ROUNDS = int(os.environ.get("VFM_FAILSLAB_ROUNDS", "12"))
# Fail an allocation only when vfmediate.ko is among the innermost DEPTH
# frames of its stack trace. The trace starts with should_fail_ex(),
# should_failslab() and the allocator, so 6 means: the allocation is ours
# or made at most two calls below one of our functions (vfio_alloc_device(),
# vfio_pci_core_enable() -> vfio_config_init(), ...). Deeper kernel paths
# have error handling of their own, which is not what this tests, and
# 6.12.95 has bugs there that failing them hits at once: a use-after-free
# in ACPI _PRT evaluation on AE_NO_MEMORY (pci_enable_device() at open),
# vfio_msi_cap_len() leaving a freed msi_perm behind when
# alloc_perm_bits() fails (a use-after-free at the next open's close),
# and vfio_create_group() WARNing when dev_set_name() fails (bind).
DEPTH = int(os.environ.get("VFM_FAILSLAB_DEPTH", "6"))
VERBOSE = int(os.environ.get("VFM_FAILSLAB_VERBOSE", "0"))
WATCHED = ["vfmediate", "vfio_pci_core", "vfio_pci", "vfio",
           "vfio_iommu_type1", "iommufd"]
MEDIATOR = "nop"
MEDIATOR_ARGS = "bar=0,range=0x0+0x10"


def _read(path):
    with open(path) as f:
        return f.read().strip()


def _write(path, value):
    # One write(2) of the value and a newline, as `echo VALUE > attr`.
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, (value + "\n").encode())
    finally:
        os.close(fd)


def refcounts():
    mods = set(WATCHED) | {m for m in os.listdir("/sys/module")
                           if m.startswith("vfmediate_")}
    out = {}
    for m in sorted(mods):
        try:
            out[m] = int(_read(f"/sys/module/{m}/refcnt"))
        except (OSError, ValueError):
            pass
    return out


# --------------------------------------------------------------------------
# Operations: setup() once, then per run: run() under injection, undo()
# and check() without.
# --------------------------------------------------------------------------

class Op:
    name = "?"

    def __init__(self, bdf):
        self.bdf = bdf

    def available(self):
        return None

    def setup(self):
        pass

    def run(self):
        raise NotImplementedError

    def undo(self):
        pass

    def check(self, ok):
        pass

    def teardown(self):
        pass


class Bind(Op):
    """driver_override + drivers_probe: vfm_pci_probe and everything
    vfio_pci_core_register_device() does on its behalf."""
    name = "bind"

    def setup(self):
        pci.restore(self.bdf)
        pci.set_override(self.bdf, DRIVER)

    def run(self):
        pci.probe(self.bdf)
        # The PCI core logs a failed probe and leaves the device unbound;
        # drivers_probe itself does not return the probe's error.
        return pci.driver(self.bdf) == DRIVER

    def check(self, ok):
        drv = pci.driver(self.bdf)
        assert drv in (None, DRIVER), f"bound to {drv}"
        assert (drv == DRIVER) == ok
        assert not os.path.exists(pci.dev_path(self.bdf, "vfio-dev")) or ok

    def undo(self):
        pci.unbind(self.bdf)

    def teardown(self):
        pci.restore(self.bdf)


class Open(Op):
    """The group/container path: vfm_open_device() and the table
    compiled at open; then a read through it."""
    name = "open"

    def setup(self):
        pci.bind(self.bdf, DRIVER)

    def run(self):
        with vfio.Device(self.bdf) as dev:
            dev.get_info()
            dev.region_info(vfio.BAR0)
            dev.read32(vfio.BAR0, 0)
        return True

    def teardown(self):
        pci.restore(self.bdf)


class OpenCdev(Open):
    """The iommufd path: cdev open, bind to an iommufd, attach to an IOAS."""
    name = "open-cdev"

    def available(self):
        return iommufd.unavailable()

    def run(self):
        with iommufd.IommuFD() as ictx:
            ioas = ictx.ioas_alloc()
            with iommufd.CdevDevice(self.bdf, ictx, ioas) as dev:
                dev.get_info()
                dev.read32(vfio.BAR0, 0)
        return True


class CfsMkdir(Op):
    """mkdir devices/<BDF>: the device's staged configuration and its
    default groups (regions/<name>/rules)."""
    name = "configfs-mkdir"

    def available(self):
        if not os.path.isdir(f"{CFS}/devices"):
            return f"no {CFS}/devices (configfs tree not in this module yet)"
        return None

    @property
    def path(self):
        return f"{CFS}/devices/{self.bdf}"

    def setup(self):
        if os.path.isdir(self.path):
            os.rmdir(self.path)

    def run(self):
        os.mkdir(self.path)
        return True

    def check(self, ok):
        assert os.path.isdir(self.path) == ok
        if ok:
            assert os.path.isdir(f"{self.path}/regions/bar0/rules")

    def undo(self):
        if os.path.isdir(self.path):
            os.rmdir(self.path)

    teardown = setup


class CfsRule(CfsMkdir):
    """mkdir a rule and write each of its attributes; a write that fails
    must leave the attribute as it was."""
    name = "configfs-rule"
    WRITES = [("range", "0x0+0x4"), ("access", "r"), ("action", "ro"),
              ("audit", "1")]

    @property
    def rule(self):
        return f"{self.path}/regions/bar0/rules/fi0"

    def setup(self):
        self.teardown()
        os.mkdir(self.path)

    def run(self):
        self.done = []
        os.mkdir(self.rule)
        self.done.append("mkdir")
        for attr, value in self.WRITES:
            path = f"{self.rule}/{attr}"
            before = _read(path)
            try:
                _write(path, value)
            except OSError:
                assert _read(path) == before, \
                    f"{attr}: failed write changed {before!r} to {_read(path)!r}"
                raise
            self.done.append(attr)
        return True

    def check(self, ok):
        assert os.path.isdir(self.rule) == ("mkdir" in self.done)

    def undo(self):
        if os.path.isdir(self.rule):
            os.rmdir(self.rule)

    def teardown(self):
        if os.path.isdir(self.rule):
            os.rmdir(self.rule)
        if os.path.isdir(self.path):
            os.rmdir(self.path)


class Attach(CfsRule):
    """Write a mediator's name (demand-loads it, takes its module) and its
    arguments, and open the device, which opens the mediator on it."""
    name = "attach"

    def setup(self):
        super().setup()
        if not os.path.exists(f"{self.path}/mediator"):
            pytest.skip("no devices/<BDF>/mediator attribute yet")
        pci.bind(self.bdf, DRIVER)
        # Load it once without injection: demand loading runs modprobe in
        # another task, outside this test's fault injection anyway.
        try:
            _write(f"{self.path}/mediator", MEDIATOR)
        except OSError as e:
            pytest.skip(f"mediator {MEDIATOR!r} cannot be attached: {e}")
        _write(f"{self.path}/mediator", "")

    def run(self):
        # The mediator traps BAR0's first 16 bytes: the open compiles a
        # table with a mediator range, and the read goes through it.
        _write(f"{self.path}/mediator", MEDIATOR)
        _write(f"{self.path}/mediator_args", MEDIATOR_ARGS)
        with vfio.Device(self.bdf) as dev:
            dev.read32(vfio.BAR0, 0)
        return True

    def check(self, ok):
        assert _read(f"{self.path}/mediator") in ("", MEDIATOR)

    def undo(self):
        _write(f"{self.path}/mediator", "")

    def teardown(self):
        try:
            _write(f"{self.path}/mediator", "")
        except OSError:
            pass
        pci.restore(self.bdf)
        super().teardown()


OPS = [Bind, Open, OpenCdev, CfsMkdir, CfsRule, Attach]


# --------------------------------------------------------------------------

def _splats(kmsg):
    lines = kmsg.read()
    return lines if any(SPLAT.search(ln) and not TOLERATED.search(ln)
                        for ln in lines) else []


def one_run(op, shot_ctx, base, kmsg, what):
    """Run op under injection, undo, check. Returns (ok, injected)."""
    ok = False
    with shot_ctx as shot:
        try:
            ok = bool(op.run())
        except OSError:
            ok = False
    try:
        op.check(ok)
    except AssertionError as e:
        pytest.fail(f"{op.name} {what}: state after "
                    f"{'success' if ok else 'failure'}: {e}")
    op.undo()
    rc = refcounts()
    assert rc == base, f"{op.name} {what}: module refcounts {rc} != {base}"
    bad = _splats(kmsg)
    if bad:
        pytest.fail(f"{op.name} {what}: kernel log:\n" + "\n".join(bad),
                    pytrace=False)
    return ok, shot.injected


@pytest.mark.parametrize("opcls", OPS, ids=[o.name for o in OPS])
def test_failslab(opcls, edu, dmesg_clean):
    op = opcls(edu)
    why = op.available()
    if why:
        pytest.skip(why)
    kmsg = dmesg_clean
    leaks = failslab.Kmemleak() if failslab.Kmemleak.on() else None
    rng = random.Random(os.environ.get("VFM_FAILSLAB_SEED", "vfmediate"))
    op.setup()
    try:
        # Once without injection: the operation works, and the baseline
        # of module references is taken with everything it loads loaded.
        assert op.run(), f"{op.name} fails without fault injection"
        op.undo()
        base = refcounts()
        _splats(kmsg)

        with failslab.Failslab(module=DRIVER, depth=DEPTH,
                               verbose=VERBOSE) as fs:
            points = None
            for n in itertools.count(1):
                assert n <= MAX_POINTS, \
                    f"{op.name}: more than {MAX_POINTS} failure points?"
                ok, injected = one_run(op, fs.nth(n), base, kmsg, f"nth={n}")
                if not injected:
                    assert ok, f"{op.name} failed with no fault injected (nth={n})"
                    points = n - 1
                    break
            assert points, f"{op.name}: no allocation under {DRIVER} to fail"
            failed = 0
            for i in range(ROUNDS):
                p = rng.choice([3, 10, 30, 60])
                times = rng.randint(1, 3)
                ok, injected = one_run(op, fs.random(p, times), base, kmsg,
                                       f"random #{i} p={p}% times={times}")
                failed += not ok
        # And the operation still works afterwards.
        assert op.run(), f"{op.name} fails after the fault-injection runs"
        op.undo()
        print(f"{op.name}: {points} failure points, {ROUNDS} random runs "
              f"({failed} failed)")
    finally:
        op.teardown()
    if leaks is not None:
        new = leaks.new()
        assert not new, f"{op.name}: kmemleak:\n" + "\n\n".join(new)
