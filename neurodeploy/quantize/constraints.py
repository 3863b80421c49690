"""Hardware constraints applied while fine-tuning and simulating (one meaning everywhere)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from neurodeploy.arith.jitter import parse_spec
from neurodeploy.errors import ConfigError


@dataclass(frozen=True)
class Constraints:
    """Hardware constraints applied while fine-tuning and simulating.

    Attributes:
        weight_bits: weight precision in bits (2..16, within the profile's weight range), or
            ``None`` for the profile's own.
        jitter: spike-time jitter (an int ``k`` = uniform shift in ``[-k, k]`` steps, or a dict
            ``{"kind": "gaussian", "sigma": s}``), applied to input and hidden spikes, or ``None``.
        max_steps: latency budget: input steps per sample (``<=`` the trained ``T``), or ``None``.
        state_bits: width of the neuron state ``u``/``v`` in bits (overrides the profile), or
            ``None``.
    """

    weight_bits: int | None = None
    jitter: Any = None
    max_steps: int | None = None
    state_bits: int | None = None

    def __post_init__(self):
        if self.weight_bits is not None and (
            isinstance(self.weight_bits, bool) or not isinstance(self.weight_bits, int)
            or not 2 <= self.weight_bits <= 16
        ):
            raise ConfigError(f"weight bits must be an integer in 2..16, got {self.weight_bits!r}")
        if self.max_steps is not None and (
            isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < 1
        ):
            raise ConfigError(f"max steps must be a positive integer, got {self.max_steps!r}")
        if self.state_bits is not None and (
            isinstance(self.state_bits, bool) or not isinstance(self.state_bits, int)
            or not 4 <= self.state_bits <= 32
        ):
            raise ConfigError(f"state bits must be an integer in 4..32, got {self.state_bits!r}")
        if self.jitter is not None:
            parse_spec(self.jitter)  # raises ConfigError on a negative or malformed spec

    def apply_to_profile(self, profile: Any) -> Any:
        """The profile with the state width overridden (if asked)."""
        if self.state_bits is None:
            return profile
        st = dataclasses.replace(profile.state, current_bits=self.state_bits,
                                 voltage_bits=self.state_bits)
        return dataclasses.replace(profile, state=st)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
