"""Lava netx HDF5 export and import: the ``loihi`` family's writer, kept at this import path, plus
the checkpoint-level entry points (lower a checkpoint, then write it).

The writer and reader live with the family, in :mod:`neurodeploy.families.loihi.netx`.
"""

from __future__ import annotations

from pathlib import Path

from neurodeploy.families.loihi.lava_process import LavaProcessExport, export_lava_process
from neurodeploy.families.loihi.netx import (  # noqa: F401  (public names of the writer)
    NETX_FORMAT,
    NETX_VERSION,
    NEVER_SPIKE_VTH,
    DenseMapping,
    NetxExport,
    export_netx,
    netx_dense_mapping,
    read_netx,
)
from neurodeploy.sim.deploy import lower_checkpoint


def export_checkpoint_lava_process(checkpoint: str | Path, path: str | Path, *, profile: str | None = None,
                                   dataset: str | None = None, data_root: str | None = None,
                                   weight_bits: int | None = None) -> LavaProcessExport:
    """Lower a checkpoint as :func:`export_checkpoint_netx` does and write its Lava process network
    (:mod:`neurodeploy.families.loihi.lava_process`)."""
    graph = lower_checkpoint(checkpoint, profile=profile, dataset=dataset, data_root=data_root,
                             weight_bits=weight_bits)
    return export_lava_process(graph, path)


def export_checkpoint_netx(checkpoint: str | Path, path: str | Path, *,
                           profile: str | None = None, dataset: str | None = None,
                           data_root: str | None = None, weight_bits: int | None = None,
                           graded_input: bool = False) -> NetxExport:
    """Lower a checkpoint (:func:`neurodeploy.sim.deploy.lower_checkpoint`) and write it with
    :func:`export_netx`."""
    graph = lower_checkpoint(checkpoint, profile=profile, dataset=dataset, data_root=data_root,
                             weight_bits=weight_bits)
    return export_netx(graph, path, graded_input=graded_input)
