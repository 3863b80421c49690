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

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from neurodeploy.atomic import atomic_path
from neurodeploy.errors import CheckpointError, ConfigError
from neurodeploy.models import ModelSpec, SpikingNet, build_model

TORCH_LOAD_ERRORS = (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, RuntimeError, ValueError, OSError,
                     AttributeError, TypeError, KeyError, IndexError)
"""What ``torch.load`` raises on a corrupt, truncated or foreign file."""

FORMAT = "neurodeploy.checkpoint"
VERSION = 1


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
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise CheckpointError(f"checkpoint weights do not match its model spec: {first}") from None
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


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint; a missing, corrupt, truncated or foreign file raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except TORCH_LOAD_ERRORS as exc:
        kind = type(exc).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt or truncated: {kind})") \
            from None
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
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} has no weights")
    return Checkpoint(spec, state, payload.get("train", {}) or {}, payload.get("meta", {}) or {})
