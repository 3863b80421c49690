"""Fold a trained :class:`~neurodeploy.models.SpikingNet` into chip-shaped float blocks.

A chip runs a chain of *synapse layer → neuron group*. :func:`fold_model` builds the network's
float graph (:func:`neurodeploy.graph.graph_from_model`), runs the graph passes of
:mod:`neurodeploy.graph.passes` (TrSG output scale ``V`` into the next layer's weights, average
pool into the next synapse layer, batch norm into the layer before it, decay-input form into the
leak form) and converts the folded chain into :class:`FloatBlock` s (:func:`blocks_from_graph`):

* every neuron becomes a current-based neuron with Loihi-style decays in ``0..DECAY_UNIT`` units
  (``iDecay = DECAY_UNIT``: the current is just the input; ``vDecay = DECAY_UNIT (1 - b)``;
  :mod:`neurodeploy.families.loihi.units`);
* the ``mean`` read-out becomes a non-spiking integrator (``vDecay = 0``) whose final potential
  is ``T`` times the time-averaged logits.

:func:`run_blocks` runs the blocks in float64 so tests can check that folding changed nothing.

A graph with merges or recurrent edges (a residual block, a recurrent layer; e.g. a
:class:`~neurodeploy.quantize.graph_model.GraphModel`) becomes one block per neuron group whose
``source`` and ``extra`` paths say what it reads (:func:`graph_blocks`, ``docs/graphs.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from neurodeploy.errors import UnsupportedError
from neurodeploy.families.loihi.units import DECAY_UNIT
from neurodeploy.graph import nodes as gn
from neurodeploy.graph.from_model import graph_from_model
from neurodeploy.graph.ir import Graph
from neurodeploy.graph.passes import fold_all
from neurodeploy.models import SpikingNet
from neurodeploy.nn.functional import cuba_factor

"""Loihi's decay unit (read by :mod:`neurodeploy.quantize.support`); used only by :func:`_chip_neurons`."""


@dataclass
class FloatNeurons:
    """Float dynamics of one neuron group in current-based form.

    ``current_decay``/``voltage_decay`` are in ``0..DECAY_UNIT`` units (factors
    ``(DECAY_UNIT - d)/DECAY_UNIT``), already rounded to integers, so the float model and the chip decay alike.
    """

    current_decay: int
    voltage_decay: int
    threshold: float
    reset: str = "zero"
    spiking: bool = True
    initial_v: float = 0.0


@dataclass
class FloatBlock:
    """One synapse layer (dense/conv, float64 weights) and the neurons it feeds; or a flatten.

    ``name`` is the model stage of the neurons (of the synapse layer for the read-out), so
    per-layer figures of the chip and of the float model line up.
    """

    kind: str
    name: str
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    neurons: FloatNeurons | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()
    notes: list[str] = field(default_factory=list)
    source: int | None = None
    """Graph blocks only: index of the block whose spikes the synapses read (``-1``: the input);
    ``None`` in a chain (the previous block)."""
    extra: list[FloatEdge] = field(default_factory=list)
    """Graph blocks only: further synapse paths into the same neurons (merges, recurrent edges)."""


@dataclass
class FloatEdge:
    """A further synapse path into a graph block's neurons: ``weight`` (dense ``[out, in]`` reading
    its source flattened, or conv) applied to the spikes of block ``source`` (``-1``: the input),
    delivered in the same float step, or (``recurrent``) one float step later."""

    source: int
    weight: torch.Tensor
    kind: str = "dense"
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    recurrent: bool = False
    name: str = ""
    in_shape: tuple[int, ...] = ()


def is_graph(blocks: list[FloatBlock]) -> bool:
    """Whether ``blocks`` came from a graph with merges or recurrence (their sources are set)."""
    return any(blk.source is not None for blk in blocks)


def _chip_neurons(name: str, node: gn.Node | None) -> FloatNeurons:
    """The current-based chip form of a folded graph neuron, or (``node=None``) of the mean
    read-out's non-spiking integrator: the one place this module turns float decay factors into
    the ``0..DECAY_UNIT`` decay units."""
    if node is None:
        return FloatNeurons(DECAY_UNIT, 0, float("inf"), "zero", False, 0.0)
    for attr in ("decay", "current_decay", "voltage_decay", "threshold", "v_init"):
        v = getattr(node, attr, 0.0)
        if isinstance(v, torch.Tensor) and v.numel() != 1:
            raise UnsupportedError(f"{name}: per-neuron {attr} values have no chip form here; use one per layer")
    if not isinstance(node.r, float | int) or node.r != 1.0:
        raise UnsupportedError(f"{name}: a neuron input gain that is not folded into its synapse layer "
                               "has no chip form")
    if not node.strict:
        raise UnsupportedError(f"{name}: a non-strict threshold (spike at M >= V) has no chip form")
    if isinstance(node, gn.CubaLIF):
        i_decay = int(round(DECAY_UNIT * (1.0 - node.current_decay)))
        v_decay = int(round(DECAY_UNIT * (1.0 - node.voltage_decay)))
    elif isinstance(node, gn.IF):
        i_decay, v_decay = DECAY_UNIT, 0
    else:
        i_decay, v_decay = DECAY_UNIT, int(round(DECAY_UNIT * (1.0 - node.decay)))
    return FloatNeurons(i_decay, v_decay, float(node.threshold), node.reset, True, float(node.v_init))


def _refuse(name: str, node: gn.Node) -> None:
    if isinstance(node, gn.MaxPool):
        raise UnsupportedError(f"{name}: max pooling has no spiking equivalent on a chip; "
                               "use pool = \"avg\" or strided convolutions")
    if isinstance(node, gn.AvgPool):
        raise UnsupportedError(f"{name}: only a non-overlapping average pool right after "
                               "spiking neurons can be folded")
    if isinstance(node, gn.BatchNorm):
        raise UnsupportedError(f"{name}: batch norm must follow a linear or conv layer")
    if isinstance(node, gn.Scale):
        raise UnsupportedError(f"{name}: an output scale that does not feed a synapse layer has no chip form")
    raise UnsupportedError(f"{name}: layer {node.kind} has no chip mapping")


def blocks_from_graph(graph: Graph) -> list[FloatBlock]:
    """Convert a folded chain ``input → ([flatten] → synapse → neurons)* → synapse → output`` (mean
    read-out) or ``… → neurons → output`` (spike counts) into :class:`FloatBlock` s.

    Raises :class:`UnsupportedError` naming the first node with no chip form.
    """
    shapes = graph.shapes()
    order = graph.order()
    for k in order:
        if len(graph.inputs_of(k, None)) > 1 or len(graph.consumers(k)) > 1:
            return graph_blocks(graph)
    blocks: list[FloatBlock] = []
    pending: tuple[str, gn.Node, tuple[int, ...]] | None = None
    last = None
    for k in order:
        node = graph.nodes[k]
        name = node.meta.get("source", k)
        prev = graph.inputs_of(k)
        in_shape = shapes[prev[0]] if prev else ()
        if isinstance(node, gn.Input):
            continue
        if isinstance(node, gn.Output):
            break
        if isinstance(node, gn.Flatten):
            if pending is not None:
                raise UnsupportedError(f"{name}: flatten between a synapse layer and its neurons")
            blocks.append(FloatBlock("flatten", name, in_shape=in_shape, out_shape=shapes[k]))
        elif isinstance(node, gn.Affine | gn.Conv):
            if pending is not None:
                raise UnsupportedError(f"{name}: two synapse layers without neurons between them")
            if isinstance(node, gn.Conv) and (node.groups != 1 or node.dilation != (1, 1)):
                raise UnsupportedError(f"{name}: grouped or dilated convolutions are not supported")
            pending = (name, node, in_shape)
        elif isinstance(node, gn.LIF | gn.IF | gn.CubaLIF):
            if pending is None:
                raise UnsupportedError(f"{name}: spiking neurons must follow a linear or conv layer")
            blocks.append(_block(name, pending, _chip_neurons(name, node), shapes[k]))
            pending = None
        elif isinstance(node, gn.Scale) and graph.consumers(k) == [graph.output_name()]:
            pass  # the last layer's TrSG output V·S: the read-out counts the spikes
        else:
            _refuse(name, node)
        last = k
    if pending is None:
        if graph.meta.get("readout") == "spike_count" and blocks and blocks[-1].neurons is not None:
            return blocks  # the last spiking group is the read-out (spike counts)
        raise UnsupportedError("the network must end with a linear read-out layer")
    # the "mean" read-out: a non-spiking integrator of the last synapse layer
    blocks.append(_block(pending[0], pending, _chip_neurons(pending[0], None), shapes[last]))
    return blocks


def _block(name: str, pending: tuple[str, gn.Node, tuple[int, ...]], neurons: FloatNeurons,
           out_shape: tuple[int, ...]) -> FloatBlock:
    _, syn, in_shape = pending
    bias = syn.bias if syn.bias is not None else torch.zeros(syn.weight.shape[0], dtype=torch.float64)
    if isinstance(syn, gn.Conv):
        return FloatBlock("conv", name, syn.weight, bias, neurons, tuple(syn.stride), tuple(syn.padding), 1,
                          in_shape, out_shape)
    return FloatBlock("dense", name, syn.weight, bias, neurons, (1, 1), (0, 0), 1, in_shape, out_shape)


_GROUPS = (gn.LIF, gn.IF, gn.CubaLIF)


def graph_blocks(graph: Graph) -> list[FloatBlock]:
    """Blocks of a folded graph with merges or recurrence: one per neuron group (a spiking node,
    in the graph's order, then the ``mean`` read-out's integrator), each with its main synapse
    (the first synapse path that arrives in the same step) and ``extra`` paths: the synapse nodes
    summed into the group through ``Add`` nodes and the recurrent edges into it (through a synapse
    node). Biases of all paths are summed. ``source`` names the block (or ``-1``, the input) whose
    spikes a path reads, through flattens.

    Raises :class:`UnsupportedError` in one line for what has no chip form: a cycle across several
    neuron groups, spikes summed without a synapse layer, two recurrent steps on one path, a
    synapse layer fed by anything but one group (or the input), per-neuron parameters.
    """
    shapes = graph.shapes()
    order = graph.order()
    out = graph.output_name()
    (last,) = graph.inputs_of(out)
    for k in order:
        node = graph.nodes[k]
        if not isinstance(node, (gn.Input, gn.Output, gn.Affine, gn.Conv, gn.Add, gn.Flatten, *_GROUPS)):
            _refuse(node.meta.get("source", k), node)
        if isinstance(node, gn.Conv) and (node.groups != 1 or node.dilation != (1, 1)):
            raise UnsupportedError(f"{k}: grouped or dilated convolutions are not supported")
    groups = [k for k in order if isinstance(graph.nodes[k], _GROUPS)]
    readout_node = graph.nodes[out]
    spike_count = last in groups
    if not spike_count:
        if readout_node.readout != "mean" or not isinstance(graph.nodes[last], gn.Affine | gn.Conv | gn.Add):
            raise UnsupportedError(f"{out}: a graph network must end with synapse layers read out by "
                                   "their mean (a non-spiking integrator) or with spiking neurons")
        groups.append(last)
    index = {k: i for i, k in enumerate(groups)}

    def source_of(syn: str) -> tuple[int, tuple[int, ...]]:
        """The block (or -1) whose spikes synapse node ``syn`` reads, through flattens."""
        k = syn
        while True:
            ins = graph.inputs_of(k, None)
            if len(ins) != 1 or graph.inputs_of(k, True):
                raise UnsupportedError(f"{k}: several spike trains (or a recurrent edge) meet here "
                                       "without a synapse layer per path; a merge needs one synapse "
                                       "layer on every path into the neurons")
            src = ins[0]
            node = graph.nodes[src]
            if isinstance(node, gn.Flatten):
                k = src
                continue
            if isinstance(node, gn.Input):
                return -1, shapes[src]
            if src in index and src != last or spike_count and src == last:
                return index[src], shapes[src]
            if isinstance(node, gn.Add):
                raise UnsupportedError(f"{syn}: spike trains meet at {src} (Add) without a synapse layer "
                                       "per path; a merge needs one synapse layer on every path into "
                                       "the neurons")
            raise UnsupportedError(f"{syn}: a synapse layer must read a neuron group or the input, "
                                   f"not {src} ({node.kind})")

    def terms(k: str, rec: int, into: str) -> list[tuple[str, int]]:
        node = graph.nodes[k]
        if rec > 1:
            raise UnsupportedError(f"{into}: a path with two recurrent edges (a two-step delay) has "
                                   "no chip form here")
        if isinstance(node, gn.Affine | gn.Conv):
            return [(k, rec)]
        if isinstance(node, gn.Add):
            found = []
            for src in graph.inputs_of(k):
                found += terms(src, rec, into)
            for src in graph.inputs_of(k, True):
                found += terms(src, rec + 1, into)
            return found
        raise UnsupportedError(f"{into}: {k} ({node.kind}) reaches the neurons without a synapse "
                               "layer; spikes merge on a chip only through synapses")

    blocks: list[FloatBlock] = []
    for i, g in enumerate(groups):
        node = graph.nodes[g]
        if g == last and not spike_count:
            paths = terms(g, 0, g)
            name = graph.nodes[paths[0][0]].meta.get("source", paths[0][0])
            neurons = _chip_neurons(name, None)
        else:
            name = node.meta.get("source", g)
            neurons = _chip_neurons(name, node)
            paths = []
            for src in graph.inputs_of(g):
                paths += terms(src, 0, g)
            for src in graph.inputs_of(g, True):
                paths += terms(src, 1, g)
        edges: list[FloatEdge] = []
        bias = None
        for syn_name, rec in paths:
            syn = graph.nodes[syn_name]
            src, in_shape = source_of(syn_name)
            if src > i or src == i and not rec:
                raise UnsupportedError(f"{g}: a cycle through {groups[src] if src >= 0 else 'the input'} "
                                       "spans several neuron groups; only a group's recurrence onto "
                                       "itself has a chip form here")
            if rec and syn.bias is not None and bool((syn.bias != 0).any()):
                raise UnsupportedError(f"{syn_name}: a recurrent synapse layer's bias reaches {g} only "
                                       "from step 1 on, which a chip's constant bias cannot do; train "
                                       "the recurrent layer without a bias")
            conv = isinstance(syn, gn.Conv)
            edges.append(FloatEdge(src, syn.weight, "conv" if conv else "dense",
                                   tuple(syn.stride) if conv else (1, 1),
                                   tuple(syn.padding) if conv else (0, 0), bool(rec),
                                   syn.meta.get("source", syn_name), in_shape))
            if syn.bias is not None:
                bias = syn.bias if bias is None else bias + syn.bias
        main = next((e for e in edges if not e.recurrent), None)
        if main is None:
            raise UnsupportedError(f"{g}: every synapse path into the neurons is recurrent")
        edges.remove(main)
        if bias is None:
            bias = torch.zeros(main.weight.shape[0], dtype=torch.float64)
        blocks.append(FloatBlock(main.kind, name, main.weight, bias, neurons, main.stride, main.padding, 1,
                                 main.in_shape, shapes[g], source=main.source, extra=edges))
    return blocks


def fold_graph(graph: Graph) -> list[FloatBlock]:
    """Chip-shaped blocks of a float graph: the graph passes (:func:`fold_all`), then
    :func:`blocks_from_graph` (a chain) or :func:`graph_blocks` (merges, recurrence)."""
    return blocks_from_graph(fold_all(graph))


def fold_model(model: SpikingNet, keep_grad: bool = False) -> list[FloatBlock]:
    """Rewrite ``model`` (eval semantics) as chip-shaped :class:`FloatBlock` s (see module doc).

    With ``keep_grad`` the block weights and biases stay differentiable functions of the model's
    parameters (fine-tuning through the fold); thresholds and decays are constants either way.

    Raises :class:`UnsupportedError` for what has no exact chip form (max pooling, a pool that is
    not followed by a dense/conv layer, two synapse layers without neurons between them).
    """
    model = model.eval()
    folded = getattr(model, "folded_graph", None)  # a graph network (quantize.graph_model)
    if folded is not None:
        return fold_graph(folded(keep_grad=keep_grad))
    return fold_graph(graph_from_model(model, keep_grad=keep_grad))


@torch.no_grad()
def run_blocks(blocks: list[FloatBlock], seq: torch.Tensor, record: bool = False):
    """Run folded blocks in float64 on an input sequence ``[T, B, ...]`` (no chip delays).

    Returns the read-out block's potential after the last step ``[B, N]`` and, if ``record``,
    per block the maximum absolute input current and potential seen (for calibration).
    """
    if is_graph(blocks):
        return _run_graph_blocks(blocks, seq, record)
    stats: list[dict[str, float]] = []
    h = seq.double()
    out_v = None
    for blk in blocks:
        if blk.kind == "flatten":
            h = h.reshape(h.shape[0], h.shape[1], -1)
            stats.append({})
            continue
        t, b = h.shape[:2]
        flat = h.reshape(t * b, *h.shape[2:])
        if blk.kind == "dense":
            cur = flat @ blk.weight.T + blk.bias
        else:
            cur = nn.functional.conv2d(flat, blk.weight, None, blk.stride, blk.padding)
            cur = cur + blk.bias.view(1, -1, 1, 1)
        cur = cur.reshape(t, b, *cur.shape[1:])
        n = blk.neurons
        fi, fv = cuba_factor(n.current_decay), cuba_factor(n.voltage_decay)
        i_syn = torch.zeros_like(cur[0])
        v = torch.full_like(cur[0], n.initial_v)
        spikes = []
        max_v = 0.0
        for step in range(t):
            i_syn = fi * i_syn + cur[step]
            v = fv * v + i_syn
            max_v = max(max_v, float(v.abs().max()))
            if n.spiking:
                s = (v > n.threshold).double()
                v = v * (1 - s) if n.reset == "zero" else v - n.threshold * s
                spikes.append(s)
        stats.append({"max_current": float(cur.abs().max()), "max_v": max_v,
                      "max_bias": float(blk.bias.abs().max()) if blk.bias is not None else 0.0})
        if n.spiking:
            h = torch.stack(spikes)
        else:
            out_v = v
    return (out_v, stats) if record else out_v


def float_synapse(kind: str, weight: torch.Tensor, s: torch.Tensor, stride=(1, 1), padding=(0, 0)
                  ) -> torch.Tensor:
    """A float synapse path on spikes ``s`` ``[B, ...]``: dense on ``s`` flattened, or conv."""
    if kind == "dense":
        return s.reshape(s.shape[0], -1) @ weight.T
    return nn.functional.conv2d(s, weight, None, stride, padding)


def _run_graph_blocks(blocks: list[FloatBlock], seq: torch.Tensor, record: bool):
    """:func:`run_blocks` for graph blocks: every group, every step, in the float graph's timing
    (same-step paths, recurrent paths one step late)."""
    steps, b = seq.shape[:2]
    seq = seq.double()
    states = []
    for blk in blocks:
        n = blk.neurons
        zero = torch.zeros((b, *blk.out_shape), dtype=torch.float64)
        states.append({"i": zero, "v": zero + n.initial_v, "s": zero, "prev": zero})
    stats = [{"max_current": 0.0, "max_v": 0.0, "max_bias": float(blk.bias.abs().max())} for blk in blocks]
    count = [torch.zeros((b, *blk.out_shape), dtype=torch.float64) for blk in blocks]
    main = [FloatEdge(blk.source, blk.weight, blk.kind, blk.stride, blk.padding) for blk in blocks]
    for t in range(steps):
        for k, blk in enumerate(blocks):
            st, n = states[k], blk.neurons
            cur = blk.bias.view(-1, *([1] * (len(blk.out_shape) - 1))).double()
            for e in [main[k], *blk.extra]:
                if e.source == -1:
                    s = seq[t - 1] if e.recurrent else seq[t]
                    if e.recurrent and t == 0:
                        continue
                else:
                    s = states[e.source]["prev" if e.recurrent else "s"]
                cur = cur + float_synapse(e.kind, e.weight, s, e.stride, e.padding)
            fi, fv = cuba_factor(n.current_decay), cuba_factor(n.voltage_decay)
            st["i"] = fi * st["i"] + cur
            v = fv * st["v"] + st["i"]
            stats[k]["max_current"] = max(stats[k]["max_current"], float(cur.abs().max()))
            stats[k]["max_v"] = max(stats[k]["max_v"], float(v.abs().max()))
            if n.spiking:
                s = (v > n.threshold).double()
                v = v * (1 - s) if n.reset == "zero" else v - n.threshold * s
                count[k] = count[k] + s
            else:
                s = torch.zeros_like(v)
            st["v"], st["s"] = v, s
        for st in states:
            st["prev"] = st["s"]
    last = blocks[-1]
    out = states[-1]["v"] if not last.neurons.spiking else count[-1]
    out = out.reshape(b, -1)
    return (out, stats) if record else out
