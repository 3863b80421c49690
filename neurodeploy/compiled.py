"""numba, where it can be imported: the one place the compiled kernels get their compiler from.

numba is a dependency; on a platform where it cannot be imported (a Python it does not support
yet), :data:`AVAILABLE` is ``False``, :func:`njit` returns ``None`` and every caller runs its numpy
or torch form instead. Kernels are compiled without ``fastmath`` (the same rounding as the
reference forms), release the GIL, and are cached on disk next to their module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

try:  # pragma: no cover - depends on the environment
    import numba
except Exception:  # noqa: BLE001 - any import failure: the numpy and torch forms run
    numba = None

AVAILABLE = numba is not None
"""Whether compiled kernels can run here."""


def njit(fn: Any, **options: Any) -> Any:
    """``fn`` compiled by numba (cached, GIL released, no fastmath; ``options`` added), or
    ``None`` without numba."""
    if numba is None:
        return None
    return numba.njit(cache=True, nogil=True, fastmath=False, **options)(fn)


@contextlib.contextmanager
def threads() -> Iterator[int]:
    """How many threads a parallel kernel may use here: torch's count
    (``torch.get_num_threads()``), at most numba's pool. Inside the block numba's pool is set to
    that count; torch's count is restored on leaving it (numba's OpenMP layer resets the
    process's count when its pool starts)."""
    import torch

    torch_threads = torch.get_num_threads()
    n = max(1, min(torch_threads, numba.config.NUMBA_NUM_THREADS)) if numba is not None else 1
    if n > 1:
        numba.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)
