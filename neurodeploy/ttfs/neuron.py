"""Spike times of time-to-first-spike (TTFS) neurons in closed form (docs/methods.md §6.1-6.2).

Layer ``n`` owns the window ``[t_min, t_max]`` (time units; ``L = t_max - t_min``). Its inputs all
spike inside the previous window, which ends at ``t_min``; a silent input counts as a spike at
``t_min`` (the end of its own window). Each input spike at ``t_j`` starts a constant current
``W_ij``, so at ``t_min`` the potential is ``a_i = sum_j W_ij (t_min - t_j)``. In the firing phase
``t >= t_min`` a ramp current ``alpha_i`` is switched on and the neuron fires once, at the first
crossing of its threshold ``theta_i``:

* **B1**: ``alpha_i = 1 - sum_j W_ij``; the potential rises with slope exactly 1, so
  ``t_i = t_min + theta_i - a_i`` (the reference code's Eq. 7).
* **alpha1**: ``alpha = 1``; the slope is ``B_i = 1 + sum_j W_ij`` (it depends on the weights), so
  ``t_i = t_min + (theta_i - a_i) / B_i``; with ``B_i <= 0`` a neuron below threshold at ``t_min``
  never fires.

In both, a neuron already at or above threshold at ``t_min`` fires at ``t_min`` (its value is
clipped to the window length), and one that would fire at or after ``t_max`` is silent,
represented by ``t_i = t_max``. Gradients are those of the closed forms (autograd): for B1,
``dt_i/dt_j = W_ij`` and ``dt_i/dW_ij = -(t_min - t_j)``, the ReLU derivatives.
"""

from __future__ import annotations

import torch

from neurodeploy.quantize.fakequant import straight_through

VARIANTS = ("b1", "alpha1")
#: Steps by which a time may exceed a grid point and still count as on it (float round-off).
GRID_TOLERANCE = 1e-7


def b1_spike_times(
    potential: torch.Tensor, theta: torch.Tensor, t_min: torch.Tensor, t_max: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spike times (time units) of B1 neurons.

    Args:
        potential: ``a_i = sum_j W_ij (t_min - t_j)``, the potential at ``t_min``.
        theta: thresholds ``theta_i`` (broadcast against ``potential``).
        t_min, t_max: the layer's window (0-dim tensors, time units).

    Returns:
        ``(t, clipped)``: spike times in ``[t_min, t_max]`` (``t_max`` = silent) and a boolean mask
        of the neurons whose crossing lay before ``t_min`` (value above the window, clipped).
    """
    raw = t_min + theta - potential
    clipped = raw < t_min
    t = torch.where(raw < t_max, raw, t_max)
    t = torch.where(clipped, t_min, t)
    return t, clipped


def alpha1_spike_times(
    potential: torch.Tensor,
    theta: torch.Tensor,
    slope: torch.Tensor,
    t_min: torch.Tensor,
    t_max: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spike times (time units) of alpha1 neurons (constant ramp current 1).

    Args:
        potential: ``a_i`` as for :func:`b1_spike_times`.
        theta: thresholds.
        slope: ``B_i = 1 + sum_j W_ij`` (firing-phase slope, potential units per time unit).
        t_min, t_max: the window.

    Returns:
        ``(t, clipped)`` as for :func:`b1_spike_times`.
    """
    excess = theta - potential
    rising = slope > 0
    safe = torch.where(rising, slope, torch.ones_like(slope))
    raw = t_min + excess / safe
    clipped = excess <= 0
    t = torch.where(rising & (raw < t_max), raw, t_max)
    t = torch.where(clipped, t_min, t)
    return t, clipped


def quantize_times(
    t: torch.Tensor, t_min: torch.Tensor, length: torch.Tensor, steps: int
) -> torch.Tensor:
    """Spike times on a grid of ``steps`` steps per window: the first step at or after ``t``.

    A clocked neuron detects its threshold crossing at the next step, so ``t`` moves up to
    ``t_min + k * length / steps`` with ``k = ceil((t - t_min) * steps / length)`` clipped to
    ``0..steps`` (``k = steps`` is ``t_max``, silent). A time within :data:`GRID_TOLERANCE` steps
    above a grid point counts as on it, so float round-off cannot move an exact crossing to the next
    step. The value goes through; the gradient is that of ``t`` (straight-through).
    """
    k = torch.ceil(((t.detach() - t_min) / length) * steps - GRID_TOLERANCE).clamp(0, steps)
    return straight_through(t, t_min + k * (length / steps))
