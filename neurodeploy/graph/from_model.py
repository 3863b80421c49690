"""Turn a network into the float graph.

:func:`nodes_from_module` maps one ``torch.nn`` module (or a
:class:`~neurodeploy.nn.neurons.SpikingNeuron`) to a short chain of graph nodes; it is the one
place that knows how a module reads as graph nodes, so a ``torch.fx`` tracer or an explicit builder
of a user's network reuses it and only adds its own edges through
:class:`~neurodeploy.graph.ir.GraphBuilder`. :func:`graph_from_model` is the front end for a
:class:`~neurodeploy.models.SpikingNet`: its stages in order, node ``stages.i`` for stage ``i``.

Parameters are copied to float64 (``keep_grad=True`` keeps weights, biases and batch-norm affine
parameters differentiable functions of the module's parameters; thresholds and decays are
constants either way). Modules are read in eval semantics (batch norm running statistics, no
dropout).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from neurodeploy.errors import ConfigError, UnsupportedError
from neurodeploy.graph import nodes as n
from neurodeploy.graph.ir import Graph, GraphBuilder
from neurodeploy.nn import functional as F  # noqa: N812
from neurodeploy.nn.neurons import SpikingNeuron


def _param(p: torch.Tensor | None, keep_grad: bool) -> torch.Tensor | None:
    if p is None:
        return None
    return p.double() if keep_grad else p.detach().double().clone()


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def neuron_node(layer: SpikingNeuron, source: str) -> n.Node:
    """The graph neuron of a :class:`SpikingNeuron` (float factors; training settings in ``meta``).

    CUBA's Loihi-style integer decays become the factors of :func:`neurodeploy.nn.functional.cuba_factor`;
    the decay-input LIF form becomes the input gain ``r = 1 - decay``; MP-Init's running mean
    becomes ``v_init``; a learned threshold or PLIF time constant is read at its current value.
    """
    cfg = layer.config
    v_th = float(layer.threshold.detach())
    v_init = float(layer.mp_mean) if cfg.mp_init else 0.0
    state = {k: float(v) for k, v in layer.state_dict().items() if v.numel() == 1}
    meta = {"source": source, "neuron": cfg.to_dict(), "state": state,
            "surrogate": cfg.to_dict()["surrogate"], "scale_mode": cfg.scale}
    if cfg.model == "cuba":
        return n.CubaLIF(F.cuba_factor(cfg.current_decay), F.cuba_factor(cfg.voltage_decay), v_th,
                         1.0, cfg.reset, v_init, True, meta=meta)
    if cfg.model == "if":
        return n.IF(v_th, 1.0, cfg.reset, v_init, True, meta=meta)
    d = layer.decay()
    b = float(d.detach()) if isinstance(d, torch.Tensor) else float(d)
    r = 1.0 - b if cfg.form == "decay_input" else 1.0
    return n.LIF(b, v_th, r, cfg.reset, v_init, True, meta=meta)


def nodes_from_module(name: str, module: nn.Module, keep_grad: bool = False) -> list[tuple[str, n.Node]]:
    """The chain of ``(node name, node)`` a module reads as; ``[]`` for modules that do nothing in
    eval mode (``Identity``, ``Dropout``). Raises :class:`UnsupportedError` naming ``name`` for a
    module with no graph form."""
    src = {"source": name}
    if isinstance(module, SpikingNeuron):
        node = neuron_node(module, name)
        if module.config.scale == "threshold_robust":  # TrSG: the layer outputs V * S
            return [(name, node), (f"{name}.scale", n.Scale(float(module.threshold.detach()),
                                                             meta={**src, "role": "trsg_output"}))]
        return [(name, node)]
    if isinstance(module, nn.Linear):
        return [(name, n.Affine(_param(module.weight, keep_grad), _param(module.bias, keep_grad), meta=src))]
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros":
            raise UnsupportedError(f"{name}: {module.padding_mode} padding has no graph form; use zero padding")
        if module.padding == "valid":
            padding = (0, 0)
        elif module.padding == "same":
            (kh, kw), (dh, dw) = module.kernel_size, module.dilation
            if (dh * (kh - 1)) % 2 or (dw * (kw - 1)) % 2 or tuple(module.stride) != (1, 1):
                raise UnsupportedError(f"{name}: 'same' padding with an even kernel or a stride is "
                                       "asymmetric and not supported")
            padding = (dh * (kh - 1) // 2, dw * (kw - 1) // 2)
        else:
            padding = _pair(module.padding)
        return [(name, n.Conv(_param(module.weight, keep_grad), _param(module.bias, keep_grad),
                              _pair(module.stride), padding, _pair(module.dilation), int(module.groups),
                              meta=src))]
    if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
        if not module.track_running_stats or module.running_mean is None:
            raise UnsupportedError(f"{name}: batch norm without running statistics has no eval-mode form")
        return [(name, n.BatchNorm(module.running_mean.detach().double().clone(),
                                   module.running_var.detach().double().clone(), float(module.eps),
                                   _param(module.weight, keep_grad), _param(module.bias, keep_grad),
                                   meta={**src, "module": type(module).__name__}))]
    if isinstance(module, nn.AvgPool2d):
        if module.ceil_mode or module.divisor_override is not None:
            raise UnsupportedError(f"{name}: average pooling in ceil mode or with a divisor override has no "
                                   "graph form")
        pad = _pair(module.padding)
        if pad != (0, 0) and not module.count_include_pad:
            raise UnsupportedError(f"{name}: padded average pooling that does not count the padding has no "
                                   "graph form")
        k = _pair(module.kernel_size)
        s = _pair(module.stride) if module.stride is not None else k
        return [(name, n.AvgPool(k, s, pad, meta=src))]
    if isinstance(module, nn.MaxPool2d):
        if module.ceil_mode or module.return_indices:
            raise UnsupportedError(f"{name}: max pooling in ceil mode or returning indices has no graph form")
        k = _pair(module.kernel_size)
        s = _pair(module.stride) if module.stride is not None else k
        return [(name, n.MaxPool(k, s, _pair(module.padding), _pair(module.dilation), meta=src))]
    if isinstance(module, nn.Flatten):
        if (module.start_dim, module.end_dim) != (1, -1):
            raise UnsupportedError(f"{name}: only a flatten of all per-sample dimensions has a graph form")
        return [(name, n.Flatten(meta=src))]
    if isinstance(module, nn.ReLU):
        return [(name, n.ReLU(meta=src))]
    if isinstance(module, nn.ReLU6):
        return [(name, n.ReLU(6.0, meta=src))]
    if isinstance(module, nn.Hardtanh):
        if float(module.min_val) != 0.0 or not float(module.max_val) > 0:
            raise UnsupportedError(f"{name}: only Hardtanh(0, c) with c > 0 (a clipped ReLU) has a graph form")
        return [(name, n.ReLU(float(module.max_val), meta=src))]
    if isinstance(module, nn.Identity | nn.Dropout):
        return []
    raise UnsupportedError(f"{name}: layer {type(module).__name__} has no graph form")


def graph_from_model(model: nn.Module, keep_grad: bool = False) -> Graph:
    """The float graph of a :class:`~neurodeploy.models.SpikingNet` (eval semantics).

    Nodes: ``input`` → one chain per stage (``stages.i``; a TrSG layer adds ``stages.i.scale``) →
    ``output`` (``readout="mean"``: the model's class scores are its output averaged over the T
    steps, for both the ``mean`` and the ``spike_count`` read-out). ``meta`` holds ``steps``,
    ``encoding``, ``readout`` and ``spec``.
    """
    from neurodeploy.models import SpikingNet

    if not isinstance(model, SpikingNet):
        raise ConfigError(f"the graph builder needs a SpikingNet, got {type(model).__name__}")
    spec = model.spec
    b = GraphBuilder()
    last = b.add("input", n.Input(tuple(int(v) for v in spec.input_shape)))
    for i, stage in enumerate(model.stages):
        for name, node in nodes_from_module(f"stages.{i}", stage, keep_grad):
            last = b.add(name, node, last)
    b.add("output", n.Output("mean"), last)
    return b.build({"steps": spec.steps, "encoding": dict(spec.encoding), "readout": spec.readout,
                    "spec": spec.to_dict()})
