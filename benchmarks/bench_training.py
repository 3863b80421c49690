"""Training speed and peak memory of neurodeploy's spiking layers against snnTorch, SpikingJelly and Norse.

Networks (all libraries build the same layers; inputs are one fixed Bernoulli(0.2) spike sequence
``[T, B, ...]`` shared by every library, labels random; loss = cross-entropy of the time-averaged
output currents; Adam, lr 1e-3; one training step = forward, backward, optimiser step):

- ``B1``: MLP 784-512-10, LIF hidden layer, ``T = 25``, batch 128.
- ``B2``: conv3x3(1->32)-LIF-avgpool2-conv3x3(32->64)-LIF-avgpool2-fc(3136->10) on 28x28,
  ``T = 8``, batch 64.
- ``B3`` (recurrent): 784-256-10 with a recurrent LIF layer, ``I[t] = W x[t] + R S[t-1]``
  (all-to-all recurrent weights ``R``), ``T = 25``, batch 128. The feed-forward part ``W x`` runs on
  all steps at once; the recurrence runs one step at a time in every library.

Neuron semantics: LIF ``M[t] = 0.9 U[t-1] + I[t]``, threshold ``V = 1``, spike ``S = 1[M > V]``,
reset by subtraction ``U = M - V S`` with the reset's gradient detached, fast-sigmoid surrogate
``1 / (1 + 25 |x|)^2``. Differences that remain:

- snnTorch 1.0 ``Leaky(reset_mechanism="subtract")`` subtracts the reset of step ``t-1`` after
  the decay (``U[t] = 0.9 U[t-1] + I[t] - V S[t-1]``, not ``0.9 (U - V S)``), and its spike is
  ``1[U > V]`` on the post-input potential: the same operations per step, one reset term undecayed.
- SpikingJelly 2.0 ``LIFNode(tau=10, decay_input=False, v_reset=None, detach_reset=True)`` is
  exactly this LIF; its fast-sigmoid surrogate is a custom autograd function written here (its
  own surrogates have no fast sigmoid), run through its multi-step ``torch`` back-end.
- Norse 1.1 ``LIFBoxCell`` stepped over time (``dt * tau_mem_inv = 0.1``, ``reset_subtract``, SuperSpike ``alpha = 25``)
  is the decay-input form ``M = 0.9 U + 0.1 I`` and its reset gradient is not detached.

Rows: ``neurodeploy`` is the trainer's default path (``build_model`` with the fused neuron);
``neurodeploy-loop`` the same model on the step-by-step reference loop (``impl="loop"``);
``torch-loop`` a plain PyTorch loop of the same LIF. In B3 neurodeploy has no recurrent layer, so
its row is a step loop over ``neurodeploy.nn.functional`` and ``threshold_spike``.

Method: every (network, library, repeat) runs in its own subprocess with ``--threads`` torch
threads; the repeats are interleaved across libraries (repeat 1 of every library, then repeat 2,
...). A subprocess builds the model and data, runs ``--warmup`` steps, then times ``--steps``
steps: steps per wall-clock second and steps per CPU second of the process (``time.process_time``;
with one thread the two agree on an idle machine, and CPU time is not inflated by other processes
taking turns on the cores). With ``--keep-freed-memory`` every library's process keeps freed
memory for reuse (:mod:`neurodeploy.train.allocator`, which ``neurodeploy train`` applies to its
own process); without it all run on glibc's defaults.
``x`` columns are neurodeploy's speed divided by the row's. Peak memory is the growth of the
process's peak resident set size
(``ru_maxrss``) from just before the first training step to the end: torch's CPU allocator keeps
no statistics, so this counts every allocation made while training (activations saved for
backward, gradients, optimiser state), rounded to pages, so it includes one-time costs of the
first steps (loading compiled kernels, the allocator's first pools). ``step MiB`` is the peak of
the timed steps alone: the kernel's peak resident size is reset after the warm-up steps (Linux
``/proc/self/clear_refs``) and its growth over the resident size at that moment is reported.
``process MiB`` is the whole process's peak resident set size at the end (the imported libraries'
code and data included). ``--one-time-costs-first`` (a diagnostic, not the benchmark's figure)
runs one step of a two-sample batch in every process before ``peak MiB``'s starting point, so the
difference between the two runs' ``peak MiB`` is each library's one-time cost of its first step. The
1-minute load average is read before and after every measurement. Medians over the repeats are
reported, with ratios to the neurodeploy row measured in the same run.

Usage::

    pip install -e ".[bench]"   # see pyproject.toml; peers installed without their CUDA deps
    python benchmarks/bench_training.py --repeats 3 --out bench_training.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

BENCHES = {
    "B1": {"steps": 25, "batch": 128},
    "B2": {"steps": 8, "batch": 64},
    "B3": {"steps": 25, "batch": 128},
}
LIBRARIES = ("neurodeploy", "neurodeploy-loop", "snntorch", "spikingjelly", "norse", "torch-loop")
BETA, V_TH, K = 0.9, 1.0, 25.0


# ---------------------------------------------------------------------- shared pieces
def _fast_sigmoid_fn():
    import torch

    class FastSigmoid(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return (x > 0).to(x.dtype)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g / (1 + K * x.abs()) ** 2

    return FastSigmoid.apply


class _SeqNet:
    """Feed-forward stages on ``[T, B, ...]`` with time folded into the batch for stateless layers."""

    def __init__(self, stages, stateful):
        import torch

        self.module = torch.nn.ModuleList(stages)
        self.stateful = stateful

    def __call__(self, seq):
        h = seq
        for stage, is_neuron in zip(self.module, self.stateful, strict=True):
            if is_neuron:
                h = stage(h)
            else:
                t, b = h.shape[:2]
                out = stage(h.reshape(t * b, *h.shape[2:]))
                h = out.reshape(t, b, *out.shape[1:])
        return h.mean(0)


def _layers(bench: str, neuron):
    """(stages, is_neuron flags) of B1/B2 with ``neuron()`` making a multi-step LIF module."""
    from torch import nn

    if bench == "B1":
        stages = [nn.Flatten(), nn.Linear(784, 512), neuron(), nn.Linear(512, 10)]
        return stages, [False, False, True, False]
    stages = [nn.Conv2d(1, 32, 3, padding=1), neuron(), nn.AvgPool2d(2), nn.Conv2d(32, 64, 3, padding=1),
              neuron(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(64 * 7 * 7, 10)]
    return stages, [False, True, False, False, True, False, False, False]


class _StepLoop:
    """A multi-step wrapper around a library's single-step neuron ``step(i, state) -> (s, state)``."""

    def __init__(self, step, init):
        self.step, self.init = step, init

    def __call__(self, seq):
        import torch

        state = self.init(seq[0])
        out = []
        for t in range(seq.shape[0]):
            s, state = self.step(seq[t], state)
            out.append(s)
        return torch.stack(out)


def _torch_lif_step(spike_fn):
    def step(i, u):
        m = BETA * u + i
        s = spike_fn(m - V_TH)
        return s, m - V_TH * s.detach()

    return step


# ---------------------------------------------------------------------- models per library
def build(bench: str, lib: str):
    """``(parameters, forward(seq) -> logits, reset())`` for one network and library."""
    import torch
    from torch import nn

    if bench == "B3":
        return _build_recurrent(lib)
    if lib in ("neurodeploy", "neurodeploy-loop"):
        from neurodeploy.models import ModelSpec, build_model
        from neurodeploy.nn.neurons import set_impl

        neuron = {"model": "lif", "tau": 10.0, "threshold": V_TH, "reset": "subtract", "detach_reset": True,
                  "surrogate": {"name": "fast_sigmoid", "k": K}}
        if bench == "B1":
            spec = ModelSpec(arch="mlp", input_shape=(1, 28, 28), hidden=[512], steps=25, neuron=neuron)
        else:
            spec = ModelSpec(arch="convnet", input_shape=(1, 28, 28), hidden=[32, 64], pool="avg", kernel=3,
                             steps=8, neuron=neuron)
        net = build_model(spec)
        set_impl(net, "loop" if lib == "neurodeploy-loop" else "fused")
        return net.parameters(), lambda seq: net.readout(net.forward_sequence(seq)), lambda: None
    if lib == "snntorch":
        import snntorch as snn
        from snntorch import surrogate

        grad = surrogate.fast_sigmoid(slope=K)

        def neuron():
            leaky = snn.Leaky(beta=BETA, threshold=V_TH, spike_grad=grad, reset_mechanism="subtract")
            return _Wrap(leaky, _StepLoop(lambda i, mem: leaky(i, mem), lambda x: leaky.init_leaky()))

        stages, flags = _layers(bench, neuron)
        net = _SeqNet(stages, flags)
        return net.module.parameters(), net, lambda: None
    if lib == "spikingjelly":
        from spikingjelly.activation_based import functional, neuron

        spike_fn = _fast_sigmoid_fn()

        class SJSurrogate(nn.Module):
            def forward(self, x):
                return spike_fn(x)

        def make():
            return neuron.LIFNode(tau=1 / (1 - BETA), decay_input=False, v_threshold=V_TH, v_reset=None,
                                  surrogate_function=SJSurrogate(), detach_reset=True, step_mode="m")

        stages, flags = _layers(bench, make)
        net = _SeqNet(stages, flags)
        return net.module.parameters(), net, lambda: functional.reset_net(net.module)
    if lib == "norse":
        from norse.torch import LIFBoxCell, LIFBoxParameters
        from norse.torch.functional.reset import reset_subtract

        p = LIFBoxParameters(tau_mem_inv=torch.as_tensor(100.0), v_th=torch.as_tensor(V_TH),
                             v_reset=torch.as_tensor(0.0), method="super", alpha=torch.as_tensor(K),
                             reset_method=reset_subtract)

        def make_norse():
            cell = LIFBoxCell(p, dt=0.001)
            return _Wrap(cell, _StepLoop(cell, lambda x: None))

        stages, flags = _layers(bench, make_norse)
        net = _SeqNet(stages, flags)
        return net.module.parameters(), net, lambda: None
    if lib == "torch-loop":
        step = _torch_lif_step(_fast_sigmoid_fn())
        stages, flags = _layers(bench, lambda: _Wrap(None, _StepLoop(step, torch.zeros_like)))
        net = _SeqNet(stages, flags)
        return net.module.parameters(), net, lambda: None
    raise SystemExit(f"error: unknown library {lib!r}")


def _wrap_cls():
    from torch import nn

    class Wrap(nn.Module):
        def __init__(self, inner, loop):
            super().__init__()
            if inner is not None:
                self.inner = inner
            self._loop = loop

        def forward(self, x):
            return self._loop(x)

    return Wrap


def _Wrap(inner, loop):  # noqa: N802 - a class made on first use, so that torch imports lazily
    return _wrap_cls()(inner, loop)


def _build_recurrent(lib: str):
    import torch
    from torch import nn

    fc, rec, out = nn.Linear(784, 256), nn.Linear(256, 256, bias=False), nn.Linear(256, 10)
    params = [*fc.parameters(), *rec.parameters(), *out.parameters()]
    reset = lambda: None  # noqa: E731
    if lib.startswith("neurodeploy"):
        from neurodeploy.nn import functional as F
        from neurodeploy.nn.surrogate import make_surrogate, threshold_spike

        sur = make_surrogate({"name": "fast_sigmoid", "k": K})
        v = torch.tensor(V_TH)

        def step(i, u):
            m = F.lif_charge(u, i, BETA)
            s, _ = threshold_spike(m, v, sur)
            return s, F.reset(m, s.detach(), v, "subtract")
    elif lib == "snntorch":
        import snntorch as snn
        from snntorch import surrogate

        leaky = snn.Leaky(beta=BETA, threshold=V_TH, spike_grad=surrogate.fast_sigmoid(slope=K),
                          reset_mechanism="subtract")

        def step(i, mem):
            return leaky(i, mem)
    elif lib == "spikingjelly":
        from spikingjelly.activation_based import functional, neuron

        spike_fn = _fast_sigmoid_fn()

        class SJSurrogate(nn.Module):
            def forward(self, x):
                return spike_fn(x)

        node = neuron.LIFNode(tau=1 / (1 - BETA), decay_input=False, v_threshold=V_TH, v_reset=None,
                              surrogate_function=SJSurrogate(), detach_reset=True, step_mode="s")
        reset = lambda: functional.reset_net(node)  # noqa: E731

        def step(i, _):
            return node(i), None
    elif lib == "norse":
        from norse.torch import LIFBoxCell, LIFBoxParameters
        from norse.torch.functional.reset import reset_subtract

        cell = LIFBoxCell(LIFBoxParameters(tau_mem_inv=torch.as_tensor(100.0), v_th=torch.as_tensor(V_TH),
                                           v_reset=torch.as_tensor(0.0), method="super",
                                           alpha=torch.as_tensor(K), reset_method=reset_subtract), dt=0.001)

        def step(i, state):
            return cell(i, state)
    else:
        step = _torch_lif_step(_fast_sigmoid_fn())

    def forward(seq):
        t_steps, b = seq.shape[:2]
        drive = fc(seq.reshape(t_steps * b, -1)).reshape(t_steps, b, -1)
        s = torch.zeros_like(drive[0])
        state = None if lib in ("norse", "spikingjelly") else torch.zeros_like(drive[0])
        outs = []
        for t in range(t_steps):
            s, state = step(drive[t] + rec(s), state)
            outs.append(s)
        return out(torch.stack(outs).reshape(t_steps * b, -1)).reshape(t_steps, b, -1).mean(0)

    return params, forward, reset


# ---------------------------------------------------------------------- one measurement
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> int | None:
    """Reset the kernel's peak resident set size (Linux ``clear_refs`` 5) and return the current
    resident size in KiB, or ``None`` where this cannot be done."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _status_kib("VmRSS")
    except OSError:
        return None


def _train_step(bench: str, lib: str, threads: int, keep_memory: bool, batch: int | None = None):
    """One training step of ``bench`` with ``lib`` as a function (model, data and optimiser built);
    ``batch`` samples instead of the network's batch where given."""
    import torch

    if keep_memory:
        from neurodeploy.train.allocator import keep_freed_memory

        keep_freed_memory()

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = BENCHES[bench]
    gen = torch.Generator().manual_seed(1)
    batch = cfg["batch"] if batch is None else batch
    seq = (torch.rand(cfg["steps"], batch, 1, 28, 28, generator=gen) < 0.2).float()
    labels = torch.randint(0, 10, (batch,), generator=gen)
    params, forward, reset = build(bench, lib)
    opt = torch.optim.Adam(list(params), lr=1e-3)

    def train_step():
        reset()
        loss = torch.nn.functional.cross_entropy(forward(seq), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return train_step


def profile(bench: str, lib: str, steps: int, warmup: int, threads: int, keep_memory: bool) -> None:
    """Print torch.profiler's operations by their own CPU time over ``steps`` steps (after ``warmup``)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    train_step = _train_step(bench, lib, threads, keep_memory)
    for _ in range(warmup):
        train_step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            train_step()
    print(f"{bench} {lib}: {steps} steps, {threads} thread(s); times are totals over the steps")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


def measure(bench: str, lib: str, steps: int, warmup: int, threads: int, keep_memory: bool,
            one_time_first: bool = False) -> dict[str, Any]:
    """Train ``steps`` steps of ``bench`` with ``lib`` in this process; steps/s and peak memory.
    ``one_time_first``: one step of a two-sample batch runs before the peak is read."""
    import gc

    if one_time_first:
        _train_step(bench, lib, threads, keep_memory, batch=2)()
    train_step = _train_step(bench, lib, threads, keep_memory)
    gc.collect()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    load0 = os.getloadavg()[0]
    for _ in range(warmup):
        train_step()
    gc.collect()
    steady0 = _reset_peak()
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(steps):
        loss = train_step()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    steady = None if steady0 is None else (_status_kib("VmHWM") - steady0) / 1024
    return {"bench": bench, "library": lib, "steps_per_s": steps / seconds,
            "steps_per_cpu_s": steps / cpu_seconds, "peak_mib": (rss1 - rss0) / 1024, "step_peak_mib": steady,
            "process_peak_mib": rss1 / 1024,
            "load_before": load0, "load_after": os.getloadavg()[0], "loss": loss}


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("torch", "snntorch", "spikingjelly", "norse"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _available(lib: str) -> str | None:
    """Why ``lib`` cannot run here (``None`` when it can)."""
    module = {"snntorch": "snntorch", "spikingjelly": "spikingjelly.activation_based", "norse": "norse.torch"}
    if lib not in module:
        return None
    probe = subprocess.run([sys.executable, "-c", f"import {module[lib]}"], capture_output=True, text=True)
    return None if probe.returncode == 0 else (probe.stderr.strip().splitlines() or ["import failed"])[-1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--benches", default="B1,B2,B3")
    ap.add_argument("--libraries", default=",".join(LIBRARIES))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10, help="timed training steps per measurement")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--keep-freed-memory", action="store_true",
                    help="every library's process keeps freed memory (glibc mallopt, as `neurodeploy train` does)")
    ap.add_argument("--one-time-costs-first", action="store_true",
                    help="diagnostic: one step of a two-sample batch runs in every process before its peak is read, "
                         "so `peak MiB` leaves out each library's one-time costs (loading compiled kernels)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--profile", nargs=2, metavar=("BENCH", "LIB"),
                    help="print torch.profiler's table of --steps steps of one network and library, and stop")
    ap.add_argument("--worker", nargs=2, metavar=("BENCH", "LIB"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.profile:
        profile(*args.profile, args.steps, args.warmup, args.threads, args.keep_freed_memory)
        return 0
    if args.worker:
        print(json.dumps(measure(*args.worker, args.steps, args.warmup, args.threads, args.keep_freed_memory,
                                 args.one_time_costs_first)))
        return 0
    benches = [b for b in args.benches.split(",") if b]
    libs = [lib for lib in args.libraries.split(",") if lib]
    skipped = {lib: why for lib in libs if (why := _available(lib))}
    libs = [lib for lib in libs if lib not in skipped]
    runs: list[dict[str, Any]] = []
    for rep in range(args.repeats):
        for bench in benches:
            for lib in libs:
                cmd = [sys.executable, __file__, "--worker", bench, lib, "--steps", str(args.steps),
                       "--warmup", str(args.warmup), "--threads", str(args.threads)]
                if args.keep_freed_memory:
                    cmd.append("--keep-freed-memory")
                if args.one_time_costs_first:
                    cmd.append("--one-time-costs-first")
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
                    print(f"{bench} {lib}: failed: {tail}", file=sys.stderr)
                    continue
                rec = json.loads(proc.stdout.strip().splitlines()[-1])
                rec["repeat"] = rep
                runs.append(rec)
                print(f"[{rep + 1}/{args.repeats}] {bench} {lib:17s} {rec['steps_per_s']:7.2f} steps/s "
                      f"{rec['steps_per_cpu_s']:7.2f} steps/cpu-s "
                      f"{rec['peak_mib']:8.1f} MiB  load {rec['load_before']:.2f}->{rec['load_after']:.2f}",
                      file=sys.stderr)
    summary: dict[str, dict[str, Any]] = {}
    for bench in benches:
        rows = {}
        for lib in libs:
            mine = [r for r in runs if r["bench"] == bench and r["library"] == lib]
            if mine:
                rows[lib] = {"steps_per_s": statistics.median(r["steps_per_s"] for r in mine),
                             "steps_per_cpu_s": statistics.median(r["steps_per_cpu_s"] for r in mine),
                             "peak_mib": statistics.median(r["peak_mib"] for r in mine),
                             "step_peak_mib": (statistics.median(r["step_peak_mib"] for r in mine)
                                               if all(r.get("step_peak_mib") is not None for r in mine) else None),
                             "process_peak_mib": statistics.median(r["process_peak_mib"] for r in mine),
                             "n": len(mine)}
        base = rows.get("neurodeploy")
        for row in rows.values():
            if base:
                row["neurodeploy_speedup"] = base["steps_per_s"] / row["steps_per_s"]
                row["neurodeploy_speedup_cpu"] = base["steps_per_cpu_s"] / row["steps_per_cpu_s"]
        summary[bench] = rows
    loads = [r["load_before"] for r in runs] + [r["load_after"] for r in runs]
    result = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads},
              "versions": _versions(), "settings": vars(args) | {"worker": None}, "skipped": skipped,
              "load_1min": {"min": min(loads, default=0.0), "max": max(loads, default=0.0),
                            "median": statistics.median(loads) if loads else 0.0},
              "summary": summary, "runs": runs}
    print(f"load average (1 min) during timing: median {result['load_1min']['median']:.2f}, "
          f"range {result['load_1min']['min']:.2f}-{result['load_1min']['max']:.2f}; "
          f"{args.threads} torch thread(s); freed memory kept: {args.keep_freed_memory}")
    for bench, rows in summary.items():
        print(f"\n{bench}  (T={BENCHES[bench]['steps']}, batch {BENCHES[bench]['batch']})")
        print(f"{'library':18s} {'steps/s':>8s} {'x':>6s} {'steps/cpu-s':>12s} {'x':>6s} {'peak MiB':>9s} "
              f"{'step MiB':>9s} {'process MiB':>12s}")
        for lib, row in rows.items():
            step_peak = row.get("step_peak_mib")
            print(f"{lib:18s} {row['steps_per_s']:8.2f} {row.get('neurodeploy_speedup', float('nan')):6.2f} "
                  f"{row['steps_per_cpu_s']:12.2f} {row.get('neurodeploy_speedup_cpu', float('nan')):6.2f} "
                  f"{row['peak_mib']:9.1f} {step_peak if step_peak is not None else float('nan'):9.1f} "
                  f"{row['process_peak_mib']:12.1f}")
    for lib, why in skipped.items():
        print(f"skipped {lib}: {why}")
    if args.out:
        from neurodeploy.atomic import write_json

        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
