"""The spiking layers a training run watches: a graph network's neuron probes
(:meth:`neurodeploy.models.graph_net.GraphNet.spiking_layers`, also through a model's ``net``),
else a model's :class:`~neurodeploy.nn.SpikingNeuron` modules."""

from __future__ import annotations

from typing import Any

from torch import nn

from neurodeploy.nn.neurons import spiking_layers as neuron_modules


def spiking_layers(model: nn.Module) -> list[tuple[str, Any]]:
    """Named spiking layers of ``model`` in forward order (objects with ``monitor``, ``stats``,
    ``track_rate``, ``rate`` and ``surrogate``)."""
    from neurodeploy.models.graph_net import GraphNet

    for net in (model, getattr(model, "net", None)):
        if isinstance(net, GraphNet):
            return net.spiking_layers()
    return neuron_modules(model)


def set_epoch(model: nn.Module, epoch: int, total_epochs: int) -> None:
    """Tell the surrogate of every spiking layer of ``model`` the current epoch (1-based)."""
    for _, layer in spiking_layers(model):
        layer.surrogate.set_epoch(epoch, total_epochs)
