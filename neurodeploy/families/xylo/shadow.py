"""The differentiable shadow of the ``xylo`` neuron step, which fine-tuning trains through.

:class:`TrainNeuron` advances a group by one step on torch tensors (float64 holding exact
integers). Its *values* are those of :func:`neurodeploy.families.xylo.arith.neuron_step` (the
same call: per-event saturation, bit-shift decays, int16 saturation, the int16 wrap of the leak,
up to ``max_spikes`` events with subtractive reset); its *gradients* are those of the linear
update the integers approximate, with the decay factors of the quantized dashes:

* ``u = f_syn · (u + a_in)`` with ``f_syn = 1 - 2**-dash_syn`` (the input enters before the
  decay);
* ``v_pre = f_mem · v + u + bias`` with ``f_mem = 1 - 2**-dash_mem``;
* spikes: value the integer step's event count, gradient the network's surrogate of the distance
  to threshold in float potential units (``state_unit`` state units per float unit);
* reset: ``v = v_pre - theta · s`` (subtractive).

``tests/test_xylo.py`` checks both halves: values equal ``neuron_step``, gradients those of
:meth:`TrainNeuron.linear`.
"""

from __future__ import annotations

from typing import Any

import torch

from neurodeploy.families.shadow import straight_through
from neurodeploy.families.xylo.arith import DEFAULT, XyloConfig, has_parts, neuron_step
from neurodeploy.nn.surrogate import Surrogate, spike


def dash_factor(dash: int) -> float:
    """The decay factor of a bit-shift decay: ``1 - 2**-dash`` (0 for ``dash = 0``)."""
    return 1.0 - 2.0 ** -int(dash)


class TrainNeuron:
    """One neuron group of the fake-quant forward pass (see the module docstring).

    Args:
        current_decay, voltage_decay: ``dash_syn`` and ``dash_mem`` bit shifts.
        threshold: threshold in state units (events while ``v >= threshold``).
        bias_exp: bias exponent (0 on Xylo).
        spiking: ``False`` for a group that never emits.
        reset: ``"subtract"``.
        state_unit: state units per float potential unit, the scale of the surrogate's argument.
        surrogate: the network's surrogate gradient.
        max_spikes: most events per step (31 hidden, 1 read-out).
        config: the family constants.
    """

    def __init__(self, *, current_decay: int, voltage_decay: int, threshold: int, bias_exp: int,
                 spiking: bool, reset: str, state_unit: float, surrogate: Surrogate | None,
                 max_spikes: int = 31, config: XyloConfig = DEFAULT):
        self.current_decay, self.voltage_decay = int(current_decay), int(voltage_decay)
        self.threshold, self.bias_exp = int(threshold), int(bias_exp)
        self.spiking, self.reset = bool(spiking), reset
        self.state_unit, self.surrogate = float(state_unit), surrogate
        self.max_spikes, self.config = int(max_spikes), config
        self.fi = dash_factor(self.current_decay)
        self.fv = dash_factor(self.voltage_decay)
        self.theta = float(self.threshold * (1 << config.threshold_shift))

    @staticmethod
    def _sum(u: torch.Tensor, a_in: Any) -> Any:
        return a_in[..., 0] if has_parts(a_in, u) else a_in

    def linear(self, u: torch.Tensor, v: torch.Tensor, a_in: Any,
               bias: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The shadow: ``(u, v_pre)`` of the linear update, no rounding or saturation."""
        u_lin = self.fi * (u + self._sum(u, a_in))
        return u_lin, self.fv * v + u_lin + bias * 2.0**self.bias_exp

    def __call__(self, u: torch.Tensor, v: torch.Tensor, a_in: Any,
                 bias: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step: ``(u, v, spikes)`` with the integer step's values and the shadow's
        gradients."""
        det = lambda x: x.detach() if isinstance(x, torch.Tensor) else x  # noqa: E731
        step = neuron_step(det(u), det(v), det(a_in), current_decay=self.current_decay,
                           voltage_decay=self.voltage_decay, threshold=self.threshold,
                           bias=det(bias), bias_exp=self.bias_exp, spiking=self.spiking,
                           reset=self.reset, max_spikes=self.max_spikes, config=self.config)
        u_new = straight_through(self.fi * (u + self._sum(u, a_in)), step.u)
        v_pre = self.fv * v + u_new + bias * 2.0**self.bias_exp
        if not self.spiking:
            return u_new, straight_through(v_pre, step.v), torch.zeros_like(v_pre)
        s_shadow = spike((v_pre - self.theta) / self.state_unit, self.surrogate)
        s = straight_through(s_shadow, step.spikes)
        return u_new, straight_through(v_pre - self.theta * s_shadow, step.v), s


__all__ = ["TrainNeuron", "dash_factor"]
