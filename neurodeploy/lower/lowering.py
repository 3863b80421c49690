"""Lower a trained network to a :class:`~neurodeploy.lower.graph.DeployGraph` for a profile.

Steps: build the fake-quant network (:func:`neurodeploy.quantize.fakequant.fake_quantize`: fold
into chip-shaped blocks, refuse what the profile cannot run, choose per-layer scales from
calibration data), then write out exactly the integers it computes with
(:func:`graph_from_fakequant`), and check them against the profile's resources
(:func:`neurodeploy.hardware.check_fit`). So the simulator runs what fine-tuning trained.

The integer settings of each layer (ranges, exponents, threshold, bias, initial potential) come
from the profile family's lowering (e.g. :mod:`neurodeploy.families.loihi.lowering`).
"""

from __future__ import annotations

from typing import Any

import torch

from neurodeploy.hardware import HardwareProfile, check_fit
from neurodeploy.lower.graph import Conv2d, Dense, DeployGraph, Flatten, NeuronGroup, Projection
from neurodeploy.models import SpikingNet
from neurodeploy.quantize.fakequant import Constraints, FakeQuantNet, fake_quantize
from neurodeploy.quantize.graph_model import GraphModel
from neurodeploy.quantize.record import QuantRecord

PRECISION_WARNING_LEVELS = 16
"""Warn when a threshold has fewer integer levels than this (coarse spike timing)."""


def graph_from_fakequant(fq: FakeQuantNet, check: bool = True, metadata: dict[str, Any] | None = None
                         ) -> DeployGraph:
    """The deployment graph holding exactly the integers ``fq`` computes with."""
    layers: list[Any] = []
    warnings: list[str] = []
    scales = []
    edges = fq.integer_edges() if fq.graph else [[] for _ in fq.layers]
    for (layer, w_int, b_int), flat, edge_w in zip(fq.integer_layers(), fq.flatten_before, edges, strict=True):
        if flat:
            layers.append(Flatten(name=f"{layer.name}.flatten"))
        w = w_int.numpy()
        bias = b_int.numpy().reshape(-1)
        if layer.spiking and layer.threshold < PRECISION_WARNING_LEVELS:
            warnings.append(f"{layer.name}: threshold has only {layer.threshold} integer levels "
                            f"(scale limited by {layer.limited_by})")
        if layer.initial_v:
            warnings.append(f"{layer.name}: MP-Init initial potential {layer.initial_v} is "
                            "simulated; netx files cannot carry it")
        group = NeuronGroup(
            shape=layer.out_shape, current_decay=layer.current_decay,
            voltage_decay=layer.voltage_decay, threshold=layer.threshold, bias=bias,
            bias_exp=int(layer.bias_exp), spiking=layer.spiking, reset=layer.reset,
            initial_v=layer.initial_v)
        wiring: dict[str, Any] = {}
        if fq.graph:  # a graph: every layer names its source and delay (docs/graphs.md)
            wiring = {"source": layer.source, "delay": layer.delay, "extra": [
                Projection(source=q.source, weight=wq.numpy(), delay=q.delay, kind=q.kind,
                           stride=q.stride, padding=q.padding, groups=1, weight_exp=int(q.weight_exp),
                           name=q.name) for q, wq in zip(layer.extra, edge_w, strict=True)]}
        if layer.kind == "dense":
            layers.append(Dense(weight=w, neurons=group, weight_exp=layer.weight_exp, name=layer.name,
                                **wiring))
        else:
            layers.append(Conv2d(weight=w, neurons=group, stride=layer.stride, padding=layer.padding,
                                 groups=1, weight_exp=layer.weight_exp, name=layer.name, **wiring))
        scales.append(layer.to_dict())
    lo, hi = fq.layers[0].w_lo, fq.layers[0].w_hi
    graph = DeployGraph(
        profile=fq.profile.name, family=fq.profile.family, input_shape=fq.input_shape, layers=layers,
        steps=fq.input_steps, encoding=fq.encoding.to_dict(), readout={"kind": fq.readout_kind},
        metadata={"weight_range": [lo, hi], "constraints": fq.constraints.to_dict(), "scales": scales,
                  "warnings": warnings, **(metadata or {})},
        target=fq.profile,
        quant=QuantRecord(fq.profile.name, fq.constraints, tuple(layer.scale for layer in fq.layers)))
    if check:
        check_fit(graph, fq.profile)
    return graph


def lower_model(model: SpikingNet | GraphModel, profile: str | HardwareProfile, calibration: torch.Tensor, *,
                weight_bits: int | None = None, constraints: Constraints | None = None,
                check: bool = True) -> DeployGraph:
    """Lower ``model`` to the integer program of ``profile``.

    Args:
        model: a trained network (eval semantics are used).
        profile: profile name, path or object.
        calibration: samples ``[N, ...]`` (values in [0, 1]) whose activity sets the scales;
            a few hundred training samples are enough.
        weight_bits: weight precision override in bits (2..16, within the profile's range).
        constraints: all constraints (weight bits, state bits, latency budget); ``weight_bits``
            is a shortcut for ``Constraints(weight_bits=...)``.
        check: check the graph against the profile's resource limits (raises :class:`FitError`).
    """
    c = constraints or Constraints(weight_bits=weight_bits)
    fq = fake_quantize(model, profile, calibration, c)
    return graph_from_fakequant(fq, check=check, metadata={
        "source": {"arch": model.spec.arch, "neuron": model.spec.neuron}})
