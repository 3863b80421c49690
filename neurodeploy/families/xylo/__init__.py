"""The ``xylo`` family: SynSense Xylo's digital LIF (Xylo Audio 2 SYNS61201, Xylo IMU SYNS63300).

Modules: :mod:`.arith` (the integer step: per-event saturating delivery, bit-shift "dash" decays,
int16 states, up to 31 events per step, subtractive reset), :mod:`.shadow` (the differentiable
shadow fine-tuning trains through), :mod:`.lowering` (folded float blocks → dashes, int8 weights
with one shift per matrix, int16 thresholds and biases), :mod:`.rules` (design rules) and
:mod:`.spec` (the chip specification Rockpool's ``XyloSim.from_specification`` takes, its file
writer and reader, and a simulator of it with full recurrence and both synapses).

A trained MLP maps onto Xylo's one hidden population as Rockpool's mapper maps it: hidden layer
``k → k+1`` through the recurrent matrix with one step of delay per hop (the profiles'
``timing.synapse_delay = 1``, ``timing.input_delay = 0``).
"""

from __future__ import annotations

from typing import Any

from neurodeploy.families.xylo import lowering
from neurodeploy.families.xylo.arith import (
    DEFAULT,
    INPUT_PARTS,
    NAME,
    Config,
    NeuronStep,
    XyloConfig,
    bitshift_decay,
    conv,
    current_step,
    decay_step,
    dense,
    membrane_step,
    merge_inputs,
    neuron_step,
    sumpool,
)
from neurodeploy.families.xylo.rules import RULES
from neurodeploy.families.xylo.shadow import TrainNeuron


def _write_spec(graph: Any, path: Any, **kwargs: Any) -> Any:
    from neurodeploy.families.xylo.spec import write_spec

    return write_spec(graph, path, **kwargs)


LAYER_KINDS = ("dense", "flatten")
"""Layer kinds a Xylo chip runs (one hidden population of dense synapses); a profile of this
family listing others is refused when it is read."""

WRITERS = {"xylo": _write_spec}
"""File formats this family writes from a deployment graph: ``xylo``, the chip specification
(:mod:`.spec`)."""

__all__ = ["DEFAULT", "INPUT_PARTS", "LAYER_KINDS", "NAME", "RULES", "WRITERS", "Config", "NeuronStep",
           "TrainNeuron", "XyloConfig", "bitshift_decay", "conv", "current_step", "decay_step",
           "dense", "lowering", "membrane_step", "merge_inputs", "neuron_step", "sumpool"]
