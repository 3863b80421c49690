"""What the kernel benchmarks (``bench_sparse_input.py``, ``bench_sparse_conv.py``) share: their
command line and the best-of-rounds timer."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch


def parse(doc: str, argv: list[str] | None) -> argparse.Namespace:
    """``--rounds``, ``--threads`` and ``--no-limits``; sets torch's thread count."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-limits", action="store_true", help="run the sparse forms outside the module's limits too")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    return args


def clock(threads: int) -> Callable[[], float]:
    """CPU time of the process with one thread (other processes' load does not inflate it), else
    the wall clock."""
    return time.process_time if threads == 1 else time.perf_counter


def header(args: argparse.Namespace) -> str:
    return (f"{args.threads} thread(s), load average {os.getloadavg()[0]:.2f}; "
            f"{'CPU' if args.threads == 1 else 'wall-clock'} ms, best of {args.rounds}")


def best_ms(fn: Callable[[], object], rounds: int, timer: Callable[[], float]) -> float:
    """The least time of ``rounds`` calls of ``fn`` (after one untimed call), in ms."""
    fn()
    times = []
    for _ in range(rounds):
        t0 = timer()
        fn()
        times.append(timer() - t0)
    return 1e3 * min(times)
