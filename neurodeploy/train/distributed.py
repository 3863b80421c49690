"""Data-parallel training across processes started by ``torchrun`` (PyTorch DDP).

``torchrun --nproc_per_node=N neurodeploy train ...`` starts N processes; each reads its rank from
the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), joins a process group (gloo on the CPU,
NCCL on CUDA devices) and trains the same model on its share of every global batch:

* **Batches**: ``batch_size`` stays the *global* batch. Every rank draws the same epoch order and
  the same input encoding for the whole batch (seeded generators, as a single process does) and
  keeps a contiguous share (:func:`shard`). Each rank's loss is scaled so that DDP's gradient
  average equals the gradient of the mean loss over the global batch, also when the shares differ
  in size; a rank whose share of a short last batch is empty runs one sample with weight 0.
* **Statistics**: MP-Init sums are all-reduced inside the neuron layer; the firing-rate monitor's
  per-batch statistics are reduced here (:func:`reduce_layer_stats`), so the monitor, the
  dead-neuron doctor and its remedies see the global batch and decide the same on every rank.
* **Files**: rank 0 writes checkpoints and metrics; every rank reads the same checkpoint to resume,
  with any number of processes.

``torchrun --nproc_per_node=N neurodeploy finetune ...`` shares every global batch the same way
(:func:`neurodeploy.quantize.finetune.finetune` with a :class:`Parallel`): every rank encodes the
whole batch, runs the fake-quant network (:func:`wrap_finetune`: DDP around it) on its share with
the same loss weights, and rank 0 writes the files. With ``--jitter`` each rank draws the jitter of
its own share, so the jittered spikes differ from one process's (the same distribution).

Differences from one process that remain: BatchNorm normalises with each rank's share of the
batch (statistics are not synchronised), the activity regulariser uses each rank's firing rates,
potential quantiles come from each rank's sample of potentials, and sums are formed in another
order (rounding).
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from neurodeploy.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Parallel:
    """Where this process trains: its rank among ``world_size`` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def active(self) -> bool:
        """True when more than one process trains (a process group is in use)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and shows progress (rank 0)."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``"cpu"``, ``"cuda"`` (the process's GPU; refused without CUDA) or ``"auto"`` (CUDA if present)."""
    if name not in DEVICES:
        raise ConfigError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device cuda: no CUDA device is available to this torch {torch.__version__} "
                          "(use --device cpu or auto)")
    if name != "cpu" and torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def _env_int(key: str, default: int) -> int:
    value = os.environ.get(key, str(default))
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {key} must be an integer, got {value!r}") from None


def setup(device: str = "auto") -> Parallel:
    """Read torchrun's environment, pick the device and join the process group when ``WORLD_SIZE > 1``."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    dev = resolve_device(device, local)
    if world > 1 and not dist.is_initialized():
        if not dist.is_available():
            raise ConfigError("WORLD_SIZE > 1 but this torch has no torch.distributed")
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Parallel(rank, world, local, dev)


def teardown(par: Parallel) -> None:
    """Leave the process group (after the last collective)."""
    if par.active and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shard(n: int, rank: int, world: int) -> tuple[slice, float]:
    """This rank's contiguous share of a global batch of ``n`` samples and its loss weight.

    Shares differ in size by at most one. The weight ``world * share / n`` makes the average of the
    ranks' weighted mean losses equal the mean loss over all ``n`` samples. An empty share becomes
    the batch's first sample with weight 0 (every rank must take part in each step).
    """
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    size = base + (1 if rank < extra else 0)
    if size == 0:
        return slice(0, 1), 0.0
    return slice(start, start + size), world * size / n


class SequenceModel(nn.Module):
    """``seq [T, B, ...] -> logits``: a :class:`~neurodeploy.models.SpikingNet` after its encoder.

    DDP wraps this, so that every rank can encode the whole global batch (the same spikes a single
    process draws) and run the network on its share only.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return self.net.readout(self.net.forward_sequence(seq))


def wrap(net: nn.Module, par: Parallel) -> nn.Module:
    """The module a training step calls: DDP around :class:`SequenceModel` when several ranks train."""
    module = SequenceModel(net)
    if not par.active:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [par.device.index] if par.device.type == "cuda" else None
    # buffers (MP-Init means) stay equal on every rank without a broadcast: they are updated from
    # all-reduced sums
    params = inspect.signature(DistributedDataParallel).parameters
    no_sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}
    return DistributedDataParallel(module, device_ids=ids, **no_sync)


class FinetuneStep(nn.Module):
    """``events [B, T, ...] -> logits`` of a fake-quant network (what DDP wraps for fine-tuning)."""

    def __init__(self, fq: nn.Module):
        super().__init__()
        self.fq = fq

    def forward(self, events: torch.Tensor, jitter_generator: torch.Generator | None = None):
        return self.fq.logits(events, jitter_generator)


def wrap_finetune(fq: nn.Module, par: Parallel) -> nn.Module:
    """The module a fine-tuning step calls: DDP around :class:`FinetuneStep` when several ranks
    train (thresholds and decays are constants of the integer program, so parameters such as a
    learnable threshold get no gradient there: DDP looks for unused parameters)."""
    module = FinetuneStep(fq)
    if not par.active:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, broadcast_buffers=False, find_unused_parameters=True)


def all_reduce_sum(values: list[float], par: Parallel) -> list[float]:
    """Sum floats over the ranks (unchanged with one process)."""
    if not par.active:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def all_finite(loss: torch.Tensor, par: Parallel) -> bool:
    """Whether the loss is finite on every rank (so all ranks stop together)."""
    ok = torch.tensor([1.0 if bool(torch.isfinite(loss)) else 0.0])
    if par.active:
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item() > 0)


SUM_KEYS = ("spike_sum", "elements", "samples")
MEAN_KEYS = ("grad_alive", "in_support", "p_above", "m_mean_per_step")


@torch.no_grad()
def reduce_layer_stats(layers: list[tuple[str, nn.Module]], par: Parallel) -> None:
    """All-reduce the monitor statistics each spiking layer left in ``layer.stats`` (in place).

    Counts are summed, ``fired_all`` is the minimum over ranks, means are weighted by each rank's
    element count and the potential samples of all ranks are concatenated.
    """
    if not par.active:
        return
    for _, layer in layers:
        st = layer.stats
        if not st:
            continue
        local = st["elements"].to(par.device, torch.float64)
        total = local.clone()
        dist.all_reduce(total)
        for key in MEAN_KEYS:
            v = st[key].to(par.device, torch.float64) * local
            dist.all_reduce(v)
            st[key] = (v / total).to(st[key].dtype)
        for key in SUM_KEYS:
            v = st[key].to(par.device)
            dist.all_reduce(v)
            st[key] = v
        fired = st["fired_all"].to(par.device)
        dist.all_reduce(fired, op=dist.ReduceOp.MIN)
        st["fired_all"] = fired
        st["m_sample"] = _all_gather_rows(st["m_sample"].to(par.device), par)


def _all_gather_rows(x: torch.Tensor, par: Parallel) -> torch.Tensor:
    """Concatenate a 1-D tensor of each rank (lengths may differ) on every rank."""
    n = torch.tensor([x.numel()], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(par.world_size)]
    dist.all_gather(sizes, n)
    longest = int(max(int(s) for s in sizes))
    padded = torch.zeros(longest, dtype=x.dtype, device=x.device)
    padded[: x.numel()] = x
    parts = [torch.zeros_like(padded) for _ in range(par.world_size)]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s)] for p, s in zip(parts, sizes, strict=True)])
