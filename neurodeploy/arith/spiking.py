"""Threshold test and reset, shared by the families.

Given a membrane potential ``v`` and an effective threshold ``theta`` (already in state units,
e.g. Loihi's ``vThMant`` shifted by the threshold shift), a neuron emits ``n`` events in one step:

- comparison: strict ``v > theta`` (Loihi, docs/loihi.md §3 step 6) or non-strict ``v >= theta``
  (Xylo);
- with ``max_spikes == 1`` or reset ``"zero"``: ``n = 1`` when the comparison holds, else 0;
- with ``max_spikes > 1`` and reset ``"subtract"`` (Xylo's multi-event neurons): the number of
  times the threshold can be subtracted while the comparison still holds, capped at
  ``max_spikes``: ``n = min(floor(v / theta), max)`` (non-strict) or ``min(floor((v-1) / theta),
  max)`` (strict), for ``theta > 0``; for ``theta <= 0`` the comparison never stops holding, so
  ``n = max`` whenever it holds.

Reset: ``"zero"`` sets ``v = 0`` where ``n > 0``; ``"subtract"`` sets ``v = v - n * theta``.
A non-spiking group (a read-out integrator) never emits and is never reset.
"""

from __future__ import annotations

from typing import Any

from neurodeploy.arith import ops
from neurodeploy.arith.ops import Array

RESET_MODES = ("zero", "subtract")


def spike_and_reset(
    v: Array,
    theta: Any,
    *,
    strict: bool,
    reset: str,
    max_spikes: int = 1,
    spiking: bool = True,
) -> tuple[Array, Array]:
    """Return ``(events, v_after_reset)``; ``events`` has ``v``'s dtype and holds 0..max_spikes.

    Args:
        v: membrane potentials in state units.
        theta: effective threshold in state units (scalar or broadcastable array).
        strict: ``True`` for ``v > theta``, ``False`` for ``v >= theta``.
        reset: ``"zero"`` or ``"subtract"``.
        max_spikes: most events per neuron per step (1 for binary spikes).
        spiking: ``False`` for a group that never spikes.
    """
    if reset not in RESET_MODES:
        raise ValueError(f"unknown reset mode {reset!r}; expected one of {RESET_MODES}")
    if not spiking:
        return ops.zeros_like(v), v
    theta = ops.like(theta, v)
    fired = (v > theta) if strict else (v >= theta)
    if max_spikes <= 1 or reset == "zero":
        events = ops.as_dtype_of(fired, v)
        if reset == "zero":
            return events, ops.where(fired, 0, v)
        return events, v - events * theta
    # several events per step, subtractive reset
    if isinstance(theta, (int, float)):
        if theta > 0:
            n = ops.floor_div(v - (1 if strict else 0), theta)
            n = ops.clip(n, 0, max_spikes)
        else:
            n = ops.as_dtype_of(fired, v) * max_spikes
    else:
        positive = theta > 0
        safe = ops.where(positive, theta, 1)
        n = ops.clip(ops.floor_div(v - (1 if strict else 0), safe), 0, max_spikes)
        n = ops.where(positive, n, ops.as_dtype_of(fired, v) * max_spikes)
    return n, v - n * theta
