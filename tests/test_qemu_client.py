# SPDX-License-Identifier: GPL-2.0
"""QEMU as a real VFIO client of an NVMe VF on vfio-pci and on vfmediate.

Inside the test guest the host's qemu-system-x86_64 (visible over 9p)
starts a minimal machine, stopped (-S), with ``-device vfio-pci,host=VF``.
Through QMP the test checks that the device is realized with the VF's IDs
and BAR sizes, lets SeaBIOS run until it has assigned the BARs, stops the
machine again and reads the VF's NVMe CAP and VS registers through QEMU's
memory view (``xp``): QEMU's access goes to the BAR's mmap, or with
``x-no-mmap=on`` through read() on the device fd. Then ``quit``. Runs on
vfio-pci, on vfmediate and on vfmediate with x-no-mmap=on must agree.

Nested emulation is slow: each run takes about 10 s and every wait is
bounded.
"""
import re
import time

import pytest

import pci
import qmp
from parity import NVME_VS_1_4
from vfio import BAR0, Device

QEMU = "/usr/bin/qemu-system-x86_64"
CONFIGS = [("vfio-pci", False), ("vfmediate", False), ("vfmediate", True)]
BAR_WAIT = 120      # s for SeaBIOS to assign BARs under nested TCG


def config_id(c):
    return c[0] + ("-nommap" if c[1] else "")


def find_dev(pcis, qdev_id="hostdev0"):
    for bus in pcis:
        for d in bus["devices"]:
            if d.get("qdev_id") == qdev_id:
                return d
    raise AssertionError(f"{qdev_id} not in query-pci: {pcis!r}")


def xp_words(vm, addr, n):
    """n 32-bit words of guest-physical memory at addr, via HMP xp."""
    out = vm.qmp.hmp(f"xp /{n}wx {addr:#x}")
    words = [int(w, 16) for w in re.findall(r"\b0x([0-9a-f]{8})\b", out)]
    assert len(words) == n, out
    return words


def run_qemu(vf, no_mmap, sock_dir):
    dev = f"vfio-pci,host={vf},id=hostdev0" + (",x-no-mmap=on" if no_mmap
                                               else "")
    r = {}
    with qmp.Qemu(["-M", "q35", "-m", "64M", "-nodefaults", "-display",
                   "none", "-S", "-accel", "tcg", "-device", dev],
                  str(sock_dir), binary=QEMU) as vm:
        r["realized"] = vm.qmp.cmd("qom-get", path="/machine/peripheral/"
                                   "hostdev0", property="realized")
        r["stopped"] = find_dev(vm.qmp.cmd("query-pci"))
        # SeaBIOS assigns the BARs; stop it once BAR0 has an address
        vm.qmp.cmd("cont")
        deadline = time.monotonic() + BAR_WAIT
        while True:
            d = find_dev(vm.qmp.cmd("query-pci"))
            if d["regions"][0]["address"] >= 0:
                break
            assert time.monotonic() < deadline, \
                "SeaBIOS did not assign the VF's BAR0"
            time.sleep(0.25)
        vm.qmp.cmd("stop")
        r["running"] = find_dev(vm.qmp.cmd("query-pci"))
        base = r["running"]["regions"][0]["address"]
        r["cap_vs"] = xp_words(vm, base, 3)     # CAP (64 bit), VS
        r["status"] = vm.qmp.cmd("query-status")["status"]
        r["exit"] = vm.quit()
    r["output"] = vm.output
    return r


@pytest.fixture(scope="module")
def qemu_runs(nvme_vf, tmp_path_factory):
    """config -> result, each configuration run at most once."""
    cache = {}
    sock_dir = tmp_path_factory.mktemp("qemu")

    def get(config):
        if config not in cache:
            drv, no_mmap = config
            pci.bind(nvme_vf, drv)
            try:
                cache[config] = run_qemu(nvme_vf, no_mmap, sock_dir)
                # QEMU let go of the device: it opens again
                with Device(nvme_vf) as d:
                    assert d.read32(BAR0, 0x08) == NVME_VS_1_4
                    cache[config]["direct_cap"] = (d.read32(BAR0, 0),
                                                   d.read32(BAR0, 4))
            finally:
                pci.restore(nvme_vf)
        return cache[config]
    return get


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_qemu_realizes_vf(config, qemu_runs, nvme_vf):
    r = qemu_runs(config)
    assert r["realized"] is True
    vendor, device = pci.vendor_device(nvme_vf)
    sizes = pci.bar_sizes(nvme_vf)
    subsys = tuple(int(open(pci.dev_path(nvme_vf, f)).read(), 16)
                   for f in ("subsystem_vendor", "subsystem_device"))
    for state in ("stopped", "running"):
        d = r[state]
        assert (d["id"]["vendor"], d["id"]["device"]) == (vendor, device)
        assert (d["id"]["subsystem-vendor"], d["id"]["subsystem"]) == subsys
        assert {reg["bar"]: reg["size"] for reg in d["regions"]} == \
            {i: s for i, s in enumerate(sizes) if s}
    assert all(reg["address"] == -1 for reg in r["stopped"]["regions"])
    # registers read by QEMU = registers read by us through VFIO
    assert tuple(r["cap_vs"][:2]) == r["direct_cap"] != (0, 0)
    assert r["cap_vs"][2] == NVME_VS_1_4
    assert r["status"] == "paused"
    assert r["exit"] == 0
    assert r["output"].strip() == ""


def test_qemu_same_result_on_both_drivers(qemu_runs):
    base = qemu_runs(CONFIGS[0])
    for c in CONFIGS[1:]:
        assert qemu_runs(c) == base, config_id(c)
