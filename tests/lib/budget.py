# SPDX-License-Identifier: GPL-2.0
"""How often the guest suite repeats a path.

Loops that drive one path many times (random bad input, bind/open cycles,
failure injection) run a fifth as often under the debug kernel, which
KASAN, lockdep and kmemleak make several times slower under emulation:
there the point is what the checkers see of each path, which fewer passes
show as well. Debian's kernels run the full counts.
"""
import os

DEBUG_KERNEL = os.uname().release.endswith("-vfm-debug")
DEBUG_DIVISOR = 5


def scaled(n: int, minimum: int = 1) -> int:
    """@n, or a fifth of it (at least @minimum) under the debug kernel."""
    if not DEBUG_KERNEL:
        return n
    return max(minimum, n // DEBUG_DIVISOR)
