"""Files written by :func:`neurodeploy.export.netx.export_netx`, run in Lava 0.10 / lava-dl 0.6.

Optional: needs the Lava reference environment (``bash tools/lava_env.sh``; see
docs/lava_reference.md) and is skipped without it. Every case is a ``.net`` file loaded with
``netx.hdf5.Network`` and run with ``Loihi2SimCfg(select_tag='fixed_pt')`` from a RingBuffer, with
Monitors on every layer; spikes and ``v`` of every layer at every step are compared with
:class:`neurodeploy.sim.Simulator` on the graph that was exported, and the read-out (the last
layer's ``v`` at the last step) with the simulator's read-out.

All cases run in one Lava subprocess, started first so that its imports overlap the training of
the test network. It drives ``tools/lava_reference.py`` (its request format and
its ``run_request``) with one change: a netx case may name ``input_message_bits``, which is passed
to ``netx.hdf5.Network`` (graded input cannot be declared in the file itself).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import padded, run_lava_overlapped  # tests/reference/conftest.py

from neurodeploy.data import load_dataset
from neurodeploy.export.netx import export_netx, read_netx
from neurodeploy.lower.graph import Conv2d, Dense, DeployGraph, Flatten, NeuronGroup
from neurodeploy.lower.inputs import encode_inputs
from neurodeploy.lower.lowering import lower_model
from neurodeploy.models import ModelSpec, build_model
from neurodeploy.sim import Simulator
from neurodeploy.train.config import TrainConfig
from neurodeploy.train.trainer import train_model

pytestmark = pytest.mark.reference

V_MAX = 2**23 - 1

DRIVER = r"""
import importlib.util, os, sys, time
spec = importlib.util.spec_from_file_location("lava_reference", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
from lava.lib.dl import netx  # import while the test trains and writes the request

def _build_netx(case):
    net = netx.hdf5.Network(net_config=case["net"],
                            input_message_bits=int(case.get("input_message_bits", 0)))
    lifs = [layer.neuron for layer in net.layers if getattr(layer, "neuron", None) is not None]
    return net, net.inp, net.out, lifs

mod._build_netx = _build_netx
deadline = time.time() + 600
while not os.path.exists(sys.argv[2]):
    if time.time() > deadline:
        sys.exit("lava driver: no request arrived")
    time.sleep(0.05)
mod.run_request(sys.argv[2], sys.argv[3])
"""


def _group(shape, *, thr, idecay=1024, vdecay=256, bias=0, spiking=True):
    n = int(np.prod(shape))
    b = np.asarray(bias, dtype=np.int64)
    return NeuronGroup(shape=tuple(shape), current_decay=idecay, voltage_decay=vdecay,
                       threshold=thr, bias=np.broadcast_to(b, (n,)).copy() if b.ndim == 0 else b,
                       bias_exp=6, spiking=spiking)


def _readout(n, bias=0):
    return _group((n,), thr=131071, idecay=4096, vdecay=0, bias=bias, spiking=False)


def _trained_graph(tmp_path):
    ds = load_dataset("digits")
    torch.manual_seed(0)
    spec = ModelSpec(arch="mlp", input_shape=(1, 8, 8), hidden=[32], steps=10,
                     encoding={"kind": "rate"}, neuron={"threshold": 0.5})
    res = train_model(build_model(spec), ds, TrainConfig(epochs=1, threads=1), tmp_path / "train",
                      progress=False)
    from neurodeploy.train.checkpoint import load_checkpoint

    model = load_checkpoint(res.checkpoint).build()
    graph = lower_model(model, "loihi", ds.x_train[:300])
    x = encode_inputs(ds.x_test[:4], graph.steps, graph.encoding)  # [4, T, 1, 8, 8]
    return graph, x


def _conv_graph():
    rng = np.random.default_rng(11)
    layers = [
        Conv2d(weight=rng.integers(-100, 120, size=(4, 2, 3, 3)),
               neurons=_group((4, 9, 4), thr=140, bias=np.repeat(rng.integers(-15, 15, 4), 36)),
               stride=(1, 2), padding=(1, 1), name="conv1"),
        Conv2d(weight=rng.integers(-100, 120, size=(3, 4, 3, 3)),
               neurons=_group((3, 5, 2), thr=110, idecay=512, vdecay=64,
                              bias=rng.integers(-25, 25, size=30)),
               stride=(2, 2), padding=(1, 1), name="conv2"),
        Flatten(name="flat"),
        Dense(weight=rng.integers(-200, 200, size=(6, 30)), neurons=_group((6,), thr=150),
              name="fc"),
        Dense(weight=rng.integers(-256, 255, size=(3, 6)), neurons=_readout(3, [64, -64, 0]),
              name="head"),
    ]
    return DeployGraph(profile="loihi", family="loihi", input_shape=(2, 9, 7), layers=layers,
                       steps=24, encoding={"kind": "rate"})


def _graded_graph():
    rng = np.random.default_rng(12)
    layers = [
        Flatten(name="flat"),
        Dense(weight=rng.integers(-40, 40, size=(10, 16)), neurons=_group((10,), thr=3000),
              name="fc1"),
        Dense(weight=rng.integers(-256, 255, size=(4, 10)), neurons=_readout(4), name="head"),
    ]
    return DeployGraph(profile="loihi2", family="loihi", input_shape=(1, 4, 4), layers=layers,
                       steps=12, encoding={"kind": "direct", "bits": 8})


def _saturation_graph():
    layers = [Dense(weight=np.full((16, 6), 200), neurons=_group((16,), thr=10, idecay=4096,
                                                                vdecay=0), name="drive"),
              Dense(weight=np.full((2, 16), 250), neurons=_readout(2), name="head")]
    return DeployGraph(profile="loihi", family="loihi", input_shape=(6,), layers=layers,
                       steps=40, encoding={"kind": "rate"})


def _foreign_inhibitory(path):
    """A netx file written by hand whose all-inhibitory layer has minimum -2**7: netx scales it to
    -256 and Lava clips to -255 and truncates; read_netx must predict what Lava runs."""
    import h5py

    rng = np.random.default_rng(13)
    w1 = rng.integers(-60, 61, size=(8, 10)).astype(np.float32)
    w2 = -rng.choice([128, 64, 96, 32, 0], size=(5, 8)).astype(np.float32)
    w2[0, 0] = -128
    with h5py.File(path, "w") as f:
        f.create_dataset("layer/0/type", data=np.array([b"input"], "S10"))
        f.create_dataset("layer/0/shape", data=np.array([10]))
        for i, (w, thr) in enumerate(((w1, 40), (w2, 5)), start=1):
            f.create_dataset(f"layer/{i}/type", data=np.array([b"dense"], "S10"))
            f.create_dataset(f"layer/{i}/shape", data=np.array([w.shape[0]]))
            f.create_dataset(f"layer/{i}/weight", data=w)
            f[f"layer/{i}/neuron/type"] = "CUBA"
            for key, value in (("iDecay", 2048), ("vDecay", 512), ("vThMant", thr)):
                f[f"layer/{i}/neuron/{key}"] = value
        f.create_dataset("layer/2/bias", data=np.full(5, 3.0, np.float32))
    return path


def _lava_input(graph, seq):
    """Lava input raster for the simulator's input ``seq`` [steps, *input_shape]: the network's
    input port is the flat vector when the input is flattened, else (W, H, C) (the request
    script transposes (T, C, H, W) itself)."""
    if isinstance(graph.layers[0], Flatten):
        return seq.reshape(seq.shape[0], -1)
    return seq


@pytest.fixture(scope="module")
def results(lava_python, lava_script, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lava_netx")
    cases, header, arrays = run_lava_overlapped(lava_python, lava_script, DRIVER, tmp,
                                                lambda req: _build_cases(lava_script, tmp, req))
    infos = {c["name"]: c for c in header["cases"]}
    return cases, infos, arrays


def _build_cases(lava_script, tmp, req_path):
    """Export every case, simulate it, and write the Lava request; returns name -> (graph,
    simulator result)."""
    req = lava_script.Request()
    cases = {}

    def add(name, graph, seq, path, *, message_bits=0, export=True):
        """Run ``seq`` (the whole input timeline, [steps, *input_shape]) in both."""
        if export:
            export_netx(graph, path, graded_input=message_bits > 0)
        ours = Simulator(graph).run(seq[None], record=("spikes", "v"))
        req.add_netx(name, path, _lava_input(graph, seq), record=("spikes", "v"))
        if message_bits:
            req.cases[-1]["input_message_bits"] = message_bits
        cases[name] = (graph, ours)

    graph, x = _trained_graph(tmp)
    # four samples back to back in one run: the first from the reset state, the others with the
    # state carried over (as on the chip)
    add("mlp", graph, np.concatenate([padded(graph, xi) for xi in x]), tmp / "mlp.net")
    conv = _conv_graph()
    rng = np.random.default_rng(1)
    add("conv", conv, padded(conv, (rng.random((24, 2, 9, 7)) < 0.3).astype(np.int64)),
        tmp / "conv.net")
    graded = _graded_graph()
    add("graded", graded, padded(graded, rng.integers(0, 256, size=(12, 1, 4, 4))),
        tmp / "graded.net", message_bits=8)
    sat = _saturation_graph()
    add("readout_saturation", sat, padded(sat, np.ones((40, 6), np.int64)), tmp / "sat.net")
    foreign = _foreign_inhibitory(tmp / "foreign.net")
    fg = read_netx(foreign)
    add("foreign_inhibitory", fg, padded(fg, (rng.random((30, 10)) < 0.5).astype(np.int64)),
        foreign, export=False)
    req.save(req_path)
    return cases


CASES = ["mlp", "conv", "graded", "readout_saturation", "foreign_inhibitory"]


@pytest.mark.parametrize("name", CASES)
def test_every_layer_matches_lava_step_for_step(name, results):
    cases, infos, arrays = results
    info = infos[name]
    assert info["ok"], f"{name}: {info['error']}"
    graph, ours = cases[name]
    steps = ours.steps
    for i, layer in enumerate(ours.layer_names):
        shape = ours.rasters[layer].shape[2:]
        for var, mine in (("spikes", ours.rasters[layer][0]), ("v", ours.states["v"][layer][0])):
            theirs = arrays[f"{name}.layer{i}.{var}"]
            if len(shape) == 3:  # Lava's (W, H, C) order -> ours (C, H, W)
                theirs = theirs.reshape(steps, shape[2], shape[1], shape[0]).transpose(0, 3, 2, 1)
            mine = mine.reshape(theirs.shape).astype(np.int64)
            bad = np.argwhere(mine != theirs)
            assert bad.size == 0, (f"{name} layer {layer} {var}: first mismatch at step/neuron "
                                   f"{bad[0].tolist()}: ours {mine[tuple(bad[0])]}, Lava "
                                   f"{theirs[tuple(bad[0])]}")
    # the read-out: the last layer's v at the last step
    last = ours.layer_names[-1]
    lava_v = arrays[f"{name}.layer{len(ours.layer_names) - 1}.v"][-1]
    if ours.readout_kind == "potential":
        assert np.array_equal(lava_v, ours.readout[0])
    sink = arrays[f"{name}.output"]
    assert np.array_equal(sink.reshape(steps, -1).sum(), ours.rasters[last][0].sum())


def test_cases_are_not_vacuous(results):
    cases, _, arrays = results
    for name in ("mlp", "conv", "graded", "foreign_inhibitory"):
        _, ours = cases[name]
        assert ours.spike_counts[0, :-1].min() > 0, name  # every hidden layer spikes
    _, sat = cases["readout_saturation"]
    v = arrays["readout_saturation.layer1.v"]
    assert v.max() == V_MAX and arrays["readout_saturation.layer1.spikes"].sum() == 0
    assert sat.v_overflows[0, 1] > 0
    graph, _ = cases["foreign_inhibitory"]
    # the second layer's weights are <= 0 with maximum 0: netx maps them as mixed-sign (scale 2,
    # 3 weight bits), Lava's Dense as inhibitory (clip to -255, drop 5 bits): -128 acts as -112
    assert graph.layers[1].weight.min() == -112
