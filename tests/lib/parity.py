# SPDX-License-Identifier: GPL-2.0
"""Fingerprints of a VFIO PCI device, for driver parity tests.

``fingerprint(bdf, kind)`` opens the function through VFIO (whatever
driver it is bound to), runs one fixed script of queries and actions and
returns a nested dict of everything the kernel answered: device, region
and IRQ info (capability chains as raw bytes), the whole config region,
BAR registers read with pread and through mmap, MSI/MSI-X/INTx/REQ
eventfd setup, trigger and teardown, reset, VFIO_DEVICE_FEATURE probes,
ioeventfds, DMA map/unmap (and for edu a DMA round trip), and the errno of
a few requests that must fail. Each step records ``("ok", value)`` or
``("errno", "EINVAL")`` so that an error is an answer like any other.

The script is deterministic: it writes every device register it later
reads back (edu's liveness and factorial registers, its DMA engine), so
two runs on the same function under two drivers must give equal dicts.
``diff(a, b)`` lists where they differ, one line per leaf.

``kind`` is "edu" (QEMU's edu device) or "nvme" (a QEMU NVMe VF whose
secondary controller is online).
"""

from __future__ import annotations

import errno
import mmap
import os
import struct
import time
from typing import Any, Callable

import vfio
from vfio import (BAR0, CONFIG, IRQ_ERR, IRQ_INTX, IRQ_MSI, IRQ_MSIX,
                  IRQ_REQ, Device)

PAGE = mmap.PAGESIZE

# edu BAR0 registers (QEMU docs/specs/edu.rst)
EDU_ID, EDU_LIVE, EDU_FACT, EDU_STATUS = 0x00, 0x04, 0x08, 0x20
EDU_IRQ_STATUS, EDU_IRQ_RAISE, EDU_IRQ_ACK = 0x24, 0x60, 0x64
EDU_DMA_SRC, EDU_DMA_DST, EDU_DMA_CNT, EDU_DMA_CMD = 0x80, 0x88, 0x90, 0x98
EDU_ID_VALUE = 0x010000ED
EDU_DMA_BUF = 0x40000        # the device-side buffer's DMA address

# NVMe BAR0: CAP, VS, INTMS, INTMC, CC, (rsvd), CSTS, NSSR, AQA, ASQ, ACQ
NVME_VS = 0x08
NVME_VS_1_4 = 0x00010400

PCI_CAP_ID_MSI = 0x05
PCI_CAP_ID_MSIX = 0x11
PCI_CAP_ID_EXP = 0x10


def attempt(fn: Callable[..., Any], *args, **kw) -> tuple:
    """("ok", fn(...)) or ("errno", "ENAME") if it raised an OSError."""
    try:
        return ("ok", fn(*args, **kw))
    except OSError as e:
        return ("errno", errno.errorcode.get(e.errno, e.errno))


def ok(r: tuple) -> Any:
    """The value of a successful attempt(); AssertionError otherwise."""
    assert r[0] == "ok", f"expected success, got {r}"
    return r[1]


def _caps(caps: list) -> list:
    return [(c.id, c.version, c.offset, c.raw.hex()) for c in caps]


def _region(r: vfio.RegionInfo) -> dict:
    return {"flags": r.flags, "size": r.size, "offset": r.offset,
            "argsz": r.argsz, "caps": _caps(r.caps)}


def _wait(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def _pending(efd: int, timeout: float) -> Any:
    v = vfio.wait_eventfd(efd, timeout)
    return 0 if v is None else v


# --------------------------------------------------------------------------
# Pieces of the fingerprint
# --------------------------------------------------------------------------

def info_part(dev: Device) -> dict:
    fp: dict = {}
    info = dev.get_info()
    fp["device"] = {"flags": info.flags, "num_regions": info.num_regions,
                    "num_irqs": info.num_irqs, "caps": _caps(info.caps)}
    # One index past the end too: both must refuse it the same way.
    fp["regions"] = {
        vfio.REGION_NAMES.get(i, str(i)):
        attempt(lambda i=i: _region(dev.region_info(i)))
        for i in range(info.num_regions + 1)}
    fp["irqs"] = {
        vfio.IRQ_NAMES.get(i, str(i)):
        attempt(lambda i=i: (lambda q: (q.flags, q.count))(dev.irq_info(i)))
        for i in range(info.num_irqs + 1)}
    # The region info again with a larger argsz than needed: same bytes.
    fp["bar0_info_big_argsz"] = attempt(
        lambda: _region(dev.region_info(BAR0, argsz=512)))
    fp["group_status"] = dev.group.status()
    fp["hot_reset_info"] = attempt(
        lambda: [(d.group_id, d.segment, d.bus, d.devfn)
                 for d in dev.hot_reset_info()])
    return fp


def config_part(dev: Device) -> dict:
    size = dev.region_info(CONFIG).size
    fp = {"size": size,
          # the whole region in one pread, and again dword by dword
          "bytes": attempt(lambda: dev.pread(CONFIG, 0, size).hex()),
          "dwords": attempt(lambda: b"".join(
              dev.pread(CONFIG, o, 4) for o in range(0, size, 4)).hex()),
          "past_end": attempt(lambda: dev.pread(CONFIG, size, 4).hex()),
          "straddle_end": attempt(lambda: dev.pread(CONFIG, size - 2, 4).hex()),
          }
    return fp


def mmap_part(dev: Device) -> dict:
    """Which ranges of which regions mmap() accepts."""
    fp = {}
    for i, r in dev.regions().items():
        name = vfio.REGION_NAMES.get(i, str(i))
        if not r.size:
            fp[name] = attempt(lambda: len(dev.mmap(i, 0, PAGE)))
            continue
        tries = {"first_page": (0, min(PAGE, r.size)),
                 "whole": (0, r.size),
                 "past_end": (r.size, PAGE)}
        if r.size > PAGE:
            tries["last_page"] = (r.size - PAGE, PAGE)
        res = {}
        for k, (off, ln) in tries.items():
            def m(off=off, ln=ln):
                mm = dev.mmap(i, off, ln)
                n = len(mm)
                mm.close()
                return n
            res[k] = attempt(m)
        fp[name] = res
    fp["read_only_prot"] = attempt(
        lambda: dev.mmap(BAR0, 0, PAGE, prot=mmap.PROT_READ).close())
    return fp


def bar_reads(dev: Device, offsets32: list, offsets64: list) -> dict:
    """The same BAR0 registers with pread and with loads from an mmap."""
    fp: dict = {"pread32": {}, "mmap32": {}, "pread64": {}, "mmap64": {}}
    mm = dev.mmap(BAR0, 0, PAGE)
    try:
        for o in offsets32:
            fp["pread32"][o] = attempt(dev.read32, BAR0, o)
            fp["mmap32"][o] = vfio.mmio_read32(mm, o)
        for o in offsets64:
            fp["pread64"][o] = attempt(dev.read64, BAR0, o)
            fp["mmap64"][o] = vfio.mmio_read64(mm, o)
    finally:
        mm.close()
    return fp


def irq_set_errors(dev: Device, kind: str) -> dict:
    """Requests that must fail (or not) the same way."""
    def bad(index, flags, start=0, count=0, data=b""):
        return attempt(dev.set_irqs, index, flags, start, count, data)
    T = vfio.VFIO_IRQ_SET_ACTION_TRIGGER
    N = vfio.VFIO_IRQ_SET_DATA_NONE
    E = vfio.VFIO_IRQ_SET_DATA_EVENTFD
    B = vfio.VFIO_IRQ_SET_DATA_BOOL
    return {
        "trigger_disabled_msi": bad(IRQ_MSI, N | T, 0, 1),
        "trigger_disabled_msix": bad(IRQ_MSIX, N | T, 0, 1),
        "two_data_flags": bad(IRQ_MSI, N | B | T, 0, 1, b"\1"),
        "bad_index": bad(9, N | T, 0, 0),
        "past_count": bad(IRQ_MSIX if kind == "nvme" else IRQ_MSI,
                          E | T, 0, 8, struct.pack("=8i", *([-1] * 8))),
        "mask_msi": bad(IRQ_MSI, N | vfio.VFIO_IRQ_SET_ACTION_MASK, 0, 1),
        "err_eventfd_minus1": bad(IRQ_ERR, E | T, 0, 1, struct.pack("=i", -1)),
    }


def msi_part(dev: Device, index: int, cap_id: int, raise_fn=None,
             ack_fn=None) -> dict:
    """Enable one vector of MSI or MSI-X with an eventfd; fire it by a
    device interrupt (raise_fn) and by loopback (DATA_NONE and DATA_BOOL
    triggers); read the virtualized capability on the way; tear down."""
    fp: dict = {}
    cap = dev.find_capability(cap_id)
    fp["cap_offset"] = cap
    capsz = 24 if cap_id == PCI_CAP_ID_MSI else 12

    def capbytes():
        return dev.config_bytes(cap, capsz).hex() if cap is not None else None
    fp["cap_before"] = capbytes()
    r = attempt(dev.enable_irqs, index, 1)
    fp["enable"] = (r[0], None if r[0] == "ok" else r[1])
    if r[0] != "ok":
        return fp
    efd = r[1][0]
    fp["cap_enabled"] = capbytes()
    if raise_fn is not None:
        raise_fn()
        fp["device_irq"] = _pending(efd, 5.0)
        ack_fn()
    fp["loopback"] = attempt(dev.trigger_irq, index, 0, 1)
    fp["loopback_count"] = _pending(efd, 5.0)
    fp["bool_trigger"] = attempt(
        dev.set_irqs, index, vfio.VFIO_IRQ_SET_DATA_BOOL |
        vfio.VFIO_IRQ_SET_ACTION_TRIGGER, 0, 1, b"\x01")
    fp["bool_count"] = _pending(efd, 5.0)
    # Re-arming with a new eventfd on an enabled index, then unset (-1).
    efd2 = vfio.new_eventfd()
    try:
        fp["swap_eventfd"] = attempt(
            lambda: dev.enable_irqs(index, [efd2]) and None)
        fp["swap_trigger"] = attempt(dev.trigger_irq, index, 0, 1)
        fp["swap_counts"] = (vfio.drain_eventfd(efd),
                             _pending(efd2, 5.0))
        fp["unset_vector"] = attempt(
            lambda: dev.enable_irqs(index, [-1]) and None)
    finally:
        os.close(efd2)
    fp["disable"] = attempt(dev.disable_irqs, index)
    fp["cap_disabled"] = capbytes()
    fp["disable_again"] = attempt(dev.disable_irqs, index)
    return fp


def intx_part(dev: Device) -> dict:
    fp: dict = {}
    r = attempt(dev.enable_irqs, IRQ_INTX, 1)
    fp["enable"] = (r[0], None if r[0] == "ok" else r[1])
    if r[0] != "ok":
        return fp
    efd = r[1][0]
    fp["mask"] = attempt(dev.mask_irq, IRQ_INTX)
    fp["unmask"] = attempt(dev.unmask_irq, IRQ_INTX)
    fp["loopback"] = attempt(dev.trigger_irq, IRQ_INTX, 0, 1)
    fp["loopback_count"] = _pending(efd, 5.0)
    fp["unmask_after"] = attempt(dev.unmask_irq, IRQ_INTX)
    # MSI cannot be enabled while INTx is
    efd2 = vfio.new_eventfd()
    try:
        fp["msi_while_intx"] = attempt(
            lambda: dev.enable_irqs(IRQ_MSI, [efd2]) and None)
    finally:
        os.close(efd2)
    fp["disable"] = attempt(dev.disable_irqs, IRQ_INTX)
    return fp


def req_part(dev: Device) -> dict:
    """The device-request (REQ) and error (ERR) eventfds: set and unset."""
    fp = {}
    for name, idx in (("req", IRQ_REQ), ("err", IRQ_ERR)):
        r = attempt(dev.enable_irqs, idx, 1)
        fp[name + "_enable"] = (r[0], None if r[0] == "ok" else r[1])
        if r[0] == "ok":
            fp[name + "_loopback"] = attempt(dev.trigger_irq, idx, 0, 1)
            fp[name + "_count"] = _pending(r[1][0], 2.0)
            fp[name + "_disable"] = attempt(dev.disable_irqs, idx)
    return fp


def feature_part(dev: Device) -> dict:
    P = vfio.VFIO_DEVICE_FEATURE_PROBE
    G = vfio.VFIO_DEVICE_FEATURE_GET
    S = vfio.VFIO_DEVICE_FEATURE_SET
    fp = {}
    for f in range(0, 12):
        fp[f] = {"probe_get": dev.probe_feature(f, get=True, set=False),
                 "probe_set": dev.probe_feature(f, get=False, set=True),
                 "probe_both": dev.probe_feature(f, get=True, set=True)}
    fp["probe_none"] = attempt(dev.feature, vfio.VFIO_DEVICE_FEATURE_MIGRATION | P)
    fp["get_migration"] = attempt(dev.feature, vfio.VFIO_DEVICE_FEATURE_MIGRATION | G,
                                  out_size=8)
    fp["get_mig_state"] = attempt(
        dev.feature, vfio.VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE | G, out_size=8)
    fp["set_mig_state"] = attempt(
        dev.feature, vfio.VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE | S,
        data=struct.pack("=II", 2, 0))
    fp["unknown_flag"] = attempt(dev.feature, (1 << 20) | G)
    fp["get_vf_token"] = attempt(
        dev.feature, vfio.VFIO_DEVICE_FEATURE_PCI_VF_TOKEN | G)
    return fp


def ioeventfd_part(dev: Device, kind: str) -> dict:
    fp: dict = {}
    if kind == "edu":
        data = 0x11223344
        r = attempt(dev.ioeventfd, BAR0, EDU_LIVE, data, 4)
        fp["register"] = (r[0], None if r[0] == "ok" else r[1])
        if r[0] == "ok":
            os.eventfd_write(r[1], 1)
            want = data ^ 0xFFFFFFFF
            fp["fired"] = _wait(lambda: dev.read32(BAR0, EDU_LIVE) == want, 5.0)
            fp["register_dup"] = attempt(dev.ioeventfd, BAR0, EDU_LIVE, data, 4,
                                         fd=r[1])
        fp["unregister"] = attempt(dev.ioeventfd_unregister, BAR0, EDU_LIVE,
                                   data, 4)
        fp["unregister_again"] = attempt(dev.ioeventfd_unregister, BAR0,
                                         EDU_LIVE, data, 4)
        r = attempt(dev.ioeventfd, BAR0, EDU_DMA_CNT, 0x10, 8)
        fp["register64"] = (r[0], None if r[0] == "ok" else r[1])
        fp["unregister64"] = attempt(dev.ioeventfd_unregister, BAR0,
                                     EDU_DMA_CNT, 0x10, 8)
    else:
        # NVMe INTMS (0x0c): registered and removed, never fired.
        r = attempt(dev.ioeventfd, BAR0, 0x0C, 0, 4)
        fp["register"] = (r[0], None if r[0] == "ok" else r[1])
        fp["unregister"] = attempt(dev.ioeventfd_unregister, BAR0, 0x0C, 0, 4)
        msix = dev.find_capability(PCI_CAP_ID_MSIX)
        if msix is not None:
            table = dev.config_read32(msix + 4)
            if table & 7 == BAR0:
                fp["in_msix_table"] = attempt(dev.ioeventfd, BAR0,
                                              table & ~7, 0, 4)
    fp["unaligned"] = attempt(
        lambda: dev.ioeventfd(BAR0, 2, 0, 4) and None)
    fp["config_region"] = attempt(dev.ioeventfd, CONFIG, 0x40, 0, 4)
    fp["past_end"] = attempt(dev.ioeventfd, BAR0,
                             dev.region_info(BAR0).size, 0, 4)
    return fp


def dma_part(dev: Device, kind: str) -> dict:
    c = dev.container
    fp: dict = {}
    info = c.iommu_info()
    fp["iommu_info"] = (info.flags, info.iova_pgsizes, _caps(info.caps))
    src = ok(attempt(c.dma_map, 0x100000, 2 * PAGE))
    dst = ok(attempt(c.dma_map, 0x200000, PAGE))
    fp["map_overlap"] = attempt(lambda: c.dma_map(0x101000, PAGE) and None)
    fp["map_unaligned"] = attempt(lambda: c.dma_map(0x300800, PAGE) and None)
    if kind == "edu":
        pattern = bytes((i * 7 + 3) & 0xFF for i in range(PAGE))
        src.mem[:PAGE] = pattern
        dst.mem[:PAGE] = b"\0" * PAGE
        fp["to_device"] = edu_dma(dev, 0x100000, EDU_DMA_BUF, PAGE, True)
        fp["from_device"] = edu_dma(dev, EDU_DMA_BUF, 0x200000, PAGE, False)
        fp["round_trip"] = dst.mem[:PAGE] == pattern
    fp["unmap_part"] = attempt(c.dma_unmap, 0x100000, PAGE)
    fp["unmap"] = attempt(c.dma_unmap, 0x100000, 2 * PAGE)
    fp["unmap_dst"] = attempt(c.dma_unmap, 0x200000, PAGE)
    fp["unmap_again"] = attempt(c.dma_unmap, 0x200000, PAGE)
    return fp


def edu_dma(dev: Device, src: int, dst: int, count: int,
            to_device: bool) -> tuple:
    """Run one edu DMA transfer; ("done", cmd register) or ("timeout", ...)."""
    dev.write64(BAR0, EDU_DMA_SRC, src)
    dev.write64(BAR0, EDU_DMA_DST, dst)
    dev.write64(BAR0, EDU_DMA_CNT, count)
    dev.write64(BAR0, EDU_DMA_CMD, 0x1 | (0 if to_device else 0x2))
    done = _wait(lambda: not dev.read64(BAR0, EDU_DMA_CMD) & 0x1, 5.0)
    return ("done" if done else "timeout", dev.read64(BAR0, EDU_DMA_CMD))


def misc_errors(dev: Device) -> dict:
    """Accesses vfio-pci refuses: both drivers must refuse them alike."""
    vga = vfio.region_offset(vfio.VGA)
    fp = {
        "pread_bad_index": attempt(lambda: os.pread(dev.fd, 4, 12 << 40)),
        "pread_vga": attempt(lambda: os.pread(dev.fd, 4, vga).hex()),
        "pwrite_rom": attempt(dev.pwrite, vfio.ROM, 0, b"\0\0\0\0"),
        "pread_rom": attempt(lambda: dev.pread(vfio.ROM, 0, 4).hex()),
        "bar0_past_end": attempt(
            lambda: dev.pread(BAR0, dev.region_info(BAR0).size, 4).hex()),
        "bar1": attempt(lambda: dev.pread(vfio.BAR1, 0, 4).hex()),
        "mmap_config": attempt(lambda: dev.mmap(CONFIG, 0, PAGE).close()),
        "region_info_bad": attempt(dev.region_info, 100),
        "irq_info_bad": attempt(dev.irq_info, 100),
        "unknown_ioctl": attempt(vfio._ioctl, dev.fd, "VFIO_99",
                                 vfio._IO(99), 0),
        "get_device_fd_again": attempt(
            lambda: os.close(dev.group.get_device_fd(dev.bdf))),
    }
    return fp


# --------------------------------------------------------------------------
# The fingerprints
# --------------------------------------------------------------------------

def edu_registers(dev: Device) -> dict:
    """Set edu's state to known values, then read it both ways."""
    dev.write32(BAR0, EDU_LIVE, 0x5A5AA5A5)
    dev.write32(BAR0, EDU_FACT, 6)
    _wait(lambda: not dev.read32(BAR0, EDU_STATUS) & 0x1)
    dev.write32(BAR0, EDU_IRQ_ACK, 0xFFFFFFFF)
    dev.write64(BAR0, EDU_DMA_SRC, 0x1000)
    dev.write64(BAR0, EDU_DMA_DST, 0x2000)
    dev.write64(BAR0, EDU_DMA_CNT, 0x30)
    fp = bar_reads(dev, [EDU_ID, EDU_LIVE, EDU_FACT, EDU_STATUS,
                         EDU_IRQ_STATUS],
                   [EDU_DMA_SRC, EDU_DMA_CNT, EDU_ID])
    # sub-dword accesses through the fd (edu answers only 4 and 8 bytes)
    fp["pread8"] = attempt(dev.read8, BAR0, EDU_ID)
    fp["pread16"] = attempt(dev.read16, BAR0, EDU_ID)
    fp["pread_unaligned"] = attempt(lambda: dev.pread(BAR0, 1, 4).hex())
    fp["pread_block"] = attempt(lambda: dev.pread(BAR0, 0, 12).hex())
    # a write through the mmap, read back with pread and vice versa
    mm = dev.mmap(BAR0, 0, PAGE)
    try:
        vfio.mmio_write32(mm, EDU_LIVE, 0x0F0F0F0F)
        fp["mmap_write_pread"] = dev.read32(BAR0, EDU_LIVE)
        dev.write32(BAR0, EDU_LIVE, 0x01020304)
        fp["pwrite_mmap_read"] = vfio.mmio_read32(mm, EDU_LIVE)
    finally:
        mm.close()
    return fp


def nvme_registers(dev: Device) -> dict:
    fp = bar_reads(dev, list(range(0, 0x40, 4)), [0x00, 0x28, 0x30])
    fp["pread_block"] = attempt(lambda: dev.pread(BAR0, 0, 0x40).hex())
    msix = dev.find_capability(PCI_CAP_ID_MSIX)
    if msix is not None:
        table = dev.config_read32(msix + 4)
        pba = dev.config_read32(msix + 8)
        fp["msix"] = {"table": table, "pba": pba}
        if table & 7 == BAR0:
            t = table & ~7
            # vfio-pci keeps the table itself from the user's pread
            fp["msix"]["pread_table"] = attempt(
                lambda: dev.pread(BAR0, t, 16).hex())
            # the MSI-X table is host-programmed; only the mmap's
            # success and vector control's mask bit are compared.
            mm = attempt(dev.mmap, BAR0, t & ~(PAGE - 1), PAGE)
            fp["msix"]["mmap_table_page"] = mm[0]
            if mm[0] == "ok":
                mm[1].close()
        if pba & 7 == BAR0:
            fp["msix"]["pread_pba"] = attempt(
                lambda: dev.pread(BAR0, pba & ~7, 8).hex())
    return fp


def fingerprint(bdf: str, kind: str) -> dict:
    """Everything VFIO says about and does with ``bdf`` (see the top)."""
    assert kind in ("edu", "nvme")
    fp: dict = {}
    with Device(bdf) as dev:
        fp["info"] = info_part(dev)
        fp["config"] = config_part(dev)
        fp["mmap"] = mmap_part(dev)
        fp["errors"] = misc_errors(dev)
        dev.enable_bus_master()
        fp["config_bus_master"] = dev.config_bytes(0, 64).hex()
        if kind == "edu":
            fp["bar"] = edu_registers(dev)
            fp["msi"] = msi_part(
                dev, IRQ_MSI, PCI_CAP_ID_MSI,
                lambda: dev.write32(BAR0, EDU_IRQ_RAISE, 0x1),
                lambda: dev.write32(BAR0, EDU_IRQ_ACK, 0x1))
            fp["intx"] = intx_part(dev)
        else:
            fp["bar"] = nvme_registers(dev)
            fp["msix"] = msi_part(dev, IRQ_MSIX, PCI_CAP_ID_MSIX)
            fp["msi_absent"] = msi_part(dev, IRQ_MSI, PCI_CAP_ID_MSI)
            fp["intx"] = intx_part(dev)
        fp["irq_set_errors"] = irq_set_errors(dev, kind)
        fp["req"] = req_part(dev)
        fp["feature"] = feature_part(dev)
        fp["ioeventfd"] = ioeventfd_part(dev, kind)
        fp["dma"] = dma_part(dev, kind)
        fp["reset"] = attempt(dev.reset)
        fp["config_after_reset"] = attempt(
            lambda: dev.pread(CONFIG, 0, dev.region_info(CONFIG).size).hex())
        if kind == "nvme":
            fp["vs_after_reset"] = (attempt(dev.read32, BAR0, NVME_VS))
    # and a second open: what the first close left behind
    with Device(bdf) as dev:
        fp["reopen_config"] = attempt(
            lambda: dev.pread(CONFIG, 0, dev.region_info(CONFIG).size).hex())
    return fp


# --------------------------------------------------------------------------
# Comparing
# --------------------------------------------------------------------------

def _flatten(d: Any, path: str = "") -> dict:
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{path}.{k}" if path else str(k)))
        return out
    return {path: d}


def _hexdiff(a: str, b: str, width: int = 8) -> str:
    """Differing dwords of two hex strings (byte offsets)."""
    ab, bb = bytes.fromhex(a), bytes.fromhex(b)
    parts = []
    for o in range(0, max(len(ab), len(bb)), 4):
        x, y = ab[o:o + 4], bb[o:o + 4]
        if x != y:
            parts.append(f"@{o:#05x}: {x.hex() or '-'} != {y.hex() or '-'}")
    if len(ab) != len(bb):
        parts.append(f"length {len(ab)} != {len(bb)}")
    return "; ".join(parts[:width]) + (" ..." if len(parts) > width else "")


def _is_hex(v: Any) -> bool:
    if not isinstance(v, str) or len(v) < 16 or len(v) % 2:
        return False
    try:
        bytes.fromhex(v)
        return True
    except ValueError:
        return False


def diff(a: dict, b: dict, names: tuple = ("a", "b")) -> list[str]:
    """One line per leaf where the two fingerprints differ."""
    fa, fb = _flatten(a), _flatten(b)
    out = []
    for k in sorted(set(fa) | set(fb), key=str):
        va, vb = fa.get(k, "<absent>"), fb.get(k, "<absent>")
        if va == vb:
            continue
        if isinstance(va, tuple) and isinstance(vb, tuple) and \
                len(va) == len(vb) == 2 and _is_hex(va[1]) and _is_hex(vb[1]):
            out.append(f"{k}: {_hexdiff(va[1], vb[1])}")
        elif _is_hex(va) and _is_hex(vb):
            out.append(f"{k}: {_hexdiff(va, vb)}")
        else:
            out.append(f"{k}: {names[0]}={va!r} {names[1]}={vb!r}")
    return out
