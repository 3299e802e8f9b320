# SPDX-License-Identifier: GPL-2.0
"""Random rules and random accesses against a model of the documented
semantics (vfmediate-configfs(5), OVERLAPS, ACTIONS, HIT COUNTERS, MMAP)
and of edu's registers.

Each round writes a random set of rules on edu's BAR0, attaches one of
the test-only recorder mediators (kmod/mediators/recorder.c: read, write
and observe; read and observe; observe only) and opens the device; every
access is compared with the model: result, errno, bytes read, the state
of the device's registers afterwards, which path of the mediator took
each trapped piece (its read or write handler, or vfio-pci-core and its
observe hook, from the recorder's log) and every rule's hit count. Then
it reopens without a change (the compiled rules are reused) and after a
staged change (compiled again) and compares again; the region info and
the mmap of BAR0 are checked against the rules and the mediator's
region_info and mmap hooks each round.

The accesses go where the actions differ visibly:
- edu's registers, 4 bytes at a time: 0x00 (ID), 0x04 (reads back the
  bitwise NOT of what was written), 0x08 (factorial of what was written;
  the test waits on edu's status register, which no rule covers, until
  it is computed), 0x80, 0x88, 0x90 (DMA source, destination, count:
  read back what was written, as no DMA command is ever given) and
  offsets edu does not decode between them (all ones, writes dropped).
  A passed write changes the register, ro refuses it, ignore drops it,
  a trapped write reaches it through the recorder's write handler
  changed (bit 0 flipped) or unchanged through vfio-pci-core; a trapped
  read through the read handler comes back with every byte's top bit
  flipped.
- a crowded window that edu does not decode (0x1000 and up: all ones),
  4 or 8 bytes at 4-byte alignment, where rules overlap and split
  accesses; with 4-byte rule granularity every piece of a split access
  is one the device takes.

Seeded (SEED): a failure prints the round and the rules, and reruns the
same way. How the test was checked to fail: each of these changes to the
model's expectation, made one at a time, failed it: ignore reading the
device, ro letting writes through, trapped reads not changed by the read
handler, the write handler's change not reaching the register (round 3:
a DMA register read back), the write handler's path taken as observe.
"""
import errno
import math
import random
import time

import pytest

import recorder
from budget import scaled
from policy import mmap_areas
from vfio import BAR0, Device, VfioError
from vfm import Vfm

SEED = 20261126
ROUNDS = scaled(6, minimum=2)
ACCESSES = scaled(300, minimum=60)
BAR_SIZE = 1 << 20
PAGE = 4096
ACTIONS = ["pass", "ro", "deny", "ignore", "trap"]
MEDIATORS = ["recorder", "recorder-rd", "recorder-obs"]
MED_ARGS = ["", "", "hide-mmap", "veto-mmap"]

# edu's registers: rules go anywhere in REGS_WINDOW but on the status
# register (read to wait for a factorial); accesses only at REG_OFFSETS.
EDU_ID, EDU_LIVE, EDU_FACT, EDU_STATUS = 0x00, 0x04, 0x08, 0x20
EDU_DMA = (0x80, 0x88, 0x90)
REGS_WINDOW = (0x00, 0xA0)
STATUS = (0x20, 0x28)
REG_OFFSETS = [0x00, 0x04, 0x08, 0x0C, 0x10, 0x40, 0x7C,
               0x80, 0x84, 0x88, 0x8C, 0x90, 0x94]
WINDOW = (0x1000, 0x1100)           # crowded, not decoded: rules overlap
ALL_ONES = 0xFFFFFFFF


class Edu:
    """The registers the test writes, as edu keeps them (hw/misc/edu.c),
    for 4-byte accesses."""

    def __init__(self):
        """As init_registers() leaves them: 0 written to each."""
        self.regs = {EDU_LIVE: 0, EDU_FACT: 0, **{o: 0 for o in EDU_DMA}}
        for off in self.regs:
            self.write(off, 0)

    def read(self, off: int) -> int:
        if off == EDU_ID:
            return 0x010000ED
        if off == EDU_LIVE:
            return ~self.regs[EDU_LIVE] & ALL_ONES
        return self.regs.get(off, ALL_ONES)

    def write(self, off: int, value: int) -> None:
        if off == EDU_FACT:
            value = math.factorial(value) & ALL_ONES
        if off in self.regs:
            self.regs[off] = value

    def read_bytes(self, off: int, size: int) -> bytes:
        return b"".join(self.read(o).to_bytes(4, "little")
                        for o in range(off, off + size, 4))

    def write_bytes(self, off: int, data: bytes) -> None:
        for i in range(0, len(data), 4):
            self.write(off + i, int.from_bytes(data[i:i + 4], "little"))


class Rule:
    def __init__(self, name, start, end, access, action, audit):
        self.name, self.start, self.end = name, start, end
        self.access, self.action, self.audit = access, action, audit
        self.hits = 0

    def covers(self, off, write):
        return (self.start <= off < self.end and
                ("w" if write else "r") in self.access)

    @property
    def counts(self):
        return self.action != "pass" or self.audit

    def range(self):
        return f"{self.start:#x}-{self.end - 1:#x}"

    def __str__(self):
        return (f"{self.name} {self.range()} {self.access} {self.action}"
                f"{' audit' if self.audit else ''}")


def winner(rules, off, write):
    """The rule handling byte @off: the shortest covering range, then the
    first name."""
    cover = [r for r in rules if r.covers(off, write)]
    return min(cover, key=lambda r: (r.end - r.start, r.name), default=None)


def pieces(owners, off):
    """(start, size, rule) runs of bytes with the same rule."""
    out = []
    for i, o in enumerate(owners):
        if out and out[-1][2] is o:
            s, n, _ = out[-1]
            out[-1] = (s, n + 1, o)
        else:
            out.append((off + i, 1, o))
    return out


class Model:
    def __init__(self, mediator):
        self.edu = Edu()
        self.mediator = mediator

    def access(self, rules, off, data, size, write):
        """(errno or None, bytes read or None, recorder entries); counts
        the rules' hits and updates the device."""
        owners = [winner(rules, off + i, write) for i in range(size)]
        for r in {id(o): o for o in owners if o}.values():
            if r.counts:
                r.hits += 1
        actions = [o.action if o else "pass" for o in owners]
        if "deny" in actions:
            return errno.EACCES, None, []
        if write and "ro" in actions:
            return errno.EPERM, None, []
        out, log = b"", []
        for start, n, rule in pieces(owners, off):
            action = rule.action if rule else "pass"
            path = recorder.path(self.mediator, write)
            if action == "trap":
                log.append((path, BAR0, start, n, n))
            chunk = data[start - off:start - off + n] if write else None
            if write and action == "ignore":
                continue
            if write:
                if path == "write" and action == "trap":
                    chunk = recorder.write_bytes(start, chunk)
                self.edu.write_bytes(start, chunk)
                continue
            got = self.edu.read_bytes(start, n)
            if action == "ignore":
                got = bytes(n)
            elif action == "trap" and path == "read":
                got = recorder.read_bytes(got)
            out += got
        return None, (None if write else out), log


def clip_status(start, end):
    """A rule range that keeps off edu's status register."""
    if start < STATUS[1] and end > STATUS[0]:
        return (start, STATUS[0]) if start < STATUS[0] else \
            (max(start, STATUS[1]), max(end, STATUS[1] + 4))
    return start, end


def random_rules(rng):
    spans = []
    for _ in range(rng.randrange(3, 10)):
        start = rng.randrange(*REGS_WINDOW, 4)
        spans.append(clip_status(start, min(REGS_WINDOW[1],
                                            start + 4 * rng.randrange(1, 8))))
    for _ in range(rng.randrange(3, 10)):
        start = rng.randrange(*WINDOW, 4)
        spans.append((start, min(WINDOW[1], start + 4 * rng.randrange(1, 16))))
    for _ in range(rng.randrange(0, 6)):
        start = rng.randrange(0x2000, BAR_SIZE - 0x100, 4)
        spans.append((start, start + 4 * rng.randrange(1, 32)))
    if rng.random() < 0.3:          # one over the crowded window and more
        spans.append((0x1000, 0x3000))
    return [Rule(f"r{rng.randrange(100):02d}{i:02d}", s, e,
                 rng.choice(["r", "w", "rw", "rw"]),
                 rng.choice(ACTIONS), rng.choice([0, 0, 1]))
            for i, (s, e) in enumerate(spans) if e > s]


def random_access(rng, rules):
    """(offset, size, write, data)."""
    k = rng.random()
    far = [r for r in rules if r.start >= WINDOW[0]]
    if k < 0.45:
        off, size = rng.choice(REG_OFFSETS), 4
    elif k < 0.8:
        off = rng.randrange(WINDOW[0] - 8, WINDOW[1] + 8, 4)
        size = rng.choice([4, 8])
    elif k < 0.9 and far:
        r = rng.choice(far)
        off = rng.randrange(max(WINDOW[0], r.start - 8), r.end + 8, 4)
        size = rng.choice([4, 8])
    else:
        off, size = rng.randrange(0x1000, BAR_SIZE - 8, 4), rng.choice([4, 8])
    write = rng.random() < 0.45
    if off == EDU_FACT:         # small: a factorial edu computes at once
        data = rng.randrange(0, 11).to_bytes(4, "little")
    else:
        data = rng.randbytes(size)
    return off, size, write, data


def wait_factorial(dev):
    """edu computes a factorial in a thread: wait for its status bit."""
    deadline = time.monotonic() + 10
    while dev.read32(BAR0, EDU_STATUS) & 0x1:
        assert time.monotonic() < deadline, "edu never computed"


def do_access(dev, off, size, write, data):
    try:
        if write:
            got = dev.pwrite(BAR0, off, data)
            assert got == size, f"short write {off:#x}+{size}: {got}"
            return None, None
        return None, dev.pread(BAR0, off, size)
    except VfioError as e:
        return e.errno, None


def check_accesses(rng, dev, v, model, rules, n, where):
    seq = recorder.state(v).last_seq
    for _ in range(n):
        off, size, write, data = random_access(rng, rules)
        want_err, want, want_log = model.access(rules, off, data, size,
                                                write)
        err, got = do_access(dev, off, size, write, data)
        st = recorder.state(v)
        log, seq = st.since(seq), st.last_seq
        if write and off == EDU_FACT and err is None:
            wait_factorial(dev)
        op = f"write {data.hex()}" if write else "read"
        ctx = (f"{where}: {op} {off:#x}+{size} ({model.mediator}); rules: "
               + ", ".join(map(str, rules)))
        assert (err, got) == (want_err, want), \
            f"got {err} {got}, want {want_err} {want}; {ctx}"
        assert log == want_log, f"recorded {log}, want {want_log}; {ctx}"
    check_registers(dev, rules, model, where)


def check_registers(dev, rules, model, where):
    """Read back the registers where no rule stands in the way."""
    for off in (EDU_ID, EDU_LIVE, EDU_FACT) + EDU_DMA:
        if any(winner(rules, off + i, False) for i in range(4)):
            continue
        assert dev.read32(BAR0, off) == model.edu.read(off), \
            f"{where}: register {off:#x}"


def check_hits(v, rules, where):
    got = {r.name: v.rule("bar0", r.name).hits for r in rules}
    want = {r.name: r.hits for r in rules}
    assert got == want, f"{where}: hits"


def mmap_result(dev, off, size):
    try:
        dev.mmap(BAR0, off, size).close()
        return None
    except OSError as e:
        return e.errno


def check_bar_view(dev, v, rules, args, where):
    """Region info and mmap of BAR0 as the rules and the mediator's
    region_info and mmap hooks make them."""
    before = recorder.state(v).counts
    info = dev.region_info(BAR0, argsz=1024)    # one ioctl: room for caps
    areas = mmap_areas(BAR_SIZE, [(r.start, r.end) for r in rules])
    assert info.sparse_areas == areas, f"{where}: sparse areas"
    assert info.mmappable == (args != "hide-mmap"), f"{where}: mmap flag"
    ruled = sorted({r.start & ~(PAGE - 1) for r in rules})
    free = areas[len(areas) // 2][0]
    want = errno.EACCES if args == "veto-mmap" else None
    assert mmap_result(dev, free, PAGE) == want, f"{where}: mmap {free:#x}"
    assert mmap_result(dev, ruled[0], PAGE) == errno.EINVAL, \
        f"{where}: mmap {ruled[0]:#x}"
    after = recorder.state(v).counts
    assert after["region_info"] == before["region_info"] + 1, where
    # the hook is asked for the allowed mapping only
    assert after["mmap"] == before["mmap"] + 1, where


def init_registers(edu):
    """Put the registers the model follows in its initial state."""
    with Device(edu) as dev:
        for off in (EDU_LIVE, EDU_FACT) + EDU_DMA:
            dev.write32(BAR0, off, 0)
        wait_factorial(dev)
        assert dev.read32(BAR0, EDU_FACT) == 1
        assert dev.pread(BAR0, WINDOW[0], 8) == b"\xff" * 8


def run_round(edu, rng, model, rnd):
    rules = random_rules(rng)
    args = rng.choice(MED_ARGS)
    with Vfm(edu, mediator=model.mediator, args=args) as v:
        for r in rules:
            v.add_rule("bar0", r.name, r.range(), r.action,
                       access=r.access, audit=r.audit)
        where = f"round {rnd}"
        with Device(edu) as dev:
            gen, ns = v.generation, v.read("compile_ns")
            check_bar_view(dev, v, rules, args, where)
            check_accesses(rng, dev, v, model, rules, ACCESSES, where)
        check_hits(v, rules, where)
        # Reopened unchanged: the same compiled rules serve again.
        with Device(edu) as dev:
            assert (v.generation, v.read("compile_ns")) == (gen + 1, ns)
            check_accesses(rng, dev, v, model, rules, ACCESSES // 3,
                           where + " reopened")
        check_hits(v, rules, where + " reopened")
        # A staged change: compiled again at the next open.
        r = rng.choice(rules)
        r.action = rng.choice(ACTIONS)
        v.rule("bar0", r.name).write("action", r.action)
        with Device(edu) as dev:
            assert v.generation == gen + 2
            tie = v.read("compile_ns") == ns
            check_accesses(rng, dev, v, model, rules, ACCESSES // 3,
                           where + " changed")
        check_hits(v, rules, where + " changed")
        if tie:
            # Two compilations can take the same time to the clock's
            # resolution (seen once on 6.1: 94770 ns both). Rules reused
            # would tie again; compiled again, they hardly can.
            v.rule("bar0", r.name).write("action", r.action)
            with Device(edu):
                assert v.read("compile_ns") != ns, where + ": not compiled"


def test_random_rules_match_the_model(edu_vfm):
    rng = random.Random(SEED)
    init_registers(edu_vfm)
    edu = Edu()
    for rnd in range(ROUNDS):
        model = Model(MEDIATORS[rnd % len(MEDIATORS)])
        model.edu = edu             # the device keeps its state
        run_round(edu_vfm, rng, model, rnd)
    recorder.MODULE.unload()


# -- the handler a direction lacks ---------------------------------------------

def refused(fn, *args):
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return None


def test_trap_needs_a_handler_or_observe(edu_vfm):
    """recorder-rdonly has a read handler only: trap rules for writes are
    refused when written, and the mediator cannot replace one that has
    observe under such a rule; reads are trapped to the handler."""
    with Vfm(edu_vfm, mediator="recorder-rdonly") as v:
        for access in ("w", "rw"):
            with pytest.raises(OSError) as e:
                v.add_rule("bar0", f"t{access}", "0x4+4", "trap",
                           access=access)
            assert e.value.errno == errno.EINVAL, access
        v.remove_rule("bar0", "tw")
        v.remove_rule("bar0", "trw")
        v.add_rule("bar0", "tr", "0x4+4", "trap", access="r")
        with Device(edu_vfm) as dev:
            dev.write32(BAR0, EDU_LIVE, 0x12345678)     # no rule for writes
            assert dev.pread(BAR0, EDU_LIVE, 4) == recorder.read_bytes(
                (~0x12345678 & ALL_ONES).to_bytes(4, "little"))
            assert recorder.state(v).since(0) == [("read", BAR0, 4, 4, 4)]
    with Vfm(edu_vfm, mediator="recorder-rd") as v:
        v.add_rule("bar0", "t", "0x4+4", "trap", access="rw")
        assert refused(setattr, v, "mediator", "recorder-rdonly") == \
            errno.EINVAL
        assert v.mediator == "recorder-rd"
        with Device(edu_vfm) as dev:
            dev.write32(BAR0, EDU_LIVE, 0x0000FFFF)
            assert dev.read32(BAR0, EDU_LIVE) == 0xFFFF0000 ^ 0x80808080
            assert recorder.state(v).since(0) == [
                ("observe-w", BAR0, 4, 4, 4), ("read", BAR0, 4, 4, 4)]
    recorder.MODULE.unload()


@pytest.mark.parametrize("mediator", ["recorder", "recorder-obs",
                                      "recorder-rdonly"])
def test_config_trap_path(edu_vfm, mediator):
    """Outside the BARs a mediator with observe is told of the access
    that vfio-pci-core made; one with only a read handler gets the read,
    and the default accessor refuses config space (EOPNOTSUPP)."""
    with Vfm(edu_vfm, mediator=mediator) as v:
        v.add_rule("config", "id", "0x0+4", "trap", access="r")
        with Device(edu_vfm) as dev:
            err, got = None, None
            try:
                got = dev.pread(7, 0, 4)        # VFIO_PCI_CONFIG_REGION_INDEX
            except OSError as e:
                err = e.errno
            log = recorder.state(v).since(0)
    if mediator == "recorder-rdonly":
        assert (err, log) == (errno.EOPNOTSUPP,
                              [("read", 7, 0, 4, -errno.EOPNOTSUPP)])
    else:
        assert (err, got) == (None, bytes.fromhex("3412e811"))
        assert log == [("observe-r", 7, 0, 4, 4)]
    recorder.MODULE.unload()
