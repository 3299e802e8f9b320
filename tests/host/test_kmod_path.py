# SPDX-License-Identifier: GPL-2.0
"""Host-side check of kmod/Makefile from a checkout whose path make and
kbuild would take apart (a space, a comma): it must run itself again
through a symbolic link at a plain path, and never hand kbuild the odd
path (kbuild given M=/a b/... reconfigures the kernel's headers tree).

Runs without kbuild: the kernel asked for does not exist, so the build
stops in the mirror step, after the forwarding this test is about.

    python3 -m pytest --noconftest tests/host/
"""

import os
import re
import shutil
import subprocess

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NO_KERNEL = "0.0.0-vfm-no-such-kernel"


def make_kmod(tmp_path, name):
    root = tmp_path / name
    kmod = root / "kmod"
    kmod.mkdir(parents=True)
    for f in ("Makefile", "Kbuild"):
        shutil.copy2(os.path.join(TOP, "kmod", f), kmod / f)
    p = subprocess.run(["make", "-C", str(kmod), f"KVER={NO_KERNEL}",
                        "modules"], capture_output=True, text=True, timeout=60)
    return root, p.stdout + p.stderr, p.returncode


def test_odd_path_builds_through_a_plain_link(tmp_path):
    root, out, rc = make_kmod(tmp_path, "my vfm, clone")
    assert rc != 0
    m = re.search(r"kmod: building through (/tmp/vfmediate-\d+-\d+) -> (.*) "
                  r"\(a plain path for kbuild\)", out)
    assert m, out
    link = m.group(1)
    try:
        assert m.group(2) == str(root)
        assert os.readlink(link) == str(root)
        # The inner make, run through the link, got as far as the kernel.
        assert f"no kernel build tree: /lib/modules/{NO_KERNEL}/build" in out
        assert f"{link}/kmod/Makefile" in out
    finally:
        if os.path.islink(link):
            os.unlink(link)


def test_plain_path_builds_in_place(tmp_path):
    root, out, rc = make_kmod(tmp_path, "plain")
    assert rc != 0
    assert "building through" not in out
    assert f"no kernel build tree: /lib/modules/{NO_KERNEL}/build" in out
