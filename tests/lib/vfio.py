# SPDX-License-Identifier: GPL-2.0
"""Minimal VFIO client for the vfmediate tests (pure Python: ctypes, os, mmap).

Layouts and ioctl numbers follow <linux/vfio.h>; every struct used here has
the same size and offsets in the 6.1 and 6.12 uAPI on x86_64 (checked by
tests/host/test_vfio_abi.py against both kernels' headers).

Typical use, with the function already bound to vfio-pci or vfmediate
(see pci.bind())::

    from vfio import (Device, BAR0, CONFIG, IRQ_MSI, FEATURE_MIGRATION,
                      mmio_read32, wait_eventfd)

    with Device("0000:00:04.0") as dev:
        info = dev.get_info()                 # DeviceInfo(flags, num_regions, ...)
        bar0 = dev.region_info(BAR0)          # RegionInfo incl. parsed caps
        bar0.sparse_areas                     # [(offset, size), ...] or None
        dev.read32(BAR0, 0x00)                # pread on the device fd
        dev.write32(BAR0, 0x04, 0x12345678)
        mm = dev.mmap(BAR0)                   # mmap.mmap of the region
        mmio_read32(mm, 0x00)                 # one 4-byte load from the mmap
        dev.config_read16(0x00)               # vendor id via config region
        efds = dev.enable_irqs(IRQ_MSI, 1)    # eventfds, one per vector
        wait_eventfd(efds[0], 1.0)            # -> counter value or None
        dev.disable_irqs(IRQ_MSI)
        dev.probe_feature(FEATURE_MIGRATION)  # 0 or an errno (ENOTTY, ...)

Every failing ioctl raises VfioError (an OSError) whose ``.ioctl`` names the
request (e.g. "VFIO_DEVICE_GET_REGION_INFO") and whose ``.errno`` is the
kernel's errno; pread/pwrite/mmap/open failures raise VfioError too, with
``.ioctl`` set to "pread", "pwrite", "mmap" or "open".

A Device owns its container and group unless one is passed in; close()
(or leaving the ``with`` block) closes the eventfds it created, the device
fd, the group and the container, in that order.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import mmap as _mmap
import os
import select
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

# --------------------------------------------------------------------------
# Constants (from <linux/vfio.h>)
# --------------------------------------------------------------------------

VFIO_API_VERSION = 0

# extensions / IOMMU types (VFIO_CHECK_EXTENSION, VFIO_SET_IOMMU)
VFIO_TYPE1_IOMMU = 1
VFIO_SPAPR_TCE_IOMMU = 2
VFIO_TYPE1v2_IOMMU = 3
VFIO_DMA_CC_IOMMU = 4
VFIO_EEH = 5
VFIO_TYPE1_NESTING_IOMMU = 6
VFIO_SPAPR_TCE_v2_IOMMU = 7
VFIO_NOIOMMU_IOMMU = 8
VFIO_UNMAP_ALL = 9
VFIO_UPDATE_VADDR = 10

_VFIO_TYPE = ord(";")
_VFIO_BASE = 100


def _IO(nr: int) -> int:
    """_IO(VFIO_TYPE, VFIO_BASE + nr): VFIO ioctls carry no size/direction."""
    return (_VFIO_TYPE << 8) | (_VFIO_BASE + nr)


VFIO_GET_API_VERSION = _IO(0)
VFIO_CHECK_EXTENSION = _IO(1)
VFIO_SET_IOMMU = _IO(2)
VFIO_GROUP_GET_STATUS = _IO(3)
VFIO_GROUP_SET_CONTAINER = _IO(4)
VFIO_GROUP_UNSET_CONTAINER = _IO(5)
VFIO_GROUP_GET_DEVICE_FD = _IO(6)
VFIO_DEVICE_GET_INFO = _IO(7)
VFIO_DEVICE_GET_REGION_INFO = _IO(8)
VFIO_DEVICE_GET_IRQ_INFO = _IO(9)
VFIO_DEVICE_SET_IRQS = _IO(10)
VFIO_DEVICE_RESET = _IO(11)
VFIO_DEVICE_GET_PCI_HOT_RESET_INFO = _IO(12)
VFIO_DEVICE_PCI_HOT_RESET = _IO(13)
VFIO_DEVICE_QUERY_GFX_PLANE = _IO(14)
VFIO_DEVICE_GET_GFX_DMABUF = _IO(15)
VFIO_DEVICE_IOEVENTFD = _IO(16)
VFIO_DEVICE_FEATURE = _IO(17)
VFIO_IOMMU_GET_INFO = _IO(12)
VFIO_IOMMU_MAP_DMA = _IO(13)
VFIO_IOMMU_UNMAP_DMA = _IO(14)
VFIO_IOMMU_ENABLE = _IO(15)
VFIO_IOMMU_DISABLE = _IO(16)
VFIO_IOMMU_DIRTY_PAGES = _IO(17)

# group status flags
VFIO_GROUP_FLAGS_VIABLE = 1 << 0
VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1

# device info flags
VFIO_DEVICE_FLAGS_RESET = 1 << 0
VFIO_DEVICE_FLAGS_PCI = 1 << 1
VFIO_DEVICE_FLAGS_PLATFORM = 1 << 2
VFIO_DEVICE_FLAGS_AMBA = 1 << 3
VFIO_DEVICE_FLAGS_CCW = 1 << 4
VFIO_DEVICE_FLAGS_AP = 1 << 5
VFIO_DEVICE_FLAGS_FSL_MC = 1 << 6
VFIO_DEVICE_FLAGS_CAPS = 1 << 7
VFIO_DEVICE_FLAGS_CDX = 1 << 8

# device info capability ids
VFIO_DEVICE_INFO_CAP_ZPCI_BASE = 1
VFIO_DEVICE_INFO_CAP_ZPCI_GROUP = 2
VFIO_DEVICE_INFO_CAP_ZPCI_UTIL = 3
VFIO_DEVICE_INFO_CAP_ZPCI_PFIP = 4
VFIO_DEVICE_INFO_CAP_PCI_ATOMIC_COMP = 5

# region info flags
VFIO_REGION_INFO_FLAG_READ = 1 << 0
VFIO_REGION_INFO_FLAG_WRITE = 1 << 1
VFIO_REGION_INFO_FLAG_MMAP = 1 << 2
VFIO_REGION_INFO_FLAG_CAPS = 1 << 3

# region info capability ids
VFIO_REGION_INFO_CAP_SPARSE_MMAP = 1
VFIO_REGION_INFO_CAP_TYPE = 2
VFIO_REGION_INFO_CAP_MSIX_MAPPABLE = 3
VFIO_REGION_INFO_CAP_NVLINK2_SSATGT = 4
VFIO_REGION_INFO_CAP_NVLINK2_LNKSPD = 5

# region types (VFIO_REGION_INFO_CAP_TYPE)
VFIO_REGION_TYPE_PCI_VENDOR_TYPE = 1 << 31
VFIO_REGION_TYPE_PCI_VENDOR_MASK = 0xFFFF
VFIO_REGION_TYPE_GFX = 1
VFIO_REGION_TYPE_CCW = 2
VFIO_REGION_TYPE_MIGRATION_DEPRECATED = 3

# irq info flags
VFIO_IRQ_INFO_EVENTFD = 1 << 0
VFIO_IRQ_INFO_MASKABLE = 1 << 1
VFIO_IRQ_INFO_AUTOMASKED = 1 << 2
VFIO_IRQ_INFO_NORESIZE = 1 << 3

# set irqs flags
VFIO_IRQ_SET_DATA_NONE = 1 << 0
VFIO_IRQ_SET_DATA_BOOL = 1 << 1
VFIO_IRQ_SET_DATA_EVENTFD = 1 << 2
VFIO_IRQ_SET_ACTION_MASK = 1 << 3
VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4
VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5

# ioeventfd size flags
VFIO_DEVICE_IOEVENTFD_8 = 1 << 0
VFIO_DEVICE_IOEVENTFD_16 = 1 << 1
VFIO_DEVICE_IOEVENTFD_32 = 1 << 2
VFIO_DEVICE_IOEVENTFD_64 = 1 << 3
VFIO_DEVICE_IOEVENTFD_SIZE_MASK = 0xF

# device feature
VFIO_DEVICE_FEATURE_MASK = 0xFFFF
VFIO_DEVICE_FEATURE_GET = 1 << 16
VFIO_DEVICE_FEATURE_SET = 1 << 17
VFIO_DEVICE_FEATURE_PROBE = 1 << 18
VFIO_DEVICE_FEATURE_PCI_VF_TOKEN = 0
VFIO_DEVICE_FEATURE_MIGRATION = 1
VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE = 2
VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY = 3
VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP = 4
VFIO_DEVICE_FEATURE_LOW_POWER_EXIT = 5
VFIO_DEVICE_FEATURE_DMA_LOGGING_START = 6
VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP = 7
VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT = 8
VFIO_DEVICE_FEATURE_MIG_DATA_SIZE = 9      # 6.12 only
VFIO_DEVICE_FEATURE_BUS_MASTER = 10        # 6.12 only
FEATURE_MIGRATION = VFIO_DEVICE_FEATURE_MIGRATION

VFIO_DEVICE_STATE_ERROR = 0
VFIO_DEVICE_STATE_STOP = 1
VFIO_DEVICE_STATE_RUNNING = 2
VFIO_DEVICE_STATE_STOP_COPY = 3
VFIO_DEVICE_STATE_RESUMING = 4
VFIO_DEVICE_STATE_RUNNING_P2P = 5
VFIO_DEVICE_STATE_PRE_COPY = 6

VFIO_MIGRATION_STOP_COPY = 1 << 0
VFIO_MIGRATION_P2P = 1 << 1
VFIO_MIGRATION_PRE_COPY = 1 << 2

# type1 IOMMU info
VFIO_IOMMU_INFO_PGSIZES = 1 << 0
VFIO_IOMMU_INFO_CAPS = 1 << 1
VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1
VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION = 2
VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3

VFIO_DMA_MAP_FLAG_READ = 1 << 0
VFIO_DMA_MAP_FLAG_WRITE = 1 << 1
VFIO_DMA_MAP_FLAG_VADDR = 1 << 2
VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1 << 0
VFIO_DMA_UNMAP_FLAG_ALL = 1 << 1
VFIO_DMA_UNMAP_FLAG_VADDR = 1 << 2

# vfio-pci region and irq indices
VFIO_PCI_BAR0_REGION_INDEX = 0
VFIO_PCI_BAR1_REGION_INDEX = 1
VFIO_PCI_BAR2_REGION_INDEX = 2
VFIO_PCI_BAR3_REGION_INDEX = 3
VFIO_PCI_BAR4_REGION_INDEX = 4
VFIO_PCI_BAR5_REGION_INDEX = 5
VFIO_PCI_ROM_REGION_INDEX = 6
VFIO_PCI_CONFIG_REGION_INDEX = 7
VFIO_PCI_VGA_REGION_INDEX = 8
VFIO_PCI_NUM_REGIONS = 9

VFIO_PCI_INTX_IRQ_INDEX = 0
VFIO_PCI_MSI_IRQ_INDEX = 1
VFIO_PCI_MSIX_IRQ_INDEX = 2
VFIO_PCI_ERR_IRQ_INDEX = 3
VFIO_PCI_REQ_IRQ_INDEX = 4
VFIO_PCI_NUM_IRQS = 5

# short aliases
BAR0, BAR1, BAR2, BAR3, BAR4, BAR5 = range(6)
ROM = VFIO_PCI_ROM_REGION_INDEX
CONFIG = VFIO_PCI_CONFIG_REGION_INDEX
VGA = VFIO_PCI_VGA_REGION_INDEX
IRQ_INTX = VFIO_PCI_INTX_IRQ_INDEX
IRQ_MSI = VFIO_PCI_MSI_IRQ_INDEX
IRQ_MSIX = VFIO_PCI_MSIX_IRQ_INDEX
IRQ_ERR = VFIO_PCI_ERR_IRQ_INDEX
IRQ_REQ = VFIO_PCI_REQ_IRQ_INDEX

REGION_NAMES = {0: "bar0", 1: "bar1", 2: "bar2", 3: "bar3", 4: "bar4",
                5: "bar5", 6: "rom", 7: "config", 8: "vga"}
IRQ_NAMES = {0: "intx", 1: "msi", 2: "msix", 3: "err", 4: "req"}


def region_offset(index: int) -> int:
    """Device-fd offset of a vfio-pci region (VFIO_PCI_INDEX_TO_OFFSET).

    Prefer RegionInfo.offset, which is what the kernel reports."""
    return index << 40


# --------------------------------------------------------------------------
# Structures (fixed parts; x86_64 natural alignment == __aligned_u64)
# --------------------------------------------------------------------------

u32 = ctypes.c_uint32
u64 = ctypes.c_uint64
s32 = ctypes.c_int32


class vfio_info_cap_header(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint16), ("version", ctypes.c_uint16),
                ("next", u32)]


class vfio_group_status(ctypes.Structure):
    _fields_ = [("argsz", u32), ("flags", u32)]


class vfio_device_info(ctypes.Structure):
    # 6.1 ends at cap_offset (20 bytes); 6.12 adds pad (24). The kernel
    # requires argsz >= offsetofend(num_irqs) and copies back only what it
    # knows, so the 24-byte form works on both.
    _fields_ = [("argsz", u32), ("flags", u32), ("num_regions", u32),
                ("num_irqs", u32), ("cap_offset", u32), ("pad", u32)]


class vfio_region_info(ctypes.Structure):
    _fields_ = [("argsz", u32), ("flags", u32), ("index", u32),
                ("cap_offset", u32), ("size", u64), ("offset", u64)]


class vfio_region_sparse_mmap_area(ctypes.Structure):
    _fields_ = [("offset", u64), ("size", u64)]


class vfio_region_info_cap_sparse_mmap(ctypes.Structure):
    _fields_ = [("header", vfio_info_cap_header), ("nr_areas", u32),
                ("reserved", u32)]


class vfio_region_info_cap_type(ctypes.Structure):
    _fields_ = [("header", vfio_info_cap_header), ("type", u32),
                ("subtype", u32)]


class vfio_irq_info(ctypes.Structure):
    _fields_ = [("argsz", u32), ("flags", u32), ("index", u32),
                ("count", u32)]


class vfio_irq_set(ctypes.Structure):
    _fields_ = [("argsz", u32), ("flags", u32), ("index", u32),
                ("start", u32), ("count", u32)]


class vfio_device_ioeventfd(ctypes.Structure):
    # 6.1 has no 'reserved' but pads to 32 bytes all the same.
    _fields_ = [("argsz", u32), ("flags", u32), ("offset", u64),
                ("data", u64), ("fd", s32), ("reserved", u32)]


class vfio_device_feature(ctypes.Structure):
    _fields_ = [("argsz", u32), ("flags", u32)]


class vfio_pci_dependent_device(ctypes.Structure):
    _fields_ = [("group_id", u32), ("segment", ctypes.c_uint16),
                ("bus", ctypes.c_uint8), ("devfn", ctypes.c_uint8)]


class vfio_pci_hot_reset_info(ctypes.Structure):
    _fields_ = [("argsz", u32), ("flags", u32), ("count", u32)]


class vfio_iommu_type1_info(ctypes.Structure):
    _fields_ = [("argsz", u32), ("flags", u32), ("iova_pgsizes", u64),
                ("cap_offset", u32), ("pad", u32)]


class vfio_iova_range(ctypes.Structure):
    _fields_ = [("start", u64), ("end", u64)]


class vfio_iommu_type1_info_cap_iova_range(ctypes.Structure):
    _fields_ = [("header", vfio_info_cap_header), ("nr_iovas", u32),
                ("reserved", u32)]


class vfio_iommu_type1_dma_map(ctypes.Structure):
    _fields_ = [("argsz", u32), ("flags", u32), ("vaddr", u64),
                ("iova", u64), ("size", u64)]


class vfio_iommu_type1_dma_unmap(ctypes.Structure):
    _fields_ = [("argsz", u32), ("flags", u32), ("iova", u64),
                ("size", u64)]


# --------------------------------------------------------------------------
# ioctl plumbing
# --------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_libc.ioctl.restype = ctypes.c_int


class VfioError(OSError):
    """An ioctl (or pread/pwrite/mmap/open) on a VFIO fd failed.

    ``.ioctl`` is the request name, ``.errno`` the errno, ``.strerror`` its
    text. Catch OSError to treat it like any other system-call failure."""

    def __init__(self, err: int, ioctl: str, detail: str = ""):
        msg = f"{ioctl}: {os.strerror(err)} ({_errno.errorcode.get(err, err)})"
        if detail:
            msg += f" [{detail}]"
        super().__init__(err, msg)
        self.ioctl = ioctl

    def __str__(self) -> str:  # OSError's default adds "[Errno N]" first
        return self.strerror


def _ioctl(fd: int, name: str, request: int,
           arg: Union[int, bytearray, ctypes.Structure, ctypes.Array, None] = 0,
           detail: str = "") -> int:
    """ioctl(2) via libc; returns the ioctl's (non-negative) return value.

    ``arg`` is an integer passed by value, or a bytearray/ctypes object
    passed by address (and updated in place by the kernel)."""
    if arg is None:
        arg = 0
    if isinstance(arg, int):
        a = ctypes.c_void_p(arg)
        keep = None
    elif isinstance(arg, bytearray):
        keep = (ctypes.c_char * len(arg)).from_buffer(arg)
        a = ctypes.c_void_p(ctypes.addressof(keep))
    else:
        keep = arg
        a = ctypes.c_void_p(ctypes.addressof(arg))
    ret = _libc.ioctl(fd, request, a)
    del keep
    if ret < 0:
        raise VfioError(ctypes.get_errno(), name, detail)
    return ret


def _open(path: str, flags: int = os.O_RDWR | os.O_CLOEXEC) -> int:
    try:
        return os.open(path, flags)
    except OSError as e:
        raise VfioError(e.errno, "open", path) from None


# --------------------------------------------------------------------------
# Capability chains
# --------------------------------------------------------------------------

@dataclass
class Cap:
    """One entry of a VFIO info capability chain.

    ``offset`` is where the header sits in the info buffer, ``raw`` the
    bytes from the header to the next capability (or the buffer's end),
    ``parsed`` a decoded form for the ids this module knows, else None."""
    id: int
    version: int
    offset: int
    raw: bytes
    parsed: Any = None

    @property
    def payload(self) -> bytes:
        return self.raw[8:]


def _walk_caps(buf: bytes, first: int) -> list[Cap]:
    caps: list[Cap] = []
    off = first
    seen = set()
    while off and off not in seen and off + 8 <= len(buf):
        seen.add(off)
        cid, ver, nxt = struct.unpack_from("=HHI", buf, off)
        end = nxt if (nxt > off and nxt <= len(buf)) else len(buf)
        caps.append(Cap(cid, ver, off, bytes(buf[off:end])))
        off = nxt
    return caps


def _parse_region_cap(cap: Cap) -> None:
    p = cap.payload
    if cap.id == VFIO_REGION_INFO_CAP_SPARSE_MMAP and len(p) >= 8:
        nr, _ = struct.unpack_from("=II", p, 0)
        areas = []
        for i in range(nr):
            o = 8 + 16 * i
            if o + 16 > len(p):
                break
            areas.append(struct.unpack_from("=QQ", p, o))
        cap.parsed = areas
    elif cap.id == VFIO_REGION_INFO_CAP_TYPE and len(p) >= 8:
        cap.parsed = struct.unpack_from("=II", p, 0)
    elif cap.id == VFIO_REGION_INFO_CAP_MSIX_MAPPABLE:
        cap.parsed = True
    elif cap.id == VFIO_REGION_INFO_CAP_NVLINK2_SSATGT and len(p) >= 8:
        cap.parsed = struct.unpack_from("=Q", p, 0)[0]
    elif cap.id == VFIO_REGION_INFO_CAP_NVLINK2_LNKSPD and len(p) >= 4:
        cap.parsed = struct.unpack_from("=I", p, 0)[0]


# --------------------------------------------------------------------------
# Info records
# --------------------------------------------------------------------------

@dataclass
class DeviceInfo:
    flags: int
    num_regions: int
    num_irqs: int
    caps: list[Cap] = field(default_factory=list)

    @property
    def reset_supported(self) -> bool:
        return bool(self.flags & VFIO_DEVICE_FLAGS_RESET)

    @property
    def is_pci(self) -> bool:
        return bool(self.flags & VFIO_DEVICE_FLAGS_PCI)


@dataclass
class RegionInfo:
    index: int
    flags: int
    size: int
    offset: int
    caps: list[Cap] = field(default_factory=list)
    argsz: int = 0          # the argsz the kernel finally asked for

    @property
    def readable(self) -> bool:
        return bool(self.flags & VFIO_REGION_INFO_FLAG_READ)

    @property
    def writable(self) -> bool:
        return bool(self.flags & VFIO_REGION_INFO_FLAG_WRITE)

    @property
    def mmappable(self) -> bool:
        return bool(self.flags & VFIO_REGION_INFO_FLAG_MMAP)

    @property
    def has_caps(self) -> bool:
        return bool(self.flags & VFIO_REGION_INFO_FLAG_CAPS)

    def cap(self, cap_id: int) -> Optional[Cap]:
        for c in self.caps:
            if c.id == cap_id:
                return c
        return None

    @property
    def sparse_areas(self) -> Optional[list[tuple[int, int]]]:
        """[(offset, size), ...] from CAP_SPARSE_MMAP, or None without it."""
        c = self.cap(VFIO_REGION_INFO_CAP_SPARSE_MMAP)
        return None if c is None else list(c.parsed)

    @property
    def type(self) -> Optional[tuple[int, int]]:
        """(type, subtype) from CAP_TYPE, or None."""
        c = self.cap(VFIO_REGION_INFO_CAP_TYPE)
        return None if c is None else c.parsed

    @property
    def msix_mappable(self) -> bool:
        return self.cap(VFIO_REGION_INFO_CAP_MSIX_MAPPABLE) is not None

    def mmappable_ranges(self) -> list[tuple[int, int]]:
        """(offset, size) ranges that may be mmap'ed: the sparse areas if
        advertised, else the whole region if FLAG_MMAP, else nothing."""
        if not self.mmappable:
            return []
        areas = self.sparse_areas
        if areas is None:
            return [(0, self.size)] if self.size else []
        return areas


@dataclass
class IrqInfo:
    index: int
    flags: int
    count: int

    @property
    def eventfd(self) -> bool:
        return bool(self.flags & VFIO_IRQ_INFO_EVENTFD)

    @property
    def maskable(self) -> bool:
        return bool(self.flags & VFIO_IRQ_INFO_MASKABLE)

    @property
    def automasked(self) -> bool:
        return bool(self.flags & VFIO_IRQ_INFO_AUTOMASKED)

    @property
    def noresize(self) -> bool:
        return bool(self.flags & VFIO_IRQ_INFO_NORESIZE)


@dataclass
class IommuInfo:
    flags: int
    iova_pgsizes: int
    caps: list[Cap] = field(default_factory=list)

    @property
    def iova_ranges(self) -> Optional[list[tuple[int, int]]]:
        """[(start, end_inclusive), ...] or None without the cap."""
        for c in self.caps:
            if c.id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE:
                return c.parsed
        return None

    @property
    def dma_avail(self) -> Optional[int]:
        for c in self.caps:
            if c.id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL:
                return c.parsed
        return None


@dataclass
class HotResetDevice:
    group_id: int
    segment: int
    bus: int
    devfn: int

    @property
    def bdf(self) -> str:
        return (f"{self.segment:04x}:{self.bus:02x}:"
                f"{self.devfn >> 3:02x}.{self.devfn & 7}")


# --------------------------------------------------------------------------
# Eventfd and mmap helpers
# --------------------------------------------------------------------------

def new_eventfd() -> int:
    """A non-blocking, close-on-exec eventfd."""
    return os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)


def wait_eventfd(fd: int, timeout: float = 1.0) -> Optional[int]:
    """Wait up to ``timeout`` s for the eventfd; return (and reset) its
    counter, or None on timeout."""
    p = select.poll()
    p.register(fd, select.POLLIN)
    if not p.poll(max(0, int(timeout * 1000))):
        return None
    try:
        return os.eventfd_read(fd)
    except BlockingIOError:
        return None


def drain_eventfd(fd: int) -> int:
    """Read and reset the counter without waiting (0 if not signalled)."""
    try:
        return os.eventfd_read(fd)
    except BlockingIOError:
        return 0


_MMIO = {1: ctypes.c_uint8, 2: ctypes.c_uint16, 4: ctypes.c_uint32,
         8: ctypes.c_uint64}


def _mmio_ptr(mm: _mmap.mmap, off: int, size: int):
    if off < 0 or off + size > len(mm):
        raise IndexError(f"offset {off:#x}+{size} outside mapping of {len(mm):#x}")
    return _MMIO[size].from_buffer(mm, off)


def mmio_read(mm: _mmap.mmap, off: int, size: int) -> int:
    """One naturally sized load (1/2/4/8 bytes) from a mapping.

    Unlike slicing the mmap (memcpy, whose access width is unspecified),
    this performs a single access of the given width, which MMIO needs."""
    v = _mmio_ptr(mm, off, size)
    try:
        return v.value
    finally:
        del v       # release the buffer export so mm.close() works


def mmio_write(mm: _mmap.mmap, off: int, size: int, value: int) -> None:
    v = _mmio_ptr(mm, off, size)
    try:
        v.value = value
    finally:
        del v


def mmio_read8(mm, off): return mmio_read(mm, off, 1)
def mmio_read16(mm, off): return mmio_read(mm, off, 2)
def mmio_read32(mm, off): return mmio_read(mm, off, 4)
def mmio_read64(mm, off): return mmio_read(mm, off, 8)
def mmio_write8(mm, off, v): mmio_write(mm, off, 1, v)
def mmio_write16(mm, off, v): mmio_write(mm, off, 2, v)
def mmio_write32(mm, off, v): mmio_write(mm, off, 4, v)
def mmio_write64(mm, off, v): mmio_write(mm, off, 8, v)


def mmio_access_faults(mm: _mmap.mmap, off: int, size: int = 4,
                       value: Optional[int] = None,
                       timeout: float = 10.0) -> Optional[int]:
    """Try one access in a forked child, so that a SIGBUS (e.g. a page whose
    mmap was revoked) cannot kill the caller.

    Reads when ``value`` is None, else writes ``value``. Returns None if the
    access completed, else the signal number that killed the child."""
    pid = os.fork()
    if pid == 0:        # child: no Python cleanup, just the access
        try:
            if value is None:
                mmio_read(mm, off, size)
            else:
                mmio_write(mm, off, size, value)
            os._exit(0)
        except BaseException:
            os._exit(3)
    deadline = time.monotonic() + timeout
    while True:
        wpid, status = os.waitpid(pid, os.WNOHANG)
        if wpid:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise TimeoutError(f"mmio access at {off:#x} hung")
        time.sleep(0.005)
    if os.WIFSIGNALED(status):
        return os.WTERMSIG(status)
    if os.WEXITSTATUS(status):
        raise RuntimeError(f"mmio probe child failed (exit "
                           f"{os.WEXITSTATUS(status)}) at {off:#x}")
    return None


def _mmap_address(mm: _mmap.mmap) -> int:
    c = ctypes.c_char.from_buffer(mm)
    try:
        return ctypes.addressof(c)
    finally:
        del c


# --------------------------------------------------------------------------
# Container
# --------------------------------------------------------------------------

@dataclass
class DmaBuffer:
    """An anonymous shared mapping that is DMA-mapped at ``iova``."""
    mem: _mmap.mmap
    vaddr: int
    iova: int
    size: int
    flags: int
    mapped: bool = True


class Container:
    """/dev/vfio/vfio: the legacy (type1) container."""

    PATH = "/dev/vfio/vfio"

    def __init__(self, path: str = PATH):
        self.fd: int = _open(path)
        self.iommu_type: Optional[int] = None
        self.dma: dict[int, DmaBuffer] = {}

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        for b in self.dma.values():
            try:
                b.mem.close()
            except BufferError:
                pass
        self.dma.clear()

    def __enter__(self) -> "Container":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def get_api_version(self) -> int:
        return _ioctl(self.fd, "VFIO_GET_API_VERSION", VFIO_GET_API_VERSION)

    def check_extension(self, ext: int) -> int:
        """>0 if the extension (e.g. VFIO_TYPE1v2_IOMMU) is supported."""
        return _ioctl(self.fd, "VFIO_CHECK_EXTENSION", VFIO_CHECK_EXTENSION,
                      ext)

    def set_iommu(self, iommu_type: Optional[int] = None) -> int:
        """VFIO_SET_IOMMU; default type1v2, falling back to type1.

        Needs at least one group attached (Group.set_container)."""
        if iommu_type is None:
            if self.check_extension(VFIO_TYPE1v2_IOMMU):
                iommu_type = VFIO_TYPE1v2_IOMMU
            elif self.check_extension(VFIO_TYPE1_IOMMU):
                iommu_type = VFIO_TYPE1_IOMMU
            else:
                raise VfioError(_errno.ENODEV, "VFIO_SET_IOMMU",
                                "no type1 IOMMU backend")
        _ioctl(self.fd, "VFIO_SET_IOMMU", VFIO_SET_IOMMU, iommu_type)
        self.iommu_type = iommu_type
        return iommu_type

    def iommu_info(self) -> IommuInfo:
        """VFIO_IOMMU_GET_INFO with the capability chain (iova ranges,
        migration, dma_avail), retrying with the argsz the kernel asks for."""
        base = ctypes.sizeof(vfio_iommu_type1_info)
        argsz = base
        for _ in range(4):
            buf = bytearray(argsz)
            struct.pack_into("=I", buf, 0, argsz)
            _ioctl(self.fd, "VFIO_IOMMU_GET_INFO", VFIO_IOMMU_GET_INFO, buf)
            info = vfio_iommu_type1_info.from_buffer_copy(buf[:base])
            if (info.flags & VFIO_IOMMU_INFO_CAPS and info.argsz > argsz):
                argsz = info.argsz
                continue
            break
        caps = []
        if info.flags & VFIO_IOMMU_INFO_CAPS and info.cap_offset:
            caps = _walk_caps(bytes(buf), info.cap_offset)
            for c in caps:
                p = c.payload
                if c.id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE:
                    nr = struct.unpack_from("=I", p, 0)[0]
                    c.parsed = [struct.unpack_from("=QQ", p, 8 + 16 * i)
                                for i in range(nr) if 8 + 16 * (i + 1) <= len(p)]
                elif c.id == VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION:
                    # u32 flags; u64 pgsize_bitmap; u64 max_dirty_bitmap_size
                    fl, pg, mx = struct.unpack_from("=I4xQQ", p, 0)
                    c.parsed = {"flags": fl, "pgsize_bitmap": pg,
                                "max_dirty_bitmap_size": mx}
                elif c.id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL:
                    c.parsed = struct.unpack_from("=I", p, 0)[0]
        return IommuInfo(info.flags, info.iova_pgsizes, caps)

    def dma_map(self, iova: int, size: int, *, read: bool = True,
                write: bool = True,
                mem: Optional[_mmap.mmap] = None) -> DmaBuffer:
        """Map ``size`` bytes of a new anonymous shared mmap (or of ``mem``)
        at ``iova`` (VFIO_IOMMU_MAP_DMA). Size and iova must be page
        aligned."""
        if mem is None:
            mem = _mmap.mmap(-1, size, _mmap.MAP_SHARED | _mmap.MAP_ANONYMOUS,
                             _mmap.PROT_READ | _mmap.PROT_WRITE)
        vaddr = _mmap_address(mem)
        flags = ((VFIO_DMA_MAP_FLAG_READ if read else 0) |
                 (VFIO_DMA_MAP_FLAG_WRITE if write else 0))
        m = vfio_iommu_type1_dma_map(ctypes.sizeof(vfio_iommu_type1_dma_map),
                                     flags, vaddr, iova, size)
        _ioctl(self.fd, "VFIO_IOMMU_MAP_DMA", VFIO_IOMMU_MAP_DMA, m,
               f"iova={iova:#x} size={size:#x}")
        b = DmaBuffer(mem, vaddr, iova, size, flags)
        self.dma[iova] = b
        return b

    def dma_unmap(self, iova: int, size: int, flags: int = 0) -> int:
        """VFIO_IOMMU_UNMAP_DMA; returns the size the kernel unmapped."""
        u = vfio_iommu_type1_dma_unmap(
            ctypes.sizeof(vfio_iommu_type1_dma_unmap), flags, iova, size)
        _ioctl(self.fd, "VFIO_IOMMU_UNMAP_DMA", VFIO_IOMMU_UNMAP_DMA, u,
               f"iova={iova:#x} size={size:#x}")
        b = self.dma.pop(iova, None)
        if b is not None:
            b.mapped = False
        return u.size

    def dma_unmap_buffer(self, b: DmaBuffer) -> int:
        return self.dma_unmap(b.iova, b.size)


# --------------------------------------------------------------------------
# Group
# --------------------------------------------------------------------------

def iommu_group_of(bdf: str) -> int:
    """IOMMU group number of a PCI function, from sysfs."""
    link = f"/sys/bus/pci/devices/{bdf}/iommu_group"
    try:
        return int(os.path.basename(os.readlink(link)))
    except FileNotFoundError:
        raise VfioError(_errno.ENODEV, "iommu_group",
                        f"{bdf} has no IOMMU group") from None


class Group:
    """/dev/vfio/<N>."""

    def __init__(self, group_id: int, wait: float = 0.5):
        self.id = group_id
        path = f"/dev/vfio/{group_id}"
        deadline = time.monotonic() + wait
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.fd: int = _open(path)
        self.container: Optional[Container] = None

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "Group":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def status(self) -> int:
        """VFIO_GROUP_GET_STATUS flags (VIABLE, CONTAINER_SET)."""
        s = vfio_group_status(ctypes.sizeof(vfio_group_status), 0)
        _ioctl(self.fd, "VFIO_GROUP_GET_STATUS", VFIO_GROUP_GET_STATUS, s)
        return s.flags

    @property
    def viable(self) -> bool:
        return bool(self.status() & VFIO_GROUP_FLAGS_VIABLE)

    def set_container(self, container: Container) -> None:
        fd = ctypes.c_int32(container.fd)
        _ioctl(self.fd, "VFIO_GROUP_SET_CONTAINER", VFIO_GROUP_SET_CONTAINER,
               fd)
        self.container = container

    def unset_container(self) -> None:
        _ioctl(self.fd, "VFIO_GROUP_UNSET_CONTAINER",
               VFIO_GROUP_UNSET_CONTAINER)
        self.container = None

    def get_device_fd(self, bdf: str) -> int:
        """VFIO_GROUP_GET_DEVICE_FD: a new device fd (needs the container's
        IOMMU set)."""
        name = ctypes.create_string_buffer(bdf.encode())
        return _ioctl(self.fd, "VFIO_GROUP_GET_DEVICE_FD",
                      VFIO_GROUP_GET_DEVICE_FD, name, bdf)


# --------------------------------------------------------------------------
# Device
# --------------------------------------------------------------------------

_IOEVENTFD_SIZE = {1: VFIO_DEVICE_IOEVENTFD_8, 2: VFIO_DEVICE_IOEVENTFD_16,
                   4: VFIO_DEVICE_IOEVENTFD_32, 8: VFIO_DEVICE_IOEVENTFD_64}
_FMT = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}


class Device:
    """A VFIO PCI device opened by BDF through the legacy container/group
    path.

    ``Device(bdf)`` opens a new container, the function's group, sets the
    IOMMU (type1v2, else type1) and gets the device fd. Pass ``container``
    (and ``group``, for a second device of the same group) to share them;
    shared objects are not closed by close(). ``vf_token`` (a UUID string)
    is appended to the name as "BDF vf_token=UUID": it sets the token of a
    PF bound to a vfio-pci-core driver, and a VF of such a PF needs it."""

    def __init__(self, bdf: str, container: Optional[Container] = None,
                 group: Optional[Group] = None,
                 iommu_type: Optional[int] = None,
                 vf_token: Optional[str] = None):
        self.bdf = bdf
        self.fd = -1
        self._own_container = False
        self._own_group = group is None
        self.container: Optional[Container] = None
        self.group: Optional[Group] = None
        self.eventfds: dict[int, list[int]] = {}
        self._ioeventfds: list[int] = []
        self._regions: dict[int, RegionInfo] = {}
        try:
            if group is None:
                group = Group(iommu_group_of(bdf))
            self.group = group
            if group.container is not None:
                container = group.container
            elif container is None:
                container = Container()
                self._own_container = True
            self.container = container
            if group.container is None:
                group.set_container(container)
            if container.iommu_type is None:
                container.set_iommu(iommu_type)
            self.fd = group.get_device_fd(
                bdf if vf_token is None else f"{bdf} vf_token={vf_token}")
        except BaseException:
            self.close()
            raise

    # -- lifetime -----------------------------------------------------------

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        """Close eventfds created here, the device fd, then the group and
        container if this object opened them."""
        for fds in self.eventfds.values():
            for efd in fds:
                _close_quiet(efd)
        self.eventfds.clear()
        for efd in self._ioeventfds:
            _close_quiet(efd)
        self._ioeventfds.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self._own_group and self.group is not None:
            self.group.close()
        self.group = None
        if self._own_container and self.container is not None:
            self.container.close()
        self.container = None

    def __enter__(self) -> "Device":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<vfio.Device {self.bdf} fd={self.fd}>"

    # -- info ----------------------------------------------------------------

    def get_info(self) -> DeviceInfo:
        """VFIO_DEVICE_GET_INFO (with any info caps)."""
        base = ctypes.sizeof(vfio_device_info)
        argsz = base
        for _ in range(4):
            buf = bytearray(argsz)
            struct.pack_into("=I", buf, 0, argsz)
            _ioctl(self.fd, "VFIO_DEVICE_GET_INFO", VFIO_DEVICE_GET_INFO, buf)
            info = vfio_device_info.from_buffer_copy(buf[:base])
            if info.flags & VFIO_DEVICE_FLAGS_CAPS and info.argsz > argsz:
                argsz = info.argsz
                continue
            break
        caps = []
        if info.flags & VFIO_DEVICE_FLAGS_CAPS and info.cap_offset:
            caps = _walk_caps(bytes(buf), info.cap_offset)
            for c in caps:
                if (c.id == VFIO_DEVICE_INFO_CAP_PCI_ATOMIC_COMP
                        and len(c.payload) >= 4):
                    c.parsed = struct.unpack_from("=I", c.payload, 0)[0]
        return DeviceInfo(info.flags, info.num_regions, info.num_irqs, caps)

    def region_info(self, index: int, argsz: Optional[int] = None
                    ) -> RegionInfo:
        """VFIO_DEVICE_GET_REGION_INFO with the capability chain.

        Starts with the bare struct (or ``argsz``) and retries with the
        size the kernel reports when FLAG_CAPS is set and the caps did not
        fit."""
        base = ctypes.sizeof(vfio_region_info)
        argsz = base if argsz is None else argsz
        for _ in range(4):
            buf = bytearray(max(argsz, base))
            struct.pack_into("=II I", buf, 0, argsz, 0, index)
            _ioctl(self.fd, "VFIO_DEVICE_GET_REGION_INFO",
                   VFIO_DEVICE_GET_REGION_INFO, buf, f"index={index}")
            ri = vfio_region_info.from_buffer_copy(buf[:base])
            if ri.flags & VFIO_REGION_INFO_FLAG_CAPS and ri.argsz > argsz:
                argsz = ri.argsz
                continue
            break
        caps: list[Cap] = []
        if ri.flags & VFIO_REGION_INFO_FLAG_CAPS and ri.cap_offset:
            caps = _walk_caps(bytes(buf), ri.cap_offset)
            for c in caps:
                _parse_region_cap(c)
        r = RegionInfo(index, ri.flags, ri.size, ri.offset, caps, ri.argsz)
        self._regions[index] = r
        return r

    def regions(self) -> dict[int, RegionInfo]:
        """{index: region_info(index)} for every index below num_regions
        that exists (vfio-pci answers EINVAL for VGA on a non-VGA
        function; such indices are left out)."""
        out = {}
        for i in range(self.get_info().num_regions):
            try:
                out[i] = self.region_info(i)
            except VfioError as e:
                if e.errno != _errno.EINVAL:
                    raise
        return out

    def _region(self, index: int) -> RegionInfo:
        r = self._regions.get(index)
        return r if r is not None else self.region_info(index)

    def irq_info(self, index: int) -> IrqInfo:
        """VFIO_DEVICE_GET_IRQ_INFO."""
        q = vfio_irq_info(ctypes.sizeof(vfio_irq_info), 0, index, 0)
        _ioctl(self.fd, "VFIO_DEVICE_GET_IRQ_INFO", VFIO_DEVICE_GET_IRQ_INFO,
               q, f"index={index}")
        return IrqInfo(index, q.flags, q.count)

    def irqs(self) -> dict[int, IrqInfo]:
        """{index: irq_info(index)} for the indices that exist (vfio-pci
        answers EINVAL for ERR on a non-PCIe function and for REQ on
        some kernels/devices; those are left out)."""
        out = {}
        for i in range(self.get_info().num_irqs):
            try:
                out[i] = self.irq_info(i)
            except VfioError as e:
                if e.errno != _errno.EINVAL:
                    raise
        return out

    # -- irqs ----------------------------------------------------------------

    def set_irqs(self, index: int, flags: int, start: int = 0,
                 count: int = 0, data: bytes = b"") -> None:
        """Raw VFIO_DEVICE_SET_IRQS: ``data`` is the packed payload
        (s32 eventfds for DATA_EVENTFD, u8 bools for DATA_BOOL)."""
        hdr = ctypes.sizeof(vfio_irq_set)
        buf = bytearray(hdr + len(data))
        struct.pack_into("=IIIII", buf, 0, len(buf), flags, index, start,
                         count)
        buf[hdr:] = data
        _ioctl(self.fd, "VFIO_DEVICE_SET_IRQS", VFIO_DEVICE_SET_IRQS, buf,
               f"index={index} flags={flags:#x} start={start} count={count}")

    def enable_irqs(self, index: int,
                    fds: Union[int, Sequence[int]] = 1,
                    start: int = 0) -> list[int]:
        """Bind eventfds to vectors start.. of an IRQ index (this enables
        MSI/MSI-X/INTx). ``fds`` is a count (new eventfds are made, owned
        and closed by this Device) or a list of fds (-1 = leave unset).
        Returns the eventfds."""
        if isinstance(fds, int):
            fds = [new_eventfd() for _ in range(fds)]
            self.eventfds.setdefault(index, []).extend(fds)
        fds = list(fds)
        data = struct.pack(f"={len(fds)}i", *fds)
        self.set_irqs(index, VFIO_IRQ_SET_DATA_EVENTFD |
                      VFIO_IRQ_SET_ACTION_TRIGGER, start, len(fds), data)
        return fds

    def disable_irqs(self, index: int) -> None:
        """Disable a whole IRQ index (DATA_NONE|ACTION_TRIGGER, count 0)
        and close the eventfds enable_irqs() created for it."""
        self.set_irqs(index, VFIO_IRQ_SET_DATA_NONE |
                      VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0)
        for efd in self.eventfds.pop(index, []):
            _close_quiet(efd)

    def trigger_irq(self, index: int, start: int = 0, count: int = 1) -> None:
        """Loopback: make the kernel signal the vectors' eventfds
        (DATA_NONE|ACTION_TRIGGER)."""
        self.set_irqs(index, VFIO_IRQ_SET_DATA_NONE |
                      VFIO_IRQ_SET_ACTION_TRIGGER, start, count)

    def mask_irq(self, index: int = IRQ_INTX, start: int = 0,
                 count: int = 1) -> None:
        self.set_irqs(index, VFIO_IRQ_SET_DATA_NONE |
                      VFIO_IRQ_SET_ACTION_MASK, start, count)

    def unmask_irq(self, index: int = IRQ_INTX, start: int = 0,
                   count: int = 1) -> None:
        self.set_irqs(index, VFIO_IRQ_SET_DATA_NONE |
                      VFIO_IRQ_SET_ACTION_UNMASK, start, count)

    # -- reset, features, ioeventfd ---------------------------------------

    def reset(self) -> None:
        """VFIO_DEVICE_RESET."""
        _ioctl(self.fd, "VFIO_DEVICE_RESET", VFIO_DEVICE_RESET)

    def feature(self, flags: int, data: bytes = b"",
                out_size: int = 0) -> bytes:
        """Raw VFIO_DEVICE_FEATURE: ``flags`` = feature index | GET/SET/
        PROBE; ``data`` is sent, ``out_size`` bytes of room are added for
        GET. Returns the data part after the call."""
        hdr = ctypes.sizeof(vfio_device_feature)
        n = max(len(data), out_size)
        buf = bytearray(hdr + n)
        struct.pack_into("=II", buf, 0, len(buf), flags)
        buf[hdr:hdr + len(data)] = data
        _ioctl(self.fd, "VFIO_DEVICE_FEATURE", VFIO_DEVICE_FEATURE, buf,
               f"feature={flags & VFIO_DEVICE_FEATURE_MASK} flags={flags:#x}")
        return bytes(buf[hdr:])

    def probe_feature(self, feature: int, get: bool = True,
                      set: bool = False) -> int:
        """PROBE (|GET|SET) a feature: 0 if supported, else the errno
        (ENOTTY when the driver lacks it, EINVAL, ...)."""
        flags = (feature | VFIO_DEVICE_FEATURE_PROBE |
                 (VFIO_DEVICE_FEATURE_GET if get else 0) |
                 (VFIO_DEVICE_FEATURE_SET if set else 0))
        try:
            self.feature(flags)
        except VfioError as e:
            return e.errno
        return 0

    def migration_flags(self) -> int:
        """GET VFIO_DEVICE_FEATURE_MIGRATION (raises if unsupported)."""
        out = self.feature(VFIO_DEVICE_FEATURE_MIGRATION |
                           VFIO_DEVICE_FEATURE_GET, out_size=8)
        return struct.unpack_from("=Q", out, 0)[0]

    def mig_state(self) -> int:
        """GET VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE: the state's number."""
        out = self.feature(VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE |
                           VFIO_DEVICE_FEATURE_GET, out_size=8)
        return struct.unpack_from("=I", out, 0)[0]

    def set_mig_state(self, state: int) -> Optional[int]:
        """SET VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE; the data fd of a
        transfer the transition starts (the caller closes it), else None."""
        out = self.feature(VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE |
                           VFIO_DEVICE_FEATURE_SET,
                           data=struct.pack("=Ii", state, -1))
        fd = struct.unpack_from("=i", out, 4)[0]
        return None if fd < 0 else fd

    def mig_data_size(self) -> int:
        """GET VFIO_DEVICE_FEATURE_MIG_DATA_SIZE (6.3 and later)."""
        out = self.feature(VFIO_DEVICE_FEATURE_MIG_DATA_SIZE |
                           VFIO_DEVICE_FEATURE_GET, out_size=8)
        return struct.unpack_from("=Q", out, 0)[0]

    def ioeventfd(self, index: int, offset: int, data: int, size: int = 4,
                  fd: Optional[int] = None) -> int:
        """VFIO_DEVICE_IOEVENTFD: when the eventfd is signalled the kernel
        writes ``data`` (``size`` bytes) at ``offset`` in region ``index``.
        With fd None a new eventfd is made (closed by close()). Returns the
        eventfd."""
        if fd is None:
            fd = new_eventfd()
            self._ioeventfds.append(fd)
        self._ioeventfd(index, offset, data, size, fd)
        return fd

    def ioeventfd_unregister(self, index: int, offset: int, data: int,
                             size: int = 4) -> None:
        """De-assign (fd -1) an ioeventfd set with the same offset/data/size."""
        self._ioeventfd(index, offset, data, size, -1)

    def _ioeventfd(self, index: int, offset: int, data: int, size: int,
                   fd: int) -> None:
        try:
            sflag = _IOEVENTFD_SIZE[size]
        except KeyError:
            raise ValueError(f"ioeventfd size must be 1, 2, 4 or 8, not {size}")
        e = vfio_device_ioeventfd(ctypes.sizeof(vfio_device_ioeventfd), sflag,
                                  self._region(index).offset + offset, data,
                                  fd, 0)
        _ioctl(self.fd, "VFIO_DEVICE_IOEVENTFD", VFIO_DEVICE_IOEVENTFD, e,
               f"index={index} off={offset:#x} size={size} fd={fd}")

    def hot_reset_info(self) -> list[HotResetDevice]:
        """VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: devices affected by a bus
        reset (group_id is a dev id with the 6.12 iommufd cdev flags)."""
        hdr = ctypes.sizeof(vfio_pci_hot_reset_info)
        dsz = ctypes.sizeof(vfio_pci_dependent_device)
        count = 0
        for _ in range(4):
            buf = bytearray(hdr + count * dsz)
            struct.pack_into("=I", buf, 0, len(buf))
            try:
                _ioctl(self.fd, "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO",
                       VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, buf)
            except VfioError as e:
                if e.errno == _errno.ENOSPC:
                    count = struct.unpack_from("=I", buf, 8)[0]
                    continue
                raise
            break
        n = struct.unpack_from("=I", buf, 8)[0]
        return [HotResetDevice(*struct.unpack_from("=IHBB", buf, hdr + i * dsz))
                for i in range(n)]

    # -- region access -------------------------------------------------------

    def pread(self, index: int, offset: int, size: int) -> bytes:
        """Read ``size`` bytes at ``offset`` within region ``index``."""
        pos = self._region(index).offset + offset
        try:
            return os.pread(self.fd, size, pos)
        except OSError as e:
            raise VfioError(e.errno, "pread",
                            f"{REGION_NAMES.get(index, index)}+{offset:#x} "
                            f"size={size}") from None

    def pwrite(self, index: int, offset: int, data: bytes) -> int:
        """Write ``data`` at ``offset`` within region ``index``; returns
        the count written."""
        pos = self._region(index).offset + offset
        try:
            return os.pwrite(self.fd, data, pos)
        except OSError as e:
            raise VfioError(e.errno, "pwrite",
                            f"{REGION_NAMES.get(index, index)}+{offset:#x} "
                            f"size={len(data)}") from None

    def read(self, index: int, offset: int, size: int) -> int:
        """Read a 1/2/4/8-byte little-endian value with one pread.

        vfio-pci on 6.1 splits an 8-byte BAR access into two 4-byte ones;
        6.12 does a single 8-byte access (which e.g. edu refuses below
        0x80, reading all ones)."""
        data = self.pread(index, offset, size)
        if len(data) != size:
            raise VfioError(_errno.EIO, "pread",
                            f"short read {len(data)}/{size} at {offset:#x}")
        return struct.unpack(_FMT[size], data)[0]

    def write(self, index: int, offset: int, size: int, value: int) -> None:
        n = self.pwrite(index, offset, struct.pack(_FMT[size], value))
        if n != size:
            raise VfioError(_errno.EIO, "pwrite",
                            f"short write {n}/{size} at {offset:#x}")

    def read8(self, index: int, offset: int) -> int:
        return self.read(index, offset, 1)

    def read16(self, index: int, offset: int) -> int:
        return self.read(index, offset, 2)

    def read32(self, index: int, offset: int) -> int:
        return self.read(index, offset, 4)

    def read64(self, index: int, offset: int) -> int:
        return self.read(index, offset, 8)

    def write8(self, index: int, offset: int, value: int) -> None:
        self.write(index, offset, 1, value)

    def write16(self, index: int, offset: int, value: int) -> None:
        self.write(index, offset, 2, value)

    def write32(self, index: int, offset: int, value: int) -> None:
        self.write(index, offset, 4, value)

    def write64(self, index: int, offset: int, value: int) -> None:
        self.write(index, offset, 8, value)

    def mmap(self, index: int, offset: int = 0,
             length: Optional[int] = None,
             prot: int = _mmap.PROT_READ | _mmap.PROT_WRITE) -> _mmap.mmap:
        """mmap ``length`` bytes (default: to the region's end) at
        ``offset`` (page aligned) within region ``index``; MAP_SHARED."""
        r = self._region(index)
        if length is None:
            length = r.size - offset
        try:
            return _mmap.mmap(self.fd, length, _mmap.MAP_SHARED, prot,
                              offset=r.offset + offset)
        except OSError as e:
            raise VfioError(e.errno, "mmap",
                            f"{REGION_NAMES.get(index, index)}+{offset:#x} "
                            f"len={length:#x}") from None

    # -- config space --------------------------------------------------------

    def config_read(self, offset: int, size: int = 4) -> int:
        return self.read(CONFIG, offset, size)

    def config_write(self, offset: int, value: int, size: int = 4) -> None:
        self.write(CONFIG, offset, size, value)

    def config_read8(self, offset: int) -> int:
        return self.read(CONFIG, offset, 1)

    def config_read16(self, offset: int) -> int:
        return self.read(CONFIG, offset, 2)

    def config_read32(self, offset: int) -> int:
        return self.read(CONFIG, offset, 4)

    def config_write8(self, offset: int, value: int) -> None:
        self.write(CONFIG, offset, 1, value)

    def config_write16(self, offset: int, value: int) -> None:
        self.write(CONFIG, offset, 2, value)

    def config_write32(self, offset: int, value: int) -> None:
        self.write(CONFIG, offset, 4, value)

    def config_bytes(self, offset: int = 0, size: int = 256) -> bytes:
        return self.pread(CONFIG, offset, size)

    def find_capability(self, cap_id: int) -> Optional[int]:
        """Offset of a standard PCI capability in (virtualized) config
        space, or None."""
        if not self.config_read16(0x06) & 0x10:     # status: cap list
            return None
        pos = self.config_read8(0x34) & ~3
        seen = set()
        while pos and pos not in seen:
            seen.add(pos)
            if self.config_read8(pos) == cap_id:
                return pos
            pos = self.config_read8(pos + 1) & ~3
        return None

    def find_ext_capability(self, cap_id: int) -> Optional[int]:
        """Offset of a PCIe extended capability, or None."""
        pos, seen = 0x100, set()
        while pos and pos not in seen and pos < 0x1000:
            seen.add(pos)
            try:
                hdr = self.config_read32(pos)
            except VfioError:
                return None
            if hdr in (0, 0xFFFFFFFF):
                return None
            if hdr & 0xFFFF == cap_id:
                return pos
            pos = (hdr >> 20) & ~3
        return None

    def enable_bus_master(self, memory: bool = True) -> None:
        """Set PCI_COMMAND memory space (bit 1) and bus master (bit 2)."""
        cmd = self.config_read16(0x04)
        self.config_write16(0x04, cmd | 0x4 | (0x2 if memory else 0))


def opened(bdf: str) -> Device:
    """``Device(bdf)`` with memory decoding and bus mastering on, as a
    VFIO user that drives the device sets them; use it as a context
    manager."""
    dev = Device(bdf)
    try:
        dev.enable_bus_master()
    except BaseException:
        dev.close()
        raise
    return dev


def _close_quiet(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
