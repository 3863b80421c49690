"""Speed of neurodeploy's bit-accurate simulator against Lava 0.10's CPU fixed-point simulator.

Two networks (``--network mlp``, ``convnet`` or ``all``, the default), each run on the same
Bernoulli(0.1) input spikes (rate coding) by both simulators in one invocation of this script, so
every ratio compares two measurements taken on one machine at one time:

* ``mlp``: 784-128-10 CUBA (random int8 weights, iDecay 1024, vDecay 128, vThMant 1500), built in
  Lava from raw Dense/LIF processes;
* ``convnet``: 1x28x28 -> conv16 3x3 -> conv32 3x3 stride 2 -> fc10 (neurodeploy's ``convnet``
  as it lowers without pooling, which netx lacks; random int8 weights, same decays, vThMant
  300/1500/1500), written with the netx exporter and loaded in Lava with ``netx.hdf5.Network``
  (Lava's own Conv processes).

* Lava (in the reference environment of ``tools/lava_env.sh``, through
  ``tools/lava_reference.py`` in a subprocess): the samples are fed back to back from one
  RingBuffer and run as consecutive ``run(RunSteps(steps))`` calls, each timed. The first call
  includes compilation and process start-up; the others are the steady state. On the ConvNet
  Lava runs ``--conv-lava-samples`` samples (default 10) and the total is extrapolated from its
  median steady run.
* neurodeploy: ``Simulator(graph).run`` on all samples as one batch (one untimed warm-up run,
  then ``--repeats`` timed runs, half before the Lava subprocess and half after it, each
  including ``Simulator`` construction). The input raster is what the chip input encoder
  (``neurodeploy.lower.inputs.encode_inputs``) emits for rate-coded samples of value 0.1: the
  default path, in its dtype (uint8 for binary spikes); ``--input-dtype int64`` / ``uint8`` /
  ``bool`` converts it, to compare.

The speed-up is Lava's median steady ``run(steps)`` times the number of samples over our best
batched time; the JSON also has it over our median time, with Lava's first run included, and the
load average of the machine before and after (the figures of a shared machine need it).

While timing, both sides are checked for the same output spikes: Lava's whole back-to-back run
against our simulator on the same concatenated input, and ``--verify`` samples run in Lava from a
fresh network against the corresponding samples of the batched run.

Usage::

    python benchmarks/bench_vs_lava.py [--network all] [--samples 100] [--steps 100] [--out bench.json]

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
from neurodeploy.lower.graph import Conv2d, Dense, DeployGraph, Flatten, NeuronGroup

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


def build_conv_graph(seed: int, steps: int, idecay: int = 1024, vdecay: int = 128,
                     vth: tuple[int, int, int] = (300, 1500, 1500)) -> DeployGraph:
    """The ConvNet case: 1x28x28 -> conv16 3x3 (stride 1, padding 1) -> conv32 3x3 (stride 2,
    padding 1) -> fc10, as neurodeploy's ``convnet`` without pooling lowers (netx has no pooling
    layer); uniform int8 weights in [-128, 127], no bias, netx units."""
    rng = np.random.default_rng(seed)

    def group(shape: tuple[int, ...], threshold: int) -> NeuronGroup:
        return NeuronGroup(shape=shape, current_decay=idecay, voltage_decay=vdecay,
                           threshold=threshold, bias=np.zeros(int(np.prod(shape)), np.int64))

    layers = [
        Conv2d(weight=rng.integers(-128, 128, (16, 1, 3, 3)), neurons=group((16, 28, 28), vth[0]),
               stride=(1, 1), padding=(1, 1), name="conv1"),
        Conv2d(weight=rng.integers(-128, 128, (32, 16, 3, 3)),
               neurons=group((32, 14, 14), vth[1]), stride=(2, 2), padding=(1, 1), name="conv2"),
        Flatten(name="flat"),
        Dense(weight=rng.integers(-128, 128, (10, 32 * 14 * 14)), neurons=group((10,), vth[2]),
              name="fc"),
    ]
    return DeployGraph(profile="loihi", family="loihi", input_shape=(1, 28, 28), layers=layers,
                       steps=steps, readout={"kind": "spike_count"})


def make_inputs(seed: int, samples: int, steps: int, n_in: int | tuple[int, ...],
                p: float = 0.1, dtype: str = "encoder") -> np.ndarray:
    """Bernoulli(p) input spikes ``(samples, steps, *n_in)``: the chip input encoder's rate coding
    of samples whose every value is ``p``, in the encoder's dtype (``"encoder"``) or converted to
    ``dtype``."""
    import torch

    from neurodeploy.lower.inputs import encode_inputs

    shape = (n_in,) if isinstance(n_in, int) else tuple(n_in)
    x = torch.full((samples, *shape), float(p))
    raster = encode_inputs(x, steps, {"kind": "rate", "seed": seed + 1})
    return raster if dtype == "encoder" else raster.astype(dtype)


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
    samples, steps = inputs.shape[:2]
    req = lava.Request()
    with tempfile.TemporaryDirectory() as tmp:
        stream = inputs[:lava_samples].reshape(lava_samples * steps, *inputs.shape[2:])
        if all(layer.kind == "dense" for layer in graph.layers):
            layers = lava_layers(graph)
            req.add_raw("timing", stream.reshape(lava_samples * steps, -1), layers, record=(),
                        chunk_steps=steps)
            for k in range(verify):
                req.add_raw(f"verify{k}", inputs[k].reshape(steps, -1), layers, record=())
        else:  # convolutions: the graph as a netx file (Lava's own conv processes)
            from neurodeploy.export.netx import export_netx

            net = Path(tmp) / "net.net"
            export_netx(graph, net)
            req.add_netx("timing", net, stream, record=(), chunk_steps=steps)
            for k in range(verify):
                req.add_netx(f"verify{k}", net, inputs[k], record=())
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


def time_ours(graph: DeployGraph, inputs: np.ndarray, repeats: int,
              warm_up: bool = True) -> tuple[list, np.ndarray]:
    """Seconds of ``repeats`` batched runs (each including ``Simulator`` construction, i.e.
    loading the profile) after one untimed warm-up run (one-time costs of the process, as
    Lava's first run is left out of its steady state), and the output spikes of the last."""
    if warm_up:
        simulate(graph, inputs)
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = simulate(graph, inputs)
        times.append(time.perf_counter() - t0)
    return times, out


def compare(name: str, lava_out: np.ndarray, ours: np.ndarray) -> str | None:
    """``None`` if the rasters are equal, else a one-line description of the first difference."""
    lava_out = lava_out.reshape(lava_out.shape[0], -1)
    ours = ours.reshape(ours.shape[0], -1)
    if lava_out.shape != ours.shape:
        return f"{name}: shapes differ, Lava {lava_out.shape} vs neurodeploy {ours.shape}"
    bad = np.argwhere(lava_out != ours)
    if len(bad) == 0:
        return None
    t, j = bad[0]
    return (f"{name}: {len(bad)} output spikes differ, first at step {t + 1} neuron {j} "
            f"(Lava {lava_out[t, j]}, neurodeploy {ours[t, j]})")


NETWORKS = {
    "mlp": ("784-128-10 CUBA, int8 weights, iDecay 1024, vDecay 128, vThMant 1500",
            build_graph, 784),
    "convnet": ("ConvNet 1x28x28-conv16(3x3)-conv32(3x3, stride 2)-fc10 CUBA, int8 weights, "
                "iDecay 1024, vDecay 128, vThMant 300/1500/1500", build_conv_graph, (1, 28, 28)),
}


def bench_network(name: str, python: Path, args: argparse.Namespace) -> dict:
    """Lava and our simulator on network ``name`` (interleaved: half our timed runs before the
    Lava subprocess, half after); returns the figures (``problems``: spike mismatches)."""
    description, build, n_in = NETWORKS[name]
    samples = args.samples if name == "mlp" or args.conv_samples is None else args.conv_samples
    lava_samples = args.lava_samples if name == "mlp" else args.conv_lava_samples
    lava_samples = min(lava_samples or samples, samples)
    verify = min(args.verify, samples)
    graph = build(args.seed, args.steps)
    inputs = make_inputs(args.seed, samples, args.steps, n_in, dtype=args.input_dtype)
    load_before = os.getloadavg()
    print(f"bench_vs_lava [{name}]: {description}; {samples} samples x {args.steps} steps; "
          f"Lava: {lava_samples} back to back + {verify} fresh", flush=True)
    first_half = args.repeats // 2
    ours_times, ours_out = time_ours(graph, inputs, first_half)
    lava = run_lava(python, graph, inputs, lava_samples, verify)
    more, out = time_ours(graph, inputs, args.repeats - first_half, warm_up=False)
    ours_times += more
    ours_out = out if out is not None else ours_out

    # ------------------------------------------------------------------ equality of the spikes
    problems = []
    for k in range(verify):
        problems.append(compare(f"sample {k}", lava["arrays"][f"verify{k}.output"], ours_out[k]))
    stream = inputs[:lava_samples].reshape(1, lava_samples * args.steps, *inputs.shape[2:])
    problems.append(compare(f"{lava_samples} samples back to back",
                            lava["arrays"]["timing.output"], simulate(graph, stream)[0]))
    problems = [p for p in problems if p]

    # ---------------------------------------------------------------------------------- figures
    timing = next(c for c in lava["header"]["cases"] if c["name"] == "timing")
    first, steady = timing["run_s"][0], timing["run_s"][1:]
    steady_median = float(np.median(steady)) if steady else float("nan")
    lava_steady_total = steady_median * samples
    lava_total = first + steady_median * (samples - 1)
    ours_best = min(ours_times)
    ours_median = float(np.median(ours_times))
    neurons = sum(int(np.prod(layer.neurons.shape)) for layer in graph.layers
                  if getattr(layer, "neurons", None) is not None)
    neuron_updates = samples * args.steps * neurons
    figures = {
        "network": description,
        "samples": samples, "steps": args.steps, "input_rate": 0.1, "seed": args.seed,
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
        "ours_input_dtype": str(inputs.dtype),
        "speedup_steady": lava_steady_total / ours_best,
        "speedup_steady_ours_median": lava_steady_total / ours_median,
        "speedup_with_first_run": lava_total / ours_best,
        "lava_neuron_updates_per_s": neuron_updates / lava_steady_total,
        "ours_neuron_updates_per_s": neuron_updates / ours_best,
        "spikes_equal": not problems,
        "problems": problems,
        "spike_checks": {"fresh_samples": verify, "back_to_back_steps": lava_samples * args.steps},
        "output_spikes_ours": int(ours_out.sum()),
        "versions": lava["header"].get("versions"),
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
    }
    print(f"  Lava   first run({args.steps}) incl. compile: {first:8.3f} s")
    print(f"  Lava   steady run({args.steps}), median:       {steady_median:8.3f} s "
          f"(x {samples} samples = {lava_steady_total:.2f} s)")
    print(f"  ours   {samples} samples batched, best of {args.repeats}: {ours_best:8.3f} s "
          f"(all: {', '.join(f'{t:.3f}' for t in ours_times)}; {inputs.dtype} input)")
    print(f"  speed-up: {figures['speedup_steady']:.0f}x steady state "
          f"({figures['speedup_steady_ours_median']:.0f}x on our median), "
          f"{figures['speedup_with_first_run']:.0f}x including Lava's first run")
    print(f"  load average: {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"  spikes: {'identical' if not problems else 'DIFFERENT'} on {verify} fresh samples "
          f"and {lava_samples * args.steps} back-to-back steps "
          f"({figures['output_spikes_ours']} output spikes in the batch)", flush=True)
    for p in problems:
        print(f"  MISMATCH {p}")
    return figures


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--network", default="all", choices=("all", *NETWORKS),
                    help="which network(s) to run (default: all, one after the other)")
    ap.add_argument("--samples", type=int, default=100, help="samples (batch size for ours)")
    ap.add_argument("--conv-samples", type=int, default=None,
                    help="samples of the ConvNet (default: --samples)")
    ap.add_argument("--steps", type=int, default=100, help="time steps per sample")
    ap.add_argument("--lava-samples", type=int, default=None,
                    help="samples Lava runs back to back (default: all); fewer are "
                         "extrapolated from the median steady run")
    ap.add_argument("--conv-lava-samples", type=int, default=10,
                    help="samples Lava runs back to back on the ConvNet (default 10)")
    ap.add_argument("--verify", type=int, default=3, help="samples re-run in a fresh Lava net")
    ap.add_argument("--repeats", type=int, default=6,
                    help="timed runs of our simulator (half before Lava, half after)")
    ap.add_argument("--input-dtype", default="encoder", choices=("encoder", "int64", "uint8", "bool"),
                    help="dtype of the input raster handed to our simulator (default: the "
                         "encoder's own, uint8 for spikes; others convert it, to compare)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lava-python", default=None, help="interpreter of the Lava environment")
    ap.add_argument("--out", default=None, help="write the figures to this JSON file")
    args = ap.parse_args(argv)

    python = find_lava_python(args.lava_python)
    if python is None:
        print("bench_vs_lava: no Lava environment; build it with `bash tools/lava_env.sh` or "
              "pass --lava-python", file=sys.stderr)
        return 2
    names = list(NETWORKS) if args.network == "all" else [args.network]
    load_before = os.getloadavg()
    figures: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                 "python": platform.python_version(),
                                 "load_average_before": list(load_before)}}
    for name in names:
        try:
            figures[name] = bench_network(name, python, args)
        except (RuntimeError, OSError) as exc:
            print(f"bench_vs_lava: {exc}", file=sys.stderr)
            return 2
    figures["machine"]["load_average_after"] = list(os.getloadavg())
    print("speed-ups (Lava steady state / our best): " + ", ".join(
        f"{name} {figures[name]['speedup_steady']:.0f}x" for name in names))
    if args.out:
        write_json(args.out, figures)
        print(f"  wrote {args.out}")
    return 1 if any(figures[name]["problems"] for name in names) else 0


if __name__ == "__main__":
    sys.exit(main())
