"""Training step of a convolutional SpikingNet in channels-last memory against standard memory.

Both arms train the same network in one process, step by step in alternation (so that the machine's
other load hits both alike): ``standard`` is the stage loop on standard (NCHW) memory, ``default`` is
``SpikingNet.forward_sequence`` (channels-last memory, ``neurodeploy/nn/conv_layout.py``). The
network is ``bench_training.py``'s B2 (conv3x3(1->32)-LIF-avgpool2-conv3x3(32->64)-LIF-avgpool2-fc10,
T = 8, batch 64) unless ``--spec`` gives another model spec (JSON). Reports the median CPU time per
step of each arm and their ratio, and the load average.

    python benchmarks/bench_conv_layout.py --steps 8 [--keep-freed-memory] [--monitor]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

B2_SPEC = {"arch": "convnet", "input_shape": [1, 28, 28], "hidden": [32, 64], "pool": "avg", "kernel": 3,
           "steps": 8, "neuron": {"model": "lif", "tau": 10.0, "threshold": 1.0, "reset": "subtract",
                                  "detach_reset": True, "surrogate": {"name": "fast_sigmoid", "k": 25.0}}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", default=None, help="model spec as JSON (default: B2)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per arm")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--keep-freed-memory", action="store_true", help="glibc keeps freed memory (as `train` does)")
    ap.add_argument("--monitor", action="store_true", help="firing-rate monitor on (as during `train`)")
    args = ap.parse_args(argv)
    if args.keep_freed_memory:
        from neurodeploy.train.allocator import keep_freed_memory

        keep_freed_memory()
    from neurodeploy.models import build_model
    from neurodeploy.nn import SpikingNeuron

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = build_model(json.loads(args.spec) if args.spec else B2_SPEC)
    for m in net.modules():
        if isinstance(m, SpikingNeuron):
            m.monitor = m.track_rate = args.monitor
    gen = torch.Generator().manual_seed(1)
    seq = (torch.rand(net.spec.steps, args.batch, *net.spec.input_shape, generator=gen) < 0.2).float()
    labels = torch.randint(0, net.spec.num_classes, (args.batch,), generator=gen)

    def standard(s: torch.Tensor) -> torch.Tensor:
        h = s
        for stage in net.stages:
            if isinstance(stage, SpikingNeuron):
                h = stage(h)
            else:
                t, b = h.shape[:2]
                out = stage(h.reshape(t * b, *h.shape[2:]))
                h = out.reshape(t, b, *out.shape[1:])
        return h

    arms = {"standard": standard, "default": net.forward_sequence}
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step(forward) -> float:
        start = time.process_time()
        loss = torch.nn.functional.cross_entropy(net.readout(forward(seq)), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.process_time() - start

    for forward in arms.values():  # warm-up
        step(forward)
    load0 = os.getloadavg()[0]
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(args.steps):
        for name, forward in arms.items():
            times[name].append(step(forward))
    med = {name: statistics.median(v) for name, v in times.items()}
    for name in arms:
        print(f"{name:9s} {1000 * med[name]:7.1f} ms/step (CPU time, median of {args.steps})")
    print(f"speed-up of the default path: {med['standard'] / med['default']:.2f}x; "
          f"load {load0:.2f}->{os.getloadavg()[0]:.2f}; {args.threads} thread(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
