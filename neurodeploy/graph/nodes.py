"""Nodes of the float graph IR, in the spirit of NIR (Pedersen et al., "Neuromorphic intermediate
representation", Nature Communications 2024).

Every node maps the (summed) signal of its incoming edges ``x[t]`` (per sample, time step ``t``) to
an output ``y[t]``. Parameters are float: weights, thresholds, per-step decay *factors* in [0, 1]
and input gains ``r``; never a chip's integer units. A neuron parameter is a float (per layer) or a
tensor broadcastable to the neurons' shape (per neuron). Time is counted in steps.

Neurons share the notation ``I[t]`` (input), ``M[t]`` (pre-spike potential), ``U[t]`` (post-reset
potential, ``U[-1] = v_init``), threshold ``V`` and spikes ``S[t]``:

* spike: ``S = 1[M > V]`` (``strict=True``, the default) or ``S = 1[M >= V]``;
* reset: ``"zero"``: ``U = M (1 - S)``; ``"subtract"``: ``U = M - V S``.

``meta`` is free-form plain data that passes keep: ``source`` (the module the node came from),
``folded`` (what passes merged into it) and, on neurons, the training-only settings (``neuron``:
surrogate, scale mode, learnable parameters; ``state``: their exact values).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

Param = float | torch.Tensor
RESET_MODES = ("zero", "subtract")
READOUTS = ("mean", "last")


@dataclass(eq=False)
class Node:
    """Base class: every node carries plain-data ``meta`` (see the module docstring)."""

    meta: dict[str, Any] = field(default_factory=dict, kw_only=True)

    @property
    def kind(self) -> str:
        return type(self).__name__


@dataclass(eq=False)
class Input(Node):
    """The network input: ``y[t] = x[t]``, per-sample ``shape``. Has no incoming edge."""

    shape: tuple[int, ...]


@dataclass(eq=False)
class Output(Node):
    """The network output; the class scores from its input sequence ``x[0..T-1]``:
    ``readout="mean"``: ``logits = (1/T) sum_t x[t]``; ``"last"``: ``logits = x[T-1]``."""

    readout: str = "mean"


@dataclass(eq=False)
class Affine(Node):
    """Dense synapses: ``y = W x + b`` (``W`` ``[out, in]``; ``b`` ``[out]`` or None for no bias)."""

    weight: torch.Tensor
    bias: torch.Tensor | None = None


@dataclass(eq=False)
class Conv(Node):
    """2-D convolution (cross-correlation, zero padding): ``W`` ``[out, in/groups, kh, kw]``,
    ``y[o, i, j] = b[o] + sum_{c in group(o), p, q} W[o, c, p, q] x[c, s_h i + d_h p - P_h,
    s_w j + d_w q - P_w]`` with stride ``s``, dilation ``d`` and padding ``P``."""

    weight: torch.Tensor
    bias: torch.Tensor | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1


@dataclass(eq=False)
class SumPool(Node):
    """2-D sum pooling: ``y[c, i, j] = sum_{p < k_h, q < k_w} x[c, s_h i + p - P_h, s_w j + q - P_w]``
    (zero padding)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] = (0, 0)


@dataclass(eq=False)
class AvgPool(Node):
    """2-D average pooling: the :class:`SumPool` sum divided by ``k_h k_w`` (padding counts as
    zeros)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] = (0, 0)


@dataclass(eq=False)
class MaxPool(Node):
    """2-D max pooling (float networks only; no spiking equivalent):
    ``y[c, i, j] = max_{p, q} x[c, s_h i + d_h p - P_h, s_w j + d_w q - P_w]`` (padding is -inf);
    the channels in ``min_channels`` take the minimum instead (what a max pool becomes when a
    negative batch-norm scale moves across it)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    min_channels: tuple[int, ...] = ()


@dataclass(eq=False)
class Flatten(Node):
    """``y = x`` reshaped to one dimension (row-major, all per-sample dimensions)."""


@dataclass(eq=False)
class Add(Node):
    """``y = sum_k x_k``: the explicit merge of several incoming edges (any node sums its incoming
    edges; ``Add`` is the node that does nothing else)."""


@dataclass(eq=False)
class Bias(Node):
    """``y = x + b`` (``b`` broadcastable to the per-sample shape, e.g. one value per output
    position ``[C, H, W]``: what a batch norm folded into a zero-padded conv leaves)."""

    bias: torch.Tensor


@dataclass(eq=False)
class Scale(Node):
    """``y = a * x`` (``a`` a float or a tensor broadcastable to ``x``)."""

    scale: Param


@dataclass(eq=False)
class Delay(Node):
    """``y[t] = x[t - steps]`` (zero for ``t < steps``), ``steps >= 1``."""

    steps: int = 1


@dataclass(eq=False)
class BatchNorm(Node):
    """Batch norm with frozen statistics, per channel (dimension 0 of a sample):
    ``y = gamma (x - mean) / sqrt(var + eps) + beta`` (``gamma = 1``, ``beta = 0`` when None)."""

    mean: torch.Tensor
    var: torch.Tensor
    eps: float = 1e-5
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None


@dataclass(eq=False)
class ReLU(Node):
    """``y = max(x, 0)``, or ``y = min(max(x, 0), cap)`` with a ``cap`` (ReLU6, Hardtanh(0, c))."""

    cap: float | None = None


@dataclass(eq=False)
class LIF(Node):
    """Leaky integrate-and-fire: ``M[t] = decay U[t-1] + r I[t]``, then spike and reset (module
    docstring); output ``S[t]``. ``r = 1`` is the leak form; ``r = 1 - decay`` the decay-input
    form."""

    decay: Param
    threshold: Param
    r: Param = 1.0
    reset: str = "zero"
    v_init: Param = 0.0
    strict: bool = True


@dataclass(eq=False)
class IF(Node):
    """Integrate-and-fire: ``M[t] = U[t-1] + r I[t]``, then spike and reset; output ``S[t]``."""

    threshold: Param
    r: Param = 1.0
    reset: str = "zero"
    v_init: Param = 0.0
    strict: bool = True


@dataclass(eq=False)
class CubaLIF(Node):
    """Current-based LIF: ``i[t] = current_decay i[t-1] + r I[t]`` (``i[-1] = 0``),
    ``M[t] = voltage_decay U[t-1] + i[t]``, then spike and reset; output ``S[t]``."""

    current_decay: Param
    voltage_decay: Param
    threshold: Param
    r: Param = 1.0
    reset: str = "zero"
    v_init: Param = 0.0
    strict: bool = True


@dataclass(eq=False)
class LI(Node):
    """Non-spiking leaky integrator (a read-out): ``v[t] = decay v[t-1] + r I[t]``
    (``v[-1] = v_init``); output ``v[t]``."""

    decay: Param = 1.0
    r: Param = 1.0
    v_init: Param = 0.0


SYNAPSES = (Affine, Conv)
SPIKING = (LIF, IF, CubaLIF)
STATEFUL = (LIF, IF, CubaLIF, LI, Delay)
