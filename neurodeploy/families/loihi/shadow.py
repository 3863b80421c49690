"""The differentiable shadow of the ``loihi`` neuron step, which fine-tuning trains through.

:class:`TrainNeuron` advances a group by one step on torch tensors (float64 holding exact
integers). Its *values* are those of :func:`neurodeploy.families.loihi.arith.neuron_step` (the
same call, so rounding toward zero, the ``u`` wrap, the ``v`` saturation and int32 storage are
all there); its *gradients* are those of the linear update the integers approximate:

* ``u = f_i · u + a_in · 2**activation_shift`` with ``f_i = (2**decay_shift - current_decay) /
  2**decay_shift``;
* ``v_pre = f_v · v + u + bias · 2**bias_exp``;
* spikes: value ``v_pre > threshold << threshold_shift`` (strict), gradient the network's
  surrogate of the distance to threshold in float potential units (``state_unit`` state units
  per float unit);
* reset: ``v = v_pre · (1 - s)`` (``"zero"``) or ``v = v_pre - theta · s`` (``"subtract"``).

``tests/test_families.py`` checks both halves: values equal ``neuron_step`` with spiking on, and
gradients equal those of :meth:`TrainNeuron.linear`.
"""

from __future__ import annotations

from typing import Any

import torch

from neurodeploy.families.loihi.arith import DEFAULT, LoihiConfig, neuron_step
from neurodeploy.families.shadow import straight_through
from neurodeploy.nn.surrogate import Surrogate, spike


class TrainNeuron:
    """One neuron group of the fake-quant forward pass (see the module docstring).

    Args:
        current_decay, voltage_decay: iDecay / vDecay in ``0..2**decay_shift``.
        threshold: threshold mantissa (the neuron spikes iff ``v > threshold << threshold_shift``).
        bias_exp: bias exponent.
        spiking: ``False`` for the non-spiking read-out.
        reset: ``"zero"`` or ``"subtract"``.
        state_unit: state units per float potential unit (``2**activation_shift · scale``), the
            scale of the surrogate's argument.
        surrogate: the network's surrogate gradient.
        config: the family constants.
    """

    def __init__(self, *, current_decay: int, voltage_decay: int, threshold: int, bias_exp: int,
                 spiking: bool, reset: str, state_unit: float, surrogate: Surrogate | None,
                 config: LoihiConfig = DEFAULT):
        self.current_decay, self.voltage_decay = int(current_decay), int(voltage_decay)
        self.threshold, self.bias_exp = int(threshold), int(bias_exp)
        self.spiking, self.reset = bool(spiking), reset
        self.state_unit, self.surrogate, self.config = float(state_unit), surrogate, config
        unit = float(1 << config.decay_shift)
        self.fi = (unit - self.current_decay) / unit
        self.fv = (unit - self.voltage_decay) / unit
        self.act = float(1 << config.activation_shift)
        self.theta = float(self.threshold * (1 << config.threshold_shift))

    def linear(self, u: torch.Tensor, v: torch.Tensor, a_in: torch.Tensor,
               bias: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The shadow: ``(u, v_pre)`` of the linear update, no rounding, wrap or saturation."""
        u_lin = self.fi * u + self.act * a_in
        return u_lin, self.fv * v + u_lin + bias * 2.0**self.bias_exp

    def __call__(self, u: torch.Tensor, v: torch.Tensor, a_in: torch.Tensor,
                 bias: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step: ``(u, v, spikes)`` with the integer step's values and the shadow's
        gradients."""
        bias_d = bias.detach() if isinstance(bias, torch.Tensor) else bias
        step = neuron_step(u.detach(), v.detach(), a_in.detach(), current_decay=self.current_decay,
                           voltage_decay=self.voltage_decay, threshold=self.threshold, bias=bias_d,
                           bias_exp=self.bias_exp, spiking=False, reset=self.reset,
                           config=self.config)
        u_new = straight_through(self.fi * u + self.act * a_in, step.u)
        v_pre = straight_through(self.fv * v + u_new + bias * 2.0**self.bias_exp, step.v)
        if not self.spiking:
            return u_new, v_pre, torch.zeros_like(v_pre)
        s = spike((v_pre - self.theta) / self.state_unit, self.surrogate)
        v_new = v_pre * (1 - s) if self.reset == "zero" else v_pre - self.theta * s
        return u_new, v_new, s


__all__ = ["TrainNeuron"]
