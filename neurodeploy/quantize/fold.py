"""Fold a trained :class:`~neurodeploy.models.SpikingNet` into chip-shaped float blocks.

A chip runs a chain of *synapse layer → neuron group*. This module rewrites a network into that
shape without changing what it computes:

* BatchNorm (eval statistics) is folded into the preceding linear/conv weights and bias;
* an average pool is folded into the next layer's weights (a dense layer's weight is spread over the
  pooled window; a conv becomes a conv with a 2× larger kernel and stride 2);
* the decay-input LIF form ``M = b U + (1 - b) I`` becomes the leak form by scaling the weights
  and bias by ``1 - b``;
* TrSG's output ``V * S`` becomes binary spikes by folding ``V`` into the next layer's weights
  (methods.md §4.4);
* every neuron becomes a current-based neuron with Loihi-style decays in 0..4096 units
  (``iDecay = 4096``: the current is just the input; ``vDecay = 4096 (1 - b)``);
* the ``mean`` read-out becomes a non-spiking integrator (``vDecay = 0``) whose final potential
  is ``T`` times the time-averaged logits.

The result is a list of :class:`FloatBlock`; :func:`run_blocks` runs it in float64 so tests can
check that folding changed nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from neurodeploy.errors import UnsupportedError
from neurodeploy.models import SpikingNet
from neurodeploy.nn.neurons import SpikingNeuron

DECAY_UNIT = 4096


@dataclass
class FloatNeurons:
    """Float dynamics of one neuron group in current-based form.

    ``current_decay``/``voltage_decay`` are in 0..4096 units (factors ``(4096 - d)/4096``), already
    rounded to integers, so the float model and the chip decay alike.
    """

    current_decay: int
    voltage_decay: int
    threshold: float
    reset: str = "zero"
    spiking: bool = True
    initial_v: float = 0.0


@dataclass
class FloatBlock:
    """One synapse layer (dense/conv, float64 weights) and the neurons it feeds; or a flatten.

    ``name`` is the model stage of the neurons (of the synapse layer for the read-out), so
    per-layer figures of the chip and of the float model line up.
    """

    kind: str
    name: str
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    neurons: FloatNeurons | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()
    notes: list[str] = field(default_factory=list)


def _neuron_form(layer: SpikingNeuron) -> tuple[int, int, float]:
    """(current_decay, voltage_decay, weight factor) of a spiking layer in current-based form."""
    cfg = layer.config
    if cfg.model == "cuba":
        return cfg.current_decay, cfg.voltage_decay, 1.0
    d = layer.decay()
    b = float(d.detach()) if isinstance(d, torch.Tensor) else float(d)
    v_decay = int(round(DECAY_UNIT * (1.0 - b)))
    if cfg.model == "if":
        return DECAY_UNIT, 0, 1.0
    factor = (1.0 - b) if cfg.form == "decay_input" else 1.0
    return DECAY_UNIT, v_decay, factor


def _param(p: torch.Tensor, keep_grad: bool) -> torch.Tensor:
    return p.double() if keep_grad else p.detach().double()


def _bn_fold(weight: torch.Tensor, bias: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm, keep_grad: bool):
    scale = _param(bn.weight, keep_grad) / torch.sqrt(bn.running_var.double() + bn.eps)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    return weight * scale.view(shape), (bias - bn.running_mean.double()) * scale + _param(bn.bias, keep_grad)


def _shape_after(stage: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    param = next(stage.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    with torch.no_grad():
        return tuple(stage(torch.zeros(1, *shape, dtype=dtype)).shape[1:])


def fold_model(model: SpikingNet, keep_grad: bool = False) -> list[FloatBlock]:
    """Rewrite ``model`` (eval semantics) as chip-shaped :class:`FloatBlock` s (see module doc).

    With ``keep_grad`` the block weights and biases stay differentiable functions of the model's
    parameters (fine-tuning through the fold); thresholds and decays are constants either way.

    Raises :class:`UnsupportedError` for what has no exact chip form (max pooling, a pool that is
    not followed by a dense/conv layer, two synapse layers without neurons between them).
    """
    model = model.eval()
    stages = list(model.stages)
    blocks: list[FloatBlock] = []
    shape = tuple(model.spec.input_shape)
    pending: dict[str, Any] | None = None  # synapse waiting for its neurons
    in_scale = 1.0  # value carried by one input event (V of a TrSG layer)
    pool: dict[str, Any] | None = None  # average pool waiting to be folded into the next synapse
    for i, stage in enumerate(stages):
        name = f"stages.{i}"
        if isinstance(stage, nn.Flatten):
            if pending is not None:
                raise UnsupportedError(f"{name}: flatten between a synapse layer and its neurons")
            flat_in = pool["pre_shape"] if pool is not None else shape
            if pool is not None:
                pool["flat"] = True
            blocks.append(FloatBlock("flatten", name, in_shape=flat_in,
                                     out_shape=(int(torch.tensor(flat_in).prod()),)))
            shape = _shape_after(stage, shape)
            continue
        if isinstance(stage, nn.MaxPool2d):
            raise UnsupportedError(f"{name}: max pooling has no spiking equivalent on a chip; "
                                   "use pool = \"avg\" or strided convolutions")
        if isinstance(stage, nn.AvgPool2d):
            k = stage.kernel_size if isinstance(stage.kernel_size, int) else stage.kernel_size[0]
            st = stage.stride if isinstance(stage.stride, int) else stage.stride[0]
            if pool is not None or pending is not None or st != k or stage.padding not in (0, (0, 0)):
                raise UnsupportedError(f"{name}: only a non-overlapping average pool right after "
                                       "spiking neurons can be folded")
            pool = {"k": k, "pre_shape": shape, "flat": False}
            shape = _shape_after(stage, shape)
            continue
        if isinstance(stage, nn.Linear | nn.Conv2d):
            if pending is not None:
                raise UnsupportedError(f"{name}: two synapse layers without neurons between them")
            w = _param(stage.weight, keep_grad) * in_scale
            b = _param(stage.bias, keep_grad) if stage.bias is not None else \
                torch.zeros(w.shape[0], dtype=torch.float64)
            in_shape = shape
            stride, padding = (1, 1), (0, 0)
            if isinstance(stage, nn.Conv2d):
                stride, padding = tuple(stage.stride), tuple(stage.padding)
                if stage.groups != 1 or tuple(stage.dilation) != (1, 1):
                    raise UnsupportedError(f"{name}: grouped or dilated convolutions are not supported")
            if pool is not None:
                w, stride, padding, in_shape = _fold_pool(name, stage, w, pool, stride, padding, in_shape)
                pool = None
            pending = {"name": name, "kind": "conv" if isinstance(stage, nn.Conv2d) else "dense",
                       "weight": w, "bias": b, "stride": stride, "padding": padding,
                       "in_shape": in_shape}
            shape = _shape_after(stage, shape)
            continue
        if isinstance(stage, nn.BatchNorm1d | nn.BatchNorm2d):
            if pending is None:
                raise UnsupportedError(f"{name}: batch norm must follow a linear or conv layer")
            pending["weight"], pending["bias"] = _bn_fold(pending["weight"], pending["bias"], stage, keep_grad)
            continue
        if isinstance(stage, SpikingNeuron):
            if pending is None:
                raise UnsupportedError(f"{name}: spiking neurons must follow a linear or conv layer")
            i_decay, v_decay, factor = _neuron_form(stage)
            v_th = float(stage.threshold.detach())
            mu = float(stage.mp_mean) if stage.config.mp_init else 0.0
            blocks.append(FloatBlock(
                pending["kind"], name, pending["weight"] * factor, pending["bias"] * factor,
                FloatNeurons(i_decay, v_decay, v_th, stage.config.reset, True, mu),
                pending["stride"], pending["padding"], 1, pending["in_shape"], shape))
            in_scale = v_th if stage.config.scale == "threshold_robust" else 1.0
            pending = None
            continue
        raise UnsupportedError(f"{name}: layer {type(stage).__name__} has no chip mapping")
    if pending is None:
        if model.spec.readout == "spike_count" and blocks and blocks[-1].neurons is not None:
            return blocks  # the last spiking group is the read-out (spike counts)
        raise UnsupportedError("the network must end with a linear read-out layer")
    # the "mean" read-out: a non-spiking integrator of the last synapse layer
    blocks.append(FloatBlock(
        pending["kind"], pending["name"], pending["weight"], pending["bias"],
        FloatNeurons(DECAY_UNIT, 0, float("inf"), "zero", False, 0.0),
        pending["stride"], pending["padding"], 1, pending["in_shape"], shape))
    return blocks


def _fold_pool(name: str, stage: nn.Module, w: torch.Tensor, pool: dict[str, Any], stride,
               padding, in_shape):
    """Fold a k×k average pool into the weights of the layer after it (exact)."""
    k = pool["k"]
    c, big_h, big_w = pool["pre_shape"]
    h, wd = big_h // k, big_w // k
    if pool["flat"]:  # pool → flatten → dense: spread each weight over its window
        w4 = w.view(w.shape[0], c, h, wd) / (k * k)
        full = torch.zeros(w.shape[0], c, big_h, big_w, dtype=w.dtype)
        full[:, :, : h * k, : wd * k] = w4.repeat_interleave(k, 2).repeat_interleave(k, 3)
        return full.reshape(w.shape[0], -1), stride, padding, (c * big_h * big_w,)
    if isinstance(stage, nn.Linear):
        raise UnsupportedError(f"{name}: average pool directly before a linear layer needs a flatten")
    if big_h % k or big_w % k:
        raise UnsupportedError(f"{name}: cannot fold a {k}x{k} pool of a {big_h}x{big_w} map into a conv")
    w_full = w.repeat_interleave(k, dim=2).repeat_interleave(k, dim=3) / (k * k)
    return (w_full, (stride[0] * k, stride[1] * k), (padding[0] * k, padding[1] * k),
            (c, big_h, big_w))


@torch.no_grad()
def run_blocks(blocks: list[FloatBlock], seq: torch.Tensor, record: bool = False):
    """Run folded blocks in float64 on an input sequence ``[T, B, ...]`` (no chip delays).

    Returns the read-out block's potential after the last step ``[B, N]`` and, if ``record``,
    per block the maximum absolute input current and potential seen (for calibration).
    """
    stats: list[dict[str, float]] = []
    h = seq.double()
    out_v = None
    for blk in blocks:
        if blk.kind == "flatten":
            h = h.reshape(h.shape[0], h.shape[1], -1)
            stats.append({})
            continue
        t, b = h.shape[:2]
        flat = h.reshape(t * b, *h.shape[2:])
        if blk.kind == "dense":
            cur = flat @ blk.weight.T + blk.bias
        else:
            cur = nn.functional.conv2d(flat, blk.weight, None, blk.stride, blk.padding)
            cur = cur + blk.bias.view(1, -1, 1, 1)
        cur = cur.reshape(t, b, *cur.shape[1:])
        n = blk.neurons
        fi = (DECAY_UNIT - n.current_decay) / DECAY_UNIT
        fv = (DECAY_UNIT - n.voltage_decay) / DECAY_UNIT
        i_syn = torch.zeros_like(cur[0])
        v = torch.full_like(cur[0], n.initial_v)
        spikes = []
        max_v = 0.0
        for step in range(t):
            i_syn = fi * i_syn + cur[step]
            v = fv * v + i_syn
            max_v = max(max_v, float(v.abs().max()))
            if n.spiking:
                s = (v > n.threshold).double()
                v = v * (1 - s) if n.reset == "zero" else v - n.threshold * s
                spikes.append(s)
        stats.append({"max_current": float(cur.abs().max()), "max_v": max_v,
                      "max_bias": float(blk.bias.abs().max()) if blk.bias is not None else 0.0})
        if n.spiking:
            h = torch.stack(spikes)
        else:
            out_v = v
    return (out_v, stats) if record else out_v
