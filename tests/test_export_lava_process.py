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
from neurodeploy.families.loihi import bias_term, dense
from neurodeploy.families.loihi.lava_process import (
    _bias,
    _dense_weight,
    export_lava_process,
    lava_network_spec,
    load_spec,
)
from neurodeploy.lower.graph import Conv2d, Dense, DeployGraph, Flatten, NeuronGroup, SumPool2d
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
    rasters of spikes, u and v in Lava's order."""
    lifs = {n["name"]: _Lif(n, arrays) for n in header["neurons"]}
    shapes = {n["name"]: tuple(n["shape"]) for n in header["neurons"]}
    shapes["input"] = tuple(header["input"]["shape"])
    prev = {k: np.zeros(s, np.int64) for k, s in shapes.items()}
    rec = {(k, v): [] for k in lifs for v in ("spikes", "u", "v")}
    for t in range(x.shape[0]):
        drive = {k: np.zeros(shapes[k], np.int64) for k in lifs}
        for c in header["connections"]:
            s = _view(prev[c["source"]], c["view"])
            w = np.asarray(arrays[c["weight"]], np.int64)
            if c["kind"] == "dense":
                acc = w @ s
                e = int(c["weight_exp"])
                drive[c["target"]] += _int32(acc << e if e > 0 else acc >> -e)
            else:
                drive[c["target"]] += _conv_wh(s, w, c["stride"], c["padding"], c["groups"])
        xt = np.asarray(x[t], np.int64)
        new = {"input": xt.transpose(2, 1, 0) if xt.ndim == 3 else xt}
        for k, lif in lifs.items():
            new[k] = lif.step(drive[k])
            for var, val in (("spikes", new[k]), ("u", lif.u), ("v", lif.v)):
                rec[(k, var)].append(val.reshape(-1))
        prev = new
    return {key: np.array(v) for key, v in rec.items()}


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
