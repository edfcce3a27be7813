"""Process-level settings for the command line and the app (never applied on import).

PyTorch's CPU allocator hands every tensor to malloc. glibc serves blocks above its mmap
threshold with fresh mmap'ed pages and returns the top of the heap to the system when it is
larger than the trim threshold, so a loop that allocates and frees the same 10-50 MB activations
step after step page-faults them in again every time: on this project's training and evaluation
loops that was a third to a half of the CPU time, spent in the kernel. Fixed thresholds make
glibc keep and reuse that memory instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum on 64-bit systems
TRIM_THRESHOLD = 1024 * 1024 * 1024

_tuned = False


def tune_allocator() -> bool:
    """Set glibc's mmap and trim thresholds once per process (Linux with glibc only; elsewhere,
    or when it fails, nothing changes). Returns whether the settings were applied."""
    global _tuned
    if _tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    _tuned = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _tuned
