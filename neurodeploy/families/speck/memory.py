"""DYNAP-CNN memory per layer and the layer-to-core assignment, as Sinabs 3.1.3 computes them.

A DYNAP-CNN layer is one convolution (a dense layer is a convolution whose kernel covers its
input: Sinabs converts ``nn.Linear`` so), its integrate-and-fire neurons and an optional sum
pooling of their events. Its memory (``sinabs/backend/dynapcnn/dynapcnn_layer.py``,
``DynapcnnLayer.memory_summary``), for ``f`` output channels, ``c`` input channels, a
``kh × kw`` kernel and a ``f × H × W`` convolution output (before pooling):

* kernel memory ``c · 2**(ceil(log2(kh·kw)) + ceil(log2 f))``;
* neuron memory ``f · 2**(ceil(log2 H) + ceil(log2 W))``;
* bias memory ``f`` when the layer has a bias, else 0 (a layer whose biases are all zero is
  built without one).

A layer fits a core when all three are within that core's memories (``mapping.py``,
``LayerConstraints.fits``; per-core sizes from ``chips/dynapcnn.py``, ``get_constraints``, here the
profile's ``limits.*_memory_per_core``), and the network fits the chip when every layer gets its
own core: a bipartite matching of layers to cores (``mapping.py``, ``get_valid_mapping``, Edmonds'
max-flow; :func:`assign_cores` finds a maximum matching by augmenting paths, so the two agree on
whether an assignment exists, not necessarily on which one).

Works on folded float blocks and on deployment graph layers alike (``kind``, ``weight``,
``bias`` / ``neurons.bias``, and the output shape: ``out_shape`` of a block, ``neurons.shape`` of a
graph layer). A trained network's average pooling is folded into the next layer's kernel (a
``k·K`` kernel with stride ``k·S``), which the chip runs as such; a graph's ``sumpool`` layer is
the pooling of the layer before it and takes no memory of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from neurodeploy.hardware.structure import layer_label


@dataclass(frozen=True)
class LayerMemory:
    """Memory of one DYNAP-CNN layer (entries) and the label of the graph layer it comes from."""

    label: str
    kernel: int
    neuron: int
    bias: int

    def fits(self, kernel: int, neuron: int, bias: int) -> bool:
        return self.kernel <= kernel and self.neuron <= neuron and self.bias <= bias


def _log2_ceil(n: int) -> int:
    return int(math.ceil(math.log2(n))) if n > 0 else 0


def _out_shape(layer: Any) -> tuple[int, ...]:
    shape = getattr(layer, "out_shape", None)
    if shape is None or not len(shape):
        shape = layer.neurons.shape
    return tuple(int(d) for d in shape)


def _has_bias(layer: Any) -> bool:
    bias = getattr(layer, "bias", None)
    if bias is None and getattr(layer, "neurons", None) is not None:
        bias = getattr(layer.neurons, "bias", None)
    if bias is None:
        return False
    arr = bias.detach().cpu().numpy() if hasattr(bias, "detach") else np.asarray(bias)
    return bool(np.any(arr != 0))


def layer_memories(layers: list[Any]) -> list[LayerMemory]:
    """The memory of every DYNAP-CNN layer (one per dense/conv layer) of ``layers``."""
    out: list[LayerMemory] = []
    shape: tuple[int, ...] | None = None  # spikes reaching the next layer (before a flatten)
    for i, layer in enumerate(layers):
        if layer.kind == "flatten":
            continue
        if layer.kind == "sumpool":
            shape = _out_shape(layer)
            continue
        w = np.asarray(layer.weight.detach().cpu().numpy() if hasattr(layer.weight, "detach")
                       else layer.weight)
        f = int(w.shape[0])
        if layer.kind == "conv":
            c, kh, kw = (int(d) for d in w.shape[1:4])
            _, h, wd = _out_shape(layer)
        else:  # dense: a conv whose kernel covers the input
            n_in = int(w.shape[1])
            if shape is not None and len(shape) == 3 and int(np.prod(shape)) == n_in:
                c, kh, kw = shape
            else:
                c, kh, kw = n_in, 1, 1
            h = wd = 1
        out.append(LayerMemory(
            label=layer_label(i, layer),
            kernel=c * 2 ** (_log2_ceil(kh * kw) + _log2_ceil(f)),
            neuron=f * 2 ** (_log2_ceil(h) + _log2_ceil(wd)),
            bias=f if _has_bias(layer) else 0))
        shape = _out_shape(layer)
    return out


def core_memories(profile: Any) -> list[tuple[int, int, int]] | None:
    """Per core ``(kernel, neuron, bias)`` memory from the profile, or ``None`` if not given."""
    lim = profile.limits
    if lim.kernel_memory_per_core is None or lim.neuron_memory_per_core is None:
        return None
    bias = lim.bias_memory_per_core or (math.inf,) * lim.cores
    return list(zip(lim.kernel_memory_per_core, lim.neuron_memory_per_core, bias, strict=True))


def assign_cores(memories: list[LayerMemory],
                 cores: list[tuple[int, int, int]]) -> dict[int, int] | None:
    """A core for every layer (layer index → core index), each core used once, every layer
    within its core's memories; ``None`` when no such assignment exists."""
    options = [[c for c, mem in enumerate(cores) if m.fits(*mem)] for m in memories]
    owner: dict[int, int] = {}

    def augment(layer: int, seen: set[int]) -> bool:
        for core in options[layer]:
            if core in seen:
                continue
            seen.add(core)
            if core not in owner or augment(owner[core], seen):
                owner[core] = layer
                return True
        return False

    for layer in range(len(memories)):
        if not augment(layer, set()):
            return None
    return {layer: core for core, layer in owner.items()}


__all__ = ["LayerMemory", "assign_cores", "core_memories", "layer_memories"]
