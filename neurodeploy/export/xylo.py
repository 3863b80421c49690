"""Xylo chip specification export from a checkpoint: lower it for a ``xylo`` profile, then write
the integer specification with the family's writer (:mod:`neurodeploy.families.xylo.spec`)."""

from __future__ import annotations

from pathlib import Path

from neurodeploy.errors import UnsupportedError
from neurodeploy.families.xylo.spec import SpecExport, load_spec, write_spec
from neurodeploy.hardware import load_profile
from neurodeploy.quantize.record import QuantRecord
from neurodeploy.sim.deploy import load_deployable, lower_checkpoint


def export_checkpoint_spec(checkpoint: str | Path, path: str | Path, *, profile: str | None = None,
                           dataset: str | None = None, data_root: str | None = None,
                           weight_bits: int | None = None) -> SpecExport:
    """Lower a checkpoint (a template network's or a graph network's, e.g. with a self-recurrent
    hidden layer) for a ``xylo`` profile (``profile``, else a quantized checkpoint's own, else
    ``xylo``; see :func:`neurodeploy.sim.deploy.lower_checkpoint`) and write its spec."""
    record = QuantRecord.from_meta(load_deployable(checkpoint).meta)  # a template or graph network
    name = profile or (record.profile if record is not None else "xylo")
    p = load_profile(name)
    if p.family != "xylo":
        raise UnsupportedError(f"--format xylo writes profiles of the xylo family; profile "
                               f"{p.name} is of family {p.family!r}")
    graph = lower_checkpoint(checkpoint, profile=name, dataset=dataset, data_root=data_root,
                             weight_bits=weight_bits)
    out = write_spec(graph, path)
    return SpecExport(out, load_spec(out), graph)


__all__ = ["export_checkpoint_spec"]
