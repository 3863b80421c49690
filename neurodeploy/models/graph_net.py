"""A torch module that runs any float graph (:mod:`neurodeploy.graph`): the model of networks that
no template (``mlp``, ``convnet``, ``vgg``) can rebuild, e.g. an imported NIR graph with branches,
recurrent cycles or per-neuron parameters.

:class:`GraphNet` keeps every node's tensors as its own parameters (synapses: trainable) and
buffers (neuron factors, thresholds), evaluates the nodes in the graph's order one time step at a
time (feed-forward edges within a step, recurrent edges from the step before, as
:func:`~neurodeploy.graph.run_graph`), and its spikes carry a surrogate gradient
(:func:`~neurodeploy.nn.surrogate.spike`), so it trains. Stateless nodes use the interpreter's own
:func:`~neurodeploy.graph.interpret.apply_stateless`; in float64 a :class:`GraphNet` gives exactly
the interpreter's spikes.

Files: :func:`save_graph_checkpoint` writes a ``torch.save`` archive of plain data and tensors
(loaded with ``weights_only=True``)::

    {"format": "neurodeploy.graph", "version": 1, "graph": {"nodes": {...}, "edges": [...],
     "meta": {...}}, "steps": T, "meta": {...}, "train": {...}}

(``train``, the resumable record of a training run, only in checkpoints a run wrote,
:mod:`neurodeploy.train.graph_trainer`).

and :func:`load_graph_checkpoint` reads it back into a :class:`GraphCheckpoint`.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from neurodeploy.atomic import atomic_path
from neurodeploy.errors import CheckpointError, DataError
from neurodeploy.graph import nodes as gn
from neurodeploy.graph.interpret import apply_stateless
from neurodeploy.graph.ir import Edge, Graph, GraphError
from neurodeploy.models.spec import MAX_STEPS
from neurodeploy.nn.conv_layout import cpu_float32_images, to_channels_last, to_standard
from neurodeploy.nn.neurons import layer_stats
from neurodeploy.nn.surrogate import Surrogate, make_surrogate, spike

FORMAT = "neurodeploy.graph"
VERSION = 1
_KINDS = {cls.__name__: cls for cls in (gn.Input, gn.Output, gn.Affine, gn.Conv, gn.SumPool, gn.AvgPool,
                                        gn.MaxPool, gn.Flatten, gn.Add, gn.Bias, gn.Scale, gn.Delay,
                                        gn.BatchNorm, gn.ReLU, gn.LIF, gn.IF, gn.CubaLIF, gn.LI)}
_TRAINABLE = {"weight", "bias"}


# ------------------------------------------------------------------------------------------ plain data
def graph_to_data(graph: Graph) -> dict[str, Any]:
    """The graph as plain data and tensors (what :func:`graph_from_data` reads)."""
    nodes = {}
    for name, node in graph.nodes.items():
        entry: dict[str, Any] = {"kind": node.kind}
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            entry[f.name] = value.detach().clone() if isinstance(value, torch.Tensor) else \
                (list(value) if isinstance(value, tuple) else value)
        nodes[name] = entry
    return {"nodes": nodes, "edges": [[e.src, e.dst, e.recurrent] for e in graph.edges], "meta": dict(graph.meta)}


def graph_from_data(data: Any) -> Graph:
    """The :class:`Graph` of :func:`graph_to_data`'s plain data (:class:`CheckpointError` if malformed)."""
    try:
        nodes = {}
        for name, entry in data["nodes"].items():
            entry = dict(entry)
            cls = _KINDS[entry.pop("kind")]
            kw = {}
            for f in dataclasses.fields(cls):
                if f.name in entry:
                    v = entry[f.name]
                    kw[f.name] = tuple(v) if isinstance(v, list) else v
            nodes[str(name)] = cls(**kw)
        edges = [Edge(str(a), str(b), bool(r)) for a, b, r in data["edges"]]
        graph = Graph(nodes, edges, dict(data.get("meta") or {}))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"the stored graph is malformed ({type(exc).__name__}: {exc})") from None
    try:
        return graph.validate()
    except GraphError as exc:
        raise CheckpointError(f"the stored graph is invalid: {exc}") from None


# ------------------------------------------------------------------------------------------ module
class GraphNet(nn.Module):
    """Runs ``graph`` on input sequences ``[T, B, *input_shape]`` (see the module docstring).

    ``surrogate`` is the spike function's surrogate derivative for training (default: a neuron's
    own ``meta["surrogate"]``, else ``"atan"``).
    """

    def __init__(self, graph: Graph, surrogate: str | dict[str, Any] = "atan"):
        super().__init__()
        graph.validate()
        self.graph = graph
        self.order = graph.order()
        self.feeds = {k: graph.inputs_of(k) for k in self.order}
        self.recurrent = {k: graph.inputs_of(k, True) for k in self.order}
        self.shapes = graph.shapes()
        self.input_name = graph.input_names()[0]
        self.output_name = graph.output_name()
        self.surrogates = {}
        self.live: dict[str, gn.Node] = {}
        self.tensors = nn.ModuleDict()
        for i, (name, node) in enumerate(graph.nodes.items()):
            holder = nn.Module()
            for f in dataclasses.fields(node):
                value = getattr(node, f.name)
                if isinstance(value, torch.Tensor):
                    t = value.detach().clone().float()
                    if f.name in _TRAINABLE and isinstance(node, gn.SYNAPSES + (gn.Bias,)):
                        holder.register_parameter(f.name, nn.Parameter(t))
                    else:
                        holder.register_buffer(f.name, t)
            self.tensors[f"n{i}"] = holder
            self.live[name] = dataclasses.replace(node)
            if isinstance(node, gn.SPIKING):
                spec = node.meta.get("surrogate") or surrogate
                self.surrogates[name] = make_surrogate(spec)
        self._keys = {name: f"n{i}" for i, name in enumerate(graph.nodes)}
        self.probes = {name: NeuronProbe(sur) for name, sur in self.surrogates.items()}

    def spiking_layers(self) -> list[tuple[str, NeuronProbe]]:
        """The spiking nodes' probes by node name, in graph order (what the training monitor reads)."""
        return [(k, self.probes[k]) for k in self.order if k in self.probes]

    def _node(self, name: str) -> gn.Node:
        """The node with this module's current tensors (parameters and buffers)."""
        holder = self.tensors[self._keys[name]]
        own = dict(holder.named_parameters(recurse=False)) | dict(holder.named_buffers(recurse=False))
        return dataclasses.replace(self.live[name], **own) if own else self.live[name]

    def forward(self, seq: torch.Tensor, trace: bool = False):
        """Class scores ``[B, ...]`` by the Output's read-out (and with ``trace`` every node's output
        sequence ``{name: [T, B, ...]}``)."""
        shape = self.shapes[self.input_name]
        if seq.dim() < 2 or tuple(seq.shape[2:]) != shape:
            raise DataError(f"input sequence of shape {list(seq.shape)} does not match [T, B, "
                            f"{', '.join(map(str, shape))}]")
        steps, batch = seq.shape[:2]
        dtype = next(iter([*self.parameters(), *self.buffers()]), seq).dtype
        seq = seq.to(dtype)
        nodes = {k: self._node(k) for k in self.order}
        zeros = {k: torch.zeros(batch, *self.shapes[k], dtype=dtype, device=seq.device) for k in self.order}
        channels_last = cpu_float32_images(seq) and any(isinstance(nd, gn.Conv) for nd in nodes.values())
        if channels_last:  # feature maps in channels-last memory (nn/conv_layout.py): same values, faster
            seq = to_channels_last(seq)
            zeros = {k: to_channels_last(z) if z.dim() == 4 else z for k, z in zeros.items()}
        state = {k: _init_state(nodes[k], zeros[k]) for k in self.order if isinstance(nodes[k], gn.STATEFUL)}
        prev = dict(zeros)
        outs: dict[str, list[torch.Tensor]] = {k: [] for k in self.order}
        watched = {k for k, p in self.probes.items() if p.monitor or p.track_rate}
        potentials: dict[str, list[torch.Tensor]] = {k: [] for k in watched}
        for t in range(steps):
            now: dict[str, torch.Tensor] = {}
            for k in self.order:
                node = nodes[k]
                if isinstance(node, gn.Input):
                    now[k] = seq[t]
                else:
                    x = None
                    for src in self.feeds[k]:
                        x = now[src] if x is None else x + now[src]
                    for src in self.recurrent[k]:
                        x = x + prev[src]
                    if channels_last and isinstance(node, gn.Flatten):
                        x = to_standard(x)
                    now[k] = self._step(k, node, state[k], x) if k in state else apply_stateless(node, x)
                    if k in watched:
                        potentials[k].append(state[k]["m"].detach())
                if trace or k == self.output_name or k in watched:
                    outs[k].append(now[k])
            prev = now
        for k in watched:
            self.probes[k].observe(torch.stack(outs[k]), torch.stack(potentials[k]), nodes[k].threshold)
        y = torch.stack(outs[self.output_name])
        logits = y.mean(dim=0) if nodes[self.output_name].readout == "mean" else y[-1]
        if trace:
            return logits, {k: torch.stack(v) for k, v in outs.items() if v}
        return logits

    def _step(self, name: str, node: gn.Node, st: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
        if isinstance(node, gn.Delay):
            st["buf"].append(x)
            return st["buf"].pop(0)
        if isinstance(node, gn.LI):
            st["u"] = node.decay * st["u"] + node.r * x
            return st["u"]
        if isinstance(node, gn.CubaLIF):
            st["i"] = node.current_decay * st["i"] + node.r * x
            m = node.voltage_decay * st["u"] + st["i"]
        elif isinstance(node, gn.LIF):
            m = node.decay * st["u"] + node.r * x
        else:
            m = st["u"] + node.r * x
        v_th = node.threshold
        st["m"] = m
        sur = self.surrogates[name]
        s = spike(m - v_th, sur) if node.strict else 1 - spike(v_th - m, sur)
        st["u"] = m * (1 - s) if node.reset == "zero" else m - v_th * s
        return s


def _init_state(node: gn.Node, like: torch.Tensor) -> dict[str, Any]:
    v0 = getattr(node, "v_init", 0.0)
    return {"u": torch.zeros_like(like) + v0, "i": torch.zeros_like(like),
            "buf": [torch.zeros_like(like) for _ in range(getattr(node, "steps", 0))]}


class NeuronProbe:
    """What the training monitor reads from one spiking node of a :class:`GraphNet` (the interface
    of a :class:`~neurodeploy.nn.SpikingNeuron` the monitor uses): switch ``monitor`` on for
    :attr:`stats`, ``track_rate`` for :attr:`rate` (per-neuron spikes per step, with gradient)."""

    def __init__(self, surrogate: Surrogate):
        self.surrogate = surrogate
        self.monitor = False
        self.track_rate = False
        self.stats: dict[str, torch.Tensor] = {}
        self.rate: torch.Tensor | None = None

    def observe(self, spikes: torch.Tensor, potentials: torch.Tensor, threshold: Any) -> None:
        if self.track_rate:
            self.rate = spikes.mean(dim=(0, 1))
        if self.monitor:
            v_th = torch.as_tensor(threshold, dtype=potentials.dtype, device=potentials.device)
            if v_th.numel() > 1:  # per-neuron thresholds: statistics in units of each neuron's threshold
                potentials, v_th = potentials / v_th, torch.ones((), dtype=potentials.dtype)
            self.stats = layer_stats(spikes.detach(), potentials, v_th, self.surrogate)


# ------------------------------------------------------------------------------------------ files
@dataclass
class GraphCheckpoint:
    """A graph-backed checkpoint: the graph, the number of time steps T, free-form ``meta`` and,
    when a training run wrote it, its resumable ``train`` record (optimizer, history, ...)."""

    graph: Graph
    steps: int
    meta: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)

    def build(self) -> GraphNet:
        """The :class:`GraphNet` of the stored graph (float32, eval mode)."""
        return GraphNet(self.graph).eval()

    def save(self, path: str | Path) -> Path:
        """Write the checkpoint to ``path`` atomically."""
        return save_graph_checkpoint(self, path)


def save_graph_checkpoint(ck: GraphCheckpoint, path: str | Path) -> Path:
    """Write ``ck`` to ``path`` atomically (format in the module docstring)."""
    payload = {"format": FORMAT, "version": VERSION, "graph": graph_to_data(ck.graph), "steps": int(ck.steps),
               "meta": ck.meta}
    if ck.train:
        payload["train"] = ck.train
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_graph_checkpoint(path: str | Path) -> GraphCheckpoint:
    """Read a file of :func:`save_graph_checkpoint`; anything else raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"graph checkpoint {path} does not exist or is not a file")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt archives
        raise CheckpointError(f"{path} is not a readable graph checkpoint (corrupt or truncated: "
                              f"{type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a neurodeploy graph checkpoint (no {FORMAT!r} format tag)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path} has graph checkpoint version {payload.get('version')!r}; this "
                              f"neurodeploy reads version {VERSION}")
    steps = payload.get("steps")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise CheckpointError(f"{path} has an invalid number of time steps {steps!r} (1 to {MAX_STEPS})")
    train = payload.get("train") or {}
    if not isinstance(train, dict):
        raise CheckpointError(f"{path} is damaged: its 'train' entry is a {type(train).__name__}, not a table")
    if not isinstance(payload.get("meta") or {}, dict):
        raise CheckpointError(f"{path} is damaged: its 'meta' entry is a {type(payload['meta']).__name__}, "
                              "not a table")
    return GraphCheckpoint(graph_from_data(payload.get("graph")), steps, dict(payload.get("meta") or {}), train)
