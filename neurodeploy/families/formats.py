"""Number-format helpers every family's lowering shares."""

from __future__ import annotations

from typing import Any

from neurodeploy.errors import ConfigError


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


__all__ = ["weight_range"]
