# SPDX-License-Identifier: GPL-2.0
"""Revocation: `echo revoke > devices/<BDF>/apply` (and `vfmediate apply
BDF --revoke`) publishes a table that rules pages the VFIO user holds
mmap'ed, then zaps exactly those pages from every mapping of them (fork
copies included). A later fault on one gets SIGBUS instead of being
mapped again; the other pages of the same mapping keep working; region
info reports the new sparse areas; pages a later change frees are
mappable again. A plain apply of the same change is refused with EBUSY.

Each access that may fault runs in a forked child, so that a SIGBUS ends
the child only; edu's BAR0 reads its ID at 0x0 and 0xffffffff on pages
without registers.
"""
import errno
import faulthandler
import os
import signal
import subprocess

import pytest

from policy import EDU_ID, EDU_ID_VALUE, EDU_LIVE, PAGE
from vfio import BAR0, VfioError, mmio_read32, mmio_write32, opened
from vfm import Vfm

pytestmark = pytest.mark.usefixtures("no_config_left")

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = os.path.join(TOP, "cli", "vfmediate")
MID = PAGE                      # the middle page of the three mapped
EMPTY = 0xFFFFFFFF              # what edu reads where it has no register
BAR0_LEN = 0x100000


def probe(mm, off):
    """Read the 32-bit word at ``off`` of mapping ``mm`` in a child: its
    value, or "SIGBUS" if the read faulted."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        faulthandler.disable()          # a SIGBUS is an answer here
        os.write(w, mmio_read32(mm, off).to_bytes(4, "little"))
        os._exit(0)
    os.close(w)
    data = os.read(r, 4)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGBUS, status
        return "SIGBUS"
    assert os.WEXITSTATUS(status) == 0 and len(data) == 4, status
    return int.from_bytes(data, "little")


def apply(v, what="1"):
    try:
        v.write("apply", what)
    except OSError as e:
        return errno.errorcode[e.errno]
    return None


def test_revoke_takes_only_the_ruled_page(edu_vfm):
    with Vfm(edu_vfm) as v, opened(edu_vfm) as dev:
        mm = dev.mmap(BAR0, 0, 3 * PAGE)
        try:
            assert probe(mm, MID) == EMPTY
            mmio_write32(mm, EDU_LIVE, 0x1234)      # maps page 0 here
            v.add_rule("bar0", "mid", f"{MID:#x}-{MID + PAGE - 1:#x}",
                       "deny")
            assert apply(v) == "EBUSY"
            assert "revoke" in v.error, v.error
            assert apply(v, "revoke") is None, v.error
            assert v.error == "" and not v.pending
            # Gone from the mapping, and from pread's reach.
            assert probe(mm, MID) == "SIGBUS"
            with pytest.raises(OSError) as e:
                dev.read32(BAR0, MID)
            assert e.value.errno == errno.EACCES
            # The pages around it still work, here and in a child.
            assert mmio_read32(mm, EDU_ID) == EDU_ID_VALUE
            assert mmio_read32(mm, EDU_LIVE) == ~0x1234 & 0xFFFFFFFF
            assert probe(mm, EDU_ID) == EDU_ID_VALUE
            assert probe(mm, 2 * PAGE) == EMPTY
            areas = dev.region_info(BAR0).sparse_areas
            assert areas == [(0, MID), (MID + PAGE, BAR0_LEN - MID - PAGE)]
            with pytest.raises(VfioError):
                dev.mmap(BAR0, MID, PAGE)
            # Freed again: the old mapping and new ones reach it.
            v.remove_rule("bar0", "mid")
            assert apply(v) is None, v.error
            assert probe(mm, MID) == EMPTY
            dev.mmap(BAR0, MID, PAGE).close()
            assert dev.region_info(BAR0).sparse_areas is None
        finally:
            mm.close()


def test_memory_toggle_keeps_a_revoked_page_away(edu_vfm):
    """Disabling memory decoding zaps every mapping (vfio-pci-core); the
    faults after it is enabled again map the other pages and still
    refuse the ruled one."""
    with Vfm(edu_vfm) as v, opened(edu_vfm) as dev:
        mm = dev.mmap(BAR0, 0, 3 * PAGE)
        try:
            assert probe(mm, MID) == EMPTY
            v.add_rule("bar0", "mid", f"{MID:#x}-{MID + PAGE - 1:#x}",
                       "deny")
            assert apply(v, "revoke") is None, v.error
            cmd = dev.config_read16(0x04)
            dev.config_write16(0x04, cmd & ~0x2)
            assert probe(mm, EDU_ID) == "SIGBUS"
            dev.config_write16(0x04, cmd)
            assert probe(mm, EDU_ID) == EDU_ID_VALUE
            assert probe(mm, 2 * PAGE) == EMPTY
            assert probe(mm, MID) == "SIGBUS"
            assert mmio_read32(mm, EDU_ID) == EDU_ID_VALUE
        finally:
            mm.close()


def test_revoke_reaches_a_forked_copy(edu_vfm):
    """The child's copy of the mapping, made before the revocation and
    faulted in, loses the page too; the parent has unmapped its own."""
    with Vfm(edu_vfm) as v, opened(edu_vfm) as dev:
        mm = dev.mmap(BAR0, 0, 3 * PAGE)
        go_r, go_w = os.pipe()
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            faulthandler.disable()
            os.close(go_w)
            os.close(ready_r)
            ok = mmio_read32(mm, MID) == EMPTY
            os.write(ready_w, b"1" if ok else b"0")
            os.read(go_r, 1)
            mmio_read32(mm, MID)            # must fault: SIGBUS
            os._exit(0)
        os.close(go_r)
        os.close(ready_w)
        try:
            assert os.read(ready_r, 1) == b"1"
            mm.close()
            v.add_rule("bar0", "mid", f"{MID:#x}-{MID + PAGE - 1:#x}",
                       "deny")
            assert apply(v) == "EBUSY"
            assert apply(v, "revoke") is None, v.error
        finally:
            os.write(go_w, b"g")
            os.close(go_w)
            os.close(ready_r)
            _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status), status
        assert os.WTERMSIG(status) == signal.SIGBUS


def test_revoke_without_mappings_is_an_apply(edu_vfm):
    with Vfm(edu_vfm) as v, opened(edu_vfm) as dev:
        v.add_rule("bar0", "id", "0x0-0x3", "deny")
        assert apply(v, "revoke") is None, v.error
        with pytest.raises(OSError) as e:
            dev.read32(BAR0, EDU_ID)
        assert e.value.errno == errno.EACCES
        gen = v.generation
        assert apply(v, "revoke") is None       # nothing pending
        assert v.generation == gen
    for bad in ("revoked", "Revoke", "revoke 1"):
        with Vfm(edu_vfm) as v:
            assert apply(v, bad) == "EINVAL", bad


def test_revoke_of_a_whole_region(edu_vfm):
    """mmap off for BAR0 takes every page of every mapping."""
    with Vfm(edu_vfm) as v, opened(edu_vfm) as dev:
        mm = dev.mmap(BAR0)
        try:
            assert probe(mm, EDU_ID) == EDU_ID_VALUE
            v.set_region_mmap("bar0", "off")
            assert apply(v) == "EBUSY"
            assert apply(v, "revoke") is None, v.error
            for off in (0, MID, BAR0_LEN - PAGE):
                assert probe(mm, off) == "SIGBUS", hex(off)
            assert dev.read32(BAR0, EDU_ID) == EDU_ID_VALUE
            assert not dev.region_info(BAR0).mmappable
        finally:
            mm.close()


def test_cli_apply_revoke(edu_vfm):
    with Vfm(edu_vfm) as v, opened(edu_vfm) as dev:
        mm = dev.mmap(BAR0, 0, PAGE)
        try:
            v.add_rule("bar0", "id", "0x0-0x3", "deny")
            p = subprocess.run([CLI, "apply", edu_vfm], capture_output=True,
                               text=True)
            assert p.returncode != 0 and "--revoke" in p.stderr, p.stderr
            p = subprocess.run([CLI, "apply", edu_vfm, "--revoke"],
                               capture_output=True, text=True)
            assert p.returncode == 0, p.stderr
            assert probe(mm, EDU_ID) == "SIGBUS"
        finally:
            mm.close()
