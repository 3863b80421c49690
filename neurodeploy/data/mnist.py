"""MNIST from its original IDX files.

Folder lookup (first match wins):

1. the ``root`` argument (``--data-root`` on the command line), if given;
2. the environment variable ``NEURODEPLOY_MNIST``, if set (it must name an existing folder);
3. the user's cache folder: ``$XDG_CACHE_HOME/neurodeploy/mnist``
   (``~/.cache/neurodeploy/mnist`` when ``XDG_CACHE_HOME`` is unset).

Nothing is downloaded; a missing dataset is one error naming the three ways to provide it.

Each file is looked up as ``<stem>`` and then ``<stem>.gz``. With the training files
(``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``) and the test files (``t10k-...``) present
the standard 60,000/10,000 split is used. With only the t10k files present, the first 80 % of the
t10k images (images 0-7,999 of the 10,000) are the training split and the rest (8,000-9,999) the
test split; the ``split`` field of the result says which branch was taken. Pixels are scaled by
1/255 to float32 in [0, 1]; samples have shape ``(1, H, W)`` (``(1, 28, 28)`` for MNIST).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from neurodeploy.data.dataset import Dataset
from neurodeploy.data.idx import idx_magic, idx_magic_of, read_idx
from neurodeploy.errors import DataError

ENV_VAR = "NEURODEPLOY_MNIST"

IMAGES_MAGIC = idx_magic(0x08, 3)  # 0x00000803: unsigned bytes, 3 dims
LABELS_MAGIC = idx_magic(0x08, 1)  # 0x00000801: unsigned bytes, 1 dim
NUM_CLASSES = 10

_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def cache_root() -> Path:
    """The user's cache folder for MNIST: ``$XDG_CACHE_HOME/neurodeploy/mnist`` or
    ``~/.cache/neurodeploy/mnist``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "neurodeploy" / "mnist"


def find_mnist_root(root: str | os.PathLike | None = None) -> Path:
    """Return the MNIST folder to use (see the module docstring for the search order)."""
    if root is not None:
        path = Path(root)
        if not path.is_dir():
            raise DataError(f"MNIST folder {path} does not exist or is not a folder")
        return path
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env)
        if not path.is_dir():
            raise DataError(f"{ENV_VAR}={env} does not name an existing folder")
        return path
    cache = cache_root()
    if cache.is_dir():
        return cache
    raise DataError(
        f"no MNIST folder found: pass --data-root DIR, set {ENV_VAR}=DIR, or place the IDX files "
        f"(t10k-images-idx3-ubyte[.gz], ...) in {cache}"
    )


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        path = folder / name
        if path.is_file():
            return path
    return None


def _load_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate one (images, labels) pair of IDX files."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    for path, arr, magic, what in (
        (images_path, images, IMAGES_MAGIC, "unsigned-byte images with 3 dims"),
        (labels_path, labels, LABELS_MAGIC, "unsigned-byte labels with 1 dim"),
    ):
        found = idx_magic_of(arr)
        if found != magic:
            shown = "unknown" if found is None else f"0x{found:08x}"
            raise DataError(
                f"{path}: IDX magic number {shown} ({arr.dtype}, {arr.ndim} dims), expected "
                f"0x{magic:08x} ({what})"
            )
    if images.shape[1] == 0 or images.shape[2] == 0:
        raise DataError(f"{images_path}: image size {images.shape[1]}x{images.shape[2]} is empty")
    if labels.shape[0] != images.shape[0]:
        raise DataError(
            f"{labels_path}: {labels.shape[0]} labels for {images.shape[0]} images in "
            f"{images_path.name}"
        )
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        bad = int(np.flatnonzero(labels >= NUM_CLASSES)[0])
        raise DataError(
            f"{labels_path}: label {int(labels[bad])} at index {bad} is outside "
            f"0..{NUM_CLASSES - 1}"
        )
    return images, labels


def _to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.ascontiguousarray(images[:, None, :, :], dtype=np.float32) / 255.0)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def load_mnist(root: str | os.PathLike | None = None, limit: int | None = None) -> Dataset:
    """Load MNIST from IDX files under ``root`` (or the default folders) as a :class:`Dataset`.

    ``limit`` keeps the first ``limit`` samples of each split (applied before conversion).
    """
    folder = find_mnist_root(root)
    found = {key: [_find_file(folder, s) for s in stems] for key, stems in _STEMS.items()}
    t10k_images, t10k_labels = found["t10k"]
    for path, stem in zip(found["t10k"], _STEMS["t10k"], strict=True):
        if path is None:
            raise DataError(f"MNIST folder {folder}: missing {stem}[.gz]")
    train_images, train_labels = found["train"]
    if (train_images is None) != (train_labels is None):
        missing = _STEMS["train"][0] if train_images is None else _STEMS["train"][1]
        raise DataError(f"MNIST folder {folder}: has one training file but not {missing}[.gz]")

    test_x, test_y = _load_pair(t10k_images, t10k_labels)
    if train_images is not None:
        train_x, train_y = _load_pair(train_images, train_labels)
        if train_x.shape[1:] != test_x.shape[1:]:
            raise DataError(
                f"{train_images}: images are {train_x.shape[1]}x{train_x.shape[2]} but "
                f"{t10k_images.name} has {test_x.shape[1]}x{test_x.shape[2]}"
            )
        split = (
            f"MNIST standard split: {len(train_x)} train images / {len(test_x)} t10k test images"
        )
    else:
        n = len(test_x)
        cut = (4 * n) // 5
        if cut == 0 or cut == n:
            raise DataError(f"{t10k_images}: {n} images are too few to split into train and test")
        train_x, train_y = test_x[:cut], test_y[:cut]
        test_x, test_y = test_x[cut:], test_y[cut:]
        split = (
            f"MNIST t10k images 0-{cut - 1} train / {cut}-{n - 1} test "
            "(only the t10k files were available)"
        )
    if limit is not None:
        train_x, train_y = train_x[:limit], train_y[:limit]
        test_x, test_y = test_x[:limit], test_y[:limit]
        split += f"; first {limit} samples of each split"
    x_train, y_train = _to_tensors(train_x, train_y)
    x_test, y_test = _to_tensors(test_x, test_y)
    return Dataset(
        name="mnist",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        input_shape=(1, int(test_x.shape[1]), int(test_x.shape[2])),
        num_classes=NUM_CLASSES,
        split=split,
    )
