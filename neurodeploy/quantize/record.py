"""The quantization record: which profile, constraints and per-layer scales a network was
quantized with — stored in quantized checkpoints (``meta["quant"]``) and in deployment graphs.

:class:`QuantRecord` is the one reader and writer of that record, and
:meth:`QuantRecord.for_profile` the one rule for reusing stored scales:

* a record is reused for its own profile (or when no profile is asked for); asking for another
  profile starts afresh (new constraints, newly calibrated scales);
* constraints given on top of the record replace the stored ones; a new weight or state width
  (``weight_bits``, ``state_bits``) changes the number format, so the stored scales are dropped and
  recalibrated; jitter and the latency budget keep them.

Schema versions: 2 (this one) writes ``schema = 2``; a record without ``schema`` is version 1 (the
untyped dict of earlier releases: ``profile``, ``constraints``, ``scales`` and result figures),
read by :meth:`QuantRecord.from_meta` unchanged in meaning. Newer schemas are refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from neurodeploy.errors import FormatError
from neurodeploy.quantize.constraints import Constraints

QUANT_SCHEMA = 2
FORMAT_FIELDS = ("weight_bits", "state_bits")
"""Constraints that change the number format, so stored scales cannot be reused."""


def _finite(value: Any) -> Any:
    """``value`` with every infinite or NaN float replaced by ``None`` (JSON has no Infinity; a
    non-spiking read-out's threshold is infinite, and records written before this rule hold it)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


@dataclass(frozen=True)
class QuantRecord:
    """How a network was quantized.

    Attributes:
        profile: name of the hardware profile.
        constraints: the :class:`Constraints` it was quantized (and fine-tuned) under.
        scales: per synapse layer, integer units per float unit of membrane potential.
        results: figures measured when it was written (``float_accuracy``,
            ``deployed_accuracy``, ``ptq_accuracy``, a fine-tuning summary), JSON values.
        schema: the record's schema version.
    """

    profile: str
    constraints: Constraints = field(default_factory=Constraints)
    scales: tuple[float, ...] = ()
    results: dict[str, Any] = field(default_factory=dict)
    schema: int = QUANT_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (also what ``meta["quant"]`` holds): result figures at the top level,
        as schema 1 had them."""
        return {**_finite(self.results), "schema": self.schema, "profile": self.profile,
                "constraints": self.constraints.to_dict(), "scales": list(self.scales)}

    @classmethod
    def from_dict(cls, data: Any, where: str = "quantization record") -> QuantRecord:
        """Read a record of schema 1 or 2; raises :class:`FormatError` in one line otherwise."""
        if not isinstance(data, dict):
            raise FormatError(f"{where} must be a table, got {type(data).__name__}")
        schema = data.get("schema", 1)
        if schema not in (1, QUANT_SCHEMA):
            raise FormatError(f"{where} has schema {schema!r}; this neurodeploy reads schemas 1 "
                              f"and {QUANT_SCHEMA}")
        missing = [k for k in ("profile", "constraints", "scales") if k not in data]
        if missing:
            raise FormatError(f"{where} lacks {', '.join(missing)}")
        try:
            constraints = Constraints(**data["constraints"])
            scales = tuple(float(s) for s in data["scales"])
        except TypeError as exc:
            raise FormatError(f"{where}: malformed constraints or scales ({exc})") from None
        results = {k: v for k, v in data.items()
                   if k not in ("schema", "profile", "constraints", "scales")}
        return cls(str(data["profile"]), constraints, scales, results)

    @classmethod
    def from_meta(cls, meta: Any) -> QuantRecord | None:
        """The record of a checkpoint's ``meta`` (``None`` for a float checkpoint)."""
        q = meta.get("quant") if isinstance(meta, dict) else None
        return cls.from_dict(q, 'the checkpoint\'s meta["quant"]') if q else None

    def to_meta(self) -> dict[str, Any]:
        """``{"quant": ...}`` for a checkpoint's ``meta``."""
        return {"quant": self.to_dict()}

    def for_profile(self, profile: str | None, **given: Any
                    ) -> tuple[str | None, Constraints | None, list[float] | None]:
        """``(profile, constraints, scales)`` to deploy with (see the module docstring).

        Args:
            profile: the profile asked for (name or path), or ``None`` for the record's own.
            given: constraints given on top (``None`` values are ignored).

        Returns:
            The profile to use, the constraints (``None`` when nothing is stored or given) and
            the scales to reuse (``None``: calibrate).
        """
        given = {k: v for k, v in given.items() if v is not None}
        if profile is not None:
            from neurodeploy.hardware import load_profile

            if load_profile(profile).name != self.profile:
                return profile, Constraints(**given) if given else None, None
        scales: list[float] | None = list(self.scales)
        constraints = self.constraints
        if given:
            if any(k in given for k in FORMAT_FIELDS):
                scales = None  # a new number format needs new scales
            constraints = Constraints(**{**constraints.to_dict(), **given})
        return self.profile, constraints, scales


def deployment_settings(meta: Any, profile: str | None, **given: Any
                        ) -> tuple[str | None, Constraints, list[float] | None]:
    """Profile, constraints and scales to deploy a checkpoint with: its record's
    (:meth:`QuantRecord.for_profile`), or ``profile`` and the given constraints for a float one."""
    rec = QuantRecord.from_meta(meta)
    if rec is None:
        given = {k: v for k, v in given.items() if v is not None}
        return profile, Constraints(**given), None
    name, constraints, scales = rec.for_profile(profile, **given)
    return name, constraints or Constraints(), scales


__all__ = ["FORMAT_FIELDS", "QUANT_SCHEMA", "QuantRecord", "deployment_settings"]
