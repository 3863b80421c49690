"""Adapter for event-camera datasets of tonic (``tonic:<Name>``, e.g. ``tonic:NMNIST``).

tonic is imported only when such a dataset is requested. Nothing is downloaded: the dataset class
is opened with its ``download`` method replaced by one that raises :class:`DataError`, so the files
must already be under ``root`` in tonic's layout (``<root>/<Name>/...``). The standard train and
test splits are used (``train=True/False``, or ``split="train"/"test"``).

Each sample's events are binned with :func:`neurodeploy.data.events.bin_events` into ``time_steps``
frames, giving ``x`` of shape ``[N, T, P, H, W]`` (``T`` time steps, ``P`` polarities) and
``Dataset.time_steps == T``. Frames hold event counts (0/1 with ``binary=True``). Memory grows as
``N * T * P * H * W * 4`` bytes (N-MNIST, T=10: about 5.5 GB for the 60,000 training samples), so
use ``limit`` for quick runs.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from neurodeploy.data.dataset import Dataset
from neurodeploy.data.events import bin_events
from neurodeploy.errors import ConfigError, DataError

DEFAULT_TIME_STEPS = 10

_INSTALL_HINT = (
    "tonic is not installed; install it with 'pip install tonic' (or the 'events' extra of "
    "neurodeploy)"
)


def _import_tonic() -> ModuleType:
    """Import tonic (separate function so tests can substitute a stand-in module)."""
    import tonic

    return tonic


def _dataset_class(name: str) -> type:
    try:
        tonic = _import_tonic()
    except ImportError:
        raise DataError(_INSTALL_HINT) from None
    except (RuntimeError, OSError, AttributeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DataError(f"tonic is installed but failed to import ({first})") from None
    datasets = getattr(tonic, "datasets", None)
    cls = getattr(datasets, name, None) if datasets is not None else None
    if not isinstance(cls, type):
        raise ConfigError(f"tonic has no dataset class tonic.datasets.{name}")
    return cls


def _offline(cls: type, name: str, root: Path) -> type:
    """A subclass of ``cls`` (same class name, so the same folder) whose download refuses."""

    def download(self: Any) -> None:
        raise DataError(
            f"tonic:{name} files not found under {root / cls.__name__}; downloads are disabled, "
            "place the dataset there first"
        )

    return type(cls.__name__, (cls,), {"download": download, "__module__": cls.__module__})


def _open_split(cls: type, name: str, root: Path, train: bool) -> Any:
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}
    kwargs: dict[str, Any] = {"save_to": str(root)}
    if "train" in params:
        kwargs["train"] = train
    elif "split" in params:
        kwargs["split"] = "train" if train else "test"
    else:
        raise DataError(f"tonic:{name} has no train/test split (no train= or split= argument)")
    try:
        return _offline(cls, name, root)(**kwargs)
    except DataError:
        raise
    except (RuntimeError, OSError, ValueError, TypeError, KeyError, IndexError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DataError(f"tonic:{name} could not be opened under {root} ({first})") from None


def _bin_split(
    ds: Any,
    name: str,
    part: str,
    sensor_size: tuple[int, int, int],
    time_steps: int,
    limit: int | None,
    duration: float | None,
    binary: bool,
) -> tuple[np.ndarray, np.ndarray]:
    n = len(ds) if limit is None else min(len(ds), limit)
    width, height, n_pol = sensor_size
    x = np.zeros((n, time_steps, n_pol, height, width), dtype=np.float32)
    y = np.zeros(n, dtype=np.int64)
    for i in range(n):
        item = ds[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise DataError(f"tonic:{name} {part} sample {i} is not an (events, label) pair")
        events, label = item[0], item[1]
        try:
            x[i] = bin_events(events, sensor_size, time_steps, duration=duration, binary=binary)
            y[i] = int(np.asarray(label))
        except DataError as err:
            raise DataError(f"tonic:{name} {part} sample {i}: {err}") from None
        except (TypeError, ValueError):
            raise DataError(f"tonic:{name} {part} sample {i} has a non-integer label") from None
    if n and y.min() < 0:
        raise DataError(f"tonic:{name} {part}: negative label {int(y.min())}")
    return x, y


def _sensor_size(cls: type, name: str, override: Sequence[int] | None) -> tuple[int, int, int]:
    size = override if override is not None else getattr(cls, "sensor_size", None)
    try:
        w, h, p = (int(v) for v in size)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ConfigError(
            f"tonic:{name}: sensor_size must be (W, H, P), got {size!r}; pass sensor_size=..."
        ) from None
    if min(w, h, p) < 1:
        raise ConfigError(f"tonic:{name}: sensor_size must be positive, got {(w, h, p)}")
    return w, h, p


def load_tonic(
    name: str,
    root: str | os.PathLike | None,
    limit: int | None = None,
    *,
    time_steps: int = DEFAULT_TIME_STEPS,
    binary: bool = False,
    duration: float | None = None,
    sensor_size: Sequence[int] | None = None,
) -> Dataset:
    """Load ``tonic.datasets.<name>`` from ``root`` and bin each sample into frames.

    Args:
        name: tonic dataset class name, e.g. ``"NMNIST"``.
        root: the folder passed to tonic as ``save_to``.
        limit: keep the first ``limit`` samples of each split.
        time_steps: frames per sample ``T``.
        binary: clip counts to 1 (spikes) instead of keeping event counts.
        duration: fixed window length per sample in the unit of the timestamps (tonic:
            microseconds), starting at the sample's first event; default: each sample's own span.
        sensor_size: ``(W, H, P)``; default: the class's ``sensor_size``.
    """
    if root is None:
        raise ConfigError(f"tonic:{name} needs root= (the folder tonic saves {name} under)")
    if isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps < 1:
        raise ConfigError(f"time_steps must be a positive integer, got {time_steps!r}")
    if duration is not None and (
        isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration < 0
    ):
        raise ConfigError(f"duration must be a number >= 0 (timestamp units), got {duration!r}")
    cls = _dataset_class(name)
    size = _sensor_size(cls, name, sensor_size)
    root = Path(root)
    train_ds = _open_split(cls, name, root, True)
    args = (size, time_steps, limit, duration, bool(binary))
    x_tr, y_tr = _bin_split(train_ds, name, "train", *args)
    x_te, y_te = _bin_split(_open_split(cls, name, root, False), name, "test", *args)
    classes = getattr(train_ds, "classes", None)
    n_max = int(max(y_tr.max(initial=0), y_te.max(initial=0))) + 1
    num_classes = len(classes) if isinstance(classes, (list, tuple)) and classes else n_max
    if n_max > num_classes:
        raise DataError(
            f"tonic:{name}: label {n_max - 1} outside 0..{num_classes - 1} ({num_classes} classes)"
        )
    window = "each sample's first to last event" if duration is None else f"{duration} time units"
    split = (
        f"tonic {name} standard split: {len(y_tr)} train / {len(y_te)} test; events binned into "
        f"{time_steps} {'binary' if binary else 'count'} frames over {window}"
    )
    if limit is not None:
        split += f"; first {limit} samples of each split"
    w, h, p = size
    return Dataset(
        name=f"tonic:{name}",
        x_train=torch.from_numpy(x_tr),
        y_train=torch.from_numpy(y_tr),
        x_test=torch.from_numpy(x_te),
        y_test=torch.from_numpy(y_te),
        input_shape=(time_steps, p, h, w),
        num_classes=num_classes,
        split=split,
        time_steps=time_steps,
    )
