"""The TTFS commands: convert a ReLU network, fine-tune and simulate it; bad input fails in one line."""

from __future__ import annotations

import json

import torch
from click.testing import CliRunner
from torch import nn

from neurodeploy.cli import main


def test_convert_finetune_simulate(tmp_path):
    torch.manual_seed(0)
    relu = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).double()
    torch.save(relu, tmp_path / "relu.pt")
    r = CliRunner()
    res = r.invoke(main, ["convert", str(tmp_path / "relu.pt"), "--to", "ttfs", "-o", str(tmp_path / "t.pt")])
    assert res.exit_code == 0, res.output
    assert "arg-max agreement 100.00%" in res.output
    res = r.invoke(main, ["ttfs", "finetune", str(tmp_path / "t.pt"), "--weight-bits", "6", "-o",
                          str(tmp_path / "f.pt")])
    assert res.exit_code == 0, res.output
    res = r.invoke(main, ["ttfs", "simulate", str(tmp_path / "f.pt"), "--limit", "100", "--graph",
                          str(tmp_path / "f.npz")])
    assert res.exit_code == 0 and "deployed accuracy" in res.output, res.output
    # the saved deployment graph on the shared simulator: the program's accuracy, sample for sample
    rep = json.loads((tmp_path / "simulate-ttfs.json").read_text())
    assert rep["fit"]["fits"] and rep["program"]["steps_per_window"] == 1024
    res = r.invoke(main, ["simulate", str(tmp_path / "f.npz"), "--limit", "100", "-o", str(tmp_path / "s.json")])
    assert res.exit_code == 0, res.output
    sim = json.loads((tmp_path / "s.json").read_text())
    assert sim["deployed_accuracy"] == rep["constrained"]["deployed_accuracy"] and sim["samples"] == 100
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    res = r.invoke(main, ["convert", str(tmp_path / "bad.onnx"), "--to", "ttfs", "-o", str(tmp_path / "x.pt")])
    assert res.exit_code == 2 and res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.pt").exists()
    res = r.invoke(main, ["ttfs", "finetune", str(tmp_path / "t.pt"), "--weight-bits", "1", "-o",
                          str(tmp_path / "y.pt")])
    assert res.exit_code == 2 and "error:" in res.output


def test_activity_penalty_and_weight_percentile_options(tmp_path):
    r = CliRunner()
    res = r.invoke(main, ["ttfs", "train", "--limit", "300", "--hidden", "16", "--batch-size", "32",
                          "--activity-penalty", "1", "-o", str(tmp_path / "t.pt")])
    assert res.exit_code == 0, res.output
    res = r.invoke(main, ["ttfs", "finetune", str(tmp_path / "t.pt"), "--weight-bits", "4", "--weight-percentile",
                          "99", "--activity-penalty", "2", "-o", str(tmp_path / "f.pt")])
    assert res.exit_code == 0 and "spikes per neuron" in res.output, res.output
    meta = torch.load(tmp_path / "f.pt", weights_only=False)["meta"]
    assert meta["ttfs_constraints"]["weight_percentile"] == 99
    assert meta["finetune"]["config"]["activity_penalty"] == 2
    # simulate takes the stored percentile: the fine-tuning's deployed accuracy, exactly
    res = r.invoke(main, ["ttfs", "simulate", str(tmp_path / "f.pt"), "-o", str(tmp_path / "s.json")])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "s.json").read_text())
    assert rep["constrained"]["deployed_accuracy"] == meta["finetune"]["after"]["deployed_accuracy"]
    for args, opt in ((["--activity-penalty", "-1"], "--activity-penalty"),
                      (["--weight-percentile", "99"], "weight bits"),
                      (["--weight-bits", "4", "--weight-percentile", "0"], "--weight-percentile")):
        res = r.invoke(main, ["ttfs", "finetune", str(tmp_path / "t.pt"), *args, "-o", str(tmp_path / "y.pt")])
        assert res.exit_code == 2 and res.output.startswith("error: ") and opt in res.output, res.output
        assert not (tmp_path / "y.pt").exists()
