"""Deployment accuracy over a whole data set, in batches, with a progress bar.

Memory stays flat in the number of samples: inputs are fetched batch by batch (a callable) and only
per-sample predictions and running totals are kept; :func:`batch_size_for` bounds one batch's arrays
for long inputs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from neurodeploy.errors import DataError, ResourceError
from neurodeploy.hardware.structure import BYTES_PER_ELEMENT
from neurodeploy.sim.simulator import Simulator
from neurodeploy.train.config import available_memory

#: Bytes one simulator batch may use for its per-step arrays (input events, rasters of every layer).
BATCH_MEMORY_BUDGET = 256 * 2**20
#: Most samples per simulator call (more gives no speed on a CPU).
MAX_BATCH = 256


def batch_size_for(sim: Simulator, steps: int, budget: int = BATCH_MEMORY_BUDGET,
                   max_batch: int = MAX_BATCH) -> int:
    """Samples per simulator call so that the arrays of one batch over ``steps`` steps stay within
    ``budget`` bytes (at least 1, at most ``max_batch``)."""
    inputs = 1
    for v in sim.input_shape:
        inputs *= int(v)
    neurons = inputs + sum(int(st.neurons) for st in sim.structure)
    per_sample = max(1, neurons * int(steps) * BYTES_PER_ELEMENT)
    memory = available_memory()
    if memory is not None and per_sample > memory:
        raise ResourceError(f"one sample over {int(steps)} steps ({neurons} neurons and inputs) "
                            f"needs {per_sample / 2**30:.3g} GiB, more than this machine's "
                            f"{memory / 2**30:.0f} GiB; simulate fewer steps")
    return int(max(1, min(max_batch, budget // per_sample)))


def simulate_accuracy(
    graph: Any,
    inputs: Any,
    labels: Any,
    batch_size: int = 256,
    *,
    profile: Any = None,
    extra_steps: int = 0,
    jitter: Any = None,
    seed: int = 0,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Simulate ``graph`` on every sample and return accuracy and activity figures.

    Args:
        graph: a :class:`~neurodeploy.lower.graph.DeployGraph`.
        inputs: spike array ``[N, T, *input_shape]`` (numpy, memory-mapped or torch), or a
            callable ``inputs(start, stop)`` returning the spikes of samples ``start:stop``.
        labels: integer labels ``[N]``.
        batch_size: samples per simulator call.
        profile: profile (name, path or object); default ``graph.profile``.
        extra_steps: steps run after the input (zero input).
        jitter: spike-time jitter spec (see :meth:`Simulator.run`); batch ``i`` uses seed
            ``seed + i``.
        progress: show a tqdm bar; ``None`` shows it only when stderr is a terminal.

    Returns:
        A dict with ``accuracy``, ``samples``, ``correct``, ``predictions`` (int64 ``[N]``),
        ``spikes_per_neuron`` (by layer), ``mean_spikes_per_neuron``, ``synops_per_sample``,
        ``energy_per_sample_j``, ``neuron_updates_per_sample``, ``u_overflows``,
        ``v_overflows`` and ``acc_overflows`` (totals by layer).
    """
    from tqdm.auto import tqdm

    labels = np.asarray(labels).reshape(-1)
    n = int(labels.shape[0])
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    get: Callable[[int, int], Any]
    if callable(inputs):
        get = inputs
    else:
        if int(inputs.shape[0]) != n:
            raise DataError(f"{int(inputs.shape[0])} input samples but {n} labels")

        def get(start: int, stop: int) -> Any:
            return inputs[start:stop]

    sim = Simulator(graph, profile)
    show = progress if progress is not None else sys.stderr.isatty()
    names = sim.layer_names
    preds = np.zeros(n, dtype=np.int64)
    spikes = np.zeros(len(names), dtype=np.int64)
    sizes = None
    spiking = None
    synops = 0
    energy = 0.0
    updates = 0
    u_ovf = np.zeros(len(names), dtype=np.int64)
    v_ovf = np.zeros(len(names), dtype=np.int64)
    a_ovf = np.zeros(len(names), dtype=np.int64)
    with tqdm(total=n, disable=not show, unit="sample", desc="simulate") as bar:
        for i, start in enumerate(range(0, n, batch_size)):
            stop = min(start + batch_size, n)
            res = sim.run(get(start, stop), extra_steps=extra_steps, record=(), jitter=jitter,
                          seed=seed + i)
            if res.batch_size != stop - start:
                raise DataError(f"inputs({start}, {stop}) returned {res.batch_size} samples")
            preds[start:stop] = res.predictions
            spikes += res.spike_counts.sum(axis=0)
            synops += int(res.synops.sum())
            energy += float(res.energy_j.sum())
            updates = int(res.neuron_updates.sum())
            u_ovf += res.u_overflows.sum(axis=0)
            v_ovf += res.v_overflows.sum(axis=0)
            a_ovf += res.acc_overflows.sum(axis=0)
            sizes, spiking = res.layer_sizes, res.spiking
            bar.update(stop - start)
    correct = int(np.sum(preds == labels))
    spn = {name: float(spikes[j] / (sizes[j] * n)) if n else 0.0
           for j, name in enumerate(names)} if sizes else {}
    counted = [j for j, s in enumerate(spiking or []) if s]
    mean_spn = float(spikes[counted].sum() / (sum(sizes[j] for j in counted) * n)) \
        if counted and n else 0.0
    return {
        "accuracy": correct / n if n else 0.0,
        "samples": n,
        "correct": correct,
        "predictions": preds,
        "spikes_per_neuron": spn,
        "mean_spikes_per_neuron": mean_spn,
        "synops_per_sample": synops / n if n else 0.0,
        "energy_per_sample_j": energy / n if n else 0.0,
        "neuron_updates_per_sample": updates,
        "u_overflows": {name: int(u_ovf[j]) for j, name in enumerate(names)},
        "v_overflows": {name: int(v_ovf[j]) for j, name in enumerate(names)},
        "acc_overflows": {name: int(a_ovf[j]) for j, name in enumerate(names)},
    }
