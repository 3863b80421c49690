"""Integer chip inputs from samples, with the same encoding the float model uses.

The encoder emits each raster in the narrowest exact integer dtype for the events its encoding
can produce (:func:`event_dtype`), decided from the encoding's declared range alone, never from
the data, so every batch of one encoding has the same dtype:

- binary spikes (``rate``, ``latency``; a family's spike-time encoding): ``uint8``;
- graded ``direct`` events with ``bits`` (values ``0 .. 2**bits - 1``): ``uint8`` up to 8 bits,
  ``int16`` up to 15 bits, ``int32`` for 16 bits (:class:`~neurodeploy.nn.encoding.Encoding`
  allows at most 16), ``int64`` beyond.

A raster is a set of event values, not a number to compute with: every consumer widens it before
any product or sum (the simulator's kernels multiply in float32/float64/int64, SynOps are summed
in int64), so a ``uint8`` raster gives the same integers as an ``int64`` one
(``tests/test_input_dtypes.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from neurodeploy.errors import DataError
from neurodeploy.nn.encoding import Encoding, encode_integers, encode_samples, graded_levels

#: Candidate raster dtypes, narrowest first: the first whose range holds an encoding's events.
EVENT_DTYPES = (np.uint8, np.int16, np.int32, np.int64)
_TORCH = {np.uint8: torch.uint8, np.int16: torch.int16, np.int32: torch.int32,
          np.int64: torch.int64}


def event_range(encoding: dict[str, Any] | Encoding) -> int:
    """The largest event value encoding ``encoding`` declares (events are ``0 .. max``): 1 for
    binary spikes (``rate``, ``latency``, a family's own encoding), ``2**bits - 1`` for graded
    ``direct`` input."""
    if _family_encoder(encoding) is not None:
        return 1
    levels = graded_levels(Encoding.from_config(encoding))
    return 1 if levels is None else int(levels)


def dtype_for_range(top: int) -> np.dtype:
    """The narrowest of ``uint8``, ``int16``, ``int32``, ``int64`` holding ``0 .. top``."""
    for dtype in EVENT_DTYPES:
        if top <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise DataError(f"event values up to {top} do not fit 64-bit integers")


def event_dtype(encoding: dict[str, Any] | Encoding) -> np.dtype:
    """The dtype of the rasters :func:`encode_inputs` emits for ``encoding`` (module docstring):
    ``dtype_for_range(event_range(encoding))``."""
    return dtype_for_range(event_range(encoding))


def encode_inputs(x: torch.Tensor, steps: int, encoding: dict[str, Any] | Encoding,
                  generator: torch.Generator | None = None) -> np.ndarray:
    """Chip input ``[B, steps, ...]`` (numpy, :func:`event_dtype`) for samples ``x``; see
    :func:`neurodeploy.nn.encoding.encode_integers`. An encoding that names a ``family`` is that
    family's own (its package's ``encode_inputs``, e.g. ttfs: values as spike times)."""
    family = _family_encoder(encoding)
    if family is not None:
        return _family_raster(family, x, steps, encoding)
    _check_graded_samples(x, encoding)
    return _narrow(encode_integers(x, steps, encoding, generator), encoding)


def _family_encoder(encoding: dict[str, Any] | Encoding) -> Any:
    """The family package whose own encoding ``encoding`` names, or ``None`` for the shared ones."""
    if isinstance(encoding, dict) and encoding.get("family"):
        from neurodeploy.families import get_family

        return get_family(str(encoding["family"]))
    return None


def encode_sample_inputs(x: torch.Tensor, steps: int, encoding: dict[str, Any] | Encoding,
                         start: int = 0) -> np.ndarray:
    """Chip input ``[B, steps, ...]`` (numpy, :func:`event_dtype`) for samples ``x`` with indices
    ``start ...``, each encoded from its own seed (see
    :func:`neurodeploy.nn.encoding.encode_samples`); a family's own encoding is deterministic per
    sample, so it needs no seed."""
    family = _family_encoder(encoding)
    if family is not None:
        return _family_raster(family, x, steps, encoding)
    _check_graded_samples(x, encoding)
    return _narrow(encode_samples(x, steps, encoding, start), encoding)


def _family_raster(family: Any, x: torch.Tensor, steps: int, encoding: dict[str, Any]) -> np.ndarray:
    """A family encoder's raster in the declared dtype (its spikes, 0 or 1; a raster of another
    dtype is converted only when every value is a spike)."""
    raster = np.asarray(family.encode_inputs(x, steps, encoding))
    want = event_dtype(encoding)
    if raster.dtype == want:
        return raster
    if raster.size and (int(raster.min()) < 0 or int(raster.max()) > event_range(encoding)):
        raise DataError(f"the {family.NAME} input encoder emitted values outside 0..1")
    return raster.astype(want)


def _check_graded_samples(x: torch.Tensor, encoding: dict[str, Any] | Encoding) -> None:
    """Refuse samples a graded encoding cannot turn into events of its declared range: rounding
    NaN gives no value in ``0 .. 2**bits - 1`` (every other float is clamped into ``[0, 1]``
    first; binary encodings draw 0 or 1 whatever the value)."""
    if graded_levels(Encoding.from_config(encoding)) is not None and x.is_floating_point() \
            and bool(torch.isnan(x).any()):
        raise DataError("input samples contain NaN; graded (direct) input needs values in [0, 1]")


def _narrow(events: torch.Tensor, encoding: dict[str, Any] | Encoding) -> np.ndarray:
    """``events`` (int64, inside the encoding's declared range by construction) as a numpy raster
    of :func:`event_dtype` (an exact conversion)."""
    want = event_dtype(encoding)
    return events.to(_TORCH[want.type]).numpy()


__all__ = ["EVENT_DTYPES", "dtype_for_range", "encode_inputs", "encode_sample_inputs",
           "event_dtype", "event_range"]
