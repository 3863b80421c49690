"""The batched simulator against independent per-sample, step-by-step reference loops."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from neurodeploy.errors import ConfigError, DataError, FormatError, UnsupportedError
from neurodeploy.hardware import load_profile
from neurodeploy.lower.graph import Conv2d, Dense, DeployGraph, Flatten, NeuronGroup, SumPool2d
from neurodeploy.sim import Simulator, simulate_accuracy, threads
from tests.sim_results import assert_same_results

M = 1 << 23


# ---------------------------------------------------------------- reference: Loihi
def _rtz(x: int) -> int:
    return -((-x) // 4096) if x < 0 else x // 4096


def _shift(x: int, e: int) -> int:
    return x * (2**e) if e >= 0 else x // (2 ** -e)


def _ref_conv(w, s, stride, pad, groups):
    o_n, cg, kh, kw = w.shape
    c, h, wd = s.shape
    ho = (h + 2 * pad[0] - kh) // stride[0] + 1
    wo = (wd + 2 * pad[1] - kw) // stride[1] + 1
    og = o_n // groups
    out = np.zeros((o_n, ho, wo), dtype=object)
    for o in range(o_n):
        g = o // og
        for yo in range(ho):
            for xo in range(wo):
                acc = 0
                for ci in range(cg):
                    for i in range(kh):
                        for j in range(kw):
                            y, x = yo * stride[0] - pad[0] + i, xo * stride[1] - pad[1] + j
                            if 0 <= y < h and 0 <= x < wd:
                                acc += int(w[o, ci, i, j]) * int(s[g * cg + ci, y, x])
                out[o, yo, xo] = acc
    return out


def _ref_pool(s, kernel, stride):
    c, h, w = s.shape
    stride = stride or kernel
    ho, wo = (h - kernel[0]) // stride[0] + 1, (w - kernel[1]) // stride[1] + 1
    out = np.zeros((c, ho, wo), dtype=object)
    for ch in range(c):
        for yo in range(ho):
            for xo in range(wo):
                out[ch, yo, xo] = int(s[ch, yo * stride[0]:yo * stride[0] + kernel[0],
                                         xo * stride[1]:xo * stride[1] + kernel[1]].sum())
    return out


def _wrap24(x: int) -> int:
    return ((x + M) % (1 << 24)) - M


def _int32(x: int) -> int:
    """Lava keeps u, v and the Dense output in int32 arrays: sums wrap at 2**31."""
    return ((x + 2**31) % 2**32) - 2**31


def loihi_reference(graph, x):
    """One sample, step-major (docs/loihi.md §2): for t, for layer: a <- buf; buf <- syn(s); neuron."""
    steps = x.shape[0]
    st = []
    for layer in graph.layers:
        if layer.kind == "flatten":
            st.append(None)
            continue
        g = layer.neurons
        n = int(np.prod(g.shape))
        st.append({"u": [0] * n, "v": [int(g.initial_v)] * n, "buf": deque([None]),
                   "spikes": [], "uw": 0, "vs": 0, "aw": 0})
    for t in range(steps):
        s = np.asarray(x[t], dtype=object)
        for layer, state in zip(graph.layers, st, strict=True):
            if layer.kind == "flatten":
                s = s.reshape(-1)
                continue
            if layer.kind == "dense":
                acc = []
                for row in layer.weight:
                    val = _shift(int(sum(int(w) * int(v) for w, v in zip(row, s, strict=True))),
                                 int(layer.weight_exp))
                    state["aw"] += _int32(val) != val
                    acc.append(_int32(val))
                shape = (len(acc),)
            else:
                if layer.kind == "conv":
                    raw = _ref_conv(layer.weight, s, layer.stride, layer.padding, layer.groups)
                else:
                    raw = _ref_pool(s, layer.kernel, layer.stride)
                shape = raw.shape
                acc = []
                for val in raw.reshape(-1):
                    wrapped = _wrap24(int(val))
                    state["aw"] += wrapped != val
                    acc.append(wrapped)
            state["buf"].append(acc)
            a = state["buf"].popleft()
            g = layer.neurons
            bias = np.broadcast_to(np.asarray(g.bias).reshape(
                (-1,) + (1,) * (len(shape) - 1) if np.asarray(g.bias).size != int(np.prod(shape))
                else shape), shape).reshape(-1)
            out = []
            for k in range(len(state["u"])):
                u_sum = _rtz(state["u"][k] * (4096 - g.current_decay)) + \
                    (0 if a is None else a[k]) * 64
                u = _int32(u_sum)
                if u > M:
                    u -= 2 * M
                elif u <= -M:
                    u += 2 * M
                state["uw"] += u != u_sum
                v_sum = _rtz(state["v"][k] * (4096 - g.voltage_decay)) + u + \
                    _shift(int(bias[k]), g.bias_exp)
                v = max(-(M - 1), min(M - 1, _int32(v_sum)))
                state["vs"] += v != v_sum
                spike = 1 if (g.spiking and v > g.threshold * 64) else 0
                if spike:
                    v = 0 if g.reset == "zero" else v - g.threshold * 64
                state["u"][k], state["v"][k] = u, v
                out.append(spike)
            state["spikes"].append(out)
            s = np.asarray(out, dtype=object).reshape(shape)
    return [s_ for s_ in st if s_ is not None]


# ---------------------------------------------------------------- reference: Xylo
def _clamp16(x: int) -> int:
    return max(-32768, min(32767, x))


def _dstep(x: int, dash: int) -> int:
    d = x >> dash
    if d == 0:
        d = (x > 0) - (x < 0)
    return d


def xylo_reference(graph, x, max_hidden=31, max_out=1):
    """One sample, xylosim's order: inputs of step t act at t, hidden events one step later."""
    steps = x.shape[0]
    dense = [layer for layer in graph.layers if layer.kind == "dense"]
    st = [{"i": [0] * lay.weight.shape[0], "v": [int(lay.neurons.initial_v)] *
           lay.weight.shape[0], "prev": [0] * lay.weight.shape[1], "spikes": [], "us": 0,
           "vs": 0} for lay in dense]
    for t in range(steps):
        s = [int(v) for v in np.asarray(x[t]).reshape(-1)]
        for li, (layer, state) in enumerate(zip(dense, st, strict=True)):
            src = s if li == 0 else state["prev"]  # input: same step; hidden: previous step
            if li > 0:
                state["prev"] = s
            g = layer.neurons
            last = li == len(dense) - 1
            out = []
            for k, row in enumerate(layer.weight):
                i = i_raw = state["i"][k]
                for w, n in zip(row, src, strict=True):  # xylosim: one saturating add per event
                    for _ in range(n):
                        i_raw += int(w) << int(layer.weight_exp)
                        i = _clamp16(i + (int(w) << int(layer.weight_exp)))
                state["us"] += i != i_raw
                i -= _dstep(i, g.current_decay)
                v = state["v"][k]
                d1 = (-_dstep(v, g.voltage_decay) + 32768) % 65536 - 32768 + i  # int16 wrap
                d2 = _clamp16(d1) + int(np.asarray(g.bias).reshape(-1)[k])
                v_raw = v + _clamp16(d2)
                sat = (d1 != _clamp16(d1)) or (d2 != _clamp16(d2)) or (v_raw != _clamp16(v_raw))
                state["vs"] += sat
                v = _clamp16(v_raw)
                n = 0
                limit = max_out if last else max_hidden
                while g.spiking and v >= g.threshold and n < limit:
                    n += 1
                    v -= g.threshold
                state["i"][k], state["v"][k] = i, v
                out.append(n)
            state["spikes"].append(out)
            s = out
    return st


# ---------------------------------------------------------------- graph builders
def _group(shape, rng, *, spiking=True, reset="zero", thr=(50, 400), init=0):
    n = int(np.prod(shape))
    return NeuronGroup(
        tuple(shape),
        current_decay=int(rng.integers(0, 4097)), voltage_decay=int(rng.integers(0, 4097)),
        threshold=int(rng.integers(*thr)), bias=rng.integers(-30, 30, n).astype(np.int64),
        bias_exp=int(rng.integers(-3, 7)), spiking=spiking, reset=reset, initial_v=init,
    )


def _random_dense_graph(seed, profile="loihi"):
    rng = np.random.default_rng(seed)
    sizes = [int(rng.integers(5, 12))] + [int(rng.integers(2, 8)) for _ in range(int(
        rng.integers(1, 4)))]
    layers = []
    for i in range(1, len(sizes)):
        last = i == len(sizes) - 1
        w = rng.integers(-256, 255, (sizes[i], sizes[i - 1]))
        layers.append(Dense(w, _group((sizes[i],), rng, spiking=not (last and seed % 2),
                                      reset=str(rng.choice(["zero", "subtract"])),
                                      init=int(rng.integers(-500, 500))),
                            weight_exp=int(rng.integers(-3, 7)), name=f"d{i}"))
    return DeployGraph(profile, "loihi", (sizes[0],), layers, steps=12)


def _conv_graph(seed):
    rng = np.random.default_rng(seed)
    return DeployGraph("loihi", "loihi", (2, 6, 5), [
        Conv2d(rng.integers(-250, 250, (4, 1, 3, 2)) * 32768, _group((4, 6, 3), rng),
               stride=(1, 2), padding=(1, 1), groups=2, name="c1"),
        SumPool2d((2, 1), _group((4, 3, 3), rng, thr=(0, 3)), name="p1"),
        Flatten(),
        Dense(rng.integers(-100, 100, (3, 36)), _group((3,), rng, spiking=False), name="fc"),
    ], steps=10)


def _check_against_loihi_reference(graph, x, res):
    for b in range(x.shape[0]):
        ref = loihi_reference(graph, x[b])
        for k, (name, state) in enumerate(zip(res.layer_names, ref, strict=True)):
            got = res.rasters[name][b].reshape(x.shape[1], -1)
            assert np.array_equal(got, np.array(state["spikes"], dtype=np.int64)), (name, b)
            assert res.u_overflows[b, k] == state["uw"]
            assert res.v_overflows[b, k] == state["vs"]
            assert res.acc_overflows[b, k] == state["aw"]
        assert res.readout[b].tolist() == [int(v) for v in ref[-1]["v"]] or \
            res.readout_kind != "potential"


# ---------------------------------------------------------------- (d) batched == reference
@pytest.mark.parametrize("seed", range(8))
def test_dense_graphs_match_reference(seed):
    graph = _random_dense_graph(seed)
    rng = np.random.default_rng(100 + seed)
    x = (rng.random((3, 14, *graph.input_shape)) < 0.4).astype(np.int64)
    res = Simulator(graph).run(x, extra_steps=2)
    xp = np.concatenate([x, np.zeros((3, 2, *graph.input_shape), np.int64)], axis=1)
    _check_against_loihi_reference(graph, xp, res)


def test_overflows_are_exercised_and_match():
    rng = np.random.default_rng(7)
    g1 = NeuronGroup((4,), 0, 0, (1 << 17) - 1, np.zeros(4, np.int64))
    g2 = NeuronGroup((2,), 0, 100, 50, np.zeros(2, np.int64), spiking=False)
    graph = DeployGraph("loihi", "loihi", (30,), [
        Dense(np.full((4, 30), 254), g1, weight_exp=6, name="big"),
        Dense(rng.integers(-256, 255, (2, 4)), g2, weight_exp=7, name="ro")], steps=10)
    x = (rng.random((2, 10, 30)) < 0.8).astype(np.int64)
    res = Simulator(graph).run(x)
    assert res.u_overflows[:, 0].sum() > 0 and res.v_overflows[:, 0].sum() > 0
    _check_against_loihi_reference(graph, x, res)


def _fanin300_graph(steps: int) -> DeployGraph:
    """The reference tests' ``fanin300_no_current_decay`` network (docs/lava_reference.md §4)."""
    group = NeuronGroup((3,), 0, 1024, 100_000, np.zeros(3, np.int64))
    return DeployGraph("loihi", "loihi", (300,), [Dense(np.full((3, 300), 255), group,
                                                        weight_exp=3, name="fan")], steps)


def test_u_beyond_int32_matches_lava_and_reference():
    # 300 inputs at w = 255, weight_exp 3, iDecay 0: a = 612,000 from step 2 on, and u gains
    # 64 * a - 2**24 = 22,390,784 per step (single wrap correction): u = 95 * 22,390,784 =
    # 2,127,124,480 after step 96. Step 97: 2,127,124,480 + 39,168,000 = 2,166,292,480 passes
    # 2**31 - 1; int32 gives -2,128,674,816 <= -2**23, + 2**24 = -2,111,897,600, and v
    # saturates at -(2**23 - 1) without a spike: the values Lava was measured to hold there
    # (an int64 simulation had u = 2,149,515,264 and a spike).
    graph = _fanin300_graph(120)
    x = np.ones((1, 120, 300), np.int64)
    for fast in (True, False):
        res = Simulator(graph, fast=fast).run(x, record=("spikes", "u", "v"))
        u, v = res.states["u"]["fan"][0], res.states["v"]["fan"][0]
        assert u[96].tolist() == [-2_111_897_600] * 3
        assert v[96].tolist() == [-(M - 1)] * 3 and res.rasters["fan"][0, 96].tolist() == [0] * 3
        assert u[95].tolist() == [2_127_124_480] * 3
        assert res.u_overflows[0, 0] == 3 * 119  # a correction per neuron and step from step 2
        _check_against_loihi_reference(graph, x, res)


@pytest.mark.parametrize("seed", range(6))
def test_fast_kernels_equal_the_step_path(seed, monkeypatch):
    """Whole-window kernels (whole window; small chunks on threads) and the per-step path: the
    same results."""
    import neurodeploy.sim.simulator as simulator

    graph = _conv_graph(seed) if seed % 3 == 2 else _random_dense_graph(seed, "loihi2")
    rng = np.random.default_rng(400 + seed)
    x = (rng.random((5, 11, *graph.input_shape)) < 0.4).astype(np.int64)
    if seed == 1:
        x = x.astype(bool)
    if graph.profile == "loihi2" and seed % 2:
        x = x * rng.integers(0, 1 << 12, x.shape)  # graded payloads
    rec = ("spikes", "u", "v", "input")
    slow = Simulator(graph, fast=False).run(x, extra_steps=2, record=rec)
    fast = Simulator(graph).run(x, extra_steps=2, record=rec)
    assert any(s.scan for s in Simulator(graph)._stages)
    assert_same_results(fast, slow)
    # small chunks of steps, synapses on parallel threads, several groups of chunks
    monkeypatch.setattr(threads, "cpus", lambda: 3)
    monkeypatch.setattr(simulator, "_PARALLEL_ELEMENTS", 1)
    monkeypatch.setattr(simulator, "_GROUP_ELEMENTS", 16)
    monkeypatch.setattr(simulator, "_PLAN_CHUNK_ELEMENTS", 64)
    monkeypatch.setattr(simulator, "_CHUNK_ELEMENTS", 64)
    assert_same_results(Simulator(graph).run(x, extra_steps=2, record=rec), slow)
    assert_same_results(Simulator(graph, blas_threads=None).run(x, extra_steps=2, record=rec), slow)


@pytest.mark.parametrize("seed", range(3))
def test_conv_graphs_match_reference(seed):
    graph = _conv_graph(seed)
    rng = np.random.default_rng(200 + seed)
    x = (rng.random((2, 9, 2, 6, 5)) < 0.5).astype(np.int64)
    res = Simulator(graph).run(x)
    assert res.acc_overflows[:, 0].sum() > 0  # the x32768 weights make the conv output wrap
    _check_against_loihi_reference(graph, x, res)


@pytest.mark.parametrize("seed", range(5))
def test_xylo_graphs_match_reference(seed):
    rng = np.random.default_rng(300 + seed)
    sizes = [int(rng.integers(4, 16)), int(rng.integers(3, 10)), int(rng.integers(3, 10)),
             int(rng.integers(2, 8))]
    layers = []
    for i in range(1, 4):
        n = sizes[i]
        g = NeuronGroup((n,), int(rng.integers(0, 16)), int(rng.integers(0, 16)),
                        int(rng.integers(1, 300)), rng.integers(-50, 50, n).astype(np.int64),
                        reset="subtract", initial_v=int(rng.integers(-100, 100)),
                        spiking=not (i == 3 and seed == 4))
        layers.append(Dense(rng.integers(-128, 128, (n, sizes[i - 1])), g,
                            weight_exp=int(rng.integers(0, 6)), name=f"x{i}"))
    graph = DeployGraph("xylo", "xylo", (sizes[0],), layers, steps=15)
    x = rng.integers(0, 16, (3, 15, sizes[0])) * (rng.random((3, 15, sizes[0])) < 0.5)
    res = Simulator(graph).run(x, record=("spikes", "v"))
    for b in range(3):
        ref = xylo_reference(graph, x[b])
        for k, (name, state) in enumerate(zip(res.layer_names, ref, strict=True)):
            assert np.array_equal(res.rasters[name][b], np.array(state["spikes"])), (name, b)
            assert res.u_overflows[b, k] == state["us"]
            assert res.v_overflows[b, k] == state["vs"]
        assert res.readout[b].tolist() == ref[-1]["v"]
        assert res.states["v"][res.layer_names[-1]][b, -1].tolist() == ref[-1]["v"]


# ---------------------------------------------------------------- timing
def _chain(profile, family, n_layers, **group):
    layers = [Dense(np.array([[10]]), NeuronGroup((1,), bias=np.zeros(1, np.int64), **group),
                    name=f"l{i}") for i in range(n_layers)]
    return DeployGraph(profile, family, (1,), layers, steps=8)


def test_three_layer_chain_lags_by_three_steps():
    graph = _chain("loihi", "loihi", 3, current_decay=4096, voltage_decay=4096, threshold=5)
    x = np.zeros((1, 8, 1), np.int64)
    x[0, 2, 0] = 1
    res = Simulator(graph).run(x, extra_steps=2)
    for layer_idx, name in enumerate(res.layer_names, start=1):
        times = np.nonzero(res.rasters[name][0, :, 0])[0].tolist()
        assert times == [2 + layer_idx]  # layer L fires L steps after the input spike
    assert Simulator(graph).latency == 3


def test_xylo_chain_timing():
    graph = _chain("xylo", "xylo", 3, current_decay=1, voltage_decay=0, threshold=3,
                   reset="subtract")
    x = np.zeros((1, 8, 1), np.int64)
    x[0, 2, 0] = 1
    res = Simulator(graph).run(x)
    # input events act in the same step; every later synapse layer adds one step
    assert [np.nonzero(res.rasters[n][0, :, 0])[0].tolist()[0] for n in res.layer_names] == \
        [2, 3, 4]


# ---------------------------------------------------------------- counts, energy, read-out
def test_synops_energy_and_counts():
    graph = _conv_graph(0)
    rng = np.random.default_rng(9)
    x = (rng.random((2, 6, 2, 6, 5)) < 0.5).astype(np.int64)
    res = Simulator(graph).run(x, record=("spikes", "input"))
    # brute-force SynOps of the conv: each input spike times the conv outputs it reaches
    w = graph.layers[0]
    reach = np.zeros((2, 6, 5), int)
    for o in range(4):
        g = o // 2
        for yo in range(6):
            for xo in range(3):
                for i in range(3):
                    for j in range(2):
                        y, xx = yo - 1 + i, 2 * xo - 1 + j
                        if 0 <= y < 6 and 0 <= xx < 5:
                            reach[g, y, xx] += 1
    assert w.groups == 2
    for b in range(2):
        assert res.synops[b, 0] == int((x[b].sum(axis=0) * reach).sum())
        pool_in = res.rasters["c1"][b].sum(axis=0)
        assert res.synops[b, 1] == int(pool_in.sum())  # 2x1 windows, stride 2x1: fan-out 1
        assert res.synops[b, 2] == int(res.rasters["p1"][b].sum()) * 3
    assert res.input_spikes.tolist() == x.reshape(2, -1).sum(axis=1).tolist()
    assert res.neuron_updates.tolist() == [72 * 6, 36 * 6, 3 * 6]
    e = load_profile("loihi").energy
    expect = (res.synops.sum(axis=1) * e.synaptic_op_pj + res.neuron_updates.sum() *
              e.neuron_update_pj + res.spike_counts.sum(axis=1) * e.spike_pj) * 1e-12
    assert np.allclose(res.energy_j, expect, rtol=1e-12)
    spn = res.spikes_per_neuron()
    assert spn["c1"] == pytest.approx(res.rasters["c1"].sum() / (72 * 2))
    assert res.spike_counts[:, 2].sum() == 0 and res.summary()["samples"] == 2
    assert [a.shape for a in res.neuron_spike_counts] == [(2, 4, 6, 3), (2, 4, 3, 3), (2, 3)]


def test_graded_inputs():
    rng = np.random.default_rng(4)
    group = NeuronGroup((3,), 0, 0, 10**5, np.zeros(3, np.int64))
    graph = DeployGraph("loihi2", "loihi", (5,), [Dense(rng.integers(-9, 9, (3, 5)), group)], 4,
                        encoding={"kind": "direct", "bits": 8})
    x = rng.integers(0, 256, (2, 4, 5))
    res = Simulator(graph).run(x, record=("spikes", "u"))
    assert res.synops[:, 0].tolist() == (np.count_nonzero(x.reshape(2, -1), axis=1) * 3).tolist()
    # the payload multiplies the weights: u at step t (no decay) = 64 * sum_{t'<t} W x[t']
    acc = np.einsum("oi,bti->bto", graph.layers[0].weight, x)
    assert np.array_equal(res.states["u"]["dense0"][:, 1:], 64 * np.cumsum(acc, axis=1)[:, :-1])
    with pytest.raises(DataError, match="binary spikes"):
        Simulator(graph, "loihi").run(x)
    xy = DeployGraph("xylo", "xylo", (5,), [Dense(rng.integers(-9, 9, (3, 5)), NeuronGroup(
        (3,), 1, 1, 100, np.zeros(3, np.int64), reset="subtract"))], 4)
    counts = rng.integers(0, 16, (2, 4, 5))
    res = Simulator(xy).run(counts)
    assert res.synops[:, 0].tolist() == (counts.reshape(2, -1).sum(axis=1) * 3).tolist()
    with pytest.raises(DataError, match="0..15"):
        Simulator(xy).run(counts + 1)


def test_readouts_and_ties():
    zero = DeployGraph("loihi", "loihi", (3,), [Dense(np.zeros((4, 3), np.int64), NeuronGroup(
        (4,), 0, 0, 10, np.zeros(4, np.int64), spiking=False))], 5)
    res = Simulator(zero).run(np.ones((2, 5, 3), np.int64))
    assert res.readout.tolist() == [[0] * 4] * 2 and res.predictions.tolist() == [0, 0]
    g = NeuronGroup((3,), 4096, 4096, 1, np.zeros(3, np.int64))
    counting = DeployGraph("loihi", "loihi", (3,), [Dense(np.diag([5, 5, 5]), g)], 5,
                           readout={"kind": "spike_count"})
    x = np.zeros((2, 5, 3), np.int64)
    x[0, :, 2] = 1
    x[0, :2, 1] = 1
    x[1, :2, 0] = 1
    x[1, :2, 1] = 1  # tie between neurons 0 and 1
    res = Simulator(counting).run(x)
    assert res.readout.tolist() == [[0, 2, 4], [2, 2, 0]]
    assert res.predictions.tolist() == [2, 0]
    assert res.accuracy([2, 1]) == 0.5


def test_record_states_and_extra_steps():
    graph = _random_dense_graph(3)
    rng = np.random.default_rng(5)
    x = (rng.random((2, 6, *graph.input_shape)) < 0.5).astype(np.int64)
    sim = Simulator(graph)
    a = sim.run(x, extra_steps=3, record=("spikes", "u", "v", "input"))
    pad = np.concatenate([x, np.zeros((2, 3, *graph.input_shape), np.int64)], axis=1)
    b = sim.run(pad)
    assert a.steps == 9 and a.input_steps == 6 and b.steps == 9
    assert np.array_equal(a.readout, b.readout)
    assert all(np.array_equal(a.rasters[n], b.rasters[n]) for n in a.layer_names)
    last = a.layer_names[-1]
    assert a.states["v"][last].shape == (2, 9, *graph.layers[-1].neurons.shape)
    assert np.array_equal(a.states["v"][last][:, -1], a.readout)
    assert np.array_equal(a.rasters["input"], pad.astype(a.rasters["input"].dtype))
    assert sim.run(x, record=()).rasters == {}


def test_jitter_in_simulation():
    graph = _random_dense_graph(4)
    rng = np.random.default_rng(6)
    x = (rng.random((3, 20, *graph.input_shape)) < 0.3).astype(np.int64)
    sim = Simulator(graph)
    plain = sim.run(x)
    j1 = sim.run(x, jitter=2, seed=1)
    j2 = sim.run(x, jitter=2, seed=1)
    j3 = sim.run(x, jitter=2, seed=2)
    assert np.array_equal(j1.readout, j2.readout)
    assert all(np.array_equal(j1.rasters[n], j2.rasters[n]) for n in j1.layer_names)
    assert not all(np.array_equal(j1.rasters[n], j3.rasters[n]) for n in j1.layer_names)
    zero = sim.run(x, jitter={"input": 0, "layers": 0})
    assert np.array_equal(zero.readout, plain.readout)
    layers_only = sim.run(x, jitter={"layers": 3}, seed=3, record=("spikes", "input"))
    first = layers_only.layer_names[0]
    assert np.array_equal(layers_only.rasters[first], plain.rasters[first])
    inp = sim.run(x, jitter={"input": 3}, seed=3, record=("input",))
    assert inp.input_spikes.sum() <= x.sum()
    assert not np.array_equal(inp.rasters["input"], x)


def test_simulate_accuracy_batches():
    graph = _random_dense_graph(5)
    rng = np.random.default_rng(8)
    x = (rng.random((7, 10, *graph.input_shape)) < 0.4).astype(np.int64)
    labels = rng.integers(0, graph.layers[-1].weight.shape[0], 7)
    whole = Simulator(graph).run(x)
    r2 = simulate_accuracy(graph, x, labels, batch_size=2, progress=False)
    r7 = simulate_accuracy(graph, lambda a, b: x[a:b], labels, batch_size=7, progress=False)
    assert r2["predictions"].tolist() == whole.predictions.tolist()
    assert r2["accuracy"] == pytest.approx(whole.accuracy(labels))
    assert r7["correct"] == r2["correct"] and r2["samples"] == 7
    assert r2["synops_per_sample"] == pytest.approx(whole.synops.sum() / 7)
    assert r2["energy_per_sample_j"] == pytest.approx(whole.energy_j.mean())
    assert r2["spikes_per_neuron"] == pytest.approx(whole.spikes_per_neuron())
    with pytest.raises(DataError):
        simulate_accuracy(graph, x, labels[:5], progress=False)


def test_input_dtypes_give_the_same_result(monkeypatch):
    import neurodeploy.sim.simulator as simulator

    monkeypatch.setattr(simulator, "_CHECK_SEGMENT", 7)  # many segments on parallel threads
    monkeypatch.setattr(threads, "cpus", lambda: 2)
    graph = _random_dense_graph(2)
    rng = np.random.default_rng(11)
    x = (rng.random((3, 40, *graph.input_shape)) < 0.4).astype(np.int64)
    ref = Simulator(graph, fast=False).run(x)
    for dtype in (np.int64, np.int32, np.uint8, np.uint16, bool):
        assert_same_results(Simulator(graph).run(x.astype(dtype)), ref)
    strided = x.transpose(1, 0, 2).copy().transpose(1, 0, 2)  # not C-contiguous
    assert not strided.flags.c_contiguous
    assert_same_results(Simulator(graph).run(strided), ref)
    for bad, where in ((2, -1), (-1, -1), (-1, 0), (256, 5)):
        y = x.copy()
        y.reshape(-1)[where] = bad
        with pytest.raises(DataError, match=f"value {bad}"):
            Simulator(graph).run(y)


def test_parallel_map_keeps_order_and_raises(monkeypatch):
    import threading
    import time

    monkeypatch.setattr(threads, "cpus", lambda: 2)
    names = set()

    def work(k):
        names.add(threading.current_thread().name)
        time.sleep(0.001 * (k % 3))
        return k * k

    assert threads.parallel_map(work, range(10)) == [k * k for k in range(10)]
    assert len(names) == 2 and all(n.startswith("neurodeploy-sim") for n in names)
    assert threads.parallel_map(work, [3], threads=4) == [9]
    assert threads.parallel_map(work, range(3), threads=1) == [0, 1, 4]

    def fail(k):
        if k == 4:
            raise ValueError("item 4")
        return k

    with pytest.raises(ValueError, match="item 4"):
        threads.parallel_map(fail, range(8))


def test_blas_runs_single_threaded_while_simulating(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    seen = []
    run_stage = Simulator._run_stage

    def spy(self, *args, **kwargs):
        seen.append([i["num_threads"] for i in threadpoolctl.threadpool_info()
                     if i["user_api"] == "blas"])
        return run_stage(self, *args, **kwargs)

    monkeypatch.setattr(Simulator, "_run_stage", spy)
    graph = _random_dense_graph(0)
    x = np.zeros((1, 3, *graph.input_shape), np.int64)
    Simulator(graph).run(x)
    assert seen and all(threads and threads == [1] * len(threads) for threads in seen)


# ---------------------------------------------------------------- errors
def test_input_and_graph_errors():
    graph = _random_dense_graph(0)
    sim = Simulator(graph)
    n = graph.input_shape[0]
    with pytest.raises(DataError, match="shape"):
        sim.run(np.zeros((2, 3, n + 1), np.int64))
    with pytest.raises(DataError, match="value 2"):
        sim.run(np.full((1, 3, n), 2))
    with pytest.raises(DataError, match="value -1"):
        sim.run(np.full((1, 3, n), -1))
    with pytest.raises(DataError, match="integers"):
        sim.run(np.full((1, 3, n), 0.5))
    assert sim.run(np.ones((1, 3, n), bool)).steps == 3
    with pytest.raises(ConfigError, match="record"):
        sim.run(np.zeros((1, 3, n), np.int64), record=("spikez",))
    with pytest.raises(ConfigError, match="blas_threads"):
        Simulator(graph, blas_threads=0)
    with pytest.raises(ConfigError, match="extra_steps"):
        sim.run(np.zeros((1, 3, n), np.int64), extra_steps=-1)
    xconv = _conv_graph(0)
    xconv.family = xconv.profile = "xylo"
    with pytest.raises(UnsupportedError, match="not supported by profile xylo"):
        Simulator(xconv)
    with pytest.raises(ConfigError, match="family"):
        Simulator(graph, "xylo")
    bad = _conv_graph(0)
    bad.layers[0].weight_exp = 2
    with pytest.raises(UnsupportedError, match="weight_exp"):
        Simulator(bad)
    bad = _random_dense_graph(1)
    bad.layers[0].weight = bad.layers[0].weight.astype(np.float64)
    with pytest.raises(FormatError, match="integers"):
        Simulator(bad)
    bad = _random_dense_graph(1)
    bad.readout = {"kind": "mean"}
    with pytest.raises(ConfigError, match="read-out"):
        Simulator(bad)
