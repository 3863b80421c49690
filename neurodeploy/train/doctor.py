"""Dead-neuron doctor: reads the firing-rate monitor's history, names sick layers, applies remedies.

Detection (methods.md §2; alarm levels are configurable proposals, no source gives numbers):

* ``dead``: more than ``dead_alarm`` of a layer's neurons silent over the window, or its rate below
  ``low_rate`` spikes/step, at ``persist_points`` consecutive logging points without the rate rising
  (a layer that starts quiet and is waking up is left alone);
* ``collapsing``: the rate keeps falling over the last ``trend_points`` logging points with no floor
  (at least halved, falling at most points, and the second half of the window falls as steeply as
  the first), as distinct from a stable sparse layer whose low rate holds;
* ``gradient_dead``: fewer than ``grad_alarm`` of the entries get a non-negligible surrogate gradient;
* ``saturated``: rate above ``high_rate``.

The likely cause depends on where the layer sits: early layers point to the input scaling or the
initial weight scale, late layers to the threshold or the surrogate width.

Remedies: ``lower_threshold`` (to the layer's 95 % potential quantile, clamped to [5 %, 50 %] of
the old threshold), ``widen_surrogate`` (double the support or halve the sharpness), and
``activity_regulariser`` (a lower bound ``λ·mean_i max(0, θ_low − ρ_i)²`` on each neuron's rate).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from neurodeploy.nn.neurons import SpikingNeuron, spiking_layers
from neurodeploy.nn.surrogate import AdaLi, Rectangular

REMEDIES = ("lower_threshold", "widen_surrogate", "activity_regulariser")


@dataclass
class Finding:
    """One diagnosis of one layer."""

    layer: str
    kind: str
    message: str
    cause: str
    remedies: list[str] = field(default_factory=list)
    step: int = 0
    epoch: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.layer}: {self.message}; likely cause: {self.cause}"


@dataclass
class DoctorConfig:
    """Alarm levels of the doctor (fractions, spikes/step, logging points)."""

    dead_alarm: float = 0.5
    low_rate: float = 0.01
    high_rate: float = 0.5
    grad_alarm: float = 0.01
    trend_points: int = 5
    persist_points: int = 3


class DeadNeuronDoctor:
    """Examines monitor records ``{"step", "epoch", "layers": {name: metrics}}`` for sick layers."""

    def __init__(self, layer_names: list[str], config: DoctorConfig | None = None):
        self.layer_names = list(layer_names)
        self.config = config or DoctorConfig()

    def _cause(self, name: str, metrics: dict[str, float]) -> tuple[str, list[str]]:
        idx = self.layer_names.index(name) if name in self.layer_names else 0
        early = idx < max(1, len(self.layer_names) // 2)
        below = metrics.get("q99", 0.0) < 1.0
        where = f"potentials stay below threshold (99% quantile at {metrics.get('q99', 0.0):.2f}×V)" \
            if below else "potentials reach threshold rarely"
        if early:
            cause = f"input scaling or initial weight scale too small for the threshold ({where})"
            remedies = ["lower_threshold", "widen_surrogate", "activity_regulariser"]
        else:
            cause = f"threshold too high or surrogate too narrow ({where})"
            remedies = ["lower_threshold", "widen_surrogate", "activity_regulariser"]
        return cause, remedies

    def examine(self, history: list[dict[str, Any]]) -> list[Finding]:
        """Diagnose the latest record of ``history`` (earlier records give the trend)."""
        if not history:
            return []
        cfg = self.config
        last = history[-1]
        findings: list[Finding] = []
        for name, m in last["layers"].items():
            step, epoch = int(last.get("step", 0)), int(last.get("epoch", 0))
            cause, remedies = self._cause(name, m)
            recent = [h["layers"][name] for h in history[-cfg.persist_points:] if name in h["layers"]]
            if self._persistently_dead(recent):
                findings.append(Finding(
                    name, "dead",
                    f"{100 * m['dead']:.0f}% of neurons silent, rate {m['rate']:.4f} spikes/step",
                    cause, remedies, step, epoch))
            elif self._collapsing([h["layers"][name]["rate"] for h in history if name in h["layers"]]):
                findings.append(Finding(
                    name, "collapsing",
                    f"rate falling with no floor, now {m['rate']:.4f} spikes/step",
                    cause, remedies, step, epoch))
            if len(recent) >= cfg.persist_points and all(
                r["grad_dead"] > 1 - cfg.grad_alarm for r in recent
            ):
                findings.append(Finding(
                    name, "gradient_dead",
                    f"only {100 * (1 - m['grad_dead']):.2f}% of entries get a surrogate gradient",
                    "surrogate window misses the potentials", ["widen_surrogate", "lower_threshold"],
                    step, epoch))
            if m["rate"] > cfg.high_rate:
                findings.append(Finding(
                    name, "saturated", f"rate {m['rate']:.2f} spikes/step", "threshold too low", [],
                    step, epoch))
        return findings

    def _persistently_dead(self, recent: list[dict[str, float]]) -> bool:
        cfg = self.config
        if len(recent) < cfg.persist_points:
            return False
        if not all(m["dead"] > cfg.dead_alarm or m["rate"] < cfg.low_rate for m in recent):
            return False
        rates = [m["rate"] for m in recent]
        return rates[-1] <= 1.2 * max(rates[:-1]) + 1e-4  # not waking up

    def _collapsing(self, rates: list[float]) -> bool:
        k = self.config.trend_points
        if len(rates) < k:
            return False
        r = rates[-k:]
        falls = sum(b < a for a, b in zip(r, r[1:], strict=False))
        if falls < 0.75 * (k - 1) or r[-1] > 0.5 * r[0]:
            return False
        half = k // 2
        first = (r[0] - r[half]) / max(r[0], 1e-12)
        second = (r[half] - r[-1]) / max(r[half], 1e-12)
        return second >= 0.5 * first


def init_scale_check(model: nn.Module, x: torch.Tensor) -> list[Finding]:
    """Before training: pass one batch, flag layers where almost no potential crosses the
    threshold or lies in the surrogate's support (methods.md §2.3)."""
    from neurodeploy.train.monitor import FiringRateMonitor

    mon = FiringRateMonitor(model, window=1)
    was = model.training
    model.eval()
    with torch.no_grad():
        model(x)
    mon.observe()
    metrics = mon.point()
    mon.enable(False)
    model.train(was)
    names = [n for n, _ in spiking_layers(model)]
    doctor = DeadNeuronDoctor(names)
    findings = []
    for name, m in metrics.items():
        layer = dict(spiking_layers(model))[name]
        narrow = not layer.surrogate.infinite_support and m["density"] < 1e-3
        if m["p_above"] < 1e-3 or narrow:
            cause, remedies = doctor._cause(name, m)
            findings.append(Finding(
                name, "init_silent",
                f"at initialisation P(M > V) = {m['p_above']:.4f} and {100 * m['density']:.2f}% of "
                "potentials lie in the surrogate's support",
                cause, remedies))
    return findings


def widen_surrogate(layer: SpikingNeuron, factor: float = 2.0) -> str:
    """Make a layer's surrogate ``factor`` times wider; returns a description of the change."""
    s = layer.surrogate
    if isinstance(s, Rectangular):
        s.width *= factor
        return f"rectangular width → {s.width:g}"
    if isinstance(s, AdaLi):
        s.delta_minus_init *= factor
        s.delta_plus_init *= factor
        return f"AdaLi initial half-widths → {s.delta_minus_init:g}/{s.delta_plus_init:g}"
    for attr in ("alpha", "k"):
        if hasattr(s, attr):
            setattr(s, attr, getattr(s, attr) / factor)
            return f"{s.name} {attr} → {getattr(s, attr):g}"
    return "surrogate unchanged"


@torch.no_grad()
def lower_threshold(layer: SpikingNeuron, q95: float) -> str:
    """Lower a layer's threshold to its 95 % potential quantile (``q95`` in units of the old
    threshold), clamped to [0.05, 0.5] of the old value; returns a description."""
    old = float(layer.threshold)
    new = old * min(max(q95, 0.05), 0.5)
    if layer.config.learn_threshold:
        layer.theta.copy_(torch.log(torch.expm1(torch.tensor(new))))
    else:
        layer.v_th_fixed.fill_(new)
    layer.config.threshold = new
    return f"threshold {old:g} → {new:g}"


def apply_remedies(model: nn.Module, findings: list[Finding], metrics: dict[str, dict[str, float]],
                   remedies: tuple[str, ...] = REMEDIES) -> list[str]:
    """Apply the chosen remedies to the layers named in ``findings``; returns what changed.

    ``activity_regulariser`` is not a change to the model: it is reported so the trainer switches
    its lower-bound regulariser on.
    """
    layers = dict(spiking_layers(model))
    done: list[str] = []
    sick = {f.layer for f in findings if f.kind in ("dead", "collapsing", "gradient_dead", "init_silent")}
    for name in sorted(sick, key=lambda n: list(layers).index(n)):
        layer = layers[name]
        if "lower_threshold" in remedies:
            done.append(f"{name}: {lower_threshold(layer, metrics.get(name, {}).get('q95', 0.0))}")
        if "widen_surrogate" in remedies:
            done.append(f"{name}: {widen_surrogate(layer)}")
    if sick and "activity_regulariser" in remedies:
        done.append("activity regulariser on (θ_low 0.02 spikes/step, λ 1)")
    return done
