"""A TTFS integer program (:mod:`.program`) as a deployment graph, and its input encoding.

:func:`graph_from_program` writes every program layer as a graph layer whose neuron group runs the
family's clock (:mod:`.arith`): spiking layer ``n`` (from 1) is a ``"ramp"`` group firing in
window ``n`` (``window_start = n * K``) with ``threshold = K * rho`` and ``bias = round(D / u)``;
the read-out a non-spiking ``"ramp"`` group integrating the last window; a pool a sum pool into a
``"count"`` group (``threshold`` = pool size; ``bias`` = size - 1 for the earliest spike, 0 for the
latest). The graph's ``steps`` are the whole program, ``K * (1 + spiking layers)``; its encoding
(:func:`encode_inputs`) puts each input value on the first window as one spike; its ``target`` is
the profile with the program's window and weight bits. So the shared simulator, run with no extra
steps, gives the program's spike steps in every layer and its integer read-out.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from neurodeploy.errors import ConfigError, UnsupportedError
from neurodeploy.families.ttfs.program import (
    ProgramFlatten,
    ProgramLayer,
    ProgramPool,
    TTFSProgram,
    encode_values,
    weight_levels,
)
from neurodeploy.lower.graph import Conv2d, Dense, DeployGraph, Flatten, NeuronGroup, SumPool2d

ENCODING_KIND = "time_grid"


def program_profile(program: TTFSProgram, profile: Any = "ttfs") -> Any:
    """``profile`` with the program's window bits (``timing.window_bits``) and weight format
    (``weights.bits``, symmetric range): the number format its graph runs."""
    from neurodeploy.hardware import load_profile

    p = load_profile(profile)
    if p.family != "ttfs":
        raise ConfigError(f"profile {p.name} runs family {p.family!r}, not ttfs")
    cap = p.timing.max_window_bits or p.timing.window_bits
    if program.time_bits > cap:
        raise UnsupportedError(f"{program.time_bits} time bits exceed profile {p.name}'s "
                               f"timing.max_window_bits = {cap}")
    if program.weight_bits > p.weights.bits:
        raise UnsupportedError(f"{program.weight_bits}-bit weights exceed profile {p.name}'s "
                               f"weights.bits = {p.weights.bits}")
    levels = weight_levels(program.weight_bits)
    return dataclasses.replace(
        p,
        timing=dataclasses.replace(p.timing, window_bits=program.time_bits),
        weights=dataclasses.replace(p.weights, bits=program.weight_bits, range=(-levels, levels)),
    )


def _pool_shape(shape: tuple[int, ...], op: ProgramPool) -> tuple[int, ...]:
    c, h, w = shape
    (kh, kw), (sh, sw) = op.kernel, op.stride
    return (c, (h - kh) // sh + 1, (w - kw) // sw + 1)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.int64)


def graph_from_program(program: TTFSProgram, profile: Any = "ttfs",
                       metadata: dict[str, Any] | None = None) -> DeployGraph:
    """The deployment graph of ``program`` (see the module docstring); refuses padded pools."""
    p = program_profile(program, profile)
    k = program.steps
    layers: list[Any] = []
    shape = tuple(program.input_shape)
    n = 0
    for i, op in enumerate(program.ops):
        if isinstance(op, ProgramFlatten):
            layers.append(Flatten(name=f"flatten{i}"))
            shape = (int(np.prod(shape)),)
            continue
        if isinstance(op, ProgramPool):
            if tuple(op.padding) != (0, 0):
                raise UnsupportedError(f"layer {i}: a padded time pool has no deployment graph "
                                       "form (a chip pool has no padding)")
            size = int(op.kernel[0] * op.kernel[1])
            bias = np.full(shape[0], size - 1, dtype=np.int64)
            bias[list(op.min_channels)] = 0
            shape = _pool_shape(shape, op)
            group = NeuronGroup(shape=shape, current_decay=0, voltage_decay=0, threshold=size,
                                bias=bias, kind="count")
            layers.append(SumPool2d(kernel=tuple(op.kernel), neurons=group,
                                    stride=tuple(op.stride), name=f"pool{i}"))
            continue
        if not isinstance(op, ProgramLayer):  # pragma: no cover - programs hold only these ops
            raise ConfigError(f"layer {i}: unknown program op {type(op).__name__}")
        n += 1
        shape = tuple(op.out_shape) if op.out_shape else (int(op.weight.shape[0]),)
        group = NeuronGroup(
            shape=shape, current_decay=0, voltage_decay=0,
            threshold=k * int(op.ramp) if op.spiking else 1,
            bias=_np(op.offset()), spiking=op.spiking, kind="ramp",
            window_start=n * k, window_steps=k)
        name = f"{'ttfs' if op.spiking else 'readout'}{i}"
        if op.kind == "dense":
            layers.append(Dense(weight=_np(op.weight), neurons=group, weight_exp=int(op.exponent),
                                name=name))
        else:
            layers.append(Conv2d(weight=_np(op.weight), neurons=group, stride=tuple(op.stride),
                                 padding=tuple(op.padding), weight_exp=int(op.exponent),
                                 name=name))
    meta = dict(metadata or {})
    meta["ttfs"] = {"windows": [float(w) for w in program.windows],
                    "units": [float(layer.unit) for layer in program.layers()],
                    "time_bits": program.time_bits, "weight_bits": program.weight_bits}
    return DeployGraph(
        profile=p.name, family="ttfs", input_shape=tuple(program.input_shape), layers=layers,
        steps=program.latency_steps,
        encoding={"family": "ttfs", "kind": ENCODING_KIND, "window_steps": k,
                  "range": [float(v) for v in program.input_range],
                  "shape": list(program.input_shape)},
        readout={"kind": "potential"}, metadata=meta, target=p)


def encode_inputs(x: torch.Tensor, steps: int, encoding: dict[str, Any]) -> np.ndarray:
    """Input raster ``[B, steps, *shape]`` (uint8): each value ``x_hat = round(x * K)`` of
    :func:`~.program.encode_values` as one spike at step ``K - x_hat`` of the first window (none
    for 0)."""
    if encoding.get("kind") != ENCODING_KIND:
        raise ConfigError(f"unknown ttfs input encoding {encoding.get('kind')!r}; expected "
                          f"{ENCODING_KIND}")
    k = int(encoding["window_steps"])
    shape = tuple(int(d) for d in encoding["shape"])
    if steps < k:
        raise ConfigError(f"{steps} steps do not hold the input window of {k} steps")
    x_hat = encode_values(x, shape, tuple(encoding["range"]), k).numpy()
    b = x_hat.shape[0]
    raster = np.zeros((b, steps, *shape), dtype=np.uint8)
    flat = x_hat.reshape(b, -1)
    rows, cols = np.nonzero(flat > 0)
    raster.reshape(b, steps, -1)[rows, k - flat[rows, cols], cols] = 1
    return raster
