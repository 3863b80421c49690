"""Channels-last memory for image sequences between convolution, pooling, batch norm and neurons.

A sequence of feature maps ``[T, B, C, H, W]`` normally lies in memory channel plane by channel
plane (NCHW). On the CPU, oneDNN's convolutions and PyTorch's pooling and batch-norm kernels run
faster on channels-last memory (NHWC: the ``C`` values of one pixel side by side), and they keep
that layout in their output. A :class:`~neurodeploy.models.net.SpikingNet` with convolutions runs
its stages so:

* a stateless image stage (``Conv2d``, ``BatchNorm2d``, ``AvgPool2d``, ``MaxPool2d``) runs by
  :func:`run_image_stage` on channels-last memory (converted once, at the first of them; a free
  re-striding when ``C = 1``) and leaves its output there;
* a :class:`~neurodeploy.nn.neurons.SpikingNeuron` is elementwise with scalar parameters, so it runs
  on the same memory as a ``[T, B, H, W, C]`` sequence that it reads as one flat ``[T, E]`` block
  without a copy; its spikes are handed on in that memory, and the per-neuron firing rate it leaves
  for the regulariser is permuted back to ``[C, H, W]``;
* any other stage (``Flatten``, ``Linear``, ...) gets standard memory (:func:`to_standard`, whose
  backward returns the gradient in channels-last memory), so ``Flatten`` gives exactly the NCHW
  feature order.

The layout only decides where values lie in memory: every value, spike and gradient is the NCHW
network's, up to the floating-point rounding of a different convolution or batch-norm summation
order (``tests/test_conv_layout.py``). A monitored neuron reads its statistics
(:func:`~neurodeploy.nn.neurons.layer_stats`, whose potential sample is taken by position) in the
NCHW order, so they are the standard-memory network's.

:class:`~neurodeploy.models.graph_net.GraphNet` runs its nodes step by step with elementwise torch
ops, which keep the layout of their inputs: it converts the input sequence and its zero states with
:func:`to_channels_last` and hands ``Flatten`` standard memory (:func:`to_standard`).
"""

from __future__ import annotations

import torch
from torch import nn

from neurodeploy.nn import sparse_conv
from neurodeploy.nn.neurons import SpikingNeuron

IMAGE_STAGES = (nn.Conv2d, nn.BatchNorm2d, nn.AvgPool2d, nn.MaxPool2d)
"""Stateless stages that run on (and return) channels-last feature maps."""


def cpu_float32_images(seq: torch.Tensor) -> bool:
    """Whether ``seq`` is a float32 image sequence ``[T, B, C, H, W]`` on the CPU, where channels-last
    memory was measured to pay (oneDNN and torch's channels-last kernels)."""
    return seq.dim() == 5 and seq.device.type == "cpu" and seq.dtype == torch.float32


def channels_last_pays(stages: nn.ModuleList | list[nn.Module], seq: torch.Tensor) -> bool:
    """Whether a network of ``stages`` runs ``seq`` in channels-last memory: CPU float32 images
    (:func:`cpu_float32_images`) through at least one convolution."""
    return cpu_float32_images(seq) and any(isinstance(s, nn.Conv2d) for s in stages)


def is_channels_last(h: torch.Tensor) -> bool:
    """Whether the sequence ``h [T, B, C, H, W]`` lies in channels-last memory (``[T, B, H, W, C]``
    contiguous, with the channel stride 1 even where ``C = 1`` makes it ambiguous)."""
    if h.dim() != 5:
        return False
    c, _, w = h.shape[2:]
    return h.stride()[2:] == (1, w * c, c) and h.permute(0, 1, 3, 4, 2).is_contiguous()


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """Feature maps ``x [N, C, H, W]`` (or a sequence ``[T, B, C, H, W]``) with the same values in
    channels-last memory (``x`` itself when they are there; a re-striding view when ``C = 1`` and
    ``x`` is contiguous, which torch would otherwise read as standard memory)."""
    if x.dim() == 5:
        if is_channels_last(x):
            return x
        t, b, c, h, w = x.shape
        if c == 1 and x.is_contiguous():
            return x.as_strided(x.shape, (b * h * w, h * w, 1, w, 1))
        return x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    n, c, h, w = x.shape
    if c == 1 and x.is_contiguous():
        return x.as_strided(x.shape, (h * w, 1, w, 1))
    return x.contiguous(memory_format=torch.channels_last)


class _ToStandard(torch.autograd.Function):
    """``h.contiguous()`` whose backward hands the gradient back in channels-last memory (the
    backward of a channels-last pooling or convolution is several times slower on a gradient in
    standard memory)."""

    @staticmethod
    def forward(ctx, h):
        return h.contiguous()

    @staticmethod
    def backward(ctx, g):
        return to_channels_last(g)


def to_standard(h: torch.Tensor) -> torch.Tensor:
    """Channels-last feature maps ``h [N, C, H, W]`` or ``[T, B, C, H, W]`` in standard memory (their
    gradient flows back in channels-last memory); any other ``h`` as it is."""
    if h.dim() == 5:
        channels_last = is_channels_last(h)
    else:
        channels_last = (h.dim() == 4 and h.shape[1] > 1 and not h.is_contiguous()
                         and h.is_contiguous(memory_format=torch.channels_last))
    return _ToStandard.apply(h) if channels_last else h


def _elementwise(neuron: SpikingNeuron) -> bool:
    return all(t.numel() == 1 for t in (*neuron.parameters(), *neuron.buffers()))


def run_neuron(neuron: SpikingNeuron, h: torch.Tensor) -> torch.Tensor:
    """``neuron(h)``; for a channels-last ``h [T, B, C, H, W]`` the neurons run on its memory as
    ``[T, B, H, W, C]`` and the output stays in channels-last memory. A monitored neuron, one with
    per-neuron tensors, or any other ``h`` runs as ``neuron(h)`` (which reads a channels-last ``h``
    by copying it to standard memory). A monitored neuron reads its statistics in the standard
    order of its shape (``stats_order``), so they are the same as on standard memory."""
    if not is_channels_last(h) or not _elementwise(neuron):
        return neuron(h)
    neuron.stats_order = (0, 1, 4, 2, 3)
    try:
        out = neuron(h.permute(0, 1, 3, 4, 2))
    finally:
        neuron.stats_order = None
    if neuron.track_rate and neuron.rate is not None:
        neuron.rate = neuron.rate.permute(2, 0, 1)
    return out.permute(0, 1, 4, 2, 3)


class _AvgPoolChannelsLast(torch.autograd.Function):
    """Average pooling with kernel = stride = ``k`` on channels-last maps whose sides ``k`` divides.

    The forward is the ``AvgPool2d`` stage's own (torch's channels-last kernel); the backward
    writes each input pixel's gradient ``g / k^2`` once by broadcasting the pooled gradient over its
    window, the same value torch's backward accumulates into a zero-filled gradient (windows do not
    overlap), at about half the cost (``tests/test_conv_layout.py`` checks both bit for bit)."""

    @staticmethod
    def forward(ctx, x, stage: nn.AvgPool2d, k: int):
        ctx.k = k
        return stage(x)  # the module itself, so that its hooks run

    @staticmethod
    def backward(ctx, g):
        k = ctx.k
        n, c, h, w = g.shape
        pooled = to_channels_last(g).permute(0, 2, 3, 1) / (k * k)
        grad = pooled[:, :, None, :, None, :].expand(n, h, k, w, k, c).reshape(n, h * k, w * k, c)
        return grad.permute(0, 3, 1, 2), None, None


def _pool_size(stage: nn.Module, x: torch.Tensor) -> int | None:
    """``k`` when ``stage`` is an ``AvgPool2d`` with kernel = stride = ``k`` that tiles ``x`` exactly
    (no padding, no ceil mode, no divisor override); ``None`` otherwise."""
    if not isinstance(stage, nn.AvgPool2d):
        return None
    kernel, stride, pad = (tuple(v) if isinstance(v, tuple | list) else (v, v)
                           for v in (stage.kernel_size, stage.stride or stage.kernel_size, stage.padding))
    k = kernel[0]
    if (kernel != (k, k) or stride != kernel or pad != (0, 0) or stage.ceil_mode
            or stage.divisor_override is not None or x.shape[2] % k or x.shape[3] % k):
        return None
    return k


def run_image_stage(stage: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """An :data:`IMAGE_STAGES` stage on ``h [T, B, C, H, W]`` (time folded into the batch) in
    channels-last memory; the output ``[T, B, C', H', W']`` stays there. While gradients are
    recorded, a ``Conv2d`` takes its forward and weight gradient over the input's nonzeros where
    that pays (:func:`neurodeploy.nn.sparse_conv.conv2d`)."""
    t, b = h.shape[:2]
    x = to_channels_last(h.reshape(t * b, *h.shape[2:]))
    k = _pool_size(stage, x)
    if k is not None:
        out = _AvgPoolChannelsLast.apply(x, stage, k)
    elif isinstance(stage, nn.Conv2d) and torch.is_grad_enabled():
        out = sparse_conv.conv2d(x, stage)
    else:
        out = stage(x)
    return out.reshape(t, b, *out.shape[1:])
