# SPDX-License-Identifier: GPL-2.0
"""Host-side checks of vfmtiny (tests/mig/guest), the multiboot guest
kernel that tests/test_migration_qemu.py boots in QEMU inside the test
guest, here on the host's QEMU with an emulated edu device (no VFIO):

- it builds warning-free (-Werror) with Debian's gcc as it is (-m32
  -ffreestanding, no multilib);
- it finds edu, writes and reads its registers as its command line says:
  the ID, the liveness register (reads back inverted), the DMA registers
  (read back as written); each byte on COM1 gets a round of the reads;
- a bad command line or a missing device ends in one error line;
- the QMP sequence of the guest test works: stopped at start, migrated
  to a file, taken in with -incoming defer and migrate-incoming, it runs
  on and answers on the destination's serial port.

Runs on the host, outside the guest suite:

    python3 -m pytest --noconftest tests/host/
"""

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))

import qmp  # noqa: E402
import vfmtiny  # noqa: E402

QEMU = shutil.which("qemu-system-x86_64")
EDU = "1234:11e8"
WRITES = {0x04: 0x0F0F1234, 0x80: 0x12345678, 0x88: 0xCAFE0000,
          0x90: 0x400}
READS = {0x00: 0x010000ED, 0x04: 0xF0F0EDCB, 0x80: 0x12345678,
         0x88: 0xCAFE0000, 0x90: 0x400}
WAIT = 30

pytestmark = pytest.mark.skipif(QEMU is None, reason="no qemu-system-x86_64")


@pytest.fixture(scope="module")
def elf(tmp_path_factory):
    return vfmtiny.build(str(tmp_path_factory.mktemp("vfmtiny")))


def machine(elf, d, name, writes=WRITES, reads=READS, dev=EDU,
            devices=("-device", "edu")):
    serial = os.path.join(d, f"{name}.serial")
    return vfmtiny.machine_args(elf, dev, writes, reads, list(devices),
                                serial), serial


def test_edu_registers_and_rounds(elf, tmp_path):
    args, serial = machine(elf, str(tmp_path), "edu")
    with qmp.Qemu(args + ["-S"], str(tmp_path), binary=QEMU) as vm:
        with vfmtiny.Serial(serial) as ser:
            vm.qmp.cmd("cont")
            m = ser.line(r"vfmtiny: dev 1234:11e8 at 00:\w\w\.\d bar0 "
                         r"(0x\w{8}) size (0x\w{8})", WAIT)
            assert int(m[2], 16) == 1 << 20
            assert vfmtiny.first_pass(ser, READS, WAIT) == READS
            for n in (1, 2):
                ser.send(b"x")
                regs = vfmtiny.next_round(ser, n, WAIT)
                assert regs.pop("bar0") == int(m[1], 16)
                assert regs.pop("command") & 2, "memory decoding off"
                assert regs == READS
        assert vm.quit() == 0
    assert vm.output == ""


@pytest.mark.parametrize("append,error", [
    ("r32=0x80", "no dev= on the command line"),
    ("dev=1234:11e9", "no such PCI function on bus 0"),
    ("dev=1234:11e8 r32=0x82", "unaligned offset: r32=0x82"),
    ("dev=1234:11e8 r32=0x100000", "offset beyond BAR0"),
    ("dev=1234:11e8 w32=0x80", "w32=OFF:VAL expected: w32=0x80"),
    ("dev=1234:11e8 w32=0x80:0x1g", "junk after a number: w32=0x80:0x1g"),
    ("dev=1234:11e8 r32=0x100000000",
     "number too large: r32=0x100000000"),
])
def test_bad_command_line(elf, tmp_path, append, error):
    args, serial = machine(elf, str(tmp_path), "bad", writes={}, reads=[])
    args[args.index("-append") + 1] = append
    with qmp.Qemu(args + ["-S"], str(tmp_path), binary=QEMU) as vm:
        with vfmtiny.Serial(serial) as ser:
            vm.qmp.cmd("cont")
            m = ser.line(r"vfmtiny: (error: .*|ready)", WAIT)
        assert vm.quit() == 0
    assert m[1] == f"error: {error}"


def test_migrate_to_file_and_back(elf, tmp_path):
    d = str(tmp_path)
    image = os.path.join(d, "vm.mig")
    args, serial = machine(elf, d, "src")
    with qmp.Qemu(args + ["-S"], d, binary=QEMU) as vm:
        with vfmtiny.Serial(serial) as ser:
            vm.qmp.cmd("cont")
            assert vfmtiny.first_pass(ser, READS, WAIT) == READS
            vm.qmp.cmd("migrate", uri=f"file:{image}")
            vfmtiny.wait_migration(vm, WAIT, "outgoing migration")
            assert vm.qmp.cmd("query-status")["status"] == "postmigrate"
        assert vm.quit() == 0
    args, serial = machine(elf, d, "dst")
    with qmp.Qemu(args + ["-incoming", "defer"], d, binary=QEMU) as vm:
        with vfmtiny.Serial(serial) as ser:
            assert vm.qmp.cmd("query-status")["status"] == "inmigrate"
            vm.qmp.cmd("migrate-incoming", uri=f"file:{image}")
            vfmtiny.wait_migration(vm, WAIT, "incoming migration")
            assert vm.qmp.cmd("query-status")["status"] == "running"
            ser.send(b"x")
            # QEMU's edu has no migration state, not even its config
            # space: on the destination it is as at reset (BAR0
            # unassigned), and only vfmtiny's own state came over
            regs = vfmtiny.next_round(ser, 1, WAIT)
            assert list(regs) == ["bar0", "command", *READS]
        assert vm.quit() == 0
    assert vm.output == ""
