"""Checkpoints: a model spec, its weights and the training record, in one file.

A checkpoint is a ``torch.save`` archive of plain data and tensors only (loaded with
``weights_only=True``, so opening one never runs code)::

    {"format": "neurodeploy.checkpoint", "version": 1,
     "spec": {...ModelSpec...}, "state_dict": {...},
     "train": {"config": ..., "epoch": k, "optimizer": ..., "scheduler": ..., "history": [...]},
     "meta": {...}}

Files are written atomically, so an interrupted run keeps the previous complete checkpoint.
"""

from __future__ import annotations

import math
import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from neurodeploy.atomic import atomic_path
from neurodeploy.errors import CheckpointError, ConfigError
from neurodeploy.models import ModelSpec, SpikingNet, build_model
from neurodeploy.outputs import SPECIAL_FILE, special_file

TORCH_LOAD_ERRORS = (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, RuntimeError, ValueError, OSError,
                     AttributeError, TypeError, KeyError, IndexError)
"""What ``torch.load`` raises on a corrupt, truncated or foreign file."""

FORMAT = "neurodeploy.checkpoint"
VERSION = 1
OTHER_CHECKPOINTS = {
    "neurodeploy.graph": "a graph-network checkpoint (a network no template rebuilds: a NIR import or a "
                         "network written in PyTorch): it loads with "
                         "neurodeploy.models.graph_net.load_graph_checkpoint and trains with "
                         "`neurodeploy train --model FILE`",
    "neurodeploy.ttfs": "a TTFS checkpoint: use the `neurodeploy ttfs` commands (train, finetune, sweep, "
                        "simulate) or `neurodeploy export --format nir`",
}
"""neurodeploy's other checkpoint formats, with what to do with them instead (one line each)."""


@dataclass
class Checkpoint:
    """An in-memory checkpoint (see the module docstring for the file layout)."""

    spec: ModelSpec
    state_dict: dict[str, torch.Tensor]
    train: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def build(self) -> SpikingNet:
        """Rebuild the model and load the weights (and MP-Init statistics, thresholds, ...)."""
        model = build_model(self.spec)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as exc:  # torch's message: a header line, then one line per problem
            lines = [x.strip() for x in str(exc).strip().splitlines() if x.strip()]
            detail = lines[1] if len(lines) > 1 else lines[0] if lines else "?"
            more = f" (and {len(lines) - 2} more)" if len(lines) > 2 else ""
            raise CheckpointError(f"checkpoint weights do not match its model spec: {detail}{more}") from None
        model.eval()
        return model

    def save(self, path: str | Path) -> Path:
        """Write the checkpoint to ``path`` atomically."""
        payload = {
            "format": FORMAT,
            "version": VERSION,
            "spec": self.spec.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict.items()},
            "train": self.train,
            "meta": self.meta,
        }
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
        return Path(path)

    @classmethod
    def from_model(cls, model: SpikingNet, train: dict[str, Any] | None = None,
                   meta: dict[str, Any] | None = None) -> Checkpoint:
        """Snapshot a model (weights copied)."""
        return cls(model.spec, {k: v.detach().clone() for k, v in model.state_dict().items()},
                   train or {}, meta or {})


def read_torch_file(path: Path, what: str) -> Any:
    """``torch.load`` (``weights_only``) of ``path``; a missing, folder, corrupt or truncated file
    raises :class:`CheckpointError` naming ``what`` it should have been."""
    if not path.exists():
        raise CheckpointError(f"{what} {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"{what} {path} is a folder, not a file")
    if special_file(path):
        raise CheckpointError(f"{what} {path} is {SPECIAL_FILE}, not a file")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols; the error says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except TORCH_LOAD_ERRORS as exc:
        raise CheckpointError(f"{path} is not a readable {what} (corrupt or truncated: {type(exc).__name__})") \
            from None


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint; a missing, corrupt, truncated or foreign file raises :class:`CheckpointError`."""
    path = Path(path)
    payload = read_torch_file(path, "checkpoint")
    if isinstance(payload, dict) and payload.get("format") in OTHER_CHECKPOINTS:
        raise CheckpointError(f"{path} is {OTHER_CHECKPOINTS[payload['format']]}")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} was not written by neurodeploy (no checkpoint format tag)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {payload.get('version')!r}; "
                              f"this neurodeploy reads version {VERSION}")
    try:
        spec = ModelSpec.from_dict(payload["spec"])
    except ConfigError as exc:
        raise CheckpointError(f"{path} holds an invalid model spec: {exc}") from None
    except KeyError:
        raise CheckpointError(f"{path} has no model spec") from None
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise CheckpointError(f"{path} has no weights (its state_dict is not a table of tensors)")
    train, meta = payload.get("train") or {}, payload.get("meta") or {}
    for key, value in (("train", train), ("meta", meta)):
        if not isinstance(value, dict):
            raise CheckpointError(f"{path} is damaged: its {key!r} entry is a {type(value).__name__}, not a table")
    q = meta.get("quant")
    if q is not None and not (
            isinstance(q, dict) and isinstance(q.get("profile"), str) and isinstance(q.get("constraints"), dict)
            and isinstance(q.get("scales"), list)
            and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0
                    for v in q["scales"])):
        raise CheckpointError(f"{path} is damaged: its quantization record (meta['quant']) lacks a profile, "
                              "constraints or positive finite scales; quantize the float checkpoint again")
    check_finite(state, path)
    return Checkpoint(spec, state, train, meta)


def check_finite(state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Refuse a checkpoint whose floating-point tensors hold NaN or infinite values, naming the first
    such tensor (a diverged training run writes them; every later stage would be meaningless)."""
    for name, t in state.items():
        if t.is_complex():  # casting would drop the imaginary parts silently
            raise CheckpointError(f"{path}: {name} holds complex values ({t.dtype}); a network's parameters "
                                  "are real")
        if not t.is_floating_point() or t.numel() == 0:
            continue
        bad = ~torch.isfinite(t)
        count = int(bad.sum())
        if count:
            what = "NaN" if bool(torch.isnan(t).any()) else "infinite values"
            raise CheckpointError(f"{path}: {name} holds {what} ({count} of {t.numel()} values); the network "
                                  "diverged, so retrain it (e.g. with a lower --lr) or use an earlier checkpoint")


def checkpoint_dataset(ck: Checkpoint, dataset: str | None = None, data_root: str | None = None) -> Any:
    """The dataset to use with ``ck``: ``dataset`` or the one it was trained on (default digits),
    refused with a :class:`ConfigError` if its samples do not have the model's input shape (or are
    not input event sequences ``[T, *input_shape]`` of at least the model's steps)."""
    from neurodeploy.data import load_dataset

    ds = load_dataset(dataset or ck.meta.get("dataset") or "digits", data_root)
    shape, got = tuple(ck.spec.input_shape), tuple(ds.input_shape)
    if got[1:] == shape and got[0] >= ck.spec.steps:  # input event sequences [T, *input_shape]
        return ds
    if got != shape:
        raise ConfigError(f"dataset {ds.name} has inputs of shape {tuple(ds.input_shape)} but the "
                          f"checkpoint expects {tuple(ck.spec.input_shape)}")
    return ds
