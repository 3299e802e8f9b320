# SPDX-License-Identifier: GPL-2.0
"""vfmediate(8), the command line tool, against the configfs truth (and
the generic netlink family where the kernel has it).

Every subcommand's text and JSON output; bad arguments of every kind with
their exit status and message; save -> wipe -> restore gives the same
save; a broken or half-valid restore file changes nothing; unprivileged
writes are refused cleanly; monitor -c receives events; the Prometheus
output is parsed by prometheus_client's own parser.

The binary is the one built on the host (make -C cli) in the shared
project directory.
"""
import json
import os
import re
import socket
import struct
import subprocess
import time

import pytest

import pci
import vfm
from policy import EDU_BAR0_SIZE, EDU_ID, EDU_LIVE
from vfio import BAR0, Device

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CLI = os.path.join(TOP, "cli", "vfmediate")
NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534",
          "--clear-groups"]
GHOST = "0000:00:1f.7"          # a valid address no function has


@pytest.fixture(scope="session")
def cli():
    if not os.access(CLI, os.X_OK):
        pytest.fail(f"{CLI} is not built: run 'make -C cli' on the host "
                    "before the guest suite")
    return CLI


pytestmark = pytest.mark.usefixtures("no_config_left")


def run(*args, user=False, check_rc=None, timeout=60):
    cmd = ([*NOBODY] if user else []) + [CLI, *map(str, args)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check_rc is not None:
        assert p.returncode == check_rc, (cmd, p.returncode, p.stdout,
                                          p.stderr)
    return p


def ok(*args, **kw):
    return run(*args, check_rc=0, **kw).stdout


def jrun(*args):
    return json.loads(ok("-j", *args))


def fails(rc, pattern, *args, user=False):
    """The command exits rc with one 'vfmediate: ...' line matching
    pattern on stderr, and prints nothing on stdout."""
    p = run(*args, user=user)
    assert p.returncode == rc, (args, p.returncode, p.stdout, p.stderr)
    assert p.stdout == ""
    assert p.stderr.startswith("vfmediate: "), p.stderr
    assert re.search(pattern, p.stderr), (pattern, p.stderr)
    assert not re.search(r"\[Errno|errno \d|^-?\d+$", p.stderr), p.stderr
    return p.stderr


def genl_family(name):
    """True when the generic netlink family is registered."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 16)
    try:
        s.bind((0, 0))
        attr = name.encode() + b"\0"
        nla = struct.pack("HH", 4 + len(attr), 2) + attr
        nla += b"\0" * (-len(nla) % 4)
        # GENL_ID_CTRL 0x10, NLM_F_REQUEST, CTRL_CMD_GETFAMILY 3, version 1
        body = struct.pack("BBH", 3, 1, 0) + nla
        s.send(struct.pack("IHHII", 16 + len(body), 0x10, 1, 1, 0) + body)
        data = s.recv(65536)
        _, typ = struct.unpack("IH", data[:6])
        if typ == 2:                    # NLMSG_ERROR
            return struct.unpack("i", data[16:20])[0] == 0
        return True
    finally:
        s.close()


@pytest.fixture(scope="session")
def netlink():
    return genl_family("vfmediate")


@pytest.fixture
def edu_cli(edu, cli):
    """edu bound to vfmediate by 'vfmediate bind', unbound after."""
    ok("bind", edu)
    yield edu
    if pci.driver(edu) == "vfmediate":
        ok("unbind", edu)


def cfs(bdf, *parts):
    return vfm.read_attr(os.path.join(vfm.DEVICES, bdf, *parts))


# -- global options and usage --------------------------------------------------

def test_version_and_help(cli):
    assert re.fullmatch(r"vfmediate \S+\n", ok("-V"))
    text = ok("-h")
    for c in ("show", "mediators", "attach", "detach", "apply", "bind",
              "unbind", "rule", "stats", "monitor", "save", "restore"):
        assert re.search(rf"^  {c}\b", text, re.M), c
        assert ok(c, "-h").startswith("Usage: vfmediate")
    for c in ("add", "del", "list", "set"):
        assert "Usage:" in ok("rule", c, "-h")


def test_prefix_matching(cli):
    assert ok("sh") == ok("show")
    assert ok("med") == ok("mediators")
    err = fails(2, r"'s' is ambiguous", "s")
    assert "show" in err and "stats" in err and "save" in err
    fails(2, r"unknown command 'frobnicate'", "frobnicate")


def test_usage_errors(cli):
    p = run()
    assert p.returncode == 2 and "Usage:" in p.stderr
    fails(2, r"unknown option '-x'", "-x", "show")


BAD_ARGS = [
    # (args, exit status, message)
    (["show", "0000:00:04.00"], 2, r"'0000:00:04\.00' is not a PCI address"),
    (["show", "00:04.0"], 2, r"not a PCI address in the form DDDD:BB:DD\.F"),
    (["show", "0000:00:04.0", "x"], 2, r"too many arguments"),
    (["attach", GHOST], 2, r"needs BDF and a mediator NAME"),
    (["attach", GHOST, "NOP"], 2, r"'NOP' is not a mediator name"),
    (["attach", GHOST, "nosuchmed"], 1,
     rf"{GHOST}: mediator 'nosuchmed': none is registered and no installed "
     r"module provides it"),
    (["attach", GHOST, "nop", "x" * 256], 1, r"mediator_args: longer than 255"),
    (["detach"], 2, r"detach: needs BDF"),
    (["detach", GHOST], 1, rf"{GHOST}: not configured"),
    (["apply"], 2, r"apply: needs BDF"),
    (["apply", GHOST], 1, rf"{GHOST}: not configured"),
    (["apply", GHOST, "x"], 2, r"too many arguments"),
    (["bind", GHOST], 1, rf"{GHOST}: no such PCI function"),
    (["unbind", "0000:0:1.0"], 2, r"not a PCI address"),
    (["rule"], 2, r""),
    (["rule", "frob"], 2, r"unknown rule command 'frob'"),
    (["rule", "add", GHOST, "bar0", "x", "0x0-0x3"], 2,
     r"needs BDF REGION NAME RANGE ACTION"),
    (["rule", "add", GHOST, "bar9", "x", "0x0-0x3", "ro"], 2,
     r"'bar9' is not a region"),
    (["rule", "add", GHOST, "bar0", "a b", "0x0-0x3", "ro"], 2,
     r"'a b' is not a rule name"),
    (["rule", "add", GHOST, "bar0", "x" * 64, "0x0-0x3", "ro"], 2,
     r"is not a rule name \(1 to 63"),
    (["rule", "add", GHOST, "bar0", "x", "0x10-0x1", "ro"], 2,
     r"range '0x10-0x1': its end lies below its start"),
    (["rule", "add", GHOST, "bar0", "x", "0x0+0", "ro"], 2,
     r"range '0x0\+0': its length is zero"),
    (["rule", "add", GHOST, "bar0", "x", "4k", "ro"], 2,
     r"range '4k': not START-END or START\+LEN"),
    (["rule", "add", GHOST, "bar0", "x", "0x0-0x10000000000", "ro"], 2,
     r"beyond the region offset space"),
    (["rule", "add", GHOST, "bar0", "x", "0x0-0x1ffffffffffffffff", "ro"], 2,
     r"a number beyond 64 bits"),
    (["rule", "add", GHOST, "bar0", "x", "0x0-0x3", "readonly"], 2,
     r"'readonly' is not an action"),
    (["rule", "add", GHOST, "bar0", "x", "0x0-0x3", "ro", "access", "x"], 2,
     r"access 'x': not r, w or rw"),
    (["rule", "add", GHOST, "bar0", "x", "0x0-0x3", "ro", "audit", "maybe"],
     2, r"audit 'maybe': not on or off"),
    (["rule", "add", GHOST, "bar0", "x", "0x0-0x3", "ro", "colour", "red"],
     2, r"unexpected 'colour'"),
    (["rule", "add", GHOST, "bar0", "x", "0x0-0x3", "ro", "audit"], 2,
     r"'audit' needs a value"),
    (["rule", "add", GHOST, "bar0", "t", "0x0-0x3", "trap"], 1,
     rf"{GHOST}: bar0 rule 't': action trap needs a mediator"),
    (["rule", "del", GHOST, "bar0", "nosuch"], 1,
     rf"{GHOST}: bar0 rule 'nosuch': no such rule"),
    (["rule", "set", GHOST, "bar0", "x", "colour", "red"], 2,
     r"'colour' is not a rule attribute"),
    (["rule", "set", GHOST, "bar0", "x", "action", "ro"], 1,
     r"bar0 rule 'x': no such rule"),
    (["rule", "list", GHOST], 1, rf"{GHOST}: not configured"),
    (["stats", "-w", "0"], 2, r"-w takes a number of seconds above 0"),
    (["stats", "-w", "x"], 2, r"-w takes a number"),
    (["stats", "--frob"], 2, r"unknown option '--frob'"),
    (["stats", "--prometheus", "-w", "1"], 2, r"do not go together"),
    (["monitor", "-c", "0"], 2, r"-c takes a number of events above 0"),
    (["save", "a", "b"], 2, r"too many arguments"),
    (["restore"], 2, r"restore: needs FILE"),
    (["restore", "/nonexistent.json"], 1,
     r"restore: /nonexistent\.json: No such file"),
]


@pytest.mark.parametrize("args,rc,msg", BAD_ARGS,
                         ids=[" ".join(a)[:60] for a, _, _ in BAD_ARGS])
def test_bad_arguments(cli, args, rc, msg):
    p = run(*args)
    assert p.returncode == rc, (p.stdout, p.stderr)
    assert p.stderr.startswith("vfmediate: ") or (not msg and "Usage" in
                                                  p.stdout + p.stderr)
    assert re.search(msg, p.stderr), p.stderr
    assert vfm.devices() == []          # nothing reached configfs


def test_range_checked_against_the_bar(cli, edu):
    # edu: BAR0 of 1 MiB, no BAR1; known from sysfs, bound or not.
    fails(1, rf"^vfmediate: {edu}: bar0 rule 'cc': range 0xffff0-0x10000f "
          rf"lies outside BAR0 \(size 0x{EDU_BAR0_SIZE:x}\)$",
          "rule", "add", edu, "bar0", "cc", "0xffff0+0x20", "ro")
    fails(1, rf"{edu}: bar2 rule 'x': the function has no BAR2",
          "rule", "add", edu, "bar2", "x", "0x0-0x3", "ro")
    fails(1, rf"{edu}: config rule 'x': range 0x0-0x1000 lies outside "
          r"config \(size 0x(100|1000)\)",
          "rule", "add", edu, "config", "x", "0x0-0x1000", "deny")
    assert vfm.devices() == []


# -- show, attach, detach, mediators -------------------------------------------

def show_matches_configfs(bdf, d):
    assert d["device"] == bdf
    assert d["state"] == cfs(bdf, "state")
    assert d["configured"] is True
    assert d["mediator"] == cfs(bdf, "mediator")
    assert d["mediator_args"] == cfs(bdf, "mediator_args")
    assert d["generation"] == int(cfs(bdf, "generation"))
    assert d["pending"] == (cfs(bdf, "pending") == "1")
    assert d["error"] == cfs(bdf, "error")
    assert d["warning"] == cfs(bdf, "warning")
    assert d["migration"] == cfs(bdf, "migration")


def test_attach_show_detach(cli, edu_cli):
    bdf = edu_cli
    ok("attach", bdf, "nop", "bar=0,range=0x8+4")
    assert cfs(bdf, "mediator") == "nop"
    assert cfs(bdf, "mediator_args") == "bar=0,range=0x8+4"
    try:
        shown = jrun("show", bdf)
        assert len(shown) == 1
        show_matches_configfs(bdf, shown[0])
        assert shown[0]["state"] == "bound"
        assert [d["device"] for d in jrun("show")] == vfm.devices()
        text = ok("show", bdf)
        assert text.startswith(f"{bdf}: state bound configured yes "
                               "mediator nop args 'bar=0,range=0x8+4' "
                               "generation 0 pending no\n"), text
        assert json.loads(ok("-p", "show", bdf)) == shown
        assert "\n  " in ok("-p", "show", bdf)

        meds = {m["name"]: m for m in jrun("mediators")}
        assert meds["nop"]["loaded"] is True
        assert meds["nop"]["module"] == "vfmediate_nop"
        assert meds["nop"]["users"] == int(
            vfm.read_attr(f"{vfm.MEDIATORS}/nop/users")) >= 1
        for name in vfm.mediators():
            info = vfm.mediator_info(name)
            assert meds[name]["loaded"] is True
            assert (meds[name]["module"], meds[name]["ops"]) == \
                (info["module"], info["ops"])
        text = ok("mediators")
        assert re.search(r"^nop\s+vfmediate_nop\s+\d+\s+loaded$", text, re.M)

        # The mediator refuses the arguments: the kernel's EINVAL in words,
        # and the attach is undone whole.
        fails(1, rf"{bdf}: mediator_args 'bogus': the mediator refused "
              r"the arguments", "attach", bdf, "audit", "bogus")
        assert cfs(bdf, "mediator") == "nop"
        assert cfs(bdf, "mediator_args") == "bar=0,range=0x8+4"

        # A trap rule holds the mediator: EBUSY, in words.
        ok("rule", "add", bdf, "bar0", "fact", "0x8+4", "trap")
        fails(1, rf"{bdf}: mediator '': a trap rule of the device needs the "
              r"mediator", "detach", bdf)
        ok("rule", "del", bdf, "bar0", "fact")
        ok("detach", bdf)
        assert cfs(bdf, "mediator") == ""
        assert jrun("show", bdf)[0]["mediator"] == ""
    finally:
        vfm.purge(bdf)


def test_show_unconfigured(cli, netlink):
    if netlink:
        fails(1, rf"{GHOST}: not bound to vfmediate and not configured",
              "show", GHOST)
    else:
        fails(1, rf"{GHOST}: not configured", "show", GHOST)
    assert jrun("show") == []
    assert ok("show") == ""


def test_mediators_installed_not_loaded(cli):
    """modules.alias names every installed mediator, loaded or not."""
    rel = os.uname().release
    with open(f"/lib/modules/{rel}/modules.alias") as f:
        installed = dict(re.findall(r"^alias vfmediate-mediator:(\S+) (\S+)$",
                                    f.read(), re.M))
    assert "nop" in installed
    meds = {m["name"]: m for m in jrun("mediators")}
    for name, mod in installed.items():
        assert meds[name]["module"] == mod
        assert meds[name]["loaded"] == (name in vfm.mediators())
    unloaded = [n for n in installed if n not in vfm.mediators()]
    text = ok("mediators")
    for n in unloaded:
        assert re.search(rf"^{n}\s+\S+\s+0\s+installed$", text, re.M)


# -- rules ------------------------------------------------------------------

def test_rule_add_list_set_del(cli, edu):
    bdf = edu
    try:
        ok("rule", "add", bdf, "bar0", "id", "0x0-0x3", "deny",
           "access", "w")
        ok("rule", "add", bdf, "bar0", "dma", "0x80+0x20", "ro",
           "audit", "on")
        ok("rule", "add", bdf, "config", "line", "60+1", "ignore")
        fails(1, rf"{bdf}: bar0 rule 'id': mkdir: it exists already",
              "rule", "add", bdf, "bar0", "id", "0x0-0x3", "deny")
        rules = jrun("rule", "list", bdf)
        assert [(r["region"], r["name"]) for r in rules] == \
            [("config", "line"), ("bar0", "dma"), ("bar0", "id")]
        for r in rules:
            path = ("regions", r["region"], "rules", r["name"])
            assert r["device"] == bdf
            assert r["range"] == cfs(bdf, *path, "range")
            assert r["access"] == cfs(bdf, *path, "access")
            assert r["action"] == cfs(bdf, *path, "action")
            assert r["audit"] == (cfs(bdf, *path, "audit") == "1")
            assert r["hits"] == int(cfs(bdf, *path, "hits"))
        assert rules[1] == {"device": bdf, "region": "bar0", "name": "dma",
                            "range": "0x80-0x9f", "access": "rw",
                            "action": "ro", "audit": True, "hits": 0}
        assert rules[0]["range"] == "0x3c-0x3c"
        assert jrun("rule", "list") == rules
        text = ok("rule", "list", bdf).splitlines()
        assert text[0].split() == ["DEVICE", "REGION", "RULE", "RANGE",
                                   "ACCESS", "ACTION", "AUDIT", "HITS"]
        assert text[2].split() == [bdf, "bar0", "dma", "0x80-0x9f", "rw",
                                   "ro", "on", "0"]

        ok("rule", "set", bdf, "bar0", "id", "range", "0x0+8")
        ok("rule", "set", bdf, "bar0", "id", "access", "rw")
        ok("rule", "set", bdf, "bar0", "id", "action", "ro")
        ok("rule", "set", bdf, "bar0", "id", "audit", "on")
        p = ("regions", "bar0", "rules", "id")
        assert (cfs(bdf, *p, "range"), cfs(bdf, *p, "access"),
                cfs(bdf, *p, "action"), cfs(bdf, *p, "audit")) == \
            ("0x0-0x7", "rw", "ro", "1")
        fails(1, rf"{bdf}: bar0 rule 'id': range 0x0-0x100000 lies outside "
              r"BAR0", "rule", "set", bdf, "bar0", "id", "range",
              "0x0-0x100000")
        fails(1, r"action trap needs a mediator", "rule", "set", bdf,
              "bar0", "id", "action", "trap")
        assert cfs(bdf, *p, "range") == "0x0-0x7"

        ok("rule", "del", bdf, "bar0", "id")
        assert not os.path.exists(os.path.join(vfm.DEVICES, bdf, *p))
        assert [r["name"] for r in jrun("rule", "list", bdf)] == \
            ["line", "dma"]
    finally:
        vfm.purge(bdf)


# -- bind and unbind -----------------------------------------------------------

def test_bind_unbind(cli, edu):
    assert pci.driver(edu) is None
    ok("bind", edu)
    try:
        assert pci.driver(edu) == "vfmediate"
        assert pci.driver_override(edu) == "vfmediate"
        ok("bind", edu)                 # already bound: nothing to do
        ok("unbind", edu)
        assert pci.driver(edu) is None
        assert pci.driver_override(edu) is None
        fails(1, rf"{edu}: not bound to vfmediate \(driver: none\)",
              "unbind", edu)
    finally:
        pci.restore(edu)


def test_bind_refuses_a_group_with_host_drivers(cli):
    """q35's ICH9 functions (LPC 00:1f.0, SATA 00:1f.2, SMBus 00:1f.3)
    share one IOMMU group: with i2c_i801 bound to the SMBus function,
    binding the LPC function is refused, naming the peer and its driver,
    and nothing changes."""
    lpc, smbus = "0000:00:1f.0", "0000:00:1f.3"
    group = pci.iommu_group_devices(lpc)
    assert smbus in group and len(group) >= 2
    loaded = os.path.exists("/sys/module/i2c_i801")
    pci.modprobe("i2c_i801")
    try:
        assert pci.driver(smbus) == "i801_smbus"
        before = (pci.driver(lpc), pci.driver_override(lpc))
        # Which other ICH9 functions have a host driver depends on the
        # kernel: the debug kernel has ahci built in, so SATA is bound too.
        peers = [d for d in sorted(group) if d != lpc and pci.driver(d)
                 not in (None, "vfio-pci", "vfmediate", "pcieport")]
        assert smbus in peers
        listed = ", ".join(rf"{re.escape(d)} \({pci.driver(d)}\)"
                           for d in peers)
        what, pron = (("a function", "it") if len(peers) == 1
                      else ("functions", "them"))
        err = fails(1, rf"^vfmediate: {lpc}: IOMMU group \d+ also holds "
                    rf"{what} bound to host drivers: {listed}; unbind "
                    rf"{pron} or bind {pron} to vfio-pci or vfmediate first$",
                    "bind", lpc)
        assert err.count("\n") == 1
        assert (pci.driver(lpc), pci.driver_override(lpc)) == before
    finally:
        if not loaded:
            subprocess.run(["rmmod", "i2c_i801"], capture_output=True)


def test_bind_singleton_group(cli, nvme_vf, netlink):
    """A VF alone in its IOMMU group binds; netlink shows a bound device
    that has no configuration, configfs alone cannot."""
    assert pci.iommu_group_devices(nvme_vf) == [nvme_vf]
    ok("bind", nvme_vf)
    try:
        assert pci.driver(nvme_vf) == "vfmediate"
        if netlink:
            d = jrun("show", nvme_vf)[0]
            assert (d["state"], d["configured"]) == ("bound", False)
            assert nvme_vf in [x["device"] for x in jrun("show")]
        else:
            fails(1, rf"{nvme_vf}: not configured", "show", nvme_vf)
    finally:
        pci.restore(nvme_vf)


# -- unprivileged use ---------------------------------------------------------

def test_unprivileged(cli, edu, netlink):
    fails(1, rf"{GHOST}: mkdir: permission denied \(changing the "
          r"configuration needs root\)", "rule", "add", GHOST, "bar0", "x",
          "0x0-0x3", "ro", user=True)
    fails(1, rf"{GHOST}: mkdir: permission denied", "attach", GHOST, "nop",
          user=True)
    fails(1, rf"{edu}: driver_override: permission denied \(binding needs "
          r"root\)", "bind", edu, user=True)
    with vfm.Vfm(GHOST) as v:
        v.add_rule("bar0", "x", "0x0-0x3", "ro")
        fails(1, rf"{GHOST}: bar0 rule 'x': action 'deny': permission denied",
              "rule", "set", GHOST, "bar0", "x", "action", "deny", user=True)
        fails(1, rf"{GHOST}: mediator '': permission denied", "detach",
              GHOST, user=True)
        fails(1, rf"{GHOST}: bar0 rule 'x': rmdir: permission denied",
              "rule", "del", GHOST, "bar0", "x", user=True)
        # Reading is open to anyone.
        assert json.loads(ok("-j", "rule", "list", user=True))[0]["name"] \
            == "x"
        assert json.loads(ok("save", user=True))["devices"][0]["device"] \
            == GHOST
        assert json.loads(ok("-j", "show", GHOST, user=True))[0]["device"] \
            == GHOST
        saved = ok("save")
        path = "/tmp/cli-unpriv.json"
        with open(path, "w") as f:
            f.write(saved.replace('"ro"', '"deny"'))
        os.chmod(path, 0o644)
        fails(1, r"permission denied", "restore", path, user=True)
        assert ok("save") == saved
        assert v.rule("bar0", "x").read("action") == "ro"
    if netlink:
        unprivileged_monitor()


def unprivileged_monitor():
    """Joining the monitor group needs CAP_NET_ADMIN: every supported
    kernel can restrict a multicast group (GENL_MCAST_CAP_NET_ADMIN, 6.7,
    in the 6.1 stable series since 6.1.69)."""
    p = subprocess.Popen([*NOBODY, CLI, "monitor", "-c", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        # A refusal ends it at once; only a listener would wait this long
        # (a loaded debug guest took over 5 s to start it and be refused).
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        pytest.fail("an unprivileged user joined the monitor group")
    assert p.returncode == 1 and out == "", (p.returncode, out, err)
    assert err == ("vfmediate: monitor: subscribing to the monitor group "
                   "needs CAP_NET_ADMIN\n"), err


# -- save and restore ---------------------------------------------------------

def configure(edu, vf):
    """A configuration touching every saved attribute."""
    ok("attach", edu, "nop", "bar=0,range=0x8+4")
    ok("rule", "add", edu, "bar0", "fact", "0x8+4", "trap", "access", "r")
    ok("rule", "add", edu, "bar0", "id", "0x0-0x3", "deny", "access", "w",
       "audit", "on")
    ok("rule", "add", edu, "config", "line", "0x3c+1", "ignore")
    vfm.write_attr(os.path.join(vfm.DEVICES, edu, "regions", "bar0", "mmap"),
                   "off")
    ok("rule", "add", vf, "bar0", "vs", "0x8-0xb", "ro")
    ok("rule", "add", GHOST, "bar2", "future", "0x0+0x1000", "pass",
       "audit", "on")
    os.mkdir(os.path.join(vfm.DEVICES, GHOST, "regions", "bar2", "rules",
                          "norange"))


def wipe():
    for bdf in vfm.devices():
        vfm.purge(bdf)


def test_save_wipe_restore(cli, edu, nvme_vf, tmp_path):
    try:
        configure(edu, nvme_vf)
        saved = ok("save")
        doc = json.loads(saved)
        assert doc["format"] == "vfmediate-config" and doc["version"] == 1
        devs = {d["device"]: d for d in doc["devices"]}
        assert list(devs) == sorted([edu, nvme_vf, GHOST])
        e = devs[edu]
        assert (e["mediator"], e["mediator_args"]) == \
            ("nop", "bar=0,range=0x8+4")
        regions = {r["region"]: r for r in e["regions"]}
        assert list(regions) == ["config", "bar0"]
        assert regions["bar0"]["mmap"] == "off"
        assert regions["bar0"]["rules"] == [
            {"name": "fact", "range": "0x8-0xb", "access": "r",
             "action": "trap", "audit": False},
            {"name": "id", "range": "0x0-0x3", "access": "w",
             "action": "deny", "audit": True}]
        assert devs[GHOST]["regions"][0]["rules"][1] == \
            {"name": "norange", "range": "", "access": "rw",
             "action": "deny", "audit": False}
        f = tmp_path / "config.json"
        ok("save", f)
        assert f.read_text() == saved

        wipe()
        assert ok("save") != saved
        ok("restore", f)
        assert ok("save") == saved
        # Restoring what is there changes nothing at all.
        ok("restore", f)
        assert ok("save") == saved

        # restore replaces: a device not in the file goes.
        ok("rule", "add", "0000:00:1e.0", "bar0", "extra", "0x0-0x3", "ro")
        ok("restore", f)
        assert ok("save") == saved
    finally:
        wipe()


def test_restore_leaves_equal_devices_alone(cli, edu_cli, tmp_path):
    """A device configured as the file says is not removed and made
    again: its rules keep their hit counters."""
    bdf = edu_cli
    try:
        ok("rule", "add", bdf, "bar0", "guard", "0x0-0x3", "ro")
        touch_edu(bdf, 3)
        hits = rule_hits(bdf, "bar0", "guard")
        assert hits >= 3
        f = tmp_path / "c.json"
        ok("save", f)
        doc = json.loads(f.read_text())
        doc["devices"].append({"device": GHOST, "regions": [
            {"region": "bar0", "rules": [{"name": "x", "range": "0+4"}]}]})
        f.write_text(json.dumps(doc))
        ok("restore", f)
        assert rule_hits(bdf, "bar0", "guard") == hits
        assert jrun("rule", "list", GHOST) == [
            {"device": GHOST, "region": "bar0", "name": "x",
             "range": "0x0-0x3", "access": "rw", "action": "deny",
             "audit": False, "hits": 0}]
    finally:
        wipe()


def broken_files(edu, doc):
    """(name, content, message) of files that must change nothing."""
    def variant(fn):
        d = json.loads(json.dumps(doc))
        fn(d)
        return json.dumps(d)

    def dev(d, bdf):
        return next(x for x in d["devices"] if x["device"] == bdf)

    ghost_rule = lambda d: dev(d, GHOST)["regions"][0]["rules"][0]  # noqa
    return [
        ("not-json", '{"devices": [', r"not valid JSON"),
        ("empty", "", r"not valid JSON"),
        ("not-object", "[]", r"the document is not a JSON object"),
        ("unknown-top", variant(lambda d: d.update(extra=1)),
         r'unknown key "extra"'),
        ("format", variant(lambda d: d.update(format="nvmet")),
         r'format "nvmet"'),
        ("version", variant(lambda d: d.update(version=2)),
         r"version 2: this vfmediate reads version 1"),
        ("bad-bdf", variant(lambda d: dev(d, GHOST).update(
            device="0000:00:1f.8")), r"device '0000:00:1f\.8': not a PCI"),
        ("twice", variant(lambda d: d["devices"].append(d["devices"][0])),
         r"given twice"),
        ("bad-region", variant(lambda d: dev(d, GHOST)["regions"][0].update(
            region="bar6")), r"region 'bar6'"),
        ("bad-mmap", variant(lambda d: dev(d, edu)["regions"][1].update(
            mmap="on")), r"bar0 mmap 'on': not auto or off"),
        # half-valid: the first devices are fine, the last one is not
        ("bad-range", variant(lambda d: ghost_rule(d).update(range="1-0")),
         rf"{GHOST}: bar2 rule 'future': range '1-0': its end lies below"),
        ("outside-bar", variant(lambda d: dev(d, edu)["regions"][1]["rules"]
                                [1].update(range="0x0-0x100000")),
         rf"{edu}: bar0 rule 'id': range 0x0-0x100000 lies outside BAR0"),
        ("bad-action", variant(lambda d: ghost_rule(d).update(action="rw")),
         r"action 'rw': not pass, trap"),
        ("bad-access", variant(lambda d: ghost_rule(d).update(access="x")),
         r"access 'x'"),
        ("bad-audit", variant(lambda d: ghost_rule(d).update(audit="yes")),
         r'"audit" must be true or false'),
        ("bad-name", variant(lambda d: ghost_rule(d).update(name="a/b")),
         r"not a rule name"),
        ("unknown-rule-key", variant(lambda d: ghost_rule(d).update(hits=3)),
         r'a rule: unknown key "hits"'),
        ("trap-no-mediator", variant(lambda d: ghost_rule(d).update(
            action="trap")), r"action trap needs a mediator"),
        ("no-such-mediator", variant(lambda d: dev(d, GHOST).update(
            mediator="nosuchmed")), r"mediator 'nosuchmed': none is "
         r"registered"),
        ("args-no-mediator", variant(lambda d: dev(d, GHOST).update(
            mediator_args="x")), r"mediator_args given without a mediator"),
        # Valid to the CLI, refused by the mediator's check_args in the
        # kernel, after other devices were applied: rolled back.
        ("kernel-refuses", variant(lambda d: (
            dev(d, GHOST).update(mediator="nop", mediator_args="bogus"),
            dev(d, edu)["regions"][1]["rules"][1].update(action="ro"))),
         rf"{GHOST}: mediator_args 'bogus': the mediator refused"),
    ]


def test_restore_broken_changes_nothing(cli, edu, nvme_vf, tmp_path):
    try:
        configure(edu, nvme_vf)
        saved = ok("save")
        doc = json.loads(saved)
        for name, content, msg in broken_files(edu, doc):
            f = tmp_path / f"{name}.json"
            f.write_text(content)
            err = fails(1, msg, "restore", f)
            assert f"vfmediate: restore: {f}: " in err, (name, err)
            if name == "kernel-refuses":
                assert "nothing restored, the configuration is as it was" \
                    in err
            assert ok("save") == saved, name
        # From an empty tree too.
        wipe()
        f = tmp_path / "kernel-refuses.json"
        fails(1, r"the mediator refused", "restore", f)
        assert json.loads(ok("save"))["devices"] == []
    finally:
        wipe()


# -- statistics, Prometheus, monitor -----------------------------------------

def touch_edu(bdf, n):
    """Open edu through VFIO: n reads of the ID register, n writes to it
    (refused by the rule), one liveness write."""
    with Device(bdf) as dev:
        dev.enable_bus_master()
        for _ in range(n):
            dev.read(BAR0, EDU_ID, 4)
            try:
                dev.write(BAR0, EDU_ID, 4, 1)
            except OSError:
                pass
        dev.write(BAR0, EDU_LIVE, 4, 5)


def rule_hits(bdf, region, name):
    return int(cfs(bdf, "regions", region, "rules", name, "hits"))


def test_stats_and_prometheus(cli, edu_cli, netlink):
    from prometheus_client.parser import text_string_to_metric_families

    bdf = edu_cli
    try:
        ok("rule", "add", bdf, "bar0", "guard", "0x0-0x3", "ro",
           "audit", "on")
        ok("rule", "add", bdf, "bar0", "idle", "0x100-0x103", "deny")
        touch_edu(bdf, 5)
        hits = rule_hits(bdf, "bar0", "guard")
        assert hits >= 5
        st = jrun("stats", bdf)
        assert len(st) == 1 and st[0]["device"] == bdf
        regions = {r["region"]: r for r in st[0]["regions"]}
        rules = {r["name"]: r for r in regions["bar0"]["rules"]}
        assert rules["guard"]["hits"] == hits
        assert rules["guard"]["action"] == "ro"
        assert rules["idle"]["hits"] == 0
        if netlink:
            assert rules["guard"]["refused"] == 5
            assert rules["guard"]["range"] == "0x0-0x3"
            assert rules["guard"]["audit"] is True
            acts = {a["action"]: a for a in regions["bar0"]["actions"]}
            assert acts["ro"]["hits"] == hits
        assert jrun("stats") == st
        text = ok("stats", bdf)
        assert f"{bdf}:\n  bar0:\n" in text
        assert re.search(rf"rule 'guard' 0x0-0x3 rw ro audit: hits {hits}\b",
                         text)

        prom = ok("stats", "--prometheus", bdf)
        assert prom.startswith("# HELP")
        fams = {f.name: f for f in text_string_to_metric_families(prom)}
        fam = fams["vfmediate_rule_hits"]
        assert fam.type == "counter"
        got = {(s.labels["rule"], s.labels["action"]): s.value
               for s in fam.samples if s.name == "vfmediate_rule_hits_total"}
        assert got == {("guard", "ro"): hits, ("idle", "deny"): 0}
        for s in fam.samples:
            assert s.labels["device"] == bdf and s.labels["region"] == "bar0"
        if netlink:
            ref = {s.labels["rule"]: s.value
                   for s in fams["vfmediate_rule_refused"].samples}
            assert ref["guard"] == 5
        assert ok("stats", "--prometheus") == prom
    finally:
        vfm.purge(bdf)


def traffic_rates(bdf):
    """Accesses made while stats -w watches add up to its rates."""
    w = subprocess.Popen([CLI, "-j", "stats", bdf, "-w", "4"],
                         stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)         # its first sample is taken
        with Device(bdf) as dev:
            for _ in range(20):
                dev.read(BAR0, EDU_ID, 4)
        out, _ = w.communicate(timeout=30)
    finally:
        if w.poll() is None:
            w.kill()
            w.communicate()
    seconds = [json.loads(ln) for ln in out.splitlines()]
    assert [s["second"] for s in seconds] == [1, 2, 3, 4]
    total = sum(r["hits_per_second"] for s in seconds for r in s["rates"]
                if r["rule"] == "guard")
    assert 16 <= total <= 21, seconds


@pytest.mark.parametrize("bound", [False, True])
def test_stats_watch(cli, edu, bound):
    if bound:
        ok("bind", edu)
    try:
        ok("rule", "add", edu, "bar0", "guard", "0x0-0x3", "ro")
        out = ok("-j", "stats", edu, "-w", "2", timeout=30).splitlines()
        assert len(out) == 2
        for i, line in enumerate(out, 1):
            o = json.loads(line)
            assert o["second"] == i
            assert o["rates"][0]["rule"] == "guard"
            assert o["rates"][0]["hits_per_second"] == 0
        if pci.driver(edu) == "vfmediate":
            traffic_rates(edu)
        text = ok("stats", edu, "-w", "1", timeout=30)
        assert re.fullmatch(rf"1 {edu} bar0 rule 'guard' ro: 0\.0 hits/s "
                            r"0\.0 bytes/s 0\.0 refused/s\n", text)
    finally:
        vfm.purge(edu)
        pci.restore(edu)


def test_monitor(cli, edu, netlink):
    """Two listeners, JSON and text, see the same events, in order: the
    bind, the open (configuration applied, then opened), one refused and
    one audited access (one per rule: a rule's second access could be
    coalesced), the close and the unbind."""
    if not netlink:
        pytest.skip("the kernel has no vfmediate netlink family yet "
                    "(kmod/netlink.c)")
    n = 7
    mons = [subprocess.Popen([CLI, *fmt, "monitor", "-c", str(n)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for fmt in (["-j"], [])]
    outs = []
    try:
        time.sleep(1)           # both subscribed before the first event
        ok("bind", edu)
        ok("rule", "add", edu, "bar0", "id", "0x0-0x3", "deny", "access", "w")
        ok("rule", "add", edu, "bar0", "fact", "0x8+4", "pass", "audit", "on")
        with Device(edu) as dev:
            dev.enable_bus_master()
            with pytest.raises(OSError):
                dev.write(BAR0, EDU_ID, 4, 1)
            dev.read(BAR0, 0x8, 4)
        ok("unbind", edu)
        for m in mons:
            out, err = m.communicate(timeout=30)
            assert m.returncode == 0, err
            outs.append(out)
    finally:
        for m in mons:
            if m.poll() is None:
                m.kill()
                m.communicate()
        vfm.purge(edu)
        pci.restore(edu)
    events = [json.loads(ln) for ln in outs[0].splitlines()]
    assert [(e["event"], e["device"]) for e in events] == [
        ("bound", edu), ("config-applied", edu), ("opened", edu),
        ("access-refused", edu), ("access-audited", edu), ("closed", edu),
        ("unbound", edu)]
    gen = events[1]["generation"]
    assert gen >= 1 and events[2]["generation"] == gen
    refused, audited = events[3], events[4]
    assert {k: refused[k] for k in ("region", "region_index", "offset",
                                    "size", "direction", "rule",
                                    "action")} == \
        {"region": "bar0", "region_index": 0, "offset": 0, "size": 4,
         "direction": "write", "rule": "id", "action": "deny"}
    assert {k: audited[k] for k in ("region", "offset", "size",
                                    "direction", "rule", "action")} == \
        {"region": "bar0", "offset": 8, "size": 4, "direction": "read",
         "rule": "fact", "action": "pass"}
    for e in (refused, audited):
        assert e.get("suppressed", 0) == 0
        assert (e["pid"], e["comm"]) == (os.getpid(), "python3")
    lines = outs[1].splitlines()
    assert len(lines) == n
    for e, line in zip(events, lines):
        assert line.startswith(f"{e['event']} {edu}"), line
    assert lines[0] == f"bound {edu}"
    assert re.search(r" rule 'id' .*action 'deny'", lines[3]), lines[3]
