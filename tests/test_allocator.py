"""Keeping freed memory: repeated large tensors stop page-faulting (glibc Linux only)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import resource
import torch
from neurodeploy.train.allocator import keep_freed_memory

x = torch.ones(16 << 20)  # 64 MiB, above glibc's largest mmap threshold


def faults():
    for _ in range(10):
        (x * 2).sum()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        (x * 2).sum()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


default = faults()
assert keep_freed_memory()
print(default, faults())
"""


def _glibc() -> bool:
    try:
        return "glibc" in os.confstr("CS_GNU_LIBC_VERSION").lower()
    except (AttributeError, ValueError, OSError):
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _glibc(), reason="glibc only")
def test_freed_memory_is_reused_without_page_faults():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    default, kept = map(int, out.stdout.split())
    assert default > 10 * 16_000  # every 64 MiB temporary faults its 16k pages in again
    assert kept < default / 3
