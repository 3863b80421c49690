"""MP-Init (docs/methods.md §3, experiment E1): temporal covariate shift and step-1 accuracy.

Net: (Linear → BN → LIF) × 2 → Linear read-out on the time-averaged logits; LIF with tau = 2 in
the decay-input form, reset by subtraction, threshold 1 frozen, TrSG with a rectangular surrogate,
direct encoding; Adam 1e-3, batch 64. Arms:

* ``zero``: U[0] = 0;
* ``fired``: MP-Init whose running mean averages the post-reset potential of the elements that
  spiked (the authors' released code), imposed on every neuron;
* ``all``: MP-Init whose running mean averages every element (the stationary mean E_pi[U] that
  MP-Init's argument calls for, docs/methods.md §3.2).

Measured on the test split: accuracy; accuracy of the read-out from step 1 alone; TCS drift
``sum_t |E[M[t]] - E[M[T]]|`` per spiking layer, summed over layers (docs/methods.md §7); mu per layer.

    python examples/mp_init.py --dataset digits --steps 2,4 --seeds 0,1,2
    python examples/mp_init.py --dataset mnist --data-root DIR --steps 4 --seeds 0,1,2
"""

from __future__ import annotations

import time
from pathlib import Path

import _experiment as ex
import torch

from neurodeploy.models import ModelSpec, build_model
from neurodeploy.nn.neurons import spiking_layers
from neurodeploy.train.config import TrainConfig
from neurodeploy.train.trainer import evaluate, train_model

ARMS = {"zero": {"mp_init": False}, "fired": {"mp_init": True, "mp_init_mean": "fired"},
        "all": {"mp_init": True, "mp_init_mean": "all"}}


def spec(ds, hidden: list[int], steps: int, arm: str) -> ModelSpec:
    return ModelSpec(arch="mlp", input_shape=tuple(ds.x_train.shape[1:]), hidden=hidden, steps=steps,
                     batch_norm=True, encoding={"kind": "direct", "bits": 8},
                     neuron={"model": "lif", "tau": 2.0, "form": "decay_input", "reset": "subtract",
                             "threshold": 1.0, "scale": "threshold_robust", "surrogate": "rectangular",
                             **ARMS[arm]})


@torch.no_grad()
def measure(model, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> dict[str, float]:
    """Step-1 accuracy and TCS drift on ``(x, y)`` (eval mode)."""
    model.eval()
    layers = spiking_layers(model)
    sums = {n: None for n, _ in layers}
    correct1 = 0
    for _, layer in layers:
        layer.monitor = True
    for i in range(0, len(x), batch):
        xb = x[i : i + batch]
        out = model.forward_sequence(model.encode(xb))
        correct1 += int((out[0].argmax(1) == y[i : i + batch]).sum())
        for n, layer in layers:
            m = layer.stats["m_mean_per_step"].double() * len(xb)
            sums[n] = m if sums[n] is None else sums[n] + m
            layer.stats = {}
    for _, layer in layers:
        layer.monitor = False
    drift = {}
    for n, s in sums.items():
        mean = s / len(x)
        drift[n] = float((mean - mean[-1]).abs().sum())
    return {"step1_accuracy": correct1 / len(x), "drift": sum(drift.values()),
            **{f"drift {n}": v for n, v in drift.items()},
            **{f"mu {n}": float(layer.mp_mean) for n, layer in layers}}


def main() -> None:
    ap = ex.parser(__doc__.splitlines()[0], "runs/examples/mp_init")
    ap.add_argument("--steps", default="2,4", help="comma-separated T values")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--hidden", default=None, help="hidden widths (default 128,128 digits; 256,256 mnist)")
    ap.add_argument("--arms", default=",".join(ARMS))
    args = ap.parse_args()
    ds = ex.setup(args)
    hidden = [int(h) for h in (args.hidden or ("256,256" if args.dataset == "mnist" else "128,128")).split(",")]
    started = time.perf_counter()
    rows = []
    for steps in [int(t) for t in args.steps.split(",")]:
        for seed in ex.seeds(args):
            for arm in args.arms.split(","):
                torch.manual_seed(seed)
                model = build_model(spec(ds, hidden, steps, arm))
                cfg = TrainConfig(epochs=args.epochs, lr=1e-3, batch_size=64, seed=seed,
                                  threads=args.threads, doctor=False)
                res = train_model(model, ds, cfg, Path(args.out) / f"T{steps}-{arm}-s{seed}", progress=False)
                acc, _ = evaluate(model, ds.x_test, ds.y_test)
                row = {"T": steps, "arm": arm, "seed": seed, "accuracy": acc, **measure(model, ds.x_test, ds.y_test),
                       "train_seconds": res.seconds}
                rows.append(row)
                print(f"T={steps} {arm:>5} seed {seed}: accuracy {acc:.4f}, step-1 {row['step1_accuracy']:.4f}, "
                      f"drift {row['drift']:.3f} ({res.seconds:.0f} s)", flush=True)
    text = (f"## MP-Init on {ds.name} ({ds.split}), {args.epochs} epochs, hidden {hidden}\n\n"
            + ex.table(rows, ["accuracy", "step1_accuracy", "drift"], ["T", "arm"]))
    ex.bars(Path(args.out) / "mp_init.png", rows,
            [("accuracy", "test accuracy"), ("step1_accuracy", "step-1 accuracy"), ("drift", "TCS drift")],
            "arm", "T", title=f"MP-Init, {ds.name}, seeds {args.seeds}")
    ex.finish(args, rows, text, started)


if __name__ == "__main__":
    main()
