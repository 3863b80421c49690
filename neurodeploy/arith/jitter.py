"""Spike-time jitter: displace every spike by a random whole number of time steps.

A spike raster has a time axis (axis 1 by default, ``[B, T, ...]``). Every non-zero entry (a
spike, an event count or a graded payload) is moved as one unit by an independent random shift:

- ``{"kind": "uniform", "max_shift": k}`` (or just the integer ``k``): uniform in ``[-k, k]``;
- ``{"kind": "gaussian", "sigma": s}``: a normal sample with standard deviation ``s`` steps,
  rounded to the nearest integer (half to even), optionally limited to ``[-max_shift, max_shift]``
  with ``"max_shift"``.

The new time is clipped to the window ``[0, T-1]``: a spike pushed before the first step lands on
step 0, one pushed past the last step lands on step ``T-1``. Spikes of the same neuron that land
on the same step **merge** into one entry holding the largest of their values, so the number of
non-zero entries can only shrink, by the number of such coincidences, and graded values stay in
range. Shifts are drawn in the raster's element order (C order of the non-zero entries), so a
seeded generator gives the same result on numpy and on torch.

Works on numpy arrays and torch tensors; the generator may be a ``numpy.random.Generator``, an
integer seed or a ``torch.Generator`` (draws then come from torch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from neurodeploy.arith import ops
from neurodeploy.arith.ops import Array
from neurodeploy.errors import ConfigError


@dataclass(frozen=True)
class JitterSpec:
    """A shift distribution in time steps: ``kind`` uniform (``max_shift``) or gaussian (``sigma``,
    optional ``max_shift`` bound)."""

    kind: str = "uniform"
    max_shift: int | None = 0
    sigma: float = 0.0

    def is_null(self) -> bool:
        """True if the spec never moves a spike."""
        if self.kind == "uniform":
            return not self.max_shift
        return self.sigma == 0.0 or self.max_shift == 0


@dataclass(frozen=True)
class JitterConfig:
    """Where jitter is applied in a simulation: the input raster and/or every spiking layer."""

    input: JitterSpec | None = None
    layers: JitterSpec | None = None


def parse_spec(spec: Any) -> JitterSpec:
    """Turn an int ``k``, a dict or a :class:`JitterSpec` into a validated :class:`JitterSpec`.

    Raises :class:`ConfigError` with a one-line message on a malformed spec.
    """
    if isinstance(spec, JitterSpec):
        raw = {"kind": spec.kind, "max_shift": spec.max_shift}
        if spec.kind != "uniform":
            raw["sigma"] = spec.sigma
    elif isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        raw = {"kind": "uniform", "max_shift": int(spec)}
    elif isinstance(spec, dict):
        raw = dict(spec)
    else:
        raise ConfigError(
            f"jitter spec must be an integer max shift or a dict, got {type(spec).__name__}"
        )
    kind = raw.pop("kind", "uniform")
    unknown = set(raw) - {"max_shift", "sigma"}
    if unknown:
        raise ConfigError(f"jitter spec: unknown key(s) {sorted(unknown)}; "
                          "expected kind, max_shift, sigma")
    max_shift = raw.get("max_shift")
    if max_shift is not None and (
        isinstance(max_shift, bool) or not isinstance(max_shift, (int, np.integer))
        or max_shift < 0
    ):
        raise ConfigError(f"jitter max_shift must be a non-negative integer (steps), "
                          f"got {max_shift!r}")
    if kind == "uniform":
        if max_shift is None:
            raise ConfigError("uniform jitter needs max_shift (steps)")
        if "sigma" in raw:
            raise ConfigError("uniform jitter takes max_shift only, not sigma")
        return JitterSpec("uniform", int(max_shift), 0.0)
    if kind == "gaussian":
        sigma = raw.get("sigma")
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.integer, np.floating)) \
                or not math.isfinite(float(sigma)) or sigma < 0:
            raise ConfigError(f"gaussian jitter needs a finite sigma >= 0 (steps), got {sigma!r}")
        return JitterSpec("gaussian", None if max_shift is None else int(max_shift), float(sigma))
    raise ConfigError(f"unknown jitter kind {kind!r}; expected 'uniform' or 'gaussian'")


def parse_config(obj: Any) -> JitterConfig | None:
    """Parse the simulator's ``jitter=`` argument.

    ``None`` means no jitter; a bare spec (int or dict with ``kind``/``max_shift``/``sigma``)
    applies to the input and every spiking layer; ``{"input": spec|None, "layers": spec|None}``
    chooses; a :class:`JitterConfig` is returned as is.
    """
    if obj is None or isinstance(obj, JitterConfig):
        return obj
    if isinstance(obj, dict) and set(obj) & {"input", "layers"}:
        unknown = set(obj) - {"input", "layers"}
        if unknown:
            raise ConfigError(f"jitter config: unknown key(s) {sorted(unknown)}; "
                              "expected input, layers")
        inp = obj.get("input")
        lay = obj.get("layers")
        return JitterConfig(None if inp is None else parse_spec(inp),
                            None if lay is None else parse_spec(lay))
    spec = parse_spec(obj)
    return JitterConfig(spec, spec)


def _draw(spec: JitterSpec, n: int, rng: Any, ref: Array) -> Array:
    """Draw ``n`` integer shifts in ``ref``'s backend."""
    torch_rng = type(rng).__module__.split(".", 1)[0] == "torch"
    if torch_rng:
        import torch

        if spec.kind == "uniform":
            k = int(spec.max_shift or 0)
            shifts = torch.randint(-k, k + 1, (n,), generator=rng, dtype=torch.int64)
        else:
            shifts = torch.round(torch.normal(0.0, spec.sigma, (n,), generator=rng,
                                              dtype=torch.float64)).to(torch.int64)
            if spec.max_shift is not None:
                shifts = shifts.clamp(-spec.max_shift, spec.max_shift)
        return shifts.to(ref.device) if ops.is_torch(ref) else shifts.numpy()
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    if spec.kind == "uniform":
        k = int(spec.max_shift or 0)
        shifts = rng.integers(-k, k + 1, size=n, dtype=np.int64)
    else:
        shifts = np.rint(rng.normal(0.0, spec.sigma, size=n)).astype(np.int64)
        if spec.max_shift is not None:
            shifts = np.clip(shifts, -spec.max_shift, spec.max_shift)
    if ops.is_torch(ref):
        import torch

        return torch.as_tensor(shifts, device=ref.device)
    return shifts


def jitter_spikes(raster: Array, spec: Any, rng: Any, *, time_axis: int = 1) -> Array:
    """Return a copy of ``raster`` with every spike displaced in time (see the module docstring).

    Args:
        raster: spikes, event counts or non-negative payloads; numpy array or torch tensor.
        spec: an int ``k`` (uniform in ``[-k, k]`` steps), a dict or a :class:`JitterSpec`.
        rng: ``numpy.random.Generator``, integer seed or ``torch.Generator``.
        time_axis: the axis that counts time steps.

    Returns:
        A raster of the same shape, dtype and backend.
    """
    spec = parse_spec(spec)
    if spec.is_null():
        return raster.clone() if ops.is_torch(raster) else np.array(raster, copy=True)
    if ops.is_torch(raster):
        import torch

        idx = list(torch.nonzero(raster, as_tuple=True))
        vals = raster[tuple(idx)]
        n_steps = int(raster.shape[time_axis])
        shifts = _draw(spec, int(vals.numel()), rng, raster)
        idx[time_axis] = (idx[time_axis] + shifts).clamp(0, n_steps - 1)
        out = torch.zeros(tuple(raster.shape), dtype=raster.dtype, device=raster.device)
        strides = torch.tensor(
            [int(np.prod(raster.shape[i + 1:])) for i in range(raster.dim())],
            dtype=torch.int64, device=raster.device,
        )
        lin = sum(i.to(torch.int64) * s for i, s in zip(idx, strides, strict=True))
        if vals.numel():
            out.view(-1).scatter_reduce_(0, lin, vals, reduce="amax", include_self=True)
        return out
    x = np.asarray(raster)
    idx = list(np.nonzero(x))
    vals = x[tuple(idx)]
    n_steps = int(x.shape[time_axis])
    shifts = _draw(spec, int(vals.size), rng, x)
    idx[time_axis] = np.clip(idx[time_axis] + shifts, 0, n_steps - 1)
    out = np.zeros_like(x)
    np.maximum.at(out, tuple(idx), vals)
    return out
