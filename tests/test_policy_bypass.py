# SPDX-License-Identifier: GPL-2.0
"""No way around a rule: every path by which a VFIO user reaches a ruled
byte goes through the table or is refused.

- mmap: the region info of a BAR with rules advertises the pages no rule
  touches as VFIO_REGION_INFO_CAP_SPARSE_MMAP areas, exactly those; mmap
  of any ruled page fails EINVAL, also for a mapping that straddles one;
  an allowed mapping cannot be grown into a ruled page with mremap;
  mmap=off traps the whole region.
- VFIO_DEVICE_IOEVENTFD: vfio-pci-core would write the BAR itself when
  the eventfd fires, so while any BAR write rule (ro, deny, ignore, trap,
  or audit) exists, every ioeventfd ioctl of the device is refused
  (EPERM), at any offset, unregistering included; with no BAR write rule
  (config rules, plain pass, read-only rules) ioeventfds work as on
  vfio-pci.
- VFIO_DEVICE_SET_IRQS enabling MSI/MSI-X programs the capability from
  inside vfio-pci-core: refused (EPERM) when ro, deny or ignore guards a
  byte of it, allowed under counting or trapping rules; disabling always
  works.
- a second fd of an open device, and the iommufd cdev (when the kernel
  has it), get the same running table.
- config space is reachable through read/write only (no mmap, no
  ioeventfd); ROM: rules on igb's expansion ROM (tests/vm/run gives it
  one) read as documented; VGA: no test device has a VGA region.
"""
import ctypes
import errno
import mmap
import os
import time

import pytest

import iommufd
import optionrom
import pci
import vfio
from policy import (EDU_BAR0_SIZE, EDU_ID, EDU_ID_VALUE, EDU_LIVE,
                    NVME_BAR0_SIZE, NVME_DOORBELL, NVME_VS, NVME_VS_1_4,
                    PAGE, attempt, mmap_areas)
from vfio import (BAR0, CONFIG, ROM, Device, mmio_read32,
                  VFIO_REGION_INFO_FLAG_CAPS, VFIO_REGION_INFO_FLAG_MMAP,
                  VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE)
from vfm import Vfm

VFM = "vfmediate"
RW = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE
MMAP, CAPS = VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_CAPS

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mremap.restype = ctypes.c_void_p
_libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t,
                         ctypes.c_int]
MAP_FAILED = ctypes.c_void_p(-1).value
MREMAP_MAYMOVE = 1


pytestmark = pytest.mark.usefixtures("no_config_left")


@pytest.fixture
def nvme_vfm(nvme_vf, bind):
    return bind(nvme_vf, VFM)


def open_bar(bdf):
    dev = Device(bdf)
    try:
        dev.enable_bus_master()
    except BaseException:
        dev.close()
        raise
    return dev


def mmap_outcome(dev, index, offset, length):
    """"ok" when the mapping is made (and unmapped again), else the
    errno's name."""
    def do():
        dev.mmap(index, offset, length).close()
    return attempt(do)


def region_view(info):
    """What a VFIO client learns from a region's info."""
    return (info.flags, info.size, info.offset,
            [(c.id, c.version, c.payload) for c in info.caps])


# -- sparse mmap ------------------------------------------------------------------

EDU_RULES = [       # name, range, action, access -> [start, end)
    ("p1", "0x1000-0x1003", "deny", "rw", (0x1000, 0x1004)),
    ("p5-6", "0x5ffc-0x6003", "ro", "rw", (0x5FFC, 0x6004)),
    ("p9-reads", "0x9000+1", "deny", "r", (0x9000, 0x9001)),
    ("p12-pass", "0xc000+4", "pass", "rw", (0xC000, 0xC004)),
    ("last", "0xfffff-0xfffff", "ignore", "rw", (0xFFFFF, 0x100000)),
]


def test_sparse_areas_are_the_unruled_pages(edu_vfm):
    with Vfm(edu_vfm) as v:
        for name, rng, action, access, _ in EDU_RULES:
            v.add_rule("bar0", name, rng, action, access=access)
        want = mmap_areas(EDU_BAR0_SIZE, [r[4] for r in EDU_RULES])
        assert want == [(0x0, 0x1000), (0x2000, 0x3000), (0x7000, 0x2000),
                        (0xA000, 0x2000), (0xD000, 0xF2000)]
        with open_bar(edu_vfm) as dev:
            info = dev.region_info(BAR0)
            assert info.flags == RW | MMAP | CAPS
            assert info.size == EDU_BAR0_SIZE
            assert info.sparse_areas == want
            assert [c.id for c in info.caps] == [
                vfio.VFIO_REGION_INFO_CAP_SPARSE_MMAP]
            for off, size in want:
                assert mmap_outcome(dev, BAR0, off, size) == "ok"
            mm = dev.mmap(BAR0, 0, PAGE)
            try:
                assert mmio_read32(mm, EDU_ID) == EDU_ID_VALUE
            finally:
                mm.close()
            assert mmap_outcome(dev, BAR0, 0xE000, PAGE) == "ok"
            refused = [
                (0x1000, PAGE),             # a ruled page
                (0x0, 2 * PAGE),            # from an area into a ruled page
                (0x4000, 2 * PAGE),         # pages 4-5
                (0x6000, 2 * PAGE),         # from a ruled page into an area
                (0x9000, PAGE),             # ruled for reads only
                (0xC000, PAGE),             # a plain pass rule's page
                (0xFF000, PAGE),            # the last page
                (0xD000, 0xF3000),          # an area and the last page
                (0x0, EDU_BAR0_SIZE),       # the whole BAR
            ]
            for off, size in refused:
                assert mmap_outcome(dev, BAR0, off, size) == "EINVAL", \
                    f"mmap {off:#x}+{size:#x}"


def test_sparse_areas_nvme_keep_msix_mappable(nvme_vfm):
    with Vfm(nvme_vfm) as v:
        v.add_rule("bar0", "sq0-tail", f"{NVME_DOORBELL:#x}+4", "deny")
        with Device(nvme_vfm) as dev:
            info = dev.region_info(BAR0)
            assert info.flags == RW | MMAP | CAPS
            assert info.sparse_areas == mmap_areas(
                NVME_BAR0_SIZE, [(NVME_DOORBELL, NVME_DOORBELL + 4)]) == [
                (0x0, 0x1000), (0x2000, 0x2000)]
            assert info.msix_mappable
            assert attempt(dev.read32, BAR0, NVME_DOORBELL) == "EACCES"
            mm = dev.mmap(BAR0, 0, PAGE)
            try:
                assert mmio_read32(mm, NVME_VS) == NVME_VS_1_4
            finally:
                mm.close()
            assert mmap_outcome(dev, BAR0, 0x2000, 0x2000) == "ok"
            assert mmap_outcome(dev, BAR0, 0x1000, PAGE) == "EINVAL"
            assert mmap_outcome(dev, BAR0, 0x0, 0x2000) == "EINVAL"
            assert mmap_outcome(dev, BAR0, 0x0, NVME_BAR0_SIZE) == "EINVAL"


@pytest.mark.parametrize("fn", ["edu", "nvme_vf"])
def test_rules_elsewhere_leave_the_bar_as_it_was(request, bind, fn):
    bdf = bind(request.getfixturevalue(fn), VFM)
    with Device(bdf) as dev:
        plain = region_view(dev.region_info(BAR0))
    with Vfm(bdf) as v:
        v.add_rule("config", "deny-vendor", "0x0-0x1", "deny")
        with Device(bdf) as dev:
            assert region_view(dev.region_info(BAR0)) == plain
            assert mmap_outcome(dev, BAR0, 0, PAGE) == "ok"
            assert attempt(dev.config_read16, 0) == "EACCES"


def test_whole_bar_ruled_is_not_mmapable(edu_vfm):
    with Vfm(edu_vfm) as v:
        v.add_rule("bar0", "all", f"0x0+{EDU_BAR0_SIZE:#x}", "ro")
        with open_bar(edu_vfm) as dev:
            info = dev.region_info(BAR0)
            assert info.flags == RW and info.caps == []
            assert mmap_outcome(dev, BAR0, 0, PAGE) == "EINVAL"
            assert mmap_outcome(dev, BAR0, 0xFF000, PAGE) == "EINVAL"
            assert dev.read32(BAR0, EDU_ID) == EDU_ID_VALUE


@pytest.mark.parametrize("with_rule", [False, True])
@pytest.mark.parametrize("fn", ["edu", "nvme_vf"])
def test_mmap_off_traps_the_whole_region(request, bind, fn, with_rule):
    bdf = bind(request.getfixturevalue(fn), VFM)
    reg, value = (EDU_ID, EDU_ID_VALUE) if fn == "edu" else \
        (NVME_VS, NVME_VS_1_4)
    with Vfm(bdf) as v:
        assert v.region_mmap("bar0") == "auto"
        v.set_region_mmap("bar0", "off")
        if with_rule:
            v.add_rule("bar0", "ro-page1", "0x1000+4", "ro")
        with open_bar(bdf) as dev:
            info = dev.region_info(BAR0)
            assert not info.mmappable and info.sparse_areas is None
            # edu: no capability at all; the VF keeps MSI-X mappable
            if fn == "edu":
                assert info.flags == RW and info.caps == []
            else:
                assert info.flags == RW | CAPS and info.msix_mappable
            assert mmap_outcome(dev, BAR0, 0, PAGE) == "EINVAL"
            assert mmap_outcome(dev, BAR0, 0, info.size) == "EINVAL"
            assert mmap_outcome(dev, BAR0, info.size - PAGE, PAGE) == \
                "EINVAL"
            # read and write through the fd as before
            assert dev.read32(BAR0, reg) == value
            if fn == "edu":
                dev.write32(BAR0, EDU_LIVE, 0x31415926)
                assert dev.read32(BAR0, EDU_LIVE) == 0xCEBEA6D9


@pytest.mark.parametrize("flags", [0, MREMAP_MAYMOVE])
def test_mremap_cannot_grow_into_a_ruled_page(edu_vfm, flags):
    with Vfm(edu_vfm) as v:
        v.add_rule("bar0", "p1", "0x1000+4", "deny")
        with open_bar(edu_vfm) as dev:
            mm = dev.mmap(BAR0, 0, PAGE)
            try:
                addr = vfio._mmap_address(mm)
                ret = _libc.mremap(addr, PAGE, 2 * PAGE, flags)
                err = ctypes.get_errno()
                assert ret == MAP_FAILED, "mremap grew a BAR mapping"
                assert err == errno.EFAULT
                assert mmio_read32(mm, EDU_ID) == EDU_ID_VALUE
            finally:
                mm.close()


# -- VFIO_DEVICE_IOEVENTFD --------------------------------------------------------

def _fire(dev, fd, expect_live):
    """Signal an ioeventfd; wait for edu's liveness register to show the
    write, when the rules let a read show it (expect_live not None).
    When they do not, the caller reads it after closing the device:
    closing tears the ioeventfd down through vfio's virqfd shutdown,
    which flushes a write the eventfd has queued."""
    os.eventfd_write(fd, 1)
    if expect_live is None:
        return
    deadline = time.monotonic() + 2
    while dev.read32(BAR0, EDU_LIVE) != expect_live:
        assert time.monotonic() < deadline, "the ioeventfd wrote nothing"
        time.sleep(0.01)


ALLOWED = {     # rules on edu's BAR0 (or config) with no BAR write rule
    "no-bar-rule": [("config", "cfg", "0x3c+1", "deny", "rw")],
    "plain-pass": [("bar0", "pass", "0x4-0x7", "pass", "rw")],
    "reads-only": [("bar0", "deny-r", "0x4-0x7", "deny", "r")],
    "trap-reads": [("bar0", "trap-r", "0x4-0x7", "trap", "r")],
}


@pytest.mark.parametrize("case", sorted(ALLOWED))
def test_ioeventfd_allowed_without_bar_write_rules(edu_vfm, case):
    data = 0xCAFE0000 + len(case)
    rules = ALLOWED[case]
    trap = any(r[3] == "trap" for r in rules)
    with Vfm(edu_vfm, mediator="nop" if trap else None) as v:
        for region, name, rng, action, access in rules:
            v.add_rule(region, name, rng, action, access=access)
        readable = case != "reads-only"
        with open_bar(edu_vfm) as dev:
            dev.write32(BAR0, EDU_LIVE, 0)
            fd = dev.ioeventfd(BAR0, EDU_LIVE, data, 4)
            _fire(dev, fd, (~data & 0xFFFFFFFF) if readable else None)
        v.remove()
    with open_bar(edu_vfm) as dev:
        assert dev.read32(BAR0, EDU_LIVE) == ~data & 0xFFFFFFFF


REFUSED = {     # name -> (action, access, range) of one rule on edu's BAR0
    "deny": ("deny", "rw", "0x4-0x7"),
    "ro-beside": ("ro", "rw", "0x0-0x3"),
    "ignore-far": ("ignore", "w", "0xff000+4"),
    "deny-writes": ("deny", "w", "0x4-0x7"),
    "ro": ("ro", "rw", "0x4-0x7"),
    "ignore-writes": ("ignore", "w", "0x4-0x7"),
    "audited-pass": ("pass+audit", "rw", "0x4-0x7"),
    "trap-writes": ("trap", "w", "0x4-0x7"),
    "last-byte": ("deny", "w", "0x7-0x7"),
    "first-byte": ("ignore", "rw", "0x1-0x4"),
    "broad-ro": ("ro", "rw", "0x0-0xfff"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_ioeventfd_refused_under_bar_write_rules(edu_vfm, case):
    """Whatever the offset: deciding per offset means deciding on user
    memory vfio-pci-core reads again (issue 12, tests/test_attack.py)."""
    action, access, rng = REFUSED[case]
    with Vfm(edu_vfm, mediator="nop" if action == "trap" else None) as v:
        r = v.add_rule("bar0", "rule", rng, action.split("+")[0],
                       access=access, audit=int(action == "pass+audit"))
        with open_bar(edu_vfm) as dev:
            assert attempt(dev.ioeventfd, BAR0, EDU_LIVE, 1, 4) == "EPERM"
            assert attempt(dev.ioeventfd, BAR0, EDU_LIVE, 1, 2) == "EPERM"
            # an offset no rule touches, on another page: refused too
            assert attempt(dev.ioeventfd, BAR0, 0x2000, 1, 4) == "EPERM"
            # unregistering (fd -1) as well
            assert attempt(dev.ioeventfd_unregister, BAR0, 0x2000, 1,
                           4) == "EPERM"
        assert r.hits == 0      # refused before any access


# -- other fds, other paths ----------------------------------------------------------

@pytest.mark.parametrize("action,refused", [
    ("ro", True), ("deny", True), ("ignore", True), ("pass", False)])
def test_msi_setup_respects_capability_rules(edu_vfm, action, refused):
    with Device(edu_vfm) as dev:
        msi = dev.find_capability(0x05)
    assert msi, "edu has an MSI capability"
    with Vfm(edu_vfm) as v:
        rule = v.add_rule("config", "msi", f"{msi + 2:#x}+2", action,
                          access="w", audit=1)
        with Device(edu_vfm) as dev:
            dev.enable_bus_master()
            if refused:
                with pytest.raises(vfio.VfioError) as e:
                    dev.enable_irqs(vfio.IRQ_MSI, 1)
                assert e.value.errno == errno.EPERM
            else:
                (efd,) = dev.enable_irqs(vfio.IRQ_MSI, 1)
                dev.write32(BAR0, 0x60, 0x1)
                assert vfio.wait_eventfd(efd, 5.0) is not None
                dev.write32(BAR0, 0x64, 0x1)
                dev.disable_irqs(vfio.IRQ_MSI)
        # The ioctl is no access of the user's own: it counts nothing.
        assert rule.hits == 0


def test_second_fd_gets_the_running_table(edu_vfm):
    """A second device fd opened while the first is open does not compile
    a new table: the staged removal of the rule does not apply to it."""
    with Vfm(edu_vfm) as v:
        v.add_rule("bar0", "deny-id", "0x0-0x3", "deny")
        with open_bar(edu_vfm) as dev:
            gen = v.generation
            v.remove_rule("bar0", "deny-id")
            assert v.pending
            fd2 = dev.group.get_device_fd(edu_vfm)
            try:
                off = dev.region_info(BAR0).offset
                assert attempt(os.pread, fd2, 4, off + EDU_ID) == "EACCES"
                assert attempt(os.pread, fd2, 4, off + EDU_LIVE) != "EACCES"
                assert attempt(lambda: mmap.mmap(
                    fd2, PAGE, mmap.MAP_SHARED, mmap.PROT_READ,
                    offset=off)) == "EINVAL"
            finally:
                os.close(fd2)
            assert v.pending and v.generation == gen
        with open_bar(edu_vfm) as dev:
            assert dev.read32(BAR0, EDU_ID) == EDU_ID_VALUE


def test_iommufd_cdev_gets_the_same_rules(edu_vfm):
    reason = iommufd.unavailable()
    if reason:
        pytest.skip(reason)
    with Vfm(edu_vfm) as v:
        r = v.add_rule("bar0", "deny-id", "0x0-0x3", "deny")
        with iommufd.IommuFD() as ictx:
            ioas = ictx.ioas_alloc()
            with iommufd.CdevDevice(edu_vfm, ictx, ioas) as dev:
                dev.enable_bus_master()
                assert attempt(dev.read32, BAR0, EDU_ID) == "EACCES"
                assert dev.region_info(BAR0).sparse_areas == [
                    (0x1000, EDU_BAR0_SIZE - 0x1000)]
                assert mmap_outcome(dev, BAR0, 0, PAGE) == "EINVAL"
                assert attempt(dev.ioeventfd, BAR0, EDU_ID, 1, 4) == "EPERM"
        assert r.hits == 1


def test_config_space_only_through_read_write(edu_vfm):
    """Config space has no mmap and no ioeventfd in vfio-pci-core: the
    fd's read and write, which the table sees, are the only way."""
    with Vfm(edu_vfm) as v:
        r = v.add_rule("config", "deny-vendor", "0x0-0x1", "deny")
        with Device(edu_vfm) as dev:
            info = dev.region_info(CONFIG)
            assert not info.mmappable
            assert mmap_outcome(dev, CONFIG, 0, PAGE) == "EINVAL"
            # no BAR write rule: vfio-pci-core answers, and it has
            # ioeventfds into BARs (and VGA) only
            assert attempt(dev.ioeventfd, CONFIG, 0, 0xFFFF, 2) == "EINVAL"
            assert attempt(dev.ioeventfd, CONFIG, 0x3C, 0xFF, 1) == "EINVAL"
            assert attempt(dev.config_read16, 0) == "EACCES"
        assert r.hits == 1


def igb_rom():
    """The image tests/vm/run gave the guest's igb (tests/lib/optionrom.py)."""
    return optionrom.image(0x8086, 0x10C9)


def test_igb_has_the_rom_we_gave_it(igb, bind):
    """Without rules, the ROM region reads back the image QEMU was given:
    the ROM tests below have something real to guard."""
    image = igb_rom()
    bdf = bind(igb, VFM)
    assert pci.rom_size(bdf) >= len(image)
    with Device(bdf) as dev:
        assert dev.region_info(ROM).size >= len(image)
        assert dev.pread(ROM, 0, len(image)) == image


@pytest.mark.parametrize("action", ["deny", "ignore", "ro", "pass"])
def test_rom_rules(igb, bind, action):
    """A rule on ROM bytes 0x30-0x3f: deny refuses any read that touches
    them, before any byte moves; ignore reads them as zeros; ro and pass
    return the ROM's bytes. Reads around the rule are untouched, and every
    touching read counts one hit (a plain pass counts nothing)."""
    image = igb_rom()
    bdf = bind(igb, VFM)
    with Vfm(bdf) as v:
        r = v.add_rule("rom", "r", "0x30-0x3f", action)
        with Device(bdf) as dev:
            assert dev.pread(ROM, 0, 0x30) == image[:0x30]
            assert dev.pread(ROM, 0x40, 0x100) == image[0x40:0x140]
            for off, size in ((0x30, 4), (0x2e, 4), (0x3c, 8), (0, 0x100)):
                if action == "deny":
                    assert attempt(dev.pread, ROM, off, size) == "EACCES"
                    continue
                got = dev.pread(ROM, off, size)
                want = bytearray(image[off:off + size])
                if action == "ignore":
                    for i in range(max(off, 0x30), min(off + size, 0x40)):
                        want[i - off] = 0
                assert got == bytes(want), (off, size)
        assert r.hits == (0 if action == "pass" else 4)


def test_rom_trap_and_audit(igb, bind):
    """A trap to nop (which forwards) and an audited pass both return the
    ROM's bytes and count each read."""
    image = igb_rom()
    bdf = bind(igb, VFM)
    with Vfm(bdf, mediator="nop") as v:
        t = v.add_rule("rom", "t", "0x100-0x1ff", "trap")
        a = v.add_rule("rom", "a", "0x200-0x2ff", "pass", audit=1)
        with Device(bdf) as dev:
            assert dev.pread(ROM, 0x100, 0x100) == image[0x100:0x200]
            assert dev.pread(ROM, 0x1f0, 0x20) == image[0x1f0:0x210]
            assert dev.pread(ROM, 0x200, 4) == image[0x200:0x204]
        assert (t.hits, a.hits) == (2, 2)


@pytest.mark.parametrize("fn", ["edu", "nvme_vf"])
def test_romless_device_has_no_rom_to_reach(request, bind, fn):
    """No ROM: the ROM region is empty, so a ROM rule can only be written
    while the device is absent, and then the open fails (test_policy.py);
    bound, the rule's range is refused at once."""
    bdf = bind(request.getfixturevalue(fn), VFM)
    assert pci.rom_size(bdf) == 0
    with Device(bdf) as dev:
        assert dev.region_info(ROM).size == 0
        assert attempt(dev.pread, ROM, 0, 4) == "EINVAL"
    with Vfm(bdf) as v:
        with pytest.raises(OSError) as e:
            v.add_rule("rom", "deny-head", "0x0-0x1", "deny")
        assert e.value.errno == errno.ERANGE
