"""Number-format helpers every family's lowering shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from neurodeploy.errors import ConfigError


@dataclass(frozen=True)
class LayerFormat:
    """The integer settings of one lowered block (everything but its weights and bias values), as
    a family's ``lowering.layer_format`` returns them to the fake-quant network.

    Attributes:
        w_lo, w_hi: integer weight range; weight_exp: the synapse layer's weight exponent.
        threshold: threshold mantissa; bias_exp: bias exponent.
        b_lo, b_hi: bias mantissa range; bias_factor: mantissa units per ``s·b``.
        initial_v: initial potential in state units.
        state_unit: state units per float potential unit.
        current_decay, voltage_decay: decays in the family's units.
    """

    w_lo: int
    w_hi: int
    weight_exp: int
    threshold: int
    bias_exp: int
    b_lo: int
    b_hi: int
    bias_factor: float
    initial_v: int
    state_unit: float
    current_decay: int
    voltage_decay: int


def weight_range(profile: Any, weight_bits: int | None = None) -> tuple[int, int]:
    """Integer weight range: the profile's (``weights.range``), or a signed ``weight_bits`` range
    inside it (2..16 bits; one-line :class:`ConfigError` when it does not fit)."""
    lo, hi = profile.weights.range
    if weight_bits is None:
        return int(lo), int(hi)
    if isinstance(weight_bits, bool) or not isinstance(weight_bits, int) or not 2 <= weight_bits <= 16:
        raise ConfigError(f"weight bits must be an integer in 2..16, got {weight_bits!r}")
    blo, bhi = -(2 ** (weight_bits - 1)), 2 ** (weight_bits - 1) - 1
    if blo < lo or bhi > hi:
        raise ConfigError(f"{weight_bits}-bit weights do not fit profile {profile.name}'s weight range "
                          f"[{lo}, {hi}]")
    return blo, bhi


__all__ = ["LayerFormat", "weight_range"]
