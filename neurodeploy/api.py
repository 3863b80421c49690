"""The public Python API: the whole pipeline as a handful of verbs.

``import neurodeploy as nd`` gives these names (imported on first use, so ``import neurodeploy``
stays cheap). The verbs follow torch.ao's quantization workflow:

* :func:`fit` trains a float model with surrogate gradients;
* :func:`prepare` wraps a trained float model in the chip's integer program for a profile
  (calibrated scales, constraints) — a :class:`~neurodeploy.quantize.fakequant.FakeQuantNet`
  that still trains;
* :func:`finetune` trains through that integer program;
* :func:`convert` writes out the integers it computes with as a
  :class:`~neurodeploy.lower.graph.DeployGraph`;
* :func:`simulate` runs a deployment graph bit-accurately on a dataset's test split;
* :func:`export_to` writes a graph (chip formats such as Lava netx) or a float model (NIR, ONNX).

A ten-line script::

    import neurodeploy as nd

    data = nd.load_dataset("digits")
    model = nd.build_model(nd.ModelSpec(input_shape=(1, 8, 8), hidden=[64], steps=8,
                                        encoding={"kind": "rate"}))
    nd.fit(model, data, nd.TrainConfig(epochs=3), out_dir="runs/api")
    qat = nd.prepare(model, "loihi2", data, nd.Constraints(weight_bits=4))
    nd.finetune(qat, data, epochs=1)
    graph = nd.convert(qat)
    print(nd.simulate(graph, data).accuracy)
    nd.export_to(graph, "runs/api/model.net")

``fit`` and ``export_to`` are not called ``train`` and ``export`` because those names are the
subpackages :mod:`neurodeploy.train` and :mod:`neurodeploy.export`.

Every function here is a thin layer over the package's modules; the CLI calls the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from neurodeploy.errors import ConfigError
from neurodeploy.hardware import check_fit
from neurodeploy.lower.graph import DeployGraph
from neurodeploy.models import ModelSpec, SpikingNet, build_model
from neurodeploy.models.graph_net import GraphCheckpoint
from neurodeploy.quantize.constraints import Constraints
from neurodeploy.quantize.fakequant import FakeQuantNet, fake_quantize
from neurodeploy.quantize.finetune import FinetuneConfig
from neurodeploy.quantize.finetune import finetune as _finetune
from neurodeploy.quantize.graph_model import GraphModel
from neurodeploy.sim.deploy import GraphModelCheckpoint, calibration_set, load_deployable, simulate_graph
from neurodeploy.train.checkpoint import Checkpoint
from neurodeploy.train.config import TrainConfig
from neurodeploy.train.trainer import TrainResult, train_model


def fit(model: SpikingNet, dataset: Any, config: TrainConfig | None = None, *,
          out_dir: str | Path = "runs/train", resume: bool = False,
          progress: bool | None = None, **graph_options: Any) -> TrainResult:
    """Train ``model`` in place on ``dataset`` (surrogate gradients, monitor, doctor); the
    checkpoint and ``metrics.jsonl`` go to ``out_dir``. A graph network or a PyTorch module is
    trained by :func:`fit_graph` (``graph_options``: its ``steps``, ``encoding``)."""
    if not isinstance(model, SpikingNet):
        return fit_graph(model, dataset, config, out_dir=out_dir, resume=resume, progress=progress,
                         **graph_options)
    return train_model(model, dataset, config or TrainConfig(), out_dir, resume=resume, progress=progress)


def prepare(model: SpikingNet | GraphModel | Checkpoint | GraphCheckpoint | str | Path, profile: str,
            dataset: Any = None, constraints: Constraints | None = None, *, calibration: torch.Tensor | None = None
            ) -> FakeQuantNet:
    """The chip's integer program of ``model`` for ``profile``, ready to fine-tune or convert.

    Scales are calibrated on the first training samples of ``dataset`` (or on ``calibration``);
    a quantized checkpoint (a path or :class:`Checkpoint`) reuses the scales stored with it when
    the profile and constraints allow, exactly as the CLI does. A graph network (a
    :class:`GraphModel`, a graph checkpoint or its file: merges and recurrent edges) is prepared
    the same way (``docs/graphs.md``).
    """
    scales = None
    if isinstance(model, str | Path):
        model = load_deployable(model)  # a template network's or a graph network's checkpoint
    if isinstance(model, GraphCheckpoint):
        model = GraphModelCheckpoint(model)
    if isinstance(model, Checkpoint | GraphModelCheckpoint):
        from neurodeploy.quantize.record import deployment_settings

        _, stored, scales = deployment_settings(model.meta, profile, **_given(constraints))
        constraints = constraints or stored
        model = model.build()
    if calibration is None and scales is None:
        if dataset is None:
            raise ConfigError("prepare needs a dataset (or calibration samples) to choose the scales")
        calibration = calibration_set(model, dataset.x_train)
    return fake_quantize(model, profile, calibration, constraints, scales=scales)


def _given(constraints: Constraints | None) -> dict[str, Any]:
    if constraints is None:
        return {}
    return {k: v for k, v in constraints.to_dict().items() if v is not None}


def finetune(qat: FakeQuantNet, dataset: Any, *, epochs: int = 2, lr: float = 5e-4, batch_size: int = 64,
             seed: int = 0, progress: bool | None = None) -> list[dict[str, Any]]:
    """Fine-tune the float weights under ``qat`` through the chip's integer arithmetic (in place);
    returns per-epoch records (loss, integer training accuracy, seconds)."""
    return _finetune(qat, dataset, FinetuneConfig(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed),
                     progress=progress)


def convert(qat: FakeQuantNet, *, check: bool = True) -> DeployGraph:
    """The deployment graph holding exactly the integers ``qat`` computes with (checked against
    the profile's resource limits unless ``check`` is false)."""
    from neurodeploy.lower.lowering import graph_from_fakequant

    model = qat.model
    spec = getattr(model, "spec", None)
    meta = {"source": {"arch": spec.arch, "neuron": spec.neuron}} if spec is not None else {}
    return graph_from_fakequant(qat, check=check, metadata=meta)


@dataclass
class Simulation:
    """What :func:`simulate` measured: accuracy on ``samples`` test samples and the figures
    (spikes per neuron, SynOps, energy, overflows per layer, per-sample predictions)."""

    accuracy: float
    samples: int
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def predictions(self) -> list[int]:
        """Predicted class of every simulated sample, in order."""
        return list(self.figures.get("predictions", []))


def simulate(graph: DeployGraph | str | Path, dataset: Any, *, limit: int | None = None, seed: int = 0,
             progress: bool | None = None) -> Simulation:
    """Run ``graph`` (or a saved ``.npz`` graph) bit-accurately on ``dataset``'s test split."""
    if isinstance(graph, str | Path):
        graph = DeployGraph.load(graph)
    x, y = dataset.x_test, dataset.y_test
    if limit is not None:
        x, y = x[:limit], y[:limit]
    figs = simulate_graph(graph, x, y, seed=seed, progress=progress)
    return Simulation(accuracy=float(figs["accuracy"]), samples=len(y), figures=figs)


def export_to(source: Any, path: str | Path, format: str | None = None, **options: Any) -> Path:
    """Write ``source`` to ``path`` and read it back.

    ``format`` defaults from the suffix: ``.net`` (Lava netx, from a loihi-family
    :class:`DeployGraph`), ``.nir`` (NIR, from a float model or checkpoint), ``.onnx`` (ONNX, from
    a float model or checkpoint). A :class:`FakeQuantNet` is converted first for chip formats and
    exported as its float model otherwise.
    """
    path = Path(path)
    fmt = format or {".net": "lava", ".nir": "nir", ".onnx": "onnx"}.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"cannot tell the export format from {path.name!r}; pass format='lava', 'nir' "
                          "or 'onnx'")
    if fmt in CHIP_FORMATS:
        return export_chip(source, path, fmt)
    if fmt == "lava":
        from neurodeploy.export.netx import export_netx

        if isinstance(source, FakeQuantNet):
            source = convert(source)
        if not isinstance(source, DeployGraph):
            raise ConfigError("Lava netx export needs a deployment graph (nd.convert(nd.prepare(...)))")
        check_fit(source)
        return export_netx(source, path, **options).path
    if isinstance(source, FakeQuantNet):
        source = source.model
    if fmt == "nir":
        from neurodeploy.export.nir import export_nir

        return export_nir(source, path, **options).path
    if fmt == "onnx":
        from neurodeploy.export.onnx_export import export_checkpoint_onnx, export_onnx

        if isinstance(source, str | Path):
            return export_checkpoint_onnx(source, path, **options).path
        if isinstance(source, Checkpoint):
            source = source.build()
        return export_onnx(source, path, **options).path
    raise ConfigError(f"unknown export format {fmt!r}; choose lava, lava-process, xylo, nir or onnx")


def import_nir(path: str | Path, *, convention: str | None = None, dt: float | None = None) -> SpikingNet:
    """A NIR file (ours or another library's) as a trainable model; ``convention`` names the
    library that wrote it where the file does not say (see ``neurodeploy import --help``)."""
    from neurodeploy.export.nir_import import import_nir as _import

    return _import(path, convention=convention, dt=dt).checkpoint.build()


# ---------------------------------------------------------------------------------------- graph networks
def fit_graph(model: Any, dataset: Any, config: TrainConfig | None = None, *, out_dir: str | Path = "runs/train",
              resume: bool = False, progress: bool | None = None, steps: int | None = None,
              encoding: Any = None, input_shape: tuple[int, ...] | None = None) -> TrainResult:
    """Train a graph network — a :class:`~neurodeploy.models.graph_net.GraphNet`, a
    :class:`~neurodeploy.graph.Graph`, a graph checkpoint (or its path, e.g. from ``neurodeploy
    import``) or a PyTorch module written with neurodeploy's layers (traced by
    :func:`~neurodeploy.graph.graph_from_torch`; it gets the trained weights back) — on ``dataset``.
    ``out_dir/checkpoint.pt`` is a graph checkpoint with the trained weights, for
    :func:`prepare`, :func:`simulate` and :func:`export_to`. ``steps`` and ``encoding`` default to
    what the graph records (a PyTorch module needs ``steps``, and ``input_shape``, one step's input,
    when the samples are input event sequences)."""
    from neurodeploy.train.graph_trainer import train_graph

    return train_graph(model, dataset, config or TrainConfig(), out_dir, resume=resume, progress=progress,
                       steps=steps, encoding=encoding, input_shape=input_shape)


CHIP_FORMATS = ("lava-process", "xylo")
"""Chip formats :func:`export_to` writes from a deployment graph with :func:`export_chip`."""


def export_chip(source: Any, path: str | Path, fmt: str) -> Path:
    """Write a deployment graph (or a :class:`FakeQuantNet`, converted first) as ``fmt``:
    ``"lava-process"`` (its Lava process network, ``.npz``; recurrence, merges, MP-Init) or ``"xylo"``
    (the Xylo chip specification, ``.npz``); each file is read back and checked."""
    if isinstance(source, FakeQuantNet):
        source = convert(source)
    if not isinstance(source, DeployGraph):
        raise ConfigError(f"{fmt} export needs a deployment graph (nd.convert(nd.prepare(...)))")
    check_fit(source)  # a graph built by hand was never checked against its chip
    if fmt == "lava-process":
        from neurodeploy.export.netx import export_lava_process

        return export_lava_process(source, path).path
    from neurodeploy.export.xylo import write_spec

    return write_spec(source, path)


__all__ = ["Constraints", "ModelSpec", "Simulation", "TrainConfig", "build_model", "convert", "export_to",
           "finetune", "fit", "fit_graph", "import_nir", "prepare", "simulate"]
