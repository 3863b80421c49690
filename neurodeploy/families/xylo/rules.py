"""Design rules of the ``xylo`` family (beyond the rules every family shares).

The counts of input channels, hidden and read-out neurons are resources the fit check sizes
(``limits.input_channels``, ``limits.neurons_per_core`` for the one hidden population,
``limits.output_channels``); the rules here say what a Xylo network cannot be at all.

A Xylo network is a chain input → hidden block 1 → … → hidden block k → read-out (the blocks share
the one hidden population and its one recurrent matrix ``w_rec``), and a hidden block may recur on
itself through ``w_rec`` (a deployment graph's ``extra`` projection whose source is its own layer,
dense, delay ``timing.synapse_delay``): rules ``xylo_topology`` and ``xylo_recurrence``. Everything
``w_rec`` holds (the hidden → hidden layers and the recurrent projections) is delivered with one
shift, ``weight_shift_rec``: rule ``xylo_weight_shift`` and :func:`recurrent_shift`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from neurodeploy.families.rules import COMMON_RULES, Rule
from neurodeploy.hardware.structure import layer_label


def _initial_potential(layer: Any, p: Any) -> str | None:
    g = getattr(layer, "neurons", None)
    if g is not None and float(getattr(g, "initial_v", 0) or 0) != 0:
        return (f"an initial membrane potential (MP-Init); Xylo neurons start at 0 on profile "
                f"{p.name}; retrain without --mp-init")
    return None


def _projections(layer: Any) -> list[Any]:
    """The layer's further projections (deployment graph layers; none on other subjects)."""
    return [x for x in (getattr(layer, "extra", None) or []) if hasattr(x, "source")]


def _fan_in(layer: Any, p: Any) -> str | None:
    lim = p.limits.fan_in
    w = getattr(layer, "weight", None)
    if lim is None or layer.kind != "dense" or w is None:
        return None
    fan = int(w.shape[1]) + sum(int(np.asarray(x.weight).shape[1]) for x in _projections(layer))
    if fan <= lim:
        return None
    return (f"{fan} inputs per neuron exceed limits.fan_in = {lim} on profile "
            f"{p.name}; use narrower layers")


def _weight_shift(layer: Any, p: Any) -> str | None:
    lo, hi = p.weights.exponent_range
    if layer.kind != "dense":
        return None
    for what, exp in (("weight shift", int(getattr(layer, "weight_exp", 0) or 0)),
                      *(("recurrent weight shift", int(x.weight_exp)) for x in _projections(layer))):
        if not lo <= exp <= hi:
            return f"{what} {exp} outside profile {p.name}'s weights.exponent_range {[lo, hi]}"
    return None


def _synapse_layers(layers: list[Any]) -> list[tuple[int, Any]]:
    return [(i, layer) for i, layer in enumerate(layers) if layer.kind != "flatten"]


def _topology(layers: list[Any], p: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    prev = -1
    for i, layer in _synapse_layers(layers):
        where = layer_label(i, layer)
        src = getattr(layer, "source", None)
        if src is not None and int(src) != prev:
            reads = "the input" if int(src) == -1 else f"layer {int(src)}"
            wants = "the input" if prev == -1 else f"layer {prev}"
            out.append((where, f"reads {reads}; on Xylo each layer reads the one before it "
                               f"({wants}): input, hidden blocks, read-out in a chain"))
        delay = getattr(layer, "delay", None)
        chip = p.timing.input_delay if prev == -1 else p.timing.synapse_delay
        if delay is not None and int(delay) != chip:
            what = "timing.input_delay" if prev == -1 else "timing.synapse_delay"
            out.append((where, f"delay {int(delay)}; Xylo delivers {'input' if prev == -1 else 'hidden'} "
                               f"events after {chip} step(s) ({what} on profile {p.name})"))
        for x in _projections(layer):
            if int(x.source) != i:
                reads = "the input" if int(x.source) == -1 else f"layer {int(x.source)}"
                out.append((where, f"a merge (a projection from {reads}); Xylo sums no "
                                   "projections into a group but its own recurrence"))
        prev = i
    return out


def _recurrence(layers: list[Any], p: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    synapses = _synapse_layers(layers)
    for k, (i, layer) in enumerate(synapses):
        where = layer_label(i, layer)
        own = [x for x in _projections(layer) if int(x.source) == i]
        if not own:
            continue
        if k == len(synapses) - 1:
            out.append((where, "recurrence on the read-out; Xylo's read-out neurons receive "
                               "hidden events only (weights_out)"))
        elif len(own) > 1:
            out.append((where, f"{len(own)} recurrent projections; Xylo's recurrent matrix "
                               "holds one per hidden block"))
        for x in own:
            if x.kind != "dense":
                out.append((where, f"{x.kind} recurrent synapses; Xylo's recurrent matrix is "
                                   "dense"))
            if int(x.delay) != p.timing.synapse_delay:
                out.append((where, f"recurrent delay {int(x.delay)}; Xylo's recurrent matrix "
                                   f"delivers after {p.timing.synapse_delay} step(s) "
                                   f"(timing.synapse_delay on profile {p.name})"))
    return out


def recurrent_contents(layers: list[Any]) -> list[tuple[int, int, np.ndarray, int]]:
    """What Xylo's recurrent matrix holds: ``(target layer index, source layer index, integer
    weight [out, in], weight shift)`` for every hidden -> hidden layer and every recurrent
    projection of a hidden layer (in graph order)."""
    synapses = [(i, layer) for i, layer in _synapse_layers(layers) if hasattr(layer, "weight")]
    out = []
    for k, (i, layer) in enumerate(synapses[:-1]):
        if k > 0:
            out.append((i, synapses[k - 1][0], np.asarray(layer.weight, np.int64),
                        int(getattr(layer, "weight_exp", 0) or 0)))
        out += [(i, i, np.asarray(x.weight, np.int64), int(x.weight_exp))
                for x in _projections(layer) if int(x.source) == i]
    return out


def recurrent_shift(contents: list[tuple[int, int, np.ndarray, int]], w_lo: int = -128,
                    w_hi: int = 127) -> int | None:
    """The one ``weight_shift_rec`` that delivers every entry of ``contents`` exactly: the
    smallest of their shifts, when each weight ``w`` of an entry with shift ``e`` still fits
    ``[w_lo, w_hi]`` as ``w << (e - shift)`` (the same ``w << e`` reaches the current); ``0`` when
    there is nothing; ``None`` when no shift does."""
    if not contents:
        return 0
    shift = min(e for *_, e in contents)
    for *_, w, e in contents:
        if w.size and (int(w.min()) << (e - shift) < w_lo or int(w.max()) << (e - shift) > w_hi):
            return None
    return shift


def _recurrent_weight_shift(layers: list[Any], p: Any) -> list[tuple[str, str]]:
    contents = recurrent_contents(layers)
    shifts = sorted({e for *_, e in contents})
    if len(shifts) > 1 and recurrent_shift(contents, *p.weights.range) is None:
        return [("network", f"hidden -> hidden layers use weight shifts {shifts}; Xylo's one recurrent "
                            f"matrix has one shift (weight_shift_rec) on profile {p.name}, and "
                            f"their weights do not fit {list(p.weights.range)} at shift {shifts[0]}")]
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
    # what the one hidden population and its matrices can hold (the simulator runs any graph)
    Rule("xylo_topology", "network", _topology, ("fit", "export")),
    Rule("xylo_recurrence", "network", _recurrence, ("fit", "export")),
)
