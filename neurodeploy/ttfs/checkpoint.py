"""TTFS checkpoints: a network's spec, weights, windows and a record, in one file.

A ``torch.save`` archive of plain data and tensors only (loadable with ``weights_only=True``)::

    {"format": "neurodeploy.ttfs", "version": 1,
     "spec": {...TTFSNetwork.spec()...}, "state_dict": {...float64 tensors, windows...},
     "meta": {...}}

Written atomically. A missing, corrupt, truncated or foreign file raises :class:`CheckpointError`
with one line naming the problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from neurodeploy.atomic import atomic_path
from neurodeploy.errors import CheckpointError, ConfigError
from neurodeploy.train.checkpoint import read_torch_file
from neurodeploy.ttfs.network import TTFSNetwork

FORMAT = "neurodeploy.ttfs"
VERSION = 1


@dataclass
class TTFSCheckpoint:
    """A loaded TTFS checkpoint."""

    network: TTFSNetwork
    meta: dict[str, Any] = field(default_factory=dict)


def save_ttfs(net: TTFSNetwork, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write ``net`` (and ``meta``, plain data) to ``path`` atomically."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "spec": net.spec(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        "meta": dict(meta or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_ttfs(path: str | Path) -> TTFSCheckpoint:
    """Read a TTFS checkpoint written by :func:`save_ttfs`."""
    path = Path(path)
    payload = read_torch_file(path, "TTFS checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        other = payload.get("format") if isinstance(payload, dict) else None
        hint = f" (it is a {other} file)" if isinstance(other, str) else ""
        raise CheckpointError(f"{path} is not a TTFS checkpoint (no {FORMAT} format tag){hint}")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has TTFS checkpoint version {payload.get('version')!r}; this "
            f"neurodeploy reads version {VERSION}"
        )
    spec, state = payload.get("spec"), payload.get("state_dict")
    if not isinstance(spec, dict) or not isinstance(state, dict):
        raise CheckpointError(f"{path} lacks the network spec or its weights")
    try:
        net = TTFSNetwork.from_spec(spec)
        net.load_state_dict(state)
    except ConfigError as exc:
        raise CheckpointError(f"{path} holds an invalid TTFS network: {exc}") from None
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(
            f"{path}: weights do not match the TTFS network spec: {first}"
        ) from None
    if not bool(torch.all(net.windows > 0)):
        raise CheckpointError(f"{path} holds non-positive TTFS windows {net.windows.tolist()}")
    meta = payload.get("meta") or {}
    return TTFSCheckpoint(net.eval(), meta if isinstance(meta, dict) else {})
