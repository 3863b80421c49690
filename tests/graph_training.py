"""Shared by the graph-network tests: the digits fed row by row and a plain training loop.

Not a test module: it trains the small graph networks the deploy, read-out and Xylo tests build,
with one seed and one loop, so their figures come from the same procedure.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import torch

from neurodeploy.data import load_dataset

ROW_LEVELS = 15
"""Image rows as graded 4-bit input events (0..15)."""


def digit_rows() -> SimpleNamespace:
    """The digits split read row by row: input events ``[N, 8 steps, 8]`` (graded 4-bit)."""
    d = load_dataset("digits")
    return SimpleNamespace(name="digits-rows", **{
        k: torch.round(getattr(d, k)[:, 0] * ROW_LEVELS) if k.startswith("x") else getattr(d, k)
        for k in ("x_train", "y_train", "x_test", "y_test")})


def rows_sequence(x: torch.Tensor) -> torch.Tensor:
    """Row events ``[N, T, 8]`` as the float network's input sequence ``[T, N, 8]`` in ``0..1``."""
    return x.transpose(0, 1) / ROW_LEVELS


def train_graph_model(model, x: torch.Tensor, y: torch.Tensor, seq_of: Callable[[torch.Tensor], torch.Tensor],
                      epochs: int, lr: float, batch: int = 64) -> None:
    """Train ``model.net`` (a GraphModel's GraphNet) with Adam on cross-entropy, seed 0; eval mode after."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            loss = torch.nn.functional.cross_entropy(model.net(seq_of(x[idx])), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
