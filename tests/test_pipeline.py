"""The main job on the embedded default, end to end, and its resume."""

from __future__ import annotations

import json

from click.testing import CliRunner

from neurodeploy.cli import main


def test_pipeline_default_reaches_95_percent(tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["pipeline", "-o", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert report["train"]["test_accuracy"] >= 0.95
    assert report["seconds"] < 120
    for name in ("report.md", "activity.png", "training.png", "inspect.json", "train/checkpoint.pt",
                 "deploy/finetuned.pt", "deploy/finetuned.npz", "deploy/simulate-loihi2.json"):
        assert (out / name).exists(), name
    dep = report["deployment"]
    assert dep["profile"] == "loihi2" and dep["deployed_accuracy"] >= 0.95
    assert dep["fit"]["fits"] and dep["figures"]["synops_per_sample"] > 0
    # a second run without --resume refuses; with --resume it skips the finished training
    res = CliRunner().invoke(main, ["pipeline", "-o", str(out)])
    assert res.exit_code == 2 and "--resume" in res.output
    res = CliRunner().invoke(main, ["pipeline", "-o", str(out), "--resume", "--no-progress"])
    assert res.exit_code == 0 and "already complete" in res.output
    again = json.loads((out / "report.json").read_text())
    assert again["train"]["test_accuracy"] == report["train"]["test_accuracy"]
    assert again["deployment"]["deployed_accuracy"] == dep["deployed_accuracy"]


def test_pipeline_refuses_a_bad_profile_before_training(tmp_path):
    res = CliRunner().invoke(main, ["pipeline", "-o", str(tmp_path / "r"), "--profile", "nochip"])
    assert res.exit_code == 2 and res.output.startswith("error: ") and "nochip" in res.output
    assert not (tmp_path / "r" / "train").exists()
