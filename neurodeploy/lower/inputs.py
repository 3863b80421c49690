"""Integer chip inputs from samples, with the same encoding the float model uses."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from neurodeploy.nn.encoding import Encoding, encode_integers, encode_samples


def encode_inputs(x: torch.Tensor, steps: int, encoding: dict[str, Any] | Encoding,
                  generator: torch.Generator | None = None) -> np.ndarray:
    """Chip input ``[B, steps, ...]`` (int64 numpy) for samples ``x``; see
    :func:`neurodeploy.nn.encoding.encode_integers`. An encoding that names a ``family`` is that
    family's own (its package's ``encode_inputs``, e.g. ttfs: values as spike times)."""
    family = _family_encoder(encoding)
    if family is not None:
        return family.encode_inputs(x, steps, encoding)
    return encode_integers(x, steps, encoding, generator).numpy()


def _family_encoder(encoding: dict[str, Any] | Encoding) -> Any:
    """The family package whose own encoding ``encoding`` names, or ``None`` for the shared ones."""
    if isinstance(encoding, dict) and encoding.get("family"):
        from neurodeploy.families import get_family

        return get_family(str(encoding["family"]))
    return None


def encode_sample_inputs(x: torch.Tensor, steps: int, encoding: dict[str, Any] | Encoding,
                         start: int = 0) -> np.ndarray:
    """Chip input ``[B, steps, ...]`` (int64 numpy) for samples ``x`` with indices ``start ...``,
    each encoded from its own seed (see :func:`neurodeploy.nn.encoding.encode_samples`); a family's
    own encoding is deterministic per sample, so it needs no seed."""
    family = _family_encoder(encoding)
    if family is not None:
        return family.encode_inputs(x, steps, encoding)
    return encode_samples(x, steps, encoding, start).numpy()
