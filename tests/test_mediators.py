# SPDX-License-Identifier: GPL-2.0
"""The mediator framework: registration, demand loading, module pinning,
and the audit, regshadow and nop mediators on edu and an NVMe VF.

Every test starts and ends with no mediator module loaded and no configfs
device directory: the autouse fixture unloads them, so a module the core
forgot to unpin fails the test that leaked it.
"""
import ctypes
import errno
import os
import re
import subprocess
import threading

import pytest

from budget import scaled
import pci
import vfm
from vfio import BAR0, CONFIG, Device, VfioError, mmio_read32
from vfm import Module, Vfm

CORE = Module("vfmediate")
AUDIT = Module("vfmediate_audit")
REGSHADOW = Module("vfmediate_regshadow")
NOP = Module("vfmediate_nop")
SELFTEST = Module("vfmediate_selftest")
MEDIATOR_MODULES = [SELFTEST, AUDIT, REGSHADOW, NOP]
IN_USE = (errno.EWOULDBLOCK, errno.EBUSY)

PAGE = 4096
EDU_ID_REG = 0x010000ED
EDU_LIVENESS = 0x04
NVME_VS, NVME_CC, NVME_AQA = 0x08, 0x14, 0x24
NVME_VS_1_4 = 0x00010400

MAN9 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "man",
                    "vfmediate-mediator.9")
MAN_BDF = "0000:00:04.0"

AUDIT_LINE = re.compile(r"(bar[0-5]|rom|config|vga) reads=(\d+) writes=(\d+) "
                        r"read_bytes=(\d+) write_bytes=(\d+)")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.pread.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t,
                        ctypes.c_long]
_libc.pwrite.argtypes = _libc.pread.argtypes


def _unload_mediators():
    """Unload every mediator module; the names of those that would not."""
    return [m.name for m in MEDIATOR_MODULES
            if m.loaded and m.unload() != 0]


@pytest.fixture(autouse=True)
def clean_slate():
    assert CORE.loaded, "vfmediate.ko is not loaded"
    assert vfm.devices() == [], "a configfs device directory was left over"
    assert _unload_mediators() == [], "a mediator module is pinned"
    yield
    leftover = vfm.devices()
    pinned = _unload_mediators()
    assert leftover == [], f"configfs device directories left: {leftover}"
    assert pinned == [], f"still pinned after the test: {pinned}"


@pytest.fixture
def nvme_vfm(nvme_vf, bind):
    bind(nvme_vf, "vfmediate")
    return nvme_vf


def audit_counts(v):
    """{region: (reads, writes, read_bytes, write_bytes)} from audit."""
    out = {}
    for line in v.mediator_state.splitlines():
        m = AUDIT_LINE.fullmatch(line)
        assert m, f"bad audit line {line!r}"
        out[m[1]] = tuple(int(x) for x in m.groups()[1:])
    return out


def merged(ranges):
    """(offset, size) ranges sorted and joined where they touch."""
    out = []
    for off, size in sorted(ranges):
        if out and out[-1][0] + out[-1][1] == off:
            out[-1] = (out[-1][0], out[-1][1] + size)
        else:
            out.append((off, size))
    return out


def efault(dev, index, offset, size, write=False):
    """A pread/pwrite of the device fd with a bad user pointer: -> errno."""
    pos = dev.region_info(index).offset + offset
    fn = _libc.pwrite if write else _libc.pread
    ret = fn(dev.fd, 16, size, pos)
    assert ret == -1, "an access through a bad pointer succeeded"
    return ctypes.get_errno()


def refused(fn, *args):
    """The errno of fn(*args), which must fail with an OSError."""
    with pytest.raises(OSError) as e:
        fn(*args)
    return e.value.errno


# -- registration -------------------------------------------------------------


def test_register_refusals():
    AUDIT.load()
    SELFTEST.load()
    res = {k: int(v) for k, v in
           (kv.split("=") for kv in SELFTEST.param("results").split())}
    einval, eexist = -errno.EINVAL, -errno.EEXIST
    assert res == {
        "null": einval, "empty": einval, "noowner": einval,
        "upper": einval, "slash": einval, "dot": einval, "colon": einval,
        "space": einval, "newline": einval, "long": einval,
        "maxlen": 0, "valid": 0, "dup": eexist, "audit": eexist,
        "unreg": 0, "again": 0,
    }
    # The self-test unregistered all it registered; audit is untouched.
    assert vfm.mediators() == ["audit"]
    assert SELFTEST.unload() == 0


def test_mediators_view(edu):
    assert vfm.mediators() == []
    AUDIT.load()
    info = vfm.mediator_info("audit")
    assert info["module"] == "vfmediate_audit"
    assert int(info["users"]) == 0
    ops = set(re.split(r"[\s,]+", info["ops"].strip()))
    assert {"check_args", "open", "close", "observe", "show"} <= ops
    assert not ops & {"read", "write"}
    assert not ops & {"region_info", "mmap"}
    with Vfm(edu, mediator="audit"):
        assert int(vfm.mediator_info("audit")["users"]) == 1
    assert int(vfm.mediator_info("audit")["users"]) == 0
    assert AUDIT.unload() == 0
    assert vfm.mediators() == []


# -- demand loading and attach ------------------------------------------------


def test_attach_demand_loads(edu):
    assert not AUDIT.loaded
    with Vfm(edu) as v:
        assert v.mediator == ""
        v.mediator = "audit"
        assert AUDIT.loaded
        assert v.mediator == "audit"
        assert "audit" in vfm.mediators()


@pytest.mark.parametrize("name", ["nosuchmediator", "audit2"])
def test_attach_unknown_enoent(edu, name):
    with Vfm(edu) as v:
        assert refused(setattr, v, "mediator", name) == errno.ENOENT
        assert v.mediator == ""
        v.mediator = "audit"
        assert refused(setattr, v, "mediator", name) == errno.ENOENT
        assert v.mediator == "audit"
        assert not Module(f"vfmediate_{name}").loaded


@pytest.mark.parametrize("name", ["Audit", "../audit", "au dit", "audit/x",
                                  "a" * 32, "audit:x"])
def test_attach_bad_name_refused(edu, name):
    with Vfm(edu, mediator="audit") as v:
        assert refused(setattr, v, "mediator", name) in (errno.EINVAL,
                                                          errno.ENOENT)
        assert v.mediator == "audit"


def test_audit_args_validated(edu):
    with Vfm(edu, mediator="audit") as v:
        assert v.mediator_args == ""
        for bad in ["regions=", "regions=bar6", "regions=bar0,,config",
                    "region=bar0", "bar0", "regions=BAR0",
                    "regions=bar0 config", "regions=bar0,"]:
            assert refused(setattr, v, "mediator_args", bad) == \
                errno.EINVAL, bad
            assert v.mediator_args == ""
        v.mediator_args = "regions=bar0,config"
        assert v.mediator_args == "regions=bar0,config"
        assert refused(setattr, v, "mediator_args", "x") == errno.EINVAL
        assert v.mediator_args == "regions=bar0,config"


# -- pinning ------------------------------------------------------------------


def test_rmmod_refused_while_attached(edu):
    AUDIT.load()
    assert AUDIT.refcnt == 0
    with Vfm(edu, mediator="audit") as v:
        assert AUDIT.refcnt == 1
        assert AUDIT.unload() in IN_USE
        assert AUDIT.loaded
        v.mediator = ""
        assert AUDIT.refcnt == 0
        v.mediator = "audit"
        assert AUDIT.unload() in IN_USE
    # rmdir detached it
    assert AUDIT.refcnt == 0
    assert AUDIT.unload() == 0


def test_rmmod_refused_while_open(edu_vfm):
    with Vfm(edu_vfm, mediator="audit") as v:
        with Device(edu_vfm) as dev:
            assert v.state == "open"
            assert AUDIT.refcnt == 2        # attached, and one open device
            v.mediator = ""                 # staged: the open device keeps it
            assert v.pending
            assert AUDIT.refcnt == 1
            assert AUDIT.unload() in IN_USE
            assert dev.read32(BAR0, 0) == EDU_ID_REG
        assert v.state == "bound"
        assert AUDIT.refcnt == 0
        assert AUDIT.unload() == 0


def test_rmmod_after_rmdir_of_open_device(edu_vfm):
    v = Vfm(edu_vfm, mediator="audit").create()
    try:
        with Device(edu_vfm) as dev:
            v.remove()
            assert AUDIT.unload() in IN_USE
            assert dev.read32(BAR0, 0) == EDU_ID_REG
    finally:
        v.remove()
    assert AUDIT.unload() == 0


def test_open_close_100_keeps_refcounts(edu_vfm):
    """100 opens (20 under the debug kernel) keep the references."""
    core_base = CORE.refcnt
    with Vfm(edu_vfm, mediator="audit") as v:
        attached = AUDIT.refcnt
        core_attached = CORE.refcnt
        for i in range(scaled(100)):
            with Device(edu_vfm) as dev:
                assert dev.read32(BAR0, 0) == EDU_ID_REG
                if i == 0:
                    assert AUDIT.refcnt == attached + 1
                    assert audit_counts(v)["bar0"] == (1, 0, 4, 0)
        assert AUDIT.refcnt == attached
        assert CORE.refcnt == core_attached
        assert v.state == "bound"
    assert AUDIT.unload() == 0
    assert CORE.refcnt == core_base


def test_failed_open_drops_its_reference(edu_vfm):
    # edu has BAR0 only: naming BAR2 fails the open.
    with Vfm(edu_vfm, mediator="audit", args="regions=bar2") as v:
        attached = AUDIT.refcnt
        with pytest.raises(VfioError) as e:
            Device(edu_vfm)
        assert e.value.errno == errno.ENXIO
        assert v.state == "bound"
        assert v.error != ""
        assert AUDIT.refcnt == attached


def test_attach_while_open_is_staged(edu_vfm):
    with Vfm(edu_vfm) as v:
        with Device(edu_vfm) as dev:
            v.mediator = "audit"
            assert v.mediator == "audit"
            assert v.pending
            # The running table is still the pass-through one.
            assert dev.region_info(BAR0).mmappable_ranges() != []
            assert dev.read32(BAR0, 0) == EDU_ID_REG
        with Device(edu_vfm) as dev:
            assert not v.pending
            assert dev.read32(BAR0, 0) == EDU_ID_REG
            assert audit_counts(v)["bar0"] == (1, 0, 4, 0)


# -- audit --------------------------------------------------------------------


def _snapshot(dev):
    """What the tests compare between vfio-pci and vfmediate+audit."""
    dev.enable_bus_master()
    return (dev.config_bytes(0, 256),
            [dev.read32(BAR0, off) for off in range(0, 0x40, 4)])


@pytest.mark.parametrize("fn", ["edu", "nvme_vf"])
def test_audit_reads_match_vfio_pci(request, bind, fn):
    bdf = request.getfixturevalue(fn)
    bind(bdf, "vfio-pci")
    with Device(bdf) as dev:
        ref = _snapshot(dev)
    bind(bdf, "vfmediate")
    with Vfm(bdf, mediator="audit") as v:
        with Device(bdf) as dev:
            got = _snapshot(dev)
            counts = audit_counts(v)
    assert got[0] == ref[0], "config space differs from vfio-pci's"
    assert got[1] == ref[1], "BAR0 differs from vfio-pci's"
    # enable_bus_master: two config reads of 2 bytes and a write of 2.
    assert counts["config"] == (2, 1, 256 + 2, 2)
    assert counts["bar0"] == (16, 0, 64, 0)


def test_audit_counts_exactly(edu_vfm):
    with Vfm(edu_vfm, mediator="audit") as v:
        with Device(edu_vfm) as dev:
            # Default arguments: the BARs edu has, and config space.
            assert audit_counts(v) == {"bar0": (0, 0, 0, 0),
                                       "config": (0, 0, 0, 0)}
            cmd = dev.config_read16(0x04)                   # cfg r 1, 2 B
            dev.config_write16(0x04, cmd | 0x2)             # cfg w 1, 2 B
            for _ in range(3):
                assert dev.read32(BAR0, 0x00) == EDU_ID_REG  # bar r 3, 12 B
            dev.write32(BAR0, EDU_LIVENESS, 0x12345678)     # bar w 1, 4 B
            assert dev.read32(BAR0, EDU_LIVENESS) == 0xEDCBA987  # r 4, 16 B
            assert len(dev.pread(BAR0, 0x00, 2)) == 2        # r 5, 18 B
            assert len(dev.config_bytes(0, 64)) == 64        # cfg r 2, 66 B
            # Failed accesses are not counted.
            assert efault(dev, BAR0, 0, 4) == errno.EFAULT
            assert efault(dev, BAR0, EDU_LIVENESS, 4, write=True) == \
                errno.EFAULT
            assert efault(dev, CONFIG, 0, 4) == errno.EFAULT
            assert audit_counts(v) == {"bar0": (5, 1, 18, 4),
                                       "config": (2, 1, 66, 2)}
            # Trapped whole: BAR0 is not mmap-able.
            assert dev.region_info(BAR0).mmappable_ranges() == []
            with pytest.raises(VfioError):
                dev.mmap(BAR0, 0, PAGE)


def test_audit_counts_concurrent_accesses(edu_vfm):
    threads, each = 4, 250
    with Vfm(edu_vfm, mediator="audit", args="regions=bar0") as v:
        with Device(edu_vfm) as dev:
            dev.enable_bus_master()
            pos = dev.region_info(BAR0).offset
            want = EDU_ID_REG.to_bytes(4, "little")
            bad = []
            # vfio-pci-core maps a BAR at its first access with no lock:
            # two first accesses at once make one fail with EBUSY (its
            # race, not ours). Make the first access alone.
            assert os.pread(dev.fd, 4, pos) == want

            def reader():
                for _ in range(each):
                    try:
                        data = os.pread(dev.fd, 4, pos)
                    except OSError as e:
                        data = e
                    if data != want:
                        bad.append(data)

            pool = [threading.Thread(target=reader) for _ in range(threads)]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
            assert bad == []
            n = threads * each + 1
            assert audit_counts(v) == {"bar0": (n, 0, 4 * n, 0)}


def test_audit_selected_regions(edu_vfm):
    with Vfm(edu_vfm, mediator="audit", args="regions=config") as v:
        with Device(edu_vfm) as dev:
            dev.enable_bus_master()
            bar0 = dev.region_info(BAR0)
            assert bar0.mmappable and bar0.sparse_areas is None
            mm = dev.mmap(BAR0, 0, PAGE)
            try:
                assert mmio_read32(mm, 0) == EDU_ID_REG
            finally:
                mm.close()
            assert dev.read32(BAR0, 0) == EDU_ID_REG
            assert audit_counts(v) == {"config": (1, 1, 2, 2)}


# -- regshadow ----------------------------------------------------------------


def test_regshadow_nvme_registers(nvme_vfm):
    with Vfm(nvme_vfm, mediator="regshadow",
             args="bar=0,range=0x0-0xfff") as v:
        with Device(nvme_vfm) as dev:
            bar0 = dev.region_info(BAR0)
            assert bar0.mmappable
            assert bar0.sparse_areas is not None
            assert merged(bar0.sparse_areas) == [(PAGE, bar0.size - PAGE)]
            with pytest.raises(VfioError):
                dev.mmap(BAR0, 0, PAGE)
            with pytest.raises(VfioError):
                dev.mmap(BAR0, 0, 2 * PAGE)
            dev.mmap(BAR0, PAGE, PAGE).close()

            dev.enable_bus_master()
            assert dev.read32(BAR0, NVME_VS) == NVME_VS_1_4
            cc, aqa = dev.read32(BAR0, NVME_CC), dev.read32(BAR0, NVME_AQA)
            assert cc & 1 == 0, "the VF's controller is enabled"
            assert v.mediator_state == "bar=0 range=0x0-0xfff"
            try:
                dev.write32(BAR0, NVME_AQA, 0x001F001F)
                dev.write32(BAR0, NVME_CC, 0x00460000)
                assert dev.read32(BAR0, NVME_AQA) == 0x001F001F
                assert dev.read32(BAR0, NVME_CC) == 0x00460000
                assert v.mediator_state.splitlines() == [
                    "bar=0 range=0x0-0xfff",
                    "0x14=0x00460000",
                    "0x24=0x001f001f",
                ]
            finally:
                dev.write32(BAR0, NVME_CC, cc)
                dev.write32(BAR0, NVME_AQA, aqa)
            assert v.mediator_state.splitlines()[1:] == [
                f"0x14={cc:#010x}", f"0x24={aqa:#010x}"]


def test_regshadow_byte_granular(edu_vfm):
    # edu's DMA registers (0x80: source, 0x88: destination) hold what is
    # written while no transfer runs.
    with Vfm(edu_vfm, mediator="regshadow", args="range=0x80+0x20,bar=0") as v:
        with Device(edu_vfm) as dev:
            dev.enable_bus_master()
            dev.write32(BAR0, 0x80, 0x11223344)
            assert dev.read32(BAR0, 0x80) == 0x11223344
            dev.write8(BAR0, 0x89, 0xAB)
            dev.write16(BAR0, 0x8E, 0xBEEF)
            assert v.mediator_state.splitlines() == [
                "bar=0 range=0x80-0x9f",
                "0x80=0x11223344",
                "0x88=0xxxxxabxx",
                "0x8c=0xbeefxxxx",
            ]
            dev.write32(BAR0, 0x80, 0)


def test_regshadow_admin_trap_outside_window(edu_vfm):
    """An admin's trap rule routes bytes outside the mediator's own window
    to it: they reach the device, unshadowed, and nothing complains."""
    with Vfm(edu_vfm, mediator="regshadow", args="bar=0,range=0x80+0x20") as v:
        v.add_rule("bar0", "live", "0x4+4", "trap")
        v.add_rule("bar0", "edge", "0x7c-0x83", "trap")
        with Device(edu_vfm) as dev:
            dev.enable_bus_master()
            dev.write32(BAR0, 0x04, 0x12345678)
            assert dev.read32(BAR0, 0x04) == 0x12345678 ^ 0xFFFFFFFF
            # Half in the window: only that half is shadowed.
            dev.pwrite(BAR0, 0x7C, bytes([1, 2, 3, 4, 5, 6, 7, 8]))
            assert v.mediator_state.splitlines() == [
                "bar=0 range=0x80-0x9f",
                "0x80=0x08070605",
            ]
            dev.write32(BAR0, 0x80, 0)


def test_regshadow_state_truncated_to_a_page(edu_vfm):
    # Offsets edu ignores: nothing happens on the device.
    with Vfm(edu_vfm, mediator="regshadow",
             args="bar=0,range=0x100-0xfff") as v:
        with Device(edu_vfm) as dev:
            dev.enable_bus_master()
            for i in range(300):
                dev.write32(BAR0, 0x100 + 4 * i, i)
            state = v.mediator_state
    assert len(state) + 1 <= PAGE
    lines = state.splitlines()
    assert lines[0] == "bar=0 range=0x100-0xfff"
    assert lines[-1] == "truncated"
    body = lines[1:-1]
    assert len(body) > 100
    for i, line in enumerate(body):
        assert line == f"{0x100 + 4 * i:#x}={i:#010x}"


@pytest.mark.parametrize("med", ["regshadow", "nop"])
def test_window_args_validated(edu, med):
    with Vfm(edu, mediator=med) as v:
        good = ["bar=0,range=0x0-0xfff", "range=0+4096,bar=0",
                "bar=5,range=16-31", "bar=0,range=0x0+0x10000"]
        bad = {
            "bar=0": errno.EINVAL,
            "range=0-1": errno.EINVAL,
            "bar=0,range=0-1,bar=1": errno.EINVAL,
            "bar=0,range=0x10-0x1": errno.ERANGE,
            "bar=0,range=0+0": errno.ERANGE,
            "bar=0,range=0x-0x1": errno.EINVAL,
            "bar=-1,range=0-1": errno.EINVAL,
            "bar=0,range=-1-1": errno.EINVAL,
            "bar=x,range=0-1": errno.EINVAL,
            "bar=0,range=0-1,foo=1": errno.EINVAL,
            "bar=0, range=0-1": errno.EINVAL,
            "bar=0,range=0-ffff": errno.EINVAL,
            "bar=6,range=0-1": errno.ERANGE,
            "bar=0,range=0-0xffffffffffffffff": errno.ERANGE,
            "bar=0,range=0xffffffffffffffff+2": errno.ERANGE,
            "bar=0,range=0-99999999999999999999999": errno.ERANGE,
        }
        if med == "regshadow":
            bad["bar=0,range=0+0x10001"] = errno.ERANGE
            bad[""] = errno.EINVAL
        else:
            good.append("")
        for args in good:
            v.mediator_args = args
            assert v.mediator_args == args
        v.mediator_args = good[0]
        for args, err in bad.items():
            assert refused(setattr, v, "mediator_args", args) == err, args
            assert v.mediator_args == good[0]


@pytest.mark.parametrize("med", ["regshadow", "nop"])
@pytest.mark.parametrize("window", ["bar=0,range=0xfff00+0x200",
                                    "bar=1,range=0+4"])
def test_window_outside_bar_fails_open(edu_vfm, med, window):
    assert pci.bar_sizes(edu_vfm)[:2] == [0x100000, 0]
    with Vfm(edu_vfm, mediator=med, args=window) as v:
        with pytest.raises(VfioError) as e:
            Device(edu_vfm)
        assert e.value.errno == errno.ERANGE
        assert v.state == "bound"


# -- nop ----------------------------------------------------------------------


def test_nop_without_window_keeps_parity(edu_vfm):
    with Vfm(edu_vfm, mediator="nop"):
        with Device(edu_vfm) as dev:
            bar0 = dev.region_info(BAR0)
            assert bar0.mmappable and bar0.sparse_areas is None
            dev.enable_bus_master()
            assert dev.read32(BAR0, 0) == EDU_ID_REG


def test_nop_window(edu_vfm):
    with Vfm(edu_vfm, mediator="nop", args="bar=0,range=0x1000-0x1fff"):
        with Device(edu_vfm) as dev:
            bar0 = dev.region_info(BAR0)
            assert merged(bar0.mmappable_ranges()) == [
                (0, PAGE), (2 * PAGE, bar0.size - 2 * PAGE)]
            with pytest.raises(VfioError):
                dev.mmap(BAR0, PAGE, PAGE)
            dev.enable_bus_master()
            mm = dev.mmap(BAR0, 0, PAGE)
            try:
                assert mmio_read32(mm, 0) == EDU_ID_REG
            finally:
                mm.close()
            # edu ignores this offset and reads all ones there.
            dev.write32(BAR0, 0x1000, 1)
            assert dev.read32(BAR0, 0x1000) == 0xFFFFFFFF


# -- the man page's example session ------------------------------------------


def _man_session():
    """The shell session of vfmediate-mediator(9)'s EXAMPLE section."""
    with open(MAN9) as f:
        lines = f.read().splitlines()
    begin = lines.index('.\\" BEGIN session')
    end = lines.index('.\\" END session')
    unescape = {"e": "\\", "-": "-", "&": ""}
    return [re.sub(r"\\(e|-|&)", lambda m: unescape[m[1]], ln)
            for ln in lines[begin + 1:end]]


def test_man_page_session(edu_vfm):
    """Run the session as printed, with edu for the device and, at the
    '.\\" VFIO user' comment, the accesses the page describes."""
    cwd, dev, cmd, out = "/", None, None, []

    def finish():
        if cmd is None:
            return
        if cmd.startswith("cd "):
            assert out == []
            return
        p = subprocess.run(cmd, shell=True, cwd=cwd, capture_output=True,
                           text=True)
        assert p.returncode == 0, f"{cmd}: {p.stderr}"
        assert p.stdout.splitlines() == out, cmd

    try:
        for line in _man_session() + ["# true"]:
            if line == '.\\" VFIO user':
                finish()
                cmd, out = None, []
                dev = Device(edu_vfm)
                dev.enable_bus_master()
                for _ in range(3):
                    dev.read32(BAR0, 0x00)
                dev.write32(BAR0, EDU_LIVENESS, 1)
            elif line.startswith("# "):
                finish()
                cmd, out = line[2:].replace(MAN_BDF, edu_vfm), []
                if cmd.startswith("cd "):
                    cwd = os.path.join(cwd, cmd[3:])
                if cmd.startswith("rmdir") and dev is not None:
                    dev.close()
                    dev = None
            else:
                out.append(line.replace(MAN_BDF, edu_vfm))
        assert dev is None and not os.path.exists(Vfm(edu_vfm).dir)
    finally:
        if dev is not None:
            dev.close()
        Vfm(edu_vfm).remove()
