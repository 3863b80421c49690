"""Which input steps of a layer the fake-quant forward must run its synapses on.

* Trailing steps without events add nothing (:func:`steps_with_events`).
* A graded (``direct``) input gives a layer the same events at every input step, so its synaptic
  output is the same at every step too (:func:`repeats_over_steps`): the forward runs the
  synapses once per sample and broadcasts the result over the steps. The integers are the same
  (a synapse is a function of its step's events alone), and the gradient of the broadcast is the
  sum over the steps of the per-step gradients (the per-step path's value, summed in another
  order).

Both read a contiguous float64 CPU input in one compiled pass that stops at the first step
deciding it (:data:`COMPILED`), anything else by torch operations (steps that are one view,
stride 0, are equal without reading them); the answers are the same
(``tests/test_input_steps.py``): an event is a value other than zero (NaN included), and steps
are equal when every value is (``torch.equal``: NaN equals nothing, ``-0.0`` equals ``0.0``).
"""

from __future__ import annotations

import torch

from neurodeploy.compiled import AVAILABLE, njit


def _last_step_with_event(s, used):
    for t in range(used - 1, -1, -1):
        for b in range(s.shape[0]):
            row = s[b, t]
            for k in range(row.shape[0]):
                if row[k] != 0:
                    return t + 1
    return 0


def _steps_repeat(s, used):
    for b in range(s.shape[0]):
        first = s[b, 0]
        for t in range(1, used):
            row = s[b, t]
            for k in range(row.shape[0]):
                if row[k] != first[k]:
                    return False
    return True


_last_step_with_event = njit(_last_step_with_event)
_steps_repeat = njit(_steps_repeat)

COMPILED = AVAILABLE
"""Read contiguous float64 CPU inputs in the compiled passes (``False``: torch only)."""


def _flat_steps(s_in: torch.Tensor):
    """``s_in`` as a ``[B, T, features]`` numpy view where the compiled passes apply, else ``None``."""
    if not (COMPILED and s_in.device.type == "cpu" and s_in.dtype == torch.float64
            and s_in.is_contiguous() and s_in.dim() >= 2 and s_in.numel() > 0):
        return None
    return s_in.detach().reshape(s_in.shape[0], s_in.shape[1], -1).numpy()


def steps_with_events(s_in: torch.Tensor, used: int) -> int:
    """The number of leading steps of ``s_in`` ``[B, T, ...]`` up to and including the last of
    its first ``used`` steps with an event (0 when none has one)."""
    flat = _flat_steps(s_in) if used > 0 else None
    if flat is not None:
        return int(_last_step_with_event(flat, min(int(used), flat.shape[1])))
    while used > 0 and not bool(s_in[:, used - 1].any()):
        used -= 1
    return used


def repeats_over_steps(s_in: torch.Tensor, used: int) -> bool:
    """Whether the first ``used`` steps of ``s_in`` ``[B, T, ...]`` are all equal to step 0 and
    need no gradient (so one step's synaptic output stands for all of them)."""
    if used < 2 or s_in.requires_grad:
        return False
    if s_in.stride(1) == 0 and used <= s_in.shape[1]:  # one view of the same values at every step
        return not (s_in.is_floating_point() and bool(torch.isnan(s_in[:, 0]).any()))
    flat = _flat_steps(s_in) if used <= s_in.shape[1] else None
    if flat is not None:
        return bool(_steps_repeat(flat, int(used)))
    first = s_in[:, :1]
    return bool(torch.equal(s_in[:, :used], first.expand(-1, used, *s_in.shape[2:])))


__all__ = ["COMPILED", "repeats_over_steps", "steps_with_events"]
