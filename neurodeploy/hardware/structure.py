"""Structural connectivity of a deployment graph: shapes, neurons, synapses, fan-in, fan-out.

Shared by resource fitting (:mod:`neurodeploy.hardware.fit`) and the simulator's SynOp counts.
It reads a :class:`~neurodeploy.lower.graph.DeployGraph` by attribute (``input_shape``,
``layers`` with ``kind``, and for graphs beyond chains ``source``, ``delay`` and ``extra``), so
this module does not import the lowering package.

A neuron group receives one or more edges (:func:`layer_edges`): the layer's own synapses, from
the layer named by its ``source`` (``None``: the previous non-flatten layer, ``-1``: the input),
and every :class:`~neurodeploy.lower.graph.Projection` in its ``extra`` (a merge such as a
residual skip, or a recurrent edge when the projection's source is the layer itself). A dense
edge from a ``(C, H, W)`` source reads it flattened in torch order; the layer's own dense synapses
with no ``source`` still need a Flatten before them, as in a chain.

Counts are structural: a connection exists wherever an edge's geometry links an input to a
neuron, whatever its weight (zero weights still occupy synapse memory in a dense encoding). A
group's synapses and fan-in are summed over its edges; a neuron's fan-out is summed over every
edge that reads its group (:func:`source_fan_out`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neurodeploy.arith.synapse import conv_output_shape, window_counts
from neurodeploy.errors import FormatError, ResourceError


@dataclass
class EdgeStructure:
    """Geometry of one edge into a neuron group (the layer's own synapses or a projection).

    Attributes:
        source: index in ``graph.layers`` of the layer whose group it reads (``-1``: the input).
        delay: the edge's own delay (``None``: the profile's timing).
        kind: ``"dense"``, ``"conv"`` or ``"sumpool"``.
        synapse: the object holding the weights and geometry (the layer itself, or its
            projection).
        projection: ``True`` for a projection of ``extra``.
        recurrent: the edge reads the group it feeds.
        in_shape: per-sample shape of the events it reads (a dense edge: flattened).
        out_shape: per-sample shape of its synaptic output.
        synapses: structural connections.
        fan_in: ``out_shape`` array: inputs of every neuron through this edge.
        fan_out: ``in_shape`` array: neurons reached by every input element.
    """

    source: int
    delay: int | None
    kind: str
    synapse: Any
    projection: bool
    recurrent: bool
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    synapses: int
    fan_in: np.ndarray
    fan_out: np.ndarray

    @property
    def max_fan_out(self) -> int:
        """Largest number of neurons one input reaches through this edge."""
        return int(self.fan_out.max()) if self.fan_out.size else 0


@dataclass
class LayerStructure:
    """Geometry of one synapse layer and the neuron group it feeds.

    Attributes:
        index: position in ``graph.layers``.
        name: the layer's name (or ``"<kind><index>"`` when unnamed).
        kind: ``"dense"``, ``"conv"`` or ``"sumpool"``.
        in_shape: per-sample shape of the events its own synapses read (after any Flatten).
        out_shape: per-sample shape of its neuron group.
        neurons: neurons in the group.
        synapses: structural connections, over all its edges.
        max_fan_in: largest number of inputs of one neuron, over all its edges.
        max_fan_out: largest number of neurons one input reaches through one of its edges.
        fan_out: ``in_shape`` array: neurons reached by each input element of its own synapses.
        edges: the group's edges (:class:`EdgeStructure`), its own synapses first.
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
    edges: list[EdgeStructure] = field(default_factory=list)

    @property
    def label(self) -> str:
        """``layer <index> '<name>' (<kind>)`` for messages."""
        return f"layer {self.index} '{self.name}' ({self.kind})"

    @property
    def recurrent(self) -> bool:
        """Whether the group reads its own spikes (a recurrent projection)."""
        return any(e.recurrent for e in self.edges)


def layer_label(index: int, layer: Any) -> str:
    """Message label of any graph layer."""
    return f"layer {index} '{layer_name(index, layer)}' ({layer.kind})"


def layer_name(index: int, layer: Any) -> str:
    """The layer's name, or ``<kind><index>`` when it has none."""
    return getattr(layer, "name", "") or f"{layer.kind}{index}"


def layer_edges(layers: Any) -> list[list[tuple[int, int | None, Any]]]:
    """Per entry of ``layers``: ``(source, delay, projection)`` of every edge into its neuron
    group, the layer's own synapses first (``projection`` ``None``), empty for a Flatten.
    ``source`` is resolved (``None`` → the previous non-flatten layer, or ``-1``); ``delay`` is
    the edge's own (``None``: the profile's timing). Works on graph layers and folded blocks
    alike (read by attribute); no check is made here (see ``DeployGraph.inputs``)."""
    out: list[list[tuple[int, int | None, Any]]] = []
    prev = -1
    for i, layer in enumerate(layers):
        if getattr(layer, "kind", None) == "flatten":
            out.append([])
            continue
        src = getattr(layer, "source", None)
        delay = getattr(layer, "delay", None)
        edges: list[tuple[int, int | None, Any]] = [
            (prev if src is None else int(src), None if delay is None else int(delay), None)]
        for proj in getattr(layer, "extra", None) or ():
            edges.append((int(proj.source), None if getattr(proj, "delay", None) is None
                          else int(proj.delay), proj))
        out.append(edges)
        prev = i
    return out


def _pair(value: Any, label: str, what: str) -> tuple[int, int]:
    try:
        a, b = (int(x) for x in value)
    except (TypeError, ValueError):
        raise FormatError(f"{label}: {what} must be two integers, got {value!r}") from None
    return a, b


BYTES_PER_ELEMENT = 32
"""Bytes the simulator keeps per neuron (or input element) for one step of one sample: the
int64 raster and the working copies of a layer step."""


def check_size(label: str, shape: tuple[int, ...]) -> None:
    """Refuse (:class:`ResourceError`, one line) a neuron group or input of ``shape`` that one
    step of one sample could not hold in this machine's memory, before anything of that size is
    allocated (a shape in a graph file costs nothing to write)."""
    n = math.prod(int(d) for d in shape)
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if n * BYTES_PER_ELEMENT > memory:
        raise ResourceError(f"{label}: shape {tuple(shape)} ({n:.3g} neurons) needs more than this "
                            f"machine's {memory / 2**30:.0f} GiB of memory for one step of one sample")


def _check_group(label: str, layer: Any, shape: tuple[int, ...]) -> None:
    group = getattr(layer, "neurons", None)
    if group is None:
        raise FormatError(f"{label}: has no neuron group")
    size = math.prod(int(d) for d in group.shape)
    if size != math.prod(shape) or any(int(d) < 1 for d in group.shape):
        raise FormatError(f"{label}: neuron group shape {tuple(group.shape)} does not match the "
                          f"synapse output shape {shape}")


def _edge_geometry(label: str, kind: str, syn: Any, shape: tuple[int, ...], flat_ok: bool
                   ) -> tuple[tuple[int, ...], tuple[int, ...], int, np.ndarray, np.ndarray]:
    """``(in_shape, out_shape, synapses, fan_in, fan_out)`` of synapses ``syn`` of ``kind``
    reading events of ``shape`` (``flat_ok``: a dense edge may read a multi-dimensional source
    flattened)."""
    if kind == "dense":
        w = np.asarray(syn.weight)
        if w.ndim != 2:
            raise FormatError(f"{label}: weight must be 2-D [out, in], got shape {w.shape}")
        n_out, n_in = (int(d) for d in w.shape)
        if len(shape) != 1 and not flat_ok:
            raise FormatError(f"{label}: expects a 1-D input of {n_in}, got shape {shape}; "
                              "insert a Flatten layer")
        size = int(np.prod(shape))
        if size != n_in:
            raise FormatError(f"{label}: weight expects {n_in} inputs, its source gives {size}"
                              if flat_ok else f"{label}: weight expects {n_in} inputs, previous "
                              f"layer gives {shape[0]}")
        return ((n_in,), (n_out,), n_out * n_in, np.full((n_out,), n_in, dtype=np.int64),
                np.full((n_in,), n_out, dtype=np.int64))
    if kind in ("conv", "sumpool"):
        if len(shape) != 3:
            raise FormatError(f"{label}: expects a (C, H, W) input, got shape {shape}")
        c, h, wd = shape
        if kind == "conv":
            w = np.asarray(syn.weight)
            if w.ndim != 4:
                raise FormatError(f"{label}: weight must be 4-D [out, in/groups, kH, kW], "
                                  f"got shape {w.shape}")
            o, cg, kh, kw = (int(d) for d in w.shape)
            groups = int(syn.groups)
            if groups < 1 or c != cg * groups or o % groups:
                raise FormatError(f"{label}: {c} input channels, weight {tuple(w.shape)} and "
                                  f"groups={groups} do not match")
            stride = _pair(syn.stride, label, "stride")
            padding = _pair(syn.padding, label, "padding")
            og = o // groups
        else:
            kh, kw = _pair(syn.kernel, label, "kernel")
            stride = _pair(syn.stride if syn.stride is not None else (kh, kw), label, "stride")
            padding = (0, 0)
            o, cg, og = c, 1, 1
        if min(kh, kw, *stride) < 1 or min(padding) < 0:
            raise FormatError(f"{label}: kernel and stride must be >= 1 and padding >= 0")
        ho, wo = conv_output_shape((h, wd), (kh, kw), stride, padding)
        if ho < 1 or wo < 1:
            raise FormatError(f"{label}: output would be empty for input {shape}")
        check_size(label, (o, ho, wo))
        taps, covers = window_counts((h, wd), (kh, kw), stride, padding)
        fan_in = np.broadcast_to(cg * taps, (o, ho, wo)).astype(np.int64)
        fan_out = np.broadcast_to(og * covers, (c, h, wd)).copy()
        return shape, (o, ho, wo), int(o * cg * taps.sum()), fan_in, fan_out
    raise FormatError(f"{label}: unknown layer kind {kind!r}")


def layer_structure(graph: Any) -> list[LayerStructure]:
    """Walk ``graph.layers`` and describe every synapse layer and the edges into its group.

    Raises :class:`FormatError` (one line naming the layer) when shapes do not chain: a dense
    layer after a multi-dimensional output without a Flatten, a channel mismatch, an empty output,
    a neuron group of the wrong size, a projection whose output does not fit the group or whose
    source is not an earlier layer with neurons (or the layer itself).
    """
    shape = tuple(int(d) for d in graph.input_shape)
    if not shape or any(d <= 0 for d in shape):
        raise FormatError(f"deployment graph: invalid input shape {shape}")
    check_size("deployment graph input", shape)
    layers = list(graph.layers)
    shapes: dict[int, tuple[int, ...]] = {-1: shape}
    edges_of = layer_edges(layers)
    out: list[LayerStructure] = []
    for i, layer in enumerate(layers):
        kind = getattr(layer, "kind", None)
        label = f"layer {i} '{layer_name(i, layer)}' ({kind})" if kind else f"layer {i}"
        if kind == "flatten":
            shape = (int(np.prod(shape)),)
            continue
        if kind not in ("dense", "conv", "sumpool"):
            raise FormatError(f"{label}: unknown layer kind {kind!r}")
        edges: list[EdgeStructure] = []
        group_shape: tuple[int, ...] = ()
        for j, (src, delay, proj) in enumerate(edges_of[i]):
            where = label if proj is None else \
                f"{label} projection {j - 1}{' ' + repr(proj.name) if proj.name else ''}"
            own_chain = proj is None and getattr(layer, "source", None) is None
            if src == i and proj is not None:
                src_shape = group_shape  # a recurrent edge: the group's own spikes
            elif i <= src < len(layers):
                raise FormatError(f"{where}: reads layer {src}, which comes after it; only a "
                                  "projection from the layer itself may recur")
            elif src not in shapes:
                raise FormatError(f"{where}: source {src} is not a layer with neurons")
            else:
                src_shape = shape if own_chain else shapes[src]
            e_kind = kind if proj is None else str(getattr(proj, "kind", "dense"))
            if proj is not None and e_kind not in ("dense", "conv"):
                raise FormatError(f"{where}: unknown projection kind {e_kind!r}")
            in_shape, o_shape, syn, fan_in, fan_out = _edge_geometry(
                where, e_kind, layer if proj is None else proj, src_shape, not own_chain)
            if proj is None:
                _check_group(label, layer, o_shape)
                group_shape = o_shape
            elif int(np.prod(o_shape)) != int(np.prod(group_shape)) or (
                    e_kind == "conv" and len(group_shape) == 3 and o_shape != group_shape):
                raise FormatError(f"{where}: output shape {o_shape} does not fit the group's "
                                  f"{group_shape}")
            edges.append(EdgeStructure(src, delay, e_kind, layer if proj is None else proj,
                                       proj is not None, src == i, in_shape, o_shape, syn,
                                       fan_in.reshape(group_shape), fan_out))
        own = edges[0]
        fan_in_total = sum(e.fan_in for e in edges)
        out.append(LayerStructure(
            i, layer_name(i, layer), kind, own.in_shape, group_shape, int(np.prod(group_shape)),
            sum(e.synapses for e in edges), int(np.max(fan_in_total)),
            max(e.max_fan_out for e in edges), own.fan_out, edges))
        shape = group_shape
        shapes[i] = group_shape
    if not out:
        raise FormatError("deployment graph has no synapse layer")
    return out


def source_fan_out(structure: list[LayerStructure]) -> dict[int, np.ndarray]:
    """Per source (``-1``: the input; else a layer index): the neurons each of its elements
    reaches over every edge that reads it, flattened ``[size]``."""
    out: dict[int, np.ndarray] = {}
    for st in structure:
        for e in st.edges:
            f = e.fan_out.reshape(-1)
            out[e.source] = f.copy() if e.source not in out else out[e.source] + f
    return out
