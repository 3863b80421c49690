"""Loihi's fixed-point units, with no imports, so that the float side of the package (the CUBA
neuron of :mod:`neurodeploy.nn`, the folds and the NIR conventions) states its decays in the chip's
units without pulling in the family's arithmetic.

A multiplicative decay ``d`` is an integer in ``0..DECAY_UNIT`` that multiplies a state by
``(DECAY_UNIT - d) / DECAY_UNIT`` per step (Lava 0.10's ``du``/``dv`` and netx's ``iDecay``/``vDecay``,
docs/loihi.md §3).
"""

DECAY_BITS = 12
"""Width of a decay: Lava's LIF shifts ``x * (2**12 - d)`` right by 12 bits."""

DECAY_UNIT = 1 << DECAY_BITS
"""Decays count in ``1/DECAY_UNIT`` units."""

__all__ = ["DECAY_BITS", "DECAY_UNIT"]
