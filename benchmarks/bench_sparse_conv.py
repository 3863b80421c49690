"""The sparse-input convolution (``neurodeploy/nn/sparse_conv.py``) against torch's dense convolution.

For each case (``N`` maps = time steps x batch, ``C -> O`` channels, ``H = W`` sides, a 3x3 kernel
with padding 1, input density ``d``: a random raster of 0/1 spikes, or with ``v`` = 0.25 the
multiples of 1/4 that 2x2 average pooling of spikes gives), one process times, one after the other,
on channels-last maps: the forward ``sparse_conv.conv2d`` (the input's scan included) against the
``Conv2d`` stage itself, and the forward plus the weight and bias gradients (the input needs no
gradient) of each. Reported: the minimum CPU time (``time.process_time``; with ``--threads``
above 1 the wall-clock time) over ``--rounds`` rounds, in ms, and the ratio dense / sparse (above
1: the sparse form is faster). Where a case lies outside the module's limits (``MAX_DENSITY``,
``MIN_CHANNELS``) the "sparse" columns time what the module falls back to;
``--no-limits`` lifts the limits, to see why they are where they are. The process keeps freed
memory for reuse (:func:`neurodeploy.train.allocator.keep_freed_memory`, as ``neurodeploy train``
does), so that no form pays the first touch of its fresh output at every call.

    python benchmarks/bench_sparse_conv.py [--rounds 7] [--threads 1] [--no-limits]
"""

from __future__ import annotations

import os

import kernel_timing
import torch

CASES = [  # (N, C, O, side, density, value)
    (512, 1, 32, 28, 0.2, 1.0),     # B2's first convolution: T = 8, batch 64, a rate-coded image
    (512, 32, 64, 14, 0.05, 0.25),  # B2's second convolution behind pooled spikes
    (512, 32, 64, 14, 0.1, 0.25),
    (512, 32, 64, 14, 0.15, 0.25),
    (512, 32, 64, 14, 0.2, 0.25),
    (256, 64, 64, 16, 0.1, 1.0),
]


def main(argv: list[str] | None = None) -> int:
    args = kernel_timing.parse(__doc__, argv)
    from neurodeploy.nn import sparse_conv
    from neurodeploy.nn.conv_layout import to_channels_last
    from neurodeploy.train.allocator import keep_freed_memory

    keep_freed_memory()

    if not sparse_conv.AVAILABLE:
        print("numba is not installed: the sparse forms are the dense convolution")
        return 1
    if args.no_limits:
        sparse_conv.MAX_DENSITY, sparse_conv.MIN_CHANNELS = 1.0, 1
    gen = torch.Generator().manual_seed(0)
    clock = kernel_timing.clock(args.threads)
    print(kernel_timing.header(args))
    print(f"{'N':>4s} {'C':>3s} {'O':>3s} {'side':>4s} {'d':>5s} {'v':>4s} | {'fwd sparse':>10s} {'dense':>7s} "
          f"{'x':>5s} | {'fwd+gW sparse':>13s} {'dense':>7s} {'x':>5s}")
    for n, c, o, side, density, value in CASES:
        x = to_channels_last((torch.rand(n, c, side, side, generator=gen) < density).float() * value)
        stage = torch.nn.Conv2d(c, o, 3, padding=1)
        g = torch.randn(n, o, side, side, generator=gen).contiguous(memory_format=torch.channels_last)
        params = list(stage.parameters())

        def train(conv):
            return torch.autograd.grad(conv(x), params, g)  # noqa: B023

        with torch.no_grad():
            fs = kernel_timing.best_ms(lambda: sparse_conv.conv2d(x, stage), args.rounds, clock)  # noqa: B023
            fd = kernel_timing.best_ms(lambda: stage(x), args.rounds, clock)  # noqa: B023
        ts = kernel_timing.best_ms(lambda: train(lambda v: sparse_conv.conv2d(v, stage)), args.rounds, clock)  # noqa: B023
        td = kernel_timing.best_ms(lambda: train(stage), args.rounds, clock)  # noqa: B023
        print(f"{n:4d} {c:3d} {o:3d} {side:4d} {density:5.2f} {value:4.2f} | {fs:10.2f} {fd:7.2f} {fd / fs:5.2f} | "
              f"{ts:13.2f} {td:7.2f} {td / ts:5.2f}")
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
