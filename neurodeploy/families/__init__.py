"""Chip families: one package per family owns everything about that chip.

A profile names its family (``[profile] family``); :func:`get_family` returns the family's
package. Adding a family is a new package here, a profile TOML and one line in ``_FAMILIES``.

What a family package provides (module-level names; ``loihi`` provides all of them):

- ``NAME``: the family name used in profiles and deployment graphs;
- the integer arithmetic: ``Config`` (``Config.from_profile(profile)``), ``DEFAULT``,
  ``neuron_step(u, v, a_in, *, current_decay, voltage_decay, threshold, bias, bias_exp, spiking,
  reset, max_spikes, config) -> NeuronStep``, ``dense``, ``conv``, ``sumpool`` (each returning
  ``(a, overflow_mask)``), on numpy int64 arrays and torch tensors;
- optional fast kernels for the simulator: ``NeuronScan`` (a whole window of neuron steps) and
  ``DenseInput`` (a dense layer's synaptic input of many steps as one exact float product);
  without them the simulator calls ``neuron_step`` once per step;
- ``RULES``: the family's design rules (:class:`neurodeploy.families.rules.Rule`), run with the
  rules every family shares by :func:`neurodeploy.families.rules.check`;
- a family's ``dense`` / ``conv`` / ``sumpool`` may return the synaptic input in *parts* on a
  trailing axis (xylo: the sum and the two ends of its per-event saturation); the simulator and
  the fake-quant forward pass them to ``neuron_step`` as they are;
- optional ``lowering``: the module that turns folded float blocks into the family's integer
  layers and trains through them (``layer_format(block, scale, profile, weight_bits,
  input_unit=)``, ``choose_scale``, ``train_neuron(fmt, block, surrogate, config, max_spikes=)``:
  the differentiable shadow of ``neuron_step``; a format may carry ``weight_factor``, integer
  weight units per scaled float weight, ``spiking``, whether the chip's group compares with
  its threshold, and ``reset``; an optional ``weight_format(weight, scale, input_unit, fmt,
  floor)`` returns ``(weight_exp, weight_factor)`` for the current weights (an exponent of at
  least ``floor``), called on every fake-quant pass; an optional ``share_weight_shifts(layers,
  blocks)`` sets the ``exp_floor`` of the fake-quant layers and projections whose matrices share
  one exponent on the chip, before every pass); a family without it can simulate deployment
  graphs but not lower trained networks;
- optional ``LOWERING_HINT``: what a refusal to lower a spiking network says to do instead (a
  family without ``lowering``);
- optional ``POOLING_IN_LAYER``: ``True`` when a ``sumpool`` layer is the pooling of the layer
  before it on the chip (no core and no neurons of its own; the fit check counts it so);
- optional ``WRITERS``: file formats the family writes from a deployment graph (loihi: ``lava``,
  Lava netx HDF5, in :mod:`neurodeploy.families.loihi.netx`; xylo: ``xylo``, the chip
  specification Rockpool takes, in :mod:`neurodeploy.families.xylo.spec`).

Shared, backend-neutral primitives live in :mod:`neurodeploy.arith` (ops, overflow rules,
spiking threshold and reset, exact synapse kernels, spike-time jitter).
"""

from __future__ import annotations

import importlib
from types import ModuleType

_FAMILIES = {
    "loihi": "neurodeploy.families.loihi",
    "speck": "neurodeploy.families.speck",
    "xylo": "neurodeploy.families.xylo",
    "ttfs": "neurodeploy.families.ttfs",
}


def list_families() -> list[str]:
    """Names of the chip families, sorted."""
    return sorted(_FAMILIES)


def get_family(name: str) -> ModuleType:
    """Return the family package for ``name``; raises :class:`UnsupportedError` if unknown."""
    if name not in _FAMILIES:
        from neurodeploy.errors import UnsupportedError

        raise UnsupportedError(
            f"unknown arithmetic family {name!r}; known families: {', '.join(list_families())}"
        )
    return importlib.import_module(_FAMILIES[name])


__all__ = ["get_family", "list_families"]
