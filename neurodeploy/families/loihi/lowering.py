"""Lowering folded float blocks into ``loihi`` integer layers (Lava netx units, docs/loihi.md §5.2).

With a per-layer scale ``s`` (integer units per float unit of membrane potential, chosen by
:func:`~neurodeploy.families.loihi.calibrate.choose_scale`) a folded block becomes:

* ``W_int = clamp(round(s·u_in·W))`` inside the weight range, weight exponent 0;
* ``threshold = clamp(round(s·V))`` inside the threshold range (a non-spiking read-out gets the
  largest mantissa; it never spikes anyway);
* ``bias_exp = activation_shift`` when the profile's bias exponents allow it (so the bias enters
  ``v`` in the units of ``W·x``), and ``bias = clamp(round(s·b·2**(activation_shift - bias_exp)))``
  inside the bias mantissa;
* decays as folded (netx iDecay / vDecay, ``0..2**decay_bits``);
* MP-Init's initial potential ``initial_v = round(2**activation_shift·s·μ)``.

The trained network's decays come in ``1/DECAY_UNIT`` units, so lowering needs a profile with
multiplicative decays in those units (rule ``decay_format``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from neurodeploy.families.formats import LayerFormat
from neurodeploy.families.loihi.arith import DEFAULT, LoihiConfig
from neurodeploy.families.loihi.calibrate import choose_scale, weight_range
from neurodeploy.families.loihi.shadow import TrainNeuron
from neurodeploy.families.loihi.units import DECAY_UNIT

if TYPE_CHECKING:
    from neurodeploy.hardware import HardwareProfile




def layer_format(block: Any, scale: float, profile: HardwareProfile,
                 weight_bits: int | None = None, input_unit: float = 1.0) -> LayerFormat:
    """The integer settings of folded ``block`` at ``scale`` on ``profile`` (module docstring);
    ``input_unit`` (the float value of one input unit) does not change them on Loihi."""
    n, nf = block.neurons, profile.neuron
    w_lo, w_hi = weight_range(profile, weight_bits)
    lo, hi = nf.threshold_range
    threshold = int(min(max(round(scale * n.threshold), lo), hi)) if n.spiking else int(hi)
    act = nf.activation_shift
    be_lo, be_hi = nf.bias_exponent_range
    bias_exp = act if be_lo <= act <= be_hi else be_hi
    b_hi = 2 ** (nf.bias_mantissa_bits - 1) - 1
    return LayerFormat(
        w_lo=w_lo, w_hi=w_hi, weight_exp=0, threshold=threshold, bias_exp=bias_exp,
        b_lo=-b_hi - 1, b_hi=b_hi, bias_factor=float(scale) * 2.0 ** (act - bias_exp),
        initial_v=int(round(2**act * scale * n.initial_v)), state_unit=2.0**act * float(scale),
        current_decay=int(n.current_decay), voltage_decay=int(n.voltage_decay))


def train_neuron(fmt: LayerFormat, block: Any, surrogate: Any,
                 config: LoihiConfig = DEFAULT, max_spikes: int = 1) -> TrainNeuron:
    """The differentiable neuron step of a lowered block (see :mod:`.shadow`); Loihi emits
    binary spikes, whatever ``max_spikes``."""
    n = block.neurons
    return TrainNeuron(current_decay=fmt.current_decay, voltage_decay=fmt.voltage_decay,
                       threshold=fmt.threshold, bias_exp=fmt.bias_exp, spiking=n.spiking,
                       reset=n.reset, state_unit=fmt.state_unit, surrogate=surrogate,
                       config=config)


def decay_format(profile: Any) -> str | None:
    """Rule ``decay_format``: trained networks come with decays in ``1/DECAY_UNIT`` units."""
    nf = profile.neuron
    if nf.decay != "multiplicative" or 2**nf.decay_bits != DECAY_UNIT:
        return (f"profile {profile.name} uses {nf.decay} decays with {nf.decay_bits} bits; trained "
                f"networks are lowered to multiplicative decays in 1/{DECAY_UNIT} units only")
    return None


__all__ = ["DECAY_UNIT", "LayerFormat", "choose_scale", "decay_format", "layer_format",
           "train_neuron", "weight_range"]
