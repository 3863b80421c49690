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
            raise UnsupportedError(f"{k}: the network branches, merges or recurs here; chip blocks "
                                   "need a chain of layers")
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


def fold_model(model: SpikingNet, keep_grad: bool = False) -> list[FloatBlock]:
    """Rewrite ``model`` (eval semantics) as chip-shaped :class:`FloatBlock` s (see module doc).

    With ``keep_grad`` the block weights and biases stay differentiable functions of the model's
    parameters (fine-tuning through the fold); thresholds and decays are constants either way.

    Raises :class:`UnsupportedError` for what has no exact chip form (max pooling, a pool that is
    not followed by a dense/conv layer, two synapse layers without neurons between them).
    """
    model = model.eval()
    return blocks_from_graph(fold_all(graph_from_model(model, keep_grad=keep_grad)))


@torch.no_grad()
def run_blocks(blocks: list[FloatBlock], seq: torch.Tensor, record: bool = False):
    """Run folded blocks in float64 on an input sequence ``[T, B, ...]`` (no chip delays).

    Returns the read-out block's potential after the last step ``[B, N]`` and, if ``record``,
    per block the maximum absolute input current and potential seen (for calibration).
    """
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
