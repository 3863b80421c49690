"""Streaming simulation: per-sample encoding seeds, memory flat in the sample count, resumable figures,
and a default network that deploys."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from neurodeploy.cli import main
from neurodeploy.data import Dataset, load_dataset
from neurodeploy.lower.lowering import graph_from_fakequant
from neurodeploy.models import ModelSpec, build_model
from neurodeploy.nn.encoding import encode, encode_samples, sample_seed
from neurodeploy.quantize.fakequant import fake_quantize
from neurodeploy.sim.deploy import float_accuracy, simulate_graph


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def rate_graph(digits):
    torch.manual_seed(0)
    spec = ModelSpec(arch="mlp", input_shape=(1, 8, 8), hidden=[32], steps=6,
                     encoding={"kind": "rate", "seed": 3}, neuron={"threshold": 0.3})
    model = build_model(spec).eval()
    fq = fake_quantize(model, "loihi2", digits.x_train[:200])
    return model, graph_from_fakequant(fq)


def test_each_sample_is_encoded_from_its_own_seed(digits):
    x = digits.x_test[:40]
    enc = {"kind": "rate", "seed": 11}
    whole = encode_samples(x, 7, enc)
    # any subset, at its own indices, gets the same events
    assert torch.equal(encode_samples(x[10:25], 7, enc, start=10), whole[10:25])
    # and each sample's events are the Bernoulli draws of its own generator (independent reference)
    for i in (0, 17, 39):
        g = torch.Generator().manual_seed(sample_seed(11, i))
        u = torch.rand((7, *x[i].shape), generator=g)
        assert torch.equal(whole[i], (u < x[i].clamp(0, 1).unsqueeze(0)).to(torch.int64))
    assert len({sample_seed(11, i) for i in range(1000)}) == 1000
    assert sample_seed(11, 0) != sample_seed(12, 0)
    # deterministic encodings do not depend on seeds at all
    g = encode_samples(x, 5, {"kind": "direct", "bits": 8})
    assert torch.equal(g[:, 0], torch.round(x.double() * 255).to(torch.int64))
    lat = encode_samples(x, 5, {"kind": "latency"}, integers=False)
    assert torch.equal(lat, encode(x, 5, "latency"))


def test_limit_gives_the_first_samples_the_same_spikes_as_the_full_run(digits, rate_graph):
    model, graph = rate_graph
    x, y = digits.x_test, digits.y_test
    full = simulate_graph(graph, x, y, progress=False)
    part = simulate_graph(graph, x[:50], y[:50], progress=False)
    np.testing.assert_array_equal(part["predictions"], full["predictions"][:50])
    # batching does not matter either
    small = simulate_graph(graph, x[:50], y[:50], batch_size=7, progress=False)
    np.testing.assert_array_equal(small["predictions"], part["predictions"])
    assert small["synops_per_sample"] == part["synops_per_sample"]
    # the float model sees the same events: its accuracy on a prefix is the prefix of its predictions
    assert float_accuracy(model, x[:50], y[:50]) == float_accuracy(model, x[:50], y[:50], batch_size=9)


def test_simulation_memory_does_not_grow_with_the_sample_count(rate_graph):
    _, graph = rate_graph
    g = torch.Generator().manual_seed(0)
    peaks = {}
    for n in (300, 3000):
        x = torch.rand((n, 1, 8, 8), generator=g)
        y = torch.randint(0, 10, (n,), generator=g)
        tracemalloc.start()
        simulate_graph(graph, x, y, batch_size=100, progress=False)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    # ten times the samples: the peak grows only by the per-sample predictions (8 bytes each)
    assert peaks[3000] < 1.2 * peaks[300] + 3000 * 8 * 4, peaks


def test_default_train_network_deploys_and_exports(tmp_path):
    run = CliRunner().invoke
    res = run(main, ["train", "--epochs", "1", "--limit", "300", "--no-progress", "-o", str(tmp_path / "t")])
    assert res.exit_code == 0, res.output
    ck = str(tmp_path / "t" / "checkpoint.pt")
    res = run(main, ["export", ck, "--format", "lava", "-o", str(tmp_path / "n.net")])
    assert res.exit_code == 0, res.output
    res = run(main, ["simulate", ck, "--no-progress", "--limit", "50"])
    assert res.exit_code == 0, res.output
    res = run(main, ["simulate", ck, "--profile", "loihi", "--no-progress", "--limit", "50",
                     "-o", str(tmp_path / "l1.json")])
    assert res.exit_code == 0, res.output


def test_pipeline_resume_of_a_finished_run_changes_no_figure(tmp_path):
    out = tmp_path / "p"
    res = CliRunner().invoke(main, ["pipeline", "-o", str(out), "--epochs", "1", "--no-progress"])
    assert res.exit_code == 0, res.output
    first = json.loads((out / "report.json").read_text())
    res = CliRunner().invoke(main, ["pipeline", "-o", str(out), "--resume", "--no-progress"])
    assert res.exit_code == 0, res.output
    again = json.loads((out / "report.json").read_text())
    first.pop("seconds")
    again.pop("seconds")
    assert again == first


def test_dataset_of_random_mnist_shaped_images_simulates(rate_graph):
    """A Dataset built in code (as the memory benchmark does) goes through deploy_model."""
    from neurodeploy.sim.deploy import deploy_model

    model, _ = rate_graph
    g = torch.Generator().manual_seed(1)
    ds = Dataset("random", torch.rand((64, 1, 8, 8), generator=g), torch.zeros(64, dtype=torch.int64),
                 torch.rand((30, 1, 8, 8), generator=g), torch.randint(0, 10, (30,), generator=g), (1, 8, 8), 10,
                 "random")
    dep = deploy_model(model, "loihi2", ds, progress=False)
    assert dep.samples == 30
