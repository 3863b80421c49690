"""Mini-batch loaders over a :class:`~neurodeploy.data.dataset.Dataset`."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from neurodeploy.data.dataset import Dataset
from neurodeploy.errors import ConfigError


def make_loaders(
    ds: Dataset, batch_size: int, seed: int = 0, *, drop_last: bool = False
) -> tuple[DataLoader, DataLoader]:
    """Return ``(train_loader, test_loader)`` yielding ``(x, y)`` batches of ``batch_size`` samples.

    The training loader reshuffles every epoch from a ``torch.Generator`` seeded with ``seed``, so
    two loaders built with the same seed give the same batch order, epoch after epoch. The test
    loader keeps the stored order. ``drop_last`` drops an incomplete final training batch.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    train = DataLoader(
        TensorDataset(ds.x_train, ds.y_train),
        batch_size=batch_size,
        shuffle=True,
        generator=generator,
        drop_last=drop_last,
    )
    test = DataLoader(TensorDataset(ds.x_test, ds.y_test), batch_size=batch_size, shuffle=False)
    return train, test
