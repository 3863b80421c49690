"""The compiled loop of the loihi family's NeuronScan (``families/loihi/scan_compiled.py``)
against the numpy loop it stands in for and against ``neuron_step``: same spikes, states, states
before the reset and overflow counts, on random groups whose states reach the range rules (so
the scan switches between both loops within one window)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from neurodeploy.families import loihi
from neurodeploy.families.loihi import scan_compiled
from tests.scan_cases import draw_group

pytestmark = pytest.mark.skipif(not scan_compiled.AVAILABLE,
                                reason="numba is not installed (pip install -e '.[fast]')")

def _run(compiled, a, bound, b, n, steps, delay, cut, params, config, initial_v):
    saved = loihi.NeuronScan.compiled
    loihi.NeuronScan.compiled = compiled
    try:
        scan = loihi.NeuronScan(b, (n,), params, config, initial_v, steps, True, True,
                                record_v_pre=True)
        raster = np.zeros((b, steps, n), np.uint8)
        scan.run(None, 0.0, raster, 0, delay)
        scan.run(a[:cut], bound, raster, delay, cut)
        scan.run(a[cut:], bound, raster, delay + cut, steps - delay - cut)
    finally:
        loihi.NeuronScan.compiled = saved
    return (raster, scan.states_u, scan.states_v, scan.states_v_pre, scan.u_overflows,
            scan.v_overflows, scan.u, scan.v)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_compiled_scan_equals_the_numpy_loop(data):
    b, n, steps = (data.draw(st.integers(1, 4)), data.draw(st.integers(1, 6)),
                   data.draw(st.integers(1, 40)))
    delay = data.draw(st.integers(0, min(2, steps)))

    scale = data.draw(st.sampled_from([300, 1 << 14, 1 << 17, 1 << 25]))
    a = data.draw(hnp.arrays(np.int64, (steps - delay, b, n), elements=st.integers(-scale, scale)))
    params, config, initial_v = draw_group(data, n)
    a64 = a.astype(data.draw(st.sampled_from([np.float64, np.float32]))) * 64
    bound = float(np.abs(a64).max(initial=0.0)) * data.draw(st.sampled_from([1.0, 1.5]))
    cut = data.draw(st.integers(0, steps - delay))
    args = (a64, bound, b, n, steps, delay, cut, params, config, initial_v)
    fast, ref = _run(True, *args), _run(False, *args)
    for x, y in zip(fast, ref, strict=True):
        assert np.array_equal(x, y)


def test_compiled_scan_runs_and_matches_neuron_step_on_a_long_window():
    rng = np.random.default_rng(0)
    b, n, steps = 7, 33, 120
    params = dict(current_decay=1024, voltage_decay=128, threshold=1500,
                  bias=rng.integers(-200, 200, n), bias_exp=3, spiking=True, reset="zero")
    a = rng.integers(-3000, 3000, (steps, b, n))
    fast = _run(True, a.astype(np.float64) * 64, float(np.abs(a).max()) * 64, b, n, steps, 0,
                50, params, loihi.DEFAULT, 0)
    u = np.zeros((b, n), np.int64)
    v = np.zeros((b, n), np.int64)
    spikes = np.zeros((b, steps, n), np.int64)
    for t in range(steps):
        r = loihi.neuron_step(u, v, a[t], **params)
        u, v, spikes[:, t] = r.u, r.v, r.spikes
    assert spikes.sum() > 0 and np.array_equal(fast[0], spikes)
    assert np.array_equal(fast[6], u) and np.array_equal(fast[7], v)
