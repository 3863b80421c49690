"""The ``xylo`` arithmetic family: SynSense Xylo (Audio 2 / SYNS61201-like) digital LIF.

Reading of the reference simulator that Rockpool's ``XyloSim`` for SYNS61201 runs
(``rockpool/devices/xylo/syns61201/xylo_sim.py`` builds a ``xylosim.v2.XyloLayer``); the C++ of
that layer was read in the xylosim 0.1.1 source distribution, files ``src/v2/cpp/XyloLayer.cpp``,
``src/v2/cpp/XyloIAFNeuron.cpp`` and ``src/v2/cpp/XyloIAFNeuron.h``. Per time step:

0. Delivery: the input events of step ``t`` (a count per channel, at most 15) reach the first
   hidden layer in the same step; events of hidden neurons emitted at ``t - 1`` reach the next
   hidden/read-out neurons at ``t`` (so the input synapses add no delay, every later synapse layer
   adds one step; the profile's ``timing.input_delay`` / ``timing.synapse_delay``). Each event adds
   ``w << weight_shift`` (int8 weights, per-layer shift) to the synaptic current with a 16-bit
   saturating add.
1. Current decay: ``i = i - d(i, dash_syn)`` with the bit-shift ("dash") decay
   ``d(x, k) = x >> k`` (arithmetic), replaced by ``sign(x)`` when that is 0, so a non-zero state
   always moves toward zero. ``dash = 0`` clears the state.
2. Membrane: ``dv = sat(-d(v, dash_mem) + i)``; ``dv = sat(dv + bias)``; ``v = sat(v + dv)``,
   ``sat`` clamping to int16 ``[-32768, 32767]``.
3. Events: ``n = min(floor(v / theta), max)`` where ``v >= theta`` (non-strict), then
   ``v = v - n * theta`` (subtractive reset). ``max`` is 31 for hidden and 1 for read-out neurons.

So the synaptic current receives the step's input *before* it decays, and the membrane integrates
the decayed current of the same step.

Differences from that simulator, by design:

- the weighted input of one step is summed exactly and saturated once, where xylosim saturates
  after every single event (the results differ only when a partial sum within the step leaves the
  int16 range while the complete sum does not);
- one synaptic state per neuron (Xylo has two; a deployment graph has one current per neuron);
- output aliases and hibernation mode are not modelled.

Parameter mapping from a deployment graph's :class:`NeuronGroup`: ``current_decay`` is
``dash_syn``, ``voltage_decay`` is ``dash_mem`` (both bit shifts, 0..15), ``threshold`` is in state
units (threshold shift 0), ``bias`` is added every step (``bias_exp`` 0 on Xylo). Dense
``weight_exp`` is the per-layer ``weight_shift`` (``>= 0`` on Xylo).

All functions work on numpy int64 arrays and torch tensors (int64, or float64 holding integers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

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


def _or(a: Array | None, b: Array | None) -> Array | None:
    if a is None:
        return b
    if b is None:
        return a
    return a | b


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
        a_in: this step's weighted input (already shifted by the layer's weight shift), or 0.
        current_decay: ``dash_syn`` bit shift; voltage_decay: ``dash_mem`` bit shift.
        threshold: threshold in state units (shifted by the profile's threshold shift, 0 on Xylo).
        bias: added to the membrane every step as ``bias << bias_exp``.
        spiking: ``False`` for a group that never emits.
        reset: ``"subtract"`` (Xylo) or ``"zero"``.
        max_spikes: most events per neuron per step (31 hidden, 1 read-out on Xylo).
        config: family constants.
    """
    a_in = ops.like(a_in, u)
    bias = ops.shift(ops.like(bias, u), bias_exp)
    i_new, u_ovf = apply_overflow(
        u + ops.shift(a_in, config.activation_shift), config.current_bits, config.current_overflow
    )
    i_new = bitshift_decay(i_new, ops.like(current_decay, u))
    leak = decay_step(v, ops.like(voltage_decay, u))
    dv, o1 = apply_overflow(i_new - leak, config.voltage_bits, config.voltage_overflow)
    dv, o2 = apply_overflow(dv + bias, config.voltage_bits, config.voltage_overflow)
    v_new, o3 = apply_overflow(v + dv, config.voltage_bits, config.voltage_overflow)
    v_ovf = _or(_or(o1, o2), o3)
    theta = ops.shift(ops.like(threshold, u), config.threshold_shift)
    spikes, v_new = spike_and_reset(
        v_new, theta, strict=config.threshold_strict, reset=reset, max_spikes=max_spikes,
        spiking=spiking,
    )
    return NeuronStep(i_new, v_new, spikes, u_ovf, v_ovf)


def dense(weight: Array, s: Array, weight_exp: int = 0, config: XyloConfig = DEFAULT,
          s_max: int | None = None) -> tuple[Array, Array | None]:
    """Dense synapses: ``(W @ s) << weight_shift``; ``s`` may hold event counts.

    Returns ``(a, mask)``; saturation happens when the current integrates ``a``.
    """
    acc = ops.shift(synapse.dense(weight, s, s_max), weight_exp)
    return apply_overflow(acc, config.accumulator_bits, config.dense_accumulator_overflow)


def conv(weight: Array, s: Array, stride=(1, 1), padding=(0, 0), groups: int = 1,
         config: XyloConfig = DEFAULT, s_max: int | None = None) -> tuple[Array, Array | None]:
    """Conv synapses (not supported by the shipped Xylo profile; kept for custom profiles)."""
    acc = synapse.conv2d(weight, s, stride, padding, groups, s_max)
    return apply_overflow(acc, config.accumulator_bits, config.conv_accumulator_overflow)


def sumpool(s: Array, kernel, stride=None,
            config: XyloConfig = DEFAULT) -> tuple[Array, Array | None]:
    """Sum-pool synapses (unit weights)."""
    acc = synapse.sumpool2d(s, kernel, stride)
    return apply_overflow(acc, config.accumulator_bits, config.conv_accumulator_overflow)
