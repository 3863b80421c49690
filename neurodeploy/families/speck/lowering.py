"""Lowering folded float blocks into ``speck`` integer layers, and the differentiable shadow.

Discretization as Sinabs 3.1.3 does it (``sinabs/backend/dynapcnn/discretize.py``,
``_discretize_conv_spk_`` and ``determine_discretization_scale``): one common scale ``s`` per
layer, the smallest of

* the weights' scale at 8 bits: ``127 / max(W)``, or ``128 / |min(W)|`` when the negative side
  dominates (``|min| > max · 128/127``);
* the biases' scale at 8 bits (the same rule; Sinabs scales biases at the weight precision);
* the thresholds' scale at 16 bits over ``[min_v_mem, threshold] = [-V, V]``: ``32767 / V``;

then ``W_int = round(s·u_in·W)``, ``bias = round(s·b)``, ``threshold = round(s·V)`` (half to
even, as ``torch.round``), each clamped into its range, ``min_v_mem = -threshold``. So the fake-
quant forward, the simulator and Sinabs run the same integers (``tests/reference``). A trained
network's decays come in the fold's ``1/DECAY_UNIT`` units; Speck neurons are integrate-and-fire, so only
the complete current decay (the current is the step's input) and no voltage decay are lowered
(rule ``integrate_and_fire``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from neurodeploy.errors import FitError
from neurodeploy.families.formats import LayerFormat, weight_range
from neurodeploy.families.shadow import straight_through
from neurodeploy.families.speck.arith import DEFAULT, SpeckConfig, neuron_step
from neurodeploy.nn.surrogate import Surrogate, spike

if TYPE_CHECKING:
    from neurodeploy.hardware import HardwareProfile


@dataclass
class LayerScale:
    """The chosen scale of one block and which limit set it."""

    name: str
    scale: float
    limited_by: str
    candidates: dict[str, float] = field(default_factory=dict)


def range_scale(lo_val: float, hi_val: float, lo: int, hi: int) -> float:
    """Sinabs's ``determine_discretization_scale`` for values in ``[lo_val, hi_val]`` and the
    integer range ``[lo, hi]`` (``inf`` for all-zero values)."""
    ratio = abs(lo / hi)
    if abs(lo_val) <= abs(hi_val) * ratio:
        return math.inf if hi_val == 0 else abs(hi / hi_val)
    return abs(lo / lo_val)


def choose_scale(block: Any, stats: dict[str, Any], profile: HardwareProfile,
                 input_unit: float, weight_bits: int | None = None) -> LayerScale:
    """Sinabs's common per-layer scale of ``block`` (module docstring); ``stats`` is unused
    (Sinabs sets the scale from the parameters alone)."""
    w_lo, w_hi = weight_range(profile, weight_bits)
    w = block.weight * input_unit
    cand = {"weights": range_scale(float(w.min()), float(w.max()), w_lo, w_hi)}
    if block.bias is not None:
        b_hi = 2 ** (profile.neuron.bias_mantissa_bits - 1) - 1
        cand["bias"] = range_scale(float(block.bias.min()), float(block.bias.max()), -b_hi - 1, b_hi)
    n = block.neurons
    if n.spiking and n.threshold > 0:
        t_lo, t_hi = profile.neuron.threshold_range
        cand["threshold"] = range_scale(-n.threshold, n.threshold, -t_hi - 1, t_hi)
    cand = {k: v for k, v in cand.items() if math.isfinite(v)}
    if not cand:
        raise FitError(f"{block.name}: all weights and biases are zero; nothing to deploy")
    limited_by = min(cand, key=cand.get)
    return LayerScale(block.name, cand[limited_by], limited_by, cand)


def layer_format(block: Any, scale: float, profile: HardwareProfile,
                 weight_bits: int | None = None, input_unit: float = 1.0) -> LayerFormat:
    """The integer settings of folded ``block`` at ``scale`` on ``profile`` (``input_unit``, the
    float value of one input unit, does not change them)."""
    n, nf = block.neurons, profile.neuron
    w_lo, w_hi = weight_range(profile, weight_bits)
    lo, hi = nf.threshold_range
    threshold = int(min(max(round(scale * n.threshold), lo), hi)) if n.spiking else int(hi)
    b_hi = 2 ** (nf.bias_mantissa_bits - 1) - 1
    return LayerFormat(
        w_lo=w_lo, w_hi=w_hi, weight_exp=0, threshold=threshold, bias_exp=0,
        b_lo=-b_hi - 1, b_hi=b_hi, bias_factor=float(scale),
        initial_v=int(round(scale * n.initial_v)), state_unit=float(scale),
        current_decay=int(n.current_decay), voltage_decay=int(n.voltage_decay))


class TrainNeuron:
    """One integrate-and-fire group of the fake-quant forward pass.

    Values: :func:`neurodeploy.families.speck.arith.neuron_step` (multi-spike events, subtractive
    reset, the lower bound ``-threshold``). Gradients: the linear update ``v_pre = v + a_in +
    bias``, spikes through the network's surrogate of ``(v_pre - theta) / state_unit`` (one
    event's gradient per step), reset ``v = v_pre - theta · events``; the lower bound passes the
    gradient straight through.
    """

    def __init__(self, *, threshold: int, spiking: bool, reset: str, state_unit: float,
                 surrogate: Surrogate | None, config: SpeckConfig = DEFAULT):
        self.threshold, self.spiking, self.reset = int(threshold), bool(spiking), reset
        self.state_unit, self.surrogate, self.config = float(state_unit), surrogate, config
        self.theta = float(self.threshold)

    def __call__(self, u: torch.Tensor, v: torch.Tensor, a_in: torch.Tensor,
                 bias: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        bias_d = bias.detach() if isinstance(bias, torch.Tensor) else bias
        step = neuron_step(u.detach(), v.detach(), a_in.detach(), threshold=self.threshold,
                           bias=bias_d, spiking=self.spiking, reset=self.reset, config=self.config)
        v_pre = v + a_in + bias
        if not self.spiking:
            return a_in, straight_through(v_pre, step.v), torch.zeros_like(v_pre)
        s = straight_through(spike((v_pre - self.theta) / self.state_unit, self.surrogate),
                             step.spikes)
        return a_in, straight_through(v_pre - self.theta * s, step.v), s


def train_neuron(fmt: LayerFormat, block: Any, surrogate: Any,
                 config: SpeckConfig = DEFAULT, max_spikes: int | None = None) -> TrainNeuron:
    """The differentiable neuron step of a lowered block (events per step are the family's own:
    ``floor(v / threshold)``, whatever ``max_spikes``)."""
    n = block.neurons
    return TrainNeuron(threshold=fmt.threshold, spiking=n.spiking, reset=n.reset,
                       state_unit=fmt.state_unit, surrogate=surrogate, config=config)


__all__ = ["LayerFormat", "LayerScale", "TrainNeuron", "choose_scale", "layer_format",
           "range_scale", "train_neuron", "weight_range"]
