"""Inspect a checkpoint: firing rates, dead neurons and parameter ranges, as data, table and plot."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from neurodeploy.train.checkpoint import load_checkpoint
from neurodeploy.train.monitor import QUANTILE_MAX_ELEMENTS, QUANTILES, even_sample, layer_activity, spikes_per_neuron
from neurodeploy.train.trainer import evaluate


@dataclass
class Inspection:
    """What :func:`inspect_checkpoint` found."""

    checkpoint: str
    dataset: str
    accuracy: float | None
    spikes_per_neuron: float
    layers: dict[str, dict[str, float | None]]
    params: dict[str, dict[str, float]]
    mp_init: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    graph: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def table(self) -> str:
        """A fixed-width text table of the per-layer activity."""
        head = f"{'layer':<12}{'neurons':>8}{'rate':>8}{'dead%':>7}{'sat%':>6}{'gdead%':>8}" \
               f"{'q50/V':>7}{'q99/V':>7}{'V':>8}"
        rows = [head, "-" * len(head)]
        for name, m in self.layers.items():
            gdead = "-" if m.get("grad_dead") is None else f"{100 * m['grad_dead']:.1f}"
            rows.append(f"{name:<12}{int(m['neurons']):>8}{m['rate']:>8.4f}{100 * m['dead']:>7.1f}"
                        f"{100 * m['saturated']:>6.1f}{gdead:>8}{m['q50']:>7.2f}"
                        f"{m['q99']:>7.2f}{self.thresholds.get(name, float('nan')):>8.3g}")
        if self.graph:  # a graph network: its nodes and every parameter's range
            rows += ["", "graph:", *self.graph, "", f"{'parameter':<24}{'count':>7}{'min':>10}{'max':>10}"]
            rows += [f"{k:<24}{v['count']:>7}{v['min']:>10.4g}{v['max']:>10.4g}" for k, v in self.params.items()]
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



def inspect_graph_model(model: Any, dataset: Any, checkpoint: str | Path, limit: int | None = None,
                        batch_size: int = 256) -> Inspection:
    """Measure a graph network (a :class:`~neurodeploy.quantize.graph_model.GraphModel`: its ``net``
    is a :class:`~neurodeploy.models.graph_net.GraphNet`) on ``dataset``'s test split: per spiking
    node of the graph its firing rate, dead (never fired) and saturated (fired at every step of every
    sample) fractions and the quantiles of its potential after each step's reset over its
    threshold; per node the ranges of its parameters (``node.field``). Gradient-dead fractions are a
    training monitor's and left out (``None``)."""
    net = model.net
    x, y = dataset.x_test, dataset.y_test
    if limit is not None:
        x, y = x[:limit], y[:limit]
    spiking = [k for k in net.order if k in net.surrogates]
    nodes = {k: net._node(k) for k in net.order}
    potentials: dict[str, list[torch.Tensor]] = {k: [] for k in spiking}
    step = net._step

    def recording(name: str, node: Any, st: dict[str, Any], inp: torch.Tensor) -> torch.Tensor:
        out = step(name, node, st, inp)
        if name in potentials:
            potentials[name].append((st["u"] / node.threshold).detach().flatten())
        return out

    sums = {k: torch.zeros(()) for k in spiking}
    fired_any: dict[str, torch.Tensor] = {}
    fired_all: dict[str, torch.Tensor] = {}
    correct = 0
    gen = torch.Generator().manual_seed(model.spec.encoding_config.seed)
    was = model.training
    model.eval()
    net._step = recording
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                logits, trace = net(model.encode(x[i:i + batch_size], gen), trace=True)
                correct += int((logits.argmax(1) == y[i:i + batch_size]).sum())
                for k in spiking:
                    s = trace[k]
                    sums[k] = sums[k] + s.double().sum()
                    hit = s.sum(dim=(0, 1)) > 0
                    full = s.amin(dim=(0, 1)) > 0
                    fired_any[k] = hit if k not in fired_any else fired_any[k] | hit
                    fired_all[k] = full if k not in fired_all else fired_all[k] & full
    finally:
        del net._step
        model.train(was)
    steps, n = model.spec.steps, max(len(x), 1)
    layers: dict[str, dict[str, float | None]] = {}
    for k in spiking:
        neurons = int(fired_any[k].numel()) if k in fired_any else int(torch.tensor(net.shapes[k]).prod())
        qs = torch.quantile(even_sample(torch.cat(potentials[k]).double(), QUANTILE_MAX_ELEMENTS),
                            torch.tensor(QUANTILES, dtype=torch.float64)) \
            if potentials[k] else torch.zeros(len(QUANTILES), dtype=torch.float64)
        layers[k] = {"neurons": float(neurons), "rate": float(sums[k]) / (neurons * steps * n),
                     "dead": 1.0 - float(fired_any[k].float().mean()) if k in fired_any else 1.0,
                     "saturated": float(fired_all[k].float().mean()) if k in fired_all else 0.0,
                     "grad_dead": None,
                     **{f"q{int(round(q * 100)):02d}": float(v) for q, v in zip(QUANTILES, qs, strict=True)}}
    params = {}
    for k, node in nodes.items():
        for f in dataclasses.fields(node):
            v = getattr(node, f.name)
            if isinstance(v, torch.Tensor) or (isinstance(v, float) and f.name != "steps"):
                t = torch.as_tensor(v).detach().double().flatten()
                params[f"{k}.{f.name}"] = {"min": float(t.min()), "max": float(t.max()), "mean": float(t.mean()),
                                           "std": float(t.std()) if t.numel() > 1 else 0.0, "count": int(t.numel())}
    total = sum(m["neurons"] for m in layers.values())
    spn = sum(m["rate"] * steps * m["neurons"] for m in layers.values()) / max(total, 1.0)
    thresholds = {k: float(torch.as_tensor(nodes[k].threshold).double().mean()) for k in spiking}
    mp = {k: float(torch.as_tensor(nodes[k].v_init).double().mean()) for k in spiking
          if bool(torch.any(torch.as_tensor(nodes[k].v_init) != 0))}
    g = net.graph
    listing = [f"  {k:<14}{nodes[k].kind:<9}{str(list(net.shapes[k])):<14}<- "
               + ", ".join(g.inputs_of(k) + [f"{r} (previous step)" for r in g.inputs_of(k, True)])
               for k in net.order]
    return Inspection(checkpoint=str(checkpoint), dataset=dataset.name, accuracy=correct / n,
                      spikes_per_neuron=spn, layers=layers, params=params, mp_init=mp, thresholds=thresholds,
                      graph=listing)
