"""Folding and lowering a trained network to a chip profile; refusals; deployed accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from neurodeploy.cli import main
from neurodeploy.data import load_dataset
from neurodeploy.errors import ConfigError, FitError, FormatError, UnsupportedError
from neurodeploy.hardware import load_profile
from neurodeploy.lower.graph import DeployGraph
from neurodeploy.lower.inputs import encode_inputs
from neurodeploy.lower.lowering import lower_model
from neurodeploy.models import ModelSpec, build_model
from neurodeploy.quantize.fold import fold_model, run_blocks
from neurodeploy.sim import Simulator
from neurodeploy.sim.deploy import simulate_checkpoint
from neurodeploy.train.checkpoint import Checkpoint
from neurodeploy.train.config import TrainConfig
from neurodeploy.train.trainer import train_model

FOLD_SPECS = [
    ModelSpec(arch="mlp", input_shape=(1, 8, 8), hidden=[32, 16], batch_norm=True, neuron={"threshold": 0.3}),
    ModelSpec(arch="mlp", input_shape=(1, 8, 8), hidden=[24], steps=5,
              neuron={"threshold": 0.3, "form": "decay_input", "model": "plif", "scale": "threshold_robust",
                      "learn_threshold": True, "mp_init": True}),
    ModelSpec(arch="convnet", input_shape=(1, 12, 12), hidden=[4, 6], pool="avg", batch_norm=True, dense=[10],
              neuron={"threshold": 0.3}),
    ModelSpec(arch="convnet", input_shape=(2, 9, 9), hidden=[4, 6], neuron={"threshold": 0.2, "model": "cuba",
                                                                             "current_decay": 1000}),
    ModelSpec(arch="vgg", input_shape=(1, 8, 8), hidden=[4, "P", 6], pool="avg", neuron={"model": "if"}),
]


@pytest.mark.parametrize("spec", FOLD_SPECS, ids=lambda s: f"{s.arch}-{s.pool}-{s.neuron['model']}")
def test_folding_is_exact(spec):
    torch.manual_seed(0)
    model = build_model(spec).double().train()
    with torch.no_grad():
        for _ in range(3):  # move BN statistics and MP-Init away from their defaults
            model(torch.rand(8, *spec.input_shape, dtype=torch.float64))
    model.eval()
    x = torch.rand(16, *spec.input_shape, dtype=torch.float64)
    expected = model(x) * spec.steps  # the integrator holds T times the mean logits
    got = run_blocks(fold_model(model), model.encode(x))
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ds = load_dataset("digits")
    torch.manual_seed(0)
    spec = ModelSpec(arch="mlp", input_shape=(1, 8, 8), hidden=[64, 64], steps=6,
                     encoding={"kind": "direct", "bits": 8}, neuron={"threshold": 0.5})
    res = train_model(build_model(spec), ds, TrainConfig(epochs=8, threads=1),
                      tmp_path_factory.mktemp("t"), progress=False)
    from neurodeploy.train.checkpoint import load_checkpoint

    return load_checkpoint(res.checkpoint).build(), ds, res.checkpoint


def test_lowered_graph_respects_the_profile_and_predicts_accuracy(trained):
    model, ds, _ = trained
    p = load_profile("loihi2")
    graph = lower_model(model, p, ds.x_train[:300])
    for layer in graph.neuron_layers:
        assert layer.weight.min() >= p.weights.range[0] and layer.weight.max() <= p.weights.range[1]
        assert p.neuron.threshold_range[0] <= layer.neurons.threshold <= p.neuron.threshold_range[1]
        assert np.abs(layer.neurons.bias).max() < 2 ** (p.neuron.bias_mantissa_bits - 1)
    dep = simulate_checkpoint(model, "loihi2", ds, progress=False)
    assert dep.float_accuracy >= 0.9
    assert abs(dep.accuracy - dep.float_accuracy) <= 0.02
    assert all(v == 0 for v in dep.figures["u_overflows"].values())
    assert dep.fit["fits"] and dep.fit["total_cores"] >= 3
    assert dep.figures["synops_per_sample"] > 0 and dep.figures["energy_per_sample_j"] > 0


def test_coarse_weights_cost_accuracy_but_stay_in_range(trained):
    model, ds, _ = trained
    g3 = lower_model(model, "loihi2", ds.x_train[:300], weight_bits=3)
    assert all(layer.weight.min() >= -4 and layer.weight.max() <= 3 for layer in g3.neuron_layers)
    with pytest.raises(ConfigError, match="weight bits"):
        lower_model(model, "loihi2", ds.x_train[:300], weight_bits=1)
    with pytest.raises(ConfigError, match="do not fit"):
        lower_model(model, "loihi2", ds.x_train[:300], weight_bits=16)


def test_graph_file_round_trip_and_corruption(trained, tmp_path):
    model, ds, _ = trained
    graph = lower_model(model, "loihi2", ds.x_train[:100])
    path = graph.save(tmp_path / "g.npz")
    back = DeployGraph.load(path)
    x = encode_inputs(ds.x_test[:40], graph.steps, graph.encoding)
    a = Simulator(graph).run(x, extra_steps=3)
    b = Simulator(back).run(x, extra_steps=3)
    assert np.array_equal(a.readout, b.readout)
    (tmp_path / "bad.npz").write_bytes(path.read_bytes()[:200])
    with pytest.raises(FormatError):
        DeployGraph.load(tmp_path / "bad.npz")
    with pytest.raises(FormatError, match="does not exist"):
        DeployGraph.load(tmp_path / "none.npz")


def _model(**kw):
    spec = dict(arch="mlp", input_shape=(1, 8, 8), hidden=[16], steps=4, encoding={"kind": "rate"})
    spec.update(kw)
    torch.manual_seed(0)
    return build_model(ModelSpec(**spec))


@pytest.mark.parametrize("kwargs, profile, words", [
    ({"encoding": {"kind": "direct"}}, "loihi2", ["direct float input"]),
    ({"encoding": {"kind": "direct", "bits": 8}}, "loihi", ["binary input spikes only"]),
    ({"neuron": {"reset": "subtract"}}, "loihi2", ["reset by subtract"]),
    ({"arch": "convnet", "hidden": [4], "pool": "max"}, "loihi2", ["max pooling"]),
    ({}, "xylo", ["xylo"]),
])
def test_refusals_name_the_problem(kwargs, profile, words):
    model = _model(**kwargs)
    with pytest.raises(UnsupportedError) as err:
        lower_model(model, profile, torch.rand(20, 1, 8, 8))
    msg = str(err.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_network_too_large_for_a_user_profile(tmp_path):
    from pathlib import Path

    src = (Path(__file__).parents[1] / "hardware_profiles" / "loihi2.toml").read_text()
    small = src.replace("cores = 128", "cores = 1").replace("neurons_per_core = 8192", "neurons_per_core = 8")
    path = tmp_path / "tiny.toml"
    path.write_text(small.replace('name = "loihi2"', 'name = "tiny"'))
    with pytest.raises(FitError) as err:
        lower_model(_model(), path, torch.rand(20, 1, 8, 8))
    assert "stages.2" in str(err.value) or "core" in str(err.value)


def test_simulate_cli(trained, tmp_path):
    _, _, ck = trained
    out = tmp_path / "sim.json"
    res = CliRunner().invoke(main, ["simulate", str(ck), "--profile", "loihi2", "--limit", "100",
                                    "-o", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "deployed accuracy" in res.output and out.exists() and out.with_suffix(".npz").exists()
    bad = tmp_path / "bad.toml"
    bad.write_text("[profile]\nname = 3\n")
    res = CliRunner().invoke(main, ["simulate", str(ck), "--profile", str(bad)])
    assert res.exit_code == 2 and res.output.startswith("error: ") and len(res.output.splitlines()) == 1
    res = CliRunner().invoke(main, ["simulate", str(ck), "--steps", "0"])
    assert res.exit_code == 2 and "--steps" in res.output
    res = CliRunner().invoke(main, ["simulate", str(ck), "--profile", "loihi"])
    assert res.exit_code == 2 and "binary input spikes only" in res.output


def test_checkpoint_of_unfittable_layer_kinds_is_refused_by_simulate(tmp_path):
    model = _model(arch="convnet", hidden=[4], pool="max")
    Checkpoint.from_model(model, meta={"dataset": "digits"}).save(tmp_path / "m.pt")
    res = CliRunner().invoke(main, ["simulate", str(tmp_path / "m.pt"), "--limit", "10"])
    assert res.exit_code == 2 and "max pooling" in res.output
