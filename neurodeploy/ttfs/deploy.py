"""Deploy a TTFS network as an integer time-grid program and simulate it (the deployed accuracy).

Every window (the input window ``[0, 1]`` included) is divided into ``K = 2**time_bits`` clock
steps; a spike is an integer step ``k`` in ``0..K-1`` of its window (``k = K``: silent), i.e. the
value ``x_hat = K - k`` in units of the window's step ``dt = L / K``. A spiking layer holds:

* integer weights ``W_int`` (``weight_bits``, symmetric, scale ``s`` from
  :func:`~neurodeploy.ttfs.constraints.weight_scale`);
* a weight exponent ``e`` and an integer potential ``V`` in units ``u = s * dt_in / 2**e``: during
  the previous window every input spike adds ``W_int * 2**e`` to the current, and the current is
  added to ``V`` once per step, so at ``t_min`` ``V = 2**e * sum_j W_int_ij * x_hat_j``;
* the B1 ramp: at ``t_min`` the silent inputs deliver their weights and the ramp current
  ``alpha_i = rho - 2**e * sum_j W_int_ij`` switches on, so the total current is the integer
  ``rho`` for every neuron (slope 1 in time units);
* an integer threshold ``theta_int = K * rho - round(D / u)``; the neuron spikes at the first
  step ``k`` of its window with ``V >= theta_int`` (and never again).

Hence ``x_hat = clamp(K + floor((V - theta_int) / rho), 0, K)``: the float network's value
``clamp(W x + D, 0, L)`` rounded down to the grid — exactly what the float forward pass computes
under :class:`~neurodeploy.ttfs.constraints.TTFSConstraints` with the same ``weight_bits`` and
``time_bits``. The read-out layer integrates the last window the same way and adds its integer
bias ``round(D / u)``; its logits are ``u * (V + bias_int)``, the prediction their arg-max.

:meth:`TTFSProgram.run` evaluates this closed form (fast); ``method="clock"`` steps through every
clock step with explicit currents (the reference the closed form is tested against). Inputs are
encoded as ``x_hat_0 = round(x * K)``. Jitter moves spike steps by whole steps, clamped to
``0..K`` (``K`` = end of the window, no effect). Integers are carried in float64 where a matrix
product is needed, which is exact below ``2**53`` (checked when the program is built).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from neurodeploy.arith.jitter import JitterSpec
from neurodeploy.errors import ConfigError
from neurodeploy.ttfs.constraints import (
    DEFAULT_TIME_BITS,
    DEFAULT_WEIGHT_BITS,
    TTFSConstraints,
    draw_shifts,
    weight_levels,
    weight_scale,
)
from neurodeploy.ttfs.network import DTYPE, Flatten, Synapse, TimePool, TTFSNetwork

EXACT_LIMIT = 2**53


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
    """The integer program of a TTFS network (build it with :func:`build_program`)."""

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
        self.input_shape = input_shape
        self.input_range = input_range
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
        """Integer input values ``x_hat_0 = round(x * K)`` in ``0..K``."""
        b = x.shape[0]
        if x[0].numel() != math.prod(self.input_shape):
            raise ConfigError(
                f"inputs of shape {tuple(x.shape[1:])} do not fit the program's input shape "
                f"{self.input_shape}"
            )
        p, q = self.input_range
        v = ((x.to(DTYPE).reshape(b, *self.input_shape) - p) / (q - p)).clamp(0.0, 1.0)
        return torch.round(v * self.steps).to(torch.int64)

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
            jitter: a jitter spec as in :class:`TTFSConstraints` (``None``: none).
            generator: seeds the jitter draws (input first, then each spiking layer).
            method: ``"closed"`` (closed-form integer spike steps) or ``"clock"`` (step by step).
            record: keep each spiking layer's spike steps (int64, ``K`` = silent).
        """
        if method not in ("closed", "clock"):
            raise ConfigError(f"unknown simulation method {method!r}; expected closed or clock")
        spec = TTFSConstraints(jitter=jitter).jitter_spec
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
            if isinstance(op, Flatten):
                if out is None:
                    h = h.flatten(1)
                else:
                    out = out.flatten(1)
                continue
            if isinstance(op, TimePool):
                h = -op(-h.to(DTYPE))  # values: earliest spike = largest value
                h = torch.round(h).to(torch.int64)
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


def build_program(net: TTFSNetwork, constraints: TTFSConstraints | None = None) -> TTFSProgram:
    """The integer program of ``net`` (B1 only) with the constraints' ``weight_bits`` (default
    :data:`DEFAULT_WEIGHT_BITS`) and ``time_bits`` (default :data:`DEFAULT_TIME_BITS`)."""
    if net.variant != "b1":
        raise ConfigError(
            f"only b1 TTFS networks have an integer program; this one is {net.variant}"
        )
    c = constraints or TTFSConstraints()
    bits = c.weight_bits or DEFAULT_WEIGHT_BITS
    tb = c.time_bits or DEFAULT_TIME_BITS
    k = 2**tb
    levels = weight_levels(bits)
    ops: list[Any] = []
    prev_len = 1.0
    n = 0
    with torch.no_grad():
        for stage in net.stages:
            if not isinstance(stage, Synapse):
                ops.append(stage)
                continue
            w = stage.weight.detach()
            max_abs = float(w.abs().max())
            dt_in = prev_len / k
            if stage.spiking:
                length = float(net.windows[n])
                s, rho, e = weight_scale(max_abs, bits, dt_in, length / k)
            else:
                s, rho, e = weight_scale(max_abs, bits)
            raw = torch.round(w / s)
            w_int = raw.clamp(-levels, levels).to(torch.int64)
            unit = s * dt_in / 2**e
            d_int = torch.round(stage.bias.detach() / unit).to(torch.int64)
            fan = math.prod(w.shape[1:])
            if levels * fan * k * 4 >= EXACT_LIMIT or levels * fan * k * 2**e * 4 >= 2**62:
                raise ConfigError(
                    f"layer {len(ops)}: {bits}-bit weights (exponent {e}) over {fan} inputs and "
                    f"{k} steps exceed exact integer arithmetic; use fewer time or weight bits"
                )
            layer = ProgramLayer(
                stage.kind,
                w_int,
                stage.spiking,
                k,
                stage.stride,
                stage.padding,
                stage.in_shape,
                stage.out_shape,
                weight_scale=s,
                unit=unit,
                clipped_weights=int((raw.abs() > levels).sum()),
                exponent=e,
            )
            if stage.spiking:
                layer.steps, layer.ramp, layer.window = k, int(rho), length
                layer.threshold = k * int(rho) - d_int
                prev_len = length
                n += 1
            else:
                layer.bias = d_int
            ops.append(layer)
    return TTFSProgram(ops, net.input_shape, net.input_range, tb, bits, net.windows.tolist())


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
