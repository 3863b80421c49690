"""Read a feed-forward NIR graph into the float graph IR (:mod:`neurodeploy.graph`).

Node by node: ``Input``/``Output``; ``Affine``/``Linear`` → ``Affine``; ``Conv2d`` → ``Conv``
(any kernel, stride, padding, dilation, groups); ``AvgPool2d``/``SumPool2d``; ``Flatten`` (of all
per-sample dimensions); ``Scale``; ``Delay`` (a whole number of steps ``dt``); ``LIF``/``IF``/
``CubaLIF`` → ``LIF``/``IF``/``CubaLIF`` with the per-step factors a *convention* gives
(:func:`~neurodeploy.export.nir_conventions.to_discrete`, the same reading the importer uses);
``LI`` → ``LI`` (Euler: ``decay = 1 - dt/tau``, ``r = (dt/tau) r``). Branches and merges are kept
(a node sums its inputs, as in NIR); a graph with a cycle is refused. Files written by
neurodeploy also restore the reset mode, the MP-Init initial potential and the training settings
kept in their metadata. Parameters equal over all neurons become one float, others stay per neuron.

This does not change :func:`~neurodeploy.export.nir.import_nir` (which rebuilds a
:class:`~neurodeploy.models.SpikingNet` checkpoint).
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np
import torch

from neurodeploy.errors import FormatError, UnsupportedError
from neurodeploy.export.nir_conventions import to_discrete
from neurodeploy.export.nir_import import _resolve
from neurodeploy.export.nir_io import unpack_metadata
from neurodeploy.graph import nodes as gn
from neurodeploy.graph.ir import Edge, Graph, GraphError, output_shape


def _param(arr: Any) -> float | torch.Tensor:
    a = np.asarray(arr, dtype=np.float64)
    flat = a.ravel()
    if flat.size and np.all(flat == flat[0]):
        return float(flat[0])
    return torch.from_numpy(a.copy())


def _t(arr: Any) -> torch.Tensor:
    return torch.from_numpy(np.array(arr, dtype=np.float64))


def _pair(v: Any) -> tuple[int, int]:
    a = np.atleast_1d(np.asarray(v)).astype(int)
    return (int(a[0]), int(a[0])) if a.size == 1 else (int(a[0]), int(a[1]))


def _shape(t: Any) -> tuple[int, ...]:
    if isinstance(t, dict):
        t = next(iter(t.values()), None)
    return tuple(int(v) for v in np.atleast_1d(np.asarray(t))) if t is not None else ()


def graph_from_nir(graph: nir.NIRGraph, *, convention: str | None = None, dt: float | None = None) -> Graph:
    """The float graph of a feed-forward NIR graph (see the module docstring).

    ``convention``/``dt`` as for :func:`~neurodeploy.export.nir_import.nir_to_checkpoint`. Raises
    :class:`UnsupportedError` naming the node with no IR form, :class:`FormatError` for a malformed
    graph, :class:`~neurodeploy.errors.ConfigError` for a missing ``dt``.
    """
    if not isinstance(graph, nir.NIRGraph):
        raise FormatError(f"expected a NIR graph, got {type(graph).__name__}")
    notes: list[str] = []
    graph_meta = unpack_metadata(graph, "graph")
    ours, conv, use_dt = _resolve(graph_meta, convention, dt, notes)
    edges = [Edge(str(a), str(b)) for a, b in graph.edges]
    for e in edges:
        for end in (e.src, e.dst):
            if end not in graph.nodes:
                raise FormatError(f"NIR edge {e.src} -> {e.dst} names an unknown node {end}")
    # per-sample shapes in topological order (inputs first)
    skeleton = Graph({k: gn.Add() for k in graph.nodes}, edges)
    try:
        order = skeleton.order()
    except GraphError:
        raise UnsupportedError("the NIR graph has a cycle; only feed-forward graphs are read into the "
                               "float graph for now") from None
    nodes: dict[str, gn.Node] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for name in order:
        node = graph.nodes[name]
        kind = type(node).__name__
        ins = skeleton.inputs_of(name)
        in_shape = shapes[ins[0]] if ins else ()
        payload = unpack_metadata(node, name) if ours else None
        meta: dict[str, Any] = {"source": (payload or {}).get("stage", name), "nir": kind}
        if kind == "Input":
            new: gn.Node = gn.Input(_shape(node.input_type))
        elif kind == "Output":
            new = gn.Output("mean")
        elif kind in ("Affine", "Linear"):
            bias = getattr(node, "bias", None)
            new = gn.Affine(_t(node.weight), None if bias is None else _t(bias))
        elif kind == "Conv2d":
            pad = node.padding
            if isinstance(pad, str):
                if pad == "valid":
                    pad = (0, 0)
                else:
                    kh, kw = np.asarray(node.weight).shape[2:]
                    d = _pair(node.dilation)
                    if (d[0] * (kh - 1)) % 2 or (d[1] * (kw - 1)) % 2 or _pair(node.stride) != (1, 1):
                        raise UnsupportedError(f"{name}: asymmetric 'same' padding has no float-graph form")
                    pad = (d[0] * (kh - 1) // 2, d[1] * (kw - 1) // 2)
            bias = getattr(node, "bias", None)
            b = None if bias is None or np.ndim(bias) == 0 else _t(bias)
            new = gn.Conv(_t(node.weight), b, _pair(node.stride), _pair(pad), _pair(node.dilation),
                          int(node.groups))
        elif kind in ("AvgPool2d", "SumPool2d"):
            cls = gn.AvgPool if kind == "AvgPool2d" else gn.SumPool
            new = cls(_pair(node.kernel_size), _pair(node.stride), _pair(node.padding))
        elif kind == "Flatten":
            ndim = len(in_shape)
            start, end = int(node.start_dim) % max(ndim, 1), int(node.end_dim) % max(ndim, 1)
            if (start, end) != (0, max(ndim - 1, 0)):
                raise UnsupportedError(f"{name}: only a flatten of all per-sample dimensions has a float-graph form")
            new = gn.Flatten()
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
            dn = to_discrete(node, use_dt, conv, name, in_shape)
            if np.any(dn.drive != 0):
                raise UnsupportedError(f"{name}: a constant drive (v_leak != 0) has no float-graph form")
            reset = (payload or {}).get("reset", dn.reset)
            v_init = 0.0
            cfg = (payload or {}).get("neuron")
            state = (payload or {}).get("state") or {}
            if isinstance(cfg, dict):
                meta.update(neuron=cfg, state=state, surrogate=cfg.get("surrogate"), scale_mode=cfg.get("scale"))
                if cfg.get("mp_init"):
                    v_init = float(state.get("mp_mean", 0.0))
            th = _param(dn.threshold)
            if dn.kind == "if":
                new = gn.IF(th, _param(dn.gain), reset, v_init)
            elif dn.kind == "lif":
                new = gn.LIF(_param(dn.decay), th, _param(dn.gain), reset, v_init)
            else:
                new = gn.CubaLIF(_param(dn.current_decay), _param(dn.decay), th, _param(dn.gain), reset, v_init)
        elif kind == "LI":
            tau = np.asarray(node.tau, dtype=np.float64)
            if np.any(np.asarray(node.v_leak) != 0):
                raise UnsupportedError(f"{name}: a constant drive (v_leak != 0) has no float-graph form")
            k = use_dt / tau
            new = gn.LI(_param(np.broadcast_to(1.0 - k, in_shape)), _param(np.broadcast_to(k * node.r, in_shape)))
        else:
            raise UnsupportedError(f"{name}: NIR {kind} has no float-graph form")
        new.meta.update(meta)
        nodes[name] = new
        shapes[name] = new.shape if isinstance(new, gn.Input) else output_shape(name, new, in_shape)
    out = Graph({k: nodes[k] for k in order}, edges,
                {"dt": use_dt, "convention": conv.name, "notes": notes,
                 **({k: graph_meta[k] for k in ("steps", "encoding", "spec") if k in graph_meta} if ours else {}),
                 **({"readout": graph_meta["readout"]["kind"]} if ours else {})})
    try:
        return out.validate()
    except GraphError as exc:
        raise UnsupportedError(f"the NIR graph does not form a valid float graph: {exc}") from None
