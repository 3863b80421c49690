"""Straight-through rounding to an integer range, as one autograd function.

``round_to_range(x, factor, lo, hi)`` has the value ``clamp(round(x · factor), lo, hi)`` and the
gradient ``factor`` where ``lo <= x · factor <= hi``, zero elsewhere: the same values and
gradients as building it from ``straight_through(x · factor · inside, exact)``, in three passes
over ``x`` forward and one backward instead of about ten (it runs on every weight at every
fine-tuning step). A contiguous float64 CPU tensor runs each direction as one compiled pass
(:data:`COMPILED`; the same operations: an IEEE product, round half to even as ``torch.round``,
the clamp), anything else the torch operations (``tests/test_rounding.py`` compares both with
the straight-through construction).
"""

from __future__ import annotations

import numpy as np
import torch

from neurodeploy.compiled import AVAILABLE, njit


def _round_range(x, factor, lo, hi, q, inside):
    for i in range(x.shape[0]):
        v = x[i] * factor
        inside[i] = (v >= lo) & (v <= hi)
        r = np.rint(v)  # half to even, as torch.round
        q[i] = lo if r < lo else (hi if r > hi else r)  # NaN stays NaN, as torch.clamp


def _masked_scale(grad, factor, inside, out):
    for i in range(grad.shape[0]):
        # times 0 or 1 as the torch form: a NaN or infinite gradient stays NaN, a zero keeps its sign
        out[i] = grad[i] * factor * (1.0 if inside[i] else 0.0)


_round_range = njit(_round_range)
_masked_scale = njit(_masked_scale)

COMPILED = AVAILABLE
"""Run contiguous float64 CPU tensors through the compiled passes (``False``: torch only)."""


def _compiled_applies(x: torch.Tensor) -> bool:
    return COMPILED and x.device.type == "cpu" and x.dtype == torch.float64 and x.is_contiguous()


class _RoundToRange(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: float, lo: float, hi: float) -> torch.Tensor:
        ctx.factor = factor
        if _compiled_applies(x):
            q = torch.empty_like(x)
            inside = torch.empty(x.shape, dtype=torch.bool)
            _round_range(x.detach().view(-1).numpy(), factor, lo, hi, q.view(-1).numpy(),
                         inside.view(-1).numpy())
            ctx.save_for_backward(inside)
            return q
        q = x.detach() * factor
        inside = (q >= lo).logical_and_(q <= hi)
        ctx.save_for_backward(inside)
        return q.round_().clamp_(lo, hi)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inside,) = ctx.saved_tensors
        if (_compiled_applies(grad) and not grad.requires_grad and grad.shape == inside.shape
                and inside.is_contiguous()):  # else the torch form (strides, double backward)
            out = torch.empty_like(grad)
            _masked_scale(grad.view(-1).numpy(), ctx.factor, inside.view(-1).numpy(), out.view(-1).numpy())
            return out, None, None, None
        return (grad * ctx.factor).mul_(inside), None, None, None


def round_to_range(x: torch.Tensor, factor: float, lo: float, hi: float) -> torch.Tensor:
    """``clamp(round(x · factor), lo, hi)``, straight-through (gradient ``factor``) inside the
    range and zero gradient where clipped."""
    return _RoundToRange.apply(x, float(factor), float(lo), float(hi))


__all__ = ["round_to_range"]
