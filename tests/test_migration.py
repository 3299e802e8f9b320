# SPDX-License-Identifier: GPL-2.0
"""VFIO migration (v2) through a mediator, driven through the uAPI.

A function bound to vfmediate offers VFIO_DEVICE_FEATURE_MIGRATION only
when the mediator attached in its configfs directory at bind time can
carry device state (regshadow can; nop cannot), and then exactly as the
in-tree migration drivers do: STOP_COPY, no P2P, no PRE_COPY. Without one
the feature is absent as on vfio-pci (the parity tests compare that too).

The test client plays a VMM: on edu A it writes registers in regshadow's
window, moves A RUNNING -> STOP -> STOP_COPY and reads the data fd; on
edu B it moves to RESUMING, writes the stream, moves to STOP and RUNNING,
and reads B's registers back. Streams that are truncated, too long,
corrupted or from another mediator are refused when RESUMING ends,
before the mediator sees them, and leave B unchanged. Invalid
transitions, data fds outliving their transfer, and resets in the
middle of a transfer are checked against the uAPI's words. The guest
needs two edu functions (tests/vm/run --edu 2, as tests/run-suite does).
"""
import errno
import json
import os
import subprocess

import pytest

import pci
import vfm
from conftest import EDU_ID
import vfio
from vfio import BAR0, Device, VfioError
from vfm import Vfm
from vfmnl import A, Nl

WINDOW = "bar=0,range=0x0-0xff"
LIVENESS, DMA_SRC, DMA_DST, DMA_CNT = 0x04, 0x80, 0x88, 0x90
HEADER = 56          # struct vfm_mig_header
STATE = 24 + 2 * 0x100   # regshadow's, for WINDOW
ST = vfio


@pytest.fixture(scope="module")
def edus():
    found = sorted(pci.find_functions(*EDU_ID))
    if len(found) < 2:
        pytest.fail("two edu functions needed (tests/vm/run --edu 2)")
    return found[:2]


def configured(edus, bind, mediator, args):
    """Both edu functions, configured with @mediator first, then bound
    (migratability is decided at bind); the directories go after."""
    cfgs = [Vfm(bdf, mediator=mediator, args=args).create() for bdf in edus]
    for bdf in edus:
        bind(bdf, "vfmediate")
    yield edus, cfgs
    for c in cfgs:
        c.remove()


@pytest.fixture
def pair(edus, bind):
    """Both edu functions with regshadow."""
    yield from configured(edus, bind, "regshadow", WINDOW)


def errno_of(fn, *args):
    try:
        fn(*args)
    except (VfioError, OSError) as e:
        return e.errno
    return 0


def read_all(fd):
    out = b""
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return out
        out += chunk


def save(dev):
    """STOP_COPY: the stream; the device is left RUNNING."""
    assert dev.set_mig_state(ST.VFIO_DEVICE_STATE_STOP) is None
    fd = dev.set_mig_state(ST.VFIO_DEVICE_STATE_STOP_COPY)
    assert fd is not None
    try:
        data = read_all(fd)
    finally:
        os.close(fd)
    assert dev.set_mig_state(ST.VFIO_DEVICE_STATE_RUNNING) is None
    return data


def resume_fd(dev):
    fd = dev.set_mig_state(ST.VFIO_DEVICE_STATE_RESUMING)
    assert fd is not None
    assert dev.mig_state() == ST.VFIO_DEVICE_STATE_RESUMING
    return fd


def load(dev, data):
    """RESUMING with @data, then RUNNING."""
    fd = resume_fd(dev)
    try:
        assert os.write(fd, data) == len(data)
    finally:
        os.close(fd)
    assert dev.set_mig_state(ST.VFIO_DEVICE_STATE_RUNNING) is None


def source_writes(dev):
    """Every register registers() reads, 4 bytes wide: edu ignores other
    widths there (and regshadow would shadow what the device dropped)."""
    dev.enable_bus_master()
    dev.write32(BAR0, LIVENESS, 0x12345678)
    dev.write32(BAR0, DMA_SRC, 0x5A5A0000)
    dev.write32(BAR0, DMA_DST, 0x0000A5A5)
    dev.write32(BAR0, DMA_CNT, 0x0123)


def registers(dev):
    return [dev.read32(BAR0, r) for r in (LIVENESS, DMA_SRC, DMA_DST,
                                          DMA_CNT)]


def test_offered_only_with_a_migration_capable_mediator(edus, bind):
    a, b = edus
    with Vfm(a, mediator="regshadow", args=WINDOW) as ca, \
            Vfm(b, mediator="nop") as cb:
        assert ca.read("migration") == cb.read("migration") == "none"
        bind(a, "vfmediate")
        bind(b, "vfmediate")
        assert ca.read("migration") == "running"
        assert cb.read("migration") == "none"
        with Device(a) as dev:
            assert dev.migration_flags() == vfio.VFIO_MIGRATION_STOP_COPY
            assert dev.mig_state() == ST.VFIO_DEVICE_STATE_RUNNING
            dev.set_mig_state(ST.VFIO_DEVICE_STATE_STOP)
            assert ca.read("migration") == "stop"
        # The last close makes it run again.
        assert ca.read("migration") == "running"
        with Device(b) as dev:
            assert dev.probe_feature(vfio.FEATURE_MIGRATION) == errno.ENOTTY
            assert errno_of(dev.mig_state) == errno.ENOTTY


def test_operators_see_it(edus, bind):
    """The CLI reports the attribute, by netlink and by configfs alike."""
    from test_cli import CLI
    a = edus[0]
    with Vfm(a, mediator="regshadow", args=WINDOW):
        bind(a, "vfmediate")
        with Device(a) as dev:
            dev.set_mig_state(ST.VFIO_DEVICE_STATE_STOP)
            out = subprocess.run([CLI, "-j", "show", a], capture_output=True,
                                 text=True, check=True).stdout
            assert json.loads(out)[0]["migration"] == "stop"
            out = subprocess.run([CLI, "show", a], capture_output=True,
                                 text=True, check=True).stdout
            assert " pending no migration stop\n" in out, out


def test_decided_at_bind(edus, bind):
    """A mediator attached after bind does not make the function
    migratable: vfio takes the migration ops at registration only."""
    a = edus[0]
    bind(a, "vfmediate")
    with Vfm(a, mediator="regshadow", args=WINDOW) as ca:
        assert ca.read("migration") == "none"
        with Device(a) as dev:
            assert dev.probe_feature(vfio.FEATURE_MIGRATION) == errno.ENOTTY


def test_state_moves_to_a_second_function(pair):
    (a, b), (ca, cb) = pair
    with Device(a) as src, Device(b) as dst:
        source_writes(src)
        want = registers(src)
        dst.enable_bus_master()
        dst.write32(BAR0, DMA_SRC, 0xDEAD0000)
        assert registers(dst) != want
        data = save(src)
        assert len(data) == HEADER + STATE
        if dst.probe_feature(vfio.VFIO_DEVICE_FEATURE_MIG_DATA_SIZE) == 0:
            assert src.mig_data_size() == len(data)
        load(dst, data)
        assert registers(dst) == want
        assert dst.mig_state() == ST.VFIO_DEVICE_STATE_RUNNING
        # The destination's shadow is the source's: it can move on.
        assert cb.mediator_state == ca.mediator_state
        assert save(dst)[HEADER:] == data[HEADER:]


def corrupt(data, at):
    b = bytearray(data)
    b[at] ^= 0x01
    return bytes(b)


def other_mediator(data):
    b = bytearray(data)
    b[8:8 + 9] = b"nop\0\0\0\0\0\0"
    return bytes(b)


BAD = {
    "empty": lambda d: b"",
    "header only": lambda d: d[:HEADER],
    "truncated": lambda d: d[:-1],
    "payload corrupted": lambda d: corrupt(d, HEADER + 20),
    "magic corrupted": lambda d: corrupt(d, 0),
    "length corrupted": lambda d: corrupt(d, 40),
    "another mediator": other_mediator,
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_stream_is_refused_and_changes_nothing(pair, kind):
    (a, b), (ca, cb) = pair
    with Device(a) as src:
        source_writes(src)
        data = save(src)
    with Device(b) as dst:
        dst.enable_bus_master()
        before = registers(dst)
        fd = resume_fd(dst)
        bad = BAD[kind](data)
        try:
            if bad:
                assert os.write(fd, bad) == len(bad)
            assert errno_of(dst.set_mig_state, ST.VFIO_DEVICE_STATE_STOP) \
                == errno.EINVAL
            assert dst.mig_state() == ST.VFIO_DEVICE_STATE_RESUMING
            assert cb.read("migration") == "resuming"
            assert registers(dst) == before
            assert cb.error.startswith("migration: the stream"), cb.error
        finally:
            os.close(fd)
    # A new open finds the function RUNNING again.
    with Device(b) as dst:
        assert dst.mig_state() == ST.VFIO_DEVICE_STATE_RUNNING


@pytest.mark.parametrize("action", ["ro", "deny", "ignore"])
def test_a_load_writes_only_what_the_user_may_write(pair, action):
    """The stream is the VFIO user's own (it may forge one with a good
    CRC): a load may not write a byte the destination's rules keep the
    user from writing. The whole load fails, before anything changes."""
    (a, b), (ca, cb) = pair
    cb.add_rule("bar0", "guard", f"{DMA_DST:#x}+4", action, access="w")
    with Device(a) as src:
        source_writes(src)
        data = save(src)
    with Device(b) as dst:
        dst.enable_bus_master()
        before = registers(dst)
        fd = resume_fd(dst)
        try:
            os.write(fd, data)
            assert errno_of(dst.set_mig_state, ST.VFIO_DEVICE_STATE_STOP) \
                == errno.EPERM
            assert dst.mig_state() == ST.VFIO_DEVICE_STATE_RESUMING
            assert registers(dst) == before
            assert cb.error == "migration: the mediator refused the " \
                "state (-1)", cb.error
        finally:
            os.close(fd)


def test_a_stream_longer_than_the_state_is_refused_at_write(pair):
    (a, b), _ = pair
    with Device(a) as src:
        data = save(src)
    with Device(b) as dst:
        fd = resume_fd(dst)
        try:
            assert os.write(fd, data) == len(data)
            assert errno_of(os.write, fd, b"x") == errno.EFBIG
            # What was written is whole: RESUMING ends well.
            assert dst.set_mig_state(ST.VFIO_DEVICE_STATE_RUNNING) is None
        finally:
            os.close(fd)


@pytest.mark.parametrize("state", [ST.VFIO_DEVICE_STATE_ERROR,
                                   ST.VFIO_DEVICE_STATE_RUNNING_P2P,
                                   ST.VFIO_DEVICE_STATE_PRE_COPY, 7, 99])
def test_unsupported_states_are_refused(pair, state):
    (a, _), _ = pair
    with Device(a) as dev:
        assert errno_of(dev.set_mig_state, state) == errno.EINVAL
        assert dev.mig_state() == ST.VFIO_DEVICE_STATE_RUNNING


def test_data_fds_end_with_their_transfer(pair):
    (a, _), (ca, _) = pair
    with Device(a) as dev:
        dev.set_mig_state(ST.VFIO_DEVICE_STATE_STOP)
        fd = dev.set_mig_state(ST.VFIO_DEVICE_STATE_STOP_COPY)
        assert ca.read("migration") == "stop_copy"
        try:
            assert errno_of(os.lseek, fd, 0, os.SEEK_SET) == errno.ESPIPE
            assert errno_of(os.write, fd, b"x") == errno.EBADF
            assert len(os.read(fd, 8)) == 8
            # STOP_COPY -> STOP ends the transfer: the fd reads no more.
            dev.set_mig_state(ST.VFIO_DEVICE_STATE_STOP)
            assert errno_of(os.read, fd, 8) == errno.ENODEV
        finally:
            os.close(fd)
        fd = dev.set_mig_state(ST.VFIO_DEVICE_STATE_RESUMING)
    # Closing the device ends it too, and the fd outlives the device.
    try:
        assert errno_of(os.write, fd, b"x") == errno.ENODEV
    finally:
        os.close(fd)


def test_without_a_capable_mediator_running_the_transfer_fails(pair):
    """The mediator attached at bind may be detached since: the arcs that
    need device state fail, RUNNING and STOP still work."""
    (a, _), (ca, _) = pair
    ca.mediator = ""
    with Device(a) as dev:
        assert dev.migration_flags() == vfio.VFIO_MIGRATION_STOP_COPY
        assert dev.set_mig_state(ST.VFIO_DEVICE_STATE_STOP) is None
        assert errno_of(dev.set_mig_state, ST.VFIO_DEVICE_STATE_STOP_COPY) \
            == errno.EOPNOTSUPP
        assert dev.mig_state() == ST.VFIO_DEVICE_STATE_STOP
        assert "has no device state" in ca.error
        assert dev.set_mig_state(ST.VFIO_DEVICE_STATE_RUNNING) is None


def test_reset_ends_a_transfer(nvme_vf, bind):
    """VFIO_DEVICE_RESET returns the function to RUNNING and voids the
    transfer in progress (the uAPI's words), through reset_done()."""
    with Vfm(nvme_vf, mediator="regshadow", args="bar=0,range=0x0-0xfff"):
        bind(nvme_vf, "vfmediate")
        with Device(nvme_vf) as dev:
            assert dev.get_info().reset_supported
            dev.set_mig_state(ST.VFIO_DEVICE_STATE_STOP)
            fd = dev.set_mig_state(ST.VFIO_DEVICE_STATE_STOP_COPY)
            try:
                dev.reset()
                assert dev.mig_state() == ST.VFIO_DEVICE_STATE_RUNNING
                assert errno_of(os.read, fd, 8) == errno.ENODEV
            finally:
                os.close(fd)


# -- a mediator that stops the device and traps on the destination ----------

OD_WINDOW = "bar=0,range=0x80000-0x80fff"     # ondemand: switch, then the rest
OD_SWITCH, OD_INSIDE, OD_MARK = 0x80000, 0x80010, 0x0DDE3A4D


@pytest.fixture
def od_pair(edus, bind):
    """Both edu functions with the test-only ondemand mediator, which
    migrates its switch and has stop() and run() hooks."""
    yield from configured(edus, bind, "ondemand", OD_WINDOW)
    od = vfm.Module("vfmediate_ondemand")
    assert not od.loaded or od.unload() == 0


def od_state(v):
    return dict(kv.split("=") for kv in v.mediator_state.split())


def applied(nl, bdf):
    """Wait (bounded) for the device's next config-applied event: a retrap
    applies from a work item, after the call that asked for it."""
    while (e := nl.event(timeout=30)) is not None:
        if e.str(A.DEV_NAME) == bdf and e.event() == "config_applied":
            return e
    pytest.fail(f"no config_applied event of {bdf} within 30 s")


def test_stop_and_run_hooks_and_a_trap_that_migrates(od_pair):
    """The mediator's stop() and run() run on RUNNING <-> STOP, and one
    that fails keeps the device RUNNING; the destination traps as the
    source did once its state is loaded (load_state() asks for a retrap),
    which is how a mediator steps in for a migration."""
    (a, b), (ca, cb) = od_pair
    with Device(a) as src, Device(b) as dst, Nl() as nl:
        src.enable_bus_master()
        dst.enable_bus_master()
        nl.subscribe()
        # Each write of the switch asks for a retrap, which applies from
        # a work item: wait for it, so that nothing runs behind the test.
        src.write32(BAR0, OD_SWITCH, 2)             # ONDEMAND_NOSTOP
        applied(nl, a)
        assert errno_of(src.set_mig_state, ST.VFIO_DEVICE_STATE_STOP) \
            == errno.EBUSY
        assert src.mig_state() == ST.VFIO_DEVICE_STATE_RUNNING
        assert ca.error == "migration: the mediator could not stop the " \
            "device (-16)", ca.error
        src.write32(BAR0, OD_SWITCH, 1)             # trap the window
        applied(nl, a)
        data = save(src)
        assert od_state(ca)["stops"] == "1" and od_state(ca)["runs"] == "1"
        assert src.read32(BAR0, OD_INSIDE) == OD_MARK
        assert dst.read32(BAR0, OD_INSIDE) == 0xFFFFFFFF   # edu's own
        load(dst, data)
        applied(nl, b)
        assert dst.read32(BAR0, OD_SWITCH) == 1
        assert dst.read32(BAR0, OD_INSIDE) == OD_MARK
        # RUNNING -> STOP -> RESUMING, then STOP -> RUNNING.
        assert od_state(cb)["stops"] == "1" and od_state(cb)["runs"] == "1"


# Two threads racing the transfers, as uid 65534: test_attack.py
# (test_migration_streams_raced_by_their_user, tests/attack/migrate.c).
