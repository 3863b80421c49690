"""Dataset lookup by name.

Names: ``"digits"`` (scikit-learn's 8x8 digits, embedded), ``"digits-4x4"`` (the same, averaged
to 4x4 pixels: 16 input channels), ``"digits-rows"`` (the same images read row by row: a
temporal task of 8 steps x 8 inputs), ``"mnist"`` (IDX files),
``"torchvision:<Name>"`` (a torchvision image dataset) and ``"tonic:<Name>"`` (a tonic event
dataset binned into frames). See the module of each loader for its folder lookup and split.
"""

from __future__ import annotations

import os
from typing import Any

from neurodeploy.data.dataset import Dataset, check_limit, check_options, take_first
from neurodeploy.errors import ConfigError

#: Dataset names accepted by :func:`load_dataset`; ``<Name>`` stands for a class name.
DATASETS: tuple[str, ...] = ("digits", "digits-4x4", "digits-rows", "mnist", "torchvision:<Name>", "tonic:<Name>")

_TONIC_OPTIONS = ("time_steps", "binary", "duration", "sensor_size")


def load_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    limit: int | None = None,
    seed: int = 0,
    **options: Any,
) -> Dataset:
    """Load a dataset by name (see :data:`DATASETS`) as a :class:`Dataset`.

    Args:
        name: ``"digits"``, ``"mnist"``, ``"torchvision:<Name>"`` or ``"tonic:<Name>"``.
        root: data folder (unused by ``digits``; optional for ``mnist``, which then searches its
            default folders; required by the torchvision and tonic adapters).
        limit: keep only the first ``limit`` samples of each split (samples, >= 1).
        seed: seed of the ``digits`` stratified split; the other datasets have fixed splits.
        **options: dataset-specific options; ``tonic:`` accepts ``time_steps`` (frames per
            sample), ``binary``, ``duration`` (timestamp units) and ``sensor_size`` (W, H, P).
            Unknown options raise :class:`ConfigError`.

    Loading is deterministic: the same arguments give the same tensors.
    """
    limit = check_limit(limit)
    if not isinstance(name, str):
        raise ConfigError(f"dataset name must be a string, got {name!r}")
    prefix, sep, cls_name = name.partition(":")
    if sep and not cls_name:
        raise ConfigError(f"dataset name {name!r} lacks a class name after ':'")
    if name in ("digits", "digits-4x4"):
        from neurodeploy.data.digits import load_digits_dataset

        check_options(name, options, ())
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seed must be an integer, got {seed!r}")
        return take_first(load_digits_dataset(seed, 2 if name == "digits-4x4" else 1), limit)
    if name == "digits-rows":
        from neurodeploy.data.digits import load_digit_rows

        check_options(name, options, ())
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seed must be an integer, got {seed!r}")
        return take_first(load_digit_rows(seed), limit)
    if name == "mnist":
        from neurodeploy.data.mnist import load_mnist

        check_options(name, options, ())
        return load_mnist(root, limit)
    if sep and prefix == "torchvision":
        from neurodeploy.data.torchvision_adapter import load_torchvision

        check_options(name, options, ())
        return load_torchvision(cls_name, root, limit)
    if sep and prefix == "tonic":
        from neurodeploy.data.tonic_adapter import load_tonic

        check_options(name, options, _TONIC_OPTIONS)
        return load_tonic(cls_name, root, limit, **options)
    raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
