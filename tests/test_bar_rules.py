# SPDX-License-Identifier: GPL-2.0
"""Rules beyond BAR0's plain registers: the other BARs of igb, and the
MSI-X table and PBA of an NVMe VF with its interrupts in use.

igb (the guest's 82576 PF) has four BARs: BAR0 registers (128 KiB), BAR1
flash (128 KiB), BAR2 I/O ports (32 bytes: IOADDR at 0 reads back what
was written, IODATA at 4 reads the BAR0 register IOADDR names) and BAR3
the MSI-X table (at 0) and PBA (at 0x2000, 16 KiB). pass, ro, deny and
trap rules on BAR1, BAR2 and BAR3 act as on BAR0: pread/pwrite results
and data (trap through the recorder mediator, whose read handler flips
each byte's top bit and whose write handler flips bit 0 of each dword),
hit counts, the sparse-mmap areas of the ruled BAR only, and mmap
refused on ruled pages and allowed elsewhere. A trapped read of the
MSI-X table through a mediator's default accessor reads all ones, as
vfio-pci gives it, not the host-programmed table.

The NVMe VF (BAR0: registers, doorbells at 0x1000, MSI-X table at 0x2000,
PBA at 0x3000) runs a real admin command whose completion raises its
MSI-X vector, enabled with VFIO_DEVICE_SET_IRQS, under rules elsewhere in
BAR0 and under deny and ro rules on the MSI-X table and PBA. The policy
(vfmediate-configfs(5), IOEVENTFD AND INTERRUPT SETUP) refuses SET_IRQS
only for rules on the MSI-X capability in config space; a rule on the
table in the BAR guards the user's own accesses to it (pread EACCES or
EPERM, mmap EINVAL) while vfio-pci-core's programming of the table, and
so the interrupt, go on.

How the tests were checked to fail, one change at a time: the expected
IOADDR value of the BAR2 pass and trap cases swapped (each failed); a
ruled page of BAR1 or BAR3 expected mappable (all six failed); MSI-X
disabled again before the NVMe doorbell is rung (no interrupt: failed);
the trapped MSI-X table expected as the untrapped all ones (failed).
"""
import struct
import time

import pytest

import recorder
from policy import NVME_VS, NVME_VS_1_4, attempt, mmap_areas
from vfio import BAR0, BAR1, BAR2, BAR3, IRQ_MSIX, Device, wait_eventfd
from vfm import Vfm

VFM = "vfmediate"
PAGE = 4096
IGB_IOADDR, IGB_IODATA = 0x0, 0x4
IGB_STATUS = 0x8                    # BAR0 STATUS, through IODATA
IGB_BAR_SIZES = {BAR0: 128 << 10, BAR1: 128 << 10, BAR2: 32, BAR3: 16 << 10}
IGB_PBA = 0x2000
REGION = {BAR1: "bar1", BAR2: "bar2", BAR3: "bar3"}

pytestmark = pytest.mark.usefixtures("no_config_left")


@pytest.fixture
def igb_vfm(igb, bind):
    return bind(igb, VFM)


def mmap_ok(dev, index, off, length):
    return attempt(lambda: dev.mmap(index, off, length).close())


def ioaddr_roundtrip(dev, value):
    """Write IOADDR through the fd; what a read of it gives (or errno)."""
    w = attempt(dev.write32, BAR2, IGB_IOADDR, value)
    return w, attempt(dev.read32, BAR2, IGB_IOADDR)


def test_igb_bars_as_vfio_pci(igb_vfm):
    """What the other tests rely on: igb's BARs, no rules."""
    with Device(igb_vfm) as dev:
        for index, size in IGB_BAR_SIZES.items():
            assert dev.region_info(index).size == size, index
        assert not dev.region_info(BAR2).mmappable
        assert dev.region_info(BAR3).msix_mappable
        assert ioaddr_roundtrip(dev, 0x1234) == ("ok", 0x1234)
        dev.write32(BAR2, IGB_IOADDR, IGB_STATUS)
        assert dev.read32(BAR2, IGB_IODATA) == dev.read32(BAR0, IGB_STATUS)
        # the MSI-X table is kept from pread; the PBA is the device's
        assert dev.pread(BAR3, 0, 8) == b"\xff" * 8
        assert dev.read32(BAR3, IGB_PBA) == 0


IO_CASES = {   # action -> (write result, value read back after 0x1234)
    "pass": ("ok", 0x1234),
    "ro": ("EPERM", 0x0),
    "deny": ("EACCES", "EACCES"),
    "ignore": ("ok", 0),
    "trap": ("ok", (0x1234 ^ 0x1) ^ 0x80808080),
}


@pytest.mark.parametrize("action", sorted(IO_CASES))
def test_igb_io_bar_rules(igb_vfm, action):
    """BAR2 (I/O ports): a rule on IOADDR; IODATA stays free."""
    with Vfm(igb_vfm, mediator="recorder") as v:
        with Device(igb_vfm) as dev:
            dev.write32(BAR2, IGB_IOADDR, 0)
        r = v.add_rule("bar2", "ioaddr", "0x0+4", action, audit=1)
        with Device(igb_vfm) as dev:
            assert ioaddr_roundtrip(dev, 0x1234) == IO_CASES[action]
            assert r.hits == 2
            log = recorder.state(v).since(0)
            assert log == ([("write", BAR2, 0, 4, 4), ("read", BAR2, 0, 4, 4)]
                           if action == "trap" else [])
            # IODATA, unruled, reads the register the device's IOADDR names
            if action == "pass":
                dev.write32(BAR2, IGB_IOADDR, IGB_STATUS)
                assert dev.read32(BAR2, IGB_IODATA) == \
                    dev.read32(BAR0, IGB_STATUS)
            info = dev.region_info(BAR2)
            assert not info.mmappable and info.sparse_areas is None
            assert mmap_ok(dev, BAR2, 0, PAGE) == "EINVAL"
    recorder.MODULE.unload()


@pytest.mark.parametrize("index,start,size", [
    (BAR1, 0x5000, 4),              # flash: one page in the middle
    (BAR3, IGB_PBA, 8),             # MSI-X PBA
    (BAR3, 0x0, 16),                # MSI-X table, vector 0
])
@pytest.mark.parametrize("action", ["ro", "deny"])
def test_igb_mmio_bar_rules(igb_vfm, index, start, size, action):
    """BAR1 and BAR3: the ruled page is refused to mmap, the others are
    advertised and mappable; BAR0 is left as vfio-pci has it."""
    bar_size = IGB_BAR_SIZES[index]
    with Device(igb_vfm) as dev:
        plain = dev.pread(index, start, size)
        bar0 = dev.region_info(BAR0)
    with Vfm(igb_vfm) as v:
        r = v.add_rule(REGION[index], "r", f"{start:#x}+{size}", action)
        with Device(igb_vfm) as dev:
            want_read = plain if action == "ro" else "EACCES"
            assert attempt(dev.pread, index, start, size) == want_read
            want_write = "EPERM" if action == "ro" else "EACCES"
            assert attempt(dev.pwrite, index, start, bytes(size)) == \
                want_write
            assert r.hits == 2
            info = dev.region_info(index)
            areas = mmap_areas(bar_size, [(start, start + size)])
            assert info.mmappable and info.sparse_areas == areas
            assert mmap_ok(dev, index, start & ~(PAGE - 1), PAGE) == \
                "EINVAL"
            assert mmap_ok(dev, index, 0, bar_size) == "EINVAL"
            for off, length in areas:
                assert mmap_ok(dev, index, off, length) == "ok"
            other = dev.region_info(BAR0)
            assert (other.flags, other.caps) == (bar0.flags, bar0.caps)
            assert mmap_ok(dev, BAR0, 0, IGB_BAR_SIZES[BAR0]) == "ok"


def test_igb_msix_table_trapped_reads_all_ones(igb_vfm):
    """A trapped MSI-X table read goes to the mediator's read handler,
    whose default accessor keeps the table out of reach as vfio-pci
    does: all ones (the recorder then flips the top bits: 0x7f); a
    trapped write to it is dropped the same way."""
    with Vfm(igb_vfm, mediator="recorder") as v:
        v.add_rule("bar3", "table", "0x0+16", "trap")
        with Device(igb_vfm) as dev:
            assert dev.pread(BAR3, 0, 16) == b"\x7f" * 16
            assert dev.pwrite(BAR3, 0, b"\x00" * 16) == 16
            assert dev.pread(BAR3, 0, 16) == b"\x7f" * 16
            assert dev.pread(BAR3, 16, 4) == b"\xff" * 4   # untrapped
            assert recorder.state(v).since(0) == [
                ("read", BAR3, 0, 16, 16), ("write", BAR3, 0, 16, 16),
                ("read", BAR3, 0, 16, 16)]
    recorder.MODULE.unload()


# -- MSI-X on the NVMe VF ------------------------------------------------------

NVME_CC, NVME_CSTS, NVME_AQA, NVME_ASQ, NVME_ACQ = 0x14, 0x1C, 0x24, 0x28, 0x30
SQ0_TAIL, CQ0_HEAD = 0x1000, 0x1004
MSIX_TABLE, MSIX_PBA = 0x2000, 0x3000
ASQ_IOVA, ACQ_IOVA, DATA_IOVA = 0x100000, 0x200000, 0x300000


def wait_reg(dev, off, mask, want, timeout=10.0):
    deadline = time.monotonic() + timeout
    while dev.read32(BAR0, off) & mask != want:
        assert time.monotonic() < deadline, f"register {off:#x}"


def nvme_identify(dev):
    """Enable the controller with a 2-entry admin queue pair, submit
    Identify Controller and wait for MSI-X vector 0. Returns the eventfd
    count (None: no interrupt) and the completion's status field."""
    c = dev.container
    sq, cq = c.dma_map(ASQ_IOVA, PAGE), c.dma_map(ACQ_IOVA, PAGE)
    c.dma_map(DATA_IOVA, PAGE)
    (efd,) = dev.enable_irqs(IRQ_MSIX, 1)
    dev.write32(BAR0, NVME_AQA, (1 << 16) | 1)
    for reg, iova in ((NVME_ASQ, ASQ_IOVA), (NVME_ACQ, ACQ_IOVA)):
        dev.write32(BAR0, reg, iova)
        dev.write32(BAR0, reg + 4, 0)
    dev.write32(BAR0, NVME_CC, (4 << 20) | (6 << 16) | 1)
    wait_reg(dev, NVME_CSTS, 0x1, 0x1)
    cmd = struct.pack("<BBH", 0x06, 0, 0x42) + bytes(20) + \
        struct.pack("<Q", DATA_IOVA) + bytes(8) + struct.pack("<I", 1)
    sq.mem[:64] = cmd.ljust(64, b"\0")
    dev.write32(BAR0, SQ0_TAIL, 1)
    count = wait_eventfd(efd, 10.0)
    cid, status = struct.unpack_from("<HH", cq.mem, 12)
    dev.write32(BAR0, CQ0_HEAD, 1)
    dev.write32(BAR0, NVME_CC, 0)
    wait_reg(dev, NVME_CSTS, 0x1, 0x0)
    # Leave the admin queue registers as a fresh VF has them: disabling
    # the controller keeps them, and later tests (the demo) read AQA's
    # reset value.
    for reg in (NVME_AQA, NVME_ASQ, NVME_ASQ + 4, NVME_ACQ, NVME_ACQ + 4):
        dev.write32(BAR0, reg, 0)
    dev.disable_irqs(IRQ_MSIX)
    for iova in (ASQ_IOVA, ACQ_IOVA, DATA_IOVA):
        c.dma_unmap(iova, PAGE)
    return count, cid, status


# hits after the command: VS read once, CC written twice, nothing else
HITS = {"vs": 1, "cc": 2}
MSIX_RULES = {
    "none": [],
    "elsewhere": [("vs", f"{NVME_VS:#x}+4", "ro"),
                  ("sq1", "0x1008+8", "deny"),
                  ("cc", f"{NVME_CC:#x}+4", "pass")],
    "table-deny": [("table", f"{MSIX_TABLE:#x}+16", "deny"),
                   ("pba", f"{MSIX_PBA:#x}+8", "deny")],
    "table-ro": [("table", f"{MSIX_TABLE:#x}+16", "ro"),
                 ("pba", f"{MSIX_PBA:#x}+8", "ro")],
}


@pytest.mark.parametrize("case", sorted(MSIX_RULES))
def test_nvme_vf_msix_under_rules(nvme_vf, bind, case):
    bdf = bind(nvme_vf, VFM)
    with Vfm(bdf) as v:
        for name, rng, action in MSIX_RULES[case]:
            v.add_rule("bar0", name, rng, action, audit=1)
        with Device(bdf) as dev:
            dev.enable_bus_master()
            assert dev.read32(BAR0, NVME_VS) == NVME_VS_1_4
            count, cid, status = nvme_identify(dev)
            assert count == 1, "no MSI-X interrupt"
            # CID echoed, status: phase tag 1, success
            assert (cid, status) == (0x42, 0x1)
            # vfio-pci-core programmed the table past the rules
            for name, _, _ in MSIX_RULES[case]:
                assert v.rule("bar0", name).hits == HITS.get(name, 0), name
            check_table_access(dev, v, case)
            assert dev.region_info(BAR0).msix_mappable
    if case == "none":
        check_config_cap_refusal(bdf)


def check_table_access(dev, v, case):
    """The user's own accesses to the table and PBA, after the command."""
    table = attempt(dev.pread, BAR0, MSIX_TABLE, 16)
    pba = attempt(dev.pread, BAR0, MSIX_PBA, 8)
    write = attempt(dev.pwrite, BAR0, MSIX_TABLE, bytes(16))
    page = attempt(lambda: dev.mmap(BAR0, MSIX_TABLE, PAGE).close())
    if case == "table-deny":
        assert (table, pba, write, page) == ("EACCES",) * 3 + ("EINVAL",)
    elif case == "table-ro":
        assert (table, pba, write, page) == \
            (b"\xff" * 16, bytes(8), "EPERM", "EINVAL")
    else:
        assert (table, pba, write, page) == \
            (b"\xff" * 16, bytes(8), 16, "ok")
    if case.startswith("table"):
        assert (v.rule("bar0", "table").hits,
                v.rule("bar0", "pba").hits) == (2, 1)


def check_config_cap_refusal(bdf):
    """The rule that does refuse MSI-X: ro on the capability in config
    space (the vector count and enable bits vfio-pci-core programs)."""
    with Device(bdf) as dev:
        cap = dev.find_capability(0x11)
    with Vfm(bdf) as v:
        v.add_rule("config", "msix-cap", f"{cap:#x}+12", "ro")
        with Device(bdf) as dev:
            assert attempt(dev.enable_irqs, IRQ_MSIX, 1) == "EPERM"
            assert dev.config_read16(cap + 2) & 0x8000 == 0
