"""Dead-neuron doctor: reads the firing-rate monitor's history, names sick layers, treats them.

Detection (docs/methods.md §2.1–2.2: "the signal is the trend, not the level"; alarm levels are
configurable proposals, no source gives numbers). Rates are compared as *levels*: the median rate
of ``w`` consecutive logging points, where the window ``w`` is scaled to the run
(``window_fraction`` of the run's logging points, at least ``min_points``):

* ``collapsing``: the layer's current level has fallen below ``collapse_drop`` of its own earlier
  level (the highest level it held before) **and** is still falling: below ``collapse_fall`` of the
  level one window earlier. A layer that fell and then holds a floor, or that settles at a low
  stable rate, is healthy sparse and is not flagged, whatever its level;
* ``dead``: more than ``dead_alarm`` of the layer's neurons silent over the monitor's window, or a
  rate below ``silent_rate`` (no spikes to speak of), as the median of a trend window, without
  rising at its last point;
* ``gradient_dead``: fewer than ``grad_alarm`` of the entries get a non-negligible surrogate
  gradient at every point of a window;
* ``saturated``: rate above ``high_rate``.

Cause (docs/methods.md §2.1): a sick early layer (first half of the spiking layers) points to the input
scaling or the initial weight scale (``init_scale``); a sick late layer to the threshold or the
surrogate width (``collapse``); a layer that fires but gets no gradient to the surrogate width.

Remedies, per cause, applied one at a time (:meth:`DeadNeuronDoctor.treat`):

* ``init_scale``: ``rescale_weights`` (scale the affine stage feeding the layer, i.e. its weights
  or, for the first layer, equivalently its input, so that the 99 % potential quantile reaches
  1.5 thresholds) and ``reinit_bias`` (the feeding stage's bias or BatchNorm shift back to its
  initial 0); the bias goes first when even the 99 % potential quantile is negative;
* ``collapse``: ``lower_threshold`` (to the layer's 95 % potential quantile, clamped to
  [5 %, 50 %] of the old threshold), then ``widen_surrogate`` (until the window reaches the median
  potential, at least 2×);
* ``surrogate``: ``widen_surrogate``;
* every cause ends with ``activity_regulariser`` (a lower bound ``λ·mean_i max(0, θ_low − ρ_i)²``
  on each neuron's rate), switched on by the trainer.

Each remedy is attributed in a :class:`Trial`: the layer's rate (and dead fraction) over the window
before it, and over the window after it, with the loss, and a verdict: ``cured`` (no longer
flagged), ``improving`` (no longer flagged and its rate rose, but most neurons still silent) or
``not cured``; only then may the next remedy start. After each remedy the trainer restarts the
optimizer's running moments, which were gathered under the old gradient scale.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from neurodeploy.nn.neurons import SpikingNeuron
from neurodeploy.train.layers import spiking_layers

REMEDIES = ("rescale_weights", "reinit_bias", "lower_threshold", "widen_surrogate", "activity_regulariser")
CAUSE_REMEDIES = {
    "init_scale": ("rescale_weights", "reinit_bias", "activity_regulariser"),
    "collapse": ("lower_threshold", "widen_surrogate", "activity_regulariser"),
    "surrogate": ("widen_surrogate", "activity_regulariser"),
}
SICK = ("dead", "collapsing", "gradient_dead", "init_silent")
RESCALE_TARGET = 1.5
"""``rescale_weights`` aims the layer's 99 % potential quantile at this many thresholds."""


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
class Trial:
    """One remedy applied to one layer, with the layer's activity before and after it."""

    layer: str
    remedy: str
    cause: str
    finding: str
    change: str
    step: int
    epoch: int
    points_before: int
    rate_before: float
    dead_before: float
    loss_before: float | None
    rate_after: float | None = None
    dead_after: float | None = None
    loss_after: float | None = None
    step_measured: int | None = None
    verdict: str = "pending"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        head = f"{self.layer} ({self.finding}, cause {self.cause}) step {self.step}: {self.remedy}: {self.change}"
        if self.rate_after is None:
            return f"{head}; rate before {self.rate_before:.4f} spikes/step, measuring"
        return (f"{head}; rate {self.rate_before:.4f} → {self.rate_after:.4f} spikes/step, dead "
                f"{100 * self.dead_before:.0f}% → {100 * self.dead_after:.0f}% ({self.verdict})")


@dataclass
class DoctorConfig:
    """Alarm levels of the doctor (fractions, spikes/step) and its trend window."""

    dead_alarm: float = 0.5
    silent_rate: float = 1e-4
    high_rate: float = 0.5
    grad_alarm: float = 0.01
    collapse_drop: float = 0.5
    collapse_fall: float = 0.8
    window_fraction: float = 0.1
    min_points: int = 3


def _level(values: list[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


class DeadNeuronDoctor:
    """Examines monitor records ``{"step", "epoch", "layers": {name: metrics}}`` for sick layers.

    Args:
        layer_names: spiking layers in forward order (position decides the likely cause).
        config: alarm levels.
        run_points: logging points the whole run will have; the trend window is
            ``window_fraction`` of it (at least ``min_points``).
    """

    def __init__(self, layer_names: list[str], config: DoctorConfig | None = None, run_points: int = 0):
        self.layer_names = list(layer_names)
        self.config = config or DoctorConfig()
        self.run_points = int(run_points)
        self.trials: list[Trial] = []
        self.pending: Trial | None = None

    @property
    def window(self) -> int:
        """Logging points per trend window."""
        cfg = self.config
        return max(cfg.min_points, round(cfg.window_fraction * self.run_points))

    # ------------------------------------------------------------------ diagnosis
    def cause(self, name: str, kind: str, metrics: dict[str, float]) -> tuple[str, str, list[str]]:
        """``(cause key, explanation, remedies in order)`` for a sick layer."""
        q99 = metrics.get("q99", 0.0)
        where = (f"99% potential quantile at {q99:.2f}×V" if q99 < 1.0
                 else "potentials reach the threshold rarely")
        if kind == "gradient_dead":
            return ("surrogate", "surrogate window misses the potentials",
                    list(CAUSE_REMEDIES["surrogate"]))
        idx = self.layer_names.index(name) if name in self.layer_names else 0
        if idx < max(1, len(self.layer_names) // 2):
            remedies = list(CAUSE_REMEDIES["init_scale"])
            if q99 <= 0:  # even the highest potentials are negative: scaling cannot lift them
                remedies[:2] = ["reinit_bias", "rescale_weights"]
            return ("init_scale",
                    f"input scaling or initial weight scale too small for the threshold ({where})",
                    remedies)
        return ("collapse", f"threshold too high or surrogate too narrow ({where})",
                list(CAUSE_REMEDIES["collapse"]))

    def examine(self, history: list[dict[str, Any]]) -> list[Finding]:
        """Diagnose the latest record of ``history`` (earlier records give the trend)."""
        if not history:
            return []
        cfg, w = self.config, self.window
        last = history[-1]
        step, epoch = int(last.get("step", 0)), int(last.get("epoch", 0))
        findings: list[Finding] = []
        for name, m in last["layers"].items():
            series = [h["layers"][name] for h in history if name in h["layers"]]
            recent = series[-w:]
            kind, message = None, ""
            if self._persistently_dead(recent):
                kind = "dead"
                message = f"{100 * m['dead']:.0f}% of neurons silent, rate {m['rate']:.4f} spikes/step"
            else:
                trend = self._collapse(series)
                if trend is not None:
                    kind = "collapsing"
                    message = (f"rate falling with no floor: level {trend[1]:.4f} → {trend[2]:.4f} "
                               f"spikes/step over the last window, {100 * trend[2] / trend[0]:.0f}% of "
                               f"its earlier level {trend[0]:.4f}")
            if kind:
                _, cause, remedies = self.cause(name, kind, m)
                findings.append(Finding(name, kind, message, cause, remedies, step, epoch))
            if len(recent) >= w and all(r["grad_dead"] > 1 - cfg.grad_alarm for r in recent):
                _, cause, remedies = self.cause(name, "gradient_dead", m)
                findings.append(Finding(
                    name, "gradient_dead",
                    f"only {100 * (1 - m['grad_dead']):.2f}% of entries get a surrogate gradient",
                    cause, remedies, step, epoch))
            if m["rate"] > cfg.high_rate:
                findings.append(Finding(
                    name, "saturated", f"rate {m['rate']:.2f} spikes/step", "threshold too low", [],
                    step, epoch))
        return findings

    def _persistently_dead(self, recent: list[dict[str, float]]) -> bool:
        cfg = self.config
        if len(recent) < self.window:
            return False
        if _level([m["dead"] for m in recent]) <= cfg.dead_alarm and \
                _level([m["rate"] for m in recent]) >= cfg.silent_rate:
            return False
        rates = [m["rate"] for m in recent]
        return rates[-1] <= 1.2 * max(rates[:-1]) + 1e-4  # not waking up

    def _collapse(self, series: list[dict[str, float]]) -> tuple[float, float, float] | None:
        """``(earlier level, level one window ago, current level)`` if the layer collapses."""
        w, cfg = self.window, self.config
        rates = [m["rate"] for m in series]
        if len(rates) < 2 * w:
            return None
        current = _level(rates[-w:])
        previous = _level(rates[-2 * w : -w])
        stride = max(1, w // 4)  # windows overlapping by 3/4: ~4 n / w medians, not n
        earlier = max(_level(rates[i : i + w]) for i in range(0, len(rates) - 2 * w + 1, stride))
        earlier = max(earlier, previous)
        if earlier <= 0 or current >= cfg.collapse_drop * earlier or current >= cfg.collapse_fall * previous:
            return None
        return earlier, previous, current

    # ------------------------------------------------------------------ treatment
    def treat(self, model: nn.Module, history: list[dict[str, Any]], findings: list[Finding],
              max_trials: int) -> tuple[Trial | None, Trial | None]:
        """One step of treatment at a logging point: ``(trial measured now, trial started now)``.

        A remedy in flight is measured once a whole window of points followed it; only then is the
        next remedy (for the earliest sick layer, in its cause's order, never repeating one on a
        layer) applied.
        """
        measured = started = None
        if self.pending is not None:
            after = [h for h in history if h["step"] > self.pending.step]
            if len(after) < self.window:
                return None, None
            measured = self._measure(self.pending, after[-self.window:], findings)
            self.trials.append(measured)
            self.pending = None
        if len(self.trials) >= max_trials:
            return measured, None
        order = {n: i for i, n in enumerate(self.layer_names)}
        sick = sorted((f for f in findings if f.kind in SICK and f.layer in order),
                      key=lambda f: (order[f.layer], SICK.index(f.kind)))
        last = history[-1]
        for f in sick:
            m = last["layers"].get(f.layer, {})
            key, _, remedies = self.cause(f.layer, f.kind, m)
            tried = {t.remedy for t in self.trials if t.layer == f.layer}
            for remedy in remedies:
                if remedy in tried:
                    continue
                change = apply_remedy(model, f.layer, remedy, m)
                if change is None:  # not applicable to this layer (e.g. no bias): next remedy
                    continue
                recent = [h for h in history[-self.window:] if f.layer in h["layers"]]
                started = Trial(
                    f.layer, remedy, key, f.kind, change, int(last["step"]), int(last.get("epoch", 0)),
                    len(recent), _level([h["layers"][f.layer]["rate"] for h in recent]),
                    _level([h["layers"][f.layer]["dead"] for h in recent]),
                    _loss_level(recent))
                self.pending = started
                return measured, started
        return measured, None

    def conclude(self, history: list[dict[str, Any]], findings: list[Finding]) -> Trial | None:
        """At the end of a run: measure the remedy in flight on the points that followed it."""
        if self.pending is None:
            return None
        after = [h for h in history if h["step"] > self.pending.step]
        trial, self.pending = self.pending, None
        if after:
            self._measure(trial, after[-self.window:], findings)
            if len(after) < self.window:
                trial.verdict += f" (measured on {len(after)} of {self.window} points: the run ended)"
        else:
            trial.verdict = "not measured (the run ended)"
        self.trials.append(trial)
        return trial

    def _measure(self, trial: Trial, after: list[dict[str, Any]], findings: list[Finding]) -> Trial:
        rates = [h["layers"][trial.layer]["rate"] for h in after if trial.layer in h["layers"]]
        dead = [h["layers"][trial.layer]["dead"] for h in after if trial.layer in h["layers"]]
        trial.rate_after, trial.dead_after = _level(rates), _level(dead)
        trial.loss_after = _loss_level(after)
        trial.step_measured = int(after[-1]["step"])
        # still sick in the way it was treated for: silent (dead, collapsing) or gradient-dead
        kinds = ("gradient_dead",) if trial.finding == "gradient_dead" else ("dead", "collapsing")
        still = any(f.layer == trial.layer and f.kind in kinds for f in findings)
        livelier = trial.finding == "gradient_dead" or trial.rate_after > trial.rate_before
        if still or not livelier:
            trial.verdict = "not cured"
        elif trial.finding != "gradient_dead" and trial.dead_after > self.config.dead_alarm:
            trial.verdict = "improving"  # waking up, but most neurons still silent
        else:
            trial.verdict = "cured"
        return trial

    def state_dict(self) -> dict[str, Any]:
        """Trials and the remedy in flight (plain data, for the checkpoint)."""
        return {"trials": [t.to_dict() for t in self.trials],
                "pending": self.pending.to_dict() if self.pending else None,
                "run_points": self.run_points}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trials = [Trial(**t) for t in state.get("trials", [])]
        self.pending = Trial(**state["pending"]) if state.get("pending") else None
        self.run_points = int(state.get("run_points", self.run_points))


def _loss_level(points: list[dict[str, Any]]) -> float | None:
    losses = [h["loss"] for h in points if h.get("loss") is not None]
    return _level(losses) if losses else None


def init_scale_check(model: nn.Module, x: torch.Tensor) -> list[Finding]:
    """Before training: pass one batch, flag layers where almost no potential crosses the
    threshold or lies in the surrogate's support (docs/methods.md §2.3)."""
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
    layers = dict(spiking_layers(model))
    doctor = DeadNeuronDoctor(names)
    findings = []
    for name, m in metrics.items():
        narrow = not layers[name].surrogate.infinite_support and m["density"] < 1e-3
        if m["p_above"] < 1e-3 or narrow:
            _, cause, remedies = doctor.cause(name, "init_silent", m)
            findings.append(Finding(
                name, "init_silent",
                f"at initialisation P(M > V) = {m['p_above']:.4f} and {100 * m['density']:.2f}% of "
                "potentials lie in the surrogate's support",
                cause, remedies))
    return findings


# ---------------------------------------------------------------------- remedies
def feeding_stage(model: nn.Module, layer_name: str) -> tuple[str, nn.Module] | None:
    """The affine stage (BatchNorm, Linear or Conv) that produces a spiking layer's input current:
    the nearest one before it, skipping pooling and reshaping stages."""
    named = list(model.named_modules())
    names = [n for n, _ in named]
    if layer_name not in names:
        return None
    parent, _, _ = layer_name.rpartition(".")
    siblings = [(n, m) for n, m in named if n.rpartition(".")[0] == parent and n]
    idx = [n for n, _ in siblings].index(layer_name)
    for n, m in reversed(siblings[:idx]):
        if isinstance(m, SpikingNeuron):
            return None
        if isinstance(m, nn.modules.batchnorm._BatchNorm | nn.Linear | nn.modules.conv._ConvNd):
            return n, m
    return None


@torch.no_grad()
def rescale_weights(model: nn.Module, layer_name: str, q99: float) -> str | None:
    """Scale the stage feeding ``layer_name`` (weights and bias, or BatchNorm scale and shift) so
    that the 99 % potential quantile ``q99`` (in thresholds) reaches 1.5; factor in [2, 100]."""
    found = feeding_stage(model, layer_name)
    if found is None or getattr(found[1], "weight", None) is None:
        return None
    name, stage = found
    factor = RESCALE_TARGET / q99 if q99 > 0 else 100.0
    factor = min(max(factor, 2.0), 100.0)
    stage.weight.mul_(factor)
    if getattr(stage, "bias", None) is not None:
        stage.bias.mul_(factor)
    return f"{name} weights ×{factor:.3g} (99% potential quantile {q99:.3g}×V → ≈{q99 * factor:.3g}×V)"


@torch.no_grad()
def reinit_bias(model: nn.Module, layer_name: str) -> str | None:
    """Reset the bias (or BatchNorm shift) of the stage feeding ``layer_name`` to its initial 0."""
    found = feeding_stage(model, layer_name)
    if found is None or getattr(found[1], "bias", None) is None:
        return None
    name, stage = found
    old = float(stage.bias.mean())
    stage.bias.zero_()
    return f"{name} bias re-initialised (mean {old:.3g} → 0)"


def widen_surrogate(layer: SpikingNeuron, metrics: dict[str, float] | None = None) -> str:
    """Widen a layer's surrogate until its window reaches the median potential, so that about half
    of the entries get a gradient (at least 2×, at most 1000×); returns a description.

    (A window over the whole 5–95 % potential range was tried first: on digits it made the
    rectangular window about 3 thresholds wide, flat and low, and trained worse than width 1.)"""
    metrics = metrics or {}
    absolute = layer.config.scale == "absolute"
    v_th = float(layer.threshold.detach())
    target = abs(metrics.get("q50", 0.0) - 1.0) * (v_th if absolute else 1.0)
    current = layer.surrogate.half_width(v_th if absolute else 1.0)
    factor = min(max(target / current if current > 0 else 2.0, 2.0), 1000.0)
    return layer.surrogate.widen(factor)


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


def apply_remedy(model: nn.Module, layer_name: str, remedy: str,
                 metrics: dict[str, float]) -> str | None:
    """Apply one remedy to one layer; returns what changed, or ``None`` where it does not apply.

    ``activity_regulariser`` is not a change to the model: the trainer switches it on.
    """
    layer = dict(spiking_layers(model))[layer_name]
    if remedy == "rescale_weights":
        return rescale_weights(model, layer_name, metrics.get("q99", 0.0))
    if remedy == "reinit_bias":
        return reinit_bias(model, layer_name)
    if remedy == "lower_threshold":
        return lower_threshold(layer, metrics.get("q95", 0.0))
    if remedy == "widen_surrogate":
        return widen_surrogate(layer, metrics)
    if remedy == "activity_regulariser":
        return "activity regulariser on (θ_low 0.02 spikes/step, λ 1)"
    raise ValueError(f"unknown remedy {remedy!r}; choose one of {', '.join(REMEDIES)}")
