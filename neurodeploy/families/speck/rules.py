"""Design rules of the ``speck`` family (beyond the rules every family shares).

Arithmetic (every stage): thresholds fit the state width (``state_width``: a narrower state,
e.g. ``--state-bits 8``, is refused rather than simulated with an unknown overflow rule);
neurons are non-leaky integrate-and-fire (``integrate_and_fire``); all of them spike
(``spiking_neurons``: the chip has no non-spiking read-out integrator); they start at 0
(``initial_potential``); a ``sumpool`` layer is the pooling of the layer before it
(``sum_pooling``: a pass-through group — threshold 1, no bias — with a square kernel, as Sinabs
3.1.3 ``backend/dynapcnn/dynapcnn_layer.py`` requires, of 1, 2 or 4, the sizes the Sinabs
repository's Speck documentation, ``docs/speck/``, lists).

Resources (lowering, fit, export; :mod:`.memory`): every layer's kernel, neuron and bias memory
fit some core (``kernel_memory``, ``neuron_memory``, ``bias_memory``) and the layers can be
assigned one core each (``core_mapping``), as Sinabs's ``get_valid_mapping`` checks them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurodeploy.families.rules import Rule
from neurodeploy.families.speck.memory import assign_cores, core_memories, layer_memories
from neurodeploy.hardware.structure import layer_label

POOL_SIZES = (1, 2, 4)


def _state_width(p: Any) -> str | None:
    hi = p.neuron.threshold_range[1]
    bits = p.state.voltage_bits
    if hi <= 2 ** (bits - 1) - 1:
        return None
    return (f"thresholds up to {hi} (neuron.threshold_range) and min_v_mem = -threshold do not fit "
            f"{bits}-bit states (state.voltage_bits); DYNAP-CNN states are 16-bit and their "
            "behaviour beyond that width is not published, so a narrower state is not simulated")


def _integrate_and_fire(layer: Any, p: Any) -> str | None:
    g = getattr(layer, "neurons", None)
    if g is None:
        return None
    full = 2 ** p.neuron.decay_bits
    cur, vol = np.asarray(g.current_decay), np.asarray(g.voltage_decay)
    if np.all(cur == full) and np.all(vol == 0):
        return None
    return (f"DYNAP-CNN neurons are non-leaky integrate-and-fire (current decay {full}, voltage "
            f"decay 0) but this group has current decay {int(cur.max())} and voltage decay "
            f"{int(vol.max())}; train with neuron = \"if\"")


def _spiking(layer: Any, p: Any) -> str | None:
    g = getattr(layer, "neurons", None)
    if g is None or g.spiking:
        return None
    return ("a non-spiking read-out integrator has no DYNAP-CNN form (every neuron spikes); "
            "train with readout = \"spike_count\"")


def _initial_potential(layer: Any, p: Any) -> str | None:
    g = getattr(layer, "neurons", None)
    if g is None or not np.any(np.asarray(g.initial_v) != 0):
        return None
    return "neurons start at potential 0 on DYNAP-CNN; train without MP-Init"


def _sum_pooling(layers: list[Any], p: Any):
    prev = None
    for i, layer in enumerate(layers):
        if layer.kind == "sumpool":
            g = layer.neurons
            k = tuple(int(v) for v in layer.kernel)
            stride = tuple(int(v) for v in (layer.stride or layer.kernel))
            if prev not in ("dense", "conv"):
                yield (layer_label(i, layer), "a sum pooling must follow a conv or dense layer "
                       "(it is that layer's pooling)")
            elif k[0] != k[1] or k[0] not in POOL_SIZES or stride != k:
                yield (layer_label(i, layer), f"pooling {k[0]}x{k[1]} stride {stride}: DYNAP-CNN "
                       f"pools square, non-overlapping windows of {list(POOL_SIZES)}")
            elif not (int(g.threshold) == 1 and g.spiking and g.reset == "subtract"
                      and not np.any(np.asarray(g.bias) != 0)):
                yield (layer_label(i, layer), "a sum pooling passes its events on unchanged: its "
                       "group needs threshold 1, subtractive reset and no bias")
        if layer.kind != "flatten":
            prev = layer.kind


def _memory(what: str):
    def test(layers: list[Any], p: Any):
        cores = core_memories(p)
        if cores is None:
            return
        key = {"kernel": 0, "neuron": 1, "bias": 2}[what]
        largest = max(c[key] for c in cores)
        for m in layer_memories(layers):
            need = getattr(m, what)
            if need > largest:
                yield (m.label, f"{what} memory {need} exceeds the largest core's {largest} "
                       f"(limits.{what}_memory_per_core)")
    return test


def _core_mapping(layers: list[Any], p: Any):
    cores = core_memories(p)
    if cores is None:
        return
    mems = layer_memories(layers)
    if len(mems) > len(cores):
        yield ("network", f"{len(mems)} layers for {len(cores)} cores (limits.cores; one core "
               "per DYNAP-CNN layer)")
        return
    if all(any(m.fits(*c) for c in cores) for m in mems) and assign_cores(mems, cores) is None:
        yield ("network", "no assignment of layers to cores keeps every layer within its "
               "core's memories (limits.*_memory_per_core)")


_RESOURCES = ("lower", "fit", "export")

RULES = (
    Rule("state_width", "profile", _state_width),
    Rule("integrate_and_fire", "layer", _integrate_and_fire),
    Rule("spiking_neurons", "layer", _spiking),
    Rule("initial_potential", "layer", _initial_potential),
    Rule("sum_pooling", "network", _sum_pooling),
    Rule("kernel_memory", "network", _memory("kernel"), _RESOURCES),
    Rule("neuron_memory", "network", _memory("neuron"), _RESOURCES),
    Rule("bias_memory", "network", _memory("bias"), _RESOURCES),
    Rule("core_mapping", "network", _core_mapping, _RESOURCES),
)

__all__ = ["POOL_SIZES", "RULES"]
