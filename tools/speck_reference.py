"""Run an integer DYNAP-CNN network through Sinabs 3.1.3's ``DynapcnnNetwork`` (software forward).

Usage (inside the environment ``bash tools/speck_env.sh`` builds)::

    python tools/speck_reference.py run REQUEST.npz RESULT.npz [REQUEST RESULT ...]
    python tools/speck_reference.py selftest

A request holds a deployment graph's integers (written by :func:`write_request`, which needs
numpy only, so neurodeploy's tests import this file): per layer its kind, integer weights, biases,
threshold, stride, padding or pool kernel, and the input events ``[B, T, C, H, W]``. The script
builds the network a Sinabs user deploys — ``nn.Conv2d`` / ``nn.Linear`` with the integer weights
(float32 tensors holding integers, as ``discretize=True`` leaves them), ``sinabs.layers.IAFSqueeze``
with ``spike_threshold = threshold``, ``min_v_mem = -threshold``, ``MultiSpike`` and
``MembraneSubtract`` (Sinabs's defaults), ``sinabs.layers.SumPool2d`` for pooling,
``nn.Flatten`` — converts it with ``DynapcnnNetwork(..., discretize=False)`` (the values are already
the chip's integers; ``discretize=True`` would rescale them) and runs ``net(x,
return_complete=True)`` on the events reshaped to ``(B·T, C, H, W)``. The result holds, per
DYNAP-CNN layer, its output events ``[B, T, ...]`` (after its pooling), the layer-to-core mapping
of ``Speck2FConfigBuilder.map_layers_to_cores`` and ``memory_summary()`` per layer.

Sinabs's DYNAP-CNN backend imports ``samna`` (the hardware driver) at import time; nothing this
script calls touches hardware, so a placeholder module stands in for it when samna is absent.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def write_request(path: Path, graph: Any, events: np.ndarray,
                  float_layers: list[dict[str, Any]] | None = None) -> None:
    """Write the integers of deployment graph ``graph`` and ``events`` ``[B, T, *input_shape]``.

    A ``sumpool`` layer's neuron group is the pass-through of the layer before it (threshold 1,
    rule ``sum_pooling``) and becomes a ``SumPool2d``. ``float_layers`` (optional, one dict per
    dense/conv layer: ``weight``, ``bias``, ``threshold`` in float units) asks Sinabs to
    discretize that float network itself (``discretize=True``, ``min_v_mem = -threshold``) and
    return the integers it chose.
    """
    layers, arrays = [], {}
    floats = iter(float_layers or [])
    for i, layer in enumerate(graph.layers):
        entry: dict[str, Any] = {"kind": layer.kind}
        if layer.kind in ("dense", "conv"):
            arrays[f"weight_{i}"] = np.asarray(layer.weight, dtype=np.int64)
            bias = np.asarray(layer.neurons.bias, dtype=np.int64).reshape(-1)
            f = int(np.asarray(layer.weight).shape[0])
            arrays[f"bias_{i}"] = np.broadcast_to(bias, (f,)) if bias.size == 1 else bias
            entry["threshold"] = int(layer.neurons.threshold)
            if float_layers is not None:
                fl = next(floats)
                arrays[f"float_weight_{i}"] = np.asarray(fl["weight"], dtype=np.float64)
                arrays[f"float_bias_{i}"] = np.asarray(fl["bias"], dtype=np.float64).reshape(-1)
                entry["float_threshold"] = float(fl["threshold"])
            if layer.kind == "conv":
                entry["stride"] = [int(v) for v in layer.stride]
                entry["padding"] = [int(v) for v in layer.padding]
        elif layer.kind == "sumpool":
            entry["kernel"] = [int(v) for v in layer.kernel]
        layers.append(entry)
    header = {"layers": layers, "input_shape": [int(v) for v in graph.input_shape]}
    np.savez(path, header=np.array(json.dumps(header)), events=np.asarray(events, np.int64),
             **arrays)


def read_result(path: Path) -> dict[str, Any]:
    """``{"outputs": [per DYNAP-CNN layer events [B, T, ...] int64], "cores": {layer: core},
    "memory": [{kernel, neuron, bias}]}``."""
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        outputs = [z[f"out_{k}"] for k in range(meta["n_layers"])]
        discretized = [{key: z[f"disc_{key}_{k}"] for key in ("weight", "bias", "threshold", "min_v_mem")}
                       for k in range(meta["n_layers"])] if meta.get("discretized") else None
    return {"outputs": outputs, "cores": {int(k): v for k, v in meta["cores"].items()},
            "memory": meta["memory"], "mapping_error": meta.get("mapping_error"),
            "discretized": discretized}


def _install_samna_placeholder() -> None:
    import importlib.abc
    import importlib.machinery
    import importlib.util
    import types
    from unittest import mock

    if importlib.util.find_spec("samna") is not None:
        return

    class _Module(types.ModuleType):
        def __getattr__(self, attr):
            if attr.startswith("__"):
                raise AttributeError(attr)
            value = mock.MagicMock(name=f"{self.__name__}.{attr}")
            setattr(self, attr, value)
            return value

    class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("samna", "samnagui"):
                return importlib.machinery.ModuleSpec(name, self, is_package=True)
            return None

        def create_module(self, spec):
            module = _Module(spec.name)
            module.__path__ = []
            return module

        def exec_module(self, module):
            pass

    sys.meta_path.append(_Finder())


def run(request: Path, result: Path) -> None:
    _install_samna_placeholder()
    import sinabs
    import sinabs.layers as sl
    import torch
    from sinabs.activation import MembraneSubtract, MultiSpike
    from sinabs.backend.dynapcnn import DynapcnnNetwork
    from sinabs.backend.dynapcnn.chips.speck2f import Speck2FConfigBuilder
    from torch import nn

    torch.set_num_threads(1)
    with np.load(request) as z:
        header = json.loads(str(z["header"]))
        arrays = {k: z[k] for k in z.files}
    events = arrays["events"]
    b, t = events.shape[:2]
    shape = tuple(header["input_shape"])

    def build(prefix: str) -> nn.Sequential:
        modules: list[nn.Module] = []
        for i, entry in enumerate(header["layers"]):
            modules += layer_modules(i, entry, prefix)
        return nn.Sequential(*modules)

    def layer_modules(i: int, entry: dict[str, Any], prefix: str) -> list[nn.Module]:
        kind = entry["kind"]
        if kind == "flatten":
            return [nn.Flatten()]
        if kind == "sumpool":
            return [sl.SumPool2d(tuple(entry["kernel"]))]
        w = torch.tensor(arrays[f"{prefix}weight_{i}"], dtype=torch.float32)
        bias = torch.tensor(arrays[f"{prefix}bias_{i}"], dtype=torch.float32)
        has_bias = bool(torch.any(bias != 0))
        if kind == "conv":
            mod = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), stride=tuple(entry["stride"]),
                            padding=tuple(entry["padding"]), bias=has_bias)
        else:
            mod = nn.Linear(w.shape[1], w.shape[0], bias=has_bias)
        with torch.no_grad():
            mod.weight.copy_(w)
            if has_bias:
                mod.bias.copy_(bias)
        thr = float(entry["float_threshold" if prefix else "threshold"])
        return [mod, sl.IAFSqueeze(batch_size=b, spike_threshold=torch.tensor(thr),
                                   min_v_mem=-thr, spike_fn=MultiSpike,
                                   reset_fn=MembraneSubtract())]

    net = DynapcnnNetwork(build(""), input_shape=shape, discretize=False)
    sinabs.reset_states(net)
    x = torch.tensor(events.reshape(b * t, *shape), dtype=torch.float32)
    with torch.no_grad():
        complete = net(x, return_complete=True)
    layers = net.dynapcnn_layers
    order = sorted(k for k in layers if hasattr(layers[k], "memory_summary"))
    outs = {}
    for n, k in enumerate(order):
        dests = complete[k]
        out = next(iter(dests.values()))
        arr = out.detach().numpy()
        if not np.all(arr == np.round(arr)):
            raise SystemExit(f"layer {k}: non-integer output events")
        outs[f"out_{n}"] = arr.astype(np.int64).reshape(b, t, *arr.shape[1:])
    memory = [{key: int(v) for key, v in layers[k].memory_summary().items()} for k in order]
    meta: dict[str, Any] = {"n_layers": len(order), "memory": memory, "cores": {}}
    if any(k.startswith("float_weight_") for k in arrays):
        disc = DynapcnnNetwork(build("float_"), input_shape=shape, discretize=True).dynapcnn_layers
        for n, k in enumerate(sorted(k for k in disc if hasattr(disc[k], "memory_summary"))):
            conv, spk = disc[k].conv_layer, disc[k].spk_layer
            outs[f"disc_weight_{n}"] = conv.weight.detach().numpy().astype(np.float64)
            outs[f"disc_bias_{n}"] = (np.zeros(conv.out_channels) if conv.bias is None
                                      else conv.bias.detach().numpy().astype(np.float64))
            outs[f"disc_threshold_{n}"] = np.float64(float(spk.spike_threshold))
            outs[f"disc_min_v_mem_{n}"] = np.float64(float(spk.min_v_mem))
        meta["discretized"] = True
    try:
        meta["cores"] = {str(n): int(Speck2FConfigBuilder.map_layers_to_cores(layers)[k])
                         for n, k in enumerate(order)}
    except ValueError as exc:
        meta["mapping_error"] = str(exc).splitlines()[0]
    np.savez(result, meta=np.array(json.dumps(meta)), **outs)


def selftest() -> None:
    """Two 1x1 conv neurons, weights 3 and -5, threshold 2, one input event per step: events
    1, 2, 1 (several per step, subtractive reset) and 0, 0, 0 (``v`` held at ``min_v_mem = -2``)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        req, res = Path(tmp) / "req.npz", Path(tmp) / "res.npz"
        header = {"layers": [{"kind": "conv", "threshold": 2, "stride": [1, 1], "padding": [0, 0]}],
                  "input_shape": [1, 1, 1]}
        np.savez(req, header=np.array(json.dumps(header)), events=np.ones((1, 3, 1, 1, 1), np.int64),
                 weight_0=np.array([3, -5]).reshape(2, 1, 1, 1), bias_0=np.zeros(2, np.int64))
        run(req, res)
        out = read_result(res)["outputs"][0].reshape(3, 2)
    if out.tolist() != [[1, 0], [2, 0], [1, 0]]:
        raise SystemExit(f"selftest: unexpected events {out.tolist()}")
    print("speck_reference.py selftest: ok")


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[1] == "selftest":
        selftest()
        return 0
    if len(argv) < 4 or len(argv) % 2 or argv[1] != "run":
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: python tools/speck_reference.py run REQUEST.npz RESULT.npz [REQUEST RESULT ...]",
              file=sys.stderr)
        return 2
    for req, res in zip(argv[2::2], argv[3::2], strict=True):
        run(Path(req), Path(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
