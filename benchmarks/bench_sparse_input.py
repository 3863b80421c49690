"""The sparse-input linear layer (``neurodeploy/nn/sparse_input.py``) against torch's dense products.

For each case (rows ``R`` = time steps x batch, inputs ``J``, outputs ``N``, input density ``d``: a
random 0/1 raster), one process times, one after the other: the forward ``sparse_input.linear``
(the scan of the input included) against ``torch.nn.functional.linear``, and the weight gradient
``sparse_input.weight_grad`` against ``g.T @ x``. Reported: the minimum CPU time
(``time.process_time``; with ``--threads`` above 1 the wall-clock time) over ``--rounds`` rounds,
in ms, and the ratio dense / sparse (above 1:
the sparse form is faster). Where a case lies outside the module's limits (``MAX_DENSITY``,
``MIN_WIDTH``, ``MAX_GRAD_BYTES``) the "sparse" column is the dense product the module falls back
to; ``--no-limits`` lifts the limits, to see why they are where they are.

    python benchmarks/bench_sparse_input.py [--rounds 7] [--threads 1] [--no-limits]
"""

from __future__ import annotations

import os

import kernel_timing
import torch

CASES = [  # (R, J, N, density)
    (3200, 784, 512, 0.2),   # B1's input layer: T = 25, batch 128
    (3200, 784, 512, 0.3),
    (3200, 784, 2048, 0.2),
    (3200, 784, 10, 0.2),
    (3200, 512, 10, 0.1),
    (1600, 256, 256, 0.15),
    (512, 784, 256, 0.2),
]


def main(argv: list[str] | None = None) -> int:
    args = kernel_timing.parse(__doc__, argv)
    from neurodeploy.nn import sparse_input

    if not sparse_input.AVAILABLE:
        print("numba is not installed: the sparse forms are the dense products")
        return 1
    if args.no_limits:
        sparse_input.MAX_DENSITY, sparse_input.MIN_WIDTH, sparse_input.MAX_GRAD_BYTES = 1.0, 1, 1 << 40
    gen = torch.Generator().manual_seed(0)
    clock = kernel_timing.clock(args.threads)
    print(kernel_timing.header(args))
    print(f"{'R':>5s} {'J':>5s} {'N':>5s} {'d':>5s} | {'fwd sparse':>10s} {'dense':>7s} {'x':>5s} | "
          f"{'gW sparse':>9s} {'dense':>7s} {'x':>5s}")
    for rows, cols, out, density in CASES:
        x = (torch.rand(rows, cols, generator=gen) < density).float()
        w = torch.randn(out, cols, generator=gen)
        g = torch.randn(rows, out, generator=gen)
        fs = kernel_timing.best_ms(lambda: sparse_input.linear(x, w), args.rounds, clock)  # noqa: B023
        fd = kernel_timing.best_ms(lambda: torch.nn.functional.linear(x, w), args.rounds, clock)  # noqa: B023
        gs = kernel_timing.best_ms(lambda: sparse_input.weight_grad(g, x), args.rounds, clock)  # noqa: B023
        gd = kernel_timing.best_ms(lambda: g.t() @ x, args.rounds, clock)  # noqa: B023
        print(f"{rows:5d} {cols:5d} {out:5d} {density:5.2f} | {fs:10.2f} {fd:7.2f} {fd / fs:5.2f} | "
              f"{gs:9.2f} {gd:7.2f} {gd / gs:5.2f}")
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
