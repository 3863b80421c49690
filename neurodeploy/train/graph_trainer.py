"""Training graph networks: a float graph (a NIR import, a network written in PyTorch, any
:class:`~neurodeploy.graph.Graph`) trained by the same :class:`~neurodeploy.train.trainer.Trainer`
as the templates — progress bar, the firing-rate monitor and dead-neuron doctor (findings; the
doctor's remedies rebuild template layers and are refused here), a checkpoint every epoch,
``metrics.jsonl`` and exact resume.

The checkpoint is a graph checkpoint (:mod:`neurodeploy.models.graph_net`, format
``neurodeploy.graph``) holding the trained weights in its graph and the resumable training record
in ``train``; quantization, fine-tuning, simulation and export read it like an imported one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from neurodeploy.errors import CheckpointError, ConfigError
from neurodeploy.graph.ir import Graph
from neurodeploy.models.graph_net import GraphCheckpoint, GraphNet, load_graph_checkpoint
from neurodeploy.quantize.graph_model import GraphModel
from neurodeploy.train.config import TrainConfig
from neurodeploy.train.distributed import Parallel
from neurodeploy.train.trainer import Trainer, TrainResult


def _structure(graph: Graph) -> tuple[Any, ...]:
    """What must match for a checkpoint's weights to belong to a graph: node names and kinds, tensor
    shapes, edges."""
    nodes = tuple((k, v.kind, tuple((f, tuple(t.shape)) for f, t in sorted(vars(v).items())
                                    if isinstance(t, torch.Tensor))) for k, v in graph.nodes.items())
    return nodes, tuple((e.src, e.dst, e.recurrent) for e in graph.edges)


class GraphTrainer(Trainer):
    """A :class:`Trainer` for a :class:`~neurodeploy.quantize.graph_model.GraphModel`; ``meta`` is
    kept in every checkpoint it writes (e.g. where the graph was imported from). Samples are either
    ``[N, *input_shape]`` (encoded by the model's encoding) or input event sequences ``[N, T,
    *input_shape]`` with ``T >= steps`` (a temporal task; ``docs/graphs.md`` §6)."""

    def __init__(self, model: GraphModel, dataset: Any, config: TrainConfig, out_dir: str | Path,
                 progress: bool | None = None, device: str = "cpu", parallel: Parallel | None = None,
                 meta: dict[str, Any] | None = None):
        if not isinstance(model, GraphModel):
            raise ConfigError(f"GraphTrainer trains a GraphModel, got {type(model).__name__}")
        if config.auto_remedy:
            raise ConfigError("the doctor's remedies rebuild template layers; a graph network trains without "
                              "them (drop --auto-remedy)")
        super().__init__(model, dataset, config, out_dir, progress, device, parallel)
        self.source_meta = dict(meta or {})

    def _check_dataset(self, dataset: Any) -> None:
        shape, steps = tuple(self.model.spec.input_shape), self.model.spec.steps
        got = tuple(dataset.x_train.shape[1:])
        if got != shape and not (got[1:] == shape and got[0] >= steps):
            raise ConfigError(f"dataset {dataset.name} has samples of shape {got} but the graph network takes "
                              f"{shape} (or input event sequences ({steps}+, {', '.join(map(str, shape))}))")

    def _write_checkpoint(self, train: dict[str, Any], meta: dict[str, Any]) -> None:
        ck = self.model.checkpoint({**self.source_meta, **meta})
        ck.graph.meta.update(steps=self.model.spec.steps, encoding=dict(self.model.spec.encoding))
        ck.train = train
        ck.save(self.checkpoint_path)

    def _restore_weights(self) -> dict[str, Any]:
        ck = load_graph_checkpoint(self.checkpoint_path)
        if _structure(ck.graph) != _structure(self.model.net.graph) or ck.steps != self.model.spec.steps:
            raise CheckpointError(f"{self.checkpoint_path} holds another graph network (nodes, edges, shapes or "
                                  "steps differ); choose another output folder")
        stored = ck.graph.meta.get("encoding")
        if isinstance(stored, dict) and stored != dict(self.model.spec.encoding):
            raise ConfigError(f"{self.checkpoint_path} was trained with input encoding {stored}, not "
                              f"{dict(self.model.spec.encoding)}; a resumed run keeps its settings: drop "
                              "--encoding/--input-bits or start a new run")
        self.model.net.load_state_dict(GraphNet(ck.graph).state_dict())
        return ck.train


def graph_model(model: Any, dataset: Any = None, *, steps: int | None = None, encoding: Any = None,
                input_shape: tuple[int, ...] | None = None) -> GraphModel:
    """The :class:`GraphModel` of a graph network in any of its forms: a :class:`GraphModel`, a
    :class:`GraphNet`, a :class:`~neurodeploy.graph.Graph`, a
    :class:`~neurodeploy.models.graph_net.GraphCheckpoint` or its path, or a PyTorch module
    (traced by :func:`~neurodeploy.graph.graph_from_torch` for per-step inputs of ``input_shape``,
    default: the shape of ``dataset``'s samples; give it for input event sequences). ``steps`` and
    ``encoding`` default to what the graph records."""
    if isinstance(model, str | Path):
        model = load_graph_checkpoint(model)
    if isinstance(model, GraphCheckpoint):
        enc = encoding or model.graph.meta.get("encoding") or model.meta.get("encoding")
        return GraphModel(GraphNet(model.graph), steps or model.steps, enc,
                          {k: v for k, v in model.meta.items() if k != "encoding"})
    if isinstance(model, GraphModel):
        if steps is not None or encoding is not None:
            raise ConfigError("a GraphModel has its steps and encoding; pass the GraphNet to change them")
        return model
    if isinstance(model, Graph):
        model = GraphNet(model)
    if not isinstance(model, GraphNet):
        if not isinstance(model, nn.Module):
            raise ConfigError(f"cannot train a {type(model).__name__}; give a SpikingNet, a graph network or a "
                              "torch.nn.Module")
        from neurodeploy.graph.from_torch import graph_from_torch

        if steps is None or dataset is None:
            raise ConfigError("training a PyTorch module needs steps (time steps per sample) and a dataset")
        shape = tuple(input_shape or dataset.input_shape)
        model = GraphNet(graph_from_torch(model, shape, steps=steps, encoding=encoding or "direct"))
    graph_steps = model.graph.meta.get("steps")
    steps = steps or graph_steps
    if steps is None:
        raise ConfigError("the graph does not record its number of time steps; pass steps")
    return GraphModel(model, int(steps), encoding)


def train_graph(model: Any, dataset: Any, config: TrainConfig, out_dir: str | Path, *, resume: bool = False,
                progress: bool | None = None, device: str = "cpu", parallel: Parallel | None = None,
                steps: int | None = None, encoding: Any = None, input_shape: tuple[int, ...] | None = None,
                meta: dict[str, Any] | None = None) -> TrainResult:
    """Train a graph network (any form :func:`graph_model` takes) on ``dataset``; a PyTorch module
    gets the trained weights back (its synapses, by the graph nodes' ``source``)."""
    gm = graph_model(model, dataset, steps=steps, encoding=encoding, input_shape=input_shape)
    if isinstance(model, GraphCheckpoint) and meta is None:
        meta = {k: v for k, v in model.meta.items() if k in ("imported_from", "source")}
    torch.manual_seed(config.seed)
    result = GraphTrainer(gm, dataset, config, out_dir, progress, device, parallel, meta).fit(resume=resume)
    if isinstance(model, nn.Module) and not isinstance(model, GraphNet | GraphModel):
        from neurodeploy.graph.from_torch import load_graph_weights

        load_graph_weights(model, gm.folded_graph())
    return result
