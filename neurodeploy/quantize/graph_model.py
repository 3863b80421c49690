"""A graph network (:class:`~neurodeploy.models.graph_net.GraphNet`) in the shape the deployment
path reads: :class:`GraphModel` carries a ``spec`` with what a :class:`~neurodeploy.models.SpikingNet`'s
spec tells quantization and the simulator (steps, input shape, encoding, read-out, surrogate),
encodes samples like it, and hands the fold its current float graph (:meth:`GraphModel.folded_graph`,
differentiable on demand), so fake quantization, fine-tuning and lowering run on any float graph
with merges and recurrent edges (``docs/graphs.md``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from neurodeploy.graph import nodes as gn
from neurodeploy.graph.ir import Graph
from neurodeploy.models.graph_net import GraphCheckpoint, GraphNet
from neurodeploy.nn.encoding import Encoding, encode, events_as_sequence


@dataclass
class GraphSpec:
    """What deployment reads of a graph network (the fields a template's ``ModelSpec`` has)."""

    steps: int
    input_shape: tuple[int, ...]
    encoding: dict[str, Any]
    readout: str
    neuron: dict[str, Any] = field(default_factory=dict)
    arch: str = "graph"

    @property
    def encoding_config(self) -> Encoding:
        return Encoding.from_config(dict(self.encoding))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class GraphModel(nn.Module):
    """A :class:`GraphNet` with a :class:`GraphSpec` (see the module docstring); its parameters
    are the graph network's, so fine-tuning through the fake-quant network trains them."""

    def __init__(self, net: GraphNet, steps: int, encoding: dict[str, Any] | None = None,
                 meta: dict[str, Any] | None = None):
        super().__init__()
        self.net = net
        self.meta = dict(meta or {})
        g = net.graph
        enc = encoding or g.meta.get("encoding") or self.meta.get("encoding") or {"kind": "direct"}
        out = g.output_name()
        (last,) = g.inputs_of(out)
        spiking = isinstance(g.nodes[last], gn.SPIKING)
        surrogate = next((n.meta.get("surrogate") for n in g.nodes.values()
                          if isinstance(n, gn.SPIKING) and n.meta.get("surrogate")), "atan")
        self.spec = GraphSpec(int(steps), tuple(int(v) for v in net.shapes[net.input_name]), dict(enc),
                              "spike_count" if spiking else "mean", {"surrogate": surrogate})

    @classmethod
    def from_checkpoint(cls, ck: GraphCheckpoint) -> GraphModel:
        return cls(ck.build(), ck.steps, ck.meta.get("encoding"), ck.meta).eval()

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Input sequence ``[T, B, ...]`` of samples ``x`` (as :meth:`SpikingNet.encode`); samples that
        are input event sequences ``[B, T, ...]`` (a temporal task) as the float network sees them."""
        from neurodeploy.quantize.fakequant import is_sequence

        if is_sequence(x, self.spec.input_shape):
            return events_as_sequence(x, self.spec.steps, self.spec.encoding_config)
        return encode(x, self.spec.steps, self.spec.encoding_config, generator)

    def folded_graph(self, keep_grad: bool = False) -> Graph:
        """The network's float graph with its current tensors in float64 (differentiable functions
        of the parameters with ``keep_grad``), what :func:`~neurodeploy.quantize.fold.fold_model`
        folds."""
        g = self.net.graph
        nodes = {}
        for k in g.nodes:
            node = self.net._node(k)
            changes = {}
            for f in dataclasses.fields(node):
                v = getattr(node, f.name)
                if isinstance(v, torch.Tensor):
                    v = v.double()
                    changes[f.name] = v if keep_grad else v.detach()
            nodes[k] = dataclasses.replace(node, **changes) if changes else node
        return Graph(nodes, list(g.edges), dict(g.meta))

    def forward_sequence(self, seq: torch.Tensor) -> torch.Tensor:
        """The Output node's input over all steps ``[T, B, ...]``."""
        _, trace = self.net(seq, trace=True)
        return trace[self.net.graph.inputs_of(self.net.output_name)[0]]

    def readout(self, out_seq: torch.Tensor) -> torch.Tensor:
        """Class scores from :meth:`forward_sequence`'s output (the Output node's read-out)."""
        node = self.net.graph.nodes[self.net.output_name]
        return out_seq.mean(dim=0) if node.readout == "mean" else out_seq[-1]

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.net(self.encode(x, generator))

    def checkpoint(self, meta: dict[str, Any] | None = None) -> GraphCheckpoint:
        """A graph checkpoint of the network's current tensors."""
        g = self.folded_graph()
        nodes = {}
        for k, node in g.nodes.items():
            orig = self.net.graph.nodes[k]
            changes = {f.name: getattr(node, f.name).to(getattr(orig, f.name).dtype)
                       for f in dataclasses.fields(node) if isinstance(getattr(node, f.name), torch.Tensor)}
            nodes[k] = dataclasses.replace(node, **changes) if changes else node
        return GraphCheckpoint(Graph(nodes, list(g.edges), dict(g.meta)), self.spec.steps,
                               {**self.meta, "encoding": dict(self.spec.encoding), **(meta or {})})
