"""Import a NIR graph as a neurodeploy checkpoint.

The graph must be a feed-forward chain ``Input → … → Output`` that one of neurodeploy's reference
architectures can rebuild (:class:`~neurodeploy.models.ModelSpec`):

* **MLP**: ``[Flatten] (Affine → neurons)+ → Affine [→ neurons]``;
* **ConvNet / VGG**: ``(Conv2d → neurons [→ AvgPool2d 2×2])+ → Flatten → (Affine → neurons)* →
  Affine [→ neurons]``, all convolutions with one odd square kernel ``k``, padding ``k // 2`` and
  stride 1 (ConvNet without pooling: stride 2 after the first).

A final ``Affine`` gives the ``mean`` read-out (class scores = its output averaged over the T steps);
final spiking neurons give the ``spike_count`` read-out. ``SumPool2d`` becomes an average pool with
its ``k²`` folded into the next layer; a uniform ``Scale`` is folded into the next layer.

Neuron parameters are read under a *convention* (:mod:`neurodeploy.export.nir_conventions`). Files
written by neurodeploy carry metadata that restores every setting exactly (neuron configs, learnable
parameters, MP-Init potentials, T, encoding, read-out); it takes priority unless another convention
is asked for, and it must agree with the NIR parameters. For other files, per-neuron input gains,
constant drives (``v_leak``) and per-neuron thresholds are folded into the preceding layer's weights
and bias (exact in real arithmetic), choosing the decay-input LIF form when the gain is ``1 - decay``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch

from neurodeploy.errors import (
    CheckpointError,
    ConfigError,
    FormatError,
    NeurodeployError,
    OutputError,
    UnsupportedError,
)
from neurodeploy.export.nir_conventions import (
    DECAY_UNIT,
    REL_TOL,
    DiscreteNeuron,
    LayerResets,
    close,
    cuba_parameters,
    get_convention,
    if_resistance,
    lif_parameters,
    to_discrete,
    unfold_gain,
    uniform,
)
from neurodeploy.export.nir_io import FORMAT_TAG, FORMAT_VERSION, check_digest, check_edges, read_nir, unpack_metadata
from neurodeploy.models import ModelSpec, build_model
from neurodeploy.models.graph_net import FORMAT as GRAPH_FORMAT
from neurodeploy.models.graph_net import GraphCheckpoint
from neurodeploy.nn.encoding import Encoding
from neurodeploy.nn.neurons import NeuronConfig, SpikingNeuron
from neurodeploy.train.checkpoint import FORMAT as CHECKPOINT_FORMAT
from neurodeploy.train.checkpoint import Checkpoint

DEFAULT_STEPS = 8
"""Time steps T given to an imported model when neither the file nor the caller says."""

NEURON_TYPES = ("LIF", "IF", "CubaLIF")
_REFUSED = {
    "LI": "a leaky-integrator read-out has no neurodeploy equivalent (neurodeploy reads out the "
          "time-averaged currents of the last Affine layer)",
    "CubaLI": "a leaky-integrator read-out has no neurodeploy equivalent (neurodeploy reads out the "
              "time-averaged currents of the last Affine layer)",
    "I": "an integrator read-out has no neurodeploy equivalent (neurodeploy reads out the "
         "time-averaged currents of the last Affine layer)",
    "Threshold": "a bare threshold without neuron dynamics is not supported",
    "Delay": "axonal delays are not supported",
    "Conv1d": "1-D convolutions are not supported",
    "NIRGraph": "nested (recurrent) sub-graphs are not supported",
}


@dataclass
class NirImport:
    """Result of an import: the checkpoint, the convention and ``dt`` [s] used, and warnings."""

    checkpoint: Checkpoint | GraphCheckpoint
    convention: str
    dt: float
    warnings: list[str] = field(default_factory=list)
    path: Path | None = None

    @property
    def kind(self) -> str:
        """``"template"`` (a :class:`Checkpoint` of an ``mlp``/``convnet``/``vgg``) or ``"graph"`` (a
        :class:`~neurodeploy.models.graph_net.GraphCheckpoint`)."""
        return "graph" if isinstance(self.checkpoint, GraphCheckpoint) else "template"


@dataclass
class _Op:
    kind: str  # dense, conv, pool, flatten, scale, neuron
    name: str
    weight: np.ndarray | None = None  # float64
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    kernel: tuple[int, int] = (1, 1)
    sum_pool: bool = False
    scale: np.ndarray | None = None
    neuron: DiscreteNeuron | None = None
    config: NeuronConfig | None = None
    state: dict[str, float] | None = None
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()
    exact: bool = True  # weights are the file's own values (not folded)
    meta: dict[str, Any] | None = None
    raw: tuple[Any, Any] | None = None  # the file's weight and bias arrays, untouched
    node: Any = None


# ------------------------------------------------------------------------------------------ graph
def _chain(graph: nir.NIRGraph) -> list[tuple[str, Any]]:
    """The nodes of a feed-forward chain in order, from its Input to its Output."""
    nodes = graph.nodes
    if not isinstance(nodes, dict) or not nodes:
        raise FormatError("the NIR graph has no nodes")
    nested = [k for k, v in nodes.items() if isinstance(v, nir.NIRGraph)]
    if nested:
        raise UnsupportedError(f"NIR node {nested[0]} is a nested (recurrent) sub-graph")
    succ: dict[str, list[str]] = {k: [] for k in nodes}
    pred: dict[str, list[str]] = {k: [] for k in nodes}
    for edge in graph.edges:
        try:
            a, b = (str(v) for v in edge)
        except (TypeError, ValueError):
            raise FormatError(f"malformed NIR edge {edge!r}") from None
        if a not in nodes or b not in nodes:
            raise FormatError(f"NIR edge ({a}, {b}) names a node that does not exist")
        if b not in succ[a]:
            succ[a].append(b)
            pred[b].append(a)
    inputs = [k for k, n in nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in nodes.items() if isinstance(n, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise UnsupportedError(f"the NIR graph has {len(inputs)} inputs and {len(outputs)} outputs; "
                               "neurodeploy imports one input and one output")
    order = [inputs[0]]
    seen = {inputs[0]}
    while order[-1] != outputs[0]:
        nxt = succ[order[-1]]
        if len(nxt) != 1:
            what = "ends" if not nxt else "branches"
            raise UnsupportedError(f"the NIR graph {what} at node {order[-1]}; only feed-forward chains "
                                   "(no branches or recurrence) can be imported")
        if nxt[0] in seen:
            raise UnsupportedError(f"the NIR graph has a cycle through node {nxt[0]} (recurrence is not supported)")
        order.append(nxt[0])
        seen.add(nxt[0])
    extra = set(nodes) - seen
    if extra:
        raise UnsupportedError(f"NIR nodes {', '.join(sorted(extra))} are not on the input-output chain")
    for k in order[1:]:
        if len(pred[k]) != 1:
            raise UnsupportedError(f"NIR node {k} has {len(pred[k])} inputs; only chains can be imported")
    return [(k, nodes[k]) for k in order]


def _shape(value: Any, where: str) -> tuple[int, ...]:
    try:
        arr = np.asarray(value).ravel()
        shape = tuple(int(v) for v in arr)
        ok = arr.size > 0 and all(float(v) == int(v) for v in arr)
    except (TypeError, ValueError, OverflowError):
        raise FormatError(f"{where}: shape {value!r} is not a list of integers") from None
    if not ok or any(v < 1 for v in shape):
        raise FormatError(f"{where}: shape {shape} is not a list of positive integers")
    return shape


def padding_of(node: Any) -> Any:
    """A NIR convolution's ``padding`` as written: numbers, or a string (HDF5 gives bytes)."""
    pad = node.padding
    return bytes(pad).decode() if isinstance(pad, bytes | np.bytes_) else pad


def _ints(value: Any, n: int, what: str, where: str, minimum: int = 0) -> tuple[int, ...]:
    try:
        with np.errstate(all="ignore"):
            arr = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise FormatError(f"{where}: {what} {value!r} is not numeric") from None
    if arr.size == 1:
        arr = np.repeat(arr, n)
    if arr.size != n or not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)) or np.any(arr < minimum):
        raise FormatError(f"{where}: {what} {value!r} is not {n} integers >= {minimum}")
    return tuple(int(v) for v in arr)


def _float_array(value: Any, what: str, where: str, ndim: int | None = None) -> np.ndarray:
    if np.iscomplexobj(value):  # casting would drop the imaginary part
        raise FormatError(f"{where}: {what} holds complex values; a network's parameters are real")
    try:
        with np.errstate(all="ignore"):
            arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise FormatError(f"{where}: {what} is not numeric") from None
    if ndim is not None and arr.ndim != ndim:
        raise FormatError(f"{where}: {what} has {arr.ndim} dimensions, expected {ndim}")
    if not np.all(np.isfinite(arr)):
        raise FormatError(f"{where}: {what} holds NaN or infinite values")
    return arr


def _native(value: Any, dtype: np.dtype) -> np.ndarray:
    """The file's array in its own float dtype when it is float32/64 (kept exactly)."""
    arr = np.asarray(value)
    return arr if arr.dtype in (np.float32, np.float64) else arr.astype(dtype)


# ------------------------------------------------------------------------------------------ reading
def _read_ops(chain: list[tuple[str, Any]], ours: bool, conv, dt: float, notes: list[str],
              asked: tuple[Any, Any, Any] = (None, False, None)) -> tuple[
        tuple[int, ...], list[_Op]]:
    first = chain[0][1]
    in_shape = _shape(first.input_type.get("input") if isinstance(first.input_type, dict) else None, chain[0][0])
    shape = in_shape
    ops: list[_Op] = []
    resets = LayerResets(asked[0])
    for name, node in chain[1:]:
        kind = type(node).__name__
        meta = unpack_metadata(node, name) if ours else None
        if ours:
            check_digest(node, meta, name)
        if kind == "Output":
            out_t = node.output_type.get("output") if isinstance(node.output_type, dict) else None
            if out_t is not None and np.asarray(out_t).size and _shape(out_t, name) != shape:
                raise UnsupportedError(f"{name}: output shape {_shape(out_t, name)} does not match the "
                                  f"network's output {shape}")
            break
        if kind in ("Affine", "Linear"):
            w = _float_array(node.weight, "weight", name, ndim=2)
            if min(w.shape) < 1:
                raise FormatError(f"{name}: weight of shape {w.shape} is empty")
            b = _float_array(node.bias, "bias", name, ndim=1) if kind == "Affine" else None
            if len(shape) > 1 and int(np.prod(shape)) == w.shape[1] and not any(o.kind == "conv" for o in ops):
                notes.append(f"{name}: {kind} on a {shape} input; flattened first")
                ops.append(_Op("flatten", name, in_shape=shape, out_shape=(int(np.prod(shape)),)))
                shape = (int(np.prod(shape)),)
            if len(shape) != 1 or w.shape[1] != shape[0]:
                raise FormatError(f"{name}: weight of shape {w.shape} cannot take an input of shape {shape}")
            if b is not None and b.shape != (w.shape[0],):
                raise FormatError(f"{name}: bias of shape {b.shape} does not match weight {w.shape}")
            raw = (_native(node.weight, np.float32), None if b is None else _native(node.bias, np.float32))
            w, b, raw = _unfold(meta, w, b, raw)
            op = _Op("dense", name, weight=w, bias=b, in_shape=shape, out_shape=(w.shape[0],), meta=meta, raw=raw)
            ops.append(op)
            shape = op.out_shape
            continue
        if kind == "Conv2d":
            w = _float_array(node.weight, "weight", name, ndim=4)
            b = _float_array(node.bias, "bias", name, ndim=1)
            groups = _ints(node.groups, 1, "groups", name, 1)[0]
            dil = _ints(node.dilation, 2, "dilation", name, 1)
            if groups != 1 or dil != (1, 1):
                raise UnsupportedError(f"{name}: grouped or dilated convolutions are not supported")
            stride = _ints(node.stride, 2, "stride", name, 1)
            kh, kw = int(w.shape[2]), int(w.shape[3])
            if min(w.shape) < 1:
                raise FormatError(f"{name}: weight of shape {w.shape} is empty")
            pad = padding_of(node)
            if isinstance(pad, str):
                if pad == "valid":
                    padding = (0, 0)
                elif pad == "same" and stride == (1, 1) and kh % 2 and kw % 2:
                    padding = (kh // 2, kw // 2)
                else:
                    raise UnsupportedError(f"{name}: padding {pad!r} with this kernel/stride is not supported")
            else:
                padding = _ints(pad, 2, "padding", name, 0)
            if len(shape) != 3 or w.shape[1] != shape[0]:
                raise FormatError(f"{name}: weight of shape {w.shape} cannot take an input of shape {shape}")
            if b.shape != (w.shape[0],):
                raise FormatError(f"{name}: bias of shape {b.shape} does not match weight {w.shape}")
            h = (shape[1] + 2 * padding[0] - kh) // stride[0] + 1
            wd = (shape[2] + 2 * padding[1] - kw) // stride[1] + 1
            if h < 1 or wd < 1:
                raise FormatError(f"{name}: a {kh}x{kw} kernel does not fit a {shape[1]}x{shape[2]} input")
            w, b, raw = _unfold(meta, w, b, (_native(node.weight, np.float32), _native(node.bias, np.float32)))
            op = _Op("conv", name, weight=w, bias=b, stride=stride, padding=padding, kernel=(kh, kw),
                     in_shape=shape, out_shape=(int(w.shape[0]), h, wd), meta=meta, raw=raw)
            ops.append(op)
            shape = op.out_shape
            continue
        if kind in ("AvgPool2d", "SumPool2d"):
            k = _ints(node.kernel_size, 2, "kernel_size", name, 1)
            s = _ints(node.stride, 2, "stride", name, 1)
            p = _ints(node.padding, 2, "padding", name, 0)
            if p != (0, 0):
                raise UnsupportedError(f"{name}: padded pooling is not supported")
            if len(shape) != 3:
                raise FormatError(f"{name}: pooling needs a (C, H, W) input, got {shape}")
            out = (shape[0], (shape[1] - k[0]) // s[0] + 1, (shape[2] - k[1]) // s[1] + 1)
            if out[1] < 1 or out[2] < 1:
                raise FormatError(f"{name}: a {k} pool does not fit a {shape} input")
            ops.append(_Op("pool", name, kernel=k, stride=s, sum_pool=kind == "SumPool2d", in_shape=shape,
                           out_shape=out))
            shape = out
            continue
        if kind == "Flatten":
            out = (int(np.prod(shape)),)
            ops.append(_Op("flatten", name, in_shape=shape, out_shape=out))
            shape = out
            continue
        if kind == "Identity":
            continue
        if kind == "Scale":
            s = _float_array(node.scale, "scale", name)
            try:
                s = np.broadcast_to(s, shape)
            except ValueError:
                raise FormatError(f"{name}: scale of shape {s.shape} does not match its input {shape}") from None
            ops.append(_Op("scale", name, scale=s, in_shape=shape, out_shape=shape, meta=meta))
            continue
        if kind in NEURON_TYPES:
            dn = to_discrete(node, dt, conv, name, shape, reset=resets.take(name), single_spike=asked[1],
                             norm_input=asked[2])
            ops.append(_Op("neuron", name, neuron=dn, in_shape=shape, out_shape=shape, meta=meta, node=node))
            notes.extend(n for n in dn.notes if n not in notes)
            continue
        reason = _REFUSED.get(kind, "it has no neurodeploy equivalent")
        raise UnsupportedError(f"{name}: NIR {kind} cannot be imported: {reason}")
    resets.finish()  # a chain: its layers come in the file's order
    if resets.note():
        notes.append(resets.note())
    return in_shape, ops


def _unfold(meta: dict[str, Any] | None, w: np.ndarray, b: np.ndarray | None, raw: tuple[Any, Any]):
    """A synapse of ours whose neuron's input gain was folded into it: its exact weights back."""
    g = (meta or {}).get("input_gain")
    if g is None:
        return w, b, raw
    if isinstance(g, bool) or not isinstance(g, int | float) or not 0 < g <= 1:
        raise FormatError(f"neurodeploy metadata has an invalid input gain {g!r}")
    raw = tuple(None if a is None else unfold_gain(a, float(g)) for a in raw)
    return (raw[0].astype(np.float64), None if raw[1] is None else raw[1].astype(np.float64), raw)


# ------------------------------------------------------------------------------------------ neurons
def _own_neuron(op: _Op, dt: float) -> None:
    """Restore a neuron written by neurodeploy from its metadata, checking it against the NIR node."""
    meta = op.meta or {}
    try:
        cfg = NeuronConfig(**meta["neuron"])
        state = {str(k): float(v) for k, v in meta.get("state", {}).items()}
    except (KeyError, TypeError, ValueError, AttributeError, NeurodeployError) as exc:
        raise FormatError(f"{op.name}: neurodeploy metadata has no valid neuron config ({exc})") from None
    node = op.node
    v_th = state.get("v_th_fixed")
    if v_th is None and "theta" in state:
        v_th = float(torch.nn.functional.softplus(torch.tensor(state["theta"])).clamp(min=1e-8))
    expected: dict[str, float] = {"v_threshold": v_th if v_th is not None else cfg.threshold}
    kind = type(node).__name__
    if cfg.model == "cuba":
        expected.update(cuba_parameters(cfg.current_decay, cfg.voltage_decay, dt))
        want = "CubaLIF"
    else:
        b = meta.get("decay")
        if not isinstance(b, int | float) or isinstance(b, bool) or not math.isfinite(b):
            raise FormatError(f"{op.name}: neurodeploy metadata has no per-step decay")
        if b >= 1.0:
            expected["r"], want = if_resistance(dt), "IF"
        else:
            form = "leak" if cfg.model == "if" else cfg.form
            expected["tau"], expected["r"] = lif_parameters(float(b), form, dt)
            if meta.get("gain_in_synapse"):
                expected["r"] = 1.0
            want = "LIF"
    if kind != want:
        raise FormatError(f"{op.name}: neurodeploy metadata describes a {want} neuron but the node is {kind}")
    for attr, value in expected.items():
        arr = np.asarray(getattr(node, attr), dtype=np.float64)
        if not np.allclose(arr, value, rtol=REL_TOL, atol=0.0):
            raise FormatError(f"{op.name}: {attr} disagrees with the neurodeploy metadata (edited after "
                              "export?); import with convention='nir' and dt to use the NIR values only")
    op.config, op.state = cfg, state


def _foreign_neuron(op: _Op, syn: _Op | None, approximate: bool, notes: list[str]) -> None:
    """Turn a :class:`DiscreteNeuron` into a neuron config, folding gains into ``syn``."""
    dn = op.neuron
    where = op.name
    for flag, what in ((dn.reset_after_decay, "a reset after the decay"), (not dn.strict, "spikes at v >= threshold"),
                       (np.any(dn.v_init != 0), "a non-zero initial potential")):
        if flag:
            raise UnsupportedError(f"{where}: {what} has no template neuron")
    if syn is None:
        raise UnsupportedError(f"{where}: spiking neurons must directly follow an Affine, Linear or Conv2d "
                               "layer")
    cfg: dict[str, Any] = {"reset": dn.reset}
    denom = 1.0
    if dn.kind == "cuba":
        factors = []
        for arr, what in ((dn.current_decay, "current decay"), (dn.decay, "voltage decay")):
            f = uniform(arr, what, where)
            d = DECAY_UNIT * (1.0 - f)
            rd = int(round(d))
            if abs(d - rd) > 1e-6 * DECAY_UNIT:
                if not approximate:
                    raise UnsupportedError(f"{where}: {what} {f:.6g} per step is not a multiple of 1/{DECAY_UNIT} "
                                           "(neurodeploy's CUBA decays are Loihi's); pass approximate=True "
                                           "to round it")
                notes.append(f"{where}: {what} {f:.6g} rounded to {(DECAY_UNIT - rd) / DECAY_UNIT:.6g}")
            factors.append(min(max(rd, 0), DECAY_UNIT))
        cfg.update(model="cuba", current_decay=factors[0], voltage_decay=factors[1])
    else:
        b = uniform(dn.decay, "time constant", where)
        g = np.asarray(dn.gain, dtype=np.float64)
        if dn.kind == "if" or b >= 1.0:
            cfg["model"] = "if"
        else:
            cfg.update(model="lif", tau=1.0 / (1.0 - b))
            if np.allclose(g, 1.0 - b, rtol=REL_TOL, atol=0.0) and not np.allclose(g, 1.0, rtol=REL_TOL, atol=0.0):
                cfg["form"], denom = "decay_input", 1.0 - b
            else:
                cfg["form"] = "leak"
    th = np.asarray(dn.threshold, dtype=np.float64)
    try:
        v_th = uniform(th, "threshold", where)
        per_neuron_th = None
    except UnsupportedError:
        v_th, per_neuron_th = 1.0, th
        notes.append(f"{where}: per-neuron thresholds folded into the weights (threshold 1)")
    cfg["threshold"] = v_th
    scale = np.asarray(dn.gain, dtype=np.float64) / denom
    offset = np.asarray(dn.drive, dtype=np.float64) / denom
    if per_neuron_th is not None:
        scale, offset = scale / per_neuron_th, offset / per_neuron_th
    if not np.allclose(scale, 1.0, rtol=REL_TOL, atol=0.0) or np.any(offset != 0):
        _fold_into(syn, np.broadcast_to(scale, dn.shape), np.broadcast_to(offset, dn.shape), where)
        notes.append(f"{where}: input gain/leak of the NIR neuron folded into {syn.name}")
    try:
        op.config = NeuronConfig(**cfg)
    except ConfigError as exc:
        raise UnsupportedError(f"{where}: {exc}") from None
    op.state = {}


def _per_output(arr: np.ndarray, syn: _Op, what: str, where: str) -> np.ndarray:
    if syn.kind == "dense":
        return arr.reshape(-1)
    flat = arr.reshape(arr.shape[0], -1)
    if not np.allclose(flat, flat[:, :1], rtol=REL_TOL, atol=0.0):
        raise UnsupportedError(f"{where}: {what} varies within a channel; it cannot be folded into a convolution")
    return flat[:, 0]


def _fold_into(syn: _Op, scale: np.ndarray, offset: np.ndarray, where: str) -> None:
    s = _per_output(scale, syn, "input gain", where)
    o = _per_output(offset, syn, "constant drive", where)
    shape = (-1,) + (1,) * (syn.weight.ndim - 1)
    syn.weight = syn.weight * s.reshape(shape)
    bias = syn.bias if syn.bias is not None else np.zeros(syn.weight.shape[0])
    syn.bias = bias * s + o
    syn.exact = False


def _scale_next(ops: list[_Op], i: int, factor: np.ndarray, where: str) -> None:
    """Fold an input scaling (per input element) into the next synapse layer after ``ops[i]``."""
    for j in range(i + 1, len(ops)):
        nxt = ops[j]
        if nxt.kind in ("flatten", "pool"):
            continue
        if nxt.kind == "dense":
            f = np.broadcast_to(factor, ops[i].out_shape).reshape(-1)
            if nxt.weight.shape[1] != f.size:
                break
            nxt.weight = nxt.weight * f[None, :]
        elif nxt.kind == "conv":
            flat = np.broadcast_to(factor, ops[i].out_shape).reshape(ops[i].out_shape[0], -1)
            if not np.allclose(flat, flat[:, :1], rtol=REL_TOL, atol=0.0):
                raise UnsupportedError(f"{where}: a scale that varies within a channel cannot be folded")
            nxt.weight = nxt.weight * flat[:, 0].reshape(1, -1, 1, 1)
        else:
            break
        nxt.exact = False
        return
    raise UnsupportedError(f"{where}: a scaling must be followed by an Affine, Linear or Conv2d layer")


# ------------------------------------------------------------------------------------------ structure
def _normalise(ops: list[_Op], ours: bool, approximate: bool, dt: float, notes: list[str]) -> list[_Op]:
    out: list[_Op] = []
    for i, op in enumerate(ops):
        if op.kind == "pool" and op.sum_pool:
            _scale_next(ops, i, np.full(op.out_shape, float(op.kernel[0] * op.kernel[1])), op.name)
            notes.append(f"{op.name}: sum pooling imported as average pooling with its window size folded "
                         "into the next layer")
        if op.kind == "scale":
            prev = out[-1] if out else None
            if ours and (op.meta or {}).get("role") == "trsg_output" and prev is not None \
                    and prev.kind == "neuron" and prev.config is not None \
                    and prev.config.scale == "threshold_robust":
                v_th = np.asarray(prev.node.v_threshold, dtype=np.float64)
                if not np.allclose(op.scale, np.broadcast_to(v_th, op.scale.shape), rtol=REL_TOL, atol=0.0):
                    raise FormatError(f"{op.name}: the TrSG output scale disagrees with the threshold of "
                                      f"{prev.name}")
                continue  # TrSG output V * spikes, restored by the neuron's scale mode
            _scale_next(ops, i, op.scale, op.name)
            continue
        if op.kind == "neuron":
            prev = out[-1] if out else None
            syn = prev if prev is not None and prev.kind in ("dense", "conv") else None
            if ours and op.meta is not None:
                if syn is None:
                    raise FormatError(f"{op.name}: neurons do not follow a synapse layer")
                _own_neuron(op, dt)
            else:
                _foreign_neuron(op, syn, approximate, notes)
        out.append(op)
    return out


def _spec_fields(ops: list[_Op], in_shape: tuple[int, ...], hint: dict[str, Any]) -> dict[str, Any]:
    """Architecture fields of the ModelSpec that rebuilds ``ops``."""
    kinds = [o.kind for o in ops]
    if not ops or ops[-1].kind not in ("dense", "neuron"):
        raise UnsupportedError("the network must end with an Affine/Linear layer or spiking neurons after one")
    readout = "spike_count" if ops[-1].kind == "neuron" else "mean"
    body = ops[:-1] if readout == "spike_count" else ops
    if body[-1].kind != "dense":
        raise UnsupportedError("the last synapse layer must be an Affine or Linear layer")
    num_classes = int(body[-1].weight.shape[0])
    if num_classes < 2:
        raise UnsupportedError(f"the network has {num_classes} output; at least 2 classes are needed")
    # split at the flatten before the dense head
    conv_part: list[_Op] = []
    head = body
    if "conv" in kinds:
        flats = [i for i, o in enumerate(body) if o.kind == "flatten"]
        if not flats:
            raise UnsupportedError("convolutions must be followed by a Flatten before the Affine layers")
        conv_part, head = body[:flats[-1]], body[flats[-1] + 1:]
    elif head and head[0].kind == "flatten":
        head = head[1:]
    for o in head:
        if o.kind not in ("dense", "neuron"):
            raise UnsupportedError(f"{o.name}: {o.kind} is not supported in the fully connected part")
    # dense head: (dense neuron)* dense
    dense_widths = []
    for j, o in enumerate(head[:-1]):
        want = "dense" if j % 2 == 0 else "neuron"
        if o.kind != want:
            raise UnsupportedError(f"{o.name}: expected {'an Affine layer' if want == 'dense' else 'spiking neurons'} "
                                   "in the fully connected part (Affine and neurons alternate)")
        if want == "dense":
            dense_widths.append(int(o.weight.shape[0]))
    if len(head) % 2 != 1:
        raise UnsupportedError("the fully connected part must alternate Affine layers and neurons")
    fields: dict[str, Any] = {"input_shape": tuple(in_shape), "num_classes": num_classes, "readout": readout}
    if not conv_part:
        if not dense_widths:
            raise UnsupportedError("a network without hidden layers cannot be rebuilt (MLPs need at least one)")
        fields.update(arch="mlp", hidden=dense_widths, dense=[])
        return fields
    if len(in_shape) != 3:
        raise UnsupportedError(f"convolutions need a (C, H, W) input, got {in_shape}")
    convs = [o for o in conv_part if o.kind == "conv"]
    k = convs[0].kernel[0]
    for c in convs:
        if c.kernel != (k, k) or c.padding != (k // 2, k // 2):
            raise UnsupportedError(f"{c.name}: a {c.kernel[0]}x{c.kernel[1]} kernel with padding {c.padding}; "
                                   f"neurodeploy's ConvNet/VGG use one square kernel with padding kernel // 2 "
                                   f"({k}x{k}, padding {k // 2})")
    plan: list[Any] = []
    strides = []
    expect_neuron = False
    for o in conv_part:
        if expect_neuron and o.kind != "neuron":
            raise UnsupportedError(f"{o.name}: each convolution must be followed by spiking neurons")
        if o.kind == "conv":
            plan.append(int(o.weight.shape[0]))
            strides.append(o.stride)
            expect_neuron = True
        elif o.kind == "neuron":
            if not expect_neuron:
                raise UnsupportedError(f"{o.name}: spiking neurons must follow a convolution")
            expect_neuron = False
        elif o.kind == "pool":
            if o.kernel != (2, 2) or o.stride != (2, 2) or not plan or plan[-1] == "P":
                raise UnsupportedError(f"{o.name}: only 2x2 pooling with stride 2 after spiking neurons is "
                                       "supported")
            plan.append("P")
        else:
            raise UnsupportedError(f"{o.name}: {o.kind} is not supported between convolutions")
    if expect_neuron:
        raise UnsupportedError("the last convolution has no spiking neurons after it")
    channels = [p for p in plan if p != "P"]
    pools = plan.count("P")
    fields.update(kernel=k, dense=dense_widths)
    stride_one = all(s == (1, 1) for s in strides)
    strided = strides[0] == (1, 1) and all(s == (2, 2) for s in strides[1:]) and len(strides) > 1
    convnet_avg = stride_one and plan == [x for c in channels for x in (c, "P")]
    candidates = []
    if convnet_avg:
        candidates.append({"arch": "convnet", "hidden": channels, "pool": "avg"})
    if strided and pools == 0:
        candidates.append({"arch": "convnet", "hidden": channels, "pool": "none"})
    if stride_one:
        candidates.append({"arch": "vgg", "hidden": plan, "pool": "avg" if pools else "none"})
    if not candidates:
        raise UnsupportedError("the convolution strides do not match a neurodeploy ConvNet or VGG "
                               "(stride 1 everywhere, or stride 2 after the first convolution without pooling)")
    pick = next((c for c in candidates if c["arch"] == hint.get("arch")), candidates[0])
    fields.update(pick)
    return fields


# ------------------------------------------------------------------------------------------ building
def _resolve(graph_meta: dict[str, Any] | None, convention: str | None, dt: float | None,
             notes: list[str], reset: str | None = None) -> tuple[bool, Any, float]:
    ours = graph_meta is not None and graph_meta.get("format") == FORMAT_TAG
    if ours and reset is not None:
        raise ConfigError(f"--reset {reset}: this file's neurodeploy metadata records each neuron's reset, which "
                          "decides; import it without --reset")
    if graph_meta is not None and not ours:
        raise FormatError("the graph's neurodeploy metadata has no format tag")
    if ours and graph_meta.get("version") != FORMAT_VERSION:
        raise FormatError(f"neurodeploy NIR metadata version {graph_meta.get('version')!r} is not supported "
                          f"(this version reads {FORMAT_VERSION})")
    if dt is not None and (isinstance(dt, bool) or not isinstance(dt, int | float) or not math.isfinite(dt)
                           or dt <= 0):
        raise ConfigError(f"dt must be a positive number of seconds, got {dt!r}")
    if convention is None:
        if ours:
            convention = "neurodeploy"
        elif dt is not None:
            convention = "nir"
        else:
            raise ConfigError("this NIR file does not record its time step or the library that wrote it; pass "
                              "--convention snntorch|spikingjelly|norse|sinabs|rockpool (convention=...) or --dt "
                              "(dt=..., seconds, with the plain 'nir' Euler convention)")
    conv = get_convention(convention)
    if conv.name == "neurodeploy":
        if not ours:
            raise FormatError("the NIR file has no neurodeploy metadata; it was not written by neurodeploy "
                              "(choose another convention)")
        stored = graph_meta.get("dt")
        if isinstance(stored, bool) or not isinstance(stored, int | float) or not math.isfinite(stored) \
                or stored <= 0:
            raise FormatError(f"neurodeploy metadata has an invalid dt {stored!r}")
        if dt is not None and not close(float(dt), float(stored)):
            notes.append(f"dt {dt:g} s ignored: the file's metadata says {stored:g} s")
        return True, conv, float(stored)
    if dt is None and conv.dt_asked:
        raise UnsupportedError(f"{conv.library} {conv.version} files do not record the time step their network ran "
                               f"with, which sets every decay; pass --dt (dt=..., in seconds; {conv.library}'s "
                               f"default is {conv.dt:g})")
    use_dt = dt if dt is not None else conv.dt
    if use_dt is None:
        raise ConfigError(f"convention {conv.name!r} needs dt (the time step in seconds the file was made for)")
    return False, conv, float(use_dt)


def _load(model: torch.nn.Module, ops: list[_Op]) -> None:
    synapses = [o for o in ops if o.kind in ("dense", "conv")]
    neurons = [o for o in ops if o.kind == "neuron"]
    stages_syn = [m for m in model.stages if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)]
    stages_neu = [m for m in model.stages if isinstance(m, SpikingNeuron)]
    if len(synapses) != len(stages_syn) or len(neurons) != len(stages_neu):
        raise FormatError("the rebuilt model's layers do not line up with the NIR graph")
    with torch.no_grad():
        for op, mod in zip(synapses, stages_syn, strict=True):
            w, b = op.raw if op.exact else (op.weight, op.bias)
            if tuple(mod.weight.shape) != tuple(np.shape(w)):
                raise FormatError(f"{op.name}: weight shape {np.shape(w)} does not fit the rebuilt layer "
                                  f"{tuple(mod.weight.shape)}")
            mod.weight.copy_(torch.as_tensor(np.asarray(w)).to(mod.weight.dtype))
            if mod.bias is not None:
                mod.bias.copy_(torch.zeros_like(mod.bias) if b is None else
                               torch.as_tensor(np.asarray(b)).to(mod.bias.dtype))
        for op, mod in zip(neurons, stages_neu, strict=True):
            own = dict(mod.state_dict())
            for key, value in (op.state or {}).items():
                if key not in own or own[key].numel() != 1:
                    raise FormatError(f"{op.name}: neurodeploy metadata has an unknown neuron state {key!r}")
                getattr(mod, key).fill_(value)


def nir_to_checkpoint(graph: nir.NIRGraph, *, convention: str | None = None, dt: float | None = None,
                      steps: int | None = None, encoding: Any = None, approximate: bool = False,
                      source: str | None = None, reset: str | None = None, single_spike: bool = False,
                      norm_input: bool | None = None) -> NirImport:
    """Turn a NIR graph into a neurodeploy :class:`Checkpoint` (see the module docstring).

    Args:
        graph: the NIR graph (e.g. from :func:`~neurodeploy.export.nir_io.read_nir`).
        convention: how neuron parameters are read: ``"neurodeploy"`` (default for files written by
            neurodeploy), ``"nir"``, ``"snntorch"``, ``"norse"``, ``"sinabs"`` or ``"rockpool"``.
        dt: time step in seconds the file's time constants are meant for (default: the
            convention's; required for Norse and Rockpool files, whose writers take the network's dt
            and do not store it; neurodeploy files use their stored value).
        steps: time steps T of the imported model (default: the file's, else 8).
        encoding: input encoding (default: the file's, else ``"direct"``).
        approximate: round CUBA decays to Loihi's ``1/DECAY_UNIT`` units instead of refusing.
        source: name of the file, recorded in the checkpoint's ``meta``.
        reset: the reset where the convention's files do not record it (snnTorch and Sinabs:
            ``subtract`` or ``zero``; ``none`` is refused): one for every spiking layer, or a
            comma-separated list with one per spiking layer in the file's order.
        single_spike: a Sinabs or Rockpool network used single-spike neurons.
        norm_input: a Sinabs LIF scaled its input by ``1 - decay`` (Sinabs' default).

    A graph that a template rebuilds exactly becomes a template :class:`Checkpoint`; any other
    graph the float graph IR can hold (branches, recurrence, per-neuron parameters, read-outs,
    delays, other conventions' spike rules) a
    :class:`~neurodeploy.models.graph_net.GraphCheckpoint` (:attr:`NirImport.kind`).

    Raises :class:`FormatError` (malformed graph or metadata), :class:`UnsupportedError` (no
    neurodeploy equivalent) or :class:`ConfigError` (bad or missing option).
    """
    notes: list[str] = []
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ConfigError(f"steps must be a positive integer, got {steps!r}")
    if encoding is not None:
        Encoding.from_config(encoding)  # ConfigError on a bad encoding
    if not isinstance(graph, nir.NIRGraph):
        raise FormatError(f"expected a NIR graph, got {type(graph).__name__}")
    check_edges(graph)
    graph_meta = unpack_metadata(graph, "graph")
    ours, conv, use_dt = _resolve(graph_meta, convention, dt, notes, reset)
    if ours:
        check_digest(graph, graph_meta, "graph")
        first = graph.nodes.get("input")
        if first is not None:
            check_digest(first, unpack_metadata(first, "input"), "input")
    if ours and graph_meta.get("network") == "graph":  # a graph network neurodeploy wrote
        return _own_graph(graph, conv, use_dt, steps, encoding or graph_meta.get("encoding"), source, notes,
                          graph_meta.get("steps"))
    try:
        return _convert(graph, graph_meta, ours, conv, use_dt, steps, encoding, approximate, source, notes,
                        (reset, single_spike, norm_input))
    except (UnsupportedError, FormatError) as exc:
        if not ours:
            try:
                return _as_graph(graph, conv, use_dt, steps, source, (reset, single_spike, norm_input), exc,
                                 encoding)
            except NeurodeployError as graph_exc:
                raise graph_exc from None  # the general reader's reason
        if isinstance(exc, FormatError):
            raise
        # neurodeploy writes only what it can read back: the file was changed after it was written
        raise FormatError(f"{exc} (the file was changed after neurodeploy wrote it)") from None


def _as_graph(graph: nir.NIRGraph, conv: Any, use_dt: float, steps: int | None, source: str | None,
              asked: tuple[Any, Any, Any], template_error: NeurodeployError, encoding: Any = None) -> NirImport:
    """The import as a graph checkpoint (when no template rebuilds the graph), with the input
    ``encoding`` the caller gave (else the graph network's default, direct)."""
    from neurodeploy.export.nir_graph import graph_from_nir

    reset, single_spike, norm_input = asked
    g = graph_from_nir(graph, convention=conv.name, dt=use_dt, reset=reset, single_spike=single_spike,
                       norm_input=norm_input)
    notes = list(g.meta.get("notes", []))
    notes.append(f"imported as a graph network (no template: {template_error})")
    if steps is None:
        steps = DEFAULT_STEPS
        notes.append(f"the file does not record the number of time steps; using T = {DEFAULT_STEPS}")
    meta: dict[str, Any] = {"imported_from": {"format": "nir", "file": source, "convention": conv.name,
                                              "dt": use_dt, "warnings": notes}}
    if encoding is not None:
        meta["encoding"] = Encoding.from_config(encoding).to_dict()
    return NirImport(GraphCheckpoint(g, steps, meta), conv.name, use_dt, notes)


def _own_graph(graph: nir.NIRGraph, conv: Any, use_dt: float, steps: int | None, encoding: Any,
               source: str | None, notes: list[str], stored_steps: Any) -> NirImport:
    """A graph network written by :func:`~neurodeploy.export.nir.graph_checkpoint_to_nir`, as a graph
    checkpoint with its stored T and encoding."""
    from neurodeploy.export.nir_graph import graph_from_nir

    g = graph_from_nir(graph)
    notes = notes + [n for n in g.meta.get("notes", []) if n not in notes]
    if steps is None:
        if isinstance(stored_steps, bool) or not isinstance(stored_steps, int) or stored_steps < 1:
            raise FormatError(f"neurodeploy metadata has an invalid number of time steps {stored_steps!r}")
        steps = stored_steps
    try:
        enc = Encoding.from_config(encoding if encoding is not None else {"kind": "direct"}).to_dict()
    except (ConfigError, TypeError, ValueError) as exc:
        raise FormatError(f"neurodeploy metadata: {exc}") from None
    meta = {"imported_from": {"format": "nir", "file": source, "convention": conv.name, "dt": use_dt,
                              "warnings": notes}, "encoding": enc}
    return NirImport(GraphCheckpoint(g, steps, meta), conv.name, use_dt, notes)


def _convert(graph: nir.NIRGraph, graph_meta: dict[str, Any] | None, ours: bool, conv: Any, use_dt: float,
             steps: int | None, encoding: Any, approximate: bool, source: str | None,
             notes: list[str], asked: tuple[Any, Any, Any] = (None, False, None)) -> NirImport:
    stored_spec = graph_meta.get("spec") if ours else None
    hint: dict[str, Any] = stored_spec if isinstance(stored_spec, dict) else {}
    chain = _chain(graph)
    in_shape, ops = _read_ops(chain, ours, conv, use_dt, notes, asked)
    ops = _normalise(ops, ours, approximate, use_dt, notes)
    fields = _spec_fields(ops, in_shape, hint)
    if steps is None:
        steps = graph_meta.get("steps") if ours else None
        if steps is None:
            steps = DEFAULT_STEPS
            notes.append(f"the file does not record the number of time steps; using T = {DEFAULT_STEPS}")
    if encoding is None:
        encoding = graph_meta.get("encoding") if ours else None
        encoding = encoding if encoding is not None else {"kind": "direct"}
    try:
        enc = Encoding.from_config(encoding).to_dict()
    except (ConfigError, TypeError, ValueError) as exc:
        raise (FormatError(f"neurodeploy metadata: {exc}") if ours else exc) from None
    neuron_ops = [o for o in ops if o.kind == "neuron"]
    base: dict[str, Any] = {}
    if ours and hint.get("neuron"):
        try:
            base = NeuronConfig(**hint["neuron"]).to_dict()
        except (TypeError, ValueError, NeurodeployError) as exc:
            raise FormatError(f"neurodeploy metadata has an invalid neuron config ({exc})") from None
    if not base and neuron_ops:
        base = neuron_ops[0].config.to_dict()
    syn_bias = [o.bias for o in ops if o.kind in ("dense", "conv")]
    bias = any(b is not None and np.any(b != 0) for b in syn_bias) or (ours and bool(hint.get("bias", False))
                                                                       and any(b is not None for b in syn_bias))
    try:
        spec = ModelSpec(**fields, bias=bias, batch_norm=False, steps=steps, encoding=enc, neuron=base)
        model = build_model(spec)
        names = [f"stages.{i}" for i, m in enumerate(model.stages) if isinstance(m, SpikingNeuron)]
        overrides = {}
        base_cfg = NeuronConfig(**spec.neuron).to_dict()
        for name, op in zip(names, neuron_ops, strict=True):
            diff = {k: v for k, v in op.config.to_dict().items() if base_cfg.get(k) != v}
            if diff:
                overrides[name] = diff
        if overrides:
            spec = ModelSpec(**{**spec.to_dict(), "overrides": overrides})
            model = build_model(spec)
    except (ConfigError, TypeError, ValueError) as exc:
        raise (FormatError(f"neurodeploy metadata: {exc}") if ours else UnsupportedError(str(exc))) from None
    _load(model, ops)
    model.eval()
    meta = {"imported_from": {"format": "nir", "file": source, "convention": conv.name, "dt": use_dt,
                              "warnings": list(notes)}}
    if ours and graph_meta.get("quantization"):
        meta["nir_quantization"] = graph_meta["quantization"]
    try:
        ck = Checkpoint.from_model(model, meta=meta)
    except CheckpointError as exc:  # pragma: no cover - from_model does not validate
        raise FormatError(str(exc)) from None
    return NirImport(ck, conv.name, use_dt, notes)


def import_nir(path: str | Path, out: str | Path | None = None, *, convention: str | None = None,
               dt: float | None = None, steps: int | None = None, encoding: Any = None,
               approximate: bool = False, reset: str | None = None, single_spike: bool = False,
               norm_input: bool | None = None, force: bool = False) -> NirImport:
    """Read the NIR file ``path`` and turn it into a checkpoint, saved atomically to ``out`` if given.

    See :func:`nir_to_checkpoint` for the options. A corrupt, truncated or foreign file raises
    :class:`~neurodeploy.errors.FormatError` with one line. An existing ``out`` that holds another
    kind of checkpoint (a template checkpoint where a graph checkpoint goes, or the reverse; a TTFS
    or foreign torch archive) is kept, with an :class:`~neurodeploy.errors.OutputError`, unless
    ``force``.
    """
    graph = read_nir(path)
    from neurodeploy.export.nir_ttfs import is_ttfs_nir

    if is_ttfs_nir(graph):
        raise UnsupportedError(f"{path} holds a TTFS network, not a checkpoint's network; read it "
                               "with neurodeploy.export.nir_ttfs.read_ttfs_nir")
    result = nir_to_checkpoint(graph, convention=convention, dt=dt, steps=steps, encoding=encoding,
                               approximate=approximate, source=str(path), reset=reset, single_spike=single_spike,
                               norm_input=norm_input)
    if out is not None:
        if not force:
            _refuse_other_checkpoint(Path(out), result)
        result.path = result.checkpoint.save(out)
    return result


def _refuse_other_checkpoint(out: Path, result: NirImport) -> None:
    """Refuse to replace an existing ``out`` that holds another kind of checkpoint than ``result``'s."""
    from neurodeploy.ttfs.checkpoint import FORMAT as TTFS_FORMAT

    if not out.is_file() or out.stat().st_size == 0:
        return
    kinds = {CHECKPOINT_FORMAT: "template checkpoint", GRAPH_FORMAT: "graph checkpoint",
             TTFS_FORMAT: "TTFS checkpoint"}
    writes = GRAPH_FORMAT if result.kind == "graph" else CHECKPOINT_FORMAT
    try:
        payload = torch.load(out, map_location="cpu", weights_only=True)
        held = payload.get("format") if isinstance(payload, dict) else None
    except Exception:  # torch raises many types for foreign or corrupt files
        held = None
    if held == writes:
        return
    what = kinds.get(held, "file neurodeploy did not write as a checkpoint") if isinstance(held, str) else \
        "file neurodeploy did not write as a checkpoint"
    raise OutputError(f"{out} exists and holds a {what}; this import writes a {kinds[writes]}: pass "
                      "--force to replace it or choose another output path")
