"""Integer chip inputs from samples, with the same encoding the float model uses."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from neurodeploy.errors import DataError
from neurodeploy.nn.encoding import Encoding, encode


def encode_inputs(x: torch.Tensor, steps: int, encoding: dict[str, Any] | Encoding,
                  generator: torch.Generator | None = None) -> np.ndarray:
    """Encode samples ``x`` (``[B, ...]``, values in [0, 1]) as chip input ``[B, T, ...]`` int64.

    ``direct`` with ``bits``: graded values ``round(x * (2**bits - 1))`` at every step;
    ``rate``/``latency``: the binary spikes :func:`neurodeploy.nn.encoding.encode` draws (with the
    same generator, they are the spikes the float model saw).
    """
    enc = Encoding.from_config(encoding)
    if enc.kind == "direct":
        if enc.bits is None:
            raise DataError("direct float input has no integer form; give the encoding a bit width")
        levels = 2**enc.bits - 1
        q = torch.round(x.clamp(0, 1).double() * levels).to(torch.int64)
        seq = q.unsqueeze(1).expand(q.shape[0], steps, *q.shape[1:])
        return seq.numpy().copy()
    seq = encode(x, steps, enc, generator)  # [T, B, ...]
    return seq.transpose(0, 1).to(torch.int64).numpy().copy()
