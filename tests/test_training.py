"""Training on the embedded digits: accuracy, exact resume, checkpoints, doctor, monitor."""

from __future__ import annotations

import json

import pytest
import torch

from neurodeploy.data import load_dataset
from neurodeploy.errors import CheckpointError, ConfigError
from neurodeploy.models import ModelSpec, build_model
from neurodeploy.train.checkpoint import Checkpoint, load_checkpoint
from neurodeploy.train.config import TrainConfig, load_run_config
from neurodeploy.train.trainer import Trainer, train_model


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _spec(batch_norm=False, **neuron):
    return ModelSpec(arch="mlp", input_shape=(1, 8, 8), hidden=[64, 64], steps=6,
                     encoding={"kind": "direct", "bits": 8}, batch_norm=batch_norm,
                     neuron={"threshold": 0.5, **neuron})


def test_trains_to_real_accuracy_and_writes_artifacts(digits, tmp_path):
    torch.manual_seed(0)
    result = train_model(build_model(_spec()), digits, TrainConfig(epochs=8, threads=1), tmp_path,
                         progress=False)
    assert result.test_accuracy >= 0.9
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["kind"] == "batch" and lines[0]["step"] == 0  # monitored from step 0
    assert {"rate", "dead", "saturated", "grad_dead", "density", "q50"} <= set(lines[0]["layers"]["stages.2"])
    assert sum(1 for x in lines if x["kind"] == "epoch") == 8
    ck = load_checkpoint(tmp_path / "checkpoint.pt")
    model = ck.build()
    acc = (model(digits.x_test).argmax(1) == digits.y_test).float().mean().item()
    assert acc == pytest.approx(result.test_accuracy)


@pytest.mark.parametrize("neuron", [
    {"model": "cuba", "current_decay": 2048, "voltage_decay": 1024},
    {"model": "plif", "learn_threshold": True, "scale": "threshold_robust", "mp_init": True,
     "reset": "subtract", "form": "decay_input", "surrogate": "rectangular", "threshold": 1.0,
     "batch_norm": True},
    {"model": "if", "surrogate": {"name": "adali", "schedule": "log"}},
])
def test_other_neurons_and_surrogates_train(digits, tmp_path, neuron):
    torch.manual_seed(1)
    result = train_model(build_model(_spec(**neuron)), digits, TrainConfig(epochs=6, threads=1),
                         tmp_path, progress=False)
    assert result.test_accuracy >= 0.85, neuron


def test_adali_density_falls_over_epochs(digits, tmp_path):
    torch.manual_seed(0)
    result = train_model(build_model(_spec(surrogate={"name": "adali"}, threshold=1.0)), digits,
                         TrainConfig(epochs=6, threads=1), tmp_path, progress=False)
    epochs = [h for h in result.history if h["kind"] == "epoch"]
    first = sum(epochs[0]["density"].values())
    last = sum(epochs[-1]["density"].values())
    assert last < first


def test_resume_equals_uninterrupted_run(digits, tmp_path, monkeypatch):
    cfg = TrainConfig(epochs=4, threads=1, batch_size=128)
    data = load_dataset("digits", limit=400)
    torch.manual_seed(0)
    full = train_model(build_model(_spec(mp_init=True)), data, cfg, tmp_path / "full", progress=False)

    # interrupt the same run right after the checkpoint of epoch 2 is written
    original_save = Trainer._save

    def save_then_interrupt(self, *args):
        original_save(self, *args)
        if self.epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_save", save_then_interrupt)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train_model(build_model(_spec(mp_init=True)), data, cfg, tmp_path / "cut", progress=False)
    monkeypatch.setattr(Trainer, "_save", original_save)
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt").train["epoch"] == 2
    torch.manual_seed(123)  # a different global seed must not matter
    resumed = train_model(build_model(_spec(mp_init=True)), data, cfg, tmp_path / "cut", resume=True,
                          progress=False)
    a = load_checkpoint(full.checkpoint).state_dict
    b = load_checkpoint(resumed.checkpoint).state_dict
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed.test_accuracy == full.test_accuracy


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 50)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not written by neurodeploy"):
        load_checkpoint(tmp_path / "foreign.pt")
    model = build_model(_spec())
    Checkpoint.from_model(model).save(tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "cut.pt")
    ck = load_checkpoint(tmp_path / "good.pt")
    first = next(iter(ck.state_dict))
    ck.state_dict.pop(first)
    with pytest.raises(CheckpointError, match="do not match") as exc:
        ck.build()
    assert first in str(exc.value) and "\n" not in str(exc.value)  # the message names the weight


def test_run_config_errors(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[model]\narch = "mlp"\nhiden = [3]\n')
    with pytest.raises(ConfigError, match="hiden"):
        load_run_config(p)
    p.write_text('[train]\nepochs = "ten"\n')
    with pytest.raises(ConfigError, match="train.epochs"):
        load_run_config(p)
    p.write_text('[model]\narch = "mlp"\nhidden = "32"\n')  # a string is not a list of widths 3 and 2
    with pytest.raises(ConfigError, match="hidden must be a list"):
        load_run_config(p)
    p.write_text("[train\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_run_config(p)
    p.write_text('[model]\nsteps = 4\n[model.neuron]\nthreshold = 0.3\n[train]\nepochs = 2\n')
    cfg = load_run_config(p)
    assert cfg.model.steps == 4 and cfg.model.neuron["threshold"] == 0.3 and cfg.train.epochs == 2
