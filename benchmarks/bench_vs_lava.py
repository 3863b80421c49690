"""Speed of neurodeploy's bit-accurate simulator against Lava 0.10's CPU fixed-point simulator.

Both run the same 784-128-10 CUBA network (random int8 weights, iDecay 1024, vDecay 128,
vThMant 1500) on the same Bernoulli(0.1) input spikes, in one invocation of this script, so the
ratio compares two measurements taken on one machine at one time:

* Lava (in the reference environment of ``tools/lava_env.sh``, through
  ``tools/lava_reference.py`` in a subprocess): one network built from raw Dense/LIF processes;
  the samples are fed back to back from one RingBuffer and run as consecutive
  ``run(RunSteps(steps))`` calls, each timed. The first call includes compilation and process
  start-up; the others are the steady state.
* neurodeploy: ``Simulator(graph).run`` on all samples as one batch (one untimed warm-up run,
  then ``--repeats`` timed runs, each including ``Simulator`` construction; the input raster is
  int64 like the lowering's encoder output, or ``--input-dtype uint8`` / ``bool``).

The speed-up is Lava's median steady ``run(steps)`` times the number of samples over our best
batched time; the JSON also has it over our median time, with Lava's first run included, and the
load average of the machine before and after (the figures of a shared machine need it).

While timing, both sides are checked for the same output spikes: Lava's whole back-to-back run
against our simulator on the same concatenated input, and ``--verify`` samples run in Lava from a
fresh network against the corresponding samples of the batched run.

Usage::

    python benchmarks/bench_vs_lava.py [--samples 100] [--steps 100] [--out bench.json]

The Lava interpreter comes from ``--lava-python``, ``NEURODEPLOY_LAVA_PYTHON`` or
``<repo>/.lava-env/bin/python``. Exit status: 0 on success, 1 if the spikes differ, 2 if Lava is
missing or fails.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from neurodeploy.atomic import write_json
from neurodeploy.lower.graph import Dense, DeployGraph, NeuronGroup

REPO_ROOT = Path(__file__).resolve().parents[1]
LAVA_SCRIPT = REPO_ROOT / "tools" / "lava_reference.py"


def build_graph(seed: int, steps: int, sizes=(784, 128, 10), idecay: int = 1024,
                vdecay: int = 128, vth: int = 1500) -> DeployGraph:
    """The benchmark network: uniform int8 weights in [-128, 127], no bias, netx units."""
    rng = np.random.default_rng(seed)
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        group = NeuronGroup(shape=(n_out,), current_decay=idecay, voltage_decay=vdecay,
                            threshold=vth, bias=np.zeros(n_out, np.int64))
        layers.append(Dense(weight=rng.integers(-128, 128, (n_out, n_in)), neurons=group))
    return DeployGraph(profile="loihi", family="loihi", input_shape=(sizes[0],), layers=layers,
                       steps=steps, readout={"kind": "spike_count"})


def make_inputs(seed: int, samples: int, steps: int, n_in: int, p: float = 0.1,
                dtype: str = "int64") -> np.ndarray:
    """Bernoulli(p) input spikes, ``(samples, steps, n_in)`` of ``dtype``."""
    rng = np.random.default_rng(seed + 1)
    return (rng.random((samples, steps, n_in)) < p).astype(dtype)


def find_lava_python(explicit: str | None) -> Path | None:
    """The reference environment's interpreter, or ``None`` if there is none."""
    for candidate in (explicit, os.environ.get("NEURODEPLOY_LAVA_PYTHON"),
                      REPO_ROOT / ".lava-env" / "bin" / "python"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _load_lava_script():
    spec = importlib.util.spec_from_file_location("lava_reference", LAVA_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lava_layers(graph: DeployGraph) -> list[dict]:
    """Raw Lava parameters (exact weights; du = iDecay - 1, dv = vDecay, vth = vThMant)."""
    return [{"weight": layer.weight, "weight_exp": layer.weight_exp,
             "du": layer.neurons.current_decay - 1, "dv": layer.neurons.voltage_decay,
             "vth": layer.neurons.threshold, "bias_mant": layer.neurons.bias,
             "bias_exp": layer.neurons.bias_exp} for layer in graph.layers]


def run_lava(python: Path, graph: DeployGraph, inputs: np.ndarray, lava_samples: int,
             verify: int) -> dict:
    """Time Lava on ``lava_samples`` samples back to back and run ``verify`` fresh samples.

    Returns the result arrays and header of ``tools/lava_reference.py`` plus ``wall_s``, the
    subprocess's whole wall time (interpreter start, imports, all cases, result I/O).
    """
    lava = _load_lava_script()
    samples, steps, _ = inputs.shape
    req = lava.Request()
    layers = lava_layers(graph)
    stream = inputs[:lava_samples].reshape(lava_samples * steps, -1)
    req.add_raw("timing", stream, layers, record=(), chunk_steps=steps)
    for k in range(verify):
        req.add_raw(f"verify{k}", inputs[k], layers, record=())
    with tempfile.TemporaryDirectory() as tmp:
        req.save(Path(tmp) / "request.npz")
        t0 = time.perf_counter()
        proc = subprocess.run([str(python), str(LAVA_SCRIPT), "run", f"{tmp}/request.npz",
                               f"{tmp}/result.npz"], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"Lava run failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
        header, arrays = lava.load_npz(Path(tmp) / "result.npz")
    for info in header["cases"]:
        if not info["ok"]:
            raise RuntimeError(f"Lava case {info['name']} failed: {info['error']}")
    return {"header": header, "arrays": arrays, "wall_s": wall}


def simulate(graph: DeployGraph, inputs: np.ndarray) -> np.ndarray:
    """Output spikes of neurodeploy's simulator, ``(batch, steps, n_out)``."""
    from neurodeploy.sim import Simulator

    result = Simulator(graph).run(inputs, record=("spikes",))
    return np.asarray(result.rasters[result.layer_names[-1]], dtype=np.int64)


def time_ours(graph: DeployGraph, inputs: np.ndarray, repeats: int) -> tuple[list, np.ndarray]:
    """Seconds of ``repeats`` batched runs (each including ``Simulator`` construction, i.e.
    loading the profile) after one untimed warm-up run (one-time costs of the process, as
    Lava's first run is left out of its steady state), and the output spikes of the last."""
    simulate(graph, inputs)
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = simulate(graph, inputs)
        times.append(time.perf_counter() - t0)
    return times, out


def compare(name: str, lava_out: np.ndarray, ours: np.ndarray) -> str | None:
    """``None`` if the rasters are equal, else a one-line description of the first difference."""
    if lava_out.shape != ours.shape:
        return f"{name}: shapes differ, Lava {lava_out.shape} vs neurodeploy {ours.shape}"
    bad = np.argwhere(lava_out != ours)
    if len(bad) == 0:
        return None
    t, j = bad[0]
    return (f"{name}: {len(bad)} output spikes differ, first at step {t + 1} neuron {j} "
            f"(Lava {lava_out[t, j]}, neurodeploy {ours[t, j]})")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=100, help="samples (batch size for ours)")
    ap.add_argument("--steps", type=int, default=100, help="time steps per sample")
    ap.add_argument("--lava-samples", type=int, default=None,
                    help="samples Lava runs back to back (default: all); fewer are "
                         "extrapolated from the median steady run")
    ap.add_argument("--verify", type=int, default=3, help="samples re-run in a fresh Lava net")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of our simulator")
    ap.add_argument("--input-dtype", default="int64", choices=("int64", "uint8", "bool"),
                    help="dtype of the input raster handed to our simulator")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lava-python", default=None, help="interpreter of the Lava environment")
    ap.add_argument("--out", default=None, help="write the figures to this JSON file")
    args = ap.parse_args(argv)
    lava_samples = min(args.lava_samples or args.samples, args.samples)
    verify = min(args.verify, args.samples)

    python = find_lava_python(args.lava_python)
    if python is None:
        print("bench_vs_lava: no Lava environment; build it with `bash tools/lava_env.sh` or "
              "pass --lava-python", file=sys.stderr)
        return 2
    graph = build_graph(args.seed, args.steps)
    inputs = make_inputs(args.seed, args.samples, args.steps, 784, dtype=args.input_dtype)
    load_before = os.getloadavg()

    print(f"bench_vs_lava: 784-128-10 CUBA, {args.samples} samples x {args.steps} steps; "
          f"Lava: {lava_samples} back to back + {verify} fresh", flush=True)
    try:
        lava = run_lava(python, graph, inputs, lava_samples, verify)
    except (RuntimeError, OSError) as exc:
        print(f"bench_vs_lava: {exc}", file=sys.stderr)
        return 2
    ours_times, ours_out = time_ours(graph, inputs, args.repeats)

    # ------------------------------------------------------------------ equality of the spikes
    problems = []
    for k in range(verify):
        problems.append(compare(f"sample {k}", lava["arrays"][f"verify{k}.output"], ours_out[k]))
    stream = inputs[:lava_samples].reshape(1, lava_samples * args.steps, -1)
    problems.append(compare(f"{lava_samples} samples back to back",
                            lava["arrays"]["timing.output"], simulate(graph, stream)[0]))
    problems = [p for p in problems if p]

    # ---------------------------------------------------------------------------------- figures
    timing = next(c for c in lava["header"]["cases"] if c["name"] == "timing")
    first, steady = timing["run_s"][0], timing["run_s"][1:]
    steady_median = float(np.median(steady)) if steady else float("nan")
    lava_steady_total = steady_median * args.samples
    lava_total = first + steady_median * (args.samples - 1)
    ours_best = min(ours_times)
    ours_median = float(np.median(ours_times))
    neuron_updates = args.samples * args.steps * sum(g.neurons.size for g in graph.layers)
    figures = {
        "network": "784-128-10 CUBA, int8 weights, iDecay 1024, vDecay 128, vThMant 1500",
        "samples": args.samples, "steps": args.steps, "input_rate": 0.1, "seed": args.seed,
        "lava_samples_run": lava_samples,
        "lava_first_run_s": first,
        "lava_steady_run_median_s": steady_median,
        "lava_steady_run_min_s": min(steady) if steady else None,
        "lava_steady_run_max_s": max(steady) if steady else None,
        "lava_steady_total_s": lava_steady_total,
        "lava_total_with_first_run_s": lava_total,
        "lava_subprocess_wall_s": lava["wall_s"],
        "ours_batched_s": ours_times,
        "ours_best_s": ours_best,
        "ours_median_s": ours_median,
        "ours_input_dtype": args.input_dtype,
        "speedup_steady": lava_steady_total / ours_best,
        "speedup_steady_ours_median": lava_steady_total / ours_median,
        "speedup_with_first_run": lava_total / ours_best,
        "lava_neuron_updates_per_s": neuron_updates / lava_steady_total,
        "ours_neuron_updates_per_s": neuron_updates / ours_best,
        "spikes_equal": not problems,
        "spike_checks": {"fresh_samples": verify, "back_to_back_steps": lava_samples * args.steps},
        "output_spikes_ours": int(ours_out.sum()),
        "versions": lava["header"].get("versions"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "load_average_before": list(load_before),
                    "load_average_after": list(os.getloadavg())},
    }
    print(f"  Lava   first run({args.steps}) incl. compile: {first:8.3f} s")
    print(f"  Lava   steady run({args.steps}), median:       {steady_median:8.3f} s "
          f"(x {args.samples} samples = {lava_steady_total:.2f} s)")
    print(f"  ours   {args.samples} samples batched, best of {args.repeats}: {ours_best:8.3f} s "
          f"(all: {', '.join(f'{t:.3f}' for t in ours_times)}; {args.input_dtype} input)")
    print(f"  speed-up: {figures['speedup_steady']:.0f}x steady state "
          f"({figures['speedup_steady_ours_median']:.0f}x on our median), "
          f"{figures['speedup_with_first_run']:.0f}x including Lava's first run")
    print(f"  load average: {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"  spikes: {'identical' if not problems else 'DIFFERENT'} on {verify} fresh samples "
          f"and {lava_samples * args.steps} back-to-back steps "
          f"({figures['output_spikes_ours']} output spikes in the batch)")
    for p in problems:
        print(f"  MISMATCH {p}")
    if args.out:
        write_json(args.out, figures)
        print(f"  wrote {args.out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
