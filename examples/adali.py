"""AdaLi against fixed surrogates (docs/methods.md §5, experiment E3).

Net: Linear → BN → LIF × 2 → Linear read-out, LIF tau 2 with a hard reset to 0, threshold 1,
direct encoding, Adam 2e-3 with a cosine schedule, N epochs (the AdaLi schedule runs over them).
Arms: Sigmoid alpha 1, SoftSign alpha 2, Triangle alpha 1 (the paper's ablation baselines), ATan
alpha 2 (this project's default), AdaLi with the log and the linear schedule, and the two
constant-bound controls (the initial window 1.5 V throughout; the final window 0.3 V throughout).

Measured: test accuracy after each epoch; computational density (CD, fraction of entries inside
the surrogate's support) in the first and the last epoch, summed over layers as a mean; spikes per
neuron on the test split; the epoch-to-epoch spread of test accuracy over the second half of
training (the paper says the small constant window fluctuates).

    python examples/adali.py --dataset digits --steps 1,4 --seeds 0,1,2
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import _experiment as ex
import torch

from neurodeploy.models import ModelSpec, build_model
from neurodeploy.train.config import TrainConfig
from neurodeploy.train.monitor import layer_activity, spikes_per_neuron
from neurodeploy.train.trainer import train_model

ARMS = {
    "sigmoid": {"name": "sigmoid", "alpha": 1.0},
    "softsign": {"name": "softsign", "alpha": 2.0},
    "triangle": {"name": "triangle", "alpha": 1.0},
    "atan": {"name": "atan", "alpha": 2.0},
    "adali-log": {"name": "adali", "schedule": "log"},
    "adali-linear": {"name": "adali", "schedule": "linear"},
    "const-initial": {"name": "adali", "schedule": "constant_initial"},
    "const-final": {"name": "adali", "schedule": "constant_final"},
}


def main() -> None:
    ap = ex.parser(__doc__.splitlines()[0], "runs/examples/adali")
    ap.add_argument("--steps", default="1,4", help="comma-separated T values")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--hidden", default=None, help="hidden widths (default 128,128 digits; 256,256 mnist)")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"subset of: {', '.join(ARMS)}")
    args = ap.parse_args()
    ds = ex.setup(args)
    hidden = [int(h) for h in (args.hidden or ("256,256" if args.dataset == "mnist" else "128,128")).split(",")]
    started = time.perf_counter()
    rows = []
    for steps in [int(t) for t in args.steps.split(",")]:
        for seed in ex.seeds(args):
            for arm in args.arms.split(","):
                torch.manual_seed(seed)
                model = build_model(ModelSpec(
                    arch="mlp", input_shape=tuple(ds.x_train.shape[1:]), hidden=hidden, steps=steps,
                    batch_norm=True, encoding={"kind": "direct", "bits": 8},
                    neuron={"model": "lif", "tau": 2.0, "reset": "zero", "threshold": 1.0,
                            "surrogate": ARMS[arm]}))
                cfg = TrainConfig(epochs=args.epochs, batch_size=64, seed=seed, threads=args.threads,
                                  doctor=False)
                res = train_model(model, ds, cfg, Path(args.out) / f"T{steps}-{arm}-s{seed}", progress=False)
                epochs = [h for h in res.history if h["kind"] == "epoch"]
                accs = [h["test_accuracy"] for h in epochs]
                cd = [statistics.fmean(h["density"].values()) for h in epochs]
                spn = spikes_per_neuron(layer_activity(model, ds.x_test), model)
                late = accs[len(accs) // 2 :]
                row = {"T": steps, "arm": arm, "seed": seed, "accuracy": accs[-1], "cd_first": cd[0],
                       "cd_last": cd[-1], "spn": spn,
                       "late_fluctuation": statistics.fmean(abs(b - a) for a, b in zip(late, late[1:], strict=False))
                       if len(late) > 1 else 0.0,
                       "accuracy_per_epoch": accs, "cd_per_epoch": cd, "train_seconds": res.seconds}
                rows.append(row)
                print(f"T={steps} {arm:>13} seed {seed}: accuracy {accs[-1]:.4f}, CD {cd[0]:.3f} → {cd[-1]:.3f}, "
                      f"SPN {spn:.3f} ({res.seconds:.0f} s)", flush=True)
    text = (f"## AdaLi vs fixed surrogates on {ds.name} ({ds.split}), {args.epochs} epochs, hidden {hidden}\n\n"
            + ex.table(rows, ["accuracy", "cd_first", "cd_last", "spn", "late_fluctuation", "train_seconds"],
                       ["T", "arm"]))
    ex.bars(Path(args.out) / "adali.png", rows,
            [("accuracy", "test accuracy"), ("cd_last", "CD, last epoch"), ("spn", "spikes per neuron")],
            "arm", "T", title=f"AdaLi, {ds.name}, seeds {args.seeds}")
    ex.finish(args, rows, text, started)


if __name__ == "__main__":
    main()
