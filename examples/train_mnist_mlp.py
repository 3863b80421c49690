"""Train a LIF MLP on real MNIST images and report its test accuracy.

Data: the MNIST IDX files in ``--data-root`` (default: ``$NEURODEPLOY_MNIST``, then
``~/.cache/neurodeploy/mnist``). With only the 10,000
t10k images present, the fixed split is images 0-7,999 for training and 8,000-9,999 for testing;
with the full dataset present, the standard 60,000/10,000 split is used. The split is printed.

    python examples/train_mnist_mlp.py --out runs/mnist_mlp
"""

from __future__ import annotations

import argparse
import time

import torch

from neurodeploy.data import load_dataset
from neurodeploy.models import ModelSpec, build_model
from neurodeploy.train.config import TrainConfig
from neurodeploy.train.trainer import train_model


def mnist_spec() -> ModelSpec:
    """784-256-256-10 LIF MLP, 8 steps, direct 8-bit input."""
    return ModelSpec(arch="mlp", input_shape=(1, 28, 28), hidden=[256, 256], steps=8,
                     encoding={"kind": "direct", "bits": 8},
                     neuron={"model": "lif", "tau": 2.0, "threshold": 0.5,
                             "surrogate": {"name": "atan", "alpha": 2.0}})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", "--data", dest="data", default=None,
                    help="folder with the MNIST IDX files (default: $NEURODEPLOY_MNIST, then "
                         "~/.cache/neurodeploy/mnist)")
    ap.add_argument("--out", default="runs/mnist_mlp")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    ds = load_dataset("mnist", args.data)
    print(f"MNIST split: {ds.split}")
    torch.manual_seed(0)
    model = build_model(mnist_spec())
    start = time.perf_counter()
    result = train_model(model, ds, TrainConfig(epochs=args.epochs, batch_size=64, lr=1e-3, threads=2),
                         args.out, resume=args.resume)
    print(f"test accuracy {100 * result.test_accuracy:.2f}% ({len(ds.x_test)} images) after "
          f"{result.epochs} epochs in {time.perf_counter() - start:.0f} s; checkpoint {result.checkpoint}")


if __name__ == "__main__":
    main()
