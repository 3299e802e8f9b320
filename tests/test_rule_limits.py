# SPDX-License-Identifier: GPL-2.0
"""What rules cannot guard, made visible (vfmediate-configfs(5)).

- warning: a BAR a VFIO user mmap'ed while the function was bound to
  vfmediate may have been DMA-mapped into its IOMMU container, where the
  mapping outlives the mmap and any rule added later. Opening the device
  with rules on such a BAR says so in devices/<BDF>/warning; without
  rules there, or before any mmap, it stays empty.
- isolation: whether the function is alone in its IOMMU group (peers in
  the group reach it by peer-to-peer DMA, which no rule sees), "unbound"
  while it is not bound to vfmediate; the peers listed are exactly the
  other members of /sys/kernel/iommu_groups/<N>/devices.
"""
import os

import pytest

import pci
from vfio import BAR0, Device
from vfm import Vfm

VFM = "vfmediate"
PAGE = 4096
WARN = ("bar0 was mmap'ed before its current rules: DMA mappings made "
        "then may still reach ruled pages")


pytestmark = pytest.mark.usefixtures("no_config_left")


def group_peers(bdf):
    link = f"/sys/bus/pci/devices/{bdf}/iommu_group"
    if not os.path.exists(link):
        return None
    members = os.listdir(os.path.join(link, "devices"))
    return sorted(m for m in members if m != bdf)


def open_close(bdf, mmap_bar0=False):
    with Device(bdf) as dev:
        if mmap_bar0:
            dev.mmap(BAR0, 0, PAGE).close()


def test_no_warning_without_an_earlier_mmap(edu, bind):
    bdf = bind(edu, VFM)
    with Vfm(bdf) as v:
        v.add_rule("bar0", "ro", "0x4-0x7", "ro")
        open_close(bdf)
        assert v.read("warning") == ""


def test_warning_after_mmap_then_rule(edu, bind):
    bdf = bind(edu, VFM)
    with Vfm(bdf) as v:
        assert v.read("warning") == ""
        open_close(bdf, mmap_bar0=True)         # no rules: plain mmap
        assert v.read("warning") == ""          # nothing guarded yet
        v.add_rule("config", "c", "0x2c-0x2f", "ro")
        open_close(bdf)
        assert v.read("warning") == ""          # no rule on BAR0
        v.add_rule("bar0", "ro", "0x4-0x7", "ro")
        open_close(bdf)
        assert v.read("warning") == WARN
        v.remove_rule("bar0", "ro")
        open_close(bdf)
        assert v.read("warning") == ""


def test_warning_cleared_by_rebinding(edu, bind):
    bdf = bind(edu, VFM)
    with Vfm(bdf) as v:
        open_close(bdf, mmap_bar0=True)
        v.add_rule("bar0", "ro", "0x4-0x7", "ro")
        open_close(bdf)
        assert v.read("warning") == WARN
        pci.unbind(bdf)                         # unbind, bind again
        bind(edu, VFM)
        assert v.read("warning") == ""
        open_close(bdf)
        assert v.read("warning") == ""


@pytest.mark.parametrize("fn", ["edu", "nvme_vf"])
def test_isolation(request, bind, fn):
    bdf = request.getfixturevalue(fn)
    with Vfm(bdf) as v:
        assert v.read("isolation") == "unbound"
        bind(bdf, VFM)
        peers = group_peers(bdf)
        if peers is None:
            assert v.read("isolation") == "none"
        elif not peers:
            assert v.read("isolation") == "singleton"
        else:
            assert v.read("isolation") == "shared " + " ".join(peers)
