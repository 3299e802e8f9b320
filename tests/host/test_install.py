# SPDX-License-Identifier: GPL-2.0
"""Host-side checks of the packaging: make install / uninstall, the DKMS
configuration and source tree, the udev rule and the systemd unit.

- make install, from a copy of the project at a path with a space, into
  a DESTDIR with a space, installs exactly the expected files (modules
  for the newest supported kernel through kbuild's modules_install, man
  pages, the udev rule and the unit with the sbin path filled in, the CLI
  when cli/Makefile exists) and nothing outside DESTDIR: run as root, it
  runs as uid 65534, which can write nowhere else but /tmp, and the
  system's module, udev, systemd and /usr/local trees are compared before
  and after. make uninstall then removes every file it installed.
- dkms.conf names every module kmod/ builds, with the version in VERSION;
  make dkms-source stages the sources DKMS builds from (make dkms-check,
  part of make check, builds them with dkms for every supported kernel).
- the unit passes systemd-analyze verify without a message;
- udev itself (udevadm test, in a mount namespace where the rule is the
  only rule file) runs the helper, with the function's address, for a
  VF only and only while /etc/vfmediate/profiles exists.

    python3 -m pytest --noconftest tests/host/
"""

import os
import re
import shutil
import subprocess
import tempfile

import pytest

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NOBODY = 65534
MAN_SECTIONS = ("5", "8", "9")


def _read(path):
    with open(path) as f:
        return f.read()


def dkms_conf():
    """The arrays and variables of dkms.conf, as DKMS sources it (bash)."""
    script = ('kernel_source_dir=/KSRC dkms_tree=/DKMS; . "$1"; '
              'echo "NAME=$PACKAGE_NAME"; echo "VERSION=$PACKAGE_VERSION"; '
              'echo "MAKE=${MAKE[0]}"; echo "EXCL=$BUILD_EXCLUSIVE_KERNEL"; '
              'for i in "${!BUILT_MODULE_NAME[@]}"; do '
              'echo "MOD=${BUILT_MODULE_NAME[$i]} ${BUILT_MODULE_LOCATION[$i]} '
              '${DEST_MODULE_LOCATION[$i]}"; done')
    # From another directory: the version must not depend on the cwd.
    out = subprocess.run(["bash", "-c", script, "_",
                          os.path.join(TOP, "dkms.conf")], cwd="/",
                         capture_output=True, text=True, check=True).stdout
    conf = {"MOD": []}
    for line in out.splitlines():
        k, v = line.split("=", 1)
        if k == "MOD":
            conf["MOD"].append(tuple(v.split()))
        else:
            conf[k] = v
    return conf


def kbuild_modules():
    """(name, directory) of every module the Kbuild files build."""
    mods = []
    for sub in ("", "mediators"):
        kbuild = _read(os.path.join(TOP, "kmod", sub, "Kbuild"))
        for name in re.findall(r"^obj-m\s*\+?=\s*(\S+)\.o\s*$", kbuild, re.M):
            mods.append((name, sub))
    return mods


def newest_kernel():
    out = subprocess.run([os.path.join(TOP, "tests", "vm", "kernels")],
                         capture_output=True, text=True).stdout.split()
    return out[-1] if out else None


def tree(root):
    """Every file and symlink under root, relative."""
    found = set()
    for d, dirs, files in os.walk(root):
        for n in files + [x for x in dirs if os.path.islink(os.path.join(d, x))]:
            found.add(os.path.relpath(os.path.join(d, n), root))
    return found


def snapshot(kver):
    """What make install must not touch outside DESTDIR."""
    dirs = ["/usr/local", "/lib/udev/rules.d", "/lib/systemd/system",
            "/etc/vfmediate", "/usr/src"]
    if kver:
        dirs.append(f"/lib/modules/{kver}")
    snap = {}
    for d in dirs:
        if not os.path.isdir(d):
            snap[d] = None
            continue
        for f in tree(d) | {"."}:
            p = os.path.join(d, f)
            st = os.lstat(p)
            snap[p] = (st.st_mtime_ns, st.st_size)
    return snap


# -- DKMS ----------------------------------------------------------------------

def test_version_is_one_place():
    version = _read(os.path.join(TOP, "VERSION")).strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    conf = dkms_conf()
    assert conf["NAME"] == "vfmediate"
    assert conf["VERSION"] == version


def test_dkms_conf_names_every_module():
    conf = dkms_conf()
    want = {(name, "kmod/" + (sub + "/" if sub else "")) for name, sub in
            kbuild_modules()}
    assert ("vfmediate", "kmod/") in want
    got = {(name, loc) for name, loc, _ in conf["MOD"]}
    assert got == want
    assert len(conf["MOD"]) == len(want)
    assert {dest for _, _, dest in conf["MOD"]} == {"/updates/dkms"}
    # kbuild is pointed at kmod/ of DKMS's copy, for the target kernel.
    assert conf["MAKE"] == ("make -C /KSRC M=/DKMS/vfmediate/"
                            f"{conf['VERSION']}/build/kmod modules")
    for k in ("6.1.0-50-amd64", "6.12.95+deb12-amd64", "6.12.95-vfm-debug"):
        assert re.search(conf["EXCL"], k), k
    assert not re.search(conf["EXCL"], "6.18.1-amd64")


def test_dkms_source_tree(tmp_path):
    dst = tmp_path / "vfmediate src"
    p = subprocess.run(["make", "-C", TOP, "--no-print-directory",
                        "dkms-source", f"DESTDIR={dst}"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    version = _read(os.path.join(TOP, "VERSION")).strip()
    staged = dst / "usr" / "src" / f"vfmediate-{version}"
    got = tree(staged)
    want = {"dkms.conf", "VERSION", "LICENSE"}
    for sub in ("include", "kmod"):
        for f in tree(os.path.join(TOP, sub)):
            base = os.path.basename(f)
            if (base in ("Kbuild", "Makefile", "README")
                    or re.fullmatch(r".*\.[ch]", base)) \
                    and not base.endswith(".mod.c"):
                want.add(os.path.join(sub, f))
    assert got == want
    # What kmod/Kbuild needs from the tree around it.
    for f in ("kmod/compat.h", "include/linux/vfmediate.h",
              "include/uapi/linux/vfmediate.h"):
        assert f in got


# -- the udev rule and the unit ------------------------------------------------

def rule_lines():
    return [line for line in _read(os.path.join(TOP, "udev",
                                                "60-vfmediate.rules"))
            .splitlines() if line.strip() and not line.startswith("#")]


def test_udev_rule_is_narrow():
    lines = rule_lines()
    assert len(lines) == 1, lines
    keys = [k.strip() for k in lines[0].split(", ")]
    # The cheap tests first: every other event fails the first two. No
    # physfn test: udev may see a VF before the kernel links it to its PF
    # (the helper waits for the link).
    assert keys[:3] == ['ACTION=="add"', 'SUBSYSTEM=="pci"',
                        'TEST=="/etc/vfmediate/profiles"']
    assert not any("physfn" in k for k in keys)
    assert keys[-1] == 'RUN+="@SBINDIR@/vfmediate udev-attach %k"'


def udevadm_test(tmp_path, rule, devpath):
    """udevadm test of one add event against this rule file alone, in a
    mount namespace where it is the only rule file udev reads."""
    rules = tmp_path / "rules"
    empty = tmp_path / "empty"
    tmp_path.mkdir(exist_ok=True)
    rules.mkdir()
    empty.mkdir()
    (rules / "60-vfmediate.rules").write_text(rule)
    script = ('set -e; mount --bind "$1" /etc/udev/rules.d; '
              'for d in /usr/lib/udev/rules.d /lib/udev/rules.d '
              '/run/udev/rules.d; do [ ! -d "$d" ] || '
              'mount --bind "$2" "$d"; done; '
              'exec udevadm test --action=add "$3"')
    p = subprocess.run(["unshare", "-m", "sh", "-c", script, "_", str(rules),
                        str(empty), devpath], capture_output=True, text=True,
                       timeout=120)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "Reading rules file: /etc/udev/rules.d/60-vfmediate.rules" in out
    return [line for line in out.splitlines() if line.startswith("run: ")]


def test_udev_rule_in_udevadm(tmp_path):
    """The rule as udev reads it, on a PCI function of this machine: the
    helper runs with its address while the profiles directory exists
    (the helper, not the rule, tells VFs from other functions), and
    nothing runs without it."""
    if os.geteuid() != 0 or not shutil.which("udevadm") \
            or not shutil.which("unshare"):
        pytest.skip("needs root, udevadm and unshare")
    pci = "/sys/bus/pci/devices"
    devs = sorted(os.listdir(pci)) if os.path.isdir(pci) else []
    if not devs:
        pytest.skip("no PCI function on this machine")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("no mount namespace here: " + probe.stderr.decode())
    dev = devs[0]
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    rule = (_read(os.path.join(TOP, "udev", "60-vfmediate.rules"))
            .replace("@SBINDIR@", "/usr/sbin")
            .replace("/etc/vfmediate/profiles", str(profiles)))
    helper = f"run: '/usr/sbin/vfmediate udev-attach {dev}'"
    assert udevadm_test(tmp_path / "a", rule,
                        os.path.join(pci, dev)) == [helper]
    # No profiles directory: nothing runs.
    profiles.rmdir()
    assert udevadm_test(tmp_path / "b", rule,
                        os.path.join(pci, dev)) == []


def unit_file():
    return os.path.join(TOP, "systemd", "vfmediate-restore.service")


def test_unit_contents():
    unit = _read(unit_file())
    kv = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            kv.setdefault(k, []).append(v)
    assert kv["Type"] == ["oneshot"]
    assert kv["ConditionPathExists"] == ["/etc/vfmediate/config.json"]
    after = " ".join(kv["After"]).split()
    assert "sys-kernel-config.mount" in after
    assert "systemd-modules-load.service" in after
    before = " ".join(kv["Before"]).split()
    assert {"libvirtd.service", "virtqemud.service"} <= set(before)
    assert kv["ExecStartPre"] == ["/sbin/modprobe vfmediate"]
    assert kv["ExecStart"] == [
        "@SBINDIR@/vfmediate restore /etc/vfmediate/config.json"]
    assert kv["WantedBy"] == ["multi-user.target"]


def test_unit_verifies(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    sbin = tmp_path / "sbin"
    sbin.mkdir()
    (sbin / "vfmediate").write_text("#!/bin/sh\nexit 0\n")
    (sbin / "vfmediate").chmod(0o755)
    unit = tmp_path / "vfmediate-restore.service"
    unit.write_text(_read(unit_file()).replace("@SBINDIR@", str(sbin)))
    p = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                       capture_output=True, text=True, timeout=120)
    out = (p.stdout + p.stderr).splitlines()
    # verify loads the units ours names too (libvirtd.service, ...):
    # what it says about another unit's own file is not ours to judge
    # (bookworm-backports' libvirt uses a service type systemd 252 does
    # not know).
    others = [line for line in out
              if re.match(r"/\S+\.[a-z]+:\d+: ", line)
              and not line.startswith(str(unit) + ":")]
    mine = [line for line in out if line not in others]
    assert p.returncode == 0 and not mine, "\n".join(out)


# -- make install / uninstall --------------------------------------------------

@pytest.fixture
def workdir():
    """A directory under /tmp that uid 65534 may enter."""
    d = tempfile.mkdtemp(prefix="vfm-install-test.", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def copy_project(dst):
    ignore = shutil.ignore_patterns(".git", "build", "__pycache__",
                                    ".pytest_cache", "*.o", "*.ko", "*.cmd")
    shutil.copytree(TOP, dst, symlinks=True, ignore=ignore)


def run_make(clone, args, as_nobody):
    cmd = ["make", "-C", clone, "--no-print-directory"] + args
    env = dict(os.environ)
    for k in ("DESTDIR", "PREFIX", "KVER", "MAKEFLAGS", "MFLAGS"):
        env.pop(k, None)
    if as_nobody:
        cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
               "--clear-groups", "--inh-caps=-all"] + cmd
        env["HOME"] = clone
    return subprocess.run(cmd, capture_output=True, text=True, env=env,
                          timeout=1200)


def expected_files(kver, prefix, files):
    """The files make install must put under DESTDIR (relative)."""
    want = set()
    for f in os.listdir(os.path.join(TOP, "man")):
        sec = f.rsplit(".", 1)[-1]
        if sec in MAN_SECTIONS:
            want.add(f"{prefix}/share/man/man{sec}/{f}")
    want.add("lib/udev/rules.d/60-vfmediate.rules")
    want.add("lib/systemd/system/vfmediate-restore.service")
    if kver:
        base = f"lib/modules/{kver}/extra"
        for name, sub in kbuild_modules():
            f = os.path.join(base, sub, name + ".ko")
            # .ko.xz etc. where the kernel compresses its modules
            got = [g for g in files if g == f or g.startswith(f + ".")]
            want.add(got[0] if len(got) == 1 else f)
    return want


def test_make_install_destdir(workdir):
    kver = newest_kernel()
    clone = os.path.join(workdir, "vfm clone")
    destdir = os.path.join(workdir, "dest dir")
    copy_project(clone)
    has_cli = os.path.isfile(os.path.join(clone, "cli", "Makefile"))
    as_nobody = os.geteuid() == 0 and shutil.which("setpriv") is not None
    if as_nobody:
        for d, dirs, files in os.walk(workdir):
            for n in [d] + [os.path.join(d, x) for x in dirs + files]:
                os.lchown(n, NOBODY, NOBODY)

    target = "install" if kver else "install-userspace"
    args = [target, f"DESTDIR={destdir}", "PREFIX=/usr"]
    if kver:
        args.append(f"KVER={kver}")
    before = snapshot(kver)
    p = run_make(clone, args, as_nobody)
    out = p.stdout + p.stderr
    try:
        assert p.returncode == 0, out
        assert snapshot(kver) == before, "make install wrote outside DESTDIR"
        # The plain-path link to DESTDIR (kmod/Makefile) is gone again.
        assert "installing through" in out or not kver
        for m in re.finditer(r"installing through (\S+) ->", out):
            assert not os.path.lexists(m.group(1))

        files = tree(destdir)
        want = expected_files(kver, "usr", files)
        if has_cli:
            assert "usr/sbin/vfmediate" in files, out
            extra = files - want
            assert all(f.startswith("usr/") for f in extra), extra
            assert want <= files
        else:
            assert files == want, out
        for f in want:
            st = os.stat(os.path.join(destdir, f))
            assert st.st_mode & 0o777 == 0o644, f
        # No depmod output in a DESTDIR: the kernel package owns those.
        assert not [f for f in files if "/modules." in f]

        rule = _read(os.path.join(destdir, "lib/udev/rules.d/60-vfmediate.rules"))
        unit = _read(os.path.join(destdir,
                                  "lib/systemd/system/vfmediate-restore.service"))
        assert "@" not in rule.replace("%k", "")
        assert 'RUN+="/usr/sbin/vfmediate udev-attach %k"' in rule
        assert "ExecStart=/usr/sbin/vfmediate restore " \
               "/etc/vfmediate/config.json" in unit
        if kver:
            ko = [f for f in want if "/extra/vfmediate.ko" in f][0]
            vermagic = subprocess.run(
                ["modinfo", "-F", "vermagic", os.path.join(destdir, ko)],
                capture_output=True, text=True).stdout
            assert vermagic.startswith(kver + " "), vermagic
            version = subprocess.run(
                ["modinfo", "-F", "version", os.path.join(destdir, ko)],
                capture_output=True, text=True).stdout.strip()
            assert version == _read(os.path.join(TOP, "VERSION")).strip()

        # make uninstall takes every one of them away again.
        p = run_make(clone, ["uninstall"] + args[1:], as_nobody)
        assert p.returncode == 0, p.stdout + p.stderr
        left = tree(destdir)
        if has_cli:
            left = {f for f in left if f not in files - want}
        assert left == set(), p.stdout + p.stderr
        assert snapshot(kver) == before
    finally:
        for m in set(re.findall(r"kmod: building through (/tmp/vfmediate-\d+-\d+) ",
                                out)):
            if os.path.islink(m):
                os.unlink(m)


def test_install_without_headers_says_so(workdir):
    clone = os.path.join(workdir, "clone")
    copy_project(clone)
    p = run_make(clone, ["install-modules", "KVER=0.0.0-vfm-no-such-kernel",
                         f"DESTDIR={workdir}/d"], False)
    assert p.returncode != 0
    assert ("no kernel build tree /lib/modules/0.0.0-vfm-no-such-kernel/build"
            in p.stderr), p.stdout + p.stderr
    assert not os.path.exists(os.path.join(workdir, "d"))


def test_relative_destdir_and_prefix(workdir):
    """DESTDIR relative to the top directory, another PREFIX and SBINDIR."""
    clone = os.path.join(workdir, "clone")
    copy_project(clone)
    shutil.rmtree(os.path.join(clone, "cli"), ignore_errors=True)
    p = run_make(clone, ["install-userspace", "DESTDIR=stage",
                         "PREFIX=/opt/vfm", "SBINDIR=/opt/vfm/bin"], False)
    assert p.returncode == 0, p.stdout + p.stderr
    stage = os.path.join(clone, "stage")
    assert tree(stage) == expected_files(None, "opt/vfm", set())
    rule = _read(os.path.join(stage, "lib/udev/rules.d/60-vfmediate.rules"))
    assert 'RUN+="/opt/vfm/bin/vfmediate udev-attach %k"' in rule
