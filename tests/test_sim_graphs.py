"""The simulator on deployment graphs beyond chains (residual merges, recurrent groups, delays)
against an independent step-major reference written here from the documented equations
(docs/loihi.md §2-§5 for Loihi's CUBA-LIF, Dense and Conv; docs/xylo.md §2 for Xylo), one
sample at a time, with no call into the simulator's or the families' code.

Semantics under test (DESIGN of ``DeployGraph.inputs``): group ``k`` at step ``t`` receives the
sum over its edges ``e`` of ``syn_e(s_source[t - delay_e])`` (nothing before step ``delay_e``),
then its neuron update; Xylo delivers the edges one after the other with a saturating add per
event (inputs, then hidden neurons by index).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

from neurodeploy.errors import ConfigError, FormatError, UnsupportedError
from neurodeploy.families import rules as design_rules
from neurodeploy.hardware import check_fit, fit_report, load_profile
from neurodeploy.lower.graph import Conv2d, Dense, DeployGraph, Flatten, NeuronGroup, Projection
from neurodeploy.sim import Simulator

M = 1 << 23


# ------------------------------------------------------------------------ reference: Loihi
def _rtz(x: np.ndarray) -> np.ndarray:
    """sign(x) * floor(|x| / 4096) (docs/loihi.md §3)."""
    return np.sign(x) * (np.abs(x) // 4096)


def _floor_shift(x: np.ndarray, e: int) -> np.ndarray:
    return x * (1 << e) if e >= 0 else x // (1 << -e)


def _int32(x: np.ndarray) -> np.ndarray:
    return ((x + 2**31) % 2**32) - 2**31


def _conv_ref(w: np.ndarray, s: np.ndarray, stride, pad, groups) -> np.ndarray:
    """Direct convolution of one sample ``s`` ``(C, H, W)`` (torch layout, zero padding)."""
    o_n, cg, kh, kw = w.shape
    c, h, wd = s.shape
    ho = (h + 2 * pad[0] - kh) // stride[0] + 1
    wo = (wd + 2 * pad[1] - kw) // stride[1] + 1
    sp = np.zeros((c, h + 2 * pad[0], wd + 2 * pad[1]), np.int64)
    sp[:, pad[0]:pad[0] + h, pad[1]:pad[1] + wd] = s
    out = np.zeros((o_n, ho, wo), np.int64)
    og = o_n // groups
    for o in range(o_n):
        g = o // og
        for yo in range(ho):
            for xo in range(wo):
                win = sp[g * cg:(g + 1) * cg, yo * stride[0]:yo * stride[0] + kh,
                         xo * stride[1]:xo * stride[1] + kw]
                out[o, yo, xo] = int((win * w[o]).sum())
    return out


def _conv_fan_out(w_shape, in_shape, stride, pad, groups) -> np.ndarray:
    """Brute force: neurons each input element of a conv reaches."""
    o_n, cg, kh, kw = w_shape
    c, h, wd = in_shape
    ho = (h + 2 * pad[0] - kh) // stride[0] + 1
    wo = (wd + 2 * pad[1] - kw) // stride[1] + 1
    fan = np.zeros(in_shape, np.int64)
    og = o_n // groups
    for o in range(o_n):
        g = o // og
        for yo in range(ho):
            for xo in range(wo):
                for ci in range(cg):
                    for i in range(kh):
                        for j in range(kw):
                            y, x = yo * stride[0] - pad[0] + i, xo * stride[1] - pad[1] + j
                            if 0 <= y < h and 0 <= x < wd:
                                fan[g * cg + ci, y, x] += 1
    return fan


def _edges(graph, timing):
    """Per neuron layer index: [(source, delay, synapse, kind)], own synapses first."""
    out, prev = {}, -1
    for i, layer in enumerate(graph.layers):
        if layer.kind == "flatten":
            continue
        src = prev if layer.source is None else layer.source
        d = layer.delay if layer.delay is not None else (
            timing["input"] if src == -1 else timing["synapse"])
        out[i] = [(src, d, layer, layer.kind)] + [(p.source, p.delay, p, p.kind)
                                                  for p in layer.extra]
        prev = i
    return out


def _loihi_syn(kind, syn, s: np.ndarray, shape_out) -> tuple[np.ndarray, int]:
    """Synaptic output of one edge for one sample's events ``s`` and its overflow count."""
    if kind == "dense":
        raw = _floor_shift(np.asarray(syn.weight, np.int64) @ s.reshape(-1), int(syn.weight_exp))
        out = _int32(raw)  # Lava's int32 a_out (docs/lava_reference.md §4)
    else:
        raw = _conv_ref(np.asarray(syn.weight, np.int64), s, syn.stride, syn.padding, syn.groups)
        out = ((raw + M) % (1 << 24)) - M  # 24-bit conv wrap (docs/loihi.md §5.3)
    return out.reshape(shape_out), int((out != raw.reshape(out.shape)).sum())


def loihi_graph_reference(graph, x: np.ndarray, steps: int, timing=None) -> dict:
    """One sample ``x`` ``[steps, *input_shape]``, step-major: at step ``t`` every group in order
    takes the edges' outputs due at ``t``, updates (docs/loihi.md §3) and its spikes enter every
    edge that reads it, due ``delay`` steps later."""
    timing = timing or {"input": 1, "synapse": 1}
    edges = _edges(graph, timing)
    st = {}
    for i in edges:
        g = graph.layers[i].neurons
        shape = tuple(g.shape)
        st[i] = {"shape": shape, "u": np.zeros(shape, np.int64),
                 "v": np.full(shape, int(g.initial_v), np.int64), "due": {}, "spikes": [],
                 "us": [], "vs": [], "uw": 0, "vw": 0, "aw": 0, "synops": 0}
    spikes_at = {-1: [np.asarray(x[t], np.int64) for t in range(steps)]}

    def emit(i_src, t):  # spikes of i_src at t enter every edge reading it
        s = spikes_at[i_src][t]
        for k, edge_list in edges.items():
            for src, d, syn, kind in edge_list:
                if src != i_src:
                    continue
                out, wraps = _loihi_syn(kind, syn, s, st[k]["shape"])
                st[k]["aw"] += wraps
                fan = (np.full(s.size, np.asarray(syn.weight).shape[0]) if kind == "dense" else
                       _conv_fan_out(np.asarray(syn.weight).shape, s.shape, syn.stride,
                                     syn.padding, syn.groups).reshape(-1))
                st[k]["synops"] += int(((s.reshape(-1) != 0) * fan).sum())
                if t + d < steps:
                    due = st[k]["due"]
                    due[t + d] = due.get(t + d, 0) + out

    for t in range(steps):
        emit(-1, t)
        for i in edges:
            state, g = st[i], graph.layers[i].neurons
            a = state["due"].pop(t, np.zeros(state["shape"], np.int64))
            bias = np.broadcast_to(np.asarray(g.bias, np.int64).reshape(
                state["shape"] if np.asarray(g.bias).size == np.prod(state["shape"]) else
                (-1,) + (1,) * (len(state["shape"]) - 1)), state["shape"])
            u_sum = _rtz(state["u"] * (4096 - g.current_decay)) + a * 64
            u = _int32(u_sum)
            u = np.where(u > M, u - 2 * M, np.where(u <= -M, u + 2 * M, u))
            state["uw"] += int((u != u_sum).sum())
            v_sum = _rtz(state["v"] * (4096 - g.voltage_decay)) + u + _floor_shift(bias, g.bias_exp)
            v = np.clip(_int32(v_sum), -(M - 1), M - 1)
            state["vw"] += int((v != v_sum).sum())
            s = (v > g.threshold * 64).astype(np.int64) if g.spiking else np.zeros_like(v)
            v = np.where(s > 0, 0 if g.reset == "zero" else v - g.threshold * 64, v)
            state["u"], state["v"] = u, v
            state["spikes"].append(s)
            state["us"].append(u)
            state["vs"].append(v)
            spikes_at.setdefault(i, []).append(s)
            emit(i, t)
    return st


# ------------------------------------------------------------------------ reference: Xylo
def _dash(x: np.ndarray, d) -> np.ndarray:
    step = x >> d
    return np.where(step == 0, np.sign(x), step)


def _wrap16(x):
    return ((x + 32768) % 65536) - 32768


def xylo_graph_reference(graph, x: np.ndarray, steps: int, max_hidden=31, max_out=1) -> dict:
    """One sample, docs/xylo.md §2: every event a saturating int16 add, edges in order (input
    or the earlier group first, then the group's own events of ``t - 1``), then the dash decays,
    the membrane, up to ``max`` events with subtractive reset."""
    edges = _edges(graph, {"input": 0, "synapse": 1})
    last = max(edges)
    st = {i: {"i": np.zeros(graph.layers[i].neurons.shape, np.int64),
              "v": np.full(graph.layers[i].neurons.shape, int(graph.layers[i].neurons.initial_v),
                           np.int64), "spikes": [], "vs": [], "synops": 0} for i in edges}
    hist = {-1: [np.asarray(x[t], np.int64).reshape(-1) for t in range(steps)]}
    for t in range(steps):
        for i, edge_list in edges.items():
            state, g = st[i], graph.layers[i].neurons
            cur = state["i"].copy()
            for src, d, syn, _ in edge_list:
                if t - d < 0:
                    continue
                s = hist[src][t - d]
                w = np.asarray(syn.weight, np.int64) << int(syn.weight_exp)
                for j in range(s.size):  # sources by index, one saturating add per event
                    for _ in range(int(s[j])):
                        cur = np.clip(cur + w[:, j], -32768, 32767)
            cur = cur - _dash(cur, g.current_decay)
            dv = np.clip(_wrap16(-_dash(state["v"], g.voltage_decay)) + cur, -32768, 32767)
            dv = np.clip(dv + np.asarray(g.bias, np.int64), -32768, 32767)
            v = np.clip(state["v"] + dv, -32768, 32767)
            n = np.zeros_like(v)
            limit = max_out if i == last else max_hidden
            if g.spiking:
                while True:
                    fire = (v >= g.threshold) & (n < limit)
                    if not fire.any():
                        break
                    n += fire
                    v = v - fire * g.threshold
            state["i"], state["v"] = cur, v
            state["spikes"].append(n)
            state["vs"].append(v)
            hist.setdefault(i, []).append(n.reshape(-1))
    for i, edge_list in edges.items():  # SynOps: every event times the neurons it reaches
        for src, _, syn, _ in edge_list:
            st[i]["synops"] += int(sum(h.sum() for h in hist[src])) * np.asarray(syn.weight).shape[0]
    return st


# ------------------------------------------------------------------------ graph builders
def _group(shape, rng, *, spiking=True, thr=(20, 200), reset="zero", init=0):
    n = int(np.prod(shape))
    return NeuronGroup(tuple(shape), current_decay=int(rng.integers(0, 4097)),
                       voltage_decay=int(rng.integers(0, 4097)), threshold=int(rng.integers(*thr)),
                       bias=rng.integers(-20, 20, n).astype(np.int64),
                       bias_exp=int(rng.integers(0, 5)), spiking=spiking, reset=reset,
                       initial_v=init)


def residual_dense(seed: int, skip_delay: int, profile="loihi") -> DeployGraph:
    """in(9) -> d0 -> d1 -> d2 (+ d0, delay ``skip_delay``) -> out (+ recurrent-free)."""
    rng = np.random.default_rng(seed)
    w = lambda o, i: rng.integers(-120, 120, (o, i))  # noqa: E731
    return DeployGraph(profile, "loihi", (9,), [
        Dense(w(7, 9), _group((7,), rng), name="d0"),
        Dense(w(6, 7), _group((6,), rng), weight_exp=1, name="d1"),
        Dense(w(7, 6), _group((7,), rng), name="d2",
              extra=[Projection(0, w(7, 7), skip_delay, weight_exp=-1, name="skip")]),
        Dense(w(4, 7), _group((4,), rng, spiking=False), name="out"),
    ], steps=10)


def residual_conv(seed: int, skip_delay: int, profile="loihi") -> DeployGraph:
    """A conv skip over a conv layer, a dense projection from the (C, H, W) input into a conv
    group and one from a (C, H, W) group into the read-out (torch flattening order)."""
    rng = np.random.default_rng(seed)
    return DeployGraph(profile, "loihi", (2, 5, 5), [
        Conv2d(rng.integers(-90, 90, (3, 2, 3, 3)), _group((3, 5, 5), rng), padding=(1, 1),
               name="c0"),
        Conv2d(rng.integers(-90, 90, (3, 3, 3, 3)), _group((3, 5, 5), rng), padding=(1, 1),
               name="c1", extra=[Projection(-1, rng.integers(-30, 30, (75, 50)), 2,
                                            name="dense_from_input")]),
        Conv2d(rng.integers(-90, 90, (4, 3, 3, 3)), _group((4, 3, 3), rng), stride=(2, 2),
               padding=(1, 1), name="c2",
               extra=[Projection(0, rng.integers(-60, 60, (4, 3, 1, 1)), skip_delay, kind="conv",
                                 stride=(2, 2), padding=(0, 0),
                                 name="skip")]),
        Flatten(),
        Dense(rng.integers(-60, 60, (5, 36)), _group((5,), rng, spiking=False), name="out",
              extra=[Projection(1, rng.integers(-20, 20, (5, 75)), skip_delay + 1,
                                name="from_c1")]),
    ], steps=9)


def recurrent_dense(seed: int, rec_delay: int, profile="loihi", graded=False) -> DeployGraph:
    """in -> r0 (self-recurrent) -> r1 (self-recurrent, + a projection from the input) -> out."""
    rng = np.random.default_rng(seed)
    w = lambda o, i, lo=-120, hi=120: rng.integers(lo, hi, (o, i))  # noqa: E731
    n_in = 6
    in_w = (lambda o: w(o, n_in, -3, 3)) if graded else (lambda o: w(o, n_in))
    return DeployGraph(profile, "loihi", (n_in,), [
        Dense(in_w(8), _group((8,), rng), name="r0",
              extra=[Projection(0, w(8, 8), rec_delay, name="rec0")]),
        Dense(w(5, 8), _group((5,), rng, reset="zero"), name="r1",
              extra=[Projection(1, w(5, 5), 1, name="rec1"),
                     Projection(-1, in_w(5), 1 + rec_delay, name="in_skip")]),
        Dense(w(3, 5), _group((3,), rng, spiking=False), name="out"),
    ], steps=11, encoding={"kind": "direct", "bits": 8} if graded else {})


def _inputs(rng, graph, batch=3, hi=1, p=0.4):
    shape = (batch, graph.steps, *graph.input_shape)
    return rng.integers(0, hi + 1, shape) * (rng.random(shape) < p)


def _check_loihi(graph, x, res, timing=None):
    steps = res.steps
    for b in range(x.shape[0]):
        xb = x[b]
        if xb.shape[0] < steps:
            xb = np.concatenate([xb, np.zeros((steps - xb.shape[0], *xb.shape[1:]), xb.dtype)])
        ref = loihi_graph_reference(graph, xb, steps, timing)
        for k, state in enumerate(ref.values()):
            name = res.layer_names[k]
            assert np.array_equal(res.rasters[name][b], np.array(state["spikes"])), (name, b)
            assert np.array_equal(res.states["u"][name][b], np.array(state["us"])), (name, b)
            assert np.array_equal(res.states["v"][name][b], np.array(state["vs"])), (name, b)
            assert res.synops[b, k] == state["synops"], (name, b)
            assert (res.u_overflows[b, k], res.v_overflows[b, k], res.acc_overflows[b, k]) == \
                (state["uw"], state["vw"], state["aw"]), (name, b)
        last = ref[max(ref)]
        assert res.readout[b].tolist() == last["v"].reshape(-1).tolist()


# ------------------------------------------------------------------------ Loihi graphs
@pytest.mark.parametrize("skip_delay", [1, 2, 3])
def test_residual_dense_matches_reference(skip_delay):
    graph = residual_dense(skip_delay, skip_delay)
    rng = np.random.default_rng(skip_delay)
    x = _inputs(rng, graph)
    sim = Simulator(graph)
    # d0 at depth 1, d1 2, d2 max(3, 1 + skip_delay), out one more
    assert sim.latency == max(3, 1 + skip_delay) + 1
    res = sim.run(x, extra_steps=sim.latency, record=("spikes", "u", "v"))
    _check_loihi(graph, x, res)
    assert res.spike_counts[:, :3].sum() > 0


@pytest.mark.parametrize("skip_delay", [1, 2, 3])
def test_residual_conv_matches_reference(skip_delay):
    graph = residual_conv(10 + skip_delay, skip_delay)
    rng = np.random.default_rng(skip_delay)
    x = _inputs(rng, graph, batch=2)
    sim = Simulator(graph)
    res = sim.run(x, extra_steps=sim.latency, record=("spikes", "u", "v"))
    _check_loihi(graph, x, res)


@pytest.mark.parametrize("rec_delay", [1, 2, 3])
def test_recurrent_groups_match_reference(rec_delay):
    graph = recurrent_dense(20 + rec_delay, rec_delay)
    rng = np.random.default_rng(rec_delay)
    x = _inputs(rng, graph)
    sim = Simulator(graph)
    res = sim.run(x, extra_steps=sim.latency, record=("spikes", "u", "v"))
    _check_loihi(graph, x, res)
    assert res.spike_counts[:, :2].sum() > 0


def test_recurrent_group_driven_by_its_bias_before_its_input_arrives():
    rng = np.random.default_rng(9)
    group = NeuronGroup((4,), 0, 300, 50, np.array([900, 20, 700, 0]), bias_exp=3)
    graph = DeployGraph("loihi", "loihi", (3,), [
        Dense(rng.integers(-50, 50, (4, 3)), group, delay=5, name="r",
              extra=[Projection(0, rng.integers(-200, 200, (4, 4)), 1, name="rec")]),
        Dense(rng.integers(-50, 50, (2, 4)), _group((2,), rng, spiking=False), name="out"),
    ], steps=8)
    x = _inputs(rng, graph, batch=2)
    for fast in (True, False):
        res = Simulator(graph, fast=fast).run(x, extra_steps=6, record=("spikes", "u", "v"))
        assert res.rasters["r"][:, :5].sum() > 0  # it fires before its input arrives
        _check_loihi(graph, x, res)


def test_graded_direct_input_with_recurrence_and_skip_on_loihi2():
    graph = recurrent_dense(31, 2, profile="loihi2", graded=True)
    rng = np.random.default_rng(31)
    x = _inputs(rng, graph, hi=255, p=0.6)
    sim = Simulator(graph)
    res = sim.run(x, extra_steps=sim.latency, record=("spikes", "u", "v"))
    # a graded payload is one event however large: the reference counts non-zero entries too
    _check_loihi(graph, x, res)


def test_fast_and_step_paths_agree_on_graphs():
    for graph in (residual_dense(5, 2), residual_conv(6, 2), recurrent_dense(7, 2)):
        rng = np.random.default_rng(0)
        x = _inputs(rng, graph, batch=4)
        fast = Simulator(graph).run(x, extra_steps=3, record=("spikes", "u", "v"))
        slow = Simulator(graph, fast=False).run(x, extra_steps=3, record=("spikes", "u", "v"))
        for key in ("readout", "spike_counts", "synops", "u_overflows", "v_overflows",
                    "acc_overflows", "energy_j"):
            assert np.array_equal(getattr(fast, key), getattr(slow, key)), key
        for name in fast.layer_names:
            assert np.array_equal(fast.rasters[name], slow.rasters[name])
            assert np.array_equal(fast.states["v"][name], slow.states["v"][name])


def test_saved_graph_simulates_identically(tmp_path):
    graph = recurrent_dense(8, 2)
    graph.layers[2].extra = [Projection(0, np.ones((3, 8), np.int64), 2, name="late")]
    path = graph.save(tmp_path / "g.npz")
    assert graph.to_arrays()[0]["version"] == 3
    back = DeployGraph.load(path)
    x = _inputs(np.random.default_rng(2), graph)
    a = Simulator(graph).run(x, extra_steps=3, record=("spikes", "v"))
    b = Simulator(back).run(x, extra_steps=3, record=("spikes", "v"))
    assert np.array_equal(a.readout, b.readout) and np.array_equal(a.synops, b.synops)
    for name in a.layer_names:
        assert np.array_equal(a.rasters[name], b.rasters[name])


def test_chain_written_with_explicit_sources_equals_the_chain():
    rng = np.random.default_rng(3)
    chain = residual_dense(3, 1)
    chain.layers[2].extra = []
    explicit = residual_dense(3, 1)
    explicit.layers[2].extra = []
    for i, layer in enumerate(explicit.layers):
        layer.source, layer.delay = i - 1, 1
    x = _inputs(rng, chain)
    a, b = Simulator(chain).run(x, extra_steps=4), Simulator(explicit).run(x, extra_steps=4)
    assert np.array_equal(a.readout, b.readout) and np.array_equal(a.synops, b.synops)
    assert Simulator(explicit).latency == Simulator(chain).latency == 4


# ------------------------------------------------------------------------ Xylo
def recurrent_xylo(seed: int, n_in=5) -> DeployGraph:
    rng = np.random.default_rng(seed)

    def group(n, last=False):
        return NeuronGroup((n,), int(rng.integers(0, 8)), int(rng.integers(0, 8)),
                           int(rng.integers(20, 300)), rng.integers(-20, 20, n).astype(np.int64),
                           reset="subtract", spiking=not last)

    w = lambda o, i: rng.integers(-128, 128, (o, i))  # noqa: E731
    return DeployGraph("xylo-imu", "xylo", (n_in,), [
        Dense(w(6, n_in), group(6), weight_exp=3, name="h0",
              extra=[Projection(0, w(6, 6), 1, weight_exp=3, name="rec0")]),
        Dense(w(4, 6), group(4), weight_exp=3, name="h1",
              extra=[Projection(1, w(4, 4), 1, weight_exp=3, name="rec1")]),
        Dense(w(3, 4), group(3, last=True), weight_exp=2, name="out"),
    ], steps=12)


@pytest.mark.parametrize("seed", range(3))
def test_xylo_recurrent_groups_match_reference(seed):
    graph = recurrent_xylo(40 + seed)
    rng = np.random.default_rng(seed)
    x = _inputs(rng, graph, hi=15, p=0.5)
    sim = Simulator(graph)
    assert sim.latency == 2
    res = sim.run(x, extra_steps=2, record=("spikes", "v"))
    for b in range(x.shape[0]):
        xb = np.concatenate([x[b], np.zeros((2, *graph.input_shape), x.dtype)])
        ref = xylo_graph_reference(graph, xb, res.steps)
        for k, state in enumerate(ref.values()):
            name = res.layer_names[k]
            assert np.array_equal(res.rasters[name][b], np.array(state["spikes"])), (name, b)
            assert np.array_equal(res.states["v"][name][b], np.array(state["vs"])), (name, b)
            assert res.synops[b, k] == state["synops"], (name, b)
    assert res.spike_counts[:, :2].sum() > 0


# ------------------------------------------------------------------------ refusals
def _one_line(exc, *parts):
    msg = str(exc.value)
    assert "\n" not in msg
    for p in parts:
        assert p in msg, msg


def test_refusals_in_one_line():
    graph = recurrent_dense(1, 1)
    with pytest.raises(UnsupportedError) as e:  # speck2f runs another family: its rule alone
        design_rules.check(load_profile("speck2f"), "simulate", layers=graph.layers,
                           only=["recurrence"])
    _one_line(e, "layer 0 'r0' (dense)", "layers.recurrent = false", "(rule recurrence)")
    xg = recurrent_xylo(1)
    xg.layers[1].extra.append(Projection(-1, np.ones((4, 5), np.int64), 1, name="in"))
    with pytest.raises(UnsupportedError) as e:
        Simulator(xg)
    _one_line(e, "layer 1 'h1' (dense)", "layers.merge = false", "(rule merges)")
    assert any("(rule merges)" in v for v in fit_report(xg).violations)
    far = residual_dense(1, 63)
    with pytest.raises(UnsupportedError) as e:
        Simulator(far)
    _one_line(e, "layer 2 'd2' (dense)", "delay 63", "timing.max_synaptic_delay", "(rule synaptic_delay)")
    xd = recurrent_xylo(1)
    xd.layers[0].extra[0].delay = 2
    with pytest.raises(UnsupportedError) as e:
        Simulator(xd)
    _one_line(e, "layer 0 'h0'", "no programmable delays", "(rule synaptic_delay)")
    later = residual_dense(1, 1)
    later.layers[1].extra = [Projection(2, np.ones((6, 7), np.int64), 1)]
    with pytest.raises(FormatError) as e:
        Simulator(later)
    _one_line(e, "layer 1", "comes after it")
    ro = recurrent_dense(1, 1)
    ro.layers[2].extra = [Projection(2, np.ones((3, 3), np.int64), 1)]
    with pytest.raises(UnsupportedError) as e:
        Simulator(ro)
    _one_line(e, "layer 2 'out'", "read-out", "(rule recurrence)")
    with pytest.raises(ConfigError) as e:
        Simulator(recurrent_dense(1, 1)).run(_inputs(np.random.default_rng(0),
                                                     recurrent_dense(1, 1)), jitter=1)
    _one_line(e, "layer 0 'r0'", "jitter")


# ------------------------------------------------------------------------ structure and fit
def test_fit_counts_every_edge():
    graph = residual_dense(2, 2)
    d2 = fit_report(graph).layers[2]
    assert d2.synapses == 7 * 6 + 7 * 7 and d2.max_fan_in == 6 + 7
    # d0's neurons reach d1 (6) and d2 through the skip (7)
    assert fit_report(graph).max_fan_out == 7
    check_fit(graph)
    from neurodeploy.hardware.structure import layer_structure, source_fan_out

    fan = source_fan_out(layer_structure(graph))
    assert fan[0].tolist() == [6 + 7] * 7 and fan[-1].tolist() == [7] * 9


def test_fit_fan_out_sums_every_edge_of_a_source():
    graph = recurrent_xylo(3)
    # h0's neurons reach h1 (4) and themselves (6): 10, over xylo-imu's fan-out limit of 9
    p = load_profile("xylo-imu").to_dict()
    p["limits"]["fan_out"] = 9
    from neurodeploy.hardware.profile import parse_profile

    msgs = fit_report(graph, parse_profile(p, "imu9.toml")).violations
    assert "layer 0 'h0' (dense): its inputs reach up to 10 neurons, above limits.fan_out = 9 " \
           "(over the 2 edges that read layer 0)" in msgs
    # h1's fan-in: 6 from h0 and 4 from itself
    assert fit_report(graph).layers[1].max_fan_in == 10


@settings(max_examples=60, deadline=None)
@given(seed=hst.integers(0, 2**31 - 1), n_a=hst.integers(1, 4), n_b=hst.integers(1, 4),
       shift=hst.integers(0, 8))
def test_xylo_merge_is_edge_after_edge_with_per_event_saturation(seed, n_a, n_b, shift):
    from neurodeploy.families import xylo

    rng = np.random.default_rng(seed)
    wa, wb = rng.integers(-128, 128, (3, n_a)), rng.integers(-128, 128, (3, n_b))
    sa, sb = rng.integers(0, 16, (2, n_a)), rng.integers(0, 32, (2, n_b))
    u = rng.integers(-32768, 32768, (2, 3))
    parts = [xylo.dense(wa, sa, shift)[0], xylo.dense(wb, sb, shift)[0]]
    got, _ = xylo.arith.saturating_add(u, xylo.merge_inputs(parts))
    want = u.copy()
    for w, s_ in ((wa, sa), (wb, sb)):  # docs/xylo.md §2: one saturating add per event
        for b in range(2):
            for j in range(w.shape[1]):
                for _ in range(int(s_[b, j])):
                    want[b] = np.clip(want[b] + (w[:, j] << shift), -32768, 32767)
    assert np.array_equal(got, want)


def test_merge_readout_counts_and_layer_jitter():
    graph = residual_dense(4, 2)
    graph.layers[3].neurons.spiking = True
    graph.readout = {"kind": "spike_count"}
    x = _inputs(np.random.default_rng(4), graph, batch=4)
    sim = Simulator(graph)
    res = sim.run(x, extra_steps=sim.latency, record=("spikes",))
    assert np.array_equal(res.readout, res.rasters["out"].reshape(4, res.steps, -1).sum(axis=1))
    a = sim.run(x, extra_steps=4, jitter={"input": None, "layers": 1}, seed=3)
    b = Simulator(graph, fast=False).run(x, extra_steps=4, jitter={"input": None, "layers": 1},
                                         seed=3)
    assert np.array_equal(a.readout, b.readout) and np.array_equal(a.synops, b.synops)


# ------------------------------------------------------------------------ random graphs
@hst.composite
def random_graphs(draw):
    seed = draw(hst.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n_layers = draw(hst.integers(1, 4))
    sizes = [draw(hst.integers(1, 6))] + [draw(hst.integers(1, 6)) for _ in range(n_layers)]
    layers = []
    for k in range(n_layers):
        last = k == n_layers - 1
        src = draw(hst.integers(-1, k - 1))
        n = sizes[k + 1]
        n_src = sizes[src + 1]
        delay = draw(hst.integers(1, 5))
        extra = []
        for _ in range(draw(hst.integers(0, 2))):
            p_src = draw(hst.integers(-1, k if not last else k - 1))
            extra.append(Projection(p_src, rng.integers(-200, 200, (n, sizes[p_src + 1])),
                                    draw(hst.integers(1, 3)),
                                    weight_exp=draw(hst.integers(-2, 2))))
        group = _group((n,), rng, spiking=not last, thr=(1, 150),
                       reset=draw(hst.sampled_from(["zero", "subtract"])),
                       init=draw(hst.integers(-300, 300)))
        group.bias = group.bias * draw(hst.sampled_from([1, 40]))  # some fire on their bias
        layers.append(Dense(rng.integers(-200, 200, (n, n_src)), group,
                            weight_exp=draw(hst.integers(-2, 3)), name=f"l{k}", source=src,
                            delay=delay, extra=extra))
    return DeployGraph("loihi", "loihi", (sizes[0],), layers, steps=draw(hst.integers(1, 10)))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=random_graphs(), data=hst.data())
def test_random_graphs_match_reference(graph, data):
    rng = np.random.default_rng(data.draw(hst.integers(0, 1000)))
    x = _inputs(rng, graph, batch=2, p=0.5)
    extra = data.draw(hst.integers(0, 3))
    for fast in (True, False):
        res = Simulator(graph, fast=fast).run(x, extra_steps=extra, record=("spikes", "u", "v"))
        _check_loihi(graph, x, res)


@hst.composite
def random_xylo_graphs(draw):
    """Xylo chains whose hidden groups may recur (delay 1; merges are refused on Xylo)."""
    rng = np.random.default_rng(draw(hst.integers(0, 2**31 - 1)))
    n_layers = draw(hst.integers(1, 3))
    sizes = [draw(hst.integers(1, 4)) for _ in range(n_layers + 1)]
    layers = []
    for k in range(n_layers):
        last = k == n_layers - 1
        n = sizes[k + 1]
        g = NeuronGroup((n,), int(rng.integers(0, 16)), int(rng.integers(0, 16)),
                        int(rng.integers(1, 400)), rng.integers(-60, 60, n).astype(np.int64),
                        reset="subtract", spiking=not last)
        extra = [] if last or not draw(hst.booleans()) else [
            Projection(k, rng.integers(-128, 128, (n, n)), 1, weight_exp=draw(hst.integers(0, 7)))]
        layers.append(Dense(rng.integers(-128, 128, (n, sizes[k])), g,
                            weight_exp=draw(hst.integers(0, 7)), name=f"x{k}", extra=extra))
    return DeployGraph("xylo-imu", "xylo", (sizes[0],), layers, steps=draw(hst.integers(1, 8)))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=random_xylo_graphs(), data=hst.data())
def test_random_xylo_graphs_match_reference(graph, data):
    rng = np.random.default_rng(data.draw(hst.integers(0, 1000)))
    x = _inputs(rng, graph, batch=2, hi=15, p=0.6)
    res = Simulator(graph).run(x, extra_steps=1, record=("spikes", "v"))
    for b in range(2):
        xb = np.concatenate([x[b], np.zeros((1, *graph.input_shape), x.dtype)])
        ref = xylo_graph_reference(graph, xb, res.steps)
        for k, state in enumerate(ref.values()):
            name = res.layer_names[k]
            assert np.array_equal(res.rasters[name][b], np.array(state["spikes"])), (name, b)
            assert np.array_equal(res.states["v"][name][b], np.array(state["vs"])), (name, b)
            assert res.synops[b, k] == state["synops"]


def test_flat_per_neuron_decays_of_a_conv_group_run_as_shaped_ones_and_mixed_initial_v_is_refused():
    """A (C, H, W) group's per-neuron decays given flat (as a file may hold them) give exactly the
    spikes of the same decays shaped like the group; per-neuron initial potentials that differ are
    refused in one line (the simulator runs one value per group)."""
    rng = np.random.default_rng(3)
    decays = rng.integers(0, 4097, 18)

    def graph(current_decay, initial_v=0):
        g = NeuronGroup((2, 3, 3), current_decay, np.full(18, 300, np.int64), 500, np.zeros(2, np.int64),
                        initial_v=initial_v)
        out = NeuronGroup((4,), 4096, 0, 10**9, np.zeros(4, np.int64), spiking=False)
        return DeployGraph("loihi2", "loihi", (1, 3, 3),
                           [Conv2d(rng_w.integers(-50, 100, (2, 1, 3, 3)), g, padding=(1, 1), name="c"),
                            Flatten(), Dense(rng_w.integers(-50, 50, (4, 18)), out, name="o")], 6)

    x = rng.integers(0, 2, (4, 6, 1, 3, 3))
    results = []
    for cd in (decays, decays.reshape(2, 3, 3)):
        rng_w = np.random.default_rng(7)
        g = graph(cd)
        for fast in (True, False):
            results.append(Simulator(g, fast=fast).run(x, record=("spikes",)))
    for r in results[1:]:
        assert np.array_equal(r.readout, results[0].readout)
        assert np.array_equal(r.neuron_spike_counts[0], results[0].neuron_spike_counts[0])
    assert results[0].spike_counts[0].sum() > 0
    rng_w = np.random.default_rng(7)
    with pytest.raises(FormatError, match="per-neuron initial potentials") as exc:
        Simulator(graph(decays, initial_v=np.arange(18)))
    assert "\n" not in str(exc.value)


def test_a_group_whose_input_could_leave_64_bits_is_refused_in_one_line():
    """Exponents near the schema's bound on large weights would wrap int64 silently; the
    simulator refuses such a group before running it, and runs the same graph at a sane
    exponent."""
    def graph(exp):
        hidden = NeuronGroup((4,), 4096, 0, 100, np.zeros(4, np.int64))
        out = NeuronGroup((2,), 4096, 0, 10**9, np.zeros(2, np.int64), spiking=False)
        return DeployGraph("loihi2", "loihi", (3,), [Dense(np.full((4, 3), 100, np.int64), hidden,
                                                           weight_exp=exp, name="a"),
                                                     Dense(np.ones((2, 4), np.int64), out, name="o")], 5)

    ok = Simulator(graph(7)).run(np.ones((1, 5, 3), np.int64))
    assert ok.readout.max() > 0
    with pytest.raises(FormatError, match="beyond 64-bit integers") as exc:
        Simulator(graph(60))
    assert "\n" not in str(exc.value)
