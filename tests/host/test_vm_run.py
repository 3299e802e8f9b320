# SPDX-License-Identifier: GPL-2.0
"""Host-side checks of the test machine's launcher, tests/vm/run, without
booting a guest: run from a copy of the project whose path has a space and
a comma, it drives a fake QEMU (VFM_QEMU) that reads the arguments as QEMU
does and plays the guest's part.

- the project share's path reaches QEMU whole (commas doubled), the
  kernel command line carries no project path, the run directory's "root"
  file names the project, and the command runs with its arguments intact,
  in the current directory;
- only a guest that never reached its init (kernel panic, hang, QEMU
  dying) is booted again, three times in all, exit 124;
- a guest that booted is never booted again: a failing command gives its
  status, a project share that does not mount is reported once (exit
  125, with the guest's message), a guest that hangs while setting up or
  crashes later ends with 124.

Runs on the host, outside the guest suite:

    python3 -m pytest --noconftest tests/host/
"""

import json
import os
import shutil
import stat
import subprocess

import pytest

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RUN = os.path.join(TOP, "tests", "vm", "run")
INITRAMFS_INIT = os.path.join(TOP, "tests", "vm", "initramfs-init")
GUEST_INIT = os.path.join(TOP, "tests", "vm", "guest-init")

# The fake emulator. Reads its arguments the way QEMU does (",," in an
# option list is a literal comma), logs what the guest would see and
# plays the guest's part as FAKE_QEMU_MODE says.
FAKE_QEMU = r'''#!/usr/bin/python3
import json, os, re, subprocess, sys, time

args = sys.argv[1:]
if args == ["--version"]:
    print("QEMU emulator version 10.0.2")
    sys.exit(0)


def values(name):
    return [args[i + 1] for i, a in enumerate(args) if a == name]


def opts(s):
    out, cur, i = {}, "", 0
    parts = []
    while i < len(s):
        if s[i] == ",":
            if s[i + 1:i + 2] == ",":
                cur += ","
                i += 2
                continue
            parts.append(cur)
            cur = ""
        else:
            cur += s[i]
        i += 1
    parts.append(cur)
    for p in parts:
        k, _, v = p.partition("=")
        out[k] = v
    return out


project = [f for f in map(opts, values("-fsdev")) if f.get("id") == "p"][0]["path"]
append = values("-append")[0]
vfmrun = re.search(r"(?:^| )vfmrun=(\S+)", append).group(1)
console = [v[5:] for v in values("-serial") if v.startswith("file:")][0]
run = os.path.join(project, vfmrun)
with open(os.path.join(run, "root")) as f:
    root = f.read()
# igb's expansion ROM: its file, read back as QEMU would.
roms = [o["romfile"] for o in map(opts, values("-device"))
        if "igb" in o and "romfile" in o]
rom = open(roms[0], "rb").read(4).hex() if roms else None
with open(os.environ["FAKE_QEMU_LOG"], "a") as f:
    f.write(json.dumps({"project": project, "append": append,
                        "vfmrun": vfmrun, "root": root,
                        "rom": rom}) + "\n")

mode = os.environ["FAKE_QEMU_MODE"]
con = open(console, "w")


def say(line):
    con.write(line + "\r\n")
    con.flush()


say("Linux version 6.12.0 (fake)")
if mode == "panic":
    say("Kernel panic - not syncing: IO-APIC + timer doesn't work!")
    sys.exit(0)
if mode == "hang":
    time.sleep(60)
    sys.exit(0)
say("vfm-initramfs: init started")
if mode == "share":
    msg = "vfm-guest: cannot mount the project share on " + root
    say(msg)
    print(msg, flush=True)
    sys.exit(0)
if mode == "setup-hang":
    time.sleep(60)
    sys.exit(0)
say("vfm-guest: ready")
if mode == "crash":
    say("Kernel panic - not syncing: Fatal exception")
    sys.exit(0)
with open(os.path.join(run, "cwd")) as f:
    cwd = f.read().rstrip("\n")
rc = subprocess.run(["/bin/sh", os.path.join(run, "cmd")], cwd=cwd,
                    stdin=subprocess.DEVNULL).returncode
with open(os.path.join(run, "rc"), "w") as f:
    f.write(f"{rc}\n")
'''


def installed_kernel():
    out = subprocess.run([os.path.join(TOP, "tests", "vm", "kernels")],
                         capture_output=True, text=True).stdout.split()
    return out[-1] if out else None


KERNEL = installed_kernel()
needs_kernel = pytest.mark.skipif(
    KERNEL is None, reason="no supported kernel installed (scripts/install-deps)")


@pytest.fixture
def project(tmp_path):
    """A project copy at a path with a space and a comma, with an
    initramfs already built (the fake boots none)."""
    root = tmp_path / "my vfm, clone"
    vm = root / "tests" / "vm"
    vm.mkdir(parents=True)
    shutil.copy2(RUN, vm / "run")
    (root / "tests" / "lib").mkdir()
    shutil.copy2(os.path.join(TOP, "tests", "lib", "optionrom.py"),
                 root / "tests" / "lib" / "optionrom.py")
    initrd = root / "build" / "vm" / KERNEL / "initramfs.cpio.gz"
    initrd.parent.mkdir(parents=True)
    initrd.write_bytes(b"not used by the fake\n")
    fake = tmp_path / "fake-qemu"
    fake.write_text(FAKE_QEMU)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return root, fake, tmp_path / "qemu.log"


def vm_run(project, mode, *argv, opts=()):
    root, fake, log = project
    env = dict(os.environ, VFM_QEMU=str(fake), FAKE_QEMU_MODE=mode,
               FAKE_QEMU_LOG=str(log))
    p = subprocess.run([str(root / "tests" / "vm" / "run"), "--kernel", KERNEL,
                        *opts, "--", *argv],
                       cwd=root, env=env, capture_output=True, text=True,
                       timeout=120)
    boots = []
    if log.exists():
        boots = [json.loads(line) for line in log.read_text().splitlines()]
    return p, boots


@needs_kernel
def test_paths_with_spaces_and_commas(project):
    root = project[0]
    weird = ["a b", "it's", "$HOME", "x,y", "back\\slash", ""]
    p, boots = vm_run(project, "run", "sh", "-c",
                      'pwd; for a; do printf "<%s>" "$a"; done; echo',
                      "sh", *weird)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        str(root), "".join(f"<{a}>" for a in weird)]
    assert len(boots) == 1
    boot = boots[0]
    assert boot["project"] == str(root)         # ",," read back as ","
    assert boot["root"] == str(root)
    assert str(root) not in boot["append"]
    assert boot["vfmrun"].startswith(f"build/vm/{KERNEL}/run.")
    # igb's ROM file, in the run directory, reached QEMU (header 55 aa).
    assert boot["rom"] == "55aa0800"
    # The run directory is cleaned up after a command that ran.
    assert not (root / boot["vfmrun"]).exists()


@needs_kernel
def test_failing_command_not_retried(project):
    p, boots = vm_run(project, "run", "sh", "-c", "echo failing; exit 3")
    assert p.returncode == 3
    assert p.stdout == "failing\n"
    assert len(boots) == 1
    assert "booting again" not in p.stderr


@needs_kernel
def test_share_failure_reported_once(project):
    root = project[0]
    p, boots = vm_run(project, "share", "true")
    assert p.returncode == 125, p.stderr
    assert len(boots) == 1
    assert "booting again" not in p.stderr
    assert ("could not set up the test machine: cannot mount the project "
            f"share on {root}") in p.stderr


@needs_kernel
def test_panic_before_init_retried(project):
    p, boots = vm_run(project, "panic", "true")
    assert p.returncode == 124
    assert len(boots) == 3
    assert p.stderr.count("died before reaching its init") == 3
    assert "booting again (attempt 2 of 3)" in p.stderr
    assert "booting again (attempt 3 of 3)" in p.stderr
    assert "Kernel panic" in p.stderr            # the console's tail


@needs_kernel
def test_hang_before_init_retried(project):
    # The fake may be killed before it logs its boot: count the launcher's
    # own words.
    p, _ = vm_run(project, "hang", "true", opts=["--boot-timeout", "2"])
    assert p.returncode == 124
    assert p.stderr.count("did not reach its init within 2s") == 3
    assert p.stderr.count("booting again") == 2


@needs_kernel
def test_hang_in_setup_not_retried(project):
    # Time enough for the fake to start and print its first lines on a
    # loaded machine.
    p, boots = vm_run(project, "setup-hang", "true",
                      opts=["--boot-timeout", "8"])
    assert p.returncode == 124
    assert len(boots) == 1
    assert "did not finish setting up within 8s" in p.stderr
    assert "booting again" not in p.stderr


@needs_kernel
def test_crash_after_ready_not_retried(project):
    p, boots = vm_run(project, "crash", "true")
    assert p.returncode == 124
    assert len(boots) == 1
    assert "ended without reporting an exit status" in p.stderr
    assert "booting again" not in p.stderr


# -- the guest's side, read rather than run ------------------------------------

def test_guest_scripts_are_posix_sh():
    for script in (INITRAMFS_INIT, GUEST_INIT):
        subprocess.run(["sh", "-n", script], check=True)


def test_markers_match_the_launcher():
    """The lines tests/vm/run waits for are the ones the guest prints."""
    with open(RUN) as f:
        run = f.read()
    with open(INITRAMFS_INIT) as f:
        initramfs = f.read()
    with open(GUEST_INIT) as f:
        guest = f.read()
    assert "'vfm-initramfs: init started'" in run
    assert 'echo "vfm-initramfs: init started" > /dev/ttyS1' in initramfs
    assert "'vfm-guest: ready'" in run
    assert 'say "ready"' in guest
    # No project path on the kernel command line: only the run directory.
    assert "vfmroot" not in run + initramfs + guest
