"""A network written in PyTorch as the float graph.

The network is a ``torch.nn.Module`` whose ``forward`` maps an input sequence ``[T, B,
*input_shape]`` to an output sequence ``[T, B, classes]`` (or to class scores, when it ends with
``.mean(0)`` or ``[-1]``), built from neurodeploy's layers (:class:`~neurodeploy.nn.SpikingNeuron`,
:class:`~neurodeploy.nn.Recurrent`, :class:`~neurodeploy.nn.Stepwise`) and torch layers (``Linear``,
``Conv2d``, ``BatchNorm``, pooling, ``Flatten``, ``ReLU``, ``Dropout``, ``Identity``) in any
arrangement, with ``+`` / ``torch.add`` merges (residual skips).

:func:`graph_from_torch` reads it with ``torch.fx`` symbolic tracing (neurodeploy's layers are
leaves), maps each called module through :func:`~neurodeploy.graph.from_model.nodes_from_module`
(the one place that knows how a module reads as graph nodes) and each merge to an ``Add`` node; a
:class:`~neurodeploy.nn.Recurrent` layer becomes its input synapses, its neurons and its recurrent
synapses, fed back into the neurons by a recurrent edge (a one-step delay). Anything else is
refused in one line naming the module or operation. Where tracing fails (``forward`` branches on
values, loops over a Python list of unknown length, ...) :class:`TorchGraphBuilder` describes the
network explicitly: submodules by name, merges by hand.

Before returning, the tracer runs the module and the graph on the same random sequence (float64,
eval mode) and refuses a graph that computes differently from the module's own ``forward``.
"""

from __future__ import annotations

import copy
import operator
from typing import Any

import torch
from torch import fx, nn

from neurodeploy.errors import ConfigError, UnsupportedError
from neurodeploy.graph import nodes as n
from neurodeploy.graph.from_model import nodes_from_module
from neurodeploy.graph.interpret import run_graph
from neurodeploy.graph.ir import Graph, GraphBuilder, GraphError
from neurodeploy.nn.encoding import Encoding
from neurodeploy.nn.layers import Recurrent, Stepwise
from neurodeploy.nn.neurons import SpikingNeuron

LEAVES = (SpikingNeuron, Recurrent, Stepwise)
"""neurodeploy's layers: ``torch.fx`` does not trace into them."""
METHODS = ("fx", "builder")
VERIFY_BATCH = 4
VERIFY_TOLERANCE = 1e-9


def _shape(input_shape: Any) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise ConfigError(f"input_shape must be a tuple of positive integers, got {input_shape!r}") from None
    if not shape or any(v < 1 for v in shape):
        raise ConfigError(f"input_shape must be a tuple of positive integers, got {input_shape!r}")
    return shape


def _meta(steps: Any, encoding: Any, readout: str, front_end: str, module: nn.Module) -> dict[str, Any]:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps must be a positive integer, got {steps!r}")
    if readout not in n.READOUTS:
        raise ConfigError(f"unknown read-out {readout!r}; choose one of {', '.join(n.READOUTS)}")
    return {"steps": steps, "encoding": Encoding.from_config(encoding).to_dict(), "readout": readout,
            "source": {"front_end": front_end, "module": type(module).__name__}}


class TorchGraphBuilder:
    """Describe a PyTorch network as the float graph by hand: each :meth:`layer` call adds a
    submodule (by its dotted name in ``module``) fed by the sum of the given handles; :meth:`add`
    merges; :meth:`build` closes the graph with its read-out.

    Example (a residual block)::

        b = TorchGraphBuilder(net, (1, 8, 8))
        h = b.layer("sn1", b.layer("conv1", b.input))
        h = b.layer("sn2", b.add(b.layer("conv2", h), b.layer("skip", b.input)))
        graph = b.build(b.layer("fc", b.layer("flat", h)), steps=8)

    Image layers (``Conv2d``, ``BatchNorm2d``, pooling, ``Flatten``) are read per time step, as
    :class:`~neurodeploy.nn.Stepwise` runs them.
    """

    def __init__(self, module: nn.Module, input_shape: tuple[int, ...], keep_grad: bool = False):
        self.module = module
        self.keep_grad = keep_grad
        self._b = GraphBuilder()
        self.input = self._b.add("input", n.Input(_shape(input_shape)))
        self._adds = 0

    # ------------------------------------------------------------------ handles
    def layer(self, target: str, *inputs: str) -> str:
        """Add submodule ``target`` fed by the sum of ``inputs``; the handle of its output."""
        try:
            module = self.module.get_submodule(target)
        except AttributeError:
            raise ConfigError(f"{type(self.module).__name__} has no submodule {target!r}") from None
        return self.module_nodes(target, module, list(inputs), stepwise=None)

    def add(self, *inputs: str, name: str | None = None) -> str:
        """An ``Add`` node summing ``inputs`` (a residual merge)."""
        if len(inputs) < 2:
            raise ConfigError("add needs at least two inputs")
        if name is None:
            name = "add" if self._adds == 0 else f"add_{self._adds}"
            self._adds += 1
        return self._b.add(name, n.Add(meta={"source": name}), *inputs)

    def scale(self, source: str, factor: float, name: str) -> str:
        """A ``Scale`` node: ``factor * source``."""
        return self._b.add(name, n.Scale(float(factor), meta={"source": name}), source)

    def build(self, output: str, *, steps: int, encoding: Any = "direct", readout: str = "mean",
              front_end: str = "builder") -> Graph:
        """Close the graph: an ``Output`` node reading ``output`` by ``readout``; validated."""
        meta = _meta(steps, encoding, readout, front_end, self.module)
        self._b.add("output", n.Output(readout), output)
        return self._b.build(meta)

    # ------------------------------------------------------------------ modules
    def _chain(self, pairs: list[tuple[str, n.Node]], inputs: list[str]) -> str:
        if not pairs:
            return inputs[0] if len(inputs) == 1 else self.add(*inputs)
        last = None
        for name, node in pairs:
            if name in self._b.nodes:
                raise UnsupportedError(f"{name}: the module is called more than once (shared weights); the graph "
                                       "gives every call its own synapses, so use one module per call")
            last = self._b.add(name, node, *(inputs if last is None else [last]))
        return last

    def module_nodes(self, name: str, module: nn.Module, inputs: list[str], stepwise: bool | None) -> str:
        """Add the nodes of ``module`` (called as ``name``) fed by ``inputs``; ``stepwise``: whether
        the module runs per time step (inside :class:`Stepwise`: True; called on a sequence
        ``[T, B, ...]``: False; unknown, in the explicit builder: None)."""
        if not inputs:
            raise ConfigError(f"{name}: a layer needs at least one input")
        if isinstance(module, Recurrent):
            return self._recurrent(name, module, inputs)
        if isinstance(module, Stepwise):
            return self.module_nodes(f"{name}.layer", module.layer, inputs, stepwise=True)
        if isinstance(module, nn.Sequential):
            last = inputs
            for child_name, child in module.named_children():
                last = [self.module_nodes(f"{name}.{child_name}", child, last, stepwise)]
            return last[0] if len(last) == 1 else self.add(*last)
        if stepwise is None and isinstance(module, nn.Flatten) and (module.start_dim, module.end_dim) == (2, -1):
            stepwise = False  # a flatten of a sequence's per-sample dimensions
        if stepwise is False and isinstance(module, nn.Flatten):
            if (module.start_dim, module.end_dim) not in ((2, -1), (-3, -1)) and module.end_dim == -1 \
                    and module.start_dim in (0, 1):
                raise UnsupportedError(f"{name}: nn.Flatten(start_dim={module.start_dim}) on a sequence [T, B, ...] "
                                       "merges time or batch into the features; use nn.Flatten(start_dim=2) or "
                                       "Stepwise(nn.Flatten())")
            if (module.start_dim, module.end_dim) != (2, -1):
                raise UnsupportedError(f"{name}: only a flatten of all per-sample dimensions (nn.Flatten(start_dim=2) "
                                       "on a sequence) has a graph form")
            return self._chain([(name, n.Flatten(meta={"source": name}))], inputs)
        if stepwise is False and isinstance(module, nn.BatchNorm1d):
            raise UnsupportedError(f"{name}: nn.BatchNorm1d on a sequence [T, B, F] normalises over the batch "
                                   "dimension; wrap it in neurodeploy.nn.Stepwise")
        return self._chain(nodes_from_module(name, module, self.keep_grad), inputs)

    def _recurrent(self, name: str, module: Recurrent, inputs: list[str]) -> str:
        rec = module.recurrent
        if not isinstance(rec, nn.Linear):
            raise UnsupportedError(f"{name}.recurrent: recurrent synapses must be an nn.Linear, got "
                                   f"{type(rec).__name__}")
        if rec.bias is not None:
            raise UnsupportedError(f"{name}.recurrent: a recurrent bias acts from the first step in PyTorch but only "
                                   "after one step through a recurrent edge; put the bias on the input synapses")
        first = self.module_nodes(f"{name}.input", module.input, inputs, stepwise=False)
        pairs = nodes_from_module(f"{name}.neuron", module.neuron, self.keep_grad)
        out = self._chain(pairs, [first])
        back = self._chain(nodes_from_module(f"{name}.recurrent", rec, self.keep_grad), [out])
        self._b.connect(back, pairs[0][0], recurrent=True)
        return out


# ---------------------------------------------------------------------------------------- torch.fx
class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, LEAVES) or super().is_leaf_module(m, qualname)


def _fname(f: Any) -> str:
    return getattr(f, "__qualname__", None) or getattr(f, "__name__", None) or repr(f)


def _is_dim0(node: fx.Node) -> bool:
    args, kw = node.args[1:], dict(node.kwargs)
    dim = args[0] if args else kw.pop("dim", None)
    if kw.get("keepdim") is False:
        del kw["keepdim"]
    return dim in (0, (0,), [0]) and not kw and len(args) <= 1


def _trace(module: nn.Module, input_shape: tuple[int, ...], keep_grad: bool, steps: int, encoding: Any,
           readout: str | None) -> tuple[Graph, dict[fx.Node, str], fx.GraphModule]:
    try:
        fxg = _Tracer().trace(module)
    except Exception as exc:  # noqa: BLE001 - fx raises many types for untraceable code
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UnsupportedError(f"torch.fx cannot trace {type(module).__name__}.forward ({first}); describe the "
                               "network with neurodeploy.graph.TorchGraphBuilder instead") from None
    gm = fx.GraphModule(module, fxg)
    b = TorchGraphBuilder(module, input_shape, keep_grad)
    vals: dict[fx.Node, str] = {}
    marks: dict[fx.Node, tuple[str, str]] = {}  # read-outs: node -> (kind, graph handle)
    out_handle, found = None, None
    for node in fxg.nodes:
        where = f"{node.name} ({node.op} {_fname(node.target)})"
        for a in node.all_input_nodes:
            if a in marks and node.op != "output":
                raise UnsupportedError(f"{where}: the read-out ({marks[a][0]} over time) must be the network's last "
                                       "operation")
        tensors = [a for a in node.args if isinstance(a, fx.Node)]
        if node.op == "placeholder":
            if vals:
                raise UnsupportedError(f"{where}: forward takes more than one input; the graph has one input "
                                       "sequence")
            vals[node] = b.input
        elif node.op == "get_attr":
            raise UnsupportedError(f"{node.target}: forward reads a parameter or buffer directly; use a module "
                                   "(nn.Linear, nn.Conv2d, ...) so that the graph knows what it does")
        elif node.op == "call_module":
            if len(node.args) != 1 or node.kwargs or not isinstance(node.args[0], fx.Node):
                raise UnsupportedError(f"{node.target}: a layer must be called on one sequence and nothing else")
            vals[node] = b.module_nodes(str(node.target), module.get_submodule(str(node.target)),
                                        [vals[node.args[0]]], stepwise=False)
        elif node.op in ("call_function", "call_method"):
            f, name = node.target, str(node.target)
            if f in (operator.add, operator.iadd, torch.add) or name in ("add", "add_", "__add__"):
                if len(tensors) != 2 or len(node.args) != 2 or node.kwargs:
                    raise UnsupportedError(f"{where}: only the sum of two sequences has a graph form (no constants, "
                                           "no alpha)")
                vals[node] = b.add(vals[tensors[0]], vals[tensors[1]], name=node.name)
            elif f in (operator.mul, torch.mul) or name in ("mul", "__mul__"):
                consts = [a for a in node.args if isinstance(a, int | float) and not isinstance(a, bool)]
                if len(tensors) != 1 or len(consts) != 1 or node.kwargs:
                    raise UnsupportedError(f"{where}: only a sequence times a number has a graph form")
                vals[node] = b.scale(vals[tensors[0]], consts[0], node.name)
            elif f in (torch.relu, nn.functional.relu) or name == "relu":
                if len(tensors) != 1 or len(node.args) != 1 or node.kwargs.get("inplace", False):
                    raise UnsupportedError(f"{where}: relu takes one sequence")
                vals[node] = b._chain([(node.name, n.ReLU(meta={"source": node.name}))], [vals[tensors[0]]])
            elif f is torch.flatten or name == "flatten":
                args = list(node.args[1:]) + [node.kwargs.get(k) for k in ("start_dim", "end_dim") if k in node.kwargs]
                if args[:2] not in ([2], [2, -1]) or len(tensors) != 1:
                    raise UnsupportedError(f"{where}: only flatten(start_dim=2) of a sequence [T, B, ...] has a "
                                           "graph form")
                vals[node] = b._chain([(node.name, n.Flatten(meta={"source": node.name}))], [vals[tensors[0]]])
            elif (f is torch.mean or name == "mean") and len(tensors) == 1 and _is_dim0(node):
                marks[node] = ("mean", vals[tensors[0]])
            elif f is operator.getitem and len(node.args) == 2 and node.args[1] == -1 and len(tensors) == 1:
                marks[node] = ("last", vals[tensors[0]])
            else:
                raise UnsupportedError(f"{where}: {_fname(f)} has no graph form")
        elif node.op == "output":
            res = node.args[0]
            if not isinstance(res, fx.Node):
                raise UnsupportedError("forward must return one sequence (or its mean over time)")
            if res in marks:
                found, out_handle = marks[res]
            else:
                out_handle = vals[res]
    if found is not None and readout is not None and readout != found:
        raise ConfigError(f"readout={readout!r}, but forward ends with the {found!r} read-out over time")
    graph = b.build(out_handle, steps=steps, encoding=encoding, readout=found or readout or "mean",
                    front_end="torch.fx")
    return graph, vals, gm


def _check_shapes(graph: Graph, vals: dict[fx.Node, str], gm: fx.GraphModule, input_shape: tuple[int, ...],
                  dtype: torch.dtype) -> None:
    """Run the traced module on a small sequence and compare each value's shape with the graph's."""
    from torch.fx.passes.shape_prop import ShapeProp

    example = torch.rand(2, 2, *input_shape, dtype=dtype)
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(example)
    except Exception as exc:  # noqa: BLE001 - the user's forward may raise anything
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UnsupportedError(f"{type(gm).__name__}.forward fails on a sequence [T, B, "
                               f"{', '.join(map(str, input_shape))}]: {first}") from None
    shapes = graph.shapes()
    for node, handle in vals.items():
        meta = node.meta.get("tensor_meta")
        got = tuple(getattr(meta, "shape", ()))
        want = (2, 2, *shapes[handle])
        if got != want:
            raise UnsupportedError(f"{node.name}: the module gives shape {list(got)} where the graph has a sequence "
                                   f"{list(want)} (T = 2, B = 2); image layers on sequences belong in "
                                   "neurodeploy.nn.Stepwise")


@torch.no_grad()
def verify_graph(graph: Graph, module: nn.Module, seed: int = 0) -> float:
    """Largest difference between ``graph``'s class scores (float64 interpreter) and ``module``'s own
    (a float64 copy in eval mode) on a random input sequence; :class:`GraphError` above
    ``VERIFY_TOLERANCE``."""
    shape = graph.shapes()[graph.input_names()[0]]
    steps = int(graph.meta.get("steps", 4))
    gen = torch.Generator().manual_seed(seed)
    seq = torch.rand(steps, VERIFY_BATCH, *shape, generator=gen, dtype=torch.float64)
    ref = copy.deepcopy(module).double().eval()
    out = ref(seq)
    readout = graph.nodes[graph.output_name()].readout
    if out.dim() == seq.dim() - len(shape) + 1 and out.shape[:2] == seq.shape[:2]:  # an output sequence
        out = out.mean(0) if readout == "mean" else out[-1]
    got = run_graph(graph, seq)
    if got.shape != out.shape:
        raise GraphError(f"the graph gives class scores of shape {list(got.shape)}, the module "
                         f"{list(out.shape)}")
    diff = float((got - out).abs().max()) if got.numel() else 0.0
    if not diff <= VERIFY_TOLERANCE:
        raise GraphError(f"the traced graph computes differently from {type(module).__name__}.forward (largest "
                         f"difference {diff:.3g} on a random input); some operation is not what the graph reads")
    return diff


def graph_from_torch(module: nn.Module, input_shape: tuple[int, ...], *, steps: int, encoding: Any = "direct",
                     readout: str | None = None, method: str = "fx", keep_grad: bool = False,
                     verify: bool = True) -> Graph:
    """The float graph of a PyTorch spiking network (see the module docstring).

    Args:
        module: the network; ``forward(seq [T, B, *input_shape])``.
        input_shape: the per-step input shape (one sample, one step).
        steps: time steps ``T`` per sample (graph ``meta``).
        encoding: how samples become input sequences (an :class:`~neurodeploy.nn.Encoding`, a name
            or a table; graph ``meta``).
        readout: ``"mean"`` or ``"last"`` over time (default: what ``forward`` ends with, else
            ``"mean"``).
        method: ``"fx"`` (symbolic tracing) or ``"builder"`` (an ``nn.Sequential``, read in order).
        keep_grad: keep weights differentiable functions of the module's parameters.
        verify: compare the graph with the module's ``forward`` on a random sequence.
    """
    if not isinstance(module, nn.Module):
        raise ConfigError(f"graph_from_torch needs a torch.nn.Module, got {type(module).__name__}")
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    shape = _shape(input_shape)
    if method == "builder":
        if not isinstance(module, nn.Sequential):
            raise ConfigError(f"method='builder' reads an nn.Sequential in order; describe a "
                              f"{type(module).__name__} with TorchGraphBuilder")
        b = TorchGraphBuilder(module, shape, keep_grad)
        last = b.input
        for child_name, child in module.named_children():
            last = b.module_nodes(child_name, child, [last], stepwise=False)
        graph = b.build(last, steps=steps, encoding=encoding, readout=readout or "mean")
    else:
        _meta(steps, encoding, readout or "mean", "torch.fx", module)  # one-line errors before tracing
        graph, vals, gm = _trace(module, shape, keep_grad, steps, encoding, readout)
        dtype = next(iter(module.parameters()), torch.zeros(())).dtype
        _check_shapes(graph, vals, gm, shape, dtype if dtype.is_floating_point else torch.float32)
    if verify:
        verify_graph(graph, module)
    return graph


@torch.no_grad()
def load_graph_weights(module: nn.Module, graph: Graph) -> list[str]:
    """Copy the synapse weights and biases of ``graph`` (e.g. after training its
    :class:`~neurodeploy.models.graph_net.GraphNet`) back into the modules they came from (each
    node's ``meta["source"]``); returns the modules written. A source that ``module`` lacks, or
    whose tensors have other shapes, raises :class:`ConfigError`."""
    written = []
    for name, node in graph.nodes.items():
        if not isinstance(node, n.SYNAPSES):
            continue
        source = node.meta.get("source", name)
        try:
            target = module.get_submodule(source)
        except AttributeError:
            raise ConfigError(f"graph node {name} comes from {source!r}, which {type(module).__name__} does not "
                              "have") from None
        for field_name in ("weight", "bias"):
            value, own = getattr(node, field_name), getattr(target, field_name, None)
            if value is None and own is None:
                continue
            if value is None or own is None or tuple(own.shape) != tuple(value.shape):
                raise ConfigError(f"graph node {name}: its {field_name} does not fit {source}")
            own.copy_(value.to(own.dtype))
        written.append(source)
    return written
