"""The ``loihi`` arithmetic family: Lava 0.10 fixed-point CUBA-LIF, Dense and Conv.

Units are netx's (docs/loihi.md §5.2): weights, bias and ``threshold`` (vThMant) share one integer unit
that the neuron scales by ``2**6``; decays are netx's ``iDecay``/``vDecay`` in ``0..4096``.
Lava's raw current decay is ``du = iDecay - 1`` (offset 1, docs/loihi.md §3), so graph decays are used
as ``4096 - decay`` directly. Constants (defaults of :class:`LoihiConfig`, overridable from a
profile): decay shift 12, activation shift 6, threshold shift 6, states 24 bits, ``M = 2**23``,
storage 32 bits.

Storage: Lava keeps ``u``, ``v`` and the Dense output ``a`` in int32 arrays
(``PyLifModelBitAcc``, ``PyDenseModelBitAcc``) and forms the sums of steps 2 and 4 in int32, so a
sum beyond ``±2**31`` wraps around (two's complement) *before* the 24-bit rules apply. With
``storage_bits = S`` every such sum goes through ``store(x) = ((x + 2**(S-1)) mod 2**S) -
2**(S-1)``; ``storage_bits = None`` computes in unbounded integers (int64). Of the two states
only ``u`` gets there in practice: the single wrap correction lets it grow past 24 bits under a
large constant drive with no current decay (docs/lava_reference.md §4). ``v`` is saturated to 24
bits, and ``|u| <= 2**(S-1) - 2M`` after the correction, so the sum of step 4 stays inside ``S``
bits unless ``|b| > 2**23``; it is wrapped all the same, as Lava does.

Neuron step (docs/loihi.md §3), per neuron, with ``rtz(x) = sign(x) * floor(|x| / 4096)``:

1. ``b = bias << bias_exp`` (a negative ``bias_exp`` is an arithmetic right shift, i.e. floor);
2. ``u' = store(rtz(u * (4096 - current_decay)) + (a_in << 6))``;
3. ``u = wrap_once(u')``: ``u' - 2M`` if ``u' > M``, ``u' + 2M`` if ``u' <= -M``, else ``u'``
   (a single correction, not a modulo; see :mod:`neurodeploy.arith.overflow`);
4. ``v' = store(rtz(v * (4096 - voltage_decay)) + u + b)``;
5. ``v = clip(v', -(2**23 - 1), 2**23 - 1)`` (saturation);
6. ``s = v > threshold << 6`` (strict);
7. where ``s``: ``v = 0`` (reset ``"zero"``, Lava's LIF) or ``v -= threshold << 6``
   (``"subtract"``, not available in Lava); ``u`` is kept. A non-spiking group never spikes.

Dense (docs/loihi.md §4 steps 4-5): ``acc = W @ s``, then ``acc << weight_exp``; a negative exponent
floors the *sum* (``-5 >> 1 = -3``); no saturation and no 24-bit wrap, only ``store`` (Lava sends
``a`` through an int32 port, so a sum beyond ``±2**31`` wraps; it needs some 65,000 active inputs
at weight 255 and exponent 7).

Conv (docs/loihi.md §5.3): weights as given (no exponent), output wrapped with a true 24-bit signed
modulo ``((x + 2**23) mod 2**24) - 2**23``. SumPool is a depthwise conv with unit weights
(docs/loihi.md §7 rule 8) and so gets the same wrap.

Timing (docs/loihi.md §2) is the simulator's job: every synapse layer adds one step of delay.

Every function works on numpy int64 arrays and on torch tensors (int64, or float64 holding exact
integers); they return change masks instead of counts so callers can reduce as they need. A
storage wrap counts as an overflow event of the quantity it changes (``u``, ``v`` or the synaptic
output). :class:`NeuronScan` and :class:`DenseInput` (module :mod:`neurodeploy.families.loihi.scan`) run the same
equations over a whole window on numpy, for the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from neurodeploy.arith import ops, synapse
from neurodeploy.arith.ops import Array
from neurodeploy.arith.overflow import apply_overflow
from neurodeploy.arith.spiking import spike_and_reset
from neurodeploy.errors import ProfileError
from neurodeploy.families.loihi.units import DECAY_BITS

NAME = "loihi"


@dataclass(frozen=True)
class LoihiConfig:
    """Fixed-point constants of the family (bits, shifts, overflow rules)."""

    decay_shift: int = DECAY_BITS
    activation_shift: int = 6
    threshold_shift: int = 6
    current_bits: int = 24
    current_overflow: str = "wrap_once"
    voltage_bits: int = 24
    voltage_overflow: str = "saturate_symmetric"
    threshold_strict: bool = True
    accumulator_bits: int = 24
    dense_accumulator_overflow: str = "none"
    conv_accumulator_overflow: str = "wrap"
    storage_bits: int | None = 32

    def __post_init__(self) -> None:
        widest = max(self.current_bits, self.voltage_bits)
        if self.storage_bits is not None and not widest <= self.storage_bits <= 64:
            raise ProfileError(f"loihi arithmetic: storage_bits {self.storage_bits} must lie in "
                               f"{widest}..64 (u and v are {self.current_bits} and "
                               f"{self.voltage_bits} bits)")

    @classmethod
    def from_profile(cls, profile: Any) -> LoihiConfig:
        """Read the constants from a :class:`~neurodeploy.hardware.HardwareProfile`.

        ``state.storage_bits`` (the width of the integers the states are kept in) is read when
        the profile has it; otherwise Lava's int32 (32) applies, or no storage limit when a state
        is wider than 32 bits.
        """
        n, st = profile.neuron, profile.state
        storage = getattr(st, "storage_bits", None)
        if storage is None:
            storage = cls.storage_bits if max(st.current_bits, st.voltage_bits) <= 32 else None
        return cls(
            decay_shift=n.decay_bits,
            activation_shift=n.activation_shift,
            threshold_shift=n.threshold_shift,
            current_bits=st.current_bits,
            current_overflow=st.current_overflow,
            voltage_bits=st.voltage_bits,
            voltage_overflow=st.voltage_overflow,
            threshold_strict=n.threshold_strict,
            accumulator_bits=st.accumulator_bits,
            dense_accumulator_overflow=st.dense_accumulator_overflow,
            conv_accumulator_overflow=st.conv_accumulator_overflow,
            storage_bits=storage,
        )


Config = LoihiConfig
DEFAULT = LoihiConfig()


class NeuronStep(NamedTuple):
    """Result of one neuron step: new state, events and overflow masks (``None`` = no rule)."""

    u: Array
    v: Array
    spikes: Array
    u_overflow: Array | None
    v_overflow: Array | None


def store(x: Array, config: LoihiConfig = DEFAULT) -> tuple[Array, Array | None]:
    """Keep ``x`` in the family's ``storage_bits``-wide integers (two's-complement wrap).

    Returns ``(y, mask)`` like :func:`~neurodeploy.arith.overflow.apply_overflow`; ``mask`` is
    ``None`` when ``storage_bits`` is ``None`` (and, for numpy, when nothing wrapped).
    """
    if config.storage_bits is None:
        return x, None
    return apply_overflow(x, config.storage_bits, "wrap")


def _either(a: Array | None, b: Array | None) -> Array | None:
    if a is None:
        return b
    if b is None:
        return a
    return a | b


def rtz_decay(x: Array, decay: Any, decay_shift: int = DECAY_BITS) -> Array:
    """``rtz(x * (2**decay_shift - decay))``: multiplicative decay rounded toward zero.

    ``decay`` is in ``0..2**decay_shift`` (netx iDecay/vDecay); 0 keeps ``x``, ``2**decay_shift``
    zeroes it. The product is formed exactly (int64, or float64 below 2**53).
    """
    factor = (1 << decay_shift) - ops.like(decay, x)
    return ops.trunc_div_pow2(x * factor, decay_shift)


def bias_term(bias: Any, bias_exp: int) -> Any:
    """``bias << bias_exp``; a negative exponent is an arithmetic right shift (floor)."""
    return ops.shift(bias, bias_exp)


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
    reset: str = "zero",
    max_spikes: int = 1,
    config: LoihiConfig = DEFAULT,
) -> NeuronStep:
    """Advance CUBA-LIF neurons by one step (equations in the module docstring).

    Args:
        u, v: current and voltage state (state units), same shape.
        a_in: synaptic input of this step in weight units (array or 0), broadcast to ``u``.
        current_decay, voltage_decay: netx iDecay / vDecay, ``0..4096`` (scalar or per neuron).
        threshold: vThMant; the neuron spikes iff ``v > threshold << 6``.
        bias: bias mantissa per neuron (or scalar), added every step as ``bias << bias_exp``.
        bias_exp: bias exponent (int).
        spiking: ``False`` for a non-spiking read-out group.
        reset: ``"zero"`` or ``"subtract"``.
        max_spikes: events per neuron per step (1 on Loihi; accepted for a uniform interface).
        config: family constants.
    """
    a_in = ops.like(a_in, u)
    bias = ops.like(bias, u)
    u_new = rtz_decay(u, current_decay, config.decay_shift) + ops.shift(
        a_in, config.activation_shift
    )
    u_new, u_st = store(u_new, config)
    u_new, u_ovf = apply_overflow(u_new, config.current_bits, config.current_overflow)
    v_new = rtz_decay(v, voltage_decay, config.decay_shift) + u_new + bias_term(bias, bias_exp)
    v_new, v_st = store(v_new, config)
    v_new, v_ovf = apply_overflow(v_new, config.voltage_bits, config.voltage_overflow)
    u_ovf, v_ovf = _either(u_st, u_ovf), _either(v_st, v_ovf)
    theta = ops.shift(ops.like(threshold, u), config.threshold_shift)
    spikes, v_new = spike_and_reset(
        v_new, theta, strict=config.threshold_strict, reset=reset, max_spikes=max_spikes,
        spiking=spiking,
    )
    return NeuronStep(u_new, v_new, spikes, u_ovf, v_ovf)


def dense(weight: Array, s: Array, weight_exp: int = 0, config: LoihiConfig = DEFAULT,
          s_max: int | None = None) -> tuple[Array, Array | None]:
    """Dense synapses: ``(W @ s) << weight_exp`` (negative exponent floors the sum).

    Args:
        weight: int weights ``[out, in]`` as the chip uses them.
        s: presynaptic events ``[..., in]`` (0/1, or graded payloads).
        weight_exp: per-layer exponent.
        config: family constants.
        s_max: optional known bound of ``|s|`` (saves a scan of ``s``).

    Returns:
        ``(a, mask)``: the synaptic input ``[..., out]`` and the mask of values changed by the
        profile's dense accumulator rule (none on Lava) or by storage (``None`` if no rule
        applies and, for numpy, when nothing changed).
    """
    acc = ops.shift(synapse.dense(weight, s, s_max), weight_exp)
    return _synaptic_output(acc, config, config.dense_accumulator_overflow)


def _synaptic_output(acc: Array, config: LoihiConfig, rule: str) -> tuple[Array, Array | None]:
    """The accumulator rule ``rule``, then storage; the mask flags changes by either."""
    acc, mask = apply_overflow(acc, config.accumulator_bits, rule)
    acc, st_mask = store(acc, config)
    return acc, _either(mask, st_mask)


def conv(weight: Array, s: Array, stride=(1, 1), padding=(0, 0), groups: int = 1,
         config: LoihiConfig = DEFAULT, s_max: int | None = None) -> tuple[Array, Array | None]:
    """Conv synapses: weights as given, output wrapped at 24 bits (true modulo, docs/loihi.md §5.3).

    ``s`` is ``[N, C, H, W]``; returns ``([N, O, Ho, Wo], wrap_mask)``.
    """
    acc = synapse.conv2d(weight, s, stride, padding, groups, s_max)
    return _synaptic_output(acc, config, config.conv_accumulator_overflow)


def sumpool(s: Array, kernel, stride=None,
            config: LoihiConfig = DEFAULT) -> tuple[Array, Array | None]:
    """Sum-pool synapses (a depthwise unit-weight conv): window sums, wrapped like conv."""
    acc = synapse.sumpool2d(s, kernel, stride)
    return _synaptic_output(acc, config, config.conv_accumulator_overflow)
