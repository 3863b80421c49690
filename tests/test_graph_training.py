"""Training graph networks (neurodeploy.train.graph_trainer): a network written in PyTorch or a
NIR import trains with the template trainer's features (checkpoint every epoch, metrics.jsonl,
monitor, exact resume) into a graph checkpoint; the recurrent example's training half learns the
row-by-row digits; the CLI trains a graph checkpoint and refuses what does not apply in one line."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import neurodeploy as nd
from neurodeploy.cli import main
from neurodeploy.errors import CheckpointError, ConfigError
from neurodeploy.models.graph_net import GraphCheckpoint, GraphNet, load_graph_checkpoint
from neurodeploy.train.graph_trainer import graph_model
from neurodeploy.train.trainer import Trainer, evaluate

ROOT = Path(__file__).resolve().parents[1]


def _example():
    spec = importlib.util.spec_from_file_location("recurrent_digits", ROOT / "examples" / "recurrent_digits.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def rows():
    return nd.load_dataset("digits-rows")


def test_digit_rows_are_the_digits_row_by_row_as_4_bit_events(rows):
    digits = nd.load_dataset("digits")
    assert rows.x_train.shape == (1437, 8, 8) and torch.equal(rows.y_test, digits.y_test)
    assert torch.equal(rows.x_test, torch.round(digits.x_test[:, 0] * 15))
    assert float(rows.x_train.max()) == 15.0 and torch.equal(rows.x_train, rows.x_train.round())


def test_the_examples_training_half_learns_the_temporal_task(rows, tmp_path):
    """The recurrent network of examples/recurrent_digits.py, 8 epochs: well above chance (10 %)."""
    ex = _example()
    net, res = ex.train(rows, "zero", tmp_path / "train", epochs=8, progress=False)
    assert res.test_accuracy > 0.7, res.test_accuracy
    assert [(e.src, e.dst) for e in net.graph.edges if e.recurrent] == [("rec.recurrent", "rec.neuron")]
    ck = load_graph_checkpoint(res.checkpoint)
    assert ck.meta["test_accuracy"] == res.test_accuracy and ck.train["epoch"] == 8
    # the checkpoint holds the trained weights: its graph network gives the recorded accuracy
    model = graph_model(ck)
    acc, _ = evaluate(model, rows.x_test, rows.y_test)
    assert acc == res.test_accuracy
    epochs = [json.loads(line) for line in (tmp_path / "train" / "metrics.jsonl").read_text().splitlines()]
    layers = [r["layers"] for r in epochs if r["kind"] == "batch"]
    assert layers and all(set(x) == {"rec.neuron"} for x in layers)  # the monitor watches the recurrent group
    assert 0.0 < layers[-1]["rec.neuron"]["rate"] < 1.0
    # the graph checkpoint deploys on the temporal dataset it records
    r = CliRunner().invoke(main, ["simulate", str(res.checkpoint), "--profile", "loihi2", "--limit", "40",
                                  "--no-progress"])
    assert r.exit_code == 0 and "deployed accuracy" in r.output, r.output


def test_the_examples_deploy_half_exports_both_chips(tmp_path):
    """examples/recurrent_digits.py's nd.prepare / finetune / convert / simulate / export_to on a
    quickly trained network per chip (a small split): a Lava process network whose recurrent Dense
    feeds the LIF group its own spikes, and a Xylo spec whose recurrent weights hold them."""
    from neurodeploy.families.loihi.lava_process import load_spec as load_process_network
    from neurodeploy.families.xylo.spec import load_spec as load_xylo_spec

    ex = _example()
    small = nd.load_dataset("digits-rows", limit=240)
    for chip in ("loihi2", "xylo-imu"):
        _, res = ex.train(small, ex.CHIPS[chip][0], tmp_path / chip / "train", epochs=3, hidden=32, progress=False)
        row = ex.deploy(res.checkpoint, chip, small, tmp_path / chip, epochs=1, progress=False)
        assert row["deployed_accuracy"] > 0.2, (chip, row)
        assert nd.DeployGraph.load(tmp_path / chip / "finetuned.npz").profile == chip
        if chip == "loihi2":
            header, arrays = load_process_network(row["export"])
            rec = [c for c in header["connections"] if c["source"] == c["target"]]
            assert [c["name"] for c in rec] == ["rec.recurrent"] and rec[0]["delay"] == 1
            assert arrays["rec.recurrent.weight"].shape == (32, 32) and arrays["rec.recurrent.weight"].any()
        else:
            spec = load_xylo_spec(row["export"])
            assert spec.sizes == (8, 32, 10) and spec.weights_rec.any()


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 24)
        self.sn = nd.SpikingNeuron(threshold=0.5, tau=2.0)
        self.skip = nn.Linear(16, 10)
        self.out = nn.Linear(24, 10)

    def forward(self, x):
        return self.out(self.sn(self.fc(x))) + self.skip(x)


def _digits16(limit=150):
    d = nd.load_dataset("digits-4x4", limit=limit)
    d.x_train, d.x_test = d.x_train.reshape(-1, 16), d.x_test.reshape(-1, 16)
    d.input_shape = (16,)
    return d


def test_resume_continues_to_exactly_the_weights_of_an_uninterrupted_run(tmp_path, monkeypatch):
    data = _digits16()
    cfg = nd.TrainConfig(epochs=3, lr=5e-3, batch_size=32, threads=1, log_every=3)
    torch.manual_seed(0)
    full = Small()
    nd.fit(full, data, cfg, out_dir=tmp_path / "full", steps=4, progress=False)
    original_save = Trainer._save

    def save_then_interrupt(self, *args):  # killed right after the checkpoint of epoch 2
        original_save(self, *args)
        if self.epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_save", save_then_interrupt)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        nd.fit(Small(), data, cfg, out_dir=tmp_path / "part", steps=4, progress=False)
    monkeypatch.setattr(Trainer, "_save", original_save)
    assert load_graph_checkpoint(tmp_path / "part" / "checkpoint.pt").train["epoch"] == 2
    torch.manual_seed(1)  # the resumed run's weights come from the checkpoint, not from this seed
    nd.fit(Small(), data, cfg, out_dir=tmp_path / "part", steps=4, resume=True, progress=False)
    a = load_graph_checkpoint(tmp_path / "full" / "checkpoint.pt")
    b = load_graph_checkpoint(tmp_path / "part" / "checkpoint.pt")
    for name in a.graph.nodes:
        for f in ("weight", "bias"):
            va, vb = getattr(a.graph.nodes[name], f, None), getattr(b.graph.nodes[name], f, None)
            assert (va is None and vb is None) or torch.equal(va, vb), (name, f)

    def logged(folder):  # every record but the wall-clock seconds
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (folder / "metrics.jsonl").read_text().splitlines()]

    assert logged(tmp_path / "full") == logged(tmp_path / "part")
    assert len(logged(tmp_path / "full")) == len(a.train["history"]) > 3
    # the PyTorch module got the trained weights back
    assert torch.equal(full.out.weight, a.graph.nodes["out"].weight.float())
    # a run folder of another network is refused, not mixed
    other = nn.Sequential(nn.Linear(16, 10))
    with pytest.raises(CheckpointError, match="another graph network"):
        nd.fit(other, data, cfg, out_dir=tmp_path / "part", steps=4, resume=True, progress=False)
    with pytest.raises(ConfigError, match="remedies"):
        nd.fit(Small(), data, nd.TrainConfig(epochs=1, auto_remedy=True), out_dir=tmp_path / "x", steps=4)


def _recurrent_nir() -> nir.NIRGraph:
    """8 inputs -> affine -> LIF with a recurrent affine (a cycle) -> affine -> output, as NIR writes it."""
    rng = np.random.default_rng(0)
    hidden = 24
    nodes = {
        "input": nir.Input(input_type=np.array([8])),
        "fc": nir.Affine(weight=rng.normal(0, 0.5, (hidden, 8)).astype(np.float32), bias=np.zeros(hidden, np.float32)),
        "lif": nir.LIF(tau=np.full(hidden, 4e-3), r=np.full(hidden, 4.0), v_leak=np.zeros(hidden),
                       v_threshold=np.full(hidden, 0.5)),
        "rec": nir.Linear(weight=rng.normal(0, 0.1, (hidden, hidden)).astype(np.float32)),
        "out": nir.Affine(weight=rng.normal(0, 0.3, (10, hidden)).astype(np.float32), bias=np.zeros(10, np.float32)),
        "output": nir.Output(output_type=np.array([10])),
    }
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "out"), ("out", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def test_cli_trains_an_imported_recurrent_nir_graph(tmp_path, rows):
    src = tmp_path / "rnn.nir"
    nir.write(src, _recurrent_nir())
    runner = CliRunner()
    r = runner.invoke(main, ["import", str(src), "-o", str(tmp_path / "g.pt"), "--convention", "norse", "--dt", "1e-3",
                             "--steps", "8", "--encoding", "direct"])
    assert r.exit_code == 0, r.output
    ck = load_graph_checkpoint(tmp_path / "g.pt")
    assert any(e.recurrent for e in ck.graph.edges)
    args = ["train", "--model", str(tmp_path / "g.pt"), "--dataset", "digits-rows", "--input-bits", "4",
            "--limit", "120", "--epochs", "1", "--lr", "0.005", "--no-progress"]
    r = runner.invoke(main, [*args, "-o", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert "test accuracy" in r.output and "graph checkpoint" in r.output
    trained = load_graph_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert trained.meta["imported_from"]["convention"] == "norse" and trained.meta["dataset"] == "digits-rows"
    assert not torch.equal(trained.graph.nodes["fc"].weight.float(), ck.graph.nodes["fc"].weight.float())
    assert {k: trained.graph.meta["encoding"][k] for k in ("kind", "bits")} == {"kind": "direct", "bits": 4}
    assert (tmp_path / "run" / "metrics.jsonl").is_file()
    # what does not apply is refused in one line, exit 2, nothing written
    for extra, words in ((["--hidden", "32"], "--hidden: the layers of a graph network"),
                         (["--dataset", "digits"], "samples of shape (1, 8, 8)")):
        r = runner.invoke(main, [*args, *extra, "-o", str(tmp_path / "bad")])
        assert r.exit_code == 2 and r.output.count("\n") == 1 and words in r.output, r.output
        assert not (tmp_path / "bad" / "checkpoint.pt").exists()
    r = runner.invoke(main, [*args, "-o", str(tmp_path / "run")])
    assert r.exit_code == 2 and "already holds a checkpoint" in r.output


def test_graph_networks_in_every_form_become_one_trainable_model(tmp_path):
    torch.manual_seed(0)
    g = nd.graph_from_torch(Small().eval(), (16,), steps=3)
    GraphCheckpoint(g, 3, {"dataset": "digits-4x4"}).save(tmp_path / "g.pt")
    for form in (g, GraphNet(g), tmp_path / "g.pt", load_graph_checkpoint(tmp_path / "g.pt")):
        m = graph_model(form)
        assert m.spec.steps == 3 and m.spec.input_shape == (16,)
    with pytest.raises(ConfigError, match="needs steps"):
        graph_model(Small(), _digits16())
    with pytest.raises(ConfigError, match="cannot train"):
        graph_model(42)
