"""Constraint-aware fine-tuning of a TTFS network (docs/methods.md §6.5) and the latency windows.

Every constraint acts inside the forward pass while fine-tuning (weight fake quantisation,
spike-time grid, jitter; see :mod:`neurodeploy.ttfs.constraints`), so gradient descent through
the spike times adapts to it. Reduced latency is set before fine-tuning by shortening the windows
(:func:`apply_latency`); values above a window clip (the neuron fires at ``t_min``) and the network
is then fine-tuned with the windows fixed.

Each fine-tuning reports, before and after: the float accuracy under the constraints, the deployed
accuracy of the integer time-grid program (:mod:`neurodeploy.ttfs.deploy`, same weight bits and time
grid, same jitter), spikes per neuron and the latency.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from neurodeploy.errors import ConfigError
from neurodeploy.ttfs.constraints import TTFSConstraints
from neurodeploy.ttfs.deploy import build_program, program_accuracy
from neurodeploy.ttfs.mapping import calibrate_windows
from neurodeploy.ttfs.network import TTFSNetwork
from neurodeploy.ttfs.train import TTFSTrainConfig, evaluate, train_ttfs

#: Training samples the latency windows are computed from (the first ones).
CALIBRATION_SAMPLES = 4000


@dataclass
class TTFSFinetuneConfig:
    """Fine-tuning settings: ``epochs`` of Adam at ``lr`` with ``batch_size`` samples per step,
    ``seed`` for batch order and jitter; ``threads`` CPU threads (``None``: torch's setting);
    ``activity_penalty`` the L1 activity penalty weight (see :class:`TTFSTrainConfig`)."""

    epochs: int = 1
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0
    threads: int | None = None
    activity_penalty: float = 0.0

    def train_config(self) -> TTFSTrainConfig:
        return TTFSTrainConfig(
            epochs=self.epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            seed=self.seed,
            grow_windows=False,
            lr_decay=1.0,
            threads=self.threads,
            activity_penalty=self.activity_penalty,
        )

    def to_dict(self) -> dict[str, Any]:
        self.train_config()  # validates
        return asdict(self)


def windows_for_budget(
    net: TTFSNetwork, x: torch.Tensor, budget: float, iterations: int = 30
) -> TTFSNetwork:
    """Windows meeting a total latency budget ``1 + sum L_n <= budget`` (input-window units).

    The mapped windows (``1.5 x`` the maxima) are kept if they fit; otherwise the windows come from
    the largest activation quantile ``q`` (head-room 1) that fits, found by bisection.
    """
    full, _ = calibrate_windows(net, x, 1.0, 1.5)
    if full.latency <= budget:
        return full
    lo, hi, best = 0.0, 1.0, None
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        cand, _ = calibrate_windows(net, x, mid, 1.0)
        if cand.latency <= budget:
            lo, best = mid, cand
        else:
            hi = mid
    if best is None:
        raise ConfigError(
            f"no activation quantile gives a TTFS latency within {budget:g} (input-window units); "
            f"the smallest tried needs {cand.latency:.3g}"
        )
    return best


def apply_latency(net: TTFSNetwork, x: torch.Tensor, constraints: TTFSConstraints) -> TTFSNetwork:
    """``net`` with the windows the constraints ask for: quantile ``q`` of the positive activations
    (head-room 1), or the largest quantile meeting a latency budget; unchanged otherwise."""
    xs = x[:CALIBRATION_SAMPLES]
    if constraints.latency_quantile is not None:
        return calibrate_windows(net, xs, float(constraints.latency_quantile), 1.0)[0]
    if constraints.latency_budget is not None:
        return windows_for_budget(net, xs, float(constraints.latency_budget))
    return copy.deepcopy(net)


def measure(
    net: TTFSNetwork, x: torch.Tensor, y: torch.Tensor, constraints: TTFSConstraints, seed: int = 0
) -> dict[str, Any]:
    """Float accuracy under ``constraints`` and deployed accuracy of the integer program (B1 only;
    ``None`` for alpha1), spikes per neuron and latency, on ``(x, y)``."""
    ev = evaluate(net, x, y, constraints, seed=seed)
    out = {
        "accuracy": ev["accuracy"],
        "loss": ev["loss"],
        "spikes_per_neuron": ev["spikes_per_neuron"],
        "clipped_fraction": ev["clipped_fraction"],
        "latency": net.latency,
        "windows": net.windows.tolist(),
        "deployed_accuracy": None,
        "deployed_spikes_per_neuron": None,
    }
    if net.variant == "b1":
        prog = build_program(net, constraints)
        dep = program_accuracy(prog, x, y, constraints.time_jitter, seed=seed)
        out.update(
            deployed_accuracy=dep["accuracy"],
            deployed_spikes_per_neuron=dep["spikes_per_neuron"],
            latency_steps=prog.latency_steps,
            time_bits=prog.time_bits,
            weight_bits=prog.weight_bits,
        )
    return out


@dataclass
class TTFSFinetuneResult:
    """Fine-tuning of one network under one set of constraints."""

    network: TTFSNetwork
    constraints: TTFSConstraints
    before: dict[str, Any]
    after: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "constraints": self.constraints.to_dict(),
            "before": self.before,
            "after": self.after,
            "history": self.history,
            "seconds": self.seconds,
        }


def finetune_ttfs(
    net: TTFSNetwork,
    dataset: Any,
    constraints: TTFSConstraints | None = None,
    config: TTFSFinetuneConfig | None = None,
    log: Callable[[str], None] | None = None,
) -> TTFSFinetuneResult:
    """Fine-tune a copy of ``net`` on ``dataset`` (``x_train``/``y_train``/``x_test``/``y_test``)
    under ``constraints``; measure on the test split before and after. ``net`` is not changed."""
    c = constraints or TTFSConstraints()
    cfg = config or TTFSFinetuneConfig()
    start = time.perf_counter()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    tuned = apply_latency(net, dataset.x_train, c)
    before = measure(tuned, dataset.x_test, dataset.y_test, c, cfg.seed)
    history = train_ttfs(tuned, dataset.x_train, dataset.y_train, cfg.train_config(), c, log=log)
    after = measure(tuned, dataset.x_test, dataset.y_test, c, cfg.seed)
    return TTFSFinetuneResult(tuned.eval(), c, before, after, history, time.perf_counter() - start)
