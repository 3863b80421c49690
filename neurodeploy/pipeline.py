"""The main job: train, inspect, simulate on a chip profile, report — one resumable run folder.

Layout of a run folder::

    run/
      train/checkpoint.pt, train/metrics.jsonl   training (resumable)
      inspect.json, activity.png, training.png   activity of the trained network
      deploy/finetuned.pt, finetuned.npz         fine-tuned checkpoint for the profile and its integer graph
      deploy/simulate-PROFILE.json               bit-accurate deployment figures
      report.json, report.md                     the summary a person reads

With ``resume=True`` a stage whose outputs are complete is not run again, and an interrupted
training continues from its last epoch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neurodeploy.atomic import write_json, write_text
from neurodeploy.data import load_dataset
from neurodeploy.lower.graph import DeployGraph
from neurodeploy.models import ModelSpec, build_model
from neurodeploy.quantize.fakequant import Constraints
from neurodeploy.quantize.finetune import FinetuneConfig
from neurodeploy.quantize.record import QuantRecord
from neurodeploy.report.inspect import inspect_checkpoint
from neurodeploy.report.plots import plot_activity, plot_training
from neurodeploy.sim.deploy import deployment_from_graph
from neurodeploy.train.checkpoint import load_checkpoint
from neurodeploy.train.config import DataConfig, RunConfig, TrainConfig
from neurodeploy.train.trainer import CHECKPOINT_NAME, Trainer
from neurodeploy.workflows import finetune_model, quantized_outputs, save_quantized


def default_run_config() -> RunConfig:
    """The embedded default: a 64-128-128-10 LIF MLP on scikit-learn's digits, 8 steps."""
    return RunConfig(
        model=ModelSpec(arch="mlp", input_shape=(1, 8, 8), hidden=[128, 128], steps=8,
                        encoding={"kind": "direct", "bits": 8},
                        neuron={"model": "lif", "tau": 2.0, "threshold": 0.5, "reset": "zero",
                                "surrogate": {"name": "atan", "alpha": 2.0}}),
        data=DataConfig(name="digits"),
        train=TrainConfig(epochs=30, batch_size=64, lr=2e-3, threads=1),
    )


@dataclass
class PipelineResult:
    """Paths and headline figures of a pipeline run."""

    out_dir: Path
    checkpoint: Path
    test_accuracy: float
    seconds: float
    report: dict[str, Any]


DEFAULT_PROFILE = "loihi2"
FINETUNE_EPOCHS = 2


def run_pipeline(out_dir: str | Path, config: RunConfig | None = None, resume: bool = False,
                 progress: bool | None = None, log=print, profile: str = DEFAULT_PROFILE,
                 finetune_epochs: int = FINETUNE_EPOCHS) -> PipelineResult:
    """Train → inspect → quantize, fine-tune and simulate on ``profile`` → report into ``out_dir``;
    see the module docstring."""
    cfg = config or default_run_config()
    out = Path(out_dir)
    start = time.perf_counter()
    data = load_dataset(cfg.data.name, cfg.data.root, limit=cfg.data.limit)
    out.mkdir(parents=True, exist_ok=True)  # after the data loads: a refused run leaves no folder
    if tuple(cfg.model.input_shape) != tuple(data.input_shape) or cfg.model.num_classes != data.num_classes:
        cfg.model.input_shape = tuple(data.input_shape)
        cfg.model.num_classes = data.num_classes
    train_dir = out / "train"
    ck_path = train_dir / CHECKPOINT_NAME
    done_epochs = 0
    if resume and ck_path.exists():
        done_epochs = int(load_checkpoint(ck_path).train.get("epoch", 0))
    trained_before = done_epochs >= cfg.train.epochs  # later stages of an earlier run are still valid
    write_json(out / "config.json", cfg.to_dict())

    # 1. train
    if done_epochs < cfg.train.epochs:
        import torch

        torch.manual_seed(cfg.train.seed)
        model = build_model(cfg.model)
        log(f"[1/4] training {cfg.model.arch} on {data.name} ({len(data.x_train)} train / "
            f"{len(data.x_test)} test; {data.split})")
        trainer = Trainer(model, data, cfg.train, train_dir, progress=progress)
        result = trainer.fit(resume=resume and ck_path.exists())
        log(f"      test accuracy {100 * result.test_accuracy:.2f}% after {result.epochs} epochs "
            f"({result.seconds:.1f} s)")
        for f in result.findings:
            log(f"      doctor: {f['layer']}: {f['message']}")
    else:
        log(f"[1/4] training already complete ({done_epochs} epochs), skipped")
    ck = load_checkpoint(ck_path)

    # 2. inspect
    log("[2/4] inspecting activity on the test split")
    insp = inspect_checkpoint(ck_path, data)
    write_json(out / "inspect.json", insp.to_dict())
    plot_activity(insp.layers, insp.params, out / "activity.png", title=f"{data.name}: activity")
    plot_training(ck.train.get("history", []), out / "training.png", title=f"{data.name}: training")

    # 3. quantize for the profile, fine-tune through its integer arithmetic, simulate
    log(f"[3/4] quantizing for {profile}, fine-tuning ({finetune_epochs} epochs) and simulating")
    tuned_path = out / "deploy" / "finetuned.pt"
    graph_path = quantized_outputs(tuned_path)[1].path
    if resume and trained_before and tuned_path.exists() and graph_path.exists():
        # the stored deployment graph holds the integers and scales the finished run simulated, and the
        # tuned checkpoint the float accuracy of the trained network: the figures do not change
        q = QuantRecord.from_meta(load_checkpoint(tuned_path).meta)
        dep = deployment_from_graph(DeployGraph.load(graph_path), data, q.results["float_accuracy"],
                                    progress=progress)
        ptq_acc = q.results["ptq_accuracy"]
        log("      fine-tuning already complete, its deployment graph simulated again")
    else:
        ft = finetune_model(ck.build(), profile, data, Constraints(),
                            FinetuneConfig(epochs=finetune_epochs, threads=cfg.train.threads), progress=progress)
        dep, ptq_acc = ft.after, ft.before.accuracy
        dep.float_accuracy = ft.before.float_accuracy
        save_quantized(ft.model, tuned_path, dep, ft.constraints, ft.scales, meta=ck.meta, ptq_accuracy=ptq_acc,
                       finetune=ft.summary())
    write_json(out / "deploy" / f"simulate-{dep.profile}.json", dep.to_dict())
    for w in dep.warnings:
        log(f"warning: {w}")
    log(f"      simulated accuracy on {dep.profile}: {100 * ptq_acc:.2f}% after quantization, "
        f"{100 * dep.accuracy:.2f}% after fine-tuning (float {100 * dep.float_accuracy:.2f}%)")

    # 4. report
    log("[4/4] writing report")
    report = {
        "dataset": data.name,
        "split": data.split,
        "model": cfg.model.to_dict(),
        "train": {"epochs": ck.train.get("epoch"), "test_accuracy": insp.accuracy,
                  "findings": ck.train.get("findings", []), "remedies": ck.train.get("remedies", [])},
        "activity": insp.layers,
        "spikes_per_neuron": insp.spikes_per_neuron,
        "deployment": {**dep.to_dict(), "ptq_accuracy": ptq_acc},
        "seconds": time.perf_counter() - start,
    }
    write_json(out / "report.json", report)
    write_text(out / "report.md", render_markdown(report, insp.table(), dep.table()))
    log(f"done: float test accuracy {100 * insp.accuracy:.2f}%, simulated on {dep.profile} "
        f"{100 * dep.accuracy:.2f}%; report in {out / 'report.md'}")
    return PipelineResult(out, ck_path, insp.accuracy, time.perf_counter() - start, report)


REPORT_TITLE = "# neurodeploy run report"
"""The first line of every ``report.md`` the pipeline writes (how a run folder's report is told from
a file someone else put there)."""


def foreign_report(out_dir: str | Path) -> Path | None:
    """``out_dir/report.md`` when it exists and is not a report the pipeline wrote (so a run must not
    replace it), else ``None``."""
    p = Path(out_dir) / "report.md"
    if not p.is_file():
        return None
    try:
        with open(p, encoding="utf-8", errors="replace") as fh:
            first = fh.readline().rstrip("\n")
    except OSError:
        return p
    return None if first == REPORT_TITLE else p


def render_markdown(report: dict[str, Any], activity_table: str, deploy_table: str) -> str:
    """The human-readable report."""
    tr = report["train"]
    lines = [
        REPORT_TITLE,
        "",
        f"- dataset: **{report['dataset']}** ({report['split']})",
        f"- model: {report['model']['arch']} {report['model']['hidden']}, "
        f"{report['model']['steps']} steps, neuron {report['model']['neuron']['model']}",
        f"- test accuracy (float): **{100 * tr['test_accuracy']:.2f}%** after {tr['epochs']} epochs",
        f"- spikes per neuron per sample: {report['spikes_per_neuron']:.3f}",
        "",
        "## Activity",
        "",
        "```",
        activity_table,
        "```",
        "",
        "![activity](activity.png)",
        "",
        "![training](training.png)",
        "",
        f"## Deployment on {report['deployment']['profile']} (bit-accurate simulation)",
        "",
        f"- float accuracy {100 * report['deployment']['float_accuracy']:.2f}%, after post-training quantization "
        f"{100 * report['deployment']['ptq_accuracy']:.2f}%, after fine-tuning through the chip arithmetic "
        f"**{100 * report['deployment']['deployed_accuracy']:.2f}%**",
        "",
        "```",
        deploy_table,
        "```",
        "",
    ]
    if tr["findings"]:
        lines += ["## Dead-neuron doctor", ""]
        lines += [f"- {f['layer']} ({f['kind']}, epoch {f['epoch']}): {f['message']}; "
                  f"likely cause: {f['cause']}" for f in tr["findings"]]
        lines.append("")
    if tr["remedies"]:
        lines += ["Remedies applied: " + "; ".join(tr["remedies"]), ""]
    return "\n".join(lines)


def stored_run_config(out_dir: str | Path) -> RunConfig | None:
    """The configuration a run in ``out_dir`` was started with (``config.json``), or ``None``."""
    import json

    from neurodeploy.errors import ConfigError
    from neurodeploy.train.config import run_config_from_dict

    path = Path(out_dir) / "config.json"
    if not path.is_file():
        return None
    try:
        return run_config_from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, ValueError, ConfigError) as exc:
        raise ConfigError(f"{path} is not a readable run configuration ({type(exc).__name__}); give --config "
                          "or start a new run folder") from None
