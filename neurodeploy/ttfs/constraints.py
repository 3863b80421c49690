"""Hardware constraints of a TTFS network, applied inside the forward pass (methods.md §6.5).

:class:`TTFSConstraints` is the TTFS reading of the shared
:class:`neurodeploy.quantize.fakequant.Constraints`:

* ``weight_bits`` — symmetric uniform fake quantisation per layer over ``[-max|W|, max|W|]``:
  ``2**(bits-1) - 1`` positive levels, their negatives and zero; straight-through gradient.
  The scale is the one the integer program uses on its time grid (``time_bits``, or
  :data:`DEFAULT_TIME_BITS` when unset), which makes the firing ramp a whole number (see
  :func:`weight_scale`), and the bias-like ``D`` is rounded to the program's potential unit, so
  the float forward pass computes what :mod:`neurodeploy.ttfs.deploy` runs.
* ``jitter`` — spike-time jitter on every input and hidden spike, in training and at test:

  - ``{"kind": "gaussian", "sigma": s}``: a normal shift with standard deviation ``s`` **window
    lengths** of the spiking layer (``s = 0.05`` is 5 % of ``L_n``); rounded to whole grid steps
    when a time grid is set; an optional ``"max_shift"`` bounds it in grid steps;
  - an int ``k`` (the shared field's integer form): a uniform shift of ``-k..k`` whole steps of the
    deployment time grid (``2**time_bits`` steps per window; :data:`DEFAULT_TIME_BITS` if unset).

  A shifted spike is clamped into its window; a spike pushed to ``t_max`` carries the value 0.
* ``time_bits`` — spike times on a grid of ``2**time_bits`` steps per window (the next step at or
  after the exact time; inputs round to the nearest step).
* ``latency_quantile`` — windows ``L_n`` from quantile ``q`` of layer ``n``'s positive
  activations instead of ``1.5 x`` the maximum; larger values clip (the neuron fires at ``t_min``).
* ``latency_budget`` — the shared ``max_steps`` field, read as a budget on the total latency
  ``1 + sum_n L_n`` in units of the input window (which lasts 1): the windows then come from the
  largest quantile that meets it.

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
from neurodeploy.quantize.fakequant import Constraints, straight_through

#: Time-grid resolution (bits: ``2**bits`` steps per window) used where none is given.
DEFAULT_TIME_BITS = 10
#: Weight precision (bits) of a deployment where none is given.
DEFAULT_WEIGHT_BITS = 16
#: Smallest firing ramp (potential units per clock step) of the integer program.
MIN_RAMP = 256


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi
    ):
        raise ConfigError(f"TTFS {name} must be an integer in {lo}..{hi}, got {value!r}")


@dataclass(frozen=True)
class TTFSConstraints:
    """Constraints a TTFS network is fine-tuned and deployed under (see the module docstring).

    Attributes:
        weight_bits: weight precision (bits, 2..16) or ``None`` for float weights.
        jitter: int (uniform steps) or gaussian dict (``sigma`` in window lengths), or ``None``.
        time_bits: spike-time grid (bits, ``2**bits`` steps per window, 1..16) or ``None``.
        latency_quantile: activation quantile in (0, 1] that sets the windows, or ``None``.
        latency_budget: total latency budget (input-window units, > 1) or ``None``.
    """

    weight_bits: int | None = None
    jitter: Any = None
    time_bits: int | None = None
    latency_quantile: float | None = None
    latency_budget: float | None = None

    def __post_init__(self):
        _check_int("weight bits", self.weight_bits, 2, 16)
        _check_int("time bits", self.time_bits, 1, 16)
        if self.jitter is not None:
            parse_spec(self.jitter)
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
        if q is not None and b is not None:
            raise ConfigError("give either a TTFS latency quantile or a latency budget, not both")

    @property
    def jitter_spec(self) -> JitterSpec | None:
        """The parsed jitter spec (``None`` when there is none or it never moves a spike)."""
        if self.jitter is None:
            return None
        spec = parse_spec(self.jitter)
        return None if spec.is_null() else spec

    @property
    def grid_steps(self) -> int | None:
        """Steps per window of the time grid (``None`` for continuous time)."""
        return None if self.time_bits is None else 2**self.time_bits

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TTFSConstraints:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        if not isinstance(d, dict):
            raise ConfigError(f"TTFS constraints must be a mapping, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown TTFS constraint(s) {unknown}; expected {sorted(names)}")
        return cls(**d)

    @classmethod
    def from_constraints(
        cls, c: Constraints, time_bits: int | None = None, latency_quantile: float | None = None
    ) -> TTFSConstraints:
        """The TTFS reading of the shared constraints (``max_steps`` becomes the latency budget)."""
        if c.state_bits is not None:
            raise UnsupportedError(
                "state bits have no meaning for a TTFS network (its neurons keep "
                "no state width limit); leave state_bits unset"
            )
        return cls(
            weight_bits=c.weight_bits,
            jitter=c.jitter,
            time_bits=time_bits,
            latency_quantile=latency_quantile,
            latency_budget=None if c.max_steps is None else float(c.max_steps),
        )


def weight_levels(bits: int) -> int:
    """Largest integer weight magnitude of a symmetric ``bits``-bit weight: ``2**(bits-1) - 1``."""
    return 2 ** (bits - 1) - 1


def weight_scale(
    max_abs: float, bits: int, step_in: float | None = None, step_out: float | None = None
) -> tuple[float, int | None, int]:
    """Per-layer weight scale ``s`` (``W ~ s * W_int``), firing ramp ``rho`` and weight exponent
    ``e`` of the integer program.

    Without ``step_out`` (a read-out layer, or no grid) ``s = max|W| / levels``, ``rho = None``,
    ``e = 0``. A spiking layer integrates its inputs over clock steps of ``step_in`` time units and
    fires on steps of ``step_out``; each input adds ``W_int * 2**e`` to its integer potential per
    step, so the potential unit is ``u = s * step_in / 2**e``, and its slope-1 ramp adds
    ``step_out / u`` units per step. With ``r = step_out * levels / (step_in * max|W|)``, the
    smallest ``e >= 0`` with ``2**e * r >= MIN_RAMP``, ``rho = floor(2**e * r)`` and
    ``s = 2**e * step_out / (rho * step_in)``, the ramp is the whole number ``rho``, every weight
    fits (``max|W| / s <= levels``) and ``s`` exceeds ``max|W| / levels`` by less than
    ``1 / MIN_RAMP``.
    """
    levels = weight_levels(bits)
    max_abs = float(max_abs) if max_abs > 0 else 1.0
    if step_in is None or step_out is None:
        return max_abs / levels, None, 0
    r = step_out * levels / (step_in * max_abs)
    e = 0 if r >= MIN_RAMP else math.ceil(math.log2(MIN_RAMP / r))
    while math.floor(2.0**e * r) < MIN_RAMP:  # guard against log2 round-off
        e += 1
    rho = math.floor(2.0**e * r)
    return 2.0**e * step_out / (rho * step_in), rho, e


def fake_quantize_weight(weight: torch.Tensor, scale: float, bits: int) -> torch.Tensor:
    """``scale * clamp(round(W / scale), -levels, levels)`` with a straight-through gradient."""
    levels = weight_levels(bits)
    exact = torch.clamp(torch.round(weight.detach() / scale), -levels, levels) * scale
    return straight_through(weight, exact)


def fake_quantize_bias(bias: torch.Tensor, unit: float) -> torch.Tensor:
    """``unit * round(D / unit)`` (``unit``: the program's potential unit), straight-through."""
    return straight_through(bias, torch.round(bias.detach() / unit) * unit)


def draw_shifts(
    shape: tuple[int, ...],
    spec: JitterSpec,
    length: float,
    steps: int | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Jitter shifts (time units, float64) for one layer of window ``length``.

    Uniform specs shift by ``-k..k`` whole steps of ``length / steps`` (``steps`` defaults to
    ``2**DEFAULT_TIME_BITS``); gaussian specs by ``N(0, (sigma * length)**2)``, rounded to whole
    steps when ``steps`` is given and bounded by ``max_shift`` steps if set.
    """
    if spec.kind == "uniform":
        grid = steps or 2**DEFAULT_TIME_BITS
        k = int(spec.max_shift or 0)
        n = torch.randint(-k, k + 1, shape, generator=generator, dtype=torch.int64)
        return n.to(torch.float64) * (length / grid)
    shift = torch.randn(shape, generator=generator, dtype=torch.float64) * (spec.sigma * length)
    if steps is not None:
        dt = length / steps
        shift = torch.round(shift / dt)
        if spec.max_shift is not None:
            shift = shift.clamp(-spec.max_shift, spec.max_shift)
        return shift * dt
    if spec.max_shift is not None:
        bound = spec.max_shift * length / (2**DEFAULT_TIME_BITS)
        shift = shift.clamp(-bound, bound)
    return shift


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
