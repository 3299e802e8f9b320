# SPDX-License-Identifier: GPL-2.0
"""The iommufd path: a function opened through its VFIO device cdev
(/dev/vfio/devices/vfioN), bound to /dev/iommu and attached to an IOAS.

vfmediate's .bind_iommufd/.attach_ioas/.detach_ioas ops run only here,
so only the debug kernel (CONFIG_IOMMUFD, CONFIG_VFIO_DEVICE_CDEV) runs
these tests; on Debian's kernels they are skipped.

Every check is made on both drivers and compared: a vfmediate function
with no mediator and no rules must look exactly like a vfio-pci one, and
the cdev path must give the same answers as the group/container path.
"""
import time

import pytest

import iommufd
import vfio
from vfio import BAR0, CONFIG

pytestmark = pytest.mark.skipif(iommufd.unavailable() is not None,
                                reason=str(iommufd.unavailable()))

DRIVERS = ["vfio-pci", "vfmediate"]


@pytest.fixture(autouse=True)
def _cdev(vfio_modules):
    # With vfio loaded (conftest), whether the kernel has device cdevs.
    why = iommufd.unavailable()
    if why:
        pytest.skip(why)
EDU_ID_REG = 0x010000ED


def snapshot(dev):
    """What a VMM learns from a device fd before touching the device."""
    info = dev.get_info()
    regions = {}
    for idx, r in dev.regions().items():
        regions[idx] = (r.size, r.flags, r.offset,
                        [(c.id, c.version, c.raw[8:]) for c in r.caps])
    irqs = {idx: (i.flags, i.count) for idx, i in dev.irqs().items()}
    return {
        "flags": info.flags,
        "num_regions": info.num_regions,
        "num_irqs": info.num_irqs,
        "regions": regions,
        "irqs": irqs,
        "config": dev.config_bytes(0, 64),
    }


def open_cdev(bdf):
    ictx = iommufd.IommuFD()
    try:
        ioas = ictx.ioas_alloc()
        dev = iommufd.CdevDevice(bdf, ictx, ioas)
    except BaseException:
        ictx.close()
        raise
    return ictx, ioas, dev


@pytest.fixture(params=["edu", "nvme_vf"])
def fn(request):
    return request.param, request.getfixturevalue(request.param)


def test_bind_attach_detach(bind, fn):
    for drv in DRIVERS:
        bind(fn[1], drv)
        ictx, ioas, dev = open_cdev(fn[1])
        with ictx, dev:
            assert dev.devid and dev.devid != ioas
            assert dev.pt_id is not None
            dev.detach()
            dev.attach(ioas)


def test_cdev_matches_between_drivers(bind, fn):
    """vfio-pci vs. vfmediate through the cdev: same info, regions, irqs,
    config header; and the same as each driver's group path."""
    seen = {}
    for drv in DRIVERS:
        bind(fn[1], drv)
        ictx, _, dev = open_cdev(fn[1])
        with ictx, dev:
            seen[drv, "cdev"] = snapshot(dev)
        with vfio.Device(fn[1]) as dev:
            seen[drv, "group"] = snapshot(dev)
    ref = seen["vfio-pci", "group"]
    for k, v in seen.items():
        assert v == ref, f"{k} differs from vfio-pci through a group"


def test_bar0_reads_match(bind, edu, nvme_vf):
    """pread of live registers through the cdev, on both drivers."""
    got = {}
    for bdf in (edu, nvme_vf):
        for drv in DRIVERS:
            bind(bdf, drv)
            ictx, _, dev = open_cdev(bdf)
            with ictx, dev:
                dev.enable_bus_master()
                got[bdf, drv] = (dev.read32(BAR0, 0x00), dev.read32(BAR0, 0x08),
                                 dev.pread(CONFIG, 0, 16))
                if bdf == edu:
                    assert got[bdf, drv][0] == EDU_ID_REG
                    dev.write32(BAR0, 0x04, 0x5A5A1234)
                    assert dev.read32(BAR0, 0x04) == 0x5A5A1234 ^ 0xFFFFFFFF
    for bdf in (edu, nvme_vf):
        assert got[bdf, "vfio-pci"] == got[bdf, "vfmediate"], bdf


def edu_dma(dev, src, dst, count, to_device):
    dev.write64(BAR0, 0x80, src)
    dev.write64(BAR0, 0x88, dst)
    dev.write64(BAR0, 0x90, count)
    dev.write64(BAR0, 0x98, 0x1 | (0 if to_device else 0x2))
    deadline = time.monotonic() + 5
    while dev.read64(BAR0, 0x98) & 0x1:
        assert time.monotonic() < deadline, "edu DMA did not complete"
        time.sleep(0.001)


@pytest.mark.parametrize("drv", DRIVERS)
def test_edu_dma_through_ioas(bind, edu, drv):
    """IOMMU_IOAS_MAP two buffers (edu's DMA mask is 28 bits: fixed IOVAs
    below it), copy one into edu's memory and back into the other."""
    bind(edu, drv)
    ictx, ioas, dev = open_cdev(edu)
    with ictx, dev:
        dev.enable_bus_master()
        src = ictx.map(ioas, 4096, iova=0x100000)
        dst = ictx.map(ioas, 4096, iova=0x200000)
        pattern = bytes((i * 7) & 0xFF for i in range(4096))
        src.mem[:4096] = pattern
        edu_dma(dev, 0x100000, 0x40000, 4096, to_device=True)
        edu_dma(dev, 0x40000, 0x200000, 4096, to_device=False)
        assert dst.mem[:4096] == pattern
        assert ictx.unmap(ioas, 0x100000, 4096) == 4096
        assert ictx.unmap(ioas, 0x200000, 4096) == 4096


def test_reopen_after_close(bind, edu):
    """Open, close, open again through the cdev: the first close must have
    undone the bind (the second bind would fail with EBUSY/EINVAL)."""
    bind(edu, "vfmediate")
    for _ in range(3):
        ictx, _, dev = open_cdev(edu)
        with ictx, dev:
            assert dev.read32(BAR0, 0x00) == EDU_ID_REG
