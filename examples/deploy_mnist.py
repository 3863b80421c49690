"""Deploy the MNIST LIF MLP to a Loihi profile: quantize, fine-tune, sweep — all measured by the
bit-accurate simulator on the held-out MNIST images.

Run ``examples/train_mnist_mlp.py`` first (or pass ``--train`` to train here). Writes
``OUT/deploy.json`` (float, post-training and fine-tuned accuracy at the profile's own weight format
and at ``--bits`` bits) and ``OUT/sweep.{json,png}``.

    python examples/deploy_mnist.py --checkpoint runs/mnist_mlp/checkpoint.pt --out runs/mnist_deploy
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import neurodeploy as nd
from neurodeploy.atomic import write_json
from neurodeploy.quantize.finetune import FinetuneConfig
from neurodeploy.workflows import finetune_model, recovered_fraction, run_sweep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="runs/mnist_mlp/checkpoint.pt")
    ap.add_argument("--data-root", "--data", dest="data", default=None,
                    help="folder with the MNIST IDX files (default: $NEURODEPLOY_MNIST, then "
                         "~/.cache/neurodeploy/mnist)")
    ap.add_argument("--profile", default="loihi2")
    ap.add_argument("--bits", type=int, default=4, help="low weight precision to test (bits)")
    ap.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs")
    ap.add_argument("--sweep", action="store_true", help="also sweep bits, jitter and latency")
    ap.add_argument("--out", default="runs/mnist_deploy")
    args = ap.parse_args()
    ds = nd.load_dataset("mnist", args.data)
    print(f"MNIST split: {ds.split}")
    model = nd.load_checkpoint(args.checkpoint).build()
    cfg = FinetuneConfig(epochs=args.epochs, lr=5e-4, threads=2)
    results = {"split": ds.split, "profile": args.profile, "checkpoint": args.checkpoint}
    runs = (("profile weights", nd.Constraints()),
            (f"{args.bits}-bit weights", nd.Constraints(weight_bits=args.bits)))
    for label, c in runs:
        start = time.perf_counter()
        res = finetune_model(model, args.profile, ds, c, cfg, log=print)
        frac = recovered_fraction(res.before.float_accuracy, res.before.accuracy, res.after.accuracy)
        results[label] = {**res.summary(), "recovered_fraction": frac}
        print(f"{label}: float {100 * res.before.float_accuracy:.2f}%, after quantization "
              f"{100 * res.before.accuracy:.2f}%, after fine-tuning {100 * res.after.accuracy:.2f}% "
              f"(recovered {'n/a' if frac is None else f'{100 * frac:.0f}%'} of the drop; "
              f"{time.perf_counter() - start:.0f} s)")
    out = Path(args.out)
    write_json(out / "deploy.json", results)
    if args.sweep:
        run_sweep(model, args.profile, ds, weight_bits=[8, 6, 4, 3], jitter=[1, 2], max_steps=[6, 4],
                  config=FinetuneConfig(epochs=1, lr=5e-4, threads=2), out_dir=out, log=print)
    print(f"wrote {out / 'deploy.json'}")


if __name__ == "__main__":
    main()
