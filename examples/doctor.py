"""The dead-neuron doctor (docs/methods.md §2, experiment E5): broken configurations, with and without
its remedies, next to a healthy one.

MLP with two spiking hidden layers (LIF, tau 2, direct encoding). Configurations:

* ``healthy``: threshold 0.5, ATan surrogate;
* ``threshold 20``: every threshold 40× too high: both layers silent;
* ``init scale``: first-layer weights and bias 50× too small, threshold 1, rectangular surrogate
  (an early-layer init-scale death: no spike, no gradient);
* ``surrogate 0.01``: threshold 0.5, rectangular surrogate of width 0.01: neurons fire but almost
  no entry gets a gradient;
* ``threshold 2``: a quiet network whose layers barely fire at initialisation.

Each broken configuration runs with the doctor watching only and with ``auto_remedy``; the
remedies it applied are listed with the layer's rate before and after each one.

    python examples/doctor.py --dataset digits --seeds 0,1,2
"""

from __future__ import annotations

import time
from pathlib import Path

import _experiment as ex
import torch

from neurodeploy.models import ModelSpec, build_model
from neurodeploy.train.config import TrainConfig
from neurodeploy.train.trainer import train_model

CONFIGS = {
    "healthy": ({"threshold": 0.5}, None),
    "threshold 20": ({"threshold": 20.0}, None),
    "init scale": ({"threshold": 1.0, "surrogate": "rectangular"}, 0.02),
    "surrogate 0.01": ({"threshold": 0.5, "surrogate": {"name": "rectangular", "width": 0.01}}, None),
    "threshold 2": ({"threshold": 2.0}, None),
}


def build(ds, hidden: list[int], neuron: dict, first_scale: float | None, seed: int):
    torch.manual_seed(seed)
    model = build_model(ModelSpec(arch="mlp", input_shape=tuple(ds.x_train.shape[1:]), hidden=hidden,
                                  steps=6, encoding={"kind": "direct", "bits": 8},
                                  neuron={"model": "lif", "tau": 2.0, **neuron}))
    if first_scale is not None:
        with torch.no_grad():
            model.stages[1].weight.mul_(first_scale)
            model.stages[1].bias.mul_(first_scale)
    return model


def plot_trace(path: Path, history: list[dict], trials: list[dict], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from neurodeploy.atomic import atomic_path

    points = [h for h in history if h["kind"] == "batch" and h["layers"]]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for name in points[0]["layers"]:
        ax.plot([h["step"] for h in points], [h["layers"][name]["rate"] for h in points], label=name)
    for t in trials:
        ax.axvline(t["step"], color="k", ls=":", lw=0.8)
        ax.text(t["step"], ax.get_ylim()[1] * 0.95, f" {t['layer']}: {t['remedy']}", rotation=90,
                va="top", fontsize=7)
    ax.set(xlabel="training step", ylabel="firing rate (spikes/step)", title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def main() -> None:
    ap = ex.parser(__doc__.splitlines()[0], "runs/examples/doctor")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--hidden", default=None, help="hidden widths (default 64,64 digits; 256,256 mnist)")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"subset of: {', '.join(CONFIGS)}")
    args = ap.parse_args()
    ds = ex.setup(args)
    hidden = [int(h) for h in (args.hidden or ("256,256" if args.dataset == "mnist" else "64,64")).split(",")]
    started = time.perf_counter()
    rows, remedy_lines = [], []
    for name in args.configs.split(","):
        neuron, first_scale = CONFIGS[name]
        arms = ("watch",) if name == "healthy" else ("watch", "auto_remedy")
        for seed in ex.seeds(args):
            for arm in arms:
                model = build(ds, hidden, neuron, first_scale, seed)
                cfg = TrainConfig(epochs=args.epochs, batch_size=64, seed=seed, threads=args.threads,
                                  auto_remedy=arm == "auto_remedy")
                out = Path(args.out) / f"{name.replace(' ', '_')}-{arm}-s{seed}"
                res = train_model(model, ds, cfg, out, progress=False)
                kinds = sorted({f"{f['layer']}:{f['kind']}" for f in res.findings})
                rows.append({"config": name, "arm": arm, "seed": seed, "accuracy": res.test_accuracy,
                             "remedies": len(res.trials), "findings": kinds})
                print(f"{name:>15} {arm:>11} seed {seed}: accuracy {res.test_accuracy:.4f}; found {kinds}",
                      flush=True)
                for t in res.trials:
                    line = (f"{name}, seed {seed}: {t['layer']} ({t['finding']}, {t['cause']}) at step {t['step']}: "
                            f"{t['remedy']}: {t['change']}; rate {t['rate_before']:.4f} → "
                            f"{t['rate_after'] if t['rate_after'] is None else round(t['rate_after'], 4)}, "
                            f"{t['verdict']}")
                    remedy_lines.append(line)
                    print("    " + line, flush=True)
                if name == "threshold 20" and arm == "auto_remedy" and seed == ex.seeds(args)[0]:
                    plot_trace(Path(args.out) / "doctor_trace.png", res.history, res.trials,
                               f"threshold 20, auto-remedy, seed {seed}")
    text = (f"## Dead-neuron doctor on {ds.name} ({ds.split}), {args.epochs} epochs, hidden {hidden}\n\n"
            + ex.table(rows, ["accuracy", "remedies"], ["config", "arm"])
            + "\n\nRemedies, one at a time (rate of the treated layer over the window before → after):\n\n"
            + "\n".join(f"- {line}" for line in remedy_lines))
    ex.bars(Path(args.out) / "doctor.png", rows, [("accuracy", "test accuracy")], "arm", "config",
            title=f"doctor, {ds.name}, seeds {args.seeds}")
    ex.finish(args, rows, text, started)


if __name__ == "__main__":
    main()
