"""Throughput of neurodeploy's batched simulator against a per-sample int64 numpy loop.

Network (docs/loihi.md §10): 784-128-10 CUBA-LIF on the ``loihi2`` profile, random int8 weights
(uniform in [-128, 127]), iDecay 1024, vDecay 128, vThMant 1500, Bernoulli(0.1) input spikes.
Both implementations run in this process on the same inputs; the script checks that their output
rasters are identical and reports the speed ratio.

- ``measure_neurodeploy``: ``Simulator(graph).run`` on all samples as one batch, with the
  family's whole-window kernels (default) or ``fast=False`` (``neuron_step`` once per step).
- ``measure_numpy_reference``: an unbatched loop, one sample at a time, step-major, int64 numpy
  (the model docs/loihi.md §10 describes; written here independently of ``neurodeploy.arith``).

A Lava baseline can be added as another ``measure_*`` function that runs in a separate Python
environment through a subprocess and returns the same dict.

Usage::

    python benchmarks/bench_sim.py --samples 100 --steps 100 --out bench_sim.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from typing import Any

import numpy as np

from neurodeploy.atomic import write_json
from neurodeploy.lower.graph import Dense, DeployGraph, NeuronGroup
from neurodeploy.sim import Simulator

I_DECAY, V_DECAY, V_TH = 1024, 128, 1500
SIZES = (784, 128, 10)


def build_network(seed: int = 0) -> tuple[DeployGraph, list[np.ndarray]]:
    """The benchmark graph and its weight matrices ``[out, in]`` (int64)."""
    rng = np.random.default_rng(seed)
    weights = [rng.integers(-128, 128, (SIZES[i + 1], SIZES[i])).astype(np.int64)
               for i in range(len(SIZES) - 1)]
    layers = [
        Dense(w, NeuronGroup((w.shape[0],), I_DECAY, V_DECAY, V_TH,
                             np.zeros(w.shape[0], np.int64)), name=f"fc{i + 1}")
        for i, w in enumerate(weights)
    ]
    graph = DeployGraph("loihi2", "loihi", (SIZES[0],), layers, steps=100,
                        readout={"kind": "spike_count"})
    return graph, weights


def make_inputs(samples: int, steps: int, rate: float = 0.1, seed: int = 1) -> np.ndarray:
    """Bernoulli(``rate``) input spikes ``[samples, steps, 784]`` (uint8)."""
    rng = np.random.default_rng(seed)
    return (rng.random((samples, steps, SIZES[0])) < rate).astype(np.uint8)


def _figures(times: list[float], samples: int, steps: int) -> dict[str, Any]:
    best = min(times)
    neurons = sum(SIZES[1:])
    return {
        "seconds_best": best,
        "seconds_median": statistics.median(times),
        "seconds_all": times,
        "samples_per_s": samples / best,
        "sample_steps_per_s": samples * steps / best,
        "neuron_updates_per_s": neurons * samples * steps / best,
    }


def measure_neurodeploy(graph: DeployGraph, inputs: np.ndarray, repeats: int = 3,
                        fast: bool = True) -> tuple[dict[str, Any], np.ndarray]:
    """Time ``repeats`` batched runs (each includes building the ``Simulator``).

    Returns the figures and the output raster ``[samples, steps, 10]``.
    """
    times, raster = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = Simulator(graph, fast=fast).run(inputs, record=("spikes",))
        times.append(time.perf_counter() - start)
        raster = result.rasters[result.layer_names[-1]]
    return _figures(times, inputs.shape[0], inputs.shape[1]), np.asarray(raster, np.int64)


def _rtz(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * (np.abs(x) // 4096)


def numpy_reference_sample(weights: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """One sample ``[steps, 784]`` through the network, step-major (docs/loihi.md §2-§3); returns the
    output spikes ``[steps, 10]``."""
    m = 1 << 23
    u = [np.zeros(w.shape[0], np.int64) for w in weights]
    v = [np.zeros(w.shape[0], np.int64) for w in weights]
    buf = [np.zeros(w.shape[0], np.int64) for w in weights]
    out = np.zeros((x.shape[0], weights[-1].shape[0]), np.int64)
    for t in range(x.shape[0]):
        s = x[t].astype(np.int64)
        for i, w in enumerate(weights):
            a = buf[i]
            buf[i] = w @ s
            ui = _rtz(u[i] * (4096 - I_DECAY)) + a * 64
            ui = np.where(ui > m, ui - 2 * m, np.where(ui <= -m, ui + 2 * m, ui))
            vi = np.clip(_rtz(v[i] * (4096 - V_DECAY)) + ui, -(m - 1), m - 1)
            s = (vi > V_TH * 64).astype(np.int64)
            vi[s > 0] = 0
            u[i], v[i] = ui, vi
        out[t] = s
    return out


def measure_numpy_reference(weights: list[np.ndarray], inputs: np.ndarray,
                            repeats: int = 1) -> tuple[dict[str, Any], np.ndarray]:
    """Time ``repeats`` passes of the per-sample numpy loop over all samples."""
    times, raster = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        raster = np.stack([numpy_reference_sample(weights, x) for x in inputs])
        times.append(time.perf_counter() - start)
    return _figures(times, inputs.shape[0], inputs.shape[1]), raster


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of neurodeploy")
    parser.add_argument("--reference-repeats", type=int, default=1,
                        help="timed passes of the numpy reference")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the figures as JSON to this path (atomically)")
    args = parser.parse_args(argv)

    graph, weights = build_network(args.seed)
    inputs = make_inputs(args.samples, args.steps, seed=args.seed + 1)
    Simulator(graph).run(inputs[:2])  # warm-up (imports, first allocations)
    nd, nd_raster = measure_neurodeploy(graph, inputs, args.repeats)
    step, step_raster = measure_neurodeploy(graph, inputs, args.repeats, fast=False)
    ref, ref_raster = measure_numpy_reference(weights, inputs, args.reference_repeats)
    identical = bool(np.array_equal(nd_raster, ref_raster) and
                     np.array_equal(step_raster, ref_raster))
    ratio = ref["seconds_best"] / nd["seconds_best"]

    rows = [("neurodeploy (batched)", nd), ("neurodeploy, per step", step),
            ("numpy per-sample loop", ref)]
    print(f"784-128-10 CUBA, {args.samples} samples x {args.steps} steps, "
          f"Bernoulli(0.1) input, {os.cpu_count()} CPU(s)")
    print(f"{'implementation':<24}{'best s':>9}{'median s':>10}{'samples/s':>11}"
          f"{'steps/s':>11}{'updates/s':>12}")
    for name, f in rows:
        print(f"{name:<24}{f['seconds_best']:>9.3f}{f['seconds_median']:>10.3f}"
              f"{f['samples_per_s']:>11.1f}{f['sample_steps_per_s']:>11.0f}"
              f"{f['neuron_updates_per_s']:>12.3g}")
    print(f"speed-up of neurodeploy over its per-step path: "
          f"{step['seconds_best'] / nd['seconds_best']:.1f}x")
    print(f"speed-up of neurodeploy over the numpy loop: {ratio:.1f}x; output rasters "
          f"{'identical' if identical else 'DIFFER'} ({int(nd_raster.sum())} output spikes)")

    report = {
        "benchmark": "bench_sim",
        "network": {"sizes": list(SIZES), "iDecay": I_DECAY, "vDecay": V_DECAY,
                    "vThMant": V_TH, "weights": "uniform int in [-128, 127]",
                    "input": "Bernoulli(0.1)", "profile": graph.profile},
        "samples": args.samples,
        "steps": args.steps,
        "seed": args.seed,
        "neurodeploy": nd,
        "neurodeploy_per_step": step,
        "numpy_reference": ref,
        "speedup_vs_numpy_reference": ratio,
        "rasters_identical": identical,
        "output_spikes": int(nd_raster.sum()),
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                    "cpus": os.cpu_count(), "numpy": np.__version__},
    }
    if args.out:
        write_json(args.out, report)
    return report


if __name__ == "__main__":
    result = main()
    if not result["rasters_identical"]:
        sys.exit(1)
