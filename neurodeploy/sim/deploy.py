"""Predict on-chip behaviour of a checkpoint: lower it, simulate the test set, report.

:func:`simulate_checkpoint` is what ``neurodeploy simulate`` and the pipeline call.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from neurodeploy.hardware import HardwareProfile, fit_report
from neurodeploy.lower.graph import DeployGraph
from neurodeploy.lower.inputs import encode_sample_inputs
from neurodeploy.lower.lowering import graph_from_fakequant
from neurodeploy.models import SpikingNet
from neurodeploy.models.graph_net import FORMAT as GRAPH_CHECKPOINT_FORMAT
from neurodeploy.models.graph_net import GraphCheckpoint, load_graph_checkpoint
from neurodeploy.nn.encoding import encode
from neurodeploy.quantize.fakequant import Constraints, FakeQuantNet, fake_quantize, is_sequence
from neurodeploy.quantize.graph_model import GraphModel
from neurodeploy.sim.accuracy import batch_size_for, simulate_accuracy
from neurodeploy.sim.simulator import Simulator

CALIBRATION_SAMPLES = 512
#: Bytes one float pass over a batch (the encoder's draws, every layer's activity over all steps, the
#: calibration statistics) may use; long inputs get smaller batches and fewer calibration samples.
FLOAT_MEMORY_BUDGET = 1024 * 2**20
_FLOAT_BYTES_PER_NEURON_STEP = 16


def load_deployable(path: str | Path) -> Any:
    """A checkpoint file for deployment: a graph checkpoint (any float graph,
    :mod:`neurodeploy.models.graph_net`; its ``build()`` gives a
    :class:`~neurodeploy.quantize.graph_model.GraphModel`) or a template network's
    :class:`~neurodeploy.train.checkpoint.Checkpoint`; either has ``build()``, ``meta`` and ``spec``."""
    from neurodeploy.train.checkpoint import load_checkpoint

    if is_graph_checkpoint(path):
        return GraphModelCheckpoint(load_graph_checkpoint(path))
    return load_checkpoint(path)


def is_graph_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a graph checkpoint file (by its format tag)."""
    if not Path(path).is_file():  # the checkpoint loader names what it is (a pipe is never read)
        return False
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols
            warnings.simplefilter("ignore")
            payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception:  # the checkpoint loader names what is wrong with the file
        return False
    return isinstance(payload, dict) and payload.get("format") == GRAPH_CHECKPOINT_FORMAT


class GraphModelCheckpoint:
    """A graph checkpoint as the deployment path reads checkpoints: ``build()`` (a
    :class:`GraphModel`), ``meta``, ``spec`` and ``save_model`` (the same file kind with a
    fine-tuned model's tensors)."""

    def __init__(self, ck: GraphCheckpoint):
        self.graph_checkpoint = ck
        self.meta = ck.meta
        self.spec = self.build().spec

    def build(self) -> GraphModel:
        return GraphModel.from_checkpoint(self.graph_checkpoint)


@torch.no_grad()
def activity_per_step(model: SpikingNet | GraphModel) -> int:
    """Values one sample produces per time step: its input plus every stage's output (one step of one
    zero sample through the network)."""
    if isinstance(model, GraphModel):
        return sum(int(torch.tensor(shape).prod()) for shape in model.net.shapes.values())
    counts = [1]
    for v in model.spec.input_shape:
        counts[0] *= int(v)
    hooks = [stage.register_forward_hook(lambda _m, _i, out: counts.append(int(out.numel())))
             for stage in model.stages]
    was_training = model.training
    try:
        model.eval()
        model.forward_sequence(torch.zeros((1, 1, *model.spec.input_shape)))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return sum(counts)


def float_batch_size(model: SpikingNet, steps: int | None = None, cap: int = 256) -> int:
    """Samples per float pass so that one pass over ``steps`` steps (default: the model's) stays within
    :data:`FLOAT_MEMORY_BUDGET` (at least 1, at most ``cap``)."""
    per_sample = activity_per_step(model) * int(steps or model.spec.steps) * _FLOAT_BYTES_PER_NEURON_STEP
    return int(max(1, min(cap, FLOAT_MEMORY_BUDGET // max(per_sample, 1))))


def calibration_set(model: SpikingNet, x_train: torch.Tensor) -> torch.Tensor:
    """The training samples the scales are calibrated on: the first :data:`CALIBRATION_SAMPLES`, or fewer
    when that many would not fit :data:`FLOAT_MEMORY_BUDGET` over the model's steps (calibration
    runs them in one pass). Every caller (simulate, quantize, fine-tune, netx export) uses this set, so
    they all choose the same scales."""
    return x_train[:float_batch_size(model, cap=CALIBRATION_SAMPLES)]


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
        figs = {k: v for k, v in self.figures.items() if k not in ("predictions", "warnings")}
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
    """Accuracy of the float model with the deployment's input events (each sample encoded from its
    own seed, exactly as :func:`simulate_graph` encodes it), batch by batch."""
    model.eval()
    enc = model.spec.encoding_config
    t = steps or model.spec.steps
    batch_size = min(batch_size, float_batch_size(model, t))
    correct = 0
    for i in range(0, len(y), batch_size):
        xb = x[i : i + batch_size]
        if is_sequence(xb, model.spec.input_shape):  # input events [B, T, ...] (a temporal task)
            seq = xb[:, :t].transpose(0, 1).to(torch.float32)
            if enc.kind == "direct" and enc.bits is not None:
                seq = seq / (2**enc.bits - 1)
        elif enc.kind == "direct" and enc.bits is None:
            seq = encode(xb, t, enc)
        else:
            seq = torch.from_numpy(encode_sample_inputs(xb, t, enc, start=i)).transpose(0, 1).to(torch.float32)
            if enc.kind == "direct":
                seq = seq / (2**enc.bits - 1)
        out = model.readout(model.forward_sequence(seq))
        correct += int((out.argmax(1) == y[i : i + batch_size]).sum())
    return correct / max(len(y), 1)


def graph_profile(graph: DeployGraph) -> HardwareProfile:
    """The profile a graph was lowered for, with the constraints it was lowered under (state
    width) applied."""
    return graph.resolved_profile()


def simulate_graph(graph: DeployGraph, x: torch.Tensor, y: torch.Tensor, *, jitter: Any = None, seed: int = 0,
                   batch_size: int | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Bit-accurate accuracy and activity of ``graph`` on samples ``x`` with labels ``y``.

    The simulator runs ``graph.steps`` input steps plus the chip's latency (zero input), so the
    read-out sees every input step; ``jitter`` (default: the constraint the graph was lowered
    under) displaces input and hidden spikes, seeded with ``seed``.

    Samples are encoded batch by batch as the simulator asks for them, each from its own seed
    (sample ``i`` of ``x`` always gets the same input events), and the batch size (default: from
    :func:`~neurodeploy.sim.accuracy.batch_size_for`) keeps one batch's arrays within a fixed memory
    budget whatever the number of steps: memory does not grow with the number of samples.
    """
    profile = graph_profile(graph)
    if jitter is None:
        jitter = graph.quant.constraints.jitter if graph.quant is not None else \
            graph.metadata.get("constraints", {}).get("jitter")
    sim = Simulator(graph, profile)
    latency = sim.latency
    if batch_size is None:
        batch_size = batch_size_for(sim, graph.steps + latency)

    def inputs(start: int, stop: int) -> Any:
        if is_sequence(x, graph.input_shape):  # input events [B, T, ...] (a temporal task)
            # as they are: the simulator refuses values that are not its events (a fraction,
            # a value beyond the profile's range) and keeps the rest in its narrow dtype
            return x[start:stop, :graph.steps]
        return encode_sample_inputs(x[start:stop], graph.steps, graph.encoding, start=start)

    figs = simulate_accuracy(graph, inputs, y.numpy(), batch_size, profile=profile, extra_steps=latency,
                             jitter=jitter, seed=seed, progress=progress)
    figs["warnings"] = unpublished_overflows(figs, profile)
    return figs


def _warnings(graph: DeployGraph, figs: dict[str, Any]) -> list[str]:
    """A deployment's warnings: the lowering's (stored in the graph), then the simulation's."""
    return [*graph.metadata.get("warnings", []), *figs["warnings"]]


def unpublished_overflows(figs: dict[str, Any], profile: Any) -> list[str]:
    """One warning per layer whose current or voltage left the profile's width where its rule is
    ``"none"``: the simulator keeps the exact value, as the vendor's software does (Sinabs on
    Speck), but the chip's own rule there is not published, so the chip may differ."""
    st = profile.state
    out = []
    for key, rule, bits, what in (("u_overflows", st.current_overflow, st.current_bits, "synaptic current"),
                                  ("v_overflows", st.voltage_overflow, st.voltage_bits, "membrane potential")):
        if rule != "none":
            continue
        for layer, count in figs.get(key, {}).items():
            if count:
                out.append(f"{layer}: the {what} left {profile.name}'s {bits}-bit range at {count} neuron step(s); "
                           "the simulator keeps exact values there, as the vendor's software does, but the chip's "
                           "rule is not published, so the chip may differ (lower the weights or raise the threshold)")
    return out


def deploy_model(model: SpikingNet, profile: str | HardwareProfile, dataset: Any, *,
                 constraints: Constraints | None = None, scales: list[float] | None = None,
                 limit: int | None = None, seed: int = 0, progress: bool | None = None,
                 fq: FakeQuantNet | None = None) -> Deployment:
    """Lower ``model`` for ``profile`` and simulate ``dataset``'s test split.

    Args:
        model: trained network.
        profile: profile name, path or object.
        dataset: a :class:`neurodeploy.data.Dataset` (its first training samples calibrate the
            scales unless ``scales`` are given).
        constraints: weight bits, jitter, latency budget (``max_steps``), state bits.
        scales: per-layer scales to reuse (a quantized checkpoint's), instead of calibrating.
        limit: simulate only the first ``limit`` test samples.
        seed: jitter seed.
        fq: an already built fake-quant network of ``model`` (e.g. after fine-tuning).
    """
    c = constraints or Constraints()
    if fq is None:
        fq = fake_quantize(model, profile, calibration_set(model, dataset.x_train), c, scales=scales)
    graph = graph_from_fakequant(fq, metadata={"source": {"arch": model.spec.arch, "neuron": model.spec.neuron},
                                               "dataset": getattr(dataset, "name", None)})
    x, y = dataset.x_test, dataset.y_test
    if limit is not None:
        x, y = x[:limit], y[:limit]
    figs = simulate_graph(graph, x, y, seed=seed, progress=progress)
    p = fq.profile
    return Deployment(
        profile=p.name, graph=graph, float_accuracy=float_accuracy(model, x, y, fq.input_steps),
        accuracy=float(figs["accuracy"]), samples=int(figs["samples"]), input_steps=graph.steps,
        latency_steps=fq.latency, figures=figs, fit=fit_report(graph, p).to_dict(),
        warnings=_warnings(graph, figs))


def deployment_from_graph(graph: DeployGraph, dataset: Any, float_acc: float, *, limit: int | None = None,
                          seed: int = 0, progress: bool | None = None) -> Deployment:
    """Simulate a stored deployment graph again (e.g. a finished run's ``finetuned.npz``): the same
    integers, scales and their origins as when it was written, so the same figures."""
    x, y = dataset.x_test, dataset.y_test
    if limit is not None:
        x, y = x[:limit], y[:limit]
    profile = graph_profile(graph)
    figs = simulate_graph(graph, x, y, seed=seed, progress=progress)
    return Deployment(
        profile=profile.name, graph=graph, float_accuracy=float(float_acc), accuracy=float(figs["accuracy"]),
        samples=int(figs["samples"]), input_steps=graph.steps, latency_steps=Simulator(graph, profile).latency,
        figures=figs, fit=fit_report(graph, profile).to_dict(),
        warnings=_warnings(graph, figs))


def simulate_checkpoint(model: SpikingNet, profile: str, dataset: Any, *, steps: int | None = None,
                        limit: int | None = None, weight_bits: int | None = None, jitter: Any = None,
                        seed: int = 0, progress: bool | None = None) -> Deployment:
    """:func:`deploy_model` with the constraints given one by one (``steps`` = latency budget)."""
    c = Constraints(weight_bits=weight_bits, jitter=jitter, max_steps=steps)
    return deploy_model(model, profile, dataset, constraints=c, limit=limit, seed=seed, progress=progress)


def lower_checkpoint(checkpoint: str | Path, *, profile: str | HardwareProfile | None = None,
                     dataset: str | None = None, data_root: str | None = None,
                     weight_bits: int | None = None) -> DeployGraph:
    """The deployment graph of a checkpoint: a quantized checkpoint's stored profile, constraints
    and scales when it has them (and ``profile`` is unset or the same), else ``profile``
    (default ``loihi2``) with scales calibrated on the training samples of ``dataset`` that
    :func:`calibration_set` picks (default: the dataset it was trained on). ``weight_bits``
    overrides the weight precision (bits) and recalibrates."""
    from neurodeploy.quantize.record import deployment_settings
    from neurodeploy.train.checkpoint import checkpoint_dataset

    ck = load_deployable(checkpoint)
    model = ck.build()
    name, constraints, scales = deployment_settings(ck.meta, profile, weight_bits=weight_bits)
    calib = None
    if scales is None:
        calib = calibration_set(model, checkpoint_dataset(ck, dataset, data_root).x_train)
    fq = fake_quantize(model, name or "loihi2", calib, constraints, scales=scales)
    return graph_from_fakequant(fq, metadata={
        "source": {"checkpoint": str(checkpoint), "arch": model.spec.arch,
                   "neuron": model.spec.neuron}})
