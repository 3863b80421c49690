"""Lower a trained network to a :class:`~neurodeploy.lower.graph.DeployGraph` for a profile.

Steps: fold the network into chip-shaped float blocks (:mod:`neurodeploy.quantize.fold`), check
that the profile can run every block (layer kinds, reset mode, input encoding), choose per-layer
scales from calibration data (:mod:`neurodeploy.quantize.calibrate`), round to the profile's
integer formats, and check the result against the profile's resources
(:func:`neurodeploy.hardware.check_fit`). Anything the profile cannot run is refused with a
one-line :class:`~neurodeploy.errors.UnsupportedError` or :class:`~neurodeploy.errors.FitError`.

Loihi units (loihi.md §5.2): with scale ``s`` (integer units per float unit of potential) a block
becomes ``W_int = round(s·u_in·W)``, ``threshold = round(s·V)``, ``bias = round(s·b)`` with
``bias_exp = activation_shift`` (so the bias enters ``v`` in the same units as ``W·x``), decays as
folded, and MP-Init's initial potential ``initial_v = round(2**6·s·μ)``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from neurodeploy.errors import UnsupportedError
from neurodeploy.hardware import HardwareProfile, check_fit, load_profile
from neurodeploy.lower.graph import Conv2d, Dense, DeployGraph, Flatten, NeuronGroup
from neurodeploy.models import SpikingNet
from neurodeploy.quantize.calibrate import LayerScale, choose_scale, weight_range
from neurodeploy.quantize.fold import FloatBlock, fold_model, run_blocks

PRECISION_WARNING_LEVELS = 16
"""Warn when a threshold has fewer integer levels than this (coarse spike timing)."""


def _input_unit(model: SpikingNet, profile: HardwareProfile) -> tuple[float, dict[str, Any]]:
    enc = model.spec.encoding_config
    if enc.kind == "direct":
        if enc.bits is None:
            raise UnsupportedError(
                "the network takes direct float input, which no chip receives; retrain with "
                "encoding bits (e.g. {kind = \"direct\", bits = 8}) or rate/latency encoding")
        if profile.input.graded_bits < enc.bits:
            what = "binary input spikes only" if profile.input.graded_bits == 0 else \
                f"graded input of at most {profile.input.graded_bits} bits"
            raise UnsupportedError(
                f"profile {profile.name} takes {what} (input.graded_bits = "
                f"{profile.input.graded_bits}) but the network's direct encoding needs {enc.bits} "
                "bits; use rate or latency encoding, or fewer encoding bits")
        return 1.0 / (2**enc.bits - 1), enc.to_dict()
    return 1.0, enc.to_dict()


def _check_supported(blocks: list[FloatBlock], profile: HardwareProfile) -> None:
    kinds = set(profile.layers.kinds)
    for blk in blocks:
        if blk.kind not in kinds:
            raise UnsupportedError(f"{blk.name}: profile {profile.name} cannot run {blk.kind} layers "
                                   f"(layers.kinds = {sorted(kinds)})")
        n = blk.neurons
        if n is not None and n.spiking and n.reset not in profile.neuron.reset_modes:
            raise UnsupportedError(
                f"{blk.name}: reset by {n.reset} is not available on profile {profile.name} "
                f"(neuron.reset_modes = {list(profile.neuron.reset_modes)}); retrain with "
                f"reset = \"{profile.neuron.reset_modes[0]}\"")
        if n is not None:
            for what, value, rng in (("current", n.current_decay, profile.neuron.current_decay_range),
                                     ("voltage", n.voltage_decay, profile.neuron.voltage_decay_range)):
                if not rng[0] <= value <= rng[1]:
                    raise UnsupportedError(f"{blk.name}: {what} decay {value} is outside profile "
                                           f"{profile.name}'s range {list(rng)}")


def lower_model(model: SpikingNet, profile: str | HardwareProfile, calibration: torch.Tensor, *,
                weight_bits: int | None = None, check: bool = True) -> DeployGraph:
    """Lower ``model`` to the integer program of ``profile``.

    Args:
        model: a trained network (eval semantics are used).
        profile: profile name, path or object.
        calibration: samples ``[N, ...]`` (values in [0, 1]) whose activity sets the scales;
            a few hundred training samples are enough.
        weight_bits: weight precision override in bits (2..16, within the profile's range).
        check: check the graph against the profile's resource limits (raises :class:`FitError`).
    """
    p = load_profile(profile)
    if p.family != "loihi":
        raise UnsupportedError(
            f"lowering trained networks to the {p.family} family is not available; profile "
            f"{p.name} can be simulated from a deployment graph written by hand")
    model = model.eval()
    input_unit, enc = _input_unit(model, p)
    blocks = fold_model(model)
    _check_supported(blocks, p)
    gen = torch.Generator().manual_seed(model.spec.encoding_config.seed)
    with torch.no_grad():
        seq = model.encode(calibration.to(torch.float32), generator=gen)
    _, stats = run_blocks(blocks, seq, record=True)
    lo, hi = weight_range(p, weight_bits)
    act = p.neuron.activation_shift
    thr_lo, thr_hi = p.neuron.threshold_range
    layers: list[Any] = []
    scales: list[LayerScale] = []
    warnings: list[str] = []
    unit = input_unit
    for blk, st in zip(blocks, stats, strict=True):
        if blk.kind == "flatten":
            layers.append(Flatten(name=blk.name))
            continue
        sc = choose_scale(blk, st, p, unit, weight_bits)
        scales.append(sc)
        s = sc.scale
        w = torch.clamp(torch.round(blk.weight * unit * s), lo, hi).to(torch.int64).numpy()
        bias = torch.round(blk.bias * s).to(torch.int64).numpy()
        n = blk.neurons
        if n.spiking:
            thr = int(min(max(round(s * n.threshold), thr_lo), thr_hi))
            if thr < PRECISION_WARNING_LEVELS:
                warnings.append(f"{blk.name}: threshold has only {thr} integer levels "
                                f"(scale limited by {sc.limited_by})")
        else:
            thr = int(thr_hi)
        bias_exp = act if p.neuron.bias_exponent_range[0] <= act <= p.neuron.bias_exponent_range[1] \
            else p.neuron.bias_exponent_range[1]
        if bias_exp != act:
            bias = np.round(bias * 2.0 ** (act - bias_exp)).astype(np.int64)
        if blk.kind == "conv" and blk.bias is not None:
            bias = bias.reshape(-1)  # per channel
        group = NeuronGroup(
            shape=tuple(int(v) for v in blk.out_shape), current_decay=int(n.current_decay),
            voltage_decay=int(n.voltage_decay), threshold=thr, bias=bias, bias_exp=int(bias_exp),
            spiking=bool(n.spiking), reset=n.reset,
            initial_v=int(round(2**act * s * n.initial_v)))
        if n.initial_v:
            warnings.append(f"{blk.name}: MP-Init initial potential {group.initial_v} is simulated; "
                            "netx files cannot carry it")
        if blk.kind == "dense":
            layers.append(Dense(weight=w, neurons=group, weight_exp=0, name=blk.name))
        else:
            layers.append(Conv2d(weight=w, neurons=group, stride=tuple(blk.stride),
                                 padding=tuple(blk.padding), groups=1, weight_exp=0, name=blk.name))
        unit = 1.0
    readout = {"kind": "spike_count" if model.spec.readout == "spike_count" else "potential"}
    graph = DeployGraph(
        profile=p.name, family=p.family, input_shape=tuple(model.spec.input_shape), layers=layers,
        steps=int(model.spec.steps), encoding=enc, readout=readout,
        metadata={
            "weight_bits": weight_bits,
            "weight_range": [lo, hi],
            "scales": [asdict(sc) for sc in scales],
            "warnings": warnings,
            "source": {"arch": model.spec.arch, "neuron": model.spec.neuron},
        })
    if check:
        check_fit(graph, p)
    return graph
