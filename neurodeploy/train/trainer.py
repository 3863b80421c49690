"""Surrogate-gradient training with monitors, checkpoints and exact resume.

Reproducibility: weights are initialised from ``seed``; every epoch ``k`` draws its shuffle order
and its rate-encoding spikes from generators seeded with ``(seed, k)``, so a run resumed from the
checkpoint of epoch ``k`` continues to exactly the weights an uninterrupted run reaches.

Outputs in ``out_dir``: ``checkpoint.pt`` (rewritten atomically after every epoch),
``metrics.jsonl`` (one JSON record per logging point and per epoch, rewritten atomically) and
``train.log``-style lines on the progress bar.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from neurodeploy.atomic import write_text
from neurodeploy.errors import CheckpointError, ConfigError, NumericError
from neurodeploy.models import SpikingNet, build_model
from neurodeploy.nn.surrogate import AdaLi
from neurodeploy.train.checkpoint import Checkpoint, load_checkpoint
from neurodeploy.train.config import TrainConfig
from neurodeploy.train.distributed import Parallel, reduce_layer_stats, resolve_device, shard, wrap
from neurodeploy.train.doctor import DeadNeuronDoctor, Finding, init_scale_check
from neurodeploy.train.layers import set_epoch, spiking_layers
from neurodeploy.train.monitor import FiringRateMonitor

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"


@dataclass
class TrainResult:
    """What a training run produced."""

    checkpoint: Path
    test_accuracy: float
    train_accuracy: float
    epochs: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    remedies: list[str] = field(default_factory=list)
    trials: list[dict[str, Any]] = field(default_factory=list)


RESUME_MAY_CHANGE = ("epochs", "threads")
"""Training settings a resumed run may change (more epochs; threads do not change what is computed
beyond float rounding); any other change would mix two runs and is refused."""


def _epoch_generator(seed: int, epoch: int, salt: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + epoch * 7919 + salt)


@torch.no_grad()
def evaluate(model: SpikingNet, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256,
             seed: int | None = None) -> tuple[float, float]:
    """Accuracy (fraction) and mean cross-entropy of ``model`` on ``(x, y)`` in eval mode.

    Rate-encoded inputs are drawn from a generator seeded with ``seed`` (default: the encoding's
    own seed), so evaluation is repeatable.
    """
    was = model.training
    model.eval()
    enc = model.spec.encoding_config
    gen = torch.Generator().manual_seed(enc.seed if seed is None else seed)
    correct, loss_sum = 0, 0.0
    for i in range(0, len(x), batch_size):
        logits = model(x[i : i + batch_size], generator=gen)
        yy = y[i : i + batch_size]
        loss_sum += float(nn.functional.cross_entropy(logits, yy, reduction="sum"))
        correct += int((logits.argmax(1) == yy).sum())
    model.train(was)
    n = max(len(x), 1)
    return correct / n, loss_sum / n


def _show_progress(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    return sys.stderr.isatty() and os.environ.get("CI") != "true"


class Trainer:
    """Trains a :class:`SpikingNet` on a dataset (see :mod:`neurodeploy.data`).

    Args:
        model: the network (its ``spec`` is stored in the checkpoint).
        dataset: an object with ``x_train, y_train, x_test, y_test`` tensors and a ``name``.
        config: optimisation settings.
        out_dir: folder for ``checkpoint.pt`` and ``metrics.jsonl``.
        progress: show a progress bar (default: only on a terminal).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when present).
        parallel: this process's place in a ``torchrun`` group (:func:`neurodeploy.train.distributed.setup`);
            overrides ``device``. ``batch_size`` is the global batch over all processes.
    """

    def __init__(self, model: SpikingNet, dataset: Any, config: TrainConfig, out_dir: str | Path,
                 progress: bool | None = None, device: str = "cpu", parallel: Parallel | None = None):
        self.parallel = parallel or Parallel(device=resolve_device(device))
        self.device = self.parallel.device
        self.model = model.to(self.device)
        self.data = dataset
        self.config = config
        self.out_dir = Path(out_dir)
        self.progress = _show_progress(progress) and self.parallel.is_main
        self._check_dataset(dataset)
        self.optimizer = self._make_optimizer()
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=config.epochs) \
            if config.scheduler == "cosine" else None
        self.history: list[dict[str, Any]] = []
        self.findings: list[Finding] = []
        self.remedies: list[str] = []
        self.regulariser_on = config.activity_regulariser
        self.epoch = 0
        self.step = 0
        self.layer_names = [n for n, _ in spiking_layers(model)]
        batches = -(-len(dataset.x_train) // config.batch_size)
        self.doctor = DeadNeuronDoctor(self.layer_names,
                                       run_points=-(-config.epochs * batches // config.log_every))
        self.monitor: FiringRateMonitor | None = None
        self._monitor_state: dict[str, Any] | None = None

    def _check_dataset(self, dataset: Any) -> None:
        """Refuse a dataset whose samples the model cannot take."""
        if tuple(dataset.x_train.shape[1:]) != tuple(self.model.spec.input_shape):
            raise ConfigError(
                f"dataset {dataset.name} has samples of shape {tuple(dataset.x_train.shape[1:])} but the "
                f"model expects {tuple(self.model.spec.input_shape)}")

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        params = self.model.parameters()
        if c.optimizer == "adam":
            return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
        return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_NAME

    def _data_identity(self) -> dict[str, Any]:
        """What decides the samples a run trains on: the dataset's name and split (subset included)."""
        return {"dataset": self.data.name, "split": getattr(self.data, "split", ""),
                "samples": [len(self.data.x_train), len(self.data.x_test)]}

    def _save(self, test_acc: float, train_acc: float) -> None:
        train = {
            "config": asdict(self.config),
            "data": self._data_identity(),
            "epoch": self.epoch,
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "history": self.history,
            "findings": [f.to_dict() for f in self.findings],
            "remedies": self.remedies,
            "regulariser_on": self.regulariser_on,
            "doctor": self.doctor.state_dict(),
            "monitor": self.monitor.state_dict() if self.monitor is not None else None,
        }
        if not self.parallel.is_main:  # one writer; the others wait until the files are complete
            self.parallel.barrier()
            return
        meta = {"dataset": self.data.name, "split": getattr(self.data, "split", ""),
                "test_accuracy": test_acc, "train_accuracy": train_acc}
        self._write_checkpoint(train, meta)
        lines = "".join(json.dumps(rec) + "\n" for rec in self.history)
        write_text(self.out_dir / METRICS_NAME, lines)
        self.parallel.barrier()

    def _write_checkpoint(self, train: dict[str, Any], meta: dict[str, Any]) -> None:
        """Write the model and the training record ``train`` to ``checkpoint.pt``."""
        Checkpoint.from_model(self.model, train, meta).save(self.checkpoint_path)

    def _restore_weights(self) -> dict[str, Any]:
        """Load ``checkpoint.pt``'s weights into the model (rebuilding remedied layers); its training record."""
        ck = load_checkpoint(self.checkpoint_path)
        if ck.spec.to_dict() != self.model.spec.to_dict() and not ck.spec.overrides:
            raise CheckpointError(f"{self.checkpoint_path} was trained with a different model spec")
        if ck.spec.overrides:  # remedies changed some layers: rebuild them first
            self.model.spec.overrides = ck.spec.overrides
            fresh = build_model(self.model.spec)
            self.model.stages = fresh.stages.to(self.device)
            self.optimizer = self._make_optimizer()
            if self.scheduler is not None:
                self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                    self.optimizer, T_max=self.config.epochs)
        self.model.load_state_dict(ck.state_dict)
        return ck.train

    def resume(self) -> None:
        """Continue from ``checkpoint.pt`` in ``out_dir`` (weights, optimizer, schedule, history)."""
        tr = self._restore_weights()
        stored = tr.get("config") if isinstance(tr.get("config"), dict) else {}
        changed = [f"{k} {stored[k]!r} -> {v!r}" for k, v in asdict(self.config).items()
                   if k not in RESUME_MAY_CHANGE and k in stored and stored[k] != v]
        if changed:
            raise ConfigError(f"{self.checkpoint_path} was trained with other settings ({'; '.join(changed)}); "
                              "a resumed run keeps its settings: drop those options or start a new run")
        data = tr.get("data")
        if isinstance(data, dict) and data != self._data_identity():
            raise ConfigError(f"{self.checkpoint_path} was trained on other data ({data['dataset']}: "
                              f"{data.get('split')}); a resumed run keeps its data: give the same --dataset "
                              "and --limit or start a new run")
        try:
            self.optimizer.load_state_dict(tr["optimizer"])
            if self.scheduler is not None and tr.get("scheduler"):
                self.scheduler.load_state_dict(tr["scheduler"])
            self.epoch = int(tr["epoch"])
            self.step = int(tr["step"])
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{self.checkpoint_path} has no resumable training state ({exc})") \
                from None
        self.history = list(tr.get("history", []))
        self.findings = [Finding(**f) for f in tr.get("findings", [])]
        self.remedies = list(tr.get("remedies", []))
        self.regulariser_on = bool(tr.get("regulariser_on", self.regulariser_on))
        self.layer_names = [n for n, _ in spiking_layers(self.model)]
        self.doctor.layer_names = list(self.layer_names)
        if tr.get("doctor"):
            self.doctor.load_state_dict(tr["doctor"])
        self._monitor_state = tr.get("monitor")

    # ------------------------------------------------------------------ training
    def _regulariser(self) -> torch.Tensor:
        c = self.config
        total = torch.zeros(())
        for _, layer in spiking_layers(self.model):
            if layer.rate is not None:
                total = total + c.lambda_low * torch.clamp(c.theta_low - layer.rate, min=0).pow(2).mean()
        return total

    def _log_point(self, mon: FiringRateMonitor, kind: str = "batch", **extra: Any) -> dict[str, Any]:
        rec = {"kind": kind, "epoch": self.epoch + (0 if kind == "epoch" else 1), "step": self.step,
               "layers": mon.point(), **extra}
        self.history.append(rec)
        return rec

    def _consult_doctor(self, mon: FiringRateMonitor) -> None:
        batch_points = [h for h in self.history if h["kind"] == "batch" and h["layers"]]
        found = self.doctor.examine(batch_points)
        new = [f for f in found if (f.layer, f.kind) not in {(g.layer, g.kind) for g in self.findings}]
        self.findings.extend(new)
        for f in new:
            if self.progress:
                tqdm.write(f"doctor: {f}", file=sys.stderr)
        if not self.config.auto_remedy or not batch_points:
            return
        # a layer found silent before training counts as sick while it is still silent
        last = batch_points[-1]["layers"]
        silent = [f for f in self.findings if f.kind == "init_silent" and f.layer in last
                  and last[f.layer]["dead"] > self.doctor.config.dead_alarm]
        measured, started = self.doctor.treat(self.model, batch_points, found + silent,
                                              self.config.max_remedies)
        for trial in (measured, started):
            if trial is not None and self.progress:
                tqdm.write(f"remedy: {trial}", file=sys.stderr)
        if started is not None:
            if started.remedy == "activity_regulariser":
                self.regulariser_on = True
            self._record_overrides()
            mon.reset_window()
            # the optimizer's running moments were gathered under the old gradient scale (a
            # surrogate 100× taller, a silent layer): start them afresh, as for a new run
            self.optimizer.state.clear()
        self.remedies = [str(t) for t in self.doctor.trials] + \
            ([str(self.doctor.pending)] if self.doctor.pending else [])

    def _record_overrides(self) -> None:
        """Write changed per-layer neuron settings into the spec, so checkpoints rebuild them."""
        spec = self.model.spec
        for name, layer in spiking_layers(self.model):
            base = spec.neuron
            cfg = layer.config.to_dict()
            cfg["surrogate"] = layer.surrogate.config()
            cfg["threshold"] = float(layer.threshold)
            diff = {k: v for k, v in cfg.items() if base.get(k) != v}
            if "surrogate" in diff and isinstance(layer.surrogate, AdaLi):
                # the schedule position is set per epoch, not stored
                diff["surrogate"] = {k: v for k, v in diff["surrogate"].items()
                                     if k not in ("epoch", "total_epochs")}
            if diff:
                spec.overrides[name] = diff

    def _diverged(self, epoch: int, what: str) -> None:
        """Stop on a non-finite loss or gradient; the checkpoint of the last finished epoch stays."""
        kept = (f"the last good checkpoint (epoch {self.epoch}) is kept in {self.checkpoint_path}"
                if self.checkpoint_path.exists() else "no epoch had finished, so no checkpoint was written")
        raise NumericError(f"training diverged at epoch {epoch + 1}, step {self.step}: {what} is not finite; "
                           f"{kept}; lower --lr or check the surrogate parameters")

    def fit(self, resume: bool = False) -> TrainResult:
        """Train for ``config.epochs`` epochs (continuing from the checkpoint if ``resume``)."""
        c = self.config
        torch.set_num_threads(c.threads)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if resume and self.checkpoint_path.exists():  # killed before the first epoch ended: start fresh
            self.resume()
        start = time.perf_counter()
        par = self.parallel
        x, y = self.data.x_train.to(self.device), self.data.y_train.to(self.device)
        x_test, y_test = self.data.x_test.to(self.device), self.data.y_test.to(self.device)
        n = len(x)
        if n == 0:
            raise ConfigError(f"dataset {self.data.name} has no training samples")
        for _, layer in spiking_layers(self.model):
            layer.track_rate = True
        if self.epoch == 0 and not self.history:
            for f in init_scale_check(self.model, x[: c.batch_size]):
                self.findings.append(f)
        # AdaLi automatic initial bounds from the potential distribution
        self._calibrate_adali(x[: c.batch_size])
        mon = FiringRateMonitor(self.model, window=c.monitor_window)
        if self._monitor_state:
            mon.load_state_dict(self._monitor_state)
        self.monitor = mon
        step_module = wrap(self.model, par)
        test_acc = train_acc = 0.0
        for epoch in range(self.epoch, c.epochs):
            set_epoch(self.model, epoch + 1, c.epochs)
            self.model.train()
            order = torch.randperm(n, generator=_epoch_generator(c.seed, epoch, 1))
            enc_gen = _epoch_generator(c.seed, epoch, 2)
            batches = range(0, n, c.batch_size)
            bar = tqdm(batches, desc=f"epoch {epoch + 1}/{c.epochs}", disable=not self.progress,
                       leave=False, unit="batch")
            correct, seen, loss_sum = 0, 0, 0.0
            for i in bar:
                idx = order[i : i + c.batch_size].to(self.device)
                # every rank encodes the whole global batch (the spikes one process draws), keeps its share
                part, weight = shard(len(idx), par.rank, par.world_size)
                seq = self.model.encode(x[idx], generator=enc_gen)[:, part]
                yy = y[idx][part]
                logits = step_module(seq)
                loss = nn.functional.cross_entropy(logits, yy)
                total = loss * weight if par.active else loss
                if self.regulariser_on:
                    total = total + self._regulariser()
                finite = torch.isfinite(total.detach()).to(torch.float32)
                if par.active:
                    torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
                if not bool(finite):
                    self._diverged(epoch, "the loss")
                self.optimizer.zero_grad(set_to_none=True)
                total.backward()
                if not all(bool(torch.isfinite(p.grad).all()) for p in self.model.parameters()
                           if p.grad is not None):
                    self._diverged(epoch, "a gradient")
                self.optimizer.step()
                reduce_layer_stats(mon.layers, par)
                mon.observe()
                if weight > 0:
                    correct += int((logits.argmax(1) == yy).sum())
                    seen += len(yy)
                    loss_sum += float(loss.detach()) * len(yy)
                if self.step % c.log_every == 0:
                    self._log_point(mon, "batch", loss=self._global_loss(loss, weight))
                    if c.doctor:
                        self._consult_doctor(mon)
                self.step += 1
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
            if self.scheduler is not None:
                self.scheduler.step()
            self.epoch = epoch + 1
            correct, seen, loss_sum = self._sum_over_ranks(correct, seen, loss_sum)
            train_acc = correct / max(seen, 1)
            test_acc, test_loss = evaluate(self.model, x_test, y_test)
            self.history.append({"kind": "epoch", "epoch": self.epoch, "step": self.step,
                                 "train_loss": loss_sum / max(seen, 1), "train_accuracy": train_acc,
                                 "test_loss": test_loss, "test_accuracy": test_acc,
                                 "density": self._density(), "seconds": time.perf_counter() - start})
            if self.progress:
                tqdm.write(f"epoch {self.epoch}/{c.epochs}: loss {loss_sum / max(seen, 1):.4f} "
                           f"train {100 * train_acc:.2f}% test {100 * test_acc:.2f}%", file=sys.stderr)
            if self.epoch == c.epochs and self.doctor.pending is not None:
                # the run ends while a remedy is being measured: measure it on what followed
                points = [h for h in self.history if h["kind"] == "batch" and h["layers"]]
                self.doctor.conclude(points, self.doctor.examine(points))
                self.remedies = [str(t) for t in self.doctor.trials]
            self._save(test_acc, train_acc)
        mon.enable(False)
        for _, layer in spiking_layers(self.model):
            layer.track_rate = False
            layer.rate = None
        if self.epoch == c.epochs and not any(h["kind"] == "epoch" for h in self.history):
            test_acc, _ = evaluate(self.model, x_test, y_test)
        last = next((h for h in reversed(self.history) if h["kind"] == "epoch"), {})
        return TrainResult(self.checkpoint_path, last.get("test_accuracy", test_acc),
                           last.get("train_accuracy", train_acc), self.epoch,
                           time.perf_counter() - start, self.history,
                           [f.to_dict() for f in self.findings], self.remedies,
                           [t.to_dict() for t in self.doctor.trials])

    def _global_loss(self, loss: torch.Tensor, weight: float) -> float:
        """Mean loss over the global batch (this rank's loss when training alone)."""
        if not self.parallel.active:
            return float(loss.detach())
        v = (loss.detach() * weight).double()
        torch.distributed.all_reduce(v)
        return float(v) / self.parallel.world_size

    def _sum_over_ranks(self, correct: int, seen: int, loss_sum: float) -> tuple[int, int, float]:
        if not self.parallel.active:
            return correct, seen, loss_sum
        v = torch.tensor([correct, seen, loss_sum], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(v)
        return int(v[0]), int(v[1]), float(v[2])

    def _density(self) -> dict[str, float]:
        """Computational density of the epoch's last logging point, per layer."""
        for rec in reversed(self.history):
            if rec["kind"] == "batch" and rec["layers"]:
                return {k: v["density"] for k, v in rec["layers"].items()}
        return {}

    def _calibrate_adali(self, xb: torch.Tensor) -> None:
        layers = [(n, lay) for n, lay in spiking_layers(self.model)
                  if isinstance(lay.surrogate, AdaLi) and lay.surrogate.auto_coverage is not None]
        if not layers or self.epoch > 0:
            return
        mon = FiringRateMonitor(self.model, window=1)
        with torch.no_grad():
            self.model(xb)
        for _, layer in layers:
            if layer.stats:
                layer.surrogate.calibrate(layer.stats["m_sample"].double() - 1.0)
        mon.enable(False)
        for _, layer in spiking_layers(self.model):
            layer.stats = {}


def train_model(model: SpikingNet, dataset: Any, config: TrainConfig, out_dir: str | Path,
                resume: bool = False, progress: bool | None = None, device: str = "cpu",
                parallel: Parallel | None = None) -> TrainResult:
    """Train ``model`` on ``dataset``; see :class:`Trainer`."""
    return Trainer(model, dataset, config, out_dir, progress, device, parallel).fit(resume=resume)


def finite_or_none(v: float) -> float | None:
    """JSON-friendly float (``None`` for NaN/inf)."""
    return v if math.isfinite(v) else None
