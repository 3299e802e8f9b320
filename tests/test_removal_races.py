# SPDX-License-Identifier: GPL-2.0
"""Removal and unload races (issue 16, item 3).

A device bound to vfmediate is taken away while a VFIO user
(tests/race/hammer.c) accesses it from several threads (pread/pwrite of
BAR0 and config space, GET_REGION_INFO, mmap + loads + munmap), opens
and closes it in a loop or holds it open, and while a thread of the test
changes its configfs directory in a loop: a rule made, applied live,
removed, applied again, and the directory itself removed and made again.
Taken away by:

- sriov_numvfs=0 (NVMe VFs);
- the sysfs "remove" of a function and a bus rescan (edu);
- unbinding a PF bound to vfmediate whose VFs are open (igb);
- rmmod of each mediator module while it is attached and opened, and of
  vfmediate while a device is opened and closed: refused with EBUSY or
  EAGAIN while in use, done when not.

Every removal of a device held open must reach the user as a device
request (vfio's REQ eventfd), with accesses still in flight then (the
hammer counts them: the races overlapped); every scenario ends with the
module reference counts it began with and (conftest) a clean kernel log.
The guest is left as found: VF counts, bindings, no configfs directory,
the same modules loaded.

VFM_RACE_ITERS=N sets the number of removals per scenario (default 3,
2 under the debug kernel; the mediator unload scenarios run 2N rounds
of configfs changes, more until an rmmod racing them succeeded); VFM_RACE_LOOP=K the accesses per thread of
each open/close cycle (default 4).
"""
import errno
import os
import select
import subprocess
import threading
import time

import pytest

import pci
from budget import DEBUG_KERNEL
from policy import vfs_online
from vfm import DEVICES, Module, Vfm, purge, write_attr

VFM = "vfmediate"
ITERS = int(os.environ.get("VFM_RACE_ITERS", "2" if DEBUG_KERNEL else "3"))
LOOP = int(os.environ.get("VFM_RACE_LOOP", "4"))
THREADS = 3
TIMEOUT = 120 if DEBUG_KERNEL else 60
PAGE = 4096
ENABLE_SRIOV = "/sys/module/vfmediate/parameters/enable_sriov"
VF_TOKEN = "5a4b3c2d-1e0f-4a5b-8c7d-6e5f4a3b2c1d"
# kmod/mediators/ that can be attached, with their arguments (None: a
# window on BAR0's last page).
MEDIATORS = {"audit": "regions=config", "nop": None, "devread": None,
             "regshadow": None, "ondemand": None, "recorder": "hide-mmap"}
BUSY = (errno.EAGAIN, errno.EBUSY)
# What the hammer's accesses may fail with: EACCES from the churn's deny
# rule (applied live); nothing else.
ACCESS_ERRORS = {"EACCES"}
# What a configfs write racing a removal may fail with: EBUSY (apply:
# the configuration changed under it).
CHURN_ERRORS = {errno.EBUSY}

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "race", "hammer.c")
SRCS = [SRC, os.path.join(HERE, "attack", "common.c"),
        os.path.join(HERE, "attack", "common.h")]
BIN = os.path.join(HERE, "..", "build", "race", "hammer")


def hammer_binary():
    """tests/run-suite builds it on the host; build it here if not."""
    newest = max(os.path.getmtime(s) for s in SRCS)
    if not os.path.exists(BIN) or os.path.getmtime(BIN) < newest:
        os.makedirs(os.path.dirname(BIN), exist_ok=True)
        subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread",
                        "-o", BIN] + SRCS[:2], check=True)
    return BIN


def refcounts():
    """{module: refcnt} of ours and the VFIO modules we hold."""
    out = {}
    for m in sorted(os.listdir("/sys/module")):
        if m.startswith(VFM) or m.startswith("vfio"):
            try:
                out[m] = Module(m).refcnt
            except OSError:
                pass
    return out


def bar0_far(bdf):
    """The last page of BAR0: the churn's rules go there, away from the
    first page the hammer maps."""
    return pci.bar_sizes(bdf)[0] - PAGE


def sysfs_write(path, value):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def blocked_tasks():
    """The kernel's list of blocked tasks (sysrq w), for a hang's report."""
    kmsg = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    os.lseek(kmsg, 0, os.SEEK_END)
    sysfs_write("/proc/sysrq-trigger", "w")
    out = []
    while True:
        try:
            out.append(os.read(kmsg, 8192).decode(errors="replace")
                       .split(";", 1)[-1].rstrip())
        except BlockingIOError:
            break
    os.close(kmsg)
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
            if comm not in ("hammer", "python3"):
                continue
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/stack") as f:
                    out.append(f"{comm} {pid}/{tid}:\n{f.read()}")
        except (OSError, ValueError):
            pass
    return "\n".join(out)


def parse(line):
    """'req inflight=2 accesses=9 errors=[EACCES:1]' -> (word, {k: v})."""
    word, *rest = line.split()
    kv = dict(x.split("=", 1) for x in rest if "=" in x)
    errs = kv.pop("errors", "[]").strip("[]")
    kv["errors"] = dict(e.split(":") for e in errs.split(",")) if errs else {}
    return word, kv


class Hammer:
    """tests/race/hammer.c on one device; see its comment for the
    commands. Tallies what it reports."""

    def __init__(self, bdf, write_off=None, set_token=None, vf_token=None):
        self.bdf = bdf
        args = [hammer_binary()]
        if write_off is not None:
            args += ["-w", hex(write_off)]
        if set_token:
            args += ["-s", set_token]
        if vf_token:
            args += ["-t", vf_token]
        args += [bdf, str(THREADS), hex(bar0_far(bdf))]
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, bufsize=0)
        self.buf = b""
        self.held = 0           # opens that a removal found held
        self.reqs = 0           # device requests received
        self.overlapped = 0     # ... with an access in flight
        self.cycles = 0
        self.accesses = 0
        self.errors = {}
        self.looping = False
        self.loops = 0          # open/close loops started
        self.vanished = 0       # ... that the device vanished under

    def send(self, cmd):
        self.p.stdin.write(cmd.encode() + b"\n")

    def reply(self, timeout=TIMEOUT, during=None):
        """The next line; fails after @timeout s, or at once if the
        thread @during (see blocking()) failed."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            if during is not None and during.error is not None:
                raise during.error
            left = deadline - time.monotonic()
            assert left > 0, f"hammer {self.bdf}: no reply in {timeout} s\n" + \
                blocked_tasks()
            r, _, _ = select.select([self.p.stdout], [], [], min(left, 1))
            if not r:
                continue
            data = os.read(self.p.stdout.fileno(), 4096)
            assert data, f"hammer {self.bdf} died: exit {self.p.wait()}"
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        word, kv = parse(line.decode())
        self.accesses += int(kv.get("accesses", 0))
        for e, n in kv["errors"].items():
            self.errors[e] = self.errors.get(e, 0) + int(n)
        if word == "req":
            self.reqs += 1
            self.overlapped += int(kv["inflight"]) > 0
        self.cycles += int(kv.get("cycles", 0))
        self.reqs += int(kv.get("reqs", 0))
        kv["line"] = line.decode()
        return word, kv

    def open(self):
        """Open and hold; EINVAL or ERANGE (the churn's half-written rule
        or mediator arguments refused at open) is tried again."""
        for _ in range(1000):
            self.send("open")
            word, kv = self.reply()
            if kv["line"] not in ("open EINVAL", "open ERANGE"):
                break
        assert kv["line"] == "open ok", f"hammer {self.bdf}: {kv['line']}"
        self.held += 1

    def loop(self):
        """Start open/close cycles; True once the first one has made its
        accesses, False if the loop ended before (its line read)."""
        self.send(f"loop {LOOP}")
        word, kv = self.reply()
        self.looping = word == "looping"
        self.loops += 1
        return self.looping

    def stop(self):
        """End the loop (if it has not ended): its closing line."""
        self.send("stop")
        if not self.looping:
            return None
        self.looping = False
        word, kv = self.reply()
        assert word == "loop", f"hammer {self.bdf}: {kv['line']}"
        self.vanished += kv["end"] != "stop"
        return kv

    def close_device(self):
        self.send("close")
        word, kv = self.reply()
        assert word == "closed", f"hammer {self.bdf}: {kv['line']}"

    def kill(self):
        self.p.kill()
        self.p.wait()

    def close(self):
        self.p.stdin.close()
        assert self.p.wait(TIMEOUT) == 0, f"hammer {self.bdf} failed"
        assert set(self.errors) <= ACCESS_ERRORS, \
            f"hammer {self.bdf}: accesses failed: {self.errors}"


class Churn(threading.Thread):
    """Changes the configfs directories of @bdfs until stopped: a deny
    rule on BAR0's last page made and applied live (apply "revoke": the
    hammer maps only the first page), removed and applied again; every third round the directory is removed and made again
    (with @mediator attached, when given, and detached before)."""

    def __init__(self, bdfs, mediator=None, args=None, allowed=CHURN_ERRORS):
        super().__init__(daemon=True)
        self.bdfs = bdfs
        self.mediator, self.args = mediator, args
        self.allowed = allowed
        self.halt = threading.Event()
        self.rounds = 0
        self.steps = 0
        self.stepped = threading.Condition()
        self.unexpected = []

    def step(self, fn, *a):
        try:
            fn(*a)
        except OSError as e:
            if e.errno not in self.allowed:
                self.unexpected.append(f"{fn.__name__}{a}: {e}")
        with self.stepped:
            self.steps += 1
            self.stepped.notify_all()

    def wait_step(self, steps):
        """Wait until the churn has made a step after its @steps'th."""
        with self.stepped:
            self.stepped.wait_for(lambda: self.steps > steps or
                                  not self.is_alive(), TIMEOUT)

    def round(self, bdf, far):
        d = f"{DEVICES}/{bdf}"
        rule = f"{d}/regions/bar0/rules/far"
        if not os.path.isdir(d):
            self.step(os.mkdir, d)
            if self.mediator:
                self.step(write_attr, f"{d}/mediator", self.mediator)
                if self.args:
                    self.step(write_attr, f"{d}/mediator_args", self.args)
        self.step(os.mkdir, rule)
        self.step(write_attr, f"{rule}/range", f"{far:#x}+4")
        self.step(write_attr, f"{rule}/action", "deny")
        self.step(write_attr, f"{d}/apply", "revoke")
        self.step(os.rmdir, rule)
        self.step(write_attr, f"{d}/apply", "1")
        if self.rounds % 3 == 2:
            if self.mediator:
                self.step(write_attr, f"{d}/mediator", "")
                self.step(write_attr, f"{d}/apply", "1")
            self.step(os.rmdir, d)

    def run(self):
        fars = {b: bar0_far(b) for b in self.bdfs}
        while not self.halt.is_set():
            for b in self.bdfs:
                self.round(b, fars[b])
            self.rounds += 1

    def stop(self):
        self.halt.set()
        self.join(TIMEOUT)
        assert not self.is_alive(), "configfs churn hung"
        for b in self.bdfs:
            purge(b)
        assert not self.unexpected, "configfs writes failed:\n" + \
            "\n".join(self.unexpected[:20])
        assert self.rounds > 0


def blocking(fn, *args):
    """Run fn(*args) in a thread (a removal that waits for the user);
    returns the thread, whose .error is the exception fn raised."""
    def body():
        try:
            fn(*args)
        except BaseException as e:      # noqa: B036 (reported by wait())
            t.error = e
    t = threading.Thread(target=body, daemon=True)
    t.error = None
    t.start()
    return t


def wait(t, what):
    t.join(TIMEOUT)
    assert not t.is_alive(), \
        f"{what} did not complete in {TIMEOUT} s\n" + blocked_tasks()
    if t.error:
        raise t.error


def remove_while_busy(hammers, i, remove, after):
    """One round: the hammers hold the device open (even @i) or open and
    close it in a loop (odd @i) while @remove() runs; then @after()
    brings the devices back."""
    held = i % 2 == 0
    for h in hammers:
        if held:
            h.open()
        else:
            assert h.loop(), f"hammer {h.bdf}: no open/close loop"
    t = blocking(remove)
    if held:
        for h in hammers:
            word, kv = h.reply(during=t)
            assert word == "req", f"{h.bdf}: removed without a request: {kv['line']}"
    wait(t, "removal")
    if not held:
        for h in hammers:
            h.stop()
    after()


def report(what, hammers=(), churn=None, **counts):
    """One line of figures for the log (pytest -s shows it)."""
    parts = [f"{h.bdf}: held={h.held} requests={h.reqs} "
             f"overlapped={h.overlapped} loops={h.loops} "
             f"vanished={h.vanished} cycles={h.cycles} "
             f"accesses={h.accesses} errors={h.errors}" for h in hammers]
    if churn:
        parts.append(f"churn rounds={churn.rounds} steps={churn.steps}")
    parts += [f"{k}={v}" for k, v in counts.items()]
    print(f"\n{what}: iterations={ITERS}; " + "; ".join(parts))


def check_overlap(hammers):
    """Every removal of a held device asked for it, some with accesses in
    flight; some open/close loop saw its device vanish."""
    assert sum(h.vanished for h in hammers) > 0 or ITERS < 2, \
        "no open/close loop was running when its device went"
    for h in hammers:
        assert h.reqs >= h.held, f"{h.bdf}: {h.held} held, {h.reqs} requests"
        assert h.overlapped > 0, \
            f"{h.bdf}: no removal found an access in flight ({h.reqs} requests)"
        assert h.accesses > 0


@pytest.fixture
def baseline():
    """Module refcounts and configfs directories are as they were."""
    assert os.listdir(DEVICES) == [], "a configfs device directory was left over"
    before = refcounts()
    yield before
    for b in os.listdir(DEVICES):
        purge(b)
    after = refcounts()
    assert after == before, f"module refcounts {before} -> {after}"


# -- VFs removed ---------------------------------------------------------------


def test_vfs_removed_under_load(nvme_vfs, baseline):
    """sriov_numvfs=0 while both VFs are accessed, held open (even
    rounds) or opened and closed (odd rounds), and their configfs
    directories churned. (VFs have no sysfs "remove": the PCI core hides
    it; the next test removes a function that way.)"""
    pf = pci.physfn(nvme_vfs[0])
    n = pci.sriov_numvfs(pf)
    for b in nvme_vfs:
        pci.restore(b)
    hammers, churn = [], None

    def bind_all():
        pci.sriov_set_numvfs(pf, n)
        for b in nvme_vfs:
            pci.bind(b, VFM)

    def remove():
        pci.sriov_set_numvfs(pf, 0)

    try:
        for b in nvme_vfs:
            pci.bind(b, VFM)
        hammers = [Hammer(b) for b in nvme_vfs]
        churn = Churn(nvme_vfs)
        churn.start()
        for i in range(ITERS):
            remove_while_busy(hammers, i, remove, bind_all)
        churn.stop()
        for h in hammers:
            h.close()
        report("sriov_numvfs=0", hammers, churn)
        churn = None
        check_overlap(hammers)
    finally:
        if churn:
            churn.halt.set()
            churn.join(TIMEOUT)
        for h in hammers:
            h.kill()
        for b in nvme_vfs:
            if pci.exists(b):
                pci.restore(b)
        for b in nvme_vfs:
            purge(b)
        assert vfs_online(pf, n) == nvme_vfs


# -- sysfs remove and rescan ---------------------------------------------------


def test_remove_and_rescan_under_load(edu, baseline):
    """The sysfs "remove" of edu and a rescan of the bus, while edu is
    accessed (writes included), opened and closed, and its configfs
    directory churned."""
    h, churn = None, None

    def remove():
        sysfs_write(pci.dev_path(edu, "remove"), "1")

    def rescan():
        sysfs_write("/sys/bus/pci/rescan", "1")
        pci.bind(edu, VFM)

    try:
        pci.bind(edu, VFM)
        h = Hammer(edu, write_off=0x04)
        churn = Churn([edu])
        churn.start()
        for i in range(ITERS):
            remove_while_busy([h], i, remove, rescan)
        churn.stop()
        h.close()
        report("remove+rescan", [h], churn)
        churn = None
        check_overlap([h])
    finally:
        if churn:
            churn.halt.set()
            churn.join(TIMEOUT)
        if h:
            h.kill()
        if not pci.exists(edu):
            sysfs_write("/sys/bus/pci/rescan", "1")
        pci.restore(edu)
        purge(edu)


# -- a PF unbound under its open VFs -------------------------------------------


@pytest.mark.skipif(DEBUG_KERNEL, reason=(
    "lockdep: vfio-pci-core's sriov_configure takes a new VF's device set "
    "lock under the PF's memory_lock, its runtime resume the reverse (any "
    "earlier open records that); upstream's, as with vfio-pci"))
def test_pf_unbound_under_load(igb, baseline):
    """igb's PF bound to vfmediate with two VFs (bound to vfmediate by
    the driver_override vfio-pci-core gives them); the PF unbound while
    it and its VFs are accessed, opened and closed and configfs churned.
    Unbinding disables SR-IOV first: the VFs go, then the PF."""
    pf = igb
    drv = pci.driver(pf)
    with open(ENABLE_SRIOV) as f:
        old_param = f.read().strip()
    with open(pci.dev_path(pf, "sriov_drivers_autoprobe")) as f:
        autoprobe = f.read().strip()
    hammers, churn = [], None

    def bind_all():
        pci.bind(pf, VFM)
        return pci.sriov_set_numvfs(pf, 2, autoprobe=True)

    def unbind():
        sysfs_write(pci.dev_path(pf, "driver", "unbind"), pf)

    try:
        sysfs_write(ENABLE_SRIOV, "1")
        vfs = bind_all()
        assert len(vfs) == 2 and all(pci.driver(v) == VFM for v in vfs)
        hammers = [Hammer(pf, set_token=VF_TOKEN)] + \
            [Hammer(b, vf_token=VF_TOKEN) for b in vfs]
        churn = Churn([pf] + vfs)
        churn.start()
        for i in range(ITERS):
            remove_while_busy(hammers, i, unbind, bind_all)
        churn.stop()
        for h in hammers:
            h.close()
        report("PF unbind", hammers, churn)
        churn = None
        check_overlap(hammers)
    finally:
        if churn:
            churn.halt.set()
            churn.join(TIMEOUT)
        for h in hammers:
            h.kill()
        if pci.driver(pf) == VFM:
            pci.sriov_set_numvfs(pf, 0)
        pci.restore(pf)
        sysfs_write(pci.dev_path(pf, "sriov_drivers_autoprobe"), autoprobe)
        sysfs_write(ENABLE_SRIOV, "1" if old_param in ("Y", "1") else "0")
        for b in [pf] + pci.vfs(pf):
            purge(b)
        if drv:
            pci.bind(pf, drv)
            pci.set_override(pf, None)


# -- rmmod during attach and open ----------------------------------------------


def unload_until(mod, done):
    """delete_module(@mod) in a loop until done() says so: {errno: count}
    (ENOENT: it was not loaded)."""
    out = {}
    deadline = time.monotonic() + TIMEOUT
    while not done():
        assert time.monotonic() < deadline, f"rmmod {mod.name}: {out}"
        e = mod.unload()
        out[e] = out.get(e, 0) + 1
    return out


@pytest.mark.parametrize("name", sorted(MEDIATORS))
def test_rmmod_mediator_during_attach_and_open(edu, name, baseline):
    """rmmod vfmediate_<name> refused (EBUSY/EAGAIN) while the mediator
    is attached or the device open with it, done when neither; then in a
    loop while the mediator is attached, detached (and demand-loaded
    again), applied live, its directory removed and made again, and the
    device opened and closed, all at once."""
    mod = Module(f"vfmediate_{name}")
    was_loaded = mod.loaded
    h, churn = None, None
    try:
        pci.bind(edu, VFM)
        args = MEDIATORS[name] or f"bar=0,range={bar0_far(edu):#x}+8"
        h = Hammer(edu, write_off=0x04)
        with Vfm(edu, mediator=name, args=args):
            assert mod.unload() in BUSY
            h.open()
            assert mod.unload() in BUSY
            h.close_device()
        assert mod.unload() == 0 and not mod.loaded

        # ENOENT: the mediator went between its demand-load and the
        # attach, or none is attached for the arguments
        churn = Churn([edu], mediator=name, args=args,
                      allowed=CHURN_ERRORS | {errno.ENOENT})
        assert h.loop()
        churn.start()
        outcomes = {}
        # one rmmod racing each step of the churn, for 2N rounds and
        # until one has been refused and one done (up to 20N rounds: a
        # window without the mediator opens only when the churn detaches
        # it, and a loaded guest can hold this thread back while the
        # churn runs through rounds)
        while churn.is_alive() and churn.rounds < 20 * ITERS and \
                (churn.rounds < 2 * ITERS or not outcomes.get(0) or
                 not any(outcomes.get(e) for e in BUSY)):
            steps = churn.steps
            e = mod.unload()
            outcomes[e] = outcomes.get(e, 0) + 1
            churn.wait_step(steps)
        churn.stop()
        kv = h.stop()
        assert kv and kv["end"] == "stop", f"the open/close loop ended: {kv}"
        h.close()
        report(f"rmmod {mod.name}", [h], churn, rmmod=outcomes)
        churn = None
        assert set(outcomes) <= {0, errno.ENOENT, *BUSY}, \
            f"rmmod {mod.name}: {outcomes}"
        assert outcomes.get(0, 0) > 0 and \
            sum(outcomes.get(e, 0) for e in BUSY) > 0, \
            f"rmmod {mod.name}: {outcomes}: not both refused and done"
        assert h.cycles > 0
        if mod.loaded:          # nothing uses it any more: it goes
            assert mod.unload() == 0
    finally:
        if churn:
            churn.halt.set()
            churn.join(TIMEOUT)
        if h:
            h.kill()
        purge(edu)
        pci.restore(edu)
        if was_loaded and not mod.loaded:
            mod.load()
        elif not was_loaded and mod.loaded:
            mod.unload()


def test_rmmod_vfmediate_during_open(edu, baseline):
    """rmmod vfmediate refused (EBUSY/EAGAIN) while a device is open or
    a configfs directory exists, done when neither (the device is
    unbound); then in a loop while edu is opened and closed: every
    attempt refused or done, and after each success vfmediate is loaded
    and edu bound again."""
    core = Module(VFM)
    mediators = [m for m in os.listdir("/sys/module")
                 if m.startswith(VFM + "_")]
    h = None

    def reload():
        pci.modprobe(VFM)
        pci.bind(edu, VFM)

    try:
        for m in mediators:         # they hold vfmediate
            assert Module(m).unload() == 0, f"{m} in use"
        assert core.refcnt == 0, "vfmediate in use before the test"
        pci.bind(edu, VFM)
        h = Hammer(edu, write_off=0x04)
        h.open()
        assert core.unload() in BUSY
        h.close_device()
        with Vfm(edu):
            assert core.unload() in BUSY
        assert core.unload() == 0 and not core.loaded
        assert pci.driver(edu) is None
        reload()

        outcomes = {}
        for i in range(ITERS):
            assert h.loop()
            for e, n in unload_until(core, lambda: not core.loaded).items():
                outcomes[e] = outcomes.get(e, 0) + n
            assert pci.driver(edu) is None
            h.stop()
            reload()
        h.close()
        report("rmmod vfmediate", [h], rmmod=outcomes)
        assert set(outcomes) <= {0, *BUSY}, f"rmmod vfmediate: {outcomes}"
        assert outcomes[0] == ITERS
        assert sum(outcomes.get(e, 0) for e in BUSY) > 0, \
            f"rmmod vfmediate: {outcomes}: never refused, never raced an open"
    finally:
        if h:
            h.kill()
        if not core.loaded:
            pci.modprobe(VFM)
        pci.restore(edu)
        for m in mediators:
            if not Module(m).loaded:
                Module(m).load()
