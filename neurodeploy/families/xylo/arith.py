"""The ``xylo`` arithmetic family: SynSense Xylo's digital LIF (Xylo Audio 2 SYNS61201, Xylo IMU
SYNS63300).

The semantics are those of ``xylosim`` v2, the simulator that Rockpool 3.1.0 runs for both chips
(``rockpool/devices/xylo/syns61201/xylo_sim.py`` and ``syns63300/xylo_sim.py`` build a
``xylosim.v2.XyloLayer``; xylosim 0.1.3 sources ``src/v2/cpp/XyloLayer.cpp``,
``XyloIAFNeuron.cpp``, ``XyloIAFNeuron.h``), measured against it as ``docs/xylo_reference.md``
describes. Per time step:

0. Delivery: the input events of step ``t`` (a count per channel, at most 15) reach their hidden
   neurons in the same step; events of hidden neurons emitted at ``t - 1`` (at most 31 per
   neuron) reach hidden (recurrent) and read-out neurons at ``t`` (the profile's
   ``timing.input_delay`` 0 / ``timing.synapse_delay`` 1). Each event adds ``w << weight_shift``
   (int8 weights, one shift per matrix) to the synaptic current with an int16 **saturating add
   after every event**, sources in ascending index order.
1. Current decay: ``i = i - d(i, dash_syn)`` with the bit-shift ("dash") decay
   ``d(x, k) = x >> k`` (arithmetic, floor), replaced by ``sign(x)`` when that is 0, so a
   non-zero state always moves toward zero. ``dash = 0`` clears the state.
2. Membrane: ``dv = sat(wrap(-d(v, dash_mem)) + i)``; ``dv = sat(dv + bias)``;
   ``v = sat(v + dv)``, ``sat`` clamping to int16 ``[-32768, 32767]`` and ``wrap`` wrapping to
   int16 (it matters only for ``v = -32768`` with ``dash_mem = 0``). ``i`` is the sum of the
   neuron's synaptic currents.
3. Events: ``n = min(floor(v / theta), max)`` where ``v >= theta`` (non-strict), then
   ``v = v - n * theta`` (subtractive reset). ``max`` is 31 for hidden and 1 for read-out neurons.

So the synaptic current receives the step's input *before* it decays, and the membrane integrates
the decayed current of the same step.

**Per-event saturation, exactly.** A sequence of saturating adds ``x -> clamp(x + c_k)`` is
itself ``x -> clamp(x + sum c_k, g(lo), g(hi))`` on ``[lo, hi]``, where ``g(lo)`` and ``g(hi)`` are
the sequence run from the two ends of the range (compositions of clamped shifts are clamped
shifts). So :func:`dense` returns, per target neuron, the parts ``(sum, g(lo), g(hi))`` stacked on
a trailing axis of size :data:`INPUT_PARTS` (``n`` events of one source add ``n · w`` with one
clamp: repeated adds of one sign are monotone), and :func:`neuron_step` applies them to the
current it holds; a plain array ``a_in`` (without the trailing axis) is added with one clamp.

Parameter mapping from a deployment graph's :class:`NeuronGroup`: ``current_decay`` is
``dash_syn``, ``voltage_decay`` is ``dash_mem`` (both bit shifts, 0..15), ``threshold`` is in state
units (threshold shift 0), ``bias`` is added every step (``bias_exp`` 0 on Xylo). Dense
``weight_exp`` is the matrix's ``weight_shift`` (``>= 0`` on Xylo). A graph has one synaptic
current per neuron (the second synapse of Xylo Audio 2 stays unused: zero weights); the spec
simulator (:mod:`.spec`) runs both synapses and full recurrent matrices with the same functions.

All functions work on numpy int64 arrays and torch tensors (int64, or float64 holding integers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from neurodeploy.arith import ops, synapse
from neurodeploy.arith.ops import Array
from neurodeploy.arith.overflow import apply_overflow
from neurodeploy.arith.spiking import spike_and_reset

NAME = "xylo"


@dataclass(frozen=True)
class XyloConfig:
    """Fixed-point constants of the family (bits, overflow rules, events per step)."""

    current_bits: int = 16
    current_overflow: str = "saturate"
    voltage_bits: int = 16
    voltage_overflow: str = "saturate"
    threshold_shift: int = 0
    activation_shift: int = 0
    threshold_strict: bool = False
    accumulator_bits: int = 16
    dense_accumulator_overflow: str = "none"
    conv_accumulator_overflow: str = "none"

    @classmethod
    def from_profile(cls, profile: Any) -> XyloConfig:
        """Read the constants from a :class:`~neurodeploy.hardware.HardwareProfile`."""
        n, st = profile.neuron, profile.state
        return cls(
            current_bits=st.current_bits,
            current_overflow=st.current_overflow,
            voltage_bits=st.voltage_bits,
            voltage_overflow=st.voltage_overflow,
            threshold_shift=n.threshold_shift,
            activation_shift=n.activation_shift,
            threshold_strict=n.threshold_strict,
            accumulator_bits=st.accumulator_bits,
            dense_accumulator_overflow=st.dense_accumulator_overflow,
            conv_accumulator_overflow=st.conv_accumulator_overflow,
        )


Config = XyloConfig
DEFAULT = XyloConfig()


class NeuronStep(NamedTuple):
    """Result of one neuron step: new state, events and overflow masks (``None`` = no rule)."""

    u: Array
    v: Array
    spikes: Array
    u_overflow: Array | None
    v_overflow: Array | None


def decay_step(x: Array, dash: Any) -> Array:
    """The amount ``d(x, dash)`` a bit-shift decay removes: ``x >> dash``, or ``sign(x)`` if 0.

    ``dash`` is a Python int or an integer array (per neuron), 0..15 on Xylo.
    """
    step = ops.floor_div(x, ops.pow2(dash, x))
    return ops.where(step == 0, ops.sign(x), step)


def bitshift_decay(x: Array, dash: Any) -> Array:
    """One step of bit-shift decay: ``x - d(x, dash)`` (see :func:`decay_step`)."""
    return x - decay_step(x, dash)


INPUT_PARTS = 3
"""Trailing axis of :func:`dense`'s output: ``(sum, g(lo), g(hi))`` (module docstring)."""


def _or(a: Array | None, b: Array | None) -> Array | None:
    if a is None:
        return b
    if b is None:
        return a
    return a | b


def _range(bits: int) -> tuple[int, int]:
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def wrap(x: Array, bits: int) -> Array:
    """``x`` wrapped to a ``bits``-wide two's complement integer."""
    return apply_overflow(x, bits, "wrap")[0]


def has_parts(a_in: Any, u: Array) -> bool:
    """Whether ``a_in`` carries :data:`INPUT_PARTS` (a trailing axis beyond ``u``'s shape)."""
    return getattr(a_in, "ndim", 0) == getattr(u, "ndim", 0) + 1 and a_in.shape[-1] == INPUT_PARTS


def saturating_add(u: Array, a_in: Any, config: XyloConfig = DEFAULT) -> tuple[Array, Array | None]:
    """The current after this step's events: ``clamp(u + sum, g(lo), g(hi))`` for parts, else
    ``u + a_in`` under the current's overflow rule; returns ``(current, overflow mask)``."""
    if not has_parts(a_in, u):
        return apply_overflow(u + ops.like(a_in, u), config.current_bits, config.current_overflow)
    a_in = ops.like(a_in, u)
    total, lo, hi = a_in[..., 0], a_in[..., 1], a_in[..., 2]
    raw = u + total
    out = ops.where(raw < lo, lo, ops.where(raw > hi, hi, raw))
    return out, out != raw


def current_step(u: Array, a_in: Any, dash: Any, config: XyloConfig = DEFAULT
                 ) -> tuple[Array, Array | None]:
    """One synaptic current: events added (:func:`saturating_add`), then the dash decay."""
    i_new, ovf = saturating_add(u, a_in, config)
    return bitshift_decay(i_new, ops.like(dash, u)), ovf


def membrane_step(v: Array, i_syn: Array, *, voltage_decay: Any, threshold: Any, bias: Any = 0,
                  bias_exp: int = 0, spiking: bool = True, reset: str = "subtract",
                  max_spikes: int = 31, config: XyloConfig = DEFAULT
                  ) -> tuple[Array, Array, Array | None]:
    """Membrane update and events from the summed decayed current ``i_syn``; returns
    ``(v, spikes, overflow mask)``."""
    bits, mode = config.voltage_bits, config.voltage_overflow
    bias = ops.shift(ops.like(bias, v), bias_exp)
    leak = wrap(-decay_step(v, ops.like(voltage_decay, v)), bits)
    dv, o1 = apply_overflow(leak + i_syn, bits, mode)
    dv, o2 = apply_overflow(dv + bias, bits, mode)
    v_new, o3 = apply_overflow(v + dv, bits, mode)
    theta = ops.shift(ops.like(threshold, v), config.threshold_shift)
    spikes, v_new = spike_and_reset(
        v_new, theta, strict=config.threshold_strict, reset=reset, max_spikes=max_spikes,
        spiking=spiking,
    )
    return v_new, spikes, _or(_or(o1, o2), o3)


def neuron_step(
    u: Array,
    v: Array,
    a_in: Any,
    *,
    current_decay: Any,
    voltage_decay: Any,
    threshold: Any,
    bias: Any = 0,
    bias_exp: int = 0,
    spiking: bool = True,
    reset: str = "subtract",
    max_spikes: int = 31,
    config: XyloConfig = DEFAULT,
) -> NeuronStep:
    """Advance Xylo LIF neurons by one step (equations in the module docstring).

    Args:
        u: synaptic current ``i_syn`` (state units); v: membrane potential, same shape.
        a_in: this step's events as :func:`dense` returns them (parts on a trailing axis), a
            plain weighted sum (added with one clamp), or 0.
        current_decay: ``dash_syn`` bit shift; voltage_decay: ``dash_mem`` bit shift.
        threshold: threshold in state units (shifted by the profile's threshold shift, 0 on Xylo).
        bias: added to the membrane every step as ``bias << bias_exp``.
        spiking: ``False`` for a group that never emits.
        reset: ``"subtract"`` (Xylo) or ``"zero"``.
        max_spikes: most events per neuron per step (31 hidden, 1 read-out on Xylo).
        config: family constants.
    """
    if config.activation_shift and not has_parts(a_in, u):
        a_in = ops.shift(ops.like(a_in, u), config.activation_shift)
    i_new, u_ovf = current_step(u, a_in, current_decay, config)
    v_new, spikes, v_ovf = membrane_step(
        v, i_new, voltage_decay=voltage_decay, threshold=threshold, bias=bias, bias_exp=bias_exp,
        spiking=spiking, reset=reset, max_spikes=max_spikes, config=config)
    return NeuronStep(i_new, v_new, spikes, u_ovf, v_ovf)


def _stack(parts: list[Array]) -> Array:
    if ops.is_torch(parts[0]):
        import torch

        return torch.stack(parts, -1)
    return np.stack(parts, -1)


def sequential_bounds(contrib: Any, n_sources: int, lo: int, hi: int, ref: Array
                      ) -> tuple[Array, Array]:
    """``(g(lo), g(hi))``: saturating adds of ``contrib(k)`` for ``k = 0..n_sources-1`` in that
    order, started from ``lo`` and from ``hi`` (``contrib(k)`` is ``None`` when source ``k`` sends
    nothing)."""
    g_lo = ops.zeros_like(ref) + lo
    g_hi = ops.zeros_like(ref) + hi
    for k in range(n_sources):
        c = contrib(k)
        if c is None:
            continue
        g_lo = ops.clip(g_lo + c, lo, hi)
        g_hi = ops.clip(g_hi + c, lo, hi)
    return g_lo, g_hi


def dense(weight: Array, s: Array, weight_exp: int = 0, config: XyloConfig = DEFAULT,
          s_max: int | None = None) -> tuple[Array, Array | None]:
    """Dense synapses with per-event saturation: the parts ``(sum, g(lo), g(hi))`` of
    ``(W @ s) << weight_shift`` on a trailing axis (module docstring); ``s`` holds event counts.

    Returns ``(parts, None)``: saturation happens when the current takes the parts.
    """
    total = ops.shift(synapse.dense(weight, s, s_max), weight_exp)
    lo, hi = _range(config.current_bits)
    w = ops.like(weight, s) if ops.is_torch(s) else np.asarray(weight, dtype=np.int64)
    w = ops.shift(w, weight_exp)
    flat = s.reshape(-1, int(w.shape[1]))
    active = ops.to_numpy(flat != 0).any(0)

    def contrib(k: int) -> Any:
        if not active[k]:
            return None
        return flat[:, k:k + 1] * w[:, k][None, :]

    ref = total.reshape(-1, int(w.shape[0]))
    g_lo, g_hi = sequential_bounds(contrib, int(w.shape[1]), lo, hi, ref)
    parts = _stack([ref, g_lo, g_hi])
    return parts.reshape(*total.shape, INPUT_PARTS), None


def _single_clamp_parts(total: Array, config: XyloConfig) -> Array:
    lo, hi = _range(config.current_bits)
    return _stack([total, ops.clip(total + lo, lo, hi), ops.clip(total + hi, lo, hi)])


def merge_inputs(inputs: list[Any], config: XyloConfig = DEFAULT) -> Any:
    """The synaptic input of several edges into one group, delivered one edge after the other in
    list order (xylosim: input channels, then hidden neurons by index), each as :func:`dense`
    returns it (parts on a trailing axis); a scalar 0 (no events) is skipped.

    Delivering ``(s1, l1, h1)`` and then ``(s2, l2, h2)`` is the clamped shift
    ``(s1 + s2, f2(l1), f2(h1))`` with ``f2(y) = clamp(y + s2, l2, h2)``: the composition of two
    clamped shifts is the clamped shift run from the two ends of the range (module docstring).
    """
    out = None
    for a in inputs:
        if not hasattr(a, "shape"):
            if a != 0:
                raise ValueError("merge_inputs takes the parts the synapse functions return")
            continue
        if out is None:
            out = a
            continue
        s2, l2, h2 = a[..., 0], a[..., 1], a[..., 2]
        f_lo, f_hi = ops.clip(out[..., 1] + s2, l2, h2), ops.clip(out[..., 2] + s2, l2, h2)
        out = _stack([out[..., 0] + s2, f_lo, f_hi])
    return 0 if out is None else out


def conv(weight: Array, s: Array, stride=(1, 1), padding=(0, 0), groups: int = 1,
         config: XyloConfig = DEFAULT, s_max: int | None = None) -> tuple[Array, Array | None]:
    """Conv synapses (no Xylo chip has them; kept for custom profiles): the parts of one clamp."""
    acc = synapse.conv2d(weight, s, stride, padding, groups, s_max)
    return _single_clamp_parts(acc, config), None


def sumpool(s: Array, kernel, stride=None,
            config: XyloConfig = DEFAULT) -> tuple[Array, Array | None]:
    """Sum-pool synapses (unit weights; not on Xylo chips): the parts of one clamp."""
    return _single_clamp_parts(synapse.sumpool2d(s, kernel, stride), config), None
