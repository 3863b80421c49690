"""The exact ReLU <-> TTFS mapping (docs/methods.md §6.3).

**ReLU -> TTFS** (:func:`relu_to_ttfs`): a ``torch.nn.Sequential`` of ``Linear``, ``Conv2d``,
``ReLU``, ``BatchNorm1d/2d`` (eval statistics), ``Flatten``, ``MaxPool2d``, ``Dropout`` and
``Identity`` (nested ``Sequential`` s are walked; ``ReLU6``/``Hardtanh(0, c)`` are ReLUs whose
window is fixed to ``c``) becomes a :class:`~neurodeploy.ttfs.network.TTFSNetwork`:

1. BatchNorm folding: a BN right after a synapse layer (before its ReLU, possibly across a
   max-pool) goes into that layer (``W <- k W``, ``b <- k b + beta``); a BN after a ReLU waits and
   goes into the next synapse layer (``W <- W diag(k)``, ``b <- b + W beta``). Moving a BN with a
   negative scale across a max-pool turns that channel into a min-pool. Into a zero-padded conv
   the shift ``beta`` folds to a bias per output position (border positions see fewer shifted
   inputs): ``D`` then has shape ``[C, H, W]`` instead of ``[C]``.
2. ``input_range=(p, q)``: the affine map of ``[0, 1]`` onto the network's input range folds into
   the first synapse layer the same way, so the TTFS inputs always lie in ``[0, 1]``.
3. ``X_n`` = the largest (or quantile ``q`` of the positive) activation of layer ``n`` on the
   training inputs, each layer fed by the earlier layers clipped at their new windows; window
   ``L_n = headroom * X_n`` (default 1.5: 50 % head-room; 1.0 if a layer never fires).
4. ``W`` and ``D`` are copied: ``theta_i = L_n - D_i``. Inputs spike at ``t = 1 - x``.

**TTFS -> ReLU** (:func:`ttfs_to_relu`): the same weights, ``b = L - theta = D``, ReLU (or
``Hardtanh(0, L)``, which also reproduces clipping at the window); a bias per position becomes a
:class:`~neurodeploy.ttfs.relu_modules.PositionBias`, a pool with min-channels a
:class:`~neurodeploy.ttfs.relu_modules.MinMaxPool2d`.

Anything else (other layers, two synapse layers without a ReLU between them, a network not
ending in a synapse layer, ...) raises :class:`UnsupportedError` naming the layer.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurodeploy.errors import ConfigError, DataError, UnsupportedError
from neurodeploy.graph import nodes as gn
from neurodeploy.graph.from_model import nodes_from_module
from neurodeploy.graph.ir import Graph, GraphBuilder, GraphError
from neurodeploy.graph.passes import batch_norm_affine, fold_batch_norm, fold_bn_into
from neurodeploy.ttfs.network import DTYPE, Flatten, Synapse, TimePool, TTFSNetwork
from neurodeploy.ttfs.relu_modules import MinMaxPool2d, PositionBias

SUPPORTED_LAYERS = (
    "Linear",
    "Conv2d",
    "ReLU",
    "ReLU6",
    "Hardtanh(0, c)",
    "BatchNorm1d",
    "BatchNorm2d",
    "Flatten",
    "MaxPool2d",
    "Dropout",
    "Identity",
)

#: Largest number of positive activations a quantile is computed from (a strided subsample beyond).
QUANTILE_SAMPLES = 4_000_000


def flatten_sequential(model: nn.Module) -> list[nn.Module]:
    """The leaf modules of a (possibly nested) ``nn.Sequential``, in order."""
    if isinstance(model, nn.Sequential):
        out: list[nn.Module] = []
        for m in model:
            out.extend(flatten_sequential(m))
        return out
    return [model]


def _name(m: nn.Module) -> str:
    return type(m).__name__


@dataclass
class _Pending:
    """An affine map ``x_true = k * x + beta`` waiting to be folded into the next synapse layer;
    per channel on ``[C, H, W]`` tensors, per feature on ``[F]`` tensors."""

    k: torch.Tensor
    beta: torch.Tensor


_SUPPORTED_TYPES = (nn.Linear, nn.Conv2d, nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.BatchNorm1d, nn.BatchNorm2d,
                    nn.Flatten, nn.MaxPool2d, nn.Dropout, nn.Identity, PositionBias, MinMaxPool2d)


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def relu_graph(model: nn.Module, input_shape: tuple[int, ...]) -> Graph:
    """The float graph of a ReLU ``nn.Sequential`` (nested ones walked; float64, eval statistics):
    node ``layer i`` for leaf module ``i``, then ``output`` (``readout="last"``). Raises
    :class:`UnsupportedError` naming the layer for what the TTFS mapping cannot take."""
    if not isinstance(model, nn.Module):
        raise UnsupportedError(f"expected a torch nn.Sequential, got {type(model).__name__}")
    mods = flatten_sequential(copy.deepcopy(model).to(DTYPE).eval())
    b = GraphBuilder()
    last = b.add("input", gn.Input(tuple(int(v) for v in input_shape)))
    for i, m in enumerate(mods):
        where = f"layer {i} ({_name(m)})"
        meta = {"source": where}
        if not isinstance(m, _SUPPORTED_TYPES):
            raise UnsupportedError(f"{where} is not supported by the TTFS mapping; supported: "
                                   f"{', '.join(SUPPORTED_LAYERS)}")
        if isinstance(m, nn.Linear | nn.Conv2d) and m.weight.numel() == 0:
            raise UnsupportedError(f"{where} has no weights (weight of shape {tuple(m.weight.shape)}): a layer "
                                   "needs at least one input and one output")
        if isinstance(m, nn.Conv2d) and (m.groups != 1 or _pair(m.dilation) != (1, 1)
                                         or m.padding_mode != "zeros"):
            raise UnsupportedError(f"{where}: only groups=1, dilation=1 and zero padding are supported")
        if isinstance(m, nn.MaxPool2d) and (_pair(m.dilation) != (1, 1) or m.ceil_mode or m.return_indices):
            raise UnsupportedError(f"{where}: only dilation=1, ceil_mode=False pooling is supported")
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) and (
                not m.track_running_stats or m.running_mean is None or m.running_var is None):
            raise UnsupportedError(f"{where}: BatchNorm without running statistics cannot be folded")
        if isinstance(m, PositionBias):
            chain = [(f"layer {i}", gn.Bias(m.bias.detach().to(DTYPE).clone(), meta=meta))]
        elif isinstance(m, MinMaxPool2d):
            k = _pair(m.kernel_size)
            chain = [(f"layer {i}", gn.MaxPool(k, _pair(m.stride if m.stride is not None else k),
                                               _pair(m.padding), (1, 1), tuple(m.min_channels), meta=meta))]
        else:
            chain = [(f"layer {i}", node) for _, node in nodes_from_module(where, m)]
            for _, node in chain:
                node.meta["source"] = where
        for name, node in chain:
            last = b.add(name, node, last)
    b.add("output", gn.Output("last"), last)
    try:
        return b.build()
    except GraphError as exc:
        raise UnsupportedError(str(exc)) from None


def _fold(model: nn.Module, input_shape: tuple[int, ...], input_range: tuple[float, float]):
    """Fold ``model`` into TTFS stage descriptions. Returns (stages, fixed windows by spiking-layer
    index).

    The network enters through its float graph (:func:`relu_graph`); a batch norm right after a
    synapse layer is folded by the graph pass :func:`~neurodeploy.graph.passes.fold_batch_norm`,
    the others here with the same fold (:func:`~neurodeploy.graph.passes.fold_bn_into`,
    :func:`~neurodeploy.graph.passes.batch_norm_affine`).
    """
    graph = fold_batch_norm(relu_graph(model, input_shape))
    shapes = graph.shapes()
    stages: list[dict[str, Any]] = []
    pending: _Pending | None = None
    p, q = input_range
    if (p, q) != (0.0, 1.0):
        n = shapes["input"][0]
        pending = _Pending(torch.full((n,), q - p, dtype=DTYPE), torch.full((n,), p, dtype=DTYPE))
    awaiting: int | None = None  # stage index of a synapse layer still waiting for its ReLU
    pools_since: list[int] = []
    flatten_since = False
    fixed: dict[int, float] = {}
    for name in graph.order():
        m = graph.nodes[name]
        if isinstance(m, gn.Input | gn.Output):
            continue
        where = m.meta["source"]
        shape = shapes[graph.inputs_of(name)[0]]
        out_shape = shapes[name]
        if isinstance(m, gn.Affine):
            if awaiting is not None:
                raise UnsupportedError(f"{where} follows synapse layer without a ReLU between them")
            w = m.weight.clone()
            b = m.bias.clone() if m.bias is not None else torch.zeros(w.shape[0], dtype=DTYPE)
            if pending is not None:
                b = b + w @ pending.beta
                w = w * pending.k[None, :]
                pending = None
            stages.append({"kind": "dense", "weight": w, "bias": b, "in_shape": shape,
                           "out_shape": out_shape, "stride": (1, 1), "padding": (0, 0)})
            awaiting, pools_since, flatten_since = len(stages) - 1, [], False
        elif isinstance(m, gn.Conv):
            if awaiting is not None:
                raise UnsupportedError(f"{where} follows a synapse layer without a ReLU between them")
            pad = tuple(m.padding)
            w = m.weight.clone()
            b = m.bias.clone() if m.bias is not None else torch.zeros(w.shape[0], dtype=DTYPE)
            if pending is not None:
                if pad == (0, 0):
                    b = b + w.sum((2, 3)) @ pending.beta
                else:
                    shifted = pending.beta.view(1, -1, 1, 1).expand(1, *shape)
                    bmap = b.view(-1, 1, 1) + F.conv2d(shifted, w, None, m.stride, pad)[0]
                    b = bmap[:, 0, 0].clone() if bool(torch.all(bmap == bmap[:, :1, :1])) else bmap
                w = w * pending.k.view(1, -1, 1, 1)
                pending = None
            stages.append({"kind": "conv", "weight": w, "bias": b, "in_shape": shape,
                           "out_shape": out_shape, "stride": tuple(m.stride), "padding": pad})
            awaiting, pools_since, flatten_since = len(stages) - 1, [], False
        elif isinstance(m, gn.Bias):
            if awaiting is None or pools_since or flatten_since or stages[awaiting]["kind"] != "conv":
                raise UnsupportedError(f"{where} must directly follow a conv layer")
            s = stages[awaiting]
            s["bias"] = s["bias"].view(-1, 1, 1) + m.bias if s["bias"].dim() == 1 else s["bias"] + m.bias
        elif isinstance(m, gn.BatchNorm):
            if m.meta.get("module") == "BatchNorm1d" and len(shape) != 1:
                raise UnsupportedError(f"{where} on a {list(shape)} tensor is not supported")
            if awaiting is not None:
                s = stages[awaiting]
                if flatten_since:
                    raise UnsupportedError(f"{where} after a Flatten that follows a conv layer cannot be "
                                           "folded into it")
                s["weight"], s["bias"] = fold_bn_into(s["weight"], s["bias"], m)
                k, _ = batch_norm_affine(m)
                for j in pools_since:
                    flip = set(torch.nonzero(k < 0).flatten().tolist())
                    stages[j]["min_channels"] = sorted(set(stages[j]["min_channels"]) ^ flip)
            else:
                k, beta = batch_norm_affine(m)
                pending = _Pending(k, beta) if pending is None else \
                    _Pending(k * pending.k, k * pending.beta + beta)
        elif isinstance(m, gn.ReLU):
            cap = m.cap
            if awaiting is not None:
                stages[awaiting]["spiking"] = True
                if cap is not None:
                    fixed[sum(1 for s in stages[:awaiting] if s["kind"] in ("dense", "conv"))] = cap
                awaiting = None
            elif pending is not None:
                raise UnsupportedError(f"{where} acts on a BatchNorm output that follows a ReLU; only a "
                                       "synapse layer may come between")
            elif cap is not None:
                raise UnsupportedError(f"{where} clips values that are not a synapse layer's output")
            # a ReLU of non-negative values (inputs or ReLU outputs) changes nothing
        elif isinstance(m, gn.MaxPool):
            mins = set(m.min_channels)
            if pending is not None:
                mins ^= set(torch.nonzero(pending.k < 0).flatten().tolist())
            stages.append({"kind": "pool", "kernel": m.kernel, "stride": m.stride, "padding": m.padding,
                           "channels": shape[0], "min_channels": sorted(mins)})
            if awaiting is not None:
                pools_since.append(len(stages) - 1)
        elif isinstance(m, gn.Flatten):
            if pending is not None and len(shape) == 3:
                per = shape[1] * shape[2]
                pending = _Pending(pending.k.repeat_interleave(per), pending.beta.repeat_interleave(per))
            stages.append({"kind": "flatten"})
            if awaiting is not None:
                flatten_since = True
        else:  # pragma: no cover - relu_graph admits only the nodes above
            raise UnsupportedError(f"{where} is not supported by the TTFS mapping")
    shape = shapes[graph.inputs_of("output")[0]]
    if awaiting is None:
        raise UnsupportedError(
            "the network must end with a Linear or Conv2d read-out layer (no ReLU after it)"
        )
    if pending is not None:
        raise UnsupportedError("a BatchNorm follows the last ReLU with no synapse layer after it")
    if any(s["kind"] == "pool" for s in stages[awaiting + 1 :]):
        raise UnsupportedError("pooling after the read-out layer is not supported")
    if len(shape) != 1:
        raise UnsupportedError(
            f"the network's output has shape {list(shape)} per sample; expected "
            "[classes] (add a Flatten)"
        )
    stages[awaiting]["spiking"] = False
    return stages, fixed


def _build(stages: list[dict[str, Any]], input_shape, input_range, variant: str) -> TTFSNetwork:
    mods: list[nn.Module] = []
    for s in stages:
        if s["kind"] == "flatten":
            mods.append(Flatten())
        elif s["kind"] == "pool":
            mods.append(
                TimePool(s["kernel"], s["stride"], s["padding"], s["channels"], s["min_channels"])
            )
        else:
            mods.append(
                Synapse(
                    s["kind"],
                    s["weight"],
                    s["bias"],
                    spiking=s["spiking"],
                    stride=s["stride"],
                    padding=s["padding"],
                    in_shape=s["in_shape"],
                    out_shape=s["out_shape"],
                )
            )
    n_win = sum(1 for m in mods if isinstance(m, Synapse) and m.spiking)
    return TTFSNetwork(mods, torch.ones(n_win, dtype=DTYPE), input_shape, input_range, variant)


@torch.no_grad()
def calibrate_windows(
    net: TTFSNetwork,
    x: torch.Tensor,
    quantile: float = 1.0,
    headroom: float = 1.5,
    fixed: dict[int, float] | None = None,
    batch_size: int = 1000,
) -> tuple[TTFSNetwork, list[float]]:
    """Windows from activations on ``x``: ``L_n = headroom * X_n``.

    ``X_n`` is the maximum (``quantile = 1``) or the ``quantile`` of the positive values of the
    ReLU twin's layer-``n`` activations, the earlier layers clipped at the windows already chosen.
    A layer that never fires gets ``L_n = 1``. ``fixed`` maps spiking-layer indices to windows
    that are kept as given (e.g. from ``Hardtanh(0, c)``).

    Returns:
        ``(network with the new windows, [X_n])``.
    """
    if not 0 < quantile <= 1:
        raise ConfigError(f"window quantile must be in (0, 1], got {quantile}")
    if not headroom > 0:
        raise ConfigError(f"window head-room must be positive, got {headroom}")
    if x.shape[0] == 0:
        raise DataError("no samples to calibrate the TTFS windows on")
    fixed = fixed or {}
    vals = [net.encode(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    windows, maxima = [], []
    k = 0
    for stage in net.stages:
        if isinstance(stage, Flatten):
            vals = [v.flatten(1) for v in vals]
            continue
        if isinstance(stage, TimePool):
            vals = [-stage(-v) for v in vals]
            continue
        pre = [stage.potential(v) + stage.broadcast_bias() for v in vals]
        if not stage.spiking:
            break
        if quantile == 1.0:
            top = max(float(a.max()) for a in pre)
        else:
            pos = torch.cat([a[a > 0] for a in pre])
            if pos.numel() > QUANTILE_SAMPLES:
                pos = pos[:: math.ceil(pos.numel() / QUANTILE_SAMPLES)]
            top = float(np.quantile(pos.numpy(), quantile)) if pos.numel() else 0.0
        top = max(top, 0.0)
        maxima.append(top)
        length = fixed.get(k, headroom * top if top > 0 else 1.0)
        windows.append(length)
        vals = [a.clamp(0.0, length) for a in pre]
        k += 1
    return net.with_windows(windows), maxima


def _infer_shape(model: nn.Module, x: torch.Tensor) -> tuple[int, ...]:
    """The samples' shape, or ``(in_features,)`` when the network starts with a Linear layer."""
    mods = [m for m in flatten_sequential(model) if not isinstance(m, nn.Dropout | nn.Identity)]
    if mods and isinstance(mods[0], nn.Linear) and x[0].numel() == mods[0].in_features:
        return (mods[0].in_features,)
    return tuple(x.shape[1:])


def relu_to_ttfs(
    model: nn.Module,
    x_train: torch.Tensor,
    *,
    input_shape: tuple[int, ...] | None = None,
    input_range: tuple[float, float] = (0.0, 1.0),
    headroom: float = 1.5,
    quantile: float = 1.0,
    variant: str = "b1",
    check_range: bool = True,
) -> TTFSNetwork:
    """Map a ReLU ``nn.Sequential`` onto a TTFS network (see the module docstring).

    Args:
        model: the ReLU network (any dtype; copied to float64, eval mode).
        x_train: training inputs ``[N, ...]`` that set the windows.
        input_shape: shape of one sample (default ``x_train.shape[1:]``, or ``(in_features,)`` when
            the network starts with a Linear layer).
        input_range: ``(p, q)``, the range of the network's inputs (time 1 .. 0).
        headroom: ``L_n = headroom * X_n`` (default 1.5).
        quantile: activation quantile for ``X_n`` (1.0 = maximum).
        variant: ``"b1"`` (exact) or ``"alpha1"`` (comparison; not equivalent).
        check_range: raise :class:`DataError` if ``x_train`` leaves ``input_range``.
    """
    shape = tuple(int(v) for v in (input_shape or _infer_shape(model, x_train)))
    if x_train.shape[0] and x_train[0].numel() != math.prod(shape):
        raise DataError(
            f"training inputs of shape {tuple(x_train.shape[1:])} do not fit input shape {shape}"
        )
    p, q = (float(v) for v in input_range)
    if check_range and x_train.numel():
        lo, hi = float(x_train.min()), float(x_train.max())
        if lo < p - 1e-9 or hi > q + 1e-9:
            raise DataError(
                f"training inputs lie in [{lo:g}, {hi:g}], outside the TTFS input range "
                f"[{p:g}, {q:g}]; pass input_range"
            )
    stages, fixed = _fold(model, shape, (p, q))
    net = _build(stages, shape, (p, q), variant)
    net, _ = calibrate_windows(net, x_train.reshape(-1, *shape), quantile, headroom, fixed)
    return net


def ttfs_to_relu(net: TTFSNetwork, clip: bool = False) -> nn.Sequential:
    """The ReLU twin of a B1 network (float64): same weights, ``b = L - theta = D``.

    With ``clip=True`` each hidden ReLU is ``Hardtanh(0, L_n)``, which also reproduces the TTFS
    clipping of values above the window; plain ReLUs are exact while no value exceeds its window.
    """
    if net.variant != "b1":
        raise UnsupportedError(
            f"a {net.variant} TTFS network has no exact ReLU twin; only b1 maps back"
        )
    mods: list[nn.Module] = []
    first = next(iter(net.stages))
    if isinstance(first, Synapse) and first.kind == "dense" and len(net.input_shape) != 1:
        mods.append(nn.Flatten())
    k = 0
    for stage in net.stages:
        if isinstance(stage, Flatten):
            mods.append(nn.Flatten())
        elif isinstance(stage, TimePool):
            if stage.min_channels:
                mods.append(
                    MinMaxPool2d(stage.kernel, stage.stride, stage.padding, stage.min_channels)
                )
            else:
                mods.append(nn.MaxPool2d(stage.kernel, stage.stride, stage.padding))
        else:
            w = stage.weight.detach().clone()
            d = stage.bias.detach().clone()
            if stage.kind == "dense":
                lin = nn.Linear(w.shape[1], w.shape[0], dtype=DTYPE)
                lin.weight.data.copy_(w)
                lin.bias.data.copy_(d)
                mods.append(lin)
            else:
                conv = nn.Conv2d(
                    w.shape[1],
                    w.shape[0],
                    tuple(w.shape[2:]),
                    stage.stride,
                    stage.padding,
                    bias=d.dim() == 1,
                    dtype=DTYPE,
                )
                conv.weight.data.copy_(w)
                if d.dim() == 1:
                    conv.bias.data.copy_(d)
                mods.append(conv)
                if d.dim() != 1:
                    mods.append(PositionBias(d))
            if stage.spiking:
                mods.append(nn.Hardtanh(0.0, float(net.windows[k])) if clip else nn.ReLU())
                k += 1
    return nn.Sequential(*mods).eval()
