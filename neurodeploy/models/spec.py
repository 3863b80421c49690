"""Model specifications: plain data that rebuilds a network without user code.

A :class:`ModelSpec` is stored in every checkpoint; :func:`neurodeploy.models.build_model` turns it
into a :class:`~neurodeploy.models.net.SpikingNet`.
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from neurodeploy.errors import ConfigError
from neurodeploy.nn.encoding import Encoding
from neurodeploy.nn.neurons import NeuronConfig

ARCHITECTURES = ("mlp", "convnet", "vgg")
READOUTS = ("mean", "spike_count")
POOLS = ("avg", "max", "none")

#: Rate-coded binary spikes: every Loihi profile takes them (float input has no integer form on any
#: chip, graded input needs Loihi 2 and a netx reader told its bit width), so the default network
#: simulates on every loihi-family profile and exports to netx as it is.
DEFAULT_ENCODING = {"kind": "rate"}

DEFAULT_HIDDEN = {"mlp": [128, 128], "convnet": [16, 32], "vgg": [16, 16, "P", 32, 32, "P"]}


MAX_STEPS = 1_000_000
"""Most time steps per sample a network may have (an input sequence of that many steps already
needs gigabytes per sample)."""

@dataclass
class ModelSpec:
    """Architecture, time steps, encoding and neuron dynamics of a spiking network.

    Attributes:
        arch: ``"mlp"``, ``"convnet"`` or ``"vgg"``.
        input_shape: per-sample input shape ``(C, H, W)`` (an MLP flattens it).
        num_classes: number of output classes.
        hidden: MLP layer widths, ConvNet channel counts, or a VGG list of channel counts and
            ``"P"`` (pooling).
        dense: hidden widths of the fully connected head of a ConvNet/VGG.
        kernel: convolution kernel size (pixels); ConvNet convolutions after the first use stride 2
            when ``pool="none"``.
        batch_norm: insert BatchNorm after each linear/conv layer (folded at deployment).
        pool: ``"avg"``, ``"max"`` (float only) or ``"none"``.
        bias: give linear/conv layers a bias.
        steps: number of time steps ``T`` per sample.
        encoding: input encoding (see :class:`~neurodeploy.nn.encoding.Encoding`); default
            :data:`DEFAULT_ENCODING`, rate-coded binary spikes.
        neuron: dynamics of every hidden spiking layer (see :class:`NeuronConfig`).
        readout: ``"mean"`` (time-averaged output currents, i.e. the potential of a non-leaky
            integrator divided by ``T``) or ``"spike_count"`` (spiking output layer, spike counts).
        overrides: per-layer neuron settings that differ from ``neuron``, keyed by stage name
            (e.g. ``{"stages.2": {"threshold": 0.5}}``); written by the dead-neuron doctor's remedies.
    """

    arch: str = "mlp"
    input_shape: tuple[int, ...] = (1, 8, 8)
    num_classes: int = 10
    hidden: list[Any] = field(default_factory=list)
    dense: list[int] = field(default_factory=list)
    kernel: int = 3
    batch_norm: bool = False
    pool: str = "none"
    bias: bool = True
    steps: int = 8
    encoding: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_ENCODING))
    neuron: dict[str, Any] = field(default_factory=dict)
    readout: str = "mean"
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"unknown model {self.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        if self.readout not in READOUTS:
            raise ConfigError(f"unknown read-out {self.readout!r}; choose one of {', '.join(READOUTS)}")
        if self.pool not in POOLS:
            raise ConfigError(f"unknown pooling {self.pool!r}; choose one of {', '.join(POOLS)}")
        shape = self.input_shape
        if not isinstance(shape, list | tuple | np.ndarray) or not all(
                isinstance(v, numbers.Integral) and not isinstance(v, bool | np.bool_)
                or (isinstance(v, float) and v.is_integer()) for v in shape):
            raise ConfigError(f"input_shape must be a list of positive integers, got {shape!r}")
        self.input_shape = tuple(int(v) for v in shape)
        if not self.input_shape or any(v < 1 for v in self.input_shape):
            raise ConfigError(f"input_shape must be positive integers, got {self.input_shape}")
        for key in ("hidden", "dense"):
            if not isinstance(getattr(self, key), list | tuple):
                raise ConfigError(f"{key} must be a list of widths, got {getattr(self, key)!r}")
        if not self.hidden:
            self.hidden = list(DEFAULT_HIDDEN[self.arch])
        for h in self.hidden:
            ok = (isinstance(h, int) and not isinstance(h, bool) and h > 0) or (h == "P" and self.arch == "vgg")
            if not ok:
                raise ConfigError(f"hidden entry {h!r} is not a positive width"
                                  + (" or 'P'" if self.arch == "vgg" else ""))
        for h in self.dense:
            if not isinstance(h, int) or isinstance(h, bool) or h <= 0:
                raise ConfigError(f"dense entry {h!r} is not a positive width")
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or not 1 <= self.steps <= MAX_STEPS:
            raise ConfigError(f"steps must be a positive integer up to {MAX_STEPS}, got {self.steps!r}")
        if not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ConfigError(f"num_classes must be an integer >= 2, got {self.num_classes!r}")
        if self.arch != "mlp" and len(self.input_shape) != 3:
            raise ConfigError(f"{self.arch} needs a (C, H, W) input, got {self.input_shape}")
        self.encoding = Encoding.from_config(self.encoding).to_dict()
        if isinstance(self.neuron, NeuronConfig):
            self.neuron = self.neuron.to_dict()
        if not isinstance(self.neuron, dict):
            raise ConfigError(f"neuron must be a table of neuron settings (e.g. model = \"lif\", tau = 10), "
                              f"got {self.neuron!r}")
        unknown = set(self.neuron) - set(NeuronConfig.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"neuron has unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        self.neuron = NeuronConfig(**self.neuron).to_dict()
        if not isinstance(self.overrides, dict):
            raise ConfigError("overrides must be a table of per-layer neuron settings")
        for name in self.overrides:
            self.layer_neuron_config(name)  # validates

    def layer_neuron_config(self, stage_name: str) -> NeuronConfig:
        """Neuron settings of the spiking stage ``stage_name`` (``neuron`` plus its overrides)."""
        over = self.overrides.get(stage_name, {})
        if not isinstance(over, dict):
            raise ConfigError(f"override of {stage_name} must be a table")
        unknown = set(over) - set(NeuronConfig.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"override of {stage_name} has unknown key(s) {', '.join(sorted(unknown))}")
        return NeuronConfig(**{**self.neuron, **over})

    @property
    def neuron_config(self) -> NeuronConfig:
        return NeuronConfig(**self.neuron)

    @property
    def encoding_config(self) -> Encoding:
        return Encoding.from_config(self.encoding)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        """Build from plain data; unknown keys raise :class:`ConfigError`."""
        if not isinstance(d, dict):
            raise ConfigError(f"a model spec must be a table, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"model spec has unknown key(s) {', '.join(sorted(unknown))}")
        neuron = d.get("neuron", {})
        if isinstance(neuron, dict):
            unknown_n = set(neuron) - set(NeuronConfig.__dataclass_fields__)
            if unknown_n:
                raise ConfigError(f"neuron config has unknown key(s) {', '.join(sorted(unknown_n))}")
        try:
            return cls(**d)
        except TypeError as exc:
            raise ConfigError(f"invalid model spec: {exc}") from None
