# SPDX-License-Identifier: GPL-2.0
"""PCI sysfs helpers for the vfmediate tests (pure Python, needs root).

Binding follows what driverctl and libvirt do::

    import pci
    bdf = pci.find_functions(0x1234, 0x11e8)[0]     # or find_functions("1234:11e8")
    pci.modprobe("vfio-pci")
    prev = pci.bind(bdf, "vfio-pci")   # driver_override + unbind + drivers_probe
    ...
    pci.restore(bdf)                   # clear override, unbind (reprobe=True
                                       # to hand it back to its default driver)

Also: current driver, IOMMU group, vendor/device ids, the sysfs ``config``
file, BAR sizes from ``resource``, and SR-IOV (sriov_numvfs, virtfnN).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from typing import Optional, Union

SYSFS_PCI = "/sys/bus/pci"
DEVICES = f"{SYSFS_PCI}/devices"
DRIVERS = f"{SYSFS_PCI}/drivers"

IORESOURCE_IO = 0x00000100
IORESOURCE_MEM = 0x00000200
IORESOURCE_PREFETCH = 0x00002000
IORESOURCE_MEM_64 = 0x00100000


def dev_path(bdf: str, *parts: str) -> str:
    return os.path.join(DEVICES, normalize_bdf(bdf), *parts)


def normalize_bdf(bdf: str) -> str:
    """'00:03.0' -> '0000:00:03.0' (lower case)."""
    bdf = bdf.strip().lower()
    if bdf.count(":") == 1:
        bdf = "0000:" + bdf
    return bdf


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _write(path: str, value: str) -> None:
    # One write(2) of the whole string, as sysfs store methods expect.
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _hexint(s: str) -> int:
    return int(s, 16)


# -- identity ------------------------------------------------------------------

def exists(bdf: str) -> bool:
    return os.path.isdir(dev_path(bdf))


def vendor_device(bdf: str) -> tuple[int, int]:
    return (_hexint(_read(dev_path(bdf, "vendor"))),
            _hexint(_read(dev_path(bdf, "device"))))


def find_functions(vendor: Union[int, str], device: Optional[int] = None
                   ) -> list[str]:
    """BDFs of all functions with the given ids, sorted.

    ``vendor`` may be "vvvv:dddd" (device then omitted); ``device`` None
    matches any device of the vendor."""
    if isinstance(vendor, str):
        v, _, d = vendor.partition(":")
        vendor = int(v, 16)
        device = int(d, 16) if d else None
    out = []
    for bdf in sorted(os.listdir(DEVICES)):
        try:
            v, d = vendor_device(bdf)
        except OSError:
            continue
        if v == vendor and (device is None or d == device):
            out.append(bdf)
    return out


def driver(bdf: str) -> Optional[str]:
    """Name of the bound driver, or None."""
    try:
        return os.path.basename(os.readlink(dev_path(bdf, "driver")))
    except FileNotFoundError:
        return None


def driver_override(bdf: str) -> Optional[str]:
    v = _read(dev_path(bdf, "driver_override"))
    return None if v in ("", "(null)") else v


def iommu_group(bdf: str) -> Optional[int]:
    try:
        return int(os.path.basename(os.readlink(dev_path(bdf, "iommu_group"))))
    except FileNotFoundError:
        return None


def iommu_group_devices(bdf: str) -> list[str]:
    g = iommu_group(bdf)
    if g is None:
        return []
    return sorted(os.listdir(f"/sys/kernel/iommu_groups/{g}/devices"))


# -- binding ---------------------------------------------------------------------

def modprobe(*names: str) -> None:
    """modprobe each module (raises CalledProcessError on failure)."""
    for n in names:
        subprocess.run(["modprobe", n], check=True, capture_output=True)


def unbind(bdf: str) -> Optional[str]:
    """Unbind from the current driver; returns its name (None if unbound)."""
    drv = driver(bdf)
    if drv is not None:
        _write(dev_path(bdf, "driver", "unbind"), normalize_bdf(bdf))
    return drv


def probe(bdf: str) -> None:
    """Ask the PCI core to attach a driver (honours driver_override)."""
    _write(f"{SYSFS_PCI}/drivers_probe", normalize_bdf(bdf))


def set_override(bdf: str, drv: Optional[str]) -> None:
    """Set driver_override, or clear it with None."""
    _write(dev_path(bdf, "driver_override"), (drv or "") + "\n")


def bind(bdf: str, drv: str, timeout: float = 5.0) -> Optional[str]:
    """Bind a function to ``drv`` the driverctl/libvirt way: write
    driver_override, unbind from the current driver, write the BDF to
    drivers_probe. Returns the previous driver (None if it had none).

    Raises RuntimeError if, after ``timeout`` s, the function is not bound
    to ``drv`` (module not loaded, probe failed: see dmesg)."""
    bdf = normalize_bdf(bdf)
    set_override(bdf, drv)
    prev = driver(bdf)
    if prev == drv:
        return prev
    unbind(bdf)
    probe(bdf)
    deadline = time.monotonic() + timeout
    while driver(bdf) != drv:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{bdf}: not bound to {drv} after drivers_probe "
                f"(driver={driver(bdf)}, "
                f"{'driver loaded' if os.path.isdir(f'{DRIVERS}/{drv}') else 'driver not loaded'})")
        time.sleep(0.02)
    return prev


def restore(bdf: str, reprobe: bool = False) -> None:
    """Undo bind(): clear driver_override ("\\n") and unbind. With
    ``reprobe`` the function is then probed so its default driver (if any
    is loaded) takes it."""
    bdf = normalize_bdf(bdf)
    set_override(bdf, None)
    unbind(bdf)
    if reprobe:
        probe(bdf)


def bind_new_id(drv: str, vendor: int, device: int) -> None:
    """The older way (new_id); prefer bind()."""
    _write(f"{DRIVERS}/{drv}/new_id", f"{vendor:04x} {device:04x}")


# -- config space and resources -------------------------------------------------

def read_config(bdf: str, offset: int = 0, size: Optional[int] = None
                ) -> bytes:
    """Bytes of the sysfs ``config`` file (the host view, not VFIO's
    virtualized one). Without root only the first 64 bytes are readable."""
    with open(dev_path(bdf, "config"), "rb") as f:
        f.seek(offset)
        return f.read() if size is None else f.read(size)


def config_read(bdf: str, offset: int, size: int = 4) -> int:
    return int.from_bytes(read_config(bdf, offset, size), "little")


def config_write(bdf: str, offset: int, value: int, size: int = 4) -> None:
    fd = os.open(dev_path(bdf, "config"), os.O_WRONLY)
    try:
        os.pwrite(fd, value.to_bytes(size, "little"), offset)
    finally:
        os.close(fd)


@dataclass
class Resource:
    index: int
    start: int
    end: int
    flags: int

    @property
    def size(self) -> int:
        return 0 if self.end == 0 and self.start == 0 else \
            self.end - self.start + 1

    @property
    def is_io(self) -> bool:
        return bool(self.flags & IORESOURCE_IO)

    @property
    def is_mem(self) -> bool:
        return bool(self.flags & IORESOURCE_MEM)

    @property
    def is_64(self) -> bool:
        return bool(self.flags & IORESOURCE_MEM_64)

    @property
    def prefetchable(self) -> bool:
        return bool(self.flags & IORESOURCE_PREFETCH)


def resources(bdf: str) -> list[Resource]:
    """Lines of the sysfs ``resource`` file: BAR0..5, ROM (6), then
    bridge windows / SR-IOV BARs (7..)."""
    out = []
    with open(dev_path(bdf, "resource")) as f:
        for i, line in enumerate(f):
            s, e, fl = (int(x, 16) for x in line.split())
            out.append(Resource(i, s, e, fl))
    return out


def bar_sizes(bdf: str) -> list[int]:
    """Sizes of BAR0..BAR5 (0 = unimplemented)."""
    return [r.size for r in resources(bdf)[:6]]


def rom_size(bdf: str) -> int:
    res = resources(bdf)
    return res[6].size if len(res) > 6 else 0


# -- SR-IOV ------------------------------------------------------------------------

def sriov_totalvfs(pf: str) -> int:
    try:
        return int(_read(dev_path(pf, "sriov_totalvfs")))
    except FileNotFoundError:
        return 0


def sriov_numvfs(pf: str) -> int:
    return int(_read(dev_path(pf, "sriov_numvfs")))


def sriov_set_numvfs(pf: str, n: int, autoprobe: Optional[bool] = None
                     ) -> list[str]:
    """Set the VF count (via 0 when changing a non-zero count); optionally
    set sriov_drivers_autoprobe first. Returns the VFs' BDFs."""
    if autoprobe is not None:
        _write(dev_path(pf, "sriov_drivers_autoprobe"),
               "1" if autoprobe else "0")
    cur = sriov_numvfs(pf)
    if cur != n:
        if cur and n:
            _write(dev_path(pf, "sriov_numvfs"), "0")
        _write(dev_path(pf, "sriov_numvfs"), str(n))
    return vfs(pf)


def vfs(pf: str) -> list[str]:
    """BDFs of the PF's VFs, in VF-number order."""
    out = []
    i = 0
    while True:
        link = dev_path(pf, f"virtfn{i}")
        if not os.path.islink(link):
            return out
        out.append(os.path.basename(os.readlink(link)))
        i += 1


def physfn(vf: str) -> Optional[str]:
    try:
        return os.path.basename(os.readlink(dev_path(vf, "physfn")))
    except FileNotFoundError:
        return None
