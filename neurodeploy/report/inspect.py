"""Inspect a checkpoint: firing rates, dead neurons and parameter ranges, as data, table and plot."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from neurodeploy.train.checkpoint import load_checkpoint
from neurodeploy.train.monitor import layer_activity, spikes_per_neuron
from neurodeploy.train.trainer import evaluate


@dataclass
class Inspection:
    """What :func:`inspect_checkpoint` found."""

    checkpoint: str
    dataset: str
    accuracy: float | None
    spikes_per_neuron: float
    layers: dict[str, dict[str, float]]
    params: dict[str, dict[str, float]]
    mp_init: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def table(self) -> str:
        """A fixed-width text table of the per-layer activity."""
        head = f"{'layer':<12}{'neurons':>8}{'rate':>8}{'dead%':>7}{'sat%':>6}{'gdead%':>8}" \
               f"{'q50/V':>7}{'q99/V':>7}{'V':>8}"
        rows = [head, "-" * len(head)]
        for name, m in self.layers.items():
            rows.append(f"{name:<12}{int(m['neurons']):>8}{m['rate']:>8.4f}{100 * m['dead']:>7.1f}"
                        f"{100 * m['saturated']:>6.1f}{100 * m['grad_dead']:>8.1f}{m['q50']:>7.2f}"
                        f"{m['q99']:>7.2f}{self.thresholds.get(name, float('nan')):>8.3g}")
        acc = "n/a" if self.accuracy is None else f"{100 * self.accuracy:.2f}%"
        rows.append(f"accuracy {acc} on {self.dataset}; spikes per neuron per sample "
                    f"{self.spikes_per_neuron:.3f}")
        return "\n".join(rows)


def parameter_ranges(model: torch.nn.Module) -> dict[str, dict[str, float]]:
    """Min, max, mean and std of every parameter tensor (and threshold/MP-Init buffers)."""
    out = {}
    for name, p in list(model.named_parameters()) + [
        (n, b) for n, b in model.named_buffers() if n.endswith(("v_th_fixed", "mp_mean"))
    ]:
        t = p.detach().double()
        out[name] = {"min": float(t.min()), "max": float(t.max()), "mean": float(t.mean()),
                     "std": float(t.std()) if t.numel() > 1 else 0.0, "count": int(t.numel())}
    return out


def inspect_checkpoint(path: str | Path, dataset: Any, limit: int | None = None,
                       batch_size: int = 256) -> Inspection:
    """Measure a checkpoint's activity on ``dataset``'s test split (first ``limit`` samples)."""
    from neurodeploy.nn.neurons import spiking_layers

    model = load_checkpoint(path).build()
    x, y = dataset.x_test, dataset.y_test
    if limit is not None:
        x, y = x[:limit], y[:limit]
    metrics = layer_activity(model, x, batch_size)
    acc, _ = evaluate(model, x, y, batch_size)
    layers = dict(spiking_layers(model))
    return Inspection(
        checkpoint=str(path), dataset=dataset.name, accuracy=acc,
        spikes_per_neuron=spikes_per_neuron(metrics, model), layers=metrics,
        params=parameter_ranges(model),
        mp_init={n: float(m.mp_mean) for n, m in layers.items() if m.config.mp_init},
        thresholds={n: float(m.threshold) for n, m in layers.items()},
    )
