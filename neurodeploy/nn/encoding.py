"""Input encoders: samples ``[B, ...]`` with values in [0, 1] → sequences ``[T, B, ...]``.

* ``direct``: the analogue sample repeated at every step (optionally rounded to ``bits`` bits, which is
  what a chip with graded input spikes receives).
* ``rate``: Bernoulli spikes with probability equal to the value, drawn from a seeded generator so
  that training, the simulator and exports see the same spikes. At evaluation time every sample
  draws from a generator of its own, seeded from the encoding seed and the sample's index
  (:func:`sample_seed`), so any subset or batching of a test split sees the same spikes as the whole.
* ``latency``: one spike per input at step ``round((1 - x) (T - 1))``; values at or below
  ``min_value`` never spike (bright pixels spike early).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from neurodeploy.errors import ConfigError

ENCODINGS = ("direct", "rate", "latency")


@dataclass(frozen=True)
class Encoding:
    """How samples become input sequences.

    Attributes:
        kind: ``"direct"``, ``"rate"`` or ``"latency"``.
        bits: for ``direct``: round values to ``2**bits - 1`` levels (``None`` keeps floats).
        min_value: for ``latency``: values ``<= min_value`` emit no spike.
        seed: for ``rate``: seed of the spike generator used at evaluation time.
    """

    kind: str = "direct"
    bits: int | None = None
    min_value: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if self.kind not in ENCODINGS:
            raise ConfigError(f"unknown encoding {self.kind!r}; choose one of {', '.join(ENCODINGS)}")
        if self.bits is not None and (
            not isinstance(self.bits, int) or isinstance(self.bits, bool) or not 1 <= self.bits <= 16
        ):
            raise ConfigError(f"encoding bits must be an integer in 1..16, got {self.bits!r}")

    @classmethod
    def from_config(cls, cfg: str | dict[str, Any] | Encoding) -> Encoding:
        """Build from a name or a table; unknown keys raise :class:`ConfigError`."""
        if isinstance(cfg, Encoding):
            return cfg
        if isinstance(cfg, str):
            cfg = {"kind": cfg}
        if not isinstance(cfg, dict):
            raise ConfigError(f"an encoding must be a name or a table, got {cfg!r}")
        unknown = set(cfg) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"encoding has unknown key(s) {', '.join(sorted(unknown))}")
        return cls(**cfg)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def binary(self) -> bool:
        """Whether the encoded input is binary spikes (rate, latency) rather than graded values."""
        return self.kind != "direct"


def encode(x: torch.Tensor, steps: int, encoding: Encoding | str = "direct",
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Encode samples ``x`` (``[B, ...]``, values in [0, 1]) into ``[steps, B, ...]``.

    Args:
        x: input batch, values in [0, 1].
        steps: number of time steps ``T`` (``>= 1``).
        encoding: an :class:`Encoding` or its name.
        generator: random generator for ``rate`` (a fresh one seeded with ``encoding.seed`` if None).
    """
    enc = Encoding.from_config(encoding)
    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"the number of time steps must be a positive integer, got {steps!r}")
    x = x.clamp(0.0, 1.0)
    if enc.kind == "direct":
        if enc.bits is not None:
            levels = 2**enc.bits - 1
            x = torch.round(x * levels) / levels
        return x.unsqueeze(0).expand(steps, *x.shape)
    if enc.kind == "rate":
        if generator is None:
            generator = torch.Generator(device="cpu").manual_seed(enc.seed)
        u = torch.rand((steps, *x.shape), generator=generator, device="cpu").to(x.device, x.dtype)
        return (u < x.unsqueeze(0)).to(x.dtype)
    # latency
    t_spike = torch.round((1.0 - x) * (steps - 1)).long()
    t = torch.arange(steps, device=x.device).view(steps, *([1] * x.dim()))
    fire = (x > enc.min_value).unsqueeze(0)
    return ((t == t_spike.unsqueeze(0)) & fire).to(x.dtype)


def encode_integers(x: torch.Tensor, steps: int, encoding: Encoding | str | dict,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Encode samples as the integer events a chip receives: int64 ``[B, steps, ...]``.

    ``direct`` with ``bits``: graded values ``round(x * (2**bits - 1))`` at every step (the float
    model sees the same values divided by ``2**bits - 1``); ``rate``/``latency``: the binary spikes
    :func:`encode` draws (with the same generator, the spikes the float model saw).
    """
    enc = Encoding.from_config(encoding)
    if enc.kind == "direct":
        if enc.bits is None:
            raise ConfigError("direct float input has no integer form; give the encoding a bit width")
        if not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"the number of time steps must be a positive integer, got {steps!r}")
        q = torch.round(x.clamp(0, 1).double() * (2**enc.bits - 1)).to(torch.int64)
        return q.unsqueeze(1).expand(q.shape[0], steps, *q.shape[1:]).contiguous()
    return encode(x, steps, enc, generator).transpose(0, 1).to(torch.int64).contiguous()


def events_as_sequence(events: torch.Tensor, steps: int, encoding: Encoding | str | dict) -> torch.Tensor:
    """The float input sequence ``[steps, B, ...]`` of input event samples ``[B, T, ...]`` (a
    temporal task whose samples are already what the chip receives: spikes, or graded payloads in
    ``0 .. 2**bits - 1``): the first ``steps`` steps, graded payloads divided by ``2**bits - 1``."""
    enc = Encoding.from_config(encoding)
    if events.dim() < 2 or events.shape[1] < steps:
        raise ConfigError(f"input event samples [B, T, ...] need T >= {steps} steps, got {list(events.shape)}")
    seq = events[:, :steps].transpose(0, 1).to(torch.float32)
    levels = graded_levels(enc)
    return seq / levels if levels is not None else seq


def graded_levels(encoding: Encoding) -> int | None:
    """Number of integer levels of a graded (direct) input, or ``None`` for float/binary inputs."""
    if encoding.kind == "direct" and encoding.bits is not None:
        return 2**encoding.bits - 1
    return None


def sample_seed(seed: int, index: int) -> int:
    """The seed of sample ``index``'s own generator under run seed ``seed`` (a 63-bit integer mixed
    by numpy's ``SeedSequence``, so neighbouring indices and seeds give unrelated streams)."""
    import numpy as np

    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, int(index)]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def encode_samples(x: torch.Tensor, steps: int, encoding: Encoding | str | dict, start: int = 0,
                   integers: bool = True) -> torch.Tensor:
    """Encode samples ``x`` (indices ``start .. start + len(x) - 1`` of their split), each from its
    own generator (:func:`sample_seed` of ``encoding.seed`` and the index): int64 chip events
    ``[B, steps, ...]`` (``integers=True``, as :func:`encode_integers`) or the float sequence
    ``[steps, B, ...]`` the float model sees (graded values divided by ``2**bits - 1``).

    The spikes of a sample depend only on its value and its index, never on which other samples are
    encoded with it.
    """
    enc = Encoding.from_config(encoding)
    if enc.kind != "rate":  # deterministic encodings need no generator
        if integers:
            return encode_integers(x, steps, enc)
        seq = encode(x, steps, enc)
        return seq
    rows = []
    for i in range(x.shape[0]):
        gen = torch.Generator(device="cpu").manual_seed(sample_seed(enc.seed, start + i))
        rows.append(encode(x[i : i + 1], steps, enc, gen))
    seq = torch.cat(rows, dim=1) if rows else encode(x, steps, enc)
    if integers:
        return seq.transpose(0, 1).to(torch.int64).contiguous()
    return seq
