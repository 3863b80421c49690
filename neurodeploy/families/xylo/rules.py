"""Design rules of the ``xylo`` family (beyond the rules every family shares).

The counts of input channels, hidden and read-out neurons are resources the fit check sizes
(``limits.input_channels``, ``limits.neurons_per_core`` for the one hidden population,
``limits.output_channels``); the rules here say what a Xylo network cannot be at all.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from neurodeploy.families.rules import COMMON_RULES, Rule


def _initial_potential(layer: Any, p: Any) -> str | None:
    g = getattr(layer, "neurons", None)
    if g is not None and float(getattr(g, "initial_v", 0) or 0) != 0:
        return (f"an initial membrane potential (MP-Init); Xylo neurons start at 0 on profile "
                f"{p.name}; retrain without --mp-init")
    return None


def _fan_in(layer: Any, p: Any) -> str | None:
    lim = p.limits.fan_in
    w = getattr(layer, "weight", None)
    if lim is None or layer.kind != "dense" or w is None or int(w.shape[1]) <= lim:
        return None
    return (f"{int(w.shape[1])} inputs per neuron exceed limits.fan_in = {lim} on profile "
            f"{p.name}; use narrower layers")


def _weight_shift(layer: Any, p: Any) -> str | None:
    exp = int(getattr(layer, "weight_exp", 0) or 0)
    lo, hi = p.weights.exponent_range
    if layer.kind == "dense" and not lo <= exp <= hi:
        return f"weight shift {exp} outside profile {p.name}'s weights.exponent_range {[lo, hi]}"
    return None


def _recurrent_weight_shift(layers: list[Any], p: Any) -> list[tuple[str, str]]:
    synapses = [layer for layer in layers if layer.kind != "flatten"]
    shifts = sorted({int(getattr(layer, "weight_exp", 0) or 0) for layer in synapses[1:-1]})
    if len(shifts) > 1:
        return [("network", f"hidden -> hidden layers use weight shifts {shifts}; Xylo's one recurrent "
                            f"matrix has one shift (weight_shift_rec) on profile {p.name}")]
    return []


_SHARED_DECAY_RANGE = next(r for r in COMMON_RULES if r.name == "decay_range")

RULES = (
    # folded blocks carry decays in the fold's 1/DECAY_UNIT units, which lowering converts to the
    # nearest dash inside the profile's range; the dashes of a graph are checked as usual
    dataclasses.replace(_SHARED_DECAY_RANGE, stages=("fit", "export")),
    Rule("initial_potential", "layer", _initial_potential, ("lower", "fit", "export")),
    Rule("fan_in", "layer", _fan_in, ("lower", "export")),
    Rule("weight_shift", "layer", _weight_shift, ("fit", "export")),
    # folded blocks get their shifts from lowering: checked on graphs
    Rule("xylo_weight_shift", "network", _recurrent_weight_shift, ("fit", "export")),
)
