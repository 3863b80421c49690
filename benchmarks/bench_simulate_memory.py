"""Peak memory of ``simulate`` against the number of samples: it must stay flat.

Each measurement runs in a fresh subprocess (so one size cannot inherit another's heap) that lowers a
784-256-256-10 LIF MLP for ``loihi2`` and simulates N MNIST-sized samples through the public API
(:func:`neurodeploy.sim.deploy.deploy_model`, what ``neurodeploy simulate`` calls), then reports its
peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and the peak of Python-level
allocations during the simulation (``tracemalloc``; numpy and torch report their buffers to it).

The samples are the MNIST test images when ``--data-root`` (or ``NEURODEPLOY_MNIST``) names a folder
with the IDX files, repeated to reach N; otherwise random MNIST-shaped images ``[N, 1, 28, 28]`` in
[0, 1] with random labels (the memory figures do not depend on the pixel values). The network's weights
are freshly initialised: accuracy is not the point here.

``--eager`` adds the old way as a baseline, measured in the same run: every sample's input events
encoded up front (``[N, T, 784]`` int64) before the simulation starts.

Usage::

    python benchmarks/bench_simulate_memory.py --sizes 100,10000 [--steps 8] [--data-root DIR] [--eager]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, time, tracemalloc
import numpy as np, torch
from neurodeploy.data import Dataset, load_dataset
from neurodeploy.models import ModelSpec, build_model

n, steps, root, eager = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] or None, sys.argv[4] == "1"
torch.manual_seed(0)
torch.set_num_threads(1)
if root is not None:
    base = load_dataset("mnist", root)
    reps = -(-n // len(base.x_test))
    x = base.x_test.repeat(reps, 1, 1, 1)[:n].contiguous()
    y = base.y_test.repeat(reps)[:n].contiguous()
    xtr = base.x_train[:512]
    source = f"MNIST test images ({base.split}), repeated to {n}"
else:
    g = torch.Generator().manual_seed(0)
    x = torch.rand((n, 1, 28, 28), generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    xtr = torch.rand((512, 1, 28, 28), generator=g)
    source = "random MNIST-shaped images"
ds = Dataset("mnist-shaped", xtr, torch.zeros(len(xtr), dtype=torch.int64), x, y, (1, 28, 28), 10, source)
spec = ModelSpec(arch="mlp", input_shape=(1, 28, 28), hidden=[256, 256], steps=steps,
                 encoding={"kind": "rate"}, neuron={"threshold": 0.5})
model = build_model(spec).eval()
from neurodeploy.sim import deploy as deploy_mod
if eager:  # the old way: every sample's events up front, then the simulation
    from neurodeploy.lower.inputs import encode_inputs
    from neurodeploy.sim.accuracy import simulate_accuracy
    from neurodeploy.sim.simulator import Simulator

    def simulate_graph(graph, x, y, *, jitter=None, seed=0, batch_size=None, progress=None):
        profile = deploy_mod.graph_profile(graph)
        gen = torch.Generator().manual_seed(int(graph.encoding.get("seed", 0)))
        inputs = encode_inputs(x, graph.steps, graph.encoding, gen)
        return simulate_accuracy(graph, inputs, y.numpy(), 256, profile=profile,
                                 extra_steps=Simulator(graph, profile).latency, seed=seed, progress=False)
    deploy_mod.simulate_graph = simulate_graph
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
t0 = time.perf_counter()
dep = deploy_mod.deploy_model(model, "loihi2", ds, progress=False)
seconds = time.perf_counter() - t0
_, traced_peak = tracemalloc.get_traced_memory()
tracemalloc.stop()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"samples": n, "steps": steps, "eager": eager, "source": source, "seconds": seconds,
                  "accuracy": dep.accuracy, "peak_rss_mb": rss / 1024, "rss_before_mb": rss0 / 1024,
                  "traced_peak_mb": traced_peak / 2**20}))
"""


def measure(n: int, steps: int, root: str | None, eager: bool) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(n), str(steps), root or "", "1" if eager else "0"],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"measurement of {n} samples failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,10000", help="sample counts, e.g. 100,10000")
    ap.add_argument("--steps", type=int, default=8, help="time steps T per sample")
    ap.add_argument("--data-root", default=os.environ.get("NEURODEPLOY_MNIST"),
                    help="MNIST IDX folder (default: $NEURODEPLOY_MNIST; random MNIST-shaped data without it)")
    ap.add_argument("--eager", action="store_true", help="also measure encoding every sample up front")
    ap.add_argument("--out", help="write the figures as JSON to this path")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    load = os.getloadavg()
    rows = []
    for eager in ([False, True] if args.eager else [False]):
        for n in sizes:
            t0 = time.perf_counter()
            r = measure(n, args.steps, args.data_root, eager)
            r["wall_s"] = time.perf_counter() - t0
            rows.append(r)
            print(f"{'eager ' if eager else 'stream'} N={n:>6} T={args.steps}: peak RSS {r['peak_rss_mb']:8.1f} MB "
                  f"(before simulating {r['rss_before_mb']:.1f} MB), traced peak {r['traced_peak_mb']:8.1f} MB, "
                  f"{r['seconds']:.1f} s", flush=True)
    for eager in ([False, True] if args.eager else [False]):
        sub = [r for r in rows if r["eager"] == eager]
        if len(sub) >= 2:
            d = sub[-1]["peak_rss_mb"] - sub[0]["peak_rss_mb"]
            print(f"{'eager ' if eager else 'stream'}: peak RSS at N={sub[-1]['samples']} minus N={sub[0]['samples']}: "
                  f"{d:+.1f} MB")
    print(f"data: {rows[0]['source']}; load average before {load[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    if args.out:
        from neurodeploy.atomic import write_json

        write_json(args.out, {"rows": rows, "load_before": load, "load_after": os.getloadavg()})


if __name__ == "__main__":
    main()
