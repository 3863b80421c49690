"""TrSG against AS-SG and RS-SG (docs/methods.md §4, experiment E2(b)/(c)): where does TrSG help?

Net as in ``mp_init.py`` (Linear → BN → LIF × 2, tau 2 decay-input, reset by subtraction,
rectangular surrogate of unit width, direct encoding, no MP-Init), T = 2 by default. Arms: the
surrogate scale mode (``absolute`` = AS-SG, ``relative`` = RS-SG, ``threshold_robust`` = TrSG)
× the threshold: frozen at 0.5, 1 or 2, or learned (softplus) from 1. At a frozen threshold of 1
the three modes train identically (docs/methods.md §4.1), so that row is a check, not a comparison.

Measured: test accuracy; RatioAG (fraction of entries with a live surrogate gradient, averaged
over the spiking layers at the last logging point); the learned thresholds at the end.

    python examples/trsg.py --dataset mnist --data-root DIR --seeds 0,1,2
"""

from __future__ import annotations

import time
from pathlib import Path

import _experiment as ex
import torch

from neurodeploy.models import ModelSpec, build_model
from neurodeploy.nn.neurons import spiking_layers
from neurodeploy.train.config import TrainConfig
from neurodeploy.train.trainer import train_model

MODES = {"AS": "absolute", "RS": "relative", "TrSG": "threshold_robust"}
THRESHOLDS = {"frozen 0.5": (0.5, False), "frozen 1": (1.0, False), "frozen 2": (2.0, False),
              "learned from 1": (1.0, True)}


def spec(ds, hidden: list[int], steps: int, mode: str, threshold: float, learn: bool) -> ModelSpec:
    return ModelSpec(arch="mlp", input_shape=tuple(ds.x_train.shape[1:]), hidden=hidden, steps=steps,
                     batch_norm=True, encoding={"kind": "direct", "bits": 8},
                     neuron={"model": "lif", "tau": 2.0, "form": "decay_input", "reset": "subtract",
                             "threshold": threshold, "learn_threshold": learn, "scale": mode,
                             "surrogate": "rectangular"})


def main() -> None:
    ap = ex.parser(__doc__.splitlines()[0], "runs/examples/trsg")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--hidden", default=None, help="hidden widths (default 128,128 digits; 256,256 mnist)")
    ap.add_argument("--thresholds", default=",".join(THRESHOLDS), help=f"subset of: {', '.join(THRESHOLDS)}")
    ap.add_argument("--modes", default=",".join(MODES), help="subset of AS,RS,TrSG")
    args = ap.parse_args()
    ds = ex.setup(args)
    hidden = [int(h) for h in (args.hidden or ("256,256" if args.dataset == "mnist" else "128,128")).split(",")]
    started = time.perf_counter()
    rows = []
    for th_name in args.thresholds.split(","):
        threshold, learn = THRESHOLDS[th_name]
        for seed in ex.seeds(args):
            for mode in args.modes.split(","):
                torch.manual_seed(seed)
                model = build_model(spec(ds, hidden, args.steps, MODES[mode], threshold, learn))
                cfg = TrainConfig(epochs=args.epochs, lr=1e-3, batch_size=64, seed=seed,
                                  threads=args.threads, doctor=False)
                res = train_model(model, ds, cfg, Path(args.out) / f"{th_name.replace(' ', '')}-{mode}-s{seed}",
                                  progress=False)
                last = next(h for h in reversed(res.history) if h["kind"] == "batch" and h["layers"])
                ratio_ag = sum(1 - m["grad_dead"] for m in last["layers"].values()) / len(last["layers"])
                finite = res.test_accuracy == res.test_accuracy
                row = {"threshold": th_name, "mode": mode, "seed": seed, "accuracy": res.test_accuracy,
                       "ratio_ag": ratio_ag, "diverged": not finite,
                       "final_thresholds": [round(float(lay.threshold.detach()), 4)
                                            for _, lay in spiking_layers(model)]}
                rows.append(row)
                print(f"{th_name:>15} {mode:>4} seed {seed}: accuracy {res.test_accuracy:.4f}, RatioAG "
                      f"{ratio_ag:.3f}, thresholds {row['final_thresholds']} ({res.seconds:.0f} s)", flush=True)
    text = (f"## TrSG vs AS-SG / RS-SG on {ds.name} ({ds.split}), T = {args.steps}, {args.epochs} epoch(s), "
            f"hidden {hidden}\n\n" + ex.table(rows, ["accuracy", "ratio_ag"], ["threshold", "mode"]))
    ex.bars(Path(args.out) / "trsg.png", rows, [("accuracy", "test accuracy"), ("ratio_ag", "RatioAG")],
            "mode", "threshold", title=f"TrSG, {ds.name}, T={args.steps}, seeds {args.seeds}")
    ex.finish(args, rows, text, started)


if __name__ == "__main__":
    main()
