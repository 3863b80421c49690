"""Deploy a TTFS network: its integer time-grid program and that program's deployment graph.

The program itself — the clock, the closed form, the weight scale and ramp — is the ``ttfs``
chip family's (:mod:`neurodeploy.families.ttfs.program`); :func:`build_program` writes a
:class:`~neurodeploy.ttfs.network.TTFSNetwork` as one, with the constraints' ``weight_bits`` and
``time_bits`` or, where they are unset, the profile's (``weights.bits``, ``timing.window_bits``;
the shipped ``ttfs`` profile by default), and :func:`lower_ttfs` writes it as a
:class:`~neurodeploy.lower.graph.DeployGraph` the shared simulator runs and the fit check sizes.
The float forward pass under :class:`~neurodeploy.ttfs.constraints.TTFSConstraints` with the same
bits computes what the program runs.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from neurodeploy.errors import ConfigError
from neurodeploy.families.ttfs.graph import graph_from_program
from neurodeploy.families.ttfs.program import (
    ProgramFlatten,
    ProgramLayer,
    ProgramPool,
    ProgramRun,
    TTFSProgram,
    check_exact,
    program_accuracy,
    weight_levels,
    weight_range,
    weight_scale,
)
from neurodeploy.hardware import load_profile
from neurodeploy.lower.graph import DeployGraph
from neurodeploy.ttfs.constraints import TTFSConstraints
from neurodeploy.ttfs.network import Flatten, Synapse, TimePool, TTFSNetwork

__all__ = ["ProgramLayer", "ProgramRun", "TTFSProgram", "build_program", "lower_ttfs",
           "program_accuracy"]


def build_program(net: TTFSNetwork, constraints: TTFSConstraints | None = None,
                  profile: Any = "ttfs") -> TTFSProgram:
    """The integer program of ``net`` (B1 only) with the constraints' ``weight_bits`` and
    ``time_bits`` (defaults: ``profile``'s ``weights.bits`` and ``timing.window_bits``; ramps of
    at least its ``neuron.min_ramp``)."""
    if net.variant != "b1":
        raise ConfigError(
            f"only b1 TTFS networks have an integer program; this one is {net.variant}"
        )
    p = load_profile(profile)
    if p.family != "ttfs":
        raise ConfigError(f"profile {p.name} runs family {p.family!r}, not ttfs")
    c = constraints or TTFSConstraints()
    bits = c.weight_bits or p.weights.bits
    tb = c.time_bits or p.timing.window_bits
    k = 2**tb
    levels = weight_levels(bits)
    ops: list[Any] = []
    prev_len = 1.0
    n = 0
    with torch.no_grad():
        for stage in net.stages:
            if isinstance(stage, Flatten):
                ops.append(ProgramFlatten())
                continue
            if isinstance(stage, TimePool):
                ops.append(ProgramPool(stage.kernel, stage.stride, stage.padding,
                                       tuple(stage.min_channels)))
                continue
            if not isinstance(stage, Synapse):  # pragma: no cover - networks hold only these
                raise ConfigError(f"unknown TTFS stage {type(stage).__name__}")
            w = stage.weight.detach()
            max_abs = weight_range(w, c.weight_percentile)
            dt_in = prev_len / k
            if stage.spiking:
                length = float(net.windows[n])
                s, rho, e = weight_scale(max_abs, bits, dt_in, length / k, p.neuron.min_ramp)
            else:
                s, rho, e = weight_scale(max_abs, bits)
            raw = torch.round(w / s)
            w_int = raw.clamp(-levels, levels).to(torch.int64)
            unit = s * dt_in / 2**e
            d_int = torch.round(stage.bias.detach() / unit).to(torch.int64)
            check_exact(f"layer {len(ops)}", bits, math.prod(w.shape[1:]), k, e)
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


def lower_ttfs(net: TTFSNetwork, constraints: TTFSConstraints | None = None,
               profile: Any = "ttfs", metadata: dict[str, Any] | None = None,
               check: bool = True) -> DeployGraph:
    """``net``'s deployment graph on ``profile``: :func:`build_program`, written by the family's
    :func:`~neurodeploy.families.ttfs.graph.graph_from_program`, then the shared design rules
    and, with ``check``, the fit check (:func:`~neurodeploy.hardware.check_fit`)."""
    from neurodeploy.families import rules as design_rules
    from neurodeploy.hardware import check_fit

    graph = graph_from_program(build_program(net, constraints, profile), profile, metadata)
    design_rules.check(graph.target, "lower", encoding=graph.encoding, layers=graph.layers)
    if check:
        check_fit(graph)
    return graph
