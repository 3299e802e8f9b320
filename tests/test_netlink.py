# SPDX-License-Identifier: GPL-2.0
"""The "vfmediate" generic netlink family (include/uapi/linux/vfmediate.h),
checked against the configfs truth: device and mediator dumps, rule
statistics (one region's rules spread over several messages), the
"monitor" group's events in order with exact counts, the per-rule rate
limit under a two-thread flood, strict request validation, and who may
listen (CAP_NET_ADMIN only) or read (anyone).

Numbers of commands and attributes come from the uAPI header itself
(tests/lib/vfmnl.py parses it).
"""
import os
import subprocess
import sys
import threading
import time

import pytest

import vfm
from vfio import BAR0, Device
from vfm import Vfm
from vfmnl import (ACTION, CMD, DEV, A, Nl, NlError, attr, attr_str,
                   stats)

VFM = "vfmediate"
EDU_ID, EDU_LIVE, EDU_FACT = 0x00, 0x04, 0x08
ABSENT_BDF = "0000:7e:1f.7"     # no such function in the guest
BURST = 10                      # events.c VFM_EV_BURST, per rule and second
LIB = os.path.join(os.path.dirname(__file__), "lib")


pytestmark = pytest.mark.usefixtures("no_config_left")


@pytest.fixture
def nl():
    with Nl() as n:
        yield n


def dev_msg(nl, bdf):
    return nl.do(CMD.DEV_GET, {A.DEV_NAME: bdf})


def dumped(nl):
    return {m.str(A.DEV_NAME): m for m in nl.dump(CMD.DEV_GET)}


def mine(events, bdf):
    return [e for e in events if e.str(A.DEV_NAME) == bdf]


# -- requests: validation ------------------------------------------------------

def test_family_and_monitor_group(nl):
    assert nl.family_id > 0
    assert "monitor" in nl.groups


@pytest.mark.parametrize("attrs, why", [
    ({}, "a device name is required"),
    ({A.DEV_NAME: "0000:00:04.0" + "0" * 30}, ""),      # too long
    ({A.DEV_NAME: b"0000:00:04.0"}, ""),                 # no NUL
    ({A.DEV_NAME: "x", A.HITS: (1).to_bytes(8, "little")}, ""),  # not ours
    ({A.PAD: b""}, ""),
], ids=["missing", "too-long", "unterminated", "extra-attr", "pad"])
def test_dev_get_refuses_bad_requests(nl, attrs, why):
    with pytest.raises(NlError) as e:
        nl.do(CMD.DEV_GET, attrs)
    assert e.value.errno == 22, e.value
    if why:
        assert e.value.msg == why


def test_reserved_header_field_refused(nl):
    with pytest.raises(NlError) as e:
        nl.dump(CMD.DEV_GET, reserved=1)
    assert e.value.errno == 22


def test_unknown_command_refused(nl):
    with pytest.raises(NlError) as e:
        nl.do(CMD.EVENT)
    assert e.value.errno == 95     # EOPNOTSUPP: EVENT is kernel-sent only


def test_unknown_device_and_mediator(nl):
    with pytest.raises(NlError) as e:
        dev_msg(nl, ABSENT_BDF)
    assert e.value.errno == 19 and "no such device" in e.value.msg
    with pytest.raises(NlError) as e:
        nl.do(CMD.MED_GET, {A.MED_NAME: "no-such-mediator"})
    assert e.value.errno == 2
    with pytest.raises(NlError) as e:
        nl.dump(CMD.STATS_GET, {A.DEV_NAME: ABSENT_BDF})
    assert e.value.errno == 19


# -- DEV_GET and MED_GET against configfs ----------------------------------------

def check_dev(m, v: Vfm, configured=True):
    state = {"absent": DEV.ABSENT, "bound": DEV.BOUND, "open": DEV.OPEN}
    assert m.str(A.DEV_NAME) == v.bdf
    assert m.u8(A.DEV_STATE) == state[v.state]
    assert m.u8(A.DEV_CONFIGURED) == configured
    assert m.u64(A.DEV_GENERATION) == v.generation
    assert m.u8(A.DEV_PENDING) == v.pending
    assert m.str(A.DEV_ERROR) == v.error
    assert m.str(A.DEV_WARNING) == v.read("warning")
    assert m.u64(A.DEV_TABLE_BYTES) == int(v.read("table_bytes"))
    med = v.mediator
    assert m.str(A.MED_NAME) == (med or None)
    assert m.str(A.MED_ARGS) == (v.mediator_args if med else None)


def test_dev_get_follows_configfs(nl, edu_vfm):
    bdf = edu_vfm
    d = dev_msg(nl, bdf)                       # bound, no configuration
    assert d.u8(A.DEV_STATE) == DEV.BOUND and d.u8(A.DEV_CONFIGURED) == 0
    assert d.str(A.MED_NAME) is None
    assert bdf in dumped(nl)
    with Vfm(bdf, mediator="audit", args="regions=bar0") as v:
        v.add_rule("bar0", "id", f"{EDU_ID:#x}-{EDU_ID + 3:#x}", "ro")
        check_dev(dev_msg(nl, bdf), v)
        with Device(bdf):
            check_dev(dev_msg(nl, bdf), v)
            assert v.generation > 0
            v.rule("bar0", "id").write("action", "deny")   # staged
            assert v.pending
            check_dev(dev_msg(nl, bdf), v)
            check_dev(dumped(nl)[bdf], v)
        check_dev(dev_msg(nl, bdf), v)
    with Vfm(ABSENT_BDF) as v:
        check_dev(dev_msg(nl, ABSENT_BDF), v)
        assert dev_msg(nl, ABSENT_BDF).u8(A.DEV_STATE) == DEV.ABSENT


def test_dev_dump_lists_every_device_once(nl, edu_vfm):
    # more than one skb of a dump holds
    made = [f"0000:{0x70 + i // 32:02x}:{i % 32:02x}.0" for i in range(160)]
    try:
        for b in made:
            os.mkdir(f"{vfm.DEVICES}/{b}")
        names = [m.str(A.DEV_NAME) for m in nl.dump(CMD.DEV_GET)]
        assert sorted(names) == sorted(set(names))
        assert set(made) | {edu_vfm} <= set(names)
    finally:
        for b in made:
            vfm.purge(b)


def test_med_get_follows_configfs(nl, edu_vfm):
    with Vfm(edu_vfm, mediator="nop"):
        meds = {m.str(A.MED_NAME): m for m in nl.dump(CMD.MED_GET)}
        assert set(meds) == set(vfm.mediators())
        for name, m in meds.items():
            info = vfm.mediator_info(name)
            assert m.str(A.MED_MODULE) == info["module"]
            assert m.u32(A.MED_USERS) == int(info["users"])
        assert meds["nop"].u32(A.MED_USERS) >= 1
        one = nl.do(CMD.MED_GET, {A.MED_NAME: "nop"})
        assert one.u32(A.MED_USERS) == meds["nop"].u32(A.MED_USERS)


# -- STATS_GET --------------------------------------------------------------------

def test_stats_count_hits_bytes_refusals(nl, edu_vfm):
    bdf = edu_vfm
    with Vfm(bdf) as v:
        v.add_rule("bar0", "id", f"{EDU_ID:#x}-{EDU_ID + 3:#x}", "pass",
                   audit=1)
        v.add_rule("bar0", "live", f"{EDU_LIVE:#x}-{EDU_LIVE + 3:#x}", "ro")
        v.add_rule("bar0", "fact", f"{EDU_FACT:#x}-{EDU_FACT + 3:#x}",
                   "deny")
        with Device(bdf) as dev:
            for _ in range(7):
                dev.read32(BAR0, EDU_ID)
            for _ in range(5):
                dev.read32(BAR0, EDU_LIVE)
                with pytest.raises(OSError):
                    dev.write32(BAR0, EDU_LIVE, 1)
            for _ in range(3):
                with pytest.raises(OSError):
                    dev.read32(BAR0, EDU_FACT)
        s = stats(nl, bdf)
        assert set(s) == {(bdf, "bar0")}
        rules = s[(bdf, "bar0")]["rules"]

        def counts(name):
            r = rules[name]
            return r.u64(A.HITS), r.u64(A.BYTES), r.u64(A.REFUSED)
        assert counts("id") == (7, 28, 0)
        assert counts("live") == (10, 40, 5)
        assert counts("fact") == (3, 12, 3)
        for name in ("id", "live", "fact"):
            assert rules[name].u64(A.HITS) == v.rule("bar0", name).hits
        live = rules["live"]
        assert live.u8(A.RULE_ACTION) == ACTION.RO
        assert (live.u64(A.RULE_START), live.u64(A.RULE_END)) == (4, 8)
        assert live.u8(A.RULE_AUDIT) == 0 and rules["id"].u8(A.RULE_AUDIT) == 1
        assert s[(bdf, "bar0")]["sums"] == {
            ACTION.PASS: (7, 28, 0), ACTION.RO: (10, 40, 5),
            ACTION.DENY: (3, 12, 3)}
        # the same through the dump of every device
        assert stats(nl)[(bdf, "bar0")]["sums"] == s[(bdf, "bar0")]["sums"]


def test_stats_of_many_rules_span_messages(nl, edu_vfm):
    """600 rules do not fit one message: every one still comes, once."""
    n = 600
    with Vfm(edu_vfm) as v:
        base = v.region_path("bar0", "rules")
        for i in range(n):
            os.mkdir(f"{base}/r{i:04d}")
            vfm.write_attr(f"{base}/r{i:04d}/range",
                           f"{0x1000 + 8 * i:#x}-{0x1000 + 8 * i + 7:#x}")
        try:
            msgs = nl.dump(CMD.STATS_GET, {A.DEV_NAME: edu_vfm})
            assert len(msgs) > 1
            s = stats(nl, edu_vfm)[(edu_vfm, "bar0")]
            assert sorted(s["rules"]) == [f"r{i:04d}" for i in range(n)]
            # fresh rules deny until told otherwise, and count nothing yet
            assert s["sums"] == {ACTION.DENY: (0, 0, 0)}
        finally:
            for i in range(n):
                os.rmdir(f"{base}/r{i:04d}")


# -- the monitor group ------------------------------------------------------------

def test_monitor_lifecycle_in_order(nl, edu, bind):
    nl.subscribe()
    bind(edu, VFM)
    with Vfm(edu, mediator="nop") as v:
        v.add_rule("bar0", "id", f"{EDU_ID:#x}-{EDU_ID + 3:#x}", "pass",
                   audit=1)
        with Device(edu) as dev:
            gen = v.generation
            assert dev.read32(BAR0, EDU_ID + 0) == 0x010000ED
        v.mediator = "audit"
    got = mine(nl.events(timeout=1.5, first=60), edu)
    kinds = [e.event() for e in got]
    assert kinds == ["bound", "med_attached", "config_applied", "opened",
                     "access_audited", "closed", "med_detached",
                     "med_attached", "med_detached"], kinds
    assert [e.str(A.MED_NAME) for e in got
            if e.event().startswith("med_")] == ["nop", "nop", "audit",
                                                  "audit"]
    assert got[2].u64(A.DEV_GENERATION) == gen == got[3].u64(
        A.DEV_GENERATION)
    acc = got[4]
    assert acc.str(A.REGION_NAME) == "bar0" and acc.u32(A.REGION_INDEX) == 0
    assert (acc.u64(A.OFFSET), acc.u32(A.SIZE), acc.u8(A.WRITE)) == (0, 4, 0)
    assert acc.str(A.RULE_NAME) == "id" and acc.u64(A.SUPPRESSED) == 0
    assert acc.u8(A.RULE_ACTION) == ACTION.PASS
    assert acc.u32(A.PID) == os.getpid()
    with open("/proc/self/comm") as f:
        assert acc.str(A.COMM) == f.read().strip()


def test_monitor_reports_refused_open(nl, edu_vfm):
    nl.subscribe()
    with Vfm(edu_vfm) as v:
        os.mkdir(v.region_path("bar0", "rules", "half"))   # no range
        try:
            with pytest.raises(OSError):
                Device(edu_vfm)
            err = v.error
        finally:
            os.rmdir(v.region_path("bar0", "rules", "half"))
    got = mine(nl.events(timeout=1.5, first=60), edu_vfm)
    assert [e.event() for e in got] == ["config_refused"]
    assert got[0].u32(A.ERRNO) == 22
    assert got[0].str(A.DEV_ERROR) == err == "bar0/rules/half: no range"


def flood(dev, n, off, write, threads=2):
    def run(k):
        for _ in range(k):
            try:
                if write:
                    dev.write32(BAR0, off, 0)
                else:
                    dev.read32(BAR0, off)
            except OSError:
                pass
    ts = [threading.Thread(target=run, args=(n // threads,))
          for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def refusals_until(nl, bdf, n, wait=60, quiet=1.5):
    """@bdf's access_refused events until they account for @n accesses
    (the summary of what was suppressed comes from a work item after the
    window: up to @wait s on a loaded guest), then any that follow within
    @quiet s: there should be none."""
    got = []
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0 and \
            sum(1 + e.u64(A.SUPPRESSED) if e.has(A.OFFSET) else
                e.u64(A.SUPPRESSED) for e in got) < n:
        e = nl.event(timeout=left)
        if e and e.str(A.DEV_NAME) == bdf and e.event() == "access_refused":
            got.append(e)
    return got + [e for e in mine(nl.events(timeout=quiet), bdf)
                  if e.event() == "access_refused"]


def test_monitor_rate_limit_accounts_for_every_access(nl, edu_vfm):
    """Two threads make 6000 refused accesses: a handful of events reach
    the listener, and they account for every access, exactly."""
    n = 6000
    nl.subscribe()
    with Vfm(edu_vfm) as v:
        v.add_rule("bar0", "fact", f"{EDU_FACT:#x}-{EDU_FACT + 3:#x}",
                   "deny")
        with Device(edu_vfm) as dev:
            t0 = time.monotonic()
            flood(dev, n, EDU_FACT, write=False)
            secs = time.monotonic() - t0
            got = refusals_until(nl, edu_vfm, n)
        assert v.rule("bar0", "fact").hits == n
    single = [e for e in got if e.has(A.OFFSET)]
    summaries = [e for e in got if not e.has(A.OFFSET)]
    assert len(single) + sum(e.u64(A.SUPPRESSED) for e in got) == n
    # at most BURST records per rule and second, plus racing window starts
    assert len(single) <= (BURST + 2) * (int(secs) + 2), (len(single), secs)
    # A summary comes exactly when suppressed accesses were left that no
    # later record carried: nearly always, unless the flood was so slow
    # (a loaded debug kernel) that its last window held none.
    carried = sum(e.u64(A.SUPPRESSED) for e in single)
    assert bool(summaries) == (len(single) + carried < n), (single, summaries)
    assert len(summaries) <= int(secs) + 3
    assert all(e.str(A.RULE_NAME) == "fact" for e in got)


def test_no_listener_costs_no_event(edu_vfm):
    """Events queued while no one listens would flood the next listener."""
    with Vfm(edu_vfm) as v:
        v.add_rule("bar0", "fact", f"{EDU_FACT:#x}-{EDU_FACT + 3:#x}",
                   "deny")
        with Device(edu_vfm) as dev:
            flood(dev, 200, EDU_FACT, write=False, threads=1)
            with Nl() as nl:
                nl.subscribe()
                with pytest.raises(OSError):
                    dev.read32(BAR0, EDU_FACT)
                got = mine(nl.events(timeout=1.5, first=60), edu_vfm)
    assert [(e.event(), e.u64(A.SUPPRESSED)) for e in got] == [
        ("access_refused", 0)]


def test_listeners_come_and_go(edu_vfm):
    """The access path keeps whether anyone listens (netlink.c): listeners
    joining, leaving, closing, and leaves of groups never joined must not
    make a listener miss an event."""
    with Vfm(edu_vfm) as v:
        v.add_rule("bar0", "fact", f"{EDU_FACT:#x}-{EDU_FACT + 3:#x}",
                   "deny")
        with Device(edu_vfm) as dev, Nl() as a:

            def refused_once(*listeners):
                """One refused access: each listener hears it once."""
                with pytest.raises(OSError):
                    dev.read32(BAR0, EDU_FACT)
                for n in listeners:
                    got = [e for e in
                           mine(n.events(timeout=1.2, first=60), edu_vfm)
                           if e.has(A.OFFSET)]
                    assert len(got) == 1, got

            a.subscribe()
            refused_once(a)
            with Nl() as b:                 # a second one joins, leaves
                b.subscribe()
                refused_once(a, b)
                b.unsubscribe()
            refused_once(a)
            with Nl() as c:                 # one joins and closes
                c.subscribe()
            refused_once(a)
            with Nl() as d:                 # leaves a group it never joined
                d.unsubscribe()
            refused_once(a)
            a.unsubscribe()
            with pytest.raises(OSError):
                dev.read32(BAR0, EDU_FACT)  # no one: nothing queued
            a.subscribe()
            refused_once(a)                 # the first access after joining


UNPRIV = f"""
import sys
sys.path.insert(0, {LIB!r})
from vfmnl import Nl, CMD
with Nl() as nl:
    nl.dump(CMD.DEV_GET)
    nl.dump(CMD.MED_GET)
    try:
        nl.subscribe()
    except PermissionError:
        print("refused")
    else:
        print("joined")
"""


@pytest.mark.parametrize("drop", [
    ["--reuid", "65534", "--regid", "65534", "--clear-groups"],
    ["--inh-caps", "-net_admin", "--bounding-set", "-net_admin"],
], ids=["nobody", "root-without-net-admin"])
def test_monitor_needs_net_admin_reads_do_not(drop):
    out = subprocess.run(["setpriv", *drop, "--", sys.executable, "-c",
                          UNPRIV], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "refused"


def test_requests_with_raw_attributes(nl, edu_vfm):
    """A name attribute of the right type but not NUL-terminated within
    its maximum, and a nested attribute where a string goes."""
    with pytest.raises(NlError) as e:
        nl.request(CMD.DEV_GET, raw=attr(A.DEV_NAME, b"a" * 40 + b"\0"))
    assert e.value.errno == 22
    with pytest.raises(NlError) as e:
        nl.request(CMD.MED_GET, raw=attr(A.MED_NAME | 0x8000,
                                         attr_str(A.MED_NAME, "nop")))
    assert e.value.errno == 22
