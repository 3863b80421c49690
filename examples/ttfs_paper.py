"""TTFS measured against its paper's headlines (Stanojevic et al. 2023; methods.md §6).

Three experiments, each over ``--seeds`` (float64, the exact ReLU -> B1 mapping throughout):

1. **Activity penalty.** The ReLU FC2 (784-340-10 on MNIST, 64-340-10 on digits; 1 epoch, Adam
   5e-4, batch 64) is mapped to TTFS and fine-tuned ``--penalty-epochs`` epochs (Adam 1e-3,
   batch 64, no hardware constraints) with the L1 activity penalty ``lambda`` in ``--penalties``
   (0 = the same epochs without the penalty). Spikes per neuron and accuracy are those of the
   deployed integer program (the shared simulator's semantics).
2. **Outlier removal before weight quantisation.** The deployed accuracy of the mapped FC2 and
   of the conv network at 3/4/6-bit weights, scale from ``max|W|`` or from the 99.9th / 99th
   percentile of ``|W|`` per layer (``TTFSConstraints.weight_percentile``), before fine-tuning.
3. **A VGG-style conv network** (conv8-conv8-pool-conv16-conv16-pool-fc64-fc10, 3x3 kernels,
   padding 1; 2 epochs, Adam 1e-3, batch 64) mapped exactly (largest logit difference), then
   fine-tuned 1 epoch (Adam 1e-3, batch 64) under: no constraints (reference: what the extra
   epoch alone gives), 4-bit weights, 6-bit weights, and 6-bit weights with gaussian jitter 0.05
   window lengths, 2^4 steps per window and windows from the 0.9 activation quantile
   (``hardware``). Latency: steps per window and total clock steps, and the latency in
   input-window units, before and after. ``drop`` is the mapped network's accuracy minus the
   accuracy under the constraints before fine-tuning; ``recovered`` is (after - before) / drop
   where the drop is at least 1 pp (above 1: the epoch also trains); ``after_minus_reference``
   compares with the unconstrained epoch of the same seed.

Writes ``results.json``, ``results.md`` and ``penalty.png``, ``clipping.png``, ``conv.png`` into
``--out``.

    python examples/ttfs_paper.py --dataset mnist --data-root DIR --seeds 0,1,2
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import torch
from _experiment import bars, finish, parser, seeds, setup, table
from torch import nn

from neurodeploy.ttfs import TTFSConstraints, TTFSFinetuneConfig, finetune_ttfs, relu_to_ttfs
from neurodeploy.ttfs.finetune import measure
from neurodeploy.ttfs.train import train_relu

F64 = torch.float64
JITTER = {"kind": "gaussian", "sigma": 0.05}


def fc2(n_in: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(n_in, 340), nn.ReLU(), nn.Linear(340, 10))


def vgg(side: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    q = side // 4
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * q * q, 64), nn.ReLU(), nn.Linear(64, 10),
    )


def image_split(ds):
    """The dataset with inputs shaped ``[N, 1, side, side]``."""
    n = math.prod(ds.x_train.shape[1:])
    side = math.isqrt(n)
    return dataclasses.replace(
        ds, x_train=ds.x_train.reshape(-1, 1, side, side),
        x_test=ds.x_test.reshape(-1, 1, side, side), input_shape=(1, side, side)), side


def penalty_rows(ds, seed: int, penalties: list[float], epochs: int) -> tuple[list[dict], object]:
    relu = train_relu(fc2(math.prod(ds.x_train.shape[1:]), seed), ds, 1, 5e-4, seed)
    net = relu_to_ttfs(relu, ds.x_train)
    mapped = measure(net, ds.x_test, ds.y_test, TTFSConstraints(), seed)
    rows = [{"experiment": "penalty", "arm": "mapped (no fine-tuning)", "seed": seed,
             "accuracy": 100 * mapped["deployed_accuracy"],
             "spikes_per_neuron": mapped["deployed_spikes_per_neuron"],
             "float_spikes_per_neuron": mapped["spikes_per_neuron"]}]
    for lam in penalties:
        res = finetune_ttfs(net, ds, TTFSConstraints(),
                            TTFSFinetuneConfig(epochs=epochs, lr=1e-3, batch_size=64, seed=seed,
                                               activity_penalty=lam))
        a = res.after
        rows.append({"experiment": "penalty", "arm": f"{epochs} ep, lambda {lam:g}", "seed": seed,
                     "accuracy": 100 * a["deployed_accuracy"],
                     "spikes_per_neuron": a["deployed_spikes_per_neuron"],
                     "float_spikes_per_neuron": a["spikes_per_neuron"]})
        print(f"  seed {seed} lambda {lam:g}: deployed {rows[-1]['accuracy']:.2f}%, spikes/neuron "
              f"{rows[-1]['spikes_per_neuron']:.4f}", flush=True)
    return rows, net


def clipping_rows(net, ds, seed: int, model: str) -> list[dict]:
    rows = []
    for bits in (3, 4, 6):
        for p in (None, 99.9, 99.0):
            m = measure(net, ds.x_test, ds.y_test, TTFSConstraints(weight_bits=bits,
                                                                   weight_percentile=p), seed)
            rows.append({"experiment": "clipping", "model": model, "bits": bits,
                         "arm": "max|W|" if p is None else f"p{p:g}", "seed": seed,
                         "accuracy": 100 * m["deployed_accuracy"]})
    return rows


def conv_rows(ds, side: int, seed: int) -> tuple[list[dict], object]:
    t = time.perf_counter()
    relu = train_relu(vgg(side, seed), ds, 2, 1e-3, seed)
    net = relu_to_ttfs(relu, ds.x_train)
    with torch.no_grad():
        gap = float((net(ds.x_test) - relu(ds.x_test.to(F64))).abs().max())
    base = measure(net, ds.x_test, ds.y_test, TTFSConstraints(), seed)
    rows = [{"experiment": "conv", "arm": "mapped", "seed": seed, "max_logit_gap": gap,
             "before": 100 * base["deployed_accuracy"], "after": None,
             "steps_per_window": 2 ** base["time_bits"], "total_steps": base["latency_steps"],
             "latency": base["latency"], "spikes_per_neuron": base["deployed_spikes_per_neuron"]}]
    print(f"  seed {seed} conv: mapped {rows[0]['before']:.2f}%, max |logit gap| {gap:.2e} "
          f"({time.perf_counter() - t:.0f} s)", flush=True)
    settings = {
        "reference (no constraints)": TTFSConstraints(),
        "4-bit": TTFSConstraints(weight_bits=4),
        "6-bit": TTFSConstraints(weight_bits=6),
        "hardware: 6-bit, jitter 0.05, 2^4 steps, q 0.9": TTFSConstraints(
            weight_bits=6, time_jitter=JITTER, time_bits=4, latency_quantile=0.9),
    }
    reference = None
    for name, c in settings.items():
        res = finetune_ttfs(net, ds, c, TTFSFinetuneConfig(epochs=1, lr=1e-3, batch_size=64,
                                                           seed=seed))
        b, a = res.before, res.after
        drop = rows[0]["before"] - 100 * b["deployed_accuracy"]
        rec = 100 * a["deployed_accuracy"] - 100 * b["deployed_accuracy"]
        rows.append({"experiment": "conv", "arm": name, "seed": seed,
                     "before": 100 * b["deployed_accuracy"], "after": 100 * a["deployed_accuracy"],
                     "drop": drop, "recovered": rec / drop if drop >= 1.0 else None,
                     "after_minus_reference": None if reference is None
                     else 100 * a["deployed_accuracy"] - reference,
                     "steps_per_window": 2 ** a["time_bits"], "total_steps": a["latency_steps"],
                     "latency": a["latency"], "spikes_per_neuron": a["deployed_spikes_per_neuron"]})
        if reference is None:
            reference = 100 * a["deployed_accuracy"]
        print(f"  seed {seed} conv {name}: {rows[-1]['before']:.2f}% -> {rows[-1]['after']:.2f}% "
              f"(total steps {rows[-1]['total_steps']})", flush=True)
    return rows, net


def main() -> None:
    ap = parser(__doc__.splitlines()[0], "runs/ttfs_paper", seeds="0,1,2")
    ap.add_argument("--penalties", default="0,1,2", help="activity penalty weights")
    ap.add_argument("--penalty-epochs", type=int, default=3)
    ap.add_argument("--conv-seeds", default="0,1", help="seeds of the conv experiment")
    args = ap.parse_args()
    started = time.perf_counter()
    ds = setup(args)
    flat = dataclasses.replace(ds, x_train=ds.x_train.reshape(ds.n_train, -1),
                               x_test=ds.x_test.reshape(len(ds.x_test), -1),
                               input_shape=(math.prod(ds.x_train.shape[1:]),))
    img, side = image_split(ds)
    penalties = [float(v) for v in args.penalties.split(",") if v.strip()]
    rows: list[dict] = []
    for seed in seeds(args):
        r, fc_net = penalty_rows(flat, seed, penalties, args.penalty_epochs)
        rows += r + clipping_rows(fc_net, flat, seed, "FC2")
    for seed in [int(s) for s in args.conv_seeds.split(",") if s.strip()]:
        r, conv_net = conv_rows(img, side, seed)
        rows += r + clipping_rows(conv_net, img, seed, "VGG conv")
    pen = [r for r in rows if r["experiment"] == "penalty"]
    clip = [r for r in rows if r["experiment"] == "clipping"]
    conv = [r for r in rows if r["experiment"] == "conv"]
    text = "\n\n".join([
        "### Activity penalty (deployed program)",
        table(pen, ["accuracy", "spikes_per_neuron", "float_spikes_per_neuron"], ["arm"]),
        "### Weight quantisation: max|W| vs percentile clipping (deployed accuracy, %)",
        table(clip, ["accuracy"], ["model", "bits", "arm"]),
        "### VGG-style conv network: fine-tuning under constraints (deployed accuracy, %)",
        table(conv, ["before", "after", "drop", "recovered", "after_minus_reference", "steps_per_window", "total_steps",
                     "latency", "spikes_per_neuron", "max_logit_gap"], ["arm"]),
    ])
    out = Path(args.out)
    bars(out / "penalty.png", pen, [("accuracy", "deployed accuracy (%)"),
                                     ("spikes_per_neuron", "spikes per neuron")], "arm",
         title="FC2: L1 activity penalty during fine-tuning")
    bars(out / "clipping.png", [r for r in clip if r["model"] == "VGG conv"],
         [("accuracy", "deployed accuracy (%)")], "arm", "bits",
         title="VGG-style conv: weight scale from max|W| or a percentile of |W|")
    bars(out / "conv.png", [r for r in conv if r["after"] is not None],
         [("before", "before fine-tuning (%)"), ("after", "after fine-tuning (%)")], "arm",
         title="VGG-style TTFS conv network: deployed accuracy before / after 1 epoch")
    finish(args, rows, text, started)


if __name__ == "__main__":
    main()
