"""The float graph: named nodes (:mod:`neurodeploy.graph.nodes`) joined by edges.

**Edges.** ``Edge(src, dst)`` carries ``src``'s output at step ``t`` into ``dst`` at the same step.
A node with several incoming edges receives their sum. An edge may branch (one source, several
destinations) and merge (several edges into one node). ``Edge(src, dst, recurrent=True)`` carries
``src``'s output of step ``t - 1`` (zero at ``t = 0``): a **recurrent edge is a one-step delay**,
and every cycle must contain one, so the graph without its recurrent edges is acyclic and has a
topological order (:meth:`Graph.order`). Time steps then run that order once per step.

:meth:`Graph.validate` checks structure, parameters and shapes and raises :class:`GraphError`
with one line naming the node or edge at fault.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from neurodeploy.errors import ConfigError
from neurodeploy.graph import nodes as n


class GraphError(ConfigError):
    """A float graph is malformed (one line naming the node or edge)."""


@dataclass(frozen=True)
class Edge:
    """``src -> dst``; ``recurrent`` edges deliver the previous step's value (a one-step delay)."""

    src: str
    dst: str
    recurrent: bool = False


@dataclass(eq=False)
class Graph:
    """Nodes by name (insertion order is kept), edges and plain-data ``meta`` (``steps``,
    ``encoding``, ``readout``, ``spec``, ...: what the model knew beyond its layers)."""

    nodes: dict[str, n.Node]
    edges: list[Edge]
    meta: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ structure
    def inputs_of(self, name: str, recurrent: bool | None = False) -> list[str]:
        """Sources of the edges into ``name`` (only feed-forward ones by default; ``None``: all)."""
        return [e.src for e in self.edges if e.dst == name and (recurrent is None or e.recurrent == recurrent)]

    def consumers(self, name: str, recurrent: bool | None = None) -> list[str]:
        """Destinations of the edges out of ``name`` (all by default)."""
        return [e.dst for e in self.edges if e.src == name and (recurrent is None or e.recurrent == recurrent)]

    def input_names(self) -> list[str]:
        return [k for k, v in self.nodes.items() if isinstance(v, n.Input)]

    def output_name(self) -> str:
        outs = [k for k, v in self.nodes.items() if isinstance(v, n.Output)]
        if len(outs) != 1:
            raise GraphError(f"a graph needs exactly one Output node, found {len(outs)}")
        return outs[0]

    def order(self) -> list[str]:
        """Topological order of the feed-forward edges (ties keep insertion order)."""
        indeg = {k: 0 for k in self.nodes}
        for e in self.edges:
            if not e.recurrent:
                indeg[e.dst] += 1
        names = list(self.nodes)
        ready = [k for k in names if indeg[k] == 0]
        out: list[str] = []
        while ready:
            k = ready.pop(0)
            out.append(k)
            for e in self.edges:
                if e.src == k and not e.recurrent:
                    indeg[e.dst] -= 1
                    if indeg[e.dst] == 0:
                        ready.append(e.dst)
            ready.sort(key=names.index)
        if len(out) != len(names):
            stuck = [k for k in names if k not in out]
            raise GraphError(f"cycle through {' -> '.join(stuck)} without a recurrent edge (a recurrent "
                             "edge carries the one-step delay every cycle needs)")
        return out

    def is_chain(self) -> bool:
        """True when every node has at most one input and one consumer and no edge is recurrent."""
        if any(e.recurrent for e in self.edges):
            return False
        return all(len(self.inputs_of(k)) <= 1 and len(self.consumers(k)) <= 1 for k in self.nodes)

    # ------------------------------------------------------------------ editing (for passes)
    def copy(self) -> Graph:
        """A shallow copy: new node dict, edge list and meta; nodes are shared (passes replace them)."""
        return Graph(dict(self.nodes), list(self.edges), dict(self.meta))

    def replace_node(self, name: str, **changes: Any) -> None:
        """Replace node ``name`` by a copy with ``changes`` (its ``meta`` is copied too)."""
        old = self.nodes[name]
        self.nodes[name] = replace(old, meta=dict(changes.pop("meta", old.meta)), **changes)

    def remove_node(self, name: str) -> None:
        """Remove a node with one feed-forward input; its consumers are fed by that input instead."""
        (src,) = self.inputs_of(name)
        new: list[Edge] = []
        for e in self.edges:
            if e.dst == name:
                continue
            new.append(Edge(src, e.dst, e.recurrent) if e.src == name else e)
        self.edges = new
        del self.nodes[name]

    # ------------------------------------------------------------------ checks
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample output shape of every node (raises :class:`GraphError` on a mismatch)."""
        order = self.order()
        shapes: dict[str, tuple[int, ...]] = {}
        for k in order:
            node = self.nodes[k]
            if isinstance(node, n.Input):
                shapes[k] = tuple(int(v) for v in node.shape)
                continue
            ins = [shapes[s] for s in self.inputs_of(k)]
            if not ins:
                raise GraphError(f"node {k} ({node.kind}) has no feed-forward input")
            if any(s != ins[0] for s in ins):
                raise GraphError(f"node {k} ({node.kind}) sums inputs of different shapes "
                                 f"{', '.join(str(list(s)) for s in ins)}")
            shapes[k] = output_shape(k, node, ins[0])
        for e in self.edges:
            if e.recurrent:
                want = shapes[self.inputs_of(e.dst)[0]] if self.inputs_of(e.dst) else None
                if want is not None and shapes[e.src] != want:
                    raise GraphError(f"recurrent edge {e.src} -> {e.dst} carries shape {list(shapes[e.src])} "
                                     f"into a node whose inputs have shape {list(want)}")
        return shapes

    def validate(self) -> Graph:
        """Check names, edges, parameters and shapes; return ``self`` or raise :class:`GraphError`."""
        if not self.nodes:
            raise GraphError("the graph has no nodes")
        enc, steps = self.meta.get("encoding"), self.meta.get("steps")
        if enc is not None and not isinstance(enc, dict):
            raise GraphError(f"the graph's encoding is {enc!r}, not a table")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise GraphError(f"the graph's steps are {steps!r}, not a whole number >= 1")
        for k, node in self.nodes.items():
            if not isinstance(k, str) or not k:
                raise GraphError(f"node name {k!r} is not a non-empty string")
            if not isinstance(node, n.Node):
                raise GraphError(f"node {k} is a {type(node).__name__}, not a graph node")
            check_parameters(k, node)
        seen: set[tuple[str, str, bool]] = set()
        for e in self.edges:
            for end in (e.src, e.dst):
                if end not in self.nodes:
                    raise GraphError(f"edge {e.src} -> {e.dst} names an unknown node {end}")
            if (e.src, e.dst, e.recurrent) in seen:
                raise GraphError(f"edge {e.src} -> {e.dst} appears twice")
            seen.add((e.src, e.dst, e.recurrent))
            if isinstance(self.nodes[e.dst], n.Input):
                raise GraphError(f"edge {e.src} -> {e.dst} enters the Input node")
            if isinstance(self.nodes[e.src], n.Output):
                raise GraphError(f"edge {e.src} -> {e.dst} leaves the Output node")
            if e.src == e.dst and not e.recurrent:
                raise GraphError(f"self-edge {e.src} -> {e.dst} must be recurrent (a one-step delay)")
        if not self.input_names():
            raise GraphError("the graph has no Input node")
        out = self.output_name()
        if len(self.inputs_of(out, None)) != 1 or self.inputs_of(out, True):
            raise GraphError(f"the Output node {out} needs exactly one feed-forward input edge")
        for k, node in self.nodes.items():
            if not isinstance(node, n.Input) and not self.inputs_of(k):
                raise GraphError(f"node {k} ({node.kind}) has no feed-forward input edge")
            if not isinstance(node, n.Output) and not self.consumers(k):
                raise GraphError(f"the output of node {k} ({node.kind}) goes nowhere")
        self.order()  # cycles
        reach = set(self.input_names())
        changed = True
        while changed:
            changed = False
            for e in self.edges:
                if e.src in reach and e.dst not in reach:
                    reach.add(e.dst)
                    changed = True
        for k in self.nodes:
            if k not in reach:
                raise GraphError(f"node {k} cannot be reached from the input")
        self.shapes()
        return self


def all_finite(t: torch.Tensor) -> bool:
    """Whether every value of float tensor ``t`` is finite. A NaN or an infinity makes the sum
    non-finite, so a finite sum decides it in one reduction; a sum that is not finite (a NaN, an
    infinity, or finite values whose sum overflows) is decided value by value."""
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def _finite_positive(v: n.Param) -> bool:
    if isinstance(v, torch.Tensor):
        return all_finite(v) and bool((v > 0).all())
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _in_unit(v: n.Param) -> bool:
    if isinstance(v, torch.Tensor):
        return bool(((v >= 0) & (v <= 1)).all())
    return isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1


def _pair_ok(v: Any, low: int) -> bool:
    return isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, int) and x >= low for x in v)


@functools.cache
def _value_fields(cls: type) -> tuple[tuple[str, bool, bool], ...]:
    """``(name, may be None, may be a number)`` of every tensor-valued field of a node class."""
    out = []
    for f in dataclasses.fields(cls):
        t = str(f.type)
        if "Tensor" in t or t.startswith("Param"):
            out.append((f.name, "None" in t, "Param" in t))
    return tuple(out)


def check_parameters(k: str, node: n.Node) -> None:
    """One-line :class:`GraphError` for parameters a node of its kind cannot have."""
    kind = node.kind
    for name, optional, param in _value_fields(type(node)):  # tensors and numbers: typed, finite
        v = getattr(node, name)
        if v is None and optional:
            continue
        number = not isinstance(v, bool) and isinstance(v, int | float) and param
        if not number and not (isinstance(v, torch.Tensor) and v.is_floating_point()):
            raise GraphError(f"node {k} ({kind}): {name} must be a float tensor"
                             f"{' or a number' if param else ''}, got "
                             f"{v.dtype if isinstance(v, torch.Tensor) else type(v).__name__}")
        if not (math.isfinite(v) if number else all_finite(v)):
            raise GraphError(f"node {k} ({kind}): {name} holds values that are not finite")
    if isinstance(node, n.Input) and (not node.shape or any(int(v) < 1 for v in node.shape)):
        raise GraphError(f"node {k} (Input): shape {node.shape} is not positive")
    if isinstance(node, n.Output) and node.readout not in n.READOUTS:
        raise GraphError(f"node {k} (Output): unknown read-out {node.readout!r}; choose one of "
                         f"{', '.join(n.READOUTS)}")
    if isinstance(node, n.Affine):
        if node.weight.dim() != 2:
            raise GraphError(f"node {k} (Affine): weight must be [out, in], got {list(node.weight.shape)}")
    if isinstance(node, n.Conv):
        if node.weight.dim() != 4:
            raise GraphError(f"node {k} (Conv): weight must be [out, in/groups, kh, kw], got "
                             f"{list(node.weight.shape)}")
        if not (_pair_ok(node.stride, 1) and _pair_ok(node.padding, 0) and _pair_ok(node.dilation, 1)):
            raise GraphError(f"node {k} (Conv): stride, padding and dilation must be integer pairs "
                             "(stride, dilation >= 1, padding >= 0)")
        if not isinstance(node.groups, int) or node.groups < 1 or node.weight.shape[0] % node.groups:
            raise GraphError(f"node {k} (Conv): {node.weight.shape[0]} output channels cannot form "
                             f"{node.groups} groups")
    if isinstance(node, n.Affine | n.Conv) and node.bias is not None \
            and tuple(node.bias.shape) != (node.weight.shape[0],):
        raise GraphError(f"node {k} ({kind}): bias has shape {list(node.bias.shape)}, expected "
                         f"[{node.weight.shape[0]}]")
    if isinstance(node, n.SumPool | n.AvgPool | n.MaxPool):
        if not (_pair_ok(node.kernel, 1) and _pair_ok(node.stride, 1) and _pair_ok(node.padding, 0)):
            raise GraphError(f"node {k} ({kind}): kernel, stride and padding must be integer pairs")
    if isinstance(node, n.Delay) and (not isinstance(node.steps, int) or isinstance(node.steps, bool)
                                      or node.steps < 1):
        raise GraphError(f"node {k} (Delay): steps must be an integer >= 1, got {node.steps!r}")
    if isinstance(node, n.ReLU) and node.cap is not None and not _finite_positive(node.cap):
        raise GraphError(f"node {k} (ReLU): cap must be a positive number, got {node.cap!r}")
    if isinstance(node, n.BatchNorm) and (not _finite_positive(node.var + node.eps)):
        raise GraphError(f"node {k} (BatchNorm): var + eps must be positive")
    if isinstance(node, n.SPIKING):
        if not _finite_positive(node.threshold):
            raise GraphError(f"node {k} ({kind}): threshold must be positive and finite")
        if node.reset not in n.RESET_MODES:
            raise GraphError(f"node {k} ({kind}): unknown reset {node.reset!r}; choose one of "
                             f"{', '.join(n.RESET_MODES)}")
        if not isinstance(node.strict, bool):
            raise GraphError(f"node {k} ({kind}): strict must be True or False")
    for attr in ("decay", "current_decay", "voltage_decay"):
        if isinstance(node, n.LIF | n.CubaLIF | n.LI) and hasattr(node, attr) \
                and not _in_unit(getattr(node, attr)):
            raise GraphError(f"node {k} ({kind}): {attr} must be a factor in [0, 1], got "
                             f"{getattr(node, attr)!r}")


def _conv_out(size: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def output_shape(k: str, node: n.Node, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Per-sample output shape of ``node`` for input shape ``shape`` (:class:`GraphError` if wrong)."""
    if isinstance(node, n.Affine):
        if len(shape) != 1 or shape[0] != node.weight.shape[1]:
            raise GraphError(f"node {k} (Affine) takes {node.weight.shape[1]} features, gets {list(shape)}")
        return (int(node.weight.shape[0]),)
    if isinstance(node, n.Conv | n.SumPool | n.AvgPool | n.MaxPool):
        if len(shape) != 3:
            raise GraphError(f"node {k} ({node.kind}) needs a (C, H, W) input, gets {list(shape)}")
        c, h, w = shape
        if isinstance(node, n.Conv):
            if c != node.weight.shape[1] * node.groups:
                raise GraphError(f"node {k} (Conv) takes {node.weight.shape[1] * node.groups} channels, "
                                 f"gets {c}")
            kh, kw = node.weight.shape[2:]
            c = int(node.weight.shape[0])
            d = node.dilation
        else:
            kh, kw = node.kernel
            d = getattr(node, "dilation", (1, 1))
        oh = _conv_out(h, kh, node.stride[0], node.padding[0], d[0])
        ow = _conv_out(w, kw, node.stride[1], node.padding[1], d[1])
        if oh < 1 or ow < 1:
            raise GraphError(f"node {k} ({node.kind}) leaves no output from a {h}x{w} input")
        return (c, oh, ow)
    if isinstance(node, n.Flatten):
        return (math.prod(shape),)
    if isinstance(node, n.BatchNorm) and node.mean.numel() != shape[0]:
        raise GraphError(f"node {k} (BatchNorm) has {node.mean.numel()} channels, gets {shape[0]}")
    return shape


class GraphBuilder:
    """Builds a :class:`Graph` node by node: what every front end (the model builder, a future
    ``torch.fx`` tracer, a user's explicit network, a NIR reader) calls.

    ``add(name, node, *inputs)`` adds a node fed by ``inputs``; ``connect(src, dst,
    recurrent=True)`` adds a recurrent edge (one-step delay); ``build(meta)`` validates.
    """

    def __init__(self):
        self.nodes: dict[str, n.Node] = {}
        self.edges: list[Edge] = []

    def add(self, name: str, node: n.Node, *inputs: str) -> str:
        if name in self.nodes:
            raise GraphError(f"node name {name} is used twice")
        self.nodes[name] = node
        for src in inputs:
            self.connect(src, name)
        return name

    def connect(self, src: str, dst: str, recurrent: bool = False) -> None:
        self.edges.append(Edge(src, dst, recurrent))

    def build(self, meta: dict[str, Any] | None = None) -> Graph:
        return Graph(dict(self.nodes), list(self.edges), dict(meta or {})).validate()
