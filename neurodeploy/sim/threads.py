"""Threads while simulating: BLAS limits and a dynamic parallel map.

The simulator's work is a sequence of mid-sized float matrix products (the synaptic input of a
chunk of steps) interleaved with element-wise neuron updates in the calling thread. A
multi-threaded BLAS gains little on these products and loses much when a CPU is busy with other
work: its threads wait for each other (measured on the 2-CPU development machine, shared with
other jobs: 64 ms with one BLAS thread against 182 ms with two, for the 784-128-10 benchmark of
``benchmarks/bench_vs_lava.py``). :func:`blas_threads` limits BLAS for the duration of a
simulation (one thread unless the caller asks otherwise).

The simulator uses the CPUs instead through :func:`parallel_map`: the synaptic products of many
small chunks of steps are handed to a few threads that each take the next chunk when they are
done (numpy and BLAS release the GIL while they compute), and the neuron updates then run in the
calling thread. A thread the operating system does not schedule (a busy machine) delays only the
chunk it holds; the others take the rest.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_CONTROLLER: Any = None
_MODULES_SEEN = -1


def blas_threads(limit: int | None = 1) -> contextlib.AbstractContextManager:
    """A context in which BLAS uses at most ``limit`` threads (``None``: leave BLAS as it is).

    Uses threadpoolctl (installed with scikit-learn); without it the context does nothing. The
    loaded BLAS libraries are looked up again whenever modules were imported since the last
    look-up (an extension module may bring its own BLAS).
    """
    global _CONTROLLER, _MODULES_SEEN
    if limit is None:
        return contextlib.nullcontext()
    if _CONTROLLER is None or (_CONTROLLER is not False and len(sys.modules) != _MODULES_SEEN):
        try:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER = ThreadpoolController()
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            _CONTROLLER = False
        _MODULES_SEEN = len(sys.modules)
    if _CONTROLLER is False:
        return contextlib.nullcontext()
    return _CONTROLLER.limit(limits=int(limit), user_api="blas")


def cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - platforms without affinity
        return os.cpu_count() or 1


def parallel_map(fn: Callable[[Any], Any], items: Sequence[Any],
                 threads: int | None = None) -> list[Any]:
    """``[fn(item) for item in items]``, on up to ``threads`` threads (default: the CPUs), each
    taking the next item when done; sequential for one thread or one item."""
    threads = min(cpus() if threads is None else int(threads), len(items))
    if threads <= 1:
        return [fn(item) for item in items]
    with torch_threads(1), ThreadPoolExecutor(max_workers=threads, thread_name_prefix="neurodeploy-sim") as pool:
        return list(pool.map(fn, items))


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's intra-op threads limited to ``n`` for the duration: the workers of
    :func:`parallel_map` are the parallelism, and torch operations inside them that each started
    their own threads made the ConvNet of ``benchmarks/bench_vs_lava.py`` slower with two workers
    than with one (best of two runs: 1.35 s against 1.15 s on a shared 2-CPU machine; with torch at
    one thread, two workers took 0.93–1.21 s over three such runs)."""
    import torch

    before = torch.get_num_threads()
    if before > n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
