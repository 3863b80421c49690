"""TTFS on MNIST (docs/methods.md §8 E4): the exact ReLU mapping, B1 vs alpha1 trajectories, and hardware
constraints before and after fine-tuning — all in float64.

MNIST split: images 0-7,999 of the t10k files train, 8,000-9,999 test (only the t10k files ship).

1. Train the ReLU FC2 784-340-10 for 1 epoch (Adam 5e-4, batch 64, Glorot-uniform init, zero bias).
2. Map it to a B1 TTFS network (windows 1.5 x the training maxima); check the logits agree to
   round-off and the arg-max on every test image; report spikes per neuron (= active ReLU fraction).
3. From one fresh initialisation, 200 SGD steps of the ReLU net and its B1 and alpha1 twins:
   ``OUT/trajectories.png``.
4. Train a B1 TTFS FC2 from scratch (1 epoch, Adam 5e-4, batch 8, windows 1500 growing).
5. Sweep weight bits 8/6/4/3, jitter sigma 0.01/0.05/0.1 (window lengths), latency quantiles
   1.0/0.9/0.5 and time bits 8/6/4, each before and after 1 epoch of fine-tuning; the deployed
   accuracy comes from the integer time-grid program: ``OUT/sweep.{json,png}``.

Everything measured lands in ``OUT/ttfs_mnist.json``.

    python examples/ttfs_mnist.py --out runs/ttfs_mnist
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from torch import nn

from neurodeploy.atomic import write_json
from neurodeploy.data import load_dataset
from neurodeploy.ttfs import (
    TTFSFinetuneConfig,
    TTFSTrainConfig,
    compare_trajectories,
    evaluate,
    init_ttfs_mlp,
    relu_to_ttfs,
    save_ttfs,
    train_ttfs,
)
from neurodeploy.ttfs.plots import plot_trajectories
from neurodeploy.ttfs.sweep import run_ttfs_sweep
from neurodeploy.ttfs.workflows import equivalence


def fc2(seed: int) -> nn.Sequential:
    """ReLU FC2 784-340-10 in float64: Glorot-uniform weights, zero biases."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 340), nn.ReLU(), nn.Linear(340, 10)).double()
    for lin in (model[1], model[3]):
        bound = math.sqrt(6.0 / (lin.in_features + lin.out_features))
        with torch.no_grad():
            lin.weight.copy_(
                (torch.rand(lin.weight.shape, generator=g, dtype=torch.float64) * 2 - 1) * bound
            )
            lin.bias.zero_()
    return model


def train_relu(model: nn.Module, ds, epochs: int, lr: float, batch: int, seed: int) -> list[dict]:
    """Adam on cross-entropy; returns per-epoch loss and test accuracy."""
    opt = torch.optim.Adam(model.parameters(), lr)
    gen = torch.Generator().manual_seed(seed)
    hist = []
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(ds.n_train, generator=gen)
        total = 0.0
        for i in range(0, ds.n_train, batch):
            idx = perm[i : i + batch]
            loss = nn.functional.cross_entropy(model(ds.x_train[idx].double()), ds.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        model.eval()
        with torch.no_grad():
            acc = float((model(ds.x_test.double()).argmax(1) == ds.y_test).double().mean())
        hist.append({"epoch": epoch + 1, "train_loss": total / ds.n_train, "test_accuracy": acc})
    return hist


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", "--data", dest="data", default=None,
                    help="folder with the MNIST IDX files (default: $NEURODEPLOY_MNIST, then "
                         "~/.cache/neurodeploy/mnist)")
    ap.add_argument("--out", default="runs/ttfs_mnist")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy machine)"
    )
    ap.add_argument("--finetune-lr", type=float, default=1e-3)
    ap.add_argument(
        "--traj-lr", type=float, default=0.01, help="SGD learning rate of the trajectory comparison"
    )
    ap.add_argument(
        "--no-scratch", action="store_true", help="skip training a TTFS network from scratch"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    t0 = time.perf_counter()
    ds = load_dataset("mnist", args.data)
    print(f"MNIST split: {ds.split}")
    summary: dict = {"split": ds.split, "seed": args.seed}

    # 1-2. ReLU FC2 -> B1 TTFS
    relu = fc2(args.seed)
    summary["relu_training"] = train_relu(relu, ds, epochs=1, lr=5e-4, batch=64, seed=args.seed)
    net = relu_to_ttfs(relu, ds.x_train)
    eq = equivalence(relu, net, ds.x_test, ds.y_test)
    ev = evaluate(net, ds.x_test, ds.y_test)
    summary["mapping"] = {
        **eq,
        "windows": net.windows.tolist(),
        "latency": net.latency,
        "input_spike_fraction": ev["input_spike_fraction"],
    }
    save_ttfs(net, out / "fc2_ttfs.pt", {"dataset": "mnist", "split": ds.split, "equivalence": eq})
    print(
        f"ReLU FC2 test accuracy {100 * eq['relu_accuracy']:.2f}%, "
        f"TTFS {100 * eq['ttfs_accuracy']:.2f}%; "
        f"max |z_TTFS - z_ReLU| = {eq['max_abs_logit_difference']:.2e}, arg-max agreement "
        f"{100 * eq['argmax_agreement']:.2f}%"
    )
    print(
        f"spikes per hidden neuron {eq['spikes_per_neuron']:.4f} (active ReLU fraction "
        f"{eq['relu_active_fraction']:.4f}); "
        f"input spike fraction {ev['input_spike_fraction']:.4f}; "
        f"window {net.windows.tolist()}, latency {net.latency:.3f}"
    )

    # 3. trajectories from one fresh initialisation
    t = time.perf_counter()
    traj = compare_trajectories(
        fc2(args.seed + 1),
        ds.x_train,
        ds.y_train,
        steps=200,
        lr=args.traj_lr,
        batch_size=64,
        seed=args.seed,
    )
    plot_trajectories(
        traj,
        out / "trajectories.png",
        title=f"FC2 784-340-10 on MNIST (t10k 0-7,999 train): 200 SGD steps, lr {args.traj_lr}, "
        "batch 64, one initialisation",
    )
    summary["trajectories"] = {k: v for k, v in traj.items() if k != "rows"}
    summary["trajectories"]["gap_alpha1_at"] = {
        r["step"]: r["gap_alpha1"] for r in traj["rows"] if r["step"] in (1, 10, 50, 100, 200)
    }
    print(
        f"trajectories ({time.perf_counter() - t:.1f} s): "
        f"max |ReLU - B1| = {traj['max_gap_b1']:.2e}, "
        f"|ReLU - alpha1| at step 200 = {traj['final_gap_alpha1']:.3g}, B1 neurons clipped "
        f"{traj['clipped_b1']}"
    )

    # 4. from scratch
    if not args.no_scratch:
        t = time.perf_counter()
        scratch = init_ttfs_mlp(ds.input_shape, [340], 10, seed=args.seed)
        hist = train_ttfs(
            scratch,
            ds.x_train,
            ds.y_train,
            TTFSTrainConfig(epochs=1, lr=5e-4, batch_size=8, seed=args.seed),
        )
        sev = evaluate(scratch, ds.x_test, ds.y_test)
        summary["scratch"] = {
            "history": hist,
            "test_accuracy": sev["accuracy"],
            "spikes_per_neuron": sev["spikes_per_neuron"],
            "windows": scratch.windows.tolist(),
        }
        print(
            f"TTFS FC2 from scratch ({time.perf_counter() - t:.1f} s): "
            f"test {100 * sev['accuracy']:.2f}%, "
            f"spikes per neuron {sev['spikes_per_neuron']:.4f}"
        )

    # 5. constraint sweep
    t = time.perf_counter()
    cfg = TTFSFinetuneConfig(epochs=1, lr=args.finetune_lr, batch_size=64, seed=args.seed)
    report = run_ttfs_sweep(
        net,
        ds,
        weight_bits=[8, 6, 4, 3],
        jitter_sigmas=[0.01, 0.05, 0.1],
        latency_quantiles=[1.0, 0.9, 0.5],
        time_bits=[8, 6, 4],
        config=cfg,
        out_dir=out,
        log=print,
    )
    summary["sweep"] = {
        "baseline_accuracy": report["baseline"]["accuracy"],
        "baseline_latency": report["baseline"]["latency"],
        "reference_after_finetuning": report["reference"]["after"]["accuracy"],
        "points": [
            {
                "axis": p["axis"],
                "value": p["value"],
                "float_before": p["before"]["accuracy"],
                "float_after": p["after"]["accuracy"],
                "deployed_before": p["before"]["deployed_accuracy"],
                "deployed_after": p["after"]["deployed_accuracy"],
                "latency": p["after"]["latency"],
                "spikes_per_neuron_after": p["after"]["spikes_per_neuron"],
            }
            for p in report["points"]
        ],
    }
    print(f"sweep: {time.perf_counter() - t:.1f} s")
    summary["seconds"] = time.perf_counter() - t0
    write_json(out / "ttfs_mnist.json", summary)
    print(
        f"wrote {out / 'ttfs_mnist.json'}, {out / 'trajectories.png'}, {out / 'sweep.png'}, "
        f"{out / 'sweep.json'}, {out / 'fc2_ttfs.pt'} ({summary['seconds']:.0f} s)"
    )


if __name__ == "__main__":
    main()
