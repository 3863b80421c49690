"""Read a ReLU MLP or ConvNet from an ONNX file into a float64 ``torch.nn.Sequential``.

The graph must be a chain from its single data input to its single output. Operators:
``Gemm`` (``transA = 0``; ``alpha``, ``beta``, ``transB``), ``MatMul`` with a constant right-hand
side (a following ``Add`` of a constant vector is its bias), ``Conv`` (2-D, symmetric pads,
``group = 1``, ``dilations = 1``), ``Relu``, ``Flatten`` (``axis = 1``), ``Reshape`` to
``[batch, -1]``, ``BatchNormalization`` (inference form), ``MaxPool`` (2-D, symmetric pads,
``ceil_mode = 0``), ``Dropout`` and ``Identity`` (no-ops), ``Constant`` (weights). Any other
operator raises :class:`UnsupportedError` naming it; a corrupt or foreign file raises
:class:`FormatError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from neurodeploy.errors import FormatError, UnsupportedError

SUPPORTED_OPS = (
    "Gemm",
    "MatMul",
    "Add",
    "Conv",
    "Relu",
    "Flatten",
    "Reshape",
    "BatchNormalization",
    "MaxPool",
    "Dropout",
    "Identity",
    "Constant",
)
DTYPE = torch.float64


def _load(path: Path):
    import onnx

    if not path.exists():
        raise FormatError(f"ONNX file {path} does not exist")
    if path.is_dir():
        raise FormatError(f"ONNX file {path} is a folder, not a file")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises several unrelated types on garbage
        raise FormatError(
            f"{path} is not a readable ONNX model (corrupt or truncated: {type(exc).__name__})"
        ) from None
    if model.ir_version <= 0 or not model.HasField("graph") or len(model.graph.node) == 0:
        raise FormatError(f"{path} is not an ONNX model (no IR version or no graph nodes)")
    return model


def _not_empty(w: np.ndarray, where: str) -> None:
    if w.size == 0:
        raise UnsupportedError(f"{where}: the weight of shape {list(w.shape)} is empty; a layer needs at "
                               "least one input and one output")


def _attrs(node) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _sym_pads(pads: list[int], where: str) -> tuple[int, int]:
    if not pads:
        return (0, 0)
    if len(pads) != 4 or pads[0] != pads[2] or pads[1] != pads[3]:
        raise UnsupportedError(f"{where}: asymmetric pads {list(pads)} are not supported")
    return (int(pads[0]), int(pads[1]))


def _no_auto_pad(attrs: dict[str, Any], where: str) -> None:
    ap = attrs.get("auto_pad", b"NOTSET")
    ap = ap.decode() if isinstance(ap, bytes) else str(ap)
    if ap not in ("NOTSET", "VALID"):
        raise UnsupportedError(
            f"{where}: auto_pad={ap} is not supported; export with explicit pads"
        )


def load_onnx_relu(path: str | Path) -> tuple[nn.Sequential, tuple[int, ...] | None]:
    """The ReLU network in an ONNX file as a float64 ``nn.Sequential`` (eval mode), and the shape
    of one sample from the graph input (``None`` where a dimension is symbolic)."""
    from onnx import numpy_helper

    path = Path(path)
    model = _load(path)
    g = model.graph
    consts: dict[str, np.ndarray] = {}
    for init in g.initializer:
        try:
            consts[init.name] = numpy_helper.to_array(init)
        except Exception as exc:
            raise FormatError(
                f"{path}: initializer {init.name!r} is unreadable ({type(exc).__name__})"
            ) from None
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1 or len(g.output) != 1:
        raise UnsupportedError(
            f"{path}: expected one data input and one output, found {len(inputs)} and "
            f"{len(g.output)}"
        )
    dims = inputs[0].type.tensor_type.shape.dim
    sample = tuple(int(d.dim_value) for d in dims[1:])
    input_shape = sample if sample and all(v > 0 for v in sample) else None
    rank = len(dims) if dims else None
    current = inputs[0].name
    mods: list[nn.Module] = []

    def const(name: str, where: str) -> np.ndarray:
        if name not in consts:
            raise UnsupportedError(
                f"{where}: input {name!r} is not a constant; only chains of layers are supported"
            )
        return consts[name]

    for node in g.node:
        op = node.op_type
        where = f"{path.name}: node {node.name or op} ({op})"
        if op == "Constant":
            a = _attrs(node)
            if "value" not in a:
                raise UnsupportedError(f"{where}: only tensor constants are supported")
            consts[node.output[0]] = numpy_helper.to_array(a["value"])
            continue
        if op in ("Identity", "Dropout") and node.input and node.input[0] in consts:
            consts[node.output[0]] = consts[node.input[0]]  # a copy of a weight, not a layer
            continue
        if op not in SUPPORTED_OPS:
            raise UnsupportedError(
                f"ONNX operator {op} (node {node.name or '?'}) is not supported by the "
                f"TTFS mapping; supported: {', '.join(SUPPORTED_OPS)}"
            )
        if not node.input or node.input[0] != current:
            data = [n for n in node.input if n not in consts]
            if op == "Add" and len(data) == 1 and data[0] == current:
                pass
            else:
                raise UnsupportedError(
                    f"{where} does not continue the chain from {current!r}; only a "
                    "sequence of layers is supported"
                )
        a = _attrs(node)
        t = lambda arr: torch.tensor(np.array(arr, dtype=np.float64), dtype=DTYPE)  # noqa: E731
        if op == "Gemm":
            if a.get("transA", 0):
                raise UnsupportedError(f"{where}: transA=1 is not supported")
            b = const(node.input[1], where).astype(np.float64)
            if b.ndim != 2:
                raise UnsupportedError(f"{where}: a Gemm weight must be 2-D, got shape {list(b.shape)}")
            # Y = alpha * A @ B' + beta * C with B' = B.T if transB; a Linear weight is alpha * B'.T
            w = (b if a.get("transB", 0) else b.T) * float(a.get("alpha", 1.0))
            _not_empty(w, where)
            lin = nn.Linear(w.shape[1], w.shape[0], dtype=DTYPE)
            lin.weight.data.copy_(t(w))
            c = (
                const(node.input[2], where).astype(np.float64)
                if len(node.input) > 2 and node.input[2]
                else 0.0
            )
            lin.bias.data.copy_(
                torch.broadcast_to(t(np.asarray(c) * float(a.get("beta", 1.0))), (w.shape[0],))
            )
            mods.append(lin)
        elif op == "MatMul":
            m = const(node.input[1], where).astype(np.float64)
            if m.ndim != 2:
                raise UnsupportedError(f"{where}: only a 2-D constant right-hand side is supported")
            _not_empty(m, where)
            lin = nn.Linear(m.shape[0], m.shape[1], dtype=DTYPE)
            lin.weight.data.copy_(t(m.T))
            lin.bias.data.zero_()
            mods.append(lin)
        elif op == "Add":
            other = [n for n in node.input if n != current]
            if len(other) != 1 or not mods or not isinstance(mods[-1], nn.Linear | nn.Conv2d):
                raise UnsupportedError(
                    f"{where}: only a constant bias added right after MatMul/Gemm/Conv is supported"
                )
            c = const(other[0], where).astype(np.float64)
            last = mods[-1]
            n_out = last.weight.shape[0]
            vec = (
                c.reshape(-1)
                if c.size == n_out
                else (np.full(n_out, float(c.reshape(-1)[0])) if c.size == 1 else None)
            )
            if vec is None:
                raise UnsupportedError(
                    f"{where}: a bias of shape {list(c.shape)} does not match {n_out} outputs"
                )
            if last.bias is None:
                last.bias = nn.Parameter(torch.zeros(n_out, dtype=DTYPE))
            last.bias.data += t(vec)
        elif op == "Conv":
            w = const(node.input[1], where).astype(np.float64)
            if w.ndim != 4:
                raise UnsupportedError(f"{where}: only 2-D convolutions are supported")
            _not_empty(w, where)
            if int(a.get("group", 1)) != 1 or any(int(d) != 1 for d in a.get("dilations", [1, 1])):
                raise UnsupportedError(f"{where}: only group=1 and dilations=1 are supported")
            _no_auto_pad(a, where)
            pad = _sym_pads(list(a.get("pads", [])), where)
            stride = tuple(int(s) for s in a.get("strides", [1, 1]))
            has_b = len(node.input) > 2 and bool(node.input[2])
            conv = nn.Conv2d(
                w.shape[1], w.shape[0], tuple(w.shape[2:]), stride, pad, bias=True, dtype=DTYPE
            )
            conv.weight.data.copy_(t(w))
            conv.bias.data.copy_(
                t(const(node.input[2], where)) if has_b else torch.zeros(w.shape[0], dtype=DTYPE)
            )
            mods.append(conv)
        elif op == "Relu":
            mods.append(nn.ReLU())
        elif op == "Flatten":
            if int(a.get("axis", 1)) != 1:
                raise UnsupportedError(f"{where}: only axis=1 is supported")
            mods.append(nn.Flatten())
            rank = 2
        elif op == "Reshape":
            shape = const(node.input[1], where).reshape(-1).tolist()
            if len(shape) != 2:
                raise UnsupportedError(
                    f"{where}: only a reshape to [batch, -1] is supported, got {shape}"
                )
            mods.append(nn.Flatten())
            rank = 2
        elif op == "BatchNormalization":
            if a.get("training_mode", 0):
                raise UnsupportedError(
                    f"{where}: training-mode BatchNormalization is not supported"
                )
            scale, bias, mean, var = (const(n, where).astype(np.float64) for n in node.input[1:5])
            bn = (nn.BatchNorm1d if rank == 2 else nn.BatchNorm2d)(
                scale.shape[0], eps=float(a.get("epsilon", 1e-5)), dtype=DTYPE
            )
            bn.weight.data.copy_(t(scale))
            bn.bias.data.copy_(t(bias))
            bn.running_mean.copy_(t(mean))
            bn.running_var.copy_(t(var))
            mods.append(bn.eval())
        elif op == "MaxPool":
            if (
                int(a.get("ceil_mode", 0))
                or any(int(d) != 1 for d in a.get("dilations", [1, 1]))
                or int(a.get("storage_order", 0))
                or len(node.output) > 1
                and node.output[1]
            ):
                raise UnsupportedError(
                    f"{where}: only ceil_mode=0, dilations=1 and no indices are supported"
                )
            _no_auto_pad(a, where)
            k = tuple(int(v) for v in a["kernel_shape"])
            if len(k) != 2:
                raise UnsupportedError(f"{where}: only 2-D pooling is supported")
            mods.append(
                nn.MaxPool2d(
                    k,
                    tuple(int(s) for s in a.get("strides", k)),
                    _sym_pads(list(a.get("pads", [])), where),
                )
            )
        # Dropout and Identity: nothing to add
        current = node.output[0]
    if current != g.output[0].name:
        raise UnsupportedError(
            f"{path}: the graph output {g.output[0].name!r} is not the end of the layer chain"
        )
    return nn.Sequential(*mods).eval(), input_shape
