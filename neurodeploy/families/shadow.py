"""Straight-through tensors: the value of an exact integer result, the gradient of a float shadow.

Every family's differentiable shadow (its ``lowering.TrainNeuron``) is built from
:func:`straight_through`; the fake-quant network uses it for weights, synapses and jitter.
"""

from __future__ import annotations

import torch


class _STE(torch.autograd.Function):
    """Value of ``exact``, gradient of ``shadow``."""

    @staticmethod
    def forward(ctx, shadow, exact):
        return exact.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def straight_through(shadow: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """A tensor with ``exact``'s values and ``shadow``'s gradient."""
    return _STE.apply(shadow, exact.detach())


__all__ = ["straight_through"]
