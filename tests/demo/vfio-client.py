#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The VFIO user's side of `make demo`: open one device the way a VMM
does (container, group, device fd; memory decoding on) and report, step by
step, what each request returned, checking it against what the demo says
should happen.

    vfio-client.py BDF STEP...

STEP is one of (REGION: bar0..bar5, rom, config; numbers hex or decimal):

    info:REGION=FLAGS/AREAS     region info: flags (read,write,mmap,caps)
                                and sparse-mmap areas (OFF+LEN,... or none)
    read:REGION:OFF:SIZE=WANT   pread SIZE (1, 2, 4, 8) bytes at OFF
    write:REGION:OFF:SIZE:VALUE=WANT
    mmap:REGION:OFF:LEN=WANT    mmap LEN bytes at OFF (then unmap)

WANT is a number, "ok", or an errno name (EACCES, EPERM, EINVAL...). Every
step prints one line; a step whose result is not WANT is marked and makes
the exit status 1, after the remaining steps have run.
"""
import errno
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))

import vfio  # noqa: E402

REGIONS = {name: i for i, name in vfio.REGION_NAMES.items()}
FLAGS = [(vfio.VFIO_REGION_INFO_FLAG_READ, "read"),
         (vfio.VFIO_REGION_INFO_FLAG_WRITE, "write"),
         (vfio.VFIO_REGION_INFO_FLAG_MMAP, "mmap"),
         (vfio.VFIO_REGION_INFO_FLAG_CAPS, "caps")]


def outcome(fn, *args):
    try:
        r = fn(*args)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    return "ok" if r is None else r


def show(v):
    if isinstance(v, int):
        return f"{v:#010x}"
    if v in errno.__dict__:
        return f"{v} ({os.strerror(getattr(errno, v))})"
    return str(v)


def want_of(s):
    try:
        return int(s, 0)
    except ValueError:
        return s


def step(dev, spec):
    """(description, result, wanted) of one STEP."""
    spec, _, want = spec.partition("=")
    op, region, *args = spec.split(":")
    index = REGIONS[region]
    nums = [int(a, 0) for a in args]
    if op == "info":
        info = dev.region_info(index)
        flags = ",".join(n for f, n in FLAGS if info.flags & f) or "none"
        areas = info.sparse_areas
        areas = "none" if not areas else ",".join(
            f"{o:#x}+{s:#x}" for o, s in areas)
        return (f"region info {region}: size {info.size:#x}",
                f"flags {flags}; sparse mmap areas {areas}",
                f"flags {want.replace('/', '; sparse mmap areas ')}")
    if op == "read":
        off, size = nums
        return (f"read  {region}+{off:#06x}, {size} bytes",
                outcome(dev.read, index, off, size), want_of(want))
    if op == "write":
        off, size, value = nums
        return (f"write {region}+{off:#06x}, {size} bytes <- {value:#x}",
                outcome(dev.write, index, off, size, value), want_of(want))
    if op == "mmap":
        off, length = nums

        def do():
            dev.mmap(index, off, length).close()
        return (f"mmap  {region}+{off:#06x}, {length:#x} bytes",
                outcome(do), want_of(want))
    raise SystemExit(f"vfio-client: unknown step {spec!r}")


def main(argv):
    if len(argv) < 3:
        raise SystemExit(__doc__)
    bdf, steps = argv[1], argv[2:]
    bad = 0
    with vfio.Device(bdf) as dev:
        dev.enable_bus_master()
        print(f"  [VFIO user] opened {bdf}: device fd {dev.fd}, "
              "memory decoding on")
        for spec in steps:
            what, got, want = step(dev, spec)
            same = got == want
            mark = "as told" if same else f"NOT AS TOLD: wanted {show(want)}"
            print(f"  [VFIO user] {what:<36} -> {show(got)}   {mark}")
            bad += not same
    print(f"  [VFIO user] closed {bdf}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
