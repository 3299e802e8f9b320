# SPDX-License-Identifier: GPL-2.0
"""The policy engine seen by a VFIO user: what each rule does to the
bytes and errnos of pread/pwrite on BAR0 and config space, overlaps and
ties, accesses that straddle rule boundaries, hit counters, staged versus
running configuration, fail-closed opens and the per-region rule limit.

Sparse mmap and the other ways around a rule are in test_policy_bypass.py,
the configuration of a VF that does not exist yet in
test_policy_sriov.py.

The devices: edu (QEMU hw/misc/edu.c) where exact register values matter,
it has no reset so a register keeps its value from one open to the next:
0x00 ID 0x010000ed, 0x04 liveness (write X, read ~X), 4-byte accesses
only below 0x80, 4 or 8 from 0x80 (DMA source address, 0x80, keeps a
32-bit write). The NVMe VF: VS at 0x08 = 0x00010400, AQA at 0x24 holds
what is written; its FLR at every open clears AQA. Config space: the
interrupt line (0x3c) and edu's MSI address and data (0x44-0x4d) are
virtualized by vfio-pci-core and read back exactly what was written,
byte by byte, within one open.
"""
import errno
import os
from dataclasses import dataclass
from typing import Callable

import pytest

import pci
import vfm
from policy import (EDU_DMA_SRC, EDU_FACT, EDU_ID, EDU_ID_VALUE, EDU_LIVE,
                    EDU_MSI_CAP, EDU_STATUS, NVME_AQA, NVME_VS, NVME_VS_1_4,
                    attempt)
from vfio import BAR0, CONFIG, Device, VfioError
from vfm import Vfm

VFM = "vfmediate"
MAX_RULES = 1024


pytestmark = pytest.mark.usefixtures("no_config_left")


@pytest.fixture
def nvme_vfm(nvme_vf, bind):
    return bind(nvme_vf, VFM)


def open_bar(bdf):
    """The device opened, memory decoding and bus mastering on."""
    dev = Device(bdf)
    try:
        dev.enable_bus_master()
    except BaseException:
        dev.close()
        raise
    return dev


def edu_live(x):
    return ~x & 0xFFFFFFFF


# -- every action, every access direction ------------------------------------

@dataclass
class Target:
    """A rule range on one region of one device, a read-only probe
    register inside it with a known value, and a scratch register inside
    it that reads back readback(X) after X is written."""
    fixture: str
    region: int
    region_name: str
    rng: str
    probe: int
    probe_size: int
    scratch: int
    scratch_size: int
    values: tuple           # (value set before the ruled open, value written)
    readback: Callable
    keeps_value: bool       # the register survives a close and an open


TARGETS = {
    "edu-bar0": Target("edu", BAR0, "bar0", "0x0-0x7", EDU_ID, 4, EDU_LIVE,
                       4, (0x12345678, 0x0BADF00D), edu_live, True),
    "nvme-bar0": Target("nvme_vf", BAR0, "bar0", "0x8-0x27", NVME_VS, 4,
                        NVME_AQA, 4, (0x001F001F, 0x000F0007), lambda x: x,
                        False),
    "edu-config": Target("edu", CONFIG, "config", "0x0-0x3f", 0x00, 4, 0x3C,
                         1, (0x5A, 0xA5), lambda x: x, False),
    "nvme-config": Target("nvme_vf", CONFIG, "config", "0x0-0x3f", 0x00, 4,
                          0x3C, 1, (0x5A, 0xA5), lambda x: x, False),
}
ACTIONS = ["pass", "pass+audit", "ro", "deny", "ignore", "trap"]


def effective(action, access, direction):
    """What a rule does to an access of one direction ('r' or 'w'):
    pass, deny, ro (writes only), ignore or trap."""
    if direction not in access:
        return "pass"
    if action == "pass+audit" or (action == "ro" and direction == "r"):
        return "pass"
    return action


def read_outcome(action, value):
    return {"deny": "EACCES", "ignore": 0}.get(action, value)


def write_outcome(action):
    return {"ro": "EPERM", "deny": "EACCES"}.get(action, "ok")


def write_lands(action):
    return action in ("pass", "trap")


def probe_value(t, bdf):
    if t.region == BAR0:
        return EDU_ID_VALUE if t.fixture == "edu" else NVME_VS_1_4
    ven, dev = pci.vendor_device(bdf)
    return dev << 16 | ven


@pytest.mark.parametrize("access", ["rw", "r", "w"])
@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("where", sorted(TARGETS))
def test_action(request, bind, where, action, access):
    """One rule over a probe and a scratch register: the probe's read,
    the scratch register's write and its value before and after, exact;
    the rule's hit counter; on edu, the register's real value afterwards
    with the rule gone."""
    t = TARGETS[where]
    bdf = bind(request.getfixturevalue(t.fixture), VFM)
    x0, x = t.values
    if t.keeps_value:
        with open_bar(bdf) as dev:
            dev.write(t.region, t.scratch, t.scratch_size, x0)
    rd, wr = effective(action, access, "r"), effective(action, access, "w")
    with Vfm(bdf, mediator="nop" if action == "trap" else None) as v:
        rule = v.add_rule(t.region_name, "r1", t.rng, action.split("+")[0],
                          access=access, audit=int(action == "pass+audit"))
        with Device(bdf) as dev:
            if t.region == BAR0:
                dev.enable_bus_master()
            rw = (lambda off, size: dev.read(t.region, off, size))
            before = attempt(rw, t.scratch, t.scratch_size)
            assert attempt(rw, t.probe, t.probe_size) == \
                read_outcome(rd, probe_value(t, bdf))
            assert attempt(dev.write, t.region, t.scratch, t.scratch_size,
                           x) == write_outcome(wr)
            after = attempt(rw, t.scratch, t.scratch_size)
        if rd in ("pass", "trap"):
            if t.keeps_value:
                assert before == t.readback(x0)
            assert after == (t.readback(x) if write_lands(wr) else before)
        else:
            assert before == after == read_outcome(rd, None)
        # Three reads and a write met the rule; plain pass counts nothing.
        counted = action != "pass"
        assert rule.hits == counted * (3 * ("r" in access) +
                                       ("w" in access))
        if t.keeps_value:
            v.remove_rule(t.region_name, "r1")
            with open_bar(bdf) as dev:
                assert dev.read(t.region, t.scratch, t.scratch_size) == \
                    t.readback(x if write_lands(wr) else x0)


# -- config space: rules on top of vfio-pci-core's virtualization -------------

def test_config_deny_vendor_id(edu_vfm):
    ven, did = pci.vendor_device(edu_vfm)
    with Vfm(edu_vfm) as v:
        r = v.add_rule("config", "vendor", "0x0-0x1", "deny")
        with Device(edu_vfm) as dev:
            assert attempt(dev.config_read16, 0x00) == "EACCES"
            assert attempt(dev.config_read8, 0x01) == "EACCES"
            assert attempt(dev.config_read32, 0x00) == "EACCES"
            assert attempt(dev.pread, CONFIG, 0x01, 2) == "EACCES"
            assert attempt(dev.pread, CONFIG, 0x00, 256) == "EACCES"
            assert attempt(dev.config_write16, 0x00, 0xFFFF) == "EACCES"
            assert dev.config_read16(0x02) == did
            assert dev.pread(CONFIG, 0x02, 2) == did.to_bytes(2, "little")
            assert len(dev.pread(CONFIG, 0x02, 254)) == 254
        assert r.hits == 6
    with Device(edu_vfm) as dev:
        assert dev.config_read16(0x00) == ven


@pytest.mark.parametrize("fn", ["edu", "nvme_vf"])
def test_config_ro_command_register(request, bind, fn):
    bdf = bind(request.getfixturevalue(fn), VFM)
    with Vfm(bdf) as v:
        r = v.add_rule("config", "command", "0x4-0x5", "ro")
        with Device(bdf) as dev:
            cmd = dev.config_read16(0x04)
            assert attempt(dev.config_write16, 0x04, cmd ^ 0x6) == "EPERM"
            assert attempt(dev.config_write8, 0x05, 0x04) == "EPERM"
            # A write that only partly covers the register: refused whole,
            # the status register next to it included.
            assert attempt(dev.config_write32, 0x04, cmd ^ 0x6) == "EPERM"
            assert attempt(dev.pwrite, CONFIG, 0x03, b"\0\0") == "EPERM"
            assert dev.config_read16(0x04) == cmd
            # Next to it: untouched.
            assert dev.config_write8(0x3C, 0x42) is None
            assert dev.config_read8(0x3C) == 0x42
        assert r.hits == 6      # two reads, four refused writes


@pytest.mark.parametrize("fn,cap_id,cap_len", [("edu", 0x05, 14),
                                               ("nvme_vf", 0x11, 12)])
def test_config_ignore_capability(request, bind, fn, cap_id, cap_len):
    bdf = bind(request.getfixturevalue(fn), VFM)
    with Device(bdf) as dev:
        cap = dev.find_capability(cap_id)
        assert cap is not None
        below = dev.pread(CONFIG, cap - 4, 4)
    with Vfm(bdf) as v:
        r = v.add_rule("config", "hide-cap", f"{cap:#x}+{cap_len}", "ignore")
        with Device(bdf) as dev:
            assert dev.config_read8(0x34) == 0x40        # the list is not ruled
            assert dev.config_bytes(cap, cap_len) == bytes(cap_len)
            assert dev.find_capability(cap_id) is None
            assert dev.pwrite(CONFIG, cap, b"\xff" * cap_len) == cap_len
            assert dev.config_bytes(cap, cap_len) == bytes(cap_len)
            # an access across the rule's start reads zeros only past it
            assert dev.pread(CONFIG, cap - 4, 8) == below + bytes(4)
        # two reads of the capability, the list walk's two, a write, and
        # the access across the start
        assert r.hits == 6
    with Device(bdf) as dev:
        assert dev.find_capability(cap_id) == cap


# -- accesses that straddle rule boundaries -----------------------------------

MSI_ADDR = EDU_MSI_CAP + 4      # 0x44..0x4d: fully virtualized, writable


def _fill_msi(dev, skip=()):
    """Give 0x44..0x49 the bytes 0x10..0x15 without touching @skip."""
    for i in range(6):
        if MSI_ADDR + i not in skip:
            dev.config_write8(MSI_ADDR + i, 0x10 + i)
    return dev.pread(CONFIG, MSI_ADDR, 6)


def test_config_odd_write_into_ro_byte_refused_whole(edu_vfm):
    with Vfm(edu_vfm) as v:
        r = v.add_rule("config", "ro46", "0x46-0x46", "ro")
        with Device(edu_vfm) as dev:
            snap = _fill_msi(dev, skip={0x46})
            assert snap[0:2] == b"\x10\x11" and snap[3:] == b"\x13\x14\x15"
            # 0x45..0x48 and 0x45..0x46 cover the ro byte: no byte changes
            assert attempt(dev.pwrite, CONFIG, 0x45, b"\xa1\xb2\xc3\xd4") \
                == "EPERM"
            assert attempt(dev.pwrite, CONFIG, 0x45, b"\xa1\xb2") == "EPERM"
            assert dev.pread(CONFIG, MSI_ADDR, 6) == snap
            # beside it, the same bytes go through
            assert dev.pwrite(CONFIG, 0x47, b"\xc3\xd4") == 2
            assert dev.pread(CONFIG, MSI_ADDR, 6) == \
                snap[:3] + b"\xc3\xd4" + snap[5:]
        # three reads that covered 0x46 (reads of ro count too) and the
        # two refused writes
        assert r.hits == 5


def test_config_odd_write_split(edu_vfm):
    with Vfm(edu_vfm) as v:
        r = v.add_rule("config", "drop46", "0x46-0x46", "ignore", access="w")
        with Device(edu_vfm) as dev:
            snap = _fill_msi(dev, skip={0x46})
            assert dev.pwrite(CONFIG, 0x45, b"\xa1\xb2\xc3\xd4") == 4
            assert dev.pread(CONFIG, MSI_ADDR, 6) == \
                bytes([snap[0], 0xA1, snap[2], 0xC3, 0xD4, snap[5]])
        assert r.hits == 1


def test_config_odd_read_split(edu_vfm):
    with Vfm(edu_vfm) as v:
        zero = v.add_rule("config", "zero46", "0x46-0x46", "ignore",
                          access="r")
        deny = v.add_rule("config", "deny49", "0x49-0x49", "deny",
                          access="r")
        with Device(edu_vfm) as dev:
            for i in range(6):
                dev.config_write8(MSI_ADDR + i, 0x10 + i)
            assert dev.pread(CONFIG, 0x45, 4) == b"\x11\x00\x13\x14"
            assert dev.pread(CONFIG, 0x43, 6) == \
                bytes([dev.config_read8(0x43)]) + b"\x10\x11\x00\x13\x14"
            assert attempt(dev.pread, CONFIG, 0x45, 5) == "EACCES"
            assert attempt(dev.pread, CONFIG, 0x46, 4) == "EACCES"
            assert dev.pread(CONFIG, 0x47, 2) == b"\x13\x14"
        assert zero.hits == 4 and deny.hits == 2


def test_bar_8byte_access_split_at_rule_boundary(edu_vfm):
    """edu's DMA source register (0x80) keeps a 4-byte write and, on 6.12,
    whose vfio-pci-core makes 8-byte accesses, a whole 8-byte one; 6.1
    splits 8 bytes into two dwords and edu reads 0x84 as all ones. With
    a rule on 0x84-0x87 the access is split there on both kernels: the
    low half reaches the device, the high half is the rule's."""
    val = 0x1122334455667788
    with Vfm(edu_vfm) as v:
        with open_bar(edu_vfm) as dev:
            dev.write64(BAR0, EDU_DMA_SRC, val)
            assert dev.read64(BAR0, EDU_DMA_SRC) != val & 0xFFFFFFFF
            dev.write64(BAR0, EDU_DMA_SRC, 0)
        r = v.add_rule("bar0", "hi", "0x84-0x87", "ignore")
        with open_bar(edu_vfm) as dev:
            assert dev.pwrite(BAR0, EDU_DMA_SRC, val.to_bytes(8, "little")) \
                == 8
            assert dev.read64(BAR0, EDU_DMA_SRC) == val & 0xFFFFFFFF
            assert dev.read32(BAR0, EDU_DMA_SRC) == val & 0xFFFFFFFF
            dev.write32(BAR0, EDU_DMA_SRC, 0)
        assert r.hits == 2


def test_bar_straddling_write_into_ro_refused_whole(edu_vfm):
    with Vfm(edu_vfm) as v:
        r = v.add_rule("bar0", "hi-ro", "0x84-0x87", "ro")
        one = v.add_rule("bar0", "one-byte", "0x8f-0x8f", "ro", access="w")
        with open_bar(edu_vfm) as dev:
            dev.write32(BAR0, EDU_DMA_SRC, 0xCAFEF00D)
            assert attempt(dev.write64, BAR0, EDU_DMA_SRC,
                           0x1122334455667788) == "EPERM"
            assert dev.read32(BAR0, EDU_DMA_SRC) == 0xCAFEF00D
            # 0x88 is the DMA destination: an 8-byte write meeting one ro
            # byte at 0x8f changes nothing
            dev.write32(BAR0, 0x88, 0x0000BEEF)
            assert attempt(dev.write64, BAR0, 0x88, 0x12345678) == "EPERM"
            assert dev.read32(BAR0, 0x88) == 0x0000BEEF
            dev.write32(BAR0, EDU_DMA_SRC, 0)
        assert r.hits == 1 and one.hits == 1


# -- overlapping rules ---------------------------------------------------------

def test_narrow_pass_inside_broad_deny(edu_vfm):
    with Vfm(edu_vfm) as v:
        broad = v.add_rule("bar0", "broad", "0x0-0xff", "deny")
        narrow = v.add_rule("bar0", "narrow", "0x4-0x7", "pass")
        with open_bar(edu_vfm) as dev:
            assert attempt(dev.read32, BAR0, EDU_ID) == "EACCES"
            dev.write32(BAR0, EDU_LIVE, 0x0F0F0F0F)
            assert dev.read32(BAR0, EDU_LIVE) == 0xF0F0F0F0
            assert attempt(dev.read32, BAR0, EDU_FACT) == "EACCES"
            assert attempt(dev.write32, BAR0, EDU_FACT, 5) == "EACCES"
            assert dev.read32(BAR0, 0x100) == 0xFFFFFFFF    # past the rule
        assert (broad.hits, narrow.hits) == (3, 0)


def test_narrow_deny_inside_broad_ro(edu_vfm):
    with Vfm(edu_vfm) as v:
        broad = v.add_rule("bar0", "broad", "0x0-0xfff", "ro")
        narrow = v.add_rule("bar0", "narrow", "0x4-0x7", "deny")
        with open_bar(edu_vfm) as dev:
            assert dev.read32(BAR0, EDU_ID) == EDU_ID_VALUE
            assert attempt(dev.write32, BAR0, EDU_ID, 0) == "EPERM"
            assert attempt(dev.read32, BAR0, EDU_LIVE) == "EACCES"
            assert attempt(dev.write32, BAR0, EDU_LIVE, 0) == "EACCES"
            assert dev.read32(BAR0, EDU_STATUS) & ~0x81 == 0
        assert (broad.hits, narrow.hits) == (3, 2)


def test_partial_overlap_shorter_wins(edu_vfm):
    with Vfm(edu_vfm) as v:
        a = v.add_rule("bar0", "a16", "0x0-0xf", "deny")
        b = v.add_rule("bar0", "b32", "0x8-0x27", "ro")
        with open_bar(edu_vfm) as dev:
            assert attempt(dev.read32, BAR0, 0x08) == "EACCES"   # a wins
            assert attempt(dev.write32, BAR0, 0x0C, 1) == "EACCES"
            assert dev.read32(BAR0, 0x10) == 0xFFFFFFFF         # b: passes
            assert attempt(dev.write32, BAR0, EDU_STATUS, 0) == "EPERM"
        assert (a.hits, b.hits) == (2, 2)


@pytest.mark.parametrize("rules,winner", [
    ([("b-ro", "ro"), ("a-deny", "deny")], "deny"),
    ([("b-deny", "deny"), ("a-ro", "ro")], "ro"),
    ([("block", "deny"), ("allow", "pass")], "pass"),
    ([("a", "pass"), ("Z", "deny")], "deny"),          # strcmp: 'Z' < 'a'
], ids=["a-deny-over-b-ro", "a-ro-over-b-deny", "allow-over-block",
        "Z-over-a"])
def test_tie_broken_by_name(edu_vfm, rules, winner):
    """Equal ranges: the rule whose name sorts first (bytewise) wins,
    whatever the order the rules were made in."""
    with Vfm(edu_vfm) as v:
        for name, action in rules:
            v.add_rule("bar0", name, "0x4-0x7", action)
        with open_bar(edu_vfm) as dev:
            rd = attempt(dev.read32, BAR0, EDU_LIVE)
            wr = attempt(dev.write32, BAR0, EDU_LIVE, 0x11111111)
            after = attempt(dev.read32, BAR0, EDU_LIVE)
        if winner == "deny":
            assert (rd, wr, after) == ("EACCES", "EACCES", "EACCES")
        elif winner == "ro":
            assert wr == "EPERM" and after == rd and isinstance(rd, int)
        else:
            assert (wr, after) == ("ok", 0xEEEEEEEE)


# -- hit counters ----------------------------------------------------------------

def test_hits_exact(edu_vfm):
    with Vfm(edu_vfm) as v:
        pass0 = v.add_rule("bar0", "pass0", "0x0-0x3", "pass")
        ro4 = v.add_rule("bar0", "ro4", "0x4-0x7", "ro")
        aud8 = v.add_rule("bar0", "aud8", "0x8-0xb", "pass", audit=1)
        denyw = v.add_rule("bar0", "denyw20", "0x20-0x23", "deny",
                           access="w")
        cfg = v.add_rule("config", "cfg-aud", "0x0-0xff", "pass", audit=1)
        assert [r.hits for r in (pass0, ro4, aud8, denyw, cfg)] == [0] * 5
        with open_bar(edu_vfm) as dev:              # cfg: 1 read, 1 write
            for _ in range(3):
                assert dev.read32(BAR0, EDU_ID) == EDU_ID_VALUE
            for _ in range(2):
                dev.read32(BAR0, EDU_LIVE)
            assert attempt(dev.write32, BAR0, EDU_LIVE, 1) == "EPERM"
            dev.read32(BAR0, EDU_FACT)
            dev.read32(BAR0, EDU_STATUS)
            dev.read32(BAR0, EDU_STATUS)
            assert attempt(dev.write32, BAR0, EDU_STATUS, 0) == "EACCES"
            # one access over four rules' ranges: one hit for each that counts
            data = dev.pread(BAR0, 0x00, 16)
            assert data[:4] == EDU_ID_VALUE.to_bytes(4, "little")
            assert len(dev.config_bytes(0, 256)) == 256
            assert [r.hits for r in (pass0, ro4, aud8, denyw, cfg)] == \
                [0, 4, 2, 1, 3]
        assert [r.hits for r in (pass0, ro4, aud8, denyw, cfg)] == \
            [0, 4, 2, 1, 3]
        # The counter belongs to the rule: it goes on at the next open ...
        with open_bar(edu_vfm) as dev:
            dev.read32(BAR0, EDU_LIVE)
        assert (ro4.hits, cfg.hits) == (5, 5)
        # ... and a rule made again under the same name starts at zero.
        v.remove_rule("bar0", "ro4")
        ro4 = v.add_rule("bar0", "ro4", "0x4-0x7", "ro")
        assert ro4.hits == 0


def test_hits_one_per_access_per_rule(edu_vfm):
    with Vfm(edu_vfm) as v:
        broad = v.add_rule("bar0", "broad", "0x0-0xff", "pass", audit=1)
        narrow = v.add_rule("bar0", "narrow", "0x4-0x7", "ignore")
        with open_bar(edu_vfm) as dev:
            # 0x00 ID, 0x04 ignored (zeros), 0x08 factorial (0 after reset)
            data = dev.pread(BAR0, 0x00, 12)
        assert data[:8] == EDU_ID_VALUE.to_bytes(4, "little") + bytes(4)
        assert narrow.hits == 1
        assert broad.hits == 1


# -- staged and running configuration -------------------------------------------

def test_staged_changes_apply_at_next_open(edu_vfm):
    with Vfm(edu_vfm) as v:
        assert (v.state, v.generation, v.pending) == ("bound", 0, False)
        deny = v.add_rule("bar0", "deny-id", "0x0-0x3", "deny")
        with open_bar(edu_vfm) as dev:
            gen = v.generation
            assert gen >= 1
            assert (v.state, v.pending) == ("open", False)
            # staged: an action changed, a rule added, mmap off
            deny.write("action", "pass")
            v.add_rule("bar0", "ro-live", "0x4-0x7", "ro")
            v.set_region_mmap("bar0", "off")
            assert v.pending and v.generation == gen
            assert deny.read("action") == "pass"
            # the running table is the old one
            assert attempt(dev.read32, BAR0, EDU_ID) == "EACCES"
            dev.write32(BAR0, EDU_LIVE, 0x55AA55AA)
            assert dev.read32(BAR0, EDU_LIVE) == 0xAA55AA55
            info = dev.region_info(BAR0)
            assert info.mmappable and info.sparse_areas == [
                (0x1000, 0xFF000)]
        assert (v.state, v.generation, v.pending) == ("bound", 0, False)
        with open_bar(edu_vfm) as dev:
            assert v.generation == gen + 1
            assert (v.state, v.pending) == ("open", False)
            assert dev.read32(BAR0, EDU_ID) == EDU_ID_VALUE
            assert attempt(dev.write32, BAR0, EDU_LIVE, 0) == "EPERM"
            assert dev.read32(BAR0, EDU_LIVE) == 0xAA55AA55
            info = dev.region_info(BAR0)
            assert not info.mmappable and info.sparse_areas is None


def test_rmdir_while_open_keeps_running_table(edu_vfm):
    v = Vfm(edu_vfm).create()
    try:
        v.add_rule("bar0", "deny-id", "0x0-0x3", "deny")
        with open_bar(edu_vfm) as dev:
            v.remove()
            assert not v.exists()
            assert attempt(dev.read32, BAR0, EDU_ID) == "EACCES"
        with open_bar(edu_vfm) as dev:
            assert dev.read32(BAR0, EDU_ID) == EDU_ID_VALUE
            assert dev.region_info(BAR0).sparse_areas is None
    finally:
        v.remove()


def test_pending_after_device_dir_made_again(edu_vfm):
    """The configuration the device was opened with is removed and a new
    one made while it is open: that is a staged change, whatever the
    number of attribute writes it took."""
    v = Vfm(edu_vfm).create()
    try:
        v.add_rule("bar0", "deny-id", "0x0-0x3", "deny")
        with open_bar(edu_vfm) as dev:
            v.remove()
            v = Vfm(edu_vfm).create()
            v.add_rule("bar0", "ro-id", "0x0-0x3", "ro")
            assert attempt(dev.read32, BAR0, EDU_ID) == "EACCES"
            assert v.pending
    finally:
        v.remove()


# -- fail closed ------------------------------------------------------------------

def test_open_fails_closed_on_range_beyond_region(edu, bind):
    assert pci.driver(edu) != VFM
    with Vfm(edu) as v:
        assert v.state == "absent"
        # no geometry yet: the range is taken as written
        big = v.add_rule("bar0", "big", "0x0-0x1fffff", "deny")
        bind(edu, VFM)
        assert v.state == "bound"
        with pytest.raises(VfioError) as e:
            Device(edu)
        assert e.value.errno == errno.ERANGE
        assert v.state == "bound"
        assert v.error == ("bar0/rules/big: range 0x0-0x1fffff outside "
                           "the region (0x100000 bytes)")
        # bound: the same value is now refused at once, and changes nothing
        assert attempt(big.write, "range", "0x0-0x1fffff") == "ERANGE"
        assert attempt(big.write, "range", "0xfff00+0x101") == "ERANGE"
        assert big.read("range") == "0x0-0x1fffff"
        big.write("range", "0xff000-0xfffff")
        with open_bar(edu) as dev:
            assert v.error == ""
            assert attempt(dev.read32, BAR0, 0xFF000) == "EACCES"
            assert dev.read32(BAR0, EDU_ID) == EDU_ID_VALUE


def test_open_fails_closed_on_unfinished_rule(edu_vfm):
    with Vfm(edu_vfm) as v:
        os.mkdir(v.region_path("bar0", "rules", "half"))
        try:
            with pytest.raises(VfioError) as e:
                Device(edu_vfm)
            assert e.value.errno == errno.EINVAL
            assert v.error == "bar0/rules/half: no range"
            assert v.state == "bound"
        finally:
            os.rmdir(v.region_path("bar0", "rules", "half"))
        with Device(edu_vfm):
            assert v.error == ""


@pytest.mark.parametrize("region", ["bar1", "rom", "vga"])
def test_open_fails_closed_on_region_the_device_lacks(edu, bind, region):
    """edu has one BAR, no expansion ROM and no VGA: a rule written for
    one of those before the device was bound fails its open."""
    with Vfm(edu) as v:
        v.add_rule(region, "r", "0x0-0x3", "deny")
        bind(edu, VFM)
        with pytest.raises(VfioError) as e:
            Device(edu)
        assert e.value.errno == errno.ERANGE
        assert v.error == (f"{region}/rules/r: range 0x0-0x3 outside the "
                           "region (0x0 bytes)")
        # bound: refused at the write
        os.mkdir(v.region_path(region, "rules", "r2"))
        try:
            assert attempt(vfm.write_attr,
                           v.region_path(region, "rules", "r2", "range"),
                           "0x0-0x3") == "ERANGE"
        finally:
            os.rmdir(v.region_path(region, "rules", "r2"))


def test_trap_needs_a_mediator(edu_vfm):
    with Vfm(edu_vfm) as v:
        with pytest.raises(OSError) as e:
            v.add_rule("bar0", "t", "0x4-0x7", "trap")
        assert e.value.errno == errno.ENOENT
        assert v.rule("bar0", "t").read("action") == "deny"
        v.mediator = "nop"
        v.rule("bar0", "t").write("action", "trap")
        # a trap rule keeps its mediator: detaching is refused
        assert attempt(v.write, "mediator", "") == "EBUSY"
        assert v.mediator == "nop"
        with open_bar(edu_vfm) as dev:
            dev.write32(BAR0, EDU_LIVE, 0x01020304)
            assert dev.read32(BAR0, EDU_LIVE) == 0xFEFDFCFB
        assert v.rule("bar0", "t").hits == 2
        v.remove_rule("bar0", "t")
        v.mediator = ""
        assert v.mediator == ""


def test_trap_routes_to_the_mediator(edu_vfm):
    """regshadow traps 0x0-0xfff and records what is written there. An
    admin's more specific rule overrides its trap: pass sends the write
    straight to the device (not recorded), trap to the mediator
    (recorded), deny refuses it (nothing recorded, nothing written)."""
    with Vfm(edu_vfm, mediator="regshadow", args="bar=0,range=0x0-0xfff") \
            as v:
        live = v.add_rule("bar0", "live", "0x4-0x7", "pass")
        v.add_rule("bar0", "fact", "0x8-0xb", "deny")
        with open_bar(edu_vfm) as dev:
            dev.write32(BAR0, EDU_LIVE, 0x12345678)
            assert dev.read32(BAR0, EDU_LIVE) == 0xEDCBA987
            assert attempt(dev.write32, BAR0, EDU_FACT, 4) == "EACCES"
            dev.write32(BAR0, 0x80, 0x44)
            assert v.mediator_state.splitlines() == [
                "bar=0 range=0x0-0xfff", "0x80=0x00000044"]
            dev.write32(BAR0, 0x80, 0)
        live.write("action", "trap")
        with open_bar(edu_vfm) as dev:
            dev.write32(BAR0, EDU_LIVE, 0x0BADCAFE)
            assert dev.read32(BAR0, EDU_LIVE) == 0xF4523501
            assert v.mediator_state.splitlines() == [
                "bar=0 range=0x0-0xfff", "0x4=0x0badcafe"]
        assert live.hits == 2


# -- limits ------------------------------------------------------------------------

def test_rules_per_region_limit(edu_vfm):
    with Vfm(edu_vfm) as v:
        for i in range(MAX_RULES):
            v.add_rule("bar0", f"r{i:04d}", f"{0x100 + i:#x}+1", "ignore")
        extra = v.region_path("bar0", "rules", "one-too-many")
        assert attempt(os.mkdir, extra) == "ENOSPC"
        assert not os.path.exists(extra)
        # the limit is per region
        v.add_rule("config", "other-region", "0x3c+1", "ro")
        with open_bar(edu_vfm) as dev:
            assert dev.read32(BAR0, EDU_ID) == EDU_ID_VALUE
            assert dev.read32(BAR0, 0x100) == 0
            assert dev.read32(BAR0, 0x4FC) == 0
            assert dev.read32(BAR0, 0x500) == 0xFFFFFFFF
            assert dev.region_info(BAR0).sparse_areas == [(0x1000, 0xFF000)]
        assert v.rule("bar0", "r0000").hits == 1
        v.remove_rule("bar0", "r1023")
        os.mkdir(extra)
        os.rmdir(extra)
