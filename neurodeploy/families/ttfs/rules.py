"""Design rules of the ``ttfs`` family (run with the shared rules by
:func:`neurodeploy.families.rules.check`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from neurodeploy.families.rules import Rule

_KIND_OF_LAYER = {"dense": "ramp", "conv": "ramp", "sumpool": "count"}


def _neuron_kind(layer: Any, p: Any) -> str | None:
    g = getattr(layer, "neurons", None)
    if g is None:
        return None
    want = _KIND_OF_LAYER.get(layer.kind)
    if getattr(g, "kind", "") != want:
        return (f"a {layer.kind} layer on family ttfs feeds {want} neurons, not "
                f"{getattr(g, 'kind', '') or 'the default kind'!r}")
    return None


def _ramp_window(layer: Any, p: Any) -> str | None:
    g = getattr(layer, "neurons", None)
    if g is None or getattr(g, "kind", "") != "ramp":
        return None
    k = int(getattr(g, "window_steps", 0))
    if k <= 0 or int(g.window_start) < k:
        return (f"a ramp group needs a time window after its inputs' window (window_steps "
                f"{k}, window_start {int(g.window_start)})")
    if g.spiking and int(np.asarray(g.threshold)) % k:
        return (f"threshold {int(np.asarray(g.threshold))} is not window_steps x a whole ramp "
                f"(window_steps {k})")
    return None


def _min_ramp(layer: Any, p: Any) -> str | None:
    g = getattr(layer, "neurons", None)
    if g is None or getattr(g, "kind", "") != "ramp" or not g.spiking or not g.window_steps:
        return None
    rho = int(np.asarray(g.threshold)) // int(g.window_steps)
    if p.neuron.min_ramp is not None and rho < p.neuron.min_ramp:
        return f"ramp {rho} per step is below neuron.min_ramp = {p.neuron.min_ramp}"
    return None


RULES: tuple[Rule, ...] = (
    Rule("neuron_kind", "layer", _neuron_kind),
    Rule("ramp_window", "layer", _ramp_window),
    Rule("min_ramp", "layer", _min_ramp, ("lower", "fit", "export")),
)
