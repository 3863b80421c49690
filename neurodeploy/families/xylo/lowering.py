"""Lowering folded float blocks to the ``xylo`` family's integers, and training through them.

For a folded block (weights ``W``, bias ``b``, threshold ``V``, decays in the fold's
``1/DECAY_UNIT`` units: factors ``f_i``, ``f_v``) and a scale ``s`` (state units per float unit
of potential, chosen by :func:`choose_scale`):

* **dashes**: each decay factor becomes the nearest ``1 - 2**-dash`` within the profile's range;
  the current's dash is at least 1, because Xylo decays the current *after* adding the step's
  input (``dash_syn = 0`` would clear the input before the membrane sees it). The fake-quant
  forward and the shadow use the quantized dashes, so they compute what the chip computes.
* **weights**: the chip's current adds ``w << shift`` and then decays it, so one event delivers
  ``w · 2**shift · (2**dash_syn - 1)`` to the membrane over time, where the float current
  (factor ``f_i``) delivers ``W / (1 - f_i)``; the integer weight keeps that total charge:
  ``W_int = round(s · u_in · W · c / 2**shift)`` with ``c = 1 / ((2**dash_syn - 1)(1 - f_i))``,
  in the int8 range, with the smallest per-matrix ``shift`` in the profile's exponent range that
  holds the largest weight. (When ``f_i`` is the dash's factor, ``c = 1 / f_syn`` and the chip's
  current equals the float one at every step; a LIF neuron without current, ``f_i = 0``, gets
  ``dash_syn = 1`` and ``c = 1``. Measured after post-training quantization for xylo-imu of a
  16-24-16-8 LIF MLP trained 15 epochs on digits-4x4 classes 0-7 (float 82.4 %): 78.5 % with
  this rule, 44.6 % when the first step's charge is matched instead, ``c = 1 / f_syn``.)
* **threshold** ``round(s · V)`` in ``[1, 32767]``; **bias** ``round(s · b)`` in int16, added to
  the membrane every step.
* **read-out**: only the ``mean`` read-out's integrator (no voltage decay); a decaying one (a
  leaky integrator, or the last step's value) is refused in one line (:func:`layer_format`).
  Xylo's output neurons always compare ``v`` with ``threshold_out`` and emit at most
  one event per step; the fold's non-spiking integrator becomes an output neuron with the largest
  threshold (32767), marked spiking so the simulator, the fake-quant forward and the exported spec
  all reset it the way the chip does if it ever gets there; its potential is the read-out.

The trained float model and the chip differ where a dash cannot represent a decay (a LIF neuron
without synaptic current gets the chip's shortest current decay, ``dash_syn = 1``); quantization
reports the drop and fine-tuning trains through the chip's dynamics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from neurodeploy.errors import FitError, UnsupportedError
from neurodeploy.families.formats import LayerFormat as BaseLayerFormat
from neurodeploy.families.formats import weight_range
from neurodeploy.families.loihi.units import DECAY_UNIT as LOIHI_DECAY_UNIT
from neurodeploy.families.xylo.arith import DEFAULT, XyloConfig
from neurodeploy.families.xylo.shadow import TrainNeuron, dash_factor

if TYPE_CHECKING:
    from neurodeploy.hardware import HardwareProfile

FOLD_DECAY_UNIT = LOIHI_DECAY_UNIT
"""Folded blocks carry decays in ``1/FOLD_DECAY_UNIT`` units (``neurodeploy.quantize.fold``)."""
CURRENT_HEADROOM = 0.5
VOLTAGE_HEADROOM = 0.9


@dataclass(frozen=True)
class LayerFormat(BaseLayerFormat):
    """The integer settings of one lowered block (everything but its weights and bias values);
    the shared fields (:class:`neurodeploy.families.formats.LayerFormat`), plus ``weight_factor``
    (integer weight units per ``s · u_in · W``: ``charge / 2**weight_exp``, :func:`weight_format`),
    ``spiking`` (whether the chip's group compares with its threshold), ``reset``, ``charge``
    (:func:`charge_factor`) and the profile's ``exp_range``."""

    weight_factor: float = 1.0
    spiking: bool = True
    reset: str = "subtract"
    charge: float = 1.0
    exp_range: tuple[int, int] = (0, 0)


@dataclass
class LayerScale:
    """The chosen scale of one block and which limit set it."""

    name: str
    scale: float
    limited_by: str
    candidates: dict[str, float]


def nearest_dash(decay: int, lo: int, hi: int) -> int:
    """The dash in ``[lo, hi]`` whose factor ``1 - 2**-dash`` is nearest ``1 - decay / FOLD_DECAY_UNIT``."""
    f = 1.0 - float(decay) / FOLD_DECAY_UNIT
    return min(range(int(lo), int(hi) + 1), key=lambda d: (abs(dash_factor(d) - f), d))


def dashes(block: Any, profile: HardwareProfile) -> tuple[int, int]:
    """``(dash_syn, dash_mem)`` of a folded block on ``profile``."""
    n, nf = block.neurons, profile.neuron
    lo_c, hi_c = nf.current_decay_range
    return (nearest_dash(n.current_decay, max(1, lo_c), hi_c),
            nearest_dash(n.voltage_decay, *nf.voltage_decay_range))


def charge_factor(block: Any, dash_syn: int) -> float:
    """``c = 1 / ((2**dash_syn - 1)(1 - f_i))``: integer weight units per ``s · u_in · W`` that
    keep the total charge of one event (module docstring)."""
    leak = max(float(block.neurons.current_decay) / FOLD_DECAY_UNIT, 2.0**-16)
    return 1.0 / ((2.0**int(dash_syn) - 1.0) * leak)


def weight_format(weight: Any, scale: float, input_unit: float, fmt: LayerFormat, floor: int = 0
                  ) -> tuple[int, float]:
    """``(weight_exp, weight_factor)`` for the current float ``weight`` of a block: the smallest
    shift in ``fmt.exp_range`` (and at least ``floor``) that holds the largest weight. The
    fake-quant forward calls it on every pass, so the shift follows the weights while they are
    fine-tuned and a checkpoint lowered again from its stored scales gets the shift its fine-tuning
    ended with; ``floor`` is the shift every matrix in Xylo's recurrent weights shares
    (:func:`share_weight_shifts`)."""
    w = weight.detach() * (scale * input_unit * fmt.charge)
    wmax, wmin = float(w.max()), float(w.min())
    e_lo, e_hi = fmt.exp_range
    exp = int(e_hi)
    for e in range(max(0, int(e_lo), int(floor)), int(e_hi) + 1):
        if wmax <= (fmt.w_hi + 0.5) * 2**e and wmin >= (fmt.w_lo - 0.5) * 2**e:
            exp = e
            break
    return exp, fmt.charge / 2.0**exp


def share_weight_shifts(layers: list[Any], blocks: list[Any]) -> None:
    """Give everything Xylo's one recurrent matrix holds one shift (``weight_shift_rec``).

    ``layers`` are the fake-quant network's layers (with their further projections ``extra``) and
    ``blocks`` the folded float blocks they quantize, in order. The recurrent matrix holds, as
    :func:`neurodeploy.families.xylo.rules.recurrent_contents` lists it, every dense synapse of a
    group other than the read-out from another group (a chain's hidden-to-hidden layers, a graph's
    hidden feed-forward blocks) and every dense projection between hidden groups (recurrent
    edges). Each of those gets ``exp_floor`` = the largest of the shifts their current weights
    need alone, so :func:`weight_format` picks that one shift for all of them and the integers
    the fake-quant forward uses are exactly the ones the specification writes (a weight of a
    matrix that needs a smaller shift loses the low bits that shift would have kept); everything
    else gets ``exp_floor = 0``. The fake-quant forward calls this before every pass."""
    members = []
    last = len(layers) - 1
    for k, (layer, blk) in enumerate(zip(layers, blocks, strict=True)):
        layer.exp_floor = 0
        for eq in layer.extra:
            eq.exp_floor = 0
        if k == last:
            continue
        src = layer.source if layer.source is not None else k - 1
        if src != -1 and layer.kind == "dense":
            members.append((layer, blk.weight, layer.input_unit, layer))
        for eq, fe in zip(layer.extra, blk.extra, strict=True):
            if eq.source != -1 and eq.kind == "dense":
                members.append((eq, fe.weight, eq.input_unit, layer))
    if len(members) < 2:
        return
    common = max(weight_format(w, lay.scale, unit, lay.format)[0] for _, w, unit, lay in members)
    for holder, *_ in members:
        holder.exp_floor = common


def layer_format(block: Any, scale: float, profile: HardwareProfile, weight_bits: int | None = None,
                 input_unit: float = 1.0) -> LayerFormat:
    """The integer settings of folded ``block`` at ``scale`` on ``profile`` (module docstring).

    A read-out whose potential decays (a leaky integrator, or a synapse layer read out at the last
    step) is refused: Xylo's synaptic current keeps each input for several steps (``dash_syn >=
    1``), so the last step's potential is not that read-out; only the mean read-out's integrator,
    which adds up every charge, has a Xylo form."""
    n, nf = block.neurons, profile.neuron
    if not n.spiking and int(n.voltage_decay) != 0:
        raise UnsupportedError(f"{block.name}: a read-out whose potential decays (a leaky integrator or the last "
                               f"step's value) has no exact form on profile {profile.name} (Xylo's synaptic "
                               "current spreads each input over several steps); read it out by its mean")
    w_lo, w_hi = weight_range(profile, weight_bits)
    d_syn, d_mem = dashes(block, profile)
    charge = charge_factor(block, d_syn)
    exp_range = tuple(int(e) for e in profile.weights.exponent_range)
    probe = LayerFormat(w_lo, w_hi, 0, 0, 0, 0, 0, 0.0, 0, 0.0, 0, 0, charge=charge,
                        exp_range=exp_range)
    exp, _ = weight_format(block.weight, scale, input_unit, probe)
    lo, hi = nf.threshold_range
    threshold = int(min(max(round(scale * n.threshold), lo), hi)) if n.spiking else int(hi)
    b_hi = 2 ** (nf.bias_mantissa_bits - 1) - 1
    return LayerFormat(
        w_lo=w_lo, w_hi=w_hi, weight_exp=exp, threshold=threshold, bias_exp=0,
        b_lo=-b_hi - 1, b_hi=b_hi, bias_factor=float(scale),
        initial_v=int(round(scale * n.initial_v)), state_unit=float(scale),
        current_decay=d_syn, voltage_decay=d_mem,
        weight_factor=charge / 2.0**exp, spiking=True, reset="subtract", charge=charge,
        exp_range=exp_range)


def choose_scale(block: Any, stats: dict[str, Any], profile: HardwareProfile, input_unit: float,
                 weight_bits: int | None = None) -> LayerScale:
    """The largest scale that keeps the threshold, bias, weights (at the largest shift) and the
    calibration's peak current and potential inside Xylo's int16 / int8 formats."""
    lo, hi = weight_range(profile, weight_bits)
    d_syn, _ = dashes(block, profile)
    top = 2.0 ** int(profile.weights.exponent_range[1])
    w = block.weight.detach() * input_unit * charge_factor(block, d_syn)
    cand: dict[str, float] = {}
    wmax, wmin = float(w.max()), float(w.min())
    if wmax > 0:
        cand["weights"] = hi * top / wmax
    if wmin < 0:
        cand["weights"] = min(cand.get("weights", math.inf), lo * top / wmin)
    n = block.neurons
    if n.spiking and n.threshold > 0:
        cand["threshold"] = profile.neuron.threshold_range[1] / n.threshold
    bias_max = 2 ** (profile.neuron.bias_mantissa_bits - 1) - 1
    if block.bias is not None and float(block.bias.abs().max()) > 0:
        cand["bias"] = bias_max / float(block.bias.abs().max())
    if stats.get("max_current", 0) > 0:
        cand["current range"] = CURRENT_HEADROOM * 2 ** (profile.state.current_bits - 1) / \
            stats["max_current"]
    if stats.get("max_v", 0) > 0:
        cand["voltage range"] = VOLTAGE_HEADROOM * 2 ** (profile.state.voltage_bits - 1) / \
            stats["max_v"]
    if not cand:
        raise FitError(f"{block.name}: all weights and biases are zero; nothing to deploy")
    limited_by = min(cand, key=cand.get)
    return LayerScale(block.name, cand[limited_by], limited_by, cand)


def train_neuron(fmt: LayerFormat, block: Any, surrogate: Any, config: XyloConfig = DEFAULT,
                 max_spikes: int = 31) -> TrainNeuron:
    """The differentiable neuron step of a lowered block (see :mod:`.shadow`)."""
    return TrainNeuron(current_decay=fmt.current_decay, voltage_decay=fmt.voltage_decay,
                       threshold=fmt.threshold, bias_exp=fmt.bias_exp, spiking=fmt.spiking,
                       reset=fmt.reset, state_unit=fmt.state_unit, surrogate=surrogate,
                       max_spikes=max_spikes, config=config)


__all__ = ["LayerFormat", "LayerScale", "charge_factor", "choose_scale", "dashes", "layer_format", "nearest_dash",
           "share_weight_shifts", "train_neuron", "weight_format", "weight_range"]
