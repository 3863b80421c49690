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

import math
from typing import Any

import numpy as np
import torch

from neurodeploy.arith import ops
from neurodeploy.families.loihi import scan_compiled
from neurodeploy.families.loihi.arith import (
    DEFAULT,
    LoihiConfig,
    _synaptic_output,
    bias_term,
    neuron_step,
    rtz_decay,
)
from neurodeploy.families.loihi.scan import NeuronScan, safe_interval
from neurodeploy.families.shadow import straight_through
from neurodeploy.nn import fused_compiled
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


def _v_pre_by_scan(neuron: TrainNeuron, a_seq: torch.Tensor, bias: Any,
                   initial_v: float) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Every step's ``v`` before the spike decision and the reset (``[B, T, *shape]``, float64
    holding integers) and the scan's spikes (uint8) by the family's :class:`NeuronScan` (exact;
    its tests compare it with ``neuron_step``), or ``None`` where it does not apply."""
    b, steps = a_seq.shape[:2]
    shape = tuple(a_seq.shape[2:])
    bias_np = np.asarray(bias, dtype=np.float64).astype(np.int64)
    params = {"current_decay": neuron.current_decay, "voltage_decay": neuron.voltage_decay,
              "threshold": neuron.threshold, "bias": bias_np, "bias_exp": neuron.bias_exp,
              "spiking": neuron.spiking, "reset": neuron.reset}
    if not NeuronScan.supported(params, neuron.config, 1, int(initial_v)) or \
            float(initial_v) != int(initial_v):
        return None
    # time-major view of a batch-major copy (the scan reads a[t] for step t; one pass, no
    # transposing copy)
    # The bound of |a| step by step (tighter than one bound for the window: more steps are
    # proven free of range rules and run compiled), with the scaled copy in one pass where it
    # compiles (a NaN: no bound, the step path decides).
    flat = a_seq.reshape(b, steps, math.prod(shape))
    act = float(neuron.act)
    if NeuronScan.compiled and flat.dtype == torch.float64 and flat.is_contiguous() and act > 0:
        scaled, bounds = np.empty(flat.shape), np.empty(steps)
        if scan_compiled.scaled_by_step(flat.numpy(), act, scaled, bounds):
            return None
    else:
        scaled = (flat * act).numpy()
        bounds = ((torch.maximum(flat.amax(dim=(0, 2)), -flat.amin(dim=(0, 2))) * act).numpy()
                  if flat.numel() else np.zeros(steps))
    a = scaled.transpose(1, 0, 2)
    if a.size and not float(bounds.max()) < 2.0**50:
        return None
    scan = NeuronScan(b, shape, params, neuron.config, int(initial_v), steps, record_v_pre=True)
    raster = np.zeros((b, steps, a.shape[2]), dtype=np.uint8)
    scan.run(a, bounds, raster, 0, steps)
    return (torch.from_numpy(scan.states_v_pre).reshape(b, steps, *shape),
            torch.from_numpy(raster).reshape(b, steps, *shape))


def _states_by_steps(neuron: TrainNeuron, a_seq: torch.Tensor, bias: Any, initial_v: float):
    """Every step's ``u`` and ``v`` (after the reset) by ``neuron_step``, one call per step."""
    b, steps = a_seq.shape[:2]
    u = torch.zeros((b, *a_seq.shape[2:]), dtype=torch.float64)
    v = torch.full_like(u, initial_v)
    u_seq, v_seq = torch.empty_like(a_seq), torch.empty_like(a_seq)
    for t in range(steps):
        u, v_pre = _pre_reset(neuron, u, v, a_seq[:, t], bias)
        v = _reset(neuron, v_pre, (v_pre > neuron.theta).to(v_pre.dtype)) if neuron.spiking \
            else v_pre
        u_seq[:, t], v_seq[:, t] = u, v
    return u_seq, v_seq


def _pre_reset(neuron: TrainNeuron, u: torch.Tensor, v: torch.Tensor, a_in: torch.Tensor,
               bias: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The integer step up to the spike decision: new ``u`` and ``v`` before the reset (any
    leading shape: elementwise)."""
    step = neuron_step(u, v, a_in, current_decay=neuron.current_decay,
                       voltage_decay=neuron.voltage_decay, threshold=neuron.threshold, bias=bias,
                       bias_exp=neuron.bias_exp, spiking=False, reset=neuron.reset,
                       config=neuron.config)
    return step.u, step.v


def _reset(neuron: TrainNeuron, v_pre: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """The reset of :meth:`TrainNeuron.__call__` (same operations, so the same values)."""
    return v_pre * (1 - s) if neuron.reset == "zero" else v_pre - neuron.theta * s


def _inside(x: torch.Tensor, *intervals: tuple[float, float]) -> bool:
    """Whether every value of ``x`` lies in every interval (so the rules they stand for leave
    ``x`` unchanged)."""
    if x.numel() == 0:
        return True
    lo, hi = float(x.min()), float(x.max())
    return all(a <= lo and hi <= b for a, b in intervals)


def _v_pre(neuron: TrainNeuron, u_seq: torch.Tensor, v_prev: torch.Tensor, a_seq: torch.Tensor,
           bias: Any) -> torch.Tensor:
    """Every step's ``v`` before the reset, all steps at once. Where the sum stays inside the
    storage and ``v`` ranges no rule acts (as in :class:`NeuronScan`), so it is the sum itself;
    otherwise the elementwise ``neuron_step`` on the previous states gives it."""
    cfg = neuron.config
    v_raw = rtz_decay(v_prev, neuron.voltage_decay, cfg.decay_shift) + u_seq + \
        bias_term(bias, neuron.bias_exp)
    if _inside(v_raw, safe_interval(cfg.storage_bits, "wrap"),
               safe_interval(cfg.voltage_bits, cfg.voltage_overflow)):
        return v_raw
    u_prev = torch.cat([torch.zeros_like(u_seq[:, :1]), u_seq[:, :-1]], 1)
    u_chk, v_pre = _pre_reset(neuron, u_prev, v_prev, a_seq, bias)
    if not torch.equal(u_chk, u_seq):
        raise RuntimeError("loihi window: the scan's u differs from neuron_step's")
    return v_pre


def _integer_window(neuron: TrainNeuron, a_seq: torch.Tensor, bias: Any, initial_v: float,
                    record: bool = True):
    """The integer window (no graph): spikes, last ``v``, every ``v`` (``None`` without
    ``record``), and per step what the backward needs (surrogate derivative ``g`` and
    ``dv/dv_pre``, ``[B, T, ...]``) when spiking.

    The sequential part (``v`` before the reset, after every step) runs in :class:`NeuronScan`
    where it applies, else one ``neuron_step`` per step; the spikes, the reset ``v`` and
    everything the backward needs then follow for all steps at once."""
    scanned = _v_pre_by_scan(neuron, a_seq, bias, initial_v)
    v_pre, raster = scanned if scanned is not None else (None, None)
    if v_pre is None:
        u_seq, v_seq = _states_by_steps(neuron, a_seq, bias, initial_v)
        v_prev = torch.cat([torch.full_like(v_seq[:, :1], initial_v), v_seq[:, :-1]], 1)
        v_pre = _v_pre(neuron, u_seq, v_prev, a_seq, bias)
        if neuron.spiking and not torch.equal(
                _reset(neuron, v_pre, (v_pre > neuron.theta).to(v_pre.dtype)), v_seq):
            raise RuntimeError("loihi window: the reset v differs from neuron_step's")
    if not neuron.spiking:
        return torch.zeros_like(a_seq), v_pre[:, -1], v_pre, None, None
    fused = raster is not None and neuron.config.threshold_strict and NeuronScan.compiled \
        and v_pre.is_contiguous()
    form = neuron.surrogate.compiled_form() if fused else None
    if form is not None and v_pre.dtype == torch.float64:  # every term in one compiled pass
        s_seq, g, dv = torch.empty_like(v_pre), torch.empty_like(v_pre), torch.empty_like(v_pre)
        code, a, c = form
        scan_compiled.window_terms(v_pre.view(-1).numpy(), raster.reshape(-1).numpy(), neuron.theta,
                                   neuron.state_unit, code, fused_compiled.phi_constants(a, c, np.float64),
                                   neuron.reset == "zero", s_seq.view(-1).numpy(), g.view(-1).numpy(),
                                   dv.view(-1).numpy())
        v_seq = _reset(neuron, v_pre, s_seq) if record else None
        v_last = v_seq[:, -1] if record else _reset(neuron, v_pre[:, -1], s_seq[:, -1])
        return s_seq, v_last, v_seq, g, dv
    if fused:  # the scan's spikes (v_pre > theta, i.e. x > 0); x and s in one pass
        x, s_seq = torch.empty_like(v_pre), torch.empty_like(v_pre)
        scan_compiled.spike_terms(v_pre.view(-1).numpy(), raster.reshape(-1).numpy(),
                                  neuron.theta, neuron.state_unit, x.view(-1).numpy(),
                                  s_seq.view(-1).numpy())
    else:
        x = torch.sub(v_pre, neuron.theta).div_(neuron.state_unit)
        s_seq = (raster.to(v_pre.dtype) if raster is not None and neuron.config.threshold_strict
                 else (x > 0).to(v_pre.dtype))
    v_seq = _reset(neuron, v_pre, s_seq) if record else None
    v_last = v_seq[:, -1] if record else _reset(neuron, v_pre[:, -1], s_seq[:, -1])
    phi = neuron.surrogate.phi(x)  # a surrogate with a compiled form took the pass above
    if neuron.reset == "zero" and fused:
        g = torch.empty_like(v_pre)
        dv = x  # x's buffer: x is not needed after phi
        phi = phi.to(v_pre.dtype).expand_as(v_pre).contiguous()
        scan_compiled.zero_reset_terms(phi.view(-1).numpy(), v_pre.view(-1).numpy(),
                                       s_seq.view(-1).numpy(), neuron.state_unit,
                                       g.view(-1).numpy(), dv.view(-1).numpy())
        return s_seq, v_last, v_seq, g, dv
    g = phi / neuron.state_unit
    if neuron.reset == "zero":
        dv = (1 - s_seq) - v_pre * g  # as the compiled terms (addcmul may round otherwise)
    else:
        dv = (g * -neuron.theta).add_(1.0)
    return s_seq, v_last, v_seq, g, dv


def dense_output(acc: Any, weight_exp: int = 0,
                 config: LoihiConfig = DEFAULT) -> tuple[Any, Any]:
    """:func:`~neurodeploy.families.loihi.arith.dense` from its accumulator ``acc = s @ W.T``
    (computed once by the caller, which trains through the same product): the exponent, the
    accumulator rule and storage. Returns ``(output, changed)``: ``changed`` is ``None`` where no
    rule changed a value (``output`` is ``shift(acc, weight_exp)`` value for value), else the
    mask of the values a rule changed."""
    acc = ops.shift(acc, weight_exp) if weight_exp else acc
    if isinstance(acc, torch.Tensor) and _inside(
            acc, safe_interval(config.accumulator_bits, config.dense_accumulator_overflow),
            safe_interval(config.storage_bits, "wrap")):
        return acc, None  # no rule changes a value inside both ranges
    return _synaptic_output(acc, config, config.dense_accumulator_overflow)


class _Window(torch.autograd.Function):
    """:meth:`TrainNeuron.window`: integer values forward, the shadow's recurrence backward."""

    @staticmethod
    def forward(ctx, a_seq, bias, neuron, initial_v, record):
        spiking = neuron.spiking
        bias_d = bias.detach() if isinstance(bias, torch.Tensor) else bias
        with torch.no_grad():
            s_seq, v, v_seq, g, dv = _integer_window(neuron, a_seq.detach(), bias_d, initial_v,
                                                     record)
        ctx.neuron = neuron
        ctx.bias_shape = bias.shape if isinstance(bias, torch.Tensor) else None
        ctx.grad_shape = tuple(a_seq.shape[2:])
        ctx.save_for_backward(*((g, dv) if spiking else ()))
        if record:
            ctx.mark_non_differentiable(v_seq)
        if not spiking:
            ctx.mark_non_differentiable(s_seq)
        return s_seq, v, v_seq if record else None

    @staticmethod
    def backward(ctx, grad_s, grad_v, _grad_v_seq):
        n = ctx.neuron
        g, dv = ctx.saved_tensors if n.spiking else (None, None)
        shape = grad_v.shape if grad_v is not None else grad_s[:, 0].shape
        steps = grad_s.shape[1] if grad_s is not None else g.shape[1] if g is not None else None
        if steps is None:
            raise RuntimeError("window backward needs the spikes' or the last v's gradient")
        # gpre[t] (gradient of v before the reset at step t) first, then u's recurrence from it:
        # gpre[t] = gpre[t + 1] · fv · dv[t] + grad_s[t] · g[t], gu[t] = gu[t + 1] · fi + gpre[t]
        # (one fused operation per step each, written into whole-window buffers)
        gv = grad_v if grad_v is not None else torch.zeros(shape, dtype=torch.float64)
        if NeuronScan.compiled and gv.dtype == torch.float64 and \
                (grad_s is None or grad_s.dtype == torch.float64):
            return _compiled_window_grad(ctx, n, grad_s, g, dv, gv, steps)
        gpre = torch.empty((shape[0], steps, *shape[1:]), dtype=torch.float64)
        if n.spiking:
            gs = grad_s * g if grad_s is not None else None
            dvf = dv * n.fv
            last = gv * dv[:, -1]
            gpre[:, -1] = last if gs is None else last + gs[:, -1]
            for t in range(steps - 2, -1, -1):
                if gs is None:
                    torch.mul(gpre[:, t + 1], dvf[:, t], out=gpre[:, t])
                else:
                    torch.addcmul(gs[:, t], gpre[:, t + 1], dvf[:, t], out=gpre[:, t])
        else:
            gpre[:, -1] = gv
            for t in range(steps - 2, -1, -1):
                torch.mul(gpre[:, t + 1], n.fv, out=gpre[:, t])
        grad_a = torch.empty_like(gpre)
        grad_a[:, -1] = gpre[:, -1]
        for t in range(steps - 2, -1, -1):
            torch.add(gpre[:, t], grad_a[:, t + 1], alpha=n.fi, out=grad_a[:, t])
        grad_a.mul_(n.act)
        grad_bias = None
        if ctx.bias_shape is not None and ctx.needs_input_grad[1]:
            grad_bias = (gpre.sum(1) * 2.0**n.bias_exp).sum_to_size(ctx.bias_shape)
        return grad_a, grad_bias, None, None, None


def _compiled_window_grad(ctx, n: TrainNeuron, grad_s, g, dv, gv, steps: int):
    """:class:`_Window`'s backward by :func:`scan_compiled.window_grad` (the same recurrences in
    one compiled pass; values equal the torch loop's to float64 rounding: see its docstring)."""
    batch = gv.shape[0]
    flat = (batch, steps, math.prod(ctx.grad_shape))
    gv = gv.contiguous().reshape(batch, flat[2])
    spiking = bool(n.spiking)
    dummy = np.zeros((1, 1, 1))
    gs = grad_s.contiguous().reshape(flat).numpy() if grad_s is not None and spiking else dummy
    g_np = g.contiguous().reshape(flat).numpy() if spiking else dummy
    dv_np = dv.contiguous().reshape(flat).numpy() if spiking else dummy
    grad_a = torch.empty((batch, steps, gv.shape[1]), dtype=torch.float64)
    gpre_sum = torch.empty_like(gv)
    scan_compiled.window_grad(gs, grad_s is not None and spiking, g_np, dv_np, spiking, gv.numpy(),
                              float(n.fv), float(n.fi), float(n.act), grad_a.numpy(), gpre_sum.numpy())
    grad_bias = None
    if ctx.bias_shape is not None and ctx.needs_input_grad[1]:
        grad_bias = (gpre_sum.reshape(batch, *ctx.grad_shape) * 2.0**n.bias_exp).sum_to_size(ctx.bias_shape)
    return grad_a.reshape(batch, steps, *ctx.grad_shape), grad_bias, None, None, None


__all__ = ["TrainNeuron", "dense_output"]
