"""MP-Init's running mean is reduced across ranks under torch.distributed (gloo, 2 processes)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from neurodeploy.nn import SpikingNeuron


def _batch(rank: int) -> torch.Tensor:
    return torch.rand(4, 6, 5, generator=torch.Generator().manual_seed(100 + rank), dtype=torch.float64) * 3


def _worker(rank: int, world: int, init_file: str, out_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    layer = SpikingNeuron(model="lif", reset="subtract", mp_init=True, mp_init_mean="fired").double().train()
    layer(_batch(rank))
    if rank == 0:
        torch.save(layer.mp_mean.clone(), out_file)
    dist.barrier()
    dist.destroy_process_group()


def test_mp_init_mean_is_all_reduced(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    out = tmp_path / "mu.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    reduced = float(torch.load(out))
    # the same statistic over both ranks' batches, computed in one process
    num, den = 0.0, 0.0
    for rank in range(2):
        x = _batch(rank)
        u = torch.zeros(6, 5, dtype=torch.float64)
        fired = torch.zeros(6, 5, dtype=torch.float64)
        for t in range(4):
            m = 0.5 * u + x[t]
            s = (m > 1.0).double()
            u = m - s
            fired = torch.maximum(fired, s)
        num += float((fired * u).sum())
        den += float(fired.sum())
    expected = 0.1 * num / max(den, 1.0)
    assert reduced == pytest.approx(expected, rel=1e-12)
