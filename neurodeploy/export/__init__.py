"""neurodeploy.export: writers (and readers) of exchange formats.

Submodules are imported on first use, so ``import neurodeploy.export`` stays cheap and does not
pull in h5py or onnx:

* :mod:`neurodeploy.export.netx`: Lava netx HDF5 (``.net``) of a loihi-family deployment graph;
* :mod:`neurodeploy.export.onnx_export`: ONNX step / sequence graphs of a float SpikingNet.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    # netx (Lava HDF5)
    "export_netx": "neurodeploy.export.netx",
    "read_netx": "neurodeploy.export.netx",
    "export_checkpoint_netx": "neurodeploy.export.netx",
    "lower_checkpoint": "neurodeploy.export.netx",
    "netx_dense_mapping": "neurodeploy.export.netx",
    "NetxExport": "neurodeploy.export.netx",
    # ONNX
    "export_onnx": "neurodeploy.export.onnx_export",
    "read_onnx": "neurodeploy.export.onnx_export",
    "run_onnx_sequence": "neurodeploy.export.onnx_export",
    "onnx_input_sequence": "neurodeploy.export.onnx_export",
    "export_checkpoint_onnx": "neurodeploy.export.onnx_export",
    "OnnxFile": "neurodeploy.export.onnx_export",
    "OnnxRun": "neurodeploy.export.onnx_export",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'neurodeploy.export' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
