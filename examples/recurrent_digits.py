"""A recurrent spiking network on a temporal task, from PyTorch to two chips.

The task: scikit-learn's 8x8 digits read row by row (dataset ``digits-rows``: 8 time steps of 8
graded 4-bit inputs; no download), so the network must remember the rows it has seen. The network
is written in PyTorch with neurodeploy's layers — a recurrent LIF layer
(:class:`neurodeploy.nn.Recurrent`: ``I[t] = W_in x[t] + b + W_rec s[t-1]``) and a linear read-out
— traced into the float graph (:func:`neurodeploy.graph_from_torch`: a recurrent edge), trained
with the trainer (checkpoint every epoch, ``metrics.jsonl``, monitor), then for each chip
fine-tuned through its integer arithmetic, simulated bit-accurately and exported:

* ``loihi2``: reset to zero (Loihi's reset); exported as a Lava process network (``.npz``: Dense
  and LIF processes wired from the deployment graph, the recurrent Dense from the LIF's spikes to
  its own input);
* ``xylo-imu``: reset by subtraction (Xylo's reset); exported as the Xylo chip specification
  Rockpool's ``XyloSim.from_specification`` takes (the recurrent weights in ``weights_rec``).

One float network cannot serve both chips (their resets differ), so the script trains one per
chip, with the same architecture and seed::

    python examples/recurrent_digits.py --out runs/recurrent_digits [--epochs 20] [--train-only]

Writes ``OUT/<chip>/train/checkpoint.pt`` (a graph checkpoint), ``OUT/<chip>/finetuned.npz``
(the deployment graph), the export and ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

import neurodeploy as nd

STEPS = 8
ENCODING = {"kind": "direct", "bits": 4}  # the rows are 4-bit graded input events
CHIPS = {"loihi2": ("zero", "lava-process", "lava_process.npz"),
         "xylo-imu": ("subtract", "xylo", "xylo_spec.npz")}


class RecurrentDigits(nn.Module):
    """8 inputs per step → ``hidden`` recurrent LIF neurons → 10 class scores (mean over time)."""

    def __init__(self, hidden: int = 64, reset: str = "zero"):
        super().__init__()
        self.rec = nd.Recurrent(8, hidden, tau=4.0, threshold=0.5, reset=reset)
        self.readout = nn.Linear(hidden, 10)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:  # [T, B, 8] -> [T, B, 10]
        return self.readout(self.rec(rows))


def train(data: Any, reset: str, out_dir: Path, *, epochs: int, hidden: int = 64, seed: int = 0,
          progress: bool | None = None) -> tuple[Any, Any]:
    """Build, trace and train the network; returns (the graph network, the training result)."""
    torch.manual_seed(seed)
    graph = nd.graph_from_torch(RecurrentDigits(hidden, reset), (8,), steps=STEPS, encoding=ENCODING)
    net = nd.GraphNet(graph)
    config = nd.TrainConfig(epochs=epochs, lr=5e-3, batch_size=32, seed=seed, threads=1)
    result = nd.fit(net, data, config, out_dir=out_dir, progress=progress)
    return net, result


def deploy(checkpoint: Path, chip: str, data: Any, out_dir: Path, *, epochs: int = 2,
           progress: bool | None = None) -> dict[str, Any]:
    """Fine-tune the trained graph checkpoint for ``chip``, simulate it bit-accurately, export it."""
    _, fmt, filename = CHIPS[chip]
    qat = nd.prepare(checkpoint, chip, data)
    before = nd.simulate(nd.convert(qat), data).accuracy
    nd.finetune(qat, data, epochs=epochs, lr=1e-3, progress=progress)
    graph = nd.convert(qat)
    graph.save(out_dir / "finetuned.npz")
    sim = nd.simulate(graph, data)
    path = nd.export_to(graph, out_dir / filename, format=fmt)
    return {"quantized_accuracy": before, "deployed_accuracy": sim.accuracy, "export": str(path),
            "spikes_per_neuron": sim.figures.get("spikes_per_neuron")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/recurrent_digits")
    ap.add_argument("--epochs", type=int, default=20, help="training epochs")
    ap.add_argument("--finetune-epochs", type=int, default=2)
    ap.add_argument("--chips", default=",".join(CHIPS), help="comma-separated: loihi2, xylo-imu")
    ap.add_argument("--train-only", action="store_true", help="train and report the float accuracy only")
    args = ap.parse_args()
    data = nd.load_dataset("digits-rows")
    print(f"data: {data.split}")
    results: dict[str, Any] = {"split": data.split, "steps": STEPS, "encoding": ENCODING}
    for chip in args.chips.split(","):
        reset = CHIPS[chip][0]
        out = Path(args.out) / chip
        start = time.perf_counter()
        _, res = train(data, reset, out / "train", epochs=args.epochs)
        row = {"reset": reset, "float_accuracy": res.test_accuracy, "train_seconds": time.perf_counter() - start}
        print(f"{chip}: float test accuracy {100 * res.test_accuracy:.2f}% after {res.epochs} epochs "
              f"(reset {reset}; {row['train_seconds']:.0f} s)")
        if not args.train_only:
            row.update(deploy(res.checkpoint, chip, data, out, epochs=args.finetune_epochs))
            print(f"{chip}: deployed (bit-accurate simulator) {100 * row['quantized_accuracy']:.2f}% after "
                  f"quantization, {100 * row['deployed_accuracy']:.2f}% after fine-tuning; wrote {row['export']}")
        results[chip] = row
    from neurodeploy.atomic import write_json

    write_json(Path(args.out) / "results.json", results)


if __name__ == "__main__":
    main()
