"""NIR export and import of float spiking networks.

**Export** (:func:`export_nir`) writes a :class:`~neurodeploy.models.SpikingNet` (or a checkpoint)
as a NIR 1.0 graph: ``Input`` → ``Affine``/``Linear`` | ``Conv2d`` | ``AvgPool2d`` | ``Flatten`` |
``LIF``/``IF``/``CubaLIF`` (+ ``Scale`` after a TrSG layer, whose output is ``V * spikes``) → ``Output``,
with every node's ``input_type``/``output_type`` set and the edges in forward order. BatchNorm is folded
into the layer before it (eval statistics). Neuron parameters follow the ``dt`` convention of
:mod:`neurodeploy.export.nir_conventions`: one Euler step of each node's ODE with step ``dt``
(default 1e-4 s) is one neurodeploy step. The file is written atomically and read back with
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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch
from torch import nn

from neurodeploy.errors import ConfigError, UnsupportedError
from neurodeploy.export.nir_conventions import (
    CONVENTIONS,
    DEFAULT_DT,
    cuba_parameters,
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
from neurodeploy.models import SpikingNet
from neurodeploy.nn.neurons import SpikingNeuron
from neurodeploy.train.checkpoint import Checkpoint, load_checkpoint

__all__ = [
    "CONVENTIONS", "DEFAULT_DT", "METADATA_KEY", "NirExport", "NirImport", "export_nir", "import_nir",
    "model_to_nir", "nir_to_checkpoint", "read_nir",
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


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _shape_after(stage: nn.Module, shape: tuple[int, ...], like: torch.Tensor) -> tuple[int, ...]:
    with torch.no_grad():
        return tuple(stage(torch.zeros(1, *shape, dtype=like.dtype, device=like.device)).shape[1:])


class _Builder:
    """Accumulates NIR nodes in forward order."""

    def __init__(self):
        self.nodes: dict[str, nir.NIRNode] = {}
        self.order: list[str] = []
        self.warnings: list[str] = []

    def add(self, name: str, node: nir.NIRNode) -> None:
        self.nodes[name] = node
        self.order.append(name)


def _synapse_node(p: dict[str, Any], dtype: np.dtype) -> nir.NIRNode:
    meta = pack_metadata({"stage": p["stage"], "folded": p["folded"]})
    w = p["weight"].astype(dtype)
    b = None if p["bias"] is None else p["bias"].astype(dtype)
    if p["kind"] == "dense":
        return nir.Linear(weight=w, metadata=meta) if b is None else nir.Affine(weight=w, bias=b, metadata=meta)
    m: nn.Conv2d = p["module"]
    node = nir.Conv2d(input_shape=tuple(int(v) for v in p["in_shape"][1:]), weight=w,
                      stride=_pair(m.stride), padding=m.padding if isinstance(m.padding, str) else _pair(m.padding),
                      dilation=_pair(m.dilation), groups=int(m.groups),
                      bias=b if b is not None else np.zeros(w.shape[0], dtype=dtype), metadata=meta)
    return node


def _neuron_node(stage: SpikingNeuron, name: str, shape: tuple[int, ...], dt: float, dtype: np.dtype,
                 warnings: list[str]) -> nir.NIRNode:
    cfg = stage.config
    v_th = float(stage.threshold.detach())
    full = lambda v: np.full(shape, v, dtype=dtype)  # noqa: E731
    state = {k: float(v) for k, v in stage.state_dict().items() if v.numel() == 1}
    payload: dict[str, Any] = {"stage": name, "neuron": cfg.to_dict(), "state": state, "reset": cfg.reset,
                               "threshold": "strict: spike iff v > v_threshold"}
    if cfg.reset == "subtract":
        warnings.append(f"{name}: reset by subtraction is kept only in neurodeploy's metadata; other NIR "
                        "readers will reset to v_reset = 0")
    if cfg.mp_init and float(stage.mp_mean) != 0.0:
        warnings.append(f"{name}: the MP-Init initial potential {float(stage.mp_mean):.4g} is kept only in "
                        "neurodeploy's metadata; other NIR readers start from 0")
    if cfg.model == "cuba":
        p = cuba_parameters(cfg.current_decay, cfg.voltage_decay, dt)
        payload["decay"] = {"current": 1 - cfg.current_decay / 4096, "voltage": 1 - cfg.voltage_decay / 4096}
        return nir.CubaLIF(tau_syn=full(p["tau_syn"]), tau_mem=full(p["tau_mem"]), r=full(p["r"]),
                           v_leak=full(0.0), v_threshold=full(v_th), v_reset=full(0.0), w_in=full(p["w_in"]),
                           metadata=pack_metadata(payload))
    d = stage.decay()
    b = float(d.detach()) if isinstance(d, torch.Tensor) else float(d)
    payload["decay"] = b
    form = "leak" if cfg.model == "if" else cfg.form
    if b >= 1.0:
        if form == "decay_input":
            raise UnsupportedError(f"{name}: a decay-input LIF with decay 1 ignores its input; nothing to export")
        return nir.IF(r=full(if_resistance(dt)), v_threshold=full(v_th), v_reset=full(0.0),
                      metadata=pack_metadata(payload))
    tau, r = lif_parameters(b, form, dt)
    return nir.LIF(tau=full(tau), r=full(r), v_leak=full(0.0), v_threshold=full(v_th), v_reset=full(0.0),
                   metadata=pack_metadata(payload))


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
    like = param.detach()[:0] if param is not None else torch.zeros(0)
    dtype = np.dtype(np.float64 if like.dtype == torch.float64 else np.float32)
    shape = tuple(int(v) for v in spec.input_shape)
    out = _Builder()
    out.add("input", nir.Input(input_type=np.array(shape),
                               metadata=pack_metadata({"encoding": spec.encoding, "steps": spec.steps})))
    pending: dict[str, Any] | None = None

    def flush():
        nonlocal pending
        if pending is not None:
            out.add(pending["key"], _synapse_node(pending, dtype))
            pending = None

    for i, stage in enumerate(model.stages):
        name = f"stages.{i}"
        if isinstance(stage, nn.BatchNorm1d | nn.BatchNorm2d):
            if pending is None:
                raise UnsupportedError(f"{name}: batch norm that does not follow a linear or conv layer "
                                       "cannot be folded")
            scale = stage.weight.detach().double() / torch.sqrt(stage.running_var.double() + stage.eps)
            w = torch.from_numpy(pending["weight"])
            b = torch.from_numpy(pending["bias"]) if pending["bias"] is not None else torch.zeros(w.shape[0],
                                                                                                   dtype=torch.float64)
            w = w * scale.view((-1,) + (1,) * (w.dim() - 1))
            b = (b - stage.running_mean.double()) * scale + stage.bias.detach().double()
            pending.update(weight=w.numpy(), bias=b.numpy())
            pending["folded"].append(f"batch norm {name}")
            continue
        flush()
        if isinstance(stage, nn.Linear | nn.Conv2d):
            kind = "dense" if isinstance(stage, nn.Linear) else "conv"
            if kind == "conv":
                if stage.padding_mode != "zeros":
                    raise UnsupportedError(f"{name}: {stage.padding_mode} padding has no NIR form")
            pending = {"key": f"s{i}_{'affine' if stage.bias is not None else 'linear'}" if kind == "dense"
                       else f"s{i}_conv", "stage": name, "kind": kind, "module": stage, "in_shape": shape,
                       "weight": _np(stage.weight).astype(np.float64), "folded": [],
                       "bias": None if stage.bias is None else _np(stage.bias).astype(np.float64)}
            if kind == "conv" and len(shape) != 3:
                raise UnsupportedError(f"{name}: a 2-D convolution needs a (C, H, W) input, got {shape}")
            shape = _shape_after(stage, shape, like)
            continue
        if isinstance(stage, nn.Flatten):
            if (stage.start_dim, stage.end_dim) != (1, -1):
                raise UnsupportedError(f"{name}: only a flatten of all per-sample dimensions has a NIR form")
            if len(shape) > 1:
                out.add(f"s{i}_flatten", nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1,
                                                     metadata=pack_metadata({"stage": name})))
                shape = (int(np.prod(shape)),)
            continue
        if isinstance(stage, nn.MaxPool2d):
            raise UnsupportedError(f"{name}: max pooling has no NIR primitive (and no spiking equivalent); "
                                   "train with pool = \"avg\" or strided convolutions")
        if isinstance(stage, nn.AvgPool2d):
            k = _pair(stage.kernel_size)
            s = _pair(stage.stride if stage.stride is not None else stage.kernel_size)
            if _pair(stage.padding) != (0, 0) or stage.ceil_mode or stage.divisor_override is not None:
                raise UnsupportedError(f"{name}: only unpadded average pooling (floor mode) has a NIR form")
            node = nir.AvgPool2d(kernel_size=np.array(k), stride=np.array(s), padding=np.array([0, 0]),
                                 metadata=pack_metadata({"stage": name}))
            new_shape = _shape_after(stage, shape, like)
            node.input_type = {"input": np.array(shape)}
            node.output_type = {"output": np.array(new_shape)}
            out.add(f"s{i}_avgpool", node)
            shape = new_shape
            continue
        if isinstance(stage, SpikingNeuron):
            node = _neuron_node(stage, name, shape, dt, dtype, out.warnings)
            out.add(f"s{i}_{type(node).__name__.lower()}", node)
            if stage.config.scale == "threshold_robust":
                v_th = float(stage.threshold.detach())
                out.add(f"s{i}_scale", nir.Scale(scale=np.full(shape, v_th, dtype=dtype),
                                                 metadata=pack_metadata({"stage": name, "role": "trsg_output"})))
            continue
        raise UnsupportedError(f"{name}: layer {type(stage).__name__} has no NIR form")
    flush()
    out.add("output", nir.Output(output_type=np.array(shape)))
    graph_meta = {
        "format": FORMAT_TAG, "version": FORMAT_VERSION, "dt": dt, "dt_unit": "s",
        "time": "one Euler step of each node's ODE with step dt is one neurodeploy step; CubaLIF steps the "
                "current before the voltage",
        "steps": spec.steps, "encoding": spec.encoding,
        "readout": {"kind": spec.readout, "rule": READOUT_RULES[spec.readout]},
        "threshold": "strict: spike iff v > v_threshold",
        "spec": spec.to_dict(), "quantization": _quantization(meta or {}), "source": source,
    }
    edges = list(zip(out.order[:-1], out.order[1:], strict=True))
    graph = nir.NIRGraph(nodes=out.nodes, edges=edges, metadata=pack_metadata(graph_meta), type_check=True)
    for node in graph.nodes.values():
        seal(node)
    seal(graph)
    return graph, out.warnings


def export_nir(source: SpikingNet | Checkpoint | str | Path, path: str | Path, *,
               dt: float = DEFAULT_DT) -> NirExport:
    """Export a model, a :class:`Checkpoint` or a checkpoint file to the NIR file ``path``.

    ``dt`` is the time step in seconds the NIR time constants are written for (see
    :mod:`neurodeploy.export.nir_conventions`). The file is written atomically and read back with
    ``nir.read`` before this returns.
    """
    meta: dict[str, Any] = {}
    src_name = None
    if isinstance(source, str | Path):
        src_name = str(source)
        source = load_checkpoint(source)
    if isinstance(source, Checkpoint):
        meta = source.meta
        model = source.build()
    else:
        model = source
    graph, warnings = model_to_nir(model, dt=dt, meta=meta, source=src_name)
    back = write_nir(graph, path)
    return NirExport(Path(path), back, float(dt), warnings)
