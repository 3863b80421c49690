"""Backward cost of the AdaLi surrogate against its computational density (docs/methods.md §5.1, E3).

AdaLi's window holds a shrinking fraction of the potentials (its computational density, CD). A
backward that evaluates the surrogate only inside the window should cost less as CD falls, while a
sigmoid surrogate (infinite support, CD = 1 by definition) costs the same at every epoch. This
script measures both that and the dense float formula training uses.

Set-up: ``x = M - V`` drawn once from N(0, sigma²) with sigma = 1.61, which puts 65 % of the
potentials inside AdaLi's initial window ±1.5 V (the paper's coverage at the start). The window's
half-width is then swept from 1.5 V (epoch 1 of the paper's defaults) to 0.3 V (their final
bounds) and below, to reach the low densities. For each width, in this process and on the same
tensors, the script times

* ``adali_support``: ``AdaLi.backward_in_support``, which evaluates the surrogate only at the
  entries inside the window;
* ``adali_dense``: ``grad_out * AdaLi.phi(x)`` over all entries (the surrogate's single
  statement, as a fused neuron path would call it);
* ``adali``: the gradient of ``spike(x, AdaLi)`` w.r.t. ``x`` (``torch.autograd.grad``), the
  spike function's backward as training runs it (the dense formula);
* ``adali_where``: ``grad_out * phi`` with phi written as comparisons and ``torch.where`` (the
  formulation ``AdaLi.phi`` used before; kept here as a baseline);
* ``sigmoid``: the same autograd backward with the sigmoid surrogate (alpha = 1, the paper's
  ablation baseline).

The columns are measured interleaved so that a change of load hits them alike.

Each figure is the fastest of ``--reps`` runs (the least disturbed; medians are in the JSON) of
the CPU time of this thread (``time.thread_time``; run with one thread: on a shared machine
wall-clock time mostly measures the other jobs); ratios are against the sigmoid of the same row.

Usage::

    python benchmarks/bench_adali_backward.py --elements 2000000 --reps 15 --out adali.json --plot adali.png
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from typing import Any

import torch

from neurodeploy.atomic import write_json
from neurodeploy.nn.surrogate import make_surrogate, spike

SIGMA = 1.61


def _clock() -> float:
    """CPU time of this thread: on a shared machine, wall time mostly measures the other jobs."""
    return time.thread_time()
HALF_WIDTHS = (1.5, 1.0, 0.6, 0.3, 0.15, 0.06, 0.02)


def _time_grad(x: torch.Tensor, surrogate, grad_out: torch.Tensor) -> float:
    xx = x.detach().requires_grad_(True)
    s = spike(xx, surrogate)
    start = _clock()
    torch.autograd.grad(s, xx, grad_out)
    return _clock() - start


def _time_phi(x: torch.Tensor, surrogate, grad_out: torch.Tensor) -> float:
    start = _clock()
    _ = grad_out * surrogate.phi(x)
    return _clock() - start


def _where_phi(x: torch.Tensor, lo: float, hi: float, left: float, right: float) -> torch.Tensor:
    """AdaLi's phi as comparisons and nested ``torch.where`` (the former formulation)."""
    zero = torch.zeros_like(x)
    return torch.where((x >= lo) & (x < 0), left * torch.ones_like(x),
                       torch.where((x >= 0) & (x <= hi), right * torch.ones_like(x), zero))


def _time_where(x: torch.Tensor, surrogate, grad_out: torch.Tensor) -> float:
    dm, dp = surrogate.deltas()
    start = _clock()
    _ = grad_out * _where_phi(x, -dm, dp, surrogate.alpha / dm, surrogate.beta / dp)
    return _clock() - start


def _time_support(x: torch.Tensor, surrogate, grad_out: torch.Tensor) -> float:
    start = _clock()
    surrogate.backward_in_support(grad_out, x)
    return _clock() - start


def measure(elements: int, reps: int, seed: int = 0) -> list[dict[str, Any]]:
    """One row per AdaLi half-width: density and backward CPU times (seconds)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(elements, generator=g) * SIGMA
    grad_out = torch.randn(elements, generator=g)
    sigmoid = make_surrogate({"name": "sigmoid", "alpha": 1.0})
    rows = []
    for delta in HALF_WIDTHS:
        adali = make_surrogate({"name": "adali", "delta_minus_init": delta, "delta_plus_init": delta})
        density = float(adali.in_support(x).float().mean())
        # warm-up, then interleave so that a change of load hits every column alike
        _time_grad(x, adali, grad_out), _time_grad(x, sigmoid, grad_out), _time_phi(x, adali, grad_out)
        times: dict[str, list[float]] = {"adali": [], "adali_support": [], "adali_dense": [], "adali_where": [],
                                         "sigmoid": []}
        for _ in range(reps):
            times["adali"].append(_time_grad(x, adali, grad_out))
            times["sigmoid"].append(_time_grad(x, sigmoid, grad_out))
            times["adali_support"].append(_time_support(x, adali, grad_out))
            times["adali_dense"].append(_time_phi(x, adali, grad_out))
            times["adali_where"].append(_time_where(x, adali, grad_out))
        med = {k: min(v) for k, v in times.items()}  # least disturbed run (shared machine)
        medians = {f"{k}_median_s": statistics.median(v) for k, v in times.items()}
        rows.append({"half_width": delta, "density": density, **{f"{k}_s": v for k, v in med.items()},
                     **medians,
                     "adali_over_sigmoid": med["adali"] / med["sigmoid"],
                     "adali_support_over_sigmoid": med["adali_support"] / med["sigmoid"],
                     "adali_dense_over_sigmoid": med["adali_dense"] / med["sigmoid"],
                     "adali_where_over_sigmoid": med["adali_where"] / med["sigmoid"]})
    return rows


def plot(rows: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from neurodeploy.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    d = [r["density"] for r in rows]
    ax.plot(d, [1e3 * r["adali_s"] for r in rows], "o-", label="AdaLi backward (as trained)")
    ax.plot(d, [1e3 * r["adali_support_s"] for r in rows], "v-", label="AdaLi, window entries only")
    ax.plot(d, [1e3 * r["adali_dense_s"] for r in rows], "s--", label="AdaLi phi, all entries")
    ax.plot(d, [1e3 * r["adali_where_s"] for r in rows], "x--", label="AdaLi phi with torch.where (former)")
    ax.plot(d, [1e3 * r["sigmoid_s"] for r in rows], "^:", label="sigmoid (alpha 1) backward")
    ax.set(xlabel="computational density (fraction of entries in the window)",
           ylabel="CPU time, fastest repetition (ms)",
           title=f"surrogate backward, {rows[0]['elements']:,} entries" if rows else "")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--elements", type=int, default=2_000_000)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="JSON file for the results")
    ap.add_argument("--plot", default=None, help="PNG file for the figure")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = measure(args.elements, args.reps)
    for r in rows:
        r["elements"] = args.elements
    print(f"{'half-width':>10} {'density':>8} {'AdaLi ms':>9} {'window ms':>9} {'phi ms':>8} "
          f"{'where ms':>8} {'sigmoid ms':>10} {'AdaLi/sig':>9} {'window/sig':>10} {'phi/sig':>8} "
          f"{'where/sig':>9}")
    for r in rows:
        print(f"{r['half_width']:>10g} {r['density']:>8.3f} {1e3 * r['adali_s']:>9.2f} "
              f"{1e3 * r['adali_support_s']:>9.2f} {1e3 * r['adali_dense_s']:>8.2f} "
              f"{1e3 * r['adali_where_s']:>8.2f} {1e3 * r['sigmoid_s']:>10.2f} "
              f"{r['adali_over_sigmoid']:>9.2f} {r['adali_support_over_sigmoid']:>10.2f} "
              f"{r['adali_dense_over_sigmoid']:>8.2f} {r['adali_where_over_sigmoid']:>9.2f}")
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average {load}")
    if args.out:
        write_json(args.out, {"rows": rows, "torch": torch.__version__, "threads": args.threads,
                              "machine": platform.machine(), "load_average": load})
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
