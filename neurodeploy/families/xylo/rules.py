"""Design rules of the ``xylo`` family (beyond the rules every family shares).

The counts of input channels, hidden and read-out neurons are resources the fit check sizes
(``limits.input_channels``, ``limits.neurons_per_core`` for the one hidden population,
``limits.output_channels``); the rules here say what a Xylo network cannot be at all.

A Xylo network is a chain input → hidden block 1 → … → hidden block k → read-out (the blocks share
the one hidden population and its one recurrent matrix ``w_rec``; rule ``xylo_topology``), and a
hidden block may recur on itself through ``w_rec``: one dense ``extra`` projection whose source
is its own layer (rule ``xylo_recurrence``). The rules every family shares refuse the rest beyond
a chain from the profile's data: merges (``merges``, ``layers.merge = false``), recurrence on the
read-out (``recurrence``) and delays other than the chip's (``synaptic_delay``: Xylo has no
``timing.max_synaptic_delay``). Everything ``w_rec`` holds (the hidden → hidden layers and the
recurrent projections) is delivered with one shift, ``weight_shift_rec``: rule
``xylo_weight_shift`` and :func:`recurrent_shift`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from neurodeploy.families.rules import COMMON_RULES, Rule
from neurodeploy.hardware.structure import layer_edges, layer_label


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


def _topology(layers: list[Any], p: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    prev = -1
    for i, edges in enumerate(layer_edges(layers)):
        if not edges:
            continue
        src = edges[0][0]
        if src != prev:
            reads = "the input" if src == -1 else f"layer {src}"
            wants = "the input" if prev == -1 else f"layer {prev}"
            out.append((layer_label(i, layers[i]),
                        f"reads {reads}; on Xylo each layer reads the one before it ({wants}): "
                        "input, hidden blocks, read-out in a chain"))
        prev = i
    return out


def _recurrence(layers: list[Any], p: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for i, edges in enumerate(layer_edges(layers)):
        own = [proj for src, _, proj in edges if proj is not None and src == i]
        where = layer_label(i, layers[i]) if own else ""
        if len(own) > 1:
            out.append((where, f"{len(own)} recurrent projections; Xylo's recurrent matrix holds "
                               "one per hidden block"))
        out += [(where, f"{proj.kind} recurrent synapses; Xylo's recurrent matrix is dense")
                for proj in own if getattr(proj, "kind", "dense") != "dense"]
    return out


def recurrent_contents(layers: list[Any]) -> list[tuple[int, int, np.ndarray, int]]:
    """What Xylo's recurrent matrix holds: ``(target layer index, source layer index, integer
    weight [out, in], weight shift)`` for every hidden layer's synapses from another hidden layer
    and every recurrent projection of a hidden layer (in graph order; the read-out's synapses are
    ``weights_out``)."""
    edges = layer_edges(layers)
    readout = max((i for i, e in enumerate(edges) if e), default=-1)
    out = []
    for i, layer_in in enumerate(edges):
        layer = layers[i]
        if i == readout or not hasattr(layer, "weight"):
            continue
        for src, _, proj in layer_in:
            if src == -1 or (proj is not None and getattr(proj, "kind", "dense") != "dense"):
                continue
            w, e = (layer.weight, getattr(layer, "weight_exp", 0)) if proj is None else \
                (proj.weight, proj.weight_exp)
            out.append((i, src, np.asarray(w, np.int64), int(e or 0)))
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
        return [("network", f"hidden -> hidden layers and recurrent projections use weight shifts "
                            f"{shifts}; Xylo's one recurrent matrix has one shift (weight_shift_rec) "
                            f"on profile {p.name}, and their weights do not fit "
                            f"{list(p.weights.range)} at shift {shifts[0]}")]
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
    Rule("xylo_topology", "network", _topology, ("lower", "fit", "export")),
    Rule("xylo_recurrence", "network", _recurrence, ("lower", "fit", "export")),
)
