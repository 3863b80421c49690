"""Design rules: named predicates over a profile, the input encoding and each layer.

A rule says what a chip cannot run, in one sentence. The rules every family shares
(:data:`COMMON_RULES`: layer kinds, graded input, reset modes, decay ranges, conv exponents) and a
family's own (its package's ``RULES``) run through one function, :func:`check` (raise on the first
problem) or :func:`violations` (list them all), wherever a refusal can happen: when a trained
network is lowered (on its folded blocks), when the simulator loads a deployment graph, when the
fit check sizes one and when an exporter writes one. So a refusal reads the same wherever it is
caught: ``<where>: <problem> (rule <name>)``, where ``<where>`` is ``input``, ``profile``,
``network`` or
:func:`~neurodeploy.hardware.structure.layer_label` of the layer (a folded block and the graph
layer written from it share index, name and kind).

A layer subject is anything with ``kind`` and, for synapse layers, ``neurons`` (``reset``,
``spiking``, ``current_decay``, ``voltage_decay``) and optionally ``weight_exp`` and, in graphs
beyond chains, ``source``, ``delay`` and ``extra`` (projections with ``source`` and ``delay``;
see :func:`~neurodeploy.hardware.structure.layer_edges`): a folded
:class:`~neurodeploy.quantize.fold.FloatBlock` or a deployment graph layer. The rules
``recurrence``, ``merges`` and ``synaptic_delay`` read those: whether the profile's chip lets a
group receive its own spikes (``layers.recurrent``) or several synapse inputs (``layers.merge``),
and whether every edge's delay is one the chip can program (``timing.max_synaptic_delay``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from neurodeploy.arith.spiking import RESET_MODES
from neurodeploy.errors import UnsupportedError
from neurodeploy.hardware.structure import layer_edges, layer_label

SCOPES = ("profile", "input", "layer", "network")
STAGES = ("lower", "simulate", "fit", "export")
"""Where rules run: lowering a trained network, loading a graph into the simulator, the fit
check, writing a file."""


@dataclass(frozen=True)
class Rule:
    """One design rule.

    Attributes:
        name: short name, quoted in every refusal (e.g. ``"layer_kind"``).
        scope: ``"profile"`` (test gets the profile), ``"input"`` (the encoding dict and the
            profile), ``"layer"`` (one layer and the profile) or ``"network"`` (the list of
            layers and the profile: resources all layers share, e.g. a layer-to-core assignment).
        test: returns the problem as one sentence, or ``None`` when the subject complies; a
            network rule returns ``(where, problem)`` pairs, none when the network complies.
        stages: where the rule runs (:data:`STAGES`). A rule about what the family's arithmetic
            can compute runs everywhere; a rule about what the chip offers (reset modes, decay
            ranges) is not run by the simulator, which also answers what-if questions on the
            family's arithmetic; a rule about the units of trained networks runs at lowering only.
    """

    name: str
    scope: str
    test: Callable[..., str | None]
    stages: tuple[str, ...] = STAGES


def _layer_kind(layer: Any, p: Any) -> str | None:
    if layer.kind not in p.layers.kinds:
        return (f"layer kind not supported by profile {p.name} "
                f"(layers.kinds = {list(p.layers.kinds)})")
    return None


def _reset_mode(layer: Any, p: Any) -> str | None:
    g = getattr(layer, "neurons", None)
    if g is None or not g.spiking or g.reset in p.neuron.reset_modes or g.reset not in RESET_MODES:
        return None  # an unknown reset is a malformed graph, refused by its reader
    return (f"reset by {g.reset} is not available on profile {p.name} (neuron.reset_modes = "
            f"{list(p.neuron.reset_modes)})")


def _decay_range(layer: Any, p: Any) -> str | None:
    g = getattr(layer, "neurons", None)
    if g is None:
        return None
    for what, value, rng in (("current", g.current_decay, p.neuron.current_decay_range),
                             ("voltage", g.voltage_decay, p.neuron.voltage_decay_range)):
        arr = np.asarray(value)
        if arr.size and (int(arr.min()) < rng[0] or int(arr.max()) > rng[1]):
            bad = int(arr.min()) if int(arr.min()) < rng[0] else int(arr.max())
            return (f"{what} decay {bad} is outside profile {p.name}'s range {list(rng)} "
                    f"(neuron.{what}_decay_range)")
    return None


def _conv_exponent(layer: Any, p: Any) -> str | None:
    exp = int(getattr(layer, "weight_exp", 0) or 0)
    if layer.kind == "conv" and not p.weights.conv_exponent and exp != 0:
        return (f"weight_exp {exp} but conv layers on {p.name} use weights as given "
                "(weights.conv_exponent = false)")
    return None


def _graded_input(encoding: dict[str, Any], p: Any) -> str | None:
    if (encoding or {}).get("kind") != "direct":
        return None
    bits = encoding.get("bits")
    if bits is None:
        return ("the network takes direct float input, which no chip receives; retrain with "
                "encoding bits (e.g. {kind = \"direct\", bits = 8}) or rate/latency encoding")
    if int(bits) > max(p.input.graded_bits, 1):
        what = "binary input spikes only" if p.input.graded_bits == 0 else \
            f"graded input of at most {p.input.graded_bits} bits"
        return (f"profile {p.name} takes {what} (input.graded_bits = {p.input.graded_bits}) but "
                f"the direct encoding sends {int(bits)}-bit values; use rate or latency encoding, "
                "or fewer encoding bits")
    return None


def _recurrence(layers: list[Any], p: Any) -> list[tuple[str, str]]:
    out = []
    last = max((i for i, layer in enumerate(layers) if layer.kind != "flatten"), default=-1)
    for i, edges in enumerate(layer_edges(layers)):
        if not any(proj is not None and src == i for src, _, proj in edges):
            continue
        where = layer_label(i, layers[i])
        if not p.layers.recurrent:
            out.append((where, f"its group receives its own spikes (a recurrent projection) but "
                               f"profile {p.name} runs no recurrent synapses "
                               "(layers.recurrent = false)"))
        elif i == last:
            out.append((where, "the read-out group receives its own spikes; a read-out may not "
                               "recur (its potential is the network's output)"))
    return out


def _merge_problems(layers: list[Any], p: Any) -> list[tuple[str, str]]:
    if p.layers.merge:
        return []
    out = []
    for i, edges in enumerate(layer_edges(layers)):
        sources = [src for src, _, proj in edges if not (proj is not None and src == i)]
        if len(sources) > 1:
            names = ", ".join("the input" if s == -1 else f"layer {s}" for s in sources)
            out.append((layer_label(i, layers[i]),
                        f"its group sums {len(sources)} synapse inputs ({names}) but profile "
                        f"{p.name} feeds a group from one synapse layer (layers.merge = false)"))
    return out


def _synaptic_delay(layers: list[Any], p: Any) -> list[tuple[str, str]]:
    tm = p.timing
    out = []
    for i, edges in enumerate(layer_edges(layers)):
        for src, delay, proj in edges:
            if delay is None:
                continue  # the profile's own timing
            std = tm.input_delay if src == -1 else tm.synapse_delay
            what = "the input" if src == -1 else ("itself" if src == i else f"layer {src}")
            edge = "its synapses" if proj is None else \
                f"projection {proj.name!r}" if getattr(proj, "name", "") else "a projection"
            if tm.max_synaptic_delay is None:
                if delay != std:
                    key = "input_delay" if src == -1 else "synapse_delay"
                    out.append((layer_label(i, layers[i]),
                                f"{edge} from {what} delay {delay} steps but profile {p.name} "
                                f"has no programmable delays (timing.{key} = {std}, no "
                                "timing.max_synaptic_delay)"))
            elif not std <= delay <= tm.max_synaptic_delay:
                out.append((layer_label(i, layers[i]),
                            f"{edge} from {what} delay {delay} steps, outside profile {p.name}'s "
                            f"[{std}, {tm.max_synaptic_delay}] (timing."
                            f"{'input_delay' if src == -1 else 'synapse_delay'}, "
                            "timing.max_synaptic_delay)"))
    return out


COMMON_RULES: tuple[Rule, ...] = (
    Rule("graded_input", "input", _graded_input),
    Rule("layer_kind", "layer", _layer_kind),
    Rule("reset_mode", "layer", _reset_mode, ("lower", "fit", "export")),
    Rule("decay_range", "layer", _decay_range, ("lower", "fit", "export")),
    Rule("conv_exponent", "layer", _conv_exponent),
    Rule("recurrence", "network", _recurrence),
    Rule("merges", "network", _merge_problems),
    Rule("synaptic_delay", "network", _synaptic_delay),
)


def rules_for(profile: Any) -> tuple[Rule, ...]:
    """The shared rules followed by the rules of ``profile``'s family; a family rule with the
    name of a shared one replaces it (e.g. where the family's lowering converts what the shared
    rule reads in other units)."""
    from neurodeploy.families import get_family

    own = tuple(getattr(get_family(profile.family), "RULES", ()))
    names = {r.name for r in own}
    return tuple(r for r in COMMON_RULES if r.name not in names) + own


def violations(profile: Any, stage: str, *, encoding: dict[str, Any] | None = None,
               layers: Iterable[Any] = (), only: Iterable[str] | None = None) -> list[str]:
    """Every problem the rules find, one line each (``<where>: <problem> (rule <name>)``).

    Args:
        profile: the target :class:`~neurodeploy.hardware.HardwareProfile`.
        stage: where the rules run (:data:`STAGES`).
        encoding: the input encoding dict (``None``: no input rule runs).
        layers: the layers in order (folded blocks or graph layers; flattens included so the
            labels carry the graph's indices).
        only: run only the rules with these names.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
    keep = None if only is None else set(only)
    out: list[str] = []
    layers = list(layers)
    for rule in sorted(rules_for(profile), key=lambda r: SCOPES.index(r.scope)):
        if stage not in rule.stages or (keep is not None and rule.name not in keep):
            continue
        if rule.scope == "profile":
            problems = [("profile", rule.test(profile))]
        elif rule.scope == "input":
            problems = [("input", rule.test(encoding, profile))] if encoding is not None else []
        elif rule.scope == "network":
            problems = list(rule.test(layers, profile)) if layers else []
        else:
            problems = [(layer_label(i, layer), rule.test(layer, profile))
                        for i, layer in enumerate(layers)]
        out += [f"{where}: {problem} (rule {rule.name})" for where, problem in problems if problem]
    return out


def check(profile: Any, stage: str, *, encoding: dict[str, Any] | None = None,
          layers: Iterable[Any] = (), only: Iterable[str] | None = None) -> None:
    """Raise :class:`UnsupportedError` with the first problem :func:`violations` finds."""
    found = violations(profile, stage, encoding=encoding, layers=layers, only=only)
    if found:
        raise UnsupportedError(found[0])


__all__ = ["COMMON_RULES", "STAGES", "Rule", "check", "rules_for", "violations"]
