"""numba, where it can be imported: the one place the compiled kernels get their compiler from.

numba is a dependency; on a platform where it cannot be imported (a Python it does not support
yet), :data:`AVAILABLE` is ``False``, :func:`njit` returns ``None`` and every caller runs its numpy
or torch form instead. Kernels are compiled without ``fastmath`` (the same rounding as the
reference forms), release the GIL, and are cached on disk next to their module.
"""

from __future__ import annotations

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
