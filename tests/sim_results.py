"""Equality of two simulator results, figure by figure (shared by the simulator tests)."""

from __future__ import annotations

import numpy as np

FIGURES = ("readout", "predictions", "input_spikes", "spike_counts", "synops", "neuron_updates",
           "u_overflows", "v_overflows", "acc_overflows", "energy_j")


def assert_same_results(a, b) -> None:
    """Every figure of two :class:`~neurodeploy.sim.SimResult` s is equal (rasters and recorded
    states by value)."""
    assert a.layer_names == b.layer_names
    for name in FIGURES:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    for x, y in zip(a.neuron_spike_counts, b.neuron_spike_counts, strict=True):
        assert np.array_equal(x, y)
    assert a.rasters.keys() == b.rasters.keys()
    for key in a.rasters:
        assert np.array_equal(a.rasters[key], b.rasters[key]), key
    assert a.states.keys() == b.states.keys()
    for var in a.states:
        assert a.states[var].keys() == b.states[var].keys(), var
        for key in a.states[var]:
            assert np.array_equal(a.states[var][key], b.states[var][key]), (var, key)
