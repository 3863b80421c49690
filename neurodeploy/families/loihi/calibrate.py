"""Per-layer scales of the ``loihi`` lowering: how many integer units one float unit of membrane potential becomes.

For a block with float weights ``W``, bias ``b``, threshold ``V`` and input events worth ``u_in``
float units each (1 for spikes, ``1/levels`` for graded input), a scale ``s`` gives the integers
``W_int = round(s u_in W)``, ``threshold = round(s V)``, ``bias = round(s b)`` and a chip state
``v ≈ 2**shift · s · M`` (``shift`` = the profile's activation shift). The largest ``s`` that keeps
every integer inside the profile's formats wins (finest resolution):

* weights within the weight range (the profile's, or ``weight_bits`` when overridden);
* threshold within the threshold range; bias within the bias mantissa;
* the largest calibration current times ``2**shift · s`` within ``headroom`` of the current range
  (Loihi wraps beyond it), and likewise the largest potential within the voltage range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from neurodeploy.errors import FitError
from neurodeploy.families.formats import weight_range
from neurodeploy.hardware import HardwareProfile

if TYPE_CHECKING:
    from neurodeploy.quantize.fold import FloatBlock

CURRENT_HEADROOM = 0.5
VOLTAGE_HEADROOM = 0.9


@dataclass
class LayerScale:
    """The chosen scale of one block and which limit set it."""

    name: str
    scale: float
    limited_by: str
    candidates: dict[str, float] = field(default_factory=dict)


def choose_scale(block: FloatBlock, stats: dict[str, Any], profile: HardwareProfile,
                 input_unit: float, weight_bits: int | None = None) -> LayerScale:
    """The largest scale that fits ``block`` into ``profile`` (see the module docstring).

    Args:
        block: the folded float block.
        stats: calibration maxima of the block (``max_current``, ``max_v``) from
            :func:`~neurodeploy.quantize.fold.run_blocks`.
        profile: the target profile.
        input_unit: float value of one integer input unit of this block.
        weight_bits: override of the weight precision (bits), or ``None``.
    """
    lo, hi = weight_range(profile, weight_bits)
    shift = 2 ** profile.neuron.activation_shift
    w = block.weight * input_unit
    cand: dict[str, float] = {}
    wmax, wmin = float(w.max()), float(w.min())
    if wmax > 0:
        cand["weights"] = hi / wmax
    if wmin < 0:
        cand["weights"] = min(cand.get("weights", math.inf), lo / wmin)
    n = block.neurons
    if n.spiking and n.threshold > 0:
        cand["threshold"] = profile.neuron.threshold_range[1] / n.threshold
    bias_max = 2 ** (profile.neuron.bias_mantissa_bits - 1) - 1
    if block.bias is not None and float(block.bias.abs().max()) > 0:
        cand["bias"] = bias_max / float(block.bias.abs().max())
    cur_lim = CURRENT_HEADROOM * 2 ** (profile.state.current_bits - 1)
    if stats.get("max_current", 0) > 0:
        cand["current range"] = cur_lim / (shift * stats["max_current"])
    v_lim = VOLTAGE_HEADROOM * 2 ** (profile.state.voltage_bits - 1)
    if stats.get("max_v", 0) > 0:
        cand["voltage range"] = v_lim / (shift * stats["max_v"])
    if not cand:
        raise FitError(f"{block.name}: all weights and biases are zero; nothing to deploy")
    limited_by = min(cand, key=cand.get)
    return LayerScale(block.name, cand[limited_by], limited_by, cand)
