"""The ``ttfs`` family: time-to-first-spike B1 neurons on an integer time grid.

Modules: :mod:`.arith` (the clock of a ramp or count neuron group, exact synapses), :mod:`.scan`
(the same clock for blocks of steps, and exact float dense input, for the simulator), :mod:`.program`
(the integer program of a TTFS network in closed form and clock by clock, its weight scale and
ramp, input values), :mod:`.graph` (a program as a deployment graph, the input encoding of
values as spike times) and :mod:`.rules`. Its limits (window bits, weight bits, minimum ramp) are
the ``ttfs`` profile's (``hardware_profiles/ttfs.toml``). TTFS networks themselves (mapping from
ReLU networks, training, fine-tuning) live in :mod:`neurodeploy.ttfs`, which builds programs.
"""

from __future__ import annotations

from neurodeploy.families.ttfs.arith import (
    DEFAULT,
    KINDS,
    NAME,
    Config,
    NeuronStep,
    TTFSConfig,
    conv,
    dense,
    neuron_step,
    sumpool,
)
from neurodeploy.families.ttfs.graph import encode_inputs, graph_from_program
from neurodeploy.families.ttfs.program import (
    ProgramFlatten,
    ProgramLayer,
    ProgramPool,
    ProgramRun,
    TTFSProgram,
    program_accuracy,
    weight_levels,
    weight_scale,
)
from neurodeploy.families.ttfs.rules import RULES
from neurodeploy.families.ttfs.scan import DenseInput, NeuronScan

LOWERING_HINT = ("it runs time-to-first-spike networks: map a ReLU network with `neurodeploy convert MODEL "
                 "--to ttfs`, then `neurodeploy ttfs simulate CK --graph G.npz`")
"""What the refusal to lower a spiking network says to do instead."""

WRITERS: dict = {}
"""No vendor file format; TTFS networks are written to NIR (:mod:`neurodeploy.export.nir`)."""

__all__ = [
    "LOWERING_HINT",
    "DEFAULT", "KINDS", "NAME", "RULES", "WRITERS", "Config", "DenseInput", "NeuronScan",
    "NeuronStep", "ProgramFlatten", "ProgramLayer", "ProgramPool", "ProgramRun", "TTFSConfig",
    "TTFSProgram", "conv", "dense", "encode_inputs", "graph_from_program", "neuron_step",
    "program_accuracy", "sumpool", "weight_levels", "weight_scale",
]
