"""The in-memory dataset container shared by every loader.

Static image datasets hold ``x`` of shape ``[N, C, H, W]`` with values in ``[0, 1]`` and have
``time_steps=None``. Event datasets (binned into frames) hold ``x`` of shape ``[N, T, C, H, W]``,
where ``T`` is the number of time steps (also stored as ``time_steps``) and ``C`` the number of
polarities; their values are event counts per bin (or 0/1 spikes when binned with ``binary=True``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from neurodeploy.errors import ConfigError, DataError


@dataclass
class Dataset:
    """A labelled train/test pair held as tensors.

    Attributes:
        name: dataset name as given to :func:`neurodeploy.data.load_dataset`.
        x_train, x_test: float32 inputs, ``[N, *input_shape]``.
        y_train, y_test: int64 class labels in ``0..num_classes-1``, ``[N]``.
        input_shape: shape of one sample: ``(C, H, W)`` for images, ``(T, C, H, W)`` for event
            frames (``T`` time steps, ``C`` polarities).
        num_classes: number of classes.
        split: human-readable statement of the split used (state it with every figure).
        time_steps: ``T`` for event datasets, ``None`` for static ones.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    input_shape: tuple[int, ...]
    num_classes: int
    split: str
    time_steps: int | None = None

    def __post_init__(self) -> None:
        self.input_shape = tuple(int(d) for d in self.input_shape)
        for part in ("train", "test"):
            x = getattr(self, f"x_{part}")
            y = getattr(self, f"y_{part}")
            if x.dtype != torch.float32 or y.dtype != torch.int64:
                raise DataError(
                    f"dataset {self.name!r}: {part} split has dtypes x={x.dtype}, y={y.dtype}; "
                    "expected x=float32, y=int64"
                )
            if tuple(x.shape[1:]) != self.input_shape:
                raise DataError(
                    f"dataset {self.name!r}: x_{part} has shape {tuple(x.shape)}, expected "
                    f"[N, {', '.join(map(str, self.input_shape))}]"
                )
            if y.ndim != 1 or y.shape[0] != x.shape[0]:
                raise DataError(
                    f"dataset {self.name!r}: y_{part} has shape {tuple(y.shape)} for "
                    f"{x.shape[0]} samples"
                )
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise DataError(
                    f"dataset {self.name!r}: y_{part} holds labels {int(y.min())}..{int(y.max())}, "
                    f"expected 0..{self.num_classes - 1}"
                )
        if self.time_steps is not None and (
            len(self.input_shape) != 4 or self.input_shape[0] != self.time_steps
        ):
            raise DataError(
                f"dataset {self.name!r}: time_steps={self.time_steps} but input_shape is "
                f"{self.input_shape}; expected (T, C, H, W) with T == time_steps"
            )

    @property
    def n_train(self) -> int:
        """Number of training samples."""
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test samples."""
        return int(self.x_test.shape[0])

    @property
    def num_inputs(self) -> int:
        """Inputs per time step: ``C*H*W`` (the time axis of event data is not counted)."""
        shape = self.input_shape[1:] if self.time_steps is not None else self.input_shape
        return math.prod(shape)


def check_limit(limit: int | None) -> int | None:
    """Validate the ``limit`` option (samples per split) and return it."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"limit must be a positive integer (samples per split), got {limit!r}")
    return limit


def take_first(ds: Dataset, limit: int | None) -> Dataset:
    """Return ``ds`` cut to its first ``limit`` samples of each split (``None`` keeps all)."""
    limit = check_limit(limit)
    if limit is None or (ds.n_train <= limit and ds.n_test <= limit):
        return ds
    return Dataset(
        name=ds.name,
        x_train=ds.x_train[:limit].contiguous(),
        y_train=ds.y_train[:limit].contiguous(),
        x_test=ds.x_test[:limit].contiguous(),
        y_test=ds.y_test[:limit].contiguous(),
        input_shape=ds.input_shape,
        num_classes=ds.num_classes,
        split=ds.split + f"; first {limit} samples of each split",
        time_steps=ds.time_steps,
    )


def check_options(dataset: str, options: dict, accepted: tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` if ``options`` has a key not in ``accepted``."""
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        allowed = ", ".join(accepted) if accepted else "none"
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for dataset {dataset!r}; accepted: {allowed}"
        )
