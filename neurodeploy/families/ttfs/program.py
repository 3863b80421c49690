"""The integer time-grid program of a TTFS network, in closed form and clock by clock.

Every window (the input window included) has ``K = 2**time_bits`` clock steps; a spike is an
integer step ``k`` in ``0..K-1`` of its window (``k = K``: silent), i.e. the value
``x_hat = K - k`` in units of the window's step ``dt = L / K``. A spiking layer holds:

* integer weights ``W_int`` (``weight_bits``, symmetric, scale ``s`` from :func:`weight_scale`);
* a weight exponent ``e`` and an integer potential ``V`` in units ``u = s * dt_in / 2**e``: during
  the previous window every input spike adds ``W_int * 2**e`` to the current, and the current is
  added to ``V`` once per step, so at ``t_min`` ``V = 2**e * sum_j W_int_ij * x_hat_j``;
* the B1 ramp: at ``t_min`` the silent inputs deliver their weights and the ramp current
  ``alpha_i = rho - 2**e * sum_j W_int_ij`` switches on, so the total current is the integer
  ``rho`` for every neuron (slope 1 in time units);
* an integer threshold ``theta_int = K * rho - round(D / u)``; the neuron spikes at the first
  step ``k`` of its window with ``V >= theta_int`` (and never again).

Hence ``x_hat = clamp(K + floor((V - theta_int) / rho), 0, K)``: the float network's value
``clamp(W x + D, 0, L)`` rounded down to the grid. The read-out layer integrates the last window
the same way and adds its integer bias ``round(D / u)``; its logits are ``u * (V + bias_int)``,
the prediction their arg-max. A pool op takes per channel the largest value (earliest spike) or,
for ``min_channels``, the smallest (latest spike).

:meth:`TTFSProgram.run` evaluates this closed form (fast); ``method="clock"`` steps through every
clock step with explicit currents. The family's ``neuron_step`` (:mod:`.arith`) is the same clock
for the shared simulator, and :func:`~neurodeploy.families.ttfs.graph.graph_from_program`
writes a program as a deployment graph. Inputs are encoded as ``x_hat_0 = round(x * K)``
(:func:`encode_values`). Jitter moves spike steps by whole steps, clamped to ``0..K``.
Integers are carried in float64 where a matrix product is needed, which is exact below ``2**53``
(checked when a program layer is built, :func:`check_exact`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from neurodeploy.arith.jitter import JitterSpec, parse_spec
from neurodeploy.errors import ConfigError

DTYPE = torch.float64
EXACT_LIMIT = 2**53


def weight_levels(bits: int) -> int:
    """Largest integer weight magnitude of a symmetric ``bits``-bit weight: ``2**(bits-1) - 1``."""
    return 2 ** (bits - 1) - 1


def weight_range(weight: torch.Tensor, percentile: float | None = None) -> float:
    """The magnitude a layer's weight scale is chosen for: ``max|W|``, or with ``percentile``
    (in (0, 100]) that percentile of ``|W|`` (outlier removal before quantisation, Stanojevic et
    al. 2023): weights above it are clipped to the largest integer level. ``percentile=100`` is
    ``max|W|``. Linear interpolation between order statistics (NumPy's default)."""
    a = weight.detach().abs().reshape(-1).to(DTYPE)
    if percentile is None or a.numel() == 0:
        return float(a.max()) if a.numel() else 0.0
    return float(np.percentile(a.cpu().numpy(), float(percentile)))


def weight_scale(
    max_abs: float,
    bits: int,
    step_in: float | None = None,
    step_out: float | None = None,
    min_ramp: int | None = None,
) -> tuple[float, int | None, int]:
    """Per-layer weight scale ``s`` (``W ~ s * W_int``), firing ramp ``rho`` and weight exponent
    ``e`` of the integer program.

    Without ``step_out`` (a read-out layer, or no grid) ``s = max|W| / levels``, ``rho = None``,
    ``e = 0``. A spiking layer integrates its inputs over clock steps of ``step_in`` time units and
    fires on steps of ``step_out``; each input adds ``W_int * 2**e`` to its integer potential per
    step, so the potential unit is ``u = s * step_in / 2**e``, and its slope-1 ramp adds
    ``step_out / u`` units per step. With ``r = step_out * levels / (step_in * max|W|)``, the
    smallest ``e >= 0`` with ``2**e * r >= min_ramp``, ``rho = floor(2**e * r)`` and
    ``s = 2**e * step_out / (rho * step_in)``, the ramp is the whole number ``rho``, every weight
    fits (``max|W| / s <= levels``) and ``s`` exceeds ``max|W| / levels`` by less than
    ``1 / min_ramp``. ``min_ramp`` defaults to the ``ttfs`` profile's ``neuron.min_ramp``.
    """
    levels = weight_levels(bits)
    max_abs = float(max_abs) if max_abs > 0 else 1.0
    if step_in is None or step_out is None:
        return max_abs / levels, None, 0
    if min_ramp is None:
        from neurodeploy.families.ttfs.arith import DEFAULT

        min_ramp = DEFAULT.min_ramp
    r = step_out * levels / (step_in * max_abs)
    e = 0 if r >= min_ramp else math.ceil(math.log2(min_ramp / r))
    while math.floor(2.0**e * r) < min_ramp:  # guard against log2 round-off
        e += 1
    rho = math.floor(2.0**e * r)
    return 2.0**e * step_out / (rho * step_in), rho, e


def draw_shifts(
    shape: tuple[int, ...],
    spec: JitterSpec,
    length: float,
    steps: int | None,
    generator: torch.Generator | None,
    default_steps: int | None = None,
) -> torch.Tensor:
    """Jitter shifts (time units, float64) for one layer of window ``length``.

    Uniform specs shift by ``-k..k`` whole steps of ``length / steps`` (``steps`` defaults to
    ``default_steps``, else the ``ttfs`` profile's ``2**timing.window_bits``); gaussian specs by
    ``N(0, (sigma * length)**2)``, rounded to whole steps when ``steps`` is given and bounded by
    ``max_shift`` steps if set.
    """
    if default_steps is None:
        from neurodeploy.families.ttfs.arith import DEFAULT

        default_steps = 2**DEFAULT.window_bits
    if spec.kind == "uniform":
        grid = steps or default_steps
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
        bound = spec.max_shift * length / default_steps
        shift = shift.clamp(-bound, bound)
    return shift


def encode_values(x: torch.Tensor, input_shape: tuple[int, ...], input_range: tuple[float, float],
                  steps: int) -> torch.Tensor:
    """Integer input values ``x_hat_0 = round(clamp((x - p) / (q - p), 0, 1) * K)`` in ``0..K``."""
    b = x.shape[0]
    if x[0].numel() != math.prod(input_shape):
        raise ConfigError(
            f"inputs of shape {tuple(x.shape[1:])} do not fit the program's input shape "
            f"{tuple(input_shape)}"
        )
    p, q = input_range
    v = ((x.to(DTYPE).reshape(b, *input_shape) - p) / (q - p)).clamp(0.0, 1.0)
    return torch.round(v * steps).to(torch.int64)


def check_exact(label: str, bits: int, fan: int, steps: int, exponent: int) -> None:
    """Refuse a layer whose integer sums could leave exact float64 / int64 arithmetic."""
    levels = weight_levels(bits)
    if levels * fan * steps * 4 >= EXACT_LIMIT or levels * fan * steps * 2**exponent * 4 >= 2**62:
        raise ConfigError(
            f"{label}: {bits}-bit weights (exponent {exponent}) over {fan} inputs and "
            f"{steps} steps exceed exact integer arithmetic; use fewer time or weight bits"
        )


@dataclass
class ProgramLayer:
    """One synapse layer of the integer program (see the module docstring for the units)."""

    kind: str
    weight: torch.Tensor  # int64
    spiking: bool
    steps_in: int
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()
    steps: int | None = None
    ramp: int | None = None
    threshold: torch.Tensor | None = None  # int64, spiking layers
    bias: torch.Tensor | None = None  # int64, read-out
    weight_scale: float = 1.0
    unit: float = 1.0
    window: float | None = None
    clipped_weights: int = 0
    exponent: int = 0

    def potential(self, x_hat: torch.Tensor) -> torch.Tensor:
        """``2**e * sum_j W_int_ij * x_hat_j`` (int64) for integer inputs ``x_hat``."""
        w = self.weight.to(DTYPE)
        xf = x_hat.to(DTYPE)
        out = xf @ w.T if self.kind == "dense" else F.conv2d(xf, w, None, self.stride, self.padding)
        return torch.round(out).to(torch.int64) * (2**self.exponent)

    def broadcast(self, v: torch.Tensor) -> torch.Tensor:
        return v.view(-1, 1, 1) if self.kind == "conv" and v.dim() == 1 else v

    def offset(self) -> torch.Tensor:
        """The integer ``round(D / u)`` of every neuron (spiking: ``K * rho - theta_int``)."""
        if self.spiking:
            return int(self.steps) * int(self.ramp) - self.threshold
        return self.bias

    def to_dict(self) -> dict[str, Any]:
        d = {
            "kind": self.kind,
            "spiking": self.spiking,
            "weight_shape": list(self.weight.shape),
            "weight_range": [int(self.weight.min()), int(self.weight.max())],
            "weight_scale": self.weight_scale,
            "weight_exponent": self.exponent,
            "potential_unit": self.unit,
            "steps_in": self.steps_in,
            "clipped_weights": self.clipped_weights,
        }
        if self.spiking:
            d.update(
                steps=self.steps,
                ramp=self.ramp,
                window=self.window,
                threshold_range=[int(self.threshold.min()), int(self.threshold.max())],
            )
        else:
            d.update(bias_range=[int(self.bias.min()), int(self.bias.max())])
        return d


@dataclass
class ProgramPool:
    """Pooling of values: per channel the largest (earliest spike) or, for ``min_channels``, the
    smallest (latest spike); padding takes no part."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] = (0, 0)
    min_channels: tuple[int, ...] = ()

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        hf = h.to(DTYPE)
        out = F.max_pool2d(hf, self.kernel, self.stride, self.padding)
        if self.min_channels:
            low = -F.max_pool2d(-hf, self.kernel, self.stride, self.padding)
            mask = torch.zeros(h.shape[1], dtype=torch.bool)
            mask[list(self.min_channels)] = True
            out = torch.where(mask.view(1, -1, 1, 1), low, out)
        return torch.round(out).to(torch.int64)


@dataclass
class ProgramFlatten:
    """Flatten everything but the batch axis (torch order)."""

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        return h.flatten(1)


@dataclass
class ProgramRun:
    """Result of running a program: integer read-out and spike counts."""

    readout: torch.Tensor  # int64 [B, classes]
    logits: torch.Tensor  # float64 [B, classes]
    spikes: list[int] = field(default_factory=list)
    neurons: list[int] = field(default_factory=list)
    input_spikes: int = 0
    batch: int = 0
    steps: list[torch.Tensor] = field(default_factory=list)

    @property
    def predictions(self) -> torch.Tensor:
        """Predicted classes (arg-max of the read-out)."""
        return self.readout.argmax(1)

    @property
    def spikes_per_neuron(self) -> float:
        return sum(self.spikes) / max(sum(self.neurons) * self.batch, 1)


class TTFSProgram:
    """The integer program of a TTFS network (built by :func:`neurodeploy.ttfs.build_program`)."""

    def __init__(
        self,
        ops: list[Any],
        input_shape: tuple[int, ...],
        input_range: tuple[float, float],
        time_bits: int,
        weight_bits: int,
        windows: list[float],
    ):
        self.ops = ops
        self.input_shape = tuple(input_shape)
        self.input_range = tuple(input_range)
        self.time_bits = time_bits
        self.weight_bits = weight_bits
        self.windows = windows

    @property
    def steps(self) -> int:
        """Clock steps per window."""
        return 2**self.time_bits

    @property
    def latency(self) -> float:
        """Total latency ``1 + sum L_n`` (time units; the input window lasts 1)."""
        return 1.0 + sum(self.windows)

    @property
    def latency_steps(self) -> int:
        """Clock steps from the first input step to the read-out."""
        return self.steps * (1 + len(self.windows))

    def layers(self) -> list[ProgramLayer]:
        return [op for op in self.ops if isinstance(op, ProgramLayer)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "time_bits": self.time_bits,
            "weight_bits": self.weight_bits,
            "steps_per_window": self.steps,
            "windows": list(self.windows),
            "latency": self.latency,
            "latency_steps": self.latency_steps,
            "layers": [layer.to_dict() for layer in self.layers()],
        }

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Integer input values ``x_hat_0 = round(x * K)`` in ``0..K`` (:func:`encode_values`)."""
        return encode_values(x, self.input_shape, self.input_range, self.steps)

    def _jitter(
        self, x_hat: torch.Tensor, spec: JitterSpec | None, gen: torch.Generator | None
    ) -> torch.Tensor:
        if spec is None:
            return x_hat
        k = self.steps
        shifts = draw_shifts(tuple(x_hat.shape), spec, float(k), k, gen).to(torch.int64)
        step = k - x_hat
        moved = torch.where(step < k, (step + shifts).clamp(0, k), step)
        return k - moved

    def run(
        self,
        x: torch.Tensor,
        jitter: Any = None,
        generator: torch.Generator | None = None,
        method: str = "closed",
        record: bool = False,
    ) -> ProgramRun:
        """Run the program on samples ``x``.

        Args:
            jitter: a spike-time jitter spec on the time grid (int: uniform ``-k..k`` grid steps;
                dict: see :mod:`neurodeploy.arith.jitter`, gaussian ``sigma`` in window lengths),
                or ``None``.
            generator: seeds the jitter draws (input first, then each spiking layer).
            method: ``"closed"`` (closed-form integer spike steps) or ``"clock"`` (step by step).
            record: keep each spiking layer's spike steps (int64, ``K`` = silent).
        """
        if method not in ("closed", "clock"):
            raise ConfigError(f"unknown simulation method {method!r}; expected closed or clock")
        spec = None
        if jitter is not None:
            spec = parse_spec(jitter)
            spec = None if spec.is_null() else spec
        k = self.steps
        h = self._jitter(self.encode(x), spec, generator)
        res = ProgramRun(
            readout=torch.empty(0),
            logits=torch.empty(0),
            batch=int(x.shape[0]),
            input_spikes=int((h > 0).sum()),
        )
        out = None
        for op in self.ops:
            if isinstance(op, ProgramFlatten):
                if out is None:
                    h = op(h)
                else:
                    out = op(out)
                continue
            if isinstance(op, ProgramPool):
                h = op(h)
                continue
            if method == "clock":
                v, current = self._clock_integrate(op, h, op.steps_in)
            else:
                v = op.potential(h)
            if not op.spiking:
                out = v + op.broadcast(op.bias)
                continue
            thr = op.broadcast(op.threshold)
            if method == "clock":
                h = self._clock_fire(op, h, v, current, thr)
            else:
                h = (k + torch.div(v - thr, op.ramp, rounding_mode="floor")).clamp(0, k)
            h = self._jitter(h, spec, generator)
            res.spikes.append(int((h > 0).sum()))
            res.neurons.append(int(h[0].numel()))
            if record:
                res.steps.append(k - h)
        last = self.layers()[-1]
        res.readout = out
        res.logits = out.to(DTYPE) * last.unit
        return res

    @staticmethod
    def _clock_integrate(
        op: ProgramLayer, x_hat: torch.Tensor, steps_in: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Integration phase, one clock step at a time: an arriving spike adds its weight to the
        current, and the current is added to the potential every step. Returns (potential at
        ``t_min``, current of the inputs that spiked)."""
        spike_step = steps_in - x_hat
        current = op.potential(torch.zeros_like(x_hat))
        v = current.clone()
        for s in range(steps_in):
            current = current + op.potential((spike_step == s).to(torch.int64))
            v = v + current
        return v, current

    @staticmethod
    def _clock_fire(
        op: ProgramLayer,
        x_hat: torch.Tensor,
        v: torch.Tensor,
        current: torch.Tensor,
        thr: torch.Tensor,
    ) -> torch.Tensor:
        """Firing phase, one clock step at a time: at ``t_min`` the silent inputs deliver their
        weights and the B1 ramp ``alpha = rho - sum_j W_ij`` switches on (total current ``rho``)."""
        k = op.steps
        current = current + op.potential((x_hat == 0).to(torch.int64))
        alpha = op.ramp - op.potential(torch.ones_like(x_hat))
        current = current + alpha
        fired = torch.zeros_like(v, dtype=torch.bool)
        step = torch.full_like(v, k)
        for s in range(k):
            now = ~fired & (v >= thr)
            step = torch.where(now, torch.full_like(step, s), step)
            fired |= now
            v = v + current
        return k - step


@torch.no_grad()
def program_accuracy(
    program: TTFSProgram,
    x: torch.Tensor,
    y: torch.Tensor,
    jitter: Any = None,
    seed: int = 0,
    batch_size: int = 1000,
) -> dict[str, float]:
    """Deployed accuracy (fraction), spikes per hidden neuron and the input spike fraction on
    ``(x, y)``."""
    gen = torch.Generator().manual_seed(seed)
    correct, spikes, neurons, inp = 0, 0, 0, 0
    for i in range(0, x.shape[0], batch_size):
        r = program.run(x[i : i + batch_size], jitter, gen)
        correct += int((r.logits.argmax(1) == y[i : i + batch_size]).sum())
        spikes += sum(r.spikes)
        neurons += sum(r.neurons) * r.batch
        inp += r.input_spikes
    n = max(int(x.shape[0]), 1)
    return {
        "accuracy": correct / n,
        "spikes_per_neuron": spikes / max(neurons, 1),
        "input_spike_fraction": inp / (n * math.prod(program.input_shape)),
    }
