"""Run configuration: ``[model]``, ``[data]`` and ``[train]`` tables, from TOML or from options.

Unknown keys and wrong types are refused with a one-line :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import tomllib

from neurodeploy.errors import ConfigError
from neurodeploy.limits import check_run_bounds
from neurodeploy.models import ModelSpec

OPTIMIZERS = ("adam", "sgd")
SCHEDULERS = ("cosine", "none")


@dataclass
class TrainConfig:
    """Optimisation settings.

    Attributes:
        epochs: passes over the training set.
        batch_size: samples per optimiser step.
        lr: learning rate; ``momentum``/``weight_decay`` as in torch's optimisers.
        optimizer: ``"adam"`` or ``"sgd"``; ``scheduler``: ``"cosine"`` (to 0) or ``"none"``.
        seed: seeds weights, shuffling and rate-encoding spikes.
        threads: torch CPU threads.
        log_every: batches between monitor logging points (one point is also logged at step 0).
        monitor_window: batches over which the dead/saturated fractions are measured.
        doctor: run the dead-neuron doctor at every logging point.
        auto_remedy: let the doctor apply its remedies when it finds dead or collapsing layers.
        max_remedies: how many remedies (one at a time) the doctor may apply in one run.
        activity_regulariser: switch the lower-bound activity regulariser on from the start.
        theta_low: its lower bound on each neuron's rate (spikes/step); ``lambda_low`` its weight.
    """

    epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    scheduler: str = "cosine"
    seed: int = 0
    threads: int = 2
    log_every: int = 10
    monitor_window: int = 20
    doctor: bool = True
    auto_remedy: bool = False
    max_remedies: int = 6
    activity_regulariser: bool = False
    theta_low: float = 0.02
    lambda_low: float = 1.0

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            default = f.default
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif isinstance(default, float):
                ok = isinstance(value, int | float) and not isinstance(value, bool)
            else:
                ok = isinstance(value, str)
            if not ok:
                raise ConfigError(f"train.{f.name} must be of type {type(default).__name__}, got {value!r}")
        check_run_bounds("train.", epochs=self.epochs, batch_size=self.batch_size, seed=self.seed)
        if not self.lr > 0:
            raise ConfigError(f"train.lr must be positive, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"unknown scheduler {self.scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
        if self.threads < 1 or self.log_every < 1 or self.monitor_window < 1:
            raise ConfigError("train.threads, train.log_every and train.monitor_window must be >= 1")
        for name, lo, hi in (("lr", 0.0, 1.0), ("momentum", 0.0, 1.0), ("weight_decay", 0.0, 1.0),
                             ("theta_low", 0.0, 1.0), ("lambda_low", 0.0, 1e6)):
            value = float(getattr(self, name))
            if not math.isfinite(value) or not lo <= value <= hi:
                raise ConfigError(f"train.{name} must be a finite number in {lo:g}..{hi:g}, got {value:g}")


@dataclass
class DataConfig:
    """Which dataset to train on: a registered name, an optional folder and an optional size limit."""

    name: str = "digits"
    root: str | None = None
    limit: int | None = None


@dataclass
class RunConfig:
    """A whole training run."""

    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.to_dict(), "data": asdict(self.data), "train": asdict(self.train)}


def _table(d: Any, name: str, cls: type) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise ConfigError(f"[{name}] must be a table")
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ConfigError(f"[{name}] has unknown key(s) {', '.join(sorted(unknown))}; "
                          f"known keys: {', '.join(sorted(known))}")
    return d


def run_config_from_dict(d: dict[str, Any]) -> RunConfig:
    """Validate and build a :class:`RunConfig` from plain data."""
    unknown = set(d) - {"model", "data", "train"}
    if unknown:
        raise ConfigError(f"config has unknown table(s) {', '.join(sorted(unknown))}; "
                          "expected [model], [data], [train]")
    model = ModelSpec.from_dict(_table(d.get("model", {}), "model", ModelSpec))
    data_d = _table(d.get("data", {}), "data", DataConfig)
    for key, typ in (("name", str), ("root", str), ("limit", int)):
        if key in data_d and data_d[key] is not None and (
            not isinstance(data_d[key], typ) or isinstance(data_d[key], bool)
        ):
            raise ConfigError(f"data.{key} must be of type {typ.__name__}, got {data_d[key]!r}")
    train = TrainConfig(**_table(d.get("train", {}), "train", TrainConfig))
    return RunConfig(model, DataConfig(**data_d), train)


def load_run_config(path: str | Path) -> RunConfig:
    """Read a TOML run configuration; a missing or malformed file raises :class:`ConfigError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {type(exc).__name__}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    try:
        return run_config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


#: Bytes per parameter while training: the float32 weight, its gradient and Adam's two moments.
TRAINING_BYTES_PER_PARAMETER = 16


def available_memory() -> int | None:
    """Bytes of memory this machine has (``None`` where the platform does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_model_size(spec: ModelSpec) -> int:
    """Count the parameters of the network ``spec`` describes without allocating them (built on
    torch's ``meta`` device) and refuse, in one line, a network whose training state (weights,
    gradients, optimiser moments) cannot fit in this machine's memory. Returns the parameter
    count."""
    import torch

    from neurodeploy.errors import ResourceError
    from neurodeploy.models import build_model

    with torch.device("meta"):
        model = build_model(spec)
    params = sum(p.numel() for p in model.parameters())
    need = params * TRAINING_BYTES_PER_PARAMETER
    have = available_memory()
    if have is not None and need > have:
        raise ResourceError(f"the network needs about {need / 1e9:.3g} GB of memory to train ({params:,} parameters) "
                            f"but this machine has {have / 1e9:.3g} GB; use smaller --hidden widths")
    return params
