"""Reference spiking architectures (MLP, ConvNet, small VGG) built from a :class:`ModelSpec`.

A :class:`SpikingNet` is a flat list of stages applied to a sequence ``[T, B, ...]``: stateless
layers (Linear, Conv2d, BatchNorm, pooling, Flatten) run on all steps at once with time folded into
the batch; :class:`~neurodeploy.nn.neurons.SpikingNeuron` stages run over time. The flat list is
what the lowering pass walks when it maps a network onto a chip. Networks with convolutions keep
their feature maps in channels-last memory from the first image stage to ``Flatten``
(:mod:`neurodeploy.nn.conv_layout`); values are the same, only faster on the CPU.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from neurodeploy.models.spec import ModelSpec
from neurodeploy.nn import sparse_input
from neurodeploy.nn.conv_layout import IMAGE_STAGES, channels_last_pays, run_image_stage, run_neuron, to_standard
from neurodeploy.nn.encoding import encode
from neurodeploy.nn.neurons import SpikingNeuron


class SpikingNet(nn.Module):
    """A feed-forward spiking network: ``forward(x [B, ...]) -> logits [B, classes]``."""

    def __init__(self, spec: ModelSpec, stages: list[nn.Module]):
        super().__init__()
        self.spec = spec
        self.stages = nn.ModuleList(stages)

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Encode a batch ``[B, ...]`` into an input sequence ``[T, B, ...]``."""
        return encode(x, self.spec.steps, self.spec.encoding_config, generator)

    def forward_sequence(self, seq: torch.Tensor) -> torch.Tensor:
        """Run the stages on a sequence ``[T, B, ...]``; returns the last stage's output ``[T, B, N]``."""
        channels_last = channels_last_pays(self.stages, seq)
        h = seq
        for stage in self.stages:
            if isinstance(stage, SpikingNeuron):
                h = run_neuron(stage, h)
            elif channels_last and isinstance(stage, IMAGE_STAGES):
                h = run_image_stage(stage, h)
            elif type(stage) is nn.Linear and torch.is_grad_enabled():  # training: products over the spikes
                h = to_standard(h)
                t, b = h.shape[:2]
                out = sparse_input.linear(h.reshape(t * b, -1), stage.weight, stage.bias)
                h = out.reshape(t, b, -1)
            else:
                h = to_standard(h)
                t, b = h.shape[:2]
                out = stage(h.reshape(t * b, *h.shape[2:]))
                h = out.reshape(t, b, *out.shape[1:])
        return to_standard(h)

    def readout(self, out_seq: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, classes]`` from the output sequence (time average for both read-outs)."""
        return out_seq.mean(dim=0)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        seq = self.encode(x, generator)
        return self.readout(self.forward_sequence(seq))


def _neuron(spec: ModelSpec) -> SpikingNeuron:
    return SpikingNeuron(spec.neuron_config)


def _apply_overrides(spec: ModelSpec, stages: list[nn.Module]) -> list[nn.Module]:
    for i, stage in enumerate(stages):
        name = f"stages.{i}"
        if isinstance(stage, SpikingNeuron) and name in spec.overrides:
            stages[i] = SpikingNeuron(spec.layer_neuron_config(name))
    return stages


def _dense_head(spec: ModelSpec, in_features: int, widths: list[int]) -> list[nn.Module]:
    """Hidden dense layers of ``widths`` (each Linear [+ BN] + neurons) and the read-out layer."""
    stages: list[nn.Module] = []
    for width in widths:
        stages.append(nn.Linear(in_features, width, bias=spec.bias))
        if spec.batch_norm:
            stages.append(nn.BatchNorm1d(width))
        stages.append(_neuron(spec))
        in_features = width
    stages.append(nn.Linear(in_features, spec.num_classes, bias=spec.bias))
    if spec.readout == "spike_count":
        stages.append(_neuron(spec))
    return stages


def _pool(spec: ModelSpec) -> nn.Module:
    return nn.AvgPool2d(2) if spec.pool == "avg" else nn.MaxPool2d(2)


def build_model(spec: ModelSpec | dict) -> SpikingNet:
    """Build the network a spec describes (weights freshly initialised by torch's defaults). The
    network holds its own copy of the spec (training records remedies in it), never the caller's."""
    spec = ModelSpec.from_dict(spec) if isinstance(spec, dict) else copy.deepcopy(spec)
    stages: list[nn.Module] = []
    c, *hw = spec.input_shape
    if spec.arch == "mlp":
        in_features = 1
        for v in spec.input_shape:
            in_features *= v
        stages = [nn.Flatten(), *_dense_head(spec, in_features, spec.hidden)]
        return SpikingNet(spec, _apply_overrides(spec, stages))

    h, w = hw
    k, pad = spec.kernel, spec.kernel // 2
    channels = c
    plan = spec.hidden if spec.arch == "vgg" else []
    if spec.arch == "convnet":
        for i, ch in enumerate(spec.hidden):
            plan.append(ch)
            if spec.pool != "none":
                plan.append("P")
            elif i > 0:
                plan[-1] = ("S", ch)  # stride-2 convolution instead of pooling
    for item in plan:
        if item == "P":
            if spec.pool == "none":
                continue
            stages.append(_pool(spec))
            h, w = h // 2, w // 2
            continue
        stride = 1
        if isinstance(item, tuple):
            stride, item = 2, item[1]
        stages.append(nn.Conv2d(channels, item, k, stride=stride, padding=pad, bias=spec.bias))
        h = (h + 2 * pad - k) // stride + 1
        w = (w + 2 * pad - k) // stride + 1
        if spec.batch_norm:
            stages.append(nn.BatchNorm2d(item))
        stages.append(_neuron(spec))
        channels = item
    stages.append(nn.Flatten())
    stages.extend(_dense_head(spec, channels * h * w, spec.dense))
    return SpikingNet(spec, _apply_overrides(spec, stages))
