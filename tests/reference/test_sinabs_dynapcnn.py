"""neurodeploy's Speck simulator against Sinabs 3.1.3's ``DynapcnnNetwork``, layer by layer.

Optional: needs the Sinabs environment (``bash tools/speck_env.sh``, or
``NEURODEPLOY_SPECK_PYTHON`` naming the python of one) and is skipped without it. Every network
runs through :class:`neurodeploy.sim.Simulator` and, via ``tools/speck_reference.py``, through the
``DynapcnnNetwork`` a Sinabs user builds from the same integers (``discretize=False``: the values
are already the chip's). Compared: the output events of every DYNAP-CNN layer at every step
(``return_complete=True``), the memory of every layer (``memory_summary``) and whether a
layer-to-core assignment exists (``Speck2FConfigBuilder.map_layers_to_cores``).

For the trained networks Sinabs also discretizes the float network itself (``discretize=True``
with ``min_v_mem = -threshold``) and must choose the graph's integers: the two lowerings are one.

Networks: ConvNets trained on digits and lowered to ``speck2f`` (all 360 test samples, 8 steps),
and seeded random integer networks with sum pooling, biases, several events per step, the lower
bound ``min_v_mem`` and two whose potentials leave 16 bits (flagged by the simulator; Sinabs's
software forward does not saturate either, so the two still agree there; in one a neuron sends
more than 2**16 events in a step, which Sinabs does not cap).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from neurodeploy.data import load_dataset
from neurodeploy.families import rules as design_rules
from neurodeploy.families.speck.memory import layer_memories
from neurodeploy.hardware import load_profile
from neurodeploy.hardware.structure import layer_structure
from neurodeploy.lower.graph import Conv2d, Dense, DeployGraph, Flatten, NeuronGroup, SumPool2d
from neurodeploy.lower.lowering import graph_from_fakequant
from neurodeploy.models import ModelSpec, build_model
from neurodeploy.quantize.fakequant import fake_quantize
from neurodeploy.quantize.fold import fold_model
from neurodeploy.sim import Simulator
from neurodeploy.train.checkpoint import load_checkpoint
from neurodeploy.train.config import TrainConfig
from neurodeploy.train.trainer import train_model

pytestmark = pytest.mark.reference

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "tools" / "speck_reference.py"
DEFAULT_ENV = REPO_ROOT / ".speck-env"
BUILD_HINT = ("build it with `bash tools/speck_env.sh` or set NEURODEPLOY_SPECK_PYTHON to the "
              "python of such an environment")
PROFILE = "speck2f"


def _speck_python() -> Path:
    explicit = os.environ.get("NEURODEPLOY_SPECK_PYTHON")
    if explicit:
        if not Path(explicit).is_file():
            raise pytest.UsageError(f"NEURODEPLOY_SPECK_PYTHON={explicit} does not exist; {BUILD_HINT}")
        return Path(explicit)
    py = DEFAULT_ENV / "bin" / "python"
    if not (py.exists() and (DEFAULT_ENV / ".complete").exists()):
        pytest.skip(f"no Sinabs reference environment at {DEFAULT_ENV}; {BUILD_HINT}")
    return py


def _script():
    spec = importlib.util.spec_from_file_location("speck_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_sinabs(cases: dict[str, tuple[DeployGraph, np.ndarray]], tmp: Path,
                floats: dict[str, list[dict]] | None = None) -> dict[str, dict]:
    """Run every case through Sinabs in one subprocess; their results by name. ``floats``: per
    case the float network for Sinabs to discretize itself."""
    py, ref = _speck_python(), _script()
    args = []
    for name, (graph, events) in cases.items():
        req, res = tmp / f"{name}-req.npz", tmp / f"{name}-res.npz"
        ref.write_request(req, graph, events, (floats or {}).get(name))
        args += [str(req), str(res)]
    proc = subprocess.run([str(py), str(SCRIPT), "run", *args], capture_output=True, text=True,
                          timeout=900)
    if proc.returncode:
        pytest.fail(f"Sinabs run failed:\n{proc.stderr[-4000:]}")
    return {name: ref.read_result(tmp / f"{name}-res.npz") for name in cases}


def _chip_layer_rasters(graph: DeployGraph, result) -> list[np.ndarray]:
    """Per DYNAP-CNN layer (dense/conv), the events it sends on: its pooling's if it has one."""
    structs = layer_structure(graph)
    out = []
    for st in structs:
        if graph.layers[st.index].kind == "sumpool":
            out[-1] = result.rasters[st.name]
        else:
            out.append(result.rasters[st.name])
    return out


def _compare(graph: DeployGraph, events: np.ndarray, ref: dict) -> dict[str, int]:
    sim = Simulator(graph, PROFILE)
    res = sim.run(events, record=("spikes",))
    ours = _chip_layer_rasters(graph, res)
    assert len(ours) == len(ref["outputs"])
    for k, (a, b) in enumerate(zip(ours, ref["outputs"], strict=True)):
        np.testing.assert_array_equal(a.reshape(b.shape), b, err_msg=f"DYNAP-CNN layer {k}")
    mem = layer_memories(graph.layers)
    assert [(m.kernel, m.neuron, m.bias) for m in mem] == \
        [(m["kernel"], m["neuron"], m["bias"]) for m in ref["memory"]]
    refused = design_rules.violations(load_profile(PROFILE), "fit", layers=graph.layers)
    assert bool(refused) == bool(ref["mapping_error"]), (refused, ref["mapping_error"])
    return {"events": int(sum(int(a.sum()) for a in ours)),
            "v_overflows": int(res.v_overflows.sum()),
            "max_events_per_step": int(max(a.max() for a in ours))}


# --------------------------------------------------------------------------- trained networks
def _train(spec: ModelSpec, ds, tmp: Path, epochs: int):
    torch.manual_seed(0)
    res = train_model(build_model(spec), ds, TrainConfig(epochs=epochs, threads=1), tmp,
                      progress=False)
    return load_checkpoint(res.checkpoint).build()


_IF = {"model": "if", "threshold": 1.0, "reset": "subtract",
       "surrogate": {"name": "atan", "alpha": 2.0}}
TRAINED = {
    "pooled": ModelSpec(arch="convnet", input_shape=(1, 8, 8), hidden=[8, 16], pool="avg",
                        bias=False, steps=8, encoding={"kind": "rate", "seed": 7},
                        readout="spike_count", neuron=_IF),
    "strided-bias-head": ModelSpec(arch="convnet", input_shape=(1, 8, 8), hidden=[8, 8],
                                   dense=[32], pool="none", bias=True, steps=8,
                                   encoding={"kind": "rate", "seed": 3}, readout="spike_count",
                                   neuron=_IF),
}


@pytest.mark.slow
def test_trained_convnets_give_sinabs_events_layer_by_layer(tmp_path):
    _speck_python()
    ds = load_dataset("digits")
    cases, floats = {}, {}
    for name, spec in TRAINED.items():
        model = _train(spec, ds, tmp_path / name, epochs=3)
        fq = fake_quantize(model, PROFILE, ds.x_train[:300])
        graph = graph_from_fakequant(fq)
        cases[name] = (graph, fq.encode(ds.x_test).numpy())
        blocks = [b for b in fold_model(model) if b.kind != "flatten"]
        floats[name] = [{"weight": (b.weight * layer.input_unit).numpy(), "bias": b.bias.numpy(),
                         "threshold": b.neurons.threshold}
                        for b, layer in zip(blocks, fq.layers, strict=True)]
    refs = _run_sinabs(cases, tmp_path, floats)
    for name, (graph, events) in cases.items():
        stats = _compare(graph, events, refs[name])
        assert stats["v_overflows"] == 0, name
        assert stats["events"] > 1000, name  # the layers are active: the comparison means something
        assert refs[name]["cores"], name
        # Sinabs's own discretize=True of the float network chooses the graph's integers
        ours = [layer for layer in graph.layers if layer.kind in ("dense", "conv")]
        for k, (layer, disc) in enumerate(zip(ours, refs[name]["discretized"], strict=True)):
            g = layer.neurons
            np.testing.assert_array_equal(disc["weight"].reshape(layer.weight.shape), layer.weight,
                                          err_msg=f"{name} layer {k} weights")
            np.testing.assert_array_equal(disc["bias"], np.broadcast_to(g.bias, disc["bias"].shape))
            assert (disc["threshold"], disc["min_v_mem"]) == (g.threshold, -g.threshold), (name, k)


# ---------------------------------------------------------------------------- random networks
def _group(shape, threshold, bias=0, pool=False):
    c = shape[0]
    return NeuronGroup(shape=tuple(shape), current_decay=4096, voltage_decay=0,
                       threshold=1 if pool else int(threshold),
                       bias=np.zeros(c, np.int64) if pool else np.asarray(bias, np.int64),
                       reset="subtract")


def _random_graph(rng: np.random.Generator, *, size=8, w_scale=127, thr=(20, 400),
                  bias=True) -> DeployGraph:
    c_in = int(rng.integers(1, 3))
    layers: list = []
    shape = (c_in, size, size)
    for _ in range(2):
        f, k = int(rng.integers(2, 7)), int(rng.choice([1, 3, 5]))
        stride = int(rng.choice([1, 2])) if shape[1] >= 6 else 1
        pad = k // 2
        w = rng.integers(-w_scale, w_scale + 1, size=(f, shape[0], k, k))
        h = (shape[1] + 2 * pad - k) // stride + 1
        b = rng.integers(-20, 21, size=f) if bias else np.zeros(f, np.int64)
        layers.append(Conv2d(weight=w, neurons=_group((f, h, h), rng.integers(*thr), b),
                             stride=(stride, stride), padding=(pad, pad)))
        shape = (f, h, h)
        if h % 2 == 0 and h >= 4 and rng.random() < 0.7:
            layers.append(SumPool2d(kernel=(2, 2), neurons=_group((f, h // 2, h // 2), 1, pool=True),
                                    stride=(2, 2)))
            shape = (f, h // 2, h // 2)
    layers.append(Flatten())
    n_in = int(np.prod(shape))
    n_out = int(rng.integers(3, 11))
    layers.append(Dense(weight=rng.integers(-w_scale, w_scale + 1, size=(n_out, n_in)),
                        neurons=_group((n_out,), rng.integers(*thr))))
    return DeployGraph(profile=PROFILE, family="speck", input_shape=(c_in, size, size),
                       layers=layers, steps=10, readout={"kind": "spike_count"},
                       target=load_profile(PROFILE))


def test_random_integer_networks_give_sinabs_events_layer_by_layer(tmp_path):
    _speck_python()
    cases = {}
    for seed in range(6):
        rng = np.random.default_rng(seed)
        small = seed < 3  # small thresholds and weights: many events per step
        graph = _random_graph(rng, bias=seed % 2 == 0, thr=(5, 60) if small else (100, 600),
                              w_scale=12 if small else 127)
        events = (rng.random((4, 10, *graph.input_shape)) < 0.4).astype(np.int64)
        cases[f"random{seed}"] = (graph, events)
    rng = np.random.default_rng(99)  # large weights, small thresholds: potentials beyond 16 bits
    big = _random_graph(rng, size=16, thr=(100, 200))
    cases["beyond16bit"] = (big, np.ones((2, 10, *big.input_shape), np.int64))
    rng = np.random.default_rng(10)  # thresholds of 4..7: one neuron sends more than 2**16 events in a step
    flood = _random_graph(rng, size=16, thr=(4, 8))
    cases["beyond16bitflood"] = (flood, np.ones((2, 10, *flood.input_shape), np.int64))
    refs = _run_sinabs(cases, tmp_path)
    multi = clamp = 0
    for name, (graph, events) in cases.items():
        stats = _compare(graph, events, refs[name])
        if name.startswith("beyond16bit"):
            assert stats["v_overflows"] > 0  # flagged, and still Sinabs's events
        else:
            assert stats["v_overflows"] == 0, name
        if name == "beyond16bitflood":  # Sinabs's MultiSpike has no cap, nor has the profile
            assert stats["max_events_per_step"] > 2**16
        multi += stats["max_events_per_step"] > 1
    sim = Simulator(cases["random0"][0], PROFILE)
    res = sim.run(cases["random0"][1], record=("v",))
    clamp = sum(int((v == -g.neurons.threshold).sum())
                for v, g in zip(res.states["v"].values(),
                                [g for g in cases["random0"][0].layers if g.kind != "flatten"],
                                strict=True))
    assert multi >= 3 and clamp > 0  # several events per step and the lower bound both happen


def test_memory_and_core_mapping_agree_with_sinabs_on_networks_that_do_not_fit(tmp_path):
    _speck_python()
    rng = np.random.default_rng(5)
    # neuron memory 64 * 2**(6+6) = 262144 > 65536 on every core
    wide = DeployGraph(profile=PROFILE, family="speck", input_shape=(1, 64, 64), layers=[
        Conv2d(weight=rng.integers(-3, 4, size=(64, 1, 3, 3)), neurons=_group((64, 64, 64), 50),
               padding=(1, 1)),
        Flatten(),
        Dense(weight=rng.integers(-3, 4, size=(2, 64 * 64 * 64)), neurons=_group((2,), 50)),
    ], steps=2, readout={"kind": "spike_count"}, target=load_profile(PROFILE))
    # three layers of kernel memory 16 * 2**(8 + 4) = 65536: each fits core 5 or 6, not all three
    deep = DeployGraph(profile=PROFILE, family="speck", input_shape=(16, 4, 4), layers=[
        Conv2d(weight=rng.integers(-3, 4, size=(16, 16, 13, 13)), neurons=_group((16, 4, 4), 50),
               padding=(6, 6))
        for _ in range(3)
    ], steps=2, readout={"kind": "spike_count"}, target=load_profile(PROFILE))
    cases = {"wide": (wide, np.ones((1, 2, 1, 64, 64), np.int64)),
             "deep": (deep, np.ones((1, 2, 16, 4, 4), np.int64))}
    refs = _run_sinabs(cases, tmp_path)
    for name, (graph, events) in cases.items():
        assert refs[name]["mapping_error"], name
        _compare(graph, events, refs[name])
    p = load_profile(PROFILE)
    assert any("(rule neuron_memory)" in v for v in design_rules.violations(p, "fit", layers=wide.layers))
    found = design_rules.violations(p, "fit", layers=deep.layers)
    assert any("(rule core_mapping)" in v for v in found)
    assert not any("(rule kernel_memory)" in v for v in found)
