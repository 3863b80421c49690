"""Which input steps of a layer the fake-quant forward must run its synapses on.

* Trailing steps without events add nothing (:func:`steps_with_events`).
* A graded (``direct``) input gives a layer the same events at every input step, so its synaptic
  output is the same at every step too (:func:`repeats_over_steps`): the forward runs the
  synapses once per sample and broadcasts the result over the steps. The integers are the same
  (a synapse is a function of its step's events alone), and the gradient of the broadcast is the
  sum over the steps of the per-step gradients (the per-step path's value, summed in another
  order).
"""

from __future__ import annotations

import torch


def steps_with_events(s_in: torch.Tensor, used: int) -> int:
    """The number of leading steps of ``s_in`` ``[B, T, ...]`` up to and including the last of
    its first ``used`` steps with an event (0 when none has one)."""
    while used > 0 and not bool(s_in[:, used - 1].any()):
        used -= 1
    return used


def repeats_over_steps(s_in: torch.Tensor, used: int) -> bool:
    """Whether the first ``used`` steps of ``s_in`` ``[B, T, ...]`` are all equal to step 0 and
    need no gradient (so one step's synaptic output stands for all of them)."""
    if used < 2 or s_in.requires_grad:
        return False
    first = s_in[:, :1]
    return bool(torch.equal(s_in[:, :used], first.expand(-1, used, *s_in.shape[2:])))


__all__ = ["repeats_over_steps", "steps_with_events"]
