# SPDX-License-Identifier: GPL-2.0
"""The VFIO client library against stock vfio-pci, on edu and an NVMe VF.

These pin down what the guest's devices look like through plain vfio-pci;
the parity suite then asks vfmediate for exactly the same answers.
"""
import errno
import os
import struct
import time

import pytest

import pci
import vfio
from vfio import BAR0, CONFIG, Device, IRQ_MSI, IRQ_MSIX, mmio_read32

EDU_ID_REG = 0x010000ED
NVME_VS_1_4 = 0x00010400


@pytest.fixture(params=["edu", "nvme_vf"])
def fn(request, bind):
    bdf = request.getfixturevalue(request.param)
    bind(bdf, "vfio-pci")
    return request.param, bdf


@pytest.fixture
def dev(fn):
    with Device(fn[1]) as d:
        yield d


def test_config_matches_sysfs(fn, dev):
    sysfs = pci.read_config(fn[1], 0, 64)
    cfg = dev.config_bytes(0, 64)
    # A VF's own vendor/device registers read 0xffff: vfio-pci fills in
    # the IDs the PCI core knows, the ones sysfs shows.
    vendor, device = pci.vendor_device(fn[1])
    assert struct.unpack_from("<HH", cfg, 0) == (vendor, device)
    # Revision, class, header type, subsystem IDs: not virtualized.
    for off, size in [(8, 4), (0x0E, 1), (0x2C, 4)]:
        assert cfg[off:off + size] == sysfs[off:off + size], hex(off)
    # Memory BARs read back the host's base address (vfio-pci emulates
    # BAR sizing but keeps the address bits). A VF's BAR registers are
    # zero in hardware (the PF's SR-IOV capability places them), and
    # vfio-pci's virtual copy starts from them: only the flags show.
    if pci.physfn(fn[1]):
        return
    for i, res in enumerate(pci.resources(fn[1])[:6]):
        if not res.size or not res.is_mem:
            continue
        bar = struct.unpack_from("<I", cfg, 0x10 + 4 * i)[0]
        assert bar & ~0xF == res.start & 0xFFFFFFF0


def test_bar_sizes_match_sysfs(fn, dev):
    sizes = pci.bar_sizes(fn[1])
    for i in range(6):
        assert dev.region_info(i).size == sizes[i], f"BAR{i}"
    assert dev.region_info(vfio.ROM).size == pci.rom_size(fn[1])
    assert dev.region_info(CONFIG).size == os.path.getsize(
        pci.dev_path(fn[1], "config"))


def test_device_info(dev):
    info = dev.get_info()
    assert info.is_pci
    assert info.num_regions >= vfio.VGA + 1
    assert info.num_irqs >= vfio.IRQ_REQ + 1


def test_bar0_pread_and_mmap_agree(fn, dev):
    dev.enable_bus_master()
    mm = dev.mmap(BAR0, 0, 4096)
    try:
        if fn[0] == "edu":
            assert dev.read32(BAR0, 0x00) == EDU_ID_REG
            assert mmio_read32(mm, 0x00) == EDU_ID_REG
        else:
            assert dev.read32(BAR0, 0x08) == NVME_VS_1_4
            assert mmio_read32(mm, 0x08) == NVME_VS_1_4
            assert dev.read64(BAR0, 0x00) != 0
            cap_lo = mmio_read32(mm, 0x00)
            assert dev.read32(BAR0, 0x00) == cap_lo
    finally:
        mm.close()


def test_edu_liveness_register(bind, edu):
    bind(edu, "vfio-pci")
    with Device(edu) as dev:
        dev.enable_bus_master()
        dev.write32(BAR0, 0x04, 0x12345678)
        assert dev.read32(BAR0, 0x04) == 0x12345678 ^ 0xFFFFFFFF


def test_edu_msi_eventfd(bind, edu):
    bind(edu, "vfio-pci")
    with Device(edu) as dev:
        dev.enable_bus_master()
        info = dev.irq_info(IRQ_MSI)
        assert info.count >= 1 and info.eventfd
        (efd,) = dev.enable_irqs(IRQ_MSI, 1)
        dev.write32(BAR0, 0x60, 0x1)          # raise interrupt, status 1
        assert vfio.wait_eventfd(efd, 5.0) is not None
        dev.write32(BAR0, 0x64, 0x1)          # acknowledge
        dev.disable_irqs(IRQ_MSI)


def test_nvme_vf_msix_setup_teardown(bind, nvme_vf):
    bind(nvme_vf, "vfio-pci")
    with Device(nvme_vf) as dev:
        info = dev.irq_info(IRQ_MSIX)
        # The VF got one interrupt vector from the PF (tests/vm/guest-init).
        assert info.count >= 1 and info.eventfd
        efds = dev.enable_irqs(IRQ_MSIX, info.count)
        dev.trigger_irq(IRQ_MSIX, 0, info.count)  # loopback to the eventfds
        for efd in efds:
            assert vfio.wait_eventfd(efd, 5.0) == 1
        dev.disable_irqs(IRQ_MSIX)


def test_reset(fn, dev):
    info = dev.get_info()
    if fn[0] == "nvme_vf":
        assert info.reset_supported           # VFs have FLR
    if info.reset_supported:
        dev.reset()
    else:
        with pytest.raises(vfio.VfioError) as e:
            dev.reset()
        assert e.value.errno == errno.EINVAL


def test_migration_feature_absent(dev):
    assert dev.probe_feature(vfio.FEATURE_MIGRATION) != 0


def test_edu_dma_round_trip(bind, edu):
    """Map two buffers, have edu copy one to its memory and back into the
    other: proves the IOMMU mapping is real; then unmap both."""
    bind(edu, "vfio-pci")
    with Device(edu) as dev:
        dev.enable_bus_master()
        src = dev.container.dma_map(0x100000, 4096)
        dst = dev.container.dma_map(0x200000, 4096)
        pattern = bytes(range(256)) * 16
        src.mem[:4096] = pattern
        edu_dma(dev, 0x100000, 0x40000, 4096, to_device=True)
        edu_dma(dev, 0x40000, 0x200000, 4096, to_device=False)
        assert dst.mem[:4096] == pattern
        assert dev.container.dma_unmap(0x100000, 4096) == 4096
        assert dev.container.dma_unmap(0x200000, 4096) == 4096


def edu_dma(dev, src, dst, count, to_device):
    dev.write64(BAR0, 0x80, src)
    dev.write64(BAR0, 0x88, dst)
    dev.write64(BAR0, 0x90, count)
    dev.write64(BAR0, 0x98, 0x1 | (0 if to_device else 0x2))
    deadline = time.monotonic() + 5
    while dev.read64(BAR0, 0x98) & 0x1:
        assert time.monotonic() < deadline, "edu DMA did not complete"
        time.sleep(0.001)
