# SPDX-License-Identifier: GPL-2.0
"""libvirt, unchanged, binds an NVMe VF to vfmediate for a managed hostdev.

libvirt (>= 10) binds the VFIO variant driver a hostdev names in
``<driver model='vfmediate'/>`` the way it binds vfio-pci: driver_override
plus drivers_probe, and gives the function back at the end. The test
starts the host's libvirtd (Debian's monolithic daemon with its QEMU
driver) inside the test guest, with a private configuration, and:

- pre-provisions the VF's vfmediate configuration in configfs (a pass +
  audit rule on the config-space vendor/device ID bytes, which QEMU's
  vfio-pci realize reads, and an ``ro`` rule on the NVMe CAP register);
- ``virsh define`` + ``start`` of a minimal TCG domain (no disk, no NIC,
  32 MiB) holding the VF as a managed hostdev with that driver element;
- checks that libvirt bound the VF to vfmediate (driver_override
  ``vfmediate``), that the configuration was applied when QEMU opened the
  device (``state`` open, ``generation`` > 0, nothing pending, no
  error), that QEMU realized the function (``query-pci`` over
  ``virsh qemu-monitor-command``) and that the audited rule counted hits;
- ``virsh destroy`` + ``undefine`` and checks that the VF is back on the
  driver it had before (none: the guest's VFs start unbound) with no
  override left.

The guest's root is the host's, read-only: the fixture bind-mounts a
fresh, writable /etc/libvirt holding only its libvirtd.conf and qemu.conf
(root, no security driver, no cgroups, no namespaces, no virtlogd), makes
the daemon's directories in the guest's tmpfs and starts libvirtd
directly (no systemd, no socket activation); it logs to
/tmp/libvirtd.log, which a failure prints. Without the libvirt packages
the test is skipped; with them, anything that keeps libvirt from running
fails it.
"""
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET

import pytest

import pci
from budget import DEBUG_KERNEL
from vfm import Vfm

# libvirtd's managed hostdev: 2.5 minutes of the debug lane, whose kernel
# paths (bind, open by QEMU, unbind) test_qemu_client.py runs there.
pytestmark = pytest.mark.skipif(
    DEBUG_KERNEL, reason="libvirt's kernel paths run on the debug kernel "
    "in test_qemu_client.py")

QEMU = "/usr/bin/qemu-system-x86_64"
LIBVIRTD = "/usr/sbin/libvirtd"
VIRSH = "/usr/bin/virsh"
QEMU_DRIVER = "/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/" \
    "libvirt_driver_qemu.so"
URI = "qemu:///system"
DOMAIN = "vfm-libvirt"
LOG = "/tmp/libvirtd.log"
PIDFILE = "/run/vfm-libvirtd.pid"
ETC = "/etc/libvirt"

# The debug kernel (KASAN, lockdep) runs everything several times slower.
SLOW = 4 if DEBUG_KERNEL else 1
DAEMON_START = 60 * SLOW    # s for libvirtd to answer (it probes QEMU first)
VIRSH_TIMEOUT = 60 * SLOW   # s for any one virsh call

LIBVIRTD_CONF = f"""\
# tests/test_libvirt.py: root only, no polkit, no TCP
unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_level = 3
log_filters = "1:util.pci 1:hypervisor.virhostdev 1:qemu.qemu_hostdev 1:qemu.qemu_process"
log_outputs = "1:file:{LOG}"
"""

QEMU_CONF = """\
# tests/test_libvirt.py: QEMU as root, nothing the test guest lacks
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
"""


def domain_xml(bdf):
    dom, bus, slot_fn = bdf.split(":")
    slot, fn = slot_fn.split(".")
    return f"""\
<domain type='qemu'>
  <name>{DOMAIN}</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{QEMU}</emulator>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <driver model='vfmediate'/>
      <source>
        <address domain='0x{dom}' bus='0x{bus}' slot='0x{slot}' function='0x{fn}'/>
      </source>
    </hostdev>
  </devices>
</domain>
"""


def _tail(path, n=60):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return f"({path}: {e.strerror})"


def diagnostics():
    out = [f"--- {LOG} (tail) ---", _tail(LOG)]
    for p in sorted(glob.glob("/var/log/libvirt/qemu/*.log")):
        out += [f"--- {p} (tail) ---", _tail(p, 30)]
    return "\n".join(out)


def virsh(*args, check=True, timeout=VIRSH_TIMEOUT):
    """Run virsh against the system daemon; returns stdout. A failure (or
    a call that outlives its timeout) fails the test with virsh's
    message and the daemon's log."""
    cmd = [VIRSH, "-q", "-c", URI, *args]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(cmd)}: no answer within {timeout}s\n"
                    + diagnostics(), pytrace=False)
    if check and r.returncode != 0:
        pytest.fail(f"{' '.join(cmd)}: exit {r.returncode}: "
                    f"{r.stderr.strip()}\n" + diagnostics(), pytrace=False)
    return r.stdout


def _installed():
    """(present, missing) among the pieces the test needs."""
    need = {"libvirtd (libvirt-daemon)": LIBVIRTD,
            "virsh (libvirt-clients)": VIRSH,
            "QEMU driver (libvirt-daemon-driver-qemu)": QEMU_DRIVER}
    present = [k for k, p in need.items() if os.path.exists(p)]
    missing = [k for k, p in need.items() if not os.path.exists(p)]
    return present, missing


def _mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any(ln.split()[4] == path for ln in f)


def _stop_daemon(proc_pid):
    if proc_pid is None:
        return
    try:
        os.kill(proc_pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(proc_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(proc_pid, signal.SIGKILL)


def _read_pid():
    try:
        with open(PIDFILE) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


@pytest.fixture(scope="module")
def libvirtd():
    present, missing = _installed()
    if not present:
        pytest.skip("libvirt is not installed (scripts/install-deps installs "
                    "libvirt-daemon, libvirt-daemon-driver-qemu and "
                    "libvirt-clients from bookworm-backports)")
    if missing:
        pytest.fail("libvirt is partly installed: missing "
                    + ", ".join(missing), pytrace=False)
    if not os.access(QEMU, os.X_OK):
        pytest.fail(f"libvirt is installed but {QEMU} is not (qemu-system-x86)",
                    pytrace=False)
    r = subprocess.run([LIBVIRTD, "--version"], capture_output=True,
                       text=True, timeout=30)
    m = re.search(r"\(libvirt\) (\d+)\.(\d+)", r.stdout)
    if r.returncode != 0 or not m:
        pytest.fail(f"{LIBVIRTD} --version: exit {r.returncode}: "
                    f"{(r.stdout + r.stderr).strip()[:300]!r}", pytrace=False)
    if (int(m[1]), int(m[2])) < (10, 0):
        pytest.fail(f"libvirt {m[1]}.{m[2]} is installed; <driver model=...> "
                    f"needs >= 10.0 (bookworm-backports)", pytrace=False)

    # Our own /etc/libvirt, writable (the guest's root is the host's,
    # read-only), with nothing of the host's configuration or domains.
    etc = tempfile.mkdtemp(prefix="vfm-libvirt-etc.", dir="/run")
    os.chmod(etc, 0o755)
    os.makedirs(os.path.join(etc, "qemu", "autostart"))
    with open(os.path.join(etc, "libvirtd.conf"), "w") as f:
        f.write(LIBVIRTD_CONF)
    with open(os.path.join(etc, "qemu.conf"), "w") as f:
        f.write(QEMU_CONF)
    subprocess.run(["mount", "--bind", etc, ETC], check=True)
    for d in ("/run/libvirt", "/var/lib/libvirt/qemu", "/var/log/libvirt/qemu",
              "/var/cache/libvirt/qemu"):
        os.makedirs(d, exist_ok=True)
    try:
        os.unlink(LOG)
    except FileNotFoundError:
        pass

    pid = None
    try:
        r = subprocess.run([LIBVIRTD, "--daemon", "--pid-file", PIDFILE],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            pytest.fail(f"libvirtd --daemon: exit {r.returncode}: "
                        f"{r.stderr.strip()}\n" + diagnostics(),
                        pytrace=False)
        deadline = time.monotonic() + DAEMON_START
        while True:
            pid = pid or _read_pid()
            try:
                r = subprocess.run([VIRSH, "-c", URI, "version"],
                                   capture_output=True, text=True,
                                   timeout=VIRSH_TIMEOUT)
            except subprocess.TimeoutExpired:
                pytest.fail(f"virsh version: no answer within "
                            f"{VIRSH_TIMEOUT}s\n" + diagnostics(),
                            pytrace=False)
            if r.returncode == 0 and "QEMU" in r.stdout:
                break
            if pid is not None and not os.path.exists(f"/proc/{pid}"):
                pytest.fail("libvirtd exited:\n" + r.stderr + diagnostics(),
                            pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"libvirtd does not answer within "
                            f"{DAEMON_START}s: {r.stderr.strip()}\n"
                            + diagnostics(), pytrace=False)
            time.sleep(0.5)
        yield r.stdout
    finally:
        # The test destroys and undefines its domain; this is for a test
        # that failed half-way. Then the daemon goes, whatever happened.
        for cmd in ("destroy", "undefine"):
            try:
                subprocess.run([VIRSH, "-c", URI, cmd, DOMAIN],
                               capture_output=True, timeout=VIRSH_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        _stop_daemon(pid or _read_pid())
        if _mounted(ETC):
            subprocess.run(["umount", ETC], check=False)
        shutil.rmtree(etc, ignore_errors=True)


def find_dev(pcis, vendor, device):
    for bus in pcis:
        for d in bus["devices"]:
            if (d["id"]["vendor"], d["id"]["device"]) == (vendor, device):
                return d
            bridge = d.get("pci_bridge", {}).get("devices")
            if bridge:
                found = find_dev([{"devices": bridge}], vendor, device)
                if found:
                    return found
    return None


def test_libvirt_managed_hostdev_vfmediate(libvirtd, nvme_vf, tmp_path):
    bdf = nvme_vf
    before = (pci.driver(bdf), pci.driver_override(bdf))
    assert before[0] != "vfmediate", before
    vendor, device = pci.vendor_device(bdf)

    with Vfm(bdf) as v:
        # Pre-provisioned: staged now, applied when QEMU opens the VF.
        ids = v.add_rule("config", "ids", "0x0-0x3", "pass", audit=1)
        cap = v.add_rule("bar0", "cap", "0x0-0x7", "ro")
        assert (v.state, v.generation, ids.hits) == ("absent", 0, 0)

        xml = tmp_path / "domain.xml"
        xml.write_text(domain_xml(bdf))
        virsh("define", str(xml))
        try:
            t0 = time.monotonic()
            virsh("start", DOMAIN)
            started = time.monotonic() - t0
            assert virsh("domstate", DOMAIN).strip() == "running"
            live = ET.fromstring(virsh("dumpxml", DOMAIN))
            drv = live.find("devices/hostdev/driver")
            assert drv is not None and drv.get("model") == "vfmediate", \
                ET.tostring(live, encoding="unicode")

            # libvirt bound the VF the driverctl way, to the model named
            assert pci.driver(bdf) == "vfmediate"
            assert pci.driver_override(bdf) == "vfmediate"

            # the configuration was applied when QEMU opened the device
            assert v.state == "open"
            assert v.generation > 0
            assert not v.pending
            assert v.error == ""

            # QEMU realized the passed-through function
            out = virsh("qemu-monitor-command", DOMAIN,
                        json.dumps({"execute": "query-pci"}))
            dev = find_dev(json.loads(out)["return"], vendor, device)
            assert dev is not None, out
            assert dev.get("qdev_id", "").startswith("hostdev"), dev
            hmp = virsh("qemu-monitor-command", DOMAIN, "--hmp", "info pci")
            assert f"{vendor:04x}:{device:04x}" in hmp.lower(), hmp

            # QEMU's realize read the ID bytes through the audited rule
            assert ids.hits > 0
            cap.hits     # readable; QEMU need not have touched BAR0 yet
        finally:
            virsh("destroy", DOMAIN, check=False)
            virsh("undefine", DOMAIN, check=False)

        assert DOMAIN not in virsh("list", "--all", "--name").split()
        # closed and handed back: the driver it had (none), no override
        assert (v.state, v.generation) == ("absent", 0)
        assert (pci.driver(bdf), pci.driver_override(bdf)) == before
    print(f"virsh start took {started:.1f}s")
