"""The command line: the main job, and one-line errors with a non-zero exit for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from neurodeploy.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_line_error(result, *words):
    assert result.exit_code == 2, result.output
    lines = [x for x in result.output.strip().splitlines() if x]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for w in words:
        assert w in lines[0], lines[0]


@pytest.mark.parametrize("args, words", [
    (["--model", "resnet9000"], ["resnet9000"]),
    (["--neuron", "hodgkin"], ["hodgkin"]),
    (["--surrogate", "magic"], ["magic"]),
    (["--surrogate", "atan", "--surrogate-param", "beta=3"], ["beta"]),
    (["--dataset", "mnist", "--data-root", "/nonexistent/folder"], ["/nonexistent/folder"]),
    (["--dataset", "imagenet"], ["imagenet"]),
    (["--epochs", "0"], ["epochs"]),
    (["--hidden", "12,x"], ["--hidden"]),
    (["--threshold", "-1"], ["threshold"]),
])
def test_train_bad_options(tmp_path, args, words):
    out = tmp_path / "run"
    _one_line_error(run("train", *args, "-o", out), *words)
    assert not out.exists() or not any(out.iterdir())


def test_train_bad_config_file(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[train]\nepochs = "many"\n')
    _one_line_error(run("train", "--config", cfg, "-o", tmp_path / "o"), "train.epochs")
    for key, value, word in (("seed", -1, "train.seed"), ("seed", 2**32, "train.seed"),
                             ("epochs", 10**9, "train.epochs"), ("batch_size", 0, "train.batch_size")):
        cfg.write_text(f"[train]\n{key} = {value}\n")  # the same bounds as the options'
        _one_line_error(run("train", "--config", cfg, "-o", tmp_path / "o"), word)
    cfg.write_text('[model]\nwidth = 3\n')
    _one_line_error(run("train", "--config", cfg, "-o", tmp_path / "o"), "width")
    _one_line_error(run("train", "--config", tmp_path / "missing.toml", "-o", tmp_path / "o"), "missing.toml")


def test_inspect_bad_checkpoints(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    _one_line_error(run("inspect", junk), "junk.pt")
    torch.save({"a": 1}, tmp_path / "foreign.pt")
    _one_line_error(run("inspect", tmp_path / "foreign.pt"), "not written by neurodeploy")
    _one_line_error(run("inspect", tmp_path / "nothing.pt"), "does not exist")


def test_train_then_inspect(tmp_path):
    out = tmp_path / "run"
    res = run("train", "--epochs", "3", "--hidden", "48", "--steps", "4", "--threshold", "0.5",
              "--limit", "300", "-o", out, "--no-progress")
    assert res.exit_code == 0, res.output
    assert (out / "checkpoint.pt").exists() and (out / "metrics.jsonl").exists()
    # refusing to overwrite without --resume
    _one_line_error(run("train", "--epochs", "3", "-o", out), "--resume")
    res = run("inspect", out / "checkpoint.pt", "--limit", "100")
    assert res.exit_code == 0, res.output
    assert "stages.2" in res.output and "spikes per neuron" in res.output
    data = json.loads((out / "inspect.json").read_text())
    assert set(data["layers"]) == {"stages.2"}
    assert (out / "activity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_console_script_error_exit_code(tmp_path):
    """The installed entry point (a real process) prints one line and exits 2."""
    proc = subprocess.run([sys.executable, "-m", "neurodeploy.cli", "train", "--model", "nope",
                           "-o", str(tmp_path / "x")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1


def test_profiles_commands(tmp_path):
    res = run("profiles", "list")
    assert res.exit_code == 0 and {"loihi", "loihi2", "xylo"} <= {ln.split()[0] for ln in res.output.splitlines()}
    res = run("profiles", "show", "loihi2")
    assert res.exit_code == 0 and "24-bit" in res.output
    res = run("profiles", "show", "loihi", "--json")
    assert res.exit_code == 0 and json.loads(res.output)["profile"]["family"] == "loihi"
    _one_line_error(run("profiles", "show", "no-such-chip"), "no-such-chip")
    from pathlib import Path

    good = (Path(__file__).parents[1] / "hardware_profiles" / "loihi.toml").read_text()
    mine = tmp_path / "mine.toml"
    mine.write_text(good.replace('name = "loihi"', 'name = "mine"'))
    res = run("profiles", "validate", mine)
    assert res.exit_code == 0 and "ok" in res.output
    mine.write_text(good.replace("bits = 8", "bits = 0", 1))
    _one_line_error(run("profiles", "validate", mine), "bits")
    mine.write_text(good.replace("[limits]", "[limits]\ncorse = 3"))
    _one_line_error(run("profiles", "validate", mine), "corse")
