"""The ``speck`` arithmetic family: SynSense Speck 2E/2F and DYNAP-CNN integrate-and-fire cores.

The semantics are those of Sinabs 3.1.3's software model of a ``DynapcnnNetwork`` (the network a
Sinabs user deploys to the chip), files ``sinabs/layers/functional/lif.py``
(``lif_forward_single``), ``sinabs/activation/spike_generation.py`` (``MultiSpike``),
``sinabs/activation/reset_mechanism.py`` (``MembraneSubtract``) and
``sinabs/backend/dynapcnn/discretize.py`` (8-bit weights, 16-bit thresholds and states). Per time
step (one time bin of events) and neuron:

1. ``v = v + a_in + bias``: the conv/dense output of the step's input events (event counts times
   integer weights, exact) plus the bias, with no leak and no synaptic state (integrate-and-fire);
2. events: ``n = floor(v / theta)`` where ``v >= theta`` (Sinabs's ``MultiSpike``:
   ``(v > 0) * trunc(v / theta)``, so non-strict, and several events per step when ``v`` holds
   several thresholds; the chip fires once per threshold crossing as it integrates the events of
   a bin one by one), capped at the profile's ``max_spikes_per_step`` (the schema's largest value,
   2**31 - 1: Sinabs has no cap, and a potential within 16 bits never reaches it);
3. reset by subtraction: ``v = v - n * theta``;
4. the lower bound: ``v = max(v, min_v_mem)`` with ``min_v_mem = -theta`` (the family's one
   convention for the chip's per-layer lower threshold: the value Sinabs users set so that
   ``discretize`` scales weights and threshold together).

Number format: weights int8, threshold ``1..32767``, ``min_v_mem = -threshold``, states 16-bit.
Sinabs's software forward does not saturate at 16 bits, and what the chip does when a state
leaves that range is not published; so the simulator keeps the exact value (as Sinabs does) and
counts every neuron step whose potential before the spike test leaves ``[-2**15, 2**15 - 1]`` as a
voltage overflow (``SimResult.v_overflows``). Results with overflows are where chip and software
may differ: the deployment reports warn about them (``sim.deploy.unpublished_overflows``).

``u`` is the step's synaptic input (no state: the profile's current decay is complete), ``v`` the
membrane potential. All functions work on numpy int64 arrays and torch tensors (int64, or float64
holding integers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from neurodeploy.arith import ops, synapse
from neurodeploy.arith.ops import Array
from neurodeploy.arith.overflow import apply_overflow
from neurodeploy.arith.spiking import spike_and_reset

NAME = "speck"


@dataclass(frozen=True)
class SpeckConfig:
    """Constants of the family: state width (for the overflow flag), events per step, comparison."""

    voltage_bits: int = 16
    threshold_strict: bool = False
    max_spikes: int = 2**31 - 1
    accumulator_bits: int = 16
    dense_accumulator_overflow: str = "none"
    conv_accumulator_overflow: str = "none"

    @classmethod
    def from_profile(cls, profile: Any) -> SpeckConfig:
        """Read the constants from a :class:`~neurodeploy.hardware.HardwareProfile`."""
        n, st = profile.neuron, profile.state
        return cls(voltage_bits=st.voltage_bits, threshold_strict=n.threshold_strict,
                   max_spikes=n.max_spikes_per_step, accumulator_bits=st.accumulator_bits,
                   dense_accumulator_overflow=st.dense_accumulator_overflow,
                   conv_accumulator_overflow=st.conv_accumulator_overflow)


Config = SpeckConfig
DEFAULT = SpeckConfig()


class NeuronStep(NamedTuple):
    """Result of one neuron step: new state, events and overflow masks (``None`` = none)."""

    u: Array
    v: Array
    spikes: Array
    u_overflow: Array | None
    v_overflow: Array | None


def out_of_range(v: Array, bits: int) -> Array:
    """Mask of the values outside the signed ``bits``-bit range (they are kept, not changed)."""
    half = 1 << (bits - 1)
    return (v < -half) | (v > half - 1)


def neuron_step(
    u: Array,
    v: Array,
    a_in: Any,
    *,
    current_decay: Any = 0,
    voltage_decay: Any = 0,
    threshold: Any,
    bias: Any = 0,
    bias_exp: int = 0,
    spiking: bool = True,
    reset: str = "subtract",
    max_spikes: int | None = None,
    config: SpeckConfig = DEFAULT,
) -> NeuronStep:
    """Advance integrate-and-fire neurons by one step (equations in the module docstring).

    ``current_decay`` and ``voltage_decay`` are not used: the family's design rule
    ``integrate_and_fire`` admits only the complete current decay and no voltage decay. ``bias``
    is added as ``bias << bias_exp``. ``max_spikes`` defaults to the profile's.
    """
    a_in = ops.like(a_in, v)
    v_pre = v + a_in + ops.shift(ops.like(bias, v), bias_exp)
    v_ovf = out_of_range(v_pre, config.voltage_bits)
    theta = ops.like(threshold, v)
    spikes, v_new = spike_and_reset(
        v_pre, theta, strict=config.threshold_strict, reset=reset,
        max_spikes=config.max_spikes if max_spikes is None else max_spikes, spiking=spiking)
    if spiking:
        v_new = ops.where(v_new < -theta, -theta, v_new)
    u_new = a_in + ops.zeros_like(v)
    return NeuronStep(u_new, v_new, spikes, None, v_ovf)


def dense(weight: Array, s: Array, weight_exp: int = 0, config: SpeckConfig = DEFAULT,
          s_max: int | None = None) -> tuple[Array, Array | None]:
    """Dense synapses (a conv whose kernel covers its input on the chip): ``W @ s``, exact."""
    acc = ops.shift(synapse.dense(weight, s, s_max), weight_exp)
    return apply_overflow(acc, config.accumulator_bits, config.dense_accumulator_overflow)


def conv(weight: Array, s: Array, stride=(1, 1), padding=(0, 0), groups: int = 1,
         config: SpeckConfig = DEFAULT, s_max: int | None = None) -> tuple[Array, Array | None]:
    """Conv synapses, exact (``s`` may hold event counts)."""
    acc = synapse.conv2d(weight, s, stride, padding, groups, s_max)
    return apply_overflow(acc, config.accumulator_bits, config.conv_accumulator_overflow)


def sumpool(s: Array, kernel, stride=None,
            config: SpeckConfig = DEFAULT) -> tuple[Array, Array | None]:
    """Sum pooling of events (unit weights): the optional pooling of a DYNAP-CNN layer."""
    acc = synapse.sumpool2d(s, kernel, stride)
    return apply_overflow(acc, config.accumulator_bits, config.conv_accumulator_overflow)


__all__ = ["DEFAULT", "NAME", "Config", "NeuronStep", "SpeckConfig", "conv", "dense",
           "neuron_step", "out_of_range", "sumpool"]
