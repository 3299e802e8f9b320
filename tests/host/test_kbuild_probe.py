# SPDX-License-Identifier: GPL-2.0
"""kmod/Kbuild's feature probes (vfm_probe), evaluated by GNU make against
a fake kernel tree: a header that contains the string defines
VFM_HAVE_<name>, one that lacks it defines nothing, and a header that is
not there stops the build with a message naming it, instead of building
a module that fails at run time."""
import os
import re
import subprocess

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KBUILD = os.path.join(TOP, "kmod", "Kbuild")


def probe_rule():
    text = open(KBUILD).read()
    m = re.search(r"^vfm_probe = .*$", text, re.M)
    assert m, "kmod/Kbuild defines no vfm_probe"
    return m[0]


def run_probe(tmp_path, header, string, name):
    mk = tmp_path / "probe.mk"
    mk.write_text(probe_rule() + "\n"
                  f"out := $(call vfm_probe,{header},{string},{name})\n"
                  "all: ; @echo 'out=$(out)'\n")
    return subprocess.run(["make", "-s", "-f", str(mk),
                           f"srctree={tmp_path / 'src'}"],
                          capture_output=True, text=True)


def fake_tree(tmp_path, text):
    inc = tmp_path / "src" / "include" / "linux"
    inc.mkdir(parents=True)
    (inc / "vfio.h").write_text(text)


def test_found(tmp_path):
    fake_tree(tmp_path, "struct x {\n\tint (*bind_iommufd)(void);\n};\n")
    r = run_probe(tmp_path, "linux/vfio.h", "(*bind_iommufd)", "BIND_IOMMUFD")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "out=-DVFM_HAVE_BIND_IOMMUFD"


def test_absent_feature(tmp_path):
    fake_tree(tmp_path, "struct x {\n\tint (*open)(void);\n};\n")
    r = run_probe(tmp_path, "linux/vfio.h", "(*bind_iommufd)", "BIND_IOMMUFD")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "out="


def test_missing_header_stops_the_build(tmp_path):
    (tmp_path / "src" / "include").mkdir(parents=True)
    r = run_probe(tmp_path, "linux/vfio.h", "(*bind_iommufd)", "BIND_IOMMUFD")
    assert r.returncode != 0
    assert "feature probe" in r.stderr and "linux/vfio.h not found" in r.stderr
