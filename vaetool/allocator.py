"""Host memory for training on the CPU: keep the memory freed after a step for the next one.

A training step allocates its activations and gradients afresh, megabytes for a conv net, and frees
them when the step ends. glibc's malloc serves blocks above its mmap threshold (128 KiB, raised
as large blocks are freed, to at most 32 MiB) with fresh pages from the kernel and trims freed memory
at the top of its heap back to the kernel; the next step then takes a page fault on every 4 KiB
it touches, and the kernel zeroes each page. Measured on a 2-core VM, that was 7,000 faults and
about 12 ms of kernel time in each 85 ms step of the default conv VAE, and none with the threshold
pinned at its maximum and trimming off (docs/benchmarks.md). The steps then reuse the same memory:
the process's peak is what it was, but it is not handed back between steps.

Only glibc has ``mallopt``; elsewhere (macOS, musl) :func:`reuse_freed_memory` does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit: blocks above it are mapped anyway
_NEVER_TRIM = 2 ** 31 - 1  # mallopt takes an int


@functools.cache
def reuse_freed_memory() -> bool:
    """Ask glibc to keep blocks up to 32 MiB on its heap and not trim it; True if it took both.

    Process-wide and once per process: the training loop calls it before its first CPU step.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM))
