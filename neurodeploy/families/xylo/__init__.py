"""The ``xylo`` family: SynSense Xylo's digital LIF (see :mod:`.arith`).

It simulates deployment graphs written for it; it has no lowering of trained networks yet and
no file writer.
"""

from __future__ import annotations

from neurodeploy.families.xylo.arith import (
    DEFAULT,
    NAME,
    Config,
    NeuronStep,
    XyloConfig,
    bitshift_decay,
    conv,
    decay_step,
    dense,
    neuron_step,
    sumpool,
)

RULES = ()
"""Xylo's limits are all profile fields (layer kinds, ranges), checked by the shared rules."""

__all__ = ["DEFAULT", "NAME", "RULES", "Config", "NeuronStep", "XyloConfig", "bitshift_decay",
           "conv", "decay_step", "dense", "neuron_step", "sumpool"]
