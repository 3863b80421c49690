"""Integer arithmetic of each chip family, written once for numpy and torch.

A family module (``loihi``, ``xylo``) provides the same interface, so the simulator and a
fake-quant training forward can use any of them:

- ``NAME``: the family name used in profiles and deployment graphs;
- ``Config`` with ``Config.from_profile(profile)`` and a module-level ``DEFAULT``;
- ``neuron_step(u, v, a_in, *, current_decay, voltage_decay, threshold, bias, bias_exp, spiking,
  reset, max_spikes, config) -> NeuronStep(u, v, spikes, u_overflow, v_overflow)``;
- ``dense(weight, s, weight_exp, config, s_max)``, ``conv(weight, s, stride, padding, groups,
  config, s_max)`` and ``sumpool(s, kernel, stride, config)``, each returning
  ``(a, overflow_mask)`` (``s_max``: optional known bound of the events, saves a scan).

Shared pieces: :mod:`.ops` (backend-neutral primitives), :mod:`.overflow` (wrap/saturate rules),
:mod:`.spiking` (threshold and reset), :mod:`.synapse` (exact integer kernels) and :mod:`.jitter`
(spike-time jitter).
"""

from __future__ import annotations

import importlib
from types import ModuleType

_FAMILIES = {
    "loihi": "neurodeploy.arith.loihi",
    "xylo": "neurodeploy.arith.xylo",
}


def list_families() -> list[str]:
    """Names of the arithmetic families, sorted."""
    return sorted(_FAMILIES)


def get_family(name: str) -> ModuleType:
    """Return the family module for ``name``; raises :class:`UnsupportedError` if unknown."""
    if name not in _FAMILIES:
        from neurodeploy.errors import UnsupportedError

        raise UnsupportedError(
            f"unknown arithmetic family {name!r}; known families: {', '.join(list_families())}"
        )
    return importlib.import_module(_FAMILIES[name])


__all__ = ["get_family", "list_families"]
