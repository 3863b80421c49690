"""Deployment workflows on checkpoints: post-training quantization, constraint-aware fine-tuning,
and sweeps over weight bits, spike-time jitter and latency — every accuracy measured by the
bit-accurate simulator.

A quantized or fine-tuned checkpoint is an ordinary checkpoint (the float model, so it can be
trained, inspected and exported again) whose ``meta["quant"]`` holds its
:class:`~neurodeploy.quantize.record.QuantRecord` (profile, constraints, per-layer scales);
simulating it reuses those scales, so it runs exactly the integers that were fine-tuned.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurodeploy.atomic import atomic_group, write_json
from neurodeploy.errors import ConfigError
from neurodeploy.lower.graph import GRAPH_FORMAT
from neurodeploy.models import SpikingNet
from neurodeploy.outputs import Output, side_path
from neurodeploy.quantize.fakequant import Constraints, fake_quantize
from neurodeploy.quantize.finetune import FinetuneConfig, config_dict, finetune
from neurodeploy.quantize.graph_model import GraphModel
from neurodeploy.quantize.record import QuantRecord
from neurodeploy.sim.deploy import Deployment, calibration_set, deploy_model
from neurodeploy.train.checkpoint import Checkpoint


def _quant_meta(dep: Deployment, constraints: Constraints, scales: list[float], **extra: Any) -> dict[str, Any]:
    return QuantRecord(dep.profile, constraints, tuple(scales),
                       {"float_accuracy": dep.float_accuracy, **extra}).to_meta()


@dataclass
class QuantizeResult:
    """Post-training quantization of one checkpoint for one profile."""

    deployment: Deployment
    constraints: Constraints
    scales: list[float]

    @property
    def drop(self) -> float:
        """Accuracy lost by quantization (fraction, float minus simulated)."""
        return self.deployment.float_accuracy - self.deployment.accuracy


def quantize_model(model: SpikingNet, profile: str, dataset: Any, constraints: Constraints | None = None,
                   progress: bool | None = None) -> QuantizeResult:
    """Calibrate per-layer scales for ``profile`` and predict the deployed accuracy."""
    c = constraints or Constraints()
    fq = fake_quantize(model, profile, calibration_set(model, dataset.x_train), c)
    dep = deploy_model(model, profile, dataset, constraints=c, fq=fq, progress=progress)
    return QuantizeResult(dep, c, [layer.scale for layer in fq.layers])


@dataclass
class FinetuneResult:
    """Constraint-aware fine-tuning of one checkpoint."""

    before: Deployment
    after: Deployment
    model: SpikingNet
    constraints: Constraints
    scales: list[float]
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {"profile": self.after.profile, "constraints": self.constraints.to_dict(),
                "float_accuracy": self.before.float_accuracy, "ptq_accuracy": self.before.accuracy,
                "finetuned_accuracy": self.after.accuracy, "history": self.history,
                "seconds": self.seconds}


def finetune_model(model: SpikingNet, profile: str, dataset: Any, constraints: Constraints | None = None,
                   config: FinetuneConfig | None = None, progress: bool | None = None, log=None,
                   scales: list[float] | None = None, **finetune_args: Any) -> FinetuneResult:
    """Quantize ``model`` for ``profile`` under ``constraints``, fine-tune a copy through the
    integer forward pass, and simulate before and after. ``model`` itself is not changed.
    ``finetune_args`` (``parallel``, ``state_path``, ``resume``) go to :func:`finetune`."""
    c = constraints or Constraints()
    start = time.perf_counter()
    tuned = copy.deepcopy(model)
    fq = fake_quantize(tuned, profile, calibration_set(tuned, dataset.x_train), c, scales=scales)
    before = deploy_model(model, profile, dataset, constraints=c, fq=fq, progress=progress)
    history = finetune(fq, dataset, config, progress=progress, log=log, **finetune_args)
    after = deploy_model(tuned, profile, dataset, constraints=c, fq=fq, progress=progress)
    # the float accuracy refers to the original model
    after.float_accuracy = before.float_accuracy
    return FinetuneResult(before, after, tuned, c, [layer.scale for layer in fq.layers], history,
                          time.perf_counter() - start)


def quantized_outputs(path: str | Path) -> list[Output]:
    """The files :func:`save_quantized` writes: the checkpoint and its deployment graph beside it
    (``q.pt`` → ``q.npz``; ``q.npz`` → ``q.graph.npz``, never the checkpoint itself)."""
    return [Output.of(path, "torch", "quantized checkpoint"),
            Output.of(side_path(path, ".npz"), "npz", "deployment graph", GRAPH_FORMAT)]


def save_quantized(model: SpikingNet, path: str | Path, dep: Deployment, constraints: Constraints,
                   scales: list[float], meta: dict[str, Any] | None = None, **extra: Any) -> Path:
    """Write a quantized/fine-tuned checkpoint and its deployment graph (see :func:`quantized_outputs`)."""
    m = dict(meta or {})
    m.update(_quant_meta(dep, constraints, scales, deployed_accuracy=dep.accuracy, **extra))
    ck_out, graph_out = quantized_outputs(path)
    with atomic_group():  # both files or neither
        if isinstance(model, GraphModel):  # a graph network stays a graph checkpoint
            out = model.checkpoint(meta=m).save(ck_out.path)
        else:
            out = Checkpoint.from_model(model, meta=m).save(ck_out.path)
        dep.graph.save(graph_out.path)
    return out


SWEEP_AXES = ("weight_bits", "jitter", "max_steps")


def parse_values(text: str | None, what: str, lo: int) -> list[int]:
    """Comma-separated distinct integers ``>= lo`` (for sweep options); ``None`` is no values."""
    if text is None:
        return []
    if not text.strip():
        raise ConfigError(f"{what} is empty; give comma-separated integers or leave the option out")
    out = []
    for part in text.split(","):
        try:
            v = int(part.strip())
        except ValueError:
            raise ConfigError(f"{what} must be comma-separated integers, got {text!r}") from None
        if v < lo:
            raise ConfigError(f"{what} values must be at least {lo}, got {v}")
        if v in out:
            raise ConfigError(f"{what} names {v} twice; each point runs once")
        out.append(v)
    return out


def run_sweep(model: SpikingNet, profile: str, dataset: Any, *, weight_bits: list[int] = (),
              jitter: list[int] = (), max_steps: list[int] = (), config: FinetuneConfig | None = None,
              out_dir: str | Path | None = None, progress: bool | None = None, log=None) -> dict[str, Any]:
    """Simulated accuracy before and after fine-tuning along each constraint axis (one at a time,
    the others at the profile's defaults). Writes ``sweep.json`` and ``sweep.png`` to ``out_dir``.

    Args:
        weight_bits: weight precisions to try (bits).
        jitter: uniform spike-time jitter bounds to try (steps).
        max_steps: latency budgets to try (input steps).
        config: fine-tuning settings for every point.
    """
    from neurodeploy.report.plots import plot_sweep

    if not (weight_bits or jitter or max_steps):
        raise ConfigError("give at least one of --bits, --jitter, --steps to sweep")
    for v in max_steps:  # every point before the first runs
        if v > model.spec.steps:
            raise ConfigError(f"--steps {v} exceeds the {model.spec.steps} steps the network was trained for")
    points = []
    base = deploy_model(model, profile, dataset, progress=progress)
    warned = list(base.warnings)
    for axis, values in (("weight_bits", weight_bits), ("jitter", jitter), ("max_steps", max_steps)):
        for v in values:
            c = Constraints(**{axis: v})
            res = finetune_model(model, profile, dataset, c, config, progress=progress)
            points.append({"axis": axis, "value": v, "ptq_accuracy": res.before.accuracy,
                           "finetuned_accuracy": res.after.accuracy, "seconds": res.seconds})
            warned.extend(dict.fromkeys(f"{axis} = {v}: {w}" for w in (*res.before.warnings, *res.after.warnings)))
            if log:
                log(f"      {axis} = {v}: simulated accuracy {100 * res.before.accuracy:.2f}% → "
                    f"{100 * res.after.accuracy:.2f}% after fine-tuning ({res.seconds:.1f} s)")
    report = {"profile": base.profile, "float_accuracy": base.float_accuracy,
              "ptq_accuracy": base.accuracy, "samples": base.samples,
              "finetune": config_dict(config or FinetuneConfig()),
              "dataset": getattr(dataset, "name", ""), "split": getattr(dataset, "split", ""),
              "points": points, "warnings": warned}
    if out_dir is not None:
        out = Path(out_dir)
        write_json(out / "sweep.json", report)
        plot_sweep(report, out / "sweep.png")
    return report


def recovered_fraction(float_acc: float, ptq_acc: float, tuned_acc: float) -> float | None:
    """Share of the post-training drop that fine-tuning won back (``None`` if there was no drop)."""
    drop = float_acc - ptq_acc
    return None if drop <= 0 else (tuned_acc - ptq_acc) / drop
