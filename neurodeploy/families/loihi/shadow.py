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

:meth:`TrainNeuron.window` runs a whole window at once (what fine-tuning uses): one autograd
function whose forward runs the integer step over every step without building a graph, and
whose hand-written backward runs the shadow's recurrence backwards in time, from the only
tensors it needs (per step: the spike, the surrogate's derivative and ``dv/dv_pre``).
``tests/test_finetune_window.py`` checks that its values equal the step-by-step path's exactly
and its gradients equal the step-by-step path's autograd gradients.
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

    def window(self, a_seq: torch.Tensor, bias: torch.Tensor, initial_v: float,
               record: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The group over a whole window, from ``u = 0``, ``v = initial_v``: synaptic input
        ``a_seq`` ``[B, T, *shape]`` (step ``t`` gets ``a_seq[:, t]``) and ``bias`` (broadcast to
        ``shape``). Returns spikes ``[B, T, *shape]``, the last ``v`` ``[B, *shape]`` and, with
        ``record``, every step's ``v`` ``[B, T, *shape]`` (detached); values and gradients equal
        ``T`` calls of the step (``__call__``)."""
        return _Window.apply(a_seq, bias, self, float(initial_v), bool(record))


def _integer_window(neuron: TrainNeuron, a_seq: torch.Tensor, bias: torch.Tensor,
                    initial_v: float, spiking: bool):
    """The integer window (no graph): spikes, last ``v``, every ``v``, and per step what the
    backward needs (surrogate derivative ``g`` and ``dv/dv_pre``, time-major) when ``spiking``."""
    b, steps = a_seq.shape[:2]
    shape = a_seq.shape[2:]
    u = torch.zeros((b, *shape), dtype=torch.float64)
    v = torch.full((b, *shape), initial_v, dtype=torch.float64)
    s_seq = torch.zeros_like(a_seq)
    v_seq = torch.empty_like(a_seq)
    g = torch.empty((steps, b, *shape), dtype=torch.float64) if spiking else None
    dv = torch.empty_like(g) if spiking else None
    for t in range(steps):
        step = neuron_step(u, v, a_seq[:, t], current_decay=neuron.current_decay,
                           voltage_decay=neuron.voltage_decay, threshold=neuron.threshold,
                           bias=bias, bias_exp=neuron.bias_exp, spiking=False,
                           reset=neuron.reset, config=neuron.config)
        u, v_pre = step.u, step.v
        if spiking:
            x = (v_pre - neuron.theta) / neuron.state_unit
            s = (x > 0).to(v_pre.dtype)
            g[t] = neuron.surrogate.phi(x) / neuron.state_unit
            if neuron.reset == "zero":
                v = v_pre * (1 - s)
                torch.sub(1 - s, v_pre * g[t], out=dv[t])
            else:
                v = v_pre - neuron.theta * s
                torch.sub(1.0, neuron.theta * g[t], out=dv[t])
            s_seq[:, t] = s
        else:
            v = v_pre
        v_seq[:, t] = v
    return s_seq, v, v_seq, g, dv


class _Window(torch.autograd.Function):
    """:meth:`TrainNeuron.window`: integer values forward, the shadow's recurrence backward."""

    @staticmethod
    def forward(ctx, a_seq, bias, neuron, initial_v, record):
        spiking = neuron.spiking
        bias_d = bias.detach() if isinstance(bias, torch.Tensor) else bias
        with torch.no_grad():
            s_seq, v, v_seq, g, dv = _integer_window(neuron, a_seq.detach(), bias_d, initial_v,
                                                     spiking)
        ctx.neuron = neuron
        ctx.bias_shape = bias.shape if isinstance(bias, torch.Tensor) else None
        ctx.save_for_backward(*((g, dv) if spiking else ()))
        ctx.mark_non_differentiable(v_seq)
        if not spiking:
            ctx.mark_non_differentiable(s_seq)
        return s_seq, v, v_seq if record else None

    @staticmethod
    def backward(ctx, grad_s, grad_v, _grad_v_seq):
        n = ctx.neuron
        g, dv = ctx.saved_tensors if n.spiking else (None, None)
        shape = grad_v.shape if grad_v is not None else grad_s[:, 0].shape
        steps = grad_s.shape[1] if grad_s is not None else g.shape[0] if g is not None else None
        if steps is None:
            raise RuntimeError("window backward needs the spikes' or the last v's gradient")
        grad_a = torch.empty((shape[0], steps, *shape[1:]), dtype=torch.float64)
        gv = grad_v.clone() if grad_v is not None else torch.zeros(shape, dtype=torch.float64)
        gu = torch.zeros_like(gv)
        gb = torch.zeros_like(gv)
        for t in range(steps - 1, -1, -1):
            if n.spiking:
                gpre = gv * dv[t]
                if grad_s is not None:
                    gpre = gpre + grad_s[:, t] * g[t]
            else:
                gpre = gv
            gu = gu * n.fi + gpre
            grad_a[:, t] = gu * n.act
            gb += gpre
            gv = gpre * n.fv
        grad_bias = None
        if ctx.bias_shape is not None and ctx.needs_input_grad[1]:
            grad_bias = (gb * 2.0**n.bias_exp).sum_to_size(ctx.bias_shape)
        return grad_a, grad_bias, None, None, None


__all__ = ["TrainNeuron"]
