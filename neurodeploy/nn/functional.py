"""Pure neuron math, one time step at a time, on float tensors.

These functions hold no state and no parameters: modules in :mod:`neurodeploy.nn.neurons` own the
parameters and the loop over time. Notation (docs/methods.md §1): input current ``I[t]``, pre-spike
potential ``M[t]``, post-reset potential ``U[t]``, threshold ``V``, spikes ``S[t]``.
All decays are per-step factors in [0, 1] (dimensionless); time is counted in steps.
"""

from __future__ import annotations

import torch

from neurodeploy.errors import ConfigError
from neurodeploy.families.loihi.units import DECAY_UNIT as CUBA_DECAY_UNIT

LIF_FORMS = ("leak", "decay_input")
RESET_MODES = ("zero", "subtract")
# The CUBA neuron is Loihi's: a decay ``d`` in 0..CUBA_DECAY_UNIT multiplies the state by
# ``(CUBA_DECAY_UNIT - d) / CUBA_DECAY_UNIT`` (neurodeploy.families.loihi.units).


def lif_charge(u: torch.Tensor, current: torch.Tensor, decay: torch.Tensor | float,
               form: str = "leak") -> torch.Tensor:
    """One LIF charge step, returning the pre-spike potential ``M[t]``.

    ``form="leak"``: ``M = decay * U + I``; ``form="decay_input"``: ``M = decay * U + (1 - decay) * I``
    (with ``decay = 1 - 1/tau`` this is ``M = (1 - 1/tau) U + I / tau``, the PLIF/MP-Init form).
    ``decay = 1`` gives the IF neuron in the leak form.
    """
    if form == "leak":
        return decay * u + current
    if form == "decay_input":
        return decay * u + (1 - decay) * current
    raise ConfigError(f"unknown LIF form {form!r}; choose one of {', '.join(LIF_FORMS)}")


def cuba_charge(i: torch.Tensor, u: torch.Tensor, current: torch.Tensor,
                current_factor: float, voltage_factor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One current-based LIF step: ``i' = current_factor * i + I``; ``M = voltage_factor * U + i'``.

    Returns ``(i', M)``. With Loihi's parametrisation the factors are :func:`cuba_factor` of the decays.
    """
    i_new = current_factor * i + current
    return i_new, voltage_factor * u + i_new


def reset(m: torch.Tensor, spikes: torch.Tensor, v_th: torch.Tensor | float, mode: str) -> torch.Tensor:
    """Post-reset potential ``U[t]`` from ``M[t]`` and the spikes ``S[t]``.

    ``mode="zero"``: ``U = M (1 - S)``; ``mode="subtract"``: ``U = M - V S``.
    """
    if mode == "zero":
        return m * (1 - spikes)
    if mode == "subtract":
        return m - v_th * spikes
    raise ConfigError(f"unknown reset mode {mode!r}; choose one of {', '.join(RESET_MODES)}")


def decay_from_tau(tau: float) -> float:
    """Per-step decay factor ``1 - 1/tau`` for a time constant ``tau`` in steps (``tau >= 1``)."""
    if tau < 1:
        raise ConfigError(f"a time constant must be at least 1 step, got tau={tau}")
    return 1.0 - 1.0 / tau


def cuba_factor(decay: int) -> float:
    """Per-step factor ``(U - decay) / U`` of a Loihi decay ``decay`` in ``0..U``, ``U`` the family's
    decay unit (``CUBA_DECAY_UNIT``)."""
    if not isinstance(decay, int) or isinstance(decay, bool) or not 0 <= decay <= CUBA_DECAY_UNIT:
        raise ConfigError(f"a CUBA decay must be an integer in 0..{CUBA_DECAY_UNIT}, got {decay!r}")
    return (CUBA_DECAY_UNIT - decay) / CUBA_DECAY_UNIT
