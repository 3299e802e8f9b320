# SPDX-License-Identifier: GPL-2.0
"""`make demo` tells its story through the vfmediate command; this runs
the same script (tests/demo/demo.sh) in the suite's guest, so that the
README's first command keeps working, and puts the functions back the way
the rest of the suite expects them (the demo's `vfmediate unbind` lets
their default drivers take them, as driverctl does)."""
import os
import re
import subprocess

import pytest

import pci
import vfm
from budget import DEBUG_KERNEL

DEMO = os.path.join(os.path.dirname(__file__), "demo", "demo.sh")


# The demo's steps are the CLI's and netlink's, which test_cli.py and
# test_netlink.py run under the debug kernel's lockdep and KASAN too; the
# script itself, 2.5 minutes there, is the README's, for Debian kernels.
@pytest.mark.skipif(DEBUG_KERNEL, reason="make demo runs on Debian kernels")
def test_demo(edu, nvme_vf):
    before = {b: pci.driver(b) for b in (edu, nvme_vf)}
    try:
        p = subprocess.run([DEMO], capture_output=True, text=True,
                           timeout=600)
    finally:
        for b, drv in before.items():
            if pci.driver(b) != drv:
                pci.restore(b)
        for b in vfm.devices():
            vfm.purge(b)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    m = re.search(r"demo: all (\d+) checks held\n\Z", p.stdout)
    assert m and int(m[1]) >= 30, p.stdout[-500:]
