"""Read a NIR graph into the float graph IR (:mod:`neurodeploy.graph`).

Node by node: ``Input``/``Output``; ``Affine``/``Linear`` → ``Affine``; ``Conv2d`` → ``Conv``
(any kernel, stride, padding, dilation, groups); ``AvgPool2d``/``SumPool2d``; ``Flatten`` (of all
per-sample dimensions); ``Scale``; ``Delay`` (a whole number of steps ``dt``); ``LIF``/``IF``/
``CubaLIF`` → ``LIF``/``IF``/``CubaLIF`` with the per-step factors a *convention* gives
(:func:`~neurodeploy.export.nir_conventions.to_discrete`, the same reading the importer uses),
per-neuron or per-layer; ``LI`` → ``LI`` and ``I`` → ``LI`` with decay 1 (read-outs). A constant
drive ``v_leak`` becomes a ``Bias`` node in front of the neuron; snnTorch's delayed subtractive reset
(the threshold subtracted after the decay) becomes a recurrent ``Scale`` of the neuron's own spikes
(``-V (1 - decay) / r``, exact in real arithmetic); a library's initial potential (Norse: ``v_leak``)
the neuron's ``v_init``.

Branches and merges are kept (a node sums its inputs, as in NIR). Nested graphs (what snnTorch
writes for its recurrent layers) are flattened, their names joined with ``.``. Cycles are
recurrent: in each cycle (found depth-first from the input) the edge that enters a neuron carries a
one-step delay, which is how the libraries that write recurrent NIR run it (the potential at step
``t`` sees the spikes of step ``t - 1`` through the recurrent synapse). A recurrent synapse's bias
reaches the neuron from the first step on in those libraries (their synapse sees zero spikes at
``t = 0``), so it moves into a ``Bias`` node in front of the neuron. Batch and time dimensions in
the input type (Sinabs, Rockpool and SpikingJelly write them) are dropped: the per-sample shape
is the longest trailing part of the input type that the graph's layers accept.

Files written by neurodeploy also restore the reset mode, the MP-Init initial potential and the
training settings kept in their metadata. Parameters equal over all neurons become one float,
others stay per neuron.
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np
import torch

from neurodeploy.errors import FormatError, NeurodeployError, UnsupportedError
from neurodeploy.export.nir_conventions import LayerResets, to_discrete, unfold_gain
from neurodeploy.export.nir_import import _resolve, padding_of
from neurodeploy.export.nir_io import check_edges, unpack_metadata
from neurodeploy.graph import nodes as gn
from neurodeploy.graph.ir import Edge, Graph, GraphError, output_shape


class _ParamError(FormatError):
    """A parameter that is not a finite real number (the node's name is added where it is read)."""


def _finite(arr: Any) -> np.ndarray:
    """``arr`` as float64; parameters that are not numbers, complex (casting would drop the
    imaginary part), NaN or infinite change every spike downstream: refused."""
    raw = np.asarray(arr)
    if raw.dtype.kind == "c":
        raise _ParamError(f"a parameter holds complex values ({raw.dtype}); a network's parameters are real")
    if raw.dtype.kind not in "biuf":
        raise _ParamError(f"a parameter is not numeric ({raw.dtype})")
    a = np.array(raw, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise _ParamError("a parameter holds NaN or infinite values")
    return a


def _param(arr: Any) -> float | torch.Tensor:
    a = _finite(arr)
    flat = a.ravel()
    if flat.size and np.all(flat == flat[0]):
        return float(flat[0])
    return torch.from_numpy(a.copy())


def _t(arr: Any) -> torch.Tensor:
    return torch.from_numpy(_finite(arr))


def _ints(v: Any, what: str) -> np.ndarray:
    """``v`` as a 1-D array of integers, or a one-line :class:`FormatError` naming ``what``."""
    try:
        a = np.atleast_1d(np.asarray(v)).ravel()
        whole = a.dtype.kind == "f" and bool(np.all(np.isfinite(a))) and bool(np.all(a == np.round(a)))
        if a.dtype.kind not in "iu" and not whole:
            raise ValueError
        return a.astype(np.int64)
    except (TypeError, ValueError, OverflowError):
        raise FormatError(f"NIR {what} {v!r} is not a list of integers") from None


def _pair(v: Any) -> tuple[int, int]:
    a = _ints(v, "stride/padding/dilation")
    if a.size == 0:
        raise FormatError(f"NIR stride/padding/dilation {v!r} is empty")
    return (int(a[0]), int(a[0])) if a.size == 1 else (int(a[0]), int(a[1]))


def _shape(t: Any) -> tuple[int, ...]:
    if isinstance(t, dict):
        t = next(iter(t.values()), None)
    return tuple(int(v) for v in _ints(t, "shape")) if t is not None else ()


def flatten_nir(graph: nir.NIRGraph, prefix: str = "") -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The nodes and edges of ``graph`` with nested graphs inlined: a nested graph's nodes are
    named ``sub.node``; its ``Input`` and ``Output`` nodes become pass-through nodes (``Identity``)
    unless they are the outer graph's."""
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    subs: dict[str, nir.NIRGraph] = {}
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            inner_nodes, inner_edges = flatten_nir(node, f"{prefix}{name}.")
            for k, v in inner_nodes.items():
                if isinstance(v, nir.Input | nir.Output) and k.count(".") == prefix.count(".") + 1:
                    v = _Pass()
                nodes[k] = v
            edges.extend(inner_edges)
            subs[name] = node
        else:
            nodes[f"{prefix}{name}"] = node

    def ends(name: str, role: type) -> list[str]:
        head, _, tail = str(name).partition(".")
        if head in subs and not tail:
            found = [f"{prefix}{head}.{k}" for k, v in subs[head].nodes.items() if isinstance(v, role)]
            if not found:
                raise FormatError(f"NIR sub-graph {head} has no {role.__name__} node")
            return found
        return [f"{prefix}{name}"]

    for edge in graph.edges:
        try:
            a, b = (str(v) for v in edge)
        except (TypeError, ValueError):
            raise FormatError(f"malformed NIR edge {edge!r}") from None
        for src in ends(a, nir.Output):
            for dst in ends(b, nir.Input):
                edges.append((src, dst))
    return nodes, edges


class _Pass:
    """A nested graph's input or output: passes its input on."""


_NEURONS = ("LIF", "IF", "CubaLIF", "LI", "I", "CubaLI")


def _recurrent_edges(nodes: dict[str, Any], edges: list[tuple[str, str]], starts: list[str]) -> set[tuple[str, str]]:
    """The edges that carry the one-step delay of each cycle: depth-first from ``starts``, each
    cycle found gets its delay on the edge that enters a neuron (the synapses in the loop work on
    the spikes of the step before), else on the edge closing it."""
    names = list(nodes)
    succ: dict[str, list[str]] = {k: [] for k in names}
    for a, b in edges:
        succ[a].append(b)
    state: dict[str, int] = {}
    chosen: set[tuple[str, str]] = set()
    back: set[tuple[str, str]] = set()
    for root in starts + names:
        if root in state:
            continue
        stack = [(root, iter(succ[root]))]
        state[root] = 1
        while stack:
            k, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[k] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                back.add((k, nxt))
                path = [s for s, _ in stack]
                loop = path[path.index(nxt):] + [nxt]
                cycle = list(zip(loop[:-1], loop[1:], strict=True))
                entering = next((e for e in cycle if type(nodes[e[1]]).__name__ in _NEURONS), None)
                if entering is None:
                    raise UnsupportedError(f"the NIR cycle {' -> '.join(loop)} contains no neuron, so nothing "
                                           "says at which step its signal comes back; recurrence must pass "
                                           "through a neuron")
                chosen.add(entering)
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
    rest = [e for e in edges if e not in chosen]
    try:
        Graph({k: gn.Add() for k in names}, [Edge(a, b) for a, b in rest]).order()
    except GraphError:
        return back
    return chosen


def _input_candidates(t: Any) -> list[tuple[int, ...]]:
    full = _shape(t)
    return [full[i:] for i in range(len(full)) if all(v >= 1 for v in full[i:])]


def graph_from_nir(graph: nir.NIRGraph, *, convention: str | None = None, dt: float | None = None,
                   reset: str | None = None, single_spike: bool = False, norm_input: bool | None = None) -> Graph:
    """The float graph of a NIR graph (see the module docstring).

    ``convention``/``dt`` as for :func:`~neurodeploy.export.nir_import.nir_to_checkpoint`;
    ``reset`` decides the reset where the convention's files do not record it (snnTorch, Sinabs:
    ``subtract`` or ``zero``; one for every spiking layer, or a comma-separated list with one per
    spiking layer in the graph's order); ``single_spike`` says that a Sinabs or
    Rockpool network used single-spike neurons; ``norm_input`` whether a Sinabs LIF scaled its
    input by ``1 - decay``. Raises :class:`UnsupportedError` naming the node
    with no IR form or what the file leaves open (and the option that decides it),
    :class:`FormatError` for a malformed graph, :class:`~neurodeploy.errors.ConfigError` for a
    missing or bad option.
    """
    if not isinstance(graph, nir.NIRGraph):
        raise FormatError(f"expected a NIR graph, got {type(graph).__name__}")
    check_edges(graph)
    notes: list[str] = []
    graph_meta = unpack_metadata(graph, "graph")
    ours, conv, use_dt = _resolve(graph_meta, convention, dt, notes, reset)
    nir_nodes, raw_edges = flatten_nir(graph)
    for a, b in raw_edges:
        for end in (a, b):
            if end not in nir_nodes:
                raise FormatError(f"NIR edge {a} -> {b} names an unknown node {end}")
    inputs = [k for k, v in nir_nodes.items() if isinstance(v, nir.Input)]
    if len(inputs) != 1:
        raise UnsupportedError(f"the NIR graph has {len(inputs)} inputs; neurodeploy reads graphs with one")
    if not any(isinstance(v, nir.Output) for v in nir_nodes.values()):
        raise UnsupportedError("the NIR graph has no Output node, so nothing says which activity is the network's "
                               "output; add one")
    back = _recurrent_edges(nir_nodes, raw_edges, inputs)
    edges = [Edge(a, b, (a, b) in back) for a, b in dict.fromkeys(raw_edges)]
    candidates = _input_candidates(nir_nodes[inputs[0]].input_type)
    first_error: _ShapeError | None = None
    for shape in candidates:
        try:
            out = _build(nir_nodes, edges, shape, graph_meta, ours, conv, use_dt, (reset, single_spike, norm_input),
                         notes)
        except _ShapeError as exc:
            first_error = first_error or exc
            continue
        if shape != candidates[0]:
            out.meta["notes"].append(f"input type {candidates[0]}: leading (batch/time) dimensions dropped, "
                                     f"per-sample shape {shape}")
        return out
    raise UnsupportedError(str(first_error) if first_error else "the NIR graph's input type is empty") from None


class _ShapeError(NeurodeployError):
    """A layer does not accept the shape that reaches it (try a shorter input shape)."""


def _build(nir_nodes: dict[str, Any], edges: list[Edge], in_type: tuple[int, ...], graph_meta: Any, ours: bool,
           conv: Any, use_dt: float, asked: tuple[Any, Any, Any], notes: list[str]) -> Graph:
    reset, single_spike, norm_input = asked
    resets = LayerResets(reset)
    notes = list(notes)
    skeleton = Graph({k: gn.Add() for k in nir_nodes}, edges)
    try:
        order = skeleton.order()
    except GraphError as exc:
        raise FormatError(f"the NIR graph cannot be ordered: {exc}") from None
    nodes: dict[str, gn.Node] = {}
    extra_edges: list[Edge] = []
    front: dict[str, str] = {}  # neuron name -> the auxiliary node its inputs now enter
    shapes: dict[str, tuple[int, ...]] = {}
    dropped = len(_shape(nir_nodes[next(k for k in order if isinstance(nir_nodes[k], nir.Input))].input_type)) \
        - len(in_type)
    for name in order:
        try:
            node = nir_nodes[name]
            kind = type(node).__name__
            ins = skeleton.inputs_of(name)
            if not ins and kind != "Input":
                raise UnsupportedError(f"{name}: NIR {kind} has no input edge from the graph's input side")
            in_shape = shapes[ins[0]] if ins else ()
            payload = unpack_metadata(node, name) if ours else None
            meta: dict[str, Any] = {"source": (payload or {}).get("stage", name), "nir": kind}
            aux: list[tuple[str, gn.Node]] = []
            if kind == "Input":
                new: gn.Node = gn.Input(in_type)
            elif kind == "Output":
                _check_output_type(node, name, in_shape)
                kept = (graph_meta.get("readout") or {}).get("kind") if ours and graph_meta.get("network") == "graph" \
                    else None
                new = gn.Output(kept if kept in gn.READOUTS else "mean")
            elif kind in ("_Pass", "Identity"):
                new = gn.Add()
            elif kind in ("Affine", "Linear"):
                bias = getattr(node, "bias", None)
                w, bias = _unfolded(node, payload)
                w = _t(w)
                if w.numel() == 0:
                    raise FormatError(f"{name}: weight of shape {tuple(w.shape)} is empty")
                if len(in_shape) > 1 and w.dim() == 2 and int(np.prod(in_shape)) == w.shape[1]:
                    raise _ShapeError(f"{name}: {kind} takes {w.shape[1]} features; the graph does not accept "
                                      f"a {in_shape} input")
                new = gn.Affine(w, None if bias is None else _t(bias))
            elif kind == "Conv2d":
                pad = padding_of(node)
                if isinstance(pad, str):
                    if pad == "valid":
                        pad = (0, 0)
                    else:
                        kh, kw = np.asarray(node.weight).shape[2:]
                        d = _pair(node.dilation)
                        if (d[0] * (kh - 1)) % 2 or (d[1] * (kw - 1)) % 2 or _pair(node.stride) != (1, 1):
                            raise UnsupportedError(f"{name}: asymmetric 'same' padding has no float-graph form")
                        pad = (d[0] * (kh - 1) // 2, d[1] * (kw - 1) // 2)
                w, bias = _unfolded(node, payload)
                if np.size(w) == 0:
                    raise FormatError(f"{name}: weight of shape {np.shape(w)} is empty")
                b = None if bias is None or np.ndim(bias) == 0 else _t(bias)
                new = gn.Conv(_t(w), b, _pair(node.stride), _pair(pad), _pair(node.dilation),
                              int(np.asarray(node.groups).ravel()[0]))
            elif kind in ("AvgPool2d", "SumPool2d"):
                cls = gn.AvgPool if kind == "AvgPool2d" else gn.SumPool
                new = cls(_pair(node.kernel_size), _pair(node.stride), _pair(node.padding))
            elif kind == "Flatten":
                new = _flatten(node, name, in_shape, dropped)
            elif kind == "Scale":
                new = gn.Scale(_param(node.scale))
            elif kind == "Delay":
                steps = np.asarray(node.delay, dtype=np.float64) / use_dt
                whole = np.round(steps)
                if steps.size == 0 or not np.allclose(steps, whole, rtol=1e-9) or np.any(whole != whole.flat[0]) \
                        or whole.flat[0] < 1:
                    raise UnsupportedError(f"{name}: a delay that is not one whole number (>= 1) of steps dt has no "
                                           "float-graph form")
                new = gn.Delay(int(whole.flat[0]))
            elif kind in ("LIF", "IF", "CubaLIF"):
                dn = to_discrete(node, use_dt, conv, name, in_shape, reset=None if ours else resets.take(name),
                                 single_spike=single_spike, norm_input=norm_input)
                notes.extend(x for x in dn.notes if x not in notes)
                mode = (payload or {}).get("reset", dn.reset)
                v_init = _param(np.broadcast_to(dn.v_init, in_shape))
                cfg = (payload or {}).get("neuron")
                state = (payload or {}).get("state") or {}
                if isinstance(cfg, dict):
                    meta.update(neuron=cfg, state=state, surrogate=cfg.get("surrogate"), scale_mode=cfg.get("scale"))
                    if cfg.get("mp_init"):
                        v_init = float(state.get("mp_mean", 0.0))
                th = _param(dn.threshold)
                gain = np.broadcast_to(1.0 if (payload or {}).get("gain_in_synapse") else dn.gain, in_shape)
                if np.any(dn.drive != 0):
                    if np.any(gain == 0):
                        raise UnsupportedError(f"{name}: a constant drive (v_leak) on a neuron with input gain 0 "
                                               "has no float-graph form")
                    aux.append((f"{name}.leak", gn.Bias(_t(np.broadcast_to(dn.drive / gain, in_shape)))))
                if dn.kind == "if":
                    new = gn.IF(th, _param(gain), mode, v_init, dn.strict)
                elif dn.kind == "lif":
                    new = gn.LIF(_param(dn.decay), th, _param(gain), mode, v_init, dn.strict)
                else:
                    new = gn.CubaLIF(_param(dn.current_decay), _param(dn.decay), th, _param(gain), mode, v_init,
                                     dn.strict)
                if dn.reset_after_decay:
                    if np.any(gain == 0):
                        raise UnsupportedError(f"{name}: a delayed subtractive reset on a neuron with input gain 0 has "
                                               "no float-graph form")
                    v = np.broadcast_to(dn.threshold, in_shape)
                    if dn.kind == "cuba":
                        c = -v * (1.0 - np.broadcast_to(dn.decay, in_shape)) / gain
                        fi = np.broadcast_to(dn.current_decay, in_shape)
                        extra_edges.extend(_reset_loop(nodes, name, c, None))
                        if np.any(fi != 0):
                            extra_edges.extend(_reset_loop(nodes, name, -fi * c, 1))
                    else:
                        c = -v * (1.0 - np.broadcast_to(dn.decay, in_shape)) / gain
                        extra_edges.extend(_reset_loop(nodes, name, c, None))
            elif kind in ("LI", "I"):
                new = _integrator(node, kind, name, in_shape, use_dt, conv, aux, norm_input)
            else:
                raise UnsupportedError(f"{name}: NIR {kind} has no float-graph form")
            new.meta.update(meta)
            prev = None
            for aux_name, aux_node in aux:
                aux_node.meta.update({"source": name, "nir": kind, "role": aux_name.rsplit(".", 1)[1]})
                nodes[aux_name] = aux_node
                shapes[aux_name] = in_shape
                if prev is not None:
                    extra_edges.append(Edge(prev, aux_name))
                prev = aux_name
            if prev is not None:
                front[name] = aux[0][0]
                extra_edges.append(Edge(prev, name))
            nodes[name] = new
            try:
                shapes[name] = new.shape if isinstance(new, gn.Input) else output_shape(name, new, in_shape)
            except GraphError as exc:
                raise _ShapeError(f"{exc}; the graph does not accept the input type's trailing shape") from None
            for other in ins[1:]:
                if shapes[other] != in_shape:
                    raise UnsupportedError(f"{name}: its inputs have different shapes ({in_shape}, {shapes[other]})")
        except _ParamError as exc:  # a parameter's own check does not know the node
            raise FormatError(f"{name}: {exc}") from None
    resets.finish(lambda a, b: b in _downstream(edges, a))
    if resets.note():
        notes.append(resets.note())
    all_edges = [Edge(e.src, front.get(e.dst, e.dst), e.recurrent) for e in edges] + extra_edges
    all_edges += _move_recurrent_biases(nodes, all_edges, shapes)
    readout = graph_meta["readout"]["kind"] if ours and isinstance(graph_meta.get("readout"), dict) else None
    out = Graph(nodes, all_edges,
                {"dt": use_dt, "convention": conv.name, "notes": notes,
                 **({k: graph_meta[k] for k in ("steps", "encoding", "spec") if k in graph_meta} if ours else {}),
                 **({"readout": readout} if readout else {})})
    try:
        return out.validate()
    except GraphError as exc:
        raise UnsupportedError(f"the NIR graph does not form a valid float graph: {exc}") from None


def _downstream(edges: list[Edge], start: str) -> set[str]:
    """The nodes a path of forward (not recurrent) edges leads to from ``start``."""
    succ: dict[str, list[str]] = {}
    for e in edges:
        if not e.recurrent:
            succ.setdefault(e.src, []).append(e.dst)
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in succ.get(todo.pop(), []):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _check_output_type(node: Any, name: str, shape: tuple[int, ...]) -> None:
    """An ``Output`` whose declared type cannot hold the activity reaching it leaves open which
    network the file means: refused. An empty type says nothing; leading axes (batch or time, as
    some libraries write them) and another layout of the same values (flat) are accepted."""
    declared = _shape(node.output_type)
    size = int(np.prod(shape))
    if declared and not any(int(np.prod(declared[k:])) == size for k in range(len(declared))):
        raise UnsupportedError(f"{name}: the Output's type {declared} does not match the activity reaching it "
                               f"{shape}; the file contradicts itself")


def _unfolded(node: Any, payload: dict[str, Any] | None) -> tuple[Any, Any]:
    """A synapse's weight and bias, with the input gain neurodeploy's exporter folded in taken out."""
    g = (payload or {}).get("input_gain")
    bias = getattr(node, "bias", None)
    if g is None:
        return node.weight, bias
    return unfold_gain(node.weight, float(g)), None if bias is None else unfold_gain(bias, float(g))


def _move_recurrent_biases(nodes: dict[str, gn.Node], edges: list[Edge],
                           shapes: dict[str, tuple[int, ...]]) -> list[Edge]:
    """A synapse read only through a recurrent edge gives its bias from the first step on: move it
    into a ``Bias`` node in front of the receiving node (whose inputs are redirected to it)."""
    added: list[Edge] = []
    for src in list(nodes):
        node = nodes[src]
        outs = [e for e in edges if e.src == src]
        if not isinstance(node, gn.SYNAPSES) or node.bias is None or not outs or \
                not all(e.recurrent for e in outs) or len(outs) != 1:
            continue
        dst = outs[0].dst
        bias = node.bias if isinstance(node, gn.Affine) else node.bias.reshape(-1, 1, 1)
        name = f"{dst}.recurrent_bias"
        nodes[name] = gn.Bias(bias.expand(shapes[src]).clone(), meta={"source": src, "role": "recurrent_bias"})
        node.bias = None
        for i, e in enumerate(edges):
            if e.dst == dst:
                edges[i] = Edge(e.src, name, e.recurrent)
        added.append(Edge(name, dst))
    return added


def _reset_loop(nodes: dict[str, gn.Node], name: str, scale: np.ndarray, delay: int | None) -> list[Edge]:
    """Feed ``scale * S[t - 1]`` (``delay``: ``S[t - 1 - delay]``) of neuron ``name`` back into it."""
    edges = []
    src = name
    if delay:
        k = f"{name}.reset_delay"
        nodes[k] = gn.Delay(delay, meta={"source": name, "role": "reset"})
        edges.append(Edge(src, k))
        src = k
    k = f"{name}.reset" + ("_late" if delay else "")
    nodes[k] = gn.Scale(_param(scale), meta={"source": name, "role": "reset"})
    edges += [Edge(src, k), Edge(k, name, True)]
    return edges


def _integrator(node: Any, kind: str, name: str, in_shape: tuple[int, ...], dt: float, conv: Any,
                aux: list[tuple[str, gn.Node]], norm_input: bool | None) -> gn.LI:
    """NIR ``LI`` (``tau dv/dt = v_leak - v + r I``) or ``I`` (``dv/dt = r I``) as a read-out."""
    r = np.broadcast_to(np.asarray(node.r, dtype=np.float64), in_shape)
    if kind == "I":
        gain = dt * r if conv.if_gain == "euler" else np.ones(in_shape)
        return gn.LI(1.0, _param(gain))
    tau = np.broadcast_to(np.asarray(node.tau, dtype=np.float64), in_shape)
    if conv.tau == "dt_s":
        tau = tau / dt
    if not (tau > 0).all():
        raise FormatError(f"{name}: tau must be positive")
    decay = np.exp(-dt / tau) if conv.decay == "exp" else 1.0 - dt / tau
    if (decay < 0).any():
        raise UnsupportedError(f"{name}: time constant {tau.min():g} s is shorter than the step dt = {dt:g} s "
                               f"(convention {conv.name}); pass the dt the file was made for")
    k = dt / tau if conv.decay == "euler" else 1.0 - decay
    if conv.lif_gain == "ask" and norm_input is None:  # Sinabs ExpLeak: norm_input False by default
        norm_input = False
    if conv.li_gain == "decay":  # Rockpool's ExpSyn: i = beta (i + I); r (tau beta / dt) unused
        gain = decay
    else:
        gain = k * r if conv.lif_gain == "euler" else \
            (k if conv.lif_gain == "dt_over_tau" or (conv.lif_gain == "ask" and norm_input) else np.ones(in_shape))
    v_leak = np.broadcast_to(np.asarray(node.v_leak, dtype=np.float64), in_shape)
    if np.any(v_leak != 0):
        if np.any(gain == 0):
            raise UnsupportedError(f"{name}: a constant drive (v_leak) with input gain 0 has no float-graph form")
        aux.append((f"{name}.leak", gn.Bias(_t(k * v_leak / gain))))
    return gn.LI(_param(decay), _param(np.broadcast_to(gain, in_shape)))


def _flatten(node: Any, name: str, in_shape: tuple[int, ...], dropped: int) -> gn.Flatten:
    ndim = len(in_shape)
    start, end = int(node.start_dim), int(node.end_dim)
    own = getattr(node, "input_type", None)
    own_dims = len(_shape(own)) if own is not None else 0
    shift = own_dims - ndim if own_dims > ndim else (1 if dropped and start >= 1 else 0)
    start = (start - shift) if start >= 0 else start
    end = (end - shift) if end >= 0 else end
    start, end = start % max(ndim, 1), end % max(ndim, 1)
    if (start, end) != (0, max(ndim - 1, 0)):
        raise UnsupportedError(f"{name}: only a flatten of all per-sample dimensions has a float-graph form")
    return gn.Flatten()
