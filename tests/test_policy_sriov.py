# SPDX-License-Identifier: GPL-2.0
"""Pre-provisioned configuration: devices/<BDF> made for a VF that does
not exist yet applies when the VF is created, bound and opened; a rule
that does not fit the VF's geometry fails that open.

The test removes the NVMe VFs (sriov_numvfs=0) and creates them again the
way tests/vm/guest-init does (tests/lib/policy.vfs_online), so later tests
find them as before: same addresses, unbound, online.
"""
import errno

import pytest

import pci
from policy import (NVME_AQA, NVME_BAR0_SIZE, NVME_CAP, NVME_VS, PAGE,
                    attempt, vfs_online)
from vfio import BAR0, Device, VfioError
from vfm import Vfm

VFM = "vfmediate"


pytestmark = pytest.mark.usefixtures("no_config_left")


def test_preprovisioned_vf(nvme_vfs):
    assert len(nvme_vfs) >= 2, "needs two VFs (tests/vm/run --vfs 2)"
    vf, other = nvme_vfs[:2]
    pf = pci.physfn(vf)
    n = pci.sriov_numvfs(pf)
    for b in nvme_vfs:
        pci.restore(b)
    online = False
    try:
        pci.sriov_set_numvfs(pf, 0)
        assert not pci.exists(vf) and not pci.exists(other)
        with Vfm(vf) as v, Vfm(other) as w:
            assert v.state == w.state == "absent"
            vs = v.add_rule("bar0", "hide-vs", "0x8-0xb", "deny")
            aqa = v.add_rule("bar0", "aqa-ro", "0x24-0x27", "ro")
            line = v.add_rule("config", "irq-line", "0x3c+1", "ignore")
            # the VF's BAR0 is 16 KiB: unknown until it exists
            w.add_rule("bar0", "too-big", "0x0-0x7fff", "deny")

            assert vfs_online(pf, n) == nvme_vfs
            online = True
            assert v.state == "absent"          # there, but not ours yet
            pci.bind(vf, VFM)
            assert v.state == "bound"
            with Device(vf) as dev:
                assert (v.state, v.generation, v.pending) == \
                    ("open", 1, False)
                dev.enable_bus_master()
                assert dev.read32(BAR0, NVME_CAP) != 0     # online
                assert attempt(dev.read32, BAR0, NVME_VS) == "EACCES"
                aqa0 = dev.read32(BAR0, NVME_AQA)
                assert attempt(dev.write32, BAR0, NVME_AQA, 0x001F001F) == \
                    "EPERM"
                assert dev.read32(BAR0, NVME_AQA) == aqa0
                assert dev.config_read8(0x3C) == 0
                assert dev.region_info(BAR0).sparse_areas == [
                    (PAGE, NVME_BAR0_SIZE - PAGE)]
            assert (vs.hits, aqa.hits, line.hits) == (1, 3, 1)

            pci.bind(other, VFM)
            assert w.state == "bound"
            with pytest.raises(VfioError) as e:
                Device(other)
            assert e.value.errno == errno.ERANGE
            assert w.error == ("bar0/rules/too-big: range 0x0-0x7fff "
                               "outside the region (0x4000 bytes)")
            assert w.state == "bound"
            for b in (vf, other):
                pci.restore(b)
            assert v.state == w.state == "absent"
    finally:
        for b in nvme_vfs:
            if pci.exists(b):
                pci.restore(b)
        if not online:
            vfs_online(pf, n)
    assert pci.vfs(pf) == nvme_vfs
