"""The loihi family's whole-window conv and sum-pool input (``WindowInput``) against the exact
integer kernels (``loihi.conv`` / ``loihi.sumpool``: an int64 window sum, then the 24-bit wrap
and storage) on random layers, with values up to the exactness bounds and layers that wrap."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurodeploy.families import loihi
from neurodeploy.families.loihi import LoihiConfig, WindowInput
from neurodeploy.lower.graph import Conv2d, Dense, DeployGraph, Flatten, NeuronGroup, SumPool2d
from neurodeploy.sim import Simulator

CONFIGS = [LoihiConfig(), LoihiConfig(accumulator_bits=32, storage_bits=48),
           LoihiConfig(accumulator_bits=40, storage_bits=64, activation_shift=3)]


def _exact(result, config, in_shape_events):
    """``a << activation_shift`` of the exact kernel, flattened per image."""
    a, mask = result
    return (np.asarray(a, np.int64) << config.activation_shift).reshape(
        in_shape_events, -1), mask


@st.composite
def conv_layers(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.integers(1, 3))
    og = draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1))
    h, w = draw(st.integers(kh, 9)), draw(st.integers(kw, 9))
    cfg = draw(st.sampled_from(CONFIGS))
    s_max = draw(st.sampled_from([1, 1, 3, 255, 4095]))
    # weights scaled so that the bound of a window sum lands anywhere from far below to above
    # the accumulator's range (then the plan must refuse)
    acc_hi = 1 << (cfg.accumulator_bits - 1)
    taps = cg * kh * kw
    target = draw(st.sampled_from([acc_hi // 1000, acc_hi // 2, acc_hi - 1, acc_hi,
                                   acc_hi + 1, 2 * acc_hi, (1 << 24) - 1, 1 << 24,
                                   (1 << 25) + 1, (1 << 26) - 3]))
    w_max = max(1, target // (taps * s_max))
    shape = (og * groups, cg, kh, kw)
    mode = draw(st.sampled_from(["random", "extreme", "same_sign"]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    if mode == "random":
        weight = rng.integers(-w_max, w_max + 1, shape)
    elif mode == "extreme":
        weight = rng.choice([-w_max, w_max], shape)
    else:
        weight = np.full(shape, w_max * (1 if seed % 2 else -1))
    weight[..., 0, 0] |= 1  # odd weights: sums beyond 2**24 are not all multiples of 2
    n = draw(st.integers(1, 4))
    x_mode = draw(st.sampled_from(["random", "full"]))
    if x_mode == "full":  # every event at its bound: window sums reach the weight bound
        x = np.full((n, cg * groups, h, w), s_max)
    else:
        x = rng.integers(0, s_max + 1, (n, cg * groups, h, w))
    return weight, (sh, sw), (ph, pw), groups, cfg, s_max, x


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_layers())
def test_conv_plan_equals_the_exact_kernel(case):
    weight, stride, padding, groups, cfg, s_max, x = case
    in_shape = x.shape[1:]
    plan = WindowInput.conv(weight, in_shape, stride, padding, groups, cfg, s_max)
    exact, mask = _exact(loihi.conv(weight, x, stride, padding, groups, config=cfg, s_max=s_max),
                         cfg, x.shape[0])
    bound = int(np.abs(weight).reshape(weight.shape[0], -1).sum(axis=1).max()) * s_max
    hi = (1 << (cfg.accumulator_bits - 1)) - 1
    if plan is None:  # refused only where the bound leaves the accumulator's range
        assert bound > hi
        return
    assert bound <= hi
    assert mask is None or not np.any(mask)  # a plan exists only where nothing can wrap
    got = plan(x.reshape(x.shape[0], -1))
    assert got.dtype == (np.float32 if bound < 1 << 24 else np.float64)
    assert np.array_equal(got.astype(np.int64), exact)
    assert np.abs(exact).max(initial=0) <= plan.bound
    # any leading axes, time-major or not
    lead = plan(np.stack([x, x]).reshape(2, x.shape[0], -1))
    assert np.array_equal(lead[1].astype(np.int64), exact)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4),
       st.integers(1, 3), st.sampled_from([1, 255, 1 << 20, (1 << 23) // 4, 1 << 22]),
       st.sampled_from(CONFIGS), st.integers(0, 2**31 - 1))
def test_pool_plan_equals_the_exact_kernel(kh, kw, sh, sw, c, s_max, cfg, seed):
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(kh, 10)), int(rng.integers(kw, 10))
    x = rng.integers(0, s_max + 1, (3, c, h, w))
    x[0] = s_max  # window sums at their bound
    plan = WindowInput.pool((kh, kw), (sh, sw), x.shape[1:], cfg, s_max)
    exact, mask = _exact(loihi.sumpool(x, (kh, kw), (sh, sw), config=cfg), cfg, 3)
    if plan is None:
        assert kh * kw * s_max > (1 << (cfg.accumulator_bits - 1)) - 1
        assert mask is not None and mask[0].any()  # the full image does wrap
        return
    assert np.array_equal(plan(x.reshape(3, -1)).astype(np.int64), exact)


def test_plan_refuses_what_it_cannot_compute():
    cfg = LoihiConfig()
    w = np.ones((2, 1, 3, 3), np.int64)
    assert WindowInput.conv(w, (2, 5, 5), (1, 1), (0, 0), 1, cfg, 1) is None  # channels
    assert WindowInput.conv(w, (1, 2, 2), (1, 1), (0, 0), 1, cfg, 1) is None  # no output
    big = np.full((2, 1, 3, 3), 1 << 20)
    assert WindowInput.conv(big, (1, 5, 5), (1, 1), (0, 0), 1, cfg, 1) is None  # may wrap
    layer = Conv2d(w, NeuronGroup((2, 3, 3), 0, 0, 1, 0), weight_exp=1)
    assert WindowInput.plan(layer, (1, 5, 5), cfg, 1) is None  # a conv exponent
    assert WindowInput.plan(Dense(np.ones((2, 3), np.int64), NeuronGroup((2,), 0, 0, 1, 0)),
                            (3,), cfg, 1) is None


def _group(shape, rng, thr):
    n = int(np.prod(shape))
    return NeuronGroup(shape, int(rng.integers(0, 4097)), int(rng.integers(0, 4097)), thr,
                       rng.integers(-20, 20, n))


@pytest.mark.parametrize("wrap,tile", [(False, None), (True, None), (False, 40)])
def test_simulator_with_window_input_equals_the_step_path(wrap, tile, monkeypatch):
    """A conv-pool-conv graph near the bound (no wrap: the plan runs every window layer) and one
    whose first conv wraps (exact fallback): fast and per-step paths give the same integers."""
    rng = np.random.default_rng(3)
    scale = 16 if wrap else 1
    # conv1's bound: 2 * 9 * 3 * 255 = 13770 per unit of weight scale... near 2**23 at 600
    w1 = rng.choice([-600, 600], (4, 2, 3, 3)) * scale
    graph = DeployGraph("loihi2", "loihi", (2, 8, 7), [
        Conv2d(w1, _group((4, 8, 7), rng, 40000), padding=(1, 1), name="c1"),
        SumPool2d((2, 2), _group((4, 4, 3), rng, 1), name="p1"),
        Conv2d(rng.integers(-120, 120, (6, 2, 2, 2)), _group((6, 3, 2), rng, 50), groups=2,
               name="c2"),
        Flatten(),
        Dense(rng.integers(-100, 100, (3, 36)), _group((3,), rng, 100), name="fc"),
    ], steps=12)
    x = rng.integers(0, 256, (3, 12, 2, 8, 7))
    x[0] = 255
    if tile is not None:  # the neuron scan in blocks of one or a few samples
        monkeypatch.setattr(loihi.NeuronScan, "TILE_ELEMENTS", tile)
    sim = Simulator(graph)
    plans = [loihi.WindowInput.plan(s.layer, s.struct.in_shape, sim.config, 255)
             for s in sim._stages[:1]]
    assert (plans[0] is None) == wrap
    rec = ("spikes", "u", "v")
    fast = sim.run(x, extra_steps=2, record=rec)
    slow = Simulator(graph, fast=False).run(x, extra_steps=2, record=rec)
    assert (fast.acc_overflows[:, 0].sum() > 0) == wrap
    assert fast.spike_counts[:, :-1].min() > 0  # every hidden layer spikes
    for key in fast.rasters:
        assert np.array_equal(fast.rasters[key], slow.rasters[key]), key
    for var in rec[1:]:
        for key in fast.states[var]:
            assert np.array_equal(fast.states[var][key], slow.states[var][key]), (var, key)
    for name in ("acc_overflows", "u_overflows", "v_overflows", "synops", "readout"):
        assert np.array_equal(getattr(fast, name), getattr(slow, name)), name


def test_neuron_scan_blocks_of_samples_keep_overflow_counts(monkeypatch):
    """u wraps and v saturates in some samples only: the scan advanced one sample at a time
    (per-block bounds, counts into each block's samples) equals the per-step path."""
    rng = np.random.default_rng(7)
    g1 = NeuronGroup((4,), 0, 0, (1 << 17) - 1, np.zeros(4, np.int64))
    g2 = NeuronGroup((2,), 0, 100, 50, np.zeros(2, np.int64), spiking=False)
    graph = DeployGraph("loihi", "loihi", (30,), [
        Dense(np.full((4, 30), 254), g1, weight_exp=6, name="big"),
        Dense(rng.integers(-200, 200, (2, 4)), g2, name="out"),
    ], steps=40)
    x = np.zeros((4, 40, 30), np.int64)
    x[1] = 1  # only samples 1 and 3 drive the states out of range
    x[3, ::3] = 1
    slow = Simulator(graph, fast=False).run(x, record=("spikes", "u", "v"))
    for tile in (1, 4, 1 << 20):
        monkeypatch.setattr(loihi.NeuronScan, "TILE_ELEMENTS", tile)
        fast = Simulator(graph).run(x, record=("spikes", "u", "v"))
        assert slow.u_overflows[[1, 3], 0].min() > 0 and slow.u_overflows[[0, 2]].sum() == 0
        for name in ("u_overflows", "v_overflows", "readout", "spike_counts"):
            assert np.array_equal(getattr(fast, name), getattr(slow, name)), (tile, name)
        for var in ("u", "v"):
            for key in fast.states[var]:
                assert np.array_equal(fast.states[var][key], slow.states[var][key]), (tile, key)
