"""Fine-tuning through the chip arithmetic with torchrun: 2 processes reach 1 process's weights
with the same global batch, and a 2-process run resumed from its state file equals an
uninterrupted one.

A 64-16-10 LIF MLP on the digits (direct 8-bit input, loihi2), trained for one epoch on 201
samples, then fine-tuned on the 1,437 training digits with a global batch of 50: the last batch
of 37 samples gives the two ranks shares of 19 and 18.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from click.testing import CliRunner

from neurodeploy.cli import main
from tests.torchrun import run_torchrun

CONFIG = """
[model]
arch = "mlp"
hidden = [16]
steps = 4
encoding = { kind = "direct", bits = 8 }
[model.neuron]
model = "lif"
threshold = 0.5
reset = "zero"
[data]
name = "digits"
limit = 201
[train]
epochs = 1
batch_size = 32
threads = 1
"""

TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}
"""1 vs 2 processes: the gradient of the global batch is summed in two parts (float32 rounding);
the integer forward pass is the same, so the weights differ by rounding only."""

FINETUNE = ("--profile", "loihi2", "--batch-size", "50", "--lr", "0.002", "--no-progress")


def _torchrun(args: list[str], nproc: int) -> None:
    run_torchrun(args, nproc, timeout=300)


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_processes_finetune_like_one_and_resume(tmp_path):
    (tmp_path / "run.toml").write_text(CONFIG)
    runner = CliRunner()
    res = runner.invoke(main, ["train", "--config", str(tmp_path / "run.toml"), "-o",
                               str(tmp_path / "train"), "--no-progress", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    ck = str(tmp_path / "train" / "checkpoint.pt")
    one = tmp_path / "one.pt"
    res = runner.invoke(main, ["finetune", ck, "--epochs", "2", "-o", str(one), *FINETUNE])
    assert res.exit_code == 0, res.output
    two = tmp_path / "two.pt"
    _torchrun(["finetune", ck, "--epochs", "2", "-o", str(two), *FINETUNE], 2)
    a, b = _weights(one), _weights(two)
    assert a.keys() == b.keys()
    start = torch.load(ck, weights_only=True)["state_dict"]
    assert any(not torch.equal(a[k], start[k]) for k in a)  # fine-tuning moved the weights
    for key in a:
        torch.testing.assert_close(b[key], a[key], **TOLERANCE, msg=key)
    # interrupted after one epoch (its state file stays), resumed for the second on 2 processes
    resumed = tmp_path / "resumed.pt"
    _torchrun(["finetune", ck, "--epochs", "1", "-o", str(resumed), *FINETUNE], 2)
    assert (tmp_path / "resumed.finetune-state.pt").exists()
    refused = runner.invoke(main, ["finetune", ck, "--epochs", "2", "-o", str(resumed), *FINETUNE])
    assert refused.exit_code == 2 and "--resume" in refused.output
    _torchrun(["finetune", ck, "--epochs", "2", "--resume", "-o", str(resumed), *FINETUNE], 2)
    c = _weights(resumed)
    for key in b:
        assert torch.equal(c[key], b[key]), key
