"""Process networks written by :func:`neurodeploy.families.loihi.lava_process.lava_network_spec`,
built from LIF, Dense and Conv processes and run in Lava 0.10, against our simulator.

Optional: needs the Lava reference environment (``bash tools/lava_env.sh``; see
docs/lava_reference.md) and is skipped without it. Every case is a deployment graph; its
description goes to ``tools/lava_reference.py`` as a ``graph`` case, which wires the processes
with ``build_lava_network`` and runs them with ``Loihi2SimCfg(select_tag='fixed_pt')`` from a
RingBuffer, with Monitors on every LIF. Spikes, ``u`` and ``v`` of every group at every step are
compared with :class:`neurodeploy.sim.Simulator` on the same graph, and the read-out with the
simulator's read-out.

The cases hold what a netx file cannot: MP-Init initial potentials (``mp_init``), per-neuron
current and voltage decays (``per_neuron_decays``, ``extreme_*``), sum pooling and grouped
convolutions (``conv``), weight exponents that floor a sum and weights beyond 8 bits that are
multiples of a power of two (``extreme_*``). Graphs beyond chains (``recurrent_*``,
``residual_*``, ``graded_skip_0``, ``delay_probe``; built in ``tests/test_export_lava_process.py``)
add several Dense/Conv edges into one LIF (merges), recurrent Dense and Conv edges from a LIF
back to its own ``a_in``, and delays above one step (``DelayDense``; identity relays before a
Conv), and two trained graph networks lowered through the fake-quant network (``trained_*``,
from ``tests/test_graph_deploy.py``'s GraphNets); they are compared with the simulator, the
trained ones' first read-out with the fake-quant network's, and ``delay_probe`` with a timing
worked out by hand.

All cases run in one Lava subprocess, started first so that its imports overlap the training of
the test networks; the conv case runs last (Lava's Conv imports torch, after which a Lava runtime
starts several times slower).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import padded, run_lava_overlapped  # tests/reference/conftest.py

from neurodeploy.data import load_dataset
from neurodeploy.errors import UnsupportedError
from neurodeploy.export.netx import export_netx
from neurodeploy.families.loihi.lava_process import export_lava_process, lava_network_spec
from neurodeploy.lower.graph import (
    Conv2d,
    Dense,
    DeployGraph,
    Flatten,
    NeuronGroup,
    Projection,
    SumPool2d,
)
from neurodeploy.lower.inputs import encode_inputs
from neurodeploy.lower.lowering import graph_from_fakequant, lower_model
from neurodeploy.models import ModelSpec, build_model
from neurodeploy.quantize.fakequant import fake_quantize
from neurodeploy.quantize.graph_model import GraphModel
from neurodeploy.sim import Simulator
from neurodeploy.train.checkpoint import load_checkpoint
from neurodeploy.train.config import TrainConfig
from neurodeploy.train.trainer import train_model

pytestmark = pytest.mark.reference

V_MAX = 2**23 - 1

DRIVER = r"""
import importlib.util, os, sys, time
spec = importlib.util.spec_from_file_location("lava_reference", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
# import while the test trains and writes the request
import lava.proc.lif.process, lava.proc.dense.process, lava.proc.monitor.process
import lava.magma.core.run_configs
deadline = time.time() + 600
while not os.path.exists(sys.argv[2]):
    if time.time() > deadline:
        sys.exit("lava driver: no request arrived")
    time.sleep(0.05)
mod.run_request(sys.argv[2], sys.argv[3])
"""


# ------------------------------------------------------------------------------------- graphs
def _group(shape, *, thr, idecay=1024, vdecay=256, bias=0, bias_exp=6, spiking=True, v0=0):
    n = int(np.prod(shape))
    b = np.asarray(bias, dtype=np.int64)
    return NeuronGroup(shape=tuple(shape), current_decay=idecay, voltage_decay=vdecay,
                       threshold=thr, bias=np.broadcast_to(b, (n,)).copy() if b.ndim == 0 else b,
                       bias_exp=bias_exp, spiking=spiking, initial_v=v0)


def _trained_graph(tmp, *, mp_init: bool):
    ds = load_dataset("digits")
    torch.manual_seed(0)
    spec = ModelSpec(arch="mlp", input_shape=(1, 8, 8), hidden=[32], steps=10,
                     encoding={"kind": "rate"}, neuron={"threshold": 0.5, "mp_init": mp_init})
    res = train_model(build_model(spec), ds, TrainConfig(epochs=1, threads=1),
                      tmp / f"train_{mp_init}", progress=False)
    model = load_checkpoint(res.checkpoint).build()
    graph = lower_model(model, "loihi", ds.x_train[:300])
    x = encode_inputs(ds.x_test[:3], graph.steps, graph.encoding)  # [3, T, 1, 8, 8]
    return graph, x


def _per_neuron_decays_graph():
    """Decays per neuron (a DeployGraph holds them as arrays; lowering writes one per layer)."""
    rng = np.random.default_rng(31)
    n1, n2 = 12, 4
    layers = [
        Dense(weight=rng.integers(-120, 200, size=(n1, 20)),
              neurons=_group((n1,), thr=300, idecay=rng.choice([0, 1, 700, 2048, 4095, 4096], n1),
                             vdecay=rng.choice([0, 1, 100, 2000, 4095, 4096], n1),
                             bias=rng.integers(-30, 30, n1)), name="hidden"),
        Dense(weight=rng.integers(-256, 256, size=(n2, n1)),
              neurons=_group((n2,), thr=131071, idecay=np.array([4096, 2000, 0, 1]),
                             vdecay=np.array([0, 64, 4096, 7]), spiking=False), name="head"),
    ]
    return DeployGraph(profile="loihi", family="loihi", input_shape=(20,), layers=layers,
                       steps=30, encoding={"kind": "rate"})


def _conv_graph():
    """Grouped conv with per-channel bias and MP-Init, sum pooling, strided conv, flatten."""
    rng = np.random.default_rng(11)
    layers = [
        Conv2d(weight=rng.integers(-255, 256, size=(4, 1, 3, 3)),
               neurons=_group((4, 9, 4), thr=600, bias=np.repeat(rng.integers(-15, 15, 4), 36),
                              v0=9000),
               stride=(1, 2), padding=(1, 1), groups=2, name="conv1"),
        SumPool2d(kernel=(3, 2), neurons=_group((4, 3, 2), thr=1, idecay=3000, vdecay=3000),
                  name="pool"),
        Conv2d(weight=rng.integers(-100, 120, size=(3, 4, 2, 2)),
               neurons=_group((3, 2, 1), thr=80, idecay=512, vdecay=64,
                              bias=rng.integers(-25, 25, size=6)),
               stride=(1, 1), padding=(0, 0), name="conv2"),
        Flatten(name="flat"),
        Dense(weight=rng.integers(-256, 256, size=(3, 6)),
              neurons=_group((3,), thr=131071, idecay=4096, vdecay=0, bias=[64, -64, 0],
                             spiking=False), name="head"),
    ]
    return DeployGraph(profile="loihi", family="loihi", input_shape=(2, 9, 7), layers=layers,
                       steps=24, encoding={"kind": "rate"})


def _graded_graph():
    """8-bit graded input through a flatten of the (C, H, W) input, negative weight exponent."""
    rng = np.random.default_rng(12)
    layers = [
        Flatten(name="flat"),
        Dense(weight=rng.integers(-40, 40, size=(10, 16)), weight_exp=-2,
              neurons=_group((10,), thr=800, v0=-3000), name="fc1"),
        Dense(weight=rng.integers(-256, 256, size=(4, 10)),
              neurons=_group((4,), thr=131071, idecay=4096, vdecay=0, spiking=False),
              name="head"),
    ]
    return DeployGraph(profile="loihi2", family="loihi", input_shape=(1, 4, 4), layers=layers,
                       steps=12, encoding={"kind": "direct", "bits": 8})


def _extreme_graph(seed: int) -> DeployGraph:
    """Random dense chains at the edges of the arithmetic: weights at -256/255, even weights
    beyond 8 bits (their factor of two moves into the exponent), weight_exp -3..3, per-neuron
    decays with 0, 1, 4095 and 4096, 13-bit bias mantissas with exponents -3..3, MP-Init, and a
    read-out driven into saturation."""
    rng = np.random.default_rng(1000 + seed)
    n_prev, layers = int(rng.integers(16, 40)), []
    n_in = n_prev
    for k in range(int(rng.integers(2, 4))):
        last = k == 2 or (k == 1 and rng.random() < 0.5)
        n = int(rng.integers(4, 7)) if last else int(rng.integers(8, 24))
        w = rng.integers(-256, 256, size=(n, n_prev))
        w[rng.random(w.shape) < 0.3] = 255
        w[rng.random(w.shape) < 0.1] = -256
        e = int(rng.integers(-3, 4))
        if k == 1:  # even weights up to 2 * 255: exact only as (w / 2) with exponent e + 1
            w = 2 * w
        decays = [0, 1, int(rng.integers(2, 4095)), 4095, 4096]
        group = _group((n,), thr=131071 if last else int(rng.integers(50, 400) * 2.0**e) + 1,
                       idecay=rng.choice(decays, n), vdecay=rng.choice(decays, n),
                       bias=rng.integers(-4096, 4096, n), bias_exp=int(rng.integers(-3, 4)),
                       spiking=not last, v0=int(rng.integers(-20000, 20000)))
        layers.append(Dense(weight=w, weight_exp=e, neurons=group, name=f"l{k}"))
        n_prev = n
        if last:
            break
    return DeployGraph(profile="loihi", family="loihi", input_shape=(n_in,), layers=layers,
                       steps=40, encoding={"kind": "rate"})


def _saturation_graph():
    """Constant maximal drive: the hidden u passes 24 bits (single wrap correction), the
    read-out v saturates at 2**23 - 1 and, inhibited, at -(2**23 - 1)."""
    w1 = np.full((16, 100), 40)
    w1[:8] = 255  # 100 * 255 << 3 << 6 > 2**23: u wraps (single correction), never spikes
    w2 = np.full((2, 16), 255)
    w2[1] = -256
    layers = [Dense(weight=w1, weight_exp=3,
                    neurons=_group((16,), thr=10, idecay=4096, vdecay=0, v0=100), name="drive"),
              Dense(weight=w2, weight_exp=3, neurons=_group((2,), thr=131071, idecay=0, vdecay=0,
                                                           spiking=False), name="head")]
    return DeployGraph(profile="loihi", family="loihi", input_shape=(100,), layers=layers,
                       steps=40, encoding={"kind": "rate"})


# ----------------------------------------------------------------------------- running both
@pytest.fixture(scope="module")
def results(lava_python, lava_script, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lava_process")
    cases, header, arrays = run_lava_overlapped(lava_python, lava_script, DRIVER, tmp,
                                                lambda req: _build_cases(lava_script, tmp, req))
    infos = {c["name"]: c for c in header["cases"]}
    return cases, infos, arrays


def _build_cases(lava_script, tmp, req_path):
    """Export every case (to a file, read back as a user would), simulate it, write the
    request; returns name -> (graph, simulator result)."""
    req = lava_script.Request()
    cases = {}
    rng = np.random.default_rng(1)

    def add(name, graph, seq):
        exported = export_lava_process(graph, tmp / f"{name}.npz")
        header, arrays = lava_script.load_npz(exported.path)
        ours = Simulator(graph).run(seq[None], record=("spikes", "u", "v"))
        req.add_graph(name, header, arrays, seq)
        cases[name] = (graph, ours)

    model = _lava_model()

    def add_general(name, graph, seq):
        exported = export_lava_process(graph, tmp / f"{name}.npz")
        header, arrays = lava_script.load_npz(exported.path)
        req.add_graph(name, header, arrays, seq)
        cases[name] = (graph, model.records(graph, seq), header)

    mlp, x = _trained_graph(tmp, mp_init=False)
    # three samples back to back in one run: the state carries over, as on the chip
    add("mlp", mlp, np.concatenate([padded(mlp, xi) for xi in x]))
    mp, x = _trained_graph(tmp, mp_init=True)
    add("mp_init", mp, padded(mp, x[0]))
    cases["mp_init_second"] = None  # a second sample from the initial state, in its own run
    add("mp_init_second", mp, padded(mp, x[1]))
    dec = _per_neuron_decays_graph()
    add("per_neuron_decays", dec, padded(dec, (rng.random((30, 20)) < 0.4).astype(np.int64)))
    graded = _graded_graph()
    add("graded", graded, padded(graded, rng.integers(0, 256, size=(12, 1, 4, 4))))
    sat = _saturation_graph()
    add("saturation", sat, padded(sat, np.ones((40, 100), np.int64)))
    for seed in range(EXTREME_SEEDS):
        g = _extreme_graph(seed)
        add(f"extreme_{seed}", g,
            padded(g, (rng.random((40, *g.input_shape)) < 0.4).astype(np.int64)))
    trained = _trained_graph_networks()
    # graphs beyond chains: several samples back to back, compared with the simulator (or,
    # where it runs chains only, the step-major reference of the graph semantics)
    for which, seeds, samples in (("recurrent", (0, 1), 3), ("graded_skip", (0,), 2)):
        make, inputs = model.GENERAL[which]
        for seed in seeds:
            g = make(seed)
            seq = np.concatenate([_pad(g, np.asarray(inputs(rng), np.int64))
                                  for _ in range(samples)])
            add_general(f"{which}_{seed}", g, seq)
    probe = _delay_probe_graph()
    add_general("delay_probe", probe, np.eye(12, 1, dtype=np.int64))
    for name in ("trained_recurrent", "trained_residual"):  # the residual one: Conv processes
        g, events, _ = trained[name]
        add_general(name, g, np.concatenate([_pad(g, e) for e in events]))
        cases[name] += (trained[name][2],)
    for seed in (0, 1):  # Conv processes: after the dense-only cases (torch import)
        g = model.residual_graph(seed)
        seq = np.concatenate([_pad(g, (rng.random((20, 2, 6, 5)) < 0.35).astype(np.int64))
                              for _ in range(3)])
        add_general(f"residual_{seed}", g, seq)
    conv = _conv_graph()  # last: Lava's Conv imports torch
    add("conv", conv, padded(conv, (rng.random((24, 2, 9, 7)) < 0.3).astype(np.int64)))
    req.save(req_path)
    return cases


@functools.cache
def _test_module(filename: str):
    """A module of ``tests/`` by file name (pytest imports test modules by their basename)."""
    path = Path(__file__).resolve().parents[1] / filename
    spec = importlib.util.spec_from_file_location(f"ref_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _lava_model():
    return _test_module("test_export_lava_process.py")


def _trained_graph_networks():
    """The recurrent MLP on digit rows (4-bit graded input, a self-recurrent LIF group) and the
    residual ConvNet (stride-2 conv, a 3x3 conv merged with a 1x1 conv skip of delay 2, 8-bit
    graded input) of ``tests/test_graph_deploy.py``, built as GraphNets, trained briefly and
    lowered for Loihi 2 through the fake-quant network; three test samples each as input
    events ``[N, T, ...]``."""
    from tests.graph_training import ROW_LEVELS, rows_sequence, train_graph_model

    gd = _test_module("test_graph_deploy.py")
    ds = load_dataset("digits")

    def rows(x):
        return torch.round(x[:, 0] * ROW_LEVELS)
    torch.manual_seed(0)
    rnn = GraphModel(gd.recurrent_mlp(32), 8, {"kind": "direct", "bits": 4})
    train_graph_model(rnn, rows(ds.x_train[:600]), ds.y_train[:600], rows_sequence, epochs=2, lr=5e-3)
    res = GraphModel(gd.residual_convnet(), 4, {"kind": "direct", "bits": 8},
                     {"dataset": "digits"})
    train_graph_model(res, ds.x_train[:600], ds.y_train[:600], res.encode, epochs=1, lr=3e-3)
    out = {}
    for name, model, cal, test in (
            ("trained_recurrent", rnn, rows(ds.x_train[:200]), rows(ds.x_test[:3])),
            ("trained_residual", res, ds.x_train[:200], ds.x_test[:3])):
        fq = fake_quantize(model, "loihi2", cal)
        graph = graph_from_fakequant(fq)
        assert not graph.is_chain()
        first = fq.readout_integers(test[:1]).numpy().astype(np.int64)[0]
        out[name] = (graph, fq.encode(test).numpy().astype(np.int64), first)
    return out


def _pad(graph, x):
    """One sample followed by the network's latency of zero input (the description's latency:
    the longest path of delays to the read-out)."""
    lat = lava_network_spec(graph)[0]["latency"]
    return np.concatenate([x, np.zeros((lat, *x.shape[1:]), np.int64)])


def _delay_probe_graph():
    """One input spike at step 1 through five edges of delays 1..5 into five neurons whose
    current lasts one step (iDecay 4096) and whose v is replaced (vDecay 4096): neuron j must
    show u = 64 * 10 (j + 1) at step 1 + (j + 1) and nowhere else (worked out by hand)."""
    w = np.zeros((5, 1), np.int64)
    w[0, 0] = 10
    extra = []
    for j in range(1, 5):
        wj = np.zeros((5, 1), np.int64)
        wj[j, 0] = 10 * (j + 1)
        extra.append(Projection(source=-1, weight=wj, delay=j + 1, name=f"delay{j + 1}"))
    layers = [Dense(weight=w, neurons=_group((5,), thr=131071, idecay=4096, vdecay=4096,
                                             spiking=False),
                    extra=extra, name="probe")]
    return DeployGraph(profile="loihi2", family="loihi", input_shape=(1,), layers=layers, steps=12,
                       encoding={"kind": "rate"})


GENERAL_CASES = ["recurrent_0", "recurrent_1", "graded_skip_0", "delay_probe",
                 "trained_recurrent", "trained_residual", "residual_0", "residual_1"]


@pytest.mark.parametrize("name", GENERAL_CASES)
def test_graphs_beyond_chains_match_lava_step_for_step(name, results):
    """Merges, recurrent Dense and Conv edges, delays above one step (DelayDense; an identity
    relay before a Conv), dense edges into (C, H, W) groups, per-neuron decays and MP-Init:
    Lava's spikes, u and v of every group at every step are the simulator's."""
    cases, infos, arrays = results
    assert infos[name]["ok"], f"{name}: {infos[name]['error']}"
    graph, ours, header = cases[name][:3]
    problems = []
    for i, n in enumerate(header["neurons"]):
        for var in ("spikes", "u", "v"):
            mine, theirs = ours[(n["name"], var)], arrays[f"{name}.layer{i}.{var}"]
            assert mine.shape == theirs.shape, f"{name} {n['name']} {var}: shapes differ"
            bad = np.argwhere(mine != theirs)
            if len(bad):
                t, j = bad[0]
                problems.append(f"{n['name']} {var}: {len(bad)} differ, first at step {t + 1} "
                                f"neuron {j}: ours {mine[t, j]}, Lava {theirs[t, j]}")
    assert not problems, f"{name}: " + "; ".join(problems)
    spiking = [n["name"] for n in header["neurons"] if n["spiking"]]
    assert all(ours[(n, "spikes")].sum() > 0 for n in spiking), f"{name}: a group never spikes"


@pytest.mark.parametrize("name", ["trained_recurrent", "trained_residual"])
def test_trained_graph_networks_read_out_as_the_fake_quant_network(name, results):
    """The first sample's read-out in Lava (the read-out group's v at its last step) is the
    fake-quant network's integer read-out of that sample."""
    cases, infos, arrays = results
    assert infos[name]["ok"], infos[name]["error"]
    graph, _, header, fq_first = cases[name]
    steps = graph.steps + header["latency"]
    last = len(header["neurons"]) - 1
    np.testing.assert_array_equal(arrays[f"{name}.layer{last}.v"][steps - 1], fq_first)


def test_delay_probe_is_the_hand_worked_timing(results):
    """A delay-d edge delivers d steps after the spike, in Lava and in neurodeploy."""
    _, infos, arrays = results
    assert infos["delay_probe"]["ok"], infos["delay_probe"]["error"]
    expect = np.zeros((12, 5), np.int64)
    for j in range(5):
        expect[j + 1, j] = 64 * 10 * (j + 1)  # row t is step t + 1; the spike is at step 1
    np.testing.assert_array_equal(arrays["delay_probe.layer0.u"], expect)
    np.testing.assert_array_equal(arrays["delay_probe.layer0.v"], expect)


EXTREME_SEEDS = 6
CASES = ["mlp", "mp_init", "mp_init_second", "per_neuron_decays", "graded", "saturation",
         *[f"extreme_{s}" for s in range(EXTREME_SEEDS)], "conv"]


def _lava_order(a: np.ndarray) -> np.ndarray:
    """Ours ``[T, *shape]`` (torch order) as Lava's monitor rows ``(T, N)``."""
    if a.ndim == 4:
        a = a.transpose(0, 3, 2, 1)
    return a.reshape(a.shape[0], -1).astype(np.int64)


@pytest.mark.parametrize("name", CASES)
def test_every_group_matches_lava_step_for_step(name, results):
    cases, infos, arrays = results
    info = infos[name]
    assert info["ok"], f"{name}: {info['error']}"
    graph, ours = cases[name]
    problems = []
    for i, layer in enumerate(ours.layer_names):
        for var, mine in (("spikes", ours.rasters[layer][0]), ("u", ours.states["u"][layer][0]),
                          ("v", ours.states["v"][layer][0])):
            theirs = arrays[f"{name}.layer{i}.{var}"]
            mine = _lava_order(np.asarray(mine))
            assert mine.shape == theirs.shape, f"{name} {layer} {var}: shapes differ"
            bad = np.argwhere(mine != theirs)
            if len(bad):
                t, j = bad[0]
                problems.append(f"{layer} {var}: {len(bad)} differ, first at step {t + 1} "
                                f"neuron {j} (Lava order): ours {mine[t, j]}, Lava {theirs[t, j]}")
    assert not problems, f"{name}: " + "; ".join(problems)
    last = len(ours.layer_names) - 1
    assert np.array_equal(arrays[f"{name}.output"], arrays[f"{name}.layer{last}.spikes"])
    if ours.readout_kind == "potential":  # the read-out: the last group's v at the last step
        lava_v = arrays[f"{name}.layer{last}.v"][-1]
        assert np.array_equal(lava_v, _lava_order(ours.readout[:1])[0])


def test_cases_are_not_vacuous(results):
    cases, _, arrays = results
    for name in CASES:
        graph, ours = cases[name]
        spiking = [k for k, s in enumerate(ours.spiking) if s]
        assert all(ours.spike_counts[0, k] > 0 for k in spiking), f"{name}: a layer never spikes"
    # MP-Init: the hidden group starts from its initial potential, which netx cannot hold
    mp, ours = cases["mp_init"]
    v0 = mp.layers[1].neurons.initial_v
    assert v0 != 0
    with pytest.raises(UnsupportedError, match="initial potential"):
        export_netx(mp, "never-written.net")
    # per-neuron decays reach Lava as arrays (netx takes one value per layer)
    header, _ = lava_network_spec(cases["per_neuron_decays"][0])
    assert all(isinstance(n["du"], str) and isinstance(n["dv"], str) for n in header["neurons"])
    # the saturation case reaches both rails and the single wrap correction
    v = arrays["saturation.layer1.v"]
    assert v[:, 0].max() == V_MAX and v[:, 1].min() == -V_MAX
    # u' = 100 * 255 << 3 << 6 = 13,056,000 > 2**23 comes back as u' - 2**24, in both
    assert arrays["saturation.layer0.u"][:, 0].min() == 13_056_000 - 2**24
    assert cases["saturation"][1].u_overflows[0, 0] > 0
    # an extreme case had weights beyond 8 bits, exported with a larger exponent
    g = _extreme_graph(0)
    header, arrays0 = lava_network_spec(g)
    assert np.abs(g.layers[1].weight).max() > 256
    assert header["connections"][1]["weight_exp"] == g.layers[1].weight_exp + 1
