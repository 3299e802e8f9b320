# SPDX-License-Identifier: GPL-2.0
"""vfmediate.ko's life: binding only by driver_override, no modules.alias
entry, module references across bind/open/close/unbind, refusing rmmod
while a device is open, and the removal of an open VF.

The last test removes the NVMe VFs (sriov_numvfs=0) and re-creates them
the way tests/vm/guest-init does, so that later tests find them again;
the rmmod test loads vfmediate again before it ends.
"""
import ctypes
import errno
import os
import subprocess
import threading

import pytest

from budget import scaled
import pci
import vfio
from parity import NVME_VS, NVME_VS_1_4
from vfio import Device, IRQ_REQ

MOD = "vfmediate"
SYSMOD = f"/sys/module/{MOD}"
DRV = f"/sys/bus/pci/drivers/{MOD}"


def refcnt():
    with open(f"{SYSMOD}/refcnt") as f:
        return int(f.read())


def holders():
    try:
        return sorted(os.listdir(f"{SYSMOD}/holders"))
    except FileNotFoundError:
        return []


def bound_devices():
    if not os.path.isdir(DRV):
        return []
    return sorted(d for d in os.listdir(DRV) if d.count(":") == 2)


_libc = ctypes.CDLL(None, use_errno=True)
SYS_delete_module = 176         # x86_64


def delete_module(name):
    """delete_module(2) as rmmod calls it (O_NONBLOCK); 0 or the errno."""
    r = _libc.syscall(SYS_delete_module, name.encode(), os.O_NONBLOCK)
    return 0 if r == 0 else ctypes.get_errno()


class Kmsg:
    """Kernel log records (level, text) written after construction."""

    def __init__(self):
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)

    def read(self):
        out = []
        while True:
            try:
                rec = os.read(self.fd, 8192).decode(errors="replace")
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EPIPE:
                    continue
                raise
            if not rec:
                break
            head, _, text = rec.partition(";")
            out.append((int(head.split(",")[0]) & 7, text.rstrip("\n")))
        return out

    def close(self):
        os.close(self.fd)


def warnings_or_worse(records):
    """Records at KERN_WARNING or more severe, but the one known
    QEMU-NVMe-VF complaint of the PCI core (see conftest.TOLERATED)."""
    return [t for lvl, t in records
            if lvl <= 4 and "VF reports bogus INTx pin" not in t]


# -- binding ------------------------------------------------------------------

def test_modules_alias_has_no_vfmediate_line():
    """Tools that pick a VFIO variant driver from the vfio_pci: aliases
    (libvirt) must never be offered vfmediate: depmod (run by tests/vm/run
    over a tree holding our modules) wrote no alias for it at all."""
    d = f"/lib/modules/{os.uname().release}"
    with open(f"{d}/modules.dep") as f:
        assert any(ln.split(":")[0].endswith(f"/{MOD}.ko") for ln in f), \
            "vfmediate.ko is not in modules.dep: the alias check below " \
            "would prove nothing"
    with open(f"{d}/modules.alias") as f:
        lines = f.read().splitlines()
    assert any(ln.startswith("alias vfio_pci:") and ln.endswith(" vfio_pci")
               for ln in lines), "vfio-pci's own alias is missing"
    # none for vfmediate.ko; mediators (vfmediate_<name>.ko) have only
    # their "vfmediate-mediator:<name>" alias, no device (pci:, vfio_pci:)
    # alias that could load or choose them for a device
    assert [ln for ln in lines if ln.split()[-1] == MOD] == []
    assert [ln for ln in lines if ln.split()[-1].startswith(MOD + "_")
            and not ln.split()[1].startswith(MOD + "-mediator:")] == []
    r = subprocess.run(["modinfo", "-F", "alias", MOD], capture_output=True,
                       text=True, check=True)
    assert r.stdout.strip() == ""


@pytest.fixture
def unbound_edu(edu):
    """edu with no driver and no driver_override, restored after."""
    pci.restore(edu)
    assert pci.driver(edu) is None
    yield edu
    pci.restore(edu)


def test_not_taken_without_driver_override(unbound_edu):
    edu = unbound_edu
    # a probe by the PCI core: nothing claims it, vfmediate least of all
    # (the write to drivers_probe returns once the probe is over: none of
    # these drivers probes asynchronously)
    pci.probe(edu)
    assert pci.driver(edu) is None
    # an explicit bind to vfmediate: refused, the ID table being empty
    with pytest.raises(OSError) as e:
        pci._write(f"{DRV}/bind", edu)
    assert e.value.errno == errno.ENODEV
    assert pci.driver(edu) is None
    # overridden for another driver: that one takes it, not vfmediate
    pci.set_override(edu, "vfio-pci")
    pci.probe(edu)
    assert pci.driver(edu) == "vfio-pci"
    pci.unbind(edu)
    with pytest.raises(OSError) as e:
        pci._write(f"{DRV}/bind", edu)
    assert e.value.errno == errno.ENODEV
    assert edu not in bound_devices()


def test_bound_by_driver_override(unbound_edu):
    edu = unbound_edu
    pci.set_override(edu, MOD)
    pci.probe(edu)
    assert pci.driver(edu) == MOD
    assert edu in bound_devices()
    with Device(edu) as dev:
        assert dev.config_read16(0) == 0x1234
    pci.unbind(edu)
    # the sysfs bind file works too once the override names vfmediate
    pci._write(f"{DRV}/bind", edu)
    assert pci.driver(edu) == MOD


# -- module references ----------------------------------------------------------

CYCLES = scaled(50)


def test_bind_open_close_unbind_cycles(nvme_vf):
    """50 x (10 x under the debug kernel) (bind, open, use, close, unbind)
    leak no module reference and log nothing at warning level or worse."""
    vf = nvme_vf
    pci.restore(vf)
    base = refcnt()
    kmsg = Kmsg()
    try:
        for i in range(CYCLES):
            pci.bind(vf, MOD)
            with Device(vf) as dev:
                if i == 0:
                    assert refcnt() == base + 1, "an open device pins vfmediate"
                assert dev.read32(vfio.BAR0, NVME_VS) == NVME_VS_1_4
                if i % 10 == 0:
                    dev.enable_irqs(vfio.IRQ_MSIX, 1)
                    mm = dev.mmap(vfio.BAR0, 0, 4096)
                    assert vfio.mmio_read32(mm, NVME_VS) == NVME_VS_1_4
                    mm.close()
            assert refcnt() == base
            pci.restore(vf)
            assert pci.driver(vf) is None
        assert refcnt() == base
        assert vf not in bound_devices()
        bad = warnings_or_worse(kmsg.read())
        assert not bad, "kernel log:\n" + "\n".join(bad)
    finally:
        kmsg.close()
        pci.restore(vf)


def test_rmmod_refused_while_open(nvme_vf):
    """rmmod fails while a device fd is open (module stays, device keeps
    working), and succeeds after close + unbind; vfmediate is loaded again
    at the end."""
    vf = nvme_vf
    pci.restore(vf)
    # mediators loaded (on demand) by earlier tests hold vfmediate: unload
    # the idle ones now and load them again at the end
    mediators = holders()
    for m in mediators:
        subprocess.run(["rmmod", m], capture_output=True)
    assert refcnt() == 0 and holders() == [] and bound_devices() == [], (
        f"vfmediate in use before the test: refcnt {refcnt()}, holders "
        f"{holders()}, devices {bound_devices()} (leaked by an earlier test?)")
    try:
        pci.bind(vf, MOD)
        dev = Device(vf)
        try:
            assert delete_module(MOD) in (errno.EAGAIN, errno.EBUSY)
            r = subprocess.run(["rmmod", MOD], capture_output=True, text=True)
            assert r.returncode != 0
            assert "in use" in r.stderr
            assert os.path.isdir(SYSMOD) and pci.driver(vf) == MOD
            assert dev.read32(vfio.BAR0, NVME_VS) == NVME_VS_1_4
        finally:
            dev.close()
        pci.restore(vf)
        assert delete_module(MOD) == 0
        assert not os.path.exists(SYSMOD)
        assert not os.path.exists(DRV)
    finally:
        pci.restore(vf)
        pci.modprobe(MOD, *mediators)
    assert os.path.isdir(DRV) and holders() == mediators
    pci.bind(vf, MOD)
    with Device(vf) as dev:
        assert dev.read32(vfio.BAR0, NVME_VS) == NVME_VS_1_4
    pci.restore(vf)


# -- removal of an open VF (last: it re-creates the VFs) -------------------------

def recreate_vfs(pf, n):
    """As tests/vm/guest-init: N VFs, left unbound, their NVMe secondary
    controllers given queue and interrupt resources and brought online."""
    vfs = pci.sriov_set_numvfs(pf, n)
    ctrl = "/dev/" + sorted(os.listdir(pci.dev_path(pf, "nvme")))[0]
    for i in range(1, n + 1):
        for args in (["-r", "0", "-a", "8", "-n", "2"],
                     ["-r", "1", "-a", "8", "-n", "1"],
                     ["-r", "0", "-a", "9", "-n", "0"]):
            subprocess.run(["nvme", "virt-mgmt", ctrl, "-c", str(i)] + args,
                           check=True, capture_output=True, timeout=30)
    return vfs


def test_remove_open_vf(nvme_vfs):
    """sriov_numvfs=0 while a VF is open on vfmediate: vfio asks the user
    for the device through the REQ eventfd; once the fd (and a BAR mmap)
    are closed the removal completes. Nothing crashes, nothing leaks, and
    the VFs are re-created afterwards."""
    vf = nvme_vfs[-1]
    pf = pci.physfn(vf)
    n = pci.sriov_numvfs(pf)
    for b in nvme_vfs:
        pci.restore(b)
    base = refcnt()
    kmsg = Kmsg()
    writer = None
    try:
        pci.bind(vf, MOD)
        dev = Device(vf)
        req = vfio.new_eventfd()
        mm = None
        try:
            dev.enable_irqs(IRQ_REQ, [req])
            mm = dev.mmap(vfio.BAR0, 0, 4096)
            result = {}

            def remove():
                try:
                    pci._write(pci.dev_path(pf, "sriov_numvfs"), "0")
                    result["ok"] = True
                except OSError as e:
                    result["error"] = e
            writer = threading.Thread(target=remove, daemon=True)
            writer.start()
            assert vfio.wait_eventfd(req, 15.0), \
                "no device request on the REQ eventfd"
            # the removal waits for us; the device still answers
            assert writer.is_alive()
            assert dev.config_read16(0) == 0x1B36
        finally:
            if mm is not None:
                mm.close()
            dev.close()
            os.close(req)
        writer.join(30)
        assert not writer.is_alive(), "VF removal did not complete after close"
        assert result == {"ok": True}
        assert not pci.exists(vf)
        assert pci.sriov_numvfs(pf) == 0
        assert refcnt() == base
        records = kmsg.read()
        assert any("device request" in t.lower() for _, t in records), \
            "vfio did not log relaying the request"
        bad = warnings_or_worse(records)
        assert not bad, "kernel log:\n" + "\n".join(bad)
    finally:
        kmsg.close()
        if writer is not None:
            writer.join(30)
        if pci.sriov_numvfs(pf) != n:
            recreate_vfs(pf, n)
    assert pci.vfs(pf) == nvme_vfs
    for b in nvme_vfs:
        assert pci.driver(b) is None
    pci.bind(vf, MOD)
    try:
        with Device(vf) as d:
            assert d.read32(vfio.BAR0, NVME_VS) == NVME_VS_1_4
            assert d.config_read16(0) == 0x1B36
    finally:
        pci.restore(vf)
