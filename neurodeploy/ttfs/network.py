"""A feed-forward TTFS network in float64: spike times layer by layer, read-out as a potential.

The network is a list of stages: :class:`Synapse` (a dense or conv synapse layer and the neurons it
feeds), :class:`TimePool` (max-pooling of values = earliest spike in the pool window; per channel it
can be a min-pool = latest spike) and :class:`Flatten`. Every synapse stage but the last is a
spiking layer with a window ``L_n`` (``windows[n]``, time units); the windows are chained after the
input window ``[0, 1]``: ``t_min^(1) = 1``, ``t_min^(n+1) = t_max^(n) = t_min^(n) + L_n``.

Inputs ``x`` (scaled from ``input_range`` to ``[0, 1]``) spike at ``t = 1 - x``; ``x = 0`` never
spikes. A spiking layer fires once per neuron at the closed-form times of
:mod:`neurodeploy.ttfs.neuron` with thresholds ``theta_i = L_n - D_i`` (``D`` is the trainable
bias-like parameter, stored as ``bias``). The last synapse layer never spikes: its logits are its
potentials at the end of its integration phase, ``z_i = sum_j W_ij (t_min - t_j) + D_i``
(the bias realised as a constant current over that phase).

Everything runs in float64, so for the B1 variant ``x_i = t_max - t_i`` equals the ReLU twin's
activation to round-off (:mod:`neurodeploy.ttfs.mapping`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from neurodeploy.errors import ConfigError
from neurodeploy.families.ttfs.arith import DEFAULT as FAMILY_DEFAULT
from neurodeploy.ttfs.constraints import (
    TTFSConstraints,
    fake_quantize_bias,
    fake_quantize_weight,
    jitter_times,
    weight_range,
    weight_scale,
)
from neurodeploy.ttfs.neuron import VARIANTS, alpha1_spike_times, b1_spike_times, quantize_times

DTYPE = torch.float64


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    a, b = v
    return (int(a), int(b))


class Synapse(nn.Module):
    """A dense or conv synapse layer with its neurons.

    ``weight`` is ``[out, in]`` (dense) or ``[out, in, kh, kw]`` (conv); ``bias`` holds ``D``: one
    value per output neuron (dense), per channel (conv, ``[C]``) or per output position (conv,
    ``[C, H, W]``, e.g. after folding a BatchNorm into a zero-padded conv). ``spiking`` is False for
    the read-out layer.
    """

    def __init__(
        self,
        kind: str,
        weight: torch.Tensor,
        bias: torch.Tensor,
        *,
        spiking: bool,
        stride: Any = 1,
        padding: Any = 0,
        in_shape: tuple[int, ...] = (),
        out_shape: tuple[int, ...] = (),
    ):
        super().__init__()
        if kind not in ("dense", "conv"):
            raise ConfigError(f"unknown TTFS synapse kind {kind!r}; expected dense or conv")
        self.kind = kind
        self.weight = nn.Parameter(weight.detach().to(DTYPE).clone())
        self.bias = nn.Parameter(bias.detach().to(DTYPE).clone())
        self.spiking = bool(spiking)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.in_shape = tuple(int(v) for v in in_shape)
        self.out_shape = tuple(int(v) for v in out_shape)

    def potential(self, u: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """``sum_j W_ij u_j`` for elapsed times ``u_j = t_min - t_j`` (time units)."""
        w = self.weight if weight is None else weight
        if self.kind == "dense":
            return u @ w.T
        return F.conv2d(u, w, None, self.stride, self.padding)

    def broadcast_bias(self, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``D`` shaped to broadcast against a batch of outputs."""
        d = self.bias if bias is None else bias
        if self.kind == "conv" and d.dim() == 1:
            return d.view(-1, 1, 1)
        return d

    def fan_in_sum(self, weight: torch.Tensor | None = None) -> torch.Tensor:
        """``sum_j W_ij`` over each neuron's actual inputs (zero padding has no neuron)."""
        w = self.weight if weight is None else weight
        if self.kind == "dense":
            return w.sum(1)
        ones = torch.ones((1, *self.in_shape), dtype=w.dtype)
        return F.conv2d(ones, w, None, self.stride, self.padding)[0]

    @property
    def neurons(self) -> int:
        """Number of neurons this stage feeds."""
        return int(self.weight.shape[0]) if self.kind == "dense" else math.prod(self.out_shape)

    def spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "weight_shape": list(self.weight.shape),
            "bias_shape": list(self.bias.shape),
            "spiking": self.spiking,
            "stride": list(self.stride),
            "padding": list(self.padding),
            "in_shape": list(self.in_shape),
            "out_shape": list(self.out_shape),
        }


class TimePool(nn.Module):
    """2-D pooling of spike times: per channel the earliest spike (max-pool of values) or, for the
    channels in ``min_channels``, the latest (min-pool of values). Padding is ignored."""

    def __init__(
        self,
        kernel: Any,
        stride: Any = None,
        padding: Any = 0,
        channels: int = 0,
        min_channels: list[int] | tuple[int, ...] = (),
    ):
        super().__init__()
        self.kernel = _pair(kernel)
        self.stride = _pair(stride if stride is not None else kernel)
        self.padding = _pair(padding)
        self.channels = int(channels)
        self.min_channels = sorted(int(c) for c in min_channels)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        earliest = -F.max_pool2d(-t, self.kernel, self.stride, self.padding)
        if not self.min_channels:
            return earliest
        latest = F.max_pool2d(t, self.kernel, self.stride, self.padding)
        mask = torch.zeros(t.shape[1], dtype=torch.bool)
        mask[self.min_channels] = True
        return torch.where(mask.view(1, -1, 1, 1), latest, earliest)

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "pool",
            "kernel": list(self.kernel),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "channels": self.channels,
            "min_channels": list(self.min_channels),
        }


class Flatten(nn.Module):
    """Flatten everything but the batch axis."""

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return t.flatten(1)

    def spec(self) -> dict[str, Any]:
        return {"kind": "flatten"}


@dataclass
class TTFSRun:
    """What one forward pass produced.

    Attributes:
        logits: read-out potentials ``[B, classes]`` (float64).
        spikes: per spiking layer, the number of neurons that fired (summed over the batch).
        neurons: per spiking layer, neurons per sample.
        clipped: per spiking layer, neurons whose value exceeded the window (fired at ``t_min``).
        input_spikes: number of input neurons that fired (summed over the batch).
        input_neurons: input neurons per sample.
        batch: samples in the batch.
        times: per spiking layer, spike times (only with ``record=True``).
        activity: sum over samples and spiking neurons of the values ``x = t_max - t`` (with
            gradient; only with ``activity=True``, else ``None``) — the L1 activity of the
            equivalent ReLU network.
    """

    logits: torch.Tensor
    spikes: list[int] = field(default_factory=list)
    neurons: list[int] = field(default_factory=list)
    clipped: list[int] = field(default_factory=list)
    input_spikes: int = 0
    input_neurons: int = 0
    batch: int = 0
    times: list[torch.Tensor] = field(default_factory=list)
    activity: torch.Tensor | None = None

    @property
    def spikes_per_neuron(self) -> float:
        """Spikes per hidden neuron per sample (= the fraction of hidden neurons that fire)."""
        return sum(self.spikes) / max(sum(self.neurons) * self.batch, 1)


class TTFSNetwork(nn.Module):
    """A TTFS network (see the module docstring).

    Args:
        stages: :class:`Synapse`, :class:`TimePool` and :class:`Flatten` stages; the last synapse
            is the (non-spiking) read-out and may only be followed by flattens.
        windows: window length ``L_n`` (time units) of each spiking layer.
        input_shape: shape of one sample.
        input_range: ``(p, q)``: inputs in ``[p, q]`` map to ``[0, 1]`` (spike times ``1 .. 0``).
        variant: ``"b1"`` (slope 1, exact ReLU mapping) or ``"alpha1"`` (ramp current 1).
    """

    def __init__(
        self,
        stages: list[nn.Module],
        windows: torch.Tensor | list[float],
        input_shape: tuple[int, ...],
        input_range: tuple[float, float] = (0.0, 1.0),
        variant: str = "b1",
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ConfigError(
                f"unknown TTFS variant {variant!r}; expected one of {', '.join(VARIANTS)}"
            )
        self.stages = nn.ModuleList(stages)
        synapses = [s for s in stages if isinstance(s, Synapse)]
        if not synapses:
            raise ConfigError("a TTFS network needs at least one synapse layer")
        if any(not s.spiking for s in synapses[:-1]) or synapses[-1].spiking:
            raise ConfigError(
                "every TTFS synapse layer but the last must spike; the last is the read-out"
            )
        last = max(i for i, s in enumerate(stages) if isinstance(s, Synapse))
        if any(not isinstance(s, Flatten) for s in stages[last + 1 :]):
            raise ConfigError("only flattens may follow the TTFS read-out layer")
        w = torch.as_tensor(windows, dtype=DTYPE).reshape(-1).clone()
        if w.numel() != len(synapses) - 1:
            raise ConfigError(f"{w.numel()} windows for {len(synapses) - 1} spiking layers")
        if w.numel() and not bool(torch.all(w > 0) & torch.all(torch.isfinite(w))):
            raise ConfigError(f"TTFS windows must be positive and finite, got {w.tolist()}")
        self.register_buffer("windows", w)
        self.input_shape = tuple(int(v) for v in input_shape)
        p, q = (float(v) for v in input_range)
        if not (math.isfinite(p) and math.isfinite(q) and q > p):
            raise ConfigError(f"input range must be finite with high > low, got {(p, q)}")
        self.input_range = (p, q)
        self.variant = variant

    # ------------------------------------------------------------------ structure
    @property
    def synapses(self) -> list[Synapse]:
        return [s for s in self.stages if isinstance(s, Synapse)]

    @property
    def spiking_layers(self) -> list[Synapse]:
        return [s for s in self.synapses if s.spiking]

    @property
    def latency(self) -> float:
        """Total latency ``1 + sum_n L_n`` (time units; the input window lasts 1)."""
        return 1.0 + float(self.windows.sum())

    def window_bounds(self) -> list[tuple[float, float]]:
        """``(t_min, t_max)`` of every spiking layer (time units)."""
        out, t = [], 1.0
        for length in self.windows.tolist():
            out.append((t, t + length))
            t += length
        return out

    def spec(self) -> dict[str, Any]:
        """Plain-data description (with :meth:`state_dict`, enough to rebuild the network)."""
        return {
            "variant": self.variant,
            "input_shape": list(self.input_shape),
            "input_range": list(self.input_range),
            "stages": [s.spec() for s in self.stages],
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> TTFSNetwork:
        """An untrained network of the shape ``spec`` describes (load weights with
        :meth:`load_state_dict`). Raises :class:`ConfigError` on a malformed spec."""
        try:
            stages: list[nn.Module] = []
            for st in spec["stages"]:
                kind = st["kind"]
                if kind == "flatten":
                    stages.append(Flatten())
                elif kind == "pool":
                    stages.append(
                        TimePool(
                            st["kernel"],
                            st["stride"],
                            st["padding"],
                            st["channels"],
                            st["min_channels"],
                        )
                    )
                elif kind in ("dense", "conv"):
                    stages.append(
                        Synapse(
                            kind,
                            torch.zeros(st["weight_shape"]),
                            torch.zeros(st["bias_shape"]),
                            spiking=st["spiking"],
                            stride=st["stride"],
                            padding=st["padding"],
                            in_shape=st["in_shape"],
                            out_shape=st["out_shape"],
                        )
                    )
                else:
                    raise ConfigError(f"unknown TTFS stage kind {kind!r}")
            n_win = sum(1 for s in stages if isinstance(s, Synapse) and s.spiking)
            return cls(
                stages,
                torch.ones(n_win),
                tuple(spec["input_shape"]),
                tuple(spec["input_range"]),
                spec["variant"],
            )
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"malformed TTFS network spec ({type(exc).__name__}: {exc})"
            ) from None

    def with_windows(self, windows: torch.Tensor | list[float]) -> TTFSNetwork:
        """A copy with other windows (weights and ``D`` unchanged, so thresholds ``L - D`` move)."""
        net = copy.deepcopy(self)
        w = torch.as_tensor(windows, dtype=DTYPE).reshape(-1)
        if w.shape != self.windows.shape or not bool(torch.all(w > 0)):
            raise ConfigError(f"need {self.windows.numel()} positive windows, got {w.tolist()}")
        net.windows.copy_(w)
        return net

    def with_variant(self, variant: str) -> TTFSNetwork:
        """A copy with the other neuron variant (same weights, ``D`` and windows)."""
        net = copy.deepcopy(self)
        if variant not in VARIANTS:
            raise ConfigError(
                f"unknown TTFS variant {variant!r}; expected one of {', '.join(VARIANTS)}"
            )
        net.variant = variant
        return net

    # ------------------------------------------------------------------ forward
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs ``[B, ...]`` as float64 values in ``[0, 1]`` of shape ``[B, *input_shape]``
        (scaled from ``input_range``; values outside it are clamped: they cannot be encoded)."""
        b = x.shape[0]
        if x[0].numel() != math.prod(self.input_shape):
            raise ConfigError(
                f"inputs of shape {tuple(x.shape[1:])} do not fit the network's input "
                f"shape {self.input_shape}"
            )
        p, q = self.input_range
        v = x.to(DTYPE).reshape(b, *self.input_shape)
        if (p, q) != (0.0, 1.0):
            v = (v - p) / (q - p)
        return v.clamp(0.0, 1.0)

    def run(
        self,
        x: torch.Tensor,
        constraints: TTFSConstraints | None = None,
        generator: torch.Generator | None = None,
        record: bool = False,
        activity: bool = False,
    ) -> TTFSRun:
        """Spike times layer by layer and the read-out for samples ``x``.

        ``constraints`` (weight bits, jitter, time grid) act inside the pass; ``generator`` seeds
        the jitter draws (input layer first, then each spiking layer in order).
        """
        c = constraints or TTFSConstraints()
        steps = c.grid_steps
        jit = c.jitter_spec
        x = self.encode(x)
        if steps is not None:
            x = torch.round(x * steps) / steps
        zero = torch.zeros((), dtype=DTYPE)
        one = torch.ones((), dtype=DTYPE)
        t = one - x
        if jit is not None:
            t = jitter_times(t, zero, one, jit, steps, generator)
        res = TTFSRun(
            logits=torch.empty(0),
            batch=int(x.shape[0]),
            input_neurons=x[0].numel(),
            input_spikes=int((t.detach() < one).sum()),
        )
        prev_min, prev_max = zero, one
        k = 0
        logits = None
        for stage in self.stages:
            if not isinstance(stage, Synapse):
                if logits is not None:
                    logits = stage(logits)
                else:
                    t = stage(t)
                continue
            u = prev_max - t
            w, d = stage.weight, stage.bias
            length_in = float(prev_max - prev_min)
            length = self.windows[k] if stage.spiking else None
            if c.weight_bits is not None:  # the integer program's scale on its time grid
                max_abs = weight_range(w, c.weight_percentile)
                grid = steps if steps is not None else 2**FAMILY_DEFAULT.window_bits
                if stage.spiking:
                    s, rho, _ = weight_scale(
                        max_abs, c.weight_bits, length_in / grid, float(length) / grid
                    )
                    unit = float(length) / grid / rho
                else:
                    s, _, _ = weight_scale(max_abs, c.weight_bits)
                    unit = s * length_in / grid
                w = fake_quantize_weight(w, s, c.weight_bits)
                d = fake_quantize_bias(d, unit)
            a = stage.potential(u, w)
            bias = stage.broadcast_bias(d)
            if not stage.spiking:
                logits = a + bias
                continue
            t_min, t_max = prev_max, prev_max + length
            theta = length - bias
            if self.variant == "b1":
                t, clipped = b1_spike_times(a, theta, t_min, t_max)
            else:
                slope = 1.0 + stage.fan_in_sum(w)
                t, clipped = alpha1_spike_times(a, theta, slope, t_min, t_max)
            if steps is not None:
                t = quantize_times(t, t_min, length, steps)
            if jit is not None:
                t = jitter_times(t, t_min, t_max, jit, steps, generator)
            res.spikes.append(int((t.detach() < t_max).sum()))
            res.neurons.append(int(t[0].numel()))
            res.clipped.append(int(clipped.sum()))
            if record:
                res.times.append(t.detach())
            if activity:
                l1 = (t_max - t).sum()
                res.activity = l1 if res.activity is None else res.activity + l1
            prev_min, prev_max = t_min, t_max
            k += 1
        res.logits = logits
        return res

    def forward(
        self,
        x: torch.Tensor,
        constraints: TTFSConstraints | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Logits ``[B, classes]`` (float64) for samples ``x``."""
        return self.run(x, constraints, generator).logits

    def values(self, times: list[torch.Tensor]) -> list[torch.Tensor]:
        """Activations ``x = t_max - t`` (0 when silent) of recorded spike times, per layer."""
        return [tmax - t for t, (_, tmax) in zip(times, self.window_bounds(), strict=True)]
