"""Layers for writing spiking networks by hand in PyTorch, over sequences ``[T, B, ...]`` like
:class:`~neurodeploy.nn.neurons.SpikingNeuron`; :func:`neurodeploy.graph.graph_from_torch` reads a
network built from them and torch layers into the float graph.

* :class:`Stepwise` applies a stateless torch layer (``Conv2d``, ``BatchNorm2d``, pooling,
  ``Flatten``, ...) to every time step, time folded into the batch, so that image layers take
  sequences ``[T, B, C, H, W]``.
* :class:`Recurrent` is a recurrent spiking layer: a neuron group fed by its input synapses and by
  its own output of the step before, ``I[t] = W_in x[t] + b + W_rec s[t-1]`` (``s[-1] = 0``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from neurodeploy.nn.neurons import NeuronConfig, SpikingNeuron


class Stepwise(nn.Module):
    """``Stepwise(layer)(x [T, B, ...]) = layer(x [T*B, ...])`` reshaped to ``[T, B, ...]``."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b = x.shape[:2]
        y = self.layer(x.reshape(t * b, *x.shape[2:]))
        return y.reshape(t, b, *y.shape[1:])


class Recurrent(nn.Module):
    """A recurrent spiking layer over a sequence ``[T, B, in_features]``.

    At step ``t`` the neurons receive ``I[t] = input(x[t]) + recurrent(s[t-1])`` (``s[-1] = 0``),
    then charge, fire and reset as their :class:`SpikingNeuron` (``neuron``) does; the output is
    the neurons' output sequence ``[T, B, hidden]`` (spikes; ``V * spikes`` in the TrSG scale
    mode). ``input`` is an ``nn.Linear(in_features, hidden)``, ``recurrent`` an
    ``nn.Linear(hidden, hidden, bias=False)``: a recurrent bias would act from the first step, which
    the input bias already expresses.

    Args:
        in_features: input features per step.
        hidden: number of neurons.
        neuron: the neurons' :class:`NeuronConfig` or a :class:`SpikingNeuron` (default LIF).
        bias: whether the input synapses have a bias.
        **overrides: :class:`NeuronConfig` fields (e.g. ``tau=4.0``).
    """

    def __init__(self, in_features: int, hidden: int, neuron: NeuronConfig | SpikingNeuron | None = None,
                 bias: bool = True, **overrides: Any):
        super().__init__()
        self.input = nn.Linear(in_features, hidden, bias=bias)
        self.recurrent = nn.Linear(hidden, hidden, bias=False)
        self.neuron = neuron if isinstance(neuron, SpikingNeuron) else SpikingNeuron(neuron, **overrides)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        current = self.input(x)
        if current.shape[0] == 0:
            return current
        # the neuron's own step-by-step dynamics, fed back its previous output (s[-1] = 0)
        return self.neuron.forward_loop(current, feedback=self.recurrent)
