# SPDX-License-Identifier: GPL-2.0
"""Live apply: the configfs attribute devices/<BDF>/apply (and
`vfmediate apply BDF`) compiles the staged configuration of an open
device into a new table and publishes it, without a reopen.

On edu's BAR0 (1 MiB, live registers: 0x00 ID, 0x04 liveness, which
reads back the bitwise NOT of what was written): rules added and removed
while the device is open take effect at the next access; a change that
would rule a page the user holds mmap'ed is refused with EBUSY and the
running table is kept, as it is when compiling or a mediator's open()
fails; threads accessing while rules are applied in a loop see only the
old or the new result; a mediator attached, changed or detached while
open starts or stops taking accesses at the swap; a mediator starts and
stops trapping a window itself (vfm_request_retrap(), the test-only
"ondemand" mediator), refused over a mapped page or pending changes.
"""
import errno
import os
import re
import subprocess
import threading

import pytest

from budget import scaled
from policy import EDU_ID, EDU_ID_VALUE, EDU_LIVE, PAGE
from vfio import BAR0, VfioError, mmio_read32, opened
from vfm import Module, Vfm
from vfmnl import A, Nl

VFM = "vfmediate"
AUDIT = Module("vfmediate_audit")
TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = os.path.join(TOP, "cli", "vfmediate")
AUDIT_LINE = re.compile(r"(\w+) reads=(\d+) writes=(\d+) "
                        r"read_bytes=(\d+) write_bytes=(\d+)")

# A register far from the first pages, which the tests map.
FAR = 0x80000
FAR_RANGE = "0x80000-0x80fff"


pytestmark = pytest.mark.usefixtures("no_config_left")


def apply(v):
    v.write("apply", "1")


def apply_errno(v):
    """The errno of a refused apply; fails the test if it succeeds."""
    with pytest.raises(OSError) as e:
        apply(v)
    return e.value.errno


def outcome(fn, *args):
    try:
        return fn(*args)
    except OSError as e:
        return errno.errorcode.get(e.errno, e.errno)


def audit_counts(v):
    out = {}
    for line in v.mediator_state.splitlines():
        m = AUDIT_LINE.fullmatch(line)
        assert m, f"bad audit line {line!r}"
        out[m[1]] = tuple(int(x) for x in m.groups()[1:])
    return out


# -- rules come and go ---------------------------------------------------------


def test_deny_then_pass_without_reopen(edu_vfm):
    with Vfm(edu_vfm) as v, opened(edu_vfm) as dev:
        assert v.state == "open" and v.generation == 0
        assert dev.read32(BAR0, EDU_ID) == EDU_ID_VALUE
        v.add_rule("bar0", "id", "0x0-0x3", "deny")
        assert v.pending
        # Staged only: the running table still passes.
        assert dev.read32(BAR0, EDU_ID) == EDU_ID_VALUE
        apply(v)
        assert not v.pending and v.generation >= 1 and v.error == ""
        assert outcome(dev.read32, BAR0, EDU_ID) == "EACCES"
        assert v.rule("bar0", "id").hits == 1
        # The rest of the BAR is untouched.
        dev.write32(BAR0, EDU_LIVE, 0x1234)
        assert dev.read32(BAR0, EDU_LIVE) == ~0x1234 & 0xFFFFFFFF
        v.remove_rule("bar0", "id")
        apply(v)
        assert dev.read32(BAR0, EDU_ID) == EDU_ID_VALUE
        assert v.state == "open" and not v.pending


def test_apply_with_nothing_pending_keeps_the_table(edu_vfm):
    with Vfm(edu_vfm) as v, opened(edu_vfm) as dev:
        v.add_rule("bar0", "id", "0x0-0x3", "ro")
        apply(v)
        gen = v.generation
        apply(v)
        assert v.generation == gen
        assert outcome(dev.write32, BAR0, EDU_ID, 0) == "EPERM"


def test_apply_on_a_closed_device_waits_for_the_open(edu_vfm):
    with Vfm(edu_vfm) as v:
        v.add_rule("bar0", "id", "0x0-0x3", "deny")
        assert v.state == "bound"
        apply(v)                        # accepted, changes nothing now
        assert v.generation == 0
        with opened(edu_vfm) as dev:
            assert outcome(dev.read32, BAR0, EDU_ID) == "EACCES"


def test_apply_refuses_other_values(edu_vfm):
    with Vfm(edu_vfm) as v, opened(edu_vfm):
        v.add_rule("bar0", "id", "0x0-0x3", "deny")
        for bad in ("0", "2", "yes", ""):
            with pytest.raises(OSError) as e:
                v.write("apply", bad)
            assert e.value.errno == errno.EINVAL, bad
        assert v.pending


# -- mmap'ed pages ---------------------------------------------------------------


def test_change_over_a_mapped_page_is_refused(edu_vfm):
    with Vfm(edu_vfm) as v, opened(edu_vfm) as dev:
        mm = dev.mmap(BAR0, 0, PAGE)
        try:
            v.add_rule("bar0", "id", "0x0-0x3", "deny")
            assert apply_errno(v) == errno.EBUSY
            assert "mmap" in v.error and "bar0" in v.error, v.error
            assert v.pending and v.generation == 0
            # The running table is unchanged: the read passes.
            assert dev.read32(BAR0, EDU_ID) == EDU_ID_VALUE
            # A rule on a page the user has not mapped still applies.
            v.remove_rule("bar0", "id")
            v.add_rule("bar0", "far", FAR_RANGE, "deny")
            assert outcome(apply, v) is None, v.error
            assert v.error == ""
            assert outcome(dev.read32, BAR0, FAR) == "EACCES"
            assert mmio_read32(mm, EDU_ID) == EDU_ID_VALUE
            # The ruled page can no longer be mapped.
            with pytest.raises(VfioError):
                dev.mmap(BAR0, FAR, PAGE)
        finally:
            mm.close()
        # Unmapped: the same change now applies.
        v.add_rule("bar0", "id", "0x0-0x3", "deny")
        apply(v)
        assert outcome(dev.read32, BAR0, EDU_ID) == "EACCES"


def test_a_mapping_inherited_by_fork_counts(edu_vfm):
    """A child holds the page after the parent unmapped it: the copy of
    the mapping (vm_ops->open) is recorded too, and forgotten when the
    child exits."""
    with Vfm(edu_vfm) as v, opened(edu_vfm) as dev:
        mm = dev.mmap(BAR0, FAR, PAGE)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:                    # the child: hold the mapping
            os.close(w)
            os.read(r, 1)
            os._exit(0)
        os.close(r)
        try:
            mm.close()
            v.add_rule("bar0", "far", FAR_RANGE, "deny")
            assert apply_errno(v) == errno.EBUSY
            assert "mmap" in v.error
        finally:
            os.close(w)
            os.waitpid(pid, 0)
        apply(v)
        assert outcome(dev.read32, BAR0, FAR) == "EACCES"


def test_freed_pages_can_be_mapped_again(edu_vfm):
    with Vfm(edu_vfm) as v, opened(edu_vfm) as dev:
        v.add_rule("bar0", "far", FAR_RANGE, "deny")
        apply(v)
        with pytest.raises(VfioError):
            dev.mmap(BAR0, FAR, PAGE)
        v.remove_rule("bar0", "far")
        apply(v)
        dev.mmap(BAR0, FAR, PAGE).close()


# -- failures keep the running table -----------------------------------------------


def test_invalid_staged_rule_keeps_the_running_table(edu_vfm):
    with Vfm(edu_vfm) as v, opened(edu_vfm) as dev:
        v.add_rule("bar0", "live", "0x4-0x7", "ro")
        apply(v)
        gen = v.generation
        os.mkdir(v.region_path("bar0", "rules", "norange"))
        try:
            assert apply_errno(v) == errno.EINVAL
            assert "no range" in v.error, v.error
            assert v.generation == gen and v.pending
            assert outcome(dev.write32, BAR0, EDU_LIVE, 1) == "EPERM"
            assert dev.read32(BAR0, EDU_ID) == EDU_ID_VALUE
        finally:
            os.rmdir(v.region_path("bar0", "rules", "norange"))


def test_failing_mediator_open_keeps_the_running_table(edu_vfm):
    with Vfm(edu_vfm) as v, opened(edu_vfm) as dev:
        v.add_rule("bar0", "id", "0x0-0x3", "deny")
        apply(v)
        gen = v.generation
        # nop checks at open that its window lies inside the BAR.
        v.mediator = "nop"
        v.mediator_args = "bar=0,range=0x200000-0x200fff"
        assert apply_errno(v) == errno.ERANGE
        assert "nop" in v.error and "open failed" in v.error, v.error
        assert v.generation == gen and v.pending
        assert outcome(dev.read32, BAR0, EDU_ID) == "EACCES"
        assert v.mediator_state == ""
        v.mediator = ""
        apply(v)
        assert v.error == ""


# -- mediators attached and detached while open ------------------------------------


def test_mediator_attached_changed_and_detached_while_open(edu_vfm):
    AUDIT.load()
    base = AUDIT.refcnt
    with Vfm(edu_vfm) as v, opened(edu_vfm) as dev:
        v.mediator = "audit"
        v.mediator_args = "regions=bar0"
        assert v.mediator_state == ""           # staged, not running
        apply(v)
        assert AUDIT.refcnt == base + 2         # attached + the open table
        for _ in range(3):
            assert dev.read32(BAR0, EDU_ID) == EDU_ID_VALUE
        assert audit_counts(v) == {"bar0": (3, 0, 12, 0)}
        # Rules change, the mediator stays: its instance and counts too.
        v.add_rule("bar0", "far", FAR_RANGE, "deny")
        apply(v)
        assert audit_counts(v) == {"bar0": (3, 0, 12, 0)}
        assert AUDIT.refcnt == base + 2
        # Other arguments: a new instance, the old one closed.
        v.mediator_args = "regions=config"
        apply(v)
        assert AUDIT.refcnt == base + 2
        dev.read32(BAR0, EDU_ID)
        dev.config_read32(0)
        assert audit_counts(v) == {"config": (1, 0, 4, 0)}
        # Detached: its handler no longer runs, its module is let go.
        v.mediator = ""
        apply(v)
        assert AUDIT.refcnt == base
        assert v.mediator_state == ""
        for _ in range(3):
            dev.config_read32(0)
        v.mediator = "audit"
        v.mediator_args = "regions=config"
        assert AUDIT.refcnt == base + 1         # attached, not running
        apply(v)
        assert audit_counts(v) == {"config": (0, 0, 0, 0)}
        v.mediator = ""
        apply(v)
    assert AUDIT.refcnt == base


# -- a mediator starts and stops trapping itself ----------------------------------------

ONDEMAND = Module("vfmediate_ondemand")
ONDEMAND_MARK = 0x0DDE3A4D
SWITCH = FAR                    # ondemand's switch, the window's first dword
INSIDE = FAR + 0x10             # trapped while switched on


def ondemand_state(v):
    return dict(kv.split("=") for kv in v.mediator_state.split())


def next_event(nl, bdf):
    """The next event of the device (a retrap is applied from a work item,
    after the write that asked for it returned)."""
    while (e := nl.event(timeout=30)) is not None:
        if e.str(A.DEV_NAME) == bdf:
            return e
    pytest.fail("no event from the device within 30 s")


@pytest.fixture
def ondemand():
    """The test-only mediator is unloaded after the test, so that later
    modules see the mediators they expect registered."""
    yield
    assert not ONDEMAND.loaded or ONDEMAND.unload() == 0


@pytest.mark.usefixtures("ondemand")
def test_mediator_starts_and_stops_trapping(edu_vfm):
    with Nl() as nl, Vfm(edu_vfm) as v, opened(edu_vfm) as dev:
        v.mediator = "ondemand"
        v.mediator_args = f"bar=0,range={FAR_RANGE}"
        apply(v)
        nl.subscribe()
        gen = v.generation
        assert dev.read32(BAR0, INSIDE) == 0xFFFFFFFF       # edu's own
        dev.write32(BAR0, SWITCH, 1)
        e = next_event(nl, edu_vfm)
        assert e.event() == "config_applied", e
        assert e.u64(A.DEV_GENERATION) == v.generation > gen
        assert dev.read32(BAR0, SWITCH) == 1
        assert dev.read32(BAR0, INSIDE) == ONDEMAND_MARK
        assert ondemand_state(v) == {"switch": "1", "retraps": "1",
                                     "reads": "1", "stops": "0",
                                     "runs": "0"}
        # Pages outside the window stay as they were.
        assert dev.read32(BAR0, EDU_ID) == EDU_ID_VALUE
        dev.write32(BAR0, SWITCH, 0)
        assert next_event(nl, edu_vfm).event() == "config_applied"
        assert dev.read32(BAR0, INSIDE) == 0xFFFFFFFF
        assert ondemand_state(v)["retraps"] == "2"
        # Staged changes of the admin are not applied by a retrap.
        v.add_rule("bar0", "id", "0x0-0x3", "deny")
        gen = v.generation
        dev.write32(BAR0, SWITCH, 1)
        e = next_event(nl, edu_vfm)
        assert e.event() == "config_refused", e
        assert e.u32(A.ERRNO) == errno.EBUSY
        assert "pending" in v.error, v.error
        assert v.generation == gen and v.pending
        assert dev.read32(BAR0, EDU_ID) == EDU_ID_VALUE
        assert dev.read32(BAR0, INSIDE) == 0xFFFFFFFF
        # The admin's apply publishes the switch's traps too: open() is
        # not run again, the instance's switch stays on.
        apply(v)
        assert next_event(nl, edu_vfm).event() == "config_applied"
        assert outcome(dev.read32, BAR0, EDU_ID) == "EACCES"
        assert dev.read32(BAR0, INSIDE) == ONDEMAND_MARK


@pytest.mark.usefixtures("ondemand")
def test_retrap_refused_over_a_mapped_page(edu_vfm):
    with Nl() as nl, Vfm(edu_vfm) as v, opened(edu_vfm) as dev:
        v.mediator = "ondemand"
        v.mediator_args = "bar=0,range=0x0-0x1fff"
        # The switch's page may not be mapped; the next one may.
        v.write("apply", "1")
        mm = dev.mmap(BAR0, PAGE, PAGE)
        try:
            nl.subscribe()
            dev.write32(BAR0, 0, 1)
            e = next_event(nl, edu_vfm)
            assert e.event() == "config_refused", e
            assert e.u32(A.ERRNO) == errno.EBUSY
            assert "mmap" in v.error, v.error
            assert mmio_read32(mm, 0) == 0xFFFFFFFF
        finally:
            mm.close()


@pytest.mark.usefixtures("ondemand")
def test_retrap_requested_at_close_is_dropped(edu_vfm):
    """A request queued as the device closes runs against a closed
    device: nothing happens, nothing leaks, the module is let go."""
    ONDEMAND.load()
    base = ONDEMAND.refcnt
    with Vfm(edu_vfm) as v:
        v.mediator = "ondemand"
        v.mediator_args = f"bar=0,range={FAR_RANGE}"
        for i in range(scaled(50, minimum=10)):
            with opened(edu_vfm) as dev:
                dev.write32(BAR0, SWITCH, i & 1)
        assert v.state == "bound"
        v.mediator = ""
    assert ONDEMAND.refcnt == base


# -- swaps under load ----------------------------------------------------------------


def test_accesses_during_applies_see_old_or_new(edu_vfm):
    swaps = scaled(1000, minimum=100)
    stop = threading.Event()
    bad = []
    seen = {"ok": 0, "EACCES": 0}
    gens = []

    def reader(dev):
        # The device fd is shared: one VFIO user, several threads.
        while not stop.is_set():
            r = outcome(dev.read32, BAR0, EDU_ID)
            if r == EDU_ID_VALUE:
                seen["ok"] += 1
            elif r == "EACCES":
                seen["EACCES"] += 1
            else:
                bad.append(r)

    with Vfm(edu_vfm) as v, opened(edu_vfm) as dev:
        # vfio-pci-core maps a BAR at its first access, without a lock:
        # two threads racing that first access can get EBUSY (stock
        # vfio-pci too). Map it before they start.
        assert dev.read32(BAR0, EDU_ID) == EDU_ID_VALUE
        threads = [threading.Thread(target=reader, args=(dev,))
                   for _ in range(2)]
        for t in threads:
            t.start()
        try:
            for i in range(swaps):
                if i % 2 == 0:
                    v.add_rule("bar0", "id", "0x0-0x3", "deny")
                else:
                    v.remove_rule("bar0", "id")
                apply(v)
                r = outcome(dev.read32, BAR0, EDU_ID)
                assert r == ("EACCES" if i % 2 == 0 else EDU_ID_VALUE), i
                if i % 2 == 0:
                    gens.append(v.generation)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert bad == []
    # Every apply that added the rule published a new table.
    assert len(set(gens)) == len(gens) == (swaps + 1) // 2
    assert seen["ok"] and seen["EACCES"], seen


# -- events ----------------------------------------------------------------------------


def test_live_applies_are_reported(edu_vfm):
    with Nl() as nl, Vfm(edu_vfm) as v, opened(edu_vfm) as dev:
        nl.subscribe()
        v.add_rule("bar0", "id", "0x0-0x3", "deny")
        apply(v)
        gen = v.generation
        mm = dev.mmap(BAR0, FAR, PAGE)
        try:
            v.add_rule("bar0", "far", FAR_RANGE, "deny")
            assert apply_errno(v) == errno.EBUSY
            err = v.error
        finally:
            mm.close()
        # Back to pass-through: generation 0.
        v.remove_rule("bar0", "far")
        v.remove_rule("bar0", "id")
        apply(v)
        assert v.generation == 0
        got = [e for e in nl.events(first=60)
               if e.str(A.DEV_NAME) == edu_vfm]
    assert [e.event() for e in got] == ["config_applied", "config_refused",
                                        "config_applied"]
    assert got[0].u64(A.DEV_GENERATION) == gen
    assert got[1].u32(A.ERRNO) == errno.EBUSY
    assert got[1].str(A.DEV_ERROR) == err and "mmap" in err
    assert not got[2].u64(A.DEV_GENERATION)     # 0 is left out


# -- the command line ------------------------------------------------------------------


@pytest.mark.skipif(not os.access(CLI, os.X_OK), reason="make -C cli first")
def test_cli_apply(edu_vfm):
    with Vfm(edu_vfm) as v, opened(edu_vfm) as dev:
        v.add_rule("bar0", "id", "0x0-0x3", "deny")
        p = subprocess.run([CLI, "apply", edu_vfm], capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert outcome(dev.read32, BAR0, EDU_ID) == "EACCES"
        mm = dev.mmap(BAR0, FAR, PAGE)
        try:
            v.add_rule("bar0", "far", FAR_RANGE, "deny")
            p = subprocess.run([CLI, "apply", edu_vfm], capture_output=True,
                               text=True, timeout=60)
            assert p.returncode != 0
            assert "mmap" in p.stderr, p.stderr
        finally:
            mm.close()
        assert outcome(dev.read32, BAR0, FAR) != "EACCES"
