"""A run interrupted after epoch 1 of 3 and resumed logs exactly what the uninterrupted run logs:
the firing-rate monitor's windows and accumulators and the doctor's remedy in flight travel in the
checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from neurodeploy.data import load_dataset
from neurodeploy.models import ModelSpec, build_model
from neurodeploy.train.config import TrainConfig
from neurodeploy.train.trainer import Trainer, train_model


def _records(path):
    out = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        rec.pop("seconds", None)  # wall-clock time of the epoch, the one field that may differ
        out.append(rec)
    return out


@pytest.mark.parametrize("auto_remedy", [False, True])
def test_resumed_metrics_equal_uninterrupted_run(tmp_path, monkeypatch, auto_remedy):
    data = load_dataset("digits", limit=500)
    # threshold 20: dead layers, so the doctor has remedies in flight across the interruption;
    # 9 batches per epoch with a point every 4: the accumulators span the epoch boundary
    spec = ModelSpec(arch="mlp", input_shape=(1, 8, 8), hidden=[32, 32], steps=4,
                     encoding={"kind": "direct", "bits": 8}, neuron={"threshold": 20.0 if auto_remedy else 0.5})
    cfg = TrainConfig(epochs=3, threads=1, batch_size=48, log_every=4, monitor_window=7,
                      auto_remedy=auto_remedy)
    torch.manual_seed(0)
    train_model(build_model(spec), data, cfg, tmp_path / "full", progress=False)

    original_save = Trainer._save

    def save_then_interrupt(self, *args):
        original_save(self, *args)
        if self.epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_save", save_then_interrupt)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train_model(build_model(spec), data, cfg, tmp_path / "cut", progress=False)
    monkeypatch.setattr(Trainer, "_save", original_save)
    torch.manual_seed(7)
    train_model(build_model(spec), data, cfg, tmp_path / "cut", resume=True, progress=False)

    full, resumed = _records(tmp_path / "full" / "metrics.jsonl"), _records(tmp_path / "cut" / "metrics.jsonl")
    assert len(full) == len(resumed)
    for a, b in zip(full, resumed, strict=True):
        assert a == b
    if auto_remedy:
        ck_full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
        ck_cut = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
        assert ck_full["train"]["doctor"]["trials"]
        assert ck_full["train"]["doctor"] == ck_cut["train"]["doctor"]


def test_remedies_stay_in_the_model_spec(tmp_path):
    """The doctor's remedies are recorded in the trained model's spec, never in the caller's (a
    second network built from the same spec once started with the first one's remedied threshold)."""
    data = load_dataset("digits", limit=500)
    spec = ModelSpec(arch="mlp", input_shape=(1, 8, 8), hidden=[32, 32], steps=4,
                     encoding={"kind": "direct", "bits": 8}, neuron={"threshold": 20.0})
    before = spec.to_dict()
    cfg = TrainConfig(epochs=3, threads=1, batch_size=48, log_every=4, monitor_window=7, auto_remedy=True)
    torch.manual_seed(0)
    model = build_model(spec)
    train_model(model, data, cfg, tmp_path / "run", progress=False)
    assert model.spec.overrides, "the doctor applied no remedy: the test no longer exercises one"
    assert spec.to_dict() == before
