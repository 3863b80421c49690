"""neurodeploy: from a trained spiking network to a neuromorphic chip.

``import neurodeploy as nd`` gives the public API (see :mod:`neurodeploy.api`): datasets,
profiles, models, ``fit``, ``prepare`` / ``finetune`` / ``convert`` for a chip, ``simulate``,
``export_to`` and ``import_nir``. Names are imported on first use, so importing the package is cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from neurodeploy.errors import NeurodeployError  # noqa: E402

_LAZY: dict[str, str] = {
    # data, profiles, models
    "load_dataset": "neurodeploy.data",
    "Dataset": "neurodeploy.data",
    "load_profile": "neurodeploy.hardware",
    "list_profiles": "neurodeploy.hardware",
    "HardwareProfile": "neurodeploy.hardware",
    "ModelSpec": "neurodeploy.models",
    "SpikingNet": "neurodeploy.models",
    "build_model": "neurodeploy.models",
    "SpikingNeuron": "neurodeploy.nn",
    "NeuronConfig": "neurodeploy.nn",
    # training and checkpoints
    "TrainConfig": "neurodeploy.train.config",
    "Checkpoint": "neurodeploy.train.checkpoint",
    "load_checkpoint": "neurodeploy.train.checkpoint",
    "fit": "neurodeploy.api",
    "fit_graph": "neurodeploy.api",
    # deployment verbs
    "Constraints": "neurodeploy.quantize.constraints",
    "prepare": "neurodeploy.api",
    "finetune": "neurodeploy.api",
    "convert": "neurodeploy.api",
    "simulate": "neurodeploy.api",
    "Simulation": "neurodeploy.api",
    "DeployGraph": "neurodeploy.lower.graph",
    "Simulator": "neurodeploy.sim.simulator",
    "export_to": "neurodeploy.api",
    "import_nir": "neurodeploy.api",
    # the float graph every model enters through
    "Graph": "neurodeploy.graph",
    "graph_from_model": "neurodeploy.graph",
    "run_graph": "neurodeploy.graph",
    "graph_from_torch": "neurodeploy.graph",
    "GraphNet": "neurodeploy.models.graph_net",
    "load_graph_checkpoint": "neurodeploy.models.graph_net",
    "Recurrent": "neurodeploy.nn",
    "Stepwise": "neurodeploy.nn",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'neurodeploy' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["NeurodeployError", "__version__", *sorted(_LAZY)]
