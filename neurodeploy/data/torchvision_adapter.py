"""Adapter for image datasets of torchvision (``torchvision:<Name>``, e.g. ``torchvision:MNIST``).

torchvision is imported only when such a dataset is requested. Datasets are opened with
``download=False``: the files must already be under ``root`` in torchvision's own layout (nothing is
ever fetched). The standard train and test splits are used (``train=True/False``, or
``split="train"/"test"`` for classes that take ``split``).

Conversion: a dataset exposing ``.data`` and ``.targets`` (or ``.labels``) is converted in one go;
``[N, H, W]`` becomes ``[N, 1, H, W]`` and channels-last ``[N, H, W, C]`` (C in 1, 3, 4) becomes
``[N, C, H, W]``. Otherwise samples are read one by one through ``ds[i] -> (image, label)``: a
tensor image is taken as ``[C, H, W]`` (or ``[H, W]``), any other image (PIL, numpy) as ``[H, W]``
or ``[H, W, C]``. Integer pixels are scaled by 1/255; float pixels must already lie in [0, 1].
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from neurodeploy.data.dataset import Dataset
from neurodeploy.errors import ConfigError, DataError

_INSTALL_HINT = (
    "torchvision is not installed; install the torchvision build that matches your torch "
    "(see https://pytorch.org/get-started/locally/) or use the IDX reader (dataset 'mnist')"
)


def _import_torchvision() -> ModuleType:
    """Import torchvision (separate function so tests can substitute a stand-in module)."""
    import torchvision

    return torchvision


def _dataset_class(name: str) -> type:
    try:
        tv = _import_torchvision()
    except ImportError:
        raise DataError(_INSTALL_HINT) from None
    except (RuntimeError, OSError, AttributeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DataError(
            f"torchvision is installed but failed to import ({first}); it must be the build "
            "matching the installed torch, or use the IDX reader (dataset 'mnist')"
        ) from None
    datasets = getattr(tv, "datasets", None)
    cls = getattr(datasets, name, None) if datasets is not None else None
    if not isinstance(cls, type):
        raise ConfigError(f"torchvision has no dataset class torchvision.datasets.{name}")
    return cls


def _open_split(cls: type, name: str, root: Path, train: bool) -> Any:
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}
    kwargs: dict[str, Any] = {"root": str(root)}
    if "train" in params or not params:
        kwargs["train"] = train
    elif "split" in params:
        kwargs["split"] = "train" if train else "test"
    else:
        raise DataError(
            f"torchvision:{name} takes neither train= nor split=; this adapter cannot open it"
        )
    if "download" in params or not params:
        kwargs["download"] = False
    try:
        return cls(**kwargs)
    except (RuntimeError, OSError, ValueError, TypeError, KeyError, IndexError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DataError(
            f"torchvision:{name} could not be opened under {root} with download=False "
            f"({first}); place the dataset files there first"
        ) from None


def _as_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _scale(images: np.ndarray, name: str) -> np.ndarray:
    if images.dtype == np.bool_ or np.issubdtype(images.dtype, np.integer):
        if images.size and (images.min() < 0 or images.max() > 255):
            raise DataError(f"torchvision:{name}: integer pixels outside 0..255")
        return images.astype(np.float32) / np.float32(255.0)
    if np.issubdtype(images.dtype, np.floating):
        images = images.astype(np.float32)
        if images.size and not (
            np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1
        ):
            raise DataError(f"torchvision:{name}: float pixels outside [0, 1]")
        return images
    raise DataError(f"torchvision:{name}: unsupported pixel dtype {images.dtype}")


def _to_nchw(images: np.ndarray, name: str, channels_last: bool) -> np.ndarray:
    if images.ndim == 3:
        return images[:, None, :, :]
    if images.ndim == 4:
        if channels_last and images.shape[-1] in (1, 3, 4):
            return images.transpose(0, 3, 1, 2)
        return images
    raise DataError(f"torchvision:{name}: images have shape {images.shape}, expected 3 or 4 dims")


def _labels(raw: Any, name: str) -> np.ndarray:
    labels = _as_numpy(raw)
    if labels.ndim != 1 or not (labels.size == 0 or np.issubdtype(labels.dtype, np.integer)):
        raise DataError(
            f"torchvision:{name}: labels must be a 1-D integer sequence, got {labels.dtype} "
            f"{labels.shape}"
        )
    if labels.size and labels.min() < 0:
        raise DataError(f"torchvision:{name}: negative label {int(labels.min())}")
    return labels.astype(np.int64)


def _convert(ds: Any, name: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Return (images [N, C, H, W] float32 in [0, 1], labels [N] int64)."""
    targets = getattr(ds, "targets", None)
    if targets is None:
        targets = getattr(ds, "labels", None)
    data = getattr(ds, "data", None)
    if data is not None and targets is not None and not isinstance(data, (list, tuple)):
        images = _as_numpy(data)
        labels = _labels(targets, name)
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        # torchvision keeps .data channels-last in numpy (CIFAR) and [N, H, W] in tensors (MNIST).
        images = _to_nchw(images, name, channels_last=True)
    else:
        try:
            n = len(ds)
        except TypeError:
            raise DataError(
                f"torchvision:{name}: dataset has neither .data/.targets nor len()"
            ) from None
        if limit is not None:
            n = min(n, limit)
        imgs, labs = [], []
        for i in range(n):
            item = ds[i]
            if not isinstance(item, (tuple, list)) or len(item) < 2:
                raise DataError(f"torchvision:{name}: sample {i} is not an (image, label) pair")
            img, lab = item[0], item[1]
            arr = _as_numpy(img)
            if isinstance(img, torch.Tensor):
                arr = arr[None] if arr.ndim == 2 else arr
            else:
                arr = (
                    arr[None]
                    if arr.ndim == 2
                    else (arr.transpose(2, 0, 1) if arr.ndim == 3 else arr)
                )
            imgs.append(arr)
            try:
                labs.append(int(_as_numpy(lab)))
            except (TypeError, ValueError):
                raise DataError(f"torchvision:{name}: sample {i} has a non-integer label") from None
        if not imgs:
            raise DataError(f"torchvision:{name}: split is empty")
        if len({a.shape for a in imgs}) != 1:
            raise DataError(f"torchvision:{name}: samples have different shapes")
        images = np.stack(imgs)
        labels = _labels(np.asarray(labs, dtype=np.int64), name)
    if images.ndim != 4:
        raise DataError(f"torchvision:{name}: images have shape {images.shape}, expected 4 dims")
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"torchvision:{name}: {images.shape[0]} images but {labels.shape[0]} labels"
        )
    return np.ascontiguousarray(_scale(images, name)), labels


def load_torchvision(
    name: str, root: str | os.PathLike | None, limit: int | None = None
) -> Dataset:
    """Load ``torchvision.datasets.<name>`` (train and test splits) from ``root`` without download.

    ``limit`` keeps the first ``limit`` samples of each split.
    """
    if root is None:
        raise ConfigError(
            f"torchvision:{name} needs root= (the folder torchvision stores {name} in)"
        )
    cls = _dataset_class(name)
    root = Path(root)
    train_ds = _open_split(cls, name, root, True)
    tr_x, tr_y = _convert(train_ds, name, limit)
    te_x, te_y = _convert(_open_split(cls, name, root, False), name, limit)
    if tr_x.shape[1:] != te_x.shape[1:]:
        raise DataError(
            f"torchvision:{name}: train samples {tr_x.shape[1:]} differ from test {te_x.shape[1:]}"
        )
    classes = getattr(train_ds, "classes", None)
    n_max = int(max(tr_y.max(initial=0), te_y.max(initial=0))) + 1
    num_classes = len(classes) if isinstance(classes, (list, tuple)) and classes else n_max
    if n_max > num_classes:
        raise DataError(
            f"torchvision:{name}: label {n_max - 1} outside 0..{num_classes - 1} ({num_classes} "
            "classes)"
        )
    split = f"torchvision {name} standard split: {len(tr_x)} train / {len(te_x)} test"
    if limit is not None:
        split += f"; first {limit} samples of each split"
    return Dataset(
        name=f"torchvision:{name}",
        x_train=torch.from_numpy(tr_x),
        y_train=torch.from_numpy(tr_y),
        x_test=torch.from_numpy(te_x),
        y_test=torch.from_numpy(te_y),
        input_shape=tuple(int(d) for d in tr_x.shape[1:]),
        num_classes=num_classes,
        split=split,
    )
