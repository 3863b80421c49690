"""The Lava process network of a ``loihi``-family deployment graph, as plain data.

netx HDF5 (:mod:`neurodeploy.families.loihi.netx`) cannot hold an initial potential (MP-Init),
per-neuron decays, sum pooling, weight exponents that floor a sum, recurrent edges, merges or
delays, so the netx writer refuses such graphs. This writer describes the network as the Lava
processes themselves — one ``LIF`` per neuron group, one ``Dense``, ``DelayDense`` or ``Conv``
per edge — with exactly the integers :class:`~neurodeploy.sim.Simulator` runs, and a small
builder that runs inside a Lava environment (``build_lava_network`` in
``tools/lava_reference.py``, which imports only numpy and Lava) wires them up. See
docs/lava_reference.md, "The process-network exporter".

**Description** (:func:`lava_network_spec`): a JSON-able header and named int64 arrays, the
request format family of ``tools/lava_reference.py``. Header ``{"format":
"neurodeploy.lava_process", "version": 1, ...}`` with

* ``input``: ``{"name": "input", "shape": [...], "torch_shape": [...], "message_bits": n}``;
  ``shape`` is Lava's (1-D ``(N,)``, or ``(W, H, C)`` for a ``(C, H, W)`` input);
* ``neurons``: one entry per neuron group, in the graph's order, for ``lava.proc.lif.process.LIF``:
  ``name``, ``shape`` (Lava order), ``torch_shape``, ``du``, ``dv`` (int, or an array key when
  per neuron; ``du = iDecay - 1``, ``dv = vDecay``), ``vth``, ``bias_mant`` (array key, per
  neuron), ``bias_exp`` (int), ``v_init`` (array key, present when the initial potential is not
  zero), ``spiking``;
* ``connections``: one entry per edge (a layer's own synapses, then its ``extra``
  projections), for ``lava.proc.dense.process.Dense``/``DelayDense`` or
  ``lava.proc.conv.process.Conv``: ``name`` (the layer's name for its own synapses, the
  projection's name, else ``<layer>.extra<j>``), ``kind`` (``"dense"`` or ``"conv"``), ``source``
  (``"input"`` or a neuron name; its ``s_out`` feeds the edge; the target itself for a recurrent
  edge), ``target`` (a neuron name; the edge's ``a_out`` goes to its ``a_in``, where Lava sums
  every edge that arrives), ``delay`` (steps from the spike to its delivery, ``>= 1``: a Dense
  or Conv adds one step; a dense edge of delay ``d > 1`` is a ``DelayDense`` with ``delays = d -
  1``, a conv edge reads its source through ``d - 1`` identity relays, depthwise 1x1 Convs of
  ones of one step each), ``view``
  (``"chw_flat"``: a dense edge from a (C, H, W) source reads the source port transposed from
  Lava's (W, H, C) to (C, H, W) and flattened, netx's own flatten; ``null``: used as it is),
  ``out_view`` (``"whc"``: a dense edge into a (C, H, W) group, its rows in Lava's (W, H, C)
  order and its ``a_out`` reshaped to the group), ``weight`` (array key, Lava layout:
  dense ``(out, in)``, conv ``(out, kW, kH, in/groups)`` with the kernel flipped in both
  spatial axes, since Lava's Conv convolves where torch correlates), ``weight_exp``,
  ``num_message_bits``, and for conv ``input_shape`` (W, H, C), ``stride``, ``padding`` (x, y),
  ``groups``. Dense edges are built with ``sign_mode = MIXED`` and ``num_weight_bits = 9``: Lava
  then clips to [-256, 255] and drops ``8 - 9 + 1 = 0`` low bits, so every weight reaches the
  synapse unchanged;
* ``output``: the neuron group the read-out reads; ``latency``, ``steps``, ``readout``,
  ``readout_rule``, ``encoding``, ``profile``, ``metadata``.

Sum pooling is a depthwise ``Conv`` with unit weights (the simulator's own definition); a
flatten is the ``chw_flat`` view of the edge behind it. A non-spiking read-out group gets ``vth =
2**17``: ``v`` saturates at ``2**23 - 1 < 2**17 << 6``, so it provably never spikes (as in the netx
writer). Timing is Lava's: every ``Dense``/``Conv`` adds one step, as in the simulator, and an
edge's ``delay`` is the graph's (``DeployGraph.inputs``); ``latency`` is the longest path of
delays from the input to the read-out group. The header's ``version`` is 1 when every delay is
one step (what builders from before delays read) and 2 otherwise.

**What is refused** (one line naming the layer): other families, profiles whose arithmetic is not
Lava's, reset by subtraction (Lava's LIF resets to zero), spiking thresholds outside 17 bits,
decays outside 0..4096, dense weights outside [-256, 255] after moving common factors of two into
the exponent, conv weight exponents (Lava's Conv ignores them), conv sums that can reach ``2**24``
(Lava's Conv sums in float32 through torch, exact only below that), graded input with a
negative dense exponent where ``W @ s`` can pass ``2**31`` (Lava forms it in int32 before the
shift), bias mantissas outside Lava's int16 ``bias_mant`` after normalising the exponent, and
float (unencoded) input.

**Edges.** The description is a list of neuron groups and a list of edges between them, built
from the graph by :func:`graph_edges`: a recurrent edge is a ``Dense`` (or ``Conv``) from a
group's ``s_out`` to its own ``a_in`` (Lava's Dense sends the previous step's ``a_buff``, so
recurrence cannot deadlock), a merge is several edges into one ``a_in`` (summed by Lava's port in
int32), a residual skip is an edge with a longer delay. Refused besides: a delay below one step
(a Dense delivers one step after the spike at the earliest) or above 64 (``DelayDense`` holds
0..63), and a conv edge from a 1-D source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurodeploy.arith.synapse import conv_output_shape
from neurodeploy.atomic import atomic_path, json_default
from neurodeploy.errors import FormatError, UnsupportedError
from neurodeploy.families import rules as design_rules
from neurodeploy.families.loihi.netx import (
    MAX_SPIKING_VTH,
    NEVER_SPIKE_VTH,
    lava_profile_problems,
)
from neurodeploy.hardware import HardwareProfile, load_profile
from neurodeploy.hardware.structure import layer_label, layer_name, layer_structure

LAVA_PROCESS_FORMAT = "neurodeploy.lava_process"
LAVA_PROCESS_VERSION = 2
"""Written when an edge has a delay other than one step; otherwise version 1 (the same
fields, every delay 1), which builders from before delays read."""
READABLE_VERSIONS = (1, 2)
INPUT = "input"
EXACT_WEIGHT_RANGE = (-256, 255)
"""Dense weights Lava uses unchanged with ``sign_mode = MIXED, num_weight_bits = 9``."""
DECAY_RANGE = (0, 4096)
BIAS_MANT_RANGE = (-(2**15), 2**15 - 1)
"""Lava's ``bias_mant`` is an int16 variable of the fixed-point LIF."""
FLOAT32_EXACT = 2**24
"""Lava's Conv sums in float32 (torch); integer sums are exact below this."""
INT32_LIMIT = 2**31
MAX_EDGE_DELAY = 64
"""Lava's bit-accurate DelayDense holds synaptic delays 0..63 on top of its one step."""


@dataclass(frozen=True)
class Edge:
    """One synapse edge of the network: the synapses at position ``index`` of the graph's layers
    (the layer's own Dense, Conv2d or SumPool2d when ``projection`` is ``None``, else its
    ``extra[projection]``) carry the events of ``source`` (``"input"`` or a neuron group's name)
    to group ``target``, ``delay`` steps after they were emitted; ``flatten`` says a dense edge
    reads a (C, H, W) source flattened in torch order."""

    source: str
    target: str
    index: int
    flatten: bool
    delay: int = 1
    projection: int | None = None
    name: str = ""


@dataclass(frozen=True)
class Group:
    """A neuron group of the graph: the layer at ``index``, its ``name`` and message ``label``,
    and its torch ``shape``."""

    index: int
    name: str
    label: str
    out_shape: tuple[int, ...]


@dataclass
class LavaProcessExport:
    """What :func:`export_lava_process` wrote.

    Attributes:
        path: the ``.npz`` file.
        neurons: names of the LIF processes, in order.
        connections: ``(name, kind, source, target)`` per Dense/Conv process.
        input_shape: Lava shape of the input port (``(W, H, C)`` for image input).
        latency: steps from an input event to the read-out group.
        notes: one-line remarks (read-out, input layout, what netx could not have held).
    """

    path: Path
    neurons: list[str]
    connections: list[tuple[str, str, str, str]]
    input_shape: tuple[int, ...]
    latency: int
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------ layout helpers
def lava_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Lava's (x, y, z) order of a torch shape: ``(C, H, W) -> (W, H, C)``; 1-D unchanged."""
    return tuple(reversed(shape)) if len(shape) == 3 else tuple(shape)


def to_lava_order(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Per-neuron ``values`` in torch (C, H, W) order as an array of :func:`lava_shape`."""
    arr = np.asarray(values, dtype=np.int64).reshape(shape)
    return np.ascontiguousarray(arr.transpose(2, 1, 0)) if len(shape) == 3 else arr


def graph_edges(graph: Any, profile: HardwareProfile | None = None
                ) -> tuple[list[Group], list[Edge]]:
    """The neuron groups (one per synapse layer) and the edges between them.

    Every layer contributes its own synapses and its ``extra`` projections
    (:meth:`~neurodeploy.lower.graph.DeployGraph.inputs`, delays resolved with ``profile``'s
    timing): a chain's edge ``k`` carries group ``k - 1``'s spikes (the input for ``k = 0``) to
    group ``k``; a residual skip is a further edge into a group, a recurrent edge one from the
    group to itself. A dense edge from a (C, H, W) source reads it flattened in torch order (a
    chain's Flatten).
    """
    layer_structure(graph)  # shapes must fit along every edge (FormatError naming the layer)
    groups = [Group(i, layer_name(i, layer), layer_label(i, layer),
                    tuple(int(d) for d in layer.neurons.shape))
              for i, layer in enumerate(graph.layers) if layer.kind != "flatten"]
    names = [g.name for g in groups]
    if len(set(names)) != len(names) or INPUT in names:
        raise UnsupportedError(f"layer names must be unique and not {INPUT!r} to name Lava "
                               f"processes, got {names}")
    by_index = {g.index: g for g in groups}
    in_shape = tuple(int(d) for d in graph.input_shape)
    edges, used = [], set(names)
    for i, inputs in enumerate(graph.inputs(profile)):
        for e in inputs:
            src = INPUT if e.source == -1 else by_index[e.source].name
            shape = in_shape if e.source == -1 else by_index[e.source].out_shape
            kind = graph.layers[i].kind if e.projection is None else e.projection.kind
            if e.projection is None:
                name, proj = by_index[i].name, None
            else:
                proj = next(j for j, p in enumerate(graph.layers[i].extra) if p is e.projection)
                name = e.projection.name or f"{by_index[i].name}.extra{proj}"
                if name in used:
                    name = f"{by_index[i].name}.extra{proj}"
                if name in used:
                    raise UnsupportedError(f"{by_index[i].label}: projection name {name!r} is "
                                           "already used; Lava processes need unique names")
                used.add(name)
            edges.append(Edge(src, by_index[i].name, i, kind == "dense" and len(shape) == 3,
                              int(e.delay), proj, name))
    return groups, edges


def graph_latency(edges: list[Edge], output: str) -> int:
    """Steps from an input event to the earliest effect on group ``output``: the longest path
    over the forward edges, ``D(input) = 0``, ``D(k) = max(D(source) + delay)`` (a recurrent
    edge delays nothing that comes from the input first)."""
    depth = {INPUT: 0}
    for e in edges:  # edges are in the order of their targets, sources come first
        if e.source != e.target:
            depth[e.target] = max(depth.get(e.target, 0), depth[e.source] + e.delay)
    return depth.get(output, 0)


# -------------------------------------------------------------------------------- parameters
def _int_array(value: Any, label: str, what: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise UnsupportedError(f"{label}: {what} must be integers, got {value!r}")
    return arr.astype(np.int64)


def _per_neuron(value: Any, shape: tuple[int, ...], label: str, what: str) -> np.ndarray:
    """A scalar, per-channel or per-neuron value as one value per neuron, torch order."""
    arr = _int_array(value, label, what).reshape(-1)
    size = int(np.prod(shape))
    if arr.size == 1:
        return np.full(size, int(arr[0]), dtype=np.int64)
    if arr.size == size:
        return arr
    if len(shape) == 3 and arr.size == shape[0]:
        return np.repeat(arr, size // shape[0])
    raise FormatError(f"{label}: {what} of {arr.size} values fits neither {size} neurons nor "
                      f"{shape[0]} channels")


def _decay(value: Any, shape: tuple[int, ...], label: str, what: str, offset: int,
           arrays: dict[str, np.ndarray], key: str) -> int | str:
    """An iDecay/vDecay as Lava's ``du``/``dv`` (``decay - offset``): an int, or an array key."""
    arr = _int_array(value, label, what)
    lo, hi = DECAY_RANGE
    if arr.min() < lo or arr.max() > hi:
        bad = int(arr.min()) if arr.min() < lo else int(arr.max())
        raise UnsupportedError(f"{label}: {what} {bad} is outside {lo}..{hi}")
    flat = arr.reshape(-1)
    if np.all(flat == flat[0]):
        return int(flat[0]) - offset
    arrays[key] = to_lava_order(_per_neuron(arr, shape, label, what), shape) - offset
    return key


def _bias(group: Any, shape: tuple[int, ...], label: str) -> tuple[np.ndarray, int]:
    """``(bias_mant, bias_exp)`` with ``bias_mant << bias_exp`` (floor for a negative exponent)
    equal to the graph's per-step bias and the mantissa inside Lava's int16."""
    m = _per_neuron(group.bias, shape, label, "bias")
    e = int(group.bias_exp)
    lo, hi = BIAS_MANT_RANGE
    if m.min() < lo or m.max() > hi:
        # the bias Lava adds is the constant b = m << e (floor for e < 0); any m' << e' == b
        # with e' >= 0 gives the same integers
        m, e = (m << e if e >= 0 else m >> -e), 0
        while (m.min() < lo or m.max() > hi) and not np.any(m & 1):
            m, e = m >> 1, e + 1
    if m.min() < lo or m.max() > hi:
        bad = int(m.min()) if m.min() < lo else int(m.max())
        raise UnsupportedError(f"{label}: bias {bad} << {e} per step has no mantissa inside "
                               f"Lava's int16 bias_mant [{lo}, {hi}]")
    return m, e


def _dense_weight(layer: Any, label: str) -> tuple[np.ndarray, int]:
    """``(W', e')`` with ``(W' @ s) << e'`` equal to the graph's ``(W @ s) << e`` for every
    ``s`` and ``W'`` inside the exact range: common factors of two move into the exponent."""
    w = _int_array(layer.weight, label, "weights")
    e = int(layer.weight_exp)
    lo, hi = EXACT_WEIGHT_RANGE
    while w.size and (w.min() < lo or w.max() > hi) and np.any(w) and not np.any(w & 1):
        w, e = w >> 1, e + 1
    if w.min() < lo or w.max() > hi:
        bad = int(w.min()) if w.min() < lo else int(w.max())
        raise UnsupportedError(f"{label}: weight {bad} is outside [{lo}, {hi}], the range Lava's "
                               "Dense uses unchanged (sign_mode MIXED, 9 weight bits)")
    return w, e


def _conv_bound(weight: np.ndarray, s_max: int) -> int:
    """Largest |sum| one conv output can reach: ``max_o sum |W[o]| * s_max``."""
    w = np.abs(weight.reshape(weight.shape[0], -1))
    return int(w.sum(axis=1).max(initial=0)) * s_max


def _neuron_entry(st: Group, group: Any, arrays: dict[str, np.ndarray]) -> dict:
    label, shape, name = st.label, st.out_shape, st.name
    entry: dict[str, Any] = {"name": name, "shape": list(lava_shape(shape)),
                             "torch_shape": list(shape), "layer": st.index,
                             "spiking": bool(group.spiking)}
    # Lava's current decay has an offset of 1 (du = iDecay - 1), its voltage decay none
    entry["du"] = _decay(group.current_decay, shape, label, "current decay", 1, arrays,
                         f"{name}.du")
    entry["dv"] = _decay(group.voltage_decay, shape, label, "voltage decay", 0, arrays,
                         f"{name}.dv")
    if group.spiking:
        if group.reset != "zero":
            raise UnsupportedError(f"{label}: reset by {group.reset} has no Lava process: Lava's "
                                   "LIF resets v to 0")
        vth = int(_int_array(group.threshold, label, "threshold").reshape(-1)[0])
        if np.any(_int_array(group.threshold, label, "threshold") != vth):
            raise UnsupportedError(f"{label}: per-neuron thresholds have no Lava form (LIF takes "
                                   "one vth)")
        if not 0 <= vth <= MAX_SPIKING_VTH:
            raise UnsupportedError(f"{label}: threshold mantissa {vth} is outside Lava's 17-bit "
                                   f"vth [0, {MAX_SPIKING_VTH}]")
    else:
        vth = NEVER_SPIKE_VTH
    entry["vth"] = vth
    mant, exp = _bias(group, shape, label)
    arrays[f"{name}.bias_mant"] = to_lava_order(mant, shape)
    entry["bias_mant"], entry["bias_exp"] = f"{name}.bias_mant", exp
    v0 = _per_neuron(group.initial_v, shape, label, "initial potential")
    if np.any(v0):
        arrays[f"{name}.v_init"] = to_lava_order(v0, shape)
        entry["v_init"] = f"{name}.v_init"
    return entry


def _check_delay(edge: Edge, label: str) -> None:
    lo = 1
    if edge.delay < lo:
        raise UnsupportedError(f"{label}: delay {edge.delay} from {edge.source!r} has no Lava form: "
                               "a Dense or Conv delivers one step after the spike at the earliest")
    if edge.delay > MAX_EDGE_DELAY:
        raise UnsupportedError(f"{label}: delay {edge.delay} from {edge.source!r} is beyond "
                               f"{MAX_EDGE_DELAY} steps, the most a Lava DelayDense (0..63 on top "
                               "of its one step) holds")


def _connection(edge: Edge, syn: Any, target: Group, source_shape: tuple[int, ...],
                message_bits: int, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The Dense or Conv process of ``edge``; ``syn`` is the synapse layer or projection."""
    label = target.label if edge.projection is None else \
        f"{target.label} projection {edge.projection} ('{edge.name}')"
    _check_delay(edge, label)
    s_max = (1 << message_bits) - 1 if message_bits else 1
    entry: dict[str, Any] = {"name": edge.name, "source": edge.source, "target": edge.target,
                             "num_message_bits": message_bits, "delay": edge.delay}
    out_shape, in_size = target.out_shape, int(np.prod(source_shape))
    if syn.kind == "dense":
        w, e = _dense_weight(syn, label)
        if w.ndim != 2 or w.shape != (int(np.prod(out_shape)), in_size):
            raise FormatError(f"{label}: weight {tuple(w.shape)} does not take {in_size} inputs "
                              f"from {edge.source!r} to {int(np.prod(out_shape))} neurons")
        if message_bits and e < 0:
            bound = int(np.abs(w).sum(axis=1).max(initial=0)) * s_max
            if bound >= INT32_LIMIT:
                raise UnsupportedError(
                    f"{label}: graded input can make W @ s reach {bound} >= 2^31, which Lava's "
                    f"Dense forms in int32 before the weight exponent {e} floors it")
        out_view = None
        if len(out_shape) == 3:  # rows in Lava's (W, H, C) order; a_out reshaped to the group
            w = w.reshape(*out_shape, in_size).transpose(2, 1, 0, 3).reshape(-1, in_size)
            out_view = "whc"
        arrays[f"{edge.name}.weight"] = np.ascontiguousarray(w)
        view = "chw_flat" if edge.flatten else None
        entry.update(kind="dense", weight=f"{edge.name}.weight", weight_exp=e, view=view)
        if out_view:
            entry["out_view"] = out_view
        return entry
    if len(source_shape) != 3:
        raise FormatError(f"{label}: a {syn.kind} edge needs a (C, H, W) source, "
                          f"{edge.source!r} is {tuple(source_shape)}")
    c, h, wd = source_shape
    if syn.kind == "conv":
        if int(syn.weight_exp) != 0:
            raise UnsupportedError(f"{label}: conv weight exponent {int(syn.weight_exp)} has no "
                                   "Lava form: Lava's Conv uses the weights as given")
        w = _int_array(syn.weight, label, "weights")
        stride, padding, groups = tuple(syn.stride), tuple(syn.padding), int(syn.groups)
        if w.ndim != 4 or groups < 1 or w.shape[1] * groups != c or w.shape[0] % groups:
            raise FormatError(f"{label}: weight {tuple(w.shape)} with groups={groups} does not "
                              f"take the {c} channels of {edge.source!r}")
    else:  # sum pooling: a depthwise conv with unit weights
        kh, kw = (int(k) for k in syn.kernel)
        w = np.ones((c, 1, kh, kw), dtype=np.int64)
        stride = tuple(syn.stride) if syn.stride is not None else (kh, kw)
        padding, groups = (0, 0), c
    conv_out = (int(w.shape[0]), *conv_output_shape((h, wd), tuple(w.shape[2:]), stride, padding))
    if tuple(out_shape) != conv_out:
        raise FormatError(f"{label}: the {syn.kind} output {conv_out} of {edge.source!r} does not "
                          f"fit group '{target.name}' {tuple(out_shape)}")
    bound = _conv_bound(w, s_max)
    if bound >= FLOAT32_EXACT:
        raise UnsupportedError(f"{label}: a conv sum can reach {bound} >= 2^24; Lava's Conv sums "
                               "in float32 (torch), which is exact only below 2^24")
    # Lava's Conv convolves (it flips the kernel, torch correlates) in (out, kW, kH, in) layout
    arrays[f"{edge.name}.weight"] = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))
    entry.update(kind="conv", weight=f"{edge.name}.weight", weight_exp=0, view=None,
                 input_shape=list(lava_shape(source_shape)),
                 stride=[int(stride[1]), int(stride[0])], padding=[int(padding[1]),
                                                                   int(padding[0])],
                 groups=groups, pooling=syn.kind == "sumpool")
    return entry


def _input_bits(graph: Any, profile: HardwareProfile) -> int:
    enc = dict(graph.encoding or {})
    if enc.get("kind") != "direct":
        return 0
    bits = enc.get("bits")
    if not isinstance(bits, int) or isinstance(bits, bool) or bits < 1:
        raise UnsupportedError("direct float input has no integer form; Lava's processes take "
                               "spikes or graded integer payloads")
    design_rules.check(profile, "export", encoding=enc, only=("graded_input",))
    return bits


# ------------------------------------------------------------------------------ the description
def lava_network_spec(graph: Any, *, profile: HardwareProfile | str | None = None
                      ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The Lava process network of ``graph`` as ``(header, arrays)`` (see the module docstring).

    Raises:
        UnsupportedError: the graph holds something Lava's processes would run differently.
        FormatError: the graph is malformed.
    """
    if graph.family != "loihi":
        raise UnsupportedError(f"a Lava process network needs a loihi-family graph; this one is "
                               f"for the {graph.family} family (profile {graph.profile})")
    prof = graph.resolved_profile() if profile is None else load_profile(profile)
    if prof.family != "loihi":
        raise UnsupportedError(f"profile {prof.name} is of the {prof.family} family, not loihi")
    design_rules.check(prof, "export", layers=graph.layers)
    problems = lava_profile_problems(prof)
    if problems:
        raise UnsupportedError(f"the arithmetic of profile {prof.name} (as the graph was lowered "
                               f"for it) differs from Lava's: {'; '.join(problems)}")
    readout = (graph.readout or {}).get("kind", "potential")
    if readout not in ("potential", "spike_count"):
        raise UnsupportedError(f"unknown read-out {readout!r}")
    bits = _input_bits(graph, prof)
    structs, edges = graph_edges(graph, prof)
    by_name = {st.name: st for st in structs}
    arrays: dict[str, np.ndarray] = {}
    neurons = [_neuron_entry(st, graph.layers[st.index].neurons, arrays) for st in structs]
    in_shape = tuple(int(d) for d in graph.input_shape)
    shapes = {INPUT: in_shape, **{st.name: st.out_shape for st in structs}}
    connections = []
    for e in edges:
        layer = graph.layers[e.index]
        syn = layer if e.projection is None else layer.extra[e.projection]
        connections.append(_connection(e, syn, by_name[e.target], shapes[e.source],
                                       bits if e.source == INPUT else 0, arrays))
    last = structs[-1].name
    latency = graph_latency(edges, last)
    # version 1 (every edge one step) is what builders before delays read; delays need 2
    version = 1 if all(e.delay == 1 for e in edges) else LAVA_PROCESS_VERSION
    last = structs[-1].name
    what = (f"argmax of group '{last}''s v (Monitor) at the last step" if readout == "potential"
            else f"argmax of group '{last}''s spike counts")
    header = {
        "format": LAVA_PROCESS_FORMAT, "version": version,
        "profile": graph.profile, "family": graph.family, "steps": int(graph.steps),
        "latency": latency, "encoding": graph.encoding, "readout": graph.readout,
        "readout_rule": f"run steps + latency = {graph.steps} + {latency} steps, input zero "
                        f"after step {graph.steps}; prediction = {what}",
        "input": {"name": INPUT, "shape": list(lava_shape(in_shape)),
                  "torch_shape": list(in_shape), "message_bits": bits},
        "neurons": neurons, "connections": connections, "output": last,
        "metadata": graph.metadata,
    }
    try:
        json.dumps(header, default=json_default)
    except (TypeError, ValueError) as exc:
        raise FormatError(f"the graph's metadata cannot be stored as JSON ({exc})") from None
    return header, arrays


def save_spec(path: str | Path, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Write ``(header, arrays)`` as an ``.npz`` (JSON header as uint8 under ``__header__``),
    atomically."""
    blob = np.frombuffer(json.dumps(header, default=json_default).encode(), dtype=np.uint8)
    with atomic_path(path, suffix=".tmp.npz") as tmp:
        np.savez(tmp, __header__=blob, **{k: np.asarray(v, dtype=np.int64)
                                          for k, v in arrays.items()})
    return Path(path)


def load_spec(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a description written by :func:`export_lava_process`; :class:`FormatError` if it is
    not one."""
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(bytes(data["__header__"]).decode())
            arrays = {k: data[k] for k in data.files if k != "__header__"}
    except FileNotFoundError:
        raise FormatError(f"{path} does not exist") from None
    except Exception as exc:  # zip, JSON and key errors all mean a bad file
        raise FormatError(f"{path} is not a readable Lava process description "
                          f"({type(exc).__name__})") from None
    if not isinstance(header, dict) or header.get("format") != LAVA_PROCESS_FORMAT:
        raise FormatError(f"{path} is not a neurodeploy Lava process description")
    if header.get("version") not in READABLE_VERSIONS:
        raise FormatError(f"{path}: Lava process description version {header.get('version')!r}; "
                          f"this neurodeploy reads versions 1 to {LAVA_PROCESS_VERSION}")
    missing = [k for k in _array_keys(header) if k not in arrays]
    if missing:
        raise FormatError(f"{path}: arrays {missing} named in the header are missing")
    return header, arrays


def _array_keys(header: dict[str, Any]) -> list[str]:
    keys = []
    for n in header.get("neurons", []):
        keys += [n[k] for k in ("du", "dv", "bias_mant", "v_init") if isinstance(n.get(k), str)]
    keys += [c["weight"] for c in header.get("connections", [])]
    return keys


def _notes(header: dict[str, Any]) -> list[str]:
    notes = []
    for n in header["neurons"]:
        if not n["spiking"]:
            notes.append(f"group '{n['name']}' never spikes: vth {NEVER_SPIKE_VTH} (threshold "
                         "2^23 > v_max); read its v with a Monitor")
        if "v_init" in n:
            notes.append(f"group '{n['name']}' starts from its initial potential (MP-Init), "
                         "which netx cannot hold")
        if isinstance(n["du"], str) or isinstance(n["dv"], str):
            notes.append(f"group '{n['name']}' has per-neuron decays, which netx cannot hold")
    into: dict[str, int] = {}
    for c in header["connections"]:
        into[c["target"]] = into.get(c["target"], 0) + 1
        if c.get("pooling"):
            notes.append(f"'{c['name']}' (sum pooling) is a depthwise Conv with unit weights")
        if c["source"] == c["target"]:
            notes.append(f"'{c['name']}' is a recurrent {c['kind'].capitalize()} from group "
                         f"'{c['source']}' back to its own a_in ({c.get('delay', 1)} steps)")
        if c.get("delay", 1) > 1:
            how = ("a DelayDense with delays " + str(c["delay"] - 1) if c["kind"] == "dense" else
                   f"{c['delay'] - 1} identity relays (depthwise 1x1 Convs) before the Conv")
            notes.append(f"'{c['name']}' delivers {c['delay']} steps after the spike: {how}")
    for name, n in into.items():
        if n > 1:
            notes.append(f"group '{name}' sums {n} edges at its a_in (a merge or recurrence)")
    if len(header["input"]["shape"]) == 3:
        notes.append(f"input port is Lava's (W, H, C) = {tuple(header['input']['shape'])}: "
                     "transpose (C, H, W) rasters")
    if header["input"]["message_bits"]:
        notes.append(f"graded input: {header['input']['message_bits']}-bit payloads")
    return notes


def export_lava_process(graph: Any, path: str | Path, *,
                        profile: HardwareProfile | str | None = None) -> LavaProcessExport:
    """Write the Lava process network of ``graph`` (:func:`lava_network_spec`) to ``path``
    (``.npz``), atomically; the file is read back and compared before it appears.

    Load it inside a Lava environment with ``tools/lava_reference.py``'s ``load_npz`` and
    ``build_lava_network`` (docs/lava_reference.md).
    """
    header, arrays = lava_network_spec(graph, profile=profile)
    dest = Path(path)
    with atomic_path(dest, suffix=".tmp.npz") as tmp:
        save_spec(tmp, header, arrays)
        back_header, back_arrays = load_spec(tmp)
        same = json.loads(json.dumps(header, default=json_default)) == back_header and \
            set(back_arrays) == set(arrays) and \
            all(np.array_equal(back_arrays[k], arrays[k]) for k in arrays)
        if not same:
            raise FormatError(f"{dest}: the written description does not read back as written")
    return LavaProcessExport(
        path=dest, neurons=[n["name"] for n in header["neurons"]],
        connections=[(c["name"], c["kind"], c["source"], c["target"])
                     for c in header["connections"]],
        input_shape=tuple(header["input"]["shape"]), latency=header["latency"],
        notes=_notes(header))
