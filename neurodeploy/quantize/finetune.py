"""Constraint-aware fine-tuning: train the float model through the chip's integer forward pass.

The loss is computed on :class:`~neurodeploy.quantize.fakequant.FakeQuantNet`'s output, so the
network adapts to the profile's rounding, truncation, wrap and saturation, and to the constraints
(weight bits, spike-time jitter, latency budget, state width) that act inside that forward pass.
BatchNorm statistics and MP-Init means stay frozen (the chip runs them as constants).
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from neurodeploy.atomic import atomic_path
from neurodeploy.errors import CheckpointError, ConfigError
from neurodeploy.limits import check_run_bounds
from neurodeploy.quantize.fakequant import FakeQuantNet
from neurodeploy.train.checkpoint import read_torch_file
from neurodeploy.train.distributed import Parallel, all_finite, all_reduce_sum, shard, wrap_finetune


@dataclass
class FinetuneConfig:
    """Fine-tuning settings: ``epochs`` passes, Adam with learning rate ``lr`` (cosine-annealed),
    ``batch_size`` samples per step, seeds from ``seed``, ``threads`` CPU threads."""

    epochs: int = 3
    lr: float = 5e-4
    batch_size: int = 64
    seed: int = 0
    threads: int = 1

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ConfigError(f"finetune {f.name} must be a number, got {v!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.threads < 1:
            raise ConfigError("finetune epochs, batch size and threads must be at least 1")
        check_run_bounds("finetune ", epochs=self.epochs, batch_size=self.batch_size, seed=self.seed)
        if not self.lr > 0:
            raise ConfigError(f"finetune learning rate must be positive, got {self.lr}")


def _gen(seed: int, epoch: int, salt: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 7919 + salt)


@torch.no_grad()
def fakequant_accuracy(fq: FakeQuantNet, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256,
                       seed: int = 0) -> float:
    """Accuracy of the chip's integer forward pass on ``(x, y)`` (rate spikes and jitter seeded)."""
    enc_gen = torch.Generator().manual_seed(fq.encoding.seed)
    jit_gen = torch.Generator().manual_seed(seed)
    correct = 0
    for i in range(0, len(x), batch_size):
        out = fq.readout_integers(x[i : i + batch_size], enc_gen, jit_gen)
        correct += int((out.argmax(1) == y[i : i + batch_size]).sum())
    return correct / max(len(y), 1)


def finetune(fq: FakeQuantNet, dataset: Any, config: FinetuneConfig | None = None,
             progress: bool | None = None, log=None, parallel: Parallel | None = None,
             state_path: str | Path | None = None, resume: bool = False) -> list[dict[str, Any]]:
    """Fine-tune ``fq.model`` in place on ``dataset``'s training split; returns per-epoch records
    (loss, training accuracy of the integer forward pass, seconds).

    ``parallel`` (:func:`neurodeploy.train.distributed.setup` under ``torchrun``): every rank runs
    its share of each global batch of ``batch_size`` samples (see
    :mod:`neurodeploy.train.distributed`). ``state_path``: after every epoch rank 0 writes the
    model, optimiser and history there (atomically); ``resume`` continues from it (with any
    number of processes, also with more ``epochs`` than the run that wrote it): the learning rate
    schedule is that of the whole run of ``epochs``, so a resumed run equals an uninterrupted
    one.
    """
    c = config or FinetuneConfig()
    par = parallel or Parallel()
    torch.set_num_threads(c.threads)
    model = fq.model
    model.eval()  # BN statistics, MP-Init means frozen; gradients still flow
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=c.lr)
    history: list[dict[str, Any]] = []
    first = 0
    state = Path(state_path) if state_path is not None else None
    settings = run_settings(fq, c)
    if resume and state is not None and state.exists():
        saved = load_state(state, settings)
        if int(saved["epoch"]) > c.epochs:
            raise ConfigError(f"{state}: {saved['epoch']} epochs already done, more than the "
                              f"{c.epochs} asked for")
        try:
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["optimizer"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{state} holds the state of another network ({' '.join(str(exc).split())[:200]}); "
                              "delete it or start afresh without --resume") from None
        for group in opt.param_groups:
            group["lr"] = c.lr  # the schedule below is replayed from the start
        first, history = int(saved["epoch"]), list(saved["history"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c.epochs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # stepping before optimiser steps: a replay
        for _ in range(first):
            sched.step()
    step = wrap_finetune(fq, par)
    x, y = dataset.x_train, dataset.y_train
    show = par.is_main and (progress if progress is not None else sys.stderr.isatty())
    start = time.perf_counter()
    for epoch in range(first, c.epochs):
        order = torch.randperm(len(x), generator=_gen(c.seed, epoch, 1))
        enc_gen, jit_gen = _gen(c.seed, epoch, 2), _gen(c.seed, epoch, 3)
        loss_sum, correct, seen = 0.0, 0, 0
        bar = tqdm(range(0, len(x), c.batch_size), desc=f"finetune {epoch + 1}/{c.epochs}",
                   disable=not show, leave=False, unit="batch")
        for i in bar:
            idx = order[i : i + c.batch_size]
            events = fq.encode(x[idx], enc_gen)  # the whole batch: the same draws on every rank
            share, weight = shard(len(idx), par.rank, par.world_size)
            target = y[idx][share]
            logits = step(events[share], jit_gen)
            loss = nn.functional.cross_entropy(logits, target)
            if not all_finite(loss, par):
                raise ConfigError(f"fine-tuning diverged at epoch {epoch + 1}; lower the learning rate")
            opt.zero_grad(set_to_none=True)
            (loss * weight if par.active else loss).backward()
            opt.step()
            if weight > 0:
                loss_sum += float(loss.detach()) * len(target)
                correct += int((logits.detach().argmax(1) == target).sum())
                seen += len(target)
            bar.set_postfix(loss=f"{loss_sum / max(seen, 1):.3f}", acc=f"{correct / max(seen, 1):.3f}")
        sched.step()
        loss_sum, correct, seen = all_reduce_sum([loss_sum, correct, seen], par)
        rec = {"epoch": epoch + 1, "loss": loss_sum / seen, "train_accuracy": correct / seen,
               "seconds": time.perf_counter() - start}
        history.append(rec)
        if state is not None and par.is_main:
            with atomic_path(state) as tmp:
                torch.save({"epoch": epoch + 1, "model": model.state_dict(),
                            "optimizer": opt.state_dict(), "history": history,
                            "settings": settings}, tmp)
        par.barrier()
        if log and par.is_main:
            log(f"      finetune epoch {epoch + 1}/{c.epochs}: loss {rec['loss']:.4f}, "
                f"integer train accuracy {100 * rec['train_accuracy']:.2f}%")
    return history


def run_settings(fq: FakeQuantNet, config: FinetuneConfig) -> dict[str, Any]:
    """What a fine-tuning state file must share with the run that resumes it: the profile, the
    constraints and the step settings (the number of epochs may grow)."""
    return {"profile": str(getattr(fq.profile, "name", fq.profile)), **fq.constraints.to_dict(),
            "lr": float(config.lr), "batch_size": int(config.batch_size), "seed": int(config.seed)}


def load_state(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The fine-tuning state at ``path``, refused in one line when it is not one this module wrote
    or was written by a run with other ``settings`` (:func:`run_settings`)."""
    try:
        saved = read_torch_file(Path(path), "fine-tuning state")
    except CheckpointError as exc:
        raise ConfigError(f"{exc}; delete it or start afresh without --resume") from None
    keys = {"epoch", "model", "optimizer", "history"}
    if not isinstance(saved, dict) or not keys <= set(saved) or isinstance(saved["epoch"], bool) \
            or not isinstance(saved["epoch"], int) or saved["epoch"] < 0:
        raise ConfigError(f"{path} is not a fine-tuning state neurodeploy wrote; delete it or start afresh "
                          "without --resume")
    stored = saved.get("settings")  # states written before the settings were stored have none
    if stored is not None:
        differ = sorted(k for k in set(stored) | set(settings) if stored.get(k) != settings.get(k))
        if differ:
            k = differ[0]
            raise ConfigError(f"{path} was written by a run with {k} {stored.get(k)!r}, this run has "
                              f"{settings.get(k)!r}; resume with the same settings or start afresh")
    return saved


def config_dict(config: FinetuneConfig) -> dict[str, Any]:
    """Plain-data form of a fine-tuning configuration."""
    return asdict(config)
