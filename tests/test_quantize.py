"""One semantics per chip: the fake-quant forward and the simulator compute the same integers;
fine-tuning under constraints; the quantize / finetune / sweep commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from neurodeploy.cli import main
from neurodeploy.data import load_dataset
from neurodeploy.errors import DataError, UnsupportedError
from neurodeploy.families import rules as design_rules
from neurodeploy.hardware import list_profiles, load_profile
from neurodeploy.lower.lowering import graph_from_fakequant
from neurodeploy.models import ModelSpec, build_model
from neurodeploy.pipeline import default_run_config
from neurodeploy.quantize.fakequant import Constraints, fake_quantize
from neurodeploy.quantize.finetune import FinetuneConfig
from neurodeploy.quantize.fold import fold_model
from neurodeploy.sim import Simulator
from neurodeploy.sim.deploy import graph_profile
from neurodeploy.train.checkpoint import Checkpoint
from neurodeploy.train.config import TrainConfig
from neurodeploy.train.trainer import train_model
from neurodeploy.workflows import finetune_model, recovered_fraction

sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))
from train_mnist_mlp import mnist_spec  # noqa: E402


def _train(spec: ModelSpec, ds, tmp, epochs=4):
    torch.manual_seed(0)
    res = train_model(build_model(spec), ds, TrainConfig(epochs=epochs, threads=1), tmp, progress=False)
    from neurodeploy.train.checkpoint import load_checkpoint

    return load_checkpoint(res.checkpoint).build()


def _rate(spec: ModelSpec) -> ModelSpec:
    d = spec.to_dict()
    d["encoding"] = {"kind": "rate", "seed": 7}
    return ModelSpec.from_dict(d)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def mnist_small():
    try:  # --data-root is not a test option: NEURODEPLOY_MNIST or ~/.cache/neurodeploy/mnist
        ds = load_dataset("mnist")
    except DataError as exc:
        pytest.skip(f"MNIST IDX files not available (set NEURODEPLOY_MNIST to their folder): {exc}")
    # a quick stand-in for the example's training run: same architecture, fewer images
    ds.x_train, ds.y_train = ds.x_train[:1500], ds.y_train[:1500]
    return ds


def _xylo_spec(encoding: dict) -> ModelSpec:
    """A network Xylo takes: 16 inputs (4x4 digits), two hidden layers (the second fed through
    the recurrent matrix), 8 classes (Xylo Audio 2 has 8 read-out neurons), subtractive reset."""
    return ModelSpec(arch="mlp", input_shape=(1, 4, 4), hidden=[24, 16], steps=8, num_classes=8,
                     encoding=encoding,
                     neuron={"model": "lif", "tau": 2.0, "threshold": 0.5, "reset": "subtract",
                             "surrogate": {"name": "atan", "alpha": 2.0}})


IF_CONVNET = ModelSpec(
    arch="convnet", input_shape=(1, 8, 8), hidden=[8, 16], pool="avg", bias=False, steps=8,
    encoding={"kind": "rate", "seed": 7}, readout="spike_count",
    neuron={"model": "if", "threshold": 1.0, "reset": "subtract",
            "surrogate": {"name": "atan", "alpha": 2.0}})
"""A ConvNet every family with IF neurons runs (Speck: no leak, no bias, sum pooling, spikes)."""


@pytest.fixture(scope="module")
def digits8():
    """digits-4x4 restricted to the classes 0-7."""
    ds = load_dataset("digits-4x4")
    tr, te = ds.y_train < 8, ds.y_test < 8
    ds.x_train, ds.y_train, ds.x_test, ds.y_test = ds.x_train[tr], ds.y_train[tr], ds.x_test[te], \
        ds.y_test[te]
    ds.num_classes = 8
    return ds


@pytest.fixture(scope="module")
def xylo_networks(digits8, tmp_path_factory):
    """Networks for the xylo family: event counts per step (4-bit direct input) and rate-coded
    spikes."""
    t = tmp_path_factory.mktemp
    return {
        "xylo-counts": (_train(_xylo_spec({"kind": "direct", "bits": 4}), digits8, t("x"), 12),
                        digits8),
        "xylo-rate": (_train(_xylo_spec({"kind": "rate", "seed": 3}), digits8, t("y"), 12), digits8),
    }


FAMILY_NETWORKS = {
    "loihi": ("pipeline-graded", "pipeline-rate", "mnist-graded", "mnist-rate", "convnet-if-rate"),
    "xylo": ("xylo-counts", "xylo-rate"),
    "speck": ("pipeline-rate", "convnet-if-rate"),
}
"""The networks each family's profiles are checked on (every profile of a family runs them all)."""
CASES = [(profile, net) for profile in list_profiles()
         for net in FAMILY_NETWORKS.get(load_profile(profile).family, ())]
"""(TTFS profiles run TTFS networks, checked in tests/test_ttfs_deploy.py.)"""


@pytest.fixture(scope="module")
def networks(digits, tmp_path_factory):
    """The pipeline's network with the encoding every profile takes: graded 8-bit input (Loihi 2)
    and rate-coded binary spikes (Loihi 1)."""
    pipe = default_run_config().model
    t = tmp_path_factory.mktemp
    return {
        "convnet-if-rate": (_train(IF_CONVNET, digits, t("e"), epochs=6), digits),
        "pipeline-graded": (_train(pipe, digits, t("a"), epochs=default_run_config().train.epochs), digits),
        "pipeline-rate": (_train(_rate(pipe), digits, t("b")), digits),
    }


@pytest.fixture(scope="module")
def mnist_networks(mnist_small, tmp_path_factory):
    """The MNIST example's network, graded and rate-coded (skipped without the MNIST files)."""
    mn = mnist_spec()
    t = tmp_path_factory.mktemp
    return {
        "mnist-graded": (_train(mn, mnist_small, t("c"), epochs=1), mnist_small),
        "mnist-rate": (_train(_rate(mn), mnist_small, t("d"), epochs=1), mnist_small),
    }


def _assert_same_integers(model, ds, profile, constraints=None, scales=None):
    fq = fake_quantize(model, profile, ds.x_train[:300], constraints, scales=scales)
    graph = graph_from_fakequant(fq)
    events = fq.encode(ds.x_test)
    sim = Simulator(graph, graph_profile(graph))
    res = sim.run(events.numpy(), extra_steps=sim.latency, record=())
    fq_out = fq.readout_integers(ds.x_test).numpy()
    assert fq_out.shape == res.readout.shape
    np.testing.assert_array_equal(fq_out.astype(np.int64), res.readout)
    np.testing.assert_array_equal(fq_out.argmax(1), res.predictions)
    return res


@pytest.mark.parametrize("profile, net", CASES, ids=[f"{n}-{p}" for p, n in CASES])
def test_fake_quant_and_simulator_agree_on_every_test_sample(request, net, profile):
    family = load_profile(profile).family
    fixture = "mnist_networks" if net.startswith("mnist") else \
        (f"{family}_networks" if family not in ("loihi", "speck") else "networks")
    model, ds = request.getfixturevalue(fixture)[net]
    p = load_profile(profile)
    graded = net.endswith("graded")
    if graded and p.input.graded_bits < 8:
        with pytest.raises(UnsupportedError, match="binary input spikes only"):
            fake_quantize(model, profile, ds.x_train[:50])
        return
    refused = design_rules.violations(p, "lower", layers=fold_model(model))
    if refused:  # what the chip cannot run (e.g. leaky neurons on Speck) is refused by its rules
        with pytest.raises(UnsupportedError, match=r"\(rule "):
            fake_quantize(model, profile, ds.x_train[:50])
        return
    res = _assert_same_integers(model, ds, profile)
    assert res.predictions.shape == (len(ds.x_test),)
    assert (res.predictions == ds.y_test.numpy()).mean() > 0.5


@pytest.mark.parametrize("constraints", [
    Constraints(weight_bits=3), Constraints(max_steps=3), Constraints(state_bits=16),
], ids=["3-bit weights", "3 steps", "16-bit state"])
def test_agreement_holds_under_constraints_with_overflow(networks, constraints):
    model, ds = networks["pipeline-graded"]
    scales = None
    if constraints.state_bits:  # scales chosen for 24-bit states, run with narrow ones: overflows
        scales = [layer.scale for layer in fake_quantize(model, "loihi2", ds.x_train[:300]).layers]
    res = _assert_same_integers(model, ds, "loihi2", constraints, scales)
    if constraints.state_bits:
        assert res.u_overflows.sum() > 0 and res.v_overflows.sum() > 0


def test_gradients_reach_the_float_weights(networks):
    model, ds = networks["pipeline-graded"]
    fq = fake_quantize(model, "loihi2", ds.x_train[:100], Constraints(weight_bits=4, jitter=1))
    loss = torch.nn.functional.cross_entropy(fq(ds.x_train[:32]), ds.y_train[:32])
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_finetuning_recovers_most_of_a_large_quantization_drop(digits, networks):
    model, _ = networks["pipeline-graded"]
    res = finetune_model(model, "loihi2", digits, Constraints(weight_bits=2), FinetuneConfig(epochs=3))
    frac = recovered_fraction(res.before.float_accuracy, res.before.accuracy, res.after.accuracy)
    assert res.before.accuracy < res.before.float_accuracy - 0.2  # 2-bit weights hurt
    assert frac is not None and frac >= 0.5, (res.before.accuracy, res.after.accuracy)
    # the original model is untouched
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 networks["pipeline-graded"][0].state_dict().values(),
                                                 strict=True))


def test_jitter_in_the_simulator_is_seeded(networks, tmp_path):
    model, ds = networks["pipeline-rate"]
    from neurodeploy.sim.deploy import deploy_model

    a = deploy_model(model, "loihi", ds, constraints=Constraints(jitter=2), seed=1)
    b = deploy_model(model, "loihi", ds, constraints=Constraints(jitter=2), seed=1)
    c = deploy_model(model, "loihi", ds, constraints=Constraints(jitter=2), seed=2)
    assert a.accuracy == b.accuracy
    assert np.array_equal(a.figures["predictions"], b.figures["predictions"])
    assert not np.array_equal(a.figures["predictions"], c.figures["predictions"]) or a.accuracy == c.accuracy


@pytest.fixture(scope="module")
def ck_path(networks, tmp_path_factory):
    model, _ = networks["pipeline-graded"]
    path = tmp_path_factory.mktemp("ck") / "model.pt"
    Checkpoint.from_model(model, meta={"dataset": "digits"}).save(path)
    return path


@pytest.mark.parametrize("args, words", [
    (["finetune", "--weight-bits", "1"], ["weight bits", "2..16"]),
    (["finetune", "--weight-bits", "17"], ["weight bits"]),
    (["finetune", "--jitter", "-1"], ["jitter", "non-negative"]),
    (["finetune", "--max-steps", "0"], ["max steps"]),
    (["finetune", "--max-steps", "99"], ["exceeds"]),
    (["finetune", "--epochs", "0"], ["epochs"]),
    (["quantize", "--state-bits", "2"], ["state bits"]),
    (["quantize", "--profile", "nochip"], ["nochip"]),
    (["simulate", "--steps", "0"], ["--steps"]),
    (["simulate", "--limit", "0"], ["--limit"]),
    (["sweep", "--bits", "8,x"], ["--bits"]),
    (["sweep", "--bits", "1"], ["--bits"]),
    (["sweep"], ["--bits"]),
])
def test_out_of_range_options_fail_clearly(ck_path, tmp_path, args, words):
    out = ["-o", str(tmp_path / "o.pt")] if args[0] in ("finetune", "quantize") else \
        (["-o", str(tmp_path / "s")] if args[0] == "sweep" else [])
    res = CliRunner().invoke(main, [args[0], str(ck_path), *args[1:], *out])
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert line.startswith("error: ") and "\n" not in line and "Traceback" not in res.output
    for w in words:
        assert w in line, line
    assert not (tmp_path / "o.pt").exists()


def test_quantize_finetune_simulate_and_sweep_commands(ck_path, tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["quantize", str(ck_path), "--weight-bits", "3", "-o", str(tmp_path / "q.pt"),
                               "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "post-training quantization" in res.output and (tmp_path / "q.npz").exists()
    res = runner.invoke(main, ["finetune", str(ck_path), "--weight-bits", "2", "--epochs", "2",
                               "-o", str(tmp_path / "f.pt"), "--no-progress"])
    assert res.exit_code == 0, res.output
    tuned = torch.load(tmp_path / "f.pt", weights_only=True)["meta"]["quant"]
    assert tuned["constraints"]["weight_bits"] == 2 and len(tuned["scales"]) == 3
    # simulating the fine-tuned checkpoint reuses its scales: same accuracy as reported
    res = runner.invoke(main, ["simulate", str(tmp_path / "f.pt"), "-o", str(tmp_path / "sim.json"),
                               "--no-progress"])
    assert res.exit_code == 0, res.output
    sim = json.loads((tmp_path / "sim.json").read_text())
    assert sim["deployed_accuracy"] == pytest.approx(tuned["deployed_accuracy"])
    res = runner.invoke(main, ["sweep", str(ck_path), "--bits", "4,2", "--steps", "4", "--epochs", "1",
                               "-o", str(tmp_path / "sw"), "--no-progress"])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert [(p["axis"], p["value"]) for p in rep["points"]] == [("weight_bits", 4), ("weight_bits", 2),
                                                                 ("max_steps", 4)]
    assert (tmp_path / "sw" / "sweep.png").read_bytes()[:4] == b"\x89PNG"
