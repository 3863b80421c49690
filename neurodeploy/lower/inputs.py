"""Integer chip inputs from samples, with the same encoding the float model uses."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from neurodeploy.nn.encoding import Encoding, encode_integers


def encode_inputs(x: torch.Tensor, steps: int, encoding: dict[str, Any] | Encoding,
                  generator: torch.Generator | None = None) -> np.ndarray:
    """Chip input ``[B, steps, ...]`` (int64 numpy) for samples ``x``; see
    :func:`neurodeploy.nn.encoding.encode_integers`."""
    return encode_integers(x, steps, encoding, generator).numpy()
