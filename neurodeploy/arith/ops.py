"""Array primitives that behave identically on numpy arrays and torch tensors.

The integer arithmetic of every chip family is written once against these helpers, so the same
function runs in the bit-accurate simulator (numpy ``int64``) and in a fake-quant PyTorch forward
(torch ``int64``, or ``float64`` holding exact integers). Every helper is element-wise or a plain
reduction; none loops over elements in Python.

Exactness: ``float64`` holds every integer of magnitude below 2**53 exactly, and a sum of such
integers is exact as long as every partial sum stays below 2**53. Callers that hand float64 values
to these functions must keep them in that range (the chip formats in this project are 24-bit or
narrower, so they do).

torch is never imported here at module level; a value is recognised as a torch tensor by its type.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Array = Any  # numpy.ndarray or torch.Tensor


def is_torch(x: Any) -> bool:
    """True if ``x`` is a torch tensor (checked by type, without importing torch)."""
    return type(x).__module__.split(".", 1)[0] == "torch"


def _torch():
    import torch

    return torch


def is_integer_dtype(x: Array) -> bool:
    """True if ``x`` (numpy array or torch tensor) has an integer or boolean dtype."""
    if is_torch(x):
        return not (x.dtype.is_floating_point or x.dtype.is_complex)
    return np.issubdtype(np.asarray(x).dtype, np.integer) or np.asarray(x).dtype == np.bool_


def like(value: Any, ref: Array) -> Any:
    """Return ``value`` in the backend of ``ref``.

    Python scalars pass through unchanged (both backends broadcast them). A numpy array becomes a
    tensor with ``ref``'s dtype and device when ``ref`` is a torch tensor; a tensor becomes a numpy
    array when ``ref`` is numpy.
    """
    if isinstance(value, (int, float, bool, np.integer, np.floating)) and not isinstance(
        value, np.ndarray
    ):
        return value.item() if isinstance(value, np.generic) else value
    if is_torch(ref):
        torch = _torch()
        if is_torch(value):
            return value.to(dtype=ref.dtype, device=ref.device)
        return torch.as_tensor(np.asarray(value), device=ref.device).to(ref.dtype)
    if is_torch(value):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    ref_dtype = np.asarray(ref).dtype
    if arr.dtype == ref_dtype:
        return arr
    if np.issubdtype(ref_dtype, np.floating):
        return arr.astype(ref_dtype, copy=False)
    return arr.astype(np.int64, copy=False)


def where(cond: Array, a: Any, b: Any) -> Array:
    """Element-wise ``a if cond else b``."""
    if is_torch(cond):
        torch = _torch()
        return torch.where(cond, a, b)
    return np.where(cond, a, b)


def clip(x: Array, lo: Any, hi: Any) -> Array:
    """Clamp ``x`` to ``[lo, hi]`` (scalars or broadcastable arrays)."""
    if is_torch(x):
        torch = _torch()
        if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
            return torch.clamp(x, lo, hi)
        return torch.minimum(torch.maximum(x, like(lo, x)), like(hi, x))
    return np.clip(x, lo, hi)


def sign(x: Array) -> Array:
    """Element-wise sign (-1, 0, +1) in ``x``'s dtype."""
    if is_torch(x):
        return x.sign()
    return np.sign(x)


def floor_div(x: Array, d: Any) -> Array:
    """Division rounded toward minus infinity (``d`` > 0): ``-5 // 2 = -3``."""
    if is_torch(x):
        torch = _torch()
        return torch.div(x, d, rounding_mode="floor")
    return np.floor_divide(x, d)


def trunc_div_pow2(x: Array, k: int) -> Array:
    """``x / 2**k`` rounded toward zero (``k`` >= 0, a Python int): ``-5 / 4 -> -1``."""
    if k == 0:
        return x
    if is_torch(x):
        torch = _torch()
        return torch.div(x, 1 << k, rounding_mode="trunc")
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.integer):
        # floor shift of x biased by (2**k - 1) when negative == truncation toward zero
        x = x.astype(np.int64, copy=False)
        return (x + ((x >> 63) & ((1 << k) - 1))) >> k
    return np.trunc(x * (2.0**-k))


def shift(x: Array, e: int) -> Array:
    """Multiply by ``2**e``; for negative ``e`` divide by ``2**-e`` rounding toward minus infinity.

    This is an arithmetic shift: ``shift(-5, -1) == -3``. ``e`` is a Python int.
    """
    e = int(e)
    if e >= 0:
        return x * (1 << e)
    if isinstance(x, (int, np.integer)):
        return int(x) >> -e
    return floor_div(x, 1 << -e)


def shift_array(x: Array, e: Array) -> Array:
    """Like :func:`shift` with a per-element exponent array ``e`` (broadcast against ``x``)."""
    if is_torch(x):
        torch = _torch()
        e = like(e, x)
        pos = torch.clamp(e, min=0)
        neg = torch.clamp(-e, min=0)
        return torch.div(x * (2**pos), 2**neg, rounding_mode="floor")
    e = np.asarray(e, dtype=np.int64)
    pos = np.left_shift(np.int64(1), np.maximum(e, 0))
    neg = np.left_shift(np.int64(1), np.maximum(-e, 0))
    return np.floor_divide(np.asarray(x) * pos, neg)


def pow2(e: Any, ref: Array) -> Any:
    """``2**e`` for a Python int or an integer array ``e``, in ``ref``'s backend and dtype."""
    if isinstance(e, (int, np.integer)):
        return 1 << int(e)
    e = like(e, ref)
    if is_torch(e):
        return 2**e
    return np.left_shift(np.int64(1), np.asarray(e, dtype=np.int64)).astype(
        np.asarray(ref).dtype, copy=False
    )


def mod(x: Array, m: int) -> Array:
    """Modulo with the sign of the (positive) divisor: ``mod(-1, 8) == 7``."""
    if is_torch(x):
        torch = _torch()
        return torch.remainder(x, m)
    return np.mod(x, m)


def zeros_like(x: Array) -> Array:
    """An all-zero array of ``x``'s shape, dtype and backend."""
    if is_torch(x):
        torch = _torch()
        return torch.zeros_like(x)
    return np.zeros_like(x)


def as_dtype_of(mask: Array, ref: Array) -> Array:
    """Convert a boolean mask to ``ref``'s dtype (0/1)."""
    if is_torch(mask):
        return mask.to(ref.dtype)
    return np.asarray(mask).astype(np.asarray(ref).dtype, copy=False)


def abs_max(x: Array) -> int:
    """Largest absolute value in ``x`` as a Python int (0 for an empty array)."""
    if is_torch(x):
        if x.numel() == 0:
            return 0
        return int(x.detach().abs().max().item())
    x = np.asarray(x)
    if x.size == 0:
        return 0
    return max(abs(int(x.min())), abs(int(x.max())))


def exact_matmul(a: Array, b: Array, bound: int) -> Array:
    """Integer matrix product ``a @ b`` computed exactly.

    ``bound`` must be an upper bound of every partial sum's magnitude (e.g. ``max|a| * max|b| *
    inner``). Integer inputs are multiplied in float32 when ``bound < 2**24``, in float64 when
    ``bound < 2**53`` (both exact there, and fast), else in int64; the result is int64. Float
    inputs are multiplied in their own dtype (a training forward keeps its autograd graph).
    """
    if is_torch(a):
        torch = _torch()
        if a.dtype.is_floating_point:
            return a @ like(b, a)
        b = like(b, a)
        if bound < 2**24:
            return (a.to(torch.float32) @ b.to(torch.float32)).round().to(torch.int64)
        if bound < 2**53:
            return (a.to(torch.float64) @ b.to(torch.float64)).round().to(torch.int64)
        return a.to(torch.int64) @ b.to(torch.int64)
    a = np.asarray(a)
    b = np.asarray(b)
    if np.issubdtype(a.dtype, np.floating):
        return a @ b.astype(a.dtype, copy=False)
    if bound < 2**24:
        out = a.astype(np.float32) @ b.astype(np.float32)
    elif bound < 2**53:
        out = a.astype(np.float64) @ b.astype(np.float64)
    else:
        return a.astype(np.int64) @ b.astype(np.int64)
    return np.rint(out).astype(np.int64)


def to_numpy(x: Array) -> np.ndarray:
    """Return ``x`` as a numpy array (detached and on CPU for tensors)."""
    if is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)
