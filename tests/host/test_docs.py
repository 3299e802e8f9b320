# SPDX-License-Identifier: GPL-2.0
"""Host-side checks of the documentation against the code.

- man/vfmediate-mediator.9 renders without a groff warning;
- its worked example is kmod/mediators/audit.c, verbatim;
- it documents every declaration of include/linux/vfmediate.h;
- man/vfmediate.8 renders silently and documents every command, option,
  JSON key and Prometheus metric of cli/; the bash completion completes;
  cli/ builds with -Werror, installs under DESTDIR and PREFIX;
- every mediator in kmod/mediators/ is built by its Kbuild as
  vfmediate_<name>.ko and declares MODULE_ALIAS_VFM_MEDIATOR("<name>")
  for the name it registers.

Runs on the host, outside the guest suite:

    python3 -m pytest --noconftest tests/host/
"""

import os
import re
import shlex
import shutil
import subprocess

import pytest

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MAN9 = os.path.join(TOP, "man", "vfmediate-mediator.9")
HEADER = os.path.join(TOP, "include", "linux", "vfmediate.h")
MEDIATORS = os.path.join(TOP, "kmod", "mediators")
AUDIT_C = os.path.join(MEDIATORS, "audit.c")
TEST_ONLY = {"selftest.c",       # not a mediator: a registration self-test
             "devread.c",       # a mediator for the API tests only
             "ondemand.c",      # one for the retrap tests only
             "recorder.c"}      # records the dispatch paths, for tests


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


def test_man_migration_example_is_regshadow_c():
    """The migration example is regshadow's code, verbatim, in two pieces
    of the file (its state header, then its migration functions)."""
    got = example_block(_read(MAN9), "regshadow.c migration")
    assert got[:2] == [".EX", ".ta T 8n"] and got[-1] == ".EE"
    code = "\n".join(roff_unescape(ln) for ln in got[2:-1])
    source = _read(os.path.join(MEDIATORS, "regshadow.c"))
    pieces = code.split("\n\n", 1)
    assert len(pieces) == 2 and all(p in source for p in pieces), (
        "the migration example in man/vfmediate-mediator.9 is no longer "
        "a copy of kmod/mediators/regshadow.c")


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


# -- vfmediate(8) -------------------------------------------------------------

MAN8 = os.path.join(TOP, "man", "vfmediate.8")
CLI_DIR = os.path.join(TOP, "cli")
CLI = os.path.join(CLI_DIR, "vfmediate")
COMPLETION = os.path.join(CLI_DIR, "bash-completion", "vfmediate")


def _man8_text():
    p = subprocess.run(["man", "--warnings", "-l", MAN8],
                       env=dict(os.environ, MANWIDTH="200", LC_ALL="C.UTF-8"),
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stderr == "", p.stderr
    return re.sub(".\b", "", p.stdout).replace("\u2010", "-")


def test_man8_renders_silently():
    p = subprocess.run(["groff", "-man", "-ww", "-z", MAN8],
                       capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    if shutil.which("man"):
        _man8_text()


@pytest.fixture(scope="module")
def cli_bin():
    p = subprocess.run(["make", "-s", "-C", CLI_DIR, "CFLAGS+=-Werror"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    return CLI


def _cli_commands(cli_bin):
    out = subprocess.run([cli_bin, "-h"], capture_output=True, text=True,
                         check=True).stdout
    return re.findall(r"^  ([a-z][a-z-]*) ", out, re.M)


def test_man8_documents_every_command(cli_bin):
    text = _man8_text() if shutil.which("man") else _read(MAN8)
    cmds = _cli_commands(cli_bin)
    assert "restore" in cmds and "monitor" in cmds and "udev-attach" in cmds
    for c in cmds + ["rule add", "rule del", "rule list", "rule set",
                     "stats --prometheus"]:
        assert re.search(r"^ {7}" + re.escape(c) + r"\b", text, re.M), c
    for opt in ("-j", "-p", "-V", "-h", "-w", "-c", "--prometheus",
                "--profiles"):
        assert re.search(r"(^|\s)" + re.escape(opt) + r"\b", text, re.M), opt
    for sect in ("EXIT STATUS", "JSON OUTPUT", "SAVE FORMAT", "UDEV",
                 "EXAMPLES"):
        assert re.search(rf"^{sect}$", text, re.M), sect


def _source_keys():
    """Every JSON key the CLI writes: jadd_*(o, "key", ...) and
    json_object_object_add(o, "key", ...) in cli/*.c, and the stats
    counters put_counts() and put_*() write."""
    keys = set()
    for f in os.listdir(CLI_DIR):
        if f.endswith(".c"):
            src = _read(os.path.join(CLI_DIR, f))
            keys |= set(re.findall(
                r'(?:jadd_\w+|json_object_object_add|put_\w+)\(\s*\w+,\s*"(\w+)"',
                src))
    return keys


def test_man8_documents_every_json_key():
    man = roff_unescape(_read(MAN8).replace("\\f", ""))
    keys = _source_keys()
    assert {"device", "hits", "mediator_args", "suppressed"} <= keys
    missing = sorted(k for k in keys
                     if not re.search(r"\b" + re.escape(k) + r"\b", man))
    assert missing == [], f"JSON keys not in vfmediate(8): {missing}"


def test_man8_documents_every_metric():
    man = roff_unescape(_read(MAN8))
    src = _read(os.path.join(CLI_DIR, "stats.c"))
    metrics = set(re.findall(r'"(vfmediate_\w+)"', src)) | \
        set(re.findall(r"(vfmediate_device_\w+)\{", src))
    assert "vfmediate_rule_hits_total" in metrics
    for m in metrics:
        assert m in man, m


@pytest.mark.parametrize("line,want", [
    ("vfmediate ", {"show", "rule", "restore"}),
    ("vfmediate -j s", {"show", "stats", "save"}),
    ("vfmediate rule ", {"add", "del", "list", "set"}),
    ("vfmediate rule add 0000:00:04.0 b", {"bar0", "bar5"}),
    ("vfmediate rule add 0000:00:04.0 bar0 x 0-3 ", {"ro", "trap", "deny"}),
    ("vfmediate rule add 0000:00:04.0 bar0 x 0-3 ro a", {"access", "audit"}),
    ("vfmediate rule set d bar0 r audit ", {"on", "off"}),
    ("vfmediate stats --p", {"--prometheus"}),
    ("vfmediate ude", {"udev-attach"}),
    ("vfmediate udev-attach --p", {"--profiles"}),
])
def test_bash_completion(line, want):
    bc = "/usr/share/bash-completion/bash_completion"
    if not os.path.exists(bc):
        pytest.skip("bash-completion not installed")
    script = f"""
source {shlex.quote(bc)}
source {shlex.quote(COMPLETION)}
COMP_LINE="{line}"; COMP_POINT=${{#COMP_LINE}}
read -ra COMP_WORDS <<< "$COMP_LINE"
[[ $COMP_LINE == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))
_vfmediate
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    p = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert want <= set(p.stdout.split()), p.stdout


def test_cli_usage_errors_on_host(cli_bin):
    """What needs no kernel: usage and exit statuses."""
    def run(*a):
        return subprocess.run([cli_bin, *a], capture_output=True, text=True)
    assert run("-V").returncode == 0
    assert run().returncode == 2
    p = run("show", "0000:00:04.00")
    assert p.returncode == 2
    assert p.stderr.startswith("vfmediate: show: '0000:00:04.00' is not a "
                               "PCI address")
    p = run("rule", "add", "0000:00:04.0", "bar0", "x", "0x10-0x0", "ro")
    assert p.returncode == 2 and "its end lies below its start" in p.stderr
    assert run("frobnicate").returncode == 2


def test_cli_install(cli_bin, tmp_path):
    p = subprocess.run(["make", "-s", "-C", CLI_DIR, "install",
                        f"DESTDIR={tmp_path}", "PREFIX=/usr"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    for f in ("usr/sbin/vfmediate", "usr/share/man/man8/vfmediate.8",
              "usr/share/bash-completion/completions/vfmediate"):
        assert (tmp_path / f).is_file(), f
    assert os.access(tmp_path / "usr/sbin/vfmediate", os.X_OK)
