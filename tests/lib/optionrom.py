# SPDX-License-Identifier: GPL-2.0
"""A small PCI expansion ROM image for the test guest's igb function.

tests/vm/run writes it to a file and hands it to QEMU (romfile=), so one
test device has a ROM that the kernel accepts (pci_get_rom_size() walks
the 0x55AA header and the "PCIR" data structure); the tests compute the
same bytes to check what a read of the ROM region returns.

    python3 tests/lib/optionrom.py VENDOR DEVICE > FILE
"""
import struct
import sys

SIZE = 4096                     # 8 blocks of 512 bytes, one image
PCIR = 0x20                     # offset of the PCI data structure


def image(vendor: int, device: int, size: int = SIZE) -> bytes:
    """One last-image option ROM of @size bytes; the bytes past the
    headers follow a pattern, so a read of any range can be checked."""
    rom = bytearray((i * 7 + 3) & 0xFF for i in range(size))
    rom[0:3] = b"\x55\xaa" + bytes([size // 512])
    rom[3:PCIR] = bytes(PCIR - 3)
    struct.pack_into("<H", rom, 0x18, PCIR)
    # "PCIR", vendor, device, device list (none), structure length,
    # revision, class code (Ethernet), image length in 512-byte blocks,
    # code revision, code type (x86), indicator (last image), max runtime
    pcir = struct.pack("<4sHHHHB3sHHBBH", b"PCIR", vendor, device, 0, 0x18,
                       3, b"\x00\x00\x02", size // 512, 1, 0, 0x80, 0)
    rom[PCIR:PCIR + len(pcir)] = pcir
    return bytes(rom)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: optionrom.py VENDOR DEVICE (hex) > FILE")
    sys.stdout.buffer.write(image(int(sys.argv[1], 16),
                                  int(sys.argv[2], 16)))
