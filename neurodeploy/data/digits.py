"""The embedded default dataset: scikit-learn's 8x8 handwritten digits.

1,797 grey-level images of 8x8 pixels (values 0..16, scaled to [0, 1] by /16), 10 classes. The split
is stratified 80/20: ``ceil(0.2 * 1797) = 360`` test images spread over the classes in proportion to
their sizes (largest remainders first), the other 1,437 for training. Which images of each class go
to the test split is drawn with ``numpy.random.default_rng(seed)``, so a seed always gives the same
split; both splits keep the original order of the images.

``digits-4x4`` is the same split with every image averaged over 2x2 blocks to 4x4 pixels: 16 input
channels, for chips with 16 inputs (SynSense Xylo).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from neurodeploy.data.dataset import Dataset

TEST_FRACTION = 0.2


def stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into (train, test), stratified by ``labels``, deterministic in ``seed``.

    The test split holds ``ceil(test_fraction * N)`` samples; each class contributes
    ``floor(share)`` of them plus one more for the classes with the largest fractional shares (ties
    go to the smaller class label). Both index arrays are sorted ascending.
    """
    labels = np.asarray(labels)
    n = labels.shape[0]
    n_test = math.ceil(test_fraction * n)
    classes, counts = np.unique(labels, return_counts=True)
    shares = counts * n_test / n
    take = np.floor(shares).astype(np.int64)
    remainder = n_test - int(take.sum())
    # Largest fractional part first; np.lexsort sorts by the last key, then the earlier ones.
    order = np.lexsort((classes, -(shares - take)))
    take[order[:remainder]] += 1
    rng = np.random.default_rng(seed)
    test_idx = []
    for cls, k in zip(classes, take, strict=True):
        members = np.flatnonzero(labels == cls)
        test_idx.append(rng.permutation(members)[:k])
    test = np.sort(np.concatenate(test_idx)) if test_idx else np.zeros(0, dtype=np.int64)
    mask = np.ones(n, dtype=bool)
    mask[test] = False
    return np.flatnonzero(mask), test


def load_digits_dataset(seed: int = 0, pool: int = 1) -> Dataset:
    """Load scikit-learn's digits: ``(1, 8, 8)`` images in [0, 1], stratified split by ``seed``;
    with ``pool = 2``, averaged over 2x2 blocks to ``(1, 4, 4)`` (the dataset ``digits-4x4``)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0)
    if pool > 1:
        side = 8 // pool
        images = images.reshape(-1, side, pool, side, pool).mean(axis=(2, 4), dtype=np.float32)
    labels = np.asarray(bunch.target, dtype=np.int64)
    train, test = stratified_split(labels, TEST_FRACTION, seed)
    x = torch.from_numpy(np.ascontiguousarray(images[:, None, :, :]))
    y = torch.from_numpy(labels)
    side = images.shape[-1]
    return Dataset(
        name="digits" if pool == 1 else f"digits-{side}x{side}",
        x_train=x[torch.from_numpy(train)].contiguous(),
        y_train=y[torch.from_numpy(train)].contiguous(),
        x_test=x[torch.from_numpy(test)].contiguous(),
        y_test=y[torch.from_numpy(test)].contiguous(),
        input_shape=(1, side, side),
        num_classes=10,
        split=(
            f"scikit-learn digits{'' if pool == 1 else f' averaged to {side}x{side}'}, "
            f"stratified {100 - int(TEST_FRACTION * 100)}/"
            f"{int(TEST_FRACTION * 100)} split with seed {seed}: {len(train)} train / "
            f"{len(test)} test"
        ),
    )


ROW_BITS = 4
"""Graded bits of a ``digits-rows`` input event: pixel values as payloads ``0 .. 15``."""


def load_digit_rows(seed: int = 0) -> Dataset:
    """The digits as a temporal task (the dataset ``digits-rows``): each image read row by row, one
    row per time step, so a sample is a sequence of input events ``(8, 8)``: 8 steps x 8 inputs,
    each a graded payload ``round(15 x)`` of the pixel value ``x`` in [0, 1] (same split as
    ``digits``). A network takes it with the encoding ``{"kind": "direct", "bits": 4}`` (the float
    network sees ``payload / 15``) and must remember the rows it has seen to classify the digit."""
    ds = load_digits_dataset(seed)
    levels = 2**ROW_BITS - 1

    def events(x):
        return torch.round(x[:, 0] * levels).contiguous()

    return Dataset(
        name="digits-rows",
        x_train=events(ds.x_train),
        y_train=ds.y_train,
        x_test=events(ds.x_test),
        y_test=ds.y_test,
        input_shape=(8, 8),
        num_classes=10,
        split=ds.split.replace("scikit-learn digits", "scikit-learn digits read row by row (8 steps x 8 "
                               "inputs, 4-bit graded events)", 1),
    )
