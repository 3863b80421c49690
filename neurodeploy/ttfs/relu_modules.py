"""Two small layers a ReLU twin of a TTFS network may need beyond ``torch.nn``.

* :class:`PositionBias` adds a bias per output position (``[C, H, W]``): what a BatchNorm folded
  into a zero-padded conv leaves (the border positions see fewer shifted inputs).
* :class:`MinMaxPool2d` max-pools some channels and min-pools the others: what a max-pool becomes
  when a negative BatchNorm scale is moved across it.

Both are plain modules of tensors and ints, so a saved ``nn.Sequential`` holding them loads with
``torch.load(weights_only=True)`` once they are allow-listed (see :mod:`neurodeploy.ttfs.sources`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PositionBias(nn.Module):
    """``y = x + bias`` with ``bias`` of shape ``[C, H, W]`` (one value per output position)."""

    def __init__(self, bias: torch.Tensor):
        super().__init__()
        self.bias = nn.Parameter(bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class MinMaxPool2d(nn.Module):
    """2-D pooling that takes the maximum on most channels and the minimum on ``min_channels``."""

    def __init__(
        self, kernel_size, stride=None, padding=0, min_channels: list[int] | tuple[int, ...] = ()
    ):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.min_channels = [int(c) for c in min_channels]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hi = F.max_pool2d(x, self.kernel_size, self.stride, self.padding)
        if not self.min_channels:
            return hi
        lo = -F.max_pool2d(-x, self.kernel_size, self.stride, self.padding)
        mask = torch.zeros(x.shape[1], dtype=torch.bool, device=x.device)
        mask[self.min_channels] = True
        return torch.where(mask.view(1, -1, 1, 1), lo, hi)
