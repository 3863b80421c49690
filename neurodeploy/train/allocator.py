"""Keep freed memory in the process while training on the CPU (glibc only).

Every training step allocates and frees the same large tensors (activations saved for the
backward, their gradients). glibc's ``malloc`` serves blocks above its mmap threshold (at most
32 MiB) with fresh ``mmap`` calls and returns freed memory at the top of the heap to the system,
so each step pays a page fault, and the kernel's zero-filling, for every 4 KiB page of every large
tensor again. On a small CPU this costs up to 40 % of a convolutional network's step. With
``M_MMAP_MAX = 0`` and a very high ``M_TRIM_THRESHOLD`` freed blocks stay in the heap and the next
step reuses them; the process's resident memory then stays at its peak until it exits.

:func:`keep_freed_memory` is called by the commands that train or fine-tune (``neurodeploy train``,
``finetune``, ``sweep``, ``pipeline``: each owns its process); library users may call it
themselves. It does nothing on systems without glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_applied = False


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse; returns whether the settings took effect."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied
