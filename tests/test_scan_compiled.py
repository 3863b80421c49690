"""The compiled loop of the loihi family's NeuronScan (``families/loihi/scan_compiled.py``)
against the numpy loop it stands in for and against ``neuron_step``: same spikes, states, states
before the reset and overflow counts, on random groups whose states reach the range rules (so
the scan switches between both loops within one window)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from neurodeploy.arith.overflow import apply_overflow
from neurodeploy.families import loihi
from neurodeploy.families.loihi import scan_compiled, shadow
from neurodeploy.nn.surrogate import make_surrogate
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
        per_step = np.ndim(bound) > 0  # one bound per step, or one for all
        scan.run(a[:cut], bound[:cut] if per_step else bound, raster, delay, cut)
        scan.run(a[cut:], bound[cut:] if per_step else bound, raster, delay + cut, steps - delay - cut)
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
    slack = data.draw(st.sampled_from([1.0, 1.5]))
    bound = (np.abs(a64).max(axis=(1, 2), initial=0.0) * slack
             if data.draw(st.booleans()) else float(np.abs(a64).max(initial=0.0)) * slack)
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


@pytest.mark.parametrize("per_step", [False, True])
def test_a_saturating_voltage_runs_compiled_and_equals_the_numpy_loop_and_neuron_step(
        per_step, monkeypatch):
    """A layer driven into Loihi's voltage saturation at most steps: the compiled loop applies
    the clamp itself (every step runs compiled), with the same spikes, states and overflow counts
    as the numpy loop and as ``neuron_step``."""
    a = np.random.default_rng(1).integers(-(1 << 17), 1 << 15, (30, 3, 5))
    _check_rule_runs_compiled(monkeypatch, per_step, a, threshold=1 << 16, flag=19, counts=5)
    # (args[19] is v_sat: the clamp runs in the compiled loop; counts[5]: the voltage overflows)


@pytest.mark.parametrize("per_step", [False, True])
def test_a_wrapping_current_runs_compiled_and_equals_the_numpy_loop_and_neuron_step(per_step, monkeypatch):
    """Inputs beyond the 24-bit current (an MNIST layer's graded input does this): Loihi's
    single correction (``wrap_once``) runs in the compiled loop, every step, with the same
    spikes, states and overflow counts as the numpy loop and ``neuron_step``."""
    half = 1 << (loihi.DEFAULT.current_bits - 1)
    a = np.random.default_rng(2).integers(-(2 * half) // 64, (2 * half) // 64, (25, 3, 6))  # |a << 6| < 2M
    _check_rule_runs_compiled(monkeypatch, per_step, a, threshold=1 << 20, flag=23, counts=4)
    # (args[23] is u_wrap: the correction runs in the compiled loop; counts[4]: the current overflows)


def _check_rule_runs_compiled(monkeypatch, per_step: bool, a: np.ndarray, threshold: int, flag: int,
                              counts: int) -> None:
    """Input ``a [T, B, N]`` to a zero-reset group: every step runs compiled with the range rule
    whose flag is ``args[flag]`` of ``scan_compiled.advance`` on, and the spikes, states and
    overflow counts (``_run``'s output ``counts``: 4 current, 5 voltage) equal the numpy loop's and
    ``neuron_step``'s; the rule acted more often than there are steps."""
    steps, b, n = a.shape
    params = dict(current_decay=4096, voltage_decay=2048, threshold=threshold, bias=0, bias_exp=0,
                  spiking=True, reset="zero")
    a64 = a.astype(np.float64) * 64
    bound = np.abs(a64).max(axis=(1, 2)) if per_step else float(np.abs(a64).max())
    compiled_steps = []
    advance = scan_compiled.advance

    def counting(*args):
        assert args[flag]
        compiled_steps.append(args[14])
        return advance(*args)

    monkeypatch.setattr(scan_compiled, "advance", counting)
    fast = _run(True, a64, bound, b, n, steps, 0, 10, params, loihi.DEFAULT, 0)
    assert sum(compiled_steps) == steps
    ref = _run(False, a64, bound, b, n, steps, 0, 10, params, loihi.DEFAULT, 0)
    for x, y in zip(fast, ref, strict=True):
        assert np.array_equal(x, y)
    assert fast[counts].sum() > steps  # the rule acted often
    u = np.zeros((b, n), np.int64)
    v = np.zeros((b, n), np.int64)
    ovf = np.zeros(b, np.int64)
    for t in range(steps):
        r = loihi.neuron_step(u, v, a[t], **params)
        u, v = r.u, r.v
        assert np.array_equal(fast[0][:, t], r.spikes)
        changed = r.u_overflow if counts == 4 else r.v_overflow
        if changed is not None:  # None: the rule changed nothing
            ovf += np.asarray(changed).reshape(b, -1).sum(1)
    assert np.array_equal(fast[6], u) and np.array_equal(fast[7], v)
    assert np.array_equal(fast[counts], ovf)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_safe_steps_bounds_hold_for_every_state_inside_them(data):
    """Soundness of the bound propagation that admits steps to the compiled loop: from any states
    inside the given bounds, with any inputs inside the per-step input bounds, the exact step
    (storage and range rules included) changes nothing but what the compiled loop applies itself
    (the voltage clamp, the current's single correction), and the states after every admitted
    step lie inside the bounds it reports."""
    from neurodeploy.families.loihi.scan import _safe_steps

    u_bits, v_bits = data.draw(st.integers(5, 9)), data.draw(st.integers(5, 9))
    half_u, half_v = float(1 << (u_bits - 1)), float(1 << (v_bits - 1))
    st_hi = float(1 << data.draw(st.integers(9, 11))) - 1
    store = (-st_hi - 1, st_hi)
    ok = (-half_u + 1, half_u, -(half_v - 1), half_v - 1)  # wrap_once current, saturate_symmetric voltage
    use_u = data.draw(st.booleans())
    use_v = data.draw(st.booleans())
    cu = data.draw(st.sampled_from([0.0, 0.5, 1.0]))
    cv = data.draw(st.sampled_from([0.0, 0.5, 0.9375]))
    theta = float(data.draw(st.integers(1, int(half_v) - 1)))
    zero_reset, strict = data.draw(st.booleans()), data.draw(st.booleans())
    b_lo = b_hi = 0.0
    steps = data.draw(st.integers(1, 6))
    bounds_a = [float(data.draw(st.integers(0, int(2.5 * half_u)))) for _ in range(steps)]
    u_ends = sorted(data.draw(st.integers(int(ok[0]), int(ok[1]))) for _ in range(2))
    v_ends = sorted(data.draw(st.integers(int(ok[2]), int(ok[3]))) for _ in range(2))
    box = (float(u_ends[0]), float(u_ends[1]), float(v_ends[0]), float(v_ends[1]))
    safe, after = _safe_steps(box, bounds_a, 0, cu, cv, b_lo, b_hi, theta, True, strict, zero_reset, ok,
                              store if use_v else None, (*store, half_u) if use_u else None)
    # many trajectories at once: states from the box's ends and inside, inputs at their bounds,
    # zero and in between (the extremes are where a wrong bound shows)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    count = 512

    def pick(lo, hi):
        x = rng.integers(int(lo), int(hi) + 1, count).astype(np.float64)
        x[: count // 4], x[count // 4: count // 2] = lo, hi
        return rng.permutation(x)

    u, v = pick(box[0], box[1]), pick(box[2], box[3])
    for j in range(safe):
        a = pick(-bounds_a[j], bounds_a[j])
        u = np.trunc(u * cu) + a
        assert (store[0] <= u).all() and (u <= store[1]).all()  # storage never wraps in an admitted step
        out = (u < ok[0]) | (u > ok[1])
        if out.any():
            assert use_u and (-3 * half_u < u[out]).all() and (u[out] <= 3 * half_u).all()
            u = apply_overflow(u, u_bits, "wrap_once")[0]
        v = np.trunc(v * cv) + u
        assert (store[0] <= v).all() and (v <= store[1]).all()
        out = (v < ok[2]) | (v > ok[3])
        if out.any():
            assert use_v
            v = apply_overflow(v, v_bits, "saturate_symmetric")[0]
        fire = v > theta if strict else v >= theta
        v = np.where(fire, 0.0 if zero_reset else v - theta, v)
    if safe:
        assert (after[0] <= u).all() and (u <= after[1]).all()
        assert (after[2] <= v).all() and (v <= after[3]).all()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_compiled_scan_equals_the_numpy_loop_on_narrow_states_and_signed_thresholds(data):
    """Narrow states (storage just wider than ``u`` and ``v``, so storage wraps before the
    voltage rule) and thresholds of either sign, which a profile does not allow but the scan
    accepts: the compiled loop (its clamp included) equals the numpy loop."""
    b, n, steps = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 4)), data.draw(st.integers(1, 25))
    cur_bits, v_bits = data.draw(st.integers(8, 16)), data.draw(st.integers(8, 16))
    config = loihi.LoihiConfig(
        current_bits=cur_bits, voltage_bits=v_bits,
        storage_bits=max(cur_bits, v_bits) + data.draw(st.integers(0, 2)),
        current_overflow=data.draw(st.sampled_from(["wrap_once", "wrap", "saturate"])),
        voltage_overflow=data.draw(st.sampled_from(["saturate_symmetric", "saturate", "wrap"])),
        threshold_strict=data.draw(st.booleans()))
    limit = 1 << max(cur_bits, v_bits)
    params = dict(current_decay=data.draw(st.sampled_from([0, 1024, 4096])),
                  voltage_decay=data.draw(st.sampled_from([0, 128, 2048])),
                  threshold=data.draw(st.integers(-(limit >> 6), limit >> 6)),
                  bias=data.draw(st.integers(-limit, limit)), bias_exp=0,
                  spiking=data.draw(st.booleans()), reset=data.draw(st.sampled_from(["zero", "subtract"])))
    initial_v = data.draw(st.integers(-(limit >> 1) + 1, (limit >> 1) - 1))
    if not loihi.NeuronScan.supported(params, config, 1, initial_v):
        return
    a = data.draw(hnp.arrays(np.int64, (steps, b, n), elements=st.integers(-(limit >> 7), limit >> 7)))
    a64 = a.astype(np.float64) * 64
    bound = np.abs(a64).max(axis=(1, 2), initial=0.0)
    cut = data.draw(st.integers(0, steps))
    args = (a64, bound, b, n, steps, 0, cut, params, config, initial_v)
    for x, y in zip(_run(True, *args), _run(False, *args), strict=True):
        assert np.array_equal(x, y)


def test_a_clamped_voltage_below_the_range_keeps_its_bounds_in_order():
    """Regression: a bias below the voltage range clamps the whole interval of ``v`` to its lower
    end; its bounds must stay ordered, so that the next step's storage wrap (17-bit storage,
    16-bit voltage) is seen and the numpy loop runs it, as ``neuron_step`` does."""
    config = loihi.LoihiConfig(current_bits=16, voltage_bits=16, storage_bits=17,
                               voltage_overflow="saturate_symmetric", current_overflow="wrap_once")
    params = dict(current_decay=0, voltage_decay=0, threshold=-2048, bias=-32769, bias_exp=0,
                  spiking=True, reset="subtract")
    steps = 3
    args = (np.zeros((steps, 1, 1)), 0.0, 1, 1, steps, 0, steps, params, config, 0)
    fast, ref = _run(True, *args), _run(False, *args)
    for x, y in zip(fast, ref, strict=True):
        assert np.array_equal(x, y)
    u = np.zeros((1, 1), np.int64)
    v = np.zeros((1, 1), np.int64)
    for t in range(steps):
        r = loihi.neuron_step(u, v, np.zeros((1, 1), np.int64), **params, config=config)
        u, v = r.u, r.v
        assert np.array_equal(fast[2][:, t], v)


@settings(max_examples=150, deadline=None)
@given(a=hnp.arrays("float64", hnp.array_shapes(min_dims=3, max_dims=3, min_side=0, max_side=5),
                    elements=st.sampled_from([0.0, -0.0, 1.0, -7.0, 3.0e15, -2.0**60, float("inf"),
                                              float("nan")])),
       act=st.sampled_from([1.0, 2.0, 64.0, 2.0**-3]))
def test_scaled_by_step_equals_the_torch_scaling_and_bounds(a, act):
    """The fine-tuning window's input in state units and its step bounds, in one pass, against
    ``a * act`` and ``max(amax, -amin) * act`` over the batch and neurons of each step."""
    import torch

    out, bounds = np.empty(a.shape), np.empty(a.shape[1])
    has_nan = scan_compiled.scaled_by_step(a, act, out, bounds)
    t = torch.from_numpy(a)
    assert has_nan == bool(np.isnan(a).any())
    np.testing.assert_array_equal(out, (t * act).numpy())
    if a.size and not has_nan:
        want = (torch.maximum(t.amax(dim=(0, 2)), -t.amin(dim=(0, 2))) * act).numpy()
        np.testing.assert_array_equal(bounds, want)
    elif not a.size:
        np.testing.assert_array_equal(bounds, np.zeros(a.shape[1]))


@pytest.mark.parametrize("surrogate", ["atan", "fast_sigmoid", "triangle", "rectangular", "softsign"])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_the_compiled_window_terms_equal_the_torch_form_bit_for_bit(surrogate, reset):
    """``scan_compiled.window_terms`` (spikes, surrogate derivative, ``dv/dv_pre`` in one pass)
    against the torch form of ``_integer_window`` on the same window: the same bits."""
    g = torch.Generator().manual_seed(3)
    theta = 300
    neuron = loihi.TrainNeuron(current_decay=1024, voltage_decay=512, threshold=theta, bias_exp=6,
                               spiking=True, reset=reset, state_unit=64 * 1.7,
                               surrogate=make_surrogate({"name": surrogate}), config=loihi.LoihiConfig())
    a = torch.randint(-theta, 2 * theta, (4, 9, 2500), generator=g).double()  # several blocks
    bias = torch.randint(-50, 50, (2500,), generator=g).double()
    terms = []
    saved = loihi.NeuronScan.compiled
    try:
        for compiled in (True, False):
            loihi.NeuronScan.compiled = compiled
            terms.append(shadow._integer_window(neuron, a, bias, 0.0, True))
    finally:
        loihi.NeuronScan.compiled = saved
    assert bool(terms[0][0].any()) and not bool(terms[0][0].all())
    for x, y in zip(*terms, strict=True):
        assert torch.equal(x, y) and torch.equal(torch.signbit(x), torch.signbit(y))
