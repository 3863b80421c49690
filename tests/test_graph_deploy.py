"""Graph networks (merges, recurrent edges) on the chip side: the fold is exact against the float
graph network, the fake-quant forward computes exactly the simulator's integers on every test
sample (Loihi 2 for a recurrent MLP and a residual ConvNet, Xylo IMU for the recurrent MLP),
fine-tuning keeps that, lowered graphs survive a file round trip, and what a family cannot run is
refused in one line naming the rule (``docs/graphs.md``)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import neurodeploy as nd
from neurodeploy.cli import main
from neurodeploy.data import load_dataset
from neurodeploy.errors import ConfigError, UnsupportedError
from neurodeploy.graph import nodes as gn
from neurodeploy.graph.ir import GraphBuilder
from neurodeploy.lower.graph import DeployGraph
from neurodeploy.lower.lowering import graph_from_fakequant
from neurodeploy.models.graph_net import GraphCheckpoint, GraphNet
from neurodeploy.quantize.fakequant import Constraints, fake_quantize
from neurodeploy.quantize.finetune import FinetuneConfig, finetune
from neurodeploy.quantize.fold import fold_model, run_blocks
from neurodeploy.quantize.graph_model import GraphModel
from neurodeploy.sim import Simulator
from neurodeploy.sim.deploy import float_accuracy, simulate_graph
from neurodeploy.workflows import finetune_model
from tests.graph_training import ROW_LEVELS, digit_rows, rows_sequence, train_graph_model


def _lif(**kw):
    return gn.LIF(decay=0.75, threshold=1.0, **kw)


def recurrent_mlp(hidden: int = 64, reset: str = "zero") -> GraphNet:
    """8 inputs (one image row per step) → a self-recurrent LIF group → a mean read-out."""
    g = torch.Generator().manual_seed(1)
    b = GraphBuilder()
    b.add("in", gn.Input((8,)))
    b.add("fc1", gn.Affine(torch.randn(hidden, 8, generator=g) * 0.6, torch.zeros(hidden)), "in")
    b.add("lif1", _lif(reset=reset), "fc1")
    b.add("rec", gn.Affine(torch.randn(hidden, hidden, generator=g) * 0.15), "lif1")
    b.connect("rec", "lif1", recurrent=True)
    b.add("fc2", gn.Affine(torch.randn(10, hidden, generator=g) * 0.3, torch.zeros(10)), "lif1")
    b.add("out", gn.Output("mean"), "fc2")
    return GraphNet(b.build())


def residual_convnet() -> GraphNet:
    """conv (stride 2) → LIF → [3x3 conv → LIF → 3x3 conv, + a 1x1 conv skip from the first LIF]
    → LIF → flatten → dense read-out: the skip waits one step more than the main path (delay 2)."""
    g = torch.Generator().manual_seed(2)
    b = GraphBuilder()
    b.add("in", gn.Input((1, 8, 8)))
    b.add("c1", gn.Conv(torch.randn(8, 1, 3, 3, generator=g) * 0.7, torch.zeros(8), stride=(2, 2),
                        padding=(1, 1)), "in")
    b.add("lif1", _lif(), "c1")
    b.add("c2", gn.Conv(torch.randn(8, 8, 3, 3, generator=g) * 0.15, torch.zeros(8), padding=(1, 1)), "lif1")
    b.add("lif2", _lif(), "c2")
    b.add("c3", gn.Conv(torch.randn(8, 8, 3, 3, generator=g) * 0.15, torch.zeros(8), padding=(1, 1)), "lif2")
    b.add("skip", gn.Conv(torch.randn(8, 8, 1, 1, generator=g) * 0.4, torch.zeros(8)), "lif1")
    b.add("sum", gn.Add(), "c3", "skip")
    b.add("lif3", _lif(), "sum")
    b.add("flat", gn.Flatten(), "lif3")
    b.add("fc", gn.Affine(torch.randn(10, 128, generator=g) * 0.1, torch.zeros(10)), "flat")
    b.add("out", gn.Output("mean"), "fc")
    return GraphNet(b.build())


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def rows():
    """Digits fed row by row: input events [N, 8 steps, 8] (graded 4-bit)."""
    return digit_rows()


@pytest.fixture(scope="module")
def rnn(rows):
    model = GraphModel(recurrent_mlp(), 8, {"kind": "direct", "bits": 4})
    train_graph_model(model, rows.x_train, rows.y_train, rows_sequence, epochs=12, lr=5e-3)
    return model


@pytest.fixture(scope="module")
def rnn_xylo(rows):
    """The recurrent MLP with Xylo's subtractive reset."""
    model = GraphModel(recurrent_mlp(reset="subtract"), 8, {"kind": "direct", "bits": 4})
    train_graph_model(model, rows.x_train, rows.y_train, rows_sequence, epochs=12, lr=5e-3)
    return model


@pytest.fixture(scope="module")
def resnet(digits):
    model = GraphModel(residual_convnet(), 4, {"kind": "direct", "bits": 8}, {"dataset": "digits"})
    train_graph_model(model, digits.x_train, digits.y_train, model.encode, epochs=6, lr=3e-3)
    return model


def test_the_graph_networks_learn(rnn, rnn_xylo, rows, resnet, digits):
    figures = {"recurrent MLP": float_accuracy(rnn, rows.x_test, rows.y_test),
               "recurrent MLP (subtractive reset)": float_accuracy(rnn_xylo, rows.x_test, rows.y_test),
               "residual ConvNet": float_accuracy(resnet, digits.x_test, digits.y_test)}
    print("float test accuracy:", {k: round(v, 4) for k, v in figures.items()})
    assert min(figures.values()) > 0.8


@pytest.mark.parametrize("which", ["rnn", "resnet"])
def test_folding_changes_nothing(request, which, rows, digits):
    model = request.getfixturevalue(which)
    blocks = fold_model(model)
    if which == "rnn":
        assert [(b.source, [(e.source, e.recurrent) for e in b.extra]) for b in blocks] == \
            [(-1, [(0, True)]), (0, [])]
        seq = rows.x_test[:64].transpose(0, 1).double() / ROW_LEVELS
    else:
        assert [(b.source, [(e.source, e.recurrent) for e in b.extra]) for b in blocks] == \
            [(-1, []), (0, []), (1, [(0, False)]), (2, [])]
        seq = model.encode(digits.x_test[:64]).double()
    reference = copy.deepcopy(model.net).double()(seq)  # the float graph network itself, float64
    torch.testing.assert_close(run_blocks(blocks, seq) / model.spec.steps, reference, rtol=0, atol=1e-9)


def _same_integers(model, x_cal, x_test, profile, constraints=None, scales=None):
    fq = fake_quantize(model, profile, x_cal, constraints, scales=scales)
    graph = graph_from_fakequant(fq)
    assert not graph.is_chain()
    events = fq.encode(x_test)
    sim = Simulator(graph)
    assert sim.latency == fq.latency
    res = sim.run(events.numpy(), extra_steps=sim.latency, record=())
    fq_out = fq.readout_integers(x_test).numpy()
    np.testing.assert_array_equal(fq_out.astype(np.int64), res.readout)
    fq.fused = False  # the step-by-step reference path agrees too
    np.testing.assert_array_equal(fq.readout_integers(x_test).numpy(), fq_out)
    return fq, graph, res


@pytest.mark.parametrize("which, profile, constraints", [
    ("rnn", "loihi2", None), ("rnn", "loihi2", Constraints(weight_bits=5)),
    ("rnn_xylo", "xylo-imu", None), ("rnn_xylo", "xylo-imu", Constraints(weight_bits=4)),
    ("resnet", "loihi2", None), ("resnet", "loihi2", Constraints(weight_bits=3)),
])
def test_fake_quant_equals_the_simulator_on_every_test_sample(request, which, profile, constraints, rows,
                                                              digits):
    model = request.getfixturevalue(which)
    ds = digits if which == "resnet" else rows
    fq, graph, res = _same_integers(model, ds.x_train[:300], ds.x_test, profile, constraints)
    if which == "resnet":  # the skip around two synapse layers waits one step more
        assert [p.delay for p in graph.layers[2].extra] == [2] and fq.latency == 4
    acc = float((res.predictions == ds.y_test.numpy()).mean())
    print(f"{which} {profile} {constraints}: simulated accuracy {acc:.4f}")
    assert acc > (0.5 if constraints is None else 0.2), acc


@pytest.mark.parametrize("which", ["rnn", "resnet"])
def test_loihi_with_binary_input_agrees_too(which, digits):
    # Loihi 1 takes binary spikes: rate-coded images, thresholded rows (untrained weights suffice)
    if which == "rnn":
        model = GraphModel(recurrent_mlp(), 8, {"kind": "rate"})
        x_cal, x = (digits.x_train[:200, 0] > 0.4).double(), (digits.x_test[:, 0] > 0.4).double()
    else:
        model = GraphModel(residual_convnet(), 4, {"kind": "rate", "seed": 3})
        x_cal, x = digits.x_train[:200], digits.x_test
    _same_integers(model, x_cal, x, "loihi")


def test_agreement_holds_through_overflows(resnet, digits):
    # scales chosen for 24-bit states, run with 16-bit ones: wraps and saturations on the way
    scales = [layer.scale for layer in fake_quantize(resnet, "loihi2", digits.x_train[:300]).layers]
    _, _, res = _same_integers(resnet, None, digits.x_test, "loihi2", Constraints(state_bits=16), scales)
    assert res.u_overflows.sum() > 0 and res.v_overflows.sum() > 0


@pytest.mark.parametrize("which, profile, constraints", [
    ("rnn", "loihi2", Constraints(weight_bits=5)), ("rnn_xylo", "xylo-imu", Constraints()),
])
def test_finetuning_a_graph_network_keeps_it_exact(request, which, profile, constraints, rows):
    model = copy.deepcopy(request.getfixturevalue(which))
    fq = fake_quantize(model, profile, rows.x_train[:300], constraints)
    before = simulate_graph(graph_from_fakequant(fq), rows.x_test, rows.y_test)["accuracy"]
    finetune(fq, rows, FinetuneConfig(epochs=1, lr=2e-3), progress=False)
    graph = graph_from_fakequant(fq)
    after = simulate_graph(graph, rows.x_test, rows.y_test)["accuracy"]
    print(f"fine-tuning 1 epoch, {profile} {constraints}: simulated accuracy {before:.4f} -> {after:.4f}")
    assert after > before, (before, after)
    res = Simulator(graph).run(fq.encode(rows.x_test).numpy(), extra_steps=fq.latency, record=())
    np.testing.assert_array_equal(fq.readout_integers(rows.x_test).numpy().astype(np.int64), res.readout)
    # the stored scales give the same integers again
    again = fake_quantize(model, profile, None, constraints, scales=[layer.scale for layer in fq.layers])
    np.testing.assert_array_equal(again.readout_integers(rows.x_test[:50]).numpy(),
                                  fq.readout_integers(rows.x_test[:50]).numpy())


def test_finetuning_under_jitter(resnet, rnn, digits, rows):
    res = finetune_model(resnet, "loihi2", digits, Constraints(jitter=1), FinetuneConfig(epochs=1, lr=1e-3),
                         progress=False)
    print(f"fine-tuning 1 epoch, loihi2, jitter 1: simulated accuracy {res.before.accuracy:.4f} -> "
          f"{res.after.accuracy:.4f}")
    assert res.after.accuracy >= res.before.accuracy - 0.02
    assert res.after.graph.quant.constraints.jitter == 1 and not res.after.graph.is_chain()
    with pytest.raises(ConfigError, match="jitter on a recurrent group") as exc:
        fake_quantize(rnn, "loihi2", rows.x_train[:50], Constraints(jitter=1))
    assert "\n" not in str(exc.value)


def test_lowered_graph_round_trips_through_its_file(resnet, digits, tmp_path):
    fq = fake_quantize(resnet, "loihi2", digits.x_train[:300])
    graph = graph_from_fakequant(fq)
    loaded = DeployGraph.load(graph.save(tmp_path / "g.npz"))
    assert not loaded.is_chain()
    a = simulate_graph(graph, digits.x_test, digits.y_test)
    b = simulate_graph(loaded, digits.x_test, digits.y_test)
    np.testing.assert_array_equal(a["predictions"], b["predictions"])
    assert a["accuracy"] == b["accuracy"] > 0.85


def test_cli_runs_a_graph_checkpoint(resnet, tmp_path):
    ck = resnet.checkpoint()
    path = GraphCheckpoint(ck.graph, ck.steps, ck.meta).save(tmp_path / "res.pt")
    runner = CliRunner()
    out = runner.invoke(main, ["simulate", str(path), "--limit", "60", "--no-progress"])
    assert out.exit_code == 0, out.output
    assert "deployed accuracy" in out.output
    q = runner.invoke(main, ["quantize", str(path), "-o", str(tmp_path / "q.pt"), "--no-progress"])
    assert q.exit_code == 0, q.output
    sim = runner.invoke(main, ["simulate", str(tmp_path / "q.pt"), "--limit", "60", "--no-progress"])
    assert sim.exit_code == 0, sim.output
    ft = runner.invoke(main, ["finetune", str(path), "--epochs", "1", "-o", str(tmp_path / "ft.pt"),
                              "--no-progress"])
    assert ft.exit_code == 0, ft.output
    tuned = nd.prepare(tmp_path / "ft.pt", "loihi2")  # the stored scales: no calibration
    assert not nd.convert(tuned).is_chain()
    again = nd.simulate(DeployGraph.load(tmp_path / "ft.npz"), load_dataset("digits"))
    assert again.accuracy == pytest.approx(float(ft.output.split("after fine-tuning ")[1].split("%")[0]) / 100,
                                           abs=5e-5)


def _residual_mlp(neuron, spiking_out: bool = False) -> GraphModel:
    b = GraphBuilder()
    b.add("in", gn.Input((8,)))
    b.add("fc1", gn.Affine(torch.ones(6, 8)), "in")
    b.add("n1", neuron(), "fc1")
    b.add("fc2", gn.Affine(torch.ones(6, 6)), "n1")
    b.add("skip", gn.Affine(torch.ones(6, 6)), "n1")
    b.add("sum", gn.Add(), "fc2", "skip")
    b.add("n2", neuron(), "sum")
    b.add("fc3", gn.Affine(torch.ones(4, 6)), "n2")
    if spiking_out:  # read out by spike counts
        b.add("n3", neuron(), "fc3")
    b.add("out", gn.Output("mean"), "n3" if spiking_out else "fc3")
    return GraphModel(GraphNet(b.build()), 4, {"kind": "rate"})


def _recurrent_if() -> GraphModel:
    b = GraphBuilder()
    b.add("in", gn.Input((8,)))
    b.add("fc1", gn.Affine(torch.ones(6, 8)), "in")
    b.add("n1", gn.IF(threshold=1.0, reset="subtract"), "fc1")
    b.add("rec", gn.Affine(torch.ones(6, 6)), "n1")
    b.connect("rec", "n1", recurrent=True)
    b.add("fc2", gn.Affine(torch.ones(4, 6)), "n1")
    b.add("n2", gn.IF(threshold=1.0, reset="subtract"), "fc2")
    b.add("out", gn.Output("mean"), "n2")
    return GraphModel(GraphNet(b.build()), 4, {"kind": "rate"})


@pytest.mark.parametrize("build, profile, rule", [
    (lambda: _residual_mlp(lambda: _lif(reset="subtract")), "xylo-imu", "merges"),
    (lambda: _residual_mlp(lambda: gn.IF(threshold=1.0, reset="subtract"), True), "speck2f", "merges"),
    (_recurrent_if, "speck2f", "recurrence"),
], ids=["residual-xylo-imu", "residual-speck2f", "recurrent-speck2f"])
def test_what_a_family_cannot_run_is_refused_naming_the_rule(build, profile, rule):
    with pytest.raises(UnsupportedError, match=rf"\(rule {rule}\)") as exc:
        fake_quantize(build(), profile, torch.rand(20, 8))
    assert "\n" not in str(exc.value)


def test_graphs_without_a_chip_form_are_refused_in_one_line():
    def build(extra):
        b = GraphBuilder()
        b.add("in", gn.Input((4,)))
        b.add("fc1", gn.Affine(torch.ones(3, 4)), "in")
        b.add("lif1", _lif(), "fc1")
        b.add("fc2", gn.Affine(torch.ones(3, 3)), "lif1")
        b.add("lif2", _lif(), "fc2")
        b.add("fc3", gn.Affine(torch.ones(2, 3)), "lif2")
        b.add("out", gn.Output("mean"), "fc3")
        extra(b)
        return GraphModel(GraphNet(b.build()), 4, {"kind": "rate"})

    def cycle(b):  # lif2 → back into lif1: a cycle over two groups
        b.add("back", gn.Affine(torch.ones(3, 3)), "lif2")
        b.connect("back", "lif1", recurrent=True)

    def rec_bias(b):
        b.add("rec", gn.Affine(torch.ones(3, 3), torch.ones(3)), "lif1")
        b.connect("rec", "lif1", recurrent=True)

    def spike_merge(b):  # spikes of lif1 and lif2 summed before one synapse layer
        b.nodes["fc3"] = gn.Affine(torch.ones(2, 3))
        b.edges = [e for e in b.edges if e.dst != "fc3"]
        b.add("both", gn.Add(), "lif1", "lif2")
        b.connect("both", "fc3")

    for extra, words in ((cycle, "spans several neuron groups"), (rec_bias, "bias"),
                         (spike_merge, r"without a synapse layer\s+per path")):
        with pytest.raises(UnsupportedError, match=words) as exc:
            fold_model(build(extra))
        assert "\n" not in str(exc.value)


@pytest.mark.parametrize("which", ["resnet", "rnn"])
def test_an_empty_batch_gives_empty_read_outs(request, which, digits, rows):
    model = request.getfixturevalue(which)
    data = digits if which == "resnet" else rows
    fq = fake_quantize(model, "loihi2", data.x_train[:50])
    for fused in (True, False):
        fq.fused = fused
        out = fq.readout_integers(data.x_train[:0])
        assert out.shape == (0, 10)
