"""NIR export and import of TTFS networks (:class:`~neurodeploy.ttfs.network.TTFSNetwork`).

NIR has no time-to-first-spike neuron, so a TTFS network is written with NIR's nearest primitives
and everything NIR cannot say under ``metadata["neurodeploy"]`` (JSON, as in
:mod:`neurodeploy.export.nir`):

* ``Input`` (the network's input shape) → per stage: ``Affine`` (dense synapses: ``W`` and the
  bias-like ``D``) or ``Conv2d`` (``W``; ``D`` per channel as the bias, a per-position ``D`` in the
  node's metadata, ``bias``), then for a spiking layer an ``IF`` node with ``v_threshold = L_n``
  whose metadata names the real neuron (``neuron``: ``ttfs_b1`` or ``ttfs_alpha1``, ``window``
  ``L_n``, and the rule: one spike at the first ``t`` in ``[t_min, t_min + L_n)`` where the
  potential reaches ``L_n - D``); ``SumPool2d`` for a time pool (metadata ``pool``: the earliest
  spike per window, the latest for ``min_channels``; padding takes no part); ``Flatten``;
  ``Output`` after the read-out synapse (its potential at the end of the last window is the
  logit);
* on the graph: ``format`` (``neurodeploy.nir``), ``version``, ``network`` (``"ttfs"``),
  ``variant``, ``input_shape``, ``input_range``, ``windows`` (every ``L_n``), ``time`` (the timing
  rule), ``source``.

Every node and the graph carry the ``digest`` of :mod:`neurodeploy.export.nir_io`; floats are
written in float64 and JSON floats round-trip exactly, so :func:`nir_to_ttfs` gives back the same
network (same parameters, same windows, same spike times).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch

from neurodeploy.errors import FormatError
from neurodeploy.export.nir_io import (
    FORMAT_TAG,
    FORMAT_VERSION,
    check_digest,
    pack_metadata,
    read_nir,
    seal,
    unpack_metadata,
    write_nir,
)
from neurodeploy.ttfs.network import DTYPE, Flatten, Synapse, TimePool, TTFSNetwork

NETWORK_KIND = "ttfs"
TIME_RULE = ("inputs x in [0, 1] spike at t = 1 - x (x = 0: silent) in the input window [0, 1]; "
             "spiking layer n fires in [t_min_n, t_min_n + L_n), t_min_1 = 1, "
             "t_min_(n+1) = t_min_n + L_n; each input spike adds its weight to a constant current")


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64).copy()


def ttfs_to_nir(net: TTFSNetwork, source: str | None = None) -> nir.NIRGraph:
    """The NIR graph of ``net`` (see the module docstring)."""
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array(net.input_shape))}
    order = ["input"]
    shape = tuple(net.input_shape)
    windows = [float(w) for w in net.windows]
    n = 0
    for i, stage in enumerate(net.stages):
        if isinstance(stage, Synapse):
            w = _np(stage.weight)
            d = _np(stage.bias)
            meta: dict[str, Any] = {"stage": i, "in_shape": list(stage.in_shape),
                                    "out_shape": list(stage.out_shape)}
            if stage.kind == "dense":
                node = nir.Affine(weight=w, bias=d, metadata=pack_metadata(meta))
                name = f"s{i}_affine"
            else:
                per_channel = d.ndim == 1
                if not per_channel:
                    meta["bias"] = d.tolist()
                    meta["bias_shape"] = list(d.shape)
                node = nir.Conv2d(input_shape=tuple(int(v) for v in stage.in_shape[1:]), weight=w,
                                  stride=stage.stride, padding=stage.padding, dilation=1,
                                  groups=1, bias=d if per_channel else np.zeros(w.shape[0]),
                                  metadata=pack_metadata(meta))
                name = f"s{i}_conv"
            nodes[name] = node
            order.append(name)
            shape = tuple(stage.out_shape) if stage.out_shape else (int(w.shape[0]),)
            if stage.spiking:
                rule = (f"one spike at the first t in [t_min, t_min + {windows[n]!r}) where the "
                        f"potential reaches {windows[n]!r} - D ({net.variant} ramp from t_min)")
                neuron = nir.IF(r=np.ones(shape), v_threshold=np.full(shape, windows[n]),
                                metadata=pack_metadata({"stage": i, "neuron": f"ttfs_{net.variant}",
                                                        "window": windows[n], "rule": rule}))
                nodes[f"s{i}_if"] = neuron
                order.append(f"s{i}_if")
                n += 1
        elif isinstance(stage, TimePool):
            meta = {"stage": i, "pool": {"rule": "earliest spike per window; min_channels: latest",
                                         "channels": stage.channels,
                                         "min_channels": list(stage.min_channels),
                                         "padding": list(stage.padding)}}
            node = nir.SumPool2d(kernel_size=np.array(stage.kernel), stride=np.array(stage.stride),
                                 padding=np.array(stage.padding), metadata=pack_metadata(meta))
            nodes[f"s{i}_pool"] = node
            order.append(f"s{i}_pool")
        elif isinstance(stage, Flatten):
            node = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1,
                               metadata=pack_metadata({"stage": i}))
            shape = (int(np.prod(shape)),)
            nodes[f"s{i}_flatten"] = node
            order.append(f"s{i}_flatten")
    nodes["output"] = nir.Output(output_type=np.array(shape))
    order.append("output")
    edges = list(zip(order[:-1], order[1:], strict=True))
    graph_meta = {"format": FORMAT_TAG, "version": FORMAT_VERSION, "network": NETWORK_KIND,
                  "variant": net.variant, "input_shape": list(net.input_shape),
                  "input_range": [float(v) for v in net.input_range], "windows": windows,
                  "time": TIME_RULE, "source": source}
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=pack_metadata(graph_meta),
                         type_check=False)
    for node in graph.nodes.values():
        seal(node)
    seal(graph)
    return graph


def is_ttfs_nir(graph: nir.NIRGraph) -> bool:
    """Whether ``graph`` is a TTFS network written by :func:`ttfs_to_nir`."""
    meta = unpack_metadata(graph, "graph") or {}
    return meta.get("format") == FORMAT_TAG and meta.get("network") == NETWORK_KIND


def _chain(graph: nir.NIRGraph) -> list[str]:
    nxt: dict[str, str] = {}
    for a, b in graph.edges:
        if a in nxt:
            raise FormatError(f"NIR node {a} branches; a TTFS network is a chain")
        nxt[str(a)] = str(b)
    order, k = ["input"], "input"
    while k in nxt:
        k = nxt[k]
        if k in order:
            raise FormatError("the NIR graph has a cycle; a TTFS network is a chain")
        order.append(k)
    if order[-1] != "output" or len(order) != len(graph.nodes):
        raise FormatError("the NIR graph is not one chain from input to output")
    return order


def nir_to_ttfs(graph: nir.NIRGraph) -> TTFSNetwork:
    """The TTFS network a graph written by :func:`ttfs_to_nir` holds (checksums checked)."""
    meta = unpack_metadata(graph, "graph")
    if not meta or meta.get("network") != NETWORK_KIND:
        raise FormatError("the NIR graph is not a neurodeploy TTFS network (graph metadata "
                          "'network' is not 'ttfs')")
    check_digest(graph, meta, "graph")
    stages: list[Any] = []
    spiking_next = False
    try:
        for name in _chain(graph)[1:-1]:
            node = graph.nodes[name]
            payload = unpack_metadata(node, name)
            check_digest(node, payload, name)
            if isinstance(node, nir.Affine | nir.Conv2d):
                stage_kind = "dense" if isinstance(node, nir.Affine) else "conv"
                w = torch.from_numpy(np.asarray(node.weight, dtype=np.float64))
                if "bias" in payload:
                    d = torch.tensor(payload["bias"], dtype=DTYPE).reshape(payload["bias_shape"])
                else:
                    d = torch.from_numpy(np.asarray(node.bias, dtype=np.float64))
                kw: dict[str, Any] = {}
                if stage_kind == "conv":
                    kw = {"stride": tuple(int(v) for v in np.ravel(node.stride)),
                          "padding": tuple(int(v) for v in np.ravel(node.padding))}
                stages.append(Synapse(stage_kind, w, d, spiking=False,
                                      in_shape=tuple(payload["in_shape"]),
                                      out_shape=tuple(payload["out_shape"]), **kw))
                spiking_next = True
            elif isinstance(node, nir.IF):
                if not spiking_next:
                    raise FormatError(f"{name}: a TTFS neuron must follow a synapse node")
                stages[-1].spiking = True
                spiking_next = False
            elif isinstance(node, nir.SumPool2d):
                pool = payload["pool"]
                stages.append(TimePool(tuple(int(v) for v in np.ravel(node.kernel_size)),
                                       tuple(int(v) for v in np.ravel(node.stride)),
                                       tuple(pool["padding"]), int(pool["channels"]),
                                       pool["min_channels"]))
            elif isinstance(node, nir.Flatten):
                stages.append(Flatten())
            else:
                raise FormatError(f"{name}: {type(node).__name__} is not a node of a TTFS network")
        return TTFSNetwork(stages, meta["windows"], tuple(meta["input_shape"]),
                           tuple(meta["input_range"]), meta["variant"])
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"malformed TTFS NIR graph ({type(exc).__name__}: {exc})") from None


def export_ttfs_nir(net: TTFSNetwork, path: str | Path, source: str | None = None) -> nir.NIRGraph:
    """Write ``net`` to the NIR file ``path`` (atomically; read back and compared)."""
    return write_nir(ttfs_to_nir(net, source), path)


def read_ttfs_nir(path: str | Path) -> TTFSNetwork:
    """The TTFS network in the NIR file ``path``."""
    return nir_to_ttfs(read_nir(path))
