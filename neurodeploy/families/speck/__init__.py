"""The ``speck`` family: SynSense Speck 2E/2F and DYNAP-CNN, as Sinabs 3.1.3 models them.

Modules: :mod:`.arith` (integrate-and-fire with integer weights, multi-spike events, subtractive
reset, the lower bound ``-threshold``, 16-bit overflow flags), :mod:`.lowering` (Sinabs's per-layer
discretization and the differentiable shadow), :mod:`.memory` (kernel, neuron and bias memory per
layer, layer-to-core assignment) and :mod:`.rules` (design rules). ``docs/speck.md`` lists what
the code relies on and its sources.
"""

from __future__ import annotations

from neurodeploy.families.speck import lowering, memory
from neurodeploy.families.speck.arith import (
    DEFAULT,
    NAME,
    Config,
    NeuronStep,
    SpeckConfig,
    conv,
    dense,
    neuron_step,
    sumpool,
)
from neurodeploy.families.speck.lowering import TrainNeuron
from neurodeploy.families.speck.rules import RULES

POOLING_IN_LAYER = True
"""A ``sumpool`` layer is the pooling of the DYNAP-CNN layer before it (:mod:`.memory`)."""

__all__ = ["DEFAULT", "NAME", "POOLING_IN_LAYER", "RULES", "Config", "NeuronStep", "SpeckConfig", "TrainNeuron",
           "conv", "dense", "lowering", "memory", "neuron_step", "sumpool"]
