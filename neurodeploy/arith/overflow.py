"""Overflow rules of fixed-width integer state.

A profile names, for each state variable, its width in bits and what happens when a result leaves
the range. The rules, for ``b`` bits and ``M = 2**(b-1)``:

``"none"``
    nothing happens (Lava's dense accumulator, docs/loihi.md §4 step 5).
``"saturate"``
    clamp to the two's-complement range ``[-M, M-1]`` (Xylo's int16 states).
``"saturate_symmetric"``
    clamp to ``[-(M-1), M-1]`` (Loihi's voltage ``v``, docs/loihi.md §3 step 5).
``"wrap"``
    true modulo into ``[-M, M-1]``: ``((x + M) mod 2M) - M`` (Loihi's conv output, docs/loihi.md §5.3).
``"wrap_once"``
    Lava's single correction of the current ``u`` (docs/loihi.md §3 step 3): if ``x > M`` then
    ``x - 2M``; else if ``x <= -M`` then ``x + 2M``; else ``x``. This is *not* a modulo: ``+M`` is
    kept, ``-M`` becomes ``+M``, and values beyond ``±3M`` stay out of range.

:func:`apply_overflow` returns the new values and a boolean mask of the elements the rule changed
(wrap or saturation events), which the simulator sums into its per-layer counts.
"""

from __future__ import annotations

import numpy as np

from neurodeploy.arith import ops
from neurodeploy.arith.ops import Array

OVERFLOW_MODES = ("none", "saturate", "saturate_symmetric", "wrap", "wrap_once")

SATURATING_MODES = ("saturate", "saturate_symmetric")
"""The rules that clamp to their range (:func:`overflow_range`)."""


def overflow_range(bits: int, mode: str) -> tuple[int, int]:
    """``(lo, hi)``: the values rule ``mode`` of a ``bits``-wide state leaves unchanged (the
    clamp's ends for a saturating rule); raises ``ValueError`` for ``"none"`` and unknown modes."""
    half = 1 << (bits - 1)
    if mode == "saturate":
        return -half, half - 1
    if mode == "saturate_symmetric":
        return -(half - 1), half - 1
    if mode == "wrap":
        return -half, half - 1
    if mode == "wrap_once":
        return -half + 1, half
    raise ValueError(f"unknown overflow mode {mode!r}; expected one of {OVERFLOW_MODES}")


def apply_overflow(x: Array, bits: int, mode: str) -> tuple[Array, Array | None]:
    """Apply the overflow rule ``mode`` for a ``bits``-wide signed state.

    Args:
        x: integer values (numpy or torch, int64 or float64 holding integers).
        bits: width of the state in bits (1..64).
        mode: one of :data:`OVERFLOW_MODES`.

    Returns:
        ``(y, mask)``: the values after the rule and a boolean mask of changed elements;
        ``mask`` is ``None`` for mode ``"none"`` and, for numpy input, when nothing changed.
    """
    if mode == "none":
        return x, None
    half = 1 << (bits - 1)
    lo, hi = overflow_range(bits, mode)
    if not ops.is_torch(x):
        # fast path (numpy only; on torch it would force a device sync every step)
        xa = np.asarray(x)
        if xa.size == 0 or (xa.min() >= lo and xa.max() <= hi):
            return x, None
    mask = (x < lo) | (x > hi)
    if mode in SATURATING_MODES:
        return ops.clip(x, lo, hi), mask
    if mode == "wrap":
        return ops.mod(x + half, 2 * half) - half, mask
    # wrap_once: x > M -> x - 2M; x <= -M -> x + 2M (a single correction)
    return ops.where(x > half, x - 2 * half, ops.where(x <= -half, x + 2 * half, x)), mask


def count(mask: Array | None, batch_axes: int = 1) -> Array | int:
    """Sum a change mask over all but its first ``batch_axes`` axes (0 for ``None``)."""
    if mask is None:
        return 0
    if ops.is_torch(mask):
        dims = tuple(range(batch_axes, mask.dim()))
        return mask.sum(dim=dims) if dims else mask.long()
    mask = np.asarray(mask)
    axes = tuple(range(batch_axes, mask.ndim))
    return mask.sum(axis=axes, dtype=np.int64) if axes else mask.astype(np.int64)
