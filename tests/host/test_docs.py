# SPDX-License-Identifier: GPL-2.0
"""Host-side checks of the documentation against the code.

- man/vfmediate-mediator.9 renders without a groff warning;
- its worked example is kmod/mediators/audit.c, verbatim;
- it documents every declaration of include/linux/vfmediate.h;
- every mediator in kmod/mediators/ is built by its Kbuild as
  vfmediate_<name>.ko and declares MODULE_ALIAS_VFM_MEDIATOR("<name>")
  for the name it registers.

Runs on the host, outside the guest suite:

    python3 -m pytest --noconftest tests/host/
"""

import os
import re
import shutil
import subprocess

import pytest

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MAN9 = os.path.join(TOP, "man", "vfmediate-mediator.9")
HEADER = os.path.join(TOP, "include", "linux", "vfmediate.h")
MEDIATORS = os.path.join(TOP, "kmod", "mediators")
AUDIT_C = os.path.join(MEDIATORS, "audit.c")
TEST_ONLY = {"selftest.c",       # not a mediator: a registration self-test
             "devread.c"}       # a mediator for the API tests only


def _read(path):
    with open(path) as f:
        return f.read()


# -- roff <-> text, for the verbatim example ------------------------------------

def roff_escape(line):
    """One line of C as it goes into a no-fill (.EX) block."""
    line = (line.replace("\\", "\\e").replace("-", "\\-")
            .replace("'", "\\(aq").replace("`", "\\(ga"))
    if line.startswith((".", "\\(aq")):
        line = "\\&" + line
    return line


_UNESCAPE = {"e": "\\", "-": "-", "&": "", "(aq": "'", "(ga": "`"}


def roff_unescape(line):
    return re.sub(r"\\(\(aq|\(ga|e|-|&)", lambda m: _UNESCAPE[m[1]], line)


def example_block(man, name):
    """The lines between the '.\\" BEGIN name' and '.\\" END name'
    comments, without the .EX/.ta/.EE requests around the code."""
    lines = man.splitlines()
    begin = lines.index(f'.\\" BEGIN {name}')
    end = lines.index(f'.\\" END {name}')
    return lines[begin + 1:end]


def audit_roff(source):
    """The block test_man_example_is_audit_c expects."""
    return ([".EX", ".ta T 8n"] + [roff_escape(ln) for ln in
                                    source.rstrip("\n").split("\n")]
            + [".EE"])


# -- tests ----------------------------------------------------------------------


def test_man_renders_without_warnings():
    if not shutil.which("man"):
        pytest.skip("man(1) not installed")
    p = subprocess.run(["man", "--warnings", "-l", MAN9],
                       env=dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8"),
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stderr == "", p.stderr
    text = re.sub(".\b", "", p.stdout)         # overstrike bold/underline
    assert "EXAMPLE" in text and "audit_open" in text


def test_man_example_is_audit_c():
    got = example_block(_read(MAN9), "audit.c")
    want = audit_roff(_read(AUDIT_C))
    assert got == want, (
        "man/vfmediate-mediator.9's example differs from "
        "kmod/mediators/audit.c; the block between the BEGIN/END audit.c "
        "comments should read:\n" + "\n".join(want))
    # And back: the code a reader copies from the page is the file.
    code = [roff_unescape(ln) for ln in got[2:-1]]
    assert "\n".join(code) + "\n" == _read(AUDIT_C)


def test_man_documents_the_api():
    header = _read(HEADER)
    man = roff_unescape(_read(MAN9).replace("\\f", ""))
    names = set(re.findall(r"^\S.*?\b(vfm_\w+)\(", header, re.M))
    names |= set(re.findall(r"^#define\s+(VFM_\w+|MODULE_ALIAS_VFM_MEDIATOR"
                            r"|module_vfm_mediator)\b", header, re.M))
    ops = re.search(r"struct vfm_mediator_ops \{(.*?)\};", header, re.S)[1]
    for op, member in re.findall(r"\(\*(\w+)\)|\b(\w+);", ops):
        names.add(op or member)
    assert "vfm_register_mediator" in names and "show" in names
    missing = sorted(n for n in names
                     if not re.search(r"\b" + re.escape(n) + r"\b", man))
    assert missing == [], f"not in vfmediate-mediator(9): {missing}"


def _mediator_sources():
    return sorted(f for f in os.listdir(MEDIATORS)
                  if f.endswith(".c") and f not in TEST_ONLY)


@pytest.mark.parametrize("src", _mediator_sources())
def test_mediator_module_names(src):
    code = _read(os.path.join(MEDIATORS, src))
    kbuild = _read(os.path.join(MEDIATORS, "Kbuild"))
    base = src[:-2]
    name = re.search(r'\.name\s*=\s*"([^"]+)"', code)[1]
    assert name == base.replace("_", "-") or name == base
    mod = f"vfmediate_{base}"
    assert re.search(rf"^obj-m\s*\+=\s*{mod}\.o$", kbuild, re.M)
    assert re.search(rf"^{mod}-y\s*:=\s*{base}\.o$", kbuild, re.M)
    assert f'MODULE_ALIAS_VFM_MEDIATOR("{name}");' in code
    assert re.search(r"^module_vfm_mediator\(\w+\);$", code, re.M)
    assert re.search(r"\.owner\s*=\s*THIS_MODULE,", code)
    assert 'MODULE_LICENSE("GPL");' in code
