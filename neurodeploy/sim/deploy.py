"""Predict on-chip behaviour of a checkpoint: lower it, simulate the test set, report.

:func:`simulate_checkpoint` is what ``neurodeploy simulate`` and the pipeline call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from neurodeploy.hardware import fit_report, load_profile
from neurodeploy.lower.graph import DeployGraph
from neurodeploy.lower.inputs import encode_inputs
from neurodeploy.lower.lowering import lower_model
from neurodeploy.models import SpikingNet
from neurodeploy.sim.accuracy import simulate_accuracy
from neurodeploy.sim.simulator import Simulator

CALIBRATION_SAMPLES = 512


@dataclass
class Deployment:
    """Simulated deployment of one network on one profile."""

    profile: str
    graph: DeployGraph
    float_accuracy: float
    accuracy: float
    samples: int
    input_steps: int
    latency_steps: int
    figures: dict[str, Any]
    fit: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        figs = {k: v for k, v in self.figures.items() if k != "predictions"}
        return {"profile": self.profile, "float_accuracy": self.float_accuracy,
                "deployed_accuracy": self.accuracy, "samples": self.samples,
                "input_steps": self.input_steps, "latency_steps": self.latency_steps,
                "figures": figs, "fit": self.fit, "warnings": self.warnings,
                "scales": self.graph.metadata.get("scales", [])}

    def table(self) -> str:
        """A fixed-width text table of per-layer figures."""
        f = self.figures
        head = f"{'layer':<12}{'spikes/neuron':>15}{'u wraps':>10}{'v sat.':>10}{'acc wraps':>11}"
        rows = [head, "-" * len(head)]
        for name, spn in f["spikes_per_neuron"].items():
            rows.append(f"{name:<12}{spn:>15.3f}{f['u_overflows'][name]:>10}"
                        f"{f['v_overflows'][name]:>10}{f['acc_overflows'][name]:>11}")
        rows += [
            f"profile {self.profile}: deployed accuracy {100 * self.accuracy:.2f}% "
            f"(float {100 * self.float_accuracy:.2f}%) on {self.samples} samples, "
            f"{self.input_steps} input steps + {self.latency_steps} latency",
            f"SynOps/sample {f['synops_per_sample']:.0f}; neuron updates/sample "
            f"{f['neuron_updates_per_sample']}; energy/sample {1e6 * f['energy_per_sample_j']:.3f} µJ; "
            f"cores {self.fit['total_cores']}",
        ]
        rows += [f"warning: {w}" for w in self.warnings]
        return "\n".join(rows)


@torch.no_grad()
def float_accuracy(model: SpikingNet, x: torch.Tensor, y: torch.Tensor, steps: int | None = None,
                   batch_size: int = 256) -> float:
    """Accuracy of the float model with the deployment's input spikes (same encoding draws)."""
    model.eval()
    enc = model.spec.encoding_config
    gen = torch.Generator().manual_seed(enc.seed)
    t = steps or model.spec.steps
    seq = torch.from_numpy(encode_inputs(x, t, enc, gen)).transpose(0, 1).to(torch.float32)
    if enc.kind == "direct":
        seq = seq / (2**enc.bits - 1)
    correct = 0
    for i in range(0, seq.shape[1], batch_size):
        out = model.readout(model.forward_sequence(seq[:, i : i + batch_size]))
        correct += int((out.argmax(1) == y[i : i + batch_size]).sum())
    return correct / max(len(y), 1)


def simulate_graph(graph: DeployGraph, x: torch.Tensor, y: torch.Tensor, *, steps: int | None = None,
                   jitter: Any = None, seed: int = 0, batch_size: int = 256,
                   progress: bool | None = None) -> dict[str, Any]:
    """Bit-accurate accuracy and activity of ``graph`` on samples ``x`` with labels ``y``.

    ``steps`` overrides the number of input steps (a latency budget); the simulator then runs
    ``steps + latency`` steps so the read-out sees every input step.
    """
    t = steps or graph.steps
    gen = torch.Generator().manual_seed(int(graph.encoding.get("seed", 0)))
    inputs = encode_inputs(x, t, graph.encoding, gen)
    latency = Simulator(graph).latency
    return simulate_accuracy(graph, inputs, y.numpy(), batch_size, extra_steps=latency,
                             jitter=jitter, seed=seed, progress=progress)


def simulate_checkpoint(model: SpikingNet, profile: str, dataset: Any, *, steps: int | None = None,
                        limit: int | None = None, weight_bits: int | None = None, jitter: Any = None,
                        seed: int = 0, progress: bool | None = None) -> Deployment:
    """Lower ``model`` for ``profile`` (calibrated on training samples) and simulate the test split.

    Args:
        model: trained network.
        profile: profile name or path.
        dataset: a :class:`neurodeploy.data.Dataset`.
        steps: input steps (default: the trained ``T``).
        limit: simulate only the first ``limit`` test samples.
        weight_bits: weight precision override (bits).
        jitter: spike-time jitter spec for the simulator (see :mod:`neurodeploy.arith.jitter`).
        seed: jitter seed.
    """
    p = load_profile(profile)
    graph = lower_model(model, p, dataset.x_train[:CALIBRATION_SAMPLES], weight_bits=weight_bits)
    x, y = dataset.x_test, dataset.y_test
    if limit is not None:
        x, y = x[:limit], y[:limit]
    figs = simulate_graph(graph, x, y, steps=steps, jitter=jitter, seed=seed, progress=progress)
    fit = fit_report(graph, p).to_dict()
    return Deployment(
        profile=p.name, graph=graph, float_accuracy=float_accuracy(model, x, y, steps),
        accuracy=float(figs["accuracy"]), samples=int(figs["samples"]),
        input_steps=steps or graph.steps, latency_steps=Simulator(graph).latency, figures=figs,
        fit=fit, warnings=list(graph.metadata.get("warnings", [])))
