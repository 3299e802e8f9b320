# SPDX-License-Identifier: GPL-2.0
"""vfmediate with nothing attached must answer exactly like vfio-pci.

The main check takes a fingerprint of a function (tests/lib/parity.py:
device/region/IRQ info with raw capability chains, the whole config
region, BAR registers by pread and by mmap, MSI/MSI-X/INTx/REQ eventfds,
reset, VFIO_DEVICE_FEATURE probes, ioeventfds, DMA map/unmap and an edu
DMA round trip, and the errno of requests that must fail) under vfio-pci,
under vfmediate and under vfio-pci again, and compares them. The second
vfio-pci run tells a difference between drivers from state the script
failed to pin down. No config bit needs masking: with the script writing
every register it reads, both devices give byte-identical config space
run after run.

A fingerprint that is equal but wrong under both drivers would prove
nothing, so the vfio-pci one is also checked against known device facts;
and a few behaviours are tested on their own under each driver.

The same fingerprint is also compared with vfmediate running with a
configfs device directory (test_fingerprint_parity_configured):
- "empty": a directory with no mediator and no rule runs no table
  (generation 0): the fingerprint must be identical.
- "untouched": rules on a page of BAR0 the fingerprint never reads,
  writes or maps by itself (edu: 0x80000; the NVMe VF: its doorbell page
  0x1000): a deny rule for reads and a plain pass rule, neither of which
  refuses ioeventfds (no write rule but a plain pass). Exactly three
  leaves may differ, and are checked to differ exactly as documented
  (vfmediate-configfs(5), MMAP): BAR0's region info, asked with the
  right and with a large argsz (flags gain VFIO_REGION_INFO_FLAG_CAPS; a
  VFIO_REGION_INFO_CAP_SPARSE_MMAP capability lists the pages no rule
  touches, the other capabilities stay as they were; argsz grows by the
  new capability's size), and the mmap of the whole of BAR0, which takes
  in the ruled page (EINVAL). Everything else, mmaps of BAR0's first and
  last pages included, is identical. Checked to fail: with the read rule
  moved onto a register the fingerprint reads, with the whole-BAR mmap
  left out of the leaves that may differ, and with the expected sparse
  areas shifted by a page.
"""
import errno
import os

import pytest

import parity
import pci
import vfio
from parity import (BAR0, CONFIG, EDU_ID_VALUE, NVME_VS, NVME_VS_1_4, ok)
from policy import mmap_areas
from vfio import Device, IRQ_MSI, IRQ_MSIX, IRQ_REQ
from vfm import Vfm

DRIVERS = ("vfio-pci", "vfmediate")
KINDS = {"edu": "edu", "nvme": "nvme_vf"}      # kind -> fixture name


@pytest.fixture(params=sorted(KINDS))
def target(request):
    """(kind, bdf) for edu and for the first NVMe VF."""
    return request.param, request.getfixturevalue(KINDS[request.param])


def check_facts(fp, kind):
    """Absolute facts about a fingerprint, whatever the driver."""
    info = fp["info"]
    assert info["device"]["flags"] & vfio.VFIO_DEVICE_FLAGS_PCI
    assert info["device"]["num_regions"] == vfio.VFIO_PCI_NUM_REGIONS
    assert info["device"]["num_irqs"] == vfio.VFIO_PCI_NUM_IRQS
    bar0 = ok(info["regions"]["bar0"])
    assert bar0["flags"] & vfio.VFIO_REGION_INFO_FLAG_MMAP
    assert ok(fp["mmap"]["bar0"]["whole"]) == bar0["size"]
    assert fp["mmap"]["config"]["first_page"] == ("errno", "EINVAL")
    # the migration feature is absent; low-power entry is offered
    assert fp["feature"][vfio.VFIO_DEVICE_FEATURE_MIGRATION]["probe_get"] \
        == errno.ENOTTY
    assert fp["feature"]["get_migration"] == ("errno", "ENOTTY")
    assert fp["req"]["req_count"] == 1
    assert fp["ioeventfd"]["unregister"] == ("ok", None)
    assert fp["dma"]["unmap"] == ("ok", 2 * parity.PAGE)
    cfg = bytes.fromhex(ok(fp["config"]["bytes"]))
    assert cfg.hex() == ok(fp["config"]["dwords"])
    bar = fp["bar"]
    if kind == "edu":
        assert bar0["size"] == 1 << 20
        assert cfg[:4] == bytes.fromhex("3412e811")
        assert len(cfg) == 256
        assert bar["pread32"][parity.EDU_ID] == ("ok", EDU_ID_VALUE)
        assert bar["mmap32"][parity.EDU_ID] == EDU_ID_VALUE
        assert bar["pread32"][parity.EDU_LIVE] == ("ok", 0x5A5AA5A5 ^ 0xFFFFFFFF)
        assert bar["pread32"][parity.EDU_FACT] == ("ok", 720)
        assert bar["mmap_write_pread"] == 0x0F0F0F0F ^ 0xFFFFFFFF
        assert bar["pwrite_mmap_read"] == 0x01020304 ^ 0xFFFFFFFF
        assert bar["mmap64"][parity.EDU_DMA_CNT] == 0x30
        assert fp["msi"]["device_irq"] == 1
        assert fp["msi"]["loopback_count"] == 1
        assert fp["intx"]["loopback_count"] == 1
        assert fp["ioeventfd"]["fired"] is True
        assert fp["dma"]["round_trip"] is True
        assert fp["reset"] == ("errno", "EINVAL")       # edu has no reset
    else:
        assert bar0["size"] == 16 << 10
        assert len(cfg) == 4096
        assert any(c[0] == vfio.VFIO_REGION_INFO_CAP_MSIX_MAPPABLE
                   for c in bar0["caps"])
        assert bar["pread32"][NVME_VS] == ("ok", NVME_VS_1_4)
        assert bar["mmap32"][NVME_VS] == NVME_VS_1_4
        assert ok(bar["pread64"][0]) == bar["mmap64"][0] != 0
        assert fp["msix"]["loopback_count"] == 1
        assert fp["msix"]["cap_enabled"] != fp["msix"]["cap_before"]
        assert fp["msi_absent"]["enable"] == ("errno", "EINVAL")
        assert fp["reset"] == ("ok", None)              # VF FLR
        assert fp["vs_after_reset"] == ("ok", NVME_VS_1_4)
    # pread and mmap agree on every register read both ways
    for o, v in bar["mmap32"].items():
        assert bar["pread32"][o] == ("ok", v), f"BAR0+{o:#x}"
    # 64-bit: vfio-pci on 6.1 splits an 8-byte pread into two 4-byte
    # accesses (edu then answers all ones for the upper half of its DMA
    # registers), 6.12 does one 8-byte access; the low half agrees where
    # the device takes 8-byte accesses (edu: from 0x80 on).
    for o, v in bar["mmap64"].items():
        if kind == "edu" and o < 0x80:
            continue
        assert ok(bar["pread64"][o]) & 0xFFFFFFFF == v & 0xFFFFFFFF, \
            f"BAR0+{o:#x} (64-bit)"


def test_fingerprint_parity(target, bind):
    kind, bdf = target
    fps = {}
    for run, drv in enumerate(("vfio-pci", "vfmediate", "vfio-pci")):
        bind(bdf, drv)
        assert pci.driver(bdf) == drv
        fps[run] = parity.fingerprint(bdf, kind)
    check_facts(fps[0], kind)
    unstable = parity.diff(fps[0], fps[2], ("vfio-pci", "vfio-pci again"))
    assert not unstable, (
        "the fingerprint changed between two vfio-pci runs (state the "
        "script does not pin down):\n" + "\n".join(unstable))
    d = parity.diff(fps[0], fps[1], ("vfio-pci", "vfmediate"))
    assert not d, "vfmediate differs from vfio-pci:\n" + "\n".join(d)


# kind -> rules on a BAR0 page the fingerprint does not touch:
# (name, start, size, action, access)
UNTOUCHED = {
    "edu": [("far-r", 0x80000, 4, "deny", "r"),
            ("far-pass", 0x80100, 8, "pass", "rw")],
    "nvme": [("sq0-r", 0x1000, 4, "deny", "r"),
             ("cq1-pass", 0x100C, 4, "pass", "rw")],
}
# what those rules may change, and nothing else
RULED_LEAVES = {"info.regions.bar0", "info.bar0_info_big_argsz",
                "mmap.bar0.whole"}


def sparse_areas(caps):
    """The areas of a fingerprint's sparse-mmap capability, or None."""
    for cid, _, _, raw in caps:
        if cid == vfio.VFIO_REGION_INFO_CAP_SPARSE_MMAP:
            p = bytes.fromhex(raw)[8:]
            nr = int.from_bytes(p[:4], "little")
            return [(int.from_bytes(p[8 + 16 * i:16 + 16 * i], "little"),
                     int.from_bytes(p[16 + 16 * i:24 + 16 * i], "little"))
                    for i in range(nr)]
    return None


def payloads(caps):
    """(id, version, payload) of the capabilities, not where they sit
    (the last one's bytes run to the end of the buffer: its zeros)."""
    return sorted((cid, ver, bytes.fromhex(raw)[8:].rstrip(b"\0").hex())
                  for cid, ver, _, raw in caps
                  if cid != vfio.VFIO_REGION_INFO_CAP_SPARSE_MMAP)


def check_ruled_region(plain, ruled, rules, argsz=None):
    """BAR0's region info with rules, against vfio-pci's; @argsz: the
    one the fingerprint gave, large enough for every capability."""
    size = plain["size"]
    areas = mmap_areas(size, [(s, s + n) for _, s, n, _, _ in rules])
    assert (ruled["size"], ruled["offset"]) == (size, plain["offset"])
    assert ruled["flags"] == plain["flags"] | vfio.VFIO_REGION_INFO_FLAG_CAPS
    assert sparse_areas(plain["caps"]) is None
    assert sparse_areas(ruled["caps"]) == areas
    assert payloads(ruled["caps"]) == payloads(plain["caps"])
    if argsz:                           # room enough: left as given
        assert ruled["argsz"] == plain["argsz"] == argsz
    else:                               # what the capability adds
        assert ruled["argsz"] == max(plain["argsz"], 32) + 16 + \
            16 * len(areas)


@pytest.mark.parametrize("config", ["empty", "untouched"])
def test_fingerprint_parity_configured(target, bind, config):
    """vfmediate with a configfs directory: no rule (identical) or rules
    on a page the fingerprint never touches (identical but for what the
    rules change: see the top)."""
    kind, bdf = target
    bind(bdf, "vfio-pci")
    plain = parity.fingerprint(bdf, kind)
    bind(bdf, "vfmediate")
    rules = UNTOUCHED[kind] if config == "untouched" else []
    with Vfm(bdf) as v:
        for name, start, size, action, access in rules:
            v.add_rule("bar0", name, f"{start:#x}+{size}", action,
                       access=access)
        ruled = parity.fingerprint(bdf, kind)
        with Device(bdf):           # a table runs only with rules
            assert (v.generation != 0) == bool(rules)
        assert all(v.rule("bar0", r[0]).hits == 0 for r in rules)
    d = parity.diff(plain, ruled, ("vfio-pci", "vfmediate"))
    leaves = {ln.split(":")[0] for ln in d}
    want = RULED_LEAVES if rules else set()
    assert leaves == want, "\n".join(d)
    if rules:
        info, info2 = plain["info"], ruled["info"]
        check_ruled_region(ok(info["regions"]["bar0"]),
                           ok(info2["regions"]["bar0"]), rules)
        check_ruled_region(ok(info["bar0_info_big_argsz"]),
                           ok(info2["bar0_info_big_argsz"]), rules, 512)
        assert ruled["mmap"]["bar0"]["whole"] == ("errno", "EINVAL")


def test_fingerprint_diff_sees_differences(edu, bind):
    """The comparison itself: a changed leaf anywhere is reported."""
    bind(edu, "vfio-pci")
    a = parity.fingerprint(edu, "edu")
    b = parity.fingerprint(edu, "edu")
    assert parity.diff(a, b) == []
    cfg = bytearray.fromhex(b["config"]["bytes"][1])
    cfg[0x40] ^= 1
    b["config"]["bytes"] = ("ok", cfg.hex())
    b["info"]["irqs"]["msi"] = ("ok", (9, 2))
    b["feature"][1]["probe_get"] = 0
    d = parity.diff(a, b)
    assert len(d) == 3, d
    assert any(ln.startswith("config.bytes: @0x040:") for ln in d), d


# -- behaviour under each driver ------------------------------------------


@pytest.fixture(params=DRIVERS)
def driver(request):
    return request.param


def test_edu_registers(driver, edu, bind):
    bind(edu, driver)
    with Device(edu) as dev:
        dev.enable_bus_master()
        mm = dev.mmap(BAR0)
        try:
            assert vfio.mmio_read32(mm, parity.EDU_ID) == EDU_ID_VALUE
            for v in (0, 0xFFFFFFFF, 0xA5A55A5A):
                vfio.mmio_write32(mm, parity.EDU_LIVE, v)
                assert dev.read32(BAR0, parity.EDU_LIVE) == v ^ 0xFFFFFFFF
                dev.write32(BAR0, parity.EDU_LIVE, v)
                assert vfio.mmio_read32(mm, parity.EDU_LIVE) == v ^ 0xFFFFFFFF
        finally:
            mm.close()


def test_edu_msi(driver, edu, bind):
    bind(edu, driver)
    with Device(edu) as dev:
        dev.enable_bus_master()
        efd = vfio.new_eventfd()       # ours: disable_irqs() leaves it open
        dev.enable_irqs(IRQ_MSI, [efd])
        for status in (0x1, 0x80):
            dev.write32(BAR0, parity.EDU_IRQ_RAISE, status)
            assert vfio.wait_eventfd(efd, 5.0) == 1
            assert dev.read32(BAR0, parity.EDU_IRQ_STATUS) == status
            dev.write32(BAR0, parity.EDU_IRQ_ACK, status)
        dev.disable_irqs(IRQ_MSI)
        # disabled: a raised interrupt reaches no eventfd
        dev.write32(BAR0, parity.EDU_IRQ_RAISE, 0x1)
        assert dev.read32(BAR0, parity.EDU_IRQ_STATUS) == 0x1
        assert vfio.wait_eventfd(efd, 0.2) is None
        dev.write32(BAR0, parity.EDU_IRQ_ACK, 0x1)
        os.close(efd)


def test_edu_dma_round_trip(driver, edu, bind):
    bind(edu, driver)
    with Device(edu) as dev:
        dev.enable_bus_master()
        c = dev.container
        src = c.dma_map(0x100000, 4096)
        dst = c.dma_map(0x200000, 4096)
        pattern = os.urandom(4096)
        src.mem[:4096] = pattern
        assert parity.edu_dma(dev, 0x100000, parity.EDU_DMA_BUF, 4096,
                              True)[0] == "done"
        assert parity.edu_dma(dev, parity.EDU_DMA_BUF, 0x200000, 4096,
                              False)[0] == "done"
        assert dst.mem[:4096] == pattern
        assert c.dma_unmap(0x100000, 4096) == 4096
        assert c.dma_unmap(0x200000, 4096) == 4096


def test_nvme_vf_msix_and_reset(driver, nvme_vf, bind):
    bind(nvme_vf, driver)
    with Device(nvme_vf) as dev:
        assert dev.irq_info(IRQ_MSIX).count == 1
        (efd,) = dev.enable_irqs(IRQ_MSIX, 1)
        dev.trigger_irq(IRQ_MSIX, 0, 1)
        assert vfio.wait_eventfd(efd, 5.0) == 1
        dev.disable_irqs(IRQ_MSIX)
        dev.reset()
        assert dev.read32(BAR0, NVME_VS) == NVME_VS_1_4
        mm = dev.mmap(BAR0, 0, 4096)
        try:
            assert vfio.mmio_read32(mm, NVME_VS) == NVME_VS_1_4
        finally:
            mm.close()


def test_reset_and_features(driver, target, bind):
    kind, bdf = target
    bind(bdf, driver)
    with Device(bdf) as dev:
        if kind == "nvme":
            dev.reset()
        else:
            with pytest.raises(vfio.VfioError) as e:
                dev.reset()
            assert e.value.errno == errno.EINVAL
        assert dev.probe_feature(vfio.FEATURE_MIGRATION) == errno.ENOTTY
        assert dev.probe_feature(vfio.VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY,
                                 get=False, set=True) == 0


def test_req_eventfd(driver, nvme_vf, bind):
    bind(nvme_vf, driver)
    with Device(nvme_vf) as dev:
        assert dev.irq_info(IRQ_REQ).count == 1
        (efd,) = dev.enable_irqs(IRQ_REQ, 1)
        dev.trigger_irq(IRQ_REQ, 0, 1)
        assert vfio.wait_eventfd(efd, 2.0) == 1
        dev.disable_irqs(IRQ_REQ)


def test_config_region_matches_sysfs(driver, target, bind):
    """The parts of config space vfio-pci passes through unchanged."""
    kind, bdf = target
    bind(bdf, driver)
    with Device(bdf) as dev:
        cfg = dev.config_bytes(0, dev.region_info(CONFIG).size)
    host = pci.read_config(bdf)
    assert len(cfg) == len(host)
    for off, size in [(0x08, 4), (0x0E, 1), (0x2C, 4)]:
        assert cfg[off:off + size] == host[off:off + size], hex(off)
