"""Narrow input rasters: the chip input encoder emits the narrowest exact dtype of its encoding's
declared range, and every consumer gives the same integers as with int64 rasters.

- the encoder's rule (``neurodeploy.lower.inputs.event_dtype``), its values against an
  independent int64 computation, and its refusal of samples it cannot encode;
- the simulator on every family's graphs (dense, conv, sum pool, merges, recurrence; binary,
  graded and event-count input; fast kernels and the per-step path): the encoder's raster and its
  int64 copy give the same spikes, states, read-outs, SynOps, overflow counts and energy;
- hypothesis over event values at the ends of each dtype (graded 8-bit events of 255, 15- and
  16-bit events near 32767 and 65535) with large weights, where a product or sum in the raster's
  own dtype would wrap: checked against the independent step-major reference of
  ``tests/test_sim_graphs.py``, which computes in int64 from the documented equations;
- narrow signed rasters whose negative values look valid when seen as unsigned are refused;
- a temporal task's event samples reach the simulator as they are: fractions are refused.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

from neurodeploy.errors import DataError
from neurodeploy.lower.graph import Conv2d, Dense, DeployGraph, Flatten, NeuronGroup, SumPool2d
from neurodeploy.lower.inputs import dtype_for_range, encode_inputs, encode_sample_inputs, event_dtype, event_range
from neurodeploy.nn.encoding import encode_integers, encode_samples
from neurodeploy.sim import Simulator
from neurodeploy.sim.deploy import simulate_graph
from tests.sim_results import assert_same_results
from tests.test_sim_graphs import _check_loihi, _inputs, recurrent_dense, recurrent_xylo, residual_conv, residual_dense

RECORD = ("spikes", "u", "v", "input")


def _narrow_equals_int64(graph, raster, extra_steps=2, jitter=None):
    """The simulator on ``raster`` (narrow) and on its int64 copy, fast and per-step: equal."""
    assert raster.dtype != np.int64
    wide = raster.astype(np.int64)
    assert np.array_equal(wide, raster)
    for fast in (True, False):
        sim = Simulator(graph, fast=fast)
        a = sim.run(raster, extra_steps=extra_steps, record=RECORD, jitter=jitter, seed=5)
        b = sim.run(wide, extra_steps=extra_steps, record=RECORD, jitter=jitter, seed=5)
        assert_same_results(a, b)
    return a


# ------------------------------------------------------------------------- the encoder's rule
def test_event_dtype_is_decided_by_the_declared_range():
    assert event_dtype({"kind": "rate"}) == np.uint8 and event_range({"kind": "rate"}) == 1
    assert event_dtype({"kind": "latency", "min_value": 0.2}) == np.uint8
    want = {1: np.uint8, 4: np.uint8, 8: np.uint8, 9: np.int16, 15: np.int16, 16: np.int32}
    for bits, dtype in want.items():
        assert event_range({"kind": "direct", "bits": bits}) == 2**bits - 1
        assert event_dtype({"kind": "direct", "bits": bits}) == dtype, bits
    ttfs = {"family": "ttfs", "kind": "time_grid", "window_steps": 4, "range": [0.0, 1.0],
            "shape": [3]}
    assert event_dtype(ttfs) == np.uint8
    raster = encode_inputs(torch.tensor([[0.0, 0.5, 1.0]]), 6, ttfs)
    assert raster.dtype == np.uint8 and raster.sum() == 2  # 0 emits no spike
    assert [dtype_for_range(v) for v in (0, 255, 256, 32767, 32768, 2**31 - 1, 2**31)] == \
        [np.uint8, np.uint8, np.int16, np.int16, np.int32, np.int32, np.int64]


@settings(max_examples=60, deadline=None)
@given(bits=hst.integers(1, 16), values=hst.lists(
    hst.one_of(hst.floats(-2.0, 3.0), hst.sampled_from([0.0, 1.0, 1 - 1e-7, float("inf"),
                                                         -float("inf")])),
    min_size=1, max_size=12), steps=hst.integers(1, 4))
def test_graded_events_are_exact_in_their_dtype(bits, values, steps):
    """Graded events equal an independent float64 rounding, whatever the value, in the rule's
    dtype; the batch encoder and the per-sample one agree."""
    x = torch.tensor([values], dtype=torch.float32)
    enc = {"kind": "direct", "bits": bits}
    levels = 2**bits - 1
    want = np.rint(np.clip(np.asarray(values, np.float32).astype(np.float64), 0, 1) * levels)
    for raster in (encode_inputs(x, steps, enc), encode_sample_inputs(x, steps, enc, start=3)):
        assert raster.dtype == event_dtype(enc) and raster.shape == (1, steps, len(values))
        assert np.array_equal(raster.astype(np.int64), np.broadcast_to(want, raster.shape))


def test_binary_events_equal_the_int64_encoders():
    g = torch.Generator().manual_seed(0)
    x = torch.rand((6, 2, 3, 3), generator=g)
    for enc in ({"kind": "rate", "seed": 4}, {"kind": "latency", "min_value": 0.1}):
        a = encode_inputs(x, 7, enc, torch.Generator().manual_seed(9))
        b = encode_integers(x, 7, enc, torch.Generator().manual_seed(9))
        assert a.dtype == np.uint8 and b.dtype == torch.int64
        assert np.array_equal(a, b.numpy())
        assert np.array_equal(encode_sample_inputs(x, 7, enc, start=2),
                              encode_samples(x, 7, enc, start=2).numpy())
        assert set(np.unique(a)) <= {0, 1} and a.sum() > 0


def test_graded_samples_with_nan_are_refused_in_one_line():
    x = torch.tensor([[0.2, float("nan")]])
    for fn in (encode_inputs, encode_sample_inputs):
        with pytest.raises(DataError, match="NaN") as info:
            fn(x, 3, {"kind": "direct", "bits": 8})
        assert "\n" not in str(info.value)
    assert encode_inputs(x, 3, {"kind": "rate"}).dtype == np.uint8  # a draw is 0 or 1 anyway


# ------------------------------------------------------------- the simulator on every family
def test_encoded_rasters_simulate_like_int64_on_loihi_graphs():
    g = torch.Generator().manual_seed(1)
    for graph in (residual_dense(5, 2), residual_conv(6, 2), recurrent_dense(7, 2)):
        x = torch.rand((3, *graph.input_shape), generator=g)
        raster = encode_inputs(x, graph.steps, {"kind": "rate", "seed": 2})
        assert raster.dtype == np.uint8
        res = _narrow_equals_int64(graph, raster)
        assert res.spike_counts.sum() > 0
        _check_loihi(graph, raster.astype(np.int64), res)  # the independent reference
    # input and layer jitter move the narrow raster's spikes as they move the int64 ones
    graph = residual_dense(8, 1)
    raster = encode_inputs(torch.rand((3, 9), generator=g), graph.steps, {"kind": "rate"})
    _narrow_equals_int64(graph, raster, jitter={"input": 2, "layers": 1})


def test_graded_rasters_simulate_like_int64_on_loihi2():
    """8-bit (uint8), 12-bit (int16) and 16-bit (int32) graded events on loihi2, whose input
    takes 24-bit payloads: the simulator keeps the narrow raster and widens every product."""
    g = torch.Generator().manual_seed(2)
    for bits in (8, 12, 16):
        graph = recurrent_dense(31, 2, profile="loihi2", graded=True)
        graph.encoding = {"kind": "direct", "bits": bits}
        x = torch.rand((4, *graph.input_shape), generator=g)
        x[0] = 1.0  # the largest events
        raster = encode_inputs(x, graph.steps, graph.encoding)
        assert raster.dtype == event_dtype(graph.encoding) and raster.max() == 2**bits - 1
        _narrow_equals_int64(graph, raster)
        res = Simulator(graph).run(raster, extra_steps=3, record=("spikes", "u", "v"))
        _check_loihi(graph, raster.astype(np.int64), res)


def test_encoded_rasters_simulate_like_int64_on_xylo_speck_and_conv_pool():
    rng = np.random.default_rng(3)
    g = torch.Generator().manual_seed(3)
    xylo = recurrent_xylo(41)
    x = torch.rand((4, 5), generator=g)
    x[0, :2] = 1.0
    counts = encode_inputs(x, xylo.steps, {"kind": "direct", "bits": 4})  # event counts 0..15
    assert counts.dtype == np.uint8 and counts.max() == 15
    _narrow_equals_int64(xylo, counts)

    def group(shape, thr):
        return NeuronGroup(shape, current_decay=4096, voltage_decay=0, threshold=thr,
                           bias=np.zeros(shape[0], np.int64), reset="subtract")

    speck = DeployGraph(profile="speck2f", family="speck", input_shape=(2, 8, 8), layers=[
        Conv2d(rng.integers(-6, 7, (4, 2, 3, 3)), group((4, 8, 8), 3), padding=(1, 1)),
        SumPool2d((2, 2), group((4, 4, 4), 1), stride=(2, 2)),
        Flatten(),
        Dense(rng.integers(-6, 7, (3, 64)), group((3,), 4)),
    ], steps=6, readout={"kind": "spike_count"})
    spikes = encode_inputs(torch.rand((3, 2, 8, 8), generator=g), 6, {"kind": "rate"})
    res = _narrow_equals_int64(speck, spikes)
    assert res.spike_counts[:, 0].sum() > 0

    def loihi_group(shape, thr):
        return NeuronGroup(shape, current_decay=1024, voltage_decay=128, threshold=thr,
                           bias=np.zeros(int(np.prod(shape)), np.int64))

    conv = DeployGraph("loihi", "loihi", (1, 10, 10), [
        Conv2d(rng.integers(-128, 128, (4, 1, 3, 3)), loihi_group((4, 10, 10), 100),
               padding=(1, 1)),
        SumPool2d((2, 2), loihi_group((4, 5, 5), 1)),
        Flatten(),
        Dense(rng.integers(-128, 128, (5, 100)), loihi_group((5,), 300)),
    ], steps=12)
    res = _narrow_equals_int64(conv, encode_inputs(torch.rand((3, 1, 10, 10), generator=g), 12,
                                                   {"kind": "rate"}))
    assert res.spike_counts[:, 1].sum() > 0


# --------------------------------------------------------------- dtype limits, large weights
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bits=hst.sampled_from([8, 15, 16]), seed=hst.integers(0, 2**31 - 1),
       near=hst.lists(hst.integers(0, 3), min_size=1, max_size=4), conv=hst.booleans())
def test_events_at_the_dtype_limit_with_large_weights(bits, seed, near, conv):
    """Events ``2**bits - 1 - k`` (255, 254, ...; 32767, ...; 65535, ...) into weights at the int8
    extremes and beyond: the narrow raster's results are the int64 raster's and the independent
    reference's (including the accumulator wraps such inputs cause)."""
    rng = np.random.default_rng(seed)
    hi = 2**bits - 1
    top = np.array([hi - k for k in near])

    def group(shape, thr):
        return NeuronGroup(shape, current_decay=int(rng.integers(0, 4097)),
                           voltage_decay=int(rng.integers(0, 4097)), threshold=thr,
                           bias=np.zeros(int(np.prod(shape)), np.int64))

    w = lambda *shape: rng.choice(np.array([-128, 127, -2**12, 2**12 - 1, 1, 0]), shape)  # noqa: E731
    if conv:
        layers = [Conv2d(w(3, 2, 3, 3), group((3, 4, 4), 10**5), padding=(1, 1)), Flatten(),
                  Dense(w(2, 48), group((2,), 10**5))]
        shape = (2, 4, 4)
    else:
        layers = [Dense(w(4, 5), group((4,), 10**5)), Dense(w(2, 4), group((2,), 10**5))]
        shape = (5,)
    graph = DeployGraph("loihi2", "loihi", shape, layers, steps=4,
                        encoding={"kind": "direct", "bits": bits})
    events = rng.choice(np.concatenate([top, [0]]), (2, 4, *shape))
    raster = events.astype(event_dtype(graph.encoding))
    assert np.array_equal(raster, events)  # exact in its dtype
    _narrow_equals_int64(graph, raster, extra_steps=1)
    res = Simulator(graph).run(raster, extra_steps=2, record=("spikes", "u", "v"))
    _check_loihi(graph, events, res)


def test_narrow_signed_rasters_with_negative_values_are_refused():
    """int8 -1 is 255 and int16 -1 is 65535 when seen as unsigned, valid payloads on loihi2: the
    simulator sees their sign all the same."""
    graph = recurrent_dense(3, 1, profile="loihi2", graded=True)
    x = np.zeros((1, graph.steps, *graph.input_shape), np.int64)
    x[0, 2, 1] = 7
    ok = Simulator(graph).run(x)
    for dtype in (np.int8, np.int16, np.int32):
        assert_same_results(Simulator(graph).run(x.astype(dtype)), ok)
        bad = x.astype(dtype)
        bad[0, 3, 0] = -1
        with pytest.raises(DataError, match="value -1"):
            Simulator(graph).run(bad)
    binary = residual_dense(1, 1)
    spikes = np.zeros((1, 4, 9), np.int8)
    spikes[0, 1, 2] = -1
    with pytest.raises(DataError, match="value -1"):
        Simulator(binary).run(spikes)


# ------------------------------------------------------------------- fine-tuning's forward
@pytest.mark.parametrize("encoding", [{"kind": "direct", "bits": 8}, {"kind": "rate", "seed": 1}])
def test_fakequant_forward_takes_the_encoders_raster(encoding):
    """The fake-quant forward (the fine-tuning shadow and its exact integers) on the encoder's
    raster equals its own int64 events, read-out and every record, and the simulator on the
    lowered graph predicts what it predicts."""
    from neurodeploy.data import load_dataset
    from neurodeploy.lower.lowering import graph_from_fakequant
    from neurodeploy.models import ModelSpec, build_model
    from neurodeploy.quantize.fakequant import fake_quantize

    digits = load_dataset("digits")
    torch.manual_seed(0)
    spec = ModelSpec(arch="mlp", input_shape=(1, 8, 8), hidden=[16], steps=4, encoding=encoding,
                     neuron={"threshold": 0.3})
    fq = fake_quantize(build_model(spec).eval(), "loihi2", digits.x_train[:100])
    x = digits.x_test[:12]
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    narrow = encode_inputs(x, 4, encoding, gen())
    wide = encode_integers(x, 4, encoding, gen())
    assert narrow.dtype == np.uint8 and np.array_equal(narrow, wide.numpy())
    with torch.no_grad():
        a, rec_a = fq.run(torch.from_numpy(narrow), record=True)
        b, rec_b = fq.run(wide, record=True)
    assert torch.equal(a, b)
    for ra, rb in zip(rec_a, rec_b, strict=True):
        assert ra.keys() == rb.keys() and all(torch.equal(ra[k], rb[k]) for k in ra)
    graph = graph_from_fakequant(fq)
    sim = Simulator(graph)
    res = sim.run(narrow, extra_steps=sim.latency)
    assert np.array_equal(res.predictions, a.argmax(1).numpy())


# ------------------------------------------------------------------ temporal tasks, the bench
def test_event_samples_reach_the_simulator_as_they_are():
    graph = recurrent_dense(9, 1, profile="loihi2", graded=True)
    graph.encoding = {"kind": "direct", "bits": 4}
    rng = np.random.default_rng(9)
    events = torch.from_numpy(_inputs(rng, graph, batch=5, hi=15, p=0.7).astype(np.float32))
    y = torch.arange(5) % 3
    figs = simulate_graph(graph, events, y, progress=False)
    sim = Simulator(graph)
    direct = sim.run(events.numpy().astype(np.int64), extra_steps=sim.latency)
    assert np.array_equal(figs["predictions"], direct.predictions)
    events[1, 2, 0] = 2.5
    with pytest.raises(DataError, match="integers"):
        simulate_graph(graph, events, y, progress=False)


def test_bench_vs_lava_feeds_the_encoders_raster():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_vs_lava.py"
    spec = importlib.util.spec_from_file_location("bench_vs_lava", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    raster = bench.make_inputs(0, 4, 20, 784)
    assert raster.dtype == event_dtype({"kind": "rate"}) == np.uint8
    assert 0.05 < raster.mean() < 0.15  # Bernoulli(0.1)
    graph = bench.build_graph(0, 20)
    assert np.array_equal(bench.simulate(graph, raster),
                          bench.simulate(graph, bench.make_inputs(0, 4, 20, 784, dtype="int64")))
