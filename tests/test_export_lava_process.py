"""The Lava process-network writer (``neurodeploy.families.loihi.lava_process``) without Lava.

The description is checked three ways: read back exactly as written; run by a small numpy
interpreter of Lava 0.10's process models written here from the Lava sources (lava-nc 0.10.0
``src/lava/proc/lif/models.py`` ``AbstractPyLifModelFixed``, ``proc/dense/models.py``
``PyDenseModelBitAcc``, ``proc/conv/models.py`` ``PyConvModelFixed`` and ``proc/conv/utils.py``,
on Lava's (W, H, C) layouts, one step of delay per Dense/Conv), which must give the simulator's
spikes, u and v at every step; and refused in one line where Lava's processes would run the
graph differently. ``tests/reference/test_lava_process.py`` runs the same descriptions in Lava
(this file has another name: pytest imports test modules by their basename).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from neurodeploy.cli import main
from neurodeploy.data import load_dataset
from neurodeploy.errors import FormatError, NeurodeployError, UnsupportedError
from neurodeploy.families import get_family
from neurodeploy.families.loihi import (
    LoihiConfig,
    bias_term,
    conv,
    dense,
    neuron_step,
    store,
    sumpool,
)
from neurodeploy.families.loihi.lava_process import (
    _bias,
    _dense_weight,
    export_lava_process,
    lava_network_spec,
    load_spec,
)
from neurodeploy.lower.graph import (
    Conv2d,
    Dense,
    DeployGraph,
    Flatten,
    NeuronGroup,
    Projection,
    SumPool2d,
)
from neurodeploy.models import ModelSpec, build_model
from neurodeploy.sim import Simulator
from neurodeploy.train.config import TrainConfig
from neurodeploy.train.trainer import train_model

M = 2**23


# ----------------------------------------------------------------- Lava's models, in numpy
def _int32(x):
    return ((np.asarray(x, dtype=np.int64) + 2**31) % 2**32) - 2**31


def _rtz_shift12(x):
    return np.sign(x) * (np.abs(x) >> 12)


class _Lif:
    """``AbstractPyLifModelFixed.subthr_dynamics`` + ``PyLifModelBitAcc`` (reset to 0)."""

    def __init__(self, n, arrays):
        shape = tuple(n["shape"])

        def get(v):
            return np.asarray(arrays[v], np.int64).reshape(shape) if isinstance(v, str) \
                else np.full(shape, int(v), np.int64)
        self.du, self.dv = get(n["du"]), get(n["dv"])
        self.vth = int(n["vth"]) << 6
        mant, e = get(n["bias_mant"]), int(n["bias_exp"])
        self.bias = mant << e if e >= 0 else mant >> -e
        self.u = np.zeros(shape, np.int64)
        self.v = get(n["v_init"]) if "v_init" in n else np.zeros(shape, np.int64)

    def step(self, a):
        cur = _int32(_rtz_shift12(self.u * (4096 - (self.du + 1))))
        cur = _int32(cur + (a << 6))
        cur = np.where(cur > M, cur - 2 * M, np.where(cur <= -M, cur + 2 * M, cur))
        self.u = cur
        volt = _int32(_rtz_shift12(self.v * (4096 - self.dv)))
        self.v = np.clip(_int32(volt + self.u + self.bias), -M + 1, M - 1)
        s = self.v > self.vth
        self.v = np.where(s, 0, self.v)
        return s.astype(np.int64)


def _conv_wh(s, w, stride, padding, groups):
    """Lava's convolution (kernel flipped: a convolution, not a correlation) on (W, H, C)."""
    o, kx, ky, cg = w.shape
    px, py = padding
    sx, sy = stride
    x = np.pad(s, ((px, px), (py, py), (0, 0)))
    wo, ho = (x.shape[0] - kx) // sx + 1, (x.shape[1] - ky) // sy + 1
    out = np.zeros((wo, ho, o), np.int64)
    og = o // groups
    for g in range(groups):
        xin = x[:, :, g * cg:(g + 1) * cg]
        for a in range(kx):
            for b in range(ky):
                patch = xin[a:a + sx * wo:sx, b:b + sy * ho:sy, :]  # (wo, ho, cg)
                k = w[g * og:(g + 1) * og, kx - 1 - a, ky - 1 - b, :]  # (og, cg)
                out[:, :, g * og:(g + 1) * og] += patch @ k.T
    return ((out + M) % (2 * M)) - M  # signed_clamp(x, bits=24)


def _view(s, view):
    return s.transpose(2, 1, 0).reshape(-1) if view == "chw_flat" and s.ndim == 3 else s


def run_description(header, arrays, x):
    """Run a description on ``x`` ([T, *input torch shape]) as Lava would: per group ``(T, N)``
    rasters of spikes, u and v in Lava's order.

    Timing: ``Dense`` and ``Conv`` send at step t what they computed from the spikes of step
    t - 1 (``a_buff``); ``DelayDense`` (``proc/dense/models.py`` ``PyDelayDenseModelBitAcc``)
    adds a synapse of delay k to column k of its ``a_buff``, rolls it one column per step and
    sends column 0, so it delivers k + 1 steps after the spike; a conv edge of delay d reads
    its source through d - 1 identity relays (depthwise 1x1 Convs of ones, one step each). So
    an edge of ``delay`` d delivers at step t the synaptic output of its source's spikes of step
    t - d. Several edges into one group are summed by its ``a_in`` port
    (``PyInPortVectorDense.recv``, in int32)."""
    lifs = {n["name"]: _Lif(n, arrays) for n in header["neurons"]}
    shapes = {n["name"]: tuple(n["shape"]) for n in header["neurons"]}
    shapes["input"] = tuple(header["input"]["shape"])
    history = {k: [] for k in shapes}
    rec = {(k, v): [] for k in lifs for v in ("spikes", "u", "v")}
    for t in range(x.shape[0]):
        drive = {k: np.zeros(shapes[k], np.int64) for k in lifs}
        for c in header["connections"]:
            d = int(c.get("delay", 1))
            if t - d < 0:
                continue
            s = _view(history[c["source"]][t - d], c["view"])
            w = np.asarray(arrays[c["weight"]], np.int64)
            if c["kind"] == "dense":
                acc = w @ s.reshape(-1)
                e = int(c["weight_exp"])
                a = _int32(acc << e if e > 0 else acc >> -e)
                drive[c["target"]] = _int32(drive[c["target"]] + a.reshape(shapes[c["target"]]))
            else:
                a = _conv_wh(s, w, c["stride"], c["padding"], c["groups"])
                drive[c["target"]] = _int32(drive[c["target"]] + a)
        xt = np.asarray(x[t], np.int64)
        history["input"].append(xt.transpose(2, 1, 0) if xt.ndim == 3 else xt)
        for k, lif in lifs.items():
            history[k].append(lif.step(drive[k]))
            for var, val in (("spikes", history[k][-1]), ("u", lif.u), ("v", lif.v)):
                rec[(k, var)].append(val.reshape(-1))
    return {key: np.array(v) for key, v in rec.items()}


def _full(value, shape):
    """A scalar, per-channel or per-neuron value as one value per neuron of ``shape``."""
    arr = np.asarray(value, np.int64).reshape(-1)
    return np.repeat(arr, int(np.prod(shape)) // arr.size).reshape(shape)


def graph_reference(graph, x):
    """The deployment graph's own semantics, step by step, written from the design
    (``DeployGraph.inputs``; docs/lava_reference.md §6): group k at step t receives the sum over
    its edges of the synapses applied to the source's spikes of step t - delay (zero before),
    then the loihi family's neuron step. Independent of the exporter; per group ``(T, N)``
    rasters of spikes, u and v in Lava's order (the simulator's record, as ``_simulated``)."""
    prof = graph.resolved_profile()
    cfg = LoihiConfig.from_profile(prof)
    inputs = graph.inputs(prof)
    x = np.asarray(x, np.int64)
    history = {-1: list(x)}
    state, out = {}, {}
    for i, layer in enumerate(graph.layers):
        if layer.kind == "flatten":
            continue
        g = layer.neurons
        state[i] = [np.zeros(g.shape, np.int64), _full(g.initial_v, g.shape)]
        history[i] = []
    for t in range(x.shape[0]):
        for i, layer in enumerate(graph.layers):
            if layer.kind == "flatten":
                continue
            g = layer.neurons
            a = np.zeros(g.shape, np.int64)
            for e in inputs[i]:
                if t - e.delay < 0:
                    continue
                s = history[e.source][t - e.delay]
                syn = layer if e.projection is None else e.projection
                if syn.kind == "dense":
                    part = dense(syn.weight, s.reshape(-1), int(syn.weight_exp), config=cfg)[0]
                elif syn.kind == "conv":
                    part = conv(syn.weight, s[None], tuple(syn.stride), tuple(syn.padding),
                                int(syn.groups), config=cfg)[0][0]
                else:
                    part = sumpool(s[None], tuple(syn.kernel), syn.stride, config=cfg)[0][0]
                a = store(a + np.asarray(part).reshape(g.shape), cfg)[0]
            u, v = state[i]
            st_ = neuron_step(u, v, a, current_decay=_full(g.current_decay, g.shape),
                              voltage_decay=_full(g.voltage_decay, g.shape), threshold=g.threshold,
                              bias=_full(g.bias, g.shape), bias_exp=int(g.bias_exp), spiking=g.spiking,
                              reset=g.reset, config=cfg)
            state[i] = [st_.u, st_.v]
            history[i].append(np.asarray(st_.spikes, np.int64))
            name = layer.name or f"{layer.kind}{i}"
            for var, val in (("spikes", st_.spikes), ("u", st_.u), ("v", st_.v)):
                val = np.asarray(val, np.int64)
                val = val.transpose(2, 1, 0) if val.ndim == 3 else val
                out.setdefault((name, var), []).append(val.reshape(-1))
    return {k: np.array(v) for k, v in out.items()}


# ------------------------------------------------------------------------------------ graphs
def _group(shape, *, thr, idecay=1024, vdecay=256, bias=0, bias_exp=6, spiking=True, v0=0,
           reset="zero"):
    n = int(np.prod(shape))
    b = np.asarray(bias, dtype=np.int64)
    return NeuronGroup(shape=tuple(shape), current_decay=idecay, voltage_decay=vdecay,
                       threshold=thr, bias=np.broadcast_to(b, (n,)).copy() if b.ndim == 0 else b,
                       bias_exp=bias_exp, spiking=spiking, initial_v=v0, reset=reset)


def _conv_graph():
    rng = np.random.default_rng(3)
    layers = [
        Conv2d(weight=rng.integers(-255, 256, size=(4, 1, 3, 2)),
               neurons=_group((4, 9, 5), thr=500, idecay=rng.integers(0, 4097, (4, 9, 5)),
                              vdecay=rng.integers(0, 4097, (4, 9, 5)),
                              bias=np.repeat(rng.integers(-15, 15, 4), 45), v0=7000),
               stride=(1, 2), padding=(1, 2), groups=2, name="conv1"),
        SumPool2d(kernel=(3, 2), neurons=_group((4, 3, 2), thr=1), name="pool"),
        Flatten(name="flat"),
        Dense(weight=rng.integers(-256, 256, size=(5, 24)) * 2, weight_exp=-1,
              neurons=_group((5,), thr=300, bias=rng.integers(-9, 9, 5) * 2 * 2**15,
                             bias_exp=-3), name="fc"),
        Dense(weight=rng.integers(-256, 256, size=(3, 5)),
              neurons=_group((3,), thr=131071, idecay=4096, vdecay=0, spiking=False),
              name="head"),
    ]
    return DeployGraph(profile="loihi", family="loihi", input_shape=(2, 9, 7), layers=layers,
                       steps=20, encoding={"kind": "rate"})


def _graded_graph():
    rng = np.random.default_rng(4)
    layers = [Flatten(name="flat"),
              Dense(weight=rng.integers(-40, 40, size=(10, 16)), weight_exp=-2,
                    neurons=_group((10,), thr=800, v0=-3000), name="fc1"),
              Dense(weight=rng.integers(-256, 256, size=(4, 10)),
                    neurons=_group((4,), thr=131071, spiking=False), name="head")]
    return DeployGraph(profile="loihi2", family="loihi", input_shape=(1, 4, 4), layers=layers,
                       steps=12, encoding={"kind": "direct", "bits": 8})


def _dense_graph(**changes):
    w = np.array([[3, -4, 255], [-256, 7, 1]])
    group = _group((2,), thr=20, v0=0)
    for key, value in changes.items():
        setattr(group, key, value)
    layers = [Dense(weight=changes.pop("weight", w), neurons=group, name="fc")]
    return DeployGraph(profile="loihi", family="loihi", input_shape=(3,), layers=layers, steps=5,
                       encoding={"kind": "rate"})


def recurrent_graph(seed=0, profile="loihi2"):
    """A self-recurrent dense group (delay 1), a second group recurrent at delay 3, a skip from
    the input into the read-out at delay 3 (the chain's depth); per-neuron decays and initial
    potentials, in Loihi 2 units."""
    rng = np.random.default_rng(seed)
    n_in, n1, n2, n3 = 20, 16, 12, 4
    dec = [0, 1, 700, 2048, 4095, 4096]
    layers = [
        Dense(weight=rng.integers(-120, 220, size=(n1, n_in)), name="rec1",
              neurons=_group((n1,), thr=int(rng.integers(200, 400)),
                             idecay=rng.choice(dec, n1), vdecay=rng.choice(dec, n1),
                             bias=rng.integers(-30, 30, n1), v0=int(rng.integers(-9000, 9000))),
              extra=[Projection(source=0, weight=rng.integers(-200, 120, size=(n1, n1)),
                                delay=1, name="rec1_self")]),
        Dense(weight=rng.integers(-150, 256, size=(n2, n1)), weight_exp=1, name="rec2",
              neurons=_group((n2,), thr=int(rng.integers(200, 400)),
                             idecay=rng.choice(dec, n2), vdecay=rng.choice(dec, n2),
                             v0=int(rng.integers(-5000, 5000))),
              extra=[Projection(source=1, weight=rng.integers(-256, 200, size=(n2, n2)) * 2,
                                delay=3, weight_exp=-2, name="rec2_self")]),
        Dense(weight=rng.integers(-256, 256, size=(n3, n2)), name="head",
              neurons=_group((n3,), thr=131071, idecay=4096, vdecay=0, spiking=False),
              extra=[Projection(source=-1, weight=rng.integers(-256, 256, size=(n3, n_in)),
                                delay=3, weight_exp=-1, name="skip")]),
    ]
    return DeployGraph(profile=profile, family="loihi", input_shape=(n_in,), layers=layers,
                       steps=24, encoding={"kind": "rate"})


def residual_graph(seed=0, profile="loihi2", dense_into_conv=True):
    """A residual ConvNet block: conv1 -> conv2 -> conv3 with a conv skip conv1 -> conv3 at
    delay 2 (an identity relay before the Conv), a conv self-recurrence on conv3, then a flatten
    and a dense head with a dense skip from conv2 at delay 2; per-neuron decays, MP-Init;
    ``dense_into_conv``: a dense projection from the input into conv2's (C, H, W) group at
    delay 2 (a DelayDense whose rows are in Lava's order)."""
    rng = np.random.default_rng(100 + seed)
    c, h, w = 3, 6, 5
    dec = [0, 1, 700, 2048, 4095, 4096]

    def grp(shape, thr, **kw):
        n = int(np.prod(shape))
        return _group(shape, thr=thr, idecay=rng.choice(dec, shape), vdecay=rng.choice(dec, shape),
                      bias=np.repeat(rng.integers(-20, 20, shape[0]), n // shape[0]), **kw)
    layers = [
        Conv2d(weight=rng.integers(-150, 256, size=(c, 2, 3, 3)), padding=(1, 1), name="conv1",
               neurons=grp((c, h, w), 300, v0=int(rng.integers(-6000, 9000)))),
        Conv2d(weight=rng.integers(-150, 256, size=(c, c, 3, 3)), padding=(1, 1), name="conv2",
               neurons=grp((c, h, w), 250)),
        Conv2d(weight=rng.integers(-150, 256, size=(4, c, 3, 3)), padding=(1, 1), name="conv3",
               neurons=grp((4, h, w), 250, v0=int(rng.integers(0, 9000))),
               extra=[Projection(source=0, kind="conv", weight=rng.integers(-256, 256,
                                                                           size=(4, c, 1, 1)),
                                 delay=2, name="skip_conv"),
                      Projection(source=2, kind="conv", weight=rng.integers(-120, 100,
                                                                           size=(4, 2, 3, 3)),
                                 padding=(1, 1), groups=2, delay=1, name="conv3_self")]),
        Flatten(name="flat"),
        Dense(weight=rng.integers(-256, 256, size=(5, 4 * h * w)), name="head",
              neurons=_group((5,), thr=131071, idecay=4096, vdecay=0, spiking=False),
              extra=[Projection(source=1, weight=rng.integers(-256, 256, size=(5, c * h * w)),
                                delay=2, name="skip_dense")]),
    ]
    into = rng.integers(-100, 200, size=(c * h * w, 2 * h * w))
    if dense_into_conv:
        layers[1].extra.append(Projection(source=-1, weight=into, delay=2, name="in_to_conv2"))
    return DeployGraph(profile=profile, family="loihi", input_shape=(2, h, w), layers=layers,
                       steps=20, encoding={"kind": "rate"})


def graded_skip_graph(seed=0):
    """8-bit graded input through a DelayDense (delay 2) and through graded identity relays
    before a Conv (delay 3), merged with the chain's own edges."""
    rng = np.random.default_rng(200 + seed)
    layers = [
        Conv2d(weight=rng.integers(-12, 30, size=(2, 1, 2, 2)), name="conv",
               neurons=_group((2, 3, 3), thr=900, v0=-2000),
               extra=[Projection(source=-1, kind="conv", weight=rng.integers(-20, 20,
                                                                            size=(2, 1, 2, 2)),
                                 delay=3, name="late_conv")]),
        Flatten(name="flat"),
        Dense(weight=rng.integers(-256, 256, size=(4, 18)), name="head",
              neurons=_group((4,), thr=131071, idecay=4096, vdecay=0, spiking=False),
              extra=[Projection(source=-1, weight=rng.integers(-40, 40, size=(4, 16)),
                                weight_exp=-2, delay=2, name="graded_skip")]),
    ]
    return DeployGraph(profile="loihi2", family="loihi", input_shape=(1, 4, 4), layers=layers,
                       steps=12, encoding={"kind": "direct", "bits": 8})


def _simulated(graph, x):
    res = Simulator(graph).run(x[None], record=("spikes", "u", "v"))
    out = {}
    for name in res.layer_names:
        for var, arr in (("spikes", res.rasters[name][0]), ("u", res.states["u"][name][0]),
                         ("v", res.states["v"][name][0])):
            a = np.asarray(arr)
            if a.ndim == 4:
                a = a.transpose(0, 3, 2, 1)
            out[(name, var)] = a.reshape(a.shape[0], -1).astype(np.int64)
    return out, res


# ------------------------------------------------------------------------------------- tests
def test_round_trip_and_layout(tmp_path):
    graph = _conv_graph()
    res = export_lava_process(graph, tmp_path / "net.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["net.npz"]  # no temporary file left
    header, arrays = load_spec(res.path)
    assert (header, set(arrays)) == (lava_network_spec(graph)[0], set(lava_network_spec(graph)[1]))
    assert res.neurons == ["conv1", "pool", "fc", "head"] and res.latency == 4
    assert res.input_shape == (7, 9, 2)
    n = {e["name"]: e for e in header["neurons"]}
    c = {e["name"]: e for e in header["connections"]}
    g0 = graph.layers[0].neurons
    # per-neuron decays in Lava's (W, H, C) order, du = iDecay - 1
    du = arrays[n["conv1"]["du"]]
    assert du.shape == (5, 9, 4)
    assert du[4, 2, 3] == np.asarray(g0.current_decay).reshape(4, 9, 5)[3, 2, 4] - 1
    assert arrays[n["conv1"]["v_init"]].min() == 7000 and "v_init" not in n["pool"]
    # the conv kernel flipped and in (out, kW, kH, in) layout; x/y order of stride and padding
    w = graph.layers[0].weight
    lw = arrays[c["conv1"]["weight"]]
    assert lw.shape == (4, 2, 3, 1) and lw[2, 0, 1, 0] == w[2, 0, 1, 1]
    assert (c["conv1"]["stride"], c["conv1"]["padding"], c["conv1"]["groups"]) == \
        ([2, 1], [2, 1], 2)
    assert c["pool"]["groups"] == 4 and arrays[c["pool"]["weight"]].min() == 1
    # even weights beyond 8 bits move a factor of two into the exponent; the bias too
    assert c["fc"]["weight_exp"] == 0 and c["fc"]["view"] == "chw_flat"
    np.testing.assert_array_equal(arrays[c["fc"]["weight"]] * 2, graph.layers[3].weight)
    assert n["fc"]["bias_exp"] > -3 and np.abs(arrays[n["fc"]["bias_mant"]]).max() < 2**15
    assert n["head"]["vth"] == 2**17 and not n["head"]["spiking"]
    assert any("MP-Init" in s for s in res.notes) and any("per-neuron" in s for s in res.notes)


@pytest.mark.parametrize("which", ["conv", "graded", "mlp"])
def test_description_runs_like_the_simulator(which):
    rng = np.random.default_rng(5)
    if which == "conv":
        graph = _conv_graph()
        x = (rng.random((24, 2, 9, 7)) < 0.35).astype(np.int64)
    elif which == "graded":
        graph = _graded_graph()
        x = rng.integers(0, 256, size=(15, 1, 4, 4))
    else:
        graph = _dense_graph()
        graph.layers[0].weight = rng.integers(-256, 256, size=(2, 3)) * 4
        graph.layers[0].weight_exp = -3
        x = (rng.random((12, 3)) < 0.6).astype(np.int64)
    header, arrays = lava_network_spec(graph)
    lava = run_description(header, arrays, x)
    ours, res = _simulated(graph, x)
    assert ours.keys() == lava.keys()
    for key in ours:
        np.testing.assert_array_equal(lava[key], ours[key], err_msg=str(key))
    assert res.spike_counts[0, 0] > 0


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(0, 4), e=st.integers(-6, 6),
       graded=st.booleans())
def test_moving_factors_of_two_into_the_exponent_is_exact(seed, k, e, graded):
    """The writer's rewriting of weights (W / 2^k, e + k) and of biases gives the integers the
    family's own dense synapse and bias term give, floors of negative exponents included."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-256, 256, size=(5, 7)) << k
    layer = Dense(weight=w, weight_exp=e, neurons=_group((5,), thr=1))
    w2, e2 = _dense_weight(layer, "l")  # x << k has a representation: x itself, e + k
    assert w2.min() >= -256 and w2.max() <= 255
    s = rng.integers(0, 256 if graded else 2, size=(9, 7))
    np.testing.assert_array_equal(dense(w2, s, e2)[0], dense(w, s, e)[0])
    m = rng.integers(-(2**20), 2**20, size=5) << k
    group = _group((5,), thr=1, bias=m, bias_exp=e)
    try:
        m2, e3 = _bias(group, (5,), "l")
    except UnsupportedError:  # only when no m' << e' (e' >= 0) with an int16 m' is that bias
        b = np.asarray(bias_term(m, e))
        while np.any(b) and not np.any(b % 2):
            b = b // 2
        assert np.abs(m).max() >= 2**15 and np.abs(b).max() >= 2**15
        return
    assert np.abs(m2).max(initial=0) < 2**15
    np.testing.assert_array_equal(bias_term(m2, e3), bias_term(m, e))


def test_netx_refuses_what_the_process_network_holds(tmp_path):
    from neurodeploy.export.netx import export_netx

    graph = _conv_graph()
    with pytest.raises(UnsupportedError):
        export_netx(graph, tmp_path / "x.net")
    export_lava_process(graph, tmp_path / "x.npz")


def _xylo_graph():
    g = _dense_graph()
    g.family, g.profile = "xylo", "xylo"
    return g


REFUSALS = [
    (_xylo_graph, "loihi-family"),
    (lambda: _dense_graph(reset="subtract"), "reset by subtract"),
    (lambda: _dense_graph(threshold=2**17), "17-bit"),
    (lambda: _dense_graph(current_decay=np.array([0, 5000])), "rule decay_range"),
    (lambda: _dense_graph(weight=np.array([[3, -4, 257], [1, 1, 1]])), "outside [-256, 255]"),
    (lambda: _dense_graph(bias=np.array([2**15 + 1, 0]), bias_exp=0), "int16 bias_mant"),
]


@pytest.mark.parametrize("make, words", REFUSALS)
def test_refusals_are_one_line_and_leave_files_alone(make, words, tmp_path):
    dest = tmp_path / "old.npz"
    dest.write_bytes(b"existing")
    with pytest.raises(NeurodeployError) as err:
        export_lava_process(make(), dest)
    assert words in str(err.value) and "\n" not in str(err.value)
    assert dest.read_bytes() == b"existing" and len(list(tmp_path.iterdir())) == 1


def test_refusals_of_lava_arithmetic_limits():
    g = _conv_graph()
    g.layers[0].weight_exp = 1
    with pytest.raises(UnsupportedError, match="rule conv_exponent"):
        lava_network_spec(g)
    g = _conv_graph()
    g.layers[0].weight = np.full((4, 1, 3, 2), 2**22)
    with pytest.raises(UnsupportedError, match="float32"):
        lava_network_spec(g)
    g = _graded_graph()  # 4096 16-bit payloads at weight 255: W @ s passes 2**31 in int32
    g.input_shape, g.layers[1].weight = (1, 64, 64), np.full((10, 4096), 255)
    g.encoding = {"kind": "direct", "bits": 16}
    with pytest.raises(UnsupportedError, match="int32"):
        lava_network_spec(g)
    g.layers[1].weight_exp = 0  # no floor after the int32 sum: the wrap is the simulator's too
    lava_network_spec(g)
    g = _graded_graph()
    g.encoding = {"kind": "direct"}
    with pytest.raises(UnsupportedError, match="float input"):
        lava_network_spec(g)


def test_load_spec_refuses_other_files(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(FormatError, match="not a readable"):
        load_spec(tmp_path / "junk.npz")
    _dense_graph().save(tmp_path / "graph.npz")
    with pytest.raises(FormatError, match="not a neurodeploy Lava process"):
        load_spec(tmp_path / "graph.npz")


def test_registered_writer_and_cli(tmp_path):
    assert "lava-process" in get_family("loihi").WRITERS
    ds = load_dataset("digits", limit=200)
    spec = ModelSpec(arch="mlp", input_shape=(1, 8, 8), hidden=[16], steps=4,
                     encoding={"kind": "rate"}, neuron={"threshold": 0.5, "mp_init": True})
    torch.manual_seed(0)
    ck = train_model(build_model(spec), ds, TrainConfig(epochs=1, threads=1), tmp_path / "ck",
                     progress=False).checkpoint
    out = tmp_path / "m.npz"
    res = CliRunner().invoke(main, ["export", str(ck), "--format", "lava-process", "--profile",
                                    "loihi", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "2 LIF and 2 Dense/Conv processes, latency 2 steps" in res.output
    header, _ = load_spec(out)
    assert [c["source"] for c in header["connections"]] == ["input", header["neurons"][0]["name"]]
    bad = CliRunner().invoke(main, ["export", str(ck), "--format", "lava-process", "--profile",
                                    "xylo", "-o", str(tmp_path / "x.npz")])
    line = bad.output.strip()
    assert bad.exit_code == 2 and line.startswith("error: ") and "\n" not in line
    assert not (tmp_path / "x.npz").exists()


# ----------------------------------------------------------- graphs beyond chains (merges, delays)
def records(graph, x):
    """The simulator's spikes, u and v of every group, ``(T, N)`` in Lava's order."""
    return _simulated(graph, x)[0]


def test_graph_reference_is_the_simulator_on_chains():
    """The step-major reference of the graph semantics agrees with the simulator wherever the
    simulator runs the graph (the chains above, MP-Init and per-neuron decays included)."""
    rng = np.random.default_rng(8)
    for graph, x in ((_conv_graph(), (rng.random((24, 2, 9, 7)) < 0.35).astype(np.int64)),
                     (_graded_graph(), rng.integers(0, 256, size=(15, 1, 4, 4)))):
        ours, res = _simulated(graph, x)
        ref = graph_reference(graph, x)
        assert ours.keys() == ref.keys()
        for key in ours:
            np.testing.assert_array_equal(ref[key], ours[key], err_msg=str(key))


GENERAL = {"recurrent": (recurrent_graph, lambda rng: (rng.random((30, 20)) < 0.4)),
           "residual": (residual_graph, lambda rng: (rng.random((26, 2, 6, 5)) < 0.35)),
           "graded_skip": (graded_skip_graph, lambda rng: rng.integers(0, 256, (16, 1, 4, 4)))}


@pytest.mark.parametrize("which", sorted(GENERAL))
def test_merges_recurrence_and_delays_run_like_the_graph(which):
    """Several edges into one a_in, recurrent Dense and Conv edges, delays above one step
    (DelayDense, relays before a Conv) and dense edges into (C, H, W) groups: the description,
    run as Lava's processes run it, gives the graph's spikes, u and v at every step."""
    make, inputs = GENERAL[which]
    rng = np.random.default_rng(9)
    for seed in range(2):
        graph = make(seed)
        assert not graph.is_chain()
        x = np.asarray(inputs(rng), np.int64)
        header, arrays = lava_network_spec(graph)
        lava = run_description(header, arrays, x)
        ours = records(graph, x)
        assert ours.keys() == lava.keys()
        for key in ours:
            np.testing.assert_array_equal(lava[key], ours[key], err_msg=f"{which} {seed} {key}")
        spiking = [n["name"] for n in header["neurons"] if n["spiking"]]
        assert all(ours[(n, "spikes")].sum() > 0 for n in spiking), f"{which}: a group is silent"
    # every extra edge changes what arrives: without it the head differs
    plain = make(0)
    for layer in plain.layers:
        if hasattr(layer, "extra"):
            layer.extra = []
    x = np.asarray(inputs(np.random.default_rng(1)), np.int64)
    with_edges, without = graph_reference(make(0), x), graph_reference(plain, x)
    head = plain.layers[-1].name
    assert not np.array_equal(with_edges[(head, "v")], without[(head, "v")])


def test_dense_edge_into_a_conv_group_counts():
    """The dense projection into conv2's (C, H, W) group changes what it receives (so the
    residual case tests its row order and the reshape of its a_out)."""
    x = (np.random.default_rng(10).random((26, 2, 6, 5)) < 0.35).astype(np.int64)
    ref = graph_reference(residual_graph(0), x)
    plain = graph_reference(residual_graph(0, dense_into_conv=False), x)
    assert not np.array_equal(ref[("conv2", "u")], plain[("conv2", "u")])


def test_description_of_a_general_graph():
    header, arrays = lava_network_spec(residual_graph())
    assert header["version"] == 2 and header["latency"] == 4
    c = {e["name"]: e for e in header["connections"]}
    assert (c["skip_conv"]["source"], c["skip_conv"]["target"], c["skip_conv"]["delay"]) == \
        ("conv1", "conv3", 2)
    assert c["conv3_self"]["source"] == c["conv3_self"]["target"] == "conv3"
    assert c["head"]["view"] == "chw_flat" and c["skip_dense"]["view"] == "chw_flat"
    # a dense edge into a (C, H, W) group: rows in Lava's (W, H, C) order, a_out reshaped
    assert c["in_to_conv2"]["out_view"] == "whc" and c["in_to_conv2"]["view"] == "chw_flat"
    w = residual_graph().layers[1].extra[0].weight.reshape(3, 6, 5, 60)
    np.testing.assert_array_equal(arrays["in_to_conv2.weight"].reshape(5, 6, 3, 60)[4, 2, 1],
                                  w[1, 2, 4])
    header1, _ = lava_network_spec(recurrent_graph())
    assert header1["latency"] == 3 and [e["delay"] for e in header1["connections"]] == \
        [1, 1, 1, 3, 1, 3]
    for make in (recurrent_graph, residual_graph, graded_skip_graph, _conv_graph):
        assert lava_network_spec(make())[0]["latency"] == Simulator(make()).latency
    chain, _ = lava_network_spec(_conv_graph())
    assert chain["version"] == 1  # every delay one step: readable by builders before delays


def _wide_delays(g):
    """The graph's profile with programmable delays up to 100 steps (beyond Lava's)."""
    import dataclasses

    p = g.resolved_profile()
    g.target = dataclasses.replace(p, timing=dataclasses.replace(p.timing,
                                                                 max_synaptic_delay=100))


GENERAL_REFUSALS = [
    ("delay 0", lambda g: setattr(g.layers[2].extra[0], "delay", 0), "rule synaptic_delay"),
    ("delay 63", lambda g: setattr(g.layers[2].extra[0], "delay", 63), "rule synaptic_delay"),
    ("delay 65", lambda g: (_wide_delays(g), setattr(g.layers[2].extra[0], "delay", 65)),
     "beyond 64 steps, the most a Lava DelayDense"),
    ("recurrent read-out", lambda g: g.layers[2].extra.append(
        Projection(source=2, weight=np.ones((4, 4), np.int64), delay=1)), "rule recurrence"),
    ("1-D conv source", lambda g: g.layers[1].extra.append(
        Projection(source=0, kind="conv", weight=np.ones((1, 1, 1, 1), np.int64), delay=1)),
     "expects a (C, H, W) input, got shape (16,)"),
    ("wrong width", lambda g: setattr(g.layers[2].extra[0], "weight", np.ones((4, 19), np.int64)),
     "weight expects 19 inputs, its source gives 20"),
]


@pytest.mark.parametrize("what, change, words", GENERAL_REFUSALS, ids=[r[0] for r in
                                                                       GENERAL_REFUSALS])
def test_general_edges_refused_in_one_line(what, change, words, tmp_path):
    g = recurrent_graph()
    change(g)
    with pytest.raises(NeurodeployError) as err:
        export_lava_process(g, tmp_path / "x.npz")
    assert words in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("make, words", [
    (recurrent_graph, "layer 0 'rec1' (dense) has a recurrent edge (from itself, delay 1)"),
    (residual_graph, "layer 1 'conv2' (conv) merges an edge from layer -1 (delay 2)"),
    (lambda: _with(_dense_graph(), delay=2), "has a delay of 2 steps (the profile's: 1)")])
def test_netx_refuses_graphs_beyond_chains_in_one_line(make, words, tmp_path):
    from neurodeploy.export.netx import export_netx

    graph = make()
    with pytest.raises(UnsupportedError) as err:
        export_netx(graph, tmp_path / "x.net")
    msg = str(err.value)
    assert words in msg and "netx file cannot hold" in msg and "\n" not in msg
    assert not (tmp_path / "x.net").exists()
    export_lava_process(graph, tmp_path / "x.npz")  # the process network holds it
    # a source and delay that only restate the chain's are a chain for netx
    chain = _with(_dense_graph(), source=-1, delay=1)
    chain.layers[0].weight = np.array([[3, -4, 254], [-256, 7, 1]])
    assert not chain.is_chain()
    export_netx(chain, tmp_path / "chain.net")


def _with(graph, **changes):
    for key, value in changes.items():
        setattr(graph.layers[-1], key, value)
    return graph


def test_cli_exports_a_graph_checkpoint(tmp_path):
    """A residual graph network (a GraphNet checkpoint) exports as a process network with the
    merge in it; netx refuses it in one line."""
    import importlib.util
    from pathlib import Path

    from neurodeploy.models.graph_net import GraphCheckpoint
    from neurodeploy.quantize.graph_model import GraphModel

    path = Path(__file__).resolve().parent / "test_graph_deploy.py"
    spec = importlib.util.spec_from_file_location("graph_deploy_nets", path)
    gd = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gd)
    model = GraphModel(gd.residual_convnet(), 4, {"kind": "direct", "bits": 8},
                       {"dataset": "digits"})
    ck = model.checkpoint()
    src = GraphCheckpoint(ck.graph, ck.steps, ck.meta).save(tmp_path / "res.pt")
    out = tmp_path / "res.npz"
    res = CliRunner().invoke(main, ["export", str(src), "--format", "lava-process", "--profile",
                                    "loihi2", "-o", str(out)])
    assert res.exit_code == 0, res.output
    header, _ = load_spec(out)
    into = [c["target"] for c in header["connections"]]
    assert len(into) == len(set(into)) + 1  # one group sums two edges: the residual merge
    assert {c["delay"] for c in header["connections"]} == {1, 2} and header["version"] == 2
    bad = CliRunner().invoke(main, ["export", str(src), "--format", "lava", "--profile",
                                    "loihi2", "-o", str(tmp_path / "res.net")])
    line = bad.output.strip()
    assert bad.exit_code == 2 and line.startswith("error: ") and "\n" not in line
    assert "netx file cannot hold" in line and not (tmp_path / "res.net").exists()
