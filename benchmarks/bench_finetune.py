"""One fine-tuning epoch through the chip arithmetic against one float epoch, in the same run.

Network: the MNIST MLP 784-256-256-10 of ``examples/train_mnist_mlp.py`` (LIF, 8 steps, direct
8-bit input), untrained weights (speed does not depend on them). Data: the MNIST training split
from ``--data-root`` (IDX files), or, without it, ``--samples`` random MNIST-shaped images with
random labels. Float epoch: the model's own forward (the trainer's default neuron path),
cross-entropy, Adam, batch 64. Fine-tuning epoch: :func:`neurodeploy.quantize.finetune.finetune`
on :func:`neurodeploy.quantize.fakequant.fake_quantize` of the same model for ``--profile``,
batch 64, with the whole-window neuron path (default) and, with ``--reference``, the
step-by-step reference path as well, interleaved over ``--rounds`` rounds (the median ratio is
reported, so a change of the machine's other load hits both alike), in wall-clock and in
CPU time of this process (less inflated by other processes on a shared machine), after an
untimed warm-up of four batches of each path (first-call costs). Both run with
``--threads`` torch threads; the 1-minute load average is printed before and after. With
``--profile-batches N`` it prints cProfile's top functions over N fine-tuning batches instead (by
their own time, then by cumulative time).

    python benchmarks/bench_finetune.py --data-root DIR --reference
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from train_mnist_mlp import mnist_spec  # noqa: E402

from neurodeploy.models import build_model  # noqa: E402
from neurodeploy.quantize.fakequant import fake_quantize  # noqa: E402
from neurodeploy.quantize.finetune import FinetuneConfig, finetune  # noqa: E402


def _data(root: str | None, samples: int):
    if root:
        from neurodeploy.data import load_dataset

        return load_dataset("mnist", root)
    g = torch.Generator().manual_seed(0)
    return SimpleNamespace(x_train=torch.rand(samples, 1, 28, 28, generator=g),
                           y_train=torch.randint(0, 10, (samples,), generator=g))


def float_epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> tuple[float, float]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(len(x), generator=gen)
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(x), batch):
        idx = order[i : i + batch]
        loss = nn.functional.cross_entropy(model(x[idx], gen), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start, time.process_time() - cpu


def finetune_epoch(model, x, y, profile: str, batch: int, fused: bool) -> tuple[float, float]:
    fq = fake_quantize(model, profile, x[:256])
    fq.fused = fused
    start, cpu = time.perf_counter(), time.process_time()
    finetune(fq, SimpleNamespace(x_train=x, y_train=y),
             FinetuneConfig(epochs=1, batch_size=batch, threads=torch.get_num_threads()),
             progress=False)
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=None, help="folder with the MNIST IDX files")
    ap.add_argument("--samples", type=int, default=8000, help="random samples without --data-root")
    ap.add_argument("--profile", default="loihi2", help="hardware profile (default loihi2: graded input)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved rounds of (float epoch, fine-tuning epoch); the median ratio "
                         "is reported")
    ap.add_argument("--reference", action="store_true",
                    help="also time the step-by-step reference path of the fake-quant forward")
    ap.add_argument("--profile-batches", type=int, default=0,
                    help="print a cProfile of this many fine-tuning batches and stop")
    ap.add_argument("--keep-freed-memory", action="store_true",
                    help="this process keeps freed memory for reuse (glibc mallopt, as `neurodeploy train` and "
                         "`neurodeploy finetune` do); it applies to both epochs")
    args = ap.parse_args()
    if args.keep_freed_memory:
        from neurodeploy.train.allocator import keep_freed_memory

        keep_freed_memory()
    torch.set_num_threads(args.threads)
    ds = _data(args.data_root, args.samples)
    x, y = ds.x_train, ds.y_train
    torch.manual_seed(0)
    model = build_model(mnist_spec())
    if args.profile_batches:
        n = args.profile_batches * args.batch_size
        for fused in ([True, False] if args.reference else [True]):
            finetune_epoch(model, x[:args.batch_size], y[:args.batch_size], args.profile,
                           args.batch_size, fused)  # warm-up: imports, first-call costs
            prof = cProfile.Profile()
            prof.enable()
            secs = finetune_epoch(model, x[:n], y[:n], args.profile, args.batch_size, fused)[0]
            prof.disable()
            print(f"--- {'whole-window' if fused else 'step-by-step'} path, {args.profile_batches} "
                  f"batches: {secs:.2f} s")
            pstats.Stats(prof).sort_stats("tottime").print_stats(15)
            pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
        return
    # warm-up, untimed: both paths' first-call costs (imports, compiled kernels, allocator pools)
    warm = 4 * args.batch_size
    float_epoch(model, x[:warm], y[:warm], args.batch_size)
    for fused in ([True, False] if args.reference else [True]):
        finetune_epoch(model, x[:warm], y[:warm], args.profile, args.batch_size, fused)
    load0 = os.getloadavg()[0]
    rounds = []  # interleaved: float, fine-tuning (, reference) per round, so load hits all alike
    for _ in range(args.rounds):
        t_float = float_epoch(model, x, y, args.batch_size)
        t_fq = finetune_epoch(model, x, y, args.profile, args.batch_size, True)
        t_ref = (finetune_epoch(model, x, y, args.profile, args.batch_size, False)
                 if args.reference else None)
        rounds.append((t_float, t_fq, t_ref))
    load1 = os.getloadavg()[0]
    print(f"{len(x)} samples, batch {args.batch_size}, {args.threads} thread(s), profile "
          f"{args.profile}, {args.rounds} interleaved round(s), load average {load0:.2f} -> "
          f"{load1:.2f}")
    for k, (t_float, t_fq, t_ref) in enumerate(rounds):
        line = (f"round {k + 1}: float epoch {t_float[0]:6.2f} s ({t_float[1]:.2f} CPU s), "
                f"fine-tuning epoch {t_fq[0]:6.2f} s ({t_fq[1]:.2f} CPU s), ratio "
                f"{t_fq[0] / t_float[0]:.2f}x ({t_fq[1] / t_float[1]:.2f}x CPU)")
        if t_ref is not None:
            line += (f"; step-by-step reference {t_ref[0]:6.2f} s, ratio "
                     f"{t_ref[0] / t_float[0]:.2f}x")
        print(line)
    for k, what in ((0, "wall-clock"), (1, "CPU (process) time")):
        ratios = sorted(t_fq[k] / t_float[k] for t_float, t_fq, _ in rounds)
        print(f"median ratio fine-tuning / float epoch, {what}: {ratios[len(ratios) // 2]:.2f}x")

if __name__ == "__main__":
    main()
