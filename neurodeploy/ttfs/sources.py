"""Load the ReLU network a TTFS conversion starts from: an ONNX file or a saved ``nn.Sequential``.

A ``.pt`` file must hold a whole ``torch.nn.Sequential`` (``torch.save(model, path)``) made of the
layers :mod:`neurodeploy.ttfs.mapping` supports. It is opened with ``weights_only=True`` and an
allow-list of exactly those layer classes, so loading never runs code; a file holding anything
else (a custom ``nn.Module`` subclass, a bare ``state_dict``, a neurodeploy spiking checkpoint) is
refused with a one-line error saying what it holds.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from neurodeploy.errors import ConfigError, FormatError, UnsupportedError
from neurodeploy.train.checkpoint import TORCH_LOAD_ERRORS
from neurodeploy.ttfs.onnx_import import load_onnx_relu
from neurodeploy.ttfs.relu_modules import MinMaxPool2d, PositionBias

#: Layer classes a saved ReLU ``nn.Sequential`` may contain.
SAFE_MODULES = (
    nn.Sequential,
    nn.Linear,
    nn.Conv2d,
    nn.ReLU,
    nn.ReLU6,
    nn.Hardtanh,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.Flatten,
    nn.MaxPool2d,
    nn.Dropout,
    nn.Identity,
    PositionBias,
    MinMaxPool2d,
)


def load_torch_relu(path: str | Path) -> nn.Sequential:
    """A saved ReLU ``nn.Sequential`` (float64 copy, eval mode); see the module docstring."""
    path = Path(path)
    if not path.exists():
        raise FormatError(f"model file {path} does not exist")
    if path.is_dir():
        raise FormatError(f"model file {path} is a folder, not a file")
    try:
        with torch.serialization.safe_globals(list(SAFE_MODULES)), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about foreign pickle protocols
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found:
            raise UnsupportedError(
                f"{path} holds a {found.group(1)}; expected a saved torch.nn.Sequential of "
                "Linear/Conv2d/ReLU/BatchNorm/Flatten/MaxPool2d layers (or an ONNX file)"
            ) from None
        raise FormatError(f"{path} is not a readable torch file (corrupt or truncated)") from None
    except TORCH_LOAD_ERRORS as exc:
        raise FormatError(
            f"{path} is not a readable torch file (corrupt or truncated: {type(exc).__name__})"
        ) from None
    if isinstance(obj, dict):
        tag = obj.get("format")
        if tag == "neurodeploy.checkpoint":
            raise UnsupportedError(
                f"{path} is a neurodeploy spiking-network checkpoint; TTFS conversion takes "
                "a ReLU network"
            )
        if tag == "neurodeploy.ttfs":
            raise ConfigError(f"{path} is already a TTFS checkpoint")
        raise UnsupportedError(
            f"{path} holds a bare dict (a state_dict?); save the whole nn.Sequential with "
            "torch.save(model, path) or export it to ONNX"
        )
    if not isinstance(obj, nn.Sequential):
        raise UnsupportedError(
            f"{path} holds a {type(obj).__name__}; expected a torch.nn.Sequential"
        )
    return obj.to(torch.float64).eval()


def load_relu_model(path: str | Path) -> tuple[nn.Sequential, tuple[int, ...] | None, str]:
    """Load a ReLU network from ``path``: ONNX (by content or ``.onnx`` suffix) or a torch file.

    Returns:
        ``(model, input shape of one sample or None, "onnx" | "torch")``.
    """
    path = Path(path)
    if not path.exists():
        raise FormatError(f"model file {path} does not exist")
    if path.suffix.lower() == ".onnx" or (
        path.is_file()
        and not zipfile.is_zipfile(path)
        and path.suffix.lower() not in (".pt", ".pth")
    ):
        model, shape = load_onnx_relu(path)
        return model, shape, "onnx"
    return load_torch_relu(path), None, "torch"
