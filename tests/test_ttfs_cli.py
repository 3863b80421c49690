"""The TTFS commands: convert a ReLU network, fine-tune and simulate it; bad input fails in one line."""

from __future__ import annotations

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
    res = r.invoke(main, ["ttfs", "simulate", str(tmp_path / "f.pt"), "--limit", "100"])
    assert res.exit_code == 0 and "deployed accuracy" in res.output, res.output
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    res = r.invoke(main, ["convert", str(tmp_path / "bad.onnx"), "--to", "ttfs", "-o", str(tmp_path / "x.pt")])
    assert res.exit_code == 2 and res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.pt").exists()
    res = r.invoke(main, ["ttfs", "finetune", str(tmp_path / "t.pt"), "--weight-bits", "1", "-o",
                          str(tmp_path / "y.pt")])
    assert res.exit_code == 2 and "error:" in res.output
