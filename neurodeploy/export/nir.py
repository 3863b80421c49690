"""NIR export and import of float spiking networks.

**Export** (:func:`export_nir`) writes a :class:`~neurodeploy.models.SpikingNet` (or a checkpoint)
as a NIR 1.0 graph: ``Input`` → ``Affine``/``Linear`` | ``Conv2d`` | ``AvgPool2d`` | ``Flatten`` |
``LIF``/``IF``/``CubaLIF`` (+ ``Scale`` after a TrSG layer, whose output is ``V * spikes``) → ``Output``,
with every node's ``input_type``/``output_type`` set and the edges in forward order, from the model's
float graph (:mod:`neurodeploy.graph`; :func:`graph_to_nir_nodes` writes any feed-forward graph).
BatchNorm is folded into the layer before it by the graph pass (eval statistics). Neuron parameters
follow the ``dt`` convention of :mod:`neurodeploy.export.nir_conventions`: one Euler step of each
node's ODE with step ``dt`` (default 1e-4 s) is one neurodeploy step. The file is written atomically and read back with
``nir.read`` (and compared) before success is reported.

Refused with :class:`~neurodeploy.errors.UnsupportedError`: max pooling, overlapping or padded
pooling, grouped/dilated convolutions, CUBA decays of 0, layers with no NIR primitive.

**Metadata.** What NIR cannot say is stored as a JSON string under ``metadata["neurodeploy"]``:

* on the graph: ``format`` (``"neurodeploy.nir"``), ``version``, ``dt`` (seconds), ``steps`` (T),
  ``encoding`` (how samples in [0, 1] become T input steps), ``readout`` (``mean``: the class
  scores are the Output signal averaged over the T steps; ``spike_count``: the output spikes
  averaged over T), ``threshold`` (strict), ``spec`` (the model spec), ``quantization`` (profile,
  constraints, bit widths and scales of a quantized checkpoint; the weights written are the float
  weights), ``source``;
* on each node: ``stage`` (the model stage it comes from); on synapse nodes ``folded`` (e.g. batch
  norm); on neuron nodes ``neuron`` (the full neuron config: form, reset by subtraction or to zero,
  surrogate, scale mode, MP-Init, ...), ``state`` (threshold, learnable parameters and the MP-Init
  initial potential, exactly), ``decay`` (per step) and ``reset``;
* on every node and on the graph: ``digest``, a SHA-256 of the node's parameters and payload (of the
  edges and node names for the graph). HDF5 has no checksum; a neurodeploy file whose digests are
  missing or wrong is refused on import as corrupt or edited.

**Import** (:func:`import_nir`) turns a NIR graph into a neurodeploy checkpoint; see
:mod:`neurodeploy.export.nir_import`.

**TTFS networks** (:class:`~neurodeploy.ttfs.network.TTFSNetwork` or a TTFS checkpoint) are
written by :mod:`neurodeploy.export.nir_ttfs` (``Affine``/``Conv2d`` + ``IF`` nodes whose metadata
names the TTFS neuron and its window) and read back with
:func:`~neurodeploy.export.nir_ttfs.read_ttfs_nir`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch

from neurodeploy.errors import ConfigError, UnsupportedError
from neurodeploy.export.nir_conventions import (
    CONVENTIONS,
    DEFAULT_DT,
    cuba_factor_parameters,
    fold_lif_gains,
    if_resistance,
    lif_parameters,
)
from neurodeploy.export.nir_import import NirImport, import_nir, nir_to_checkpoint
from neurodeploy.export.nir_io import (
    FORMAT_TAG,
    FORMAT_VERSION,
    METADATA_KEY,
    pack_metadata,
    read_nir,
    seal,
    write_nir,
)
from neurodeploy.graph import nodes as gn
from neurodeploy.graph.from_model import graph_from_model
from neurodeploy.graph.ir import Graph
from neurodeploy.graph.passes import fold_batch_norm
from neurodeploy.models import SpikingNet
from neurodeploy.models.graph_net import GraphCheckpoint, load_graph_checkpoint
from neurodeploy.train.checkpoint import Checkpoint, load_checkpoint

__all__ = [
    "CONVENTIONS", "DEFAULT_DT", "METADATA_KEY", "NirExport", "NirImport", "export_nir", "graph_checkpoint_to_nir",
    "import_nir", "model_to_nir", "nir_to_checkpoint", "read_nir",
]

READOUT_RULES = {
    "mean": "class scores = the Output signal (currents of the last Affine) averaged over the T steps",
    "spike_count": "class scores = the Output spikes averaged over the T steps",
}


@dataclass
class NirExport:
    """Result of :func:`export_nir`: the file, the graph as read back, the ``dt`` (seconds) used and
    warnings about what only neurodeploy's metadata carries."""

    path: Path
    graph: nir.NIRGraph
    dt: float
    warnings: list[str] = field(default_factory=list)


def _check_dt(dt: Any) -> float:
    if isinstance(dt, bool) or not isinstance(dt, int | float) or not math.isfinite(dt) or dt <= 0:
        raise ConfigError(f"NIR time step dt must be a positive number of seconds, got {dt!r}")
    return float(dt)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


_KEY_OK = re.compile(r"[^A-Za-z0-9_]")


def _key(name: str, source: str | None, kind: str) -> str:
    """NIR node name: ``s{i}_{kind}`` for model stage ``stages.i``, else the graph name made safe."""
    m = re.fullmatch(r"stages\.(\d+)", source or "")
    return f"s{m.group(1)}_{kind}" if m else f"{_KEY_OK.sub('_', name)}_{kind}"


def _synapse_node(node: gn.Affine | gn.Conv, source: str, in_shape: tuple[int, ...],
                  dtype: np.dtype) -> nir.NIRNode:
    meta = pack_metadata({"stage": source, "folded": list(node.meta.get("folded", []))})
    w = _np(node.weight).astype(np.float64).astype(dtype)
    b = None if node.bias is None else _np(node.bias).astype(np.float64).astype(dtype)
    if isinstance(node, gn.Affine):
        return nir.Linear(weight=w, metadata=meta) if b is None else nir.Affine(weight=w, bias=b, metadata=meta)
    return nir.Conv2d(input_shape=tuple(int(v) for v in in_shape[1:]), weight=w, stride=node.stride,
                      padding=node.padding, dilation=node.dilation, groups=int(node.groups),
                      bias=b if b is not None else np.zeros(w.shape[0], dtype=dtype), metadata=meta)


def _per_neuron(value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A scalar or per-neuron parameter as a float64 array of the layer's shape."""
    arr = value.detach().cpu().double().numpy() if isinstance(value, torch.Tensor) else np.asarray(value, np.float64)
    return np.broadcast_to(arr, shape).astype(np.float64)


def _plain(arr: np.ndarray) -> float | list[Any]:
    """A parameter for the JSON metadata: one number when uniform, else the nested list."""
    return float(arr.flat[0]) if np.all(arr == arr.flat[0]) else arr.tolist()


def _neuron_node(node: gn.Node, name: str, shape: tuple[int, ...], dt: float, dtype: np.dtype,
                 warnings: list[str]) -> nir.NIRNode:
    """NIR form of a graph neuron (its float factors, per layer or per neuron; training settings from
    its ``meta``)."""
    v_th = _per_neuron(node.threshold, shape).astype(dtype)
    full = lambda v: np.broadcast_to(np.asarray(v, dtype=np.float64), shape).astype(dtype)  # noqa: E731
    payload: dict[str, Any] = {"stage": name, "neuron": node.meta.get("neuron"), "state": node.meta.get("state", {}),
                               "reset": node.reset, "threshold": "strict: spike iff v > v_threshold"}
    if not node.strict:
        raise UnsupportedError(f"{name}: a non-strict threshold (spike at v >= threshold) has no NIR form")
    if node.reset == "subtract":
        warnings.append(f"{name}: reset by subtraction is kept only in neurodeploy's metadata; other NIR "
                        "readers will reset to v_reset = 0")
    v_init = _per_neuron(node.v_init, shape)
    if np.any(v_init != 0.0) and not (node.meta.get("neuron") or {}).get("mp_init"):
        raise UnsupportedError(f"{name}: an initial potential other than 0 (not MP-Init's) has no NIR form")
    if np.any(v_init != 0.0):
        warnings.append(f"{name}: the MP-Init initial potential {float(v_init.flat[0]):.4g} is kept only in "
                        "neurodeploy's metadata; other NIR readers start from 0")
    r = _per_neuron(node.r, shape)
    if isinstance(node, gn.CubaLIF):
        fi, fv = _per_neuron(node.current_decay, shape), _per_neuron(node.voltage_decay, shape)
        if np.any(r != 1.0):
            raise UnsupportedError(f"{name}: a CUBA input gain other than 1 has no NIR form here")
        p = [cuba_factor_parameters(float(a), float(b), dt) for a, b in zip(fi.flat, fv.flat, strict=True)]
        par = {k: np.array([q[k] for q in p]).reshape(shape) for k in ("tau_syn", "tau_mem", "r", "w_in")}
        payload["decay"] = {"current": _plain(fi), "voltage": _plain(fv)}
        return nir.CubaLIF(tau_syn=full(par["tau_syn"]), tau_mem=full(par["tau_mem"]), r=full(par["r"]),
                           v_leak=full(0.0), v_threshold=v_th, v_reset=full(0.0), w_in=full(par["w_in"]),
                           metadata=pack_metadata(payload))
    b = np.ones(shape) if isinstance(node, gn.IF) else _per_neuron(node.decay, shape)
    if np.all(r == 1.0):
        form = "leak"
    elif np.all(r == 1.0 - b):
        form = "decay_input"
    else:
        raise UnsupportedError(f"{name}: a LIF input gain other than 1 or 1 - decay has no NIR form here")
    payload["decay"] = _plain(b)
    if np.all(b >= 1.0):
        if form == "decay_input":
            raise UnsupportedError(f"{name}: a decay-input LIF with decay 1 ignores its input; nothing to export")
        return nir.IF(r=full(if_resistance(dt)), v_threshold=v_th, v_reset=full(0.0),
                      metadata=pack_metadata(payload))
    if np.any(b >= 1.0):
        raise UnsupportedError(f"{name}: a LIF group whose neurons mix decay 1 with other decays has no NIR form")
    pairs = [lif_parameters(float(v), form, dt) for v in b.flat]
    tau = np.array([q[0] for q in pairs]).reshape(shape)
    rr = np.array([q[1] for q in pairs]).reshape(shape)
    return nir.LIF(tau=full(tau), r=full(rr), v_leak=full(0.0), v_threshold=v_th, v_reset=full(0.0),
                   metadata=pack_metadata(payload))


def _integrator_node(node: gn.LI, name: str, shape: tuple[int, ...], dt: float, dtype: np.dtype) -> nir.NIRNode:
    """NIR ``I`` (decay 1) or ``LI`` of a non-spiking read-out integrator: one Euler step with ``dt``
    is ``v = decay v + r I``."""
    if np.any(_per_neuron(node.v_init, shape) != 0.0):
        raise UnsupportedError(f"{name}: a read-out integrator's initial potential has no NIR form")
    decay, r = _per_neuron(node.decay, shape), _per_neuron(node.r, shape)
    meta = pack_metadata({"stage": name, "decay": _plain(decay)})
    if np.all(decay == 1.0):
        return nir.I(r=(r / dt).astype(dtype), metadata=meta)
    k = 1.0 - decay
    if not np.all(k > 0) or np.any(decay < 0):
        raise UnsupportedError(f"{name}: a leaky integrator's decays must all lie in [0, 1) or all be 1")
    return nir.LI(tau=(dt / k).astype(dtype), r=(r / k).astype(dtype), v_leak=np.zeros(shape, dtype=dtype),
                  metadata=meta)


def _quantization(meta: dict[str, Any]) -> dict[str, Any] | None:
    q = meta.get("quant") if isinstance(meta, dict) else None
    if not q:
        return None
    out = dict(q)
    try:
        from neurodeploy.hardware import load_profile

        prof = load_profile(q["profile"]).to_dict()
        out["formats"] = {k: prof[k] for k in ("weights", "state", "neuron") if k in prof}
    except Exception:  # the profile may not be installed here; the name and constraints remain
        out["formats"] = None
    out["note"] = "the NIR weights are the float weights; the integer program is the netx/DeployGraph export"
    return out


def model_to_nir(model: SpikingNet, *, dt: float = DEFAULT_DT, meta: dict[str, Any] | None = None,
                 source: str | None = None) -> tuple[nir.NIRGraph, list[str]]:
    """Build the NIR graph of ``model`` (eval semantics) with time step ``dt`` [s].

    ``meta`` is a checkpoint's ``meta`` (its ``quant`` entry is recorded). Returns the graph and the
    warnings about settings other NIR readers will not see. Raises :class:`UnsupportedError` for
    layers with no faithful NIR form.
    """
    dt = _check_dt(dt)
    if not isinstance(model, SpikingNet):
        raise ConfigError(f"NIR export needs a SpikingNet or a checkpoint, got {type(model).__name__}")
    was_training = model.training
    model.eval()
    try:
        return _build_graph(model, dt, meta, source)
    finally:
        model.train(was_training)


def _build_graph(model: SpikingNet, dt: float, meta: dict[str, Any] | None,
                 source: str | None) -> tuple[nir.NIRGraph, list[str]]:
    spec = model.spec
    param = next(model.parameters(), None)
    dtype = np.dtype(np.float64 if param is not None and param.dtype == torch.float64 else np.float32)
    graph = fold_batch_norm(graph_from_model(model))
    nodes, edges, warnings = graph_to_nir_nodes(graph, dt, dtype)
    warnings += fold_lif_gains(nodes, edges)  # leak-form LIFs as r = 1: peers that drop r (Norse) read them
    graph_meta = {
        "format": FORMAT_TAG, "version": FORMAT_VERSION, "dt": dt, "dt_unit": "s",
        "time": "one Euler step of each node's ODE with step dt is one neurodeploy step; CubaLIF steps the "
                "current before the voltage",
        "steps": spec.steps, "encoding": spec.encoding,
        "readout": {"kind": spec.readout, "rule": READOUT_RULES[spec.readout]},
        "threshold": "strict: spike iff v > v_threshold",
        "spec": spec.to_dict(), "quantization": _quantization(meta or {}), "source": source,
    }
    nodes["input"].metadata = pack_metadata({"encoding": spec.encoding, "steps": spec.steps})
    out = nir.NIRGraph(nodes=nodes, edges=edges, metadata=pack_metadata(graph_meta), type_check=True)
    for node in out.nodes.values():
        seal(node)
    seal(out)
    return out, warnings


def graph_to_nir_nodes(graph: Graph, dt: float, dtype: np.dtype | None = None, recurrent: bool = False,
                       ) -> tuple[dict[str, nir.NIRNode], list[tuple[str, str]], list[str]]:
    """NIR nodes and edges of a float graph (batch norm must already be folded).

    The input node is ``input``, the output ``output``; a flatten of a 1-D signal and an ``Add`` (NIR
    sums the edges entering a node) are dropped, their inputs wired to their consumers. With
    ``recurrent``, a recurrent edge becomes an edge closing a cycle (NIR readers give each cycle its
    one-step delay; :func:`graph_checkpoint_to_nir` checks that the reading is the graph's). Raises
    :class:`UnsupportedError` naming the node for what NIR cannot say.
    """
    dtype = np.dtype(np.float32) if dtype is None else dtype
    if not recurrent and any(e.recurrent for e in graph.edges):
        e = next(e for e in graph.edges if e.recurrent)
        raise UnsupportedError(f"recurrent edge {e.src} -> {e.dst}: NIR export of recurrent graphs is not "
                               "supported yet")
    shapes = graph.shapes()
    nodes: dict[str, nir.NIRNode] = {}
    ends: dict[str, list[str]] = {}  # graph node -> the NIR nodes whose summed output it is
    dropped: set[str] = set()
    warnings: list[str] = []
    for k in graph.order():
        node = graph.nodes[k]
        src = node.meta.get("source", k)
        ins = graph.inputs_of(k)
        in_shape = shapes[ins[0]] if ins else shapes[k]
        shape = shapes[k]
        if isinstance(node, gn.Input):
            ends[k] = ["input"]
            nodes["input"] = nir.Input(input_type=np.array(shape))
            continue
        if isinstance(node, gn.Output):
            ends[k] = ["output"]
            nodes["output"] = nir.Output(output_type=np.array(in_shape))
            continue
        if isinstance(node, gn.BatchNorm):
            raise UnsupportedError(f"{src}: batch norm that does not follow a linear or conv layer "
                                   "cannot be folded")
        if isinstance(node, gn.Add) and not graph.inputs_of(k, True):
            ends[k] = [e for s_ in ins for e in ends[s_]]
            dropped.add(k)
            continue
        if isinstance(node, gn.Affine | gn.Conv):
            kind = "conv" if isinstance(node, gn.Conv) else ("affine" if node.bias is not None else "linear")
            new = _synapse_node(node, src, in_shape, dtype)
        elif isinstance(node, gn.Flatten):
            if len(in_shape) <= 1 and len(ins) == 1 and not graph.inputs_of(k, True):
                ends[k] = ends[ins[0]]
                dropped.add(k)
                continue
            kind = "flatten"
            new = nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0, end_dim=-1,
                              metadata=pack_metadata({"stage": src}))
        elif isinstance(node, gn.MaxPool):
            raise UnsupportedError(f"{src}: max pooling has no NIR primitive (and no spiking equivalent); "
                                   "train with pool = \"avg\" or strided convolutions")
        elif isinstance(node, gn.AvgPool):
            if node.padding != (0, 0):
                raise UnsupportedError(f"{src}: only unpadded average pooling (floor mode) has a NIR form")
            kind = "avgpool"
            new = nir.AvgPool2d(kernel_size=np.array(node.kernel), stride=np.array(node.stride),
                                padding=np.array([0, 0]), metadata=pack_metadata({"stage": src}))
            new.input_type = {"input": np.array(in_shape)}
            new.output_type = {"output": np.array(shape)}
        elif isinstance(node, gn.LIF | gn.IF | gn.CubaLIF):
            new = _neuron_node(node, src, shape, dt, dtype, warnings)
            kind = type(new).__name__.lower()
        elif isinstance(node, gn.LI):
            new = _integrator_node(node, src, shape, dt, dtype)
            kind = type(new).__name__.lower()
        elif isinstance(node, gn.Delay):
            kind = "delay"
            new = nir.Delay(delay=np.full(shape, node.steps * dt, dtype=np.float64),
                            metadata=pack_metadata({"stage": src, "steps": int(node.steps)}))
        elif isinstance(node, gn.Scale):
            kind = "scale"
            role = {"role": node.meta["role"]} if "role" in node.meta else {}
            new = nir.Scale(scale=_per_neuron(node.scale, shape).astype(dtype),
                            metadata=pack_metadata({"stage": src, **role}))
        elif isinstance(node, gn.Add):
            raise UnsupportedError(f"{src}: a sum that a recurrent edge enters has no NIR form (NIR sums at the "
                                   "node the sum feeds; connect the edge there)")
        else:
            raise UnsupportedError(f"{src}: layer {node.kind} has no NIR form")
        key = _key(k, src, kind)
        if key in nodes:
            raise UnsupportedError(f"{src}: two graph nodes would share the NIR name {key}")
        ends[k] = [key]
        nodes[key] = new
    edges: list[tuple[str, str]] = []
    for k in graph.order():
        if k in dropped:
            continue  # its inputs are wired to its consumers
        for s_ in graph.inputs_of(k, None):
            for e in ends[s_]:
                if ends[k][0] != e and (e, ends[k][0]) not in edges:
                    edges.append((e, ends[k][0]))
    return nodes, edges, warnings


def _ttfs_source(source: Any) -> Any:
    """The TTFS network ``source`` is or holds (a TTFS checkpoint file), else ``None``."""
    from neurodeploy.errors import CheckpointError
    from neurodeploy.ttfs.checkpoint import TTFSCheckpoint, load_ttfs
    from neurodeploy.ttfs.network import TTFSNetwork

    if isinstance(source, TTFSNetwork):
        return source
    if isinstance(source, TTFSCheckpoint):
        return source.network
    if isinstance(source, str | Path):
        try:
            return load_ttfs(source).network
        except CheckpointError:
            return None
    return None


GRAPH_READOUT_RULES = {
    "mean": "class scores = the Output signal averaged over the T steps",
    "last": "class scores = the Output signal at the last of the T steps",
}


def graph_checkpoint_to_nir(ck: GraphCheckpoint, *, dt: float = DEFAULT_DT,
                            source: str | None = None) -> tuple[nir.NIRGraph, list[str]]:
    """The NIR graph of a graph network (:mod:`neurodeploy.models.graph_net`): merges become several
    edges into one node, recurrent edges close cycles (NIR readers put a cycle's one-step delay on
    the edge that enters its neuron), read-out integrators become ``LI``/``I``, delays ``Delay``.

    Before it is returned the graph is read back (:func:`~neurodeploy.export.nir_graph.graph_from_nir`)
    and run beside the original on a random input; where the reading gives other outputs (a
    recurrent edge whose delay NIR's cycle rule places elsewhere) :class:`UnsupportedError` says so.
    """
    dt = _check_dt(dt)
    if not isinstance(ck, GraphCheckpoint):
        raise ConfigError(f"NIR graph export needs a GraphCheckpoint, got {type(ck).__name__}")
    graph = fold_batch_norm(ck.graph)
    out_node = graph.nodes[graph.output_name()]
    nodes, edges, warnings = graph_to_nir_nodes(graph, dt, np.dtype(np.float64), recurrent=True)  # exact factors
    graph_meta = {
        "format": FORMAT_TAG, "version": FORMAT_VERSION, "network": "graph", "dt": dt, "dt_unit": "s",
        "time": "one Euler step of each node's ODE with step dt is one neurodeploy step; CubaLIF steps the "
                "current before the voltage; each cycle's edge into its neuron carries a one-step delay",
        "steps": int(ck.steps), "encoding": ck.meta.get("encoding") or ck.graph.meta.get("encoding")
        or {"kind": "direct"},
        "readout": {"kind": out_node.readout, "rule": GRAPH_READOUT_RULES[out_node.readout]},
        "threshold": "strict: spike iff v > v_threshold",
        "quantization": _quantization(ck.meta or {}), "source": source,
    }
    shapes = graph.shapes()
    nodes["input"].metadata = pack_metadata({"encoding": graph_meta["encoding"], "steps": int(ck.steps)})
    out = nir.NIRGraph(nodes=nodes, edges=edges, metadata=pack_metadata(graph_meta), type_check=False)
    for node in out.nodes.values():
        seal(node)
    seal(out)
    _check_reading(graph, out, shapes[graph.input_names()[0]], int(ck.steps))
    return out, warnings


def _check_reading(graph: Graph, written: nir.NIRGraph, in_shape: tuple[int, ...], steps: int) -> None:
    """Refuse unless the NIR graph, read back, gives the graph's outputs on a random input."""
    from neurodeploy.export.nir_graph import graph_from_nir
    from neurodeploy.models.graph_net import GraphNet

    back = graph_from_nir(written)
    gen = torch.Generator().manual_seed(0)
    seq = (torch.rand(max(steps, 2) + 2, 4, *in_shape, generator=gen, dtype=torch.float64) * 2.0)
    with torch.no_grad():
        want = GraphNet(graph).double().eval()(seq)
        got = GraphNet(back).double().eval()(seq)
    if want.shape != got.shape or not torch.equal(want, got):
        rec = [f"{e.src} -> {e.dst}" for e in graph.edges if e.recurrent]
        raise UnsupportedError("NIR read back gives other outputs than the graph" + (
            f": a NIR cycle delays the edge into its neuron, not recurrent edge {rec[0]}" if rec else ""))


def export_nir(source: SpikingNet | Checkpoint | GraphCheckpoint | str | Path, path: str | Path, *,
               dt: float = DEFAULT_DT) -> NirExport:
    """Export a model, a :class:`Checkpoint` or a checkpoint file to the NIR file ``path``.

    ``dt`` is the time step in seconds the NIR time constants are written for (see
    :mod:`neurodeploy.export.nir_conventions`). The file is written atomically and read back with
    ``nir.read`` before this returns. A TTFS network (or TTFS checkpoint) is written by
    :mod:`neurodeploy.export.nir_ttfs` (its time is in its windows; ``dt`` does not apply).
    """
    meta: dict[str, Any] = {}
    src_name = None
    ttfs = _ttfs_source(source)
    if ttfs is not None:  # a TTFS network: its own node set (neurodeploy.export.nir_ttfs)
        from neurodeploy.export.nir_ttfs import export_ttfs_nir

        name = str(source) if isinstance(source, str | Path) else None
        return NirExport(Path(path), export_ttfs_nir(ttfs, path, name), float(dt), [])
    if isinstance(source, str | Path):
        src_name = str(source)
        from neurodeploy.sim.deploy import is_graph_checkpoint

        source = load_graph_checkpoint(source) if is_graph_checkpoint(source) else load_checkpoint(source)
    if isinstance(source, GraphCheckpoint):
        graph, warnings = graph_checkpoint_to_nir(source, dt=dt, source=src_name)
        return NirExport(Path(path), write_nir(graph, path), float(dt), warnings)
    if isinstance(source, Checkpoint):
        meta = source.meta
        model = source.build()
    else:
        model = source
    graph, warnings = model_to_nir(model, dt=dt, meta=meta, source=src_name)
    back = write_nir(graph, path)
    return NirExport(Path(path), back, float(dt), warnings)
