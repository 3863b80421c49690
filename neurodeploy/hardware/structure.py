"""Structural connectivity of a deployment graph: shapes, neurons, synapses, fan-in, fan-out.

Shared by resource fitting (:mod:`neurodeploy.hardware.fit`) and the simulator's SynOp counts.
It reads a :class:`~neurodeploy.lower.graph.DeployGraph` by attribute (``input_shape``,
``layers`` with ``kind``), so this module does not import the lowering package.

Counts are structural: a connection exists wherever the layer's geometry links an input to a
neuron, whatever its weight (zero weights still occupy synapse memory in a dense encoding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from neurodeploy.arith.synapse import conv_output_shape, window_counts
from neurodeploy.errors import FormatError


@dataclass
class LayerStructure:
    """Geometry of one synapse layer and the neuron group it feeds.

    Attributes:
        index: position in ``graph.layers``.
        name: the layer's name (or ``"<kind><index>"`` when unnamed).
        kind: ``"dense"``, ``"conv"`` or ``"sumpool"``.
        in_shape: per-sample shape of the events it reads (after any Flatten).
        out_shape: per-sample shape of its neuron group.
        neurons: neurons in the group.
        synapses: structural connections.
        max_fan_in: largest number of inputs of one neuron.
        max_fan_out: largest number of neurons one input reaches.
        fan_out: ``in_shape`` array: neurons reached by each input element.
    """

    index: int
    name: str
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    neurons: int
    synapses: int
    max_fan_in: int
    max_fan_out: int
    fan_out: np.ndarray

    @property
    def label(self) -> str:
        """``layer <index> '<name>' (<kind>)`` for messages."""
        return f"layer {self.index} '{self.name}' ({self.kind})"


def layer_label(index: int, layer: Any) -> str:
    """Message label of any graph layer."""
    return f"layer {index} '{layer_name(index, layer)}' ({layer.kind})"


def layer_name(index: int, layer: Any) -> str:
    """The layer's name, or ``<kind><index>`` when it has none."""
    return getattr(layer, "name", "") or f"{layer.kind}{index}"


def _pair(value: Any, label: str, what: str) -> tuple[int, int]:
    try:
        a, b = (int(x) for x in value)
    except (TypeError, ValueError):
        raise FormatError(f"{label}: {what} must be two integers, got {value!r}") from None
    return a, b


def _check_group(label: str, layer: Any, shape: tuple[int, ...]) -> None:
    group = getattr(layer, "neurons", None)
    if group is None:
        raise FormatError(f"{label}: has no neuron group")
    size = int(np.prod(group.shape)) if len(tuple(group.shape)) else 1
    if size != int(np.prod(shape)):
        raise FormatError(f"{label}: neuron group shape {tuple(group.shape)} does not match the "
                          f"synapse output shape {shape}")


def layer_structure(graph: Any) -> list[LayerStructure]:
    """Walk ``graph.layers`` and describe every synapse layer.

    Raises :class:`FormatError` (one line naming the layer) when shapes do not chain: a dense
    layer after a multi-dimensional output without a Flatten, a channel mismatch, an empty output
    or a neuron group of the wrong size.
    """
    shape = tuple(int(d) for d in graph.input_shape)
    if not shape or any(d <= 0 for d in shape):
        raise FormatError(f"deployment graph: invalid input shape {shape}")
    out: list[LayerStructure] = []
    for i, layer in enumerate(graph.layers):
        kind = getattr(layer, "kind", None)
        label = f"layer {i} '{layer_name(i, layer)}' ({kind})" if kind else f"layer {i}"
        if kind == "flatten":
            shape = (int(np.prod(shape)),)
            continue
        if kind == "dense":
            w = np.asarray(layer.weight)
            if w.ndim != 2:
                raise FormatError(f"{label}: weight must be 2-D [out, in], got shape {w.shape}")
            n_out, n_in = (int(d) for d in w.shape)
            if len(shape) != 1:
                raise FormatError(f"{label}: expects a 1-D input of {n_in}, got shape {shape}; "
                                  "insert a Flatten layer")
            if shape[0] != n_in:
                raise FormatError(f"{label}: weight expects {n_in} inputs, previous layer gives "
                                  f"{shape[0]}")
            out_shape = (n_out,)
            _check_group(label, layer, out_shape)
            out.append(LayerStructure(
                i, layer_name(i, layer), kind, shape, out_shape, n_out, n_out * n_in, n_in,
                n_out, np.full(shape, n_out, dtype=np.int64)))
        elif kind in ("conv", "sumpool"):
            if len(shape) != 3:
                raise FormatError(f"{label}: expects a (C, H, W) input, got shape {shape}")
            c, h, wd = shape
            if kind == "conv":
                w = np.asarray(layer.weight)
                if w.ndim != 4:
                    raise FormatError(f"{label}: weight must be 4-D [out, in/groups, kH, kW], "
                                      f"got shape {w.shape}")
                o, cg, kh, kw = (int(d) for d in w.shape)
                groups = int(layer.groups)
                if groups < 1 or c != cg * groups or o % groups:
                    raise FormatError(f"{label}: {c} input channels, weight {tuple(w.shape)} and "
                                      f"groups={groups} do not match")
                stride = _pair(layer.stride, label, "stride")
                padding = _pair(layer.padding, label, "padding")
                og = o // groups
            else:
                kh, kw = _pair(layer.kernel, label, "kernel")
                stride = _pair(layer.stride if layer.stride is not None else (kh, kw), label,
                               "stride")
                padding = (0, 0)
                o, cg, og = c, 1, 1
            if min(kh, kw, *stride) < 1 or min(padding) < 0:
                raise FormatError(f"{label}: kernel and stride must be >= 1 and padding >= 0")
            ho, wo = conv_output_shape((h, wd), (kh, kw), stride, padding)
            if ho < 1 or wo < 1:
                raise FormatError(f"{label}: output would be empty for input {shape}")
            taps, covers = window_counts((h, wd), (kh, kw), stride, padding)
            out_shape = (o, ho, wo)
            _check_group(label, layer, out_shape)
            fan_out = np.broadcast_to(og * covers, (c, h, wd)).copy()
            out.append(LayerStructure(
                i, layer_name(i, layer), kind, shape, out_shape, o * ho * wo,
                int(o * cg * taps.sum()), int(cg * taps.max()), int(fan_out.max()), fan_out))
        else:
            raise FormatError(f"{label}: unknown layer kind {kind!r}")
        shape = out_shape
    if not out:
        raise FormatError("deployment graph has no synapse layer")
    return out
