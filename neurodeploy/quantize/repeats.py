"""Input steps that repeat: a graded (``direct``) input gives a layer the same events at every
input step, so its synaptic output is the same at every step too.

The fake-quant forward then runs the first layer's synapses once per sample instead of once per
step and broadcasts the result over the steps: the same integers (the synapse is a function of
the step's events alone), and the gradient of the broadcast is the sum over the steps of the
per-step gradients (the same value as the per-step path's, summed in another order).
"""

from __future__ import annotations

import torch


def repeats_over_steps(s_in: torch.Tensor, used: int) -> bool:
    """Whether the first ``used`` steps of ``s_in`` ``[B, T, ...]`` are all equal to step 0 and
    need no gradient (so one step's synaptic output stands for all of them)."""
    if used < 2 or s_in.requires_grad:
        return False
    first = s_in[:, :1]
    return bool(torch.equal(s_in[:, :used], first.expand(-1, used, *s_in.shape[2:])))


__all__ = ["repeats_over_steps"]
