# SPDX-License-Identifier: GPL-2.0
"""udev auto-attach with the real systemd-udevd: udev/60-vfmediate.rules
and ``vfmediate udev-attach`` (vfmediate(8), UDEV).

The guest has no systemd; the fixture starts systemd-udevd itself, with
the project's rule in /run/udev/rules.d (the guest's / is read-only and
/run is its own tmpfs). The rule is the file the project installs, with
the command's path filled in as ``make install`` does and the profiles
directory, /etc/vfmediate/profiles on a host, moved to /run (its TEST
and an added ``--profiles``): /etc is read-only here.

Then writing the NVMe PF's sriov_numvfs (with sriov_drivers_autoprobe 0,
as the README says) is all it takes: after ``udevadm settle`` the VFs a
profile fits are bound to vfmediate and configured as the profile says
(compared with ``vfmediate -j save``), the others are untouched; a wrong
profile binds and configures nothing, and says which file and key; no
profile directory, nothing.

The VFs are put back as tests/vm/guest-init left them (the same number,
unbound, online) at the end of every test, and udevd is stopped at the
end of the module, so no other test meets it.
"""
import json
import os
import shutil
import subprocess
import time

import pytest

import pci
import vfm
from conftest import NVME_ID
from policy import vfs_online
from budget import DEBUG_KERNEL
from vfio import Device

# udevd, the helper and sriov_numvfs cycles: 7 minutes of the debug lane,
# whose kernel paths (binds with a configuration, configfs, VFs coming
# and going) test_policy_sriov.py and test_removal_races.py run there.
pytestmark = pytest.mark.skipif(
    DEBUG_KERNEL, reason="udev's paths run on the debug kernel elsewhere")

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CLI = os.path.join(TOP, "cli", "vfmediate")
RULE_SRC = os.path.join(TOP, "udev", "60-vfmediate.rules")
UDEVD = "/lib/systemd/systemd-udevd"
RULES_D = "/run/udev/rules.d"
RULE_DST = os.path.join(RULES_D, "60-vfmediate.rules")
# A plain path for the rule, whatever the project's path holds (spaces).
WORK = "/run/vfm-udev-test"
SBINDIR = os.path.join(WORK, "sbin")
PROFILES = os.path.join(WORK, "profiles")
LOG = os.path.join(WORK, "udevd.log")
NVME = "%04x:%04x" % NVME_ID
NOP_ARGS = "bar=0,range=0x8+4"


def udevadm(*args, check=True, timeout=150):
    return subprocess.run(["udevadm", *args], capture_output=True,
                          text=True, check=check, timeout=timeout)


def settle():
    udevadm("settle", "--timeout=120")


def cli(*args, env=None):
    return subprocess.run([CLI, *args], capture_output=True, text=True,
                          timeout=120, env=env)


def saved():
    p = cli("-j", "save")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["devices"]


def test_rule_text():
    """The rule this test runs is the project's, changed only where a
    test guest must differ."""
    assert rule_text().count("RUN+=") == 1


def rule_text():
    with open(RULE_SRC) as f:
        src = f.read()
    lines = [ln for ln in src.splitlines() if ln and not ln.startswith("#")]
    assert len(lines) == 1, lines
    rule = lines[0]
    assert "physfn" not in rule
    for part in ('ACTION=="add"', 'SUBSYSTEM=="pci"',
                 'TEST=="/etc/vfmediate/profiles"',
                 'RUN+="@SBINDIR@/vfmediate udev-attach %k"'):
        assert part in rule, (part, rule)
    rule = rule.replace('TEST=="/etc/vfmediate/profiles"',
                        f'TEST=="{PROFILES}"')
    rule = rule.replace("@SBINDIR@/vfmediate udev-attach %k",
                        f"{SBINDIR}/vfmediate udev-attach "
                        f"--profiles {PROFILES} %k")
    return rule + "\n"


@pytest.fixture(scope="module")
def udevd():
    """systemd-udevd, debug-logging to LOG, with our rule and no other
    of ours; stopped (and the rule removed) at the end of the module."""
    if not os.access(CLI, os.X_OK):
        pytest.fail(f"{CLI} is not built: run 'make -C cli' on the host")
    if not os.access(UDEVD, os.X_OK):
        pytest.fail(f"{UDEVD} is not there (Debian's udev package)")
    if udevadm("control", "--ping", "--timeout=2", check=False).returncode == 0:
        pytest.fail("a udevd already runs in the guest")
    had_run_udev = os.path.exists("/run/udev")
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(SBINDIR)
    os.symlink(CLI, os.path.join(SBINDIR, "vfmediate"))
    os.makedirs(RULES_D, exist_ok=True)
    with open(RULE_DST, "w") as f:
        f.write(rule_text())
    log = open(LOG, "w")
    # Logs to its standard error, not to /dev/kmsg (the suite checks the
    # kernel log).
    env = dict(os.environ, SYSTEMD_LOG_TARGET="console",
               SYSTEMD_LOG_COLOR="0")
    proc = subprocess.Popen([UDEVD, "--debug"], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while udevadm("control", "--ping", "--timeout=2",
                      check=False).returncode:
            assert proc.poll() is None, "udevd exited:\n" + read_log()
            assert time.monotonic() < deadline, "udevd does not answer"
            time.sleep(0.2)
        yield proc
    finally:
        udevadm("control", "--exit", check=False, timeout=60)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        os.unlink(RULE_DST)
        shutil.rmtree(WORK, ignore_errors=True)
        if not had_run_udev:        # udevd's database and our rules.d
            shutil.rmtree("/run/udev", ignore_errors=True)


def read_log(start=0):
    with open(LOG, errors="replace") as f:
        f.seek(start)
        return f.read()


def ours(log):
    """The lines of a udevd log about our rule and helper."""
    return "\n".join(ln for ln in log.splitlines()
                     if "vfmediate" in ln or "physfn" in ln
                     or "ACTION=add" in ln)


def log_size():
    return os.path.getsize(LOG)


def nvme_pf():
    pfs = [b for b in pci.find_functions(*NVME_ID)
           if pci.sriov_totalvfs(b) > 0]
    assert pfs, "no NVMe PF with SR-IOV in the guest"
    return pfs[0]


@pytest.fixture
def pf(udevd):
    """The NVMe PF with no VF and no profile directory; afterwards its
    VFs as guest-init made them, and no configuration left."""
    pf = nvme_pf()
    before = pci.vfs(pf)
    assert vfm.devices() == [], "a configfs device directory was left over"
    for b in before:
        pci.restore(b)
    with open(pci.dev_path(pf, "sriov_drivers_autoprobe"), "w") as f:
        f.write("0")
    pci.sriov_set_numvfs(pf, 0)
    settle()
    yield pf
    shutil.rmtree(PROFILES, ignore_errors=True)
    settle()
    for b in pci.vfs(pf):
        pci.restore(b)
    left = vfm.devices()
    for b in left:
        vfm.purge(b)
    pci.sriov_set_numvfs(pf, 0)
    vfs_online(pf, len(before))
    settle()
    assert pci.vfs(pf) == before
    assert [pci.driver(b) for b in before] == [None] * len(before)
    assert vfm.devices() == []


def profiles(**files):
    """Write the profiles NAME=obj (a dict, or a str written as is)."""
    os.makedirs(PROFILES, exist_ok=True)
    for name, obj in files.items():
        name = name.replace("_", "-")
        with open(os.path.join(PROFILES, name), "w") as f:
            f.write(obj if isinstance(obj, str) else json.dumps(obj))


def rule(name, rng, action, access="rw", audit=False):
    return {"name": name, "range": rng, "access": access, "action": action,
            "audit": audit}


def make_vfs(pf, n):
    """Write sriov_numvfs (nothing else) and wait for udev to finish."""
    with open(pci.dev_path(pf, "sriov_numvfs"), "w") as f:
        f.write(str(n))
    settle()
    vfs = pci.vfs(pf)
    assert len(vfs) == n
    return vfs


def untouched(bdf):
    return (pci.driver(bdf), pci.driver_override(bdf),
            os.path.exists(f"{vfm.DEVICES}/{bdf}")) == (None, None, False)


def test_matching_vfs_bound_and_configured(pf):
    """VF 1 fits 20-vf1 (id, pf and index), VF 3 only 30-vf1-vf3 (VF 1
    fits it too, but 20 comes first); 10-other-pf names another PF;
    files that are not NAME.json are not read."""
    vf1 = {
        "match": {"id": NVME, "pf": pf, "vf": 1},
        "mediator": "nop",
        "mediator_args": NOP_ARGS,
        "regions": [
            {"region": "bar0", "rules": [
                rule("cap-ro", "0x0-0x7", "ro", audit=True),
                rule("vs", "0x8+4", "trap", access="r")]},
            {"region": "config", "rules": [
                rule("irq-line", "0x3c+1", "ignore")]},
        ],
    }
    profiles(**{
        "10-other-pf.json": {"match": {"id": NVME, "pf": "0000:ff:1f.7"},
                             "regions": [{"region": "bar0", "mmap": "off"}]},
        "20-vf1.json": vf1,
        "30-vf1-vf3.json": {"match": {"id": NVME, "vf": [3, 1]},
                            "regions": [{"region": "bar0", "mmap": "off",
                                         "rules": []}]},
        "40-notes.txt": "not a profile",
        ".50-hidden.json": "{ not read",
    })
    mark = log_size()
    vfs = make_vfs(pf, 4)

    assert [pci.driver(b) for b in vfs] == [None, "vfmediate", None,
                                            "vfmediate"]
    assert untouched(vfs[0]) and untouched(vfs[2])
    assert pci.driver_override(vfs[1]) == "vfmediate"
    assert saved() == [
        {"device": vfs[1], "mediator": "nop", "mediator_args": NOP_ARGS,
         "regions": [
             {"region": "config", "mmap": "auto", "rules": [
                 rule("irq-line", "0x3c-0x3c", "ignore")]},
             {"region": "bar0", "mmap": "auto", "rules": [
                 rule("cap-ro", "0x0-0x7", "ro", audit=True),
                 rule("vs", "0x8-0xb", "trap", access="r")]},
         ]},
        {"device": vfs[3], "mediator": "", "mediator_args": "",
         "regions": [{"region": "bar0", "mmap": "off", "rules": []}]},
    ]
    for b in (vfs[1], vfs[3]):
        assert vfm.Vfm(b).state == "bound"
    log = read_log(mark)
    print(ours(log))
    assert f"{vfs[1]}: configured from {PROFILES}/20-vf1.json" in log, log
    assert f"{vfs[3]}: configured from {PROFILES}/30-vf1-vf3.json" in log

    # The configuration is the one that runs when a VFIO user opens it.
    v = vfm.Vfm(vfs[1])
    with Device(vfs[1]):
        assert (v.state, v.generation, v.pending, v.error) == \
            ("open", 1, False, "")
    assert v.state == "bound"


@pytest.mark.parametrize("bad,why", [
    ({"match": {"id": NVME, "vf": "1"}},
     "10-bad.json: match.vf: not a VF index"),
    ('{"match": {"id": "' + NVME + '"}',
     "10-bad.json: not valid JSON"),
    ({"match": {"id": NVME}, "device": "0000:00:1f.7"},
     '10-bad.json: the profile: unknown key "device"'),
    ({"match": {"id": NVME.upper().replace(":", "")}},
     "10-bad.json: match.id '1B360010': not vendor:device"),
    # Fits, but the range lies beyond the VF's 16 KiB BAR0.
    ({"match": {"id": NVME, "pf": "@PF@", "vf": 1},
      "regions": [{"region": "bar0",
                   "rules": [rule("big", "0x0-0x7fff", "deny")]}]},
     "10-bad.json: @VF1@: bar0 rule 'big': range 0x0-0x7fff lies outside "
     "BAR0 (size 0x4000)"),
    ({"match": {"id": NVME}, "mediator": "no-such-mediator"},
     "10-bad.json: mediator 'no-such-mediator': none is registered"),
], ids=["vf-type", "json", "unknown-key", "id", "range", "mediator"])
def test_wrong_profile_binds_nothing(pf, bad, why):
    """A wrong profile stops every function, even one that a good
    profile after it fits: nothing bound, nothing configured, the file
    and the key in the helper's message. A range is checked against the
    function the profile fits only: the "range" profile stops VF 1, and
    VF 0, which it does not fit, gets the good profile."""
    if isinstance(bad, dict):
        bad = json.loads(json.dumps(bad).replace("@PF@", pf))
    profiles(**{"10-bad.json": bad,
                "20-good.json": {"match": {"id": NVME}}})
    mark = log_size()
    vfs = make_vfs(pf, 2)
    log = read_log(mark)
    print(ours(log))
    if "@VF1@" in why:
        assert pci.driver(vfs[0]) == "vfmediate"
        assert vfm.devices() == [vfs[0]]
        assert f"{vfs[0]}: configured from {PROFILES}/20-good.json" in log
        pci.restore(vfs[0])
        vfm.purge(vfs[0])
    else:
        assert "configured from" not in log
    assert all(untouched(b) for b in vfs), [pci.driver(b) for b in vfs]
    assert vfm.devices() == []
    why = why.replace("@VF1@", vfs[1])
    assert f"vfmediate: udev-attach: {PROFILES}/{why}" in log
    # The same, run by hand: exit status 1.
    p = cli("udev-attach", "--profiles", PROFILES, vfs[1])
    assert p.returncode == 1 and why in p.stderr and p.stdout == "", p


def test_no_profile_directory(pf):
    """No profiles directory: the rule does not even run the helper; run
    by hand, it does nothing, quietly."""
    assert not os.path.exists(PROFILES)
    mark = log_size()
    vfs = make_vfs(pf, 2)
    assert all(untouched(b) for b in vfs)
    log = read_log(mark)
    print(ours(log))
    assert "udev-attach" not in log
    for env in ({}, {"VFMEDIATE_PROFILES": PROFILES}):
        p = cli("udev-attach", vfs[0], env=dict(os.environ, **env))
        assert (p.returncode, p.stdout, p.stderr) == (0, "", ""), p
    # An empty directory, or profiles for other functions: the same.
    profiles(**{"10-edu.json": {"match": {"id": "1234:11e8"}},
                "20-vf9.json": {"match": {"id": NVME, "vf": 9}}})
    p = cli("udev-attach", vfs[0],
            env=dict(os.environ, VFMEDIATE_PROFILES=PROFILES))
    assert (p.returncode, p.stdout, p.stderr) == (0, "", ""), p
    assert all(untouched(b) for b in vfs)


def test_not_a_vf_is_left_alone(pf):
    """The rule runs the helper for every PCI function; the helper acts on
    VFs only. The NVMe PF has its VFs' vendor:device, which a profile
    names: the helper waits for a physfn link (udev may see a VF before
    the kernel links it), none comes, and the PF is left alone."""
    profiles(**{"10-nvme.json": {"match": {"id": NVME},
                                 "regions": [{"region": "bar0",
                                              "mmap": "off"}]}})
    drv = pci.driver(pf)
    t0 = time.monotonic()
    p = cli("udev-attach", "--profiles", PROFILES, pf)
    waited = time.monotonic() - t0
    assert (p.returncode, p.stdout, p.stderr) == (0, "", ""), p
    assert waited >= 1.9, waited
    assert pci.driver(pf) == drv and pci.driver_override(pf) is None
    assert not vfm.Vfm(pf).exists()
    # A function whose id no profile names is left alone at once.
    os.unlink(os.path.join(PROFILES, "10-nvme.json"))
    profiles(**{"10-edu.json": {"match": {"id": "1234:11e8", "vf": 0}}})
    t0 = time.monotonic()
    p = cli("udev-attach", "--profiles", PROFILES, pf)
    assert (p.returncode, p.stdout, p.stderr) == (0, "", ""), p
    assert time.monotonic() - t0 < 1.5


def test_by_hand_replaces_and_rolls_back(pf):
    """udev-attach run by hand: a configuration the function had is
    replaced by the profile's; run again, nothing changes; a store the
    kernel refuses leaves the function's configuration as it was, and
    the function unbound."""
    vfs = make_vfs(pf, 2)
    vf = vfs[0]
    v = vfm.Vfm(vf).create()
    v.add_rule("bar0", "old", "0x0+4", "deny")
    prof = {"match": {"id": NVME, "vf": 0},
            "regions": [{"region": "bar0",
                         "rules": [rule("new", "0x10+4", "ro")]}]}
    profiles(**{"10-vf0.json": prof})
    want = [{"device": vf, "mediator": "", "mediator_args": "",
             "regions": [{"region": "bar0", "mmap": "auto",
                          "rules": [rule("new", "0x10-0x13", "ro")]}]}]
    p = cli("udev-attach", "--profiles", PROFILES, vf)
    assert p.returncode == 0, p
    assert p.stdout == f"{vf}: configured from {PROFILES}/10-vf0.json " \
        "and bound to vfmediate\n"
    assert saved() == want and pci.driver(vf) == "vfmediate"
    p = cli("udev-attach", "--profiles", PROFILES, vf)
    assert p.returncode == 0 and saved() == want
    pci.restore(vf)

    # nop refuses BAR 9 when mediator_args is written: the kernel refuses
    # the store (the CLI leaves mediator_args to the mediator), after it
    # has made the directory and written the mediator. All is taken back.
    prof.update(mediator="nop", mediator_args="bar=9,range=0x0+4")
    profiles(**{"10-vf0.json": prof})
    p = cli("udev-attach", "--profiles", PROFILES, vf)
    assert p.returncode == 1, p
    assert "nothing configured, the configuration is as it was" in p.stderr
    assert saved() == want
    assert pci.driver(vf) is None and pci.driver_override(vf) is None
    assert untouched(vfs[1])
