"""Lava netx HDF5 export: file layout, round trips, refusals, the read-out encoding, the reader.

What Lava itself does with these files is checked in ``tests/reference/test_lava_netx.py``
(needs the optional Lava environment).
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurodeploy.data import load_dataset
from neurodeploy.errors import FormatError, NeurodeployError, UnsupportedError
from neurodeploy.export.netx import (
    NEVER_SPIKE_VTH,
    export_checkpoint_netx,
    export_netx,
    netx_dense_mapping,
    read_netx,
)
from neurodeploy.hardware.structure import layer_structure
from neurodeploy.lower.graph import Conv2d, Dense, DeployGraph, Flatten, NeuronGroup, SumPool2d
from neurodeploy.lower.inputs import encode_inputs
from neurodeploy.lower.lowering import lower_model
from neurodeploy.models import ModelSpec, build_model
from neurodeploy.sim import Simulator
from neurodeploy.train.config import TrainConfig
from neurodeploy.train.trainer import train_model

V_MAX = 2**23 - 1


# ----------------------------------------------------------------------------------- helpers
def _group(shape, *, thr=200, idecay=1024, vdecay=256, bias=0, bias_exp=6, spiking=True,
           reset="zero", v0=0):
    n = int(np.prod(shape))
    b = np.asarray(bias, dtype=np.int64)
    return NeuronGroup(shape=tuple(shape), current_decay=idecay, voltage_decay=vdecay,
                       threshold=thr, bias=np.broadcast_to(b, (n,)).copy() if b.ndim == 0 else b,
                       bias_exp=bias_exp, spiking=spiking, reset=reset, initial_v=v0)


def _readout(n, **kw):
    kw = {"thr": 131071, "idecay": 4096, "vdecay": 0, "spiking": False, **kw}
    return _group((n,), **kw)


def _dense(w, **kw):
    w = np.asarray(w, dtype=np.int64)
    exp = kw.pop("weight_exp", 0)
    name = kw.pop("name", "")
    return Dense(weight=w, neurons=_group((w.shape[0],), **kw), weight_exp=exp, name=name)


def _graph(layers, input_shape=(6,), profile="loihi", steps=8, encoding=None, readout=None,
           metadata=None):
    return DeployGraph(profile=profile, family="loihi", input_shape=tuple(input_shape),
                       layers=layers, steps=steps, encoding=encoding or {"kind": "rate"},
                       readout=readout or {"kind": "potential"}, metadata=metadata or {})


def _small_graph(w1=None, **kw):
    rng = np.random.default_rng(1)
    w1 = rng.integers(-256, 255, size=(5, 6)) if w1 is None else w1
    w2 = rng.integers(-256, 255, size=(3, 5))
    return _graph([_dense(w1, **kw), Dense(weight=w2, neurons=_readout(3))])


def _simulate(graph, x):
    sim = Simulator(graph)
    return sim.run(x, extra_steps=sim.latency, record=("spikes", "v"))


def _assert_same_run(a, b):
    assert a.layer_names == b.layer_names
    for name in a.layer_names:
        assert np.array_equal(a.rasters[name], b.rasters[name]), name
        assert np.array_equal(a.states["v"][name], b.states["v"][name]), name
    assert np.array_equal(a.readout, b.readout)


def _one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A digits MLP trained briefly with rate encoding, and its checkpoint."""
    ds = load_dataset("digits")
    torch.manual_seed(0)
    spec = ModelSpec(arch="mlp", input_shape=(1, 8, 8), hidden=[32], steps=8,
                     encoding={"kind": "rate"}, neuron={"threshold": 0.5})
    res = train_model(build_model(spec), ds, TrainConfig(epochs=2, threads=1),
                      tmp_path_factory.mktemp("netx"), progress=False)
    from neurodeploy.train.checkpoint import load_checkpoint

    return load_checkpoint(res.checkpoint).build(), ds, res.checkpoint


# ------------------------------------------------------------------ trained network round trip
def test_trained_mlp_round_trips_and_simulates_identically(trained, tmp_path):
    model, ds, _ = trained
    graph = lower_model(model, "loihi", ds.x_train[:300])
    out = export_netx(graph, tmp_path / "mlp.net")
    assert out.path.exists() and out.latency == 2 and out.input_message_bits == 0
    assert out.input_port_shape == (64,)
    assert any("131072" in n for n in out.notes)
    back = read_netx(out.path)
    assert back.profile == "loihi" and back.steps == graph.steps
    assert back.encoding == graph.encoding and back.readout == graph.readout
    assert back.metadata["scales"] == graph.metadata["scales"]
    ours = [layer for layer in graph.layers]
    theirs = [layer for layer in back.layers]
    assert [layer.kind for layer in ours] == [layer.kind for layer in theirs]
    for a, b in zip(graph.neuron_layers, back.neuron_layers, strict=True):
        assert a.name == b.name
        assert np.array_equal(a.weight, b.weight)
        for key in ("current_decay", "voltage_decay", "threshold", "spiking", "bias_exp",
                    "reset", "initial_v"):
            assert getattr(a.neurons, key) == getattr(b.neurons, key), key
        assert np.array_equal(a.neurons.bias, b.neurons.bias)
    x = encode_inputs(ds.x_test[:24], graph.steps, graph.encoding)
    ra, rb = _simulate(graph, x), _simulate(back, x)
    _assert_same_run(ra, rb)
    assert ra.spike_counts[:, 0].sum() > 0  # the hidden layer is active


def test_file_layout_follows_the_netx_schema(trained, tmp_path):
    model, ds, _ = trained
    graph = lower_model(model, "loihi", ds.x_train[:300])
    path = export_netx(graph, tmp_path / "mlp.net").path
    hidden, head = graph.neuron_layers
    with h5py.File(path, "r") as f:
        assert sorted(f.keys()) == ["layer", "neurodeploy"]
        layer = f["layer"]
        assert sorted(layer.keys(), key=int) == ["0", "1", "2", "3"]
        assert sorted(layer["0"].keys()) == ["shape", "type"]  # rule 1: no neuron, no weight
        assert layer["0/shape"][()].tolist() == [1, 8, 8]
        for i, kind in enumerate([b"input", b"flatten", b"dense", b"dense"]):
            t = layer[f"{i}/type"]
            assert t.dtype == np.dtype("S10") and t.shape == (1,) and t[0] == kind  # rule 9
        for i, src in ((2, hidden), (3, head)):
            g = layer[str(i)]
            w = g["weight"][()]
            assert w.dtype == np.float32 and np.array_equal(w, np.trunc(w))  # rule 2
            assert np.array_equal(w.astype(np.int64), src.weight)
            assert g["neuron/type"][()] in (b"CUBA", "CUBA")
            assert g["neuron/iDecay"][()] == src.neurons.current_decay
            assert g["neuron/vDecay"][()] == src.neurons.voltage_decay
            assert np.array_equal(g["bias"][()].astype(np.int64), src.neurons.bias)  # exp 6
            assert g["shape"][()].tolist() == [src.weight.shape[0]]
        assert layer["2/neuron/vThMant"][()] == hidden.neurons.threshold
        assert layer["3/neuron/vThMant"][()] == NEVER_SPIKE_VTH == 2**17
        header = json.loads(f["neurodeploy"].attrs["header"])
    assert header["format"] == "neurodeploy.netx" and header["version"] == 1
    assert header["steps"] == graph.steps and header["latency"] == 2
    assert header["encoding"]["kind"] == "rate" and header["readout"] == {"kind": "potential"}
    assert header["profile"] == "loihi" and header["input_message_bits"] == 0
    assert "argmax" in header["readout_rule"] and "Monitor" in header["readout_rule"]
    assert [x["name"] for x in header["layers"] if x["kind"] == "dense"] == \
        [hidden.name, head.name]
    assert header["metadata"]["scales"] == graph.metadata["scales"]


def test_checkpoint_export_uses_the_same_lowering(trained, tmp_path):
    model, ds, ckpt = trained
    out = export_checkpoint_netx(ckpt, tmp_path / "ck.net", profile="loihi", dataset="digits")
    back = read_netx(out.path)
    graph = lower_model(model, "loihi", ds.x_train[:512])
    for a, b in zip(graph.neuron_layers, back.neuron_layers, strict=True):
        assert np.array_equal(a.weight, b.weight) and a.neurons.threshold == b.neurons.threshold


# ------------------------------------------------------------------- the non-spiking read-out
def _lava_lif_step(u, v, a_in, idecay, vdecay, vth):
    """Lava's PyLifModelBitAcc step written out for one neuron (docs/loihi.md section 3)."""
    def rtz(x):
        return -((-x) // 4096) if x < 0 else x // 4096

    u = rtz(u * (4096 - idecay)) + (a_in << 6)
    if u > 2**23:
        u -= 2**24
    elif u <= -(2**23):
        u += 2**24
    v = min(max(rtz(v * (4096 - vdecay)) + u, -V_MAX), V_MAX)
    spike = v > (vth << 6)
    return u, (0 if spike else v), spike


def test_largest_17_bit_threshold_would_spike_but_2_pow_17_never_does():
    # 64 * 131071 = 8388544 < 8388607 = v_max: a saturated integrator crosses the largest
    # 17-bit threshold; 64 * 2**17 = 2**23 is above every reachable v.
    assert 64 * (2**17 - 1) < V_MAX < 64 * NEVER_SPIKE_VTH
    for vth, expect_spikes in ((2**17 - 1, True), (NEVER_SPIKE_VTH, False)):
        u = v = 0
        spikes = 0
        for _ in range(300):
            u, v, s = _lava_lif_step(u, v, 2000, 4096, 0, vth)
            spikes += s
        assert (spikes > 0) == expect_spikes


def test_saturating_readout_round_trips_as_non_spiking(tmp_path):
    # a read-out whose v saturates at +(2**23 - 1): the export must still never spike
    w1 = np.full((16, 6), 200)
    w2 = np.full((2, 16), 250)  # 16 spikes x 250 x 64 = 256,000 per step: saturates in 33 steps
    graph = _graph([_dense(w1, thr=10, idecay=4096, vdecay=0),
                    Dense(weight=w2, neurons=_readout(2))], steps=40)
    back = read_netx(export_netx(graph, tmp_path / "sat.net").path)
    assert back.layers[-1].neurons.spiking is False
    x = np.ones((1, 40, 6), dtype=np.int64)
    ra, rb = _simulate(graph, x), _simulate(back, x)
    _assert_same_run(ra, rb)
    assert ra.v_overflows[0, 1] > 0 and ra.readout.max() == V_MAX


# ------------------------------------------------------------------ netx's dense weight mapping
def test_mapping_examples_from_lava_measurements():
    m = netx_dense_mapping(np.array([[-200, 199, 3]]))  # measured: 9 bits, exponent 0
    assert (m.num_weight_bits, m.weight_exp, m.netx_sign) == (9, 0, "mixed")
    assert np.array_equal(m.effective, [[-200, 199, 3]])
    odd = np.array([[255, 95, 33], [-1, 7, -59]])  # odd mixed weights pass exactly through netx
    clipped = np.clip(odd, -256, 254)
    assert np.array_equal(netx_dense_mapping(clipped).effective, clipped)
    # derived cases of docs/loihi.md 5.1: all-inhibitory with a power-of-two minimum
    assert np.array_equal(netx_dense_mapping(np.array([[-128, -64]])).effective, [[-64, -64]])
    assert np.array_equal(netx_dense_mapping(np.array([[-1]])).effective, [[0]])
    assert np.array_equal(netx_dense_mapping(np.array([[-100, -3]])).effective, [[-100, -3]])
    assert "zero" in netx_dense_mapping(np.zeros((2, 3))).problem
    assert "above 255" in netx_dense_mapping(np.array([[300, 7]])).problem
    assert np.array_equal(netx_dense_mapping(np.array([[255, 7]])).effective, [[255, 7]])
    # floats are truncated toward zero before the mapping
    assert np.array_equal(netx_dense_mapping(np.array([[3.9, -2.9]])).effective, [[3, -2]])


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.data())
def test_mapping_is_exact_for_mixed_and_excitatory_weights(rows, cols, data):
    w = np.array(data.draw(st.lists(st.integers(-256, 254), min_size=rows * cols,
                                    max_size=rows * cols))).reshape(rows, cols)
    if w.max() <= 0:  # all-inhibitory or all-zero: see the next test and the examples
        return
    m = netx_dense_mapping(w)
    assert m.problem == "" and np.array_equal(m.effective, w), (w, m)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-300, -1), min_size=1, max_size=8))
def test_inhibitory_mapping_changes_weights_only_for_power_of_two_minimum(values):
    w = np.array([values])
    lo = -int(w.min())
    m = netx_dense_mapping(w)
    if lo > 256:
        assert m.effective is None and m.problem
    elif lo & (lo - 1) == 0:
        assert not np.array_equal(m.effective, w)
    else:
        assert np.array_equal(m.effective, w)


# ------------------------------------------------------------------------------------ refusals
REFUSALS = [
    ("mixed weight out of range", lambda: _small_graph(w1=np.array([[255, -3] * 3] * 5)),
     ["[-256, 254]", "255"]),
    ("all-inhibitory -2^j", lambda: _small_graph(w1=-np.tile([128, 64, 1], (5, 2))),
     ["-128", "-2^7", "-255"]),
    ("weights <= 0 with maximum 0", lambda: _small_graph(w1=-np.tile([128, 0, 64], (5, 2))),
     ["acts as", "-128"]),
    ("netx mixed, Lava inhibitory", lambda: _small_graph(w1=-np.tile([255, 0, 3], (5, 2))),
     ["negative number of bits", "mixed", "inhibitory"]),
    ("excitatory above 255", lambda: _small_graph(w1=np.tile([300, 20, 1], (5, 2))),
     ["above 255"]),
    ("all-zero layer", lambda: _small_graph(w1=np.zeros((5, 6), dtype=np.int64)), ["zero"]),
    ("MP-Init", lambda: _small_graph(v0=500), ["initial potential", "MP-Init"]),
    ("subtract reset", lambda: _small_graph(reset="subtract"), ["subtract"]),
    ("bias not a multiple of 64", lambda: _small_graph(bias=5, bias_exp=0), ["multiple of 64"]),
    ("bias mantissa too wide", lambda: _small_graph(bias=4095, bias_exp=7), ["13-bit", "8190"]),
    ("threshold too wide", lambda: _small_graph(thr=2**17), ["17-bit", "131072"]),
    ("weight exponent floors", lambda: _graph([_dense(np.full((5, 6), 3), weight_exp=-1),
                                               Dense(weight=np.ones((3, 5), np.int64),
                                                     neurons=_readout(3))]), ["floors"]),
    ("sum pooling", lambda: _graph([SumPool2d(kernel=(2, 2), neurons=_group((1, 2, 2))),
                                    Flatten(), Dense(weight=np.ones((3, 4), np.int64),
                                                     neurons=_readout(3))],
                                   input_shape=(1, 4, 4)), ["pooling"]),
    ("per-neuron decays", lambda: _graph([Dense(weight=np.ones((2, 6), np.int64), neurons=NeuronGroup(
        shape=(2,), current_decay=np.array([1, 2]), voltage_decay=0, threshold=5,
        bias=np.zeros(2, np.int64), bias_exp=6)), Dense(weight=np.ones((3, 2), np.int64),
                                                        neurons=_readout(3))]),
     ["per-neuron", "decay"]),
    ("narrower states", lambda: _graph(_small_graph().layers,
                                       metadata={"constraints": {"state_bits": 16}}),
     ["state.current_bits = 16", "Lava: 24"]),
    ("graded input without opt-in", lambda: _graph(_small_graph().layers, profile="loihi2",
                                                   encoding={"kind": "direct", "bits": 8}),
     ["input_message_bits=8", "graded"]),
]


@pytest.mark.parametrize("case", REFUSALS, ids=[c[0] for c in REFUSALS])
def test_refusals_name_the_problem_and_write_nothing(case, tmp_path):
    _, make, words = case
    dest = tmp_path / "out.net"
    with pytest.raises(UnsupportedError) as err:
        export_netx(make(), dest)
    msg = _one_line(err)
    assert all(w in msg for w in words), msg
    assert list(tmp_path.iterdir()) == []  # atomic: no file, no temporary left behind


def test_refusal_leaves_an_existing_file_untouched(tmp_path):
    dest = tmp_path / "keep.net"
    export_netx(_small_graph(), dest)
    before = dest.read_bytes()
    with pytest.raises(UnsupportedError):
        export_netx(_small_graph(reset="subtract"), dest)
    assert dest.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["keep.net"]


def test_xylo_graphs_are_refused(tmp_path):
    graph = _small_graph()
    graph.family, graph.profile = "xylo", "xylo"
    with pytest.raises(UnsupportedError, match="loihi-family"):
        export_netx(graph, tmp_path / "x.net")


# ------------------------------------------------------------- exact conversions that are kept
def test_bias_and_weight_exponents_are_converted_exactly(tmp_path):
    rng = np.random.default_rng(3)
    w1 = rng.integers(-60, 60, size=(5, 6)) * 2
    layers = [
        _dense(w1 // 2, weight_exp=1, bias=rng.integers(-900, 900, size=5), bias_exp=7, thr=300),
        _dense(rng.integers(-64, 64, size=(4, 5)) * 4, weight_exp=-2,
               bias=rng.integers(-50, 50, size=4) * 64, bias_exp=0, thr=90),
        Dense(weight=rng.integers(-256, 255, size=(3, 4)),
              neurons=_readout(3, bias=np.array([-1279, 257, 897]), bias_exp=-1)),
    ]
    graph = _graph(layers, steps=30)
    back = read_netx(export_netx(graph, tmp_path / "exp.net").path)
    assert all(layer.neurons.bias_exp == 6 for layer in back.neuron_layers)
    assert np.array_equal(back.layers[0].weight, w1)
    assert np.array_equal(back.layers[0].neurons.bias, layers[0].neurons.bias * 2)
    assert np.array_equal(back.layers[2].neurons.bias, [-10, 2, 7])  # floor(b / 2) / 64
    x = (np.random.default_rng(4).random((6, 30, 6)) < 0.4).astype(np.int64)
    ra, rb = _simulate(graph, x), _simulate(back, x)
    _assert_same_run(ra, rb)
    assert ra.spike_counts[:, :2].sum() > 0


def test_graded_input_is_written_on_request(tmp_path):
    graph = _graph(_small_graph().layers, profile="loihi2",
                   encoding={"kind": "direct", "bits": 8})
    out = export_netx(graph, tmp_path / "graded.net", graded_input=True)
    assert out.input_message_bits == 8 and any("input_message_bits=8" in n for n in out.notes)
    with h5py.File(out.path, "r") as f:
        assert json.loads(f["neurodeploy"].attrs["header"])["input_message_bits"] == 8
    back = read_netx(out.path)
    assert back.profile == "loihi2" and back.encoding["bits"] == 8
    x = np.random.default_rng(0).integers(0, 256, size=(4, 8, 6))
    _assert_same_run(_simulate(graph, x), _simulate(back, x))


def _conv_graph():
    rng = np.random.default_rng(7)
    conv_bias = np.repeat(rng.integers(-20, 20, size=4), 9 * 4)  # per neuron, uniform per channel
    conv2_bias = rng.integers(-30, 30, size=3 * 5 * 2)  # per neuron, varying
    layers = [
        Conv2d(weight=rng.integers(-120, 120, size=(4, 2, 3, 3)),
               neurons=_group((4, 9, 4), thr=150, bias=conv_bias), stride=(1, 2), padding=(1, 1),
               name="conv1"),
        Conv2d(weight=rng.integers(-120, 120, size=(3, 4, 3, 3)),
               neurons=_group((3, 5, 2), thr=120, bias=conv2_bias, idecay=512, vdecay=64),
               stride=(2, 2), padding=(1, 1), name="conv2"),
        Flatten(name="flat"),
        _dense(rng.integers(-200, 200, size=(5, 30)), thr=200, name="fc"),
        Dense(weight=rng.integers(-256, 255, size=(3, 5)), neurons=_readout(3), name="head"),
    ]
    return _graph(layers, input_shape=(2, 9, 7), steps=20)


def test_conv_graph_layout_and_round_trip(tmp_path):
    graph = _conv_graph()
    out = export_netx(graph, tmp_path / "conv.net")
    assert [x["type"] for x in out.layers] == ["input", "conv", "conv", "flatten", "dense",
                                               "dense"]
    assert out.input_port_shape == (7, 9, 2)  # Lava's (W, H, C)
    with h5py.File(out.path, "r") as f:
        c1, c2 = f["layer/1"], f["layer/2"]
        assert c1["weight"].shape == (4, 2, 3, 3)  # torch layout
        assert c1["stride"][()].tolist() == [1, 2] and c1["padding"][()].tolist() == [1, 1]
        assert c1["dilation"][()].tolist() == [1, 1] and c1["groups"][()] == 1
        assert c1["shape"][()].tolist() == [4, 9, 4]
        assert c1["bias"].shape == (4,)  # uniform per channel: written per channel
        assert c2["bias"].shape == (2, 5, 3)  # per neuron: Lava's (W, H, C)
        want = graph.layers[1].neurons.bias.reshape(3, 5, 2).transpose(2, 1, 0)
        assert np.array_equal(c2["bias"][()].astype(np.int64), want)
        assert f["layer/3/shape"][()].tolist() == [30, 1, 1]
    back = read_netx(out.path)
    assert [layer.kind for layer in back.layers] == [layer.kind for layer in graph.layers]
    assert [layer.name for layer in back.layers] == [layer.name for layer in graph.layers]
    x = (np.random.default_rng(5).random((3, 20, 2, 9, 7)) < 0.3).astype(np.int64)
    ra, rb = _simulate(graph, x), _simulate(back, x)
    _assert_same_run(ra, rb)
    assert ra.spike_counts[:, :3].min() > 0


def test_conv_weight_exponent_is_refused(tmp_path):
    graph = _conv_graph()
    graph.layers[0].weight_exp = 1
    with pytest.raises(UnsupportedError, match="weights as given"):
        export_netx(graph, tmp_path / "c.net")


# -------------------------------------------------------------------------------- the reader
def _write_netx(path, layers, meta=None, simulation=None):
    """A netx file written by hand (as slayer would), ``layers`` = list of dicts."""
    with h5py.File(path, "w") as f:
        for i, entry in enumerate(layers):
            for key, value in entry.items():
                if key == "neuron":
                    for nk, nv in value.items():
                        f[f"layer/{i}/neuron/{nk}"] = nv
                elif key == "type":
                    f.create_dataset(f"layer/{i}/type", data=np.array([value.encode()], "S10"))
                else:
                    f.create_dataset(f"layer/{i}/{key}", data=value)
        if meta is not None:
            f.create_group("neurodeploy").attrs["header"] = meta
        if simulation is not None:
            for k, v in simulation.items():
                f[f"simulation/{k}"] = v
    return path


CUBA = {"type": "CUBA", "iDecay": 1024, "vDecay": 128, "vThMant": 80}


def test_reads_foreign_netx_as_lava_would_run_it(tmp_path):
    path = _write_netx(tmp_path / "foreign.net", [
        {"type": "input", "shape": np.array([3])},
        {"type": "dense", "shape": np.array([2]), "weight": np.array([[3.9, -2.9, 1.0],
                                                                      [5.0, 0.5, -7.2]],
                                                                     np.float32),
         "bias": np.array([1.0, -2.0], np.float32), "neuron": CUBA},
        {"type": "dense", "shape": np.array([2]), "weight": np.array([[-128.0, -64.0],
                                                                      [-64.0, -64.0]])},
    ], simulation={"Ts": 1.0, "tSample": 25.0})
    g = read_netx(path)
    assert g.steps == 25 and g.profile == "loihi" and g.readout == {"kind": "potential"}
    assert np.array_equal(g.layers[0].weight, [[3, -2, 1], [5, 0, -7]])  # truncated
    assert np.array_equal(g.layers[0].neurons.bias, [1, -2]) and g.layers[0].neurons.bias_exp == 6
    last = g.layers[1]
    assert np.array_equal(last.weight, [[-64, -64], [-64, -64]])  # what Lava effectively uses
    assert (last.neurons.current_decay, last.neurons.voltage_decay) == (0, 4096)
    assert last.neurons.spiking is False  # netx's default vThMant 2**17 never fires
    x = (np.random.default_rng(0).random((2, 10, 3)) < 0.5).astype(np.int64)
    Simulator(g).run(x)  # runnable


def _valid_file(tmp_path):
    return export_netx(_conv_graph(), tmp_path / "valid.net").path


BAD_FILES = {
    "empty": lambda p: p.write_bytes(b""),
    "text": lambda p: p.write_text("layer 0: input\n"),
    "random": lambda p: p.write_bytes(np.random.default_rng(0).bytes(3000)),
    "npz": lambda p: np.savez(open(p, "wb"), a=np.arange(3)),
    "no layer group": lambda p: h5py.File(p, "w").close(),
    "missing layer 1": lambda p: _write_netx(p, [{"type": "input", "shape": np.array([3])},
                                                 {"type": "input", "shape": np.array([3])}]),
    "bad decay": lambda p: _write_netx(p, [
        {"type": "input", "shape": np.array([3])},
        {"type": "dense", "shape": np.array([2]), "weight": np.ones((2, 3)),
         "neuron": {**CUBA, "iDecay": 5000}}]),
    "wrong weight shape": lambda p: _write_netx(p, [
        {"type": "input", "shape": np.array([3])},
        {"type": "dense", "shape": np.array([2]), "weight": np.ones((2, 4)), "neuron": CUBA}]),
    "unknown type": lambda p: _write_netx(p, [
        {"type": "input", "shape": np.array([3])}, {"type": "magic", "shape": np.array([2])}]),
    "bad metadata": lambda p: _write_netx(p, [
        {"type": "input", "shape": np.array([3])},
        {"type": "dense", "shape": np.array([2]), "weight": np.ones((2, 3)), "neuron": CUBA}],
        meta="{not json"),
    "other version": lambda p: _write_netx(p, [
        {"type": "input", "shape": np.array([3])},
        {"type": "dense", "shape": np.array([2]), "weight": np.ones((2, 3)), "neuron": CUBA}],
        meta=json.dumps({"format": "neurodeploy.netx", "version": 99})),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_corrupt_or_foreign_files_raise_one_line_format_errors(kind, tmp_path):
    path = tmp_path / f"{kind.replace(' ', '_')}.net"
    BAD_FILES[kind](path)
    with pytest.raises(FormatError) as err:
        read_netx(path)
    _one_line(err)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FormatError, match="does not exist"):
        read_netx(tmp_path / "none.net")
    with pytest.raises(FormatError, match="folder"):
        read_netx(tmp_path)


def test_truncated_files_raise_format_errors(tmp_path):
    data = _valid_file(tmp_path).read_bytes()
    for cut in (0, 8, 100, 800, len(data) // 2, len(data) - 1):
        path = tmp_path / f"cut{cut}.net"
        path.write_bytes(data[:cut])
        with pytest.raises(FormatError):
            read_netx(path)


@pytest.mark.parametrize("entry, words", [
    ({"type": "pool", "shape": np.array([2])}, ["pool"]),
    ({"type": "dense", "shape": np.array([2]), "weight": np.ones((2, 3)),
      "neuron": {"type": "SDNN", "vThMant": 10}}, ["SDNN"]),
    ({"type": "dense", "shape": np.array([2]), "weight": np.ones((2, 3)), "neuron": CUBA,
      "delay": np.array([1, 2])}, ["delay"]),
])
def test_valid_netx_that_cannot_be_simulated_is_unsupported(entry, words, tmp_path):
    path = _write_netx(tmp_path / "u.net", [{"type": "input", "shape": np.array([3])}, entry])
    with pytest.raises(UnsupportedError) as err:
        read_netx(path)
    msg = _one_line(err)
    assert all(w in msg for w in words)


def test_input_layer_with_neurons_is_unsupported(tmp_path):
    path = _write_netx(tmp_path / "in.net", [
        {"type": "input", "shape": np.array([3]), "neuron": CUBA},
        {"type": "dense", "shape": np.array([2]), "weight": np.ones((2, 3)), "neuron": CUBA}])
    with pytest.raises(UnsupportedError, match="Input block"):
        read_netx(path)


@pytest.fixture(scope="module")
def valid_bytes(tmp_path_factory):
    return _valid_file(tmp_path_factory.mktemp("fuzz")).read_bytes()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzzed_corruptions_never_escape_as_other_errors(valid_bytes, tmp_path, data):
    buf = bytearray(valid_bytes)
    how = data.draw(st.sampled_from(["truncate", "overwrite", "flip"]))
    if how == "truncate":
        buf = buf[:data.draw(st.integers(0, len(buf) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(buf) - 1))
            buf[i] = data.draw(st.integers(0, 255)) if how == "overwrite" else buf[i] ^ (
                1 << data.draw(st.integers(0, 7)))
    path = tmp_path / "fuzz.net"
    path.write_bytes(bytes(buf))
    try:
        graph = read_netx(path)
    except NeurodeployError as exc:
        assert "\n" not in str(exc)
    else:
        layer_structure(graph)  # whatever reads back is a well-formed graph
