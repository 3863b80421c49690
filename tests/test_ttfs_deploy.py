"""TTFS on the shared machinery: a network converted from ONNX lowers to a DeployGraph of the
``ttfs`` family, which the shared simulator runs with the time-grid clock — its spike steps equal
the integer program's closed form, its clock-by-clock run and the float network's quantised spike
times on every test sample — the fit check sizes, and NIR export reads back identically."""

from __future__ import annotations

import copy
import json
import warnings

import nir
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from neurodeploy.cli import main
from neurodeploy.data import load_dataset
from neurodeploy.errors import ConfigError, FormatError, UnsupportedError
from neurodeploy.export.nir_ttfs import nir_to_ttfs, read_ttfs_nir
from neurodeploy.families import ttfs as family
from neurodeploy.hardware import fit_report, load_profile
from neurodeploy.lower.graph import DeployGraph
from neurodeploy.lower.inputs import encode_inputs
from neurodeploy.sim import Simulator
from neurodeploy.sim.deploy import simulate_graph
from neurodeploy.ttfs import TTFSConstraints, build_program, load_ttfs, lower_ttfs, program_accuracy
from neurodeploy.ttfs.train import train_relu

F64 = torch.float64


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _train(model: nn.Module, ds, epochs: int, seed: int) -> nn.Module:
    return train_relu(model, ds, epochs, seed=seed)


def _onnx(model: nn.Module, path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(copy.deepcopy(model).float().eval(), (torch.zeros(1, 1, 8, 8),), str(path),
                          dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})


@pytest.fixture(scope="module")
def converted(digits, tmp_path_factory):
    """``neurodeploy convert MODEL.onnx --to ttfs`` of a ReLU MLP and a ReLU ConvNet (batch norm
    with negative scales before a max pool: earliest- and latest-spike pools)."""
    torch.manual_seed(0)
    mlp = _train(nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10)),
                 digits, 4, 0)
    torch.manual_seed(1)
    conv = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(6), nn.MaxPool2d(2),
                         nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(128, 32),
                         nn.ReLU(), nn.Linear(32, 10))
    conv = _train(conv, digits, 2, 1)
    with torch.no_grad():
        g = torch.Generator().manual_seed(6)
        conv[2].weight.copy_(torch.randn(6, generator=g, dtype=F64))
        conv[2].running_mean.copy_(torch.randn(6, generator=g, dtype=F64))
    root = tmp_path_factory.mktemp("ttfs")
    out = {}
    for name, model in (("mlp", mlp), ("conv", conv)):
        _onnx(model, root / f"{name}.onnx")
        res = CliRunner().invoke(main, ["convert", str(root / f"{name}.onnx"), "--to", "ttfs", "-o",
                                        str(root / f"{name}.pt")])
        assert res.exit_code == 0, res.output
        out[name] = root / f"{name}.pt"
    return out


def _spike_steps(result, graph: DeployGraph) -> list[np.ndarray]:
    """Per spiking ramp layer: the step of each neuron's spike within its own window (``K``:
    silent), checking one spike at most and none outside the window."""
    steps = []
    for layer in graph.neuron_layers:
        g = layer.neurons
        if g.kind != "ramp" or not g.spiking:
            continue
        raster = result.rasters[layer.name].astype(np.int64)
        assert raster.sum(axis=1).max() <= 1  # one spike per neuron at most
        k, t0 = g.window_steps, g.window_start
        outside = raster.sum(axis=1) - raster[:, t0 : t0 + k].sum(axis=1)
        assert not outside.any()  # and only in its firing window
        steps.append(np.where(raster.any(axis=1), raster.argmax(axis=1) - t0, k))
    return steps


@pytest.mark.parametrize("name,bits,time_bits", [("mlp", 8, 4), ("mlp", 5, 6), ("conv", 8, 4)])
def test_converted_network_runs_exactly_on_the_shared_simulator(converted, digits, tmp_path, name,
                                                                bits, time_bits):
    net = load_ttfs(converted[name]).network
    c = TTFSConstraints(weight_bits=bits, time_bits=time_bits)
    x = digits.x_test
    graph = lower_ttfs(net, c, metadata={"dataset": "digits"})
    graph.save(tmp_path / "g.npz")
    loaded = DeployGraph.load(tmp_path / "g.npz")
    assert loaded.family == "ttfs" and loaded.target.timing.window_bits == time_bits
    assert loaded.target.weights.range == (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1)
    assert fit_report(loaded).ok
    sim = Simulator(loaded)
    assert sim.latency == 0  # the windows carry the time: the graph's steps are the whole program
    res = sim.run(encode_inputs(x, loaded.steps, loaded.encoding), record=("spikes",))
    prog = build_program(net, c)
    assert loaded.steps == prog.latency_steps
    closed = prog.run(x, record=True)
    clock = prog.run(x[:60], method="clock", record=True)
    with torch.no_grad():
        fl = net.run(x, c, record=True)
    steps = _spike_steps(res, loaded)
    assert len(steps) == len(closed.steps) == len(fl.times)
    k = prog.steps
    for j, (t_min, t_max) in enumerate(net.window_bounds()):
        np.testing.assert_array_equal(steps[j], closed.steps[j].numpy())
        np.testing.assert_array_equal(steps[j][:60], clock.steps[j].numpy())
        # the float network's closed-form spike times on the same grid, as steps
        grid = torch.round((fl.times[j] - t_min) / ((t_max - t_min) / k)).to(torch.int64)
        np.testing.assert_array_equal(steps[j], grid.numpy())
    np.testing.assert_array_equal(res.readout, closed.readout.reshape(len(x), -1).numpy())
    np.testing.assert_array_equal(res.predictions, closed.predictions.numpy())
    ramps = [i for i, layer in enumerate(loaded.neuron_layers)
             if layer.neurons.kind == "ramp" and layer.neurons.spiking]
    assert [int(res.spike_counts[:, i].sum()) for i in ramps] == closed.spikes
    # the saved graph alone (simulate GRAPH.npz) reports the program's accuracy
    figs = simulate_graph(loaded, x, digits.y_test, progress=False)
    assert figs["accuracy"] == pytest.approx(program_accuracy(prog, x, digits.y_test)["accuracy"],
                                             abs=0)


@pytest.mark.parametrize("name", ["mlp", "conv"])
def test_whole_window_kernels_equal_the_clock_step(converted, digits, name):
    """The family's NeuronScan / DenseInput (blocks of steps from an absolute step) give the
    spikes, states and read-out of its per-step neuron_step, with and without recorded states."""
    net = load_ttfs(converted[name]).network
    graph = lower_ttfs(net, TTFSConstraints(weight_bits=6, time_bits=5))
    x = encode_inputs(digits.x_test[:50], graph.steps, graph.encoding)
    assert all(s.scan for s in Simulator(graph)._stages)
    for record in (("spikes",), ("spikes", "u", "v")):
        fast = Simulator(graph).run(x, record=record)
        step = Simulator(graph, fast=False).run(x, record=record)
        np.testing.assert_array_equal(fast.readout, step.readout)
        for key, raster in step.rasters.items():
            np.testing.assert_array_equal(fast.rasters[key], raster)
        for kind, states in step.states.items():
            for key, values in states.items():
                np.testing.assert_array_equal(fast.states[kind][key], values)


def test_simulate_saved_graph_from_the_command_line(converted, digits, tmp_path):
    net = load_ttfs(converted["mlp"]).network
    c = TTFSConstraints(weight_bits=8, time_bits=5)
    lower_ttfs(net, c, metadata={"dataset": "digits"}).save(tmp_path / "g.npz")
    res = CliRunner().invoke(main, ["simulate", str(tmp_path / "g.npz"), "-o", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "r.json").read_text())
    acc = program_accuracy(build_program(net, c), digits.x_test, digits.y_test)["accuracy"]
    assert rep["deployed_accuracy"] == acc and rep["samples"] == len(digits.y_test)


@pytest.mark.parametrize("name", ["mlp", "conv"])
def test_nir_export_reads_back_the_same_network(converted, digits, tmp_path, name):
    out = tmp_path / f"{name}.nir"
    res = CliRunner().invoke(main, ["export", str(converted[name]), "--format", "nir", "-o", str(out)])
    assert res.exit_code == 0, res.output
    net = load_ttfs(converted[name]).network
    back = nir_to_ttfs(nir.read(str(out)))  # the plain NIR reader, then neurodeploy's
    assert back.variant == net.variant and back.input_range == net.input_range
    assert torch.equal(back.windows, net.windows)
    for a, b in zip(net.state_dict().items(), back.state_dict().items(), strict=True):
        assert a[0] == b[0] and torch.equal(a[1], b[1])
    assert [type(s).__name__ for s in back.stages] == [type(s).__name__ for s in net.stages]
    c = TTFSConstraints(weight_bits=8, time_bits=4)
    x = digits.x_test[:200]
    runs = []
    for n in (net, back):
        g = lower_ttfs(n, c)
        runs.append(Simulator(g).run(encode_inputs(x, g.steps, g.encoding), record=("spikes",)))
    for key, raster in runs[0].rasters.items():
        np.testing.assert_array_equal(raster, runs[1].rasters[key])
    np.testing.assert_array_equal(runs[0].readout, runs[1].readout)
    with torch.no_grad():
        assert torch.equal(net.run(x).logits, back.run(x).logits)
    # an edited file is refused in one line; the ordinary importer points to the TTFS reader
    graph = nir.read(str(out))
    first = next(k for k in graph.nodes if k.endswith(("affine", "conv")))
    graph.nodes[first].weight = graph.nodes[first].weight * 2
    with pytest.raises(FormatError, match="checksum"):
        nir_to_ttfs(graph)
    r = CliRunner().invoke(main, ["import", str(out), "-o", str(tmp_path / "x.pt")])
    assert r.exit_code == 2 and "read_ttfs_nir" in r.output and len(r.output.strip().splitlines()) == 1
    assert read_ttfs_nir(out).latency == net.latency


def test_ramp_neuron_by_hand_and_refusals(converted):
    # one neuron, K = 4, window from step 4: input spikes at step 1 (x_hat = 3) with weight 2,
    # ramp 5, threshold 20, bias 4: v(4) = 4 + 2 * 3 = 10; v >= 20 at step 4 + 2 (10, 15, 20)
    u = v = np.zeros(1, np.int64)
    spikes = []
    for t in range(12):
        a = np.array([2 if t == 1 else 0])
        r = family.neuron_step(u, v, a, threshold=20, bias=np.array([4]), window_start=4,
                               window_steps=4, t=t)
        u, v = r.u, r.v
        spikes.append(int(r.spikes[0]))
    assert spikes == [0] * 6 + [1] + [0] * 5
    # count group: earliest spike of a 2x2 pool fires on the first arrival, latest on the fourth
    r = family.neuron_step(np.zeros(2, np.int64), np.zeros(2, np.int64), np.array([1, 1]),
                           threshold=4, bias=np.array([3, 0]), kind="count")
    assert r.spikes.tolist() == [1, 0]
    net = load_ttfs(converted["mlp"]).network
    graph = lower_ttfs(net, TTFSConstraints(weight_bits=8, time_bits=4))
    bad = copy.deepcopy(graph)
    bad.layers[1].neurons.threshold = 16 * 3  # a ramp of 3 per step: below neuron.min_ramp
    assert any("min_ramp" in v for v in fit_report(bad).violations)
    bad.layers[1].neurons.threshold = 16 * 300 + 1  # not K x a whole ramp
    with pytest.raises(UnsupportedError, match="rule ramp_window"):
        Simulator(bad)
    with pytest.raises(ConfigError, match="does not run this graph's number format"):
        Simulator(graph, "ttfs")  # the shipped profile has 10 window bits, the graph 4
    with pytest.raises(ConfigError, match="input shape"):
        encode_inputs(torch.zeros(2, 5), graph.steps, graph.encoding)
    with pytest.raises(ConfigError, match="time bits must be an integer in 1..16"):
        TTFSConstraints(time_bits=load_profile("ttfs").timing.max_window_bits + 1)
