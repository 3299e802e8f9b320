# SPDX-License-Identifier: GPL-2.0
"""VFIO through iommufd: the device cdev (/dev/vfio/devices/vfioN) bound
to an iommufd (/dev/iommu) and attached to an IO address space.

Only kernels built with CONFIG_IOMMUFD and CONFIG_VFIO_DEVICE_CDEV have
this path (the debug kernel does; Debian's 6.1 and 6.12 do not)::

    import iommufd
    reason = iommufd.unavailable()           # None, or why not (for a skip)
    with iommufd.IommuFD() as ictx:
        ioas = ictx.ioas_alloc()
        with iommufd.CdevDevice("0000:00:04.0", ictx, ioas) as dev:
            dev.devid                        # the iommufd device object id
            dev.get_info(); dev.region_info(vfio.BAR0); dev.read32(...)
            buf = ictx.map(ioas, 4096)       # DMA buffer at a kernel-chosen IOVA

A CdevDevice is a vfio.Device whose fd came from the cdev instead of a
group, so every vfio.Device method (info, regions, pread/pwrite, mmap,
irqs, features) works on it unchanged.

Layouts and numbers follow <linux/iommufd.h> and <linux/vfio.h> of v6.12.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import mmap as _mmap
import os
import time
from dataclasses import dataclass
from typing import Optional

import vfio
from vfio import VfioError, _ioctl, _open

IOMMU_PATH = "/dev/iommu"
CDEV_DIR = "/dev/vfio/devices"

_IOMMUFD_TYPE = ord(";")


def _iommufd_io(nr: int) -> int:
    return (_IOMMUFD_TYPE << 8) | nr


IOMMU_DESTROY = _iommufd_io(0x80)
IOMMU_IOAS_ALLOC = _iommufd_io(0x81)
IOMMU_IOAS_IOVA_RANGES = _iommufd_io(0x84)
IOMMU_IOAS_MAP = _iommufd_io(0x85)
IOMMU_IOAS_UNMAP = _iommufd_io(0x86)

IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0
IOMMU_IOAS_MAP_WRITEABLE = 1 << 1
IOMMU_IOAS_MAP_READABLE = 1 << 2

VFIO_DEVICE_BIND_IOMMUFD = vfio._IO(18)
VFIO_DEVICE_ATTACH_IOMMUFD_PT = vfio._IO(19)
VFIO_DEVICE_DETACH_IOMMUFD_PT = vfio._IO(20)


class iommu_destroy(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("id", ctypes.c_uint32)]


class iommu_ioas_alloc(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("out_ioas_id", ctypes.c_uint32)]


class iommu_iova_range(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("last", ctypes.c_uint64)]


class iommu_ioas_iova_ranges(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("ioas_id", ctypes.c_uint32),
                ("num_iovas", ctypes.c_uint32), ("reserved", ctypes.c_uint32),
                ("allowed_iovas", ctypes.c_uint64),
                ("out_iova_alignment", ctypes.c_uint64)]


class iommu_ioas_map(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("ioas_id", ctypes.c_uint32), ("reserved", ctypes.c_uint32),
                ("user_va", ctypes.c_uint64), ("length", ctypes.c_uint64),
                ("iova", ctypes.c_uint64)]


class iommu_ioas_unmap(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("ioas_id", ctypes.c_uint32),
                ("iova", ctypes.c_uint64), ("length", ctypes.c_uint64)]


class vfio_device_bind_iommufd(ctypes.Structure):
    _fields_ = [("argsz", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("iommufd", ctypes.c_int32), ("out_devid", ctypes.c_uint32)]


class vfio_device_attach_iommufd_pt(ctypes.Structure):
    _fields_ = [("argsz", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("pt_id", ctypes.c_uint32)]


class vfio_device_detach_iommufd_pt(ctypes.Structure):
    _fields_ = [("argsz", ctypes.c_uint32), ("flags", ctypes.c_uint32)]


def unavailable() -> Optional[str]:
    """None when this kernel has the iommufd VFIO path, else the reason.

    The device cdev is checked through the vfio module's parameters only
    once vfio is loaded; before that, /dev/iommu decides."""
    rel = os.uname().release
    if not os.path.exists(IOMMU_PATH):
        return (f"no {IOMMU_PATH}: kernel {rel} lacks CONFIG_IOMMUFD "
                "(only the debug kernel has it)")
    if os.path.isdir("/sys/module/vfio") and \
            not os.path.isdir("/sys/class/vfio-dev"):
        return (f"kernel {rel} lacks CONFIG_VFIO_DEVICE_CDEV "
                "(no /sys/class/vfio-dev with vfio loaded)")
    return None


def cdev_path(bdf: str, wait: float = 1.0) -> str:
    """/dev/vfio/devices/vfioN of a function bound to a VFIO driver."""
    d = f"/sys/bus/pci/devices/{bdf}/vfio-dev"
    deadline = time.monotonic() + wait
    while True:
        try:
            names = [n for n in os.listdir(d) if n.startswith("vfio")]
        except FileNotFoundError:
            names = []
        if names:
            path = os.path.join(CDEV_DIR, names[0])
            if os.path.exists(path):
                return path
        if time.monotonic() > deadline:
            raise VfioError(_errno.ENOENT, "open", f"{bdf}: no VFIO device cdev ({d})")
        time.sleep(0.02)


@dataclass
class IoasBuffer:
    mem: _mmap.mmap
    vaddr: int
    iova: int
    size: int


class IommuFD:
    """/dev/iommu: an iommufd context."""

    def __init__(self) -> None:
        self.fd: int = _open(IOMMU_PATH)
        self.bufs: dict[tuple[int, int], IoasBuffer] = {}

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        for b in self.bufs.values():
            try:
                b.mem.close()
            except BufferError:
                pass
        self.bufs.clear()

    def __enter__(self) -> "IommuFD":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def ioas_alloc(self) -> int:
        a = iommu_ioas_alloc(ctypes.sizeof(iommu_ioas_alloc), 0, 0)
        _ioctl(self.fd, "IOMMU_IOAS_ALLOC", IOMMU_IOAS_ALLOC, a)
        return a.out_ioas_id

    def destroy(self, obj_id: int) -> None:
        d = iommu_destroy(ctypes.sizeof(iommu_destroy), obj_id)
        _ioctl(self.fd, "IOMMU_DESTROY", IOMMU_DESTROY, d, f"id={obj_id}")

    def iova_ranges(self, ioas: int) -> tuple[list[tuple[int, int]], int]:
        """([(start, last), ...], alignment) of an IOAS."""
        n = 8
        while True:
            arr = (iommu_iova_range * n)()
            r = iommu_ioas_iova_ranges(ctypes.sizeof(iommu_ioas_iova_ranges),
                                       ioas, n, 0, ctypes.addressof(arr), 0)
            try:
                _ioctl(self.fd, "IOMMU_IOAS_IOVA_RANGES",
                       IOMMU_IOAS_IOVA_RANGES, r)
            except VfioError as e:
                if e.errno == _errno.EMSGSIZE and r.num_iovas > n:
                    n = r.num_iovas
                    continue
                raise
            return ([(arr[i].start, arr[i].last) for i in range(r.num_iovas)],
                    r.out_iova_alignment)

    def map(self, ioas: int, size: int, iova: Optional[int] = None,
            readable: bool = True, writeable: bool = True) -> IoasBuffer:
        """Map a new anonymous shared buffer into an IOAS, at ``iova`` or
        where the kernel chooses."""
        mem = _mmap.mmap(-1, size, _mmap.MAP_SHARED | _mmap.MAP_ANONYMOUS,
                         _mmap.PROT_READ | _mmap.PROT_WRITE)
        c = ctypes.c_char.from_buffer(mem)
        vaddr = ctypes.addressof(c)
        del c
        flags = ((IOMMU_IOAS_MAP_READABLE if readable else 0) |
                 (IOMMU_IOAS_MAP_WRITEABLE if writeable else 0) |
                 (IOMMU_IOAS_MAP_FIXED_IOVA if iova is not None else 0))
        m = iommu_ioas_map(ctypes.sizeof(iommu_ioas_map), flags, ioas, 0,
                           vaddr, size, iova or 0)
        try:
            _ioctl(self.fd, "IOMMU_IOAS_MAP", IOMMU_IOAS_MAP, m,
                   f"ioas={ioas} size={size:#x}")
        except BaseException:
            mem.close()
            raise
        b = IoasBuffer(mem, vaddr, m.iova, size)
        self.bufs[(ioas, m.iova)] = b
        return b

    def unmap(self, ioas: int, iova: int, size: int) -> int:
        u = iommu_ioas_unmap(ctypes.sizeof(iommu_ioas_unmap), ioas, iova,
                             size)
        _ioctl(self.fd, "IOMMU_IOAS_UNMAP", IOMMU_IOAS_UNMAP, u,
               f"ioas={ioas} iova={iova:#x}")
        b = self.bufs.pop((ioas, iova), None)
        if b is not None:
            try:
                b.mem.close()
            except BufferError:
                pass
        return u.length


class CdevDevice(vfio.Device):
    """A VFIO device opened through its cdev and bound to an iommufd.

    With ``ioas`` (an IOAS id) the device is attached to it at once, as a
    VMM does before using the device; without, only bound (the device fd
    then refuses most ioctls until attach())."""

    def __init__(self, bdf: str, ictx: IommuFD, ioas: Optional[int] = None):
        # The attributes vfio.Device.__init__ sets, without a group or
        # container: close() and every accessor then work unchanged.
        self.bdf = bdf
        self.fd = -1
        self._own_container = False
        self._own_group = False
        self.container = None
        self.group = None
        self.eventfds = {}
        self._ioeventfds = []
        self._regions = {}
        self.ictx = ictx
        self.devid: Optional[int] = None
        self.pt_id: Optional[int] = None
        try:
            self.fd = _open(cdev_path(bdf))
            b = vfio_device_bind_iommufd(
                ctypes.sizeof(vfio_device_bind_iommufd), 0, ictx.fd, 0)
            _ioctl(self.fd, "VFIO_DEVICE_BIND_IOMMUFD",
                   VFIO_DEVICE_BIND_IOMMUFD, b, bdf)
            self.devid = b.out_devid
            if ioas is not None:
                self.attach(ioas)
        except BaseException:
            self.close()
            raise

    def attach(self, pt_id: int) -> int:
        """VFIO_DEVICE_ATTACH_IOMMUFD_PT; returns the (possibly
        kernel-chosen hw) page table id."""
        a = vfio_device_attach_iommufd_pt(
            ctypes.sizeof(vfio_device_attach_iommufd_pt), 0, pt_id)
        _ioctl(self.fd, "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
               VFIO_DEVICE_ATTACH_IOMMUFD_PT, a, f"pt_id={pt_id}")
        self.pt_id = a.pt_id
        return a.pt_id

    def detach(self) -> None:
        d = vfio_device_detach_iommufd_pt(
            ctypes.sizeof(vfio_device_detach_iommufd_pt), 0)
        _ioctl(self.fd, "VFIO_DEVICE_DETACH_IOMMUFD_PT",
               VFIO_DEVICE_DETACH_IOMMUFD_PT, d)
        self.pt_id = None

    def __repr__(self) -> str:
        return f"<iommufd.CdevDevice {self.bdf} fd={self.fd} devid={self.devid}>"
