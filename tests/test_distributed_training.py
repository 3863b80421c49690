"""Data-parallel training with torchrun: 2 processes reach 1 process's weights, resume across ranks.

Small on purpose (201 digits, 2 epochs, a 64-64-10 LIF MLP with rate encoding and MP-Init): the
global batch of 32 leaves a last batch of 9 samples, so the two ranks' shares differ in size.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from click.testing import CliRunner

from neurodeploy.cli import main
from neurodeploy.train.distributed import shard
from tests.torchrun import run_torchrun

CONFIG = """
[model]
arch = "mlp"
hidden = [64]
steps = 4
encoding = { kind = "rate" }
[model.neuron]
model = "lif"
threshold = 0.5
reset = "subtract"
mp_init = true
[data]
name = "digits"
limit = 201
[train]
epochs = 2
batch_size = 32
lr = 0.005
scheduler = "none"
threads = 1
log_every = 2
"""

TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}
"""1 vs 2 processes: float32 sums split over two ranks round differently (observed ~1e-8)."""


def _torchrun(tmp_path, out: str, nproc: int, *extra: str) -> None:
    run_torchrun(["train", "--config", str(tmp_path / "run.toml"), "-o", str(tmp_path / out), "--no-progress",
                  "--device", "cpu", *extra], nproc, timeout=180)


def _weights(path):
    return torch.load(path / "checkpoint.pt", weights_only=True)


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_processes_match_one_and_resume(tmp_path):
    (tmp_path / "run.toml").write_text(CONFIG)
    one = CliRunner().invoke(main, ["train", "--config", str(tmp_path / "run.toml"), "-o",
                                    str(tmp_path / "one"), "--no-progress", "--device", "cpu"])
    assert one.exit_code == 0, one.output
    _torchrun(tmp_path, "two", 2)
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        torch.testing.assert_close(b["state_dict"][key], a["state_dict"][key], **TOLERANCE, msg=key)
    assert float(a["state_dict"]["stages.2.mp_mean"]) != 0.0  # MP-Init ran (and was reduced)
    hist_a = [h for h in a["train"]["history"] if h["kind"] == "epoch"]
    hist_b = [h for h in b["train"]["history"] if h["kind"] == "epoch"]
    assert [h["train_accuracy"] for h in hist_a] == pytest.approx([h["train_accuracy"] for h in hist_b], abs=0.01)
    assert hist_b[-1]["test_accuracy"] > 0.5  # it learns
    # monitor points reduced over ranks: the global batch's spike statistics
    pts_a = [h for h in a["train"]["history"] if h["kind"] == "batch" and h["layers"]]
    pts_b = [h for h in b["train"]["history"] if h["kind"] == "batch" and h["layers"]]
    assert len(pts_a) == len(pts_b)
    for pa, pb in zip(pts_a, pts_b, strict=True):
        assert pb["layers"]["stages.2"]["rate"] == pytest.approx(pa["layers"]["stages.2"]["rate"], rel=1e-4)
        assert pb["loss"] == pytest.approx(pa["loss"], rel=1e-4)

    # interrupted after epoch 1 (a 1-epoch run), resumed on 2 processes: the uninterrupted run's weights
    _torchrun(tmp_path, "resumed", 2, "--epochs", "1")
    _torchrun(tmp_path, "resumed", 2, "--epochs", "2", "--resume")
    c = _weights(tmp_path / "resumed")
    for key in b["state_dict"]:
        assert torch.equal(c["state_dict"][key], b["state_dict"][key]), key


def test_shares_cover_the_batch_and_weights_average_to_one():
    for n in range(1, 12):
        for world in (1, 2, 3, 5):
            parts = [shard(n, r, world) for r in range(world)]
            covered = [i for sl, w in parts if w > 0 for i in range(sl.start, sl.stop)]
            assert covered == list(range(n))
            assert sum(w for _, w in parts) / world == pytest.approx(1.0)  # weighted means average to the mean
            assert all(sl.stop - sl.start == 1 for sl, w in parts if w == 0)


def test_device_cuda_without_cuda_is_one_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    res = CliRunner().invoke(main, ["train", "--device", "cuda", "-o", str(tmp_path / "x"), "--epochs", "1"])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert lines[-1].startswith("error: --device cuda: no CUDA device") and len(lines) == 1
    assert not (tmp_path / "x").exists()
