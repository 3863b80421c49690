"""Constraints of a TTFS network, applied inside the forward pass (docs/methods.md §6.5).

:class:`TTFSConstraints` has its own fields, each with one meaning; where a shared
:class:`neurodeploy.quantize.constraints.Constraints` field reads differently for a TTFS network,
the TTFS meaning has its own name:

* ``weight_bits`` — the shared meaning: symmetric uniform fake quantisation per layer over
  ``[-max|W|, max|W|]``: ``2**(bits-1) - 1`` positive levels, their negatives and zero;
  straight-through gradient. The scale is the one the integer program uses on its time grid
  (``time_bits``, or the ``ttfs`` profile's ``timing.window_bits`` when unset), which makes the
  firing ramp a whole number (see :func:`weight_scale`), and the bias-like ``D`` is rounded to the
  program's potential unit, so the float forward pass computes what :mod:`neurodeploy.ttfs.deploy`
  runs.
* ``weight_percentile`` — outlier removal before weight quantisation (Stanojevic et al. 2023):
  the scale is chosen for percentile ``p`` of ``|W|`` per layer instead of ``max|W|``, and the
  weights above it clip to the largest level (:func:`weight_range`); ``None`` (the default) is
  ``max|W|``. It acts only with ``weight_bits``.
* ``time_jitter`` — spike-time jitter on every input and hidden spike, in training and at test:

  - ``{"kind": "gaussian", "sigma": s}``: a normal shift with standard deviation ``s`` **window
    lengths** of the spiking layer (``s = 0.05`` is 5 % of ``L_n``); rounded to whole grid steps
    when a time grid is set; an optional ``"max_shift"`` bounds it in grid steps;
  - an int ``k``: a uniform shift of ``-k..k`` whole steps of the deployment time grid
    (``2**time_bits`` steps per window; the profile's ``timing.window_bits`` if unset).

  A shifted spike is clamped into its window; a spike pushed to ``t_max`` carries the value 0.
  (The shared ``jitter`` counts simulator steps, also for its gaussian ``sigma``;
  :meth:`TTFSConstraints.from_constraints` converts it.)
* ``time_bits`` — spike times on a grid of ``2**time_bits`` steps per window (the next step at or
  after the exact time; inputs round to the nearest step).
* ``latency_quantile`` — windows ``L_n`` from quantile ``q`` of layer ``n``'s positive
  activations instead of ``1.5 x`` the maximum; larger values clip (the neuron fires at ``t_min``).
* ``latency_budget`` — a budget on the total latency ``1 + sum_n L_n`` in units of the input
  window (which lasts 1): the windows then come from the largest quantile that meets it. It is
  not the shared ``max_steps`` (input clock steps), which bounds the input window's
  ``2**time_bits`` steps instead.

``state_bits`` of the shared class has no TTFS meaning and is refused.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from neurodeploy.arith.jitter import JitterSpec, parse_spec
from neurodeploy.errors import ConfigError, UnsupportedError
from neurodeploy.families.ttfs.program import (
    draw_shifts,
    weight_levels,
    weight_range,
    weight_scale,
)
from neurodeploy.hardware import load_profile
from neurodeploy.quantize.fakequant import Constraints, straight_through

__all__ = ["TTFSConstraints", "draw_shifts", "fake_quantize_bias", "fake_quantize_weight",
           "jitter_times", "weight_levels", "weight_range", "weight_scale"]

LEGACY_KEYS = {"jitter": "time_jitter"}
"""Field names of TTFS constraints stored by earlier versions (same meaning, old name)."""


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi
    ):
        raise ConfigError(f"TTFS {name} must be an integer in {lo}..{hi}, got {value!r}")


@dataclass(frozen=True)
class TTFSConstraints:
    """Constraints a TTFS network is fine-tuned and deployed under (see the module docstring).

    Attributes:
        weight_bits: weight precision (bits, 2 up to the ``ttfs`` profile's ``weights.bits``) or
            ``None`` for float weights.
        time_jitter: int (uniform grid steps) or gaussian dict (``sigma`` in window lengths), or
            ``None``.
        time_bits: spike-time grid (bits, ``2**bits`` steps per window, 1 up to the profile's
            ``timing.max_window_bits``) or ``None``.
        latency_quantile: activation quantile in (0, 1] that sets the windows, or ``None``.
        latency_budget: total latency budget (input-window units, > 1) or ``None``.
        weight_percentile: percentile of ``|W|`` in (0, 100] the weight scale is chosen for, or
            ``None`` for ``max|W|``.
    """

    weight_bits: int | None = None
    time_jitter: Any = None
    time_bits: int | None = None
    latency_quantile: float | None = None
    latency_budget: float | None = None
    weight_percentile: float | None = None

    def __post_init__(self):
        p = load_profile("ttfs")
        _check_int("weight bits", self.weight_bits, 2, p.weights.bits)
        _check_int("time bits", self.time_bits, 1, p.timing.max_window_bits or
                   p.timing.window_bits)
        if self.time_jitter is not None:
            parse_spec(self.time_jitter)
        q = self.latency_quantile
        if q is not None and (
            isinstance(q, bool) or not isinstance(q, int | float) or not 0 < float(q) <= 1
        ):
            raise ConfigError(f"TTFS latency quantile must be in (0, 1], got {q!r}")
        b = self.latency_budget
        if b is not None and (
            isinstance(b, bool)
            or not isinstance(b, int | float)
            or not math.isfinite(float(b))
            or float(b) <= 1
        ):
            raise ConfigError(f"TTFS latency budget must exceed 1 (input-window units), got {b!r}")
        wp = self.weight_percentile
        if wp is not None and (
            isinstance(wp, bool)
            or not isinstance(wp, int | float)
            or not 0 < float(wp) <= 100
        ):
            raise ConfigError(f"TTFS weight percentile must be in (0, 100], got {wp!r}")
        if wp is not None and self.weight_bits is None:
            raise ConfigError("a TTFS weight percentile needs weight bits (it sets their scale)")
        if q is not None and b is not None:
            raise ConfigError("give either a TTFS latency quantile or a latency budget, not both")

    @property
    def jitter_spec(self) -> JitterSpec | None:
        """The parsed time jitter (``None`` when there is none or it never moves a spike)."""
        if self.time_jitter is None:
            return None
        spec = parse_spec(self.time_jitter)
        return None if spec.is_null() else spec

    @property
    def grid_steps(self) -> int | None:
        """Steps per window of the time grid (``None`` for continuous time)."""
        return None if self.time_bits is None else 2**self.time_bits

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TTFSConstraints:
        """Inverse of :meth:`to_dict` (earlier names in :data:`LEGACY_KEYS` are read); unknown
        keys raise :class:`ConfigError`."""
        if not isinstance(d, dict):
            raise ConfigError(f"TTFS constraints must be a mapping, got {type(d).__name__}")
        d = {LEGACY_KEYS.get(k, k): v for k, v in d.items()}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown TTFS constraint(s) {unknown}; expected {sorted(names)}")
        return cls(**d)

    @classmethod
    def from_constraints(
        cls,
        c: Constraints,
        time_bits: int | None = None,
        latency_quantile: float | None = None,
        latency_budget: float | None = None,
    ) -> TTFSConstraints:
        """The shared constraints with their shared meaning on a TTFS deployment graph, whose
        simulator steps are the time grid's steps: ``weight_bits`` as is; ``max_steps`` (input
        steps) bounds the input window, so ``time_bits`` = ``floor(log2(max_steps))`` unless
        given (a given ``time_bits`` with more steps is refused); ``jitter`` in steps becomes
        ``time_jitter`` (an int unchanged, a gaussian ``sigma`` divided by the steps per window).
        The TTFS-only ``latency_quantile`` and ``latency_budget`` are passed separately."""
        if c.state_bits is not None:
            raise UnsupportedError(
                "state bits have no meaning for a TTFS network (its neurons keep "
                "no state width limit); leave state_bits unset"
            )
        tb = time_bits
        if c.max_steps is not None:
            fit = int(math.floor(math.log2(c.max_steps)))
            if tb is None:
                if fit < 1:
                    raise ConfigError(f"max steps {c.max_steps} leave no TTFS input window of at "
                                      "least 2 steps")
                tb = fit
            elif 2**tb > c.max_steps:
                raise ConfigError(f"{tb} time bits give an input window of {2**tb} steps, above "
                                  f"max steps {c.max_steps}")
        jitter = c.jitter
        if isinstance(jitter, dict) and jitter.get("kind") == "gaussian":
            steps = 2 ** (tb or load_profile("ttfs").timing.window_bits)
            jitter = {**jitter, "sigma": float(jitter.get("sigma", 0.0)) / steps}
        return cls(
            weight_bits=c.weight_bits,
            time_jitter=jitter,
            time_bits=tb,
            latency_quantile=latency_quantile,
            latency_budget=latency_budget,
        )


def fake_quantize_weight(weight: torch.Tensor, scale: float, bits: int) -> torch.Tensor:
    """``scale * clamp(round(W / scale), -levels, levels)`` with a straight-through gradient."""
    levels = weight_levels(bits)
    exact = torch.clamp(torch.round(weight.detach() / scale), -levels, levels) * scale
    return straight_through(weight, exact)


def fake_quantize_bias(bias: torch.Tensor, unit: float) -> torch.Tensor:
    """``unit * round(D / unit)`` (``unit``: the program's potential unit), straight-through."""
    return straight_through(bias, torch.round(bias.detach() / unit) * unit)


def jitter_times(
    t: torch.Tensor,
    t_min: torch.Tensor,
    t_max: torch.Tensor,
    spec: JitterSpec,
    steps: int | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Shift every spike (``t < t_max``) by a drawn jitter and clamp it into ``[t_min, t_max]``.

    Silent neurons stay silent. The value is the jittered time; the gradient that of ``t``.
    """
    length = float(t_max - t_min)
    shifts = draw_shifts(tuple(t.shape), spec, length, steps, generator)
    moved = torch.where(t.detach() < t_max, (t.detach() + shifts).clamp(t_min, t_max), t.detach())
    return straight_through(t, moved)
